//! The residual blocks of ResNet (notes §2.7), basic and bottleneck: `y = act(F(x) + shortcut(x))`, the sum giving
//! the gradient an identity path, `∂L/∂x = ∂L/∂y·(1 + ∂F/∂x)`.

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::layers::activation::{Elementwise, ReluFn};
use crate::layers::{
    expect_same_shape, kept, BatchNorm2d, Conv2d, Conv2dConfig, Key, Layer, Mode, Part, PartMut,
    Relu,
};
use crate::network::Sequential;
use crate::rng::Rng;
use crate::spec::LayerSpec;
use crate::tensor::{shape_str, Tensor};

/// A residual block: `y = act(main(x) + shortcut(x))`.
///
/// Parameters and buffers are named `main.{…}` and `shortcut.{…}` (`main.0.weight`,
/// `shortcut.1.running_mean`), and `act.{…}` should the activation have any.
pub struct Residual {
    /// F, the main path.
    main: Sequential,
    /// The skip path: `None` is the identity; otherwise, typically, a 1×1 convolution with
    /// stride and a BatchNorm2d that bring x to F(x)'s shape.
    shortcut: Option<Sequential>,
    /// Applied to the sum (ReLU in ResNet), if any.
    act: Option<Box<dyn Layer>>,
    /// The shape of `main(x) + shortcut(x)` in the last forward pass. The inner layers keep
    /// what their own backward needs.
    sum_shape: Option<Vec<usize>>,
}

impl Residual {
    /// A block from its main path, its shortcut (`None` = identity) and the activation
    /// applied after the sum (`None` = none).
    pub fn new(
        main: Sequential,
        shortcut: Option<Sequential>,
        act: Option<Box<dyn Layer>>,
    ) -> Self {
        Residual {
            main,
            shortcut,
            act,
            sum_shape: None,
        }
    }

    /// ResNet's basic block (He et al. 2015; the notes' `ResBlock`), as torchvision builds it:
    ///
    /// - main: conv 3×3 (stride `stride`, pad 1, no bias) → BatchNorm2d → ReLU →
    ///   conv 3×3 (pad 1, no bias) → BatchNorm2d;
    /// - shortcut: the identity when `in_channels == out_channels` and `stride == 1`,
    ///   otherwise conv 1×1 (stride `stride`, no bias) → BatchNorm2d;
    /// - act: ReLU.
    ///
    /// Convolutions are initialised as PyTorch's `nn.Conv2d` default.
    pub fn basic_block(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let main = Sequential::new()
            .with(plain_conv(in_channels, out_channels, 3, stride, 1, rng)?)
            .with(BatchNorm2d::new(out_channels)?)
            .with(Relu::new())
            .with(plain_conv(out_channels, out_channels, 3, 1, 1, rng)?)
            .with(BatchNorm2d::new(out_channels)?);
        let shortcut = projection(in_channels, out_channels, stride, rng)?;
        Ok(Residual::new(main, shortcut, Some(Box::new(Relu::new()))))
    }

    /// ResNet's bottleneck block (He et al. 2015, for ResNet-50 and deeper), as
    /// torchvision builds it: a 1×1 convolution narrows to `width = out_channels /
    /// expansion` channels, a 3×3 one works at that width, a 1×1 one widens again — the
    /// notes' "1×1 convolutions to reduce channels" around the expensive 3×3.
    ///
    /// - main: conv 1×1 → BN → ReLU → conv 3×3 (stride, pad 1) → BN → ReLU → conv 1×1 →
    ///   BN, no biases;
    /// - shortcut: the identity when the shape is kept, else conv 1×1 (stride) → BN;
    /// - act: ReLU.
    pub fn bottleneck(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        expansion: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        if expansion == 0 || !out_channels.is_multiple_of(expansion) {
            return Err(Error::config(
                "bottleneck",
                format!(
                    "expansion = {expansion} must be positive and divide out_channels = {out_channels}"
                ),
            ));
        }
        let width = out_channels / expansion;
        let main = Sequential::new()
            .with(plain_conv(in_channels, width, 1, 1, 0, rng)?)
            .with(BatchNorm2d::new(width)?)
            .with(Relu::new())
            .with(plain_conv(width, width, 3, stride, 1, rng)?)
            .with(BatchNorm2d::new(width)?)
            .with(Relu::new())
            .with(plain_conv(width, out_channels, 1, 1, 0, rng)?)
            .with(BatchNorm2d::new(out_channels)?);
        let shortcut = projection(in_channels, out_channels, stride, rng)?;
        Ok(Residual::new(main, shortcut, Some(Box::new(Relu::new()))))
    }

