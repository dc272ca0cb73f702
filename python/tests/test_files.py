"""Saving and loading parameters (safetensors under PyTorch's names), and the exceptions
for files: FileNotFoundError, and ValueError naming a file that is not a checkpoint or
does not fit."""

import numpy as np
import pytest

import ocellus


def small_network():
    return ocellus.LayeredNeuralNetwork(
        [
            ocellus.ConvolutionalLayer(1, 2, kernel_size=3),
            ocellus.MaxPoolingLayer(),
            ocellus.FlattenLayer(),
            ocellus.LinearLayer(8, 3),
        ]
    )


def test_network_save_and_load_round_trip(tmp_path):
    path = tmp_path / "net.safetensors"
    net = small_network()
    net.save(path)
    other = small_network()
    assert not np.array_equal(other.parameters, net.parameters)
    other.load(str(path))
    np.testing.assert_array_equal(other.parameters, net.parameters)
    # PyTorch's names in the file's header.
    header = path.read_bytes()[8:400]
    for name in [b'"0.weight"', b'"0.bias"', b'"3.weight"', b'"3.bias"']:
        assert name in header


def test_layer_save_and_load_round_trip_with_buffers(tmp_path):
    bn = ocellus.BatchNorm2d(2)
    bn.forward(np.random.default_rng(0).normal(2.0, 1.0, (4, 2, 3, 3)))
    bn.parameters = np.array([1.0, 2.0, 3.0, 4.0])
    bn.save(tmp_path / "bn.safetensors")
    fresh = ocellus.BatchNorm2d(2)
    fresh.load(tmp_path / "bn.safetensors")
    np.testing.assert_array_equal(fresh.parameters, [1, 2, 3, 4])
    np.testing.assert_array_equal(fresh.named_buffers()["running_mean"], bn.named_buffers()["running_mean"])


def test_a_missing_file_is_file_not_found(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        small_network().load(path)
    with pytest.raises(FileNotFoundError):
        ocellus.LinearLayer(2, 2).load(path)


def test_writing_where_no_file_can_be_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="missing-dir"):
        ocellus.LinearLayer(2, 2).save(tmp_path / "missing-dir" / "x.safetensors")


def test_a_file_that_is_not_a_checkpoint_is_a_value_error(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.safetensors"):
        ocellus.LinearLayer(2, 2).load(path)


def test_a_checkpoint_of_another_shape_is_a_value_error_and_changes_nothing(tmp_path):
    path = tmp_path / "linear.safetensors"
    ocellus.LinearLayer(3, 2).save(path)
    layer = ocellus.LinearLayer(4, 2)
    before = layer.parameters
    with pytest.raises(ValueError, match=r"linear.safetensors: tensor weight has shape \(2, 3\) but the model's is \(2, 4\)"):
        layer.load(path)
    np.testing.assert_array_equal(layer.parameters, before)


def test_a_checkpoint_of_another_network_names_the_missing_tensors(tmp_path):
    path = tmp_path / "conv.safetensors"
    ocellus.ConvolutionalLayer(1, 2, kernel_size=3).save(path)
    with pytest.raises(ValueError, match=r"missing 4 tensor\(s\) the model needs: 0.weight, 0.bias, 3.weight, 3.bias:"):
        small_network().load(path)
