#!/usr/bin/env python3
"""Trains a model exported by `ocellus export --format pytorch` further with PyTorch: on a
GPU when there is one, and data-parallel on several processes or machines when started by
`torchrun` (DistributedDataParallel). The result is saved with the exported metadata, so
ocellus can evaluate, inspect and export it again.

    ocellus train --model lenet5 --data fashion-mnist --epochs 2 --out runs/lenet5-fmnist
    ocellus export runs/lenet5-fmnist --format pytorch -o lenet5-torch
    python3 examples/pytorch_finetune.py lenet5-torch --epochs 1 --out finetuned.safetensors
    torchrun --nproc_per_node=2 examples/pytorch_finetune.py lenet5-torch --epochs 1 --out finetuned.safetensors
    ocellus eval --checkpoint finetuned.safetensors --data fashion-mnist

The data are IDX files (MNIST or Fashion-MNIST; --data-dir), normalised with the exported
model's MEAN and STD, as ocellus normalised them in training. Needs torch and numpy.
"""
import argparse
import gzip
import importlib.util
import os
import pathlib
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def read_idx(path):
    """An IDX file (optionally gzipped) as a numpy array."""
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def idx_split(data_dir, prefix):
    for suffix in ("", ".gz"):
        images = data_dir / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = data_dir / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.is_file() and labels.is_file():
            x = torch.from_numpy(read_idx(images).astype(np.float32) / 255.0).unsqueeze(1)
            return x, torch.from_numpy(read_idx(labels).astype(np.int64))
    sys.exit(f"{data_dir}: no {prefix}-images-idx3-ubyte(.gz) and {prefix}-labels-idx1-ubyte(.gz)")


def import_exported(directory):
    spec = importlib.util.spec_from_file_location("exported_model", directory / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=pathlib.Path, help="a directory written by ocellus export --format pytorch")
    parser.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("finetuned.safetensors"))
    args = parser.parse_args()

    # torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without it this is one process.
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")

    exported = import_exported(args.export)
    model = exported.load(device=device).train()
    net = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) if distributed else model

    x, y = idx_split(args.data_dir, "train")
    x_test, y_test = idx_split(args.data_dir, "t10k")
    train = TensorDataset(exported.normalize(x), y)
    sampler = DistributedSampler(train, shuffle=True, seed=0) if distributed else None
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()

    for epoch in range(1, args.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        total, count = 0.0, 0
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = loss_fn(net(images), labels)
            loss.backward()  # under DDP, gradients are averaged across processes here
            optimizer.step()
            total += loss.item() * len(labels)
            count += len(labels)
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(b.to(device)).argmax(1).cpu() for b in exported.normalize(x_test).split(1000)])
        accuracy = (predicted == y_test).float().mean().item()
        if rank == 0:
            world = dist.get_world_size() if distributed else 1
            print(f"epoch {epoch}: train loss {total / count:.4f} (rank 0's shard), test accuracy {100 * accuracy:.2f}% "
                  f"[{world} process(es), {device}]")
    if rank == 0:
        exported.save(model, args.out)
        print(f"saved {args.out}; evaluate it with: ocellus eval --checkpoint {args.out} --data DATASET")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
