#!/usr/bin/env python3
"""Checks `ocellus export --format onnx` against ocellus itself, with onnx and onnxruntime.

    python3 -m venv venv && venv/bin/pip install onnx onnxruntime numpy
    cargo build --release -p ocellus-cli && cargo build --release -p ocellus-train --example logits
    venv/bin/python tools/onnx_check.py lenet5 smallcnn tools/onnx_layers.toml runs/my-run

Each model given is a run directory or a model.safetensors file, used as it is, or a zoo
model name or an architecture file, which is first trained briefly on the built-in patterns
(`ocellus train --data patterns --epochs 1 --limit-train 256`) so that BatchNorm's running
statistics are not trivial. For each model the script

1. exports it (`ocellus export … --format onnx`, and again `--with-normalization`);
2. checks each file with `onnx.checker.check_model(full_check=True)` and checks its graph:
   IR version 8, opset 17, input `input` (N, C, H, W) with a symbolic batch size, output
   `logits`, the metadata (class names, normalisation, ocellus version);
3. compares onnxruntime's logits with ocellus's (`crates/train/examples/logits.rs`, in
   `Mode::Eval`) on random images, at batch 1 and batch 64 on normalised images, and at
   batch 64 on raw images for the file with the normalisation in its graph;
4. exports it with `--format pytorch` and compiles model.py (torch is not needed: its
   constants are read with `ast`; model.safetensors must hold the model file's tensors and
   metadata).

It prints, per model and comparison, the largest |logit| and the largest difference
relative to it, and exits with status 1 if any exceeds 1e-5 (float32 sums taken in another
order differ by a few ulps per operation; 1e-5 of the logits' scale leaves room for that
and nothing else). Only numpy, onnx and onnxruntime are needed: safetensors files are read
and written here directly.
"""
import argparse
import ast
import json
import pathlib
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent
RELATIVE_TOLERANCE = 1e-5


def read_safetensors(path):
    """(tensors as float32 arrays, metadata) of a safetensors file."""
    data = pathlib.Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", {}) or {}
    body = data[8 + length :]
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] != "F32":
            continue
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(entry["shape"])
    return tensors, metadata


