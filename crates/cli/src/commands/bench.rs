//! `ocellus bench`: training and inference throughput of zoo models (or of one convolution)
//! on random data, with an optional per-layer profile.

use ocellus::kernels::peak::{self, Peak};
use ocellus::layers::{Conv2d, Conv2dConfig};
use ocellus::network::Replicas;
use ocellus::optim::{Adam, AdamConfig};
use ocellus::LayerExt;
use ocellus::{zoo, Error, Layer, Mode, Result, Rng, Sequential, Tensor};
use ocellus_train::bench::{self, LayerTiming, Stats};
use serde_json::{json, Value};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  ocellus bench                                   LeNet-5, batch 64, training and inference
  ocellus bench --model smallcnn --batch-size 32,128,512 --mode train
  ocellus bench --model lenet5 --profile          where the time of a training step goes
  ocellus --threads 1 bench --model mlp --json    one thread, machine-readable
  ocellus bench --conv 64,3,1 --input 32x16x16 --batch-size 128
                                                  Conv2d(32→64, 3×3, padding 1) in GFLOP/s
  ocellus bench --model resnet20 --batch-size 128 --peak
                                                  and each row as a fraction of the peak

A training step is zero_grad, forward (train mode), cross-entropy, backward (the first
layer without the gradient of the data) and an AdamW step on one random batch; inference
is a forward in eval mode. Reported: images/s (and GFLOP/s, counting 2 FLOPs per
multiply-add and a backward as twice the forward, once for the first layer) as the
median, minimum and maximum over --repeats runs after --warmup unmeasured ones.

--peak first measures the machine's f32 multiply-add peak on the same threads with the
instruction set the kernels dispatch to (AVX-512, AVX2 + FMA or portable): independent
fused multiply-adds on registers, no memory traffic, the best of 5 runs of 0.2 s. Each
row's GFLOP/s is then also given as a percentage of it.")]
pub struct Args {
    /// A zoo model (lenet5, smallcnn, alexnet, vgg, inception, resnet20/32/56, plain20/32/56, resnet-bottleneck, densenet, efficientnet, mlp, mlp-lenet5).
    #[arg(long, default_value = "lenet5")]
    model: String,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    batch_size: Vec<usize>,
    /// Image shape C×H×W, e.g. 1x28x28 (default: 3x32x32 for smallcnn, vgg and resnet20, 1x28x28 otherwise).
    #[arg(long, value_parser = parse_input)]
    input: Option<[usize; 3]>,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Unmeasured runs before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Measured runs.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    #[arg(long, default_value = "both", value_parser = ["train", "infer", "both"])]
    mode: String,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Also time every layer's forward and backward in a training step.
    #[arg(long)]
    profile: bool,
    /// Measure one convolution OC,K,PAD (out channels, K×K kernel, padding) on --input
    /// images instead of a model: "infer" is its forward, "train" forward + backward.
    #[arg(long, value_parser = parse_conv, conflicts_with = "model")]
    conv: Option<[usize; 3]>,
    /// Measure the f32 FMA peak first and give every row's fraction of it.
    #[arg(long)]
    peak: bool,
}

fn parse_input(s: &str) -> std::result::Result<[usize; 3], String> {
    parse_dims(s, 'x', "C×H×W such as 1x28x28")
}

fn parse_conv(s: &str) -> std::result::Result<[usize; 3], String> {
    parse_dims(s, ',', "OC,K,PAD such as 64,3,1")
}

fn parse_dims(s: &str, sep: char, expected: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split(sep).collect();
    let values: Vec<usize> = parts.iter().filter_map(|p| p.trim().parse().ok()).collect();
    match values[..] {
        [a, b, c] if values.len() == parts.len() => Ok([a, b, c]),
        _ => Err(format!("'{s}' is not {expected}")),
    }
}

/// The measurements of one mode at one batch size.
struct Row {
    mode: &'static str,
    batch_size: usize,
    seconds: Vec<f64>,
    /// FLOPs of one run (2 per multiply-add; a backward counts twice its forward, but
    /// once for the first layer of a model, which computes no input gradient).
    flops: f64,
}

impl Row {
    fn images_per_second(&self) -> Stats {
        Stats::of(&self.seconds).map(|t| self.batch_size as f64 / t)
    }

