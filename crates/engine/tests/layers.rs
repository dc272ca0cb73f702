//! Pooling, activations, dropout, batch normalisation, transposed convolution, upsampling
//! and residual blocks: forward values and gradients worked by hand, train vs eval
//! behaviour, errors. Finite-difference checks of every backward are in
//! `gradcheck_layers.rs`.

use ocellus::geometry::ReceptiveField;
use ocellus::gradcheck::assert_close;
use ocellus::layers::Randomness;
use ocellus::layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d,
    ConvTranspose2dConfig, Dropout, GlobalAvgPool, Hardswish, LeakyRelu, MaxPool2d, Pool2dConfig,
    Relu, Sigmoid, Silu, Softmax, Tanh, Upsample, UpsampleMode, UpsampleSize,
};
use ocellus::LayerExt;
use ocellus::{Error, Layer, Mode, Residual, Rng, Sequential, Tensor};

fn t(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_vec(shape, data.to_vec()).unwrap()
}

fn backward_before_forward(layer: &mut dyn Layer, dy_shape: &[usize]) {
    let err = layer.backward_ref(&Tensor::zeros(dy_shape)).unwrap_err();
    assert!(
        matches!(err, Error::BackwardBeforeForward { .. }),
        "{}: {err}",
        layer.kind()
    );
}

mod pooling {
    use super::*;

    #[test]
    fn overlapping_windows_add_gradients_at_a_shared_maximum() {
        // The 9 in the centre is the maximum of all four 2×2 windows (stride 1).
        let x = t(&[1, 1, 3, 3], &[1., 2., 3., 4., 9., 5., 6., 7., 8.]);
        let mut pool = MaxPool2d::new(Pool2dConfig::new(2).stride(1)).unwrap();
        let y = pool.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.data(), &[9., 9., 9., 9.]);
        let dx = pool
            .backward_ref(&t(&[1, 1, 2, 2], &[1., 2., 3., 4.]))
            .unwrap();
        assert_eq!(dx.data(), &[0., 0., 0., 0., 10., 0., 0., 0., 0.]);
    }

    #[test]
    fn kernel_3_stride_2_overlaps_by_one_column() {
        // 1×5 rows; windows cover columns 0..3 and 2..5, sharing column 2.
        let x = t(
            &[1, 1, 3, 5],
            &[0., 1., 7., 2., 3., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.],
        );
        let mut pool = MaxPool2d::new(Pool2dConfig::new(3).stride(2)).unwrap();
        assert_eq!(pool.output_shape(&[1, 1, 3, 5]).unwrap(), vec![1, 1, 1, 2]);
        let y = pool.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(y.data(), &[7., 7.]);
        let dx = pool.backward_ref(&t(&[1, 1, 1, 2], &[0.5, 0.25])).unwrap();
        assert_eq!(dx.data()[2], 0.75);
        assert_eq!(dx.data().iter().sum::<f32>(), 0.75);
    }

    #[test]
    fn padding_is_never_the_maximum() {
        // All values negative: a zero-padded max would return 0, PyTorch's −∞ padding not.
        let x: Vec<f32> = (1..=16).map(|v| -(v as f32)).collect();
        let x = t(&[1, 1, 4, 4], &x);
        let mut pool = MaxPool2d::new(Pool2dConfig::new(3).stride(2).padding(1)).unwrap();
        let y = pool.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        // Windows: rows/cols {0,1} or {1,2,3}; the maximum is the top-left value of each.
        assert_eq!(y.data(), &[-1., -2., -5., -6.]);
        assert_eq!(pool.argmax().unwrap(), &[0, 1, 4, 5]);
    }

    #[test]
    fn ties_go_to_the_first_maximum_in_row_major_order() {
        let x = t(&[1, 1, 2, 2], &[5., 5., 5., 5.]);
        let mut pool = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
        pool.forward_ref(&x, Mode::Train).unwrap();
        let dx = pool.backward_ref(&t(&[1, 1, 1, 1], &[1.])).unwrap();
        assert_eq!(dx.data(), &[1., 0., 0., 0.]);
    }

    #[test]
    fn argmax_indexes_the_whole_batch() {
        // Two images, two channels: each plane's maximum is its last value.
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut pool = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
        let y = pool
            .forward_ref(&t(&[2, 2, 2, 2], &x), Mode::Train)
            .unwrap();
        assert_eq!(y.data(), &[3., 7., 11., 15.]);
        assert_eq!(pool.argmax().unwrap(), &[3, 7, 11, 15]);
    }

    #[test]
    fn average_pool_of_the_notes_example() {
        let x = t(
            &[1, 1, 4, 4],
            &[
                1., 3., 2., 4., 5., 6., 1., 2., 1., 2., 3., 0., 0., 1., 1., 4.,
            ],
        );
        let mut pool = AvgPool2d::new(Pool2dConfig::new(2)).unwrap();
        let y = pool.forward_ref(&x, Mode::Train).unwrap();
        // (1+3+5+6)/4, (2+4+1+2)/4, (1+2+0+1)/4, (3+0+1+4)/4
        assert_eq!(y.data(), &[3.75, 2.25, 1.0, 2.0]);
        let dx = pool
            .backward_ref(&t(&[1, 1, 2, 2], &[4., 8., 12., 16.]))
            .unwrap();
        #[rustfmt::skip]
        let expected = [
            1., 1., 2., 2.,
            1., 1., 2., 2.,
            3., 3., 4., 4.,
            3., 3., 4., 4.,
        ];
        assert_eq!(dx.data(), &expected);
    }

    #[test]
    fn average_pool_counts_padding_in_the_divisor() {
        // count_include_pad=True: a 3×3 window over a padded 2×2 of ones sums 4, divided by 9.
        let mut pool = AvgPool2d::new(Pool2dConfig::new(3).stride(1).padding(1)).unwrap();
        let y = pool
            .forward_ref(&Tensor::full(&[1, 1, 2, 2], 1.0), Mode::Train)
            .unwrap();
        assert_close("y", y.data(), &[4.0 / 9.0; 4], 0.0, 1e-7);
        // Every input lies in all four windows: 4 · (1/9).
        let dx = pool
            .backward_ref(&Tensor::full(&[1, 1, 2, 2], 1.0))
            .unwrap();
        assert_close("dx", dx.data(), &[4.0 / 9.0; 4], 0.0, 1e-7);
    }

    #[test]
    fn ceil_mode_adds_a_last_partial_window() {
        // 3×3 input, 2×2 windows, stride 2: floor mode keeps one window per axis, ceil mode
        // a second one holding the last row or column alone.
        #[rustfmt::skip]
        let x = t(&[1, 1, 3, 3], &[
            1., 5., 2.,
            4., 3., 9.,
            8., 6., 7.,
        ]);
        let config = Pool2dConfig::new(2).ceil_mode(true);
        let mut pool = MaxPool2d::new(config).unwrap();
        let y = pool.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.data(), &[5., 9., 8., 7.]);
        assert_eq!(pool.argmax().unwrap(), &[1, 5, 6, 8]);
        let dx = pool
            .backward_ref(&t(&[1, 1, 2, 2], &[1., 2., 3., 4.]))
            .unwrap();
        assert_eq!(dx.data(), &[0., 1., 0., 0., 0., 2., 3., 0., 4.]);
        // The partial windows of an average count the positions inside the (here
        // unpadded) image only, even with count_include_pad: PyTorch's divide_factor.
        let mut avg = AvgPool2d::new(config).unwrap();
        let y = avg.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(y.data(), &[13. / 4., 11. / 2., 14. / 2., 7.]);
        let dx = avg
            .backward_ref(&t(&[1, 1, 2, 2], &[4., 2., 6., 1.]))
            .unwrap();
        assert_eq!(dx.data(), &[1., 1., 1., 1., 1., 1., 3., 3., 1.]);
        // Floor mode drops the last row and column.
        let floor = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
        assert_eq!(floor.output_shape(&[1, 1, 3, 3]).unwrap(), [1, 1, 1, 1]);
    }

    #[test]
    fn ceil_mode_divisors_with_padding_follow_pytorch() {
        // nn.AvgPool2d(3, 2, padding=1, ceil_mode=True) on a 6×6 of ones gives, per axis,
        // windows [-1, 2), [1, 4), [3, 6), [5, 8): the last one is clipped to the padded
        // image [-1, 7), so it counts 2 positions (one real, one padded) instead of 3.
        let ones = Tensor::full(&[1, 1, 6, 6], 1.0);
        let config = Pool2dConfig::new(3).stride(2).padding(1).ceil_mode(true);
        let mut pool = AvgPool2d::new(config).unwrap();
        let y = pool.forward_ref(&ones, Mode::Train).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        // Real positions over counted positions, per axis: 2/3, 3/3, 3/3, 1/2.
        let axis = [2. / 3., 1., 1., 1. / 2.];
        let want: Vec<f32> = (0..16).map(|k| axis[k / 4] * axis[k % 4]).collect();
        assert_close("y", y.data(), &want, 0.0, 1e-7);
        // count_include_pad=False divides by the real positions: an average of ones is 1.
        let mut pool = AvgPool2d::new(config.count_include_pad(false)).unwrap();
        let y = pool.forward_ref(&ones, Mode::Train).unwrap();
        assert_close("y", y.data(), &[1.0; 16], 0.0, 1e-7);
        let dy = Tensor::full(&[1, 1, 4, 4], 1.0);
        let dx = pool.backward_ref(&dy).unwrap();
        // Corner (0, 0) is in windows 0 of both axes only, each of 2×2 real positions.
        assert_close("dx", &dx.data()[..1], &[0.25], 0.0, 1e-7);
    }

    #[test]
    fn in_ceil_mode_a_window_may_be_larger_than_the_image() {
        // PyTorch: nn.MaxPool2d(3, 2, ceil_mode=True) on 2×2 gives 1×1.
        let x = t(&[1, 1, 2, 2], &[1., 4., 2., 3.]);
        let config = Pool2dConfig::new(3).stride(2).ceil_mode(true);
        let mut pool = MaxPool2d::new(config).unwrap();
        assert_eq!(pool.forward_ref(&x, Mode::Train).unwrap().data(), &[4.]);
        let mut avg = AvgPool2d::new(config).unwrap();
        assert_eq!(avg.forward_ref(&x, Mode::Train).unwrap().data(), &[2.5]);
        // Without ceil mode it does not fit.
        assert!(MaxPool2d::new(Pool2dConfig::new(3).stride(2))
            .unwrap()
            .output_shape(&[1, 1, 2, 2])
            .is_err());
    }

    #[test]
    fn count_include_pad_off_by_hand() {
        // 3×3 windows, stride 1, pad 1 over a 2×2 of ones: every window holds the 4 real
        // values, divided by 4 instead of 9.
        let config = Pool2dConfig::new(3)
            .stride(1)
            .padding(1)
            .count_include_pad(false);
        let mut pool = AvgPool2d::new(config).unwrap();
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = pool.forward_ref(&x, Mode::Train).unwrap();
        assert_close("y", y.data(), &[2.5; 4], 0.0, 1e-7);
        let dx = pool
            .backward_ref(&Tensor::full(&[1, 1, 2, 2], 1.0))
            .unwrap();
        assert_close("dx", dx.data(), &[1.0; 4], 0.0, 1e-7);
        // Max pooling has no such setting.
        let err = MaxPool2d::new(config).err().unwrap();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        assert!(err.to_string().contains("count_include_pad"), "{err}");
    }

    #[test]
    fn per_axis_settings_and_their_description() {
        let config = Pool2dConfig::new(3)
            .kernel(3, 2)
            .stride_hw(2, 1)
            .padding_hw(1, 0)
            .ceil_mode(true);
        assert_eq!(config.kernel, (3, 2));
        assert_eq!(config.effective_stride(), (2, 1));
        assert_eq!(config.padding, (1, 0));
        let pool = MaxPool2d::new(config).unwrap();
        assert_eq!(
            pool.describe(),
            "MaxPool2d(3×2, stride (2, 1), pad (1, 0), ceil mode)"
        );
        // (7 + 2 − 3)/2 rounded up + 1 = 4 rows; (5 − 2)/1 + 1 = 4 columns.
        assert_eq!(pool.output_shape(&[1, 1, 7, 5]).unwrap(), [1, 1, 4, 4]);
        let avg = AvgPool2d::new(config.count_include_pad(false)).unwrap();
        assert_eq!(
            avg.describe(),
            "AvgPool2d(3×2, stride (2, 1), pad (1, 0), ceil mode, padding not counted)"
        );
    }

    #[test]
    fn global_average_pool_keeps_pytorch_shape() {
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut gap = GlobalAvgPool::new();
        let y = gap.forward_ref(&t(&[2, 2, 2, 2], &x), Mode::Train).unwrap();
        assert_eq!(y.shape(), &[2, 2, 1, 1]);
        assert_eq!(y.data(), &[1.5, 5.5, 9.5, 13.5]);
        let dx = gap
            .backward_ref(&t(&[2, 2, 1, 1], &[4., 8., 0., -4.]))
            .unwrap();
        assert_eq!(&dx.data()[..8], &[1., 1., 1., 1., 2., 2., 2., 2.]);
        assert_eq!(&dx.data()[12..], &[-1., -1., -1., -1.]);
    }

    #[test]
    fn settings_pytorch_rejects_are_config_errors() {
        for config in [
            Pool2dConfig::new(2).padding(2),
            Pool2dConfig::new(3).padding(2),
            Pool2dConfig::new(0),
            Pool2dConfig::new(2).stride(0),
            // One zero on one axis is enough (a stride given, so that it is not the
            // kernel's zero that refuses it).
            Pool2dConfig::new(2).kernel(0, 2).stride(1),
            Pool2dConfig::new(2).kernel(2, 0).stride(1),
            Pool2dConfig::new(2).stride_hw(0, 1),
            Pool2dConfig::new(2).stride_hw(1, 0),
            Pool2dConfig::new(2).padding_hw(0, 2),
        ] {
            assert!(matches!(MaxPool2d::new(config), Err(Error::Config { .. })));
            assert!(matches!(AvgPool2d::new(config), Err(Error::Config { .. })));
        }
        assert!(MaxPool2d::new(Pool2dConfig::new(3).padding(1)).is_ok());
    }

    #[test]
    fn shapes_that_do_not_fit_are_shape_errors() {
        let mut pool = MaxPool2d::new(Pool2dConfig::new(3)).unwrap();
        let msg = pool
            .forward_ref(&Tensor::zeros(&[1, 1, 2, 2]), Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("3×3 window") && msg.contains("(1, 1, 2, 2)"),
            "{msg}"
        );
        let msg = pool.output_shape(&[8, 16]).unwrap_err().to_string();
        assert!(msg.contains("Flatten"), "{msg}");
        assert!(GlobalAvgPool::new().output_shape(&[8, 16]).is_err());
        // A gradient of the wrong shape.
        pool.forward_ref(&Tensor::zeros(&[1, 1, 6, 6]), Mode::Train)
            .unwrap();
        assert!(pool.backward_ref(&Tensor::zeros(&[1, 1, 3, 3])).is_err());
    }

    #[test]
    fn backward_before_forward_is_an_error() {
        backward_before_forward(
            &mut MaxPool2d::new(Pool2dConfig::new(2)).unwrap(),
            &[1, 1, 1, 1],
        );
        backward_before_forward(
            &mut AvgPool2d::new(Pool2dConfig::new(2)).unwrap(),
            &[1, 1, 1, 1],
        );
        backward_before_forward(&mut GlobalAvgPool::new(), &[1, 1, 1, 1]);
    }

    #[test]
    fn receptive_field_and_description() {
        let pool = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
        let rf = pool.receptive_field([ReceptiveField { size: 7, jump: 1 }; 2]);
        assert_eq!(rf[0], ReceptiveField { size: 8, jump: 2 });
        assert_eq!(pool.describe(), "MaxPool2d(2×2, stride 2)");
        assert_eq!(pool.kind(), "maxpool2d");
        let avg = AvgPool2d::new(Pool2dConfig::new(3).stride(1).padding(1)).unwrap();
        assert_eq!(avg.describe(), "AvgPool2d(3×3, stride 1, pad 1)");
        assert_eq!(avg.kind(), "avgpool2d");
        assert_eq!(GlobalAvgPool::new().kind(), "globalavgpool");
    }
}

