//! The library as a user meets it, through the public API only: building layers from given
//! weights, setting parameters by name, optimisers on any parameters, the tensor's
//! operations and the layer contract's walk of a network. Every mistake a user can make
//! here is an `Error` naming the thing and the shapes, never a panic.

use ocellus::gradcheck::{check_network_layers, GradCheckConfig};
use ocellus::layers::{Conv2d, Conv2dConfig, Key, Linear, Padding, Part, PartMut, Relu, Softmax};
use ocellus::optim::{Adam, AdamConfig, Sgd, SgdConfig};
use ocellus::prelude::*;
use ocellus::spec::LayerSpec;
use ocellus::summary::Summary;
use ocellus::{arch::Architecture, zoo, Result};

fn message<T>(result: Result<T>) -> String {
    match result {
        Ok(_) => panic!("a mistake must be an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_convolution_built_from_given_weights_computes_with_them() {
    // One 2×2 filter that sums its window, bias 1.
    let config = Conv2dConfig::new(1, 1, 2);
    let weight = Tensor::full(&[1, 1, 2, 2], 1.0);
    let bias = Tensor::full(&[1], 1.0);
    let mut conv = Conv2d::from_weights(config, weight, Some(bias)).unwrap();
    let x = Tensor::from_vec(&[1, 1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let y = conv.forward(x, Mode::Eval).unwrap();
    assert_eq!(y.data(), &[13.0, 17.0]);
}

#[test]
fn a_convolution_refuses_weights_of_the_wrong_shape() {
    let config = Conv2dConfig::new(3, 8, 3);
    let msg = message(Conv2d::from_weights(
        config,
        Tensor::zeros(&[8, 3, 5, 5]),
        Some(Tensor::zeros(&[8])),
    ));
    assert!(msg.contains("conv2d weight"), "{msg}");
    assert!(
        msg.contains("(8, 3, 3, 3)") && msg.contains("(8, 3, 5, 5)"),
        "{msg}"
    );
    let msg = message(Conv2d::from_weights(
        config,
        Tensor::zeros(&[8, 3, 3, 3]),
        Some(Tensor::zeros(&[4])),
    ));
    assert!(msg.contains("conv2d bias") && msg.contains("(8,)") && msg.contains("(4,)"));
    // A bias exactly when the configuration has one.
    assert!(Conv2d::from_weights(config, Tensor::zeros(&[8, 3, 3, 3]), None).is_err());
    let no_bias = config.bias(false);
    assert!(Conv2d::from_weights(no_bias, Tensor::zeros(&[8, 3, 3, 3]), None).is_ok());
    // Groups divide the input channels of the weight: (OC, IC/groups, KH, KW).
    let grouped = Conv2dConfig::new(4, 6, 3).groups(2);
    assert!(Conv2d::from_weights(
        grouped,
        Tensor::zeros(&[6, 2, 3, 3]),
        Some(Tensor::zeros(&[6]))
    )
    .is_ok());
    assert!(Conv2d::from_weights(
        grouped,
        Tensor::zeros(&[6, 4, 3, 3]),
        Some(Tensor::zeros(&[6]))
    )
    .is_err());
}

#[test]
fn a_linear_layer_takes_its_sizes_from_the_weight() {
    let weight = Tensor::from_vec(&[2, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]).unwrap();
    let mut fc = Linear::from_weights(
        weight,
        Some(Tensor::from_vec(&[2], vec![0.5, -0.5]).unwrap()),
    )
    .unwrap();
    let y = fc
        .forward(
            Tensor::from_vec(&[1, 3], vec![1.0, 2.0, 3.0]).unwrap(),
            Mode::Eval,
        )
        .unwrap();
    assert_eq!(y.data(), &[1.5, 4.5]);
    let msg = message(Linear::from_weights(
        Tensor::zeros(&[2, 3]),
        Some(Tensor::zeros(&[3])),
    ));
    assert!(msg.contains("(2,)") && msg.contains("(3,)"), "{msg}");
    let msg = message(Linear::from_weights(Tensor::zeros(&[2, 3, 1]), None));
    assert!(
        msg.contains("(out, in)") && msg.contains("(2, 3, 1)"),
        "{msg}"
    );
}

#[test]
fn setting_a_parameter_by_name_checks_its_shape_and_changes_nothing_on_error() {
    let mut rng = Rng::new(0);
    let mut net = Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(1, 2, 3), &mut rng).unwrap())
        .with(Relu::new());
    let before = net.params()[0].1.value().clone();
    let msg = message(net.set("0.weight", Tensor::zeros(&[2, 1, 5, 5])));
    assert!(msg.contains("0.weight"), "{msg}");
    assert!(
        msg.contains("(2, 1, 3, 3)") && msg.contains("(2, 1, 5, 5)"),
        "{msg}"
    );
    assert_eq!(
        net.params()[0].1.value(),
        &before,
        "a refused value changes nothing"
    );
    // The network still runs: no kernel ever sees a parameter of the wrong shape.
    net.forward(Tensor::zeros(&[1, 1, 4, 4]), Mode::Eval)
        .unwrap();

    let msg = message(net.set("0.wieght", Tensor::zeros(&[2, 1, 3, 3])));
    assert!(msg.contains("0.wieght"), "{msg}");
    net.set("0.weight", Tensor::full(&[2, 1, 3, 3], 0.5))
        .unwrap();
    assert_eq!(net.params()[0].1.value().data(), &[0.5; 18]);
    // A Param on its own refuses a reshape too.
    let (_, p) = &mut net.params_mut()[1];
    assert!(p.set("bias", Tensor::zeros(&[3])).is_err());
    assert_eq!(p.shape(), &[2]);
}

#[test]
fn buffers_are_set_by_name_with_the_same_check() {
    let mut net = zoo::model("smallcnn", [3, 32, 32], 10)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap();
    let names: Vec<String> = net.buffers().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"1.running_mean".to_string()), "{names:?}");
    let msg = message(net.set("1.running_mean", Tensor::zeros(&[16])));
    assert!(msg.contains("(32,)") && msg.contains("(16,)"), "{msg}");
    net.set("1.running_mean", Tensor::full(&[32], 2.0)).unwrap();
    let (_, mean) = net
        .buffers()
        .into_iter()
        .find(|(n, _)| n == "1.running_mean")
        .unwrap();
    assert_eq!(mean.data(), &[2.0; 32]);
}

