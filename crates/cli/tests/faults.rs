//! Training runs under faults: killed at any moment (also between the writes of a
//! checkpoint), interrupted with Ctrl-C, two processes on one run directory, a full disk
//! and a read-only directory. After each, the run either continues to exactly the weights
//! of an uninterrupted run, or ends with a clear error and nothing lost.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ocellus::checkpoint::state_dict;
use ocellus_train::run::load_model;
use tempfile::TempDir;

/// A short run: 6 epochs of LeNet-5 on 2,000 pattern images, a checkpoint every epoch.
const TRAIN: &[&str] = &["train", "--epochs", "6", "--limit-train", "2000"];

fn command(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocellus"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("RUST_BACKTRACE")
        .env_remove("OCELLUS_CRASH_AT");
    cmd
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    command(cwd, args)
        .output()
        .expect("the ocellus binary runs")
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_no_panic(output: &Output) {
    let err = stderr(output);
    for panic_text in ["panicked", "RUST_BACKTRACE"] {
        assert!(!err.contains(panic_text), "a panic: {err}");
    }
}

/// The run `out` trained start to finish without interruption.
fn uninterrupted(tmp: &TempDir) -> PathBuf {
    let out = tmp.path().join("uninterrupted");
    let output = run(tmp.path(), &[TRAIN, &["--out", text(&out)]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    out
}

/// Continues the run in `out` until it is complete: `--resume`, or a fresh start when the
/// run stopped before its first checkpoint; nothing when it had finished before the kill.
fn finish(tmp: &TempDir, out: &Path) {
    let resumed = run(tmp.path(), &["train", "--resume", text(out)]);
    assert_no_panic(&resumed);
    if resumed.status.success() {
        return;
    }
    let err = stderr(&resumed);
    if err.contains("has already trained 6 epochs and it was set to train 6 epochs") {
        return;
    }
    assert!(
        err.contains("nothing to resume yet") || err.contains("no such run directory"),
        "{err}"
    );
    let again = run(tmp.path(), &[TRAIN, &["--out", text(out)]].concat());
    assert!(again.status.success(), "{}", stderr(&again));
}

/// The models of two runs are the same, bit for bit: every weight and buffer, and the
/// epoch they were saved at.
fn assert_same_model(a: &Path, b: &Path) {
    let read = |dir: &Path| {
        let (model, info) = load_model(dir).expect("a model file");
        let bits: Vec<(String, Vec<u32>)> = state_dict(&model)
            .into_iter()
            .map(|(name, t)| (name, t.data().iter().map(|v| v.to_bits()).collect()))
            .collect();
        (bits, info.epoch)
    };
    assert!(
        read(a) == read(b),
        "{} and {} hold different models",
        a.display(),
        b.display()
    );
    let lines = |dir: &Path| {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .count()
    };
    assert_eq!(lines(a), lines(b), "one metrics line per epoch");
}

/// No temporary file is left in a run directory.
fn assert_no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-"), "{name} left in {}", dir.display());
    }
}

fn kill(child: &mut Child, signal: i32) {
    // SAFETY: sends a signal to a child process this test started and has not reaped.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "the signal was sent");
}

#[test]
fn a_run_stopped_between_the_writes_of_a_checkpoint_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = uninterrupted(&tmp);
    for point in ["training-next-written", "model-written"] {
        let out = tmp.path().join(point);
        let crashed = command(tmp.path(), &[TRAIN, &["--out", text(&out)]].concat())
            .env("OCELLUS_CRASH_AT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!crashed.success(), "the run stops at {point}");
        finish(&tmp, &out);
        assert_same_model(&reference, &out);
        assert_no_temp_files(&out);
    }
}

#[test]
fn a_run_killed_at_any_moment_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = uninterrupted(&tmp);
    // Kills spread over the whole run, the first before any checkpoint exists.
    for (i, delay_ms) in [20u64, 90, 160, 230, 300, 370, 440, 520]
        .into_iter()
        .enumerate()
    {
        let out = tmp.path().join(format!("killed-{i}"));
        let mut child = command(tmp.path(), &[TRAIN, &["--out", text(&out)]].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill(&mut child, libc::SIGKILL);
        child.wait().unwrap();
        finish(&tmp, &out);
        assert_same_model(&reference, &out);
        assert_no_temp_files(&out);
    }
}

#[test]
fn ctrl_c_keeps_the_last_checkpoint_and_says_how_to_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = uninterrupted(&tmp);
    let out = tmp.path().join("interrupted");
    let mut child = command(tmp.path(), &[TRAIN, &["--out", text(&out)]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, then interrupt.
    let model = out.join("model.safetensors");
    while !model.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(&mut child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("training interrupted in epoch"), "{err}");
    assert!(err.contains("is intact"), "{err}");
    let resume = format!("ocellus train --resume {}", out.display());
    assert!(err.contains(&resume), "{err}");
    finish(&tmp, &out);
    assert_same_model(&reference, &out);
}

#[test]
fn ctrl_c_before_the_first_checkpoint_says_nothing_was_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("early");
    // A run slow enough per epoch to be interrupted inside its first one.
    let mut child = command(
        tmp.path(),
        &[
            "train",
            "--model",
            "smallcnn",
            "--epochs",
            "1",
            "--out",
            text(&out),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    while !out.join("config.json").exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    kill(&mut child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("nothing was kept"), "{err}");
    assert!(!out.join("model.safetensors").exists());
    // A resume says so too, in words.
    let resumed = run(tmp.path(), &["train", "--resume", text(&out)]);
    assert_no_panic(&resumed);
    assert!(!resumed.status.success());
    assert!(
        stderr(&resumed).contains("nothing to resume yet"),
        "{}",
        stderr(&resumed)
    );
}

#[test]
fn two_processes_never_train_one_run_directory_together() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = uninterrupted(&tmp);
    let out = tmp.path().join("contested");
    let spawn = || {
        command(tmp.path(), &[TRAIN, &["--out", text(&out)]].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(succeeded, 1, "exactly one of the two trains the run");
    let refused = outputs.iter().find(|o| !o.status.success()).unwrap();
    assert_no_panic(refused);
    let err = stderr(refused);
    assert!(
        err.contains("in use by process") || err.contains("already holds a trained model"),
        "{err}"
    );
    // The run is the one process's run, whole: nothing of the other mixed in.
    assert_same_model(&reference, &out);
    // A resume of the finished run is refused with the reason, not a lock error.
    let again = run(tmp.path(), &["train", "--resume", text(&out)]);
    assert!(
        stderr(&again).contains("has already trained 6 epochs"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn resume_refuses_settings_it_would_ignore() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let output = run(
        tmp.path(),
        &[
            "train",
            "--epochs",
            "1",
            "--limit-train",
            "500",
            "--out",
            text(&out),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    for flag in [
        ["--lr", "0.1"],
        ["--batch-size", "8"],
        ["--optimizer", "sgd"],
    ] {
        let refused = run(
            tmp.path(),
            &[&["train", "--resume", text(&out)], &flag[..]].concat(),
        );
        assert_no_panic(&refused);
        assert!(!refused.status.success());
        assert!(stderr(&refused).contains(flag[0]), "{}", stderr(&refused));
    }
    let nothing = run(
        tmp.path(),
        &["train", "--resume", text(&out), "--epochs", "1"],
    );
    assert!(!nothing.status.success());
    assert!(
        stderr(&nothing).contains("--epochs 1 leaves nothing to do"),
        "{}",
        stderr(&nothing)
    );
    let more = run(
        tmp.path(),
        &["train", "--resume", text(&out), "--epochs", "2"],
    );
    assert!(more.status.success(), "{}", stderr(&more));
    assert!(String::from_utf8_lossy(&more.stdout).contains("training to epoch 2 instead of 1"));
}

/// A small tmpfs mounted at a fresh directory, unmounted when dropped. Mounting needs
/// root; CI runs as root, elsewhere the tests that need one say so and pass.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: PathBuf, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs", text(&at)])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must be able to mount a tmpfs"
            );
            eprintln!("cannot mount a tmpfs here (not root?): test skipped");
        }
        ok.then_some(Mount(at))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Trains into `run` on `disk`; the run must fail without a panic. Returns the run
/// directory and stderr.
fn train_fails_on(tmp: &TempDir, disk: &Mount) -> (PathBuf, String) {
    let out = disk.0.join("run");
    let output = run(tmp.path(), &[TRAIN, &["--out", text(&out)]].concat());
    assert_no_panic(&output);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains(text(&out))),
        "{err}"
    );
    (out, err)
}

#[test]
fn a_full_disk_ends_the_run_with_a_clear_error_and_no_half_written_files() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Mount::tmpfs(tmp.path().join("full"), "size=96k") else {
        return;
    };
    let (out, err) = train_fails_on(&tmp, &disk);
    assert!(err.contains("No space left on device"), "{err}");
    assert_no_temp_files(&out);
    // What is there is whole: a model file, if any, loads.
    if out.join("model.safetensors").exists() {
        let eval = run(tmp.path(), &["eval", "--checkpoint", text(&out)]);
        assert!(eval.status.success(), "{}", stderr(&eval));
    }
}

#[test]
fn a_read_only_directory_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Mount::tmpfs(tmp.path().join("ro"), "ro,size=64k") else {
        return;
    };
    let (_, err) = train_fails_on(&tmp, &disk);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
}
