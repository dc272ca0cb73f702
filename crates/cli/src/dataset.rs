//! Datasets by name, as the `--data` and `--data-dir` flags name them.

use std::path::{Path, PathBuf};

use clap::Args;
use ocellus::{Error, Result};
use ocellus_data::{Dataset, Splits};
pub use ocellus_train::datasets::{self, FOLDER_IMAGE_SIZE};
use ocellus_train::run::{ModelInfo, RunConfig};

/// The dataset flags shared by `train`, `eval` and others.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// patterns (built in), fashion-mnist, mnist, cifar10, or folder (DIR/<class>/*.png|jpg).
    #[arg(long, default_value = "patterns")]
    pub data: String,
    /// Directory of the dataset's files (fashion-mnist defaults to /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Image size for --data folder, as CxHxW (images are converted and resized to it)
    /// [default: an architecture file's input, else 3x32x32].
    #[arg(long, value_parser = parse_chw)]
    pub image_size: Option<[usize; 3]>,
}

/// Parses `CxHxW`, e.g. `3x32x32`.
pub fn parse_chw(text: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<&str> = text.split(['x', 'X', '×']).collect();
    let dims: Vec<usize> = parts.iter().filter_map(|p| p.trim().parse().ok()).collect();
    match dims.as_slice() {
        [c @ (1 | 3), h, w] if *h > 0 && *w > 0 && parts.len() == 3 => Ok([*c, *h, *w]),
        _ => Err(format!(
            "'{text}' is not CxHxW with C = 1 or 3 (e.g. 3x32x32)"
        )),
    }
}

impl DataArgs {
    /// Loads the named dataset. `folder` data is split 80/20 into train and test by `seed`.
    pub fn load(&self, seed: u64) -> Result<Splits> {
        datasets::load(
            &self.data,
            self.data_dir.as_deref(),
            self.image_size.unwrap_or(FOLDER_IMAGE_SIZE),
            seed,
            datasets::Settings {
                data: "--data",
                data_dir: "--data-dir",
            },
        )
    }
}

/// The test set of the dataset a run was trained on (as its `config.json` records it),
/// checked against the model's input; `what` names the command or flag in errors.
pub fn run_test_set(config: &RunConfig, info: &ModelInfo, what: &str) -> Result<Dataset> {
    let data = DataArgs {
        data: config.data.clone(),
        data_dir: config.data_dir.as_ref().map(PathBuf::from),
        image_size: Some(config.image_size),
    };
    let test = data.load(config.seed)?.test;
    let (c, h, w) = test.image_shape();
    if [c, h, w] != info.architecture.input {
        return Err(Error::config(
            what,
            format!(
                "the {} images are {c}×{h}×{w} but the model takes {:?}",
                config.data, info.architecture.input
            ),
        ));
    }
    Ok(test)
}

/// The name used for run directories: the last part of a path, or the name itself.
pub fn short_name(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}