mod activations {
    use super::*;

    #[test]
    fn leaky_relu_uses_pytorch_default_slope() {
        let mut act = LeakyRelu::default();
        assert_eq!(act.negative_slope(), 0.01);
        let y = act
            .forward_ref(&t(&[1, 3], &[-2., 0., 3.]), Mode::Train)
            .unwrap();
        assert_eq!(y.data(), &[-0.02, 0., 3.]);
        let dx = act.backward_ref(&t(&[1, 3], &[1., 1., 2.])).unwrap();
        assert_eq!(dx.data(), &[0.01, 0.01, 2.]);
        let mut steep = LeakyRelu::new(0.5);
        assert_eq!(
            steep
                .forward_ref(&t(&[1], &[-4.]), Mode::Eval)
                .unwrap()
                .data(),
            &[-2.]
        );
    }

    #[test]
    fn sigmoid_values_and_derivative() {
        let mut act = Sigmoid::new();
        let y = act
            .forward_ref(&t(&[4], &[0., 100., -100., 2f32.ln()]), Mode::Train)
            .unwrap();
        // σ(ln 2) = 1/(1 + 1/2) = 2/3.
        assert_close("y", y.data(), &[0.5, 1.0, 0.0, 2.0 / 3.0], 0.0, 1e-7);
        let dx = act.backward_ref(&t(&[4], &[1., 1., 1., 9.])).unwrap();
        // σ' = σ(1 − σ): 1/4, 0, 0, 9·(2/3)(1/3) = 2.
        assert_close("dx", dx.data(), &[0.25, 0.0, 0.0, 2.0], 0.0, 1e-6);
    }

    #[test]
    fn tanh_values_and_derivative() {
        let mut act = Tanh::new();
        // tanh(ln 3) = (3 − 1/3)/(3 + 1/3) = 0.8.
        let y = act
            .forward_ref(&t(&[2], &[0., 3f32.ln()]), Mode::Train)
            .unwrap();
        assert_close("y", y.data(), &[0.0, 0.8], 0.0, 1e-6);
        let dx = act.backward_ref(&t(&[2], &[1., 1.])).unwrap();
        assert_close("dx", dx.data(), &[1.0, 1.0 - 0.64], 0.0, 1e-6);
    }

    #[test]
    fn softmax_values_stability_and_derivative() {
        let mut act = Softmax::new();
        let x = t(&[2, 3], &[0., 2f32.ln(), 3f32.ln(), 1000., 1000., 1000.]);
        let y = act.forward_ref(&x, Mode::Eval).unwrap();
        let third = 1.0 / 3.0;
        assert_close(
            "y",
            y.data(),
            &[1. / 6., third, 0.5, third, third, third],
            0.0,
            1e-6,
        );
        // dx = y ⊙ (dy − Σ dy·y): row 1 with dy = e₀, Σ = 1/6; row 2 with a constant dy gives 0.
        let dx = act
            .backward_ref(&t(&[2, 3], &[1., 0., 0., 5., 5., 5.]))
            .unwrap();
        assert_close(
            "dx",
            dx.data(),
            &[5. / 36., -2. / 36., -3. / 36., 0., 0., 0.],
            0.0,
            1e-6,
        );
        let msg = act.output_shape(&[2, 3, 4, 4]).unwrap_err().to_string();
        assert!(msg.contains("Flatten"), "{msg}");
    }

    #[test]
    fn silu_values_and_derivative() {
        let mut act = Silu::new();
        // σ(ln 3) = 3/4, so SiLU(ln 3) = 0.75·ln 3; far out, −0 and the identity.
        let x = t(&[4], &[0., 3f32.ln(), -100., 100.]);
        let y = act.forward_ref(&x, Mode::Train).unwrap();
        assert_close("y", y.data(), &[0., 0.75 * 3f32.ln(), 0., 100.], 0.0, 1e-6);
        // σ·(1 + x·(1 − σ)): 1/2 at 0, 0.75·(1 + ln 3/4) at ln 3, 0 and 1 far out.
        let dx = act.backward_ref(&t(&[4], &[1., 1., 1., 2.])).unwrap();
        let at_ln3 = 0.75 * (1.0 + 3f32.ln() * 0.25);
        assert_close("dx", dx.data(), &[0.5, at_ln3, 0., 2.], 0.0, 1e-6);
    }

    #[test]
    fn hardswish_pieces_and_pytorch_convention_at_the_kinks() {
        let mut act = Hardswish::new();
        let x = t(&[7], &[-4., -3., -1.5, 0., 1., 3., 4.]);
        let y = act.forward_ref(&x, Mode::Train).unwrap();
        // x·(x + 3)/6 between the kinks: −1.5·1.5/6 = −0.375, 1·4/6 = 2/3.
        assert_close(
            "y",
            y.data(),
            &[0., 0., -0.375, 0., 2. / 3., 3., 4.],
            0.0,
            1e-7,
        );
        // x/3 + 1/2 between, and at −3 and 3 the outer piece's 0 and 1, as PyTorch.
        let dx = act.backward_ref(&Tensor::full(&[7], 1.)).unwrap();
        assert_close(
            "dx",
            dx.data(),
            &[0., 0., 0., 0.5, 5. / 6., 1., 1.],
            0.0,
            1e-7,
        );
    }

    #[test]
    fn backward_before_forward_is_an_error() {
        backward_before_forward(&mut LeakyRelu::default(), &[1, 1]);
        backward_before_forward(&mut Sigmoid::new(), &[1, 1]);
        backward_before_forward(&mut Tanh::new(), &[1, 1]);
        backward_before_forward(&mut Softmax::new(), &[1, 1]);
        backward_before_forward(&mut Silu::new(), &[1, 1]);
        backward_before_forward(&mut Hardswish::new(), &[1, 1]);
    }

    #[test]
    fn descriptions() {
        let described: Vec<String> = [
            Box::new(Relu::new()) as Box<dyn Layer>,
            Box::new(LeakyRelu::new(0.2)),
            Box::new(Sigmoid::new()),
            Box::new(Tanh::new()),
            Box::new(Softmax::new()),
        ]
        .iter()
        .map(|l| l.describe())
        .collect();
        assert_eq!(
            described,
            ["ReLU", "LeakyReLU(0.2)", "Sigmoid", "Tanh", "Softmax"]
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(LeakyRelu::default().kind(), "leakyrelu");
        assert_eq!(Sigmoid::new().kind(), "sigmoid");
        assert_eq!(Tanh::new().kind(), "tanh");
        assert_eq!(Softmax::new().kind(), "softmax");
        assert_eq!(Silu::new().kind(), "silu");
        assert_eq!(Hardswish::new().kind(), "hardswish");
        assert_eq!(Silu::new().describe(), "SiLU");
        assert_eq!(Hardswish::new().describe(), "Hardswish");
    }

    /// A `Sequential` runs a convolution and the ReLU after it as one forward pass (the
    /// ReLU applied as the kernel writes each output): the same bits as the two layers
    /// one after the other — y, then dx, dweight and dbias — on each of the convolution's
    /// paths (direct, Winograd, im2col + GEMM), in training and evaluation.
    #[test]
    fn convolution_then_relu_runs_fused_with_the_same_bits() {
        let cases = [
            (Conv2dConfig::new(3, 8, 3).padding(1), [2, 3, 9, 7]),
            (Conv2dConfig::new(64, 64, 3).padding(1), [3, 64, 6, 6]),
            (
                Conv2dConfig::new(4, 6, 3).stride(2).padding(1),
                [2, 4, 9, 9],
            ),
            (Conv2dConfig::new(4, 6, 1).bias(false), [2, 4, 5, 5]),
        ];
        for (config, shape) in cases {
            let mut rng = Rng::new(5);
            let conv = Conv2d::new(config, &mut rng).unwrap();
            let x = Tensor::randn(&shape, 1.0, &mut rng);
            let out = conv.output_shape(&shape).unwrap();
            let dy = Tensor::randn(&out, 1.0, &mut rng);
            let copy = |conv: &Conv2d| {
                let w = conv.weight().value().clone();
                let b = conv.bias().map(|b| b.value().clone());
                Conv2d::from_weights(config, w, b).unwrap()
            };
            for mode in [Mode::Train, Mode::Eval] {
                let (mut alone, mut relu) = (copy(&conv), Relu::default());
                let y_apart = relu
                    .forward(alone.forward_ref(&x, mode).unwrap(), mode)
                    .unwrap();
                let dx_apart = alone.backward(relu.backward_ref(&dy).unwrap()).unwrap();

                let mut fused = Sequential::new().with(copy(&conv)).with(Relu::default());
                assert!(fused.layers()[0].fuses_relu());
                let y_fused = fused.forward_ref(&x, mode).unwrap();
                let dx_fused = fused.backward_ref(&dy).unwrap();
                let what = format!("{mode:?} {config:?}");
                assert_eq!(y_fused.data(), y_apart.data(), "{what}: y");
                assert_eq!(dx_fused.data(), dx_apart.data(), "{what}: dx");
                for ((name, p), (_, want)) in fused.params().into_iter().zip(alone.params()) {
                    assert_eq!(p.grad().data(), want.grad().data(), "{what}: {name}");
                }
                assert!(y_fused.data().contains(&0.0) && y_fused.data().iter().any(|v| *v > 0.0));
            }
        }
    }
}

mod dropout {
    use super::*;

