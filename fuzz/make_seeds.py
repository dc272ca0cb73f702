#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets to fuzz/seeds/<target>/: a few small valid
files of each format, made here byte by byte (standard library only) so that the seeds
do not come from the code under test. Run from anywhere: python3 fuzz/make_seeds.py"""

import gzip
import json
import shutil
import struct
import zlib
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"


def write(target, name, data):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


# ---- IDX: magic, big-endian u32 dimensions, u8 values ---------------------------------

def idx_images(n, rows, cols):
    head = struct.pack(">IIII", 0x803, n, rows, cols)
    return head + bytes((i * 7) % 256 for i in range(n * rows * cols))


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


write("idx", "images-3x4x3", idx_images(3, 4, 3))
write("idx", "labels-3", idx_labels([7, 0, 9]))
write("idx", "images-2x5x5.gz", gzip.compress(idx_images(2, 5, 5), mtime=0))
write("idx", "labels-4.gz", gzip.compress(idx_labels([1, 2, 3, 4]), mtime=0))

# ---- CIFAR-10: records of a label byte and 3 planes of 32×32 --------------------------

def cifar_record(label, seed):
    return bytes([label]) + bytes((p + 50 * c + seed) % 256 for c in range(3) for p in range(1024))


write("cifar", "one-record.bin", cifar_record(3, 0))
write("cifar", "two-records.bin", cifar_record(0, 1) + cifar_record(9, 2))

# ---- PNG: signature, IHDR, (PLTE, tRNS), IDAT, IEND ------------------------------------

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, color, depth, rows, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


write("image", "gray-5x4.png", png(5, 4, 0, 8, [bytes(range(y * 50, y * 50 + 5)) for y in range(4)]))
write("image", "rgb-3x2.png", png(3, 2, 2, 8, [bytes([255, 0, 0, 0, 255, 0, 0, 0, 255])] * 2))
write("image", "rgba-2x2.png", png(2, 2, 6, 8, [bytes([10, 20, 30, 255, 40, 50, 60, 128])] * 2))
write("image", "gray16-2x2.png", png(2, 2, 0, 16, [bytes([0x12, 0x34, 0xff, 0x00])] * 2))
palette = chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255, 200, 30, 40])) + chunk(b"tRNS", bytes([0]))
write("image", "palette-4x2.png", png(4, 2, 3, 2, [bytes([0b00011011])] * 2, palette))
write("image", "gray-1bit-8x2.png", png(8, 2, 0, 1, [bytes([0b10101010]), bytes([0b01010101])]))
shutil.copy(ROOT / "crates/data/testdata/two_blocks.jpg", SEEDS / "image" / "two_blocks.jpg")

# ---- Architectures: the examples, and one layer of every kind in JSON -----------------

(SEEDS / "arch").mkdir(parents=True, exist_ok=True)
for example in sorted((ROOT / "examples/architectures").glob("*.toml")):
    shutil.copy(example, SEEDS / "arch" / example.name)
every_layer = {
    "name": "every-layer",
    "input": [3, 12, 12],
    "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel": [3, 3], "stride": 1,
         "padding": [1, 1, 0, 2], "dilation": 1, "groups": 1, "bias": True},
        {"type": "batchnorm2d", "features": 4},
        {"type": "leakyrelu", "negative_slope": 0.1},
        {"type": "maxpool2d", "kernel": 2, "stride": 2},
        {"type": "residual", "main": [{"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1},
                                      {"type": "tanh"}], "activation": "sigmoid"},
        {"type": "basicblock", "out_channels": 8, "stride": 2},
        {"type": "avgpool2d", "kernel": 1, "padding": 0},
        {"type": "sequential", "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 1, "groups": 4}]},
        {"type": "globalavgpool"},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.25},
        {"type": "linear", "in_features": 4, "out_features": 6},
        {"type": "batchnorm1d"},
        {"type": "relu"},
        {"type": "linear", "out_features": 3, "bias": False},
        {"type": "softmax"},
    ],
}
write("arch", "every-layer.json", json.dumps(every_layer))
every_block = {
    "name": "every-block",
    "input": [3, 12, 12],
    "layers": [
        {"type": "concat", "branches": [
            [{"type": "conv2d", "out_channels": 2, "kernel": 1}],
            [{"type": "conv2d", "out_channels": 2, "kernel": 3, "padding": 1}, {"type": "silu"}],
            [{"type": "maxpool2d", "kernel": 3, "stride": 1, "padding": 1}],
        ]},
        {"type": "dense", "layers": [[{"type": "conv2d", "out_channels": 2, "kernel": 3, "padding": 1}]]},
        {"type": "denseblock", "layers": 2, "growth": 2},
        {"type": "squeezeexcite", "reduction": 4, "activation": "hardswish"},
        {"type": "scale", "gate": [{"type": "globalavgpool"}, {"type": "flatten"}, {"type": "sigmoid"}]},
        {"type": "bottleneck", "out_channels": 8, "stride": 2, "expansion": 2},
        {"type": "separableconv2d", "out_channels": 6, "kernel": 3, "padding": 1},
        {"type": "mbconv", "out_channels": 6, "expand_ratio": 2, "kernel": 5},
        {"type": "convtranspose2d", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1,
         "output_padding": 1},
        {"type": "upsample", "scale": 2, "mode": "bilinear"},
        {"type": "hardswish"},
        {"type": "globalavgpool"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 3},
    ],
}
write("arch", "every-block.json", json.dumps(every_block))

# ---- Model files: safetensors with ocellus's metadata ---------------------------------

def safetensors(tensors, metadata):
    """tensors: (name, dtype, shape, bytes); the header JSON padded to 8 bytes."""
    header, data = {"__metadata__": metadata}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


def model(arch, tensors, classes):
    metadata = {
        "architecture": json.dumps(arch, separators=(",", ":")),
        "normalization": json.dumps({"mean": [0.5] * arch["input"][0], "std": [0.25] * arch["input"][0]}),
        "classes": json.dumps(classes),
        "epoch": "1",
        "format": "ocellus-model-1",
    }
    return safetensors(tensors, metadata)


linear = {"input": [1, 2, 2], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 2}]}
write("checkpoint", "linear.safetensors", model(linear, [
    ("1.weight", "F32", [2, 4], f32([0.1 * i for i in range(8)])),
    ("1.bias", "F32", [2], f32([0.5, -0.5])),
], ["no", "yes"]))
conv_bn = {"input": [1, 4, 4], "layers": [
    {"type": "conv2d", "out_channels": 2, "kernel": 3},
    {"type": "batchnorm2d"}, {"type": "relu"}, {"type": "flatten"},
    {"type": "linear", "out_features": 2}]}
write("checkpoint", "conv-batchnorm.safetensors", model(conv_bn, [
    ("0.weight", "F32", [2, 1, 3, 3], f32([0.05 * i for i in range(18)])),
    ("0.bias", "F32", [2], f32([0.0, 0.1])),
    ("1.weight", "F32", [2], f32([1.0, 1.0])),
    ("1.bias", "F32", [2], f32([0.0, 0.0])),
    ("1.running_mean", "F64", [2], struct.pack("<2d", 0.0, 0.5)),
    ("1.running_var", "F32", [2], f32([1.0, 2.0])),
    ("1.num_batches_tracked", "I64", [], struct.pack("<q", 12)),
    ("4.weight", "F32", [2, 8], f32([0.01 * i for i in range(16)])),
    ("4.bias", "F32", [2], f32([0.0, 0.0])),
], ["a", "b"]))
