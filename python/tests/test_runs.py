"""ocellus.train and Run: training runs as `ocellus train` keeps them."""

import os
import shutil
import signal
import struct
import subprocess
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

import ocellus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def patterns_run(tmp_path_factory):
    """LeNet-5 trained briefly (two epochs, a second or two) on the built-in patterns."""
    out = tmp_path_factory.mktemp("runs") / "lenet5"
    return ocellus.train("lenet5", "patterns", epochs=2, lr=3e-3, out=out,
                         verbose=False)


def test_train_on_patterns_reaches_95_percent(patterns_run):
    result = patterns_run.evaluate()
    assert result["accuracy"] >= 0.95
    assert result["confusion"].shape == (8, 8)
    assert result["confusion"].sum() == 2000
    assert result["predictions"].shape == (2000,)


def test_run_directory_holds_what_the_cli_writes(patterns_run):
    for name in ["config.json", "model.safetensors", "metrics.jsonl", "curves.png",
                 "confusion.png"]:
        assert (Path(patterns_run.dir) / name).is_file(), name
    assert patterns_run.classes == list(ocellus.datasets.PATTERN_CLASSES)
    assert patterns_run.config["model"] == "lenet5"
    assert patterns_run.epochs == 2


def test_metrics_one_dict_per_epoch(patterns_run):
    metrics = patterns_run.metrics
    assert [m["epoch"] for m in metrics] == [1, 2]
    record = metrics[-1]
    assert set(record) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"}


def test_loaded_run_gives_the_same_predictions(patterns_run):
    x, _ = ocellus.datasets.patterns(n_per_class=2, seed=5)
    again = ocellus.Run.load(patterns_run.dir)
    np.testing.assert_array_equal(again.predict(x), patterns_run.predict(x))
    # The test set is found again from the run's settings.
    assert again.evaluate()["accuracy"] == patterns_run.evaluate()["accuracy"]


def test_predict_gives_probabilities(patterns_run):
    x, y = ocellus.datasets.patterns(n_per_class=4, seed=7)
    p = patterns_run.predict(x)
    assert p.shape == (32, 8) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p.argmax(axis=1) == y).mean() >= 0.9
    np.testing.assert_allclose(patterns_run.predict(x[0]), p[:1], atol=1e-6)


def test_feature_maps_filters_and_saliency_shapes(patterns_run):
    x, _ = ocellus.datasets.patterns(n_per_class=1, seed=1)
    maps = patterns_run.feature_maps(x[0])
    shapes = [m.shape for m in maps.values()]
    assert shapes[0] == (6, 28, 28)            # LeNet-5's first convolution, padding 2
    assert all(len(s) == 3 for s in shapes)
    assert patterns_run.filters().shape == (6, 1, 5, 5)
    second = list(maps)[2]                      # conv, pool, then the second convolution
    assert patterns_run.filters(second).shape[1] == 6
    assert patterns_run.saliency(x[0]).shape == (28, 28)
    assert patterns_run.saliency(x[0], target=3).shape == (28, 28)


def test_report_is_html(patterns_run, tmp_path):
    page = patterns_run.report(tmp_path / "report.html")
    assert page.startswith("<!DOCTYPE html>")
    assert (tmp_path / "report.html").read_text() == page
    assert patterns_run._repr_html_() == page


def write_gray_png(path, pixels):
    """A minimal 8-bit greyscale PNG of `pixels` (H, W) uint8."""
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def cli_binary():
    """The `ocellus` command built in this workspace, or None."""
    if os.environ.get("OCELLUS_CLI"):
        return os.environ["OCELLUS_CLI"]
    dirs = [os.environ.get("CARGO_TARGET_DIR"), REPO / "target"]
    for base in filter(None, dirs):
        for profile in ["release", "debug"]:
            path = Path(base) / profile / "ocellus"
            if path.is_file():
                return str(path)
    return shutil.which("ocellus")


