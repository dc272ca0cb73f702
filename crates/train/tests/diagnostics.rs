//! Gradient-flow diagnostics: every number of a diagnosed step against a hand computation
//! that shares no code with the layers, dead units on constructed activations, training
//! unchanged by diagnostics, and the run's diagnostics file.

use std::path::Path;

use ocellus::checkpoint::state_dict;
use ocellus::layers::{Conv2d, Flatten, GlobalAvgPool, Linear, Relu};
use ocellus::optim::{Sgd, SgdConfig};
use ocellus::{zoo, LayerExt, Rng, Sequential, Tensor};
use ocellus_data::{patterns, Splits};
use ocellus_train::diagnostics::{
    dead_fraction, diagnosed_step, read_diagnostics, Probe, StepDiagnostics, StepInfo,
    DIAGNOSTICS_FILE,
};
use ocellus_train::run::{Run, RunConfig};

/// `|a − b| ≤ 1e-5 · max(1, |b|)`, naming what differs.
fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{what}: diagnostics {got}, by hand {want}"
    );
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Values in [-1, 1) from a small linear congruential sequence: no engine code involved.
fn values(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// A two-layer perceptron x (N, 4) → Linear(4→3) → ReLU → Linear(3→2), one step of plain
/// SGD: the diagnostics against the forward, the cross-entropy, the backward and the
/// update written out with loops over plain arrays, in f64.
#[test]
fn a_diagnosed_step_matches_a_hand_computation() {
    let (n, f, h, k) = (5, 4, 3, 2);
    let lr = 0.1;
    let x = values(n * f, 1);
    let w1 = values(h * f, 2);
    let mut b1 = values(h, 3);
    // Hidden units 0 and 1 always fire, unit 2 never: biases far beyond anything x·w
    // (|x·w| ≤ 4) can reach.
    b1[0] = 10.0;
    b1[1] = 10.0;
    b1[2] = -50.0;
    let w2 = values(k * h, 4);
    let b2 = values(k, 5);
    let labels = vec![0, 1, 1, 0, 1];

    let tensor = |shape: &[usize], v: &[f32]| Tensor::from_vec(shape, v.to_vec()).unwrap();
    let mut model = Sequential::new()
        .with(Linear::from_weights(tensor(&[h, f], &w1), Some(tensor(&[h], &b1))).unwrap())
        .with(Relu::new())
        .with(Linear::from_weights(tensor(&[k, h], &w2), Some(tensor(&[k], &b2))).unwrap());
    let mut sgd = Sgd::new(SgdConfig::new(lr)).unwrap();
    let at = StepInfo {
        epoch: 1,
        step: 1,
        batch: 1,
        images: n,
        loss: 0.0,
        lr,
    };
    let (record, _) =
        diagnosed_step(&mut model, &mut sgd, &tensor(&[n, f], &x), &labels, 0.0, at).unwrap();

    // By hand. Forward: pre = x·W1ᵀ + b1, a = max(0, pre), z = a·W2ᵀ + b2.
    let d = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (x, w1, b1, w2, b2) = (d(&x), d(&w1), d(&b1), d(&w2), d(&b2));
    let mut pre = vec![0.0; n * h];
    for i in 0..n {
        for j in 0..h {
            pre[i * h + j] = b1[j] + (0..f).map(|q| x[i * f + q] * w1[j * f + q]).sum::<f64>();
        }
    }
    let a: Vec<f64> = pre.iter().map(|&v| v.max(0.0)).collect();
    let mut z = vec![0.0; n * k];
    for i in 0..n {
        for c in 0..k {
            z[i * k + c] = b2[c] + (0..h).map(|j| a[i * h + j] * w2[c * h + j]).sum::<f64>();
        }
    }
    // Mean cross-entropy; dz = (softmax(z) − onehot) / N.
    let (mut loss, mut dz) = (0.0, vec![0.0; n * k]);
    for i in 0..n {
        let row = &z[i * k..(i + 1) * k];
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        loss += -(row[labels[i]] - max - sum.ln()) / n as f64;
        for c in 0..k {
            let p = (row[c] - max).exp() / sum;
            dz[i * k + c] = (p - if c == labels[i] { 1.0 } else { 0.0 }) / n as f64;
        }
    }
    // Backward: dW2 = dzᵀ·a, db2 = Σ dz, da = dz·W2, dpre = da·[pre > 0], dW1 = dpreᵀ·x.
    let (mut dw2, mut db2, mut da) = (vec![0.0; k * h], vec![0.0; k], vec![0.0; n * h]);
    for i in 0..n {
        for c in 0..k {
            db2[c] += dz[i * k + c];
            for j in 0..h {
                dw2[c * h + j] += dz[i * k + c] * a[i * h + j];
                da[i * h + j] += dz[i * k + c] * w2[c * h + j];
            }
        }
    }
    let dpre: Vec<f64> = (0..n * h)
        .map(|i| if pre[i] > 0.0 { da[i] } else { 0.0 })
        .collect();
    let (mut dw1, mut db1) = (vec![0.0; h * f], vec![0.0; h]);
    for i in 0..n {
        for j in 0..h {
            db1[j] += dpre[i * h + j];
            for q in 0..f {
                dw1[j * f + q] += dpre[i * h + j] * x[i * f + q];
            }
        }
    }

    close("loss", record.loss as f64, loss);
    assert_eq!((record.epoch, record.step, record.batch), (1, 1, 1));
    assert_eq!(record.images, n);
    let names: Vec<&str> = record.layers.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(names, ["linear", "relu", "linear"]);

    // ∂L/∂x of each layer's input: none for the first (data), ∂L/∂pre, ∂L/∂a.
    assert_eq!(record.layers[0].input_grad_norm, None);
    close(
        "‖∂L/∂pre‖",
        record.layers[1].input_grad_norm.unwrap() as f64,
        norm(&dpre),
    );
    close(
        "‖∂L/∂a‖",
        record.layers[2].input_grad_norm.unwrap() as f64,
        norm(&da),
    );

    // Activations.
    for (i, out) in [&pre, &a, &z].into_iter().enumerate() {
        let (mean, std) = mean_std(out);
        close(
            &format!("mean of layer {i}"),
            record.layers[i].output_mean as f64,
            mean,
        );
        close(
            &format!("std of layer {i}"),
            record.layers[i].output_std as f64,
            std,
        );
    }
    assert_eq!(record.layers[0].dead_fraction, None);
    let dead = (0..h)
        .filter(|&j| (0..n).all(|i| a[i * h + j] == 0.0))
        .count();
    assert_eq!(dead, 1);
    assert_eq!(record.layers[1].dead_fraction, Some(dead as f32 / h as f32));
    assert_eq!(record.layers[2].dead_fraction, None);

    // Parameters: norms before the step, gradients, and plain SGD's update θ ← θ − lr·g,
    // so ‖Δθ‖/‖θ‖ = lr·‖g‖/‖θ‖.
    let lr = lr as f64;
    for (layer, w, b, dw, db) in [(0, &w1, &b1, &dw1, &db1), (2, &w2, &b2, &dw2, &db2)] {
        let l = &record.layers[layer];
        let p = &l.params;
        assert_eq!(p[0].name, format!("{layer}.weight"));
        assert_eq!(p[1].name, format!("{layer}.bias"));
        close("‖W‖", p[0].norm as f64, norm(w));
        close("‖b‖", p[1].norm as f64, norm(b));
        close("‖dW‖", p[0].grad_norm as f64, norm(dw));
        close("‖db‖", p[1].grad_norm as f64, norm(db));
        close(
            "weight update ratio",
            p[0].update_ratio.unwrap() as f64,
            lr * norm(dw) / norm(w),
        );
        close(
            "bias update ratio",
            p[1].update_ratio.unwrap() as f64,
            lr * norm(db) / norm(b),
        );
        let all = |u: &[f64], v: &[f64]| norm(&[norm(u), norm(v)]);
        close("layer ‖θ‖", l.param_norm as f64, all(w, b));
        close("layer ‖g‖", l.grad_norm as f64, all(dw, db));
        close(
            "layer update ratio",
            l.update_ratio.unwrap() as f64,
            lr * all(dw, db) / all(w, b),
        );
    }
    let relu = &record.layers[1];
    assert!(relu.params.is_empty());
    assert_eq!((relu.param_norm, relu.grad_norm), (0.0, 0.0));
    assert_eq!(relu.update_ratio, None);
}

#[test]
fn dead_units_are_channels_or_features_zero_for_the_whole_batch() {
    // (N = 2, C = 4, 2×2): channel 0 zero everywhere; channel 1 zero in image 0 but firing
    // at one position of image 1; channel 2 firing everywhere; channel 3 zero except one
    // position of image 0.
    let mut v = vec![0.0f32; 2 * 4 * 4];
    let at = |n: usize, c: usize, p: usize| (n * 4 + c) * 4 + p;
    v[at(1, 1, 3)] = 0.5;
    for n in 0..2 {
        for p in 0..4 {
            v[at(n, 2, p)] = 1.0 + p as f32;
        }
    }
    v[at(0, 3, 0)] = 2.0;
    let y = Tensor::from_vec(&[2, 4, 2, 2], v).unwrap();
    assert_eq!(dead_fraction(&y), 0.25);

    // (N = 3, F = 5): features 1 and 4 never fire.
    let y = Tensor::from_vec(
        &[3, 5],
        vec![
            1.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 0.0, 2.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 3.0, 0.0,
        ],
    )
    .unwrap();
    // Feature 0, 2 and 3 fire once each; 1 and 4 never: 2 of 5.
    assert_eq!(dead_fraction(&y), 0.4);
    assert_eq!(dead_fraction(&Tensor::zeros(&[2, 3])), 1.0);
}

/// A convolution whose filters 1 and 3 have biases far below anything the input can
/// reach: after its ReLU, 2 of 4 channels are dead, and their weights get no gradient.
#[test]
fn a_relu_after_filters_that_never_fire_is_half_dead() {
    let mut rng = Rng::new(3);
    let mut conv = Conv2d::new(
        ocellus::layers::Conv2dConfig {
            padding: ocellus::layers::Padding::uniform(1),
            ..ocellus::layers::Conv2dConfig::new(1, 4, 3)
        },
        &mut rng,
    )
    .unwrap();
    conv.set(
        "bias",
        Tensor::from_vec(&[4], vec![0.1, -1e3, 0.2, -1e3]).unwrap(),
    )
    .unwrap();
    let mut model = Sequential::new()
        .with(conv)
        .with(Relu::new())
        .with(GlobalAvgPool::new())
        .with(Flatten::new())
        .with(Linear::new(4, 3, &mut rng).unwrap());
    let x = Tensor::randn(&[6, 1, 5, 5], 1.0, &mut rng);
    let mut sgd = Sgd::new(SgdConfig::new(0.01)).unwrap();
    let at = StepInfo {
        epoch: 1,
        step: 1,
        batch: 1,
        images: 6,
        loss: 0.0,
        lr: 0.01,
    };
    let (record, _) =
        diagnosed_step(&mut model, &mut sgd, &x, &[0, 1, 2, 0, 1, 2], 0.0, at).unwrap();
    assert_eq!(record.layers[1].dead_fraction, Some(0.5));
    // The dead filters' weights got no gradient; the live ones did.
    let dweight = model.params()[0].1.grad().data().to_vec();
    let filter = |o: usize| &dweight[o * 9..(o + 1) * 9];
    assert!(filter(1).iter().chain(filter(3)).all(|&g| g == 0.0));
    assert!(filter(0).iter().any(|&g| g != 0.0));
}

#[test]
fn records_survive_json_with_numbers_that_are_not_finite() {
    let tensor = |v: Vec<f32>| Tensor::from_vec(&[2, 2], v).unwrap();
    let mut model = Sequential::new()
        .with(Linear::from_weights(tensor(vec![1.0, 0.0, 0.0, 1.0]), None).unwrap());
    let mut sgd = Sgd::new(SgdConfig::new(0.5)).unwrap();
    let at = StepInfo {
        epoch: 2,
        step: 7,
        batch: 3,
        images: 2,
        loss: 0.0,
        lr: 0.5,
    };
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0]);
    let (mut record, _) = diagnosed_step(&mut model, &mut sgd, &x, &[0, 1], 0.0, at).unwrap();
    let line = serde_json::to_string(&record).unwrap();
    assert_eq!(
        serde_json::from_str::<StepDiagnostics>(&line).unwrap(),
        record
    );
    record.layers[0].output_std = f32::INFINITY;
    record.layers[0].update_ratio = Some(f32::NAN);
    let line = serde_json::to_string(&record).unwrap();
    assert!(line.contains("\"output_std\":null"), "{line}");
    let back: StepDiagnostics = serde_json::from_str(&line).unwrap();
    assert!(back.layers[0].output_std.is_nan());
    assert_eq!(back.layers[0].update_ratio, None);
}

