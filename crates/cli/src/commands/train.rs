//! `ocellus train`: train a model and keep everything in a run directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ocellus::arch::Architecture;
use ocellus::collective::Collective;
use ocellus::LayerExt;
use ocellus::{zoo, Error, Result};
use ocellus_dashboard::{Dashboard, DashboardOptions, Status};
use ocellus_train::parallel::DataParallel;
use ocellus_train::run::{load_weights, ParallelConfig, Run, RunConfig, Weights};
use ocellus_train::{trainer, transfer};

use crate::dataset::{short_name, DataArgs, FOLDER_IMAGE_SIZE};
use crate::progress::{thousands, Progress};

#[derive(clap::Args, Clone)]
#[command(after_help = "Examples:
  ocellus train                                   LeNet-5 on the built-in patterns
  ocellus train --model smallcnn --data fashion-mnist --epochs 5
  ocellus train --model my_net.toml --data mnist --data-dir ~/mnist
  ocellus train --resume runs/lenet5-patterns --epochs 6
  ocellus train --data fashion-mnist --val-fraction 0.1 --epochs 30 --patience 3
  ocellus train --init-from runs/pretrained --data folder --data-dir shoes --freeze 6
  ocellus train --model smallcnn --data fashion-mnist --dashboard    then open http://127.0.0.1:6070/
  ocellus train --model plain20 --data fashion-mnist --diagnostics   then: ocellus viz gradflow RUN
  mpirun -n 4 ocellus train --threads 2 --data fashion-mnist    (built with the mpi feature)
--init-from starts from a trained run's weights; without --model the run's architecture is
used, with a new classifier head when the class count differs. --freeze N keeps the first N
layers fixed (a block counts as one; `ocellus summary` lists them), --freeze-through L up to
and including layer L. With a validation split the best epoch's weights are kept in
best.safetensors beside the last; eval, predict, export and viz take --weights best.

--diagnostics records, every N steps (--diagnostics-every, default 10), per layer: the norm of
the gradient reaching its input, of its parameters' gradients, the parameter norm, the update
ratio |Δθ|/|θ|, the mean and standard deviation of its output and, after ReLUs, the fraction of
channels that are zero for the whole batch. They go to RUN/diagnostics.jsonl; training itself
is unchanged (bit for bit). --dashboard records them too, for its gradient-flow chart.")]
pub struct Args {
    /// A zoo model (lenet5, smallcnn, alexnet, vgg, inception, resnet20/32/56, plain20/32/56, resnet-bottleneck, densenet, efficientnet, mlp, mlp-lenet5), an architecture file (.toml or .json), or a model file or run directory whose architecture to train afresh [default: lenet5; with --init-from, that run's architecture].
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    training: TrainingArgs,
    /// Weight decay (default: 0.01 for adamw, 0 for sgd and adam).
    #[arg(long)]
    weight_decay: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value = "constant", value_parser = ["constant", "step", "cosine", "onecycle"])]
    schedule: String,
    /// Hold out this fraction of the training images for validation (0: report the test set each epoch).
    #[arg(long, default_value_t = 0.0)]
    val_fraction: f32,
    /// Augment training images: random crop with 4 pixels of padding, and horizontal flips.
    #[arg(long)]
    augment: bool,
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f32,
    /// Start from the weights of this run directory or model file (transfer learning); the
    /// classifier head is replaced when the class count differs.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Keep the first N layers fixed: no updates, no gradients, evaluation mode.
    #[arg(long, conflicts_with = "freeze_through")]
    freeze: Option<usize>,
    /// Keep every layer up to and including this one fixed (a top-level layer, as
    /// `ocellus summary` numbers them).
    #[arg(long)]
    freeze_through: Option<String>,
    /// Stop when the monitored validation quantity has not improved for K epochs (needs
    /// --val-fraction).
    #[arg(long, value_name = "K")]
    patience: Option<usize>,
    /// What judges the best epoch, for --patience and best.safetensors.
    #[arg(long, default_value = "val-loss", value_parser = ["val-loss", "val-accuracy"])]
    monitor: String,
    /// Run directory (default: runs/<model>-<data>, numbered if taken).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Under mpirun/srun: batch normalisation over the whole batch of every rank, as one
    /// process would compute it (default: each rank normalises its own shard).
    #[arg(long)]
    sync_batchnorm: bool,
    /// Under mpirun/srun: all-reduce the gradients in buckets of this many values
    /// (default: one buffer for the whole step).
    #[arg(long)]
    allreduce_bucket: Option<usize>,
    /// Continue the run in this directory from its last checkpoint, with the run's own
    /// settings (only --epochs, the new total, and --threads may be given with it).
    #[arg(long, conflicts_with_all = [
        "model", "out", "data", "data_dir", "image_size", "batch_size", "optimizer", "lr",
        "seed", "limit_train", "weight_decay", "momentum", "schedule", "val_fraction",
        "augment", "label_smoothing", "init_from", "freeze", "freeze_through", "patience",
        "monitor", "diagnostics", "diagnostics_every", "sync_batchnorm",
    ])]
    resume: Option<PathBuf>,
    #[command(flatten)]
    dashboard: DashboardArgs,
}

