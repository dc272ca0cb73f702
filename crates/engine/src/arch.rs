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
use crate::layers::LayerExt;
use crate::layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d,
    ConvTranspose2dConfig, Dropout, Flatten, GlobalAvgPool, Hardswish, Layer, LeakyRelu, Linear,
    MaxPool2d, Padding, Pool2dConfig, Relu, Sigmoid, Silu, Softmax, Tanh, Upsample, UpsampleSize,
};
use crate::network::{dense, Concat, Dense, Residual, Scale, Sequential};
use crate::rng::Rng;
pub use crate::spec::{BatchNormSpec, LayerSpec, PadSpec, Size2};
use crate::tensor::shape_str;

/// The largest architecture file read: 1 MiB, hundreds of times a ResNet's description.
pub const MAX_ARCHITECTURE_BYTES: u64 = 1 << 20;

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

impl Architecture {
    /// Reads a TOML file, or JSON when the name ends in `.json`, of at most
    /// [`MAX_ARCHITECTURE_BYTES`]. Errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = crate::files::read(path, MAX_ARCHITECTURE_BYTES, "architecture files")?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::format(
                path,
                format!("not UTF-8 text ({e}); architecture files are TOML or JSON"),
            )
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, is_json).map_err(|message| Error::format(path, message))
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
    // Each layer checks its own size before allocating; this checks their sum.
    let mut params: u128 = 0;
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
        params += layer.param_count() as u128;
        crate::memory::expect_fits(&position, "the parameters up to here", Some(params))?;
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
    /// The layer for an input of `shape`; input sizes not written come from the shape.
    pub(crate) fn build(
        &self,
        shape: &[usize],
        flattened_from: Option<&[usize]>,
        rng: &mut Rng,
    ) -> Result<Box<dyn Layer>> {
        let kind = self.kind();
        let pool = |kernel: &Size2, stride: &Option<Size2>, padding: &Option<Size2>, ceil_mode| {
            let (kh, kw) = kernel.hw();
            let (ph, pw) = padding.map_or((0, 0), Size2::hw);
            let config = Pool2dConfig::new(1)
                .kernel(kh, kw)
                .padding_hw(ph, pw)
                .ceil_mode(ceil_mode);
            match stride.map(Size2::hw) {
                Some((sh, sw)) => config.stride_hw(sh, sw),
                None => config,
            }
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
                config.padding = padding_sides(*padding);
                Box::new(Conv2d::new(config, rng)?)
            }
            LayerSpec::ConvTranspose2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                output_padding,
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
                let mut config = ConvTranspose2dConfig::new(ic, *out_channels, 1);
                config.kernel = kernel.hw();
                config.stride = stride.hw();
                config.padding = padding.hw();
                config.output_padding = output_padding.hw();
                config.dilation = dilation.hw();
                config.groups = *groups;
                config.bias = *bias;
                Box::new(ConvTranspose2d::new(config, rng)?)
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
            LayerSpec::Silu => Box::new(Silu::new()),
            LayerSpec::Hardswish => Box::new(Hardswish::new()),
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            } => Box::new(MaxPool2d::new(pool(kernel, stride, padding, *ceil_mode))?),
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            } => {
                let config =
                    pool(kernel, stride, padding, *ceil_mode).count_include_pad(*count_include_pad);
                Box::new(AvgPool2d::new(config)?)
            }
            LayerSpec::GlobalAvgPool => Box::new(GlobalAvgPool::new()),
            LayerSpec::Upsample { scale, size, mode } => {
                let size = match (scale, size) {
                    (Some(scale), None) => {
                        let (sh, sw) = scale.hw();
                        UpsampleSize::Scale(sh, sw)
                    }
                    (None, Some(size)) => {
                        let (oh, ow) = size.hw();
                        UpsampleSize::Fixed(oh, ow)
                    }
                    _ => {
                        return Err(Error::config(
                            kind,
                            "give either scale (whole factors, e.g. scale = 2) or size (the \
                             output's height and width), not both or neither",
                        ))
                    }
                };
                Box::new(Upsample::with_size(size, *mode)?)
            }
            LayerSpec::Dropout { p } => Box::new(Dropout::new(*p, rng)?),
            LayerSpec::BatchNorm2d(bn) => {
                let c = image_channels(kind, shape)?;
                check_declared(kind, "features", bn.features, c, format!("{c} channels"))?;
                Box::new(BatchNorm2d::with_config(BatchNormConfig::from_spec(bn, c))?)
            }
            LayerSpec::BatchNorm1d(bn) => {
                let f = flat_features(kind, shape)?;
                let origin = features_origin(f, flattened_from);
                check_declared(kind, "features", bn.features, f, origin)?;
                Box::new(BatchNorm1d::with_config(BatchNormConfig::from_spec(bn, f))?)
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
                Box::new(Residual::new(main, shortcut, activation_layer(kind, activation)?))
            }
            LayerSpec::Sequential { layers } => Box::new(build_sequence(layers, shape, rng)?),
            LayerSpec::Custom { kind } => {
                return Err(Error::config(
                    "custom",
                    format!("'{kind}' is defined in code outside ocellus and cannot be built from a description"),
                ))
            }
            LayerSpec::BasicBlock {
                out_channels,
                stride,
            } => {
                let ic = image_channels(kind, shape)?;
                Box::new(Residual::basic_block(ic, *out_channels, *stride, rng)?)
            }
            LayerSpec::Bottleneck {
                out_channels,
                stride,
                expansion,
            } => {
                let ic = image_channels(kind, shape)?;
                Box::new(Residual::bottleneck(
                    ic,
                    *out_channels,
                    *stride,
                    *expansion,
                    rng,
                )?)
            }
            LayerSpec::Concat { branches } => {
                let mut built = Vec::with_capacity(branches.len());
                let mut params = 0;
                for (i, specs) in branches.iter().enumerate() {
                    let branch = build_sequence(specs, shape, rng)
                        .map_err(|e| e.in_layer(&format!("branch {i}")))?;
                    params = fits_with(kind, params, &branch)?;
                    built.push(branch);
                }
                Box::new(Concat::new(built)?)
            }
            LayerSpec::Dense { layers } => {
                image_channels(kind, shape)?;
                let mut built = Vec::with_capacity(layers.len());
                let mut features = shape.to_vec();
                let mut params = 0;
                for (i, specs) in layers.iter().enumerate() {
                    let position = format!("layer {i}");
                    let layer = build_sequence(specs, &features, rng)
                        .map_err(|e| e.in_layer(&position))?;
                    let h = layer
                        .output_shape(&features)
                        .map_err(|e| e.in_layer(&position))?;
                    // The next layer reads everything so far.
                    features = dense::joined(shape, &features, &h, i)?;
                    params = fits_with(kind, params, &layer)?;
                    built.push(layer);
                }
                Box::new(Dense::new(built)?)
            }
            LayerSpec::DenseBlock { layers, growth } => {
                let ic = image_channels(kind, shape)?;
                Box::new(Dense::bottleneck_layers(ic, *layers, *growth, rng)?)
            }
            LayerSpec::Scale { gate } => {
                image_channels(kind, shape)?;
                let gate = build_sequence(gate, shape, rng).map_err(|e| e.in_layer("gate"))?;
                Box::new(Scale::new(gate))
            }
            LayerSpec::SqueezeExcite {
                squeeze_channels,
                reduction,
                activation,
            } => {
                let c = image_channels(kind, shape)?;
                if *reduction == 0 {
                    return Err(Error::config(kind, "reduction must be positive"));
                }
                let squeeze = squeeze_channels.unwrap_or((c / reduction).max(1));
                let Some(act) = activation_layer(kind, activation)? else {
                    return Err(Error::config(kind, "the gate needs an activation, not none"));
                };
                Box::new(Scale::squeeze_excitation(c, squeeze, act, rng)?)
            }
            LayerSpec::MbConv {
                out_channels,
                expand_ratio,
                kernel,
                stride,
            } => {
                let ic = image_channels(kind, shape)?;
                mb_conv(ic, *out_channels, *expand_ratio, *kernel, *stride, rng)?
            }
            LayerSpec::SeparableConv2d {
                out_channels,
                kernel,
                stride,
                padding,
                bias,
            } => {
                let c = image_channels(kind, shape)?;
                let (kh, kw) = kernel.hw();
                let (sh, sw) = stride.hw();
                let depthwise = Conv2dConfig::new(c, c, 1)
                    .kernel(kh, kw)
                    .stride_hw(sh, sw)
                    .padding_sides(padding_sides(*padding))
                    .groups(c)
                    .bias(*bias);
                let pointwise = Conv2dConfig::new(c, *out_channels, 1).bias(*bias);
                Box::new(
                    Sequential::new()
                        .with(Conv2d::new(depthwise, rng)?)
                        .with(Conv2d::new(pointwise, rng)?),
                )
            }
        })
    }
}

