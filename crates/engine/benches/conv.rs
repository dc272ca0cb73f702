//! Throughput of `Conv2d(32→64, 3×3, padding 1)` on a (128, 32, 16, 16) batch, through the
//! layer API: forward (`Mode::Train`), and forward followed by backward.
//!
//! FLOPs: forward = 2·MACs; backward computes dx and dw, each as costly as the forward, so
//! forward + backward = 3 × the forward FLOPs. Reported: the median and the fastest of
//! repeated runs after a warm-up. Run with `cargo bench --bench conv`; set
//! `RAYON_NUM_THREADS` to choose the thread count.

use ocellus::layers::{Conv2d, Conv2dConfig};
use ocellus::{Layer, Mode, Rng, Tensor};
use std::hint::black_box;
use std::time::Instant;

const WARM_UP: usize = 3;
const RUNS: usize = 15;

/// Seconds per call of `f`: (median, fastest) of `RUNS` calls after `WARM_UP` unmeasured
/// ones. On a shared machine the median says what to expect, the fastest what the code
/// can do when nothing else runs.
fn time_runs(mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..WARM_UP {
        f();
    }
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], times[0])
}

fn main() {
    let mut rng = Rng::new(0);
    let shape = [128, 32, 16, 16];
    let mut conv = Conv2d::new(Conv2dConfig::new(32, 64, 3).padding(1), &mut rng)
        .expect("a valid convolution");
    let x = Tensor::randn(&shape, 1.0, &mut rng);
    let out = conv.output_shape(&shape).expect("the input fits");
    let dy = Tensor::randn(&out, 1.0, &mut rng);
    let forward_flops = 2.0 * conv.macs(&shape) as f64;

    let forward = time_runs(|| {
        black_box(
            conv.forward(black_box(x.clone()), Mode::Train)
                .expect("forward"),
        );
    });
    let train_step = time_runs(|| {
        black_box(
            conv.forward(black_box(x.clone()), Mode::Train)
                .expect("forward"),
        );
        black_box(conv.backward(black_box(dy.clone())).expect("backward"));
    });

    println!(
        "{} on {:?}, {} rayon threads, {RUNS} runs",
        conv.describe(),
        shape,
        rayon::current_num_threads()
    );
    report("forward", forward, forward_flops);
    report("forward + backward", train_step, 3.0 * forward_flops);
}

fn report(what: &str, (median, best): (f64, f64), flops: f64) {
    println!(
        "{what:<19} median {:7.2} ms {:6.1} GFLOP/s | fastest {:7.2} ms {:6.1} GFLOP/s",
        median * 1e3,
        flops / median / 1e9,
        best * 1e3,
        flops / best / 1e9
    );
}
