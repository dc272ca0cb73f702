//! `ocellus report`: one self-contained HTML page about a training run — its settings,
//! layer table, curves, confusion matrix, filters, feature maps and mistakes.

use std::path::PathBuf;

use ocellus::checkpoint::write_atomically;
use ocellus::text::bytes_str;
use ocellus::Result;
use ocellus_report::{self as report, RunReport};
use ocellus_train::diagnostics::run_diagnostics;
use ocellus_train::run::{load_model, read_config, read_metrics};

use crate::dataset::run_test_set;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus train --out runs/lenet5-patterns
  ocellus report runs/lenet5-patterns
  ocellus report runs/lenet5-fashion-mnist -o lenet5-fashion.html
Every picture is embedded in the page (PNG data URIs) and the styles are in it too, so the one
file opens offline in any browser and can be mailed or archived as it is. The model is
evaluated again on the run's test set for the confusion matrix and the misclassified images.")]
pub struct Args {
    /// A run directory, as written by `ocellus train`.
    run: PathBuf,
    /// The HTML file to write (default: RUN/report.html).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let dir = &args.run;
    let config = read_config(dir)?;
    let out = args.out.unwrap_or_else(|| dir.join("report.html"));
    crate::check_output_file(&out, "report", "report.html")?;
    let (mut model, info) = load_model(dir)?;
    let metrics = read_metrics(dir)?;
    let diagnostics = run_diagnostics(dir)?;
    let test = run_test_set(&config, &info, "report")?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let page = report::html(
        &mut model,
        &RunReport {
            name: &name,
            config: &config,
            info: &info,
            metrics: &metrics,
            test: &test,
            diagnostics: &diagnostics,
        },
    )?;
    write_atomically(&out, page.as_bytes())?;
    println!("wrote {} ({})", out.display(), bytes_str(page.len() as u64));
    Ok(())
}
