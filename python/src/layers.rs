//! The layer classes: the lecture's (`ConvolutionalLayer`, `MaxPoolingLayer`,
//! `FlattenLayer`, `FullyConnectedLayer`, `LinearLayer`) and ocellus's under PyTorch's
//! names (`Conv2d`, `MaxPool2d`, `BatchNorm2d`, …). Each is a subclass of [`PyLayer`],
//! which holds the engine layers the class stands for and implements `forward`,
//! `backward` and the parameters once for all of them.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::PyArrayDyn;
use ocellus::init::Init;
use ocellus::layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig,
    ConvTranspose2d as EngineConvTranspose2d, ConvTranspose2dConfig, Dropout,
    Flatten as EngineFlatten, GlobalAvgPool as EngineGlobalAvgPool, Hardswish as EngineHardswish,
    LeakyRelu, Linear as EngineLinear, MaxPool2d as EngineMaxPool2d, Padding, Pool2dConfig, Relu,
    Sigmoid as EngineSigmoid, Silu, Softmax as EngineSoftmax, Tanh as EngineTanh,
    Upsample as EngineUpsample, UpsampleMode, UpsampleSize,
};
use ocellus::{Layer, LayerExt, Mode, Param, Rng, Sequential};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::PyClassInitializer;

use crate::arrays::{array_from, array_of, tensor_from, OrPyErr};

/// Where new layers draw their initial weights: one generator for the module, seeded with 0
/// at import and by `ocellus.manual_seed`, so a script builds the same network every run.
static INIT_RNG: Mutex<Option<Rng>> = Mutex::new(None);

/// A generator for one new layer, forked from the module's.
pub fn layer_rng() -> Rng {
    let mut slot = INIT_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.get_or_insert_with(|| Rng::new(0)).fork()
}

/// Restarts the generator that initialises new layers' weights from `seed`, so that the
/// layers built after this call get the same weights on every run.
#[pyfunction]
pub fn manual_seed(seed: u64) {
    *INIT_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Rng::new(seed));
}

/// `"train"` or `"eval"`: how Dropout and BatchNorm behave in a forward pass.
pub fn parse_mode(mode: &str) -> PyResult<Mode> {
    match mode {
        "train" => Ok(Mode::Train),
        "eval" => Ok(Mode::Eval),
        other => Err(PyValueError::new_err(format!(
            "mode must be 'train' or 'eval', got '{other}'"
        ))),
    }
}

/// The name a parameter has inside its class: the engine names it within the chain
/// (`0.weight`), where every parameter belongs to the first layer; the class says `weight`.
pub fn own_name(engine_name: &str) -> &str {
    engine_name
        .split_once('.')
        .map_or(engine_name, |(_, rest)| rest)
}

/// The values (or gradients) of `params`, one after the other, as one flat vector.
pub fn flat_values<'a>(params: impl Iterator<Item = &'a Param>, gradients: bool) -> Vec<f32> {
    let mut out = Vec::new();
    for p in params {
        out.extend_from_slice(if gradients {
            p.grad().data()
        } else {
            p.value().data()
        });
    }
    out
}

/// Copies a flat vector into `params` in order; `owner` names the layer or network in the
/// error for a vector of the wrong length (nothing is changed then).
pub fn assign_params(
    owner: &str,
    mut params: Vec<&mut Param>,
    values: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let values = tensor_from(values, "parameters")?;
    let expected: usize = params.iter().map(|p| p.value().len()).sum();
    if values.shape().len() != 1 || values.len() != expected {
        return Err(PyValueError::new_err(format!(
            "{owner}: parameters must be a flat vector of {expected} values, got an array of shape {} ({} values)",
            ocellus::tensor::shape_str(values.shape()),
            values.len()
        )));
    }
    let mut rest = values.data();
    for p in params.iter_mut() {
        let (head, tail) = rest.split_at(p.value().len());
        p.value_mut().copy_from_slice(head);
        rest = tail;
    }
    Ok(())
}

