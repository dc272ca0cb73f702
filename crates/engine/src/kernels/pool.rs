//! Pooling kernels behind [`crate::layers::pool`]: max pooling that records the winning
//! tap of each window, with fast paths for the common shapes, and average pooling with
//! PyTorch's divisors. [`super::reference`] defines the results; the layer's tests hold
//! every path to it on many shapes.
//!
//! Max pooling runs plane by plane (a plane being one channel of one image) on one of
//! three paths:
//! - 2×2 windows, stride 2, no padding ([`PoolGeometry::is_2x2_tiling`]): the windows tile
//!   the plane, eight of them are computed side by side in vector registers, and
//!   backward writes every value of dx once instead of zeroing and scattering;
//! - no padding and every window inside the image, horizontal stride 1 or 2: the outputs
//!   of a row are computed side by side, tap by tap;
//! - anything else (padding, ceil mode's partial windows, other strides): window by
//!   window, each clipped to the image.

use std::hint::select_unpredictable;
use std::ops::Range;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::direct::{Isa, Kind};
use crate::geometry::pool_output_len;

/// Everything that fixes the arithmetic of one pooling pass. The passes run plane by
/// plane, a plane being one channel of one image: an H×W input map, an OH×OW output map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    /// (KH, KW)
    pub kernel: (usize, usize),
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    /// (rows above and below, columns left and right)
    pub padding: (usize, usize),
    /// Average pooling: padded positions count in the divisor (PyTorch's
    /// `count_include_pad`).
    pub count_include_pad: bool,
}

impl PoolGeometry {
    /// The geometry of pooling an (N, C, H, W) input, OH and OW from
    /// [`pool_output_len`]; `None` when no window fits. The kernel and stride must be
    /// positive and the padding at most half the kernel (the layer checks this).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        [n, c, h, w]: [usize; 4],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> Option<Self> {
        assert!(
            padding.0 <= kernel.0 / 2 && padding.1 <= kernel.1 / 2,
            "pooling padding above half the kernel"
        );
        if h == 0 || w == 0 {
            return None;
        }
        Some(PoolGeometry {
            n,
            c,
            h,
            w,
            oh: pool_output_len(h, kernel.0, stride.0, padding.0, padding.0, 1, ceil_mode)?,
            ow: pool_output_len(w, kernel.1, stride.1, padding.1, padding.1, 1, ceil_mode)?,
            kernel,
            stride,
            padding,
            count_include_pad,
        })
    }

    /// (N, C, H, W)
    pub fn input_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.h, self.w]
    }

    /// (N, C, OH, OW)
    pub fn output_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.oh, self.ow]
    }

    /// Input rows covered by output row `oi`: the window `oi·S − P .. oi·S − P + K`, clipped
    /// to the image (padded positions hold no value).
    pub fn rows(&self, oi: usize) -> Range<usize> {
        window(oi, self.stride.0, self.padding.0, self.kernel.0, self.h)
    }

    /// Input columns covered by output column `oj`, clipped like [`Self::rows`].
    pub fn cols(&self, oj: usize) -> Range<usize> {
        window(oj, self.stride.1, self.padding.1, self.kernel.1, self.w)
    }

    /// [`Self::rows`] of every output row and [`Self::cols`] of every output column,
    /// computed once per pass.
    fn windows(&self) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
        (
            (0..self.oh).map(|oi| self.rows(oi)).collect(),
            (0..self.ow).map(|oj| self.cols(oj)).collect(),
        )
    }

    /// Planes per parallel job: enough that a job reads about 16 K values, since a
    /// single small plane is over before rayon has handed out the next.
    fn planes_per_job(&self) -> usize {
        ((1 << 14) / (self.h * self.w).max(1)).max(1)
    }

    /// No padding, and every window inside the image (in ceil mode a last window may hang
    /// past it): what the unpadded fast paths assume.
    pub fn windows_inside(&self) -> bool {
        let fits = |o: usize, s: usize, k: usize, len: usize| (o - 1) * s + k <= len;
        self.padding == (0, 0)
            && fits(self.oh, self.stride.0, self.kernel.0, self.h)
            && fits(self.ow, self.stride.1, self.kernel.1, self.w)
    }

    /// The ubiquitous 2×2 windows, stride 2, no padding, none hanging past the image: they
    /// tile the plane, which `max_2x2_plane` and `route_2x2_plane` make use of.
    pub fn is_2x2_tiling(&self) -> bool {
        self.kernel == (2, 2) && self.stride == (2, 2) && self.windows_inside()
    }

    /// The divisor of the average over the window of output (oi, oj), PyTorch's
    /// `divide_factor`: the positions of the window that lie in the padded image when
    /// padding counts (a window hanging past the padding in ceil mode counts only what
    /// lies inside it), else the real input positions alone.
    pub fn divisor(&self, oi: usize, oj: usize) -> f32 {
        if self.count_include_pad {
            // In padded coordinates the window starts at o·S and the padded image ends at
            // len + 2P.
            let span = |o: usize, s: usize, p: usize, k: usize, len: usize| {
                (o * s + k).min(len + 2 * p) - o * s
            };
            let rows = span(oi, self.stride.0, self.padding.0, self.kernel.0, self.h);
            let cols = span(oj, self.stride.1, self.padding.1, self.kernel.1, self.w);
            (rows * cols) as f32
        } else {
            (self.rows(oi).len() * self.cols(oj).len()) as f32
        }
    }
}

