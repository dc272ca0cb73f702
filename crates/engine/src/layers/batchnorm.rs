//! Batch normalisation with PyTorch's semantics: [`BatchNorm2d`] over (N, C, H, W) and
//! [`BatchNorm1d`] over (N, F). Both are the one implementation [`BatchNorm`], which sees
//! its input as (N, C, S) — S = H·W for images, 1 for flat features — and normalises each
//! channel over the N·S values it holds.

use std::marker::PhantomData;
use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::{lane_sum, lane_sum_pairs};
use crate::layers::{expect_nchw, expect_same_shape, kept, Key, Layer, Mode, Param, Part, PartMut};
use crate::spec::LayerSpec;
use crate::tensor::Tensor;

/// PyTorch's default `eps`, added to the variance before the square root.
pub const EPS: f64 = 1e-5;

/// PyTorch's default `momentum`: `running = (1 − momentum)·running + momentum·batch`.
pub const MOMENTUM: f64 = 0.1;

/// How a batch-norm layer reads its input as (N, C, S). Implemented by [`Image`] and
/// [`Flat`]; it only names the layer and checks shapes, the maths is shared.
pub trait Layout: Send + 'static {
    /// The kind as written in architecture files.
    const KIND: &'static str;
    /// The PyTorch class name, for descriptions.
    const NAME: &'static str;
    /// The layer as an architecture entry.
    fn spec(channels: usize) -> LayerSpec;
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

    fn spec(channels: usize) -> LayerSpec {
        LayerSpec::BatchNorm2d {
            features: Some(channels),
        }
    }

    fn split(shape: &[usize], channels: usize) -> Result<(usize, usize, usize)> {
        expect_nchw(Self::KIND, shape, Some(channels)).map_err(|e| {
            e.with_hint(format!("BatchNorm2d({channels}) needs {channels} channels"))
        })?;
        Ok((shape[0], shape[1], shape[2] * shape[3]))
    }
}

impl Layout for Flat {
    const KIND: &'static str = "batchnorm1d";
    const NAME: &'static str = "BatchNorm1d";

    fn spec(channels: usize) -> LayerSpec {
        LayerSpec::BatchNorm1d {
            features: Some(channels),
        }
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

/// Batch normalisation, `y = γ·x̂ + β` with `x̂ = (x − μ)/√(σ² + eps)` per channel.
///
/// - [`Mode::Train`]: μ and σ² are the batch mean and the **biased** variance (divided by
///   m = N·S) of each channel; the running statistics are then updated with momentum 0.1
///   using the **unbiased** variance (divided by m − 1), and `num_batches_tracked` grows
///   by one — all as PyTorch's `nn.BatchNorm{1,2}d` defaults.
/// - [`Mode::Eval`]: μ and σ² are the running statistics, constants for backward.
///
/// Parameters `weight` (γ, initially 1) and `bias` (β, initially 0); buffers
/// `running_mean` (initially 0), `running_var` (initially 1) and `num_batches_tracked`
/// (a 0-d tensor) — PyTorch's `state_dict` names and initial values.
pub struct BatchNorm<L: Layout> {
    channels: usize,
    /// γ, (C,)
    weight: Param,
    /// β, (C,)
    bias: Param,
    /// (C,)
    running_mean: Tensor,
    /// (C,)
    running_var: Tensor,
    /// (), the number of training batches seen, stored as f32.
    num_batches_tracked: Tensor,
    /// The last input; backward recomputes the normalised input `x̂ = (x − μ)·inv_std`
    /// from it, which costs less than writing x̂ out and reading it back.
    input: Option<Tensor>,
    /// (C,): μ of the last forward pass.
    mean: Vec<f32>,
    /// (C,): `1/√(σ² + eps)` of the last forward pass.
    inv_std: Vec<f32>,
    /// The mode of the last forward pass: in Train μ and σ² depend on x, in Eval not.
    last_mode: Mode,
    layout: PhantomData<L>,
}

/// Batch normalisation of images (N, C, H, W), PyTorch's `nn.BatchNorm2d`.
pub type BatchNorm2d = BatchNorm<Image>;

/// Batch normalisation of flat features (N, F), PyTorch's `nn.BatchNorm1d`.
pub type BatchNorm1d = BatchNorm<Flat>;

impl<L: Layout> BatchNorm<L> {
    /// Batch normalisation of `num_features` channels (C of an image, F of flat features).
    pub fn new(num_features: usize) -> Result<Self> {
        if num_features == 0 {
            return Err(Error::config(L::KIND, "num_features must be positive"));
        }
        let c = num_features;
        Ok(BatchNorm {
            channels: c,
            weight: Param::new(Tensor::full(&[c], 1.0)),
            bias: Param::new(Tensor::zeros(&[c])),
            running_mean: Tensor::zeros(&[c]),
            running_var: Tensor::full(&[c], 1.0),
            num_batches_tracked: Tensor::zeros(&[]),
            input: None,
            mean: Vec::new(),
            inv_std: Vec::new(),
            last_mode: Mode::Eval,
            layout: PhantomData,
        })
    }

    /// Number of channels (features) normalised.
    pub fn num_features(&self) -> usize {
        self.channels
    }

    /// The running mean, (C,).
    pub fn running_mean(&self) -> &Tensor {
        &self.running_mean
    }

    /// The running (unbiased) variance, (C,).
    pub fn running_var(&self) -> &Tensor {
        &self.running_var
    }

    /// Training batches seen so far.
    pub fn num_batches_tracked(&self) -> usize {
        self.num_batches_tracked.data()[0] as usize
    }
}

/// Indices of channel `ch` in an (N, C, S) tensor: `S` contiguous values per image.
fn channel_slices(n: usize, c: usize, s: usize, ch: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n).map(move |i| (i * c + ch) * s..(i * c + ch + 1) * s)
}

/// Per-channel mean and biased variance (÷ m) of an (N, C, S) tensor, accumulated in f64
/// (PyTorch's CPU kernel accumulates in double too), two passes for accuracy.
fn batch_stats(x: &[f32], n: usize, c: usize, s: usize) -> Vec<(f64, f64)> {
    let m = (n * s) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let slices = || channel_slices(n, c, s, ch).map(|r| &x[r]);
            let mean = slices().map(|x| lane_sum(x, |v| v)).sum::<f64>() / m;
            let var = slices()
                .map(|x| lane_sum(x, |v| (v - mean) * (v - mean)))
                .sum::<f64>()
                / m;
            (mean, var)
        })
        .collect()
}

