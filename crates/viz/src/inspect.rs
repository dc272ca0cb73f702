//! Looking inside a network: the filters it learned, the feature maps one image produces
//! in it, and the pixels its decision depends on (saliency) — each as data and as a
//! picture drawn with [`crate`].
//!
//! Layers are named as their parameters are: a convolution whose weight is `3.weight` is
//! layer `3`; inside a residual block, `4.main.0`.

use crate::canvas::{INK, WHITE};
use crate::font::{draw_text, text_height, text_width};
use crate::{
    hstack, image_grid, overlay_heat, render_tile, tile_matrix, vstack, Canvas, Colormap, Tile,
    TileRange, TileTable,
};
use ocellus::error::{Error, Result};
use ocellus::layers::upsample::{Upsample, UpsampleMode, UpsampleSize};
use ocellus::layers::{expect_nchw, Key, Layer, Mode, Part};
use ocellus::loss;
use ocellus::network::walk::{forward_through_leaves, LeafVisitor};
use ocellus::network::Sequential;
use ocellus::tensor::{shape_str, Tensor};
use ocellus::LayerExt;

/// Tiles of a picture are drawn about this many pixels across.
const TILE_PIXELS: usize = 56;
/// Space around a title, as the pictures of [`crate`] leave it.
const MARGIN: usize = 12;

/// `body` under a large `title` and a line of small print (`note`, may be empty).
fn titled(title: &str, note: &str, body: &Canvas) -> Canvas {
    let note_h = if note.is_empty() {
        0
    } else {
        text_height(1) + 10
    };
    let top = MARGIN + text_height(2) + 6 + note_h;
    let width = body
        .width
        .max(2 * MARGIN + text_width(title, 2))
        .max(2 * MARGIN + text_width(note, 1));
    let mut canvas = Canvas::new(width, top + body.height, WHITE);
    // The body's own top margin overlaps the note: draw the text over it.
    canvas.blit(body, 0, (top - MARGIN) as i64);
    draw_text(&mut canvas, MARGIN as i64, MARGIN as i64, title, INK, 2);
    let note_y = MARGIN + text_height(2) + 6;
    draw_text(&mut canvas, MARGIN as i64, note_y as i64, note, INK, 1);
    canvas
}

/// Pixels per value that make a `size`-wide map about [`TILE_PIXELS`] wide (at least 1).
fn scale_for(size: usize, target: usize) -> usize {
    (target / size.max(1)).max(1)
}

/// `6×1×5×5`: a shape in words, without the brackets.
fn dims(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    parts.join("×")
}

