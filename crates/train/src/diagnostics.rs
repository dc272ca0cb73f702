//! Gradient-flow diagnostics: how large the gradients are in every layer of a network, how
//! far a step moves its parameters, and what its activations look like — the numbers that
//! show where gradients flow and where they fade (a deep plain network) or die (ReLUs
//! that never fire).
//!
//! A diagnosed step is an ordinary training step taken layer by layer: the network's
//! top-level layers (the entries of its architecture, a residual block counting as one)
//! run forward and backward exactly as [`Sequential`](ocellus::network::Sequential) runs
//! them, in the same order on the same tensors, so the weights after a diagnosed step are
//! bit-identical to those after a plain one. On the way, [`Probe`] records for every
//! top-level layer:
//!
//! | field | what it is |
//! |---|---|
//! | `input_grad_norm` | ‖∂L/∂x‖₂, the gradient reaching the layer's input (`null` for the first layer: its input is data and training computes no gradient for it) |
//! | `output_mean`, `output_std` | mean and standard deviation (population, `1/n`) of the layer's output over the whole batch |
//! | `dead_fraction` | for a layer whose output comes out of a ReLU (a ReLU, a residual block with ReLU after the sum, a chain ending in one): the fraction of units that are zero for every image of the batch — a unit is a channel of an (N, C, H, W) output (a filter that fired nowhere) or a feature of an (N, F) one; `null` for other layers |
//! | `param_norm`, `grad_norm` | ‖θ‖₂ and ‖∂L/∂θ‖₂ over all the layer's parameters together (0 for a layer without any) |
//! | `update_ratio` | ‖θ_after − θ_before‖₂ / ‖θ_before‖₂ over the layer's parameters: how far the optimiser step moved them, relative to their size (`null` when ‖θ‖ is 0 or the layer has none) |
//! | `params` | the same three numbers (`norm`, `grad_norm`, `update_ratio`) for each parameter, by its full name |
//!
//! The loss is the mean cross-entropy of the batch, so every gradient is that of the mean.
//!
//! ## `diagnostics.jsonl`
//!
//! A run trained with diagnostics appends one [`StepDiagnostics`] per diagnosed step to
//! `diagnostics.jsonl` in its directory, one JSON object per line:
//!
//! ```json
//! {"epoch":1,"step":1,"batch":1,"images":64,"loss":2.31,"lr":0.001,
//!  "layers":[{"name":"0","kind":"conv2d","output_shape":[64,6,28,28],
//!             "input_grad_norm":null,"output_mean":0.01,"output_std":0.52,
//!             "dead_fraction":null,"param_norm":2.9,"grad_norm":0.08,"update_ratio":0.0021,
//!             "params":[{"name":"0.weight","norm":2.8,"grad_norm":0.07,"update_ratio":0.0017}, …]},
//!            …]}
//! ```
//!
//! `step` counts optimiser steps from 1 over the whole run; steps 1, 1 + N, 1 + 2N, … are
//! diagnosed (`--diagnostics-every N`). A number that is not finite (a diverging run) is
//! written as `null`. Lines are appended as the steps are taken, so the file can be
//! followed while a run trains; when a run resumes, lines of epochs beyond its checkpoint
//! are dropped, as for `metrics.jsonl`.
//!
//! ## Watching while training
//!
//! [`DiagnosticsObserver`] receives each record as soon as its step is done: give a
//! [`DiagnosticsHook`] to [`EpochSettings`](crate::trainer::EpochSettings) (or call
//! [`Run::observe_diagnostics`](crate::run::Run::observe_diagnostics)) and every diagnosed
//! step is handed to it — the run's file writer is one such observer.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use ocellus::error::{Error, Result};
use ocellus::layers::{Key, Layer, Mode, PartMut};
use ocellus::loss;
use ocellus::optim::Optimizer;
use ocellus::spec::{Composition, LayerSpec};
use ocellus::tensor::Tensor;
use ocellus::LayerExt;
use ocellus_viz::{heatmap_over_time, line_chart, vstack, Canvas, ColorScale, Series};