    #[test]
    fn eval_is_the_identity_both_ways() {
        let mut drop = Dropout::with_seed(0.5, 1).unwrap();
        let x = t(&[2, 2], &[1., 2., 3., 4.]);
        assert_eq!(drop.forward_ref(&x, Mode::Eval).unwrap(), x);
        assert_eq!(drop.backward_ref(&x).unwrap(), x);
    }

    #[test]
    fn train_zeroes_about_p_and_scales_the_rest_by_one_over_one_minus_p() {
        let mut drop = Dropout::new(0.25, &mut Rng::new(3)).unwrap();
        let x = Tensor::full(&[100, 100], 3.0);
        let y = drop.forward_ref(&x, Mode::Train).unwrap();
        let kept = y.data().iter().filter(|v| **v != 0.0).count();
        // Binomial(10⁴, 0.75): standard deviation ≈ 43, so ±300 is seven of them.
        assert!((7_200..7_800).contains(&kept), "kept {kept}");
        assert!(y.data().iter().all(|v| *v == 0.0 || *v == 4.0));
        // Backward lets the gradient through exactly where the value was kept, scaled alike.
        let dx = drop.backward_ref(&Tensor::full(&[100, 100], 1.5)).unwrap();
        for (d, y) in dx.data().iter().zip(y.data()) {
            assert_eq!(*d, if *y == 0.0 { 0.0 } else { 2.0 });
        }
    }

    #[test]
    fn every_run_seed_gives_named_children_their_own_masks() {
        // A dropout inside a residual block's main path (a named child): sixteen run seeds
        // that differ only in their low bits must give sixteen different masks.
        let x = Tensor::full(&[2, 1, 4, 4], 1.0);
        let mut masks = Vec::new();
        for seed in 0..16 {
            let main = Sequential::new().with(Dropout::with_seed(0.5, 0).unwrap());
            let mut block = Residual::new(main, None, None);
            block.set_randomness(Randomness::Seed(seed));
            masks.push(block.forward_ref(&x, Mode::Train).unwrap().into_vec());
        }
        for i in 0..masks.len() {
            for j in i + 1..masks.len() {
                assert_ne!(masks[i], masks[j], "seeds {i} and {j}");
            }
        }
    }

    #[test]
    fn masks_follow_the_seed_and_fixing_reuses_them() {
        let x = Tensor::full(&[4, 16], 1.0);
        let mut a = Dropout::with_seed(0.5, 9).unwrap();
        let mut b = Dropout::with_seed(0.5, 9).unwrap();
        let first = a.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(first, b.forward_ref(&x, Mode::Train).unwrap());
        let second = a.forward_ref(&x, Mode::Train).unwrap();
        assert_ne!(first, second, "a new mask each pass");
        a.set_randomness(Randomness::Frozen);
        assert_eq!(a.forward_ref(&x, Mode::Train).unwrap(), second);
        assert_eq!(a.forward_ref(&x, Mode::Train).unwrap(), second);
        let err = a
            .forward_ref(&Tensor::full(&[2, 16], 1.0), Mode::Train)
            .unwrap_err();
        assert!(err.to_string().contains("Randomness::Free"), "{err}");
        a.set_randomness(Randomness::Free);
        assert_ne!(a.forward_ref(&x, Mode::Train).unwrap(), second);
    }

    #[test]
    fn backward_before_forward_is_an_error() {
        backward_before_forward(&mut Dropout::with_seed(0.5, 0).unwrap(), &[1, 1]);
        assert!(matches!(
            Dropout::with_seed(1.0, 0),
            Err(Error::Config { .. })
        ));
    }
}

mod batchnorm {
    use super::*;

    /// A `Sequential` runs BatchNorm and the ReLU after it as one forward pass: the same
    /// bits as the two layers one after the other — y, then dx, dγ, dβ and the running
    /// statistics — in training and evaluation, 2-D and 4-D, with values landing exactly
    /// on the kink too (γ = 0 in a channel). The ReLU keeps the fused pass's output for
    /// its own backward.
    #[test]
    fn batchnorm_then_relu_runs_fused_with_the_same_bits() {
        fn pair(features: usize, two_d: bool) -> (Box<dyn Layer>, Box<dyn Layer>) {
            let mut bn: Box<dyn Layer> = if two_d {
                Box::new(BatchNorm1d::new(features).unwrap())
            } else {
                Box::new(BatchNorm2d::new(features).unwrap())
            };
            let gamma: Vec<f32> = (0..features).map(|c| [0.0, 0.7, -1.3][c % 3]).collect();
            let beta: Vec<f32> = (0..features).map(|c| 0.1 * c as f32 - 0.2).collect();
            bn.set("weight", Tensor::from_vec(&[features], gamma).unwrap())
                .unwrap();
            bn.set("bias", Tensor::from_vec(&[features], beta).unwrap())
                .unwrap();
            (bn, Box::new(Relu::default()))
        }
        for (shape, two_d) in [(vec![4, 5, 3, 6], false), (vec![7, 6], true)] {
            let features = shape[1];
            let mut rng = Rng::new(11);
            let x = Tensor::randn(&shape, 1.0, &mut rng);
            let dy = Tensor::randn(&shape, 1.0, &mut rng);
            for mode in [Mode::Train, Mode::Eval] {
                let (mut bn, mut relu) = pair(features, two_d);
                let y_apart = relu
                    .forward(bn.forward_ref(&x, mode).unwrap(), mode)
                    .unwrap();
                let dx_apart = bn.backward(relu.backward_ref(&dy).unwrap()).unwrap();

                let (bn2, relu2) = pair(features, two_d);
                let mut fused = Sequential::new();
                fused.push(bn2);
                fused.push(relu2);
                assert!(fused.layers()[0].fuses_relu());
                let y_fused = fused.forward_ref(&x, mode).unwrap();
                let dx_fused = fused.backward_ref(&dy).unwrap();
                assert_eq!(y_fused.data(), y_apart.data(), "{mode:?} {shape:?}: y");
                assert_eq!(dx_fused.data(), dx_apart.data(), "{mode:?} {shape:?}: dx");
                let apart: Vec<_> = bn
                    .params()
                    .into_iter()
                    .map(|(_, p)| p.grad().clone())
                    .collect();
                for ((name, p), want) in fused.params().into_iter().zip(&apart) {
                    assert_eq!(p.grad().data(), want.data(), "{mode:?} {shape:?}: {name}");
                }
                for ((name, b), (_, want)) in fused.buffers().into_iter().zip(bn.buffers()) {
                    assert_eq!(b.data(), want.data(), "{mode:?} {shape:?}: {name}");
                }
                assert!(y_fused.data().contains(&0.0) && y_fused.data().iter().any(|v| *v > 0.0));

                // The ReLU's own backward after the fused forward.
                let relu_dx = fused.layers_mut()[1].backward_ref(&dy).unwrap();
                let want = relu.backward_ref(&dy).unwrap();
                assert_eq!(
                    relu_dx.data(),
                    want.data(),
                    "{mode:?} {shape:?}: ReLU alone"
                );
            }
        }
    }

    /// Called by hand with what does not fit, the fused passes give errors, not panics:
    /// backward before forward, a pooling whose input is not the layer's, windows that
    /// overlap, a gradient of the wrong shape; nothing is half-updated by a refused call.
    #[test]
    fn fused_passes_refuse_what_does_not_fit() {
        use ocellus::kernels::pool::PoolGeometry;
        let mut bn = BatchNorm2d::new(3).unwrap();
        let dp = Tensor::zeros(&[2, 3, 2, 2]);
        let err = bn.backward_relu_pool(dp.clone()).unwrap_err().to_string();
        assert!(err.contains("forward_relu_pool"), "{err}");
        let x = Tensor::randn(&[2, 3, 4, 4], 1.0, &mut Rng::new(3));
        let pool = |shape: [usize; 4], k: usize, s: usize| {
            PoolGeometry::new(shape, (k, k), (s, s), (0, 0), false, true).unwrap()
        };
        for wrong in [
            pool([2, 3, 6, 4], 2, 2),
            pool([2, 5, 4, 4], 2, 2),
            pool([2, 3, 4, 4], 3, 1),
        ] {
            let err = bn
                .forward_relu_pool(x.clone(), Mode::Train, &wrong)
                .unwrap_err();
            assert!(err.to_string().contains("2×2 max-pooling"), "{err}");
        }
        assert_eq!(
            bn.num_batches_tracked(),
            Some(0),
            "refused before any statistics"
        );
        let p = bn
            .forward_relu_pool(x.clone(), Mode::Train, &pool([2, 3, 4, 4], 2, 2))
            .unwrap();
        assert_eq!(p.shape(), dp.shape());
        let err = bn
            .backward_relu_pool(Tensor::zeros(&[2, 3, 4, 4]))
            .unwrap_err();
        assert!(err.to_string().contains("(2, 3, 2, 2)"), "{err}");
        assert!(
            bn.backward_relu_pool(dp.clone()).is_ok(),
            "the kept pass survives a refused call"
        );

        // A convolution refuses a folded pooling that does not tile its output, and
        // moments for another input are not used.
        let mut conv =
            Conv2d::new(Conv2dConfig::new(3, 3, 3).padding(1), &mut Rng::new(4)).unwrap();
        for wrong in [pool([2, 3, 6, 4], 2, 2), pool([2, 3, 4, 4], 3, 1)] {
            let fold = ocellus::layers::Fold {
                pool: Some(&wrong),
                ..Default::default()
            };
            let err = conv
                .forward_folded(x.clone(), &fold)
                .unwrap_err()
                .to_string();
            assert!(err.contains("pooling"), "{err}");
            let err = conv.forward_relu_pool(x.clone(), Mode::Train, &wrong);
            assert!(err.unwrap_err().to_string().contains("pooling"));
        }
        // Its fused backward needs its fused forward, and a gradient of the pooled shape.
        let err = conv.backward_relu_pool(dp.clone()).unwrap_err().to_string();
        assert!(err.contains("forward_relu_pool"), "{err}");
        let p = conv
            .forward_relu_pool(x.clone(), Mode::Train, &pool([2, 3, 4, 4], 2, 2))
            .unwrap();
        assert_eq!(p.shape(), dp.shape());
        let err = conv.backward_relu_pool(Tensor::zeros(&[2, 3, 4, 4]));
        assert!(err.unwrap_err().to_string().contains("(2, 3, 2, 2)"));
        assert!(conv.backward_relu_pool(dp.clone()).is_ok());
        // A plain forward pass afterwards forgets the pooling it kept.
        conv.forward(x.clone(), Mode::Train).unwrap();
        assert!(conv.backward_relu_pool(dp.clone()).is_err());
        let mut apart = BatchNorm2d::new(3).unwrap();
        let want = apart.forward(x.clone(), Mode::Train).unwrap();
        let mut given = BatchNorm2d::new(3).unwrap();
        let (_, moments) = conv.forward_with_moments(x.clone(), Mode::Train).unwrap();
        given.take_moments(moments[..3].to_vec());
        let y = given.forward(x.clone(), Mode::Train).unwrap();
        assert_eq!(
            y.data(),
            want.data(),
            "moments of the wrong size are not used"
        );

        let mut pool = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
        assert!(pool
            .backward_after_relu(Tensor::zeros(&[1, 1, 2, 2]))
            .is_err());
        pool.forward(Tensor::zeros(&[1, 1, 4, 4]), Mode::Train)
            .unwrap();
        assert!(pool
            .backward_after_relu(Tensor::zeros(&[1, 1, 3, 3]))
            .is_err());
        assert!(pool
            .backward_after_relu(Tensor::zeros(&[1, 1, 2, 2]))
            .is_ok());
    }

