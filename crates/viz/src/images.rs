//! Small images as pictures: tiles (filters, feature maps, inputs) laid out in a captioned
//! grid, a heat map blended over an image (saliency), and side-by-side composition.

use super::canvas::{Canvas, FRAME, INK, WHITE};
use super::colormap::{gray, rec709_luminance, viridis, Colormap};
use super::font::{draw_text, text_height, text_width};
use ocellus::error::{Error, Result};
use ocellus::tensor::Tensor;

/// Space around everything, in pixels.
const MARGIN: usize = 12;
/// Space between tiles or panels.
const GAP: usize = 10;
/// Scale of titles.
const TITLE_SCALE: usize = 2;

/// A small image: `channels` = 1 (grey) or 3 (RGB) planes of `height × width` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// (C, H, W), row-major, as one image of an NCHW tensor.
    pub data: Vec<f32>,
    /// Drawn under the tile in a grid; may be empty.
    pub caption: String,
}

impl Tile {
    /// A tile over `data` laid out (C, H, W). Panics unless C is 1 or 3 and the length fits.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Self {
        assert!(
            channels == 1 || channels == 3,
            "tile: {channels} channels, expected 1 (grey) or 3 (RGB)"
        );
        assert_eq!(
            data.len(),
            channels * height * width,
            "tile: {channels}×{height}×{width} needs {} values",
            channels * height * width
        );
        Tile {
            channels,
            height,
            width,
            data,
            caption: String::new(),
        }
    }

    /// A grey tile of `height × width` values.
    pub fn gray(height: usize, width: usize, data: Vec<f32>) -> Self {
        Self::new(1, height, width, data)
    }

    /// An RGB tile from (3, H, W) planes.
    pub fn rgb(height: usize, width: usize, data: Vec<f32>) -> Self {
        Self::new(3, height, width, data)
    }

    /// The same tile with a caption.
    pub fn with_caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = caption.into();
        self
    }

    /// A tile from a tensor of shape (H, W), (C, H, W) or (1, C, H, W) with C = 1 or 3.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let shape = t.shape();
        let (c, h, w) = match *shape {
            [h, w] => (1, h, w),
            [c, h, w] | [1, c, h, w] if c == 1 || c == 3 => (c, h, w),
            _ => {
                return Err(Error::shape(
                    "image tile",
                    "(H, W) or (C, H, W) with C = 1 or 3",
                    shape,
                )
                .with_hint("take one image and, for a feature map, one channel at a time"))
            }
        };
        Ok(Self::new(c, h, w, t.data().to_vec()))
    }

    /// Smallest and largest finite value; (0, 0) if there is none.
    fn finite_range(&self) -> (f32, f32) {
        let (lo, hi) = self
            .data
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if lo > hi {
            (0.0, 0.0)
        } else {
            (lo, hi)
        }
    }
}

/// Which values map to the ends of the colormap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TileRange {
    /// Each tile stretched over its own min..max: shows every tile's pattern.
    PerTile,
    /// One min..max over all tiles: tiles can be compared with each other.
    Shared,
    /// A fixed `lo..hi`, e.g. 0..1 for images.
    Fixed(f32, f32),
}

/// Draws `tile` at `scale` pixels per value (nearest neighbour), mapping `lo..hi` to the
/// colormap. With [`Colormap::Diverging`] the range becomes symmetric, `-m..m` with
/// `m = max(|lo|, |hi|)`, so zero is white. RGB tiles map each channel over the same range
/// (zero is mid-grey when diverging) and ignore the colormap. A tile whose range is empty
/// shows the colour of zero (diverging) or of the low end.
fn draw_tile(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    tile: &Tile,
    range: (f32, f32),
    colormap: Colormap,
    scale: usize,
) {
    let (mut lo, mut hi) = range;
    if colormap == Colormap::Diverging {
        let m = lo.abs().max(hi.abs());
        (lo, hi) = (-m, m);
    }
    let empty_t = if colormap == Colormap::Diverging {
        0.5
    } else {
        0.0
    };
    let t_of = |v: f32| {
        if hi > lo {
            (v - lo) / (hi - lo)
        } else {
            empty_t
        }
    };
    let plane = tile.height * tile.width;
    for row in 0..tile.height {
        for col in 0..tile.width {
            let at = row * tile.width + col;
            let color = if tile.channels == 1 {
                colormap.map(t_of(tile.data[at]))
            } else {
                std::array::from_fn(|k| gray(t_of(tile.data[k * plane + at]))[0])
            };
            let (px, py) = (x + (col * scale) as i64, y + (row * scale) as i64);
            canvas.fill_rect(px, py, scale, scale, color);
        }
    }
}

