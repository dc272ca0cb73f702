//! The layer-by-layer gradient check of whole networks: it passes on every zoo model and
//! every shipped architecture file, opens residual blocks, and names the layer whose
//! gradient is wrong.

use ocellus::arch::Architecture;
use ocellus::gradcheck::{check_network_layers, keep_off_kinks, GradCheckConfig, NetworkCheck};
use ocellus::layers::Randomness;
use ocellus::layers::{Conv2d, Conv2dConfig, Flatten, Key, Linear, Part, PartMut, Relu};
use ocellus::spec::LayerSpec;
use ocellus::LayerExt;
use ocellus::Residual;
use ocellus::{zoo, Layer, Mode, Param, Result, Rng, Sequential, Tensor};

/// `y = s·x` with a learnable scalar `s`; `backward` gets `dx` wrong by `dx_error` (a
/// factor) or the gradient of `s` wrong by `ds_error`, as a buggy layer would.
struct Scale {
    s: Param,
    dx_error: f32,
    ds_error: f32,
    input: Option<Tensor>,
}

impl Scale {
    fn new(dx_error: f32, ds_error: f32) -> Self {
        Scale {
            s: Param::new(Tensor::full(&[1], 1.5)),
            dx_error,
            ds_error,
            input: None,
        }
    }
}

impl Layer for Scale {
    fn kind(&self) -> &'static str {
        "scale"
    }
    fn describe(&self) -> String {
        "Scale".into()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    /// x: any shape -> y: the same shape, `y = s·x`
    fn spec(&self) -> LayerSpec {
        LayerSpec::Custom {
            kind: "scale".into(),
        }
    }
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let s = self.s.value().data()[0];
        let y = Tensor::from_vec(x.shape(), x.data().iter().map(|v| s * v).collect());
        self.input = Some(x);
        y
    }
    /// dy -> dx = s·dy (times the error); ds += Σ dy·x (times the error)
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let x = self.input.as_ref().expect("forward first");
        let s = self.s.value().data()[0];
        let ds: f32 = dy.data().iter().zip(x.data()).map(|(d, v)| d * v).sum();
        self.s.grad_mut()[0] += ds * self.ds_error;
        let dx = dy.data().iter().map(|d| s * d * self.dx_error).collect();
        Tensor::from_vec(dy.shape(), dx)
    }
    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        vec![(Key::Name("s"), Part::Param(&self.s))]
    }
    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        vec![(Key::Name("s"), PartMut::Param(&mut self.s))]
    }
}

fn conv(ic: usize, oc: usize, rng: &mut Rng) -> Conv2d {
    Conv2d::new(Conv2dConfig::new(ic, oc, 3).padding(1), rng).unwrap()
}

fn failing(check: &NetworkCheck) -> Vec<(String, Vec<String>)> {
    check
        .failed_layers()
        .into_iter()
        .map(|l| {
            let tensors = l
                .report
                .tensors
                .iter()
                .filter(|t| !t.passed)
                .map(|t| t.name.clone())
                .collect();
            (l.name.clone(), tensors)
        })
        .collect()
}

fn small_net(middle: Scale, rng: &mut Rng) -> Sequential {
    Sequential::new()
        .with(conv(1, 3, rng))
        .with(Relu::new())
        .with(middle)
        .with(Flatten::new())
        .with(Linear::new(3 * 6 * 6, 4, rng).unwrap())
}

#[test]
fn a_correct_layer_of_our_own_passes_inside_a_network() {
    let mut rng = Rng::new(1);
    let mut net = small_net(Scale::new(1.0, 1.0), &mut rng);
    let x = Tensor::randn(&[2, 1, 6, 6], 1.0, &mut rng);
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert!(check.passed(), "{check}");
    let names: Vec<&str> = check.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3", "4"]);
    // Parameters are named as in the network's state_dict.
    let tensors: Vec<&str> = check.layers[2]
        .report
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(tensors, ["input", "2.s"]);
}

#[test]
fn a_wrong_input_gradient_is_pinned_on_its_layer() {
    let mut rng = Rng::new(2);
    let mut net = small_net(Scale::new(1.1, 1.0), &mut rng);
    let x = Tensor::randn(&[2, 1, 6, 6], 1.0, &mut rng);
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert!(!check.passed());
    // Each layer is checked on its own, so the layers around the broken one still pass.
    assert_eq!(
        failing(&check),
        [("2".to_string(), vec!["input".to_string()])],
        "{check}"
    );
    let text = check.to_string();
    assert!(text.contains("FAIL: layer 2 (Scale): input"), "{text}");
}

