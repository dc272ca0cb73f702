//! `ocellus viz`: pictures of what a trained model learned — its filters, the feature maps
//! of one image, the saliency of its pixels — and of how gradients flowed while it trained.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use ocellus::Sequential;
use ocellus::{Error, Result, Tensor};
use ocellus_data::folder::load_image;
use ocellus_train::diagnostics::{gradflow_picture, read_diagnostics};
use ocellus_train::run::{load_weights, read_config, ModelInfo, Weights};
use ocellus_viz::inspect::{self, FilterLimits};
use ocellus_viz::{Canvas, Tile};

use crate::dataset::run_test_set;
use crate::progress::thousands;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus viz filters --checkpoint runs/lenet5-patterns -o filters.png
  ocellus viz features --checkpoint runs/lenet5-patterns --sample 0 -o features.png
  ocellus viz saliency --checkpoint runs/lenet5-patterns --image circle.png -o saliency.png
  ocellus viz gradcam --checkpoint runs/lenet5-patterns --layer 3 --sample 0 -o gradcam.png
  ocellus viz gradflow runs/plain20-fashion-mnist")]
pub struct Args {
    #[command(subcommand)]
    picture: Picture,
}

#[derive(Subcommand)]
enum Picture {
    /// The filters of a convolution as an image grid.
    #[command(after_help = "Examples:
  ocellus viz filters --checkpoint runs/lenet5-patterns -o filters.png
  ocellus viz filters --checkpoint runs/lenet5-patterns --layer 3 -o filters3.png
  ocellus viz filters --checkpoint runs/resnet20-cifar10 --layer 4.main.0 -o block.png
A first layer over 1 or 3 channels shows each filter as a grey or RGB picture; a deeper one
shows a table with a row per filter and a column per input channel (blue < 0 < red).")]
    Filters {
        /// A run directory or a model.safetensors file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// With a run directory: the last epoch's weights or the best epoch's.
        #[arg(long, default_value = "last", value_parser = ["best", "last"])]
        weights: String,
        /// The convolution, named as its parameters are (0, 3, 4.main.0); default: the first.
        #[arg(long)]
        layer: Option<String>,
        /// Filters shown at most.
        #[arg(long, default_value_t = 64)]
        max_filters: usize,
        /// Input channels shown at most per filter of a deeper layer.
        #[arg(long, default_value_t = 16)]
        max_channels: usize,
        /// The PNG file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// The feature maps of every convolution and pooling layer for one image.
    #[command(after_help = "Examples:
  ocellus viz features --checkpoint runs/lenet5-patterns --sample 0 -o features.png
  ocellus viz features --checkpoint runs/lenet5-patterns --image circle.png --activations -o f.png
Images are converted to the model's channels (grey ↔ RGB) and resized to its input, as predict does.")]
    Features {
        #[command(flatten)]
        source: ImageSource,
        /// Also show the activations (ReLU, BatchNorm…) after the convolutions.
        #[arg(long)]
        activations: bool,
        /// Maps shown at most per layer.
        #[arg(long, default_value_t = 32)]
        max_maps: usize,
        /// The PNG file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Which pixels the class score depends on: the gradient of the score with respect to the input.
    #[command(after_help = "Examples:
  ocellus viz saliency --checkpoint runs/lenet5-patterns --sample 3 -o saliency.png
  ocellus viz saliency --checkpoint runs/lenet5-fashion-mnist --image shoe.png --class 7 -o s.png
The map is max over channels of |∂ score / ∂ pixel| for the class (default: the predicted one),
computed in evaluation mode; the caption gives the prediction and its probability.
Images are converted to the model's channels (grey ↔ RGB) and resized to its input, as predict does.")]
    Saliency {
        #[command(flatten)]
        source: ImageSource,
        /// The class whose score is differentiated (default: the predicted class).
        #[arg(long)]
        class: Option<usize>,
        /// The PNG file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Grad-CAM: where in the image a layer's evidence for a class lies.
    #[command(after_help = "Examples:
  ocellus viz gradcam --checkpoint runs/lenet5-patterns --layer 3 --sample 0 -o gradcam.png
  ocellus viz gradcam --checkpoint runs/resnet20-cifar10 --layer 9 --class 3 --image cat.png -o g.png
The maps of the layer (a top-level layer whose output is a stack of maps, numbered as
`ocellus summary` numbers them; a block counts as one) are weighted by the mean gradient of
the class score (the logit; default: the predicted class), summed, ReLU'd and interpolated
bilinearly to the input (Selvaraju et al. 2017), in evaluation mode.
Images are converted to the model's channels (grey ↔ RGB) and resized to its input, as predict does.")]
    Gradcam {
        #[command(flatten)]
        source: ImageSource,
        /// The layer whose maps are weighted, e.g. 3 (the last convolution of LeNet-5).
        #[arg(long)]
        layer: String,
        /// The class whose score is differentiated (default: the predicted class).
        #[arg(long)]
        class: Option<usize>,
        /// The PNG file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// How gradients flowed through the layers while a run trained (needs train --diagnostics).
    #[command(after_help = "Examples:
  ocellus train --model plain20 --data fashion-mnist --diagnostics -o runs/plain20
  ocellus viz gradflow runs/plain20                  writes runs/plain20/gradflow.png
  ocellus viz gradflow runs/plain20 -o flow.png
One row per layer, one column per diagnosed step, log colour scales: the norm of the gradient
reaching each layer's input |∂L/∂x|, of its parameters' gradient |∂L/∂θ|, the update ratio
|Δθ|/|θ|, and the fraction of dead ReLU channels (zero for the whole batch). Grey cells have no
value (a layer without parameters; the first layer's input, which is data) or a gradient of
exactly zero — what dead ReLUs leave behind them.")]
    Gradflow {
        /// A run directory trained with --diagnostics (or its diagnostics.jsonl).
        run: PathBuf,
        /// The PNG file to write [default: RUN/gradflow.png].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

/// The model and the one image a picture is made for.
#[derive(clap::Args)]
struct ImageSource {
    /// A run directory or a model.safetensors file.
    #[arg(long)]
    checkpoint: PathBuf,
    /// With a run directory: the last epoch's weights or the best epoch's.
    #[arg(long, default_value = "last", value_parser = ["best", "last"])]
    weights: String,
    /// An image file (PNG or JPEG).
    #[arg(long, required_unless_present = "sample", conflicts_with = "sample")]
    image: Option<PathBuf>,
    /// Test image K of the run's dataset (needs a run directory).
    #[arg(long)]
    sample: Option<usize>,
}

/// One input: as seen (values in [0, 1]), normalised for the model, and its true class
/// when it comes from a dataset.
struct Input {
    seen: Tensor,
    normalised: Tensor,
    label: Option<usize>,
    /// The file name, or `test image K`.
    name: String,
}

impl Input {
    /// `test image 5 (circle)` or `shoe.png`.
    fn describe(&self, info: &ModelInfo) -> String {
        match self.label {
            Some(label) => format!("{} ({})", self.name, info.classes[label]),
            None => self.name.clone(),
        }
    }
}

impl ImageSource {
    /// The model and what its file says, for the weights asked for.
    fn model(&self) -> Result<(Sequential, ModelInfo)> {
        load_weights(&self.checkpoint, Weights::parse(&self.weights)?)
    }

    fn load(&self, info: &ModelInfo) -> Result<Input> {
        let [c, h, w] = info.architecture.input;
        let (seen, label, name) = match (&self.image, self.sample) {
            (Some(path), _) => {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                );
                (load_image(path, c, h, w)?, None, name)
            }
            (None, Some(k)) => {
                let (image, label) = test_image(&self.checkpoint, info, k)?;
                (image, Some(label), format!("test image {k}"))
            }
            (None, None) => unreachable!("clap requires --image or --sample"),
        };
        let mut normalised = seen.clone();
        info.normalization.apply_to_batch(&mut normalised)?;
        Ok(Input {
            seen,
            normalised,
            label,
            name,
        })
    }
}

/// Test image `k` of the dataset the run in `dir` was trained on, and its label.
fn test_image(dir: &Path, info: &ModelInfo, k: usize) -> Result<(Tensor, usize)> {
    if !dir.is_dir() {
        return Err(Error::config(
            "--sample",
            format!(
                "{} is a model file, which does not say its dataset: give a run directory, or --image",
                dir.display()
            ),
        ));
    }
    let config = read_config(dir)?;
    let test = run_test_set(&config, info, "--sample")?;
    if k >= test.len() {
        return Err(Error::config(
            "--sample",
            format!(
                "there is no test image {k}: the {} test set has {} images, 0 to {}",
                config.data,
                thousands(test.len() as f64),
                test.len() - 1
            ),
        ));
    }
    let (image, labels) = test.gather(&[k]);
    Ok((image, labels[0]))
}

/// The image as a tile: grey or RGB, values in [0, 1].
fn tile_of(seen: &Tensor) -> Result<Tile> {
    Tile::from_tensor(seen)
}

fn save(canvas: &Canvas, out: &Path) -> Result<()> {
    canvas.save_png(out)?;
    println!(
        "wrote {} ({}×{} pixels)",
        out.display(),
        canvas.width,
        canvas.height
    );
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    match args.picture {
        Picture::Filters {
            checkpoint,
            weights,
            layer,
            max_filters,
            max_channels,
            out,
        } => {
            let (model, _) = load_weights(&checkpoint, Weights::parse(&weights)?)?;
            let limits = FilterLimits {
                outputs: max_filters,
                inputs: max_channels,
            };
            let canvas = inspect::filters_picture(&model, layer.as_deref(), limits)?;
            save(&canvas, &out)
        }
        Picture::Features {
            source,
            activations,
            max_maps,
            out,
        } => {
            let (mut model, info) = source.model()?;
            let input = source.load(&info)?;
            let maps = inspect::feature_maps(&mut model, &input.normalised, activations)?;
            if maps.is_empty() {
                return Err(Error::config(
                    "features",
                    "the model has no convolution or pooling layer, so there are no feature maps to show",
                ));
            }
            let title = format!("feature maps for {}", input.describe(&info));
            let canvas =
                inspect::feature_maps_picture(&title, &tile_of(&input.seen)?, &maps, max_maps);
            save(&canvas, &out)
        }
        Picture::Gradflow { run, out } => {
            let records = read_diagnostics(&run)?;
            let canvas = gradflow_picture(&records)?;
            let out = match out {
                Some(out) => out,
                None if run.is_dir() => run.join("gradflow.png"),
                None => run.with_file_name("gradflow.png"),
            };
            println!(
                "{} diagnosed steps, {} to {}",
                records.len(),
                records.first().map_or(0, |r| r.step),
                records.last().map_or(0, |r| r.step)
            );
            save(&canvas, &out)
        }
        Picture::Saliency { source, class, out } => {
            let (mut model, info) = source.model()?;
            let input = source.load(&info)?;
            let saliency = inspect::saliency(&mut model, &input.normalised, class)?;
            let predicted = saliency.predicted();
            println!(
                "predicted {} ({:.1}%)",
                info.classes[predicted],
                100.0 * saliency.probabilities[predicted]
            );
            let canvas = inspect::saliency_picture(
                &tile_of(&input.seen)?,
                &saliency,
                &info.classes,
                input.label,
            );
            save(&canvas, &out)
        }
        Picture::Gradcam {
            source,
            layer,
            class,
            out,
        } => {
            let (mut model, info) = source.model()?;
            let input = source.load(&info)?;
            let gradcam = inspect::grad_cam(&mut model, &input.normalised, &layer, class)?;
            let predicted = gradcam.predicted();
            println!(
                "predicted {} ({:.1}%); Grad-CAM of '{}' at layer {layer}, {} maps",
                info.classes[predicted],
                100.0 * gradcam.probabilities[predicted],
                info.classes[gradcam.class],
                gradcam.weights.len()
            );
            let canvas = inspect::gradcam_picture(
                &tile_of(&input.seen)?,
                &gradcam,
                &info.classes,
                input.label,
            );
            save(&canvas, &out)
        }
    }
}
