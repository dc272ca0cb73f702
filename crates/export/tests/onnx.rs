//! The ONNX files ocellus writes, decoded again: the graph's nodes, their attributes, the
//! initializers under PyTorch's state_dict names with the model's values, the inputs,
//! outputs and metadata — and the errors, which leave no file behind. That onnxruntime
//! computes the same logits as ocellus is `tools/onnx_check.py`'s part (it needs Python).

use ocellus::arch::Architecture;
use ocellus::checkpoint::state_dict;
use ocellus::layers::{Layer, Mode};
use ocellus::{zoo, Result, Rng, Sequential, Tensor};
use ocellus_export::onnx::{IR_VERSION, OPSET};
use ocellus_export::proto::{attribute_type, data_type, AttributeProto, ModelProto, NodeProto};
use ocellus_export::{onnx_model, write_onnx, ExportInfo, OnnxOptions};
use prost::Message;

mod common;
use common::Doubler;

fn classes(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("class {i}")).collect()
}

/// A network from an architecture file's text, and what an export needs about it.
fn network(toml: &str) -> (Sequential, [usize; 3], usize) {
    let arch = Architecture::parse(toml, false).expect("the test's architecture parses");
    let net = arch
        .build(&mut Rng::new(1))
        .expect("the test's architecture builds");
    let out = arch.output_shape().expect("shapes fit");
    (net, arch.input, out[1])
}

/// Exports `net` and decodes the bytes again, as a reader would.
fn export(
    net: &dyn Layer,
    input: [usize; 3],
    k: usize,
    with_normalization: bool,
) -> Result<ModelProto> {
    let names = classes(k);
    let (mean, std) = (vec![0.25; input[0]], vec![0.5; input[0]]);
    let info = ExportInfo {
        input,
        classes: &names,
        mean: &mean,
        std: &std,
    };
    let model = onnx_model(net, &info, OnnxOptions { with_normalization })?;
    Ok(ModelProto::decode(model.encode_to_vec().as_slice()).expect("the bytes decode"))
}

fn ops(model: &ModelProto) -> Vec<&str> {
    let graph = model.graph.as_ref().expect("a graph");
    graph.node.iter().map(|n| n.op_type.as_str()).collect()
}

fn nodes<'a>(model: &'a ModelProto, op: &str) -> Vec<&'a NodeProto> {
    let graph = model.graph.as_ref().expect("a graph");
    graph.node.iter().filter(|n| n.op_type == op).collect()
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> &'a AttributeProto {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{} {} has no attribute {name}", node.op_type, node.name))
}

