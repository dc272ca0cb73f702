//! The convolution kernels the layer calls. (Fast path: to be lowered to GEMM; for now
//! the reference loops.)

use super::{reference, ConvGeometry};

/// Scratch memory reused across calls.
#[derive(Default)]
pub struct Workspace {}

/// x: (N, IC, H, W), w: (OC, IC/groups, KH, KW), b: (OC,) → y: (N, OC, OH, OW) (overwritten)
pub fn forward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    _ws: &mut Workspace,
) {
    y.copy_from_slice(&reference::conv2d_forward(g, x, w, b));
}

/// dy: (N, OC, OH, OW) → dx (overwritten); dw and db are added into.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    _ws: &mut Workspace,
) {
    let (rdx, rdw, rdb) = reference::conv2d_backward(g, x, w, dy);
    dx.copy_from_slice(&rdx);
    dw.iter_mut().zip(&rdw).for_each(|(a, b)| *a += b);
    if let Some(db) = db {
        db.iter_mut().zip(&rdb).for_each(|(a, b)| *a += b);
    }
}
