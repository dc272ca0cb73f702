//! A convolutional autoencoder on Fashion-MNIST: strided convolutions encode each image
//! into a 4×7×7 code (196 values for 784 pixels), transposed convolutions decode it back
//! to 28×28, and the network
//! learns to reproduce its input under the mean squared error. The transposed convolution
//! is the upsampling the lecture notes mention: the same operation as a convolution's
//! input gradient, used forward.
//!
//! ```text
//! cargo run --release -p ocellus-train --example autoencoder -- [EPOCHS] [TRAIN_IMAGES] [PICTURE]
//! ```
//!
//! Defaults: 3 epochs on the first 20,000 training images, the picture written to
//! `autoencoder.png` — eight test images (top row) above their reconstructions. It reads
//! the architecture `examples/architectures/autoencoder.toml` and the data set from
//! `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`).

use std::path::Path;
use std::process::ExitCode;

use ocellus::arch::Architecture;
use ocellus::loss::mse_loss;
use ocellus::optim::{Adam, AdamConfig};
use ocellus::{Error, Layer, LayerExt, Mode, Optimizer, Result, Rng};
use ocellus_data::idx::{self, IdxKind};
use ocellus_viz::colormap::Colormap;
use ocellus_viz::images::{image_grid, Tile, TileRange};

const BATCH: usize = 64;

fn run(epochs: usize, train_images: usize, picture: &Path) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let arch = Architecture::from_file(&root.join("examples/architectures/autoencoder.toml"))?;
    let data = idx::load(
        Path::new("/usr/share/datasets/fashion-mnist"),
        IdxKind::FashionMnist,
    )?;
    let n = train_images.min(data.train.len());
    let mut rng = Rng::new(0);
    let mut net = arch.build(&mut rng)?;
    let mut optimizer = Adam::new(AdamConfig::adam(1e-3))?;
    let mut order: Vec<usize> = (0..n).collect();
    println!(
        "{}: {} parameters, {n} images, batch {BATCH}",
        arch.name.as_deref().unwrap_or("autoencoder"),
        net.param_count()
    );
    for epoch in 1..=epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut batches) = (0.0f64, 0usize);
        for chunk in order.chunks(BATCH) {
            let (x, _) = data.train.gather(chunk);
            net.zero_grad();
            let y = net.forward_ref(&x, Mode::Train)?;
            // The target is the input itself.
            let (loss, dy) = mse_loss(&y, &x)?;
            net.backward_params(dy)?;
            optimizer.step(&mut net)?;
            sum += loss as f64;
            batches += 1;
        }
        let test: Vec<usize> = (0..1000).collect();
        let (x, _) = data.test.gather(&test);
        let (test_loss, _) = mse_loss(&net.forward_ref(&x, Mode::Eval)?, &x)?;
        println!(
            "epoch {epoch}: train MSE {:.5}, test MSE {test_loss:.5} (1,000 test images)",
            sum / batches.max(1) as f64
        );
    }
    // Eight test images of different classes, and what the network makes of them.
    let shown: Vec<usize> = (0..8).map(|class| first_of(&data.test, class)).collect();
    let (x, _) = data.test.gather(&shown);
    let y = net.forward_ref(&x, Mode::Eval)?;
    let mut tiles = Vec::new();
    for (t, caption) in [(&x, "input"), (&y, "reconstruction")] {
        for (k, &i) in shown.iter().enumerate() {
            let image = t.image(k).unwrap_or_default().to_vec();
            let class = &data.test.classes()[data.test.labels()[i]];
            tiles.push(
                Tile::gray(28, 28, image).with_caption(if caption == "input" {
                    class.clone()
                } else {
                    caption.to_string()
                }),
            );
        }
    }
    let title = format!("Fashion-MNIST test images (top) and their reconstructions from a 4×7×7 code, after {epochs} epoch(s)");
    image_grid(
        &title,
        &tiles,
        8,
        3,
        TileRange::Fixed(0.0, 1.0),
        Colormap::Gray,
    )
    .save_png(picture)?;
    println!("wrote {}", picture.display());
    Ok(())
}

/// The index of the first test image of `class`.
fn first_of(data: &ocellus_data::Dataset, class: usize) -> usize {
    data.labels().iter().position(|&l| l == class).unwrap_or(0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> std::result::Result<usize, String> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| format!("'{s}' is not a whole number"))
        })
    };
    let parsed = (number(0, 3), number(1, 20_000));
    let (Ok(epochs), Ok(images)) = parsed else {
        eprintln!("usage: autoencoder [EPOCHS] [TRAIN_IMAGES] [PICTURE]");
        return ExitCode::from(2);
    };
    let picture = args.get(2).map_or("autoencoder.png", String::as_str);
    match run(epochs, images, Path::new(picture)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: Error = e;
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
