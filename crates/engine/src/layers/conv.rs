//! 2-D convolution (cross-correlation, as every deep-learning library computes it), with
//! any kernel size, stride, per-side zero padding, dilation and groups.

use crate::error::{Error, Result};
use crate::geometry::{conv_output_len, conv_param_count, ReceptiveField};
use crate::init::{self, Init};
use crate::kernels::pool::PoolGeometry;
use crate::kernels::{self, ConvGeometry, Moments};
use crate::layers::pool::{route_through_relu, Pooled};
use crate::layers::{
    expect_nchw, expect_same_shape, expect_shape, kept, weight_and_bias, weight_and_bias_mut, Fold,
    Key, Layer, Mode, Param, Part, PartMut,
};
use crate::rng::Rng;
use crate::spec::{LayerSpec, PadSpec, Size2};
use crate::tensor::Tensor;

/// Zero padding on each side of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides.
    pub fn uniform(p: usize) -> Self {
        Padding::symmetric(p, p)
    }

    /// `ph` rows above and below, `pw` columns left and right (PyTorch's `padding=(ph, pw)`).
    pub fn symmetric(ph: usize, pw: usize) -> Self {
        Padding {
            top: ph,
            bottom: ph,
            left: pw,
            right: pw,
        }
    }

    /// True when top = bottom and left = right (expressible as PyTorch's `padding=(ph, pw)`).
    pub fn is_symmetric(&self) -> bool {
        self.top == self.bottom && self.left == self.right
    }
}

/// Settings of a [`Conv2d`]. Start from [`Conv2dConfig::new`] and adjust fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// (KH, KW)
    pub kernel: (usize, usize),
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    pub padding: Padding,
    /// (vertical, horizontal)
    pub dilation: (usize, usize),
    pub groups: usize,
    pub bias: bool,
    pub init: Init,
}

impl Conv2dConfig {
    /// `IC → OC` channels with a square `k×k` kernel, stride 1, no padding, with bias.
    pub fn new(in_channels: usize, out_channels: usize, k: usize) -> Self {
        Conv2dConfig {
            in_channels,
            out_channels,
            kernel: (k, k),
            stride: (1, 1),
            padding: Padding::default(),
            dilation: (1, 1),
            groups: 1,
            bias: true,
            init: Init::PytorchDefault,
        }
    }

    /// Sets the kernel to `KH×KW`.
    pub fn kernel(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = (kh, kw);
        self
    }

    /// Sets the same stride on both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }

    /// Sets the stride: `sh` rows and `sw` columns.
    pub fn stride_hw(mut self, sh: usize, sw: usize) -> Self {
        self.stride = (sh, sw);
        self
    }

    /// Sets the same zero padding on all four sides.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = Padding::uniform(p);
        self
    }

    /// Sets `ph` rows of zeros above and below, `pw` columns left and right.
    pub fn padding_hw(mut self, ph: usize, pw: usize) -> Self {
        self.padding = Padding::symmetric(ph, pw);
        self
    }

    /// Sets the zero padding of each side.
    pub fn padding_sides(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the same dilation on both axes.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }

    /// Sets the dilation: `dh` between kernel rows, `dw` between kernel columns.
    pub fn dilation_hw(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = (dh, dw);
        self
    }

    /// Sets the number of groups (channels are split into groups convolved separately).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// With (`true`) or without a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets how [`Conv2d::new`] draws the weights.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// The weight's shape, (OC, IC/groups, KH, KW).
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel.0,
            self.kernel.1,
        ]
    }
}

/// A 2-D convolution layer.
pub struct Conv2d {
    config: Conv2dConfig,
    /// (OC, IC/groups, KH, KW)
    weight: Param,
    /// (OC,)
    bias: Option<Param>,
    /// The input of the last forward pass, (N, IC, H, W): `dw` correlates it with `dy`.
    input: Option<Tensor>,
    /// Reused scratch memory of the fast kernels.
    workspace: kernels::conv::Workspace,
    /// The filters and bias of the last [`Layer::forward_folded`].
    folded: Folded,
    /// What the last [`Layer::forward_relu_pool`] kept for its backward pass.
    pooled: Option<Pooled>,
}

