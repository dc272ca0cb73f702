//! A built-in data set that needs no download: 28×28 grayscale images of eight pattern
//! classes (stripes in three orientations, a checkerboard, and four outlined or filled
//! shapes), each drawn with random position, scale, thickness, period, phase, contrast,
//! polarity and noise, so that a classifier has to generalise rather than memorise.
//!
//! Every image is drawn from its own generator seeded from the data set's seed, so the
//! result depends only on the seed, not on how many threads draw.

use rayon::prelude::*;

use super::{Dataset, Splits};
use ocellus::rng::Rng;
use ocellus::tensor::Tensor;

/// Height and width of a pattern image.
pub const SIZE: usize = 28;

/// Images per class in the training set by default (8 classes: 6 000 images).
pub const DEFAULT_TRAIN_PER_CLASS: usize = 750;

/// Images per class in the test set by default (8 classes: 1 200 images).
pub const DEFAULT_TEST_PER_CLASS: usize = 150;

/// The pattern classes, in label order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Horizontal bands, tilted by up to ±12°.
    HorizontalStripes,
    /// Vertical bands, tilted by up to ±12°.
    VerticalStripes,
    /// Bands rising to the right (`/`), at 45° ± 12°.
    DiagonalStripes,
    /// Alternating squares, tilted by up to ±12°.
    Checkerboard,
    /// A square, filled or outlined, tilted by up to ±10°.
    Square,
    /// A disc or a ring.
    Circle,
    /// A plus sign of two crossing bars, tilted by up to ±10°.
    Plus,
    /// An equilateral triangle pointing up, filled or outlined, tilted by up to ±10°.
    Triangle,
}

impl Pattern {
    /// Every class, in label order.
    pub const ALL: [Pattern; 8] = [
        Pattern::HorizontalStripes,
        Pattern::VerticalStripes,
        Pattern::DiagonalStripes,
        Pattern::Checkerboard,
        Pattern::Square,
        Pattern::Circle,
        Pattern::Plus,
        Pattern::Triangle,
    ];

    /// The class name shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::HorizontalStripes => "horizontal stripes",
            Pattern::VerticalStripes => "vertical stripes",
            Pattern::DiagonalStripes => "diagonal stripes",
            Pattern::Checkerboard => "checkerboard",
            Pattern::Square => "square",
            Pattern::Circle => "circle",
            Pattern::Plus => "plus",
            Pattern::Triangle => "triangle",
        }
    }

    /// The class of label `k`.
    pub fn from_label(k: usize) -> Option<Pattern> {
        Pattern::ALL.get(k).copied()
    }
}

/// A training set of `train_per_class` and a test set of `test_per_class` images per
/// class, drawn independently from `seed` (no test image repeats a training image).
/// Images are `(N, 1, 28, 28)` in [0, 1]; labels cycle through the classes.
pub fn generate(train_per_class: usize, test_per_class: usize, seed: u64) -> Splits {
    let mut rng = Rng::new(seed);
    let (train_seed, test_seed) = (rng.next_u64(), rng.next_u64());
    Splits {
        train: generate_set(train_per_class, train_seed),
        test: generate_set(test_per_class, test_seed),
    }
}

/// `per_class` images of every class, image `i` of class `i mod 8`, drawn from `seed`.
pub fn generate_set(per_class: usize, seed: u64) -> Dataset {
    let k = Pattern::ALL.len();
    let n = per_class * k;
    let mut rng = Rng::new(seed);
    let seeds: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    let mut data = vec![0.0f32; n * SIZE * SIZE];
    data.par_chunks_mut(SIZE * SIZE)
        .zip(&seeds)
        .enumerate()
        .for_each(|(i, (image, &s))| draw(Pattern::ALL[i % k], &mut Rng::new(s), image));
    Dataset::new(
        Tensor::from_vec(&[n, 1, SIZE, SIZE], data).expect("N·28·28 values"),
        (0..n).map(|i| i % k).collect(),
        Pattern::ALL.iter().map(|p| p.name().to_string()).collect(),
    )
    .expect("labels below the class count")
}

/// Draws one random image of `pattern` into `out` (28·28 values, row-major, in [0, 1]).
pub fn draw(pattern: Pattern, rng: &mut Rng, out: &mut [f32]) {
    let geometry = Geometry::random(pattern, rng);
    let style = Style::random(rng);
    render(&geometry, &style, rng, out);
}

