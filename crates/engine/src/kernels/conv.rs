//! The fast convolution: each image is lowered to matrix products (im2col + GEMM) and the
//! images are spread over the rayon pool. [`super::reference`] defines the result; the
//! tests below hold this path to it on many shapes.
//!
//! For one image and one group, with `K = IC/groups·KH·KW` and `P = OH·OW`:
//!
//! - the image is copied into a zero-bordered buffer (the padding written out), then
//!   im2col unrolls it into `cols (K, P)`: row `(ic, i, j)` holds what kernel tap `(i, j)`
//!   of channel `ic` sees at every output position;
//! - forward: `y (OC/groups, P) = b + W (OC/groups, K) · cols (K, P)`;
//! - backward: `dW += dY · colsᵀ` (computed as its transpose `cols · dYᵀ`, which GEMM
//!   does faster), `db += Σ_P dY`, `dcols = Wᵀ · dY`, then col2im adds each entry of
//!   `dcols` back onto the pixel it was copied from (a pixel seen by several taps collects
//!   all their gradients) and the border is cut off again.
//!
//! A 1×1 convolution with stride 1 and no padding needs no unrolling: the image
//! `(IC, H·W)` already is `cols`, and `dcols` is `dx`. Convolutions without dilation in
//! one group (the 3×3 "same" convolutions of most networks, first layers, the strided
//! ones opening a ResNet stage) are not unrolled either: [`super::direct`] computes y,
//! dx and dW from the padded images, image by image on the same threads and chunks (dx
//! of a strided one still through im2col's transpose). Of the stride-1 ones, the 3×3
//! ones with channels enough ([`winograd::applies`]) compute y, dx and (output channels
//! filling whole vectors) dW with [`super::winograd`], a chunk of images per job.
//!
//! The forward pass applies an [`Epilogue`] to each output as it writes it: the bias and,
//! for a convolution run fused with the ReLU after it, the ReLU.
//!
//! Small images are lowered a few at a time: the `cols` of a tile of `T` images sit side
//! by side in one `(K, T·P)` matrix, so each product has `T·P` columns instead of `P`,
//! because GEMM runs well below its speed on products only about a hundred columns wide
//! (LeNet-5's second convolution has P = 100); `y` and `dY` pass through an `(OC, T·P)`
//! buffer in the same column order.
//!
//! Threads: images are spread over the rayon pool and each image runs single-threaded
//! GEMMs in its thread's own scratch buffers: images are independent, so threads never
//! wait for each other inside a product, and each thread's buffers stay in its own core's
//! cache (one wide im2col matrix handed to a multi-threaded GEMM was slower). The forward
//! pass is one job per tile; the backward pass cuts the batch into a few contiguous chunks
//! per thread, each summing its own `dW` and `db`, and the chunk sums are totalled in
//! chunk order. Tiles always start at multiples of `T` in the batch, so `y` and `dx` do not
//! depend on the thread count at all; `dW` and `db` depend only on it: the same thread
//! count gives the same bits on every run.

use super::direct::{self, Isa, Plan};
use super::matmul::gemm_one_thread;
use super::pool::{self, PoolGeometry, Tap};
use super::winograd;
use super::{copy_row, lane_sum, ConvGeometry, Epilogue, Moments};
use rayon::prelude::*;
use std::sync::{Mutex, MutexGuard};

/// Scratch memory reused across calls, grown on demand and never shrunk, so a warm layer
/// does not allocate its large buffers again.
#[derive(Default)]
pub struct Workspace {
    /// The tile buffers of each rayon thread, indexed by `rayon::current_thread_index()`,
    /// and last those of a calling thread outside the pool (rayon runs a lone job in
    /// place). A thread works on one tile at a time, so its lock is never contended.
    threads: Vec<Mutex<TileScratch>>,
    /// The gradient sums of each chunk of the batch.
    chunks: Vec<ChunkGrads>,
    /// The weights arranged for the direct path ([`Plan::arrange_weights`]) or transformed
    /// for the Winograd path ([`winograd::Plan::transform_weights`]).
    weights: Vec<f32>,
    /// The same for the input gradient, from the flipped kernel.
    flipped: Vec<f32>,
}

/// The buffers one thread needs for one tile of T images.
#[derive(Default)]
struct TileScratch {
    /// One image with its padding written out: (IC, PT+H+PB, PL+W+PR)
    padded: Vec<f32>,
    /// The tile unrolled: (IC·KH·KW, T·OH·OW)
    cols: Vec<f32>,
    /// Gradient with respect to `cols`: (IC·KH·KW, T·OH·OW)
    dcols: Vec<f32>,
    /// `y` or `dY` of a tile of several images, images side by side: (OC, T·OH·OW)
    side_by_side: Vec<f32>,
    /// Gradient with respect to `padded`: (IC, PT+H+PB, PL+W+PR)
    dpadded: Vec<f32>,
    /// The direct path's buffers.
    direct: direct::Scratch,
    /// The Winograd path's buffers.
    winograd: winograd::Scratch,
    /// y of the images being convolved, when they are pooled before they are written.
    unpooled: Vec<f32>,
    /// The taps of that pooling, which only its maxima are kept of.
    taps: Vec<Tap>,
}

/// One chunk's share of the parameter gradients.
#[derive(Default)]
struct ChunkGrads {
    /// dweight, on the direct path as dweight is, (OC, IC, KH, KW); through im2col
    /// transposed group by group, (groups, IC/groups·KH·KW, OC/groups): GEMM computes
    /// `dW_gᵀ = cols_g · dY_gᵀ` faster than `dW_g = dY_g · cols_gᵀ`, so the sums stay
    /// transposed and are turned back once, when they are added into dweight.
    dw: Vec<f32>,
    /// (OC,), or empty without bias
    db: Vec<f32>,
}

impl Workspace {
    /// Makes room for every thread of the current rayon pool, and the caller.
    fn prepare_threads(&mut self) {
        let threads = rayon::current_num_threads() + 1;
        if self.threads.len() < threads {
            self.threads.resize_with(threads, Default::default);
        }
    }
}

/// The calling rayon thread's image buffers.
fn thread_scratch(threads: &[Mutex<TileScratch>]) -> MutexGuard<'_, TileScratch> {
    let index = rayon::current_thread_index().unwrap_or(rayon::current_num_threads());
    threads[index]
        .try_lock()
        .expect("a thread works on one image at a time")
}

/// Sets `buf` to `len` zeros, reusing its allocation.
fn zeroed(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.clear();
    buf.resize(len, 0.0);
    buf
}

/// Gives `buf` length `len` without clearing it, for a buffer about to be overwritten.
fn resized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    buf
}

/// The matrix sizes of one image's lowering.
struct Lowering {
    groups: usize,
    /// Output channels of one group (rows of one group's `W` and `y`).
    ocg: usize,
    /// `IC/groups·KH·KW`: rows of one group's `cols`, columns of its `W`.
    k: usize,
    /// `OH·OW`: columns of `cols` and of `y`.
    p: usize,
    /// Height and width of the padded image, `PT+H+PB` and `PL+W+PR`.
    ph: usize,
    pw: usize,
    /// Some zero padding: im2col reads from a padded copy of the image.
    has_padding: bool,
    /// 1×1 kernel, stride 1, no padding: the image itself is already `cols`.
    pointwise: bool,
    /// Images lowered together, T: enough for about [`TILE_COLUMNS`] columns.
    tile: usize,
    /// No dilation, one group: the [`direct`] kernels compute the convolution image by
    /// image, without lowering (for a stride above 1, all but the input gradient).
    direct: Option<Plan>,
    /// 3×3, stride 1, one group, enough channels: [`winograd`] computes y and dx, a
    /// chunk of images at a time, and dW where the output channels fill whole vectors.
    winograd: Option<winograd::Plan>,
    /// How the weight gradient is computed.
    weight_gradient: WeightGradient,
}