/// The input positions `[o·s − pad, o·s − pad + k)` that lie inside `0..len`. Computed in
/// padded coordinates so that no index goes negative.
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> Range<usize> {
    let start = o * stride;
    let lo = start.max(pad) - pad;
    let hi = (start + k).min(pad + len) - pad;
    assert!(lo < hi, "a pooling window lies entirely in the padding");
    lo..hi
}

/// A position within one pooling window (clipped to the image), numbered row-major.
pub type Tap = u16;

/// The largest window, in positions, whose taps a [`Tap`] can number.
pub const MAX_WINDOW: usize = Tap::MAX as usize;

/// Max pooling: x (N, C, H, W) → y (N, C, OH, OW) (overwritten), and for each output the
/// tap of its window that held the maximum (overwritten), PyTorch's CPU rule: a value is
/// taken when larger than the best so far or NaN, scanning the window row-major — so a
/// NaN wins (the last of several), ties keep the first maximum, and a window of −∞ keeps
/// its first position.
pub fn max_pool2d_forward(g: &PoolGeometry, x: &[f32], y: &mut [f32], taps: &mut [Tap]) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    assert_eq!(x.len(), g.n * g.c * in_plane, "max pool forward: x size");
    assert_eq!(y.len(), g.n * g.c * out_plane, "max pool forward: y size");
    assert_eq!(taps.len(), y.len(), "max pool forward: one tap per output");
    assert!(
        g.kernel.0 * g.kernel.1 <= MAX_WINDOW,
        "window too large for its taps"
    );
    let (rows, cols) = g.windows();
    let planes_per_job = g.planes_per_job();
    let job = planes_per_job * out_plane;
    y.par_chunks_mut(job)
        .zip(taps.par_chunks_mut(job))
        .enumerate()
        .for_each(|(j, (y, taps))| {
            let planes = y
                .chunks_exact_mut(out_plane)
                .zip(taps.chunks_exact_mut(out_plane));
            for (p, (y, taps)) in planes.enumerate() {
                let x = &x[(j * planes_per_job + p) * in_plane..][..in_plane];
                match g.stride.1 {
                    _ if g.is_2x2_tiling() => max_2x2_plane(g, x, y, taps),
                    1 if g.windows_inside() => max_unpadded_plane::<1>(g, x, y, taps),
                    2 if g.windows_inside() => max_unpadded_plane::<2>(g, x, y, taps),
                    _ => max_clipped_plane(g, &rows, &cols, x, y, taps),
                }
            }
        });
}

