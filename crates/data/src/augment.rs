//! Data augmentation applied to training batches: random crops with zero padding and
//! horizontal flips, torchvision's `RandomCrop(size, padding=p)` and
//! `RandomHorizontalFlip(p=0.5)`.
//!
//! Both work in place on a batch `(B, C, H, W)`, image by image, with no allocation. Padding
//! is zero in whatever units the batch holds: augment before normalising (as torchvision
//! pipelines do) and the padding is black; after, and it is the training mean.

use ocellus::error::Result;
use ocellus::rng::Rng;
use ocellus::tensor::Tensor;

/// Which augmentations to apply. The default does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Augmentation {
    /// Zero padding on every side before cropping back to `H × W`; 0 disables the crop.
    pub pad: usize,
    /// Mirror left–right with probability 1/2.
    pub flip: bool,
}

impl Augmentation {
    /// Crop with padding `pad` and, if `flip`, random horizontal flips.
    pub fn new(pad: usize, flip: bool) -> Self {
        Augmentation { pad, flip }
    }

    /// True when `apply` leaves batches unchanged.
    pub fn is_identity(&self) -> bool {
        self.pad == 0 && !self.flip
    }

    /// x: (B, C, H, W) -> x augmented in place, each image with its own random crop offset
    /// and flip. The draws come from `rng` in a fixed order (crop row, crop column, flip,
    /// image after image), so a seed reproduces the batch exactly. A tensor that is not
    /// 4-D is a shape error.
    pub fn apply(&self, x: &mut Tensor, rng: &mut Rng) -> Result<()> {
        if self.is_identity() || x.is_empty() {
            return Ok(());
        }
        let (_, c, h, w) = x.dims4()?;
        let p = self.pad;
        for image in x.data_mut().chunks_exact_mut(c * h * w) {
            if p > 0 {
                // RandomCrop pads to (H + 2p) × (W + 2p) and takes the window at row oy,
                // column ox, both uniform in [0, 2p]: output(y, x) = input(y + oy − p,
                // x + ox − p), i.e. the content moves by (p − oy, p − ox).
                let oy = rng.below(2 * p + 1) as isize;
                let ox = rng.below(2 * p + 1) as isize;
                shift(image, c, h, w, p as isize - oy, p as isize - ox);
            }
            if self.flip && rng.below(2) == 1 {
                hflip(image, c, h, w);
            }
        }
        Ok(())
    }
}

