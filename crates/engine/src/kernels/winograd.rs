//! Winograd convolution F(2×2, 3×3) for 3×3 convolutions of stride 1 — the convolutions
//! of VGG and ResNet — in the forward pass, for the input gradient and for the weight
//! gradient: each 2×2 block of outputs costs 16 multiplications per pair of channels
//! instead of 36 (Lavin and Gray, *Fast Algorithms for Convolutional Neural Networks*,
//! 2016).
//!
//! **The algorithm.** The output is cut into tiles of 2×2 pixels; tile `(ty, tx)` depends
//! on the 4×4 window `d` of the padded input at `(2ty, 2tx)`. With
//!
//! ```text
//!      ⎡1  0 −1  0⎤        ⎡1   0   0⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢½   ½   ½⎥    Aᵀ = ⎡1  1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢½  −½   ½⎥         ⎣0  1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣0   0   1⎦
//! ```
//!
//! the tile's outputs are `Y[oc] = Aᵀ (Σ_ic U[oc, ic] ⊙ V[ic]) A`, with the filters
//! transformed once, `U = G w Gᵀ` (4×4), and each window once, `V = Bᵀ d B` (4×4): the
//! same sums as the direct convolution's, in another order (exact in exact arithmetic).
//! For each of the 16 positions ξ of a transformed tile the sum over channels is a matrix
//! product, `M_ξ (OC, tiles) = U_ξ (OC, IC) · V_ξ (IC, tiles)`, computed by the direct
//! kernel's register blocks ([`super::direct`]) with the input channels as its taps.
//! The transforms only add and subtract.
//!
//! **Layout.** A chunk of images is transformed at a time, few enough that its `V` and
//! `M` stay in the core's cache. Each channel of each image is first split into 8
//! planes, `plane(a, s, c)[r·TW + tx] = padded[2r + a, 2tx + 2c + s]` (its rows split
//! into even and odd columns in registers, then copied in at both shifts `c`; with
//! AVX-512, rows of up to 32 values padded by one column are shifted in registers too
//! and stored straight into their four planes), so that
//! every tile's window value `d[i, j]` sits at `plane(i % 2, j % 2, j / 2)[f + (i / 2)·TW]`
//! for the tile's flat index `f = ty·TW + tx`: consecutive tiles read consecutive values,
//! and the transforms run on vectors of tiles. The images of a chunk lie side by side in
//! `V` and in the products, TH·TW columns each, so that only the chunk's tiles are counted
//! up to whole vectors (a 14×14 output has 49 tiles, not 64); an image's last vector runs
//! into the next image's tiles, which are transformed after it and overwrite what it
//! wrote there. The values computed past the tiles (and the outputs past OH × OW of odd
//! sizes) are dropped. The output transform gives, per vector of tiles and row parity,
//! the even and the odd output columns, which are interleaved in registers and written
//! straight into y's rows with the [`Epilogue`].
//!
//! The input gradient of a 3×3 convolution of stride 1 is itself one (the forward pass of
//! dy with the kernel turned by 180° and the channels swapped, as in [`super::direct`]),
//! so [`Plan::for_input_gradient`] computes it the same way.
//!
//! **The weight gradient** differentiates the products: `M_ξ = U_ξ · V_ξ` gives
//! `dU_ξ = dM_ξ · V_ξᵀ`, summed over the tiles, with `dM = A dY Aᵀ` (the adjoint of
//! `Y = Aᵀ M A`, dY zero past OH × OW) and at the end `dw = Gᵀ dU G` (the adjoint of
//! `U = G w Gᵀ`). `V` is the forward's; dy is turned into (positions, channels) so that
//! `dM` comes out as (tiles, OC), vectors of channels, and each of the 16 products runs
//! on the direct path's channel-vectorised weight-gradient kernel, the tiles as its
//! positions and the input channels as its taps ([`Plan::add_weight_gradient`]).

use super::direct::{self, forward_block, forward_with, input_gradient_geometry, sized, Sums};
use super::direct::{by_channel, turn_planes, ByChannelArgs};
use super::direct::{Isa, Kind, Lanes, Portable};
use super::{copy_row, copy_short, ConvGeometry, Epilogue};

#[cfg(target_arch = "x86_64")]
use super::direct::simd;

/// The transforms cost in proportion to `IC + OC` per tile, the products to `IC·OC`: the
/// path pays once `IC·OC ≥ CHANNEL_RATIO·(IC + OC)`, i.e. from 32 channels in and 32
/// out, never with 16 on either side (measured: `docs/PERFORMANCE.md`).
const CHANNEL_RATIO: usize = 16;

/// Tiles × (IC + OC) of a chunk at most: its `V` and `M`, 16 values per tile and channel
/// each, then take 1 MiB, about a core's L2 cache (chunks of half that measured the
/// same).
const CHUNK_TILE_CHANNELS: usize = 16384;

/// Positions of a transformed tile.
const XI: usize = 16;

/// Values between the 16 planes of a chunk's `V` and of its products past their own
/// size: one cache line. The transforms read or write all 16 at once, and planes whose
/// distance is a multiple of 4 KiB would all fall on the same sets of the L1 cache,
/// which has fewer ways than 16.
const SKEW: usize = 16;

/// Whether the Winograd path computes this convolution: one it can compute
/// ([`computes`]) with channels enough that it pays (`CHANNEL_RATIO`).
pub fn applies(g: &ConvGeometry) -> bool {
    computes(g) && g.ic * g.oc >= CHANNEL_RATIO * (g.ic + g.oc)
}

/// Whether the Winograd path can compute this convolution: 3×3, and one the direct path
/// takes (stride 1, no dilation, one group, padding under 3).
pub fn computes(g: &ConvGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride == (1, 1) && direct::applies(g)
}

/// How one convolution runs on the Winograd path. Made once per call, shared by every
/// chunk of images.
#[derive(Clone, Debug)]
pub struct Plan {
    g: ConvGeometry,
    isa: Isa,
    /// Output channels and vectors of tiles per block of the products.
    block: (usize, usize),
    /// Tile rows and columns of an image, ⌈OH/2⌉ and ⌈OW/2⌉.
    th: usize,
    tw: usize,
    /// Tiles of an image counted up to whole vectors: what its transforms compute.
    tiles: usize,
    /// Images per chunk.
    images: usize,
    /// Where each input channel's row of a transformed chunk starts: `ic·span`, the
    /// [`Plan::span`] of a whole chunk.
    offsets: Vec<usize>,
    /// How each input row is laid into the split planes.
    copies: Vec<RowCopy>,
}