    fn gflops(&self) -> Stats {
        Stats::of(&self.seconds).map(|t| self.flops / t / 1e9)
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.batch_size.contains(&0) || args.repeats == 0 || args.classes == 0 {
        return Err(Error::config(
            "bench",
            "--batch-size, --repeats and --classes must be at least 1",
        ));
    }
    let (name, input) = match args.conv {
        Some([oc, k, pad]) => {
            let input = args.input.unwrap_or([32, 16, 16]);
            (format!("conv {}→{oc} {k}×{k} pad {pad}", input[0]), input)
        }
        None => (
            args.model.clone(),
            args.input.unwrap_or(default_input(&args.model)),
        ),
    };
    let modes: &[&'static str] = match args.mode.as_str() {
        "train" => &["train"],
        "infer" => &["infer"],
        _ => &["train", "infer"],
    };

    let peak = args.peak.then(|| peak::measure(0.2, 5));
    let mut rows = Vec::new();
    let mut profiles = Vec::new();
    for &n in &args.batch_size {
        let mut rng = Rng::new(0);
        let mut model = build(&args, input, &mut rng)?;
        let [c, h, w] = input;
        ocellus::summary::Summary::of(&model, &[n, c, h, w])?.expect_trainable()?;
        let (x, labels) = bench::random_batch(input, n, args.classes, &mut rng);
        let shape = x.shape().to_vec();
        let forward_flops = 2.0 * model.macs(&shape) as f64;
        // A training step skips the first layer's input gradient (its input is data);
        // the --conv measurement computes it.
        let first_layer_flops = match (&args.conv, model.layers().first()) {
            (None, Some(first)) => 2.0 * first.macs(&shape) as f64,
            _ => 0.0,
        };
        for &mode in modes {
            let seconds = measure(&args, &mut model, mode, &x, &labels, &mut rng)?;
            let flops = match mode {
                "train" => 3.0 * forward_flops - first_layer_flops,
                _ => forward_flops,
            };
            rows.push(Row {
                mode,
                batch_size: n,
                seconds,
                flops,
            });
        }
        if args.profile {
            let timings = bench::profile(&mut model, &x, &labels, args.warmup, args.repeats)?;
            profiles.push((n, timings));
        }
    }

    if args.json {
        println!("{}", to_json(&args, &name, input, &rows, &profiles, peak));
    } else {
        print_tables(&args, &name, input, &rows, &profiles, peak);
    }
    Ok(())
}

/// The model's usual image shape: the CIFAR-sized models take 3×32×32, the others 1×28×28.
fn default_input(model: &str) -> [usize; 3] {
    match model {
        "smallcnn" | "vgg" | "resnet20" => [3, 32, 32],
        _ => [1, 28, 28],
    }
}

fn build(args: &Args, input: [usize; 3], rng: &mut Rng) -> Result<Sequential> {
    match args.conv {
        Some([oc, k, pad]) => {
            let conv = Conv2d::new(Conv2dConfig::new(input[0], oc, k).padding(pad), rng)?;
            Ok(Sequential::new().with(conv))
        }
        None => {
            let arch = zoo::model(&args.model, input, args.classes)?;
            arch.output_shape()?;
            arch.build(rng)
        }
    }
}

/// Seconds of each measured run of `mode`.
fn measure(
    args: &Args,
    model: &mut Sequential,
    mode: &str,
    x: &Tensor,
    labels: &[usize],
    rng: &mut Rng,
) -> Result<Vec<f64>> {
    let (warmup, repeats) = (args.warmup, args.repeats);
    match (mode, args.conv.is_some()) {
        ("infer", false) => {
            let mut replicas = Replicas::new();
            bench::time_repeated(warmup, repeats, || {
                bench::infer_step(model, x, &mut replicas)
            })
        }
        ("infer", true) => bench::time_repeated(warmup, repeats, || {
            model.forward_ref(x, Mode::Train).map(drop)
        }),
        (_, false) => {
            let mut optimizer = Adam::new(AdamConfig::adamw(1e-3))?;
            bench::time_repeated(warmup, repeats, || {
                bench::train_step(model, &mut optimizer, x, labels)
            })
        }
        (_, true) => {
            let dy = Tensor::randn(&model.output_shape(x.shape())?, 1.0, rng);
            bench::time_repeated(warmup, repeats, || {
                model.forward_ref(x, Mode::Train)?;
                model.backward_ref(&dy).map(drop)
            })
        }
    }
}

fn stats_json(s: Stats) -> Value {
    json!({"median": s.median, "min": s.min, "max": s.max})
}

fn to_json(
    args: &Args,
    name: &str,
    input: [usize; 3],
    rows: &[Row],
    profiles: &[(usize, Vec<LayerTiming>)],
    peak: Option<Peak>,
) -> Value {
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut row = json!({
                "mode": r.mode,
                "batch_size": r.batch_size,
                "images_per_second": stats_json(r.images_per_second()),
                "gflops": stats_json(r.gflops()),
                "seconds": r.seconds,
            });
            if let Some(p) = peak {
                row["fraction_of_peak"] = json!(r.gflops().median / p.gflops);
            }
            row
        })
        .collect();
    let profiles: Vec<Value> = profiles
        .iter()
        .map(|(n, timings)| {
            let layers: Vec<Value> = timings
                .iter()
                .map(|t| {
                    json!({
                        "index": t.index,
                        "layer": t.description,
                        "input": t.input,
                        "macs": t.macs,
                        "forward_seconds": t.forward,
                        "backward_seconds": t.backward,
                        "forward_gflops": t.forward_gflops(),
                    })
                })
                .collect();
            json!({"batch_size": n, "layers": layers})
        })
        .collect();
    json!({
        "model": name,
        "input": input,
        "classes": args.classes,
        "threads": rayon::current_num_threads(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": results,
        "profiles": profiles,
        "peak": peak.map(|p| json!({"gflops": p.gflops, "threads": p.threads, "isa": p.isa.name()})),
    })
}

