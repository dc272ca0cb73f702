#!/usr/bin/env python3
"""Generates the PyTorch reference vectors that ocellus's tests compare against.

    pip install torch safetensors
    python3 tools/pytorch_reference.py          # writes crates/engine/tests/reference/*.safetensors
    python3 tools/pytorch_reference.py pool     # writes pool.safetensors only

The files: conv2d, linear, pool, activation, batchnorm, smallcnn, and, added later,
silu_hardswish, conv_transpose2d and upsample.

Each file holds several cases. Tensors are named "<case>.<tensor>" (e.g. "c3.dweight"); the
file's metadata maps each case name to a JSON object with its settings. Every layer case stores
the input x, the parameters, the output y, a random upstream gradient dy, and the gradients
PyTorch computes for the input and every parameter under the loss sum(y * dy).

Every case is computed on every run, in the same order, so the random draws stay the same;
naming files on the command line writes only those, leaving the others' bytes as they are
(PyTorch's CPU kernels can round differently from one machine to the next). Cases added
after the first ones draw from their own seed (fresh_rng), so adding one does not move
the draws of those that follow.

Losses, optimisers and schedules have their own generator, tools/pytorch_optim_loss.py.
The tests never need PyTorch: only these scripts do, and their output is committed.
"""
import contextlib
import json
import math
import pathlib
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/engine/tests/reference"
ONLY = set(sys.argv[1:])
torch.manual_seed(0)
torch.set_default_dtype(torch.float32)


