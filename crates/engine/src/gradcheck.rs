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
use crate::layers::{Layer, LayerExt, Mode, Randomness};
use crate::network::walk::{forward_through_leaves, LeafVisitor};
use crate::network::Sequential;
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
    layer.set_randomness(Randomness::Frozen);
    let result = run_check(layer, x, cfg, &mut rng);
    layer.set_randomness(Randomness::Free);
    result
}

fn run_check(
    layer: &mut dyn Layer,
    x: &Tensor,
    cfg: &GradCheckConfig,
    rng: &mut Rng,
) -> Result<GradCheckReport> {
    let y = layer.forward_ref(x, cfg.mode)?;
    let r = Tensor::randn(y.shape(), 1.0, rng);
    layer.zero_grad();
    let dx = layer.backward_ref(&r)?;
    let param_grads: Vec<(String, Tensor)> = layer
        .params()
        .into_iter()
        .map(|(name, p)| (name, p.grad().clone()))
        .collect();

    let mut tensors = Vec::with_capacity(param_grads.len() + 1);
    let mut probe = x.clone();
    tensors.push(check_tensor("input".into(), &dx, cfg, rng, |i, offset| {
        let original = probe.data()[i];
        probe.data_mut()[i] = original + offset;
        let y = layer.forward_ref(&probe, cfg.mode);
        probe.data_mut()[i] = original;
        Ok(weighted_sum(&y?, &r))
    })?);

    for (k, (name, analytic)) in param_grads.into_iter().enumerate() {
        let check = check_tensor(name, &analytic, cfg, rng, |i, offset| {
            let set = |layer: &mut dyn Layer, delta: f32| {
                let mut params = layer.params_mut();
                let value = params[k].1.value_mut();
                let original = value[i];
                value[i] = original + delta;
                original
            };
            let original = set(layer, offset);
            let y = layer.forward_ref(x, cfg.mode);
            layer.params_mut()[k].1.value_mut()[i] = original;
            Ok(weighted_sum(&y?, &r))
        })?;
        tensors.push(check);
    }
    Ok(GradCheckReport {
        tensors,
        tolerance: cfg.tolerance,
    })
}

/// The check of one layer of a network, made at the activation that reaches it.
#[derive(Clone, Debug)]
pub struct LayerCheck {
    /// Position of the layer, named as its parameters are: `3`, or inside a residual
    /// block `4.main.0`, `4.shortcut.1`, `4.act`.
    pub name: String,
    /// The layer's [`Layer::describe`].
    pub description: String,
    /// The input is called `input`; parameters are named as in the whole network
    /// (`3.weight`, `4.main.0.weight`).
    pub report: GradCheckReport,
    /// The step ε of the comparison reported for each tensor of `report`.
    pub steps: Vec<f32>,
}

/// Steps, as multiples of the configured ε, at which a tensor that fails is checked
/// again: a finite difference has two errors pulling ε opposite ways — f32 rounding
/// (∝ 1/ε), largest in layers such as BatchNorm whose every output moves with every
/// input, and kinks crossed (∝ ε). A correct gradient agrees at one of the steps; a wrong
/// gradient, whose analytic values do not depend on ε, at none.
pub const RETRY_STEPS: [f32; 2] = [4.0, 0.25];

/// The layer-by-layer check of a network: one [`LayerCheck`] per layer, blocks opened.
#[derive(Clone, Debug)]
pub struct NetworkCheck {
    pub layers: Vec<LayerCheck>,
}

impl NetworkCheck {
    /// True when every tensor of every layer passed.
    pub fn passed(&self) -> bool {
        self.layers.iter().all(|l| l.report.passed())
    }

    /// The layers with at least one failing tensor.
    pub fn failed_layers(&self) -> Vec<&LayerCheck> {
        self.layers.iter().filter(|l| !l.report.passed()).collect()
    }
}

impl fmt::Display for NetworkCheck {
    /// One row per checked tensor, under the layer it belongs to, then a verdict line per
    /// failing tensor (or one saying that all passed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADERS: [&str; 9] = [
            "layer",
            "description",
            "tensor",
            "shape",
            "checked",
            "skipped",
            "step",
            "max rel err",
            "result",
        ];
        let mut rows: Vec<[String; 9]> = Vec::new();
        for l in &self.layers {
            for (k, (t, step)) in l.report.tensors.iter().zip(&l.steps).enumerate() {
                let (name, description) = if k == 0 {
                    (l.name.clone(), l.description.clone())
                } else {
                    (String::new(), String::new())
                };
                rows.push([
                    name,
                    description,
                    t.name.clone(),
                    shape_str(&t.shape),
                    t.checked.to_string(),
                    t.skipped.to_string(),
                    format!("{step}"),
                    format!("{:.2e}", t.max_rel_error),
                    if t.passed { "pass" } else { "FAIL" }.to_string(),
                ]);
            }
        }
        let mut widths = HEADERS.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 9]| -> fmt::Result {
            let mut out = String::new();
            for (k, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                out += if k > 0 { "  " } else { "" };
                // Counts, steps and errors right-aligned, text left-aligned.
                if (4..8).contains(&k) {
                    out += &pad;
                    out += cell;
                } else {
                    out += cell;
                    out += &pad;
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, HEADERS)?;
        for row in &rows {
            line(f, std::array::from_fn(|k| row[k].as_str()))?;
        }
        if self.passed() {
            let tensors: usize = self.layers.iter().map(|l| l.report.tensors.len()).sum();
            let tolerance = self.layers.first().map_or(0.0, |l| l.report.tolerance);
            return writeln!(
                f,
                "all {tensors} tensors of {} layers pass (relative error ≤ {tolerance:.0e})",
                self.layers.len()
            );
        }
        for l in self.failed_layers() {
            for t in l.report.tensors.iter().filter(|t| !t.passed) {
                let what = if t.checked == 0 {
                    format!(
                        "all {} positions sat on a kink; nothing could be compared",
                        t.skipped
                    )
                } else {
                    format!(
                        "relative error {:.2e} at {:?} (analytic {:.5e}, numeric {:.5e})",
                        t.max_rel_error, t.worst_index, t.analytic, t.numeric
                    )
                };
                writeln!(
                    f,
                    "FAIL: layer {} ({}): {}: {what}",
                    l.name, l.description, t.name
                )?;
            }
        }
        Ok(())
    }
}

