//! Throughput measurement: training steps and inference passes timed on random data, and a
//! per-layer profile of where a step spends its time.
//!
//! A training step is what [`crate::trainer::train_epoch`] does for one batch: `zero_grad`,
//! forward in [`Mode::Train`], cross-entropy, backward (without the gradient of the data,
//! [`Layer::backward_params`]), optimiser step. An inference pass
//! is a forward in [`Mode::Eval`]. Each measurement is repeated after unmeasured warm-up
//! runs; on a shared machine the median says what to expect, the maximum what the code can
//! do when nothing else runs.

use std::hint::black_box;
use std::time::Instant;

use ocellus::error::Result;
use ocellus::layers::{Layer, Mode};
use ocellus::loss;
use ocellus::network::{Replicas, Sequential};
use ocellus::optim::Optimizer;
use ocellus::rng::Rng;
use ocellus::tensor::Tensor;
use ocellus::LayerExt;

/// Median, minimum and maximum of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// The statistics of `samples` (the median of an even count is the mean of the middle two).
    pub fn of(samples: &[f64]) -> Stats {
        assert!(!samples.is_empty(), "statistics of no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        };
        Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        }
    }

    /// `f` applied to every statistic; a decreasing `f` (seconds → images/s) swaps min and max.
    pub fn map(self, f: impl Fn(f64) -> f64) -> Stats {
        let (a, b) = (f(self.min), f(self.max));
        Stats {
            median: f(self.median),
            min: a.min(b),
            max: a.max(b),
        }
    }
}

/// A random batch of `n` images of shape `image` = (C, H, W) (standard normal pixels) and
/// labels below `classes`.
pub fn random_batch(
    image: [usize; 3],
    n: usize,
    classes: usize,
    rng: &mut Rng,
) -> (Tensor, Vec<usize>) {
    let x = Tensor::randn(&[n, image[0], image[1], image[2]], 1.0, rng);
    let labels = (0..n).map(|_| rng.below(classes)).collect();
    (x, labels)
}

/// Seconds of each of `repeats` calls of `f`, after `warmup` unmeasured calls.
pub fn time_repeated(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}

/// One training step on `(x, labels)`: zero_grad, forward (train), cross-entropy, backward
/// (without the gradient of the data), optimiser step.
pub fn train_step(
    model: &mut dyn Layer,
    optimizer: &mut dyn Optimizer,
    x: &Tensor,
    labels: &[usize],
) -> Result<()> {
    model.zero_grad();
    let logits = model.forward_ref(x, Mode::Train)?;
    let (_, dlogits) = loss::cross_entropy(&logits, labels, 0.0)?;
    black_box(model.backward_params(dlogits)?);
    optimizer.step(model)
}

/// One inference pass: forward in [`Mode::Eval`], the batch shared by the threads
/// ([`Replicas`]).
pub fn infer_step(model: &mut dyn Layer, x: &Tensor, replicas: &mut Replicas) -> Result<()> {
    black_box(replicas.forward(model, x)?);
    Ok(())
}

/// Median time of one layer of a network in a training step.
#[derive(Clone, Debug)]
pub struct LayerTiming {
    /// Position in the network.
    pub index: usize,
    /// The layer's one-line description.
    pub description: String,
    /// The layer's input shape.
    pub input: Vec<usize>,
    /// Multiply-adds of its forward pass (batch included).
    pub macs: u64,
    /// Median seconds of the forward pass (`Mode::Train`).
    pub forward: f64,
    /// Median seconds of the backward pass.
    pub backward: f64,
}

impl LayerTiming {
    /// Forward GFLOP/s, counting 2 FLOPs per multiply-add (0 for layers without MACs).
    pub fn forward_gflops(&self) -> f64 {
        2.0 * self.macs as f64 / self.forward.max(1e-12) / 1e9
    }
}

/// Per-layer forward and backward times of training steps of `model` on `(x, labels)`:
/// each layer is called on its own, in order, then backward in reverse; the cross-entropy
/// and optimiser are not included. Medians over `repeats` steps after `warmup` steps.
pub fn profile(
    model: &mut Sequential,
    x: &Tensor,
    labels: &[usize],
    warmup: usize,
    repeats: usize,
) -> Result<Vec<LayerTiming>> {
    let shapes = {
        let mut s = vec![x.shape().to_vec()];
        s.extend(model.shapes(x.shape())?);
        s
    };
    let layers = model.layers_mut();
    let count = layers.len();
    let mut forward = vec![Vec::new(); count];
    let mut backward = vec![Vec::new(); count];
    for step in 0..warmup + repeats {
        let keep = step >= warmup;
        let mut y = x.clone();
        for (i, layer) in layers.iter_mut().enumerate() {
            layer.zero_grad();
            let start = Instant::now();
            // As in a training step: the first layer gets a handle on the data, which
            // stays shared; the others take their input over (and may write into it).
            y = layer.forward(y, Mode::Train)?;
            if keep {
                forward[i].push(start.elapsed().as_secs_f64());
            }
        }
        let (_, mut d) = loss::cross_entropy(&y, labels, 0.0)?;
        for (i, layer) in layers.iter_mut().enumerate().rev() {
            let start = Instant::now();
            // As in a training step, the first layer skips the gradient of the data.
            if i == 0 {
                layer.backward_params(std::mem::take(&mut d))?;
            } else {
                d = layer.backward(d)?;
            }
            if keep {
                backward[i].push(start.elapsed().as_secs_f64());
            }
        }
    }
    Ok(layers
        .iter()
        .enumerate()
        .map(|(i, layer)| LayerTiming {
            index: i,
            description: layer.describe(),
            input: shapes[i].clone(),
            macs: layer.macs(&shapes[i]),
            forward: Stats::of(&forward[i]).median,
            backward: Stats::of(&backward[i]).median,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocellus::layers::{Flatten, Linear, Relu};
    use ocellus::optim::{Adam, AdamConfig};

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        // Seconds → rate: the slowest time is the smallest rate.
        let r = Stats::of(&[0.5, 0.25, 1.0]).map(|t| 1.0 / t);
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 4.0));
    }

    #[test]
    fn profile_times_every_layer_and_counts_macs() {
        let mut rng = Rng::new(1);
        let mut model = Sequential::new()
            .with(Flatten::new())
            .with(Linear::new(12, 5, &mut rng).unwrap())
            .with(Relu::new())
            .with(Linear::new(5, 3, &mut rng).unwrap());
        let (x, labels) = random_batch([3, 2, 2], 4, 3, &mut rng);
        let timings = profile(&mut model, &x, &labels, 1, 3).unwrap();
        assert_eq!(timings.len(), 4);
        assert_eq!(timings[1].input, vec![4, 12]);
        assert_eq!(timings[1].macs, 4 * 12 * 5);
        assert_eq!(timings[3].macs, 4 * 5 * 3);
        assert!(timings
            .iter()
            .all(|t| t.forward >= 0.0 && t.backward >= 0.0));

        // A training step changes the weights; an inference pass does not.
        let mut opt = Adam::new(AdamConfig::adamw(1e-2)).unwrap();
        let before = model.params()[0].1.value().clone();
        infer_step(&mut model, &x, &mut Replicas::new()).unwrap();
        assert_eq!(model.params()[0].1.value().data(), before.data());
        train_step(&mut model, &mut opt, &x, &labels).unwrap();
        assert_ne!(model.params()[0].1.value().data(), before.data());
    }
}
