"""The rest of ocellus's layers under PyTorch's names (BatchNorm1d, Softmax, SiLU, Hardswish,
ConvTranspose2d, Upsample, Conv2d with per-side padding) and the blocks (Residual, Concat,
Dense, BasicBlock, Bottleneck, DenseBlock, SqueezeExcite, MBConv, SeparableConv2d): their
gradients against finite differences, their parameter names, shapes computed here by
hand, and the errors of impossible settings."""

import numpy as np
import pytest

import ocellus


# Steps of the finite differences. Two errors pull the step opposite ways: float32
# rounding (∝ 1/ε), largest where BatchNorm moves every output with every input, and
# ReLU kinks crossed (∝ ε) — a weight step moves a whole channel, and BatchNorm in
# training mode centres it on the kink. A correct gradient agrees at one of the steps; a
# wrong one, whose analytic values do not depend on ε, at none.
STEPS = (1e-2, 3e-3, 1e-3, 3e-4)


def gradcheck_passes(layer, shape, seed=2, mode="train"):
    """Every tensor (the input and each parameter) agrees with central differences at one
    of STEPS."""
    x = np.random.default_rng(seed).standard_normal(shape)
    reports = [ocellus.gradcheck(layer, x, epsilon=eps, mode=mode) for eps in STEPS]
    names = [t.name for t in reports[0].tensors]
    assert names == ["input", *layer.named_parameters()]
    for i, name in enumerate(names):
        checks = [r.tensors[i] for r in reports]
        assert any(c.passed and c.checked > 0 for c in checks), "\n".join(map(str, reports))


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: ocellus.BatchNorm1d(5), (6, 5)),
        (lambda: ocellus.Softmax(), (3, 5)),
        (lambda: ocellus.SiLU(), (2, 3, 4, 4)),
        (lambda: ocellus.Hardswish(), (2, 3, 4, 4)),
        (lambda: ocellus.ConvTranspose2d(2, 3, 3), (2, 2, 4, 5)),
        (
            lambda: ocellus.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
            (2, 2, 4, 4),
        ),
        (lambda: ocellus.ConvTranspose2d(3, 2, 2, stride=2, dilation=2, bias=False), (1, 3, 3, 3)),
        (lambda: ocellus.Upsample(scale_factor=2), (2, 3, 3, 4)),
        (lambda: ocellus.Upsample(scale_factor=(2, 3), mode="bilinear"), (2, 2, 3, 3)),
        (lambda: ocellus.Upsample(size=(5, 7), mode="bilinear"), (1, 2, 3, 4)),
        (lambda: ocellus.Conv2d(2, 3, 3, padding=(0, 2, 1, 0)), (2, 2, 5, 5)),
        (lambda: ocellus.Conv2d(2, 3, 3, stride=2, padding=(1, 2)), (2, 2, 6, 6)),
    ],
)
def test_layers_pass_gradcheck(make, shape):
    gradcheck_passes(make(), shape)


@pytest.mark.parametrize(
    "make, x_shape, y_shape",
    [
        # (H − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1
        (lambda: ocellus.ConvTranspose2d(2, 3, 3), (1, 2, 4, 5), (1, 3, 6, 7)),
        (
            lambda: ocellus.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1),
            (1, 2, 4, 4),
            (1, 4, 8, 8),
        ),
        (lambda: ocellus.Upsample(scale_factor=(2, 3)), (1, 2, 3, 3), (1, 2, 6, 9)),
        (lambda: ocellus.Upsample(size=5, mode="bilinear"), (1, 2, 3, 4), (1, 2, 5, 5)),
        # H + top + bottom − kernel + 1, W + left + right − kernel + 1
        (lambda: ocellus.Conv2d(2, 3, 3, padding=(0, 2, 1, 0)), (1, 2, 5, 5), (1, 3, 5, 4)),
        (lambda: ocellus.SeparableConv2d(4, 6, 3, stride=2, padding=1), (1, 4, 8, 8), (1, 6, 4, 4)),
        (lambda: ocellus.BasicBlock(4, 8, stride=2), (1, 4, 7, 7), (1, 8, 4, 4)),
        (lambda: ocellus.Bottleneck(4, 8, stride=2, expansion=2), (1, 4, 6, 6), (1, 8, 3, 3)),
        (lambda: ocellus.DenseBlock(3, layers=2, growth=4), (1, 3, 5, 5), (1, 11, 5, 5)),
        (lambda: ocellus.SqueezeExcite(8, reduction=4), (1, 8, 3, 3), (1, 8, 3, 3)),
        (lambda: ocellus.MBConv(4, 4, expand_ratio=2), (1, 4, 5, 5), (1, 4, 5, 5)),
        (lambda: ocellus.MBConv(4, 6, expand_ratio=1, kernel_size=5, stride=2), (1, 4, 6, 6), (1, 6, 3, 3)),
    ],
)
def test_output_shapes(make, x_shape, y_shape):
    assert make().forward(np.zeros(x_shape)).shape == y_shape


