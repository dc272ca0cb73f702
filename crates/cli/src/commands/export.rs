//! `ocellus export`: a trained model in another framework's format (ONNX), to run it
//! outside ocellus.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ocellus::{Error, Result};
use ocellus_export::{write_onnx, ExportInfo, OnnxOptions};
use ocellus_train::run::{load_weights, Weights};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus train --out runs/lenet5-patterns
  ocellus export runs/lenet5-patterns -o lenet5.onnx
  ocellus export runs/lenet5-patterns/model.safetensors --format onnx -o lenet5.onnx
  ocellus export runs/lenet5-patterns -o lenet5-raw.onnx --with-normalization
  ocellus export runs/smallcnn-fashion-mnist --weights best -o best.onnx
The ONNX file (opset 17, IR version 8) takes `input`, (N, C, H, W) images normalised as in
training, and gives `logits`, (N, classes), as ocellus computes them in evaluation (dropout
off, BatchNorm with its running statistics). Its metadata holds the class names and the
normalisation. With --with-normalization it takes raw images with values in [0, 1] instead.
A layer ONNX cannot express (BatchNorm without running statistics) is an error, and nothing
is written.")]
pub struct Args {
    /// A run directory, or a model.safetensors file.
    model: PathBuf,
    /// With a run directory: the last epoch's weights or the best epoch's (by the
    /// validation set; runs with --val-fraction keep them).
    #[arg(long, default_value = "last", value_parser = ["best", "last"])]
    weights: String,
    /// The format to write: onnx.
    #[arg(long, default_value = "onnx")]
    format: String,
    /// The file to write, e.g. model.onnx.
    #[arg(long, short)]
    out: PathBuf,
    /// Put the input normalisation, (x − mean)/std, into the exported graph, so that it
    /// takes raw images with values in [0, 1].
    #[arg(long)]
    with_normalization: bool,
}

/// What `--format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ONNX, opset 17.
    Onnx,
    /// A PyTorch module and its state_dict.
    Pytorch,
    /// A web page running the model with onnxruntime-web.
    Web,
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "onnx" => Ok(Format::Onnx),
            "pytorch" => Ok(Format::Pytorch),
            "web" => Ok(Format::Web),
            _ => Err(Error::config(
                "--format",
                format!("unknown format '{s}'; the formats are: onnx"),
            )),
        }
    }
}

/// Fails early, before any work, when `out` cannot be written: its directory is missing,
/// or it is a directory itself.
fn check_writable(out: &Path) -> Result<()> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let problem = if !dir.is_dir() {
        format!(
            "cannot write the export: the directory {} does not exist",
            dir.display()
        )
    } else if out.is_dir() {
        "cannot write the export: this is a directory; give a file name such as model.onnx"
            .to_string()
    } else {
        return Ok(());
    };
    Err(Error::format(out, problem))
}

pub fn run(args: Args) -> Result<()> {
    let format: Format = args.format.parse()?;
    if format != Format::Onnx {
        return Err(Error::config(
            "--format",
            format!(
                "'{}' is not available yet; the formats are: onnx",
                args.format
            ),
        ));
    }
    check_writable(&args.out)?;
    if args.model.is_dir() && !args.model.join("model.safetensors").is_file() {
        return Err(Error::format(
            &args.model,
            "a directory without model.safetensors; give a run directory written by \
             `ocellus train` or a model file",
        ));
    }
    let (model, info) = load_weights(&args.model, Weights::parse(&args.weights)?)?;
    let export = ExportInfo {
        input: info.architecture.input,
        classes: &info.classes,
        mean: &info.normalization.mean,
        std: &info.normalization.std,
    };
    let options = OnnxOptions {
        with_normalization: args.with_normalization,
    };
    write_onnx(&args.out, &model, &export, options)?;
    let [c, h, w] = export.input;
    let input = if args.with_normalization {
        "raw images in [0, 1]"
    } else {
        "normalised images"
    };
    crate::print_stdout(&format!(
        "wrote {} (ONNX opset {}): input (N, {c}, {h}, {w}), {input}; output logits (N, {})\n",
        args.out.display(),
        ocellus_export::onnx::OPSET,
        info.classes.len()
    ))
}