/// One tile alone at `scale`, stretched over its own range: exactly
/// `(width·scale) × (height·scale)` pixels.
pub fn render_tile(tile: &Tile, colormap: Colormap, scale: usize) -> Canvas {
    let scale = scale.max(1);
    let mut canvas = Canvas::new(tile.width * scale, tile.height * scale, WHITE);
    draw_tile(
        &mut canvas,
        0,
        0,
        tile,
        tile.finite_range(),
        colormap,
        scale,
    );
    canvas
}

/// Cuts `text` with a trailing "…" until it fits in `max_w` pixels.
fn fit_text(text: &str, max_w: usize) -> String {
    if text_width(text, 1) <= max_w {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty()
        && text_width(&format!("{}…", chars.iter().collect::<String>()), 1) > max_w
    {
        chars.pop();
    }
    format!("{}…", chars.into_iter().collect::<String>())
}

/// Tiles in a grid of `columns` columns, each value drawn as a `tile_scale × tile_scale`
/// block, framed, with its caption centred below and `title` on top. `range` and
/// `colormap` choose the colours (see [`TileRange`]; [`Colormap::Diverging`] for signed
/// values such as filter weights). Captions wider than twice a tile (and 96 pixels) are cut.
pub fn image_grid(
    title: &str,
    tiles: &[Tile],
    columns: usize,
    tile_scale: usize,
    range: TileRange,
    colormap: Colormap,
) -> Canvas {
    let columns = columns.clamp(1, tiles.len().max(1));
    let rows = tiles.len().div_ceil(columns);
    let scale = tile_scale.max(1);
    let tile_w = tiles.iter().map(|t| t.width * scale).max().unwrap_or(0);
    let tile_h = tiles.iter().map(|t| t.height * scale).max().unwrap_or(0);
    let caption_max = (2 * tile_w).max(96);
    let captions: Vec<String> = tiles
        .iter()
        .map(|t| fit_text(&t.caption, caption_max))
        .collect();
    let caption_w = captions.iter().map(|c| text_width(c, 1)).max().unwrap_or(0);
    let has_captions = caption_w > 0;
    // Each cell: a 1-pixel frame around the tile, then the caption.
    let cell_w = (tile_w + 2).max(caption_w);
    let cell_h = tile_h + 2 + if has_captions { 4 + text_height(1) } else { 0 };
    let top = if title.is_empty() {
        MARGIN
    } else {
        2 * MARGIN + text_height(TITLE_SCALE)
    };
    let grid_w = columns * cell_w + (columns - 1) * GAP;
    let width = (2 * MARGIN + grid_w).max(2 * MARGIN + text_width(title, TITLE_SCALE));
    let height = top + rows * cell_h + rows.saturating_sub(1) * GAP + MARGIN;
    let mut canvas = Canvas::new(width, height, WHITE);
    if !title.is_empty() {
        let x = (width - text_width(title, TITLE_SCALE)) as i64 / 2;
        draw_text(&mut canvas, x, MARGIN as i64, title, INK, TITLE_SCALE);
    }

    let shared = match range {
        TileRange::PerTile => None,
        TileRange::Fixed(lo, hi) => Some((lo, hi)),
        TileRange::Shared => {
            let ranges: Vec<(f32, f32)> = tiles.iter().map(Tile::finite_range).collect();
            let lo = ranges.iter().map(|r| r.0).fold(f32::INFINITY, f32::min);
            let hi = ranges.iter().map(|r| r.1).fold(f32::NEG_INFINITY, f32::max);
            Some((lo, hi))
        }
    };
    let left = (width - grid_w) as i64 / 2;
    for (i, tile) in tiles.iter().enumerate() {
        let (r, c) = (i / columns, i % columns);
        let cx = left + (c * (cell_w + GAP)) as i64;
        let cy = (top + r * (cell_h + GAP)) as i64;
        // Centre the framed tile in its cell.
        let (w, h) = (tile.width * scale, tile.height * scale);
        let tx = cx + (cell_w - w - 2) as i64 / 2;
        let ty = cy + (tile_h - h) as i64 / 2;
        canvas.rect(tx, ty, w + 2, h + 2, FRAME);
        let tile_range = shared.unwrap_or_else(|| tile.finite_range());
        draw_tile(
            &mut canvas,
            tx + 1,
            ty + 1,
            tile,
            tile_range,
            colormap,
            scale,
        );
        if has_captions {
            let text = &captions[i];
            let x = cx + (cell_w - text_width(text, 1)) as i64 / 2;
            draw_text(&mut canvas, x, cy + (tile_h + 2 + 4) as i64, text, INK, 1);
        }
    }
    canvas
}

/// Space between tiles of a [`tile_matrix`]: dense, so rows and columns read as a table.
const MATRIX_GAP: usize = 3;

/// Tiles laid out as a table with labelled rows and columns, for [`tile_matrix`].
#[derive(Clone, Debug, Default)]
pub struct TileTable {
    /// Drawn large above everything; may be empty.
    pub title: String,
    /// Above the row labels: what rows and columns are, e.g. `out\in`.
    pub corner: String,
    pub row_labels: Vec<String>,
    pub column_labels: Vec<String>,
    /// `tiles[r][c]` at row `r` and column `c`; rows may be shorter than others.
    pub tiles: Vec<Vec<Tile>>,
}

/// A [`TileTable`] drawn: each value a `tile_scale × tile_scale` block, each tile framed,
/// row labels on the left, column labels on top. `range` and `colormap` as in
/// [`image_grid`].
pub fn tile_matrix(
    table: &TileTable,
    tile_scale: usize,
    range: TileRange,
    colormap: Colormap,
) -> Canvas {
    let TileTable {
        title,
        corner,
        row_labels,
        column_labels,
        tiles,
    } = table;
    let scale = tile_scale.max(1);
    let all = || tiles.iter().flatten();
    let tile_w = all().map(|t| t.width * scale).max().unwrap_or(0) + 2;
    let tile_h = all().map(|t| t.height * scale).max().unwrap_or(0) + 2;
    let columns = tiles.iter().map(Vec::len).max().unwrap_or(0);
    let label_w = row_labels
        .iter()
        .map(|l| text_width(l, 1))
        .chain([text_width(corner, 1)])
        .max()
        .unwrap_or(0);
    let cell_w = tile_w.max(
        column_labels
            .iter()
            .map(|l| text_width(l, 1))
            .max()
            .unwrap_or(0),
    );
    let header_h = text_height(1) + 4;
    let top = if title.is_empty() {
        MARGIN
    } else {
        2 * MARGIN + text_height(TITLE_SCALE)
    };
    let grid_w = label_w + GAP + columns * (cell_w + MATRIX_GAP);
    let width = 2 * MARGIN + grid_w.max(text_width(title, TITLE_SCALE));
    let height = top + header_h + tiles.len() * (tile_h + MATRIX_GAP) + MARGIN;
    let mut canvas = Canvas::new(width, height, WHITE);
    if !title.is_empty() {
        draw_text(
            &mut canvas,
            MARGIN as i64,
            MARGIN as i64,
            title,
            INK,
            TITLE_SCALE,
        );
    }
    let shared = match range {
        TileRange::PerTile => None,
        TileRange::Fixed(lo, hi) => Some((lo, hi)),
        TileRange::Shared => Some(
            all()
                .map(Tile::finite_range)
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (a, b)| {
                    (lo.min(a), hi.max(b))
                }),
        ),
    };
    let left = (MARGIN + label_w + GAP) as i64;
    draw_text(&mut canvas, MARGIN as i64, top as i64, corner, INK, 1);
    for (c, label) in column_labels.iter().enumerate().take(columns) {
        let x = left + (c * (cell_w + MATRIX_GAP) + (cell_w - text_width(label, 1)) / 2) as i64;
        draw_text(&mut canvas, x, top as i64, label, INK, 1);
    }
    for (r, row) in tiles.iter().enumerate() {
        let y = (top + header_h + r * (tile_h + MATRIX_GAP)) as i64;
        if let Some(label) = row_labels.get(r) {
            let x = MARGIN + label_w - text_width(label, 1);
            let ty = y + (tile_h - text_height(1)) as i64 / 2;
            draw_text(&mut canvas, x as i64, ty, label, INK, 1);
        }
        for (c, tile) in row.iter().enumerate() {
            let x = left + (c * (cell_w + MATRIX_GAP) + (cell_w - tile_w) / 2) as i64;
            canvas.rect(x, y, tile.width * scale + 2, tile.height * scale + 2, FRAME);
            let tile_range = shared.unwrap_or_else(|| tile.finite_range());
            draw_tile(&mut canvas, x + 1, y + 1, tile, tile_range, colormap, scale);
        }
    }
    canvas
}

