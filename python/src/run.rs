//! Training runs from Python. `ocellus.train` (in `ocellus/__init__.py`) starts a run of
//! ocellus-train — the run directory, checkpoints and metrics `ocellus train` writes —
//! through [`start_training`], and trains it one epoch per [`Training::train_epoch`];
//! [`PyRun`] opens a run directory to evaluate, predict, look inside and report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use numpy::{PyArray2, PyArrayDyn, PyArrayMethods};
use ocellus::arch::Architecture;
use ocellus::checkpoint::{load_state_dict, state_dict, write_atomically};
use ocellus::layers::Layer;
use ocellus::network::{Replicas, Sequential};
use ocellus::{loss, zoo, Error, LayerExt, Tensor};
use ocellus_data::{Dataset, Splits};
use ocellus_train::run::{
    load_model, read_config, read_metrics, EpochRecord, ModelInfo, Run, RunConfig,
};
use ocellus_train::trainer::{self, Evaluation};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{array_from, tensor_from, OrPyErr};
use crate::data::{dataset_from, load_named, FOLDER_IMAGE_SIZE};
use crate::network::Network;

/// The `data` a run trained on NumPy arrays records in its `config.json`.
const ARRAYS: &str = "arrays";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A JSON text as Python objects (dicts, lists, numbers).
fn from_json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

fn record_dict<'py>(py: Python<'py>, record: &EpochRecord) -> PyResult<Bound<'py, PyAny>> {
    from_json(py, &serde_json::to_string(record).expect("serialisable"))
}

/// True when `model` names a file or a directory rather than a zoo model (as `ocellus
/// train --model`).
fn is_file(model: &str) -> bool {
    model.ends_with(".toml")
        || model.ends_with(".json")
        || model.ends_with(".safetensors")
        || Path::new(model).exists()
}

/// The architecture `model` names — a zoo model, an architecture file, or the architecture
/// stored in a model file or run directory — for `image` = (C, H, W) and `classes`.
fn named_architecture(
    model: &str,
    image: [usize; 3],
    classes: usize,
) -> ocellus::Result<Architecture> {
    if !is_file(model) {
        return zoo::model(model, image, classes);
    }
    let path = Path::new(model);
    let is_model = path.is_dir()
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let arch = if is_model {
        load_model(path)?.1.architecture
    } else {
        Architecture::from_file(path)?
    };
    check_fits(&arch, model, image, classes)?;
    Ok(arch)
}

/// An architecture must take the data's images and give one score per class.
fn check_fits(
    arch: &Architecture,
    model: &str,
    image: [usize; 3],
    classes: usize,
) -> ocellus::Result<()> {
    if arch.input != image {
        return Err(Error::Format {
            path: model.into(),
            message: format!(
                "input = {:?} but the data's images are {}×{}×{} (C×H×W)",
                arch.input, image[0], image[1], image[2]
            ),
        });
    }
    let shape = arch.output_shape()?;
    if shape != [1, classes] {
        return Err(Error::Format {
            path: model.into(),
            message: format!(
                "the network outputs {} but the data has {classes} classes: the last layer should be a linear layer with out_features = {classes}",
                ocellus::tensor::shape_str(&shape[1..])
            ),
        });
    }
    Ok(())
}

/// A training run under way: the run of ocellus-train, and the LayeredNeuralNetwork it
/// started from (which gets the trained weights back), if any.
#[pyclass(name = "_Training", module = "ocellus")]
pub struct Training {
    /// `None` once closed (the run directory's lock is then released).
    run: Mutex<Option<Run>>,
    /// Set when Ctrl-C arrives during a step: the epoch stops after it.
    stop: Arc<AtomicBool>,
    network: Option<Py<Network>>,
    /// The test set before normalisation, for the `Run` returned.
    raw_test: Dataset,
}

