//! An ocellus network as an ONNX model: the network is walked as
//! [`ocellus::network::walk`] runs it — leaves by their [`LayerSpec`], containers by their
//! [`Composition`] — and every layer becomes the ONNX operators that compute what its
//! `forward` computes in `Mode::Eval`, with PyTorch's semantics (the mapping of
//! `tools/pytorch_interop.py`, one operator set further):
//!
//! | ocellus | ONNX |
//! |---|---|
//! | conv2d | `Conv` (`pads` per side: top, left, bottom, right) |
//! | convtranspose2d | `ConvTranspose` (`pads`, `output_padding`, `dilations`, `group`) |
//! | maxpool2d, avgpool2d | `MaxPool`, `AveragePool` (`ceil_mode`; `count_include_pad` always written: ONNX's default is 0, PyTorch's true) |
//! | globalavgpool | `GlobalAveragePool` |
//! | upsample | `Resize`: nearest → `asymmetric` + `floor`; bilinear (`align_corners=False`) → `linear` + `half_pixel` |
//! | batchnorm1d/2d | `BatchNormalization` with the running statistics |
//! | dropout | nothing (the identity in evaluation) |
//! | flatten, linear | `Flatten` (axis 1), `Gemm` (`transB = 1`) |
//! | relu, leakyrelu, sigmoid, tanh, hardswish, softmax | `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `HardSwish`, `Softmax` (axis 1) |
//! | silu | `Mul(x, Sigmoid(x))` |
//! | residual blocks | main path, shortcut, `Add`, then the activation |
//! | concat, dense blocks | branches, `Concat` along channels (a dense block: one per layer) |
//! | scale, squeeze-and-excitation | the gate, `Unsqueeze` to (N, C, 1, 1) if it gives (N, C), `Mul` |
//!
//! A layer ONNX cannot express (a `custom` layer, BatchNorm without running statistics)
//! is an error naming it, found before anything is written.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use ocellus::checkpoint::write_atomically;
use ocellus::layers::{Key, Layer, Part};
use ocellus::spec::{Composition, LayerSpec, UpsampleMode};
use ocellus::{Error, Result, Tensor};
use prost::Message;

use crate::proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};

/// ONNX IR version 8 (onnx 1.10 and later; onnxruntime-web reads it, not the newest ones).
pub const IR_VERSION: i64 = 8;
/// The default-domain operator set: 17.
pub const OPSET: i64 = 17;
/// The graph's input.
pub const INPUT: &str = "input";
/// The graph's output.
pub const OUTPUT: &str = "logits";

/// What the model file says besides the network: the input image and the metadata a user
/// of the exported model needs (ocellus's model file keeps the same).
#[derive(Clone, Copy, Debug)]
pub struct ExportInfo<'a> {
    /// (C, H, W) of one input image.
    pub input: [usize; 3],
    /// One name per output.
    pub classes: &'a [String],
    /// (C,): the per-channel mean the training images were normalised with.
    pub mean: &'a [f32],
    /// (C,): the per-channel standard deviation, `x = (x − mean)/std`.
    pub std: &'a [f32],
}

/// How to export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Put `(x − mean)/std` in front of the network, so the graph takes raw images with
    /// values in [0, 1]; otherwise it takes normalised images, as the network does.
    pub with_normalization: bool,
}

/// The ONNX model of `model` (a network or a single layer) for inputs of `info.input`.
/// Nothing is written; an error names the first layer ONNX cannot express.
pub fn onnx_model(
    model: &dyn Layer,
    info: &ExportInfo,
    options: OnnxOptions,
) -> Result<ModelProto> {
    let [c, h, w] = info.input;
    let out_shape = model.output_shape(&[1, c, h, w])?;
    if info.mean.len() != c || info.std.len() != c {
        return Err(Error::config(
            "normalization",
            format!(
                "needs {c} means and {c} standard deviations (one per input channel), got {} and {}",
                info.mean.len(),
                info.std.len()
            ),
        ));
    }
    let mut graph = Graph::default();
    graph.names.insert(INPUT.to_string());
    let mut x = Value {
        name: INPUT.to_string(),
        shape: vec![1, c, h, w],
    };
    if options.with_normalization {
        x = graph.normalization(x, info.mean, info.std);
    }
    let y = graph.layer(model, "", x)?;
    assert_eq!(
        y.shape, out_shape,
        "the exported graph's output shape follows the model's"
    );
    graph.rename_output(&y.name);

    let metadata = [
        (
            "classes",
            serde_json::to_string(info.classes).expect("strings serialise"),
        ),
        (
            "normalization",
            // As ocellus's model files write it: f32 values, shortest form.
            serde_json::to_string(&BTreeMap::from([("mean", info.mean), ("std", info.std)]))
                .expect("numbers serialise"),
        ),
        (
            "normalization_in_graph",
            options.with_normalization.to_string(),
        ),
        ("ocellus_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "ocellus".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: String::new(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.into(),
                value,
            })
            .collect(),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: "ocellus".into(),
            initializer: graph.initializers,
            doc_string: String::new(),
            input: vec![value_info(INPUT, &[1, c, h, w])],
            output: vec![value_info(OUTPUT, &out_shape)],
        }),
    })
}

