//! Optimisers that update every parameter of a network from its gradient — SGD (with
//! momentum and Nesterov), Adam and AdamW — and learning-rate schedules. The update rules
//! are `torch.optim`'s, step for step.
//!
//! A training loop reads:
//!
//! ```
//! use ocellus::layers::Linear;
//! use ocellus::optim::{Adam, AdamConfig, LrSchedule, OneCycle};
//! use ocellus::loss;
//! use ocellus::prelude::*;
//!
//! let mut rng = Rng::new(0);
//! let mut model = Sequential::new().with(Linear::new(4, 3, &mut rng)?);
//! let mut optimizer = Adam::new(AdamConfig::adamw(1e-3))?;
//! let schedule = LrSchedule::one_cycle(OneCycle::new(0.05, 50))?; // counted in steps
//! let inputs = Tensor::randn(&[6, 4], 1.0, &mut rng);
//! let labels = [0, 1, 2, 0, 1, 2];
//! let mut losses = Vec::new();
//! for step in 0..50 {
//!     model.zero_grad();
//!     let logits = model.forward(inputs.clone(), Mode::Train)?;
//!     let (loss, dlogits) = loss::cross_entropy(&logits, &labels, 0.0)?;
//!     model.backward(dlogits)?;
//!     optimizer.set_lr(schedule.lr_at(step))?;
//!     optimizer.step(&mut model)?;
//!     losses.push(loss);
//! }
//! assert!(losses[49] < losses[0]);
//! # Ok::<(), ocellus::Error>(())
//! ```
//!
//! Optimiser state (momentum buffers, Adam's moments) is keyed by parameter name, so it can
//! be written to and read from a checkpoint with [`Optimizer::state`] and
//! [`Optimizer::load_state`].

pub mod adam;
pub mod schedule;
pub mod sgd;

pub use adam::{Adam, AdamConfig};
pub use schedule::{LrSchedule, OneCycle, ScheduleUnit};
pub use sgd::{Sgd, SgdConfig};

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::layers::{Layer, LayerExt, Param};
use crate::tensor::{shape_str, Tensor};

/// An optimiser: updates every parameter of a network from the gradient accumulated in it.
pub trait Optimizer: Send {
    /// The optimiser's name as written in configuration files: `"sgd"`, `"adam"`, `"adamw"`.
    fn kind(&self) -> &'static str;

    /// A one-line description with the settings, e.g.
    /// `AdamW(lr 0.001, betas (0.9, 0.999), eps 1e-8, weight decay 0.01)`.
    fn describe(&self) -> String;

    /// The current learning rate.
    fn lr(&self) -> f32;

    /// Sets the learning rate for the following steps (a schedule calls this). A negative
    /// or non-finite rate is an error, and the rate is unchanged.
    fn set_lr(&mut self, lr: f32) -> Result<()>;

    /// Number of steps taken so far.
    fn steps(&self) -> u64;

    /// Updates every parameter of `model` (as listed by [`LayerExt::params_mut`]) from its
    /// gradient. Gradients are left as they are: clear them with [`LayerExt::zero_grad`].
    ///
    /// Fails, before changing anything, if the network's parameters do not match the state
    /// this optimiser holds (a different network, or a state loaded from another one).
    fn step(&mut self, model: &mut dyn Layer) -> Result<()> {
        self.step_params(&mut model.params_mut())
    }

    /// Updates the given parameters from their gradients: any set of named parameters,
    /// inside a network or not. State is kept by name, so a parameter must keep its name
    /// from step to step.
    fn step_params(&mut self, params: &mut [(String, &mut Param)]) -> Result<()>;

    /// The state to keep in a checkpoint: the step count and every buffer, named
    /// `"{parameter}.{buffer}"` with PyTorch's buffer names (`0.weight.momentum_buffer`,
    /// `3.bias.exp_avg`, `3.bias.exp_avg_sq`).
    fn state(&self) -> OptimizerState;

    /// Restores a state made by [`Optimizer::state`]. Names are checked here; shapes and
    /// that every parameter has its buffers are checked against the network at the next
    /// [`Optimizer::step`]. On error the optimiser is unchanged.
    fn load_state(&mut self, state: OptimizerState) -> Result<()>;
}

/// What an optimiser keeps between steps, as named tensors plus the step count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// Steps taken (Adam's `t` in the bias correction).
    pub steps: u64,
    /// `("{parameter}.{buffer}", buffer)`, each buffer shaped like its parameter.
    pub tensors: Vec<(String, Tensor)>,
}

