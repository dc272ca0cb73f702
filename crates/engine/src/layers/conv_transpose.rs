//! 2-D transposed convolution (PyTorch's `nn.ConvTranspose2d`): each input pixel adds a
//! copy of its filters, scaled by its value, into the output at S times its position —
//! the layer decoders and segmentation heads upsample with.
//!
//! With the weight (IC, OC/groups, KH, KW) and `oc` running over the output channels of
//! `ic`'s group,
//!
//! `y[n,oc,h·SH − PH + i·DH, w·SW − PW + j·DW] += x[n,ic,h,w]·weight[ic,oc,i,j]`,
//!
//! plus `b[oc]` everywhere; what lands on the cropped border (PH rows above and below,
//! PW columns left and right) is dropped. The output is
//! `OH = (H − 1)·SH − 2·PH + DH·(KH − 1) + OPH + 1` rows (likewise OW), the output padding
//! OPH choosing among the heights a convolution rounds down to the same H
//! ([`crate::geometry::conv_transpose_output_len`]).
//!
//! **It is a convolution's input gradient.** Take the convolution `c` from OC to IC
//! channels with the same kernel, stride, padding, dilation and groups, whose input is
//! OH×OW and whose filters are this weight read as (IC, OC/groups, KH, KW) — c's
//! (its OC, its IC/groups, KH, KW). Then `y = cᵀ(x) + b`: the forward pass is c's `dx`
//! for `dy := x`. Its gradients follow from c's, the adjoint of an adjoint being the map
//! itself:
//!
//! - `dx = c(dy)`: c's forward pass on dy, without bias;
//! - `dweight[ic,oc,i,j] = Σ_{n,h,w} x[n,ic,h,w]·dy[n,oc,h·SH − PH + i·DH, w·SW − PW + j·DW]`:
//!   c's weight gradient with c's input := dy and c's output gradient := x;
//! - `dbias[oc] = Σ_{n,oh,ow} dy[n,oc,oh,ow]`.
//!
//! So this layer runs on the convolution kernels of [`crate::kernels::conv`] (im2col,
//! GEMM, col2im), held to the seven loops of [`crate::kernels::reference`] there.

use crate::error::{Error, Result};
use crate::geometry::{conv_transpose_output_len, conv_transpose_param_count, ReceptiveField};
use crate::init::{self, Init};
use crate::kernels::{self, lane_sum, ConvGeometry};
use crate::layers::{
    expect_nchw, expect_same_shape, expect_shape, kept, weight_and_bias, weight_and_bias_mut, Key,
    Layer, Mode, Param, Part, PartMut,
};
use crate::rng::Rng;
use crate::spec::{LayerSpec, Size2};
use crate::tensor::Tensor;

/// Settings of a [`ConvTranspose2d`], PyTorch's arguments with its defaults. Start from
/// [`ConvTranspose2dConfig::new`] and adjust:
///
/// ```
/// use ocellus::layers::{ConvTranspose2d, ConvTranspose2dConfig};
/// use ocellus::{Layer, Rng};
///
/// // nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1): 7×7 → 14×14
/// let config = ConvTranspose2dConfig::new(16, 8, 3)
///     .stride(2)
///     .padding(1)
///     .output_padding(1);
/// let up = ConvTranspose2d::new(config, &mut Rng::new(0)).unwrap();
/// assert_eq!(up.output_shape(&[1, 16, 7, 7]).unwrap(), [1, 8, 14, 14]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// (KH, KW)
    pub kernel: (usize, usize),
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    /// (rows cropped above and below, columns cropped left and right), PyTorch's
    /// `padding=(ph, pw)`: the padding of the convolution this layer transposes.
    pub padding: (usize, usize),
    /// (rows added at the bottom, columns added at the right), PyTorch's
    /// `output_padding`; each must be smaller than the stride or the dilation of its axis.
    pub output_padding: (usize, usize),
    /// (vertical, horizontal)
    pub dilation: (usize, usize),
    pub groups: usize,
    pub bias: bool,
    pub init: Init,
}