/// `err` as raised by the class `class`: the engine's message names the failing engine
/// layer by its place in the class's chain (`layer 0 (conv2d)`); a user knows the class.
pub fn in_class(err: ocellus::Error, class: &str) -> ocellus::Error {
    use ocellus::Error;
    match err {
        Error::Shape {
            expected,
            got,
            hint,
            ..
        } => Error::Shape {
            layer: class.to_string(),
            expected,
            got,
            hint,
        },
        Error::Config { message, .. } => Error::Config {
            layer: class.to_string(),
            message,
        },
        Error::BackwardBeforeForward { .. } => Error::BackwardBeforeForward {
            layer: class.to_string(),
        },
        other => other,
    }
}

/// Base class of every ocellus layer.
///
/// A layer computes `y = layer.forward(x)` and keeps what its backward pass needs;
/// `dx = layer.backward(dy)` then returns the gradient with respect to `x` and **adds**
/// the gradients of its parameters into `layer.gradients` (call `zero_grad()` to clear
/// them, as in PyTorch). Arrays are NCHW images `(N, C, H, W)` or flat `(N, F)` features,
/// float32 or float64, C-contiguous; results are float32.
#[pyclass(subclass, name = "Layer", module = "ocellus")]
pub struct PyLayer {
    /// The engine layers this class stands for, chained (a convolution and its fused
    /// activation); every parameter belongs to the first. A box, so that a network's
    /// gradient check can move the chain into one engine network and back.
    /// (A mutex only because a Python object must be shareable between threads; every
    /// use holds the object's own borrow already, so it is never contended.)
    chain: Mutex<Box<dyn Layer>>,
    /// The class and its settings, as `repr` shows them.
    pub repr: String,
}

impl PyLayer {
    /// A layer standing for `layers`, applied in order.
    pub fn new(repr: String, layers: Vec<Box<dyn Layer>>) -> Self {
        let mut chain = Sequential::new();
        for layer in layers {
            chain.push(layer);
        }
        PyLayer {
            chain: Mutex::new(Box::new(chain)),
            repr,
        }
    }

    /// The engine chain, to read.
    pub fn engine(&self) -> MutexGuard<'_, Box<dyn Layer>> {
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The engine chain, to run or change.
    pub fn engine_mut(&mut self) -> &mut Box<dyn Layer> {
        self.chain.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// The class name, for messages.
    pub fn class_name(&self) -> &str {
        self.repr.split('(').next().unwrap_or("layer")
    }
}

#[pymethods]
impl PyLayer {
    /// The layer's output for input `x`. `mode` is "train" or "eval" (it matters for
    /// Dropout and BatchNorm only). The layer keeps what `backward` needs.
    #[pyo3(signature = (x, mode = "train"))]
    fn forward<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        mode: &str,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let x = tensor_from(x, "x")?;
        let mode = parse_mode(mode)?;
        let class = self.class_name().to_string();
        let chain = self.engine_mut();
        let y = py
            .detach(|| crate::on_worker(|| chain.forward(x, mode)))
            .map_err(|e| in_class(e, &class))
            .or_py_err()?;
        array_from(py, &y)
    }
    /// Given `grad_output` = dL/dy (the shape of the last forward's output), adds the
    /// parameter gradients into `gradients` and returns dL/dx, the shape of the last input.
    fn backward<'py>(
        &mut self,
        py: Python<'py>,
        grad_output: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let dy = tensor_from(grad_output, "grad_output")?;
        let class = self.class_name().to_string();
        let chain = self.engine_mut();
        let dx = py
            .detach(|| crate::on_worker(|| chain.backward(dy)))
            .map_err(|e| in_class(e, &class))
            .or_py_err()?;
        array_from(py, &dx)
    }

    /// All parameters as one flat float32 vector, in the order of `named_parameters()`
    /// (a copy). Assign a vector of the same length to set them.
    #[getter]
    fn get_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let engine = self.engine();
        let params = engine.params();
        let values = flat_values(params.iter().map(|(_, p)| *p), false);
        array_of(py, &[values.len()], values)
    }

    #[setter]
    fn set_parameters(&mut self, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let owner = self.class_name().to_string();
        let params = self
            .engine_mut()
            .params_mut()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assign_params(&owner, params, values)
    }

    /// The gradients accumulated since the last `zero_grad()`, flat, in the order of
    /// `parameters` (a copy).
    #[getter]
    fn gradients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let engine = self.engine();
        let params = engine.params();
        let values = flat_values(params.iter().map(|(_, p)| *p), true);
        array_of(py, &[values.len()], values)
    }
    /// A dict from PyTorch's parameter names (`weight`, `bias`) to copies of the values in
    /// PyTorch's layouts: a convolution's weight is (OC, IC, KH, KW), a linear one (out, in).
    fn named_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, p) in self.engine().params() {
            dict.set_item(own_name(&name), array_from(py, p.value())?)?;
        }
        Ok(dict)
    }
    /// The gradients by parameter name, shaped like the parameters (copies).
    fn named_gradients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, p) in self.engine().params() {
            dict.set_item(own_name(&name), array_from(py, p.grad())?)?;
        }
        Ok(dict)
    }
    /// State kept but not learned (BatchNorm's running statistics), by PyTorch's names.
    fn named_buffers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, b) in self.engine().buffers() {
            dict.set_item(own_name(&name), array_from(py, b)?)?;
        }
        Ok(dict)
    }
    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        self.engine_mut().zero_grad();
    }

    /// Writes the parameters and buffers to a safetensors file under PyTorch's names
    /// (`weight`, `bias`), atomically.
    fn save(&mut self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let chain = self.engine_mut();
        py.detach(move || {
            crate::checkpoint::save(chain.as_ref(), &path, |n| own_name(n).to_string())
        })
        .or_py_err()
    }

    /// Reads parameters and buffers written by `save`: every tensor must be there with its
    /// shape, or nothing changes. A missing file is a FileNotFoundError; a file that is not
    /// such a checkpoint, or does not fit this layer, a ValueError naming it.
    fn load(&mut self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let chain = self.engine_mut();
        py.detach(move || {
            crate::checkpoint::load(chain.as_mut(), &path, |n| own_name(n).to_string())
        })
        .or_py_err()
    }

    /// The number of learnable values.
    #[getter]
    fn num_parameters(&self) -> usize {
        self.engine().param_count()
    }

    fn __repr__(&self) -> String {
        self.repr.clone()
    }
}

