//! NumPy arrays in and out, and ocellus errors as Python exceptions.
//!
//! Arrays come in as float32 or float64, C-contiguous (float64 is converted to float32,
//! the engine's type); anything else is refused with a `ValueError` saying what to pass.
//! Arrays go out as new float32 arrays that own their values.

use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use ocellus::{Error, Tensor};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// The Python exception for an ocellus error, carrying ocellus's message: `ValueError`
/// for shapes, settings and file contents, `FileNotFoundError`/`OSError` for files,
/// `RuntimeError` for a call out of order (backward before forward) or a diverged run.
pub fn to_py_err(err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::Shape { .. } | Error::Config { .. } | Error::Format { .. } => {
            PyValueError::new_err(message)
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        Error::BackwardBeforeForward { .. }
        | Error::Interrupted { .. }
        | Error::Diverged { .. } => PyRuntimeError::new_err(message),
    }
}

/// `Result<T, ocellus::Error>` → `PyResult<T>`.
pub trait OrPyErr<T> {
    fn or_py_err(self) -> PyResult<T>;
}

impl<T> OrPyErr<T> for ocellus::Result<T> {
    fn or_py_err(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

/// The values of a float32 or float64 C-contiguous array as a tensor of its shape;
/// `what` names the argument in errors (`"x"`, `"grad_output"`).
pub fn tensor_from(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    let Ok(array) = value.cast::<PyUntypedArray>() else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a numpy array of float32 or float64, got {}",
            value.get_type().name()?
        )));
    };
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{what} is not C-contiguous (a transposed or strided view?): pass np.ascontiguousarray({what})"
        )));
    }
    let shape = array.shape().to_vec();
    let data = if let Ok(a) = value.cast::<PyArrayDyn<f32>>() {
        a.readonly().as_slice()?.to_vec()
    } else if let Ok(a) = value.cast::<PyArrayDyn<f64>>() {
        a.readonly().as_slice()?.iter().map(|&v| v as f32).collect()
    } else {
        return Err(PyValueError::new_err(format!(
            "{what} has dtype {}, but ocellus computes in float32: pass {what}.astype(np.float32)",
            array.dtype()
        )));
    };
    Tensor::from_vec(&shape, data).or_py_err()
}

/// A new float32 array with the tensor's shape and values.
pub fn array_from<'py>(py: Python<'py>, tensor: &Tensor) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    array_of(py, tensor.shape(), tensor.data().to_vec())
}

/// A new float32 array of `shape` holding `values` (row-major).
pub fn array_of<'py>(
    py: Python<'py>,
    shape: &[usize],
    values: Vec<f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    numpy::PyArray1::from_vec(py, values).reshape(shape)
}
