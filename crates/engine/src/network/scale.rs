//! A feature map multiplied by per-channel weights computed from itself — the
//! squeeze-and-excitation block (Hu et al. 2018) of EfficientNet's MBConv (notes §2.7):
//! a side branch squeezes each channel to one number (global average pooling), passes the
//! vector through a small FC → ReLU → FC → sigmoid gate, and the block rescales every
//! channel by its gate value, `y[n,c,h,w] = x[n,c,h,w] · g(x)[n,c]`.
//!
//! Backward reaches x along both paths: directly, `dy · g`, and through the gate, whose
//! gradient is `dg[n,c] = Σ_{h,w} dy[n,c,h,w] · x[n,c,h,w]`; so
//! `dx = dy · g + G.backward(dg)`.

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::layers::{
    expect_nchw, expect_same_shape, kept, Conv2d, Conv2dConfig, GlobalAvgPool, Key, Layer, Mode,
    Part, PartMut, Sigmoid,
};
use crate::network::concat::widest;
use crate::network::Sequential;
use crate::rng::Rng;
use crate::spec::LayerSpec;
use crate::tensor::{shape_str, Tensor};

/// `y = x · gate(x)`, one gate value per image and channel.
///
/// The gate's parameters are named `gate.{index}.{name}` (`gate.1.weight`).
pub struct Scale {
    gate: Sequential,
    /// The input and the gate's output, (N, C, H, W) and (N, C) or (N, C, 1, 1), of the
    /// last forward pass.
    kept: Option<(Tensor, Tensor)>,
}

impl Scale {
    /// A block rescaling channels by `gate`, which must map (N, C, H, W) to (N, C) or
    /// (N, C, 1, 1).
    pub fn new(gate: Sequential) -> Self {
        Scale { gate, kept: None }
    }

    /// Squeeze-and-excitation (Hu et al. 2018) for `channels` channels, as torchvision's
    /// `SqueezeExcitation` builds it: the gate is global average pooling → 1×1 convolution
    /// to `squeeze` channels → `act` → 1×1 convolution back to `channels` → sigmoid (the
    /// 1×1 convolutions on a 1×1 map are the two fully connected layers), so every channel
    /// is weighted by a number in (0, 1) that depends on the whole image.
    pub fn squeeze_excitation(
        channels: usize,
        squeeze: usize,
        act: Box<dyn Layer>,
        rng: &mut Rng,
    ) -> Result<Self> {
        let fc = |ic, oc, rng: &mut Rng| Conv2d::new(Conv2dConfig::new(ic, oc, 1), rng);
        let mut gate = Sequential::new()
            .with(GlobalAvgPool::new())
            .with(fc(channels, squeeze, rng)?);
        gate.push(act);
        let gate = gate.with(fc(squeeze, channels, rng)?).with(Sigmoid::new());
        Ok(Scale::new(gate))
    }

    /// The side branch computing the channel weights.
    pub fn gate(&self) -> &Sequential {
        &self.gate
    }

    /// The gate's output shape, or a shape error unless it gives one value per channel.
    fn gate_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        expect_nchw(self.kind(), input, None)?;
        let g = self
            .gate
            .output_shape(input)
            .map_err(|e| e.in_layer("gate"))?;
        let (n, c) = (input[0], input[1]);
        if g != [n, c] && g != [n, c, 1, 1] {
            return Err(Error::shape(
                self.kind(),
                "an input for which the gate gives one value per channel",
                input,
            )
            .with_hint(format!(
                "the gate gives {} but the block needs ({n}, {c}) or ({n}, {c}, 1, 1) to \
                 rescale {} channels",
                shape_str(&g),
                c
            )));
        }
        Ok(g)
    }
}

impl Layer for Scale {
    fn kind(&self) -> &'static str {
        "scale"
    }

    /// `Scale(x · gate of 5 layers)`: the gate's layers are described on their own rows.
    fn describe(&self) -> String {
        format!("Scale(x · gate of {} layers)", self.gate.len())
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Scale {
            gate: self.gate.layer_specs(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.gate_shape(input)?;
        Ok(input.to_vec())
    }

    /// x: (N, C, H, W) → y: (N, C, H, W), `y[n,c,·,·] = x[n,c,·,·] · g[n,c]`.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.gate_shape(x.shape())?;
        let g = self
            .gate
            .forward(x.clone(), mode)
            .map_err(|e| e.in_layer("gate"))?;
        let y = scale_channels(&x, &g)?;
        self.kept = Some((x, g));
        Ok(y)
    }

    /// dy: (N, C, H, W) → dx: (N, C, H, W), `dx = dy · g + gate.backward(Σ_{h,w} dy · x)`.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let (x, g) = kept(&self.kept, self.kind())?;
        expect_same_shape(self.kind(), x.shape(), dy.shape())?;
        let plane = plane_len(x.shape());
        let mut dg = Tensor::for_overwrite(g.shape());
        let mut direct = Tensor::for_overwrite(x.shape());
        let planes = dy
            .data()
            .chunks_exact(plane)
            .zip(x.data().chunks_exact(plane))
            .zip(direct.data_mut().chunks_exact_mut(plane));
        for ((((dy, x), dx), g), dg) in planes.zip(g.data()).zip(dg.data_mut()) {
            let mut sum = 0.0f32;
            for ((dy, x), dx) in dy.iter().zip(x).zip(dx.iter_mut()) {
                sum += dy * x;
                *dx = dy * g;
            }
            *dg = sum;
        }
        let mut dx = self.gate.backward(dg).map_err(|e| e.in_layer("gate"))?;
        dx.add_assign(&direct)?;
        Ok(dx)
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        vec![(Key::Name("gate"), Part::Layer(&self.gate as &dyn Layer))]
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        vec![(
            Key::Name("gate"),
            PartMut::Layer(&mut self.gate as &mut dyn Layer),
        )]
    }

    /// The wider of the input's field and the gate's. (A gate that pools globally sees
    /// the whole image; the receptive-field arithmetic, like the summary's, follows
    /// windows and does not count global pooling.)
    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        let gate = self.gate.receptive_field(before);
        widest([before, gate].into_iter()).unwrap_or(before)
    }

    /// The gate's multiply-adds and one multiplication per value.
    fn macs(&self, input: &[usize]) -> u64 {
        let own = input.iter().map(|&d| d as u64).product::<u64>();
        self.gate.macs(input) + own
    }
}

/// `y[n,c,·,·] = x[n,c,·,·] · g[n,c]` for x: (N, C, H, W) and g holding N·C values; a
/// shape error otherwise.
pub(crate) fn scale_channels(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    let nc = x.shape().get(..2).map_or(0, |s| s[0] * s[1]);
    if x.shape().len() != 4 || g.len() != nc {
        return Err(
            Error::shape("scale", "(N, C, H, W) with a gate of N·C values", x.shape())
                .with_hint(format!("the gate gave {}", shape_str(g.shape()))),
        );
    }
    let plane = plane_len(x.shape());
    let mut y = Tensor::for_overwrite(x.shape());
    let planes = y
        .data_mut()
        .chunks_exact_mut(plane)
        .zip(x.data().chunks_exact(plane));
    for ((y, x), g) in planes.zip(g.data()) {
        for (y, x) in y.iter_mut().zip(x) {
            *y = x * g;
        }
    }
    Ok(y)
}

/// Values per channel of one image (H·W), at least 1 so that chunks are never empty.
fn plane_len(shape: &[usize]) -> usize {
    shape[2..].iter().product::<usize>().max(1)
}
