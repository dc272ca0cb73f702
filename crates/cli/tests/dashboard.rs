//! `ocellus train --dashboard`: an address or port that cannot be used is one error line,
//! before any run directory is made.

use std::net::TcpListener;
use std::process::Command;

fn train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ocellus"))
        .arg("train")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the ocellus binary runs")
}

fn one_error_line(output: &std::process::Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in expected {
        assert!(
            lines[0].contains(needle),
            "should mention {needle:?}: {stderr}"
        );
    }
}

#[test]
fn a_taken_port_or_a_remote_address_stops_before_the_run_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let out = out.to_str().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    one_error_line(
        &train(&["--dashboard", "--port", &port, "--out", out]),
        &["--port", &port, "in use"],
    );
    one_error_line(
        &train(&[
            "--dashboard",
            "--dashboard-address",
            "0.0.0.0",
            "--out",
            out,
        ]),
        &["0.0.0.0", "--dashboard-allow-remote"],
    );
    assert!(!tmp.path().join("run").exists(), "no run directory is made");
    // The dashboard's flags without --dashboard are a usage error.
    let output = train(&["--port", "8000", "--out", out]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dashboard"));
}
