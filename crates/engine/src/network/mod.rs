//! Containers: layers made of layers. [`Sequential`] (the lecture's
//! *LayeredNeuralNetwork*) chains layers in forward order and sends gradients back through
//! them in reverse; [`Residual`] adds a shortcut around a main path (ResNet); [`Concat`]
//! joins parallel branches along channels (Inception); [`Dense`] feeds each layer all
//! earlier outputs (DenseNet); [`Scale`] rescales channels by a gate computed from the
//! input (squeeze-and-excitation).

pub mod concat;
pub mod dense;
pub mod replicas;
pub mod residual;
pub mod scale;
pub mod walk;

pub use concat::Concat;
pub use dense::Dense;
pub use replicas::Replicas;
pub use residual::Residual;
pub use scale::Scale;

use crate::error::Result;
use crate::geometry::ReceptiveField;
use crate::kernels::pool::PoolGeometry;
use crate::layers::activation::{Elementwise, ReluFn};
use crate::layers::{Fold, Key, Layer, Mode, Part, PartMut};
use crate::spec::LayerSpec;
use crate::tensor::Tensor;

/// Layers applied one after another. A `Sequential` is itself a [`Layer`], so networks
/// nest (the main path of a residual block is a `Sequential`).
///
/// Parameters are named `"{index}.{name}"`, as PyTorch's `nn.Sequential` names them
/// (`0.weight`, `3.running_mean`, `5.main.0.weight`).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    /// The groups of layers the last evaluation pass ran folded into one: a backward
    /// pass first runs them again one by one, so that each keeps what its backward needs.
    folded: Vec<FoldedRun>,
    /// Where the last forward pass ran a layer, the ReLU after it and a max-pooling after
    /// that as one ([`Layer::forward_relu_pool`]): the first layer's index. Backward runs
    /// each such group as one too.
    fused_pools: Vec<usize>,
}

/// Layers `at..at + len` of a [`Sequential`], run as one in evaluation, and their input.
struct FoldedRun {
    at: usize,
    len: usize,
    input: Tensor,
}

impl Sequential {
    /// An empty network.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Appends a layer (builder style).
    pub fn with(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: Box<dyn Layer>) {
        self.layers.push(layer);
    }

    /// The layers in forward order.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The layers in forward order, mutable.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }

    /// Every layer as an architecture entry, in order.
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        self.layers.iter().map(|l| l.spec()).collect()
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Runs the groups of layers the last evaluation pass folded ([`Layer::forward_folded`])
    /// again, one layer after the other, so that each keeps what its backward needs; the
    /// gradients are then the unfolded layers', of a function whose values the folded
    /// pass computed up to rounding.
    fn unfold(&mut self) -> Result<()> {
        for run in std::mem::take(&mut self.folded) {
            let mut y = run.input;
            for j in run.at..run.at + run.len {
                y = self.layers[j]
                    .forward(y, Mode::Eval)
                    .map_err(|e| e.in_layer(&format!("layer {j}")))?;
            }
        }
        Ok(())
    }

    /// The shape after every layer, or the first layer whose input does not fit, named by
    /// its position: `layer 4 (linear): expects input (N, 400), but got (N, 256) …`.
    pub fn shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let mut shapes = Vec::with_capacity(self.layers.len());
        let mut shape = input.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            shape = layer
                .output_shape(&shape)
                .map_err(|e| e.in_layer(&format!("layer {i}")))?;
            shapes.push(shape.clone());
        }
        Ok(shapes)
    }
}