/// The live view of a training run.
#[derive(clap::Args, Clone)]
pub struct DashboardArgs {
    /// Serve a live view of the training while it runs — curves, progress, filters,
    /// feature maps, gradient flow — at http://127.0.0.1:PORT/ (this machine only).
    #[arg(long)]
    dashboard: bool,
    /// The dashboard's port; 0 takes any free one (the address is printed).
    #[arg(long, default_value_t = 6070, requires = "dashboard")]
    port: u16,
    /// The address the dashboard listens on: a loopback address unless
    /// --dashboard-allow-remote is given too.
    #[arg(long, default_value = "127.0.0.1", requires = "dashboard")]
    dashboard_address: std::net::IpAddr,
    /// Allow a --dashboard-address other machines can reach (no password protects it).
    #[arg(long, requires = "dashboard")]
    dashboard_allow_remote: bool,
    /// Keep serving the dashboard after training ends, until Ctrl-C.
    #[arg(long, requires = "dashboard")]
    keep_serving: bool,
}

impl DashboardArgs {
    /// The dashboard, serving, if asked for; an address or port that cannot be used fails
    /// here, before any run directory is touched.
    fn start(&self) -> Result<Option<Dashboard>> {
        if !self.dashboard {
            return Ok(None);
        }
        let options = DashboardOptions {
            address: self.dashboard_address,
            port: self.port,
            allow_remote: self.dashboard_allow_remote,
        };
        Dashboard::start(&options).map(Some)
    }
}

/// The training flags `train` and `compare` share.
#[derive(clap::Args, Clone)]
pub struct TrainingArgs {
    /// Epochs to train [default: 5] (with --resume: the new total; by default the run's own).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value = "adamw", value_parser = ["sgd", "adam", "adamw"])]
    pub optimizer: String,
    /// Learning rate (the peak rate for onecycle).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Record gradient-flow diagnostics per layer while training (RUN/diagnostics.jsonl;
    /// draw them with ocellus viz gradflow RUN).
    #[arg(long)]
    pub diagnostics: bool,
    /// Diagnose every N-th step (steps 1, 1 + N, …).
    #[arg(long, default_value_t = 10, requires = "diagnostics")]
    pub diagnostics_every: usize,
}

