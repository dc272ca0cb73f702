//! Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
//! L2 weight decay — `torch.optim.SGD`, step for step.

use crate::error::{Error, Result};
use crate::layers::Param;
use crate::optim::{expect_non_negative, Optimizer, OptimizerState, ParamBuffers};

/// Settings of [`Sgd`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (PyTorch's default 1e-3).
    pub lr: f32,
    /// Momentum factor μ (default 0: plain SGD).
    pub momentum: f32,
    /// Dampening d of the momentum (default 0).
    pub dampening: f32,
    /// L2 penalty wd added to the gradient (default 0).
    pub weight_decay: f32,
    /// Nesterov momentum (default off); needs μ > 0 and d = 0.
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`; change other fields with
    /// `SgdConfig { momentum: 0.9, ..SgdConfig::new(0.1) }`.
    pub fn new(lr: f32) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig::new(1e-3)
    }
}

/// SGD, as `torch.optim.SGD`. For each parameter p with gradient g, at step t:
///
/// ```text
/// g ← g + wd·p                          (weight decay)
/// b ← g                 at t = 1        (momentum buffer, if μ ≠ 0)
/// b ← μ·b + (1 − d)·g   at t > 1
/// g ← g + μ·b  if Nesterov, else g ← b
/// p ← p − lr·g
/// ```
pub struct Sgd {
    config: SgdConfig,
    steps: u64,
    /// `momentum_buffer` b of each parameter, shaped like it (none without momentum).
    buffers: ParamBuffers,
}

impl Sgd {
    /// An optimiser with these settings; errors name the setting PyTorch would reject.
    pub fn new(config: SgdConfig) -> Result<Self> {
        const KIND: &str = "sgd";
        expect_non_negative(KIND, "learning rate", config.lr)?;
        expect_non_negative(KIND, "momentum", config.momentum)?;
        expect_non_negative(KIND, "weight decay", config.weight_decay)?;
        if !config.dampening.is_finite() {
            return Err(Error::config(
                KIND,
                format!("dampening must be finite, got {}", config.dampening),
            ));
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::config(
                KIND,
                "Nesterov momentum requires a momentum > 0 and zero dampening",
            ));
        }
        let buffer_names: &'static [&'static str] = if config.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        };
        Ok(Sgd {
            config,
            steps: 0,
            buffers: ParamBuffers::new(KIND, buffer_names),
        })
    }

    /// The settings (with the current learning rate).
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

