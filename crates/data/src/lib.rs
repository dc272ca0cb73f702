//! Data sets: images held as one contiguous `(N, C, H, W)` tensor with their labels, split
//! into training, validation and test sets, normalised per channel and served in shuffled
//! mini-batches.
//!
//! Loaders for the file formats live beside this module: [`idx`] (MNIST, Fashion-MNIST),
//! [`cifar`] (CIFAR-10 binary batches), [`folder`] (a folder of PNG/JPEG images per class)
//! and [`patterns`] (a built-in data set drawn on the fly); [`augment`] holds random
//! crops and flips applied to batches.
//!
//! Pixels are stored as `f32` in [0, 1] (`u8 / 255`, as torchvision's `ToTensor` scales
//! them) until a [`Normalization`] fitted on the training set rewrites them as
//! `(x − mean[c]) / std[c]`.

pub mod augment;
pub mod cifar;
pub mod folder;
pub mod idx;
pub mod patterns;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use ocellus::error::{Error, Result};
use ocellus::rng::Rng;
use ocellus::tensor::{shape_str, Tensor};

/// Labelled images: `images` is `(N, C, H, W)`, `labels[n]` is the class index of image
/// `n`, and `classes[k]` names class `k`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// (N, C, H, W)
    images: Tensor,
    /// (N,), each below `classes.len()`
    labels: Vec<usize>,
    classes: Vec<String>,
}

/// A training set and the test set that goes with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

impl Splits {
    /// Fits a [`Normalization`] on the training set, applies it to both sets and returns it
    /// (so it can be saved with a model and applied to the images given to `predict`).
    pub fn normalise(&mut self) -> Result<Normalization> {
        let norm = Normalization::fit(&self.train);
        norm.apply(&mut self.train)?;
        norm.apply(&mut self.test)?;
        Ok(norm)
    }
}

/// An 8-bit pixel as `f32` in [0, 1]: `v / 255`, exactly as torchvision's `ToTensor`
/// scales it. The one place where this scaling is written.
#[inline]
pub fn to_unit(v: u8) -> f32 {
    f32::from(v) / 255.0
}

/// Converts 8-bit pixels to `f32` in [0, 1] with [`to_unit`].
pub fn u8_to_unit(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "u8_to_unit: lengths differ");
    // Large inputs (a whole data set) are converted on all cores; the division vectorises.
    const CHUNK: usize = 1 << 16;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            for (d, &s) in d.iter_mut().zip(s) {
                *d = to_unit(s);
            }
        });
}

