//! `ocellus report` end to end: a briefly trained LeNet-5 on the built-in patterns, its
//! report checked as a file (self-contained, every picture a valid embedded PNG, every
//! section present) and, when Chromium is installed, rendered by a real browser with
//! `tools/check_report.sh`. On CI (`CI` set) Chromium is required.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::success;

/// Standard base64 (RFC 4648) back to bytes; `None` on a character outside the alphabet
/// or a length that is not a multiple of 4.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for group in bytes.chunks(4) {
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        let mut bits = 0u32;
        for &c in &group[..4 - padding] {
            bits = bits << 6 | value(c)?;
        }
        bits <<= 6 * padding;
        out.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8][..3 - padding]);
    }
    Some(out)
}

/// The values of every `name="…"` attribute in `html`.
fn attributes<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!("{name}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            &rest[..rest.find('"').expect("a closed attribute")]
        })
        .collect()
}

/// Width and height of a PNG file's bytes, decoding the whole image.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("PNG image data");
    (info.width, info.height)
}

fn check_report_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_report.sh")
}

fn chromium_installed() -> bool {
    Command::new("sh")
        .args(["-c", "command -v chromium || command -v chromium-browser"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn report_of_a_trained_run_is_one_self_contained_page() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path();
    let run = dir.join("lenet5-patterns");
    let run_str = run.to_str().unwrap();
    // Little training leaves mistakes to show.
    success(&[
        "train",
        "--epochs",
        "2",
        "--limit-train",
        "160",
        "--batch-size",
        "32",
        "--out",
        run_str,
    ]);
    let out = dir.join("report.html");
    let out_str = out.to_str().unwrap();
    let printed = success(&["report", run_str, "-o", out_str]);
    assert!(printed.contains(out_str), "{printed}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));

    // Self-contained: nothing is fetched from anywhere.
    for name in ["src", "href"] {
        for value in attributes(&html, name) {
            assert!(
                value.starts_with("data:"),
                "{name}=\"{}…\" refers outside the page",
                &value[..value.len().min(60)]
            );
        }
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<link") && !html.contains("<script"));

    // Every picture is an embedded PNG of the size its tag says: curves, confusion
    // matrix, two convolutions' filters, three images' feature maps, the mistakes and
    // their Grad-CAM.
    let images = html.matches("<img ").count();
    let sources = attributes(&html, "src");
    assert_eq!(sources.len(), images);
    assert_eq!(images, 9, "{images} pictures");
    assert!(html.contains("Grad-CAM of the misclassified test images"));
    let widths = attributes(&html, "width");
    let heights = attributes(&html, "height");
    for (k, src) in sources.iter().enumerate() {
        let data = src
            .strip_prefix("data:image/png;base64,")
            .unwrap_or_else(|| panic!("picture {k} is not a base64 PNG"));
        let bytes = base64_decode(data).unwrap_or_else(|| panic!("picture {k}: bad base64"));
        let (w, h) = png_size(&bytes);
        assert!(w > 0 && h > 0, "picture {k} is {w}×{h}");
        assert_eq!(
            (widths[k], heights[k]),
            (w.to_string().as_str(), h.to_string().as_str())
        );
    }

    // The summary table as HTML: LeNet-5 on 1×28×28 (pad 2) has the notes' 61,706
    // parameters less the 2·(84 + 1) of the two classes patterns lacks.
    assert!(html.contains("<table class=\"summary\">"));
    assert!(
        html.contains("<td>Conv2d(1→6, 5×5, pad 2)</td>"),
        "first conv row"
    );
    assert!(html.contains("<tr class=\"total\"><td>total</td>"));
    assert!(html.contains("61,536"));

    // The misclassified section counts what `ocellus eval` counts.
    assert!(html.contains("<h2 id=\"misclassified\">"));
    let eval = success(&["eval", "--checkpoint", run_str]);
    // "patterns test split: accuracy 71.20% (1,424/2,000), loss …"
    let counts = eval
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(counts, _)| counts.replace(',', ""))
        .unwrap_or_else(|| panic!("no (correct/total) in {eval}"));
    let (correct, total) = counts.split_once('/').unwrap();
    let (correct, total): (usize, usize) = (correct.parse().unwrap(), total.parse().unwrap());
    let wrong = format!(
        "{} of {} test images were classified wrongly",
        grouped(total - correct),
        grouped(total)
    );
    assert!(html.contains(&wrong), "expected '{wrong}'");
    assert!(
        total > correct,
        "briefly trained, the model should make mistakes"
    );

    // Rendered by a browser: every image decodes.
    if chromium_installed() {
        let shot = dir.join("report.png");
        let check = Command::new("bash")
            .arg(check_report_script())
            .args([out_str, shot.to_str().unwrap()])
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "check_report.sh failed:\n{stdout}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(stdout.contains("broken-images: 0 of 9"), "{stdout}");
        let shot_bytes = std::fs::read(&shot).unwrap();
        assert_eq!(png_size(&shot_bytes), (1200, 2400));
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "chromium is not installed, and CI must render the report: apt-get install -y chromium"
        );
    } else {
        eprintln!("chromium is not installed: the report was not rendered in a browser");
    }
}

/// `1,424`: as the report prints counts.
fn grouped(n: usize) -> String {
    ocellus::text::grouped(n as u64)
}
