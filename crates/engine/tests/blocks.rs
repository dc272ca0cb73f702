//! The graph blocks of the lecture's architecture timeline — parallel branches joined
//! along channels (Inception), dense blocks (DenseNet), channel gates (squeeze-and-
//! excitation), bottleneck residual blocks and depthwise-separable convolutions: their
//! outputs, finite-difference checks of every gradient, architecture files, the summary
//! and the errors for branches that cannot be joined.

use ocellus::arch::Architecture;
use ocellus::gradcheck::{check_gradients, check_network_layers, GradCheckConfig};
use ocellus::layers::{Conv2d, Conv2dConfig, Key, MaxPool2d, Part, PartMut, Pool2dConfig, Tanh};
use ocellus::spec::LayerSpec;
use ocellus::summary::Summary;
use ocellus::{Concat, Dense, Layer, LayerExt, Mode, Residual, Result, Rng, Scale, Sequential};
use ocellus::{Error, Tensor};

fn conv(ic: usize, oc: usize, k: usize, rng: &mut Rng) -> Conv2d {
    Conv2d::new(Conv2dConfig::new(ic, oc, k).padding(k / 2), rng).unwrap()
}

/// An Inception-style block on 3 channels: 1×1, 3×3 → tanh, and 3×3 max-pool → 1×1.
fn inception(rng: &mut Rng) -> Concat {
    let pool = Pool2dConfig::new(3).stride(1).padding(1);
    Concat::new(vec![
        Sequential::new().with(conv(3, 2, 1, rng)),
        Sequential::new().with(conv(3, 4, 3, rng)).with(Tanh::new()),
        Sequential::new()
            .with(MaxPool2d::new(pool).unwrap())
            .with(conv(3, 1, 1, rng)),
    ])
    .unwrap()
}

fn assert_passes(what: &str, layer: &mut dyn Layer, x: &Tensor) {
    let report = check_gradients(layer, x, &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{what}\n{report}");
    assert!(
        report.tensors.iter().all(|t| t.checked > 0),
        "{what}: nothing checked\n{report}"
    );
}

#[test]
fn concat_stacks_the_branches_outputs_along_channels() {
    let mut rng = Rng::new(1);
    let mut block = inception(&mut rng);
    let x = Tensor::randn(&[2, 3, 5, 5], 1.0, &mut rng);
    let y = block.forward_ref(&x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), &[2, 7, 5, 5]);
    assert_eq!(block.output_shape(&[2, 3, 5, 5]).unwrap(), [2, 7, 5, 5]);
    // The output's channels are each branch's own output in turn.
    let parts = y.split(&[2, 4, 1]).unwrap();
    let mut again = inception(&mut Rng::new(1));
    let direct: Vec<Tensor> = (0..3)
        .map(|i| {
            let PartMut::Layer(branch) = again.parts_mut().swap_remove(i).1 else {
                unreachable!("concat lists its branches")
            };
            branch.forward_ref(&x, Mode::Eval).unwrap()
        })
        .collect();
    for (i, (got, want)) in parts.iter().zip(&direct).enumerate() {
        assert_eq!(got, want, "branch {i}");
    }
}

#[test]
fn concat_gradients_pass_the_finite_difference_check() {
    let mut rng = Rng::new(2);
    let mut block = inception(&mut rng);
    let x = Tensor::randn(&[2, 3, 5, 5], 1.0, &mut rng);
    assert_passes("inception block", &mut block, &x);
    let names: Vec<String> = block.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.0.weight",
            "0.0.bias",
            "1.0.weight",
            "1.0.bias",
            "2.1.weight",
            "2.1.bias"
        ]
    );
}

/// A concat whose backward forgets branch `dropped` — as a buggy block would.
struct DropsABranch {
    inner: Concat,
    dropped: usize,
    widths: Vec<usize>,
}

