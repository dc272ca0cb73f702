//! Direct convolution without dilation in one group, in both directions: nothing is
//! unrolled, every tap's inputs are read straight from the padded image.
//!
//! **The flattened padded image.** An image with its zero border written out, (IC, PH,
//! PW), is read as one long row per channel. Output pixel `(oy, ox)` sits at flat
//! position `q = oy·PW + ox`, and tap `t = (ic, i, j)` reads `x_flat[off(t) + q]` with
//! `off(t) = (ic·PH + i)·PW + j`: for a run of consecutive positions, a tap's inputs are
//! consecutive too, one vector load whatever the image's width. The positions with
//! `ox ≥ OW` (the last `PW − OW` of each row) are computed along and dropped, so the
//! path pays `PW / OW` of the work: little for the 3×3 "same" convolutions of 8×8 and
//! larger images it is used for. Where output rows are whole vectors (OW a multiple of
//! the vector length: 16, 32, 64 …), the vectors are taken row by row instead, each at
//! its row's flat position, and nothing is dropped.
//!
//! - forward: `y[oc, q] = b[oc] + Σ_t w[oc, t] · x_flat[off(t) + q]`, in blocks of `B`
//!   output channels by `V` vectors of positions whose running sums stay in registers:
//!   each loaded input vector serves `B` multiply-adds, each broadcast weight `V`.
//! - input gradient: `dx` is the forward pass of `dy` padded by `K − 1 − pad` with the
//!   kernel turned by 180° and input and output channels swapped,
//!   `dx[ic, y, x] = Σ_(oc, i, j) w[oc, ic, KH−1−i, KW−1−j] · dy_padded[oc, y + i, x + j]`
//!   ([`Plan::for_input_gradient`], [`Plan::arrange_flipped_weights`]).
//! - weight gradient: `dw[oc, t] = Σ_q dy_flat[oc, q] · x_flat[off(t) + q]`, in one of
//!   two ways. On large images, with `dy` laid out on the same flat positions and zero at
//!   the dropped ones: blocks of output channels by taps, each running sum a vector over
//!   positions, reduced to a number once per tile of images. On small images, where
//!   those reductions would weigh: the vectors run over output channels instead, `dy`
//!   turned to (OH·OW, OC), each position's inputs broadcast, and the running sums are
//!   `dwᵀ`'s vectors themselves ([`Plan::add_weight_gradient_by_channel`]).
//!
//! **Strides.** A convolution of stride (SH, SW) reads the padded image split into the
//! SH·SW planes of its rows' and columns' parities, `plane(a, b)[r, c] = padded[SH·r + a,
//! SW·c + b]`: output `(oy, ox)` with tap `(i, j)` reads `padded[SH·oy + i, SW·ox + j]`,
//! which is plane `(i % SH, j % SW)` at `(oy + i / SH, ox + j / SW)` — a stride-1
//! convolution over the planes, with other tap offsets, so the forward and weight-gradient
//! kernels run on it unchanged. Its input gradient is not a convolution of this kind
//! ([`Plan::input_gradient_applies`]).
//!
//! Everything here is written once over `Lanes` and compiled for AVX-512, AVX2 + FMA
//! and portable code; [`Isa`] picks one at run time.

use super::{copy_row, pairwise_sum, ConvGeometry, Epilogue};

/// An instruction set the kernels are compiled for, found on this CPU: a value of this
/// type can only be made by asking the CPU ([`Isa::detect`], [`Isa::available`]), so a
/// kernel dispatched on it runs only where its instructions exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(pub(super) Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The widest the CPU has, asked once.
    pub fn detect() -> Isa {
        static WIDEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *WIDEST.get_or_init(|| {
            *Self::available()
                .last()
                .expect("the portable code runs anywhere")
        })
    }

    /// Every instruction set this CPU runs the kernels with, narrowest first: the
    /// portable code always.
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut isas = vec![Isa(Kind::Portable)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                isas.push(Isa(Kind::Avx2));
            }
            if has!("avx512f") {
                isas.push(Isa(Kind::Avx512));
            }
        }
        isas
    }

    /// f32 lanes of one vector (8 for the portable code too: two SSE registers each).
    pub fn lanes(self) -> usize {
        match self.0 {
            Kind::Avx512 => 16,
            Kind::Avx2 | Kind::Portable => 8,
        }
    }
}

/// A vector of `L` f32 lanes: what the kernels are written in, once for every
/// instruction set.
///
/// A vector can only be made by the `unsafe` constructors, whose caller promises that the
/// CPU has the vector's instructions; a vector that exists is that promise, so its methods
/// are safe.
pub(super) trait Lanes: Copy {
    const L: usize;
    /// # Safety
    /// The CPU has the instruction set of `Self`.
    unsafe fn zero() -> Self;
    /// # Safety
    /// As [`Lanes::zero`].
    unsafe fn splat(v: f32) -> Self;
    /// The `L` values from `src` on.
    ///
    /// # Safety
    /// As [`Lanes::zero`], and the `L` values from `src` on are valid for reads.
    unsafe fn load_ptr(src: *const f32) -> Self;
    /// Into the first `L` values of `dst`.
    fn store(self, dst: &mut [f32]);
    /// Into the `L` values from `dst` on.
    ///
    /// # Safety
    /// The `L` values from `dst` on are valid for writes (the CPU has the instructions:
    /// `self` exists).
    unsafe fn store_ptr(self, dst: *mut f32);
    /// `self·b + c`, lane by lane.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self + b`, lane by lane.
    fn add(self, b: Self) -> Self;
    /// `self − b`, lane by lane.
    fn sub(self, b: Self) -> Self;
    /// The even lanes and the odd lanes of `a` followed by `b`.
    fn deinterleave(a: Self, b: Self) -> (Self, Self);
    /// `e` and `o` taken lane by lane, `e0 o0 e1 o1 …`: its first `L` values and its last.
    fn interleave(e: Self, o: Self) -> (Self, Self);
    /// The sum of the lanes, added in halves (the same order on every run).
    fn sum(self) -> f32;
}

/// 8 lanes in plain Rust, a multiplication and an addition (two roundings).
#[derive(Clone, Copy)]
pub(super) struct Portable([f32; 8]);

impl Lanes for Portable {
    const L: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; 8])
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Portable([v; 8])
    }
    #[inline(always)]
    unsafe fn load_ptr(src: *const f32) -> Self {
        // SAFETY: the 8 values from `src` on are valid for reads (the caller's contract).
        Portable(unsafe { std::ptr::read_unaligned(src as *const [f32; 8]) })
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32]) {
        dst[..8].copy_from_slice(&self.0);
    }
    #[inline(always)]
    unsafe fn store_ptr(self, dst: *mut f32) {
        // SAFETY: the 8 values from `dst` on are valid for writes (the caller's contract).
        unsafe { std::ptr::write_unaligned(dst as *mut [f32; 8], self.0) }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] * b.0[l] + c.0[l]))
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] + b.0[l]))
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] - b.0[l]))
    }
    #[inline(always)]
    fn deinterleave(a: Self, b: Self) -> (Self, Self) {
        let at = |l: usize| if l < 8 { a.0[l] } else { b.0[l - 8] };
        (
            Portable(std::array::from_fn(|l| at(2 * l))),
            Portable(std::array::from_fn(|l| at(2 * l + 1))),
        )
    }
    #[inline(always)]
    fn interleave(e: Self, o: Self) -> (Self, Self) {
        let at = |l: usize| {
            if l.is_multiple_of(2) {
                e.0[l / 2]
            } else {
                o.0[l / 2]
            }
        };
        (
            Portable(std::array::from_fn(at)),
            Portable(std::array::from_fn(|l| at(l + 8))),
        )
    }
    #[inline(always)]
    fn sum(self) -> f32 {
        pairwise_sum(self.0)
    }
}