#[test]
fn per_axis_settings_of_a_convolution() {
    let config = Conv2dConfig::new(1, 1, 1)
        .kernel(3, 1)
        .stride_hw(2, 1)
        .padding_hw(1, 0)
        .dilation_hw(1, 2);
    let conv = Conv2d::new(config, &mut Rng::new(0)).unwrap();
    // OH = ⌊(9 + 2 − 3)/2⌋ + 1 = 5, OW = 7 − 2·(1 − 1) = 7.
    assert_eq!(conv.output_shape(&[1, 1, 9, 7]).unwrap(), vec![1, 1, 5, 7]);
    let sides = Conv2dConfig::new(1, 1, 3).padding_sides(Padding {
        top: 2,
        bottom: 0,
        left: 0,
        right: 1,
    });
    let conv = Conv2d::new(sides, &mut Rng::new(0)).unwrap();
    assert_eq!(conv.output_shape(&[1, 1, 5, 5]).unwrap(), vec![1, 1, 5, 4]);
    let LayerSpec::Conv2d { padding, .. } = conv.spec() else {
        panic!("a convolution describes itself as one")
    };
    assert_eq!(padding, ocellus::spec::PadSpec::PerSide([2, 0, 0, 1]));
    // Symmetric means both axes: top = bottom and left = right.
    let sides = |top, bottom, left, right| Padding {
        top,
        bottom,
        left,
        right,
    };
    assert!(sides(1, 1, 2, 2).is_symmetric());
    assert!(!sides(1, 1, 2, 3).is_symmetric());
    assert!(!sides(1, 2, 2, 2).is_symmetric());
}

#[test]
fn an_optimiser_steps_parameters_that_belong_to_no_layer() {
    // Minimise (w − 3)² by hand-made gradients: w ← w − lr·2(w − 3).
    let mut w = Param::new(Tensor::full(&[1], 0.0));
    let mut sgd = Sgd::new(SgdConfig::new(0.25)).unwrap();
    for _ in 0..20 {
        let value = w.value().data()[0];
        w.grad_mut()[0] = 2.0 * (value - 3.0);
        sgd.step_params(&mut [("w".to_string(), &mut w)]).unwrap();
    }
    assert!((w.value().data()[0] - 3.0).abs() < 1e-5);
    // Adam keeps its moments by name: another parameter under the same name is refused
    // when its shape differs.
    let mut adam = Adam::new(AdamConfig::adamw(1e-2)).unwrap();
    adam.step_params(&mut [("w".to_string(), &mut w)]).unwrap();
    let mut other = Param::new(Tensor::zeros(&[2]));
    let msg = message(adam.step_params(&mut [("w".to_string(), &mut other)]));
    assert!(
        msg.contains("w") && msg.contains("(2,)") && msg.contains("(1,)"),
        "{msg}"
    );
}

