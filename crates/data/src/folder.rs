//! Image folders: `DIR/<class>/*.png|jpg|jpeg`, one subfolder per class (sorted by name,
//! as torchvision's `ImageFolder` orders them), every image converted to the channel
//! count and resized to the `H × W` a model expects. Also single images for `predict`
//! and a small PNG writer for pictures of images, filters and feature maps.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::{to_unit, Dataset};
use ocellus::error::{Error, Result};
use ocellus::tensor::Tensor;

/// File extensions read as images (compared without case).
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Loads every image of `dir/<class>/` as `(N, channels, height, width)` in [0, 1].
/// Classes are the subfolder names in sorted order (label k = k-th name); files are taken
/// in sorted order within a class; hidden entries and other extensions are skipped.
/// `channels` is 1 (luminance) or 3 (RGB); images are decoded in parallel.
pub fn load_folder(dir: &Path, channels: usize, height: usize, width: usize) -> Result<Dataset> {
    check_target(channels, height, width)?;
    let classes = class_folders(dir)?;
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        let images: Vec<PathBuf> = sorted_entries(&class_dir)?
            .into_iter()
            .filter(|p| p.is_file() && has_image_extension(p))
            .collect();
        if images.is_empty() {
            return Err(Error::format(
                &class_dir,
                "no .png, .jpg or .jpeg images in this class folder",
            ));
        }
        files.extend(images.into_iter().map(|p| (p, label)));
    }
    let per = channels * height * width;
    let mut data = vec![0.0f32; files.len() * per];
    let results: Vec<Result<()>> = data
        .par_chunks_mut(per)
        .zip(&files)
        .map(|(out, (path, _))| {
            let image = decode(path)?;
            image.to_planes(channels, height, width, out);
            Ok(())
        })
        .collect();
    // The first failure in file order, whichever thread met it first.
    results.into_iter().collect::<Result<()>>()?;
    Dataset::new(
        Tensor::from_vec(&[files.len(), channels, height, width], data)?,
        files.iter().map(|(_, label)| *label).collect(),
        classes,
    )
}

/// Loads one image as a batch of one, `(1, channels, height, width)` in [0, 1].
pub fn load_image(path: &Path, channels: usize, height: usize, width: usize) -> Result<Tensor> {
    check_target(channels, height, width)?;
    let image = decode(path)?;
    let mut data = vec![0.0; channels * height * width];
    image.to_planes(channels, height, width, &mut data);
    Tensor::from_vec(&[1, channels, height, width], data)
}

/// Writes a grayscale PNG from `height · width` values in [0, 1] (clamped, rounded to
/// 8 bits), row-major.
pub fn save_png_gray(path: &Path, pixels: &[f32], height: usize, width: usize) -> Result<()> {
    check_len(path, pixels.len(), height * width, "height·width")?;
    let bytes: Vec<u8> = pixels.iter().map(|&v| to_u8(v)).collect();
    write_png(path, &bytes, height, width, png::ColorType::Grayscale)
}

/// Writes an RGB PNG from three planes `(3, height, width)` in [0, 1] (the layout of an
/// image in an NCHW tensor), clamped and rounded to 8 bits.
pub fn save_png_rgb(path: &Path, planes: &[f32], height: usize, width: usize) -> Result<()> {
    let plane = height * width;
    check_len(path, planes.len(), 3 * plane, "3·height·width")?;
    let mut bytes = Vec::with_capacity(3 * plane);
    for i in 0..plane {
        for c in 0..3 {
            bytes.push(to_u8(planes[c * plane + i]));
        }
    }
    write_png(path, &bytes, height, width, png::ColorType::Rgb)
}

