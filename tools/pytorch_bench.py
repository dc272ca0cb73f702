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

PyTorch is measured in each of its CPU variants (--variants): eager NCHW (the default),
eager channels_last (`model.to(memory_format=torch.channels_last)` and the inputs alike,
the one-line change for CPU speed) and `torch.compile` (compiled once per row before the
samples; a row whose compilation fails or takes longer than --compile-budget seconds says
so and is left out). Every pair measures ocellus and then each variant, and the ratio that
counts is ocellus against the fastest variant of that pair; each variant's own median is
printed too.

The models are the zoo's, layer for layer: LeNet-5 with padding 2 on conv1 for 28×28,
ReLU and max-pooling; SmallCNN (conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, fc128-ReLU-
dropout-fc); MLP 784-256-128-10; VGG (two conv-BN-ReLU of 32, 64, 128 channels, each pair
then pooled; fc256-ReLU-dropout-fc); ResNet-20 (He et al.'s CIFAR network: 3×3 stem of 16,
three stages of three basic blocks of 16, 32, 64 channels with 1×1 projection shortcuts
where the shape changes, global average pooling, fc). A training step is zero_grad, forward (train mode),
cross-entropy, backward and an AdamW step (lr 1e-3, weight decay 0.01); inference is a
forward in eval mode under torch.no_grad().

Usage: python3 tools/pytorch_bench.py [--ocellus target/release/ocellus] [--pairs 5]
                                      [--threads 2] [--rows lenet5-train-64,...]
                                      [--variants nchw,channels_last,compile]
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


def vgg():
    layers, channels = [], 3
    for width in (32, 64, 128):
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(
        *layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10)
    )