impl Optimizer for Sgd {
    fn kind(&self) -> &'static str {
        "sgd"
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!("SGD(lr {}", c.lr);
        if c.momentum != 0.0 {
            s += &format!(", momentum {}", c.momentum);
            if c.dampening != 0.0 {
                s += &format!(", dampening {}", c.dampening);
            }
            if c.nesterov {
                s += ", Nesterov";
            }
        }
        if c.weight_decay != 0.0 {
            s += &format!(", weight decay {}", c.weight_decay);
        }
        s + ")"
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
        let SgdConfig {
            lr,
            momentum: mu,
            dampening,
            weight_decay: wd,
            nesterov,
        } = self.config;
        let first = self.steps == 0;
        for (i, (_, param)) in params.iter_mut().enumerate() {
            let (p, g) = param.value_mut_and_grad();
            if mu == 0.0 {
                for (p, &g) in p.iter_mut().zip(g) {
                    *p -= lr * (g + wd * *p);
                }
                continue;
            }
            let b = self.buffers.of_param(i)[0].data_mut();
            for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
                let g = g + wd * *p;
                // PyTorch starts the buffer at the first gradient itself, undampened.
                *b = if first {
                    g
                } else {
                    super::normal_or_zero(mu * *b + (1.0 - dampening) * g)
                };
                let update = if nesterov { g + mu * *b } else { *b };
                *p -= lr * update;
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

    /// Three steps on parameters [w, b] = [1, −2] with gradients [0.5, 1], [−1, 0.5], [2, −1].
    fn run(config: SgdConfig) -> Vec<[f32; 2]> {
        let mut layer = model(1.0, -2.0);
        let mut sgd = Sgd::new(config).unwrap();
        let mut out = Vec::new();
        for g in [[0.5, 1.0], [-1.0, 0.5], [2.0, -1.0]] {
            set_grads(&mut layer, g);
            sgd.step(&mut layer).unwrap();
            out.push(values(&layer));
        }
        assert_eq!(sgd.steps(), 3);
        out
    }

    fn check(got: &[[f32; 2]], want: &[[f64; 2]]) {
        for (step, (g, w)) in got.iter().zip(want).enumerate() {
            println!("step {}: got {g:?}, want {w:?}", step + 1);
            assert_close("value", g, w, 0.0, 1e-6);
        }
    }

    #[test]
    fn plain_sgd_by_hand() {
        // lr 0.1: p ← p − 0.1·g.
        // w: 1 − 0.05 = 0.95; 0.95 + 0.1 = 1.05; 1.05 − 0.2 = 0.85.
        // b: −2 − 0.1 = −2.1; −2.1 − 0.05 = −2.15; −2.15 + 0.1 = −2.05.
        let got = run(SgdConfig::new(0.1));
        check(&got, &[[0.95, -2.1], [1.05, -2.15], [0.85, -2.05]]);
    }

    #[test]
    fn momentum_of_a_parameter_whose_gradient_stopped_goes_to_zero_not_subnormal() {
        let mut sgd = Sgd::new(SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        })
        .unwrap();
        let state = state_after_the_gradient_stops(&mut sgd);
        assert!(state.iter().all(|&b| b == 0.0), "{state:?}");
    }