/// The fused activation of a lecture layer: "relu", "sigmoid", "tanh" or None.
fn activation(name: Option<&str>) -> PyResult<Option<Box<dyn Layer>>> {
    Ok(match name {
        None => None,
        Some("relu") => Some(Box::new(Relu::new())),
        Some("sigmoid") => Some(Box::new(EngineSigmoid::new())),
        Some("tanh") => Some(Box::new(EngineTanh::new())),
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "activation must be 'relu', 'sigmoid', 'tanh' or None, got '{other}'"
            )))
        }
    })
}

/// `'relu'` or `None`, as Python writes it.
fn py_repr_opt(name: Option<&str>) -> String {
    name.map_or("None".to_string(), |n| format!("'{n}'"))
}

/// A layer followed by its fused activation, if any.
fn with_activation(first: Box<dyn Layer>, act: Option<&str>) -> PyResult<Vec<Box<dyn Layer>>> {
    let mut layers = vec![first];
    layers.extend(activation(act)?);
    Ok(layers)
}
/// The lecture's convolutional layer: `y = φ(conv(x, W) + b)` with the activation φ fused
/// ("relu", "sigmoid", "tanh" or None).
///
/// x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW), with
/// OH = (H + 2·padding − kernel_size) // stride + 1 (and OW likewise).
///
/// Parameters: `weight` (out_channels, in_channels, kernel_size, kernel_size) and `bias`
/// (out_channels,), initialised as PyTorch's `nn.Conv2d`; `backward` returns dL/dx and adds
/// dL/dW and dL/db into `gradients`.
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct ConvolutionalLayer;

