//! Finite-difference checks of the input and every parameter gradient of every layer,
//! over a table of configurations, and end to end through whole networks.

use ocellus::gradcheck::{check_gradients, GradCheckConfig};
use ocellus::layers::{Conv2d, Conv2dConfig, Flatten, Linear, Padding, Relu};
use ocellus::{Layer, Mode, Result, Rng, Sequential, Tensor};

/// Runs the check and fails with the full report if any tensor is off.
fn assert_gradients(what: &str, layer: &mut dyn Layer, x: &Tensor, cfg: &GradCheckConfig) {
    let report = check_gradients(layer, x, cfg).unwrap();
    assert!(report.passed(), "{what}\n{report}");
    assert!(
        report.tensors.iter().all(|t| t.checked > 0),
        "{what}: nothing checked\n{report}"
    );
}

fn input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 1.0, &mut Rng::new(seed))
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

    // Inputs kept at least 0.1 away from the kink at 0, so ±ε never crosses it.
    let mut x = input(&[2, 3, 4, 4], 4);
    x.data_mut()
        .iter_mut()
        .for_each(|v| *v += 0.1f32.copysign(*v));
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
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.inner.forward(x, mode)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let mut dx = self.inner.backward(dy)?;
        dx.data_mut().iter_mut().for_each(|v| *v *= self.factor);
        Ok(dx)
    }
    fn params(&self) -> Vec<(String, &ocellus::Param)> {
        self.inner.params()
    }
    fn params_mut(&mut self) -> Vec<(String, &mut ocellus::Param)> {
        self.inner.params_mut()
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
        fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
            self.0.forward(x, mode)
        }
        fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
            // Adding the weight gradient twice: the bug of a layer that accumulates wrongly.
            self.0.backward(dy)?;
            self.0.params_mut()[1].1.grad.fill(0.0);
            self.0.backward(dy)
        }
        fn params(&self) -> Vec<(String, &ocellus::Param)> {
            self.0.params()
        }
        fn params_mut(&mut self) -> Vec<(String, &mut ocellus::Param)> {
            self.0.params_mut()
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