    #[test]
    fn momentum_by_hand() {
        // lr 0.1, μ 0.9.
        // w: b₁ = 0.5, w = 1 − 0.05 = 0.95;
        //    b₂ = 0.45 − 1 = −0.55, w = 0.95 + 0.055 = 1.005;
        //    b₃ = −0.495 + 2 = 1.505, w = 1.005 − 0.1505 = 0.8545.
        // b: b₁ = 1, b = −2.1; b₂ = 0.9 + 0.5 = 1.4, b = −2.24;
        //    b₃ = 1.26 − 1 = 0.26, b = −2.266.
        let got = run(SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        });
        check(&got, &[[0.95, -2.1], [1.005, -2.24], [0.8545, -2.266]]);
    }

    #[test]
    fn nesterov_by_hand() {
        // lr 0.1, μ 0.9, Nesterov: update = g + 0.9·b.
        // w: b₁ = 0.5, update 0.95, w = 0.905;
        //    b₂ = −0.55, update −1 − 0.495 = −1.495, w = 1.0545;
        //    b₃ = 1.505, update 2 + 1.3545 = 3.3545, w = 0.71905.
        // b: b₁ = 1, update 1.9, b = −2.19;
        //    b₂ = 1.4, update 0.5 + 1.26 = 1.76, b = −2.366;
        //    b₃ = 0.26, update −1 + 0.234 = −0.766, b = −2.2894.
        let got = run(SgdConfig {
            momentum: 0.9,
            nesterov: true,
            ..SgdConfig::new(0.1)
        });
        check(
            &got,
            &[[0.905, -2.19], [1.0545, -2.366], [0.71905, -2.2894]],
        );
    }

    #[test]
    fn dampening_and_weight_decay_by_hand() {
        // lr 0.1, μ 0.5, d 0.5, wd 0.1: g ← g + 0.1·p; b₁ = g (no dampening at the first
        // step, as PyTorch), then b ← 0.5·b + 0.5·g.
        // w: g = 0.5 + 0.1 = 0.6, b = 0.6, w = 0.94;
        //    g = −1 + 0.094 = −0.906, b = 0.3 − 0.453 = −0.153, w = 0.9553;
        //    g = 2 + 0.09553 = 2.09553, b = −0.0765 + 1.047765 = 0.971265, w = 0.8581735.
        // b: g = 1 − 0.2 = 0.8, b = 0.8, p = −2.08;
        //    g = 0.5 − 0.208 = 0.292, b = 0.4 + 0.146 = 0.546, p = −2.1346;
        //    g = −1 − 0.21346 = −1.21346, b = 0.273 − 0.60673 = −0.33373, p = −2.101227.
        let got = run(SgdConfig {
            momentum: 0.5,
            dampening: 0.5,
            weight_decay: 0.1,
            ..SgdConfig::new(0.1)
        });
        check(
            &got,
            &[[0.94, -2.08], [0.9553, -2.1346], [0.8581735, -2.101227]],
        );
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let config = SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        };
        let mut a = model(1.0, -2.0);
        let mut sgd = Sgd::new(config).unwrap();
        set_grads(&mut a, [0.5, 1.0]);
        sgd.step(&mut a).unwrap();
        let state = sgd.state();
        let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["weight.momentum_buffer", "bias.momentum_buffer"]);
        assert_eq!(state.steps, 1);

        let mut b = model(values(&a)[0], values(&a)[1]);
        let mut resumed = Sgd::new(config).unwrap();
        resumed.load_state(state).unwrap();
        for layer in [&mut a, &mut b] {
            set_grads(layer, [-1.0, 0.5]);
        }
        sgd.step(&mut a).unwrap();
        resumed.step(&mut b).unwrap();
        assert_eq!(values(&a), values(&b));
        assert_eq!(sgd.state(), resumed.state());
    }

    #[test]
    fn rejects_bad_settings_and_foreign_state() {
        assert!(Sgd::new(SgdConfig::new(-0.1)).is_err());
        assert!(Sgd::new(SgdConfig {
            nesterov: true,
            ..SgdConfig::new(0.1)
        })
        .is_err());
        assert!(Sgd::new(SgdConfig {
            momentum: 0.9,
            dampening: 0.1,
            nesterov: true,
            ..SgdConfig::new(0.1)
        })
        .is_err());

        let config = SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        };
        let mut sgd = Sgd::new(config).unwrap();
        let bad = OptimizerState {
            steps: 1,
            tensors: vec![("weight.exp_avg".into(), crate::Tensor::zeros(&[1, 1]))],
        };
        let err = sgd.load_state(bad).unwrap_err().to_string();
        assert!(err.contains("weight.exp_avg"), "{err}");

        // A state for a (2, 1) weight cannot drive a (1, 1) weight; nothing may change.
        let foreign = OptimizerState {
            steps: 1,
            tensors: vec![
                (
                    "weight.momentum_buffer".into(),
                    crate::Tensor::zeros(&[2, 1]),
                ),
                ("bias.momentum_buffer".into(), crate::Tensor::zeros(&[1])),
            ],
        };
        sgd.load_state(foreign).unwrap();
        let mut layer = model(1.0, -2.0);
        set_grads(&mut layer, [0.5, 1.0]);
        let err = sgd.step(&mut layer).unwrap_err().to_string();
        assert!(err.contains("weight") && err.contains("(2, 1)"), "{err}");
        assert_eq!(values(&layer), [1.0, -2.0]);

        // A state with a parameter the network lacks.
        let extra = OptimizerState {
            steps: 1,
            tensors: vec![
                (
                    "weight.momentum_buffer".into(),
                    crate::Tensor::zeros(&[1, 1]),
                ),
                ("bias.momentum_buffer".into(), crate::Tensor::zeros(&[1])),
                ("head.momentum_buffer".into(), crate::Tensor::zeros(&[1])),
            ],
        };
        sgd.load_state(extra).unwrap();
        let err = sgd.step(&mut layer).unwrap_err().to_string();
        assert!(err.contains("head"), "{err}");
    }
}