/// Backward through `layers`, last to first, each group of three the forward pass ran
/// as one ([`Layer::forward_relu_pool`]; `fused` holds the network positions of their
/// first layers) through its first layer's [`Layer::backward_relu_pool`], and a ReLU
/// with the layer after it where that one takes the ReLU's backward in
/// ([`Layer::backward_after_relu`]); errors name a layer by its position in the network,
/// `offset` being the position of `layers[0]`.
fn backward_through(
    layers: &mut [Box<dyn Layer>],
    offset: usize,
    fused: &[usize],
    dy: Tensor,
) -> Result<Tensor> {
    let mut d = dy;
    let mut end = layers.len();
    while end > 0 {
        let at = offset + end - 1;
        if end >= 3 && fused.contains(&(at - 2)) {
            d = layers[end - 3]
                .backward_relu_pool(d)
                .map_err(|e| e.in_layer(&format!("layer {}", at - 2)))?;
            end -= 3;
        } else if end >= 2
            && layers[end - 1].backward_takes_relu_before()
            && layers[end - 2].kind() == ReluFn::KIND
        {
            d = layers[end - 1]
                .backward_after_relu(d)
                .map_err(|e| e.in_layer(&format!("layer {at}")))?;
            end -= 2;
        } else {
            d = layers[end - 1]
                .backward(d)
                .map_err(|e| e.in_layer(&format!("layer {at}")))?;
            end -= 1;
        }
    }
    Ok(d)
}

/// Whether the first of these layers, the ReLU after it and a max-pooling after that run
/// as one ([`Layer::fuses_relu_pool`]) on an input of this shape: the pooling's geometry.
/// Not when a layer would refuse its input: its own forward then reports the error.
fn fused_with_relu_pool(layers: &[Box<dyn Layer>], input: &[usize]) -> Option<PoolGeometry> {
    let [first, relu, pool, ..] = layers else {
        return None;
    };
    if !first.fuses_relu_pool() || relu.kind() != ReluFn::KIND {
        return None;
    }
    pool.tiling_max_pool(&first.output_shape(input).ok()?)
}

/// What evaluation folds into the first of a run of layers ([`Layer::forward_folded`]),
/// owned: the number of layers folded, the affine map of the second, whether a ReLU
/// follows, the pooling after that.
struct Folding {
    len: usize,
    affine: Option<(Vec<f32>, Vec<f32>)>,
    relu: bool,
    pool: Option<PoolGeometry>,
}

/// In evaluation, what the first of these layers takes in ([`Layer::folds_affine`]) on an
/// input of this shape: the affine map of the second ([`Layer::eval_affine`]) if it has
/// one, then a ReLU if one follows, then a max-pooling whose 2×2 windows tile its input
/// ([`Layer::tiling_max_pool`]) if one follows — a map or a pooling at least. Not when a
/// layer would refuse its input: its own forward then reports the error.
fn foldable(layers: &[Box<dyn Layer>], input: &[usize]) -> Option<Folding> {
    let (first, rest) = layers.split_first()?;
    if !first.folds_affine() {
        return None;
    }
    let mut shape = first.output_shape(input).ok()?;
    let mut rest = rest.iter().peekable();
    let affine = rest.peek().and_then(|l| l.eval_affine());
    if let Some((scale, _)) = &affine {
        let map = rest.next()?;
        if shape.get(1) != Some(&scale.len()) {
            return None;
        }
        shape = map.output_shape(&shape).ok()?;
    }
    let relu = rest.next_if(|l| l.kind() == ReluFn::KIND).is_some();
    let pool = rest.peek().and_then(|l| l.tiling_max_pool(&shape));
    if affine.is_none() && pool.is_none() {
        return None;
    }
    Some(Folding {
        len: 1 + usize::from(affine.is_some()) + usize::from(relu) + usize::from(pool.is_some()),
        affine,
        relu,
        pool,
    })
}

/// Whether the first of these layers gives the moments of its output's planes to the
/// second, which takes its statistics from them in this mode ([`Layer::gives_moments`],
/// [`Layer::takes_moments`]).
fn gives_moments_to_next(layers: &[Box<dyn Layer>], mode: Mode) -> bool {
    match layers {
        [first, second, ..] => first.gives_moments() && second.takes_moments(mode),
        _ => false,
    }
}

/// Whether the first of these layers runs fused with a ReLU that follows it
/// ([`Layer::fuses_relu`]).
fn fused_with_relu(layers: &[Box<dyn Layer>]) -> bool {
    match layers {
        [first, second, ..] => first.fuses_relu() && second.kind() == ReluFn::KIND,
        _ => false,
    }
}