fn data() -> Splits {
    patterns::generate(30, 10, 5)
}

/// ResNet-20 has residual blocks (a top-level layer each), BatchNorm and a projection
/// shortcut: the layer-by-layer pass must be the network's own.
fn config(diagnostics_every: Option<usize>) -> RunConfig {
    RunConfig {
        model: "resnet20".into(),
        epochs: 2,
        batch_size: 32,
        schedule: "cosine".into(),
        seed: 4,
        limit_train: Some(96),
        diagnostics_every,
        ..RunConfig::default()
    }
}

fn start(dir: &Path, every: Option<usize>) -> Run {
    let arch = zoo::model("resnet20", [1, 28, 28], 8).unwrap();
    Run::start(dir, config(every), arch, data()).unwrap()
}

#[test]
fn diagnostics_leave_training_bit_identical_and_are_written_per_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain, diagnosed) = (tmp.path().join("plain"), tmp.path().join("diagnosed"));
    let mut a = start(&plain, None);
    let mut b = start(&diagnosed, Some(2));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    b.observe_diagnostics(Box::new(move |r: &StepDiagnostics| {
        log.lock().unwrap().push(r.step);
        Ok(())
    }))
    .unwrap();
    for _ in 0..2 {
        a.train_epoch(&mut |_| {}).unwrap();
        b.train_epoch(&mut |_| {}).unwrap();
    }
    for ((name, ta), (_, tb)) in state_dict(&a.model).iter().zip(&state_dict(&b.model)) {
        let same = ta
            .data()
            .iter()
            .zip(tb.data())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs when training with diagnostics");
    }
    assert!(!plain.join(DIAGNOSTICS_FILE).exists());

    // 96 images in batches of 32: 3 steps per epoch, 6 in all; every 2nd from step 1.
    let records = read_diagnostics(&diagnosed).unwrap();
    let steps: Vec<(usize, usize, usize)> =
        records.iter().map(|r| (r.epoch, r.batch, r.step)).collect();
    assert_eq!(steps, [(1, 1, 1), (1, 3, 3), (2, 2, 5)]);
    assert_eq!(*seen.lock().unwrap(), [1, 3, 5]);
    let r = &records[0];
    // Stem conv, BN, ReLU, nine blocks, pooling, flatten, linear.
    assert_eq!(r.layers.len(), 15);
    assert_eq!(r.layers[3].kind, "residual");
    assert!(r.layers[3].dead_fraction.is_some() && r.layers[2].dead_fraction.is_some());
    assert!(r.layers[1].dead_fraction.is_none());
    assert_eq!(r.first_weighted_layer().unwrap().params[0].name, "0.weight");
    for layer in &r.layers[1..] {
        let g = layer.input_grad_norm.unwrap();
        assert!(g.is_finite() && g > 0.0, "layer {}: {g}", layer.name);
    }
    assert!(r.layers[3]
        .params
        .iter()
        .any(|p| p.name == "3.main.0.weight"));
    assert!((r.loss - (8f32).ln()).abs() < 0.5, "loss {}", r.loss);
}