impl TrainingArgs {
    /// The epochs to train, 5 unless given.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(5)
    }

    /// The settings of a run of `model` on `data` with these flags; the settings they do
    /// not fix take their plain values (SGD momentum 0.9, constant learning rate, no
    /// weight decay override, validation split, augmentation or label smoothing).
    pub fn run_config(&self, model: &str, data: &DataArgs) -> RunConfig {
        RunConfig {
            model: model.to_string(),
            data: data.data.clone(),
            data_dir: data.data_dir.as_ref().map(|d| d.display().to_string()),
            image_size: data.image_size.unwrap_or(FOLDER_IMAGE_SIZE),
            epochs: self.epochs(),
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            seed: self.seed,
            limit_train: self.limit_train,
            diagnostics_every: self.diagnostics.then_some(self.diagnostics_every),
            ..RunConfig::default()
        }
    }
}

/// Trains as `args` say: alone, or as one rank of `group` (a data-parallel run, where rank
/// 0 writes the run directory and prints; the other ranks stay silent unless they fail).
pub fn run(args: Args, group: Option<Arc<dyn Collective>>) -> Result<()> {
    let parallel = group.map(|g| {
        Arc::new(match args.allreduce_bucket {
            Some(values) => DataParallel::with_buckets(g, values),
            None => DataParallel::new(g),
        })
    });
    let speaks = parallel.as_ref().is_none_or(|p| p.rank() == 0);
    if parallel.is_some() && args.patience.is_some() {
        return Err(patience_under_mpi());
    }
    // Only the rank that speaks serves the dashboard.
    let dashboard = if speaks {
        args.dashboard.start()?
    } else {
        None
    };
    let mut run = match &args.resume {
        Some(dir) => resume(dir, args.training.epochs, parallel.as_ref())?,
        None => start(&args, parallel.as_ref())?,
    };
    let (before, now) = (
        run.config.parallel.ranks,
        parallel.as_ref().map_or(1, |p| p.size()),
    );
    if speaks && run.epochs_done() > 0 && before != now {
        println!(
            "note: this run was trained on {before} rank(s) and continues on {now}: each batch \
             is shared out differently, so the result is not bit for bit what {before} rank(s) \
             would give"
        );
    }
    if parallel.is_some() && run.config.patience.is_some() {
        // A run started alone with --patience, resumed under mpirun.
        return Err(patience_under_mpi());
    }
    match &parallel {
        Some(parallel) => run.join(parallel.clone())?,
        None => run.set_ranks(1)?,
    }
    if let Some(parallel) = &parallel {
        end_on_signal(&run, parallel);
    }
    if !speaks {
        return train_quietly(run);
    }
    let total = run.config.epochs;
    describe(&run);
    // Under MPI a signal ends every rank at once (end_on_signal); alone, Ctrl-C stops
    // training after the step under way.
    let stop = match parallel {
        Some(_) => Arc::new(AtomicBool::new(false)),
        None => {
            let stop = stop_on_ctrl_c();
            run.stop_when(Arc::clone(&stop));
            stop
        }
    };
    if let Some(d) = &dashboard {
        let title = format!(
            "{} on {}",
            run.info.architecture.name.as_deref().unwrap_or("model"),
            run.config.data
        );
        let history = run.metrics()?;
        d.begin(&mut run, &title, history);
        if run.config.diagnostics_every.is_some() {
            run.observe_diagnostics(Box::new(d.gradient_flow_observer()))?;
        }
        println!("dashboard: {}", d.url);
    }
    let eval_name = if run.config.val_fraction > 0.0 {
        "val"
    } else {
        "test"
    };
    let mut progress = Progress::new(total);
    let ended = |status: Status, message: &str| {
        if let Some(d) = &dashboard {
            d.finish(status, message);
        }
    };
    let mut stopped = None;
    let mut trained_seconds = 0.0;
    while run.epochs_done() < total {
        let outcome = run.train_epoch(&mut |p| {
            progress.batch(p);
            if let Some(d) = &dashboard {
                d.batch(p);
            }
        });
        match outcome {
            Ok(record) => {
                trained_seconds += record.seconds;
                progress.epoch(&record, eval_name);
                if let Some(d) = &dashboard {
                    d.epoch(&mut run, &record);
                }
                stopped = run.early_stop()?;
                if stopped.is_some() {
                    progress.abandon();
                    break;
                }
            }
            Err(e @ Error::Diverged { .. }) => {
                progress.abandon();
                let kept = match run.epochs_done() {
                    0 => "no checkpoint was written".to_string(),
                    k => format!(
                        "the checkpoint of epoch {k} in {} is intact",
                        run.dir.display()
                    ),
                };
                ended(Status::Failed, &format!("{e}; {kept}"));
                return Err(Error::config("train", format!("{e}; {kept}")));
            }
            Err(e @ Error::Interrupted { .. }) => {
                progress.abandon();
                ended(Status::Stopped, &e.to_string());
                let dir = run.dir.display();
                match run.epochs_done() {
                    0 => eprintln!(
                        "{e}; no epoch was complete, so nothing was kept: start the run again"
                    ),
                    k => eprintln!(
                        "{e}; the checkpoint of epoch {k} in {dir} is intact; continue with:\n  \
                         ocellus train --resume {dir}"
                    ),
                }
                return Err(e);
            }
            Err(e) => {
                ended(Status::Failed, &e.to_string());
                return Err(e);
            }
        }
    }
    let test = run.finish()?;
    if let Some(parallel) = run.parallel() {
        let (seconds, steps) = parallel.reduce_time();
        let step_seconds = trained_seconds / steps.max(1) as f64;
        println!(
            "all-reduce of {} gradients ({} KiB) per step: {:.3} ms on rank 0, {:.1}% of its {:.2} ms step",
            thousands(run.model.param_count() as f64),
            thousands((run.model.param_count() * 4) as f64 / 1024.0),
            seconds * 1e3,
            100.0 * seconds / step_seconds.max(1e-12),
            step_seconds * 1e3,
        );
    }
    let correct: usize = (0..test.confusion.len())
        .map(|i| test.confusion[i][i])
        .sum();
    println!(
        "test accuracy {:.2}% ({}/{}), loss {:.4}",
        100.0 * test.accuracy,
        thousands(correct as f64),
        thousands(run.test.len() as f64),
        test.loss
    );
    if let Some(stop) = &stopped {
        println!("{stop}");
    }
    if run.keeps_best() {
        let (mut best, info) = load_weights(&run.dir, Weights::Best)?;
        let test = trainer::evaluate(&mut best, &run.test, run.eval_batch_size())?;
        println!(
            "best epoch {} by {}: test accuracy {:.2}%, loss {:.4} (best.safetensors)",
            info.epoch,
            run.config.monitor,
            100.0 * test.accuracy,
            test.loss
        );
    }
    let best = if run.keeps_best() {
        "best.safetensors, "
    } else {
        ""
    };
    let diagnostics = if run.config.diagnostics_every.is_some() {
        ", diagnostics.jsonl"
    } else {
        ""
    };
    println!(
        "run saved in {} (model.safetensors, {best}metrics.jsonl{diagnostics}, curves.png, confusion.png)",
        run.dir.display()
    );
    if let Some(d) = &dashboard {
        let how = match &stopped {
            Some(stop) => format!("{stop}; "),
            None => String::new(),
        };
        d.finish(
            Status::Finished,
            &format!("{how}test accuracy {:.2}%", 100.0 * test.accuracy),
        );
        if args.dashboard.keep_serving {
            println!("dashboard still serving at {}; Ctrl-C stops it", d.url);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
    Ok(())
}

/// Early stopping is refused under MPI: every rank would have to agree on the stop, which
/// only rank 0's metrics decide.
fn patience_under_mpi() -> Error {
    Error::config(
        "--patience",
        "is not available under mpirun/srun: train a fixed number of epochs (with \
         --val-fraction the best epoch's weights are kept in best.safetensors)",
    )
}

/// The loop of [`run`] for a rank other than 0: train, evaluate, print nothing.
fn train_quietly(mut run: Run) -> Result<()> {
    while run.epochs_done() < run.config.epochs {
        run.train_epoch(&mut |_| {})?;
    }
    run.finish().map(drop)
}

/// A rank of a data-parallel run ends at once on Ctrl-C or SIGTERM: the launcher sends
/// them to every rank when the job is cancelled or a rank has died, and a rank waiting in
/// a collective for a dead one cannot finish its step. Checkpoints are written
/// atomically, so the last complete one stays; rank 0 says so.
fn end_on_signal(run: &Run, parallel: &DataParallel) {
    let (rank, ranks, dir) = (parallel.rank(), parallel.size(), run.dir.clone());
    let installed = ctrlc::set_handler(move || {
        if rank == 0 {
            eprintln!(
                "\nstopped by a signal (the job was cancelled, or a rank ended); the last \
                 complete checkpoint in {0} is intact; continue with:\n  \
                 mpirun -n {ranks} ocellus train --resume {0}",
                dir.display()
            );
        }
        std::process::exit(143);
    });
    if let (Err(e), 0) = (installed, rank) {
        eprintln!("warning: a signal will end training without a word ({e})");
    }
}

fn start(args: &Args, parallel: Option<&Arc<DataParallel>>) -> Result<Run> {
    let model = match (&args.model, &args.init_from) {
        (Some(model), _) => model.clone(),
        (None, Some(source)) => source.display().to_string(),
        (None, None) => "lenet5".to_string(),
    };
    let mut data = args.data.clone();
    if data.data == "folder" && data.image_size.is_none() && is_file(&model) {
        // The folder's images are resized to what the architecture file takes.
        data.image_size = Some(architecture_file(Path::new(&model))?.input);
    }
    let args = &Args {
        data,
        ..args.clone()
    };
    let splits = args.data.load(args.training.seed)?;
    let (c, h, w) = splits.train.image_shape();
    let classes = splits.train.num_classes();
    let architecture = match (&args.model, &args.init_from) {
        (None, Some(source)) => transfer_architecture(source, [c, h, w], classes)?,
        _ => architecture(&model, [c, h, w], classes)?,
    };
    let freeze = if args.freeze.is_some() || args.freeze_through.is_some() {
        let net = architecture.build(&mut ocellus::Rng::new(0))?;
        transfer::frozen_count(&net, args.freeze, args.freeze_through.as_deref())?
    } else {
        0
    };
    let mut config = RunConfig {
        init_from: args.init_from.as_ref().map(|p| p.display().to_string()),
        freeze,
        patience: args.patience,
        monitor: args.monitor.clone(),
        weight_decay: args.weight_decay,
        momentum: args.momentum,
        schedule: args.schedule.clone(),
        val_fraction: args.val_fraction,
        augment_pad: if args.augment { 4 } else { 0 },
        augment_flip: args.augment,
        label_smoothing: args.label_smoothing,
        parallel: ParallelConfig {
            ranks: parallel.map_or(1, |p| p.size()),
            sync_batchnorm: args.sync_batchnorm,
        },
        ..args.training.run_config(&model, &args.data)
    };
    if args.dashboard.dashboard && config.diagnostics_every.is_none() && freeze == 0 {
        // The dashboard's gradient-flow chart is drawn from the diagnostics.
        config.diagnostics_every = Some(args.training.diagnostics_every);
    }
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => free_run_dir(&format!("{}-{}", short_name(&model), args.data.data)),
    };
    match parallel {
        Some(p) if p.rank() > 0 => Run::replica(&dir, config, architecture, splits),
        _ => Run::start(&dir, config, architecture, splits),
    }
}

/// A flag that Ctrl-C (SIGINT) or SIGTERM sets, so that training stops after the step
/// under way and keeps its last checkpoint. A second signal ends the process at once;
/// checkpoints are written atomically, so that loses nothing either.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current step (Ctrl-C again to stop at once)");
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will end training without a word ({e})");
    }
    flag
}