impl Plan {
    /// The plan of a convolution the path [`computes`], for these instructions.
    pub fn new(g: &ConvGeometry, isa: Isa) -> Plan {
        assert!(
            computes(g),
            "Winograd convolution: {g:?} is not 3×3, stride 1"
        );
        let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        let mut plan = Plan {
            g: *g,
            isa,
            block: (1, 1),
            th,
            tw,
            tiles: (th * tw).next_multiple_of(isa.lanes()),
            images: 1,
            offsets: Vec::new(),
            copies: RowCopy::all(g, tw),
        };
        // The products compute whole vectors of tiles: of the chunk sizes from half the
        // most that fit on, the one with the fewest columns per tile (the largest of
        // equals — a chunk reads all of U).
        let most = (CHUNK_TILE_CHANNELS / ((g.ic + g.oc) * th * tw)).clamp(1, g.n.max(1));
        let images = (most.div_ceil(2)..=most)
            .rev()
            .min_by(|&a, &b| (plan.columns(a) * b).cmp(&(plan.columns(b) * a)))
            .unwrap_or(1);
        plan.images = images;
        plan.block = forward_block(isa, g.oc, plan.columns(images) / isa.lanes());
        let span = plan.span(images);
        plan.offsets = (0..g.ic).map(|c| c * span).collect();
        plan
    }

    /// The plan of the input gradient of `g` (which the path [`computes`]): the convolution of dy
    /// padded by `2 − pad` with the flipped kernel, output channels in, input channels out.
    pub fn for_input_gradient(g: &ConvGeometry, isa: Isa) -> Plan {
        Plan::new(&input_gradient_geometry(g), isa)
    }

    /// Values of one input image and of one output image, (IC·H·W, OC·OH·OW).
    pub fn image_lengths(&self) -> (usize, usize) {
        let g = &self.g;
        (g.ic * g.h * g.w, g.oc * g.oh * g.ow)
    }

    /// Images per chunk: [`Plan::forward_images`] takes at most this many.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Tiles of an image, TH·TW: image `img`'s tiles are columns `img·TH·TW` on of a
    /// chunk's `V` and products, with no gap between images.
    fn real(&self) -> usize {
        self.th * self.tw
    }

    /// The columns the products of `n` images compute: their tiles counted up to whole
    /// vectors.
    fn columns(&self, n: usize) -> usize {
        (n * self.real()).next_multiple_of(self.isa.lanes())
    }

    /// The columns the transforms of `n` images touch — each image's vectors end past its
    /// tiles, in the next image's (which are written after them) or past the last — or
    /// that the products read, if more.
    fn span(&self, n: usize) -> usize {
        ((n - 1) * self.real() + self.tiles).max(self.columns(n))
    }

    /// Values of one split plane: `TH + 1` rows of `TW` and what the last vectors read
    /// past them.
    fn plane(&self) -> usize {
        self.tiles + self.tw
    }

    /// Values of each of the 16 planes of a chunk's `V`, (IC, span) and the skew.
    fn v_plane(&self) -> usize {
        self.g.ic * self.span(self.images) + SKEW
    }

    /// w (OC, IC, 3, 3) → the transformed filters `U_ξ = (G w Gᵀ)[ξ]`, arranged for the
    /// products: (16, ⌈OC/B⌉, IC, B), zero for the channels past OC.
    pub fn transform_weights(&self, w: &[f32], out: &mut Vec<f32>) {
        let (oc, ic) = (self.g.oc, self.g.ic);
        assert_eq!(w.len(), oc * ic * 9, "Winograd convolution: weights");
        self.transform(|o, c, tap| w[(o * ic + c) * 9 + tap], out);
    }

    /// For the plan of [`Plan::for_input_gradient`]: the original weights w (OC, IC, 3, 3)
    /// turned into this plan's (IC, OC, 3, 3) by `w'[ic, oc, i, j] = w[oc, ic, 2−i, 2−j]`,
    /// then transformed as [`Plan::transform_weights`] does.
    pub fn transform_flipped_weights(&self, w: &[f32], out: &mut Vec<f32>) {
        // This plan's channels are the original's swapped: it has g.ic = the original OC.
        let (oc, ic) = (self.g.ic, self.g.oc);
        assert_eq!(w.len(), oc * ic * 9, "Winograd convolution: weights");
        self.transform(|c, o, tap| w[(o * ic + c) * 9 + 8 - tap], out);
    }

    /// out (16, ⌈OC/B⌉, IC, B) from `weight(oc, ic, tap)`, the tap `3i + j`.
    fn transform(&self, weight: impl Fn(usize, usize, usize) -> f32, out: &mut Vec<f32>) {
        let (oc, ic, b) = (self.g.oc, self.g.ic, self.block.0);
        let per_xi = oc.div_ceil(b) * ic * b;
        out.clear();
        out.resize(XI * per_xi, 0.0);
        // G's rows applied to three values.
        let g_rows = |v: [f32; 3]| {
            [
                v[0],
                0.5 * (v[0] + v[1] + v[2]),
                0.5 * (v[0] - v[1] + v[2]),
                v[2],
            ]
        };
        for o in 0..oc {
            for c in 0..ic {
                // G w: the rows combined, column by column.
                let cols: [[f32; 4]; 3] = std::array::from_fn(|j| {
                    g_rows(std::array::from_fn(|i| weight(o, c, 3 * i + j)))
                });
                let rows: [[f32; 3]; 4] = std::array::from_fn(|r| cols.map(|col| col[r]));
                for (r, &row) in rows.iter().enumerate() {
                    // (G w) Gᵀ: row r's three values combined.
                    let u = g_rows(row);
                    for (col, &v) in u.iter().enumerate() {
                        let xi = 4 * r + col;
                        out[xi * per_xi + ((o / b) * ic + c) * b + o % b] = v;
                    }
                }
            }
        }
    }

    /// A chunk of at most [`Plan::images`] images: x (n, IC, H, W) → y (n, OC, OH, OW)
    /// (overwritten), with filters from [`Plan::transform_weights`] (or
    /// [`Plan::transform_flipped_weights`] for an input gradient, x being dy), the
    /// epilogue applied to each output.
    pub fn forward_images(
        &self,
        x: &[f32],
        u: &[f32],
        epilogue: Epilogue,
        y: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let g = &self.g;
        let (x_per, y_per) = self.image_lengths();
        let n = x.len() / x_per;
        assert!(
            n >= 1 && n <= self.images && x.len() == n * x_per,
            "Winograd convolution: x"
        );
        assert_eq!(y.len(), n * y_per, "Winograd convolution: y");
        if let Some(bias) = epilogue.bias {
            assert_eq!(bias.len(), g.oc, "Winograd convolution: bias");
        }
        let (b, v) = self.block;
        let lanes = self.isa.lanes();
        let vectors = self.columns(n) / lanes;
        scratch.starts.clear();
        let starts = (0..vectors.next_multiple_of(v)).map(|k| k.min(vectors - 1) * lanes);
        scratch.starts.extend(starts);
        let row = scratch.starts.len() * lanes;
        let products = g.oc.div_ceil(b) * b * row + SKEW;
        assert_eq!(
            u.len(),
            XI * g.oc.div_ceil(b) * g.ic * b,
            "Winograd convolution: filters"
        );
        self.transform_chunk_inputs(x, n, scratch);
        let args = ChunkArgs {
            plan: self,
            epilogue,
            y,
            u,
            v: &scratch.v,
            m: sized(&mut scratch.m, XI * products),
            row,
            starts: &scratch.starts,
        };
        match self.isa.0 {
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { chunk_avx512(args) },
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { chunk_avx2(args) },
            // SAFETY: the portable vectors need no particular instructions.
            _ => unsafe { chunk_with::<Portable>(args) },
        }
    }
}

