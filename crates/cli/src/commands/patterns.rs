//! `ocellus patterns`: write sample images of the built-in dataset as PNG files.

use std::path::PathBuf;

use ocellus::{Error, Result};
use ocellus_data::folder::save_png_gray;
use ocellus_data::patterns;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus patterns -o samples                 8 images of every class in samples/<class>/
  ocellus patterns -o samples --per-class 50 --seed 3
The folder it writes is itself a dataset: ocellus train --data folder --data-dir samples --image-size 1x28x28")]
pub struct Args {
    /// Output directory; images go to OUT/<class>/NNN.png.
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long, default_value_t = 8)]
    per_class: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    let set = patterns::generate_set(args.per_class, args.seed);
    let (_, h, w) = set.image_shape();
    let mut written = vec![0usize; set.num_classes()];
    for (n, &label) in set.labels().iter().enumerate() {
        let dir = args.out.join(&set.classes()[label]);
        std::fs::create_dir_all(&dir).map_err(|source| Error::io(&dir, source))?;
        let index = written[label];
        written[label] += 1;
        save_png_gray(&dir.join(format!("{index:03}.png")), set.image(n), h, w)?;
    }
    println!(
        "wrote {} images ({} classes × {}) to {}",
        set.len(),
        set.num_classes(),
        args.per_class,
        args.out.display()
    );
    Ok(())
}