/// Where the pattern is and how big: everything random about its shape.
#[derive(Clone, Copy, Debug)]
enum Geometry {
    /// Bands varying along the direction at `angle` (radians, y pointing down): a band
    /// covers the fraction `duty` of every `period` pixels, shifted by `phase` periods.
    Stripes {
        angle: f32,
        period: f32,
        duty: f32,
        phase: f32,
    },
    /// Squares of side `cell`, the grid rotated by `angle` and shifted by `phase` cells.
    Checker {
        angle: f32,
        cell: f32,
        phase: (f32, f32),
    },
    /// A shape centred at `centre`, rotated by `angle`, filled when `outline` is `None`,
    /// otherwise a line of that half-thickness along its boundary.
    Shape {
        shape: Shape,
        centre: (f32, f32),
        angle: f32,
        outline: Option<f32>,
    },
}

/// The shapes, with their sizes in pixels.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Half the side.
    Square(f32),
    /// Radius.
    Circle(f32),
    /// Half-length of an arm and half-thickness of a bar.
    Plus(f32, f32),
    /// Half the side of the equilateral triangle.
    Triangle(f32),
}

/// How the pattern is shown: `coverage` 0 → `background`, 1 → `foreground`, plus Gaussian
/// noise of standard deviation `noise`, clamped to [0, 1].
#[derive(Clone, Copy, Debug)]
struct Style {
    background: f32,
    foreground: f32,
    noise: f32,
}

const DEG: f32 = std::f32::consts::PI / 180.0;

impl Geometry {
    fn random(pattern: Pattern, rng: &mut Rng) -> Geometry {
        let stripes = |rng: &mut Rng, degrees: f32| Geometry::Stripes {
            angle: (degrees + rng.uniform_in(-12.0, 12.0)) * DEG,
            period: rng.uniform_in(4.0, 10.0),
            duty: rng.uniform_in(0.3, 0.7),
            phase: rng.uniform(),
        };
        let outline = |rng: &mut Rng| (rng.below(2) == 0).then(|| rng.uniform_in(0.6, 1.5));
        // Centre so that a shape reaching `extent` pixels from it stays 1.5 pixels inside.
        let centre = |rng: &mut Rng, extent: f32| {
            let m = extent + 1.5;
            assert!(
                m <= SIZE as f32 / 2.0,
                "a shape of extent {extent} does not fit"
            );
            let s = SIZE as f32;
            (rng.uniform_in(m, s - m), rng.uniform_in(m, s - m))
        };
        let tilt = |rng: &mut Rng| rng.uniform_in(-10.0, 10.0) * DEG;
        match pattern {
            // The angle is the direction along which the bands vary (y points down).
            Pattern::HorizontalStripes => stripes(rng, 90.0),
            Pattern::VerticalStripes => stripes(rng, 0.0),
            Pattern::DiagonalStripes => stripes(rng, 45.0),
            Pattern::Checkerboard => Geometry::Checker {
                angle: rng.uniform_in(-12.0, 12.0) * DEG,
                cell: rng.uniform_in(3.5, 8.0),
                phase: (rng.uniform(), rng.uniform()),
            },
            Pattern::Square => {
                let half = rng.uniform_in(4.5, 9.0);
                let angle = tilt(rng);
                let outline = outline(rng);
                // A square tilted by θ reaches half·(cos θ + sin θ) ≤ 1.16·half.
                Geometry::Shape {
                    shape: Shape::Square(half),
                    centre: centre(rng, 1.16 * half + outline.unwrap_or(0.0)),
                    angle,
                    outline,
                }
            }
            Pattern::Circle => {
                let r = rng.uniform_in(4.5, 10.5);
                let outline = outline(rng);
                Geometry::Shape {
                    shape: Shape::Circle(r),
                    centre: centre(rng, r + outline.unwrap_or(0.0)),
                    angle: 0.0,
                    outline,
                }
            }
            Pattern::Plus => {
                let (arm, bar) = (rng.uniform_in(5.5, 10.5), rng.uniform_in(1.0, 2.2));
                let angle = tilt(rng);
                Geometry::Shape {
                    shape: Shape::Plus(arm, bar),
                    centre: centre(rng, arm + 0.4 * bar),
                    angle,
                    outline: None,
                }
            }
            Pattern::Triangle => {
                // Circumradius R in [6, 10.5]; half the side is R·√3/2.
                let circumradius = rng.uniform_in(6.0, 10.5);
                let angle = tilt(rng);
                let outline = outline(rng);
                Geometry::Shape {
                    shape: Shape::Triangle(circumradius * 3f32.sqrt() / 2.0),
                    centre: centre(rng, circumradius + outline.unwrap_or(0.0)),
                    angle,
                    outline,
                }
            }
        }
    }

