//! Writes an export that is a directory of files (the PyTorch module, the web page).

use std::path::Path;

use ocellus::checkpoint::write_atomically;
use ocellus::{Error, Result};

/// Checks, before any work, that `dir` can hold an export: it is a directory or does not
/// exist yet, and its parent exists.
pub fn check_directory(dir: &Path) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.exists() && !dir.is_dir() {
        return Err(Error::format(
            dir,
            "cannot write the export: this is a file; give a directory (it is created if missing)",
        ));
    }
    if !dir.exists() && !parent.is_dir() {
        return Err(Error::format(
            dir,
            format!(
                "cannot write the export: the directory {} does not exist",
                parent.display()
            ),
        ));
    }
    Ok(())
}

/// Writes `files` (name, contents) into `dir`, creating it if missing. Each file is
/// written whole or not at all (through a temporary file and a rename); files of `dir`
/// that are not in `files` (an installed `node_modules/`, say) are left alone.
pub fn write_directory(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    check_directory(dir)?;
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    for (name, bytes) in files {
        write_atomically(&dir.join(name), bytes)?;
    }
    Ok(())
}
