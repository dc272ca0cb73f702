//! Training progress on the terminal: a live bar when stderr is a terminal, plain
//! per-epoch lines otherwise (logs, CI).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState, ProgressStyle};

use ocellus_train::run::EpochRecord;
use ocellus_train::trainer::BatchProgress;

/// Draws the progress of one run.
pub struct Progress {
    epochs: usize,
    /// The bar of the epoch being trained, made at its first batch. indicatif hides it
    /// when stderr is not a terminal (or `TERM` is `dumb`), so logs get only the
    /// per-epoch lines.
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(epochs: usize) -> Self {
        Progress { epochs, bar: None }
    }

    /// Moves the bar; it is redrawn at most ten times a second, and always at the last
    /// batch (so it stands full while the epoch is evaluated).
    pub fn batch(&mut self, p: &BatchProgress) {
        let epochs = self.epochs;
        let bar = self
            .bar
            .get_or_insert_with(|| epoch_bar(p.epoch, epochs, p.batches));
        bar.set_message(format!(
            "loss {:.4}  acc {:5.1}%  {} img/s",
            p.loss,
            100.0 * p.accuracy,
            thousands(p.images_per_second)
        ));
        bar.set_position(p.batch as u64);
        if p.batch == p.batches {
            bar.finish();
        }
    }

    /// Prints the epoch's summary line (replacing the bar on a terminal).
    pub fn epoch(&mut self, r: &EpochRecord, eval_name: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {}/{}  train loss {:.4} acc {:5.1}%  {eval_name} loss {:.4} acc {:5.1}%  lr {:.2e}  {:.1} s  {} img/s",
            r.epoch,
            self.epochs,
            r.train_loss,
            100.0 * r.train_accuracy,
            r.val_loss,
            100.0 * r.val_accuracy,
            r.lr,
            r.seconds,
            thousands(r.images_per_second)
        );
    }

    /// Leaves the bar where training stopped, so that an error printed next starts on a
    /// line of its own.
    pub fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

/// The bar of one epoch: `epoch 2/5 [=====>      ] 120/469  loss …  acc …  … img/s  ETA 0:42`.
fn epoch_bar(epoch: usize, epochs: usize, batches: usize) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:24}] {pos}/{len}  {msg}  ETA {time_left}",
    )
    .expect("the progress template is valid")
    .progress_chars("=> ")
    .with_key(
        "time_left",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&clock(state.eta().as_secs_f64()));
        },
    );
    ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr_with_hz(10))
        .with_style(style)
        .with_prefix(format!("{epoch}/{epochs}"))
        // A bar dropped by an error stays as it was, not filled to the end.
        .with_finish(ProgressFinish::Abandon)
}

/// `12345.6` → `12,346`.
pub fn thousands(v: f64) -> String {
    ocellus::text::grouped(v.max(0.0).round() as u64)
}

/// Seconds as `m:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(clock(75.0), "1:15");
    }
}
