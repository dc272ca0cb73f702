"""Training runs: ``train`` trains a model as ``ocellus train`` does — same training loop,
same run directory (checkpoint per epoch, ``metrics.jsonl``, ``curves.png``,
``confusion.png``) — and returns a ``Run``; ``compare`` trains several models under one
budget and measures them as ``ocellus compare`` does."""

import os
import sys

from . import _ocellus
from ._ocellus import Run

#: The data sets ``train`` knows by name (``"folder"`` with ``data_dir``, or a folder path).
DATASETS = ("patterns", "fashion-mnist", "mnist", "cifar10", "folder")


def _free_run_dir(name):
    """``runs/NAME``, or ``runs/NAME-2``, ``runs/NAME-3``… if taken."""
    base = os.path.join("runs", name)
    path, k = base, 2
    while os.path.exists(path):
        path, k = f"{base}-{k}", k + 1
    return path


def _model_name(model):
    if isinstance(model, (str, os.PathLike)):
        model = os.fspath(model)
        return os.path.splitext(os.path.basename(model.rstrip("/")))[0] or model
    return "network"


def _data_spec(data, data_dir):
    """(name, data_dir, arrays) for the ``data`` argument."""
    if isinstance(data, (str, os.PathLike)):
        data = os.fspath(data)
        if data not in DATASETS and os.path.isdir(data):
            return "folder", data, None
        return data, data_dir, None
    try:
        x, y = data
    except (TypeError, ValueError):
        raise TypeError(
            "data must be a data set name (patterns, fashion-mnist, mnist, cifar10), "
            "a folder of class folders, or a pair (X, y) of images (N, C, H, W) and labels"
        ) from None
    return "arrays", None, (x, y)


def _epoch_line(record, total, eval_name):
    return (
        f"epoch {record['epoch']}/{total}: train loss {record['train_loss']:.4f} "
        f"acc {100 * record['train_accuracy']:.2f}% | {eval_name} loss "
        f"{record['val_loss']:.4f} acc {100 * record['val_accuracy']:.2f}% | "
        f"{record['images_per_second']:.0f} img/s, {record['seconds']:.1f} s"
    )


def _start(model, data, data_dir, image_size, epochs, batch_size, optimizer, lr,
           weight_decay, momentum, schedule, seed, val_fraction, augment, label_smoothing,
           limit_train, out, classes, test_data, diagnostics_every=None):
    name, data_dir, arrays = _data_spec(data, data_dir)
    if out is None:
        label = "arrays" if arrays is not None else os.path.basename(name)
        out = _free_run_dir(f"{_model_name(model)}-{label}")
    if test_data is not None:
        if arrays is None:
            raise ValueError("test_data is for data given as arrays (X, y)")
        test_data = tuple(test_data)
    if image_size is not None:
        image_size = list(image_size)
    return _ocellus.start_training(
        os.fspath(out), model, name, None if data_dir is None else os.fspath(data_dir),
        image_size, arrays, test_data, classes, epochs, batch_size, optimizer, lr,
        weight_decay, momentum, schedule, seed, val_fraction, augment, label_smoothing,
        limit_train, diagnostics_every,
    )


def _train_epochs(training, epochs, eval_name, verbose):
    """Trains the remaining epochs, printing a line per epoch; on Ctrl-C the epoch stops
    after the step under way, the last checkpoint stays, and KeyboardInterrupt is raised."""
    try:
        while training.epochs_done < epochs:
            record = training.train_epoch()
            if verbose:
                print(_epoch_line(record, epochs, eval_name), flush=True)
    except KeyboardInterrupt:
        done, where = training.epochs_done, training.dir
        training.close()
        if done == 0:
            print("interrupted: no epoch was complete, so nothing was kept", file=sys.stderr)
        else:
            print(f"interrupted: the checkpoint of epoch {done} in {where} is intact",
                  file=sys.stderr)
        raise
    except BaseException:
        training.close()
        raise


