//! Transfer learning, early stopping and Grad-CAM through the `ocellus` binary: a run
//! started from another with frozen layers, the best epoch's weights picked by
//! `--weights best`, the Grad-CAM picture, and one clear error line — with nothing
//! written — for every flag given a layer, a source or a setting that does not fit.

use std::path::Path;

mod common;
use common::{ocellus_in as ocellus, success_in as success};

/// A failed command: non-zero exit, one line `error: …` naming every one of `expected`.
fn error(cwd: &Path, args: &[&str], expected: &[&str]) -> String {
    let out = ocellus(cwd, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ocellus {args:?} should fail");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in expected {
        assert!(lines[0].contains(needle), "{needle:?} missing: {stderr}");
    }
    lines[0].to_string()
}

const SHORT: [&str; 6] = [
    "--epochs",
    "2",
    "--limit-train",
    "256",
    "--batch-size",
    "32",
];

fn train(cwd: &Path, out: &str, extra: &[&str]) -> String {
    let mut args = vec!["train", "--out", out];
    args.extend(SHORT);
    args.extend(extra);
    success(cwd, &args)
}

#[test]
fn transfer_early_stopping_and_gradcam_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let stdout = train(
        cwd,
        "source",
        &["--val-fraction", "0.25", "--patience", "3"],
    );
    assert!(stdout.contains("early stopping: patience 3"), "{stdout}");
    assert!(stdout.contains("best.safetensors"), "{stdout}");
    assert!(cwd.join("source/best.safetensors").is_file());

    // The best epoch's weights, wherever a model is read.
    let out = success(
        cwd,
        &["eval", "--checkpoint", "source", "--weights", "best"],
    );
    assert!(out.contains("accuracy"), "{out}");
    success(
        cwd,
        &["export", "source", "--weights", "best", "-o", "best.onnx"],
    );
    assert!(cwd.join("best.onnx").is_file());
    let out = success(
        cwd,
        &[
            "viz",
            "gradcam",
            "--checkpoint",
            "source",
            "--weights",
            "best",
            "--layer",
            "3",
            "--sample",
            "5",
            "-o",
            "gradcam.png",
        ],
    );
    assert!(
        out.contains("Grad-CAM of") && out.contains("16 maps"),
        "{out}"
    );
    assert!(cwd.join("gradcam.png").is_file());

    // Fine-tuned with the convolutions frozen, then resumed.
    let out = train(cwd, "tuned", &["--init-from", "source", "--freeze", "6"]);
    assert!(
        out.contains("weights from source") && out.contains("layers 0–5 frozen"),
        "{out}"
    );
    let out = success(cwd, &["train", "--resume", "tuned", "--epochs", "3"]);
    assert!(out.contains("resuming"), "{out}");
    let (source, _) = ocellus_train::run::load_model(&cwd.join("source")).unwrap();
    let (tuned, _) = ocellus_train::run::load_model(&cwd.join("tuned")).unwrap();
    let (a, b) = (
        ocellus::checkpoint::state_dict(&source),
        ocellus::checkpoint::state_dict(&tuned),
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let layer: usize = name.split('.').next().unwrap().parse().unwrap();
        assert_eq!(layer < 6, x.data() == y.data(), "{name}");
    }

    // Mistakes: one line each, nothing written.
    let no_run = |args: &[&str], expected: &[&str]| {
        let mut all = vec!["train", "--out", "refused"];
        all.extend(SHORT);
        all.extend(args);
        error(cwd, &all, expected);
        assert!(!cwd.join("refused").exists(), "{args:?} wrote a run");
    };
    no_run(
        &["--init-from", "source", "--model", "smallcnn"],
        &[
            "--init-from",
            "layer 0 (conv2d)",
            "(32, 1, 3, 3)",
            "(6, 1, 5, 5)",
        ],
    );
    no_run(&["--init-from", "nowhere"], &["--init-from", "nowhere"]);
    no_run(
        &["--freeze-through", "conv9"],
        &["--freeze-through", "no layer named 'conv9'"],
    );
    no_run(&["--freeze", "12"], &["--freeze", "no parameter to train"]);
    no_run(&["--patience", "2"], &["--patience", "--val-fraction"]);
    error(
        cwd,
        &["eval", "--checkpoint", "tuned", "--weights", "best"],
        &["--weights", "keeps no best epoch"],
    );
    for (layer, expected) in [
        ("7", "layer 7 (linear) does not output a stack of maps"),
        ("x", "no layer named 'x'"),
    ] {
        error(
            cwd,
            &[
                "viz",
                "gradcam",
                "--checkpoint",
                "source",
                "--layer",
                layer,
                "--sample",
                "0",
                "-o",
                "bad.png",
            ],
            &[expected, "3 (conv2d, 16×10×10)"],
        );
        assert!(!cwd.join("bad.png").exists());
    }
}