impl Dataset {
    /// A data set over `images` `(N, C, H, W)`; fails if the tensor is not 4-D, if there is
    /// not one label per image, or if a label is not below `classes.len()`.
    pub fn new(images: Tensor, labels: Vec<usize>, classes: Vec<String>) -> Result<Self> {
        if images.shape().len() != 4 {
            return Err(Error::config(
                "dataset",
                format!(
                    "images must be (N, C, H, W), got {}",
                    shape_str(images.shape())
                ),
            ));
        }
        let n = images.shape()[0];
        if labels.len() != n {
            return Err(Error::config(
                "dataset",
                format!("{} labels for {n} images", labels.len()),
            ));
        }
        if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes.len()) {
            return Err(Error::config(
                "dataset",
                format!(
                    "label {label} of image {i} is out of range for {} classes",
                    classes.len()
                ),
            ));
        }
        Ok(Dataset {
            images,
            labels,
            classes,
        })
    }

    /// A data set from 8-bit pixels laid out as `shape` = `[N, C, H, W]`, scaled to [0, 1].
    pub fn from_u8(
        shape: [usize; 4],
        pixels: &[u8],
        labels: Vec<usize>,
        classes: Vec<String>,
    ) -> Result<Self> {
        let mut data = vec![0.0f32; pixels.len()];
        u8_to_unit(pixels, &mut data);
        Dataset::new(Tensor::from_vec(&shape, data)?, labels, classes)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// All images, `(N, C, H, W)`.
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    /// The label of every image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Class names; label `k` means `classes()[k]`.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// `(C, H, W)` of one image.
    pub fn image_shape(&self) -> (usize, usize, usize) {
        let s = self.images.shape();
        (s[1], s[2], s[3])
    }

    /// Image `n` as a flat `C·H·W` slice (channel planes one after another).
    pub fn image(&self, n: usize) -> &[f32] {
        let (c, h, w) = self.image_shape();
        let per = c * h * w;
        &self.images.data()[n * per..(n + 1) * per]
    }

    /// Gives up the data set: `(images, labels, classes)`.
    pub fn into_parts(self) -> (Tensor, Vec<usize>, Vec<String>) {
        (self.images, self.labels, self.classes)
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The images at `indices` (in that order) as a new data set with the same classes.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let (images, labels) = self.gather(indices);
        Dataset {
            images,
            labels,
            classes: self.classes.clone(),
        }
    }

    /// The images at `indices` as a batch `(B, C, H, W)` and their labels.
    pub fn gather(&self, indices: &[usize]) -> (Tensor, Vec<usize>) {
        let mut x = Tensor::default();
        let mut y = Vec::new();
        self.gather_into(indices, &mut x, &mut y);
        (x, y)
    }

    /// Like [`Dataset::gather`], reusing allocations: `labels`'s, and for `x` a buffer
    /// from the engine's pool of freed tensors (where `x`'s old values go, once the
    /// network no longer holds them as a layer's kept input): one `memcpy` per image, no
    /// allocation once the pool holds buffers of the batch's size.
    pub fn gather_into(&self, indices: &[usize], x: &mut Tensor, labels: &mut Vec<usize>) {
        let (c, h, w) = self.image_shape();
        drop(std::mem::take(x));
        let mut batch = Tensor::for_overwrite(&[indices.len(), c, h, w]);
        labels.clear();
        let (per_image, values) = (c * h * w, batch.data_mut());
        for (k, &i) in indices.iter().enumerate() {
            assert!(
                i < self.len(),
                "image index {i} out of range for {} images",
                self.len()
            );
            values[k * per_image..][..per_image].copy_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        *x = batch;
    }

    /// Moves a random `fraction` of the images, the same fraction of every class
    /// (stratified, rounded to the nearest image), into a new validation set and returns
    /// it; `self` keeps the rest. Both keep the original order. The same seed always
    /// picks the same images.
    pub fn split_off_validation(&mut self, fraction: f32, seed: u64) -> Result<Dataset> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::config(
                "validation split",
                format!("the fraction must be in [0, 1), got {fraction}"),
            ));
        }
        let mut rng = Rng::new(seed);
        let mut to_validation = vec![false; self.len()];
        for class in 0..self.num_classes() {
            let mut members: Vec<usize> = (0..self.len())
                .filter(|&i| self.labels[i] == class)
                .collect();
            rng.shuffle(&mut members);
            let take = (members.len() as f64 * fraction as f64).round() as usize;
            for &i in &members[..take] {
                to_validation[i] = true;
            }
        }
        let (val, train): (Vec<usize>, Vec<usize>) =
            (0..self.len()).partition(|&i| to_validation[i]);
        let validation = self.subset(&val);
        *self = self.subset(&train);
        Ok(validation)
    }

    /// Mini-batches in the stored order (for evaluation). The last batch holds the
    /// remainder when `batch_size` does not divide `N`.
    pub fn batches(&self, batch_size: usize) -> Result<Batches<'_>> {
        Batches::new(self, (0..self.len()).collect(), batch_size)
    }

    /// Mini-batches in the stored order over the images at `range` only (one rank's share
    /// of an evaluation).
    pub fn batches_in(
        &self,
        range: std::ops::Range<usize>,
        batch_size: usize,
    ) -> Result<Batches<'_>> {
        assert!(
            range.end <= self.len(),
            "range {range:?} out of {} images",
            self.len()
        );
        Batches::new(self, range.collect(), batch_size)
    }

    /// Mini-batches in an order shuffled by `rng` (one epoch of training), the last one
    /// partial when `batch_size` does not divide `N` (PyTorch's `DataLoader` with
    /// `shuffle=True, drop_last=False`).
    pub fn shuffled_batches(&self, batch_size: usize, rng: &mut Rng) -> Result<Batches<'_>> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        rng.shuffle(&mut order);
        Batches::new(self, order, batch_size)
    }
}

