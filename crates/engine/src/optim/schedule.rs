//! Learning-rate schedules: constant, step decay (PyTorch's `StepLR`), cosine annealing
//! (`CosineAnnealingLR`) and one-cycle (`OneCycleLR`). A schedule is a plain function of
//! a counter `t`; the training loop sets `optimizer.set_lr(schedule.lr_at(t))` before the
//! epoch or step `t` (counted from 0), where [`LrSchedule::unit`] says which `t` counts.

use std::f64::consts::PI;

use crate::error::{Error, Result};

/// What the counter `t` of a schedule counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleUnit {
    /// `t` is the epoch (set the rate once per epoch).
    Epoch,
    /// `t` is the optimiser step over the whole run (set the rate before every step).
    Step,
}

/// A learning-rate schedule. Build one with the constructors, which check the settings,
/// or build a variant directly and call [`LrSchedule::validate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The same rate throughout. Counted in epochs (the count is unused).
    Constant { lr: f32 },
    /// PyTorch's `StepLR`: `lr = base_lr · gamma^⌊t / step_size⌋`. Counted in epochs.
    StepLr {
        base_lr: f32,
        step_size: usize,
        gamma: f32,
    },
    /// PyTorch's `CosineAnnealingLR`, in its closed form
    /// `lr = eta_min + (base_lr − eta_min)·(1 + cos(π·t / t_max))/2`: `base_lr` at t = 0,
    /// the midpoint at t_max/2, `eta_min` at t_max. Counted in epochs. As in PyTorch, the
    /// formula keeps going after t_max (the rate rises again): set t_max to the run length.
    CosineAnnealing {
        base_lr: f32,
        t_max: usize,
        eta_min: f32,
    },
    /// PyTorch's `OneCycleLR`; see [`OneCycle`]. Counted in optimiser steps.
    OneCycle(OneCycle),
}

/// PyTorch's `OneCycleLR` with cosine annealing and two phases (`three_phase=False`):
/// the rate rises from `max_lr/div_factor` to `max_lr` at step `pct_start·total_steps − 1`,
/// then falls to `max_lr/(div_factor·final_div_factor)` at step `total_steps − 1`, each
/// phase along half a cosine. Counted in optimiser steps (`total_steps = epochs ·
/// batches per epoch`). Past the last step the rate stays at its final value (PyTorch
/// raises an error there). PyTorch's momentum cycling (`cycle_momentum`) is not included.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycle {
    /// The peak rate.
    pub max_lr: f32,
    /// Optimiser steps in the whole run.
    pub total_steps: usize,
    /// Fraction of the steps spent rising (default 0.3).
    pub pct_start: f32,
    /// Initial rate = max_lr / div_factor (default 25).
    pub div_factor: f32,
    /// Final rate = initial rate / final_div_factor (default 1e4).
    pub final_div_factor: f32,
}

