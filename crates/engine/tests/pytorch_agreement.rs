//! Agreement with PyTorch: forward outputs and every gradient, compared with the vectors
//! `tools/pytorch_reference.py` generated (relative tolerance about 1e-4).

mod common;

use common::{formula_values, int, pair, Reference};
use ocellus::gradcheck::assert_close;
use ocellus::layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d,
    ConvTranspose2dConfig, Dropout, GlobalAvgPool, Hardswish, LeakyRelu, Linear, MaxPool2d,
    Padding, Pool2dConfig, Relu, Sigmoid, Silu, Softmax, Tanh, Upsample, UpsampleMode,
    UpsampleSize,
};
use ocellus::loss::cross_entropy;
use ocellus::optim::{Adam, AdamConfig};
use ocellus::LayerExt;
use ocellus::{zoo, Layer, Mode, Optimizer, Rng, Sequential, Tensor};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

/// Copies the case's stored parameters into the layer, by name.
fn load_params(layer: &mut dyn Layer, reference: &Reference, case: &str) {
    for (name, p) in layer.params_mut() {
        p.set(&name, reference.tensor(case, &name)).unwrap();
    }
}

/// Forward, then backward of the stored upstream gradient; compares y, dx and every
/// parameter gradient with PyTorch's.
fn compare_layer(layer: &mut dyn Layer, reference: &Reference, case: &str, mode: Mode) {
    let x = reference.tensor(case, "x");
    let y = layer.forward_ref(&x, mode).unwrap();
    let want_y = reference.tensor(case, "y");
    assert_eq!(y.shape(), want_y.shape(), "{case}: output shape");
    assert_close(&format!("{case}: y"), y.data(), want_y.data(), RTOL, ATOL);
    layer.zero_grad();
    let dx = layer.backward_ref(&reference.tensor(case, "dy")).unwrap();
    assert_close(
        &format!("{case}: dx"),
        dx.data(),
        reference.tensor(case, "dx").data(),
        RTOL,
        ATOL,
    );
    for (name, p) in layer.params() {
        let want = reference.tensor(case, &format!("d{name}"));
        assert_close(
            &format!("{case}: d{name}"),
            p.grad().data(),
            want.data(),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn conv2d_matches_pytorch() {
    let reference = Reference::open("conv2d");
    let mut count = 0;
    for (case, c) in reference.cases() {
        let p = &c["p"];
        let mut config = Conv2dConfig::new(int(&c["ic"]), int(&c["oc"]), 1);
        config.kernel = pair(&c["k"]);
        config.stride = pair(&c["s"]);
        config.dilation = pair(&c["d"]);
        config.groups = int(&c["g"]);
        config.bias = c["bias"].as_bool().unwrap();
        config.padding = Padding {
            top: int(&p[0]),
            bottom: int(&p[1]),
            left: int(&p[2]),
            right: int(&p[3]),
        };
        let mut conv = Conv2d::new(config, &mut Rng::new(0)).unwrap();
        load_params(&mut conv, &reference, case);
        compare_layer(&mut conv, &reference, case, Mode::Train);
        count += 1;
    }
    assert_eq!(count, 11);
}

#[test]
fn conv_transpose2d_matches_pytorch() {
    let reference = Reference::open("conv_transpose2d");
    let mut count = 0;
    for (case, c) in reference.cases() {
        let config = ConvTranspose2dConfig {
            kernel: pair(&c["k"]),
            stride: pair(&c["s"]),
            padding: pair(&c["p"]),
            output_padding: pair(&c["op"]),
            dilation: pair(&c["d"]),
            groups: int(&c["g"]),
            bias: c["bias"].as_bool().unwrap(),
            ..ConvTranspose2dConfig::new(int(&c["ic"]), int(&c["oc"]), 1)
        };
        let mut layer = ConvTranspose2d::new(config, &mut Rng::new(0)).unwrap();
        load_params(&mut layer, &reference, case);
        compare_layer(&mut layer, &reference, case, Mode::Train);
        // The parameter gradients alone, as the first layer of a network computes them.
        let dweight = layer.weight().grad().clone();
        layer.zero_grad();
        layer.backward_params(reference.tensor(case, "dy")).unwrap();
        assert_close(
            &format!("{case}: dweight without dx"),
            layer.weight().grad().data(),
            dweight.data(),
            0.0,
            0.0,
        );
        count += 1;
    }
    assert_eq!(count, 13);
}

#[test]
fn upsample_matches_pytorch() {
    let reference = Reference::open("upsample");
    let mut count = 0;
    for (case, c) in reference.cases() {
        let mode = match c["mode"].as_str().unwrap() {
            "nearest" => UpsampleMode::Nearest,
            "bilinear" => UpsampleMode::Bilinear,
            other => panic!("{case}: mode {other}"),
        };
        let size = if c["scale"].is_null() {
            let (oh, ow) = pair(&c["size"]);
            UpsampleSize::Fixed(oh, ow)
        } else {
            let (sh, sw) = pair(&c["scale"]);
            UpsampleSize::Scale(sh, sw)
        };
        let mut layer = Upsample::with_size(size, mode).unwrap();
        compare_layer(&mut layer, &reference, case, Mode::Train);
        count += 1;
    }
    assert_eq!(count, 11);
}

#[test]
fn silu_and_hardswish_match_pytorch_at_their_kinks_too() {
    let reference = Reference::open("silu_hardswish");
    let mut cases = Vec::new();
    for (case, c) in reference.cases() {
        let mut layer: Box<dyn Layer> = match c["kind"].as_str().unwrap() {
            "silu" => Box::new(Silu::new()),
            "hardswish" => Box::new(Hardswish::new()),
            other => panic!("{case}: unknown activation {other}"),
        };
        compare_layer(layer.as_mut(), &reference, case, Mode::Train);
        cases.push(case.as_str());
    }
    assert_eq!(
        cases,
        ["hardswish_2d", "hardswish_4d", "silu_2d", "silu_4d"]
    );
}

#[test]
fn linear_matches_pytorch() {
    let reference = Reference::open("linear");
    for (case, c) in reference.cases() {
        let mut linear = Linear::new(int(&c["fin"]), int(&c["fout"]), &mut Rng::new(0)).unwrap();
        load_params(&mut linear, &reference, case);
        compare_layer(&mut linear, &reference, case, Mode::Train);
    }
}

#[test]
fn pooling_matches_pytorch() {
    let reference = Reference::open("pool");
    let mut count = 0;
    for (case, c) in reference.cases() {
        let mut layer: Box<dyn Layer> = match c["kind"].as_str().unwrap() {
            "gap" => Box::new(GlobalAvgPool::new()),
            kind => {
                let ((kh, kw), (sh, sw), (ph, pw)) = (pair(&c["k"]), pair(&c["s"]), pair(&c["p"]));
                // The first cases were written before these settings, at PyTorch's defaults.
                let flag =
                    |key: &str, default: bool| c.get(key).map_or(default, |v| v.as_bool().unwrap());
                let config = Pool2dConfig::new(1)
                    .kernel(kh, kw)
                    .stride_hw(sh, sw)
                    .padding_hw(ph, pw)
                    .ceil_mode(flag("ceil_mode", false))
                    .count_include_pad(flag("count_include_pad", true));
                match kind {
                    "max" => Box::new(MaxPool2d::new(config).unwrap()),
                    "avg" => Box::new(AvgPool2d::new(config).unwrap()),
                    other => panic!("{case}: unknown pooling {other}"),
                }
            }
        };
        compare_layer(layer.as_mut(), &reference, case, Mode::Train);
        count += 1;
    }
    // 8 cases at PyTorch's defaults, 11 with ceil_mode or count_include_pad.
    assert_eq!(count, 19);
}

#[test]
fn activations_match_pytorch() {
    let reference = Reference::open("activation");
    let mut cases = Vec::new();
    for (case, c) in reference.cases() {
        let mut layer: Box<dyn Layer> = match c["kind"].as_str().unwrap() {
            "relu" => Box::new(Relu::new()),
            "leakyrelu" => Box::new(LeakyRelu::new(c["negative_slope"].as_f64().unwrap() as f32)),
            "sigmoid" => Box::new(Sigmoid::new()),
            "tanh" => Box::new(Tanh::new()),
            "softmax" => Box::new(Softmax::new()),
            other => panic!("{case}: unknown activation {other}"),
        };
        compare_layer(layer.as_mut(), &reference, case, Mode::Train);
        cases.push(case.as_str());
    }
    assert_eq!(
        cases,
        [
            "leakyrelu",
            "leakyrelu_0.2",
            "relu",
            "sigmoid",
            "softmax",
            "tanh"
        ]
    );
}

fn buffer(layer: &dyn Layer, name: &str) -> Tensor {
    let (_, b) = layer
        .buffers()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no buffer {name}"));
    b.clone()
}

/// The case's BatchNorm settings: those the file names (`"momentum": null` is PyTorch's
/// None), PyTorch's defaults for the others and for the first cases, written before the
/// settings were.
fn batchnorm_config(reference: &Reference, case: &str, c: &serde_json::Value) -> BatchNormConfig {
    let features = match c.get("features") {
        Some(f) => int(f),
        None => reference.tensor(case, "weight").len(),
    };
    let mut config = BatchNormConfig::new(features);
    if let Some(eps) = c.get("eps") {
        config = config.eps(eps.as_f64().unwrap());
    }
    if let Some(momentum) = c.get("momentum") {
        config = config.momentum(momentum.as_f64());
    }
    if let Some(affine) = c.get("affine") {
        config = config.affine(affine.as_bool().unwrap());
    }
    if let Some(track) = c.get("track_running_stats") {
        config = config.track_running_stats(track.as_bool().unwrap());
    }
    config
}

#[test]
fn batchnorm_matches_pytorch_in_train_and_eval() {
    let reference = Reference::open("batchnorm");
    let mut count = 0;
    for (case, c) in reference.cases() {
        let config = batchnorm_config(&reference, case, c);
        let mut bn: Box<dyn Layer> = match int(&c["dims"]) {
            1 => Box::new(BatchNorm1d::with_config(config).unwrap()),
            2 => Box::new(BatchNorm2d::with_config(config).unwrap()),
            other => panic!("{case}: BatchNorm{other}d"),
        };
        // Without affine, neither PyTorch nor ocellus has a weight and a bias.
        assert_eq!(
            reference.try_tensor(case, "weight").is_some(),
            config.affine,
            "{case}"
        );
        assert_eq!(
            bn.params().len(),
            if config.affine { 2 } else { 0 },
            "{case}"
        );
        load_params(bn.as_mut(), &reference, case);
        let batches_before = c.get("batches_before").map_or(0, int);
        for (name, b) in bn.buffers_mut() {
            match name.as_str() {
                "running_mean" | "running_var" => {
                    *b = reference.tensor(case, &format!("{name}_before"));
                }
                "num_batches_tracked" => b.data_mut()[0] = batches_before as f32,
                other => panic!("{case}: unexpected buffer {other}"),
            }
        }
        let mode = match c["mode"].as_str().unwrap() {
            "train" => Mode::Train,
            "eval" => Mode::Eval,
            other => panic!("{case}: mode {other}"),
        };
        // The script's warm-up: training passes on x·0.5, so that the compared pass
        // compounds a second momentum update of the running statistics.
        let warmup = int(&c["warmup_passes"]);
        let mut half = reference.tensor(case, "x");
        half.data_mut().iter_mut().for_each(|v| *v *= 0.5);
        for _ in 0..warmup {
            bn.forward_ref(&half, mode).unwrap();
        }
        compare_layer(bn.as_mut(), &reference, case, mode);
        if !config.track_running_stats {
            assert!(bn.buffers().is_empty(), "{case}: buffers without tracking");
            assert!(
                reference.try_tensor(case, "running_mean").is_none(),
                "{case}"
            );
            count += 1;
            continue;
        }
        for name in ["running_mean", "running_var"] {
            assert_close(
                &format!("{case}: {name}"),
                buffer(bn.as_ref(), name).data(),
                reference.tensor(case, name).data(),
                RTOL,
                ATOL,
            );
        }
        let batches = batches_before + if mode == Mode::Train { warmup + 1 } else { 0 };
        assert_eq!(
            buffer(bn.as_ref(), "num_batches_tracked").data(),
            &[batches as f32],
            "{case}"
        );
        if let Some(want) = reference.try_tensor(case, "num_batches_tracked") {
            assert_eq!(want.data(), &[batches as f32], "{case}: PyTorch's count");
        }
        count += 1;
    }
    // 6 cases at PyTorch's defaults, 10 with other settings.
    assert_eq!(count, 16);
}

/// The modules of the script's `SmallCNN` and their positions in the zoo's `smallcnn`
/// (conv, BatchNorm, ReLU, pool, conv, BatchNorm, ReLU, pool, flatten, fc, ReLU, dropout,
/// fc): PyTorch's `conv1.weight` is ocellus's `0.weight`.
const SMALLCNN_MODULES: [(&str, usize); 6] = [
    ("conv1", 0),
    ("bn1", 1),
    ("conv2", 4),
    ("bn2", 5),
    ("fc1", 9),
    ("fc2", 12),
];

/// ocellus's name for a PyTorch parameter or buffer name of the SmallCNN.
fn smallcnn_name(torch_name: &str) -> String {
    let (module, field) = torch_name.split_once('.').unwrap();
    let (_, index) = SMALLCNN_MODULES
        .iter()
        .find(|(m, _)| *m == module)
        .unwrap_or_else(|| panic!("unknown module {module}"));
    format!("{index}.{field}")
}

#[test]
fn smallcnn_training_step_matches_pytorch() {
    let reference = Reference::open("smallcnn");
    let case = "step";
    let (_, config) = reference.cases().find(|(name, _)| *name == case).unwrap();
    let torch_names: Vec<&str> = config["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let lr = config["lr"].as_f64().unwrap() as f32;

    let mut net = zoo::model("smallcnn", [3, 32, 32], 10)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap();
    // The same parameters: PyTorch lists them in registration order, ocellus in forward
    // order, so compare the sets.
    let mut ours: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    let mut theirs: Vec<String> = torch_names.iter().map(|n| smallcnn_name(n)).collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);

    // The script's values: formula_values(shape, seed) with seed = the parameter's index in
    // named_parameters, conv and linear weights scaled by 1/sqrt(fan_in).
    for (seed, torch_name) in torch_names.iter().enumerate() {
        let name = smallcnn_name(torch_name);
        let mut params = net.params_mut();
        let (_, p) = params.iter_mut().find(|(n, _)| *n == name).unwrap();
        let shape = p.value().shape().to_vec();
        let mut values = formula_values(&shape, seed as u64);
        if shape.len() > 1 {
            let fan_in: usize = shape[1..].iter().product();
            let scale = (1.0 / (fan_in as f64).sqrt()) as f32;
            values.data_mut().iter_mut().for_each(|v| *v *= scale);
        }
        p.set(&name, values).unwrap();
    }

    // PyTorch's dropout mask, replayed by a Dropout put where the zoo's stands.
    assert_eq!(net.layers()[11].describe(), "Dropout(p=0.5)");
    let mut dropout = Dropout::with_seed(0.5, 0).unwrap();
    dropout.set_mask(&reference.tensor(case, "drop_mask"));
    net.layers_mut()[11] = Box::new(dropout);

    let mut x = formula_values(&[4, 3, 32, 32], 100);
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
    assert_close(
        "logits",
        logits.data(),
        reference.tensor(case, "logits").data(),
        RTOL,
        ATOL,
    );
    let (loss, dlogits) = cross_entropy(&logits, &targets, 0.0).unwrap();
    assert_close(
        "loss",
        &[loss],
        reference.tensor(case, "loss").data(),
        RTOL,
        ATOL,
    );
    net.backward_ref(&dlogits).unwrap();
    for torch_name in &torch_names {
        let name = smallcnn_name(torch_name);
        let (_, p) = net.params().into_iter().find(|(n, _)| *n == name).unwrap();
        assert_close(
            &format!("grad.{torch_name}"),
            p.grad().data(),
            reference.tensor(case, &format!("grad.{torch_name}")).data(),
            RTOL,
            ATOL,
        );
    }

    // A convolution bias followed by BatchNorm in training mode cancels in `x − μ`: its
    // gradient is zero, and what both sides hold is f32 rounding (|g| ~ 1e-8). Adam's first
    // step moves a value by `lr·g/(|g| + eps)` with eps = 1e-8, which turns that rounding
    // into anything up to ±lr. For those two the step starts from PyTorch's gradient, so
    // that the update is compared on equal inputs.
    for torch_name in ["conv1.bias", "conv2.bias"] {
        let name = smallcnn_name(torch_name);
        let want = reference.tensor(case, &format!("grad.{torch_name}"));
        let mut params = net.params_mut();
        let (_, p) = params.iter_mut().find(|(n, _)| *n == name).unwrap();
        assert!(
            p.grad().max_abs() < 1e-7 && want.max_abs() < 1e-7,
            "{torch_name}: a gradient that should be rounding noise"
        );
        p.grad_mut().copy_from_slice(want.data());
    }
    let mut optimizer = Adam::new(AdamConfig::adamw(lr)).unwrap();
    let values = |net: &Sequential| -> Vec<(String, Tensor)> {
        net.params()
            .into_iter()
            .map(|(n, p)| (n, p.value().clone()))
            .chain(net.buffers().into_iter().map(|(n, b)| (n, b.clone())))
            .collect()
    };
    let before = values(&net);
    optimizer.step(&mut net).unwrap();
    let after = values(&net);
    let find = |list: &[(String, Tensor)], name: &str| -> Tensor {
        list.iter().find(|(n, _)| n == name).unwrap().1.clone()
    };
    let mut compared = 0;
    for (module, _) in SMALLCNN_MODULES {
        for field in ["weight", "bias", "running_mean", "running_var"] {
            let torch_name = format!("{module}.{field}");
            let Some(want) = reference.try_tensor(case, &format!("after.{torch_name}")) else {
                continue;
            };
            let name = smallcnn_name(&torch_name);
            let got = find(&after, &name);
            assert_close(
                &format!("after.{torch_name}"),
                got.data(),
                want.data(),
                RTOL,
                ATOL,
            );
            compared += 1;
            if field.starts_with("running") {
                continue;
            }
            // A step moves a value by about lr = 1e-3, well inside the tolerance on the
            // value itself, so the step is compared too, both sides from the same f32
            // values: within 2e-7, a fifth of a thousandth of lr — just above the f32
            // spacing of values near 0.5 (6e-8), which limits how exactly a stored value
            // carries its step.
            let start = find(&before, &name);
            let step = |values: &Tensor| -> Vec<f64> {
                values
                    .data()
                    .iter()
                    .zip(start.data())
                    .map(|(a, b)| *a as f64 - *b as f64)
                    .collect()
            };
            let (ours, theirs) = (step(&got), step(&want));
            let ours: Vec<f32> = ours.iter().map(|v| *v as f32).collect();
            assert_close(&format!("step of {torch_name}"), &ours, &theirs, 0.0, 2e-7);
        }
    }
    // Every parameter but fc1.weight, and the four running statistics.
    assert_eq!(compared, torch_names.len() - 1 + 4);
}