/// Mirrors one image `(C, H, W)` left–right in place: `x(c, y, j) ↔ x(c, y, W − 1 − j)`.
pub fn hflip(image: &mut [f32], c: usize, h: usize, w: usize) {
    assert_eq!(image.len(), c * h * w, "hflip: image is not C·H·W values");
    for row in image.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Moves the content of one image `(C, H, W)` by `dy` rows down and `dx` columns right in
/// place, filling the uncovered border with zeros: `out(y, x) = in(y − dy, x − dx)`, zero
/// where that falls outside the image.
pub fn shift(image: &mut [f32], c: usize, h: usize, w: usize, dy: isize, dx: isize) {
    assert_eq!(image.len(), c * h * w, "shift: image is not C·H·W values");
    for plane in image.chunks_exact_mut(h * w) {
        shift_plane(plane, h, w, dy, dx, 0.0);
    }
}

/// Moves the content of one plane `(H, W)` by `dy` rows down and `dx` columns right in
/// place: `out(y, x) = in(y − dy, x − dx)`, and `fill` where that falls outside the plane.
pub fn shift_plane(plane: &mut [f32], h: usize, w: usize, dy: isize, dx: isize, fill: f32) {
    assert_eq!(plane.len(), h * w, "shift_plane: plane is not H·W values");
    let (hi, wi) = (h as isize, w as isize);
    if dy.abs() >= hi || dx.abs() >= wi {
        plane.fill(fill);
        return;
    }
    // Columns of a row that receive content, and where that content starts in the row.
    let dst_x = dx.max(0) as usize;
    let src_x = (-dx).max(0) as usize;
    let run = w - dx.unsigned_abs();
    // Moving down, fill rows bottom-up so that every source row is read before it is
    // overwritten (and top-down when moving up).
    for k in 0..h {
        let y = if dy > 0 { h - 1 - k } else { k };
        let row = y * w;
        let sy = y as isize - dy;
        if sy < 0 || sy >= hi {
            plane[row..row + w].fill(fill);
            continue;
        }
        let src = sy as usize * w + src_x;
        plane.copy_within(src..src + run, row + dst_x);
        plane[row..row + dst_x].fill(fill);
        plane[row + dst_x + run..row + w].fill(fill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(shape: &[usize]) -> Tensor {
        let n = ocellus::tensor::numel(shape);
        Tensor::from_vec(shape, (1..=n).map(|v| v as f32).collect()).unwrap()
    }

    /// torchvision's definition written out: pad with zeros, then take the window.
    fn pad_then_crop(
        image: &[f32],
        c: usize,
        h: usize,
        w: usize,
        p: usize,
        oy: usize,
        ox: usize,
    ) -> Vec<f32> {
        let (ph, pw) = (h + 2 * p, w + 2 * p);
        let mut padded = vec![0.0; c * ph * pw];
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    padded[(ch * ph + y + p) * pw + x + p] = image[(ch * h + y) * w + x];
                }
            }
        }
        let mut out = vec![0.0; c * h * w];
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    out[(ch * h + y) * w + x] = padded[(ch * ph + y + oy) * pw + x + ox];
                }
            }
        }
        out
    }

    #[test]
    fn flip_twice_is_the_identity_and_once_mirrors_rows() {
        let x = numbered(&[1, 2, 3, 4]);
        let mut y = x.clone();
        hflip(y.data_mut(), 2, 3, 4);
        assert_eq!(&y.data()[..4], &[4.0, 3.0, 2.0, 1.0]);
        assert_eq!(&y.data()[20..24], &[24.0, 23.0, 22.0, 21.0]);
        hflip(y.data_mut(), 2, 3, 4);
        assert_eq!(y, x);
    }

    #[test]
    fn shift_moves_content_and_zero_fills() {
        // 1 2 3        0 0 0
        // 4 5 6  → down 1, left 1 →  2 3 0
        // 7 8 9        5 6 0
        let mut x = numbered(&[1, 1, 3, 3]);
        shift(x.data_mut(), 1, 3, 3, 1, -1);
        assert_eq!(x.data(), &[0.0, 0.0, 0.0, 2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
        let mut x = numbered(&[1, 1, 3, 3]);
        shift(x.data_mut(), 1, 3, 3, 0, 3);
        assert!(x.data().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn crop_with_padding_matches_pad_then_crop_for_every_offset() {
        let (c, h, w, p) = (2, 5, 6, 2);
        let x = numbered(&[1, c, h, w]);
        for oy in 0..=2 * p {
            for ox in 0..=2 * p {
                let mut y = x.clone();
                shift(
                    y.data_mut(),
                    c,
                    h,
                    w,
                    p as isize - oy as isize,
                    p as isize - ox as isize,
                );
                assert_eq!(
                    y.data(),
                    pad_then_crop(x.data(), c, h, w, p, oy, ox),
                    "offset ({oy}, {ox})"
                );
            }
        }
        // Offset (p, p) is the centre crop: the identity.
        let mut y = x.clone();
        shift(y.data_mut(), c, h, w, 0, 0);
        assert_eq!(y, x);
    }

    #[test]
    fn augmentation_is_determined_by_the_seed_and_varies_per_image() {
        let x = numbered(&[16, 3, 8, 8]);
        let aug = Augmentation::new(2, true);
        let run = |seed| {
            let mut y = x.clone();
            aug.apply(&mut y, &mut Rng::new(seed)).unwrap();
            y
        };
        assert_eq!(run(4), run(4));
        assert_ne!(run(4), run(5));
        let y = run(4);
        let changed = (0..16)
            .filter(|&n| y.image(n).unwrap() != x.image(n).unwrap())
            .count();
        assert!(changed >= 12, "only {changed} of 16 images changed");
        // Every augmented image is some crop of its padded original, possibly mirrored.
        for n in 0..16 {
            let found = (0..=4).any(|oy| {
                (0..=4).any(|ox| {
                    let crop = pad_then_crop(x.image(n).unwrap(), 3, 8, 8, 2, oy, ox);
                    let mut flipped = crop.clone();
                    hflip(&mut flipped, 3, 8, 8);
                    y.image(n) == Some(crop.as_slice()) || y.image(n) == Some(flipped.as_slice())
                })
            });
            assert!(found, "image {n} is not a padded crop");
        }
        let mut z = x.clone();
        Augmentation::default()
            .apply(&mut z, &mut Rng::new(0))
            .unwrap();
        assert_eq!(z, x);
    }
}
