"""The lecture's demos, in order, on ocellus's Python API.

    python examples/lecture.py [--out DIR]

1. explore the image patterns          5. plot the training curves
2. create and test a convolutional     6. visualise feature maps
   layer (finite differences)          7. test different architectures
3. build the complete layered CNN      8. compare the CNN with a fully
4. train it, with progress                connected network

Figures go to DIR (default: lecture-figures/): drawn with matplotlib when it is
installed, else as ocellus's own PNGs. Runs go to DIR/runs. Takes well under a minute.
"""

import argparse
import os
import shutil
import struct
import zlib

import numpy as np

import ocellus

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None


def heading(text):
    print(f"\n=== {text} ===", flush=True)


def save_gray_png(path, pixels):
    """An 8-bit greyscale PNG of `pixels` (H, W) in [0, 1], for when matplotlib is absent."""
    rows = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
    h, w = rows.shape
    raw = b"".join(b"\x00" + rows[r].tobytes() for r in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lecture-figures", help="directory for figures and runs")
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    runs = os.path.join(out, "runs")
    shutil.rmtree(runs, ignore_errors=True)
    figure = lambda name: os.path.join(out, name)  # noqa: E731
    if plt is None:
        print("(matplotlib is not installed: figures are ocellus's own PNGs)")
    ocellus.manual_seed(0)

    # 1. The image patterns: eight classes of 28×28 greyscale pictures.
    heading("1. Explore different image patterns")
    classes = ocellus.datasets.PATTERN_CLASSES
    x, y = ocellus.datasets.patterns(n_per_class=4, seed=0)
    print(f"{len(classes)} classes: {', '.join(classes)}")
    print(f"images {x.shape} {x.dtype}, values in [{x.min():.2f}, {x.max():.2f}]")
    grid = x[:32, 0].reshape(4, 8, 28, 28).transpose(0, 2, 1, 3).reshape(4 * 28, 8 * 28)
    if plt:
        fig, axes = plt.subplots(4, 8, figsize=(10, 5.5))
        for ax, image, label in zip(axes.flat, x, y):
            ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(classes[label], fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(figure("1-patterns.png"))
        plt.close(fig)
    else:
        save_gray_png(figure("1-patterns.png"), np.kron(grid, np.ones((3, 3))))
    print(f"wrote {figure('1-patterns.png')}")

    # 2. One convolutional layer: forward, backward, and the finite-difference check.
    heading("2. Create and test a convolutional layer")
    # Without an activation the layer is linear in x, so central differences are exact up
    # to float32 rounding; with a ReLU, an input within h of a kink would spoil them.
    conv = ocellus.ConvolutionalLayer(1, 2, kernel_size=3, stride=1, padding=1, activation=None)
    image = x[:1]                                           # (1, 1, 28, 28)
    feature = conv.forward(image)
    print(f"ConvolutionalLayer(1 → 2, 3×3, padding 1): {image.shape} → {feature.shape}, "
          f"{conv.parameters.size} parameters (2·1·3·3 weights + 2 biases)")
    rng = np.random.default_rng(0)
    small = rng.standard_normal((1, 1, 5, 5))
    y_small = conv.forward(small)
    conv.zero_grad()
    dx = conv.backward(np.ones_like(y_small))             # d(Σy)/dx
    numeric = ocellus.finite_difference_gradient(conv.forward, small, h=1e-2)
    print(f"dL/dx: analytical vs finite differences, largest difference "
          f"{np.abs(dx - numeric).max():.2e}")
    report = ocellus.gradcheck(conv, small)
    print(report)

    # 3. The complete CNN, layer by layer.
    heading("3. Build the complete CNN with the layered architecture")
    net = ocellus.LayeredNeuralNetwork([
        ocellus.ConvolutionalLayer(1, 8, kernel_size=3, padding=1, activation="relu"),
        ocellus.MaxPoolingLayer(pool_size=2),
        ocellus.ConvolutionalLayer(8, 16, kernel_size=3, padding=1, activation="relu"),
        ocellus.MaxPoolingLayer(pool_size=2),
        ocellus.FlattenLayer(),
        ocellus.FullyConnectedLayer(16 * 7 * 7, 32, activation="relu"),
        ocellus.LinearLayer(32, len(classes)),
    ])
    logits = net.forward(x[:4])
    for layer, output in zip(net.layers, net.outputs):
        print(f"  {layer!r:70} → {output.shape}")
    print(ocellus.summary(net, input=(1, 28, 28)))
    tiny = ocellus.LayeredNeuralNetwork([
        ocellus.ConvolutionalLayer(1, 2, kernel_size=3, padding=1, activation="relu"),
        ocellus.MaxPoolingLayer(2),
        ocellus.FlattenLayer(),
        ocellus.LinearLayer(2 * 3 * 3, 3),
    ])
    print("end to end, every parameter:", ocellus.gradcheck(tiny, rng.standard_normal((2, 1, 6, 6))))
    loss, _ = ocellus.cross_entropy(logits, y[:4])
    print(f"untrained: loss {loss:.3f} (chance: ln 8 = {np.log(8):.3f})")

    # 4. Training: first one hand-written step, then ocellus.train's loop with progress.
    heading("4. Train the CNN for image classification")
    optimizer = ocellus.Adam(lr=1e-3)
    net.zero_grad()
    loss, dlogits = ocellus.cross_entropy(net.forward(x), y)
    net.backward(dlogits)
    optimizer.step(net)
    print(f"one step by hand (forward, cross_entropy, backward, step): loss {loss:.3f}")
    run = ocellus.train(net, "patterns", epochs=3, batch_size=32, lr=2e-3,
                        out=os.path.join(runs, "lecture-cnn"))
    accuracy = run.evaluate()["accuracy"]
    print(f"the CNN classifies {100 * accuracy:.1f}% of 2000 unseen images correctly "
          f"(chance: {100 / len(classes):.1f}%)")

    # 5. Training curves.
    heading("5. Plot the training curves")
    metrics = run.metrics
    if plt:
        epochs = [m["epoch"] for m in metrics]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
        left.plot(epochs, [m["train_loss"] for m in metrics], "o-", label="train")
        left.plot(epochs, [m["val_loss"] for m in metrics], "o-", label="test")
        left.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
        right.plot(epochs, [m["train_accuracy"] for m in metrics], "o-", label="train")
        right.plot(epochs, [m["val_accuracy"] for m in metrics], "o-", label="test")
        right.set(title="Accuracy", xlabel="epoch", ylabel="fraction correct")
        left.legend()
        fig.tight_layout()
        fig.savefig(figure("5-curves.png"))
        plt.close(fig)
    else:
        shutil.copy(os.path.join(run.dir, "curves.png"), figure("5-curves.png"))
    print(f"wrote {figure('5-curves.png')}")

    # 6. Feature maps: what each convolution makes of one image.
    heading("6. Visualise CNN feature maps")
    sample = x[2]
    maps = run.feature_maps(sample)
    for name, m in maps.items():
        print(f"  layer {name}: {m.shape[0]} maps of {m.shape[1]}×{m.shape[2]}")
    if plt:
        layers = list(maps.items())
        fig, axes = plt.subplots(len(layers), 8, figsize=(10, 1.4 * len(layers)))
        for row, (name, m) in zip(axes, layers):
            for k, ax in enumerate(row):
                ax.imshow(m[k], cmap="viridis")
                ax.set_title(f"{name}:{k}", fontsize=7)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(figure("6-feature-maps.png"))
        plt.close(fig)
    else:
        run.save_feature_maps(sample, figure("6-feature-maps.png"))
    run.save_filters(figure("6-filters.png"))
    print(f"wrote {figure('6-feature-maps.png')} and {figure('6-filters.png')}")
    print(f"predicted: {classes[int(run.predict(sample).argmax())]} (true: {classes[y[2]]})")

    # 7. Different architectures under one small budget.
    heading("7. Test different CNN architectures")
    variants = {
        "one conv": [
            ocellus.ConvolutionalLayer(1, 8, kernel_size=3, padding=1, activation="relu"),
            ocellus.MaxPoolingLayer(4),
            ocellus.FlattenLayer(),
            ocellus.LinearLayer(8 * 7 * 7, len(classes)),
        ],
        "two convs": [
            ocellus.ConvolutionalLayer(1, 8, kernel_size=3, padding=1, activation="relu"),
            ocellus.MaxPoolingLayer(2),
            ocellus.ConvolutionalLayer(8, 16, kernel_size=3, padding=1, activation="relu"),
            ocellus.MaxPoolingLayer(2),
            ocellus.FlattenLayer(),
            ocellus.LinearLayer(16 * 7 * 7, len(classes)),
        ],
        "5×5 kernels": [
            ocellus.ConvolutionalLayer(1, 6, kernel_size=5, padding=2, activation="relu"),
            ocellus.MaxPoolingLayer(2),
            ocellus.FlattenLayer(),
            ocellus.FullyConnectedLayer(6 * 14 * 14, 32, activation="relu"),
            ocellus.LinearLayer(32, len(classes)),
        ],
    }
    print(f"{'architecture':14} {'parameters':>10} {'test accuracy':>14}")
    for label, layers in variants.items():
        model = ocellus.LayeredNeuralNetwork(layers)
        variant = ocellus.train(model, "patterns", epochs=2, batch_size=32, lr=2e-3,
                                verbose=False,
                                out=os.path.join(runs, label.replace(" ", "-").replace("×", "x")))
        print(f"{label:14} {model.num_parameters:>10} "
              f"{100 * variant.evaluate()['accuracy']:>13.1f}%")

    # 8. The CNN against a fully connected network with as many parameters.
    heading("8. Compare the CNN with a traditional neural network")
    comparison = ocellus.compare(["lenet5", "mlp-lenet5"], "patterns", epochs=3, lr=3e-3,
                                 max_shift=3, verbose=False,
                                 out=os.path.join(runs, "compare"))
    print(comparison)
    cnn, mlp = comparison.rows
    print(f"shifted by 3 pixels, the CNN keeps {100 * cnn['shifted_accuracy'][-1]:.1f}% and "
          f"the fully connected network {100 * mlp['shifted_accuracy'][-1]:.1f}%")
    print(f"\nfigures in {out}/, runs in {runs}/")


if __name__ == "__main__":
    main()
