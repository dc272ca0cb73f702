//! Transfer learning on Fashion-MNIST: LeNet-5 pretrained on five classes (T-shirt/top,
//! trouser, pullover, dress, coat), then trained on the other five (sandal, shirt,
//! sneaker, bag, ankle boot) from a few hundred images — from scratch, and from the
//! pretrained weights with 0, 6 (the convolutions) or 8 (also the first linear layer)
//! layers frozen — on one budget: the same images, epochs, optimiser and seeds.
//!
//! ```text
//! cargo run --release -p ocellus-train --example transfer -- [OUT] [IMAGES,…] [EPOCHS] [SEEDS]
//! ```
//!
//! Defaults: `runs/transfer-fashion-mnist`, 100 and 500 training images, 20 epochs, seeds
//! 0–2. The pretrained run (5 epochs on the 30,000 training images of the first five
//! classes) is kept in `OUT/pretrain` and reused when it is there; every fine-tuning run
//! is `OUT/<variant>-<images>-<seed>`, a run directory like those of `ocellus train`
//! (`ocellus eval --checkpoint OUT/frozen6-500-0 …`). Accuracy is on the 5,000 test images
//! of the last five classes. Reads `/usr/share/datasets/fashion-mnist`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ocellus::{zoo, Result};
use ocellus_data::idx::{self, IdxKind};
use ocellus_data::{Dataset, Splits};
use ocellus_train::run::{Run, RunConfig};

/// The images of classes `from..to`, relabelled from 0.
fn classes(splits: &Splits, from: usize, to: usize) -> Result<Splits> {
    let keep = |set: &Dataset| -> Result<Dataset> {
        let indices: Vec<usize> = (0..set.len())
            .filter(|&i| (from..to).contains(&set.labels()[i]))
            .collect();
        let (images, labels) = set.gather(&indices);
        let labels = labels.into_iter().map(|l| l - from).collect();
        Dataset::new(images, labels, set.classes()[from..to].to_vec())
    };
    Ok(Splits {
        train: keep(&splits.train)?,
        test: keep(&splits.test)?,
    })
}

fn config(epochs: usize, seed: u64) -> RunConfig {
    RunConfig {
        data: "fashion-mnist".into(),
        epochs,
        batch_size: 32,
        seed,
        ..RunConfig::default()
    }
}

/// Trains a run to its end; the test accuracy after every epoch.
fn train(dir: &Path, config: RunConfig, data: Splits) -> Result<Vec<f32>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| ocellus::Error::io(dir, e))?;
    }
    let arch = zoo::model("lenet5", [1, 28, 28], 5)?;
    let mut run = Run::start(dir, config, arch, data)?;
    let mut curve = Vec::new();
    while run.epochs_done() < run.config.epochs {
        curve.push(run.train_epoch(&mut |_| {})?.val_accuracy);
    }
    Ok(curve)
}

fn mean_and_spread(values: &[f32]) -> (f32, f32, f32) {
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (mean, lo, hi)
}

fn run(out: &Path, sizes: &[usize], epochs: usize, seeds: u64) -> Result<()> {
    let all = idx::load(
        Path::new("/usr/share/datasets/fashion-mnist"),
        IdxKind::FashionMnist,
    )?;
    let (first, last) = (classes(&all, 0, 5)?, classes(&all, 5, 10)?);
    let pretrain = out.join("pretrain");
    if pretrain.join("model.safetensors").is_file() {
        println!("reusing {}", pretrain.display());
    } else {
        let curve = train(&pretrain, config(5, 0), first)?;
        println!(
            "pretrained {} on {}: test accuracy {:.2}% after 5 epochs",
            pretrain.display(),
            all.train.classes()[..5].join(", "),
            100.0 * curve.last().copied().unwrap_or(0.0)
        );
    }
    let variants: [(&str, bool, usize); 4] = [
        ("scratch", false, 0),
        ("finetune", true, 0),
        ("frozen6", true, 6),
        ("frozen8", true, 8),
    ];
    println!(
        "\n| training images | start | frozen layers | test accuracy after epoch 1 | after {epochs} (mean, min–max over {seeds} seeds) |"
    );
    println!("|---:|---|---:|---:|---:|");
    for &size in sizes {
        for (name, transfer, freeze) in variants {
            let mut firsts = Vec::new();
            let mut lasts = Vec::new();
            for seed in 0..seeds {
                let config = RunConfig {
                    limit_train: Some(size),
                    init_from: transfer.then(|| pretrain.display().to_string()),
                    freeze,
                    ..config(epochs, seed)
                };
                let dir = out.join(format!("{name}-{size}-{seed}"));
                let curve = train(&dir, config, last.clone())?;
                firsts.push(100.0 * curve[0]);
                lasts.push(100.0 * curve[curve.len() - 1]);
            }
            let (f, _, _) = mean_and_spread(&firsts);
            let (m, lo, hi) = mean_and_spread(&lasts);
            let start = if transfer { "pretrained" } else { "scratch" };
            println!("| {size} | {start} | {freeze} | {f:.1}% | {m:.1}% ({lo:.1}–{hi:.1}) |");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        args.first()
            .map_or("runs/transfer-fashion-mnist", String::as_str),
    );
    let sizes: Vec<usize> = args
        .get(1)
        .map_or("100,500", String::as_str)
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let epochs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let seeds = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    match run(&out, &sizes, epochs, seeds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
