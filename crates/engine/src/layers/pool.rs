//! Pooling: max and average over sliding windows ([`MaxPool2d`], [`AvgPool2d`]) and global
//! average pooling ([`GlobalAvgPool`]). None of them has parameters (notes §2.3).
//!
//! Output (i, j) of a plane looks at `window(i, j)`: input rows `i·SH − PH .. i·SH − PH + KH`
//! and columns `j·SW − PW .. j·SW − PW + KW`, where positions outside the image are padding.
//! OH and OW come from [`crate::geometry::pool_output_len`] (rounded down, or up in ceil
//! mode). The loops over windows live in [`crate::kernels::pool`], and are tested against
//! the plain definitions in [`crate::kernels::reference`].

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::kernels::pool::{self as kernels, PoolGeometry, Tap, MAX_WINDOW};
use crate::layers::activation::{Elementwise, ReluFn};
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
    /// [`pool_output_len`](crate::geometry::pool_output_len).
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
        if input[2] == 0 || input[3] == 0 {
            return Err(Error::shape(layer, "(N, C, H, W) with H, W ≥ 1", input));
        }
        let shape = [input[0], input[1], input[2], input[3]];
        PoolGeometry::new(
            shape,
            self.kernel,
            self.effective_stride(),
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
        )
        .ok_or_else(|| {
            let (kh, kw) = self.kernel;
            Error::shape(
                layer,
                format!("an image at least as large as the {kh}×{kw} window (after padding)"),
                input,
            )
            .with_hint("too many poolings for this image size? remove one or use a larger input")
        })
    }
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
    /// The output of the last forward pass in training when its windows tiled the input
    /// (2×2, stride 2): with it the backward pass of a ReLU before this layer is taken in
    /// ([`Layer::backward_after_relu`]).
    output: Option<Tensor>,
}

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
        if kh * kw > MAX_WINDOW {
            return Err(Error::config(
                "maxpool2d",
                format!("a {kh}×{kw} window has more than 65,535 positions"),
            ));
        }
        Ok(MaxPool2d {
            config,
            taps: Vec::new(),
            input_shape: None,
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
        let shape = self.input_shape.as_ref()?;
        let g = self.config.geometry(self.kind(), shape).ok()?;
        Some(kernels::max_pool2d_argmax(&g, &self.taps))
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
    /// first maximum in row-major order, the one PyTorch keeps. The position of each
    /// maximum within its window (its tap) is kept for backward.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        let g = self.config.geometry(self.kind(), x.shape())?;
        let mut y = Tensor::for_overwrite(&g.output_shape());
        self.taps.resize(y.len(), 0);
        kernels::max_pool2d_forward(&g, x.data(), y.data_mut(), &mut self.taps);
        self.input_shape = Some(x.shape().to_vec());
        // Kept in training only: in evaluation a backward pass is rare, and the handle
        // would keep y's buffer from being reused.
        self.output = (mode == Mode::Train && g.is_2x2_tiling()).then(|| y.clone());
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
        let mut dx = Tensor::for_overwrite(shape);
        kernels::max_pool2d_backward(&g, &self.taps, dy.data(), dx.data_mut());
        Ok(dx)
    }

    fn backward_takes_relu_before(&self) -> bool {
        self.output.is_some()
    }

    /// dy → dx of the ReLU before this layer: `dy·relu'(y)` routed to the maxima. The
    /// ReLU's output at a window's maximum is this layer's output y there, and every other
    /// value of the ReLU's gradient is 0 — the bits of the two backward passes one after
    /// the other, without the pass over the full-size gradient between them.
    fn backward_after_relu(&mut self, dy: Tensor) -> Result<Tensor> {
        let Some(y) = &self.output else {
            return Err(Error::config(
                self.kind(),
                "backward_after_relu needs a forward pass whose 2×2 windows tile the input",
            ));
        };
        let shape = kept(&self.input_shape, self.kind())?;
        let g = self.config.geometry(self.kind(), shape)?;
        expect_same_shape(self.kind(), &g.output_shape(), dy.shape())?;
        Ok(route_through_relu(&g, &self.taps, &dy, y))
    }

    fn tiling_max_pool(&self, input: &[usize]) -> Option<PoolGeometry> {
        let g = self.config.geometry(self.kind(), input).ok()?;
        g.is_2x2_tiling().then_some(g)
    }

    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        self.config.receptive_field(before)
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
        let mut y = Tensor::for_overwrite(&g.output_shape());
        kernels::avg_pool2d_forward(&g, x.data(), y.data_mut());
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
        let mut dx = Tensor::for_overwrite(input_shape);
        kernels::avg_pool2d_backward(&g, dy.data(), dx.data_mut());
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

/// The gradient dy of a 2×2 max-pooling's output y → that of the input of the ReLU before
/// it: each window's `dy·relu'(y)` routed to the position `taps` names, every other value
/// 0 — the ReLU's output at a window's maximum being the pooling's output there.
pub(crate) fn route_through_relu(
    g: &PoolGeometry,
    taps: &[Tap],
    dy: &Tensor,
    y: &Tensor,
) -> Tensor {
    let mut dx = Tensor::for_overwrite(&g.input_shape());
    let through_relu = |d, y| ReluFn.gradient(d, y);
    let (dy, y) = (dy.data(), y.data());
    kernels::max_pool2d_backward_through(g, taps, dy, y, dx.data_mut(), through_relu);
    dx
}

/// What a forward pass fused with a ReLU and a 2×2 max-pooling after it keeps besides its
/// input ([`Layer::forward_relu_pool`]).
pub(crate) struct Pooled {
    pub(crate) pool: PoolGeometry,
    /// The pooled output: each window's maximum of the ReLU's output.
    pub(crate) output: Tensor,
    /// For each pooled output, which position of its 2×2 window held the maximum.
    pub(crate) taps: Vec<Tap>,
}

impl Pooled {
    /// The pooled output and the taps of a new fused pass of `pool`, to be overwritten; the
    /// taps in the allocation of the last pass's, taken from `slot`.
    pub(crate) fn buffers(slot: &mut Option<Pooled>, pool: &PoolGeometry) -> (Tensor, Vec<Tap>) {
        let p = Tensor::for_overwrite(&pool.output_shape());
        let mut taps = slot.take().map(|p| p.taps).unwrap_or_default();
        taps.resize(p.len(), 0);
        (p, taps)
    }

    /// Keeps the pooled output p and its taps in `slot` for the backward pass; gives p.
    pub(crate) fn keep(
        slot: &mut Option<Pooled>,
        pool: &PoolGeometry,
        p: Tensor,
        taps: Vec<Tap>,
    ) -> Tensor {
        let output = p.clone();
        *slot = Some(Pooled {
            pool: *pool,
            output,
            taps,
        });
        p
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

    use crate::gradcheck::assert_close;
    use crate::kernels::reference;
    use proptest::prelude::*;

    /// Pooling settings with the shapes that reach every path: square 2×2 windows with
    /// stride 2 (the tiling) often, otherwise any window of up to 4×4 and strides up to 4
    /// per axis; no padding half of the time (the unpadded paths), else any padding
    /// PyTorch allows; ceil mode on or off.
    fn pool_settings() -> impl Strategy<Value = Pool2dConfig> {
        let sizes = prop_oneof![
            Just(((2, 2), (2, 2))),
            ((1usize..5, 1usize..5), (1usize..5, 1usize..5)),
        ];
        (sizes, any::<bool>(), any::<bool>(), 0usize..3, 0usize..3).prop_map(
            |(((kh, kw), (sh, sw)), padded, ceil_mode, ph, pw)| {
                let (ph, pw) = if padded {
                    (ph.min(kh / 2), pw.min(kw / 2))
                } else {
                    (0, 0)
                };
                Pool2dConfig::new(1)
                    .kernel(kh, kw)
                    .stride_hw(sh, sw)
                    .padding_hw(ph, pw)
                    .ceil_mode(ceil_mode)
            },
        )
    }

    /// (N, C, H, W) with planes wide enough for full eight-window blocks of the 2×2 path
    /// and its short remainders, and the values of the largest such input.
    fn input_and_values() -> impl Strategy<Value = ([usize; 4], Vec<u8>)> {
        (
            (1usize..3, 1usize..3, 1usize..10, 1usize..21),
            prop::collection::vec(0u8..6, 2 * 2 * 9 * 20),
        )
            .prop_map(|((n, c, h, w), v)| ([n, c, h, w], v))
    }

    /// The values as f32: small integers, with many ties, NaNs (4) and −∞ (5).
    fn tensor(shape: [usize; 4], values: &[u8]) -> Tensor {
        let len = shape.iter().product();
        let values = values[..len].iter().map(|&v| match v {
            4 => f32::NAN,
            5 => f32::NEG_INFINITY,
            v => f32::from(v),
        });
        Tensor::from_vec(&shape, values.collect()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]

        /// Every forward and backward path (2×2 tiles, unpadded strides 1 and 2, the
        /// clipped windows of padding and ceil mode) against the definition in
        /// `kernels::reference`, on values with many ties, NaNs and −∞: the same outputs,
        /// the same argmax, the same routing of the gradient.
        #[test]
        fn max_pool_matches_its_definition(
            config in pool_settings(),
            (shape, values) in input_and_values(),
        ) {
            let mut pool = MaxPool2d::new(config).unwrap();
            let x = tensor(shape, &values);
            let Ok(g) = config.geometry("maxpool2d", x.shape()) else {
                return Err(TestCaseError::reject("no window fits"));
            };
            let (y, argmax) = reference::max_pool2d_forward(&g, x.data());
            let fast_y = pool.forward_ref(&x, Mode::Train).unwrap();
            let same = |a: &f32, b: &f32| a == b || a.is_nan() && b.is_nan();
            prop_assert!(fast_y.data().iter().zip(&y).all(|(a, b)| same(a, b)), "{:?}", g);
            prop_assert_eq!(pool.argmax().unwrap(), argmax.clone(), "{:?}", g);
            let dy: Vec<f32> = (0..y.len()).map(|i| 1.0 + i as f32).collect();
            let dx = reference::max_pool2d_backward(&g, &argmax, &dy);
            let fast_dx = pool.backward_ref(&Tensor::from_vec(fast_y.shape(), dy).unwrap()).unwrap();
            prop_assert_eq!(fast_dx.data(), &dx[..], "{:?}", g);
        }

        /// Average pooling, forward and backward, against the definition, with and without
        /// count_include_pad, in both rounding modes.
        #[test]
        fn avg_pool_matches_its_definition(
            config in pool_settings(),
            count_include_pad in any::<bool>(),
            (shape, values) in input_and_values(),
        ) {
            let config = config.count_include_pad(count_include_pad);
            let mut pool = AvgPool2d::new(config).unwrap();
            // Finite values only: an average has no NaN rule to check.
            let values: Vec<u8> = values.iter().map(|v| v % 4).collect();
            let x = tensor(shape, &values);
            let Ok(g) = config.geometry("avgpool2d", x.shape()) else {
                return Err(TestCaseError::reject("no window fits"));
            };
            let what = format!("{g:?}");
            let y = reference::avg_pool2d_forward(&g, x.data());
            let fast_y = pool.forward_ref(&x, Mode::Train).unwrap();
            assert_close(&what, fast_y.data(), &y, 1e-6, 1e-6);
            let dy: Vec<f32> = (0..y.len()).map(|i| 1.0 + (i % 7) as f32).collect();
            let dx = reference::avg_pool2d_backward(&g, &dy);
            let fast_dx = pool.backward_ref(&Tensor::from_vec(fast_y.shape(), dy).unwrap()).unwrap();
            assert_close(&what, fast_dx.data(), &dx, 1e-6, 1e-6);
        }
    }
}
