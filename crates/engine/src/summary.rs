//! The summary table of a network: for every layer its output shape, parameters,
//! multiply-adds, receptive field and the memory its output takes — computed by the layers
//! themselves ([`Layer::output_shape`], [`LayerExt::param_count`], [`Layer::macs`],
//! [`Layer::receptive_field`]), so the table and the layers can never disagree.
//!
//! ```
//! use ocellus::{zoo, summary::Summary, Rng};
//!
//! let arch = zoo::model("lenet5", [1, 32, 32], 10).unwrap();
//! let net = arch.build(&mut Rng::new(0)).unwrap();
//! let table = Summary::of(&net, &[1, 1, 32, 32]).unwrap();
//! assert_eq!(table.total_params, 61_706);
//! println!("{table}");
//! ```

use std::fmt;

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::layers::{Key, Layer, LayerExt, Part};
use crate::network::Sequential;
use crate::spec::Composition;
use crate::tensor::numel;
use crate::text::{bytes_str, grouped};

/// Bytes of one activation value: activations are `f32`.
const BYTES_PER_VALUE: u64 = std::mem::size_of::<f32>() as u64;

/// One row of the table: a layer, or a block and then, indented, the layers inside it.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// Position as in parameter names: `"3"`, `"4.main.0"`, `"4.shortcut.1"`, `"4.act"`;
    /// `"4.add"` is the sum of a residual block's two paths.
    pub name: String,
    /// 0 for the network's own layers, 1 inside a block, 2 inside a block in a block…
    pub depth: usize,
    /// The layer's kind (`"conv2d"`, `"residual"`, `"add"` for a residual sum).
    pub kind: String,
    /// The layer's [`Layer::describe`], or a short description for a block.
    pub description: String,
    /// Output shape, batch included: `(N, C, H, W)` or `(N, F)`.
    pub output_shape: Vec<usize>,
    /// Learnable values (a block: all of its layers').
    pub params: usize,
    /// Multiply-adds of one forward pass at the summary's batch size (a block: all of its
    /// layers').
    pub macs: u64,
    /// Receptive field (height, width) of one output unit, with the jump between units.
    pub receptive_field: [ReceptiveField; 2],
    /// Bytes of the output activations at the summary's batch size, as `f32` (a block:
    /// the sum over the rows inside it, which is what a training step keeps).
    pub activation_bytes: u64,
    /// True for a block whose inner layers follow as rows of `depth + 1`; its numbers are
    /// the totals of those rows and are not counted again in the network's totals.
    pub is_block: bool,
}

/// The table's column headers, in the order of [`SummaryRow::cells`].
pub const COLUMNS: [&str; 8] = [
    "layer",
    "description",
    "output C×H×W",
    "params",
    "MACs",
    "RF",
    "jump",
    "activations",
];

impl SummaryRow {
    /// True when the output is an image-shaped map, where a receptive field is meaningful.
    pub fn is_map(&self) -> bool {
        self.output_shape.len() == 4
    }

    /// The row as the table prints it, one string per [`COLUMNS`] entry (without the
    /// indentation of rows inside a block). RF and jump are `—` for flat outputs.
    pub fn cells(&self) -> [String; 8] {
        let [h, w] = self.receptive_field;
        let (rf, jump) = if self.is_map() {
            (per_axis(h.size, w.size), per_axis(h.jump, w.jump))
        } else {
            ("—".into(), "—".into())
        };
        [
            self.name.clone(),
            self.description.clone(),
            per_image(&self.output_shape),
            grouped(self.params as u64),
            grouped(self.macs),
            rf,
            jump,
            bytes_str(self.activation_bytes),
        ]
    }
}

/// The summary of a network for one input shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The input shape `(N, C, H, W)`; `N` is the batch the MACs and memory are given for.
    pub input: Vec<usize>,
    /// Rows in forward order; a block's rows follow it, one level deeper.
    pub rows: Vec<SummaryRow>,
    /// Learnable values of the whole network.
    pub total_params: usize,
    /// Multiply-adds of one forward pass over the batch.
    pub total_macs: u64,
    /// Bytes of all layers' outputs (the input not included) over the batch.
    pub total_activation_bytes: u64,
    /// Bytes of the input batch.
    pub input_bytes: u64,
}

