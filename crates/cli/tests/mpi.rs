//! `ocellus train` on 2 MPI ranks (`mpirun -n 2`), built with the `mpi` feature: the same
//! weights as one process, synchronised batch normalisation, exact resume, a killed rank,
//! and ranks started with different settings. Needs Open MPI's `mpirun` (`.ci/run`
//! installs it and runs these tests).
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ocellus::checkpoint::state_dict;
use ocellus_train::run::load_model;
use tempfile::TempDir;

const OCELLUS: &str = env!("CARGO_BIN_EXE_ocellus");

/// 20 steps: 1,280 pattern images in batches of 64, one epoch, one thread per process,
/// SGD (momentum 0.9). The networks compared have no tipping points (tanh and average
/// pooling: `tests/data/*_smooth.toml`), so another summation order (2 ranks, or 1
/// process on 2 threads) moves the weights by rounding errors only. docs/DISTRIBUTED.md
/// has the measurements, and why AdamW cannot be held to 1e-5.
const STEPS_20: &[&str] = &[
    "train",
    "--optimizer",
    "sgd",
    "--lr",
    "0.02",
    "--epochs",
    "1",
    "--limit-train",
    "1280",
    "--batch-size",
    "64",
    "--threads",
    "1",
];

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// `mpirun -n 2` (as root too, two ranks on however few cores) running `app` contexts:
/// one `ocellus` command line for both ranks, or one per rank.
fn mpirun(cwd: &Path, apps: &[&[&str]]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.current_dir(cwd)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("RUST_BACKTRACE")
        .arg("--oversubscribe");
    let per_app = if apps.len() == 1 { "2" } else { "1" };
    for (i, app) in apps.iter().enumerate() {
        if i > 0 {
            cmd.arg(":");
        }
        cmd.args(["-n", per_app, OCELLUS]).args(*app);
    }
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("mpirun runs (Open MPI installed)")
}

fn alone(cwd: &Path, args: &[&str]) -> Output {
    Command::new(OCELLUS)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the ocellus binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn succeeded(o: Output) -> Output {
    assert!(
        o.status.success(),
        "failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Every tensor of a run's model file, by name.
fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let (model, _) = load_model(dir).expect("a model file");
    state_dict(&model)
        .into_iter()
        .map(|(name, t)| (name, t.data().to_vec()))
        .collect()
}

/// The largest difference `|a − b|` of a tensor over the tensor's largest `|a|`, the worst
/// over every tensor of the state (weights and buffers), and where it is. (A weight near
/// zero carries the rounding of the larger values it was summed from, so its own
/// magnitude is no scale for it.)
fn worst_relative(a: &Path, b: &Path) -> (f64, String) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let mut worst = (0.0, String::new());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        for (i, (&x, &y)) in x.iter().zip(y).enumerate() {
            let diff = (x - y).abs() as f64;
            let rel = if scale > 0.0 { diff / scale } else { diff };
            if rel > worst.0 {
                worst = (rel, format!("{name}[{i}]: {x} against {y}"));
            }
        }
    }
    worst
}

fn assert_close(a: &Path, b: &Path) {
    let (rel, at) = worst_relative(a, b);
    assert!(rel <= 1e-5, "relative difference {rel:e} at {at}");
}

/// A network of `tests/data` without tipping points (its file says why).
fn smooth(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}_smooth.toml"))
}

#[test]
fn lenet5_on_two_ranks_trains_to_the_weights_of_one_process() {
    let tmp = TempDir::new().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let arch = smooth("lenet5");
    let (one_args, two_args) = (
        [STEPS_20, &["--model", text(&arch), "--out", text(&one)]].concat(),
        [STEPS_20, &["--model", text(&arch), "--out", text(&two)]].concat(),
    );
    succeeded(alone(tmp.path(), &one_args));
    let o = succeeded(output(mpirun(tmp.path(), &[&two_args])));
    assert!(
        stdout(&o).contains("data-parallel on 2 ranks"),
        "{}",
        stdout(&o)
    );
    assert_close(&one, &two);
    // Rank 0 wrote the run and recorded the number of ranks.
    let config = std::fs::read_to_string(two.join("config.json")).unwrap();
    assert!(config.contains("\"ranks\": 2"), "{config}");
}

#[test]
fn synchronised_batchnorm_on_two_ranks_matches_one_process_running_statistics_included() {
    let tmp = TempDir::new().unwrap();
    let arch = smooth("smallcnn");
    let args = |out: &PathBuf| -> Vec<String> {
        [STEPS_20, &["--model", text(&arch), "--out", text(out)]]
            .concat()
            .into_iter()
            .map(String::from)
            .collect()
    };
    let (one, synced, per_rank) = (
        tmp.path().join("one"),
        tmp.path().join("synced"),
        tmp.path().join("per-rank"),
    );
    succeeded(alone(tmp.path(), &strs(&args(&one))));
    let mut synced_args = args(&synced);
    synced_args.push("--sync-batchnorm".into());
    succeeded(output(mpirun(tmp.path(), &[&strs(&synced_args)])));
    assert_close(&one, &synced);
    // Each rank's own statistics are another normalisation: the weights and the running
    // statistics differ from one process's, which the synchronised run above does not.
    succeeded(output(mpirun(tmp.path(), &[&strs(&args(&per_rank))])));
    let (rel, at) = worst_relative(&one, &per_rank);
    assert!(
        rel > 1e-3,
        "per-rank batch norm too close ({rel:e} at {at})"
    );
}

