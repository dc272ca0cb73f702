//! A training run and the directory it lives in:
//!
//! | file | contents |
//! |---|---|
//! | `config.json` | the run's settings, written when it starts |
//! | `model.safetensors` | weights and buffers under PyTorch's `state_dict` names; metadata: architecture, normalisation, class names, epoch |
//! | `best.safetensors` | with a validation split: the model of the best epoch so far (by `monitor`), as `model.safetensors` holds the last |
//! | `training.safetensors` | the optimiser's state; metadata: epoch |
//! | `lock` | held by the process that trains the run, for as long as it does |
//! | `metrics.jsonl` | one JSON line per finished epoch |
//! | `diagnostics.jsonl` | with diagnostics on: one JSON line per diagnosed step ([`crate::diagnostics`]) |
//! | `curves.png` | loss and accuracy per epoch, training vs evaluation set |
//! | `confusion.png` | the test set's confusion matrix, written by [`Run::finish`] |
//!
//! One process at a time trains a run: [`Run::start`] and [`Run::resume`] take the lock
//! (an OS file lock on `lock`, released by the OS when the process ends however it ends,
//! so a crashed run leaves no stale lock), and a second process is refused with the
//! process id of the first.
//!
//! A checkpoint is written at the end of every epoch, the model file being its one commit
//! point:
//! 1. the optimiser's state goes to `training.next.safetensors`;
//! 2. the model goes to `model.safetensors` — from here on, the checkpoint is the new one;
//! 3. `training.next.safetensors` is renamed to `training.safetensors`.
//!
//! Each write is atomic (a temporary file, flushed, renamed, the directory flushed). After
//! a kill at any moment [`Run::resume`] finds a model and an optimiser state of the same
//! epoch — in `training.safetensors`, or in `training.next.safetensors` when the kill came
//! between steps 2 and 3 — and never mixes two epochs. The metrics line of an epoch is
//! written before its checkpoint, and lines beyond the checkpoint are dropped on resume.
//!
//! In a data-parallel run ([`Run::join`]) rank 0 alone owns the directory: it takes the
//! lock and writes every file. The other ranks are replicas ([`Run::replica`],
//! [`Run::resume_replica`]) that read the directory (on resume) and write nothing.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::diagnostics::{self, DiagnosticsHook, DiagnosticsObserver, JsonlWriter, Observers};
use crate::early_stop::{self, EarlyStop, Monitor};
use crate::parallel::DataParallel;
use crate::trainer::{self, BatchProgress, EpochSettings, EpochStats, Evaluation};
use crate::transfer::{self, PartlyFrozen};
use ocellus::arch::Architecture;
use ocellus::checkpoint::{self, write_atomically, NamedTensors};
use ocellus::error::{Error, Result};
use ocellus::layers::{Layer, LayerExt};
use ocellus::network::Sequential;
use ocellus::optim::{
    Adam, AdamConfig, LrSchedule, OneCycle, Optimizer, OptimizerState, Sgd, SgdConfig,
};
use ocellus::rng::Rng;
use ocellus_data::augment::Augmentation;
use ocellus_data::{Dataset, Normalization, Splits};
use ocellus_viz::{heatmap_matrix, hstack, line_chart, Canvas, Series};

/// Everything that defines a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Zoo model name or architecture file, as given.
    pub model: String,
    /// Dataset name (`patterns`, `fashion-mnist`, `mnist`, `cifar10`, `folder`).
    pub data: String,
    pub data_dir: Option<String>,
    /// C, H, W that images of a folder dataset are converted and resized to.
    pub image_size: [usize; 3],
    pub epochs: usize,
    pub batch_size: usize,
    /// `sgd`, `adam` or `adamw`.
    pub optimizer: String,
    pub lr: f32,
    /// `None`: the optimiser's default (0.01 for AdamW, 0 otherwise).
    pub weight_decay: Option<f32>,
    /// SGD momentum.
    pub momentum: f32,
    /// `constant`, `step`, `cosine` or `onecycle`.
    pub schedule: String,
    pub seed: u64,
    /// Fraction of the training set held out for validation.
    pub val_fraction: f32,
    /// Random-crop padding (0 = no crop) and horizontal flips.
    pub augment_pad: usize,
    pub augment_flip: bool,
    pub label_smoothing: f32,
    /// Train on the first N training images only (quick experiments).
    pub limit_train: Option<usize>,
    /// A run directory or model file whose weights start this run (transfer learning; see
    /// [`crate::transfer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// Top-level layers kept fixed while training (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freeze: usize,
    /// Stop once the monitored quantity has not improved for this many epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// What picks the best epoch: `val-loss` or `val-accuracy` (see [`Monitor`]).
    #[serde(default = "default_monitor")]
    pub monitor: String,
    /// Gradient-flow diagnostics every N steps, written to `diagnostics.jsonl` (`None`:
    /// off). See [`crate::diagnostics`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics_every: Option<usize>,
    /// How the run spreads over processes; one process unless set.
    #[serde(default)]
    pub parallel: ParallelConfig,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_monitor() -> String {
    Monitor::ValLoss.name().into()
}

/// The data-parallel settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParallelConfig {
    /// The number of ranks that trained the last epoch (1: one process).
    pub ranks: usize,
    /// Batch normalisation over the whole batch of every rank (PyTorch's
    /// `SyncBatchNorm`) rather than each rank's shard.
    pub sync_batchnorm: bool,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig {
            ranks: 1,
            sync_batchnorm: false,
        }
    }
}

