"""Type stubs of the ocellus package: the lecture's CNN classes on the ocellus engine.

Arrays: images NCHW (N, C, H, W), flat features (N, F); inputs float32 or float64,
C-contiguous; results float32.
"""

import os
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.NDArray[Union[np.float32, np.float64]]
Array = npt.NDArray[np.float32]
Mode = Literal["train", "eval"]
Activation = Optional[Literal["relu", "sigmoid", "tanh"]]
BlockActivation = Optional[Literal["relu", "sigmoid", "tanh", "silu", "hardswish"]]
Padding = Union[int, Tuple[int, int], Tuple[int, int, int, int]]
Size = Union[int, Tuple[int, int]]
Path = Union[Layer, Sequence[Layer]]

def manual_seed(seed: int) -> None:
    """Restarts the generator that initialises new layers' weights (and dropout masks)."""

class Layer:
    """Base class: forward, backward (adds parameter gradients), parameters by name."""

    parameters: Array
    """All parameters, flat, in named_parameters() order (a copy); assignable (same length)."""
    @property
    def gradients(self) -> Array:
        """The gradients accumulated since zero_grad(), flat, in the order of parameters."""
    @property
    def num_parameters(self) -> int:
        """The number of learnable values."""
    def forward(self, x: ArrayLike, mode: Mode = "train") -> Array:
        """The output for x; keeps what backward needs."""
    def backward(self, grad_output: ArrayLike) -> Array:
        """Adds dL/dθ into gradients and returns dL/dx, given dL/dy."""
    def named_parameters(self) -> Dict[str, Array]:
        """PyTorch's names ('weight', 'bias') to copies in PyTorch's layouts."""
    def named_gradients(self) -> Dict[str, Array]:
        """The gradients by parameter name, shaped like the parameters."""
    def named_buffers(self) -> Dict[str, Array]:
        """State kept but not learned (BatchNorm's running statistics)."""
    def zero_grad(self) -> None:
        """Sets every parameter gradient to zero."""
    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes parameters and buffers to a safetensors file under PyTorch's names."""
    def load(self, path: Union[str, os.PathLike[str]]) -> None:
        """Reads a file written by save; FileNotFoundError, or ValueError if it does not fit."""

# The lecture's classes.

class ConvolutionalLayer(Layer):
    """y = φ(conv(x, W) + b): (N, in_channels, H, W) -> (N, out_channels, OH, OW)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        activation: Activation = "relu",
    ) -> None: ...

class MaxPoolingLayer(Layer):
    """The maximum of each pool_size×pool_size window, moved by stride (None: pool_size)."""

    def __init__(self, pool_size: int = 2, stride: Optional[int] = None) -> None: ...

class FlattenLayer(Layer):
    """(N, C, H, W) -> (N, C·H·W)."""

    def __init__(self) -> None: ...

class FullyConnectedLayer(Layer):
    """y = φ(x·Wᵀ + b): (N, input_size) -> (N, output_size)."""

    def __init__(self, input_size: int, output_size: int, activation: Activation = "relu") -> None: ...

class LinearLayer(Layer):
    """y = x·Wᵀ + b, no activation: (N, input_size) -> (N, output_size)."""

    def __init__(self, input_size: int, output_size: int) -> None: ...

class LayeredNeuralNetwork:
    """The layers applied in order; parameters named '0.weight', '0.bias', '3.weight', …"""

    parameters: Array
    """All layers' parameters, flat (a copy); assignable (same length)."""
    def __init__(self, layers: Sequence[Layer]) -> None: ...
    @property
    def layers(self) -> List[Layer]:
        """The layer objects themselves."""
    @property
    def outputs(self) -> List[Array]:
        """outputs[i]: what layers[i] returned in the last forward."""
    @property
    def gradients(self) -> Array: ...
    @property
    def num_parameters(self) -> int: ...
    def forward(self, x: ArrayLike, mode: Mode = "train") -> Array: ...
    def backward(self, grad_output: ArrayLike) -> Array: ...
    def named_parameters(self) -> Dict[str, Array]: ...
    def named_gradients(self) -> Dict[str, Array]: ...
    def zero_grad(self) -> None: ...
    def save(self, path: Union[str, os.PathLike[str]]) -> None: ...
    def load(self, path: Union[str, os.PathLike[str]]) -> None: ...
    def __len__(self) -> int: ...

# ocellus's layers under PyTorch's names.

class Conv2d(Layer):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Padding = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        """padding: an int, (ph, pw) or per side (top, bottom, left, right)."""

class MaxPool2d(Layer):
    def __init__(
        self, kernel_size: int, stride: Optional[int] = None, padding: int = 0, ceil_mode: bool = False
    ) -> None: ...

