//! The library as a user meets it, through the public API only: building layers from given
//! weights, setting parameters by name, optimisers on any parameters, the tensor's
//! operations and the layer contract's walk of a network. Every mistake a user can make
//! here is an `Error` naming the thing and the shapes, never a panic.

use ocellus::gradcheck::{check_network_layers, GradCheckConfig};
use ocellus::layers::{
    Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, Hardswish, Key, Linear, Padding,
    Part, PartMut, Relu, Silu, Softmax, Upsample, UpsampleMode, UpsampleSize,
};
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
    assert!(msg.contains("add_assign"), "the operation named: {msg}");
    let msg = message(a.zip_assign(&b, |u, v| u * v));
    assert!(
        msg.contains("zip_assign") && msg.contains("(3, 2)"),
        "{msg}"
    );
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

/// An encoder-decoder written with every entry added for upsampling networks.
const ENCODER_DECODER: &str = r#"
name = "encoder-decoder"
input = [3, 16, 16]

[[layers]]
type = "conv2d"
out_channels = 8
kernel = 3
stride = 2
padding = 1

[[layers]]
type = "silu"

[[layers]]
type = "convtranspose2d"
in_channels = 8
out_channels = 4
kernel = 3
stride = 2
padding = 1
output_padding = 1
groups = 2

[[layers]]
type = "hardswish"

[[layers]]
type = "upsample"
scale = [2, 1]
mode = "bilinear"

[[layers]]
type = "upsample"
size = [16, 16]
"#;

#[test]
fn an_architecture_file_with_the_upsampling_entries_builds_and_summarises() {
    let arch = Architecture::parse(ENCODER_DECODER, false).unwrap();
    assert_eq!(Architecture::parse(&arch.to_toml(), false).unwrap(), arch);
    assert_eq!(Architecture::parse(&arch.to_json(), true).unwrap(), arch);
    let mut net = arch.build(&mut Rng::new(0)).unwrap();
    let table = Summary::of(&net, &[2, 3, 16, 16]).unwrap();
    let rows: Vec<(&str, &[usize])> = table
        .rows
        .iter()
        .map(|r| (r.kind.as_str(), &r.output_shape[..]))
        .collect();
    assert_eq!(
        rows,
        [
            ("conv2d", &[2, 8, 8, 8][..]),
            ("silu", &[2, 8, 8, 8][..]),
            ("convtranspose2d", &[2, 4, 16, 16][..]),
            ("hardswish", &[2, 4, 16, 16][..]),
            ("upsample", &[2, 4, 32, 16][..]),
            ("upsample", &[2, 4, 16, 16][..]),
        ]
    );
    // Conv 3·9·8 + 8; transposed (8, 4/2, 3, 3) + 4.
    assert_eq!(table.total_params, (3 * 9 * 8 + 8) + (8 * 2 * 9 + 4));
    assert_eq!(table.rows[2].macs, 2 * 8 * 8 * 8 * 2 * 9);
    assert_eq!(table.rows[4].macs, 4 * 2 * 4 * 32 * 16);
    // RF: 3 (jump 2), then the transposed layer sees two units: 3 + 2, jump 1; bilinear
    // along the height adds one more unit.
    let rf: Vec<(usize, usize)> = table
        .rows
        .iter()
        .map(|r| (r.receptive_field[0].size, r.receptive_field[0].jump))
        .collect();
    assert_eq!(rf, [(3, 2), (3, 2), (5, 1), (5, 1), (6, 1), (6, 1)]);
    assert!(table.to_string().contains("ConvTranspose2d(8→4, 3×3"));
    let x = Tensor::randn(&[2, 3, 16, 16], 1.0, &mut Rng::new(1));
    let y = net.forward(x, Mode::Train).unwrap();
    assert_eq!(y.shape(), &[2, 4, 16, 16]);
    net.backward(y).unwrap();
}

#[test]
fn architecture_mistakes_with_the_upsampling_entries_name_the_layer() {
    let cases = [
        (
            "type = \"convtranspose2d\"\nin_channels = 4\nout_channels = 2\nkernel = 3\n",
            "layer 0 (convtranspose2d): expects 4 input channels, but the previous layer gives 3 channels",
        ),
        (
            "type = \"convtranspose2d\"\nout_channels = 2\nkernel = 3\nstride = 2\noutput_padding = 2\n",
            "layer 0 (convtranspose2d): output padding must be smaller than either stride or dilation",
        ),
        (
            "type = \"upsample\"\nscale = 2\nsize = 8\n",
            "layer 0 (upsample): give either scale",
        ),
        ("type = \"upsample\"\n", "layer 0 (upsample): give either scale"),
        (
            "type = \"upsample\"\nscale = 0\n",
            "layer 0 (upsample): scale factors must be positive",
        ),
    ];
    for (layer, words) in cases {
        let text = format!("input = [3, 8, 8]\n[[layers]]\n{layer}");
        let msg = message(
            Architecture::parse(&text, false)
                .unwrap()
                .build(&mut Rng::new(0)),
        );
        assert!(msg.starts_with(words), "{msg}");
    }
    let text =
        "input = [3, 8, 8]\n[[layers]]\ntype = \"upsample\"\nscale = 2\nmode = \"bicubic\"\n";
    let msg = Architecture::parse(text, false).unwrap_err();
    assert!(msg.contains("bicubic") && msg.contains("bilinear"), "{msg}");
}

