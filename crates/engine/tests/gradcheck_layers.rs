//! Finite-difference checks of the input and every parameter gradient of every layer,
//! over a table of configurations, and end to end through whole networks.

use ocellus::gradcheck::{check_gradients, GradCheckConfig};
use ocellus::layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d,
    ConvTranspose2dConfig, Dropout, Flatten, GlobalAvgPool, Hardswish, LeakyRelu, Linear,
    MaxPool2d, Padding, Pool2dConfig, Relu, Sigmoid, Silu, Softmax, Tanh, Upsample, UpsampleMode,
    UpsampleSize,
};
use ocellus::layers::{Key, Part, PartMut};
use ocellus::spec::LayerSpec;
use ocellus::LayerExt;
use ocellus::{zoo, Layer, Mode, Residual, Result, Rng, Sequential, Tensor};

/// Runs the check and fails with the full report if any tensor is off, if a tensor had
/// nothing checked, or if kinks hid most of a tensor's sampled positions.
fn assert_gradients(what: &str, layer: &mut dyn Layer, x: &Tensor, cfg: &GradCheckConfig) {
    let report = check_gradients(layer, x, cfg).unwrap();
    assert!(report.passed(), "{what}\n{report}");
    assert!(
        report
            .tensors
            .iter()
            .all(|t| t.checked > 0 && t.skipped <= t.checked),
        "{what}: kinks hid most positions\n{report}"
    );
}

fn input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 1.0, &mut Rng::new(seed))
}

fn eval() -> GradCheckConfig {
    GradCheckConfig {
        mode: Mode::Eval,
        ..GradCheckConfig::default()
    }
}

/// Values `0.1·k + 0.05` (k = −n/2 … n/2, shuffled): none within 0.05 of zero and no two
/// closer than 0.1, so a step of ±ε = ±0.01 never swaps a max-pool winner or crosses a
/// ReLU kink.
fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut values: Vec<f32> = (0..n)
        .map(|k| 0.1 * (k as f32 - (n / 2) as f32) + 0.05)
        .collect();
    Rng::new(seed).shuffle(&mut values);
    Tensor::from_vec(shape, values).unwrap()
}

/// Normal values of standard deviation `std`, each moved 0.1 further from zero, so that
/// ±ε never crosses the kink at 0.
fn off_kink(shape: &[usize], seed: u64, std: f32) -> Tensor {
    let mut x = Tensor::randn(shape, std, &mut Rng::new(seed));
    x.data_mut()
        .iter_mut()
        .for_each(|v| *v += 0.1f32.copysign(*v));
    x
}

#[test]
fn conv2d_gradients_over_a_table_of_configurations() {
    struct Case {
        n: usize,
        ic: usize,
        oc: usize,
        hw: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
        dilation: (usize, usize),
        groups: usize,
        bias: bool,
    }
    let base = Case {
        n: 2,
        ic: 3,
        oc: 4,
        hw: (7, 7),
        kernel: (3, 3),
        stride: (1, 1),
        padding: Padding::default(),
        dilation: (1, 1),
        groups: 1,
        bias: true,
    };
    let cases = vec![
        Case { ..base },
        Case {
            n: 1,
            ic: 1,
            oc: 1,
            ..base
        },
        Case {
            ic: 8,
            oc: 8,
            hw: (6, 6),
            ..base
        },
        Case {
            stride: (2, 2),
            padding: Padding::uniform(1),
            ..base
        },
        Case {
            stride: (3, 3),
            padding: Padding::uniform(2),
            hw: (9, 8),
            ..base
        },
        Case {
            stride: (1, 2),
            padding: Padding::symmetric(2, 0),
            ..base
        },
        Case {
            padding: Padding {
                top: 0,
                bottom: 2,
                left: 1,
                right: 0,
            },
            ..base
        },
        Case {
            kernel: (1, 1),
            ..base
        },
        Case {
            kernel: (1, 1),
            stride: (2, 2),
            ..base
        },
        Case {
            kernel: (2, 4),
            padding: Padding::symmetric(1, 2),
            ..base
        },
        Case {
            kernel: (5, 3),
            hw: (8, 6),
            ..base
        },
        Case {
            dilation: (2, 2),
            padding: Padding::uniform(2),
            ..base
        },
        Case {
            ic: 4,
            oc: 6,
            groups: 2,
            ..base
        },
        Case {
            bias: false,
            ..base
        },
    ];
    for (k, c) in cases.into_iter().enumerate() {
        let mut config = Conv2dConfig::new(c.ic, c.oc, 1);
        config.kernel = c.kernel;
        config.stride = c.stride;
        config.padding = c.padding;
        config.dilation = c.dilation;
        config.groups = c.groups;
        config.bias = c.bias;
        let mut conv = Conv2d::new(config, &mut Rng::new(k as u64)).unwrap();
        let x = input(&[c.n, c.ic, c.hw.0, c.hw.1], 100 + k as u64);
        assert_gradients(&conv.describe(), &mut conv, &x, &GradCheckConfig::default());
    }
}