impl ConvTranspose2dConfig {
    /// `IC → OC` channels with a square `k×k` kernel, stride 1, no padding, with bias.
    pub fn new(in_channels: usize, out_channels: usize, k: usize) -> Self {
        ConvTranspose2dConfig {
            in_channels,
            out_channels,
            kernel: (k, k),
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
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
    pub fn stride(self, s: usize) -> Self {
        self.stride_hw(s, s)
    }

    /// Sets the stride: `sh` rows and `sw` columns.
    pub fn stride_hw(mut self, sh: usize, sw: usize) -> Self {
        self.stride = (sh, sw);
        self
    }

    /// Sets the same padding on both axes.
    pub fn padding(self, p: usize) -> Self {
        self.padding_hw(p, p)
    }

    /// Sets `ph` rows cropped above and below, `pw` columns left and right.
    pub fn padding_hw(mut self, ph: usize, pw: usize) -> Self {
        self.padding = (ph, pw);
        self
    }

    /// Sets the same output padding on both axes.
    pub fn output_padding(self, op: usize) -> Self {
        self.output_padding_hw(op, op)
    }

    /// Sets `oph` rows added at the bottom and `opw` columns at the right.
    pub fn output_padding_hw(mut self, oph: usize, opw: usize) -> Self {
        self.output_padding = (oph, opw);
        self
    }

    /// Sets the same dilation on both axes.
    pub fn dilation(self, d: usize) -> Self {
        self.dilation_hw(d, d)
    }

    /// Sets the dilation: `dh` between kernel rows, `dw` between kernel columns.
    pub fn dilation_hw(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = (dh, dw);
        self
    }

    /// Sets the number of groups (channels are split into groups transposed separately).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// With (`true`) or without a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets how [`ConvTranspose2d::new`] draws the weights.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// The weight's shape, (IC, OC/groups, KH, KW), as PyTorch's.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.in_channels,
            self.out_channels / self.groups.max(1),
            self.kernel.0,
            self.kernel.1,
        ]
    }

    /// Parameters of this layer, by the one formula in [`crate::geometry`]; `None` when
    /// the count does not fit a `usize`.
    pub fn param_count(&self) -> Option<usize> {
        conv_transpose_param_count(
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.groups,
            self.bias,
        )
    }
}

/// A 2-D transposed convolution layer (see the module docs for what it computes).
pub struct ConvTranspose2d {
    config: ConvTranspose2dConfig,
    /// (IC, OC/groups, KH, KW)
    weight: Param,
    /// (OC,)
    bias: Option<Param>,
    /// The input of the last forward pass, (N, IC, H, W): `dweight` correlates it with
    /// `dy`.
    input: Option<Tensor>,
    /// Reused scratch memory of the convolution kernels.
    workspace: kernels::conv::Workspace,
}

impl ConvTranspose2d {
    /// A transposed convolution with weights drawn by `config.init`. PyTorch's default
    /// draws from U(−1/√fan_in, 1/√fan_in) with its fan_in of this weight,
    /// `weight.size(1)·KH·KW` = OC/groups·KH·KW, the bias likewise.
    pub fn new(config: ConvTranspose2dConfig, rng: &mut Rng) -> Result<Self> {
        Self::check_config(&config)?;
        let shape = config.weight_shape();
        let weight = init::weight(&shape, config.init, rng);
        let bias = config
            .bias
            .then(|| init::bias(config.out_channels, init::fans(&shape).0, rng));
        Self::from_weights(config, weight, bias)
    }

    /// A transposed convolution with the given weight, (IC, OC/groups, KH, KW), and bias,
    /// (OC,) — which must be given exactly when `config.bias` is set. A tensor of the wrong
    /// shape is an error naming it and both shapes.
    pub fn from_weights(
        config: ConvTranspose2dConfig,
        weight: Tensor,
        bias: Option<Tensor>,
    ) -> Result<Self> {
        Self::check_config(&config)?;
        let name = "convtranspose2d";
        expect_shape(
            &format!("{name} weight"),
            &config.weight_shape(),
            weight.shape(),
        )?;
        let bias = match (config.bias, bias) {
            (true, Some(b)) => {
                expect_shape(&format!("{name} bias"), &[config.out_channels], b.shape())?;
                Some(Param::new(b))
            }
            (false, None) => None,
            (true, None) => {
                return Err(Error::config(
                    name,
                    "the config has a bias but none was given",
                ))
            }
            (false, Some(_)) => {
                return Err(Error::config(
                    name,
                    "a bias was given but the config has none (set .bias(true))",
                ))
            }
        };
        Ok(ConvTranspose2d {
            config,
            weight: Param::new(weight),
            bias,
            input: None,
            workspace: Default::default(),
        })
    }