def test_softmax_and_upsample_values_by_hand():
    x = np.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(ocellus.Softmax().forward(x), [[0.25, 0.75]], rtol=1e-6)
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    y = ocellus.Upsample(scale_factor=2).forward(x)
    np.testing.assert_array_equal(y[0, 0], np.repeat(np.repeat(x[0, 0], 2, 0), 2, 1))
    # Bilinear, align_corners=False: output column 1 of 4 reads input 0.25 of the way
    # from column 0 to column 1 (source x = (1 + 0.5)/2 − 0.5).
    y = ocellus.Upsample(scale_factor=2, mode="bilinear").forward(np.array([[[[0.0, 4.0]]]]))
    np.testing.assert_allclose(y[0, 0, 0], [0.0, 1.0, 3.0, 4.0], rtol=1e-6)
    y = ocellus.SiLU().forward(np.array([[1.0, -2.0]]))
    np.testing.assert_allclose(y, [[1 / (1 + np.exp(-1)), -2 / (1 + np.exp(2))]], rtol=1e-6)
    y = ocellus.Hardswish().forward(np.array([[-4.0, 1.0, 4.0]]))
    np.testing.assert_allclose(y, [[0.0, 4 / 6, 4.0]], rtol=1e-6)


def residual():
    return ocellus.Residual(
        [ocellus.Conv2d(3, 3, 3, padding=1), ocellus.BatchNorm2d(3), ocellus.ReLU(), ocellus.Conv2d(3, 3, 3, padding=1)],
    )


def projected_residual():
    return ocellus.Residual(
        [ocellus.Conv2d(2, 4, 3, stride=2, padding=1), ocellus.Tanh(), ocellus.Conv2d(4, 4, 1)],
        shortcut=ocellus.Conv2d(2, 4, 1, stride=2, bias=False),
        activation=None,
    )


def concat():
    return ocellus.Concat(
        [
            [ocellus.Conv2d(3, 2, 1)],
            [ocellus.Conv2d(3, 2, 1), ocellus.ReLU(), ocellus.Conv2d(2, 3, 3, padding=1)],
            ocellus.MaxPool2d(3, stride=1, padding=1),
        ]
    )


def dense():
    return ocellus.Dense(
        [
            [ocellus.BatchNorm2d(2), ocellus.Tanh(), ocellus.Conv2d(2, 3, 3, padding=1)],
            [ocellus.Conv2d(5, 2, 1)],
        ]
    )


