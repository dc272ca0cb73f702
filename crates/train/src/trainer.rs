//! The training loop: shuffled mini-batches → forward → cross-entropy → backward →
//! optimiser step, epoch after epoch; and evaluation with a confusion matrix.
//!
//! Every random choice of an epoch (the shuffle, augmentation, dropout masks) is drawn
//! from generators seeded by `(seed, epoch)`, so an epoch is a pure function of the
//! weights, the optimiser state, the seed and its number: training resumed from the
//! checkpoint of epoch `k` continues bit for bit as if it had never stopped (for the same
//! thread count).
//!
//! With [`EpochSettings::parallel`] set, this process is one rank of a data-parallel run
//! ([`crate::parallel`]): it trains on its shard of every batch, the gradients are summed
//! over the ranks between backward and the optimiser step, and augmentation and dropout
//! draw from generators seeded by `(seed, epoch, rank)`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ocellus::collective::Collective;
use ocellus::error::{Error, Result};
use ocellus::layers::{Layer, Mode, Randomness};
use ocellus::loss::{self, CrossEntropy};
use ocellus::network::Replicas;
use ocellus::optim::{LrSchedule, Optimizer, ScheduleUnit};
use ocellus::rng::Rng;
use ocellus::tensor::Tensor;
use ocellus::LayerExt;
use ocellus_data::augment::Augmentation;
use ocellus_data::{shard, Dataset};

use crate::diagnostics::{DiagnosticsHook, Probe, StepInfo};
use crate::parallel::DataParallel;

/// How one epoch is run.
#[derive(Clone, Debug)]
pub struct EpochSettings {
    pub batch_size: usize,
    /// Learning rate as a function of the epoch (or of the step, for one-cycle).
    pub schedule: LrSchedule,
    pub augmentation: Augmentation,
    /// Label smoothing of the cross-entropy (0 = none).
    pub label_smoothing: f32,
    pub seed: u64,
    /// When set (from another thread, or a signal handler), the epoch stops after the
    /// step under way with [`Error::Interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
    /// Gradient-flow diagnostics every so many steps, handed to an observer (see
    /// [`crate::diagnostics`]); they leave the training itself unchanged.
    pub diagnostics: Option<DiagnosticsHook>,
    /// This process's rank in a data-parallel run; `None` trains alone.
    pub parallel: Option<Arc<DataParallel>>,
}

/// Where an epoch stands, reported after every batch.
#[derive(Clone, Debug)]
pub struct BatchProgress {
    /// Counted from 1.
    pub epoch: usize,
    /// Batches done in this epoch, counted from 1.
    pub batch: usize,
    pub batches: usize,
    /// Mean loss and accuracy over the batches done so far in this epoch.
    pub loss: f32,
    pub accuracy: f32,
    pub images_per_second: f64,
    /// Seconds since the epoch started.
    pub elapsed: f64,
}

/// The outcome of one training epoch.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub loss: f32,
    pub accuracy: f32,
    pub images: usize,
    pub seconds: f64,
    /// The learning rate at the epoch's last step.
    pub lr: f32,
}