impl Default for RunConfig {
    /// The command line's defaults: LeNet-5 on the built-in patterns, 5 epochs of AdamW at
    /// 1e-3 in batches of 64, seed 0, nothing else switched on.
    fn default() -> Self {
        RunConfig {
            model: "lenet5".into(),
            data: "patterns".into(),
            data_dir: None,
            image_size: [1, 28, 28],
            epochs: 5,
            batch_size: 64,
            optimizer: "adamw".into(),
            lr: 1e-3,
            weight_decay: None,
            momentum: 0.9,
            schedule: "constant".into(),
            seed: 0,
            val_fraction: 0.0,
            augment_pad: 0,
            augment_flip: false,
            label_smoothing: 0.0,
            limit_train: None,
            init_from: None,
            freeze: 0,
            patience: None,
            monitor: default_monitor(),
            diagnostics_every: None,
            parallel: ParallelConfig::default(),
        }
    }
}

impl RunConfig {
    /// Checks every setting, naming the command-line flag that sets it.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, message: String| Err(Error::config(flag, message));
        if self.epochs == 0 {
            return bad("--epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("--batch-size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "--lr",
                format!("{} is not a positive learning rate", self.lr),
            );
        }
        if let Some(wd) = self.weight_decay {
            if !(wd.is_finite() && wd >= 0.0) {
                return bad("--weight-decay", format!("{wd} must be 0 or more"));
            }
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad("--momentum", format!("{} must be in [0, 1)", self.momentum));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "--val-fraction",
                format!("{} must be in [0, 1)", self.val_fraction),
            );
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return bad(
                "--label-smoothing",
                format!("{} must be in [0, 1]", self.label_smoothing),
            );
        }
        if self.limit_train == Some(0) {
            return bad("--limit-train", "must be at least 1".into());
        }
        let monitor = Monitor::parse(&self.monitor)?;
        if let Some(patience) = self.patience {
            if patience == 0 {
                return bad("--patience", "must be at least 1 epoch".into());
            }
            if self.val_fraction == 0.0 {
                return bad(
                    "--patience",
                    format!(
                        "watches the {} of a validation split, but there is none: add --val-fraction \
                         (e.g. 0.1); choosing epochs by the test set would overstate its accuracy",
                        monitor.describe()
                    ),
                );
            }
        }
        if self.diagnostics_every == Some(0) {
            return bad(
                "--diagnostics-every",
                "must be at least 1 (1 diagnoses every step)".into(),
            );
        }
        if self.diagnostics_every.is_some() && self.freeze > 0 {
            // A diagnosed step runs every top-level layer in training mode with its
            // gradients, which frozen layers must not have.
            return bad(
                "--diagnostics",
                "cannot be combined with --freeze / --freeze-through: a diagnosed step \
                 computes every layer's gradients, which frozen layers must not have"
                    .into(),
            );
        }
        self.build_optimizer()?;
        self.build_schedule(1)?;
        Ok(())
    }

    /// The set evaluated after every epoch: `"val"` when a validation split is held out,
    /// `"test"` when the test set stands in.
    pub fn eval_name(&self) -> &'static str {
        if self.val_fraction > 0.0 {
            "val"
        } else {
            "test"
        }
    }

    /// The optimiser these settings describe.
    pub fn build_optimizer(&self) -> Result<Box<dyn Optimizer>> {
        Ok(match self.optimizer.as_str() {
            "sgd" => {
                let mut config = SgdConfig::new(self.lr);
                config.momentum = self.momentum;
                config.weight_decay = self.weight_decay.unwrap_or(0.0);
                Box::new(Sgd::new(config)?)
            }
            "adam" | "adamw" => {
                let mut config = if self.optimizer == "adam" {
                    AdamConfig::adam(self.lr)
                } else {
                    AdamConfig::adamw(self.lr)
                };
                if let Some(wd) = self.weight_decay {
                    config.weight_decay = wd;
                }
                Box::new(Adam::new(config)?)
            }
            other => {
                return Err(Error::config(
                    "--optimizer",
                    format!("unknown optimiser '{other}'; choose sgd, adam or adamw"),
                ))
            }
        })
    }

    /// The learning-rate schedule over the whole run.
    pub fn build_schedule(&self, batches_per_epoch: usize) -> Result<LrSchedule> {
        match self.schedule.as_str() {
            "constant" => LrSchedule::constant(self.lr),
            // A tenth of the rate every third of the run.
            "step" => LrSchedule::step_lr(self.lr, (self.epochs / 3).max(1), 0.1),
            "cosine" => LrSchedule::cosine(self.lr, self.epochs, 0.0),
            "onecycle" => LrSchedule::one_cycle(OneCycle::new(
                self.lr,
                (self.epochs * batches_per_epoch).max(1),
            )),
            other => Err(Error::config(
                "--schedule",
                format!("unknown schedule '{other}'; choose constant, step, cosine or onecycle"),
            )),
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub val_loss: f32,
    pub val_accuracy: f32,
    pub lr: f32,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// What a model file says about the model besides its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub architecture: Architecture,
    pub normalization: Normalization,
    pub classes: Vec<String>,
    /// Epochs trained.
    pub epoch: usize,
}

const MODEL_FILE: &str = "model.safetensors";
/// The weights of the best epoch by the validation set (runs with a validation split).
pub const BEST_FILE: &str = "best.safetensors";
const TRAINING_FILE: &str = "training.safetensors";
const TRAINING_NEXT_FILE: &str = "training.next.safetensors";
const LOCK_FILE: &str = "lock";
const CONFIG_FILE: &str = "config.json";
const METRICS_FILE: &str = "metrics.jsonl";
const CURVES_FILE: &str = "curves.png";
const CONFUSION_FILE: &str = "confusion.png";

/// The largest `config.json` read: 1 MiB (ocellus writes under 1 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The largest `metrics.jsonl` read: 64 MiB, some hundred thousand epochs of records.
pub const MAX_METRICS_BYTES: u64 = 64 << 20;

/// Saves the model (state_dict and metadata) to `path`, atomically.
pub fn save_model(path: &Path, model: &dyn Layer, info: &ModelInfo) -> Result<()> {
    write_atomically(path, &model_bytes(path, model, info)?)
}

/// The bytes of the model file [`save_model`] writes; `path` names it in errors.
pub fn model_bytes(path: &Path, model: &dyn Layer, info: &ModelInfo) -> Result<Vec<u8>> {
    let mut metadata = HashMap::new();
    metadata.insert("architecture".into(), info.architecture.to_json());
    metadata.insert(
        "normalization".into(),
        serde_json::to_string(&info.normalization).expect("serialisable"),
    );
    metadata.insert(
        "classes".into(),
        serde_json::to_string(&info.classes).expect("serialisable"),
    );
    metadata.insert("epoch".into(), info.epoch.to_string());
    metadata.insert("format".into(), "ocellus-model-1".into());
    checkpoint::encode(path, &checkpoint::state_dict(model), metadata)
}

fn metadata_field<T: for<'de> Deserialize<'de>>(
    path: &Path,
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    let text = metadata.get(key).ok_or_else(|| {
        Error::format(
            path,
            format!("no '{key}' in the file's metadata: not an ocellus model file"),
        )
    })?;
    serde_json::from_str(text).map_err(|e| Error::format(path, format!("metadata '{key}': {e}")))
}

/// Which weights of a run directory to use: the last epoch's or the best one's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weights {
    /// `model.safetensors`, the last complete epoch.
    #[default]
    Last,
    /// `best.safetensors`, the best epoch by the validation set.
    Best,
}