    /// How much of the pixel centred at `(x, y)` the pattern covers, in [0, 1]. Edges are
    /// anti-aliased: coverage = clamp(½ − signed distance to the edge, 0, 1).
    fn coverage(&self, x: f32, y: f32) -> f32 {
        match *self {
            Geometry::Stripes {
                angle,
                period,
                duty,
                phase,
            } => {
                let u = x * angle.cos() + y * angle.sin();
                band(u / period + phase, duty, period)
            }
            Geometry::Checker { angle, cell, phase } => {
                let (c, s) = (angle.cos(), angle.sin());
                let (u, v) = (x * c + y * s, -x * s + y * c);
                // Two half-duty square waves; a cell is on where exactly one of them is.
                let a = band(u / (2.0 * cell) + phase.0, 0.5, 2.0 * cell);
                let b = band(v / (2.0 * cell) + phase.1, 0.5, 2.0 * cell);
                a * (1.0 - b) + b * (1.0 - a)
            }
            Geometry::Shape {
                shape,
                centre,
                angle,
                outline,
            } => {
                // Into the shape's frame: centred, unrotated.
                let (dx, dy) = (x - centre.0, y - centre.1);
                let (c, s) = (angle.cos(), angle.sin());
                let (px, py) = (dx * c + dy * s, -dx * s + dy * c);
                let d = shape.distance(px, py);
                let d = match outline {
                    Some(half_thickness) => d.abs() - half_thickness,
                    None => d,
                };
                (0.5 - d).clamp(0.0, 1.0)
            }
        }
    }
}

/// Coverage of a square wave that is on for the fraction `duty` of each period, at
/// `t` periods; `period` converts the distance to the nearest edge into pixels.
fn band(t: f32, duty: f32, period: f32) -> f32 {
    let f = t - t.floor();
    // Signed distance (pixels) to the nearest edge, positive inside the band.
    let inside = if f < duty {
        f.min(duty - f)
    } else {
        -(f - duty).min(1.0 - f)
    };
    (0.5 + inside * period).clamp(0.0, 1.0)
}

impl Shape {
    /// Signed distance from `(x, y)` (shape frame, y down) to the boundary: negative
    /// inside.
    fn distance(self, x: f32, y: f32) -> f32 {
        match self {
            Shape::Square(half) => box_distance(x, y, half, half),
            Shape::Circle(r) => (x * x + y * y).sqrt() - r,
            Shape::Plus(arm, bar) => box_distance(x, y, arm, bar).min(box_distance(x, y, bar, arm)),
            Shape::Triangle(r) => {
                // Inigo Quilez's exact distance to an equilateral triangle of half-side r,
                // centroid at the origin, apex up (his y points up, so flip ours).
                let k = 3f32.sqrt();
                let (mut px, mut py) = (x.abs() - r, -y + r / k);
                if px + k * py > 0.0 {
                    (px, py) = ((px - k * py) / 2.0, (-k * px - py) / 2.0);
                }
                px -= px.clamp(-2.0 * r, 0.0);
                -(px * px + py * py).sqrt() * py.signum()
            }
        }
    }
}

/// Signed distance to an axis-aligned box of half-extents `(a, b)` centred at the origin.
fn box_distance(x: f32, y: f32, a: f32, b: f32) -> f32 {
    let (qx, qy) = (x.abs() - a, y.abs() - b);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0)
}