#[pymethods]
impl ConvolutionalLayer {
    #[new]
    #[pyo3(signature = (in_channels, out_channels, kernel_size, stride = 1, padding = 0, activation = Some("relu")))]
    #[pyo3(
        text_signature = "(in_channels, out_channels, kernel_size, stride=1, padding=0, activation='relu')"
    )]
    fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        activation: Option<&str>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = Conv2dConfig::new(in_channels, out_channels, kernel_size)
            .stride(stride)
            .padding(padding);
        let conv = Conv2d::new(config, &mut layer_rng()).or_py_err()?;
        let repr = format!(
            "ConvolutionalLayer({in_channels}, {out_channels}, kernel_size={kernel_size}, stride={stride}, padding={padding}, activation={})",
            py_repr_opt(activation)
        );
        let layers = with_activation(Box::new(conv), activation)?;
        Ok(PyClassInitializer::from(PyLayer::new(repr, layers)).add_subclass(ConvolutionalLayer))
    }
}
/// The lecture's max pooling: the largest value of each pool_size×pool_size window, moved
/// by `stride` (None: pool_size, non-overlapping windows). No parameters; `backward` routes
/// each gradient to the position that held the maximum.
///
/// x: (N, C, H, W) -> y: (N, C, (H − pool_size) // stride + 1, (W − pool_size) // stride + 1)
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct MaxPoolingLayer;

#[pymethods]
impl MaxPoolingLayer {
    #[new]
    #[pyo3(signature = (pool_size = 2, stride = None))]
    fn new(pool_size: usize, stride: Option<usize>) -> PyResult<PyClassInitializer<Self>> {
        let config = Pool2dConfig::new(pool_size).stride(stride.unwrap_or(pool_size));
        let pool = EngineMaxPool2d::new(config).or_py_err()?;
        let repr = format!(
            "MaxPoolingLayer(pool_size={pool_size}, stride={})",
            stride.map_or("None".to_string(), |s| s.to_string())
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(pool)]))
                .add_subclass(MaxPoolingLayer),
        )
    }
}
/// The lecture's flatten: `y = x.reshape(N, -1)`; `backward` reshapes the gradient back.
///
/// x: (N, C, H, W) -> y: (N, C·H·W)
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct FlattenLayer;

#[pymethods]
impl FlattenLayer {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layer = PyLayer::new(
            "FlattenLayer()".into(),
            vec![Box::new(EngineFlatten::new())],
        );
        PyClassInitializer::from(layer).add_subclass(FlattenLayer)
    }
}
/// The lecture's dense layer: `y = φ(x·Wᵀ + b)` with the activation φ fused ("relu",
/// "sigmoid", "tanh" or None).
///
/// x: (N, input_size) -> y: (N, output_size). Parameters: `weight` (output_size,
/// input_size) and `bias` (output_size,), initialised as PyTorch's `nn.Linear`.
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct FullyConnectedLayer;

#[pymethods]
impl FullyConnectedLayer {
    #[new]
    #[pyo3(signature = (input_size, output_size, activation = Some("relu")))]
    #[pyo3(text_signature = "(input_size, output_size, activation='relu')")]
    fn new(
        input_size: usize,
        output_size: usize,
        activation: Option<&str>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let linear = EngineLinear::new(input_size, output_size, &mut layer_rng()).or_py_err()?;
        let repr = format!(
            "FullyConnectedLayer({input_size}, {output_size}, activation={})",
            py_repr_opt(activation)
        );
        let layers = with_activation(Box::new(linear), activation)?;
        Ok(PyClassInitializer::from(PyLayer::new(repr, layers)).add_subclass(FullyConnectedLayer))
    }
}
/// The lecture's output layer: `y = x·Wᵀ + b`, no activation (logits for a loss).
///
/// x: (N, input_size) -> y: (N, output_size). Parameters: `weight` (output_size,
/// input_size) and `bias` (output_size,), initialised as PyTorch's `nn.Linear`.
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct LinearLayer;

#[pymethods]
impl LinearLayer {
    #[new]
    fn new(input_size: usize, output_size: usize) -> PyResult<PyClassInitializer<Self>> {
        let linear = EngineLinear::new(input_size, output_size, &mut layer_rng()).or_py_err()?;
        let repr = format!("LinearLayer({input_size}, {output_size})");
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(linear)]))
                .add_subclass(LinearLayer),
        )
    }
}
/// PyTorch's `nn.Conv2d` (square kernel, equal stride and dilation on both axes).
/// `padding` is an int (every side), `(ph, pw)` (top and bottom, left and right) or
/// `(top, bottom, left, right)`, each side padded on its own.
///
/// x: (N, IC, H, W) -> y: (N, OC, OH, OW), OH = (H + top + bottom − dilation·(kernel_size − 1) − 1) // stride + 1.
/// Parameters: `weight` (OC, IC/groups, KH, KW), `bias` (OC,).
#[pyclass(extends = PyLayer, name = "Conv2d", module = "ocellus")]
pub struct PyConv2d;

