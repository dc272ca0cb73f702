//! The `ocellus` binary on bad input: every mistake ends with one line `error: …` on
//! stderr naming the file (or flag) and the problem, a non-zero exit status, no panic, and
//! no checkpoint left behind that could pass for a finished one. One end-to-end run
//! (train, eval, predict) checks the happy path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use ocellus::{checkpoint, zoo, Rng, Tensor};
use ocellus_data::Normalization;
use ocellus_train::run::{save_model, ModelInfo};
use tempfile::TempDir;

mod common;
use common::ocellus_in as ocellus;

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Checks a failed command and returns its error line: non-zero exit, stderr exactly one
/// line `error: …` mentioning every one of `expected`, and no panic text anywhere.
fn expect_error(output: &Output, expected: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the command should fail; stderr: {stderr}"
    );
    for panic_text in ["panicked", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(panic_text), "a panic: {stderr}");
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for needle in expected {
        assert!(
            line.contains(needle),
            "the error should mention {needle:?}: {line}"
        );
    }
    line.to_string()
}

fn assert_success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "the command should succeed; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A run directory that failed must not hold a model or training state.
fn assert_no_checkpoint(out: &Path) {
    for file in ["model.safetensors", "training.safetensors"] {
        assert!(
            !out.join(file).exists(),
            "{} exists after a failed run",
            out.join(file).display()
        );
    }
}

const SHORT_TRAINING: [&str; 6] = ["--epochs", "1", "--limit-train", "64", "--batch-size", "32"];

/// `ocellus train` with short-training flags, `extra` flags and `--out out`.
fn train(cwd: &Path, extra: &[&str], out: &Path) -> Output {
    let mut args = vec!["train"];
    args.extend(SHORT_TRAINING);
    args.extend(extra);
    args.extend(["--out", text(out)]);
    ocellus(cwd, &args)
}

// ---- IDX files -------------------------------------------------------------------------

/// An IDX images file: magic 0x00000803, then N, rows, cols as big-endian u32, then
/// N·rows·cols pixel bytes.
fn idx_images(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in [0x0803, n, rows, cols] {
        bytes.extend((v as u32).to_be_bytes());
    }
    bytes.extend((0..n * rows * cols).map(|i| (i * 7 % 256) as u8));
    bytes
}

/// An IDX labels file: magic 0x00000801, N, then one byte per label.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in [0x0801, labels.len()] {
        bytes.extend((v as u32).to_be_bytes());
    }
    bytes.extend(labels);
    bytes
}

fn digits(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 10) as u8).collect()
}

/// An MNIST directory whose test files are well formed and whose training files are
/// the ones given.
fn mnist_dir(tmp: &TempDir, train_images: Vec<u8>, train_labels: Vec<u8>) -> PathBuf {
    let dir = tmp.path().join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        ("train-images-idx3-ubyte", train_images),
        ("train-labels-idx1-ubyte", train_labels),
        ("t10k-images-idx3-ubyte", idx_images(20, 28, 28)),
        ("t10k-labels-idx1-ubyte", idx_labels(&digits(20))),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

/// Trains on the MNIST directory and expects the failure described by `expected`, with
/// the run directory left without a checkpoint.
fn train_on_mnist_fails(tmp: &TempDir, dir: &Path, expected: &[&str]) -> String {
    let out = tmp.path().join("run");
    let output = train(
        tmp.path(),
        &["--data", "mnist", "--data-dir", text(dir)],
        &out,
    );
    let line = expect_error(&output, expected);
    assert_no_checkpoint(&out);
    line
}

#[test]
fn well_formed_idx_files_train() {
    // The control for the IDX cases below: the same files, undamaged, are accepted.
    let tmp = tempfile::tempdir().unwrap();
    let dir = mnist_dir(&tmp, idx_images(64, 28, 28), idx_labels(&digits(64)));
    let out = tmp.path().join("run");
    assert_success(&train(
        tmp.path(),
        &["--data", "mnist", "--data-dir", text(&dir)],
        &out,
    ));
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn truncated_idx_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut images = idx_images(64, 28, 28);
    images.truncate(images.len() - 100);
    let dir = mnist_dir(&tmp, images, idx_labels(&digits(64)));
    let file = dir.join("train-images-idx3-ubyte");
    train_on_mnist_fails(&tmp, &dir, &[text(&file), "truncated"]);
}

#[test]
fn idx_file_with_the_wrong_magic_number() {
    let tmp = tempfile::tempdir().unwrap();
    let mut images = idx_images(64, 28, 28);
    images[2] = 0x12; // 0x00001203
    let dir = mnist_dir(&tmp, images, idx_labels(&digits(64)));
    let file = dir.join("train-images-idx3-ubyte");
    train_on_mnist_fails(&tmp, &dir, &[text(&file), "magic", "0x00000803"]);
}

#[test]
fn labels_file_a_different_file_type() {
    // A labels file given where images belong (its magic says "1 dimension").
    let tmp = tempfile::tempdir().unwrap();
    let dir = mnist_dir(&tmp, idx_labels(&digits(64)), idx_labels(&digits(64)));
    let file = dir.join("train-images-idx3-ubyte");
    train_on_mnist_fails(&tmp, &dir, &[text(&file), "magic"]);
}

#[test]
fn image_and_label_counts_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = mnist_dir(&tmp, idx_images(64, 28, 28), idx_labels(&digits(63)));
    let labels = dir.join("train-labels-idx1-ubyte");
    train_on_mnist_fails(&tmp, &dir, &[text(&labels), "63 labels", "64 images"]);
}