#[test]
fn conv_transpose2d_gradients_over_a_table_of_configurations() {
    struct Case {
        n: usize,
        ic: usize,
        oc: usize,
        hw: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        output_padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        bias: bool,
    }
    let base = Case {
        n: 2,
        ic: 3,
        oc: 4,
        hw: (4, 4),
        kernel: (3, 3),
        stride: (1, 1),
        padding: (0, 0),
        output_padding: (0, 0),
        dilation: (1, 1),
        groups: 1,
        bias: true,
    };
    let cases = vec![
        Case { ..base },
        Case {
            n: 1,
            ic: 1,
            oc: 1,
            ..base
        },
        // Stride 2 with the output padding that doubles the size exactly.
        Case {
            stride: (2, 2),
            padding: (1, 1),
            output_padding: (1, 1),
            ..base
        },
        // Stride 3: output pixels that no input reaches, kept by output padding 2.
        Case {
            stride: (3, 3),
            padding: (2, 2),
            output_padding: (2, 1),
            hw: (3, 4),
            ..base
        },
        Case {
            stride: (1, 2),
            padding: (0, 1),
            output_padding: (0, 1),
            ..base
        },
        Case {
            stride: (2, 3),
            padding: (1, 0),
            output_padding: (1, 2),
            ..base
        },
        Case {
            kernel: (1, 1),
            ..base
        },
        Case {
            kernel: (1, 1),
            stride: (2, 2),
            ..base
        },
        Case {
            kernel: (2, 4),
            padding: (1, 2),
            ..base
        },
        Case {
            kernel: (5, 3),
            hw: (3, 4),
            ..base
        },
        Case {
            dilation: (2, 2),
            padding: (2, 2),
            ..base
        },
        // Output padding at or above the stride, allowed below the dilation.
        Case {
            kernel: (2, 3),
            stride: (1, 2),
            dilation: (3, 2),
            output_padding: (2, 1),
            ..base
        },
        Case {
            ic: 4,
            oc: 6,
            groups: 2,
            ..base
        },
        // Depthwise, upsampling by 2.
        Case {
            ic: 4,
            oc: 4,
            groups: 4,
            stride: (2, 2),
            padding: (1, 1),
            output_padding: (1, 1),
            ..base
        },
        Case {
            bias: false,
            ..base
        },
        // Stride 2, output padding, groups and dilation together.
        Case {
            ic: 4,
            oc: 6,
            groups: 2,
            stride: (2, 2),
            padding: (2, 2),
            output_padding: (1, 1),
            dilation: (2, 2),
            ..base
        },
    ];
    for (k, c) in cases.into_iter().enumerate() {
        let config = ConvTranspose2dConfig {
            kernel: c.kernel,
            stride: c.stride,
            padding: c.padding,
            output_padding: c.output_padding,
            dilation: c.dilation,
            groups: c.groups,
            bias: c.bias,
            ..ConvTranspose2dConfig::new(c.ic, c.oc, 1)
        };
        let mut layer = ConvTranspose2d::new(config, &mut Rng::new(k as u64)).unwrap();
        let x = input(&[c.n, c.ic, c.hw.0, c.hw.1], 150 + k as u64);
        let what = format!("{} on {:?}", layer.describe(), x.shape());
        assert_gradients(&what, &mut layer, &x, &GradCheckConfig::default());
    }
}

