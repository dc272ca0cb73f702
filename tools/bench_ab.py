#!/usr/bin/env python3
"""Compares two ocellus builds side by side: training throughput of LeNet-5 (batch 64 and
256) and SmallCNN (batch 128), the two binaries interleaved A B A B …, and the median of
the per-pair ratios new/old — timings on a shared machine drift too much for anything else.

    python3 tools/bench_ab.py OLD_BINARY NEW_BINARY [PAIRS]
"""
import json
import statistics
import subprocess
import sys

CASES = [("lenet5", "64"), ("lenet5", "256"), ("smallcnn", "128")]


def images_per_second(binary, model, batch):
    args = [binary, "bench", "--model", model, "--batch-size", batch, "--mode", "train",
            "--json", "--repeats", "10"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["results"][0]["images_per_second"]["median"]


def main():
    old, new = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    for model, batch in CASES:
        olds, news = [], []
        for _ in range(pairs):
            olds.append(images_per_second(old, model, batch))
            news.append(images_per_second(new, model, batch))
        ratios = [n / o for o, n in zip(olds, news)]
        print(f"{model} b{batch}: old {statistics.median(olds):.0f} img/s, "
              f"new {statistics.median(news):.0f} img/s, new/old per pair "
              f"{[round(r, 3) for r in ratios]}, median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
