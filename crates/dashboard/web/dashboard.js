// The live training page: polls /api/state once a second, draws the curves and the
// gradient flow on canvases, and reloads the pictures when they change. If the server
// goes away (training ended, or was stopped), the last state stays on the page and the
// page keeps trying, so it can be left open across runs or opened again at any time.
'use strict';

const $ = (id) => document.getElementById(id);
const COLORS = ['#2a7de1', '#e8710a', '#1f9e57', '#c2185b', '#7b5cd6', '#8d6e63', '#00838f', '#9e9d24', '#5d6d7e', '#d84315'];
let lastPictures = -1;
let lastUpdate = -1;
let draws = 0;

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
}

// Round numbers for axis ticks between lo and hi.
function ticks(lo, hi, count) {
  const span = hi - lo || 1;
  const raw = span / count;
  const unit = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * unit).find((v) => v >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(+v.toPrecision(12));
  return out;
}

// Lines on a canvas: series = [{name, color, points: [[x, y], ...], dots}]; log: y on a
// log10 scale. The canvas is sized to its box at the device's pixel ratio.
function lineChart(canvas, series, { log = false, xLabel = 'epoch', yFormat = (v) => v.toPrecision(3), legend = 'top' } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  ctx.font = '11px system-ui, sans-serif';
  const tf = (y) => (log ? Math.log10(y) : y);
  const points = series.flatMap((s) => s.points).filter(([, y]) => isFinite(tf(y)));
  if (!points.length) {
    ctx.fillStyle = '#8a94a3';
    ctx.fillText('waiting for the first steps…', 12, 20);
    return;
  }
  let [x0, x1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...points.map((p) => tf(p[1]))), Math.max(...points.map((p) => tf(p[1])))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const left = 48, right = 10, top = 8, bottom = 34;
  const X = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const Y = (y) => top + (1 - (tf(y) - y0) / (y1 - y0)) * (height - top - bottom);
  ctx.strokeStyle = '#e6eaf0';
  ctx.fillStyle = '#5b6573';
  ctx.textAlign = 'right';
  const yTicks = log
    ? ticks(Math.floor(y0), Math.ceil(y1), 4).filter((t) => Number.isInteger(t) && t >= y0 && t <= y1).map((t) => 10 ** t)
    : ticks(y0, y1, 4);
  for (const t of yTicks) {
    ctx.beginPath(); ctx.moveTo(left, Y(t)); ctx.lineTo(width - right, Y(t)); ctx.stroke();
    ctx.fillText(log ? t.toExponential(0) : yFormat(t), left - 4, Y(t) + 4);
  }
  ctx.textAlign = 'center';
  for (const t of ticks(x0, x1, 6)) ctx.fillText(String(t), X(t), height - bottom + 14);
  ctx.fillText(xLabel, (left + width - right) / 2, height - 4);
  series.forEach((s, i) => {
    ctx.strokeStyle = ctx.fillStyle = s.color || COLORS[i % COLORS.length];
    ctx.lineWidth = s.width || 1.5;
    const pts = s.points.filter(([, y]) => isFinite(tf(y)));
    ctx.beginPath();
    pts.forEach(([x, y], k) => (k ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    if (s.dots) for (const [x, y] of pts) { ctx.beginPath(); ctx.arc(X(x), Y(y), 2.5, 0, 7); ctx.fill(); }
  });
  // Legend, top right (or bottom right, above the axis).
  ctx.textAlign = 'left';
  const named = series.filter((s) => s.name).length;
  let y = legend === 'top' ? top + 10 : height - bottom - 6 - 13 * (named - 1);
  const legendX = width - right - 8 - Math.max(...series.map((s) => ctx.measureText(s.name).width)) - 14;
  for (const [i, s] of series.entries()) {
    if (!s.name) continue;
    ctx.fillStyle = s.color || COLORS[i % COLORS.length];
    ctx.fillRect(legendX, y - 7, 10, 3);
    ctx.fillStyle = '#1d232b';
    ctx.fillText(s.name, legendX + 14, y - 3);
    y += 13;
  }
}

function render(state) {
  $('title').textContent = state.title || 'ocellus';
  document.title = `${state.title || 'training'} — ocellus`;
  const status = $('status');
  const words = { starting: 'starting…', training: 'training', finished: 'finished', stopped: 'stopped', failed: 'failed' };
  status.textContent = words[state.status] + (state.message ? ` — ${state.message}` : '');
  status.className = state.status;
  const total = state.epochs * state.batches;
  const done = Math.max(0, (state.epoch - 1)) * state.batches + state.batch;
  const finished = state.status === 'finished';
  $('bar').style.width = `${total ? (finished ? 100 : (100 * done) / total) : 0}%`;
  $('epoch').textContent = state.epochs ? `${state.epoch} / ${state.epochs}` : '–';
  $('step').textContent = state.batches ? `${state.batch} / ${state.batches}` : '–';
  $('loss').textContent = state.steps.length ? state.running_loss.toFixed(4) : '–';
  $('accuracy').textContent = state.steps.length ? `${(100 * state.running_accuracy).toFixed(1)} %` : '–';
  $('speed').textContent = state.images_per_second ? Math.round(state.images_per_second).toLocaleString('en') : '–';
  $('elapsed').textContent = duration(state.elapsed_seconds);
  $('eta').textContent = finished ? 'done' : duration(state.eta_seconds);

  const epochs = state.records;
  const evalName = state.eval_name || 'test';
  lineChart($('loss-chart'), [
    { name: 'train (per step, smoothed)', points: state.steps.map(([x, l]) => [x, l]), width: 1 },
    { name: 'train (epoch)', points: epochs.map((r) => [r.epoch, r.train_loss]), dots: true },
    { name: evalName, points: epochs.map((r) => [r.epoch, r.val_loss]), dots: true },
  ]);
  lineChart($('accuracy-chart'), [
    { name: 'train (per step, smoothed)', points: state.steps.map(([x, , a]) => [x, 100 * a]), width: 1 },
    { name: 'train (epoch)', points: epochs.map((r) => [r.epoch, 100 * r.train_accuracy]), dots: true },
    { name: evalName, points: epochs.map((r) => [r.epoch, 100 * r.val_accuracy]), dots: true },
  ], { yFormat: (v) => `${v.toFixed(0)} %`, legend: 'bottom' });
  const flow = state.gradient_flow;
  $('flow-none').style.display = flow && flow.steps.length ? 'none' : '';
  $('flow-chart').style.display = flow && flow.steps.length ? '' : 'none';
  if (flow && flow.steps.length) {
    // Colour by depth, first layer blue to last red; a legend of at most eight rows.
    const n = flow.layers.length;
    const series = flow.layers.map((name, l) => ({
      name,
      color: `hsl(${Math.round(220 - (220 * l) / Math.max(1, n - 1))}, 70%, 45%)`,
      points: flow.steps.map((step, i) => [step, flow.grad_norm[l][i]]).filter(([, g]) => g != null),
    }));
    const shown = n <= 8 ? series : series.map((s, l) => (l === 0 || l === n - 1 ? s : { ...s, name: '' }));
    lineChart($('flow-chart'), shown, { log: true, xLabel: 'step' });
  }
  if (state.pictures !== lastPictures) {
    lastPictures = state.pictures;
    for (const name of ['filters', 'features']) {
      const img = $(name);
      img.onload = () => { img.style.display = ''; $(`${name}-none`).style.display = 'none'; };
      img.onerror = () => { img.style.display = 'none'; $(`${name}-none`).style.display = ''; };
      img.src = `api/${name}.png?v=${state.pictures}`;
    }
  }
  draws += 1;
  document.body.dataset.draws = String(draws);
  document.body.dataset.status = state.status;
  document.body.dataset.epochs = String(epochs.length);
  document.body.dataset.steps = String(state.steps.length);
}

async function poll() {
  try {
    const response = await fetch('api/state', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const state = await response.json();
    document.body.dataset.connection = 'ok';
    if (state.updates !== lastUpdate) {
      lastUpdate = state.updates;
      render(state);
    }
    setTimeout(poll, 1000);
  } catch (e) {
    // The server is gone: keep what is shown, say so, and try again now and then.
    const status = $('status');
    if (!status.className.includes('gone')) {
      status.textContent += ' — the training process has ended (or is unreachable); its run directory holds everything';
      status.className += ' gone';
    }
    document.body.dataset.connection = 'lost';
    setTimeout(poll, 3000);
  }
}

poll();
