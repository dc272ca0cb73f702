//! The plain definitions every fast path is tested against: slow, obvious, loop by loop.
//!
//! The seven-loop convolution,
//! `y[n,oc,oh,ow] = b[oc] + Σ_{ic,i,j} x[n, ic, oh·SH − PT + i·DH, ow·SW − PL + j·DW] · w[oc,ic,i,j]`
//! (zero outside the image; `ic` runs over the filter's group), and max and average
//! pooling over the windows `x[n, c, oh·SH − PH + i, ow·SW − PW + j]`, `0 ≤ i < KH`,
//! `0 ≤ j < KW`, with PyTorch's rules for NaNs, ties and divisors.

use super::pool::PoolGeometry;
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

/// Calls `f(plane, oh, ow, position)` for every kernel tap `(i, j)` of every output
/// window, in the order PyTorch scans them (planes, output rows, output columns, then the
/// window row-major); `position` is the tap's `(row, column)` in the image, or `None` when
/// it falls in the padding or past the image (a ceil-mode window hanging over the edge).
fn for_each_pool_tap(
    g: &PoolGeometry,
    mut f: impl FnMut(usize, usize, usize, Option<(usize, usize)>),
) {
    for plane in 0..g.n * g.c {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for i in 0..g.kernel.0 {
                    for j in 0..g.kernel.1 {
                        let row = input_pos(oy, i, g.stride.0, g.padding.0, 1, g.h);
                        let col = input_pos(ox, j, g.stride.1, g.padding.1, 1, g.w);
                        f(plane, oy, ox, row.zip(col));
                    }
                }
            }
        }
    }
}

/// x: (N, C, H, W) → y: (N, C, OH, OW) and, for each output, the flat index in x of the
/// value it took.
///
/// PyTorch's CPU max pooling (`if (val > maxval || isnan(val))`): the window is scanned
/// row-major from a best of −∞ at its first position in the image; a value is taken if
/// it is larger than the best so far, or NaN. So a NaN wins (of several, the last), ties
/// keep the first maximum, and padding is never taken.
pub fn max_pool2d_forward(g: &PoolGeometry, x: &[f32]) -> (Vec<f32>, Vec<usize>) {
    let outputs = g.n * g.c * g.oh * g.ow;
    let mut best = vec![f32::NEG_INFINITY; outputs];
    let mut argmax: Vec<Option<usize>> = vec![None; outputs];
    for_each_pool_tap(g, |plane, oy, ox, position| {
        let Some((row, col)) = position else {
            return;
        };
        let (o, i) = (
            (plane * g.oh + oy) * g.ow + ox,
            (plane * g.h + row) * g.w + col,
        );
        // The best so far starts as −∞ at the window's first position in the image.
        if argmax[o].is_none() {
            argmax[o] = Some(i);
        }
        if x[i] > best[o] || x[i].is_nan() {
            (best[o], argmax[o]) = (x[i], Some(i));
        }
    });
    let argmax = argmax
        .into_iter()
        .map(|a| a.expect("every pooling window holds an input position"))
        .collect();
    (best, argmax)
}

/// Backward of [`max_pool2d_forward`]: `y = x[argmax]`, so `dx[argmax] += dy`.
/// dy: (N, C, OH, OW) → dx: (N, C, H, W).
pub fn max_pool2d_backward(g: &PoolGeometry, argmax: &[usize], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0; g.n * g.c * g.h * g.w];
    for (&i, &d) in argmax.iter().zip(dy) {
        dx[i] += d;
    }
    dx
}

/// The number each window's sum is divided by, (N, C, OH, OW) → one per output position
/// (the same for every plane), counted tap by tap: PyTorch's `divide_factor` counts the
/// taps inside the padded image `[−P, len + P)` when padding counts
/// (`count_include_pad`), else the taps inside the image.
fn avg_pool2d_divisors(g: &PoolGeometry) -> Vec<f32> {
    let mut count = vec![0usize; g.oh * g.ow];
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            for i in 0..g.kernel.0 {
                for j in 0..g.kernel.1 {
                    // Positions in padded coordinates: the padded image is 0..len + 2P.
                    let (row, col) = (oy * g.stride.0 + i, ox * g.stride.1 + j);
                    let (ph, pw) = g.padding;
                    let counted = if g.count_include_pad {
                        row < g.h + 2 * ph && col < g.w + 2 * pw
                    } else {
                        (ph..ph + g.h).contains(&row) && (pw..pw + g.w).contains(&col)
                    };
                    count[oy * g.ow + ox] += usize::from(counted);
                }
            }
        }
    }
    count.into_iter().map(|c| c as f32).collect()
}

/// x: (N, C, H, W) → y: (N, C, OH, OW), `y = Σ_{window ∩ image} x / divisor`, the divisor
/// as PyTorch's `nn.AvgPool2d` counts it (see `avg_pool2d_divisors`).
pub fn avg_pool2d_forward(g: &PoolGeometry, x: &[f32]) -> Vec<f32> {
    let divisors = avg_pool2d_divisors(g);
    let mut sum = vec![0.0f32; g.n * g.c * g.oh * g.ow];
    for_each_pool_tap(g, |plane, oy, ox, position| {
        if let Some((row, col)) = position {
            sum[(plane * g.oh + oy) * g.ow + ox] += x[(plane * g.h + row) * g.w + col];
        }
    });
    sum.iter()
        .enumerate()
        .map(|(o, s)| s / divisors[o % (g.oh * g.ow)])
        .collect()
}

/// Backward of [`avg_pool2d_forward`]: every input of a window has `∂y/∂x = 1/divisor`,
/// so `dx += dy/divisor` at each of them. dy: (N, C, OH, OW) → dx: (N, C, H, W).
pub fn avg_pool2d_backward(g: &PoolGeometry, dy: &[f32]) -> Vec<f32> {
    let divisors = avg_pool2d_divisors(g);
    let mut dx = vec![0.0; g.n * g.c * g.h * g.w];
    for_each_pool_tap(g, |plane, oy, ox, position| {
        if let Some((row, col)) = position {
            let o = oy * g.ow + ox;
            dx[(plane * g.h + row) * g.w + col] += dy[plane * g.oh * g.ow + o] / divisors[o];
        }
    });
    dx
}
