//! What a training loop needs besides layers: the losses, which return the loss and its
//! gradient (the `grad_output` that starts `backward`), and the optimisers, which update
//! a layer's or a network's parameters from their gradients.

use std::sync::{Mutex, PoisonError};

use numpy::PyArrayDyn;
use ocellus::optim::{Adam as EngineAdam, AdamConfig, Sgd, SgdConfig};
use ocellus::{loss, Optimizer};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::PyClassInitializer;

use crate::arrays::{array_from, tensor_from, OrPyErr};
use crate::layers::PyLayer;
use crate::network::Network;

/// Softmax cross-entropy of `logits` (N, K) against class indices `targets` (N integers in
/// 0..K), averaged over the batch — PyTorch's `F.cross_entropy(logits, targets,
/// label_smoothing=…)`. Returns `(loss, grad)`, grad = dL/dlogits = (softmax(logits) − onehot)/N.
#[pyfunction]
#[pyo3(signature = (logits, targets, label_smoothing = 0.0))]
pub fn cross_entropy<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    label_smoothing: f32,
) -> PyResult<(f32, Bound<'py, PyArrayDyn<f32>>)> {
    let logits = tensor_from(logits, "logits")?;
    let targets: Vec<i64> = targets.extract().map_err(|_| {
        PyTypeError::new_err("targets must be a sequence or array of integer class indices")
    })?;
    let targets = targets
        .iter()
        .map(|&t| {
            usize::try_from(t).map_err(|_| {
                PyValueError::new_err(format!("targets must be class indices ≥ 0, got {t}"))
            })
        })
        .collect::<PyResult<Vec<usize>>>()?;
    let (loss, dlogits) = py
        .detach(|| loss::cross_entropy(&logits, &targets, label_smoothing))
        .or_py_err()?;
    Ok((loss, array_from(py, &dlogits)?))
}

/// Mean squared error over all elements, PyTorch's `F.mse_loss(prediction, target)`.
/// Returns `(loss, grad)`, grad = dL/dprediction = 2·(prediction − target)/M.
#[pyfunction]
pub fn mse_loss<'py>(
    py: Python<'py>,
    prediction: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
) -> PyResult<(f32, Bound<'py, PyArrayDyn<f32>>)> {
    let prediction = tensor_from(prediction, "prediction")?;
    let target = tensor_from(target, "target")?;
    let (loss, dprediction) = py
        .detach(|| loss::mse_loss(&prediction, &target))
        .or_py_err()?;
    Ok((loss, array_from(py, &dprediction)?))
}

/// Base class of the optimisers: `step(model)` updates every parameter of a layer or a
/// LayeredNeuralNetwork from the gradients its backward accumulated (clear them with the
/// model's `zero_grad()` before the next backward, as in PyTorch). The state (momentum,
/// Adam's moments) is kept by parameter name, so step one model with one optimiser.
#[pyclass(subclass, name = "Optimizer", module = "ocellus")]
pub struct PyOptimizer {
    /// (A mutex only because a Python object must be shareable between threads.)
    inner: Mutex<Box<dyn Optimizer>>,
}

impl PyOptimizer {
    fn new(optimizer: impl Optimizer + 'static) -> Self {
        PyOptimizer {
            inner: Mutex::new(Box::new(optimizer)),
        }
    }

    fn optimizer(&mut self) -> &mut Box<dyn Optimizer> {
        self.inner.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl PyOptimizer {
    /// Updates every parameter of `model` (a layer or a LayeredNeuralNetwork) from its gradient.
    fn step(&mut self, py: Python<'_>, model: &Bound<'_, PyAny>) -> PyResult<()> {
        let optimizer = self.optimizer();
        if let Ok(layer) = model.cast::<PyLayer>() {
            let mut layer = layer.try_borrow_mut()?;
            let chain = layer.engine_mut();
            return py.detach(|| optimizer.step(chain.as_mut())).or_py_err();
        }
        if let Ok(network) = model.cast::<Network>() {
            let network = network.try_borrow()?;
            let mut guards = network.borrow_layers(py)?;
            let mut params = Network::params_mut(&mut guards);
            return py.detach(|| optimizer.step_params(&mut params)).or_py_err();
        }
        Err(PyTypeError::new_err(format!(
            "step updates an ocellus layer or a LayeredNeuralNetwork, got {}",
            model.get_type().name()?
        )))
    }

    /// The learning rate of the next steps; assign to change it (a schedule).
    #[getter]
    fn get_lr(&mut self) -> f32 {
        self.optimizer().lr()
    }

    #[setter]
    fn set_lr(&mut self, lr: f32) -> PyResult<()> {
        self.optimizer().set_lr(lr).or_py_err()
    }

    /// The number of steps taken.
    #[getter]
    fn steps(&mut self) -> u64 {
        self.optimizer().steps()
    }

    fn __repr__(&mut self) -> String {
        self.optimizer().describe()
    }
}

/// SGD(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
///
/// `torch.optim.SGD`: `g ← g + wd·p`; with momentum `b ← μ·b + (1 − d)·g` (b = g at the
/// first step) and `g ← b` (Nesterov: `g ← g + μ·b`); `p ← p − lr·g`.
#[pyclass(extends = PyOptimizer, name = "SGD", module = "ocellus")]
pub struct PySgd;

#[pymethods]
impl PySgd {
    #[new]
    #[pyo3(signature = (lr, momentum = 0.0, dampening = 0.0, weight_decay = 0.0, nesterov = false))]
    fn new(
        lr: f32,
        momentum: f32,
        dampening: f32,
        weight_decay: f32,
        nesterov: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = SgdConfig {
            lr,
            momentum,
            dampening,
            weight_decay,
            nesterov,
        };
        let sgd = Sgd::new(config).or_py_err()?;
        Ok(PyClassInitializer::from(PyOptimizer::new(sgd)).add_subclass(PySgd))
    }
}

/// Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
///
/// `torch.optim.Adam` (weight decay as an L2 term added to the gradient).
#[pyclass(extends = PyOptimizer, module = "ocellus")]
pub struct Adam;

#[pymethods]
impl Adam {
    #[new]
    #[pyo3(signature = (lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0.0))]
    fn new(
        lr: f32,
        betas: (f64, f64),
        eps: f32,
        weight_decay: f32,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = AdamConfig {
            betas,
            eps,
            weight_decay,
            ..AdamConfig::adam(lr)
        };
        let adam = EngineAdam::new(config).or_py_err()?;
        Ok(PyClassInitializer::from(PyOptimizer::new(adam)).add_subclass(Adam))
    }
}

/// AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
///
/// `torch.optim.AdamW`: Adam with decoupled weight decay, `p ← p·(1 − lr·wd)` before the
/// update.
#[pyclass(extends = PyOptimizer, module = "ocellus")]
pub struct AdamW;

#[pymethods]
impl AdamW {
    #[new]
    #[pyo3(signature = (lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0.01))]
    fn new(
        lr: f32,
        betas: (f64, f64),
        eps: f32,
        weight_decay: f32,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = AdamConfig {
            betas,
            eps,
            weight_decay,
            ..AdamConfig::adamw(lr)
        };
        let adamw = EngineAdam::new(config).or_py_err()?;
        Ok(PyClassInitializer::from(PyOptimizer::new(adamw)).add_subclass(AdamW))
    }
}