impl Weights {
    /// `best` or `last`, as `--weights` takes them.
    pub fn parse(text: &str) -> Result<Weights> {
        match text {
            "last" => Ok(Weights::Last),
            "best" => Ok(Weights::Best),
            other => Err(Error::config(
                "--weights",
                format!("unknown weights '{other}'; choose best or last"),
            )),
        }
    }
}

/// The model file of `path` — a run directory or a model file — for `weights`. The best
/// epoch's weights need a run directory that kept them.
pub fn model_file(path: &Path, weights: Weights) -> Result<PathBuf> {
    match weights {
        Weights::Last if path.is_dir() => Ok(path.join(MODEL_FILE)),
        Weights::Last => Ok(path.to_path_buf()),
        Weights::Best if !path.is_dir() => Err(Error::config(
            "--weights",
            format!(
                "best needs a run directory, but {} is a file",
                path.display()
            ),
        )),
        Weights::Best => {
            let best = path.join(BEST_FILE);
            if best.is_file() {
                Ok(best)
            } else if path.join(MODEL_FILE).is_file() {
                Err(Error::config(
                    "--weights",
                    format!(
                        "{} keeps no best epoch: only runs with a validation split \
                         (--val-fraction) keep one; use --weights last",
                        path.display()
                    ),
                ))
            } else {
                Err(Error::format(
                    path,
                    "no model.safetensors: not a run directory",
                ))
            }
        }
    }
}

/// [`load_model`] of the weights `weights` picks in `path` (see [`model_file`]).
pub fn load_weights(path: &Path, weights: Weights) -> Result<(Sequential, ModelInfo)> {
    load_model(&model_file(path, weights)?)
}

/// Loads a model from a model file or a run directory: rebuilds the architecture stored
/// in it and loads the weights strictly.
pub fn load_model(path: &Path) -> Result<(Sequential, ModelInfo)> {
    let file = if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_path_buf()
    };
    let (tensors, metadata) = checkpoint::load(&file)?;
    model_from_checkpoint(&tensors, &metadata, &file)
}

/// [`load_model`] for the bytes of a model file already in memory; `source` names it in
/// errors.
pub fn model_from_bytes(bytes: &[u8], source: &Path) -> Result<(Sequential, ModelInfo)> {
    let (tensors, metadata) = checkpoint::from_bytes(bytes, source)?;
    model_from_checkpoint(&tensors, &metadata, source)
}

/// The model a checkpoint's metadata describes, with its tensors loaded strictly.
fn model_from_checkpoint(
    tensors: &[(String, ocellus::Tensor)],
    metadata: &HashMap<String, String>,
    file: &Path,
) -> Result<(Sequential, ModelInfo)> {
    let info = ModelInfo {
        architecture: metadata_field(file, metadata, "architecture")?,
        normalization: metadata_field(file, metadata, "normalization")?,
        classes: metadata_field(file, metadata, "classes")?,
        epoch: metadata_field(file, metadata, "epoch")?,
    };
    let mut model = info.architecture.build(&mut Rng::new(0))?;
    check_model_info(file, &model, &info)?;
    checkpoint::load_state_dict(&mut model, tensors, file)?;
    Ok((model, info))
}