/// Luminance of an RGB pixel, ITU-R BT.601 weights as PIL's `convert("L")` uses them:
/// `L = 0.299 R + 0.587 G + 0.114 B`.
pub fn luminance(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// A decoded image: `height × width` pixels of `components` interleaved bytes (1 gray,
/// 2 gray + alpha, 3 RGB, 4 RGBA).
struct Decoded {
    width: usize,
    height: usize,
    components: usize,
    bytes: Vec<u8>,
}

impl Decoded {
    /// Writes the image as `channels` planes of `height × width` into `out`: converted to
    /// gray or RGB (alpha dropped, as PIL's `convert` does), scaled to [0, 1], resized.
    fn to_planes(&self, channels: usize, height: usize, width: usize, out: &mut [f32]) {
        let n = self.width * self.height;
        let k = self.components;
        let px = |i: usize, c: usize| to_unit(self.bytes[i * k + c]);
        let mut planes = vec![0.0f32; channels * n];
        for i in 0..n {
            match (channels, k) {
                (1, 1 | 2) => planes[i] = px(i, 0),
                (1, _) => planes[i] = luminance(px(i, 0), px(i, 1), px(i, 2)),
                (_, 1 | 2) => {
                    let v = px(i, 0);
                    (0..3).for_each(|c| planes[c * n + i] = v);
                }
                _ => (0..3).for_each(|c| planes[c * n + i] = px(i, c)),
            }
        }
        let out_plane = height * width;
        for c in 0..channels {
            resize_plane(
                &planes[c * n..(c + 1) * n],
                self.height,
                self.width,
                &mut out[c * out_plane..(c + 1) * out_plane],
                height,
                width,
            );
        }
    }
}

/// Decodes a PNG or a JPEG, recognised by its first bytes, not by its name.
fn decode(path: &Path) -> Result<Decoded> {
    let bytes = std::fs::read(path).map_err(|source| Error::io(path, source))?;
    // Decoders' messages may span lines; errors are one line.
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let detail = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Error::format(path, format!("cannot decode this {what} image ({detail})"))
    };
    if bytes.starts_with(b"\x89PNG") {
        let mut decoder = png::Decoder::new(Cursor::new(&bytes[..]));
        // Palette, low bit depths and tRNS to 8-bit gray/RGB(A); 16 bits to 8.
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().map_err(|e| fail("PNG", &e))?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| fail("PNG", &"too large"))?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).map_err(|e| fail("PNG", &e))?;
        buf.truncate(info.buffer_size());
        let components = info.color_type.samples();
        Ok(Decoded {
            width: info.width as usize,
            height: info.height as usize,
            components,
            bytes: buf,
        })
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(&bytes[..]), options);
        let pixels = decoder.decode().map_err(|e| fail("JPEG", &e))?;
        let info = decoder.info().ok_or_else(|| fail("JPEG", &"no header"))?;
        let (width, height) = (usize::from(info.width), usize::from(info.height));
        if pixels.len() != width * height * 3 {
            return Err(fail("JPEG", &"unexpected decoded size"));
        }
        Ok(Decoded {
            width,
            height,
            components: 3,
            bytes: pixels,
        })
    } else {
        Err(Error::format(path, "not a PNG or JPEG image"))
    }
}

/// Resizes one plane with a triangle (bilinear) filter whose support widens with the
/// downscaling factor, the resampling PIL's `resize(BILINEAR)` and torchvision's
/// `Resize(antialias=True)` perform. Upscaling is plain bilinear interpolation with
/// half-pixel centres (PyTorch's `align_corners=False`); the same size copies exactly.
fn resize_plane(src: &[f32], ih: usize, iw: usize, dst: &mut [f32], oh: usize, ow: usize) {
    let rows = filter_taps(ih, oh);
    let cols = filter_taps(iw, ow);
    // Horizontal pass into (ih, ow), then vertical pass into (oh, ow).
    let mut tmp = vec![0.0f32; ih * ow];
    for y in 0..ih {
        let line = &src[y * iw..(y + 1) * iw];
        for (x, (start, weights)) in cols.iter().enumerate() {
            tmp[y * ow + x] = weights
                .iter()
                .zip(&line[*start..])
                .map(|(w, v)| w * v)
                .sum();
        }
    }
    for (y, (start, weights)) in rows.iter().enumerate() {
        let out = &mut dst[y * ow..(y + 1) * ow];
        out.fill(0.0);
        for (k, w) in weights.iter().enumerate() {
            let line = &tmp[(start + k) * ow..(start + k + 1) * ow];
            for (o, v) in out.iter_mut().zip(line) {
                *o += w * v;
            }
        }
    }
}

/// For each of `out_len` outputs: the first input index and the normalised weights of the
/// inputs from there on. Output `i` is centred at input coordinate `(i + ½)·in/out`; input
/// `j` (centre `j + ½`) gets weight `tri((j + ½ − centre) / s)`, `tri(t) = max(0, 1 − |t|)`,
/// `s = max(in/out, 1)`.
fn filter_taps(in_len: usize, out_len: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = in_len as f64 / out_len as f64;
    let s = scale.max(1.0);
    (0..out_len)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - s).floor().max(0.0)) as usize;
            let hi = ((centre + s).ceil() as usize).min(in_len);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre) / s).abs()).max(0.0))
                .collect();
            let total: f64 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= total);
            (lo, weights.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

/// The sorted class subfolders of `dir`, with the errors a user meets first.
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let entries = sorted_entries(dir)?;
    let layout = "expected one subfolder per class holding its images: DIR/<class>/*.png|jpg|jpeg";
    if entries.is_empty() {
        return Err(Error::format(dir, format!("empty folder; {layout}")));
    }
    let classes: Vec<String> = entries
        .iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if classes.is_empty() {
        return Err(Error::format(dir, format!("no class subfolders; {layout}")));
    }
    Ok(classes)
}

