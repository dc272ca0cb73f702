//! The PyTorch module export: the generated `model.py` is valid Python for every zoo model,
//! its constants read back exactly in Python, every layer setting reaches the module's
//! arguments, and a layer PyTorch has no module for is an error naming it. (That the
//! module loads ocellus's weights strictly and gives the same logits is checked with
//! PyTorch itself by tools/pytorch_interop.py, which the tests cannot need.)

use std::path::Path;
use std::process::Command;

use ocellus::arch::Architecture;
use ocellus::{zoo, Rng};
use ocellus_export::{pytorch_module, ExportInfo};

mod common;
use common::Doubler;

/// `model.py` of an architecture, with `classes` and one mean/std per input channel.
fn module_source(arch: &Architecture, classes: &[String], mean: &[f32], std: &[f32]) -> String {
    let net = arch
        .build(&mut Rng::new(3))
        .expect("the architecture builds");
    let info = ExportInfo {
        input: arch.input,
        classes,
        mean,
        std,
    };
    pytorch_module(&net, &info, "test", "model.safetensors").expect("exports")
}

fn names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("class {i}")).collect()
}

/// Runs `python3 -c script args…` and returns its standard output; Python is part of
/// every machine the tests run on (the Python package's tests need it too).
fn python(script: &str, args: &[&Path]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (the tests need a Python interpreter)");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn every_zoo_model_is_valid_python_with_one_line_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in zoo::MODELS {
        let arch = zoo::model(name, [1, 28, 28], 10).unwrap();
        let source = module_source(&arch, &names(10), &[0.5], &[0.25]);
        // The model is a sequence: one line (or block) per top-level layer, numbered as the
        // state_dict numbers them.
        for i in 0..arch.layers.len() {
            let marker = format!("  # {i}: → ");
            let at_top = source
                .lines()
                .filter(|l| {
                    l.contains(&marker)
                        && l.starts_with("            ")
                        && !l.starts_with("             ")
                })
                .count();
            assert_eq!(at_top, 1, "{name}: layer {i} at the top level\n{source}");
        }
        assert!(
            source.contains("# 0: → ")
                && !source.contains(&format!("  # {}: → ", arch.layers.len())),
            "{name}"
        );
        let path = dir.path().join(format!("{}.py", name.replace('-', "_")));
        std::fs::write(&path, source).unwrap();
        files.push(path);
    }
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = python(
        "import ast, sys\nfor p in sys.argv[1:]:\n    compile(open(p, encoding='utf-8').read(), p, 'exec')\n    print('ok')",
        &paths,
    );
    assert_eq!(out.lines().count(), zoo::MODELS.len(), "{out}");
}

#[test]
fn constants_read_back_exactly_in_python() {
    let arch = Architecture::parse(
        "input = [3, 4, 4]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout_features = 4\n",
        false,
    )
    .unwrap();
    let classes: Vec<String> = ["T-shirt/top", "say \"hi\"", "back\\slash", "naïve ✓"]
        .map(String::from)
        .to_vec();
    let mean = [0.28604063, 1.0 / 3.0, 1e-8];
    let std = [0.35302424, 0.1, 7.0];
    let source = module_source(&arch, &classes, &mean, &std);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.py");
    std::fs::write(&path, &source).unwrap();
    // The constants, evaluated by Python's own parser without importing torch.
    let out = python(
        "import ast, json, sys\n\
         tree = ast.parse(open(sys.argv[1], encoding='utf-8').read())\n\
         values = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) \
         for t in n.targets if isinstance(t, ast.Name) and t.id in ('CLASSES', 'MEAN', 'STD', 'INPUT_SHAPE', 'NAME')}\n\
         print(json.dumps(values))",
        &[&path],
    );
    let values: serde_json::Value = serde_json::from_str(&out).unwrap();
    let read: Vec<String> = serde_json::from_value(values["CLASSES"].clone()).unwrap();
    assert_eq!(read, classes);
    let read_mean: Vec<f64> = serde_json::from_value(values["MEAN"].clone()).unwrap();
    let read_std: Vec<f64> = serde_json::from_value(values["STD"].clone()).unwrap();
    let as_f32 = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
    assert_eq!(as_f32(&read_mean), mean, "float32(MEAN) is ocellus's mean");
    assert_eq!(as_f32(&read_std), std);
    assert_eq!(values["INPUT_SHAPE"], serde_json::json!([3, 4, 4]));
    assert_eq!(values["NAME"], "test");
}