#[test]
fn label_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let mut labels = digits(64);
    labels[17] = 12;
    let dir = mnist_dir(&tmp, idx_images(64, 28, 28), idx_labels(&labels));
    let file = dir.join("train-labels-idx1-ubyte");
    train_on_mnist_fails(
        &tmp,
        &dir,
        &[text(&file), "label 12", "index 17", "out of range"],
    );
}

// ---- datasets and flags ----------------------------------------------------------------

#[test]
fn missing_dataset_directory_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let out = tmp.path().join("run");
    let mnist = train(
        tmp.path(),
        &["--data", "mnist", "--data-dir", text(&missing)],
        &out,
    );
    expect_error(&mnist, &[text(&missing), "no such directory", "--data-dir"]);
    let fashion = train(
        tmp.path(),
        &["--data", "fashion-mnist", "--data-dir", text(&missing)],
        &out,
    );
    expect_error(
        &fashion,
        &[
            text(&missing),
            "apt-get install dataset-fashion-mnist",
            "--data-dir",
        ],
    );
    assert!(!out.exists(), "no run directory for data that is not there");
}

#[test]
fn mnist_without_a_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let output = train(tmp.path(), &["--data", "mnist"], &tmp.path().join("run"));
    expect_error(&output, &["--data mnist needs --data-dir"]);
}

#[test]
fn unknown_dataset_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let output = train(tmp.path(), &["--data", "imagenet"], &out);
    expect_error(
        &output,
        &["--data", "'imagenet'", "patterns, fashion-mnist"],
    );
    assert!(!out.exists());
}

#[test]
fn impossible_training_settings_fail_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    for (flag, expected) in [
        ("--epochs=0", "at least 1"),
        ("--batch-size=0", "at least 1"),
        ("--lr=NaN", "not a positive learning rate"),
        ("--lr=-0.1", "not a positive learning rate"),
        ("--val-fraction=1", "[0, 1)"),
        ("--limit-train=0", "at least 1"),
        ("--label-smoothing=2", "[0, 1]"),
        ("--momentum=1.5", "[0, 1)"),
        ("--weight-decay=-1", "0 or more"),
    ] {
        let output = ocellus(tmp.path(), &["train", flag, "--out", text(&out)]);
        let name = flag.split('=').next().unwrap();
        expect_error(&output, &[name, expected]);
        assert!(!out.exists(), "{flag} created {}", out.display());
    }
}

#[test]
fn zero_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let output = ocellus(tmp.path(), &["--threads", "0", "patterns", "-o", "samples"]);
    expect_error(&output, &["--threads", "at least 1"]);
    assert!(!tmp.path().join("samples").exists());
}

// ---- architecture files ----------------------------------------------------------------

