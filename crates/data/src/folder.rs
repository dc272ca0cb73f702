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

/// The largest width or height of an image read: 16 384 pixels (zune-jpeg's own default).
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// The most pixels an image read may have, the decode budget: 2^26 = 67 108 864 (8192×8192,
/// a 67-megapixel photo). Decoding holds at most 4 bytes a pixel (8-bit RGBA) and
/// converting it one `f32` plane more, 512 MiB in all. Larger images are refused from the
/// size their header declares, before anything is decoded: resize them first.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;

/// The largest image file read: 512 MiB, more than an uncompressed PNG of
/// [`MAX_IMAGE_PIXELS`] in 8-bit RGBA.
pub const MAX_IMAGE_FILE_BYTES: u64 = 1 << 29;

/// What the PNG decoder may allocate besides the image (the `Limits` of the png crate):
/// metadata chunks such as Exif and its row buffers, 16 MiB. Text and ICC chunks are
/// skipped unread.
pub const MAX_PNG_DECODER_BYTES: usize = 16 << 20;

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
            let image = decode(&read_image_file(path)?, path)?;
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
    decode_image(&read_image_file(path)?, path, channels, height, width)
}

/// [`load_image`] for the bytes of an image file already in memory (PNG or JPEG, told by
/// the first bytes); `source` names the image in errors.
pub fn decode_image(
    bytes: &[u8],
    source: &Path,
    channels: usize,
    height: usize,
    width: usize,
) -> Result<Tensor> {
    check_target(channels, height, width)?;
    let image = decode(bytes, source)?;
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
    /// One plane at full size is held at a time.
    fn to_planes(&self, channels: usize, height: usize, width: usize, out: &mut [f32]) {
        let n = self.width * self.height;
        let k = self.components;
        let px = |i: usize, c: usize| to_unit(self.bytes[i * k + c]);
        let mut plane = vec![0.0f32; n];
        let out_plane = height * width;
        for c in 0..channels {
            for (i, v) in plane.iter_mut().enumerate() {
                *v = match (channels, k) {
                    (_, 1 | 2) => px(i, 0),
                    (1, _) => luminance(px(i, 0), px(i, 1), px(i, 2)),
                    _ => px(i, c),
                };
            }
            resize_plane(
                &plane,
                self.height,
                self.width,
                &mut out[c * out_plane..(c + 1) * out_plane],
                height,
                width,
            );
        }
    }
}

/// The bytes of an image file, of at most [`MAX_IMAGE_FILE_BYTES`]. The first bytes are
/// checked before the rest is read, so a device such as `/dev/zero` fails at once.
fn read_image_file(path: &Path) -> Result<Vec<u8>> {
    let what = "images (MAX_IMAGE_FILE_BYTES)";
    let mut file = ocellus::files::open(path, MAX_IMAGE_FILE_BYTES, what)?;
    let mut start = vec![0u8; 8];
    let got = ocellus::files::read_full(&mut file.reader, &mut start)
        .map_err(|source| Error::io(path, source))?;
    start.truncate(got);
    image_kind(&start, path)?;
    ocellus::files::read_rest(path, file, start, what)
}

#[derive(Clone, Copy, PartialEq)]
enum ImageKind {
    Png,
    Jpeg,
}

/// PNG or JPEG, told by the first bytes of a file, not by its name.
fn image_kind(bytes: &[u8], path: &Path) -> Result<ImageKind> {
    if bytes.starts_with(b"\x89PNG") {
        Ok(ImageKind::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Ok(ImageKind::Jpeg)
    } else {
        let start: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(Error::format(
            path,
            format!(
                "not a PNG or JPEG image (it starts with [{}]; PNG starts with 89 50 4e 47, JPEG with ff d8 ff)",
                start.join(" ")
            ),
        ))
    }
}

/// Refuses an image whose declared size is beyond [`MAX_IMAGE_SIDE`] or
/// [`MAX_IMAGE_PIXELS`], before it is decoded.
fn check_image_size(path: &Path, what: &str, width: u32, height: u32) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    let problem = if width == 0 || height == 0 {
        "no pixels".to_string()
    } else if width.max(height) > MAX_IMAGE_SIDE {
        format!("a side of more than {MAX_IMAGE_SIDE} pixels (MAX_IMAGE_SIDE)")
    } else if pixels > MAX_IMAGE_PIXELS {
        format!("{pixels} pixels, more than the limit of {MAX_IMAGE_PIXELS} (MAX_IMAGE_PIXELS)")
    } else {
        return Ok(());
    };
    let hint = if pixels == 0 { "" } else { "; resize it first" };
    Err(Error::format(
        path,
        format!("this {what} image declares {width}×{height} pixels: {problem}{hint}"),
    ))
}