/// Backward of [`max_pool2d_forward`]: dy (N, C, OH, OW) → dx (N, C, H, W) (overwritten),
/// `dx[argmax] += dy` with the argmax at the recorded tap; where windows overlap, the
/// gradients of every output an input won add.
pub fn max_pool2d_backward(g: &PoolGeometry, taps: &[Tap], dy: &[f32], dx: &mut [f32]) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    assert_eq!(dx.len(), g.n * g.c * in_plane, "max pool backward: dx size");
    assert_eq!(
        dy.len(),
        g.n * g.c * out_plane,
        "max pool backward: dy size"
    );
    assert_eq!(
        taps.len(),
        dy.len(),
        "max pool backward: one tap per output"
    );
    let (rows, cols) = g.windows();
    dx.par_chunks_mut(in_plane)
        .zip(taps.par_chunks(out_plane).zip(dy.par_chunks(out_plane)))
        .with_min_len(g.planes_per_job())
        .for_each(|(dx, (taps, dy))| {
            if g.is_2x2_tiling() {
                route_2x2_plane(g, taps, dy, dx);
            } else {
                dx.fill(0.0);
                for ((r, c), (&tap, &d)) in every_window(&rows, &cols).zip(taps.iter().zip(dy)) {
                    dx[tap_position(g.w, r, c, tap)] += d;
                }
            }
        });
}

/// [`max_pool2d_backward`] of windows that tile the input
/// ([`PoolGeometry::is_2x2_tiling`]), each output's gradient first mapped by
/// `through(dy, y)`, y being the output: the gradient taken back through an element-wise
/// function before the pooling as well, whose output at a window's maximum is y. A plane
/// at a time, the mapped gradients in a buffer of one plane's outputs.
pub fn max_pool2d_backward_through(
    g: &PoolGeometry,
    taps: &[Tap],
    dy: &[f32],
    y: &[f32],
    dx: &mut [f32],
    through: impl Fn(f32, f32) -> f32 + Sync,
) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    assert!(
        g.is_2x2_tiling(),
        "max pool backward: windows that tile the input"
    );
    assert_eq!(dx.len(), g.n * g.c * in_plane, "max pool backward: dx size");
    assert_eq!(
        dy.len(),
        g.n * g.c * out_plane,
        "max pool backward: dy size"
    );
    assert_eq!(y.len(), dy.len(), "max pool backward: y size");
    assert_eq!(
        taps.len(),
        dy.len(),
        "max pool backward: one tap per output"
    );
    dx.par_chunks_mut(in_plane)
        .zip(
            taps.par_chunks(out_plane)
                .zip(dy.par_chunks(out_plane).zip(y.par_chunks(out_plane))),
        )
        .with_min_len(g.planes_per_job())
        .for_each_init(Vec::new, |mapped, (dx, (taps, (dy, y)))| {
            mapped.resize(out_plane, 0.0);
            route_2x2_plane_through(g, taps, dy, y, &through, mapped, dx);
        });
}

/// One plane of [`max_pool2d_backward_through`]: dy mapped by `through(dy, y)` into
/// `mapped` (one value per output), then routed to the maxima ([`route_2x2_plane`]).
pub(crate) fn route_2x2_plane_through(
    g: &PoolGeometry,
    taps: &[Tap],
    dy: &[f32],
    y: &[f32],
    through: impl Fn(f32, f32) -> f32,
    mapped: &mut [f32],
    dx: &mut [f32],
) {
    for ((m, &d), &y) in mapped.iter_mut().zip(dy).zip(y) {
        *m = through(d, y);
    }
    route_2x2_plane(g, taps, mapped, dx);
}

/// For each output, (N, C, OH, OW) row-major, the flat index in x of the input value its
/// tap names.
pub fn max_pool2d_argmax(g: &PoolGeometry, taps: &[Tap]) -> Vec<usize> {
    let (rows, cols) = g.windows();
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    taps.chunks_exact(out_plane)
        .enumerate()
        .flat_map(|(p, taps)| {
            every_window(&rows, &cols)
                .zip(taps)
                .map(move |((r, c), &tap)| p * in_plane + tap_position(g.w, r, c, tap))
        })
        .collect()
}

