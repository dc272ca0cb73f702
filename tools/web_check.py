#!/usr/bin/env python3
"""Checks the page of `ocellus export --format web` in headless Chromium against
`ocellus predict`.

    ocellus export RUN --format web -o DIR
    npm install --prefix DIR onnxruntime-web@1.30      (as the page's instructions say)
    pip install playwright                             (drives Debian's /usr/bin/chromium)
    python3 tools/web_check.py --dir DIR --ocellus target/release/ocellus --checkpoint RUN \\
        [--screenshot docs/web-page.png] IMAGE...

The directory is served on 127.0.0.1 only, on a free port. The page classifies each image
chosen through its file input, a synthetic RGB image of another size than the model's
input (so that the luminance and the resizing are checked), and a drawing made with the
mouse (saved from the canvas as PNG for ocellus). The probabilities it shows must match
those `ocellus predict --json` prints for the same file within 1e-4, and the page must log
no console error. Exit status 1 otherwise.
"""
import argparse
import base64
import functools
import http.server
import json
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import threading
import zlib

from playwright.sync_api import sync_playwright

TOLERANCE = 1e-4


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
    }

    def log_message(self, *args):
        pass


def serve(directory):
    """A static file server for `directory` on 127.0.0.1, on a free port."""
    handler = functools.partial(Handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def synthetic_png(path, width, height):
    """An opaque RGB PNG: colour gradients and a bright disc."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # no filter
        for x in range(width):
            inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 3) ** 2
            rows += bytes((240, 220, 200) if inside else ((x * 7) % 256, (y * 11) % 256, ((x + y) * 5) % 256))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")
    )


def ocellus_probabilities(args, image):
    command = [args.ocellus, "predict", "--json", "--checkpoint", str(args.checkpoint), str(image)]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"ocellus predict failed on {image}: {run.stderr.strip()}")
    return json.loads(run.stdout.splitlines()[0])["probabilities"]


def compare(name, page, expected):
    if len(page) != len(expected):
        print(f"  {name}: the page shows {len(page)} probabilities, ocellus {len(expected)}")
        return False
    diff = max(abs(p - e) for p, e in zip(page, expected))
    best = max(range(len(expected)), key=expected.__getitem__)
    ok = diff <= TOLERANCE
    print(
        f"  {name[-30:]:<30} top class {best} ({100 * expected[best]:5.2f} %)   "
        f"max |page - ocellus| {diff:.2e}   {'ok' if ok else 'FAILED'}"
    )
    return ok


def settled(page, runs_before):
    """(runs, probabilities) once the page has shown a result after `runs_before` and
    stopped classifying."""
    page.wait_for_function(
        "n => Number(document.getElementById('results').dataset.runs || 0) > n", arg=runs_before, timeout=30000
    )
    runs = None
    while True:
        now = page.evaluate("document.getElementById('results').dataset.runs")
        if now == runs:
            break
        runs = now
        page.wait_for_timeout(400)
    if page.evaluate("document.getElementById('status').dataset.state") != "done":
        sys.exit(f"the page says: {page.text_content('#status')}")
    return int(runs), json.loads(page.evaluate("document.getElementById('results').dataset.probabilities"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", type=pathlib.Path, help="PNG images to classify")
    parser.add_argument("--dir", required=True, type=pathlib.Path, help="the exported page")
    parser.add_argument("--ocellus", required=True, help="the ocellus binary")
    parser.add_argument("--checkpoint", required=True, type=pathlib.Path, help="the run the page was exported from")
    parser.add_argument("--screenshot", type=pathlib.Path, help="where to save a screenshot of the first image's result")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    if not (args.dir / "node_modules" / "onnxruntime-web").is_dir():
        sys.exit(f"{args.dir}: onnxruntime-web is not installed there (npm install --prefix {args.dir} onnxruntime-web@1.30)")

    ok, errors = True, []
    with tempfile.TemporaryDirectory() as work, sync_playwright() as p:
        work = pathlib.Path(work)
        synthetic = work / "synthetic-rgb-61x47.png"
        synthetic_png(synthetic, 61, 47)
        server, base = serve(args.dir)
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 560})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)
            page.wait_for_function(
                "['ready', 'error'].includes(document.getElementById('status').dataset.state)", timeout=60000
            )
            if page.evaluate("document.getElementById('status').dataset.state") != "ready":
                sys.exit(f"the page did not load the model: {page.text_content('#status')}")
            print(f"page {base} loaded in headless Chromium {browser.version}")

            runs = 0
            for image in [*args.images, synthetic]:
                page.set_input_files("#file", str(image))
                runs, probabilities = settled(page, runs)
                ok &= compare(str(image), probabilities, ocellus_probabilities(args, image))
                if args.screenshot and image == args.images[0]:
                    page.screenshot(path=str(args.screenshot))
                    print(f"  screenshot: {args.screenshot}")

            # A drawing: three strokes with the mouse, then the canvas saved as PNG.
            box = page.locator("#draw").bounding_box()
            for (x0, y0), (x1, y1) in [((0.3, 0.2), (0.3, 0.8)), ((0.3, 0.8), (0.75, 0.8)), ((0.5, 0.35), (0.7, 0.5))]:
                page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
                page.mouse.down()
                page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=12)
                page.mouse.up()
            runs, drawn = settled(page, runs)
            data_url = page.evaluate("document.getElementById('draw').toDataURL('image/png')")
            drawing = work / "drawing.png"
            drawing.write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
            ok &= compare("drawing (280x280 canvas)", drawn, ocellus_probabilities(args, drawing))
        finally:
            browser.close()
            server.shutdown()
    if errors:
        print("console errors:\n  " + "\n  ".join(errors))
        ok = False
    if not ok:
        sys.exit(f"the page's probabilities differ from ocellus predict's by more than {TOLERANCE}, or it logged errors")


if __name__ == "__main__":
    main()