/// The convolutions of `model` (layers of kind `conv2d`, inside blocks too): the name of
/// each (the prefix of its `weight` parameter: `0`, `4.main.0`) and its weight,
/// `(OC, IC/groups, KH, KW)`. A transposed convolution's weight, `(IC, OC/groups, KH, KW)`,
/// holds its filters the other way round and is not listed.
pub fn conv_layers(model: &dyn Layer) -> Vec<(String, &Tensor)> {
    fn visit<'a>(layer: &'a dyn Layer, name: &str, out: &mut Vec<(String, &'a Tensor)>) {
        let is_conv = layer.kind() == "conv2d";
        for (key, part) in layer.parts() {
            let full = if name.is_empty() {
                key.to_string()
            } else {
                format!("{name}.{key}")
            };
            match part {
                Part::Layer(child) => visit(child, &full, out),
                Part::Param(p) if is_conv && key == Key::Name("weight") => {
                    out.push((name.to_string(), p.value()));
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    visit(model, "", &mut out);
    out
}

/// The convolution named `name` (`3`, `4.main.0`; a trailing `.weight` is allowed), or the
/// first one when `name` is `None`. An unknown name is an error listing the convolutions.
pub fn find_conv<'a>(model: &'a dyn Layer, name: Option<&str>) -> Result<(String, &'a Tensor)> {
    let convs = conv_layers(model);
    let listing = || {
        let names: Vec<String> = convs
            .iter()
            .map(|(n, w)| format!("{n} ({})", dims(w.shape())))
            .collect();
        if names.is_empty() {
            "the model has no convolution".to_string()
        } else {
            format!("the convolutions are {}", names.join(", "))
        }
    };
    let Some(name) = name else {
        return convs
            .first()
            .cloned()
            .ok_or_else(|| Error::config("filters", listing()));
    };
    let wanted = name.strip_suffix(".weight").unwrap_or(name);
    if let Some(found) = convs.iter().find(|(n, _)| n == wanted) {
        return Ok(found.clone());
    }
    // A layer with a weight that is not a convolution's says what it is.
    let other = model
        .params()
        .into_iter()
        .find(|(n, _)| n.strip_suffix(".weight") == Some(wanted))
        .map(|(_, p)| p.value().shape().to_vec());
    let message = match other {
        Some(shape) => format!(
            "layer '{wanted}' has a {} weight, not a convolution's (OC, IC, KH, KW); {}",
            shape_str(&shape),
            listing()
        ),
        None => format!("no convolution named '{wanted}'; {}", listing()),
    };
    Err(Error::config("filters", message))
}

/// Outputs and input channels shown at most by [`filters_picture`].
#[derive(Clone, Copy, Debug)]
pub struct FilterLimits {
    /// Filters (output channels) shown.
    pub outputs: usize,
    /// Input channels shown per filter of a deeper layer.
    pub inputs: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            outputs: 64,
            inputs: 16,
        }
    }
}

/// The filters of the convolution `name` (default: the first) as a picture.
///
/// A convolution over 1 or 3 channels (the first layer of an image network) shows every
/// filter as a small picture, grey or RGB, each stretched over its own range: what the
/// filter responds to most. A deeper convolution shows a table, one tile per (output,
/// input channel) pair — a row per filter — in blue (negative), white (zero) and red
/// (positive) on one scale, so that weights can be compared across the table (the 98th
/// percentile of |w| and above at full colour).
pub fn filters_picture(
    model: &dyn Layer,
    name: Option<&str>,
    limits: FilterLimits,
) -> Result<Canvas> {
    let (name, weight) = find_conv(model, name)?;
    let [oc, ic, kh, kw] = <[usize; 4]>::try_from(weight.shape()).expect("a 4-D weight");
    let shown = oc.min(limits.outputs.max(1));
    let per_filter = ic * kh * kw;
    let filter = |o: usize| &weight.data()[o * per_filter..(o + 1) * per_filter];
    let of_total = |shown: usize, total: usize| {
        if shown < total {
            format!(" (first {shown} of {total})")
        } else {
            String::new()
        }
    };
    let scale = scale_for(kh.max(kw), TILE_PIXELS);
    let max_abs = weight.max_abs();
    if ic == 1 || ic == 3 {
        let tiles: Vec<Tile> = (0..shown)
            .map(|o| Tile::new(ic, kh, kw, filter(o).to_vec()).with_caption(o.to_string()))
            .collect();
        let colors = if ic == 3 { "RGB" } else { "grey" };
        let note = format!(
            "{oc} filters of {}{}, {colors}, each stretched over its own range (largest |w| {max_abs:.3})",
            dims(&[ic, kh, kw]),
            of_total(shown, oc)
        );
        let columns = if shown <= 8 { shown } else { 8 };
        let grid = image_grid(
            "",
            &tiles,
            columns,
            scale,
            TileRange::PerTile,
            Colormap::Gray,
        );
        return Ok(titled(&format!("filters of layer {name}"), &note, &grid));
    }
    let inputs = ic.min(limits.inputs.max(1));
    let plane = kh * kw;
    let table = TileTable {
        title: String::new(),
        corner: "out\\in".into(),
        row_labels: (0..shown).map(|o| o.to_string()).collect(),
        column_labels: (0..inputs).map(|i| i.to_string()).collect(),
        tiles: (0..shown)
            .map(|o| {
                (0..inputs)
                    .map(|i| Tile::gray(kh, kw, filter(o)[i * plane..(i + 1) * plane].to_vec()))
                    .collect()
            })
            .collect(),
    };
    let scale = scale_for(kh.max(kw), 30);
    // One scale for the whole table, set by the 98th percentile of |w| so that a few large
    // weights do not wash out the rest; larger ones show at full colour.
    let mut magnitudes: Vec<f32> = weight.data().iter().map(|v| v.abs()).collect();
    magnitudes.sort_by(f32::total_cmp);
    let full = magnitudes[(magnitudes.len() - 1) * 98 / 100].max(f32::MIN_POSITIVE);
    let range = TileRange::Fixed(-full, full);
    let grid = tile_matrix(&table, scale, range, Colormap::Diverging);
    let note = format!(
        "{oc} filters of {}: a row per filter{}, a column per input channel{}; blue < 0 < red, full colour from |w| = {full:.3} (largest {max_abs:.3})",
        dims(&[ic, kh, kw]),
        of_total(shown, oc),
        of_total(inputs, ic)
    );
    Ok(titled(&format!("filters of layer {name}"), &note, &grid))
}

/// What one layer made of the input: its output for the one image.
#[derive(Clone, Debug)]
pub struct FeatureMaps {
    /// The layer's position, named as its parameters are: `3`, or inside blocks
    /// `4.main.0` (a residual block's main path), `5.1.2` (branch 1 of a concatenation).
    pub name: String,
    /// The layer's [`Layer::describe`].
    pub description: String,
    /// The layer's kind (`"conv2d"`, `"maxpool2d"`, `"relu"`, `"residual"`, `"concat"`…).
    pub kind: &'static str,
    /// The output for the image, (C, H, W).
    pub maps: Tensor,
}

/// Layers whose output is worth a picture: convolutions, transposed convolutions,
/// pooling, upsampling and blocks (their joined output), and with `activations`, the
/// element-wise layers after them.
fn shows_maps(kind: &str, activations: bool) -> bool {
    match kind {
        "conv2d" | "convtranspose2d" | "maxpool2d" | "avgpool2d" | "upsample" | "residual"
        | "concat" | "dense" | "scale" => true,
        "relu" | "leakyrelu" | "sigmoid" | "tanh" | "silu" | "hardswish" | "batchnorm2d" => {
            activations
        }
        _ => false,
    }
}

/// Collects the maps worth a picture during a forward pass through every block.
struct Collect {
    activations: bool,
    maps: Vec<FeatureMaps>,
}

impl Collect {
    fn keep(&mut self, name: &str, layer: &dyn Layer, y: &Tensor) -> Result<()> {
        let shape = y.shape();
        let is_map = shape.len() == 4 && shape[2] * shape[3] > 1;
        if is_map && shows_maps(layer.kind(), self.activations) {
            self.maps.push(FeatureMaps {
                name: name.to_string(),
                description: layer.describe(),
                kind: layer.kind(),
                maps: y.clone().reshape(&shape[1..])?,
            });
        }
        Ok(())
    }
}

impl LeafVisitor for Collect {
    fn leaf(&mut self, name: &str, layer: &mut dyn Layer, x: &Tensor) -> Result<Tensor> {
        let y = layer
            .forward_ref(x, Mode::Eval)
            .map_err(|e| e.in_layer(&format!("layer {name}")))?;
        self.keep(name, layer, &y)?;
        Ok(y)
    }

    fn joined(&mut self, name: &str, block: &dyn Layer, y: &Tensor) -> Result<()> {
        self.keep(name, block, y)
    }
}

/// Runs one image `x` (1, C, H, W), already normalised, through `model` in
/// [`Mode::Eval`] and keeps the output of every convolution, pooling layer and block —
/// inside blocks too: each path's layers, then the block's joined output — (and, with
/// `activations`, every activation and BatchNorm after them) that is still an image
/// larger than 1×1.
pub fn feature_maps(
    model: &mut Sequential,
    x: &Tensor,
    activations: bool,
) -> Result<Vec<FeatureMaps>> {
    expect_nchw("feature maps", x.shape(), None)?;
    if x.shape()[0] != 1 {
        return Err(Error::shape(
            "feature maps",
            "one image (1, C, H, W)",
            x.shape(),
        ));
    }
    model.shapes(x.shape())?;
    let mut collect = Collect {
        activations,
        maps: Vec::new(),
    };
    forward_through_leaves(model, "", x, &mut collect)?;
    Ok(collect.maps)
}

/// The input and the feature maps as one picture under `title`: a labelled grid per
/// layer, stacked downwards, at most `max_channels` maps per layer. Every map is
/// stretched over its own range (viridis: dark is low, yellow is high), so each shows its
/// pattern; the label gives the layer's range of values.
pub fn feature_maps_picture(
    title: &str,
    input: &Tile,
    layers: &[FeatureMaps],
    max_channels: usize,
) -> Canvas {
    let input_scale = scale_for(input.height.max(input.width), 2 * TILE_PIXELS);
    let input_panel = render_tile(input, Colormap::Gray, input_scale);
    let input_label = format!(
        "input {}",
        dims(&[input.channels, input.height, input.width])
    );
    let mut labels = vec![input_label];
    let mut grids = vec![input_panel];
    for layer in layers {
        let [c, h, w] = <[usize; 3]>::try_from(layer.maps.shape()).expect("(C, H, W) maps");
        let shown = c.min(max_channels.max(1));
        let tiles: Vec<Tile> = (0..shown)
            .map(|k| {
                let plane = &layer.maps.data()[k * h * w..(k + 1) * h * w];
                Tile::gray(h, w, plane.to_vec()).with_caption(k.to_string())
            })
            .collect();
        let scale = scale_for(h.max(w), TILE_PIXELS);
        let columns = if shown <= 8 { shown } else { 16.min(shown) };
        grids.push(image_grid(
            "",
            &tiles,
            columns,
            scale,
            TileRange::PerTile,
            Colormap::Viridis,
        ));
        let (lo, hi) = layer
            .maps
            .data()
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let subset = if shown < c {
            format!(", the first {shown} of {c} maps")
        } else {
            String::new()
        };
        labels.push(format!(
            "layer {}: {} → {}{subset}, values {lo:.2} … {hi:.2}",
            layer.name,
            layer.description,
            dims(&[c, h, w])
        ));
    }
    let panels: Vec<(&str, &Canvas)> = labels
        .iter()
        .map(String::as_str)
        .zip(grids.iter())
        .collect();
    let note = "each map stretched over its own range: dark purple is its lowest value, yellow its highest";
    titled(title, note, &vstack(&panels))
}

/// The gradient of one class score with respect to the input image (Simonyan et al. 2014).
#[derive(Clone, Debug)]
pub struct Saliency {
    /// The class whose score was differentiated.
    pub class: usize,
    /// Softmax of the logits: the model's probability for every class.
    pub probabilities: Vec<f32>,
    /// `∂ score_class / ∂x`, (1, C, H, W), in normalised input units.
    pub gradient: Tensor,
    /// `max_c |∂ score_class / ∂x[c, h, w]|`, (H, W): how much each pixel can move the score.
    pub map: Tensor,
}

impl Saliency {
    /// The predicted class: the one with the highest probability.
    pub fn predicted(&self) -> usize {
        most_probable(&self.probabilities)
    }
}

/// The index of the largest probability (the first one on a tie).
/// The class an explanation is of — `class`, or the most probable one — with the
/// probabilities of the logits (1, K) and the one-hot `∂logits[class]/∂logits`. A class
/// the model does not have is an error naming `what`.
fn explained_class(
    logits: &Tensor,
    class: Option<usize>,
    what: &str,
) -> Result<(Vec<f32>, usize, Tensor)> {
    let probabilities = loss::softmax(logits)?.into_vec();
    let classes = probabilities.len();
    let class = match class {
        Some(k) if k < classes => k,
        Some(k) => {
            return Err(Error::config(
                what,
                format!(
                    "class {k} does not exist: the model has {classes} classes, 0 to {}",
                    classes - 1
                ),
            ))
        }
        None => most_probable(&probabilities),
    };
    let mut one_hot = Tensor::zeros(logits.shape());
    one_hot.data_mut()[class] = 1.0;
    Ok((probabilities, class, one_hot))
}

fn most_probable(probabilities: &[f32]) -> usize {
    let mut best = 0;
    for (k, p) in probabilities.iter().enumerate() {
        if *p > probabilities[best] {
            best = k;
        }
    }
    best
}

/// Saliency of one normalised image `x` (1, C, H, W) for `class` (default: the predicted
/// one). The forward pass runs in [`Mode::Eval`]; backward starts from a one-hot `dy` on
/// the class's logit, so the gradient is that of the raw score, not of the probability.
/// The parameter gradients the backward pass adds are cleared again.
pub fn saliency(model: &mut Sequential, x: &Tensor, class: Option<usize>) -> Result<Saliency> {
    expect_nchw("saliency", x.shape(), None)?;
    if x.shape()[0] != 1 {
        return Err(Error::shape(
            "saliency",
            "one image (1, C, H, W)",
            x.shape(),
        ));
    }
    let logits = model.forward_ref(x, Mode::Eval)?;
    // L = logits[class], so ∂L/∂logits is one-hot.
    let (probabilities, class, dy) = explained_class(&logits, class, "saliency")?;
    let gradient = model.backward(dy)?;
    model.zero_grad();
    let (_, c, h, w) = gradient.dims4()?;
    let plane = h * w;
    let map: Vec<f32> = (0..plane)
        .map(|i| {
            (0..c)
                .map(|k| gradient.data()[k * plane + i].abs())
                .fold(0.0, f32::max)
        })
        .collect();
    Ok(Saliency {
        class,
        probabilities,
        map: Tensor::from_vec(&[h, w], map)?,
        gradient,
    })
}

/// The image, its saliency map and the map over the image, side by side, under a caption
/// naming the predicted class and its probability (and the true class, when known).
/// `image` is the picture as seen (before normalisation).
pub fn saliency_picture(
    image: &Tile,
    saliency: &Saliency,
    classes: &[String],
    truth: Option<usize>,
) -> Canvas {
    let name = class_name(classes, saliency.class);
    let score = format!("|∂ score({name}) / ∂ pixel|");
    Explanation {
        method: "saliency",
        map: saliency.map.data(),
        probabilities: &saliency.probabilities,
        class: saliency.class,
        predicted: saliency.predicted(),
    }
    .picture(
        image,
        classes,
        truth,
        &score,
        "gradient of the class score (the logit) in evaluation mode, largest over channels; yellow: most sensitive",
    )
}

/// `classes[k]`, or `k` for a class without a name.
fn class_name(classes: &[String], k: usize) -> String {
    classes.get(k).cloned().unwrap_or_else(|| k.to_string())
}

/// A map over the input that explains a class score (saliency, Grad-CAM), and the
/// prediction it explains.
struct Explanation<'a> {
    /// How the map was made, as the caption names it.
    method: &'a str,
    /// (H, W), values in [0, 1].
    map: &'a [f32],
    probabilities: &'a [f32],
    /// The class whose score the map explains.
    class: usize,
    predicted: usize,
}

