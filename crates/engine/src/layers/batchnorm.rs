//! Batch normalisation with PyTorch's semantics: [`BatchNorm2d`] over (N, C, H, W) and
//! [`BatchNorm1d`] over (N, F). Both are the one implementation [`BatchNorm`], which sees
//! its input as (N, C, S) — S = H·W for images, 1 for flat features — and normalises each
//! channel over the N·S values it holds.

use std::marker::PhantomData;
use std::sync::Arc;

use rayon::prelude::*;

use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::kernels::pool::{max_2x2_plane, route_2x2_plane_through, PoolGeometry};
use crate::kernels::{lane_sum, lane_sum_pairs, Moments};
use crate::layers::activation::{Elementwise, ReluFn};
use crate::layers::pool::Pooled;
use crate::layers::{expect_nchw, expect_same_shape, kept, Key, Layer, Mode, Param, Part, PartMut};
use crate::spec::{BatchNormSpec, LayerSpec};
use crate::tensor::Tensor;

/// PyTorch's default `eps`, added to the variance before the square root.
pub use crate::spec::BATCHNORM_EPS as EPS;

/// PyTorch's default `momentum`: `running = (1 − momentum)·running + momentum·batch`.
pub use crate::spec::BATCHNORM_MOMENTUM as MOMENTUM;

/// The settings of a batch-norm layer, PyTorch's arguments of `nn.BatchNorm{1,2}d` with
/// its defaults. Start from [`BatchNormConfig::new`] and adjust:
///
/// ```
/// use ocellus::layers::{BatchNorm2d, BatchNormConfig};
///
/// // nn.BatchNorm2d(16, eps=1e-3, momentum=None, affine=False)
/// let config = BatchNormConfig::new(16).eps(1e-3).momentum(None).affine(false);
/// let bn = BatchNorm2d::with_config(config).unwrap();
/// assert!(bn.running_mean().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// C of an image, F of flat features: PyTorch's `num_features`.
    pub num_features: usize,
    /// Added to the variance before the square root: `x̂ = (x − μ)/√(σ² + eps)`. PyTorch's
    /// default is [`EPS`] = 1e-5; must be positive and finite.
    pub eps: f64,
    /// The weight `a` of a training batch in the running statistics,
    /// `running = (1 − a)·running + a·batch`, in `[0, 1]`; PyTorch's default is
    /// [`MOMENTUM`] = 0.1. `None` is PyTorch's `momentum=None`: `a = 1/t` at the t-th
    /// training batch (t = `num_batches_tracked`), which makes the running statistics the
    /// plain average of every batch seen — a cumulative moving average.
    pub momentum: Option<f64>,
    /// Learnable `weight` γ and `bias` β (the default). Without them `y = x̂`, and the layer
    /// has no parameters at all, as PyTorch's `affine=False` (they are not in its
    /// `state_dict` either).
    pub affine: bool,
    /// Keep `running_mean`, `running_var` and `num_batches_tracked` (the default). Without
    /// them the layer has no buffers and normalises with the batch statistics in
    /// evaluation too, as PyTorch's `track_running_stats=False`.
    pub track_running_stats: bool,
}

impl BatchNormConfig {
    /// PyTorch's defaults for `num_features` channels: eps 1e-5, momentum 0.1, affine,
    /// tracking running statistics.
    pub fn new(num_features: usize) -> Self {
        Self::from_spec(&BatchNormSpec::default(), num_features)
    }

    /// The settings an architecture entry writes, for `num_features` channels (the entry's
    /// own `features`, when written, is checked against them by the caller).
    pub fn from_spec(spec: &BatchNormSpec, num_features: usize) -> Self {
        BatchNormConfig {
            num_features,
            eps: spec.eps,
            momentum: spec.momentum,
            affine: spec.affine,
            track_running_stats: spec.track_running_stats,
        }
    }

    /// The settings as an architecture entry, every size written out.
    pub fn spec(&self) -> BatchNormSpec {
        BatchNormSpec {
            features: Some(self.num_features),
            eps: self.eps,
            momentum: self.momentum,
            affine: self.affine,
            track_running_stats: self.track_running_stats,
        }
    }

    /// Sets `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the momentum: a number in `[0, 1]`, or `None` for the cumulative average.
    pub fn momentum(mut self, momentum: impl Into<Option<f64>>) -> Self {
        self.momentum = momentum.into();
        self
    }

