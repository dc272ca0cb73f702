//! Element-wise activations: ReLU and friends, and Softmax for inference.

use crate::error::{Error, Result};
use crate::layers::{expect_same_shape, Layer, Mode};
use crate::tensor::Tensor;

/// `y = max(x, 0)`.
#[derive(Default)]
pub struct Relu {
    /// The output of the last forward pass: `y > 0` exactly where the gradient passes.
    output: Option<Tensor>,
}

impl Relu {
    pub fn new() -> Self {
        Relu::default()
    }
}

impl Layer for Relu {
    fn kind(&self) -> &'static str {
        "relu"
    }

    fn describe(&self) -> String {
        "ReLU".into()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    /// x: any shape → y: same shape
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let mut y = x.clone();
        y.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
        match &mut self.output {
            Some(saved) => saved.copy_from(&y),
            None => self.output = Some(y.clone()),
        }
        Ok(y)
    }

    /// `∂y/∂x = 1 if x > 0 else 0` (0 at the kink, as PyTorch), so `dx = dy · [y > 0]`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let y = self
            .output
            .as_ref()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: self.kind().into(),
            })?;
        expect_same_shape(self.kind(), y.shape(), dy.shape())?;
        let mut dx = dy.clone();
        for (d, y) in dx.data_mut().iter_mut().zip(y.data()) {
            if *y <= 0.0 {
                *d = 0.0;
            }
        }
        Ok(dx)
    }
}
