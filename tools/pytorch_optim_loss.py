"""Reference values for ocellus's losses, optimisers and learning-rate schedules, computed
by PyTorch. Writes crates/engine/tests/reference/optim_loss.json; tests/pytorch_optim_loss.rs reads it.

    python3 tools/pytorch_optim_loss.py
"""

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

torch.manual_seed(20240501)


def floats(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def cross_entropy_cases():
    cases = []
    for n, k, smoothing, scale in [(4, 5, 0.0, 2.0), (4, 5, 0.1, 2.0), (3, 10, 0.25, 30.0)]:
        logits = (torch.randn(n, k) * scale).requires_grad_()
        targets = torch.randint(0, k, (n,))
        loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)
        loss.backward()
        cases.append(
            {
                "shape": [n, k],
                "logits": floats(logits),
                "targets": targets.tolist(),
                "label_smoothing": smoothing,
                "loss": float(loss.detach()),
                "dlogits": floats(logits.grad),
            }
        )
    return cases


def number(v):
    """A float for JSON, or the string "nan" (JSON has no NaN)."""
    return "nan" if math.isnan(v) else v


def cross_entropy_option_cases():
    """F.cross_entropy's reduction, weight, ignore_index and label_smoothing, alone and
    together. "dloss" is the upstream gradient the loss is multiplied by before backward
    (one per sample for reduction "none"); "weight" and "ignore_index" are null when not
    given. NaN (a mean over no counted target) is written "nan".

    The inputs are float32 values, but PyTorch computes these cases in float64: a
    per-sample loss `logsumexp(x) − x[t]` can be a small difference of large numbers,
    which float32 rounds to about 1e-5 of itself, while ocellus accumulates in f64 — the
    comparison is with the exact values, at the tolerances of the float32 cases above."""
    k = 5
    # (name, N, reduction, weighted, ignore_index, label_smoothing, targets or None)
    options = [
        ("sum", 6, "sum", False, None, 0.0, None),
        ("none", 6, "none", False, None, 0.0, None),
        ("weighted_mean", 6, "mean", True, None, 0.0, None),
        ("weighted_sum", 6, "sum", True, None, 0.0, None),
        ("weighted_none", 6, "none", True, None, 0.0, None),
        ("ignore_class_mean", 6, "mean", False, 1, 0.0, [1, 0, 1, 4, 2, 1]),
        ("ignore_beyond_k_weighted_mean", 6, "mean", True, k, 0.0, [k, 3, 0, k, 2, 4]),
        ("ignore_none", 6, "none", False, 2, 0.0, [2, 0, 1, 2, 3, 4]),
        ("smoothing_sum", 6, "sum", False, None, 0.3, None),
        ("smoothing_none", 6, "none", False, None, 0.2, None),
        ("weighted_smoothing_mean", 6, "mean", True, None, 0.15, None),
        ("weighted_smoothing_sum", 6, "sum", True, None, 0.15, None),
        ("weighted_smoothing_none", 6, "none", True, None, 0.25, None),
        ("weighted_smoothing_ignore_mean", 6, "mean", True, 3, 0.1, [3, 0, 1, 3, 4, 2]),
        ("all_ignored_mean", 3, "mean", False, 1, 0.0, [1, 1, 1]),
        ("all_ignored_smoothing_mean", 3, "mean", True, 1, 0.1, [1, 1, 1]),
        ("all_ignored_sum", 3, "sum", True, 1, 0.1, [1, 1, 1]),
    ]
    cases = []
    # Their own seed, so that the cases after these draw what they always drew.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        weight = torch.rand(k) * 1.8 + 0.2
        for name, n, reduction, weighted, ignore_index, smoothing, targets in options:
            logits = (torch.randn(n, k) * 2).double().requires_grad_()
            targets = torch.tensor(targets) if targets is not None else torch.randint(0, k, (n,))
            loss = F.cross_entropy(
                logits,
                targets,
                weight=weight.double() if weighted else None,
                ignore_index=-100 if ignore_index is None else ignore_index,
                reduction=reduction,
                label_smoothing=smoothing,
            )
            dloss = (torch.randn(n) if reduction == "none" else torch.tensor(1.0)).double()
            (loss * dloss).sum().backward()
            cases.append(
                {
                    "name": name,
                    "shape": [n, k],
                    "logits": floats(logits),
                    "targets": targets.tolist(),
                    "reduction": reduction,
                    "weight": floats(weight) if weighted else None,
                    "ignore_index": ignore_index,
                    "label_smoothing": smoothing,
                    "dloss": [number(v) for v in floats(dloss)],
                    "loss": [number(v) for v in floats(loss)],
                    "dlogits": [number(v) for v in floats(logits.grad)],
                }
            )
    return cases