#[test]
fn upsample_gradients() {
    let sizes = [
        UpsampleSize::Scale(2, 2),
        UpsampleSize::Scale(3, 3),
        UpsampleSize::Scale(2, 3),
        UpsampleSize::Scale(1, 2),
        UpsampleSize::Fixed(7, 9),
        // Smaller than the input: bilinear then reads two of every few pixels.
        UpsampleSize::Fixed(3, 2),
    ];
    let inputs: [[usize; 4]; 3] = [[2, 3, 4, 5], [1, 1, 1, 1], [1, 2, 5, 3]];
    for mode in [UpsampleMode::Nearest, UpsampleMode::Bilinear] {
        for (k, size) in sizes.into_iter().enumerate() {
            for (j, shape) in inputs.into_iter().enumerate() {
                let mut layer = Upsample::with_size(size, mode).unwrap();
                let x = input(&shape, 1500 + 10 * k as u64 + j as u64);
                let what = format!("{} on {shape:?}", layer.describe());
                assert_gradients(&what, &mut layer, &x, &GradCheckConfig::default());
            }
        }
    }
}

#[test]
fn linear_flatten_and_relu_gradients() {
    let mut rng = Rng::new(1);
    let mut linear = Linear::new(12, 5, &mut rng).unwrap();
    assert_gradients(
        "linear",
        &mut linear,
        &input(&[3, 12], 2),
        &GradCheckConfig::default(),
    );

    let mut flatten = Flatten::new();
    assert_gradients(
        "flatten",
        &mut flatten,
        &input(&[2, 3, 2, 2], 3),
        &GradCheckConfig::default(),
    );

    let x = off_kink(&[2, 3, 4, 4], 4, 1.0);
    let mut relu = Relu::new();
    assert_gradients("relu", &mut relu, &x, &GradCheckConfig::default());
}

/// A layer whose backward is wrong by a factor: the checker must catch it.
struct ScaledWrongly {
    inner: Linear,
    factor: f32,
}

impl Layer for ScaledWrongly {
    fn kind(&self) -> &'static str {
        "broken"
    }
    fn describe(&self) -> String {
        "Broken".into()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner.output_shape(input)
    }
    fn spec(&self) -> LayerSpec {
        self.inner.spec()
    }
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.inner.forward(x, mode)
    }
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let mut dx = self.inner.backward(dy)?;
        dx.data_mut().iter_mut().for_each(|v| *v *= self.factor);
        Ok(dx)
    }
    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        self.inner.parts()
    }
    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        self.inner.parts_mut()
    }
}

#[test]
fn the_checker_fails_when_a_gradient_is_wrong() {
    let x = input(&[2, 6], 5);
    for factor in [1.05, 0.0, -1.0] {
        let mut broken = ScaledWrongly {
            inner: Linear::new(6, 3, &mut Rng::new(6)).unwrap(),
            factor,
        };
        let report = check_gradients(&mut broken, &x, &GradCheckConfig::default()).unwrap();
        assert!(
            !report.passed(),
            "factor {factor} went unnoticed:\n{report}"
        );
        let worst = report.worst().unwrap();
        assert_eq!(worst.name, "input");
        // The parameter gradients are still right, and reported as such.
        assert!(report.tensors[1..].iter().all(|t| t.passed), "{report}");
    }
}

#[test]
fn the_checker_fails_when_a_parameter_gradient_is_wrong() {
    struct DoubleWeightGrad(Linear);
    impl Layer for DoubleWeightGrad {
        fn kind(&self) -> &'static str {
            "broken"
        }
        fn describe(&self) -> String {
            "Broken".into()
        }
        fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
            self.0.output_shape(input)
        }
        fn spec(&self) -> LayerSpec {
            self.0.spec()
        }
        fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
            self.0.forward(x, mode)
        }
        fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
            // Adding the weight gradient twice: the bug of a layer that accumulates wrongly.
            self.0.backward(dy.clone())?;
            self.0.params_mut()[1].1.grad_mut().fill(0.0);
            self.0.backward(dy)
        }
        fn parts(&self) -> Vec<(Key, Part<'_>)> {
            self.0.parts()
        }
        fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
            self.0.parts_mut()
        }
    }
    let mut broken = DoubleWeightGrad(Linear::new(4, 3, &mut Rng::new(7)).unwrap());
    let report =
        check_gradients(&mut broken, &input(&[2, 4], 8), &GradCheckConfig::default()).unwrap();
    assert!(!report.passed());
    let failed: Vec<&str> = report
        .tensors
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(failed, vec!["weight"], "{report}");
}

