//! What a diagnosed training step costs against a plain one, interleaved step by step
//! (plain, diagnosed, plain, diagnosed, …) on the same batch so that a machine getting
//! busier or quieter affects both alike. The diagnosed step includes writing its record
//! as a JSON line (to memory). Prints the median ratio of the pairs and what it means for
//! a run diagnosed every 10 steps: 1 + (ratio − 1)/10.
//!
//!     cargo bench -p ocellus-train --bench diagnostics [-- MODEL…]
//!
//! (default: lenet5 resnet20 plain56), batch 64 of random 1×28×28 images, AdamW.

use std::time::Instant;

use ocellus::layers::{Layer, Mode};
use ocellus::loss;
use ocellus::optim::{Adam, AdamConfig, Optimizer};
use ocellus::{zoo, LayerExt, Rng, Sequential, Tensor};
use ocellus_train::diagnostics::{diagnosed_step, StepInfo};

const PAIRS: usize = 15;
const WARMUP: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let models = if args.is_empty() {
        vec!["lenet5".to_string(), "resnet20".into(), "plain56".into()]
    } else {
        args
    };
    println!("batch 64 of 1×28×28, AdamW; {PAIRS} interleaved pairs after {WARMUP} warm-up pairs");
    println!(
        "{:<10} {:>12} {:>15} {:>13} {:>21}",
        "model", "plain step", "diagnosed step", "median ratio", "ratio every 10 steps"
    );
    for name in models {
        let mut rng = Rng::new(1);
        let mut model = zoo::model(&name, [1, 28, 28], 10)
            .expect("a zoo model")
            .build(&mut rng)
            .expect("it builds");
        let x = Tensor::randn(&[64, 1, 28, 28], 1.0, &mut rng);
        let labels: Vec<usize> = (0..64).map(|i| i % 10).collect();
        let mut optimizer = Adam::new(AdamConfig::adamw(1e-4)).expect("valid settings");
        let plain = |model: &mut Sequential, optimizer: &mut Adam| {
            let start = Instant::now();
            model.zero_grad();
            let logits = model.forward_ref(&x, Mode::Train).unwrap();
            let (_, dlogits) = loss::cross_entropy(&logits, &labels, 0.0).unwrap();
            model.backward_params(dlogits).unwrap();
            optimizer.step(model).unwrap();
            start.elapsed().as_secs_f64()
        };
        let diagnosed = |model: &mut Sequential, optimizer: &mut Adam| {
            let start = Instant::now();
            let at = StepInfo {
                epoch: 1,
                step: 1,
                batch: 1,
                images: 64,
                loss: 0.0,
                lr: optimizer.lr(),
            };
            let (record, _) = diagnosed_step(model, optimizer, &x, &labels, 0.0, at).unwrap();
            std::hint::black_box(serde_json::to_string(&record).unwrap());
            start.elapsed().as_secs_f64()
        };
        for _ in 0..WARMUP {
            plain(&mut model, &mut optimizer);
            diagnosed(&mut model, &mut optimizer);
        }
        let (mut ratios, mut plains, mut diags) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..PAIRS {
            let a = plain(&mut model, &mut optimizer);
            let b = diagnosed(&mut model, &mut optimizer);
            ratios.push(b / a);
            plains.push(a);
            diags.push(b);
        }
        let r = median(&mut ratios);
        println!(
            "{name:<10} {:>9.2} ms {:>12.2} ms {r:>13.3} {:>21.4}",
            1e3 * median(&mut plains),
            1e3 * median(&mut diags),
            1.0 + (r - 1.0) / 10.0
        );
    }
}
