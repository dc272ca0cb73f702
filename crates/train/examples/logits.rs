//! Runs a saved model on a batch of inputs and writes its logits, for comparing ocellus
//! with another framework on exactly the same numbers:
//!
//! ```text
//! cargo run --release -p ocellus-train --example logits -- MODEL INPUTS OUTPUT
//! ```
//!
//! - `MODEL`: a `model.safetensors` file or a run directory holding one;
//! - `INPUTS`: a safetensors file with a tensor `x` of shape (N, C, H, W) — the network's
//!   input, already normalised (the model file's `normalization` metadata says how);
//! - `OUTPUT`: the safetensors file to write, with the tensor `logits`, (N, K): the
//!   network's output in evaluation mode (`Mode::Eval`: dropout off, BatchNorm with its
//!   running statistics).
//!
//! `tools/pytorch_interop.py` uses it to check ocellus against PyTorch both ways.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use ocellus::LayerExt;
use ocellus::{checkpoint, Error, Mode, Result};
use ocellus_train::run;

fn logits(model_path: &Path, inputs_path: &Path, output_path: &Path) -> Result<()> {
    let (mut model, _info) = run::load_model(model_path)?;
    let (tensors, _) = checkpoint::load(inputs_path)?;
    let x = tensors
        .into_iter()
        .find_map(|(name, t)| (name == "x").then_some(t))
        .ok_or_else(|| Error::format(inputs_path, "no tensor named \"x\""))?;
    let y = model.forward_ref(&x, Mode::Eval)?;
    checkpoint::save(output_path, &[("logits".into(), y)], HashMap::new())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, inputs, output] = args.as_slice() else {
        eprintln!("usage: logits MODEL INPUTS OUTPUT (safetensors files; INPUTS holds \"x\")");
        return ExitCode::from(2);
    };
    match logits(Path::new(model), Path::new(inputs), Path::new(output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
