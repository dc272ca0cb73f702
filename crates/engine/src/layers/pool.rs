//! Pooling: max and average over sliding windows ([`MaxPool2d`], [`AvgPool2d`]) and global
//! average pooling ([`GlobalAvgPool`]). None of them has parameters (notes §2.3).

use std::hint::select_unpredictable;
use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::geometry::{pool_output_len, ReceptiveField};
use crate::layers::{expect_nchw, expect_same_shape, kept, Layer, Mode};
use crate::spec::{LayerSpec, Size2};
use crate::tensor::Tensor;

/// Settings shared by [`MaxPool2d`] and [`AvgPool2d`]: PyTorch's `kernel_size`, `stride`,
/// `padding` and `ceil_mode`, and average pooling's `count_include_pad`, with PyTorch's
/// defaults (and its `dilation=1`). Start from [`Pool2dConfig::new`] and adjust:
///
/// ```
/// use ocellus::layers::{AvgPool2d, Pool2dConfig};
///
/// // nn.AvgPool2d(3, stride=(2, 1), padding=1, ceil_mode=True, count_include_pad=False)
/// let config = Pool2dConfig::new(3)
///     .stride_hw(2, 1)
///     .padding(1)
///     .ceil_mode(true)
///     .count_include_pad(false);
/// let pool = AvgPool2d::new(config).unwrap();
/// assert_eq!(pool.output_shape(&[1, 1, 6, 6]).unwrap(), [1, 1, 4, 6]);
/// # use ocellus::Layer;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// (KH, KW)
    pub kernel: (usize, usize),
    /// (vertical, horizontal); `None` means "equal to the kernel", PyTorch's `stride=None`.
    pub stride: Option<(usize, usize)>,
    /// (rows above and below, columns left and right), PyTorch's `padding=(ph, pw)`.
    pub padding: (usize, usize),
    /// Round output sizes up instead of down, so that a last, partial window covers the
    /// leftover rows and columns — PyTorch's `ceil_mode` (default false); the formula is
    /// [`pool_output_len`].
    pub ceil_mode: bool,
    /// Average pooling only: whether padded positions count in the divisor (PyTorch's
    /// `count_include_pad`, default true). Max pooling never counts padding and refuses
    /// `false` here, as PyTorch's `nn.MaxPool2d` has no such argument.
    pub count_include_pad: bool,
}

