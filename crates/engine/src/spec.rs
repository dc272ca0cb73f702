//! One layer written down as data: the entries of an architecture file (TOML or JSON),
//! tagged by `type`. Every layer describes itself this way ([`crate::layers::Layer::spec`]),
//! so a network built in code can be saved, summarised, checked and exported like one read
//! from a file; [`crate::arch`] builds layers from these entries.

use serde::{Deserialize, Serialize};

/// One size per axis, written `3` (both axes) or `[3, 5]` (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    Square(usize),
    Rect([usize; 2]),
}

impl Size2 {
    /// `(h, w)` written as briefly as it can be: one number when both are equal.
    pub fn from_hw((h, w): (usize, usize)) -> Self {
        if h == w {
            Size2::Square(h)
        } else {
            Size2::Rect([h, w])
        }
    }

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

impl PadSpec {
    /// The zeros on each side: `[top, bottom, left, right]`.
    pub fn sides(self) -> [usize; 4] {
        match self {
            PadSpec::Uniform(p) => [p; 4],
            PadSpec::Symmetric([ph, pw]) => [ph, ph, pw, pw],
            PadSpec::PerSide(sides) => sides,
        }
    }

    /// `ph` rows above and below, `pw` columns left and right, written as briefly as it
    /// can be.
    pub fn from_hw(ph: usize, pw: usize) -> Self {
        if ph == pw {
            PadSpec::Uniform(ph)
        } else {
            PadSpec::Symmetric([ph, pw])
        }
    }
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
fn zero() -> Size2 {
    Size2::Square(0)
}
fn is_zero_size(s: &Size2) -> bool {
    s.hw() == (0, 0)
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_one_usize(g: &usize) -> bool {
    *g == 1
}

/// One layer of an [`crate::arch::Architecture`], tagged by `type`.
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
    /// PyTorch's `nn.ConvTranspose2d`: padding is symmetric, `ph` rows above and below and
    /// `pw` columns left and right, as PyTorch's; `output_padding` adds rows and columns
    /// at the bottom and right ([`crate::layers::ConvTranspose2dConfig`]).
    ConvTranspose2d {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_channels: Option<usize>,
        out_channels: usize,
        kernel: Size2,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        stride: Size2,
        #[serde(default = "zero", skip_serializing_if = "is_zero_size")]
        padding: Size2,
        #[serde(default = "zero", skip_serializing_if = "is_zero_size")]
        output_padding: Size2,
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
    /// `y = x·σ(x)`, PyTorch's `nn.SiLU`.
    Silu,
    /// `y = x·relu6(x + 3)/6`, PyTorch's `nn.Hardswish`.
    Hardswish,
    /// PyTorch's `nn.MaxPool2d` ([`crate::layers::Pool2dConfig`] says what each setting
    /// does); settings at PyTorch's default are not written.
    MaxPool2d {
        kernel: Size2,
        /// Defaults to the kernel size, as in PyTorch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Size2>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        padding: Option<Size2>,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil_mode: bool,
    },
    /// PyTorch's `nn.AvgPool2d`, with the settings of [`LayerSpec::MaxPool2d`] and
    /// `count_include_pad`.
    AvgPool2d {
        kernel: Size2,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Size2>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        padding: Option<Size2>,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil_mode: bool,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        count_include_pad: bool,
    },
    GlobalAvgPool,
    /// PyTorch's `nn.Upsample`: the output is `scale` times the input (whole factors), or
    /// exactly `size`; one of the two is written.
    Upsample {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<Size2>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<Size2>,
        #[serde(default, skip_serializing_if = "UpsampleMode::is_nearest")]
        mode: UpsampleMode,
    },
    Dropout {
        #[serde(default = "half")]
        p: f32,
    },
    /// PyTorch's `nn.BatchNorm2d`.
    BatchNorm2d(BatchNormSpec),
    /// PyTorch's `nn.BatchNorm1d`.
    BatchNorm1d(BatchNormSpec),
    /// `y = activation(main(x) + shortcut(x))`; no shortcut means the identity.
    Residual {
        main: Vec<LayerSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shortcut: Option<Vec<LayerSpec>>,
        /// `"relu"` (the default) or `"none"`.
        #[serde(default = "relu_name")]
        activation: String,
    },
    /// A layer defined outside ocellus: it can be summarised, checked and trained, but
    /// not built from a file or exported.
    Custom {
        kind: String,
    },
    /// Layers applied one after another (a nested [`crate::network::Sequential`]).
    Sequential {
        layers: Vec<LayerSpec>,
    },
    /// The ResNet basic block: 3×3 conv (stride) – BN – ReLU – 3×3 conv – BN, plus an
    /// identity shortcut, or a 1×1 conv (stride) – BN when the shape changes; then ReLU.
    BasicBlock {
        out_channels: usize,
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        stride: usize,
    },
    /// Parallel branches applied to the same input, joined along channels (Inception):
    /// each branch is a list of layers.
    Concat {
        branches: Vec<Vec<LayerSpec>>,
    },
    /// A dense block (DenseNet): each list of layers is applied to the concatenation of
    /// the input and all earlier outputs; the block gives all of them joined.
    Dense {
        layers: Vec<Vec<LayerSpec>>,
    },
    /// `y = x · gate(x)` per channel; the gate maps (N, C, H, W) to (N, C).
    Scale {
        gate: Vec<LayerSpec>,
    },
    /// ResNet's bottleneck block (He et al. 2015, torchvision's `Bottleneck`):
    /// 1×1 conv to `out_channels / expansion` – BN – ReLU – 3×3 conv (stride) – BN – ReLU –
    /// 1×1 conv to `out_channels` – BN, plus the identity or a 1×1 conv (stride) – BN
    /// shortcut; then ReLU.
    Bottleneck {
        out_channels: usize,
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        stride: usize,
        #[serde(default = "four", skip_serializing_if = "is_four")]
        expansion: usize,
    },
    /// A depthwise-separable convolution (MobileNet, EfficientNet): a `kernel` depthwise
    /// convolution (`groups` = channels) then a 1×1 pointwise one to `out_channels`.
    SeparableConv2d {
        out_channels: usize,
        kernel: Size2,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        stride: Size2,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: PadSpec,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    /// Squeeze-and-excitation (Hu et al. 2018): a [`LayerSpec::Scale`] whose gate is
    /// global average pooling – 1×1 conv to `squeeze_channels` – `activation` – 1×1 conv
    /// back – sigmoid. `squeeze_channels` defaults to `channels / reduction` (at least 1).
    SqueezeExcite {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        squeeze_channels: Option<usize>,
        #[serde(default = "sixteen")]
        reduction: usize,
        #[serde(default = "relu_name")]
        activation: String,
    },
    /// DenseNet-BC's dense block: `layers` layers of BN – ReLU – 1×1 conv to
    /// 4·`growth` – BN – ReLU – 3×3 conv to `growth`, as a [`LayerSpec::Dense`].
    DenseBlock {
        layers: usize,
        growth: usize,
    },
    /// EfficientNet's MBConv block (Tan & Le 2019, as torchvision builds it): 1×1 conv
    /// expanding to `expand_ratio`× the channels – BN – SiLU (left out at ratio 1), a
    /// `kernel` depthwise conv (stride) – BN – SiLU, squeeze-and-excitation (squeezing to
    /// a quarter of the block's input channels, SiLU), 1×1 conv to `out_channels` – BN;
    /// plus the identity when the shape is kept.
    MbConv {
        out_channels: usize,
        #[serde(default = "six")]
        expand_ratio: usize,
        #[serde(default = "three")]
        kernel: usize,
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        stride: usize,
    },
}

fn six() -> usize {
    6
}
fn three() -> usize {
    3
}

fn four() -> usize {
    4
}
fn is_four(n: &usize) -> bool {
    *n == 4
}
fn sixteen() -> usize {
    16
}

fn default_groups() -> usize {
    1
}

/// How [`LayerSpec::Upsample`] fills the new pixels: PyTorch's `mode="nearest"` (the
/// default) or `mode="bilinear"` with `align_corners=False`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsampleMode {
    /// Each output pixel copies the input pixel it falls in.
    #[default]
    Nearest,
    /// Each output pixel interpolates the four input pixels around its centre.
    Bilinear,
}

impl UpsampleMode {
    fn is_nearest(&self) -> bool {
        *self == UpsampleMode::Nearest
    }
}
/// PyTorch's default BatchNorm `eps`, added to the variance before the square root.
pub const BATCHNORM_EPS: f64 = 1e-5;

/// PyTorch's default BatchNorm `momentum`:
/// `running = (1 − momentum)·running + momentum·batch`.
pub const BATCHNORM_MOMENTUM: f64 = 0.1;

/// The settings of a BatchNorm entry; they default to PyTorch's and are written only when
/// they differ ([`crate::layers::BatchNormConfig`] says what each does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSpec {
    /// Channels (features); follows from the previous layer when not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<usize>,
    #[serde(default = "bn_eps", skip_serializing_if = "is_bn_eps")]
    pub eps: f64,
    /// A number, or `"none"` for PyTorch's `momentum=None` (a cumulative average).
    #[serde(
        default = "bn_momentum",
        skip_serializing_if = "is_bn_momentum",
        with = "momentum"
    )]
    pub momentum: Option<f64>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub affine: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub track_running_stats: bool,
}

