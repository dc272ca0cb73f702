//! Transfer learning and early stopping in training runs: a run started from another's
//! weights with its first layers frozen changes only the others; a source that does not
//! fit is refused before anything is written; the best epoch's weights are kept, training
//! stops `patience` epochs after it, and resuming keeps all of it exact.

use std::path::Path;

use ocellus::checkpoint::state_dict;
use ocellus::optim::LrSchedule;
use ocellus::{zoo, LayerExt, Tensor};
use ocellus_data::{patterns, Dataset, Splits};
use ocellus_train::early_stop::{self, Monitor};
use ocellus_train::run::{load_model, load_weights, read_metrics, Run, RunConfig, Weights};

fn config(model: &str) -> RunConfig {
    RunConfig {
        model: model.into(),
        epochs: 3,
        batch_size: 32,
        lr: 2e-3,
        seed: 5,
        val_fraction: 0.2,
        ..RunConfig::default()
    }
}

/// The patterns of the classes `from..to`, relabelled from 0.
fn classes(splits: &Splits, from: usize, to: usize) -> Splits {
    let keep = |set: &Dataset| {
        let indices: Vec<usize> = (0..set.len())
            .filter(|&i| (from..to).contains(&set.labels()[i]))
            .collect();
        let (images, labels) = set.gather(&indices);
        let labels = labels.into_iter().map(|l| l - from).collect();
        Dataset::new(images, labels, set.classes()[from..to].to_vec()).unwrap()
    };
    Splits {
        train: keep(&splits.train),
        test: keep(&splits.test),
    }
}

fn data() -> Splits {
    patterns::generate(30, 10, 3)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

fn top_level(name: &str) -> usize {
    name.split('.').next().unwrap().parse().unwrap()
}

#[test]
fn init_from_with_frozen_layers_changes_only_the_trainable_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (source_dir, target_dir) = (tmp.path().join("source"), tmp.path().join("target"));
    // SmallCNN: conv, BatchNorm, ReLU, pool, conv, BatchNorm, ReLU, pool | flatten,
    // linear, ReLU, dropout, linear. Pretrained on 6 classes, fine-tuned on the other 2.
    let all = data();
    let arch = zoo::model("smallcnn", [1, 28, 28], 6).unwrap();
    let mut source =
        Run::start(&source_dir, config("smallcnn"), arch, classes(&all, 0, 6)).unwrap();
    source.train_epoch(&mut |_| {}).unwrap();
    let pretrained = state_dict(&source.model);
    drop(source);

    let target_config = RunConfig {
        init_from: Some(source_dir.display().to_string()),
        freeze: 8,
        ..config("smallcnn")
    };
    let arch = zoo::model("smallcnn", [1, 28, 28], 2).unwrap();
    let mut run = Run::start(&target_dir, target_config, arch, classes(&all, 6, 8)).unwrap();
    let head = 12;
    // Started from the source: everything but the head (8 outputs there, 2 here).
    for (name, tensor) in state_dict(&run.model) {
        let (_, before) = pretrained.iter().find(|(n, _)| *n == name).unwrap();
        if top_level(&name) == head {
            assert_ne!(tensor.shape(), before.shape(), "{name}");
        } else {
            assert_eq!(bits(&tensor), bits(before), "{name} was not copied");
        }
    }
    run.train_epoch(&mut |_| {}).unwrap();
    run.train_epoch(&mut |_| {}).unwrap();

    // Frozen: parameters and BatchNorm statistics bit for bit, and not one gradient.
    for (name, tensor) in state_dict(&run.model) {
        let (_, before) = pretrained.iter().find(|(n, _)| *n == name).unwrap();
        let layer = top_level(&name);
        if layer < 8 {
            assert_eq!(bits(&tensor), bits(before), "frozen {name} changed");
        } else if layer != head && !name.ends_with("num_batches_tracked") {
            assert_ne!(
                bits(&tensor),
                bits(before),
                "trainable {name} did not change"
            );
        }
    }
    for (name, p) in run.model.params() {
        let untouched = p.grad().data().iter().all(|&g| g == 0.0);
        assert_eq!(untouched, top_level(&name) < 8, "gradient of {name}");
    }
    // The optimiser holds state for the trainable parameters only.
    let state = run.optimizer.state();
    assert!(!state.tensors.is_empty());
    assert!(state.tensors.iter().all(|(n, _)| top_level(n) >= 8));

    // Resumed, the run continues exactly as one that never stopped.
    drop(run);
    let straight = state_dict(&load_model(&target_dir).unwrap().0);
    let again = tmp.path().join("again");
    let mut run = Run::start(
        &again,
        RunConfig {
            init_from: Some(source_dir.display().to_string()),
            freeze: 8,
            ..config("smallcnn")
        },
        zoo::model("smallcnn", [1, 28, 28], 2).unwrap(),
        classes(&all, 6, 8),
    )
    .unwrap();
    run.train_epoch(&mut |_| {}).unwrap();
    drop(run);
    let mut run = Run::resume(&again, classes(&all, 6, 8)).unwrap();
    run.train_epoch(&mut |_| {}).unwrap();
    for ((name, a), (_, b)) in straight.iter().zip(state_dict(&run.model)) {
        assert_eq!(bits(a), bits(&b), "{name} differs after resuming");
    }
}