/// A copy of `x` moved away from the points where ReLU-like layers and max-pooling have no
/// derivative, for a finite-difference check with step `epsilon`: values closer to zero
/// than `2ε` are pushed out by `2ε` (so no `±ε` step crosses zero), and exact zeros — what
/// a ReLU or a dropout leaves, ties in every max-pool window they fill — become distinct
/// negative values spread over the scale of the rest of `x`. Applying it twice changes
/// nothing more.
pub fn keep_off_kinks(x: &Tensor, epsilon: f32, rng: &mut Rng) -> Tensor {
    let margin = 2.0 * epsilon;
    let (sum_sq, nonzero) = x
        .data()
        .iter()
        .filter(|v| **v != 0.0)
        .fold((0.0f64, 0usize), |(s, n), v| {
            (s + (*v as f64).powi(2), n + 1)
        });
    let scale = if nonzero > 0 {
        ((sum_sq / nonzero as f64).sqrt() as f32).max(margin)
    } else {
        1.0
    };
    let mut out = x.clone();
    for v in out.data_mut() {
        if *v == 0.0 {
            *v = -(margin + scale * rng.uniform());
        } else if v.abs() < margin {
            *v += margin.copysign(*v);
        }
    }
    out
}

/// Checks every layer of `net` on its own, each at the activation that actually reaches
/// it: `x` goes forward (in `cfg.mode`) through the layers before it, then through
/// [`keep_off_kinks`], and [`check_gradients`] compares the layer's input and parameter
/// gradients with finite differences there (a tensor that fails is checked again at the
/// [`RETRY_STEPS`]). Nested networks and blocks are opened: the layers of a residual
/// block's main path and shortcut, of each branch of a concatenation, of a dense block and
/// of a gate are checked one by one, at the activations the block gives them. (How a
/// block joins its paths is checked end to end by [`check_gradients`] on the block.)
///
/// Why layer by layer: a step in a shared weight moves every position of a channel, so in
/// a deep ReLU network some of the thousands of kinks it crosses sit too close to the
/// centre of the step to be told from curvature. One layer at a time, the only kinks are
/// the layer's own, and [`keep_off_kinks`] keeps its input away from them.
///
/// In `Mode::Train` BatchNorm layers update their running statistics on every forward
/// pass of the check: check a copy of a trained network, not the network itself.
pub fn check_network_layers(
    net: &mut Sequential,
    x: &Tensor,
    cfg: &GradCheckConfig,
) -> Result<NetworkCheck> {
    // The check's own seed draws `r` and positions; this one moves inputs off kinks.
    let mut rng = Rng::new(cfg.seed ^ 0xC0FF_EE00_D15E_A5E5);
    let mut walk = LayerByLayer {
        cfg,
        rng: &mut rng,
        checks: Vec::new(),
    };
    forward_through_leaves(net, "", x, &mut walk)?;
    Ok(NetworkCheck {
        layers: walk.checks,
    })
}

/// The layer-by-layer check as a walk through the network: each leaf is checked at the
/// activation that reaches it.
struct LayerByLayer<'a> {
    cfg: &'a GradCheckConfig,
    rng: &'a mut Rng,
    checks: Vec<LayerCheck>,
}

impl LeafVisitor for LayerByLayer<'_> {
    fn leaf(&mut self, name: &str, layer: &mut dyn Layer, x: &Tensor) -> Result<Tensor> {
        let (check, y) = check_here(layer, name, x, self.cfg, self.rng)?;
        self.checks.push(check);
        Ok(y)
    }
}

/// Checks the leaf `layer` at (a copy of `x` kept off kinks), retrying a failing tensor at
/// the [`RETRY_STEPS`]; returns the check and the layer's output there.
fn check_here(
    layer: &mut dyn Layer,
    name: &str,
    x: &Tensor,
    cfg: &GradCheckConfig,
    rng: &mut Rng,
) -> Result<(LayerCheck, Tensor)> {
    let position = format!("layer {name}");
    let x = &keep_off_kinks(x, cfg.epsilon, rng);
    let mut report = check_gradients(layer, x, cfg).map_err(|e| e.in_layer(&position))?;
    let mut steps = vec![cfg.epsilon; report.tensors.len()];
    for factor in RETRY_STEPS {
        if report.passed() {
            break;
        }
        let retry_cfg = GradCheckConfig {
            epsilon: cfg.epsilon * factor,
            ..cfg.clone()
        };
        let retry = check_gradients(layer, x, &retry_cfg).map_err(|e| e.in_layer(&position))?;
        for ((t, step), again) in report.tensors.iter_mut().zip(&mut steps).zip(retry.tensors) {
            if !t.passed && again.passed {
                (*t, *step) = (again, retry_cfg.epsilon);
            }
        }
    }
    for t in report.tensors.iter_mut().skip(1) {
        t.name = format!("{name}.{}", t.name);
    }
    let y = layer
        .forward_ref(x, cfg.mode)
        .map_err(|e| e.in_layer(&position))?;
    let check = LayerCheck {
        name: name.to_string(),
        description: layer.describe(),
        report,
        steps,
    };
    Ok((check, y))
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