#[test]
fn a_resumed_run_drops_the_diagnostics_of_epochs_it_takes_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut run = start(&dir, Some(1));
    run.train_epoch(&mut |_| {}).unwrap();
    drop(run);
    // A line of an epoch 2 that never reached its checkpoint.
    let mut lines = std::fs::read_to_string(dir.join(DIAGNOSTICS_FILE)).unwrap();
    let mut extra: StepDiagnostics = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    extra.epoch = 2;
    extra.step = 4;
    lines += &(serde_json::to_string(&extra).unwrap() + "\n");
    std::fs::write(dir.join(DIAGNOSTICS_FILE), lines).unwrap();

    let mut run = Run::resume(&dir, data()).unwrap();
    assert_eq!(read_diagnostics(&dir).unwrap().len(), 3);
    run.train_epoch(&mut |_| {}).unwrap();
    let steps: Vec<usize> = read_diagnostics(&dir)
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_run_without_diagnostics_says_how_to_get_them() {
    let tmp = tempfile::tempdir().unwrap();
    let message = read_diagnostics(tmp.path()).unwrap_err().to_string();
    assert!(message.contains("--diagnostics"), "{message}");
    let mut bad = config(Some(0));
    bad.limit_train = None;
    let message = bad.validate().unwrap_err().to_string();
    assert!(message.starts_with("--diagnostics-every"), "{message}");
}

#[test]
fn a_probe_given_another_network_is_an_error_not_a_panic() {
    let mut rng = Rng::new(5);
    let mut small = Sequential::new().with(Linear::new(3, 2, &mut rng).unwrap());
    let mut large = Sequential::new()
        .with(Linear::new(3, 4, &mut rng).unwrap())
        .with(Relu::new())
        .with(Linear::new(4, 2, &mut rng).unwrap());
    let x = Tensor::randn(&[2, 3], 1.0, &mut rng);
    let mut probe = Probe::new();
    let y = probe.forward(&mut small, &x).unwrap();
    let message = probe
        .backward_params(&mut large, y.clone())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("1 top-level layers but this network has 3"),
        "{message}"
    );
    probe.before_step(&large);
    let at = StepInfo {
        epoch: 1,
        step: 1,
        batch: 1,
        images: 2,
        loss: 0.0,
        lr: 0.1,
    };
    assert!(probe.finish(&mut small, at).is_err());
}
