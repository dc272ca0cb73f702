//! `ocellus compare`: train several models under the same budget and compare them side by
//! side — parameters, multiply-adds, accuracy, training time, and accuracy on shifted
//! test images.

use std::path::PathBuf;

use ocellus::arch::Architecture;
use ocellus::checkpoint::write_atomically;
use ocellus::{Error, Result};
use ocellus_train::compare::{self, Comparison, ModelResult};
use ocellus_train::run::Run;

use crate::commands::train::{architecture, describe, free_run_dir, TrainingArgs};
use crate::dataset::{short_name, DataArgs};
use crate::progress::Progress;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus compare --data fashion-mnist --epochs 3       LeNet-5 against an MLP of the same size
  ocellus compare --data fashion-mnist --models lenet5,mlp-lenet5,mlp
  ocellus compare --models lenet5,smallcnn,mlp --limit-train 2000 --epochs 2 --out runs/quick
  ocellus compare --data fashion-mnist --models plain20,resnet20,plain56,resnet56 --diagnostics

Every model gets the same data, epochs, batch size, optimiser, learning rate and seed, and
no augmentation, so that the shifted test measures the architectures. A shift by k moves
every test image k pixels down and k right (and likewise down-left, up-right, up-left; the
accuracy is the mean of the four), filling the uncovered border with black.

The gradient at the first layer (the norm of its weights' gradient) is measured for every
model at initialisation, on the first batch of the training set, and with --diagnostics also
over training (the median of the diagnosed steps); the table gives it with the number of
weight layers, and gradient.png draws it against depth for each family of models (plain,
resnet, …).

Writes to the output directory: one run directory per model, compare.md and compare.json
(the table), curves.png (test accuracy and loss per epoch), shift.png (accuracy against
the shift, with the shifted images) and gradient.png (first-layer gradient against depth).")]
pub struct Args {
    /// Comma-separated zoo models or architecture files. mlp-lenet5 is a one-hidden-layer
    /// MLP with LeNet-5's parameter count; mlp is the larger 256-128 MLP.
    #[arg(long, default_value = "lenet5,mlp-lenet5")]
    models: String,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    training: TrainingArgs,
    /// Measure the test accuracy at shifts of 1, 2, … up to this many pixels.
    #[arg(long, default_value_t = 4)]
    max_shift: usize,
    /// Output directory (default: runs/compare-<data>, numbered if taken).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

const TABLE_MD: &str = "compare.md";
const TABLE_JSON: &str = "compare.json";
const CURVES_PNG: &str = "curves.png";
const SHIFT_PNG: &str = "shift.png";
const GRADIENT_PNG: &str = "gradient.png";

pub fn run(args: Args) -> Result<()> {
    let models = model_list(&args.models)?;
    let splits = args.data.load(args.training.seed)?;
    let (c, h, w) = splits.train.image_shape();
    let classes = splits.train.num_classes();
    if h.min(w) <= args.max_shift {
        return Err(Error::config(
            "--max-shift",
            format!(
                "{} pixels would move {h}×{w} images out of the picture",
                args.max_shift
            ),
        ));
    }
    // Every model is built before any is trained, so a bad name fails at once.
    let architectures = models
        .iter()
        .map(|m| architecture(m, [c, h, w], classes))
        .collect::<Result<Vec<Architecture>>>()?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => free_run_dir(&format!("compare-{}", args.data.data)),
    };
    let shifts: Vec<usize> = (1..=args.max_shift).collect();

    let mut results: Vec<ModelResult> = Vec::new();
    let mut setting = None;
    for (i, (model, architecture)) in models.iter().zip(architectures).enumerate() {
        if i > 0 {
            println!();
        }
        let config = args.training.run_config(model, &args.data);
        let dir = out.join(short_name(model));
        let mut run = Run::start(&dir, config, architecture, splits.clone())?;
        describe(&run);
        let at_init = compare::gradient_flow_at_initialisation(&run)?;
        let mut progress = Progress::new(args.training.epochs());
        while run.epochs_done() < args.training.epochs() {
            let record = run.train_epoch(&mut |p| progress.batch(p))?;
            progress.epoch(&record, "test");
        }
        let mut result = compare::measure(&mut run, &shifts)?;
        result.gradient = Some(compare::gradient_at_depth(&run, &at_init)?);
        let shifted: Vec<String> = shifts
            .iter()
            .zip(&result.shifted_accuracy)
            .map(|(k, a)| format!("{k} px {:.1}%", 100.0 * a))
            .collect();
        println!(
            "{model}: test accuracy {:.2}%; shifted: {}",
            100.0 * result.test_accuracy,
            shifted.join(", ")
        );
        if setting.is_none() {
            let examples =
                compare::shift_examples(&run.test, &run.info.normalization, 0, args.max_shift)?;
            setting = Some((
                run.train.len(),
                run.test.len(),
                run.optimizer.describe(),
                examples,
            ));
        }
        results.push(result);
    }
    let (train_images, test_images, optimizer, examples) =
        setting.expect("at least one model was trained");
    let comparison = Comparison {
        data: args.data.data.clone(),
        train_images,
        test_images,
        epochs: args.training.epochs(),
        batch_size: args.training.batch_size,
        optimizer,
        seed: args.training.seed,
        threads: rayon::current_num_threads(),
        shifts,
        shift: compare::SHIFT_DESCRIPTION.into(),
        models: results,
    };
    write_atomically(&out.join(TABLE_MD), comparison.to_markdown().as_bytes())?;
    write_atomically(&out.join(TABLE_JSON), comparison.to_json().as_bytes())?;
    comparison.curves_picture().save_png(out.join(CURVES_PNG))?;
    comparison
        .shift_picture(&examples)
        .save_png(out.join(SHIFT_PNG))?;
    if let Some(chart) = comparison.gradient_chart() {
        chart.save_png(out.join(GRADIENT_PNG))?;
    }

    println!();
    print!("{}", comparison.table());
    println!("{}.", compare::SHIFT_DESCRIPTION);
    println!(
        "written to {}: {TABLE_MD}, {TABLE_JSON}, {CURVES_PNG}, {SHIFT_PNG}, {GRADIENT_PNG} and one run directory per model",
        out.display()
    );
    Ok(())
}

/// The comma-separated model list: at least one model, no empty entry, none twice (each
/// gets its own run directory, named after it).
fn model_list(text: &str) -> Result<Vec<String>> {
    let models: Vec<String> = text.split(',').map(|m| m.trim().to_string()).collect();
    if models.iter().all(|m| m.is_empty()) {
        return Err(Error::config(
            "--models",
            "give at least one model, e.g. --models lenet5,mlp-lenet5",
        ));
    }
    if models.iter().any(|m| m.is_empty()) {
        return Err(Error::config(
            "--models",
            format!("'{text}' has an empty entry; separate model names with single commas"),
        ));
    }
    for (i, m) in models.iter().enumerate() {
        if models[..i].iter().any(|o| short_name(o) == short_name(m)) {
            return Err(Error::config(
                "--models",
                format!(
                    "'{m}' is listed twice (each model gets one run directory, named after it)"
                ),
            ));
        }
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_are_checked() {
        assert_eq!(
            model_list("lenet5, mlp-lenet5").unwrap(),
            vec!["lenet5".to_string(), "mlp-lenet5".to_string()]
        );
        for bad in ["", " ", ",", "lenet5,,mlp", "lenet5,lenet5"] {
            let message = model_list(bad).unwrap_err().to_string();
            assert!(message.starts_with("--models: "), "{bad:?}: {message}");
        }
    }
}
