//! Products whose every entry is a dot product of two contiguous rows:
//! `C (m×n) = A (m×k) · Bᵀ`, with B stored `n×k`. A convolution's weight gradient has this
//! form, `dW (OC, K) = dY (OC, P) · colsᵀ`, both operands running along the output
//! positions; a general GEMM first copies one of them into a transposed panel, which for
//! the few output channels and taps of a first layer costs more than the arithmetic (and
//! with rows 4 KiB apart, as for 32×32 images, thrashes the L1 cache).
//!
//! Here a block of `R` rows of A and `S` rows of B is swept once, `R·S` running sums
//! side by side in vector registers (lanes along `k`), each reduced to one number at the
//! end: every loaded vector serves `R` or `S` multiply-adds, and nothing is copied.

use super::{pairwise_sum, RowsMut};

/// `C (m×n) [+]= A (m×k) · Bᵀ` where B is stored `n×k`, all row-major, C given as its
/// rows: `C[i, j] [+]= Σ_p A[i, p]·B[j, p]`. With `accumulate` the products are added to
/// C; otherwise C is overwritten. Compiled for AVX-512 or AVX2/FMA where the CPU has them.
///
/// Each entry is summed the same way whatever `m`, `n` and the blocks around it, so a
/// product cut into blocks of C gives the same bits as the whole.
#[allow(clippy::too_many_arguments)]
pub fn dot_rows(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    mut c: RowsMut,
    accumulate: bool,
) {
    assert_eq!(
        a.len(),
        m * k,
        "dot_rows: A holds {} values, not {m}×{k}",
        a.len()
    );
    assert_eq!(
        b.len(),
        n * k,
        "dot_rows: B holds {} values, not {n}×{k}",
        b.len()
    );
    assert!(
        c.rows() == m && c.cols() == n,
        "dot_rows: C is {} rows of {}, not {m} of {n}",
        c.rows(),
        c.cols()
    );
    let product = Product {
        m,
        n,
        k,
        accumulate,
    };
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { dot_rows_avx512(&product, a, b, &mut c) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { dot_rows_avx2(&product, a, b, &mut c) };
        }
    }
    blocks::<4, 4, 3, false>(&product, a, b, &mut c);
}

/// The sizes of one [`dot_rows`] product.
struct Product {
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
}

/// 16 lanes in one register; 4×4 running sums and 8 loaded rows fit the 32 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_rows_avx512(product: &Product, a: &[f32], b: &[f32], c: &mut RowsMut) {
    blocks::<16, 4, 4, true>(product, a, b, c);
}

/// 8 lanes in one register; 4×3 running sums and the rows they read fit the 16 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_rows_avx2(product: &Product, a: &[f32], b: &[f32], c: &mut RowsMut) {
    blocks::<8, 4, 3, true>(product, a, b, c);
}

/// Cuts C into blocks of `R×S` (smaller at the right and bottom edges) and sums each with
/// [`block`], `L` lanes per running sum; `FMA` fuses each multiply-add into one rounding.
#[inline(always)]
fn blocks<const L: usize, const R: usize, const S: usize, const FMA: bool>(
    product: &Product,
    a: &[f32],
    b: &[f32],
    c: &mut RowsMut,
) {
    let &Product {
        m,
        n,
        k,
        accumulate,
    } = product;
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c.row(i).fill(0.0);
            }
        }
        return;
    }
    for i0 in (0..m).step_by(R) {
        let a_rows = &a[i0 * k..(i0 + R).min(m) * k];
        for j0 in (0..n).step_by(S) {
            let b_rows = &b[j0 * k..(j0 + S).min(n) * k];
            let mut store = |r: usize, s: usize, v: f32| {
                let dst = &mut c.row(i0 + r)[j0 + s];
                *dst = if accumulate { *dst + v } else { v };
            };
            // The edges of C take smaller blocks: as many sums as there are entries left.
            match a_rows.len() / k {
                1 => with_rows::<L, 1, S, FMA>(k, a_rows, b_rows, &mut store),
                2 => with_rows::<L, 2, S, FMA>(k, a_rows, b_rows, &mut store),
                3 => with_rows::<L, 3, S, FMA>(k, a_rows, b_rows, &mut store),
                _ => with_rows::<L, R, S, FMA>(k, a_rows, b_rows, &mut store),
            }
        }
    }
}

/// [`block`] for `R` rows of A and the 1 to `S` rows of B in `b_rows`.
#[inline(always)]
fn with_rows<const L: usize, const R: usize, const S: usize, const FMA: bool>(
    k: usize,
    a_rows: &[f32],
    b_rows: &[f32],
    store: &mut impl FnMut(usize, usize, f32),
) {
    match b_rows.len() / k {
        1 => block::<L, R, 1, FMA>(k, a_rows, b_rows, store),
        2 => block::<L, R, 2, FMA>(k, a_rows, b_rows, store),
        3 => block::<L, R, 3, FMA>(k, a_rows, b_rows, store),
        _ => block::<L, R, S, FMA>(k, a_rows, b_rows, store),
    }
}

