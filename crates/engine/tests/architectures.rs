//! The model zoo and architecture files: shapes, parameter counts, and errors that point at
//! the offending layer.

use ocellus::arch::Architecture;
use ocellus::LayerExt;
use ocellus::{zoo, Mode, Rng, Tensor};

#[test]
fn lenet5_has_its_61706_parameters_on_32x32_and_on_28x28_with_padding() {
    for input in [[1, 32, 32], [1, 28, 28]] {
        let net = zoo::model("lenet5", input, 10)
            .unwrap()
            .build(&mut Rng::new(0))
            .unwrap();
        assert_eq!(net.param_count(), 61_706, "input {input:?}");
        let shapes = net.shapes(&[2, input[0], input[1], input[2]]).unwrap();
        // The 16×5×5 = 400 features of the classic design reach the first linear layer.
        assert_eq!(shapes[6], vec![2, 400]);
        assert_eq!(shapes.last().unwrap(), &vec![2, 10]);
    }
}

#[test]
fn every_zoo_model_adapts_to_channels_size_and_classes() {
    for name in zoo::MODELS {
        for (input, classes) in [([1, 28, 28], 10), ([3, 32, 32], 10), ([1, 28, 28], 6)] {
            let arch = zoo::model(name, input, classes).unwrap();
            let mut net = arch.build(&mut Rng::new(1)).unwrap();
            let x = Tensor::randn(&[2, input[0], input[1], input[2]], 1.0, &mut Rng::new(2));
            let y = net.forward_ref(&x, Mode::Train).unwrap();
            assert_eq!(y.shape(), &[2, classes], "{name} on {input:?}");
            net.backward_ref(&Tensor::full(y.shape(), 0.1)).unwrap();
        }
    }
}

#[test]
fn smallcnn_matches_the_notes_parameter_count() {
    // conv1 3·9·32+32, bn1 2·32, conv2 32·9·64+64, bn2 2·64, fc1 4096·128+128, fc2 128·10+10
    let expected =
        (3 * 9 * 32 + 32) + 64 + (32 * 9 * 64 + 64) + 128 + (4096 * 128 + 128) + (128 * 10 + 10);
    let net = zoo::model("smallcnn", [3, 32, 32], 10)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap();
    assert_eq!(net.param_count(), expected);
}

#[test]
fn resnet20_has_about_a_quarter_million_parameters_and_pytorch_names() {
    let net = zoo::model("resnet20", [3, 32, 32], 10)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap();
    // He et al. report 0.27M for ResNet-20 (with parameter-free shortcuts); the two 1×1
    // projection shortcuts add 16·32 + 32·64 weights and their BatchNorms.
    let count = net.param_count();
    assert!((270_000..280_000).contains(&count), "{count}");
    let names: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"3.main.0.weight".to_string()), "{names:?}");
    assert!(
        names.contains(&"6.shortcut.0.weight".to_string()),
        "{names:?}"
    );
}

#[test]
fn an_architecture_survives_toml_and_json() {
    let arch = zoo::model("resnet20", [3, 32, 32], 10).unwrap();
    assert_eq!(Architecture::parse(&arch.to_toml(), false).unwrap(), arch);
    assert_eq!(Architecture::parse(&arch.to_json(), true).unwrap(), arch);
}

const LENET_WITH_A_WRONG_LINEAR: &str = r#"
input = [1, 16, 16]
[[layers]]
type = "conv2d"
out_channels = 16
kernel = 5
[[layers]]
type = "relu"
[[layers]]
type = "maxpool2d"
kernel = 2
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
in_features = 400
out_features = 10
"#;

#[test]
fn a_shape_error_names_the_layer_and_where_the_features_come_from() {
    let arch = Architecture::parse(LENET_WITH_A_WRONG_LINEAR, false).unwrap();
    let msg = arch.build(&mut Rng::new(0)).err().unwrap().to_string();
    // 16 → conv 5 → 12 → pool 2 → 6: 16×6×6 = 576 features.
    assert_eq!(
        msg,
        "layer 4 (linear): expects 400 inputs, but the previous layer gives 576 = 16×6×6"
    );
}

#[test]
fn unknown_layers_and_settings_are_reported_with_their_position_in_the_file() {
    let unknown = "input = [1, 8, 8]\n[[layers]]\ntype = \"conv3d\"\nout_channels = 4\n";
    let msg = Architecture::parse(unknown, false).unwrap_err();
    assert!(msg.contains("conv3d") && msg.contains("line"), "{msg}");
    let typo = "input = [1, 8, 8]\n[[layers]]\ntype = \"conv2d\"\nout_channel = 4\nkernel = 3\n";
    let msg = Architecture::parse(typo, false).unwrap_err();
    assert!(msg.contains("out_channel"), "{msg}");
}

#[test]
fn image_layers_after_flatten_are_refused() {
    let text = "input = [1, 8, 8]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\n";
    let msg = Architecture::parse(text, false)
        .unwrap()
        .build(&mut Rng::new(0))
        .err()
        .unwrap()
        .to_string();
    assert_eq!(msg, "layer 1 (conv2d): expects input (N, C, H, W), but got (1, 64) (image layers must come before the Flatten)");
}