@contextlib.contextmanager
def fresh_rng(seed):
    """Draws from their own seed, leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Writer:
    """Collects the cases of one file."""

    def __init__(self, name):
        self.name, self.tensors, self.meta = name, {}, {}

    def case(self, case, config, **tensors):
        self.meta[case] = json.dumps(config)
        for key, value in tensors.items():
            self.tensors[f"{case}.{key}"] = value.detach().contiguous().clone().float()

    def save(self):
        if ONLY and self.name not in ONLY:
            print(f"{self.name}: {len(self.meta)} cases, not written")
            return
        OUT.mkdir(parents=True, exist_ok=True)
        save_file(self.tensors, OUT / f"{self.name}.safetensors", metadata=self.meta)
        size = (OUT / f"{self.name}.safetensors").stat().st_size
        print(f"{self.name}: {len(self.meta)} cases, {size / 1024:.0f} KiB")


def layer_case(writer, case, config, module, x, extra=None, params=None):
    """Runs module on x, backpropagates sum(y * dy), stores x, params, y, dy and every gradient.

    `module` is an nn.Module or any callable; `params` defaults to the module's named parameters.
    """
    x = x.clone().requires_grad_(True)
    params = dict(module.named_parameters()) if params is None else params
    y = module(x)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    tensors = {"x": x, "y": y, "dy": dy, "dx": x.grad}
    for name, p in params.items():
        tensors[name] = p
        tensors["d" + name] = p.grad
    tensors.update(extra or {})
    writer.case(case, config, **tensors)


def conv_cases():
    w = Writer("conv2d")
    configs = [
        dict(n=2, ic=3, oc=4, h=7, w=7, k=(3, 3), s=(1, 1), p=(0, 0, 0, 0), d=(1, 1), g=1, bias=True),
        dict(n=1, ic=1, oc=1, h=5, w=5, k=(3, 3), s=(1, 1), p=(1, 1, 1, 1), d=(1, 1), g=1, bias=True),
        dict(n=3, ic=8, oc=8, h=9, w=9, k=(3, 3), s=(2, 2), p=(1, 1, 1, 1), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=3, oc=5, h=10, w=11, k=(3, 3), s=(3, 3), p=(2, 2, 2, 2), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=4, oc=6, h=8, w=8, k=(1, 1), s=(1, 1), p=(0, 0, 0, 0), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=4, oc=6, h=8, w=8, k=(1, 1), s=(2, 2), p=(0, 0, 0, 0), d=(1, 1), g=1, bias=False),
        dict(n=2, ic=3, oc=4, h=9, w=7, k=(5, 3), s=(1, 2), p=(2, 2, 1, 1), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=3, oc=4, h=8, w=8, k=(2, 4), s=(1, 1), p=(0, 1, 2, 1), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=3, oc=4, h=9, w=9, k=(3, 3), s=(1, 1), p=(2, 2, 2, 2), d=(2, 2), g=1, bias=True),
        dict(n=2, ic=4, oc=6, h=7, w=7, k=(3, 3), s=(1, 1), p=(1, 1, 1, 1), d=(1, 1), g=2, bias=True),
        dict(n=2, ic=32, oc=64, h=6, w=6, k=(3, 3), s=(1, 1), p=(1, 1, 1, 1), d=(1, 1), g=1, bias=True),
    ]
    for i, c in enumerate(configs):
        conv = nn.Conv2d(c["ic"], c["oc"], c["k"], stride=c["s"], dilation=c["d"], groups=c["g"], bias=c["bias"])
        top, bottom, left, right = c["p"]
        # Per-side zero padding (nn.Conv2d pads symmetrically only), then the convolution.
        padded_conv = lambda x, conv=conv, pad=(left, right, top, bottom): conv(F.pad(x, pad))
        layer_case(w, f"c{i}", c, padded_conv, torch.randn(c["n"], c["ic"], c["h"], c["w"]),
                   params=dict(conv.named_parameters()))
    w.save()


def linear_cases():
    w = Writer("linear")
    for i, (n, fin, fout) in enumerate([(3, 12, 5), (1, 1, 1), (8, 160, 40)]):
        layer_case(w, f"l{i}", dict(n=n, fin=fin, fout=fout), nn.Linear(fin, fout), torch.randn(n, fin))
    w.save()


def pool_cases():
    w = Writer("pool")
    # (kind, kernel, stride, padding, input shape)
    configs = [
        ("max", (2, 2), (2, 2), (0, 0), (2, 3, 8, 8)),
        ("max", (3, 3), (2, 2), (1, 1), (2, 3, 9, 9)),   # overlapping windows, padding
        ("max", (3, 3), (1, 1), (0, 0), (1, 2, 6, 7)),   # stride 1, heavy overlap
        ("max", (2, 3), (2, 1), (1, 0), (2, 2, 7, 6)),   # non-square, kernel != stride
        ("avg", (2, 2), (2, 2), (0, 0), (2, 3, 8, 8)),
        ("avg", (3, 3), (2, 2), (1, 1), (2, 3, 9, 9)),   # count_include_pad=True (default)
        ("avg", (2, 3), (1, 2), (0, 1), (2, 2, 6, 7)),
        ("gap", None, None, None, (3, 4, 5, 6)),
    ]
    for i, (kind, k, s, p, shape) in enumerate(configs):
        if kind == "max":
            module = nn.MaxPool2d(k, s, p)
        elif kind == "avg":
            module = nn.AvgPool2d(k, s, p)
        else:
            module = nn.AdaptiveAvgPool2d(1)
        layer_case(w, f"p{i}", dict(kind=kind, k=k, s=s, p=p), module, torch.randn(*shape))
    # ceil_mode and count_include_pad: (name, kind, kernel, stride, padding, input shape,
    # ceil_mode, count_include_pad)
    options = [
        ("max_ceil_2x2", "max", (2, 2), (2, 2), (0, 0), (2, 3, 7, 7), True, True),
        ("max_ceil_pad", "max", (3, 3), (2, 2), (1, 1), (2, 2, 8, 8), True, True),
        ("max_ceil_nonsquare", "max", (3, 2), (2, 3), (1, 0), (1, 3, 6, 8), True, True),
        ("max_ceil_window_over_image", "max", (3, 3), (2, 2), (0, 0), (1, 2, 2, 2), True, True),
        ("avg_ceil_2x2", "avg", (2, 2), (2, 2), (0, 0), (2, 3, 7, 7), True, True),
        ("avg_ceil_pad", "avg", (3, 3), (2, 2), (1, 1), (2, 2, 8, 8), True, True),
        ("avg_ceil_pad_not_counted", "avg", (3, 3), (2, 2), (1, 1), (2, 2, 8, 8), True, False),
        ("avg_pad_not_counted", "avg", (3, 3), (2, 2), (1, 1), (2, 3, 9, 9), False, False),
        ("avg_nonsquare_not_counted", "avg", (2, 3), (1, 2), (0, 1), (2, 2, 6, 7), False, False),
        ("avg_ceil_nonsquare_pad", "avg", (3, 2), (2, 3), (1, 1), (1, 3, 6, 8), True, True),
        ("avg_ceil_window_over_image", "avg", (3, 3), (2, 2), (0, 0), (1, 2, 2, 2), True, True),
    ]
    with fresh_rng(1):
        for name, kind, k, s, p, shape, ceil_mode, count_include_pad in options:
            if kind == "max":
                module = nn.MaxPool2d(k, s, p, ceil_mode=ceil_mode)
            else:
                module = nn.AvgPool2d(k, s, p, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
            config = dict(kind=kind, k=k, s=s, p=p, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
            layer_case(w, name, config, module, torch.randn(*shape))
    w.save()


def activation_cases():
    w = Writer("activation")
    modules = {
        "relu": nn.ReLU(),
        "leakyrelu": nn.LeakyReLU(0.01),
        "leakyrelu_0.2": nn.LeakyReLU(0.2),
        "sigmoid": nn.Sigmoid(),
        "tanh": nn.Tanh(),
        "softmax": nn.Softmax(dim=1),
    }
    for name, module in modules.items():
        shape = (4, 7) if name == "softmax" else (2, 3, 4, 5)
        x = torch.randn(*shape) * 3
        # Off the kink at 0, where the derivative is undefined.
        x = torch.where(x.abs() < 0.05, x + 0.1 * torch.sign(x + 1e-9), x)
        slope = 0.2 if name.endswith("0.2") else 0.01
        layer_case(w, name, dict(kind=name.split("_")[0], negative_slope=slope), module, x)
    w.save()


def silu_hardswish_cases():
    """SiLU and Hardswish, with the points where their formulas change hands written in:
    Hardswish's kinks at exactly -3 and 3 (PyTorch's derivative takes the outer piece's
    value there: 0 and 1), 0, and SiLU far out where e^-x overflows."""
    w = Writer("silu_hardswish")
    special = torch.tensor([-3.0, 3.0, 0.0, -2.999, 2.999, -3.001, 3.001, -100.0, 100.0, -20.0, 20.0])
    for name, module in [("silu", nn.SiLU()), ("hardswish", nn.Hardswish())]:
        for shape in [(2, 3, 4, 5), (4, 7)]:
            x = torch.randn(*shape) * 3
            x.view(-1)[: len(special)] = special
            layer_case(w, f"{name}_{len(shape)}d", dict(kind=name), module, x)
    w.save()


def conv_transpose_cases():
    """nn.ConvTranspose2d: strides 1 to 3, padding, output padding (also at or above the
    stride, which a larger dilation allows), groups (depthwise too), dilation, non-square
    kernels, with and without bias; sizes that reach the convolution kernels' 1x1, direct,
    tiled and single-image paths."""
    w = Writer("conv_transpose2d")
    configs = [
        dict(n=2, ic=4, oc=3, h=5, w=5, k=(3, 3), s=(1, 1), p=(0, 0), op=(0, 0), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=4, oc=3, h=4, w=5, k=(3, 3), s=(2, 2), p=(1, 1), op=(1, 1), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=3, oc=2, h=3, w=4, k=(2, 4), s=(3, 3), p=(1, 2), op=(2, 1), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=4, oc=6, h=4, w=4, k=(3, 3), s=(2, 2), p=(1, 1), op=(1, 1), d=(1, 1), g=2, bias=True),
        dict(n=2, ic=4, oc=4, h=5, w=5, k=(3, 3), s=(2, 2), p=(1, 1), op=(0, 0), d=(1, 1), g=4, bias=False),
        dict(n=2, ic=3, oc=4, h=4, w=5, k=(3, 3), s=(2, 1), p=(2, 1), op=(1, 0), d=(2, 2), g=1, bias=True),
        dict(n=2, ic=2, oc=3, h=4, w=4, k=(2, 3), s=(1, 2), p=(0, 1), op=(2, 1), d=(3, 2), g=1, bias=True),
        dict(n=2, ic=3, oc=5, h=5, w=4, k=(5, 3), s=(1, 2), p=(2, 1), op=(0, 1), d=(1, 1), g=1, bias=False),
        dict(n=2, ic=4, oc=6, h=4, w=5, k=(3, 3), s=(2, 2), p=(2, 2), op=(1, 1), d=(2, 2), g=2, bias=True),
        dict(n=3, ic=16, oc=8, h=6, w=6, k=(4, 4), s=(2, 2), p=(1, 1), op=(0, 0), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=5, oc=3, h=4, w=6, k=(1, 1), s=(1, 1), p=(0, 0), op=(0, 0), d=(1, 1), g=1, bias=True),
        dict(n=2, ic=5, oc=3, h=4, w=6, k=(1, 1), s=(2, 2), p=(0, 0), op=(1, 0), d=(1, 1), g=1, bias=True),
        dict(n=1, ic=32, oc=16, h=12, w=12, k=(3, 3), s=(1, 1), p=(1, 1), op=(0, 0), d=(1, 1), g=1, bias=True),
    ]
    for i, c in enumerate(configs):
        module = nn.ConvTranspose2d(c["ic"], c["oc"], c["k"], stride=c["s"], padding=c["p"],
                                    output_padding=c["op"], dilation=c["d"], groups=c["g"], bias=c["bias"])
        layer_case(w, f"t{i}", c, module, torch.randn(c["n"], c["ic"], c["h"], c["w"]))
    w.save()


def upsample_cases():
    """nn.Upsample, nearest and bilinear (align_corners=False): whole factors 2 and 3,
    different per axis, and fixed output sizes, larger and (bilinear) smaller."""
    w = Writer("upsample")
    # (name, mode, scale or None, size or None, input shape)
    configs = [
        ("nearest_2", "nearest", (2, 2), None, (2, 3, 4, 5)),
        ("nearest_3", "nearest", (3, 3), None, (1, 2, 3, 4)),
        ("nearest_2x3", "nearest", (2, 3), None, (2, 2, 3, 3)),
        ("nearest_size_7x9", "nearest", None, (7, 9), (2, 2, 4, 5)),
        ("bilinear_2", "bilinear", (2, 2), None, (2, 3, 4, 5)),
        ("bilinear_3", "bilinear", (3, 3), None, (1, 2, 3, 4)),
        ("bilinear_2x3", "bilinear", (2, 3), None, (2, 2, 3, 3)),
        ("bilinear_1x2", "bilinear", (1, 2), None, (1, 2, 4, 3)),
        ("bilinear_one_pixel", "bilinear", (2, 2), None, (1, 2, 1, 1)),
        ("bilinear_size_7x9", "bilinear", None, (7, 9), (2, 2, 4, 5)),
        ("bilinear_size_3x4", "bilinear", None, (3, 4), (1, 2, 5, 7)),
    ]
    for name, mode, scale, size, shape in configs:
        corners = dict(align_corners=False) if mode == "bilinear" else {}
        if scale is not None:
            module = nn.Upsample(scale_factor=tuple(float(v) for v in scale), mode=mode, **corners)
        else:
            module = nn.Upsample(size=size, mode=mode, **corners)
        layer_case(w, name, dict(mode=mode, scale=scale, size=size), module, torch.randn(*shape))
    w.save()


def batchnorm_cases():
    w = Writer("batchnorm")
    for dims, shape in [(2, (4, 3, 5, 5)), (1, (6, 4)), (2, (2, 8, 3, 3))]:
        features = shape[1]
        for mode in ["train", "eval"]:
            bn = nn.BatchNorm2d(features) if dims == 2 else nn.BatchNorm1d(features)
            with torch.no_grad():
                bn.weight.copy_(torch.rand(features) + 0.5)
                bn.bias.copy_(torch.randn(features))
                bn.running_mean.copy_(torch.randn(features) * 0.1)
                bn.running_var.copy_(torch.rand(features) + 0.5)
            before = dict(running_mean_before=bn.running_mean.clone(), running_var_before=bn.running_var.clone())
            bn.train(mode == "train")
            x = torch.randn(*shape) * 2 + 1
            case = f"bn{dims}d_{shape[0]}_{mode}"
            # Two forward passes in training mode show the momentum update compounding.
            passes = 2 if mode == "train" else 1
            for _ in range(passes - 1):
                bn(x * 0.5)
            layer_case(w, case, dict(dims=dims, mode=mode, warmup_passes=passes - 1), bn, x,
                       extra=dict(before, running_mean=bn.running_mean, running_var=bn.running_var))
    with fresh_rng(2):
        batchnorm_option_cases(w)
    w.save()


def batchnorm_option_cases(w):
    """eps, momentum (a number or None), affine and track_running_stats, in both modes.

    The settings go into the case's JSON ("momentum": null is PyTorch's None). Running
    statistics start random, and num_batches_tracked at `batches_before`, so that
    momentum=None's factor 1/num_batches_tracked is not simply 1; warm-up passes in
    training mode on x·0.5 come before the compared pass, whose running statistics and
    count are stored afterwards.
    """
    # (name, dims, input shape, mode, settings, batches_before, warm-up passes)
    options = [
        ("bn2d_eps_momentum_train", 2, (4, 3, 5, 5), "train", dict(eps=1e-3, momentum=0.3), 0, 1),
        ("bn2d_eps_eval", 2, (2, 3, 4, 4), "eval", dict(eps=0.5), 0, 0),
        ("bn2d_momentum_none_train", 2, (3, 4, 3, 3), "train", dict(momentum=None), 4, 2),
        ("bn1d_momentum_none_fresh_train", 1, (6, 5), "train", dict(momentum=None), 0, 1),
        ("bn1d_no_affine_train", 1, (6, 4), "train", dict(affine=False), 0, 1),
        ("bn2d_no_affine_eval", 2, (2, 3, 4, 4), "eval", dict(affine=False), 0, 0),
        ("bn2d_no_running_stats_train", 2, (4, 3, 5, 5), "train", dict(track_running_stats=False), 0, 1),
        ("bn2d_no_running_stats_eval", 2, (4, 3, 5, 5), "eval", dict(track_running_stats=False), 0, 0),
        ("bn1d_no_running_stats_eval_ncl", 1, (4, 3, 5), "eval", dict(track_running_stats=False), 0, 0),
        ("bn1d_every_option_train", 1, (5, 6), "train",
         dict(eps=1e-2, momentum=None, affine=False, track_running_stats=False), 0, 1),
    ]
    for name, dims, shape, mode, settings, batches_before, warmup in options:
        features = shape[1]
        bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(features, **settings)
        before = {}
        with torch.no_grad():
            if bn.affine:
                bn.weight.copy_(torch.rand(features) + 0.5)
                bn.bias.copy_(torch.randn(features))
            if bn.track_running_stats:
                bn.running_mean.copy_(torch.randn(features) * 0.1)
                bn.running_var.copy_(torch.rand(features) + 0.5)
                bn.num_batches_tracked.fill_(batches_before)
                before = dict(running_mean_before=bn.running_mean.clone(),
                              running_var_before=bn.running_var.clone())
        bn.train(mode == "train")
        x = torch.randn(*shape) * 2 + 1
        for _ in range(warmup):
            bn(x * 0.5)
        config = dict(dims=dims, mode=mode, warmup_passes=warmup, features=features,
                      batches_before=batches_before, **settings)
        after = {}
        layer_case(w, name, config, bn, x, extra=before)
        if bn.track_running_stats:
            after = dict(running_mean=bn.running_mean, running_var=bn.running_var,
                         num_batches_tracked=bn.num_batches_tracked.float())
        w.case(name, config, **after)


def formula_values(shape, seed):
    """Deterministic values both PyTorch and Rust compute identically: 0.5·sin(0.37·i + seed)."""
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.float64)
    return (0.5 * torch.sin(0.37 * i + seed)).float().reshape(shape)


class SmallCNN(nn.Module):
    """The notes' §2.8 model."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.bn1 = nn.BatchNorm2d(32)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 8 * 8, 128)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x, drop_mask):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = x.flatten(1)
        # nn.Dropout(0.5) with its mask made explicit: kept units scaled by 1/(1 − p).
        x = F.relu(self.fc1(x)) * drop_mask / 0.5
        return self.fc2(x)