BLOCKS = {
    "Residual": (residual, (2, 3, 4, 4)),
    "Residual with projection": (projected_residual, (2, 2, 5, 5)),
    "Concat": (concat, (2, 3, 4, 4)),
    "Dense": (dense, (3, 2, 3, 3)),
    "BasicBlock": (lambda: ocellus.BasicBlock(2, 4, stride=2), (3, 2, 4, 4)),
    "BasicBlock identity": (lambda: ocellus.BasicBlock(3, 3), (3, 3, 3, 3)),
    "Bottleneck": (lambda: ocellus.Bottleneck(2, 4, stride=1, expansion=2), (3, 2, 3, 3)),
    "DenseBlock": (lambda: ocellus.DenseBlock(2, layers=2, growth=2), (3, 2, 3, 3)),
    "SqueezeExcite": (lambda: ocellus.SqueezeExcite(4, squeeze_channels=2), (2, 4, 3, 3)),
    "SqueezeExcite silu": (lambda: ocellus.SqueezeExcite(8, reduction=4, activation="silu"), (2, 8, 2, 2)),
    "MBConv": (lambda: ocellus.MBConv(2, 2, expand_ratio=2), (3, 2, 3, 3)),
    "MBConv strided": (lambda: ocellus.MBConv(2, 3, expand_ratio=1, stride=2), (3, 2, 4, 4)),
    "SeparableConv2d": (lambda: ocellus.SeparableConv2d(3, 4, 3, padding=1), (2, 3, 4, 4)),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_blocks_pass_gradcheck(name):
    make, shape = BLOCKS[name]
    gradcheck_passes(make(), shape)


@pytest.mark.parametrize("name", ["Residual", "Dense", "BasicBlock", "Bottleneck", "DenseBlock", "MBConv"])
def test_blocks_with_batchnorm_pass_gradcheck_in_eval_mode(name):
    make, shape = BLOCKS[name]
    block = make()
    # Training passes move the running statistics away from (0, 1) first.
    x = np.random.default_rng(4).standard_normal(shape)
    block.forward(x)
    block.forward(0.5 * x + 0.3)
    assert any(np.any(b != 0) for b in block.named_buffers().values())
    gradcheck_passes(block, shape, mode="eval")


@pytest.mark.parametrize("name", ["Residual", "Concat", "Dense", "BasicBlock", "SqueezeExcite"])
def test_blocks_pass_gradcheck_inside_a_network(name):
    make, shape = BLOCKS[name]
    block = make()
    net = ocellus.LayeredNeuralNetwork([block, ocellus.Flatten()])
    x = np.random.default_rng(3).standard_normal(shape)
    reports = [ocellus.gradcheck(net, x, epsilon=eps) for eps in STEPS]
    names = [t.name for t in reports[0].tensors]
    assert names == ["input", *("0." + n for n in block.named_parameters())]
    for i, name in enumerate(names):
        checks = [r.tensors[i] for r in reports]
        assert any(c.passed and c.checked > 0 for c in checks), "\n".join(map(str, reports))


def shapes(layer):
    return {name: value.shape for name, value in layer.named_parameters().items()}


def test_block_parameter_names_and_shapes():
    assert shapes(residual()) == {
        "main.0.weight": (3, 3, 3, 3),
        "main.0.bias": (3,),
        "main.1.weight": (3,),
        "main.1.bias": (3,),
        "main.3.weight": (3, 3, 3, 3),
        "main.3.bias": (3,),
    }
    assert shapes(projected_residual()) == {
        "main.0.weight": (4, 2, 3, 3),
        "main.0.bias": (4,),
        "main.2.weight": (4, 4, 1, 1),
        "main.2.bias": (4,),
        "shortcut.0.weight": (4, 2, 1, 1),
    }
    assert shapes(concat()) == {
        "0.0.weight": (2, 3, 1, 1),
        "0.0.bias": (2,),
        "1.0.weight": (2, 3, 1, 1),
        "1.0.bias": (2,),
        "1.2.weight": (3, 2, 3, 3),
        "1.2.bias": (3,),
    }
    assert shapes(dense()) == {
        "0.0.weight": (2,),
        "0.0.bias": (2,),
        "0.2.weight": (3, 2, 3, 3),
        "0.2.bias": (3,),
        "1.0.weight": (2, 5, 1, 1),
        "1.0.bias": (2,),
    }
    assert shapes(ocellus.BasicBlock(2, 4, stride=2)) == {
        "main.0.weight": (4, 2, 3, 3),
        "main.1.weight": (4,),
        "main.1.bias": (4,),
        "main.3.weight": (4, 4, 3, 3),
        "main.4.weight": (4,),
        "main.4.bias": (4,),
        "shortcut.0.weight": (4, 2, 1, 1),
        "shortcut.1.weight": (4,),
        "shortcut.1.bias": (4,),
    }
    assert list(shapes(ocellus.BasicBlock(4, 4))) == [
        "main.0.weight", "main.1.weight", "main.1.bias", "main.3.weight", "main.4.weight", "main.4.bias"
    ]
    bottleneck = shapes(ocellus.Bottleneck(8, 16, stride=2))  # width 16 / 4 = 4
    assert bottleneck["main.0.weight"] == (4, 8, 1, 1)
    assert bottleneck["main.3.weight"] == (4, 4, 3, 3)
    assert bottleneck["main.6.weight"] == (16, 4, 1, 1)
    assert bottleneck["shortcut.0.weight"] == (16, 8, 1, 1)
    assert len(bottleneck) == 3 + 3 * 2 + 2 + 1  # three convs and BNs, a projection and its BN
    growth = shapes(ocellus.DenseBlock(3, layers=2, growth=4))
    assert growth["0.0.weight"] == (3,)  # BatchNorm over the block's input
    assert growth["0.2.weight"] == (16, 3, 1, 1)  # to 4·growth
    assert growth["0.5.weight"] == (4, 16, 3, 3)
    assert growth["1.0.weight"] == (7,)  # input and layer 0's growth
    assert growth["1.2.weight"] == (16, 7, 1, 1)
    assert shapes(ocellus.SqueezeExcite(32)) == {  # 32 // 16 = 2
        "gate.1.weight": (2, 32, 1, 1),
        "gate.1.bias": (2,),
        "gate.3.weight": (32, 2, 1, 1),
        "gate.3.bias": (32,),
    }
    mb = shapes(ocellus.MBConv(4, 4, expand_ratio=6))
    assert mb["main.0.weight"] == (24, 4, 1, 1)
    assert mb["main.3.weight"] == (24, 1, 3, 3)  # depthwise
    assert mb["main.6.gate.1.weight"] == (1, 24, 1, 1)  # squeeze to in_channels // 4
    assert mb["main.7.weight"] == (4, 24, 1, 1)
    assert "0.weight" in shapes(ocellus.MBConv(4, 8))  # no identity: the path alone
    assert shapes(ocellus.SeparableConv2d(3, 5, 3, bias=False)) == {
        "0.weight": (3, 1, 3, 3),
        "1.weight": (5, 3, 1, 1),
    }


def test_blocks_start_from_the_given_layers_weights():
    conv = ocellus.Conv2d(2, 2, 3, padding=1)
    conv.parameters = np.arange(conv.num_parameters, dtype=np.float32)
    block = ocellus.Residual([conv], activation=None)
    np.testing.assert_array_equal(block.parameters, conv.parameters)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    np.testing.assert_allclose(block.forward(x), conv.forward(x) + x, rtol=1e-5, atol=1e-5)
    # The block holds copies: changing it leaves the layer as it was.
    block.parameters = np.zeros(block.num_parameters)
    assert conv.parameters[1] == 1.0


def test_network_with_blocks_trains_by_hand():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 0.1, (16, 1, 6, 6)).astype(np.float32)
    labels = np.arange(16) % 2
    for i, label in enumerate(labels):
        k = rng.integers(6)
        if label == 0:
            images[i, 0, :, k] += 1
        else:
            images[i, 0, k, :] += 1
    net = ocellus.LayeredNeuralNetwork(
        [
            ocellus.ConvolutionalLayer(1, 4, kernel_size=3, padding=1),
            ocellus.Residual([ocellus.Conv2d(4, 4, 3, padding=1), ocellus.ReLU(), ocellus.Conv2d(4, 4, 3, padding=1)]),
            ocellus.Concat([[ocellus.Conv2d(4, 2, 1)], [ocellus.Conv2d(4, 2, 3, padding=1), ocellus.SiLU()]]),
            ocellus.MaxPoolingLayer(2),
            ocellus.FlattenLayer(),
            ocellus.FullyConnectedLayer(4 * 3 * 3, 8),
            ocellus.LinearLayer(8, 2),
        ]
    )
    names = list(net.named_parameters())
    assert "1.main.0.weight" in names and "2.1.0.weight" in names
    optimizer = ocellus.AdamW(lr=0.02)
    losses = []
    for _ in range(30):
        net.zero_grad()
        loss, grad = ocellus.cross_entropy(net.forward(images), labels)
        net.backward(grad)
        optimizer.step(net)
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0], losses


