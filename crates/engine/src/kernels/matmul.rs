//! Row-major matrix multiplication on top of the `gemm` crate's micro-kernels (AVX-512,
//! AVX2/FMA or portable, chosen at run time for the CPU).

use super::dot::dot_rows;
use super::RowsMut;
use rayon::prelude::*;

/// Size (m·n·k) from which [`gemm()`] spreads a product over the rayon pool. Below it, a
/// thread's part is too small to repay handing it out and joining the threads again: the
/// fully connected layers of the zoo's models at usual batch sizes ran slower threaded
/// than on one thread (measurements in `docs/PERFORMANCE.md`).
pub const PARALLEL_MACS: usize = 1 << 24;

/// Length of the sums from which `A · Bᵀ` with both operands stored row-major (every entry
/// a dot product of two contiguous rows) goes to [`dot_rows`] instead of the `gemm` crate.
/// `gemm` first copies B into a transposed panel; with long sums, whose rows lie far apart
/// in memory, that copy costs more than the arithmetic, and `dot_rows` copies nothing.
/// With shorter sums the final reduction of each entry's lanes weighs more and `gemm`
/// wins (measurements of both sides in `docs/PERFORMANCE.md`).
const DOT_ROWS_MIN_K: usize = 1024;

/// `C (m×n) = [C +] op(A) (m×k) · op(B) (k×n)`, all row-major, where `op(A) = Aᵀ` when
/// `a_transposed` (A is then stored `k×m`), likewise for B. With `accumulate` the product
/// is added to C; otherwise C is overwritten.
///
/// Products of at least [`PARALLEL_MACS`] multiply-adds are cut into one block of C's
/// columns (or rows, if C has more rows) per rayon thread, each a single-threaded product
/// over the whole of `k`: an output value is computed the same way whatever the thread
/// count. Called from a rayon job (the command line runs on a worker of its pool), the
/// parts are nested in it. (The `gemm` crate's own threading, which is not enabled, was
/// slower than this split on the fully connected products: `docs/PERFORMANCE.md`.)
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
    if threads == 1 || m * n * k < PARALLEL_MACS {
        return gemm_one_thread(m, n, k, a, a_transposed, b, b_transposed, c, accumulate);
    }
    let layout = Layout::check(m, n, k, a, a_transposed, b, b_transposed, c);
    let (by_columns, len) = if n >= m { (true, n) } else { (false, m) };
    let per_part = len.div_ceil(threads);
    let (a, b, c) = (
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        c.as_mut_ptr() as usize,
    );
    (0..len.div_ceil(per_part))
        .into_par_iter()
        .for_each(|part| {
            let start = part * per_part;
            let count = per_part.min(len - start);
            // SAFETY: `Layout::check` proved every index of the whole product in bounds;
            // a part reads within A and B and writes its own block of C, disjoint from the
            // other parts' blocks (C is borrowed mutably for the whole call).
            unsafe {
                if by_columns {
                    layout.product(
                        m,
                        count,
                        k,
                        a as *const f32,
                        (b as *const f32).add(start * layout.b_cs),
                        (c as *mut f32).add(start),
                        accumulate,
                    );
                } else {
                    layout.product(
                        count,
                        n,
                        k,
                        (a as *const f32).add(start * layout.a_rs),
                        b as *const f32,
                        (c as *mut f32).add(start * n),
                        accumulate,
                    );
                }
            }
        });
}

/// [`gemm()`] on the calling thread only, for callers that already spread independent
/// products over the rayon pool (the convolution, per image).
#[allow(clippy::too_many_arguments)]
pub fn gemm_one_thread(
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
    let layout = Layout::check(m, n, k, a, a_transposed, b, b_transposed, c);
    // SAFETY: `Layout::check` proved every index in bounds, and `c` does not alias `a`
    // or `b` (it is borrowed mutably).
    unsafe { layout.product(m, n, k, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), accumulate) }
}

/// The strides of one product's operands, once their lengths are checked.
struct Layout {
    /// (column stride, row stride) of A and of B; C's row stride.
    a_cs: usize,
    a_rs: usize,
    b_cs: usize,
    b_rs: usize,
    c_rs: usize,
}

impl Layout {
    /// Checks the slice lengths against `m×k`, `k×n` and `m×n`.
    #[allow(clippy::too_many_arguments)]
    fn check(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        a_transposed: bool,
        b: &[f32],
        b_transposed: bool,
        c: &[f32],
    ) -> Layout {
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
        let (a_cs, a_rs) = if a_transposed { (m, 1) } else { (1, k) };
        let (b_cs, b_rs) = if b_transposed { (k, 1) } else { (1, n) };
        Layout {
            a_cs,
            a_rs,
            b_cs,
            b_rs,
            c_rs: n,
        }
    }

    /// The single-threaded product of an `m×k` block of A at `a` and a `k×n` block of B
    /// at `b` into the `m×n` block of C at `c`, with this layout's strides.
    ///
    /// # Safety
    /// Every index the strides reach from the three pointers must be in bounds, and the
    /// block of C must not overlap A, B, or a block another thread writes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn product(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        accumulate: bool,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                for i in 0..m {
                    // SAFETY: row i of the C block is in bounds (the caller's contract).
                    unsafe { std::slice::from_raw_parts_mut(c.add(i * self.c_rs), n) }.fill(0.0);
                }
            }
            return;
        }
        if self.a_cs == 1 && self.b_rs == 1 && k >= DOT_ROWS_MIN_K {
            // SAFETY: the caller's contract: A's m rows of k values and B's n rows of k
            // values (B is stored transposed) are in bounds, and C's m rows of n values,
            // `c_rs` apart, are in bounds and this call's alone — the values between
            // them may be another thread's, which is why C is handed on row by row.
            let (a, b, c) = unsafe {
                (
                    std::slice::from_raw_parts(a, m * k),
                    std::slice::from_raw_parts(b, n * k),
                    RowsMut::from_raw(c, m, n, self.c_rs),
                )
            };
            return dot_rows(m, n, k, a, b, c, accumulate);
        }
        // SAFETY: the caller's contract.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c,
                1,
                self.c_rs as isize,
                accumulate,
                a,
                self.a_cs as isize,
                self.a_rs as isize,
                b,
                self.b_cs as isize,
                self.b_rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
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
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (64, 200, 150),
            (5, 9, 1100),
        ] {
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
        // Above PARALLEL_MACS, once cut by columns and once by rows, through the `gemm`
        // crate and through `dot_rows` (k ≥ DOT_ROWS_MIN_K).
        for (m, n, k) in [
            (96, 200, 1000),
            (300, 100, 600),
            (60, 300, 1030),
            (300, 60, 1030),
        ] {
            assert!(m * n * k >= PARALLEL_MACS);
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a rayon pool");
                let mut c = vec![0.5; m * n];
                pool.install(|| gemm(m, n, k, &a, false, &b, true, &mut c, true));
                c
            };
            let one = run(1);
            let want = naive(m, n, k, &a, false, &b, true);
            for (got, want) in one.iter().zip(&want) {
                assert!((got - (want + 0.5)).abs() < 1e-2);
            }
            assert_eq!(one, run(2), "{m}×{n}×{k} on 2 threads");
            assert_eq!(one, run(3), "{m}×{n}×{k} on 3 threads");
        }
    }
}
