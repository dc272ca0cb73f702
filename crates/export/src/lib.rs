//! Writes ocellus networks in other frameworks' formats. Today: ONNX ([`onnx`]), opset 17
//! and IR version 8, readable by onnxruntime (native and web) and `onnx.checker`.
//!
//! An exported graph takes `input`, (N, C, H, W) with a symbolic batch size `N`, and gives
//! `logits`, (N, K) — what the network computes in `Mode::Eval` (dropout off, BatchNorm
//! with its running statistics). Weights are initializers named as PyTorch's `state_dict`
//! names them (`0.weight`, `4.main.0.weight`), the same names as in ocellus's checkpoints.
//!
//! Shape vocabulary as in the engine: N, C (IC/OC), H, W, OH, OW, KH, KW; NCHW, row-major.

pub mod onnx;
pub mod proto;

pub use onnx::{onnx_model, write_onnx, ExportInfo, OnnxOptions};