#[test]
fn an_init_from_that_does_not_fit_names_the_layer_and_both_shapes_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let source_dir = tmp.path().join("lenet");
    let all = data();
    let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let mut source = Run::start(&source_dir, config("lenet5"), arch, all.clone()).unwrap();
    source.train_epoch(&mut |_| {}).unwrap();
    drop(source);

    let target = tmp.path().join("target");
    let attempt = |model: &str, freeze: usize| {
        let config = RunConfig {
            init_from: Some(source_dir.display().to_string()),
            freeze,
            ..config(model)
        };
        let arch = zoo::model(model, [1, 28, 28], 8).unwrap();
        Run::start(&target, config, arch, all.clone())
            .err()
            .unwrap()
            .to_string()
    };
    let err = attempt("smallcnn", 0);
    assert!(
        err.contains("--init-from")
            && err.contains("layer 0 (conv2d)")
            && err.contains("(32, 1, 3, 3)")
            && err.contains("(6, 1, 5, 5)"),
        "{err}"
    );
    let err = attempt("lenet5", 12);
    assert!(
        err.contains("--freeze") && err.contains("no parameter to train"),
        "{err}"
    );
    assert!(!target.exists(), "a refused run wrote {}", target.display());

    // A source that is not a model at all.
    let config = RunConfig {
        init_from: Some(tmp.path().join("missing").display().to_string()),
        ..config("lenet5")
    };
    let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let err = Run::start(&target, config, arch, all)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("--init-from") && err.contains("missing"),
        "{err}"
    );
    assert!(!target.exists());
}

/// LeNet-5 (no BatchNorm, no dropout) with patience 2: trained normally for two epochs,
/// then at a rate too small to change any weight, so that the validation loss stays
/// exactly where it was.
#[test]
fn early_stopping_stops_patience_epochs_after_the_best_and_keeps_its_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let config = RunConfig {
        patience: Some(2),
        epochs: 10,
        ..config("lenet5")
    };
    let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let mut run = Run::start(&dir, config, arch, data()).unwrap();
    let mut checkpoints = Vec::new();
    let mut stopped_after = None;
    for epoch in 1..=10 {
        if epoch == 3 {
            run.schedule = LrSchedule::constant(1e-30).unwrap();
        }
        run.train_epoch(&mut |_| {}).unwrap();
        checkpoints.push(state_dict(&load_model(&dir).unwrap().0));
        if run.early_stop().unwrap().is_some() {
            stopped_after = Some(epoch);
            break;
        }
    }
    let metrics = read_metrics(&dir).unwrap();
    assert_eq!(metrics[2].val_loss, metrics[1].val_loss, "weights moved");
    let best = early_stop::best_epoch(&metrics, Monitor::ValLoss).unwrap();
    assert!(best.epoch <= 2);
    assert_eq!(stopped_after, Some(best.epoch + 2));
    let stop = run.early_stop().unwrap().unwrap();
    assert_eq!((stop.best.epoch, stop.epoch), (best.epoch, best.epoch + 2));

    // best.safetensors holds that epoch's checkpoint; model.safetensors the last.
    let (best_model, info) = load_weights(&dir, Weights::Best).unwrap();
    assert_eq!(info.epoch, best.epoch);
    let (_, last_info) = load_weights(&dir, Weights::Last).unwrap();
    assert_eq!(last_info.epoch, best.epoch + 2);
    for ((name, a), (_, b)) in checkpoints[best.epoch - 1]
        .iter()
        .zip(state_dict(&best_model))
    {
        assert_eq!(
            bits(a),
            bits(&b),
            "best.safetensors differs from epoch {} at {name}",
            best.epoch
        );
    }
}

