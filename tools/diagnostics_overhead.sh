#!/bin/sh
# The cost of `ocellus train --diagnostics`, measured by interleaved A/B runs: A trains
# without diagnostics, B with them, alternately (A B A B …), so that a machine that gets
# busier or quieter meanwhile affects both alike. Each run trains one epoch; its time is
# the training loop's own (metrics.jsonl "seconds": no evaluation, no checkpoint). Prints
# every pair's ratio B/A and their median.
#
#     tools/diagnostics_overhead.sh [PAIRS] [EVERY] [MODEL] [LIMIT] [-- more train flags]
#
# e.g. tools/diagnostics_overhead.sh 9 10 lenet5 10000 (the defaults). Needs
# target/release/ocellus (cargo build --release) and Fashion-MNIST.
set -eu
PAIRS=${1:-9}
EVERY=${2:-10}
MODEL=${3:-lenet5}
LIMIT=${4:-10000}
[ $# -ge 4 ] && shift 4 || shift $#
[ "${1:-}" = "--" ] && shift
OCELLUS=${OCELLUS:-target/release/ocellus}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

seconds() {
    python3 -c 'import json,sys; print(sum(json.loads(l)["seconds"] for l in open(sys.argv[1])))' "$1/metrics.jsonl"
}

ratios=""
i=1
while [ "$i" -le "$PAIRS" ]; do
    "$OCELLUS" train --model "$MODEL" --data fashion-mnist --epochs 1 --limit-train "$LIMIT" \
        -o "$WORK/a$i" "$@" >/dev/null
    "$OCELLUS" train --model "$MODEL" --data fashion-mnist --epochs 1 --limit-train "$LIMIT" \
        --diagnostics --diagnostics-every "$EVERY" -o "$WORK/b$i" "$@" >/dev/null
    a=$(seconds "$WORK/a$i")
    b=$(seconds "$WORK/b$i")
    r=$(python3 -c "print(f'{$b / $a:.4f}')")
    echo "pair $i: without $a s, with $b s, ratio $r"
    ratios="$ratios $r"
    i=$((i + 1))
done
python3 -c "
import statistics, sys
r = sorted(float(v) for v in sys.argv[1:])
print(f'median ratio {statistics.median(r):.4f} over {len(r)} pairs (min {r[0]:.4f}, max {r[-1]:.4f})')
" $ratios
