//! The `--model` flag of the commands that build an untrained network: a zoo name or an
//! architecture file, with the input and the number of classes it is built for.

use std::path::Path;

use clap::Args;
use ocellus::arch::Architecture;
use ocellus::{zoo, Error, Result};

use crate::commands::train::is_file;
use crate::dataset::parse_chw;

/// Input of a zoo model when `--input` is not given: the built-in patterns, MNIST and
/// Fashion-MNIST.
pub const ZOO_INPUT: [usize; 3] = [1, 28, 28];
/// Classes of a zoo model when `--classes` is not given.
pub const ZOO_CLASSES: usize = 10;

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A zoo model (lenet5, smallcnn, alexnet, vgg, inception, resnet20/32/56, plain20/32/56, resnet-bottleneck, densenet, efficientnet, mlp, mlp-lenet5), an architecture file (.toml or .json), or a model file or run directory.
    #[arg(long, default_value = "lenet5")]
    pub model: String,
    /// Input image as CxHxW (default: the file's input; 1x28x28 for zoo models).
    #[arg(long, value_parser = parse_chw)]
    pub input: Option<[usize; 3]>,
    /// Classes of a zoo model (default 10; an architecture file fixes its own in its last layer).
    #[arg(long)]
    pub classes: Option<usize>,
}

impl ModelArgs {
    /// The architecture the flags describe; for a file, `--input` replaces the file's input
    /// (the layers adapt) and `--classes` must agree with its last layer.
    pub fn architecture(&self) -> Result<Architecture> {
        if !is_file(&self.model) {
            let input = self.input.unwrap_or(ZOO_INPUT);
            return zoo::model(&self.model, input, self.classes.unwrap_or(ZOO_CLASSES));
        }
        let path = Path::new(&self.model);
        let mut arch = crate::commands::train::architecture_file(path)?;
        if let Some(input) = self.input {
            arch.input = input;
        }
        let in_file = |e: Error| Error::Format {
            path: self.model.clone(),
            message: e.to_string(),
        };
        let output = arch.output_shape().map_err(in_file)?;
        if let Some(classes) = self.classes {
            if output != [1, classes] {
                return Err(Error::config(
                    "--classes",
                    format!(
                        "{} outputs {} values per image, not {classes}: an architecture file fixes its classes in its last layer",
                        self.model,
                        output[1..].iter().product::<usize>()
                    ),
                ));
            }
        }
        Ok(arch)
    }
}
