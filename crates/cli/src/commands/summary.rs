//! `ocellus summary`: the layer table of a model — shapes, parameters, multiply-adds,
//! receptive fields and activation memory.

use ocellus::summary::Summary;
use ocellus::LayerExt;
use ocellus::{Error, Result, Rng};

use crate::model::ModelArgs;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus summary                                        LeNet-5 on 1×28×28, 10 classes
  ocellus summary --model lenet5 --input 1x32x32         the classic LeNet-5: 61,706 parameters
  ocellus summary --model resnet20 --input 3x32x32 --batch 128
  ocellus summary --model examples/architectures/cifar_notes.toml
  ocellus summary --model inception --write-architecture inception.toml
                                                         a zoo model as a file to edit
Residual blocks show a row with their totals, then their inner layers indented, named as
their parameters are (4.main.0, 4.shortcut.0, 4.add for the sum, 4.act).")]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Batch size that multiply-adds and activation memory are counted for.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Also write the model's architecture to this file: TOML, or JSON when the name ends
    /// in .json — an architecture file `--model` accepts.
    #[arg(long, value_name = "FILE")]
    write_architecture: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::config("--batch", "must be at least 1"));
    }
    let arch = args.model.architecture()?;
    let net = arch.build(&mut Rng::new(0))?;
    let [c, h, w] = arch.input;
    let summary = Summary::of(&net, &[args.batch, c, h, w])?;
    debug_assert_eq!(summary.total_params, net.param_count());
    let name = arch.name.as_deref().unwrap_or(&args.model.model);
    let outputs: usize = summary.output_shape()[1..].iter().product();
    if let Some(path) = &args.write_architecture {
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let text = if json { arch.to_json() } else { arch.to_toml() };
        ocellus::checkpoint::write_atomically(path, text.as_bytes())?;
    }
    crate::print_stdout(&format!(
        "{name}: {c}×{h}×{w} → {outputs} outputs\n{summary}"
    ))
}