/// Checks that a hyper-parameter is finite and at least zero (PyTorch's checks).
fn expect_non_negative(kind: &str, what: &str, value: f32) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            kind,
            format!("{what} must be finite and ≥ 0, got {value}"),
        ))
    }
}

/// The per-parameter buffers of an optimiser, keyed by parameter name.
///
/// Every parameter gets the same list of buffers (`buffer_names`), each shaped like the
/// parameter. Buffers are allocated at the first step; later steps only look them up.
struct ParamBuffers {
    kind: &'static str,
    /// PyTorch's state keys, e.g. `["exp_avg", "exp_avg_sq"]`; empty for plain SGD.
    buffer_names: &'static [&'static str],
    /// Parameter name of each slot, in the order first seen.
    names: Vec<String>,
    /// `buffers[slot][b]`: buffer `buffer_names[b]` of parameter `names[slot]`.
    buffers: Vec<Vec<Tensor>>,
    /// Slot of each parameter name.
    index: HashMap<String, usize>,
    /// Slot of each parameter of the current step, in `params_mut` order (capacity reused).
    order: Vec<usize>,
    /// Set by `import`: the next `resolve` also checks that every loaded name is used.
    check_all_used: bool,
}

impl ParamBuffers {
    fn new(kind: &'static str, buffer_names: &'static [&'static str]) -> Self {
        ParamBuffers {
            kind,
            buffer_names,
            names: Vec::new(),
            buffers: Vec::new(),
            index: HashMap::new(),
            order: Vec::new(),
            check_all_used: false,
        }
    }

    /// Finds the buffers of every parameter (creating zero buffers before the first step)
    /// and checks their shapes, so that a mismatch fails before any parameter changes.
    fn resolve(&mut self, params: &[(String, &mut Param)], started: bool) -> Result<()> {
        if self.buffer_names.is_empty() {
            return Ok(());
        }
        self.order.clear();
        for (name, p) in params {
            let slot = match self.index.get(name.as_str()) {
                Some(&slot) => slot,
                None if !started => {
                    let zeros = Tensor::zeros(p.shape());
                    self.buffers.push(vec![zeros; self.buffer_names.len()]);
                    self.names.push(name.clone());
                    self.index.insert(name.clone(), self.names.len() - 1);
                    self.names.len() - 1
                }
                None => {
                    return Err(Error::config(
                        self.kind,
                        format!(
                            "no {} for parameter {name}: the optimiser state belongs to another \
                             network (build a new optimiser when the network changes)",
                            self.buffer_names.join("/")
                        ),
                    ))
                }
            };
            let have = self.buffers[slot][0].shape();
            if have != p.shape() {
                return Err(Error::config(
                    self.kind,
                    format!(
                        "state for parameter {name} is {} but the parameter is {}: the optimiser \
                         state belongs to another network",
                        shape_str(have),
                        shape_str(p.shape())
                    ),
                ));
            }
            self.order.push(slot);
        }
        if self.check_all_used && self.order.len() != self.names.len() {
            let unused = self
                .names
                .iter()
                .find(|n| !params.iter().any(|(name, _)| name == *n))
                .map_or("?", |n| n.as_str());
            return Err(Error::config(
                self.kind,
                format!(
                    "the loaded state has buffers for parameter {unused}, which the network \
                     does not have: the state belongs to another network"
                ),
            ));
        }
        self.check_all_used = false;
        Ok(())
    }

    /// The buffers of parameter number `i` of the last `resolve`.
    fn of_param(&mut self, i: usize) -> &mut [Tensor] {
        &mut self.buffers[self.order[i]]
    }

    /// Every buffer as `("{parameter}.{buffer}", tensor)`.
    fn export(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.names.len() * self.buffer_names.len());
        for (name, buffers) in self.names.iter().zip(&self.buffers) {
            for (b, tensor) in self.buffer_names.iter().zip(buffers) {
                out.push((format!("{name}.{b}"), tensor.clone()));
            }
        }
        out
    }

