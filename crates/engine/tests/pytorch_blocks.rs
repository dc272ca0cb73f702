//! ocellus's blocks against PyTorch, on the vectors of `tools/pytorch_blocks.py`
//! (`tests/reference/blocks.safetensors`): each case is an architecture that the script
//! built in PyTorch with ocellus's parameter names, so both sides are the same network.

mod common;

use common::{formula_values, Reference};
use ocellus::arch::Architecture;
use ocellus::gradcheck::assert_close;
use ocellus::layers::Dropout;
use ocellus::loss::cross_entropy;
use ocellus::optim::{Adam, AdamConfig};
use ocellus::LayerExt;
use ocellus::{zoo, Mode, Optimizer, Rng, Sequential};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

fn architecture(config: &serde_json::Value) -> Architecture {
    serde_json::from_value(config["architecture"].clone()).expect("an ocellus architecture")
}

/// Sets every parameter and buffer of `net` from the case's `{prefix}.{name}` tensors.
fn load(net: &mut Sequential, reference: &Reference, case: &str, param: &str, buffer: &str) {
    let names: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    for name in names {
        let value = reference.tensor(case, &format!("{param}.{name}"));
        net.set(&name, value).unwrap();
    }
    let names: Vec<String> = net.buffers().into_iter().map(|(n, _)| n).collect();
    for name in names {
        let value = reference.tensor(case, &format!("{buffer}.{name}"));
        net.set(&name, value).unwrap();
    }
}