impl Summary {
    /// The table for `net` on inputs of shape `input` = `(N, C, H, W)`; fails like
    /// [`Sequential::shapes`] when a layer does not fit, naming it.
    pub fn of(net: &Sequential, input: &[usize]) -> Result<Summary> {
        net.shapes(input)?;
        let mut rows = Vec::new();
        let mut shape = input.to_vec();
        let mut rf = [ReceptiveField::INPUT; 2];
        for (i, layer) in net.layers().iter().enumerate() {
            (shape, rf) = push_rows(&mut rows, &i.to_string(), 0, layer.as_ref(), &shape, rf)
                .map_err(|e| e.in_layer(&format!("layer {i}")))?;
        }
        let top = rows.iter().filter(|r| r.depth == 0);
        let total_activation_bytes = top.clone().map(|r| r.activation_bytes).sum();
        Ok(Summary {
            input: input.to_vec(),
            total_params: top.clone().map(|r| r.params).sum(),
            total_macs: top.map(|r| r.macs).sum(),
            total_activation_bytes,
            input_bytes: activation_bytes(input),
            rows,
        })
    }

    /// Bytes a training step needs at the summary's batch, roughly: every layer's output
    /// kept for backward and a gradient of the same size, and per parameter its value, its
    /// gradient and two optimiser moments.
    pub fn training_bytes(&self) -> u128 {
        let activations = (self.input_bytes as u128 + self.total_activation_bytes as u128) * 2;
        activations + self.total_params as u128 * 4 * crate::memory::BYTES_PER_VALUE
    }

    /// Checks that a training step at the summary's batch fits in the machine's memory;
    /// the error says how much it needs.
    pub fn expect_trainable(&self) -> Result<()> {
        let values = self.training_bytes() / crate::memory::BYTES_PER_VALUE;
        let what = format!("a training step at batch {}", self.batch());
        crate::memory::expect_fits("network", &what, Some(values))
    }

    /// The batch size the MACs and memory are counted for.
    pub fn batch(&self) -> usize {
        self.input.first().copied().unwrap_or(1)
    }

    /// The network's output shape.
    pub fn output_shape(&self) -> &[usize] {
        self.rows
            .iter()
            .rfind(|r| r.depth == 0)
            .map_or(&self.input, |r| &r.output_shape)
    }
}

fn activation_bytes(shape: &[usize]) -> u64 {
    (numel(shape) as u64).saturating_mul(BYTES_PER_VALUE)
}