#[test]
fn a_wrong_parameter_gradient_inside_a_residual_block_is_named_by_its_path() {
    let mut rng = Rng::new(3);
    let main = Sequential::new()
        .with(conv(3, 3, &mut rng))
        .with(Scale::new(1.0, 0.5));
    let mut net = Sequential::new()
        .with(conv(1, 3, &mut rng))
        .with(Residual::new(main, None, Some(Box::new(Relu::new()))))
        .with(Flatten::new())
        .with(Linear::new(3 * 5 * 5, 2, &mut rng).unwrap());
    let x = Tensor::randn(&[2, 1, 5, 5], 1.0, &mut rng);
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert_eq!(
        failing(&check),
        [("1.main.1".to_string(), vec!["1.main.1.s".to_string()])],
        "{check}"
    );
    let names: Vec<&str> = check.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["0", "1.main.0", "1.main.1", "1.act", "2", "3"]);
    // The retries at other steps replace only what failed: the input of the broken
    // layer passed at the configured step and is reported at it.
    let broken = &check.layers[2];
    assert!(broken.report.tensors[0].passed);
    assert_eq!(broken.steps[0], GradCheckConfig::default().epsilon);
}

/// Checks `arch` with `batch` random images and fails with the whole table.
fn assert_network_passes(what: &str, arch: &Architecture, batch: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut net = arch.build(&mut rng).unwrap();
    let [c, h, w] = arch.input;
    let x = Tensor::randn(&[batch, c, h, w], 1.0, &mut rng);
    let cfg = GradCheckConfig {
        seed,
        mode: Mode::Train,
        ..GradCheckConfig::default()
    };
    let check = check_network_layers(&mut net, &x, &cfg).unwrap();
    assert!(check.passed(), "{what}, seed {seed}:\n{check}");
    for layer in &check.layers {
        for t in &layer.report.tensors {
            assert!(t.checked > 0, "{what}: nothing checked in {}", t.name);
        }
    }
}

#[test]
fn every_zoo_model_passes() {
    for (name, input) in [
        ("lenet5", [1, 28, 28]),
        ("smallcnn", [3, 16, 16]),
        ("vgg", [3, 16, 16]),
        ("resnet20", [3, 16, 16]),
        ("mlp", [1, 28, 28]),
        ("alexnet", [1, 16, 16]),
        ("inception", [3, 16, 16]),
        ("resnet-bottleneck", [3, 16, 16]),
        ("densenet", [1, 16, 16]),
        ("efficientnet", [3, 16, 16]),
    ] {
        let arch = zoo::model(name, input, 10).unwrap();
        for seed in 0..2 {
            assert_network_passes(name, &arch, 2, seed);
        }
    }
}

#[test]
fn the_shipped_architecture_files_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/architectures");
    for name in ["lenet5.toml", "cifar_notes.toml", "residual_small.toml"] {
        let arch = Architecture::from_file(&dir.join(name)).unwrap();
        assert_network_passes(name, &arch, 2, 0);
    }
}

