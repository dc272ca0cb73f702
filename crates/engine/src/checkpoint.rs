//! Checkpoints: safetensors files whose tensor names and layouts are PyTorch's
//! `state_dict` (conv `OIHW`, linear `(out, in)`, BatchNorm `running_mean`, `running_var`,
//! and `num_batches_tracked` as int64), so a checkpoint loads into the matching PyTorch
//! module with `strict=True` and back. Files are written atomically: a temporary file in
//! the same directory, flushed, then renamed over the target — a crash never leaves a
//! half-written file under the real name.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::files;
use crate::layers::{Layer, LayerExt};
use crate::tensor::{numel, shape_str, Tensor};

/// Named tensors, as stored in a file.
pub type NamedTensors = Vec<(String, Tensor)>;

/// PyTorch keeps BatchNorm's batch counter as int64.
fn is_integer_buffer(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// The prefix of the temporary files [`write_atomically`] writes next to their target:
/// `.{name}.tmp-{process id}`. A file of this form left behind by a killed process is
/// stale and may be removed by whoever owns the directory.
pub const TEMP_MARK: &str = ".tmp-";

/// Writes `bytes` to `path` through a temporary file and a rename, so that `path` holds
/// either its old contents or all of the new ones, also after a crash: the file is flushed
/// to disk before the rename, and the directory after it.
///
/// Only a regular file is replaced: a `path` that is a directory, a device, a pipe or a
/// symbolic link is an error, and nothing is written.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::format(path, "not a file name"))?
        .to_string_lossy();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            let what = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file (a device, pipe or socket)"
            };
            return Err(Error::format(
                path,
                format!("is {what}; ocellus replaces only regular files: choose another path"),
            ));
        }
        _ => {}
    }
    let tmp = dir.join(format!(".{file_name}{TEMP_MARK}{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Flushes a directory's entries (a rename in it) to disk. Where directories cannot be
/// opened as files (Windows), the rename is as durable as the platform makes it.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Saves named tensors and string metadata as a safetensors file, atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_atomically(path, &encode(path, tensors, metadata)?)
}

/// The bytes of a safetensors file holding named tensors and string metadata; `path`
/// names the file in errors.
pub fn encode(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    // Bytes in little-endian order, int64 for PyTorch's integer buffers.
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = if is_integer_buffer(name) {
                (
                    Dtype::I64,
                    t.data()
                        .iter()
                        .flat_map(|v| (*v as i64).to_le_bytes())
                        .collect(),
                )
            } else {
                (
                    Dtype::F32,
                    t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            };
            (name.clone(), dtype, t.shape().to_vec(), bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::format(path, e.to_string()))?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::format(path, e.to_string()))
}

/// The largest checkpoint file read: 4 GiB, a thousand times a ResNet-20's 1 MiB and far
/// above any network ocellus builds; larger files are refused from their size alone.
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

/// The largest safetensors header read (the JSON that lists the tensors and holds the
/// metadata, such as the architecture): 16 MiB. ocellus writes a few KiB.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Loads every tensor (f32; int64 and other float types converted to f32) and the metadata.
/// The file must be a regular file of at most [`MAX_CHECKPOINT_BYTES`].
pub fn load(path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bytes = files::read_regular(path, MAX_CHECKPOINT_BYTES, "checkpoints")?;
    from_bytes(&bytes, path)
}

/// [`load`] for the bytes of a checkpoint already in memory; `source` names it in errors.
pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let path = source;
    // The first 8 bytes are the header's length (little-endian u64); checked before the
    // header is parsed.
    if let Some(len) = bytes.get(..8) {
        let len = u64::from_le_bytes(len.try_into().unwrap());
        if len > MAX_HEADER_BYTES {
            return Err(Error::format(
                path,
                format!(
                    "not a readable safetensors file (its header declares {}, more than the limit of {})",
                    files::bytes_str(len),
                    files::bytes_str(MAX_HEADER_BYTES)
                ),
            ));
        }
    }
    let not_safetensors = |e: safetensors::SafeTensorError| {
        Error::format(path, format!("not a readable safetensors file ({e})"))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(Error::format(
                    path,
                    format!("tensor {name} has type {other:?}; only F32, F64 and I64 are read"),
                ))
            }
        };
        tensors.push((name, Tensor::from_vec(view.shape(), values)?));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((tensors, metadata))
}

