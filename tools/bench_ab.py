#!/usr/bin/env python3
"""Compares two ocellus builds side by side: throughput of each case (by default training
LeNet-5 at batch 64 and 256 and SmallCNN at batch 128), the two binaries interleaved
A B A B …, and the median of the per-pair ratios new/old — timings on a shared machine
drift too much for anything else.

    python3 tools/bench_ab.py OLD_BINARY NEW_BINARY [PAIRS] [MODEL:BATCH:MODE,...]

e.g. `resnet20:128:train,resnet20:256:infer,vgg:128:train`; extra `ocellus bench`
arguments may follow a `--`.
"""
import json
import statistics
import subprocess
import sys

CASES = "lenet5:64:train,lenet5:256:train,smallcnn:128:train"


def images_per_second(binary, model, batch, mode, extra):
    args = [binary, *extra, "bench", "--model", model, "--batch-size", batch, "--mode", mode,
            "--json", "--repeats", "10"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["results"][0]["images_per_second"]["median"]


def main():
    argv, extra = sys.argv, []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    old, new = argv[1], argv[2]
    pairs = int(argv[3]) if len(argv) > 3 else 5
    cases = argv[4] if len(argv) > 4 else CASES
    for model, batch, mode in (case.split(":") for case in cases.split(",")):
        olds, news = [], []
        for _ in range(pairs):
            olds.append(images_per_second(old, model, batch, mode, extra))
            news.append(images_per_second(new, model, batch, mode, extra))
        ratios = [n / o for o, n in zip(olds, news)]
        print(f"{model} b{batch} {mode}: old {statistics.median(olds):.0f} img/s, "
              f"new {statistics.median(news):.0f} img/s, new/old per pair "
              f"{[round(r, 3) for r in ratios]}, median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