/// Filters and bias with an affine map of the output channels folded in.
#[derive(Default)]
struct Folded {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv2d {
    /// A convolution with weights drawn by `config.init` (bias as PyTorch draws it).
    pub fn new(config: Conv2dConfig, rng: &mut Rng) -> Result<Self> {
        Self::check_config(&config)?;
        let shape = config.weight_shape();
        let weight = init::weight(&shape, config.init, rng);
        let bias = config
            .bias
            .then(|| init::bias(config.out_channels, init::fans(&shape).0, rng));
        Self::from_weights(config, weight, bias)
    }

    /// A convolution with the given filters, (OC, IC/groups, KH, KW), and bias, (OC,) —
    /// which must be given exactly when `config.bias` is set. A tensor of the wrong shape
    /// is an error naming it and both shapes.
    pub fn from_weights(
        config: Conv2dConfig,
        weight: Tensor,
        bias: Option<Tensor>,
    ) -> Result<Self> {
        Self::check_config(&config)?;
        expect_shape("conv2d weight", &config.weight_shape(), weight.shape())?;
        let bias = match (config.bias, bias) {
            (true, Some(b)) => {
                expect_shape("conv2d bias", &[config.out_channels], b.shape())?;
                Some(Param::new(b))
            }
            (false, None) => None,
            (true, None) => {
                return Err(Error::config(
                    "conv2d",
                    "the config has a bias but none was given",
                ))
            }
            (false, Some(_)) => {
                return Err(Error::config(
                    "conv2d",
                    "a bias was given but the config has none (set .bias(true))",
                ))
            }
        };
        Ok(Conv2d {
            config,
            weight: Param::new(weight),
            bias,
            input: None,
            workspace: Default::default(),
            folded: Folded::default(),
            pooled: None,
        })
    }

    /// Checks the settings: positive sizes, groups dividing both channel counts.
    fn check_config(c: &Conv2dConfig) -> Result<()> {
        let name = "conv2d";
        if c.in_channels == 0 || c.out_channels == 0 || c.groups == 0 {
            return Err(Error::config(name, "channels and groups must be positive"));
        }
        if c.kernel.0 == 0 || c.kernel.1 == 0 || c.stride.0 == 0 || c.stride.1 == 0 {
            return Err(Error::config(name, "kernel and stride must be positive"));
        }
        if c.dilation.0 == 0 || c.dilation.1 == 0 {
            return Err(Error::config(name, "dilation must be positive"));
        }
        if !c.in_channels.is_multiple_of(c.groups) || !c.out_channels.is_multiple_of(c.groups) {
            return Err(Error::config(
                name,
                format!(
                    "groups = {} must divide both in_channels = {} and out_channels = {}",
                    c.groups, c.in_channels, c.out_channels
                ),
            ));
        }
        let values = c.param_count().map(|n| n as u128);
        crate::memory::expect_fits(name, "its weights", values)
    }

    /// The settings.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// The filters, (OC, IC/groups, KH, KW).
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias, (OC,), if the layer has one.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// The full arithmetic of this convolution on an input of shape (N, IC, H, W).
    fn geometry(&self, input: &[usize]) -> Result<ConvGeometry> {
        let c = &self.config;
        expect_nchw(self.kind(), input, Some(c.in_channels))?;
        let (h, w) = (input[2], input[3]);
        let p = c.padding;
        let oh = conv_output_len(h, c.kernel.0, c.stride.0, p.top, p.bottom, c.dilation.0);
        let ow = conv_output_len(w, c.kernel.1, c.stride.1, p.left, p.right, c.dilation.1);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(Error::shape(
                self.kind(),
                format!(
                    "an image at least as large as the {}×{} kernel (after padding and dilation)",
                    c.kernel.0, c.kernel.1
                ),
                input,
            ));
        };
        Ok(ConvGeometry {
            n: input[0],
            ic: c.in_channels,
            h,
            w,
            oc: c.out_channels,
            kh: c.kernel.0,
            kw: c.kernel.1,
            stride: c.stride,
            pad: (p.top, p.bottom, p.left, p.right),
            dilation: c.dilation,
            groups: c.groups,
            oh,
            ow,
        })
    }

