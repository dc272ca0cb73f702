//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic `0x00000803` for
//! images, `0x00000801` for labels, then one `u32` per dimension) followed by `u8` values.
//! Files may be raw or gzipped; gzip is recognised by its magic bytes `1f 8b`, not by the
//! file name.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{Dataset, Splits};
use ocellus::error::{Error, Result};
use ocellus::files::read_full;

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

/// The most values an IDX file may declare after its header: 2^28 = 268 435 456, over
/// five times the 47 million bytes of MNIST's 60 000 training images (as `f32` such a data
/// set takes 1 GiB). A header that declares more is refused before anything is allocated.
pub const MAX_IDX_VALUES: u64 = 1 << 28;

/// One images file and its labels file as a data set, checked against each other.
fn load_pair(images_path: &Path, labels_path: &Path, kind: IdxKind) -> Result<Dataset> {
    let (images, labels) = rayon::join(|| read_images(images_path), || read_labels(labels_path));
    let (images, labels) = (images?, labels?);
    let IdxImages { n, rows, cols, .. } = images;
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
        &images.pixels,
        labels.into_iter().map(usize::from).collect(),
        classes.iter().map(|c| c.to_string()).collect(),
    )
}

/// Reads an IDX images file (magic `0x00000803`), raw or gzipped.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let (file, len) = open(path)?;
    images_from(file, len, path)
}

/// Reads an IDX labels file (magic `0x00000801`), raw or gzipped.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let (file, len) = open(path)?;
    labels_from(file, len, path)
}

/// [`read_images`] from the bytes of a file, raw or gzipped, as `reader` gives them;
/// `source` names the file in errors. The header is read first, then exactly the bytes
/// it promises (at most [`MAX_IDX_VALUES`]): a stream that is shorter or longer is an
/// error, found without reading past the promised end.
pub fn read_images_from(reader: impl Read, source: &Path) -> Result<IdxImages> {
    images_from(reader, None, source)
}

/// [`read_labels`] from the bytes of a file, raw or gzipped, as [`read_images_from`] reads
/// them.
pub fn read_labels_from(reader: impl Read, source: &Path) -> Result<Vec<u8>> {
    labels_from(reader, None, source)
}

fn images_from(reader: impl Read, file_len: Option<u64>, path: &Path) -> Result<IdxImages> {
    let describe = |d: &[u64]| format!("{} images of {}×{}", d[0], d[1], d[2]);
    let (dims, pixels) = read_idx(reader, file_len, path, IMAGES_MAGIC, describe)?;
    // Each dimension is at most MAX_IDX_VALUES, checked in read_idx_stream.
    let [n, rows, cols] = [dims[0], dims[1], dims[2]].map(|d| d as usize);
    Ok(IdxImages {
        n,
        rows,
        cols,
        pixels,
    })
}

fn labels_from(reader: impl Read, file_len: Option<u64>, path: &Path) -> Result<Vec<u8>> {
    let describe = |d: &[u64]| format!("{} labels", d[0]);
    let (_, labels) = read_idx(reader, file_len, path, LABELS_MAGIC, describe)?;
    Ok(labels)
}

/// The file and, for a regular file, its size.
fn open(path: &Path) -> Result<(BufReader<File>, Option<u64>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
    Ok((
        BufReader::new(file),
        metadata.is_file().then_some(metadata.len()),
    ))
}

/// Reads an IDX file of `magic` from `reader`, gunzipping it if it starts with the gzip
/// magic bytes `1f 8b`: its dimensions and the values after the header. `file_len` is
/// the size of a raw regular file, checked against the header before the values are read.
fn read_idx(
    mut reader: impl Read,
    file_len: Option<u64>,
    path: &Path,
    magic: u32,
    describe: impl Fn(&[u64]) -> String,
) -> Result<(Vec<u64>, Vec<u8>)> {
    let mut start = [0u8; 2];
    let got = read_full(&mut reader, &mut start).map_err(|e| Error::io(path, e))?;
    let stream = (&start[..got]).chain(reader);
    if start[..got] == [0x1f, 0x8b] {
        let gzip_err = |e: std::io::Error| {
            Error::format(path, format!("truncated or corrupt gzip data ({e})"))
        };
        read_idx_stream(
            MultiGzDecoder::new(stream),
            None,
            path,
            magic,
            describe,
            gzip_err,
        )
    } else {
        let io_err = |e| Error::io(path, e);
        read_idx_stream(stream, file_len, path, magic, describe, io_err)
    }
}

