//! CIFAR-10 in its binary version: `data_batch_1.bin` … `data_batch_5.bin` (training) and
//! `test_batch.bin`, each a sequence of 3073-byte records: one label byte, then the 32×32
//! red plane, the green plane and the blue plane, row-major (already NCHW).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Dataset, Splits};
use ocellus::error::{Error, Result};

/// CIFAR-10's classes, in label order.
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The training batches, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test batch.
pub const TEST_FILE: &str = "test_batch.bin";

/// Channels, height and width of a CIFAR-10 image.
pub const IMAGE_SHAPE: [usize; 3] = [3, 32, 32];

/// Bytes of one record: the label and 3·32·32 pixels.
pub const RECORD_LEN: usize = 1 + 3 * 32 * 32;

/// The folder inside the official archive that holds the batches.
const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";

/// Loads the training batches (50 000 images) and the test batch (10 000 images) from
/// `dir`, or from `dir/cifar-10-batches-bin` (the folder the archive unpacks to).
/// Images are `(N, 3, 32, 32)` in [0, 1].
pub fn load(dir: &Path) -> Result<Splits> {
    let nested = dir.join(ARCHIVE_FOLDER);
    let dir = if !dir.join(TEST_FILE).is_file() && nested.join(TEST_FILE).is_file() {
        nested
    } else {
        dir.to_path_buf()
    };
    let train: Vec<PathBuf> = TRAIN_FILES.iter().map(|f| dir.join(f)).collect();
    let test = [dir.join(TEST_FILE)];
    for path in train.iter().chain(&test) {
        if !path.is_file() {
            return Err(Error::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "file not found; point --data-dir to the folder of the CIFAR-10 binary \
                     version (data_batch_1.bin … data_batch_5.bin and test_batch.bin)",
                ),
            });
        }
    }
    let (train, test) = rayon::join(|| read_batches(&train), || read_batches(&test));
    Ok(Splits {
        train: train?,
        test: test?,
    })
}

/// Reads batch files (in parallel) and joins them, in the order given, into one data set.
pub fn read_batches(paths: &[PathBuf]) -> Result<Dataset> {
    let parts: Vec<(Vec<u8>, Vec<usize>)> = paths
        .par_iter()
        .map(|p| read_batch(p))
        .collect::<Result<_>>()?;
    let n: usize = parts.iter().map(|(_, labels)| labels.len()).sum();
    let mut pixels = Vec::with_capacity(n * (RECORD_LEN - 1));
    let mut labels = Vec::with_capacity(n);
    for (p, l) in parts {
        pixels.extend_from_slice(&p);
        labels.extend(l);
    }
    let [c, h, w] = IMAGE_SHAPE;
    Dataset::from_u8(
        [n, c, h, w],
        &pixels,
        labels,
        CLASSES.iter().map(|s| s.to_string()).collect(),
    )
}

/// The most records a batch file may hold: 100 000, ten times an official batch. A larger
/// file is refused from its size before it is read.
pub const MAX_BATCH_RECORDS: usize = 100_000;

/// One batch file: the pixels of all records one after another `(n, 3, 32, 32)`, and the
/// labels.
pub fn read_batch(path: &Path) -> Result<(Vec<u8>, Vec<usize>)> {
    let limit = (MAX_BATCH_RECORDS * RECORD_LEN) as u64;
    let what = format!("CIFAR-10 batches ({MAX_BATCH_RECORDS} records, MAX_BATCH_RECORDS)");
    let bytes = ocellus::files::read(path, limit, &what)?;
    parse_batch(&bytes, path)
}