def test_predict_agrees_with_the_cli(patterns_run, tmp_path):
    cli = cli_binary()
    if cli is None:
        pytest.skip("the ocellus command is not built (cargo build -p ocellus-cli)")
    x, _ = ocellus.datasets.patterns(n_per_class=1, seed=11)
    files = []
    for n in range(len(x)):
        pixels = np.round(x[n, 0] * 255).astype(np.uint8)
        files.append(tmp_path / f"{n}.png")
        write_gray_png(files[-1], pixels)
        x[n, 0] = pixels / 255.0
    out = subprocess.run([cli, "predict", "--checkpoint", str(patterns_run.dir),
                          "--top-k", "8", *map(str, files)],
                         check=True, capture_output=True, text=True).stdout
    probabilities = patterns_run.predict(x)
    classes = patterns_run.classes
    for line, p in zip(out.strip().splitlines(), probabilities):
        ranked = line.split(": ", 1)[1].split(", ")
        shown = {name: float(v.rstrip("%")) for name, v in (r.rsplit(" ", 1) for r in ranked)}
        assert len(shown) == 8, line
        for k, name in enumerate(classes):
            assert abs(100 * p[k] - shown[name]) <= 0.051, (line, k, p[k])


def test_train_a_layered_network_on_arrays_in_place(tmp_path):
    x, y = ocellus.datasets.patterns(n_per_class=300, seed=2)
    net = ocellus.LayeredNeuralNetwork([
        ocellus.ConvolutionalLayer(1, 8, kernel_size=3, padding=1, activation="relu"),
        ocellus.MaxPoolingLayer(2),
        ocellus.FlattenLayer(),
        ocellus.LinearLayer(8 * 14 * 14, 8),
    ])
    before = net.parameters.copy()
    run = ocellus.train(net, (x, y), epochs=5, batch_size=32, lr=3e-3, out=tmp_path / "run",
                        classes=list(ocellus.datasets.PATTERN_CLASSES), verbose=False)
    assert run.config["data"] == "arrays"
    assert run.evaluate()["accuracy"] >= 0.9
    # The network holds the trained weights, which the run's predictions come from.
    assert not np.array_equal(net.parameters, before)
    x_test, _ = ocellus.datasets.patterns(n_per_class=2, seed=9)
    logits = net.forward(run_normalised(run, x_test), mode="eval")
    np.testing.assert_allclose(softmax(logits), run.predict(x_test), atol=1e-5)
    # A run directory does not keep arrays: a reopened run needs them for evaluate.
    again = ocellus.Run.load(run.dir)
    with pytest.raises(ValueError, match="trained on arrays"):
        again.evaluate()
    assert again.evaluate((x_test, np.arange(16) % 8))["accuracy"] >= 0.75


def run_normalised(run, x):
    """x normalised with the statistics the run keeps in its model file."""
    import json
    header_len = struct.unpack("<Q", (Path(run.dir) / "model.safetensors").read_bytes()[:8])[0]
    header = json.loads((Path(run.dir) / "model.safetensors").read_bytes()[8:8 + header_len])
    stats = json.loads(header["__metadata__"]["normalization"])
    return ((x - stats["mean"][0]) / stats["std"][0]).astype(np.float32)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_progress_is_printed_per_epoch(tmp_path, capsys):
    ocellus.train("mlp", "patterns", epochs=2, limit_train=200, out=tmp_path / "run")
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "test accuracy" in out


def test_unknown_model_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'lenet6'; the zoo has"):
        ocellus.train("lenet6", out=tmp_path / "run", verbose=False)


def test_missing_data_dir_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ocellus.train(data="mnist", data_dir=tmp_path / "nowhere", out=tmp_path / "run",
                      verbose=False)


def test_unknown_dataset_and_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        ocellus.train(data="imagenet", out=tmp_path / "a", verbose=False)
    with pytest.raises(ValueError, match="--lr"):
        ocellus.train(lr=-1.0, out=tmp_path / "b", verbose=False)
    with pytest.raises(ValueError, match="needs data_dir"):
        ocellus.train(data="cifar10", out=tmp_path / "c", verbose=False)


def test_a_trained_run_directory_is_not_overwritten(patterns_run):
    with pytest.raises(ValueError, match="already holds a trained model"):
        ocellus.train(out=patterns_run.dir, verbose=False)


def test_ctrl_c_stops_at_a_step_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    # Ctrl-C once the first epoch's checkpoint is written.
    def interrupt_after_first_epoch():
        while not (out / "model.safetensors").exists():
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_first_epoch, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        ocellus.train("lenet5", epochs=1000, limit_train=500, out=out, verbose=False)
    run = ocellus.Run.load(out)
    assert 1 <= run.epochs < 1000
    assert len(run.metrics) == run.epochs
    assert not (out / "training.next.safetensors").exists()


