//! The training loop: shuffled mini-batches → forward → cross-entropy → backward →
//! optimiser step, epoch after epoch; and evaluation with a confusion matrix.
//!
//! Every random choice of an epoch (the shuffle, augmentation, dropout masks) is drawn
//! from generators seeded by `(seed, epoch)`, so an epoch is a pure function of the
//! weights, the optimiser state, the seed and its number: training resumed from the
//! checkpoint of epoch `k` continues bit for bit as if it had never stopped (for the same
//! thread count).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ocellus::error::{Error, Result};
use ocellus::layers::{Layer, Mode, Randomness};
use ocellus::loss;
use ocellus::optim::{LrSchedule, Optimizer, ScheduleUnit};
use ocellus::rng::Rng;
use ocellus::tensor::Tensor;
use ocellus::LayerExt;
use ocellus_data::augment::Augmentation;
use ocellus_data::Dataset;

use crate::diagnostics::{DiagnosticsHook, Probe, StepInfo};

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
    let mut shuffle = epoch_rng(settings.seed, epoch, SHUFFLE);
    let mut augment = epoch_rng(settings.seed, epoch, AUGMENT);
    model.set_randomness(Randomness::Seed(
        epoch_rng(settings.seed, epoch, DROPOUT).next_u64(),
    ));

    let mut batches = data.shuffled_batches(settings.batch_size, &mut shuffle)?;
    let num_batches = batches.num_batches();
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    let mut batch = 0;
    while batches.next_into(&mut x, &mut labels) {
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
        let (loss, dlogits) = loss::cross_entropy(&logits, &labels, settings.label_smoothing)?;
        if !loss.is_finite() {
            return Err(Error::Diverged {
                epoch,
                batch: batch + 1,
                loss,
            });
        }
        match &mut probe {
            Some(probe) => {
                probe.backward_params(model, dlogits)?;
                probe.before_step(model);
            }
            None => model.backward_params(dlogits)?,
        }
        optimizer.step(model)?;
        if let (Some(hook), Some(probe)) = (diagnostics, probe) {
            let at = StepInfo {
                epoch,
                step,
                batch: batch + 1,
                images: labels.len(),
                loss,
                lr,
            };
            hook.deliver(&probe.finish(model, at)?)?;
        }

        batch += 1;
        loss_sum += loss as f64 * labels.len() as f64;
        correct += loss::correct_count(&logits, &labels)?;
        seen += labels.len();
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
        if settings
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
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

/// Evaluates `model` in [`Mode::Eval`] on every image of `data`.
pub fn evaluate(model: &mut dyn Layer, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
    let k = data.num_classes();
    let mut confusion = vec![vec![0; k]; k];
    let mut predictions = Vec::with_capacity(data.len());
    let mut loss_sum = 0.0f64;
    let mut batches = data.batches(batch_size)?;
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    while batches.next_into(&mut x, &mut labels) {
        let logits = model.forward_ref(&x, Mode::Eval)?;
        let (loss, _) = loss::cross_entropy(&logits, &labels, 0.0)?;
        loss_sum += loss as f64 * labels.len() as f64;
        for (truth, predicted) in labels.iter().zip(logits.argmax_rows()?) {
            confusion[*truth][predicted] += 1;
            predictions.push(predicted);
        }
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