/// The architecture of the trained run or model file `source`, checked to take `image`
/// = (C, H, W) images, with its head resized to `classes` outputs.
fn transfer_architecture(source: &Path, image: [usize; 3], classes: usize) -> Result<Architecture> {
    let (net, info) = ocellus_train::run::load_model(source)
        .map_err(|e| Error::config("--init-from", format!("cannot load the source model: {e}")))?;
    let mut arch = info.architecture;
    if arch.input != image {
        return Err(Error::config(
            "--init-from",
            format!(
                "{} takes {} images but the dataset's are {}×{}×{} (C×H×W)",
                source.display(),
                arch.input.map(|d| d.to_string()).join("×"),
                image[0],
                image[1],
                image[2]
            ),
        ));
    }
    if info.classes.len() != classes {
        arch.layers = transfer::with_classes(&arch.layers, &net, classes)?;
    }
    Ok(arch)
}

fn resume(dir: &Path, epochs: Option<usize>, parallel: Option<&Arc<DataParallel>>) -> Result<Run> {
    let rank = parallel.map_or(0, |p| p.rank());
    if rank > 0 {
        // Rank 0 reopens the checkpoint first (and finishes one a kill interrupted).
        parallel.expect("rank > 0").group().gather_u64(0)?;
    }
    if dir.is_dir() && !dir.join("config.json").exists() {
        return Err(Error::format(
            dir,
            "nothing to resume yet: the run was stopped before it wrote its settings; start it again",
        ));
    }
    let config = ocellus_train::run::read_config(dir)?;
    let data = DataArgs {
        data: config.data.clone(),
        data_dir: config.data_dir.as_ref().map(PathBuf::from),
        image_size: Some(config.image_size),
    };
    let splits = data.load(config.seed)?;
    let mut run = if rank == 0 {
        Run::resume(dir, splits)?
    } else {
        Run::resume_replica(dir, splits)?
    };
    if let (0, Some(parallel)) = (rank, parallel) {
        parallel.group().gather_u64(0)?;
    }
    if let Some(stop) = run.early_stop()? {
        return Err(Error::config(
            "train",
            format!(
                "{} {stop} (--patience {}); nothing to resume: its best weights are in best.safetensors",
                dir.display(),
                stop.patience
            ),
        ));
    }
    let done = run.epochs_done();
    let total = epochs.unwrap_or(run.config.epochs);
    if total <= done {
        let hint = match epochs {
            Some(e) => format!("--epochs {e} leaves nothing to do"),
            None => format!("it was set to train {} epochs", run.config.epochs),
        };
        return Err(Error::config(
            "train",
            format!(
                "{} has already trained {done} epochs and {hint}; give --epochs with a total above {done} to train further",
                dir.display()
            ),
        ));
    }
    if total != run.config.epochs {
        if rank == 0 {
            println!(
                "training to epoch {total} instead of {} (the learning-rate schedule spans the new total)",
                run.config.epochs
            );
        }
        run.extend_to(total)?;
    }
    if rank == 0 {
        println!(
            "resuming {} at epoch {} of {}",
            dir.display(),
            run.epochs_done(),
            run.config.epochs
        );
    }
    Ok(run)
}