impl Explanation<'_> {
    /// The image, the map (under `map_label`) and the map over the image, side by side,
    /// under a caption naming the prediction (and the true class, when known) and `note`.
    fn picture(
        &self,
        image: &Tile,
        classes: &[String],
        truth: Option<usize>,
        map_label: &str,
        note: &str,
    ) -> Canvas {
        let name = |k: usize| class_name(classes, k);
        let p = self.probabilities;
        let mut caption = format!(
            "predicted: {} ({:.1}%)",
            name(self.predicted),
            100.0 * p[self.predicted]
        );
        if let Some(t) = truth {
            caption += &format!(", true: {}", name(t));
        }
        if self.class != self.predicted {
            caption += &format!(
                "; {} of '{}' ({:.1}%)",
                self.method,
                name(self.class),
                100.0 * p[self.class]
            );
        }
        let scale = scale_for(image.height.max(image.width), 3 * TILE_PIXELS);
        let (h, w) = (image.height, image.width);
        let input = render_tile(image, Colormap::Gray, scale);
        let heat = render_tile(
            &Tile::gray(h, w, self.map.to_vec()),
            Colormap::Viridis,
            scale,
        );
        let overlay = overlay_heat(image, self.map, 0.5, scale);
        let row = hstack(&[("input", &input), (map_label, &heat), ("overlay", &overlay)]);
        titled(&caption, note, &row)
    }
}

