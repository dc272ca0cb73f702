//! The canvas: an RGB8 pixel buffer with the drawing primitives (pixels, anti-aliased lines,
//! rectangles, discs, copying) and PNG output.
//!
//! Coordinates are in pixels, `x` to the right and `y` down, origin at the top-left corner.
//! Drawing outside the canvas is clipped silently, so callers never check bounds.

use std::path::Path;

use ocellus::error::{Error, Result};

/// A colour: red, green, blue, each 0..=255.
pub type Rgb = [u8; 3];

pub const WHITE: Rgb = [255, 255, 255];
pub const BLACK: Rgb = [0, 0, 0];
/// Text and axes: softer than pure black.
pub const INK: Rgb = [34, 34, 34];
/// Frames around tiles and legends.
pub const FRAME: Rgb = [150, 150, 150];
/// Gridlines behind a chart.
pub const GRID: Rgb = [228, 228, 228];

/// An RGB8 image: `pixels` holds `height` rows of `width` pixels, 3 bytes each, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    /// (height, width, 3), row-major.
    pub pixels: Vec<u8>,
}

impl Canvas {
    /// A `width × height` canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Canvas {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    /// Paints every pixel with `color`.
    pub fn fill(&mut self, color: Rgb) {
        for px in self.pixels.chunks_exact_mut(3) {
            px.copy_from_slice(&color);
        }
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let inside = x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height;
        inside.then(|| 3 * (y as usize * self.width + x as usize))
    }