def test_impossible_settings_are_value_errors():
    with pytest.raises(
        ValueError,
        match=r"^ConvTranspose2d: output padding must be smaller than either stride or dilation, "
        r"but got output padding \(2, 2\) with stride \(2, 2\) and dilation \(1, 1\)",
    ):
        ocellus.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"^ConvTranspose2d: .*groups"):
        ocellus.ConvTranspose2d(3, 2, 3, groups=2)
    with pytest.raises(
        ValueError,
        match=r"^Concat: expects input an input for which all branches agree in every axis but "
        r"channels, but got \(1, 3, 64, 64\), the image a block is checked on when built "
        r"\(branch 1 gives \(1, 2, 32, 32\) but branch 0 gives \(1, 2, 64, 64\)",
    ):
        ocellus.Concat([[ocellus.Conv2d(3, 2, 1)], [ocellus.Conv2d(3, 2, 1, stride=2)]])
    with pytest.raises(ValueError, match=r"^Concat: needs at least one branch"):
        ocellus.Concat([])
    with pytest.raises(
        ValueError,
        match=r"^Residual: .*the main path gives \(1, 4, 64, 64\) but the identity shortcut gives "
        r"\(1, 3, 64, 64\)",
    ):
        ocellus.Residual([ocellus.Conv2d(3, 4, 1)])  # 4 channels + 3 of the identity
    with pytest.raises(
        ValueError,
        match=r"^Dense: layer 1 \(layer 0 \(conv2d\)\): expects 4 input channels, but the "
        r"previous layer gives 5 channels",
    ):
        ocellus.Dense([[ocellus.Conv2d(3, 2, 1)], [ocellus.Conv2d(4, 2, 1)]])
    with pytest.raises(ValueError, match=r"^Bottleneck: expansion = 3 must be positive and divide out_channels = 8"):
        ocellus.Bottleneck(4, 8, expansion=3)
    with pytest.raises(ValueError, match=r"activation 'gelu' is not one of"):
        ocellus.SqueezeExcite(8, activation="gelu")
    with pytest.raises(ValueError, match=r"^MBConv: expand_ratio = 6 must be positive and kernel = 4 odd"):
        ocellus.MBConv(4, 4, kernel_size=4)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        ocellus.Upsample()
    with pytest.raises(ValueError, match="mode must be 'nearest' or 'bilinear'"):
        ocellus.Upsample(scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match=r"padding must be an int, \(ph, pw\) or \(top, bottom, left, right\), got 3"):
        ocellus.Conv2d(1, 1, 3, padding=(1, 1, 1))
    with pytest.raises(TypeError, match="main must be an ocellus layer or a list of them"):
        ocellus.Residual(["conv"])
    with pytest.raises(ValueError, match=r"^BatchNorm1d: expects input \(N, 3\)"):
        ocellus.BatchNorm1d(3).forward(np.zeros((2, 4)))


def test_residual_over_flat_features():
    block = ocellus.Residual([ocellus.Linear(4, 4), ocellus.Tanh(), ocellus.Linear(4, 4)], activation="tanh")
    assert shapes(block) == {
        "main.0.weight": (4, 4),
        "main.0.bias": (4,),
        "main.2.weight": (4, 4),
        "main.2.bias": (4,),
    }
    gradcheck_passes(block, (3, 4))


def test_block_saves_and_loads_under_the_engine_names(tmp_path):
    block = ocellus.BasicBlock(2, 4, stride=2)
    block.forward(np.random.default_rng(0).standard_normal((2, 2, 4, 4)))  # running statistics
    block.save(tmp_path / "block.safetensors")
    other = ocellus.BasicBlock(2, 4, stride=2)
    assert not np.array_equal(other.parameters, block.parameters)
    other.load(tmp_path / "block.safetensors")
    np.testing.assert_array_equal(other.parameters, block.parameters)
    for name, value in block.named_buffers().items():
        np.testing.assert_array_equal(other.named_buffers()[name], value)
    assert "shortcut.1.running_mean" in block.named_buffers()
