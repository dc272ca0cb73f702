//! The blocks: small networks that act as one layer — `Residual`, `Concat`, `Dense` from
//! given layers, and the ResNet, DenseNet, squeeze-and-excitation, EfficientNet and
//! separable-convolution blocks from their sizes. Each is built by the engine from its
//! description (`ocellus::arch`), so its parameters carry the engine's names
//! (`main.0.weight`, `1.0.weight`, `gate.1.weight`, …).

use ocellus::arch::{Architecture, LayerSpec, PadSpec, Size2};
use ocellus::{Layer, LayerExt, Sequential};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::PyClassInitializer;

use crate::arrays::OrPyErr;
use crate::layers::{layer_rng, padding_arg, PyLayer};

/// What one input of a block is: images of C channels, or F flat features.
#[derive(Clone, Copy)]
enum Input {
    Image(usize),
    Flat(usize),
}

/// Height and width of the image a block is built for. Building checks only that the
/// shapes fit together, so any size that every sensible block accepts will do; the block
/// then takes images of any size.
const PROBE: usize = 64;

/// The engine's layer for `spec`, built for inputs like `input` with weights from the
/// module's generator. An error names the class (`Concat: …`), keeping where inside the
/// block it arose.
fn build(spec: LayerSpec, input: Input, class: &str) -> PyResult<Box<dyn Layer>> {
    let (shape, mut layers) = match input {
        Input::Image(c) => ([c, PROBE, PROBE], vec![]),
        Input::Flat(f) => ([f, 1, 1], vec![LayerSpec::Flatten]),
    };
    let kind = spec.kind();
    layers.push(spec);
    let arch = Architecture {
        name: None,
        input: shape,
        layers,
    };
    let mut net = arch
        .build(&mut layer_rng())
        .map_err(|e| named(e, class, kind))
        .or_py_err()?;
    let last = net
        .layers_mut()
        .last_mut()
        .expect("an architecture builds each of its layers");
    Ok(std::mem::replace(last, Box::new(Sequential::new())))
}

/// `err` as raised by `class`: the engine names the block by its place in the
/// architecture (`layer 0 (concat)`), or a layer inside it (`layer 0 (branch 1 (…))`).
fn named(err: ocellus::Error, class: &str, kind: &str) -> ocellus::Error {
    let place = |layer: String| {
        let inner = layer
            .strip_prefix("layer ")
            .and_then(|rest| rest.split_once(" ("))
            .and_then(|(_, inner)| inner.strip_suffix(')'))
            .unwrap_or(&layer);
        if inner == kind {
            class.to_string()
        } else {
            format!("{class}: {inner}")
        }
    };
    use ocellus::Error;
    match err {
        Error::Shape {
            layer,
            expected,
            got,
            hint,
        } => Error::Shape {
            layer: place(layer),
            expected,
            // The block was given no input yet: say where this shape comes from.
            got: format!("{got}, the image a block is checked on when built"),
            hint,
        },
        Error::Config { layer, message } => Error::Config {
            layer: place(layer),
            message,
        },
        other => other,
    }
}