/// EfficientNet's MBConv block ([`LayerSpec::MbConv`]): a [`Residual`] without an
/// activation after the sum when the shape is kept, else its main path alone.
fn mb_conv(
    ic: usize,
    oc: usize,
    expand_ratio: usize,
    kernel: usize,
    stride: usize,
    rng: &mut Rng,
) -> Result<Box<dyn Layer>> {
    if expand_ratio == 0 || kernel.is_multiple_of(2) {
        return Err(Error::config(
            "mbconv",
            format!("expand_ratio = {expand_ratio} must be positive and kernel = {kernel} odd"),
        ));
    }
    let wide = ic
        .checked_mul(expand_ratio)
        .ok_or_else(|| Error::config("mbconv", "the expanded channel count overflows"))?;
    // Checked before allocating any of it, each parameter held twice (value and
    // gradient): expansion, depthwise, the gate's two 1×1 convolutions, projection, and
    // their BatchNorms.
    let squeeze = (ic / 4).max(1);
    let (i, w, o, k, s) = (
        ic as u128,
        wide as u128,
        oc as u128,
        kernel as u128,
        squeeze as u128,
    );
    let expand = if expand_ratio == 1 { 0 } else { i * w + 2 * w };
    let params = expand + w * k * k + 2 * w + (w * s + s) + (s * w + w) + w * o + 2 * o;
    crate::memory::expect_fits("mbconv", "its parameters", Some(2 * params))?;
    let conv = |c: Conv2dConfig, rng: &mut Rng| Conv2d::new(c.bias(false), rng);
    let mut main = Sequential::new();
    if expand_ratio != 1 {
        main = main
            .with(conv(Conv2dConfig::new(ic, wide, 1), rng)?)
            .with(BatchNorm2d::new(wide)?)
            .with(Silu::new());
    }
    let depthwise = Conv2dConfig::new(wide, wide, kernel)
        .stride(stride)
        .padding(kernel / 2)
        .groups(wide);
    let main = main
        .with(conv(depthwise, rng)?)
        .with(BatchNorm2d::new(wide)?)
        .with(Silu::new())
        .with(Scale::squeeze_excitation(
            wide,
            squeeze,
            Box::new(Silu::new()),
            rng,
        )?)
        .with(conv(Conv2dConfig::new(wide, oc, 1), rng)?)
        .with(BatchNorm2d::new(oc)?);
    Ok(if stride == 1 && ic == oc {
        Box::new(Residual::new(main, None, None))
    } else {
        Box::new(main)
    })
}