/// One plane of max pooling window by window, each clipped to the image: the path for
/// padding and for ceil mode's partial windows. x (H, W) → y (OH, OW) and the taps.
fn max_clipped_plane(
    g: &PoolGeometry,
    rows: &[Range<usize>],
    cols: &[Range<usize>],
    x: &[f32],
    y: &mut [f32],
    taps: &mut [Tap],
) {
    let outputs = y.iter_mut().zip(taps.iter_mut());
    for ((r, c), (y, tap)) in every_window(rows, cols).zip(outputs) {
        let window = r.clone().flat_map(|row| &x[row * g.w..][c.clone()]);
        (*y, *tap) = (f32::NEG_INFINITY, 0);
        for (&v, t) in window.zip(0..) {
            offer(y, tap, v, t);
        }
    }
}

/// The (rows, columns) of every window of a plane, in the row-major order of the outputs.
fn every_window<'a>(
    rows: &'a [Range<usize>],
    cols: &'a [Range<usize>],
) -> impl Iterator<Item = (&'a Range<usize>, &'a Range<usize>)> + 'a {
    rows.iter()
        .flat_map(move |r| cols.iter().map(move |c| (r, c)))
}

/// Offers the value `v` at position `tap` to a window whose maximum so far is `best`, at
/// `at`: PyTorch's max-pooling rule takes it if it is larger, or NaN. Random data makes
/// this a coin flip, so the choice is a select, not a branch the CPU would mispredict.
#[inline(always)]
fn offer(best: &mut f32, at: &mut Tap, v: f32, tap: Tap) {
    let take = (v > *best) | v.is_nan();
    *best = select_unpredictable(take, v, *best);
    *at = select_unpredictable(take, tap, *at);
}

/// The index in a plane of row length `w` of position `tap` of the window `rows × cols`.
fn tap_position(w: usize, rows: &Range<usize>, cols: &Range<usize>, tap: Tap) -> usize {
    let (i, j) = (usize::from(tap) / cols.len(), usize::from(tap) % cols.len());
    (rows.start + i) * w + cols.start + j
}

/// One plane of the ubiquitous 2×2, stride 2, unpadded max pooling: x (H, W) → y (OH, OW)
/// and the taps. Each window is two neighbours on two rows. A row's windows go through
/// [`max_2x2_block`] eight at a time; a last short block (a whole row, in small planes)
/// is copied into a full one first, so no output is computed by slower scalar code.
pub(crate) fn max_2x2_plane(g: &PoolGeometry, x: &[f32], y: &mut [f32], taps: &mut [Tap]) {
    assert!(
        x.len() >= 2 * g.oh * g.w && y.len() == g.oh * g.ow && taps.len() == y.len(),
        "2×2 max pooling: one plane"
    );
    #[cfg(target_arch = "x86_64")]
    if Isa::detect().0 == Kind::Avx512 {
        // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
        return unsafe { max_2x2_plane_avx512(g, x, y, taps) };
    }
    let rows = x.chunks_exact(2 * g.w);
    for ((y, taps), rows) in y
        .chunks_exact_mut(g.ow)
        .zip(taps.chunks_exact_mut(g.ow))
        .zip(rows)
    {
        let (top, bottom) = rows.split_at(g.w);
        max_2x2_row(&top[..2 * g.ow], &bottom[..2 * g.ow], y, taps);
    }
}