    /// Replaces every buffer with the named tensors of a saved state (see `export`); on
    /// error nothing changes.
    fn import(&mut self, steps: u64, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let kind = self.kind;
        let err = |message: String| Err(Error::config(kind, format!("loading state: {message}")));
        let expected = if self.buffer_names.is_empty() {
            "no buffers".to_string()
        } else {
            format!(
                "buffers named {{parameter}}.{}",
                self.buffer_names.join("|")
            )
        };
        let mut names: Vec<String> = Vec::new();
        let mut buffers: Vec<Vec<Option<Tensor>>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (full, tensor) in tensors {
            let parsed = full.rsplit_once('.').and_then(|(param, buffer)| {
                let b = self.buffer_names.iter().position(|&n| n == buffer)?;
                Some((param.to_string(), b))
            });
            let Some((param, b)) = parsed else {
                return err(format!("unexpected entry {full} ({kind} keeps {expected})"));
            };
            let slot = *index.entry(param.clone()).or_insert_with(|| {
                names.push(param);
                buffers.push(vec![None; self.buffer_names.len()]);
                names.len() - 1
            });
            if buffers[slot][b].replace(tensor).is_some() {
                return err(format!("entry {full} appears twice"));
            }
        }
        let mut complete = Vec::with_capacity(buffers.len());
        for (name, slot) in names.iter().zip(buffers) {
            let mut tensors = Vec::with_capacity(slot.len());
            for (b, tensor) in self.buffer_names.iter().zip(slot) {
                match tensor {
                    Some(t) => tensors.push(t),
                    None => return err(format!("entry {name}.{b} is missing")),
                }
            }
            if let Some(t) = tensors.iter().find(|t| t.shape() != tensors[0].shape()) {
                return err(format!(
                    "buffers of {name} have different shapes {} and {}",
                    shape_str(tensors[0].shape()),
                    shape_str(t.shape())
                ));
            }
            complete.push(tensors);
        }
        let has_buffers = !self.buffer_names.is_empty();
        if has_buffers && steps > 0 && complete.is_empty() {
            return err(format!(
                "{steps} steps were taken but the state has no buffers"
            ));
        }
        if steps == 0 && !complete.is_empty() {
            return err("the state has buffers but no steps were taken".into());
        }
        self.names = names;
        self.buffers = complete;
        self.index = index;
        self.order.clear();
        self.check_all_used = true;
        Ok(())
    }
}

/// `x`, or 0 when `x` is subnormal (below f32's smallest normal value, 1.2e-38), for the
/// running averages of the optimisers.
///
/// Where a parameter's gradient stops (a unit whose ReLU is never active), a momentum
/// buffer or Adam's m shrinks by β every step and, with β = 0.9, spends hundreds of steps
/// in the subnormal range, where x86 arithmetic is many times slower and whole epochs
/// slow down with it. The average is set to zero instead; the update it would still have made, below 1e-30, is
/// lost in rounding against any weight.
#[inline(always)]
fn normal_or_zero(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A two-parameter model for hand-computed optimiser steps.

    use super::Optimizer;
    use crate::init::Init;
    use crate::layers::{LayerExt, Linear};
    use crate::rng::Rng;

    /// `Linear(1 → 1)` with weight `w` and bias `b`: parameters `weight` (1, 1) and `bias` (1,).
    pub fn model(w: f32, b: f32) -> Linear {
        let mut layer = Linear::with_init(1, 1, true, Init::PytorchDefault, &mut Rng::new(0))
            .expect("a 1 → 1 linear layer");
        set(&mut layer, [w, b], [0.0, 0.0]);
        layer
    }

    /// Sets the gradients `[dw, db]` (the values stay).
    pub fn set_grads(layer: &mut Linear, grads: [f32; 2]) {
        let values = values(layer);
        set(layer, values, grads);
    }

    /// `[w, b]`.
    pub fn values(layer: &Linear) -> [f32; 2] {
        let p = layer.params();
        [p[0].1.value().data()[0], p[1].1.value().data()[0]]
    }

    /// One step with small gradients, then 1,000 steps with none (a unit that stopped
    /// learning), asserting after every step that no state value is subnormal. Returns
    /// the state values at the end.
    pub fn state_after_the_gradient_stops(optimizer: &mut dyn Optimizer) -> Vec<f32> {
        let mut layer = model(1.0, -2.0);
        set_grads(&mut layer, [1e-3, -1e-3]);
        optimizer.step(&mut layer).unwrap();
        set_grads(&mut layer, [0.0, 0.0]);
        // A running average shrinking by 0.9 per step falls below 1.2e-38 within 800.
        for _ in 0..1000 {
            optimizer.step(&mut layer).unwrap();
            for (name, t) in optimizer.state().tensors {
                let v = t.data()[0];
                assert!(v == 0.0 || v.is_normal(), "{name} = {v:e} is subnormal");
            }
        }
        let state = optimizer.state().tensors;
        state.iter().map(|(_, t)| t.data()[0]).collect()
    }

    fn set(layer: &mut Linear, values: [f32; 2], grads: [f32; 2]) {
        for ((_, p), (v, g)) in layer
            .params_mut()
            .into_iter()
            .zip(values.into_iter().zip(grads))
        {
            p.value_mut()[0] = v;
            p.grad_mut()[0] = g;
        }
    }
}
