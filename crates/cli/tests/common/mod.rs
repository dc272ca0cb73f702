//! What the command-line tests share: running the `ocellus` binary. Each test file uses
//! part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with `args` in the test's own directory. With `RUST_BACKTRACE`
/// unset, a panic would print its `panicked at` line and a note naming it.
pub fn ocellus(args: &[&str]) -> Output {
    command(args).output().expect("the ocellus binary runs")
}

/// [`ocellus`] in `cwd` (so a default `runs/` directory would land there).
pub fn ocellus_in(cwd: &Path, args: &[&str]) -> Output {
    command(args)
        .current_dir(cwd)
        .output()
        .expect("the ocellus binary runs")
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocellus"));
    command.args(args).env_remove("RUST_BACKTRACE");
    command
}

/// The standard output of a run that must succeed; its output in the panic otherwise.
pub fn success(args: &[&str]) -> String {
    succeeded(args, ocellus(args))
}

/// [`success`] in `cwd`.
pub fn success_in(cwd: &Path, args: &[&str]) -> String {
    succeeded(args, ocellus_in(cwd, args))
}

fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "ocellus {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