/// The model's parameters and buffers under their `state_dict` names.
pub fn state_dict(model: &dyn Layer) -> NamedTensors {
    let mut out: NamedTensors = model
        .params()
        .into_iter()
        .map(|(name, p)| (name, p.value().clone()))
        .collect();
    out.extend(
        model
            .buffers()
            .into_iter()
            .map(|(name, b)| (name, b.clone())),
    );
    out
}

/// Copies `tensors` into the model, strictly: every parameter and buffer must be present
/// with its shape, and nothing else may be. `source` names the file in error messages.
pub fn load_state_dict(
    model: &mut dyn Layer,
    tensors: &[(String, Tensor)],
    source: &Path,
) -> Result<()> {
    let mut given: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mismatch = |name: &str, want: &[usize], got: &[usize]| {
        Error::format(
            source,
            format!(
                "tensor {name} has shape {} but the model's is {}: the checkpoint does not fit this model",
                shape_str(got),
                shape_str(want)
            ),
        )
    };
    // Every tensor is checked before any is copied, so a file that does not fit leaves
    // the model as it was. Parameters must match in shape; buffers in their number of
    // values (PyTorch stores the 0-d `num_batches_tracked` as it likes).
    let mut missing = Vec::new();
    let params = model.params().into_iter();
    let params = params.map(|(n, p)| (n, p.shape().to_vec(), true));
    let buffers = model.buffers().into_iter();
    let expected: Vec<(String, Vec<usize>, bool)> = params
        .chain(buffers.map(|(n, b)| (n, b.shape().to_vec(), false)))
        .collect();
    for (name, shape, is_param) in &expected {
        match given.remove(name.as_str()) {
            Some(t) if t.shape() == shape.as_slice() => {}
            Some(t) if !is_param && t.len() == numel(shape) => {}
            Some(t) => return Err(mismatch(name, shape, t.shape())),
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::format(
            source,
            format!(
                "missing {} tensor(s) the model needs: {}: the checkpoint does not fit this model",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    if !given.is_empty() {
        let mut extra: Vec<&str> = given.into_keys().collect();
        extra.sort_unstable();
        return Err(Error::format(
            source,
            format!(
                "unexpected tensor(s) the model does not have: {}: the checkpoint does not fit this model",
                extra.join(", ")
            ),
        ));
    }
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, p) in model.params_mut() {
        p.value_mut().copy_from_slice(by_name[name.as_str()].data());
    }
    for (name, b) in model.buffers_mut() {
        b.data_mut().copy_from_slice(by_name[name.as_str()].data());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_device_is_not_read_as_a_checkpoint() {
        let text = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(
            text.contains("/dev/zero") && text.contains("not a regular file"),
            "{text}"
        );
    }

    #[test]
    fn a_header_declared_larger_than_the_limit_is_refused_before_parsing() {
        // A header length of 2^40 bytes, followed by the start of a JSON header.
        let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{\"__metadata__\":{}}");
        let text = from_bytes(&bytes, Path::new("huge-header.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(text.contains("huge-header.safetensors"), "{text}");
        assert!(
            text.contains("1099511627776 bytes (1024 GiB)")
                && text.contains("16777216 bytes (16 MiB)"),
            "{text}"
        );
    }

    #[test]
    fn saved_tensors_and_metadata_load_back_from_bytes() {
        let dir = std::env::temp_dir().join(format!("ocellus-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("two.safetensors");
        let tensors = vec![
            (
                "a".to_string(),
                Tensor::from_vec(&[2], vec![1.5, -2.0]).unwrap(),
            ),
            (
                "bn.num_batches_tracked".to_string(),
                Tensor::from_vec(&[1], vec![7.0]).unwrap(),
            ),
        ];
        let metadata = HashMap::from([("epoch".to_string(), "3".to_string())]);
        save(&path, &tensors, metadata.clone()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (loaded, meta) = from_bytes(&bytes, &path).unwrap();
        assert_eq!(loaded, tensors);
        assert_eq!(meta, metadata);
    }
}
