//! An ocellus network as a PyTorch module: the source of a self-contained `model.py` that
//! needs only `torch`. The network is walked as [`crate::onnx`] walks it — leaves by their
//! [`LayerSpec`], containers by their [`Composition`] — and every layer becomes the
//! `torch.nn` module with PyTorch's semantics and the same parameter names, so the
//! module's `state_dict` names are ocellus's checkpoint names (`0.weight`,
//! `4.main.0.weight`) and `load_state_dict(…, strict=True)` takes ocellus's weights as they
//! are.
//!
//! | ocellus | PyTorch |
//! |---|---|
//! | conv2d | `nn.Conv2d`; per-side padding that is not symmetric: `PerSidePadConv2d` (`nn.functional.pad`, then `nn.Conv2d`) |
//! | convtranspose2d, linear | `nn.ConvTranspose2d`, `nn.Linear` |
//! | maxpool2d, avgpool2d, globalavgpool | `nn.MaxPool2d`, `nn.AvgPool2d`, `nn.AdaptiveAvgPool2d(1)` |
//! | upsample | `nn.Upsample` (bilinear with `align_corners=False`) |
//! | batchnorm1d/2d, dropout, flatten | `nn.BatchNorm1d/2d`, `nn.Dropout`, `nn.Flatten` |
//! | activations | `nn.ReLU`, `nn.LeakyReLU`, `nn.Sigmoid`, `nn.Tanh`, `nn.SiLU`, `nn.Hardswish`, `nn.Softmax(dim=1)` |
//! | sequences | `nn.Sequential` (the model itself is one) |
//! | residual blocks | `Residual(main, shortcut, act)`: `act(main(x) + shortcut(x))` |
//! | concat, dense blocks | `Concat`, `Dense` (`nn.ModuleList`s) |
//! | scale, squeeze-and-excitation | `Scale(gate)`: `x · gate(x)` |
//!
//! The four container classes and `PerSidePadConv2d` are written into `model.py` when the
//! model uses them. A `custom` layer, defined outside ocellus, is an error naming it.

use std::collections::BTreeSet;
use std::fmt::Write;

use ocellus::layers::{Key, Layer, Part};
use ocellus::spec::{Composition, LayerSpec, Size2, UpsampleMode};
use ocellus::{Error, Result};

use crate::onnx::ExportInfo;

