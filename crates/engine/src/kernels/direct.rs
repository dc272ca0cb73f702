//! Direct forward convolution for layers with few input channels, a network's first
//! layer above all (1 to 3 channels, `IC·KH·KW` = 9 to 27 taps). There im2col writes a
//! copy of every pixel per tap, 25 values per input value for LeNet-5's first layer, and
//! the product that follows has a sum too short to run at speed. Here nothing is
//! unrolled: output rows are vectors, and each tap's input row is read straight from the
//! padded image.
//!
//! One output row `oy` at a time, for a block of output channels:
//! `y[oc, oy, ox] = b[oc] + Σ_(ic,i,j) w[oc, ic, i, j] · x_padded[ic, oy + i, ox + j]`.
//! The row is `V` vectors of `L` lanes (`V·L ≥ OW`, the lanes past OW computed and
//! dropped); each tap's input row `x_padded[ic, oy + i, j..]` is loaded once and serves
//! every channel of the block, whose running sums stay in registers.
//!
//! Applies to stride 1, no dilation, one group and output rows of at most [`MAX_WIDTH`]
//! values ([`applies`]). The backward pass stays with im2col: its weight gradient, a
//! product with a long sum, runs there at least as fast as a direct kernel measured.

use super::ConvGeometry;

/// Running sums (vector registers) of a block: `SUMS / V` output channels of `V` vectors
/// each, so each loaded input vector serves `SUMS / V` multiply-adds. Twelve leave
/// registers for the loads even with AVX2's sixteen.
const SUMS: usize = 12;
/// Most taps (`IC·KH·KW`) a layer may have to take the direct path: beyond, the products
/// of im2col + GEMM have sums long enough to run well.
const MAX_TAPS: usize = 27;
/// Widest output row, in values.
pub const MAX_WIDTH: usize = 32;

/// Whether the direct path computes this convolution (see the module documentation).
pub fn applies(g: &ConvGeometry) -> bool {
    g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.groups == 1
        && g.ic * g.kh * g.kw <= MAX_TAPS
        && (1..=MAX_WIDTH).contains(&g.ow)
}

/// An instruction set the kernels are compiled for, found on this CPU: a value of this
/// type can only be made by asking the CPU ([`Isa::detect`], [`Isa::available`]), so a
/// kernel dispatched on it runs only where its instructions exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The widest the CPU has.
    pub fn detect() -> Isa {
        *Self::available()
            .last()
            .expect("the portable code runs anywhere")
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
trait Lanes: Copy {
    const L: usize;
    /// # Safety
    /// The CPU has the instruction set of `Self`.
    unsafe fn zero() -> Self;
    /// # Safety
    /// As [`Lanes::zero`].
    unsafe fn splat(v: f32) -> Self;
    /// The first `L` values of `src` (which must hold that many).
    ///
    /// # Safety
    /// As [`Lanes::zero`].
    unsafe fn load(src: &[f32]) -> Self;
    /// Into the first `L` values of `dst`.
    fn store(self, dst: &mut [f32]);
    /// `self·b + c`, lane by lane.
    fn mul_add(self, b: Self, c: Self) -> Self;
}

/// 8 lanes in plain Rust, a multiplication and an addition (two roundings).
#[derive(Clone, Copy)]
struct Portable([f32; 8]);

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
    unsafe fn load(src: &[f32]) -> Self {
        Portable(src[..8].try_into().expect("8 values"))
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32]) {
        dst[..8].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l] * b.0[l] + c.0[l]))
    }
}