    /// With (`true`, the default) or without learnable γ and β.
    pub fn affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }

    /// With (`true`, the default) or without running statistics.
    pub fn track_running_stats(mut self, track: bool) -> Self {
        self.track_running_stats = track;
        self
    }

    /// Positive `num_features`, `eps` positive and finite, momentum in `[0, 1]`.
    fn validate(&self, layer: &str) -> Result<()> {
        if self.num_features == 0 {
            return Err(Error::config(layer, "num_features must be positive"));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::config(
                layer,
                format!(
                    "eps must be positive and finite (PyTorch's default is 1e-5), got {}",
                    self.eps
                ),
            ));
        }
        if let Some(m) = self.momentum {
            if !(0.0..=1.0).contains(&m) {
                return Err(Error::config(
                    layer,
                    format!(
                        "momentum must be in [0, 1] (PyTorch's default is 0.1), or None for \
                         a cumulative average; got {m}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The settings that differ from PyTorch's defaults, as `describe` lists them.
    fn non_defaults(&self) -> String {
        let mut s = String::new();
        if self.eps != EPS {
            s += &format!(", eps {}", self.eps);
        }
        match self.momentum {
            Some(m) if m == MOMENTUM => {}
            Some(m) => s += &format!(", momentum {m}"),
            None => s += ", momentum None (cumulative average)",
        }
        if !self.affine {
            s += ", no affine";
        }
        if !self.track_running_stats {
            s += ", no running stats";
        }
        s
    }
}

/// How a batch-norm layer reads its input as (N, C, S). Implemented by [`Image`] and
/// [`Flat`]; it only names the layer and checks shapes, the maths is shared.
pub trait Layout: Send + 'static {
    /// The kind as written in architecture files.
    const KIND: &'static str;
    /// The PyTorch class name, for descriptions.
    const NAME: &'static str;
    /// The layer as an architecture entry.
    fn spec(config: &BatchNormConfig) -> LayerSpec;
    /// `(N, C, S)` of an input shape, or a shape error.
    fn split(shape: &[usize], channels: usize) -> Result<(usize, usize, usize)>;
}

/// Images (N, C, H, W): S = H·W.
pub struct Image;

/// Flat features (N, F), S = 1; (N, C, L) with S = L is accepted too, as in PyTorch.
pub struct Flat;

impl Layout for Image {
    const KIND: &'static str = "batchnorm2d";
    const NAME: &'static str = "BatchNorm2d";

    fn spec(c: &BatchNormConfig) -> LayerSpec {
        LayerSpec::BatchNorm2d(c.spec())
    }

    fn split(shape: &[usize], channels: usize) -> Result<(usize, usize, usize)> {
        expect_nchw(Self::KIND, shape, Some(channels)).map_err(|e| {
            e.with_hint(format!("BatchNorm2d({channels}) needs {channels} channels"))
        })?;
        let plane = shape[2]
            .checked_mul(shape[3])
            .ok_or_else(|| Error::shape(Self::KIND, "(N, C, H, W) with H·W below 2⁶⁴", shape))?;
        Ok((shape[0], shape[1], plane))
    }
}

impl Layout for Flat {
    const KIND: &'static str = "batchnorm1d";
    const NAME: &'static str = "BatchNorm1d";

    fn spec(c: &BatchNormConfig) -> LayerSpec {
        LayerSpec::BatchNorm1d(c.spec())
    }

    fn split(shape: &[usize], channels: usize) -> Result<(usize, usize, usize)> {
        match shape {
            [n, f] if *f == channels => Ok((*n, *f, 1)),
            [n, c, l] if *c == channels => Ok((*n, *c, *l)),
            _ => {
                let err = Error::shape(
                    Self::KIND,
                    format!("(N, {channels}) or (N, {channels}, L)"),
                    shape,
                );
                Err(if shape.len() == 4 {
                    err.with_hint("an image tensor: use BatchNorm2d, or Flatten first")
                } else {
                    err
                })
            }
        }
    }
}

/// γ and β, PyTorch's `weight` and `bias`, (C,) each.
struct Affine {
    /// γ, (C,), initially 1.
    weight: Param,
    /// β, (C,), initially 0.
    bias: Param,
}

/// The running statistics and the count of batches they have seen.
struct RunningStats {
    /// (C,), initially 0.
    mean: Tensor,
    /// (C,), the unbiased variance, initially 1.
    var: Tensor,
    /// (), the number of training batches seen, stored as f32.
    num_batches_tracked: Tensor,
}

impl RunningStats {
    /// PyTorch's update after a training batch with statistics `stats` (μ, biased σ²) over
    /// m values per channel: `num_batches_tracked += 1`, then with `a = momentum`, or
    /// `a = 1/num_batches_tracked` for `momentum=None`,
    /// `running_mean = (1 − a)·running_mean + a·μ` and
    /// `running_var = (1 − a)·running_var + a·σ²·m/(m − 1)`.
    fn update(&mut self, stats: &[(f64, f64)], m: usize, momentum: Option<f64>) {
        let count = &mut self.num_batches_tracked.data_mut()[0];
        *count += 1.0;
        let a = momentum.unwrap_or(1.0 / *count as f64);
        // Bessel's correction m/(m − 1) turns the biased variance into the unbiased one
        // PyTorch keeps in running_var.
        let unbiased = m as f64 / (m as f64 - 1.0);
        let (mean, var) = (self.mean.data_mut(), self.var.data_mut());
        for (ch, (mu, sigma2)) in stats.iter().enumerate() {
            let (rm, rv) = (mean[ch] as f64, var[ch] as f64);
            mean[ch] = ((1.0 - a) * rm + a * mu) as f32;
            var[ch] = ((1.0 - a) * rv + a * sigma2 * unbiased) as f32;
        }
    }
}

/// Batch normalisation, `y = γ·x̂ + β` with `x̂ = (x − μ)/√(σ² + eps)` per channel.
///
/// - [`Mode::Train`]: μ and σ² are the batch mean and the **biased** variance (divided by
///   m = N·S) of each channel; the running statistics are then updated with the momentum
///   using the **unbiased** variance (divided by m − 1), and `num_batches_tracked` grows
///   by one — all as PyTorch's `nn.BatchNorm{1,2}d`.
/// - [`Mode::Eval`]: μ and σ² are the running statistics, constants for backward; without
///   running statistics (`track_running_stats=False`) the batch statistics, as in Train.
/// - Synchronised over a group of ranks ([`LayerExt::sync_batch_statistics`](crate::LayerExt::sync_batch_statistics),
///   PyTorch's `SyncBatchNorm`): in Train, μ and σ² (and m) are those of the batch that
///   the inputs of every rank make together, and backward's sums span it too — what one
///   process would compute on the whole batch.
///
/// Parameters `weight` (γ, initially 1) and `bias` (β, initially 0), unless not affine;
/// buffers `running_mean` (initially 0), `running_var` (initially 1) and
/// `num_batches_tracked` (a 0-d tensor), unless not tracking — PyTorch's `state_dict`
/// names and initial values. The settings are a [`BatchNormConfig`].
pub struct BatchNorm<L: Layout> {
    config: BatchNormConfig,
    /// γ and β; `None` without `affine` (then γ = 1, β = 0).
    affine: Option<Affine>,
    /// `None` without `track_running_stats`.
    running: Option<RunningStats>,
    /// The last input; backward recomputes the normalised input `x̂ = (x − μ)·inv_std`
    /// from it, which costs less than writing x̂ out and reading it back.
    input: Option<Tensor>,
    /// After a forward pass fused with a ReLU and a max-pooling
    /// ([`Layer::forward_relu_pool`]): the pooling and the window position of each maximum.
    pooled: Option<Pooled>,
    /// (C,): μ of the last forward pass.
    mean: Vec<f32>,
    /// (C,): `1/√(σ² + eps)` of the last forward pass.
    inv_std: Vec<f32>,
    /// Whether the last forward pass normalised with the batch statistics (training, or
    /// no running statistics): then μ and σ² depend on x, and backward differentiates
    /// through them.
    batch_statistics: bool,
    /// The ranks whose inputs together form the batch in training (PyTorch's
    /// `SyncBatchNorm`); `None`: this layer's input alone.
    sync: Option<Arc<dyn Collective>>,
    /// m of the last forward pass: the values per channel its statistics were taken over,
    /// on every rank together when it was synchronised.
    count: usize,
    /// Whether the last forward pass took its statistics over the ranks of `sync`: then
    /// backward sums its per-channel terms over them too.
    synced: bool,
    /// The moments of the next input's planes, computed by the layer before it
    /// ([`Layer::take_moments`]); the next forward pass uses them (if they fit its input)
    /// and drops them.
    moments: Option<Vec<Moments>>,
    layout: PhantomData<L>,
}

/// Batch normalisation of images (N, C, H, W), PyTorch's `nn.BatchNorm2d`.
pub type BatchNorm2d = BatchNorm<Image>;

/// Batch normalisation of flat features (N, F), PyTorch's `nn.BatchNorm1d`.
pub type BatchNorm1d = BatchNorm<Flat>;

impl<L: Layout> BatchNorm<L> {
    /// Batch normalisation of `num_features` channels (C of an image, F of flat features)
    /// with PyTorch's defaults.
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_config(BatchNormConfig::new(num_features))
    }

    /// Batch normalisation with these settings; fails on zero features, an `eps` that is
    /// not positive and finite, or a momentum outside `[0, 1]`.
    pub fn with_config(config: BatchNormConfig) -> Result<Self> {
        config.validate(L::KIND)?;
        let c = config.num_features;
        let values = crate::memory::product(&[c, 4]);
        crate::memory::expect_fits(L::KIND, "its parameters and statistics", values)?;
        Ok(BatchNorm {
            config,
            affine: config.affine.then(|| Affine {
                weight: Param::new(Tensor::full(&[c], 1.0)),
                bias: Param::new(Tensor::zeros(&[c])),
            }),
            running: config.track_running_stats.then(|| RunningStats {
                mean: Tensor::zeros(&[c]),
                var: Tensor::full(&[c], 1.0),
                num_batches_tracked: Tensor::zeros(&[]),
            }),
            input: None,
            pooled: None,
            mean: Vec::new(),
            inv_std: Vec::new(),
            batch_statistics: false,
            sync: None,
            count: 0,
            synced: false,
            moments: None,
            layout: PhantomData,
        })
    }

    /// The settings.
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }

    /// Number of channels (features) normalised.
    pub fn num_features(&self) -> usize {
        self.config.num_features
    }

    /// The running mean, (C,); `None` without running statistics.
    pub fn running_mean(&self) -> Option<&Tensor> {
        self.running.as_ref().map(|r| &r.mean)
    }

    /// The running (unbiased) variance, (C,); `None` without running statistics.
    pub fn running_var(&self) -> Option<&Tensor> {
        self.running.as_ref().map(|r| &r.var)
    }

    /// Training batches seen so far; `None` without running statistics.
    pub fn num_batches_tracked(&self) -> Option<usize> {
        self.running
            .as_ref()
            .map(|r| r.num_batches_tracked.data()[0] as usize)
    }

    /// γ and β as slices, (C,) each: ones and zeros when not affine.
    fn gamma_beta(&self) -> (Vec<f32>, Vec<f32>) {
        match &self.affine {
            Some(a) => (
                a.weight.value().data().to_vec(),
                a.bias.value().data().to_vec(),
            ),
            None => (
                vec![1.0; self.config.num_features],
                vec![0.0; self.config.num_features],
            ),
        }
    }

    /// The statistics a forward pass normalises with, μ and `inv_std` per channel, kept
    /// for backward (and the running statistics updated in training); `(N, C, S)` of x.
    fn statistics(&mut self, x: &Tensor, mode: Mode) -> Result<(usize, usize, usize)> {
        let given = self.moments.take();
        let (n, c, s) = L::split(x.shape(), self.config.num_features)?;
        let m = n * s;
        // PyTorch normalises with the batch statistics in training, and in evaluation too
        // when it keeps no running statistics (`bn_training` in `_BatchNorm.forward`).
        let batch_statistics = mode == Mode::Train || self.running.is_none();
        // Synchronised batch normalisation, as PyTorch's, spans the ranks in training only.
        let sync = self.sync.as_deref().filter(|_| mode == Mode::Train);
        self.synced = sync.is_some();
        self.count = m;
        // (μ, σ²) per channel.
        let stats: Vec<(f64, f64)> = match (&mut self.running, batch_statistics) {
            (running, true) if sync.is_some() => {
                let group = sync.expect("checked by the guard");
                let (stats, total) = synced_batch_stats(x.data(), (n, c, s), group, L::KIND)?;
                if let Some(running) = running {
                    running.update(&stats, total, self.config.momentum);
                }
                self.count = total;
                stats
            }
            (running, true) => {
                if m < 2 {
                    let hint = if mode == Mode::Train {
                        "the batch variance of a single value is undefined and PyTorch \
                         refuses it too: use a larger batch, or Mode::Eval"
                    } else {
                        "without running statistics (track_running_stats = false) evaluation \
                         normalises with the batch variance too, which a single value does \
                         not have: use a larger batch"
                    };
                    return Err(Error::shape(
                        L::KIND,
                        "more than one value per channel with batch statistics",
                        x.shape(),
                    )
                    .with_hint(hint));
                }
                let stats = match given {
                    Some(moments) if moments.len() == n * c => merge_moments(&moments, n, c, s),
                    _ => batch_stats(x.data(), n, c, s),
                };
                if let (Mode::Train, Some(running)) = (mode, running) {
                    running.update(&stats, m, self.config.momentum);
                }
                stats
            }
            (Some(running), false) => running
                .mean
                .data()
                .iter()
                .zip(running.var.data())
                .map(|(&mu, &sigma2)| (mu as f64, sigma2 as f64))
                .collect(),
            (None, false) => unreachable!("without running statistics every pass uses the batch's"),
        };
        let eps = self.config.eps;
        self.inv_std.clear();
        self.inv_std
            .extend(stats.iter().map(|&(_, sigma2)| inv_std(sigma2, eps)));
        self.mean.clear();
        self.mean.extend(stats.iter().map(|(mu, _)| *mu as f32));

        self.batch_statistics = batch_statistics;
        Ok((n, c, s))
    }

    /// The affine map of each channel that the last forward pass applied.
    fn channel_maps(&self) -> Vec<Normalise> {
        let (gamma, beta) = self.gamma_beta();
        (0..self.config.num_features)
            .map(|ch| Normalise {
                mean: self.mean[ch],
                inv_std: self.inv_std[ch],
                gamma: gamma[ch],
                beta: beta[ch],
            })
            .collect()
    }

    /// The forward pass, followed by a ReLU with `RELU` (both in the one pass that writes
    /// y): `y = γ·x̂ + β` or `max(0, γ·x̂ + β)`, the ReLU's arithmetic [`ReluFn`]'s.
    fn forward_then<const RELU: bool>(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        let (_, c, s) = self.statistics(&x, mode)?;
        let maps = self.channel_maps();
        let mut y = Tensor::for_overwrite(x.shape());
        y.data_mut()
            .par_chunks_mut(s.max(1))
            .zip(x.data().par_chunks(s.max(1)))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let map = maps[plane % c];
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = if RELU { map.relu(x) } else { map.apply(x) };
                }
            });
        self.input = Some(x);
        self.pooled = None;
        Ok(y)
    }

    /// The sums backward needs, `(Σ dy, Σ dy·x̂)` per channel in f64, over every rank's
    /// part of the batch when the forward pass was synchronised; adds `dβ = Σ dy` and
    /// `dγ = Σ dy·x̂` (this rank's own sums) into the parameter gradients. Returns how each
    /// channel's dx follows from its dy and x.
    fn parameter_gradients(
        &mut self,
        x: &[f32],
        (n, c, s): (usize, usize, usize),
        upstream: &Upstream,
    ) -> Result<Vec<InputGradient>> {
        let m = self.count as f64;
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        let mut sums = channel_totals(n, c, |plane, scratch| {
            let ch = plane % c;
            let (mu, inv_std) = (mean[ch] as f64, inv_std[ch] as f64);
            let x = &x[plane * s..][..s];
            let dy = upstream.plane(plane, x, scratch);
            // The second sum reads the plane from cache, after the first.
            (
                lane_sum(dy, |d| d),
                lane_sum_pairs(dy, x, |d, x| d * (x - mu) * inv_std),
            )
        });
        if let Some(affine) = &mut self.affine {
            for (ch, (sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
                affine.bias.grad_mut()[ch] += *sum_dy as f32;
                affine.weight.grad_mut()[ch] += *sum_dy_xhat as f32;
            }
        }
        if let Some(group) = self.sync.as_deref().filter(|_| self.synced) {
            // dx of a synchronised layer needs the sums over the whole batch, every rank's
            // part of it; dγ and dβ took this rank's own sums above, and the ranks add
            // their parameter gradients up after backward.
            let mut flat: Vec<f64> = sums.iter().flat_map(|&(a, b)| [a, b]).collect();
            group.sum_f64(&mut flat)?;
            for (pair, sum) in flat.chunks_exact(2).zip(&mut sums) {
                *sum = (pair[0], pair[1]);
            }
        }
        let (gamma, _) = self.gamma_beta();
        Ok((0..c)
            .map(|ch| InputGradient {
                scale: gamma[ch] * self.inv_std[ch],
                mean_dy: (sums[ch].0 / m) as f32,
                mean_dy_xhat: (sums[ch].1 / m) as f32,
                mean: self.mean[ch],
                inv_std: self.inv_std[ch],
                batch_statistics: self.batch_statistics,
            })
            .collect())
    }

    /// [`Layer::backward_relu_pool`] with the kept pooling.
    fn backward_pooled(&mut self, pooled: &Pooled, dp: Tensor) -> Result<Tensor> {
        let x = kept(&self.input, L::KIND)?.clone();
        expect_same_shape(L::KIND, &pooled.pool.output_shape(), dp.shape())?;
        let dims = L::split(x.shape(), self.config.num_features)?;
        let upstream = Upstream::Pooled {
            pooled,
            dp: dp.data(),
        };
        let grads = self.parameter_gradients(x.data(), dims, &upstream)?;
        let (c, s) = (dims.1, dims.2);
        let mut dx = Tensor::for_overwrite(x.shape());
        dx.data_mut()
            .par_chunks_mut(s)
            .zip(x.data().par_chunks(s))
            .enumerate()
            .for_each_init(Vec::new, |scratch, (plane, (d, x))| {
                let (grad, dy) = (grads[plane % c], upstream.plane(plane, x, scratch));
                for ((d, &dy), &x) in d.iter_mut().zip(dy).zip(x) {
                    *d = grad.at(dy, x);
                }
            });
        Ok(dx)
    }
}

