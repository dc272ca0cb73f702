"""Parameters: flat vectors and PyTorch's names and layouts, get and set."""

import numpy as np
import pytest

import ocellus


def test_named_parameters_have_pytorchs_names_and_layouts():
    conv = ocellus.ConvolutionalLayer(3, 8, kernel_size=5)
    named = conv.named_parameters()
    assert list(named) == ["weight", "bias"]
    assert named["weight"].shape == (8, 3, 5, 5) and named["bias"].shape == (8,)
    fc = ocellus.FullyConnectedLayer(10, 4)
    assert {k: v.shape for k, v in fc.named_parameters().items()} == {"weight": (4, 10), "bias": (4,)}
    assert ocellus.MaxPoolingLayer().named_parameters() == {}
    assert ocellus.FlattenLayer().parameters.shape == (0,)


def test_flat_parameters_are_the_named_ones_in_order():
    layer = ocellus.LinearLayer(3, 2)
    named = layer.named_parameters()
    flat = np.concatenate([named["weight"].ravel(), named["bias"]])
    np.testing.assert_array_equal(layer.parameters, flat)
    assert layer.parameters.dtype == np.float32


def test_parameters_round_trip_and_change_the_output():
    layer = ocellus.LinearLayer(3, 2)
    values = np.arange(8, dtype=np.float64) / 10  # float64 is converted
    layer.parameters = values
    np.testing.assert_array_equal(layer.parameters, values.astype(np.float32))
    np.testing.assert_array_equal(
        layer.named_parameters()["weight"], np.float32([[0.0, 0.1, 0.2], [0.3, 0.4, 0.5]])
    )
    y = layer.forward(np.array([[1.0, 0.0, -1.0]]))
    np.testing.assert_allclose(y, [[-0.2 + 0.6, -0.2 + 0.7]], rtol=1e-6)
    # The getter returns a copy: changing it changes nothing.
    copy = layer.parameters
    copy[:] = 0
    np.testing.assert_array_equal(layer.parameters, values.astype(np.float32))


def test_wrong_length_is_a_value_error_naming_both_lengths_and_changes_nothing():
    layer = ocellus.ConvolutionalLayer(1, 2, kernel_size=3)
    before = layer.parameters
    with pytest.raises(ValueError, match=r"ConvolutionalLayer: parameters must be a flat vector of 20 values, got .*\(19 values\)"):
        layer.parameters = np.zeros(19, dtype=np.float32)
    with pytest.raises(ValueError, match=r"20 values.*shape \(2, 10\)"):
        layer.parameters = np.zeros((2, 10), dtype=np.float32)
    np.testing.assert_array_equal(layer.parameters, before)


def test_network_parameters_are_its_layers_parameters():
    conv = ocellus.ConvolutionalLayer(1, 2, kernel_size=3)
    out = ocellus.LinearLayer(8, 3)
    net = ocellus.LayeredNeuralNetwork([conv, ocellus.MaxPoolingLayer(), ocellus.FlattenLayer(), out])
    assert list(net.named_parameters()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    np.testing.assert_array_equal(net.parameters, np.concatenate([conv.parameters, out.parameters]))
    assert net.num_parameters == conv.num_parameters + out.num_parameters == 20 + 27
    # Setting the network's parameters sets its layers'.
    values = np.linspace(-1, 1, net.num_parameters).astype(np.float32)
    net.parameters = values
    np.testing.assert_array_equal(conv.parameters, values[:20])
    np.testing.assert_array_equal(out.named_parameters()["bias"], values[-3:])
    with pytest.raises(ValueError, match=r"LayeredNeuralNetwork: parameters must be a flat vector of 47 values, got .*\(46 values\)"):
        net.parameters = values[:-1]


def test_gradients_accumulate_until_zero_grad():
    layer = ocellus.FullyConnectedLayer(4, 3, activation="tanh")
    x = np.random.default_rng(0).standard_normal((2, 4))
    dy = np.ones((2, 3))
    layer.forward(x)
    layer.backward(dy)
    once = layer.gradients
    assert np.abs(once).sum() > 0
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.gradients, 2 * once, rtol=1e-6)
    layer.zero_grad()
    np.testing.assert_array_equal(layer.gradients, np.zeros_like(once))
    assert layer.gradients.shape == layer.parameters.shape


def test_manual_seed_makes_initial_weights_reproducible():
    ocellus.manual_seed(7)
    a = ocellus.ConvolutionalLayer(1, 2, kernel_size=3).parameters
    b = ocellus.ConvolutionalLayer(1, 2, kernel_size=3).parameters
    ocellus.manual_seed(7)
    np.testing.assert_array_equal(ocellus.ConvolutionalLayer(1, 2, kernel_size=3).parameters, a)
    assert not np.array_equal(a, b)
