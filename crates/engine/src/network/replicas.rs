//! Evaluation passes split by images over the thread pool: each worker runs the whole
//! network on its own share of the batch, a few images at a time, with its own copy of
//! the layers.
//!
//! In evaluation every image goes through the network on its own (BatchNorm uses its
//! running statistics, dropout is off), so a batch can be cut anywhere. Run layer by
//! layer on a whole batch of 256, each activation of ResNet-20 is 16 MiB: every layer
//! streams its input from memory, and the threads meet at each parallel section of each
//! layer. Run a few images at a time, one worker per share, the activations of those
//! images stay in the core's cache and the workers meet once per pass.

use std::path::Path;

use rayon::prelude::*;

use crate::checkpoint::{load_state_dict, state_dict};
use crate::error::{Error, Result};
use crate::layers::{Layer, LayerExt, Mode, Part};
use crate::rng::Rng;
use crate::spec::Composition;
use crate::tensor::{numel, Tensor};

/// Bytes of the largest activation of the images a worker runs through the network at a
/// time: 8 to 64 images, as many as fit (measured on ResNet-20, SmallCNN and LeNet-5:
/// `docs/PERFORMANCE.md`).
const CHUNK_BYTES: usize = 2 << 20;

/// Images per run through the network, at least and at most.
const CHUNK_IMAGES: (usize, usize) = (8, 64);

/// Copies of a network, one per worker of the thread pool but the caller's, kept from one
/// pass to the next (with their workspaces) and given the network's parameters and
/// buffers before each pass.
#[derive(Default)]
pub struct Replicas {
    copies: Vec<Box<dyn Layer>>,
}

impl Replicas {
    /// No copies yet: the first [`Replicas::forward`] that splits a batch makes them.
    pub fn new() -> Self {
        Replicas::default()
    }

    /// `model`'s output in [`Mode::Eval`] on x (N, …), the batch cut into one share per
    /// worker of the thread pool, each share run a few images at a time (as many as keep
    /// the largest activation of the network's layers within 2 MiB, 8 to 64). Each image's output is the one `model.forward_ref(x,
    /// Mode::Eval)` gives it, up to the rounding of kernels that choose their path by the
    /// batch size; `model` keeps nothing for a backward pass. A batch too small to share,
    /// a pool of one thread, or a network that cannot be copied (a layer without an
    /// architecture entry to build it from) runs as one pass.
    pub fn forward(&mut self, model: &mut dyn Layer, x: &Tensor) -> Result<Tensor> {
        match images_per_run(model, x.shape()) {
            Some(chunk) => self.forward_in_runs(model, x, chunk),
            None => model.forward_ref(x, Mode::Eval),
        }
    }

    /// [`Replicas::forward`] in runs of at most `chunk` images.
    fn forward_in_runs(
        &mut self,
        model: &mut dyn Layer,
        x: &Tensor,
        chunk: usize,
    ) -> Result<Tensor> {
        let n = x.shape().first().copied().unwrap_or(0);
        let workers = rayon::current_num_threads().min(n / chunk.max(1));
        let out_shape = match model.output_shape(x.shape()) {
            Ok(shape) if shape.first() == Some(&n) => shape,
            _ => return model.forward_ref(x, Mode::Eval),
        };
        let (x_per, y_per) = (numel(&x.shape()[1..]), numel(&out_shape[1..]));
        if workers < 2 || y_per == 0 || self.refresh(model, x.shape(), workers - 1).is_err() {
            return model.forward_ref(x, Mode::Eval);
        }
        let mut y = vec![0.0; n * y_per];
        // Shares as even as they go, each cut into as few runs as even as they go.
        let bounds: Vec<usize> = (0..=workers).map(|k| k * n / workers).collect();
        let mut shares = Vec::with_capacity(workers);
        let mut rest = &mut y[..];
        for k in 0..workers {
            let (share, tail) = rest.split_at_mut((bounds[k + 1] - bounds[k]) * y_per);
            shares.push(share);
            rest = tail;
        }
        let run = |layer: &mut dyn Layer, out: &mut [f32], from: usize| -> Result<()> {
            let images = out.len() / y_per;
            let runs = images.div_ceil(chunk);
            for k in 0..runs {
                let (lo, hi) = (k * images / runs, (k + 1) * images / runs);
                let mut shape = x.shape().to_vec();
                shape[0] = hi - lo;
                let part = x.data()[(from + lo) * x_per..(from + hi) * x_per].to_vec();
                let y = layer.forward(Tensor::from_vec(&shape, part)?, Mode::Eval)?;
                let out = &mut out[lo * y_per..hi * y_per];
                if y.len() != out.len() {
                    return Err(Error::config(
                        layer.kind(),
                        format!(
                            "gave {:?} for {:?}, not the {:?} of its output shape",
                            y.shape(),
                            shape,
                            out_shape
                        ),
                    ));
                }
                out.copy_from_slice(y.data());
            }
            Ok(())
        };
        let mut shares = shares.into_iter();
        let mine = shares.next().expect("one share per worker");
        let (first, others) = rayon::join(
            || run(model, mine, 0),
            || {
                self.copies
                    .par_iter_mut()
                    .zip(shares.collect::<Vec<_>>())
                    .zip(&bounds[1..workers])
                    .try_for_each(|((copy, out), &from)| run(copy.as_dyn_mut(), out, from))
            },
        );
        first.and(others)?;
        Tensor::from_vec(&out_shape, y)
    }