impl OneCycle {
    /// PyTorch's defaults: pct_start 0.3, div_factor 25, final_div_factor 1e4.
    pub fn new(max_lr: f32, total_steps: usize) -> Self {
        OneCycle {
            max_lr,
            total_steps,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }

    /// The rate at step `t` (PyTorch's `OneCycleLR.get_lr` with `last_epoch = t`).
    fn lr_at(&self, t: usize) -> f64 {
        let max_lr = self.max_lr as f64;
        let initial_lr = max_lr / self.div_factor as f64;
        let min_lr = initial_lr / self.final_div_factor as f64;
        let last = self.total_steps.saturating_sub(1) as f64;
        let peak = self.pct_start as f64 * self.total_steps as f64 - 1.0;
        let t = (t as f64).min(last);
        // Fraction of a phase done; a phase of zero length is already complete.
        let pct = |done: f64, length: f64| if length > 0.0 { done / length } else { 1.0 };
        if t <= peak {
            annealing_cos(initial_lr, max_lr, pct(t, peak))
        } else {
            annealing_cos(max_lr, min_lr, pct(t - peak, last - peak))
        }
    }
}

/// Half a cosine from `start` (pct = 0) to `end` (pct = 1), PyTorch's `_annealing_cos`.
fn annealing_cos(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

impl LrSchedule {
    /// The same rate throughout.
    pub fn constant(lr: f32) -> Result<Self> {
        Self::checked(LrSchedule::Constant { lr })
    }

    /// PyTorch's `StepLR(step_size, gamma)` from `base_lr`, per epoch.
    pub fn step_lr(base_lr: f32, step_size: usize, gamma: f32) -> Result<Self> {
        Self::checked(LrSchedule::StepLr {
            base_lr,
            step_size,
            gamma,
        })
    }

    /// PyTorch's `CosineAnnealingLR(T_max, eta_min)` from `base_lr`, per epoch.
    pub fn cosine(base_lr: f32, t_max: usize, eta_min: f32) -> Result<Self> {
        Self::checked(LrSchedule::CosineAnnealing {
            base_lr,
            t_max,
            eta_min,
        })
    }

    /// PyTorch's `OneCycleLR`, per optimiser step; `OneCycle::new(max_lr, total_steps)`
    /// gives the defaults.
    pub fn one_cycle(config: OneCycle) -> Result<Self> {
        Self::checked(LrSchedule::OneCycle(config))
    }

    fn checked(self) -> Result<Self> {
        self.validate()?;
        Ok(self)
    }

    /// Checks the settings: rates finite and ≥ 0, counts ≥ 1, factors positive.
    pub fn validate(&self) -> Result<()> {
        let rate = |what: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    "lr schedule",
                    format!("{what} must be finite and ≥ 0, got {v}"),
                ))
            }
        };
        let positive = |what: &str, ok: bool, v: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::config(
                    "lr schedule",
                    format!("{what} must be positive, got {v}"),
                ))
            }
        };
        match *self {
            LrSchedule::Constant { lr } => rate("lr", lr),
            LrSchedule::StepLr {
                base_lr,
                step_size,
                gamma,
            } => {
                rate("base lr", base_lr)?;
                rate("gamma", gamma)?;
                positive("step size", step_size > 0, step_size.to_string())
            }
            LrSchedule::CosineAnnealing {
                base_lr,
                t_max,
                eta_min,
            } => {
                rate("base lr", base_lr)?;
                rate("eta_min", eta_min)?;
                positive("t_max", t_max > 0, t_max.to_string())
            }
            LrSchedule::OneCycle(c) => {
                rate("max lr", c.max_lr)?;
                positive("total steps", c.total_steps > 0, c.total_steps.to_string())?;
                if !(0.0..=1.0).contains(&c.pct_start) {
                    return Err(Error::config(
                        "lr schedule",
                        format!("pct_start must be in [0, 1], got {}", c.pct_start),
                    ));
                }
                for (what, v) in [
                    ("div_factor", c.div_factor),
                    ("final_div_factor", c.final_div_factor),
                ] {
                    positive(what, v.is_finite() && v > 0.0, v.to_string())?;
                }
                Ok(())
            }
        }
    }

    /// What `t` counts for this schedule: epochs for constant, step decay and cosine
    /// annealing (as PyTorch's examples call `scheduler.step()` once per epoch), optimiser
    /// steps for one-cycle.
    pub fn unit(&self) -> ScheduleUnit {
        match self {
            LrSchedule::OneCycle(_) => ScheduleUnit::Step,
            _ => ScheduleUnit::Epoch,
        }
    }

    /// The learning rate for epoch or step `t` (see [`LrSchedule::unit`]), counted from 0.
    pub fn lr_at(&self, t: usize) -> f32 {
        let lr = match *self {
            LrSchedule::Constant { lr } => lr as f64,
            LrSchedule::StepLr {
                base_lr,
                step_size,
                gamma,
            } => base_lr as f64 * (gamma as f64).powf((t / step_size.max(1)) as f64),
            LrSchedule::CosineAnnealing {
                base_lr,
                t_max,
                eta_min,
            } => {
                let (base, eta_min) = (base_lr as f64, eta_min as f64);
                let progress = t as f64 / t_max.max(1) as f64;
                eta_min + (base - eta_min) * (1.0 + (PI * progress).cos()) / 2.0
            }
            LrSchedule::OneCycle(c) => c.lr_at(t),
        };
        lr as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::assert_close;

    fn lrs(s: &LrSchedule, ts: &[usize]) -> Vec<f32> {
        ts.iter().map(|&t| s.lr_at(t)).collect()
    }

    #[test]
    fn step_lr_drops_at_the_boundaries() {
        // base 0.1, step 3, gamma 0.1: t 0..=2 → 0.1, 3..=5 → 0.01, 6 → 0.001.
        let s = LrSchedule::step_lr(0.1, 3, 0.1).unwrap();
        assert_eq!(s.unit(), ScheduleUnit::Epoch);
        assert_close(
            "lr",
            &lrs(&s, &[0, 2, 3, 5, 6]),
            &[0.1, 0.1, 0.01, 0.01, 0.001],
            1.5 * f32::EPSILON as f64,
            0.0,
        );
    }

    #[test]
    fn cosine_annealing_at_known_points() {
        // base 0.1, eta_min 0.001, T = 10: t = 0 → 0.1; t = 5 → the midpoint
        // (0.1 + 0.001)/2 = 0.0505; t = 10 → 0.001; t = 2 → 0.001 + 0.099·(1 + cos(π/5))/2
        // = 0.001 + 0.099·0.9045085 = 0.0905463.
        let s = LrSchedule::cosine(0.1, 10, 0.001).unwrap();
        let c = (1.0 + (PI / 5.0).cos()) / 2.0;
        assert_close(
            "lr",
            &lrs(&s, &[0, 5, 10, 2]),
            &[0.1, 0.0505, 0.001, 0.001 + 0.099 * c],
            1.5 * f32::EPSILON as f64,
            0.0,
        );
        // The closed form is symmetric about T: t = 12 gives the rate of t = 8.
        assert_eq!(s.lr_at(12), s.lr_at(8));
    }

    #[test]
    fn one_cycle_start_peak_and_end() {
        // max 0.1, 100 steps, PyTorch defaults: start 0.1/25 = 0.004; peak at step
        // 0.3·100 − 1 = 29; end (step 99) 0.004/1e4 = 4e-7.
        let s = LrSchedule::one_cycle(OneCycle::new(0.1, 100)).unwrap();
        assert_eq!(s.unit(), ScheduleUnit::Step);
        assert_close(
            "lr",
            &lrs(&s, &[0, 29, 99]),
            &[0.004, 0.1, 4e-7],
            1.5 * f32::EPSILON as f64,
            0.0,
        );
        // Rising phase, t = 14: pct = 14/29, lr = 0.1 + (0.004 − 0.1)/2·(1 + cos(π·14/29)).
        let up = 0.1 + (0.004 - 0.1) / 2.0 * (1.0 + (PI * 14.0 / 29.0).cos());
        // Down phase, t = 64: pct = (64 − 29)/(99 − 29) = 0.5 → (0.1 + 4e-7)/2.
        assert_close(
            "lr",
            &lrs(&s, &[14, 64]),
            &[up, (0.1 + 4e-7) / 2.0],
            1.5 * f32::EPSILON as f64,
            0.0,
        );
        // Past the end it stays at the final rate.
        assert_eq!(s.lr_at(150), s.lr_at(99));
        // Rising before the peak, falling after it.
        let all = lrs(&s, &(0..100).collect::<Vec<_>>());
        assert!(all[..30].windows(2).all(|w| w[0] < w[1]));
        assert!(all[29..].windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn one_cycle_with_a_degenerate_warm_up_stays_finite() {
        // pct_start·total − 1 = 0.5·2 − 1 = 0: the rising phase has length zero (PyTorch
        // divides 0 by 0 at step 0); here step 0 is the peak and step 1 the final rate.
        let s = LrSchedule::one_cycle(OneCycle {
            pct_start: 0.5,
            ..OneCycle::new(0.1, 2)
        })
        .unwrap();
        assert_close(
            "lr",
            &lrs(&s, &[0, 1]),
            &[0.1, 4e-7],
            1.5 * f32::EPSILON as f64,
            0.0,
        );
        // One step in all: the peak is at −0.7, so step 0 is the end of the falling phase.
        let s = LrSchedule::one_cycle(OneCycle::new(0.1, 1)).unwrap();
        assert_close(
            "lr",
            &lrs(&s, &[0]),
            &[4e-7],
            1.5 * f32::EPSILON as f64,
            0.0,
        );
    }

    #[test]
    fn constant_and_validation() {
        let s = LrSchedule::constant(0.05).unwrap();
        assert_eq!(s.lr_at(0), 0.05);
        assert_eq!(s.lr_at(1000), 0.05);
        assert!(LrSchedule::step_lr(0.1, 0, 0.1).is_err());
        assert!(LrSchedule::cosine(0.1, 0, 0.0).is_err());
        assert!(LrSchedule::cosine(-0.1, 10, 0.0).is_err());
        assert!(LrSchedule::one_cycle(OneCycle::new(0.1, 0)).is_err());
        assert!(LrSchedule::one_cycle(OneCycle {
            pct_start: 1.5,
            ..OneCycle::new(0.1, 10)
        })
        .is_err());
        assert!(LrSchedule::one_cycle(OneCycle {
            div_factor: 0.0,
            ..OneCycle::new(0.1, 10)
        })
        .is_err());
    }
}
