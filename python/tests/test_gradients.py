"""Finite-difference checks of every lecture class and of a whole network, for the input
and for every parameter: the lecture's `finite_difference_gradient` of `L = Σ y·r` (r a
fixed random upstream gradient) against `backward(r)`, and the engine's `gradcheck`."""

import numpy as np
import pytest

import ocellus
from conftest import distinct_values

H = 1e-3  # float32 forward passes: a larger step than the lecture's 1e-5 (rounding)
RTOL, ATOL = 1e-2, 5e-3


def analytic_gradients(model, x, r):
    """dL/dx and the flat dL/dθ of L = Σ model(x)·r, from backward."""
    model.zero_grad()
    model.forward(x)
    dx = model.backward(r)
    return dx, model.gradients


def check_model(model, x, seed=1):
    """Compares backward's gradients with finite differences, input and parameters."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(model.forward(x).shape)
    dx, dtheta = analytic_gradients(model, x, r)

    numeric_dx = ocellus.finite_difference_gradient(lambda v: model.forward(v) * r, x, h=H)
    np.testing.assert_allclose(dx, numeric_dx, rtol=RTOL, atol=ATOL, err_msg="input")

    theta = model.parameters
    if theta.size:

        def loss_at(values):
            model.parameters = values
            return model.forward(x) * r

        numeric_dtheta = ocellus.finite_difference_gradient(loss_at, theta, h=H)
        model.parameters = theta
        np.testing.assert_allclose(dtheta, numeric_dtheta, rtol=RTOL, atol=ATOL, err_msg="parameters")

    report = ocellus.gradcheck(model, x)
    assert report.passed, str(report)
    assert report.tensors[0].name == "input"
    assert len(report) == 1 + len(model.named_parameters())


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", None])
def test_convolutional_layer_with_stride_and_padding(activation):
    layer = ocellus.ConvolutionalLayer(2, 3, kernel_size=3, stride=2, padding=1, activation=activation)
    x = distinct_values((2, 2, 7, 6), np.random.default_rng(5), spacing=0.02)
    # Every pre-activation lies further from ReLU's kink than a step of H can move it
    # (|x| ≤ 0.84, so a step in one weight moves a pre-activation by at most 0.84·H).
    twin = ocellus.ConvolutionalLayer(2, 3, kernel_size=3, stride=2, padding=1, activation=None)
    twin.parameters = layer.parameters
    assert np.abs(twin.forward(x)).min() > 10 * H
    check_model(layer, x)


@pytest.mark.parametrize("pool_size, stride", [(2, None), (2, 1), (3, 2)])
def test_max_pooling_layer(pool_size, stride):
    layer = ocellus.MaxPoolingLayer(pool_size=pool_size, stride=stride)
    x = distinct_values((2, 3, 7, 7), np.random.default_rng(0), spacing=0.01)
    check_model(layer, x)


def test_flatten_layer():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    check_model(ocellus.FlattenLayer(), x)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", None])
def test_fully_connected_layer(activation):
    layer = ocellus.FullyConnectedLayer(7, 5, activation=activation)
    x = distinct_values((3, 7), np.random.default_rng(0), spacing=0.1)
    check_model(layer, x)


def test_linear_layer():
    x = np.random.default_rng(0).standard_normal((3, 6))
    check_model(ocellus.LinearLayer(6, 4), x)


def lecture_network():
    """The lecture's composition: conv (stride 2, padding 1) → max-pool → flatten →
    dense → linear output."""
    return ocellus.LayeredNeuralNetwork(
        [
            ocellus.ConvolutionalLayer(1, 3, kernel_size=3, stride=2, padding=1, activation="tanh"),
            ocellus.MaxPoolingLayer(pool_size=2),
            ocellus.FlattenLayer(),
            ocellus.FullyConnectedLayer(3 * 2 * 2, 6, activation="sigmoid"),
            ocellus.LinearLayer(6, 4),
        ]
    )


def test_whole_network():
    net = lecture_network()
    x = distinct_values((2, 1, 8, 8), np.random.default_rng(0), spacing=0.03)
    check_model(net, x)
    report = ocellus.gradcheck(net, x)
    names = [t.name for t in report.tensors]
    assert names == ["input", "0.weight", "0.bias", "3.weight", "3.bias", "4.weight", "4.bias"]
    assert report["3.weight"].shape == [6, 12]


def test_whole_relu_network_with_gradcheck():
    net = ocellus.LayeredNeuralNetwork(
        [
            ocellus.ConvolutionalLayer(2, 4, kernel_size=3, stride=2, padding=1),
            ocellus.MaxPoolingLayer(2),
            ocellus.FlattenLayer(),
            ocellus.FullyConnectedLayer(16, 8),
            ocellus.LinearLayer(8, 3),
        ]
    )
    x = np.random.default_rng(3).standard_normal((2, 2, 8, 8))
    report = ocellus.gradcheck(net, x)
    assert report.passed, str(report)
    assert all(t.checked > 0 for t in report.tensors)


def test_network_outputs_are_each_layers_output():
    net = lecture_network()
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    y = net.forward(x)
    assert [o.shape for o in net.outputs] == [(2, 3, 4, 4), (2, 3, 2, 2), (2, 12), (2, 6), (2, 4)]
    h = x
    for layer, output in zip(net.layers, net.outputs):
        h = layer.forward(h)
        np.testing.assert_array_equal(h, output)
    np.testing.assert_array_equal(y, net.outputs[-1])


def test_finite_difference_gradient_as_the_lecture_defines_it():
    # A scalar function: d(x0² + 3·x1)/dx = (2·x0, 3).
    g = ocellus.finite_difference_gradient(lambda v: v[0] ** 2 + 3 * v[1], np.array([2.0, 5.0]))
    np.testing.assert_allclose(g, [4.0, 3.0], rtol=1e-6)
    # An array-valued function is summed: d Σ sin(x) / dx = cos(x).
    x = np.array([[0.1, 0.5], [1.0, -2.0]])
    np.testing.assert_allclose(ocellus.finite_difference_gradient(np.sin, x), np.cos(x), rtol=1e-6)
    # The caller's array is left as it was.
    np.testing.assert_array_equal(x, [[0.1, 0.5], [1.0, -2.0]])


def test_a_wrong_gradient_is_noticed():
    # The same comparison, against the gradient for another upstream r, must fail.
    layer = ocellus.ConvolutionalLayer(1, 2, kernel_size=3, padding=1, activation="tanh")
    x = np.random.default_rng(0).standard_normal((1, 1, 5, 5))
    rng = np.random.default_rng(1)
    r, other = rng.standard_normal((2, 1, 2, 5, 5))
    dx, _ = analytic_gradients(layer, x, other)
    numeric = ocellus.finite_difference_gradient(lambda v: layer.forward(v) * r, x, h=H)
    assert not np.allclose(dx, numeric, rtol=RTOL, atol=ATOL)



def test_gradcheck_report_says_where_the_worst_error_is():
    layer = ocellus.ConvolutionalLayer(1, 2, kernel_size=3, padding=1, activation="tanh")
    x = np.random.default_rng(0).standard_normal((1, 1, 5, 5))
    report = ocellus.gradcheck(layer, x)
    assert report.passed and bool(report)
    weight = report["weight"]
    assert weight.shape == [2, 1, 3, 3] and weight.checked == 18 and weight.skipped == 0
    assert len(weight.worst_index) == 4
    assert weight.max_rel_error <= 1e-2
    assert abs(weight.analytic - weight.numeric) <= 1e-2 * max(abs(weight.analytic), 1e-2)
    # The analytic value reported is the layer's own gradient at that index.
    assert layer.named_gradients()["weight"][tuple(weight.worst_index)] == weight.analytic
    assert "weight" in str(report) and "pass" in str(report)
    with pytest.raises(KeyError, match=r"no tensor named .*kernel.*input.*weight.*bias"):
        report["kernel"]
