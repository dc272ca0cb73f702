//! Writes ocellus networks in other frameworks' formats: ONNX ([`onnx`]), opset 17 and IR
//! version 8, readable by onnxruntime (native and web) and `onnx.checker`; a PyTorch
//! module ([`pytorch`]), the source of a `model.py` whose `state_dict` names are
//! ocellus's; and a web page ([`web`]) that runs the ONNX model with onnxruntime-web.
//!
//! An exported network takes `input`, (N, C, H, W) with any batch size `N`, and gives
//! `logits`, (N, K) — what the network computes in `Mode::Eval` (dropout off, BatchNorm
//! with its running statistics). Weights are named as PyTorch's `state_dict` names them
//! (`0.weight`, `4.main.0.weight`), the same names as in ocellus's checkpoints.
//!
//! Shape vocabulary as in the engine: N, C (IC/OC), H, W, OH, OW, KH, KW; NCHW, row-major.

pub mod directory;
pub mod onnx;
pub mod proto;
pub mod pytorch;
pub mod web;

pub use directory::{check_directory, write_directory};
pub use onnx::{onnx_model, write_onnx, ExportInfo, OnnxOptions};
pub use pytorch::pytorch_module;
pub use web::web_files;