    /// A `Sequential` runs BatchNorm, the ReLU after it and a 2×2 max-pooling after that
    /// as one, forward and backward: the same bits as the three layers one after the
    /// other — y, dx, dγ, dβ and the running statistics — in training and evaluation, on
    /// planes of even and odd sizes (a last row and column no window covers), with ties
    /// in the windows (γ = 0 in a channel: every value the same) and dead channels (γ < 0,
    /// β < 0), the normalisation first in the network (no dx needed) or after a
    /// convolution.
    #[test]
    fn batchnorm_relu_and_pooling_run_fused_with_the_same_bits() {
        fn network(features: usize, conv_first: bool) -> Sequential {
            let mut rng = Rng::new(12);
            let mut net = Sequential::new();
            if conv_first {
                let conv = Conv2dConfig::new(features, features, 3).padding(1);
                net.push(Box::new(Conv2d::new(conv, &mut rng).unwrap()));
            }
            let mut bn = BatchNorm2d::new(features).unwrap();
            let gamma: Vec<f32> = (0..features)
                .map(|c| [0.0, 0.7, -1.3, 1.1][c % 4])
                .collect();
            let beta: Vec<f32> = (0..features)
                .map(|c| [0.3, 0.1, -0.4, -0.2][c % 4])
                .collect();
            bn.set("weight", Tensor::from_vec(&[features], gamma).unwrap())
                .unwrap();
            bn.set("bias", Tensor::from_vec(&[features], beta).unwrap())
                .unwrap();
            net.push(Box::new(bn));
            net.push(Box::new(Relu::default()));
            let pool = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
            net.push(Box::new(pool));
            net
        }
        let mut zeros = false;
        for (shape, conv_first) in [
            (vec![4, 5, 6, 8], false),
            (vec![3, 4, 7, 9], true),
            (vec![2, 4, 5, 2], false),
        ] {
            let features = shape[1];
            let mut rng = Rng::new(13);
            let x = Tensor::randn(&shape, 1.0, &mut rng);
            let out = network(features, conv_first).output_shape(&shape).unwrap();
            let dy = Tensor::randn(&out, 1.0, &mut rng);
            for mode in [Mode::Train, Mode::Eval] {
                if conv_first && mode == Mode::Eval {
                    // The convolution takes the normalisation in: folding, tested below.
                    continue;
                }
                let what = format!("{mode:?} {shape:?}");
                let mut apart = network(features, conv_first);
                let (y_apart, dx_apart) = one_by_one(apart.layers_mut(), &x, &dy, mode);
                let mut net = network(features, conv_first);
                assert!(net.layers()[usize::from(conv_first)].fuses_relu_pool());
                let y = net.forward_ref(&x, mode).unwrap();
                assert_eq!(y.data(), y_apart.data(), "{what}: y");
                zeros |= y.data().contains(&0.0);
                // The three ran as one: the normalisation's plain backward refuses.
                let bn = &mut net.layers_mut()[usize::from(conv_first)];
                let err = bn.backward_ref(&x).unwrap_err().to_string();
                assert!(err.contains("backward_relu_pool"), "{err}");
                if conv_first {
                    let dx = net.backward_ref(&dy).unwrap();
                    assert_eq!(dx.data(), dx_apart.data(), "{what}: dx");
                } else {
                    net.backward_params(dy.clone()).unwrap();
                }
                for ((name, p), (_, want)) in net.params().into_iter().zip(apart.params()) {
                    assert_eq!(p.grad().data(), want.grad().data(), "{what}: {name}");
                }
                for ((name, b), (_, want)) in net.buffers().into_iter().zip(apart.buffers()) {
                    assert_eq!(b.data(), want.data(), "{what}: {name}");
                }
            }
        }
        assert!(zeros, "some windows entirely cut off by the ReLU");
    }

    /// A max-pooling whose 2×2 windows tile its input takes the backward pass of the ReLU
    /// before it in (a `Sequential` runs the two as one), and in training a convolution
    /// runs itself, the ReLU and that pooling as one (the pooling layer does not run): y,
    /// dx and the parameter gradients are the bits of the layers one by one — after a
    /// convolution, after a bare ReLU, on odd plane sizes, with windows whose maximum the
    /// ReLU cut to 0; overlapping windows (3×3, stride 2) and evaluation keep the passes
    /// apart.
    #[test]
    fn relu_then_pooling_backward_runs_as_one_with_the_same_bits() {
        fn network(conv: bool, kernel: usize, stride: usize) -> Sequential {
            let mut rng = Rng::new(14);
            let mut net = Sequential::new();
            if conv {
                let config = Conv2dConfig::new(3, 4, 3).padding(1);
                net.push(Box::new(Conv2d::new(config, &mut rng).unwrap()));
            }
            net.push(Box::new(Relu::default()));
            let pool = Pool2dConfig::new(kernel).stride(stride);
            net.push(Box::new(MaxPool2d::new(pool).unwrap()));
            net
        }
        let mut zeros = false;
        for (conv, kernel, stride, shape) in [
            (true, 2, 2, vec![3, 3, 6, 8]),
            (true, 2, 2, vec![2, 3, 7, 9]),
            (false, 2, 2, vec![2, 3, 5, 6]),
            (true, 3, 2, vec![2, 3, 7, 7]),
        ] {
            let mut rng = Rng::new(15);
            let x = Tensor::randn(&shape, 1.0, &mut rng);
            let out = network(conv, kernel, stride).output_shape(&shape).unwrap();
            let dy = Tensor::randn(&out, 1.0, &mut rng);
            for mode in [Mode::Train, Mode::Eval] {
                let what = format!("{mode:?} {shape:?} {kernel}×{kernel}");
                let mut apart = network(conv, kernel, stride);
                let (y_apart, dx_apart) = one_by_one(apart.layers_mut(), &x, &dy, mode);
                let mut net = network(conv, kernel, stride);
                let y = net.forward_ref(&x, mode).unwrap();
                assert_eq!(y.data(), y_apart.data(), "{what}: y");
                zeros |= y.data().contains(&0.0);
                let pool = net.layers().last().unwrap();
                let takes = kernel == 2 && mode == Mode::Train && !conv;
                assert_eq!(pool.backward_takes_relu_before(), takes, "{what}");
                let dx = net.backward_ref(&dy).unwrap();
                assert_eq!(dx.data(), dx_apart.data(), "{what}: dx");
                for ((name, p), (_, want)) in net.params().into_iter().zip(apart.params()) {
                    assert_eq!(p.grad().data(), want.grad().data(), "{what}: {name}");
                }
            }
        }
        assert!(zeros, "some windows entirely cut off by the ReLU");
    }

    /// In evaluation a `Sequential` folds a convolution, the batch normalisation after it
    /// (with running statistics) and a ReLU after that into one convolution: y is the
    /// layers' one after the other up to rounding; a backward pass afterwards runs them
    /// again unfolded, so dx and every parameter gradient are the same bits as after the
    /// layers one by one. Also without the ReLU, and inside a residual block; training,
    /// and a normalisation without running statistics, are not folded (same bits).
    #[test]
    fn evaluation_folds_batchnorm_into_the_convolution_before_it() {
        fn network(relu: bool, track: bool, residual: bool) -> Sequential {
            let mut rng = Rng::new(8);
            let conv = Conv2d::new(Conv2dConfig::new(6, 6, 3).padding(1), &mut rng).unwrap();
            let config = BatchNormConfig {
                track_running_stats: track,
                ..BatchNormConfig::new(6)
            };
            let mut bn = BatchNorm2d::with_config(config).unwrap();
            let values = |scale: f32, offset: f32| {
                let v: Vec<f32> = (0..6).map(|c| offset + scale * (c as f32 - 2.5)).collect();
                Tensor::from_vec(&[6], v).unwrap()
            };
            bn.set("weight", values(0.4, 0.5)).unwrap();
            bn.set("bias", values(0.2, -0.1)).unwrap();
            if track {
                bn.set("running_mean", values(0.3, 0.1)).unwrap();
                bn.set("running_var", values(0.2, 0.9)).unwrap();
            }
            let mut main = Sequential::new().with(conv).with(bn);
            if relu {
                main = main.with(Relu::default());
            }
            if residual {
                Sequential::new().with(Residual::new(main, None, None))
            } else {
                main
            }
        }
        let mut rng = Rng::new(9);
        let x = Tensor::randn(&[3, 6, 7, 5], 1.0, &mut rng);
        let dy = Tensor::randn(&[3, 6, 7, 5], 1.0, &mut rng);
        let cases = [
            (true, true, false),
            (false, true, false),
            (true, true, true),
            (true, false, false),
        ];
        for (relu, track, residual) in cases {
            for mode in [Mode::Eval, Mode::Train] {
                let what =
                    format!("relu {relu}, running stats {track}, block {residual}, {mode:?}");
                let mut apart = network(relu, track, false);
                let (mut y_apart, mut dx_apart) = one_by_one(apart.layers_mut(), &x, &dy, mode);
                if residual {
                    // The identity shortcut: its input added to y, dy to dx.
                    y_apart.add_assign(&x).unwrap();
                    dx_apart.add_assign(&dy).unwrap();
                }
                let mut net = network(relu, track, residual);
                let y = net.forward_ref(&x, mode).unwrap();
                if mode == Mode::Eval && track {
                    assert_close(&format!("{what}: y"), y.data(), y_apart.data(), 0.0, 1e-5);
                    assert_ne!(y.data(), y_apart.data(), "{what}: the folded arithmetic");
                } else {
                    assert_eq!(y.data(), y_apart.data(), "{what}: y");
                }
                let dx = net.backward_ref(&dy).unwrap();
                assert_eq!(dx.data(), dx_apart.data(), "{what}: dx");
                for ((name, p), (_, want)) in net.params().into_iter().zip(apart.params()) {
                    assert_eq!(p.grad().data(), want.grad().data(), "{what}: {name}");
                }
            }
        }
    }

    /// In evaluation a convolution — with the batch normalisation and the ReLU after it,
    /// or either, or neither — and a 2×2 max-pooling after that run as one pass, each
    /// image pooled as soon as it is convolved: y is the same bits as the network without
    /// the pooling, then the pooling, and the pooling layer itself does not run; a
    /// backward pass afterwards runs the layers again one by one (dx and every gradient
    /// the same bits as apart). On the direct path (5×5), the Winograd path (3×3, 64
    /// channels) and im2col (stride 2), on odd sizes (the last row and column dropped);
    /// overlapping windows and training are not folded.
    #[test]
    fn evaluation_pools_each_image_as_it_is_convolved() {
        fn network(conv: Conv2dConfig, bn: bool, relu: bool, pool: Option<usize>) -> Sequential {
            let mut rng = Rng::new(21);
            let oc = conv.out_channels;
            let mut net = Sequential::new().with(Conv2d::new(conv, &mut rng).unwrap());
            if bn {
                let mut bn = BatchNorm2d::new(oc).unwrap();
                let values = |scale: f32, offset: f32| {
                    let v = (0..oc).map(|c| offset + scale * (c as f32 / oc as f32 - 0.5));
                    Tensor::from_vec(&[oc], v.collect()).unwrap()
                };
                bn.set("weight", values(0.8, 0.5)).unwrap();
                bn.set("bias", values(0.4, -0.1)).unwrap();
                bn.set("running_mean", values(0.6, 0.1)).unwrap();
                bn.set("running_var", values(0.4, 0.9)).unwrap();
                net = net.with(bn);
            }
            if relu {
                net = net.with(Relu::default());
            }
            if let Some(k) = pool {
                net = net.with(MaxPool2d::new(Pool2dConfig::new(k).stride(2)).unwrap());
            }
            net
        }
        let convs = [
            (Conv2dConfig::new(3, 8, 5).padding(2), [3, 3, 9, 11]),
            (Conv2dConfig::new(16, 64, 3).padding(1), [3, 16, 10, 7]),
            (
                Conv2dConfig::new(4, 6, 3).stride(2).padding(1),
                [2, 4, 13, 9],
            ),
        ];
        let mut rng = Rng::new(22);
        for (conv, shape) in convs {
            let x = Tensor::randn(&shape, 1.0, &mut rng);
            let variants = [(true, true), (true, false), (false, true), (false, false)];
            for ((bn, relu), k, mode) in variants
                .into_iter()
                .flat_map(|v| [(v, 2, Mode::Eval), (v, 3, Mode::Eval), (v, 2, Mode::Train)])
            {
                let what =
                    format!("{conv:?} on {shape:?}, bn {bn}, relu {relu}, {k}×{k}, {mode:?}");
                let mut net = network(conv, bn, relu, Some(k));
                let y = net.forward_ref(&x, mode).unwrap();
                let mut unpooled = network(conv, bn, relu, None);
                let mut pool = MaxPool2d::new(Pool2dConfig::new(k).stride(2)).unwrap();
                let want = pool.forward(unpooled.forward_ref(&x, mode).unwrap(), mode);
                let want = want.unwrap();
                assert_eq!(y.shape(), want.shape(), "{what}: y's shape");
                assert_eq!(y.data(), want.data(), "{what}: y");
                let dy = Tensor::randn(y.shape(), 1.0, &mut rng);
                let pooling = net.layers_mut().last_mut().unwrap();
                // Pooled in another layer's pass: folded, or (training) fused with the
                // ReLU into the normalisation, or without one into the convolution.
                let elsewhere = k == 2 && (mode == Mode::Eval || relu);
                let ran = pooling.backward_ref(&dy).is_ok();
                assert_eq!(ran, !elsewhere, "{what}: the pooling layer ran");
                let mut apart = network(conv, bn, relu, Some(k));
                let (_, dx_apart) = one_by_one(apart.layers_mut(), &x, &dy, mode);
                let dx = net.backward_ref(&dy).unwrap();
                assert_eq!(dx.data(), dx_apart.data(), "{what}: dx");
                for ((name, p), (_, want)) in net.params().into_iter().zip(apart.params()) {
                    assert_eq!(p.grad().data(), want.grad().data(), "{what}: {name}");
                }
            }
        }
    }