impl Default for BatchNormSpec {
    /// PyTorch's `nn.BatchNorm2d(C)`, C following from the previous layer.
    fn default() -> Self {
        BatchNormSpec {
            features: None,
            eps: BATCHNORM_EPS,
            momentum: bn_momentum(),
            affine: true,
            track_running_stats: true,
        }
    }
}

fn bn_eps() -> f64 {
    BATCHNORM_EPS
}
fn is_bn_eps(eps: &f64) -> bool {
    *eps == BATCHNORM_EPS
}
fn bn_momentum() -> Option<f64> {
    Some(BATCHNORM_MOMENTUM)
}
fn is_bn_momentum(m: &Option<f64>) -> bool {
    *m == bn_momentum()
}

/// BatchNorm's momentum as written in an architecture file: a number, or the word
/// `"none"` for PyTorch's `momentum=None` (TOML has no null; JSON's `null` is read as
/// `"none"` too).
mod momentum {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(momentum: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match momentum {
            Some(m) => s.serialize_f64(*m),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Word(String),
        }
        match Option::<Written>::deserialize(d)? {
            Some(Written::Number(m)) => Ok(Some(m)),
            Some(Written::Word(w)) if w.eq_ignore_ascii_case("none") => Ok(None),
            None => Ok(None),
            Some(Written::Word(w)) => Err(D::Error::custom(format!(
                "momentum must be a number in [0, 1] or \"none\" (a cumulative average), got \"{w}\""
            ))),
        }
    }
}
fn relu_name() -> String {
    "relu".into()
}

