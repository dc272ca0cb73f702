//! Parallel branches joined along channels — GoogLeNet's Inception module (notes §2.7):
//! several paths see the same input (1×1, 3×3, 5×5 convolutions, a pooling path) and the
//! block stacks what they find, `y = [B₀(x), B₁(x), …]` along channels.
//!
//! Backward: `dy` is cut along channels into the pieces each branch produced, each branch
//! sends its piece back, and since every branch read the same x, `dx = Σₖ ∂Bₖᵀ·dyₖ`.

use crate::error::{Error, Result};
use crate::geometry::ReceptiveField;
use crate::layers::{kept, Key, Layer, Mode, Part, PartMut};
use crate::network::Sequential;
use crate::spec::LayerSpec;
use crate::tensor::{concat_shape, shape_str, Tensor};

/// Branches applied to the same input, their outputs joined along axis 1 (channels).
///
/// Parameters are named `{branch}.{layer}.{name}` (`1.0.weight`: branch 1, layer 0), as a
/// PyTorch `nn.ModuleList` of `nn.Sequential`s names them.
pub struct Concat {
    branches: Vec<Sequential>,
    /// Channels each branch gave in the last forward pass: where backward cuts `dy`.
    widths: Option<Vec<usize>>,
}

impl Concat {
    /// A block of `branches` (at least one).
    pub fn new(branches: Vec<Sequential>) -> Result<Self> {
        if branches.is_empty() {
            return Err(Error::config("concat", "needs at least one branch"));
        }
        Ok(Concat {
            branches,
            widths: None,
        })
    }

    /// The branches, in the order their channels appear in the output.
    pub fn branches(&self) -> &[Sequential] {
        &self.branches
    }

    /// The output shape of every branch, or a shape error naming the first branch that
    /// cannot be joined to branch 0, with both shapes.
    fn branch_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(self.branches.len());
        for (i, branch) in self.branches.iter().enumerate() {
            let shape = branch
                .output_shape(input)
                .map_err(|e| e.in_layer(&format!("branch {i}")))?;
            if let Some(first) = shapes.first() {
                if concat_shape(&[first, &shape]).is_none() {
                    return Err(Error::shape(
                        self.kind(),
                        "an input for which all branches agree in every axis but channels",
                        input,
                    )
                    .with_hint(format!(
                        "branch {i} gives {} but branch 0 gives {}; branches are joined \
                         along channels, so their batch and H×W must be equal (match the \
                         strides and padding of the branches)",
                        shape_str(&shape),
                        shape_str(first)
                    )));
                }
            }
            shapes.push(shape);
        }
        Ok(shapes)
    }
}

impl Layer for Concat {
    fn kind(&self) -> &'static str {
        "concat"
    }

    /// `Concat(4 branches: 3, 6, 6, 4 layers)`: the layers themselves are described on
    /// their own rows (summary, profile of a walk).
    fn describe(&self) -> String {
        let sizes: Vec<String> = self.branches.iter().map(|b| b.len().to_string()).collect();
        format!(
            "Concat({} branches: {} layers)",
            self.branches.len(),
            sizes.join(", ")
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Concat {
            branches: self.branches.iter().map(Sequential::layer_specs).collect(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let shapes = self.branch_shapes(input)?;
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        // branch_shapes checked that they join.
        concat_shape(&refs).ok_or_else(|| Error::shape(self.kind(), "joinable branches", input))
    }

    /// x: (N, C, H, W) → y: (N, C₀ + C₁ + …, OH, OW), `y = [B₀(x), B₁(x), …]`.
    fn forward(&mut self, x: Tensor, mode: Mode) -> Result<Tensor> {
        // Check every branch before running any, so a mismatch leaves no half-done pass.
        self.branch_shapes(x.shape())?;
        let mut outputs = Vec::with_capacity(self.branches.len());
        for (i, branch) in self.branches.iter_mut().enumerate() {
            let y = branch
                .forward(x.clone(), mode)
                .map_err(|e| e.in_layer(&format!("branch {i}")))?;
            outputs.push(y);
        }
        self.widths = Some(outputs.iter().map(|y| y.shape()[1]).collect());
        Tensor::concat(&outputs.iter().collect::<Vec<_>>())
    }

    /// dy: (N, C₀ + C₁ + …, OH, OW) → dx: (N, C, H, W), `dx = Σₖ Bₖ.backward(dyₖ)` with
    /// `dyₖ` the channels branch k produced.
    fn backward(&mut self, dy: Tensor) -> Result<Tensor> {
        let widths = kept(&self.widths, self.kind())?;
        let pieces = dy.split(widths).map_err(|e| e.in_layer(self.kind()))?;
        let mut dx: Option<Tensor> = None;
        for (i, (branch, piece)) in self.branches.iter_mut().zip(pieces).enumerate() {
            let d = branch
                .backward(piece)
                .map_err(|e| e.in_layer(&format!("branch {i}")))?;
            match &mut dx {
                Some(sum) => sum.add_assign(&d)?,
                None => dx = Some(d),
            }
        }
        dx.ok_or_else(|| Error::config(self.kind(), "has no branches"))
    }

    /// Each branch's parameter gradients, no input gradient (the input is data).
    fn backward_params(&mut self, dy: Tensor) -> Result<()> {
        let widths = kept(&self.widths, self.kind())?;
        let pieces = dy.split(widths).map_err(|e| e.in_layer(self.kind()))?;
        for (i, (branch, piece)) in self.branches.iter_mut().zip(pieces).enumerate() {
            branch
                .backward_params(piece)
                .map_err(|e| e.in_layer(&format!("branch {i}")))?;
        }
        Ok(())
    }

    fn parts(&self) -> Vec<(Key, Part<'_>)> {
        let branches = self.branches.iter().enumerate();
        branches
            .map(|(i, b)| (Key::Index(i), Part::Layer(b as &dyn Layer)))
            .collect()
    }

    fn parts_mut(&mut self) -> Vec<(Key, PartMut<'_>)> {
        let branches = self.branches.iter_mut().enumerate();
        branches
            .map(|(i, b)| (Key::Index(i), PartMut::Layer(b as &mut dyn Layer)))
            .collect()
    }

    /// The largest over the branches: an output channel of the widest branch sees that
    /// far. Branches giving the same H×W step over the input alike.
    fn receptive_field(&self, before: [ReceptiveField; 2]) -> [ReceptiveField; 2] {
        widest(self.branches.iter().map(|b| b.receptive_field(before))).unwrap_or(before)
    }

    fn macs(&self, input: &[usize]) -> u64 {
        self.branches.iter().map(|b| b.macs(input)).sum()
    }
}

/// The largest receptive field per axis over several paths (the first path's jump).
pub(crate) fn widest(
    fields: impl Iterator<Item = [ReceptiveField; 2]>,
) -> Option<[ReceptiveField; 2]> {
    fields.reduce(|a, b| {
        [0, 1].map(|axis| ReceptiveField {
            size: a[axis].size.max(b[axis].size),
            jump: a[axis].jump,
        })
    })
}