    /// `count` copies of `model` holding its parameters and buffers: built from its
    /// architecture entry the first time (or when the architecture changed), its state
    /// loaded into them every time, as a checkpoint's is.
    fn refresh(&mut self, model: &dyn Layer, shape: &[usize], count: usize) -> Result<()> {
        let spec = model.spec();
        self.copies.retain(|c| c.spec() == spec);
        self.copies.truncate(count);
        while self.copies.len() < count {
            let mut one = shape.to_vec();
            one[0] = 1;
            self.copies.push(spec.build(&one, None, &mut Rng::new(0))?);
        }
        let state = state_dict(model);
        for copy in &mut self.copies {
            load_state_dict(copy.as_dyn_mut(), &state, Path::new("the network"))?;
        }
        Ok(())
    }
}

/// Images a worker runs through `model` at a time for input `shape`: as many as keep the
/// largest activation — the input, or the output of one of the network's layers in
/// order — within [`CHUNK_BYTES`], between the bounds of [`CHUNK_IMAGES`].
/// `None` for an input without a batch axis or that does not fit the network.
fn images_per_run(model: &dyn Layer, shape: &[usize]) -> Option<usize> {
    let per_image = |shape: &[usize]| numel(shape.get(1..).unwrap_or_default()).max(1);
    if shape.len() < 2 {
        return None;
    }
    let mut largest = per_image(shape);
    let mut at = shape.to_vec();
    let children = model
        .parts()
        .into_iter()
        .filter_map(|(_, part)| match part {
            Part::Layer(layer) => Some(layer),
            _ => None,
        });
    if model.spec().composition() == Composition::Chain {
        for child in children {
            at = child.output_shape(&at).ok()?;
            largest = largest.max(per_image(&at));
        }
    }
    largest = largest.max(per_image(&model.output_shape(shape).ok()?));
    let (least, most) = CHUNK_IMAGES;
    Some((CHUNK_BYTES / (4 * largest)).clamp(least, most))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    /// Every image's output as one pass over the whole batch gives it, on models with
    /// residual blocks, branches, dense connections, squeeze-excitation, BatchNorm (with
    /// running statistics away from 0 and 1) and dropout: shares of 6 and 7 images cut
    /// into runs of 2 and 3, on two threads; the copies made once and refreshed when the
    /// network's values change.
    #[test]
    fn shared_passes_give_the_whole_batch_pass() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut rng = Rng::new(5);
        for (name, input) in [
            ("lenet5", [1, 28, 28]),
            ("resnet20", [3, 16, 16]),
            ("inception", [3, 16, 16]),
            ("densenet", [3, 16, 16]),
            ("efficientnet", [3, 16, 16]),
        ] {
            let mut model = zoo::model(name, input, 10)
                .unwrap()
                .build(&mut rng)
                .unwrap();
            let x = Tensor::randn(&[13, input[0], input[1], input[2]], 1.0, &mut rng);
            let mut replicas = Replicas::new();
            for round in 0..2 {
                for (_, buffer) in model.buffers_mut() {
                    for v in buffer.data_mut() {
                        *v = 0.5 + rng.uniform();
                    }
                }
                let want = model.forward_ref(&x, Mode::Eval).unwrap();
                let got = pool
                    .install(|| replicas.forward_in_runs(&mut model, &x, 3))
                    .unwrap();
                assert_eq!(got.shape(), want.shape(), "{name}");
                crate::kernels::conv::tests::assert_close(name, got.data(), want.data());
                assert_eq!(replicas.copies.len(), 1, "{name}, round {round}");
            }
        }
    }

    /// An input the network does not take gets the error a plain pass gives, naming the
    /// layer: no panic, whatever its rank.
    #[test]
    fn a_wrong_input_gets_the_plain_pass_error() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut rng = Rng::new(7);
        let mut model = zoo::model("lenet5", [1, 28, 28], 10)
            .unwrap()
            .build(&mut rng)
            .unwrap();
        for shape in [vec![40, 2, 28, 28], vec![40, 784], vec![784], vec![]] {
            let x = Tensor::zeros(&shape);
            let want = model.forward_ref(&x, Mode::Eval).unwrap_err().to_string();
            let got = pool.install(|| Replicas::new().forward(&mut model, &x));
            assert_eq!(got.unwrap_err().to_string(), want, "{shape:?}");
        }
    }

    /// A batch too small to share runs as one pass, without copies.
    #[test]
    fn a_small_batch_is_one_pass() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut rng = Rng::new(6);
        let mut model = zoo::model("lenet5", [1, 28, 28], 10)
            .unwrap()
            .build(&mut rng)
            .unwrap();
        let x = Tensor::randn(&[5, 1, 28, 28], 1.0, &mut rng);
        let want = model.forward_ref(&x, Mode::Eval).unwrap();
        let mut replicas = Replicas::new();
        let got = pool
            .install(|| replicas.forward_in_runs(&mut model, &x, 3))
            .unwrap();
        assert_eq!(got.data(), want.data());
        assert!(replicas.copies.is_empty());
    }
}