/// An epoch of mini-batches over a [`Dataset`]: yields `(x, labels)` with `x` of shape
/// `(B, C, H, W)`. Use it as an iterator (a fresh tensor per batch) or call
/// [`Batches::next_into`] to reuse one buffer for the whole epoch.
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    /// Position in `order` of the next batch's first image.
    next: usize,
}

impl<'a> Batches<'a> {
    fn new(data: &'a Dataset, order: Vec<usize>, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::config(
                "batches",
                "the batch size must be at least 1",
            ));
        }
        Ok(Batches {
            data,
            order,
            batch_size,
            next: 0,
        })
    }

    /// Number of batches in the whole epoch (including ones already taken).
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// Writes the next batch into `x` and `labels`, reusing their allocations; returns
    /// `false` when the epoch is over.
    pub fn next_into(&mut self, x: &mut Tensor, labels: &mut Vec<usize>) -> bool {
        if self.next >= self.order.len() {
            return false;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        self.data
            .gather_into(&self.order[self.next..end], x, labels);
        self.next = end;
        true
    }

    /// [`Batches::next_into`] for rank `rank` of `ranks` processes that share each batch:
    /// writes only the rank's part of the next batch, [`shard`] of its images, and
    /// returns the size of the whole batch, or `None` when the epoch is over.
    pub fn next_shard_into(
        &mut self,
        rank: usize,
        ranks: usize,
        x: &mut Tensor,
        labels: &mut Vec<usize>,
    ) -> Option<usize> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let batch = &self.order[self.next..end];
        self.data
            .gather_into(&batch[shard(batch.len(), rank, ranks)], x, labels);
        self.next = end;
        Some(batch.len())
    }
}

/// The positions `n·rank/ranks .. n·(rank + 1)/ranks` of `n` items that rank `rank` of
/// `ranks` takes: contiguous, in rank order, sizes differing by at most one.
pub fn shard(n: usize, rank: usize, ranks: usize) -> std::ops::Range<usize> {
    assert!(rank < ranks, "rank {rank} of {ranks}");
    n * rank / ranks..n * (rank + 1) / ranks
}

impl Iterator for Batches<'_> {
    type Item = (Tensor, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut x = Tensor::default();
        let mut labels = Vec::new();
        self.next_into(&mut x, &mut labels).then_some((x, labels))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Per-channel standardisation `x' = (x − mean[c]) / std[c]`, torchvision's `Normalize`.
/// The statistics come from the training set only and are applied unchanged to the
/// validation and test sets and to images given to `predict`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// (C,)
    pub mean: Vec<f32>,
    /// (C,), population standard deviation (divides by the count, as NumPy's `std`)
    pub std: Vec<f32>,
}