#[test]
fn resuming_keeps_the_best_epoch_and_the_patience_count() {
    let tmp = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let config = RunConfig {
            patience: Some(3),
            ..config("lenet5")
        };
        let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
        Run::start(&tmp.path().join(name), config, arch, data()).unwrap()
    };
    let mut straight = start("straight");
    for _ in 0..3 {
        straight.train_epoch(&mut |_| {}).unwrap();
    }
    let mut resumed = start("resumed");
    resumed.train_epoch(&mut |_| {}).unwrap();
    resumed.train_epoch(&mut |_| {}).unwrap();
    // Stopped between the checkpoint of epoch 2 and its best file, when epoch 2 is the
    // best so far: the best file is rebuilt from the model on resume.
    let dir = tmp.path().join("resumed");
    let best_before = early_stop::best_epoch(&read_metrics(&dir).unwrap(), Monitor::ValLoss)
        .unwrap()
        .epoch;
    assert_eq!(best_before, 2, "the case needs an improving second epoch");
    std::fs::remove_file(dir.join("best.safetensors")).unwrap();
    drop(resumed);
    let mut resumed = Run::resume(&dir, data()).unwrap();
    let (_, info) = load_weights(&dir, Weights::Best).unwrap();
    assert_eq!(info.epoch, best_before);
    resumed.train_epoch(&mut |_| {}).unwrap();

    let (a, b) = (
        read_metrics(&tmp.path().join("straight")).unwrap(),
        read_metrics(&dir).unwrap(),
    );
    let values = |m: &[ocellus_train::run::EpochRecord]| -> Vec<(u32, u32)> {
        m.iter()
            .map(|r| (r.val_loss.to_bits(), r.val_accuracy.to_bits()))
            .collect()
    };
    assert_eq!(values(&a), values(&b));
    assert_eq!(
        straight.early_stop().unwrap(),
        resumed.early_stop().unwrap()
    );
    let best = early_stop::best_epoch(&a, Monitor::ValLoss).unwrap();
    let (x, ix) = load_weights(&tmp.path().join("straight"), Weights::Best).unwrap();
    let (y, iy) = load_weights(&dir, Weights::Best).unwrap();
    assert_eq!((ix.epoch, iy.epoch), (best.epoch, best.epoch));
    for ((name, p), (_, q)) in state_dict(&x).iter().zip(state_dict(&y)) {
        assert_eq!(bits(p), bits(&q), "best {name}");
    }
}

#[test]
fn patience_needs_a_validation_split() {
    let tmp = tempfile::tempdir().unwrap();
    let config = RunConfig {
        patience: Some(2),
        val_fraction: 0.0,
        ..config("lenet5")
    };
    let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let dir = tmp.path().join("run");
    let err = Run::start(&dir, config, arch, data())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("--patience") && err.contains("--val-fraction"),
        "{err}"
    );
    assert!(!dir.exists());
    assert!(Path::new(tmp.path()).read_dir().unwrap().next().is_none());
}