fn train_architecture_fails(file_name: &str, text_of_file: &str, expected: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(file_name);
    std::fs::write(&file, text_of_file).unwrap();
    let out = tmp.path().join("run");
    let output = train(tmp.path(), &["--model", text(&file)], &out);
    let mut all = vec![text(&file)];
    all.extend(expected);
    expect_error(&output, &all);
    assert!(
        !out.exists(),
        "no run directory for a network that cannot be built"
    );
}

#[test]
fn architecture_with_a_shape_error() {
    // A linear layer straight after a convolution: the message says where and what fits.
    train_architecture_fails(
        "net.toml",
        "input = [1, 28, 28]\n\
         [[layers]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\n\
         [[layers]]\ntype = \"linear\"\nout_features = 8\n",
        &[
            "layer 1 (linear)",
            "(1, 4, 26, 26)",
            "flatten",
            "2704 = 4×26×26",
        ],
    );
}

#[test]
fn architecture_with_a_declared_size_that_does_not_fit() {
    train_architecture_fails(
        "net.toml",
        "input = [1, 28, 28]\n\
         [[layers]]\ntype = \"flatten\"\n\
         [[layers]]\ntype = \"linear\"\nin_features = 100\nout_features = 8\n",
        &["layer 1 (linear)", "100", "784 = 1×28×28"],
    );
}

#[test]
fn architecture_with_an_unknown_layer_type() {
    train_architecture_fails(
        "net.toml",
        "input = [1, 28, 28]\n[[layers]]\ntype = \"conv3d\"\nout_channels = 4\nkernel = 3\n",
        &["line 3", "conv3d", "conv2d"],
    );
    train_architecture_fails(
        "net.json",
        r#"{"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "lienar", "out_features": 8}]}"#,
        &["lienar", "linear"],
    );
}

// ---- output and model files ------------------------------------------------------------