#[pymethods]
impl PyConv2d {
    #[new]
    #[pyo3(signature = (in_channels, out_channels, kernel_size, stride = 1, padding = None, dilation = 1, groups = 1, bias = true))]
    #[pyo3(
        text_signature = "(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: Option<&Bound<'_, PyAny>>,
        dilation: usize,
        groups: usize,
        bias: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let (padding, padding_repr) = padding_arg(padding)?;
        let config = Conv2dConfig::new(in_channels, out_channels, kernel_size)
            .stride(stride)
            .padding_sides(padding)
            .dilation(dilation)
            .groups(groups)
            .bias(bias);
        let conv = Conv2d::new(config, &mut layer_rng()).or_py_err()?;
        let repr = format!(
            "Conv2d({in_channels}, {out_channels}, kernel_size={kernel_size}, stride={stride}, padding={padding_repr}, dilation={dilation}, groups={groups}, bias={})",
            py_bool(bias)
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(conv)]))
                .add_subclass(PyConv2d),
        )
    }
}

/// A convolution's `padding` as PyTorch takes it — an int or `(ph, pw)` — or per side,
/// `(top, bottom, left, right)`; None is 0. Also how `repr` writes it.
pub fn padding_arg(padding: Option<&Bound<'_, PyAny>>) -> PyResult<(Padding, String)> {
    let Some(padding) = padding else {
        return Ok((Padding::uniform(0), "0".into()));
    };
    if let Ok(p) = padding.extract::<usize>() {
        return Ok((Padding::uniform(p), p.to_string()));
    }
    let sides: Vec<usize> = padding.extract().map_err(|_| {
        PyValueError::new_err("padding must be an int ≥ 0, (ph, pw) or (top, bottom, left, right)")
    })?;
    match sides[..] {
        [ph, pw] => Ok((Padding::symmetric(ph, pw), format!("({ph}, {pw})"))),
        [top, bottom, left, right] => Ok((
            Padding {
                top,
                bottom,
                left,
                right,
            },
            format!("({top}, {bottom}, {left}, {right})"),
        )),
        _ => Err(PyValueError::new_err(format!(
            "padding must be an int, (ph, pw) or (top, bottom, left, right), got {} values",
            sides.len()
        ))),
    }
}

pub fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The settings of a pooling layer as PyTorch takes them.
fn pool_config(
    kernel_size: usize,
    stride: Option<usize>,
    padding: usize,
    ceil_mode: bool,
) -> Pool2dConfig {
    let config = Pool2dConfig::new(kernel_size)
        .padding(padding)
        .ceil_mode(ceil_mode);
    match stride {
        Some(s) => config.stride(s),
        None => config,
    }
}
/// PyTorch's `nn.MaxPool2d`: stride None means kernel_size; padded positions never win.
///
/// x: (N, C, H, W) -> y: (N, C, OH, OW)
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct MaxPool2d;

#[pymethods]
impl MaxPool2d {
    #[new]
    #[pyo3(signature = (kernel_size, stride = None, padding = 0, ceil_mode = false))]
    fn new(
        kernel_size: usize,
        stride: Option<usize>,
        padding: usize,
        ceil_mode: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let pool = EngineMaxPool2d::new(pool_config(kernel_size, stride, padding, ceil_mode))
            .or_py_err()?;
        let repr = format!(
            "MaxPool2d(kernel_size={kernel_size}, stride={}, padding={padding}, ceil_mode={})",
            stride.map_or("None".to_string(), |s| s.to_string()),
            py_bool(ceil_mode)
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(pool)]))
                .add_subclass(MaxPool2d),
        )
    }
}
/// PyTorch's `nn.AvgPool2d`: the mean of each window; `count_include_pad` says whether
/// padded zeros count in the divisor.
///
/// x: (N, C, H, W) -> y: (N, C, OH, OW)
#[pyclass(extends = PyLayer, name = "AvgPool2d", module = "ocellus")]
pub struct PyAvgPool2d;

