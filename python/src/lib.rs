//! The Python package `ocellus`: the lecture's layer classes (`ConvolutionalLayer`,
//! `MaxPoolingLayer`, `FlattenLayer`, `FullyConnectedLayer`, `LinearLayer`,
//! `LayeredNeuralNetwork`), ocellus's layers under PyTorch's names, its blocks (residual,
//! concatenating, dense, …), losses and optimisers, on NumPy arrays.
//! Every computation is the engine's (`ocellus`); this crate converts arrays, names
//! parameters as PyTorch does, and turns ocellus errors into Python exceptions.
//!
//! Built by maturin (`pip install ./python`) as `ocellus._ocellus`; `python/ocellus/`
//! holds the pure-Python part (`finite_difference_gradient`) and the type stubs.

mod arrays;
mod blocks;
mod check;
mod checkpoint;
mod data;
mod layers;
mod network;
mod run;
mod train;

use pyo3::prelude::*;

/// Runs `f` on a worker of the thread pool and waits for it: its parallel sections then
/// hand work to the other workers, instead of each waking one and putting the calling
/// (Python) thread to sleep, as `ocellus` runs its commands. For work that calls no
/// Python.
pub(crate) fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[pymodule]
#[pyo3(name = "_ocellus")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<layers::PyLayer>()?;
    // The lecture's classes.
    m.add_class::<layers::ConvolutionalLayer>()?;
    m.add_class::<layers::MaxPoolingLayer>()?;
    m.add_class::<layers::FlattenLayer>()?;
    m.add_class::<layers::FullyConnectedLayer>()?;
    m.add_class::<layers::LinearLayer>()?;
    m.add_class::<network::Network>()?;
    // ocellus's layers under PyTorch's names.
    m.add_class::<layers::PyConv2d>()?;
    m.add_class::<layers::MaxPool2d>()?;
    m.add_class::<layers::PyAvgPool2d>()?;
    m.add_class::<layers::GlobalAvgPool>()?;
    m.add_class::<layers::Flatten>()?;
    m.add_class::<layers::Linear>()?;
    m.add_class::<layers::ReLU>()?;
    m.add_class::<layers::LeakyReLU>()?;
    m.add_class::<layers::Sigmoid>()?;
    m.add_class::<layers::Tanh>()?;
    m.add_class::<layers::PyDropout>()?;
    m.add_class::<layers::PyBatchNorm2d>()?;
    m.add_class::<layers::PyBatchNorm1d>()?;
    m.add_class::<layers::PySoftmax>()?;
    m.add_class::<layers::SiLU>()?;
    m.add_class::<layers::Hardswish>()?;
    m.add_class::<layers::PyConvTranspose2d>()?;
    m.add_class::<layers::PyUpsample>()?;
    // Blocks: small networks acting as one layer.
    m.add_class::<blocks::Residual>()?;
    m.add_class::<blocks::Concat>()?;
    m.add_class::<blocks::Dense>()?;
    m.add_class::<blocks::BasicBlock>()?;
    m.add_class::<blocks::Bottleneck>()?;
    m.add_class::<blocks::DenseBlock>()?;
    m.add_class::<blocks::SqueezeExcite>()?;
    m.add_class::<blocks::MbConv>()?;
    m.add_class::<blocks::SeparableConv2d>()?;
    // Gradient checking.
    m.add_class::<check::TensorCheck>()?;
    m.add_class::<check::Report>()?;
    m.add_function(wrap_pyfunction!(check::gradcheck, m)?)?;
    m.add_function(wrap_pyfunction!(layers::manual_seed, m)?)?;
    // Training by hand: losses and optimisers.
    m.add_function(wrap_pyfunction!(train::cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(train::mse_loss, m)?)?;
    m.add_class::<train::PyOptimizer>()?;
    m.add_class::<train::PySgd>()?;
    m.add_class::<train::Adam>()?;
    m.add_class::<train::AdamW>()?;
    // Training runs, as `ocellus train` keeps them.
    m.add_function(wrap_pyfunction!(run::start_training, m)?)?;
    m.add_class::<run::Training>()?;
    m.add_class::<run::PyRun>()?;
    m.add_function(wrap_pyfunction!(run::comparison_table, m)?)?;
    m.add_function(wrap_pyfunction!(run::shift_description, m)?)?;
    m.add_class::<run::PySummary>()?;
    m.add_function(wrap_pyfunction!(run::summary, m)?)?;
    m.add_function(wrap_pyfunction!(data::pattern_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(data::pattern_classes, m)?)?;
    Ok(())
}