#[test]
fn each_new_layer_is_rebuilt_from_its_spec_with_the_same_outputs() {
    let mut rng = Rng::new(5);
    let transposed = |config: ConvTranspose2dConfig| -> Box<dyn Layer> {
        Box::new(ConvTranspose2d::new(config, &mut Rng::new(6)).unwrap())
    };
    let layers: Vec<Box<dyn Layer>> = vec![
        transposed(ConvTranspose2dConfig::new(4, 6, 3)),
        transposed(
            ConvTranspose2dConfig::new(4, 6, 3)
                .kernel(3, 2)
                .stride_hw(2, 3)
                .padding_hw(1, 0)
                .output_padding_hw(1, 2)
                .dilation_hw(1, 2)
                .groups(2)
                .bias(false),
        ),
        transposed(ConvTranspose2dConfig::new(4, 4, 2).stride(2).groups(4)),
        Box::new(Upsample::new(2, UpsampleMode::Nearest).unwrap()),
        Box::new(Upsample::with_scale(3, 2, UpsampleMode::Bilinear).unwrap()),
        Box::new(Upsample::with_size(UpsampleSize::Fixed(7, 5), UpsampleMode::Bilinear).unwrap()),
        Box::new(Upsample::with_size(UpsampleSize::Fixed(9, 9), UpsampleMode::Nearest).unwrap()),
        Box::new(Silu::new()),
        Box::new(Hardswish::new()),
    ];
    let x = Tensor::randn(&[2, 4, 5, 6], 2.0, &mut rng);
    for mut layer in layers {
        let arch = Architecture {
            name: None,
            input: [4, 5, 6],
            layers: vec![layer.spec()],
        };
        // Through the file format too.
        let arch = Architecture::parse(&arch.to_toml(), false).unwrap();
        let mut again = arch.build(&mut Rng::new(7)).unwrap();
        assert_eq!(
            again.spec(),
            LayerSpec::Sequential {
                layers: vec![layer.spec()]
            }
        );
        for (name, p) in layer.params() {
            again.set(&format!("0.{name}"), p.value().clone()).unwrap();
        }
        let what = layer.describe();
        assert_eq!(again.layers()[0].describe(), what);
        assert_eq!(
            again.forward_ref(&x, Mode::Eval).unwrap(),
            layer.forward_ref(&x, Mode::Eval).unwrap(),
            "{what}"
        );
    }
}

#[test]
fn layers_and_optimisers_describe_their_settings() {
    use ocellus::layers::{BatchNorm2d, Dropout, Flatten, MaxPool2d, Pool2dConfig};
    let mut rng = Rng::new(0);
    let described: Vec<String> = [
        Box::new(Linear::new(4, 3, &mut rng).unwrap()) as Box<dyn Layer>,
        Box::new(Flatten::new()),
        Box::new(Dropout::new(0.25, &mut rng).unwrap()),
        Box::new(BatchNorm2d::new(8).unwrap()),
        Box::new(MaxPool2d::new(Pool2dConfig::new(2)).unwrap()),
        Box::new(Conv2d::new(Conv2dConfig::new(3, 4, 5).padding(2), &mut rng).unwrap()),
    ]
    .iter()
    .map(|l| l.describe())
    .collect();
    assert_eq!(
        described,
        [
            "Linear(4→3)",
            "Flatten",
            "Dropout(p=0.25)",
            "BatchNorm2d(8)",
            "MaxPool2d(2×2, stride 2)",
            "Conv2d(3→4, 5×5, pad 2)"
        ]
    );
    let sgd = |config: SgdConfig| Sgd::new(config).unwrap().describe();
    assert_eq!(sgd(SgdConfig::new(0.1)), "SGD(lr 0.1)");
    let full = SgdConfig {
        momentum: 0.9,
        dampening: 0.1,
        weight_decay: 0.001,
        ..SgdConfig::new(0.1)
    };
    assert_eq!(
        sgd(full),
        "SGD(lr 0.1, momentum 0.9, dampening 0.1, weight decay 0.001)"
    );
    let nesterov = SgdConfig {
        momentum: 0.9,
        nesterov: true,
        ..SgdConfig::new(0.1)
    };
    assert_eq!(sgd(nesterov), "SGD(lr 0.1, momentum 0.9, Nesterov)");
    assert_eq!(
        Adam::new(AdamConfig::adamw(0.001)).unwrap().describe(),
        "AdamW(lr 0.001, betas (0.9, 0.999), eps 1e-8, weight decay 0.01)"
    );
    assert_eq!(
        Adam::new(AdamConfig::adam(0.01)).unwrap().describe(),
        "Adam(lr 0.01, betas (0.9, 0.999), eps 1e-8, weight decay 0)"
    );
}
