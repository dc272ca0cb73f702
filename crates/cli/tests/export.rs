//! `ocellus export`: a model file or run directory written as ONNX, as a PyTorch module
//! and as a web page, and every mistake
//! ending with one line `error: …`, a non-zero exit status and no file written.

use std::path::Path;
use std::process::Output;

use ocellus::arch::Architecture;
use ocellus::Rng;
use ocellus_data::Normalization;
use ocellus_train::run::{save_model, ModelInfo};

mod common;
use common::ocellus;

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Checks a failed command: non-zero exit, stderr one line `error: …` mentioning every
/// one of `expected`, no panic.
fn expect_error(output: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    for needle in expected {
        assert!(
            lines[0].contains(needle),
            "should mention {needle:?}: {}",
            lines[0]
        );
    }
}

/// A model file of `toml`'s architecture with untrained weights.
fn model_file(dir: &Path, toml: &str) -> std::path::PathBuf {
    let arch = Architecture::parse(toml, false).unwrap();
    let model = arch.build(&mut Rng::new(0)).unwrap();
    let classes = arch.output_shape().unwrap()[1];
    let info = ModelInfo {
        architecture: arch,
        normalization: Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        },
        classes: (0..classes).map(|k| format!("class {k}")).collect(),
        epoch: 1,
    };
    let path = dir.join("model.safetensors");
    save_model(&path, &model, &info).unwrap();
    path
}

const SMALL: &str =
    "input = [1, 6, 6]\n[[layers]]\ntype = \"conv2d\"\nout_channels = 2\nkernel = 3\n\
                     [[layers]]\ntype = \"flatten\"\n";

#[test]
fn exports_a_run_directory_and_a_model_file() {
    let tmp = tempfile::tempdir().unwrap();
    model_file(tmp.path(), SMALL);
    let out = tmp.path().join("a.onnx");
    let output = ocellus(&["export", text(tmp.path()), "-o", text(&out)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("input (N, 1, 6, 6)") && stdout.contains("logits (N, 32)"),
        "{stdout}"
    );
    let plain = std::fs::read(&out).unwrap();

    let model = tmp.path().join("model.safetensors");
    let raw = tmp.path().join("b.onnx");
    let output = ocellus(&[
        "export",
        text(&model),
        "--format",
        "onnx",
        "-o",
        text(&raw),
        "--with-normalization",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let with_normalization = std::fs::read(&raw).unwrap();
    assert!(
        with_normalization.len() > plain.len(),
        "mean and std are in the graph"
    );
    let has =
        |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has(&with_normalization, "normalization.mean") && !has(&plain, "normalization.mean"));
    assert!(has(&plain, "0.weight") && has(&plain, "logits") && has(&plain, "class 31"));
}

#[test]
fn mistakes_are_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let out = tmp.path().join("model.onnx");

    // A directory without a model.
    expect_error(
        &ocellus(&["export", text(&run), "-o", text(&out)]),
        &["run", "without model.safetensors"],
    );
    model_file(&run, SMALL);
    // Formats.
    expect_error(
        &ocellus(&["export", text(&run), "--format", "tflite", "-o", text(&out)]),
        &["--format", "unknown format 'tflite'", "onnx, pytorch, web"],
    );
    expect_error(
        &ocellus(&[
            "export",
            text(&run),
            "--format",
            "pytorch",
            "-o",
            text(&out),
            "--with-normalization",
        ]),
        &["--with-normalization", "--format onnx"],
    );
    // A directory export onto a file, or under a missing directory.
    std::fs::write(&out, b"old").unwrap();
    for format in ["pytorch", "web"] {
        expect_error(
            &ocellus(&["export", text(&run), "--format", format, "-o", text(&out)]),
            &["model.onnx", "is a file", "give a directory"],
        );
        expect_error(
            &ocellus(&[
                "export",
                text(&run),
                "--format",
                format,
                "-o",
                text(&tmp.path().join("no/such")),
            ]),
            &["does not exist"],
        );
    }
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"old",
        "the file is untouched"
    );
    std::fs::remove_file(&out).unwrap();
    // Where the file cannot be written.
    let missing = tmp.path().join("no/such/dir/model.onnx");
    expect_error(
        &ocellus(&["export", text(&run), "-o", text(&missing)]),
        &["does not exist"],
    );
    expect_error(
        &ocellus(&["export", text(&run), "-o", text(tmp.path())]),
        &["is a directory", "model.onnx"],
    );
    // A layer ONNX cannot express.
    let odd = tmp.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    model_file(
        &odd,
        "input = [1, 6, 6]\n[[layers]]\ntype = \"batchnorm2d\"\ntrack_running_stats = false\n\
         [[layers]]\ntype = \"flatten\"\n",
    );
    expect_error(
        &ocellus(&["export", text(&odd), "-o", text(&out)]),
        &["layer 0 (batchnorm2d)", "running statistics"],
    );
    let page = tmp.path().join("page");
    expect_error(
        &ocellus(&["export", text(&odd), "--format", "web", "-o", text(&page)]),
        &["layer 0 (batchnorm2d)", "running statistics"],
    );
    assert!(!out.exists() && !page.exists(), "no mistake writes a file");
}