/// [`max_2x2_plane`] with AVX-512: sixteen windows of a row at a time, a row's last ones
/// with masked loads and stores. The two rows' values are split into even and odd
/// columns in registers, then each window's four candidates offered in [`offer`]'s
/// order and by its rule (larger, or NaN).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_2x2_plane_avx512(g: &PoolGeometry, x: &[f32], y: &mut [f32], taps: &mut [Tap]) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mask = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    for (oi, (y, taps)) in y
        .chunks_exact_mut(g.ow)
        .zip(taps.chunks_exact_mut(g.ow))
        .enumerate()
    {
        let top = &x[2 * oi * g.w..][..2 * g.ow];
        let bottom = &x[(2 * oi + 1) * g.w..][..2 * g.ow];
        for j in (0..g.ow).step_by(16) {
            let n = (g.ow - j).min(16);
            let (low, high) = (mask(2 * n), mask((2 * n).saturating_sub(16)));
            // SAFETY: the masks cover the 2n values from 2j on, inside `top` and
            // `bottom` (masked-off lanes are not read); the CPU has AVX-512F.
            let split = |row: &[f32]| unsafe {
                let a = _mm512_maskz_loadu_ps(low, row.as_ptr().add(2 * j));
                let b = _mm512_maskz_loadu_ps(high, row.as_ptr().add(2 * j + 16));
                (
                    _mm512_permutex2var_ps(a, even, b),
                    _mm512_permutex2var_ps(a, odd, b),
                )
            };
            let ((t0, t1), (t2, t3)) = (split(top), split(bottom));
            let (mut best, mut at) = (t0, _mm512_setzero_si512());
            for (v, tap) in [(t1, 1), (t2, 2), (t3, 3)] {
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                best = _mm512_mask_blend_ps(take, best, v);
                at = _mm512_mask_blend_epi32(take, at, _mm512_set1_epi32(tap));
            }
            // SAFETY: the mask covers the n outputs from j on, inside `y` and `taps`.
            unsafe {
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(j), mask(n), best);
                _mm512_mask_cvtepi32_storeu_epi16(taps.as_mut_ptr().add(j).cast(), mask(n), at);
            }
        }
    }
}

/// One row of windows of [`max_2x2_plane`], their two rows of inputs given: eight at a
/// time through [`max_2x2_block`], a last short block copied into a full one first.
fn max_2x2_row(top: &[f32], bottom: &[f32], y: &mut [f32], taps: &mut [Tap]) {
    const B: usize = MAX_2X2_BLOCK;
    let (mut y8, mut taps8) = (y.chunks_exact_mut(B), taps.chunks_exact_mut(B));
    let (mut top16, mut bottom16) = (top.chunks_exact(2 * B), bottom.chunks_exact(2 * B));
    for (((y, taps), top), bottom) in (&mut y8).zip(&mut taps8).zip(&mut top16).zip(&mut bottom16) {
        let (best, at) = max_2x2_block(top.try_into().unwrap(), bottom.try_into().unwrap());
        y.copy_from_slice(&best);
        taps.copy_from_slice(&at);
    }
    let (y, taps) = (y8.into_remainder(), taps8.into_remainder());
    if !y.is_empty() {
        let (mut top, mut bottom) = ([0.0; 2 * B], [0.0; 2 * B]);
        top[..2 * y.len()].copy_from_slice(top16.remainder());
        bottom[..2 * y.len()].copy_from_slice(bottom16.remainder());
        let (best, at) = max_2x2_block(&top, &bottom);
        y.copy_from_slice(&best[..y.len()]);
        taps.copy_from_slice(&at[..taps.len()]);
    }
}

/// The maxima of [`max_2x2_plane`] on every plane of x (planes of H×W) into y (planes of
/// OH×OW), and their taps into `taps` (one per value of y), for a `g` that
/// [`PoolGeometry::is_2x2_tiling`].
pub(crate) fn max_2x2_planes(g: &PoolGeometry, x: &[f32], y: &mut [f32], taps: &mut [Tap]) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    assert!(g.is_2x2_tiling(), "2×2 max pooling: {g:?}");
    assert_eq!(
        x.len() / in_plane * out_plane,
        y.len(),
        "2×2 max pooling: y size"
    );
    assert_eq!(taps.len(), y.len(), "2×2 max pooling: one tap per output");
    let planes = x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane));
    for ((x, y), taps) in planes.zip(taps.chunks_exact_mut(out_plane)) {
        max_2x2_plane(g, x, y, taps);
    }
}

/// Windows handled side by side by [`max_2x2_block`].
const MAX_2X2_BLOCK: usize = 8;

