//! The tensor: a contiguous, row-major block of `f32` with a shape. Image tensors are NCHW.
//!
//! Two things make tensors cheap to pass through a network:
//! - the values are shared, not copied, when a tensor is cloned: a layer that keeps its
//!   input (or output) for backward holds a second handle on the same memory. Writing
//!   through [`Tensor::data_mut`] copies first if the values are shared (copy on write),
//!   so a clone still behaves like an independent tensor;
//! - large value buffers are recycled: a training step allocates the same shapes every
//!   step, and memory fresh from the operating system costs a page fault per 4 KiB.

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

pub use crate::error::shape_str;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// A dense, contiguous, row-major `f32` tensor.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // The last handle on a large buffer gives it back for reuse.
        if let Some(values) = Arc::get_mut(&mut self.data) {
            recycle(std::mem::take(values));
        }
    }
}

/// Buffers of at least this many values are recycled (256 KiB: below it the allocator's
/// own free lists serve well, and it keeps the pool to a few dozen buffers).
const RECYCLE_MIN_LEN: usize = 1 << 16;
/// At most this many values wait for reuse (1 GiB); beyond it the oldest are freed.
const RECYCLE_MAX_TOTAL: usize = 1 << 28;

/// Values per parallel piece of an element-wise pass (64 KiB): large enough that handing
/// it to a thread costs little next to the work.
const PARALLEL_PIECE: usize = 1 << 14;

/// Freed large buffers, oldest first.
static RECYCLED: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// Puts a buffer no longer used into the pool (small ones are simply freed).
fn recycle(values: Vec<f32>) {
    if values.capacity() < RECYCLE_MIN_LEN {
        return;
    }
    let mut pool = RECYCLED.lock().unwrap_or_else(|e| e.into_inner());
    pool.push(values);
    let mut total: usize = pool.iter().map(Vec::capacity).sum();
    while total > RECYCLE_MAX_TOTAL {
        total -= pool.remove(0).capacity();
    }
}

/// An empty vector with room for `len` values: a recycled buffer if one fits, or a new
/// allocation.
fn buffer_for(len: usize) -> Vec<f32> {
    let mut values = recycled_buffer(len);
    values.clear();
    values
}

/// A vector with room for `len` values, still holding its old values: the smallest
/// recycled buffer that holds `len` values without wasting more than half of itself, or
/// a new, empty allocation.
fn recycled_buffer(len: usize) -> Vec<f32> {
    if len >= RECYCLE_MIN_LEN {
        let mut pool = RECYCLED.lock().unwrap_or_else(|e| e.into_inner());
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() <= 2 * len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            return pool.swap_remove(i);
        }
    }
    Vec::with_capacity(len)
}

/// Number of elements of a tensor of this shape.
/// A count beyond `usize` saturates at its largest value (which no allocation reaches).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
}

