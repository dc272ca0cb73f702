//! The fully connected layer (the lecture's FullyConnectedLayer / LinearLayer) and the
//! Flatten layer that feeds it from a convolutional stack.

use crate::error::{Error, Result};
use crate::init::{self, Init};
use crate::kernels::matmul::gemm;
use crate::layers::{
    expect_same_shape, expect_shape, kept, weight_and_bias, weight_and_bias_mut, Key, Layer, Mode,
    Param, Part, PartMut,
};
use crate::rng::Rng;
use crate::spec::LayerSpec;
use crate::tensor::Tensor;

/// `y = x·Wᵀ + b`, with the weight stored `(out, in)` as in PyTorch.
pub struct Linear {
    in_features: usize,
    out_features: usize,
    /// (out, in)
    weight: Param,
    /// (out,)
    bias: Option<Param>,
    /// The input of the last forward pass, (N, in).
    input: Option<Tensor>,
}

impl Linear {
    /// A layer from `in_features` to `out_features`, initialised as PyTorch does.
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Result<Self> {
        Self::with_init(in_features, out_features, true, Init::PytorchDefault, rng)
    }

    /// A layer with a chosen initialisation and optional bias.
    pub fn with_init(
        in_features: usize,
        out_features: usize,
        bias: bool,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::config("linear", "features must be positive"));
        }
        let values = crate::memory::product(&[out_features, in_features + 1]);
        crate::memory::expect_fits("linear", "its weights", values)?;
        let weight = init::weight(&[out_features, in_features], init, rng);
        let bias = bias.then(|| init::bias(out_features, in_features, rng));
        Self::from_weights(weight, bias)
    }

    /// A layer with the given weight, (out, in), and bias, (out,); the sizes follow from
    /// the weight. A bias of the wrong shape or a weight that is not 2-D is an error naming
    /// both shapes.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let &[out_features, in_features] = weight.shape() else {
            return Err(Error::shape("linear weight", "(out, in)", weight.shape()));
        };
        if in_features == 0 || out_features == 0 {
            return Err(Error::config("linear", "features must be positive"));
        }
        if let Some(b) = &bias {
            expect_shape("linear bias", &[out_features], b.shape())?;
        }
        Ok(Linear {
            in_features,
            out_features,
            weight: Param::new(weight),
            bias: bias.map(Param::new),
            input: None,
        })
    }

    /// The weight, (out, in).
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    fn check_input(&self, shape: &[usize]) -> Result<()> {
        if shape.len() == 2 && shape[1] == self.in_features {
            return Ok(());
        }
        let err = Error::shape(self.kind(), format!("(N, {})", self.in_features), shape);
        Err(match shape.len() {
            2 => err.with_hint(format!(
                "{} inputs expected, the previous layer gives {}",
                self.in_features, shape[1]
            )),
            4 => err.with_hint(format!(
                "an image tensor needs a Flatten first; it would give {} = {}×{}×{} features",
                crate::tensor::numel(&shape[1..]),
                shape[1],
                shape[2],
                shape[3]
            )),
            _ => err,
        })
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn describe(&self) -> String {
        format!("Linear({}→{})", self.in_features, self.out_features)
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Linear {
            in_features: Some(self.in_features),
            out_features: self.out_features,
            bias: self.bias.is_some(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check_input(input)?;
        Ok(vec![input[0], self.out_features])
    }

    /// x: (N, in) → y: (N, out), `y[n,o] = b[o] + Σ_i x[n,i]·W[o,i]`
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        self.check_input(x.shape())?;
        let n = x.shape()[0];
        let mut y = Tensor::zeros(&[n, self.out_features]);
        if let Some(b) = &self.bias {
            for row in y.data_mut().chunks_mut(self.out_features) {
                row.copy_from_slice(b.value().data());
            }
        }
        // y (N, out) += x (N, in) · Wᵀ (in, out)
        crate::kernels::matmul::gemm(
            n,
            self.out_features,
            self.in_features,
            x.data(),
            false,
            self.weight.value().data(),
            true,
            y.data_mut(),
            true,
        );
        self.input = Some(x);
        Ok(y)
    }

    /// dy: (N, out) → dx: (N, in); adds into dweight and dbias.
    ///
    /// Differentiating `y = x·Wᵀ + b`: `dW += dyᵀ·x`, `db += Σ_n dy[n]`, `dx = dy·W`.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        self.add_param_grads(&dy)?;
        let n = dy.shape()[0];
        // dx (N, in) = dy (N, out) · W (out, in)
        let mut dx = Tensor::for_overwrite(&[n, self.in_features]);
        gemm(
            n,
            self.in_features,
            self.out_features,
            dy.data(),
            false,
            self.weight.value().data(),
            false,
            dx.data_mut(),
            false,
        );
        Ok(dx)
    }

    /// `dW += dyᵀ·x`, `db += Σ_n dy[n]`, without `dx`.
    fn backward_params(&mut self, dy: Tensor) -> Result<()> {
        self.add_param_grads(&dy)
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        weight_and_bias(&self.weight, self.bias.as_ref())
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        weight_and_bias_mut(&mut self.weight, self.bias.as_mut())
    }

    fn macs(&self, input: &[usize]) -> u64 {
        let n = input.first().copied().unwrap_or(0) as u64;
        n.saturating_mul(self.in_features as u64)
            .saturating_mul(self.out_features as u64)
    }
}

impl Linear {
    /// `dW += dyᵀ·x`, `db += Σ_n dy[n]`: the parameter half of the backward pass.
    fn add_param_grads(&mut self, dy: &Tensor) -> Result<()> {
        let x = kept(&self.input, self.kind())?;
        let n = x.shape()[0];
        expect_same_shape(self.kind(), &[n, self.out_features], dy.shape())?;
        // dW (out, in) += dyᵀ (out, N) · x (N, in)
        gemm(
            self.out_features,
            self.in_features,
            n,
            dy.data(),
            true,
            x.data(),
            false,
            self.weight.grad_mut(),
            true,
        );
        if let Some(b) = &mut self.bias {
            for row in dy.data().chunks(self.out_features) {
                for (g, d) in b.grad_mut().iter_mut().zip(row) {
                    *g += d;
                }
            }
        }
        Ok(())
    }
}

/// Reshapes `(N, C, H, W)` to `(N, C·H·W)` in C, H, W order (PyTorch's `flatten(1)`).
#[derive(Default)]
pub struct Flatten {
    /// The input shape of the last forward pass, to restore in backward.
    input_shape: Option<Vec<usize>>,
}

impl Flatten {
    pub fn new() -> Self {
        Flatten::default()
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn describe(&self) -> String {
        "Flatten".into()
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Flatten
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.is_empty() {
            return Err(Error::shape(self.kind(), "(N, …)", input));
        }
        let features = input[1..].iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        match features {
            Some(f) => Ok(vec![input[0], f]),
            None => Err(Error::shape(
                self.kind(),
                "(N, …) with fewer than 2⁶⁴ values per image",
                input,
            )),
        }
    }

    /// x: (N, C, H, W) → y: (N, C·H·W)
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let shape = self.output_shape(x.shape())?;
        self.input_shape = Some(x.shape().to_vec());
        x.reshape(&shape)
    }

    /// dy: (N, C·H·W) → dx: (N, C, H, W) — the same values, the input's shape back.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let shape = kept(&self.input_shape, self.kind())?;
        expect_same_shape(self.kind(), &self.output_shape(shape)?, dy.shape())?;
        dy.reshape(shape)
    }
}