/// [`read_batch`] for the bytes of a batch file already in memory; `source` names it in
/// errors.
pub fn parse_batch(bytes: &[u8], source: &Path) -> Result<(Vec<u8>, Vec<usize>)> {
    let path = source;
    let format_err = |message: String| Error::format(path, message);
    if bytes.is_empty() {
        return Err(format_err("empty file, expected 3073-byte records".into()));
    }
    if !bytes.len().is_multiple_of(RECORD_LEN) {
        let whole = bytes.len() / RECORD_LEN;
        return Err(format_err(format!(
            "truncated: {} bytes is not a whole number of {RECORD_LEN}-byte records \
             (record {whole} is cut short after {} bytes)",
            bytes.len(),
            bytes.len() % RECORD_LEN
        )));
    }
    let n = bytes.len() / RECORD_LEN;
    let mut pixels = Vec::with_capacity(n * (RECORD_LEN - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD_LEN).enumerate() {
        let label = usize::from(record[0]);
        if label >= CLASSES.len() {
            return Err(format_err(format!(
                "record {i} has label {label}; CIFAR-10 labels are 0 to 9"
            )));
        }
        labels.push(label);
        pixels.extend_from_slice(&record[1..]);
    }
    Ok((pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose pixel p of channel c holds (p + 50·c + seed) mod 256.
    fn record(label: u8, seed: usize) -> Vec<u8> {
        let mut r = vec![label];
        for c in 0..3 {
            r.extend((0..1024).map(|p| ((p + 50 * c + seed) % 256) as u8));
        }
        r
    }

    fn write_batch(path: &Path, labels: &[u8]) {
        let bytes: Vec<u8> = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| record(l, i))
            .collect();
        std::fs::write(path, bytes).unwrap();
    }

    fn write_all(dir: &Path) {
        for (b, f) in TRAIN_FILES.iter().enumerate() {
            write_batch(&dir.join(f), &[b as u8, 9 - b as u8]);
        }
        write_batch(&dir.join(TEST_FILE), &[3, 1, 4]);
    }

    #[test]
    fn loads_batches_in_order_as_rgb_planes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(ARCHIVE_FOLDER);
        std::fs::create_dir(&dir).unwrap();
        write_all(&dir);
        // Found inside the archive's folder too.
        let splits = load(tmp.path()).unwrap();
        assert_eq!(splits.train.images().shape(), &[10, 3, 32, 32]);
        assert_eq!(splits.train.labels(), &[0, 9, 1, 8, 2, 7, 3, 6, 4, 5]);
        assert_eq!(splits.test.labels(), &[3, 1, 4]);
        assert_eq!(splits.test.classes()[3], "cat");
        // Test image 2: red plane starts at 2, green at 52, blue at 102; last pixel 1023.
        let img = splits.test.image(2);
        assert_eq!(img[0], 2.0 / 255.0);
        assert_eq!(img[1024], 52.0 / 255.0);
        assert_eq!(img[2048 + 1023], ((1023 + 100 + 2) % 256) as f32 / 255.0);
    }

    #[test]
    fn truncated_record_and_bad_label_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_all(tmp.path());
        let path = tmp.path().join(TEST_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(2 * RECORD_LEN + 100);
        std::fs::write(&path, &bytes).unwrap();
        let text = load(tmp.path()).unwrap_err().to_string();
        assert!(
            text.contains("test_batch.bin") && text.contains("truncated"),
            "{text}"
        );
        assert!(
            text.contains("record 2 is cut short after 100 bytes"),
            "{text}"
        );

        write_batch(&tmp.path().join("data_batch_4.bin"), &[1, 10]);
        write_batch(&path, &[0]);
        let text = load(tmp.path()).unwrap_err().to_string();
        assert!(
            text.contains("data_batch_4.bin") && text.contains("record 1 has label 10"),
            "{text}"
        );
    }

    #[test]
    fn missing_file_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        write_all(tmp.path());
        std::fs::remove_file(tmp.path().join("data_batch_3.bin")).unwrap();
        let text = load(tmp.path()).unwrap_err().to_string();
        assert!(
            text.contains("data_batch_3.bin") && text.contains("--data-dir"),
            "{text}"
        );
    }

    #[test]
    fn a_batch_larger_than_the_limit_is_refused_from_its_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data_batch_9.bin");
        // A sparse file: its size says it all, nothing of it is read.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len((MAX_BATCH_RECORDS as u64 + 1) * RECORD_LEN as u64)
            .unwrap();
        let text = read_batch(&path).unwrap_err().to_string();
        assert!(text.contains("data_batch_9.bin"), "{text}");
        assert!(
            text.contains("307303073 bytes")
                && text.contains("limit of 307300000 bytes")
                && text.contains("100000 records"),
            "{text}"
        );
    }

    #[test]
    fn batch_bytes_parse_like_the_file() {
        let bytes: Vec<u8> = [2u8, 7]
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| record(l, i))
            .collect();
        let (pixels, labels) = parse_batch(&bytes, Path::new("in memory")).unwrap();
        assert_eq!(labels, [2, 7]);
        assert_eq!(pixels.len(), 2 * (RECORD_LEN - 1));
        let text = parse_batch(&bytes[..10], Path::new("in memory"))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("in memory") && text.contains("truncated"),
            "{text}"
        );
    }
}