const BATCHNORM_OPTIONS: &str = r#"
input = [2, 6, 6]
[[layers]]
type = "batchnorm2d"
eps = 0.001
momentum = "none"
affine = false
[[layers]]
type = "flatten"
[[layers]]
type = "batchnorm1d"
momentum = 0.01
track_running_stats = false
"#;

#[test]
fn batchnorm_options_are_read_built_described_and_written_back() {
    let arch = Architecture::parse(BATCHNORM_OPTIONS, false).unwrap();
    let net = arch.build(&mut Rng::new(0)).unwrap();
    let layers = net.layers();
    assert_eq!(
        layers[0].describe(),
        "BatchNorm2d(2, eps 0.001, momentum None (cumulative average), no affine)"
    );
    assert_eq!(
        layers[2].describe(),
        "BatchNorm1d(72, momentum 0.01, no running stats)"
    );
    // No weight and bias for the first, no buffers for the last.
    let params: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(params, ["2.weight", "2.bias"]);
    let buffers: Vec<String> = net.buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        buffers,
        ["0.running_mean", "0.running_var", "0.num_batches_tracked"]
    );
    // Each layer writes its settings back; TOML and JSON read them again.
    let specs: Vec<_> = layers.iter().map(|l| l.spec()).collect();
    let written = Architecture {
        name: None,
        input: arch.input,
        layers: specs,
    };
    let toml = written.to_toml();
    assert!(toml.contains("momentum = \"none\""), "{toml}");
    assert_eq!(
        Architecture::parse(&toml, false).unwrap().layers,
        written.layers
    );
    assert_eq!(
        Architecture::parse(&written.to_json(), true)
            .unwrap()
            .layers,
        written.layers
    );
    // JSON's null is PyTorch's None too.
    let json = r#"{"input": [1, 2, 2], "layers": [{"type": "batchnorm2d", "momentum": null}]}"#;
    let net = Architecture::parse(json, true)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap();
    assert!(net.layers()[0].describe().contains("momentum None"));
}

#[test]
fn batchnorm_defaults_are_not_written_and_old_files_still_parse() {
    let old = "input = [3, 4, 4]\n[[layers]]\ntype = \"batchnorm2d\"\nfeatures = 3\n";
    let arch = Architecture::parse(old, false).unwrap();
    let net = arch.build(&mut Rng::new(0)).unwrap();
    assert_eq!(net.layers()[0].describe(), "BatchNorm2d(3)");
    let written = net.layers()[0].spec();
    assert_eq!(written, arch.layers[0]);
    let json = serde_json::to_string(&written).unwrap();
    assert_eq!(json, r#"{"type":"batchnorm2d","features":3}"#);
}

#[test]
fn impossible_batchnorm_options_name_the_layer() {
    let text = "input = [3, 4, 4]\n[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"batchnorm2d\"\nmomentum = 1.5\n";
    let msg = Architecture::parse(text, false)
        .unwrap()
        .build(&mut Rng::new(0))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("layer 1 (batchnorm2d): momentum must be in [0, 1]"),
        "{msg}"
    );
    let text = "input = [3, 4, 4]\n[[layers]]\ntype = \"batchnorm2d\"\nmomentum = \"fast\"\n";
    let msg = Architecture::parse(text, false).unwrap_err();
    assert!(msg.contains("momentum") && msg.contains("fast"), "{msg}");
}

#[test]
fn pooling_options_are_read_built_and_written_back() {
    let text = r#"
input = [1, 7, 7]
[[layers]]
type = "maxpool2d"
kernel = 2
ceil_mode = true
[[layers]]
type = "avgpool2d"
kernel = 3
stride = 2
padding = 1
ceil_mode = true
count_include_pad = false
"#;
    let arch = Architecture::parse(text, false).unwrap();
    let net = arch.build(&mut Rng::new(0)).unwrap();
    // 7 → ⌈5/2⌉ + 1 = 4 → ⌈3/2⌉ + 1 = 3 (floor mode would give 3, then 2).
    assert_eq!(arch.output_shape().unwrap(), [1, 1, 3, 3]);
    assert_eq!(
        net.layers()[0].describe(),
        "MaxPool2d(2×2, stride 2, ceil mode)"
    );
    assert_eq!(
        net.layers()[1].describe(),
        "AvgPool2d(3×3, stride 2, pad 1, ceil mode, padding not counted)"
    );
    let specs: Vec<_> = net.layers().iter().map(|l| l.spec()).collect();
    assert_eq!(specs, arch.layers);
    // The defaults are left out of what is written.
    let json = serde_json::to_string(&zoo::model("lenet5", [1, 28, 28], 10).unwrap()).unwrap();
    assert!(!json.contains("ceil_mode") && !json.contains("count_include_pad"));
    // Max pooling has no count_include_pad.
    let text = "input = [1, 4, 4]\n[[layers]]\ntype = \"maxpool2d\"\nkernel = 2\ncount_include_pad = false\n";
    let msg = Architecture::parse(text, false).unwrap_err();
    assert!(msg.contains("count_include_pad"), "{msg}");
}