/// The source of `model.py` for `model`, named `name` (the architecture's name), taking
/// inputs of `info.input`. `weights` is the file name of the state_dict beside it.
pub fn pytorch_module(
    model: &dyn Layer,
    info: &ExportInfo,
    name: &str,
    weights: &str,
) -> Result<String> {
    let [c, h, w] = info.input;
    let mut writer = Writer::default();
    let shape = vec![1, c, h, w];
    let children = children(model, "");
    let body = if matches!(model.spec().composition(), Composition::Chain) {
        writer.sequence_items(&children, shape, 3)?.0
    } else {
        // A single layer: a sequence of one, so that its names gain the prefix `0.` as in
        // an ocellus model file holding one layer.
        let (expr, out) = writer.module(model, "0", shape, 3)?;
        format!("            {expr},  # 0: → {}\n", shape_str(&out))
    };
    let out_shape = model.output_shape(&[1, c, h, w])?;
    let helpers: String = writer
        .helpers
        .iter()
        .map(|h| helper_source(h))
        .collect::<Vec<_>>()
        .join("\n\n\n");
    let helpers = if helpers.is_empty() {
        String::new()
    } else {
        format!("{helpers}\n\n\n")
    };
    let title: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || "-_. ".contains(*c))
        .collect();
    Ok(format!(
        r#""""{title}: a network trained with ocellus {version}, as a PyTorch module.

Needs only PyTorch. Beside this file: {weights}, the trained weights (a safetensors
file whose tensor names are this module's state_dict names).

    import model
    net = model.load()                   # Model() with the weights, strict, in eval mode
    logits = net(model.normalize(x))     # x: (N, {c}, {h}, {w}) images with values in [0, 1]

Input: (N, {c}, {h}, {w}) images normalised as in training, (x - MEAN) / STD per channel.
Output: (N, {k}) logits, one per class of CLASSES.
"""
import json
import pathlib
import struct

import torch
from torch import nn

NAME = {name_literal}
CLASSES = {classes}
# Per-channel normalisation of the training images: x = (x - MEAN) / STD.
MEAN = {mean}
STD = {std}
# (C, H, W) of one input image.
INPUT_SHAPE = ({c}, {h}, {w})
WEIGHTS = pathlib.Path(__file__).with_name({weights_literal})


{helpers}class Model(nn.Sequential):
    """x: (N, {c}, {h}, {w}) -> logits: (N, {k}); each line gives the output shape for one image."""

    def __init__(self):
        super().__init__(
{body}        )


def normalize(images):
    """(x - MEAN) / STD per channel, for (N, C, H, W) images with values in [0, 1]."""
    mean = torch.tensor(MEAN, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    return (images - mean) / std


_DTYPES = {{"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}}


def read_safetensors(path):
    """(tensors by name, metadata) of a safetensors file: an 8-byte little-endian header
    length, a JSON header of names, dtypes, shapes and byte ranges, then the data."""
    data = pathlib.Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", {{}})
    tensors = {{}}
    for key, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = bytearray(data[8 + length + begin : 8 + length + end])
        tensor = torch.frombuffer(raw, dtype=_DTYPES[entry["dtype"]]) if raw else torch.empty(0)
        tensors[key] = tensor.reshape(entry["shape"]).clone()
    return tensors, metadata


def _bytes(tensor):
    """The bytes of a contiguous tensor, in the machine's (little-endian) order."""
    flat = tensor.reshape(-1).view(torch.uint8)
    try:
        return flat.numpy().tobytes()
    except RuntimeError:  # PyTorch without NumPy
        return bytes(flat.tolist())


def write_safetensors(tensors, path, metadata=None):
    """Writes tensors (name -> tensor) as a safetensors file, little-endian float32 and
    int64, with string metadata; ocellus reads it back (`ocellus eval --checkpoint FILE`)."""
    header, chunks, offset = {{}}, [], 0
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        dtype = "I64" if tensor.dtype == torch.int64 else "F32"
        tensor = tensor.to(torch.int64 if dtype == "I64" else torch.float32)
        raw = _bytes(tensor)
        header[key] = {{"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def load(path=WEIGHTS, device="cpu"):
    """Model() with the weights of `path` loaded strictly, on `device`, in eval mode."""
    net = Model()
    net.load_state_dict(read_safetensors(path)[0], strict=True)
    return net.to(device).eval()


def save(net, path):
    """Saves `net`'s state_dict with the metadata of the exported weights (architecture,
    classes, normalisation), so that ocellus can evaluate, inspect and export it again."""
    write_safetensors(net.state_dict(), path, read_safetensors(WEIGHTS)[1])


if __name__ == "__main__":
    net = load()
    with torch.no_grad():
        logits = net(torch.zeros(1, *INPUT_SHAPE))
    print(f"{{NAME}}: {{sum(p.numel() for p in net.parameters()):,}} parameters, logits {{tuple(logits.shape)}}")
"#,
        version = env!("CARGO_PKG_VERSION"),
        k = out_shape.get(1).copied().unwrap_or(0),
        name_literal = py_str(name),
        classes = py_list(info.classes.iter().map(|c| py_str(c))),
        mean = py_list(info.mean.iter().map(|v| py_f32(*v))),
        std = py_list(info.std.iter().map(|v| py_f32(*v))),
        weights_literal = py_str(weights),
    ))
}

/// The layers of a container, with their keys and state_dict paths.
fn children<'a>(layer: &'a dyn Layer, path: &str) -> Vec<(Key, String, &'a dyn Layer)> {
    layer
        .parts()
        .into_iter()
        .filter_map(|(key, part)| match part {
            Part::Layer(child) => Some((key, join(path, &key.to_string()), child)),
            _ => None,
        })
        .collect()
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A shape without N, as Python writes the tuple: `(6, 28, 28)`, `(10,)`.
fn shape_str(shape: &[usize]) -> String {
    match &shape[1..] {
        [d] => format!("({d},)"),
        dims => {
            let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The helper classes written into `model.py` when used, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Helper {
    PerSidePadConv2d,
    Residual,
    Concat,
    Dense,
    Scale,
}

fn helper_source(helper: &Helper) -> &'static str {
    match helper {
        Helper::PerSidePadConv2d => {
            r#"class PerSidePadConv2d(nn.Conv2d):
    """nn.Conv2d after zero padding with (left, right, top, bottom) zeros: padding that differs
    between the sides, which nn.Conv2d's `padding` cannot express; same parameter names."""

    def __init__(self, *args, pad, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad = pad

    def forward(self, x):
        return super().forward(nn.functional.pad(x, self.pad))"#
        }
        Helper::Residual => {
            r#"class Residual(nn.Module):
    """y = act(main(x) + shortcut(x)): a residual block (the shortcut is often the identity)."""

    def __init__(self, main, shortcut, act):
        super().__init__()
        self.main = main
        self.shortcut = shortcut
        self.act = act

    def forward(self, x):
        return self.act(self.main(x) + self.shortcut(x))"#
        }
        Helper::Concat => {
            r#"class Concat(nn.ModuleList):
    """y = [B0(x), B1(x), ...] joined along channels: parallel branches (Inception)."""

    def forward(self, x):
        return torch.cat([branch(x) for branch in self], dim=1)"#
        }
        Helper::Dense => {
            r#"class Dense(nn.ModuleList):
    """A dense block (DenseNet): each layer reads the input and every earlier layer's output
    joined along channels; the block gives all of them joined."""

    def forward(self, x):
        features = x
        for layer in self:
            features = torch.cat([features, layer(features)], dim=1)
        return features"#
        }
        Helper::Scale => {
            r#"class Scale(nn.Module):
    """y = x * gate(x), one gate value per image and channel (squeeze-and-excitation)."""

    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def forward(self, x):
        return x * self.gate(x).reshape(x.shape[0], x.shape[1], 1, 1)"#
        }
    }
}

#[derive(Default)]
struct Writer {
    helpers: BTreeSet<Helper>,
}

impl Writer {
    /// One line (or block) per child, each `expr,  # key: → shape`, indented by `depth`
    /// levels; returns the text and the output shape of the last child.
    fn sequence_items(
        &mut self,
        children: &[(Key, String, &dyn Layer)],
        mut shape: Vec<usize>,
        depth: usize,
    ) -> Result<(String, Vec<usize>)> {
        let pad = "    ".repeat(depth);
        let mut text = String::new();
        for (key, path, child) in children {
            let (expr, out) = self.module(*child, path, shape, depth)?;
            let _ = writeln!(text, "{pad}{expr},  # {key}: → {}", shape_str(&out));
            shape = out;
        }
        Ok((text, shape))
    }

    /// The Python expression building `layer` (state_dict prefix `path`) for inputs of
    /// `shape`, and its output shape. Nested modules are indented for `depth`.
    fn module(
        &mut self,
        layer: &dyn Layer,
        path: &str,
        shape: Vec<usize>,
        depth: usize,
    ) -> Result<(String, Vec<usize>)> {
        let spec = layer.spec();
        let children = children(layer, path);
        let name = || format!("layer {path} ({})", spec.kind());
        let pad = "    ".repeat(depth);
        match spec.composition() {
            Composition::Leaf if children.is_empty() => {
                let out = layer
                    .output_shape(&shape)
                    .map_err(|e| e.in_layer(&format!("layer {path}")))?;
                Ok((self.leaf(&spec, &shape, path)?, out))
            }
            Composition::Leaf => Err(Error::config(
                name(),
                "lists child layers but its spec does not say how it combines them; \
                 it cannot be exported",
            )),
            Composition::Chain => {
                let (items, out) = self.sequence_items(&children, shape, depth + 1)?;
                Ok((format!("nn.Sequential(\n{items}{pad})"), out))
            }
            Composition::Residual => {
                self.helpers.insert(Helper::Residual);
                let find = |wanted: &str| {
                    children
                        .iter()
                        .find(|(k, _, _)| matches!(k, Key::Name(n) if *n == wanted))
                };
                let (_, main_path, main) = find("main")
                    .ok_or_else(|| Error::config(name(), "a residual block without a main path"))?;
                let inner = "    ".repeat(depth + 1);
                let (main_expr, out) = self.module(*main, main_path, shape.clone(), depth + 1)?;
                let shortcut = match find("shortcut") {
                    Some((_, p, s)) => self.module(*s, p, shape, depth + 1)?.0,
                    None => "nn.Identity()".to_string(),
                };
                let act = match find("act") {
                    Some((_, p, a)) => self.module(*a, p, out.clone(), depth + 1)?.0,
                    None => "nn.Identity()".to_string(),
                };
                Ok((
                    format!(
                        "Residual(\n{inner}main={main_expr},\n{inner}shortcut={shortcut},\n\
                         {inner}act={act},\n{pad})"
                    ),
                    out,
                ))
            }
            Composition::Concat => {
                self.helpers.insert(Helper::Concat);
                let inner = "    ".repeat(depth + 1);
                let mut text = String::new();
                let mut out = shape.clone();
                out[1] = 0;
                for (key, p, branch) in &children {
                    let (expr, o) = self.module(*branch, p, shape.clone(), depth + 1)?;
                    let _ = writeln!(text, "{inner}{expr},  # branch {key}: → {}", shape_str(&o));
                    out[1] += o[1];
                    out[2..].copy_from_slice(&o[2..]);
                }
                Ok((format!("Concat([\n{text}{pad}])"), out))
            }
            Composition::Dense => {
                self.helpers.insert(Helper::Dense);
                let inner = "    ".repeat(depth + 1);
                let mut text = String::new();
                let mut features = shape;
                for (key, p, child) in &children {
                    let (expr, o) = self.module(*child, p, features.clone(), depth + 1)?;
                    features[1] += o[1];
                    let _ = writeln!(
                        text,
                        "{inner}{expr},  # layer {key}: adds {} channels → {}",
                        o[1],
                        shape_str(&features)
                    );
                }
                Ok((format!("Dense([\n{text}{pad}])"), features))
            }
            Composition::Scale => {
                self.helpers.insert(Helper::Scale);
                let (_, gate_path, gate) = children
                    .first()
                    .ok_or_else(|| Error::config(name(), "a scale block without a gate"))?;
                let (expr, _) = self.module(*gate, gate_path, shape.clone(), depth)?;
                Ok((format!("Scale({expr})"), shape))
            }
        }
    }

    /// The `torch.nn` module of one leaf layer whose input has `shape`.
    fn leaf(&mut self, spec: &LayerSpec, shape: &[usize], path: &str) -> Result<String> {
        let channels = shape.get(1).copied().unwrap_or(0);
        Ok(match spec {
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let [top, bottom, left, right] = padding.sides();
                let mut args = vec![
                    channels.to_string(),
                    out_channels.to_string(),
                    size(*kernel),
                ];
                optional(&mut args, "stride", *stride, 1);
                let per_side = top != bottom || left != right;
                if !per_side && (top, left) != (0, 0) {
                    args.push(format!("padding={}", size(Size2::from_hw((top, left)))));
                }
                optional(&mut args, "dilation", *dilation, 1);
                if *groups != 1 {
                    args.push(format!("groups={groups}"));
                }
                if !bias {
                    args.push("bias=False".into());
                }
                if per_side {
                    self.helpers.insert(Helper::PerSidePadConv2d);
                    // F.pad's order for the last two axes: (left, right, top, bottom).
                    args.push(format!("pad=({left}, {right}, {top}, {bottom})"));
                    format!("PerSidePadConv2d({})", args.join(", "))
                } else {
                    format!("nn.Conv2d({})", args.join(", "))
                }
            }
            LayerSpec::ConvTranspose2d {
                out_channels,
                kernel,
                stride,
                padding,
                output_padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let mut args = vec![
                    channels.to_string(),
                    out_channels.to_string(),
                    size(*kernel),
                ];
                optional(&mut args, "stride", *stride, 1);
                optional(&mut args, "padding", *padding, 0);
                optional(&mut args, "output_padding", *output_padding, 0);
                if *groups != 1 {
                    args.push(format!("groups={groups}"));
                }
                if !bias {
                    args.push("bias=False".into());
                }
                optional(&mut args, "dilation", *dilation, 1);
                format!("nn.ConvTranspose2d({})", args.join(", "))
            }
            LayerSpec::Linear {
                out_features, bias, ..
            } => {
                let bias = if *bias { "" } else { ", bias=False" };
                format!("nn.Linear({channels}, {out_features}{bias})")
            }
            LayerSpec::Flatten => "nn.Flatten()".into(),
            LayerSpec::Relu => "nn.ReLU()".into(),
            LayerSpec::LeakyRelu { negative_slope } => {
                format!("nn.LeakyReLU({})", py_f32(*negative_slope))
            }
            LayerSpec::Sigmoid => "nn.Sigmoid()".into(),
            LayerSpec::Tanh => "nn.Tanh()".into(),
            LayerSpec::Silu => "nn.SiLU()".into(),
            LayerSpec::Hardswish => "nn.Hardswish()".into(),
            LayerSpec::Softmax => "nn.Softmax(dim=1)".into(),
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            } => format!(
                "nn.MaxPool2d({})",
                pool_args(*kernel, *stride, *padding, *ceil_mode).join(", ")
            ),
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            } => {
                let mut args = pool_args(*kernel, *stride, *padding, *ceil_mode);
                if !count_include_pad {
                    args.push("count_include_pad=False".into());
                }
                format!("nn.AvgPool2d({})", args.join(", "))
            }
            LayerSpec::GlobalAvgPool => "nn.AdaptiveAvgPool2d(1)".into(),
            LayerSpec::Upsample { scale, size, mode } => {
                let target = match (scale, size) {
                    (Some(s), _) => {
                        let (sh, sw) = s.hw();
                        format!(
                            "scale_factor=({}, {})",
                            py_float(sh as f64),
                            py_float(sw as f64)
                        )
                    }
                    (None, Some(s)) => {
                        let (oh, ow) = s.hw();
                        format!("size=({oh}, {ow})")
                    }
                    (None, None) => {
                        return Err(Error::config(
                            format!("layer {path} (upsample)"),
                            "has neither a scale nor a size",
                        ))
                    }
                };
                match mode {
                    UpsampleMode::Nearest => format!("nn.Upsample({target}, mode=\"nearest\")"),
                    UpsampleMode::Bilinear => {
                        format!("nn.Upsample({target}, mode=\"bilinear\", align_corners=False)")
                    }
                }
            }
            LayerSpec::Dropout { p } => format!("nn.Dropout({})", py_f32(*p)),
            LayerSpec::BatchNorm2d(bn) | LayerSpec::BatchNorm1d(bn) => {
                let class = if matches!(spec, LayerSpec::BatchNorm2d(_)) {
                    "BatchNorm2d"
                } else {
                    "BatchNorm1d"
                };
                let default = ocellus::spec::BatchNormSpec::default();
                let mut args = vec![channels.to_string()];
                if bn.eps != default.eps {
                    args.push(format!("eps={}", py_float(bn.eps)));
                }
                if bn.momentum != default.momentum {
                    args.push(match bn.momentum {
                        Some(m) => format!("momentum={}", py_float(m)),
                        None => "momentum=None".into(),
                    });
                }
                if !bn.affine {
                    args.push("affine=False".into());
                }
                if !bn.track_running_stats {
                    args.push("track_running_stats=False".into());
                }
                format!("nn.{class}({})", args.join(", "))
            }
            LayerSpec::Custom { kind } => {
                return Err(Error::config(
                    format!("layer {path} (custom '{kind}')"),
                    "is defined outside ocellus; PyTorch has no module for it, so the model \
                     cannot be exported",
                ))
            }
            other => {
                return Err(Error::config(
                    format!("layer {path} ({})", other.kind()),
                    "is a block that lists no child layers; it cannot be exported",
                ))
            }
        })
    }
}

/// A Size2 as PyTorch takes it: `3` or `(3, 5)`.
fn size(s: Size2) -> String {
    match s.hw() {
        (h, w) if h == w => h.to_string(),
        (h, w) => format!("({h}, {w})"),
    }
}

/// Appends `name=value` unless the value is `default` on both axes.
fn optional(args: &mut Vec<String>, name: &str, value: Size2, default: usize) {
    if value.hw() != (default, default) {
        args.push(format!("{name}={}", size(value)));
    }
}

fn pool_args(
    kernel: Size2,
    stride: Option<Size2>,
    padding: Option<Size2>,
    ceil_mode: bool,
) -> Vec<String> {
    let mut args = vec![size(kernel)];
    // PyTorch's stride defaults to the kernel, as ocellus's does.
    if let Some(s) = stride.filter(|s| s.hw() != kernel.hw()) {
        args.push(format!("stride={}", size(s)));
    }
    if let Some(p) = padding {
        optional(&mut args, "padding", p, 0);
    }
    if ceil_mode {
        args.push("ceil_mode=True".into());
    }
    args
}

/// A Python string literal: JSON's escapes are Python's.
fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// A Python float literal that reads back as the same f64.
fn py_float(v: f64) -> String {
    float_literal(format!("{v:?}"), v)
}

/// The shortest Python float literal that reads back as the same f32.
fn py_f32(v: f32) -> String {
    float_literal(format!("{v:?}"), v as f64)
}

/// `shortest` is Rust's shortest round-trip form of `v` (Python reads the same digits).
fn float_literal(shortest: String, v: f64) -> String {
    if v.is_nan() {
        "float(\"nan\")".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "float(\"inf\")"
        } else {
            "float(\"-inf\")"
        }
        .into()
    } else if shortest.contains(['.', 'e']) {
        shortest
    } else {
        format!("{shortest}.0")
    }
}

fn py_list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}
