//! `ocellus bench`: the structure of its tables and of its JSON output (never its timings).

mod common;
use common::ocellus;

const SMALL: [&str; 9] = [
    "--threads",
    "1",
    "bench",
    "--model",
    "lenet5",
    "--batch-size",
    "8",
    "--repeats",
    "2",
];

#[test]
fn bench_prints_a_row_per_mode_and_a_profile_row_per_layer() {
    let mut args = SMALL.to_vec();
    args.extend(["--warmup", "1", "--profile"]);
    let output = ocellus(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("lenet5 on 1×28×28 images, 1 threads"),
        "{stdout}"
    );
    for mode in ["train", "infer"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(mode))
            .unwrap_or_else(|| panic!("no {mode} row in\n{stdout}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "{row}");
        assert_eq!(fields[1], "8", "{row}");
        let rates: Vec<f64> = fields[2..5].iter().map(|f| f.parse().unwrap()).collect();
        assert!(
            rates[1] <= rates[0] && rates[0] <= rates[2],
            "min ≤ median ≤ max: {row}"
        );
    }
    // LeNet-5 has 12 layers (conv, relu, pool ×2, flatten, three linear with two ReLU).
    assert!(
        stdout.contains("profile of a training step at batch 8"),
        "{stdout}"
    );
    assert!(stdout.contains("Conv2d(1→6, 5×5, pad 2)"), "{stdout}");
    assert!(stdout.contains(" 11 Linear(84→10)"), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("total")));
}

#[test]
fn bench_json_parses_and_reports_every_batch_size_and_mode() {
    let mut args = SMALL.to_vec();
    args[6] = "4,8";
    args.extend(["--warmup", "0", "--mode", "train", "--json", "--profile"]);
    let output = ocellus(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(v["model"], "lenet5");
    assert_eq!(v["input"], serde_json::json!([1, 28, 28]));
    assert_eq!(v["threads"], 1);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (r, n) in results.iter().zip([4, 8]) {
        assert_eq!(r["mode"], "train");
        assert_eq!(r["batch_size"], n);
        assert_eq!(r["seconds"].as_array().unwrap().len(), 2);
        let ips = &r["images_per_second"];
        let (lo, med, hi) = (
            ips["min"].as_f64().unwrap(),
            ips["median"].as_f64().unwrap(),
            ips["max"].as_f64().unwrap(),
        );
        assert!(lo > 0.0 && lo <= med && med <= hi, "{ips}");
    }
    let profiles = v["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    let layers = profiles[0]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 12);
    // conv1 on (4, 1, 28, 28) with padding 2: 4·6·28·28 outputs, each 1·5·5 multiply-adds.
    assert_eq!(layers[0]["macs"], 4 * 6 * 28 * 28 * 25);
}

/// One thread, one small convolution, one measured run, as JSON.
const TINY_CONV: &[&str] = &[
    "--threads",
    "1",
    "bench",
    "--conv",
    "4,3,1",
    "--input",
    "2x6x6",
    "--batch-size",
    "2",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--json",
];

#[test]
fn bench_conv_reports_gflops_and_bad_flags_are_one_line_errors() {
    let output = ocellus(TINY_CONV);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert!(v["results"][0]["gflops"]["median"].as_f64().unwrap() > 0.0);
    assert!(v["peak"].is_null(), "no peak unless asked");

    // With --peak: the peak of the one thread, and each row's GFLOP/s as its fraction.
    let output = ocellus(&[TINY_CONV, &["--peak"]].concat());
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let peak = v["peak"]["gflops"].as_f64().unwrap();
    assert!(peak.is_finite() && peak > 0.0, "{v}");
    assert_eq!(v["peak"]["threads"], 1);
    assert!(["AVX-512", "AVX2 + FMA", "portable"].contains(&v["peak"]["isa"].as_str().unwrap()));
    for row in v["results"].as_array().unwrap() {
        let fraction = row["fraction_of_peak"].as_f64().unwrap();
        let gflops = row["gflops"]["median"].as_f64().unwrap();
        assert!(
            (fraction - gflops / peak).abs() <= 1e-12 * fraction.max(1.0),
            "{row}"
        );
    }

    let output = ocellus(&["bench", "--input", "1x28"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("C×H×W"));
    let output = ocellus(&["bench", "--model", "nope", "--repeats", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("unknown model"),
        "{stderr}"
    );
}