/// One channel's map in the forward pass, `y = γ·(x − μ)·inv_std + β`: the arithmetic of
/// the plain pass, the one fused with a ReLU and the one fused with a ReLU and pooling,
/// written once so that all give the same bits.
#[derive(Clone, Copy)]
struct Normalise {
    mean: f32,
    inv_std: f32,
    gamma: f32,
    beta: f32,
}

impl Normalise {
    /// `γ·x̂ + β`
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        let x_hat = (x - self.mean) * self.inv_std;
        self.gamma * x_hat + self.beta
    }

    /// `max(0, γ·x̂ + β)`
    #[inline(always)]
    fn relu(self, x: f32) -> f32 {
        ReluFn.f(self.apply(x))
    }
}

/// One channel's dx from its dy and x, once backward's sums are known (see
/// [`Layer::backward`] of [`BatchNorm`]).
#[derive(Clone, Copy)]
struct InputGradient {
    /// γ·inv_std
    scale: f32,
    /// Σ dy / m
    mean_dy: f32,
    /// Σ dy·x̂ / m
    mean_dy_xhat: f32,
    mean: f32,
    inv_std: f32,
    batch_statistics: bool,
}

impl InputGradient {
    #[inline(always)]
    fn at(self, dy: f32, x: f32) -> f32 {
        if self.batch_statistics {
            let x_hat = (x - self.mean) * self.inv_std;
            self.scale * (dy - self.mean_dy - x_hat * self.mean_dy_xhat)
        } else {
            self.scale * dy
        }
    }
}