/// The metadata of a model file must fit the model: one class name per output, one mean
/// and one positive standard deviation per input channel, all finite.
fn check_model_info(file: &Path, model: &Sequential, info: &ModelInfo) -> Result<()> {
    let [c, h, w] = info.architecture.input;
    let outputs = model.output_shape(&[1, c, h, w])?;
    let classes = info.classes.len();
    if outputs != [1, classes] {
        return Err(Error::format(
            file,
            format!(
                "the model gives {} scores per image but the file names {classes} classes",
                ocellus::tensor::shape_str(&outputs[1..])
            ),
        ));
    }
    let Normalization { mean, std } = &info.normalization;
    let finite =
        mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0);
    if mean.len() != c || std.len() != c || !finite {
        return Err(Error::format(
            file,
            format!(
                "the normalization must give {c} finite means and {c} positive standard deviations \
                 (one per input channel), but it has {} and {}{}",
                mean.len(),
                std.len(),
                if finite { "" } else { ", not all finite and positive" }
            ),
        ));
    }
    Ok(())
}

/// A training run: the model, its optimiser, the data split three ways, and the directory.
pub struct Run {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub model: Sequential,
    pub optimizer: Box<dyn Optimizer>,
    pub info: ModelInfo,
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
    pub schedule: LrSchedule,
    /// When set, the epoch under way stops after its current step; see
    /// [`Run::stop_when`].
    stop: Option<Arc<AtomicBool>>,
    /// Who receives the diagnosed steps (`diagnostics.jsonl` first), when the run takes
    /// diagnostics.
    observers: Option<Arc<Mutex<Observers>>>,
    /// This process's rank in a data-parallel run; see [`Run::join`].
    parallel: Option<Arc<DataParallel>>,
    /// Held for the life of the run by the process that writes its directory; `None` for
    /// the replicas of a data-parallel run, which write nothing.
    lock: Option<RunLock>,
}