impl Layer for DropsABranch {
    fn kind(&self) -> &'static str {
        "concat"
    }
    fn describe(&self) -> String {
        "a concat that drops a branch's gradient".into()
    }
    fn spec(&self) -> LayerSpec {
        self.inner.spec()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner.output_shape(input)
    }
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        let y = self.inner.forward(x, mode)?;
        Ok(y)
    }
    /// dy with branch `dropped`'s channels zeroed, then the block's backward.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let mut pieces = dy.split(&self.widths)?;
        pieces[self.dropped].fill(0.0);
        let dy = Tensor::concat(&pieces.iter().collect::<Vec<_>>())?;
        self.inner.backward(dy)
    }
    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        self.inner.parts()
    }
    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        self.inner.parts_mut()
    }
}

#[test]
fn the_check_fails_when_a_branch_gradient_is_dropped() {
    let mut rng = Rng::new(3);
    let x = Tensor::randn(&[2, 3, 5, 5], 1.0, &mut rng);
    for dropped in 0..3 {
        let mut block = DropsABranch {
            inner: inception(&mut Rng::new(3)),
            dropped,
            widths: vec![2, 4, 1],
        };
        let report = check_gradients(&mut block, &x, &GradCheckConfig::default()).unwrap();
        let failed: Vec<&str> = report
            .tensors
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.name.as_str())
            .collect();
        let weight = format!("{dropped}.{}.weight", if dropped == 2 { 1 } else { 0 });
        assert!(failed.contains(&"input"), "branch {dropped}:\n{report}");
        assert!(
            failed.contains(&weight.as_str()),
            "branch {dropped}:\n{report}"
        );
    }
}

#[test]
fn branches_that_cannot_be_joined_name_the_block_the_branch_and_both_shapes() {
    let text = r#"
        input = [3, 8, 8]
        [[layers]]
        type = "concat"
        branches = [
            [{ type = "conv2d", out_channels = 4, kernel = 1 }],
            [{ type = "conv2d", out_channels = 2, kernel = 3 }],
        ]
    "#;
    let arch = Architecture::parse(text, false).unwrap();
    let err = arch.build(&mut Rng::new(0)).err().unwrap().to_string();
    for needle in [
        "layer 0",
        "concat",
        "branch 1",
        "(1, 2, 6, 6)",
        "(1, 4, 8, 8)",
    ] {
        assert!(err.contains(needle), "'{needle}' missing from: {err}");
    }
}

#[test]
fn a_dense_block_gives_its_input_and_every_layers_output() {
    let mut rng = Rng::new(4);
    let layer = |c, rng: &mut Rng| Sequential::new().with(Tanh::new()).with(conv(c, 2, 3, rng));
    let mut block = Dense::new(vec![
        layer(3, &mut rng),
        layer(5, &mut rng),
        layer(7, &mut rng),
    ])
    .unwrap();
    let x = Tensor::randn(&[2, 3, 4, 4], 1.0, &mut rng);
    let y = block.forward_ref(&x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), &[2, 9, 4, 4]);
    // The first channels are the input itself.
    assert_eq!(y.split(&[3, 6]).unwrap()[0], x);
    assert_passes("dense block", &mut block, &x);
}

#[test]
fn densenet_bc_layers_grow_by_the_growth_rate() {
    let text = r#"
        input = [4, 6, 6]
        [[layers]]
        type = "denseblock"
        layers = 3
        growth = 2
    "#;
    let arch = Architecture::parse(text, false).unwrap();
    let mut net = arch.build(&mut Rng::new(5)).unwrap();
    assert_eq!(net.output_shape(&[1, 4, 6, 6]).unwrap(), [1, 10, 6, 6]);
    // Layer l: BN(4 + 2l) → ReLU → conv 1×1 to 8 → BN(8) → ReLU → conv 3×3 to 2.
    let expected: usize = (0..3)
        .map(|l| {
            let c = 4 + 2 * l;
            2 * c + c * 8 + 2 * 8 + 8 * 2 * 9
        })
        .sum();
    assert_eq!(net.param_count(), expected);
    let x = Tensor::randn(&[2, 4, 6, 6], 1.0, &mut Rng::new(6));
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert!(check.passed(), "{check}");
    assert_eq!(check.layers.len(), 18, "{check}");
}