#[test]
fn end_to_end_small_cnn_gradients() {
    let mut rng = Rng::new(9);
    let mut net = Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(1, 4, 3).padding(1), &mut rng).unwrap())
        .with(Relu::new())
        .with(Conv2d::new(Conv2dConfig::new(4, 6, 3).stride(2), &mut rng).unwrap())
        .with(Relu::new())
        .with(Flatten::new())
        .with(Linear::new(6 * 3 * 3, 5, &mut rng).unwrap());
    let x = input(&[2, 1, 8, 8], 10);
    assert_gradients("small cnn", &mut net, &x, &GradCheckConfig::default());
}

/// One pooling configuration of the table.
struct PoolCase {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
    /// (N, C, H, W)
    input: [usize; 4],
}

impl PoolCase {
    fn config(&self) -> Pool2dConfig {
        let ((kh, kw), (sh, sw), (ph, pw)) = (self.kernel, self.stride, self.padding);
        Pool2dConfig::new(1)
            .kernel(kh, kw)
            .stride_hw(sh, sw)
            .padding_hw(ph, pw)
            .ceil_mode(self.ceil_mode)
    }
}

/// Kernel ≠ stride both ways, overlapping windows, padding, non-square windows, batch 1
/// and > 1, channels 1, 3 and 8; in ceil mode, last windows that hang past the image, past
/// the padding, or are larger than the image.
fn pool_cases() -> Vec<PoolCase> {
    let case = |kernel, stride, padding, input| PoolCase {
        kernel,
        stride,
        padding,
        ceil_mode: false,
        input,
    };
    let ceil = |kernel, stride, padding, input| PoolCase {
        ceil_mode: true,
        ..case(kernel, stride, padding, input)
    };
    vec![
        ceil((2, 2), (2, 2), (0, 0), [2, 3, 7, 7]), // a last row and column of 1×2, 2×1, 1×1
        ceil((3, 3), (2, 2), (1, 1), [2, 2, 8, 8]), // last windows past the padding
        ceil((3, 2), (2, 3), (1, 0), [1, 3, 6, 8]), // non-square, padded rows only
        ceil((2, 2), (3, 3), (1, 1), [1, 2, 7, 7]), // stride > kernel, padded
        ceil((3, 3), (2, 2), (0, 0), [1, 2, 2, 2]), // one window larger than the image
        case((2, 2), (2, 2), (0, 0), [2, 3, 8, 8]), // the classic 2×2, stride 2
        case((3, 3), (2, 2), (1, 1), [2, 3, 9, 9]), // overlapping by one, padded
        case((3, 3), (1, 1), (0, 0), [1, 1, 6, 7]), // stride 1: heavy overlap
        case((3, 3), (1, 1), (1, 1), [1, 3, 5, 5]), // stride 1, padded to the same size
        case((2, 3), (2, 1), (1, 0), [2, 8, 7, 6]), // non-square, padding on rows only
        case((3, 2), (1, 2), (1, 1), [3, 3, 7, 8]), // non-square the other way
        case((2, 2), (3, 3), (0, 0), [1, 3, 8, 8]), // stride > kernel: inputs in no window
        case((1, 1), (2, 2), (0, 0), [2, 1, 5, 5]), // 1×1 subsampling
        case((3, 3), (3, 3), (1, 1), [2, 8, 7, 7]), // non-overlapping, padded
    ]
}

#[test]
fn max_pool_gradients_over_a_table_of_configurations() {
    for (k, c) in pool_cases().into_iter().enumerate() {
        let mut pool = MaxPool2d::new(c.config()).unwrap();
        // No ties: a ±ε step never changes which value wins a window.
        let x = distinct(&c.input, 200 + k as u64);
        let what = format!("{} on {:?}", pool.describe(), c.input);
        assert_gradients(&what, &mut pool, &x, &GradCheckConfig::default());
    }
}

#[test]
fn average_pool_gradients_over_a_table_of_configurations() {
    for (k, c) in pool_cases().into_iter().enumerate() {
        // With padding counted in the divisor (PyTorch's default) and without.
        for count_include_pad in [true, false] {
            let config = c.config().count_include_pad(count_include_pad);
            let mut pool = AvgPool2d::new(config).unwrap();
            let x = input(&c.input, 300 + k as u64);
            let what = format!("{} on {:?}", pool.describe(), c.input);
            assert_gradients(&what, &mut pool, &x, &GradCheckConfig::default());
        }
    }
}

