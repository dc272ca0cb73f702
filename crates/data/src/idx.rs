//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic `0x00000803` for
//! images, `0x00000801` for labels, then one `u32` per dimension) followed by `u8` values.
//! Files may be raw or gzipped; gzip is recognised by its magic bytes `1f 8b`, not by the
//! file name.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{Dataset, Splits};
use ocellus::error::{Error, Result};

/// Magic number of an IDX file of `u8` images: type `0x08` (unsigned byte), 3 dimensions.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels: type `0x08` (unsigned byte), 1 dimension.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Fashion-MNIST's ten classes, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// MNIST's ten classes: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Where Debian's `dataset-fashion-mnist` package installs the four files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The four files of an IDX data set, without the optional `.gz`.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Which IDX data set a directory holds: the files are alike, the class names differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxKind {
    Mnist,
    FashionMnist,
}

impl IdxKind {
    /// The name used on the command line: `mnist` or `fashion-mnist`.
    pub fn name(self) -> &'static str {
        match self {
            IdxKind::Mnist => "mnist",
            IdxKind::FashionMnist => "fashion-mnist",
        }
    }

    /// Class names in label order.
    pub fn classes(self) -> &'static [&'static str] {
        match self {
            IdxKind::Mnist => &MNIST_CLASSES,
            IdxKind::FashionMnist => &FASHION_MNIST_CLASSES,
        }
    }

    /// How to get the files, for error messages.
    fn install_hint(self) -> String {
        let files = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte \
                     and t10k-labels-idx1-ubyte, each raw or .gz";
        match self {
            IdxKind::FashionMnist => format!(
                "`apt-get install dataset-fashion-mnist` puts them in {FASHION_MNIST_DIR}, \
                 or point --data-dir to a folder with the four files ({files})"
            ),
            IdxKind::Mnist => {
                format!("point --data-dir to a folder with the four MNIST files ({files})")
            }
        }
    }
}

/// Images of an IDX file: `n` images of `rows × cols` bytes, row-major, one after another.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxImages {
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    /// (n, rows, cols)
    pub pixels: Vec<u8>,
}

/// Loads the training and test sets of `kind` from `dir` (the four standard files, raw or
/// gzipped), pixels scaled to [0, 1], images `(N, 1, 28, 28)`. The four files are read
/// and decompressed in parallel.
pub fn load(dir: &Path, kind: IdxKind) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(not_found(
            dir,
            format!("no such directory; {}", kind.install_hint()),
        ));
    }
    let paths: Vec<PathBuf> = FILES
        .iter()
        .map(|name| find_file(dir, name, kind))
        .collect::<Result<_>>()?;
    let (train, test) = rayon::join(
        || load_pair(&paths[0], &paths[1], kind),
        || load_pair(&paths[2], &paths[3], kind),
    );
    Ok(Splits {
        train: train?,
        test: test?,
    })
}

/// `dir/name`, or `dir/name.gz` if only that exists.
fn find_file(dir: &Path, name: &str, kind: IdxKind) -> Result<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(not_found(
        &dir.join(format!("{name}(.gz)")),
        format!("file not found; {}", kind.install_hint()),
    ))
}

fn not_found(path: &Path, message: String) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::NotFound, message),
    )
}

/// One images file and its labels file as a data set, checked against each other.
fn load_pair(images_path: &Path, labels_path: &Path, kind: IdxKind) -> Result<Dataset> {
    let (images, labels) = rayon::join(
        || read_images_file(images_path),
        || read_labels(labels_path),
    );
    let ((file, [n, rows, cols]), labels) = (images?, labels?);
    if n != labels.len() {
        return Err(Error::Format {
            path: labels_path.display().to_string(),
            message: format!(
                "{} labels, but {} holds {} images",
                labels.len(),
                images_path.display(),
                n
            ),
        });
    }
    let classes = kind.classes();
    if let Some((i, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= classes.len())
    {
        return Err(Error::Format {
            path: labels_path.display().to_string(),
            message: format!(
                "label {label} at index {i} is out of range for the {} classes of {}",
                classes.len(),
                kind.name()
            ),
        });
    }
    Dataset::from_u8(
        [n, 1, rows, cols],
        &file[IMAGES_HEADER_LEN..],
        labels.into_iter().map(usize::from).collect(),
        classes.iter().map(|c| c.to_string()).collect(),
    )
}

/// Reads an IDX images file (magic `0x00000803`), raw or gzipped.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let (mut pixels, [n, rows, cols]) = read_images_file(path)?;
    pixels.drain(..IMAGES_HEADER_LEN);
    Ok(IdxImages {
        n,
        rows,
        cols,
        pixels,
    })
}