#[test]
fn a_learning_rate_must_be_finite_and_not_negative() {
    let mut sgd = Sgd::new(SgdConfig::new(0.1)).unwrap();
    for lr in [-0.1, f32::NAN, f32::INFINITY] {
        let msg = message(sgd.set_lr(lr));
        assert!(msg.contains("learning rate"), "{msg}");
        assert_eq!(sgd.lr(), 0.1, "a refused rate leaves the old one");
    }
    let mut adam = Adam::new(AdamConfig::adamw(1e-3)).unwrap();
    assert!(adam.set_lr(f32::NAN).is_err());
    adam.set_lr(0.0).unwrap();
    assert_eq!(adam.lr(), 0.0);
}

#[test]
fn tensor_operations_on_mismatched_shapes_are_errors() {
    let mut a = Tensor::zeros(&[2, 3]);
    let b = Tensor::zeros(&[3, 2]);
    let msg = message(a.add_assign(&b));
    assert!(msg.contains("(2, 3)") && msg.contains("(3, 2)"), "{msg}");
    assert!(a.copy_from(&b).is_err());
    assert!(a.zip_map(&b, |u, v| u + v).is_err());
    assert!(a.clone().into_zip_map(&b, |u, v| u + v).is_err());
    assert!(a.dims4().is_err());
    assert_eq!(a.dims2().unwrap(), (2, 3));
    assert!(Tensor::zeros(&[1, 2, 2, 2]).argmax_rows().is_err());
    assert_eq!(a.image(1), Some(&[0.0; 3][..]));
    assert_eq!(a.image(2), None);
    // An empty axis does not divide by zero.
    assert_eq!(Tensor::zeros(&[0, 3]).unravel(5), vec![0, 2]);
}

#[test]
fn relu_keeps_nan_so_a_diverging_run_shows() {
    let mut relu = Relu::new();
    let y = relu
        .forward(
            Tensor::from_vec(&[4], vec![f32::NAN, -1.0, 0.0, 2.0]).unwrap(),
            Mode::Eval,
        )
        .unwrap();
    assert!(y.data()[0].is_nan());
    assert_eq!(&y.data()[1..], &[0.0, 0.0, 2.0]);
    // PyTorch's threshold_backward: the gradient passes where y > 0 only.
    let dx = relu.backward(Tensor::full(&[4], 1.0)).unwrap();
    assert_eq!(dx.data(), &[0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn every_zoo_network_is_rebuilt_from_its_own_spec() {
    for name in ["lenet5", "smallcnn", "vgg", "resnet20", "mlp"] {
        let arch = zoo::model(name, [3, 32, 32], 10).unwrap();
        let net = arch.build(&mut Rng::new(1)).unwrap();
        let LayerSpec::Sequential { layers } = net.spec() else {
            panic!("a Sequential describes itself as one")
        };
        let again = Architecture {
            name: None,
            input: arch.input,
            layers,
        }
        .build(&mut Rng::new(1))
        .unwrap();
        assert_eq!(again.spec(), net.spec(), "{name}");
        let names =
            |n: &Sequential| -> Vec<String> { n.params().into_iter().map(|(k, _)| k).collect() };
        assert_eq!(names(&again), names(&net), "{name}");
        let x = Tensor::randn(&[2, 3, 32, 32], 1.0, &mut Rng::new(2));
        let (mut net, mut again) = (net, again);
        assert_eq!(
            net.forward_ref(&x, Mode::Eval).unwrap(),
            again.forward_ref(&x, Mode::Eval).unwrap(),
            "{name}"
        );
    }
}

/// A container that lists children but describes itself as a leaf: code that opens
/// containers must refuse it rather than treat it as one layer.
struct Opaque(Sequential);

impl Layer for Opaque {
    fn kind(&self) -> &'static str {
        "opaque"
    }
    fn describe(&self) -> String {
        "Opaque".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Custom {
            kind: "opaque".into(),
        }
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.0.output_shape(input)
    }
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.0.forward(x, mode)
    }
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        self.0.backward(dy)
    }
    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        vec![(Key::Name("inner"), Part::Layer(&self.0))]
    }
    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        vec![(Key::Name("inner"), PartMut::Layer(&mut self.0))]
    }
}

#[test]
fn a_container_that_does_not_say_how_it_combines_its_children_is_refused() {
    let mut rng = Rng::new(3);
    let inner = Sequential::new().with(Linear::new(4, 3, &mut rng).unwrap());
    let mut net = Sequential::new().with(Opaque(inner)).with(Softmax::new());
    // Its parameters are still found and named through it.
    let names: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.inner.0.weight", "0.inner.0.bias"]);
    let msg = message(Summary::of(&net, &[2, 4]));
    assert!(msg.contains("does not say how it combines"), "{msg}");
    let x = Tensor::randn(&[2, 4], 1.0, &mut rng);
    let msg = message(check_network_layers(
        &mut net,
        &x,
        &GradCheckConfig::default(),
    ));
    assert!(msg.contains("does not say how it combines"), "{msg}");
}