/// Grad-CAM (Selvaraju et al. 2017): where in the image a layer's evidence for a class
/// lies. For the layer's output `A` (K maps of h×w) and the class score `y` (its logit),
/// each map is weighted by its mean gradient, `α_k = (1/hw)·Σ_{i,j} ∂y/∂A_k[i, j]`, and
/// `cam = ReLU(Σ_k α_k·A_k)` keeps the places that raise the score. The map is brought to
/// the input's size by bilinear interpolation (PyTorch's `interpolate(mode="bilinear",
/// align_corners=False)`).
#[derive(Clone, Debug)]
pub struct GradCam {
    /// The layer whose output was weighted, named by its position (`3`).
    pub layer: String,
    /// The class whose score was differentiated.
    pub class: usize,
    /// Softmax of the logits: the model's probability for every class.
    pub probabilities: Vec<f32>,
    /// `α_k`, one weight per map (K).
    pub weights: Vec<f32>,
    /// `ReLU(Σ_k α_k·A_k)`, (h, w), at the layer's resolution.
    pub cam: Tensor,
    /// [`GradCam::cam`] interpolated to the input, (H, W).
    pub map: Tensor,
}

impl GradCam {
    /// The predicted class: the one with the highest probability.
    pub fn predicted(&self) -> usize {
        most_probable(&self.probabilities)
    }
}