/// Bytes of an IDX images header: magic and three dimensions.
const IMAGES_HEADER_LEN: usize = 16;

/// The checked, decompressed file (header included, so the pixels are not moved) and
/// `[n, rows, cols]`.
fn read_images_file(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let bytes = read_maybe_gzipped(path)?;
    let (dims, body) = parse_header(path, &bytes, IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    // Checked: a damaged header can promise more than fits in memory.
    let expected = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .unwrap_or(usize::MAX);
    check_body_len(path, body.len(), expected, || {
        format!("{n} images of {rows}×{cols}")
    })?;
    Ok((bytes, [n, rows, cols]))
}

/// Reads an IDX labels file (magic `0x00000801`), raw or gzipped.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gzipped(path)?;
    let (dims, body) = parse_header(path, &bytes, LABELS_MAGIC, 1)?;
    check_body_len(path, body.len(), dims[0], || format!("{} labels", dims[0]))?;
    Ok(body.to_vec())
}

/// The whole file, decompressed if it starts with the gzip magic bytes `1f 8b`.
fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>> {
    let io_err = |source| Error::io(path, source);
    let bytes = std::fs::read(path).map_err(io_err)?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    // The gzip trailer ends with the uncompressed size modulo 2^32 (RFC 1952, ISIZE):
    // a good capacity hint, capped in case the trailer is damaged.
    let hint = bytes
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes(bytes[at..].try_into().unwrap()) as usize)
        .unwrap_or(0)
        .min(64 * bytes.len() + 1024);
    let mut out = Vec::with_capacity(hint);
    MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| Error::format(path, format!("truncated or corrupt gzip data ({e})")))?;
    Ok(out)
}

/// Checks the magic number and reads `ndims` big-endian dimensions; returns them and the
/// bytes after the header.
fn parse_header<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    ndims: usize,
) -> Result<(Vec<usize>, &'a [u8])> {
    let format_err = |message: String| Error::format(path, message);
    let what = if magic == IMAGES_MAGIC {
        "IDX images"
    } else {
        "IDX labels"
    };
    let header_len = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(format_err(format!(
            "truncated: {} bytes, too short for an {what} header",
            bytes.len()
        )));
    }
    let found = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    if found != magic {
        let known = match found {
            IMAGES_MAGIC => " (an IDX images file)",
            LABELS_MAGIC => " (an IDX labels file)",
            _ => "",
        };
        return Err(format_err(format!(
            "not an {what} file: magic number 0x{found:08x}{known}, expected 0x{magic:08x}"
        )));
    }
    if bytes.len() < header_len {
        return Err(format_err(format!(
            "truncated: {} bytes, too short for an {what} header of {header_len} bytes",
            bytes.len()
        )));
    }
    let dims = (0..ndims)
        .map(|d| {
            let at = 4 + 4 * d;
            u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
        })
        .collect();
    Ok((dims, &bytes[header_len..]))
}