/// The maxima and taps of eight neighbouring 2×2 windows, given their two rows. Selects
/// instead of branches, and fixed sizes, so the eight are computed in vector registers.
#[inline(always)]
fn max_2x2_block(
    top: &[f32; 2 * MAX_2X2_BLOCK],
    bottom: &[f32; 2 * MAX_2X2_BLOCK],
) -> ([f32; MAX_2X2_BLOCK], [Tap; MAX_2X2_BLOCK]) {
    let (mut best, mut at) = ([0.0; MAX_2X2_BLOCK], [0; MAX_2X2_BLOCK]);
    for k in 0..MAX_2X2_BLOCK {
        (best[k], at[k]) = (top[2 * k], 0);
        for (v, t) in [
            (top[2 * k + 1], 1),
            (bottom[2 * k], 2),
            (bottom[2 * k + 1], 3),
        ] {
            offer(&mut best[k], &mut at[k], v, t);
        }
    }
    (best, at)
}

/// Backward of [`max_2x2_plane`]: the windows tile the plane, so every value of dx is
/// written once, `dy` at the recorded tap and 0 at the other three (and 0 in a last row
/// or column no window covers). No zeroing pass, no scatter.
fn route_2x2_plane(g: &PoolGeometry, taps: &[Tap], dy: &[f32], dx: &mut [f32]) {
    let (covered, below) = dx.split_at_mut(g.oh * 2 * g.w);
    below.fill(0.0);
    let rows = covered.chunks_exact_mut(2 * g.w);
    for ((taps, dy), rows) in taps.chunks_exact(g.ow).zip(dy.chunks_exact(g.ow)).zip(rows) {
        let (top, bottom) = rows.split_at_mut(g.w);
        top[2 * g.ow..].fill(0.0);
        bottom[2 * g.ow..].fill(0.0);
        let windows = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
        for ((&tap, &d), (top, bottom)) in taps.iter().zip(dy).zip(windows) {
            top[0] = if tap == 0 { d } else { 0.0 };
            top[1] = if tap == 1 { d } else { 0.0 };
            bottom[0] = if tap == 2 { d } else { 0.0 };
            bottom[1] = if tap == 3 { d } else { 0.0 };
        }
    }
}

/// One plane of max pooling without padding and horizontal stride `SW`: x (H, W) → y
/// (OH, OW) and the taps. Computed tap by tap along an output row, so that the outputs
/// of the row, which are independent, are computed side by side (vector instructions).
fn max_unpadded_plane<const SW: usize>(
    g: &PoolGeometry,
    x: &[f32],
    y: &mut [f32],
    taps: &mut [Tap],
) {
    let (kh, kw) = g.kernel;
    let rows = y.chunks_exact_mut(g.ow).zip(taps.chunks_exact_mut(g.ow));
    for (oi, (best, at)) in rows.enumerate() {
        let top = oi * g.stride.0 * g.w;
        best.fill(f32::NEG_INFINITY);
        at.fill(0);
        for (tap, (i, j)) in (0..).zip((0..kh).flat_map(|i| (0..kw).map(move |j| (i, j)))) {
            let line = &x[top + i * g.w + j..][..(g.ow - 1) * SW + 1];
            for ((b, a), &v) in best
                .iter_mut()
                .zip(at.iter_mut())
                .zip(line.iter().step_by(SW))
            {
                offer(b, a, v, tap);
            }
        }
    }
}

/// Average pooling: x (N, C, H, W) → y (N, C, OH, OW) (overwritten),
/// `y = Σ_window x / divisor` with [`PoolGeometry::divisor`].
pub fn avg_pool2d_forward(g: &PoolGeometry, x: &[f32], y: &mut [f32]) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    assert_eq!(x.len(), g.n * g.c * in_plane, "avg pool forward: x size");
    assert_eq!(y.len(), g.n * g.c * out_plane, "avg pool forward: y size");
    let (rows, cols) = g.windows();
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .for_each(|(y, x)| {
            for (oi, rows) in rows.iter().enumerate() {
                for (oj, cols) in cols.iter().enumerate() {
                    let sum: f32 = rows
                        .clone()
                        .map(|r| x[r * g.w..][cols.clone()].iter().sum::<f32>())
                        .sum();
                    y[oi * g.ow + oj] = sum / g.divisor(oi, oj);
                }
            }
        });
}