class AvgPool2d(Layer):
    def __init__(
        self,
        kernel_size: int,
        stride: Optional[int] = None,
        padding: int = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None: ...

class GlobalAvgPool(Layer):
    """(N, C, H, W) -> (N, C, 1, 1)."""

    def __init__(self) -> None: ...

class Flatten(Layer):
    def __init__(self) -> None: ...

class Linear(Layer):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None: ...

class ReLU(Layer):
    def __init__(self) -> None: ...

class LeakyReLU(Layer):
    def __init__(self, negative_slope: float = 0.01) -> None: ...

class Sigmoid(Layer):
    def __init__(self) -> None: ...

class Tanh(Layer):
    def __init__(self) -> None: ...

class Dropout(Layer):
    def __init__(self, p: float = 0.5) -> None: ...

class BatchNorm2d(Layer):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1) -> None: ...

class BatchNorm1d(Layer):
    """BatchNorm over flat features: (N, F) -> (N, F)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1) -> None: ...

class Softmax(Layer):
    """Softmax over the features of each row: (N, F) -> (N, F)."""

class SiLU(Layer):
    """y = x·sigmoid(x), element-wise."""

class Hardswish(Layer):
    """y = x·min(max(x + 3, 0), 6)/6, element-wise."""

class ConvTranspose2d(Layer):
    """(N, IC, H, W) -> (N, OC, (H − 1)·stride − 2·padding + dilation·(kernel_size − 1) + output_padding + 1, …)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int = 1,
    ) -> None: ...

class Upsample(Layer):
    """(N, C, H, W) -> (N, C, OH, OW): by whole scale_factor or to size; nearest or bilinear."""

    def __init__(
        self,
        size: Optional[Size] = None,
        scale_factor: Optional[Size] = None,
        mode: Literal["nearest", "bilinear"] = "nearest",
    ) -> None: ...

# Blocks: small networks acting as one layer; parameters carry the engine's names.

class Residual(Layer):
    """y = act(main(x) + shortcut(x)); copies of the given layers; main.0.weight, shortcut.0.weight, …."""

    def __init__(
        self, main: Path, shortcut: Optional[Path] = None, activation: BlockActivation = "relu"
    ) -> None: ...

class Concat(Layer):
    """Branches on the same input, joined along the channels; 0.0.weight, 1.0.weight, …."""

    def __init__(self, branches: Sequence[Path]) -> None: ...

class Dense(Layer):
    """DenseNet connectivity: layer i reads x and every earlier output; 0.0.weight, …."""

    def __init__(self, layers: Sequence[Path]) -> None: ...

class BasicBlock(Layer):
    """ResNet's basic block, as torchvision builds it."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None: ...

class Bottleneck(Layer):
    """ResNet's bottleneck block; expansion divides out_channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 4) -> None: ...

class DenseBlock(Layer):
    """DenseNet-BC's block: (N, C, H, W) -> (N, C + layers·growth, H, W)."""

    def __init__(self, in_channels: int, layers: int, growth: int) -> None: ...

class SqueezeExcite(Layer):
    """y = x · gate(x) per channel; gate.1.weight, gate.3.weight."""

    def __init__(
        self,
        channels: int,
        squeeze_channels: Optional[int] = None,
        reduction: int = 16,
        activation: Literal["relu", "sigmoid", "tanh", "silu", "hardswish"] = "relu",
    ) -> None: ...

class MBConv(Layer):
    """EfficientNet's inverted bottleneck with squeeze-and-excitation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int = 6,
        kernel_size: int = 3,
        stride: int = 1,
    ) -> None: ...

class SeparableConv2d(Layer):
    """A depthwise convolution then a pointwise 1×1 one; 0.weight, 1.weight."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Padding = 0,
        bias: bool = True,
    ) -> None: ...

# Gradient checking.

def finite_difference_gradient(
    func: Callable[[npt.NDArray[np.float64]], Union[float, npt.ArrayLike]],
    x: npt.ArrayLike,
    h: float = 1e-5,
) -> npt.NDArray[np.float64]:
    """Central differences (f(x + h·e_i) − f(x − h·e_i)) / 2h of func, its output summed."""

class TensorCheck:
    """The check of the input or one parameter: worst relative error, where, both values."""

    name: str
    shape: List[int]
    checked: int
    skipped: int
    max_rel_error: float
    worst_index: List[int]
    analytic: float
    numeric: float
    passed: bool

class GradCheckReport:
    """One TensorCheck per tensor (input first); report['weight'] picks one."""

    tensors: List[TensorCheck]
    passed: bool
    tolerance: float
    table: str
    def __getitem__(self, name: str) -> TensorCheck: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...

def gradcheck(
    model: Union[Layer, LayeredNeuralNetwork],
    x: ArrayLike,
    epsilon: float = 1e-2,
    tolerance: float = 1e-2,
    max_samples: int = 64,
    seed: int = 0,
    mode: Mode = "train",
) -> GradCheckReport:
    """Analytic gradients of Σ y·r (r random) against central differences, per tensor."""

# Training by hand.

def cross_entropy(
    logits: ArrayLike, targets: Union[Sequence[int], npt.NDArray[np.integer]], label_smoothing: float = 0.0
) -> Tuple[float, Array]:
    """Mean softmax cross-entropy and dL/dlogits."""

