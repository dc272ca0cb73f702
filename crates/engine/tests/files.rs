//! Writing files: atomically, and only over regular files.

#![cfg(unix)]

use std::os::unix::fs::FileTypeExt;

use ocellus::checkpoint::write_atomically;

#[test]
fn a_file_is_replaced_whole_and_no_temporary_file_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.bin");
    write_atomically(&path, b"first").unwrap();
    write_atomically(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["out.bin"]);
}

#[test]
fn only_a_regular_file_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory.
    let dir = tmp.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    let err = write_atomically(&dir, b"x").unwrap_err().to_string();
    assert!(
        err.contains("is a directory") && err.contains("dir"),
        "{err}"
    );
    assert!(dir.is_dir());
    // A symbolic link, whose target stays as it was.
    let target = tmp.path().join("target.txt");
    std::fs::write(&target, b"kept").unwrap();
    let link = tmp.path().join("link.txt");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = write_atomically(&link, b"x").unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"kept");
    // A device: /dev/full stays a character device.
    let err = write_atomically(std::path::Path::new("/dev/full"), b"x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/dev/full") && err.contains("not a regular file"),
        "{err}"
    );
    let meta = std::fs::metadata("/dev/full").unwrap();
    assert!(meta.file_type().is_char_device());
}
