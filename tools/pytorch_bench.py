#!/usr/bin/env python3
"""ocellus against PyTorch on the same CPU, the same models and the same measurements.

For every row, the two frameworks are measured alternately (ocellus, PyTorch, ocellus,
PyTorch, ...): one `ocellus bench --json` process per ocellus sample, each reporting the
median of --repeats runs after --warmup, and the same in PyTorch. On a shared machine the
load drifts between samples, so the row reports the median of the per-pair ratios
ocellus/PyTorch (a ratio above 1 means ocellus is faster), next to each framework's median.
The right-hand columns give the best run seen by each framework over all samples and their
ratio: what each can do when the machine is quiet. Under heavy load the two disagree,
because PyTorch's OpenMP threads wait at barriers for a core that another process holds.

The models are the zoo's, layer for layer: LeNet-5 with padding 2 on conv1 for 28×28,
ReLU and max-pooling; SmallCNN (conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, fc128-ReLU-
dropout-fc); MLP 784-256-128-10. A training step is zero_grad, forward (train mode),
cross-entropy, backward and an AdamW step (lr 1e-3, weight decay 0.01); inference is a
forward in eval mode under torch.no_grad().

Usage: python3 tools/pytorch_bench.py [--ocellus target/release/ocellus] [--pairs 5]
                                      [--threads 2] [--rows lenet5-train-64,...]
"""

import argparse
import json
import statistics
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def smallcnn():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )


def mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


MODELS = {"lenet5": (lenet5, (1, 28, 28)), "smallcnn": (smallcnn, (3, 32, 32)),
          "mlp": (mlp, (1, 28, 28))}

# (row name, kind, model or conv, batch size); kind: train | infer | conv-fwd | conv-fwdbwd.
ROWS = [
    ("lenet5-train-64", "train", "lenet5", 64),
    ("lenet5-train-256", "train", "lenet5", 256),
    ("smallcnn-train-128", "train", "smallcnn", 128),
    ("mlp-train-64", "train", "mlp", 64),
    ("lenet5-infer-256", "infer", "lenet5", 256),
    ("smallcnn-infer-256", "infer", "smallcnn", 256),
    ("conv-fwd", "conv-fwd", "conv", 128),
    ("conv-fwdbwd", "conv-fwdbwd", "conv", 128),
]

# Conv2d(32→64, 3×3, padding 1) on (128, 32, 16, 16): 2·MACs FLOPs forward, 3× that for
# forward + backward (dx and dw each cost a forward).
CONV_FLOPS = 2.0 * 128 * 64 * 16 * 16 * 32 * 9


def timed(warmup, repeats, f):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def pytorch_sample(kind, model_name, n, warmup, repeats):
    """Images/s (models) or GFLOP/s (conv rows): (median, best) of `repeats` runs."""
    torch.manual_seed(0)
    if kind.startswith("conv"):
        conv = nn.Conv2d(32, 64, 3, padding=1)
        x = torch.randn(n, 32, 16, 16, requires_grad=True)
        dy = torch.randn(n, 64, 16, 16)
        if kind == "conv-fwd":
            def step():
                with torch.no_grad():
                    conv(x)
            return rates(CONV_FLOPS / 1e9, timed(warmup, repeats, step))

        def step():
            conv.zero_grad()
            x.grad = None
            conv(x).backward(dy)
        return rates(3 * CONV_FLOPS / 1e9, timed(warmup, repeats, step))

    build, shape = MODELS[model_name]
    model = build()
    x = torch.randn(n, *shape)
    labels = torch.randint(0, 10, (n,))
    if kind == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), labels).backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    return rates(n, timed(warmup, repeats, step))


def rates(work, seconds):
    median, fastest = seconds
    return work / median, work / fastest


def ocellus_sample(binary, threads, kind, model_name, n, warmup, repeats):
    args = [binary, "--threads", str(threads), "bench", "--batch-size", str(n),
            "--warmup", str(warmup), "--repeats", str(repeats), "--json"]
    if kind.startswith("conv"):
        args += ["--conv", "64,3,1", "--input", "32x16x16",
                 "--mode", "infer" if kind == "conv-fwd" else "train"]
    else:
        args += ["--model", model_name, "--mode", kind]
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    result = out["results"][0]
    key = "gflops" if kind.startswith("conv") else "images_per_second"
    return result[key]["median"], result[key]["max"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ocellus", default="target/release/ocellus")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default=",".join(r[0] for r in ROWS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = args.rows.split(",")

    print(f"PyTorch {torch.__version__}, {args.threads} threads; {args.pairs} pairs of "
          f"(ocellus, PyTorch) samples per row, each the median of {args.repeats} runs "
          f"after {args.warmup} warm-up runs")
    print(f"{'row':<20} {'unit':>9} {'ocellus':>10} {'PyTorch':>10} {'ratio':>6}"
          f" | {'best ocellus':>12} {'best PyTorch':>12} {'ratio':>6}")
    for name, kind, model_name, n in ROWS:
        if name not in wanted:
            continue
        ours, theirs = [], []
        for _ in range(args.pairs):
            ours.append(ocellus_sample(args.ocellus, args.threads, kind, model_name, n,
                                       args.warmup, args.repeats))
            theirs.append(pytorch_sample(kind, model_name, n, args.warmup, args.repeats))
        ratio = statistics.median(a[0] / b[0] for a, b in zip(ours, theirs))
        best_ours, best_theirs = max(a[1] for a in ours), max(b[1] for b in theirs)
        unit = "GFLOP/s" if kind.startswith("conv") else "images/s"
        print(f"{name:<20} {unit:>9} {statistics.median(a[0] for a in ours):>10.1f} "
              f"{statistics.median(b[0] for b in theirs):>10.1f} {ratio:>6.2f} | "
              f"{best_ours:>12.1f} {best_theirs:>12.1f} {best_ours / best_theirs:>6.2f}",
              flush=True)


if __name__ == "__main__":
    main()