impl Plan {
    /// `V = Bᵀ d B` of every tile of a chunk of `n` images x (n, IC, H, W), into
    /// `scratch.v`: the split and the input transform, shared by the forward pass and the
    /// weight gradient.
    fn transform_chunk_inputs(&self, x: &[f32], n: usize, scratch: &mut Scratch) {
        let g = &self.g;
        let layout = (*g, n, self.tiles);
        let fresh = scratch.planes_layout.replace(layout) != Some(layout);
        let args = InputArgs {
            plan: self,
            n,
            x,
            fresh,
            planes: sized(&mut scratch.planes, g.ic * n * 8 * self.plane()),
            parity: sized(&mut scratch.parity, g.h * g.w),
            v: sized(&mut scratch.v, XI * self.v_plane()),
        };
        match self.isa.0 {
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { inputs_avx512(args) },
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { inputs_avx2(args) },
            // SAFETY: the portable vectors need no particular instructions.
            _ => unsafe { inputs_with::<Portable>(args) },
        }
    }

    /// Whether [`Plan::add_weight_gradient`] computes this convolution's weight gradient:
    /// output channels fill whole vectors.
    pub fn weight_gradient_applies(&self) -> bool {
        self.g.oc.is_multiple_of(self.isa.lanes())
    }

    /// Values of the transformed weight gradient, (16, IC, OC).
    pub fn weight_gradient_len(&self) -> usize {
        XI * self.g.ic * self.g.oc
    }

    /// The weight gradient of a chunk of at most [`Plan::images`] images, transformed,
    /// added into du_t (16, IC, OC): `dU_ξᵀ[ic, oc] += Σ_tiles V_ξ[ic, tile] · dM_ξ[tile,
    /// oc]`, with `V = Bᵀ d B` as in the forward pass and `dM = A dY Aᵀ` (dY the tile's
    /// 2×2 outputs' gradients, zero past OH × OW) — the forward's products
    /// `M_ξ = U_ξ · V_ξ` differentiated. [`Plan::add_weight_gradient_to`] turns the sums
    /// into dweight. For [`Plan::weight_gradient_applies`].
    pub fn add_weight_gradient(
        &self,
        x: &[f32],
        dy: &[f32],
        du_t: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let g = &self.g;
        let (x_per, y_per) = self.image_lengths();
        let n = x.len() / x_per;
        assert!(
            n >= 1 && n <= self.images && x.len() == n * x_per,
            "Winograd weight gradient: x"
        );
        assert_eq!(dy.len(), n * y_per, "Winograd weight gradient: dy");
        assert_eq!(
            du_t.len(),
            self.weight_gradient_len(),
            "Winograd weight gradient: dU"
        );
        assert!(self.weight_gradient_applies(), "whole vectors of channels");
        self.transform_chunk_inputs(x, n, scratch);
        let tiles = n * self.real();
        let dm_plane = tiles * g.oc + SKEW;
        let args = OutputGradientArgs {
            plan: self,
            n,
            dy,
            dy_t: sized(&mut scratch.dy_t, g.oh * g.ow * g.oc),
            dm: sized(&mut scratch.dm, XI * dm_plane),
        };
        match self.isa.0 {
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { output_gradients_avx512(args) },
            // SAFETY: an `Isa` is made only by asking the CPU, so it has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { output_gradients_avx2(args) },
            // SAFETY: the portable vectors need no particular instructions.
            _ => unsafe { transform_output_gradients::<Portable>(args) },
        }
        // The 16 products by the direct path's channel-vectorised weight-gradient kernel:
        // tiles for positions, input channels for taps.
        let (v_plane, per_xi) = (self.v_plane(), g.ic * g.oc);
        for xi in 0..XI {
            let args = ByChannelArgs {
                offsets: &self.offsets,
                x: &scratch.v[xi * v_plane..][..v_plane - SKEW],
                dy_t: &scratch.dm[xi * dm_plane..][..tiles * g.oc],
                oc: g.oc,
                rows: (1, tiles, tiles),
                dw_t: &mut du_t[xi * per_xi..][..per_xi],
            };
            by_channel(self.isa, args);
        }
    }

    /// The sums of [`Plan::add_weight_gradient`], du_t (16, IC, OC), turned back and added
    /// into dw (OC, IC, 3, 3): `dw += Gᵀ dU G`.
    pub fn add_weight_gradient_to(&self, du_t: &[f32], dw: &mut [f32]) {
        let (oc, ic) = (self.g.oc, self.g.ic);
        assert_eq!(
            du_t.len(),
            self.weight_gradient_len(),
            "Winograd weight gradient: dU"
        );
        assert_eq!(dw.len(), oc * ic * 9, "Winograd weight gradient: dw");
        // Gᵀ applied to four values.
        let g_transposed = |u: [f32; 4]| {
            [
                u[0] + 0.5 * (u[1] + u[2]),
                0.5 * (u[1] - u[2]),
                0.5 * (u[1] + u[2]) + u[3],
            ]
        };
        for o in 0..oc {
            for c in 0..ic {
                let u: [[f32; 4]; 4] = std::array::from_fn(|r| {
                    std::array::from_fn(|col| du_t[((4 * r + col) * ic + c) * oc + o])
                });
                // dU G: each row's four values combined; then Gᵀ (dU G): the rows.
                let rows = u.map(g_transposed);
                let filter = &mut dw[(o * ic + c) * 9..][..9];
                for j in 0..3 {
                    let column = g_transposed(rows.map(|row| row[j]));
                    for (i, d) in column.iter().enumerate() {
                        filter[3 * i + j] += d;
                    }
                }
            }
        }
    }
}