/// Appends the row(s) of `layer`, which receives `input` with receptive field `rf`, and
/// returns its output shape and receptive field.
fn push_rows(
    rows: &mut Vec<SummaryRow>,
    name: &str,
    depth: usize,
    layer: &dyn Layer,
    input: &[usize],
    rf: [ReceptiveField; 2],
) -> Result<(Vec<usize>, [ReceptiveField; 2])> {
    let output_shape = layer.output_shape(input)?;
    let receptive_field = layer.receptive_field(rf);
    let mut row = SummaryRow {
        name: name.to_string(),
        depth,
        kind: layer.kind().to_string(),
        description: layer.describe(),
        output_shape: output_shape.clone(),
        params: layer.param_count(),
        macs: layer.macs(input),
        receptive_field,
        activation_bytes: activation_bytes(&output_shape),
        is_block: false,
    };
    let children = children(layer);
    match layer.spec().composition() {
        Composition::Leaf if children.is_empty() => rows.push(row),
        Composition::Leaf => {
            return Err(Error::config(
                name,
                "lists child layers but its spec does not say how it combines them",
            ))
        }
        Composition::Chain => {
            let at = rows.len();
            row.is_block = true;
            row.description = format!("Sequential of {} layers", children.len());
            rows.push(row);
            push_chain(rows, name, depth + 1, &children, input, rf, "layer")?;
            rows[at].activation_bytes = inner_bytes(rows, at);
        }
        Composition::Residual => {
            let at = rows.len();
            row.is_block = true;
            let child = |wanted| children.iter().find(|(key, _)| *key == Key::Name(wanted));
            let skip = if child("shortcut").is_some() {
                "shortcut"
            } else {
                "identity"
            };
            row.description = match child("act") {
                Some((_, act)) => format!("Residual: {}(main + {skip})", act.describe()),
                None => format!("Residual: main + {skip}"),
            };
            rows.push(row);
            let mut sum_shape = input.to_vec();
            for path in ["main", "shortcut"] {
                let Some((_, net)) = child(path) else {
                    continue;
                };
                // A path's layers are listed directly under the block.
                let (shape, _) = push_chain(
                    rows,
                    &format!("{name}.{path}"),
                    depth + 1,
                    &self::children(*net),
                    input,
                    rf,
                    &format!("{path} layer"),
                )?;
                if path == "main" {
                    sum_shape = shape;
                }
            }
            // The sum is a tensor of its own; the block's receptive field (its own rule for
            // combining the paths) applies from here on.
            rows.push(join_row(
                name,
                depth,
                "add",
                format!("main + {skip}"),
                &sum_shape,
                receptive_field,
            ));
            if let Some((_, act)) = child("act") {
                push_rows(
                    rows,
                    &format!("{name}.act"),
                    depth + 1,
                    *act,
                    &sum_shape,
                    receptive_field,
                )?;
            }
            rows[at].activation_bytes = inner_bytes(rows, at);
        }
        Composition::Concat => {
            let at = rows.len();
            row.is_block = true;
            row.description = format!("Concat of {} branches", children.len());
            rows.push(row);
            let mut widths = Vec::with_capacity(children.len());
            for (key, branch) in &children {
                let (shape, _) = push_chain(
                    rows,
                    &format!("{name}.{key}"),
                    depth + 1,
                    &self::children(*branch),
                    input,
                    rf,
                    &format!("branch {key} layer"),
                )?;
                widths.push(shape[1].to_string());
            }
            rows.push(join_row(
                name,
                depth,
                "concat",
                format!("join channels {}", widths.join(" + ")),
                &output_shape,
                receptive_field,
            ));
            rows[at].activation_bytes = inner_bytes(rows, at);
        }
        Composition::Dense => {
            let at = rows.len();
            row.is_block = true;
            row.description = format!("Dense block of {} layers", children.len());
            rows.push(row);
            let (mut features, mut seen) = (input.to_vec(), rf);
            let mut widths = vec![input[1].to_string()];
            for (key, layer) in &children {
                let (h, h_rf) = push_chain(
                    rows,
                    &format!("{name}.{key}"),
                    depth + 1,
                    &self::children(*layer),
                    &features,
                    seen,
                    &format!("layer {key} part"),
                )?;
                widths.push(h[1].to_string());
                features[1] += h[1];
                seen = [0, 1].map(|axis| ReceptiveField {
                    size: seen[axis].size.max(h_rf[axis].size),
                    jump: seen[axis].jump,
                });
            }
            rows.push(join_row(
                name,
                depth,
                "concat",
                format!("join channels {}", widths.join(" + ")),
                &output_shape,
                receptive_field,
            ));
            rows[at].activation_bytes = inner_bytes(rows, at);
        }
        Composition::Scale => {
            let at = rows.len();
            row.is_block = true;
            row.description = "Scale: x · gate(x) per channel".into();
            rows.push(row);
            for (key, gate) in &children {
                push_chain(
                    rows,
                    &format!("{name}.{key}"),
                    depth + 1,
                    &self::children(*gate),
                    input,
                    rf,
                    &format!("{key} layer"),
                )?;
            }
            rows.push(join_row(
                name,
                depth,
                "mul",
                "x · gate, per channel".into(),
                &output_shape,
                receptive_field,
            ));
            rows[at].activation_bytes = inner_bytes(rows, at);
        }
    }
    Ok((output_shape, receptive_field))
}

/// The row of the tensor where a block joins its paths (`{name}.{kind}`): no parameters,
/// no multiply-adds, the block's receptive field.
fn join_row(
    name: &str,
    depth: usize,
    kind: &str,
    description: String,
    shape: &[usize],
    receptive_field: [ReceptiveField; 2],
) -> SummaryRow {
    SummaryRow {
        name: format!("{name}.{kind}"),
        depth: depth + 1,
        kind: kind.into(),
        description,
        output_shape: shape.to_vec(),
        params: 0,
        macs: 0,
        receptive_field,
        activation_bytes: activation_bytes(shape),
        is_block: false,
    }
}

