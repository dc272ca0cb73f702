//! What joining paths costs in a training step: for the zoo's `inception` and
//! `efficientnet` at batch 64 on 1×28×28 images, the time of a forward (`Mode::Train`) and
//! backward pass of the whole network, against the time of the joins alone — every
//! concatenation (its copy forward, its split of `dy` backward) and every channel gate
//! (the multiplication forward, `dy·g` and the reduction `Σ dy·x` backward) — measured on
//! blocks of the same sizes whose paths do nothing: a `Concat` of two identity branches
//! and a `Scale` whose gate is one global average pooling.
//!
//! Run with `cargo bench --bench joins`; set `RAYON_NUM_THREADS` to choose the thread count.

use ocellus::layers::GlobalAvgPool;
use ocellus::summary::Summary;
use ocellus::{zoo, Concat, Layer, LayerExt, Mode, Rng, Scale, Sequential, Tensor};
use std::hint::black_box;
use std::time::Instant;

const WARM_UP: usize = 2;
const RUNS: usize = 9;

/// Median seconds per call of `f` over `RUNS` calls after `WARM_UP` unmeasured ones.
fn median_time(mut f: impl FnMut()) -> f64 {
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
    times[RUNS / 2]
}

/// Forward and backward of `layer` on `x` with upstream gradient `dy`.
fn step(layer: &mut dyn Layer, x: &Tensor, dy: &Tensor) {
    let y = layer.forward_ref(x, Mode::Train).expect("forward");
    black_box(y);
    black_box(layer.backward_ref(dy).expect("backward"));
}

/// A block that does only the join of a block with output `shape` of `kind`.
fn join_only(kind: &str, shape: &[usize]) -> Option<(Box<dyn Layer>, Vec<usize>)> {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    match kind {
        // Two identity branches of half the channels each copy as much as the block does.
        "concat" => {
            let branches = vec![Sequential::new(), Sequential::new()];
            let block = Concat::new(branches).expect("two branches");
            Some((Box::new(block), vec![n, c / 2, h, w]))
        }
        "scale" => {
            let gate = Sequential::new().with(GlobalAvgPool::new());
            Some((Box::new(Scale::new(gate)), shape.to_vec()))
        }
        _ => None,
    }
}

fn main() {
    let mut rng = Rng::new(0);
    let input = [64, 1, 28, 28];
    println!("threads: {}", rayon::current_num_threads());
    for name in ["inception", "efficientnet"] {
        let arch = zoo::model(name, [1, 28, 28], 10).expect("a zoo model");
        let mut net = arch.build(&mut rng).expect("the model builds");
        let x = Tensor::randn(&input, 1.0, &mut rng);
        let out = net.output_shape(&input).expect("the input fits");
        let dy = Tensor::randn(&out, 1.0, &mut rng);
        let whole = median_time(|| step(&mut net, &x, &dy));
        let table = Summary::of(&net, &input).expect("a summary");
        let (mut joins, mut count) = (0.0, 0);
        for row in table.rows.iter().filter(|r| r.is_block) {
            let Some((mut block, block_input)) = join_only(&row.kind, &row.output_shape) else {
                continue;
            };
            let bx = Tensor::randn(&block_input, 1.0, &mut rng);
            let by = block.output_shape(&block_input).expect("the join fits");
            let bdy = Tensor::randn(&by, 1.0, &mut rng);
            joins += median_time(|| step(block.as_mut(), &bx, &bdy));
            count += 1;
        }
        println!(
            "{name}: forward + backward {:.2} ms; its {count} joins alone {:.2} ms = {:.1}% of it ({} parameters)",
            whole * 1e3,
            joins * 1e3,
            100.0 * joins / whole,
            net.param_count()
        );
    }
}
