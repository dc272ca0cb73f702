//! Real data: a short LeNet-5 run on Fashion-MNIST from Debian's `dataset-fashion-mnist`
//! package, which `.ci/run` installs. On a machine without the package the test says so
//! and passes, except under CI, where the data must be there.

use std::path::Path;

use ocellus::zoo;
use ocellus_data::idx::{self, IdxKind};
use ocellus_train::run::{Run, RunConfig};

const DIR: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn lenet5_learns_fashion_mnist_in_200_steps() {
    if !Path::new(DIR).join("train-images-idx3-ubyte.gz").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{DIR} is missing: .ci/run must install dataset-fashion-mnist"
        );
        eprintln!("skipped: {DIR} not found (apt-get install dataset-fashion-mnist)");
        return;
    }
    let splits = idx::load(Path::new(DIR), IdxKind::FashionMnist).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));
    let config = RunConfig {
        data: "fashion-mnist".into(),
        epochs: 1,
        lr: 2e-3,
        limit_train: Some(12_800),
        ..RunConfig::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let arch = zoo::model("lenet5", [1, 28, 28], 10).unwrap();
    let mut run = Run::start(&dir, config, arch, splits).unwrap();
    let record = run.train_epoch(&mut |_| {}).unwrap();
    let test = run.finish().unwrap();
    eprintln!(
        "test accuracy {:.4}, train loss {:.4}",
        test.accuracy, record.train_loss
    );
    // Chance is 10%; these 200 steps reached 77.7% on the full test set (train loss 0.86).
    assert!(
        test.accuracy >= 0.72,
        "test accuracy {} after one short epoch",
        test.accuracy
    );
    assert!(record.train_loss < 1.0, "train loss {}", record.train_loss);
}