#[test]
fn a_dense_layer_that_changes_the_image_size_is_named() {
    let text = r#"
        input = [2, 8, 8]
        [[layers]]
        type = "dense"
        layers = [
            [{ type = "conv2d", out_channels = 2, kernel = 3, padding = 1 }],
            [{ type = "conv2d", out_channels = 2, kernel = 3 }],
        ]
    "#;
    let arch = Architecture::parse(text, false).unwrap();
    let err = arch.build(&mut Rng::new(0)).err().unwrap().to_string();
    for needle in ["dense", "layer 1", "(1, 4, 8, 8)", "(1, 2, 6, 6)"] {
        assert!(err.contains(needle), "'{needle}' missing from: {err}");
    }
}

#[test]
fn squeeze_excitation_rescales_channels_and_its_gradient_reaches_both_paths() {
    let text = r#"
        input = [8, 5, 5]
        [[layers]]
        type = "squeezeexcite"
        reduction = 4
    "#;
    let arch = Architecture::parse(text, false).unwrap();
    let mut net = arch.build(&mut Rng::new(7)).unwrap();
    let names: Vec<String> = net.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.gate.1.weight",
            "0.gate.1.bias",
            "0.gate.3.weight",
            "0.gate.3.bias"
        ]
    );
    assert_eq!(net.params()[0].1.shape(), &[2, 8, 1, 1]);
    let x = Tensor::randn(&[2, 8, 5, 5], 1.0, &mut Rng::new(8));
    let y = net.forward_ref(&x, Mode::Eval).unwrap();
    // Each channel of each image is x times one number in (0, 1).
    for (plane_y, plane_x) in y.data().chunks(25).zip(x.data().chunks(25)) {
        let g = plane_y[0] / plane_x[0];
        assert!(g > 0.0 && g < 1.0);
        for (a, b) in plane_y.iter().zip(plane_x) {
            assert!(
                (a - g * b).abs() <= 1e-5 * b.abs().max(1.0),
                "{a} vs {g}·{b}"
            );
        }
    }
    assert_passes("squeeze-excitation", &mut net, &x);
    // Without the gate's path, dx would be dy·g alone: the gate's part is not zero.
    let dy = Tensor::randn(y.shape(), 1.0, &mut Rng::new(9));
    net.zero_grad();
    let dx = net.backward_ref(&dy).unwrap();
    let direct: Vec<f32> = dy
        .data()
        .chunks(25)
        .zip(y.data().chunks(25).zip(x.data().chunks(25)))
        .flat_map(|(d, (py, px))| {
            let g = py[0] / px[0];
            d.iter().map(move |v| v * g)
        })
        .collect();
    let through_gate = dx
        .data()
        .iter()
        .zip(&direct)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(through_gate > 1e-4, "the gate's path adds nothing");
    // The gate's last convolution learns from dg (its first may sit behind dead ReLUs).
    assert!(net.params()[3].1.grad().max_abs() > 0.0);
}

#[test]
fn a_gate_that_does_not_give_one_value_per_channel_is_refused() {
    let mut rng = Rng::new(10);
    let gate = Sequential::new().with(conv(4, 2, 1, &mut rng));
    let block = Scale::new(gate);
    let err = block.output_shape(&[1, 4, 3, 3]).err().unwrap().to_string();
    assert!(
        err.contains("(1, 2, 3, 3)") && err.contains("(1, 4)"),
        "{err}"
    );
}

