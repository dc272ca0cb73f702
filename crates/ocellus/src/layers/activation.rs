//! Element-wise activations: ReLU and friends, and Softmax for inference.

use crate::error::{Error, Result};
use crate::layers::{expect_same_shape, keep, kept, Layer, Mode};
use crate::tensor::Tensor;

/// `y = max(x, 0)`.
#[derive(Default)]
pub struct Relu {
    /// The output of the last forward pass: `y > 0` exactly where the gradient passes.
    output: Option<Tensor>,
}

impl Relu {
    pub fn new() -> Self {
        Relu::default()
    }
}

impl Layer for Relu {
    fn kind(&self) -> &'static str {
        "relu"
    }

    fn describe(&self) -> String {
        "ReLU".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    /// x: any shape → y: same shape
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let mut y = x.clone();
        y.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
        keep(&mut self.output, &y);
        Ok(y)
    }

    /// `∂y/∂x = 1 if x > 0 else 0` (0 at the kink, as PyTorch), so `dx = dy · [y > 0]`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let y = kept(&self.output, self.kind())?;
        expect_same_shape(self.kind(), y.shape(), dy.shape())?;
        let mut dx = dy.clone();
        for (d, y) in dx.data_mut().iter_mut().zip(y.data()) {
            if *y <= 0.0 {
                *d = 0.0;
            }
        }
        Ok(dx)
    }
}

/// `y = x` for `x > 0`, `y = negative_slope·x` otherwise (PyTorch's `nn.LeakyReLU`).
pub struct LeakyRelu {
    negative_slope: f32,
    /// The input of the last forward pass: its sign picks the slope in backward.
    input: Option<Tensor>,
}

impl LeakyRelu {
    /// PyTorch's default slope for negative inputs.
    pub const DEFAULT_SLOPE: f32 = 0.01;

    /// A leaky ReLU with the given slope for negative inputs.
    pub fn new(negative_slope: f32) -> Self {
        LeakyRelu {
            negative_slope,
            input: None,
        }
    }

    /// The slope for negative inputs.
    pub fn negative_slope(&self) -> f32 {
        self.negative_slope
    }
}

impl Default for LeakyRelu {
    /// Slope 0.01, as `nn.LeakyReLU()`.
    fn default() -> Self {
        LeakyRelu::new(Self::DEFAULT_SLOPE)
    }
}

impl Layer for LeakyRelu {
    fn kind(&self) -> &'static str {
        "leakyrelu"
    }

    fn describe(&self) -> String {
        format!("LeakyReLU({})", self.negative_slope)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    /// x: any shape → y: same shape
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let slope = self.negative_slope;
        let mut y = x.clone();
        for v in y.data_mut() {
            *v = if *v > 0.0 { *v } else { *v * slope };
        }
        keep(&mut self.input, x);
        Ok(y)
    }

    /// dy: any shape → dx: same shape.
    ///
    /// `∂y/∂x = 1 if x > 0 else negative_slope` (the slope at the kink, as PyTorch).
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let x = kept(&self.input, self.kind())?;
        expect_same_shape(self.kind(), x.shape(), dy.shape())?;
        let mut dx = dy.clone();
        for (d, x) in dx.data_mut().iter_mut().zip(x.data()) {
            *d = if *x > 0.0 {
                *d
            } else {
                *d * self.negative_slope
            };
        }
        Ok(dx)
    }
}

/// The logistic function `y = 1/(1 + e^(−x))`.
#[derive(Default)]
pub struct Sigmoid {
    /// The output of the last forward pass: the derivative is `y(1 − y)`.
    output: Option<Tensor>,
}

impl Sigmoid {
    pub fn new() -> Self {
        Sigmoid::default()
    }
}