/// The non-hidden entries of a directory, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let io_err = |source| Error::io(dir, source);
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            entries.push(entry.path());
        }
    }
    entries.sort();
    Ok(entries)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

fn check_target(channels: usize, height: usize, width: usize) -> Result<()> {
    if channels != 1 && channels != 3 {
        return Err(Error::config(
            "image loader",
            format!("images can be loaded with 1 (gray) or 3 (RGB) channels, not {channels}"),
        ));
    }
    if height == 0 || width == 0 {
        return Err(Error::config(
            "image loader",
            format!("cannot resize images to {height}×{width}"),
        ));
    }
    Ok(())
}

fn check_len(path: &Path, got: usize, expected: usize, what: &str) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    Err(Error::config(
        "png writer",
        format!(
            "{}: {got} values given, but {what} = {expected}",
            path.display()
        ),
    ))
}

/// [0, 1] → 0..=255, clamped and rounded.
fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Encodes 8-bit pixels (`color` says how many channels, interleaved) as PNG and writes
/// the file atomically: the one PNG writer of the crate.
pub(crate) fn write_png(
    path: &Path,
    bytes: &[u8],
    height: usize,
    width: usize,
    color: png::ColorType,
) -> Result<()> {
    let encoded = encode_png(bytes, height, width, color)
        .map_err(|e| Error::format(path, format!("cannot encode PNG ({e})")))?;
    ocellus::checkpoint::write_atomically(path, &encoded)
}