/// The shape of tensors of `shapes` joined along axis 1 ([`Tensor::concat`]), or `None`
/// when there are none, one is not at least 2-D, or they differ in another axis.
pub fn concat_shape(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let (first, rest) = shapes.split_first()?;
    if first.len() < 2 {
        return None;
    }
    let mut out = first.to_vec();
    for shape in rest {
        let agree = shape.len() == first.len() && shape[0] == first[0] && shape[2..] == first[2..];
        if !agree {
            return None;
        }
        out[1] = out[1].checked_add(shape[1])?;
    }
    Some(out)
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        let len = numel(shape);
        let mut data = buffer_for(len);
        data.resize(len, value);
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
        }
    }

    /// A tensor whose values are unspecified (what a recycled buffer held, zeros beyond),
    /// for a caller that overwrites every one of them: it saves writing zeros first.
    ///
    /// In builds with debug assertions (the tests) every value starts as NaN instead, so
    /// a kernel that misses one makes its result NaN rather than silently reusing a value
    /// of another tensor.
    pub fn for_overwrite(shape: &[usize]) -> Self {
        let len = numel(shape);
        let mut data = recycled_buffer(len);
        data.truncate(len);
        if cfg!(debug_assertions) {
            data.fill(f32::NAN);
        }
        data.resize(
            len,
            if cfg!(debug_assertions) {
                f32::NAN
            } else {
                0.0
            },
        );
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
        }
    }

    /// `f` applied to every value of `self`, in a new tensor of the same shape. Large
    /// tensors are cut into pieces for the rayon pool.
    pub fn map(&self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        let mut out = Tensor::for_overwrite(&self.shape);
        out.data_mut()
            .par_chunks_mut(PARALLEL_PIECE)
            .zip(self.data().par_chunks(PARALLEL_PIECE))
            .for_each(|(out, x)| {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = f(v);
                }
            });
        out
    }

    /// `f(a, b)` for every pair of values of `self` and `other`, in a new tensor; the
    /// shapes must be equal. Large tensors are cut into pieces for the rayon pool.
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<Tensor> {
        self.expect_same_shape("zip_map", other)?;
        let mut out = Tensor::for_overwrite(&self.shape);
        out.data_mut()
            .par_chunks_mut(PARALLEL_PIECE)
            .zip(self.data().par_chunks(PARALLEL_PIECE))
            .zip(other.data().par_chunks(PARALLEL_PIECE))
            .for_each(|((out, a), b)| {
                for ((o, &u), &v) in out.iter_mut().zip(a).zip(b) {
                    *o = f(u, v);
                }
            });
        Ok(out)
    }

    /// An error naming `operation` and both shapes unless `other` has `self`'s shape.
    fn expect_same_shape(&self, operation: &str, other: &Tensor) -> Result<()> {
        if self.shape == other.shape {
            Ok(())
        } else {
            Err(
                Error::shape(operation, shape_str(&self.shape), &other.shape)
                    .with_hint("both tensors must have the same shape"),
            )
        }
    }

    /// `Ok(self)` when no other handle shares its values, so that writing through
    /// [`Tensor::data_mut`] copies nothing; `Err(self)` otherwise. For passes that can
    /// write their output over their input (see [`Tensor::into_map`]).
    pub fn into_unshared(mut self) -> std::result::Result<Tensor, Tensor> {
        if Arc::get_mut(&mut self.data).is_some() {
            Ok(self)
        } else {
            Err(self)
        }
    }

    /// [`Tensor::map`] that writes into `self`'s own memory when no other handle shares
    /// it (an intermediate a network hands on): the output then costs no new buffer, and
    /// the processor no reads of memory it is about to overwrite.
    pub fn into_map(self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        let mut out = match self.into_unshared() {
            Ok(out) => out,
            Err(shared) => return shared.map(f),
        };
        out.data_mut()
            .par_chunks_mut(PARALLEL_PIECE)
            .for_each(|piece| {
                for v in piece {
                    *v = f(*v);
                }
            });
        out
    }

    /// [`Tensor::zip_map`] that writes into `self`'s own memory when no other handle
    /// shares it, as [`Tensor::into_map`].
    pub fn into_zip_map(
        self,
        other: &Tensor,
        f: impl Fn(f32, f32) -> f32 + Sync,
    ) -> Result<Tensor> {
        self.expect_same_shape("zip_map", other)?;
        let mut out = match self.into_unshared() {
            Ok(out) => out,
            Err(shared) => return shared.zip_map(other, f),
        };
        out.data_mut()
            .par_chunks_mut(PARALLEL_PIECE)
            .zip(other.data().par_chunks(PARALLEL_PIECE))
            .for_each(|(a, b)| {
                for (u, &v) in a.iter_mut().zip(b) {
                    *u = f(*u, v);
                }
            });
        Ok(out)
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
            data: Arc::new(data),
        })
    }

    /// Standard normal values scaled by `std`.
    pub fn randn(shape: &[usize], std: f32, rng: &mut Rng) -> Self {
        let data = (0..numel(shape)).map(|_| rng.normal() * std).collect();
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
        }
    }

    /// Uniform values in [lo, hi).
    pub fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Self {
        let data = (0..numel(shape)).map(|_| rng.uniform_in(lo, hi)).collect();
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
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

    /// The values, row-major, mutable. Copies them first if another clone of this tensor
    /// shares them.
    pub fn data_mut(&mut self) -> &mut [f32] {
        if Arc::get_mut(&mut self.data).is_none() {
            let mut own = buffer_for(self.data.len());
            own.extend_from_slice(&self.data);
            self.data = Arc::new(own);
        }
        Arc::get_mut(&mut self.data).expect("values owned after the copy")
    }

    /// Gives up the tensor and returns its values.
    pub fn into_vec(mut self) -> Vec<f32> {
        match Arc::get_mut(&mut self.data) {
            Some(values) => std::mem::take(values),
            None => self.data.to_vec(),
        }
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

    /// `(N, C, H, W)` of a 4-D tensor, or a shape error.
    pub fn dims4(&self) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            _ => Err(Error::shape("tensor", "(N, C, H, W)", &self.shape)),
        }
    }

    /// `(N, F)` of a 2-D tensor, or a shape error.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match self.shape[..] {
            [n, f] => Ok((n, f)),
            _ => Err(Error::shape("tensor", "(N, F)", &self.shape)),
        }
    }

    /// Sets every value to `value`.
    pub fn fill(&mut self, value: f32) {
        self.data_mut().fill(value);
    }

    /// `self += other`, element-wise; a shape error unless the shapes are equal.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        self.zip_assign_named("add_assign", other, |a, b| a + b)
    }

    /// `self = f(self, other)`, element-wise; a shape error unless the shapes are equal.
    pub fn zip_assign(&mut self, other: &Tensor, f: impl Fn(f32, f32) -> f32) -> Result<()> {
        self.zip_assign_named("zip_assign", other, f)
    }

    /// [`Tensor::zip_assign`], a shape error naming `operation`.
    fn zip_assign_named(
        &mut self,
        operation: &str,
        other: &Tensor,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<()> {
        self.expect_same_shape(operation, other)?;
        for (a, &b) in self.data_mut().iter_mut().zip(other.data()) {
            *a = f(*a, b);
        }
        Ok(())
    }

    /// Copies `other`'s values into `self`; a shape error unless the shapes are equal.
    pub fn copy_from(&mut self, other: &Tensor) -> Result<()> {
        self.expect_same_shape("copy_from", other)?;
        self.data_mut().copy_from_slice(other.data());
        Ok(())
    }

    /// Entry `n` along the first axis (image `n` of an NCHW tensor) as a flat slice, or
    /// `None` when there is no such entry.
    pub fn image(&self, n: usize) -> Option<&[f32]> {
        let count = *self.shape.first()?;
        if n >= count {
            return None;
        }
        let per = self.data.len() / count;
        Some(&self.data[n * per..(n + 1) * per])
    }

    /// `parts` joined along axis 1 — the channels of NCHW tensors, the features of (N, F)
    /// ones: image `n` of the result is image `n` of each part in turn. The parts must
    /// agree in every other axis ([`concat_shape`]), or it is a shape error.
    pub fn concat(parts: &[&Tensor]) -> Result<Tensor> {
        let shapes: Vec<&[usize]> = parts.iter().map(|t| t.shape()).collect();
        let Some(shape) = concat_shape(&shapes) else {
            let got = shapes.first().copied().unwrap_or(&[]);
            let all: Vec<String> = shapes.iter().map(|s| shape_str(s)).collect();
            return Err(
                Error::shape("concat", "tensors that agree in every axis but axis 1", got)
                    .with_hint(format!("the tensors are {}", all.join(", "))),
            );
        };
        let mut out = Tensor::for_overwrite(&shape);
        let n = shape[0];
        let mut offset = 0;
        let per_image = out.len().checked_div(n).unwrap_or(0);
        let data = out.data_mut();
        for part in parts {
            let width = part.len().checked_div(n).unwrap_or(0);
            if width == 0 {
                continue;
            }
            for (dst, src) in data
                .chunks_exact_mut(per_image)
                .zip(part.data().chunks_exact(width))
            {
                dst[offset..offset + width].copy_from_slice(src);
            }
            offset += width;
        }
        Ok(out)
    }

    /// `self` cut along axis 1 into pieces of `sizes[k]` channels (features), the inverse
    /// of [`Tensor::concat`]; a shape error unless the sizes add up to axis 1.
    pub fn split(&self, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
        if self.shape.len() < 2 || total != Some(self.shape[1]) {
            return Err(Error::shape(
                "split",
                format!("(N, {}, …)", total.map_or("?".into(), |t| t.to_string())),
                &self.shape,
            ));
        }
        let n = self.shape[0];
        let rest: usize = self.shape[2..].iter().product();
        let per_image = self.shape[1] * rest;
        let mut offset = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &size in sizes {
            let mut shape = self.shape.clone();
            shape[1] = size;
            let width = size * rest;
            let mut values = buffer_for(n * width);
            if width > 0 {
                for image in self.data.chunks_exact(per_image) {
                    values.extend_from_slice(&image[offset..offset + width]);
                }
            }
            out.push(Tensor {
                shape,
                data: Arc::new(values),
            });
            offset += width;
        }
        Ok(out)
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    /// Index of the largest value in each row of an `(N, F)` tensor (the first of equal
    /// ones), or a shape error.
    pub fn argmax_rows(&self) -> Result<Vec<usize>> {
        let (n, f) = self.dims2()?;
        Ok((0..n)
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
            .collect())
    }

    /// The multi-index of flat position `flat` (for reporting); positions past the end
    /// wrap around in the first axis.
    pub fn unravel(&self, mut flat: usize) -> Vec<usize> {
        let mut index = vec![0; self.shape.len()];
        for (axis, &dim) in self.shape.iter().enumerate().rev() {
            index[axis] = flat.checked_rem(dim).unwrap_or(0);
            flat = flat.checked_div(dim).unwrap_or(0);
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
    fn clones_share_values_until_one_writes() {
        let mut a = Tensor::full(&[2, 3], 1.0);
        let b = a.clone();
        assert!(std::ptr::eq(a.data().as_ptr(), b.data().as_ptr()));
        a.data_mut()[0] = 5.0;
        assert_eq!(b.data(), &[1.0; 6]);
        assert_eq!(a.data()[0], 5.0);
        // A recycled buffer comes back with the requested values, never the old ones.
        drop(Tensor::full(&[RECYCLE_MIN_LEN], 2.0));
        let again = Tensor::zeros(&[RECYCLE_MIN_LEN]);
        assert!(again.data().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn concat_joins_channels_image_by_image_and_split_undoes_it() {
        let a = Tensor::from_vec(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::from_vec(&[2, 2, 2], (10..18).map(|v| v as f32).collect()).unwrap();
        let joined = Tensor::concat(&[&a, &b]).unwrap();
        assert_eq!(joined.shape(), &[2, 3, 2]);
        let expected = [
            1.0, 2.0, 10.0, 11.0, 12.0, 13.0, 3.0, 4.0, 14.0, 15.0, 16.0, 17.0,
        ];
        assert_eq!(joined.data(), &expected);
        let parts = joined.split(&[1, 2]).unwrap();
        assert_eq!((&parts[0], &parts[1]), (&a, &b));
        assert!(joined.split(&[1, 1]).is_err());
        let c = Tensor::zeros(&[2, 1, 3]);
        assert!(Tensor::concat(&[&a, &c]).is_err());
        assert_eq!(concat_shape(&[&[2, 3], &[2, 4]]), Some(vec![2, 7]));
        assert_eq!(concat_shape(&[&[2, 3], &[1, 4]]), None);
        assert_eq!(concat_shape(&[]), None);
    }

    #[test]
    fn shape_str_matches_python() {
        assert_eq!(shape_str(&[128, 32, 16, 16]), "(128, 32, 16, 16)");
        assert_eq!(shape_str(&[400]), "(400,)");
    }
}
