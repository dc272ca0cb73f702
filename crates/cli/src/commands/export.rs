//! `ocellus export`: a trained model in another framework's format — ONNX, a PyTorch
//! module, a web page — to run it outside ocellus.

use std::path::PathBuf;
use std::str::FromStr;

use ocellus::{Error, Result};
use ocellus_export::{
    check_directory, pytorch_module, web_files, write_directory, write_onnx, ExportInfo,
    OnnxOptions,
};
use ocellus_train::run::{load_weights, model_bytes, Weights};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus train --out runs/lenet5-patterns
  ocellus export runs/lenet5-patterns -o lenet5.onnx
  ocellus export runs/lenet5-patterns/model.safetensors --format onnx -o lenet5.onnx
  ocellus export runs/lenet5-patterns -o lenet5-raw.onnx --with-normalization
  ocellus export runs/lenet5-patterns --format pytorch -o lenet5-torch
  ocellus export runs/lenet5-patterns --format web -o lenet5-web
  ocellus export runs/smallcnn-fashion-mnist --weights best -o best.onnx

onnx: one file (opset 17, IR version 8) taking `input`, (N, C, H, W) images normalised as
in training, and giving `logits`, (N, classes), as ocellus computes them in evaluation
(dropout off, BatchNorm with its running statistics). Its metadata holds the class names
and the normalisation. With --with-normalization it takes raw images in [0, 1] instead.

pytorch: a directory with model.py (an nn.Module needing only torch, its state_dict names
those of ocellus's checkpoints, with CLASSES, MEAN, STD, normalize() and load()) and
model.safetensors (the weights). `python3 -c 'import model; print(model.load())'` in it.

web: a directory with index.html, ocellus-web.js, model.onnx (normalisation inside) and
model.json: a page that classifies an image drawn or dropped on it, in the browser, with
onnxruntime-web. In the directory: `npm install onnxruntime-web@1.30`, then serve it, e.g.
`python3 -m http.server --bind 127.0.0.1 8000`, and open http://127.0.0.1:8000/.

A layer a format cannot express (a custom layer; for ONNX and the web, BatchNorm without
running statistics) is an error, and nothing is written.")]
pub struct Args {
    /// A run directory, or a model.safetensors file.
    model: PathBuf,
    /// With a run directory: the last epoch's weights or the best epoch's (by the
    /// validation set; runs with --val-fraction keep them).
    #[arg(long, default_value = "last", value_parser = ["best", "last"])]
    weights: String,
    /// The format to write: onnx, pytorch or web.
    #[arg(long, default_value = "onnx")]
    format: String,
    /// Where to write: a file for onnx (model.onnx), a directory for pytorch and web
    /// (created if missing; files of other names in it are kept).
    #[arg(long, short)]
    out: PathBuf,
    /// onnx: put the input normalisation, (x − mean)/std, into the exported graph, so that
    /// it takes raw images with values in [0, 1]. (The web page's model always has it.)
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
                format!("unknown format '{s}'; the formats are: onnx, pytorch, web"),
            )),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let format: Format = args.format.parse()?;
    if args.with_normalization && format != Format::Onnx {
        return Err(Error::config(
            "--with-normalization",
            format!(
                "applies to --format onnx; the {} export always holds the normalisation",
                args.format
            ),
        ));
    }
    match format {
        Format::Onnx => crate::check_output_file(&args.out, "export", "model.onnx")?,
        Format::Pytorch | Format::Web => check_directory(&args.out)?,
    }
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
    let name = info
        .architecture
        .name
        .clone()
        .unwrap_or_else(|| "model".to_string());
    let [c, h, w] = export.input;
    let k = info.classes.len();
    let out = args.out.display();
    let message = match format {
        Format::Onnx => {
            let options = OnnxOptions {
                with_normalization: args.with_normalization,
            };
            write_onnx(&args.out, &model, &export, options)?;
            let input = if args.with_normalization {
                "raw images in [0, 1]"
            } else {
                "normalised images"
            };
            format!(
                "wrote {out} (ONNX opset {}): input (N, {c}, {h}, {w}), {input}; output logits (N, {k})\n",
                ocellus_export::onnx::OPSET,
            )
        }
        Format::Pytorch => {
            let weights = "model.safetensors";
            let source = pytorch_module(&model, &export, &name, weights)?;
            let bytes = model_bytes(&args.out.join(weights), &model, &info)?;
            write_directory(
                &args.out,
                &[("model.py", source.into_bytes()), (weights, bytes)],
            )?;
            format!(
                "wrote {out}/model.py and {out}/{weights}: an nn.Module taking (N, {c}, {h}, {w}) \
                 normalised images, giving logits (N, {k}); in {out}: python3 -c 'import model; print(model.load())'\n"
            )
        }
        Format::Web => {
            write_directory(&args.out, &web_files(&model, &export, &name)?)?;
            format!(
                "wrote a web page to {out} (index.html, ocellus-web.js, model.onnx, model.json)\n\
                 to run it: cd {out} && npm install onnxruntime-web@{} && \
                 python3 -m http.server --bind 127.0.0.1 8000, then open http://127.0.0.1:8000/\n",
                ocellus_export::web::ONNXRUNTIME_WEB
            )
        }
    };
    crate::print_stdout(&message)
}