def smallcnn_step():
    """One full training step of SmallCNN: forward, cross-entropy, backward, AdamW step."""
    w = Writer("smallcnn")
    model = SmallCNN()
    params = list(model.named_parameters())
    with torch.no_grad():
        for seed, (name, p) in enumerate(params):
            # Convolution and linear weights scaled by 1/sqrt(fan_in); BatchNorm and biases as is.
            scale = 1.0 / math.sqrt(math.prod(p.shape[1:])) if p.dim() > 1 else 1.0
            p.copy_(formula_values(p.shape, seed) * scale)
    n = 4
    x = formula_values((n, 3, 32, 32), 100) * 4
    targets = torch.tensor([3, 0, 9, 3])
    drop_mask = (torch.rand(n, 128) >= 0.5).float()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logits = model(x, drop_mask)
    loss = F.cross_entropy(logits, targets)
    opt.zero_grad()
    loss.backward()
    tensors = {"x": x, "targets": targets.float(), "drop_mask": drop_mask, "logits": logits, "loss": loss.reshape(1)}
    for name, p in params:
        tensors["grad." + name] = p.grad
    opt.step()
    for name, p in params:
        # fc1.weight (2 MB) is left out: its gradient is stored, and the same update is
        # checked on every other tensor.
        if name != "fc1.weight":
            tensors["after." + name] = p
    for name, b in model.named_buffers():
        if "num_batches" not in name:
            tensors["after." + name] = b
    names = [name for name, _ in params]
    w.case("step", dict(params=names, x_seed=100, x_scale=4, lr=1e-3), **tensors)
    w.save()


if __name__ == "__main__":
    print(f"torch {torch.__version__}")
    conv_cases()
    linear_cases()
    pool_cases()
    activation_cases()
    batchnorm_cases()
    smallcnn_step()
    # Files added later, each from its own seed.
    with fresh_rng(3):
        silu_hardswish_cases()
    with fresh_rng(4):
        conv_transpose_cases()
    with fresh_rng(5):
        upsample_cases()