#[test]
fn global_average_pool_gradients() {
    for (k, shape) in [[1, 1, 1, 1], [2, 3, 5, 6], [1, 8, 4, 4], [3, 1, 2, 3]]
        .into_iter()
        .enumerate()
    {
        let x = input(&shape, 400 + k as u64);
        assert_gradients(
            &format!("global average pool on {shape:?}"),
            &mut GlobalAvgPool::new(),
            &x,
            &GradCheckConfig::default(),
        );
    }
}

#[test]
fn elementwise_activation_gradients() {
    let shapes: [&[usize]; 5] = [
        &[1, 1, 3, 3],
        &[2, 3, 4, 5],
        &[4, 8, 2, 2],
        &[3, 7],
        &[1, 1],
    ];
    for (k, shape) in shapes.into_iter().enumerate() {
        let seed = 500 + 10 * k as u64;
        let x = off_kink(shape, seed, 2.0);
        for slope in [0.01, 0.2, 1.5] {
            let mut act = LeakyRelu::new(slope);
            let what = format!("{} on {shape:?}", act.describe());
            assert_gradients(&what, &mut act, &x, &GradCheckConfig::default());
        }
        for mode in [GradCheckConfig::default(), eval()] {
            let what = format!("sigmoid on {shape:?}, {:?}", mode.mode);
            assert_gradients(&what, &mut Sigmoid::new(), &x, &mode);
            let what = format!("tanh on {shape:?}, {:?}", mode.mode);
            assert_gradients(&what, &mut Tanh::new(), &x, &mode);
        }
    }
}

/// Normal values of standard deviation `std`, each moved 0.1 further from the nearest
/// of `kinks` when closer than that, so that ±ε never crosses one.
fn off_kinks(shape: &[usize], seed: u64, std: f32, kinks: &[f32]) -> Tensor {
    let mut x = Tensor::randn(shape, std, &mut Rng::new(seed));
    for v in x.data_mut() {
        for &kink in kinks {
            if (*v - kink).abs() < 0.1 {
                *v = kink + 0.1f32.copysign(*v - kink) + (*v - kink);
            }
        }
    }
    x
}

#[test]
fn silu_and_hardswish_gradients() {
    let shapes: [&[usize]; 4] = [&[1, 1, 3, 3], &[2, 3, 4, 5], &[3, 7], &[1, 1]];
    for (k, shape) in shapes.into_iter().enumerate() {
        // Spread over all three pieces of Hardswish, away from its kinks at ±3 (and from
        // 0, where nothing changes but where a sign flip would hide a wrong sign).
        let x = off_kinks(shape, 1600 + k as u64, 3.0, &[-3.0, 0.0, 3.0]);
        for cfg in [GradCheckConfig::default(), eval()] {
            let what = format!("silu on {shape:?}, {:?}", cfg.mode);
            assert_gradients(&what, &mut Silu::new(), &x, &cfg);
            let what = format!("hardswish on {shape:?}, {:?}", cfg.mode);
            assert_gradients(&what, &mut Hardswish::new(), &x, &cfg);
        }
    }
}

#[test]
fn softmax_gradients() {
    // The offset of 30 exercises the subtraction of the row maximum.
    for (k, (shape, offset)) in [([1, 1], 0.0), ([1, 5], 0.0), ([4, 7], 0.0), ([3, 10], 30.0)]
        .into_iter()
        .enumerate()
    {
        let mut x = Tensor::randn(&shape, 2.0, &mut Rng::new(600 + k as u64));
        x.data_mut().iter_mut().for_each(|v| *v += offset);
        assert_gradients(
            &format!("softmax on {shape:?} + {offset}"),
            &mut Softmax::new(),
            &x,
            &GradCheckConfig::default(),
        );
    }
}

#[test]
fn dropout_gradients_with_the_mask_fixed_by_the_checker() {
    let cases: [(f32, &[usize], Mode); 5] = [
        (0.1, &[4, 6], Mode::Train),
        (0.5, &[2, 3, 4, 4], Mode::Train),
        (0.8, &[1, 8, 3, 3], Mode::Train),
        (0.5, &[1, 1, 4, 4], Mode::Train),
        (0.5, &[3, 5], Mode::Eval),
    ];
    for (k, (p, shape, mode)) in cases.into_iter().enumerate() {
        let mut drop = Dropout::with_seed(p, 700 + k as u64).unwrap();
        let x = input(shape, 710 + k as u64);
        let cfg = GradCheckConfig {
            mode,
            ..GradCheckConfig::default()
        };
        let what = format!("{} on {shape:?}, {mode:?}", drop.describe());
        assert_gradients(&what, &mut drop, &x, &cfg);
        if mode == Mode::Train {
            // The checked mask both drops and keeps, so both branches were compared.
            let mask = drop.mask().unwrap().data();
            assert!(mask.contains(&0.0), "{what}: nothing dropped");
            assert!(mask.iter().any(|m| *m != 0.0), "{what}: nothing kept");
        }
    }
}