/// Starts a run in `out` (see `ocellus.train` for the arguments).
#[pyfunction]
#[pyo3(signature = (
    out, model, data, data_dir, image_size, arrays, test_arrays, classes, epochs, batch_size,
    optimizer, lr, weight_decay, momentum, schedule, seed, val_fraction, augment,
    label_smoothing, limit_train, diagnostics_every
))]
#[allow(clippy::too_many_arguments)]
pub fn start_training(
    py: Python<'_>,
    out: PathBuf,
    model: &Bound<'_, PyAny>,
    data: String,
    data_dir: Option<PathBuf>,
    image_size: Option<[usize; 3]>,
    arrays: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
    test_arrays: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
    classes: Option<Vec<String>>,
    epochs: usize,
    batch_size: usize,
    optimizer: String,
    lr: f32,
    weight_decay: Option<f32>,
    momentum: f32,
    schedule: String,
    seed: u64,
    val_fraction: f32,
    augment: bool,
    label_smoothing: f32,
    limit_train: Option<usize>,
    diagnostics_every: Option<usize>,
) -> PyResult<Training> {
    let splits = match &arrays {
        Some((x, y)) => {
            let mut train = dataset_from(x, y, classes.as_deref(), "training")?;
            let test = match &test_arrays {
                Some((tx, ty)) => {
                    let names = train.classes().to_vec();
                    dataset_from(tx, ty, Some(&names), "test")?
                }
                None => train.split_off_validation(0.2, seed).or_py_err()?,
            };
            Splits { train, test }
        }
        None => {
            let image_size = match (
                image_size,
                model.extract::<PathBuf>().map(|p| p.display().to_string()),
            ) {
                (Some(size), _) => size,
                (None, Ok(m)) if data == "folder" && is_file(&m) && !Path::new(&m).is_dir() => {
                    Architecture::from_file(Path::new(&m)).or_py_err()?.input
                }
                _ => FOLDER_IMAGE_SIZE,
            };
            py.detach(|| load_named(&data, data_dir.as_ref(), image_size, seed))
                .or_py_err()?
        }
    };
    let (c, h, w) = splits.train.image_shape();
    let k = splits.train.num_classes();
    let network = model.cast::<Network>().ok().map(|n| n.clone().unbind());
    let (architecture, model_name) = match &network {
        Some(net) => {
            let spec = net
                .bind(py)
                .borrow()
                .with_engine_network(py, |whole| whole.spec())?;
            let ocellus::arch::LayerSpec::Sequential { layers } = spec else {
                unreachable!("a network's spec is a sequence")
            };
            let arch = Architecture {
                name: Some("LayeredNeuralNetwork".into()),
                input: [c, h, w],
                layers,
            };
            check_fits(&arch, "the LayeredNeuralNetwork", [c, h, w], k).or_py_err()?;
            (arch, "LayeredNeuralNetwork".to_string())
        }
        None => {
            let name: PathBuf = model.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "model must be a zoo name, an architecture file or a LayeredNeuralNetwork, got {}",
                    model.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                ))
            })?;
            let name = name.display().to_string();
            (named_architecture(&name, [c, h, w], k).or_py_err()?, name)
        }
    };
    let config = RunConfig {
        model: model_name,
        data: if arrays.is_some() {
            ARRAYS.into()
        } else {
            data
        },
        data_dir: data_dir.map(|d| d.display().to_string()),
        image_size: image_size.unwrap_or([c, h, w]),
        epochs,
        batch_size,
        optimizer,
        lr,
        weight_decay,
        momentum,
        schedule,
        seed,
        val_fraction,
        augment_pad: if augment { 4 } else { 0 },
        augment_flip: augment,
        label_smoothing,
        limit_train,
        diagnostics_every,
        ..RunConfig::default()
    };
    let raw_test = splits.test.clone();
    let mut run = py
        .detach(|| Run::start(&out, config, architecture, splits))
        .or_py_err()?;
    if let Some(net) = &network {
        // Train the network's own weights, not the fresh ones the run was built with.
        let tensors = net
            .bind(py)
            .borrow()
            .with_engine_network(py, |whole| state_dict(whole))?;
        load_state_dict(
            &mut run.model,
            &tensors,
            Path::new("the LayeredNeuralNetwork"),
        )
        .or_py_err()?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    run.stop_when(stop.clone());
    Ok(Training {
        run: Mutex::new(Some(run)),
        stop,
        network,
        raw_test,
    })
}