def train(model="lenet5", data="patterns", *, data_dir=None, image_size=None, epochs=5,
          batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=None, momentum=0.9,
          schedule="constant", seed=0, val_fraction=0.0, augment=False,
          label_smoothing=0.0, limit_train=None, out=None, classes=None, test_data=None,
          diagnostics_every=None, verbose=True):
    """Trains ``model`` on ``data`` as ``ocellus train`` does and returns the ``Run``.

    ``model``: a zoo name (``"lenet5"``, ``"smallcnn"``, ``"mlp"``, …), an architecture
    file (.toml/.json), a model file or run directory (its architecture, trained afresh),
    or a ``LayeredNeuralNetwork`` (trained in place: it holds the trained weights after).

    ``data``: ``"patterns"`` (built in), ``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``
    (files in ``data_dir``), a folder of class folders of images (``image_size`` = (C, H,
    W) they are resized to), or arrays ``(X, y)``: images (N, C, H, W) with values in
    [0, 1] and integer labels; 20 % of them are the test set unless ``test_data=(X, y)``
    is given; ``classes`` names the classes.

    The other arguments are ``ocellus train``'s flags: ``optimizer`` is ``"sgd"``,
    ``"adam"`` or ``"adamw"``; ``schedule`` is ``"constant"``, ``"step"``, ``"cosine"`` or
    ``"onecycle"``; ``val_fraction`` holds out a validation split (else the test set is
    reported each epoch); ``augment`` random-crops and flips; ``limit_train`` keeps the
    first N training images. ``out`` is the run directory (default
    ``runs/<model>-<data>``, numbered if taken). ``diagnostics_every=N`` records the
    gradient flow every N steps (``ocellus train --diagnostics``): ``Run.diagnostics``.

    A line is printed per epoch (``verbose=False``: none). Ctrl-C stops after the step
    under way with the last epoch's checkpoint intact, and raises ``KeyboardInterrupt``.
    Errors are ``ValueError`` (settings, shapes, files' contents) and
    ``FileNotFoundError``, with ocellus's message.
    """
    training = _start(model, data, data_dir, image_size, epochs, batch_size, optimizer, lr,
                      weight_decay, momentum, schedule, seed, val_fraction, augment,
                      label_smoothing, limit_train, out, classes, test_data,
                      diagnostics_every)
    eval_name = "val" if val_fraction > 0 else "test"
    if verbose:
        print(training.describe(), flush=True)
    _train_epochs(training, epochs, eval_name, verbose)
    directory = training.dir
    try:
        test_x, test_y, _ = training.finish()
    finally:
        training.close()
    run = Run.load(directory)
    run._set_test(test_x, test_y)
    if verbose:
        result = run.evaluate()
        print(f"test accuracy {100 * result['accuracy']:.2f}%, loss {result['loss']:.4f}; "
              f"run saved in {directory}", flush=True)
    return run


class Comparison:
    """Models trained under one budget and measured alike, as ``ocellus compare`` writes
    ``compare.json``: ``rows`` has a dict per model (model, parameters, macs_per_image,
    test_accuracy, test_loss, train_seconds, shifted_accuracy, run_dir, epochs);
    ``str()`` is the table ``ocellus compare`` prints; ``as_dict()`` the whole record."""

    def __init__(self, record):
        self._record = record

    @property
    def rows(self):
        """A dict per model, in the order trained."""
        return self._record["models"]

    @property
    def shifts(self):
        """The shifts measured, in pixels: ``shifted_accuracy[i]`` is at ``shifts[i]``."""
        return self._record["shifts"]

    def as_dict(self):
        """The whole record, shaped as ``ocellus compare`` writes ``compare.json``."""
        return self._record

    def __str__(self):
        import json
        return _ocellus.comparison_table(json.dumps(self._record))

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        import html
        return f"<pre>{html.escape(str(self))}</pre>"


def compare(models=("lenet5", "mlp-lenet5"), data="patterns", *, data_dir=None,
            image_size=None, epochs=5, batch_size=64, optimizer="adamw", lr=1e-3, seed=0,
            limit_train=None, max_shift=4, out=None, classes=None, test_data=None,
            verbose=True):
    """Trains every model of ``models`` on ``data`` under the same budget and measures
    each as ``ocellus compare`` does: parameters, multiply-adds per image, test accuracy,
    training time, and test accuracy with the test images shifted by 1…``max_shift``
    pixels (a convolution's answer to translation). Runs go to ``out/<model>`` (default
    ``runs/compare-<data>``). The arguments are ``train``'s; returns a ``Comparison``."""
    name, _, arrays = _data_spec(data, data_dir)
    if out is None:
        out = _free_run_dir(f"compare-{'arrays' if arrays is not None else os.path.basename(name)}")
    shifts = list(range(1, max_shift + 1))
    results, setting = [], None
    for model in models:
        training = _start(model, data, data_dir, image_size, epochs, batch_size, optimizer,
                          lr, None, 0.9, "constant", seed, 0.0, False, 0.0, limit_train,
                          os.path.join(os.fspath(out), _model_name(model)), classes,
                          test_data)
        if verbose:
            print(training.describe(), flush=True)
        _train_epochs(training, epochs, "test", verbose)
        result = training.measure(shifts)
        setting = setting or result.pop("setting")
        result.pop("setting", None)
        if verbose:
            shifted = ", ".join(f"{k} px {100 * a:.1f}%"
                                for k, a in zip(shifts, result["shifted_accuracy"]))
            print(f"{result['model']}: test accuracy {100 * result['test_accuracy']:.2f}%; "
                  f"shifted: {shifted}", flush=True)
        results.append(result)
    comparison = Comparison({
        "data": "arrays" if arrays is not None else name, "epochs": epochs,
        "batch_size": batch_size, "seed": seed, "shifts": shifts,
        "shift": _ocellus.shift_description(), "models": results, **setting,
    })
    if verbose:
        print(comparison, flush=True)
    return comparison