/// Random γ, β and running statistics, so that no term of the backward is trivially 1 or 0.
fn randomise_batchnorm(bn: &mut dyn Layer, rng: &mut Rng) {
    for (name, p) in bn.params_mut() {
        let c = p.value().len();
        let value = match name.as_str() {
            "weight" => Tensor::uniform(&[c], 0.5, 1.5, rng),
            _ => Tensor::randn(&[c], 1.0, rng),
        };
        p.set(&name, value).unwrap();
    }
    for (name, b) in bn.buffers_mut() {
        let c = b.len();
        match name.as_str() {
            "running_mean" => *b = Tensor::randn(&[c], 0.5, rng),
            "running_var" => *b = Tensor::uniform(&[c], 0.5, 2.0, rng),
            _ => {}
        }
    }
}

#[test]
fn batchnorm2d_gradients_in_train_and_eval() {
    for (k, shape) in [[2, 1, 3, 3], [4, 3, 5, 5], [2, 8, 3, 3], [1, 3, 4, 4]]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng::new(800 + k as u64);
        let mut bn = BatchNorm2d::new(shape[1]).unwrap();
        randomise_batchnorm(&mut bn, &mut rng);
        let mut x = Tensor::randn(&shape, 2.0, &mut rng);
        x.data_mut().iter_mut().for_each(|v| *v += 1.0);
        for cfg in [GradCheckConfig::default(), eval()] {
            let what = format!("{} on {shape:?}, {:?}", bn.describe(), cfg.mode);
            assert_gradients(&what, &mut bn, &x, &cfg);
        }
    }
}

#[test]
fn batchnorm1d_gradients_in_train_and_eval() {
    let shapes: [&[usize]; 5] = [&[4, 3], &[2, 1], &[6, 8], &[3, 4, 5], &[1, 4, 5]];
    for (k, shape) in shapes.into_iter().enumerate() {
        let mut rng = Rng::new(900 + k as u64);
        let mut bn = BatchNorm1d::new(shape[1]).unwrap();
        randomise_batchnorm(&mut bn, &mut rng);
        let mut x = Tensor::randn(shape, 2.0, &mut rng);
        x.data_mut().iter_mut().for_each(|v| *v += 1.0);
        for cfg in [GradCheckConfig::default(), eval()] {
            let what = format!("{} on {shape:?}, {:?}", bn.describe(), cfg.mode);
            assert_gradients(&what, &mut bn, &x, &cfg);
        }
    }
}

/// BatchNorm settings other than PyTorch's defaults, each alone and all together.
fn batchnorm_configs(features: usize) -> Vec<BatchNormConfig> {
    let base = BatchNormConfig::new(features);
    vec![
        base.eps(1e-3).momentum(0.3),
        base.eps(0.5),
        base.momentum(None),
        base.affine(false),
        base.track_running_stats(false),
        base.eps(1e-2)
            .momentum(None)
            .affine(false)
            .track_running_stats(false),
    ]
}

#[test]
fn batchnorm_option_gradients_in_train_and_eval() {
    // Without running statistics, Eval normalises with the batch statistics too, so its
    // input gradient goes through μ and σ² as in Train: both are checked.
    let shapes: [&[usize]; 4] = [&[4, 3, 3, 3], &[2, 2, 3, 4], &[6, 4], &[3, 4, 5]];
    for (k, shape) in shapes.into_iter().enumerate() {
        for (j, config) in batchnorm_configs(shape[1]).into_iter().enumerate() {
            let mut rng = Rng::new(950 + 10 * k as u64 + j as u64);
            let mut bn: Box<dyn Layer> = if shape.len() == 4 {
                Box::new(BatchNorm2d::with_config(config).unwrap())
            } else {
                Box::new(BatchNorm1d::with_config(config).unwrap())
            };
            randomise_batchnorm(bn.as_mut(), &mut rng);
            let mut x = Tensor::randn(shape, 2.0, &mut rng);
            x.data_mut().iter_mut().for_each(|v| *v += 1.0);
            for cfg in [GradCheckConfig::default(), eval()] {
                let what = format!("{} on {shape:?}, {:?}", bn.describe(), cfg.mode);
                assert_gradients(&what, bn.as_mut(), &x, &cfg);
            }
        }
    }
}

