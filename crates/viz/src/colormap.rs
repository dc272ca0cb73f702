//! Colormaps: values in [0, 1] to colours, by linear interpolation between anchor colours.
//!
//! - viridis (matplotlib's default): perceptually uniform and readable in grey, for
//!   magnitudes (counts, activations, saliency);
//! - a diverging blue–white–red map for signed values (filter weights, gradients), where
//!   0.5 is white and stands for zero;
//! - plain grey, for images.

use super::canvas::Rgb;

/// Viridis at t = 0, 0.1, …, 1 (matplotlib's `viridis`, CC0).
const VIRIDIS: [Rgb; 11] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x24, 0x75],
    [0x41, 0x44, 0x87],
    [0x35, 0x5f, 0x8d],
    [0x2a, 0x78, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x22, 0xa8, 0x84],
    [0x44, 0xbf, 0x70],
    [0x7a, 0xd1, 0x51],
    [0xbd, 0xdf, 0x26],
    [0xfd, 0xe7, 0x25],
];

/// Blue – white – red at t = 0, 0.125, …, 1 (ColorBrewer's RdBu reversed, with a pure white
/// centre).
const BLUE_WHITE_RED: [Rgb; 9] = [
    [0x21, 0x66, 0xac],
    [0x43, 0x93, 0xc3],
    [0x92, 0xc5, 0xde],
    [0xd1, 0xe5, 0xf0],
    [0xff, 0xff, 0xff],
    [0xfd, 0xdb, 0xc7],
    [0xf4, 0xa5, 0x82],
    [0xd6, 0x60, 0x4d],
    [0xb2, 0x18, 0x2b],
];

/// Colour for `t` in [0, 1] along evenly spaced `anchors`; `t` is clamped, NaN gives the
/// middle colour.
fn interpolate(anchors: &[Rgb], t: f32) -> Rgb {
    let t = if t.is_nan() { 0.5 } else { t.clamp(0.0, 1.0) };
    let pos = t * (anchors.len() - 1) as f32;
    let i = (pos.floor() as usize).min(anchors.len() - 2);
    let f = pos - i as f32;
    let (a, b) = (anchors[i], anchors[i + 1]);
    std::array::from_fn(|k| (a[k] as f32 + f * (b[k] as f32 - a[k] as f32)).round() as u8)
}

/// Viridis: dark purple (0) through teal to yellow (1).
pub fn viridis(t: f32) -> Rgb {
    interpolate(&VIRIDIS, t)
}

/// Diverging map: blue (0), white (0.5), red (1). Map a signed value `v` in [-m, m] with
/// `t = 0.5 + v / (2m)`.
pub fn diverging(t: f32) -> Rgb {
    interpolate(&BLUE_WHITE_RED, t)
}

/// Black (0) to white (1).
pub fn gray(t: f32) -> Rgb {
    interpolate(&[[0, 0, 0], [255, 255, 255]], t)
}

/// A colormap by name, for callers that let the user choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colormap {
    Gray,
    Viridis,
    /// Signed data: the range is made symmetric around zero, which maps to white.
    Diverging,
}

impl Colormap {
    /// The colour for `t` in [0, 1].
    pub fn map(self, t: f32) -> Rgb {
        match self {
            Colormap::Gray => gray(t),
            Colormap::Viridis => viridis(t),
            Colormap::Diverging => diverging(t),
        }
    }
}

/// Relative luminance (Rec. 709 weights on sRGB values, 0..1): picks black or white text
/// over a coloured cell.
pub fn luminance(c: Rgb) -> f32 {
    rec709_luminance(c[0] as f32, c[1] as f32, c[2] as f32) / 255.0
}

/// `0.2126 R + 0.7152 G + 0.0722 B`: the Rec. 709 weights, in the units of the values.
pub fn rec709_luminance(r: f32, g: f32, b: f32) -> f32 {
    0.2126 * r + 0.7152 * g + 0.0722 * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_hit_exactly_and_ends_clamp() {
        assert_eq!(viridis(0.0), VIRIDIS[0]);
        assert_eq!(viridis(1.0), VIRIDIS[10]);
        assert_eq!(viridis(0.5), VIRIDIS[5]);
        assert_eq!(viridis(-3.0), VIRIDIS[0]);
        assert_eq!(viridis(7.0), VIRIDIS[10]);
        assert_eq!(diverging(0.5), [255, 255, 255]);
        assert_eq!(gray(0.5), [128, 128, 128]);
    }

    #[test]
    fn between_anchors_is_the_average() {
        // Halfway between anchors 0 and 1 (t = 0.05).
        let mid = viridis(0.05);
        for k in 0..3 {
            let avg = (VIRIDIS[0][k] as f32 + VIRIDIS[1][k] as f32) / 2.0;
            assert!((mid[k] as f32 - avg).abs() <= 0.5, "{mid:?}");
        }
    }

    #[test]
    fn viridis_gets_brighter_and_diverging_is_blue_then_red() {
        let mut last = -1.0;
        for i in 0..=20 {
            let l = luminance(viridis(i as f32 / 20.0));
            assert!(
                l > last,
                "viridis luminance must increase: {l} after {last} at {i}"
            );
            last = l;
        }
        let (blue, red) = (diverging(0.0), diverging(1.0));
        assert!(blue[2] > blue[0] && red[0] > red[2]);
        // Symmetric lightness around the white centre.
        let (l, r) = (luminance(diverging(0.3)), luminance(diverging(0.7)));
        assert!((l - r).abs() < 0.1, "{l} vs {r}");
    }
}
