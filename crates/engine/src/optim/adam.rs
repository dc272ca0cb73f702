//! Adam and AdamW — `torch.optim.Adam` (L2 weight decay added to the gradient) and
//! `torch.optim.AdamW` (decoupled weight decay), step for step. One update serves both:
//! they differ only in where the weight decay enters. AMSGrad is not provided.

use crate::error::{Error, Result};
use crate::layers::Param;
use crate::optim::{expect_non_negative, Optimizer, OptimizerState, ParamBuffers};

/// Settings of [`Adam`]; [`AdamConfig::adam`] and [`AdamConfig::adamw`] give PyTorch's
/// defaults for each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (PyTorch's default 1e-3).
    pub lr: f32,
    /// (β1, β2): decay rates of the first and second moment estimates (default (0.9, 0.999)).
    /// Kept in f64, as PyTorch keeps them in Python floats: `1 − β2` must be 0.001, and
    /// `1 − 0.999_f32` is 0.00100005 (off by 5e-5 relative).
    pub betas: (f64, f64),
    /// Added to the denominator for numerical stability (default 1e-8).
    pub eps: f32,
    /// Weight decay wd: Adam's default 0, AdamW's 0.01.
    pub weight_decay: f32,
    /// `false`: Adam's L2 penalty, `g ← g + wd·p`. `true`: AdamW's decoupled decay,
    /// `p ← p·(1 − lr·wd)` before the update (PyTorch's `decoupled_weight_decay`).
    pub decoupled_weight_decay: bool,
}

impl AdamConfig {
    /// `torch.optim.Adam(lr=lr)`: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam(lr: f32) -> Self {
        AdamConfig {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }

    /// `torch.optim.AdamW(lr=lr)`: betas (0.9, 0.999), eps 1e-8, decoupled weight decay 0.01.
    pub fn adamw(lr: f32) -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled_weight_decay: true,
            ..AdamConfig::adam(lr)
        }
    }
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig::adam(1e-3)
    }
}

/// Adam or AdamW, as `torch.optim.Adam` / `torch.optim.AdamW` (without AMSGrad). For each
/// parameter p with gradient g, at step t = 1, 2, …, with m and v starting at zero:
///
/// ```text
/// g ← g + wd·p                        (Adam: L2 penalty)      or
/// p ← p·(1 − lr·wd)                   (AdamW: decoupled decay)
/// m ← β1·m + (1 − β1)·g               (first moment, `exp_avg`)
/// v ← β2·v + (1 − β2)·g²              (second moment, `exp_avg_sq`)
/// step_size = lr / (1 − β1^t)
/// denom     = √v / √(1 − β2^t) + eps
/// p ← p − step_size · m / denom
/// ```
///
/// The bias corrections divide (m and v start at zero, so they are too small early on);
/// at t = 1 the update is `lr·g/(|g| + eps)`, about `lr·sign(g)`.
pub struct Adam {
    config: AdamConfig,
    steps: u64,
    /// `exp_avg` m and `exp_avg_sq` v of each parameter, shaped like it.
    buffers: ParamBuffers,
}

impl Adam {
    /// An optimiser with these settings; errors name the setting PyTorch would reject.
    pub fn new(config: AdamConfig) -> Result<Self> {
        let kind = kind(&config);
        expect_non_negative(kind, "learning rate", config.lr)?;
        expect_non_negative(kind, "eps", config.eps)?;
        expect_non_negative(kind, "weight decay", config.weight_decay)?;
        for (i, beta) in [config.betas.0, config.betas.1].into_iter().enumerate() {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::config(
                    kind,
                    format!("beta{} must be in [0, 1), got {beta}", i + 1),
                ));
            }
        }
        Ok(Adam {
            config,
            steps: 0,
            buffers: ParamBuffers::new(kind, &["exp_avg", "exp_avg_sq"]),
        })
    }

    /// The settings (with the current learning rate).
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

fn kind(config: &AdamConfig) -> &'static str {
    if config.decoupled_weight_decay {
        "adamw"
    } else {
        "adam"
    }
}