impl Pool2dConfig {
    /// A square `k×k` window moved by `k` (non-overlapping), no padding: `nn.MaxPool2d(k)`.
    pub fn new(k: usize) -> Self {
        Pool2dConfig {
            kernel: (k, k),
            stride: None,
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Sets the window to `KH×KW`.
    pub fn kernel(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = (kh, kw);
        self
    }

    /// Sets the same stride on both axes.
    pub fn stride(self, s: usize) -> Self {
        self.stride_hw(s, s)
    }

    /// Sets the vertical and the horizontal stride.
    pub fn stride_hw(mut self, sh: usize, sw: usize) -> Self {
        self.stride = Some((sh, sw));
        self
    }

    /// Sets the same padding on all four sides.
    pub fn padding(self, p: usize) -> Self {
        self.padding_hw(p, p)
    }

    /// Sets `ph` rows above and below and `pw` columns left and right.
    pub fn padding_hw(mut self, ph: usize, pw: usize) -> Self {
        self.padding = (ph, pw);
        self
    }

    /// Rounds output sizes up (`true`) or down (`false`, the default).
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Counts padded positions in an average's divisor (`true`, the default) or not.
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }

    /// The window as an architecture entry's settings: (kernel, stride, padding).
    fn spec_sizes(&self) -> (Size2, Option<Size2>, Option<Size2>) {
        let (ph, pw) = self.padding;
        (
            Size2::from_hw(self.kernel),
            self.stride.map(Size2::from_hw),
            (self.padding != (0, 0)).then(|| Size2::from_hw((ph, pw))),
        )
    }

    /// The stride in effect: the kernel unless set.
    pub fn effective_stride(&self) -> (usize, usize) {
        self.stride.unwrap_or(self.kernel)
    }

    /// PyTorch's checks: positive sizes, and padding at most half the kernel
    /// ("pad should be at most half of kernel size"), which guarantees that every window
    /// holds at least one real input value.
    fn validate(&self, layer: &str) -> Result<()> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.effective_stride();
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(Error::config(layer, "kernel and stride must be positive"));
        }
        if ph > kh / 2 || pw > kw / 2 {
            return Err(Error::config(
                layer,
                format!(
                    "padding ({ph}, {pw}) must be at most half of the {kh}×{kw} kernel \
                     (PyTorch's rule), i.e. at most ({}, {})",
                    kh / 2,
                    kw / 2
                ),
            ));
        }
        Ok(())
    }

    /// `MaxPool2d(2×2, stride 2)` style description, `name` being the layer's name.
    fn describe(&self, name: &str) -> String {
        let (sh, sw) = self.effective_stride();
        let mut s = format!("{name}({}×{}", self.kernel.0, self.kernel.1);
        if sh == sw {
            s += &format!(", stride {sh}");
        } else {
            s += &format!(", stride ({sh}, {sw})");
        }
        match self.padding {
            (0, 0) => {}
            (ph, pw) if ph == pw => s += &format!(", pad {ph}"),
            (ph, pw) => s += &format!(", pad ({ph}, {pw})"),
        }
        if self.ceil_mode {
            s += ", ceil mode";
        }
        if !self.count_include_pad {
            s += ", padding not counted";
        }
        s + ")"
    }

    /// The receptive-field recurrence with this window and stride (padding does not matter).
    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        let (sh, sw) = self.effective_stride();
        [
            before[0].through(self.kernel.0, sh, 1),
            before[1].through(self.kernel.1, sw, 1),
        ]
    }

    /// Sizes of one pooling pass over an input of shape (N, C, H, W).
    fn geometry(&self, layer: &str, input: &[usize]) -> Result<PoolGeometry> {
        expect_nchw(layer, input, None)?;
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.effective_stride();
        let (ph, pw) = self.padding;
        let (h, w) = (input[2], input[3]);
        if h == 0 || w == 0 {
            return Err(Error::shape(layer, "(N, C, H, W) with H, W ≥ 1", input));
        }
        let (Some(oh), Some(ow)) = (
            pool_output_len(h, kh, sh, ph, ph, 1, self.ceil_mode),
            pool_output_len(w, kw, sw, pw, pw, 1, self.ceil_mode),
        ) else {
            return Err(Error::shape(
                layer,
                format!("an image at least as large as the {kh}×{kw} window (after padding)"),
                input,
            )
            .with_hint("too many poolings for this image size? remove one or use a larger input"));
        };
        Ok(PoolGeometry {
            n: input[0],
            c: input[1],
            h,
            w,
            oh,
            ow,
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
            count_include_pad: self.count_include_pad,
        })
    }
}

/// Everything that fixes the arithmetic of one pooling pass. The passes run plane by
/// plane, a plane being one channel of one image: an H×W input map, an OH×OW output map.
struct PoolGeometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
}