#[pymethods]
impl PyAvgPool2d {
    #[new]
    #[pyo3(signature = (kernel_size, stride = None, padding = 0, ceil_mode = false, count_include_pad = true))]
    fn new(
        kernel_size: usize,
        stride: Option<usize>,
        padding: usize,
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = pool_config(kernel_size, stride, padding, ceil_mode)
            .count_include_pad(count_include_pad);
        let pool = AvgPool2d::new(config).or_py_err()?;
        let repr = format!(
            "AvgPool2d(kernel_size={kernel_size}, stride={}, padding={padding}, ceil_mode={}, count_include_pad={})",
            stride.map_or("None".to_string(), |s| s.to_string()),
            py_bool(ceil_mode),
            py_bool(count_include_pad)
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(pool)]))
                .add_subclass(PyAvgPool2d),
        )
    }
}
/// The mean of each whole feature map: x: (N, C, H, W) -> y: (N, C, 1, 1).
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct GlobalAvgPool;

#[pymethods]
impl GlobalAvgPool {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(EngineGlobalAvgPool::new())];
        PyClassInitializer::from(PyLayer::new("GlobalAvgPool()".into(), layers))
            .add_subclass(GlobalAvgPool)
    }
}
/// PyTorch's `nn.Flatten()`: x: (N, C, H, W) -> y: (N, C·H·W).
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Flatten;

#[pymethods]
impl Flatten {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(EngineFlatten::new())];
        PyClassInitializer::from(PyLayer::new("Flatten()".into(), layers)).add_subclass(Flatten)
    }
}
/// PyTorch's `nn.Linear`: `y = x·Wᵀ + b`, x: (N, in_features) -> y: (N, out_features).
/// Parameters: `weight` (out_features, in_features), `bias` (out_features,).
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Linear;

#[pymethods]
impl Linear {
    #[new]
    #[pyo3(signature = (in_features, out_features, bias = true))]
    fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let linear = EngineLinear::with_init(
            in_features,
            out_features,
            bias,
            Init::PytorchDefault,
            &mut layer_rng(),
        )
        .or_py_err()?;
        let repr = format!(
            "Linear({in_features}, {out_features}, bias={})",
            py_bool(bias)
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(linear)]))
                .add_subclass(Linear),
        )
    }
}
/// `y = max(x, 0)`, element-wise, any shape.
#[pyclass(extends = PyLayer, name = "ReLU", module = "ocellus")]
pub struct ReLU;

#[pymethods]
impl ReLU {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyLayer::new("ReLU()".into(), vec![Box::new(Relu::new())]))
            .add_subclass(ReLU)
    }
}
/// `y = x` for x > 0, `negative_slope·x` otherwise, element-wise.
#[pyclass(extends = PyLayer, name = "LeakyReLU", module = "ocellus")]
pub struct LeakyReLU;

#[pymethods]
impl LeakyReLU {
    #[new]
    #[pyo3(signature = (negative_slope = 0.01))]
    fn new(negative_slope: f32) -> PyClassInitializer<Self> {
        let repr = format!("LeakyReLU(negative_slope={negative_slope})");
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(LeakyRelu::new(negative_slope))];
        PyClassInitializer::from(PyLayer::new(repr, layers)).add_subclass(LeakyReLU)
    }
}
/// `y = 1/(1 + exp(−x))`, element-wise.
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Sigmoid;

#[pymethods]
impl Sigmoid {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(EngineSigmoid::new())];
        PyClassInitializer::from(PyLayer::new("Sigmoid()".into(), layers)).add_subclass(Sigmoid)
    }
}
/// `y = tanh(x)`, element-wise.
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Tanh;

#[pymethods]
impl Tanh {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(EngineTanh::new())];
        PyClassInitializer::from(PyLayer::new("Tanh()".into(), layers)).add_subclass(Tanh)
    }
}
/// Inverted dropout: in mode "train" each value is zeroed with probability p and the rest
/// are scaled by 1/(1 − p); in mode "eval" it is the identity. Masks come from the
/// generator `ocellus.manual_seed` seeds.
#[pyclass(extends = PyLayer, name = "Dropout", module = "ocellus")]
pub struct PyDropout;