/// AVX-512 and AVX2 registers with fused multiply-adds. Only to be used inside functions
/// compiled for the instruction set (`#[target_feature]`), on a CPU that has it.
#[cfg(target_arch = "x86_64")]
pub(super) mod simd {
    use super::Lanes;
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    impl Lanes for Avx512 {
        const L: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the CPU has AVX-512F (the caller's contract).
            Avx512(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: the CPU has AVX-512F (the caller's contract).
            Avx512(unsafe { _mm512_set1_ps(v) })
        }
        #[inline(always)]
        unsafe fn load_ptr(src: *const f32) -> Self {
            // SAFETY: the CPU has AVX-512F and the 16 values from `src` on are valid for
            // reads (the caller's contract).
            Avx512(unsafe { _mm512_loadu_ps(src) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Lanes`); `dst[..16]`
            // checks that the 16 values written exist.
            unsafe { _mm512_storeu_ps(dst[..16].as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        unsafe fn store_ptr(self, dst: *mut f32) {
            // SAFETY: `self` exists, so the CPU has AVX-512F; the 16 values from `dst` on
            // are valid for writes (the caller's contract).
            unsafe { _mm512_storeu_ps(dst, self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Lanes`).
            Avx512(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Lanes`).
            Avx512(unsafe { _mm512_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Lanes`).
            Avx512(unsafe { _mm512_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn deinterleave(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: `a` exists, so the CPU has AVX-512F (see `Lanes`). Lane indices
            // 0–15 pick from `a`, 16–31 from `b`.
            unsafe {
                let even =
                    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                let odd =
                    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                (
                    Avx512(_mm512_permutex2var_ps(a.0, even, b.0)),
                    Avx512(_mm512_permutex2var_ps(a.0, odd, b.0)),
                )
            }
        }
        #[inline(always)]
        fn interleave(e: Self, o: Self) -> (Self, Self) {
            // SAFETY: `e` exists, so the CPU has AVX-512F (see `Lanes`). Lane indices
            // 0–15 pick from `e`, 16–31 from `o`.
            unsafe {
                let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                let high =
                    _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                (
                    Avx512(_mm512_permutex2var_ps(e.0, low, o.0)),
                    Avx512(_mm512_permutex2var_ps(e.0, high, o.0)),
                )
            }
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Lanes`).
            unsafe {
                // Halves added until one value is left, in registers: 256 + 256, then
                // 128 + 128 and so on down to one lane.
                let lo = _mm512_castps512_ps256(self.0);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(self.0), 1));
                let v8 = _mm256_add_ps(lo, hi);
                let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
                let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
                _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)))
            }
        }
    }

    #[derive(Clone, Copy)]
    pub struct Avx2(__m256);

    impl Lanes for Avx2 {
        const L: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the CPU has AVX2 and FMA (the caller's contract).
            Avx2(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: the CPU has AVX2 and FMA (the caller's contract).
            Avx2(unsafe { _mm256_set1_ps(v) })
        }
        #[inline(always)]
        unsafe fn load_ptr(src: *const f32) -> Self {
            // SAFETY: the CPU has AVX2 and FMA and the 8 values from `src` on are valid
            // for reads (the caller's contract).
            Avx2(unsafe { _mm256_loadu_ps(src) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Lanes`); `dst[..8]` checks
            // that the 8 values written exist.
            unsafe { _mm256_storeu_ps(dst[..8].as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        unsafe fn store_ptr(self, dst: *mut f32) {
            // SAFETY: `self` exists, so the CPU has AVX2; the 8 values from `dst` on are
            // valid for writes (the caller's contract).
            unsafe { _mm256_storeu_ps(dst, self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX2 and FMA (see `Lanes`).
            Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Lanes`).
            Avx2(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Lanes`).
            Avx2(unsafe { _mm256_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn deinterleave(a: Self, b: Self) -> (Self, Self) {
            // SAFETY: `a` exists, so the CPU has AVX2 (see `Lanes`). The shuffles give
            // a0 a2 b0 b2 | a4 a6 b4 b6 (and the odd lanes alike); the 64-bit pairs are
            // then put in order 0, 2, 1, 3.
            unsafe {
                let even = _mm256_shuffle_ps::<0b10_00_10_00>(a.0, b.0);
                let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a.0, b.0);
                let order = |v: __m256| {
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
                };
                (Avx2(order(even)), Avx2(order(odd)))
            }
        }
        #[inline(always)]
        fn interleave(e: Self, o: Self) -> (Self, Self) {
            // SAFETY: `e` exists, so the CPU has AVX2 (see `Lanes`). The unpacks give
            // e0 o0 e1 o1 | e4 o4 e5 o5 and e2 o2 e3 o3 | e6 o6 e7 o7; the 128-bit halves
            // are then put in order.
            unsafe {
                let low = _mm256_unpacklo_ps(e.0, o.0);
                let high = _mm256_unpackhi_ps(e.0, o.0);
                (
                    Avx2(_mm256_permute2f128_ps::<0x20>(low, high)),
                    Avx2(_mm256_permute2f128_ps::<0x31>(low, high)),
                )
            }
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Lanes`).
            unsafe {
                // Halves added until one value is left, as for AVX-512.
                let v4 = _mm_add_ps(
                    _mm256_castps256_ps128(self.0),
                    _mm256_extractf128_ps(self.0, 1),
                );
                let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
                _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)))
            }
        }
    }
}

/// Whether the direct path computes this convolution: no dilation, one group, padding
/// of at most `K − 1` on every side (so that the input gradient of a stride-1
/// convolution is a convolution too), an output of the size the formula gives, and not
/// a 1×1 convolution of stride 1 without padding (the image itself is then GEMM's
/// operand). A stride above 1 reads the image split by the parity of its rows and
/// columns ([`Plan::new`]); its input gradient is not a convolution of that kind
/// ([`Plan::input_gradient_applies`]).
pub fn applies(g: &ConvGeometry) -> bool {
    let (pt, pb, pl, pr) = g.pad;
    let (sh, sw) = g.stride;
    let fits = |len: usize, k: usize, s: usize, out: usize| {
        len >= k && s > 0 && out > 0 && (len - k) / s + 1 == out
    };
    g.dilation == (1, 1)
        && g.groups == 1
        && g.ic > 0
        && g.oc > 0
        && g.h > 0
        && g.w > 0
        && pt.max(pb) < g.kh
        && pl.max(pr) < g.kw
        && fits(g.h + pt + pb, g.kh, sh, g.oh)
        && fits(g.w + pl + pr, g.kw, sw, g.ow)
        && !(g.kh == 1 && g.kw == 1 && g.pad == (0, 0, 0, 0) && g.stride == (1, 1))
}

/// The convolution whose forward pass is the input gradient of `g` (which [`applies`]):
/// dy padded by `K − 1 − pad`, output channels in, input channels out (with the kernel
/// flipped).
pub(super) fn input_gradient_geometry(g: &ConvGeometry) -> ConvGeometry {
    let (pt, pb, pl, pr) = g.pad;
    let (kh, kw) = (g.kh - 1, g.kw - 1);
    ConvGeometry {
        ic: g.oc,
        h: g.oh,
        w: g.ow,
        oc: g.ic,
        pad: (kh - pt, kh - pb, kw - pl, kw - pr),
        oh: g.h,
        ow: g.w,
        ..*g
    }
}

/// Output channels by vectors of positions of the forward kernel's register block, for
/// each instruction set: 20 to 24 running sums of AVX-512's 32 registers, 12 of AVX2's
/// 16. [`forward_block`] takes the one that computes the fewest sums in all.
const FORWARD_BLOCKS_AVX512: [(usize, usize); 4] = [(8, 3), (6, 4), (4, 6), (4, 5)];
const FORWARD_BLOCKS_NARROW: [(usize, usize); 4] = [(4, 3), (6, 2), (3, 4), (4, 2)];

/// The forward kernel's block for `rows` output rows by `vectors` vectors: the one that
/// computes the fewest sums in all — rows past the last and vectors past the last are
/// computed and dropped — the first of equals.
pub(super) fn forward_block(isa: Isa, rows: usize, vectors: usize) -> (usize, usize) {
    let candidates = match isa.0 {
        Kind::Avx512 => FORWARD_BLOCKS_AVX512,
        _ => FORWARD_BLOCKS_NARROW,
    };
    *candidates
        .iter()
        .min_by_key(|(b, v)| rows.div_ceil(*b) * b * vectors.next_multiple_of(*v))
        .expect("candidates")
}

/// Shortest flat row of positions on which [`Plan::weight_gradient_pays`].
const DIRECT_WEIGHT_GRADIENT_ROW: usize = 512;

/// Output channels by taps of the weight-gradient kernel's block: 24 running sums of
/// AVX-512's 32 registers, 12 of AVX2's 16. [`gradient_block`] takes the one that computes
/// the fewest sums in all.
const GRADIENT_BLOCKS_AVX512: [(usize, usize); 2] = [(4, 6), (6, 4)];
const GRADIENT_BLOCK_NARROW: (usize, usize) = (3, 4);

/// The weight-gradient kernel's block for `oc` output channels and `taps` taps: rows and
/// taps past the last are computed and dropped, so the one with the fewest sums in all,
/// the first of equals.
fn gradient_block(isa: Isa, oc: usize, taps: usize) -> (usize, usize) {
    match isa.0 {
        Kind::Avx512 => *GRADIENT_BLOCKS_AVX512
            .iter()
            .min_by_key(|(b, t)| oc.next_multiple_of(*b) * taps.next_multiple_of(*t))
            .expect("candidates"),
        _ => GRADIENT_BLOCK_NARROW,
    }
}

/// How one convolution runs on the direct path: the flat layout of its padded images and
/// the register blocks. Made once per call, shared by every image.
#[derive(Clone, Debug)]
pub struct Plan {
    g: ConvGeometry,
    isa: Isa,
    /// Output channels and vectors of positions per forward block.
    block: (usize, usize),
    /// Height and width of the planes the padded image is read from, PH and PW: the
    /// padded image itself for stride 1; for stride (SH, SW), each of its SH·SW planes
    /// of rows and columns of one parity, `plane(a, b)[r, c] = padded[SH·r + a, SW·c +
    /// b]`, ⌈PH/SH⌉ × ⌈PW/SW⌉ — in which a strided convolution is a stride-1 one, tap
    /// (i, j) reading plane (i % SH, j % SW) at (i / SH, j / SW).
    ph: usize,
    pw: usize,
    /// Where the forward pass's vector `k` reads (its first position, flat): `k·L` when
    /// vectors run along the flat row; when output rows are whole vectors (OW a multiple
    /// of L), the `OW/L` vectors of each output row only, so nothing is dropped. Past the
    /// last vector (a last step cut short) the last one again.
    starts: Vec<usize>,
    /// Output rows are whole vectors: the sums come out as y's own rows, one after the
    /// other, instead of on flat positions.
    exact_rows: bool,
    /// `positions` rounded up to whole vectors: the weight gradient's row length.
    gradient_row: usize,
    /// Output channels and taps per block of the weight gradient by position.
    gradient_block: (usize, usize),
    /// Values of one padded image, with the slack the last vectors read past it.
    padded_len: usize,
    /// `off(t)` of every tap.
    offsets: Vec<usize>,
}

impl Plan {
    /// The plan of a convolution [`applies`] accepts, for these instructions.
    pub fn new(g: &ConvGeometry, isa: Isa) -> Plan {
        assert!(
            applies(g),
            "direct convolution: {g:?} is not one group without dilation"
        );
        let lanes = isa.lanes();
        let (pt, pb, pl, pr) = g.pad;
        let (sh, sw) = g.stride;
        let (ph, pw) = ((pt + g.h + pb).div_ceil(sh), (pl + g.w + pr).div_ceil(sw));
        // Flat positions holding outputs.
        let positions = (g.oh - 1) * pw + g.ow;
        let exact_rows = g.ow.is_multiple_of(lanes);
        // The forward pass's vectors: those of each output row, or along the flat row.
        let vectors = if exact_rows {
            g.oh * g.ow / lanes
        } else {
            positions.div_ceil(lanes)
        };
        let block = forward_block(isa, g.oc, vectors);
        let steps = vectors.div_ceil(block.1);
        let per_row = g.ow / lanes;
        let starts = (0..steps * block.1)
            .map(|k| match k.min(vectors - 1) {
                k if exact_rows => (k / per_row) * pw + (k % per_row) * lanes,
                k => k * lanes,
            })
            .collect();
        let gradient_row = positions.next_multiple_of(lanes);
        let offsets: Vec<usize> = (0..g.ic)
            .flat_map(|c| {
                (0..g.kh).flat_map(move |i| {
                    (0..g.kw).map(move |j| {
                        let plane = (c * sh + i % sh) * sw + j % sw;
                        (plane * ph + i / sh) * pw + j / sw
                    })
                })
            })
            .collect();
        let last = offsets.iter().max().copied().unwrap_or(0);
        let read_end = last + (steps * block.1 * lanes).max(gradient_row);
        Plan {
            g: *g,
            isa,
            block,
            ph,
            pw,
            starts,
            exact_rows,
            gradient_row,
            gradient_block: gradient_block(isa, g.oc, offsets.len()),
            padded_len: read_end.max(g.ic * sh * sw * ph * pw),
            offsets,
        }
    }

    /// The plan of the input gradient of `g` (which [`applies`]): the convolution of dy
    /// padded by `K − 1 − pad` with the flipped kernel, output channels in, input channels
    /// out.
    pub fn for_input_gradient(g: &ConvGeometry, isa: Isa) -> Plan {
        Plan::new(&input_gradient_geometry(g), isa)
    }

    /// Whether the input gradient is the convolution [`Plan::for_input_gradient`]
    /// computes: for stride 1.
    pub fn input_gradient_applies(&self) -> bool {
        self.g.stride == (1, 1)
    }

    /// Images whose flat input and gradient together take about `TILE_BYTES`, which
    /// stay in a core's cache: the weight gradient reduces its running sums to numbers
    /// once per tile, so small images need many per tile.
    pub fn tile(&self) -> usize {
        const TILE_BYTES: usize = 768 << 10;
        let per_image = 4 * (self.padded_len + self.g.oc * self.gradient_row);
        (TILE_BYTES / per_image.max(1)).clamp(1, 32)
    }

    /// Whether the weight gradient by position ([`Plan::add_weight_gradient`]) beats the
    /// other ways here: its running sums run over rows of positions and are then reduced
    /// to numbers, which pays only on rows long enough (measurements in
    /// `docs/PERFORMANCE.md`).
    pub fn weight_gradient_pays(&self) -> bool {
        self.gradient_row >= DIRECT_WEIGHT_GRADIENT_ROW
    }

    /// Whether [`Plan::add_weight_gradient_by_channel`] can compute the weight gradient:
    /// output channels fill whole vectors.
    pub fn weight_gradient_by_channel(&self) -> bool {
        self.g.oc.is_multiple_of(self.isa.lanes())
    }

    /// Values of one input image and of one output image, (IC·H·W, OC·OH·OW).
    pub fn image_lengths(&self) -> (usize, usize) {
        let g = &self.g;
        (g.ic * g.h * g.w, g.oc * g.oh * g.ow)
    }

    /// The instructions the plan's kernels run with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    fn taps(&self) -> usize {
        self.offsets.len()
    }

    /// w (OC, IC, KH, KW) → (⌈OC/B⌉, IC·KH·KW, B): a block's `B` weights of each tap side
    /// by side, zero for the channels past OC.
    pub fn arrange_weights(&self, w: &[f32], out: &mut Vec<f32>) {
        let taps = self.taps();
        assert_eq!(w.len(), self.g.oc * taps, "direct convolution: weights");
        self.arrange(|oc, t| w[oc * taps + t], out);
    }

    /// out (⌈OC/B⌉, taps, B) from `weight(oc, tap)`, zero for the channels past OC.
    fn arrange(&self, weight: impl Fn(usize, usize) -> f32, out: &mut Vec<f32>) {
        let (taps, b) = (self.taps(), self.block.0);
        out.clear();
        out.resize(self.g.oc.div_ceil(b) * taps * b, 0.0);
        for oc in 0..self.g.oc {
            for t in 0..taps {
                out[((oc / b) * taps + t) * b + oc % b] = weight(oc, t);
            }
        }
    }

    /// For the plan of [`Plan::for_input_gradient`]: the original weights w (OC, IC, KH,
    /// KW) turned into this plan's (IC, OC, KH, KW) by `w'[ic, oc, i, j] = w[oc, ic,
    /// KH−1−i, KW−1−j]`, then arranged as [`Plan::arrange_weights`] does.
    pub fn arrange_flipped_weights(&self, w: &[f32], out: &mut Vec<f32>) {
        let g = &self.g;
        // This plan's channels are the original's swapped: it has g.ic = the original OC.
        let (oc, ic, kk) = (g.ic, g.oc, g.kh * g.kw);
        assert_eq!(w.len(), oc * ic * kk, "direct convolution: weights");
        // Tap (o, k) of this plan's channel c: the original's filter o, channel c, turned.
        self.arrange(|c, t| w[((t / kk) * ic + c) * kk + kk - 1 - t % kk], out);
    }

    /// img (IC, H, W) → out (IC, PH, PW) and the slack after it, zero around the image;
    /// for a stride above 1, the planes of each parity ([`Plan::fill_planes`]).
    fn fill_padded(&self, img: &[f32], out: &mut [f32]) {
        let g = &self.g;
        if g.stride != (1, 1) {
            return self.fill_planes(img, out);
        }
        let (pt, _, pl, _) = g.pad;
        let (planes, slack) = out.split_at_mut(g.ic * self.ph * self.pw);
        slack.fill(0.0);
        for (src, dst) in img
            .chunks_exact(g.h * g.w)
            .zip(planes.chunks_exact_mut(self.ph * self.pw))
        {
            // Only the border is zeroed: the rows above and below the image, and the
            // columns left and right of each of its rows.
            let (above, rest) = dst.split_at_mut(pt * self.pw);
            let (rows, below) = rest.split_at_mut(g.h * self.pw);
            above.fill(0.0);
            below.fill(0.0);
            for (dst, row) in rows.chunks_exact_mut(self.pw).zip(src.chunks_exact(g.w)) {
                let (left, rest) = dst.split_at_mut(pl);
                let (inside, right) = rest.split_at_mut(g.w);
                left.fill(0.0);
                copy_row(inside, row);
                right.fill(0.0);
            }
        }
    }

    /// img (IC, H, W) → out (IC, SH·SW, PH, PW) and the slack after it: the padded image
    /// split into the planes of its rows' and columns' parities, `plane(a, b)[r, c] =
    /// padded[SH·r + a, SW·c + b]`, zero where that lies in the padding or past it. The
    /// planes no tap reads (a ≥ KH or b ≥ KW: a 1×1 convolution reads one) hold anything.
    /// Each image row is written into the planes of its row parity, its columns dealt
    /// out by parity.
    fn fill_planes(&self, img: &[f32], out: &mut [f32]) {
        let g = &self.g;
        let (pt, _, pl, _) = g.pad;
        let (sh, sw) = g.stride;
        let plane_len = self.ph * self.pw;
        let (planes, slack) = out.split_at_mut(g.ic * sh * sw * plane_len);
        slack.fill(0.0);
        let read = |p: usize| p / sw < g.kh && p % sw < g.kw;
        for (src, dst) in img
            .chunks_exact(g.h * g.w)
            .zip(planes.chunks_exact_mut(sh * sw * plane_len))
        {
            for (p, plane) in dst.chunks_exact_mut(plane_len).enumerate() {
                if read(p) {
                    plane.fill(0.0);
                }
            }
            for (y, src_row) in src.chunks_exact(g.w).enumerate() {
                let (a, r) = ((y + pt) % sh, (y + pt) / sh);
                // Row r of plane (a, b) at `at(b)`.
                let at = |b: usize| (a * sw + b) * plane_len + r * self.pw;
                if !read(a * sw) {
                    // No tap reads rows of this parity.
                    continue;
                }
                if sw == 2 {
                    // The even columns go to plane (a, PL % 2) from column PL / 2 on, the
                    // odd ones to the other from (PL + 1) / 2 on: pairs dealt out (into
                    // an unread plane too, which costs less than telling them apart).
                    let (e, o) = (at(pl % 2) + pl / 2, at((pl + 1) % 2) + pl.div_ceil(2));
                    let pairs = src_row.chunks_exact(2);
                    let last = pairs.remainder().first().copied();
                    let half = g.w / 2;
                    let (evens, odds) = if e < o {
                        let (lo, hi) = dst.split_at_mut(o);
                        (&mut lo[e..e + half], &mut hi[..half])
                    } else {
                        let (lo, hi) = dst.split_at_mut(e);
                        (&mut hi[..half], &mut lo[o..o + half])
                    };
                    for ((even, odd), pair) in evens.iter_mut().zip(odds.iter_mut()).zip(pairs) {
                        (*even, *odd) = (pair[0], pair[1]);
                    }
                    if let Some(v) = last {
                        dst[e + half] = v;
                    }
                    continue;
                }
                for (x, &v) in src_row.iter().enumerate() {
                    let (b, c) = ((x + pl) % sw, (x + pl) / sw);
                    if read(a * sw + b) {
                        dst[at(b) + c] = v;
                    }
                }
            }
        }
    }

    /// dy_img (OC, OH, OW) → out (OC, gradient_row): each row of dy at its flat position,
    /// zero at the dropped positions and past the last.
    fn fill_gradient(&self, dy_img: &[f32], out: &mut [f32]) {
        let g = &self.g;
        for (plane, dst) in dy_img
            .chunks_exact(g.oh * g.ow)
            .zip(out.chunks_exact_mut(self.gradient_row))
        {
            for (y, row) in plane.chunks_exact(g.ow).enumerate() {
                let start = y * self.pw;
                copy_row(&mut dst[start..start + g.ow], row);
                let next = if y + 1 < g.oh {
                    start + self.pw
                } else {
                    self.gradient_row
                };
                dst[start + g.ow..next].fill(0.0);
            }
        }
    }

    /// One image: x_img (IC, H, W) → y_img (OC, OH, OW) (overwritten), with weights from
    /// [`Plan::arrange_weights`] (or [`Plan::arrange_flipped_weights`] for an input
    /// gradient, x_img being dy), the epilogue applied to each output.
    pub fn forward_image(
        &self,
        x_img: &[f32],
        weights: &[f32],
        epilogue: Epilogue,
        y_img: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let g = &self.g;
        assert_eq!(x_img.len(), g.ic * g.h * g.w, "direct convolution: x");
        assert_eq!(y_img.len(), g.oc * g.oh * g.ow, "direct convolution: y");
        let padded = sized(&mut scratch.padded, self.padded_len);
        self.fill_padded(x_img, padded);
        if self.exact_rows {
            // The vectors are y's own rows: written there directly.
            let vectors = g.oh * g.ow / self.isa.lanes();
            let sums = Sums::Image {
                y: y_img,
                vectors,
                epilogue,
            };
            self.run_forward((&self.offsets[..], &self.starts[..], &*padded, weights, sums));
            return;
        }
        // Every vector's sums, whole steps of V of them (`starts` holds one per vector).
        let (b, row) = (self.block.0, self.starts.len() * self.isa.lanes());
        let flat = sized(&mut scratch.flat, g.oc.div_ceil(b) * b * row);
        let sums = Sums::Rows(&mut *flat);
        self.run_forward((&self.offsets[..], &self.starts[..], &*padded, weights, sums));
        // The outputs, without the dropped positions; the epilogue applied on the way.
        for (o, plane) in y_img.chunks_exact_mut(g.oh * g.ow).enumerate() {
            let bias = epilogue.bias(o);
            for (y, out) in plane.chunks_exact_mut(g.ow).enumerate() {
                let sums = &flat[o * row + y * self.pw..][..g.ow];
                for (d, s) in out.iter_mut().zip(sums) {
                    *d = epilogue.finish(s + bias);
                }
            }
        }
    }

    /// The forward kernel for this plan's instructions and block.
    fn run_forward(&self, args: ForwardArgs) {
        match self.isa.0 {
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { forward_avx512(self.block, args) },
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { forward_avx2(self.block, args) },
            // SAFETY: the portable vectors need no particular instructions.
            _ => unsafe { forward_with::<Portable>(self.block, args) },
        }
    }

    /// The weight gradient of a tile of images, added into dw (OC, IC, KH, KW):
    /// `dw[oc, t] += Σ_images Σ_q dy_flat[oc, q] · x_flat[off(t) + q]`.
    pub fn add_weight_gradient(
        &self,
        x_tile: &[f32],
        dy_tile: &[f32],
        dw: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let g = &self.g;
        let (x_per, y_per) = (g.ic * g.h * g.w, g.oc * g.oh * g.ow);
        let images = x_tile.len() / x_per.max(1);
        assert_eq!(x_tile.len(), images * x_per, "direct convolution: x");
        assert_eq!(dy_tile.len(), images * y_per, "direct convolution: dy");
        assert_eq!(dw.len(), g.oc * self.taps(), "direct convolution: dw");
        let xs = sized(&mut scratch.padded, images * self.padded_len);
        for (x_img, out) in x_tile
            .chunks_exact(x_per)
            .zip(xs.chunks_exact_mut(self.padded_len))
        {
            self.fill_padded(x_img, out);
        }
        let dys = sized(&mut scratch.flat, images * g.oc * self.gradient_row);
        let dy_flat_len = g.oc * self.gradient_row;
        for (dy_img, out) in dy_tile
            .chunks_exact(y_per)
            .zip(dys.chunks_exact_mut(dy_flat_len))
        {
            self.fill_gradient(dy_img, out);
        }
        let args = GradientArgs {
            offsets: &self.offsets,
            xs,
            x_len: self.padded_len,
            dys,
            oc: g.oc,
            row: self.gradient_row,
            dw,
        };
        match self.isa.0 {
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { weight_gradient_avx512(args, self.gradient_block) },
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { weight_gradient_avx2(args) },
            // SAFETY: the portable vectors need no particular instructions.
            _ => unsafe { weight_gradient_with::<Portable, 3, 4>(args) },
        }
    }
}

impl Plan {
    /// The weight gradient of one image, added into dw_t (IC·KH·KW, OC), dweight
    /// transposed: `dw_t[t, oc] += Σ_(oy, ox) x_flat[off(t) + oy·PW + ox] · dy[oc, oy, ox]`.
    /// For OC a multiple of the vector length ([`Plan::weight_gradient_by_channel`]).
    pub fn add_weight_gradient_by_channel(
        &self,
        x_img: &[f32],
        dy_img: &[f32],
        dw_t: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let g = &self.g;
        let p = g.oh * g.ow;
        assert!(
            self.weight_gradient_by_channel(),
            "whole vectors of channels"
        );
        assert_eq!(x_img.len(), g.ic * g.h * g.w, "direct convolution: x");
        assert_eq!(dy_img.len(), g.oc * p, "direct convolution: dy");
        assert_eq!(dw_t.len(), self.taps() * g.oc, "direct convolution: dw");
        let x = sized(&mut scratch.padded, self.padded_len);
        self.fill_padded(x_img, x);
        let dy_t = sized(&mut scratch.flat, p * g.oc);
        turn_planes(dy_img, p, dy_t);
        let args = ByChannelArgs {
            offsets: &self.offsets,
            x,
            dy_t,
            oc: g.oc,
            rows: (g.oh, g.ow, self.pw),
            dw_t,
        };
        by_channel(self.isa, args);
    }
}

/// The channel-vectorised weight-gradient kernel for these instructions; OC a multiple
/// of their vector length.
pub(super) fn by_channel(isa: Isa, args: ByChannelArgs) {
    assert!(
        args.oc.is_multiple_of(isa.lanes()),
        "whole vectors of channels"
    );
    match isa.0 {
        // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => unsafe { by_channel_avx512(args) },
        // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => unsafe { by_channel_avx2(args) },
        // SAFETY: the portable vectors need no particular instructions.
        _ => unsafe { by_channel_with::<Portable>(args) },
    }
}

/// planes (C, P) → turned (P, C); when `turned` is larger than the L1 cache, a band of
/// positions at a time, whose rows stay in L1 while every plane writes into them.
pub(super) fn turn_planes(planes: &[f32], p: usize, turned: &mut [f32]) {
    const L1_VALUES: usize = 8 << 10;
    let c = planes.len() / p.max(1);
    assert_eq!(turned.len(), p * c, "turned planes");
    let band_len = if p * c <= L1_VALUES { p } else { 16 };
    for q0 in (0..p).step_by(band_len.max(1)) {
        let band = band_len.min(p - q0);
        let rows = &mut turned[q0 * c..(q0 + band) * c];
        for (o, plane) in planes.chunks_exact(p).enumerate() {
            for (q, &v) in plane[q0..q0 + band].iter().enumerate() {
                rows[q * c + o] = v;
            }
        }
    }
}

/// The operands of the channel-vectorised weight gradient: tap offsets, one padded image,
/// its dy as (OH·OW, OC), (OH, OW, PW), and dw_t (taps, OC), added into. (The Winograd
/// path's weight gradient runs the same kernel on its transformed tiles.)
pub(super) struct ByChannelArgs<'a> {
    pub offsets: &'a [usize],
    pub x: &'a [f32],
    pub dy_t: &'a [f32],
    pub oc: usize,
    pub rows: (usize, usize, usize),
    pub dw_t: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn by_channel_avx512(args: ByChannelArgs) {
    // SAFETY: this function runs only on a CPU with AVX-512F (it is compiled for it and
    // reached through `Isa`).
    unsafe { by_channel_with::<simd::Avx512>(args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn by_channel_avx2(args: ByChannelArgs) {
    // SAFETY: this function runs only on a CPU with AVX2 and FMA (it is compiled for them
    // and reached through `Isa`).
    unsafe { by_channel_with::<simd::Avx2>(args) }
}

/// [`by_channel_block`] over the vectors of channels, in blocks of `C` vectors by `T`
/// taps: up to 24 running sums with AVX-512's 32 registers, 12 with 16. Of the two tap
/// counts for each `C` ([`by_channel_taps`]), the one that loads and multiplies least for
/// this many taps. (With one vector of channels, 24 taps made the compiler keep their
/// offsets in vector registers and spill sums: 16 measured a third faster.)
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn by_channel_with<S: Lanes>(mut a: ByChannelArgs) {
    let vectors = a.oc / S::L;
    assert!(
        a.oc.is_multiple_of(S::L) && vectors > 0,
        "whole vectors of channels"
    );
    let (wide, taps) = (S::L == 16, a.offsets.len());
    let mut v0 = 0;
    while v0 < vectors {
        let count = match vectors - v0 {
            left if wide => left.min(4),
            left => left.min(2),
        };
        let wider = by_channel_taps(count, taps);
        // SAFETY (every arm): the caller's contract, passed on; `v0 + C ≤ vectors`.
        unsafe {
            match (wide, count, wider) {
                (true, 1, true) => by_channel_block::<S, 1, 16>(&mut a, v0),
                (true, 1, false) => by_channel_block::<S, 1, 12>(&mut a, v0),
                (true, 2, true) => by_channel_block::<S, 2, 12>(&mut a, v0),
                (true, 2, false) => by_channel_block::<S, 2, 8>(&mut a, v0),
                (true, 3, true) => by_channel_block::<S, 3, 8>(&mut a, v0),
                (true, 3, false) => by_channel_block::<S, 3, 6>(&mut a, v0),
                (true, _, true) => by_channel_block::<S, 4, 6>(&mut a, v0),
                (true, _, false) => by_channel_block::<S, 4, 4>(&mut a, v0),
                (false, 1, _) => by_channel_block::<S, 1, 12>(&mut a, v0),
                (false, _, _) => by_channel_block::<S, 2, 6>(&mut a, v0),
            }
        }
        v0 += count;
    }
}

/// For `c` vectors of channels (1 to 4) and `taps` taps: whether the wider of the two tap
/// blocks of [`by_channel_with`] (16, 12, 8, 6 taps) beats the narrower (12, 8, 6, 4). Per
/// position a block loads `T` inputs and `c` vectors of dy and multiplies `c·T` times;
/// a block cut short by the number of taps computes sums it drops. Costed as blocks ×
/// c·(T + 1) (measured on the Winograd weight gradients of 32 and 64 input channels and
/// LeNet-5's second convolution: `docs/PERFORMANCE.md`); the wider on a tie.
fn by_channel_taps(c: usize, taps: usize) -> bool {
    let (wide, narrow) = match c {
        1 => (16, 12),
        2 => (12, 8),
        3 => (8, 6),
        _ => (6, 4),
    };
    let cost = |t: usize| taps.div_ceil(t) * (t + 1);
    cost(wide) <= cost(narrow)
}

/// `dw_t[t, oc] += Σ_positions x[off(t) + q] · dy_t[p, oc]` for the `C` vectors of
/// channels from vector `v0` on, all taps in blocks of `T`; a block cut short by the
/// number of taps reads a real tap again and drops its sums.
///
/// # Safety
/// The CPU has the instruction set of `S`, and `(v0 + C)·L ≤ OC`.
#[inline(always)]
unsafe fn by_channel_block<S: Lanes, const C: usize, const T: usize>(
    a: &mut ByChannelArgs,
    v0: usize,
) {
    let taps = a.offsets.len();
    let (oh, ow, pw) = a.rows;
    assert_eq!(a.dy_t.len(), oh * ow * a.oc, "dy turned");
    assert_eq!(a.dw_t.len(), taps * a.oc, "weight gradient");
    let last = a.offsets.iter().max().copied().unwrap_or(0);
    assert!(
        oh > 0 && ow > 0 && last + (oh - 1) * pw + ow <= a.x.len(),
        "padded image"
    );
    for t0 in (0..taps).step_by(T) {
        let offs: [usize; T] = std::array::from_fn(|t| a.offsets[(t0 + t).min(taps - 1)]);
        // SAFETY: the CPU has S's instructions (the caller's contract).
        let mut acc = [[unsafe { S::zero() }; T]; C];
        for oy in 0..oh {
            for ox in 0..ow {
                let (q, p) = (oy * pw + ox, oy * ow + ox);
                let dy = &a.dy_t[p * a.oc + v0 * S::L..][..C * S::L];
                // SAFETY: `c·L + L ≤ C·L`: inside `dy` (sliced above); the CPU has S's
                // instructions.
                let dv: [S; C] =
                    std::array::from_fn(|c| unsafe { S::load_ptr(dy.as_ptr().add(c * S::L)) });
                for (t, &off) in offs.iter().enumerate() {
                    // SAFETY: `off + q ≤ last + (OH − 1)·PW + OW − 1 < x.len()` (asserted
                    // above); the CPU has S's instructions.
                    let xb = unsafe { S::splat(*a.x.get_unchecked(off + q)) };
                    for c in 0..C {
                        acc[c][t] = dv[c].mul_add(xb, acc[c][t]);
                    }
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            for (t, sum) in acc.iter().enumerate().take(taps - t0) {
                let out = &mut a.dw_t[(t0 + t) * a.oc + (v0 + c) * S::L..][..S::L];
                let mut lanes = [0.0; 16];
                sum.store(&mut lanes);
                for (o, v) in out.iter_mut().zip(&lanes) {
                    *o += v;
                }
            }
        }
    }
}

/// A thread's buffers for the direct kernels, reused from image to image.
#[derive(Default)]
pub struct Scratch {
    /// Padded flat images.
    padded: Vec<f32>,
    /// Forward sums on flat positions, or the weight gradient's flat dy.
    flat: Vec<f32>,
}

/// `buf` with length `len`, its old values left (every caller overwrites them).
pub(super) fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

/// Offsets of the taps, where each vector reads (`steps·V` of them), the padded image,
/// the arranged weights and where the sums go.
pub(super) type ForwardArgs<'a> = (&'a [usize], &'a [usize], &'a [f32], &'a [f32], Sums<'a>);

/// Where the forward kernel puts its sums.
pub(super) enum Sums<'a> {
    /// ⌈OC/B⌉·B rows of `steps·V·L` values, vector `k` at `k·L`.
    Rows(&'a mut [f32]),
    /// One image's y (OC, OH, OW) itself, when its rows are whole vectors: vector `k` at
    /// `k·L` of its channel's plane, the epilogue applied as it is written; the vectors
    /// past the last (a last step cut short) and the channels past OC are dropped.
    Image {
        y: &'a mut [f32],
        vectors: usize,
        epilogue: Epilogue<'a>,
    },
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn forward_avx512(block: (usize, usize), args: ForwardArgs) {
    // SAFETY: this function runs only on a CPU with AVX-512F (it is compiled for it and
    // reached through `Isa`).
    unsafe { forward_with::<simd::Avx512>(block, args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2(block: (usize, usize), args: ForwardArgs) {
    // SAFETY: this function runs only on a CPU with AVX2 and FMA (it is compiled for them
    // and reached through `Isa`).
    unsafe { forward_with::<simd::Avx2>(block, args) }
}

/// [`forward_blocks`] for the block shape.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
pub(super) unsafe fn forward_with<S: Lanes>(block: (usize, usize), args: ForwardArgs) {
    // SAFETY (every arm): the caller's contract, passed on.
    unsafe {
        match block {
            (8, 3) => forward_blocks::<S, 8, 3>(args),
            (6, 4) => forward_blocks::<S, 6, 4>(args),
            (4, 6) => forward_blocks::<S, 4, 6>(args),
            (4, 3) => forward_blocks::<S, 4, 3>(args),
            (6, 2) => forward_blocks::<S, 6, 2>(args),
            (3, 4) => forward_blocks::<S, 3, 4>(args),
            (4, 5) => forward_blocks::<S, 4, 5>(args),
            (4, 2) => forward_blocks::<S, 4, 2>(args),
            other => unreachable!("no forward block {other:?}"),
        }
    }
}

/// The forward sums of one padded image in blocks of `B` output channels by `V` vectors:
/// `sums[oc, k·L + l] = Σ_t w[oc, t] · x[off(t) + starts[k] + l]` for every vector `k`.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn forward_blocks<S: Lanes, const B: usize, const V: usize>(
    (offsets, starts, x, weights, mut sums): ForwardArgs,
) {
    let taps = offsets.len();
    let (steps, row) = (starts.len() / V, starts.len() * S::L);
    let blocks = weights.len() / (taps * B).max(1);
    assert_eq!(starts.len(), steps * V, "whole steps of vectors");
    assert_eq!(weights.len(), blocks * taps * B, "arranged weights");
    match &sums {
        Sums::Rows(sums) => assert_eq!(sums.len(), blocks * B * row, "forward sums"),
        Sums::Image { y, vectors, .. } => {
            let planes = y.len() / (vectors * S::L).max(1);
            assert!(
                planes <= blocks * B && vectors * S::L * planes == y.len(),
                "y"
            );
            assert!(*vectors <= steps * V, "vectors");
        }
    }
    let last = offsets.iter().max().copied().unwrap_or(0);
    let reach = starts.iter().max().map_or(0, |s| s + S::L);
    assert!(last + reach <= x.len(), "padded image too short");
    for (block, w_block) in weights.chunks_exact(taps * B).enumerate() {
        for (step, starts) in starts.as_chunks::<V>().0.iter().enumerate() {
            let q = step * V * S::L;
            // SAFETY: the CPU has S's instructions (the caller's contract).
            let mut acc = [[unsafe { S::zero() }; V]; B];
            for (&offset, w) in offsets.iter().zip(w_block.as_chunks::<B>().0) {
                // SAFETY: `offset + starts[v] + L ≤ last + reach ≤ x.len()` (asserted
                // above): the V vectors read are inside x; the CPU has S's instructions.
                let xv: [S; V] = std::array::from_fn(|v| unsafe {
                    S::load_ptr(x.as_ptr().add(offset + starts[v]))
                });
                for r in 0..B {
                    // SAFETY: the CPU has S's instructions (the caller's contract).
                    let wr = unsafe { S::splat(w[r]) };
                    for v in 0..V {
                        acc[r][v] = wr.mul_add(xv[v], acc[r][v]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let o = block * B + r;
                match &mut sums {
                    Sums::Rows(sums) => {
                        let out = &mut sums[o * row + q..][..V * S::L];
                        for (v, a) in acc.iter().enumerate() {
                            a.store(&mut out[v * S::L..]);
                        }
                    }
                    Sums::Image {
                        y,
                        vectors,
                        epilogue,
                    } => {
                        let plane = *vectors * S::L;
                        let Some(out) = y.get_mut(o * plane..(o + 1) * plane) else {
                            break;
                        };
                        // SAFETY: the CPU has S's instructions (the caller's contract).
                        let bias = unsafe { S::splat(epilogue.bias(o)) };
                        let first = step * V;
                        for (v, a) in acc.iter().enumerate().take(vectors.saturating_sub(first)) {
                            let out = &mut out[(first + v) * S::L..][..S::L];
                            a.add(bias).store(out);
                            if epilogue.relu {
                                out.iter_mut().for_each(|y| *y = epilogue.finish(*y));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The operands of the weight-gradient kernel: tap offsets, the tile's padded images
/// (`x_len` values apart), its flat dy (OC rows of `row` values per image) and dw (OC,
/// taps), added into.
struct GradientArgs<'a> {
    offsets: &'a [usize],
    xs: &'a [f32],
    x_len: usize,
    dys: &'a [f32],
    oc: usize,
    row: usize,
    dw: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn weight_gradient_avx512(args: GradientArgs, block: (usize, usize)) {
    // SAFETY (both arms): this function runs only on a CPU with AVX-512F (it is compiled
    // for it and reached through `Isa`).
    match block {
        (6, 4) => unsafe { weight_gradient_with::<simd::Avx512, 6, 4>(args) },
        _ => unsafe { weight_gradient_with::<simd::Avx512, 4, 6>(args) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn weight_gradient_avx2(args: GradientArgs) {
    const B: usize = GRADIENT_BLOCK_NARROW.0;
    const T: usize = GRADIENT_BLOCK_NARROW.1;
    // SAFETY: this function runs only on a CPU with AVX2 and FMA (it is compiled for them
    // and reached through `Isa`).
    unsafe { weight_gradient_with::<simd::Avx2, B, T>(args) }
}

/// `dw[oc, t] += Σ_images Σ_q dy[oc, q] · x[off(t) + q]` in blocks of `B` output channels
/// by `T` taps, each running sum a vector over positions. A block cut short by OC or by
/// the number of taps reads a real row or tap again and drops its sums.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn weight_gradient_with<S: Lanes, const B: usize, const T: usize>(a: GradientArgs) {
    let taps = a.offsets.len();
    let images = a.xs.len() / a.x_len.max(1);
    assert!(a.row.is_multiple_of(S::L), "rows of whole vectors");
    assert_eq!(a.xs.len(), images * a.x_len, "padded images");
    assert_eq!(a.dys.len(), images * a.oc * a.row, "flat gradients");
    assert_eq!(a.dw.len(), a.oc * taps, "weight gradient");
    let last = a.offsets.iter().max().copied().unwrap_or(0);
    assert!(last + a.row <= a.x_len, "padded image too short");
    for oc0 in (0..a.oc).step_by(B) {
        let rows: [usize; B] = std::array::from_fn(|b| (oc0 + b).min(a.oc - 1));
        for t0 in (0..taps).step_by(T) {
            let offs: [usize; T] = std::array::from_fn(|t| a.offsets[(t0 + t).min(taps - 1)]);
            // SAFETY: the CPU has S's instructions (the caller's contract).
            let mut acc = [[unsafe { S::zero() }; T]; B];
            for image in 0..images {
                let x = &a.xs[image * a.x_len..][..a.x_len];
                let dy = &a.dys[image * a.oc * a.row..][..a.oc * a.row];
                for q in (0..a.row).step_by(S::L) {
                    // SAFETY: `rows[b] < OC` and `q + L ≤ row`: inside dy; the CPU has
                    // S's instructions.
                    let dyv: [S; B] = std::array::from_fn(|b| unsafe {
                        S::load_ptr(dy.as_ptr().add(rows[b] * a.row + q))
                    });
                    for (t, &off) in offs.iter().enumerate() {
                        // SAFETY: `off + q + L ≤ last + row ≤ x_len` (asserted above):
                        // inside this image; the CPU has S's instructions.
                        let xv = unsafe { S::load_ptr(x.as_ptr().add(off + q)) };
                        for b in 0..B {
                            acc[b][t] = dyv[b].mul_add(xv, acc[b][t]);
                        }
                    }
                }
            }
            for (b, acc) in acc.iter().enumerate().take(a.oc - oc0) {
                for (t, sum) in acc.iter().enumerate().take(taps - t0) {
                    a.dw[(oc0 + b) * taps + t0 + t] += sum.sum();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::tests::assert_close;
    use crate::kernels::reference;
    use crate::rng::Rng;

    fn geometry(ic: usize, oc: usize, hw: (usize, usize), k: usize, pad: usize) -> ConvGeometry {
        let out = |len: usize| len + 2 * pad + 1 - k;
        ConvGeometry {
            n: 3,
            ic,
            h: hw.0,
            w: hw.1,
            oc,
            kh: k,
            kw: k,
            stride: (1, 1),
            pad: (pad, pad, pad, pad),
            dilation: (1, 1),
            groups: 1,
            oh: out(hw.0),
            ow: out(hw.1),
        }
    }

    /// First layers (LeNet-5, SmallCNN), the 3×3 convolutions of ResNet's three stages,
    /// blocks of channels cut short (5, 7, 13 output channels), rows of one value,
    /// uneven and asymmetric padding, a kernel as large as the padded image.
    fn cases() -> Vec<ConvGeometry> {
        let asymmetric = ConvGeometry {
            pad: (0, 2, 1, 0),
            oh: 7 + 2 - 3 + 1,
            ow: 5 + 1 - 3 + 1,
            ..geometry(4, 7, (7, 5), 3, 0)
        };
        let wide = ConvGeometry {
            kw: 1,
            pad: (1, 1, 0, 0),
            ow: 9,
            ..geometry(3, 5, (6, 9), 3, 1)
        };
        vec![
            geometry(1, 6, (28, 28), 5, 2),
            geometry(3, 32, (32, 32), 3, 1),
            // Strided: ResNet's convolutions opening a stage and their 1×1 shortcuts, odd
            // sizes, a stride in one direction only, a stride above the kernel.
            geometry(16, 32, (32, 32), 3, 1).with_stride((2, 2)),
            geometry(32, 64, (16, 16), 1, 0).with_stride((2, 2)),
            geometry(5, 7, (9, 11), 3, 1).with_stride((2, 2)),
            geometry(4, 6, (11, 8), 5, 2).with_stride((2, 1)),
            geometry(3, 5, (7, 10), 2, 1).with_stride((3, 3)),
            geometry(16, 16, (12, 12), 3, 1),
            geometry(32, 32, (16, 16), 3, 1),
            geometry(64, 64, (8, 8), 3, 1),
            geometry(6, 13, (9, 17), 3, 0),
            geometry(2, 3, (4, 1), 3, 1),
            geometry(5, 5, (3, 3), 3, 2),
            asymmetric,
            wide,
        ]
    }

    struct Data {
        x: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        dy: Vec<f32>,
    }

    fn data(g: &ConvGeometry, seed: u64) -> Data {
        let mut rng = Rng::new(seed);
        let mut normal = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal()).collect() };
        Data {
            x: normal(g.n * g.ic * g.h * g.w),
            w: normal(g.oc * g.ic * g.kh * g.kw),
            b: normal(g.oc),
            dy: normal(g.n * g.oc * g.oh * g.ow),
        }
    }

    /// The forward pass, image by image, with every instruction set this CPU has.
    #[test]
    fn forward_matches_the_reference_loops() {
        for g in cases() {
            assert!(applies(&g), "{g:?}");
            let d = data(&g, 8);
            let want = reference::conv2d_forward(&g, &d.x, &d.w, Some(&d.b));
            let (x_per, y_per) = (g.ic * g.h * g.w, g.oc * g.oh * g.ow);
            for isa in Isa::available() {
                let plan = Plan::new(&g, isa);
                let (mut scratch, mut weights) = (Scratch::default(), Vec::new());
                plan.arrange_weights(&d.w, &mut weights);
                let mut y = vec![f32::NAN; want.len()];
                for (x_img, y_img) in d.x.chunks(x_per).zip(y.chunks_mut(y_per)) {
                    let epilogue = Epilogue {
                        bias: Some(&d.b),
                        relu: false,
                    };
                    plan.forward_image(x_img, &weights, epilogue, y_img, &mut scratch);
                }
                assert_close(&format!("{isa:?} {g:?}"), &y, &want);
            }
        }
    }

    /// dx as the forward pass of dy with the flipped kernel, dw over tiles of one and of
    /// several images and, where the channels fill vectors, dwᵀ by channel; the weight
    /// gradients added into what they held.
    #[test]
    fn gradients_match_the_reference_loops() {
        let mut by_channel = 0;
        for g in cases() {
            let d = data(&g, 9);
            let (want_dx, want_dw, _) = reference::conv2d_backward(&g, &d.x, &d.w, &d.dy);
            let (x_per, y_per) = (g.ic * g.h * g.w, g.oc * g.oh * g.ow);
            for isa in Isa::available() {
                let (mut scratch, mut weights) = (Scratch::default(), Vec::new());
                if g.stride == (1, 1) {
                    let plan = Plan::for_input_gradient(&g, isa);
                    plan.arrange_flipped_weights(&d.w, &mut weights);
                    let mut dx = vec![f32::NAN; want_dx.len()];
                    for (dy_img, dx_img) in d.dy.chunks(y_per).zip(dx.chunks_mut(x_per)) {
                        let s = &mut scratch;
                        plan.forward_image(dy_img, &weights, Epilogue::default(), dx_img, s);
                    }
                    assert_close(&format!("dx {isa:?} {g:?}"), &dx, &want_dx);
                }

                let plan = Plan::new(&g, isa);
                assert_eq!(plan.input_gradient_applies(), g.stride == (1, 1));
                for tile in [1, 2, 3] {
                    let mut dw = vec![1.0; d.w.len()];
                    let tiles = d.x.chunks(tile * x_per).zip(d.dy.chunks(tile * y_per));
                    for (x_tile, dy_tile) in tiles {
                        plan.add_weight_gradient(x_tile, dy_tile, &mut dw, &mut scratch);
                    }
                    let want: Vec<f32> = want_dw.iter().map(|v| v + 1.0).collect();
                    assert_close(&format!("dw {isa:?} tile {tile} {g:?}"), &dw, &want);
                }
                if plan.weight_gradient_by_channel() {
                    let taps = g.ic * g.kh * g.kw;
                    let mut dw_t = vec![1.0; d.w.len()];
                    for (x_img, dy_img) in d.x.chunks(x_per).zip(d.dy.chunks(y_per)) {
                        plan.add_weight_gradient_by_channel(x_img, dy_img, &mut dw_t, &mut scratch);
                    }
                    let want: Vec<f32> = (0..taps * g.oc)
                        .map(|i| want_dw[(i % g.oc) * taps + i / g.oc] + 1.0)
                        .collect();
                    assert_close(&format!("dw by channel {isa:?} {g:?}"), &dw_t, &want);
                    by_channel += 1;
                }
            }
        }
        // 16, 32 and 64 channels, with every instruction set (the portable one at least).
        assert!(by_channel >= 4, "{by_channel} weight gradients by channel");
    }

    /// Every block of the by-channel weight gradient — 1 to 4 vectors of channels, the
    /// wider and the narrower tap count, blocks cut short by the number of taps — against
    /// plain sums, on every instruction set, the sums added into what dwᵀ held.
    #[test]
    fn weight_gradient_by_channel_blocks_agree_with_plain_sums() {
        let mut rng = Rng::new(31);
        let mut chosen = std::collections::BTreeSet::new();
        for isa in Isa::available() {
            for c in 1..=4 {
                for taps in [1, 5, 12, 16, 17, 24, 32, 36, 64, 150] {
                    chosen.insert((c, by_channel_taps(c, taps)));
                    let (oc, positions) = (c * isa.lanes(), 23);
                    let offsets: Vec<usize> = (0..taps).map(|t| 3 * t + t % 2).collect();
                    let x: Vec<f32> = (0..3 * taps + 2 + positions)
                        .map(|_| rng.normal())
                        .collect();
                    let dy_t: Vec<f32> = (0..positions * oc).map(|_| rng.normal()).collect();
                    let before: Vec<f32> = (0..taps * oc).map(|_| rng.normal()).collect();
                    let want: Vec<f32> = (0..taps * oc)
                        .map(|i| {
                            let (t, o) = (i / oc, i % oc);
                            let sum: f64 = (0..positions)
                                .map(|p| (x[offsets[t] + p] * dy_t[p * oc + o]) as f64)
                                .sum();
                            before[i] + sum as f32
                        })
                        .collect();
                    let mut dw_t = before.clone();
                    let args = ByChannelArgs {
                        offsets: &offsets,
                        x: &x,
                        dy_t: &dy_t,
                        oc,
                        rows: (1, positions, positions),
                        dw_t: &mut dw_t,
                    };
                    by_channel(isa, args);
                    assert_close(&format!("{isa:?} {c} vectors, {taps} taps"), &dw_t, &want);
                }
            }
        }
        assert_eq!(
            chosen.len(),
            8,
            "both tap counts for every block: {chosen:?}"
        );
    }

    #[test]
    fn the_direct_path_is_for_single_group_convolutions_without_dilation() {
        assert!(applies(&geometry(3, 64, (32, 32), 3, 1)));
        assert!(applies(&geometry(64, 64, (40, 40), 3, 1)), "any width");
        assert!(!applies(&geometry(8, 8, (8, 8), 1, 0)), "1×1: GEMM");
        assert!(
            !applies(&geometry(8, 8, (8, 8), 3, 3)),
            "padding beyond K − 1"
        );
        assert!(
            !applies(&geometry(8, 8, (8, 8), 1, 0).with_pad(1)),
            "as for 1×1"
        );
        assert!(applies(&geometry(8, 8, (8, 8), 3, 0).with_pad(2)));
        assert!(applies(&geometry(1, 8, (8, 8), 2, 0).with_stride((2, 2))));
        assert!(
            applies(&geometry(8, 8, (8, 8), 1, 0).with_stride((2, 2))),
            "a strided 1×1 convolution"
        );
        let strided_cut_short = ConvGeometry {
            oh: 3,
            ..geometry(1, 8, (8, 8), 2, 0).with_stride((2, 2))
        };
        assert!(!applies(&strided_cut_short));
        let dilated = ConvGeometry {
            dilation: (2, 2),
            oh: 4,
            ow: 4,
            ..geometry(1, 8, (8, 8), 3, 0)
        };
        assert!(!applies(&dilated));
        let grouped = ConvGeometry {
            groups: 2,
            ..geometry(4, 4, (8, 8), 3, 1)
        };
        assert!(!applies(&grouped));
        let cut_short = ConvGeometry {
            oh: 7,
            ..geometry(4, 4, (8, 8), 3, 1)
        };
        assert!(!applies(&cut_short), "an output smaller than the formula's");
    }

    impl ConvGeometry {
        /// The same convolution with this stride and the output it gives.
        fn with_stride(self, stride: (usize, usize)) -> ConvGeometry {
            let (pt, pb, pl, pr) = self.pad;
            ConvGeometry {
                stride,
                oh: (self.h + pt + pb - self.kh) / stride.0 + 1,
                ow: (self.w + pl + pr - self.kw) / stride.1 + 1,
                ..self
            }
        }

        /// The same convolution with `pad` on every side and the output it gives.
        fn with_pad(self, pad: usize) -> ConvGeometry {
            ConvGeometry {
                pad: (pad, pad, pad, pad),
                oh: self.h + 2 * pad + 1 - self.kh,
                ow: self.w + 2 * pad + 1 - self.kw,
                ..self
            }
        }
    }
}