/// Saliency view: `image` in grey (each tile stretched over its own range; RGB turned to
/// luminance) with `heat` (H × W values, stretched over their own range) in viridis blended
/// on top, `out = (1 - alpha)·grey + alpha·viridis(heat)`, drawn at `scale`. The result is
/// exactly `(W·scale) × (H·scale)` pixels.
pub fn overlay_heat(image: &Tile, heat: &[f32], alpha: f32, scale: usize) -> Canvas {
    let (h, w) = (image.height, image.width);
    assert_eq!(
        heat.len(),
        h * w,
        "overlay_heat: heat must have one value per pixel ({h}×{w})"
    );
    let plane = h * w;
    // Luminance of the image, then stretched.
    let lum: Vec<f32> = (0..plane)
        .map(|i| match image.channels {
            1 => image.data[i],
            _ => rec709_luminance(
                image.data[i],
                image.data[plane + i],
                image.data[2 * plane + i],
            ),
        })
        .collect();
    let stretch = |values: &[f32]| -> Vec<f32> {
        let (lo, hi) = Tile::gray(1, values.len(), values.to_vec()).finite_range();
        values
            .iter()
            .map(|&v| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 })
            .collect()
    };
    let (lum, heat) = (stretch(&lum), stretch(heat));
    let alpha = alpha.clamp(0.0, 1.0);
    let scale = scale.max(1);
    let mut canvas = Canvas::new(w * scale, h * scale, WHITE);
    for i in 0..plane {
        let (base, hot) = (gray(lum[i]), viridis(heat[i]));
        let color = std::array::from_fn(|k| {
            ((1.0 - alpha) * base[k] as f32 + alpha * hot[k] as f32).round() as u8
        });
        let (x, y) = ((i % w * scale) as i64, (i / w * scale) as i64);
        canvas.fill_rect(x, y, scale, scale, color);
    }
    canvas
}

