//! A live view of training, ConvNetJS-style: a page served on 127.0.0.1 that updates while
//! a run trains — loss and accuracy curves (per step and per epoch), progress and time
//! left, the first convolution's filters, feature maps of a few fixed test images, and
//! the gradient flow through the layers.
//!
//! The training loop tells a [`Dashboard`] what happens ([`Dashboard::begin`],
//! [`Dashboard::batch`], [`Dashboard::epoch`], [`Dashboard::finish`]); a thread answers
//! the browser from that state. The page polls `/api/state` (JSON) once a second and
//! reloads the pictures (`/api/filters.png`, `/api/features.png`) when they change, so it
//! can be closed and opened again at any time; it needs nothing from another host.
//!
//! The server listens on a loopback address unless told otherwise
//! ([`DashboardOptions::allow_remote`]), and on a loopback address it answers only
//! requests addressed to it by a loopback name (a page elsewhere cannot reach it through a
//! DNS name that resolves to 127.0.0.1).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;

use ocellus::{Error, Result, Tensor};
use ocellus_train::diagnostics::{DiagnosticsObserver, StepDiagnostics};
use ocellus_train::run::{EpochRecord, Run};
use ocellus_train::trainer::BatchProgress;
use ocellus_viz::inspect::{self, FilterLimits};
use ocellus_viz::{hstack, Canvas, Tile};

/// The page.
const INDEX_HTML: &str = include_str!("../web/index.html");
/// Its script: polling, charts, pictures.
const SCRIPT: &str = include_str!("../web/dashboard.js");
/// Steps kept for the per-step curve; beyond that, every other point is dropped.
const MAX_STEP_POINTS: usize = 4000;
/// Weight of the newest step in the smoothed per-step curves (about the last 20 steps).
const SMOOTHING: f64 = 0.05;
/// Test images whose feature maps are shown.
const FEATURE_IMAGES: usize = 3;
/// Feature maps shown per layer and image.
const FEATURE_CHANNELS: usize = 8;

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct DashboardOptions {
    pub address: IpAddr,
    /// 0: any free port (the one chosen is in [`Dashboard::url`]).
    pub port: u16,
    /// Allow an address other than a loopback one (the page is then reachable from other
    /// machines, without authentication).
    pub allow_remote: bool,
}

/// Where training stands, as the page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Training,
    Finished,
    Stopped,
    Failed,
}

/// Gradient flow: for each top-level layer with parameters, the norm of the loss
/// gradient with respect to them, ‖∂L/∂θ‖₂, at the diagnosed steps — from the first
/// layer, the far end of the gradient's way back, to the classifier.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GradientFlow {
    /// Row labels (`0 conv2d`), in forward order.
    pub layers: Vec<String>,
    /// Global step (counted from 1) of each record.
    pub steps: Vec<usize>,
    /// `grad_norm[l][i]`: ‖∂L/∂θ‖₂ of layer `l` at `steps[i]` (`None` if not finite).
    pub grad_norm: Vec<Vec<Option<f64>>>,
}