    /// The forward pass, followed by a ReLU if `relu` (in the pass that writes y), and with
    /// `moments` the [`Moments`] of every plane of y put there, (N, OC); keeping the input
    /// for backward.
    fn forward_then(
        &mut self,
        x: Tensor,
        relu: bool,
        moments: Option<&mut Vec<Moments>>,
    ) -> Result<Tensor> {
        let g = self.geometry(x.shape())?;
        let epilogue = kernels::Epilogue {
            bias: self.bias.as_ref().map(|b| b.value().data()),
            relu,
        };
        let (w, ws) = (self.weight.value().data(), &mut self.workspace);
        let y = match moments {
            None => convolve(&g, &x, w, epilogue, None, ws),
            Some(moments) => {
                moments.clear();
                moments.resize(g.n * g.oc, Moments::default());
                let mut y = Tensor::for_overwrite(&[g.n, g.oc, g.oh, g.ow]);
                let (x, y_data) = (x.data(), y.data_mut());
                kernels::conv::forward_with_moments(&g, x, w, epilogue, y_data, moments, ws);
                y
            }
        };
        self.input = Some(x);
        self.pooled = None;
        Ok(y)
    }

    /// A 2×2 max-pooling that tiles y, for the convolution `g`: an error otherwise.
    fn check_pool(&self, g: &ConvGeometry, pool: &PoolGeometry) -> Result<()> {
        expect_shape(
            "the fused pooling's input",
            &[g.n, g.oc, g.oh, g.ow],
            &pool.input_shape(),
        )?;
        if !pool.is_2x2_tiling() {
            return Err(Error::config(
                self.kind(),
                "a fused pooling has 2×2 windows, stride 2, no padding",
            ));
        }
        Ok(())
    }

    /// dp, the gradient of the output of the last [`Layer::forward_relu_pool`] → dy, that
    /// of this layer's output: routed to the maxima through the ReLU.
    fn unpool(&self, dp: &Tensor) -> Result<Tensor> {
        let Some(pooled) = &self.pooled else {
            return Err(Error::config(
                self.kind(),
                "the backward pass fused with a ReLU and max-pooling needs a forward pass \
                 fused with them (forward_relu_pool) first",
            ));
        };
        expect_same_shape(self.kind(), &pooled.pool.output_shape(), dp.shape())?;
        let (pool, taps, output) = (&pooled.pool, &pooled.taps, &pooled.output);
        Ok(route_through_relu(pool, taps, dp, output))
    }

    /// The backward pass: adds into dweight and dbias, and overwrites `dx` if given.
    fn gradients(&mut self, dy: &Tensor, dx: Option<&mut Tensor>) -> Result<()> {
        let x = kept(&self.input, self.kind())?;
        let g = self.geometry(x.shape())?;
        expect_same_shape(self.kind(), &[g.n, g.oc, g.oh, g.ow], dy.shape())?;
        let (weight, dweight) = self.weight.value_and_grad_mut();
        kernels::conv::backward(
            &g,
            x.data(),
            weight,
            dy.data(),
            dx.map(|dx| dx.data_mut()),
            dweight,
            self.bias.as_mut().map(|b| b.grad_mut()),
            &mut self.workspace,
        );
        Ok(())
    }
}