fn check_body_len(
    path: &Path,
    got: usize,
    expected: usize,
    what: impl Fn() -> String,
) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    let problem = if got < expected {
        "truncated"
    } else {
        "trailing bytes"
    };
    Err(Error::Format {
        path: path.display().to_string(),
        message: format!(
            "{problem}: the header promises {} ({expected} bytes) but {got} bytes follow it",
            what()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn images_file(n: usize, rows: usize, cols: usize) -> Vec<u8> {
        let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [n, rows, cols] {
            bytes.extend((d as u32).to_be_bytes());
        }
        bytes.extend((0..n * rows * cols).map(|i| (i * 7 % 256) as u8));
        bytes
    }

    fn labels_file(labels: &[u8]) -> Vec<u8> {
        let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
        bytes.extend((labels.len() as u32).to_be_bytes());
        bytes.extend_from_slice(labels);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A directory with the four files: 5 training and 3 test images of 4×3. The training
    /// files are gzipped (one under a name without `.gz`), the test files raw.
    fn write_set(dir: &Path) {
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            gzip(&images_file(5, 4, 3)),
        )
        .unwrap();
        // Gzipped although the name says raw: the magic bytes decide.
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            gzip(&labels_file(&[0, 9, 2, 3, 4])),
        )
        .unwrap();
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), images_file(3, 4, 3)).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels_file(&[7, 8, 1])).unwrap();
    }

    fn error_of(dir: &Path) -> String {
        let err = load(dir, IdxKind::FashionMnist).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        text
    }

    #[test]
    fn loads_raw_and_gzipped_files() {
        let tmp = tempfile::tempdir().unwrap();
        write_set(tmp.path());
        let splits = load(tmp.path(), IdxKind::FashionMnist).unwrap();
        assert_eq!(splits.train.images().shape(), &[5, 1, 4, 3]);
        assert_eq!(splits.test.images().shape(), &[3, 1, 4, 3]);
        assert_eq!(splits.train.labels(), &[0, 9, 2, 3, 4]);
        assert_eq!(splits.test.labels(), &[7, 8, 1]);
        assert_eq!(splits.train.classes()[0], "T-shirt/top");
        assert_eq!(splits.train.classes()[9], "Ankle boot");
        // Pixel i of the file holds (7·i) mod 256; image 4 starts at pixel 48.
        let pixel = |i: usize| (i * 7 % 256) as f32 / 255.0;
        let img = splits.train.image(4);
        assert_eq!(img[0], pixel(48));
        assert_eq!(img[11], pixel(59));
        let mnist = load(tmp.path(), IdxKind::Mnist).unwrap();
        assert_eq!(mnist.train.classes()[9], "9");
    }

    #[test]
    fn missing_directory_and_file_say_how_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let text = error_of(&tmp.path().join("nowhere"));
        assert!(
            text.contains("nowhere") && text.contains("apt-get install dataset-fashion-mnist"),
            "{text}"
        );
        write_set(tmp.path());
        std::fs::remove_file(tmp.path().join("t10k-images-idx3-ubyte")).unwrap();
        let text = error_of(tmp.path());
        assert!(text.contains("t10k-images-idx3-ubyte(.gz)"), "{text}");
        assert!(text.contains("--data-dir"), "{text}");
    }

    #[test]
    fn truncated_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_set(tmp.path());
        let raw = images_file(3, 4, 3);
        std::fs::write(
            tmp.path().join("t10k-images-idx3-ubyte"),
            &raw[..raw.len() - 1],
        )
        .unwrap();
        let text = error_of(tmp.path());
        assert!(
            text.contains("t10k-images-idx3-ubyte") && text.contains("truncated"),
            "{text}"
        );

        std::fs::write(tmp.path().join("t10k-images-idx3-ubyte"), &raw[..10]).unwrap();
        assert!(error_of(tmp.path()).contains("truncated"));

        // A gzip stream cut short.
        write_set(tmp.path());
        let gz = gzip(&images_file(5, 4, 3));
        std::fs::write(
            tmp.path().join("train-images-idx3-ubyte.gz"),
            &gz[..gz.len() / 2],
        )
        .unwrap();
        let text = error_of(tmp.path());
        assert!(
            text.contains("train-images-idx3-ubyte.gz") && text.contains("gzip"),
            "{text}"
        );
    }

    #[test]
    fn wrong_magic_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_set(tmp.path());
        // A labels file where the images should be.
        std::fs::write(
            tmp.path().join("t10k-images-idx3-ubyte"),
            labels_file(&[1, 2, 3]),
        )
        .unwrap();
        let text = error_of(tmp.path());
        assert!(text.contains("t10k-images-idx3-ubyte"), "{text}");
        assert!(
            text.contains("0x00000801") && text.contains("0x00000803"),
            "{text}"
        );
    }

    #[test]
    fn count_mismatch_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_set(tmp.path());
        std::fs::write(
            tmp.path().join("t10k-labels-idx1-ubyte"),
            labels_file(&[1, 2]),
        )
        .unwrap();
        let text = error_of(tmp.path());
        assert!(
            text.contains("t10k-labels-idx1-ubyte") && text.contains("2 labels"),
            "{text}"
        );
        assert!(text.contains("3 images"), "{text}");
    }

    #[test]
    fn labels_out_of_range_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_set(tmp.path());
        std::fs::write(
            tmp.path().join("t10k-labels-idx1-ubyte"),
            labels_file(&[1, 10, 2]),
        )
        .unwrap();
        let text = error_of(tmp.path());
        assert!(text.contains("label 10 at index 1"), "{text}");
        assert!(text.contains("10 classes of fashion-mnist"), "{text}");
    }
}