    /// In training a convolution hands the batch normalisation after it the moments of
    /// its output's planes, taken as each image is convolved: y, dx, every gradient and
    /// the running statistics are the same bits as with the layers one by one (which take
    /// the moments from the normalisation's input), followed by a ReLU and a pooling or
    /// not, on the direct and the Winograd path, in a residual block's main path and
    /// shortcut. A normalisation with running statistics in evaluation takes none.
    #[test]
    fn batchnorm_takes_its_statistics_from_the_convolution_before_it() {
        fn network(conv: Conv2dConfig, tail: bool) -> Sequential {
            let mut rng = Rng::new(23);
            let oc = conv.out_channels;
            let mut net = Sequential::new()
                .with(Conv2d::new(conv, &mut rng).unwrap())
                .with(BatchNorm2d::new(oc).unwrap());
            if tail {
                let pool = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
                net = net.with(Relu::default()).with(pool);
            }
            net
        }
        let convs = [
            (Conv2dConfig::new(3, 8, 3).padding(1), [4, 3, 9, 10]),
            (Conv2dConfig::new(32, 64, 3).padding(1), [3, 32, 8, 8]),
            (
                Conv2dConfig::new(4, 6, 1).stride(2).bias(false),
                [3, 4, 9, 7],
            ),
        ];
        let mut rng = Rng::new(24);
        for (conv, shape) in convs {
            let x = Tensor::randn(&shape, 2.0, &mut rng);
            for tail in [false, true] {
                let what = format!("{conv:?} on {shape:?}, ReLU and pooling {tail}");
                let mut net = network(conv, tail);
                assert!(net.layers()[0].gives_moments(), "{what}");
                assert!(net.layers()[1].takes_moments(Mode::Train), "{what}");
                assert!(!net.layers()[1].takes_moments(Mode::Eval), "{what}");
                let y = net.forward_ref(&x, Mode::Train).unwrap();
                let dy = Tensor::randn(y.shape(), 1.0, &mut rng);
                let mut apart = network(conv, tail);
                let (y_apart, dx_apart) = one_by_one(apart.layers_mut(), &x, &dy, Mode::Train);
                assert_eq!(y.data(), y_apart.data(), "{what}: y");
                let dx = net.backward_ref(&dy).unwrap();
                assert_eq!(dx.data(), dx_apart.data(), "{what}: dx");
                for ((name, p), (_, want)) in net.params().into_iter().zip(apart.params()) {
                    assert_eq!(p.grad().data(), want.grad().data(), "{what}: {name}");
                }
                for ((name, b), (_, want)) in net.buffers().into_iter().zip(apart.buffers()) {
                    assert_eq!(b.data(), want.data(), "{what}: {name}");
                }
            }
        }
        // A residual block, whose main path and projection shortcut both give moments,
        // against its layers one by one.
        let x = Tensor::randn(&[3, 4, 8, 8], 1.0, &mut rng);
        let mut block = Residual::basic_block(4, 8, 2, &mut Rng::new(5)).unwrap();
        let y = block.forward_ref(&x, Mode::Train).unwrap();
        let mut apart = Residual::basic_block(4, 8, 2, &mut Rng::new(5)).unwrap();
        let (main, shortcut, _) = apart.parts_mut();
        let through = |layers: &mut [Box<dyn Layer>]| {
            let mut y = x.clone();
            for layer in layers.iter_mut() {
                y = layer.forward(y, Mode::Train).unwrap();
            }
            y
        };
        let mut want = through(main.layers_mut());
        let skip = through(shortcut.unwrap().layers_mut());
        want.zip_assign(&skip, |m, s| if m + s <= 0.0 { 0.0 } else { m + s })
            .unwrap();
        assert_eq!(y.data(), want.data(), "a residual block");
    }

    /// Forward and backward through `layers` one at a time: (y, dx).
    fn one_by_one(
        layers: &mut [Box<dyn Layer>],
        x: &Tensor,
        dy: &Tensor,
        mode: Mode,
    ) -> (Tensor, Tensor) {
        let mut y = x.clone();
        for layer in layers.iter_mut() {
            y = layer.forward(y, mode).unwrap();
        }
        let mut d = dy.clone();
        for layer in layers.iter_mut().rev() {
            d = layer.backward(d).unwrap();
        }
        (y, d)
    }

