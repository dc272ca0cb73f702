//! A forward pass that opens every container and hands each leaf layer to a visitor, at
//! the input that reaches it: what the layer-by-layer gradient check and the feature-map
//! pictures need. How each container joins its children's outputs is written here once,
//! following its [`Composition`].

use crate::error::{Error, Result};
use crate::layers::{Key, Layer, PartMut};
use crate::spec::Composition;
use crate::tensor::Tensor;

/// What [`forward_through_leaves`] does at each layer.
pub trait LeafVisitor {
    /// Runs the leaf `layer`, named as its parameters are (`3`, `4.main.0`, `5.1.2`), on
    /// `x` and returns its output — the visitor may check or record it on the way.
    fn leaf(&mut self, name: &str, layer: &mut dyn Layer, x: &Tensor) -> Result<Tensor>;

    /// Called with a block's output once it has joined its paths (the sum of a residual
    /// block after its activation, the concatenation of branches, a gated map).
    fn joined(&mut self, _name: &str, _block: &dyn Layer, _y: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// Runs `layer` (named `name`; `""` for a whole network) on `x`: a leaf by
/// [`LeafVisitor::leaf`], a container by running its children as its [`Composition`]
/// combines them. A container that lists children without saying how it combines them is
/// an error.
pub fn forward_through_leaves(
    layer: &mut dyn Layer,
    name: &str,
    x: &Tensor,
    visitor: &mut dyn LeafVisitor,
) -> Result<Tensor> {
    let composition = layer.spec().composition();
    let mut children = Vec::new();
    for (key, part) in layer.parts_mut() {
        if let PartMut::Layer(child) = part {
            let child_name = if name.is_empty() {
                key.to_string()
            } else {
                format!("{name}.{key}")
            };
            children.push((key, child_name, child));
        }
    }
    let mut run = |(_, child_name, child): (Key, String, &mut dyn Layer), x: &Tensor| {
        forward_through_leaves(child, &child_name, x, visitor)
    };
    let y = match composition {
        Composition::Leaf if children.is_empty() => return visitor.leaf(name, layer, x),
        Composition::Leaf => {
            return Err(Error::config(
                name,
                "lists child layers but its spec does not say how it combines them",
            ))
        }
        Composition::Chain => {
            let mut activation = x.clone();
            for child in children {
                activation = run(child, &activation)?;
            }
            // A chain joins nothing.
            return Ok(activation);
        }
        Composition::Residual => {
            // y = act(main(x) + shortcut(x)), the shortcut being the identity if absent.
            let (mut main, mut skip, mut act) = (None, None, None);
            for child in children {
                match child.0 {
                    Key::Name("main") => main = Some(child),
                    Key::Name("shortcut") => skip = Some(child),
                    _ => act = Some(child),
                }
            }
            let main =
                main.ok_or_else(|| Error::config(name, "a residual block without a main path"))?;
            let mut sum = run(main, x)?;
            let skip = match skip {
                Some(s) => run(s, x)?,
                None => x.clone(),
            };
            if sum.shape() != skip.shape() {
                return Err(Error::shape(
                    name,
                    "an input for which the main path and the shortcut give the same shape",
                    x.shape(),
                ));
            }
            sum.add_assign(&skip)?;
            match act {
                Some(act) => run(act, &sum)?,
                None => sum,
            }
        }
        Composition::Concat => {
            // y = [B₀(x), B₁(x), …]
            let mut outputs = Vec::with_capacity(children.len());
            for child in children {
                outputs.push(run(child, x)?);
            }
            Tensor::concat(&outputs.iter().collect::<Vec<_>>())?
        }
        Composition::Dense => {
            // y = [x, h₁, …], each layer reading everything before it.
            let mut features = x.clone();
            for child in children {
                let h = run(child, &features)?;
                features = Tensor::concat(&[&features, &h])?;
            }
            features
        }
        Composition::Scale => {
            // y = x · gate(x)
            let gate = children
                .into_iter()
                .next()
                .ok_or_else(|| Error::config(name, "a scale block without a gate"))?;
            let g = run(gate, x)?;
            crate::network::scale::scale_channels(x, &g)?
        }
    };
    visitor.joined(name, layer, &y)?;
    Ok(y)
}
