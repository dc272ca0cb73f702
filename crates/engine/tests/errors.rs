//! Misuse gets errors that name the layer and both shapes, never panics.

use ocellus::layers::{Conv2d, Conv2dConfig, Flatten, Linear, Relu};
use ocellus::LayerExt;
use ocellus::{Layer, Mode, Rng, Sequential, Tensor};

fn message(result: ocellus::Result<Tensor>) -> String {
    result.expect_err("misuse must be an error").to_string()
}

#[test]
fn linear_fed_the_wrong_number_of_features() {
    let mut fc = Linear::new(400, 120, &mut Rng::new(0)).unwrap();
    let msg = message(fc.forward_ref(&Tensor::zeros(&[8, 256]), Mode::Train));
    assert_eq!(
        msg,
        "linear: expects input (N, 400), but got (8, 256) (400 inputs expected, the previous layer gives 256)"
    );
}

#[test]
fn linear_fed_an_image_suggests_flatten() {
    let mut fc = Linear::new(400, 120, &mut Rng::new(0)).unwrap();
    let msg = message(fc.forward_ref(&Tensor::zeros(&[8, 16, 4, 4]), Mode::Train));
    assert!(msg.contains("(8, 16, 4, 4)"), "{msg}");
    assert!(
        msg.contains("Flatten") && msg.contains("256 = 16×4×4"),
        "{msg}"
    );
}

#[test]
fn conv_fed_the_wrong_channel_count() {
    let mut conv = Conv2d::new(Conv2dConfig::new(3, 8, 3), &mut Rng::new(0)).unwrap();
    let msg = message(conv.forward_ref(&Tensor::zeros(&[2, 1, 28, 28]), Mode::Train));
    assert_eq!(
        msg,
        "conv2d: expects input (N, 3, H, W), but got (2, 1, 28, 28)"
    );
}

#[test]
fn conv_fed_an_image_smaller_than_its_kernel() {
    let mut conv = Conv2d::new(Conv2dConfig::new(1, 1, 5), &mut Rng::new(0)).unwrap();
    let msg = message(conv.forward_ref(&Tensor::zeros(&[1, 1, 3, 3]), Mode::Train));
    assert!(
        msg.contains("5×5 kernel") && msg.contains("(1, 1, 3, 3)"),
        "{msg}"
    );
}

#[test]
fn backward_before_forward_names_the_layer() {
    let mut rng = Rng::new(0);
    let mut layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::new(Conv2dConfig::new(1, 2, 3), &mut rng).unwrap()),
        Box::new(Linear::new(4, 2, &mut rng).unwrap()),
        Box::new(Relu::new()),
        Box::new(Flatten::new()),
    ];
    for layer in &mut layers {
        let msg = message(layer.backward_ref(&Tensor::zeros(&[1, 2])));
        assert!(
            msg.starts_with(&format!("{}: backward called before forward", layer.kind())),
            "{msg}"
        );
    }
}

#[test]
fn backward_with_a_gradient_of_the_wrong_shape() {
    let mut fc = Linear::new(4, 2, &mut Rng::new(0)).unwrap();
    fc.forward_ref(&Tensor::zeros(&[3, 4]), Mode::Train)
        .unwrap();
    let msg = message(fc.backward_ref(&Tensor::zeros(&[3, 5])));
    assert!(msg.contains("(3, 2)") && msg.contains("(3, 5)"), "{msg}");
}

#[test]
fn a_network_names_the_position_of_the_bad_layer() {
    let mut rng = Rng::new(0);
    let mut net = Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(1, 16, 5), &mut rng).unwrap())
        .with(Relu::new())
        .with(Flatten::new())
        .with(Linear::new(400, 10, &mut rng).unwrap());
    let x = Tensor::zeros(&[2, 1, 8, 8]); // 16×4×4 = 256 features reach the Linear
    let msg = message(net.forward_ref(&x, Mode::Eval));
    assert!(
        msg.starts_with("layer 3 (linear): expects input (N, 400)"),
        "{msg}"
    );
    let shape_msg = net.shapes(&[2, 1, 8, 8]).unwrap_err().to_string();
    assert_eq!(shape_msg, msg);
}

#[test]
fn impossible_configurations_are_refused() {
    let mut rng = Rng::new(0);
    let mut config = Conv2dConfig::new(3, 8, 3);
    config.groups = 2;
    let msg = Conv2d::new(config, &mut rng).err().unwrap().to_string();
    assert!(msg.contains("groups = 2 must divide"), "{msg}");
    assert!(Conv2d::new(Conv2dConfig::new(3, 8, 3).stride(0), &mut rng).is_err());
    assert!(Linear::new(0, 3, &mut rng).is_err());
}