/// The basic block's wiring (conv 3×3 → BatchNorm → act → conv 3×3 → BatchNorm, plus the
/// identity or a 1×1 conv → BatchNorm shortcut, act after the sum) with Tanh as the
/// activation: with ReLU, BatchNorm in training mode centres the activation inputs on the
/// kink, and a weight step moves every value of a channel, so some kink would be crossed at
/// almost every position. `Residual::basic_block` differs only in that activation, and
/// ReLU is checked on its own above.
fn smooth_block(ic: usize, oc: usize, stride: usize, rng: &mut Rng) -> Residual {
    let conv = |ic, oc, k, stride, pad, rng: &mut Rng| {
        let config = Conv2dConfig {
            bias: false,
            ..Conv2dConfig::new(ic, oc, k).stride(stride).padding(pad)
        };
        Conv2d::new(config, rng).unwrap()
    };
    let main = Sequential::new()
        .with(conv(ic, oc, 3, stride, 1, rng))
        .with(BatchNorm2d::new(oc).unwrap())
        .with(Tanh::new())
        .with(conv(oc, oc, 3, 1, 1, rng))
        .with(BatchNorm2d::new(oc).unwrap());
    let shortcut = (ic != oc || stride != 1).then(|| {
        Sequential::new()
            .with(conv(ic, oc, 1, stride, 0, rng))
            .with(BatchNorm2d::new(oc).unwrap())
    });
    Residual::new(main, shortcut, Some(Box::new(Tanh::new())))
}

#[test]
fn residual_block_gradients_in_train_and_eval() {
    // (in channels, out channels, stride, input (N, IC, H, W))
    let cases = [
        (1, 1, 1, [2, 1, 5, 5]), // identity shortcut
        (3, 3, 1, [1, 3, 4, 4]), // identity shortcut, batch 1
        (8, 8, 1, [2, 8, 4, 4]), // identity shortcut, 8 channels
        (3, 8, 2, [2, 3, 6, 6]), // 1×1 conv shortcut with stride 2
        (2, 3, 1, [3, 2, 4, 4]), // 1×1 conv shortcut changing channels only
    ];
    for (k, (ic, oc, stride, shape)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(1000 + k as u64);
        let mut block = smooth_block(ic, oc, stride, &mut rng);
        assert_eq!(block.shortcut().is_none(), ic == oc && stride == 1);
        let x = input(&shape, 1010 + k as u64);
        // Training first: its passes also move the running statistics away from (0, 1),
        // which the Eval check then uses.
        for cfg in [GradCheckConfig::default(), eval()] {
            let what = format!(
                "block {ic}→{oc}, stride {stride} on {shape:?}, {:?}",
                cfg.mode
            );
            assert_gradients(&what, &mut block, &x, &cfg);
        }
    }
}

#[test]
fn residual_block_gradients_with_custom_paths() {
    let mut rng = Rng::new(1100);
    let conv = |ic, oc, k, stride, pad, rng: &mut Rng| {
        Conv2d::new(
            Conv2dConfig::new(ic, oc, k).stride(stride).padding(pad),
            rng,
        )
        .unwrap()
    };
    // Identity shortcut and no activation: y = tanh(conv(x)) + x.
    let main = Sequential::new()
        .with(conv(3, 3, 3, 1, 1, &mut rng))
        .with(Tanh::new());
    let mut block = Residual::new(main, None, None);
    assert_gradients(
        "conv-tanh + identity",
        &mut block,
        &input(&[2, 3, 5, 5], 1101),
        &GradCheckConfig::default(),
    );
    // A bare 1×1 convolution with stride as the shortcut, a leaky ReLU after the sum.
    let main = Sequential::new()
        .with(conv(2, 4, 3, 2, 1, &mut rng))
        .with(Sigmoid::new());
    let shortcut = Sequential::new().with(conv(2, 4, 1, 2, 0, &mut rng));
    let mut block = Residual::new(main, Some(shortcut), Some(Box::new(LeakyRelu::new(0.1))));
    assert_gradients(
        "conv-sigmoid + 1×1 conv → leaky ReLU",
        &mut block,
        &input(&[3, 2, 6, 6], 1102),
        &GradCheckConfig::default(),
    );
}

