//! Losses, optimisers and learning-rate schedules against values computed by PyTorch
//! (`tools/pytorch_optim_loss.py` writes `tests/reference/optim_loss.json`).
//!
//! Tolerances: every value is f32 on both sides, computed in the same order of operations,
//! so results agree to a few units in the last place; losses accumulate in f64 here and in
//! f32 in PyTorch.

use ocellus::gradcheck::assert_close;
use ocellus::init::Init;
use ocellus::layers::Linear;
use ocellus::loss::{cross_entropy, mse_loss, CrossEntropy, Reduction};
use ocellus::optim::{Adam, AdamConfig, LrSchedule, OneCycle, Sgd, SgdConfig};
use ocellus::LayerExt;
use ocellus::{Optimizer, Rng, Tensor};
use serde_json::Value;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/optim_loss.json"
    );
    let text = std::fs::read_to_string(path).expect("tests/reference/optim_loss.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// An array of numbers, "nan" standing for NaN (which JSON cannot write).
fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| match x.as_str() {
            Some("nan") => f32::NAN,
            _ => x.as_f64().expect("a number") as f32,
        })
        .collect()
}

/// [`assert_close`], with a NaN expected exactly where PyTorch has one.
fn assert_close_or_nan(what: &str, actual: &[f32], expected: &[f32], rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(
            a.is_nan(),
            e.is_nan(),
            "{what}: index {i}: got {a}, expected {e}"
        );
    }
    let finite = |values: &[f32]| -> Vec<f32> {
        let keep = expected.iter().map(|e| !e.is_nan());
        values
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(v, _)| *v)
            .collect()
    };
    assert_close(what, &finite(actual), &finite(expected), rtol, atol);
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_u64().expect("an index") as usize)
        .collect()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("number {key}"))
}

#[test]
fn cross_entropy_and_mse_match_pytorch() {
    let r = reference();
    for case in r["cross_entropy"].as_array().unwrap() {
        let shape = usizes(&case["shape"]);
        let logits = Tensor::from_vec(&shape, f32s(&case["logits"])).unwrap();
        let targets = usizes(&case["targets"]);
        let eps = num(case, "label_smoothing") as f32;
        let (loss, dlogits) = cross_entropy(&logits, &targets, eps).unwrap();
        let what = format!("cross_entropy {shape:?} ε = {eps}");
        assert_close(
            &what,
            &[loss],
            &[num(case, "loss") as f32],
            1e-6,
            1e-6 * 1e-3,
        );
        assert_close(
            &what,
            dlogits.data(),
            &f32s(&case["dlogits"]),
            1e-5,
            1e-5 * 1e-3,
        );
    }
    let case = &r["mse"];
    let shape = usizes(&case["shape"]);
    let p = Tensor::from_vec(&shape, f32s(&case["prediction"])).unwrap();
    let t = Tensor::from_vec(&shape, f32s(&case["target"])).unwrap();
    let (loss, dp) = mse_loss(&p, &t).unwrap();
    assert_close(
        "mse",
        &[loss],
        &[num(case, "loss") as f32],
        1e-6,
        1e-6 * 1e-3,
    );
    assert_close(
        "mse",
        dp.data(),
        &f32s(&case["dprediction"]),
        1e-6,
        1e-6 * 1e-3,
    );
}

#[test]
fn cross_entropy_options_match_pytorch() {
    let r = reference();
    let mut names = Vec::new();
    for case in r["cross_entropy_options"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let shape = usizes(&case["shape"]);
        let logits = Tensor::from_vec(&shape, f32s(&case["logits"])).unwrap();
        let targets = usizes(&case["targets"]);
        let reduction = match case["reduction"].as_str().unwrap() {
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            "none" => Reduction::None,
            other => panic!("{name}: reduction {other}"),
        };
        let mut ce = CrossEntropy::new()
            .reduction(reduction)
            .label_smoothing(num(case, "label_smoothing") as f32);
        if !case["weight"].is_null() {
            ce = ce.weight(&f32s(&case["weight"]));
        }
        if let Some(index) = case["ignore_index"].as_u64() {
            ce = ce.ignore_index(index as usize);
        }
        let dloss = f32s(&case["dloss"]);
        let dloss_shape: &[usize] = if reduction == Reduction::None {
            &[shape[0]]
        } else {
            &[]
        };
        let dloss = Tensor::from_vec(dloss_shape, dloss).unwrap();
        let (loss, dlogits) = ce.loss_with_upstream(&logits, &targets, &dloss).unwrap();
        assert_eq!(loss.shape(), dloss_shape, "{name}");
        let what = format!("cross_entropy {name}");
        // The tolerances of the plain cases above.
        assert_close_or_nan(&what, loss.data(), &f32s(&case["loss"]), 1e-6, 1e-6 * 1e-3);
        assert_close_or_nan(
            &what,
            dlogits.data(),
            &f32s(&case["dlogits"]),
            1e-5,
            1e-5 * 1e-3,
        );
        names.push(name);
    }
    assert_eq!(names.len(), 17, "{names:?}");
}