/// The diagnostics of one training step, every top-level layer in forward order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepDiagnostics {
    /// Counted from 1; 0 for a network that has not trained ([`at_initialisation`]).
    pub epoch: usize,
    /// The optimiser step over the whole run, counted from 1.
    pub step: usize,
    /// The batch within its epoch, counted from 1.
    pub batch: usize,
    /// Images in the batch.
    pub images: usize,
    /// Mean cross-entropy of the batch.
    #[serde(with = "finite")]
    pub loss: f32,
    /// The learning rate of the step.
    #[serde(with = "finite")]
    pub lr: f32,
    pub layers: Vec<LayerDiagnostics>,
}

/// One top-level layer in a diagnosed step (see the module docs for each field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDiagnostics {
    /// The layer's position, as its parameters' names begin (`"3"` for `3.main.0.weight`).
    pub name: String,
    /// Its kind as architecture files write it (`conv2d`, `basicblock`, `sequential`).
    pub kind: String,
    pub output_shape: Vec<usize>,
    #[serde(with = "finite_option")]
    pub input_grad_norm: Option<f32>,
    #[serde(with = "finite")]
    pub output_mean: f32,
    #[serde(with = "finite")]
    pub output_std: f32,
    #[serde(with = "finite_option")]
    pub dead_fraction: Option<f32>,
    #[serde(with = "finite")]
    pub param_norm: f32,
    #[serde(with = "finite")]
    pub grad_norm: f32,
    #[serde(with = "finite_option")]
    pub update_ratio: Option<f32>,
    pub params: Vec<ParamDiagnostics>,
}

/// One parameter in a diagnosed step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamDiagnostics {
    /// Its full name (`3.main.0.weight`).
    pub name: String,
    /// ‖θ‖₂ before the step.
    #[serde(with = "finite")]
    pub norm: f32,
    /// ‖∂L/∂θ‖₂.
    #[serde(with = "finite")]
    pub grad_norm: f32,
    /// ‖θ_after − θ_before‖₂ / ‖θ_before‖₂; `None` when ‖θ_before‖ is 0.
    #[serde(with = "finite_option")]
    pub update_ratio: Option<f32>,
}

impl StepDiagnostics {
    /// The layer named `name`, if the network has one.
    pub fn layer(&self, name: &str) -> Option<&LayerDiagnostics> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The first layer that has parameters (the first convolution of a CNN): the far end
    /// of the gradient's way back.
    pub fn first_weighted_layer(&self) -> Option<&LayerDiagnostics> {
        self.layers.iter().find(|l| !l.params.is_empty())
    }
}

impl LayerDiagnostics {
    /// `3 residual 32×14×14`: the position, the kind and the output shape of one image —
    /// the row label of the pictures.
    pub fn label(&self) -> String {
        let shape: Vec<String> = self.output_shape[1..]
            .iter()
            .map(|d| d.to_string())
            .collect();
        format!("{} {} {}", self.name, self.kind, shape.join("×"))
            .trim()
            .to_string()
    }
}

