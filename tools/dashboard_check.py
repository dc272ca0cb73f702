#!/usr/bin/env python3
"""Checks `ocellus train --dashboard` in headless Chromium.

    pip install playwright                             (drives Debian's /usr/bin/chromium)
    python3 tools/dashboard_check.py --ocellus target/release/ocellus [--screenshot docs/dashboard.png]

Starts a short training (SmallCNN on the built-in patterns, on one thread) with `--dashboard --port 0`, reads the address it prints (it must be on
127.0.0.1), opens the page and checks that:

- the charts are redrawn with new training data at least twice while training runs (more
  steps on the curve each time), and the epoch curves, the filters, the feature maps and
  the gradient flow appear;
- a second page opened later (a browser closed and opened again) shows the same run;
- no console error is logged while the server is up;
- the training process exits by itself when training ends (status 0), after which the
  page says the process has ended.

Exit status 1 if any of these fails.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright


def fail(message, process=None):
    if process is not None and process.poll() is None:
        process.kill()
    sys.exit(f"dashboard check: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ocellus", required=True, help="the ocellus binary")
    parser.add_argument("--screenshot", type=pathlib.Path, help="where to save a screenshot during training")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--model", default="smallcnn", help="a model that takes some seconds per epoch")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", default="patterns")
    parser.add_argument("--limit-train", type=int, help="train on the first N images")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work, sync_playwright() as p:
        command = [args.ocellus, "train", "--model", args.model, "--epochs", str(args.epochs), "--threads", "1"]
        command += ["--data", args.data, "--dashboard"]
        if args.limit_train:
            command += ["--limit-train", str(args.limit_train)]
        command += ["--port", "0", "--out", str(pathlib.Path(work) / "run")]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        url = None
        for line in process.stdout:
            match = re.match(r"dashboard: (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        if url is None:
            fail(f"no dashboard address printed; stderr: {process.stderr.read()}", process)
        if not url.startswith("http://127.0.0.1:"):
            fail(f"the dashboard is at {url}, not on 127.0.0.1", process)
        print(f"training with a dashboard at {url}")

        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        errors = []
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and process.poll() is None else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)

        # Redraws with more steps on the curve, while the status says training.
        seen_steps, screenshot_taken, reopened = [], False, False
        deadline = time.time() + 300
        while process.poll() is None and time.time() < deadline:
            state = page.evaluate("({...document.body.dataset})")
            if state.get("status") == "training":
                steps = int(state.get("steps", 0))
                if steps and (not seen_steps or steps > seen_steps[-1]):
                    seen_steps.append(steps)
                epochs = int(state.get("epochs", 0))
                if epochs >= 1 and not reopened:
                    # A second page, as if the browser were closed and opened again.
                    other = browser.new_page()
                    other.goto(url)
                    other.wait_for_function("Number(document.body.dataset.draws || 0) >= 1", timeout=10000)
                    other_epochs = int(other.evaluate("document.body.dataset.epochs"))
                    if other_epochs < epochs:
                        fail(f"a page opened later shows {other_epochs} epochs, the first {epochs}", process)
                    other.close()
                    reopened = True
                if epochs >= 2 and args.screenshot and not screenshot_taken:
                    page.wait_for_function("document.getElementById('features').complete", timeout=5000)
                    page.screenshot(path=str(args.screenshot), full_page=True)
                    screenshot_taken = True
                    print(f"  screenshot: {args.screenshot}")
            time.sleep(0.25)
        if process.poll() is None:
            fail("training did not end within 300 s", process)

        # What the page showed by the end of training.
        pictures = page.evaluate(
            "['filters', 'features'].map(id => document.getElementById(id).naturalWidth)"
        )
        flow_shown = page.evaluate("document.getElementById('flow-chart').style.display !== 'none'")
        epochs_shown = int(page.evaluate("document.body.dataset.epochs || 0"))

        code = process.wait()
        stderr = process.stderr.read()
        if code != 0:
            fail(f"training exited with status {code}: {stderr}")
        print(f"  training exited with status 0; the page redrew with {seen_steps} steps on the curve")
        if len(seen_steps) < 3:
            fail(f"the charts were redrawn with new data {len(seen_steps) - 1} time(s) during training, not at least twice")
        if not reopened:
            fail("no epoch finished while the page was watched, so reopening was not checked")
        if epochs_shown < args.epochs - 1:
            fail(f"the page showed {epochs_shown} epoch(s) of {args.epochs}")
        if min(pictures) == 0:
            fail(f"pictures not shown (natural widths {pictures})")
        if not flow_shown:
            fail("the gradient flow chart was not shown")
        try:
            page.wait_for_function("document.body.dataset.connection === 'lost'", timeout=10000)
        except Exception:
            fail("the page did not notice that the server stopped")
        print("  the page noticed the server stop with the training")
        browser.close()
        if errors:
            fail("console errors while the server was up:\n  " + "\n  ".join(errors))
        print("dashboard check passed")


if __name__ == "__main__":
    main()
