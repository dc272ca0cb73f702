//! Element-wise activations: ReLU and friends, the smooth and piecewise gates of mobile
//! networks (SiLU, Hardswish), and Softmax for inference.

use crate::error::{Error, Result};
use crate::layers::{expect_same_shape, kept, Layer, Mode};
use crate::spec::LayerSpec;
use crate::tensor::Tensor;

/// What an element-wise activation keeps for backward: its input or its output,
/// whichever its derivative is cheapest to compute from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keeps {
    Input,
    Output,
}

/// An element-wise function and its derivative, written side by side.
pub trait Elementwise: Send + Sync + 'static {
    /// The kind as written in architecture files.
    const KIND: &'static str;
    /// Whether [`Elementwise::derivative`] takes the input `x` or the output `y`.
    const KEEPS: Keeps;
    /// The name with its settings, e.g. `LeakyReLU(0.01)`.
    fn describe(&self) -> String;
    /// The function as an architecture entry.
    fn spec(&self) -> LayerSpec;
    /// `y = f(x)`
    fn f(&self, x: f32) -> f32;
    /// `∂y/∂x`, from the kept value (`x` or `y`, as [`Elementwise::KEEPS`] says).
    fn derivative(&self, kept: f32) -> f32;
    /// `dx = dy · f'(x)`: the gradient taken back through the function, from the kept value.
    #[inline(always)]
    fn gradient(&self, dy: f32, kept: f32) -> f32 {
        dy * self.derivative(kept)
    }
}

/// A layer applying an [`Elementwise`] function to every value: `y = f(x)`, and in
/// backward `dx = dy · f'(x)`.
#[derive(Default)]
pub struct Activation<F: Elementwise> {
    function: F,
    /// The input or output of the last forward pass, whichever `F` keeps.
    kept: Option<Tensor>,
}

impl<F: Elementwise> Activation<F> {
    /// The activation layer of `function`.
    pub fn with(function: F) -> Self {
        Activation {
            function,
            kept: None,
        }
    }

    /// The function this layer applies.
    pub fn function(&self) -> &F {
        &self.function
    }
}

impl<F: Elementwise> Layer for Activation<F> {
    fn kind(&self) -> &'static str {
        F::KIND
    }

    fn describe(&self) -> String {
        self.function.describe()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn spec(&self) -> LayerSpec {
        self.function.spec()
    }

    /// x: any shape → y: same shape, `y = f(x)`, in x's memory when nothing else holds it
    /// and `F` keeps the output.
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let function = &self.function;
        let f = |v| function.f(v);
        let (y, kept) = match F::KEEPS {
            Keeps::Input => (x.map(f), x),
            Keeps::Output => {
                let y = x.into_map(f);
                (y.clone(), y)
            }
        };
        self.kept = Some(kept);
        Ok(y)
    }

    /// dy: any shape → dx: same shape, `dx = dy · f'(x)`, in dy's memory when nothing else
    /// holds it.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let kept = kept(&self.kept, F::KIND)?;
        expect_same_shape(F::KIND, kept.shape(), dy.shape())?;
        let function = &self.function;
        dy.into_zip_map(kept, |d, k| function.gradient(d, k))
    }

    fn keep_fused_output(&mut self, y: &Tensor) {
        if F::KIND == ReluFn::KIND {
            self.kept = Some(y.clone());
        }
    }
}

/// `y = max(x, 0)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReluFn;

impl Elementwise for ReluFn {
    const KIND: &'static str = "relu";
    const KEEPS: Keeps = Keeps::Output;
    fn describe(&self) -> String {
        "ReLU".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Relu
    }
    /// NaN stays NaN, as in PyTorch, so a diverging run shows.
    fn f(&self, x: f32) -> f32 {
        if x <= 0.0 {
            0.0
        } else {
            x
        }
    }
    /// 1 where `y > 0` (exactly where `x > 0`), else 0 — 0 at the kink, as PyTorch.
    fn derivative(&self, y: f32) -> f32 {
        if y > 0.0 {
            1.0
        } else {
            0.0
        }
    }
}

/// `y = x` for `x > 0`, `negative_slope · x` otherwise.
#[derive(Clone, Copy, Debug)]
pub struct LeakyReluFn {
    pub negative_slope: f32,
}

impl Elementwise for LeakyReluFn {
    const KIND: &'static str = "leakyrelu";
    const KEEPS: Keeps = Keeps::Input;
    fn describe(&self) -> String {
        format!("LeakyReLU({})", self.negative_slope)
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::LeakyRelu {
            negative_slope: self.negative_slope,
        }
    }
    fn f(&self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            x * self.negative_slope
        }
    }
    /// 1 for `x > 0`, else the slope (the slope at the kink, as PyTorch).
    fn derivative(&self, x: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else {
            self.negative_slope
        }
    }
}

/// The logistic function `y = σ(x) = 1/(1 + e^(−x))`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SigmoidFn;

impl Elementwise for SigmoidFn {
    const KIND: &'static str = "sigmoid";
    const KEEPS: Keeps = Keeps::Output;
    fn describe(&self) -> String {
        "Sigmoid".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Sigmoid
    }
    /// Written so that `e^(…)` never overflows.
    fn f(&self, x: f32) -> f32 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }
    /// `σ' = σ(1 − σ) = y(1 − y)`
    fn derivative(&self, y: f32) -> f32 {
        y * (1.0 - y)
    }
}

/// The hyperbolic tangent `y = tanh(x)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TanhFn;

impl Elementwise for TanhFn {
    const KIND: &'static str = "tanh";
    const KEEPS: Keeps = Keeps::Output;
    fn describe(&self) -> String {
        "Tanh".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Tanh
    }
    fn f(&self, x: f32) -> f32 {
        x.tanh()
    }
    /// `tanh' = 1 − tanh² = 1 − y²`
    fn derivative(&self, y: f32) -> f32 {
        1.0 - y * y
    }
}

