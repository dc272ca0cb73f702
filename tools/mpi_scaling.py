#!/usr/bin/env python3
"""One process with 2 threads against 2 MPI ranks with 1 thread each, interleaved.

Trains the same run (one epoch) both ways, alternating A B A B so that a change of load on
the machine hits both alike, and prints the training images/s of each (from the run's
metrics.jsonl), their median ratio, and the all-reduce time per step that rank 0 reports.

    python3 tools/mpi_scaling.py --ocellus target/release/ocellus --pairs 5 -- \
        --model lenet5 --data fashion-mnist --limit-train 20000

Needs an `ocellus` built with `--features mpi` and Open MPI's mpirun. Standard library only.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile


def train(command, out):
    """Runs one training command into the run directory `out`; images/s and the
    all-reduce line (if any)."""
    done = subprocess.run(command + ["--out", out], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        record = json.loads(f.readline())
    reduce = re.search(r"all-reduce of .*", done.stdout)
    return record["images_per_second"], reduce.group(0) if reduce else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ocellus", default="target/release/ocellus")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("train_args", nargs="*", help="after --: flags of ocellus train")
    args = parser.parse_args()
    env_note = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    os.environ.update(env_note)
    train_args = ["train", "--epochs", "1"] + args.train_args
    alone = [args.ocellus, "--threads", "2"] + train_args
    ranks = ["mpirun", "-n", "2", "--oversubscribe", "--bind-to", "none",
             args.ocellus, "--threads", "1"] + train_args
    a, b, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            ips_a, _ = train(alone, os.path.join(tmp, f"a{i}"))
            ips_b, reduce = train(ranks, os.path.join(tmp, f"b{i}"))
            a.append(ips_a)
            b.append(ips_b)
            ratios.append(ips_b / ips_a)
            print(f"pair {i + 1}: 1 rank x 2 threads {ips_a:8.0f} img/s   "
                  f"2 ranks x 1 thread {ips_b:8.0f} img/s   ratio {ips_b / ips_a:.3f}   {reduce}",
                  flush=True)
    print(f"median: 1 rank x 2 threads {statistics.median(a):.0f} img/s, "
          f"2 ranks x 1 thread {statistics.median(b):.0f} img/s, "
          f"ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