class BasicBlock(nn.Module):
    """relu(conv-BN-ReLU-conv-BN(x) + shortcut(x)), the shortcut a 1×1 conv + BN when the
    shape changes (torchvision's BasicBlock; ocellus's basicblock)."""

    def __init__(self, channels, out_channels, stride):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity() if stride == 1 and channels == out_channels else nn.Sequential(
            nn.Conv2d(channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x):
        return F.relu(self.main(x) + self.shortcut(x))


def resnet20():
    layers, channels = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(BasicBlock(channels, width, 2 if stage > 0 and block == 0 else 1))
            channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


MODELS = {"lenet5": (lenet5, (1, 28, 28)), "smallcnn": (smallcnn, (3, 32, 32)),
          "mlp": (mlp, (1, 28, 28)), "vgg": (vgg, (3, 32, 32)), "resnet20": (resnet20, (3, 32, 32))}

# (row name, kind, model or conv, batch size); kind: train | infer | conv-fwd | conv-fwdbwd.
ROWS = [
    ("lenet5-train-64", "train", "lenet5", 64),
    ("lenet5-train-256", "train", "lenet5", 256),
    ("smallcnn-train-128", "train", "smallcnn", 128),
    ("resnet20-train-128", "train", "resnet20", 128),
    ("vgg-train-128", "train", "vgg", 128),
    ("mlp-train-64", "train", "mlp", 64),
    ("lenet5-infer-256", "infer", "lenet5", 256),
    ("smallcnn-infer-256", "infer", "smallcnn", 256),
    ("resnet20-infer-256", "infer", "resnet20", 256),
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


def pytorch_step(kind, model_name, n, variant):
    """The step function of one row in one PyTorch variant, and the work one step does
    (images, or GFLOP for the conv rows)."""
    torch.manual_seed(0)
    layout = torch.channels_last if variant == "channels_last" else torch.contiguous_format
    if kind.startswith("conv"):
        conv = nn.Conv2d(32, 64, 3, padding=1).to(memory_format=layout)
        x = torch.randn(n, 32, 16, 16).to(memory_format=layout).requires_grad_()
        dy = torch.randn(n, 64, 16, 16).to(memory_format=layout)
        forward = torch.compile(conv) if variant == "compile" else conv
        if kind == "conv-fwd":
            def step():
                with torch.no_grad():
                    forward(x)
            return step, CONV_FLOPS / 1e9

        def step():
            conv.zero_grad()
            x.grad = None
            forward(x).backward(dy)
        return step, 3 * CONV_FLOPS / 1e9

    build, shape = MODELS[model_name]
    model = build().to(memory_format=layout)
    x = torch.randn(n, *shape).to(memory_format=layout)
    labels = torch.randint(0, 10, (n,))
    forward = torch.compile(model) if variant == "compile" else model
    if kind == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

        def step():
            opt.zero_grad()
            F.cross_entropy(forward(x), labels).backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                forward(x)
    return step, n


def pytorch_sample(prepared, warmup, repeats):
    """(median, best) rate of `repeats` runs of a prepared (step, work)."""
    step, work = prepared
    return rates(work, timed(warmup, repeats, step))


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
    # FLOPs per unit of the row's measure (1 for GFLOP/s rows), for the fraction of peak.
    flops = 1.0 if kind.startswith("conv") else result["gflops"]["median"] / result[key]["median"]
    return result[key]["median"], result[key]["max"], flops


def ocellus_peak(binary, threads):
    """The machine's f32 multiply-add peak in GFLOP/s on these threads, as `ocellus bench
    --peak` measures it with the instruction set its kernels dispatch to."""
    args = [binary, "--threads", str(threads), "bench", "--peak", "--json", "--model", "mlp",
            "--mode", "infer", "--warmup", "0", "--repeats", "1"]
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    return out["peak"]["gflops"], out["peak"]["isa"]


def prepare(kind, model_name, n, variant, budget):
    """(step, work) of a variant, compiled and warmed up when it is torch.compile; None
    with the reason when it cannot be had within `budget` seconds."""
    start = time.perf_counter()
    try:
        step, work = pytorch_step(kind, model_name, n, variant)
        if variant == "compile":
            step()  # compiles (forward and, for training, backward)
            step()
    except Exception as e:  # noqa: BLE001 — any failure of the compiler is reported
        return None, f"{variant}: {type(e).__name__}: {str(e).splitlines()[0][:100]}"
    took = time.perf_counter() - start
    if took > budget:
        return None, f"{variant}: compiling took {took:.0f} s, over the {budget:.0f} s budget"
    note = f"{variant}: compiled in {took:.0f} s" if variant == "compile" else None
    return (step, work), note


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ocellus", default="target/release/ocellus")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default=",".join(r[0] for r in ROWS))
    parser.add_argument("--variants", default="nchw,channels_last,compile")
    parser.add_argument("--compile-budget", type=float, default=600.0,
                        help="seconds torch.compile may take per row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = args.rows.split(",")
    variants = args.variants.split(",")

    peak, isa = ocellus_peak(args.ocellus, args.threads)
    print(f"PyTorch {torch.__version__}, {args.threads} threads; {args.pairs} pairs of "
          f"(ocellus, then each PyTorch variant) samples per row, each the median of "
          f"{args.repeats} runs after {args.warmup} warm-up runs; ratio = ocellus / fastest variant; "
          f"peak {peak:.0f} GFLOP/s ({isa}), '% peak' = GFLOP/s of ocellus and of the fastest "
          f"variant against it (both counted with ocellus's FLOPs per image)")
    header = f"{'row':<20} {'unit':>9} {'ocellus':>10} " + " ".join(f"{v:>13}" for v in variants)
    print(header + f" {'fastest':>13} {'ratio':>6} {'% peak':>6} {'theirs':>6}")
    for name, kind, model_name, n in ROWS:
        if name not in wanted:
            continue
        prepared, notes = {}, []
        for variant in variants:
            ready, note = prepare(kind, model_name, n, variant, args.compile_budget)
            if ready is not None:
                prepared[variant] = ready
            if note:
                notes.append(note)
        ours, theirs = [], {v: [] for v in prepared}
        ratios, fastest_names = [], []
        for _ in range(args.pairs):
            ours.append(ocellus_sample(args.ocellus, args.threads, kind, model_name, n,
                                       args.warmup, args.repeats))
            pair = {v: pytorch_sample(prepared[v], args.warmup, args.repeats) for v in prepared}
            for v, sample in pair.items():
                theirs[v].append(sample)
            best = max(pair, key=lambda v: pair[v][0])
            fastest_names.append(best)
            ratios.append(ours[-1][0] / pair[best][0])
        unit = "GFLOP/s" if kind.startswith("conv") else "images/s"
        cells = " ".join(
            f"{statistics.median(s[0] for s in theirs[v]):>13.1f}" if v in theirs else f"{'—':>13}"
            for v in variants
        )
        fastest = max(set(fastest_names), key=fastest_names.count)
        ours_median = statistics.median(a[0] for a in ours)
        flops = ours[-1][2]
        theirs_median = statistics.median(s[0] for s in theirs[fastest])
        print(f"{name:<20} {unit:>9} {ours_median:>10.1f} {cells} "
              f"{fastest:>13} {statistics.median(ratios):>6.2f} "
              f"{100 * ours_median * flops / peak:>5.0f}% {100 * theirs_median * flops / peak:>5.0f}%",
              flush=True)
        for note in notes:
            print(f"{'':<20}   note: {note}")


if __name__ == "__main__":
    main()