#[test]
fn output_directory_under_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let out = file.join("run");
    let output = train(tmp.path(), &[], &out);
    expect_error(
        &output,
        &[text(&out), "is a file, not a directory", "--out"],
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn output_directory_is_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("run");
    std::fs::write(&file, "keep me").unwrap();
    let output = train(tmp.path(), &[], &file);
    expect_error(&output, &[text(&file), "is a file, not a directory"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

/// A quickly trained LeNet-5 on the built-in patterns, in `tmp/run`.
fn quick_model(tmp: &TempDir) -> PathBuf {
    let out = tmp.path().join("run");
    assert_success(&train(tmp.path(), &[], &out));
    out
}

#[test]
fn predict_on_an_unreadable_image() {
    let tmp = tempfile::tempdir().unwrap();
    let run = quick_model(&tmp);
    let not_an_image = tmp.path().join("notes.png");
    std::fs::write(&not_an_image, "plain text").unwrap();
    // A PNG signature followed by garbage, and a JPEG cut short: decoder errors.
    let broken_png = tmp.path().join("broken.png");
    std::fs::write(&broken_png, b"\x89PNG\r\n\x1a\n not really").unwrap();
    let cut_jpeg = tmp.path().join("cut.jpg");
    let jpeg = include_bytes!("../../data/testdata/two_blocks.jpg");
    std::fs::write(&cut_jpeg, &jpeg[..100]).unwrap();
    let missing = tmp.path().join("missing.png");
    for (image, problem) in [
        (&not_an_image, "not a PNG or JPEG image"),
        (&broken_png, "cannot decode this PNG image"),
        (&cut_jpeg, "cannot decode this JPEG image"),
        (&missing, "No such file"),
    ] {
        let output = ocellus(
            tmp.path(),
            &["predict", "--checkpoint", text(&run), text(image)],
        );
        expect_error(&output, &[text(image), problem]);
        assert!(output.stdout.is_empty(), "no prediction before the error");
    }
}

/// CRC-32 of PNG chunks (ISO 3309, the polynomial 0xedb88320 reflected).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The signature and header of a PNG (8-bit RGB, valid CRC) declaring `width × height`,
/// and its end: a few dozen bytes that promise any size.
fn png_header_declaring(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut typed = kind.to_vec();
        typed.extend(data);
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend(&typed);
        out.extend(crc32(&typed).to_be_bytes());
        out
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn images_and_checkpoints_beyond_the_limits_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = quick_model(&tmp);
    // Decoding 4000 × 4 000 000 RGB pixels would take 48 GB.
    let tall = tmp.path().join("tall.png");
    std::fs::write(&tall, png_header_declaring(4000, 4_000_000)).unwrap();
    // A valid PNG one pixel wider than the limit.
    let wide = tmp.path().join("wide.png");
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, 16_385, 1);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[90; 16_385]).unwrap();
    }
    std::fs::write(&wide, bytes).unwrap();
    // two_blocks.jpg cut in its scan data.
    let cut_jpeg = tmp.path().join("cut-scan.jpg");
    let jpeg = include_bytes!("../../data/testdata/two_blocks.jpg");
    std::fs::write(&cut_jpeg, &jpeg[..288]).unwrap();
    let predict = |image: &Path| {
        ocellus(
            tmp.path(),
            &["predict", "--checkpoint", text(&run), text(image)],
        )
    };
    expect_error(
        &predict(&tall),
        &[text(&tall), "4000×4000000 pixels", "MAX_IMAGE_SIDE"],
    );
    expect_error(
        &predict(&cut_jpeg),
        &[
            text(&cut_jpeg),
            "cannot decode this JPEG image",
            "truncated",
        ],
    );
    let features = tmp.path().join("features.png");
    let output = ocellus(
        tmp.path(),
        &[
            "viz",
            "features",
            "--checkpoint",
            text(&run),
            "--image",
            text(&wide),
            "-o",
            text(&features),
        ],
    );
    expect_error(&output, &[text(&wide), "16385×1 pixels", "resize it first"]);
    assert!(!features.exists());

    // The same limits for an image folder.
    let set = tmp.path().join("set");
    for class in ["a", "b"] {
        std::fs::create_dir_all(set.join(class)).unwrap();
        std::fs::copy(&tall, set.join(class).join("tall.png")).unwrap();
    }
    let out = tmp.path().join("folder-run");
    let output = train(
        tmp.path(),
        &[
            "--data",
            "folder",
            "--data-dir",
            text(&set),
            "--image-size",
            "1x28x28",
        ],
        &out,
    );
    expect_error(&output, &["tall.png", "MAX_IMAGE_SIDE"]);
    assert_no_checkpoint(&out);

    #[cfg(unix)]
    {
        let zero = Path::new("/dev/zero");
        expect_error(&predict(zero), &["/dev/zero", "not a PNG or JPEG image"]);
        let output = ocellus(
            tmp.path(),
            &["predict", "--checkpoint", "/dev/zero", text(&tall)],
        );
        expect_error(&output, &["/dev/zero", "not a regular file"]);
        eval_fails(&tmp, zero, "not a regular file");
    }
}

/// `eval --checkpoint file --data patterns` must fail naming the file and `problem`.
fn eval_fails(tmp: &TempDir, file: &Path, problem: &str) {
    let output = ocellus(
        tmp.path(),
        &["eval", "--checkpoint", text(file), "--data", "patterns"],
    );
    expect_error(&output, &[text(file), problem]);
}

#[test]
fn eval_on_a_corrupt_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let garbage = tmp.path().join("garbage.safetensors");
    std::fs::write(&garbage, "this is not a safetensors file").unwrap();
    eval_fails(&tmp, &garbage, "not a readable safetensors file");

    // A real model file cut in half.
    let run = quick_model(&tmp);
    let bytes = std::fs::read(run.join("model.safetensors")).unwrap();
    let cut = tmp.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    eval_fails(&tmp, &cut, "not a readable safetensors file");
}