/// Layer kinds whose output Grad-CAM is usually taken from: convolutions and blocks.
fn is_feature_layer(kind: &str) -> bool {
    matches!(
        kind,
        "conv2d" | "residual" | "concat" | "dense" | "scale" | "sequential"
    )
}

/// The layers Grad-CAM can use for an input of `input` = (1, C, H, W): the top-level
/// layers whose output is a stack of maps (N, K, h, w), with that output's shape.
pub fn gradcam_layers(model: &Sequential, input: &[usize]) -> Result<Vec<(String, Vec<usize>)>> {
    let shapes = model.shapes(input)?;
    let last = model.len().saturating_sub(1);
    Ok(shapes
        .into_iter()
        .enumerate()
        .filter(|(i, s)| s.len() == 4 && *i < last)
        .map(|(i, s)| (i.to_string(), s))
        .collect())
}

/// The usual Grad-CAM layer: the last top-level convolution or block whose output is a
/// stack of maps (otherwise the last layer with such an output).
pub fn default_gradcam_layer(model: &Sequential, input: &[usize]) -> Result<Option<String>> {
    let layers = gradcam_layers(model, input)?;
    let kind = |name: &str| {
        name.parse::<usize>()
            .ok()
            .and_then(|i| model.layers().get(i))
            .map_or("", |l| l.kind())
    };
    Ok(layers
        .iter()
        .rev()
        .find(|(n, _)| is_feature_layer(kind(n)))
        .or(layers.last())
        .map(|(n, _)| n.clone()))
}