#[pymethods]
impl PyDropout {
    #[new]
    #[pyo3(signature = (p = 0.5))]
    fn new(p: f32) -> PyResult<PyClassInitializer<Self>> {
        let dropout = Dropout::new(p, &mut layer_rng()).or_py_err()?;
        let repr = format!("Dropout(p={p})");
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(dropout)]))
                .add_subclass(PyDropout),
        )
    }
}
/// PyTorch's `nn.BatchNorm2d`: `y = γ·(x − μ)/√(σ² + eps) + β` per channel, with the
/// batch's statistics in mode "train" (updating the running ones) and the running
/// statistics in mode "eval". Parameters `weight` γ and `bias` β, (C,); buffers
/// `running_mean`, `running_var`, `num_batches_tracked`.
#[pyclass(extends = PyLayer, name = "BatchNorm2d", module = "ocellus")]
pub struct PyBatchNorm2d;

#[pymethods]
impl PyBatchNorm2d {
    #[new]
    #[pyo3(signature = (num_features, eps = 1e-5, momentum = Some(0.1)))]
    #[pyo3(text_signature = "(num_features, eps=1e-5, momentum=0.1)")]
    fn new(
        num_features: usize,
        eps: f64,
        momentum: Option<f64>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = BatchNormConfig::new(num_features)
            .eps(eps)
            .momentum(momentum);
        let bn = BatchNorm2d::with_config(config).or_py_err()?;
        let repr = format!(
            "BatchNorm2d({num_features}, eps={eps}, momentum={})",
            momentum.map_or("None".to_string(), |m| m.to_string())
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(bn)]))
                .add_subclass(PyBatchNorm2d),
        )
    }
}
/// PyTorch's `nn.BatchNorm1d` on flat features: `y = γ·(x − μ)/√(σ² + eps) + β` per
/// feature, over the batch. x: (N, F) -> y: (N, F). Parameters `weight` γ and `bias` β,
/// (F,); buffers `running_mean`, `running_var`, `num_batches_tracked`.
#[pyclass(extends = PyLayer, name = "BatchNorm1d", module = "ocellus")]
pub struct PyBatchNorm1d;

#[pymethods]
impl PyBatchNorm1d {
    #[new]
    #[pyo3(signature = (num_features, eps = 1e-5, momentum = Some(0.1)))]
    #[pyo3(text_signature = "(num_features, eps=1e-5, momentum=0.1)")]
    fn new(
        num_features: usize,
        eps: f64,
        momentum: Option<f64>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = BatchNormConfig::new(num_features)
            .eps(eps)
            .momentum(momentum);
        let bn = BatchNorm1d::with_config(config).or_py_err()?;
        let repr = format!(
            "BatchNorm1d({num_features}, eps={eps}, momentum={})",
            momentum.map_or("None".to_string(), |m| m.to_string())
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(bn)]))
                .add_subclass(PyBatchNorm1d),
        )
    }
}
/// Softmax over the features of each row: `y[n,i] = exp(x[n,i]) / Σ_j exp(x[n,j])`,
/// x: (N, F) -> y: (N, F). (To train, give logits to `cross_entropy`, which includes it.)
#[pyclass(extends = PyLayer, name = "Softmax", module = "ocellus")]
pub struct PySoftmax;

#[pymethods]
impl PySoftmax {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(EngineSoftmax::new())];
        PyClassInitializer::from(PyLayer::new("Softmax()".into(), layers)).add_subclass(PySoftmax)
    }
}
/// `y = x·sigmoid(x)` (also called swish), element-wise.
#[pyclass(extends = PyLayer, name = "SiLU", module = "ocellus")]
pub struct SiLU;

#[pymethods]
impl SiLU {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(Silu::new())];
        PyClassInitializer::from(PyLayer::new("SiLU()".into(), layers)).add_subclass(SiLU)
    }
}
/// `y = x·min(max(x + 3, 0), 6)/6`, element-wise (MobileNetV3's cheap swish).
#[pyclass(extends = PyLayer, name = "Hardswish", module = "ocellus")]
pub struct Hardswish;

