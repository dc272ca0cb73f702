//! Architecture descriptions: a network written down as data (TOML or JSON) — the input it
//! takes and its layers with their settings. The model zoo, architecture files and
//! checkpoints all describe networks this way, and [`Architecture::build`] turns a
//! description into a [`Sequential`] after checking every shape.
//!
//! ```toml
//! input = [1, 28, 28]          # C, H, W of one image
//!
//! [[layers]]
//! type = "conv2d"
//! out_channels = 6
//! kernel = 5
//! padding = 2
//!
//! [[layers]]
//! type = "relu"
//! ```
//!
//! Input sizes (`in_channels`, `in_features`, BatchNorm's features) follow from the
//! previous layer; when written anyway they are checked against it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, Dropout, Flatten, GlobalAvgPool,
    Layer, LeakyRelu, Linear, MaxPool2d, Padding, Pool2dConfig, Relu, Residual, Sigmoid, Softmax,
    Tanh,
};
use crate::network::Sequential;
use crate::rng::Rng;
use crate::tensor::shape_str;

/// A whole network: the shape of one input image and the layers in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// A name for tables and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// (C, H, W) of one input image.
    pub input: [usize; 3],
    pub layers: Vec<LayerSpec>,
}

/// One size per axis, written `3` (both axes) or `[3, 5]` (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    Square(usize),
    Rect([usize; 2]),
}

impl Size2 {
    /// (height, width)
    pub fn hw(self) -> (usize, usize) {
        match self {
            Size2::Square(s) => (s, s),
            Size2::Rect([h, w]) => (h, w),
        }
    }
}

/// Zero padding, written `1` (all sides), `[ph, pw]` or `[top, bottom, left, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PadSpec {
    Uniform(usize),
    Symmetric([usize; 2]),
    PerSide([usize; 4]),
}

impl Default for PadSpec {
    fn default() -> Self {
        PadSpec::Uniform(0)
    }
}

fn one() -> Size2 {
    Size2::Square(1)
}
fn yes() -> bool {
    true
}
fn half() -> f32 {
    0.5
}
fn leaky_slope() -> f32 {
    0.01
}
fn is_one(s: &Size2) -> bool {
    s.hw() == (1, 1)
}
fn is_zero(p: &PadSpec) -> bool {
    *p == PadSpec::Uniform(0)
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_one_usize(g: &usize) -> bool {
    *g == 1
}

/// One layer of an [`Architecture`], tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerSpec {
    Conv2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_channels: Option<usize>,
        out_channels: usize,
        kernel: Size2,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        stride: Size2,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: PadSpec,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        dilation: Size2,
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        groups: usize,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    Linear {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_features: Option<usize>,
        out_features: usize,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    Flatten,
    Relu,
    LeakyRelu {
        #[serde(default = "leaky_slope")]
        negative_slope: f32,
    },
    Sigmoid,
    Tanh,
    Softmax,
    MaxPool2d {
        kernel: Size2,
        /// Defaults to the kernel size, as in PyTorch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Size2>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        padding: Option<Size2>,
    },
    AvgPool2d {
        kernel: Size2,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Size2>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        padding: Option<Size2>,
    },
    GlobalAvgPool,
    Dropout {
        #[serde(default = "half")]
        p: f32,
    },
    BatchNorm2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<usize>,
    },
    BatchNorm1d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<usize>,
    },
    /// `y = activation(main(x) + shortcut(x))`; no shortcut means the identity.
    Residual {
        main: Vec<LayerSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shortcut: Option<Vec<LayerSpec>>,
        /// `"relu"` (the default) or `"none"`.
        #[serde(default = "relu_name")]
        activation: String,
    },
    /// The ResNet basic block: 3×3 conv (stride) – BN – ReLU – 3×3 conv – BN, plus an
    /// identity shortcut, or a 1×1 conv (stride) – BN when the shape changes; then ReLU.
    BasicBlock {
        out_channels: usize,
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        stride: usize,
    },
}

fn default_groups() -> usize {
    1
}
fn relu_name() -> String {
    "relu".into()
}