    fn param<'a>(layer: &'a dyn Layer, name: &str) -> &'a ocellus::Param {
        layer
            .params()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
    }

    fn buffer<'a>(layer: &'a dyn Layer, name: &str) -> &'a Tensor {
        layer
            .buffers()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
    }

    #[test]
    fn starts_as_pytorch_with_its_state_dict_names() {
        let bn = BatchNorm2d::new(3).unwrap();
        let names: Vec<String> = bn.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias"]);
        let names: Vec<String> = bn.buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["running_mean", "running_var", "num_batches_tracked"]
        );
        assert_eq!(param(&bn, "weight").value().data(), &[1., 1., 1.]);
        assert_eq!(param(&bn, "bias").value().data(), &[0., 0., 0.]);
        assert_eq!(buffer(&bn, "running_mean").data(), &[0., 0., 0.]);
        assert_eq!(buffer(&bn, "running_var").data(), &[1., 1., 1.]);
        let count = buffer(&bn, "num_batches_tracked");
        assert!(count.shape().is_empty());
        assert_eq!(count.data(), &[0.]);
        assert_eq!(bn.kind(), "batchnorm2d");
        assert_eq!(bn.describe(), "BatchNorm2d(3)");
        assert_eq!(BatchNorm1d::new(4).unwrap().kind(), "batchnorm1d");
        assert!(BatchNorm1d::new(0).is_err());
    }

    #[test]
    fn train_step_1d_by_hand() {
        let mut bn = BatchNorm1d::new(1).unwrap();
        let y = bn
            .forward_ref(&t(&[4, 1], &[1., 2., 3., 4.]), Mode::Train)
            .unwrap();
        // μ = 2.5, biased σ² = (2.25 + 0.25 + 0.25 + 2.25)/4 = 1.25.
        let s = (1.25f32 + 1e-5).sqrt();
        assert_close(
            "y",
            y.data(),
            &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s],
            0.0,
            1e-6,
        );
        // running_mean = 0.9·0 + 0.1·2.5; running_var = 0.9·1 + 0.1·(5/3) (unbiased 5/4·4/3).
        assert_close(
            "running_mean",
            bn.running_mean().unwrap().data(),
            &[0.25],
            0.0,
            1e-7,
        );
        assert_close(
            "running_var",
            bn.running_var().unwrap().data(),
            &[0.9 + 0.5 / 3.0],
            0.0,
            1e-6,
        );
        assert_eq!(bn.num_batches_tracked(), Some(1));
    }

    #[test]
    fn train_step_2d_by_hand() {
        let mut bn = BatchNorm2d::new(2).unwrap();
        // (N=2, C=2, H=1, W=2): channel 0 holds 1, 3, 5, 7; channel 1 holds 0, 0, 2, 2.
        let x = t(&[2, 2, 1, 2], &[1., 3., 0., 0., 5., 7., 2., 2.]);
        let y = bn.forward_ref(&x, Mode::Train).unwrap();
        // Channel 0: μ = 4, σ² = 5 (unbiased 20/3). Channel 1: μ = 1, σ² = 1 (unbiased 4/3).
        let (s0, s1) = ((5f32 + 1e-5).sqrt(), (1f32 + 1e-5).sqrt());
        assert_close(
            "y",
            y.data(),
            &[
                -3. / s0,
                -1. / s0,
                -1. / s1,
                -1. / s1,
                1. / s0,
                3. / s0,
                1. / s1,
                1. / s1,
            ],
            0.0,
            1e-6,
        );
        assert_close(
            "running_mean",
            bn.running_mean().unwrap().data(),
            &[0.4, 0.1],
            0.0,
            1e-7,
        );
        assert_close(
            "running_var",
            bn.running_var().unwrap().data(),
            &[0.9 + 2.0 / 3.0, 0.9 + 0.4 / 3.0],
            0.0,
            1e-6,
        );
        // A second batch moves the running statistics again: 0.9·0.4 + 0.1·4.
        bn.forward_ref(&x, Mode::Train).unwrap();
        assert_close(
            "running_mean",
            bn.running_mean().unwrap().data(),
            &[0.76, 0.19],
            0.0,
            1e-6,
        );
        assert_eq!(bn.num_batches_tracked(), Some(2));
    }

    #[test]
    fn eval_uses_running_statistics_and_leaves_them_alone() {
        let mut bn = BatchNorm2d::new(1).unwrap();
        for (name, p) in bn.params_mut() {
            p.value_mut()[0] = if name == "weight" { 2.0 } else { 0.5 };
        }
        for (name, b) in bn.buffers_mut() {
            match name.as_str() {
                "running_mean" => b.data_mut()[0] = 1.0,
                "running_var" => b.data_mut()[0] = 4.0,
                _ => {}
            }
        }
        let x = t(&[1, 1, 1, 3], &[1., 3., 5.]);
        let y = bn.forward_ref(&x, Mode::Eval).unwrap();
        let s = (4f32 + 1e-5).sqrt();
        assert_close("y", y.data(), &[0.5, 0.5 + 4. / s, 0.5 + 8. / s], 0.0, 1e-6);
        assert_eq!(bn.running_mean().unwrap().data(), &[1.0]);
        assert_eq!(bn.running_var().unwrap().data(), &[4.0]);
        assert_eq!(bn.num_batches_tracked(), Some(0));
        // Running statistics are constants: dx = dy·γ/√(σ² + eps); dβ = Σ dy; dγ = Σ dy·x̂.
        let dx = bn.backward_ref(&t(&[1, 1, 1, 3], &[1., 1., -1.])).unwrap();
        assert_close("dx", dx.data(), &[2. / s, 2. / s, -2. / s], 0.0, 1e-6);
        assert_close("dbias", param(&bn, "bias").grad().data(), &[1.0], 0.0, 1e-6);
        assert_close(
            "dweight",
            param(&bn, "weight").grad().data(),
            &[(0. + 2. - 4.) / s],
            0.0,
            1e-6,
        );
        // Eval works on a single value, where training has no variance to use.
        assert!(bn.forward_ref(&t(&[1, 1, 1, 1], &[3.]), Mode::Eval).is_ok());
    }

    #[test]
    fn train_backward_by_hand_and_accumulation() {
        let mut bn = BatchNorm1d::new(1).unwrap();
        let x = t(&[2, 1], &[-1., 1.]);
        bn.forward_ref(&x, Mode::Train).unwrap();
        // μ = 0, σ² = 1, inv_std = 1/√(1 + eps), x̂ = ∓inv_std. With dy = (1, 0): Σdy = 1,
        // Σdy·x̂ = −inv_std, and dx = (1/m)·inv_std·γ·(m·dy − Σdy − x̂·Σdy·x̂) with m = 2, γ = 1.
        let inv = 1.0 / (1f64 + 1e-5).sqrt();
        let xh = [-inv, inv];
        let dy = [1.0, 0.0];
        let sum_dy_xhat = -inv;
        let want: Vec<f32> = (0..2)
            .map(|i| (0.5 * inv * (2.0 * dy[i] - 1.0 - xh[i] * sum_dy_xhat)) as f32)
            .collect();
        let dx = bn.backward_ref(&t(&[2, 1], &[1., 0.])).unwrap();
        assert_close("dx", dx.data(), &want, 0.0, 1e-6);
        assert_close(
            "dweight",
            param(&bn, "weight").grad().data(),
            &[-inv as f32],
            0.0,
            1e-6,
        );
        // A second backward adds into the parameter gradients; zero_grad clears them.
        bn.backward_ref(&t(&[2, 1], &[1., 0.])).unwrap();
        assert_close("dbias", param(&bn, "bias").grad().data(), &[2.0], 0.0, 1e-6);
        bn.zero_grad();
        assert_eq!(param(&bn, "bias").grad().data(), &[0.0]);
    }

    #[test]
    fn shape_errors() {
        let mut bn = BatchNorm2d::new(3).unwrap();
        let msg = bn
            .forward_ref(&Tensor::zeros(&[2, 4, 2, 2]), Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("(N, 3, H, W)") && msg.contains("(2, 4, 2, 2)"),
            "{msg}"
        );
        let msg = bn
            .forward_ref(&Tensor::zeros(&[1, 3, 1, 1]), Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("more than one value per channel"), "{msg}");
        let mut flat = BatchNorm1d::new(5).unwrap();
        let msg = flat.output_shape(&[2, 5, 3, 3]).unwrap_err().to_string();
        assert!(msg.contains("BatchNorm2d"), "{msg}");
        assert_eq!(flat.output_shape(&[2, 5, 7]).unwrap(), vec![2, 5, 7]);
        flat.forward_ref(&Tensor::zeros(&[4, 5]), Mode::Train)
            .unwrap();
        assert!(flat.backward_ref(&Tensor::zeros(&[4, 6])).is_err());
    }

    fn names(list: Vec<(String, impl Sized)>) -> Vec<String> {
        list.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn options_change_the_parts_and_the_description_as_in_pytorch() {
        let bn = BatchNorm2d::with_config(BatchNormConfig::new(3).affine(false)).unwrap();
        // affine=False: no weight and bias at all, not even in the state_dict.
        assert!(bn.params().is_empty());
        assert_eq!(
            names(bn.buffers()),
            ["running_mean", "running_var", "num_batches_tracked"]
        );
        assert_eq!(bn.describe(), "BatchNorm2d(3, no affine)");

        let bn =
            BatchNorm1d::with_config(BatchNormConfig::new(4).track_running_stats(false)).unwrap();
        // track_running_stats=False: no buffers.
        assert_eq!(names(bn.params()), ["weight", "bias"]);
        assert!(bn.buffers().is_empty());
        assert!(bn.running_mean().is_none() && bn.running_var().is_none());
        assert_eq!(bn.num_batches_tracked(), None);
        assert_eq!(bn.describe(), "BatchNorm1d(4, no running stats)");

        let config = BatchNormConfig::new(4)
            .eps(1e-3)
            .momentum(None)
            .affine(false)
            .track_running_stats(false);
        let bn = BatchNorm1d::with_config(config).unwrap();
        assert_eq!(bn.config(), &config);
        assert_eq!(bn.param_count(), 0);
        assert_eq!(
            bn.describe(),
            "BatchNorm1d(4, eps 0.001, momentum None (cumulative average), no affine, no running stats)"
        );
        let bn = BatchNorm2d::with_config(BatchNormConfig::new(2).momentum(0.01)).unwrap();
        assert_eq!(bn.describe(), "BatchNorm2d(2, momentum 0.01)");
        // The defaults are PyTorch's and leave the description as it was.
        assert_eq!(
            BatchNormConfig::new(2),
            *BatchNorm2d::new(2).unwrap().config()
        );
        assert_eq!(BatchNorm2d::new(2).unwrap().describe(), "BatchNorm2d(2)");
    }

    #[test]
    fn impossible_options_are_config_errors() {
        for eps in [0.0, -1e-5, f64::NAN, f64::INFINITY] {
            let err = BatchNorm2d::with_config(BatchNormConfig::new(2).eps(eps))
                .err()
                .unwrap();
            assert!(matches!(err, Error::Config { .. }), "{err}");
            assert!(err.to_string().contains("eps"), "{err}");
        }
        for momentum in [-0.1, 1.5, f64::NAN] {
            let err = BatchNorm1d::with_config(BatchNormConfig::new(2).momentum(momentum))
                .err()
                .unwrap();
            assert!(matches!(err, Error::Config { .. }), "{err}");
            assert!(err.to_string().contains("momentum"), "{err}");
        }
        assert!(BatchNorm1d::with_config(BatchNormConfig::new(0)).is_err());
        // The ends of [0, 1] are allowed: 0 freezes the running statistics, 1 keeps the
        // last batch's.
        for momentum in [0.0, 1.0] {
            assert!(BatchNorm1d::with_config(BatchNormConfig::new(2).momentum(momentum)).is_ok());
        }
    }

    #[test]
    fn eps_and_momentum_by_hand() {
        // eps = 0.5: x = [1, 2, 3, 4], μ = 2.5, σ² = 1.25 → y = (x − 2.5)/√1.75.
        let x = t(&[4, 1], &[1., 2., 3., 4.]);
        let config = BatchNormConfig::new(1).eps(0.5).momentum(0.5);
        let mut bn = BatchNorm1d::with_config(config).unwrap();
        let y = bn.forward_ref(&x, Mode::Train).unwrap();
        let s = 1.75f32.sqrt();
        assert_close(
            "y",
            y.data(),
            &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s],
            0.0,
            1e-6,
        );
        // momentum 0.5: running_mean = 0.5·0 + 0.5·2.5, running_var = 0.5·1 + 0.5·5/3.
        assert_close(
            "running_mean",
            bn.running_mean().unwrap().data(),
            &[1.25],
            0.0,
            1e-7,
        );
        let want = 0.5 + 0.5 * 5.0 / 3.0;
        assert_close(
            "running_var",
            bn.running_var().unwrap().data(),
            &[want],
            0.0,
            1e-6,
        );
        // momentum 0: the running statistics never move, but the batches are counted.
        let mut frozen = BatchNorm1d::with_config(BatchNormConfig::new(1).momentum(0.0)).unwrap();
        frozen.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(frozen.running_mean().unwrap().data(), &[0.0]);
        assert_eq!(frozen.running_var().unwrap().data(), &[1.0]);
        assert_eq!(frozen.num_batches_tracked(), Some(1));
    }

    #[test]
    fn momentum_none_averages_every_batch_seen() {
        let mut bn = BatchNorm1d::with_config(BatchNormConfig::new(1).momentum(None)).unwrap();
        // Batch means 2.5, 6.5, 0.75; unbiased variances 5/3, 5/3, 6.75/3 = 2.25.
        let batches = [[1., 2., 3., 4.], [5., 6., 7., 8.], [0., 0., 0., 3.]];
        let (means, vars) = ([2.5, 6.5, 0.75], [5.0 / 3.0, 5.0 / 3.0, 2.25]);
        for (k, batch) in batches.iter().enumerate() {
            bn.forward_ref(&t(&[4, 1], batch), Mode::Train).unwrap();
            // a = 1/t makes the running statistics the plain average of the t batches
            // (the first batch replaces the initial 0 and 1 entirely).
            let count = (k + 1) as f64;
            let mean: f64 = means[..=k].iter().sum::<f64>() / count;
            let var: f64 = vars[..=k].iter().sum::<f64>() / count;
            assert_close(
                "running_mean",
                bn.running_mean().unwrap().data(),
                &[mean],
                0.0,
                1e-6,
            );
            assert_close(
                "running_var",
                bn.running_var().unwrap().data(),
                &[var],
                0.0,
                1e-6,
            );
            assert_eq!(bn.num_batches_tracked(), Some(k + 1));
        }
    }

    #[test]
    fn without_running_stats_eval_normalises_with_the_batch() {
        let x = t(&[2, 2, 1, 2], &[1., 3., 0., 0., 5., 7., 2., 2.]);
        let dy = t(&[2, 2, 1, 2], &[1., -2., 0.5, 3., 0., 1., -1., 2.]);
        let config = BatchNormConfig::new(2).track_running_stats(false);
        let mut results = Vec::new();
        for mode in [Mode::Train, Mode::Eval] {
            let mut bn = BatchNorm2d::with_config(config).unwrap();
            let y = bn.forward_ref(&x, mode).unwrap();
            let dx = bn.backward_ref(&dy).unwrap();
            let dweight = param(&bn, "weight").grad().clone();
            results.push((y, dx, dweight));
        }
        let (train, eval) = (&results[0], &results[1]);
        assert_eq!(train.0.data(), eval.0.data(), "y");
        assert_eq!(train.1.data(), eval.1.data(), "dx");
        assert_eq!(train.2.data(), eval.2.data(), "dweight");
        // Channel 0 holds 1, 3, 5, 7: μ = 4, σ² = 5.
        let s0 = (5f32 + 1e-5).sqrt();
        assert_close("y", &eval.0.data()[..2], &[-3. / s0, -1. / s0], 0.0, 1e-6);
        // In Eval, as PyTorch, a single value per channel has no batch variance.
        let mut bn = BatchNorm2d::with_config(config).unwrap();
        let msg = bn
            .forward_ref(&Tensor::zeros(&[1, 2, 1, 1]), Mode::Eval)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("track_running_stats"), "{msg}");
    }

    #[test]
    fn without_affine_the_output_is_x_hat() {
        let x = t(&[3, 2], &[1., -1., 2., 0.5, 6., 4.]);
        let dy = t(&[3, 2], &[0.5, 1., -1., 2., 0.25, -0.5]);
        let mut plain = BatchNorm1d::with_config(BatchNormConfig::new(2).affine(false)).unwrap();
        // An affine layer at its initial γ = 1, β = 0 computes the same x̂ and dx.
        let mut affine = BatchNorm1d::new(2).unwrap();
        for mode in [Mode::Train, Mode::Eval] {
            let y = plain.forward_ref(&x, mode).unwrap();
            assert_eq!(y.data(), affine.forward_ref(&x, mode).unwrap().data());
            let dx = plain.backward_ref(&dy).unwrap();
            assert_eq!(dx.data(), affine.backward_ref(&dy).unwrap().data());
        }
        let (_, mean) = plain.buffers()[0].clone();
        assert!(
            mean.data().iter().any(|v| *v != 0.0),
            "running stats still move"
        );
    }

    #[test]
    fn backward_before_forward_is_an_error() {
        backward_before_forward(&mut BatchNorm2d::new(1).unwrap(), &[2, 1, 1, 1]);
        backward_before_forward(&mut BatchNorm1d::new(1).unwrap(), &[2, 1]);
    }
}

mod conv_transpose {
    use super::*;

    /// A transposed convolution from 1 to 1 channel with the given 2-D kernel, no bias.
    fn single(config: ConvTranspose2dConfig, kernel: &[f32]) -> ConvTranspose2d {
        let (kh, kw) = config.kernel;
        let weight = t(&[1, 1, kh, kw], kernel);
        ConvTranspose2d::from_weights(config.bias(false), weight, None).unwrap()
    }