/// The lock a process holds on a run directory while it trains the run.
struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of `dir`, or fails naming the process that holds it.
    fn acquire(dir: &Path) -> Result<RunLock> {
        use std::io::{Read, Seek};
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the message another process would print.
                let pid = std::process::id().to_string();
                file.set_len(0)
                    .and_then(|()| file.write_all(pid.as_bytes()))
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Error::io(&path, e))?;
                Ok(RunLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file
                    .rewind()
                    .and_then(|_| file.take(32).read_to_string(&mut holder));
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                Err(Error::format(
                    dir,
                    format!(
                        "this run directory is in use by {holder}, which is training it; \
                         wait for it to finish, or train into another directory"
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Removes the temporary files that a killed process left in `dir` (the caller holds the
/// run's lock, so no other process is writing them).
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(checkpoint::TEMP_MARK) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Run {
    /// Prepares a new run in `dir` (created if needed; an existing checkpoint there is an
    /// error, so nothing is overwritten by accident).
    pub fn start(
        dir: &Path,
        config: RunConfig,
        architecture: Architecture,
        splits: Splits,
    ) -> Result<Run> {
        if dir.join(MODEL_FILE).exists() {
            return Err(already_trained(dir));
        }
        // Everything that can be wrong is found before anything is written.
        config.validate()?;
        let mut model = architecture.build(&mut Rng::new(config.seed))?;
        if let Some(source) = &config.init_from {
            transfer::init_from_run(&mut model, Path::new(source))?;
        }
        if config.freeze > 0 {
            transfer::frozen_count(&model, Some(config.freeze), None)?;
        }
        create_run_dir(dir)?;
        let lock = RunLock::acquire(dir)?;
        // Checked again with the lock held: another process may have trained it meanwhile.
        if dir.join(MODEL_FILE).exists() {
            return Err(already_trained(dir));
        }
        remove_stale_temp_files(dir);
        let _ = std::fs::remove_file(dir.join(TRAINING_NEXT_FILE));
        let mut run = Self::assemble(dir, config, architecture, splits, model, 0, Some(lock))?;
        let config_text = serde_json::to_string_pretty(&run.config).expect("serialisable");
        write_atomically(&dir.join(CONFIG_FILE), config_text.as_bytes())?;
        let _ = std::fs::remove_file(dir.join(METRICS_FILE));
        let _ = std::fs::remove_file(dir.join(diagnostics::DIAGNOSTICS_FILE));
        run.open_diagnostics()?;
        Ok(run)
    }

    /// A replica of the run that rank 0 starts in `dir` with [`Run::start`], for another
    /// rank of a data-parallel run: the same model, data and optimiser, and no file
    /// written, ever.
    pub fn replica(
        dir: &Path,
        config: RunConfig,
        architecture: Architecture,
        splits: Splits,
    ) -> Result<Run> {
        config.validate()?;
        let model = architecture.build(&mut Rng::new(config.seed))?;
        Self::assemble(dir, config, architecture, splits, model, 0, None)
    }

    /// Reopens the run in `dir` at its last complete checkpoint. `splits` must be the same
    /// data the run started with.
    pub fn resume(dir: &Path, splits: Splits) -> Result<Run> {
        read_config(dir)?;
        let lock = RunLock::acquire(dir)?;
        remove_stale_temp_files(dir);
        Self::reopen(dir, splits, Some(lock))
    }

    /// [`Run::resume`] for a replica of a data-parallel run: reads the checkpoint that
    /// rank 0's [`Run::resume`] has reopened (call it after that), writes nothing.
    pub fn resume_replica(dir: &Path, splits: Splits) -> Result<Run> {
        Self::reopen(dir, splits, None)
    }

    /// The run in `dir` at its last complete checkpoint; with the lock, it also tidies
    /// what an interrupted checkpoint left.
    fn reopen(dir: &Path, splits: Splits, lock: Option<RunLock>) -> Result<Run> {
        let config = read_config(dir)?;
        if !dir.join(MODEL_FILE).exists() {
            return Err(Error::format(
                dir,
                "nothing to resume yet: the run stopped before it completed its first epoch; \
                 start it again",
            ));
        }
        config.validate().map_err(|e| {
            Error::format(
                dir.join(CONFIG_FILE),
                format!("settings a run cannot have: {e}"),
            )
        })?;
        let (model, info) = load_model(dir)?;
        let mut run = Self::assemble(
            dir,
            config,
            info.architecture.clone(),
            splits,
            model,
            info.epoch,
            lock,
        )?;
        if run.info.normalization != info.normalization || run.info.classes != info.classes {
            return Err(Error::format(
                dir,
                "the data given differs from the data this run was trained on (its classes or pixel statistics differ)",
            ));
        }
        expect_finite_model(&run.model).map_err(|name| {
            Error::format(
                dir.join(MODEL_FILE),
                format!(
                    "{name} holds values that are not finite numbers: the checkpoint is damaged"
                ),
            )
        })?;
        let (training_path, tensors, metadata) = training_state_of_epoch(dir, info.epoch)?;
        let epoch = info.epoch;
        let steps: u64 = metadata_field(&training_path, &metadata, "steps")?;
        if let Some((name, _)) = tensors
            .iter()
            .find(|(_, t)| !t.data().iter().all(|v| v.is_finite()))
        {
            return Err(Error::format(
                &training_path,
                format!("the optimiser state {name} holds values that are not finite numbers: the checkpoint is damaged"),
            ));
        }
        run.optimizer
            .load_state(OptimizerState { steps, tensors })?;
        if !run.owns_dir() {
            return Ok(run);
        }
        // Forget epochs recorded after the checkpoint (the run stopped before saving them).
        let kept: Vec<EpochRecord> = run
            .metrics()?
            .into_iter()
            .filter(|r| r.epoch <= epoch)
            .collect();
        let lines: String = kept
            .iter()
            .map(|r| serde_json::to_string(r).expect("serialisable") + "\n")
            .collect();
        write_atomically(&dir.join(METRICS_FILE), lines.as_bytes())?;
        run.repair_best(&kept)?;
        diagnostics::keep_diagnostics_up_to(dir, epoch)?;
        run.open_diagnostics()?;
        if training_path.ends_with(TRAINING_NEXT_FILE) {
            // The kill came after the commit point: finish the checkpoint's last step.
            std::fs::rename(&training_path, dir.join(TRAINING_FILE))
                .and_then(|()| checkpoint::sync_dir(dir))
                .map_err(|e| Error::io(&training_path, e))?;
        }
        Ok(run)
    }

    fn assemble(
        dir: &Path,
        config: RunConfig,
        architecture: Architecture,
        splits: Splits,
        model: Sequential,
        epoch: usize,
        lock: Option<RunLock>,
    ) -> Result<Run> {
        let Splits {
            mut train,
            mut test,
        } = splits;
        if let Some(limit) = config.limit_train {
            let keep: Vec<usize> = (0..limit.min(train.len())).collect();
            train = train.subset(&keep);
        }
        let mut val = if config.val_fraction > 0.0 {
            train.split_off_validation(config.val_fraction, config.seed)?
        } else {
            test.clone()
        };
        let [c, h, w] = architecture.input;
        ocellus::summary::Summary::of(&model, &[config.batch_size.max(1), c, h, w])?
            .expect_trainable()?;
        let normalization = Normalization::fit(&train);
        for set in [&mut train, &mut val, &mut test] {
            normalization.apply(set)?;
        }
        let batches = train.len().div_ceil(config.batch_size.max(1));
        let schedule = config.build_schedule(batches)?;
        let optimizer = config.build_optimizer()?;
        let info = ModelInfo {
            architecture,
            normalization,
            classes: train.classes().to_vec(),
            epoch,
        };
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            model,
            optimizer,
            info,
            train,
            val,
            test,
            schedule,
            stop: None,
            observers: None,
            parallel: None,
            lock,
        })
    }

    /// Whether this process writes the run directory: alone, or as rank 0.
    pub fn owns_dir(&self) -> bool {
        self.lock.is_some()
    }

    /// Makes this run one rank of a data-parallel run: checks, on every rank alike, that
    /// every rank has the same settings, data, weights and optimiser state as rank 0;
    /// synchronises batch normalisation when the settings ask for it; records the number
    /// of ranks in `config.json`. Every rank calls it, at the same point.
    pub fn join(&mut self, parallel: Arc<DataParallel>) -> Result<()> {
        let ranks = parallel.size();
        if self.config.batch_size < ranks {
            return Err(Error::config(
                "--batch-size",
                format!(
                    "{} is smaller than the {ranks} ranks: each rank needs at least one image of every batch",
                    self.config.batch_size
                ),
            ));
        }
        let config = ParallelConfig {
            ranks: 0,
            ..self.config.parallel.clone()
        };
        let config = RunConfig {
            parallel: config,
            ..self.config.clone()
        };
        let mut optimizer = crate::parallel::Fingerprint::default();
        let state = self.optimizer.state();
        optimizer.word(state.steps);
        for (name, t) in &state.tensors {
            optimizer.bytes(name.as_bytes());
            optimizer.floats(t.data());
        }
        let config = serde_json::to_string(&config).expect("serialisable");
        parallel.expect_same(&[
            ("settings", {
                let mut f = crate::parallel::Fingerprint::default();
                f.bytes(config.as_bytes());
                f.value()
            }),
            (
                "training data",
                crate::parallel::dataset_fingerprint(&self.train),
            ),
            (
                &format!("{} data", self.eval_name()),
                crate::parallel::dataset_fingerprint(&self.val),
            ),
            (
                "test data",
                crate::parallel::dataset_fingerprint(&self.test),
            ),
            ("weights", crate::parallel::model_fingerprint(&self.model)),
            ("optimiser state", optimizer.value()),
        ])?;
        if self.config.parallel.sync_batchnorm {
            self.model
                .sync_batch_statistics(Some(parallel.group().clone()));
        }
        self.parallel = Some(parallel);
        self.set_ranks(ranks)
    }

    /// Records in `config.json` that `ranks` processes train the run from now on (1: one
    /// process alone).
    pub fn set_ranks(&mut self, ranks: usize) -> Result<()> {
        if self.config.parallel.ranks == ranks {
            return Ok(());
        }
        self.config.parallel.ranks = ranks;
        if !self.owns_dir() {
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&self.config).expect("serialisable");
        write_atomically(&self.dir.join(CONFIG_FILE), text.as_bytes())
    }

    /// This process's rank in a data-parallel run, if it is one.
    pub fn parallel(&self) -> Option<&Arc<DataParallel>> {
        self.parallel.as_ref()
    }

    /// Makes [`Run::train_epoch`] stop after the step under way once `flag` is set (by a
    /// Ctrl-C handler, say), failing with [`Error::Interrupted`]. The last complete
    /// checkpoint stays as it is.
    pub fn stop_when(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// Starts appending to `diagnostics.jsonl` when the run takes diagnostics.
    fn open_diagnostics(&mut self) -> Result<()> {
        if self.config.diagnostics_every.is_some() {
            let writer = JsonlWriter::append_to(&self.dir.join(diagnostics::DIAGNOSTICS_FILE))?;
            let mut observers = Observers::default();
            observers.push(Box::new(writer));
            self.observers = Some(Arc::new(Mutex::new(observers)));
        }
        Ok(())
    }

    /// Hands every diagnosed step to `observer` too (after `diagnostics.jsonl`), as soon
    /// as the step is taken. The run must take diagnostics
    /// ([`RunConfig::diagnostics_every`]).
    pub fn observe_diagnostics(&mut self, observer: Box<dyn DiagnosticsObserver>) -> Result<()> {
        let observers = self.observers.as_ref().ok_or_else(|| {
            Error::config(
                "--diagnostics",
                "this run takes no diagnostics; start it with diagnostics to observe them",
            )
        })?;
        observers
            .lock()
            .map_err(|_| Error::config("diagnostics", "an observer failed earlier"))?
            .push(observer);
        Ok(())
    }

    /// Raises the number of epochs to train to `epochs` (the schedule is recomputed over
    /// the new length) and records it in `config.json`.
    pub fn extend_to(&mut self, epochs: usize) -> Result<()> {
        self.config.epochs = epochs;
        let batches = self.train.len().div_ceil(self.config.batch_size.max(1));
        self.schedule = self.config.build_schedule(batches)?;
        if !self.owns_dir() {
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&self.config).expect("serialisable");
        write_atomically(&self.dir.join(CONFIG_FILE), text.as_bytes())
    }

    /// Epochs already trained.
    pub fn epochs_done(&self) -> usize {
        self.info.epoch
    }

    /// Trains one more epoch, validates, writes the checkpoint and the metrics line.
    pub fn train_epoch(&mut self, progress: &mut dyn FnMut(&BatchProgress)) -> Result<EpochRecord> {
        let epoch = self.info.epoch + 1;
        let settings = EpochSettings {
            batch_size: self.config.batch_size,
            schedule: self.schedule,
            augmentation: Augmentation::new(self.config.augment_pad, self.config.augment_flip),
            label_smoothing: self.config.label_smoothing,
            seed: self.config.seed,
            stop: self.stop.clone(),
            diagnostics: self
                .config
                .diagnostics_every
                .zip(self.observers.clone())
                .map(|(every, observer)| DiagnosticsHook {
                    every,
                    observer: observer as Arc<Mutex<dyn DiagnosticsObserver>>,
                }),
            parallel: self.parallel.clone(),
        };
        let stats: EpochStats = trainer::train_epoch(
            &mut PartlyFrozen::new(&mut self.model, self.config.freeze),
            self.optimizer.as_mut(),
            &self.train,
            &settings,
            epoch,
            progress,
        )?;
        // The loss is checked at every step; a weight can still overflow while the loss of
        // the batch stays finite, and such a model must not become the checkpoint.
        expect_finite_model(&self.model).map_err(|name| {
            Error::config(
                "train",
                format!(
                    "{name} is no longer a finite number after epoch {epoch}: training diverged; try a lower learning rate"
                ),
            )
        })?;
        if let Some(parallel) = &self.parallel {
            // The ranks' sums agree bit for bit, so their weights do; a difference here
            // would make the checkpoint speak for rank 0 alone.
            parallel.expect_same(&[(
                "weights after the epoch's last step",
                crate::parallel::model_fingerprint(&self.model),
            )])?;
        }
        let batch_size = self.eval_batch_size();
        let group = self.parallel.as_ref().map(|p| p.group().as_ref());
        let val = trainer::evaluate_shared(&mut self.model, &self.val, batch_size, group)?;
        let record = EpochRecord {
            epoch,
            train_loss: stats.loss,
            train_accuracy: stats.accuracy,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            lr: stats.lr,
            seconds: stats.seconds,
            images_per_second: stats.images as f64 / stats.seconds.max(1e-9),
        };
        if !self.owns_dir() {
            self.info.epoch = epoch;
            return Ok(record);
        }
        let path = self.dir.join(METRICS_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        writeln!(
            file,
            "{}",
            serde_json::to_string(&record).expect("serialisable")
        )
        .map_err(|e| Error::io(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        self.info.epoch = epoch;
        self.save_checkpoint()?;
        self.keep_best()?;
        curves_picture(&self.metrics()?, self.eval_name()).save_png(self.dir.join(CURVES_FILE))?;
        Ok(record)
    }

    /// `"val"` when a validation split is held out, `"test"` when the test set stands in.
    pub fn eval_name(&self) -> &'static str {
        self.config.eval_name()
    }

    /// Evaluates the trained model on the test set and draws its confusion matrix.
    pub fn finish(&mut self) -> Result<Evaluation> {
        let result = self.evaluate_test()?;
        if !self.owns_dir() {
            return Ok(result);
        }
        confusion_picture(&result, &self.info.classes).save_png(self.dir.join(CONFUSION_FILE))?;
        Ok(result)
    }

    /// Evaluates the model on the test set.
    pub fn evaluate_test(&mut self) -> Result<Evaluation> {
        let batch_size = self.eval_batch_size();
        let group = self.parallel.as_ref().map(|p| p.group().as_ref());
        trainer::evaluate_shared(&mut self.model, &self.test, batch_size, group)
    }

    /// Evaluation needs no gradients, so it takes batches of at least 256.
    pub fn eval_batch_size(&self) -> usize {
        self.config.batch_size.max(256)
    }

    /// Writes the checkpoint in the three steps of the module docs; the model file is the
    /// commit point.
    fn save_checkpoint(&self) -> Result<()> {
        let state = self.optimizer.state();
        let mut metadata = HashMap::new();
        metadata.insert("epoch".into(), self.info.epoch.to_string());
        metadata.insert("steps".into(), state.steps.to_string());
        metadata.insert("optimizer".into(), format!("\"{}\"", self.optimizer.kind()));
        let next = self.dir.join(TRAINING_NEXT_FILE);
        checkpoint::save(&next, &state.tensors, metadata)?;
        crash_point("training-next-written");
        save_model(&self.dir.join(MODEL_FILE), &self.model, &self.info)?;
        crash_point("model-written");
        std::fs::rename(&next, self.dir.join(TRAINING_FILE))
            .and_then(|()| checkpoint::sync_dir(&self.dir))
            .map_err(|e| Error::io(&next, e))
    }

    /// The metrics recorded so far.
    pub fn metrics(&self) -> Result<Vec<EpochRecord>> {
        read_metrics(&self.dir)
    }

    /// True when the run keeps the weights of its best epoch: when it has a validation
    /// split to judge epochs by.
    pub fn keeps_best(&self) -> bool {
        self.config.val_fraction > 0.0
    }

    /// After the checkpoint of an epoch: when that epoch is the best so far, its weights
    /// become `best.safetensors`. Written after the checkpoint's commit point, so that a
    /// run stopped in between finds the best epoch's weights in its model file
    /// ([`Run::repair_best`]).
    fn keep_best(&self) -> Result<()> {
        if !self.keeps_best() {
            return Ok(());
        }
        let monitor = Monitor::parse(&self.config.monitor)?;
        let best = early_stop::best_epoch(&self.metrics()?, monitor);
        if best.map(|b| b.epoch) == Some(self.info.epoch) {
            save_model(&self.dir.join(BEST_FILE), &self.model, &self.info)?;
        }
        Ok(())
    }

    /// On resume, makes `best.safetensors` hold the best of the epochs `kept`: a run
    /// stopped between an epoch's checkpoint and its best file has them in the model. A
    /// best file of another epoch that cannot be rebuilt (a run of an ocellus that kept
    /// none) is removed, and the next best epoch writes a new one.
    fn repair_best(&self, kept: &[EpochRecord]) -> Result<()> {
        if !self.keeps_best() {
            return Ok(());
        }
        let monitor = Monitor::parse(&self.config.monitor)?;
        let Some(best) = early_stop::best_epoch(kept, monitor) else {
            return Ok(());
        };
        let path = self.dir.join(BEST_FILE);
        let saved = checkpoint::load(&path)
            .ok()
            .and_then(|(_, metadata)| metadata_field::<usize>(&path, &metadata, "epoch").ok());
        if saved == Some(best.epoch) {
            Ok(())
        } else if best.epoch == self.info.epoch {
            save_model(&path, &self.model, &self.info)
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
                _ => Ok(()),
            }
        }
    }

    /// Whether training should stop early: the monitored quantity has not improved for
    /// `patience` epochs. Read from the metrics, so a resumed run decides as the run
    /// that never stopped would.
    pub fn early_stop(&self) -> Result<Option<EarlyStop>> {
        let Some(patience) = self.config.patience else {
            return Ok(None);
        };
        let monitor = Monitor::parse(&self.config.monitor)?;
        Ok(early_stop::check(&self.metrics()?, monitor, patience))
    }
}

/// Loss and accuracy per epoch, training against the evaluation set, side by side.
pub fn curves_picture(records: &[EpochRecord], eval_name: &str) -> Canvas {
    let series = |name: &str, value: fn(&EpochRecord) -> f32| {
        Series::new(
            name,
            records
                .iter()
                .map(|r| (r.epoch as f64, value(r) as f64))
                .collect(),
        )
    };
    let loss = line_chart(
        "Loss",
        "epoch",
        "cross-entropy",
        &[
            series("train", |r| r.train_loss),
            series(eval_name, |r| r.val_loss),
        ],
        480,
        320,
    );
    let accuracy = line_chart(
        "Accuracy",
        "epoch",
        "fraction correct",
        &[
            series("train", |r| r.train_accuracy),
            series(eval_name, |r| r.val_accuracy),
        ],
        480,
        320,
    );
    hstack(&[("", &loss), ("", &accuracy)])
}

/// The test set's confusion matrix: a row per true class, a column per prediction.
pub fn confusion_picture(result: &Evaluation, classes: &[String]) -> Canvas {
    let title = format!(
        "Confusion matrix, test set: {:.2}% correct",
        100.0 * result.accuracy
    );
    heatmap_matrix(&title, &result.confusion, classes, classes, true)
}

/// The name of the first parameter or buffer of `model` holding a NaN or infinity.
fn expect_finite_model(model: &Sequential) -> std::result::Result<(), String> {
    let finite = |t: &ocellus::Tensor| t.data().iter().all(|v| v.is_finite());
    let params = model
        .params()
        .into_iter()
        .map(|(n, p)| (n, finite(p.value())));
    let buffers = model.buffers().into_iter().map(|(n, b)| (n, finite(b)));
    match params.chain(buffers).find(|(_, ok)| !ok) {
        Some((name, _)) => Err(format!("parameter {name}")),
        None => Ok(()),
    }
}

/// The error for a directory that already holds a trained model.
fn already_trained(dir: &Path) -> Error {
    Error::format(
        dir,
        "already holds a trained model; choose another --out directory, or --resume it",
    )
}

/// The optimiser state saved with the model of `epoch`: `training.safetensors`, or
/// `training.next.safetensors` when the run was stopped between the model's commit and
/// the rename that completes a checkpoint.
fn training_state_of_epoch(
    dir: &Path,
    epoch: usize,
) -> Result<(PathBuf, NamedTensors, HashMap<String, String>)> {
    let mut found = Vec::new();
    for name in [TRAINING_FILE, TRAINING_NEXT_FILE] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let (tensors, metadata) = checkpoint::load(&path)?;
        let saved: usize = metadata_field(&path, &metadata, "epoch")?;
        if saved == epoch {
            return Ok((path, tensors, metadata));
        }
        found.push(format!("{name} is from epoch {saved}"));
    }
    let found = if found.is_empty() {
        "there is no optimiser state".to_string()
    } else {
        found.join(", ")
    };
    Err(Error::format(
        dir,
        format!("the model is from epoch {epoch} but {found}: the checkpoint is incomplete"),
    ))
}

/// A test hook: when the environment variable `OCELLUS_CRASH_AT` names this point, the
/// process ends here at once, as a kill would end it. The fault tests use it to stop a
/// run between the writes of a checkpoint.
fn crash_point(name: &str) {
    if std::env::var_os("OCELLUS_CRASH_AT").is_some_and(|at| at == name) {
        std::process::abort();
    }
}

/// Creates the directory of a new run (and its parents), naming the usual obstacle: a
/// file where a directory should be.
fn create_run_dir(dir: &Path) -> Result<()> {
    if let Some(file) = dir.ancestors().find(|a| a.is_file()) {
        return Err(Error::format(
            dir,
            format!(
                "cannot create the run directory: {} is a file, not a directory; choose another --out directory",
                file.display()
            ),
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::format(dir, format!("cannot create the run directory ({e})")))
}

/// Reads `config.json` of a run directory.
pub fn read_config(dir: &Path) -> Result<RunConfig> {
    let path = dir.join(CONFIG_FILE);
    if !dir.is_dir() {
        return Err(Error::format(dir, "no such run directory"));
    }
    let bytes = ocellus::files::read(&path, MAX_CONFIG_BYTES, "run configurations")?;
    serde_json::from_slice(&bytes).map_err(|e| Error::format(&path, e.to_string()))
}

/// Reads `metrics.jsonl` of a run directory (empty if there is none yet).
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochRecord>> {
    let path = dir.join(METRICS_FILE);
    let bytes = match ocellus::files::read(&path, MAX_METRICS_BYTES, "metrics files") {
        Ok(bytes) => bytes,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::format(&path, format!("not UTF-8 text ({e})")))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::format(&path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
