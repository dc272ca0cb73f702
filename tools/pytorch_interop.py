#!/usr/bin/env python3
"""Checks that ocellus model files and PyTorch modules are interchangeable, both ways.

    pip install torch safetensors numpy
    ocellus train --model lenet5 --data fashion-mnist --epochs 1 --limit-train 2000 --out runs/lenet5-fashion-mnist
    ocellus train --model resnet20 --data fashion-mnist --epochs 1 --limit-train 2000 --out runs/resnet20-fashion-mnist
    ocellus train --model tools/pytorch_interop_layers.toml --epochs 1 --limit-train 512 --out runs/every-layer
    python3 tools/pytorch_interop.py runs/lenet5-fashion-mnist runs/resnet20-fashion-mnist runs/every-layer

For every model given (a run directory or a model.safetensors file):

1. ocellus -> PyTorch. The architecture stored in the file's metadata ("architecture", the
   JSON of ocellus::arch::Architecture) is rebuilt as an nn.Sequential with the same layer
   indices, so the state_dict names agree (`0.weight`, `3.main.0.weight`, ...), and the
   file is loaded with load_state_dict(strict=True). Both frameworks then compute logits
   for the same real inputs (the first test images of an IDX data set, normalised with the
   file's "normalization" metadata) in evaluation mode.
2. PyTorch -> ocellus. A fresh PyTorch model of the same architecture (its own random
   initialisation; BatchNorm affine parameters and running statistics made non-trivial)
   is saved with its state_dict and the metadata ocellus expects as an ocellus
   model.safetensors, and ocellus's logits for it are compared with PyTorch's.

ocellus's logits come from the example program crates/train/examples/logits.rs, built and
run with cargo (or given with --logits-bin). The script prints the largest absolute
difference and the largest difference relative to the largest logit, and exits with status
1 if any exceeds the tolerance. Neither ocellus's tests nor CI need PyTorch: only this
script does.

Layers map one to one: conv2d -> nn.Conv2d, convtranspose2d -> nn.ConvTranspose2d,
linear -> nn.Linear, maxpool2d/avgpool2d -> nn.MaxPool2d/nn.AvgPool2d, globalavgpool ->
nn.AdaptiveAvgPool2d(1), upsample -> nn.Upsample (nearest, or bilinear with
align_corners=False), flatten -> nn.Flatten, dropout, batchnorm2d/1d, relu, leakyrelu,
sigmoid, tanh, silu, hardswish, softmax (over dim 1); residual/basicblock/bottleneck/mbconv
-> Residual (below) with submodules `main`, `shortcut` and `act`; concat -> Concat and
dense/denseblock -> Dense (nn.ModuleLists of nn.Sequentials: `4.1.0.weight` is branch or
layer 1, module 0); scale/squeezeexcite -> Scale with its `gate`; separableconv2d ->
nn.Sequential(depthwise, pointwise).
nn.Conv2d pads symmetrically only: a conv2d with per-side padding [top, bottom, left, right]
that is not symmetric becomes PerSidePadConv2d, an nn.Conv2d that zero-pads its input with
F.pad first. It holds the same `weight` and `bias` as nn.Conv2d, so names still match; the
script says when it uses one.
"""
import argparse
import gzip
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Relative to the largest |logit|: float32 sums taken in a different order differ by a
# few ulps per operation; 1e-5 of the logits' scale leaves room for that and nothing else.
RELATIVE_TOLERANCE = 1e-5


class Residual(nn.Module):
    """y = act(main(x) + shortcut(x)), ocellus's residual block, with the same state names."""

    def __init__(self, main, shortcut, act):
        super().__init__()
        self.main = main
        self.shortcut = shortcut  # nn.Sequential, or nn.Identity for the identity
        self.act = act  # nn.ReLU or nn.Identity

    def forward(self, x):
        return self.act(self.main(x) + self.shortcut(x))


class Concat(nn.ModuleList):
    """y = [B0(x), B1(x), ...] along channels: ocellus's concat, branches named 0, 1, ..."""

    def forward(self, x):
        return torch.cat([branch(x) for branch in self], dim=1)