/// y = w ∗ x with the epilogue applied, for the convolution `g`; with a 2×2 max-pooling
/// (checked by the caller to tile y), y pooled.
fn convolve(
    g: &ConvGeometry,
    x: &Tensor,
    w: &[f32],
    epilogue: kernels::Epilogue,
    pool: Option<&PoolGeometry>,
    ws: &mut kernels::conv::Workspace,
) -> Tensor {
    let Some(pool) = pool else {
        let mut y = Tensor::for_overwrite(&[g.n, g.oc, g.oh, g.ow]);
        kernels::conv::forward(g, x.data(), w, epilogue, y.data_mut(), ws);
        return y;
    };
    let mut y = Tensor::for_overwrite(&pool.output_shape());
    kernels::conv::forward_pooled(g, x.data(), w, epilogue, pool, y.data_mut(), None, ws);
    y
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "Conv2d({}→{}, {}×{}",
            c.in_channels, c.out_channels, c.kernel.0, c.kernel.1
        );
        if c.stride != (1, 1) {
            s += &format!(", stride {:?}", c.stride);
        }
        let p = c.padding;
        if p != Padding::default() {
            if p == Padding::uniform(p.top) {
                s += &format!(", pad {}", p.top);
            } else {
                s += &format!(", pad t{} b{} l{} r{}", p.top, p.bottom, p.left, p.right);
            }
        }
        if c.dilation != (1, 1) {
            s += &format!(", dilation {:?}", c.dilation);
        }
        if c.groups != 1 {
            s += &format!(", groups {}", c.groups);
        }
        if !c.bias {
            s += ", no bias";
        }
        s + ")"
    }

    fn spec(&self) -> LayerSpec {
        let c = &self.config;
        let p = c.padding;
        LayerSpec::Conv2d {
            in_channels: Some(c.in_channels),
            out_channels: c.out_channels,
            kernel: Size2::from_hw(c.kernel),
            stride: Size2::from_hw(c.stride),
            padding: if p.is_symmetric() {
                PadSpec::from_hw(p.top, p.left)
            } else {
                PadSpec::PerSide([p.top, p.bottom, p.left, p.right])
            },
            dilation: Size2::from_hw(c.dilation),
            groups: c.groups,
            bias: c.bias,
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(input)?;
        Ok(vec![g.n, g.oc, g.oh, g.ow])
    }

    /// x: (N, IC, H, W) → y: (N, OC, OH, OW)
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward_then(x, false, None)
    }

    /// The ReLU is applied to each output as the kernel writes it; backward needs the
    /// input only, which is kept as in `forward`.
    fn fuses_relu(&self) -> bool {
        true
    }

    fn forward_relu(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        self.forward_then(x, true, None)
    }

    fn gives_moments(&self) -> bool {
        true
    }

    fn forward_with_moments(&mut self, x: Tensor, _mode: Mode) -> Result<(Tensor, Vec<Moments>)> {
        let mut moments = Vec::new();
        let y = self.forward_then(x, false, Some(&mut moments))?;
        Ok((y, moments))
    }

    fn folds_affine(&self) -> bool {
        true
    }

    /// `y[oc] = scale[oc]·(b[oc] + w[oc] ∗ x) + shift[oc]` as a convolution with filters
    /// `scale[oc]·w[oc]` and bias `scale[oc]·b[oc] + shift[oc]`, the ReLU in the same pass,
    /// and the pooling of each image as soon as it is convolved (y is not written out).
    fn forward_folded(&mut self, x: Tensor, fold: &Fold) -> Result<Tensor> {
        let g = self.geometry(x.shape())?;
        if let Some(pool) = fold.pool {
            self.check_pool(&g, pool)?;
        }
        let (weight, bias) = match fold.affine {
            None => (
                self.weight.value().data(),
                self.bias.as_ref().map(|b| b.value().data()),
            ),
            Some((scale, shift)) => {
                expect_shape("the folded scale", &[g.oc], &[scale.len()])?;
                expect_shape("the folded shift", &[g.oc], &[shift.len()])?;
                let per_filter = self.weight.value().len() / g.oc;
                let folded = &mut self.folded;
                folded.weight.clear();
                let filters = self.weight.value().data().chunks_exact(per_filter);
                for (filter, &s) in filters.zip(scale) {
                    folded.weight.extend(filter.iter().map(|w| s * w));
                }
                folded.bias.clear();
                for (o, (&s, &t)) in scale.iter().zip(shift).enumerate() {
                    let b = self.bias.as_ref().map_or(0.0, |b| b.value().data()[o]);
                    folded.bias.push(s * b + t);
                }
                (&folded.weight[..], Some(&folded.bias[..]))
            }
        };
        let epilogue = kernels::Epilogue {
            bias,
            relu: fold.relu,
        };
        let y = convolve(&g, &x, weight, epilogue, fold.pool, &mut self.workspace);
        self.input = Some(x);
        self.pooled = None;
        Ok(y)
    }

    fn fuses_relu_pool(&self) -> bool {
        true
    }

    /// `p = maxpool(max(0, w ∗ x + b))`: each image pooled as soon as it is convolved, in
    /// the thread's cache (y is not written out), keeping p and the positions of its
    /// maxima for backward besides the input.
    fn forward_relu_pool(&mut self, x: Tensor, _mode: Mode, pool: &PoolGeometry) -> Result<Tensor> {
        let g = self.geometry(x.shape())?;
        self.check_pool(&g, pool)?;
        let epilogue = kernels::Epilogue {
            bias: self.bias.as_ref().map(|b| b.value().data()),
            relu: true,
        };
        let (mut p, mut taps) = Pooled::buffers(&mut self.pooled, pool);
        let (w, ws) = (self.weight.value().data(), &mut self.workspace);
        let taps_out = Some(&mut taps[..]);
        kernels::conv::forward_pooled(&g, x.data(), w, epilogue, pool, p.data_mut(), taps_out, ws);
        self.input = Some(x);
        Ok(Pooled::keep(&mut self.pooled, pool, p, taps))
    }

    /// dp → dy routed to the maxima through the ReLU, then this layer's own backward.
    fn backward_relu_pool(&mut self, dp: Tensor) -> Result<Tensor> {
        let dy = self.unpool(&dp)?;
        self.backward(dy)
    }

    fn backward_relu_pool_params(&mut self, dp: Tensor) -> Result<()> {
        let dy = self.unpool(&dp)?;
        self.backward_params(dy)
    }

    /// dy: (N, OC, OH, OW) → dx: (N, IC, H, W); adds into dweight and dbias.
    ///
    /// Differentiating `y = b + Σ x·w` (notes §2.6):
    /// `dw[oc,ic,i,j] += Σ_{n,oh,ow} dy[n,oc,oh,ow]·x[n,ic,oh·S+i,ow·S+j]`,
    /// `db[oc] += Σ_{n,oh,ow} dy[n,oc,oh,ow]`,
    /// `dx[n,ic,h,w] = Σ_{oc,i,j} dy[n,oc,(h−i)/S,(w−j)/S]·w[oc,ic,i,j]` (a full correlation
    /// with the flipped kernel).
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let x = kept(&self.input, self.kind())?;
        let mut dx = Tensor::for_overwrite(x.shape());
        self.gradients(&dy, Some(&mut dx))?;
        Ok(dx)
    }

    /// dweight and dbias only: the first convolution of a network needs no `dx`, which
    /// costs as much as `dweight`.
    fn backward_params(&mut self, dy: Tensor) -> Result<()> {
        self.gradients(&dy, None)
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        weight_and_bias(&self.weight, self.bias.as_ref())
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        weight_and_bias_mut(&mut self.weight, self.bias.as_mut())
    }

    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        let c = &self.config;
        [
            before[0].through(c.kernel.0, c.stride.0, c.dilation.0),
            before[1].through(c.kernel.1, c.stride.1, c.dilation.1),
        ]
    }

    fn macs(&self, input: &[usize]) -> u64 {
        self.geometry(input).map_or(0, |g| g.macs())
    }
}

/// Parameters of this convolution, by the one formula in [`crate::geometry`].
impl Conv2dConfig {
    /// `None` when the count does not fit a `usize`.
    pub fn param_count(&self) -> Option<usize> {
        conv_param_count(
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.groups,
            self.bias,
        )
    }
}
