//! `ocellus compare` end to end on the built-in patterns: the files it writes, and
//! one-line errors for a bad model list.

mod common;
use common::ocellus;

#[test]
fn compare_trains_every_model_and_writes_the_table_and_charts() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = tmp.path().join("patterns");
    let output = ocellus(&[
        "--threads",
        "1",
        "compare",
        "--data",
        "patterns",
        "--models",
        "lenet5,mlp-lenet5",
        "--epochs",
        "1",
        "--limit-train",
        "400",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for file in ["compare.md", "compare.json", "curves.png", "shift.png"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    for model in ["lenet5", "mlp-lenet5"] {
        assert!(out.join(model).join("model.safetensors").is_file());
        assert!(out.join(model).join("metrics.jsonl").is_file());
    }

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["train_images"], 400);
    assert_eq!(json["epochs"], 1);
    assert_eq!(json["shifts"], serde_json::json!([1, 2, 3, 4]));
    let models = json["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lenet5", "mlp-lenet5"]);
    for m in models {
        assert_eq!(m["shifted_accuracy"].as_array().unwrap().len(), 4);
        assert_eq!(m["epochs"].as_array().unwrap().len(), 1);
        let accuracy = m["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy));
    }
    assert_eq!(models[0]["parameters"], 61_706 - 850 + 85 * 8);

    // The table printed is the one in compare.md.
    let markdown = std::fs::read_to_string(out.join("compare.md")).unwrap();
    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 4, "{stdout}");
    assert!(table[0].contains("shift 4 px"));
    for line in table {
        assert!(markdown.contains(line), "{line} not in compare.md");
    }
}

fn one_line_error(args: &[&str]) -> String {
    let output = ocellus(args);
    assert!(!output.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn a_bad_model_list_is_a_one_line_error_before_any_training() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = tmp.path().join("bad");
    let dir = out.to_str().unwrap();
    let err = one_line_error(&["compare", "--models", "lenet5,nosuchnet", "--out", dir]);
    assert!(
        err.contains("nosuchnet") && err.contains("mlp-lenet5"),
        "{err}"
    );
    assert!(
        !out.join("lenet5").exists(),
        "lenet5 was trained before the error"
    );
    let err = one_line_error(&["compare", "--models", "", "--out", dir]);
    assert!(err.contains("at least one model"), "{err}");
    let err = one_line_error(&["compare", "--models", "mlp,mlp", "--out", dir]);
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn help_shows_examples() {
    let output = ocellus(&["compare", "--help"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        text.contains("Examples:") && text.contains("--models"),
        "{text}"
    );
}
