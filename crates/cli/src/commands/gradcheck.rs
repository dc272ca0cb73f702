//! `ocellus gradcheck`: finite-difference check of every layer's input and parameter
//! gradients inside a model, each layer at the activation that reaches it.

use ocellus::gradcheck::{check_network_layers, GradCheckConfig};
use ocellus::{Error, Mode, Result, Rng, Tensor};

use crate::model::ModelArgs;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus gradcheck                                      every layer of LeNet-5
  ocellus gradcheck --model resnet20 --input 3x32x32
  ocellus gradcheck --model examples/architectures/residual_small.toml
  ocellus gradcheck --model smallcnn --seed 7 --samples 200
Each layer — inside residual blocks too — gets the activation that reaches it from a random
input (moved off ReLU kinks and max-pool ties) and a random upstream gradient r; its analytic
gradients of L = Σ y·r are compared with central differences (L(θ+ε) − L(θ−ε)) / 2ε.
The exit status is 1 if any tensor fails.")]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Images in the random input batch (BatchNorm runs in training mode, on batch statistics).
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Seed of the weights, the input, the upstream gradient and the positions checked.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Step ε of the central differences.
    #[arg(long, default_value_t = GradCheckConfig::default().epsilon)]
    epsilon: f32,
    /// Positions checked per tensor (all of them in smaller tensors).
    #[arg(long, default_value_t = 64)]
    samples: usize,
}

pub fn run(args: Args) -> Result<()> {
    if args.batch == 0 || args.samples == 0 {
        return Err(Error::config(
            "gradcheck",
            "--batch and --samples must be at least 1",
        ));
    }
    let arch = args.model.architecture()?;
    let mut rng = Rng::new(args.seed);
    let mut net = arch.build(&mut rng)?;
    let [c, h, w] = arch.input;
    let x = Tensor::randn(&[args.batch, c, h, w], 1.0, &mut rng);
    let cfg = GradCheckConfig {
        epsilon: args.epsilon,
        max_samples: args.samples,
        seed: args.seed,
        mode: Mode::Train,
        ..GradCheckConfig::default()
    };
    let name = arch.name.as_deref().unwrap_or(&args.model.model);
    let check = check_network_layers(&mut net, &x, &cfg)?;
    crate::print_stdout(&format!(
        "{name} on {}×{c}×{h}×{w} random inputs, ε = {}, seed {}\n{check}",
        args.batch, cfg.epsilon, args.seed
    ))?;
    if check.passed() {
        return Ok(());
    }
    let failed: Vec<String> = check
        .failed_layers()
        .iter()
        .map(|l| format!("layer {} ({})", l.name, l.description))
        .collect();
    Err(Error::config(
        "gradcheck",
        format!("gradients do not match in {}", failed.join(", ")),
    ))
}
