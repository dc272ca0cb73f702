//! Data sets by name — `patterns`, `fashion-mnist`, `mnist`, `cifar10`, `folder` — as the
//! command line (`--data NAME --data-dir DIR`) and the Python package
//! (`ocellus.train(data=NAME, data_dir=DIR)`) name them, loaded one way for both.

use std::path::{Path, PathBuf};

use ocellus::{Error, Result};
use ocellus_data::{cifar, folder, idx, patterns, Splits};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Train and test images per class of the built-in patterns dataset.
pub const PATTERNS_TRAIN_PER_CLASS: usize = 1000;
pub const PATTERNS_TEST_PER_CLASS: usize = 250;

/// The image size of folder data when none is given.
pub const FOLDER_IMAGE_SIZE: [usize; 3] = [3, 32, 32];

/// The names [`load`] knows, for messages.
pub const NAMES: &str = "patterns, fashion-mnist, mnist, cifar10 or folder";

/// What a front end calls the two settings, for its messages: `("--data", "--data-dir")`
/// on the command line, `("data", "data_dir")` in Python.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub data: &'static str,
    pub data_dir: &'static str,
}

/// Loads the data set `name` from `dir` (`fashion-mnist` defaults to
/// [`FASHION_MNIST_DIR`]; `patterns` needs none). Folder data is converted and resized to
/// `image_size` and split 80/20 into train and test by `seed`, which also draws the
/// patterns. Errors name the setting as the front end calls it.
pub fn load(
    name: &str,
    dir: Option<&Path>,
    image_size: [usize; 3],
    seed: u64,
    settings: Settings,
) -> Result<Splits> {
    let dir = |default: Option<&str>| -> Result<PathBuf> {
        match (dir, default) {
            (Some(d), _) => Ok(d.to_path_buf()),
            (None, Some(d)) => Ok(PathBuf::from(d)),
            (None, None) => Err(Error::config(
                settings.data_dir,
                format!("{} {name} needs {} DIR", settings.data, settings.data_dir),
            )),
        }
    };
    match name {
        "patterns" => Ok(patterns::generate(
            PATTERNS_TRAIN_PER_CLASS,
            PATTERNS_TEST_PER_CLASS,
            seed,
        )),
        "fashion-mnist" => idx::load(&dir(Some(FASHION_MNIST_DIR))?, idx::IdxKind::FashionMnist),
        "mnist" => idx::load(&dir(None)?, idx::IdxKind::Mnist),
        "cifar10" => cifar::load(&dir(None)?),
        "folder" => {
            let root = dir(None)?;
            let [c, h, w] = image_size;
            let mut train = folder::load_folder(&root, c, h, w)?;
            if train.num_classes() < 2 {
                let only = train.classes().first().map_or("", String::as_str);
                return Err(Error::format(
                    &root,
                    format!(
                        "holds one class folder ('{only}'): a classifier needs at least two \
                         classes, one subfolder of images each"
                    ),
                ));
            }
            let test = train.split_off_validation(0.2, seed)?;
            Ok(Splits { train, test })
        }
        other => Err(Error::config(
            settings.data,
            format!("unknown dataset '{other}'; choose {NAMES}"),
        )),
    }
}
