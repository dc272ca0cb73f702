#!/usr/bin/env python3
"""End to end on real data: the same training recipe run by ocellus and by PyTorch, each
variant in its own process, timed from the outside.

    python3 tools/end_to_end.py --ocellus target/release/ocellus \
        --runs smallcnn:10,resnet20:5 [--variants nchw,channels_last,compile] [--threads 2]

Recipe (both sides): Fashion-MNIST from /usr/share/datasets/fashion-mnist (60,000 train,
10,000 test images of 1×28×28), the zoo model with one input channel, batch 128, AdamW
(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01), cross-entropy, a fresh
shuffle every epoch, every batch turned from bytes into floats and standardised with the
training set's mean and standard deviation inside the timed loop, the test set evaluated
after every epoch. ocellus runs `ocellus train` itself; PyTorch runs the loop below in
a child process of this script. Reported per run: the training time (the epochs' loops,
evaluation excluded — ocellus's `seconds` in metrics.jsonl, PyTorch's own clock around
the same loop), the whole process's wall time and peak resident memory, the final test
accuracy, and ocellus's speed over the fastest PyTorch variant on training time.

PyTorch is needed only to run this script, never by the tests.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

DATA = "/usr/share/datasets/fashion-mnist"


def load_idx(name):
    """An IDX file of Fashion-MNIST as (dims, bytes)."""
    path = os.path.join(DATA, name)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return dims, raw[4 + 4 * ndim:]


def find(stem):
    for name in (stem + ".gz", stem):
        if os.path.exists(os.path.join(DATA, name)):
            return name
    sys.exit(f"end_to_end: {stem}(.gz) not found in {DATA} (apt-get install dataset-fashion-mnist)")


def pytorch_worker(model_name, epochs, variant, threads, seed, out):
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    def images(stem):
        dims, raw = load_idx(find(stem))
        return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(dims[0], 1, 28, 28).copy())

    def labels(stem):
        _, raw = load_idx(find(stem))
        return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).astype(np.int64))

    x_train, y_train = images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")
    x_test, y_test = images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")
    scaled = x_train.float() / 255.0
    mean, std = scaled.mean().item(), scaled.std().item()

    def conv_bn_relu(cin, cout, stride=1):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.main = nn.Sequential(*conv_bn_relu(cin, cout, stride),
                                      nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return F.relu(self.main(x) + self.skip(x))

    if model_name == "smallcnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    elif model_name == "resnet20":
        layers, channels = conv_bn_relu(1, 16), 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range(3):
                layers.append(BasicBlock(channels, width, 2 if stage > 0 and block == 0 else 1))
                channels = width
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    else:
        sys.exit(f"end_to_end: no PyTorch model {model_name}")
    memory_format = torch.channels_last if variant in ("channels_last", "compile") else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.01)
    step_model = torch.compile(model) if variant == "compile" else model

    def batch_floats(x_bytes):
        x = (x_bytes.float() / 255.0 - mean) / std
        return x.contiguous(memory_format=memory_format)

    generator = torch.Generator().manual_seed(seed)
    epochs_out = []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x_train), generator=generator)
        seen = correct = 0
        loss_sum = 0.0
        for first in range(0, len(order), 128):
            idx = order[first:first + 128]
            x, y = batch_floats(x_train[idx]), y_train[idx]
            optimizer.zero_grad(set_to_none=True)
            logits = step_model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(idx)
        seconds = time.perf_counter() - start
        model.eval()
        right = 0
        with torch.no_grad():
            for first in range(0, len(x_test), 1000):
                x = batch_floats(x_test[first:first + 1000])
                right += (model(x).argmax(1) == y_test[first:first + 1000]).sum().item()
        epochs_out.append({"epoch": epoch + 1, "seconds": seconds, "train_loss": loss_sum / seen,
                           "test_accuracy": right / len(x_test)})
        print(f"  pytorch {variant} {model_name} epoch {epoch + 1}: {seconds:.1f} s, "
              f"test {100 * right / len(x_test):.2f} %", file=sys.stderr, flush=True)
    with open(out, "w") as f:
        json.dump({"epochs": epochs_out}, f)


def timed_child(args, cwd=None):
    """Runs a command to its end: (wall seconds, peak resident MiB, whether it succeeded)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status) == 0


