//! Agreement with PyTorch: forward outputs and every gradient, compared with the vectors
//! `tools/pytorch_reference.py` generated (relative tolerance about 1e-4).

mod common;

use common::{int, pair, Reference};
use ocellus::gradcheck::assert_close;
use ocellus::layers::{Conv2d, Conv2dConfig, Linear, Padding, Relu};
use ocellus::{Layer, Mode, Rng};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

/// Copies the case's stored parameters into the layer, by name.
fn load_params(layer: &mut dyn Layer, reference: &Reference, case: &str) {
    for (name, p) in layer.params_mut() {
        p.value = reference.tensor(case, &name);
    }
}

/// Forward, then backward of the stored upstream gradient; compares y, dx and every
/// parameter gradient with PyTorch's.
fn compare_layer(layer: &mut dyn Layer, reference: &Reference, case: &str, mode: Mode) {
    let x = reference.tensor(case, "x");
    let y = layer.forward(&x, mode).unwrap();
    let want_y = reference.tensor(case, "y");
    assert_eq!(y.shape(), want_y.shape(), "{case}: output shape");
    assert_close(&format!("{case}: y"), y.data(), want_y.data(), RTOL, ATOL);
    layer.zero_grad();
    let dx = layer.backward(&reference.tensor(case, "dy")).unwrap();
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
            p.grad.data(),
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
fn linear_matches_pytorch() {
    let reference = Reference::open("linear");
    for (case, c) in reference.cases() {
        let mut linear = Linear::new(int(&c["fin"]), int(&c["fout"]), &mut Rng::new(0)).unwrap();
        load_params(&mut linear, &reference, case);
        compare_layer(&mut linear, &reference, case, Mode::Train);
    }
}

#[test]
fn relu_matches_pytorch() {
    let reference = Reference::open("activation");
    compare_layer(&mut Relu::new(), &reference, "relu", Mode::Train);
}
