//! `ocellus gradflow`: the gradient flow of an untrained network on one batch — the same
//! per-layer diagnostics `train --diagnostics` records, at initialisation, without
//! training.

use std::path::PathBuf;

use ocellus::Result;
use ocellus::Rng;
use ocellus::Tensor;
use ocellus_data::Normalization;
use ocellus_train::diagnostics::{at_initialisation, step_picture};

use crate::commands::train::{architecture, TrainingArgs};
use crate::dataset::DataArgs;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus gradflow --model plain56 --data fashion-mnist
  ocellus gradflow --model resnet56 --data fashion-mnist -o resnet56.png
  ocellus gradflow --model examples/architectures/deep_sigmoid.toml

The network is built from --seed, as train builds it, and run forward and backward on one
batch of normalised training images (the first of a shuffle by --seed) in training mode; one
optimiser step (--optimizer, --lr), thrown away afterwards, measures the update ratio |Δθ|/|θ|. Per layer:
output shape, mean and standard deviation of the output, dead ReLU channels (zero for the
whole batch), the norm of the gradient reaching the layer's input |∂L/∂x|, the parameter norm
|θ|, the gradient norm |∂L/∂θ| and the update ratio. Nothing is written but the picture.")]
pub struct Args {
    /// A zoo model, an architecture file (.toml or .json), or a model file or run directory
    /// whose architecture to build afresh.
    #[arg(long, default_value = "lenet5")]
    model: String,
    #[command(flatten)]
    data: DataArgs,
    /// Images in the batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value = "adamw", value_parser = ["sgd", "adam", "adamw"])]
    optimizer: String,
    /// Learning rate of the one step that measures the update ratio.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Seed of the weights and of the batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also draw the norms against depth into this PNG file.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let training = TrainingArgs {
        epochs: Some(1),
        batch_size: args.batch_size,
        optimizer: args.optimizer.clone(),
        lr: args.lr,
        seed: args.seed,
        limit_train: None,
        diagnostics: false,
        diagnostics_every: 1,
    };
    let config = training.run_config(&args.model, &args.data);
    config.validate()?;
    let splits = args.data.load(args.seed)?;
    let (c, h, w) = splits.train.image_shape();
    let arch = architecture(&args.model, [c, h, w], splits.train.num_classes())?;
    let mut model = arch.build(&mut Rng::new(args.seed))?;
    let mut optimizer = config.build_optimizer()?;

    let mut batches = splits
        .train
        .shuffled_batches(args.batch_size, &mut Rng::new(args.seed))?;
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    batches.next_into(&mut x, &mut labels);
    Normalization::fit(&splits.train).apply_to_batch(&mut x)?;
    let record = at_initialisation(&mut model, optimizer.as_mut(), &x, &labels)?;

    let name = arch.name.as_deref().unwrap_or(&args.model);
    let text = format!(
        "{name} at initialisation (seed {}) on one batch of {} {} images; loss {:.4}; \
         update ratio after one step of {}\n{}",
        args.seed,
        labels.len(),
        args.data.data,
        record.loss,
        optimizer.describe(),
        record.table()
    );
    crate::print_stdout(&text)?;
    if let Some(out) = &args.out {
        let title = format!("{name}: gradients at initialisation");
        let canvas = step_picture(&record, &title);
        canvas.save_png(out)?;
        println!(
            "wrote {} ({}×{} pixels)",
            out.display(),
            canvas.width,
            canvas.height
        );
    }
    Ok(())
}
