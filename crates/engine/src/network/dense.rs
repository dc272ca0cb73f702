//! The dense block of DenseNet (Huang et al. 2017; notes §2.7): each layer sees the
//! concatenation of the block's input and of every earlier layer's output, and the block
//! gives all of them, `y = [x, h₁, …, h_L]` with `h_l = H_l([x, h₁, …, h_{l−1}])`.
//! Features are reused instead of recomputed, so each layer adds only a few channels (the
//! growth rate).
//!
//! Backward runs the layers last to first. The gradient of every piece of `y` collects
//! what reaches it directly (its channels of `dy`) and what each later layer sends back
//! through its input, `d[x, h₁, …, h_{l−1}] += H_lᵀ·dh_l`; the input's piece is `dx`.

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::layers::{
    kept, BatchNorm2d, Conv2d, Conv2dConfig, Key, Layer, Mode, Part, PartMut, Relu,
};
use crate::network::concat::widest;
use crate::network::Sequential;
use crate::rng::Rng;
use crate::spec::LayerSpec;
use crate::tensor::{concat_shape, shape_str, Tensor};

/// Layers each applied to the concatenation of the input and all earlier outputs; the
/// output is the concatenation of the input and every layer's output.
///
/// Parameters are named `{layer}.{index}.{name}` (`2.1.weight`: layer 2, its second
/// module).
pub struct Dense {
    layers: Vec<Sequential>,
    /// Channels of the input and of each layer's output in the last forward pass.
    widths: Option<Vec<usize>>,
}

impl Dense {
    /// A dense block of `layers` (at least one).
    pub fn new(layers: Vec<Sequential>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::config("dense", "needs at least one layer"));
        }
        Ok(Dense {
            layers,
            widths: None,
        })
    }

    /// DenseNet-BC's dense block (Huang et al. 2017, as torchvision builds it): `layers`
    /// layers, layer `l` reading `in_channels + l·growth` channels through
    /// BN → ReLU → conv 1×1 to `4·growth` → BN → ReLU → conv 3×3 (pad 1) to `growth`,
    /// convolutions without bias. The block gives `in_channels + layers·growth` channels.
    pub fn bottleneck_layers(
        in_channels: usize,
        layers: usize,
        growth: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let mut built: Vec<Sequential> = Vec::with_capacity(layers.min(1024));
        let mut params: u128 = 0;
        for l in 0..layers {
            let c = l
                .checked_mul(growth)
                .and_then(|g| g.checked_add(in_channels))
                .ok_or_else(|| Error::config("denseblock", "channel count overflows"))?;
            let wide = growth.saturating_mul(4);
            // Checked before allocating: the block so far and this layer, each parameter
            // held twice (its value and its gradient): BN(c), 1×1 conv, BN(4k), 3×3 conv.
            let (c128, wide128, k128) = (c as u128, wide as u128, growth as u128);
            params += 2 * c128 + c128 * wide128 + 2 * wide128 + wide128 * k128 * 9;
            let what = format!("the parameters of its first {} layers", l + 1);
            crate::memory::expect_fits("denseblock", &what, Some(2 * params))?;
            let conv = |ic, oc, k, pad| Conv2dConfig::new(ic, oc, k).padding(pad).bias(false);
            built.push(
                Sequential::new()
                    .with(BatchNorm2d::new(c)?)
                    .with(Relu::new())
                    .with(Conv2d::new(conv(c, wide, 1, 0), rng)?)
                    .with(BatchNorm2d::new(wide)?)
                    .with(Relu::new())
                    .with(Conv2d::new(conv(wide, growth, 3, 1), rng)?),
            );
        }
        Dense::new(built)
    }

    /// The block's layers, in forward order.
    pub fn layers(&self) -> &[Sequential] {
        &self.layers
    }

    /// The input shape of every layer and the block's output shape, or a shape error
    /// naming the first layer whose output cannot be joined to what came before.
    pub fn shapes(&self, input: &[usize]) -> Result<(Vec<Vec<usize>>, Vec<usize>)> {
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut features = input.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer
                .output_shape(&features)
                .map_err(|e| e.in_layer(&format!("layer {i}")))?;
            let next = joined(input, &features, &h, i)?;
            inputs.push(std::mem::replace(&mut features, next));
        }
        Ok((inputs, features))
    }
}