def mse_loss(prediction: ArrayLike, target: ArrayLike) -> Tuple[float, Array]:
    """Mean squared error and dL/dprediction."""

class Optimizer:
    """step(model) updates a layer's or a network's parameters from their gradients."""

    lr: float
    @property
    def steps(self) -> int: ...
    def step(self, model: Union[Layer, LayeredNeuralNetwork]) -> None: ...

class SGD(Optimizer):
    def __init__(
        self, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False
    ) -> None: ...

class Adam(Optimizer):
    def __init__(
        self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0
    ) -> None: ...

class AdamW(Optimizer):
    def __init__(
        self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01
    ) -> None: ...

# Training runs, as `ocellus train` keeps them.

import pathlib
from types import ModuleType

PathLike = Union[str, "os.PathLike[str]"]
ModelArg = Union[str, PathLike, LayeredNeuralNetwork]
DataArg = Union[str, PathLike, Tuple[ArrayLike, ArrayLike]]

class Run:
    """A run directory: the trained model, its settings and metrics."""

    @staticmethod
    def load(dir: PathLike) -> Run: ...
    @property
    def dir(self) -> pathlib.Path: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def epochs(self) -> int: ...
    @property
    def config(self) -> Dict[str, object]: ...
    @property
    def architecture(self) -> str: ...
    @property
    def metrics(self) -> List[Dict[str, float]]: ...
    @property
    def diagnostics(self) -> List[Dict[str, object]]:
        """Gradient flow per diagnosed step (train with diagnostics_every); [] without."""
    def evaluate(self, data: Optional[Tuple[ArrayLike, ArrayLike]] = None) -> Dict[str, object]:
        """accuracy, loss, confusion (K, K) int64, predictions (N,) on the test set."""
    def predict(self, images: ArrayLike) -> npt.NDArray[np.float32]:
        """Class probabilities (N, K) for images in [0, 1], normalised as the run's data."""
    def feature_maps(self, image: ArrayLike, activations: bool = False) -> Dict[str, Array]: ...
    def filters(self, layer: Optional[str] = None) -> Array: ...
    def saliency(self, image: ArrayLike, target: Optional[int] = None) -> Array: ...
    def save_feature_maps(self, image: ArrayLike, path: PathLike, max_maps: int = 16) -> None: ...
    def save_filters(self, path: PathLike, layer: Optional[str] = None) -> None: ...
    def report(self, path: Optional[PathLike] = None) -> str:
        """The HTML report, as `ocellus report` writes it."""
    def _repr_html_(self) -> str: ...

def train(
    model: ModelArg = "lenet5",
    data: DataArg = "patterns",
    *,
    data_dir: Optional[PathLike] = None,
    image_size: Optional[Tuple[int, int, int]] = None,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw",
    lr: float = 1e-3,
    weight_decay: Optional[float] = None,
    momentum: float = 0.9,
    schedule: Literal["constant", "step", "cosine", "onecycle"] = "constant",
    seed: int = 0,
    val_fraction: float = 0.0,
    augment: bool = False,
    label_smoothing: float = 0.0,
    limit_train: Optional[int] = None,
    out: Optional[PathLike] = None,
    classes: Optional[Sequence[str]] = None,
    test_data: Optional[Tuple[ArrayLike, ArrayLike]] = None,
    diagnostics_every: Optional[int] = None,
    verbose: bool = True,
) -> Run:
    """Trains as `ocellus train` does, into a run directory; Ctrl-C keeps the last checkpoint."""

class Comparison:
    """Models trained under one budget and measured alike (`ocellus compare`)."""

    @property
    def rows(self) -> List[Dict[str, object]]: ...
    @property
    def shifts(self) -> List[int]: ...
    def as_dict(self) -> Dict[str, object]: ...

def compare(
    models: Sequence[Union[str, PathLike]] = ("lenet5", "mlp-lenet5"),
    data: DataArg = "patterns",
    *,
    data_dir: Optional[PathLike] = None,
    image_size: Optional[Tuple[int, int, int]] = None,
    epochs: int = 5,
    batch_size: int = 64,
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw",
    lr: float = 1e-3,
    seed: int = 0,
    limit_train: Optional[int] = None,
    max_shift: int = 4,
    out: Optional[PathLike] = None,
    classes: Optional[Sequence[str]] = None,
    test_data: Optional[Tuple[ArrayLike, ArrayLike]] = None,
    verbose: bool = True,
) -> Comparison:
    """CNN against fully connected networks: accuracy, cost, and accuracy under shifts."""

class Summary:
    """The layer table: rows, totals; str() and _repr_html_() show it."""

    @property
    def rows(self) -> List[Dict[str, object]]: ...
    @property
    def total_params(self) -> int: ...
    @property
    def total_macs(self) -> int: ...
    @property
    def input(self) -> List[int]: ...

def summary(
    model: Union[str, PathLike, Run, LayeredNeuralNetwork], input: Optional[Tuple[int, int, int]] = None
) -> Summary:
    """Output shapes, parameters, multiply-adds, receptive fields per layer (`ocellus summary`)."""

datasets: ModuleType