    /// PyTorch's checks: positive sizes, groups dividing both channel counts, and an
    /// output padding smaller than the stride or the dilation of its axis (a larger one
    /// would add rows that no convolution of this stride could have read).
    fn check_config(c: &ConvTranspose2dConfig) -> Result<()> {
        let name = "convtranspose2d";
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
        let (oph, opw) = c.output_padding;
        let fits = |op: usize, stride: usize, dilation: usize| op < stride || op < dilation;
        if !fits(oph, c.stride.0, c.dilation.0) || !fits(opw, c.stride.1, c.dilation.1) {
            return Err(Error::config(
                name,
                format!(
                    "output padding must be smaller than either stride or dilation, but got \
                     output padding {:?} with stride {:?} and dilation {:?}",
                    c.output_padding, c.stride, c.dilation
                ),
            ));
        }
        let values = c.param_count().map(|n| n as u128);
        crate::memory::expect_fits(name, "its weights", values)
    }

    /// The settings.
    pub fn config(&self) -> &ConvTranspose2dConfig {
        &self.config
    }

    /// The filters, (IC, OC/groups, KH, KW).
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias, (OC,), if the layer has one.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// The convolution this layer transposes, for an input (N, IC, H, W): from the output
    /// (N, OC, OH, OW) to the input, with this weight as its (IC, OC/groups, KH, KW)
    /// filters. Its own output-size formula may give more than H rows when the output
    /// padding is at least the stride (it may be, when below the dilation); the geometry
    /// then stops at H, and the kernels treat the rows past it as absent.
    fn geometry(&self, input: &[usize]) -> Result<ConvGeometry> {
        let c = &self.config;
        expect_nchw(self.kind(), input, Some(c.in_channels))?;
        let (h, w) = (input[2], input[3]);
        let (ph, pw) = c.padding;
        let (oph, opw) = c.output_padding;
        let oh = conv_transpose_output_len(h, c.kernel.0, c.stride.0, ph, c.dilation.0, oph);
        let ow = conv_transpose_output_len(w, c.kernel.1, c.stride.1, pw, c.dilation.1, opw);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(Error::shape(
                self.kind(),
                format!(
                    "an image of at least 1×1 whose output (H − 1)·stride − 2·padding + \
                     dilation·(kernel − 1) + output_padding + 1 is at least 1×1 (kernel \
                     {}×{}, stride {:?}, padding {:?})",
                    c.kernel.0, c.kernel.1, c.stride, c.padding
                ),
                input,
            ));
        };
        Ok(ConvGeometry {
            n: input[0],
            ic: c.out_channels,
            h: oh,
            w: ow,
            oc: c.in_channels,
            kh: c.kernel.0,
            kw: c.kernel.1,
            stride: c.stride,
            pad: (ph, ph, pw, pw),
            dilation: c.dilation,
            groups: c.groups,
            oh: h,
            ow: w,
        })
    }

    /// The backward pass: adds into dweight and dbias, and overwrites `dx` if given.
    fn gradients(&mut self, dy: &Tensor, dx: Option<&mut Tensor>) -> Result<()> {
        let x = kept(&self.input, self.kind())?;
        // c: the convolution from y's shape to x's (see `geometry`).
        let c = self.geometry(x.shape())?;
        expect_same_shape(self.kind(), &[c.n, c.ic, c.h, c.w], dy.shape())?;
        if let Some(dx) = dx {
            // dx = c(dy)
            kernels::conv::forward(
                &c,
                dy.data(),
                self.weight.value().data(),
                kernels::Epilogue::default(),
                dx.data_mut(),
                &mut self.workspace,
            );
        }
        // dweight += c's weight gradient for input dy and output gradient x.
        let (weight, dweight) = self.weight.value_and_grad_mut();
        kernels::conv::backward(
            &c,
            dy.data(),
            weight,
            x.data(),
            None,
            dweight,
            None,
            &mut self.workspace,
        );
        // dbias[oc] += Σ_{n,oh,ow} dy[n,oc,oh,ow], summed in f64 and added once
        if let Some(bias) = &mut self.bias {
            let plane = c.h * c.w;
            let mut sums = vec![0.0f64; c.ic];
            for (k, dy_plane) in dy.data().chunks_exact(plane).enumerate() {
                sums[k % c.ic] += lane_sum(dy_plane, |v| v);
            }
            for (d, sum) in bias.grad_mut().iter_mut().zip(sums) {
                *d += sum as f32;
            }
        }
        Ok(())
    }
}

