"""Reference values for ocellus's losses, optimisers and learning-rate schedules, computed
by PyTorch. Writes crates/engine/tests/reference/optim_loss.json; tests/pytorch_optim_loss.rs reads it.

    python3 tools/pytorch_optim_loss.py
"""

import json
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
        "mse": mse_case(),
        "optimizers": optimizer_cases(),
        "schedules": schedule_cases(),
    }
    path = Path(__file__).resolve().parent.parent / "crates/engine/tests/reference/optim_loss.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