#[test]
fn eval_on_a_foreign_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // Valid safetensors without ocellus's metadata, as another program would write them.
    let foreign = tmp.path().join("foreign.safetensors");
    let tensors = vec![("fc.weight".to_string(), Tensor::zeros(&[3, 4]))];
    checkpoint::save(&foreign, &tensors, HashMap::new()).unwrap();
    eval_fails(&tmp, &foreign, "not an ocellus model file");

    // LeNet-5's description with the weights of an MLP.
    let mismatched = tmp.path().join("mismatched.safetensors");
    let lenet = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let mlp = zoo::model("mlp", [1, 28, 28], 8).unwrap();
    let info = ModelInfo {
        architecture: lenet,
        normalization: Normalization {
            mean: vec![0.0],
            std: vec![1.0],
        },
        classes: (0..8).map(|k| format!("class {k}")).collect(),
        epoch: 1,
    };
    save_model(&mismatched, &mlp.build(&mut Rng::new(0)).unwrap(), &info).unwrap();
    eval_fails(&tmp, &mismatched, "does not fit this model");
}

#[test]
fn eval_on_a_directory_without_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty-run");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.safetensors");
    eval_fails(&tmp, &dir, text(&model));
}

/// `ocellus report` with `args` must fail naming every one of `expected`, and leave no
/// report (finished or temporary) in `run` or at `out`.
fn report_fails(tmp: &TempDir, args: &[&str], expected: &[&str], run: &Path, out: &Path) {
    let mut all = vec!["report"];
    all.extend(args);
    let output = ocellus(tmp.path(), &all);
    expect_error(&output, expected);
    assert!(
        !out.exists(),
        "{} written by a failed report",
        out.display()
    );
    if let Ok(entries) = std::fs::read_dir(run) {
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains("report"), "{name} left in {}", run.display());
        }
    }
}

#[test]
fn report_on_a_missing_or_empty_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let out = missing.join("report.html");
    report_fails(
        &tmp,
        &[text(&missing)],
        &[text(&missing), "no such run directory"],
        &missing,
        &out,
    );
    // A directory, but not a run: no config.json.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let config = empty.join("config.json");
    report_fails(
        &tmp,
        &[text(&empty)],
        &[text(&config)],
        &empty,
        &empty.join("report.html"),
    );
}

#[test]
fn report_on_an_unreadable_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run = quick_model(&tmp);
    let model = run.join("model.safetensors");
    std::fs::write(&model, "this is not a safetensors file").unwrap();
    report_fails(
        &tmp,
        &[text(&run)],
        &[text(&model), "not a readable safetensors file"],
        &run,
        &run.join("report.html"),
    );
}

#[test]
fn report_into_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = quick_model(&tmp);
    let out = tmp.path().join("no-such-dir").join("report.html");
    report_fails(
        &tmp,
        &[text(&run), "-o", text(&out)],
        &[text(&out), "does not exist"],
        &run,
        &out,
    );
    // A directory where the file should go.
    let out = tmp.path().join("a-directory");
    std::fs::create_dir_all(&out).unwrap();
    let output = ocellus(tmp.path(), &["report", text(&run), "-o", text(&out)]);
    expect_error(&output, &[text(&out), "is a directory"]);
}

// ---- the happy path --------------------------------------------------------------------

#[test]
fn train_eval_and_predict_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let stdout = assert_success(&ocellus(
        tmp.path(),
        &[
            "train",
            "--epochs",
            "1",
            "--limit-train",
            "512",
            "--out",
            text(&run),
        ],
    ));
    assert!(stdout.contains("test accuracy"), "{stdout}");
    for file in [
        "model.safetensors",
        "training.safetensors",
        "config.json",
        "metrics.jsonl",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    assert!(metrics.contains("\"epoch\":1"), "{metrics}");

    let stdout = assert_success(&ocellus(tmp.path(), &["eval", "--checkpoint", text(&run)]));
    assert!(stdout.contains("patterns test split: accuracy"), "{stdout}");

    let samples = tmp.path().join("samples");
    assert_success(&ocellus(
        tmp.path(),
        &["patterns", "-o", text(&samples), "--per-class", "1"],
    ));
    let class = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("a class folder");
    let image = class.join("000.png");
    let stdout = assert_success(&ocellus(
        tmp.path(),
        &["predict", "--checkpoint", text(&run), text(&image)],
    ));
    assert!(
        stdout.starts_with(&format!("{}: ", image.display())),
        "{stdout}"
    );
    assert!(stdout.contains('%'), "{stdout}");
}