#[test]
fn every_setting_reaches_the_module_arguments() {
    let toml = r#"
input = [2, 12, 12]
[[layers]]
type = "conv2d"
out_channels = 4
kernel = [3, 5]
padding = [1, 2, 0, 3]
stride = [2, 1]
bias = false
[[layers]]
type = "batchnorm2d"
eps = 1e-3
momentum = "none"
[[layers]]
type = "leakyrelu"
negative_slope = 0.2
[[layers]]
type = "conv2d"
out_channels = 8
kernel = 3
padding = 2
dilation = 2
groups = 2
[[layers]]
type = "avgpool2d"
kernel = 3
stride = 2
padding = 1
ceil_mode = true
count_include_pad = false
[[layers]]
type = "upsample"
scale = [2, 3]
mode = "bilinear"
[[layers]]
type = "convtranspose2d"
out_channels = 2
kernel = 3
stride = 2
padding = 1
output_padding = 1
[[layers]]
type = "maxpool2d"
kernel = 2
[[layers]]
type = "dropout"
p = 0.25
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
out_features = 6
bias = false
[[layers]]
type = "batchnorm1d"
affine = false
track_running_stats = false
"#;
    let arch = Architecture::parse(toml, false).unwrap();
    let source = module_source(&arch, &names(6), &[0.5, 0.5], &[0.25, 0.25]);
    for expected in [
        // Per-side (top 1, bottom 2, left 0, right 3) → F.pad's (left, right, top, bottom).
        "PerSidePadConv2d(2, 4, (3, 5), stride=(2, 1), bias=False, pad=(0, 3, 1, 2)),",
        "class PerSidePadConv2d(nn.Conv2d):",
        "nn.BatchNorm2d(4, eps=0.001, momentum=None),",
        "nn.LeakyReLU(0.2),",
        "nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2),",
        "nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),",
        "nn.Upsample(scale_factor=(2.0, 3.0), mode=\"bilinear\", align_corners=False),",
        "nn.ConvTranspose2d(8, 2, 3, stride=2, padding=1, output_padding=1),",
        "nn.MaxPool2d(2),",
        "nn.Dropout(0.25),",
        "nn.Linear(",
        ", 6, bias=False),",
        "nn.BatchNorm1d(6, affine=False, track_running_stats=False),",
    ] {
        assert!(
            source.contains(expected),
            "missing {expected:?} in\n{source}"
        );
    }
    // Only the helper classes the model uses are written.
    for unused in [
        "class Residual",
        "class Concat",
        "class Dense",
        "class Scale",
    ] {
        assert!(!source.contains(unused), "{unused} is not used");
    }
}

#[test]
fn a_custom_layer_is_an_error_naming_it() {
    let arch =
        Architecture::parse("input = [1, 4, 4]\n[[layers]]\ntype = \"relu\"\n", false).unwrap();
    let mut net = arch.build(&mut Rng::new(0)).unwrap();
    net.push(Box::new(Doubler));
    let classes = names(16);
    let info = ExportInfo {
        input: [1, 4, 4],
        classes: &classes,
        mean: &[0.0],
        std: &[1.0],
    };
    let err = pytorch_module(&net, &info, "odd", "model.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer 1") && err.contains("custom 'doubler'") && err.contains("PyTorch"),
        "{err}"
    );
}
