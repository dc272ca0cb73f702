//! Layers: each one owns its `forward`, its `backward` and its parameters.
//!
//! The contract every layer keeps:
//! - `forward(x, mode)` computes the output and keeps, in named fields, exactly what
//!   `backward` needs (the input, an argmax, a mask, normalised values…). It is handed
//!   `x` (a tensor's clone is a second handle on the same values, not a copy), so a layer
//!   may write its output into `x`'s memory when nothing else holds it;
//! - `backward(dy)` returns `dx` and **adds** into its parameter gradients: only
//!   [`LayerExt::zero_grad`] clears them, so a tensor used on two paths (a residual block)
//!   collects both contributions;
//! - `backward` before any `forward` is an error naming the layer, never garbage;
//! - `output_shape` answers without computing, so a whole network can be checked before
//!   it runs;
//! - `parts` lists what the layer holds by name: its parameters, its buffers and, for a
//!   container, its child layers; `spec` writes the layer down as an architecture entry,
//!   whose [`Composition`](crate::spec::Composition) says how a container combines its
//!   children. Everything that walks a network — parameter names, optimisers,
//!   checkpoints, the summary, the gradient check — goes through these two.

pub mod activation;
pub mod batchnorm;
pub mod conv;
pub mod conv_transpose;
pub mod dropout;
pub mod linear;
pub mod pool;
pub mod upsample;

pub use activation::{
    Activation, Elementwise, Hardswish, LeakyRelu, Relu, Sigmoid, Silu, Softmax, Tanh,
};
pub use batchnorm::{BatchNorm1d, BatchNorm2d, BatchNormConfig};
pub use conv::{Conv2d, Conv2dConfig, Padding};
pub use conv_transpose::{ConvTranspose2d, ConvTranspose2dConfig};
pub use dropout::Dropout;
pub use linear::{Flatten, Linear};
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d, Pool2dConfig};
pub use upsample::{Upsample, UpsampleMode, UpsampleSize};

use std::sync::Arc;

use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::kernels::pool::PoolGeometry;
use crate::kernels::Moments;
use crate::spec::LayerSpec;
use crate::tensor::{shape_str, Tensor};

/// Training or evaluation, passed explicitly to every forward pass.
///
/// `Train`: Dropout drops, BatchNorm normalises with the batch statistics and updates its
/// running statistics. `Eval`: Dropout is the identity, BatchNorm uses its running
/// statistics (the batch's when it keeps none, PyTorch's `track_running_stats=False`).
/// Both modes keep what `backward` needs, so gradients with respect to the input
/// (saliency, gradient checks) work in either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A learnable tensor and the gradient accumulated for it, always of the same shape.
///
/// The shape is fixed when the parameter is made: [`Param::set`] refuses a tensor of
/// another shape, and the values can be changed in place ([`Param::value_mut`]) but not
/// reshaped, so no kernel or optimiser ever meets a parameter it was not built for.
#[derive(Clone, Debug)]
pub struct Param {
    value: Tensor,
    /// Same shape as `value`; `backward` adds into it.
    grad: Tensor,
}

impl Param {
    /// A parameter with a zero gradient.
    pub fn new(value: Tensor) -> Self {
        let grad = Tensor::zeros(value.shape());
        Param { value, grad }
    }

    /// The values.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The gradient accumulated since the last `zero_grad`.
    pub fn grad(&self) -> &Tensor {
        &self.grad
    }

    /// The shape of the value and of the gradient.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// The values, to change in place.
    pub fn value_mut(&mut self) -> &mut [f32] {
        self.value.data_mut()
    }

    /// The gradient, to change in place.
    pub fn grad_mut(&mut self) -> &mut [f32] {
        self.grad.data_mut()
    }

    /// The values to change and the gradient to read, at once (an optimiser step).
    pub fn value_mut_and_grad(&mut self) -> (&mut [f32], &[f32]) {
        (self.value.data_mut(), self.grad.data())
    }

    /// The values to read and the gradient to add into, at once (a backward pass).
    pub fn value_and_grad_mut(&mut self) -> (&[f32], &mut [f32]) {
        (self.value.data(), self.grad.data_mut())
    }

    /// Replaces the values; `name` is what an error calls the parameter. A tensor of
    /// another shape is an error naming both shapes, and the parameter is unchanged.
    pub fn set(&mut self, name: &str, value: Tensor) -> Result<()> {
        expect_shape(name, self.shape(), value.shape())?;
        self.value = value;
        Ok(())
    }
}