/// A model file whose metadata does not fit its model: too few class names, or a
/// normalisation for other channels. Every command that loads it refuses it.
#[test]
fn checkpoint_metadata_that_does_not_fit_the_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lenet = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let model = lenet.build(&mut Rng::new(0)).unwrap();
    let image = tmp.path().join("x.png");
    ocellus_data::folder::save_png_gray(&image, &[0.5; 28 * 28], 28, 28).unwrap();
    let cases = [
        ("three classes", 3, vec![0.0], vec![1.0], "names 3 classes"),
        (
            "two channels",
            8,
            vec![0.0, 0.0],
            vec![1.0, 1.0],
            "1 finite means",
        ),
        (
            "zero std",
            8,
            vec![0.0],
            vec![0.0],
            "positive standard deviations",
        ),
        ("nan mean", 8, vec![f32::NAN], vec![1.0], "normalization"),
    ];
    for (name, classes, mean, std, expected) in cases {
        let file = tmp.path().join(format!("{name}.safetensors"));
        let info = ModelInfo {
            architecture: lenet.clone(),
            normalization: Normalization { mean, std },
            classes: (0..classes).map(|k| format!("class {k}")).collect(),
            epoch: 1,
        };
        save_model(&file, &model, &info).unwrap();
        for args in [
            vec!["predict", "--checkpoint", text(&file), text(&image)],
            vec![
                "viz",
                "filters",
                "--checkpoint",
                text(&file),
                "--out",
                "f.png",
            ],
            vec!["eval", "--checkpoint", text(&file)],
        ] {
            let output = ocellus(tmp.path(), &args);
            expect_error(&output, &[text(&file), expected]);
        }
    }
}

#[test]
fn too_many_threads_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let output = ocellus(tmp.path(), &["--threads", "65536", "summary"]);
    expect_error(&output, &["--threads 65536", "1024"]);
    assert_eq!(output.status.code(), Some(2));
}

/// `report -o` onto a device or a symbolic link: refused, and the device or link stays.
#[test]
fn output_paths_that_are_not_regular_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = quick_model(&tmp);
    let output = ocellus(tmp.path(), &["report", text(&run), "-o", "/dev/full"]);
    expect_error(&output, &["/dev/full", "not a regular file"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());
    let target = tmp.path().join("target.html");
    std::fs::write(&target, "kept").unwrap();
    let link = tmp.path().join("link.html");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let output = ocellus(tmp.path(), &["report", text(&run), "-o", text(&link)]);
    expect_error(&output, &[text(&link), "symbolic link"]);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
}

/// A damaged run directory: settings `train` would refuse, or an optimiser state holding
/// NaN, are refused on resume, not trained on.
#[test]
fn resume_validates_what_it_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let trained = ocellus(
        tmp.path(),
        &[
            "train",
            "--epochs",
            "1",
            "--limit-train",
            "300",
            "--out",
            text(&run),
        ],
    );
    assert!(trained.status.success());
    let config = run.join("config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    for (field, value) in [
        ("\"lr\": 0.001", "\"lr\": 0.0"),
        ("\"epochs\": 1", "\"epochs\": 0"),
    ] {
        assert!(original.contains(field), "{original}");
        std::fs::write(&config, original.replace(field, value)).unwrap();
        let output = ocellus(
            tmp.path(),
            &["train", "--resume", text(&run), "--epochs", "2"],
        );
        expect_error(&output, &["config.json", "settings a run cannot have"]);
    }
    std::fs::write(&config, &original).unwrap();
    let training = run.join("training.safetensors");
    let (mut tensors, metadata) = checkpoint::load(&training).unwrap();
    tensors[0].1.data_mut()[0] = f32::NAN;
    checkpoint::save(&training, &tensors, metadata.into_iter().collect()).unwrap();
    let output = ocellus(
        tmp.path(),
        &["train", "--resume", text(&run), "--epochs", "2"],
    );
    expect_error(&output, &["training.safetensors", "not finite"]);
}