/// `1/(1 + e^(−x))`, written so that `e^(…)` never overflows.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Layer for Sigmoid {
    fn kind(&self) -> &'static str {
        "sigmoid"
    }

    fn describe(&self) -> String {
        "Sigmoid".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    /// x: any shape → y: same shape
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let mut y = x.clone();
        y.data_mut().iter_mut().for_each(|v| *v = sigmoid(*v));
        keep(&mut self.output, &y);
        Ok(y)
    }

    /// dy: any shape → dx: same shape, `dx = dy · y(1 − y)` since `σ' = σ(1 − σ)`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let y = kept(&self.output, self.kind())?;
        expect_same_shape(self.kind(), y.shape(), dy.shape())?;
        let mut dx = dy.clone();
        for (d, y) in dx.data_mut().iter_mut().zip(y.data()) {
            *d *= y * (1.0 - y);
        }
        Ok(dx)
    }
}

/// The hyperbolic tangent `y = tanh(x)`.
#[derive(Default)]
pub struct Tanh {
    /// The output of the last forward pass: the derivative is `1 − y²`.
    output: Option<Tensor>,
}

impl Tanh {
    pub fn new() -> Self {
        Tanh::default()
    }
}

impl Layer for Tanh {
    fn kind(&self) -> &'static str {
        "tanh"
    }

    fn describe(&self) -> String {
        "Tanh".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    /// x: any shape → y: same shape
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let mut y = x.clone();
        y.data_mut().iter_mut().for_each(|v| *v = v.tanh());
        keep(&mut self.output, &y);
        Ok(y)
    }

    /// dy: any shape → dx: same shape, `dx = dy · (1 − y²)` since `tanh' = 1 − tanh²`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let y = kept(&self.output, self.kind())?;
        expect_same_shape(self.kind(), y.shape(), dy.shape())?;
        let mut dx = dy.clone();
        for (d, y) in dx.data_mut().iter_mut().zip(y.data()) {
            *d *= 1.0 - y * y;
        }
        Ok(dx)
    }
}

/// Softmax over the features of each row, `y[n,i] = e^(x[n,i]) / Σ_j e^(x[n,j])`: class
/// probabilities from logits, for inference. (Training uses the cross-entropy loss on
/// logits, which includes the softmax, as PyTorch's `CrossEntropyLoss` does.)
#[derive(Default)]
pub struct Softmax {
    /// The output of the last forward pass, (N, F): the Jacobian is built from it.
    output: Option<Tensor>,
}

impl Softmax {
    pub fn new() -> Self {
        Softmax::default()
    }

    fn check_input(&self, shape: &[usize]) -> Result<()> {
        if shape.len() == 2 && shape[1] > 0 {
            return Ok(());
        }
        let err = Error::shape(self.kind(), "(N, F) with F ≥ 1", shape);
        Err(if shape.len() == 4 {
            err.with_hint("softmax works on flat scores: put a Flatten (and a Linear) before it")
        } else {
            err
        })
    }
}

impl Layer for Softmax {
    fn kind(&self) -> &'static str {
        "softmax"
    }

    fn describe(&self) -> String {
        "Softmax".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check_input(input)?;
        Ok(input.to_vec())
    }

    /// x: (N, F) → y: (N, F), each row summing to 1.
    ///
    /// The row maximum is subtracted first: `softmax(x) = softmax(x − max x)`, and then no
    /// `e^(…)` exceeds 1, so large logits cannot overflow.
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.check_input(x.shape())?;
        let f = x.shape()[1];
        let mut y = x.clone();
        for row in y.data_mut().chunks_mut(f) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            row.iter_mut().for_each(|v| *v /= sum);
        }
        keep(&mut self.output, &y);
        Ok(y)
    }

    /// dy: (N, F) → dx: (N, F).
    ///
    /// `∂y_i/∂x_j = y_i(δ_ij − y_j)`, so `dx_j = Σ_i dy_i·y_i(δ_ij − y_j)
    /// = y_j·(dy_j − Σ_i dy_i·y_i)`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let y = kept(&self.output, self.kind())?;
        expect_same_shape(self.kind(), y.shape(), dy.shape())?;
        let f = y.shape()[1];
        let mut dx = dy.clone();
        for (dx, y) in dx.data_mut().chunks_mut(f).zip(y.data().chunks(f)) {
            let dot: f32 = dx.iter().zip(y).map(|(d, y)| d * y).sum();
            for (d, y) in dx.iter_mut().zip(y) {
                *d = y * (*d - dot);
            }
        }
        Ok(dx)
    }
}