/// Every parameter's gradient, or (`after`) every parameter and buffer, against the case.
fn compare(net: &Sequential, reference: &Reference, case: &str, what: &str) {
    if what == "grad" {
        for (name, p) in net.params() {
            let want = reference.tensor(case, &format!("grad.{name}"));
            assert_close(
                &format!("{case}: grad.{name}"),
                p.grad().data(),
                want.data(),
                RTOL,
                ATOL,
            );
        }
        return;
    }
    for (name, p) in net.params() {
        let want = reference.tensor(case, &format!("after.{name}"));
        assert_close(
            &format!("{case}: after.{name}"),
            p.value().data(),
            want.data(),
            RTOL,
            ATOL,
        );
    }
    for (name, b) in net.buffers() {
        let want = reference.tensor(case, &format!("after.{name}"));
        assert_close(
            &format!("{case}: after.{name}"),
            b.data(),
            want.data(),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn blocks_match_pytorch() {
    let reference = Reference::open("blocks");
    let mut seen = Vec::new();
    for (case, config) in reference.cases().filter(|(_, c)| c.get("params").is_none()) {
        let arch = architecture(config);
        let mut net = arch.build(&mut Rng::new(0)).unwrap();
        load(&mut net, &reference, case, "param", "buffer");
        let x = reference.tensor(case, "x");
        net.zero_grad();
        let y = net.forward_ref(&x, Mode::Train).unwrap();
        let want = reference.tensor(case, "y");
        assert_eq!(y.shape(), want.shape(), "{case}");
        assert_close(&format!("{case}: y"), y.data(), want.data(), RTOL, ATOL);
        let dx = net.backward_ref(&reference.tensor(case, "dy")).unwrap();
        let want = reference.tensor(case, "dx");
        assert_close(&format!("{case}: dx"), dx.data(), want.data(), RTOL, ATOL);
        compare(&net, &reference, case, "grad");
        // The running statistics the training-mode pass updated.
        for (name, b) in net.buffers() {
            let want = reference.tensor(case, &format!("after.{name}"));
            assert_close(
                &format!("{case}: after.{name}"),
                b.data(),
                want.data(),
                RTOL,
                ATOL,
            );
        }
        seen.push(arch.layers[0].kind());
    }
    for kind in [
        "concat",
        "dense",
        "scale",
        "squeezeexcite",
        "bottleneck",
        "separableconv2d",
        "mbconv",
        "denseblock",
    ] {
        assert!(seen.contains(&kind), "no case of {kind}");
    }
}

#[test]
fn zoo_training_steps_match_pytorch() {
    let reference = Reference::open("blocks");
    for case in ["inception", "efficientnet"] {
        let (_, config) = reference.cases().find(|(name, _)| *name == case).unwrap();
        // The script trained the zoo's model as it is today.
        let arch = zoo::model(case, [1, 16, 16], 10).unwrap();
        assert_eq!(
            architecture(config),
            arch,
            "{case}: the zoo changed; run tools/pytorch_blocks.py again"
        );
        let mut net = arch.build(&mut Rng::new(0)).unwrap();
        // The script's values: formula_values(shape, seed), seed = the parameter's index
        // in PyTorch's named_parameters, weights scaled by 1/sqrt(fan_in).
        let names = config["params"].as_array().unwrap();
        assert_eq!(names.len(), net.params().len());
        for (seed, name) in names.iter().enumerate() {
            let name = name.as_str().unwrap();
            let shape = net
                .params()
                .into_iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{case}: no parameter {name}"))
                .1
                .shape()
                .to_vec();
            let mut values = formula_values(&shape, seed as u64);
            if shape.len() > 1 {
                let fan_in: usize = shape[1..].iter().product();
                let scale = (1.0 / (fan_in as f64).sqrt()) as f32;
                values.data_mut().iter_mut().for_each(|v| *v *= scale);
            }
            net.set(name, values).unwrap();
        }
        // PyTorch's dropout mask, replayed where the zoo's dropout stands.
        if let Some(i) = config["dropout_index"].as_u64() {
            let i = i as usize;
            let p = match &arch.layers[i] {
                ocellus::spec::LayerSpec::Dropout { p } => *p,
                other => panic!("{case}: layer {i} is {other:?}"),
            };
            let mut dropout = Dropout::with_seed(p, 0).unwrap();
            dropout.set_mask(&reference.tensor(case, "drop_mask"));
            net.layers_mut()[i] = Box::new(dropout);
        }
        let mut x = formula_values(&[4, 1, 16, 16], 100);
        x.data_mut().iter_mut().for_each(|v| *v *= 4.0);
        assert_close("x", x.data(), reference.tensor(case, "x").data(), 0.0, 0.0);
        let targets: Vec<usize> = reference
            .tensor(case, "targets")
            .data()
            .iter()
            .map(|t| *t as usize)
            .collect();

        net.zero_grad();
        let logits = net.forward_ref(&x, Mode::Train).unwrap();
        let want = reference.tensor(case, "logits");
        assert_close(
            &format!("{case}: logits"),
            logits.data(),
            want.data(),
            RTOL,
            ATOL,
        );
        let (loss, dlogits) = cross_entropy(&logits, &targets, 0.0).unwrap();
        let want = reference.tensor(case, "loss");
        assert_close(&format!("{case}: loss"), &[loss], want.data(), RTOL, ATOL);
        net.backward_ref(&dlogits).unwrap();
        compare(&net, &reference, case, "grad");

        // Adam's first step moves a value by `lr·g/(|g| + eps)` with eps = 1e-8: about
        // `lr·sign(g)` for any real gradient, but for a gradient that is f32 rounding on
        // both sides (a unit that dead ReLUs cut off from the loss leaves ~1e-8) the sign
        // is a coin toss. Those entries — equal within the tolerance above — step from
        // PyTorch's value, so that the update is compared on equal inputs.
        const ROUNDING: f32 = 1e-6;
        for (name, p) in net.params_mut() {
            let want = reference.tensor(case, &format!("grad.{name}"));
            for (g, w) in p.grad_mut().iter_mut().zip(want.data()) {
                if g.abs() < ROUNDING && w.abs() < ROUNDING {
                    *g = *w;
                }
            }
        }
        let lr = config["lr"].as_f64().unwrap() as f32;
        let mut optimizer = Adam::new(AdamConfig::adamw(lr)).unwrap();
        optimizer.step(&mut net).unwrap();
        compare(&net, &reference, case, "after");
    }
}
