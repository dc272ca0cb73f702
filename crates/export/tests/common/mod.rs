//! What the export tests share.

use ocellus::layers::{Layer, Mode};
use ocellus::spec::LayerSpec;
use ocellus::{Result, Tensor};

/// A layer defined outside ocellus.
pub struct Doubler;

impl Layer for Doubler {
    fn kind(&self) -> &'static str {
        "doubler"
    }
    fn describe(&self) -> String {
        "Doubler".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Custom {
            kind: "doubler".into(),
        }
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn forward(&mut self, mut x: Tensor, _mode: Mode) -> Result<Tensor> {
        x.data_mut().iter_mut().for_each(|v| *v *= 2.0);
        Ok(x)
    }
    fn backward(&mut self, mut dy: Tensor) -> Result<Tensor> {
        dy.data_mut().iter_mut().for_each(|v| *v *= 2.0);
        Ok(dy)
    }
}