/// Where backward's dy comes from, plane by plane (a plane being one channel of one
/// image).
enum Upstream<'a> {
    /// dy itself.
    Direct(&'a [f32]),
    /// The gradient dp of the pooled output of a ReLU and a 2×2 max-pooling after the
    /// layer, taken back through both.
    Pooled { pooled: &'a Pooled, dp: &'a [f32] },
}

impl Upstream<'_> {
    /// dy of one plane, whose input values are `x`: a slice of dy itself, or built in
    /// `scratch`.
    ///
    /// Through the pooling and the ReLU: the pooling's backward puts each window's `dp`
    /// at the position of its maximum and 0 elsewhere, and the ReLU's multiplies each
    /// value by its derivative at the ReLU's output — at a maximum, the pooled value. So
    /// `dp·relu'(p)` is routed, which gives the bits of the three layers' own backward
    /// passes.
    fn plane<'s>(&'s self, plane: usize, x: &[f32], scratch: &'s mut Vec<f32>) -> &'s [f32] {
        let s = x.len();
        match self {
            Upstream::Direct(dy) => &dy[plane * s..][..s],
            Upstream::Pooled { pooled, dp } => {
                let g = &pooled.pool;
                let out = g.oh * g.ow;
                let window = plane * out..(plane + 1) * out;
                let (taps, dp) = (&pooled.taps[window.clone()], &dp[window.clone()]);
                let maxima = &pooled.output.data()[window];
                scratch.resize(out + s, 0.0);
                let (through_relu, dy) = scratch.split_at_mut(out);
                let relu = |d, y| ReluFn.gradient(d, y);
                route_2x2_plane_through(g, taps, dp, maxima, relu, through_relu, dy);
                dy
            }
        }
    }
}