/// Label height above panels, if any label is non-empty.
fn labels_height(panels: &[(&str, &Canvas)]) -> usize {
    if panels.iter().any(|(label, _)| !label.is_empty()) {
        text_height(1) + 6
    } else {
        0
    }
}

/// Panels side by side, top-aligned, each under its label (centred), on white.
pub fn hstack(panels: &[(&str, &Canvas)]) -> Canvas {
    let label_h = labels_height(panels);
    let cell_w = |(label, c): &(&str, &Canvas)| c.width.max(text_width(label, 1));
    let width = 2 * MARGIN
        + panels.iter().map(cell_w).sum::<usize>()
        + panels.len().saturating_sub(1) * GAP;
    let height = 2 * MARGIN + label_h + panels.iter().map(|(_, c)| c.height).max().unwrap_or(0);
    let mut canvas = Canvas::new(width, height, WHITE);
    let mut x = MARGIN;
    for panel in panels {
        let (label, c) = *panel;
        let w = cell_w(panel);
        draw_text(
            &mut canvas,
            (x + (w - text_width(label, 1)) / 2) as i64,
            MARGIN as i64,
            label,
            INK,
            1,
        );
        canvas.blit(c, (x + (w - c.width) / 2) as i64, (MARGIN + label_h) as i64);
        x += w + GAP;
    }
    canvas
}

/// Panels one above the other, left-aligned, each under its label.
pub fn vstack(panels: &[(&str, &Canvas)]) -> Canvas {
    let label_h = labels_height(panels);
    let width = 2 * MARGIN
        + panels
            .iter()
            .map(|(label, c)| c.width.max(text_width(label, 1)))
            .max()
            .unwrap_or(0);
    let height = 2 * MARGIN
        + panels
            .iter()
            .map(|(_, c)| label_h + c.height)
            .sum::<usize>()
        + panels.len().saturating_sub(1) * GAP;
    let mut canvas = Canvas::new(width, height, WHITE);
    let mut y = MARGIN;
    for (label, c) in panels {
        draw_text(&mut canvas, MARGIN as i64, y as i64, label, INK, 1);
        canvas.blit(c, MARGIN as i64, (y + label_h) as i64);
        y += label_h + c.height + GAP;
    }
    canvas
}