impl PoolGeometry {
    fn output_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.oh, self.ow]
    }

    /// Input rows covered by output row `oi`: the window `oi·S − P .. oi·S − P + K`, clipped
    /// to the image (padded positions hold no value).
    fn rows(&self, oi: usize) -> Range<usize> {
        window(oi, self.stride.0, self.padding.0, self.kernel.0, self.h)
    }

    /// Input columns covered by output column `oj`, clipped like [`Self::rows`].
    fn cols(&self, oj: usize) -> Range<usize> {
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
    fn windows_inside(&self) -> bool {
        let fits = |o: usize, s: usize, k: usize, len: usize| (o - 1) * s + k <= len;
        self.padding == (0, 0)
            && fits(self.oh, self.stride.0, self.kernel.0, self.h)
            && fits(self.ow, self.stride.1, self.kernel.1, self.w)
    }

    /// The ubiquitous 2×2 windows, stride 2, no padding, none hanging past the image: they
    /// tile the plane, which [`max_2x2_plane`] and [`route_2x2_plane`] make use of.
    fn is_2x2_tiling(&self) -> bool {
        self.kernel == (2, 2) && self.stride == (2, 2) && self.windows_inside()
    }

    /// The divisor of the average over the window of output (oi, oj), PyTorch's
    /// `divide_factor`: the positions of the window that lie in the padded image when
    /// padding counts (a window hanging past the padding in ceil mode counts only what
    /// lies inside it), else the real input positions alone.
    fn divisor(&self, oi: usize, oj: usize) -> f32 {
        if self.count_include_pad {
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

/// Max pooling (PyTorch's `nn.MaxPool2d` with `dilation=1`). Padded positions, and in
/// ceil mode the part of a last window that hangs past the image, count as −∞, so they
/// are never chosen.
pub struct MaxPool2d {
    config: Pool2dConfig,
    /// What backward needs of the last forward pass: for each output, (N, C, OH, OW)
    /// row-major, which position of its window held the maximum, numbered row-major
    /// within the window (clipped to the image). Two bytes per output, a quarter of the
    /// output itself; backward then reads neither the input nor the output.
    taps: Vec<Tap>,
    /// The input shape of the last forward pass, (N, C, H, W).
    input_shape: Option<Vec<usize>>,
}

/// A position within one pooling window, row-major.
type Tap = u16;

impl MaxPool2d {
    /// A max-pooling layer; fails on a zero kernel or stride, padding above half the
    /// kernel (PyTorch's rule), a window of more than 65,535 positions, or
    /// `count_include_pad` turned off.
    pub fn new(config: Pool2dConfig) -> Result<Self> {
        config.validate("maxpool2d")?;
        if !config.count_include_pad {
            return Err(Error::config(
                "maxpool2d",
                "count_include_pad is a setting of average pooling; max pooling never \
                 counts padding (PyTorch's nn.MaxPool2d has no such argument)",
            ));
        }
        let (kh, kw) = config.kernel;
        // Taps are counted up in Tap, whose last value is never passed.
        if kh * kw > usize::from(Tap::MAX) {
            return Err(Error::config(
                "maxpool2d",
                format!("a {kh}×{kw} window has more than 65,535 positions"),
            ));
        }
        Ok(MaxPool2d {
            config,
            taps: Vec::new(),
            input_shape: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &Pool2dConfig {
        &self.config
    }

    /// For each output of the last forward pass, (N, C, OH, OW) row-major, the flat index
    /// of the input value it took; `None` before any forward.
    pub fn argmax(&self) -> Option<Vec<usize>> {
        let g = self
            .config
            .geometry(self.kind(), self.input_shape.as_ref()?)
            .ok()?;
        let (rows, cols) = g.windows();
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let argmax = self
            .taps
            .chunks_exact(out_plane)
            .enumerate()
            .flat_map(|(p, taps)| {
                let windows = every_window(&rows, &cols);
                windows
                    .zip(taps)
                    .map(move |((r, c), &tap)| p * in_plane + tap_position(g.w, r, c, tap))
            });
        Some(argmax.collect())
    }
}

impl Layer for MaxPool2d {
    fn kind(&self) -> &'static str {
        "maxpool2d"
    }

    fn describe(&self) -> String {
        self.config.describe("MaxPool2d")
    }

    fn spec(&self) -> LayerSpec {
        let (kernel, stride, padding) = self.config.spec_sizes();
        LayerSpec::MaxPool2d {
            kernel,
            stride,
            padding,
            ceil_mode: self.config.ceil_mode,
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.config.geometry(self.kind(), input)?.output_shape())
    }

    /// x: (N, C, H, W) → y: (N, C, OH, OW), `y[n,c,i,j] = max_{window(i,j)} x[n,c,·,·]`.
    ///
    /// A NaN in a window wins, as in PyTorch's CPU kernel
    /// (`if (val > maxval || isnan(val))`); of several NaNs the last one. Ties go to the
    /// first maximum in row-major order, the one PyTorch keeps.
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let g = self.config.geometry(self.kind(), x.shape())?;
        let mut y = Tensor::for_overwrite(&g.output_shape());
        self.taps.resize(y.len(), 0);
        let (rows, cols) = g.windows();
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let planes_per_job = g.planes_per_job();
        let job = planes_per_job * out_plane;
        y.data_mut()
            .par_chunks_mut(job)
            .zip(self.taps.par_chunks_mut(job))
            .enumerate()
            .for_each(|(j, (y, taps))| {
                let planes = y
                    .chunks_exact_mut(out_plane)
                    .zip(taps.chunks_exact_mut(out_plane));
                for (p, (y, taps)) in planes.enumerate() {
                    let x = &x.data()[(j * planes_per_job + p) * in_plane..][..in_plane];
                    match g.stride.1 {
                        _ if g.is_2x2_tiling() => max_2x2_plane(&g, x, y, taps),
                        1 if g.windows_inside() => max_unpadded_plane::<1>(&g, x, y, taps),
                        2 if g.windows_inside() => max_unpadded_plane::<2>(&g, x, y, taps),
                        _ => {
                            let outputs = y.iter_mut().zip(taps.iter_mut());
                            for ((r, c), (y, tap)) in every_window(&rows, &cols).zip(outputs) {
                                let window = r.clone().flat_map(|row| &x[row * g.w..][c.clone()]);
                                (*y, *tap) = (f32::NEG_INFINITY, 0);
                                for (&v, t) in window.zip(0..) {
                                    offer(y, tap, v, t);
                                }
                            }
                        }
                    }
                }
            });
        self.input_shape = Some(x.shape().to_vec());
        Ok(y)
    }

    /// dy: (N, C, OH, OW) → dx: (N, C, H, W).
    ///
    /// `y = x[argmax]`, so `∂y/∂x` is 1 at the argmax and 0 elsewhere:
    /// `dx[argmax] += dy`, the argmax being the tap the forward pass recorded. With
    /// overlapping windows one input can be the maximum of several outputs; their
    /// gradients add.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let shape = kept(&self.input_shape, self.kind())?;
        let g = self.config.geometry(self.kind(), shape)?;
        expect_same_shape(self.kind(), &g.output_shape(), dy.shape())?;
        let (rows, cols) = g.windows();
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let mut dx = if g.is_2x2_tiling() {
            Tensor::for_overwrite(shape)
        } else {
            Tensor::zeros(shape)
        };
        dx.data_mut()
            .par_chunks_mut(in_plane.max(1))
            .zip(
                self.taps
                    .par_chunks(out_plane)
                    .zip(dy.data().par_chunks(out_plane)),
            )
            .with_min_len(g.planes_per_job())
            .for_each(|(dx, (taps, dy))| {
                if g.is_2x2_tiling() {
                    route_2x2_plane(&g, taps, dy, dx);
                } else {
                    for ((r, c), (&tap, &d)) in every_window(&rows, &cols).zip(taps.iter().zip(dy))
                    {
                        dx[tap_position(g.w, r, c, tap)] += d;
                    }
                }
            });
        Ok(dx)
    }

    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        self.config.receptive_field(before)
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
fn max_2x2_plane(g: &PoolGeometry, x: &[f32], y: &mut [f32], taps: &mut [Tap]) {
    const B: usize = MAX_2X2_BLOCK;
    let rows = x.chunks_exact(2 * g.w);
    for ((y, taps), rows) in y
        .chunks_exact_mut(g.ow)
        .zip(taps.chunks_exact_mut(g.ow))
        .zip(rows)
    {
        let (top, bottom) = rows.split_at(g.w);
        let (top, bottom) = (&top[..2 * g.ow], &bottom[..2 * g.ow]);
        let (mut y8, mut taps8) = (y.chunks_exact_mut(B), taps.chunks_exact_mut(B));
        let (mut top16, mut bottom16) = (top.chunks_exact(2 * B), bottom.chunks_exact(2 * B));
        for (((y, taps), top), bottom) in
            (&mut y8).zip(&mut taps8).zip(&mut top16).zip(&mut bottom16)
        {
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

/// Average pooling, PyTorch's `nn.AvgPool2d` (without `divisor_override`): the sum over a
/// window divided by its size. With `count_include_pad` (the default) padded zeros count:
/// a window is divided by KH·KW, except that in ceil mode a last window hanging past the
/// padded image is divided by the part of it inside. Without, a window is divided by
/// the number of real input positions it holds.
pub struct AvgPool2d {
    config: Pool2dConfig,
    /// The input shape of the last forward pass, (N, C, H, W): all backward needs.
    input_shape: Option<Vec<usize>>,
}

impl AvgPool2d {
    /// An average-pooling layer; fails on a zero kernel or stride, or padding above half
    /// the kernel (PyTorch's rule).
    pub fn new(config: Pool2dConfig) -> Result<Self> {
        config.validate("avgpool2d")?;
        Ok(AvgPool2d {
            config,
            input_shape: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &Pool2dConfig {
        &self.config
    }
}

impl Layer for AvgPool2d {
    fn kind(&self) -> &'static str {
        "avgpool2d"
    }

    fn describe(&self) -> String {
        self.config.describe("AvgPool2d")
    }

    fn spec(&self) -> LayerSpec {
        let (kernel, stride, padding) = self.config.spec_sizes();
        LayerSpec::AvgPool2d {
            kernel,
            stride,
            padding,
            ceil_mode: self.config.ceil_mode,
            count_include_pad: self.config.count_include_pad,
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.config.geometry(self.kind(), input)?.output_shape())
    }

    /// x: (N, C, H, W) → y: (N, C, OH, OW), `y[n,c,i,j] = Σ_{window(i,j)} x / d(i,j)`,
    /// with `d(i,j)` the divisor of the window (see the type's docs).
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let g = self.config.geometry(self.kind(), x.shape())?;
        let mut y = Tensor::zeros(&g.output_shape());
        y.data_mut()
            .par_chunks_mut(g.oh * g.ow)
            .zip(x.data().par_chunks(g.h * g.w))
            .for_each(|(y, x)| {
                for oi in 0..g.oh {
                    let rows = g.rows(oi);
                    for oj in 0..g.ow {
                        let cols = g.cols(oj);
                        let sum: f32 = rows
                            .clone()
                            .map(|r| {
                                x[r * g.w + cols.start..r * g.w + cols.end]
                                    .iter()
                                    .sum::<f32>()
                            })
                            .sum();
                        y[oi * g.ow + oj] = sum / g.divisor(oi, oj);
                    }
                }
            });
        self.input_shape = Some(x.shape().to_vec());
        Ok(y)
    }

    /// dy: (N, C, OH, OW) → dx: (N, C, H, W).
    ///
    /// Each input in the window has `∂y/∂x = 1/d`, so `dy/d` is spread equally over the
    /// window's real positions; overlapping windows add.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let input_shape = kept(&self.input_shape, self.kind())?;
        let g = self.config.geometry(self.kind(), input_shape)?;
        expect_same_shape(self.kind(), &g.output_shape(), dy.shape())?;
        let mut dx = Tensor::zeros(input_shape);
        dx.data_mut()
            .par_chunks_mut(g.h * g.w)
            .zip(dy.data().par_chunks(g.oh * g.ow))
            .for_each(|(dx, dy)| {
                for oi in 0..g.oh {
                    let rows = g.rows(oi);
                    for oj in 0..g.ow {
                        let cols = g.cols(oj);
                        let d = dy[oi * g.ow + oj] / g.divisor(oi, oj);
                        for r in rows.clone() {
                            for v in &mut dx[r * g.w + cols.start..r * g.w + cols.end] {
                                *v += d;
                            }
                        }
                    }
                }
            });
        Ok(dx)
    }

    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        self.config.receptive_field(before)
    }
}

/// Global average pooling: each H×W feature map becomes its mean. The output is
/// (N, C, 1, 1), exactly as PyTorch's `nn.AdaptiveAvgPool2d(1)`, so a following
/// [`Flatten`](crate::layers::Flatten) gives (N, C).
///
/// Every output sees the whole image; the receptive-field recurrence cannot express that
/// without the image size, so [`Layer::receptive_field`] leaves it unchanged.
#[derive(Default)]
pub struct GlobalAvgPool {
    /// The input shape of the last forward pass, (N, C, H, W): all backward needs.
    input_shape: Option<Vec<usize>>,
}

impl GlobalAvgPool {
    pub fn new() -> Self {
        GlobalAvgPool::default()
    }
}

impl Layer for GlobalAvgPool {
    fn kind(&self) -> &'static str {
        "globalavgpool"
    }

    fn describe(&self) -> String {
        "GlobalAvgPool".into()
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::GlobalAvgPool
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        expect_nchw(self.kind(), input, None)?;
        if input[2] == 0 || input[3] == 0 {
            return Err(Error::shape(
                self.kind(),
                "(N, C, H, W) with H, W ≥ 1",
                input,
            ));
        }
        Ok(vec![input[0], input[1], 1, 1])
    }

    /// x: (N, C, H, W) → y: (N, C, 1, 1), `y[n,c] = Σ_{h,w} x[n,c,h,w] / (H·W)`.
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let shape = self.output_shape(x.shape())?;
        let area = x.shape()[2] * x.shape()[3];
        let means = x
            .data()
            .chunks(area)
            .map(|plane| plane.iter().sum::<f32>() / area as f32)
            .collect();
        self.input_shape = Some(x.shape().to_vec());
        Tensor::from_vec(&shape, means)
    }

    /// dy: (N, C, 1, 1) → dx: (N, C, H, W), `dx[n,c,h,w] = dy[n,c] / (H·W)`.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let input_shape = kept(&self.input_shape, self.kind())?;
        expect_same_shape(self.kind(), &self.output_shape(input_shape)?, dy.shape())?;
        let area = input_shape[2] * input_shape[3];
        let mut dx = Tensor::zeros(input_shape);
        for (plane, d) in dx.data_mut().chunks_mut(area).zip(dy.data()) {
            plane.fill(d / area as f32);
        }
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::LayerExt;

    fn notes_input() -> Tensor {
        #[rustfmt::skip]
        let x = vec![
            1.0, 3.0, 2.0, 4.0,
            5.0, 6.0, 1.0, 2.0,
            1.0, 2.0, 3.0, 0.0,
            0.0, 1.0, 1.0, 4.0,
        ];
        Tensor::from_vec(&[1, 1, 4, 4], x).unwrap()
    }

    #[test]
    fn notes_2_3_max_pool_and_its_gradient_routing() {
        let mut pool = MaxPool2d::new(Pool2dConfig::new(2)).unwrap();
        let y = pool.forward_ref(&notes_input(), Mode::Train).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.data(), &[6.0, 4.0, 2.0, 4.0]);
        // The maxima sit at (1,1), (0,3), (2,1), (3,3).
        assert_eq!(pool.argmax().unwrap(), &[5, 3, 9, 15]);
        let dy = Tensor::from_vec(&[1, 1, 2, 2], vec![10.0, 20.0, 30.0, 40.0]).unwrap();
        let dx = pool.backward_ref(&dy).unwrap();
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 0.0, 20.0,
            0.0, 10.0, 0.0, 0.0,
            0.0, 30.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 40.0,
        ];
        assert_eq!(dx.data(), &expected);
    }

    /// PyTorch's max pooling written out window by window: scan the window row-major,
    /// take a value that is larger than the best so far or NaN; route `dy` to the taken
    /// position. Returns (y, dx).
    fn max_pool_by_definition(
        config: Pool2dConfig,
        x: &Tensor,
        dy: impl Fn(usize) -> f32,
    ) -> (Vec<f32>, Vec<f32>) {
        let g = config.geometry("maxpool2d", x.shape()).unwrap();
        let (mut y, mut dx) = (Vec::new(), vec![0.0; x.len()]);
        for plane in 0..g.n * g.c {
            for oi in 0..g.oh {
                for oj in 0..g.ow {
                    let (mut best, mut at) = (f32::NEG_INFINITY, None);
                    for r in g.rows(oi) {
                        for c in g.cols(oj) {
                            let i = (plane * g.h + r) * g.w + c;
                            if x.data()[i] > best || x.data()[i].is_nan() {
                                (best, at) = (x.data()[i], Some(i));
                            }
                        }
                    }
                    dx[at.unwrap()] += dy(y.len());
                    y.push(best);
                }
            }
        }
        (y, dx)
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Every forward and backward path (2×2 tiles, unpadded strides 1 and 2, the
        /// general windows) against the definition, on values with many ties and NaNs.
        #[test]
        fn max_pool_matches_its_definition(
            (k, stride, pad) in (1usize..4, 1usize..4).prop_flat_map(|(k, s)| (Just(k), Just(s), 0..=k / 2)),
            (n, c, h, w) in (1usize..3, 1usize..3, 1usize..8, 1usize..8),
            values in prop::collection::vec(0u8..5, 2 * 2 * 7 * 7),
            ceil_mode in any::<bool>(),
        ) {
            let config = Pool2dConfig::new(k).stride(stride).padding(pad).ceil_mode(ceil_mode);
            let mut pool = MaxPool2d::new(config).unwrap();
            let values = values.iter().map(|&v| if v == 4 { f32::NAN } else { f32::from(v) });
            let x = Tensor::from_vec(&[n, c, h, w], values.take(n * c * h * w).collect()).unwrap();
            prop_assume!(config.geometry("maxpool2d", x.shape()).is_ok());
            let (y, dx) = max_pool_by_definition(config, &x, |i| 1.0 + i as f32);
            let fast_y = pool.forward_ref(&x, Mode::Train).unwrap();
            let same = |a: &f32, b: &f32| a == b || a.is_nan() && b.is_nan();
            prop_assert!(fast_y.data().iter().zip(&y).all(|(a, b)| same(a, b)));
            let dy = Tensor::from_vec(fast_y.shape(), (0..y.len()).map(|i| 1.0 + i as f32).collect()).unwrap();
            let fast_dx = pool.backward_ref(&dy).unwrap();
            prop_assert_eq!(fast_dx.data(), &dx[..]);
        }
    }

    #[test]
    fn window_is_clipped_to_the_image() {
        // k = 3, pad 1, stride 2 over 5 positions: windows [-1,2), [1,4), [3,6) → clipped.
        assert_eq!(window(0, 2, 1, 3, 5), 0..2);
        assert_eq!(window(1, 2, 1, 3, 5), 1..4);
        assert_eq!(window(2, 2, 1, 3, 5), 3..5);
    }
}