/// The zoo model or architecture file `model`, checked to take `image` = (C, H, W) images
/// and give `classes` scores.
pub(crate) fn architecture(model: &str, image: [usize; 3], classes: usize) -> Result<Architecture> {
    if is_file(model) {
        let arch = architecture_file(Path::new(model))?;
        check_fits(&arch, model, image, classes)?;
        Ok(arch)
    } else {
        zoo::model(model, image, classes)
    }
}

/// The architecture in a file: an architecture file (TOML or JSON), or the one stored in a
/// model file or run directory (its weights are not used).
pub fn architecture_file(path: &Path) -> Result<Architecture> {
    let is_model = path.is_dir()
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_model {
        Ok(ocellus_train::run::load_model(path)?.1.architecture)
    } else {
        Architecture::from_file(path)
    }
}

/// True when `model` names a file (or a run directory) rather than a zoo model.
pub fn is_file(model: &str) -> bool {
    model.ends_with(".toml")
        || model.ends_with(".json")
        || model.ends_with(".safetensors")
        || Path::new(model).exists()
}

/// An architecture file must take the dataset's images and give one score per class.
fn check_fits(arch: &Architecture, file: &str, image: [usize; 3], classes: usize) -> Result<()> {
    if arch.input != image {
        return Err(Error::Format {
            path: file.into(),
            message: format!(
                "input = {:?} but the dataset's images are {}×{}×{} (C×H×W); for --data folder, \
                 --image-size {}x{}x{} resizes the images to fit",
                arch.input,
                image[0],
                image[1],
                image[2],
                arch.input[0],
                arch.input[1],
                arch.input[2]
            ),
        });
    }
    let shape = arch.output_shape().map_err(|e| Error::Format {
        path: file.into(),
        message: e.to_string(),
    })?;
    if shape != [1, classes] {
        return Err(Error::Format {
            path: file.into(),
            message: format!(
                "the network outputs {} but the dataset has {classes} classes: the last layer should be a linear layer with out_features = {classes}",
                ocellus::tensor::shape_str(&shape[1..])
            ),
        });
    }
    Ok(())
}