fn optimizer(kind: &str, s: &Value) -> Box<dyn Optimizer> {
    let f = |key: &str, default: f64| s[key].as_f64().unwrap_or(default) as f32;
    match kind {
        "sgd" => Box::new(
            Sgd::new(SgdConfig {
                lr: f("lr", 1e-3),
                momentum: f("momentum", 0.0),
                dampening: f("dampening", 0.0),
                weight_decay: f("weight_decay", 0.0),
                nesterov: s["nesterov"].as_bool().unwrap_or(false),
            })
            .unwrap(),
        ),
        "adam" | "adamw" => {
            let defaults = if kind == "adam" {
                AdamConfig::adam(f("lr", 1e-3))
            } else {
                AdamConfig::adamw(f("lr", 1e-3))
            };
            let betas = match s["betas"].as_array() {
                Some(b) => (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()),
                None => defaults.betas,
            };
            Box::new(
                Adam::new(AdamConfig {
                    betas,
                    eps: f("eps", defaults.eps as f64),
                    weight_decay: f("weight_decay", defaults.weight_decay as f64),
                    ..defaults
                })
                .unwrap(),
            )
        }
        other => panic!("unknown optimiser {other}"),
    }
}

fn set(layer: &mut Linear, name: &str, value: Option<&[f32]>, grad: &[f32]) {
    for (n, p) in layer.params_mut() {
        if n == name {
            if let Some(value) = value {
                p.value_mut().copy_from_slice(value);
            }
            p.grad_mut().copy_from_slice(grad);
        }
    }
}

#[test]
fn optimiser_trajectories_and_state_match_pytorch() {
    let r = reference();
    for case in r["optimizers"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let kind = case["kind"].as_str().unwrap();
        let mut opt = optimizer(kind, &case["settings"]);
        assert_eq!(opt.kind(), kind);
        let mut layer =
            Linear::with_init(3, 2, true, Init::PytorchDefault, &mut Rng::new(0)).unwrap();
        set(
            &mut layer,
            "weight",
            Some(&f32s(&case["weight"])),
            &[0.0; 6],
        );
        set(&mut layer, "bias", Some(&f32s(&case["bias"])), &[0.0; 2]);
        for (t, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            set(&mut layer, "weight", None, &f32s(&step["dweight"]));
            set(&mut layer, "bias", None, &f32s(&step["dbias"]));
            opt.step(&mut layer).unwrap();
            let params = layer.params();
            let what = format!("{name} step {}", t + 1);
            assert_close(
                &format!("{what} weight"),
                params[0].1.value().data(),
                &f32s(&step["weight"]),
                1e-6,
                1e-6 * 1e-2,
            );
            assert_close(
                &format!("{what} bias"),
                params[1].1.value().data(),
                &f32s(&step["bias"]),
                1e-6,
                1e-6 * 1e-2,
            );
        }
        let state = opt.state();
        let want = case["state"].as_object().unwrap();
        assert_eq!(state.tensors.len(), want.len(), "{name}: state entries");
        for (key, tensor) in &state.tensors {
            let expected = want
                .get(key)
                .unwrap_or_else(|| panic!("{name}: PyTorch has no state {key}"));
            assert_close(
                &format!("{name} {key}"),
                tensor.data(),
                &f32s(expected),
                1e-5,
                1e-5 * 1e-3,
            );
        }
    }
}

#[test]
fn schedules_match_pytorch() {
    let r = reference();
    for case in r["schedules"].as_array().unwrap() {
        let kind = case["kind"].as_str().unwrap();
        let int = |key: &str| case[key].as_u64().unwrap() as usize;
        let schedule = match kind {
            "step_lr" => LrSchedule::step_lr(
                num(case, "base_lr") as f32,
                int("step_size"),
                num(case, "gamma") as f32,
            ),
            "cosine" => LrSchedule::cosine(
                num(case, "base_lr") as f32,
                int("t_max"),
                num(case, "eta_min") as f32,
            ),
            "one_cycle" => LrSchedule::one_cycle(OneCycle::new(
                num(case, "max_lr") as f32,
                int("total_steps"),
            )),
            other => panic!("unknown schedule {other}"),
        }
        .unwrap();
        let want = f32s(&case["lrs"]);
        let got: Vec<f32> = (0..want.len()).map(|t| schedule.lr_at(t)).collect();
        assert_close(kind, &got, &want, 1e-6, 1e-6 * 1e-12);
    }
}
