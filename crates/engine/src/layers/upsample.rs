//! Upsampling without parameters (PyTorch's `nn.Upsample`): each plane is enlarged by whole
//! factors, or to a given size, filling the new pixels from the nearest input pixel or by
//! bilinear interpolation.
//!
//! Every output value is a weighted sum of at most four input values of its plane,
//! separately along each axis: row `o` of the output reads input rows `i0` and `i1`
//! with weights `λ0` and `λ1`, and
//!
//! `y[n,c,oh,ow] = λ0(oh)·(λ0(ow)·x[i0(oh),i0(ow)] + λ1(ow)·x[i0(oh),i1(ow)])
//!               + λ1(oh)·(λ0(ow)·x[i1(oh),i0(ow)] + λ1(ow)·x[i1(oh),i1(ow)])`.
//!
//! Its gradient sends each `dy` back along the same four weights:
//! `dx[n,c,i_a(oh),i_b(ow)] += λ_a(oh)·λ_b(ow)·dy[n,c,oh,ow]` for a, b ∈ {0, 1}, summed over
//! every output that read the pixel.
//!
//! The taps are PyTorch's, with `r` the input size over the output size (`1/s` for a
//! scale factor `s`):
//!
//! - nearest: `i0 = min(⌊o·r⌋, in − 1)`, `λ0 = 1`, `λ1 = 0`;
//! - bilinear (`align_corners=False`): the output centre `o + ½` maps to input position
//!   `t = max((o + ½)·r − ½, 0)`; `i0 = ⌊t⌋` (at most in − 1), `i1 = i0 + 1` but no further
//!   than the last pixel, `λ1 = t − i0`, `λ0 = 1 − λ1`.

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::layers::{expect_nchw, expect_same_shape, kept, Layer, Mode};
pub use crate::spec::UpsampleMode;
use crate::spec::{LayerSpec, Size2};
use crate::tensor::Tensor;

/// What decides the output size of an [`Upsample`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsampleSize {
    /// `OH = SH·H`, `OW = SW·W`: PyTorch's `scale_factor=(sh, sw)` with whole factors.
    Scale(usize, usize),
    /// Exactly OH×OW, whatever the input: PyTorch's `size=(oh, ow)`.
    Fixed(usize, usize),
}

/// Where output row (or column) `o` reads: two input positions and their weights (the
/// same position twice, or a weight of 0, where one suffices).
#[derive(Clone, Copy, Debug, PartialEq)]
struct AxisTap {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

/// The taps of every output position along one axis, `input` → `output` positions, the
/// ratio `r` computed as PyTorch computes it (`1/s` from a scale factor, in f64 rounded to
/// f32, otherwise `input/output` in f32).
fn axis_taps(
    input: usize,
    output: usize,
    scale: Option<usize>,
    mode: UpsampleMode,
) -> Vec<AxisTap> {
    let ratio = match scale {
        Some(s) => (1.0 / s as f64) as f32,
        None => input as f32 / output as f32,
    };
    let last = input - 1;
    (0..output)
        .map(|o| {
            // PyTorch copies an axis whose size does not change.
            if input == output {
                return AxisTap {
                    i0: o,
                    i1: o,
                    l0: 1.0,
                    l1: 0.0,
                };
            }
            match mode {
                UpsampleMode::Nearest => {
                    let i = ((o as f32 * ratio).floor() as usize).min(last);
                    AxisTap {
                        i0: i,
                        i1: i,
                        l0: 1.0,
                        l1: 0.0,
                    }
                }
                UpsampleMode::Bilinear => {
                    let t = ((o as f32 + 0.5) * ratio - 0.5).max(0.0);
                    let i0 = (t.floor() as usize).min(last);
                    let l1 = (t - i0 as f32).clamp(0.0, 1.0);
                    AxisTap {
                        i0,
                        i1: (i0 + 1).min(last),
                        l0: 1.0 - l1,
                        l1,
                    }
                }
            }
        })
        .collect()
}

/// Upsampling, PyTorch's `nn.Upsample` (see the module docs for the formulas).
///
/// ```
/// use ocellus::layers::{Upsample, UpsampleMode};
/// use ocellus::{Layer, LayerExt, Mode, Tensor};
///
/// // nn.Upsample(scale_factor=2, mode="bilinear"): 1, 2 → 1, 1.25, 1.75, 2
/// let mut up = Upsample::new(2, UpsampleMode::Bilinear).unwrap();
/// let x = Tensor::from_vec(&[1, 1, 1, 2], vec![1.0, 2.0]).unwrap();
/// let y = up.forward_ref(&x, Mode::Eval).unwrap();
/// assert_eq!(y.shape(), [1, 1, 2, 4]);
/// assert_eq!(&y.data()[..4], &[1.0, 1.25, 1.75, 2.0]);
/// ```
pub struct Upsample {
    size: UpsampleSize,
    mode: UpsampleMode,
    /// The input shape of the last forward pass, (N, C, H, W): with the taps it implies,
    /// all backward needs.
    input_shape: Option<Vec<usize>>,
}

impl Upsample {
    /// Upsampling by `scale` on both axes, `nn.Upsample(scale_factor=scale, mode=…)`.
    pub fn new(scale: usize, mode: UpsampleMode) -> Result<Self> {
        Self::with_size(UpsampleSize::Scale(scale, scale), mode)
    }