/// The sigmoid-weighted linear unit (also called swish), `y = x·σ(x)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiluFn;

impl Elementwise for SiluFn {
    const KIND: &'static str = "silu";
    const KEEPS: Keeps = Keeps::Input;
    fn describe(&self) -> String {
        "SiLU".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Silu
    }
    /// `x / (1 + e^(−x))`, as PyTorch writes it: for very negative x, `e^(−x)` overflows
    /// to ∞ and y to −0, the limit.
    fn f(&self, x: f32) -> f32 {
        x / (1.0 + (-x).exp())
    }
    /// `d(x·σ)/dx = σ + x·σ(1 − σ) = σ·(1 + x·(1 − σ))`, PyTorch's `silu_backward`.
    fn derivative(&self, x: f32) -> f32 {
        let sigmoid = SigmoidFn.f(x);
        sigmoid * (1.0 + x * (1.0 - sigmoid))
    }
}

/// The hard swish of MobileNetV3, `y = x·relu6(x + 3)/6`: 0 for `x ≤ −3`, `x` for `x ≥ 3`,
/// and `x·(x + 3)/6` between.
#[derive(Clone, Copy, Debug, Default)]
pub struct HardswishFn;

impl Elementwise for HardswishFn {
    const KIND: &'static str = "hardswish";
    const KEEPS: Keeps = Keeps::Input;
    fn describe(&self) -> String {
        "Hardswish".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Hardswish
    }
    /// `x·min(max(x + 3, 0), 6)/6`, multiplied before dividing, as PyTorch's CPU kernel.
    fn f(&self, x: f32) -> f32 {
        x * (x + 3.0).clamp(0.0, 6.0) / 6.0
    }
    /// 0 for `x ≤ −3`, `x/3 + 1/2` (the derivative of `(x² + 3x)/6`) for `−3 < x < 3`,
    /// 1 for `x ≥ 3`: at the two kinks, PyTorch's `hardswish_backward` takes the value
    /// of the outer piece (0 at −3, 1 at 3).
    fn derivative(&self, x: f32) -> f32 {
        if x <= -3.0 {
            0.0
        } else if x < 3.0 {
            x / 3.0 + 0.5
        } else {
            1.0
        }
    }
}

/// `y = max(x, 0)`, the rectified linear unit.
pub type Relu = Activation<ReluFn>;
/// Leaky ReLU; PyTorch's default slope is 0.01.
pub type LeakyRelu = Activation<LeakyReluFn>;
/// The logistic sigmoid.
pub type Sigmoid = Activation<SigmoidFn>;
/// The hyperbolic tangent.
pub type Tanh = Activation<TanhFn>;
/// SiLU (swish), `x·σ(x)`.
pub type Silu = Activation<SiluFn>;
/// Hardswish, `x·relu6(x + 3)/6`.
pub type Hardswish = Activation<HardswishFn>;

impl Relu {
    pub fn new() -> Self {
        Activation::with(ReluFn)
    }
}

impl LeakyRelu {
    /// PyTorch's default slope for negative inputs.
    pub const DEFAULT_SLOPE: f32 = 0.01;

    /// A leaky ReLU with the given slope for negative inputs.
    pub fn new(negative_slope: f32) -> Self {
        Activation::with(LeakyReluFn { negative_slope })
    }

    /// The slope for negative inputs.
    pub fn negative_slope(&self) -> f32 {
        self.function.negative_slope
    }
}

impl Default for LeakyReluFn {
    /// Slope 0.01, as `nn.LeakyReLU()`.
    fn default() -> Self {
        LeakyReluFn {
            negative_slope: LeakyRelu::DEFAULT_SLOPE,
        }
    }
}

impl Sigmoid {
    pub fn new() -> Self {
        Activation::with(SigmoidFn)
    }
}

impl Tanh {
    pub fn new() -> Self {
        Activation::with(TanhFn)
    }
}

impl Silu {
    pub fn new() -> Self {
        Activation::with(SiluFn)
    }
}

impl Hardswish {
    pub fn new() -> Self {
        Activation::with(HardswishFn)
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

    fn spec(&self) -> LayerSpec {
        LayerSpec::Softmax
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check_input(input)?;
        Ok(input.to_vec())
    }

    /// x: (N, F) → y: (N, F), each row summing to 1.
    ///
    /// The row maximum is subtracted first: `softmax(x) = softmax(x − max x)`, and then no
    /// `e^(…)` exceeds 1, so large logits cannot overflow.
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        self.check_input(x.shape())?;
        let f = x.shape()[1];
        let mut y = x;
        for row in y.data_mut().chunks_mut(f) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            row.iter_mut().for_each(|v| *v /= sum);
        }
        self.output = Some(y.clone());
        Ok(y)
    }

    /// dy: (N, F) → dx: (N, F).
    ///
    /// `∂y_i/∂x_j = y_i(δ_ij − y_j)`, so `dx_j = Σ_i dy_i·y_i(δ_ij − y_j)
    /// = y_j·(dy_j − Σ_i dy_i·y_i)`.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let y = kept(&self.output, self.kind())?;
        expect_same_shape(self.kind(), y.shape(), dy.shape())?;
        let f = y.shape()[1];
        let mut dx = dy;
        for (dx, y) in dx.data_mut().chunks_mut(f).zip(y.data().chunks(f)) {
            let dot: f32 = dx.iter().zip(y).map(|(d, y)| d * y).sum();
            for (d, y) in dx.iter_mut().zip(y) {
                *d = y * (*d - dot);
            }
        }
        Ok(dx)
    }
}