    #[test]
    fn stride_2_places_a_scaled_kernel_per_input_pixel() {
        // Kernel 2×2 with stride 2: the blocks do not overlap, each is x[i,j]·w.
        let mut up = single(
            ConvTranspose2dConfig::new(1, 1, 2).stride(2),
            &[1., 2., 3., 4.],
        );
        let x = t(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
        let y = up.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        #[rustfmt::skip]
        let expected = [
            1., 2., 10., 20.,
            3., 4., 30., 40.,
            100., 200., 1000., 2000.,
            300., 400., 3000., 4000.,
        ];
        assert_eq!(y.data(), &expected);
        // dx[i,j] = Σ over its block of dy·w; dw[a,b] = Σ_{i,j} x[i,j]·dy[2i+a, 2j+b].
        let dy: Vec<f32> = (0..16).map(|v| if v % 5 == 0 { 1. } else { 0. }).collect();
        let dx = up.backward_ref(&t(&[1, 1, 4, 4], &dy)).unwrap();
        // dy is 1 on the diagonal: blocks (0,0) and (1,1) see w[0,0] + w[1,1] = 5.
        assert_eq!(dx.data(), &[5., 0., 0., 5.]);
        assert_eq!(up.weight().grad().data(), &[1001., 0., 0., 1001.]);
    }

    #[test]
    fn overlapping_taps_add_and_padding_crops_the_border() {
        // x = [1, 2] through the kernel [1, 10], stride 1: [1, 10 + 2, 20].
        let config = ConvTranspose2dConfig::new(1, 1, 1).kernel(1, 2);
        let mut full = single(config, &[1., 10.]);
        let y = full
            .forward_ref(&t(&[1, 1, 1, 2], &[1., 2.]), Mode::Train)
            .unwrap();
        assert_eq!(y.data(), &[1., 12., 20.]);
        // Padding 1 on the width crops one column on each side.
        let mut cropped = single(config.padding_hw(0, 1), &[1., 10.]);
        let y = cropped
            .forward_ref(&t(&[1, 1, 1, 2], &[1., 2.]), Mode::Train)
            .unwrap();
        assert_eq!(y.data(), &[12.]);
        let dx = cropped.backward_ref(&t(&[1, 1, 1, 1], &[1.])).unwrap();
        assert_eq!(dx.data(), &[10., 1.]);
        // Output padding adds a column at the right that only the bias reaches.
        let mut padded = ConvTranspose2d::from_weights(
            ConvTranspose2dConfig::new(1, 1, 1)
                .stride(2)
                .output_padding_hw(0, 1),
            t(&[1, 1, 1, 1], &[3.]),
            Some(t(&[1], &[0.5])),
        )
        .unwrap();
        let y = padded
            .forward_ref(&t(&[1, 1, 1, 2], &[1., 2.]), Mode::Train)
            .unwrap();
        assert_eq!(y.shape(), &[1, 1, 1, 4]);
        assert_eq!(y.data(), &[3.5, 0.5, 6.5, 0.5]);
    }

    #[test]
    fn backward_adds_into_the_parameter_gradients() {
        let config = ConvTranspose2dConfig::new(2, 4, 3).stride(2).groups(2);
        let mut layer = ConvTranspose2d::new(config, &mut Rng::new(1)).unwrap();
        let x = Tensor::randn(&[2, 2, 3, 3], 1.0, &mut Rng::new(2));
        let y = layer.forward_ref(&x, Mode::Train).unwrap();
        let dy = Tensor::randn(y.shape(), 1.0, &mut Rng::new(3));
        let dx = layer.backward_ref(&dy).unwrap();
        let once: Vec<Tensor> = layer
            .params()
            .iter()
            .map(|(_, p)| p.grad().clone())
            .collect();
        assert!(once.iter().all(|g| g.max_abs() > 0.0));
        assert_eq!(layer.backward_ref(&dy).unwrap(), dx);
        for ((name, p), g) in layer.params().into_iter().zip(&once) {
            let twice: Vec<f32> = g.data().iter().map(|v| 2.0 * v).collect();
            assert_eq!(p.grad().data(), &twice[..], "{name} is added into");
        }
        // Without dx, the same parameter gradients.
        layer.zero_grad();
        layer.backward_params(dy).unwrap();
        for ((name, p), g) in layer.params().into_iter().zip(&once) {
            assert_eq!(p.grad(), g, "{name} without dx");
        }
    }

    #[test]
    fn starts_as_pytorch_with_its_fan_in_of_the_weight() {
        // PyTorch's fan_in of a (IC, OC/groups, KH, KW) weight is OC/groups·KH·KW = 18
        // here, not IC·KH·KW = 576: the bound is 1/√18.
        let config = ConvTranspose2dConfig::new(64, 2, 3);
        let layer = ConvTranspose2d::new(config, &mut Rng::new(0)).unwrap();
        assert_eq!(layer.weight().shape(), &[64, 2, 3, 3]);
        let bound = 1.0 / 18f32.sqrt();
        let w = layer.weight().value().max_abs();
        assert!(w <= bound && w > 0.9 * bound, "{w} against {bound}");
        let b = layer.bias().unwrap().value().max_abs();
        assert!(b <= bound && b > 0.2 * bound, "{b} against {bound}");
        let names: Vec<String> = layer.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias"]);
        assert_eq!(layer.param_count(), 64 * 2 * 9 + 2);
        assert_eq!(config.param_count(), Some(64 * 2 * 9 + 2));
    }

    #[test]
    fn output_padding_must_be_below_the_stride_or_the_dilation() {
        for config in [
            ConvTranspose2dConfig::new(3, 4, 3)
                .stride(2)
                .output_padding(2),
            ConvTranspose2dConfig::new(3, 4, 3).output_padding_hw(0, 1),
            ConvTranspose2dConfig::new(3, 4, 3)
                .stride(2)
                .dilation(2)
                .output_padding_hw(1, 2),
        ] {
            let msg = ConvTranspose2d::new(config, &mut Rng::new(0))
                .err()
                .unwrap()
                .to_string();
            assert!(
                msg.starts_with("convtranspose2d: ")
                    && msg
                        .contains("output padding must be smaller than either stride or dilation"),
                "{msg}"
            );
        }
        // Below the dilation is enough, as PyTorch allows.
        let config = ConvTranspose2dConfig::new(3, 4, 3)
            .dilation(3)
            .output_padding(2);
        let layer = ConvTranspose2d::new(config, &mut Rng::new(0)).unwrap();
        // (4 − 1)·1 + 3·2 + 2 + 1 = 12
        assert_eq!(layer.output_shape(&[1, 3, 4, 4]).unwrap(), [1, 4, 12, 12]);
    }

    #[test]
    fn impossible_settings_are_config_errors() {
        let bad = [
            (ConvTranspose2dConfig::new(0, 4, 3), "positive"),
            (ConvTranspose2dConfig::new(3, 4, 0), "positive"),
            (ConvTranspose2dConfig::new(3, 4, 3).stride(0), "positive"),
            (ConvTranspose2dConfig::new(3, 4, 3).dilation(0), "positive"),
            // One zero on one axis is enough.
            (ConvTranspose2dConfig::new(3, 4, 3).kernel(0, 3), "positive"),
            (ConvTranspose2dConfig::new(3, 4, 3).kernel(3, 0), "positive"),
            (
                ConvTranspose2dConfig::new(3, 4, 3).stride_hw(0, 1),
                "positive",
            ),
            (
                ConvTranspose2dConfig::new(3, 4, 3).stride_hw(1, 0),
                "positive",
            ),
            (
                ConvTranspose2dConfig::new(3, 4, 3).dilation_hw(0, 1),
                "positive",
            ),
            (
                ConvTranspose2dConfig::new(3, 4, 3).dilation_hw(1, 0),
                "positive",
            ),
            (ConvTranspose2dConfig::new(3, 4, 3).groups(2), "groups = 2"),
            (ConvTranspose2dConfig::new(4, 6, 3).groups(4), "groups = 4"),
        ];
        for (config, words) in bad {
            let msg = ConvTranspose2d::new(config, &mut Rng::new(0))
                .err()
                .unwrap()
                .to_string();
            assert!(
                msg.starts_with("convtranspose2d: ") && msg.contains(words),
                "{msg}"
            );
        }
        // Weights beyond any machine's memory are refused before they are allocated.
        let huge = ConvTranspose2dConfig::new(1 << 20, 1 << 20, 64);
        let msg = ConvTranspose2d::new(huge, &mut Rng::new(0))
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("its weights"), "{msg}");
        // Given weights must have PyTorch's (IC, OC/groups, KH, KW) shape.
        let config = ConvTranspose2dConfig::new(4, 6, 3).groups(2);
        let msg = ConvTranspose2d::from_weights(config, Tensor::zeros(&[6, 2, 3, 3]), None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains("convtranspose2d weight")
                && msg.contains("(4, 3, 3, 3)")
                && msg.contains("(6, 2, 3, 3)"),
            "{msg}"
        );
    }

    #[test]
    fn inputs_that_do_not_fit_are_shape_errors_naming_both_shapes() {
        let layer =
            ConvTranspose2d::new(ConvTranspose2dConfig::new(3, 4, 3), &mut Rng::new(0)).unwrap();
        let msg = layer.output_shape(&[1, 4, 5, 5]).unwrap_err().to_string();
        assert!(
            msg.starts_with("convtranspose2d: ")
                && msg.contains("(N, 3, H, W)")
                && msg.contains("(1, 4, 5, 5)"),
            "{msg}"
        );
        let msg = layer.output_shape(&[2, 12]).unwrap_err().to_string();
        assert!(msg.contains("(2, 12)") && msg.contains("Flatten"), "{msg}");
        // Padding that crops the whole output: (1 − 1)·1 − 2·2 + 2 + 1 < 1.
        let cropping = ConvTranspose2dConfig::new(3, 4, 3).padding(2);
        let layer = ConvTranspose2d::new(cropping, &mut Rng::new(0)).unwrap();
        let msg = layer.output_shape(&[1, 3, 1, 1]).unwrap_err().to_string();
        assert!(
            msg.starts_with("convtranspose2d: ") && msg.contains("(1, 3, 1, 1)"),
            "{msg}"
        );
        assert_eq!(layer.output_shape(&[1, 3, 3, 3]).unwrap(), [1, 4, 1, 1]);
        let mut layer = layer;
        backward_before_forward(&mut layer, &[1, 4, 1, 1]);
        layer
            .forward_ref(&Tensor::zeros(&[1, 3, 3, 3]), Mode::Train)
            .unwrap();
        let msg = layer
            .backward_ref(&Tensor::zeros(&[1, 4, 2, 2]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("(1, 4, 1, 1)") && msg.contains("(1, 4, 2, 2)"),
            "{msg}"
        );
    }

    #[test]
    fn description_receptive_field_and_multiply_adds() {
        let config = ConvTranspose2dConfig::new(8, 4, 3)
            .stride(2)
            .padding(1)
            .output_padding(1)
            .groups(2)
            .bias(false);
        let layer = ConvTranspose2d::new(config, &mut Rng::new(0)).unwrap();
        assert_eq!(layer.kind(), "convtranspose2d");
        assert_eq!(
            layer.describe(),
            "ConvTranspose2d(8→4, 3×3, stride 2, pad 1, output pad 1, groups 2, no bias)"
        );
        // After two poolings by 2 (jump 4), a 3×3 stride-2 layer sees two input units:
        // 6 + 1·4 = 10 pixels, and neighbours are 2 pixels apart again.
        let before = ReceptiveField { size: 6, jump: 4 };
        let rf = layer.receptive_field([before; 2]);
        assert_eq!(rf[0], ReceptiveField { size: 10, jump: 2 });
        // N·IC·H·W·(OC/groups)·KH·KW = 2·8·5·5·2·9
        assert_eq!(layer.macs(&[2, 8, 5, 5]), 2 * 8 * 5 * 5 * 2 * 9);
    }
}

mod upsample {
    use super::*;

    #[test]
    fn nearest_copies_each_pixel_into_a_block_and_sums_the_block_back() {
        let mut up = Upsample::with_scale(2, 3, UpsampleMode::Nearest).unwrap();
        let y = up
            .forward_ref(&t(&[1, 1, 1, 2], &[1., 2.]), Mode::Train)
            .unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 6]);
        assert_eq!(y.data(), &[1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2.]);
        let dy: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let dx = up.backward_ref(&t(&[1, 1, 2, 6], &dy)).unwrap();
        // (1 + 2 + 3 + 7 + 8 + 9), (4 + 5 + 6 + 10 + 11 + 12)
        assert_eq!(dx.data(), &[30., 48.]);
    }

    #[test]
    fn bilinear_interpolates_between_pixel_centres_as_pytorch() {
        let mut up = Upsample::new(2, UpsampleMode::Bilinear).unwrap();
        let y = up
            .forward_ref(&t(&[1, 1, 1, 2], &[1., 2.]), Mode::Train)
            .unwrap();
        // Output centres fall at input positions −¼ (clamped to 0), ¼, ¾, 1¼ (clamped to
        // the last pixel); one input row gives two equal output rows.
        assert_eq!(y.data(), &[1., 1.25, 1.75, 2., 1., 1.25, 1.75, 2.]);
        let dx = up
            .backward_ref(&t(&[1, 1, 2, 4], &[1., 2., 3., 4., 1., 2., 3., 4.]))
            .unwrap();
        // Each row: 1 + ¾·2 + ¼·3 = 3.25 and ¼·2 + ¾·3 + 4 = 6.75; two rows.
        assert_eq!(dx.data(), &[6.5, 13.5]);
    }

    #[test]
    fn a_fixed_size_may_be_any_size() {
        let mut up = Upsample::with_size(UpsampleSize::Fixed(3, 5), UpsampleMode::Nearest).unwrap();
        assert_eq!(up.output_shape(&[2, 3, 2, 2]).unwrap(), [2, 3, 3, 5]);
        assert_eq!(up.output_shape(&[2, 3, 9, 9]).unwrap(), [2, 3, 3, 5]);
        // Rows 0, 0, 1 (⌊o·2/3⌋) and columns 0, 0, 0, 1, 1 (⌊o·2/5⌋).
        let y = up
            .forward_ref(&t(&[1, 1, 2, 2], &[1., 2., 3., 4.]), Mode::Train)
            .unwrap();
        #[rustfmt::skip]
        let expected = [
            1., 1., 1., 2., 2.,
            1., 1., 1., 2., 2.,
            3., 3., 3., 4., 4.,
        ];
        assert_eq!(y.data(), &expected);
        assert_eq!(up.describe(), "Upsample(to 3×5, nearest)");
    }

    #[test]
    fn settings_and_shapes_that_do_not_fit_are_errors() {
        for size in [UpsampleSize::Scale(0, 2), UpsampleSize::Fixed(4, 0)] {
            let msg = Upsample::with_size(size, UpsampleMode::Bilinear)
                .err()
                .unwrap()
                .to_string();
            assert!(
                msg.starts_with("upsample: ") && msg.contains("positive"),
                "{msg}"
            );
        }
        let up = Upsample::new(2, UpsampleMode::Nearest).unwrap();
        let msg = up.output_shape(&[4, 10]).unwrap_err().to_string();
        assert!(
            msg.starts_with("upsample: ") && msg.contains("(4, 10)"),
            "{msg}"
        );
        let msg = up.output_shape(&[1, 1, 0, 3]).unwrap_err().to_string();
        assert!(msg.contains("(1, 1, 0, 3)"), "{msg}");
        let huge = Upsample::new(usize::MAX / 2, UpsampleMode::Nearest).unwrap();
        assert!(huge.output_shape(&[1, 1, 3, 3]).is_err());
        let mut up = up;
        backward_before_forward(&mut up, &[1, 1, 2, 2]);
        up.forward_ref(&Tensor::zeros(&[1, 1, 2, 2]), Mode::Train)
            .unwrap();
        let msg = up
            .backward_ref(&Tensor::zeros(&[1, 1, 2, 2]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("(1, 1, 4, 4)") && msg.contains("(1, 1, 2, 2)"),
            "{msg}"
        );
    }

    #[test]
    fn description_receptive_field_and_multiply_adds() {
        let nearest = Upsample::new(2, UpsampleMode::Nearest).unwrap();
        let bilinear = Upsample::with_scale(2, 3, UpsampleMode::Bilinear).unwrap();
        assert_eq!(nearest.kind(), "upsample");
        assert_eq!(nearest.describe(), "Upsample(×2, nearest)");
        assert_eq!(bilinear.describe(), "Upsample(×(2, 3), bilinear)");
        let before = ReceptiveField { size: 8, jump: 4 };
        // Nearest: one input unit per output; bilinear: two, one jump apart.
        assert_eq!(
            nearest.receptive_field([before; 2])[0],
            ReceptiveField { size: 8, jump: 2 }
        );
        let rf = bilinear.receptive_field([before; 2]);
        assert_eq!(rf[0], ReceptiveField { size: 12, jump: 2 });
        // 4/3 pixels apart, rounded up to whole pixels.
        assert_eq!(rf[1], ReceptiveField { size: 12, jump: 2 });
        assert_eq!(nearest.macs(&[2, 3, 4, 4]), 0);
        assert_eq!(bilinear.macs(&[2, 3, 4, 4]), 4 * 2 * 3 * 8 * 12);
    }
}

