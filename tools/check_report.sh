#!/usr/bin/env bash
# Checks that an `ocellus report` page renders in headless Chromium with every image
# decoded, and optionally takes a screenshot of it.
#
#   tools/check_report.sh RUN_DIR_OR_HTML [SCREENSHOT.png]
#
# A copy of the page gets a small script that, once the page has loaded, counts the <img>
# elements that did not load (not complete, or naturalWidth 0) and writes
# "broken-images: N of M" into the DOM; Chromium dumps the DOM and this script reads the
# count. Exit status 1 when N > 0 or M = 0. The screenshot is of the original page.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 RUN_DIR_OR_HTML [SCREENSHOT.png]" >&2
    exit 2
fi
page=$1
if [ -d "$page" ]; then
    page=$page/report.html
fi
if [ ! -f "$page" ]; then
    echo "error: $page: no such report file" >&2
    exit 1
fi
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "error: chromium is not installed (apt-get install chromium)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked=$work/checked.html
cp "$page" "$checked"
cat >>"$checked" <<'SCRIPT'
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = "broken-images: " + broken.length + " of " + images.length;
  document.body.appendChild(out);
});
</script>
SCRIPT

run_chromium() {
    "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run \
        --user-data-dir="$(mktemp -d -p "$work")" --virtual-time-budget=5000 "$@" \
        2>>"$work/chromium.log"
}

if ! dom=$(run_chromium --dump-dom "file://$(realpath "$checked")"); then
    echo "error: $page: chromium failed; its last messages:" >&2
    tail -n 5 "$work/chromium.log" >&2
    exit 1
fi
count=$(printf '%s' "$dom" | grep -o 'broken-images: [0-9]* of [0-9]*' | tail -n 1 || true)
if [ -z "$count" ]; then
    echo "error: $page: the check script did not run (no 'broken-images' line in the DOM)" >&2
    exit 1
fi
read -r broken total <<<"$(printf '%s' "$count" | sed 's/broken-images: \([0-9]*\) of \([0-9]*\)/\1 \2/')"
echo "$page: $count"
if [ "$total" -eq 0 ]; then
    echo "error: $page: the page has no images" >&2
    exit 1
fi
if [ "$broken" -gt 0 ]; then
    echo "error: $page: $broken of $total images did not load" >&2
    exit 1
fi

if [ $# -eq 2 ]; then
    shot=$(realpath -m "$2")
    rm -f "$shot"
    run_chromium --hide-scrollbars --window-size=1200,2400 --screenshot="$shot" \
        "file://$(realpath "$page")" >/dev/null || true
    if [ ! -s "$shot" ]; then
        echo "error: $shot: chromium wrote no screenshot" >&2
        exit 1
    fi
    echo "screenshot: $shot"
fi
