//! The formulas of convolution geometry, each written once and used by the layers, by
//! `summary` and by the tests: output size, parameter count and receptive field, for
//! convolutions and for transposed convolutions.

/// Output length along one axis of a sliding window (convolution or pooling):
///
/// `O = ⌊(W + pad_lo + pad_hi − D·(K − 1) − 1) / S⌋ + 1`
///
/// With symmetric padding `p` and dilation 1 this is the notes' `O = ⌊(W − K + 2p)/S⌋ + 1`.
/// Returns `None` when the (padded) input is smaller than the (dilated) window.
pub fn conv_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_lo: usize,
    pad_hi: usize,
    dilation: usize,
) -> Option<usize> {
    pool_output_len(input, kernel, stride, pad_lo, pad_hi, dilation, false)
}

/// Output length along one axis of a pooling window, PyTorch's `pooling_output_shape`.
/// Without `ceil_mode` it is [`conv_output_len`]'s; with it the division rounds up,
///
/// `O = ⌈(W + pad_lo + pad_hi − D·(K − 1) − 1) / S⌉ + 1`,
///
/// so that a last, partial window covers the leftover positions — but that window must
/// start inside the input or the left padding: when `(O − 1)·S ≥ W + pad_lo` it would
/// start in the right padding and is dropped (O is one less). In ceil mode a window may
/// hang past the padded input, and even be larger than it. Returns `None` when no window
/// fits (O < 1), and also when the sizes are too large to compute with (beyond 2⁶³).
pub fn pool_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_lo: usize,
    pad_hi: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    assert!(
        stride > 0 && kernel > 0 && dilation > 0,
        "kernel, stride and dilation must be positive"
    );
    // In i128 every sum and product of two sizes fits; sizes that do not fit an i64 are
    // refused rather than wrapped.
    let size = |v: usize| i64::try_from(v).ok().map(i128::from);
    let (input, pad_lo, pad_hi) = (size(input)?, size(pad_lo)?, size(pad_hi)?);
    let (kernel, stride, dilation) = (size(kernel)?, size(stride)?, size(dilation)?);
    let span = dilation * (kernel - 1) + 1;
    // The room the window has to move in, negative when it does not fit (PyTorch divides
    // rounding towards −∞, as div_euclid does for a positive stride).
    let room = input + pad_lo + pad_hi - span;
    let rounding = if ceil_mode { stride - 1 } else { 0 };
    let mut len = (room + rounding).div_euclid(stride) + 1;
    if ceil_mode && len >= 1 && (len - 1) * stride >= input + pad_lo {
        len -= 1;
    }
    (len >= 1).then(|| usize::try_from(len).ok()).flatten()
}

/// Output length along one axis of a transposed convolution (PyTorch's `ConvTranspose2d`):
///
/// `O = (I − 1)·S − 2·P + D·(K − 1) + OP + 1`
///
/// the input length of the convolution (same kernel, stride, padding and dilation) whose
/// output has length I, with OP (the output padding) deciding between the lengths that
/// convolution rounds down to the same I. Returns `None` for an empty input, when the
/// padding crops everything (O < 1), and when the sizes are too large to compute with
/// (beyond 2⁶³).
pub fn conv_transpose_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    output_padding: usize,
) -> Option<usize> {
    assert!(
        stride > 0 && kernel > 0 && dilation > 0,
        "kernel, stride and dilation must be positive"
    );
    // As in pool_output_len: every sum and product of two sizes fits an i128.
    let size = |v: usize| i64::try_from(v).ok().map(i128::from);
    let (input, kernel, stride) = (size(input)?, size(kernel)?, size(stride)?);
    let (pad, dilation, output_padding) = (size(pad)?, size(dilation)?, size(output_padding)?);
    if input == 0 {
        return None;
    }
    let len = (input - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1;
    (len >= 1)
        .then(|| {
            i64::try_from(len)
                .ok()
                .and_then(|l| usize::try_from(l).ok())
        })
        .flatten()
}

/// Learnable parameters of a 2-D convolution: `(KH·KW·IC/groups + bias)·OC`, or `None`
/// when the count does not fit a `usize`.
///
/// The notes' example, a 3×3 convolution from 3 to 64 channels, has (27 + 1)·64 = 1,792.
pub fn conv_param_count(
    in_channels: usize,
    out_channels: usize,
    kernel: (usize, usize),
    groups: usize,
    bias: bool,
) -> Option<usize> {
    kernel
        .0
        .checked_mul(kernel.1)?
        .checked_mul(in_channels / groups.max(1))?
        .checked_add(usize::from(bias))?
        .checked_mul(out_channels)
}

/// Learnable parameters of a 2-D transposed convolution, whose weight is
/// (IC, OC/groups, KH, KW): `KH·KW·IC·OC/groups + bias·OC`, or `None` when the count does
/// not fit a `usize`.
pub fn conv_transpose_param_count(
    in_channels: usize,
    out_channels: usize,
    kernel: (usize, usize),
    groups: usize,
    bias: bool,
) -> Option<usize> {
    kernel
        .0
        .checked_mul(kernel.1)?
        .checked_mul(in_channels)?
        .checked_mul(out_channels / groups.max(1))?
        .checked_add(if bias { out_channels } else { 0 })
}

/// Receptive field of one unit, along one axis, and the distance (in input pixels)
/// between neighbouring units: the "jump".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceptiveField {
    /// Input pixels that can influence one unit.
    pub size: usize,
    /// Input pixels between two neighbouring units (product of the strides so far).
    pub jump: usize,
}

