"""What arrays are accepted, and the exceptions for what is not, with ocellus's messages."""

import numpy as np
import pytest

import ocellus


def test_float64_gives_the_same_result_as_float32():
    layer = ocellus.ConvolutionalLayer(2, 3, kernel_size=3, padding=1)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    y32 = layer.forward(x)
    y64 = layer.forward(x.astype(np.float64))
    assert y32.dtype == y64.dtype == np.float32
    np.testing.assert_array_equal(y32, y64)
    dx = layer.backward(np.ones(y64.shape, dtype=np.float64))
    assert dx.dtype == np.float32 and dx.shape == x.shape


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.complex64, np.bool_])
def test_other_dtypes_are_rejected(dtype):
    layer = ocellus.LinearLayer(3, 2)
    with pytest.raises(ValueError, match=f"x has dtype {np.dtype(dtype).name}.*astype\\(np.float32\\)"):
        layer.forward(np.zeros((1, 3), dtype=dtype))


def test_non_contiguous_arrays_are_rejected_clearly():
    layer = ocellus.ConvolutionalLayer(3, 2, kernel_size=3)
    nhwc = np.zeros((1, 5, 5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"x is not C-contiguous.*np.ascontiguousarray\(x\)"):
        layer.forward(nhwc.transpose(0, 3, 1, 2))
    # The contiguous copy works.
    assert layer.forward(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))).shape == (1, 2, 3, 3)
    layer.forward(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="grad_output is not C-contiguous"):
        layer.backward(np.zeros((1, 3, 3, 2), dtype=np.float32).transpose(0, 3, 1, 2))


def test_non_arrays_are_a_type_error():
    with pytest.raises(TypeError, match="x must be a numpy array of float32 or float64, got list"):
        ocellus.LinearLayer(2, 1).forward([[1.0, 2.0]])


def test_wrong_input_shape_is_a_value_error_with_ocellus_message():
    conv = ocellus.ConvolutionalLayer(3, 2, kernel_size=3)
    with pytest.raises(ValueError, match=r"^ConvolutionalLayer: expects input \(N, 3, H, W\), but got \(1, 1, 5, 5\)$"):
        conv.forward(np.zeros((1, 1, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"LinearLayer: expects input \(N, 4\), but got \(2, 5\)"):
        ocellus.LinearLayer(4, 2).forward(np.zeros((2, 5), dtype=np.float32))


def test_a_networks_shape_error_names_the_layer():
    net = ocellus.LayeredNeuralNetwork(
        [ocellus.ConvolutionalLayer(1, 2, kernel_size=3), ocellus.FlattenLayer(), ocellus.LinearLayer(5, 2)]
    )
    with pytest.raises(ValueError, match=r"^layer 2 \(LinearLayer\): expects input \(N, 5\), but got \(1, 18\)"):
        net.forward(np.zeros((1, 1, 5, 5), dtype=np.float32))


def test_wrong_gradient_shape_is_a_value_error():
    layer = ocellus.LinearLayer(4, 2)
    layer.forward(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"LinearLayer: expects input \(3, 2\), but got \(3, 3\)"):
        layer.backward(np.zeros((3, 3), dtype=np.float32))


def test_backward_before_forward_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="MaxPoolingLayer: backward called before forward"):
        ocellus.MaxPoolingLayer().backward(np.zeros((1, 1, 2, 2), dtype=np.float32))


def test_impossible_settings_are_value_errors():
    with pytest.raises(ValueError, match="activation must be 'relu', 'sigmoid', 'tanh' or None, got 'gelu'"):
        ocellus.ConvolutionalLayer(1, 1, kernel_size=3, activation="gelu")
    with pytest.raises(ValueError, match="maxpool2d: kernel and stride must be positive"):
        ocellus.MaxPoolingLayer(pool_size=0)
    with pytest.raises(ValueError, match="linear: features must be positive"):
        ocellus.FullyConnectedLayer(0, 3)
    with pytest.raises(ValueError, match="mode must be 'train' or 'eval', got 'test'"):
        ocellus.FlattenLayer().forward(np.zeros((1, 2)), mode="test")
    with pytest.raises(OverflowError):
        ocellus.ConvolutionalLayer(-1, 1, kernel_size=3)


def test_a_network_takes_only_ocellus_layers_each_once():
    with pytest.raises(TypeError, match=r"layers\[1\] is a str, not an ocellus layer"):
        ocellus.LayeredNeuralNetwork([ocellus.FlattenLayer(), "relu"])
    shared = ocellus.LinearLayer(2, 2)
    with pytest.raises(ValueError, match=r"layers\[1\] is the same object as layers\[0\]"):
        ocellus.LayeredNeuralNetwork([shared, shared])
    with pytest.raises(ValueError, match="at least one layer"):
        ocellus.LayeredNeuralNetwork([])
    with pytest.raises(TypeError, match="gradcheck checks an ocellus layer or a LayeredNeuralNetwork, got function"):
        ocellus.gradcheck(lambda x: x, np.zeros((1, 2)))


def test_layers_give_the_same_results_from_several_threads():
    import threading

    rng = np.random.default_rng(0)
    layers = [ocellus.ConvolutionalLayer(3, 8, kernel_size=3, padding=1) for _ in range(4)]
    inputs = [rng.standard_normal((4, 3, 32, 32)) for _ in range(4)]
    expected = [layer.forward(x) for layer, x in zip(layers, inputs)]
    results = [None] * 4

    def run(i):
        for _ in range(5):
            results[i] = layers[i].forward(inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