    /// Upsampling by `sh` rows and `sw` columns per input pixel.
    pub fn with_scale(sh: usize, sw: usize, mode: UpsampleMode) -> Result<Self> {
        Self::with_size(UpsampleSize::Scale(sh, sw), mode)
    }

    /// Upsampling to the output size `size` decides; a zero factor or size is an error.
    pub fn with_size(size: UpsampleSize, mode: UpsampleMode) -> Result<Self> {
        let (UpsampleSize::Scale(a, b) | UpsampleSize::Fixed(a, b)) = size;
        if a == 0 || b == 0 {
            let what = match size {
                UpsampleSize::Scale(..) => "scale factors",
                UpsampleSize::Fixed(..) => "output sizes",
            };
            return Err(Error::config(
                "upsample",
                format!("{what} must be positive, got {a}×{b}"),
            ));
        }
        Ok(Upsample {
            size,
            mode,
            input_shape: None,
        })
    }

    /// What decides the output size.
    pub fn size(&self) -> UpsampleSize {
        self.size
    }

    /// Nearest or bilinear.
    pub fn mode(&self) -> UpsampleMode {
        self.mode
    }

    /// The output shape for an input (N, C, H, W), or a shape error.
    fn out_shape(&self, input: &[usize]) -> Result<[usize; 4]> {
        expect_nchw(self.kind(), input, None)?;
        let (h, w) = (input[2], input[3]);
        if h == 0 || w == 0 {
            return Err(Error::shape(
                self.kind(),
                "(N, C, H, W) with H, W ≥ 1",
                input,
            ));
        }
        let (oh, ow) = match self.size {
            UpsampleSize::Scale(sh, sw) => match (h.checked_mul(sh), w.checked_mul(sw)) {
                (Some(oh), Some(ow)) => (oh, ow),
                _ => {
                    return Err(Error::shape(
                        self.kind(),
                        format!("an image whose {sh}×{sw} times larger size can be counted"),
                        input,
                    ))
                }
            },
            UpsampleSize::Fixed(oh, ow) => (oh, ow),
        };
        let shape = [input[0], input[1], oh, ow];
        if crate::memory::product(&shape).is_none_or(|n| n > isize::MAX as u128) {
            return Err(Error::shape(
                self.kind(),
                "an input whose upsampled output can be counted",
                input,
            ));
        }
        Ok(shape)
    }

    /// The taps of both axes for an input of shape (N, C, H, W) and its output.
    fn taps(&self, input: &[usize], output: &[usize; 4]) -> (Vec<AxisTap>, Vec<AxisTap>) {
        let (sh, sw) = match self.size {
            UpsampleSize::Scale(sh, sw) => (Some(sh), Some(sw)),
            UpsampleSize::Fixed(..) => (None, None),
        };
        (
            axis_taps(input[2], output[2], sh, self.mode),
            axis_taps(input[3], output[3], sw, self.mode),
        )
    }
}

impl Layer for Upsample {
    fn kind(&self) -> &'static str {
        "upsample"
    }

    fn describe(&self) -> String {
        let mode = match self.mode {
            UpsampleMode::Nearest => "nearest",
            UpsampleMode::Bilinear => "bilinear",
        };
        match self.size {
            UpsampleSize::Scale(sh, sw) if sh == sw => format!("Upsample(×{sh}, {mode})"),
            UpsampleSize::Scale(sh, sw) => format!("Upsample(×({sh}, {sw}), {mode})"),
            UpsampleSize::Fixed(oh, ow) => format!("Upsample(to {oh}×{ow}, {mode})"),
        }
    }

    fn spec(&self) -> LayerSpec {
        let (scale, size) = match self.size {
            UpsampleSize::Scale(sh, sw) => (Some(Size2::from_hw((sh, sw))), None),
            UpsampleSize::Fixed(oh, ow) => (None, Some(Size2::from_hw((oh, ow)))),
        };
        LayerSpec::Upsample {
            scale,
            size,
            mode: self.mode,
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.out_shape(input)?.to_vec())
    }