class Dense(nn.ModuleList):
    """ocellus's dense block: each layer reads the input and every earlier output joined
    along channels; the block gives all of them joined."""

    def forward(self, x):
        features = x
        for layer in self:
            features = torch.cat([features, layer(features)], dim=1)
        return features


class Scale(nn.Module):
    """y = x * gate(x), one gate value per image and channel (squeeze-and-excitation)."""

    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def forward(self, x):
        return x * self.gate(x).reshape(x.shape[0], x.shape[1], 1, 1)


ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "none": nn.Identity,
}


def activation(kind, name):
    if name not in ACTIVATIONS:
        sys.exit(f"{kind}: activation '{name}' is not one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def plain_conv(ic, oc, k, stride=1, groups=1):
    """A k×k convolution keeping the size (padding k // 2), without bias."""
    return nn.Conv2d(ic, oc, k, stride=stride, padding=k // 2, groups=groups, bias=False)


def squeeze_excitation(channels, squeeze, act):
    """ocellus's Scale::squeeze_excitation, i.e. torchvision's SqueezeExcitation."""
    return Scale(
        nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeeze, 1),
            act,
            nn.Conv2d(squeeze, channels, 1),
            nn.Sigmoid(),
        )
    )


def bottleneck(channels, out_channels, stride, expansion):
    """ocellus's Residual::bottleneck, i.e. torchvision's Bottleneck."""
    width = out_channels // expansion
    main = nn.Sequential(
        plain_conv(channels, width, 1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        plain_conv(width, width, 3, stride),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        plain_conv(width, out_channels, 1),
        nn.BatchNorm2d(out_channels),
    )
    if channels == out_channels and stride == 1:
        shortcut = nn.Identity()
    else:
        shortcut = nn.Sequential(plain_conv(channels, out_channels, 1, stride), nn.BatchNorm2d(out_channels))
    return Residual(main, shortcut, nn.ReLU())


def dense_block(channels, layers, growth):
    """ocellus's Dense::bottleneck_layers, i.e. torchvision's _DenseBlock (DenseNet-BC)."""
    return Dense(
        nn.Sequential(
            nn.BatchNorm2d(channels + l * growth),
            nn.ReLU(),
            plain_conv(channels + l * growth, 4 * growth, 1),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(),
            plain_conv(4 * growth, growth, 3),
        )
        for l in range(layers)
    )


def mb_conv(channels, out_channels, expand_ratio, kernel, stride):
    """ocellus's mbconv, i.e. torchvision's MBConv without stochastic depth."""
    wide = channels * expand_ratio
    layers = []
    if expand_ratio != 1:
        layers += [plain_conv(channels, wide, 1), nn.BatchNorm2d(wide), nn.SiLU()]
    layers += [
        plain_conv(wide, wide, kernel, stride, groups=wide),
        nn.BatchNorm2d(wide),
        nn.SiLU(),
        squeeze_excitation(wide, max(1, channels // 4), nn.SiLU()),
        plain_conv(wide, out_channels, 1),
        nn.BatchNorm2d(out_channels),
    ]
    main = nn.Sequential(*layers)
    if stride == 1 and channels == out_channels:
        return Residual(main, nn.Identity(), nn.Identity())
    return main


class PerSidePadConv2d(nn.Conv2d):
    """nn.Conv2d after F.pad with (left, right, top, bottom) zeros: asymmetric padding,
    which nn.Conv2d's `padding` cannot express, with nn.Conv2d's parameter names."""

    def __init__(self, *args, per_side, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        top, bottom, left, right = per_side
        self.pad = (left, right, top, bottom)

    def forward(self, x):
        return super().forward(F.pad(x, self.pad))


def pair(size):
    """An ocellus Size2 (`3` or `[3, 5]`) as (height, width)."""
    return (size, size) if isinstance(size, int) else tuple(size)


def conv2d(spec, channels, notes):
    kwargs = dict(
        kernel_size=pair(spec["kernel"]),
        stride=pair(spec.get("stride", 1)),
        dilation=pair(spec.get("dilation", 1)),
        groups=spec.get("groups", 1),
        bias=spec.get("bias", True),
    )
    padding = spec.get("padding", 0)
    if isinstance(padding, int):
        padding = [padding] * 4
    elif len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    top, bottom, left, right = padding
    if top == bottom and left == right:
        return nn.Conv2d(channels, spec["out_channels"], padding=(top, left), **kwargs)
    notes.append(
        f"conv2d with per-side padding {padding} (top, bottom, left, right): built as "
        "PerSidePadConv2d (F.pad, then nn.Conv2d); state_dict names unchanged"
    )
    return PerSidePadConv2d(channels, spec["out_channels"], per_side=padding, **kwargs)


def pool_args(spec):
    kernel = pair(spec["kernel"])
    stride = pair(spec["stride"]) if spec.get("stride") is not None else kernel
    padding = pair(spec["padding"]) if spec.get("padding") is not None else (0, 0)
    return dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=spec.get("ceil_mode", False))


def batchnorm_args(spec):
    """eps, momentum ("none" is PyTorch's None), affine and track_running_stats, with
    PyTorch's defaults where the spec leaves them out."""
    momentum = spec.get("momentum", 0.1)
    return dict(
        eps=spec.get("eps", 1e-5),
        momentum=None if momentum in (None, "none") else momentum,
        affine=spec.get("affine", True),
        track_running_stats=spec.get("track_running_stats", True),
    )


def basic_block(channels, out_channels, stride):
    """ocellus's Residual::basic_block, i.e. torchvision's BasicBlock."""

    def conv(ic, oc, k, s, p):
        return nn.Conv2d(ic, oc, k, stride=s, padding=p, bias=False)

    main = nn.Sequential(
        conv(channels, out_channels, 3, stride, 1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        conv(out_channels, out_channels, 3, 1, 1),
        nn.BatchNorm2d(out_channels),
    )
    if channels == out_channels and stride == 1:
        shortcut = nn.Identity()
    else:
        shortcut = nn.Sequential(conv(channels, out_channels, 1, stride, 0), nn.BatchNorm2d(out_channels))
    return Residual(main, shortcut, nn.ReLU())


def build_layer(spec, shape, notes):
    """The PyTorch module for one ocellus LayerSpec whose input has `shape` (N, ...)."""
    kind = spec["type"]
    if kind == "conv2d":
        return conv2d(spec, shape[1], notes)
    if kind == "convtranspose2d":
        return nn.ConvTranspose2d(
            shape[1],
            spec["out_channels"],
            pair(spec["kernel"]),
            stride=pair(spec.get("stride", 1)),
            padding=pair(spec.get("padding", 0)),
            output_padding=pair(spec.get("output_padding", 0)),
            dilation=pair(spec.get("dilation", 1)),
            groups=spec.get("groups", 1),
            bias=spec.get("bias", True),
        )
    if kind == "linear":
        return nn.Linear(shape[1], spec["out_features"], bias=spec.get("bias", True))
    if kind == "flatten":
        return nn.Flatten()
    if kind == "relu":
        return nn.ReLU()
    if kind == "leakyrelu":
        return nn.LeakyReLU(spec.get("negative_slope", 0.01))
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "tanh":
        return nn.Tanh()
    if kind == "silu":
        return nn.SiLU()
    if kind == "hardswish":
        return nn.Hardswish()
    if kind == "softmax":
        return nn.Softmax(dim=1)
    if kind == "maxpool2d":
        return nn.MaxPool2d(**pool_args(spec))
    if kind == "avgpool2d":
        return nn.AvgPool2d(**pool_args(spec), count_include_pad=spec.get("count_include_pad", True))
    if kind == "globalavgpool":
        return nn.AdaptiveAvgPool2d(1)
    if kind == "upsample":
        mode = spec.get("mode", "nearest")
        corners = dict(align_corners=False) if mode == "bilinear" else {}
        if spec.get("size") is not None:
            return nn.Upsample(size=pair(spec["size"]), mode=mode, **corners)
        return nn.Upsample(scale_factor=tuple(float(s) for s in pair(spec["scale"])), mode=mode, **corners)
    if kind == "dropout":
        return nn.Dropout(spec.get("p", 0.5))
    if kind == "batchnorm2d":
        return nn.BatchNorm2d(shape[1], **batchnorm_args(spec))
    if kind == "batchnorm1d":
        return nn.BatchNorm1d(shape[1], **batchnorm_args(spec))
    if kind == "residual":
        main = build_sequential(spec["main"], shape, notes)
        shortcut = spec.get("shortcut")
        shortcut = nn.Identity() if shortcut is None else build_sequential(shortcut, shape, notes)
        return Residual(main, shortcut, activation(kind, spec.get("activation", "relu")))
    if kind == "basicblock":
        return basic_block(shape[1], spec["out_channels"], spec.get("stride", 1))
    if kind == "bottleneck":
        return bottleneck(shape[1], spec["out_channels"], spec.get("stride", 1), spec.get("expansion", 4))
    if kind == "concat":
        return Concat(build_sequential(branch, shape, notes) for branch in spec["branches"])
    if kind == "dense":
        layers, features = [], tuple(shape)
        for specs in spec["layers"]:
            layer = build_sequential(specs, features, notes)
            with torch.no_grad():
                grown = layer.eval()(torch.zeros(features)).shape[1]
            features = (features[0], features[1] + grown, *features[2:])
            layers.append(layer)
        return Dense(layers)
    if kind == "denseblock":
        return dense_block(shape[1], spec["layers"], spec["growth"])
    if kind == "scale":
        return Scale(build_sequential(spec["gate"], shape, notes))
    if kind == "squeezeexcite":
        squeeze = spec.get("squeeze_channels") or max(1, shape[1] // spec.get("reduction", 16))
        return squeeze_excitation(shape[1], squeeze, activation(kind, spec.get("activation", "relu")))
    if kind == "separableconv2d":
        c, bias = shape[1], spec.get("bias", True)
        depthwise = conv2d(dict(spec, out_channels=c, groups=c, bias=bias), c, notes)
        return nn.Sequential(depthwise, nn.Conv2d(c, spec["out_channels"], 1, bias=bias))
    if kind == "mbconv":
        return mb_conv(
            shape[1], spec["out_channels"], spec.get("expand_ratio", 6), spec.get("kernel", 3), spec.get("stride", 1)
        )
    sys.exit(f"layer type '{kind}' has no PyTorch equivalent in this script; add it to build_layer")


def build_sequential(specs, shape, notes):
    """nn.Sequential of the layers in order; each input size follows from the previous
    layer's output, found by running it on zeros."""
    layers = []
    for spec in specs:
        layer = build_layer(spec, shape, notes)
        with torch.no_grad():
            shape = tuple(layer.eval()(torch.zeros(shape)).shape)
        layers.append(layer)
    return nn.Sequential(*layers)


def build_model(architecture, notes):
    return build_sequential(architecture["layers"], (2, *architecture["input"]), notes)


def read_idx_images(data_dir, count):
    """The first `count` test images of an IDX data set, (count, 1, 28, 28) in [0, 1]."""
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"):
        path = pathlib.Path(data_dir) / name
        if path.is_file():
            raw = path.read_bytes()
            data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            magic, n, rows, cols = np.frombuffer(data[:16], dtype=">u4")
            if magic != 0x803:
                sys.exit(f"{path}: not an IDX images file (magic {magic:#x})")
            pixels = np.frombuffer(data[16:], dtype=np.uint8)[: count * rows * cols]
            return torch.from_numpy(pixels.astype(np.float32) / 255.0).reshape(-1, 1, rows, cols)
    sys.exit(f"{data_dir}: no t10k-images-idx3-ubyte(.gz); point --data-dir to an IDX data set")


def inputs_for(architecture, normalization, args):
    """Real test images normalised as ocellus does, or N(0, 1) noise if the model does not
    take 1x28x28 images."""
    if list(architecture["input"]) == [1, 28, 28]:
        x, source = read_idx_images(args.data_dir, args.images), f"first {args.images} test images of {args.data_dir}"
    else:
        generator = torch.Generator().manual_seed(args.seed)
        x = torch.rand(args.images, *architecture["input"], generator=generator)
        source = f"{args.images} uniform random images (the model takes {architecture['input']}, not 1x28x28)"
    mean = torch.tensor(normalization["mean"]).reshape(1, -1, 1, 1)
    std = torch.tensor(normalization["std"]).reshape(1, -1, 1, 1)
    return ((x - mean) / std).contiguous(), source


def ocellus_logits(model_path, x, work, args):
    inputs, output = work / "inputs.safetensors", work / "logits.safetensors"
    save_file({"x": x}, inputs)
    command = [*logits_command(args), str(model_path), str(inputs), str(output)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"ocellus failed on {model_path}:\n{result.stderr.strip()}")
    return load_file(output)["logits"]


def logits_command(args):
    if args.logits_bin:
        return [args.logits_bin]
    return ["cargo", "run", "--quiet", "--release", "-p", "ocellus-train", "--example", "logits", "--"]


def compare(name, reference, other):
    """Prints and returns (max |a - b|, max |a - b| / max |a|, argmax agreement)."""
    diff = (reference - other).abs().max().item()
    relative = diff / reference.abs().max().item()
    agree = (reference.argmax(1) == other.argmax(1)).float().mean().item()
    ok = relative <= RELATIVE_TOLERANCE and math.isfinite(diff)
    print(
        f"  {name:<20} max |logit| {reference.abs().max().item():8.3f}   max abs diff {diff:.2e}   "
        f"relative {relative:.2e}   same argmax {100 * agree:.1f}%   {'ok' if ok else 'FAILED'}"
    )
    return ok


def randomize_for_test(model, x):
    """Non-trivial BatchNorm: random affine parameters, and running statistics (and
    num_batches_tracked) from a few training-mode passes over the inputs."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
        model.train()
        for _ in range(3):
            model(x)
    model.eval()


def check_model(path, args, work):
    model_file = path / "model.safetensors" if path.is_dir() else path
    with safe_open(model_file, "pt") as f:
        metadata = f.metadata() or {}
    if "architecture" not in metadata:
        sys.exit(f"{model_file}: no 'architecture' in the metadata: not an ocellus model file")
    architecture = json.loads(metadata["architecture"])
    normalization = json.loads(metadata["normalization"])
    name = architecture.get("name") or model_file.parent.name
    notes = []

    # ocellus -> PyTorch: the trained weights, loaded strictly.
    model = build_model(architecture, notes)
    model.load_state_dict(load_file(model_file), strict=True)
    model.eval()
    x, source = inputs_for(architecture, normalization, args)
    print(f"{name} ({model_file}, epoch {metadata.get('epoch')}), on the {source}")
    for note in sorted(set(notes)):
        print(f"  note: {note}")
    with torch.no_grad():
        expected = model(x)
    ok = compare("ocellus -> PyTorch", expected, ocellus_logits(model_file, x, work, args))

    # PyTorch -> ocellus: a fresh PyTorch model saved as an ocellus model file.
    torch.manual_seed(args.seed)
    fresh = build_model(architecture, [])
    randomize_for_test(fresh, x)
    exported = work / f"{name}-from-pytorch.safetensors"
    save_file(
        {k: v.contiguous() for k, v in fresh.state_dict().items()},
        exported,
        metadata={
            "architecture": json.dumps(architecture, separators=(",", ":")),
            "normalization": metadata["normalization"],
            "classes": metadata["classes"],
            "epoch": "0",
            "format": "ocellus-model-1",
        },
    )
    with torch.no_grad():
        expected = fresh(x)
    ok &= compare("PyTorch -> ocellus", expected, ocellus_logits(exported, x, work, args))
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=pathlib.Path, help="run directories or model.safetensors files")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist", help="IDX data set for the inputs")
    parser.add_argument("--images", type=int, default=256, help="how many inputs to compare on")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh PyTorch models")
    parser.add_argument("--logits-bin", help="a built logits example (default: cargo run --release)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print(f"torch {torch.__version__}; tolerance: max abs diff <= {RELATIVE_TOLERANCE:g} x max |logit|")
    ok = True
    with tempfile.TemporaryDirectory() as work:
        for path in args.models:
            ok &= check_model(path, args, pathlib.Path(work))
    if not ok:
        sys.exit("some logits differ by more than the tolerance")


if __name__ == "__main__":
    main()