impl Training {
    fn with_run<R>(&self, f: impl FnOnce(&mut Run) -> PyResult<R>) -> PyResult<R> {
        let mut guard = lock(&self.run);
        let run = guard
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("the training run is closed"))?;
        f(run)
    }
}

#[pymethods]
impl Training {
    /// Epochs trained so far.
    #[getter]
    fn epochs_done(&self) -> PyResult<usize> {
        self.with_run(|run| Ok(run.epochs_done()))
    }

    /// The run directory.
    #[getter]
    fn dir(&self) -> PyResult<PathBuf> {
        self.with_run(|run| Ok(run.dir.clone()))
    }

    /// What is trained on what, as `ocellus train` prints it first.
    fn describe(&self) -> PyResult<String> {
        self.with_run(|run| {
            let (c, h, w) = run.train.image_shape();
            Ok(format!(
                "{} ({} parameters) on {}: {} train / {} {} images of {c}×{h}×{w}, {} classes\n{}, batch {}, {} epochs; run directory {}",
                run.info.architecture.name.as_deref().unwrap_or(&run.config.model),
                run.model.param_count(),
                run.config.data,
                run.train.len(),
                run.val.len(),
                run.eval_name(),
                run.train.num_classes(),
                run.optimizer.describe(),
                run.config.batch_size,
                run.config.epochs,
                run.dir.display()
            ))
        })
    }

    /// Trains one epoch (GIL released), validates, writes the checkpoint and the metrics
    /// line; returns the metrics line as a dict. Ctrl-C stops the epoch after the step
    /// under way and raises KeyboardInterrupt; the last checkpoint is intact.
    ///
    /// The epoch runs on a worker of the thread pool, as `ocellus train` runs it: each
    /// parallel section then hands work to the other workers, instead of waking one and
    /// putting the calling thread to sleep. This thread meanwhile checks for Ctrl-C —
    /// signals reach Python only in the main thread, with the GIL held.
    fn train_epoch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stop = &self.stop;
        let record = self.with_run(|run| {
            let mut interrupt: Option<PyErr> = None;
            let result = py.detach(|| {
                std::thread::scope(|s| {
                    let caller = std::thread::current();
                    let epoch = s.spawn(move || {
                        let result = crate::on_worker(|| run.train_epoch(&mut |_| {}));
                        caller.unpark();
                        result
                    });
                    while !epoch.is_finished() {
                        std::thread::park_timeout(std::time::Duration::from_millis(50));
                        if interrupt.is_none() {
                            if let Err(e) = Python::attach(|py| py.check_signals()) {
                                interrupt = Some(e);
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    epoch
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
            });
            match (result, interrupt) {
                (Ok(record), None) => Ok(record),
                // Ctrl-C stopped the epoch, or came as its last step ended: the epoch's
                // checkpoint is written either way.
                (Ok(_) | Err(Error::Interrupted { .. }), Some(e)) => {
                    stop.store(false, Ordering::Relaxed);
                    Err(e)
                }
                (Err(e), _) => Err(crate::arrays::to_py_err(e)),
            }
        })?;
        record_dict(py, &record)
    }

    /// Evaluates on the test set, draws `confusion.png`, gives the trained weights back
    /// to the LayeredNeuralNetwork trained (if any) and releases the run directory.
    /// Returns the test set before normalisation, as arrays and class names.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.with_run(|run| py.detach(|| run.finish()).or_py_err().map(|_| ()))?;
        self.close(py)?;
        let (x, y) = crate::data::arrays_of(py, &self.raw_test)?;
        (x, y, self.raw_test.classes().to_vec())
            .into_pyobject(py)
            .map(|t| t.into_any())
    }

    /// Evaluates on the test set and on it shifted by each of `shifts` pixels (as
    /// `ocellus compare`), then closes the run; returns the model's line of a comparison
    /// as a dict, with the setting (train/test images, optimiser, threads) under "setting".
    fn measure<'py>(&self, py: Python<'py>, shifts: Vec<usize>) -> PyResult<Bound<'py, PyAny>> {
        let (result, setting) = self.with_run(|run| {
            let result = py
                .detach(|| ocellus_train::compare::measure(run, &shifts))
                .or_py_err()?;
            let setting = serde_json::json!({
                "train_images": run.train.len(),
                "test_images": run.test.len(),
                "optimizer": run.optimizer.describe(),
                "threads": rayon::current_num_threads(),
            });
            Ok((result, setting))
        })?;
        self.close(py)?;
        let mut value = serde_json::to_value(&result).expect("serialisable");
        value["setting"] = setting;
        from_json(py, &value.to_string())
    }

    /// Gives the weights of the last checkpointed epoch to the LayeredNeuralNetwork trained
    /// (if any) and releases the run directory.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(run) = lock(&self.run).take() else {
            return Ok(());
        };
        if let (Some(net), true) = (&self.network, run.epochs_done() > 0) {
            let (model, _) = load_model(&run.dir).or_py_err()?;
            let tensors = state_dict(&model);
            net.bind(py)
                .borrow()
                .with_engine_network(py, |whole| {
                    load_state_dict(whole, &tensors, Path::new("the run"))
                })?
                .or_py_err()?;
        }
        Ok(())
    }
}

