#!/usr/bin/env python3
"""PyTorch reference values for ocellus's blocks: one safetensors file,
crates/engine/tests/reference/blocks.safetensors, checked by
crates/engine/tests/pytorch_agreement.rs (blocks_match_pytorch, zoo_training_steps_match_pytorch).

    pip install torch safetensors numpy
    python3 tools/pytorch_blocks.py

Every case is an ocellus architecture (its JSON in the case's config) built in PyTorch by
tools/pytorch_interop.py's build_model, so that state_dict names are ocellus's own
(`0.1.0.weight`: layer 0, branch 1, module 0):

- block cases (concat, dense, scale, squeezeexcite, bottleneck, separableconv2d, mbconv,
  denseblock): random parameters and input, a forward pass in training mode, then
  backward from a random dy — y, dx, every parameter gradient and the running statistics
  after the pass;
- training steps of the zoo's `inception` and `efficientnet` on 1×16×16 images (their
  architectures written by `ocellus summary --write-architecture`, built with cargo):
  parameters from formula_values, cross-entropy, backward, one AdamW step — logits, loss,
  every gradient, and every parameter and running statistic after the step. The dropout
  mask is drawn here and stored; the test replays it.

Neither ocellus's tests nor CI need PyTorch: only this script does.
"""
import json
import math
import pathlib
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from pytorch_interop import build_model  # noqa: E402
from pytorch_reference import Writer, formula_values, fresh_rng  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def block_case(w, name, input_shape, layers):
    """A network of `layers` (ocellus entries) on (N, C, H, W) = input_shape."""
    architecture = dict(input=list(input_shape[1:]), layers=layers)
    model = build_model(architecture, notes=[])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * (1.0 / math.sqrt(max(1, math.prod(p.shape[1:])))))
        for name_, b in model.named_buffers():
            if name_.endswith("running_var"):
                b.copy_(torch.rand(b.shape) + 0.5)
            elif name_.endswith("running_mean"):
                b.copy_(torch.randn(b.shape) * 0.1)
    model.train()
    x = torch.randn(*input_shape, requires_grad=True)
    before = {f"param.{n}": p.detach().clone() for n, p in model.named_parameters()}
    before.update({f"buffer.{n}": b.clone() for n, b in model.named_buffers()})
    y = model(x)
    dy = torch.randn(y.shape)
    y.backward(dy)
    tensors = dict(before, x=x, y=y, dy=dy, dx=x.grad)
    for n, p in model.named_parameters():
        tensors[f"grad.{n}"] = p.grad
    for n, b in model.named_buffers():
        tensors[f"after.{n}"] = b
    w.case(name, dict(architecture=architecture), **tensors)


def block_cases(w):
    conv = lambda oc, k, **kw: dict(type="conv2d", out_channels=oc, kernel=k, **kw)  # noqa: E731
    block_case(w, "concat", (2, 3, 6, 6), [dict(type="concat", branches=[
        [conv(2, 1)],
        [conv(2, 1), dict(type="relu"), conv(3, 3, padding=1)],
        [dict(type="maxpool2d", kernel=3, stride=1, padding=1), conv(2, 1)],
    ])])
    block_case(w, "dense", (2, 3, 5, 5), [dict(type="dense", layers=[
        [dict(type="batchnorm2d"), dict(type="relu"), conv(2, 3, padding=1)],
        [dict(type="batchnorm2d"), dict(type="tanh"), conv(2, 3, padding=1)],
    ])])
    block_case(w, "scale", (2, 4, 5, 5), [dict(type="scale", gate=[
        dict(type="globalavgpool"), dict(type="flatten"), dict(type="linear", out_features=4),
        dict(type="sigmoid"),
    ])])
    block_case(w, "squeezeexcite", (3, 8, 4, 4), [dict(type="squeezeexcite", reduction=4)])
    block_case(w, "squeezeexcite_silu", (2, 6, 3, 3),
               [dict(type="squeezeexcite", squeeze_channels=3, activation="silu")])
    block_case(w, "bottleneck", (2, 8, 6, 6), [dict(type="bottleneck", out_channels=16, stride=2)])
    block_case(w, "bottleneck_identity", (2, 8, 5, 5), [dict(type="bottleneck", out_channels=8, expansion=2)])
    block_case(w, "separableconv2d", (2, 4, 7, 7),
               [dict(type="separableconv2d", out_channels=6, kernel=3, stride=2, padding=1)])
    block_case(w, "mbconv", (2, 8, 6, 6), [dict(type="mbconv", out_channels=8, expand_ratio=3, kernel=5)])
    block_case(w, "mbconv_strided", (2, 4, 6, 6), [dict(type="mbconv", out_channels=6, stride=2)])
    block_case(w, "denseblock", (2, 4, 4, 4), [dict(type="denseblock", layers=2, growth=3)])


def zoo_architecture(name, input_shape):
    """The zoo model's architecture as ocellus writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / f"{name}.json"
        input_arg = "x".join(str(d) for d in input_shape)
        subprocess.run(
            ["cargo", "run", "--release", "-q", "-p", "ocellus-cli", "--", "summary", "--model", name,
             "--input", input_arg, "--write-architecture", str(path)],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )
        return json.loads(path.read_text())


class MaskedDropout(nn.Module):
    """nn.Dropout with its mask made explicit: kept units scaled by 1/(1 − p)."""

    def __init__(self, mask, p):
        super().__init__()
        self.mask, self.p = mask, p

    def forward(self, x):
        return x * self.mask / (1 - self.p)


def zoo_step(w, name):
    """One training step of the zoo model on four 1×16×16 images."""
    architecture = zoo_architecture(name, (1, 16, 16))
    model = build_model(architecture, notes=[])
    n, lr = 4, 1e-3
    dropout_index = None
    for i, spec in enumerate(architecture["layers"]):
        if spec["type"] == "dropout":
            dropout_index = i
            with torch.no_grad():
                width = nn.Sequential(*model[:i]).eval()(torch.zeros(n, 1, 16, 16)).shape[1:]
            mask = (torch.rand(n, *width) >= spec["p"]).float()
            model[i] = MaskedDropout(mask, spec["p"])
    params = list(model.named_parameters())
    with torch.no_grad():
        for seed, (_, p) in enumerate(params):
            scale = 1.0 / math.sqrt(math.prod(p.shape[1:])) if p.dim() > 1 else 1.0
            p.copy_(formula_values(p.shape, seed) * scale)
    x = formula_values((n, 1, 16, 16), 100) * 4
    targets = torch.tensor([3, 0, 9, 3])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    logits = model(x)
    loss = F.cross_entropy(logits, targets)
    opt.zero_grad()
    loss.backward()
    tensors = {"x": x, "targets": targets.float(), "logits": logits, "loss": loss.reshape(1)}
    if dropout_index is not None:
        tensors["drop_mask"] = model[dropout_index].mask
    for pname, p in params:
        tensors["grad." + pname] = p.grad
    opt.step()
    for pname, p in params:
        tensors["after." + pname] = p
    for bname, b in model.named_buffers():
        tensors["after." + bname] = b
    config = dict(architecture=architecture, params=[p for p, _ in params], lr=lr,
                  dropout_index=dropout_index, x_seed=100, x_scale=4)
    w.case(name, config, **tensors)


if __name__ == "__main__":
    print(f"torch {torch.__version__}")
    w = Writer("blocks")
    with fresh_rng(6):
        block_cases(w)
        zoo_step(w, "inception")
        zoo_step(w, "efficientnet")
    w.save()