/// How a convolution's weight gradient is computed; the chunk sums are dweight as it is
/// for `ByPosition`, transposed (IC/groups·KH·KW, OC/groups) group by group otherwise.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WeightGradient {
    /// im2col + GEMM.
    Lowered,
    /// [`Plan::add_weight_gradient`]: vectors over positions (large images).
    ByPosition,
    /// [`Plan::add_weight_gradient_by_channel`]: vectors over output channels.
    ByChannel,
    /// [`winograd::Plan::add_weight_gradient`]: through the transformed tiles, the sums
    /// (16, IC, OC) turned back into dweight once.
    Winograd,
}

/// Columns of a tile's products: GEMM reaches its speed once a product has a few hundred
/// columns; narrower ones (the `P` of a small image) run well below it, and wider tiles
/// gain nothing but larger buffers.
const TILE_COLUMNS: usize = 400;

impl Lowering {
    fn new(g: &ConvGeometry) -> Self {
        let (pt, pb, pl, pr) = g.pad;
        // Every output position is its input position: the lowered matrix is the image itself.
        let pointwise = g.kh == 1
            && g.kw == 1
            && g.stride == (1, 1)
            && g.pad == (0, 0, 0, 0)
            && (g.oh, g.ow) == (g.h, g.w);
        let direct = direct::applies(g).then(|| Plan::new(g, Isa::detect()));
        let winograd = winograd::applies(g).then(|| winograd::Plan::new(g, Isa::detect()));
        let weight_gradient = match (&direct, &winograd) {
            (_, Some(plan)) if plan.weight_gradient_applies() => WeightGradient::Winograd,
            (Some(plan), _) if plan.weight_gradient_pays() => WeightGradient::ByPosition,
            (Some(plan), _) if plan.weight_gradient_by_channel() => WeightGradient::ByChannel,
            _ => WeightGradient::Lowered,
        };
        Lowering {
            groups: g.groups,
            ocg: g.oc_per_group(),
            k: g.ic_per_group() * g.kh * g.kw,
            p: g.oh * g.ow,
            ph: pt + g.h + pb,
            pw: pl + g.w + pr,
            has_padding: g.pad != (0, 0, 0, 0),
            pointwise,
            tile: match (&direct, &winograd, weight_gradient) {
                (Some(plan), _, WeightGradient::ByPosition) => plan.tile(),
                (_, Some(plan), WeightGradient::Winograd) => plan.images(),
                (_, _, WeightGradient::ByChannel) => 1,
                _ if pointwise => 1,
                _ => (TILE_COLUMNS / (g.oh * g.ow).max(1)).max(1),
            },
            weight_gradient,
            direct,
            winograd,
        }
    }

    /// For each of the `IC·H` rows of an image: where it starts in the image (IC, H, W) and
    /// in the padded image (IC, PH, PW).
    fn interior_rows<'a>(
        &'a self,
        g: &'a ConvGeometry,
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        let (pt, _, pl, _) = g.pad;
        (0..g.ic).flat_map(move |ic| {
            (0..g.h).map(move |y| ((ic * g.h + y) * g.w, (ic * self.ph + pt + y) * self.pw + pl))
        })
    }
}

/// Chunks of the batch per rayon thread in the backward pass: more than one, so that a
/// thread slowed down by other work on the machine hands chunks over to the others.
const CHUNKS_PER_THREAD: usize = 4;

/// How the batch is cut for the backward pass: `chunk_len` consecutive images per chunk,
/// whole tiles of `tile` images. Depends only on N, the tile and the thread count, so the
/// order of the gradient sums does too.
fn chunk_len(n: usize, tile: usize) -> usize {
    n.div_ceil(CHUNKS_PER_THREAD * rayon::current_num_threads())
        .next_multiple_of(tile)
        .max(tile)
}