fn print_tables(
    args: &Args,
    name: &str,
    input: [usize; 3],
    rows: &[Row],
    profiles: &[(usize, Vec<LayerTiming>)],
    peak: Option<Peak>,
) {
    println!(
        "{name} on {}×{}×{} images, {} threads; {} warm-up and {} measured runs",
        input[0],
        input[1],
        input[2],
        rayon::current_num_threads(),
        args.warmup,
        args.repeats
    );
    if let Some(p) = peak {
        println!(
            "f32 multiply-add peak: {:.1} GFLOP/s on {} thread(s) ({})",
            p.gflops,
            p.threads,
            p.isa.name()
        );
    }
    println!(
        "{:<6} {:>6} {:>12} {:>12} {:>12} {:>10}{}",
        "mode",
        "batch",
        "images/s",
        "min",
        "max",
        "GFLOP/s",
        if peak.is_some() { "  of peak" } else { "" }
    );
    for r in rows {
        let ips = r.images_per_second();
        let of_peak = peak.map_or(String::new(), |p| {
            format!(" {:>7.1}%", 100.0 * r.gflops().median / p.gflops)
        });
        println!(
            "{:<6} {:>6} {:>12.0} {:>12.0} {:>12.0} {:>10.1}{of_peak}",
            r.mode,
            r.batch_size,
            ips.median,
            ips.min,
            ips.max,
            r.gflops().median
        );
    }
    for (n, timings) in profiles {
        println!();
        println!("profile of a training step at batch {n} (median of {} runs; loss and optimiser excluded)", args.repeats);
        println!(
            "{:>3} {:<36} {:>16} {:>11} {:>11} {:>8} {:>6}",
            "#", "layer", "input", "forward ms", "backward ms", "GFLOP/s", "share"
        );
        let total: f64 = timings.iter().map(|t| t.forward + t.backward).sum();
        for t in timings {
            let gflops = if t.macs > 0 {
                format!("{:.1}", t.forward_gflops())
            } else {
                "-".to_string()
            };
            println!(
                "{:>3} {:<36} {:>16} {:>11.3} {:>11.3} {:>8} {:>5.1}%",
                t.index,
                t.description,
                ocellus::tensor::shape_str(&t.input),
                1e3 * t.forward,
                1e3 * t.backward,
                gflops,
                100.0 * (t.forward + t.backward) / total.max(1e-12)
            );
        }
        let forward: f64 = timings.iter().map(|t| t.forward).sum();
        let backward: f64 = timings.iter().map(|t| t.backward).sum();
        println!(
            "{:>3} {:<36} {:>16} {:>11.3} {:>11.3}",
            "",
            "total",
            "",
            1e3 * forward,
            1e3 * backward
        );
    }
}