impl GradientFlow {
    /// Appends one diagnosed step. The layers are those of the first record; a record of
    /// another network (which a run never gives) is skipped.
    fn add(&mut self, record: &StepDiagnostics) {
        let weighted: Vec<_> = record
            .layers
            .iter()
            .filter(|l| !l.params.is_empty())
            .collect();
        let names: Vec<String> = weighted
            .iter()
            .map(|l| format!("{} {}", l.name, l.kind))
            .collect();
        if self.steps.is_empty() {
            self.layers = names;
            self.grad_norm = vec![Vec::new(); self.layers.len()];
        } else if names != self.layers {
            return;
        }
        self.steps.push(record.step);
        for (series, layer) in self.grad_norm.iter_mut().zip(weighted) {
            let g = layer.grad_norm as f64;
            series.push(g.is_finite().then_some(g));
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct State {
    title: String,
    status: Option<Status>,
    message: String,
    eval_name: String,
    epochs: usize,
    epoch: usize,
    batch: usize,
    batches: usize,
    running_loss: f32,
    running_accuracy: f32,
    images_per_second: f64,
    elapsed_seconds: f64,
    eta_seconds: Option<f64>,
    /// (epoch as a fraction: e.g. 1.5 = half-way through epoch 2, loss, accuracy) of the
    /// training steps, smoothed, thinned to at most MAX_STEP_POINTS.
    steps: Vec<[f64; 3]>,
    /// The last step's (epoch, running mean loss, running mean accuracy).
    #[serde(skip)]
    epoch_means: (usize, f64, f64),
    /// Exponential moving averages of the steps' loss and accuracy.
    #[serde(skip)]
    smoothed: Option<(f64, f64)>,
    #[serde(skip)]
    step_stride: usize,
    #[serde(skip)]
    step_count: usize,
    records: Vec<EpochRecord>,
    gradient_flow: Option<GradientFlow>,
    /// Changes whenever the pictures do.
    pictures: u64,
    /// Changes with every update.
    updates: u64,
    #[serde(skip)]
    filters_png: Option<Vec<u8>>,
    #[serde(skip)]
    features_png: Option<Vec<u8>>,
    #[serde(skip)]
    started: Option<Instant>,
}

/// A running dashboard; dropping it stops the server.
pub struct Dashboard {
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
}

impl Dashboard {
    /// Starts serving. Fails, before anything else happens, if the address is not a
    /// loopback one and `allow_remote` is off, or if the port is taken.
    pub fn start(options: &DashboardOptions) -> Result<Dashboard> {
        if !options.address.is_loopback() && !options.allow_remote {
            return Err(Error::config(
                "--dashboard-address",
                format!(
                    "{} is not a loopback address: the dashboard would be open to other \
                     machines, without a password; add --dashboard-allow-remote if that is meant",
                    options.address
                ),
            ));
        }
        let addr = SocketAddr::new(options.address, options.port);
        let server = tiny_http::Server::http(addr).map_err(|e| {
            let why = e.to_string();
            let hint = if why.contains("in use") {
                "; choose another with --port, or 0 for any free port"
            } else {
                ""
            };
            Error::config(
                "--port",
                format!("cannot serve the dashboard on {addr}: {why}{hint}"),
            )
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::config("--port", "the dashboard is not on an IP address"))?;
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State {
            status: Some(Status::Starting),
            step_stride: 1,
            ..State::default()
        }));
        let loopback = options.address.is_loopback();
        let thread = {
            let (server, state) = (Arc::clone(&server), Arc::clone(&state));
            std::thread::Builder::new()
                .name("dashboard".into())
                .spawn(move || serve(&server, &state, bound.port(), loopback))
                .map_err(|e| Error::config("dashboard", format!("cannot start its thread: {e}")))?
        };
        let host = match bound.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        Ok(Dashboard {
            state,
            server,
            thread: Some(thread),
            url: format!("http://{host}:{}/", bound.port()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to a page: keep serving what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run is about to train: its name, length, the epochs already done (on resume)
    /// and the pictures of its current weights.
    pub fn begin(&self, run: &mut Run, title: &str, history: Vec<EpochRecord>) {
        let pictures = Pictures::of(run);
        let mut s = self.lock();
        s.title = title.to_string();
        s.status = Some(Status::Training);
        s.eval_name = run.eval_name().to_string();
        s.epochs = run.config.epochs;
        s.epoch = run.epochs_done();
        s.batches = run.train.len().div_ceil(run.config.batch_size.max(1));
        s.records = history;
        s.started = Some(Instant::now());
        pictures.store(&mut s);
        s.updates += 1;
    }

    /// One training step done.
    pub fn batch(&self, p: &BatchProgress) {
        let mut s = self.lock();
        s.epoch = p.epoch;
        s.batch = p.batch;
        s.batches = p.batches;
        s.running_loss = p.loss;
        s.running_accuracy = p.accuracy;
        s.images_per_second = p.images_per_second;
        s.elapsed_seconds = s.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        s.eta_seconds = eta(&s, p);
        // The step's own loss and accuracy, from the running means over the epoch's k
        // steps (m_k·k − m_{k−1}·(k−1), batches of one size), smoothed exponentially.
        let k = p.batch as f64;
        let (loss, accuracy) = if p.batch > 1 && s.epoch_means.0 == p.epoch {
            let (_, m_loss, m_acc) = s.epoch_means;
            (
                p.loss as f64 * k - m_loss * (k - 1.0),
                p.accuracy as f64 * k - m_acc * (k - 1.0),
            )
        } else {
            (p.loss as f64, p.accuracy as f64)
        };
        s.epoch_means = (p.epoch, p.loss as f64, p.accuracy as f64);
        s.smoothed = match s.smoothed {
            Some((l, a)) => Some((l + SMOOTHING * (loss - l), a + SMOOTHING * (accuracy - a))),
            None => Some((loss, accuracy)),
        };
        s.step_count += 1;
        if s.step_count.is_multiple_of(s.step_stride) {
            let at = (p.epoch - 1) as f64 + p.batch as f64 / p.batches.max(1) as f64;
            let (loss, accuracy) = s.smoothed.expect("set above");
            s.steps.push([at, loss, accuracy]);
            if s.steps.len() > MAX_STEP_POINTS {
                // Keep every other point and record half as often from now on.
                let kept: Vec<[f64; 3]> = s.steps.iter().step_by(2).copied().collect();
                s.steps = kept;
                s.step_stride *= 2;
            }
        }
        s.updates += 1;
    }

    /// An epoch is done and evaluated: its record, and pictures of the new weights.
    pub fn epoch(&self, run: &mut Run, record: &EpochRecord) {
        let pictures = Pictures::of(run);
        let mut s = self.lock();
        s.records.push(record.clone());
        pictures.store(&mut s);
        s.updates += 1;
    }

    /// An observer of the run's diagnosed steps that adds each to the gradient-flow chart.
    pub fn gradient_flow_observer(&self) -> impl DiagnosticsObserver + 'static {
        let state = Arc::clone(&self.state);
        move |record: &StepDiagnostics| -> Result<()> {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            let flow = s.gradient_flow.get_or_insert_with(GradientFlow::default);
            flow.add(record);
            s.updates += 1;
            Ok(())
        }
    }

    /// Training ended; `message` says how (shown on the page).
    pub fn finish(&self, status: Status, message: &str) {
        let mut s = self.lock();
        s.status = Some(status);
        s.message = message.to_string();
        s.eta_seconds = None;
        s.updates += 1;
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Seconds left: the steps left at this epoch's pace, plus the evaluations at the pace of
/// the epochs done (whose seconds include them).
fn eta(s: &State, p: &BatchProgress) -> Option<f64> {
    if p.batch == 0 || p.elapsed <= 0.0 {
        return None;
    }
    let per_step = p.elapsed / p.batch as f64;
    let steps_left = (p.batches - p.batch) + (s.epochs.saturating_sub(p.epoch)) * p.batches;
    let epoch_overhead = match s.records.last() {
        Some(r) => (r.seconds - per_step * p.batches as f64).max(0.0),
        None => 0.0,
    };
    Some(per_step * steps_left as f64 + epoch_overhead * (s.epochs + 1 - p.epoch) as f64)
}

/// PNG pictures of a model's state.
struct Pictures {
    filters: Option<Vec<u8>>,
    features: Option<Vec<u8>>,
}

impl Pictures {
    /// The first convolution's filters, and the feature maps of the first test images
    /// after the first two layers that have them. A model without convolutions has none;
    /// a picture that cannot be drawn is left out rather than stopping training.
    fn of(run: &mut Run) -> Pictures {
        let filters = inspect::filters_picture(&run.model, None, FilterLimits::default())
            .ok()
            .and_then(|c| c.to_png_bytes().ok());
        let features = feature_panels(run)
            .ok()
            .flatten()
            .and_then(|c| c.to_png_bytes().ok());
        Pictures { filters, features }
    }

    fn store(self, s: &mut State) {
        s.filters_png = self.filters;
        s.features_png = self.features;
        s.pictures += 1;
    }
}

fn feature_panels(run: &mut Run) -> Result<Option<Canvas>> {
    let shown = FEATURE_IMAGES.min(run.test.len());
    let mut panels = Vec::new();
    for k in 0..shown {
        let (x, labels) = run.test.gather(&[k]);
        let maps = inspect::feature_maps(&mut run.model, &x, false)?;
        if maps.is_empty() {
            return Ok(None);
        }
        let seen = unnormalised(
            &x,
            &run.info.normalization.mean,
            &run.info.normalization.std,
        );
        let title = format!("test image {k}: {}", run.info.classes[labels[0]]);
        let picture = inspect::feature_maps_picture(
            &title,
            &Tile::from_tensor(&seen)?,
            &maps[..maps.len().min(2)],
            FEATURE_CHANNELS,
        );
        panels.push(picture);
    }
    let labelled: Vec<(&str, &Canvas)> = panels.iter().map(|p| ("", p)).collect();
    Ok((!labelled.is_empty()).then(|| hstack(&labelled)))
}

/// `x·std + mean` per channel: a normalised (1, C, H, W) image back in [0, 1].
fn unnormalised(x: &Tensor, mean: &[f32], std: &[f32]) -> Tensor {
    let mut seen = x.clone();
    let plane = x.shape()[2] * x.shape()[3];
    for (c, values) in seen.data_mut().chunks_exact_mut(plane).enumerate() {
        let (m, s) = (
            mean.get(c).copied().unwrap_or(0.0),
            std.get(c).copied().unwrap_or(1.0),
        );
        values
            .iter_mut()
            .for_each(|v| *v = (*v * s + m).clamp(0.0, 1.0));
    }
    seen
}

/// Answers requests until the server is unblocked.
fn serve(server: &tiny_http::Server, state: &Mutex<State>, port: u16, loopback: bool) {
    for request in server.incoming_requests() {
        let response = respond(&request, state, port, loopback);
        // A browser that went away mid-answer is no error of training's.
        let _ = request.respond(response);
    }
}

type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn respond(
    request: &tiny_http::Request,
    state: &Mutex<State>,
    port: u16,
    loopback: bool,
) -> Response {
    if loopback && !addressed_to_loopback(request, port) {
        return plain(
            403,
            "this dashboard answers requests to 127.0.0.1 or localhost only",
        );
    }
    if *request.method() != tiny_http::Method::Get {
        return plain(405, "only GET");
    }
    let path = request.url().split('?').next().unwrap_or("");
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    match path {
        "/" | "/index.html" => {
            with_type(INDEX_HTML.as_bytes().to_vec(), "text/html; charset=utf-8")
        }
        "/dashboard.js" => with_type(SCRIPT.as_bytes().to_vec(), "text/javascript; charset=utf-8"),
        "/api/state" => match serde_json::to_vec(&*s) {
            Ok(json) => with_type(json, "application/json"),
            Err(e) => plain(500, &e.to_string()),
        },
        "/api/filters.png" => png(s.filters_png.clone()),
        "/api/features.png" => png(s.features_png.clone()),
        _ => plain(404, "not found"),
    }
}

/// Whether the Host header names a loopback host on our port.
fn addressed_to_loopback(request: &tiny_http::Request, port: u16) -> bool {
    let host = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_ascii_lowercase());
    let Some(host) = host else { return false };
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| host == format!("{name}:{port}"))
}

fn with_type(body: Vec<u8>, content_type: &str) -> Response {
    tiny_http::Response::from_data(body)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
}

fn png(bytes: Option<Vec<u8>>) -> Response {
    match bytes {
        Some(b) => with_type(b, "image/png"),
        None => plain(404, "no picture"),
    }
}

fn plain(code: u16, text: &str) -> Response {
    with_type(text.as_bytes().to_vec(), "text/plain; charset=utf-8").with_status_code(code)
}

fn header(field: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(field.as_bytes(), value.as_bytes())
        .expect("the headers written here are ASCII")
}