#[test]
fn residual_blocks_are_opened_into_their_layers() {
    let arch = zoo::model("resnet20", [3, 8, 8], 10).unwrap();
    let mut rng = Rng::new(0);
    let mut net = arch.build(&mut rng).unwrap();
    let x = Tensor::randn(&[2, 3, 8, 8], 1.0, &mut rng);
    let cfg = GradCheckConfig {
        max_samples: 4,
        ..GradCheckConfig::default()
    };
    let check = check_network_layers(&mut net, &x, &cfg).unwrap();
    let names: Vec<&str> = check.layers.iter().map(|l| l.name.as_str()).collect();
    for name in [
        "3.main.0",
        "3.main.4",
        "3.act",
        "6.shortcut.0",
        "6.shortcut.1",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // Every parameter of the network is checked exactly once.
    let mut checked: Vec<String> = check
        .layers
        .iter()
        .flat_map(|l| l.report.tensors.iter().skip(1).map(|t| t.name.clone()))
        .collect();
    let mut params: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    checked.sort();
    params.sort();
    assert_eq!(checked, params);
}

#[test]
fn keep_off_kinks_clears_zero_and_breaks_ties() {
    let eps = 0.01;
    let x = Tensor::from_vec(&[8], vec![0.0, 0.0, 0.0, 0.005, -0.015, 0.5, -2.0, 0.0]).unwrap();
    let y = keep_off_kinks(&x, eps, &mut Rng::new(0));
    assert!(y.data().iter().all(|v| v.abs() >= 2.0 * eps), "{y:?}");
    // Zeros became distinct negative values; other values keep their sign.
    let zeros: Vec<f32> = [0, 1, 2, 7].iter().map(|&i| y.data()[i]).collect();
    assert!(zeros.iter().all(|v| *v < 0.0), "{zeros:?}");
    for i in 0..zeros.len() {
        for j in i + 1..zeros.len() {
            assert_ne!(zeros[i], zeros[j]);
        }
    }
    assert_eq!(&y.data()[5..7], &[0.5, -2.0]);
    assert!((y.data()[3] - 0.025).abs() < 1e-6 && (y.data()[4] + 0.035).abs() < 1e-6);
    // Once away from the kinks, a second pass changes nothing.
    assert_eq!(keep_off_kinks(&y, eps, &mut Rng::new(1)), y);
}

/// Training skips the gradient of the data (`backward_params`); the parameter gradients
/// must be exactly those of a full backward pass.
#[test]
fn backward_without_the_data_gradient_gives_the_same_parameter_gradients() {
    for (name, input) in [
        ("lenet5", [1, 28, 28]),
        ("smallcnn", [3, 16, 16]),
        ("mlp", [1, 28, 28]),
    ] {
        let arch = zoo::model(name, input, 10).unwrap();
        let mut rng = Rng::new(3);
        let mut full = arch.build(&mut rng).unwrap();
        let mut params_only = arch.build(&mut Rng::new(3)).unwrap();
        let x = Tensor::randn(&[4, input[0], input[1], input[2]], 1.0, &mut rng);
        let dy = Tensor::randn(&[4, 10], 1.0, &mut rng);
        for net in [&mut full, &mut params_only] {
            net.set_randomness(Randomness::Frozen);
            net.forward_ref(&x, Mode::Train).unwrap();
        }
        full.backward_ref(&dy).unwrap();
        params_only.backward_params(dy.clone()).unwrap();
        let grads = |net: &Sequential| -> Vec<(String, Vec<f32>)> {
            net.params()
                .into_iter()
                .map(|(n, p)| (n, p.grad().data().to_vec()))
                .collect()
        };
        let want = grads(&full);
        assert!(
            want.iter().any(|(_, g)| g.iter().any(|v| *v != 0.0)),
            "{name}"
        );
        assert_eq!(grads(&params_only), want, "{name}");
    }
}

#[test]
fn keep_off_kinks_moves_only_values_near_a_kink_and_by_the_stated_amounts() {
    let eps = 0.01;
    let margin = 2.0 * eps;
    let mut values = vec![0.005, -0.005, 1.0, -0.5, 0.02, 3.0, -3.0];
    values.extend([0.0; 200]);
    let x = Tensor::from_vec(&[values.len()], values.clone()).unwrap();
    let y = keep_off_kinks(&x, eps, &mut Rng::new(1));
    let y = y.data();
    // Closer to zero than 2ε: pushed out by exactly 2ε, keeping the sign.
    assert_eq!(y[0], 0.005 + margin);
    assert_eq!(y[1], -0.005 - margin);
    // Everything else stays.
    assert_eq!(&y[2..7], &values[2..7]);
    // Zeros become distinct negative values in −(2ε + s) … −2ε, s the root mean square
    // of the non-zero values, and they spread over most of that range.
    let nonzero = &values[..7];
    let s = (nonzero.iter().map(|v| v * v).sum::<f32>() / nonzero.len() as f32).sqrt();
    let zeros = &y[7..];
    assert!(zeros.iter().all(|&v| v <= -margin && v >= -(margin + s)));
    let deepest = zeros.iter().fold(0.0f32, |m, &v| m.min(v));
    assert!(deepest < -(margin + 0.9 * s), "{deepest} vs s = {s}");
    let mut sorted = zeros.to_vec();
    sorted.sort_by(f32::total_cmp);
    sorted.dedup();
    assert_eq!(sorted.len(), zeros.len());
    // A second pass changes nothing.
    let again = keep_off_kinks(
        &Tensor::from_vec(&[y.len()], y.to_vec()).unwrap(),
        eps,
        &mut Rng::new(2),
    );
    assert_eq!(again.data(), y);
}

#[test]
fn the_check_table_separates_its_columns() {
    let mut rng = Rng::new(4);
    let mut net = small_net(Scale::new(1.0, 1.0), &mut rng);
    let x = Tensor::randn(&[2, 1, 6, 6], 1.0, &mut rng);
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    let text = check.to_string();
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("layer  "), "{text}");
    for word in [
        "description",
        "tensor",
        "shape",
        "checked",
        "skipped",
        "result",
    ] {
        assert!(header.contains(&format!("  {word}")), "{word}: {header}");
    }
}

#[test]
#[should_panic(expected = "mismatch at index 1")]
fn assert_close_fails_on_a_value_out_of_tolerance() {
    ocellus::gradcheck::assert_close("values", &[1.0, 2.0], &[1.0f32, 2.1], 1e-4, 1e-5);
}

#[test]
fn assert_close_accepts_values_within_tolerance() {
    ocellus::gradcheck::assert_close("values", &[1.0, 2.0001], &[1.0f32, 2.0], 1e-4, 1e-5);
}