/// The input size the first layer of `specs` that declares one expects (a convolution's
/// channels, a linear layer's features, …), looking inside nested blocks.
fn declared_input(specs: &[LayerSpec]) -> Option<Input> {
    for spec in specs {
        let found = match spec {
            LayerSpec::Conv2d {
                in_channels: Some(c),
                ..
            }
            | LayerSpec::ConvTranspose2d {
                in_channels: Some(c),
                ..
            } => Some(Input::Image(*c)),
            LayerSpec::BatchNorm2d(bn) => bn.features.map(Input::Image),
            LayerSpec::Linear {
                in_features: Some(f),
                ..
            } => Some(Input::Flat(*f)),
            LayerSpec::BatchNorm1d(bn) => bn.features.map(Input::Flat),
            LayerSpec::Residual { main, shortcut, .. } => {
                declared_input(main).or_else(|| shortcut.as_deref().and_then(declared_input))
            }
            LayerSpec::Sequential { layers } => declared_input(layers),
            LayerSpec::Scale { gate } => declared_input(gate),
            LayerSpec::Concat { branches: paths } | LayerSpec::Dense { layers: paths } => {
                paths.iter().find_map(|p| declared_input(p))
            }
            // Anything else keeps the input size unknown (an activation, a pooling) or
            // fixes it from a flattened image (we cannot say which).
            LayerSpec::Flatten => return None,
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// A path of a block given in Python: one layer or a sequence of layers.
struct Path<'py> {
    layers: Vec<PyRef<'py, PyLayer>>,
}

impl<'py> Path<'py> {
    fn from_py(value: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        let not_a_layer = |item: &Bound<'py, PyAny>| {
            let type_name = item
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!(
                "{what} must be an ocellus layer or a list of them, got a {type_name}"
            ))
        };
        if let Ok(layer) = value.cast::<PyLayer>() {
            return Ok(Path {
                layers: vec![layer.try_borrow()?],
            });
        }
        let mut layers = Vec::new();
        for item in value.try_iter().map_err(|_| not_a_layer(value))? {
            let item = item?;
            let layer = item.cast::<PyLayer>().map_err(|_| not_a_layer(&item))?;
            layers.push(layer.try_borrow()?);
        }
        Ok(Path { layers })
    }

    /// The descriptions of the engine layers the Python layers stand for, in order.
    fn specs(&self) -> Vec<LayerSpec> {
        let mut out = Vec::new();
        for layer in &self.layers {
            match layer.engine().spec() {
                LayerSpec::Sequential { layers } => out.extend(layers),
                other => out.push(other),
            }
        }
        out
    }

    /// `repr` of the layers, as a Python list.
    fn repr(&self) -> String {
        let items: Vec<&str> = self.layers.iter().map(|l| l.repr.as_str()).collect();
        format!("[{}]", items.join(", "))
    }
}

