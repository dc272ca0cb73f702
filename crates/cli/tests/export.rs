//! `ocellus export`: a model file or run directory written as ONNX, and every mistake
//! ending with one line `error: …`, a non-zero exit status and no file written.

use std::path::Path;
use std::process::{Command, Output};

use ocellus::arch::Architecture;
use ocellus::Rng;
use ocellus_data::Normalization;
use ocellus_train::run::{save_model, ModelInfo};

fn ocellus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocellus"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the ocellus binary runs")
}

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
        &["--format", "unknown format 'tflite'", "onnx"],
    );
    expect_error(
        &ocellus(&[
            "export",
            text(&run),
            "--format",
            "pytorch",
            "-o",
            text(&out),
        ]),
        &["--format", "'pytorch' is not available yet"],
    );
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
    assert!(!out.exists(), "no mistake writes a file");
}