/// Writes the ONNX model of `model` to `path`, atomically: the whole file is built in
/// memory first, so a layer ONNX cannot express leaves nothing behind, and a crash leaves
/// the old file or the new one, never part of one.
pub fn write_onnx(
    path: &Path,
    model: &dyn Layer,
    info: &ExportInfo,
    options: OnnxOptions,
) -> Result<()> {
    let bytes = onnx_model(model, info, options)?.encode_to_vec();
    write_atomically(path, &bytes)
}

/// A float tensor `(N, …)` with a symbolic batch size.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| match i {
            0 => Dimension {
                dim_value: None,
                dim_param: Some("N".into()),
            },
            _ => Dimension {
                dim_value: Some(d as i64),
                dim_param: None,
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values.iter().map(|&v| v as i64).collect(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: Some(value),
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: Some(value),
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: Some(value.as_bytes().to_vec()),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}

/// `prefix.key`, or `key` at the top.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// How errors call a layer: `layer 4.main.0 (custom)`, or its kind alone at the top.
fn layer_name(path: &str, kind: &str) -> String {
    if path.is_empty() {
        kind.to_string()
    } else {
        format!("layer {path} ({kind})")
    }
}

/// A value of the graph: its name and its shape at batch size 1 (the batch is `N` in
/// the file).
#[derive(Clone, Debug)]
struct Value {
    name: String,
    shape: Vec<usize>,
}

/// The graph under construction.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Every value and initializer name used so far.
    names: HashSet<String>,
}