impl Optimizer for Adam {
    fn kind(&self) -> &'static str {
        kind(&self.config)
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let name = if c.decoupled_weight_decay {
            "AdamW"
        } else {
            "Adam"
        };
        format!(
            "{name}(lr {}, betas ({}, {}), eps {:e}, weight decay {})",
            c.lr, c.betas.0, c.betas.1, c.eps, c.weight_decay
        )
    }

    fn lr(&self) -> f32 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f32) -> Result<()> {
        expect_non_negative(self.kind(), "learning rate", lr)?;
        self.config.lr = lr;
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn step_params(&mut self, params: &mut [(String, &mut Param)]) -> Result<()> {
        self.buffers.resolve(params, self.steps > 0)?;
        let AdamConfig {
            lr,
            betas: (beta1, beta2),
            eps,
            weight_decay: wd,
            decoupled_weight_decay,
        } = self.config;
        let t = (self.steps + 1) as f64;
        // Scalars are computed in f64 and rounded once to f32, as PyTorch does with its
        // Python-float hyper-parameters.
        let bias_correction1 = 1.0 - beta1.powf(t);
        let bias_correction2 = 1.0 - beta2.powf(t);
        let step_size = (lr as f64 / bias_correction1) as f32;
        let bias_correction2_sqrt = bias_correction2.sqrt() as f32;
        let (one_minus_beta1, one_minus_beta2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32);
        let beta2 = beta2 as f32;
        // Only one of the two decays is active, so the loop has no branch:
        // AdamW multiplies p by (1 − lr·wd) and adds 0·p to g; Adam multiplies by 1, adds wd·p.
        let (decay, l2) = if decoupled_weight_decay {
            ((1.0 - lr as f64 * wd as f64) as f32, 0.0)
        } else {
            (1.0, wd)
        };
        for (i, (_, param)) in params.iter_mut().enumerate() {
            let [m, v] = self.buffers.of_param(i) else {
                unreachable!("adam keeps two buffers per parameter")
            };
            let (p, g) = param.value_mut_and_grad();
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.data_mut()).zip(v.data_mut()) {
                *p *= decay;
                let g = g + l2 * *p;
                // m ← β1·m + (1 − β1)·g, written as PyTorch's lerp m + (1 − β1)·(g − m).
                *m = super::normal_or_zero(*m + one_minus_beta1 * (g - *m));
                *v = super::normal_or_zero(beta2 * *v + one_minus_beta2 * g * g);
                let denom = v.sqrt() / bias_correction2_sqrt + eps;
                *p -= step_size * (*m / denom);
            }
        }
        self.steps += 1;
        Ok(())
    }

    fn state(&self) -> OptimizerState {
        OptimizerState {
            steps: self.steps,
            tensors: self.buffers.export(),
        }
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        self.buffers.import(state.steps, state.tensors)?;
        self.steps = state.steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::assert_close;
    use crate::optim::testing::{model, set_grads, state_after_the_gradient_stops, values};

    #[test]
    fn moments_of_a_parameter_whose_gradient_stopped_go_to_zero_not_subnormal() {
        let mut adam = Adam::new(AdamConfig::adamw(1e-3)).unwrap();
        let state = state_after_the_gradient_stops(&mut adam);
        assert!(state.contains(&0.0), "m reached zero: {state:?}");
    }

    #[test]
    fn first_step_moves_each_parameter_by_lr_times_sign() {
        // t = 1: m = 0.1·g, v = 0.001·g², step_size = lr/0.1, denom = √(0.001·g²)/√0.001 + eps
        // = |g| + eps, so Δp = −(lr/0.1)·0.1·g/(|g| + eps) ≈ −lr·sign(g), whatever |g| is.
        // (ConvNetJS's Adam multiplied by the bias corrections instead of dividing: its first
        // step is not lr·sign(g), and this test fails for it.)
        for (g, want) in [([3.0, -1e-3], [0.99, -1.99]), ([-0.5, 40.0], [1.01, -2.01])] {
            let mut layer = model(1.0, -2.0);
            let mut adam = Adam::new(AdamConfig::adam(0.01)).unwrap();
            set_grads(&mut layer, g);
            adam.step(&mut layer).unwrap();
            // |Δp| differs from lr by lr·eps/|g| ≤ 0.01·1e-8/1e-3 = 1e-7.
            assert_close("value", &values(&layer), &want, 0.0, 3e-7);
        }
    }

    #[test]
    fn two_steps_by_hand() {
        // lr 0.1, β = (0.5, 0.75): a weight w = 1 with gradients 1, then 3 (eps = 1e-8 moves
        // the result by about 1e-9, below the tolerance).
        // t = 1: m = 0.5, v = 0.25, step_size = 0.1/0.5 = 0.2, denom = 0.5/√0.25 = 1,
        //        w = 1 − 0.2·0.5 = 0.9.
        // t = 2: m = 0.25 + 1.5 = 1.75, v = 0.1875 + 2.25 = 2.4375,
        //        step_size = 0.1/(1 − 0.25) = 0.13333…, denom = √2.4375/√(1 − 0.5625),
        //        w = 0.9 − 0.13333…·1.75/denom.
        let config = AdamConfig {
            betas: (0.5, 0.75),
            ..AdamConfig::adam(0.1)
        };
        let mut adam = Adam::new(config).unwrap();
        let mut layer = model(1.0, 0.0);
        set_grads(&mut layer, [1.0, 0.0]);
        adam.step(&mut layer).unwrap();
        assert_close("value", &values(&layer)[..1], &[0.9], 0.0, 1e-7);
        set_grads(&mut layer, [3.0, 0.0]);
        adam.step(&mut layer).unwrap();
        let denom = 2.4375f64.sqrt() / 0.4375f64.sqrt();
        assert_close(
            "value",
            &values(&layer)[..1],
            &[0.9 - 0.1 / 0.75 * 1.75 / denom],
            0.0,
            1e-6,
        );
        // The bias saw only zero gradients: m = v = 0, so it stays (0/(0 + eps) = 0).
        assert_eq!(values(&layer)[1], 0.0);
    }

    #[test]
    fn adamw_decays_the_weight_apart_from_the_gradient() {
        // lr 0.1, wd 0.5, w = 2, g = 1 at t = 1 (eps = 1e-8 moves the result by 1e-9).
        // AdamW: w ← 2·(1 − 0.1·0.5) = 1.9, then the Adam step −0.1·sign(1): w = 1.8.
        // Adam (L2): g ← 1 + 0.5·2 = 2, the step is still −0.1·sign(2): w = 1.9 — at t = 1
        //   Adam normalises the L2 term away, AdamW does not.
        let run = |config: AdamConfig| {
            let mut layer = model(2.0, 0.0);
            set_grads(&mut layer, [1.0, 0.0]);
            let mut opt = Adam::new(AdamConfig {
                weight_decay: 0.5,
                ..config
            })
            .unwrap();
            opt.step(&mut layer).unwrap();
            values(&layer)[0]
        };
        assert_close("value", &[run(AdamConfig::adamw(0.1))], &[1.8], 0.0, 1e-7);
        assert_close("value", &[run(AdamConfig::adam(0.1))], &[1.9], 0.0, 1e-7);
    }

    #[test]
    fn adam_l2_changes_the_moments_on_later_steps() {
        // lr 0.1, β = (0.5, 0.75), wd 0.5, Adam (L2); w = 2 with gradients 1, then 3.
        // t = 1: g = 1 + 0.5·2 = 2, m = 0.5·2 = 1, v = 0.25·4 = 1, step_size = 0.1/0.5 = 0.2,
        //        denom = √1/√0.25 = 2, w = 2 − 0.2·1/2 = 1.9.
        // t = 2: g = 3 + 0.95 = 3.95, m = 0.5 + 1.975 = 2.475, v = 0.75 + 0.25·15.6025
        //        = 4.650625, w = 1.9 − (0.1/0.75)·2.475/(√4.650625/√0.4375).
        let mut layer = model(2.0, 0.0);
        let mut adam = Adam::new(AdamConfig {
            betas: (0.5, 0.75),
            weight_decay: 0.5,
            ..AdamConfig::adam(0.1)
        })
        .unwrap();
        set_grads(&mut layer, [1.0, 0.0]);
        adam.step(&mut layer).unwrap();
        assert_close("value", &values(&layer)[..1], &[1.9], 0.0, 1e-7);
        set_grads(&mut layer, [3.0, 0.0]);
        adam.step(&mut layer).unwrap();
        let denom = 4.650625f64.sqrt() / 0.4375f64.sqrt();
        assert_close(
            "value",
            &values(&layer)[..1],
            &[1.9 - 0.1 / 0.75 * 2.475 / denom],
            0.0,
            1e-6,
        );
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let mut a = model(1.0, -2.0);
        let mut adam = Adam::new(AdamConfig::adamw(0.01)).unwrap();
        set_grads(&mut a, [0.5, 1.0]);
        adam.step(&mut a).unwrap();
        let state = adam.state();
        let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "weight.exp_avg",
                "weight.exp_avg_sq",
                "bias.exp_avg",
                "bias.exp_avg_sq"
            ]
        );
        // m = 0.1·g, v = 0.001·g².
        assert_close("value", state.tensors[0].1.data(), &[0.05], 0.0, 1e-9);
        assert_close("value", state.tensors[1].1.data(), &[0.00025], 0.0, 1e-10);

        let mut b = model(values(&a)[0], values(&a)[1]);
        let mut resumed = Adam::new(AdamConfig::adamw(0.01)).unwrap();
        resumed.load_state(state).unwrap();
        for layer in [&mut a, &mut b] {
            set_grads(layer, [-1.0, 0.5]);
        }
        adam.step(&mut a).unwrap();
        resumed.step(&mut b).unwrap();
        assert_eq!(values(&a), values(&b));
        assert_eq!(adam.state(), resumed.state());
    }

    #[test]
    fn rejects_bad_settings_and_incomplete_state() {
        for config in [
            AdamConfig {
                betas: (1.0, 0.999),
                ..AdamConfig::adam(0.1)
            },
            AdamConfig {
                eps: -1.0,
                ..AdamConfig::adam(0.1)
            },
            AdamConfig::adamw(f32::NAN),
        ] {
            assert!(Adam::new(config).is_err(), "{config:?}");
        }
        let mut adam = Adam::new(AdamConfig::adam(0.1)).unwrap();
        let missing = OptimizerState {
            steps: 3,
            tensors: vec![("weight.exp_avg".into(), crate::Tensor::zeros(&[1, 1]))],
        };
        let err = adam.load_state(missing).unwrap_err().to_string();
        assert!(err.contains("weight.exp_avg_sq"), "{err}");
        assert_eq!(adam.steps(), 0);
    }
}
