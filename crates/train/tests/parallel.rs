//! Data-parallel training with the ranks as threads (`LocalGroup`): two ranks sharing each
//! batch train to the weights one process reaches on the whole batch, with synchronised
//! batch normalisation too, and evaluation shared out gives the whole set's result. The
//! same code runs under MPI (`crates/cli/tests/mpi.rs`).

use std::sync::Arc;

use ocellus::arch::{Architecture, LayerSpec};
use ocellus::collective::{Collective, LocalGroup};
use ocellus::optim::{LrSchedule, Optimizer, Sgd, SgdConfig};
use ocellus::prelude::*;
use ocellus::zoo;
use ocellus_data::augment::Augmentation;
use ocellus_data::{patterns, Dataset};
use ocellus_train::parallel::DataParallel;
use ocellus_train::trainer::{evaluate, evaluate_shared, train_epoch, EpochSettings};

/// SGD's rate (momentum 0.9).
const LR: f32 = 0.02;

fn data(images: usize) -> Dataset {
    let mut splits = patterns::generate(images.div_ceil(8), 1, 5);
    splits.normalise().unwrap();
    let keep: Vec<usize> = (0..images).collect();
    splits.train.subset(&keep)
}

fn settings(parallel: Option<Arc<DataParallel>>) -> EpochSettings {
    EpochSettings {
        batch_size: 64,
        schedule: LrSchedule::constant(LR).unwrap(),
        augmentation: Augmentation::new(0, false),
        label_smoothing: 0.0,
        seed: 3,
        stop: None,
        diagnostics: None,
        parallel,
    }
}

fn sgd() -> Box<dyn Optimizer> {
    Box::new(Sgd::new(SgdConfig::new(LR)).unwrap())
}

/// Every parameter and buffer of a model, by name.
type State = Vec<(String, Vec<f32>)>;

/// The [`State`] of `model`.
fn state(model: &Sequential) -> State {
    ocellus::checkpoint::state_dict(model)
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect()
}

/// `epochs` epochs of `arch` on `data` (10 steps each for 640 images) on one process, and on `ranks` ranks (threads),
/// the states after each epoch: alone, and of every rank.
fn train_both(
    arch: &Architecture,
    data: &Dataset,
    ranks: usize,
    sync_batchnorm: bool,
    epochs: usize,
) -> (Vec<State>, Vec<Vec<State>>) {
    let train = |model: &mut Sequential, parallel: Option<Arc<DataParallel>>| {
        let mut optimizer = sgd();
        (1..=epochs)
            .map(|epoch| {
                train_epoch(
                    model,
                    optimizer.as_mut(),
                    data,
                    &settings(parallel.clone()),
                    epoch,
                    &mut |_| {},
                )
                .unwrap();
                state(model)
            })
            .collect::<Vec<_>>()
    };
    let mut alone = arch.build(&mut Rng::new(1)).unwrap();
    let reference = train(&mut alone, None);
    let group = LocalGroup::new(ranks);
    let per_rank = std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|member| {
                let train = &train;
                s.spawn(move || {
                    let group: Arc<dyn Collective> = Arc::new(member);
                    let mut model = arch.build(&mut Rng::new(1)).unwrap();
                    if sync_batchnorm {
                        model.sync_batch_statistics(Some(group.clone()));
                    }
                    train(&mut model, Some(Arc::new(DataParallel::new(group))))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (reference, per_rank)
}

/// The largest `|a − b|` of a tensor over its largest `|a|`: how far `b` is from `a`
/// relative to the tensor's scale, over all tensors; and where.
fn worst(a: &State, b: &State) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let diff = x
            .iter()
            .zip(y)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) as f64;
        let rel = if scale > 0.0 { diff / scale } else { diff };
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
    }
    worst
}

/// After every epoch, every rank within 1e-5 of the process alone, relative to each
/// tensor's largest value (a weight near zero carries the rounding of the larger values it
/// was summed from, so its own magnitude is no scale for it).
fn assert_same_steps(alone: &[State], ranks: &[Vec<State>]) {
    for (epoch, reference) in alone.iter().enumerate() {
        for (r, states) in ranks.iter().enumerate() {
            let (rel, at) = worst(reference, &states[epoch]);
            assert!(
                rel <= 1e-5,
                "epoch {}: rank {r} differs by {rel:e} in {at}",
                epoch + 1
            );
        }
    }
}

/// A zoo model without tipping points: tanh for its ReLUs, average pooling for its
/// max-pooling, no dropout (whose masks are drawn per rank). Another summation order
/// changes a weight by a rounding error, unless a ReLU or a max-pool near a tie tips the
/// other way: then training goes on from a visibly different point, whatever made the
/// order differ — one process on 1 or 2 threads as much as 2 ranks (docs/DISTRIBUTED.md
/// has the measurements). Tanh and average pooling carry a rounding difference on as a
/// rounding difference, so the comparison holds on any data.
fn smooth(mut arch: Architecture) -> Architecture {
    arch.layers
        .retain(|l| !matches!(l, LayerSpec::Dropout { .. }));
    for layer in &mut arch.layers {
        *layer = match std::mem::replace(layer, LayerSpec::Relu) {
            LayerSpec::Relu => LayerSpec::Tanh,
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            } => LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad: true,
            },
            other => other,
        };
    }
    arch
}

#[test]
fn lenet5_on_two_ranks_trains_to_the_weights_of_one_process() {
    let arch = smooth(zoo::model("lenet5", [1, 28, 28], 8).unwrap());
    let (alone, ranks) = train_both(&arch, &data(640), 2, false, 2);
    assert_same_steps(&alone, &ranks);
}

#[test]
fn smallcnn_with_synchronised_batchnorm_on_two_ranks_trains_to_the_state_of_one_process() {
    let arch = smooth(zoo::model("smallcnn", [1, 28, 28], 8).unwrap());
    let (alone, ranks) = train_both(&arch, &data(640), 2, true, 2);
    assert_same_steps(&alone, &ranks);
}

#[test]
fn evaluation_shared_by_three_ranks_is_the_whole_sets() {
    let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let set = data(100);
    let mut model = arch.build(&mut Rng::new(4)).unwrap();
    let whole = evaluate(&mut model, &set, 16).unwrap();
    let group = LocalGroup::new(3);
    let shared: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|member| {
                let (arch, set) = (&arch, &set);
                s.spawn(move || {
                    let mut model = arch.build(&mut Rng::new(4)).unwrap();
                    evaluate_shared(&mut model, set, 16, Some(&member)).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in shared {
        assert_eq!(e.confusion, whole.confusion);
        assert_eq!(e.predictions, whole.predictions);
        assert!(
            (e.loss - whole.loss).abs() <= 1e-6 * whole.loss.abs(),
            "{} {}",
            e.loss,
            whole.loss
        );
    }
}