/// `runs/NAME`, or `runs/NAME-2`, `runs/NAME-3`… if taken.
pub(crate) fn free_run_dir(name: &str) -> PathBuf {
    let base = PathBuf::from("runs");
    let mut dir = base.join(name);
    let mut k = 2;
    while dir.exists() {
        dir = base.join(format!("{name}-{k}"));
        k += 1;
    }
    dir
}

pub(crate) fn describe(run: &Run) {
    let (c, h, w) = run.train.image_shape();
    println!(
        "{} ({} parameters) on {}: {} train / {} {} images of {c}×{h}×{w}, {} classes",
        run.info
            .architecture
            .name
            .as_deref()
            .unwrap_or(&run.config.model),
        thousands(run.model.param_count() as f64),
        run.config.data,
        thousands(run.train.len() as f64),
        thousands(run.val.len() as f64),
        if run.config.val_fraction > 0.0 {
            "val"
        } else {
            "test"
        },
        run.train.num_classes(),
    );
    println!(
        "{}, batch {}, {} epochs, {} thread(s); run directory {}",
        run.optimizer.describe(),
        run.config.batch_size,
        run.config.epochs,
        rayon::current_num_threads(),
        run.dir.display()
    );
    if let Some(source) = &run.config.init_from {
        let head = match ocellus_train::run::load_model(Path::new(source)) {
            Ok((_, info)) if info.classes.len() != run.info.classes.len() => format!(
                ", a new head for {} classes (it had {})",
                run.info.classes.len(),
                info.classes.len()
            ),
            _ => String::new(),
        };
        println!("weights from {source}{head}");
    }
    match run.config.freeze {
        0 => {}
        1 => println!("layer 0 frozen"),
        n => println!("layers 0–{} frozen", n - 1),
    }
    if let Some(patience) = run.config.patience {
        println!(
            "early stopping: patience {patience} epochs on the {}",
            ocellus_train::early_stop::Monitor::parse(&run.config.monitor)
                .map_or("validation set", |m| m.describe())
        );
    }
    if let Some(parallel) = run.parallel() {
        println!(
            "data-parallel on {} ranks ({} thread(s) each): about {} images of each batch per rank, batch norm {}",
            parallel.size(),
            rayon::current_num_threads(),
            run.config.batch_size / parallel.size(),
            if run.config.parallel.sync_batchnorm {
                "over the whole batch (--sync-batchnorm)"
            } else {
                "per rank"
            }
        );
    }
}