fn ints(node: &NodeProto, name: &str) -> Vec<i64> {
    let a = attr(node, name);
    assert_eq!(a.r#type, attribute_type::INTS, "{name}'s type");
    a.ints.clone()
}

fn int(node: &NodeProto, name: &str) -> i64 {
    let a = attr(node, name);
    assert_eq!(a.r#type, attribute_type::INT, "{name}'s type");
    a.i.expect("an INT attribute carries its value, also 0")
}

fn string(node: &NodeProto, name: &str) -> String {
    let a = attr(node, name);
    assert_eq!(a.r#type, attribute_type::STRING, "{name}'s type");
    String::from_utf8(a.s.clone().expect("a STRING attribute carries its value")).unwrap()
}

/// An initializer's dims and float values.
fn initializer(model: &ModelProto, name: &str) -> (Vec<i64>, Vec<f32>) {
    let graph = model.graph.as_ref().expect("a graph");
    let t = graph
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"));
    assert_eq!(t.data_type, data_type::FLOAT, "{name} is float");
    let values = t
        .raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (t.dims.clone(), values)
}

#[test]
fn lenet5_graph_inputs_outputs_and_weights() {
    let arch = zoo::model("lenet5", [1, 28, 28], 10).unwrap();
    let net = arch.build(&mut Rng::new(0)).unwrap();
    let model = export(&net, [1, 28, 28], 10, false).unwrap();
    assert_eq!(model.ir_version, IR_VERSION);
    assert_eq!(model.ir_version, 8);
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(
        (
            model.opset_import[0].domain.as_str(),
            model.opset_import[0].version
        ),
        ("", OPSET)
    );
    assert_eq!(OPSET, 17);
    assert_eq!(
        ops(&model),
        [
            "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu",
            "Gemm", "Relu", "Gemm"
        ]
    );
    let graph = model.graph.as_ref().unwrap();
    assert!(!graph.name.is_empty(), "check_model needs a graph name");
    let io = |v: &ocellus_export::proto::ValueInfoProto| {
        let t = v.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
        assert_eq!(t.elem_type, data_type::FLOAT);
        let dims: Vec<String> = t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match (&d.dim_param, d.dim_value) {
                (Some(p), None) => p.clone(),
                (None, Some(v)) => v.to_string(),
                other => panic!("a dimension is a size or a name: {other:?}"),
            })
            .collect();
        (v.name.clone(), dims.join("×"))
    };
    assert_eq!(
        graph.input.iter().map(io).collect::<Vec<_>>(),
        [("input".to_string(), "N×1×28×28".to_string())]
    );
    assert_eq!(
        graph.output.iter().map(io).collect::<Vec<_>>(),
        [("logits".to_string(), "N×10".to_string())]
    );
    assert_eq!(graph.node.last().unwrap().output, ["logits"]);
    assert_eq!(graph.node[0].input, ["input", "0.weight", "0.bias"]);

    // Every parameter, under its state_dict name, with its shape and values.
    let params = state_dict(&net);
    assert_eq!(graph.initializer.len(), params.len());
    for (name, tensor) in &params {
        let (dims, values) = initializer(&model, name);
        let shape: Vec<i64> = tensor.shape().iter().map(|&d| d as i64).collect();
        assert_eq!(dims, shape, "{name}'s dims");
        assert_eq!(values, tensor.data(), "{name}'s values");
    }

    let conv = nodes(&model, "Conv")[0];
    assert_eq!(ints(conv, "kernel_shape"), [5, 5]);
    assert_eq!(ints(conv, "pads"), [2, 2, 2, 2]);
    assert_eq!(ints(conv, "strides"), [1, 1]);
    assert_eq!(ints(conv, "dilations"), [1, 1]);
    assert_eq!(int(conv, "group"), 1);
    let pool = nodes(&model, "MaxPool")[0];
    assert_eq!(ints(pool, "kernel_shape"), [2, 2]);
    assert_eq!(ints(pool, "strides"), [2, 2]);
    assert_eq!(int(pool, "ceil_mode"), 0);
    for gemm in nodes(&model, "Gemm") {
        assert_eq!(int(gemm, "transB"), 1);
    }
    assert_eq!(int(nodes(&model, "Flatten")[0], "axis"), 1);

    let props: Vec<(&str, &str)> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let classes_json = serde_json::to_string(&classes(10)).unwrap();
    assert!(
        props.contains(&("classes", classes_json.as_str())),
        "{props:?}"
    );
    assert!(props.contains(&("normalization", r#"{"mean":[0.25],"std":[0.5]}"#)));
    assert!(props.contains(&("normalization_in_graph", "false")));
    assert!(props.contains(&("ocellus_version", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn convolution_and_pooling_settings() {
    let (net, input, k) = network(
        r#"
input = [2, 12, 11]
[[layers]]
type = "conv2d"
out_channels = 4
kernel = [3, 5]
padding = [1, 2, 0, 3]
stride = [1, 2]
dilation = [2, 1]
groups = 2
bias = false
[[layers]]
type = "maxpool2d"
kernel = 3
stride = 2
padding = 1
ceil_mode = true
[[layers]]
type = "avgpool2d"
kernel = 2
stride = 1
padding = 1
count_include_pad = false
[[layers]]
type = "avgpool2d"
kernel = [2, 3]
padding = [1, 1]
[[layers]]
type = "convtranspose2d"
out_channels = 6
kernel = [3, 2]
stride = 2
padding = [1, 0]
output_padding = [1, 0]
dilation = [1, 2]
groups = 2
[[layers]]
type = "globalavgpool"
[[layers]]
type = "flatten"
"#,
    );
    let model = export(&net, input, k, false).unwrap();
    assert_eq!(
        ops(&model),
        [
            "Conv",
            "MaxPool",
            "AveragePool",
            "AveragePool",
            "ConvTranspose",
            "GlobalAveragePool",
            "Flatten"
        ]
    );
    let conv = nodes(&model, "Conv")[0];
    assert_eq!(conv.input, ["input", "0.weight"], "no bias");
    assert_eq!(ints(conv, "kernel_shape"), [3, 5]);
    // ONNX orders pads (top, left, bottom, right); the spec (top, bottom, left, right).
    assert_eq!(ints(conv, "pads"), [1, 0, 2, 3]);
    assert_eq!(ints(conv, "strides"), [1, 2]);
    assert_eq!(ints(conv, "dilations"), [2, 1]);
    assert_eq!(int(conv, "group"), 2);
    assert_eq!(initializer(&model, "0.weight").0, [4, 1, 3, 5]);

    let max = nodes(&model, "MaxPool")[0];
    assert_eq!(ints(max, "pads"), [1, 1, 1, 1]);
    assert_eq!(ints(max, "strides"), [2, 2]);
    assert_eq!(int(max, "ceil_mode"), 1);
    let avg = nodes(&model, "AveragePool");
    // Written both ways: ONNX's default (0) is not PyTorch's (true).
    assert_eq!(int(avg[0], "count_include_pad"), 0);
    assert_eq!(int(avg[1], "count_include_pad"), 1);
    assert_eq!(ints(avg[1], "kernel_shape"), [2, 3]);
    assert_eq!(
        ints(avg[1], "strides"),
        [2, 3],
        "the stride defaults to the kernel"
    );

    let t = nodes(&model, "ConvTranspose")[0];
    assert_eq!(t.input, ["3", "4.weight", "4.bias"]);
    assert_eq!(ints(t, "kernel_shape"), [3, 2]);
    assert_eq!(ints(t, "strides"), [2, 2]);
    assert_eq!(ints(t, "pads"), [1, 0, 1, 0]);
    assert_eq!(ints(t, "output_padding"), [1, 0]);
    assert_eq!(ints(t, "dilations"), [1, 2]);
    assert_eq!(int(t, "group"), 2);
    assert_eq!(
        initializer(&model, "4.weight").0,
        [4, 3, 3, 2],
        "(IC, OC/groups, KH, KW)"
    );
}

#[test]
fn activations_batchnorm_dropout_and_upsampling() {
    let (mut net, input, k) = network(
        r#"
input = [3, 5, 4]
[[layers]]
type = "batchnorm2d"
eps = 1e-3
[[layers]]
type = "leakyrelu"
negative_slope = 0.2
[[layers]]
type = "silu"
[[layers]]
type = "hardswish"
[[layers]]
type = "upsample"
scale = [2, 3]
[[layers]]
type = "upsample"
size = [7, 9]
mode = "bilinear"
[[layers]]
type = "dropout"
[[layers]]
type = "tanh"
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
out_features = 6
bias = false
[[layers]]
type = "batchnorm1d"
affine = false
[[layers]]
type = "sigmoid"
[[layers]]
type = "relu"
[[layers]]
type = "softmax"
[[layers]]
type = "dropout"
"#,
    );
    // Running statistics other than the initial ones.
    let x = Tensor::randn(&[4, 3, 5, 4], 1.0, &mut Rng::new(2));
    net.forward(x, Mode::Train).unwrap();
    let model = export(&net, input, k, false).unwrap();
    assert_eq!(
        ops(&model),
        [
            "BatchNormalization",
            "LeakyRelu",
            "Sigmoid",
            "Mul",
            "HardSwish",
            "Resize",
            "Shape",
            "Concat",
            "Resize",
            "Tanh",
            "Flatten",
            "Gemm",
            "BatchNormalization",
            "Sigmoid",
            "Relu",
            "Softmax"
        ],
        "dropout is left out"
    );
    let bn = nodes(&model, "BatchNormalization");
    assert_eq!(
        bn[0].input,
        [
            "input",
            "0.weight",
            "0.bias",
            "0.running_mean",
            "0.running_var"
        ]
    );
    assert_eq!(attr(bn[0], "epsilon").f, Some(1e-3));
    assert_eq!(attr(bn[0], "epsilon").r#type, attribute_type::FLOAT);
    let running_var = net.layers()[0]
        .parts()
        .into_iter()
        .find_map(|(key, part)| match part {
            ocellus::layers::Part::Buffer(b) if key.to_string() == "running_var" => {
                Some(b.data().to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(initializer(&model, "0.running_var").1, running_var);
    assert_ne!(running_var, [1.0; 3], "the statistics moved");
    // Without affine parameters: γ = 1 and β = 0, named beside the state_dict names.
    assert_eq!(bn[1].input[1..3], ["10.ones", "10.zeros"]);
    assert_eq!(initializer(&model, "10.ones").1, [1.0; 6]);
    assert_eq!(initializer(&model, "10.zeros").1, [0.0; 6]);
    assert_eq!(attr(bn[1], "epsilon").f, Some(1e-5));

    assert_eq!(attr(nodes(&model, "LeakyRelu")[0], "alpha").f, Some(0.2));
    let silu = nodes(&model, "Mul")[0];
    assert_eq!(
        silu.input[0], "1",
        "SiLU multiplies its input by its sigmoid"
    );
    assert_eq!(silu.input[1], nodes(&model, "Sigmoid")[0].output[0]);
    assert_eq!(int(nodes(&model, "Softmax")[0], "axis"), 1);

    let resize = nodes(&model, "Resize");
    assert_eq!(string(resize[0], "mode"), "nearest");
    assert_eq!(
        string(resize[0], "coordinate_transformation_mode"),
        "asymmetric"
    );
    assert_eq!(string(resize[0], "nearest_mode"), "floor");
    assert_eq!(resize[0].input[1], "", "no region of interest");
    assert_eq!(
        initializer(&model, &resize[0].input[2]).1,
        [1.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(string(resize[1], "mode"), "linear");
    assert_eq!(
        string(resize[1], "coordinate_transformation_mode"),
        "half_pixel"
    );
    // A fixed size: (N, C) of the input at run time, then (7, 9).
    assert_eq!(resize[1].input[1..3], ["", ""]);
    let shape = nodes(&model, "Shape")[0];
    assert_eq!((int(shape, "start"), int(shape, "end")), (0, 2));
    assert_eq!(resize[1].input[3], nodes(&model, "Concat")[0].output[0]);

    let gemm = nodes(&model, "Gemm")[0];
    assert_eq!(gemm.input.len(), 2, "no bias");
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(
        graph.node.last().unwrap().output,
        ["logits"],
        "after a dropout too"
    );
}

#[test]
fn blocks_follow_their_composition() {
    let (net, input, k) = network(
        r#"
input = [4, 6, 6]
[[layers]]
type = "residual"
main = [ { type = "conv2d", out_channels = 4, kernel = 3, padding = 1 } ]
[[layers]]
type = "residual"
activation = "none"
main = [ { type = "conv2d", out_channels = 6, kernel = 3, stride = 2, padding = 1 } ]
shortcut = [ { type = "conv2d", out_channels = 6, kernel = 1, stride = 2 } ]
[[layers]]
type = "concat"
branches = [ [ { type = "conv2d", out_channels = 2, kernel = 1 } ], [ { type = "maxpool2d", kernel = 3, stride = 1, padding = 1 } ] ]
[[layers]]
type = "dense"
layers = [ [ { type = "conv2d", out_channels = 3, kernel = 1 } ], [ { type = "conv2d", out_channels = 3, kernel = 1 } ] ]
[[layers]]
type = "squeezeexcite"
reduction = 7
[[layers]]
type = "scale"
gate = [ { type = "globalavgpool" }, { type = "flatten" }, { type = "linear", out_features = 14 }, { type = "sigmoid" } ]
[[layers]]
type = "globalavgpool"
[[layers]]
type = "flatten"
"#,
    );
    let model = export(&net, input, k, false).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let node = |name: &str| {
        graph
            .node
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no node {name}: {:?}",
                    graph.node.iter().map(|n| &n.name).collect::<Vec<_>>()
                )
            })
    };
    // Identity shortcut: main + x, then the ReLU.
    assert_eq!(node("0.add").input, ["0.main.0", "input"]);
    assert_eq!(node("0.act").input, ["0.add"]);
    assert_eq!(node("0.act").op_type, "Relu");
    // A 1×1 shortcut, no activation.
    assert_eq!(node("1.add").input, ["1.main.0", "1.shortcut.0"]);
    assert_eq!(
        node("1.shortcut.0").input,
        ["0.act", "1.shortcut.0.weight", "1.shortcut.0.bias"]
    );
    assert!(graph.node.iter().all(|n| !n.name.starts_with("1.act")));
    // Branches joined along channels.
    assert_eq!(node("2.concat").input, ["2.0.0", "2.1.0"]);
    assert_eq!(int(node("2.concat"), "axis"), 1);
    // Dense: one Concat per layer, each layer reading everything before it.
    assert_eq!(node("3.0.0").input[0], "2.concat");
    assert_eq!(node("3.concat0").input, ["2.concat", "3.0.0"]);
    assert_eq!(node("3.1.0").input[0], "3.concat0");
    assert_eq!(node("3.concat1").input, ["3.concat0", "3.1.0"]);
    // Squeeze-and-excitation: its gate gives (N, C, 1, 1), multiplied in directly.
    assert_eq!(node("4.gate.0").op_type, "GlobalAveragePool");
    assert_eq!(node("4.mul").input, ["3.concat1", "4.gate.4"]);
    // A gate giving (N, C) is unsqueezed to (N, C, 1, 1) first.
    assert_eq!(node("5.unsqueeze").input, ["5.gate.3", "5.unsqueeze_axes"]);
    let axes = graph
        .initializer
        .iter()
        .find(|t| t.name == "5.unsqueeze_axes")
        .unwrap();
    assert_eq!(axes.data_type, data_type::INT64);
    assert_eq!(
        axes.raw_data,
        [2i64, 3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(node("5.mul").input, ["4.mul", "5.unsqueeze"]);
    // Every state_dict entry is an initializer.
    for (name, _) in state_dict(&net) {
        initializer(&model, &name);
    }
}

#[test]
fn normalization_in_front_takes_raw_images() {
    let arch = zoo::model("lenet5", [1, 28, 28], 10).unwrap();
    let net = arch.build(&mut Rng::new(0)).unwrap();
    let model = export(&net, [1, 28, 28], 10, true).unwrap();
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(&ops(&model)[..3], ["Sub", "Div", "Conv"]);
    assert_eq!(graph.node[0].input, ["input", "normalization.mean"]);
    assert_eq!(
        graph.node[1].input,
        [graph.node[0].output[0].as_str(), "normalization.std"]
    );
    assert_eq!(graph.node[2].input[0], graph.node[1].output[0]);
    assert_eq!(
        initializer(&model, "normalization.mean"),
        (vec![1, 1, 1, 1], vec![0.25])
    );
    assert_eq!(
        initializer(&model, "normalization.std"),
        (vec![1, 1, 1, 1], vec![0.5])
    );
    let props = &model.metadata_props;
    assert!(props
        .iter()
        .any(|p| p.key == "normalization_in_graph" && p.value == "true"));
}

fn info<'a>(names: &'a [String], mean: &'a [f32], std: &'a [f32]) -> ExportInfo<'a> {
    ExportInfo {
        input: [1, 4, 4],
        classes: names,
        mean,
        std,
    }
}

#[test]
fn a_custom_layer_is_an_error_naming_it_and_nothing_is_written() {
    let (mut net, _, _) = network("input = [1, 4, 4]\n[[layers]]\ntype = \"relu\"\n");
    net.push(Box::new(Doubler));
    net.push(Box::new(ocellus::layers::Flatten::new()));
    let names = classes(16);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    let err = write_onnx(
        &path,
        &net,
        &info(&names, &[0.0], &[1.0]),
        OnnxOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("layer 1") && err.contains("custom 'doubler'"),
        "{err}"
    );
    assert!(err.contains("ONNX"), "{err}");
    assert!(!path.exists(), "nothing is written");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file either"
    );

    // An older file at the path is kept as it was.
    std::fs::write(&path, b"old").unwrap();
    write_onnx(
        &path,
        &net,
        &info(&names, &[0.0], &[1.0]),
        OnnxOptions::default(),
    )
    .unwrap_err();
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
}

#[test]
fn batchnorm_without_running_statistics_is_refused() {
    let (net, input, k) = network(
        "input = [2, 3, 3]\n[[layers]]\ntype = \"batchnorm2d\"\ntrack_running_stats = false\n[[layers]]\ntype = \"flatten\"\n",
    );
    let err = export(&net, input, k, false).unwrap_err().to_string();
    assert!(
        err.contains("layer 0 (batchnorm2d)") && err.contains("running statistics"),
        "{err}"
    );
}

#[test]
fn normalization_must_fit_the_input_channels() {
    let (net, _, _) = network("input = [1, 4, 4]\n[[layers]]\ntype = \"flatten\"\n");
    let names = classes(16);
    let err = onnx_model(
        &net,
        &info(&names, &[0.0, 0.0], &[1.0]),
        OnnxOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("normalization") && err.contains("got 2 and 1"),
        "{err}"
    );
}

#[test]
fn a_written_file_decodes_to_the_model_and_replaces_the_old_one() {
    let (net, _, _) = network(
        "input = [1, 4, 4]\n[[layers]]\ntype = \"conv2d\"\nout_channels = 2\nkernel = 3\n[[layers]]\ntype = \"flatten\"\n",
    );
    let names = classes(8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, b"old").unwrap();
    let info = info(&names, &[0.5], &[0.25]);
    write_onnx(&path, &net, &info, OnnxOptions::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let expected = onnx_model(&net, &info, OnnxOptions::default()).unwrap();
    assert_eq!(ModelProto::decode(bytes.as_slice()).unwrap(), expected);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );

    // A directory is not replaced.
    let err = write_onnx(dir.path(), &net, &info, OnnxOptions::default()).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}