/// The operands of the input transform of one chunk of `n` images.
struct InputArgs<'a> {
    plan: &'a Plan,
    n: usize,
    x: &'a [f32],
    /// Whether `planes` was last split for another convolution or chunk size.
    fresh: bool,
    planes: &'a mut [f32],
    parity: &'a mut [f32],
    v: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn inputs_avx512(a: InputArgs) {
    if !splits_in_registers(a.plan) {
        // SAFETY: this function runs only on a CPU with AVX-512F (it is compiled for it
        // and reached through `Isa`).
        return unsafe { inputs_with::<simd::Avx512>(a) };
    }
    // SAFETY (both steps): as above.
    unsafe { split_rows_avx512(a.plan, a.x, a.n, a.fresh, a.planes) };
    // SAFETY: as above.
    unsafe { transform_inputs::<simd::Avx512>(a.plan, a.n, a.planes, a.v) };
}

/// Whether [`split_rows_avx512`] splits this plan's inputs: one column of padding on the
/// left, rows of at most 32 values, an even number of them, and as many tile columns as
/// pairs of them — the 3×3 convolutions of padding 1 on images up to 32 wide.
fn splits_in_registers(p: &Plan) -> bool {
    let w = p.g.w;
    p.g.pad.2 == 1 && w.is_multiple_of(2) && w <= 32 && p.tw == w / 2
}