/// What a layer holds, as [`Layer::parts`] lists it.
pub enum Part<'a> {
    /// A learnable tensor with its gradient.
    Param(&'a Param),
    /// State a checkpoint keeps that is not learned (BatchNorm's running statistics).
    Buffer(&'a Tensor),
    /// A child layer of a container.
    Layer(&'a dyn Layer),
}

/// What a layer holds, mutable, as [`Layer::parts_mut`] lists it.
pub enum PartMut<'a> {
    Param(&'a mut Param),
    Buffer(&'a mut Tensor),
    Layer(&'a mut dyn Layer),
}

/// The name of a part within its layer: a position (`0`, `1`, … in a [`Sequential`]) or
/// a word (`weight`, `running_mean`, `main`). Full names join them with dots, as PyTorch
/// names `state_dict` entries: `3.weight`, `4.main.0.weight`.
///
/// [`Sequential`]: crate::network::Sequential
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Index(usize),
    Name(&'static str),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Index(i) => write!(f, "{i}"),
            Key::Name(name) => f.write_str(name),
        }
    }
}

/// How random choices (dropout masks) are made, set on a whole network with
/// [`LayerExt::set_randomness`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Randomness {
    /// Restart the generators from this seed; each layer derives its own from it and its
    /// position. Training seeds every epoch from the run's seed and the epoch number, so
    /// an epoch can be replayed.
    Seed(u64),
    /// Keep the current choices, so that repeated forward passes are the same function —
    /// what a finite-difference check needs.
    Frozen,
    /// Draw new choices at every forward pass (the default).
    Free,
}

/// What evaluation folds into a layer's forward pass ([`Layer::forward_folded`]), in
/// this order: the layers after it, computed in its own pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fold<'a> {
    /// An affine map of the output channels, `y[c] ← scale[c]·y[c] + shift[c]` (a batch
    /// normalisation with running statistics, [`Layer::eval_affine`]): (scale, shift).
    pub affine: Option<(&'a [f32], &'a [f32])>,
    /// A ReLU.
    pub relu: bool,
    /// A max-pooling whose 2×2 windows tile the output
    /// ([`PoolGeometry::is_2x2_tiling`], [`Layer::tiling_max_pool`]).
    pub pool: Option<&'a PoolGeometry>,
}

/// A layer of a network. See the module docs for the contract.
pub trait Layer: Send {
    /// The layer's kind as written in architecture files, e.g. `"conv2d"`.
    fn kind(&self) -> &'static str;

    /// A one-line description with the settings, e.g. `Conv2d(3→32, 3×3, stride 1, pad 1)`.
    fn describe(&self) -> String;

    /// The layer as an architecture entry, every size written out.
    fn spec(&self) -> LayerSpec;

    /// The output shape for an input shape, or a shape error naming what would fit.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Computes the output and keeps what `backward` needs. `x` is handed over: a layer
    /// may write its output into `x`'s memory when no other handle shares it.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor>;

    /// Given `dy = ∂L/∂y`, adds the parameter gradients and returns `dx = ∂L/∂x`. `dy` is
    /// handed over, and a layer may overwrite it with `dx`.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor>;

    /// [`Layer::backward`] for a layer whose input needs no gradient — the first layer of
    /// a network in training, whose input is data (PyTorch's `requires_grad=False`): adds
    /// the parameter gradients and skips `dx`. Layers that save work that way override it.
    fn backward_params(&mut self, dy: Tensor) -> Result<()> {
        self.backward(dy).map(drop)
    }

    /// Whether this layer can compute itself and a ReLU after it in one pass over the
    /// values ([`Layer::forward_relu`]), as batch normalisation and convolution do. A
    /// [`crate::network::Sequential`] runs such a pair's forward pass fused, the values
    /// between the two never written out; the backward passes stay the layers' own.
    fn fuses_relu(&self) -> bool {
        false
    }

    /// `y = max(0, forward(x))` in one pass, for a layer that [`Layer::fuses_relu`];
    /// keeps what [`Layer::backward`] needs, as `forward` does.
    fn forward_relu(&mut self, _x: Tensor, _mode: Mode) -> Result<Tensor> {
        Err(Error::config(
            self.kind(),
            "this layer does not run fused with a ReLU",
        ))
    }

    /// For a ReLU whose input layer computed it fused: keeps the output `y` of that pass,
    /// as its own forward would have, for its backward. Other layers ignore it.
    fn keep_fused_output(&mut self, _y: &Tensor) {}

    /// Whether [`Layer::forward_with_moments`] is available.
    fn gives_moments(&self) -> bool {
        false
    }