/// The generator for one purpose (`stream`) in one epoch of a run seeded by `seed`.
fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> Rng {
    Rng::new(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

const SHUFFLE: u64 = 1;
const AUGMENT: u64 = 2;
const DROPOUT: u64 = 3;

/// The stream of `stream` for rank `rank`: rank 0 (and a process training alone) keeps
/// the stream itself, so a run of one rank draws what a run without ranks draws.
fn rank_stream(stream: u64, rank: usize) -> u64 {
    stream ^ ((rank as u64) << 32)
}

/// Trains `model` for one epoch (`epoch` counted from 1) over `data`, calling `progress`
/// after every batch. A loss that is not finite stops the epoch with
/// [`Error::Diverged`] before the step that would spread it into the weights.
pub fn train_epoch(
    model: &mut dyn Layer,
    optimizer: &mut dyn Optimizer,
    data: &Dataset,
    settings: &EpochSettings,
    epoch: usize,
    progress: &mut dyn FnMut(&BatchProgress),
) -> Result<EpochStats> {
    assert!(epoch >= 1, "epochs are counted from 1");
    let start = Instant::now();
    let parallel = settings.parallel.as_deref();
    let (rank, ranks) = parallel.map_or((0, 1), |p| (p.rank(), p.size()));
    // The shuffle, and so every global batch, is the same on every rank.
    let mut shuffle = epoch_rng(settings.seed, epoch, SHUFFLE);
    let mut augment = epoch_rng(settings.seed, epoch, rank_stream(AUGMENT, rank));
    model.set_randomness(Randomness::Seed(
        epoch_rng(settings.seed, epoch, rank_stream(DROPOUT, rank)).next_u64(),
    ));

    let mut batches = data.shuffled_batches(settings.batch_size, &mut shuffle)?;
    let num_batches = batches.num_batches();
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    let mut batch = 0;
    while let Some(global) = batches.next_shard_into(rank, ranks, &mut x, &mut labels) {
        if global < ranks {
            // A last batch smaller than the number of ranks would leave a rank without
            // images; every rank skips it alike.
            break;
        }
        let lr = match settings.schedule.unit() {
            ScheduleUnit::Epoch => settings.schedule.lr_at(epoch - 1),
            ScheduleUnit::Step => settings.schedule.lr_at((epoch - 1) * num_batches + batch),
        };
        optimizer.set_lr(lr)?;
        settings.augmentation.apply(&mut x, &mut augment)?;

        let step = (epoch - 1) * num_batches + batch + 1;
        let diagnostics = settings.diagnostics.as_ref().filter(|d| d.is_due(step));
        let mut probe = diagnostics.map(|_| Probe::new());

        model.zero_grad();
        let logits = match &mut probe {
            Some(probe) => probe.forward(model, &x)?,
            None => model.forward_ref(&x, Mode::Train)?,
        };
        // This shard's share of the whole batch's mean loss: the ranks' gradients add up
        // to the gradient of the mean (a share of 1 alone).
        let share = labels.len() as f32 / global as f32;
        let (loss, dlogits) = CrossEntropy::new()
            .label_smoothing(settings.label_smoothing)
            .loss_with_upstream(&logits, &labels, &Tensor::full(&[], share))?;
        let mut loss = loss.data()[0];
        let mut batch_correct = loss::correct_count(&logits, &labels)?;
        let mut stop = settings
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed));
        match &mut probe {
            Some(probe) => probe.backward_params(model, dlogits)?,
            None => model.backward_params(dlogits)?,
        }
        if let Some(parallel) = parallel {
            // Gradients, the batch's loss, its correct count and whether any rank is asked
            // to stop, summed over the ranks in one go.
            let mut stats = [loss * share, batch_correct as f32, stop as u8 as f32];
            parallel.all_reduce_gradients(model, &mut stats)?;
            loss = stats[0];
            batch_correct = stats[1] as usize;
            stop = stats[2] > 0.0;
        }
        if !loss.is_finite() {
            return Err(Error::Diverged {
                epoch,
                batch: batch + 1,
                loss,
            });
        }
        if let Some(probe) = &mut probe {
            probe.before_step(model);
        }
        optimizer.step(model)?;
        if let Some(parallel) = parallel {
            parallel.broadcast_buffers(model)?;
        }
        if let (Some(hook), Some(probe)) = (diagnostics, probe) {
            let at = StepInfo {
                epoch,
                step,
                batch: batch + 1,
                images: global,
                loss,
                lr,
            };
            hook.deliver(&probe.finish(model, at)?)?;
        }

        batch += 1;
        loss_sum += loss as f64 * global as f64;
        correct += batch_correct;
        seen += global;
        let elapsed = start.elapsed().as_secs_f64();
        progress(&BatchProgress {
            epoch,
            batch,
            batches: num_batches,
            loss: (loss_sum / seen as f64) as f32,
            accuracy: correct as f32 / seen as f32,
            images_per_second: seen as f64 / elapsed.max(1e-9),
            elapsed,
        });
        if stop {
            return Err(Error::Interrupted {
                epoch,
                batch,
                batches: num_batches,
            });
        }
    }
    Ok(EpochStats {
        loss: (loss_sum / seen.max(1) as f64) as f32,
        accuracy: correct as f32 / seen.max(1) as f32,
        images: seen,
        seconds: start.elapsed().as_secs_f64(),
        lr: optimizer.lr(),
    })
}

/// Loss, accuracy and confusion matrix of a model on a dataset.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f32,
    pub accuracy: f32,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// The predicted class of every image, in dataset order.
    pub predictions: Vec<usize>,
}

/// Evaluates `model` in [`Mode::Eval`] on every image of `data`, each batch shared by the
/// threads ([`Replicas`]).
pub fn evaluate(model: &mut dyn Layer, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
    evaluate_shared(model, data, batch_size, None)
}

/// [`evaluate`] shared by the ranks of `group`: each evaluates its shard of `data`
/// ([`ocellus_data::shard`]) and every rank gets the result over the whole set.
pub fn evaluate_shared(
    model: &mut dyn Layer,
    data: &Dataset,
    batch_size: usize,
    group: Option<&dyn Collective>,
) -> Result<Evaluation> {
    let k = data.num_classes();
    let mut confusion = vec![vec![0; k]; k];
    let mut predictions = Vec::with_capacity(data.len());
    let mut loss_sum = 0.0f64;
    let (rank, ranks) = group.map_or((0, 1), |g| (g.rank(), g.size()));
    let mine = shard(data.len(), rank, ranks);
    let mut batches = data.batches_in(mine.clone(), batch_size)?;
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    let mut replicas = Replicas::new();
    while batches.next_into(&mut x, &mut labels) {
        let logits = replicas.forward(model, &x)?;
        let (loss, _) = loss::cross_entropy(&logits, &labels, 0.0)?;
        loss_sum += loss as f64 * labels.len() as f64;
        for (truth, predicted) in labels.iter().zip(logits.argmax_rows()?) {
            confusion[*truth][predicted] += 1;
            predictions.push(predicted);
        }
    }
    if let Some(group) = group {
        // The confusion counts, the loss and every prediction at its place (zero where
        // another rank evaluated), summed over the ranks; counts stay exact in f64.
        let mut all = vec![0.0f64; k * k + 1 + data.len()];
        for (i, row) in confusion.iter().enumerate() {
            for (j, count) in row.iter().enumerate() {
                all[i * k + j] = *count as f64;
            }
        }
        all[k * k] = loss_sum;
        for (at, p) in mine.zip(&predictions) {
            all[k * k + 1 + at] = *p as f64;
        }
        group.sum_f64(&mut all)?;
        for (i, row) in confusion.iter_mut().enumerate() {
            for (j, count) in row.iter_mut().enumerate() {
                *count = all[i * k + j] as usize;
            }
        }
        loss_sum = all[k * k];
        predictions = all[k * k + 1..].iter().map(|p| *p as usize).collect();
    }
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let n = data.len().max(1);
    Ok(Evaluation {
        loss: (loss_sum / n as f64) as f32,
        accuracy: correct as f32 / n as f32,
        confusion,
        predictions,
    })
}