/// Backward of [`avg_pool2d_forward`]: dy (N, C, OH, OW) → dx (N, C, H, W) (overwritten);
/// each output spreads `dy/divisor` over the real positions of its window, and
/// overlapping windows add.
pub fn avg_pool2d_backward(g: &PoolGeometry, dy: &[f32], dx: &mut [f32]) {
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    assert_eq!(dx.len(), g.n * g.c * in_plane, "avg pool backward: dx size");
    assert_eq!(
        dy.len(),
        g.n * g.c * out_plane,
        "avg pool backward: dy size"
    );
    let (rows, cols) = g.windows();
    dx.par_chunks_mut(in_plane)
        .zip(dy.par_chunks(out_plane))
        .for_each(|(dx, dy)| {
            dx.fill(0.0);
            for (oi, rows) in rows.iter().enumerate() {
                for (oj, cols) in cols.iter().enumerate() {
                    let d = dy[oi * g.ow + oj] / g.divisor(oi, oj);
                    for r in rows.clone() {
                        for v in &mut dx[r * g.w..][cols.clone()] {
                            *v += d;
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_clipped_to_the_image() {
        // k = 3, pad 1, stride 2 over 5 positions: windows [-1,2), [1,4), [3,6) → clipped.
        assert_eq!(window(0, 2, 1, 3, 5), 0..2);
        assert_eq!(window(1, 2, 1, 3, 5), 1..4);
        assert_eq!(window(2, 2, 1, 3, 5), 3..5);
    }

    /// The AVX-512 windows against the portable ones, bit for bit, maxima and taps: rows
    /// of 1 to 37 and of 64 windows (whole vectors, masked tails, both), odd input widths, NaNs
    /// (which win, the last of several), ties (the first wins), −∞ and −0.0.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_windows_are_the_portable_ones() {
        if Isa::detect().0 != Kind::Avx512 {
            return;
        }
        let mut rng = crate::rng::Rng::new(31);
        let specials = [f32::NAN, f32::NEG_INFINITY, -0.0, 0.0, 1.0, 1.0];
        for w in (2..=75).chain([128, 129]) {
            let h = 4;
            let g = PoolGeometry::new([1, 1, h, w], (2, 2), (2, 2), (0, 0), false, false).unwrap();
            let x: Vec<f32> = (0..h * w)
                .map(|_| match rng.below(4) {
                    0 => specials[rng.below(specials.len())],
                    _ => rng.normal(),
                })
                .collect();
            let (mut y, mut taps) = (vec![f32::NAN; g.oh * g.ow], vec![9; g.oh * g.ow]);
            // SAFETY: the CPU has AVX-512F (asked above).
            unsafe { max_2x2_plane_avx512(&g, &x, &mut y, &mut taps) };
            let (mut want, mut want_taps) = (vec![0.0; y.len()], vec![0; y.len()]);
            for (oi, (want, want_taps)) in want
                .chunks_exact_mut(g.ow)
                .zip(want_taps.chunks_exact_mut(g.ow))
                .enumerate()
            {
                let (top, bottom) = (
                    &x[2 * oi * w..][..2 * g.ow],
                    &x[(2 * oi + 1) * w..][..2 * g.ow],
                );
                max_2x2_row(top, bottom, want, want_taps);
            }
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want), "maxima, width {w}");
            assert_eq!(taps, want_taps, "taps, width {w}");
        }
    }

    #[test]
    fn which_path_a_geometry_takes() {
        let g = |hw, k, s, p, ceil| PoolGeometry::new([1, 1, hw, hw], k, s, p, ceil, true).unwrap();
        assert!(g(8, (2, 2), (2, 2), (0, 0), false).is_2x2_tiling());
        // Ceil mode on an odd size adds a partial window: not a tiling, not inside.
        assert!(!g(7, (2, 2), (2, 2), (0, 0), true).is_2x2_tiling());
        assert!(!g(8, (3, 3), (2, 2), (0, 0), true).windows_inside());
        assert!(g(7, (3, 3), (2, 2), (0, 0), true).windows_inside());
        // On an even size ceil mode changes nothing.
        assert!(g(8, (2, 2), (2, 2), (0, 0), true).is_2x2_tiling());
        assert!(!g(8, (3, 3), (1, 1), (1, 1), false).windows_inside());
    }
}
