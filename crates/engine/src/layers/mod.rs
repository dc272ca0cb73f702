//! Layers: each one owns its `forward`, its `backward` and its parameters.
//!
//! The contract every layer keeps:
//! - `forward(x, mode)` computes the output and keeps, in named fields, exactly what
//!   `backward` needs (the input, an argmax, a mask, normalised values…);
//! - `backward(dy)` returns `dx` and **adds** into its parameter gradients: only
//!   [`Layer::zero_grad`] clears them, so a tensor used on two paths (a residual block)
//!   collects both contributions;
//! - `backward` before any `forward` is an error naming the layer, never garbage;
//! - `output_shape` answers without computing, so a whole network can be checked before
//!   it runs;
//! - `forward_owned` / `backward_owned`, which a network calls with the intermediates it
//!   hands on, give the same results as `forward` / `backward` (by default they are
//!   those); a layer may override them to write into the tensor it is given.

pub mod activation;
pub mod batchnorm;
pub mod conv;
pub mod dropout;
pub mod linear;
pub mod pool;
pub mod residual;

pub use activation::{Activation, Elementwise, LeakyRelu, Relu, Sigmoid, Softmax, Tanh};
pub use batchnorm::{BatchNorm1d, BatchNorm2d};
pub use conv::{Conv2d, Conv2dConfig, Padding};
pub use dropout::Dropout;
pub use linear::{Flatten, Linear};
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d, Pool2dConfig};
pub use residual::Residual;

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::tensor::{shape_str, Tensor};

/// Training or evaluation, passed explicitly to every forward pass.
///
/// `Train`: Dropout drops, BatchNorm normalises with the batch statistics and updates its
/// running statistics. `Eval`: Dropout is the identity, BatchNorm uses its running
/// statistics. Both modes keep what `backward` needs, so gradients with respect to the
/// input (saliency, gradient checks) work in either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A learnable tensor and the gradient accumulated for it.
#[derive(Clone, Debug)]
pub struct Param {
    pub value: Tensor,
    /// Same shape as `value`; `backward` adds into it.
    pub grad: Tensor,
}

impl Param {
    /// A parameter with a zero gradient.
    pub fn new(value: Tensor) -> Self {
        let grad = Tensor::zeros(value.shape());
        Param { value, grad }
    }
}

/// A layer of a network. See the module docs for the contract.
pub trait Layer: Send {
    /// The layer's kind as written in architecture files, e.g. `"conv2d"`.
    fn kind(&self) -> &'static str;

    /// A one-line description with the settings, e.g. `Conv2d(3→32, 3×3, stride 1, pad 1)`.
    fn describe(&self) -> String;

    /// The output shape for an input shape, or a shape error naming what would fit.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Computes the output and keeps what `backward` needs.
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor>;

    /// Given `dy = ∂L/∂y`, adds the parameter gradients and returns `dx = ∂L/∂x`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor>;

    /// [`Layer::forward`] given the input to keep: a layer may write its output into the
    /// input's memory when no other handle shares it (see [`Tensor::into_map`]). Networks
    /// hand their intermediates on this way; the result is the same as `forward`'s.
    fn forward_owned(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.forward(&x, mode)
    }

    /// [`Layer::backward`] given `dy` to keep, which a layer may overwrite with `dx` as
    /// [`Layer::forward_owned`] its input; the result is the same as `backward`'s.
    fn backward_owned(&mut self, dy: Tensor) -> Result<Tensor> {
        self.backward(&dy)
    }

    /// [`Layer::backward`] for a layer whose input needs no gradient — the first layer of
    /// a network in training, whose input is data (PyTorch's `requires_grad=False`): adds
    /// the parameter gradients and skips `dx`. Layers that save work that way override it.
    fn backward_params(&mut self, dy: &Tensor) -> Result<()> {
        self.backward(dy).map(|_| ())
    }

    /// Learnable parameters with their names (PyTorch's `state_dict` names).
    fn params(&self) -> Vec<(String, &Param)> {
        Vec::new()
    }

    /// Learnable parameters, mutable (optimisers, initialisation, gradient checks).
    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        Vec::new()
    }

    /// Non-learnable state that a checkpoint must keep (BatchNorm running statistics).
    fn buffers(&self) -> Vec<(String, &Tensor)> {
        Vec::new()
    }

    /// Non-learnable state, mutable (loading a checkpoint).
    fn buffers_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        Vec::new()
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        for (_, p) in self.params_mut() {
            p.grad.fill(0.0);
        }
    }

    /// The receptive field (height, width) after this layer, given the one before it.
    /// Layers that act on single positions keep it unchanged.
    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        before
    }

    /// Multiply-adds of one forward pass for one input of this shape (batch included).
    fn macs(&self, _input: &[usize]) -> u64 {
        0
    }

    /// Freezes (`true`) or releases random choices such as dropout masks, so that repeated
    /// forward passes are the same function — what a finite-difference check needs.
    fn fix_randomness(&mut self, _fixed: bool) {}

    /// Restarts the layer's random generators from `seed` (dropout masks). Training seeds
    /// every epoch from the run's seed and the epoch number, so an epoch can be replayed.
    fn reseed(&mut self, _seed: u64) {}

    /// The layer as [`Any`](std::any::Any), so that code looking inside containers (the
    /// summary table and the layer-by-layer gradient check open nested networks and
    /// residual blocks) can reach their parts. Only containers answer; other layers keep
    /// the default `None`.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// [`Layer::as_any`], mutable.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// Number of learnable values of a layer or network.
pub fn param_count(layer: &dyn Layer) -> usize {
    layer.params().iter().map(|(_, p)| p.value.len()).sum()
}

/// Checks that `x` is 4-D with `channels` channels (any if `None`).
pub fn expect_nchw(layer: &str, shape: &[usize], channels: Option<usize>) -> Result<()> {
    let ok = shape.len() == 4 && channels.is_none_or(|c| shape[1] == c);
    if ok {
        return Ok(());
    }
    let expected = match channels {
        Some(c) => format!("(N, {c}, H, W)"),
        None => "(N, C, H, W)".to_string(),
    };
    let err = Error::shape(layer, expected, shape);
    Err(if shape.len() == 2 {
        err.with_hint("a flat (N, F) tensor reached an image layer: is a Flatten misplaced?")
    } else {
        err
    })
}

/// Checks that `dy` has the shape the last forward produced.
pub(crate) fn expect_same_shape(layer: &str, expected: &[usize], dy: &[usize]) -> Result<()> {
    if expected == dy {
        Ok(())
    } else {
        Err(Error::shape(layer, shape_str(expected), dy)
            .with_hint("backward needs a gradient shaped like the last forward output"))
    }
}

/// Keeps `x` in `slot` for backward: a second handle on the same values, not a copy.
pub(crate) fn keep(slot: &mut Option<Tensor>, x: &Tensor) {
    *slot = Some(x.clone());
}

/// What the last forward kept, or the error for a backward that came before any forward.
pub(crate) fn kept<'a, T>(slot: &'a Option<T>, layer: &str) -> Result<&'a T> {
    slot.as_ref().ok_or_else(|| Error::BackwardBeforeForward {
        layer: layer.into(),
    })
}
