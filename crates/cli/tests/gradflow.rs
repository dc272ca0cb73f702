//! Gradient-flow diagnostics from the command line: `train --diagnostics` writes them,
//! `viz gradflow` draws them, `report` includes them, `gradflow` shows one batch at
//! initialisation; mistakes end with one line naming the flag or the file.

use ocellus_train::diagnostics::read_diagnostics;

mod common;
use common::{ocellus, success};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command that must fail with one line on stderr (clap's usage errors exit with 2).
fn failure(args: &[&str]) -> String {
    let out = ocellus(args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "ocellus {args:?} succeeded");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn is_png(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn a_run_trained_with_diagnostics_is_drawn_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let out = success(&[
        "train",
        "--threads",
        "1",
        "--epochs",
        "2",
        "--limit-train",
        "256",
        "--diagnostics",
        "--diagnostics-every",
        "3",
        "-o",
        run_s,
    ]);
    assert!(out.contains("diagnostics.jsonl"), "{out}");
    // 256 images in batches of 64: 4 steps per epoch; steps 1, 4, 7 are diagnosed.
    let records = read_diagnostics(&run).unwrap();
    let steps: Vec<usize> = records.iter().map(|r| r.step).collect();
    assert_eq!(steps, [1, 4, 7]);
    assert_eq!(records[0].layers.len(), 12, "LeNet-5's twelve layers");

    let out = success(&["viz", "gradflow", run_s]);
    assert!(out.contains("3 diagnosed steps, 1 to 7"), "{out}");
    assert!(is_png(&run.join("gradflow.png")));
    let custom = tmp.path().join("flow.png");
    success(&["viz", "gradflow", run_s, "-o", custom.to_str().unwrap()]);
    assert!(is_png(&custom));

    success(&["report", run_s]);
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(page.contains("<h2>Gradient flow</h2>"));
    assert!(page.contains("alt=\"gradient flow per layer over training\""));

    // Resuming keeps taking diagnostics, at the run's own interval.
    success(&[
        "train",
        "--threads",
        "1",
        "--resume",
        run_s,
        "--epochs",
        "3",
    ]);
    let steps: Vec<usize> = read_diagnostics(&run)
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, [1, 4, 7, 10]);
}

#[test]
fn gradflow_shows_one_batch_at_initialisation_without_writing_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("g.png");
    let out = success(&[
        "gradflow",
        "--threads",
        "1",
        "--model",
        "resnet20",
        "--batch-size",
        "16",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(out.starts_with("resnet20 at initialisation"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with("layer") && lines[1].contains("‖∂L/∂x‖"),
        "{out}"
    );
    // Stem conv, BN, ReLU, nine blocks, pooling, flatten, linear.
    assert_eq!(
        lines.iter().filter(|l| l.contains(" residual ")).count(),
        9,
        "{out}"
    );
    assert!(
        lines[2].starts_with("0  ") && lines[2].contains("conv2d"),
        "{out}"
    );
    assert!(is_png(&png));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn mistakes_get_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let err = failure(&["viz", "gradflow", tmp.path().to_str().unwrap()]);
    assert!(
        err.contains("--diagnostics") && err.trim_end().lines().count() == 1,
        "{err}"
    );

    let run = tmp.path().join("r");
    let err = failure(&[
        "train",
        "--diagnostics",
        "--diagnostics-every",
        "0",
        "-o",
        run.to_str().unwrap(),
    ]);
    assert!(err.starts_with("error: --diagnostics-every"), "{err}");
    assert!(!run.exists(), "nothing is written");

    // --diagnostics-every needs --diagnostics (a usage error from clap).
    let err = failure(&[
        "train",
        "--diagnostics-every",
        "5",
        "-o",
        run.to_str().unwrap(),
    ]);
    assert!(err.contains("--diagnostics"), "{err}");

    let err = failure(&["gradflow", "--model", "plain7"]);
    assert!(err.contains("unknown model 'plain7'"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