/// Sizes that overflow or cannot fit: an error saying so, never a wrapped shape, a panic
/// or an aborted allocation.
#[test]
fn architectures_too_large_for_arithmetic_or_memory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = |settings: &str| {
        format!("input = [1, 28, 28]\n\n[[layers]]\ntype = \"conv2d\"\n{settings}\n")
    };
    let cases = [
        (
            "channels",
            layer("out_channels = 100000000000\nkernel = 3"),
            "for its weights; the machine has",
        ),
        (
            "padding",
            layer("out_channels = 4\nkernel = 3\npadding = 18446744073709551615"),
            "at least as large as the 3×3 kernel",
        ),
        (
            "dilation",
            layer("out_channels = 4\nkernel = 3\ndilation = 9223372036854775807"),
            "at least as large as the 3×3 kernel",
        ),
        (
            "kernel",
            layer("out_channels = 4\nkernel = 100000"),
            "for its weights; the machine has",
        ),
    ];
    for (name, contents, expected) in cases {
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&file, contents).unwrap();
        for command in ["summary", "gradcheck"] {
            let output = ocellus(tmp.path(), &[command, "--model", text(&file)]);
            expect_error(&output, &[expected]);
        }
        let out = tmp.path().join(format!("run-{name}"));
        let output = ocellus(
            tmp.path(),
            &["train", "--model", text(&file), "--out", text(&out)],
        );
        expect_error(&output, &[expected]);
        assert!(!out.join("model.safetensors").exists());
    }
    let output = ocellus(
        tmp.path(),
        &["summary", "--model", "mlp", "--classes", "10000000000"],
    );
    expect_error(&output, &["linear", "for its weights"]);
    let output = ocellus(tmp.path(), &["bench", "--conv", "1000000,3,1"]);
    expect_error(
        &output,
        &["for a training step at batch 64", "the machine has"],
    );
}

/// A folder of images per class: one class is refused (it would train to "100%"); an
/// architecture file's input sets the image size unless `--image-size` says otherwise,
/// and a mismatch suggests the flag.
#[test]
fn folder_data_and_architecture_files_agree_or_say_how() {
    let tmp = tempfile::tempdir().unwrap();
    let make = |root: &Path, classes: &[&str]| {
        for class in classes {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..3 {
                let value = if *class == "a" { 0.2 } else { 0.8 } + i as f32 * 0.05;
                let path = root.join(class).join(format!("{i}.png"));
                ocellus_data::folder::save_png_gray(&path, &[value; 36], 6, 6).unwrap();
            }
        }
    };
    let one = tmp.path().join("one");
    make(&one, &["a"]);
    let output = ocellus(
        tmp.path(),
        &["train", "--data", "folder", "--data-dir", text(&one)],
    );
    expect_error(
        &output,
        &[text(&one), "one class folder ('a')", "at least two classes"],
    );

    let two = tmp.path().join("two");
    make(&two, &["a", "b"]);
    let arch = tmp.path().join("net.toml");
    std::fs::write(
        &arch,
        "input = [3, 20, 20]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout_features = 2\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let trained = ocellus(
        tmp.path(),
        &[
            "train",
            "--model",
            text(&arch),
            "--data",
            "folder",
            "--data-dir",
            text(&two),
            "--epochs",
            "1",
            "--out",
            text(&out),
        ],
    );
    assert_success(&trained);
    let output = ocellus(
        tmp.path(),
        &[
            "train",
            "--model",
            text(&arch),
            "--data",
            "folder",
            "--data-dir",
            text(&two),
            "--image-size",
            "1x8x8",
        ],
    );
    expect_error(&output, &["input = [3, 20, 20]", "--image-size 3x20x20"]);

    // A model file or run directory stands for its architecture.
    for model in [out.clone(), out.join("model.safetensors")] {
        let output = ocellus(tmp.path(), &["summary", "--model", text(&model)]);
        let table = assert_success(&output);
        assert!(table.contains("Linear(1200→2)"), "{table}");
    }
}

/// Every architecture the fuzzer once crashed on (`fuzz/regressions/arch/`) is an error.
#[test]
fn architectures_found_by_fuzzing_end_in_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/arch");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let output = ocellus(tmp.path(), &["summary", "--model", text(&path)]);
        expect_error(&output, &[text(&path), "layer "]);
        seen += 1;
    }
    assert_eq!(seen, 4, "the four architectures of {}", dir.display());
}