/// Grad-CAM of one normalised image `x` (1, C, H, W) at the top-level layer `layer` for
/// `class` (default: the predicted one), in [`Mode::Eval`]. An unknown layer, one inside a
/// block, or one whose output is not a stack of maps is an error listing the layers that
/// can be used. The parameter gradients the backward pass adds are cleared again.
pub fn grad_cam(
    model: &mut Sequential,
    x: &Tensor,
    layer: &str,
    class: Option<usize>,
) -> Result<GradCam> {
    expect_nchw("Grad-CAM", x.shape(), None)?;
    if x.shape()[0] != 1 {
        return Err(Error::shape(
            "Grad-CAM",
            "one image (1, C, H, W)",
            x.shape(),
        ));
    }
    let usable = gradcam_layers(model, x.shape())?;
    let listing = || {
        let names: Vec<String> = usable
            .iter()
            .map(|(n, s)| {
                let kind = n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| model.layers().get(i))
                    .map_or("", |l| l.kind());
                format!("{n} ({kind}, {})", dims(&s[1..]))
            })
            .collect();
        if names.is_empty() {
            "the model has no layer whose output is a stack of maps".to_string()
        } else {
            format!("the layers with maps are {}", names.join(", "))
        }
    };
    let index = match usable.iter().find(|(n, _)| n == layer) {
        Some((n, _)) => n.parse::<usize>().expect("top-level names are positions"),
        None => {
            let top = layer
                .split('.')
                .next()
                .and_then(|t| t.parse::<usize>().ok());
            let message = match top {
                Some(t) if layer.contains('.') && t < model.len() => format!(
                    "layer '{layer}' is inside block {t}; Grad-CAM weighs whole layers of the network (--layer {t} takes the block's output); {}",
                    listing()
                ),
                Some(t) if t < model.len() => format!(
                    "layer {t} ({}) does not output a stack of maps; {}",
                    model.layers()[t].kind(),
                    listing()
                ),
                _ => format!("no layer named '{layer}'; {}", listing()),
            };
            return Err(Error::config("Grad-CAM layer", message));
        }
    };
    let layers = model.layers_mut();
    let (head, tail) = layers.split_at_mut(index + 1);
    let mut activations = x.clone();
    for (i, l) in head.iter_mut().enumerate() {
        activations = l
            .forward_ref(&activations, Mode::Eval)
            .map_err(|e| e.in_layer(&format!("layer {i}")))?;
    }
    let mut logits = activations.clone();
    for (i, l) in tail.iter_mut().enumerate() {
        logits = l
            .forward_ref(&logits, Mode::Eval)
            .map_err(|e| e.in_layer(&format!("layer {}", index + 1 + i)))?;
    }
    // y = logits[class], so ∂y/∂logits is one-hot; back through the layers after A.
    let (probabilities, class, mut d) = explained_class(&logits, class, "Grad-CAM class")?;
    for (i, l) in tail.iter_mut().enumerate().rev() {
        d = l
            .backward(d)
            .map_err(|e| e.in_layer(&format!("layer {}", index + 1 + i)))?;
    }
    model.zero_grad();
    let (_, k, h, w) = activations.dims4()?;
    let plane = h * w;
    let (a, da) = (activations.data(), d.data());
    // α_k = mean over positions of ∂y/∂A_k.
    let weights: Vec<f32> = (0..k)
        .map(|c| {
            let sum: f64 = da[c * plane..(c + 1) * plane]
                .iter()
                .map(|&v| v as f64)
                .sum();
            (sum / plane as f64) as f32
        })
        .collect();
    // cam = ReLU(Σ_k α_k·A_k)
    let cam: Vec<f32> = (0..plane)
        .map(|i| {
            let s: f64 = (0..k)
                .map(|c| weights[c] as f64 * a[c * plane + i] as f64)
                .sum();
            (s as f32).max(0.0)
        })
        .collect();
    let cam = Tensor::from_vec(&[1, 1, h, w], cam)?;
    let [_, _, ih, iw] = <[usize; 4]>::try_from(x.shape()).expect("checked NCHW");
    let mut upsample = Upsample::with_size(UpsampleSize::Fixed(ih, iw), UpsampleMode::Bilinear)?;
    let map = upsample.forward_ref(&cam, Mode::Eval)?.reshape(&[ih, iw])?;
    Ok(GradCam {
        layer: layer.to_string(),
        class,
        probabilities,
        weights,
        cam: cam.reshape(&[h, w])?,
        map,
    })
}

/// The image, its Grad-CAM map and the map over the image, side by side, under a caption
/// naming the prediction (and the true class, when known). `image` is the picture as seen
/// (before normalisation).
pub fn gradcam_picture(
    image: &Tile,
    gradcam: &GradCam,
    classes: &[String],
    truth: Option<usize>,
) -> Canvas {
    let [ch, cw] = <[usize; 2]>::try_from(gradcam.cam.shape()).expect("an (h, w) map");
    let label = format!("Grad-CAM, layer {} ({ch}×{cw})", gradcam.layer);
    let note = format!(
        "ReLU of the layer's maps weighted by their mean gradient of the score of '{}', interpolated to the input; yellow: most evidence",
        class_name(classes, gradcam.class)
    );
    Explanation {
        method: "Grad-CAM",
        map: gradcam.map.data(),
        probabilities: &gradcam.probabilities,
        class: gradcam.class,
        predicted: gradcam.predicted(),
    }
    .picture(image, classes, truth, &label, &note)
}

/// The Grad-CAM map blended over the image at `scale` pixels per input pixel.
pub fn gradcam_overlay(image: &Tile, gradcam: &GradCam, scale: usize) -> Canvas {
    overlay_heat(image, gradcam.map.data(), 0.5, scale)
}