    /// x: (N, C, H, W) → y: (N, C, OH, OW), each output the weighted sum of its four taps
    /// (module docs), in PyTorch's order: along the width first, then the height.
    fn forward(&mut self, x: Tensor, _mode: Mode) -> Result<Tensor> {
        let shape = self.out_shape(x.shape())?;
        let (rows, cols) = self.taps(x.shape(), &shape);
        let (h, w) = (x.shape()[2], x.shape()[3]);
        let mut y = Tensor::for_overwrite(&shape);
        let out_planes = y.data_mut().chunks_exact_mut(shape[2] * shape[3]);
        for (x_plane, y_plane) in x.data().chunks_exact(h * w).zip(out_planes) {
            for (y_row, r) in y_plane.chunks_exact_mut(shape[3]).zip(&rows) {
                let (row0, row1) = (&x_plane[r.i0 * w..][..w], &x_plane[r.i1 * w..][..w]);
                match self.mode {
                    // A copy: no weights, so an infinity stays one rather than 0·∞.
                    UpsampleMode::Nearest => {
                        for (y, c) in y_row.iter_mut().zip(&cols) {
                            *y = row0[c.i0];
                        }
                    }
                    UpsampleMode::Bilinear => {
                        for (y, c) in y_row.iter_mut().zip(&cols) {
                            let top = c.l0 * row0[c.i0] + c.l1 * row0[c.i1];
                            let bottom = c.l0 * row1[c.i0] + c.l1 * row1[c.i1];
                            *y = r.l0 * top + r.l1 * bottom;
                        }
                    }
                }
            }
        }
        self.input_shape = Some(x.shape().to_vec());
        Ok(y)
    }

    /// dy: (N, C, OH, OW) → dx: (N, C, H, W).
    ///
    /// Differentiating `y = Σ_{a,b} λ_a(oh)·λ_b(ow)·x[i_a(oh), i_b(ow)]`: each `dy` is
    /// scattered back with the same weights,
    /// `dx[i_a(oh), i_b(ow)] += λ_a(oh)·λ_b(ow)·dy[oh,ow]`, and an input pixel read by
    /// several outputs collects all their contributions (nearest: the sum of the s×s
    /// block it was copied to).
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let input_shape = kept(&self.input_shape, self.kind())?;
        let shape = self.out_shape(input_shape)?;
        expect_same_shape(self.kind(), &shape, dy.shape())?;
        let (rows, cols) = self.taps(input_shape, &shape);
        let (h, w) = (input_shape[2], input_shape[3]);
        let mut dx = Tensor::zeros(input_shape);
        let dy_planes = dy.data().chunks_exact(shape[2] * shape[3]);
        for (dx_plane, dy_plane) in dx.data_mut().chunks_exact_mut(h * w).zip(dy_planes) {
            for (dy_row, r) in dy_plane.chunks_exact(shape[3]).zip(&rows) {
                match self.mode {
                    UpsampleMode::Nearest => {
                        for (&d, c) in dy_row.iter().zip(&cols) {
                            dx_plane[r.i0 * w + c.i0] += d;
                        }
                    }
                    UpsampleMode::Bilinear => {
                        for (&d, c) in dy_row.iter().zip(&cols) {
                            dx_plane[r.i0 * w + c.i0] += r.l0 * c.l0 * d;
                            dx_plane[r.i0 * w + c.i1] += r.l0 * c.l1 * d;
                            dx_plane[r.i1 * w + c.i0] += r.l1 * c.l0 * d;
                            dx_plane[r.i1 * w + c.i1] += r.l1 * c.l1 * d;
                        }
                    }
                }
            }
        }
        Ok(dx)
    }

    /// Nearest: every output sees one input pixel; bilinear: two neighbours per axis
    /// (one when the factor is 1). The jump is divided by the factor
    /// ([`ReceptiveField::upsampled`]). With a fixed output size the factor depends on the
    /// image, which the recurrence does not know: the receptive field is left unchanged,
    /// as [`GlobalAvgPool`](crate::layers::GlobalAvgPool) leaves it.
    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        let UpsampleSize::Scale(sh, sw) = self.size else {
            return before;
        };
        let span = |s: usize| match self.mode {
            UpsampleMode::Bilinear if s > 1 => 2,
            _ => 1,
        };
        [
            before[0].upsampled(span(sh), sh),
            before[1].upsampled(span(sw), sw),
        ]
    }

    /// Bilinear: four multiply-adds per output value (its four weighted taps); nearest
    /// only copies.
    fn macs(&self, input: &[usize]) -> u64 {
        match (self.mode, self.out_shape(input)) {
            (UpsampleMode::Bilinear, Ok(shape)) => {
                shape.iter().fold(4u64, |m, &d| m.saturating_mul(d as u64))
            }
            _ => 0,
        }
    }
}
