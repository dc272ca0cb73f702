//! Transfer learning: starting a network from the weights of a trained one, with a new
//! classifier head when the class count differs, and training it with its first layers
//! frozen.
//!
//! Weights are matched by their `state_dict` names and shapes. The *head* is the last
//! top-level layer with parameters (the final linear layer of every zoo model); when its
//! shapes differ from the source's it keeps its fresh initialisation. Every other tensor
//! must be in the source with the same shape, and the source may hold nothing else.
//!
//! A frozen layer is a fixed function: [`PartlyFrozen`] runs the first `frozen` layers
//! of a [`Sequential`] in [`Mode::Eval`] (BatchNorm keeps its running statistics,
//! dropout is off), sends no gradient into them (the first trainable layer computes its
//! parameter gradients only, as the first layer of a network does), and lists only the
//! trainable layers' parameters, so that the optimiser neither updates nor decays the
//! frozen ones and keeps no state for them.

use std::path::Path;

use ocellus::error::{Error, Result};
use ocellus::layers::{Key, Layer, LayerExt, Mode, Part, PartMut};
use ocellus::network::Sequential;
use ocellus::spec::LayerSpec;
use ocellus::tensor::{shape_str, Tensor};

use crate::run::load_model;

/// What [`init_from`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct Transferred {
    /// Parameters and buffers copied from the source.
    pub copied: usize,
    /// The head's layer name and its (source, new) weight shapes, when it was replaced.
    pub replaced_head: Option<(String, Vec<usize>, Vec<usize>)>,
}

/// The position of the head of `model`: its last top-level layer with parameters.
pub fn head_index(model: &Sequential) -> Option<usize> {
    model
        .layers()
        .iter()
        .rposition(|layer| !layer.params().is_empty())
}

/// The top-level layer a `state_dict` name belongs to (`"4.main.0.weight"` → 4).
fn top_level(name: &str) -> Option<usize> {
    name.split('.').next()?.parse().ok()
}

/// Copies the weights of `source` into `model`, keeping `model`'s head when its shapes
/// differ (a new class count). Everything is checked before anything is copied; an error
/// names the layer, both shapes and `source_name`, and leaves `model` as it was.
pub fn init_from(
    model: &mut Sequential,
    source: &Sequential,
    source_name: &Path,
) -> Result<Transferred> {
    let err = |message: String| {
        Error::config(
            "--init-from",
            format!(
                "{}: {message}: the architecture does not fit",
                source_name.display()
            ),
        )
    };
    let describe = |net: &Sequential, name: &str| {
        top_level(name)
            .and_then(|i| net.layers().get(i))
            .map_or_else(String::new, |l| format!(" ({})", l.kind()))
    };
    let head = head_index(model);
    let in_head = |name: &str| head.is_some() && top_level(name) == head;
    let given = ocellus::checkpoint::state_dict(source);
    let wanted = ocellus::checkpoint::state_dict(model);
    let find = |name: &str| given.iter().find(|(n, _)| n == name).map(|(_, t)| t);
    // The head is replaced whole when any of its tensors differs in shape.
    let replaced_head = wanted.iter().find_map(|(name, tensor)| {
        let t = find(name).filter(|t| in_head(name) && t.shape() != tensor.shape())?;
        let weight = format!("{}.weight", head?);
        let (source_shape, new_shape) =
            match (find(&weight), wanted.iter().find(|(n, _)| *n == weight)) {
                (Some(s), Some((_, w))) => (s.shape().to_vec(), w.shape().to_vec()),
                _ => (t.shape().to_vec(), tensor.shape().to_vec()),
            };
        Some((head?.to_string(), source_shape, new_shape))
    });
    let mut copies: Vec<(String, Tensor)> = Vec::new();
    for (name, tensor) in &wanted {
        if replaced_head.is_some() && in_head(name) {
            continue;
        }
        let layer = name.rsplit_once('.').map_or(name.as_str(), |(l, _)| l);
        match find(name) {
            Some(t) if t.shape() == tensor.shape() => copies.push((name.clone(), t.clone())),
            Some(t) => {
                return Err(err(format!(
                    "layer {layer}{}: {name} is {} in the network to train but {} in the source",
                    describe(model, name),
                    shape_str(tensor.shape()),
                    shape_str(t.shape())
                )))
            }
            None => {
                return Err(err(format!(
                    "layer {layer}{} needs {name}, of shape {}, which the source does not have",
                    describe(model, name),
                    shape_str(tensor.shape())
                )))
            }
        }
    }
    if let Some((name, t)) = given
        .iter()
        .find(|(n, _)| !wanted.iter().any(|(w, _)| w == n))
    {
        let layer = name.rsplit_once('.').map_or(name.as_str(), |(l, _)| l);
        return Err(err(format!(
            "the source's layer {layer}{} has {name}, of shape {}, which this network does not have",
            describe(source, name),
            shape_str(t.shape())
        )));
    }
    let copied = copies.len();
    for (name, tensor) in copies {
        model.set(&name, tensor)?;
    }
    Ok(Transferred {
        copied,
        replaced_head,
    })
}

/// Loads the model of the run directory or model file `source` into `model` by
/// [`init_from`].
pub fn init_from_run(model: &mut Sequential, source: &Path) -> Result<Transferred> {
    let (source_model, _) = load_model(source).map_err(|e| match e {
        Error::Io { .. } | Error::Format { .. } => {
            Error::config("--init-from", format!("cannot load the source model: {e}"))
        }
        other => other,
    })?;
    init_from(model, &source_model, source)
}