#[test]
fn the_bottleneck_block_has_torchvisions_parameters_and_gradients() {
    let mut rng = Rng::new(11);
    // torchvision's Bottleneck(256, 64): 70,400 parameters.
    let block = Residual::bottleneck(256, 256, 1, 4, &mut rng).unwrap();
    assert_eq!(block.param_count(), 70_400);
    assert!(block.shortcut().is_none());
    // With a stride, a projection shortcut: + 128·256 weights + 2·256 BatchNorm.
    let block = Residual::bottleneck(128, 256, 2, 4, &mut rng).unwrap();
    assert_eq!(block.output_shape(&[1, 128, 8, 8]).unwrap(), [1, 256, 4, 4]);
    assert!(block.shortcut().is_some());
    assert!(Residual::bottleneck(8, 10, 1, 4, &mut rng).is_err());
    let small = Residual::bottleneck(4, 8, 2, 4, &mut rng).unwrap();
    let x = Tensor::randn(&[2, 4, 6, 6], 1.0, &mut rng);
    let mut net = Sequential::new().with(small);
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert!(check.passed(), "{check}");
}

#[test]
fn a_separable_convolution_is_a_depthwise_then_a_pointwise_convolution() {
    let text = r#"
        input = [6, 7, 7]
        [[layers]]
        type = "separableconv2d"
        out_channels = 10
        kernel = 3
        stride = 2
        padding = 1
    "#;
    let arch = Architecture::parse(text, false).unwrap();
    let mut net = arch.build(&mut Rng::new(12)).unwrap();
    assert_eq!(net.output_shape(&[1, 6, 7, 7]).unwrap(), [1, 10, 4, 4]);
    // depthwise 6·9 + 6, pointwise 6·10 + 10 — against 6·10·9 + 10 for a full 3×3.
    assert_eq!(net.param_count(), 6 * 9 + 6 + 6 * 10 + 10);
    let shapes: Vec<Vec<usize>> = net
        .params()
        .iter()
        .map(|(_, p)| p.shape().to_vec())
        .collect();
    assert_eq!(shapes[0], [6, 1, 3, 3]);
    assert_eq!(shapes[2], [10, 6, 1, 1]);
    let x = Tensor::randn(&[2, 6, 7, 7], 1.0, &mut Rng::new(13));
    assert_passes("separable convolution", &mut net, &x);
}

const TIMELINE_BLOCKS: &str = r#"
    input = [3, 8, 8]
    [[layers]]
    type = "conv2d"
    out_channels = 8
    kernel = 3
    padding = 1

    [[layers]]
    type = "concat"
    branches = [
        [{ type = "conv2d", out_channels = 4, kernel = 1 }],
        [{ type = "conv2d", out_channels = 2, kernel = 1 }, { type = "relu" },
         { type = "conv2d", out_channels = 4, kernel = 5, padding = 2 }],
        [{ type = "maxpool2d", kernel = 3, stride = 1, padding = 1 },
         { type = "conv2d", out_channels = 2, kernel = 1 }],
    ]

    [[layers]]
    type = "squeezeexcite"
    reduction = 2

    [[layers]]
    type = "denseblock"
    layers = 2
    growth = 3

    [[layers]]
    type = "bottleneck"
    out_channels = 8
    stride = 2
    expansion = 2

    [[layers]]
    type = "globalavgpool"

    [[layers]]
    type = "flatten"

    [[layers]]
    type = "linear"
    out_features = 5
"#;