/// A training run's directory, as `ocellus train` and `ocellus.train` write it: the
/// trained model, its settings and metrics, and what can be done with them.
///
/// `Run.load(dir)` opens one; `ocellus.train` returns one. Images given to `predict`,
/// `feature_maps` and `saliency` have values in [0, 1], as the data set's; they are
/// normalised with the run's stored statistics, as `ocellus predict` does.
#[pyclass(name = "Run", module = "ocellus")]
pub struct PyRun {
    dir: PathBuf,
    config: RunConfig,
    info: ModelInfo,
    model: Mutex<Sequential>,
    /// The test set before normalisation, loaded when first needed.
    test: Mutex<Option<Dataset>>,
}

impl PyRun {
    /// The test set (raw): `data` = (X, y) when given, else the run's own.
    fn test_set(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Dataset> {
        if let Some(data) = data {
            let (x, y): (Bound<'_, PyAny>, Bound<'_, PyAny>) = data.extract().map_err(|_| {
                PyTypeError::new_err("data must be a pair (X, y) of images and labels")
            })?;
            return dataset_from(&x, &y, Some(&self.info.classes), "test");
        }
        let mut cached = lock(&self.test);
        if let Some(test) = cached.as_ref() {
            return Ok(test.clone());
        }
        if self.config.data == ARRAYS {
            return Err(PyValueError::new_err(format!(
                "{} was trained on arrays, which a run directory does not keep: pass data=(X, y)",
                self.dir.display()
            )));
        }
        let data_dir = self.config.data_dir.as_ref().map(PathBuf::from);
        let splits = py
            .detach(|| {
                load_named(
                    &self.config.data,
                    data_dir.as_ref(),
                    self.config.image_size,
                    self.config.seed,
                )
            })
            .or_py_err()?;
        *cached = Some(splits.test.clone());
        Ok(splits.test)
    }

    /// Images in [0, 1], (N, C, H, W) or one (C, H, W), normalised as the run's data was.
    fn normalised(&self, images: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
        let mut x = tensor_from(images, what)?;
        let [c, h, w] = self.info.architecture.input;
        if x.shape() == [c, h, w] {
            x = x.reshape(&[1, c, h, w]).or_py_err()?;
        }
        if x.shape().len() != 4 || x.shape()[1..] != [c, h, w] {
            return Err(PyValueError::new_err(format!(
                "{what} must be (N, {c}, {h}, {w}) or ({c}, {h}, {w}), got {}",
                ocellus::tensor::shape_str(x.shape())
            )));
        }
        self.info.normalization.apply_to_batch(&mut x).or_py_err()?;
        Ok(x)
    }

    fn one_image(&self, image: &Bound<'_, PyAny>) -> PyResult<Tensor> {
        let x = self.normalised(image, "image")?;
        if x.shape()[0] != 1 {
            return Err(PyValueError::new_err(format!(
                "image must be one image, (C, H, W) or (1, C, H, W), got {}",
                ocellus::tensor::shape_str(x.shape())
            )));
        }
        Ok(x)
    }

    fn evaluation(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Evaluation> {
        let mut test = self.test_set(py, data)?;
        let mut guard = lock(&self.model);
        let model: &mut Sequential = &mut guard;
        let batch = self.config.batch_size.max(256);
        py.detach(|| {
            self.info.normalization.apply(&mut test)?;
            trainer::evaluate(model, &test, batch)
        })
        .or_py_err()
    }
}

#[pymethods]
impl PyRun {
    /// Opens the run in `dir` (a directory written by `ocellus train` or `ocellus.train`).
    #[staticmethod]
    fn load(py: Python<'_>, dir: PathBuf) -> PyResult<PyRun> {
        let (config, (model, info)) = py
            .detach(|| Ok((read_config(&dir)?, load_model(&dir)?)))
            .or_py_err()?;
        Ok(PyRun {
            dir,
            config,
            info,
            model: Mutex::new(model),
            test: Mutex::new(None),
        })
    }

    /// Attaches the test set (raw images in [0, 1] and labels) used by `evaluate` and
    /// `report` by default.
    fn _set_test(&self, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<()> {
        *lock(&self.test) = Some(dataset_from(x, y, Some(&self.info.classes), "test")?);
        Ok(())
    }

    /// The run directory.
    #[getter]
    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The class names, by class index.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.info.classes.clone()
    }

    /// Epochs trained.
    #[getter]
    fn epochs(&self) -> usize {
        self.info.epoch
    }

    /// The run's settings (`config.json`) as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json(
            py,
            &serde_json::to_string(&self.config).expect("serialisable"),
        )
    }