/// [`split`] with AVX-512, for a plan that [`splits_in_registers`]: each input row is
/// split into its even and odd columns in registers, and each of the four planes of its
/// row parity gets one of them, shifted by a column where it holds padding:
/// `plane(a, s, c)[r·TW + tx]` is padded column `2tx + 2c + s`, input column `2tx + 2c +
/// s − 1`, so shift 0 gets the odd columns moved one to the right after the padding's
/// zero at column 0 (s = 0) and the even ones (s = 1), shift 1 the odd ones (s = 0) and the
/// even ones moved one to the left, the padding's zero last (s = 1). The rows write every
/// column of the plane rows the row copies do; the zeros around them as in [`split`].
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_rows_avx512(p: &Plan, x: &[f32], n: usize, fresh: bool, planes: &mut [f32]) {
    use std::arch::x86_64::*;
    let g = &p.g;
    let (tw, plane, pt) = (p.tw, p.plane(), g.pad.0);
    assert!(splits_in_registers(p), "split in registers: {g:?}");
    assert_eq!(planes.len(), g.ic * n * 8 * plane, "split planes");
    // The last input row, y = H − 1, lands on plane row (H − 1 + PT) / 2, whose TW values
    // end inside the plane: `((H − 1 + PT)/2 + 1)·TW ≤ (TH + 1)·TW ≤ plane`.
    assert!(((g.h - 1 + pt) / 2 + 1) * tw <= plane, "split rows");
    assert_eq!(x.len(), n * g.ic * g.h * g.w, "split input");
    if fresh {
        planes.fill(0.0);
    }
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let right = _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
    let left = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0);
    let mask = |k: usize| -> __mmask16 { ((1u32 << k.min(16)) - 1) as __mmask16 };
    let (low, high, row) = (mask(g.w), mask(g.w.saturating_sub(16)), mask(tw));
    let (after_first, before_last) = (row & !1, mask(tw - 1));
    for (i, image_planes) in planes.chunks_exact_mut(8 * plane).enumerate() {
        let (c, img) = (i / n, i % n);
        let channel = &x[(img * g.ic + c) * g.h * g.w..][..g.h * g.w];
        let to = image_planes.as_mut_ptr();
        for (y, values) in channel.chunks_exact(g.w).enumerate() {
            let (a, r) = ((y + pt) % 2, (y + pt) / 2);
            // SAFETY: the masks cover the row's W values (masked-off lanes are not read);
            // each store covers TW values of plane row r of plane 4a + k, inside the
            // image's planes (asserted above); the CPU has AVX-512F.
            unsafe {
                let v0 = _mm512_maskz_loadu_ps(low, values.as_ptr());
                let v1 = _mm512_maskz_loadu_ps(high, values.as_ptr().add(16));
                let (e, o) = (
                    _mm512_permutex2var_ps(v0, even, v1),
                    _mm512_permutex2var_ps(v0, odd, v1),
                );
                let rows = [
                    _mm512_maskz_permutexvar_ps(after_first, right, o),
                    o,
                    e,
                    _mm512_maskz_permutexvar_ps(before_last, left, e),
                ];
                for (k, v) in rows.into_iter().enumerate() {
                    _mm512_mask_storeu_ps(to.add((4 * a + k) * plane + r * tw), row, v);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn inputs_avx2(args: InputArgs) {
    // SAFETY: this function runs only on a CPU with AVX2 and FMA (it is compiled for them
    // and reached through `Isa`).
    unsafe { inputs_with::<simd::Avx2>(args) }
}

/// The split and the input transform of one chunk, compiled for the instruction set.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn inputs_with<S: Lanes>(a: InputArgs) {
    // SAFETY (both steps): the caller's contract, passed on.
    unsafe { split::<S>(a.plan, a.x, a.n, a.fresh, a.planes, a.parity) };
    // SAFETY: as above.
    unsafe { transform_inputs::<S>(a.plan, a.n, a.planes, a.v) };
}

/// The operands of the output gradients' transform of one chunk of `n` images.
struct OutputGradientArgs<'a> {
    plan: &'a Plan,
    n: usize,
    dy: &'a [f32],
    dy_t: &'a mut [f32],
    dm: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn output_gradients_avx512(args: OutputGradientArgs) {
    // SAFETY: this function runs only on a CPU with AVX-512F (it is compiled for it and
    // reached through `Isa`).
    unsafe { transform_output_gradients::<simd::Avx512>(args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn output_gradients_avx2(args: OutputGradientArgs) {
    // SAFETY: this function runs only on a CPU with AVX2 and FMA (it is compiled for them
    // and reached through `Isa`).
    unsafe { transform_output_gradients::<simd::Avx2>(args) }
}

/// `dM = A dY Aᵀ` of every tile of `n` images, dy (n, OC, OH, OW) → dm (16 planes of
/// (columns, OC), `SKEW` apart): each image's dy is turned into (OH·OW, OC) first, so
/// that the transform runs on vectors of channels; tiles past the last are zero.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn transform_output_gradients<S: Lanes>(a: OutputGradientArgs) {
    let OutputGradientArgs {
        plan: p,
        n,
        dy,
        dy_t,
        dm,
    } = a;
    let g = &p.g;
    let (oh, ow, oc) = (g.oh, g.ow, g.oc);
    let dm_plane = dm.len() / XI;
    // SAFETY: the CPU has S's instructions (the caller's contract).
    let zero = unsafe { S::zero() };
    assert!(
        oc.is_multiple_of(S::L) && n * p.real() * oc <= dm_plane,
        "transformed gradients"
    );
    for (img, dy_img) in dy.chunks_exact(oc * oh * ow).take(n).enumerate() {
        turn_planes(dy_img, oh * ow, dy_t);
        for t in 0..p.real() {
            let at = (img * p.real() + t) * oc;
            let (ty, tx) = (t / p.tw, t % p.tw);
            for k in (0..oc).step_by(S::L) {
                let value = |a: usize, b: usize| {
                    let (y, x) = (2 * ty + a, 2 * tx + b);
                    if y < oh && x < ow {
                        // SAFETY: `(y·OW + x)·OC + k + L ≤ OH·OW·OC = dy_t.len()`; the CPU
                        // has S's instructions (the caller's contract).
                        unsafe { S::load_ptr(dy_t.as_ptr().add((y * ow + x) * oc + k)) }
                    } else {
                        zero
                    }
                };
                // A dY: the two rows combined, column by column; then (A dY) Aᵀ.
                let d = [[value(0, 0), value(0, 1)], [value(1, 0), value(1, 1)]];
                let cols: [[S; 4]; 2] =
                    std::array::from_fn(|b| a_applied([d[0][b], d[1][b]], zero));
                for r in 0..4 {
                    let row = a_applied([cols[0][r], cols[1][r]], zero);
                    for (c, value) in row.iter().enumerate() {
                        value.store(&mut dm[(4 * r + c) * dm_plane + at + k..]);
                    }
                }
            }
        }
    }
}

/// A applied to two values: `(d0, d0 + d1, d0 − d1, −d1)`, given a vector of zeros.
#[inline(always)]
fn a_applied<S: Lanes>(d: [S; 2], zero: S) -> [S; 4] {
    [d[0], d[0].add(d[1]), d[0].sub(d[1]), zero.sub(d[1])]
}

/// A thread's buffers for the Winograd path, reused from chunk to chunk.
#[derive(Default)]
pub struct Scratch {
    /// The split input planes, (IC, n, 8, plane).
    planes: Vec<f32>,
    /// The convolution, images and tiles per image `planes` was last split for: the zeros
    /// around the images are still in place when the next chunk has the same.
    planes_layout: Option<(ConvGeometry, usize, usize)>,
    /// An image channel split by the parity of its columns.
    parity: Vec<f32>,
    /// Transformed tiles, 16 planes of (IC, span), `SKEW` apart.
    v: Vec<f32>,
    /// Products, 16 planes of (⌈OC/B⌉·B, row), `SKEW` apart.
    m: Vec<f32>,
    /// Where each vector of the products starts.
    starts: Vec<usize>,
    /// One image's dy turned, (OH·OW, OC), for the weight gradient.
    dy_t: Vec<f32>,
    /// The transformed output gradients, 16 planes of (columns, OC), `SKEW` apart.
    dm: Vec<f32>,
}

/// The operands of one chunk's products and output transform, its tiles transformed.
struct ChunkArgs<'a> {
    plan: &'a Plan,
    epilogue: Epilogue<'a>,
    y: &'a mut [f32],
    u: &'a [f32],
    v: &'a [f32],
    m: &'a mut [f32],
    row: usize,
    starts: &'a [usize],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chunk_avx512(args: ChunkArgs) {
    // SAFETY: this function runs only on a CPU with AVX-512F (it is compiled for it and
    // reached through `Isa`).
    unsafe { chunk_with::<simd::Avx512>(args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chunk_avx2(args: ChunkArgs) {
    // SAFETY: this function runs only on a CPU with AVX2 and FMA (it is compiled for them
    // and reached through `Isa`).
    unsafe { chunk_with::<simd::Avx2>(args) }
}

/// One chunk whose tiles are transformed: the 16 products and the output transform into
/// y, compiled for the instruction set.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn chunk_with<S: Lanes>(a: ChunkArgs) {
    let p = a.plan;
    let ic = p.g.ic;
    let (span, v_plane) = (p.span(p.images), p.v_plane());
    let products = a.m.len() / XI;
    let u_len = a.u.len() / XI;
    for xi in 0..XI {
        let args = (
            &p.offsets[..],
            a.starts,
            &a.v[xi * v_plane..][..ic * span],
            &a.u[xi * u_len..][..u_len],
            Sums::Rows(&mut a.m[xi * products..][..products - SKEW]),
        );
        // SAFETY: the caller's contract, passed on.
        unsafe { forward_with::<S>(p.block, args) };
    }
    // SAFETY: as above.
    unsafe { transform_outputs::<S>(p, a.m, a.row, a.epilogue, a.y) };
}

/// x (n, IC, H, W) → the 8 planes of every channel of every image, (IC, n, 8, plane):
/// plane `4a + 2s + c` holds `padded[2r + a, 2(tx + c) + s]` at `r·TW + tx`, zero around
/// the image. Each channel is first split into its even and its odd columns
/// ([`split_columns`]); each row of those is then copied into the planes of its parities
/// at both shifts, by the plan's [`RowCopy`]s. The copies write the same places in every
/// chunk of the same size, so the zeros around them are written only when `fresh`.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn split<S: Lanes>(
    p: &Plan,
    x: &[f32],
    n: usize,
    fresh: bool,
    planes: &mut [f32],
    parity: &mut [f32],
) {
    let g = &p.g;
    let pt = g.pad.0;
    let (tw, plane) = (p.tw, p.plane());
    // Values per row in the even and the odd input columns.
    let (ew, odw) = (g.w.div_ceil(2), g.w / 2);
    let (evens, odds) = parity[..g.h * g.w].split_at_mut(g.h * ew);
    if fresh {
        planes.fill(0.0);
    }
    for (i, image_planes) in planes.chunks_exact_mut(8 * plane).enumerate() {
        let (c, img) = (i / n, i % n);
        let channel = &x[(img * g.ic + c) * g.h * g.w..][..g.h * g.w];
        // SAFETY: the caller's contract, passed on.
        unsafe { split_columns::<S>(channel, g.w, evens, odds) };
        for copy in &p.copies {
            let (values, width) = match copy.odd {
                false => (&*evens, ew),
                true => (&*odds, odw),
            };
            // Input row y is padded row R = y + PT: plane parity a = R % 2, row r = R / 2;
            // the rows of one parity, two input rows apart, go to consecutive plane rows.
            for first in 0..2.min(g.h) {
                let (a, r) = ((first + pt) % 2, (first + pt) / 2);
                let to = (4 * a + copy.plane) * plane + r * tw + copy.lo;
                let from = first * width + copy.from;
                let rows = (g.h - first).div_ceil(2);
                assert!(
                    to + (rows - 1) * tw + copy.len <= image_planes.len()
                        && from + (rows - 1) * 2 * width + copy.len <= values.len(),
                    "split rows"
                );
                for k in 0..rows {
                    // SAFETY: the last row's copy ends inside both (asserted above).
                    unsafe {
                        copy_short(
                            image_planes.as_mut_ptr().add(to + k * tw),
                            values.as_ptr().add(from + k * 2 * width),
                            copy.len,
                        )
                    };
                }
            }
        }
    }
}

/// One of the copies that lay a row of an input channel's even or odd columns into the
/// split planes of its row parity: plane `2s + c` of the four, columns `lo..lo + len`,
/// from value `from` of the row on. The same for every row of every channel.
#[derive(Clone, Copy, Debug)]
struct RowCopy {
    plane: usize,
    odd: bool,
    lo: usize,
    len: usize,
    from: usize,
}

impl RowCopy {
    /// The copies for convolution `g` with TW tile columns: input column x lands at padded
    /// column x + PL, of parity s = (x + PL) % 2 and plane column (x + PL) / 2 − c at
    /// shift c.
    fn all(g: &ConvGeometry, tw: usize) -> Vec<RowCopy> {
        let pl = g.pad.2;
        let classes = [
            (pl % 2, pl / 2, false, g.w.div_ceil(2)),
            ((pl + 1) % 2, pl.div_ceil(2), true, g.w / 2),
        ];
        let mut copies = Vec::new();
        for (s, first, odd, values) in classes {
            for shift in 0..2 {
                // Plane column tx holds padded column k = tx + shift.
                let lo = first.max(shift) - shift;
                let hi = (first + values).saturating_sub(shift).min(tw);
                if lo < hi {
                    copies.push(RowCopy {
                        plane: 2 * s + shift,
                        odd,
                        lo,
                        len: hi - lo,
                        from: lo + shift - first,
                    });
                }
            }
        }
        copies
    }
}

/// channel (H, W) → its even columns, evens (H, ⌈W/2⌉), and its odd ones, odds (H,
/// ⌊W/2⌋); in one pass over the channel when W is even.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn split_columns<S: Lanes>(channel: &[f32], w: usize, evens: &mut [f32], odds: &mut [f32]) {
    if !w.is_multiple_of(2) {
        let (ew, odw) = (w.div_ceil(2), w / 2);
        for (y, row) in channel.chunks_exact(w).enumerate() {
            for (x, &v) in row.iter().enumerate() {
                match x % 2 {
                    0 => evens[y * ew + x / 2] = v,
                    _ => odds[y * odw + x / 2] = v,
                }
            }
        }
        return;
    }
    let len = evens.len();
    assert!(channel.len() == 2 * len && odds.len() == len, "pairs");
    let whole = len - len % S::L;
    for k in (0..whole).step_by(S::L) {
        // SAFETY: `2k + 2L ≤ 2·whole ≤ channel.len()`; the CPU has S's instructions.
        let (a, b) = unsafe {
            let at = channel.as_ptr().add(2 * k);
            (S::load_ptr(at), S::load_ptr(at.add(S::L)))
        };
        let (e, o) = S::deinterleave(a, b);
        e.store(&mut evens[k..]);
        o.store(&mut odds[k..]);
    }
    for k in whole..len {
        evens[k] = channel[2 * k];
        odds[k] = channel[2 * k + 1];
    }
}

/// `V = Bᵀ d B` of every tile of `n` images: planes (IC, n, 8, plane) → v (16 planes of
/// (IC, span)), image `img`'s tiles from `img·TH·TW` on. Tile `f`'s window value
/// `d[i, j]` is `plane(4·(i % 2) + 2·(j % 2) + j / 2)[f + (i / 2)·TW]`.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn transform_inputs<S: Lanes>(p: &Plan, n: usize, planes: &[f32], v: &mut [f32]) {
    let (ic, tw, plane) = (p.g.ic, p.tw, p.plane());
    let (span, v_plane) = (p.span(p.images), p.v_plane());
    assert_eq!(planes.len(), ic * n * 8 * plane, "split planes");
    assert_eq!(v.len(), XI * v_plane, "transformed tiles");
    assert!(
        p.tiles.is_multiple_of(S::L) && p.tiles + tw <= plane,
        "planes too short"
    );
    // Where window value d[i, j] sits in an image's planes, and where V's position ξ
    // starts.
    let reads: [[usize; 4]; 4] = std::array::from_fn(|i| {
        std::array::from_fn(|j| (4 * (i % 2) + 2 * (j % 2) + j / 2) * plane + (i / 2) * tw)
    });
    let writes: [usize; XI] = std::array::from_fn(|xi| xi * v_plane);
    // The last image's last vector ends at `(ic − 1)·span + (n − 1)·real + tiles ≤ ic·span`
    // in each position's plane of V.
    assert!(
        ic * span <= v_plane && (n - 1) * p.real() + p.tiles <= span,
        "V's planes"
    );
    for c in 0..ic {
        for img in 0..n {
            let base = (c * n + img) * 8 * plane;
            for f in (0..p.tiles).step_by(S::L) {
                // SAFETY: the CPU has S's instructions (the caller's contract).
                let mut d = [[unsafe { S::zero() }; 4]; 4];
                for (row, reads) in d.iter_mut().zip(&reads) {
                    for (value, &at) in row.iter_mut().zip(reads) {
                        // SAFETY: `f + L ≤ tiles` and `tiles + TW ≤ plane`: inside this
                        // image's plane (asserted above); the CPU has S's instructions.
                        *value = unsafe { S::load_ptr(planes.as_ptr().add(base + at + f)) };
                    }
                }
                // Bᵀ d: rows combined, column by column; then (Bᵀ d) B: columns combined.
                let mut t = d;
                for (j, t) in t.iter_mut().enumerate() {
                    *t = b_transposed([d[0][j], d[1][j], d[2][j], d[3][j]]);
                }
                // Past the image's tiles: the next image's, written after these.
                let at = c * span + img * p.real() + f;
                for r in 0..4 {
                    let out = b_transposed([t[0][r], t[1][r], t[2][r], t[3][r]]);
                    for (col, value) in out.into_iter().enumerate() {
                        // SAFETY: `at + L ≤ ic·span ≤ v_plane` (asserted above): inside
                        // position 4r + col's plane of V.
                        unsafe { value.store_ptr(v.as_mut_ptr().add(writes[4 * r + col] + at)) };
                    }
                }
            }
        }
    }
}

/// Bᵀ applied to four values: `(d0 − d2, d1 + d2, d2 − d1, d1 − d3)`.
#[inline(always)]
fn b_transposed<S: Lanes>(d: [S; 4]) -> [S; 4] {
    [
        d[0].sub(d[2]),
        d[1].add(d[2]),
        d[2].sub(d[1]),
        d[1].sub(d[3]),
    ]
}

/// Aᵀ applied to four values: `(m0 + m1 + m2, m1 − m2 − m3)`.
#[inline(always)]
fn a_transposed<S: Lanes>(m: [S; 4]) -> [S; 2] {
    [m[0].add(m[1]).add(m[2]), m[1].sub(m[2]).sub(m[3])]
}

/// `Y = Aᵀ M A` of every tile, the epilogue applied, written into y (n, OC, OH, OW): products
/// m (16 planes of (⌈OC/B⌉·B, row)). A vector's two output columns of each row parity
/// are interleaved in registers into the `2L` outputs of its tiles, which lie side by
/// side in an output row for tiles of one tile row; the tiles past the last and the
/// outputs past OH and OW are dropped.
///
/// # Safety
/// The CPU has the instruction set of `S`.
#[inline(always)]
unsafe fn transform_outputs<S: Lanes>(
    p: &Plan,
    m: &[f32],
    row: usize,
    epilogue: Epilogue,
    y: &mut [f32],
) {
    let g = &p.g;
    let (tw, real) = (p.tw, p.th * p.tw);
    let products = m.len() / XI;
    let planes = y.len() / (g.oh * g.ow);
    // The last image's vectors read up to `span − columns < L ≤ SKEW` values past the
    // columns computed (`tiles − TH·TW` at most): past the last row of a product, into
    // its skew.
    assert!(
        g.oc * row + SKEW <= products && p.span(planes / g.oc) <= row + SKEW,
        "products"
    );
    assert_eq!(planes % g.oc, 0, "whole images");
    for (i, plane) in y.chunks_exact_mut(g.oh * g.ow).enumerate() {
        let (img, o) = (i / g.oc, i % g.oc);
        // SAFETY: the CPU has S's instructions (the caller's contract).
        let b = unsafe { S::splat(epilogue.bias(o)) };
        for f in (0..p.tiles).step_by(S::L) {
            let at = o * row + img * p.real() + f;
            // SAFETY: `at + L ≤ o·row + span ≤ oc·row + SKEW ≤ products` (asserted
            // above, `tiles` whole vectors): inside product ξ; the CPU has S's
            // instructions.
            let mv: [[S; 4]; 4] = std::array::from_fn(|r| {
                std::array::from_fn(|c| unsafe {
                    S::load_ptr(m.as_ptr().add((4 * r + c) * products + at))
                })
            });
            // Aᵀ M: rows combined, column by column; then (Aᵀ M) A.
            let t: [[S; 2]; 4] = std::array::from_fn(|c| a_transposed(mv.map(|row| row[c])));
            let rows: [[S; 4]; 2] = std::array::from_fn(|a| t.map(|col| col[a]));
            for (a, &row) in rows.iter().enumerate() {
                let [even, odd] = a_transposed(row);
                let (low, high) = S::interleave(even.add(b), odd.add(b));
                let mut pairs = [0.0; 32];
                low.store(&mut pairs);
                high.store(&mut pairs[S::L..]);
                if epilogue.relu {
                    for v in &mut pairs {
                        *v = epilogue.finish(*v);
                    }
                }
                // Runs of tiles in one tile row: their outputs side by side in row
                // 2ty + a, from column 2tx on.
                let mut tile = f;
                while tile < (f + S::L).min(real) {
                    let (ty, tx) = (tile / tw, tile % tw);
                    let run = (tw - tx).min(f + S::L - tile);
                    let oy = 2 * ty + a;
                    if oy < g.oh {
                        let x0 = 2 * tx;
                        let x1 = (2 * (tx + run)).min(g.ow);
                        let from = 2 * (tile - f);
                        copy_row(
                            &mut plane[oy * g.ow + x0..][..x1 - x0],
                            &pairs[from..][..x1 - x0],
                        );
                    }
                    tile += run;
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

    fn geometry(
        n: usize,
        ic: usize,
        oc: usize,
        hw: (usize, usize),
        pad: (usize, usize, usize, usize),
    ) -> ConvGeometry {
        ConvGeometry {
            n,
            ic,
            h: hw.0,
            w: hw.1,
            oc,
            kh: 3,
            kw: 3,
            stride: (1, 1),
            pad,
            dilation: (1, 1),
            groups: 1,
            oh: hw.0 + pad.0 + pad.1 - 2,
            ow: hw.1 + pad.2 + pad.3 - 2,
        }
    }

    /// ResNet's three stages, odd sizes (outputs past the last dropped), no padding,
    /// the largest padding, asymmetric padding, channels not a multiple of any block,
    /// 1×1 outputs, chunks of several images.
    fn cases() -> Vec<ConvGeometry> {
        vec![
            geometry(2, 16, 16, (32, 32), (1, 1, 1, 1)),
            geometry(5, 32, 32, (16, 16), (1, 1, 1, 1)),
            geometry(9, 64, 64, (8, 8), (1, 1, 1, 1)),
            geometry(3, 9, 13, (7, 11), (1, 1, 1, 1)),
            geometry(3, 8, 8, (5, 6), (0, 0, 0, 0)),
            geometry(3, 11, 8, (4, 5), (2, 2, 2, 2)),
            geometry(4, 10, 17, (9, 6), (0, 2, 1, 0)),
            geometry(2, 8, 9, (3, 3), (0, 0, 0, 0)),
            geometry(7, 12, 8, (14, 14), (1, 1, 1, 1)),
        ]
    }

    /// Every chunk of `plan` over the batch, in a scratch that other convolutions used
    /// before.
    fn run(
        plan: &Plan,
        (x, u): (&[f32], &[f32]),
        epilogue: Epilogue,
        y: &mut [f32],
        (x_per, y_per): (usize, usize),
        scratch: &mut Scratch,
    ) {
        let images = plan.images();
        for (xs, ys) in x.chunks(images * x_per).zip(y.chunks_mut(images * y_per)) {
            plan.forward_images(xs, u, epilogue, ys, scratch);
        }
    }

    #[test]
    fn forward_and_input_gradient_agree_with_the_reference_on_every_isa() {
        let mut rng = Rng::new(17);
        let mut normal = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal()).collect() };
        // One scratch for every convolution and instruction set, as a thread's is: the
        // zeros around each split image are rewritten when the layout changes.
        let mut scratch = Scratch::default();
        for g in cases() {
            assert!(computes(&g), "{g:?}");
            let (x, w, b) = (
                normal(g.n * g.ic * g.h * g.w),
                normal(g.oc * g.ic * 9),
                normal(g.oc),
            );
            let dy = normal(g.n * g.oc * g.oh * g.ow);
            let want_y = reference::conv2d_forward(&g, &x, &w, Some(&b));
            let (want_dx, _, _) = reference::conv2d_backward(&g, &x, &w, &dy);
            let (x_per, y_per) = (g.ic * g.h * g.w, g.oc * g.oh * g.ow);
            for isa in Isa::available() {
                let plan = Plan::new(&g, isa);
                let mut u = Vec::new();
                plan.transform_weights(&w, &mut u);
                for relu in [false, true] {
                    let epilogue = Epilogue {
                        bias: Some(&b),
                        relu,
                    };
                    let mut y = vec![f32::NAN; want_y.len()];
                    let per = (x_per, y_per);
                    run(&plan, (&x, &u), epilogue, &mut y, per, &mut scratch);
                    let want: Vec<f32> = want_y.iter().map(|&v| epilogue.finish(v)).collect();
                    assert_close(&format!("y {isa:?} relu {relu} {g:?}"), &y, &want);
                }
                let plan_t = Plan::for_input_gradient(&g, isa);
                plan_t.transform_flipped_weights(&w, &mut u);
                let mut dx = vec![f32::NAN; want_dx.len()];
                let per = (y_per, x_per);
                run(
                    &plan_t,
                    (&dy, &u),
                    Epilogue::default(),
                    &mut dx,
                    per,
                    &mut scratch,
                );
                assert_close(&format!("dx {isa:?} {g:?}"), &dx, &want_dx);
            }
        }
    }

    /// The weight gradient through the transformed tiles, chunk by chunk, then turned
    /// back, against the reference loops, added into what dw held; on every instruction
    /// set where the output channels fill whole vectors (16 and 8 lanes: 16, 32, 64
    /// channels and 8), with odd sizes, no padding and asymmetric padding.
    #[test]
    fn weight_gradient_agrees_with_the_reference_on_every_isa() {
        let mut rng = Rng::new(18);
        let mut normal = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal()).collect() };
        let mut cases = cases();
        cases.push(geometry(5, 24, 32, (9, 7), (1, 1, 1, 1)));
        cases.push(geometry(3, 16, 16, (6, 5), (0, 2, 1, 0)));
        let mut checked = 0;
        for g in cases {
            let (x, w, dy) = (
                normal(g.n * g.ic * g.h * g.w),
                normal(g.oc * g.ic * 9),
                normal(g.n * g.oc * g.oh * g.ow),
            );
            let (_, want_dw, _) = reference::conv2d_backward(&g, &x, &w, &dy);
            let before = normal(want_dw.len());
            let want: Vec<f32> = want_dw.iter().zip(&before).map(|(d, b)| d + b).collect();
            let (x_per, y_per) = (g.ic * g.h * g.w, g.oc * g.oh * g.ow);
            for isa in Isa::available() {
                let plan = Plan::new(&g, isa);
                if !plan.weight_gradient_applies() {
                    continue;
                }
                let mut scratch = Scratch::default();
                let mut du_t = vec![0.0; plan.weight_gradient_len()];
                let images = plan.images();
                for (xs, dys) in x.chunks(images * x_per).zip(dy.chunks(images * y_per)) {
                    plan.add_weight_gradient(xs, dys, &mut du_t, &mut scratch);
                }
                let mut dw = before.clone();
                plan.add_weight_gradient_to(&du_t, &mut dw);
                assert_close(&format!("dw {isa:?} {g:?}"), &dw, &want);
                checked += 1;
            }
        }
        assert!(checked >= 8, "{checked} geometries checked");
    }

    /// The split in registers against the row copies', plane for plane and bit for bit
    /// (−0.0 and NaN included): widths 2 to 32, padding above of 0 to 2, without padding
    /// on the right (its last tile column half padding), chunks of one and of three
    /// images; planes that start as NaN, split fresh, then split again in place.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_split_in_registers_is_the_row_copies() {
        let isa = Isa::detect();
        if isa.0 != Kind::Avx512 {
            return;
        }
        let mut rng = Rng::new(19);
        let mut checked = 0;
        for w in (2..=34).step_by(2).chain([7, 13]) {
            for (pt, pb, pr) in [(1, 1, 1), (0, 2, 1), (2, 0, 0), (1, 0, 0)] {
                let g = geometry(3, 2, 4, (5 + w % 3, w), (pt, pb, 1, pr));
                if !computes(&g) {
                    continue;
                }
                let plan = Plan::new(&g, isa);
                assert_eq!(
                    splits_in_registers(&plan),
                    w <= 32 && w.is_multiple_of(2),
                    "{g:?}"
                );
                if !splits_in_registers(&plan) {
                    continue;
                }
                for n in [1, 3] {
                    let x: Vec<f32> = (0..n * g.ic * g.h * g.w)
                        .map(|_| match rng.below(6) {
                            0 => -0.0,
                            1 => f32::NAN,
                            _ => rng.normal(),
                        })
                        .collect();
                    let len = g.ic * n * 8 * plan.plane();
                    let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                    let mut parity = vec![0.0; g.h * g.w];
                    for fresh in [true, false] {
                        // SAFETY: the CPU has AVX-512F (asked above).
                        unsafe {
                            split_rows_avx512(&plan, &x, n, fresh, &mut got);
                            split::<simd::Avx512>(&plan, &x, n, fresh, &mut want, &mut parity);
                        }
                        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&got), bits(&want), "{g:?}, {n} images");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 60, "{checked} splits checked");
    }

    #[test]
    fn applies_to_3x3_stride_1_with_enough_channels_only() {
        let g = geometry(2, 64, 64, (8, 8), (1, 1, 1, 1));
        assert!(applies(&g));
        assert!(applies(&ConvGeometry { ic: 32, ..g }), "32 → 64");
        assert!(
            applies(&ConvGeometry {
                ic: 32,
                oc: 32,
                ..g
            }),
            "32 → 32"
        );
        for (ic, oc) in [(16, 16), (16, 32), (32, 16), (16, 64)] {
            assert!(!applies(&ConvGeometry { ic, oc, ..g }), "{ic} → {oc}");
        }
        assert!(!applies(&ConvGeometry { ic: 3, ..g }), "a first layer");
        assert!(computes(&ConvGeometry { ic: 3, ..g }));
        let five = ConvGeometry {
            kh: 5,
            kw: 5,
            oh: 6,
            ow: 6,
            ..g
        };
        assert!(!computes(&five), "5×5");
        let strided = ConvGeometry {
            stride: (2, 2),
            oh: 4,
            ow: 4,
            ..g
        };
        assert!(!computes(&strided));
        assert!(!computes(&ConvGeometry { groups: 2, ..g }));
        let dilated = ConvGeometry {
            dilation: (2, 2),
            oh: 4,
            ow: 4,
            ..g
        };
        assert!(!computes(&dilated));
    }
}
