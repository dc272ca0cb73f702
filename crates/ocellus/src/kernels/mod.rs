//! Compute kernels behind the layers: the plain reference loops that define what a
//! convolution is, and the fast paths (im2col + GEMM) that must agree with them.

pub mod conv;
pub mod matmul;
pub mod reference;

/// Everything that fixes the arithmetic of one 2-D convolution over a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub ic: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub kh: usize,
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding (top, bottom, left, right).
    pub pad: (usize, usize, usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeometry {
    /// Input channels seen by one filter.
    pub fn ic_per_group(&self) -> usize {
        self.ic / self.groups
    }

    /// Output channels produced by one group.
    pub fn oc_per_group(&self) -> usize {
        self.oc / self.groups
    }

    /// Multiply-adds of the forward pass over the whole batch.
    pub fn macs(&self) -> u64 {
        (self.n * self.oc * self.oh * self.ow * self.ic_per_group() * self.kh * self.kw) as u64
    }
}