impl Graph {
    /// `base`, or `base_1`, `base_2`, … if taken.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Adds a node named after `base` and returns its output's name.
    fn node(
        &mut self,
        op: &str,
        base: &str,
        inputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(base);
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: output.clone(),
            op_type: op.into(),
            attribute,
        });
        output
    }

    /// A float initializer named `name`, or `name_1`, … if taken.
    fn floats(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            values.len(),
            "initializer {name}: dims and values agree"
        );
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A 1-D int64 initializer (axes, sizes).
    fn int64s(&mut self, name: &str, values: &[i64]) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A tensor of the model as an initializer under its state_dict name. Node names are
    /// layer paths and joins (`4.main.0`, `4.add`), never a parameter's name, so the name
    /// is always free.
    fn tensor(&mut self, name: &str, t: &Tensor) -> String {
        assert!(
            !self.names.contains(name),
            "the state_dict name {name} is free in the graph"
        );
        self.floats(name, t.shape(), t.data())
    }

    /// `(x − mean[c]) / std[c]` in front of the network.
    fn normalization(&mut self, x: Value, mean: &[f32], std: &[f32]) -> Value {
        let c = mean.len();
        let m = self.floats("normalization.mean", &[1, c, 1, 1], mean);
        let s = self.floats("normalization.std", &[1, c, 1, 1], std);
        let centred = self.node("Sub", "normalization.sub", vec![x.name, m], vec![]);
        let name = self.node("Div", "normalization.div", vec![centred, s], vec![]);
        Value {
            name,
            shape: x.shape,
        }
    }

    /// Names the graph's last value `logits`: renames it where it is made and used, or adds
    /// an `Identity` when it is the input itself (a network of dropouts).
    fn rename_output(&mut self, last: &str) {
        if !self
            .nodes
            .iter()
            .any(|n| n.output.iter().any(|o| o == last))
        {
            self.nodes.push(NodeProto {
                input: vec![last.into()],
                output: vec![OUTPUT.into()],
                name: OUTPUT.into(),
                op_type: "Identity".into(),
                attribute: vec![],
            });
            return;
        }
        for node in &mut self.nodes {
            for name in node.input.iter_mut().chain(node.output.iter_mut()) {
                if name == last {
                    *name = OUTPUT.into();
                }
            }
        }
    }

    /// Adds the nodes computing `layer` (named `path`) on `x`, following its composition.
    fn layer(&mut self, layer: &dyn Layer, path: &str, x: Value) -> Result<Value> {
        let spec = layer.spec();
        let mut children = Vec::new();
        for (key, part) in layer.parts() {
            if let Part::Layer(child) = part {
                children.push((key, join(path, &key.to_string()), child));
            }
        }
        let name = || layer_name(path, spec.kind());
        match spec.composition() {
            Composition::Leaf if children.is_empty() => self.leaf(layer, &spec, path, x),
            Composition::Leaf => Err(Error::config(
                name(),
                "lists child layers but its spec does not say how it combines them; \
                 it cannot be exported",
            )),
            Composition::Chain => {
                let mut y = x;
                for (_, child_path, child) in children {
                    y = self.layer(child, &child_path, y)?;
                }
                Ok(y)
            }
            Composition::Residual => {
                // y = act(main(x) + shortcut(x)), the shortcut being the identity if absent.
                let (mut main, mut shortcut, mut act) = (None, None, None);
                for child in children {
                    match child.0 {
                        Key::Name("main") => main = Some(child),
                        Key::Name("shortcut") => shortcut = Some(child),
                        _ => act = Some(child),
                    }
                }
                let (_, main_path, main) = main
                    .ok_or_else(|| Error::config(name(), "a residual block without a main path"))?;
                let f = self.layer(main, &main_path, x.clone())?;
                let skip = match shortcut {
                    Some((_, p, s)) => self.layer(s, &p, x)?,
                    None => x,
                };
                let sum = Value {
                    name: self.node("Add", &join(path, "add"), vec![f.name, skip.name], vec![]),
                    shape: f.shape,
                };
                match act {
                    Some((_, p, a)) => self.layer(a, &p, sum),
                    None => Ok(sum),
                }
            }
            Composition::Concat => {
                // y = [B₀(x), B₁(x), …] along channels.
                let mut outputs = Vec::with_capacity(children.len());
                for (_, child_path, child) in children {
                    outputs.push(self.layer(child, &child_path, x.clone())?);
                }
                Ok(self.concat(&join(path, "concat"), outputs))
            }
            Composition::Dense => {
                // y = [x, h₁, …], h_l = H_l([x, h₁, …, h_{l−1}]): one Concat per layer.
                let mut features = x;
                for (i, (_, child_path, child)) in children.into_iter().enumerate() {
                    let h = self.layer(child, &child_path, features.clone())?;
                    features = self.concat(&join(path, &format!("concat{i}")), vec![features, h]);
                }
                Ok(features)
            }
            Composition::Scale => {
                // y = x · gate(x), one gate value per image and channel.
                let (_, gate_path, gate) = children
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::config(name(), "a scale block without a gate"))?;
                let mut g = self.layer(gate, &gate_path, x.clone())?;
                if g.shape.len() == 2 {
                    let axes = self.int64s(&join(path, "unsqueeze_axes"), &[2, 3]);
                    g.name = self.node(
                        "Unsqueeze",
                        &join(path, "unsqueeze"),
                        vec![g.name, axes],
                        vec![],
                    );
                    g.shape.extend([1, 1]);
                }
                let name = self.node("Mul", &join(path, "mul"), vec![x.name, g.name], vec![]);
                Ok(Value {
                    name,
                    shape: x.shape,
                })
            }
        }
    }

    /// `Concat` along channels.
    fn concat(&mut self, base: &str, parts: Vec<Value>) -> Value {
        let mut shape = parts[0].shape.clone();
        shape[1] = parts.iter().map(|p| p.shape[1]).sum();
        let inputs = parts.into_iter().map(|p| p.name).collect();
        Value {
            name: self.node("Concat", base, inputs, vec![int("axis", 1)]),
            shape,
        }
    }

    /// The nodes of one leaf layer.
    fn leaf(&mut self, layer: &dyn Layer, spec: &LayerSpec, path: &str, x: Value) -> Result<Value> {
        let name = layer_name(path, spec.kind());
        let shape = layer
            .output_shape(&x.shape)
            .map_err(|e| e.in_layer(&format!("layer {path}")))?;
        // The layer's parameters and buffers, under their state_dict names.
        let mut tensors: Vec<(String, &Tensor)> = Vec::new();
        for (key, part) in layer.parts() {
            match part {
                Part::Param(p) => tensors.push((key.to_string(), p.value())),
                Part::Buffer(b) => tensors.push((key.to_string(), b)),
                Part::Layer(_) => {}
            }
        }
        let init = |graph: &mut Graph, key: &str| -> Result<String> {
            let (_, t) = tensors
                .iter()
                .find(|(k, _)| k == key)
                .ok_or_else(|| Error::config(&name, format!("has no '{key}' to export")))?;
            Ok(graph.tensor(&join(path, key), t))
        };
        let base = if path.is_empty() { spec.kind() } else { path };
        let op = |graph: &mut Graph, op: &str, inputs: Vec<String>, attrs| {
            graph.node(op, base, inputs, attrs)
        };
        let y = match spec {
            LayerSpec::Conv2d {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let [top, bottom, left, right] = padding.sides();
                let mut inputs = vec![x.name, init(self, "weight")?];
                if *bias {
                    inputs.push(init(self, "bias")?);
                }
                let (kh, kw) = kernel.hw();
                let (sh, sw) = stride.hw();
                let (dh, dw) = dilation.hw();
                let attrs = vec![
                    ints("kernel_shape", &[kh, kw]),
                    ints("strides", &[sh, sw]),
                    ints("pads", &[top, left, bottom, right]),
                    ints("dilations", &[dh, dw]),
                    int("group", *groups as i64),
                ];
                op(self, "Conv", inputs, attrs)
            }
            LayerSpec::ConvTranspose2d {
                kernel,
                stride,
                padding,
                output_padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let mut inputs = vec![x.name, init(self, "weight")?];
                if *bias {
                    inputs.push(init(self, "bias")?);
                }
                let (kh, kw) = kernel.hw();
                let (sh, sw) = stride.hw();
                let (ph, pw) = padding.hw();
                let (oph, opw) = output_padding.hw();
                let (dh, dw) = dilation.hw();
                let attrs = vec![
                    ints("kernel_shape", &[kh, kw]),
                    ints("strides", &[sh, sw]),
                    ints("pads", &[ph, pw, ph, pw]),
                    ints("output_padding", &[oph, opw]),
                    ints("dilations", &[dh, dw]),
                    int("group", *groups as i64),
                ];
                op(self, "ConvTranspose", inputs, attrs)
            }
            LayerSpec::Linear { bias, .. } => {
                // y = x·Wᵀ + b, W: (OUT, IN) as PyTorch keeps it.
                let mut inputs = vec![x.name, init(self, "weight")?];
                if *bias {
                    inputs.push(init(self, "bias")?);
                }
                op(self, "Gemm", inputs, vec![int("transB", 1)])
            }
            LayerSpec::Flatten => op(self, "Flatten", vec![x.name], vec![int("axis", 1)]),
            LayerSpec::Relu => op(self, "Relu", vec![x.name], vec![]),
            LayerSpec::LeakyRelu { negative_slope } => op(
                self,
                "LeakyRelu",
                vec![x.name],
                vec![float("alpha", *negative_slope)],
            ),
            LayerSpec::Sigmoid => op(self, "Sigmoid", vec![x.name], vec![]),
            LayerSpec::Tanh => op(self, "Tanh", vec![x.name], vec![]),
            LayerSpec::Softmax => op(self, "Softmax", vec![x.name], vec![int("axis", 1)]),
            LayerSpec::Silu => {
                // y = x·σ(x)
                let s = self.node(
                    "Sigmoid",
                    &format!("{base}.sigmoid"),
                    vec![x.name.clone()],
                    vec![],
                );
                op(self, "Mul", vec![x.name, s], vec![])
            }
            // ONNX's HardSwish is x·max(0, min(1, x/6 + 1/2)) = x·relu6(x + 3)/6.
            LayerSpec::Hardswish => op(self, "HardSwish", vec![x.name], vec![]),
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            } => {
                let attrs = pool_attributes(*kernel, *stride, *padding, *ceil_mode);
                op(self, "MaxPool", vec![x.name], attrs)
            }
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            } => {
                let mut attrs = pool_attributes(*kernel, *stride, *padding, *ceil_mode);
                attrs.push(int("count_include_pad", *count_include_pad as i64));
                op(self, "AveragePool", vec![x.name], attrs)
            }
            LayerSpec::GlobalAvgPool => op(self, "GlobalAveragePool", vec![x.name], vec![]),
            LayerSpec::Upsample { scale, mode, .. } => {
                let attrs = match mode {
                    UpsampleMode::Nearest => vec![
                        string("mode", "nearest"),
                        string("coordinate_transformation_mode", "asymmetric"),
                        string("nearest_mode", "floor"),
                    ],
                    UpsampleMode::Bilinear => vec![
                        string("mode", "linear"),
                        string("coordinate_transformation_mode", "half_pixel"),
                    ],
                };
                let inputs = match scale {
                    Some(s) => {
                        let (sh, sw) = s.hw();
                        let scales = self.floats(
                            &format!("{base}.scales"),
                            &[4],
                            &[1.0, 1.0, sh as f32, sw as f32],
                        );
                        vec![x.name, String::new(), scales]
                    }
                    None => {
                        // sizes = [N, C, OH, OW]: the batch size is known only at run time.
                        let nc = self.node(
                            "Shape",
                            &format!("{base}.batch_channels"),
                            vec![x.name.clone()],
                            vec![int("start", 0), int("end", 2)],
                        );
                        let hw = self.int64s(
                            &format!("{base}.output_hw"),
                            &[shape[2] as i64, shape[3] as i64],
                        );
                        let sizes = self.node(
                            "Concat",
                            &format!("{base}.sizes"),
                            vec![nc, hw],
                            vec![int("axis", 0)],
                        );
                        vec![x.name, String::new(), String::new(), sizes]
                    }
                };
                op(self, "Resize", inputs, attrs)
            }
            LayerSpec::Dropout { .. } => {
                // The identity in evaluation.
                return Ok(Value {
                    name: x.name,
                    shape,
                });
            }
            LayerSpec::BatchNorm2d(bn) | LayerSpec::BatchNorm1d(bn) => {
                if !bn.track_running_stats {
                    return Err(Error::config(
                        name,
                        "keeps no running statistics, so it normalises with each batch's own \
                         statistics even in evaluation; ONNX's BatchNormalization cannot \
                         express that (train with track_running_stats = true to export)",
                    ));
                }
                let c = x.shape[1];
                let (scale, shift) = if bn.affine {
                    (init(self, "weight")?, init(self, "bias")?)
                } else {
                    // γ = 1, β = 0: not in the state_dict, named beside it.
                    (
                        self.floats(&join(path, "ones"), &[c], &vec![1.0; c]),
                        self.floats(&join(path, "zeros"), &[c], &vec![0.0; c]),
                    )
                };
                let inputs = vec![
                    x.name,
                    scale,
                    shift,
                    init(self, "running_mean")?,
                    init(self, "running_var")?,
                ];
                // y = γ·(x − running_mean)/√(running_var + eps) + β
                op(
                    self,
                    "BatchNormalization",
                    inputs,
                    vec![float("epsilon", bn.eps as f32)],
                )
            }
            LayerSpec::Custom { kind } => {
                return Err(Error::config(
                    layer_name(path, &format!("custom '{kind}'")),
                    "is defined outside ocellus; ONNX has no operator for it, so the model \
                     cannot be exported",
                ))
            }
            other => {
                return Err(Error::config(
                    name,
                    format!(
                        "is a '{}' block that lists no child layers; it cannot be exported",
                        other.kind()
                    ),
                ))
            }
        };
        Ok(Value { name: y, shape })
    }
}

/// `kernel_shape`, `strides`, `pads` and `ceil_mode` of a pooling layer, PyTorch's
/// defaults filled in (stride = kernel, no padding).
fn pool_attributes(
    kernel: ocellus::spec::Size2,
    stride: Option<ocellus::spec::Size2>,
    padding: Option<ocellus::spec::Size2>,
    ceil_mode: bool,
) -> Vec<AttributeProto> {
    let (kh, kw) = kernel.hw();
    let (sh, sw) = stride.map_or((kh, kw), |s| s.hw());
    let (ph, pw) = padding.map_or((0, 0), |p| p.hw());
    vec![
        ints("kernel_shape", &[kh, kw]),
        ints("strides", &[sh, sw]),
        ints("pads", &[ph, pw, ph, pw]),
        int("ceil_mode", ceil_mode as i64),
    ]
}