impl Style {
    fn random(rng: &mut Rng) -> Style {
        let background = rng.uniform_in(0.0, 0.3);
        let foreground = rng.uniform_in(0.6, 1.0);
        let noise = rng.uniform_in(0.0, 0.1);
        // A quarter of the images are inverted: a dark pattern on a light background.
        if rng.below(4) == 0 {
            Style {
                background: foreground,
                foreground: background,
                noise,
            }
        } else {
            Style {
                background,
                foreground,
                noise,
            }
        }
    }
}

/// Renders a 28×28 image: pixel `(x, y)` is sampled at its centre `(x + ½, y + ½)`.
fn render(geometry: &Geometry, style: &Style, rng: &mut Rng, out: &mut [f32]) {
    assert_eq!(out.len(), SIZE * SIZE, "a pattern image is 28·28 values");
    for (i, v) in out.iter_mut().enumerate() {
        let (x, y) = ((i % SIZE) as f32 + 0.5, (i / SIZE) as f32 + 0.5);
        let cover = geometry.coverage(x, y);
        let clean = style.background + (style.foreground - style.background) * cover;
        let noisy = if style.noise > 0.0 {
            clean + style.noise * rng.normal()
        } else {
            clean
        };
        *v = noisy.clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Style = Style {
        background: 0.0,
        foreground: 1.0,
        noise: 0.0,
    };

    fn plain(geometry: Geometry) -> Vec<f32> {
        let mut out = vec![0.0; SIZE * SIZE];
        render(&geometry, &PLAIN, &mut Rng::new(0), &mut out);
        out
    }

    fn at(image: &[f32], x: usize, y: usize) -> f32 {
        image[y * SIZE + x]
    }

    fn shape(shape: Shape, outline: Option<f32>) -> Vec<f32> {
        plain(Geometry::Shape {
            shape,
            centre: (14.0, 14.0),
            angle: 0.0,
            outline,
        })
    }

    #[test]
    fn same_seed_same_images_and_train_differs_from_test() {
        let a = generate(20, 5, 42);
        let b = generate(20, 5, 42);
        assert_eq!(a, b);
        assert_ne!(generate(20, 5, 43).train, a.train);
        for i in 0..a.test.len() {
            for j in 0..a.train.len() {
                assert_ne!(
                    a.test.image(i),
                    a.train.image(j),
                    "test {i} repeats train {j}"
                );
            }
        }
    }

    #[test]
    fn classes_are_balanced_and_values_in_unit_interval() {
        let s = generate(30, 7, 1);
        assert_eq!(s.train.class_counts(), vec![30; 8]);
        assert_eq!(s.test.class_counts(), vec![7; 8]);
        assert_eq!(s.train.images().shape(), &[240, 1, 28, 28]);
        assert_eq!(s.train.classes()[3], "checkerboard");
        assert!(s
            .train
            .images()
            .data()
            .iter()
            .all(|v| (0.0..=1.0).contains(v)));
        // Not degenerate: images within a class differ.
        assert_ne!(s.train.image(0), s.train.image(8));
    }

    /// Mean absolute difference between pixels one step apart along `(sx, sy)`.
    fn roughness(image: &[f32], sx: isize, sy: isize) -> f32 {
        let mut total = 0.0;
        let mut count = 0;
        for y in 1..SIZE as isize - 1 {
            for x in 1..SIZE as isize - 1 {
                let a = image[(y * SIZE as isize + x) as usize];
                let b = image[((y + sy) * SIZE as isize + x + sx) as usize];
                total += (a - b).abs();
                count += 1;
            }
        }
        total / count as f32
    }

    #[test]
    fn stripe_classes_vary_across_their_bands_only() {
        let d = generate_set(40, 9);
        // Average, per class, the change along x, along y, along ↘ and along ↗.
        let mut stats = [[0.0f32; 4]; 8];
        for i in 0..d.len() {
            let img = d.image(i);
            let r = [
                roughness(img, 1, 0),
                roughness(img, 0, 1),
                roughness(img, 1, 1),
                roughness(img, 1, -1),
            ];
            for k in 0..4 {
                stats[d.labels()[i]][k] += r[k] / 40.0;
            }
        }
        let [h, v, diag] = [stats[0], stats[1], stats[2]];
        assert!(
            h[1] > 2.0 * h[0],
            "horizontal stripes change along y: {h:?}"
        );
        assert!(v[0] > 2.0 * v[1], "vertical stripes change along x: {v:?}");
        assert!(
            diag[2] > 2.0 * diag[3],
            "`/` stripes change along ↘, not ↗: {diag:?}"
        );
        // A checkerboard changes along both axes alike.
        let c = stats[3];
        assert!(c[0] < 1.5 * c[1] && c[1] < 1.5 * c[0], "checkerboard {c:?}");
    }

    #[test]
    fn shapes_sit_on_a_plain_background_and_textures_fill_the_image() {
        let d = generate_set(40, 11);
        // Spread of the outermost ring of pixels relative to the whole image.
        let border_spread = |img: &[f32]| {
            let border: Vec<f32> = (0..SIZE * SIZE)
                .filter(|i| {
                    let (x, y) = (i % SIZE, i / SIZE);
                    x == 0 || y == 0 || x == SIZE - 1 || y == SIZE - 1
                })
                .map(|i| img[i])
                .collect();
            let mean = border.iter().sum::<f32>() / border.len() as f32;
            border.iter().map(|v| (v - mean).abs()).sum::<f32>() / border.len() as f32
        };
        let mut per_class = [0.0f32; 8];
        for i in 0..d.len() {
            per_class[d.labels()[i]] += border_spread(d.image(i)) / 40.0;
        }
        let textures = per_class[..4].iter().cloned().fold(f32::INFINITY, f32::min);
        let shapes = per_class[4..].iter().cloned().fold(0.0, f32::max);
        assert!(
            textures > 3.0 * shapes,
            "border spread per class {per_class:?}"
        );
    }

    #[test]
    fn shapes_are_drawn_where_their_geometry_says() {
        // Filled, centred at (14, 14) with size 8: pixel (x, y) has its centre at
        // (x + ½, y + ½), so pixel 14 + k lies k + ½ from the centre.
        let square = shape(Shape::Square(8.0), None);
        let circle = shape(Shape::Circle(8.0), None);
        let plus = shape(Shape::Plus(8.0, 2.0), None);
        let triangle = shape(Shape::Triangle(8.0), None);
        for img in [&square, &circle, &plus, &triangle] {
            assert_eq!(at(img, 13, 13), 1.0, "centre covered");
            assert_eq!(at(img, 0, 0), 0.0, "corner of the image empty");
        }
        // The corner region (6.5, 6.5) from the centre is in the square only.
        assert_eq!(at(&square, 20, 20), 1.0);
        assert_eq!(at(&circle, 20, 20), 0.0);
        assert_eq!(at(&plus, 20, 20), 0.0);
        // Along the axis, 6.5 px out: square, circle and plus cover it.
        for img in [&square, &circle, &plus] {
            assert_eq!(at(img, 20, 13), 1.0);
        }
        // Triangle of half-side 8 (apex 9.24 above the centroid, base 4.62 below):
        // the apex column is covered 7 px up, the base row's corners stay empty above.
        assert_eq!(at(&triangle, 13, 7) + at(&triangle, 14, 7), 2.0);
        assert_eq!(at(&triangle, 14, 20), 0.0, "below the base");
        assert_eq!(at(&triangle, 21, 8), 0.0, "beside the apex");
        assert_eq!(at(&triangle, 20, 17), 1.0, "near the base corner");
        // An outlined circle is empty in the middle and drawn on its radius.
        let ring = shape(Shape::Circle(8.0), Some(1.0));
        assert_eq!(at(&ring, 13, 13), 0.0);
        assert_eq!(at(&ring, 21, 13), 1.0);
    }

    #[test]
    fn stripes_have_the_requested_period_and_duty() {
        // Vertical stripes (varying along x), period 8, half on.
        let img = plain(Geometry::Stripes {
            angle: 0.0,
            period: 8.0,
            duty: 0.5,
            phase: 0.0,
        });
        let row: Vec<f32> = (0..SIZE).map(|x| at(&img, x, 5)).collect();
        for x in 0..SIZE - 8 {
            assert!((row[x] - row[x + 8]).abs() < 1e-5, "period 8 at column {x}");
        }
        // Pixel centres 0.5..3.5 lie in the band [0, 4), 4.5..7.5 outside.
        assert_eq!(&row[..8], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(
            (0..SIZE).all(|y| at(&img, 3, y) == 1.0),
            "constant down a column"
        );
    }
}
