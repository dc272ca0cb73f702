//! Pooling: max and average over sliding windows ([`MaxPool2d`], [`AvgPool2d`]) and global
//! average pooling ([`GlobalAvgPool`]). None of them has parameters (notes §2.3).

use std::hint::select_unpredictable;
use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::geometry::{conv_output_len, ReceptiveField};
use crate::layers::{expect_nchw, expect_same_shape, kept, Layer, Mode};
use crate::tensor::Tensor;

/// Settings shared by [`MaxPool2d`] and [`AvgPool2d`]: PyTorch's `kernel_size`, `stride`
/// and `padding`, with its defaults `dilation=1` and `ceil_mode=False` (output sizes are
/// rounded down). Start from [`Pool2dConfig::new`] and adjust fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// (KH, KW)
    pub kernel: (usize, usize),
    /// (vertical, horizontal); `None` means "equal to the kernel", PyTorch's `stride=None`.
    pub stride: Option<(usize, usize)>,
    /// (rows above and below, columns left and right), PyTorch's `padding=(ph, pw)`.
    pub padding: (usize, usize),
}

impl Pool2dConfig {
    /// A square `k×k` window moved by `k` (non-overlapping), no padding: `nn.MaxPool2d(k)`.
    pub fn new(k: usize) -> Self {
        Pool2dConfig {
            kernel: (k, k),
            stride: None,
            padding: (0, 0),
        }
    }

    /// Sets the window to `KH×KW`.
    pub fn kernel(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = (kh, kw);
        self
    }

    /// Sets the same stride on both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = Some((s, s));
        self
    }

    /// Sets the same padding on all four sides.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
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
            conv_output_len(h, kh, sh, ph, ph, 1),
            conv_output_len(w, kw, sw, pw, pw, 1),
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

/// Max pooling (PyTorch's `nn.MaxPool2d` with `dilation=1`, `ceil_mode=False`). Padded
/// positions count as −∞, so they are never chosen.
pub struct MaxPool2d {
    config: Pool2dConfig,
    /// The input and output of the last forward pass: backward finds each output's value
    /// in its window again (cheaper than writing an index per output in every forward
    /// pass, inference included).
    input: Option<Tensor>,
    output: Option<Tensor>,
}

impl MaxPool2d {
    /// A max-pooling layer; fails on a zero kernel or stride, or padding above half the
    /// kernel (PyTorch's rule).
    pub fn new(config: Pool2dConfig) -> Result<Self> {
        config.validate("maxpool2d")?;
        Ok(MaxPool2d {
            config,
            input: None,
            output: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &Pool2dConfig {
        &self.config
    }

    /// For each output of the last forward pass, (N, C, OH, OW) row-major, the flat index
    /// of the input value it took; `None` before any forward.
    pub fn argmax(&self) -> Option<Vec<usize>> {
        let (x, y) = (self.input.as_ref()?, self.output.as_ref()?);
        let g = self.config.geometry(self.kind(), x.shape()).ok()?;
        let (rows, cols) = g.windows();
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let mut argmax = Vec::with_capacity(y.len());
        for (p, y) in y.data().chunks_exact(out_plane).enumerate() {
            let x = &x.data()[p * in_plane..][..in_plane];
            for ((r, c), &best) in every_window(&rows, &cols).zip(y) {
                argmax.push(p * in_plane + position_of_max(x, g.w, r, c, best));
            }
        }
        Some(argmax)
    }
}

impl Layer for MaxPool2d {
    fn kind(&self) -> &'static str {
        "maxpool2d"
    }

    fn describe(&self) -> String {
        self.config.describe("MaxPool2d")
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.config.geometry(self.kind(), input)?.output_shape())
    }

    /// x: (N, C, H, W) → y: (N, C, OH, OW), `y[n,c,i,j] = max_{window(i,j)} x[n,c,·,·]`.
    ///
    /// A NaN in a window wins, as in PyTorch's CPU kernel
    /// (`if (val > maxval || isnan(val))`).
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let g = self.config.geometry(self.kind(), x.shape())?;
        let mut y = Tensor::zeros(&g.output_shape());
        let (rows, cols) = g.windows();
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let planes_per_job = g.planes_per_job();
        y.data_mut()
            .par_chunks_mut(planes_per_job * out_plane)
            .enumerate()
            .for_each(|(job, y)| {
                for (p, y) in y.chunks_exact_mut(out_plane).enumerate() {
                    let x = &x.data()[(job * planes_per_job + p) * in_plane..][..in_plane];
                    match (g.padding, g.stride.1) {
                        ((0, 0), 1) => max_unpadded_plane::<1>(&g, x, y),
                        ((0, 0), 2) => max_unpadded_plane::<2>(&g, x, y),
                        _ => {
                            for ((r, c), y) in every_window(&rows, &cols).zip(y) {
                                *y = r
                                    .clone()
                                    .flat_map(|row| &x[row * g.w..][c.clone()])
                                    .fold(f32::NEG_INFINITY, |best, &v| larger(v, best));
                            }
                        }
                    }
                }
            });
        self.input = Some(x.clone());
        self.output = Some(y.clone());
        Ok(y)
    }

