//! Batch normalisation synchronised over ranks (threads of a `LocalGroup` here) computes
//! what one layer computes on the whole batch: outputs, input gradients, parameter
//! gradients summed over the ranks, and running statistics.

use std::sync::Arc;

use ocellus::collective::{Collective, LocalGroup};
use ocellus::gradcheck::assert_close;
use ocellus::layers::{BatchNorm1d, BatchNorm2d, BatchNormConfig};
use ocellus::prelude::*;

/// The rows `lo..hi` of an (N, …) tensor.
fn rows(t: &Tensor, lo: usize, hi: usize) -> Tensor {
    let per = t.len() / t.shape()[0];
    let mut shape = t.shape().to_vec();
    shape[0] = hi - lo;
    Tensor::from_vec(&shape, t.data()[lo * per..hi * per].to_vec()).unwrap()
}

/// The whole batch through `make()` alone, and cut at `cuts` through one synchronised
/// copy per rank: y and dx row by row, parameter gradients summed, buffers per rank.
fn compare<L: Layer + 'static>(
    make: impl Fn() -> L + Sync,
    x: &Tensor,
    dy: &Tensor,
    cuts: &[usize],
) {
    let mut whole = make();
    let y = whole.forward_ref(x, Mode::Train).unwrap();
    let dx = whole.backward_ref(dy).unwrap();

    let ranks = cuts.len() - 1;
    let group = LocalGroup::new(ranks);
    let parts: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|member| {
                let make = &make;
                s.spawn(move || {
                    let r = member.rank();
                    let (lo, hi) = (cuts[r], cuts[r + 1]);
                    let mut layer = make();
                    layer.sync_batch_statistics(Some(Arc::new(member) as Arc<dyn Collective>));
                    let y = layer.forward_ref(&rows(x, lo, hi), Mode::Train).unwrap();
                    let dx = layer.backward_ref(&rows(dy, lo, hi)).unwrap();
                    let grads: Vec<Vec<f32>> = layer
                        .params()
                        .iter()
                        .map(|(_, p)| p.grad().data().to_vec())
                        .collect();
                    let buffers: Vec<Vec<f32>> = layer
                        .buffers()
                        .iter()
                        .map(|(_, b)| b.data().to_vec())
                        .collect();
                    (y, dx, grads, buffers)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, (y_r, dx_r, _, buffers)) in parts.iter().enumerate() {
        let (lo, hi) = (cuts[r], cuts[r + 1]);
        assert_close(
            &format!("y of rank {r}"),
            y_r.data(),
            rows(&y, lo, hi).data(),
            1e-5,
            1e-6,
        );
        assert_close(
            &format!("dx of rank {r}"),
            dx_r.data(),
            rows(&dx, lo, hi).data(),
            1e-4,
            1e-6,
        );
        for ((name, b), got) in whole.buffers().iter().zip(buffers) {
            assert_close(&format!("{name} of rank {r}"), got, b.data(), 1e-5, 1e-7);
        }
    }
    for (i, (name, p)) in whole.params().iter().enumerate() {
        let mut sum = vec![0.0f32; p.grad().len()];
        for (_, _, grads, _) in &parts {
            for (s, g) in sum.iter_mut().zip(&grads[i]) {
                *s += g;
            }
        }
        assert_close(
            &format!("d{name} summed over ranks"),
            &sum,
            p.grad().data(),
            1e-4,
            1e-6,
        );
    }
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 1.0, &mut Rng::new(seed)).map(|v| 0.5 + 2.0 * v)
}

#[test]
fn batchnorm2d_synchronised_over_two_and_three_ranks_is_the_whole_batch() {
    let x = random(&[7, 3, 4, 5], 1);
    let dy = random(&[7, 3, 4, 5], 2);
    let make = || {
        let mut bn = BatchNorm2d::new(3).unwrap();
        // Non-trivial γ and β, so that dx depends on them.
        bn.set(
            "weight",
            Tensor::from_vec(&[3], vec![0.5, -1.5, 2.0]).unwrap(),
        )
        .unwrap();
        bn.set(
            "bias",
            Tensor::from_vec(&[3], vec![0.1, 0.2, -0.3]).unwrap(),
        )
        .unwrap();
        bn
    };
    compare(make, &x, &dy, &[0, 4, 7]);
    compare(make, &x, &dy, &[0, 1, 3, 7]);
}

#[test]
fn batchnorm1d_with_the_cumulative_average_synchronised_is_the_whole_batch() {
    let x = random(&[6, 5], 3);
    let dy = random(&[6, 5], 4);
    let make = || BatchNorm1d::with_config(BatchNormConfig::new(5).momentum(None)).unwrap();
    compare(make, &x, &dy, &[0, 3, 6]);
}

#[test]
fn one_image_per_rank_is_a_batch_when_synchronised() {
    // Alone, a batch of one image has no variance and is refused; spread over two ranks
    // the batch has two.
    let x = random(&[2, 4], 5);
    let dy = random(&[2, 4], 6);
    let mut alone = BatchNorm1d::new(4).unwrap();
    assert!(alone.forward_ref(&rows(&x, 0, 1), Mode::Train).is_err());
    compare(|| BatchNorm1d::new(4).unwrap(), &x, &dy, &[0, 1, 2]);
}