/// The input a block of `paths` takes: the first declared one, else images of 1 channel
/// (every layer of the paths then accepts any number of channels).
fn input_of(paths: &[&Path<'_>]) -> Input {
    paths
        .iter()
        .find_map(|p| declared_input(&p.specs()))
        .unwrap_or(Input::Image(1))
}

/// Gives `block` the current parameters and buffers of the Python layers `paths` (in the
/// block's order): the block starts from the weights the user built or trained.
fn copy_state(block: &mut dyn Layer, paths: &[&Path<'_>]) -> PyResult<()> {
    let mut params = Vec::new();
    let mut buffers = Vec::new();
    for layer in paths.iter().flat_map(|p| p.layers.iter()) {
        let engine = layer.engine();
        params.extend(engine.params().into_iter().map(|(_, p)| p.value().clone()));
        buffers.extend(engine.buffers().into_iter().map(|(_, b)| b.clone()));
    }
    let mismatch = || PyRuntimeError::new_err("the block's layers differ from the given ones");
    let targets = block.params_mut();
    if targets.len() != params.len() {
        return Err(mismatch());
    }
    for ((_, target), source) in targets.into_iter().zip(&params) {
        if target.shape() != source.shape() {
            return Err(mismatch());
        }
        target.value_mut().copy_from_slice(source.data());
    }
    let targets = block.buffers_mut();
    if targets.len() != buffers.len() {
        return Err(mismatch());
    }
    for ((_, target), source) in targets.into_iter().zip(&buffers) {
        if target.shape() != source.shape() {
            return Err(mismatch());
        }
        target.data_mut().copy_from_slice(source.data());
    }
    Ok(())
}

/// A block built from `spec` for inputs like `input`, holding the weights of `paths`.
fn block_of(
    spec: LayerSpec,
    input: Input,
    paths: &[&Path<'_>],
    class: &str,
) -> PyResult<Box<dyn Layer>> {
    let mut block = build(spec, input, class)?;
    copy_state(block.as_mut(), paths)?;
    Ok(block)
}

/// The `activation` argument of a block: a name, or None for no activation.
fn activation_name(activation: Option<&str>) -> String {
    activation.unwrap_or("none").to_string()
}

fn py_str(activation: Option<&str>) -> String {
    activation.map_or("None".to_string(), |a| format!("'{a}'"))
}

/// A residual block: `y = act(main(x) + shortcut(x))`, where `main` and `shortcut` are
/// lists of layers applied in order (`shortcut=None`: the identity) and `act` is
/// "relu", "sigmoid", "tanh", "silu", "hardswish" or None.
///
/// x: (N, C, H, W) -> y: the shape both paths give, which must agree. The block holds
/// copies of the given layers with their current weights. Parameters are named
/// `main.0.weight`, `shortcut.0.weight`, …; backward adds the two paths' input gradients.
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Residual;

#[pymethods]
impl Residual {
    #[new]
    #[pyo3(signature = (main, shortcut = None, activation = Some("relu")))]
    #[pyo3(text_signature = "(main, shortcut=None, activation='relu')")]
    fn new(
        main: &Bound<'_, PyAny>,
        shortcut: Option<&Bound<'_, PyAny>>,
        activation: Option<&str>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let main = Path::from_py(main, "main")?;
        let shortcut = shortcut.map(|s| Path::from_py(s, "shortcut")).transpose()?;
        let spec = LayerSpec::Residual {
            main: main.specs(),
            shortcut: shortcut.as_ref().map(Path::specs),
            activation: activation_name(activation),
        };
        let mut paths = vec![&main];
        paths.extend(shortcut.as_ref());
        let block = block_of(spec, input_of(&paths), &paths, "Residual")?;
        let repr = format!(
            "Residual({}, shortcut={}, activation={})",
            main.repr(),
            shortcut.as_ref().map_or("None".to_string(), Path::repr),
            py_str(activation)
        );
        Ok(PyClassInitializer::from(PyLayer::new(repr, vec![block])).add_subclass(Residual))
    }
}

/// Branches side by side: every branch (a list of layers) reads the same x, and their
/// outputs are joined along the channels, in order (GoogLeNet's Inception block).
///
/// x: (N, C, H, W) -> y: (N, C₀ + C₁ + …, OH, OW); every branch must give the same N, OH
/// and OW. Parameters are named `0.0.weight` (branch 0, its layer 0), `1.0.weight`, …
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Concat;

#[pymethods]
impl Concat {
    #[new]
    fn new(branches: &Bound<'_, PyAny>) -> PyResult<PyClassInitializer<Self>> {
        let paths = branches
            .try_iter()?
            .enumerate()
            .map(|(i, b)| Path::from_py(&b?, &format!("branches[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        let spec = LayerSpec::Concat {
            branches: paths.iter().map(Path::specs).collect(),
        };
        let refs: Vec<&Path<'_>> = paths.iter().collect();
        let block = block_of(spec, input_of(&refs), &refs, "Concat")?;
        let items: Vec<String> = paths.iter().map(Path::repr).collect();
        let repr = format!("Concat([{}])", items.join(", "));
        Ok(PyClassInitializer::from(PyLayer::new(repr, vec![block])).add_subclass(Concat))
    }
}

/// DenseNet's connectivity over given layers: layer i (a list of layers) reads x and the
/// outputs of layers 0…i−1 joined along the channels, and the block returns x with every
/// layer's output joined to it.
///
/// x: (N, C, H, W) -> y: (N, C + G₀ + G₁ + …, H, W). Parameters are named `0.0.weight`
/// (layer 0, its first part), `1.0.weight`, …
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Dense;

#[pymethods]
impl Dense {
    #[new]
    fn new(layers: &Bound<'_, PyAny>) -> PyResult<PyClassInitializer<Self>> {
        let paths = layers
            .try_iter()?
            .enumerate()
            .map(|(i, l)| Path::from_py(&l?, &format!("layers[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        let spec = LayerSpec::Dense {
            layers: paths.iter().map(Path::specs).collect(),
        };
        let refs: Vec<&Path<'_>> = paths.iter().collect();
        // Only the first layer reads x alone: the input is what it declares.
        let input = input_of(&refs[..refs.len().min(1)]);
        let block = block_of(spec, input, &refs, "Dense")?;
        let items: Vec<String> = paths.iter().map(Path::repr).collect();
        let repr = format!("Dense([{}])", items.join(", "));
        Ok(PyClassInitializer::from(PyLayer::new(repr, vec![block])).add_subclass(Dense))
    }
}

/// The blocks built from their sizes alone.
fn sized_block(
    spec: LayerSpec,
    in_channels: usize,
    class: &str,
    repr: String,
) -> PyResult<PyLayer> {
    let block = build(spec, Input::Image(in_channels), class)?;
    Ok(PyLayer::new(repr, vec![block]))
}

/// ResNet's basic block as torchvision builds it: main conv 3×3 (stride) → BatchNorm2d →
/// ReLU → conv 3×3 → BatchNorm2d, plus the identity, or a conv 1×1 (stride) → BatchNorm2d
/// projection when the shape changes; ReLU after the sum. No biases.
///
/// x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW), OH = (H − 1) // stride + 1.
/// Parameters: `main.0.weight`, `main.1.weight`, …, `shortcut.0.weight`, …
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct BasicBlock;

#[pymethods]
impl BasicBlock {
    #[new]
    #[pyo3(signature = (in_channels, out_channels, stride = 1))]
    fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
    ) -> PyResult<PyClassInitializer<Self>> {
        let spec = LayerSpec::BasicBlock {
            out_channels,
            stride,
        };
        let repr = format!("BasicBlock({in_channels}, {out_channels}, stride={stride})");
        let layer = sized_block(spec, in_channels, "BasicBlock", repr)?;
        Ok(PyClassInitializer::from(layer).add_subclass(BasicBlock))
    }
}

/// ResNet's bottleneck block: conv 1×1 to out_channels/expansion → BN → ReLU → conv 3×3
/// (stride) → BN → ReLU → conv 1×1 to out_channels → BN, plus the identity or a conv 1×1
/// (stride) → BN projection; ReLU after the sum. `expansion` must divide out_channels.
///
/// x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW). Parameters `main.0.weight`, …
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct Bottleneck;

#[pymethods]
impl Bottleneck {
    #[new]
    #[pyo3(signature = (in_channels, out_channels, stride = 1, expansion = 4))]
    fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        expansion: usize,
    ) -> PyResult<PyClassInitializer<Self>> {
        let spec = LayerSpec::Bottleneck {
            out_channels,
            stride,
            expansion,
        };
        let repr = format!(
            "Bottleneck({in_channels}, {out_channels}, stride={stride}, expansion={expansion})"
        );
        let layer = sized_block(spec, in_channels, "Bottleneck", repr)?;
        Ok(PyClassInitializer::from(layer).add_subclass(Bottleneck))
    }
}

/// DenseNet-BC's dense block: `layers` layers, each BN → ReLU → conv 1×1 to 4·growth →
/// BN → ReLU → conv 3×3 (pad 1) to `growth` channels, reading everything before it.
///
/// x: (N, in_channels, H, W) -> y: (N, in_channels + layers·growth, H, W).
/// Parameters: `0.0.weight` (layer 0's first BatchNorm), `0.2.weight`, …
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct DenseBlock;

#[pymethods]
impl DenseBlock {
    #[new]
    fn new(in_channels: usize, layers: usize, growth: usize) -> PyResult<PyClassInitializer<Self>> {
        let spec = LayerSpec::DenseBlock { layers, growth };
        let repr = format!("DenseBlock({in_channels}, layers={layers}, growth={growth})");
        let layer = sized_block(spec, in_channels, "DenseBlock", repr)?;
        Ok(PyClassInitializer::from(layer).add_subclass(DenseBlock))
    }
}

/// Squeeze-and-excitation as torchvision builds it: `y = x · gate(x)` per channel, the
/// gate being global average pooling → conv 1×1 to squeeze_channels → activation → conv
/// 1×1 back to channels → sigmoid. squeeze_channels=None means max(channels // reduction, 1).
///
/// x: (N, channels, H, W) -> y: same shape. Parameters `gate.1.weight`, `gate.1.bias`,
/// `gate.3.weight`, `gate.3.bias`.
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct SqueezeExcite;

#[pymethods]
impl SqueezeExcite {
    #[new]
    #[pyo3(signature = (channels, squeeze_channels = None, reduction = 16, activation = "relu"))]
    fn new(
        channels: usize,
        squeeze_channels: Option<usize>,
        reduction: usize,
        activation: &str,
    ) -> PyResult<PyClassInitializer<Self>> {
        let spec = LayerSpec::SqueezeExcite {
            squeeze_channels,
            reduction,
            activation: activation.to_string(),
        };
        let repr = format!(
            "SqueezeExcite({channels}, squeeze_channels={}, reduction={reduction}, activation='{activation}')",
            squeeze_channels.map_or("None".to_string(), |s| s.to_string())
        );
        let layer = sized_block(spec, channels, "SqueezeExcite", repr)?;
        Ok(PyClassInitializer::from(layer).add_subclass(SqueezeExcite))
    }
}

/// EfficientNet's MBConv block: conv 1×1 expanding to in_channels·expand_ratio (left out
/// when the ratio is 1) → BN → SiLU → depthwise conv kernel_size×kernel_size (stride) →
/// BN → SiLU → squeeze-and-excitation → conv 1×1 to out_channels → BN, plus the identity
/// when stride is 1 and in_channels == out_channels. No biases outside the gate.
///
/// x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW). Parameters `main.0.weight`,
/// … with the identity, `0.weight`, … without.
#[pyclass(extends = PyLayer, name = "MBConv", module = "ocellus")]
pub struct MbConv;

#[pymethods]
impl MbConv {
    #[new]
    #[pyo3(signature = (in_channels, out_channels, expand_ratio = 6, kernel_size = 3, stride = 1))]
    fn new(
        in_channels: usize,
        out_channels: usize,
        expand_ratio: usize,
        kernel_size: usize,
        stride: usize,
    ) -> PyResult<PyClassInitializer<Self>> {
        let spec = LayerSpec::MbConv {
            out_channels,
            expand_ratio,
            kernel: kernel_size,
            stride,
        };
        let repr = format!(
            "MBConv({in_channels}, {out_channels}, expand_ratio={expand_ratio}, kernel_size={kernel_size}, stride={stride})"
        );
        let layer = sized_block(spec, in_channels, "MBConv", repr)?;
        Ok(PyClassInitializer::from(layer).add_subclass(MbConv))
    }
}

/// A depthwise-separable convolution: a depthwise conv kernel_size×kernel_size (one filter
/// per channel, stride, padding) then a pointwise conv 1×1 to out_channels. `padding` as
/// `Conv2d` takes it.
///
/// x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW). Parameters `0.weight`,
/// `0.bias` (in_channels, 1, KH, KW), (in_channels,) and `1.weight`, `1.bias`
/// (out_channels, in_channels, 1, 1), (out_channels,).
#[pyclass(extends = PyLayer, module = "ocellus")]
pub struct SeparableConv2d;

#[pymethods]
impl SeparableConv2d {
    #[new]
    #[pyo3(signature = (in_channels, out_channels, kernel_size, stride = 1, padding = None, bias = true))]
    #[pyo3(
        text_signature = "(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True)"
    )]
    fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: Option<&Bound<'_, PyAny>>,
        bias: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let (sides, padding_repr) = padding_arg(padding)?;
        let spec = LayerSpec::SeparableConv2d {
            out_channels,
            kernel: Size2::Square(kernel_size),
            stride: Size2::Square(stride),
            padding: PadSpec::PerSide([sides.top, sides.bottom, sides.left, sides.right]),
            bias,
        };
        let repr = format!(
            "SeparableConv2d({in_channels}, {out_channels}, kernel_size={kernel_size}, stride={stride}, padding={padding_repr}, bias={})",
            crate::layers::py_bool(bias)
        );
        let layer = sized_block(spec, in_channels, "SeparableConv2d", repr)?;
        Ok(PyClassInitializer::from(layer).add_subclass(SeparableConv2d))
    }
}
