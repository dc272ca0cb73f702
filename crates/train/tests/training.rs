//! Training runs: resuming is exact, divergence keeps the last good checkpoint, and a run
//! directory never mixes epochs.

use std::path::Path;

use ocellus::checkpoint::state_dict;
use ocellus::optim::LrSchedule;
use ocellus::{zoo, Error};
use ocellus_data::{patterns, Splits};
use ocellus_train::run::{load_model, read_metrics, Run, RunConfig};

fn data() -> Splits {
    patterns::generate(40, 10, 7)
}

/// SmallCNN has BatchNorm (running statistics) and Dropout (random masks); augmentation
/// and a validation split add two more sources of randomness that resuming must replay.
fn config() -> RunConfig {
    RunConfig {
        model: "smallcnn".into(),
        epochs: 2,
        batch_size: 32,
        schedule: "cosine".into(),
        seed: 11,
        val_fraction: 0.1,
        augment_pad: 2,
        augment_flip: true,
        label_smoothing: 0.1,
        ..RunConfig::default()
    }
}

fn start(dir: &Path) -> Run {
    let arch = zoo::model("smallcnn", [1, 28, 28], 8).unwrap();
    Run::start(dir, config(), arch, data()).unwrap()
}

#[test]
fn two_epochs_equal_one_epoch_then_resume_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (straight, resumed) = (tmp.path().join("straight"), tmp.path().join("resumed"));
    let mut a = start(&straight);
    a.train_epoch(&mut |_| {}).unwrap();
    a.train_epoch(&mut |_| {}).unwrap();

    let mut b = start(&resumed);
    b.train_epoch(&mut |_| {}).unwrap();
    drop(b);
    let mut b = Run::resume(&resumed, data()).unwrap();
    assert_eq!(b.epochs_done(), 1);
    b.train_epoch(&mut |_| {}).unwrap();

    let (wa, wb) = (state_dict(&a.model), state_dict(&b.model));
    assert_eq!(wa.len(), wb.len());
    for ((name, ta), (_, tb)) in wa.iter().zip(&wb) {
        let same = ta
            .data()
            .iter()
            .zip(tb.data())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs after resuming");
    }
    // The optimiser's moments continue too, and so do the metrics.
    let sorted = |run: &Run| {
        let mut state = run.optimizer.state();
        state.tensors.sort_by(|x, y| x.0.cmp(&y.0));
        state
    };
    let (sa, sb) = (sorted(&a), sorted(&b));
    assert_eq!(sa.steps, sb.steps);
    assert_eq!(sa.tensors, sb.tensors);
    let (ma, mb) = (
        read_metrics(&straight).unwrap(),
        read_metrics(&resumed).unwrap(),
    );
    assert_eq!(ma.len(), 2);
    assert_eq!(mb.len(), 2);
    assert_eq!(ma[1].train_loss.to_bits(), mb[1].train_loss.to_bits());
    assert_eq!(ma[1].val_accuracy, mb[1].val_accuracy);

    // And the saved model is the trained one.
    let (loaded, info) = load_model(&resumed).unwrap();
    assert_eq!(info.epoch, 2);
    assert_eq!(state_dict(&loaded), wb);
}

#[test]
fn divergence_stops_training_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("diverge");
    let mut run = start(&dir);
    run.train_epoch(&mut |_| {}).unwrap();
    let saved = std::fs::read(dir.join("model.safetensors")).unwrap();
    run.schedule = LrSchedule::constant(1e30).unwrap();
    let err = run.train_epoch(&mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Diverged { epoch: 2, .. }), "{err}");
    assert!(
        err.to_string().contains("try a lower learning rate"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), saved);
    assert_eq!(read_metrics(&dir).unwrap().len(), 1);
    let (_, info) = load_model(&dir).unwrap();
    assert_eq!(info.epoch, 1);
}

#[test]
fn a_run_directory_is_never_overwritten_or_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mixed");
    let mut run = start(&dir);
    run.train_epoch(&mut |_| {}).unwrap();
    let arch = zoo::model("smallcnn", [1, 28, 28], 8).unwrap();
    let err = Run::start(&dir, config(), arch, data())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already holds a trained model"), "{err}");

    // A training state from another epoch than the model's is refused on resume.
    let training = dir.join("training.safetensors");
    let epoch_one = std::fs::read(&training).unwrap();
    run.train_epoch(&mut |_| {}).unwrap();
    drop(run);
    std::fs::write(&training, epoch_one).unwrap();
    let err = Run::resume(&dir, data()).err().unwrap().to_string();
    assert!(err.contains("the checkpoint is incomplete"), "{err}");

    // Different data than the run was trained on is refused too.
    let other = patterns::generate(40, 10, 8);
    std::fs::remove_dir_all(&dir).unwrap();
    let mut run = start(&dir);
    run.train_epoch(&mut |_| {}).unwrap();
    drop(run);
    let err = Run::resume(&dir, other).err().unwrap().to_string();
    assert!(
        err.contains("differs from the data this run was trained on"),
        "{err}"
    );
}