/// Decodes a PNG or a JPEG, recognised by its first bytes, not by its name. The size the
/// header declares is checked before any pixel is decoded.
fn decode(bytes: &[u8], path: &Path) -> Result<Decoded> {
    // Decoders' messages may span lines; errors are one line.
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let detail = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Error::format(path, format!("cannot decode this {what} image ({detail})"))
    };
    let kind = image_kind(bytes, path)?;
    let image = match kind {
        ImageKind::Png => {
            let limits = png::Limits {
                bytes: MAX_PNG_DECODER_BYTES,
            };
            let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
            decoder.set_ignore_text_chunk(true);
            decoder.set_ignore_iccp_chunk(true);
            // Palette, low bit depths and tRNS to 8-bit gray/RGB(A); 16 bits to 8.
            decoder.set_transformations(png::Transformations::normalize_to_color8());
            let header = decoder.read_header_info().map_err(|e| fail("PNG", &e))?;
            check_image_size(path, "PNG", header.width, header.height)?;
            let mut reader = decoder.read_info().map_err(|e| fail("PNG", &e))?;
            // The PNG specification (11.2.3) makes a palette whole RGB entries; png 0.18.1
            // accepts any length from 3 to 768 bytes and then panics expanding the rest.
            if let Some(palette) = reader.info().palette.as_deref() {
                if !palette.len().is_multiple_of(3) {
                    let message = format!(
                        "its palette (PLTE) has {} bytes, not whole 3-byte RGB entries",
                        palette.len()
                    );
                    return Err(fail("PNG", &message));
                }
            }
            let size = reader
                .output_buffer_size()
                .ok_or_else(|| fail("PNG", &"too large"))?;
            let mut buf = vec![0; size];
            let info = reader.next_frame(&mut buf).map_err(|e| fail("PNG", &e))?;
            buf.truncate(info.buffer_size());
            Decoded {
                width: info.width as usize,
                height: info.height as usize,
                components: info.color_type.samples(),
                bytes: buf,
            }
        }
        ImageKind::Jpeg => {
            // Strict: a truncated or damaged scan is an error, not a gray-filled picture.
            // The size limits are ours, checked below with a message that names them.
            let options = DecoderOptions::default()
                .jpeg_set_out_colorspace(ColorSpace::RGB)
                .set_strict_mode(true)
                .set_max_width(usize::from(u16::MAX))
                .set_max_height(usize::from(u16::MAX));
            let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
            decoder.decode_headers().map_err(|e| fail("JPEG", &e))?;
            let info = decoder.info().ok_or_else(|| fail("JPEG", &"no header"))?;
            check_image_size(path, "JPEG", info.width.into(), info.height.into())?;
            let pixels = decoder.decode().map_err(|e| fail("JPEG", &e))?;
            if !reaches_end_of_image(bytes) {
                return Err(fail(
                    "JPEG",
                    &"truncated: the data ends before the end-of-image marker ff d9",
                ));
            }
            Decoded {
                width: usize::from(info.width),
                height: usize::from(info.height),
                components: 3,
                bytes: pixels,
            }
        }
    };
    if image.bytes.len() != image.width * image.height * image.components {
        let name = if kind == ImageKind::Png {
            "PNG"
        } else {
            "JPEG"
        };
        return Err(fail(name, &"unexpected decoded size"));
    }
    Ok(image)
}