impl Architecture {
    /// Reads a TOML file, or JSON when the name ends in `.json`. Errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, is_json).map_err(|message| Error::Format {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses TOML (or JSON) text; the error is a one-line message.
    pub fn parse(text: &str, json: bool) -> std::result::Result<Self, String> {
        if json {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| one_line(&e.to_string()))
        }
    }

    /// The description as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an architecture always serialises")
    }

    /// The description as one line of JSON (stored in checkpoints).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an architecture always serialises")
    }

    /// Builds the network with weights drawn from `rng`, checking every shape on the way.
    pub fn build(&self, rng: &mut Rng) -> Result<Sequential> {
        build_sequence(
            &self.layers,
            &[1, self.input[0], self.input[1], self.input[2]],
            rng,
        )
    }

    /// The output shape for one image, `(1, …)`.
    pub fn output_shape(&self) -> Result<Vec<usize>> {
        let net = self.build(&mut Rng::new(0))?;
        net.output_shape(&[1, self.input[0], self.input[1], self.input[2]])
    }
}

/// TOML errors span several lines (a source excerpt with a caret); keep the message and
/// the position.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let location = lines.first().copied().unwrap_or_default();
    let detail = lines.last().copied().unwrap_or_default();
    if lines.len() > 1 {
        format!("{location}: {detail}")
    } else {
        detail.to_string()
    }
}

/// Builds `specs` in order for an input of `shape`, naming a failing layer by position.
fn build_sequence(specs: &[LayerSpec], shape: &[usize], rng: &mut Rng) -> Result<Sequential> {
    let mut net = Sequential::new();
    let mut shape = shape.to_vec();
    // The image shape a Flatten turned into the current features, for messages.
    let mut flattened_from: Option<Vec<usize>> = None;
    for (i, spec) in specs.iter().enumerate() {
        let position = format!("layer {i}");
        let layer = spec
            .build(&shape, flattened_from.as_deref(), rng)
            .map_err(|e| e.in_layer(&position))?;
        let next = layer
            .output_shape(&shape)
            .map_err(|e| e.in_layer(&position))?;
        flattened_from = match spec {
            LayerSpec::Flatten => Some(shape.clone()),
            _ if next.len() == 2 && next == shape => flattened_from,
            _ => None,
        };
        shape = next;
        net.push(layer);
    }
    Ok(net)
}

/// `256 = 16×4×4` when the features came from flattening a (N, 16, 4, 4) image.
fn features_origin(features: usize, flattened_from: Option<&[usize]>) -> String {
    match flattened_from {
        Some(shape) if shape.len() > 2 => {
            let dims: Vec<String> = shape[1..].iter().map(|d| d.to_string()).collect();
            format!("{features} = {}", dims.join("×"))
        }
        _ => features.to_string(),
    }
}

fn image_channels(kind: &str, shape: &[usize]) -> Result<usize> {
    if shape.len() == 4 {
        Ok(shape[1])
    } else {
        Err(Error::shape(kind, "(N, C, H, W)", shape)
            .with_hint("image layers must come before the Flatten"))
    }
}

fn flat_features(kind: &str, shape: &[usize]) -> Result<usize> {
    if shape.len() == 2 {
        Ok(shape[1])
    } else {
        Err(Error::shape(kind, "(N, F)", shape).with_hint(format!(
            "add a flatten layer before it; it would give {}",
            features_origin(shape[1..].iter().product(), Some(shape))
        )))
    }
}

/// An explicitly written input size must agree with what the previous layer gives.
fn check_declared(
    kind: &str,
    what: &str,
    declared: Option<usize>,
    actual: usize,
    origin: String,
) -> Result<()> {
    match declared {
        Some(d) if d != actual => Err(Error::config(
            kind,
            format!("expects {d} {what}, but the previous layer gives {origin}"),
        )),
        _ => Ok(()),
    }
}