def ocellus_run(binary, model, epochs, threads, seed):
    workdir = tempfile.mkdtemp(prefix="ocellus-e2e-")
    try:
        wall, rss, ok = timed_child([os.path.abspath(binary), "--threads", str(threads), "train",
                                     "--model", model, "--data", "fashion-mnist", "--epochs", str(epochs),
                                     "--batch-size", "128", "--optimizer", "adamw", "--lr", "1e-3",
                                     "--weight-decay", "0.01", "--seed", str(seed)], cwd=workdir)
        if not ok:
            sys.exit(f"end_to_end: ocellus train failed for {model}")
        run_dir = os.path.join(workdir, "runs", os.listdir(os.path.join(workdir, "runs"))[0])
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            epochs_out = [json.loads(line) for line in f if line.strip()]
        return {"train_seconds": sum(e["seconds"] for e in epochs_out), "wall_seconds": wall,
                "peak_mib": rss, "test_accuracy": epochs_out[-1]["val_accuracy"]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def pytorch_run(model, epochs, variant, threads, seed):
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        wall, rss, ok = timed_child([sys.executable, os.path.abspath(__file__), "--worker", variant,
                                     "--runs", f"{model}:{epochs}", "--threads", str(threads),
                                     "--seed", str(seed), "--out", out])
        if not ok:
            return None
        with open(out) as f:
            epochs_out = json.load(f)["epochs"]
        return {"train_seconds": sum(e["seconds"] for e in epochs_out), "wall_seconds": wall,
                "peak_mib": rss, "test_accuracy": epochs_out[-1]["test_accuracy"]}
    finally:
        os.unlink(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ocellus", default="target/release/ocellus")
    parser.add_argument("--runs", default="smallcnn:10,resnet20:5", help="MODEL:EPOCHS,…")
    parser.add_argument("--variants", default="nchw,channels_last,compile")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = [(m, int(e)) for m, e in (r.split(":") for r in args.runs.split(","))]
    if args.worker:
        model, epochs = runs[0]
        pytorch_worker(model, epochs, args.worker, args.threads, args.seed, args.out)
        return
    results = []
    for model, epochs in runs:
        row = {"model": model, "epochs": epochs, "ocellus": ocellus_run(args.ocellus, model, epochs,
                                                                        args.threads, args.seed)}
        for variant in args.variants.split(","):
            row[variant] = pytorch_run(model, epochs, variant, args.threads, args.seed)
        done = {v: row[v] for v in args.variants.split(",") if row[v] is not None}
        fastest = min(done, key=lambda v: done[v]["train_seconds"]) if done else None
        row["fastest"] = fastest
        if fastest is not None:
            row["speedup"] = done[fastest]["train_seconds"] / row["ocellus"]["train_seconds"]
        results.append(row)
        print(f"{model}, {epochs} epochs, {args.threads} threads:")
        for name in ["ocellus"] + args.variants.split(","):
            r = row[name]
            if r is None:
                print(f"  {name:14} failed")
                continue
            print(f"  {name:14} train {r['train_seconds']:7.1f} s  wall {r['wall_seconds']:7.1f} s  "
                  f"peak {r['peak_mib']:6.0f} MiB  test accuracy {100 * r['test_accuracy']:.2f} %")
        if fastest is None:
            print("  no PyTorch variant ran (is torch installed in this Python?)", flush=True)
        else:
            print(f"  ocellus is {row['speedup']:.2f}× the fastest PyTorch variant ({fastest}) on "
                  "training time", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