/// The child layers of `layer` with their keys.
fn children(layer: &dyn Layer) -> Vec<(Key, &dyn Layer)> {
    let parts = layer.parts().into_iter();
    parts
        .filter_map(|(key, part)| match part {
            Part::Layer(child) => Some((key, child)),
            _ => None,
        })
        .collect()
}

/// Appends the rows of `layers` applied one after another from `input`, named
/// `{prefix}.{key}`; errors name a layer as `{label} {key}`.
fn push_chain(
    rows: &mut Vec<SummaryRow>,
    prefix: &str,
    depth: usize,
    layers: &[(Key, &dyn Layer)],
    input: &[usize],
    rf: [ReceptiveField; 2],
    label: &str,
) -> Result<(Vec<usize>, [ReceptiveField; 2])> {
    let (mut shape, mut rf) = (input.to_vec(), rf);
    for (key, layer) in layers {
        (shape, rf) = push_rows(rows, &format!("{prefix}.{key}"), depth, *layer, &shape, rf)
            .map_err(|e| e.in_layer(&format!("{label} {key}")))?;
    }
    Ok((shape, rf))
}

/// Activation bytes of the rows directly inside the block at `at` (their own blocks
/// already hold their totals).
fn inner_bytes(rows: &[SummaryRow], at: usize) -> u64 {
    let depth = rows[at].depth;
    rows[at + 1..]
        .iter()
        .take_while(|r| r.depth > depth)
        .filter(|r| r.depth == depth + 1)
        .map(|r| r.activation_bytes)
        .sum()
}

/// One image's shape without the batch: `6×28×28` (C×H×W) or `120`.
fn per_image(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().skip(1).map(|d| d.to_string()).collect();
    dims.join("×")
}

/// `7` when both axes agree, else `7×5` (height×width).
fn per_axis(h: usize, w: usize) -> String {
    if h == w {
        h.to_string()
    } else {
        format!("{h}×{w}")
    }
}

