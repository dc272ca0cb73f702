//! `ocellus predict`: classify image files with a trained model.

use std::path::PathBuf;

use ocellus::{loss, LayerExt, Mode, Result};
use ocellus_data::folder::load_image;
use ocellus_train::run::{load_weights, Weights};
use serde_json::json;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus predict --checkpoint runs/lenet5-patterns samples/circle/000.png
  ocellus predict --checkpoint runs/smallcnn-fashion-mnist --top-k 3 shoe.jpg shirt.png
  ocellus predict --checkpoint runs/lenet5-patterns --json samples/circle/000.png
With --json, each image gives one line: {\"image\": …, \"top\": [{\"class\": …, \"probability\": …}, …],
\"probabilities\": [one per class, in the model's class order]}.")]
pub struct Args {
    /// A run directory or a model.safetensors file.
    #[arg(long)]
    checkpoint: PathBuf,
    /// With a run directory: the last epoch's weights or the best epoch's (by the
    /// validation set; runs with --val-fraction keep them).
    #[arg(long, default_value = "last", value_parser = ["best", "last"])]
    weights: String,
    /// Image files (PNG or JPEG); each is converted and resized to the model's input.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// One JSON object per image with every class's probability, at full precision.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let weights = Weights::parse(&args.weights)?;
    let (mut model, info) = load_weights(&args.checkpoint, weights)?;
    let [c, h, w] = info.architecture.input;
    // Load every image first, so one unreadable file fails the command before any output.
    let mut images = Vec::with_capacity(args.images.len());
    for path in &args.images {
        let mut x = load_image(path, c, h, w)?;
        info.normalization.apply_to_batch(&mut x)?;
        images.push(x);
    }
    for (path, x) in args.images.iter().zip(&images) {
        let probabilities = loss::softmax(&model.forward_ref(x, Mode::Eval)?)?;
        let mut ranked: Vec<(usize, f32)> =
            probabilities.data().iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top = ranked.iter().take(args.top_k.max(1));
        let line = if args.json {
            let top: Vec<_> = top
                .map(|(k, p)| json!({"class": info.classes[*k], "probability": p}))
                .collect();
            let line = json!({
                "image": path.display().to_string(),
                "top": top,
                "probabilities": probabilities.data(),
            });
            format!("{line}\n")
        } else {
            let top: Vec<String> = top
                .map(|(k, p)| format!("{} {:.1}%", info.classes[*k], 100.0 * p))
                .collect();
            format!("{}: {}\n", path.display(), top.join(", "))
        };
        crate::print_stdout(&line)?;
    }
    Ok(())
}
