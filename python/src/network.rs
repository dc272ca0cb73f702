//! `LayeredNeuralNetwork`: the lecture's composition of layers. The network holds the
//! Python layer objects themselves, so `net.layers[0].parameters` is the first layer's;
//! a pass borrows every layer's engine chain and runs them in order (forward) or in
//! reverse (backward) with the GIL released.

use std::path::PathBuf;

use numpy::PyArrayDyn;
use ocellus::{Layer, LayerExt, Param, Sequential, Tensor};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{array_from, array_of, tensor_from, OrPyErr};
use crate::layers::{assign_params, flat_values, in_class, own_name, parse_mode, PyLayer};

/// The lecture's network: `layers` applied in order. `forward(x)` runs each layer on the
/// previous one's output and keeps every output in `outputs`; `backward(dy)` runs each
/// layer's backward in reverse and returns dL/dx, every layer adding its parameter
/// gradients (clear them with `zero_grad()`).
///
/// Parameters are named as PyTorch names those of a module whose i-th child is
/// `layers[i]`: `0.weight`, `0.bias`, `3.weight`, …
#[pyclass(name = "LayeredNeuralNetwork", module = "ocellus")]
pub struct Network {
    layers: Vec<Py<PyLayer>>,
    /// The output of each layer in the last forward pass.
    outputs: Vec<Tensor>,
}

impl Network {
    /// Every layer's engine chain, borrowed mutably for the duration of a pass.
    pub fn borrow_layers<'py>(&self, py: Python<'py>) -> PyResult<Vec<PyRefMut<'py, PyLayer>>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                layer.bind(py).try_borrow_mut().map_err(|_| {
                    PyRuntimeError::new_err(format!("layer {i} is in use by another call"))
                })
            })
            .collect()
    }

    /// The network's name for a parameter of layer `i` named `name` within the layer's
    /// engine chain (`0.weight`): `i.weight`.
    pub fn param_name(i: impl std::fmt::Display, engine_name: &str) -> String {
        format!("{i}.{}", own_name(engine_name))
    }

    /// Every parameter of every layer, in order, with the network's names (the layers are
    /// borrowed mutably only to reach their engine chains without locking).
    fn params<'a>(guards: &'a mut [PyRefMut<'_, PyLayer>]) -> Vec<(String, &'a Param)> {
        let mut out = Vec::new();
        for (i, g) in guards.iter_mut().enumerate() {
            let engine: &'a dyn Layer = &**g.engine_mut();
            for (name, p) in engine.params() {
                out.push((Self::param_name(i, &name), p));
            }
        }
        out
    }

    /// Runs `f`, with the GIL released, on the layers' chains moved into one engine
    /// network — which names a parameter `i.0.weight`, see [`Network::public_name`] — and
    /// moves them back into their layers afterwards.
    pub fn with_engine_network<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Sequential) -> R + Send,
    ) -> PyResult<R> {
        let mut guards = self.borrow_layers(py)?;
        let mut chains: Vec<&mut Box<dyn Layer>> =
            guards.iter_mut().map(|g| g.engine_mut()).collect();
        Ok(py.detach(|| {
            let mut whole = Sequential::new();
            for chain in chains.iter_mut() {
                whole.push(std::mem::replace(*chain, Box::new(Sequential::new())));
            }
            let result = f(&mut whole);
            for (chain, slot) in chains.iter_mut().zip(whole.layers_mut()) {
                std::mem::swap(*chain, slot);
            }
            result
        }))
    }

    /// The network's name for what [`Network::with_engine_network`] names `engine_name`:
    /// `i.0.weight` (layer i, the first of its chain) is `i.weight`.
    pub fn public_name(engine_name: &str) -> String {
        match engine_name.split_once('.') {
            Some((i, rest)) => Self::param_name(i, rest),
            None => engine_name.to_string(),
        }
    }

    /// [`Network::params`], mutable (an optimiser step, assigning values).
    pub fn params_mut<'a>(guards: &'a mut [PyRefMut<'_, PyLayer>]) -> Vec<(String, &'a mut Param)> {
        let mut out = Vec::new();
        for (i, g) in guards.iter_mut().enumerate() {
            for (name, p) in g.engine_mut().params_mut() {
                out.push((Self::param_name(i, &name), p));
            }
        }
        out
    }
}

#[pymethods]
impl Network {
    #[new]
    fn new(layers: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut held: Vec<Py<PyLayer>> = Vec::new();
        for (i, item) in layers.try_iter()?.enumerate() {
            let item = item?;
            let layer = item.cast::<PyLayer>().map_err(|_| {
                let type_name = item
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                PyTypeError::new_err(format!(
                    "layers[{i}] is a {type_name}, not an ocellus layer (ConvolutionalLayer, MaxPoolingLayer, …)"
                ))
            })?;
            if let Some(j) = held.iter().position(|h| h.as_ptr() == layer.as_ptr()) {
                return Err(PyValueError::new_err(format!(
                    "layers[{i}] is the same object as layers[{j}]: a layer keeps what its own backward needs, so each position needs its own layer"
                )));
            }
            held.push(layer.clone().unbind());
        }
        if held.is_empty() {
            return Err(PyValueError::new_err(
                "a LayeredNeuralNetwork needs at least one layer",
            ));
        }
        Ok(Network {
            layers: held,
            outputs: Vec::new(),
        })
    }

