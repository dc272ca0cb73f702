//! The seven-loop convolution: slow, obvious, and the definition every fast path is
//! tested against.
//!
//! `y[n,oc,oh,ow] = b[oc] + Σ_{ic,i,j} x[n, ic, oh·SH − PT + i·DH, ow·SW − PL + j·DW] · w[oc,ic,i,j]`
//! (zero outside the image; `ic` runs over the filter's group).

use super::ConvGeometry;

/// Input row/column read by output position `o` and kernel tap `k`, or `None` in padding.
#[inline]
fn input_pos(
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    len: usize,
) -> Option<usize> {
    let pos = (o * stride + k * dilation) as isize - pad as isize;
    (0..len as isize).contains(&pos).then_some(pos as usize)
}

/// Calls `f(x_index, w_index, y_index)` for every multiply-add of the convolution.
fn for_each_tap(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (icg, ocg) = (g.ic_per_group(), g.oc_per_group());
    for n in 0..g.n {
        for oc in 0..g.oc {
            let group = oc / ocg;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let y_idx = ((n * g.oc + oc) * g.oh + oy) * g.ow + ox;
                    for c in 0..icg {
                        let ic = group * icg + c;
                        for i in 0..g.kh {
                            let Some(iy) = input_pos(oy, i, g.stride.0, g.pad.0, g.dilation.0, g.h)
                            else {
                                continue;
                            };
                            for j in 0..g.kw {
                                let Some(ix) =
                                    input_pos(ox, j, g.stride.1, g.pad.2, g.dilation.1, g.w)
                                else {
                                    continue;
                                };
                                let x_idx = ((n * g.ic + ic) * g.h + iy) * g.w + ix;
                                let w_idx = ((oc * icg + c) * g.kh + i) * g.kw + j;
                                f(x_idx, w_idx, y_idx);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// x: (N, IC, H, W), w: (OC, IC/groups, KH, KW), b: (OC,) → y: (N, OC, OH, OW)
pub fn conv2d_forward(g: &ConvGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let plane = g.oh * g.ow;
    let mut y = vec![0.0; g.n * g.oc * plane];
    if let Some(b) = b {
        for (k, out) in y.iter_mut().enumerate() {
            *out = b[(k / plane) % g.oc];
        }
    }
    for_each_tap(g, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// Backward of [`conv2d_forward`], differentiating `y[yi] += x[xi]·w[wi]` tap by tap:
/// `dx[xi] += dy[yi]·w[wi]`, `dw[wi] += dy[yi]·x[xi]`, `db[oc] += dy[n,oc,oh,ow]`.
/// Returns `(dx, dw, db)`.
pub fn conv2d_backward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for_each_tap(g, |xi, wi, yi| {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
    let plane = g.oh * g.ow;
    let mut db = vec![0.0; g.oc];
    for (k, d) in dy.iter().enumerate() {
        db[(k / plane) % g.oc] += d;
    }
    (dx, dw, db)
}