impl LayerSpec {
    /// The layer's kind, as written after `type =`.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::ConvTranspose2d { .. } => "convtranspose2d",
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Relu => "relu",
            LayerSpec::LeakyRelu { .. } => "leakyrelu",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Softmax => "softmax",
            LayerSpec::Silu => "silu",
            LayerSpec::Hardswish => "hardswish",
            LayerSpec::MaxPool2d { .. } => "maxpool2d",
            LayerSpec::AvgPool2d { .. } => "avgpool2d",
            LayerSpec::GlobalAvgPool => "globalavgpool",
            LayerSpec::Upsample { .. } => "upsample",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::BatchNorm2d(_) => "batchnorm2d",
            LayerSpec::BatchNorm1d(_) => "batchnorm1d",
            LayerSpec::Residual { .. } => "residual",
            LayerSpec::Custom { .. } => "custom",
            LayerSpec::Sequential { .. } => "sequential",
            LayerSpec::BasicBlock { .. } => "basicblock",
            LayerSpec::Concat { .. } => "concat",
            LayerSpec::Dense { .. } => "dense",
            LayerSpec::Scale { .. } => "scale",
            LayerSpec::Bottleneck { .. } => "bottleneck",
            LayerSpec::SeparableConv2d { .. } => "separableconv2d",
            LayerSpec::SqueezeExcite { .. } => "squeezeexcite",
            LayerSpec::DenseBlock { .. } => "denseblock",
            LayerSpec::MbConv { .. } => "mbconv",
        }
    }

    /// How the layer's children make its output. The match names every kind, so a new
    /// container cannot be mistaken for a leaf by the code that opens containers.
    pub fn composition(&self) -> Composition {
        match self {
            LayerSpec::Conv2d { .. }
            | LayerSpec::ConvTranspose2d { .. }
            | LayerSpec::Linear { .. }
            | LayerSpec::Flatten
            | LayerSpec::Relu
            | LayerSpec::LeakyRelu { .. }
            | LayerSpec::Sigmoid
            | LayerSpec::Tanh
            | LayerSpec::Softmax
            | LayerSpec::Silu
            | LayerSpec::Hardswish
            | LayerSpec::MaxPool2d { .. }
            | LayerSpec::AvgPool2d { .. }
            | LayerSpec::GlobalAvgPool
            | LayerSpec::Upsample { .. }
            | LayerSpec::Dropout { .. }
            | LayerSpec::BatchNorm2d(_)
            | LayerSpec::BatchNorm1d(_)
            | LayerSpec::Custom { .. } => Composition::Leaf,
            LayerSpec::Sequential { .. } | LayerSpec::SeparableConv2d { .. } => Composition::Chain,
            LayerSpec::Residual { .. }
            | LayerSpec::BasicBlock { .. }
            | LayerSpec::Bottleneck { .. }
            | LayerSpec::MbConv { .. } => Composition::Residual,
            LayerSpec::Concat { .. } => Composition::Concat,
            LayerSpec::Dense { .. } | LayerSpec::DenseBlock { .. } => Composition::Dense,
            LayerSpec::Scale { .. } | LayerSpec::SqueezeExcite { .. } => Composition::Scale,
        }
    }
}

/// How a container combines its children (the [`crate::layers::Part::Layer`]s it lists):
/// what the summary, the layer-by-layer gradient check and exporters follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Composition {
    /// No children: the layer computes its output itself.
    Leaf,
    /// Children `0, 1, …` applied in order, each to the previous one's output.
    Chain,
    /// `y = act(main(x) + shortcut(x))`: children `main`, `shortcut` (absent: the
    /// identity) and `act` (absent: none).
    Residual,
    /// `y = [B₀(x), B₁(x), …]` joined along channels: children `0, 1, …` are the branches.
    Concat,
    /// `y = [x, h₁, …, h_L]`, `h_l = H_l([x, h₁, …, h_{l−1}])`: children `0, 1, …` are the
    /// layers `H_l`.
    Dense,
    /// `y = x · gate(x)` per channel: child `gate`.
    Scale,
}