#[pymethods]
impl Hardswish {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        let layers: Vec<Box<dyn Layer>> = vec![Box::new(EngineHardswish::new())];
        PyClassInitializer::from(PyLayer::new("Hardswish()".into(), layers)).add_subclass(Hardswish)
    }
}
/// PyTorch's `nn.ConvTranspose2d` (square kernel, equal settings on both axes): the
/// gradient of a convolution with respect to its input, used to upsample.
///
/// x: (N, IC, H, W) -> y: (N, OC, OH, OW), OH = (H − 1)·stride − 2·padding +
/// dilation·(kernel_size − 1) + output_padding + 1. `output_padding` must be smaller than
/// stride or dilation. Parameters: `weight` (IC, OC/groups, KH, KW), `bias` (OC,).
#[pyclass(extends = PyLayer, name = "ConvTranspose2d", module = "ocellus")]
pub struct PyConvTranspose2d;

#[pymethods]
impl PyConvTranspose2d {
    #[new]
    #[pyo3(signature = (in_channels, out_channels, kernel_size, stride = 1, padding = 0, output_padding = 0, groups = 1, bias = true, dilation = 1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
        output_padding: usize,
        groups: usize,
        bias: bool,
        dilation: usize,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = ConvTranspose2dConfig::new(in_channels, out_channels, kernel_size)
            .stride(stride)
            .padding(padding)
            .output_padding(output_padding)
            .dilation(dilation)
            .groups(groups)
            .bias(bias);
        let conv = EngineConvTranspose2d::new(config, &mut layer_rng())
            .map_err(|e| in_class(e, "ConvTranspose2d"))
            .or_py_err()?;
        let repr = format!(
            "ConvTranspose2d({in_channels}, {out_channels}, kernel_size={kernel_size}, stride={stride}, padding={padding}, output_padding={output_padding}, groups={groups}, bias={}, dilation={dilation})",
            py_bool(bias)
        );
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(conv)]))
                .add_subclass(PyConvTranspose2d),
        )
    }
}
/// PyTorch's `nn.Upsample`: either `scale_factor` (a whole number, or `(sh, sw)`) or
/// `size` (`oh` or `(oh, ow)`), and `mode` "nearest" or "bilinear" (align_corners=False).
///
/// x: (N, C, H, W) -> y: (N, C, OH, OW). No parameters.
#[pyclass(extends = PyLayer, name = "Upsample", module = "ocellus")]
pub struct PyUpsample;

/// An int `n` as `(n, n)`, or a pair.
fn pair(value: &Bound<'_, PyAny>, what: &str) -> PyResult<(usize, usize)> {
    if let Ok(n) = value.extract::<usize>() {
        return Ok((n, n));
    }
    value.extract::<(usize, usize)>().map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a whole number ≥ 0 or a pair of them, got {value}"
        ))
    })
}

#[pymethods]
impl PyUpsample {
    #[new]
    #[pyo3(signature = (size = None, scale_factor = None, mode = "nearest"))]
    fn new(
        size: Option<&Bound<'_, PyAny>>,
        scale_factor: Option<&Bound<'_, PyAny>>,
        mode: &str,
    ) -> PyResult<PyClassInitializer<Self>> {
        let engine_mode = match mode {
            "nearest" => UpsampleMode::Nearest,
            "bilinear" => UpsampleMode::Bilinear,
            other => {
                return Err(PyValueError::new_err(format!(
                    "Upsample: mode must be 'nearest' or 'bilinear', got '{other}'"
                )))
            }
        };
        let (target, setting) = match (size, scale_factor) {
            (Some(size), None) => {
                let (oh, ow) = pair(size, "size")?;
                (UpsampleSize::Fixed(oh, ow), format!("size=({oh}, {ow})"))
            }
            (None, Some(scale)) => {
                let (sh, sw) = pair(scale, "scale_factor")?;
                (
                    UpsampleSize::Scale(sh, sw),
                    format!("scale_factor=({sh}, {sw})"),
                )
            }
            _ => {
                return Err(PyValueError::new_err(
                    "Upsample: give either size or scale_factor, not both or neither",
                ))
            }
        };
        let up = EngineUpsample::with_size(target, engine_mode)
            .map_err(|e| in_class(e, "Upsample"))
            .or_py_err()?;
        let repr = format!("Upsample({setting}, mode='{mode}')");
        Ok(
            PyClassInitializer::from(PyLayer::new(repr, vec![Box::new(up)]))
                .add_subclass(PyUpsample),
        )
    }
}