impl StepDiagnostics {
    /// The record as a table, a line per layer: output shape, activation mean and
    /// standard deviation, dead units, ‖∂L/∂x‖, ‖θ‖, ‖∂L/∂θ‖ and the update ratio.
    pub fn table(&self) -> String {
        let header = [
            "layer",
            "kind",
            "output",
            "mean",
            "std",
            "dead",
            "‖∂L/∂x‖",
            "‖θ‖",
            "‖∂L/∂θ‖",
            "‖Δθ‖/‖θ‖",
        ]
        .map(String::from);
        let sci = |v: f32| format!("{v:.2e}");
        let opt = |v: Option<f32>, f: &dyn Fn(f32) -> String| v.map_or("—".to_string(), f);
        let rows: Vec<[String; 10]> = self
            .layers
            .iter()
            .map(|l| {
                let shape: Vec<String> =
                    l.output_shape[1..].iter().map(|d| d.to_string()).collect();
                let weighted = !l.params.is_empty();
                [
                    l.name.clone(),
                    l.kind.clone(),
                    shape.join("×"),
                    format!("{:.3}", l.output_mean),
                    format!("{:.3}", l.output_std),
                    opt(l.dead_fraction, &|d| format!("{:.0}%", 100.0 * d)),
                    opt(l.input_grad_norm, &sci),
                    if weighted {
                        sci(l.param_norm)
                    } else {
                        "—".into()
                    },
                    if weighted {
                        sci(l.grad_norm)
                    } else {
                        "—".into()
                    },
                    opt(l.update_ratio, &sci),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|j| {
                rows.iter()
                    .map(|r| r[j].chars().count())
                    .chain([header[j].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(j, (c, &w))| {
                    let pad = w - c.chars().count();
                    if j < 3 {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_string() + "\n"
        };
        let mut out = line(&header);
        for row in &rows {
            out += &line(row);
        }
        out
    }
}

/// Columns drawn at most per picture; longer runs show every k-th diagnosed step.
const MAX_COLUMNS: usize = 600;

/// The gradient flow of a run over its training, one row per layer and one column per
/// diagnosed step, stacked: ‖∂L/∂x‖ reaching each layer, ‖∂L/∂θ‖ of its parameters and
/// the update ratio ‖Δθ‖/‖θ‖ on log colour scales, and the dead ReLU units (when the
/// network has ReLUs). Records of different networks cannot be drawn together: an error.
pub fn gradflow_picture(records: &[StepDiagnostics]) -> Result<Canvas> {
    let first = records
        .first()
        .ok_or_else(|| Error::config("diagnostics", "no diagnosed steps to draw"))?;
    let names: Vec<&str> = first.layers.iter().map(|l| l.name.as_str()).collect();
    if let Some(r) = records.iter().find(|r| {
        !r.layers
            .iter()
            .map(|l| l.name.as_str())
            .eq(names.iter().copied())
    }) {
        return Err(Error::config(
            "diagnostics",
            format!(
                "step {} has other layers than step {}: the records are of different networks",
                r.step, first.step
            ),
        ));
    }
    let every = records.len().div_ceil(MAX_COLUMNS);
    let shown: Vec<&StepDiagnostics> = records.iter().step_by(every).collect();
    let times: Vec<f64> = shown.iter().map(|r| r.step as f64).collect();
    let labels: Vec<String> = first.layers.iter().map(LayerDiagnostics::label).collect();
    let matrix = |value: &dyn Fn(&LayerDiagnostics) -> Option<f32>| -> Vec<Vec<f64>> {
        (0..labels.len())
            .map(|i| {
                shown
                    .iter()
                    .map(|r| value(&r.layers[i]).map_or(f64::NAN, |v| v as f64))
                    .collect()
            })
            .collect()
    };
    let weighted = |l: &LayerDiagnostics, v: f32| (!l.params.is_empty()).then_some(v);
    let panel = |title: &str, values: Vec<Vec<f64>>, scale| {
        heatmap_over_time(title, &labels, &times, &values, "training step", scale, 480)
    };
    let mut panels = vec![
        panel(
            "|∂L/∂x|: the gradient reaching each layer's input",
            matrix(&|l| l.input_grad_norm),
            ColorScale::Log,
        ),
        panel(
            "|∂L/∂θ|: the gradient of each layer's parameters",
            matrix(&|l| weighted(l, l.grad_norm)),
            ColorScale::Log,
        ),
        panel(
            "|Δθ| / |θ|: how far each step moves the parameters",
            matrix(&|l| l.update_ratio),
            ColorScale::Log,
        ),
    ];
    if first.layers.iter().any(|l| l.dead_fraction.is_some()) {
        panels.push(panel(
            "dead ReLU units: channels zero for the whole batch",
            matrix(&|l| l.dead_fraction),
            ColorScale::Linear(0.0, 1.0),
        ));
    }
    let captioned: Vec<(&str, &Canvas)> = panels.iter().map(|p| ("", p)).collect();
    Ok(vstack(&captioned))
}

/// One diagnosed step drawn against depth: log10 of ‖∂L/∂x‖ reaching each layer and of
/// ‖∂L/∂θ‖ of each layer with parameters, layer by layer from the input.
pub fn step_picture(record: &StepDiagnostics, title: &str) -> Canvas {
    let points = |value: &dyn Fn(&LayerDiagnostics) -> Option<f32>| -> Vec<(f64, f64)> {
        record
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let v = value(l)?;
                (v > 0.0 && v.is_finite()).then(|| (i as f64, (v as f64).log10()))
            })
            .collect()
    };
    line_chart(
        title,
        "layer (0 = the input side)",
        "log10 of the norm",
        &[
            Series::new("|∂L/∂x| reaching the layer", points(&|l| l.input_grad_norm)),
            Series::new(
                "|∂L/∂θ| of its parameters",
                points(&|l| (!l.params.is_empty()).then_some(l.grad_norm)),
            ),
        ],
        640,
        360,
    )
}

/// Receives the diagnostics of every diagnosed step while a network trains.
pub trait DiagnosticsObserver: Send {
    /// Called once per diagnosed step, right after the optimiser step. An error stops
    /// training with that error.
    fn observe(&mut self, record: &StepDiagnostics) -> Result<()>;
}

impl<F: FnMut(&StepDiagnostics) -> Result<()> + Send> DiagnosticsObserver for F {
    fn observe(&mut self, record: &StepDiagnostics) -> Result<()> {
        self(record)
    }
}

/// Diagnostics to take while training: every `every`-th step (steps 1, 1 + every, …),
/// handed to `observer`. Cloning shares the observer.
#[derive(Clone)]
pub struct DiagnosticsHook {
    pub every: usize,
    pub observer: Arc<Mutex<dyn DiagnosticsObserver>>,
}

impl DiagnosticsHook {
    /// A hook calling `observer` every `every` steps; `every` must be at least 1.
    pub fn new(every: usize, observer: impl DiagnosticsObserver + 'static) -> Result<Self> {
        if every == 0 {
            return Err(Error::config(
                "--diagnostics-every",
                "must be at least 1 (1 diagnoses every step)",
            ));
        }
        Ok(DiagnosticsHook {
            every,
            observer: Arc::new(Mutex::new(observer)),
        })
    }

    /// True when global step `step` (counted from 1) is diagnosed.
    pub fn is_due(&self, step: usize) -> bool {
        step >= 1 && (step - 1).is_multiple_of(self.every)
    }

    /// Hands `record` to the observer.
    pub fn deliver(&self, record: &StepDiagnostics) -> Result<()> {
        let mut observer = self
            .observer
            .lock()
            .map_err(|_| Error::config("diagnostics", "an observer failed earlier (poisoned)"))?;
        observer.observe(record)
    }
}

impl std::fmt::Debug for DiagnosticsHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiagnosticsHook")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Several observers as one, each handed every record in turn (a run's file and, say, a
/// live view).
#[derive(Default)]
pub struct Observers {
    observers: Vec<Box<dyn DiagnosticsObserver>>,
}

impl Observers {
    /// Adds an observer after those already there.
    pub fn push(&mut self, observer: Box<dyn DiagnosticsObserver>) {
        self.observers.push(observer);
    }
}

impl DiagnosticsObserver for Observers {
    fn observe(&mut self, record: &StepDiagnostics) -> Result<()> {
        self.observers
            .iter_mut()
            .try_for_each(|o| o.observe(record))
    }
}

/// The name of the diagnostics file in a run directory.
pub const DIAGNOSTICS_FILE: &str = "diagnostics.jsonl";
/// The largest `diagnostics.jsonl` read: 1 GiB (a ResNet-56 diagnosed every 10 steps
/// writes about 3 MiB per epoch of Fashion-MNIST).
pub const MAX_DIAGNOSTICS_BYTES: u64 = 1 << 30;

/// Appends every record to a JSON-lines file, one line per record, written as the record
/// arrives (so the file can be followed while a run trains).
pub struct JsonlWriter {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it if needed.
    pub fn append_to(path: &std::path::Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl DiagnosticsObserver for JsonlWriter {
    fn observe(&mut self, record: &StepDiagnostics) -> Result<()> {
        use std::io::Write;
        let mut line = serde_json::to_string(record).expect("a record always serialises");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads the diagnostics file of a run directory (`diagnostics.jsonl`, or any file of
/// such lines given by its path). A run trained without diagnostics has none: an error
/// saying how to get one.
pub fn read_diagnostics(path: &std::path::Path) -> Result<Vec<StepDiagnostics>> {
    let file = if path.is_dir() {
        path.join(DIAGNOSTICS_FILE)
    } else {
        path.to_path_buf()
    };
    if path.is_dir() && !file.exists() {
        return Err(Error::format(
            path,
            format!(
                "has no {DIAGNOSTICS_FILE}: the run was trained without diagnostics; \
                 train it with --diagnostics, or see one batch with ocellus gradflow --model {}",
                path.display()
            ),
        ));
    }
    let bytes = ocellus::files::read(&file, MAX_DIAGNOSTICS_BYTES, "diagnostics files")?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::format(&file, format!("not UTF-8 text ({e})")))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::format(&file, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// The diagnosed steps of run directory `dir`: its `diagnostics.jsonl`, or none when it
/// was trained without diagnostics.
pub fn run_diagnostics(dir: &std::path::Path) -> Result<Vec<StepDiagnostics>> {
    if dir.join(DIAGNOSTICS_FILE).exists() {
        read_diagnostics(dir)
    } else {
        Ok(Vec::new())
    }
}

/// Drops the records of epochs after `epoch` from the diagnostics file of run directory
/// `dir`, if it has one (a run resumed from the checkpoint of `epoch` takes those steps
/// again). Written atomically.
pub fn keep_diagnostics_up_to(dir: &std::path::Path, epoch: usize) -> Result<()> {
    let path = dir.join(DIAGNOSTICS_FILE);
    if !path.exists() {
        return Ok(());
    }
    let kept: String = read_diagnostics(&path)?
        .into_iter()
        .filter(|r| r.epoch <= epoch)
        .map(|r| serde_json::to_string(&r).expect("a record always serialises") + "\n")
        .collect();
    ocellus::checkpoint::write_atomically(&path, kept.as_bytes())
}

/// What a step records of one top-level layer on its way forward and back.
struct LayerRecord {
    name: String,
    kind: String,
    output_shape: Vec<usize>,
    output_mean: f32,
    output_std: f32,
    dead_fraction: Option<f32>,
    input_grad_norm: Option<f32>,
}

/// One diagnosed training step, taken layer by layer: [`Probe::forward`], the loss,
/// [`Probe::backward_params`], [`Probe::before_step`], the optimiser step,
/// [`Probe::finish`]. [`diagnosed_step`] runs the whole sequence.
#[derive(Default)]
pub struct Probe {
    layers: Vec<LayerRecord>,
    /// Every parameter's values before the optimiser step, in `params()` order.
    before: Vec<Vec<f32>>,
}

/// The top-level layers of `model`, each with its name: the children of a chain (a
/// `Sequential`), or the model itself, unnamed, when it is anything else.
fn top_level(model: &mut dyn Layer) -> Vec<(String, &mut dyn Layer)> {
    if model.spec().composition() != Composition::Chain {
        return vec![(String::new(), model)];
    }
    model
        .parts_mut()
        .into_iter()
        .filter_map(|(key, part)| match part {
            PartMut::Layer(child) => Some((key_name(key), child)),
            _ => None,
        })
        .collect()
}

fn key_name(key: Key) -> String {
    key.to_string()
}

/// The error context of a top-level layer, as `Sequential` names it.
fn in_layer(e: Error, name: &str) -> Error {
    if name.is_empty() {
        e
    } else {
        e.in_layer(&format!("layer {name}"))
    }
}

impl Probe {
    /// A probe that has recorded nothing yet.
    pub fn new() -> Self {
        Probe {
            layers: Vec::new(),
            before: Vec::new(),
        }
    }

    /// Runs `model` on `x` in [`Mode::Train`], one top-level layer after the other, and
    /// records each one's output. Returns the network's output.
    pub fn forward(&mut self, model: &mut dyn Layer, x: &Tensor) -> Result<Tensor> {
        self.layers.clear();
        let mut y = x.clone();
        for (name, layer) in top_level(model) {
            let spec = layer.spec();
            y = layer
                .forward(y, Mode::Train)
                .map_err(|e| in_layer(e, &name))?;
            let (mean, std) = mean_std(y.data());
            let relu = ends_in_relu(&spec);
            self.layers.push(LayerRecord {
                name,
                kind: spec.kind().to_string(),
                output_shape: y.shape().to_vec(),
                output_mean: mean as f32,
                output_std: std as f32,
                dead_fraction: relu.then(|| dead_fraction(&y)),
                input_grad_norm: None,
            });
        }
        Ok(y)
    }

    /// Backward from `dy` = ∂L/∂(output) through the top-level layers, last to first, the
    /// first one without its input gradient (as `Sequential::backward_params`), recording
    /// the norm of the gradient reaching every other layer's input.
    pub fn backward_params(&mut self, model: &mut dyn Layer, dy: Tensor) -> Result<()> {
        let mut layers = top_level(model);
        self.expect_same_network(layers.len())?;
        let mut d = dy;
        for (i, (name, layer)) in layers.iter_mut().enumerate().rev() {
            if i == 0 {
                return layer.backward_params(d).map_err(|e| in_layer(e, name));
            }
            d = layer.backward(d).map_err(|e| in_layer(e, name))?;
            self.layers[i].input_grad_norm = Some(norm(d.data()) as f32);
        }
        Ok(())
    }

    /// The error for a network other than the one [`Probe::forward`] ran.
    fn expect_same_network(&self, top_level_layers: usize) -> Result<()> {
        if top_level_layers == self.layers.len() {
            Ok(())
        } else {
            Err(Error::config(
                "diagnostics",
                format!(
                    "the probe ran forward through {} top-level layers but this network has {top_level_layers}: \
                     forward, backward and finish must see the same network",
                    self.layers.len()
                ),
            ))
        }
    }

    /// Keeps every parameter's values, to measure how far the optimiser step moves them.
    pub fn before_step(&mut self, model: &dyn Layer) {
        self.before = model
            .params()
            .into_iter()
            .map(|(_, p)| p.value().data().to_vec())
            .collect();
    }

    /// The step's record, read after the optimiser step: the gradients (still in the
    /// parameters) and how far the step moved each parameter. Without
    /// [`Probe::before_step`] (no step taken) the norms are the current values' and the
    /// update ratios are `None`.
    pub fn finish(self, model: &mut dyn Layer, step: StepInfo) -> Result<StepDiagnostics> {
        self.expect_same_network(top_level(model).len())?;
        let params = model.params().len();
        if !self.before.is_empty() && self.before.len() != params {
            return Err(Error::config(
                "diagnostics",
                format!(
                    "{} parameters were kept before the step but the network has {params}: \
                     before_step and finish must see the same network",
                    self.before.len()
                ),
            ));
        }
        let mut before = self.before.into_iter();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (record, (_, layer)) in self.layers.into_iter().zip(top_level(model)) {
            let prefix = if record.name.is_empty() {
                String::new()
            } else {
                format!("{}.", record.name)
            };
            // Sums of squares over the layer's parameters.
            let (mut value_sq, mut grad_sq, mut delta_sq) = (0.0f64, 0.0f64, Some(0.0f64));
            let mut params = Vec::new();
            for (name, p) in layer.params() {
                let now = p.value().data();
                let old = before.next();
                // ‖θ‖ is taken before the step: the values the gradient was computed at.
                let value = norm(old.as_deref().unwrap_or(now));
                let grad = norm(p.grad().data());
                let delta = old.and_then(|old| distance(&old, now));
                value_sq += value * value;
                grad_sq += grad * grad;
                delta_sq = delta_sq.zip(delta).map(|(sum, d)| sum + d * d);
                params.push(ParamDiagnostics {
                    name: prefix.clone() + &name,
                    norm: value as f32,
                    grad_norm: grad as f32,
                    update_ratio: delta.and_then(|d| ratio(d, value)),
                });
            }
            let value = value_sq.sqrt();
            layers.push(LayerDiagnostics {
                name: record.name,
                kind: record.kind,
                output_shape: record.output_shape,
                input_grad_norm: record.input_grad_norm,
                output_mean: record.output_mean,
                output_std: record.output_std,
                dead_fraction: record.dead_fraction,
                param_norm: value as f32,
                grad_norm: grad_sq.sqrt() as f32,
                update_ratio: delta_sq.and_then(|sq| ratio(sq.sqrt(), value)),
                params,
            });
        }
        Ok(StepDiagnostics {
            epoch: step.epoch,
            step: step.step,
            batch: step.batch,
            images: step.images,
            loss: step.loss,
            lr: step.lr,
            layers,
        })
    }
}

/// Where a diagnosed step stands, for its record.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub epoch: usize,
    pub step: usize,
    pub batch: usize,
    pub images: usize,
    pub loss: f32,
    pub lr: f32,
}

/// One training step of `model` on `(x, labels)` with diagnostics: forward, mean
/// cross-entropy (with `label_smoothing`), backward, `optimizer` step. The gradients are
/// cleared first. Returns the record (its `epoch`, `step` and `batch` as given in `at`;
/// `images`, `loss` and `lr` filled in) and the network's output, from which the caller
/// may count the correct answers. A loss that is not finite is returned as
/// [`Error::Diverged`] before the optimiser step.
pub fn diagnosed_step(
    model: &mut dyn Layer,
    optimizer: &mut dyn Optimizer,
    x: &Tensor,
    labels: &[usize],
    label_smoothing: f32,
    at: StepInfo,
) -> Result<(StepDiagnostics, Tensor)> {
    model.zero_grad();
    let mut probe = Probe::new();
    let logits = probe.forward(model, x)?;
    let (loss, dlogits) = loss::cross_entropy(&logits, labels, label_smoothing)?;
    if !loss.is_finite() {
        return Err(Error::Diverged {
            epoch: at.epoch,
            batch: at.batch,
            loss,
        });
    }
    probe.backward_params(model, dlogits)?;
    probe.before_step(model);
    optimizer.step(model)?;
    let info = StepInfo {
        images: labels.len(),
        loss,
        lr: optimizer.lr(),
        ..at
    };
    Ok((probe.finish(model, info)?, logits))
}

/// The diagnostics of one step at initialisation: `model` (untrained) on one batch,
/// stepped once by `optimizer` to measure the update ratios. The step changes `model`;
/// give it a copy to keep the original.
pub fn at_initialisation(
    model: &mut dyn Layer,
    optimizer: &mut dyn Optimizer,
    x: &Tensor,
    labels: &[usize],
) -> Result<StepDiagnostics> {
    let at = StepInfo {
        epoch: 0,
        step: 1,
        batch: 1,
        images: labels.len(),
        loss: f32::NAN,
        lr: optimizer.lr(),
    };
    Ok(diagnosed_step(model, optimizer, x, labels, 0.0, at)?.0)
}

/// True when a layer's output comes straight out of a ReLU: a ReLU, a residual block with
/// ReLU after its sum, or a chain whose last layer is one of these.
pub fn ends_in_relu(spec: &LayerSpec) -> bool {
    match spec {
        LayerSpec::Relu | LayerSpec::BasicBlock { .. } | LayerSpec::Bottleneck { .. } => true,
        LayerSpec::Residual { activation, .. } => activation == "relu",
        LayerSpec::Sequential { layers } => layers.last().is_some_and(ends_in_relu),
        _ => false,
    }
}

/// Lanes of the sums below: eight independent f64 accumulators, which the compiler turns
/// into vector instructions (one accumulator would chain every addition to the last, as
/// the order of floating-point additions is kept).
const LANES: usize = 8;

/// `Σ f(v[i])` in f64, over [`LANES`] accumulators.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += f(x as f64);
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&x| f(x as f64)).sum::<f64>()
}

/// ‖v‖₂, summed in f64.
pub fn norm(v: &[f32]) -> f64 {
    lane_sum(v, |x| x * x).sqrt()
}

/// ‖a − b‖₂, summed in f64; `None` when the lengths differ (a parameter is never
/// resized, so only values of another network would).
fn distance(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            let d = x as f64 - y as f64;
            *s += d * d;
        }
    }
    Some((acc.iter().sum::<f64>() + rest).sqrt())
}

/// `num / den` as f32, `None` when `den` is 0.
fn ratio(num: f64, den: f64) -> Option<f32> {
    (den > 0.0).then(|| (num / den) as f32)
}

/// Mean and population standard deviation (`1/n`) of `v`; (0, 0) when empty. One pass,
/// `var = Σx²/n − mean²` in f64 (activations are far from the magnitudes where that
/// cancels badly in double precision).
pub fn mean_std(v: &[f32]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let (mut sum, mut sq) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for ((s, q), &x) in sum.iter_mut().zip(&mut sq).zip(chunk) {
            let x = x as f64;
            *s += x;
            *q += x * x;
        }
    }
    let n = v.len() as f64;
    let mean = (sum.iter().sum::<f64>() + rest.iter().map(|&x| x as f64).sum::<f64>()) / n;
    let squares = sq.iter().sum::<f64>() + rest.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
    let var = (squares / n - mean * mean).max(0.0);
    (mean, var.sqrt())
}

/// The fraction of units of `y` = (N, C, …) that are zero for every image of the batch: a
/// unit is a channel `c` (all of `y[n, c, …]`, over every `n` and position) — a feature for
/// an (N, F) tensor. A tensor with fewer than two axes has no units: 0.
pub fn dead_fraction(y: &Tensor) -> f32 {
    let shape = y.shape();
    if shape.len() < 2 || shape[1] == 0 {
        return 0.0;
    }
    let (n, c) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    let mut alive = vec![false; c];
    let data = y.data();
    for i in 0..n {
        for (ch, seen) in alive.iter_mut().enumerate() {
            if !*seen {
                let start = (i * c + ch) * plane;
                *seen = data[start..start + plane].iter().any(|&v| v != 0.0);
            }
        }
    }
    alive.iter().filter(|&&a| !a).count() as f32 / c as f32
}

/// Serde for an `f32` that may not be finite: written as `null`, read back as NaN.
mod finite {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f32(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
    }
}

/// Serde for an `Option<f32>`: `None` and numbers that are not finite are written as
/// `null`, and `null` is read back as `None`.
mod finite_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) if x.is_finite() => s.serialize_f32(*x),
            _ => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        Option::<f32>::deserialize(d)
    }
}
