"""LeNet-5 training throughput at batch 64: driven from Python against `ocellus bench`.

    python python/bench.py [--rounds 5] [--cli PATH]

Three measurements, interleaved A B C A B C … so that a machine busy with something else
slows all of them alike:

A. `ocellus bench --model lenet5 --mode train --batch-size 64 --json`: the engine's
   training step (forward, cross-entropy, backward, AdamW step) on a fixed batch;
B. `ocellus.train("lenet5", "patterns", batch_size=64, …)`: the training loop of
   `ocellus train` started from Python (shuffled batches, Ctrl-C checked between steps);
   images/s as its metrics record them;
C. the lecture's loop by hand on a LayeredNeuralNetwork of LeNet-5's layers: per step
   `zero_grad`, `forward`, `cross_entropy`, `backward`, `AdamW.step`, each a call from
   Python with NumPy arrays in and out.

Prints the median images/s of each, the median ratios B/A and C/A, and C's overhead per
step over A in milliseconds. A measurement, not a test: numbers vary with the machine.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import ocellus

BATCH = 64
REPO = Path(__file__).resolve().parents[1]


def find_cli(given):
    if given:
        return given
    for base in filter(None, [os.environ.get("CARGO_TARGET_DIR"), REPO / "target"]):
        path = Path(base) / "release" / "ocellus"
        if path.is_file():
            return str(path)
    found = shutil.which("ocellus")
    if found:
        return found
    raise SystemExit("no release build of the ocellus command: cargo build --release -p ocellus-cli, "
                     "or give --cli PATH")


def cli_images_per_second(cli, repeats):
    out = subprocess.run([cli, "bench", "--model", "lenet5", "--mode", "train",
                          "--batch-size", str(BATCH), "--repeats", str(repeats), "--json"],
                         check=True, capture_output=True, text=True).stdout
    (result,) = json.loads(out)["results"]
    return result["images_per_second"]["median"]


def train_images_per_second(scratch, images):
    run = ocellus.train("lenet5", "patterns", epochs=1, batch_size=BATCH, limit_train=images,
                        out=tempfile.mkdtemp(dir=scratch), verbose=False)
    return run.metrics[0]["images_per_second"]


def lecture_lenet5():
    return ocellus.LayeredNeuralNetwork([
        ocellus.ConvolutionalLayer(1, 6, kernel_size=5, padding=2, activation="relu"),
        ocellus.MaxPoolingLayer(2),
        ocellus.ConvolutionalLayer(6, 16, kernel_size=5, activation="relu"),
        ocellus.MaxPoolingLayer(2),
        ocellus.FlattenLayer(),
        ocellus.FullyConnectedLayer(16 * 5 * 5, 120, activation="relu"),
        ocellus.FullyConnectedLayer(120, 84, activation="relu"),
        ocellus.LinearLayer(84, 10),
    ])


def lecture_loop_images_per_second(net, optimizer, x, y, steps):
    def step():
        net.zero_grad()
        _, dlogits = ocellus.cross_entropy(net.forward(x), y)
        net.backward(dlogits)
        optimizer.step(net)

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cli", help="the ocellus command (default: a release build)")
    args = parser.parse_args()
    cli = find_cli(args.cli)
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    net = lecture_lenet5()
    optimizer = ocellus.AdamW(lr=1e-3)
    a, b, c = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            a.append(cli_images_per_second(cli, repeats=30))
            b.append(train_images_per_second(scratch, images=BATCH * 60))
            c.append(lecture_loop_images_per_second(net, optimizer, x, y, steps=30))
            print(f"round {round_ + 1}: A {a[-1]:8.0f}  B {b[-1]:8.0f}  C {c[-1]:8.0f} images/s",
                  flush=True)
    med = statistics.median
    print(f"\nLeNet-5, batch {BATCH}, training, median images/s over {args.rounds} rounds:")
    print(f"  A ocellus bench (CLI)             {med(a):8.0f}")
    print(f"  B ocellus.train (Python)          {med(b):8.0f}   B/A = {med(bi / ai for ai, bi in zip(a, b)):.3f}")
    print(f"  C lecture loop by hand (Python)   {med(c):8.0f}   C/A = {med(ci / ai for ai, ci in zip(a, c)):.3f}")
    overhead = [1e3 * (BATCH / ci - BATCH / ai) for ai, ci in zip(a, c)]
    print(f"  C's overhead per step over A: {med(overhead):.3f} ms "
          f"(a step of A takes {1e3 * BATCH / med(a):.3f} ms)")


if __name__ == "__main__":
    main()
