"""The worked numbers of the lecture notes, through the Python classes."""

import numpy as np

import ocellus

# §2.2 / §2.6: X (3×3), K (2×2), stride 1, no padding, b = 0.
X = np.array([[1, 2, 0], [0, 1, 3], [2, 1, 1]], dtype=np.float32).reshape(1, 1, 3, 3)
K = np.array([[1, 0], [0, -1]], dtype=np.float32).reshape(1, 1, 2, 2)


def notes_conv():
    conv = ocellus.ConvolutionalLayer(1, 1, kernel_size=2, activation=None)
    conv.parameters = np.concatenate([K.ravel(), [0.0]]).astype(np.float32)
    return conv


def test_section_2_2_forward_is_a_diagonal_edge_detector():
    y = notes_conv().forward(X)
    assert y.shape == (1, 1, 2, 2)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[0, -1], [-1, 0]])


def test_section_2_6_gradients_of_kernel_bias_and_input():
    conv = notes_conv()
    conv.forward(X)
    dy = np.array([[1, 2], [0, -1]], dtype=np.float32).reshape(1, 1, 2, 2)
    dx = conv.backward(dy)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [0, -2, -2], [0, 0, 1]])
    grads = conv.named_gradients()
    np.testing.assert_array_equal(grads["weight"][0, 0], [[4, -1], [1, 6]])
    np.testing.assert_array_equal(grads["bias"], [2])
    # The flat vector holds the same numbers, weight first.
    np.testing.assert_array_equal(conv.gradients, [4, -1, 1, 6, 2])


def test_section_2_3_max_pooling_and_its_gradient_routing():
    x = np.array(
        [[1, 3, 2, 4], [5, 6, 1, 2], [1, 2, 3, 0], [0, 1, 1, 4]], dtype=np.float32
    ).reshape(1, 1, 4, 4)
    pool = ocellus.MaxPoolingLayer(pool_size=2)
    y = pool.forward(x)
    np.testing.assert_array_equal(y[0, 0], [[6, 4], [2, 4]])
    dx = pool.backward(np.array([[10, 20], [30, 40]], dtype=np.float32).reshape(1, 1, 2, 2))
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[1, 1], expected[0, 3], expected[2, 1], expected[3, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_section_2_2_same_padding_and_parameter_count():
    conv = ocellus.ConvolutionalLayer(3, 64, kernel_size=3, padding=1)
    assert conv.num_parameters == 1_792
    assert conv.parameters.shape == (1_792,)
    y = conv.forward(np.zeros((1, 3, 32, 32), dtype=np.float32))
    assert y.shape == (1, 64, 32, 32)


def test_the_notes_convolution_inside_a_network():
    conv = notes_conv()
    net = ocellus.LayeredNeuralNetwork([conv, ocellus.FlattenLayer()])
    y = net.forward(X)
    np.testing.assert_array_equal(y, [[0, -1, -1, 0]])
    dx = net.backward(np.array([[1, 2, 0, -1]], dtype=np.float32))
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [0, -2, -2], [0, 0, 1]])
    # The network's layers are the objects it was given.
    assert net.layers[0] is conv
    np.testing.assert_array_equal(conv.named_gradients()["weight"][0, 0], [[4, -1], [1, 6]])
