//! Training progress on the terminal: a live bar when stderr is a terminal, plain
//! per-epoch lines otherwise (logs, CI).

use std::io::{IsTerminal, Write};
use std::time::Instant;

use ocellus_train::run::EpochRecord;
use ocellus_train::trainer::BatchProgress;

/// Draws the progress of one run.
pub struct Progress {
    live: bool,
    epochs: usize,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(epochs: usize) -> Self {
        Progress {
            live: std::io::stderr().is_terminal(),
            epochs,
            last_draw: None,
        }
    }

    /// Redraws the bar (at most ten times a second, and always at the last batch).
    pub fn batch(&mut self, p: &BatchProgress) {
        if !self.live {
            return;
        }
        let now = Instant::now();
        let due = self
            .last_draw
            .is_none_or(|t| now.duration_since(t).as_millis() >= 100);
        if !due && p.batch != p.batches {
            return;
        }
        self.last_draw = Some(now);
        const WIDTH: usize = 24;
        let filled = WIDTH * p.batch / p.batches.max(1);
        let bar: String = (0..WIDTH)
            .map(|i| match i.cmp(&filled) {
                std::cmp::Ordering::Less => '=',
                std::cmp::Ordering::Equal => '>',
                std::cmp::Ordering::Greater => ' ',
            })
            .collect();
        let remaining = p.elapsed / p.batch as f64 * (p.batches - p.batch) as f64;
        eprint!(
            "\r\x1b[2Kepoch {}/{} [{bar}] {}/{}  loss {:.4}  acc {:5.1}%  {} img/s  ETA {}",
            p.epoch,
            self.epochs,
            p.batch,
            p.batches,
            p.loss,
            100.0 * p.accuracy,
            thousands(p.images_per_second),
            clock(remaining)
        );
        let _ = std::io::stderr().flush();
    }

    /// Prints the epoch's summary line (replacing the bar on a terminal).
    pub fn epoch(&mut self, r: &EpochRecord, eval_name: &str) {
        if self.live {
            eprint!("\r\x1b[2K");
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
        self.last_draw = None;
    }
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
