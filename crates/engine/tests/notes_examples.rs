//! The worked numbers of the lecture notes (`shared/seeds`), reproduced exactly.

use ocellus::geometry::{conv_output_len, conv_param_count, ReceptiveField};
use ocellus::layers::{Conv2d, Conv2dConfig};
use ocellus::LayerExt;
use ocellus::{Layer, Mode, Rng, Tensor};

/// §2.2 / §2.6: X (3×3), K (2×2), stride 1, no padding, b = 0.
fn notes_conv() -> (Conv2d, Tensor) {
    let mut conv = Conv2d::new(Conv2dConfig::new(1, 1, 2), &mut Rng::new(0)).unwrap();
    for (name, p) in conv.params_mut() {
        let values = if name == "weight" {
            vec![1.0, 0.0, 0.0, -1.0]
        } else {
            vec![0.0]
        };
        p.value_mut().copy_from_slice(&values);
    }
    let x = Tensor::from_vec(
        &[1, 1, 3, 3],
        vec![1.0, 2.0, 0.0, 0.0, 1.0, 3.0, 2.0, 1.0, 1.0],
    )
    .unwrap();
    (conv, x)
}

#[test]
fn section_2_2_forward_is_a_diagonal_edge_detector() {
    let (mut conv, x) = notes_conv();
    let s = conv.forward_ref(&x, Mode::Train).unwrap();
    assert_eq!(s.shape(), &[1, 1, 2, 2]);
    assert_eq!(s.data(), &[0.0, -1.0, -1.0, 0.0]);
}

#[test]
fn section_2_6_gradients_of_kernel_bias_and_input() {
    let (mut conv, x) = notes_conv();
    conv.forward_ref(&x, Mode::Train).unwrap();
    let dy = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0, 2.0, 0.0, -1.0]).unwrap();
    let dx = conv.backward_ref(&dy).unwrap();
    assert_eq!(dx.data(), &[1.0, 2.0, 0.0, 0.0, -2.0, -2.0, 0.0, 0.0, 1.0]);
    let params = conv.params();
    assert_eq!(params[0].1.grad().data(), &[4.0, -1.0, 1.0, 6.0]);
    assert_eq!(params[1].1.grad().data(), &[2.0]);
}

#[test]
fn section_2_2_output_size_and_parameter_count() {
    assert_eq!(conv_output_len(32, 3, 1, 1, 1, 1), Some(32));
    assert_eq!(conv_param_count(3, 64, (3, 3), 1, true), Some(1_792));
    let conv = Conv2d::new(Conv2dConfig::new(3, 64, 3), &mut Rng::new(0)).unwrap();
    assert_eq!(conv.param_count(), 1_792);
}

#[test]
fn section_2_4_receptive_fields_of_stacked_3x3_layers() {
    let conv = || Conv2d::new(Conv2dConfig::new(1, 1, 3).padding(1), &mut Rng::new(0)).unwrap();
    let mut rf = [ReceptiveField::INPUT; 2];
    let mut sizes = Vec::new();
    for layer in [conv(), conv(), conv()] {
        rf = layer.receptive_field(rf);
        sizes.push(rf[0].size);
    }
    assert_eq!(sizes, vec![3, 5, 7]);
}