/// What layer `i + 1` of a dense block on `input` reads: layer `i`'s input `features`
/// joined with its output `h`, or a shape error naming layer `i` and both shapes.
pub(crate) fn joined(
    input: &[usize],
    features: &[usize],
    h: &[usize],
    i: usize,
) -> Result<Vec<usize>> {
    concat_shape(&[features, h]).ok_or_else(|| {
        Error::shape(
            "dense",
            "an input for which every layer keeps the batch and H×W",
            input,
        )
        .with_hint(format!(
            "layer {i} turns {} into {}, which cannot be joined to its input along \
             channels; layers inside a dense block must keep H×W (3×3 convolutions with \
             padding 1, no pooling)",
            shape_str(features),
            shape_str(h)
        ))
    })
}

impl Layer for Dense {
    fn kind(&self) -> &'static str {
        "dense"
    }

    /// `Dense(4 layers: 6, 6, 6, 6 modules)`: the layers themselves are described on their own rows.
    fn describe(&self) -> String {
        let sizes: Vec<String> = self.layers.iter().map(|l| l.len().to_string()).collect();
        format!(
            "Dense({} layers: {} modules)",
            self.layers.len(),
            sizes.join(", ")
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Dense {
            layers: self.layers.iter().map(Sequential::layer_specs).collect(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shapes(input)?.1)
    }

    /// x: (N, C, H, W) → y: (N, C + Σ growth, H, W), `y = [x, h₁, …, h_L]`.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        self.shapes(x.shape())?;
        let mut widths = vec![x.shape()[1]];
        let mut features = x;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let h = layer
                .forward(features.clone(), mode)
                .map_err(|e| e.in_layer(&format!("layer {i}")))?;
            widths.push(h.shape()[1]);
            features = Tensor::concat(&[&features, &h])?;
        }
        self.widths = Some(widths);
        Ok(features)
    }

    /// dy: (N, C + Σ growth, H, W) → dx: (N, C, H, W). `dy` is cut into the pieces of x
    /// and of each `h_l`; from the last layer back, `H_l.backward(dh_l)` is cut the same
    /// way and added into the pieces it read.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let mut pieces = self.gradient_pieces(dy, true)?;
        Ok(pieces.swap_remove(0))
    }

    /// The layers' parameter gradients; the input's gradient is not formed.
    fn backward_params(&mut self, dy: Tensor) -> Result<()> {
        self.gradient_pieces(dy, false).map(drop)
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        let layers = self.layers.iter().enumerate();
        layers
            .map(|(i, l)| (Key::Index(i), Part::Layer(l as &dyn Layer)))
            .collect()
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        let layers = self.layers.iter_mut().enumerate();
        layers
            .map(|(i, l)| (Key::Index(i), PartMut::Layer(l as &mut dyn Layer)))
            .collect()
    }

    /// The largest over the pieces of the output: layer l sees the widest field of the
    /// pieces before it and widens it further.
    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        let mut seen = before;
        for layer in &self.layers {
            let h = layer.receptive_field(seen);
            seen = widest([seen, h].into_iter()).unwrap_or(seen);
        }
        seen
    }

    fn macs(&self, input: &[usize]) -> u64 {
        match self.shapes(input) {
            Ok((inputs, _)) => self
                .layers
                .iter()
                .zip(&inputs)
                .map(|(l, s)| l.macs(s))
                .sum(),
            Err(_) => 0,
        }
    }
}

impl Dense {
    /// Backward through the layers, last to first; returns the gradient pieces of x and
    /// of each `h_l` (the first is `dx`). Without `want_dx`, the first layer is sent back
    /// with `backward_params` when it reads nothing but x.
    fn gradient_pieces(&mut self, dy: Tensor, want_dx: bool) -> Result<Vec<Tensor>> {
        let widths = kept(&self.widths, self.kind())?.clone();
        let mut pieces = dy.split(&widths).map_err(|e| e.in_layer(self.kind()))?;
        for (i, layer) in self.layers.iter_mut().enumerate().rev() {
            let dh = std::mem::take(&mut pieces[i + 1]);
            let name = format!("layer {i}");
            if i == 0 && !want_dx {
                layer.backward_params(dh).map_err(|e| e.in_layer(&name))?;
                break;
            }
            let d_in = layer.backward(dh).map_err(|e| e.in_layer(&name))?;
            let read = d_in.split(&widths[..=i]).map_err(|e| e.in_layer(&name))?;
            for (piece, d) in pieces.iter_mut().zip(read) {
                piece.add_assign(&d)?;
            }
        }
        Ok(pieces)
    }
}