/// `1/√(σ² + eps)`, in f64 and then rounded: what x̂ = (x − μ)·inv_std multiplies by.
fn inv_std(sigma2: f64, eps: f64) -> f32 {
    (1.0 / (sigma2 + eps).sqrt()) as f32
}

/// Per-channel mean and biased variance (÷ m) of an (N, C, S) tensor, accumulated in f64
/// (PyTorch's CPU kernel accumulates in double too), in one pass over memory: each
/// plane's [`Moments`] about its first value, in parallel in memory order, then merged
/// channel by channel ([`merge_moments`]).
fn batch_stats(x: &[f32], n: usize, c: usize, s: usize) -> Vec<(f64, f64)> {
    let planes: Vec<Moments> = x.par_chunks(s.max(1)).map(Moments::of).collect();
    merge_moments(&planes, n, c, s)
}

/// Per-channel mean and biased variance from the [`Moments`] of the N·C planes of an (N,
/// C, S) tensor, image after image: the sums moved to one value `k` of the channel (its
/// first plane's), `Σ(x − k) = Σ_p [Σ_p(x − k_p) + S·δ_p]` and `Σ(x − k)² = Σ_p [Σ_p(x −
/// k_p)² + 2δ_p·Σ_p(x − k_p) + S·δ_p²]` with `δ_p = k_p − k`, then `mean = k + Σ(x − k)/m`
/// and `var = (Σ(x − k)² − (Σ(x − k))²/m)/m`. Sums about values of the channel keep
/// `Σ(x − k)²` and `(Σ(x − k))²/m` of the size of the variance itself, so the
/// subtraction loses nothing to cancellation even when the mean is far from zero.
fn merge_moments(planes: &[Moments], n: usize, c: usize, s: usize) -> Vec<(f64, f64)> {
    let (m, len) = ((n * s) as f64, s as f64);
    (0..c)
        .map(|ch| {
            let k = f64::from(planes[ch].k);
            let (mut sum, mut squares) = (0.0, 0.0);
            for p in planes[ch..].iter().step_by(c).take(n) {
                let delta = f64::from(p.k) - k;
                squares += p.squares + 2.0 * delta * p.sum + len * delta * delta;
                sum += p.sum + len * delta;
            }
            (k + sum / m, ((squares - sum * sum / m) / m).max(0.0))
        })
        .collect()
}