    /// The forward pass and the [`Moments`] of every plane of its output, (N, C) — one
    /// channel of one image each — taken while each image is in cache, for a batch
    /// normalisation after the layer ([`Layer::take_moments`]); keeps what
    /// [`Layer::backward`] needs, as `forward` does.
    fn forward_with_moments(&mut self, _x: Tensor, _mode: Mode) -> Result<(Tensor, Vec<Moments>)> {
        Err(Error::config(
            self.kind(),
            "this layer gives no moments of its output",
        ))
    }

    /// Whether the next forward pass in `mode` would take its statistics from the moments
    /// of its input's planes, given by [`Layer::take_moments`]: a batch normalisation
    /// with batch statistics.
    fn takes_moments(&self, _mode: Mode) -> bool {
        false
    }

    /// The moments of the planes of the next forward pass's input, (N, C), computed by
    /// the layer before: that pass uses them (if they fit its input) instead of reading
    /// the input for them. Other layers ignore them.
    fn take_moments(&mut self, _moments: Vec<Moments>) {}

    /// Whether this layer's backward pass can take in that of a ReLU before it
    /// ([`Layer::backward_after_relu`]), as a max-pooling whose 2×2 windows tiled its
    /// input does. A [`crate::network::Sequential`] then runs the two backward passes as
    /// one.
    fn backward_takes_relu_before(&self) -> bool {
        false
    }

    /// The backward passes of this layer and of the ReLU before it as one: dy of this
    /// layer's output → dx of the ReLU's input, the values the two backward passes give one
    /// after the other.
    fn backward_after_relu(&mut self, _dy: Tensor) -> Result<Tensor> {
        Err(Error::config(
            self.kind(),
            "this layer's backward pass does not take in a ReLU's",
        ))
    }

    /// Whether this layer can compute itself, a ReLU and a max-pooling of 2×2 windows
    /// after it in one pass over the values ([`Layer::forward_relu_pool`]), as batch
    /// normalisation does. A [`crate::network::Sequential`] then runs the three as one,
    /// forward and backward, the values between them never written out.
    fn fuses_relu_pool(&self) -> bool {
        false
    }

    /// For a max-pooling layer whose windows tile its input — 2×2, stride 2, no padding:
    /// its geometry on an input of this shape; `None` for any other layer or input.
    fn tiling_max_pool(&self, _input: &[usize]) -> Option<PoolGeometry> {
        None
    }

    /// `maxpool(max(0, forward(x)))` in one pass, for a layer that
    /// [`Layer::fuses_relu_pool`], the pooling's geometry from [`Layer::tiling_max_pool`]
    /// (its maxima and the positions of their windows that held them as the pooling
    /// layer's own forward computes them); keeps what [`Layer::backward_relu_pool`] needs.
    fn forward_relu_pool(
        &mut self,
        _x: Tensor,
        _mode: Mode,
        _pool: &PoolGeometry,
    ) -> Result<Tensor> {
        Err(Error::config(
            self.kind(),
            "this layer does not run fused with a ReLU and max-pooling",
        ))
    }

    /// The backward pass of the three layers of [`Layer::forward_relu_pool`]: given the
    /// gradient of the pooled output, adds this layer's parameter gradients and returns
    /// the gradient of its input — the values the three layers' own backward passes give.
    fn backward_relu_pool(&mut self, _dp: Tensor) -> Result<Tensor> {
        Err(Error::config(
            self.kind(),
            "this layer does not run fused with a ReLU and max-pooling",
        ))
    }

    /// [`Layer::backward_relu_pool`] for the first layer of a network: the parameter
    /// gradients only, which for some layers (a convolution) saves computing dx.
    fn backward_relu_pool_params(&mut self, dp: Tensor) -> Result<()> {
        self.backward_relu_pool(dp).map(drop)
    }

    /// For a layer that in evaluation maps each channel by a fixed affine function,
    /// `y = scale[c]·x + shift[c]` (batch normalisation with running statistics): the
    /// scales and the shifts, one per channel; `None` for other layers. In evaluation a
    /// [`crate::network::Sequential`] folds such a layer into a convolution before it
    /// ([`Layer::forward_folded`]).
    fn eval_affine(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        None
    }

    /// Whether [`Layer::forward_folded`] is available: the layer can take an affine map
    /// of its output channels into its own weights (a convolution: into its filters and
    /// bias).
    fn folds_affine(&self) -> bool {
        false
    }

