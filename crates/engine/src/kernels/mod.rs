//! Compute kernels behind the layers: the plain reference loops that define what a
//! convolution and pooling are, and the fast paths that must agree with them (im2col +
//! GEMM, a direct convolution for stride 1, Winograd's F(2×2, 3×3) for 3×3 convolutions
//! with many channels, dot products of rows, pooling plane by plane).

pub mod conv;
pub mod direct;
pub mod dot;
pub mod matmul;
pub mod peak;
pub mod pool;
pub mod reference;
pub mod winograd;

use crate::layers::activation::{Elementwise, ReluFn};

/// Rows of a block of a row-major matrix whose rows lie `stride` apart: row `i` is the
/// `cols` values at `ptr + i·stride`. Between a block's rows lie values that are not its
/// own — the columns of other threads' blocks — so the block is never borrowed whole:
/// [`RowsMut::row`] lends one row at a time.
pub struct RowsMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

impl<'a> RowsMut<'a> {
    /// All of `values` as `rows` rows of `cols` values, `stride` apart (the last row may
    /// end the slice). Panics if they do not fit.
    pub fn new(values: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(
            stride >= cols && (rows == 0 || (rows - 1) * stride + cols <= values.len()),
            "{rows} rows of {cols} values, {stride} apart, do not fit in {} values",
            values.len()
        );
        RowsMut {
            ptr: values.as_mut_ptr(),
            rows,
            cols,
            stride,
            _borrow: std::marker::PhantomData,
        }
    }

