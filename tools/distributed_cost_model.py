#!/usr/bin/env python3
"""The cost model of docs/DISTRIBUTED.md: ring all-reduce time per step at 10/25/100 GbE
and the scaling efficiency of data-parallel training from 2 to 64 nodes.

    python3 tools/distributed_cost_model.py

Inputs are stated below: the parameter counts (`ocellus summary`), the measured training
images/s of one node (`ocellus bench --mode train`, batch 64, 2 threads), and the
network's usable bandwidth and per-message latency. Standard library only.
"""

# name: (parameters, one node's training images/s at batch 64)
MODELS = {
    "LeNet-5 (1x28x28)": (61_706, None),
    "SmallCNN (1x28x28)": (421_834, None),
    "ResNet-20 (3x32x32)": (272_474, None),
}

# name: (usable bytes/s of a link, latency per message in seconds). Usable: ~90 % of the
# line rate after Ethernet/IP/TCP framing; latency: MPI over TCP on Ethernet, one hop
# through a switch.
NETWORKS = {
    "10 GbE": (10e9 / 8 * 0.9, 25e-6),
    "25 GbE": (25e9 / 8 * 0.9, 20e-6),
    "100 GbE": (100e9 / 8 * 0.9, 10e-6),
}

NODES = [2, 4, 8, 16, 32, 64]
PER_RANK_BATCH = 64


def ring_allreduce_seconds(values, nodes, bandwidth, latency, bytes_per_value=4):
    """Ring all-reduce (reduce-scatter then all-gather): every node sends and receives
    2·(p − 1)/p of the buffer, in 2·(p − 1) messages."""
    size = values * bytes_per_value
    return 2 * (nodes - 1) / nodes * size / bandwidth + 2 * (nodes - 1) * latency


def efficiency(step, comm):
    """Share of a step spent computing when the all-reduce follows backward (no overlap)."""
    return step / (step + comm)


def main(measured):
    for name, ips in measured.items():
        params, _ = MODELS[name]
        MODELS[name] = (params, ips)
    print("| model | parameters | bytes per all-reduce | step at batch 64 |")
    print("|---|---:|---:|---:|")
    for name, (params, ips) in MODELS.items():
        print(f"| {name} | {params:,} | {params * 4 / 1e6:.2f} MB | {PER_RANK_BATCH / ips * 1e3:.1f} ms |")
    print()
    header = " | ".join(f"{p} nodes" for p in NODES)
    for net, (bw, lat) in NETWORKS.items():
        print(f"**{net}**: all-reduce ms / scaling efficiency (per-rank batch {PER_RANK_BATCH})")
        print()
        print(f"| model | {header} |")
        print("|---|" + "---:|" * len(NODES))
        for name, (params, ips) in MODELS.items():
            step = PER_RANK_BATCH / ips
            cells = []
            for p in NODES:
                t = ring_allreduce_seconds(params, p, bw, lat)
                cells.append(f"{t * 1e3:.2f} / {100 * efficiency(step, t):.0f}%")
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    # One node's training images/s at batch 64, 2 threads (docs/DISTRIBUTED.md gives the
    # commands); edit to model another machine.
    main({
        "LeNet-5 (1x28x28)": 31_529,
        "SmallCNN (1x28x28)": 3_804,
        "ResNet-20 (3x32x32)": 294,
    })
