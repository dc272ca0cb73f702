//! Dropout: randomly zeroes activations while training, as a regulariser.

use crate::error::{Error, Result};
use crate::layers::{expect_same_shape, kept, Layer, Mode, Randomness};
use crate::rng::Rng;
use crate::spec::LayerSpec;
use crate::tensor::{shape_str, Tensor};

/// Inverted dropout, as PyTorch's `nn.Dropout(p)`: in [`Mode::Train`] each value is
/// zeroed with probability `p` and the kept ones are scaled by `1/(1 − p)`, so the
/// expected output equals the input and [`Mode::Eval`] is simply the identity.
pub struct Dropout {
    /// Probability of zeroing a value, in [0, 1).
    p: f32,
    /// The layer's own generator, so masks are reproducible from the seed.
    rng: Rng,
    /// The mode of the last forward pass (`None` before any): `Train` applied `mask`,
    /// `Eval` was the identity.
    last_mode: Option<Mode>,
    /// The input shape of the last forward pass.
    input_shape: Vec<usize>,
    /// Same shape as the last training input: `1/(1 − p)` where the value was kept, 0
    /// where it was dropped. `y = x ⊙ mask`.
    mask: Option<Tensor>,
    /// When true, forward passes reuse `mask` instead of drawing a new one.
    fixed: bool,
}

impl Dropout {
    /// Dropout with probability `p`, its generator forked from `rng`.
    pub fn new(p: f32, rng: &mut Rng) -> Result<Self> {
        Self::with_rng(p, rng.fork())
    }

    /// Dropout with probability `p` and a generator seeded with `seed`.
    pub fn with_seed(p: f32, seed: u64) -> Result<Self> {
        Self::with_rng(p, Rng::new(seed))
    }

    fn with_rng(p: f32, rng: Rng) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(
                "dropout",
                format!("p = {p} must be in [0, 1): it is the probability of zeroing a value"),
            ));
        }
        Ok(Dropout {
            p,
            rng,
            last_mode: None,
            input_shape: Vec::new(),
            mask: None,
            fixed: false,
        })
    }

    /// Uses `keep` (1 where a value is kept, 0 where it is dropped) as the mask of the
    /// following training passes, as if it had been drawn and fixed with
    /// [`Randomness::Frozen`] — to replay a mask another framework drew.
    pub fn set_mask(&mut self, keep: &Tensor) {
        let scale = 1.0 / (1.0 - self.p);
        let mut mask = keep.clone();
        mask.data_mut()
            .iter_mut()
            .for_each(|k| *k = if *k != 0.0 { scale } else { 0.0 });
        self.mask = Some(mask);
        self.fixed = true;
    }

    /// The probability of zeroing a value.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// The mask of the last training pass (`1/(1 − p)` kept, 0 dropped), if any.
    pub fn mask(&self) -> Option<&Tensor> {
        self.mask.as_ref()
    }

    /// Draws a new mask for inputs of `shape`: each value kept with probability `1 − p`
    /// (PyTorch's `bernoulli_(1 − p)`), kept values scaled by `1/(1 − p)`.
    fn draw_mask(&mut self, shape: &[usize]) {
        let keep_prob = 1.0 - self.p;
        let scale = 1.0 / keep_prob;
        let mut mask = Tensor::zeros(shape);
        for m in mask.data_mut() {
            if self.rng.uniform() < keep_prob {
                *m = scale;
            }
        }
        self.mask = Some(mask);
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Dropout { p: self.p }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    /// x: any shape → y: same shape; `y = x ⊙ mask` in Train, `y = x` in Eval.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.input_shape = x.shape().to_vec();
        self.last_mode = Some(mode);
        if mode == Mode::Eval {
            return Ok(x);
        }
        match &self.mask {
            Some(mask) if self.fixed => {
                if mask.shape() != x.shape() {
                    self.last_mode = None;
                    return Err(
                        Error::shape(self.kind(), shape_str(mask.shape()), x.shape()).with_hint(
                            "the dropout mask is fixed for another shape; \
                             release it with set_randomness(Randomness::Free)",
                        ),
                    );
                }
            }
            _ => self.draw_mask(x.shape()),
        }
        let mut y = x;
        let mask = self
            .mask
            .as_ref()
            .expect("a mask was just drawn or checked");
        for (v, m) in y.data_mut().iter_mut().zip(mask.data()) {
            *v *= m;
        }
        Ok(y)
    }

    /// dy: any shape → dx: same shape; `dx = dy ⊙ mask` after a Train pass (the forward is
    /// linear in x with that diagonal), `dx = dy` after an Eval pass.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let mode = kept(&self.last_mode, self.kind())?;
        expect_same_shape(self.kind(), &self.input_shape, dy.shape())?;
        let mut dx = dy;
        if *mode == Mode::Train {
            let mask = self.mask.as_ref().expect("a Train forward leaves a mask");
            for (d, m) in dx.data_mut().iter_mut().zip(mask.data()) {
                *d *= m;
            }
        }
        Ok(dx)
    }

    fn set_own_randomness(&mut self, randomness: Randomness) {
        match randomness {
            Randomness::Seed(seed) => self.rng = Rng::new(seed),
            Randomness::Frozen => self.fixed = true,
            Randomness::Free => self.fixed = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_outside_0_1_is_a_config_error() {
        for p in [-0.1, 1.0, 1.5, f32::NAN] {
            assert!(matches!(
                Dropout::with_seed(p, 0),
                Err(Error::Config { .. })
            ));
        }
        assert!(Dropout::with_seed(0.0, 0).is_ok());
    }
}