#[test]
fn end_to_end_encoder_decoder_gradients() {
    // Down by a strided convolution, up again by a transposed convolution and by bilinear
    // upsampling, with SiLU between: the shape of a segmentation network's two halves.
    let mut rng = Rng::new(1300);
    let up = ConvTranspose2dConfig::new(6, 4, 3)
        .stride(2)
        .padding(1)
        .output_padding(1);
    let mut net = Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(2, 6, 3).stride(2).padding(1), &mut rng).unwrap())
        .with(Silu::new())
        .with(ConvTranspose2d::new(up, &mut rng).unwrap())
        .with(Silu::new())
        .with(Upsample::new(2, UpsampleMode::Bilinear).unwrap())
        .with(Conv2d::new(Conv2dConfig::new(4, 1, 1), &mut rng).unwrap());
    let x = input(&[2, 2, 6, 6], 1301);
    assert_eq!(net.output_shape(x.shape()).unwrap(), [2, 1, 12, 12]);
    assert_gradients("encoder-decoder", &mut net, &x, &GradCheckConfig::default());
}

#[test]
fn end_to_end_lenet5_gradients() {
    // The zoo's LeNet-5, with ReLU and max-pooling. A first-layer weight moves every value
    // of its channel, so with the default step of 1e-2 some ReLU kink or max-pool tie is
    // crossed at most positions; a step of 1e-3 on one image keeps such crossings rare,
    // and without BatchNorm the f32 rounding of the loss stays far below the tolerance.
    let mut net = zoo::model("lenet5", [1, 16, 16], 10)
        .unwrap()
        .build(&mut Rng::new(1200))
        .unwrap();
    let x = input(&[1, 1, 16, 16], 1201);
    let cfg = GradCheckConfig {
        epsilon: 1e-3,
        ..GradCheckConfig::default()
    };
    assert_gradients("lenet5", &mut net, &x, &cfg);
}

#[test]
fn end_to_end_classic_lenet5_gradients() {
    // LeNet-5 as LeCun et al. built it: tanh and average-pooling ("subsampling"); smooth,
    // so the default step works on a batch.
    let mut rng = Rng::new(1250);
    let pool = || AvgPool2d::new(Pool2dConfig::new(2)).unwrap();
    let mut net = Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(1, 6, 5).padding(2), &mut rng).unwrap())
        .with(Tanh::new())
        .with(pool())
        .with(Conv2d::new(Conv2dConfig::new(6, 16, 5), &mut rng).unwrap())
        .with(Tanh::new())
        .with(pool())
        .with(Flatten::new())
        .with(Linear::new(16 * 2 * 2, 120, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(120, 84, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(84, 10, &mut rng).unwrap());
    let x = input(&[3, 1, 16, 16], 1251);
    assert_gradients("classic lenet5", &mut net, &x, &GradCheckConfig::default());
}

#[test]
fn end_to_end_resnet_with_batchnorm_and_dropout_gradients() {
    // A stem, an identity block, a downsampling block with a 1×1 conv shortcut, global
    // average pooling, dropout and a classifier; Tanh for the reason given at smooth_block.
    let mut rng = Rng::new(1400);
    let stem = Conv2dConfig {
        bias: false,
        ..Conv2dConfig::new(3, 8, 3).padding(1)
    };
    let mut net = Sequential::new()
        .with(Conv2d::new(stem, &mut rng).unwrap())
        .with(BatchNorm2d::new(8).unwrap())
        .with(Tanh::new())
        .with(smooth_block(8, 8, 1, &mut rng))
        .with(smooth_block(8, 16, 2, &mut rng))
        .with(GlobalAvgPool::new())
        .with(Flatten::new())
        .with(Dropout::new(0.25, &mut rng).unwrap())
        .with(Linear::new(16, 5, &mut rng).unwrap());
    let x = input(&[3, 3, 8, 8], 1401);
    for cfg in [GradCheckConfig::default(), eval()] {
        assert_gradients(&format!("resnet, {:?}", cfg.mode), &mut net, &x, &cfg);
    }
}