    /// The layers, in order (the objects themselves, not copies).
    #[getter]
    fn layers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.layers.iter().map(|l| l.clone_ref(py)))
    }

    /// The output of every layer in the last forward pass: `outputs[i]` is what `layers[i]`
    /// returned (copies); empty before the first forward.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let arrays = self
            .outputs
            .iter()
            .map(|t| array_from(py, t))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, arrays)
    }
    /// The network's output for `x`: each layer applied to the previous one's output.
    /// `mode` is "train" or "eval" (for Dropout and BatchNorm).
    #[pyo3(signature = (x, mode = "train"))]
    fn forward<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        mode: &str,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let x = tensor_from(x, "x")?;
        let mode = parse_mode(mode)?;
        let mut guards = self.borrow_layers(py)?;
        let classes: Vec<String> = guards.iter().map(|g| g.class_name().to_string()).collect();
        let mut chains: Vec<&mut Box<dyn Layer>> =
            guards.iter_mut().map(|g| g.engine_mut()).collect();
        let outputs = py
            .detach(|| {
                crate::on_worker(|| {
                    let mut outputs: Vec<Tensor> = Vec::with_capacity(chains.len());
                    let mut h = x;
                    for (i, chain) in chains.iter_mut().enumerate() {
                        // A clone is a second handle on the same values: `outputs` keeps them.
                        h = chain.forward(h, mode).map_err(|e| {
                            in_class(e, &classes[i]).in_layer(&format!("layer {i}"))
                        })?;
                        outputs.push(h.clone());
                    }
                    Ok::<_, ocellus::Error>(outputs)
                })
            })
            .or_py_err()?;
        drop(guards);
        let y = array_from(
            py,
            outputs.last().expect("a network has at least one layer"),
        )?;
        self.outputs = outputs;
        Ok(y)
    }
    /// Given dL/dy for the last forward's output, runs every layer's backward in reverse
    /// (each adds its parameter gradients) and returns dL/dx.
    fn backward<'py>(
        &mut self,
        py: Python<'py>,
        grad_output: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let dy = tensor_from(grad_output, "grad_output")?;
        let mut guards = self.borrow_layers(py)?;
        let classes: Vec<String> = guards.iter().map(|g| g.class_name().to_string()).collect();
        let mut chains: Vec<&mut Box<dyn Layer>> =
            guards.iter_mut().map(|g| g.engine_mut()).collect();
        let dx = py
            .detach(|| {
                crate::on_worker(|| {
                    let mut d = dy;
                    for (i, chain) in chains.iter_mut().enumerate().rev() {
                        d = chain.backward(d).map_err(|e| {
                            in_class(e, &classes[i]).in_layer(&format!("layer {i}"))
                        })?;
                    }
                    Ok::<_, ocellus::Error>(d)
                })
            })
            .or_py_err()?;
        array_from(py, &dx)
    }

    /// All parameters of all layers as one flat float32 vector, in the order of
    /// `named_parameters()` (a copy). Assign a vector of the same length to set them.
    #[getter]
    fn get_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let mut guards = self.borrow_layers(py)?;
        let params = Self::params(&mut guards);
        let values = flat_values(params.iter().map(|(_, p)| *p), false);
        array_of(py, &[values.len()], values)
    }

    #[setter]
    fn set_parameters(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut guards = self.borrow_layers(py)?;
        let params = Self::params_mut(&mut guards)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assign_params("LayeredNeuralNetwork", params, values)
    }

    /// The gradients of all layers, flat, in the order of `parameters` (a copy).
    #[getter]
    fn gradients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let mut guards = self.borrow_layers(py)?;
        let params = Self::params(&mut guards);
        let values = flat_values(params.iter().map(|(_, p)| *p), true);
        array_of(py, &[values.len()], values)
    }
    /// A dict from PyTorch's names (`0.weight`, `0.bias`, `3.weight`, …) to copies of the
    /// values, in PyTorch's layouts.
    fn named_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut guards = self.borrow_layers(py)?;
        let dict = PyDict::new(py);
        for (name, p) in Self::params(&mut guards) {
            dict.set_item(name, array_from(py, p.value())?)?;
        }
        Ok(dict)
    }
    /// The gradients by parameter name, shaped like the parameters (copies).
    fn named_gradients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut guards = self.borrow_layers(py)?;
        let dict = PyDict::new(py);
        for (name, p) in Self::params(&mut guards) {
            dict.set_item(name, array_from(py, p.grad())?)?;
        }
        Ok(dict)
    }
    /// Sets every parameter gradient of every layer to zero.
    fn zero_grad(&mut self, py: Python<'_>) -> PyResult<()> {
        for mut g in self.borrow_layers(py)? {
            g.engine_mut().zero_grad();
        }
        Ok(())
    }

    /// Writes every layer's parameters and buffers to a safetensors file under PyTorch's
    /// names (`0.weight`, `3.bias`, …), atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with_engine_network(py, |whole| {
            crate::checkpoint::save(whole, &path, Self::public_name)
        })?
        .or_py_err()
    }

    /// Reads parameters and buffers written by `save`: every tensor must be there with its
    /// shape, or nothing changes. A missing file is a FileNotFoundError; a file that is not
    /// such a checkpoint, or does not fit this network, a ValueError naming it.
    fn load(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with_engine_network(py, |whole| {
            crate::checkpoint::load(whole, &path, Self::public_name)
        })?
        .or_py_err()
    }

    /// The number of learnable values.
    #[getter]
    fn num_parameters(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self
            .borrow_layers(py)?
            .iter()
            .map(|g| g.engine().param_count())
            .sum())
    }

    fn __len__(&self) -> usize {
        self.layers.len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut lines = vec!["LayeredNeuralNetwork([".to_string()];
        for layer in &self.layers {
            lines.push(format!("    {},", layer.bind(py).try_borrow()?.repr));
        }
        lines.push("])".to_string());
        Ok(lines.join("\n"))
    }
}
