//! Saving and loading a layer's or a network's parameters and buffers as a safetensors
//! file under PyTorch's names (`weight`, `0.bias`, …), through `ocellus::checkpoint`:
//! `torch.load_state_dict(safetensors.torch.load_file(path))` reads what `save` writes.

use std::collections::HashMap;
use std::path::Path;

use ocellus::checkpoint;
use ocellus::Layer;

/// Writes `model`'s state dict, each name as `public` turns the engine's, atomically.
pub fn save(
    model: &dyn Layer,
    path: &Path,
    public: impl Fn(&str) -> String,
) -> ocellus::Result<()> {
    let tensors: Vec<_> = checkpoint::state_dict(model)
        .into_iter()
        .map(|(name, t)| (public(&name), t))
        .collect();
    checkpoint::save(path, &tensors, HashMap::new())
}

/// Reads a file written by [`save`] (or by PyTorch under the same names) into `model`:
/// every tensor must be there with its shape and nothing else, or `model` is unchanged.
pub fn load(
    model: &mut dyn Layer,
    path: &Path,
    public: impl Fn(&str) -> String,
) -> ocellus::Result<()> {
    let (tensors, _metadata) = checkpoint::load(path)?;
    let engine_names: HashMap<String, String> = checkpoint::state_dict(model)
        .into_iter()
        .map(|(name, _)| (public(&name), name))
        .collect();
    let tensors: Vec<_> = tensors
        .into_iter()
        .map(|(name, t)| (engine_names.get(&name).cloned().unwrap_or(name), t))
        .collect();
    checkpoint::load_state_dict(model, &tensors, path).map_err(|err| match err {
        // The engine's message names tensors as the engine does; say them as the file does.
        ocellus::Error::Format { path, message } => {
            let public_names: HashMap<&str, &str> = engine_names
                .iter()
                .map(|(public, engine)| (engine.as_str(), public.as_str()))
                .collect();
            let words: Vec<String> = message
                .split(' ')
                .map(|word| {
                    let name = word.trim_end_matches([',', ':']);
                    match public_names.get(name) {
                        Some(public) => format!("{public}{}", &word[name.len()..]),
                        None => word.to_string(),
                    }
                })
                .collect();
            ocellus::Error::Format {
                path,
                message: words.join(" "),
            }
        }
        other => other,
    })
}
