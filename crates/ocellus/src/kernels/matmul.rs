//! Row-major matrix multiplication on top of the `gemm` crate's AVX2/FMA micro-kernels.

/// Size (m·n·k) from which [`gemm()`] hands a product to gemm's own rayon threading. On two
/// cores, the products of fully connected layers with 0.6–5 M multiply-adds (batch
/// 32–128, 128–4096 features) mostly ran slower threaded than on one thread (0.35–0.9×,
/// with both cores idle too); from about 16 M threading mostly paid (up to 1.5–1.75×).
pub const PARALLEL_MACS: usize = 1 << 24;

/// `C (m×n) = [C +] op(A) (m×k) · op(B) (k×n)`, all row-major, where `op(A) = Aᵀ` when
/// `a_transposed` (A is then stored `k×m`), likewise for B. With `accumulate` the product
/// is added to C; otherwise C is overwritten.
///
/// Products of at least [`PARALLEL_MACS`] multiply-adds run on the rayon pool; gemm splits
/// the output, never the sum over `k`, so the result does not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    let parallelism =
        if threads > 1 && m * n * k >= PARALLEL_MACS && rayon::current_thread_index().is_none() {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
    gemm_with(
        m,
        n,
        k,
        a,
        a_transposed,
        b,
        b_transposed,
        c,
        accumulate,
        parallelism,
    );
}

/// [`gemm()`] with the threading chosen by the caller: `Parallelism::None` for callers that
/// already spread independent products over the rayon pool (the convolution, per image).
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    c: &mut [f32],
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert_eq!(
        a.len(),
        m * k,
        "gemm: A holds {} values, not {m}×{k}",
        a.len()
    );
    assert_eq!(
        b.len(),
        k * n,
        "gemm: B holds {} values, not {k}×{n}",
        b.len()
    );
    assert_eq!(
        c.len(),
        m * n,
        "gemm: C holds {} values, not {m}×{n}",
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    // (column stride, row stride) of each operand.
    let (a_cs, a_rs) = if a_transposed { (m, 1) } else { (1, k) };
    let (b_cs, b_rs) = if b_transposed { (k, 1) } else { (1, n) };
    // SAFETY: the asserts above guarantee every index the strides reach is in bounds,
    // and `c` does not alias `a` or `b` (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], at: bool, b: &[f32], bt: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let av = if at { a[p * m + i] } else { a[i * k + p] };
                    let bv = if bt { b[j * k + p] } else { b[p * n + j] };
                    c[i * n + j] += av * bv;
                }
            }
        }
        c
    }

    #[test]
    fn every_transpose_combination_matches_the_triple_loop() {
        let mut rng = Rng::new(5);
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 200, 150)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            for at in [false, true] {
                for bt in [false, true] {
                    let want = naive(m, n, k, &a, at, &b, bt);
                    let mut c = vec![1.0; m * n];
                    gemm(m, n, k, &a, at, &b, bt, &mut c, true);
                    for (got, want) in c.iter().zip(&want) {
                        assert!(
                            (got - (want + 1.0)).abs() < 1e-3,
                            "{m}×{n}×{k} at={at} bt={bt}"
                        );
                    }
                    gemm(m, n, k, &a, at, &b, bt, &mut c, false);
                    for (got, want) in c.iter().zip(&want) {
                        assert!((got - want).abs() < 1e-3);
                    }
                }
            }
        }
    }

    #[test]
    fn threading_does_not_change_a_single_bit() {
        let mut rng = Rng::new(9);
        let (m, n, k) = (96, 200, 300);
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a rayon pool");
        let run = |parallelism| {
            let mut c = vec![0.0; m * n];
            pool.install(|| gemm_with(m, n, k, &a, false, &b, true, &mut c, false, parallelism));
            c
        };
        assert_eq!(
            run(gemm::Parallelism::None),
            run(gemm::Parallelism::Rayon(2))
        );
    }
}