#[test]
fn the_summary_opens_branches_and_the_receptive_field_is_the_widest_branch() {
    let arch = Architecture::parse(TIMELINE_BLOCKS, false).unwrap();
    let net = arch.build(&mut Rng::new(14)).unwrap();
    let table = Summary::of(&net, &[2, 3, 8, 8]).unwrap();
    let row = |name: &str| {
        table
            .rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name}:\n{table}"))
    };
    assert_eq!(row("1").output_shape, [2, 10, 8, 8]);
    assert!(row("1").is_block);
    assert_eq!(row("1.1.2").kind, "conv2d");
    assert_eq!(row("1.concat").description, "join channels 4 + 4 + 2");
    // 3×3 stem, then the widest branch (1×1 then 5×5): 3 + 4 = 7.
    assert_eq!(row("1").receptive_field[0].size, 7);
    assert_eq!(row("1.0.0").receptive_field[0].size, 3);
    assert_eq!(row("2.mul").output_shape, [2, 10, 8, 8]);
    assert_eq!(row("3").output_shape, [2, 16, 8, 8]);
    assert_eq!(row("3.concat").description, "join channels 10 + 3 + 3");
    assert_eq!(row("4").output_shape, [2, 8, 4, 4]);
    // A block's row holds the sums of the rows inside it.
    for block in ["1", "2", "3", "4"] {
        let inner: usize = table
            .rows
            .iter()
            .filter(|r| r.depth == 1 && r.name.starts_with(&format!("{block}.")))
            .map(|r| r.params)
            .sum();
        assert_eq!(row(block).params, inner, "block {block}:\n{table}");
    }
    let top: usize = table
        .rows
        .iter()
        .filter(|r| r.depth == 0)
        .map(|r| r.params)
        .sum();
    assert_eq!(top, net.param_count());
    assert_eq!(table.total_params, net.param_count());
    let text = table.to_string();
    assert!(text.contains("Concat of 3 branches"), "{text}");
}

#[test]
fn every_block_is_rebuilt_from_its_own_spec_with_identical_outputs() {
    let arch = Architecture::parse(TIMELINE_BLOCKS, false).unwrap();
    let mut net = arch.build(&mut Rng::new(15)).unwrap();
    let again = Architecture {
        name: None,
        input: arch.input,
        layers: net.layer_specs(),
    };
    let text = again.to_toml();
    let reread = Architecture::parse(&text, false).unwrap();
    let mut copy = reread.build(&mut Rng::new(99)).unwrap();
    for (name, p) in net.params() {
        copy.set(&name, p.value().clone()).unwrap();
    }
    for (name, b) in net.buffers() {
        copy.set(&name, b.clone()).unwrap();
    }
    let x = Tensor::randn(&[2, 3, 8, 8], 1.0, &mut Rng::new(16));
    let a = net.forward_ref(&x, Mode::Eval).unwrap();
    let b = copy.forward_ref(&x, Mode::Eval).unwrap();
    assert_eq!(a, b);
}

/// Every kind of block, with smooth activations only: a finite difference through the
/// whole network crosses no kink, so it checks how each block joins its paths.
const SMOOTH_BLOCKS: &str = r#"
    input = [3, 6, 6]
    [[layers]]
    type = "concat"
    branches = [
        [{ type = "conv2d", out_channels = 2, kernel = 1 }],
        [{ type = "conv2d", out_channels = 2, kernel = 3, padding = 1 }, { type = "tanh" }],
    ]

    [[layers]]
    type = "squeezeexcite"
    squeeze_channels = 2
    activation = "tanh"

    [[layers]]
    type = "dense"
    layers = [
        [{ type = "tanh" }, { type = "conv2d", out_channels = 2, kernel = 3, padding = 1 }],
        [{ type = "sigmoid" }, { type = "conv2d", out_channels = 3, kernel = 1 }],
    ]

    [[layers]]
    type = "residual"
    activation = "tanh"
    main = [{ type = "conv2d", out_channels = 4, kernel = 3, stride = 2, padding = 1 }]
    shortcut = [{ type = "conv2d", out_channels = 4, kernel = 1, stride = 2 }]

    [[layers]]
    type = "scale"
    gate = [{ type = "globalavgpool" }, { type = "flatten" }, { type = "sigmoid" }]

    [[layers]]
    type = "flatten"

    [[layers]]
    type = "linear"
    out_features = 3
"#;