impl<L: Layout> Layer for BatchNorm<L> {
    fn kind(&self) -> &'static str {
        L::KIND
    }

    fn describe(&self) -> String {
        format!("{}({})", L::NAME, self.channels)
    }

    fn spec(&self) -> LayerSpec {
        L::spec(self.channels)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        L::split(input, self.channels)?;
        Ok(input.to_vec())
    }

    /// x: (N, C, H, W) or (N, F) → y: same shape, `y = γ·(x − μ)/√(σ² + eps) + β`.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        let (n, c, s) = L::split(x.shape(), self.channels)?;
        let m = n * s;
        // (μ, σ²) per channel.
        let stats: Vec<(f64, f64)> = match mode {
            Mode::Train => {
                if m < 2 {
                    return Err(Error::shape(
                        L::KIND,
                        "more than one value per channel in training",
                        x.shape(),
                    )
                    .with_hint(
                        "the batch variance of a single value is undefined and PyTorch \
                         refuses it too: use a larger batch, or Mode::Eval",
                    ));
                }
                let stats = batch_stats(x.data(), n, c, s);
                // Bessel's correction m/(m − 1) turns the biased variance into the
                // unbiased one PyTorch keeps in running_var.
                let unbiased = m as f64 / (m as f64 - 1.0);
                let running_mean = self.running_mean.data_mut();
                let running_var = self.running_var.data_mut();
                for (ch, (mu, sigma2)) in stats.iter().enumerate() {
                    let (rm, rv) = (running_mean[ch] as f64, running_var[ch] as f64);
                    running_mean[ch] = ((1.0 - MOMENTUM) * rm + MOMENTUM * mu) as f32;
                    running_var[ch] = ((1.0 - MOMENTUM) * rv + MOMENTUM * sigma2 * unbiased) as f32;
                }
                self.num_batches_tracked.data_mut()[0] += 1.0;
                stats
            }
            Mode::Eval => self
                .running_mean
                .data()
                .iter()
                .zip(self.running_var.data())
                .map(|(&mu, &sigma2)| (mu as f64, sigma2 as f64))
                .collect(),
        };
        self.inv_std.clear();
        self.inv_std.extend(
            stats
                .iter()
                .map(|(_, sigma2)| (1.0 / (sigma2 + EPS).sqrt()) as f32),
        );
        self.mean.clear();
        self.mean.extend(stats.iter().map(|(mu, _)| *mu as f32));

        let mut y = Tensor::for_overwrite(x.shape());
        let (gamma, beta, mean, inv_std) = (
            self.weight.value().data(),
            self.bias.value().data(),
            &self.mean,
            &self.inv_std,
        );
        y.data_mut()
            .par_chunks_mut(s.max(1))
            .zip(x.data().par_chunks(s.max(1)))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let ch = plane % c;
                let (mean, inv_std, gamma, beta) = (mean[ch], inv_std[ch], gamma[ch], beta[ch]);
                for (y, &x) in y.iter_mut().zip(x) {
                    let x_hat = (x - mean) * inv_std;
                    *y = gamma * x_hat + beta;
                }
            });
        self.input = Some(x);
        self.last_mode = mode;
        Ok(y)
    }

    /// dy: same shape as x → dx: same shape as x; adds into dγ (`weight`) and dβ (`bias`).
    ///
    /// From `y = γ·x̂ + β`: `dβ += Σ dy`, `dγ += Σ dy·x̂` (sums over the m = N·S values of a
    /// channel). For dx:
    /// - Train: μ and σ² depend on x; differentiating `x̂ = (x − μ)·inv_std` through them
    ///   gives `dx = (1/m)·inv_std·γ·(m·dy − Σ dy − x̂·Σ(dy·x̂))`.
    /// - Eval: μ and σ² are constants, so `dx = dy·γ·inv_std`.
    ///
    /// dx is written over dy in dy's memory when nothing else holds it: each value of dx
    /// needs only the value of dy at the same place, once the per-channel sums are known.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let x = kept(&self.input, L::KIND)?;
        expect_same_shape(L::KIND, x.shape(), dy.shape())?;
        let (n, c, s) = L::split(x.shape(), self.channels)?;
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        let m = (n * s) as f64;
        // (Σ dy, Σ dy·x̂) per channel, accumulated in f64.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                channel_slices(n, c, s, ch)
                    .map(|r| {
                        let (dy, x) = (&dy.data()[r.clone()], &x.data()[r]);
                        let (mu, inv_std) = (mean[ch] as f64, inv_std[ch] as f64);
                        (
                            lane_sum(dy, |d| d),
                            lane_sum_pairs(dy, x, |d, x| d * (x - mu) * inv_std),
                        )
                    })
                    .fold((0.0, 0.0), |(a, b), (u, v)| (a + u, b + v))
            })
            .collect();
        for (ch, (sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
            self.bias.grad_mut()[ch] += *sum_dy as f32;
            self.weight.grad_mut()[ch] += *sum_dy_xhat as f32;
        }

        let gamma = self.weight.value().data();
        let train = self.last_mode == Mode::Train;
        // dx of one value from its dy and x, for the channel `ch` (constants read once
        // per plane).
        let input_grad = |ch: usize| {
            let scale = gamma[ch] * inv_std[ch];
            let (mean_dy, mean_dy_xhat) = ((sums[ch].0 / m) as f32, (sums[ch].1 / m) as f32);
            let (mean, inv_std) = (mean[ch], inv_std[ch]);
            move |dy: f32, x: f32| {
                if train {
                    let x_hat = (x - mean) * inv_std;
                    scale * (dy - mean_dy - x_hat * mean_dy_xhat)
                } else {
                    scale * dy
                }
            }
        };
        let plane_len = s.max(1);
        match dy.into_unshared() {
            // dx written over dy.
            Ok(mut dx) => {
                dx.data_mut()
                    .par_chunks_mut(plane_len)
                    .zip(x.data().par_chunks(plane_len))
                    .enumerate()
                    .for_each(|(plane, (d, x))| {
                        let grad = input_grad(plane % c);
                        for (d, &x) in d.iter_mut().zip(x) {
                            *d = grad(*d, x);
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
                        let grad = input_grad(plane % c);
                        for ((d, &dy), &x) in d.iter_mut().zip(dy).zip(x) {
                            *d = grad(dy, x);
                        }
                    });
                Ok(dx)
            }
        }
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        vec![
            (Key::Name("weight"), Part::Param(&self.weight)),
            (Key::Name("bias"), Part::Param(&self.bias)),
            (Key::Name("running_mean"), Part::Buffer(&self.running_mean)),
            (Key::Name("running_var"), Part::Buffer(&self.running_var)),
            (
                Key::Name("num_batches_tracked"),
                Part::Buffer(&self.num_batches_tracked),
            ),
        ]
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        vec![
            (Key::Name("weight"), PartMut::Param(&mut self.weight)),
            (Key::Name("bias"), PartMut::Param(&mut self.bias)),
            (
                Key::Name("running_mean"),
                PartMut::Buffer(&mut self.running_mean),
            ),
            (
                Key::Name("running_var"),
                PartMut::Buffer(&mut self.running_var),
            ),
            (
                Key::Name("num_batches_tracked"),
                PartMut::Buffer(&mut self.num_batches_tracked),
            ),
        ]
    }

    /// One multiply-add per value: once μ and σ² are known, `y = x·(γ·inv_std) +
    /// (β − μ·γ·inv_std)`.
    fn macs(&self, input: &[usize]) -> u64 {
        L::split(input, self.channels).map_or(0, |(n, c, s)| (n * c * s) as u64)
    }
}