/// Runs a command that should succeed and returns its standard output.
fn succeeds(args: &[&str]) -> String {
    let output = ocellus(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn pytorch_export_writes_a_module_and_its_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path(), SMALL);
    let dir = tmp.path().join("torch");
    let stdout = succeeds(&[
        "export",
        text(tmp.path()),
        "--format",
        "pytorch",
        "-o",
        text(&dir),
    ]);
    assert!(
        stdout.contains("model.py") && stdout.contains("(N, 1, 6, 6)"),
        "{stdout}"
    );
    let source = std::fs::read_to_string(dir.join("model.py")).unwrap();
    assert!(source.contains("class Model(nn.Sequential):"), "{source}");
    assert!(
        source.contains("nn.Conv2d(1, 2, 3),  # 0: → (2, 4, 4)"),
        "{source}"
    );
    assert!(source.contains("MEAN = [0.5]") && source.contains("STD = [0.25]"));
    // The weights are the model file's tensors under the same names, and ocellus reads
    // the exported file as a model file again.
    let (original, _) = ocellus_train::run::load_model(&model).unwrap();
    let (exported, info) = ocellus_train::run::load_model(&dir.join("model.safetensors")).unwrap();
    assert_eq!(
        ocellus::checkpoint::state_dict(&original),
        ocellus::checkpoint::state_dict(&exported)
    );
    assert_eq!(info.classes.len(), 32);

    // Exporting again into the same directory replaces its files and keeps the others.
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    std::fs::write(dir.join("model.py"), b"stale").unwrap();
    succeeds(&[
        "export",
        text(&model),
        "--format",
        "pytorch",
        "-o",
        text(&dir),
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.join("model.py")).unwrap(),
        source
    );
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn web_export_writes_the_page_the_script_and_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    model_file(tmp.path(), SMALL);
    let dir = tmp.path().join("web");
    let stdout = succeeds(&[
        "export",
        text(tmp.path()),
        "--format",
        "web",
        "-o",
        text(&dir),
    ]);
    assert!(stdout.contains("npm install onnxruntime-web@"), "{stdout}");
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    // Everything the page loads is beside it: no address of another host.
    assert!(html.contains("node_modules/onnxruntime-web/dist/ort.wasm.min.js"));
    assert!(html.contains("ocellus-web.js"));
    for file in ["index.html", "ocellus-web.js"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{file}"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["input"], serde_json::json!([1, 6, 6]));
    assert_eq!(meta["classes"].as_array().unwrap().len(), 32);
    assert_eq!(meta["normalization"]["in_graph"], true);
    // The page's model takes raw images: the normalisation is in the graph.
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    assert!(onnx.windows(18).any(|w| w == b"normalization.mean"));
}