impl Layer for Sequential {
    fn kind(&self) -> &'static str {
        "sequential"
    }

    fn describe(&self) -> String {
        let inner: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        format!("Sequential[{}]", inner.join(" → "))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Sequential {
            layers: self.layer_specs(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shapes(input)?.pop().unwrap_or_else(|| input.to_vec()))
    }

    /// x: the first layer's input → y: the last layer's output.
    /// A layer that [`Layer::fuses_relu`] and the ReLU after it run as one pass, and one
    /// that [`Layer::fuses_relu_pool`] with a ReLU and a 2×2 max-pooling after it as one
    /// (backward too); in evaluation, a convolution, the batch normalisation after it, a
    /// ReLU and a 2×2 max-pooling after that run as one convolution
    /// ([`Layer::forward_folded`]); a batch normalisation with batch statistics takes
    /// them from the moments the convolution before it gives ([`Layer::take_moments`]).
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.folded.clear();
        self.fused_pools.clear();
        let mut y = x;
        let mut i = 0;
        while i < self.layers.len() {
            let in_layer = |e: crate::error::Error| e.in_layer(&format!("layer {i}"));
            let fold = (mode == Mode::Eval)
                .then(|| foldable(&self.layers[i..], y.shape()))
                .flatten();
            if let Some(folding) = fold {
                let input = y.clone();
                let fold = Fold {
                    affine: folding.affine.as_ref().map(|(s, t)| (&s[..], &t[..])),
                    relu: folding.relu,
                    pool: folding.pool.as_ref(),
                };
                y = self.layers[i].forward_folded(y, &fold).map_err(in_layer)?;
                let len = folding.len;
                self.folded.push(FoldedRun { at: i, len, input });
                i += len;
            } else if gives_moments_to_next(&self.layers[i..], mode) {
                let (out, moments) = self.layers[i]
                    .forward_with_moments(y, mode)
                    .map_err(in_layer)?;
                self.layers[i + 1].take_moments(moments);
                y = out;
                i += 1;
            } else if let Some(pool) = fused_with_relu_pool(&self.layers[i..], y.shape()) {
                y = self.layers[i]
                    .forward_relu_pool(y, mode, &pool)
                    .map_err(in_layer)?;
                self.fused_pools.push(i);
                i += 3;
            } else if fused_with_relu(&self.layers[i..]) {
                y = self.layers[i].forward_relu(y, mode).map_err(in_layer)?;
                self.layers[i + 1].keep_fused_output(&y);
                i += 2;
            } else {
                y = self.layers[i].forward(y, mode).map_err(in_layer)?;
                i += 1;
            }
        }
        Ok(y)
    }

    /// Chain rule: `dx = J_0ᵀ · J_1ᵀ ⋯ J_{L−1}ᵀ · dy`, each layer applying its own `Jᵀ`.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        self.unfold()?;
        backward_through(&mut self.layers, 0, &self.fused_pools, dy)
    }

    /// Backward through every layer, the first one without its input gradient (also when
    /// it ran fused with a ReLU and a pooling after it).
    fn backward_params(&mut self, dy: Tensor) -> Result<()> {
        self.unfold()?;
        let fused = self.fused_pools.first() == Some(&0);
        let first_len = (if fused { 3 } else { 1 }).min(self.layers.len());
        let (first, rest) = self.layers.split_at_mut(first_len);
        let Some(first) = first.first_mut() else {
            return Ok(());
        };
        let d = backward_through(rest, first_len, &self.fused_pools, dy)?;
        match fused {
            true => first.backward_relu_pool_params(d),
            false => first.backward_params(d),
        }
        .map_err(|e| e.in_layer("layer 0"))
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        let layers = self.layers.iter().enumerate();
        layers
            .map(|(i, l)| (Key::Index(i), Part::Layer(l.as_ref())))
            .collect()
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        let layers = self.layers.iter_mut().enumerate();
        layers
            .map(|(i, l)| (Key::Index(i), PartMut::Layer(l.as_mut())))
            .collect()
    }

    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        self.layers
            .iter()
            .fold(before, |rf, layer| layer.receptive_field(rf))
    }

    fn macs(&self, input: &[usize]) -> u64 {
        let mut shape = input.to_vec();
        let mut total = 0;
        for layer in &self.layers {
            total += layer.macs(&shape);
            match layer.output_shape(&shape) {
                Ok(next) => shape = next,
                Err(_) => break,
            }
        }
        total
    }
}
