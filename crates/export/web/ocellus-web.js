// Classifies an image in the browser with onnxruntime-web, prepared exactly as
// `ocellus predict` prepares it: bytes / 255; one channel from RGB by luminance,
// 0.299 R + 0.587 G + 0.114 B (a gray image's value as it is); alpha dropped; resized
// with a triangle filter whose support widens with the downscaling factor. The model
// (exported with its normalisation inside) gives logits; the page shows their softmax.
'use strict';

(async function main() {
  const $ = (id) => document.getElementById(id);
  const status = $('status');
  const results = $('results');
  let runs = 0;

  function say(text, state) {
    status.textContent = text;
    status.className = state === 'error' ? 'error' : '';
    status.dataset.state = state;
  }

  if (typeof ort === 'undefined') {
    say('onnxruntime-web is not installed beside this page. In this directory run\n' +
        '  npm install onnxruntime-web@1.30\n' +
        'and serve the directory over HTTP, for example\n' +
        '  python3 -m http.server --bind 127.0.0.1 --directory . 8000', 'error');
    return;
  }
  // The .wasm files come from the same installation, never from a CDN.
  ort.env.wasm.wasmPaths = new URL('node_modules/onnxruntime-web/dist/', location.href).href;
  ort.env.wasm.numThreads = 1;

  let meta, session;
  try {
    const response = await fetch('model.json');
    if (!response.ok) throw new Error(`model.json: HTTP ${response.status}`);
    meta = await response.json();
    session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['wasm'] });
  } catch (e) {
    say(`Cannot load the model: ${e.message || e}. Serve this directory over HTTP ` +
        '(a page opened as a file cannot read model.onnx).', 'error');
    return;
  }
  const [C, H, W] = meta.input;
  document.title = `${meta.name} — ocellus`;
  $('title').textContent = `${meta.name}`;
  $('subtitle').textContent = `${meta.classes.length} classes; input ${C}×${H}×${W}. ` +
      'Draw in the box, or drop or choose a PNG or JPEG image.';
  const seen = $('seen');
  seen.width = W;
  seen.height = H;

  // For each of `outLen` outputs: the first input index and the normalised weights of
  // the inputs from there on. Output i is centred at input coordinate (i + ½)·in/out;
  // input j (centre j + ½) gets weight tri((j + ½ − centre) / s), tri(t) = max(0, 1 − |t|),
  // s = max(in/out, 1). The same taps as ocellus's image loading.
  function filterTaps(inLen, outLen) {
    const scale = inLen / outLen;
    const s = Math.max(scale, 1);
    const taps = [];
    for (let i = 0; i < outLen; i++) {
      const centre = (i + 0.5) * scale;
      const lo = Math.max(Math.floor(centre - s), 0);
      const hi = Math.min(Math.ceil(centre + s), inLen);
      const weights = [];
      let total = 0;
      for (let j = lo; j < hi; j++) {
        const w = Math.max(1 - Math.abs((j + 0.5 - centre) / s), 0);
        weights.push(w);
        total += w;
      }
      taps.push([lo, Float32Array.from(weights, (w) => w / total)]);
    }
    return taps;
  }

  // One plane (ih × iw) resized to (oh × ow): a horizontal pass, then a vertical one.
  function resizePlane(src, ih, iw, oh, ow) {
    const rows = filterTaps(ih, oh);
    const cols = filterTaps(iw, ow);
    const tmp = new Float32Array(ih * ow);
    for (let y = 0; y < ih; y++) {
      for (let x = 0; x < ow; x++) {
        const [start, weights] = cols[x];
        let sum = 0;
        for (let k = 0; k < weights.length; k++) sum += weights[k] * src[y * iw + start + k];
        tmp[y * ow + x] = sum;
      }
    }
    const dst = new Float32Array(oh * ow);
    for (let y = 0; y < oh; y++) {
      const [start, weights] = rows[y];
      for (let k = 0; k < weights.length; k++) {
        for (let x = 0; x < ow; x++) dst[y * ow + x] += weights[k] * tmp[(start + k) * ow + x];
      }
    }
    return dst;
  }

  // RGBA pixels (ImageData) as the (1, C, H, W) input in [0, 1].
  function toInput(image) {
    const { data, width, height } = image;
    const n = width * height;
    let gray = true;
    for (let i = 0; i < n && gray; i++) {
      gray = data[4 * i] === data[4 * i + 1] && data[4 * i] === data[4 * i + 2];
    }
    const input = new Float32Array(C * H * W);
    const plane = new Float32Array(n);
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < n; i++) {
        const r = data[4 * i] / 255, g = data[4 * i + 1] / 255, b = data[4 * i + 2] / 255;
        plane[i] = C === 1 ? (gray ? r : 0.299 * r + 0.587 * g + 0.114 * b) : data[4 * i + c] / 255;
      }
      input.set(resizePlane(plane, height, width, H, W), c * H * W);
    }
    return input;
  }

  function showInput(input) {
    const ctx = seen.getContext('2d');
    const picture = ctx.createImageData(W, H);
    for (let i = 0; i < H * W; i++) {
      for (let k = 0; k < 3; k++) {
        const v = input[(C === 3 ? k : 0) * H * W + i];
        picture.data[4 * i + k] = Math.round(255 * Math.min(Math.max(v, 0), 1));
      }
      picture.data[4 * i + 3] = 255;
    }
    ctx.putImageData(picture, 0, 0);
  }

  function softmax(logits) {
    const max = Math.max(...logits);
    const e = Array.from(logits, (z) => Math.exp(z - max));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  }

  function showResults(probabilities) {
    const ranked = probabilities.map((p, k) => [p, k]).sort((a, b) => b[0] - a[0]);
    results.replaceChildren();
    for (const [rank, [p, k]] of ranked.slice(0, 5).entries()) {
      const row = results.insertRow();
      row.className = rank === 0 ? 'top' : '';
      row.dataset.class = meta.classes[k];
      row.dataset.probability = p.toPrecision(9);
      row.insertCell().textContent = meta.classes[k];
      const bar = document.createElement('div');
      bar.className = 'bar';
      bar.style.width = `${Math.max(1, Math.round(160 * p))}px`;
      row.insertCell().append(bar);
      const cell = row.insertCell();
      cell.className = 'p';
      cell.textContent = `${(100 * p).toFixed(1)} %`;
    }
    results.dataset.probabilities = JSON.stringify(probabilities);
    runs += 1;
    results.dataset.runs = String(runs);
  }

  let busy = Promise.resolve();
  function classify(image, source) {
    busy = busy.then(async () => {
      const input = toInput(image);
      showInput(input);
      const feeds = { [meta.input_name]: new ort.Tensor('float32', input, [1, C, H, W]) };
      const output = await session.run(feeds);
      const probabilities = softmax(output[meta.output_name].data);
      showResults(probabilities);
      const best = probabilities.indexOf(Math.max(...probabilities));
      say(`${source}: ${meta.classes[best]} (${(100 * probabilities[best]).toFixed(1)} %)`, 'done');
    }).catch((e) => say(`Cannot classify ${source}: ${e.message || e}`, 'error'));
    return busy;
  }

  async function classifyFile(file) {
    try {
      const bitmap = await createImageBitmap(file, {
        colorSpaceConversion: 'none', premultiplyAlpha: 'none',
      });
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      // Shown in the drawing area, to draw on; the file's own pixels are classified.
      clear();
      pen.drawImage(bitmap, 0, 0, draw.width, draw.height);
      await classify(ctx.getImageData(0, 0, bitmap.width, bitmap.height), file.name);
    } catch (e) {
      say(`Cannot read ${file.name}: ${e.message || e} (PNG or JPEG images only).`, 'error');
    }
  }

  // Drawing: white strokes on black, as the dark-background data sets are.
  const draw = $('draw');
  const pen = draw.getContext('2d', { willReadFrequently: true });
  function clear() {
    pen.fillStyle = '#000';
    pen.fillRect(0, 0, draw.width, draw.height);
  }
  clear();
  let last = null;
  let pending = false;
  function classifyDrawing() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      classify(pen.getImageData(0, 0, draw.width, draw.height), 'drawing');
    });
  }
  function point(e) {
    const box = draw.getBoundingClientRect();
    return [(e.clientX - box.left) * draw.width / box.width, (e.clientY - box.top) * draw.height / box.height];
  }
  draw.addEventListener('pointerdown', (e) => {
    draw.setPointerCapture(e.pointerId);
    last = point(e);
  });
  draw.addEventListener('pointermove', (e) => {
    if (!last) return;
    const next = point(e);
    pen.strokeStyle = '#fff';
    pen.lineWidth = Number($('brush').value);
    pen.lineCap = 'round';
    pen.beginPath();
    pen.moveTo(...last);
    pen.lineTo(...next);
    pen.stroke();
    last = next;
    classifyDrawing();
  });
  for (const end of ['pointerup', 'pointercancel']) {
    draw.addEventListener(end, () => {
      if (last) classifyDrawing();
      last = null;
    });
  }
  $('clear').addEventListener('click', () => {
    clear();
    results.replaceChildren();
    say('Cleared.', 'ready');
  });
  $('file').addEventListener('change', (e) => {
    if (e.target.files.length) classifyFile(e.target.files[0]);
  });
  draw.addEventListener('dragover', (e) => {
    e.preventDefault();
    draw.classList.add('over');
  });
  draw.addEventListener('dragleave', () => draw.classList.remove('over'));
  draw.addEventListener('drop', (e) => {
    e.preventDefault();
    draw.classList.remove('over');
    if (e.dataTransfer.files.length) classifyFile(e.dataTransfer.files[0]);
  });
  say(`Model loaded (${meta.name}). Draw, or drop an image.`, 'ready');
})();