impl Normalization {
    /// Mean and standard deviation of every channel over all pixels of all images. A
    /// channel that is constant gets `std = 1` so that applying never divides by zero.
    pub fn fit(data: &Dataset) -> Self {
        let (c, h, w) = data.image_shape();
        let plane = h * w;
        // Sums over fixed chunks of images, added in order: the result does not depend on
        // how many threads ran, so the same data always gives bit-identical statistics.
        const IMAGES_PER_CHUNK: usize = 256;
        let partial: Vec<Vec<(f64, f64)>> = data
            .images
            .data()
            .par_chunks((IMAGES_PER_CHUNK * c * plane).max(1))
            .map(|chunk| {
                let mut sums = vec![(0.0f64, 0.0f64); c];
                for image in chunk.chunks_exact(c * plane) {
                    for (ch, values) in image.chunks_exact(plane).enumerate() {
                        let (s, sq) = plane_sums(values);
                        sums[ch].0 += s;
                        sums[ch].1 += sq;
                    }
                }
                sums
            })
            .collect();
        let count = (data.len() * plane) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let (s, sq) = partial
                .iter()
                .fold((0.0, 0.0), |(a, b), p| (a + p[ch].0, b + p[ch].1));
            let m = if count > 0.0 { s / count } else { 0.0 };
            // Var = E[x²] − E[x]²; in f64 the cancellation is harmless for pixel values.
            let var = if count > 0.0 {
                (sq / count - m * m).max(0.0)
            } else {
                0.0
            };
            let sd = var.sqrt();
            mean.push(m as f32);
            std.push(if sd > 1e-6 { sd as f32 } else { 1.0 });
        }
        Normalization { mean, std }
    }

    /// Normalises every image of `data` in place; fails if the channel counts differ.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        self.apply_to_batch(&mut data.images)
    }

    /// Normalises a batch `(B, C, H, W)` in place: `x = (x − mean[c]) / std[c]`.
    pub fn apply_to_batch(&self, x: &mut Tensor) -> Result<()> {
        self.check(x)?;
        let (_, c, h, w) = x.dims4()?;
        let inv_std: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        x.data_mut().par_chunks_mut(c * h * w).for_each(|image| {
            for (ch, plane) in image.chunks_exact_mut(h * w).enumerate() {
                let (m, k) = (self.mean[ch], inv_std[ch]);
                plane.iter_mut().for_each(|v| *v = (*v - m) * k);
            }
        });
        Ok(())
    }

    /// Undoes [`Normalization::apply_to_batch`] (to show normalised images as pictures):
    /// `x = x · std[c] + mean[c]`.
    pub fn undo_batch(&self, x: &mut Tensor) -> Result<()> {
        self.check(x)?;
        let (_, c, h, w) = x.dims4()?;
        for image in x.data_mut().chunks_exact_mut(c * h * w) {
            for (ch, plane) in image.chunks_exact_mut(h * w).enumerate() {
                let (m, s) = (self.mean[ch], self.std[ch]);
                plane.iter_mut().for_each(|v| *v = *v * s + m);
            }
        }
        Ok(())
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        let c = self.mean.len();
        if x.shape().len() != 4 || x.shape()[1] != c || self.std.len() != c {
            return Err(Error::shape(
                "normalization",
                format!("(N, {c}, H, W) with {c} means and {c} stds"),
                x.shape(),
            ));
        }
        Ok(())
    }
}