impl Layer for ConvTranspose2d {
    fn kind(&self) -> &'static str {
        "convtranspose2d"
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "ConvTranspose2d({}→{}, {}×{}",
            c.in_channels, c.out_channels, c.kernel.0, c.kernel.1
        );
        let pair = |(a, b): (usize, usize)| {
            if a == b {
                a.to_string()
            } else {
                format!("({a}, {b})")
            }
        };
        if c.stride != (1, 1) {
            s += &format!(", stride {}", pair(c.stride));
        }
        if c.padding != (0, 0) {
            s += &format!(", pad {}", pair(c.padding));
        }
        if c.output_padding != (0, 0) {
            s += &format!(", output pad {}", pair(c.output_padding));
        }
        if c.dilation != (1, 1) {
            s += &format!(", dilation {}", pair(c.dilation));
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
        LayerSpec::ConvTranspose2d {
            in_channels: Some(c.in_channels),
            out_channels: c.out_channels,
            kernel: Size2::from_hw(c.kernel),
            stride: Size2::from_hw(c.stride),
            padding: Size2::from_hw(c.padding),
            output_padding: Size2::from_hw(c.output_padding),
            dilation: Size2::from_hw(c.dilation),
            groups: c.groups,
            bias: c.bias,
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let c = self.geometry(input)?;
        Ok(vec![c.n, c.ic, c.h, c.w])
    }

    /// x: (N, IC, H, W) → y: (N, OC, OH, OW)
    ///
    /// `y = b + cᵀ(x)`: the input gradient of the convolution c (module docs) for the
    /// output gradient x, `y[n,oc,h·S − P + i·D, w·S − P + j·D] += x[n,ic,h,w]·w[ic,oc,i,j]`.
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let c = self.geometry(x.shape())?;
        let mut y = Tensor::for_overwrite(&[c.n, c.ic, c.h, c.w]);
        kernels::conv::input_gradient(
            &c,
            self.weight.value().data(),
            x.data(),
            y.data_mut(),
            &mut self.workspace,
        );
        if let Some(bias) = &self.bias {
            let plane = c.h * c.w;
            let b = bias.value().data();
            for (k, y_plane) in y.data_mut().chunks_exact_mut(plane).enumerate() {
                let b = b[k % c.ic];
                y_plane.iter_mut().for_each(|v| *v += b);
            }
        }
        self.input = Some(x);
        Ok(y)
    }

    /// dy: (N, OC, OH, OW) → dx: (N, IC, H, W); adds into dweight and dbias.
    ///
    /// Differentiating `y[n,oc,h·S − P + i·D, w·S − P + j·D] += x[n,ic,h,w]·w[ic,oc,i,j]`:
    /// `dx[n,ic,h,w] = Σ_{oc,i,j} dy[n,oc,h·S − P + i·D, w·S − P + j·D]·w[ic,oc,i,j]` — the
    /// convolution c of dy —,
    /// `dw[ic,oc,i,j] += Σ_{n,h,w} x[n,ic,h,w]·dy[n,oc,h·S − P + i·D, w·S − P + j·D]` — c's
    /// weight gradient with dy as its input and x as its output gradient —, and
    /// `db[oc] += Σ_{n,oh,ow} dy[n,oc,oh,ow]` (terms outside dy, in the cropped border,
    /// are zero).
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let x = kept(&self.input, self.kind())?;
        let mut dx = Tensor::for_overwrite(x.shape());
        self.gradients(&dy, Some(&mut dx))?;
        Ok(dx)
    }

    /// dweight and dbias only, without the convolution of dy that dx costs.
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
            before[0].through_transposed(c.kernel.0, c.stride.0, c.dilation.0),
            before[1].through_transposed(c.kernel.1, c.stride.1, c.dilation.1),
        ]
    }

    /// One multiply-add per input value, kernel tap and output channel of its group,
    /// `N·IC·H·W·(OC/groups)·KH·KW`, as for the convolution it transposes (taps that land
    /// in the cropped border included: they are computed).
    fn macs(&self, input: &[usize]) -> u64 {
        self.geometry(input).map_or(0, |c| c.macs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::conv_output_len;
    use crate::gradcheck::assert_close;
    use crate::kernels::reference;
    use crate::layers::{Conv2d, Conv2dConfig, LayerExt, Padding};
    use proptest::prelude::*;

    /// Settings and an input shape: 1 to 3 groups of 1 to 3 channels each way, kernels up
    /// to 4×4, strides and dilations up to 3, padding up to 3, and any output padding
    /// PyTorch allows (below the stride or the dilation of its axis).
    fn any_case() -> impl Strategy<Value = (ConvTranspose2dConfig, [usize; 4])> {
        (
            (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3),
            (1usize..=4, 1usize..=4, 1usize..=3, 1usize..=3),
            (1usize..=3, 1usize..=3, 0usize..=3, 0usize..=3),
            (0usize..3, 0usize..3, any::<bool>()),
            (1usize..=6, 1usize..=6),
        )
            .prop_map(
                |(
                    (n, icg, ocg, groups),
                    (kh, kw, sh, sw),
                    (dh, dw, ph, pw),
                    (oph, opw, bias),
                    (h, w),
                )| {
                    let config = ConvTranspose2dConfig::new(icg * groups, ocg * groups, 1)
                        .kernel(kh, kw)
                        .stride_hw(sh, sw)
                        .dilation_hw(dh, dw)
                        .padding_hw(ph, pw)
                        .output_padding_hw(oph % sh.max(dh), opw % sw.max(dw))
                        .groups(groups)
                        .bias(bias);
                    (config, [n, icg * groups, h, w])
                },
            )
    }

    /// `t` (N, C, H, W) with zero rows and columns appended up to OH×OW.
    fn zero_extended(t: &Tensor, oh: usize, ow: usize) -> Tensor {
        let [n, c, h, w] = t.shape().try_into().unwrap();
        let mut out = Tensor::zeros(&[n, c, oh, ow]);
        for (plane, src) in out
            .data_mut()
            .chunks_mut(oh * ow)
            .zip(t.data().chunks(h * w))
        {
            for (row, src) in plane.chunks_mut(ow).zip(src.chunks(w)) {
                row[..w].copy_from_slice(src);
            }
        }
        out
    }

    /// The first H×W of every plane of `t`.
    fn cropped(t: &Tensor, h: usize, w: usize) -> Tensor {
        let [n, c, oh, ow] = t.shape().try_into().unwrap();
        let mut out = Tensor::zeros(&[n, c, h, w]);
        for (plane, src) in out
            .data_mut()
            .chunks_mut(h * w)
            .zip(t.data().chunks(oh * ow))
        {
            for (row, src) in plane.chunks_mut(w).zip(src.chunks(ow)) {
                row.copy_from_slice(&src[..w]);
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The notes' identity: a transposed convolution is the input gradient of the
        /// convolution with the same weight tensor, read as that convolution's
        /// (OC, IC/groups, KH, KW) filters, between the transposed output's shape and its
        /// input's. With c = that Conv2d, run forward on dy and backward on x: c's dx is
        /// our y (less the bias), c's output is our dx, and c's dweight is our dweight.
        /// Where the output padding is at least the stride, c's output has more rows
        /// than x, and x is extended with zeros.
        ///
        /// Both sides are also held to the seven reference loops, which share no code
        /// with either.
        #[test]
        fn forward_is_the_input_gradient_of_the_convolution_with_the_same_weight(
            (config, shape) in any_case(),
            seed in any::<u64>(),
        ) {
            let mut rng = crate::rng::Rng::new(seed);
            let mut layer = ConvTranspose2d::new(config, &mut rng).unwrap();
            let Ok(out) = layer.output_shape(&shape) else {
                return Err(TestCaseError::reject("the padding crops everything"));
            };
            let (h, w, oh, ow) = (shape[2], shape[3], out[2], out[3]);
            let x = Tensor::randn(&shape, 1.0, &mut rng);
            let dy = Tensor::randn(&out, 1.0, &mut rng);
            let y = layer.forward_ref(&x, Mode::Train).unwrap();
            let dx = layer.backward_ref(&dy).unwrap();
            let dweight = layer.weight().grad().clone();
            let bias = layer.bias().map(|b| b.value().data().to_vec());

            let c = config;
            let conv_config = Conv2dConfig {
                padding: Padding::symmetric(c.padding.0, c.padding.1),
                ..Conv2dConfig::new(c.out_channels, c.in_channels, 1)
                    .kernel(c.kernel.0, c.kernel.1)
                    .stride_hw(c.stride.0, c.stride.1)
                    .dilation_hw(c.dilation.0, c.dilation.1)
                    .groups(c.groups)
                    .bias(false)
            };
            let weight = layer.weight().value().clone();
            let mut conv = Conv2d::from_weights(conv_config, weight.clone(), None).unwrap();
            let conv_out = conv.output_shape(&out).unwrap();
            let (ch, cw) = (conv_out[2], conv_out[3]);
            prop_assert!(ch >= h && cw >= w, "{conv_out:?} against {shape:?}");
            let x_ext = zero_extended(&x, ch, cw);
            let conv_y = conv.forward_ref(&dy, Mode::Train).unwrap();
            let conv_dx = conv.backward_ref(&x_ext).unwrap();

            let mut y_less_bias = y.clone();
            if let Some(b) = &bias {
                for (k, plane) in y_less_bias.data_mut().chunks_mut(oh * ow).enumerate() {
                    plane.iter_mut().for_each(|v| *v -= b[k % c.out_channels]);
                }
            }
            let what = layer.describe();
            assert_close(&format!("{what}: y"), y_less_bias.data(), conv_dx.data(), 1e-4, 1e-5);
            assert_close(&format!("{what}: dx"), dx.data(), cropped(&conv_y, h, w).data(), 1e-4, 1e-5);
            assert_close(
                &format!("{what}: dweight"),
                dweight.data(),
                conv.weight().grad().data(),
                1e-4,
                1e-5,
            );

            // The same convolution written as seven loops.
            let (pad_h, pad_w) = c.padding;
            prop_assert_eq!(
                conv_output_len(oh, c.kernel.0, c.stride.0, pad_h, pad_h, c.dilation.0),
                Some(ch)
            );
            let g = ConvGeometry {
                n: shape[0],
                ic: c.out_channels,
                h: oh,
                w: ow,
                oc: c.in_channels,
                kh: c.kernel.0,
                kw: c.kernel.1,
                stride: c.stride,
                pad: (pad_h, pad_h, pad_w, pad_w),
                dilation: c.dilation,
                groups: c.groups,
                oh: ch,
                ow: cw,
            };
            let (ref_dx, ref_dw, _) =
                reference::conv2d_backward(&g, dy.data(), weight.data(), x_ext.data());
            assert_close(&format!("{what}: y (loops)"), y_less_bias.data(), &ref_dx, 1e-4, 1e-5);
            assert_close(&format!("{what}: dweight (loops)"), dweight.data(), &ref_dw, 1e-4, 1e-5);
            let ref_y = reference::conv2d_forward(&g, dy.data(), weight.data(), None);
            let ref_y = Tensor::from_vec(&conv_out, ref_y).unwrap();
            assert_close(&format!("{what}: dx (loops)"), dx.data(), cropped(&ref_y, h, w).data(), 1e-4, 1e-5);
        }
    }
}