    /// The architecture, as TOML (an architecture file `ocellus.train(model=…)` takes).
    #[getter]
    fn architecture(&self) -> String {
        self.info.architecture.to_toml()
    }

    /// One dict per epoch (`metrics.jsonl`): epoch, train_loss, train_accuracy,
    /// val_loss, val_accuracy (on the test set unless a validation split was held out),
    /// lr, seconds, images_per_second.
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let records = read_metrics(&self.dir).or_py_err()?;
        let list = PyList::empty(py);
        for record in &records {
            list.append(record_dict(py, record)?)?;
        }
        Ok(list)
    }

    /// The gradient-flow diagnostics of the run (trained with `diagnostics_every`): a dict
    /// per diagnosed step — epoch, step, batch, images, loss, lr and `layers`, a dict per
    /// top-level layer (name, kind, output_shape, input_grad_norm, output_mean,
    /// output_std, dead_fraction, param_norm, grad_norm, update_ratio, params); as
    /// `diagnostics.jsonl` holds them. Empty for a run trained without diagnostics.
    #[getter]
    fn diagnostics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let records = ocellus_train::diagnostics::run_diagnostics(&self.dir).or_py_err()?;
        let text = serde_json::to_string(&records)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Evaluates on the test set (or on `data` = (X, y)): a dict with `accuracy`, `loss`,
    /// `confusion` (K, K) int64 (`confusion[true, predicted]`) and `predictions` (N,).
    #[pyo3(signature = (data = None))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        data: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let e = self.evaluation(py, data)?;
        let k = e.confusion.len();
        let confusion: Vec<i64> = e.confusion.iter().flatten().map(|&n| n as i64).collect();
        let confusion = numpy::PyArray1::from_vec(py, confusion).reshape([k, k])?;
        let predictions: Vec<i64> = e.predictions.iter().map(|&p| p as i64).collect();
        let dict = PyDict::new(py);
        dict.set_item("accuracy", e.accuracy)?;
        dict.set_item("loss", e.loss)?;
        dict.set_item("confusion", confusion)?;
        dict.set_item("predictions", numpy::PyArray1::from_vec(py, predictions))?;
        Ok(dict)
    }

    /// Class probabilities (softmax of the logits), (N, K) float32, for `images` (N, C, H, W)
    /// or one image (C, H, W) with values in [0, 1].
    fn predict<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x = self.normalised(images, "images")?;
        let mut guard = lock(&self.model);
        let model: &mut Sequential = &mut guard;
        let probabilities = py
            .detach(|| loss::softmax(&Replicas::new().forward(model, &x)?))
            .or_py_err()?;
        let [n, k] = <[usize; 2]>::try_from(probabilities.shape()).expect("(N, K) logits");
        numpy::PyArray1::from_vec(py, probabilities.into_vec()).reshape([n, k])
    }

    /// The output of every convolution, pooling layer and block for one image (C, H, W):
    /// a dict from the layer's name (`"0"`, `"3.main.0"`) to its maps (C, H, W); with
    /// `activations`, the activations after them too.
    #[pyo3(signature = (image, activations = false))]
    fn feature_maps<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
        activations: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let x = self.one_image(image)?;
        let mut guard = lock(&self.model);
        let model: &mut Sequential = &mut guard;
        let maps = py
            .detach(|| ocellus_viz::inspect::feature_maps(model, &x, activations))
            .or_py_err()?;
        let dict = PyDict::new(py);
        for m in &maps {
            dict.set_item(&m.name, array_from(py, &m.maps)?)?;
        }
        Ok(dict)
    }

    /// The weights of the convolution named `layer` (default: the first), (OC, IC, KH, KW).
    #[pyo3(signature = (layer = None))]
    fn filters<'py>(
        &self,
        py: Python<'py>,
        layer: Option<&str>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let model = lock(&self.model);
        let (_, weight) = ocellus_viz::inspect::find_conv(&*model, layer).or_py_err()?;
        array_from(py, weight)
    }

    /// The saliency map of one image (C, H, W) for class `target` (default: the predicted
    /// one): |∂ score_target / ∂x| maximised over channels, (H, W) float32.
    #[pyo3(signature = (image, target = None))]
    fn saliency<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
        target: Option<usize>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let x = self.one_image(image)?;
        let mut guard = lock(&self.model);
        let model: &mut Sequential = &mut guard;
        let s = py
            .detach(|| ocellus_viz::inspect::saliency(model, &x, target))
            .or_py_err()?;
        array_from(py, &s.map)
    }

    /// Draws the image and its feature maps (as `ocellus viz --what features`) into the PNG
    /// file `path`, at most `max_maps` maps per layer.
    #[pyo3(signature = (image, path, max_maps = 16))]
    fn save_feature_maps(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        path: PathBuf,
        max_maps: usize,
    ) -> PyResult<()> {
        let x = self.one_image(image)?;
        let seen = tensor_from(image, "image")?;
        let mut guard = lock(&self.model);
        let model: &mut Sequential = &mut guard;
        py.detach(|| {
            let maps = ocellus_viz::inspect::feature_maps(model, &x, false)?;
            let tile = ocellus_viz::Tile::from_tensor(&seen)?;
            let title = format!("Feature maps of {}", self.config.model);
            ocellus_viz::inspect::feature_maps_picture(&title, &tile, &maps, max_maps)
                .save_png(&path)
        })
        .or_py_err()
    }

    /// Draws the filters of the convolution `layer` (default: the first) into the PNG
    /// file `path`, as `ocellus viz --what filters`.
    #[pyo3(signature = (path, layer = None))]
    fn save_filters(&self, path: PathBuf, layer: Option<&str>) -> PyResult<()> {
        let model = lock(&self.model);
        ocellus_viz::inspect::filters_picture(&*model, layer, Default::default())
            .and_then(|picture| picture.save_png(&path))
            .or_py_err()
    }

    /// The HTML report of the run, as `ocellus report` writes it (every picture
    /// embedded); written to `path` too when given.
    #[pyo3(signature = (path = None))]
    fn report(&self, py: Python<'_>, path: Option<PathBuf>) -> PyResult<String> {
        let test = self.test_set(py, None)?;
        let metrics = read_metrics(&self.dir).or_py_err()?;
        let diagnostics = ocellus_train::diagnostics::run_diagnostics(&self.dir).or_py_err()?;
        let name = self
            .dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| self.dir.display().to_string());
        let mut guard = lock(&self.model);
        let model: &mut Sequential = &mut guard;
        let page = py
            .detach(|| {
                ocellus_report::html(
                    model,
                    &ocellus_report::RunReport {
                        name: &name,
                        config: &self.config,
                        info: &self.info,
                        metrics: &metrics,
                        test: &test,
                        diagnostics: &diagnostics,
                    },
                )
            })
            .or_py_err()?;
        if let Some(path) = path {
            write_atomically(&path, page.as_bytes()).or_py_err()?;
        }
        Ok(page)
    }

    /// The report, shown by Jupyter.
    fn _repr_html_(&self, py: Python<'_>) -> PyResult<String> {
        self.report(py, None)
    }

    fn __repr__(&self) -> String {
        format!(
            "Run('{}': {} on {}, {} epochs)",
            self.dir.display(),
            self.config.model,
            self.config.data,
            self.info.epoch
        )
    }
}