def mse_case():
    p = torch.randn(2, 3, requires_grad=True)
    t = torch.randn(2, 3)
    loss = F.mse_loss(p, t)
    loss.backward()
    return {
        "shape": [2, 3],
        "prediction": floats(p),
        "target": floats(t),
        "loss": float(loss.detach()),
        "dprediction": floats(p.grad),
    }


# (case name, ocellus kind, ocellus settings, torch constructor)
OPTIMIZERS = [
    ("sgd", "sgd", {"lr": 0.1}, lambda ps: torch.optim.SGD(ps, lr=0.1)),
    (
        "sgd_momentum_wd",
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01),
    ),
    (
        "sgd_dampening",
        "sgd",
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3),
    ),
    (
        "sgd_nesterov",
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.001},
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001),
    ),
    ("adam", "adam", {"lr": 0.01}, lambda ps: torch.optim.Adam(ps, lr=0.01)),
    (
        "adam_l2",
        "adam",
        {"lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1},
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    ),
    ("adamw", "adamw", {"lr": 0.01}, lambda ps: torch.optim.AdamW(ps, lr=0.01)),
    (
        "adamw_strong_decay",
        "adamw",
        {"lr": 0.02, "weight_decay": 0.5},
        lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=0.5),
    ),
]

STEPS = 6


def optimizer_cases():
    cases = []
    for name, kind, settings, make in OPTIMIZERS:
        # The parameters of a Linear(3 -> 2): weight (2, 3) and bias (2,).
        weight = torch.randn(2, 3).requires_grad_()
        bias = torch.randn(2).requires_grad_()
        case = {
            "name": name,
            "kind": kind,
            "settings": settings,
            "weight": floats(weight),
            "bias": floats(bias),
            "steps": [],
        }
        opt = make([weight, bias])
        for _ in range(STEPS):
            gw, gb = torch.randn(2, 3), torch.randn(2)
            weight.grad, bias.grad = gw.clone(), gb.clone()
            opt.step()
            case["steps"].append(
                {
                    "dweight": floats(gw),
                    "dbias": floats(gb),
                    "weight": floats(weight),
                    "bias": floats(bias),
                }
            )
        state = {}
        for pname, p in [("weight", weight), ("bias", bias)]:
            for key, value in opt.state[p].items():
                if key != "step":
                    state[f"{pname}.{key}"] = floats(value)
        case["state"] = state
        cases.append(case)
    return cases


def schedule_cases():
    def lrs(make_scheduler, base_lr, count, momentum=0.0):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=base_lr, momentum=momentum)
        scheduler = make_scheduler(opt)
        out = []
        for _ in range(count):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
        return out

    sched = torch.optim.lr_scheduler
    return [
        {
            "kind": "step_lr",
            "base_lr": 0.1,
            "step_size": 3,
            "gamma": 0.5,
            "lrs": lrs(lambda o: sched.StepLR(o, step_size=3, gamma=0.5), 0.1, 12),
        },
        {
            "kind": "cosine",
            "base_lr": 0.1,
            "t_max": 10,
            "eta_min": 0.001,
            "lrs": lrs(lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 0.1, 21),
        },
        {
            "kind": "one_cycle",
            "max_lr": 0.1,
            "total_steps": 100,
            "lrs": lrs(
                lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=100), 0.1, 100, momentum=0.9
            ),
        },
        {
            "kind": "one_cycle",
            "max_lr": 0.05,
            "total_steps": 37,
            "lrs": lrs(
                lambda o: sched.OneCycleLR(o, max_lr=0.05, total_steps=37), 0.05, 37, momentum=0.9
            ),
        },
    ]


def main():
    out = {
        "torch_version": torch.__version__,
        "cross_entropy": cross_entropy_cases(),
        "cross_entropy_options": cross_entropy_option_cases(),
        "mse": mse_case(),
        "optimizers": optimizer_cases(),
        "schedules": schedule_cases(),
    }
    path = Path(__file__).resolve().parent.parent / "crates/engine/tests/reference/optim_loss.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