    /// The main path F.
    pub fn main(&self) -> &Sequential {
        &self.main
    }

    /// The shortcut, `None` for the identity.
    pub fn shortcut(&self) -> Option<&Sequential> {
        self.shortcut.as_ref()
    }

    /// The activation applied to the sum, if any.
    pub fn act(&self) -> Option<&dyn Layer> {
        self.act.as_deref()
    }

    /// The main path, the shortcut and the activation, mutable (to check each layer's
    /// gradients on its own).
    pub fn parts_mut(
        &mut self,
    ) -> (
        &mut Sequential,
        Option<&mut Sequential>,
        Option<&mut (dyn Layer + 'static)>,
    ) {
        (
            &mut self.main,
            self.shortcut.as_mut(),
            self.act.as_deref_mut(),
        )
    }

    /// The shape of `main(x) + shortcut(x)`, or a shape error naming both when they differ.
    fn sum_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let main = self
            .main
            .output_shape(input)
            .map_err(|e| e.in_layer("main"))?;
        let skip = match &self.shortcut {
            Some(s) => s.output_shape(input).map_err(|e| e.in_layer("shortcut"))?,
            None => input.to_vec(),
        };
        if main != skip {
            let skip_name = if self.shortcut.is_some() {
                "the shortcut"
            } else {
                "the identity shortcut"
            };
            return Err(Error::shape(
                self.kind(),
                "an input for which the main path and the shortcut give the same shape",
                input,
            )
            .with_hint(format!(
                "the main path gives {} but {skip_name} gives {}; use a 1×1 conv shortcut \
                 with stride to match channels and size",
                shape_str(&main),
                shape_str(&skip)
            )));
        }
        Ok(main)
    }
}