/// Per-channel totals of two sums taken plane by plane over an (N, C, S) tensor:
/// `plane_sums(plane, scratch)` of each of its N·C planes, in parallel in memory order,
/// then added up channel by channel, image after image — so the same bits whatever the
/// thread count.
fn channel_totals(
    n: usize,
    c: usize,
    plane_sums: impl Fn(usize, &mut Vec<f32>) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    let planes: Vec<(f64, f64)> = (0..n * c)
        .into_par_iter()
        .map_init(Vec::new, |scratch, plane| plane_sums(plane, scratch))
        .collect();
    (0..c)
        .map(|ch| {
            (0..n)
                .map(|i| planes[i * c + ch])
                .fold((0.0, 0.0), |(a, b), (u, v)| (a + u, b + v))
        })
        .collect()
}

/// [`batch_stats`] of the batch that the inputs `x` of every rank of `group` make
/// together, and its m: the same two passes, each rank's per-channel sums added over
/// the ranks. Fails, on every rank alike, when the batch has fewer than two values per
/// channel.
fn synced_batch_stats(
    x: &[f32],
    (n, c, s): (usize, usize, usize),
    group: &dyn Collective,
    kind: &str,
) -> Result<(Vec<(f64, f64)>, usize)> {
    // Σx per channel, then the count of values m.
    let mut sums = channel_sums(x, n, c, s, |_| |v| v);
    sums.push((n * s) as f64);
    group.sum_f64(&mut sums)?;
    let m = sums[c];
    if m < 2.0 {
        return Err(Error::config(
            kind,
            format!(
                "the batch spread over {} ranks holds {m} value(s) per channel; the batch \
                 variance needs at least two: use a larger batch",
                group.size()
            ),
        ));
    }
    let means: Vec<f64> = sums[..c].iter().map(|sum| sum / m).collect();
    let mut squares = channel_sums(x, n, c, s, |ch| {
        let mean = means[ch];
        move |v| (v - mean) * (v - mean)
    });
    group.sum_f64(&mut squares)?;
    let stats = means
        .into_iter()
        .zip(squares)
        .map(|(mean, sq)| (mean, sq / m))
        .collect();
    Ok((stats, m as usize))
}

