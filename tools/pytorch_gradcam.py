#!/usr/bin/env python3
"""PyTorch reference values for ocellus's Grad-CAM: one safetensors file,
crates/viz/tests/reference/gradcam.safetensors, checked by crates/viz/tests/pytorch_gradcam.rs.

    pip install torch safetensors numpy
    python3 tools/pytorch_gradcam.py

Each case is an ocellus architecture built in PyTorch by tools/pytorch_interop.py's
build_model (so state_dict names are ocellus's own), with random weights and one random
input image. Grad-CAM is computed here from autograd, as Selvaraju et al. define it:
A = the output of top-level layer L, y = the logit of the class (given, or the predicted
one), alpha_k = mean over positions of dy/dA_k, cam = ReLU(sum_k alpha_k A_k), and the map
= F.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False). The file holds
per case the weights (`param.{name}`, `buffer.{name}`), `x`, `logits`, `alpha`, `cam` and
`map`; its metadata holds per case the architecture (JSON), the layer, the class asked
for ("" for the predicted one) and the class used.

Neither ocellus's tests nor CI need PyTorch: only this script does.
"""
import json
import math
import pathlib
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from pytorch_interop import build_model  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "viz" / "tests" / "reference" / "gradcam.safetensors"

# 3×13×11 images: the maps of layer 3 are 6×4×3, so the interpolation to 13×11 has
# ratios that are not whole numbers, in both directions.
SMALL = {
    "input": [3, 13, 11],
    "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "out_channels": 6, "kernel": 3},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 5},
    ],
}

# A residual block with BatchNorm (running statistics, evaluation mode) and global
# average pooling: Grad-CAM of the block's joined output.
RESIDUAL = {
    "input": [1, 10, 10],
    "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": False},
        {"type": "batchnorm2d"},
        {"type": "relu"},
        {
            "type": "residual",
            "activation": "relu",
            "main": [
                {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1},
                {"type": "relu"},
                {"type": "conv2d", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1},
            ],
            "shortcut": [{"type": "conv2d", "out_channels": 4, "kernel": 1, "stride": 2}],
        },
        {"type": "globalavgpool"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 3},
    ],
}

CASES = [
    # (name, architecture, layer, class or None)
    ("small_layer3_predicted", SMALL, 3, None),
    ("small_layer3_class1", SMALL, 3, 1),
    ("small_layer4_predicted", SMALL, 4, None),
    ("small_layer0_class2", SMALL, 0, 2),
    ("residual_block_predicted", RESIDUAL, 3, None),
    ("residual_stem_class0", RESIDUAL, 2, 0),
]


def grad_cam(model, x, layer, klass):
    """Grad-CAM of image x (1, C, H, W) at top-level layer `layer` of an nn.Sequential."""
    activations = x
    for module in model[: layer + 1]:
        activations = module(activations)
    activations = activations.detach().requires_grad_(True)
    logits = activations
    for module in model[layer + 1 :]:
        logits = module(logits)
    used = int(logits.argmax(1)) if klass is None else klass
    logits[0, used].backward()
    alpha = activations.grad.mean(dim=(2, 3))[0]  # (K,)
    cam = F.relu((alpha[:, None, None] * activations[0]).sum(0)).detach()  # (h, w)
    size = tuple(x.shape[2:])
    heat = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return logits.detach(), used, alpha, cam, heat


def main():
    torch.manual_seed(15)
    tensors, meta = {}, {}
    models = {}
    for name, architecture, layer, klass in CASES:
        key = json.dumps(architecture)
        if key not in models:
            model = build_model(architecture, notes=[])
            with torch.no_grad():
                # Biases small, so that the predicted class is decided by the maps.
                for n, p in model.named_parameters():
                    scale = 0.1 if n.endswith("bias") else 1.0 / math.sqrt(math.prod(p.shape[1:]))
                    p.copy_(torch.randn(p.shape) * scale)
                for buffer_name, b in model.named_buffers():
                    if buffer_name.endswith("running_var"):
                        b.copy_(torch.rand(b.shape) + 0.5)
                    elif buffer_name.endswith("running_mean"):
                        b.copy_(torch.randn(b.shape) * 0.1)
            models[key] = model.eval()
        model = models[key]
        # Draw images until the map has both positive places and places the ReLU zeroes
        # (between a quarter and three quarters of each), so that both are checked; where
        # no image does (a map after a ReLU can be positive everywhere), one whose map is
        # not all zero.
        for attempt in range(2000):
            x = torch.randn(1, *architecture["input"])
            logits, used, alpha, cam, heat = grad_cam(model, x, layer, klass)
            positive = float((cam > 0).float().mean())
            if 0.25 <= positive <= 0.75 or (attempt >= 1000 and positive > 0):
                break
        else:
            sys.exit(f"{name}: no image gives a map that is not all zero")
        for n, p in model.named_parameters():
            tensors[f"{name}.param.{n}"] = p.detach().clone()
        for n, b in model.named_buffers():
            if b.dtype.is_floating_point:
                tensors[f"{name}.buffer.{n}"] = b.clone()
        for k, v in [("x", x), ("logits", logits), ("alpha", alpha), ("cam", cam), ("map", heat)]:
            tensors[f"{name}.{k}"] = v.detach().contiguous().float()
        meta[f"{name}.architecture"] = json.dumps(architecture)
        meta[f"{name}.layer"] = str(layer)
        meta[f"{name}.class"] = "" if klass is None else str(klass)
        meta[f"{name}.used"] = str(used)
        positive = int((cam > 0).sum())
        print(f"{name}: layer {layer}, class {used}, cam {tuple(cam.shape)}, {positive} positive")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, OUT, metadata=meta)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