    /// This layer's forward pass followed by what `fold` holds — an affine map of the
    /// output channels, a ReLU, a 2×2 max-pooling — computed as one pass, the map folded
    /// into the layer's weights: what evaluation computes for a convolution, its batch
    /// normalisation, a ReLU and a pooling. Keeps what this layer's own backward needs,
    /// as `forward` does.
    fn forward_folded(&mut self, _x: Tensor, _fold: &Fold) -> Result<Tensor> {
        Err(Error::config(
            self.kind(),
            "this layer folds no affine map after it",
        ))
    }

    /// The layer's own parameters and buffers and, for a container, its children, each
    /// with its name (PyTorch's `state_dict` names). Parts of children are not listed:
    /// [`LayerExt`] walks the whole tree.
    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        Vec::new()
    }

    /// [`Layer::parts`], mutable, in the same order.
    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        Vec::new()
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

    /// Sets how this layer (not its children) makes random choices; layers without any
    /// ignore it. Call [`LayerExt::set_randomness`] to reach a whole network.
    fn set_own_randomness(&mut self, _randomness: Randomness) {}

    /// Makes this layer (not its children) compute its batch statistics over every rank
    /// of `group` in training (`None`: over its own input only, the default). Only batch
    /// normalisation has such statistics; call [`LayerExt::sync_batch_statistics`] to
    /// reach a whole network.
    fn set_own_batch_sync(&mut self, _group: Option<Arc<dyn Collective>>) {}
}

/// What every layer and network offers on top of the [`Layer`] contract, written once by
/// walking [`Layer::parts`]: parameters and buffers by full name, zeroing gradients,
/// setting parameters with a shape check, and passes on a borrowed tensor.
pub trait LayerExt: Layer {
    /// [`Layer::forward`] on a borrowed input (a second handle on its values, no copy).
    fn forward_ref(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward(x.clone(), mode)
    }

    /// [`Layer::backward`] on a borrowed gradient.
    fn backward_ref(&mut self, dy: &Tensor) -> Result<Tensor> {
        self.backward(dy.clone())
    }

    /// Every learnable parameter by full name, in forward order.
    fn params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        walk(self.as_dyn(), "", &mut |name, part| {
            if let Part::Param(p) = part {
                out.push((name.to_string(), p));
            }
        });
        out
    }

    /// Every learnable parameter by full name, mutable (optimisers, initialisation).
    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out = Vec::new();
        walk_mut(self.as_dyn_mut(), "", &mut |name, part| {
            if let PartMut::Param(p) = part {
                out.push((name.to_string(), p));
            }
        });
        out
    }

    /// Every buffer (state that is kept but not learned) by full name.
    fn buffers(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        walk(self.as_dyn(), "", &mut |name, part| {
            if let Part::Buffer(b) = part {
                out.push((name.to_string(), b));
            }
        });
        out
    }

    /// Every buffer by full name, mutable (loading a checkpoint).
    fn buffers_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out = Vec::new();
        walk_mut(self.as_dyn_mut(), "", &mut |name, part| {
            if let PartMut::Buffer(b) = part {
                out.push((name.to_string(), b));
            }
        });
        out
    }

    /// Number of learnable values.
    fn param_count(&self) -> usize {
        self.params().iter().map(|(_, p)| p.value().len()).sum()
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        zero_grads(self.as_dyn_mut());
    }

    /// Replaces the parameter or buffer with full name `name` (`"3.weight"`,
    /// `"1.running_mean"`). An unknown name or a tensor of another shape is an error
    /// naming it and both shapes; nothing is changed then.
    fn set(&mut self, name: &str, value: Tensor) -> Result<()> {
        let mut found = None;
        walk_mut(self.as_dyn_mut(), "", &mut |full, part| {
            if full == name {
                found = Some(part);
            }
        });
        match found {
            Some(PartMut::Param(p)) => p.set(name, value),
            Some(PartMut::Buffer(b)) => {
                expect_shape(name, b.shape(), value.shape())?;
                *b = value;
                Ok(())
            }
            Some(PartMut::Layer(_)) | None => Err(Error::config(
                self.kind(),
                format!("has no parameter or buffer named '{name}'"),
            )),
        }
    }

    /// Sets how every layer inside makes random choices (dropout masks). With a seed,
    /// each layer gets its own, derived from the seed and its position.
    fn set_randomness(&mut self, randomness: Randomness) {
        set_randomness_in(self.as_dyn_mut(), randomness);
    }

    /// Makes every batch-normalisation layer inside normalise a training batch with the
    /// statistics of the whole batch spread over the ranks of `group` (PyTorch's
    /// `SyncBatchNorm`); `None` goes back to each rank's own statistics.
    fn sync_batch_statistics(&mut self, group: Option<Arc<dyn Collective>>) {
        set_batch_sync_in(self.as_dyn_mut(), &group);
    }

    #[doc(hidden)]
    fn as_dyn(&self) -> &dyn Layer;
    #[doc(hidden)]
    fn as_dyn_mut(&mut self) -> &mut dyn Layer;
}

