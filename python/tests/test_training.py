"""Losses, optimisers and the layers under PyTorch's names: enough for the lecture's
training loop written by hand. Expected values are computed here independently (NumPy,
or the update rules by hand)."""

import numpy as np
import pytest

import ocellus


def test_cross_entropy_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    targets = np.array([0, 3, 4, 1])
    loss, grad = ocellus.cross_entropy(logits, targets)
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(5)[targets]
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(4), targets])), rel=1e-6)
    np.testing.assert_allclose(grad, (p - onehot) / 4, rtol=1e-5, atol=1e-7)
    assert grad.dtype == np.float32
    # A list of targets works too; a class out of range is ocellus's ValueError.
    assert ocellus.cross_entropy(logits, [0, 3, 4, 1])[0] == loss
    with pytest.raises(ValueError, match="target"):
        ocellus.cross_entropy(logits, [0, 3, 5, 1])
    with pytest.raises(ValueError, match="class indices ≥ 0, got -1"):
        ocellus.cross_entropy(logits, [0, 3, -1, 1])


def test_mse_loss_against_numpy():
    rng = np.random.default_rng(1)
    prediction, target = rng.standard_normal((2, 3, 4))
    loss, grad = ocellus.mse_loss(prediction, target)
    assert loss == pytest.approx(np.mean((prediction - target) ** 2), rel=1e-5)
    np.testing.assert_allclose(grad, 2 * (prediction - target) / prediction.size, rtol=1e-5)
    with pytest.raises(ValueError, match=r"mse_loss: expects input \(3, 4\), but got \(4, 3\)"):
        ocellus.mse_loss(np.zeros((4, 3)), np.zeros((3, 4)))


def one_step(optimizer, gradient_scale=1.0):
    """A LinearLayer(2, 1) with known parameters and gradients, stepped once."""
    layer = ocellus.LinearLayer(2, 1)
    layer.parameters = np.array([1.0, -2.0, 0.5])
    layer.forward(np.array([[3.0, -1.0]]))
    layer.backward(np.array([[gradient_scale]]))  # dW = (3, −1)·s, db = s
    optimizer.step(layer)
    return layer.parameters


def test_sgd_step_by_hand():
    p = one_step(ocellus.SGD(lr=0.1))
    np.testing.assert_allclose(p, [1.0 - 0.3, -2.0 + 0.1, 0.5 - 0.1], rtol=1e-6)


def test_adam_and_adamw_first_steps_by_hand():
    # At step 1 Adam moves each parameter by lr·g/(|g| + eps), about lr·sign(g).
    p = one_step(ocellus.Adam(lr=0.01))
    np.testing.assert_allclose(p, [1.0 - 0.01, -2.0 + 0.01, 0.5 - 0.01], rtol=1e-5)
    # AdamW first shrinks the parameters by (1 − lr·wd).
    p = one_step(ocellus.AdamW(lr=0.01, weight_decay=0.5))
    shrink = 1 - 0.01 * 0.5
    np.testing.assert_allclose(
        p, [1.0 * shrink - 0.01, -2.0 * shrink + 0.01, 0.5 * shrink - 0.01], rtol=1e-5
    )


def test_optimiser_settings_and_errors():
    sgd = ocellus.SGD(lr=0.1, momentum=0.9)
    assert sgd.lr == pytest.approx(0.1)
    sgd.lr = 0.05
    assert sgd.lr == pytest.approx(0.05) and sgd.steps == 0
    with pytest.raises(ValueError, match="sgd: learning rate must be finite and ≥ 0, got -1"):
        ocellus.SGD(lr=-1.0)
    with pytest.raises(ValueError, match="beta2 must be in"):
        ocellus.Adam(betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="step updates an ocellus layer"):
        sgd.step("model")


def test_the_lecture_training_loop_by_hand():
    # Two classes of 6×6 images: a bright vertical or horizontal bar at a random place.
    rng = np.random.default_rng(0)
    images = rng.normal(0, 0.1, (32, 1, 6, 6)).astype(np.float32)
    labels = np.arange(32) % 2
    for i, label in enumerate(labels):
        k = rng.integers(6)
        if label == 0:
            images[i, 0, :, k] += 1
        else:
            images[i, 0, k, :] += 1
    net = ocellus.LayeredNeuralNetwork(
        [
            ocellus.ConvolutionalLayer(1, 4, kernel_size=3, padding=1),
            ocellus.MaxPoolingLayer(2),
            ocellus.FlattenLayer(),
            ocellus.FullyConnectedLayer(4 * 3 * 3, 8),
            ocellus.LinearLayer(8, 2),
        ]
    )
    optimizer = ocellus.AdamW(lr=0.02)
    losses = []
    for _ in range(40):
        net.zero_grad()
        logits = net.forward(images)
        loss, grad = ocellus.cross_entropy(logits, labels)
        net.backward(grad)
        optimizer.step(net)
        losses.append(loss)
    assert optimizer.steps == 40
    assert losses[-1] < 0.2 * losses[0]
    accuracy = np.mean(net.forward(images, mode="eval").argmax(1) == labels)
    assert accuracy == 1.0


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: ocellus.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1, groups=2), (2, 2, 7, 7)),
        (lambda: ocellus.Conv2d(2, 3, 3, dilation=2, bias=False), (1, 2, 7, 7)),
        (lambda: ocellus.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 2, 7, 7)),
        (lambda: ocellus.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 7, 7)),
        (lambda: ocellus.GlobalAvgPool(), (2, 3, 4, 4)),
        (lambda: ocellus.BatchNorm2d(3), (4, 3, 3, 3)),
        (lambda: ocellus.Linear(5, 3), (2, 5)),
        (lambda: ocellus.Tanh(), (2, 5)),
        (lambda: ocellus.Sigmoid(), (2, 5)),
        (lambda: ocellus.LeakyReLU(0.1), (2, 5)),
        (lambda: ocellus.ReLU(), (2, 5)),
        (lambda: ocellus.Dropout(0.3), (4, 8)),
    ],
)
def test_pytorch_named_layers_pass_gradcheck(make, shape):
    layer = make()
    x = np.random.default_rng(2).standard_normal(shape)
    report = ocellus.gradcheck(layer, x)
    assert report.passed, str(report)


def test_batchnorm_and_dropout_follow_the_mode():
    bn = ocellus.BatchNorm2d(2)
    assert list(bn.named_parameters()) == ["weight", "bias"]
    x = np.random.default_rng(0).normal(3.0, 2.0, (8, 2, 4, 4))
    y = bn.forward(x, mode="train")
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), [0, 0], atol=1e-5)
    buffers = bn.named_buffers()
    np.testing.assert_allclose(buffers["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    drop = ocellus.Dropout(0.5)
    x = np.ones((4, 100), dtype=np.float32)
    np.testing.assert_array_equal(drop.forward(x, mode="eval"), x)
    y = drop.forward(x, mode="train")
    assert set(np.unique(y)) == {0.0, 2.0}
