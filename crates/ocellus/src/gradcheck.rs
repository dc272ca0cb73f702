//! Finite-difference gradient checking (the lecture's `finite_difference_gradient`, done
//! properly), and the one `assert_close` every numeric test uses.
//!
//! The analytic gradients of a layer or network are compared with central differences of
//! the scalar `L = Σ y·r`, where `r` is a fixed random "upstream gradient": then `∂L/∂y = r`,
//! so one `backward(r)` yields `∂L/∂x` and every parameter gradient, and
//!
//! `∂L/∂θ_i ≈ (L(θ + ε·e_i) − L(θ − ε·e_i)) / 2ε`.
//!
//! The loss is summed in `f64`. A perturbation that crosses a kink (a ReLU at 0, a tie in
//! a max-pool window) makes the estimates at steps ε and ε/2 disagree; such positions are
//! skipped and counted, because there the function has no derivative to compare against.

use std::fmt;

use crate::error::Result;
use crate::layers::{Layer, Mode};
use crate::rng::Rng;
use crate::tensor::{shape_str, Tensor};

/// Settings of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheckConfig {
    /// Step of the central difference. `1e-2` balances f32 rounding (error ∝ 1/ε)
    /// against truncation (error ∝ ε²) for values of order 1.
    pub epsilon: f32,
    /// At most this many positions are checked per tensor, spread over the leading two
    /// axes (batch and channel, or output and input channel) and chosen at random within.
    pub max_samples: usize,
    /// Largest relative error that passes.
    pub tolerance: f32,
    /// Gradients smaller than this are compared absolutely: the relative error is
    /// `|a − n| / max(|a|, |n|, abs_floor)`.
    pub abs_floor: f32,
    /// Seed of the upstream gradient `r` and of the sampled positions.
    pub seed: u64,
    /// Train or eval semantics of the checked forward passes.
    pub mode: Mode,
}

impl Default for GradCheckConfig {
    fn default() -> Self {
        GradCheckConfig {
            epsilon: 1e-2,
            max_samples: 64,
            tolerance: 1e-2,
            abs_floor: 1e-2,
            seed: 0,
            mode: Mode::Train,
        }
    }
}

/// The result for one tensor (the input or one parameter).
#[derive(Clone, Debug)]
pub struct TensorCheck {
    /// `"input"` or the parameter's name, e.g. `"3.weight"`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Positions compared.
    pub checked: usize,
    /// Positions skipped because the perturbation crossed a kink.
    pub skipped: usize,
    /// Worst relative error over the checked positions.
    pub max_rel_error: f32,
    /// Multi-index of the worst position.
    pub worst_index: Vec<usize>,
    /// Analytic and numeric gradient at the worst position.
    pub analytic: f32,
    pub numeric: f32,
    pub passed: bool,
}

/// The result of a gradient check: one row per tensor.
#[derive(Clone, Debug)]
pub struct GradCheckReport {
    pub tensors: Vec<TensorCheck>,
    pub tolerance: f32,
}

impl GradCheckReport {
    /// True when every tensor passed.
    pub fn passed(&self) -> bool {
        self.tensors.iter().all(|t| t.passed)
    }

    /// The tensor with the largest relative error.
    pub fn worst(&self) -> Option<&TensorCheck> {
        self.tensors
            .iter()
            .max_by(|a, b| a.max_rel_error.total_cmp(&b.max_rel_error))
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .tensors
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(0)
            .max(6);
        writeln!(
            f,
            "{:<width$}  {:<18}  {:>7}  {:>7}  {:>11}  {:<16}  {:>12}  {:>12}  result",
            "tensor",
            "shape",
            "checked",
            "skipped",
            "max rel err",
            "worst at",
            "analytic",
            "numeric"
        )?;
        for t in &self.tensors {
            writeln!(
                f,
                "{:<width$}  {:<18}  {:>7}  {:>7}  {:>11.2e}  {:<16}  {:>12.5e}  {:>12.5e}  {}",
                t.name,
                shape_str(&t.shape),
                t.checked,
                t.skipped,
                t.max_rel_error,
                format!("{:?}", t.worst_index),
                t.analytic,
                t.numeric,
                if t.passed { "pass" } else { "FAIL" }
            )?;
        }
        Ok(())
    }
}

