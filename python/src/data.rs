//! Data sets for `ocellus.train`: by name as `ocellus train --data` names them, or from
//! NumPy arrays; and `ocellus.datasets.patterns`, the built-in patterns as arrays.

use std::path::PathBuf;

use numpy::{PyArray1, PyArrayDyn};
use ocellus::Result;
use ocellus_data::{patterns, Dataset, Splits};
use ocellus_train::datasets;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::arrays::{array_from, tensor_from, OrPyErr};

pub use ocellus_train::datasets::FOLDER_IMAGE_SIZE;

/// Loads the data set `data` the way `ocellus train --data DATA --data-dir DIR` does;
/// folder data is split 80/20 into train and test by `seed`.
pub fn load_named(
    data: &str,
    data_dir: Option<&PathBuf>,
    image_size: [usize; 3],
    seed: u64,
) -> Result<Splits> {
    let settings = datasets::Settings {
        data: "data",
        data_dir: "data_dir",
    };
    datasets::load(
        data,
        data_dir.map(PathBuf::as_path),
        image_size,
        seed,
        settings,
    )
}

/// Class indices from a sequence or integer array.
pub fn labels_from(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<usize>> {
    let labels: Vec<i64> = value
        .call_method1("__array__", ())
        .and_then(|a| a.call_method0("tolist"))
        .and_then(|l| l.extract())
        .or_else(|_| value.extract())
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} must be a sequence or array of integer class indices"
            ))
        })?;
    labels
        .into_iter()
        .map(|l| {
            usize::try_from(l)
                .map_err(|_| to_value_error(format!("{what} must be class indices ≥ 0, got {l}")))
        })
        .collect()
}

fn to_value_error(message: String) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(message)
}

/// A data set over images `x` (N, C, H, W) with values in [0, 1] and labels `y`;
/// `classes` names the classes (default: "0", "1", … up to the largest label).
pub fn dataset_from(
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    classes: Option<&[String]>,
    what: &str,
) -> PyResult<Dataset> {
    let images = tensor_from(x, &format!("{what} images"))?;
    let labels = labels_from(y, &format!("{what} labels"))?;
    let classes = match classes {
        Some(c) => c.to_vec(),
        None => {
            let k = labels.iter().max().map_or(0, |m| m + 1);
            (0..k).map(|k| k.to_string()).collect()
        }
    };
    Dataset::new(images, labels, classes).or_py_err()
}

/// Images (N, C, H, W) float32 and their labels (N,) int64.
pub type LabelledArrays<'py> = (Bound<'py, PyArrayDyn<f32>>, Bound<'py, PyArray1<i64>>);

/// `(X, y)`: the images as float32 `(N, C, H, W)` and the labels as int64 `(N,)`.
pub fn arrays_of<'py>(py: Python<'py>, data: &Dataset) -> PyResult<LabelledArrays<'py>> {
    let labels: Vec<i64> = data.labels().iter().map(|&l| l as i64).collect();
    Ok((
        array_from(py, data.images())?,
        PyArray1::from_vec(py, labels),
    ))
}

/// patterns(n_per_class=100, seed=0)
///
/// The built-in patterns that `ocellus train` learns by default: `(X, y)` with X float32
/// `(N, 1, 28, 28)` in [0, 1] and y int64 class indices, `n_per_class` images of each
/// class, drawn from `seed`. The class names are `ocellus.datasets.PATTERN_CLASSES`.
#[pyfunction(name = "patterns")]
#[pyo3(signature = (n_per_class = 100, seed = 0))]
pub fn pattern_arrays<'py>(
    py: Python<'py>,
    n_per_class: usize,
    seed: u64,
) -> PyResult<LabelledArrays<'py>> {
    let data = py.detach(|| patterns::generate_set(n_per_class, seed));
    arrays_of(py, &data)
}

/// The class names of the built-in patterns, by class index.
#[pyfunction]
pub fn pattern_classes() -> Vec<String> {
    patterns::Pattern::ALL
        .iter()
        .map(|p| p.name().to_string())
        .collect()
}