    /// dy: (N, C, OH, OW) → dx: (N, C, H, W).
    ///
    /// `y = x[argmax]`, so `∂y/∂x` is 1 at the argmax and 0 elsewhere:
    /// `dx[argmax] += dy`. The argmax is the first position of the window (row-major)
    /// holding the maximum, the one PyTorch's forward keeps. With overlapping windows one
    /// input can be the maximum of several outputs; their gradients add.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let x = kept(&self.input, self.kind())?;
        let y = kept(&self.output, self.kind())?;
        expect_same_shape(self.kind(), y.shape(), dy.shape())?;
        let g = self.config.geometry(self.kind(), x.shape())?;
        let mut dx = Tensor::zeros(x.shape());
        let (rows, cols) = g.windows();
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        dx.data_mut()
            .par_chunks_mut(in_plane.max(1))
            .zip(x.data().par_chunks(in_plane.max(1)))
            .zip(
                y.data()
                    .par_chunks(out_plane)
                    .zip(dy.data().par_chunks(out_plane)),
            )
            .with_min_len(g.planes_per_job())
            .for_each_init(Vec::new, |at, ((dx, x), (y, dy))| {
                match (g.padding, g.stride.1) {
                    ((0, 0), 1) => route_unpadded_plane::<1>(&g, x, y, dy, dx, at),
                    ((0, 0), 2) => route_unpadded_plane::<2>(&g, x, y, dy, dx, at),
                    _ => {
                        let windows = every_window(&rows, &cols);
                        for ((r, c), (&best, &d)) in windows.zip(y.iter().zip(dy)) {
                            dx[position_of_max(x, g.w, r, c, best)] += d;
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

/// The (rows, columns) of every window of a plane, in the row-major order of the outputs.
fn every_window<'a>(
    rows: &'a [Range<usize>],
    cols: &'a [Range<usize>],
) -> impl Iterator<Item = (&'a Range<usize>, &'a Range<usize>)> + 'a {
    rows.iter()
        .flat_map(move |r| cols.iter().map(move |c| (r, c)))
}

/// `v` if it beats `best` in PyTorch's max-pooling rule (larger, or NaN), else `best`.
/// Random data makes this choice a coin flip: a select, not a branch the CPU would
/// mispredict.
fn larger(v: f32, best: f32) -> f32 {
    select_unpredictable((v > best) | v.is_nan(), v, best)
}

/// Where in the window `rows × cols` of the plane x (row length `w`) the forward pass
/// took `best` from: the first position holding it in row-major order (ties go to the
/// first maximum), or, for a NaN, the last NaN (each NaN replaced the one before).
fn position_of_max(
    x: &[f32],
    w: usize,
    rows: &Range<usize>,
    cols: &Range<usize>,
    best: f32,
) -> usize {
    let positions = rows
        .clone()
        .flat_map(|r| cols.clone().map(move |c| r * w + c));
    if best.is_nan() {
        positions.rev().find(|&i| x[i].is_nan())
    } else {
        positions.into_iter().find(|&i| x[i] == best)
    }
    .expect("the maximum of a window lies in the window")
}

/// Backward of [`max_unpadded_plane`]: `dx[argmax] += dy` for every output of the plane,
/// the argmax found tap by tap along an output row like the maximum itself. Going
/// through the taps last to first and keeping every match leaves the first one.
/// `at` is scratch for one row's positions.
fn route_unpadded_plane<const SW: usize>(
    g: &PoolGeometry,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    at: &mut Vec<u32>,
) {
    let (kh, kw) = g.kernel;
    at.resize(g.ow, 0);
    for (oi, (best, dy)) in y.chunks_exact(g.ow).zip(dy.chunks_exact(g.ow)).enumerate() {
        let top = oi * g.stride.0 * g.w;
        if best.iter().any(|b| b.is_nan()) {
            // The rare row with a NaN: window by window.
            let rows = top / g.w..top / g.w + kh;
            for (oj, (&b, &d)) in best.iter().zip(dy).enumerate() {
                let cols = oj * SW..oj * SW + kw;
                dx[position_of_max(x, g.w, &rows, &cols, b)] += d;
            }
            continue;
        }
        for i in (0..kh).rev() {
            for j in (0..kw).rev() {
                let tap = top + i * g.w + j;
                let line = &x[tap..][..(g.ow - 1) * SW + 1];
                let taps = line.iter().step_by(SW);
                for (oj, ((a, &b), &v)) in at.iter_mut().zip(best).zip(taps).enumerate() {
                    *a = select_unpredictable(v == b, (tap + oj * SW) as u32, *a);
                }
            }
        }
        for (&a, &d) in at.iter().zip(dy) {
            dx[a as usize] += d;
        }
    }
}

/// One plane of max pooling without padding and horizontal stride `SW`: x (H, W) → y
/// (OH, OW). Computed tap by tap along an output row, so that the outputs of the row,
/// which are independent, are computed side by side (vector instructions).
fn max_unpadded_plane<const SW: usize>(g: &PoolGeometry, x: &[f32], y: &mut [f32]) {
    let (kh, kw) = g.kernel;
    for (oi, best) in y.chunks_exact_mut(g.ow).enumerate() {
        let top = oi * g.stride.0 * g.w;
        best.fill(f32::NEG_INFINITY);
        for i in 0..kh {
            for j in 0..kw {
                let line = &x[top + i * g.w + j..][..(g.ow - 1) * SW + 1];
                for (b, &v) in best.iter_mut().zip(line.iter().step_by(SW)) {
                    *b = larger(v, *b);
                }
            }
        }
    }
}

/// Average pooling with PyTorch's defaults (`nn.AvgPool2d`: `count_include_pad=True`,
/// `ceil_mode=False`): every window is divided by KH·KW, padded zeros included.
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

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.config.geometry(self.kind(), input)?.output_shape())
    }

    /// x: (N, C, H, W) → y: (N, C, OH, OW), `y[n,c,i,j] = Σ_{window(i,j)} x / (KH·KW)`.
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let g = self.config.geometry(self.kind(), x.shape())?;
        let mut y = Tensor::zeros(&g.output_shape());
        // count_include_pad=True: padded positions are zeros that count in the divisor.
        let area = (g.kernel.0 * g.kernel.1) as f32;
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
                        y[oi * g.ow + oj] = sum / area;
                    }
                }
            });
        self.input_shape = Some(x.shape().to_vec());
        Ok(y)
    }

    /// dy: (N, C, OH, OW) → dx: (N, C, H, W).
    ///
    /// Each input in the window has `∂y/∂x = 1/(KH·KW)`, so `dy/(KH·KW)` is spread equally
    /// over the window; overlapping windows add.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let input_shape = kept(&self.input_shape, self.kind())?;
        let g = self.config.geometry(self.kind(), input_shape)?;
        expect_same_shape(self.kind(), &g.output_shape(), dy.shape())?;
        let mut dx = Tensor::zeros(input_shape);
        let area = (g.kernel.0 * g.kernel.1) as f32;
        dx.data_mut()
            .par_chunks_mut(g.h * g.w)
            .zip(dy.data().par_chunks(g.oh * g.ow))
            .for_each(|(dx, dy)| {
                for oi in 0..g.oh {
                    let rows = g.rows(oi);
                    for oj in 0..g.ow {
                        let cols = g.cols(oj);
                        let d = dy[oi * g.ow + oj] / area;
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
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
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
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
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
        let y = pool.forward(&notes_input(), Mode::Train).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.data(), &[6.0, 4.0, 2.0, 4.0]);
        // The maxima sit at (1,1), (0,3), (2,1), (3,3).
        assert_eq!(pool.argmax().unwrap(), &[5, 3, 9, 15]);
        let dy = Tensor::from_vec(&[1, 1, 2, 2], vec![10.0, 20.0, 30.0, 40.0]).unwrap();
        let dx = pool.backward(&dy).unwrap();
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 0.0, 20.0,
            0.0, 10.0, 0.0, 0.0,
            0.0, 30.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 40.0,
        ];
        assert_eq!(dx.data(), &expected);
    }

    #[test]
    fn window_is_clipped_to_the_image() {
        // k = 3, pad 1, stride 2 over 5 positions: windows [-1,2), [1,4), [3,6) → clipped.
        assert_eq!(window(0, 2, 1, 3, 5), 0..2);
        assert_eq!(window(1, 2, 1, 3, 5), 1..4);
        assert_eq!(window(2, 2, 1, 3, 5), 3..5);
    }
}