/// `L = Σ y·r` in f64.
fn weighted_sum(y: &Tensor, r: &Tensor) -> f64 {
    y.data()
        .iter()
        .zip(r.data())
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

/// Flat positions to check: all of them for a small tensor; otherwise `max_samples`
/// positions cycling through the first two axes, random elsewhere, plus the first and
/// last element (where padding and boundary bugs live).
fn sample_positions(shape: &[usize], max_samples: usize, rng: &mut Rng) -> Vec<usize> {
    let total: usize = shape.iter().product();
    if total <= max_samples {
        return (0..total).collect();
    }
    let lead: Vec<usize> = shape.iter().take(2).copied().collect();
    let lead_count: usize = lead.iter().product();
    let inner = total / lead_count;
    let mut positions = vec![0, total - 1];
    for k in 0..max_samples.saturating_sub(2) {
        positions.push((k % lead_count) * inner + rng.below(inner));
    }
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// Central-difference check of one tensor whose backward gradient is `analytic`;
/// `loss_with_offset(i, δ)` evaluates `L` with element `i` of that tensor moved by `δ`.
fn check_tensor(
    name: String,
    analytic: &Tensor,
    cfg: &GradCheckConfig,
    rng: &mut Rng,
    mut loss_with_offset: impl FnMut(usize, f32) -> Result<f64>,
) -> Result<TensorCheck> {
    let eps = cfg.epsilon;
    let mut report = TensorCheck {
        name,
        shape: analytic.shape().to_vec(),
        checked: 0,
        skipped: 0,
        max_rel_error: 0.0,
        worst_index: vec![],
        analytic: 0.0,
        numeric: 0.0,
        passed: true,
    };
    let central = |plus: f64, minus: f64, step: f32| ((plus - minus) / (2.0 * step as f64)) as f32;
    for i in sample_positions(analytic.shape(), cfg.max_samples, rng) {
        let numeric = central(loss_with_offset(i, eps)?, loss_with_offset(i, -eps)?, eps);
        let half = eps / 2.0;
        let numeric_half = central(
            loss_with_offset(i, half)?,
            loss_with_offset(i, -half)?,
            half,
        );
        // For a smooth or piecewise-linear function without a kink in [θ − ε, θ + ε] the two
        // estimates agree to O(ε²); a kink (a ReLU input or a max-pool tie crossed) makes
        // them differ by about its own jump. Such a position has no derivative to check.
        let scale = numeric.abs().max(numeric_half.abs()).max(cfg.abs_floor);
        if (numeric - numeric_half).abs() > 0.5 * cfg.tolerance * scale {
            report.skipped += 1;
            continue;
        }
        let a = analytic.data()[i];
        let err = (a - numeric).abs() / a.abs().max(numeric.abs()).max(cfg.abs_floor);
        report.checked += 1;
        if err >= report.max_rel_error || report.worst_index.is_empty() {
            report.max_rel_error = err;
            report.worst_index = analytic.unravel(i);
            report.analytic = a;
            report.numeric = numeric;
        }
    }
    // A check that compared nothing proves nothing: every position sat on a kink.
    report.passed =
        report.max_rel_error <= cfg.tolerance && (report.checked > 0 || report.skipped == 0);
    Ok(report)
}

/// Checks the input gradient and every parameter gradient of `layer` at input `x`.
///
/// Random choices inside the layer (dropout masks) are frozen for the duration of the
/// check. Parameter gradients are zeroed before and hold the analytic gradient of `Σ y·r`
/// afterwards; parameter values are restored exactly.
pub fn check_gradients(
    layer: &mut dyn Layer,
    x: &Tensor,
    cfg: &GradCheckConfig,
) -> Result<GradCheckReport> {
    let mut rng = Rng::new(cfg.seed);
    layer.fix_randomness(true);
    let result = run_check(layer, x, cfg, &mut rng);
    layer.fix_randomness(false);
    result
}

fn run_check(
    layer: &mut dyn Layer,
    x: &Tensor,
    cfg: &GradCheckConfig,
    rng: &mut Rng,
) -> Result<GradCheckReport> {
    let y = layer.forward(x, cfg.mode)?;
    let r = Tensor::randn(y.shape(), 1.0, rng);
    layer.zero_grad();
    let dx = layer.backward(&r)?;
    let param_grads: Vec<(String, Tensor)> = layer
        .params()
        .into_iter()
        .map(|(name, p)| (name, p.grad.clone()))
        .collect();

    let mut tensors = Vec::with_capacity(param_grads.len() + 1);
    let mut probe = x.clone();
    tensors.push(check_tensor("input".into(), &dx, cfg, rng, |i, offset| {
        let original = probe.data()[i];
        probe.data_mut()[i] = original + offset;
        let y = layer.forward(&probe, cfg.mode);
        probe.data_mut()[i] = original;
        Ok(weighted_sum(&y?, &r))
    })?);

    for (k, (name, analytic)) in param_grads.into_iter().enumerate() {
        let check = check_tensor(name, &analytic, cfg, rng, |i, offset| {
            let set = |layer: &mut dyn Layer, delta: f32| {
                let mut params = layer.params_mut();
                let value = params[k].1.value.data_mut();
                let original = value[i];
                value[i] = original + delta;
                original
            };
            let original = set(layer, offset);
            let y = layer.forward(x, cfg.mode);
            layer.params_mut()[k].1.value.data_mut()[i] = original;
            Ok(weighted_sum(&y?, &r))
        })?;
        tensors.push(check);
    }
    Ok(GradCheckReport {
        tensors,
        tolerance: cfg.tolerance,
    })
}

/// Asserts that `actual` and `expected` agree element-wise within
/// `|a − e| ≤ atol + rtol·|e|` (computed in f64; `expected` may be f32 or f64 values),
/// reporting the first bad index, both values and the worst error over the whole tensor.
#[track_caller]
pub fn assert_close<E: Copy + Into<f64>>(
    what: &str,
    actual: &[f32],
    expected: &[E],
    rtol: f64,
    atol: f64,
) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} values, expected {}",
        actual.len(),
        expected.len()
    );
    let mut first_bad = None;
    let (mut worst, mut worst_at) = (0.0f64, 0);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let (a, e) = (*a as f64, (*e).into());
        let err = (a - e).abs();
        let bad = err.is_nan() || err > atol + rtol * e.abs();
        if bad && first_bad.is_none() {
            first_bad = Some(i);
        }
        if err > worst || err.is_nan() {
            worst = err;
            worst_at = i;
        }
    }
    if let Some(i) = first_bad {
        panic!(
            "{what}: mismatch at index {i}: got {}, expected {} (rtol {rtol}, atol {atol}); \
             worst error {worst:.3e} at index {worst_at} (got {}, expected {})",
            actual[i],
            expected[i].into(),
            actual[worst_at],
            expected[worst_at].into()
        );
    }
}