impl<L: Layer> LayerExt for L {
    fn as_dyn(&self) -> &dyn Layer {
        self
    }
    fn as_dyn_mut(&mut self) -> &mut dyn Layer {
        self
    }
}

impl LayerExt for dyn Layer + '_ {
    fn as_dyn(&self) -> &dyn Layer {
        self
    }
    fn as_dyn_mut(&mut self) -> &mut dyn Layer {
        self
    }
}

/// `prefix` + `key`, dot-joined: the full name of a part.
fn join(prefix: &str, key: Key) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Calls `f` with every parameter and buffer below `layer` and its full name (children
/// are opened, not reported).
fn walk<'a>(layer: &'a dyn Layer, prefix: &str, f: &mut dyn FnMut(&str, Part<'a>)) {
    for (key, part) in layer.parts() {
        let name = join(prefix, key);
        match part {
            Part::Layer(child) => walk(child, &name, f),
            other => f(&name, other),
        }
    }
}

/// [`walk`], mutable.
fn walk_mut<'a>(layer: &'a mut dyn Layer, prefix: &str, f: &mut dyn FnMut(&str, PartMut<'a>)) {
    for (key, part) in layer.parts_mut() {
        let name = join(prefix, key);
        match part {
            PartMut::Layer(child) => walk_mut(child, &name, f),
            other => f(&name, other),
        }
    }
}

/// Zeroes every gradient below `layer`, without naming anything (it runs every step).
fn zero_grads(layer: &mut dyn Layer) {
    for (_, part) in layer.parts_mut() {
        match part {
            PartMut::Param(p) => p.grad.fill(0.0),
            PartMut::Layer(child) => zero_grads(child),
            PartMut::Buffer(_) => {}
        }
    }
}

fn set_randomness_in(layer: &mut dyn Layer, randomness: Randomness) {
    layer.set_own_randomness(randomness);
    for (key, part) in layer.parts_mut() {
        if let PartMut::Layer(child) = part {
            let derived = match randomness {
                Randomness::Seed(seed) => Randomness::Seed(child_seed(seed, key)),
                other => other,
            };
            set_randomness_in(child, derived);
        }
    }
}

fn set_batch_sync_in(layer: &mut dyn Layer, group: &Option<Arc<dyn Collective>>) {
    layer.set_own_batch_sync(group.clone());
    for (_, part) in layer.parts_mut() {
        if let PartMut::Layer(child) = part {
            set_batch_sync_in(child, group);
        }
    }
}

/// The seed of child `key` of a layer seeded with `seed`: positions step by the golden
/// ratio's 64-bit constant, names mix in their FNV-1a hash.
fn child_seed(seed: u64, key: Key) -> u64 {
    match key {
        Key::Index(i) => seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        Key::Name(name) => {
            let hash = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
            });
            seed ^ hash
        }
    }
}

/// Checks that a tensor given for `name` has the shape it must have.
pub(crate) fn expect_shape(name: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::shape(name, shape_str(expected), got)
            .with_hint("a parameter keeps the shape it was made with"))
    }
}

/// The parts of a layer with a `weight` and an optional `bias` (convolution, linear).
pub(crate) fn weight_and_bias<'a>(
    weight: &'a Param,
    bias: Option<&'a Param>,
) -> Vec<(Key, Part<'a>)> {
    let mut out = vec![(Key::Name("weight"), Part::Param(weight))];
    out.extend(bias.map(|b| (Key::Name("bias"), Part::Param(b))));
    out
}

/// [`weight_and_bias`], mutable.
pub(crate) fn weight_and_bias_mut<'a>(
    weight: &'a mut Param,
    bias: Option<&'a mut Param>,
) -> Vec<(Key, PartMut<'a>)> {
    let mut out = vec![(Key::Name("weight"), PartMut::Param(weight))];
    out.extend(bias.map(|b| (Key::Name("bias"), PartMut::Param(b))));
    out
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

/// What the last forward kept, or the error for a backward that came before any forward.
pub(crate) fn kept<'a, T>(slot: &'a Option<T>, layer: &str) -> Result<&'a T> {
    slot.as_ref().ok_or_else(|| Error::BackwardBeforeForward {
        layer: layer.into(),
    })
}