mod residual {
    use super::*;

    /// A 1×1 convolution from `c` to `c` channels multiplying by `scale`, no bias.
    fn scale_conv(c: usize, scale: f32) -> Conv2d {
        let config = Conv2dConfig {
            bias: false,
            ..Conv2dConfig::new(c, c, 1)
        };
        let mut conv = Conv2d::new(config, &mut Rng::new(0)).unwrap();
        for (_, p) in conv.params_mut() {
            p.value_mut().fill(0.0);
            for i in 0..c {
                p.value_mut()[i * c + i] = scale;
            }
        }
        conv
    }

    #[test]
    fn identity_shortcut_adds_the_input_and_its_gradient() {
        let main = Sequential::new().with(scale_conv(1, 2.0));
        let mut block = Residual::new(main, None, None);
        let x = t(&[1, 1, 1, 3], &[1., -2., 3.]);
        let y = block.forward_ref(&x, Mode::Train).unwrap();
        assert_eq!(y.data(), &[3., -6., 9.]);
        // dx = dx_main + dx_skip = 2·dy + dy.
        let dx = block
            .backward_ref(&t(&[1, 1, 1, 3], &[1., 1., 2.]))
            .unwrap();
        assert_eq!(dx.data(), &[3., 3., 6.]);
        // dw = Σ dy·x = 1 − 2 + 6 (the skip path has no parameters).
        assert_eq!(block.params()[0].1.grad().data(), &[5.]);
    }

    #[test]
    fn activation_applies_to_the_sum() {
        let main = Sequential::new().with(scale_conv(1, 2.0));
        let mut block = Residual::new(main, None, Some(Box::new(Relu::new())));
        let x = t(&[1, 1, 1, 2], &[1., -1.]);
        assert_eq!(
            block.forward_ref(&x, Mode::Train).unwrap().data(),
            &[3., 0.]
        );
        let dx = block.backward_ref(&t(&[1, 1, 1, 2], &[1., 1.])).unwrap();
        assert_eq!(dx.data(), &[3., 0.]);
    }

    /// A block computes its sum and the ReLU after it in one pass: the same bits as the
    /// block without the ReLU followed by the ReLU layer, forward and backward.
    #[test]
    fn the_sum_and_its_relu_run_as_one_pass_with_the_same_bits() {
        let mut rng = Rng::new(4);
        let conv = Conv2d::new(Conv2dConfig::new(4, 4, 3).padding(1), &mut rng).unwrap();
        let (w, b) = (
            conv.weight().value().clone(),
            conv.bias().unwrap().value().clone(),
        );
        let copy = || {
            let conv = Conv2d::from_weights(*conv.config(), w.clone(), Some(b.clone())).unwrap();
            Sequential::new().with(conv)
        };
        let x = Tensor::randn(&[2, 4, 5, 5], 1.0, &mut rng);
        let dy = Tensor::randn(&[2, 4, 5, 5], 1.0, &mut rng);
        let mut fused = Residual::new(copy(), None, Some(Box::new(Relu::new())));
        let (mut plain, mut relu) = (Residual::new(copy(), None, None), Relu::new());
        for mode in [Mode::Train, Mode::Eval] {
            let y = fused.forward_ref(&x, mode).unwrap();
            let want = relu
                .forward(plain.forward_ref(&x, mode).unwrap(), mode)
                .unwrap();
            assert_eq!(y.data(), want.data(), "{mode:?}: y");
            assert!(y.data().contains(&0.0) && y.data().iter().any(|v| *v > 0.0));
            let dx = fused.backward_ref(&dy).unwrap();
            let want = plain.backward(relu.backward_ref(&dy).unwrap()).unwrap();
            assert_eq!(dx.data(), want.data(), "{mode:?}: dx");
        }
    }

    #[test]
    fn projection_shortcut_gradients_add() {
        // main: ×2, shortcut: ×5, so y = 7x and dx = 7·dy.
        let main = Sequential::new().with(scale_conv(2, 2.0));
        let shortcut = Sequential::new().with(scale_conv(2, 5.0));
        let mut block = Residual::new(main, Some(shortcut), None);
        let x = t(&[1, 2, 1, 1], &[1., 2.]);
        assert_eq!(
            block.forward_ref(&x, Mode::Train).unwrap().data(),
            &[7., 14.]
        );
        assert_eq!(
            block
                .backward_ref(&t(&[1, 2, 1, 1], &[1., -1.]))
                .unwrap()
                .data(),
            &[7., -7.]
        );
        let names: Vec<String> = block.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["main.0.weight", "shortcut.0.weight"]);
    }

    #[test]
    fn mismatched_paths_name_both_shapes_and_suggest_a_projection() {
        let conv = Conv2d::new(Conv2dConfig::new(3, 4, 1), &mut Rng::new(0)).unwrap();
        let mut block = Residual::new(Sequential::new().with(conv), None, None);
        let msg = block
            .forward_ref(&Tensor::zeros(&[1, 3, 4, 4]), Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("residual:")
                && msg.contains("(1, 4, 4, 4)")
                && msg.contains("(1, 3, 4, 4)")
                && msg.contains("1×1 conv"),
            "{msg}"
        );
        backward_before_forward(&mut block, &[1, 4, 4, 4]);
    }

    #[test]
    fn basic_block_structure_shapes_and_names() {
        let mut rng = Rng::new(0);
        let down = Residual::basic_block(2, 4, 2, &mut rng).unwrap();
        assert_eq!(down.output_shape(&[1, 2, 8, 8]).unwrap(), vec![1, 4, 4, 4]);
        let names: Vec<String> = down.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "main.0.weight",
                "main.1.weight",
                "main.1.bias",
                "main.3.weight",
                "main.4.weight",
                "main.4.bias",
                "shortcut.0.weight",
                "shortcut.1.weight",
                "shortcut.1.bias",
            ]
        );
        let buffers: Vec<String> = down.buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(buffers.len(), 9);
        assert!(buffers.contains(&"shortcut.1.running_var".to_string()));
        // Parameters: 3·3·2·4 + 3·3·4·4 + 1·1·2·4 convolution weights, 2·4 per BatchNorm.
        assert_eq!(down.param_count(), 72 + 144 + 8 + 3 * 8);
        // Multiply-adds on (1, 2, 8, 8): the 3×3 convs 4·4·4·(2·9) and 4·4·4·(4·9), the 1×1
        // shortcut 4·4·4·2, one per value for each of the three BatchNorms (64 values each).
        assert_eq!(down.macs(&[1, 2, 8, 8]), 1_152 + 2_304 + 128 + 3 * 64);

        let same = Residual::basic_block(4, 4, 1, &mut rng).unwrap();
        assert!(same.shortcut().is_none());
        assert_eq!(same.output_shape(&[2, 4, 5, 5]).unwrap(), vec![2, 4, 5, 5]);
        // Two stacked 3×3 convolutions: 1 + 2 + 2.
        let rf = same.receptive_field([ReceptiveField::INPUT; 2]);
        assert_eq!(rf[0], ReceptiveField { size: 5, jump: 1 });
        assert_eq!(same.kind(), "residual");
    }
}

/// `forward_owned` and `backward_owned`, which networks use to hand their intermediates
/// on, may write into the tensor they are given: the results must be those of `forward`
/// and `backward`, and a tensor that something else still holds must not change.
mod owned {
    use super::*;

    /// A copy of `v` that shares no memory with it.
    fn unshared(v: &Tensor) -> Tensor {
        Tensor::from_vec(v.shape(), v.data().to_vec()).unwrap()
    }

    fn same_results(make: impl Fn() -> Box<dyn Layer>, mode: Mode) {
        let mut rng = Rng::new(8);
        let x = Tensor::randn(&[4, 3, 5, 5], 1.0, &mut rng);
        let dy = Tensor::randn(&[4, 3, 5, 5], 1.0, &mut rng);
        let (x_before, dy_before) = (x.data().to_vec(), dy.data().to_vec());
        let mut by_reference = make();
        let y = by_reference.forward_ref(&x, mode).unwrap();
        let dx = by_reference.backward_ref(&dy).unwrap();
        for shared in [false, true] {
            let mut owned = make();
            let (x_in, dy_in) = if shared {
                (x.clone(), dy.clone())
            } else {
                (unshared(&x), unshared(&dy))
            };
            let y_owned = owned.forward(x_in, mode).unwrap();
            let dx_owned = owned.backward(dy_in).unwrap();
            let what = format!("{} in {mode:?}, input shared: {shared}", owned.kind());
            assert_eq!(y_owned.data(), y.data(), "y of {what}");
            assert_eq!(dx_owned.data(), dx.data(), "dx of {what}");
            for (name, p) in owned.params() {
                let reference = by_reference.params().into_iter().find(|(n, _)| *n == name);
                assert_eq!(
                    p.grad().data(),
                    reference.unwrap().1.grad().data(),
                    "{name} of {what}"
                );
            }
        }
        // The shared handles still hold the values they were made with.
        assert_eq!(x.data(), &x_before[..]);
        assert_eq!(dy.data(), &dy_before[..]);
    }

    #[test]
    fn activations_and_batch_norm_give_the_same_results_in_place() {
        for mode in [Mode::Train, Mode::Eval] {
            same_results(|| Box::new(Relu::new()), mode);
            same_results(|| Box::new(LeakyRelu::new(0.1)), mode);
            same_results(|| Box::new(Sigmoid::new()), mode);
            same_results(|| Box::new(Silu::new()), mode);
            same_results(|| Box::new(Hardswish::new()), mode);
            same_results(|| Box::new(BatchNorm2d::new(3).unwrap()), mode);
        }
    }

    #[test]
    fn a_network_does_not_change_its_input_or_the_gradient_it_is_given() {
        let mut rng = Rng::new(3);
        let mut net = Sequential::new()
            .with(BatchNorm2d::new(2).unwrap())
            .with(Relu::new())
            .with(BatchNorm2d::new(2).unwrap())
            .with(Sigmoid::new());
        let x = Tensor::randn(&[3, 2, 4, 4], 1.0, &mut rng);
        let dy = Tensor::randn(&[3, 2, 4, 4], 1.0, &mut rng);
        let (x_before, dy_before) = (x.data().to_vec(), dy.data().to_vec());
        net.forward_ref(&x, Mode::Train).unwrap();
        net.backward_ref(&dy).unwrap();
        assert_eq!(x.data(), &x_before[..]);
        assert_eq!(dy.data(), &dy_before[..]);
    }
}