/// [`read_idx`] once the stream is raw IDX bytes; `read_err` turns a failed read into an
/// error.
fn read_idx_stream(
    mut stream: impl Read,
    file_len: Option<u64>,
    path: &Path,
    magic: u32,
    describe: impl Fn(&[u64]) -> String,
    read_err: impl Fn(std::io::Error) -> Error,
) -> Result<(Vec<u64>, Vec<u8>)> {
    let ndims = if magic == IMAGES_MAGIC { 3 } else { 1 };
    let header_len = 4 + 4 * ndims;
    let mut header = [0u8; 16];
    let got = read_full(&mut stream, &mut header[..header_len]).map_err(&read_err)?;
    let dims = parse_header(path, &header[..got], magic, ndims)?;
    // In u128 no product of three u32 dimensions overflows.
    let expected: u128 = dims.iter().map(|&d| u128::from(d)).product();
    let what = || describe(&dims);
    if let Some(len) = file_len {
        check_body_len(
            path,
            u128::from(len.saturating_sub(header_len as u64)),
            expected,
            what,
        )?;
    }
    // Zero dimensions count as one, so that every dimension and every product of them
    // (the size of one image) is bounded too, even in a file of no images.
    let bounded: u128 = dims.iter().map(|&d| u128::from(d.max(1))).product();
    if bounded > u128::from(MAX_IDX_VALUES) {
        return Err(Error::format(
            path,
            format!(
                "the header declares {}, more than the limit of {MAX_IDX_VALUES} bytes of \
                 values (MAX_IDX_VALUES)",
                what()
            ),
        ));
    }
    let expected = expected as usize;
    // A raw file's size was checked: one allocation. A stream's is grown as the bytes
    // arrive, since a header can promise more than the stream holds.
    let capacity = if file_len.is_some() {
        expected
    } else {
        expected.min(1 << 20)
    };
    let mut body = Vec::with_capacity(capacity);
    (&mut stream)
        .take(expected as u64)
        .read_to_end(&mut body)
        .map_err(&read_err)?;
    check_body_len(path, body.len() as u128, expected as u128, what)?;
    // One byte more tells whether the stream goes on, without reading (or inflating) the
    // rest of it.
    if read_full(&mut stream, &mut [0u8; 1]).map_err(&read_err)? > 0 {
        return Err(Error::format(
            path,
            format!(
                "trailing bytes: the header promises {} ({expected} bytes) but more follow \
                 them (reading stopped there)",
                what()
            ),
        ));
    }
    Ok((dims, body))
}

/// Checks the magic number and reads `ndims` big-endian dimensions from the bytes of a
/// header (fewer bytes than a whole header means the file is truncated).
fn parse_header(path: &Path, bytes: &[u8], magic: u32, ndims: usize) -> Result<Vec<u64>> {
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
    Ok((0..ndims)
        .map(|d| {
            let at = 4 + 4 * d;
            u64::from(u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()))
        })
        .collect())
}

fn check_body_len(path: &Path, got: u128, expected: u128, what: impl Fn() -> String) -> Result<()> {
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

    /// A gzip stream whose header promises 1 image of 2×2 but which inflates to 4 MiB more,
    /// then ends in a corrupt trailer: only a reader that inflates everything meets the
    /// corruption; one that stops after the promised bytes reports the trailing bytes.
    #[test]
    fn a_gzip_bomb_is_not_inflated_past_the_promised_bytes() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&images_file(1, 2, 2)).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..4 {
            enc.write_all(&zeros).unwrap();
        }
        let mut bomb = enc.finish().unwrap();
        assert!(bomb.len() < 16 << 10, "{} bytes", bomb.len());
        let end = bomb.len();
        bomb[end - 8..].copy_from_slice(&[0xff; 8]);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bomb-idx3-ubyte.gz");
        std::fs::write(&path, &bomb).unwrap();
        let text = read_images(&path).unwrap_err().to_string();
        assert!(text.contains("bomb-idx3-ubyte.gz"), "{text}");
        assert!(
            text.contains("trailing bytes")
                && text.contains("1 images of 2×2 (4 bytes)")
                && text.contains("reading stopped there"),
            "{text}"
        );
    }

    /// Reads from `bytes`, counting how many were taken.
    struct Counting<'a> {
        bytes: &'a [u8],
        taken: usize,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (&self.bytes[self.taken..]).read(buf)?;
            self.taken += n;
            Ok(n)
        }
    }

    #[test]
    fn an_endless_stream_is_read_only_one_byte_past_the_promised_ones() {
        let mut file = images_file(2, 3, 3);
        file.extend(std::iter::repeat_n(5u8, 1 << 20));
        let mut reader = Counting {
            bytes: &file,
            taken: 0,
        };
        let text = read_images_from(&mut reader, Path::new("stream"))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("stream") && text.contains("2 images of 3×3 (18 bytes)"),
            "{text}"
        );
        assert_eq!(reader.taken, 16 + 18 + 1);
        let images = read_images_from(&images_file(2, 3, 3)[..], Path::new("stream")).unwrap();
        assert_eq!((images.n, images.rows, images.cols), (2, 3, 3));
        assert_eq!(images.pixels, images_file(2, 3, 3)[16..]);
        let labels = read_labels_from(&gzip(&labels_file(&[4, 2]))[..], Path::new("l")).unwrap();
        assert_eq!(labels, [4, 2]);
    }

    #[test]
    fn a_header_declaring_more_than_the_limit_is_refused_before_reading_on() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("huge-idx3-ubyte.gz");
        // 70 000 images of 4000×4000: 1.12 × 10^12 bytes promised by a 16-byte header.
        let mut header = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [70_000u32, 4000, 4000] {
            header.extend(d.to_be_bytes());
        }
        std::fs::write(&path, gzip(&header)).unwrap();
        let text = read_images(&path).unwrap_err().to_string();
        assert!(text.contains("huge-idx3-ubyte.gz"), "{text}");
        assert!(
            text.contains("70000 images of 4000×4000")
                && text.contains("limit of 268435456")
                && text.contains("MAX_IDX_VALUES"),
            "{text}"
        );
        // No images, but each of them would be 2^32 − 1 squared bytes.
        let mut header = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [0, u32::MAX, u32::MAX] {
            header.extend(d.to_be_bytes());
        }
        let text = read_images_from(&header[..], Path::new("empty"))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("0 images of 4294967295×4294967295") && text.contains("limit"),
            "{text}"
        );
    }
}