impl ReceptiveField {
    /// A single input pixel sees itself: size 1, jump 1.
    pub const INPUT: ReceptiveField = ReceptiveField { size: 1, jump: 1 };

    /// The recurrence `RF_l = RF_{l−1} + (K_l − 1)·∏_{i<l} S_i`, with a dilated kernel
    /// counting as `D·(K − 1) + 1` wide; the jump is multiplied by the stride.
    /// Sizes beyond `usize` saturate at its largest value.
    pub fn through(self, kernel: usize, stride: usize, dilation: usize) -> ReceptiveField {
        let reach = dilation
            .saturating_mul(kernel.saturating_sub(1))
            .saturating_mul(self.jump);
        ReceptiveField {
            size: self.size.saturating_add(reach),
            jump: self.jump.saturating_mul(stride),
        }
    }

    /// Through a layer that multiplies the resolution by `factor` (a transposed
    /// convolution of stride `factor`, an upsampling), where one output unit depends on at
    /// most `span` consecutive units of the layer's input: the size grows by
    /// `(span − 1)·jump`, and the jump is divided by the factor.
    ///
    /// Input pixels come whole: a jump that the factor does not divide (1 pixel upsampled
    /// ×2 is half a pixel) is rounded up, so the sizes that follow are upper bounds.
    pub fn upsampled(self, span: usize, factor: usize) -> ReceptiveField {
        let reach = span.saturating_sub(1).saturating_mul(self.jump);
        ReceptiveField {
            size: self.size.saturating_add(reach),
            jump: self.jump.div_ceil(factor.max(1)),
        }
    }