/// The `R×S` dot products of `R` rows of A (`a_rows`, `R×k`) with `S` rows of B, handed to
/// `store(r, s, value)`. Lane `l` of sum `(r, s)` collects the products at `p ≡ l mod L`;
/// the lanes are added pairwise at the end, then the last `k mod L` products.
#[inline(always)]
fn block<const L: usize, const R: usize, const S: usize, const FMA: bool>(
    k: usize,
    a_rows: &[f32],
    b_rows: &[f32],
    store: &mut impl FnMut(usize, usize, f32),
) {
    let steps = k / L;
    let a: [&[[f32; L]]; R] = std::array::from_fn(|r| &vectors(a_rows, r, k)[..steps]);
    let b: [&[[f32; L]]; S] = std::array::from_fn(|s| &vectors(b_rows, s, k)[..steps]);
    let mut sums = [[[0.0f32; L]; S]; R];
    for step in 0..steps {
        let av: [[f32; L]; R] = std::array::from_fn(|r| a[r][step]);
        let bv: [[f32; L]; S] = std::array::from_fn(|s| b[s][step]);
        for r in 0..R {
            for s in 0..S {
                for l in 0..L {
                    sums[r][s][l] = multiply_add::<FMA>(av[r][l], bv[s][l], sums[r][s][l]);
                }
            }
        }
    }
    for r in 0..R {
        for s in 0..S {
            let mut total = pairwise_sum(sums[r][s]);
            let (a_row, b_row) = (&a_rows[r * k..][..k], &b_rows[s * k..][..k]);
            for p in steps * L..k {
                total = multiply_add::<FMA>(a_row[p], b_row[p], total);
            }
            store(r, s, total);
        }
    }
}

/// Row `i` of a `(rows, k)` matrix as its whole vectors of `L` lanes (the tail left out).
#[inline(always)]
fn vectors<const L: usize>(rows: &[f32], i: usize, k: usize) -> &[[f32; L]] {
    rows[i * k..][..k].as_chunks::<L>().0
}

/// `a·b + c`, in one rounding when `FMA` (the CPU's fused instruction), else two.
#[inline(always)]
fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The definition, in f64.
    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[j * k + p] as f64)
                    .sum();
            }
        }
        c
    }

    #[test]
    fn every_block_and_edge_matches_the_definition() {
        let mut rng = Rng::new(21);
        // Sizes around the block sizes and lane counts, with and without a tail along k.
        for m in [1, 3, 4, 5, 9] {
            for n in [1, 2, 3, 4, 7, 13] {
                for k in [0, 1, 7, 16, 17, 40, 100] {
                    let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
                    let b: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
                    let want = naive(m, n, k, &a, &b);
                    let mut c = vec![f32::NAN; m * n];
                    dot_rows(m, n, k, &a, &b, RowsMut::new(&mut c, m, n, n), false);
                    let mut c_plus = vec![0.5; m * n];
                    dot_rows(m, n, k, &a, &b, RowsMut::new(&mut c_plus, m, n, n), true);
                    let mut portable = vec![0.5; m * n];
                    let product = Product {
                        m,
                        n,
                        k,
                        accumulate: true,
                    };
                    let mut rows = RowsMut::new(&mut portable, m, n, n);
                    blocks::<4, 4, 3, false>(&product, &a, &b, &mut rows);
                    for i in 0..m * n {
                        let tol = 1e-5 * (1.0 + k as f64);
                        let at = format!("{m}×{n}×{k}, entry {i}: want {}", want[i]);
                        assert!((c[i] as f64 - want[i]).abs() <= tol, "{at}, got {}", c[i]);
                        assert!(
                            (c_plus[i] as f64 - 0.5 - want[i]).abs() <= tol,
                            "{at}, added: {}",
                            c_plus[i]
                        );
                        assert!(
                            (portable[i] as f64 - 0.5 - want[i]).abs() <= tol,
                            "{at}, portable: {}",
                            portable[i]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_block_of_a_wider_c_is_written_and_nothing_beside_it() {
        let mut rng = Rng::new(4);
        let (m, n, k, ldc) = (5, 6, 33, 9);
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
        let mut whole = vec![0.0; m * n];
        dot_rows(m, n, k, &a, &b, RowsMut::new(&mut whole, m, n, n), false);
        let mut wide = vec![7.0; m * ldc];
        dot_rows(m, n, k, &a, &b, RowsMut::new(&mut wide, m, n, ldc), false);
        for (i, row) in wide.chunks(ldc).enumerate() {
            assert_eq!(row[..n], whole[i * n..][..n], "row {i}");
            assert!(row[n..].iter().all(|&v| v == 7.0), "row {i} beyond n");
        }
    }
}