/// `params` plus the parameters of `part`, a path of block `kind`, checked against the
/// machine's memory: each path checked its own, a block checks their sum.
fn fits_with(kind: &str, params: u128, part: &Sequential) -> Result<u128> {
    let params = params + part.param_count() as u128;
    crate::memory::expect_fits(kind, "the parameters of its paths", Some(params))?;
    Ok(params)
}

/// The padding of each side a [`PadSpec`] writes.
fn padding_sides(padding: PadSpec) -> Padding {
    let [top, bottom, left, right] = padding.sides();
    Padding {
        top,
        bottom,
        left,
        right,
    }
}

/// The activation a block's `activation` setting names (`"none"`: no layer).
fn activation_layer(kind: &str, name: &str) -> Result<Option<Box<dyn Layer>>> {
    Ok(Some(match name {
        "relu" => Box::new(Relu::new()),
        "sigmoid" => Box::new(Sigmoid::new()),
        "tanh" => Box::new(Tanh::new()),
        "silu" => Box::new(Silu::new()),
        "hardswish" => Box::new(Hardswish::new()),
        "none" => return Ok(None),
        other => {
            return Err(Error::config(
                kind,
                format!(
                    "activation '{other}' is not one of relu, sigmoid, tanh, silu, hardswish, none"
                ),
            ))
        }
    }))
}

/// Describes a shape for messages (re-exported for callers that print architectures).
pub fn describe_shape(shape: &[usize]) -> String {
    shape_str(shape)
}