    /// The block of `rows` rows of `cols` values, `stride` apart, at `ptr`.
    ///
    /// # Safety
    /// Every row must be valid for writes for `'a`, and no other reference may reach
    /// these rows' values while the block lives (the values between the rows may be
    /// anyone's).
    pub unsafe fn from_raw(ptr: *mut f32, rows: usize, cols: usize, stride: usize) -> Self {
        RowsMut {
            ptr,
            rows,
            cols,
            stride,
            _borrow: std::marker::PhantomData,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`, its `cols` values. Panics if there is no such row.
    #[inline(always)]
    pub fn row(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows, "row {i} of a block of {} rows", self.rows);
        // SAFETY: row i is inside the block (checked above), the block's rows are valid
        // and unshared (the contract of `new` or `from_raw`), and the `&mut self` borrow
        // keeps this the only reference to them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.stride), self.cols) }
    }
}

// SAFETY: a block is a unique borrow of its rows, like `&mut [f32]`, which is `Send`.
unsafe impl Send for RowsMut<'_> {}

/// What a convolution's forward pass does to each output while it is in cache: adds the
/// bias of its channel and, for a convolution run fused with the ReLU after it, applies
/// the ReLU (the same function as the layer's, so the fused pass gives the same bits).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// (OC,), or none.
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Output channel `o`'s bias, 0 without one.
    #[inline(always)]
    pub fn bias(&self, o: usize) -> f32 {
        self.bias.map_or(0.0, |b| b[o])
    }

    /// `v`, its bias added, through the ReLU if there is one.
    #[inline(always)]
    pub fn finish(&self, v: f32) -> f32 {
        if self.relu {
            ReluFn.f(v)
        } else {
            v
        }
    }

    /// `values += b[o]`, through the ReLU if there is one: outputs of channel `o`, in
    /// place (the branch taken once per row, so that each loop is a plain vector loop).
    #[inline(always)]
    pub fn apply(&self, o: usize, values: &mut [f32]) {
        let bias = self.bias(o);
        if self.relu {
            values.iter_mut().for_each(|v| *v = ReluFn.f(*v + bias));
        } else if self.bias.is_some() {
            values.iter_mut().for_each(|v| *v += bias);
        }
    }
}

/// The lanes of a register added in halves: `L/2` sums, then `L/4`, … down to one (the
/// same order on every run).
#[inline(always)]
pub(crate) fn pairwise_sum<const L: usize>(mut lanes: [f32; L]) -> f32 {
    let mut width = L;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            lanes[l] += lanes[l + width];
        }
    }
    lanes[0]
}

/// `dst = src` for the short rows of an image (often 4 to 32 values), as [`copy_short`]
/// copies them.
#[inline(always)]
pub(crate) fn copy_row(dst: &mut [f32], src: &[f32]) {
    assert_eq!(src.len(), dst.len(), "rows of one length");
    // SAFETY: `dst.len()` values on from both, and a `&mut` does not overlap a `&`.
    unsafe { copy_short(dst.as_mut_ptr(), src.as_ptr(), dst.len()) }
}

/// `len` values from `src` to `dst`, for the short rows of an image: eight (or four) at a
/// time in registers, the last eight (or four) overlapping those before them, which costs
/// less than a call to `memcpy` per row or a loop over the values past the eights.
///
/// # Safety
/// `len` values from `src` on are valid for reads, from `dst` on for writes, and the two
/// do not overlap.
#[inline(always)]
pub(crate) unsafe fn copy_short(dst: *mut f32, src: *const f32, len: usize) {
    // SAFETY (every access): inside the `len` values (the caller's contract).
    unsafe {
        let eight = |at: usize| {
            let v = std::ptr::read_unaligned(src.add(at) as *const [f32; 8]);
            std::ptr::write_unaligned(dst.add(at) as *mut [f32; 8], v);
        };
        let four = |at: usize| {
            let v = std::ptr::read_unaligned(src.add(at) as *const [f32; 4]);
            std::ptr::write_unaligned(dst.add(at) as *mut [f32; 4], v);
        };
        if len >= 8 {
            let mut k = 0;
            while k + 8 < len {
                eight(k);
                k += 8;
            }
            eight(len - 8);
        } else if len >= 4 {
            four(0);
            four(len - 4);
        } else {
            std::ptr::copy_nonoverlapping(src, dst, len);
        }
    }
}

/// The moments of one plane (one channel of one image) about its first value `k`:
/// `Σ(v − k)` and `Σ(v − k)²`, accumulated in f64 — what batch normalisation's statistics
/// are made of. A convolution computes them as it writes each image
/// ([`conv::forward_with_moments`]), while the image is in cache, so that the batch
/// normalisation after it need not read its whole input once more.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// The plane's first value, which the sums are taken about.
    pub k: f32,
    /// `Σ(v − k)`
    pub sum: f64,
    /// `Σ(v − k)²`
    pub squares: f64,
}

impl Moments {
    /// The moments of `plane`; the second sum reads it from cache after the first.
    pub fn of(plane: &[f32]) -> Moments {
        let k = plane.first().copied().unwrap_or(0.0);
        let kd = f64::from(k);
        Moments {
            k,
            sum: wide_lane_sum(plane, |v| v - kd),
            squares: wide_lane_sum(plane, |v| (v - kd) * (v - kd)),
        }
    }
}

/// `Σ_i f(v[i])`, accumulated in f64: see [`lane_sum_pairs`].
#[inline(always)]
pub(crate) fn lane_sum(values: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    lane_sum_pairs(values, values, |v, _| f(v))
}

/// `Σ_i f(a[i], b[i])` in f64 over slices of equal length, in 8 independent running sums
/// so that the additions run side by side (vector instructions) instead of one after the
/// other; the order of a sum changes only its last bits.
///
/// The 8 lanes fit one AVX-512 register of f64, or two AVX2 registers: where the CPU has
/// them, the loop is compiled for them (the baseline x86-64 target holds 2 f64 per
/// register). The lanes fix the order of the additions, so every version gives the same
/// bits.
#[inline(always)]
pub(crate) fn lane_sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    lane_sums::<8>(a, b, f)
}

/// [`lane_sum`] in 32 running sums, four AVX-512 registers of f64: for values already in
/// the cache, where what a sum of 8 waits on is its chain of dependent additions (for
/// values coming from memory the 8 keep up with the loads).
#[inline(always)]
pub(crate) fn wide_lane_sum(values: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    lane_sums::<32>(values, values, |v, _| f(v))
}

/// [`lane_sum_pairs`] in `LANES` running sums, compiled for the widest instructions the
/// CPU has.
#[inline(always)]
fn lane_sums<const LANES: usize>(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { lane_sums_avx512::<LANES>(a, b, f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { lane_sums_avx2::<LANES>(a, b, f) };
        }
    }
    lane_sums_portable::<LANES>(a, b, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn lane_sums_avx512<const LANES: usize>(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    lane_sums_portable::<LANES>(a, b, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lane_sums_avx2<const LANES: usize>(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    lane_sums_portable::<LANES>(a, b, f)
}

/// [`lane_sums`] for whatever instructions the caller is compiled for.
#[inline(always)]
fn lane_sums_portable<const LANES: usize>(
    a: &[f32],
    b: &[f32],
    f: impl Fn(f64, f64) -> f64,
) -> f64 {
    assert_eq!(a.len(), b.len(), "lane_sum_pairs: lengths differ");
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(&u, &v)| f(u as f64, v as f64))
        .sum();
    let mut lanes = [0.0f64; LANES];
    for (a, b) in a8.zip(b8) {
        for k in 0..LANES {
            lanes[k] += f(a[k] as f64, b[k] as f64);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Everything that fixes the arithmetic of one 2-D convolution over a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub ic: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub kh: usize,
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding (top, bottom, left, right).
    pub pad: (usize, usize, usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeometry {
    /// Input channels seen by one filter.
    pub fn ic_per_group(&self) -> usize {
        self.ic / self.groups
    }

    /// Output channels produced by one group.
    pub fn oc_per_group(&self) -> usize {
        self.oc / self.groups
    }

    /// Multiply-adds of the forward pass over the whole batch.
    /// Multiply-adds of the whole convolution; a count beyond `u64` saturates.
    pub fn macs(&self) -> u64 {
        [
            self.oc,
            self.oh,
            self.ow,
            self.ic_per_group(),
            self.kh,
            self.kw,
        ]
        .iter()
        .fold(self.n as u64, |m, &d| m.saturating_mul(d as u64))
    }
}