/// The table of a comparison (a dict shaped as `ocellus compare` writes `compare.json`),
/// as `ocellus compare` prints it.
#[pyfunction]
pub fn comparison_table(comparison: &str) -> PyResult<String> {
    let comparison: ocellus_train::compare::Comparison = serde_json::from_str(comparison)
        .map_err(|e| PyValueError::new_err(format!("not a comparison: {e}")))?;
    Ok(comparison.table())
}

/// What `ocellus compare` says a shift is.
#[pyfunction]
pub fn shift_description() -> &'static str {
    ocellus_train::compare::SHIFT_DESCRIPTION
}

/// The layer table of a network for one input: `rows` (a dict per layer), totals, and
/// the table as text (`str`) or HTML (`_repr_html_`, shown by Jupyter).
#[pyclass(name = "Summary", module = "ocellus")]
pub struct PySummary {
    summary: ocellus::summary::Summary,
}

#[pymethods]
impl PySummary {
    /// One dict per row: name, depth (0 for the network's layers, 1 inside a block…),
    /// kind, description, output_shape (batch included), params, macs,
    /// receptive_field (H, W), jump (H, W), activation_bytes, is_block.
    #[getter]
    fn rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for row in &self.summary.rows {
            let d = PyDict::new(py);
            d.set_item("name", &row.name)?;
            d.set_item("depth", row.depth)?;
            d.set_item("kind", &row.kind)?;
            d.set_item("description", &row.description)?;
            d.set_item("output_shape", row.output_shape.clone())?;
            d.set_item("params", row.params)?;
            d.set_item("macs", row.macs)?;
            let [h, w] = row.receptive_field;
            d.set_item("receptive_field", (h.size, w.size))?;
            d.set_item("jump", (h.jump, w.jump))?;
            d.set_item("activation_bytes", row.activation_bytes)?;
            d.set_item("is_block", row.is_block)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Learnable values of the whole network.
    #[getter]
    fn total_params(&self) -> usize {
        self.summary.total_params
    }

    /// Multiply-adds of one forward pass over the input batch.
    #[getter]
    fn total_macs(&self) -> u64 {
        self.summary.total_macs
    }

    /// The input shape (N, C, H, W).
    #[getter]
    fn input(&self) -> Vec<usize> {
        self.summary.input.clone()
    }

    fn __str__(&self) -> String {
        self.summary.to_string()
    }

    fn __repr__(&self) -> String {
        self.summary.to_string()
    }

    fn _repr_html_(&self) -> String {
        use ocellus_report::escape_html;
        let mut html = String::from("<table><thead><tr>");
        for column in ocellus::summary::COLUMNS {
            html += &format!("<th>{}</th>", escape_html(column));
        }
        html += "</tr></thead><tbody>";
        for row in &self.summary.rows {
            html += "<tr>";
            for (i, cell) in row.cells().iter().enumerate() {
                let indent = if i == 0 { row.depth as f32 * 1.5 } else { 0.0 };
                html += &format!(
                    "<td style=\"padding-left:{indent}em\">{}</td>",
                    escape_html(cell)
                );
            }
            html += "</tr>";
        }
        html += &format!(
            "</tbody></table><p>{} parameters, {} multiply-adds for input {}</p>",
            self.summary.total_params,
            self.summary.total_macs,
            ocellus::tensor::shape_str(&self.summary.input)
        );
        html
    }
}

/// summary(model, input=None)
///
/// The layer table of `model` (a zoo name, an architecture file, a run directory, a
/// `Run` or a LayeredNeuralNetwork) for `input` = (C, H, W) (default: the file's or run's
/// input; (1, 28, 28) for a zoo model; required for a LayeredNeuralNetwork), batch 1:
/// output shapes, parameters, multiply-adds, receptive fields and activation memory per
/// layer, as `ocellus summary` prints it.
#[pyfunction]
#[pyo3(signature = (model, input = None))]
pub fn summary(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    input: Option<[usize; 3]>,
) -> PyResult<PySummary> {
    let of = |net: &Sequential, [c, h, w]: [usize; 3]| {
        ocellus::summary::Summary::of(net, &[1, c, h, w]).or_py_err()
    };
    if let Ok(network) = model.cast::<Network>() {
        let [c, h, w] = input.ok_or_else(|| {
            PyValueError::new_err("a LayeredNeuralNetwork's summary needs input=(C, H, W)")
        })?;
        let summary = network
            .borrow()
            .with_engine_network(py, |whole| {
                ocellus::summary::Summary::of(whole, &[1, c, h, w])
            })?
            .or_py_err()?;
        return Ok(PySummary { summary });
    }
    if let Ok(run) = model.cast::<PyRun>() {
        let run = run.borrow();
        let net = lock(&run.model);
        let summary = of(&net, input.unwrap_or(run.info.architecture.input))?;
        return Ok(PySummary { summary });
    }
    let name: PathBuf = model.extract().map_err(|_| {
        PyTypeError::new_err(
            "model must be a zoo name, an architecture file, a run directory, a Run or a LayeredNeuralNetwork",
        )
    })?;
    let name = name.display().to_string();
    let mut arch = if is_file(&name) {
        let path = Path::new(&name);
        if path.is_dir() || name.ends_with(".safetensors") {
            load_model(path).or_py_err()?.1.architecture
        } else {
            Architecture::from_file(path).or_py_err()?
        }
    } else {
        zoo::model(&name, input.unwrap_or([1, 28, 28]), 10).or_py_err()?
    };
    if let Some(input) = input {
        arch.input = input;
    }
    let net = arch.build(&mut ocellus::rng::Rng::new(0)).or_py_err()?;
    Ok(PySummary {
        summary: of(&net, arch.input)?,
    })
}