def test_patterns_arrays():
    x, y = ocellus.datasets.patterns(n_per_class=3, seed=4)
    assert x.shape == (24, 1, 28, 28) and x.dtype == np.float32
    assert y.dtype == np.int64 and list(y[:8]) == list(range(8))
    assert 0.0 <= x.min() and x.max() <= 1.0
    again, _ = ocellus.datasets.patterns(n_per_class=3, seed=4)
    np.testing.assert_array_equal(x, again)
    assert len(ocellus.datasets.PATTERN_CLASSES) == 8


def test_summary_rows_and_tables(patterns_run):
    table = ocellus.summary("lenet5")
    assert table.total_params == 61_706             # LeNet-5 for 10 classes, as the zoo builds it
    first = table.rows[0]
    assert first["name"] == "0" and first["output_shape"] == [1, 6, 28, 28]
    assert "parameters" in str(table) and table._repr_html_().startswith("<table>")
    # The run's LeNet-5 has 8 outputs: 84·2 + 2 parameters fewer.
    assert ocellus.summary(patterns_run).total_params == 61_706 - 170
    assert ocellus.summary(patterns_run.dir).total_params == 61_706 - 170
    net = ocellus.LayeredNeuralNetwork([ocellus.FlattenLayer(), ocellus.LinearLayer(784, 8)])
    assert ocellus.summary(net, input=(1, 28, 28)).total_params == 784 * 8 + 8
    with pytest.raises(ValueError, match="needs input"):
        ocellus.summary(net)


def test_compare_a_cnn_with_a_fully_connected_network(tmp_path):
    comparison = ocellus.compare(["lenet5", "mlp-lenet5"], epochs=1, limit_train=400,
                                 max_shift=2, out=tmp_path / "cmp", verbose=False)
    assert [row["model"] for row in comparison.rows] == ["lenet5", "mlp-lenet5"]
    assert comparison.shifts == [1, 2]
    assert all(len(row["shifted_accuracy"]) == 2 for row in comparison.rows)
    assert "shift 2 px" in str(comparison)
    assert (tmp_path / "cmp" / "lenet5" / "model.safetensors").is_file()


def test_train_on_a_folder_of_class_folders(tmp_path):
    x, y = ocellus.datasets.patterns(n_per_class=40, seed=3)
    names = ocellus.datasets.PATTERN_CLASSES
    for n, label in enumerate(y):
        if label < 2:
            folder = tmp_path / "images" / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            write_gray_png(folder / f"{n}.png", np.round(x[n, 0] * 255).astype(np.uint8))
    run = ocellus.train("mlp", tmp_path / "images", image_size=(1, 28, 28), epochs=3,
                        out=tmp_path / "run", verbose=False)
    assert run.config["data"] == "folder"
    assert run.classes == list(names[:2])
    assert run.evaluate()["confusion"].sum() == 16           # 20 % of 80 images


def test_gradient_flow_diagnostics_every_n_steps(tmp_path, patterns_run):
    run = ocellus.train("lenet5", "patterns", epochs=1, batch_size=50, limit_train=500,
                        diagnostics_every=4, out=tmp_path / "run", verbose=False)
    records = run.diagnostics
    # 500 images in batches of 50: steps 1..10, diagnosed at 1, 5 and 9.
    assert [r["step"] for r in records] == [1, 5, 9]
    assert (tmp_path / "run" / "diagnostics.jsonl").is_file()
    layers = records[0]["layers"]
    assert [layer["name"] for layer in layers] == [str(i) for i in range(len(layers))]
    assert layers[0]["kind"] == "conv2d" and layers[0]["input_grad_norm"] is None
    for layer in layers[1:]:
        assert layer["input_grad_norm"] > 0
    weighted = [layer for layer in layers if layer["params"]]
    for layer in weighted:
        # The layer's norms combine its parameters' norms: ‖(a, b)‖² = ‖a‖² + ‖b‖².
        grads = sum(p["grad_norm"] ** 2 for p in layer["params"])
        assert abs(layer["grad_norm"] ** 2 - grads) <= 1e-4 * grads
    # A run trained without diagnostics has none.
    assert patterns_run.diagnostics == []