    /// Through a transposed convolution: output `o` receives input `i` through tap `t`
    /// when `i·S + t·D = o + P`, so the inputs it sees lie within `(K − 1)·D/S` of each
    /// other, a span of at most `⌊(K − 1)·D/S⌋ + 1` input units; the jump is divided by
    /// the stride ([`ReceptiveField::upsampled`]).
    pub fn through_transposed(
        self,
        kernel: usize,
        stride: usize,
        dilation: usize,
    ) -> ReceptiveField {
        let reach = kernel.saturating_sub(1).saturating_mul(dilation) / stride.max(1);
        self.upsampled(reach.saturating_add(1), stride)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_len_matches_the_notes() {
        // §2.2: W = 32, k = 3, p = 1, s = 1 keeps 32 ("same" padding).
        assert_eq!(conv_output_len(32, 3, 1, 1, 1, 1), Some(32));
        // §2.2 worked example: W = 3, k = 2, valid → 2.
        assert_eq!(conv_output_len(3, 2, 1, 0, 0, 1), Some(2));
        // Stride 2 halves; the floor drops the leftover column.
        assert_eq!(conv_output_len(7, 3, 2, 0, 0, 1), Some(3));
        assert_eq!(conv_output_len(2, 3, 1, 0, 0, 1), None);
        // Dilation 2 makes a 3-wide kernel span 5.
        assert_eq!(conv_output_len(9, 3, 1, 0, 0, 2), Some(5));
    }

    #[test]
    fn ceil_mode_rounds_up_but_never_starts_a_window_in_the_right_padding() {
        // 5 positions, k = 2, s = 2: floor gives 2 windows and drops the last position,
        // ceil gives a third window holding it alone.
        assert_eq!(pool_output_len(5, 2, 2, 0, 0, 1, false), Some(2));
        assert_eq!(pool_output_len(5, 2, 2, 0, 0, 1, true), Some(3));
        // When the division is exact both agree.
        assert_eq!(pool_output_len(6, 2, 2, 0, 0, 1, true), Some(3));
        // 6 positions, k = 3, s = 2, pad 1: ⌈5/2⌉ + 1 = 4; the 4th window starts at 6 − 1 = 5,
        // inside the input.
        assert_eq!(pool_output_len(6, 3, 2, 1, 1, 1, false), Some(3));
        assert_eq!(pool_output_len(6, 3, 2, 1, 1, 1, true), Some(4));
        // 5 positions, k = 2, s = 2, pad 1: ⌈5/2⌉ + 1 = 4 would start the 4th window at
        // 6 = W + pad, in the right padding: PyTorch drops it.
        assert_eq!(pool_output_len(5, 2, 2, 1, 1, 1, true), Some(3));
        // A window larger than the input fits once in ceil mode (PyTorch gives 1×1).
        assert_eq!(pool_output_len(2, 3, 2, 0, 0, 1, true), Some(1));
        assert_eq!(pool_output_len(2, 3, 2, 0, 0, 1, false), None);
        assert_eq!(pool_output_len(1, 3, 1, 0, 0, 1, true), None);
    }

    #[test]
    fn transposed_output_len_inverts_the_convolution() {
        // PyTorch: ConvTranspose2d(k=3, s=2, p=1, output_padding=1) doubles 4 to 8.
        assert_eq!(conv_transpose_output_len(4, 3, 2, 1, 1, 1), Some(8));
        assert_eq!(conv_transpose_output_len(4, 3, 2, 1, 1, 0), Some(7));
        // Both 7 and 8 convolve back to 4.
        assert_eq!(conv_output_len(7, 3, 2, 1, 1, 1), Some(4));
        assert_eq!(conv_output_len(8, 3, 2, 1, 1, 1), Some(4));
        // k=4, s=2, p=1: the DCGAN doubling; dilation 2 widens a 3-tap kernel to 5.
        assert_eq!(conv_transpose_output_len(5, 4, 2, 1, 1, 0), Some(10));
        assert_eq!(conv_transpose_output_len(5, 3, 1, 0, 2, 0), Some(9));
        // Padding that crops everything, an empty input, sizes beyond the arithmetic.
        assert_eq!(conv_transpose_output_len(1, 1, 1, 1, 1, 0), None);
        assert_eq!(conv_transpose_output_len(0, 3, 1, 0, 1, 0), None);
        assert_eq!(conv_transpose_output_len(usize::MAX, 3, 2, 0, 1, 0), None);
        assert_eq!(
            conv_transpose_output_len(1 << 40, 3, 1 << 40, 0, 1, 0),
            None
        );
    }

    #[test]
    fn transposed_parameter_count() {
        // Weight (8, 4/2, 3, 3) and a bias of 4.
        assert_eq!(conv_transpose_param_count(8, 4, (3, 3), 2, true), Some(148));
        assert_eq!(
            conv_transpose_param_count(8, 4, (3, 3), 2, false),
            Some(144)
        );
        assert_eq!(
            conv_transpose_param_count(usize::MAX, 2, (1, 1), 1, false),
            None
        );
    }

    #[test]
    fn upsampling_divides_the_jump_and_rounds_it_up() {
        let after_pools = ReceptiveField { size: 6, jump: 4 };
        // Nearest ×2: one input unit per output.
        assert_eq!(
            after_pools.upsampled(1, 2),
            ReceptiveField { size: 6, jump: 2 }
        );
        // A 3×3 transposed convolution with stride 2 sees at most two input units.
        assert_eq!(
            after_pools.through_transposed(3, 2, 1),
            ReceptiveField { size: 10, jump: 2 }
        );
        // k = 2, s = 2: exactly one; k = 4, s = 2: two; dilation 3 with k = 3, s = 2: four.
        assert_eq!(after_pools.through_transposed(2, 2, 1).size, 6);
        assert_eq!(after_pools.through_transposed(4, 2, 1).size, 10);
        assert_eq!(after_pools.through_transposed(3, 2, 3).size, 18);
        // Half a pixel counts as one.
        assert_eq!(ReceptiveField::INPUT.upsampled(2, 2).jump, 1);
    }

    #[test]
    fn parameter_count_matches_the_notes() {
        assert_eq!(conv_param_count(3, 64, (3, 3), 1, true), Some(1_792));
    }

    #[test]
    fn sizes_beyond_the_arithmetic_are_refused_not_wrapped() {
        let huge = usize::MAX;
        assert_eq!(conv_output_len(28, 3, 1, huge, huge, 1), None);
        assert_eq!(conv_output_len(28, 3, 1, 1, 1, huge), None);
        assert_eq!(conv_output_len(huge, 3, 1, 0, 0, 1), None);
        assert_eq!(pool_output_len(28, huge, 1, 0, 0, 1, true), None);
        assert_eq!(conv_param_count(huge, huge, (3, 3), 1, true), None);
        let rf = ReceptiveField::INPUT
            .through(huge, huge, huge)
            .through(3, 2, 1);
        assert_eq!((rf.size, rf.jump), (usize::MAX, usize::MAX));
    }

    #[test]
    fn receptive_field_of_three_stacked_3x3_is_7() {
        let mut rf = ReceptiveField::INPUT;
        let sizes: Vec<usize> = (0..3)
            .map(|_| {
                rf = rf.through(3, 1, 1);
                rf.size
            })
            .collect();
        assert_eq!(sizes, vec![3, 5, 7]);
        // After a stride-2 pool, each further 3×3 layer adds 2·2 = 4.
        let pooled = rf.through(2, 2, 1);
        assert_eq!(pooled, ReceptiveField { size: 8, jump: 2 });
        assert_eq!(pooled.through(3, 1, 1).size, 12);
    }
}