/// `Σ f(x)` over the values of each channel of an (N, C, S) tensor, in f64, where
/// `term(ch)` gives the `f` of channel `ch`.
fn channel_sums<F: Fn(f64) -> f64>(
    x: &[f32],
    n: usize,
    c: usize,
    s: usize,
    term: impl Fn(usize) -> F + Sync,
) -> Vec<f64> {
    let totals = channel_totals(n, c, |plane, _| {
        (lane_sum(&x[plane * s..][..s], term(plane % c)), 0.0)
    });
    totals.into_iter().map(|(sum, _)| sum).collect()
}

impl<L: Layout> Layer for BatchNorm<L> {
    fn kind(&self) -> &'static str {
        L::KIND
    }

    fn describe(&self) -> String {
        format!(
            "{}({}{})",
            L::NAME,
            self.config.num_features,
            self.config.non_defaults()
        )
    }

    fn spec(&self) -> LayerSpec {
        L::spec(&self.config)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        L::split(input, self.config.num_features)?;
        Ok(input.to_vec())
    }

    /// x: (N, C, H, W) or (N, F) → y: same shape, `y = γ·(x − μ)/√(σ² + eps) + β`.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_then::<false>(x, mode)
    }

    /// dy: same shape as x → dx: same shape as x; adds into dγ (`weight`) and dβ (`bias`).
    ///
    /// From `y = γ·x̂ + β`: `dβ += Σ dy`, `dγ += Σ dy·x̂` (sums over the m = N·S values of a
    /// channel; not affine: γ = 1 and nothing to add into). For dx:
    /// - batch statistics (Train, or no running statistics): μ and σ² depend on x;
    ///   differentiating `x̂ = (x − μ)·inv_std` through them gives
    ///   `dx = (1/m)·inv_std·γ·(m·dy − Σ dy − x̂·Σ(dy·x̂))`.
    /// - running statistics (Eval): μ and σ² are constants, so `dx = dy·γ·inv_std`.
    ///
    /// Synchronised, m, `Σ dy` and `Σ dy·x̂` in dx are over every rank's part of the batch;
    /// dγ and dβ take this rank's part only (the ranks add their gradients up later).
    ///
    /// dx is written over dy in dy's memory when nothing else holds it: each value of dx
    /// needs only the value of dy at the same place, once the per-channel sums are known.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        if self.pooled.is_some() {
            return Err(Error::config(
                L::KIND,
                "the last forward pass ran fused with a ReLU and max-pooling: its \
                 gradient comes from backward_relu_pool",
            ));
        }
        let x = kept(&self.input, L::KIND)?.clone();
        expect_same_shape(L::KIND, x.shape(), dy.shape())?;
        let dims = L::split(x.shape(), self.config.num_features)?;
        let grads = self.parameter_gradients(x.data(), dims, &Upstream::Direct(dy.data()))?;
        let (c, plane_len) = (dims.1, dims.2.max(1));
        match dy.into_unshared() {
            // dx written over dy.
            Ok(mut dx) => {
                dx.data_mut()
                    .par_chunks_mut(plane_len)
                    .zip(x.data().par_chunks(plane_len))
                    .enumerate()
                    .for_each(|(plane, (d, x))| {
                        let grad = grads[plane % c];
                        for (d, &x) in d.iter_mut().zip(x) {
                            *d = grad.at(*d, x);
                        }
                    });
                Ok(dx)
            }
            Err(dy) => {
                let mut dx = Tensor::for_overwrite(dy.shape());
                dx.data_mut()
                    .par_chunks_mut(plane_len)
                    .zip(
                        dy.data()
                            .par_chunks(plane_len)
                            .zip(x.data().par_chunks(plane_len)),
                    )
                    .enumerate()
                    .for_each(|(plane, (d, (dy, x)))| {
                        let grad = grads[plane % c];
                        for ((d, &dy), &x) in d.iter_mut().zip(dy).zip(x) {
                            *d = grad.at(dy, x);
                        }
                    });
                Ok(dx)
            }
        }
    }

    /// With batch statistics and not synchronised over ranks: the statistics are merged
    /// channel by channel from the moments the layer before computed, the same bits as
    /// taking the moments from x here.
    fn takes_moments(&self, mode: Mode) -> bool {
        let batch_statistics = mode == Mode::Train || self.running.is_none();
        let synced = self.sync.is_some() && mode == Mode::Train;
        batch_statistics && !synced
    }

    fn take_moments(&mut self, moments: Vec<Moments>) {
        self.moments = Some(moments);
    }

    fn fuses_relu_pool(&self) -> bool {
        true
    }

    /// `p = maxpool(max(0, γ·x̂ + β))` over 2×2 windows of stride 2: each plane normalised
    /// and through the ReLU into a buffer the size of one plane, and pooled from there,
    /// with the arithmetic of this layer's, the ReLU's and the pooling's own passes (the
    /// same bits). Only p and the positions of the maxima are written out.
    fn forward_relu_pool(&mut self, x: Tensor, mode: Mode, pool: &PoolGeometry) -> Result<Tensor> {
        if !(pool.oh > 0 && pool.ow > 0 && pool.is_2x2_tiling()) || pool.input_shape() != x.shape()
        {
            return Err(Error::shape(
                L::KIND,
                format!(
                    "the input of the 2×2 max-pooling fused after it, {:?}",
                    pool.input_shape()
                ),
                x.shape(),
            ));
        }
        let (_, c, s) = self.statistics(&x, mode)?;
        let maps = self.channel_maps();
        let (mut p, mut taps) = Pooled::buffers(&mut self.pooled, pool);
        let out = pool.oh * pool.ow;
        p.data_mut()
            .par_chunks_mut(out)
            .zip(taps.par_chunks_mut(out))
            .zip(x.data().par_chunks(s))
            .enumerate()
            .for_each_init(Vec::new, |z, (plane, ((p, taps), x))| {
                let map = maps[plane % c];
                z.clear();
                z.extend(x.iter().map(|&x| map.relu(x)));
                max_2x2_plane(pool, z, p, taps);
            });
        self.input = Some(x);
        Ok(Pooled::keep(&mut self.pooled, pool, p, taps))
    }

    /// dp, the gradient of the pooled output → dx, plane by plane: dy of each plane built
    /// in a buffer of its size from dp, the maxima's positions and x,
    /// once for backward's sums and once for dx, never written out.
    fn backward_relu_pool(&mut self, dp: Tensor) -> Result<Tensor> {
        let Some(pooled) = self.pooled.take() else {
            return Err(Error::config(
                L::KIND,
                "backward_relu_pool needs a forward pass fused with a ReLU and max-pooling \
                 (forward_relu_pool) first",
            ));
        };
        let result = self.backward_pooled(&pooled, dp);
        self.pooled = Some(pooled);
        result
    }

    fn fuses_relu(&self) -> bool {
        true
    }

    /// `y = max(0, γ·(x − μ)/√(σ² + eps) + β)`, one pass writing y.
    fn forward_relu(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_then::<true>(x, mode)
    }

    /// With running statistics, evaluation is `y = γ·(x − μ)/√(σ² + eps) + β`, i.e.
    /// `scale = γ/√(σ² + eps)` and `shift = β − scale·μ`, with the forward pass's
    /// `inv_std`.
    fn eval_affine(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        let running = self.running.as_ref()?;
        let (gamma, beta) = self.gamma_beta();
        let eps = self.config.eps;
        let stats = running.mean.data().iter().zip(running.var.data());
        Some(
            stats
                .zip(gamma.iter().zip(&beta))
                .map(|((&mu, &sigma2), (&gamma, &beta))| {
                    let scale = gamma * inv_std(sigma2 as f64, eps);
                    (scale, beta - scale * mu)
                })
                .unzip(),
        )
    }
    fn set_own_batch_sync(&mut self, group: Option<Arc<dyn Collective>>) {
        self.sync = group;
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        let mut parts = Vec::new();
        if let Some(a) = &self.affine {
            parts.push((Key::Name("weight"), Part::Param(&a.weight)));
            parts.push((Key::Name("bias"), Part::Param(&a.bias)));
        }
        if let Some(r) = &self.running {
            parts.push((Key::Name("running_mean"), Part::Buffer(&r.mean)));
            parts.push((Key::Name("running_var"), Part::Buffer(&r.var)));
            parts.push((
                Key::Name("num_batches_tracked"),
                Part::Buffer(&r.num_batches_tracked),
            ));
        }
        parts
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        let mut parts = Vec::new();
        if let Some(a) = &mut self.affine {
            parts.push((Key::Name("weight"), PartMut::Param(&mut a.weight)));
            parts.push((Key::Name("bias"), PartMut::Param(&mut a.bias)));
        }
        if let Some(r) = &mut self.running {
            parts.push((Key::Name("running_mean"), PartMut::Buffer(&mut r.mean)));
            parts.push((Key::Name("running_var"), PartMut::Buffer(&mut r.var)));
            parts.push((
                Key::Name("num_batches_tracked"),
                PartMut::Buffer(&mut r.num_batches_tracked),
            ));
        }
        parts
    }

    /// One multiply-add per value: once μ and σ² are known, `y = x·(γ·inv_std) +
    /// (β − μ·γ·inv_std)`.
    fn macs(&self, input: &[usize]) -> u64 {
        L::split(input, self.config.num_features).map_or(0, |(n, c, s)| {
            (n as u64).saturating_mul(c as u64).saturating_mul(s as u64)
        })
    }
}
