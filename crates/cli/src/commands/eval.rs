//! `ocellus eval`: accuracy and confusion matrix of a trained model.

use std::path::PathBuf;

use ocellus::{Error, Result};
use ocellus_train::run::{load_weights, read_config, Weights};
use ocellus_train::trainer;

use crate::dataset::DataArgs;
use crate::progress::thousands;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus eval --checkpoint runs/lenet5-patterns
  ocellus eval --checkpoint runs/lenet5-fashion-mnist --split train
  ocellus eval --checkpoint runs/smallcnn-fashion-mnist --weights best
  ocellus eval --checkpoint model.safetensors --data mnist --data-dir ~/mnist")]
pub struct Args {
    /// A run directory or a model.safetensors file.
    #[arg(long)]
    checkpoint: PathBuf,
    /// With a run directory: the last epoch's weights or the best epoch's (by the
    /// validation set; runs with --val-fraction keep them).
    #[arg(long, default_value = "last", value_parser = ["best", "last"])]
    weights: String,
    /// The dataset (default: the one the run was trained on).
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Image size for --data folder, as CxHxW (default: the model's input).
    #[arg(long, value_parser = crate::dataset::parse_chw)]
    image_size: Option<[usize; 3]>,
    #[arg(long, default_value = "test", value_parser = ["test", "train"])]
    split: String,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

pub fn run(args: Args) -> Result<()> {
    let weights = Weights::parse(&args.weights)?;
    let (mut model, info) = load_weights(&args.checkpoint, weights)?;
    let run_config = read_config(&args.checkpoint).ok();
    let data = DataArgs {
        data: match (&args.data, &run_config) {
            (Some(d), _) => d.clone(),
            (None, Some(c)) => c.data.clone(),
            (None, None) => {
                return Err(Error::config(
                    "--data",
                    "a model file alone does not say its dataset: add --data",
                ))
            }
        },
        data_dir: args.data_dir.clone().or_else(|| {
            run_config
                .as_ref()
                .filter(|_| args.data.is_none())
                .and_then(|c| c.data_dir.as_ref().map(PathBuf::from))
        }),
        image_size: Some(args.image_size.unwrap_or(info.architecture.input)),
    };
    let seed = run_config.as_ref().map_or(0, |c| c.seed);
    let splits = data.load(seed)?;
    let mut set = if args.split == "train" {
        splits.train
    } else {
        splits.test
    };
    let (c, h, w) = set.image_shape();
    if [c, h, w] != info.architecture.input || set.num_classes() != info.classes.len() {
        return Err(Error::config(
            "eval",
            format!(
                "the model takes {:?} images and {} classes, but {} has {c}×{h}×{w} images and {} classes",
                info.architecture.input,
                info.classes.len(),
                data.data,
                set.num_classes()
            ),
        ));
    }
    info.normalization.apply(&mut set)?;
    let result = trainer::evaluate(&mut model, &set, args.batch_size)?;
    let correct: usize = (0..result.confusion.len())
        .map(|i| result.confusion[i][i])
        .sum();
    println!(
        "{} {} split: accuracy {:.2}% ({}/{}), loss {:.4}",
        data.data,
        args.split,
        100.0 * result.accuracy,
        thousands(correct as f64),
        thousands(set.len() as f64),
        result.loss
    );
    println!();
    print!("{}", confusion_table(&result.confusion, &info.classes));
    Ok(())
}

/// The confusion matrix as text: rows are true classes, columns predictions, with each
/// class's recall at the end of its row.
pub fn confusion_table(confusion: &[Vec<usize>], classes: &[String]) -> String {
    // Class names up to 20 characters, cut with … beyond; the column is as wide as the
    // longest, counted in characters (not bytes).
    const MAX_LABEL: usize = 20;
    let label = |name: &str| {
        if name.chars().count() > MAX_LABEL {
            name.chars()
                .take(MAX_LABEL - 1)
                .chain(['…'])
                .collect::<String>()
        } else {
            name.to_string()
        }
    };
    let label_width = classes
        .iter()
        .map(|c| label(c).chars().count())
        .max()
        .unwrap_or(0)
        .max("true ↓".chars().count());
    let pad = |text: &str, width: usize| {
        format!(
            "{}{text}",
            " ".repeat(width.saturating_sub(text.chars().count()))
        )
    };
    let width = confusion
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .max()
        .unwrap_or(1)
        .max(3);
    // A row starts with the label, a space and the class index (2 wide).
    let lead = label_width + 3;
    let mut out = format!("{} predicted →\n{}", pad("true ↓", lead), pad("", lead));
    for k in 0..classes.len() {
        out += &format!(" {:>width$}", k);
    }
    out += "   recall\n";
    for (i, row) in confusion.iter().enumerate() {
        out += &format!("{} {:>2}", pad(&label(&classes[i]), label_width), i);
        for v in row {
            out += &format!(" {:>width$}", v);
        }
        let total: usize = row.iter().sum();
        out += &format!("   {:5.1}%\n", 100.0 * row[i] as f64 / total.max(1) as f64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confusion_table_stays_aligned_with_long_class_names() {
        let classes: Vec<String> = ["cat", "a rather long class name indeed", "Ünïcödé"]
            .map(String::from)
            .to_vec();
        let confusion = vec![vec![5, 0, 1000], vec![0, 7, 0], vec![1, 2, 3]];
        let table = confusion_table(&confusion, &classes);
        let lines: Vec<&str> = table.lines().collect();
        // Every row of counts ends its columns at the same character.
        let ends: Vec<usize> = lines[1..]
            .iter()
            .map(|l| l.find("   ").map_or(0, |_| l.chars().count()))
            .collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{table}");
        assert!(table.contains("a rather long class…"), "{table}");
        let starts: Vec<usize> = lines[2..]
            .iter()
            .map(|l| l.chars().position(|c| c.is_ascii_digit()).unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{table}");
    }
}