def write_safetensors(path, tensors):
    """A safetensors file of float32 arrays."""
    header, offset, chunks = {}, 0, []
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def run(command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{result.stderr.strip()}")
    return result.stdout


def model_file(spec, args, work):
    """The model file of a run directory or file; a zoo name or architecture file is
    trained first."""
    path = pathlib.Path(spec)
    if path.is_dir():
        return path / "model.safetensors"
    if path.suffix == ".safetensors":
        return path
    out = work / f"train-{path.stem}"
    run(
        [args.ocellus, "train", "--model", spec, "--data", "patterns", "--epochs", 1]
        + ["--limit-train", args.limit_train, "--seed", args.seed, "--out", out]
    )
    return out / "model.safetensors"


def ocellus_logits(model, x, args, work):
    inputs, output = work / "inputs.safetensors", work / "logits.safetensors"
    write_safetensors(inputs, {"x": x})
    run([args.logits, model, inputs, output])
    return read_safetensors(output)[0]["logits"]


def check_graph(path, input_shape, classes, normalization, with_normalization):
    """check_model(full_check=True) and what the file promises about its graph."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    problems = []
    if model.ir_version != 8:
        problems.append(f"IR version {model.ir_version}, not 8")
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets != {"": 17}:
        problems.append(f"opsets {opsets}, not opset 17 alone")
    graph = model.graph
    inputs = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in graph.input]
    if inputs != [("input", ["N", *input_shape])]:
        problems.append(f"inputs {inputs}")
    outputs = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in graph.output]
    if outputs != [("logits", ["N", len(classes)])]:
        problems.append(f"outputs {outputs}")
    props = {p.key: p.value for p in model.metadata_props}
    if json.loads(props.get("classes", "null")) != classes:
        problems.append("metadata 'classes' differs from the model file's")
    if json.loads(props.get("normalization", "null")) != normalization:
        problems.append("metadata 'normalization' differs from the model file's")
    if props.get("normalization_in_graph") != str(with_normalization).lower():
        problems.append(f"metadata 'normalization_in_graph' is {props.get('normalization_in_graph')}")
    if not props.get("ocellus_version"):
        problems.append("no 'ocellus_version' in the metadata")
    ops = sorted({n.op_type for n in graph.node})
    return problems, ops, len(graph.initializer)


def compare(label, reference, other):
    """Prints and returns whether max |a − b| ≤ tolerance · max |a|, and the ratio."""
    scale = float(np.abs(reference).max())
    diff = float(np.abs(reference - other).max())
    relative = diff / scale if scale > 0 else diff
    ok = np.isfinite(diff) and relative <= RELATIVE_TOLERANCE and reference.shape == other.shape
    print(
        f"  {label:<34} max |logit| {scale:9.4f}   max abs diff {diff:.2e}   relative {relative:.2e}"
        f"   {'ok' if ok else 'FAILED'}"
    )
    return ok, relative


def check_model(spec, args, work, summary):
    model = model_file(spec, args, work)
    _, metadata = read_safetensors(model)
    architecture = json.loads(metadata["architecture"])
    normalization = json.loads(metadata["normalization"])
    classes = json.loads(metadata["classes"])
    name = architecture.get("name") or pathlib.Path(spec).stem
    shape = list(architecture["input"])
    rng = np.random.default_rng(args.seed)
    raw = rng.random((args.images, *shape), dtype=np.float32)
    mean = np.array(normalization["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    inv_std = (1.0 / np.array(normalization["std"], dtype=np.float32)).reshape(1, -1, 1, 1)
    x = ((raw - mean) * inv_std).astype(np.float32)  # as ocellus normalises

    ok, worst = True, 0.0
    files = {}
    for with_normalization in (False, True):
        path = work / f"{name}{'-raw' if with_normalization else ''}.onnx"
        flag = ["--with-normalization"] if with_normalization else []
        run([args.ocellus, "export", model, "--format", "onnx", "-o", path, *flag])
        problems, ops, initializers = check_graph(path, shape, classes, normalization, with_normalization)
        files[with_normalization] = path
        if not with_normalization:
            print(f"{name} ({model}): {initializers} initializers; {', '.join(ops)}")
        for problem in problems:
            print(f"  {path.name}: {problem}   FAILED")
            ok = False
    print(f"  check_model(full_check=True) passed for {files[False].name} and {files[True].name}")

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(files[False]), options, providers=["CPUExecutionProvider"])
    raw_session = ort.InferenceSession(str(files[True]), options, providers=["CPUExecutionProvider"])
    expected = ocellus_logits(model, x, args, work)
    expected_one = ocellus_logits(model, x[:1], args, work)
    for label, reference, got in [
        ("batch 1, normalised input", expected_one, session.run(["logits"], {"input": x[:1]})[0]),
        (f"batch {args.images}, normalised input", expected, session.run(["logits"], {"input": x})[0]),
        (f"batch {args.images}, raw input (--with-normalization)", expected, raw_session.run(["logits"], {"input": raw})[0]),
    ]:
        good, relative = compare(label, reference, got)
        ok &= good
        worst = max(worst, relative)

    # The PyTorch export: without torch, model.py is compiled and its constants read.
    torch_dir = work / f"{name}-pytorch"
    run([args.ocellus, "export", model, "--format", "pytorch", "-o", torch_dir])
    source = (torch_dir / "model.py").read_text(encoding="utf-8")
    tree = ast.parse(compile(source, str(torch_dir / "model.py"), "exec", ast.PyCF_ONLY_AST))
    constants = {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in ("CLASSES", "MEAN", "STD", "INPUT_SHAPE")
    }
    promised = {"CLASSES": classes, "MEAN": normalization["mean"], "STD": normalization["std"], "INPUT_SHAPE": tuple(shape)}
    exported, exported_metadata = read_safetensors(torch_dir / "model.safetensors")
    original, _ = read_safetensors(model)
    same_weights = exported.keys() == original.keys() and all(np.array_equal(exported[k], original[k]) for k in original)
    good = constants == promised and same_weights and exported_metadata == metadata
    print(f"  --format pytorch: model.py compiles, constants and weights as in the model file   {'ok' if good else 'FAILED'}")
    ok &= good
    summary.append((name, worst, ok))
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="run directories, model files, zoo names or architecture files")
    parser.add_argument("--ocellus", default=ROOT / "target/release/ocellus", type=pathlib.Path, help="the ocellus binary")
    parser.add_argument(
        "--logits", default=ROOT / "target/release/examples/logits", type=pathlib.Path, help="the built logits example"
    )
    parser.add_argument("--images", type=int, default=64, help="batch size of the larger comparison")
    parser.add_argument("--limit-train", type=int, default=256, help="training images for models trained here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime's threads")
    args = parser.parse_args()
    for binary in (args.ocellus, args.logits):
        if not binary.is_file():
            sys.exit(f"{binary}: not built; cargo build --release -p ocellus-cli && cargo build --release -p ocellus-train --example logits")
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}; tolerance {RELATIVE_TOLERANCE:g} x max |logit|")
    ok, summary = True, []
    with tempfile.TemporaryDirectory() as work:
        for spec in args.models:
            ok &= check_model(spec, args, pathlib.Path(work), summary)
    print("\nlargest relative difference per model:")
    for name, worst, good in summary:
        print(f"  {name:<20} {worst:.2e}  {'ok' if good else 'FAILED'}")
    if not ok:
        sys.exit("some exports fail their checks or give logits beyond the tolerance")


if __name__ == "__main__":
    main()
