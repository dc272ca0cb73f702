//! Early stopping: the best epoch by the validation set, and when to stop because it has
//! not improved for `patience` epochs. Everything is decided from the epochs' records
//! (`metrics.jsonl`), so a resumed run finds the same best epoch and the same count of
//! epochs without improvement as a run that never stopped.

use ocellus::error::{Error, Result};

use crate::run::EpochRecord;

/// The quantity that judges an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    /// The validation loss; lower is better.
    ValLoss,
    /// The validation accuracy; higher is better.
    ValAccuracy,
}

impl Monitor {
    /// `val-loss` or `val-accuracy`, as `--monitor` takes them.
    pub fn parse(text: &str) -> Result<Monitor> {
        match text {
            "val-loss" => Ok(Monitor::ValLoss),
            "val-accuracy" => Ok(Monitor::ValAccuracy),
            other => Err(Error::config(
                "--monitor",
                format!("unknown quantity '{other}'; choose val-loss or val-accuracy"),
            )),
        }
    }

    /// The name [`Monitor::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val-loss",
            Monitor::ValAccuracy => "val-accuracy",
        }
    }

    /// `validation loss`, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Monitor::ValLoss => "validation loss",
            Monitor::ValAccuracy => "validation accuracy",
        }
    }

    /// The quantity in one epoch's record.
    pub fn value(self, record: &EpochRecord) -> f32 {
        match self {
            Monitor::ValLoss => record.val_loss,
            Monitor::ValAccuracy => record.val_accuracy,
        }
    }

    /// True when `value` is strictly better than `best` (a NaN never is).
    pub fn improves(self, value: f32, best: f32) -> bool {
        match self {
            Monitor::ValLoss => value < best,
            Monitor::ValAccuracy => value > best,
        }
    }
}

/// The best epoch and its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Best {
    pub epoch: usize,
    pub value: f32,
}

/// Why training stopped early.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStop {
    pub monitor: Monitor,
    pub best: Best,
    /// The last epoch trained.
    pub epoch: usize,
    pub patience: usize,
}

impl std::fmt::Display for EarlyStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped early after epoch {}: the {} has not improved for {} epochs since epoch {} ({:.4})",
            self.epoch,
            self.monitor.describe(),
            self.epoch - self.best.epoch,
            self.best.epoch,
            self.best.value
        )
    }
}

/// The first epoch with the best value of `monitor` (a later epoch must be strictly
/// better to replace it; epochs whose value is not a number never count).
pub fn best_epoch(records: &[EpochRecord], monitor: Monitor) -> Option<Best> {
    let mut best: Option<Best> = None;
    for record in records {
        let value = monitor.value(record);
        if value.is_nan() {
            continue;
        }
        if best.is_none_or(|b| monitor.improves(value, b.value)) {
            best = Some(Best {
                epoch: record.epoch,
                value,
            });
        }
    }
    best
}

/// `Some` when the last record is `patience` or more epochs after the best one.
pub fn check(records: &[EpochRecord], monitor: Monitor, patience: usize) -> Option<EarlyStop> {
    let last = records.last()?.epoch;
    let best = best_epoch(records, monitor)?;
    (last - best.epoch >= patience).then_some(EarlyStop {
        monitor,
        best,
        epoch: last,
        patience,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(val_loss: &[f32], val_accuracy: &[f32]) -> Vec<EpochRecord> {
        val_loss
            .iter()
            .zip(val_accuracy)
            .enumerate()
            .map(|(i, (&loss, &accuracy))| EpochRecord {
                epoch: i + 1,
                train_loss: 1.0,
                train_accuracy: 0.5,
                val_loss: loss,
                val_accuracy: accuracy,
                lr: 1e-3,
                seconds: 1.0,
                images_per_second: 1.0,
            })
            .collect()
    }

    /// The epoch at which a run fed this curve one epoch at a time would stop.
    fn stop_epoch(records: &[EpochRecord], monitor: Monitor, patience: usize) -> Option<usize> {
        (1..=records.len()).find(|&n| check(&records[..n], monitor, patience).is_some())
    }

    #[test]
    fn stops_patience_epochs_after_the_best_validation_loss() {
        // Best at epoch 4 (0.50) until epoch 9; epoch 7 equals it, which is no
        // improvement.
        let loss = [0.9, 0.7, 0.6, 0.5, 0.55, 0.55, 0.5, 0.52, 0.45];
        let records = curve(&loss, &[0.0; 9]);
        let best = best_epoch(&records[..8], Monitor::ValLoss).unwrap();
        assert_eq!(
            best,
            Best {
                epoch: 4,
                value: 0.5
            }
        );
        assert_eq!(best_epoch(&records, Monitor::ValLoss).unwrap().epoch, 9);
        assert_eq!(stop_epoch(&records, Monitor::ValLoss, 2), Some(6));
        assert_eq!(stop_epoch(&records, Monitor::ValLoss, 3), Some(7));
        assert_eq!(stop_epoch(&records, Monitor::ValLoss, 4), Some(8));
        // Patience 5: epoch 9 improves before it runs out.
        assert_eq!(stop_epoch(&records, Monitor::ValLoss, 5), None);
        let stop = check(&records[..6], Monitor::ValLoss, 2).unwrap();
        assert_eq!((stop.epoch, stop.best.epoch), (6, 4));
        assert!(stop.to_string().contains("since epoch 4"), "{stop}");
    }

    #[test]
    fn accuracy_counts_higher_as_better_and_ignores_nan() {
        let accuracy = [0.5, 0.7, f32::NAN, 0.69, 0.7, 0.71, 0.6, 0.6];
        let records = curve(&[1.0; 8], &accuracy);
        assert_eq!(
            best_epoch(&records, Monitor::ValAccuracy).map(|b| b.epoch),
            Some(6)
        );
        // Epoch 5 only equals epoch 2; the not-a-number epoch 3 counts as no improvement.
        assert_eq!(stop_epoch(&records, Monitor::ValAccuracy, 2), Some(4));
        assert_eq!(stop_epoch(&records, Monitor::ValAccuracy, 3), Some(5));
        assert_eq!(stop_epoch(&records, Monitor::ValAccuracy, 4), None);
        // By loss (constant) the first epoch stays best.
        assert_eq!(stop_epoch(&records, Monitor::ValLoss, 3), Some(4));
    }

    #[test]
    fn monitors_are_named_as_the_flag_takes_them() {
        for m in [Monitor::ValLoss, Monitor::ValAccuracy] {
            assert_eq!(Monitor::parse(m.name()).unwrap(), m);
        }
        let err = Monitor::parse("loss").unwrap_err().to_string();
        assert!(
            err.contains("--monitor") && err.contains("val-accuracy"),
            "{err}"
        );
    }
}
