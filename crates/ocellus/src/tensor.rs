//! The tensor: a contiguous, row-major block of `f32` with a shape. Image tensors are NCHW.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// A dense, contiguous, row-major `f32` tensor.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Formats a shape the way every message in ocellus shows it: `(128, 32, 16, 16)`.
pub fn shape_str(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Number of elements of a tensor of this shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![value; numel(shape)],
        }
    }

    /// A tensor over `data`; fails if the length does not match the shape.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        if data.len() != numel(shape) {
            return Err(Error::config(
                "tensor",
                format!(
                    "shape {} holds {} values but {} were given",
                    shape_str(shape),
                    numel(shape),
                    data.len()
                ),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Standard normal values scaled by `std`.
    pub fn randn(shape: &[usize], std: f32, rng: &mut Rng) -> Self {
        let data = (0..numel(shape)).map(|_| rng.normal() * std).collect();
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// Uniform values in [lo, hi).
    pub fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Self {
        let data = (0..numel(shape)).map(|_| rng.uniform_in(lo, hi)).collect();
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Gives up the tensor and returns its values.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same values under another shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.data.len() {
            return Err(Error::config(
                "reshape",
                format!(
                    "cannot view {} as {}",
                    shape_str(&self.shape),
                    shape_str(shape)
                ),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// `(N, C, H, W)` of a 4-D tensor. Panics otherwise: callers check shapes first.
    pub fn dims4(&self) -> (usize, usize, usize, usize) {
        assert_eq!(
            self.shape.len(),
            4,
            "expected an NCHW tensor, got {}",
            shape_str(&self.shape)
        );
        (self.shape[0], self.shape[1], self.shape[2], self.shape[3])
    }

    /// `(N, F)` of a 2-D tensor. Panics otherwise: callers check shapes first.
    pub fn dims2(&self) -> (usize, usize) {
        assert_eq!(
            self.shape.len(),
            2,
            "expected an (N, F) tensor, got {}",
            shape_str(&self.shape)
        );
        (self.shape[0], self.shape[1])
    }

    /// Sets every value to `value`.
    pub fn fill(&mut self, value: f32) {
        self.data.fill(value);
    }

    /// `self += other`, element-wise; shapes must match.
    pub fn add_assign(&mut self, other: &Tensor) {
        assert_eq!(
            self.shape,
            other.shape,
            "add_assign: shapes {} and {} differ",
            shape_str(&self.shape),
            shape_str(&other.shape)
        );
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a += b;
        }
    }

    /// Copies `other` into `self`, reusing `self`'s allocation when it is large enough.
    pub fn copy_from(&mut self, other: &Tensor) {
        self.shape.clear();
        self.shape.extend_from_slice(&other.shape);
        self.data.clear();
        self.data.extend_from_slice(&other.data);
    }

    /// Image `n` of an NCHW tensor as a flat `C·H·W` slice.
    pub fn image(&self, n: usize) -> &[f32] {
        let per = self.data.len() / self.shape[0];
        &self.data[n * per..(n + 1) * per]
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    /// Index of the largest value in each row of an `(N, F)` tensor.
    pub fn argmax_rows(&self) -> Vec<usize> {
        let (n, f) = self.dims2();
        (0..n)
            .map(|i| {
                let row = &self.data[i * f..(i + 1) * f];
                let mut best = 0;
                for (j, v) in row.iter().enumerate() {
                    if *v > row[best] {
                        best = j;
                    }
                }
                best
            })
            .collect()
    }

    /// The multi-index of flat position `flat` (for reporting).
    pub fn unravel(&self, mut flat: usize) -> Vec<usize> {
        let mut index = vec![0; self.shape.len()];
        for (axis, dim) in self.shape.iter().enumerate().rev() {
            index[axis] = flat % dim;
            flat /= dim;
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length_and_reshape_keeps_values() {
        assert!(Tensor::from_vec(&[2, 3], vec![0.0; 5]).is_err());
        let t = Tensor::from_vec(&[2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        let r = t.clone().reshape(&[3, 2]).unwrap();
        assert_eq!(r.data(), t.data());
        assert!(t.reshape(&[4, 2]).is_err());
    }

    #[test]
    fn unravel_is_row_major() {
        let t = Tensor::zeros(&[2, 3, 4, 5]);
        assert_eq!(t.unravel(0), vec![0, 0, 0, 0]);
        assert_eq!(t.unravel(5 * 4 * 3 + 2 * 5 + 1), vec![1, 0, 2, 1]);
    }

    #[test]
    fn shape_str_matches_python() {
        assert_eq!(shape_str(&[128, 32, 16, 16]), "(128, 32, 16, 16)");
        assert_eq!(shape_str(&[400]), "(400,)");
    }
}