#[test]
fn resumed_on_the_same_ranks_is_bit_exact_and_on_other_ranks_continues_with_a_note() {
    let tmp = TempDir::new().unwrap();
    let train = |out: &Path, epochs: &str| -> Vec<String> {
        [
            "train",
            "--limit-train",
            "640",
            "--threads",
            "1",
            "--epochs",
            epochs,
            "--out",
            text(out),
        ]
        .into_iter()
        .map(String::from)
        .collect()
    };
    let (straight, resumed, other) = (
        tmp.path().join("straight"),
        tmp.path().join("resumed"),
        tmp.path().join("other"),
    );
    succeeded(output(mpirun(tmp.path(), &[&strs(&train(&straight, "2"))])));
    succeeded(output(mpirun(tmp.path(), &[&strs(&train(&resumed, "1"))])));
    let again = [
        "train",
        "--resume",
        text(&resumed),
        "--epochs",
        "2",
        "--threads",
        "1",
    ];
    succeeded(output(mpirun(tmp.path(), &[&again])));
    let bits = |dir: &Path| {
        weights(dir)
            .into_iter()
            .map(|(n, v)| (n, v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    assert!(
        bits(&straight) == bits(&resumed),
        "resumed on 2 ranks is not bit-exact"
    );

    // Started on 2 ranks, continued alone.
    succeeded(output(mpirun(tmp.path(), &[&strs(&train(&other, "1"))])));
    let alone_again = [
        "train",
        "--resume",
        text(&other),
        "--epochs",
        "2",
        "--threads",
        "1",
    ];
    let o = succeeded(alone(tmp.path(), &alone_again));
    assert!(
        stdout(&o).contains("trained on 2 rank(s) and continues on 1"),
        "{}",
        stdout(&o)
    );
    // And on 2 ranks after one alone: the note names both numbers.
    let o = succeeded(output(mpirun(
        tmp.path(),
        &[&[
            "train",
            "--resume",
            text(&other),
            "--epochs",
            "3",
            "--threads",
            "1",
        ]],
    )));
    assert!(
        stdout(&o).contains("trained on 1 rank(s) and continues on 2")
            && stdout(&o).contains("not bit for bit"),
        "{}",
        stdout(&o)
    );
    let metrics = std::fs::read_to_string(other.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
}

#[test]
fn ranks_started_with_different_settings_are_refused() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("run");
    let base = ["train", "--epochs", "1", "--out", text(&out)];
    let o = output(mpirun(
        tmp.path(),
        &[
            &[&base[..], &["--limit-train", "256", "--seed", "0"]].concat(),
            &[&base[..], &["--limit-train", "256", "--seed", "1"]].concat(),
        ],
    ));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("rank 1 has other settings than rank 0"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join("model.safetensors").exists());

    let o = output(mpirun(
        tmp.path(),
        &[
            &[&base[..], &["--limit-train", "256"]].concat()[..],
            &[&base[..], &["--limit-train", "300"]].concat()[..],
        ],
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("rank 1 has other"), "{}", stderr(&o));
}

/// The process of rank `rank` among the children of the launcher `launcher`.
fn rank_process(launcher: &Child, rank: usize) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The parent pid is the 2nd field after the parenthesised command name.
            let parent: u32 = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let is_rank = environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes());
            (parent == launcher.id() && is_rank).then_some(pid)
        })
}

#[test]
fn a_killed_rank_ends_the_run_with_a_clear_error_and_the_checkpoint_resumes() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("run");
    let args = [
        "train",
        "--limit-train",
        "2000",
        "--epochs",
        "200",
        "--threads",
        "1",
        "--out",
        text(&out),
    ];
    let launcher = mpirun(tmp.path(), &[&args])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    // Wait for the first checkpoint; a guard against a hang, not a measurement.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !out.join("model.safetensors").exists() {
        assert!(Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let victim = rank_process(&launcher, 1).expect("rank 1 is a child of mpirun");
    // SAFETY: kill(2) on a process id this test found as mpirun's child; no memory involved.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    // The survivors end by themselves: waiting on the launcher returns, however long it
    // took (docs/DISTRIBUTED.md quotes the time).
    let o = launcher.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("rank 1") && err.contains("Killed"), "{err}");
    assert!(
        err.contains("the last complete checkpoint") && err.contains("--resume"),
        "{err}"
    );
    // The checkpoint resumes, on 2 ranks, to one epoch further.
    let (_, info) = load_model(&out).expect("an intact checkpoint");
    let next = (info.epoch + 1).to_string();
    let o = succeeded(output(mpirun(
        tmp.path(),
        &[&[
            "train",
            "--resume",
            text(&out),
            "--epochs",
            &next,
            "--threads",
            "1",
        ]],
    )));
    assert!(
        stdout(&o).contains(&format!("resuming {}", out.display())),
        "{}",
        stdout(&o)
    );
    assert_eq!(load_model(&out).unwrap().1.epoch, info.epoch + 1);
}