/// Whether a JPEG's segments run to its end-of-image marker (`ff d9`). A file cut short
/// ends before it, and decoders, zune-jpeg's strict mode included, fill the scan data
/// they miss with gray when the cut falls in the last row of blocks. Segments with a
/// length (headers, metadata that may embed a thumbnail with its own markers) are
/// skipped whole; in entropy-coded data a `ff` byte is always followed by `00` (a
/// stuffed byte) or a restart marker, so a scan is skipped byte by byte.
fn reaches_end_of_image(bytes: &[u8]) -> bool {
    let mut i = 2; // after the start-of-image marker
    while i + 1 < bytes.len() {
        if bytes[i] != 0xff {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            0xd9 => return true,
            // A fill byte before a marker.
            0xff => i += 1,
            // A stuffed byte, TEM, restart markers: no length follows.
            0x00 | 0x01 | 0xd0..=0xd7 => i += 2,
            _ => match bytes.get(i + 2..i + 4) {
                Some(len) => i += 2 + usize::from(u16::from_be_bytes([len[0], len[1]])),
                None => return false,
            },
        }
    }
    false
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

    const TWO_BLOCKS: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/two_blocks.jpg"
    ));

    /// A PNG chunk: length, type, data and the CRC of type and data.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
        out
    }

    /// A PNG of a few hundred bytes whose header (with a valid CRC) declares an 8-bit RGB
    /// image of `width × height`, followed by the pixels of one row only.
    fn png_declaring(width: u32, height: u32) -> Vec<u8> {
        use std::io::Write;
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0; 1 + 3 * width as usize]).unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IDAT", &z.finish().unwrap()));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    fn image_error(bytes: &[u8], name: &str) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let text = load_image(&path, 3, 8, 8).unwrap_err().to_string();
        assert!(text.contains(name), "{text}");
        assert!(!text.contains('\n'), "{text}");
        // The folder loader meets the same check.
        let class = tmp.path().join("set").join("class");
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join(name), bytes).unwrap();
        let folder = load_folder(&tmp.path().join("set"), 1, 8, 8).unwrap_err();
        assert!(folder.to_string().contains(name), "{folder}");
        text
    }

    #[test]
    fn a_png_header_declaring_a_huge_height_is_refused_before_decoding() {
        // 4000 × 4 000 000 RGB would need 48 GB.
        let png = png_declaring(4000, 4_000_000);
        assert!(png.len() < 400, "{} bytes", png.len());
        let text = image_error(&png, "tall.png");
        assert!(
            text.contains("4000×4000000 pixels")
                && text.contains("more than 16384 pixels (MAX_IMAGE_SIDE)")
                && text.contains("resize it first"),
            "{text}"
        );
    }

    #[test]
    fn an_image_beyond_the_pixel_budget_is_refused_before_decoding() {
        let text = image_error(&png_declaring(9000, 9000), "big.png");
        assert!(
            text.contains("9000×9000 pixels")
                && text.contains("81000000 pixels, more than the limit of 67108864")
                && text.contains("MAX_IMAGE_PIXELS"),
            "{text}"
        );
        // The same size in a JPEG's frame header (SOF0 at byte 158: its height at +5, its
        // width at +7).
        let mut jpeg = TWO_BLOCKS.to_vec();
        assert_eq!(jpeg[158..160], [0xff, 0xc0]);
        jpeg[163..165].copy_from_slice(&9000u16.to_be_bytes());
        jpeg[165..167].copy_from_slice(&9000u16.to_be_bytes());
        let text = image_error(&jpeg, "big.jpg");
        assert!(
            text.contains("JPEG image declares 9000×9000 pixels")
                && text.contains("MAX_IMAGE_PIXELS"),
            "{text}"
        );
    }

    #[test]
    fn a_valid_png_wider_than_the_limit_is_refused_with_a_hint_to_resize() {
        let wide = encode_png(&[128; 16_385], 1, 16_385, png::ColorType::Grayscale).unwrap();
        let text = image_error(&wide, "wide.png");
        assert!(
            text.contains("16385×1 pixels") && text.contains("resize it first"),
            "{text}"
        );
        // At the limit it loads.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("limit.png");
        let edge = encode_png(&[128; 16_384], 1, 16_384, png::ColorType::Grayscale).unwrap();
        std::fs::write(&path, edge).unwrap();
        assert_eq!(load_image(&path, 1, 1, 4).unwrap().shape(), &[1, 1, 1, 4]);
    }

    #[test]
    fn a_truncated_jpeg_is_an_error() {
        // The scan data of two_blocks.jpg runs from byte 281 to the end-of-image marker at
        // 290; a cut anywhere in it loses pixels.
        assert_eq!(TWO_BLOCKS[267..269], [0xff, 0xda]);
        for cut in [282, 285, 288, 290] {
            let text = image_error(&TWO_BLOCKS[..cut], "cut.jpg");
            assert!(
                text.contains("cannot decode this JPEG image"),
                "cut at {cut}: {text}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_not_read_as_an_image() {
        let text = load_image(Path::new("/dev/zero"), 1, 4, 4)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("/dev/zero")
                && text.contains("not a PNG or JPEG image (it starts with [00 00 00 00"),
            "{text}"
        );
    }

    #[test]
    fn image_bytes_decode_as_the_file_does() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("two_blocks.jpg");
        std::fs::write(&path, TWO_BLOCKS).unwrap();
        let from_file = load_image(&path, 3, 8, 16).unwrap();
        let from_bytes = decode_image(TWO_BLOCKS, &path, 3, 8, 16).unwrap();
        assert_eq!(from_file, from_bytes);
        let text = decode_image(b"GIF89a", Path::new("anim.gif"), 1, 2, 2)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("anim.gif") && text.contains("not a PNG or JPEG"),
            "{text}"
        );
    }

    /// Found by fuzzing: a PLTE chunk of 8 bytes (two RGB entries and two bytes) made the
    /// png crate panic while expanding the palette.
    #[test]
    fn a_png_palette_of_partial_entries_is_an_error() {
        use std::io::Write;
        let mut ihdr = 4u32.to_be_bytes().to_vec();
        ihdr.extend(2u32.to_be_bytes());
        ihdr.extend([8, 3, 0, 0, 0]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&[0, 0, 1, 0, 1, 0, 1, 1, 0, 1]).unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"PLTE", &[0, 0, 0, 255, 255, 255, 200, 30]));
        png.extend(chunk(b"IDAT", &z.finish().unwrap()));
        png.extend(chunk(b"IEND", &[]));
        let text = image_error(&png, "palette.png");
        assert!(
            text.contains("cannot decode this PNG image")
                && text.contains("palette (PLTE) has 8 bytes"),
            "{text}"
        );
        // The fuzzer's own input (its chunks given valid CRCs, which fuzzing builds of
        // the png crate do not check): 134×2, 2-bit, interlaced, a palette of 8 bytes,
        // cut short after its image data.
        let mut found = b"\x89PNG\r\n\x1a\n".to_vec();
        found.extend(chunk(b"IHDR", &[0, 0, 0, 0x86, 0, 0, 0, 2, 2, 3, 0, 0, 1]));
        found.extend(chunk(b"PLTE", b"\0\0\0\xff\xff\xff\xc8\x1e"));
        found.extend(chunk(b"IDAT", b"x\xdac \0\0\0\x90f\x90\x06\0"));
        let text = image_error(&found, "found.png");
        assert!(text.contains("palette (PLTE) has 8 bytes"), "{text}");
    }

    /// Found by fuzzing: a damaged JPEG whose DC prediction times its quantisation value
    /// overflows `i32` inside zune-jpeg 0.5.15, a panic wherever overflow checks are on
    /// (the workspace builds zune-jpeg without them, as its release builds and its next
    /// version's wrapping multiplication behave). Decoding it is an error or a picture.
    #[test]
    fn a_jpeg_whose_coefficients_overflow_does_not_panic() {
        let bytes = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/overflowing_dc.jpg"
        ));
        for channels in [1, 3] {
            if let Err(e) = decode_image(bytes, Path::new("overflowing_dc.jpg"), channels, 6, 20) {
                let text = e.to_string();
                assert!(
                    text.contains("overflowing_dc.jpg") && text.contains("JPEG"),
                    "{text}"
                );
            }
        }
    }
}