/// `(Σ v, Σ v²)` of one channel plane, in eight f32 lanes (vectorised) then f64.
fn plane_sums(values: &[f32]) -> (f64, f64) {
    let mut s = [0.0f32; 8];
    let mut sq = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for k in 0..8 {
            s[k] += chunk[k];
            sq[k] += chunk[k] * chunk[k];
        }
    }
    let mut total = (0.0f64, 0.0f64);
    for k in 0..8 {
        total.0 += s[k] as f64;
        total.1 += sq[k] as f64;
    }
    for &v in rest {
        total.0 += v as f64;
        total.1 += (v * v) as f64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_a_batch_in_rank_order_and_differ_by_at_most_one() {
        for (n, ranks) in [(64, 2), (7, 3), (5, 5), (10, 4)] {
            let shards: Vec<_> = (0..ranks).map(|r| shard(n, r, ranks)).collect();
            assert_eq!(shards[0].start, 0);
            assert_eq!(shards[ranks - 1].end, n);
            for pair in shards.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            let sizes: Vec<usize> = shards.iter().map(|s| s.len()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{n} over {ranks}: {sizes:?}");
        }
    }

    #[test]
    fn the_shards_of_a_batch_are_the_batch() {
        let data = indexed(10, 1, 3);
        let mut rng = Rng::new(9);
        let whole: Vec<_> = data.shuffled_batches(4, &mut rng).unwrap().collect();
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); whole.len()];
        for rank in 0..3 {
            let mut batches = data.shuffled_batches(4, &mut Rng::new(9)).unwrap();
            let (mut x, mut labels) = (Tensor::default(), Vec::new());
            let mut b = 0;
            while let Some(size) = batches.next_shard_into(rank, 3, &mut x, &mut labels) {
                assert_eq!(size, whole[b].1.len());
                // Every pixel holds the image index.
                parts[b].extend(x.data().iter().step_by(4).map(|v| *v as usize));
                b += 1;
            }
        }
        for ((x, _), part) in whole.iter().zip(&parts) {
            let ids: Vec<usize> = x.data().iter().step_by(4).map(|v| *v as usize).collect();
            assert_eq!(&ids, part);
        }
    }

    /// `n` images of shape (C, 2, 2) whose every pixel holds the image index; labels cycle
    /// through `k` classes.
    fn indexed(n: usize, c: usize, k: usize) -> Dataset {
        let per = c * 4;
        let data = (0..n * per).map(|i| (i / per) as f32).collect();
        let classes = (0..k).map(|i| format!("class {i}")).collect();
        Dataset::new(
            Tensor::from_vec(&[n, c, 2, 2], data).unwrap(),
            (0..n).map(|i| i % k).collect(),
            classes,
        )
        .unwrap()
    }

    #[test]
    fn new_rejects_bad_shapes_counts_and_labels() {
        let classes = vec!["a".to_string(), "b".to_string()];
        assert!(Dataset::new(Tensor::zeros(&[2, 4]), vec![0, 1], classes.clone()).is_err());
        assert!(Dataset::new(Tensor::zeros(&[2, 1, 2, 2]), vec![0], classes.clone()).is_err());
        let err = Dataset::new(Tensor::zeros(&[2, 1, 2, 2]), vec![0, 2], classes).unwrap_err();
        assert!(err.to_string().contains("label 2"), "{err}");
    }

    #[test]
    fn from_u8_scales_to_unit_interval() {
        let d = Dataset::from_u8([1, 1, 1, 3], &[0, 51, 255], vec![0], vec!["x".into()]).unwrap();
        assert_eq!(d.images().data(), &[0.0, 0.2, 1.0]);
    }

    #[test]
    fn batches_cover_every_image_once_with_a_partial_last_batch() {
        let d = indexed(10, 2, 3);
        let mut rng = Rng::new(5);
        let batches: Vec<_> = d.shuffled_batches(4, &mut rng).unwrap().collect();
        assert_eq!(
            batches
                .iter()
                .map(|(x, _)| x.shape()[0])
                .collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let mut seen = Vec::new();
        for (x, y) in &batches {
            assert_eq!(&x.shape()[1..], &[2, 2, 2]);
            for (b, &label) in y.iter().enumerate() {
                // Every pixel of image b holds its index in the data set.
                let index = x.image(b).unwrap()[0] as usize;
                assert!(x.image(b).unwrap().iter().all(|&v| v == index as f32));
                assert_eq!(label, index % 3);
                seen.push(index);
            }
        }
        let in_order: Vec<usize> = seen.clone();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_ne!(in_order, seen, "the order is shuffled");
    }

    #[test]
    fn shuffling_is_determined_by_the_seed() {
        let d = indexed(50, 1, 5);
        let order = |seed| {
            let mut rng = Rng::new(seed);
            d.shuffled_batches(7, &mut rng)
                .unwrap()
                .flat_map(|(x, _)| (0..x.shape()[0]).map(move |b| x.image(b).unwrap()[0]))
                .collect::<Vec<_>>()
        };
        assert_eq!(order(1), order(1));
        assert_ne!(order(1), order(2));
    }

    #[test]
    fn next_into_reuses_buffers_and_matches_the_iterator() {
        let d = indexed(9, 3, 2);
        let mut batches = d.batches(4).unwrap();
        assert_eq!(batches.num_batches(), 3);
        let (mut x, mut y) = (Tensor::default(), Vec::new());
        let mut count = 0;
        let mut reference = d.batches(4).unwrap();
        while batches.next_into(&mut x, &mut y) {
            let (rx, ry) = reference.next().unwrap();
            assert_eq!((&x, &y), (&rx, &ry));
            count += 1;
        }
        assert_eq!(count, 3);
        assert!(reference.next().is_none());
        assert!(d.batches(0).is_err());
    }

    #[test]
    fn validation_split_is_stratified_disjoint_and_deterministic() {
        let full = indexed(100, 1, 4);
        let mut train = full.clone();
        let val = train.split_off_validation(0.2, 9).unwrap();
        assert_eq!(val.class_counts(), vec![5, 5, 5, 5]);
        assert_eq!(train.class_counts(), vec![20, 20, 20, 20]);
        let ids = |d: &Dataset| {
            (0..d.len())
                .map(|i| d.image(i)[0] as usize)
                .collect::<Vec<_>>()
        };
        let mut all = ids(&train);
        all.extend(ids(&val));
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        for d in [&train, &val] {
            for i in 0..d.len() {
                assert_eq!(
                    d.labels()[i],
                    d.image(i)[0] as usize % 4,
                    "label follows its image"
                );
            }
        }
        let mut again = full.clone();
        assert_eq!(again.split_off_validation(0.2, 9).unwrap(), val);
        let mut other = full.clone();
        assert_ne!(other.split_off_validation(0.2, 10).unwrap(), val);
        assert!(full.clone().split_off_validation(1.0, 0).is_err());
        assert!(full.clone().split_off_validation(f32::NAN, 0).is_err());
    }

    #[test]
    fn normalization_uses_training_statistics_for_every_split() {
        // Channel 0 holds 0 and 1 (mean 0.5, std 0.5); channel 1 holds 0.25 everywhere.
        let train = Dataset::new(
            Tensor::from_vec(
                &[2, 2, 1, 2],
                vec![0.0, 1.0, 0.25, 0.25, 1.0, 0.0, 0.25, 0.25],
            )
            .unwrap(),
            vec![0, 0],
            vec!["x".into()],
        )
        .unwrap();
        let test = Dataset::new(
            Tensor::from_vec(&[1, 2, 1, 2], vec![0.5, 1.5, 0.25, 1.25]).unwrap(),
            vec![0],
            vec!["x".into()],
        )
        .unwrap();
        let mut splits = Splits { train, test };
        let norm = splits.normalise().unwrap();
        assert_eq!(norm.mean, vec![0.5, 0.25]);
        assert_eq!(norm.std, vec![0.5, 1.0], "a constant channel keeps std 1");
        assert_eq!(
            splits.train.images().data(),
            &[-1.0, 1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0]
        );
        assert_eq!(splits.test.images().data(), &[0.0, 2.0, 0.0, 1.0]);
        let mut x = splits.test.images().clone();
        norm.undo_batch(&mut x).unwrap();
        assert_eq!(x.data(), &[0.5, 1.5, 0.25, 1.25]);
        assert!(norm
            .apply_to_batch(&mut Tensor::zeros(&[1, 3, 1, 1]))
            .is_err());
    }

    #[test]
    fn normalization_matches_a_direct_computation() {
        let mut rng = Rng::new(3);
        let x = Tensor::uniform(&[300, 3, 5, 7], 0.0, 1.0, &mut rng);
        let d = Dataset::new(x.clone(), vec![0; 300], vec!["x".into()]).unwrap();
        let norm = Normalization::fit(&d);
        for c in 0..3 {
            let values: Vec<f64> = (0..300)
                .flat_map(|n| x.image(n).unwrap()[c * 35..(c + 1) * 35].to_vec())
                .map(|v| v as f64)
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
            assert!((norm.mean[c] as f64 - mean).abs() < 1e-6);
            assert!((norm.std[c] as f64 - var.sqrt()).abs() < 1e-6);
        }
    }
}
