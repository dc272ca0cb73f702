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
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::format(path, e.to_string()))?;
    write_atomically(path, &bytes)
}

/// Loads every tensor (f32; int64 and other float types converted to f32) and the metadata.
pub fn load(path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let not_safetensors = |e: safetensors::SafeTensorError| {
        Error::format(path, format!("not a readable safetensors file ({e})"))
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
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
