//! Reading the files a user names, within stated limits. A regular file larger than its
//! limit is refused from its size (the metadata) before anything is read; anything else
//! (a pipe, or a device such as `/dev/zero`) is read through `take(limit + 1)`, so running
//! past the limit shows and nothing is read forever. Formats that are only ever regular
//! files (checkpoints) refuse everything else outright. Every error names the file, the
//! size seen and the limit.

use std::fs::File;
use std::io::{BufReader, Read, Take};
use std::path::Path;

use crate::error::{Error, Result};

/// A file opened by [`open`]: its reader stops one byte past the limit.
pub struct Limited {
    pub reader: Take<BufReader<File>>,
    /// The size of a regular file (from its metadata); `None` for pipes and devices.
    pub len: Option<u64>,
    pub limit: u64,
}

/// Opens `path` to read at most `limit` bytes. `what` names the kind of file in messages
/// ("checkpoints", "images"). A regular file larger than `limit` is refused here.
pub fn open(path: &Path, limit: u64, what: &str) -> Result<Limited> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
    let len = metadata.is_file().then_some(metadata.len());
    if let Some(len) = len.filter(|&len| len > limit) {
        return Err(Error::format(
            path,
            format!(
                "{} is larger than the limit of {} for {what}",
                bytes_str(len),
                bytes_str(limit)
            ),
        ));
    }
    Ok(Limited {
        reader: BufReader::new(file).take(limit.saturating_add(1)),
        len,
        limit,
    })
}

/// The whole of `path`, a file of at most `limit` bytes (see [`open`]).
pub fn read(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open(path, limit, what)?;
    read_rest(path, file, Vec::new(), what)
}

/// Like [`read`], for formats that are only ever regular files: a directory, a pipe or a
/// device is refused before anything is read from it.
pub fn read_regular(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open(path, limit, what)?;
    if file.len.is_none() {
        return Err(Error::format(
            path,
            format!("not a regular file (a directory, pipe or device); {what} are read from regular files only"),
        ));
    }
    read_rest(path, file, Vec::new(), what)
}

/// Appends what is left of `file` to `bytes` (which holds what was read of it already) and
/// fails if the whole is larger than its limit.
pub fn read_rest(
    path: &Path,
    mut file: Limited,
    mut bytes: Vec<u8>,
    what: &str,
) -> Result<Vec<u8>> {
    // The size of a regular file is known, and within the limit: one allocation.
    if let Some(len) = file.len {
        bytes.reserve_exact((len as usize).saturating_sub(bytes.len()));
    }
    file.reader
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > file.limit {
        return Err(Error::format(
            path,
            format!(
                "more than the limit of {} for {what} (it did not end there; a device or a growing file?)",
                bytes_str(file.limit)
            ),
        ));
    }
    Ok(bytes)
}

/// Reads until `buf` is full or the stream ends; the number of bytes read.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// `1234 bytes`, or with a binary unit when it is a whole number of them:
/// `4294967296 bytes (4 GiB)`.
pub fn bytes_str(n: u64) -> String {
    let unit = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .into_iter()
        .find(|&(shift, _)| n >= 1 << shift && n.is_multiple_of(1 << shift));
    match unit {
        Some((shift, name)) => format!("{n} bytes ({} {name})", n >> shift),
        None => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch file removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str, bytes: &[u8]) -> Scratch {
            let path =
                std::env::temp_dir().join(format!("ocellus-files-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn regular_files_within_the_limit_are_read_whole() {
        let file = Scratch::new("small", b"0123456789");
        assert_eq!(read(&file.0, 10, "tests").unwrap(), b"0123456789");
        assert_eq!(read_regular(&file.0, 10, "tests").unwrap(), b"0123456789");
    }

    #[test]
    fn a_regular_file_over_the_limit_is_refused_naming_its_size_and_the_limit() {
        let file = Scratch::new("large", &[7; 2049]);
        let text = read(&file.0, 2048, "tests").unwrap_err().to_string();
        assert!(text.contains(&file.0.display().to_string()), "{text}");
        assert!(
            text.contains("2049 bytes") && text.contains("2048 bytes (2 KiB)"),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_read_up_to_the_limit_only() {
        let text = read(Path::new("/dev/zero"), 1000, "tests")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("/dev/zero") && text.contains("more than the limit of 1000 bytes"),
            "{text}"
        );
        let text = read_regular(Path::new("/dev/zero"), 1000, "tests")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("/dev/zero") && text.contains("not a regular file"),
            "{text}"
        );
    }

    #[test]
    fn sizes_read_in_binary_units_when_whole() {
        assert_eq!(bytes_str(1000), "1000 bytes");
        assert_eq!(bytes_str(4 << 30), "4294967296 bytes (4 GiB)");
        assert_eq!(bytes_str(16 << 20), "16777216 bytes (16 MiB)");
    }
}
