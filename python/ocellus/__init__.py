"""ocellus: the lecture's convolutional network classes on the ocellus engine.

Every layer owns its ``forward``, its ``backward`` and its parameters; a
``LayeredNeuralNetwork`` chains them; ``gradcheck`` and ``finite_difference_gradient``
verify the gradients. Arrays are NumPy: images are NCHW ``(N, C, H, W)``, flat features
``(N, F)``; inputs may be float32 or float64 (C-contiguous), results are float32.

    >>> import numpy as np, ocellus
    >>> net = ocellus.LayeredNeuralNetwork([
    ...     ocellus.ConvolutionalLayer(1, 4, kernel_size=3, padding=1),
    ...     ocellus.MaxPoolingLayer(2),
    ...     ocellus.FlattenLayer(),
    ...     ocellus.LinearLayer(4 * 4 * 4, 3),
    ... ])
    >>> y = net.forward(np.random.randn(2, 1, 8, 8))
    >>> y.shape
    (2, 3)
"""

import numpy as np

from ._ocellus import (
    __version__,
    Adam,
    AdamW,
    AvgPool2d,
    BasicBlock,
    BatchNorm1d,
    BatchNorm2d,
    Bottleneck,
    Concat,
    Conv2d,
    ConvolutionalLayer,
    ConvTranspose2d,
    cross_entropy,
    Dense,
    DenseBlock,
    Dropout,
    Flatten,
    FlattenLayer,
    FullyConnectedLayer,
    GlobalAvgPool,
    gradcheck,
    GradCheckReport,
    Hardswish,
    Layer,
    LayeredNeuralNetwork,
    LeakyReLU,
    Linear,
    LinearLayer,
    manual_seed,
    MaxPool2d,
    MaxPoolingLayer,
    MBConv,
    mse_loss,
    Optimizer,
    ReLU,
    Residual,
    SeparableConv2d,
    SGD,
    Sigmoid,
    SiLU,
    Softmax,
    SqueezeExcite,
    Tanh,
    TensorCheck,
    Upsample,
)
from . import datasets
from ._ocellus import Summary, summary
from .runs import compare, Comparison, Run, train

__all__ = [
    "__version__",
    "Adam",
    "AdamW",
    "AvgPool2d",
    "BasicBlock",
    "BatchNorm1d",
    "BatchNorm2d",
    "Bottleneck",
    "compare",
    "Comparison",
    "Concat",
    "Conv2d",
    "ConvolutionalLayer",
    "ConvTranspose2d",
    "cross_entropy",
    "datasets",
    "Dense",
    "DenseBlock",
    "Dropout",
    "finite_difference_gradient",
    "Flatten",
    "FlattenLayer",
    "FullyConnectedLayer",
    "GlobalAvgPool",
    "gradcheck",
    "GradCheckReport",
    "Hardswish",
    "Layer",
    "LayeredNeuralNetwork",
    "LeakyReLU",
    "Linear",
    "LinearLayer",
    "manual_seed",
    "MaxPool2d",
    "MaxPoolingLayer",
    "MBConv",
    "mse_loss",
    "Optimizer",
    "ReLU",
    "Residual",
    "Run",
    "SeparableConv2d",
    "SGD",
    "Sigmoid",
    "SiLU",
    "Softmax",
    "SqueezeExcite",
    "summary",
    "Summary",
    "Tanh",
    "TensorCheck",
    "train",
    "Upsample",
]


def finite_difference_gradient(func, x, h=1e-5):
    """The gradient of ``func`` at ``x`` by central differences, as the lecture defines it.

    For every element ``x[i]``: ``(f(x + h·e_i) − f(x − h·e_i)) / 2h``, where ``f`` is
    ``func`` if it returns a scalar, and the sum of its output if it returns an array (so
    that for a layer, ``finite_difference_gradient(layer.forward, x)`` is the gradient of
    ``Σ y``, which ``layer.backward(np.ones_like(y))`` computes analytically).

    ``x`` is taken as float64 and the result is float64, shaped like ``x``. Layers compute
    in float32, so a step of 1e-5 loses most digits to rounding there: use ``h=1e-2`` or
    ``1e-3`` for a layer, and mind kinks (ReLU at 0, ties in a max-pool window) within
    ``h`` of ``x``. ``gradcheck`` does this carefully for a whole layer or network.
    """
    x = np.array(x, dtype=np.float64)
    gradient = np.zeros_like(x)

    def scalar(value):
        return float(np.sum(value, dtype=np.float64))

    for i in range(x.size):
        original = x.flat[i]
        x.flat[i] = original + h
        plus = scalar(func(x.copy()))
        x.flat[i] = original - h
        minus = scalar(func(x.copy()))
        x.flat[i] = original
        gradient.flat[i] = (plus - minus) / (2.0 * h)
    return gradient