impl fmt::Display for Summary {
    /// The table, then the totals. Indented rows are inside the block above them; the
    /// block's row already counts them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADERS: [&str; 8] = COLUMNS;
        let cells: Vec<[String; 8]> = self
            .rows
            .iter()
            .map(|r| {
                let indent = "  ".repeat(r.depth);
                let mut cells = r.cells();
                for cell in &mut cells[..2] {
                    cell.insert_str(0, &indent);
                }
                cells
            })
            .collect();
        let mut widths = HEADERS.map(|h| h.chars().count());
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // Text columns are left-aligned, numbers right-aligned.
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 8]| -> fmt::Result {
            let mut out = String::new();
            for (k, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                if k > 0 {
                    out += "  ";
                }
                if k < 2 {
                    out += cell;
                    out += &pad;
                } else {
                    out += &pad;
                    out += cell;
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        writeln!(
            f,
            "input {} ({}), batch {}",
            per_image(&self.input),
            bytes_str(self.input_bytes),
            self.batch()
        )?;
        line(f, HEADERS)?;
        let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        writeln!(f, "{}", "─".repeat(rule))?;
        for row in &cells {
            line(f, std::array::from_fn(|k| row[k].as_str()))?;
        }
        writeln!(f, "{}", "─".repeat(rule))?;
        writeln!(
            f,
            "total: {} parameters ({} as f32), {} multiply-adds per forward pass, {} of activations at batch {}",
            grouped(self.total_params as u64),
            bytes_str(self.total_params as u64 * BYTES_PER_VALUE),
            grouped(self.total_macs),
            bytes_str(self.total_activation_bytes),
            self.batch()
        )?;
        if self.rows.iter().any(|r| r.is_block) {
            writeln!(
                f,
                "indented rows are inside the block above them, whose row sums them"
            )?;
        }
        writeln!(
            f,
            "RF: receptive field in input pixels (H×W when they differ); jump: input pixels between neighbouring units"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Architecture;
    use crate::rng::Rng;
    use crate::zoo;

    fn summary_of(arch: &Architecture, batch: usize) -> Summary {
        let net = arch.build(&mut Rng::new(0)).unwrap();
        let [c, h, w] = arch.input;
        Summary::of(&net, &[batch, c, h, w]).unwrap()
    }

    fn parse(text: &str) -> Architecture {
        Architecture::parse(text, false).unwrap()
    }

    /// The architecture files shipped in `examples/architectures`.
    fn example(name: &str) -> Architecture {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/architectures")
            .join(name);
        Architecture::from_file(&path).unwrap()
    }

    #[test]
    fn a_3x3_convolution_from_3_to_64_channels_has_1792_parameters() {
        let arch = parse(
            "input = [3, 32, 32]\n[[layers]]\ntype = \"conv2d\"\nout_channels = 64\nkernel = 3\npadding = 1\n",
        );
        let s = summary_of(&arch, 1);
        assert_eq!(s.rows[0].params, 1_792);
        assert_eq!(s.total_params, 1_792);
        // Each of the 64·32·32 outputs takes 27 multiply-adds.
        assert_eq!(s.rows[0].macs, 64 * 32 * 32 * 27);
    }

    #[test]
    fn three_stacked_3x3_convolutions_see_7x7() {
        let conv = "[[layers]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\npadding = 1\n";
        let arch = parse(&format!("input = [1, 16, 16]\n{conv}{conv}{conv}"));
        let s = summary_of(&arch, 1);
        let sizes: Vec<usize> = s.rows.iter().map(|r| r.receptive_field[0].size).collect();
        assert_eq!(sizes, [3, 5, 7]);
        assert!(s
            .rows
            .iter()
            .all(|r| r.receptive_field[0] == r.receptive_field[1]));
    }

    #[test]
    fn the_notes_cifar_stack_has_the_notes_shapes() {
        let s = summary_of(&example("cifar_notes.toml"), 1);
        let shapes: Vec<(&str, Vec<usize>)> = s
            .rows
            .iter()
            .map(|r| (r.kind.as_str(), r.output_shape[1..].to_vec()))
            .collect();
        // §2.5, written C×H×W (the notes write H×W×C).
        let expected: Vec<(&str, Vec<usize>)> = vec![
            ("conv2d", vec![32, 32, 32]),
            ("relu", vec![32, 32, 32]),
            ("conv2d", vec![32, 32, 32]),
            ("relu", vec![32, 32, 32]),
            ("maxpool2d", vec![32, 16, 16]),
            ("conv2d", vec![64, 16, 16]),
            ("relu", vec![64, 16, 16]),
            ("maxpool2d", vec![64, 8, 8]),
            ("flatten", vec![4096]),
            ("linear", vec![128]),
            ("relu", vec![128]),
            ("dropout", vec![128]),
            ("linear", vec![10]),
        ];
        assert_eq!(shapes, expected);
        // Three 3×3 convolutions and two 2×2 pools: 3, 5, pool → 6 (jump 2), +2·2 → 10,
        // pool → 12 (jump 4).
        let rf: Vec<(usize, usize)> = s
            .rows
            .iter()
            .filter(|r| r.is_map())
            .map(|r| (r.receptive_field[0].size, r.receptive_field[0].jump))
            .collect();
        assert_eq!(
            rf,
            [
                (3, 1),
                (3, 1),
                (5, 1),
                (5, 1),
                (6, 2),
                (10, 2),
                (10, 2),
                (12, 4)
            ]
        );
    }

    #[test]
    fn lenet5_has_61706_parameters_and_its_layers_add_up() {
        let zoo_net = summary_of(&zoo::model("lenet5", [1, 32, 32], 10).unwrap(), 1);
        assert_eq!(zoo_net.total_params, 61_706);
        let file = summary_of(&example("lenet5.toml"), 1);
        assert_eq!(file.total_params, 61_706);
        // Conv 6@5×5 on 1 channel: 6·(25 + 1); conv 16@5×5 on 6: 16·(150 + 1);
        // 400→120, 120→84, 84→10 with biases.
        let params: Vec<usize> = zoo_net.rows.iter().map(|r| r.params).collect();
        assert_eq!(
            params,
            [156, 0, 0, 2_416, 0, 0, 0, 48_120, 0, 10_164, 0, 850]
        );
        // MACs: 6·28·28·25, 16·10·10·150, then the three matrix products.
        assert_eq!(zoo_net.rows[0].macs, 6 * 28 * 28 * 25);
        assert_eq!(zoo_net.rows[3].macs, 16 * 10 * 10 * 150);
        assert_eq!(
            zoo_net.total_macs,
            (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10) as u64
        );
    }

    #[test]
    fn memory_and_macs_scale_with_the_batch() {
        let arch = zoo::model("smallcnn", [3, 32, 32], 10).unwrap();
        let one = summary_of(&arch, 1);
        let eight = summary_of(&arch, 8);
        assert_eq!(eight.total_macs, 8 * one.total_macs);
        assert_eq!(eight.total_activation_bytes, 8 * one.total_activation_bytes);
        assert_eq!(eight.total_params, one.total_params);
        // The first conv's output: 8 images of 32×32×32 f32 values.
        assert_eq!(eight.rows[0].activation_bytes, 8 * 32 * 32 * 32 * 4);
        assert_eq!(eight.input_bytes, 8 * 3 * 32 * 32 * 4);
    }

    #[test]
    fn residual_blocks_open_into_rows_that_add_up_to_the_block() {
        let arch = zoo::model("resnet20", [3, 32, 32], 10).unwrap();
        let net = arch.build(&mut Rng::new(0)).unwrap();
        let s = Summary::of(&net, &[2, 3, 32, 32]).unwrap();
        assert_eq!(s.total_params, net.param_count());
        assert_eq!(s.total_macs, net.macs(&[2, 3, 32, 32]));
        assert_eq!(s.output_shape(), [2, 10]);
        for (at, block) in s.rows.iter().enumerate().filter(|(_, r)| r.is_block) {
            let inner: Vec<&SummaryRow> = s.rows[at + 1..]
                .iter()
                .take_while(|r| r.depth > block.depth)
                .collect();
            let direct = || inner.iter().filter(|r| r.depth == block.depth + 1);
            assert_eq!(direct().map(|r| r.params).sum::<usize>(), block.params);
            assert_eq!(direct().map(|r| r.macs).sum::<u64>(), block.macs);
            assert_eq!(inner.last().unwrap().output_shape, block.output_shape);
            assert_eq!(inner.last().unwrap().receptive_field, block.receptive_field);
        }
        // The first stage-2 block: stride 2 on the main path and on the 1×1 shortcut.
        let names: Vec<&str> = s.rows.iter().map(|r| r.name.as_str()).collect();
        for name in [
            "6",
            "6.main.0",
            "6.shortcut.0",
            "6.shortcut.1",
            "6.add",
            "6.act",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let row = |name: &str| s.rows.iter().find(|r| r.name == name).unwrap();
        assert_eq!(row("6.shortcut.0").output_shape, [2, 32, 16, 16]);
        assert_eq!(row("6.main.0").receptive_field[0].jump, 2);
        // Basic block 3 (the first one): 3×3 stem then two more 3×3: 1 + 2 + 2 + 2 = 7.
        assert_eq!(row("3.main.3").receptive_field[0].size, 7);
        // Inner rows are indented under their block.
        let text = s.to_string();
        assert!(text.lines().any(|l| l.starts_with("  6.main.0 ")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("6 ")), "{text}");
    }

    #[test]
    fn a_network_that_does_not_fit_its_input_names_the_layer() {
        let arch = zoo::model("lenet5", [1, 32, 32], 10).unwrap();
        let net = arch.build(&mut Rng::new(0)).unwrap();
        let err = Summary::of(&net, &[1, 1, 64, 64]).unwrap_err().to_string();
        assert!(err.contains("layer 7"), "{err}");
    }

    #[test]
    fn numbers_are_grouped_and_bytes_scaled() {
        assert_eq!(grouped(61_706), "61,706");
        assert_eq!(bytes_str(18_816), "18.4 KiB");
    }
}