/// `architecture`'s layers with the head's output resized to `classes`: what a network
/// pretrained for another class count is fine-tuned as. Only a linear head can be resized.
pub fn with_classes(
    layers: &[LayerSpec],
    model: &Sequential,
    classes: usize,
) -> Result<Vec<LayerSpec>> {
    let mut layers = layers.to_vec();
    let head = head_index(model)
        .ok_or_else(|| Error::config("--init-from", "the source model has no parameters"))?;
    match &mut layers[head] {
        LayerSpec::Linear { out_features, .. } => *out_features = classes,
        other => {
            return Err(Error::config(
                "--init-from",
                format!(
                    "the source's head, layer {head}, is a {} layer, not a linear one: give \
                     --model with an architecture for {classes} classes",
                    other.kind()
                ),
            ))
        }
    }
    Ok(layers)
}

/// How many top-level layers of `model` `--freeze N` or `--freeze-through LAYER` freezes.
/// Whole top-level layers are frozen (a block counts as one), and at least one layer with
/// parameters must remain trainable.
pub fn frozen_count(
    model: &Sequential,
    count: Option<usize>,
    through: Option<&str>,
) -> Result<usize> {
    let layers = model.len();
    let listing = || {
        let names: Vec<String> = model
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{i} ({})", l.kind()))
            .collect();
        format!("the layers are {}", names.join(", "))
    };
    let (frozen, flag) = match (count, through) {
        (Some(n), None) => {
            if n > layers {
                return Err(Error::config(
                    "--freeze",
                    format!("{n} layers, but the network has {layers}; {}", listing()),
                ));
            }
            (n, "--freeze")
        }
        (None, Some(name)) => {
            let index = match name.parse::<usize>() {
                Ok(i) if i < layers => i,
                _ => {
                    let inside = name
                        .split_once('.')
                        .and_then(|(top, _)| top.parse::<usize>().ok())
                        .filter(|&top| top < layers);
                    let message = match inside {
                        Some(top) if model.params().iter().any(|(n, _)| n.starts_with(&format!("{name}."))) => format!(
                            "layer '{name}' is inside block {top}; whole layers of the network are frozen: --freeze-through {top} freezes up to and including the block"
                        ),
                        _ => format!("no layer named '{name}'; {}", listing()),
                    };
                    return Err(Error::config("--freeze-through", message));
                }
            };
            (index + 1, "--freeze-through")
        }
        (None, None) => return Ok(0),
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "--freeze",
                "give --freeze or --freeze-through, not both",
            ))
        }
    };
    let trainable = model.layers()[frozen..]
        .iter()
        .any(|l| !l.params().is_empty());
    if !trainable {
        return Err(Error::config(
            flag,
            format!(
                "freezing {frozen} of {layers} layers leaves no parameter to train; {}",
                listing()
            ),
        ));
    }
    Ok(frozen)
}

/// A view of a [`Sequential`] whose first `frozen` layers are fixed; see the module docs.
/// Trained through this view, the network changes only in its trainable layers.
pub struct PartlyFrozen<'a> {
    net: &'a mut Sequential,
    frozen: usize,
}

impl<'a> PartlyFrozen<'a> {
    /// Freezes the first `frozen` layers of `net` (at most all of them).
    pub fn new(net: &'a mut Sequential, frozen: usize) -> Self {
        let frozen = frozen.min(net.len());
        PartlyFrozen { net, frozen }
    }
}

impl Layer for PartlyFrozen<'_> {
    fn kind(&self) -> &'static str {
        "sequential"
    }

    fn describe(&self) -> String {
        format!(
            "{} with its first {} layers frozen",
            self.net.describe(),
            self.frozen
        )
    }

    fn spec(&self) -> LayerSpec {
        self.net.spec()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.net.output_shape(input)
    }

    /// x: the first layer's input → y: the last layer's output; frozen layers in
    /// [`Mode::Eval`].
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        let frozen = self.frozen;
        let mut y = x;
        for (i, layer) in self.net.layers_mut().iter_mut().enumerate() {
            let mode = if i < frozen { Mode::Eval } else { mode };
            y = layer
                .forward(y, mode)
                .map_err(|e| e.in_layer(&format!("layer {i}")))?;
        }
        Ok(y)
    }

    /// `dx` through every layer; only what [`Layer::backward_params`] is for (training)
    /// avoids the frozen layers, so this is the whole network's input gradient.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        self.net.backward(dy)
    }

    /// Backward through the trainable layers only, the first of them without `dx`.
    fn backward_params(&mut self, dy: Tensor) -> Result<()> {
        let frozen = self.frozen;
        let trainable = &mut self.net.layers_mut()[frozen..];
        let Some((first, rest)) = trainable.split_first_mut() else {
            return Ok(());
        };
        let mut d = dy;
        for (i, layer) in rest.iter_mut().enumerate().rev() {
            d = layer
                .backward(d)
                .map_err(|e| e.in_layer(&format!("layer {}", frozen + 1 + i)))?;
        }
        first
            .backward_params(d)
            .map_err(|e| e.in_layer(&format!("layer {frozen}")))
    }

    /// The trainable layers, under their positions in the whole network.
    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        let frozen = self.frozen;
        self.net
            .parts()
            .into_iter()
            .filter(|(key, _)| !matches!(key, Key::Index(i) if *i < frozen))
            .collect()
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        let frozen = self.frozen;
        self.net
            .parts_mut()
            .into_iter()
            .filter(|(key, _)| !matches!(key, Key::Index(i) if *i < frozen))
            .collect()
    }
}
