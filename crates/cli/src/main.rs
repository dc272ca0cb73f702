//! The `ocellus` command-line tool: train, evaluate, inspect and visualise CNNs.

mod commands;
mod dataset;
mod model;
#[cfg(feature = "mpi")]
mod mpi;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocellus::Error;

/// Build, train, verify and look inside convolutional neural networks.
#[derive(Parser)]
#[command(name = "ocellus", version, about, long_about = None)]
struct Cli {
    /// Worker threads (default: all cores). Results are reproducible for a given count.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (default: LeNet-5 on the built-in patterns dataset).
    Train(Box<commands::train::Args>),
    /// Accuracy and confusion matrix of a trained model on a dataset.
    Eval(commands::eval::Args),
    /// Classify image files with a trained model.
    Predict(commands::predict::Args),
    /// Write sample images of the built-in patterns dataset as PNG files.
    Patterns(commands::patterns::Args),
    /// Train models under the same budget and compare them, shifted test images included.
    Compare(commands::compare::Args),
    /// Training and inference throughput on random data, with an optional per-layer profile.
    Bench(commands::bench::Args),
    /// The layer table of a model: shapes, parameters, multiply-adds, receptive fields, memory.
    Summary(commands::summary::Args),
    /// Check every layer's gradients inside a model against finite differences.
    Gradcheck(commands::gradcheck::Args),
    /// Gradient flow of an untrained model on one batch: per layer, gradient and activation statistics.
    Gradflow(commands::gradflow::Args),
    /// Pictures of a trained model: filters, feature maps, saliency, Grad-CAM, gradient flow.
    Viz(commands::viz::Args),
    /// One self-contained HTML page about a training run: settings, layers, curves, mistakes.
    Report(commands::report::Args),
    /// Write a trained model as ONNX, a PyTorch module or a web page, to run it elsewhere.
    Export(commands::export::Args),
}

/// Fails early, before any work, when the file `out` cannot be written: its directory is
/// missing, or it is a directory itself. `what` names the output in the message
/// ("report"), `example` is a file name to suggest ("report.html").
pub(crate) fn check_output_file(
    out: &std::path::Path,
    what: &str,
    example: &str,
) -> ocellus::Result<()> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let problem = if !dir.is_dir() {
        format!(
            "cannot write the {what}: the directory {} does not exist",
            dir.display()
        )
    } else if out.is_dir() {
        format!("cannot write the {what}: this is a directory; give a file name such as {example}")
    } else {
        return Ok(());
    };
    Err(ocellus::Error::format(out, problem))
}

/// Writes `text` to standard output. A reader that stops early (`ocellus summary | head`)
/// ends the output quietly instead of failing.
pub(crate) fn print_stdout(text: &str) -> ocellus::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(ocellus::Error::Io {
            path: "standard output".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A reader that closes the pipe early (`ocellus summary | head`) ends the program quietly,
/// as it would end any command-line tool, instead of a failed write to standard output.
fn exit_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// More worker threads than this is a mistake on any machine ocellus runs on.
const MAX_THREADS: usize = 1024;

fn main() -> ExitCode {
    exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    if let Some(threads) = cli.threads {
        if threads == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        if threads > MAX_THREADS {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            eprintln!(
                "error: --threads {threads} is more than {MAX_THREADS}; this machine has {cores} cores"
            );
            return ExitCode::from(2);
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cli.threads.unwrap_or(0))
        .build();
    let pool = match pool {
        Ok(pool) => pool,
        Err(e) => {
            let threads = cli.threads.map_or("the".into(), |t| t.to_string());
            eprintln!("error: cannot start {threads} worker threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs on one of the workers: a parallel section then hands work to the
    // others only, instead of waking a worker and putting this thread to sleep each time.
    let result = pool.install(|| match cli.command {
        #[cfg(feature = "mpi")]
        Command::Train(args) => mpi::train(*args),
        #[cfg(not(feature = "mpi"))]
        Command::Train(args) => commands::train::run(*args, None),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Patterns(args) => commands::patterns::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Summary(args) => commands::summary::run(args),
        Command::Gradcheck(args) => commands::gradcheck::run(args),
        Command::Gradflow(args) => commands::gradflow::run(args),
        Command::Viz(args) => commands::viz::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Export(args) => commands::export::run(args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `train` has said what was kept and how to continue.
        Err(Error::Interrupted { .. }) => ExitCode::from(130),
        Err(e) => {
            // The library's advice, in this tool's words.
            let flag = match e {
                Error::Diverged { .. } => " (--lr)",
                _ => "",
            };
            eprintln!("error: {e}{flag}");
            ExitCode::FAILURE
        }
    }
}
