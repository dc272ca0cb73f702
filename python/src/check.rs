//! `gradcheck`: the engine's finite-difference check (`ocellus::gradcheck::check_gradients`)
//! of a layer or a whole network, with a report per tensor.

use ocellus::gradcheck::{check_gradients, GradCheckConfig, GradCheckReport};
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;

use crate::arrays::{tensor_from, OrPyErr};
use crate::layers::{in_class, own_name, parse_mode, PyLayer};
use crate::network::Network;

/// The check of one tensor — the input or one parameter: the worst relative error
/// `|analytic − numeric| / max(|analytic|, |numeric|, abs_floor)` over the positions
/// compared, where it occurred, and both gradients there.
#[pyclass(name = "TensorCheck", module = "ocellus", get_all, frozen)]
#[derive(Clone)]
pub struct TensorCheck {
    /// "input" or the parameter's name ("weight", "3.bias").
    name: String,
    shape: Vec<usize>,
    /// Positions compared.
    checked: usize,
    /// Positions skipped because a step of ±epsilon crossed a kink (ReLU at 0, a max-pool tie).
    skipped: usize,
    max_rel_error: f32,
    /// Index (one entry per axis) of the worst position.
    worst_index: Vec<usize>,
    analytic: f32,
    numeric: f32,
    passed: bool,
}

#[pymethods]
impl TensorCheck {
    fn __repr__(&self) -> String {
        format!(
            "TensorCheck(name='{}', max_rel_error={:.3e}, worst_index={:?}, analytic={}, numeric={}, passed={})",
            self.name,
            self.max_rel_error,
            self.worst_index,
            self.analytic,
            self.numeric,
            if self.passed { "True" } else { "False" }
        )
    }
}

/// What `gradcheck` returns: one `TensorCheck` per tensor (`tensors`, the input first),
/// `passed` when all pass; `report["weight"]` picks one, `str(report)` is a table.
#[pyclass(name = "GradCheckReport", module = "ocellus", get_all, frozen)]
pub struct Report {
    tensors: Vec<TensorCheck>,
    passed: bool,
    tolerance: f32,
    /// The engine's table of the report.
    table: String,
}

#[pymethods]
impl Report {
    fn __getitem__(&self, name: &str) -> PyResult<TensorCheck> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
                PyKeyError::new_err(format!(
                    "no tensor named '{name}'; the report has {names:?}"
                ))
            })
    }

    fn __len__(&self) -> usize {
        self.tensors.len()
    }

    fn __bool__(&self) -> bool {
        self.passed
    }

    fn __str__(&self) -> String {
        self.table.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "GradCheckReport(passed={}, tensors={})\n{}",
            if self.passed { "True" } else { "False" },
            self.tensors.len(),
            self.table
        )
    }
}

impl Report {
    /// The engine's report with its parameter names as the layer or network calls them.
    fn new(mut report: GradCheckReport, rename: impl Fn(&str) -> String) -> Self {
        for t in report.tensors.iter_mut().skip(1) {
            t.name = rename(&t.name);
        }
        let tensors = report
            .tensors
            .iter()
            .map(|t| TensorCheck {
                name: t.name.clone(),
                shape: t.shape.clone(),
                checked: t.checked,
                skipped: t.skipped,
                max_rel_error: t.max_rel_error,
                worst_index: t.worst_index.clone(),
                analytic: t.analytic,
                numeric: t.numeric,
                passed: t.passed,
            })
            .collect();
        Report {
            tensors,
            passed: report.passed(),
            tolerance: report.tolerance,
            table: report.to_string(),
        }
    }
}
/// Compares the analytic gradients of `model` (a layer or a LayeredNeuralNetwork) at
/// input `x` with central differences `(L(θ + ε) − L(θ − ε)) / 2ε` of `L = Σ y·r`, `r` a
/// fixed random upstream gradient: for the input and for every parameter, at most
/// `max_samples` positions each. Positions where a step crosses a kink are skipped and
/// counted. Parameter values are restored; gradients are left holding dL/dθ.
#[pyfunction]
#[pyo3(signature = (model, x, epsilon = 1e-2, tolerance = 1e-2, max_samples = 64, seed = 0, mode = "train"))]
#[allow(clippy::too_many_arguments)]
pub fn gradcheck(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    x: &Bound<'_, PyAny>,
    epsilon: f32,
    tolerance: f32,
    max_samples: usize,
    seed: u64,
    mode: &str,
) -> PyResult<Report> {
    let x = tensor_from(x, "x")?;
    let cfg = GradCheckConfig {
        epsilon,
        tolerance,
        max_samples,
        seed,
        mode: parse_mode(mode)?,
        ..GradCheckConfig::default()
    };
    if let Ok(layer) = model.cast::<PyLayer>() {
        let mut layer = layer.try_borrow_mut()?;
        let class = layer.class_name().to_string();
        let chain = layer.engine_mut();
        let report = py
            .detach(|| check_gradients(chain.as_mut(), &x, &cfg))
            .map_err(|e| in_class(e, &class))
            .or_py_err()?;
        return Ok(Report::new(report, |name| own_name(name).to_string()));
    }
    if let Ok(network) = model.cast::<Network>() {
        let report = network
            .try_borrow()?
            .with_engine_network(py, |whole| check_gradients(whole, &x, &cfg))?
            .or_py_err()?;
        return Ok(Report::new(report, Network::public_name));
    }
    Err(PyTypeError::new_err(format!(
        "gradcheck checks an ocellus layer or a LayeredNeuralNetwork, got {}",
        model.get_type().name()?
    )))
}