/// An 8-bit PNG of `height × width` pixels (`bytes` row-major, channels interleaved), in
/// memory: the one PNG encoder of the crate.
pub fn encode_png(
    bytes: &[u8],
    height: usize,
    width: usize,
    color: png::ColorType,
) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut encoded = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut encoded, width as u32, height as u32);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(bytes)?;
        writer.finish()?;
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×2 RGB image: row 0 red, green, blue, white; row 1 black, gray 51, (0,0,255),
    /// (255, 255, 0).
    fn rgb_planes() -> Vec<f32> {
        let px: [[u8; 3]; 8] = [
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [255, 255, 255],
            [0, 0, 0],
            [51, 51, 51],
            [0, 0, 255],
            [255, 255, 0],
        ];
        (0..3)
            .flat_map(|c| px.iter().map(move |p| p[c] as f32 / 255.0))
            .collect()
    }

    #[test]
    fn png_round_trip_in_gray_and_rgb() {
        let tmp = tempfile::tempdir().unwrap();
        let gray: Vec<f32> = (0..6).map(|v| v as f32 * 51.0 / 255.0).collect();
        let path = tmp.path().join("gray.png");
        save_png_gray(&path, &gray, 2, 3).unwrap();
        let t = load_image(&path, 1, 2, 3).unwrap();
        assert_eq!(t.shape(), &[1, 1, 2, 3]);
        assert_eq!(t.data(), gray.as_slice());
        // Gray as RGB: the value in every channel.
        let t = load_image(&path, 3, 2, 3).unwrap();
        assert_eq!(&t.data()[6..12], gray.as_slice());

        let rgb = rgb_planes();
        let path = tmp.path().join("colour.png");
        save_png_rgb(&path, &rgb, 2, 4).unwrap();
        assert_eq!(load_image(&path, 3, 2, 4).unwrap().data(), rgb.as_slice());
        // RGB as gray: 0.299 R + 0.587 G + 0.114 B.
        let t = load_image(&path, 1, 2, 4).unwrap();
        let expected = [0.299, 0.587, 0.114, 1.0, 0.0, 0.2, 0.114, 0.886];
        for (got, want) in t.data().iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{:?}", t.data());
        }
        assert!(save_png_gray(&path, &gray, 3, 3).is_err());
    }

    #[test]
    fn jpeg_from_an_independent_encoder_decodes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("two_blocks.jpg");
        std::fs::write(
            &path,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/testdata/two_blocks.jpg"
            )),
        )
        .unwrap();
        let t = load_image(&path, 3, 8, 16).unwrap();
        let left = [200.0, 30.0, 40.0];
        let right = [20.0, 60.0, 220.0];
        for c in 0..3 {
            for (x, want) in [(2, left[c]), (13, right[c])] {
                let got = t.data()[c * 128 + 4 * 16 + x] * 255.0;
                assert!(
                    (got - want).abs() <= 3.0,
                    "channel {c} column {x}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn resize_follows_the_triangle_filter() {
        // Upscaling 2 → 4 is bilinear with half-pixel centres, as PyTorch's
        // interpolate(mode="bilinear", align_corners=False): [0, 1] → [0, ¼, ¾, 1].
        let mut out = vec![0.0; 4];
        resize_plane(&[0.0, 1.0], 1, 2, &mut out, 1, 4);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        // Downscaling 4 → 2 widens the triangle to 2 input pixels: output 0 is centred at
        // 1.0 and weighs inputs 0, 1, 2 by ¾, ¾, ¼ (sum 7/4).
        let mut out = vec![0.0; 2];
        resize_plane(&[0.0, 1.0, 2.0, 3.0], 1, 4, &mut out, 1, 2);
        assert!((out[0] - 1.25 / 1.75).abs() < 1e-6 && (out[1] - (3.0 - 1.25 / 1.75)).abs() < 1e-6);
        // Same size copies; a constant stays constant at any size.
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut out = vec![0.0; 12];
        resize_plane(&src, 3, 4, &mut out, 3, 4);
        assert_eq!(out, src);
        let mut out = vec![0.0; 35];
        resize_plane(&[0.4; 12], 3, 4, &mut out, 5, 7);
        assert!(out.iter().all(|v| (v - 0.4).abs() < 1e-6));
    }

    #[test]
    fn folder_classes_are_sorted_subfolders_and_images_are_resized() {
        let tmp = tempfile::tempdir().unwrap();
        for (class, values) in [("zebra", [0.0, 0.2]), ("ant", [0.6, 1.0])] {
            std::fs::create_dir(tmp.path().join(class)).unwrap();
            for (i, v) in values.iter().enumerate() {
                save_png_gray(
                    &tmp.path().join(class).join(format!("{i}.PNG")),
                    &[*v; 20],
                    4,
                    5,
                )
                .unwrap();
            }
            std::fs::write(tmp.path().join(class).join("notes.txt"), "skipped").unwrap();
        }
        std::fs::create_dir(tmp.path().join(".hidden")).unwrap();
        let d = load_folder(tmp.path(), 3, 2, 2).unwrap();
        assert_eq!(d.classes(), &["ant".to_string(), "zebra".to_string()]);
        assert_eq!(d.labels(), &[0, 0, 1, 1]);
        assert_eq!(d.images().shape(), &[4, 3, 2, 2]);
        let firsts: Vec<f32> = (0..4).map(|i| d.image(i)[0]).collect();
        for (got, want) in firsts.iter().zip([0.6, 1.0, 0.0, 0.2]) {
            assert!((got - want).abs() < 1e-6, "{firsts:?}");
        }
    }

    #[test]
    fn folder_errors_name_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let text = |r: Result<Dataset>| r.unwrap_err().to_string();
        assert!(text(load_folder(&tmp.path().join("absent"), 1, 4, 4)).contains("absent"));
        assert!(text(load_folder(tmp.path(), 1, 4, 4)).contains("empty folder"));
        std::fs::write(tmp.path().join("loose.png"), b"x").unwrap();
        assert!(text(load_folder(tmp.path(), 1, 4, 4)).contains("no class subfolders"));
        std::fs::create_dir(tmp.path().join("cats")).unwrap();
        let e = text(load_folder(tmp.path(), 1, 4, 4));
        assert!(e.contains("cats") && e.contains("no .png"), "{e}");
        save_png_gray(&tmp.path().join("cats/a.png"), &[0.5; 4], 2, 2).unwrap();
        std::fs::write(tmp.path().join("cats/b.jpg"), b"not an image at all").unwrap();
        let e = text(load_folder(tmp.path(), 1, 4, 4));
        assert!(
            e.contains("b.jpg") && e.contains("not a PNG or JPEG"),
            "{e}"
        );
        std::fs::write(tmp.path().join("cats/b.jpg"), b"\x89PNG\r\n\x1a\n broken").unwrap();
        let e = text(load_folder(tmp.path(), 1, 4, 4));
        assert!(
            e.contains("b.jpg") && e.contains("cannot decode this PNG"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        std::fs::remove_file(tmp.path().join("cats/b.jpg")).unwrap();
        assert_eq!(load_folder(tmp.path(), 1, 4, 4).unwrap().len(), 1);
        assert!(load_folder(tmp.path(), 2, 4, 4).is_err());
    }
}