impl LayerSpec {
    /// The layer's kind, as written after `type =`.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Relu => "relu",
            LayerSpec::LeakyRelu { .. } => "leakyrelu",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Softmax => "softmax",
            LayerSpec::MaxPool2d { .. } => "maxpool2d",
            LayerSpec::AvgPool2d { .. } => "avgpool2d",
            LayerSpec::GlobalAvgPool => "globalavgpool",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::BatchNorm2d { .. } => "batchnorm2d",
            LayerSpec::BatchNorm1d { .. } => "batchnorm1d",
            LayerSpec::Residual { .. } => "residual",
            LayerSpec::BasicBlock { .. } => "basicblock",
        }
    }

    /// The layer for an input of `shape`; input sizes not written come from the shape.
    fn build(
        &self,
        shape: &[usize],
        flattened_from: Option<&[usize]>,
        rng: &mut Rng,
    ) -> Result<Box<dyn Layer>> {
        let kind = self.kind();
        let pool = |kernel: &Size2, stride: &Option<Size2>, padding: &Option<Size2>| Pool2dConfig {
            kernel: kernel.hw(),
            stride: stride.map(Size2::hw),
            padding: padding.map_or((0, 0), Size2::hw),
        };
        Ok(match self {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                let ic = image_channels(kind, shape)?;
                check_declared(
                    kind,
                    "input channels",
                    *in_channels,
                    ic,
                    format!("{ic} channels"),
                )?;
                let mut config = Conv2dConfig::new(ic, *out_channels, 1);
                config.kernel = kernel.hw();
                config.stride = stride.hw();
                config.dilation = dilation.hw();
                config.groups = *groups;
                config.bias = *bias;
                config.padding = match *padding {
                    PadSpec::Uniform(p) => Padding::uniform(p),
                    PadSpec::Symmetric([ph, pw]) => Padding::symmetric(ph, pw),
                    PadSpec::PerSide([top, bottom, left, right]) => Padding {
                        top,
                        bottom,
                        left,
                        right,
                    },
                };
                Box::new(Conv2d::new(config, rng)?)
            }
            LayerSpec::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let features = flat_features(kind, shape)?;
                check_declared(
                    kind,
                    "inputs",
                    *in_features,
                    features,
                    features_origin(features, flattened_from),
                )?;
                Box::new(Linear::with_init(
                    features,
                    *out_features,
                    *bias,
                    crate::init::Init::PytorchDefault,
                    rng,
                )?)
            }
            LayerSpec::Flatten => Box::new(Flatten::new()),
            LayerSpec::Relu => Box::new(Relu::new()),
            LayerSpec::LeakyRelu { negative_slope } => Box::new(LeakyRelu::new(*negative_slope)),
            LayerSpec::Sigmoid => Box::new(Sigmoid::new()),
            LayerSpec::Tanh => Box::new(Tanh::new()),
            LayerSpec::Softmax => Box::new(Softmax::new()),
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            } => Box::new(MaxPool2d::new(pool(kernel, stride, padding))?),
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
            } => Box::new(AvgPool2d::new(pool(kernel, stride, padding))?),
            LayerSpec::GlobalAvgPool => Box::new(GlobalAvgPool::new()),
            LayerSpec::Dropout { p } => Box::new(Dropout::new(*p, rng)?),
            LayerSpec::BatchNorm2d { features } => {
                let c = image_channels(kind, shape)?;
                check_declared(kind, "features", *features, c, format!("{c} channels"))?;
                Box::new(BatchNorm2d::new(c)?)
            }
            LayerSpec::BatchNorm1d { features } => {
                let f = flat_features(kind, shape)?;
                check_declared(
                    kind,
                    "features",
                    *features,
                    f,
                    features_origin(f, flattened_from),
                )?;
                Box::new(BatchNorm1d::new(f)?)
            }
            LayerSpec::Residual {
                main,
                shortcut,
                activation,
            } => {
                let main = build_sequence(main, shape, rng).map_err(|e| e.in_layer("main"))?;
                let shortcut = match shortcut {
                    Some(specs) => Some(
                        build_sequence(specs, shape, rng).map_err(|e| e.in_layer("shortcut"))?,
                    ),
                    None => None,
                };
                let act: Option<Box<dyn Layer>> = match activation.as_str() {
                    "relu" => Some(Box::new(Relu::new())),
                    "none" => None,
                    other => {
                        return Err(Error::config(
                            kind,
                            format!("activation '{other}' is not one of relu, none"),
                        ))
                    }
                };
                Box::new(Residual::new(main, shortcut, act))
            }
            LayerSpec::BasicBlock {
                out_channels,
                stride,
            } => {
                let ic = image_channels(kind, shape)?;
                Box::new(Residual::basic_block(ic, *out_channels, *stride, rng)?)
            }
        })
    }
}

/// Describes a shape for messages (re-exported for callers that print architectures).
pub fn describe_shape(shape: &[usize]) -> String {
    shape_str(shape)
}