#[test]
fn whole_networks_of_blocks_pass_end_to_end_and_layer_by_layer() {
    let arch = Architecture::parse(SMOOTH_BLOCKS, false).unwrap();
    let mut net = arch.build(&mut Rng::new(17)).unwrap();
    let x = Tensor::randn(&[2, 3, 6, 6], 1.0, &mut Rng::new(18));
    assert_passes("a network of every block", &mut net, &x);
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert!(check.passed(), "{check}");
    // The ReLU network of every named block, layer by layer.
    let arch = Architecture::parse(TIMELINE_BLOCKS, false).unwrap();
    let mut net = arch.build(&mut Rng::new(19)).unwrap();
    let x = Tensor::randn(&[2, 3, 8, 8], 1.0, &mut Rng::new(20));
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert!(check.passed(), "{check}");
}

#[test]
fn blocks_refuse_nonsense_settings() {
    let err: Error = Concat::new(vec![]).err().unwrap();
    assert!(err.to_string().contains("at least one branch"));
    assert!(Dense::new(vec![]).is_err());
    let text = r#"
        input = [3, 8, 8]
        [[layers]]
        type = "squeezeexcite"
        reduction = 0
    "#;
    let arch = Architecture::parse(text, false).unwrap();
    assert!(arch.build(&mut Rng::new(0)).is_err());
}

#[test]
fn an_mbconv_block_is_torchvisions_with_a_skip_only_when_the_shape_is_kept() {
    let build = |text: &str| {
        let arch = Architecture::parse(text, false).unwrap();
        arch.build(&mut Rng::new(21)).unwrap()
    };
    let kept = build(
        "input = [24, 8, 8]\n[[layers]]\ntype = \"mbconv\"\nout_channels = 24\nexpand_ratio = 6\n",
    );
    // torchvision's MBConv(24 → 24, expand 6, 3×3): expand 24·144 + BN 2·144, depthwise
    // 144·9 + BN 2·144, SE 144→6→144 with biases, project 144·24 + BN 2·24.
    let expected = 24 * 144 + 288 + 144 * 9 + 288 + (144 * 6 + 6) + (6 * 144 + 144) + 144 * 24 + 48;
    assert_eq!(kept.param_count(), expected);
    assert_eq!(kept.layers()[0].kind(), "residual");
    let names: Vec<String> = kept.params().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"0.main.6.gate.1.weight".to_string()),
        "{names:?}"
    );
    let strided =
        build("input = [16, 8, 8]\n[[layers]]\ntype = \"mbconv\"\nout_channels = 24\nstride = 2\n");
    assert_eq!(strided.layers()[0].kind(), "sequential");
    assert_eq!(strided.output_shape(&[1, 16, 8, 8]).unwrap(), [1, 24, 4, 4]);
    let mut net = build(
        "input = [4, 6, 6]\n[[layers]]\ntype = \"mbconv\"\nout_channels = 4\nexpand_ratio = 2\nkernel = 5\n",
    );
    let x = Tensor::randn(&[2, 4, 6, 6], 1.0, &mut Rng::new(22));
    let check = check_network_layers(&mut net, &x, &GradCheckConfig::default()).unwrap();
    assert!(check.passed(), "{check}");
    let bad = Architecture::parse(
        "input = [4, 6, 6]\n[[layers]]\ntype = \"mbconv\"\nout_channels = 4\nkernel = 4\n",
        false,
    )
    .unwrap();
    let err = bad.build(&mut Rng::new(0)).err().unwrap().to_string();
    assert!(err.contains("mbconv") && err.contains("odd"), "{err}");
}

#[test]
fn blocks_too_large_for_the_machine_are_refused_before_allocating() {
    for text in [
        "input = [8, 8, 8]\n[[layers]]\ntype = \"mbconv\"\nout_channels = 8\nexpand_ratio = 100000000\n",
        "input = [3, 8, 8]\n[[layers]]\ntype = \"denseblock\"\nlayers = 3\ngrowth = 30000\n",
    ] {
        let arch = Architecture::parse(text, false).unwrap();
        let err = arch.build(&mut Rng::new(0)).err().unwrap().to_string();
        assert!(err.contains("the machine has"), "{err}");
    }
}