/// AVX-512 and AVX2 registers with fused multiply-adds. Only to be used inside functions
/// compiled for the instruction set (`#[target_feature]`), on a CPU that has it.
#[cfg(target_arch = "x86_64")]
mod simd {
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
        unsafe fn load(src: &[f32]) -> Self {
            // SAFETY: the CPU has AVX-512F (the caller's contract); `src[..16]` checks
            // that the 16 values read exist.
            Avx512(unsafe { _mm512_loadu_ps(src[..16].as_ptr()) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Lanes`); `dst[..16]`
            // checks that the 16 values written exist.
            unsafe { _mm512_storeu_ps(dst[..16].as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX-512F (see `Lanes`).
            Avx512(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
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
        unsafe fn load(src: &[f32]) -> Self {
            // SAFETY: the CPU has AVX2 and FMA (the caller's contract); `src[..8]` checks
            // that the 8 values read exist.
            Avx2(unsafe { _mm256_loadu_ps(src[..8].as_ptr()) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            // SAFETY: `self` exists, so the CPU has AVX2 (see `Lanes`); `dst[..8]` checks
            // that the 8 values written exist.
            unsafe { _mm256_storeu_ps(dst[..8].as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: `self` exists, so the CPU has AVX2 and FMA (see `Lanes`).
            Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
    }
}

/// The rows of an image padded for the direct kernels: `(C, PT+H+PB, row)` with `row =
/// V·L + KW − 1` values, room for a tap's whole vectors at every output row.
struct PaddedRows {
    /// Vectors per output row.
    vectors: usize,
    /// Values per padded row.
    width: usize,
    /// Rows per channel.
    height: usize,
}

impl PaddedRows {
    fn new(g: &ConvGeometry, isa: Isa) -> Self {
        let vectors = g.ow.div_ceil(isa.lanes());
        PaddedRows {
            vectors,
            width: vectors * isa.lanes() + g.kw - 1,
            height: g.pad.0 + g.h + g.pad.1,
        }
    }

    /// img (C, H, W) → buf (C, height, width), zero around the image.
    fn fill<'a>(&self, g: &ConvGeometry, img: &[f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
        let (pt, _, pl, _) = g.pad;
        buf.clear();
        buf.resize(g.ic * self.height * self.width, 0.0);
        for (c, plane) in img.chunks_exact(g.h * g.w).enumerate() {
            for (y, row) in plane.chunks_exact(g.w).enumerate() {
                let start = (c * self.height + pt + y) * self.width + pl;
                buf[start..start + g.w].copy_from_slice(row);
            }
        }
        buf
    }

    /// Where tap `t = (ic, i, j)` starts reading for output row 0.
    fn tap_offset(&self, g: &ConvGeometry, t: usize) -> usize {
        let (ic, i, j) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
        (ic * self.height + i) * self.width + j
    }
}

/// w (OC, IC, KH, KW) → (⌈OC/B⌉, IC·KH·KW, B) for blocks of `B = SUMS / V` channels (V
/// for these rows and instructions): a block's B weights of each tap side by side, zero
/// for the channels past OC.
pub fn arrange_weights(g: &ConvGeometry, isa: Isa, w: &[f32], out: &mut Vec<f32>) {
    let taps = g.ic * g.kh * g.kw;
    let block = SUMS / PaddedRows::new(g, isa).vectors;
    out.clear();
    out.resize(g.oc.div_ceil(block) * taps * block, 0.0);
    for (oc, filter) in w.chunks_exact(taps).enumerate() {
        for (t, &v) in filter.iter().enumerate() {
            out[((oc / block) * taps + t) * block + oc % block] = v;
        }
    }
}

/// One image: x_img (IC, H, W) → y_img (OC, OH, OW) (overwritten), with weights from
/// [`arrange_weights`]. `padded` is scratch.
pub fn forward_image(
    g: &ConvGeometry,
    isa: Isa,
    x_img: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    y_img: &mut [f32],
    padded: &mut Vec<f32>,
) {
    assert!(
        applies(g),
        "direct convolution: {g:?} has too many taps or too wide rows"
    );
    let rows = PaddedRows::new(g, isa);
    let x = rows.fill(g, x_img, padded);
    let args = (g, &rows, x, weights, bias, y_img);
    match isa.0 {
        // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => unsafe { forward_avx512(args) },
        // SAFETY: as above, AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => unsafe { forward_avx2(args) },
        // SAFETY: the portable vectors need no particular instructions.
        _ => unsafe { forward_with::<Portable>(args) },
    }
}

type ForwardArgs<'a> = (
    &'a ConvGeometry,
    &'a PaddedRows,
    &'a [f32],
    &'a [f32],
    Option<&'a [f32]>,
    &'a mut [f32],
);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn forward_avx512(args: ForwardArgs) {
    // SAFETY: this function runs only on a CPU with AVX-512F (it is compiled for it and
    // called after detection).
    unsafe { forward_with::<simd::Avx512>(args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2(args: ForwardArgs) {
    // SAFETY: this function runs only on a CPU with AVX2 and FMA (it is compiled for them
    // and called after detection).
    unsafe { forward_with::<simd::Avx2>(args) }
}

/// [`forward_rows`] for the number of vectors per row.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn forward_with<S: Lanes>(args: ForwardArgs) {
    // SAFETY (each arm): the caller's contract, passed on.
    match args.1.vectors {
        1 => unsafe { forward_rows::<S, 1, { SUMS }>(args) },
        2 => unsafe { forward_rows::<S, 2, { SUMS / 2 }>(args) },
        3 => unsafe { forward_rows::<S, 3, { SUMS / 3 }>(args) },
        4 => unsafe { forward_rows::<S, 4, { SUMS / 4 }>(args) },
        v => unreachable!("{v} vectors of {} for rows of at most {MAX_WIDTH}", S::L),
    }
}

/// The forward pass of one padded image in blocks of `B` output channels, rows of `V`
/// vectors: `B·V` running sums.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn forward_rows<S: Lanes, const V: usize, const B: usize>(
    (g, rows, x, weights, bias, y): ForwardArgs,
) {
    let taps = g.ic * g.kh * g.kw;
    // On the stack: no allocation per image.
    let mut offsets = [0; MAX_TAPS];
    for (t, offset) in offsets[..taps].iter_mut().enumerate() {
        *offset = rows.tap_offset(g, t);
    }
    let offsets = &offsets[..taps];
    let row_len = V * S::L;
    for (block, w_block) in weights.chunks_exact(taps * B).enumerate() {
        let oc0 = block * B;
        for oy in 0..g.oh {
            // SAFETY: the CPU has S's instructions (the caller's contract).
            let mut sums = [[unsafe { S::zero() }; V]; B];
            for (&offset, w) in offsets.iter().zip(w_block.as_chunks::<B>().0) {
                let x_row = &x[offset + oy * rows.width..][..row_len];
                // SAFETY: as above.
                let xv: [S; V] = std::array::from_fn(|v| unsafe { S::load(&x_row[v * S::L..]) });
                for r in 0..B {
                    // SAFETY: as above.
                    let wr = unsafe { S::splat(w[r]) };
                    for v in 0..V {
                        sums[r][v] = wr.mul_add(xv[v], sums[r][v]);
                    }
                }
            }
            // V·L ≤ MAX_WIDTH: the lanes (8 or 16) divide it.
            let mut row = [0.0f32; MAX_WIDTH];
            for r in 0..B {
                for v in 0..V {
                    sums[r][v].store(&mut row[v * S::L..]);
                }
                if oc0 + r < g.oc {
                    let dst = &mut y[((oc0 + r) * g.oh + oy) * g.ow..][..g.ow];
                    let b = bias.map_or(0.0, |b| b[oc0 + r]);
                    for (d, s) in dst.iter_mut().zip(&row) {
                        *d = s + b;
                    }
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

    /// Every kernel variant this CPU can run: the portable one always.
    fn variants() -> Vec<Isa> {
        Isa::available()
    }

    fn geometry(ic: usize, oc: usize, hw: (usize, usize), k: usize, pad: usize) -> ConvGeometry {
        let out = |len: usize| len + 2 * pad + 1 - k;
        ConvGeometry {
            n: 2,
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

    /// Each variant against the reference loops, on the first layers of LeNet-5 and
    /// SmallCNN and on edge cases: rows of 1 and of 32 values, blocks of channels cut
    /// short, padding wider than the kernel, uneven images.
    #[test]
    fn every_variant_matches_the_reference_loops() {
        let cases = [
            geometry(1, 6, (28, 28), 5, 2),
            geometry(3, 32, (32, 32), 3, 1),
            geometry(3, 5, (9, 17), 3, 0),
            geometry(2, 3, (4, 1), 1, 0),
            geometry(1, 13, (6, 30), 3, 2),
            geometry(1, 1, (3, 3), 2, 3),
        ];
        let mut rng = Rng::new(8);
        for g in cases {
            assert!(applies(&g), "{g:?}");
            let mut normal = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal()).collect() };
            let (x, w) = (
                normal(g.n * g.ic * g.h * g.w),
                normal(g.oc * g.ic * g.kh * g.kw),
            );
            let b = normal(g.oc);
            let want = reference::conv2d_forward(&g, &x, &w, Some(&b));
            let (x_per, y_per) = (g.ic * g.h * g.w, g.oc * g.oh * g.ow);
            for isa in variants() {
                let (mut padded, mut weights) = (Vec::new(), Vec::new());
                arrange_weights(&g, isa, &w, &mut weights);
                let mut y = vec![f32::NAN; want.len()];
                for (x_img, y_img) in x.chunks(x_per).zip(y.chunks_mut(y_per)) {
                    forward_image(&g, isa, x_img, &weights, Some(&b), y_img, &mut padded);
                }
                assert_close(&format!("{isa:?} {g:?}"), &y, &want);
            }
        }
    }

    #[test]
    fn the_direct_path_is_for_few_input_channels_stride_one_and_narrow_rows() {
        assert!(applies(&geometry(3, 64, (32, 32), 3, 1)));
        assert!(!applies(&geometry(4, 64, (32, 32), 3, 1)), "36 taps");
        assert!(!applies(&geometry(1, 8, (33, 33), 3, 1)), "rows of 33");
        let strided = ConvGeometry {
            stride: (2, 2),
            oh: 4,
            ow: 4,
            ..geometry(1, 8, (8, 8), 2, 0)
        };
        assert!(!applies(&strided));
    }
}