/// A `k×k` convolution without bias (a BatchNorm follows), PyTorch's default init.
fn plain_conv(
    ic: usize,
    oc: usize,
    k: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Result<Conv2d> {
    let config = Conv2dConfig::new(ic, oc, k)
        .stride(stride)
        .padding(pad)
        .bias(false);
    Conv2d::new(config, rng)
}

/// The shortcut of a ResNet block: the identity (`None`) when the shape is kept, else a
/// 1×1 convolution with the block's stride and a BatchNorm.
fn projection(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    rng: &mut Rng,
) -> Result<Option<Sequential>> {
    if in_channels == out_channels && stride == 1 {
        return Ok(None);
    }
    Ok(Some(
        Sequential::new()
            .with(plain_conv(in_channels, out_channels, 1, stride, 0, rng)?)
            .with(BatchNorm2d::new(out_channels)?),
    ))
}

impl Layer for Residual {
    fn kind(&self) -> &'static str {
        "residual"
    }

    fn describe(&self) -> String {
        let skip = self
            .shortcut
            .as_ref()
            .map_or("identity".to_string(), |s| s.describe());
        let act = self
            .act
            .as_ref()
            .map_or(String::new(), |a| format!(" → {}", a.describe()));
        format!("Residual({} + {skip}{act})", self.main.describe())
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Residual {
            main: self.main.layer_specs(),
            shortcut: self.shortcut.as_ref().map(Sequential::layer_specs),
            activation: self.act.as_ref().map_or("none", |a| a.kind()).to_string(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let sum = self.sum_shape(input)?;
        match &self.act {
            Some(a) => a.output_shape(&sum).map_err(|e| e.in_layer("act")),
            None => Ok(sum),
        }
    }

    /// x: (N, IC, H, W) → y: (N, OC, OH, OW), `y = act(main(x) + shortcut(x))`.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        // Check both paths before running either, so a mismatch leaves no half-done pass.
        let sum_shape = self.sum_shape(x.shape())?;
        let mut sum = self
            .main
            .forward(x.clone(), mode)
            .map_err(|e| e.in_layer("main"))?;
        let shortcut = match &mut self.shortcut {
            Some(s) => s.forward(x, mode).map_err(|e| e.in_layer("shortcut"))?,
            None => x,
        };
        self.sum_shape = Some(sum_shape);
        match &mut self.act {
            // The sum and the ReLU in one pass, the ReLU's own arithmetic; the ReLU keeps
            // the result as its forward would.
            Some(a) if a.kind() == ReluFn::KIND => {
                sum.zip_assign(&shortcut, |m, s| ReluFn.f(m + s))?;
                a.keep_fused_output(&sum);
                Ok(sum)
            }
            Some(a) => {
                sum.add_assign(&shortcut)?;
                a.forward(sum, mode).map_err(|e| e.in_layer("act"))
            }
            None => {
                sum.add_assign(&shortcut)?;
                Ok(sum)
            }
        }
    }

    /// dy: (N, OC, OH, OW) → dx: (N, IC, H, W).
    ///
    /// With `s = main(x) + shortcut(x)`: `ds = act.backward(dy)`, and since both paths read
    /// x, `dx = main.backward(ds) + shortcut.backward(ds)` — for the identity shortcut the
    /// second term is `ds` itself.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let sum_shape = kept(&self.sum_shape, self.kind())?;
        let d_sum = match &mut self.act {
            Some(a) => a.backward(dy).map_err(|e| e.in_layer("act"))?,
            None => {
                expect_same_shape(self.kind(), sum_shape, dy.shape())?;
                dy
            }
        };
        let dx_main = self
            .main
            .backward(d_sum.clone())
            .map_err(|e| e.in_layer("main"))?;
        let dx_skip = match &mut self.shortcut {
            Some(s) => s.backward(d_sum).map_err(|e| e.in_layer("shortcut"))?,
            None => d_sum,
        };
        let mut dx = dx_main;
        dx.add_assign(&dx_skip)?;
        Ok(dx)
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        let mut out = vec![(Key::Name("main"), Part::Layer(&self.main as &dyn Layer))];
        if let Some(s) = &self.shortcut {
            out.push((Key::Name("shortcut"), Part::Layer(s)));
        }
        if let Some(a) = &self.act {
            out.push((Key::Name("act"), Part::Layer(a.as_ref())));
        }
        out
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        let mut out = vec![(
            Key::Name("main"),
            PartMut::Layer(&mut self.main as &mut dyn Layer),
        )];
        if let Some(s) = &mut self.shortcut {
            out.push((Key::Name("shortcut"), PartMut::Layer(s)));
        }
        if let Some(a) = &mut self.act {
            out.push((Key::Name("act"), PartMut::Layer(a.as_mut())));
        }
        out
    }

    /// The wider of the two paths — the main path's in a ResNet block, whose shortcut is
    /// the identity or a 1×1 convolution. Both paths have the same jump, their strides
    /// being equal for the shapes to match.
    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        let main = self.main.receptive_field(before);
        let skip = self
            .shortcut
            .as_ref()
            .map_or(before, |s| s.receptive_field(before));
        [0, 1].map(|axis| ReceptiveField {
            size: main[axis].size.max(skip[axis].size),
            jump: main[axis].jump,
        })
    }

    fn macs(&self, input: &[usize]) -> u64 {
        let skip = self.shortcut.as_ref().map_or(0, |s| s.macs(input));
        let act = match (&self.act, self.sum_shape(input)) {
            (Some(a), Ok(sum)) => a.macs(&sum),
            _ => 0,
        };
        self.main.macs(input) + skip + act
    }
}
