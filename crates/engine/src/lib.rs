//! # ocellus — a layered convolutional neural network library
//!
//! Every layer owns its `forward`, its `backward` and its parameters; a [`Sequential`]
//! network chains them; every gradient can be verified with finite differences
//! ([`gradcheck`]).
//!
//! ## Shape vocabulary
//!
//! One vocabulary is used everywhere, in code, docs and error messages:
//!
//! | symbol | meaning |
//! |---|---|
//! | `N` | batch size (number of images) |
//! | `C`, `IC`, `OC` | channels; input and output channels of a layer |
//! | `H`, `W` | input height and width |
//! | `OH`, `OW` | output height and width |
//! | `KH`, `KW` | kernel height and width |
//! | `F` | features of a flat (fully connected) activation |
//! | `K` | number of classes: logits are `(N, K)` |
//!
//! Image tensors are **NCHW**, row-major (the last index moves fastest), exactly as PyTorch
//! stores them, so weights and activations can be exchanged with PyTorch without
//! transposition. Flat activations are `(N, F)`. A convolution weight is `(OC, IC, KH, KW)`
//! and a linear weight is `(out, in)`, as in PyTorch.
//!
//! ## Layers of the system
//!
//! [`tensor`] → [`kernels`] (GEMM, im2col, reference loops) → [`layers`] → [`network`] →
//! [`loss`] / [`optim`]; [`arch`] writes a network down as data and [`zoo`] holds the
//! classic ones; [`checkpoint`] saves and loads named tensors (safetensors); [`files`]
//! reads the files a user names within stated limits;
//! [`gradcheck`] verifies every gradient; [`summary`] tabulates a network's shapes,
//! parameters, multiply-adds and receptive fields.
//!
//! This crate is the engine only: no data set formats, pictures or command line. Around
//! it, `ocellus-data` reads data sets, `ocellus-viz` draws, `ocellus-train` runs training,
//! `ocellus-report` writes a run's HTML page and `ocellus-cli` is the `ocellus` command.

pub mod arch;
pub mod checkpoint;
pub mod collective;
pub mod error;
pub mod files;
pub mod geometry;
pub mod gradcheck;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod memory;
pub mod network;
pub mod optim;
pub mod rng;
pub mod spec;
pub mod summary;
pub mod tensor;
pub mod text;
pub mod zoo;

pub use error::{Error, Result};
pub use layers::{Layer, LayerExt, Mode, Param};
pub use network::{Concat, Dense, Residual, Scale, Sequential};
pub use optim::Optimizer;
pub use rng::Rng;
pub use tensor::Tensor;

/// What most programs using ocellus need, in one `use ocellus::prelude::*;`.
pub mod prelude {
    pub use crate::error::Error;
    pub use crate::layers::{Layer, LayerExt, Mode, Param};
    pub use crate::network::{Concat, Dense, Residual, Scale, Sequential};
    pub use crate::optim::Optimizer;
    pub use crate::rng::Rng;
    pub use crate::tensor::Tensor;
}

/// The README's example, compiled and run as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