/// Cuts an (N, …) buffer into consecutive pieces of `chunk_len` images (the last may be
/// shorter). Works for images of size zero too, which `chunks_mut` would refuse.
fn split_batch(data: &mut [f32], n: usize, chunk_len: usize) -> Vec<&mut [f32]> {
    let per_image = data.len() / n;
    let mut pieces = Vec::with_capacity(n.div_ceil(chunk_len));
    let mut rest = data;
    for start in (0..n).step_by(chunk_len) {
        let (piece, tail) = rest.split_at_mut(chunk_len.min(n - start) * per_image);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// x_img: (IC, H, W) → (IC, PH, PW) with the zero padding written out into `buf`; the image
/// itself when there is no padding.
fn with_padding<'a>(
    g: &ConvGeometry,
    low: &Lowering,
    x_img: &'a [f32],
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    if !low.has_padding {
        return x_img;
    }
    let padded = zeroed(buf, g.ic * low.ph * low.pw);
    for (from, to) in low.interior_rows(g) {
        copy_row(&mut padded[to..to + g.w], &x_img[from..from + g.w]);
    }
    padded
}

/// `dst = src` for rows of `2H` values at most and `H` at least: the first `H` and the
/// last `H`, which overlap in the middle. Two fixed-size copies in registers, no loop.
#[inline(always)]
fn copy_pair<const H: usize>(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    let head: &[f32; H] = src[..H].try_into().expect("at least H values");
    let tail: &[f32; H] = src[n - H..n].try_into().expect("at least H values");
    dst[..H].copy_from_slice(head);
    dst[n - H..].copy_from_slice(tail);
}

/// padded: (IC, PH, PW) → cols: (IC·KH·KW, OH·OW), where
/// `cols[(ic, i, j), (oy, ox)] = padded[ic, oy·SH + i·DH, ox·SW + j·DW]`. Row `r` of `cols`
/// starts at `cols[r·ld]` (`ld = T·P` in a tile, the image's columns among the tile's).
///
/// With stride 1 this is `IC·KH·KW·OH` copies of `OW` values, often 10 to 32: the copy
/// is chosen once for the width ([`copy_pair`]), two fixed-size moves in registers per
/// row, because a loop over so few values spends more on its own control than on copying.
fn im2col(g: &ConvGeometry, low: &Lowering, padded: &[f32], cols: &mut [f32], ld: usize) {
    match g.ow {
        _ if g.stride.1 != 1 => im2col_with(g, low, padded, cols, ld, |_, _| {}),
        0..4 => im2col_with(g, low, padded, cols, ld, <[f32]>::copy_from_slice),
        4..8 => im2col_with(g, low, padded, cols, ld, copy_pair::<4>),
        8..16 => im2col_with(g, low, padded, cols, ld, copy_pair::<8>),
        16..32 => im2col_with(g, low, padded, cols, ld, copy_pair::<16>),
        _ => im2col_with(g, low, padded, cols, ld, copy_row),
    }
}

/// [`im2col`] with `copy` for the rows of stride 1.
#[inline(always)]
fn im2col_with(
    g: &ConvGeometry,
    low: &Lowering,
    padded: &[f32],
    cols: &mut [f32],
    ld: usize,
    copy: impl Fn(&mut [f32], &[f32]),
) {
    let (sh, sw) = g.stride;
    let (dh, dw) = g.dilation;
    let mut r = 0;
    for plane in padded.chunks_exact(low.ph * low.pw) {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut cols[r * ld..][..low.p];
                r += 1;
                for (oy, dst) in row.chunks_exact_mut(g.ow).enumerate() {
                    let src = &plane[(oy * sh + i * dh) * low.pw + j * dw..];
                    if sw == 1 {
                        copy(dst, &src[..g.ow]);
                    } else {
                        for (d, s) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: dcols (IC·KH·KW, OH·OW), rows `ld` apart, is added into
/// dpadded (IC, PH, PW), each entry onto the pixel it was copied from.
fn col2im(g: &ConvGeometry, low: &Lowering, dcols: &[f32], dpadded: &mut [f32], ld: usize) {
    let (sh, sw) = g.stride;
    let (dh, dw) = g.dilation;
    let mut r = 0;
    for plane in dpadded.chunks_exact_mut(low.ph * low.pw) {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &dcols[r * ld..][..low.p];
                r += 1;
                for (oy, src) in row.chunks_exact(g.ow).enumerate() {
                    let dst = &mut plane[(oy * sh + i * dh) * low.pw + j * dw..];
                    if sw == 1 {
                        for (d, s) in dst[..g.ow].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (d, s) in dst.iter_mut().step_by(sw).zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// x: (N, IC, H, W), w: (OC, IC/groups, KH, KW) → y: (N, OC, OH, OW) (overwritten), the
/// epilogue (bias (OC,), ReLU) applied to each output.
pub fn forward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [f32],
    ws: &mut Workspace,
) {
    forward_then(g, x, w, epilogue, After::Nothing, y, ws);
}

/// [`forward`] followed by the 2×2 max-pooling `pool` ([`PoolGeometry::is_2x2_tiling`],
/// on y's shape), y never written out: each thread pools the images it has just
/// convolved while they are in its cache. pooled: (N, OC, OH/2, OW/2) (overwritten), and
/// if given, `taps` (one per pooled value, overwritten): which position of its window held
/// the maximum — the same bits as [`forward`] then [`pool::max_pool2d_forward`].
#[allow(clippy::too_many_arguments)]
pub fn forward_pooled(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    pool: &PoolGeometry,
    pooled: &mut [f32],
    taps: Option<&mut [Tap]>,
    ws: &mut Workspace,
) {
    assert!(
        pool.is_2x2_tiling() && pool.input_shape() == [g.n, g.oc, g.oh, g.ow],
        "conv forward: {pool:?} is not a 2×2 tiling of y"
    );
    if let Some(taps) = &taps {
        assert_eq!(
            taps.len(),
            pooled.len(),
            "conv forward: one tap per pooled value"
        );
    }
    forward_then(g, x, w, epilogue, After::Pool(pool, taps), pooled, ws);
}

/// [`forward`], and the [`Moments`] of every plane of y (one channel of one image),
/// moments: (N, OC) (overwritten), each image's taken by the thread that has just
/// convolved it, while it is in its cache — the statistics of a batch normalisation
/// after the convolution without another pass over y.
pub fn forward_with_moments(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [f32],
    moments: &mut [Moments],
    ws: &mut Workspace,
) {
    assert_eq!(
        moments.len(),
        g.n * g.oc,
        "conv forward: moments of {} planes",
        moments.len()
    );
    forward_then(g, x, w, epilogue, After::Moments(moments), y, ws);
}

/// What [`forward_then`] does besides writing y.
enum After<'a> {
    Nothing,
    /// Pools y instead of writing it, keeping the taps if given ([`forward_pooled`]).
    Pool(&'a PoolGeometry, Option<&'a mut [Tap]>),
    /// Takes the moments of its planes, (N, OC) ([`forward_with_moments`]).
    Moments(&'a mut [Moments]),
}

/// The moments of every plane of some images' y into theirs, (images, OC).
fn take_moments(y: &[f32], moments: Option<&mut [Moments]>) {
    if let Some(moments) = moments {
        let plane = y.len() / moments.len().max(1);
        for (m, values) in moments.iter_mut().zip(y.chunks_exact(plane.max(1))) {
            *m = Moments::of(values);
        }
    }
}

/// `values` (moments or taps) cut into pieces of `len`, one per job; `count` pieces of
/// `None` without any.
fn pieces<T>(values: Option<&mut [T]>, len: usize, count: usize) -> Vec<Option<&mut [T]>> {
    match values {
        Some(v) => v.chunks_mut(len.max(1)).map(Some).collect(),
        None => (0..count).map(|_| None).collect(),
    }
}

/// [`forward`] into `out`, then what `after` says.
fn forward_then(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    after: After,
    out: &mut [f32],
    ws: &mut Workspace,
) {
    let (pool, taps, moments) = match after {
        After::Nothing => (None, None, None),
        After::Pool(pool, taps) => (Some(pool), taps, None),
        After::Moments(moments) => (None, None, Some(moments)),
    };
    let y_per = g.oc * g.oh * g.ow;
    let out_per = pool.map_or(y_per, |p| p.c * p.oh * p.ow);
    check_lengths(g, x, w, g.n * y_per);
    assert_eq!(
        out.len(),
        g.n * out_per,
        "conv forward: y holds {} values",
        out.len()
    );
    if let Some(b) = epilogue.bias {
        assert_eq!(b.len(), g.oc, "conv forward: bias holds {} values", b.len());
    }
    if g.n == 0 {
        return;
    }
    let low = Lowering::new(g);
    let x_per = x.len() / g.n;
    ws.prepare_threads();
    if let Some(plan) = &low.winograd {
        plan.transform_weights(w, &mut ws.weights);
        let jobs = g.n.div_ceil(plan.images());
        let moments = pieces(moments, plan.images() * g.oc, jobs);
        let taps = pieces(taps, plan.images() * out_per, jobs);
        let (u, threads) = (&ws.weights, &ws.threads);
        forward_winograd(plan, x, u, epilogue, (pool, taps), moments, out, threads);
        return;
    }
    if let Some(plan) = &low.direct {
        plan.arrange_weights(w, &mut ws.weights);
    }
    let (threads, direct_weights) = (&ws.threads, &ws.weights);
    // Images are independent: small jobs let rayon keep every thread busy even when some
    // are slowed down by other work on the machine.
    let job_len = images_per_job(g, low.tile);
    let jobs = g.n.div_ceil(job_len);
    let moments = pieces(moments, job_len * g.oc, jobs);
    let taps = pieces(taps, job_len * out_per, jobs);
    out.par_chunks_mut(job_len * out_per)
        .zip(moments.into_par_iter().zip(taps))
        .enumerate()
        .with_max_len(1)
        .for_each(|(job, (out_job, (mut moments, mut taps)))| {
            let s = &mut thread_scratch(threads);
            for (t, out_tile) in out_job.chunks_mut(low.tile * out_per).enumerate() {
                let first = job * job_len + t * low.tile;
                let images = out_tile.len() / out_per;
                let x_tile = &x[first * x_per..][..images * x_per];
                let mut moments = moments
                    .as_deref_mut()
                    .map(|m| &mut m[t * low.tile * g.oc..][..images * g.oc]);
                let mut taps = taps
                    .as_deref_mut()
                    .map(|taps| &mut taps[t * low.tile * out_per..][..out_tile.len()]);
                match &low.direct {
                    // One image at a time, pooled or its moments taken while in cache.
                    Some(plan) => {
                        let images = x_tile.chunks(x_per).zip(out_tile.chunks_mut(out_per));
                        for (i, (x_img, out_img)) in images.enumerate() {
                            let image_taps = taps
                                .as_deref_mut()
                                .map(|t| &mut t[i * out_per..][..out_per]);
                            then_pool((pool, image_taps), out_img, y_per, s, |y_img, s| {
                                let (w, s) = (direct_weights, &mut s.direct);
                                plan.forward_image(x_img, w, epilogue, y_img, s)
                            });
                            let image = moments.as_deref_mut().map(|m| &mut m[i * g.oc..][..g.oc]);
                            take_moments(out_img, image);
                        }
                    }
                    None => {
                        let len = images * y_per;
                        then_pool((pool, taps), out_tile, len, s, |y_tile, s| {
                            forward_tile(g, &low, x_tile, w, epilogue, y_tile, s)
                        });
                        take_moments(out_tile, moments);
                    }
                }
            }
        });
}

/// `conv` writing y (`len` values) into `out`, or with `pool` into a thread buffer then
/// pooled into `out`.
fn then_pool(
    (pool, taps): (Option<&PoolGeometry>, Option<&mut [Tap]>),
    out: &mut [f32],
    len: usize,
    s: &mut TileScratch,
    conv: impl FnOnce(&mut [f32], &mut TileScratch),
) {
    let Some(pool) = pool else {
        return conv(out, s);
    };
    let mut y = std::mem::take(&mut s.unpooled);
    conv(resized(&mut y, len), s);
    let taps = match taps {
        Some(taps) => taps,
        None => {
            s.taps.resize(out.len(), 0);
            &mut s.taps[..]
        }
    };
    pool::max_2x2_planes(pool, &y[..len], out, taps);
    s.unpooled = y;
}

/// [`forward_then`] on the Winograd path: one job per chunk of images, chunks starting at
/// multiples of [`winograd::Plan::images`] (for dx, with `x` being dy and `u` the
/// flipped filters).
#[allow(clippy::too_many_arguments)]
fn forward_winograd(
    plan: &winograd::Plan,
    x: &[f32],
    u: &[f32],
    epilogue: Epilogue,
    (pool, taps): (Option<&PoolGeometry>, Vec<Option<&mut [Tap]>>),
    moments: Vec<Option<&mut [Moments]>>,
    out: &mut [f32],
    threads: &[Mutex<TileScratch>],
) {
    let n = plan.images();
    let (x_per, y_per) = plan.image_lengths();
    let out_per = pool.map_or(y_per, |p| p.c * p.oh * p.ow);
    out.par_chunks_mut(n * out_per)
        .zip(x.par_chunks(n * x_per))
        .zip(moments.into_par_iter().zip(taps))
        .with_max_len(1)
        .for_each(|((out_job, x_job), (moments, taps))| {
            let s = &mut thread_scratch(threads);
            let len = x_job.len() / x_per * y_per;
            then_pool((pool, taps), out_job, len, s, |y_job, s| {
                plan.forward_images(x_job, u, epilogue, y_job, &mut s.winograd)
            });
            take_moments(out_job, moments);
        });
}

/// Images per forward job, whole tiles: one tile, unless images are so small that handing
/// a job out would cost rayon about as much as the job's own work (a job gets at least
/// `MIN_JOB_MACS` multiply-adds).
fn images_per_job(g: &ConvGeometry, tile: usize) -> usize {
    const MIN_JOB_MACS: usize = 1 << 18;
    let macs_per_image = (g.macs() / g.n as u64).max(1) as usize;
    MIN_JOB_MACS.div_ceil(macs_per_image).next_multiple_of(tile)
}

/// The `cols` of a tile of images x_tile (T, IC, H, W), side by side: (groups·K, T·P),
/// image `t` in columns `t·P..(t+1)·P`. For a pointwise convolution (T = 1) the image
/// itself.
fn tile_cols<'a>(
    g: &ConvGeometry,
    low: &Lowering,
    x_tile: &'a [f32],
    padded: &mut Vec<f32>,
    cols: &'a mut Vec<f32>,
) -> &'a [f32] {
    if low.pointwise {
        return x_tile;
    }
    let x_per = g.ic * g.h * g.w;
    let ld = x_tile.len() / x_per * low.p;
    let cols = resized(cols, low.groups * low.k * ld);
    for (t, x_img) in x_tile.chunks_exact(x_per).enumerate() {
        let padded = with_padding(g, low, x_img, padded);
        im2col(g, low, padded, &mut cols[t * low.p..], ld);
    }
    cols
}

/// (T, OC, P) → (OC, T·P): the (OC, P) planes of a tile's images side by side.
fn side_by_side(oc: usize, p: usize, tile: &[f32], side: &mut [f32]) {
    let ld = side.len() / oc;
    for (t, img) in tile.chunks_exact(oc * p).enumerate() {
        for (o, row) in img.chunks_exact(p).enumerate() {
            copy_row(&mut side[o * ld + t * p..][..p], row);
        }
    }
}

/// (OC, T·P) → (T, OC, P), the inverse of [`side_by_side`].
fn one_by_one(oc: usize, p: usize, side: &[f32], tile: &mut [f32]) {
    let ld = side.len() / oc;
    for (t, img) in tile.chunks_exact_mut(oc * p).enumerate() {
        for (o, row) in img.chunks_exact_mut(p).enumerate() {
            copy_row(row, &side[o * ld + t * p..][..p]);
        }
    }
}

/// One tile: x_tile (T, IC, H, W) → y_tile (T, OC, OH, OW), group by group
/// `y_g (OC/groups, T·P) = b_g + W_g (OC/groups, K) · cols_g (K, T·P)`, computed straight
/// into y when T = 1.
fn forward_tile(
    g: &ConvGeometry,
    low: &Lowering,
    x_tile: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y_tile: &mut [f32],
    s: &mut TileScratch,
) {
    let (k, p, ocg) = (low.k, low.p, low.ocg);
    let images = y_tile.len() / (g.oc * p).max(1);
    let ld = images * p;
    let cols = tile_cols(g, low, x_tile, &mut s.padded, &mut s.cols);
    let y = if images == 1 {
        &mut *y_tile
    } else {
        resized(&mut s.side_by_side, g.oc * ld)
    };
    for grp in 0..low.groups {
        gemm_one_thread(
            ocg,
            ld,
            k,
            &w[grp * ocg * k..][..ocg * k],
            false,
            &cols[grp * k * ld..][..k * ld],
            false,
            &mut y[grp * ocg * ld..][..ocg * ld],
            false,
        );
    }
    // The epilogue is applied after the product, while y is still in cache: filling y
    // with the bias first meant an extra pass over memory not yet cached. `b + Σ` and
    // `Σ + b` are the same rounding.
    for (o, row) in y.chunks_exact_mut(ld).enumerate() {
        epilogue.apply(o, row);
    }
    if images > 1 {
        one_by_one(g.oc, p, &s.side_by_side[..g.oc * ld], y_tile);
    }
}

/// dy: (N, OC, OH, OW) → dx: (N, IC, H, W) (overwritten, unless `None`: not needed);
/// dw: (OC, IC/groups, KH, KW) and db: (OC,) are added into, as a layer's backward adds
/// into its parameter gradients.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    ws: &mut Workspace,
) {
    check_lengths(g, x, w, dy.len());
    if let Some(dx) = &dx {
        assert_eq!(dx.len(), x.len(), "conv backward: dx and x sizes differ");
    }
    assert_eq!(dw.len(), w.len(), "conv backward: dw and w sizes differ");
    if let Some(db) = &db {
        assert_eq!(
            db.len(),
            g.oc,
            "conv backward: dbias holds {} values",
            db.len()
        );
    }
    if g.n == 0 {
        return;
    }
    let low = Lowering::new(g);
    let (x_per, y_per) = (x.len() / g.n, dy.len() / g.n);
    ws.prepare_threads();
    let chunk_len = chunk_len(g.n, low.tile);
    let pieces: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => split_batch(dx, g.n, chunk_len)
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..g.n.div_ceil(chunk_len)).map(|_| None).collect(),
    };
    if ws.chunks.len() < pieces.len() {
        ws.chunks.resize_with(pieces.len(), Default::default);
    }
    let flipped = Flipped::new(g, &low, w, &mut ws.flipped);
    let sums = &mut ws.chunks[..pieces.len()];
    let threads = &ws.threads;
    let db_len = if db.is_some() { g.oc } else { 0 };
    let dw_len = match &low.winograd {
        Some(plan) if low.weight_gradient == WeightGradient::Winograd => plan.weight_gradient_len(),
        _ => w.len(),
    };
    pieces
        .into_par_iter()
        .zip(sums.par_iter_mut())
        .enumerate()
        .with_max_len(1)
        .for_each(|(chunk, (mut dx_chunk, sum))| {
            zeroed(&mut sum.dw, dw_len);
            zeroed(&mut sum.db, db_len);
            let s = &mut thread_scratch(threads);
            let first = chunk * chunk_len;
            let images = chunk_len.min(g.n - first);
            for start in (0..images).step_by(low.tile) {
                let tile = start..(start + low.tile).min(images);
                let x_tile = &x[(first + tile.start) * x_per..(first + tile.end) * x_per];
                let dy_tile = &dy[(first + tile.start) * y_per..(first + tile.end) * y_per];
                add_bias_gradient(g, dy_tile, &mut sum.db);
                // Without a direct input gradient, dx through im2col tile by tile.
                let dx_tile = match flipped {
                    Some(_) => None,
                    None => dx_chunk
                        .as_deref_mut()
                        .map(|dx| &mut dx[tile.start * x_per..tile.end * x_per]),
                };
                match (&low.direct, &low.winograd, low.weight_gradient) {
                    (_, Some(plan), WeightGradient::Winograd) => {
                        plan.add_weight_gradient(x_tile, dy_tile, &mut sum.dw, &mut s.winograd);
                    }
                    (Some(plan), _, WeightGradient::ByPosition) => {
                        plan.add_weight_gradient(x_tile, dy_tile, &mut sum.dw, &mut s.direct);
                    }
                    (Some(plan), _, WeightGradient::ByChannel) => {
                        let images = x_tile.chunks(x_per).zip(dy_tile.chunks(y_per));
                        for (x_img, dy_img) in images {
                            let (dw_t, scratch) = (&mut sum.dw, &mut s.direct);
                            plan.add_weight_gradient_by_channel(x_img, dy_img, dw_t, scratch);
                        }
                    }
                    _ => {
                        backward_tile(g, &low, x_tile, w, dy_tile, dx_tile, sum, s);
                        continue;
                    }
                }
                if let Some(dx_tile) = dx_tile {
                    lowered_input_gradient(g, &low, w, dy_tile, dx_tile, s);
                }
            }
            if let (Some(flipped), Some(dx_chunk)) = (&flipped, dx_chunk) {
                let dy_chunk = &dy[first * y_per..][..images * y_per];
                flipped.run(dy_chunk, dx_chunk, s);
            }
        });
    // The chunk sums, totalled in chunk order (reproducible for a given thread count),
    // then added into the caller's gradients once.
    let (total, rest) = sums.split_first_mut().expect("at least one chunk");
    for sum in rest.iter() {
        add_into(&mut total.dw, &sum.dw);
        add_into(&mut total.db, &sum.db);
    }
    if let Some(db) = db {
        add_into(db, &total.db);
    }
    match (&low.winograd, low.weight_gradient) {
        (_, WeightGradient::ByPosition) => return add_into(dw, &total.dw),
        (Some(plan), WeightGradient::Winograd) => {
            return plan.add_weight_gradient_to(&total.dw, dw);
        }
        _ => {}
    }
    let (k, ocg) = (low.k, low.ocg);
    for (dw_g, dw_t_g) in dw
        .chunks_exact_mut(ocg * k)
        .zip(total.dw.chunks_exact(k * ocg))
    {
        // dW_g[o, kk] += dW_gᵀ[kk, o]
        for (o, row) in dw_g.chunks_exact_mut(k).enumerate() {
            for (kk, d) in row.iter_mut().enumerate() {
                *d += dw_t_g[kk * ocg + o];
            }
        }
    }
}

/// The input gradient of a stride-1, single-group convolution: the forward pass of dy
/// with the flipped kernel, on the Winograd path where it applies, else the direct one.
enum Flipped<'a> {
    Direct(Plan, &'a [f32]),
    Winograd(winograd::Plan, &'a [f32]),
}

impl<'a> Flipped<'a> {
    /// The plan and its weights from w, arranged into `buf`; `None` off the direct path.
    fn new(g: &ConvGeometry, low: &Lowering, w: &[f32], buf: &'a mut Vec<f32>) -> Option<Self> {
        let isa = low
            .direct
            .as_ref()
            .filter(|p| p.input_gradient_applies())?
            .isa();
        Some(if low.winograd.is_some() {
            let plan_t = winograd::Plan::for_input_gradient(g, isa);
            plan_t.transform_flipped_weights(w, buf);
            Flipped::Winograd(plan_t, buf)
        } else {
            let plan_t = Plan::for_input_gradient(g, isa);
            plan_t.arrange_flipped_weights(w, buf);
            Flipped::Direct(plan_t, buf)
        })
    }

    /// Images per job of [`input_gradient`]: whole chunks of the Winograd path.
    fn images_per_job(&self, g: &ConvGeometry) -> usize {
        match self {
            Flipped::Direct(..) => images_per_job(g, 1),
            Flipped::Winograd(plan_t, _) => plan_t.images(),
        }
    }

    /// dy of consecutive images → their dx (overwritten); on the Winograd path in chunks
    /// from the first image on.
    fn run(&self, dy: &[f32], dx: &mut [f32], s: &mut TileScratch) {
        match self {
            Flipped::Direct(plan_t, w) => {
                let (y_per, x_per) = plan_t.image_lengths();
                for (dy_img, dx_img) in dy.chunks(y_per).zip(dx.chunks_mut(x_per)) {
                    let s = &mut s.direct;
                    plan_t.forward_image(dy_img, w, Epilogue::default(), dx_img, s);
                }
            }
            Flipped::Winograd(plan_t, u) => {
                let (y_per, x_per) = plan_t.image_lengths();
                let n = plan_t.images();
                for (dy, dx) in dy.chunks(n * y_per).zip(dx.chunks_mut(n * x_per)) {
                    let s = &mut s.winograd;
                    plan_t.forward_images(dy, u, Epilogue::default(), dx, s);
                }
            }
        }
    }
}

/// `db += Σ_P dY` for each image of a tile.
fn add_bias_gradient(g: &ConvGeometry, dy_tile: &[f32], db: &mut [f32]) {
    let p = g.oh * g.ow;
    for dy_img in dy_tile.chunks_exact(g.oc * p) {
        for (d, row) in db.iter_mut().zip(dy_img.chunks_exact(p)) {
            *d += lane_sum(row, |v| v) as f32;
        }
    }
}

/// `acc += v`, element-wise.
fn add_into(acc: &mut [f32], v: &[f32]) {
    assert_eq!(acc.len(), v.len(), "add_into: lengths differ");
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

/// One tile of T images, group by group, differentiating `y_g = b_g + W_g · cols_g`:
/// `dW_gᵀ += cols_g · dY_gᵀ`, `dcols_g = W_gᵀ · dY_g` (all with the
/// images side by side, T·P columns), then col2im of each image's columns into dx.
#[allow(clippy::too_many_arguments)]
fn backward_tile(
    g: &ConvGeometry,
    low: &Lowering,
    x_tile: &[f32],
    w: &[f32],
    dy_tile: &[f32],
    dx_tile: Option<&mut [f32]>,
    sum: &mut ChunkGrads,
    s: &mut TileScratch,
) {
    let (k, ocg) = (low.k, low.ocg);
    let (dy, ld) = tile_side_by_side(g, low, dy_tile, &mut s.side_by_side);
    let cols = tile_cols(g, low, x_tile, &mut s.padded, &mut s.cols);
    for grp in 0..low.groups {
        // dW_gᵀ (K, OC/groups) += cols_g (K, T·P) · dY_gᵀ (T·P, OC/groups)
        gemm_one_thread(
            k,
            ocg,
            ld,
            &cols[grp * k * ld..][..k * ld],
            false,
            &dy[grp * ocg * ld..][..ocg * ld],
            true,
            &mut sum.dw[grp * k * ocg..][..k * ocg],
            true,
        );
    }
    if let Some(dx_tile) = dx_tile {
        dx_of_tile(g, low, w, dy, dx_tile, &mut s.dcols, &mut s.dpadded);
    }
}

/// A tile's dY (T, OC, P) with its images side by side, (OC, T·P), in `side` unless T =
/// 1, and T·P.
fn tile_side_by_side<'a>(
    g: &ConvGeometry,
    low: &Lowering,
    dy_tile: &'a [f32],
    side: &'a mut Vec<f32>,
) -> (&'a [f32], usize) {
    let images = dy_tile.len() / (g.oc * low.p).max(1);
    let ld = images * low.p;
    if images == 1 {
        return (dy_tile, ld);
    }
    let side = resized(side, g.oc * ld);
    side_by_side(g.oc, low.p, dy_tile, side);
    (side, ld)
}

/// The input gradient of a tile through im2col's transpose: dx_tile (T, IC, H, W)
/// (overwritten) from dy_tile (T, OC, OH, OW).
fn lowered_input_gradient(
    g: &ConvGeometry,
    low: &Lowering,
    w: &[f32],
    dy_tile: &[f32],
    dx_tile: &mut [f32],
    s: &mut TileScratch,
) {
    let (dy, _) = tile_side_by_side(g, low, dy_tile, &mut s.side_by_side);
    dx_of_tile(g, low, w, dy, dx_tile, &mut s.dcols, &mut s.dpadded);
}

/// dx_tile (T, IC, H, W) (overwritten) from the tile's dY, images side by side
/// (OC, T·P): group by group `dcols_g = W_gᵀ · dY_g`, then col2im of each image's columns.
fn dx_of_tile(
    g: &ConvGeometry,
    low: &Lowering,
    w: &[f32],
    dy: &[f32],
    dx_tile: &mut [f32],
    dcols: &mut Vec<f32>,
    dpadded: &mut Vec<f32>,
) {
    let (k, p) = (low.k, low.p);
    let ld = dy.len() / g.oc.max(1);
    if low.pointwise {
        // cols is the image itself, so dcols is dx.
        input_gradient_gemms(low, w, dy, dx_tile, ld);
        return;
    }
    let dcols = resized(dcols, low.groups * k * ld);
    input_gradient_gemms(low, w, dy, dcols, ld);
    let x_per = g.ic * g.h * g.w;
    for (t, dx_img) in dx_tile.chunks_exact_mut(x_per).enumerate() {
        let dcols = &dcols[t * p..];
        if low.has_padding {
            let dpadded = zeroed(dpadded, g.ic * low.ph * low.pw);
            col2im(g, low, dcols, dpadded, ld);
            // Gradients that landed on the padding belong to no input: cut them off.
            for (to, from) in low.interior_rows(g) {
                copy_row(&mut dx_img[to..to + g.w], &dpadded[from..from + g.w]);
            }
        } else {
            dx_img.fill(0.0);
            col2im(g, low, dcols, dx_img, ld);
        }
    }
}

/// dy: (N, OC, OH, OW), w: (OC, IC/groups, KH, KW) → dx: (N, IC, H, W) (overwritten): the
/// input gradient alone, `dcols = Wᵀ · dY` and col2im as in [`backward`], without x and
/// without a weight gradient — which is what a transposed convolution computes as its
/// forward pass. The images are spread over the rayon pool as in [`forward`], so dx does
/// not depend on the thread count.
///
/// OH and OW may be smaller than the geometry's output-size formula gives: the outputs
/// past them then count as zero. (A transposed convolution whose output padding is at
/// least its stride meets such a convolution.)
pub fn input_gradient(g: &ConvGeometry, w: &[f32], dy: &[f32], dx: &mut [f32], ws: &mut Workspace) {
    check_lengths(g, dx, w, dy.len());
    if g.n == 0 || dx.is_empty() {
        return;
    }
    let low = Lowering::new(g);
    let (x_per, y_per) = (dx.len() / g.n, dy.len() / g.n);
    ws.prepare_threads();
    // The same forward pass of dy with the flipped kernel as `backward`, where there is one.
    let flipped = Flipped::new(g, &low, w, &mut ws.flipped);
    let threads = &ws.threads;
    let job_len = match &flipped {
        Some(flipped) => flipped.images_per_job(g),
        None => images_per_job(g, low.tile),
    };
    dx.par_chunks_mut(job_len * x_per)
        .enumerate()
        .with_max_len(1)
        .for_each(|(job, dx_job)| {
            let s = &mut *thread_scratch(threads);
            if let Some(flipped) = &flipped {
                let dy_job = &dy[job * job_len * y_per..][..dx_job.len() / x_per * y_per];
                flipped.run(dy_job, dx_job, s);
                return;
            }
            for (t, dx_tile) in dx_job.chunks_mut(low.tile * x_per).enumerate() {
                let first = job * job_len + t * low.tile;
                let images = dx_tile.len() / x_per;
                let dy_tile = &dy[first * y_per..][..images * y_per];
                let dy: &[f32] = if images == 1 {
                    dy_tile
                } else {
                    let side = resized(&mut s.side_by_side, g.oc * images * low.p);
                    side_by_side(g.oc, low.p, dy_tile, side);
                    side
                };
                dx_of_tile(g, &low, w, dy, dx_tile, &mut s.dcols, &mut s.dpadded);
            }
        });
}

/// dcols (IC·KH·KW, ld) (overwritten), group by group
/// `dcols_g (K, ld) = W_gᵀ (K, OC/groups) · dY_g (OC/groups, ld)`.
fn input_gradient_gemms(low: &Lowering, w: &[f32], dy: &[f32], dcols: &mut [f32], ld: usize) {
    let (k, ocg) = (low.k, low.ocg);
    for grp in 0..low.groups {
        gemm_one_thread(
            k,
            ld,
            ocg,
            &w[grp * ocg * k..][..ocg * k],
            true,
            &dy[grp * ocg * ld..][..ocg * ld],
            false,
            &mut dcols[grp * k * ld..][..k * ld],
            false,
        );
    }
}

/// Asserts the slice lengths the geometry implies, y's given as `y_len` (callers build
/// them from one tensor).
fn check_lengths(g: &ConvGeometry, x: &[f32], w: &[f32], y_len: usize) {
    assert_eq!(
        x.len(),
        g.n * g.ic * g.h * g.w,
        "conv: x does not match {g:?}"
    );
    assert_eq!(
        w.len(),
        g.oc * g.ic_per_group() * g.kh * g.kw,
        "conv: w does not match {g:?}"
    );
    assert_eq!(
        y_len,
        g.n * g.oc * g.oh * g.ow,
        "conv: y does not match {g:?}"
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::geometry::conv_output_len;
    use crate::kernels::reference;
    use crate::rng::Rng;
    use proptest::prelude::*;

    /// Settings of one test convolution; `geometry` derives the output size.
    #[derive(Clone, Copy, Debug)]
    struct Case {
        n: usize,
        ic: usize,
        oc: usize,
        groups: usize,
        hw: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: (usize, usize, usize, usize),
        dilation: (usize, usize),
        bias: bool,
    }

    impl Case {
        /// The geometry, or `None` when the output would be empty.
        fn geometry(&self) -> Option<ConvGeometry> {
            let (h, w) = self.hw;
            let (pt, pb, pl, pr) = self.pad;
            let oh = conv_output_len(h, self.kernel.0, self.stride.0, pt, pb, self.dilation.0)?;
            let ow = conv_output_len(w, self.kernel.1, self.stride.1, pl, pr, self.dilation.1)?;
            Some(ConvGeometry {
                n: self.n,
                ic: self.ic,
                h,
                w,
                oc: self.oc,
                kh: self.kernel.0,
                kw: self.kernel.1,
                stride: self.stride,
                pad: self.pad,
                dilation: self.dilation,
                groups: self.groups,
                oh,
                ow,
            })
        }
    }

    /// Random x, w, b and upstream gradient dy for a geometry.
    struct Data {
        x: Vec<f32>,
        w: Vec<f32>,
        b: Option<Vec<f32>>,
        dy: Vec<f32>,
    }

    fn random_data(g: &ConvGeometry, bias: bool, seed: u64) -> Data {
        let mut rng = Rng::new(seed);
        let mut normal = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal()).collect() };
        Data {
            x: normal(g.n * g.ic * g.h * g.w),
            w: normal(g.oc * g.ic_per_group() * g.kh * g.kw),
            b: bias.then(|| normal(g.oc)),
            dy: normal(g.n * g.oc * g.oh * g.ow),
        }
    }

    /// Fast forward and backward from zero gradients: `(y, dx, dw, db)`.
    fn fast(g: &ConvGeometry, d: &Data) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut ws = Workspace::default();
        let mut y = vec![f32::NAN; d.dy.len()];
        let epilogue = Epilogue {
            bias: d.b.as_deref(),
            relu: false,
        };
        forward(g, &d.x, &d.w, epilogue, &mut y, &mut ws);
        let mut dx = vec![f32::NAN; d.x.len()];
        let mut dw = vec![0.0; d.w.len()];
        let mut db = vec![0.0; g.oc];
        backward(
            g,
            &d.x,
            &d.w,
            &d.dy,
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
            &mut ws,
        );
        (y, dx, dw, db)
    }

    /// Element-wise `|got − want| ≤ 1e-4·max(1, max|want|)`, through the one
    /// [`crate::gradcheck::assert_close`].
    #[track_caller]
    pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        crate::gradcheck::assert_close(what, got, want, 0.0, 1e-4 * scale as f64);
    }

    fn check_against_reference(case: &Case, seed: u64) {
        let g = case.geometry().expect("non-empty output");
        let d = random_data(&g, case.bias, seed);
        let (y, dx, dw, db) = fast(&g, &d);
        let want_y = reference::conv2d_forward(&g, &d.x, &d.w, d.b.as_deref());
        assert_close("y", &y, &want_y);
        // With the ReLU in the epilogue: exactly the ReLU of the plain pass's y.
        let relu = Epilogue {
            bias: d.b.as_deref(),
            relu: true,
        };
        let mut y_relu = vec![f32::NAN; y.len()];
        forward(&g, &d.x, &d.w, relu, &mut y_relu, &mut Workspace::default());
        let want_relu: Vec<f32> = y.iter().map(|&v| relu.finish(v)).collect();
        assert_eq!(y_relu, want_relu, "y with the ReLU, {g:?}");
        // Pooled image by image as it is convolved: exactly the 2×2 max-pooling of that y.
        let pool = PoolGeometry::new(
            [g.n, g.oc, g.oh, g.ow],
            (2, 2),
            (2, 2),
            (0, 0),
            false,
            false,
        );
        if let Some(pool) = pool {
            let mut want = vec![f32::NAN; g.n * g.oc * pool.oh * pool.ow];
            let mut taps = vec![0; want.len()];
            pool::max_pool2d_forward(&pool, &y_relu, &mut want, &mut taps);
            let ws = &mut Workspace::default();
            let mut got = vec![f32::NAN; want.len()];
            forward_pooled(&g, &d.x, &d.w, relu, &pool, &mut got, None, ws);
            assert_eq!(got, want, "y with the ReLU, pooled, {g:?}");
            // And with the taps kept, as training needs them.
            let (mut got, mut got_taps) = (vec![f32::NAN; want.len()], vec![7; want.len()]);
            forward_pooled(
                &g,
                &d.x,
                &d.w,
                relu,
                &pool,
                &mut got,
                Some(&mut got_taps),
                ws,
            );
            assert_eq!(got, want, "y with the ReLU, pooled beside its taps, {g:?}");
            assert_eq!(got_taps, taps, "the taps of the pooling, {g:?}");
        }
        // The moments of every plane, taken as each image is convolved: exactly those of
        // that y, which is written all the same.
        let plane = g.oh * g.ow;
        let want: Vec<Moments> = y_relu.chunks_exact(plane.max(1)).map(Moments::of).collect();
        let mut moments = vec![Moments::default(); g.n * g.oc];
        let mut y_again = vec![f32::NAN; y.len()];
        let ws = &mut Workspace::default();
        forward_with_moments(&g, &d.x, &d.w, relu, &mut y_again, &mut moments, ws);
        assert_eq!(y_again, y_relu, "y beside its moments, {g:?}");
        if plane > 0 {
            assert_eq!(moments, want, "moments, {g:?}");
        }
        let (rdx, rdw, rdb) = reference::conv2d_backward(&g, &d.x, &d.w, &d.dy);
        assert_close("dx", &dx, &rdx);
        assert_close("dw", &dw, &rdw);
        assert_close("db", &db, &rdb);
    }

    fn divisors(v: usize) -> Vec<usize> {
        (1..=v).filter(|d| v.is_multiple_of(*d)).collect()
    }

    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }

    fn any_case() -> impl Strategy<Value = Case> {
        (
            (1usize..=4, 1usize..=8, 1usize..=8, 0usize..8),
            (1usize..=12, 1usize..=12, 1usize..=5, 1usize..=5),
            (1usize..=3, 1usize..=3, 1usize..=2, 1usize..=2),
            (0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2),
            any::<bool>(),
        )
            .prop_map(
                |((n, ic, oc, gi), (h, w, kh, kw), (sh, sw, dh, dw), pad, bias)| {
                    // Any common divisor of the channel counts is a valid group count.
                    let groups = divisors(gcd(ic, oc));
                    Case {
                        n,
                        ic,
                        oc,
                        groups: groups[gi % groups.len()],
                        hw: (h, w),
                        kernel: (kh, kw),
                        stride: (sh, sw),
                        pad,
                        dilation: (dh, dw),
                        bias,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn fast_path_matches_the_reference_loops(case in any_case(), seed in any::<u64>()) {
            prop_assume!(case.geometry().is_some());
            check_against_reference(&case, seed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        /// The input gradient on its own: the reference's dx, and the same bits as the dx
        /// of the full backward pass; also when the output stops short of the formula's
        /// size by a row or a column, as in a transposed convolution's forward pass.
        #[test]
        fn input_gradient_alone_matches_the_reference_loops(
            case in any_case(),
            seed in any::<u64>(),
            (cut_h, cut_w) in (0usize..2, 0usize..2),
        ) {
            let Some(mut g) = case.geometry() else {
                return Err(TestCaseError::reject("empty output"));
            };
            g.oh = (g.oh - cut_h).max(1);
            g.ow = (g.ow - cut_w).max(1);
            let (dx, full_dx) = input_gradient_alone(&g, seed);
            prop_assert_eq!(dx, full_dx, "{:?}", g);
        }
    }

    /// dx by `input_gradient`, held to the reference's, and dx by the full backward pass.
    fn input_gradient_alone(g: &ConvGeometry, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let d = random_data(g, false, seed);
        let mut ws = Workspace::default();
        let mut dx = vec![f32::NAN; d.x.len()];
        input_gradient(g, &d.w, &d.dy, &mut dx, &mut ws);
        let (rdx, _, _) = reference::conv2d_backward(g, &d.x, &d.w, &d.dy);
        assert_close("dx", &dx, &rdx);
        let mut full_dx = vec![f32::NAN; d.x.len()];
        let mut dw = vec![0.0; d.w.len()];
        backward(
            g,
            &d.x,
            &d.w,
            &d.dy,
            Some(&mut full_dx),
            &mut dw,
            None,
            &mut ws,
        );
        (dx, full_dx)
    }

    /// The input gradient alone on the Winograd path, as a transposed convolution
    /// computes it: the reference's dx, and the same bits as the full backward pass's.
    #[test]
    fn input_gradient_alone_on_the_winograd_path() {
        for case in [same_3x3(5, 48, 64, 8), same_3x3(3, 64, 40, 7)] {
            let g = case.geometry().unwrap();
            assert!(winograd::applies(&direct::input_gradient_geometry(&g)));
            let (dx, full_dx) = input_gradient_alone(&g, 5);
            assert_eq!(dx, full_dx, "{g:?}");
        }
    }

    /// A 3×3 "same" convolution, the shape most networks use.
    fn same_3x3(n: usize, ic: usize, oc: usize, hw: usize) -> Case {
        Case {
            n,
            ic,
            oc,
            groups: 1,
            hw: (hw, hw),
            kernel: (3, 3),
            stride: (1, 1),
            pad: (1, 1, 1, 1),
            dilation: (1, 1),
            bias: true,
        }
    }

    #[test]
    fn special_shapes_match_the_reference_loops() {
        let base = same_3x3(3, 4, 6, 7);
        let cases = [
            base,
            // 1×1, stride 1, no padding: the image is used as cols directly.
            Case {
                kernel: (1, 1),
                pad: (0, 0, 0, 0),
                ..base
            },
            Case {
                kernel: (1, 1),
                pad: (0, 0, 0, 0),
                groups: 2,
                bias: false,
                ..base
            },
            // 1×1 but strided (the direct path) or padded (im2col).
            Case {
                kernel: (1, 1),
                stride: (2, 2),
                pad: (0, 0, 0, 0),
                ..base
            },
            Case {
                kernel: (1, 1),
                pad: (0, 1, 2, 0),
                ..base
            },
            // Padding wider than the kernel: whole rows and columns of padding.
            Case {
                kernel: (2, 2),
                pad: (3, 0, 0, 3),
                ..base
            },
            // Stride wider than the kernel: input pixels no output reads.
            Case {
                kernel: (2, 1),
                stride: (3, 4),
                ..base
            },
            // Depthwise.
            Case {
                oc: 8,
                groups: 4,
                dilation: (2, 2),
                pad: (2, 2, 2, 2),
                ..base
            },
            // A kernel as large as the padded image: one output pixel.
            Case {
                hw: (3, 5),
                kernel: (5, 7),
                ..base
            },
            // A single image larger than the thread count would suggest splitting.
            same_3x3(1, 3, 5, 12),
            // Rows of 16 to 31 and of 32 or more values, copied differently by im2col.
            same_3x3(2, 2, 3, 20),
            same_3x3(1, 1, 2, 33),
            // The direct path's weight gradients: by channel (whole vectors of output
            // channels, small images) and by position (rows of 512 positions and more).
            same_3x3(3, 5, 32, 6),
            same_3x3(2, 3, 5, 24),
            // The Winograd path (forward and dx): chunks of several images, the last one
            // short; odd sizes, whose last tiles are cut.
            same_3x3(5, 32, 64, 8),
            same_3x3(3, 40, 48, 9),
        ];
        for (i, case) in cases.iter().enumerate() {
            check_against_reference(case, i as u64);
        }
    }

    #[test]
    fn backward_adds_into_the_parameter_gradients() {
        let case = Case {
            stride: (2, 1),
            groups: 2,
            ..same_3x3(5, 4, 6, 9)
        };
        let g = case.geometry().unwrap();
        let d = random_data(&g, true, 11);
        let mut ws = Workspace::default();
        let mut dx = vec![0.0; d.x.len()];
        let mut dw = vec![0.0; d.w.len()];
        let mut db = vec![0.0; g.oc];
        backward(
            &g,
            &d.x,
            &d.w,
            &d.dy,
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
            &mut ws,
        );
        let (dx1, dw1, db1) = (dx.clone(), dw.clone(), db.clone());
        assert!(dw1.iter().any(|v| *v != 0.0) && db1.iter().any(|v| *v != 0.0));
        // Start dx from garbage: it must be overwritten, not added into.
        dx.fill(f32::NAN);
        backward(
            &g,
            &d.x,
            &d.w,
            &d.dy,
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
            &mut ws,
        );
        assert_eq!(dx, dx1, "dx is overwritten");
        let doubled = |v: &[f32]| v.iter().map(|a| 2.0 * a).collect::<Vec<f32>>();
        assert_eq!(dw, doubled(&dw1), "dw is added into");
        assert_eq!(db, doubled(&db1), "db is added into");
        // Without dx, the parameter gradients are the same bits.
        let (mut dw_only, mut db_only) = (vec![0.0; d.w.len()], vec![0.0; g.oc]);
        backward(
            &g,
            &d.x,
            &d.w,
            &d.dy,
            None,
            &mut dw_only,
            Some(&mut db_only),
            &mut ws,
        );
        assert_eq!(
            (dw_only, db_only),
            (dw1, db1),
            "parameter gradients without dx"
        );
    }

    fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool")
            .install(f)
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count_and_repeat_exactly() {
        // Images large enough for one forward job each, and small ones grouped into jobs.
        let cases = [
            same_3x3(7, 8, 16, 24),
            same_3x3(9, 64, 48, 6),
            Case {
                hw: (9, 7),
                kernel: (3, 2),
                stride: (2, 1),
                pad: (1, 0, 2, 1),
                dilation: (1, 2),
                groups: 2,
                ..same_3x3(6, 4, 6, 0)
            },
        ];
        for case in cases {
            let g = case.geometry().unwrap();
            let d = random_data(&g, true, 3);
            let (y1, dx1, _, _) = on_threads(1, || fast(&g, &d));
            for threads in [2, 3] {
                let (y, dx, dw, db) = on_threads(threads, || fast(&g, &d));
                assert_eq!(y, y1, "y on {threads} threads");
                assert_eq!(dx, dx1, "dx on {threads} threads");
                // dw and db are summed per chunk of the batch: identical from run to run
                // at a fixed thread count.
                let (_, _, dw_again, db_again) = on_threads(threads, || fast(&g, &d));
                assert_eq!(dw, dw_again, "dw repeated on {threads} threads");
                assert_eq!(db, db_again, "db repeated on {threads} threads");
            }
        }
    }
}