    /// The colour at `(x, y)`, or `None` outside the canvas.
    pub fn pixel(&self, x: usize, y: usize) -> Option<Rgb> {
        let i = self.index(x as i64, y as i64)?;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// Sets one pixel; outside the canvas nothing happens.
    pub fn set_pixel(&mut self, x: i64, y: i64, color: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    /// Mixes `color` into one pixel with opacity `alpha` in [0, 1]:
    /// `out = (1 - alpha)·old + alpha·color`.
    pub fn blend_pixel(&mut self, x: i64, y: i64, color: Rgb, alpha: f32) {
        let alpha = alpha.clamp(0.0, 1.0);
        if let Some(i) = self.index(x, y) {
            for (old, new) in self.pixels[i..i + 3].iter_mut().zip(color) {
                *old = (*old as f32 * (1.0 - alpha) + new as f32 * alpha).round() as u8;
            }
        }
    }

    /// Fills the `w × h` rectangle whose top-left corner is `(x, y)`.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: usize, h: usize, color: Rgb) {
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = (x + w as i64).min(self.width as i64);
        let y1 = (y + h as i64).min(self.height as i64);
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.set_pixel(xx, yy, color);
            }
        }
    }

    /// Outlines the `w × h` rectangle whose top-left corner is `(x, y)` with a 1-pixel border
    /// lying inside the rectangle.
    pub fn rect(&mut self, x: i64, y: i64, w: usize, h: usize, color: Rgb) {
        if w == 0 || h == 0 {
            return;
        }
        self.fill_rect(x, y, w, 1, color);
        self.fill_rect(x, y + h as i64 - 1, w, 1, color);
        self.fill_rect(x, y, 1, h, color);
        self.fill_rect(x + w as i64 - 1, y, 1, h, color);
    }

    /// A crisp horizontal line from `x0` to `x1` inclusive, `thickness` pixels tall downwards.
    pub fn hline(&mut self, x0: i64, x1: i64, y: i64, thickness: usize, color: Rgb) {
        let (a, b) = (x0.min(x1), x0.max(x1));
        self.fill_rect(a, y, (b - a + 1) as usize, thickness, color);
    }

    /// A crisp vertical line from `y0` to `y1` inclusive, `thickness` pixels wide rightwards.
    pub fn vline(&mut self, x: i64, y0: i64, y1: i64, thickness: usize, color: Rgb) {
        let (a, b) = (y0.min(y1), y0.max(y1));
        self.fill_rect(x, a, thickness, (b - a + 1) as usize, color);
    }

    /// An anti-aliased line of `width` pixels (1–2 is typical) between two points given at
    /// sub-pixel precision, with round ends so consecutive segments join smoothly.
    ///
    /// Each pixel near the segment gets coverage `clamp(width/2 + 0.5 - d, 0, 1)`, `d` being
    /// the distance from the pixel centre to the segment: a box-filtered capsule.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, color: Rgb, width: f64) {
        if ![x0, y0, x1, y1, width].iter().all(|v| v.is_finite()) {
            return;
        }
        let reach = width / 2.0 + 0.5;
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        // Only pixels within `reach` of the segment can be touched: walk the major axis and,
        // for each step, the short run of the minor axis around the line.
        let steep = dy.abs() > dx.abs();
        let (a0, a1, b0, b1) = if steep {
            (y0, y1, x0, x1)
        } else {
            (x0, x1, y0, y1)
        };
        let (lo, hi) = (a0.min(a1) - reach, a0.max(a1) + reach);
        let slope = if a1 != a0 { (b1 - b0) / (a1 - a0) } else { 0.0 };
        let run = reach * (1.0 + slope * slope).sqrt() + 1.0;
        for a in (lo.floor() as i64)..=(hi.ceil() as i64) {
            let ac = a as f64 + 0.5;
            let bc = b0 + slope * (ac.clamp(a0.min(a1), a0.max(a1)) - a0);
            for b in ((bc - run).floor() as i64)..=((bc + run).ceil() as i64) {
                let (px, py) = if steep { (b, a) } else { (a, b) };
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                // Distance from the pixel centre to the closest point of the segment.
                let t = if len2 > 0.0 {
                    (((cx - x0) * dx + (cy - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let d = ((cx - x0 - t * dx).powi(2) + (cy - y0 - t * dy).powi(2)).sqrt();
                let coverage = (reach - d).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend_pixel(px, py, color, coverage as f32);
                }
            }
        }
    }

    /// An anti-aliased filled disc of `radius` pixels centred at `(cx, cy)`.
    pub fn fill_circle(&mut self, cx: f64, cy: f64, radius: f64, color: Rgb) {
        // A zero-length capsule is a disc.
        self.line(cx, cy, cx, cy, color, 2.0 * radius);
    }

    /// Copies `src` onto this canvas with its top-left corner at `(x, y)`, clipped.
    pub fn blit(&mut self, src: &Canvas, x: i64, y: i64) {
        for sy in 0..src.height {
            for sx in 0..src.width {
                let i = 3 * (sy * src.width + sx);
                let c = [src.pixels[i], src.pixels[i + 1], src.pixels[i + 2]];
                self.set_pixel(x + sx as i64, y + sy as i64, c);
            }
        }
    }

    /// The number of distinct colours in the image.
    pub fn distinct_colors(&self) -> usize {
        let mut seen: Vec<Rgb> = self
            .pixels
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// The image as an 8-bit RGB PNG file's bytes, in memory (for a `data:` URI).
    pub fn to_png_bytes(&self) -> Result<Vec<u8>> {
        assert_eq!(
            self.pixels.len(),
            3 * self.width * self.height,
            "canvas: pixel buffer does not match {}×{}",
            self.width,
            self.height
        );
        ocellus_data::folder::encode_png(&self.pixels, self.height, self.width, png::ColorType::Rgb)
            .map_err(|e| Error::Format {
                path: format!("{}×{} picture", self.width, self.height),
                message: format!("cannot encode PNG ({e})"),
            })
    }

    /// Writes the image as an 8-bit RGB PNG. The file appears complete or not at all: the
    /// data goes to a temporary file next to `path`, which is then renamed over it.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        ocellus::checkpoint::write_atomically(path.as_ref(), &self.to_png_bytes()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_png(path: &Path) -> (usize, usize, Vec<u8>) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width as usize, info.height as usize, buf)
    }

    #[test]
    fn set_pixel_clips_silently_and_pixel_reads_back() {
        let mut c = Canvas::new(4, 3, WHITE);
        c.set_pixel(-1, 0, BLACK);
        c.set_pixel(4, 0, BLACK);
        c.set_pixel(0, 3, BLACK);
        assert_eq!(c.distinct_colors(), 1);
        c.set_pixel(3, 2, [1, 2, 3]);
        assert_eq!(c.pixel(3, 2), Some([1, 2, 3]));
        assert_eq!(c.pixel(4, 2), None);
        assert_eq!(&c.pixels[3 * (2 * 4 + 3)..], &[1, 2, 3]);
    }

    #[test]
    fn rectangles_fill_and_outline_the_right_pixels() {
        let mut c = Canvas::new(10, 10, WHITE);
        c.fill_rect(2, 3, 4, 2, BLACK);
        let black = c.pixels.chunks_exact(3).filter(|p| p == &BLACK).count();
        assert_eq!(black, 8);
        assert_eq!(c.pixel(2, 3), Some(BLACK));
        assert_eq!(c.pixel(5, 4), Some(BLACK));
        assert_eq!(c.pixel(6, 4), Some(WHITE));

        let mut c = Canvas::new(10, 10, WHITE);
        c.rect(1, 1, 5, 4, BLACK);
        let black = c.pixels.chunks_exact(3).filter(|p| p == &BLACK).count();
        assert_eq!(black, 2 * 5 + 2 * 2);
        assert_eq!(
            c.pixel(3, 2),
            Some(WHITE),
            "outline leaves the inside alone"
        );
        // Clipped at the border without panicking.
        c.fill_rect(-5, -5, 100, 100, BLACK);
        assert_eq!(c.distinct_colors(), 1);
    }

    #[test]
    fn line_covers_the_segment_and_nothing_far_from_it() {
        let mut c = Canvas::new(40, 40, WHITE);
        c.line(5.0, 5.0, 35.0, 30.0, BLACK, 2.0);
        for (x, y) in [(5.0, 5.0), (20.0, 17.5), (35.0, 30.0)] {
            let p = c.pixel(x as usize, y as usize).unwrap();
            assert!(p[0] < 128, "({x}, {y}) on the line is dark: {p:?}");
        }
        for (x, y) in [(30, 5), (5, 30), (0, 39), (39, 0)] {
            assert_eq!(
                c.pixel(x, y),
                Some(WHITE),
                "({x}, {y}) is far from the line"
            );
        }
        // Anti-aliasing gives intermediate shades.
        assert!(c.distinct_colors() > 3);
        // Every column between the end points is touched (no gaps).
        for x in 5..35 {
            assert!((0..40).any(|y| c.pixel(x, y) != Some(WHITE)), "column {x}");
        }
    }

    #[test]
    fn steep_and_degenerate_lines_do_not_panic() {
        let mut c = Canvas::new(20, 20, WHITE);
        c.line(10.0, -50.0, 11.0, 70.0, BLACK, 1.0);
        for y in 0..20 {
            assert!((0..20).any(|x| c.pixel(x, y) != Some(WHITE)), "row {y}");
        }
        c.line(3.0, 3.0, 3.0, 3.0, BLACK, 2.0);
        c.line(f64::NAN, 0.0, 1.0, 1.0, BLACK, 1.0);
        c.fill_circle(15.0, 15.0, 3.0, [200, 0, 0]);
        assert_eq!(c.pixel(15, 15), Some([200, 0, 0]));
    }

    #[test]
    fn save_png_round_trips() {
        let mut c = Canvas::new(7, 5, [10, 20, 30]);
        c.set_pixel(0, 0, [255, 0, 0]);
        c.set_pixel(6, 4, [0, 255, 0]);
        c.line(0.0, 4.0, 6.0, 0.0, [0, 0, 255], 1.0);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("round_trip.png");
        c.save_png(&path).unwrap();
        let (w, h, pixels) = decode_png(&path);
        assert_eq!((w, h), (7, 5));
        assert_eq!(pixels, c.pixels);
        // No temporary file is left behind.
        let files: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, ["round_trip.png"]);
    }

    #[test]
    fn png_bytes_in_memory_are_the_file_save_png_writes() {
        let mut c = Canvas::new(3, 2, WHITE);
        c.set_pixel(1, 1, [200, 100, 0]);
        let bytes = c.to_png_bytes().unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "the PNG signature");
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("same.png");
        c.save_png(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let (w, h, pixels) = decode_png(&path);
        assert_eq!((w, h, pixels), (3, 2, c.pixels.clone()));
    }

    #[test]
    fn save_png_into_a_missing_directory_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Canvas::new(2, 2, WHITE)
            .save_png(tmp.path().join("no/such/dir/out.png"))
            .unwrap_err();
        assert!(matches!(err, ocellus::Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("out.png"), "{err}");
    }
}
