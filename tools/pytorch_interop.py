#!/usr/bin/env python3
"""Checks `ocellus export --format pytorch` and the model files both ways with PyTorch.

    pip install torch safetensors numpy
    ocellus train --model lenet5 --data fashion-mnist --epochs 1 --limit-train 2000 --out runs/lenet5-fashion-mnist
    ocellus train --model resnet20 --data fashion-mnist --epochs 1 --limit-train 2000 --out runs/resnet20-fashion-mnist
    ocellus train --model tools/pytorch_interop_layers.toml --epochs 1 --limit-train 512 --out runs/every-layer
    python3 tools/pytorch_interop.py runs/lenet5-fashion-mnist runs/resnet20-fashion-mnist runs/every-layer

For every model given (a run directory or a model.safetensors file):

1. ocellus -> PyTorch. `ocellus export MODEL --format pytorch -o DIR` writes DIR/model.py
   (an nn.Module) and DIR/model.safetensors; the module is imported from DIR, built, and
   loaded with load_state_dict(strict=True) from the safetensors file read by the
   `safetensors` package (and, separately, by model.py's own reader through
   `model.load()`, which must give identical weights). Both frameworks then compute logits
   for the same real inputs (the first test images of an IDX data set, normalised with
   model.py's `normalize`) in evaluation mode.
2. PyTorch -> ocellus. A fresh module of the same class (its own random initialisation;
   BatchNorm affine parameters and running statistics made non-trivial) is saved with
   model.py's `save` — which keeps the exported file's metadata, so ocellus can read it —
   and ocellus's logits for it are compared with PyTorch's.

ocellus's logits come from the example program crates/train/examples/logits.rs, built and
run with cargo (or given with --logits-bin); `ocellus` itself likewise (or --ocellus). The
script prints the largest absolute difference and the largest difference relative to the
largest logit, and exits with status 1 if any exceeds the tolerance. Neither ocellus's
tests nor CI need PyTorch: only this script does (CI compiles the exported model.py).
"""
import argparse
import gzip
import importlib.util
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
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Relative to the largest |logit|: float32 sums taken in a different order differ by a
# few ulps per operation; 1e-5 of the logits' scale leaves room for that and nothing else.
RELATIVE_TOLERANCE = 1e-5


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


def inputs_for(architecture, module, args):
    """Real test images normalised with the exported module's `normalize`, or uniform
    random images if the model does not take 1x28x28 images."""
    if list(architecture["input"]) == [1, 28, 28]:
        x, source = read_idx_images(args.data_dir, args.images), f"first {args.images} test images of {args.data_dir}"
    else:
        generator = torch.Generator().manual_seed(args.seed)
        x = torch.rand(args.images, *architecture["input"], generator=generator)
        source = f"{args.images} uniform random images (the model takes {architecture['input']}, not 1x28x28)"
    return module.normalize(x).contiguous(), source


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


def ocellus_command(args):
    if args.ocellus:
        return [args.ocellus]
    return ["cargo", "run", "--quiet", "--release", "-p", "ocellus-cli", "--"]


def export_module(model_path, work, args):
    """Runs `ocellus export --format pytorch` into a fresh directory and imports its
    model.py; returns (module, directory, what the export printed)."""
    directory = work / f"export-{len(list(work.iterdir()))}"
    command = [*ocellus_command(args), "export", str(model_path), "--format", "pytorch", "-o", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"ocellus export failed on {model_path}:\n{result.stderr.strip()}")
    spec = importlib.util.spec_from_file_location(f"exported_{directory.name.replace('-', '_')}", directory / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, directory


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
    name = architecture.get("name") or model_file.parent.name

    # ocellus -> PyTorch: the exported module with the trained weights, loaded strictly.
    module, directory = export_module(path, work, args)
    model = module.Model()
    model.load_state_dict(load_file(directory / "model.safetensors"), strict=True)
    model.eval()
    own = module.load()
    for key, value in model.state_dict().items():
        if not torch.equal(value, own.state_dict()[key]):
            sys.exit(f"{name}: model.load() reads {key} differently from safetensors.torch.load_file")
    x, source = inputs_for(architecture, module, args)
    helpers = [c for c in ("PerSidePadConv2d", "Residual", "Concat", "Dense", "Scale") if hasattr(module, c)]
    print(f"{name} ({model_file}, epoch {metadata.get('epoch')}), on the {source}")
    print(f"  exported model.py: {sum(1 for _ in model.modules())} modules, helpers {helpers or 'none'}")
    with torch.no_grad():
        expected = model(x)
    ok = compare("ocellus -> PyTorch", expected, ocellus_logits(model_file, x, work, args))

    # PyTorch -> ocellus: a fresh module, saved by model.py's own writer.
    torch.manual_seed(args.seed)
    fresh = module.Model()
    randomize_for_test(fresh, x)
    exported = work / f"{name}-from-pytorch.safetensors"
    module.save(fresh, exported)
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
    parser.add_argument("--ocellus", help="a built ocellus binary (default: cargo run --release)")
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
