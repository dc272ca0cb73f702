//! Losses on a network's output: softmax cross-entropy on logits and mean squared error.
//! Each returns the mean loss and, in the same call, its gradient with respect to the
//! network's output — the `dy` that starts the backward pass.

use crate::error::{Error, Result};
use crate::tensor::{shape_str, Tensor};

/// `log Σ_k exp(x_k)`, computed as `m + log Σ_k exp(x_k − m)` with `m = max_k x_k` so that
/// no exponential overflows (the largest term is `exp(0) = 1`). Accumulates in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let m = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
    m + sum.ln()
}

/// Row-wise softmax, `p[n,k] = exp(x[n,k]) / Σ_j exp(x[n,j])`, computed stably as
/// `exp(x[n,k] − logsumexp(x[n,:]))`.
///
/// logits: (N, K) -> probabilities: (N, K), each row summing to 1.
pub fn softmax(logits: &Tensor) -> Result<Tensor> {
    let (_, k) = expect_logits("softmax", logits)?;
    let mut p = Tensor::zeros(logits.shape());
    for (row, prow) in logits
        .data()
        .chunks_exact(k)
        .zip(p.data_mut().chunks_exact_mut(k))
    {
        let lse = log_sum_exp(row);
        for (p, &x) in prow.iter_mut().zip(row) {
            *p = (x as f64 - lse).exp() as f32;
        }
    }
    Ok(p)
}

/// Softmax cross-entropy of logits against class indices, averaged over the batch — what
/// PyTorch's `F.cross_entropy(logits, targets, label_smoothing=ε)` computes (reduction
/// `"mean"`, no class weights). Returns `(loss, dlogits)`.
///
/// logits: (N, K), targets: N class indices in `0..K` -> loss: scalar, dlogits: (N, K)
///
/// With `p = softmax(x)` and PyTorch's smoothed target distribution
/// `q = (1 − ε)·onehot(t) + ε/K` (ε = 0 gives the plain one-hot target):
/// - `loss = (1/N) Σ_n Σ_k q[n,k]·(−log p[n,k])`, where
///   `−log p[n,k] = logsumexp(x[n,:]) − x[n,k]`, so a row's loss is
///   `logsumexp(x[n,:]) − (1 − ε)·x[n,t] − (ε/K)·Σ_k x[n,k]`;
/// - `dlogits[n,k] = (p[n,k] − q[n,k]) / N` (softmax and cross-entropy differentiated
///   together: the famous "prediction minus target").
///
/// The loss is accumulated in f64. Errors: logits not 2-D, a target count that is not N,
/// a target outside `0..K`, ε outside `[0, 1]`.
pub fn cross_entropy(
    logits: &Tensor,
    targets: &[usize],
    label_smoothing: f32,
) -> Result<(f32, Tensor)> {
    const NAME: &str = "cross_entropy";
    let (n, k) = expect_logits(NAME, logits)?;
    expect_targets(NAME, logits, targets)?;
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::config(
            NAME,
            format!("label smoothing must be in [0, 1] (as in PyTorch), got {label_smoothing}"),
        ));
    }
    let eps = label_smoothing as f64;
    let off_target = eps / k as f64; // q[n,k] for k ≠ t
    let on_target = 1.0 - eps + off_target; // q[n,t]
    let inv_n = 1.0 / n as f64;

    let mut dlogits = Tensor::zeros(&[n, k]);
    let mut total = 0.0f64;
    for ((row, drow), &t) in logits
        .data()
        .chunks_exact(k)
        .zip(dlogits.data_mut().chunks_exact_mut(k))
        .zip(targets)
    {
        let lse = log_sum_exp(row);
        let sum: f64 = row.iter().map(|&x| x as f64).sum();
        total += lse - (1.0 - eps) * row[t] as f64 - off_target * sum;
        for (j, (d, &x)) in drow.iter_mut().zip(row).enumerate() {
            let p = (x as f64 - lse).exp();
            let q = if j == t { on_target } else { off_target };
            *d = ((p - q) * inv_n) as f32;
        }
    }
    Ok(((total * inv_n) as f32, dlogits))
}

/// Mean squared error over all elements, as PyTorch's `F.mse_loss` (reduction `"mean"`).
/// Returns `(loss, dprediction)`.
///
/// prediction: any shape, target: the same shape -> loss: scalar, dprediction: prediction's shape
///
/// With M elements: `loss = (1/M) Σ_i (p_i − t_i)²` and `dprediction_i = 2·(p_i − t_i)/M`.
pub fn mse_loss(prediction: &Tensor, target: &Tensor) -> Result<(f32, Tensor)> {
    const NAME: &str = "mse_loss";
    if prediction.shape() != target.shape() {
        return Err(
            Error::shape(NAME, shape_str(target.shape()), prediction.shape())
                .with_hint("the prediction must have the target's shape"),
        );
    }
    if prediction.is_empty() {
        return Err(Error::shape(
            NAME,
            "at least one element",
            prediction.shape(),
        ));
    }
    let m = prediction.len() as f64;
    let mut dprediction = Tensor::zeros(prediction.shape());
    let mut total = 0.0f64;
    for ((d, &p), &t) in dprediction
        .data_mut()
        .iter_mut()
        .zip(prediction.data())
        .zip(target.data())
    {
        let diff = p as f64 - t as f64;
        total += diff * diff;
        *d = (2.0 * diff / m) as f32;
    }
    Ok(((total / m) as f32, dprediction))
}

/// How many rows of `logits` have their largest value at the target class (ties go to the
/// lowest index). Divide by N for the accuracy.
///
/// logits: (N, K), targets: N class indices in `0..K` -> number of correct predictions
pub fn correct_count(logits: &Tensor, targets: &[usize]) -> Result<usize> {
    const NAME: &str = "correct_count";
    expect_logits(NAME, logits)?;
    expect_targets(NAME, logits, targets)?;
    Ok(logits
        .argmax_rows()?
        .iter()
        .zip(targets)
        .filter(|(predicted, target)| predicted == target)
        .count())
}

/// Checks that `logits` is a non-empty `(N, K)` tensor and returns `(N, K)`.
fn expect_logits(name: &str, logits: &Tensor) -> Result<(usize, usize)> {
    let shape = logits.shape();
    if shape.len() == 2 && shape[0] > 0 && shape[1] > 0 {
        return Ok((shape[0], shape[1]));
    }
    let err = Error::shape(name, "logits (N, K) with N, K ≥ 1", shape);
    Err(if shape.len() == 4 {
        err.with_hint(
            "an image tensor reached the loss: does the network end with Flatten and Linear?",
        )
    } else {
        err
    })
}

/// Checks that there is one target per row of `logits` and that each is a class in `0..K`.
fn expect_targets(name: &str, logits: &Tensor, targets: &[usize]) -> Result<()> {
    let (n, k) = logits.dims2()?;
    if targets.len() != n {
        return Err(Error::config(
            name,
            format!(
                "{} targets for logits {}: give one class index per row",
                targets.len(),
                shape_str(logits.shape())
            ),
        ));
    }
    if let Some((i, &t)) = targets.iter().enumerate().find(|(_, &t)| t >= k) {
        return Err(Error::config(
            name,
            format!(
                "target {t} (row {i}) is out of range for K = {k} classes (labels must be 0..={}); \
                 does the last layer have as many outputs as the data set has classes?",
                k - 1
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::assert_close;

    fn tensor(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_vec(shape, data.to_vec()).unwrap()
    }

    #[test]
    fn cross_entropy_of_one_row_by_hand() {
        // logits [1, 2, 3], target 2: loss = log(e¹ + e² + e³) − 3.
        let e = std::f64::consts::E;
        let z = e + e * e + e * e * e;
        let (loss, dlogits) = cross_entropy(&tensor(&[1, 3], &[1.0, 2.0, 3.0]), &[2], 0.0).unwrap();
        assert_close("value", &[loss], &[z.ln() - 3.0], 0.0, 1e-6);
        // dlogits = softmax − onehot(2) = [e/z, e²/z, e³/z − 1].
        assert_close(
            "value",
            dlogits.data(),
            &[e / z, e * e / z, e * e * e / z - 1.0],
            0.0,
            1e-7,
        );
    }

    #[test]
    fn cross_entropy_averages_over_the_batch() {
        // Row 0: logits [0, 0], target 0 → log 2.  Row 1: logits [ln 3, 0], target 1:
        // softmax = [3/4, 1/4] → −log(1/4) = log 4.  Mean = (log 2 + log 4)/2 = 1.5·log 2.
        let x = tensor(&[2, 2], &[0.0, 0.0, 3f32.ln(), 0.0]);
        let (loss, dlogits) = cross_entropy(&x, &[0, 1], 0.0).unwrap();
        assert_close("value", &[loss], &[1.5 * 2f64.ln()], 0.0, 1e-6);
        // (p − onehot)/N: row 0 [0.5 − 1, 0.5]/2, row 1 [0.75, 0.25 − 1]/2.
        assert_close(
            "value",
            dlogits.data(),
            &[-0.25, 0.25, 0.375, -0.375],
            0.0,
            1e-7,
        );
    }

    #[test]
    fn label_smoothing_by_hand() {
        // logits [0, ln 3] (softmax [1/4, 3/4]), target 1, ε = 0.2, K = 2:
        // q = (1 − 0.2)·[0, 1] + 0.2/2 = [0.1, 0.9];
        // loss = 0.1·(−log 1/4) + 0.9·(−log 3/4) = 0.1·log 4 + 0.9·log(4/3).
        let x = tensor(&[1, 2], &[0.0, 3f32.ln()]);
        let (loss, dlogits) = cross_entropy(&x, &[1], 0.2).unwrap();
        let want = 0.1 * 4f64.ln() + 0.9 * (4.0f64 / 3.0).ln();
        assert_close("value", &[loss], &[want], 0.0, 1e-6);
        // dlogits = p − q = [0.25 − 0.1, 0.75 − 0.9].
        assert_close("value", dlogits.data(), &[0.15, -0.15], 0.0, 1e-7);
    }

    #[test]
    fn full_label_smoothing_targets_the_uniform_distribution() {
        // ε = 1: q = 1/K whatever the target; equal logits give p = q, loss = log K, grad 0.
        let x = tensor(&[1, 4], &[0.5; 4]);
        let (loss, dlogits) = cross_entropy(&x, &[3], 1.0).unwrap();
        assert_close("value", &[loss], &[4f64.ln()], 0.0, 1e-6);
        assert_close("value", dlogits.data(), &[0.0; 4], 0.0, 1e-7);
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let mut rng = crate::rng::Rng::new(7);
        let (n, k) = (3, 5);
        let x = Tensor::randn(&[n, k], 1.5, &mut rng);
        let targets = [4, 0, 2];
        for eps in [0.0, 0.1] {
            let (_, dlogits) = cross_entropy(&x, &targets, eps).unwrap();
            let h = 1e-2f32;
            for i in 0..n * k {
                let mut plus = x.clone();
                plus.data_mut()[i] += h;
                let mut minus = x.clone();
                minus.data_mut()[i] -= h;
                let lp = cross_entropy(&plus, &targets, eps).unwrap().0 as f64;
                let lm = cross_entropy(&minus, &targets, eps).unwrap().0 as f64;
                let numeric = (lp - lm) / (2.0 * h as f64);
                assert_close("value", &dlogits.data()[i..=i], &[numeric], 0.0, 2e-5);
            }
        }
    }

    #[test]
    fn huge_logits_stay_finite() {
        // Without subtracting the max, exp(1e4) overflows to inf and the loss is NaN.
        // Row 0: [1e4, 0, −1e4], target 0 → loss ≈ 0, softmax ≈ [1, 0, 0].
        // Row 1: [1e4, 1e4, 0], target 2 → loss ≈ log 2 + 1e4, softmax ≈ [½, ½, 0].
        let x = tensor(&[2, 3], &[1e4, 0.0, -1e4, 1e4, 1e4, 0.0]);
        let (loss, dlogits) = cross_entropy(&x, &[0, 2], 0.0).unwrap();
        assert!(loss.is_finite());
        assert_close("value", &[loss], &[(2f64.ln() + 1e4) / 2.0], 0.0, 1e-3);
        assert_close(
            "value",
            dlogits.data(),
            &[0.0, 0.0, 0.0, 0.25, 0.25, -0.5],
            0.0,
            1e-7,
        );
        let p = softmax(&x).unwrap();
        assert_close(
            "value",
            p.data(),
            &[1.0, 0.0, 0.0, 0.5, 0.5, 0.0],
            0.0,
            1e-7,
        );
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let x = tensor(&[2, 3], &[1.0, 2.0, 3.0, -5.0, 0.0, 5.0]);
        let p = softmax(&x).unwrap();
        for row in p.data().chunks(3) {
            assert!((row.iter().map(|&v| v as f64).sum::<f64>() - 1.0).abs() < 1e-6);
        }
        let e = std::f64::consts::E;
        let z = e + e * e + e * e * e;
        assert_close(
            "value",
            &p.data()[..3],
            &[e / z, e * e / z, e * e * e / z],
            0.0,
            1e-7,
        );
    }

    #[test]
    fn cross_entropy_rejects_bad_targets_and_shapes() {
        let x = Tensor::zeros(&[2, 3]);
        let err = cross_entropy(&x, &[0, 3], 0.0).unwrap_err().to_string();
        assert!(err.contains("target 3") && err.contains("K = 3"), "{err}");
        let err = cross_entropy(&x, &[0], 0.0).unwrap_err().to_string();
        assert!(err.contains("1 targets") && err.contains("(2, 3)"), "{err}");
        let err = cross_entropy(&Tensor::zeros(&[2, 3, 1, 1]), &[0, 0], 0.0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("(2, 3, 1, 1)") && err.contains("Flatten"),
            "{err}"
        );
        assert!(cross_entropy(&Tensor::zeros(&[3]), &[0], 0.0).is_err());
        assert!(cross_entropy(&x, &[0, 0], 1.5).is_err());
        assert!(cross_entropy(&x, &[0, 0], -0.1).is_err());
        assert!(cross_entropy(&x, &[0, 0], f32::NAN).is_err());
    }

    #[test]
    fn mse_by_hand_and_by_finite_differences() {
        // p = [1, 2, 3, 4], t = [0, 2, 5, 4]: diffs [1, 0, −2, 0] → loss = (1 + 4)/4 = 1.25,
        // dp = 2·diff/4 = [0.5, 0, −1, 0].
        let p = tensor(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let t = tensor(&[2, 2], &[0.0, 2.0, 5.0, 4.0]);
        let (loss, dp) = mse_loss(&p, &t).unwrap();
        assert_close("value", &[loss], &[1.25], 0.0, 1e-7);
        assert_close("value", dp.data(), &[0.5, 0.0, -1.0, 0.0], 0.0, 1e-7);
        let h = 1e-2f32;
        for i in 0..4 {
            let mut plus = p.clone();
            plus.data_mut()[i] += h;
            let mut minus = p.clone();
            minus.data_mut()[i] -= h;
            let numeric = (mse_loss(&plus, &t).unwrap().0 as f64
                - mse_loss(&minus, &t).unwrap().0 as f64)
                / (2.0 * h as f64);
            assert_close("value", &dp.data()[i..=i], &[numeric], 0.0, 1e-5);
        }
    }

    #[test]
    fn mse_rejects_mismatched_shapes() {
        let err = mse_loss(&Tensor::zeros(&[2, 3]), &Tensor::zeros(&[3, 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("(3, 2)") && err.contains("(2, 3)"), "{err}");
        assert!(mse_loss(&Tensor::zeros(&[0]), &Tensor::zeros(&[0])).is_err());
    }

    #[test]
    fn correct_count_compares_argmax_with_targets() {
        let x = tensor(&[3, 3], &[0.1, 0.7, 0.2, 0.9, 0.0, 0.1, 0.3, 0.3, 0.4]);
        // argmax per row: 1, 0, 2.
        assert_eq!(correct_count(&x, &[1, 0, 0]).unwrap(), 2);
        assert_eq!(correct_count(&x, &[1, 0, 2]).unwrap(), 3);
        assert!(correct_count(&x, &[1, 0, 3]).is_err());
        assert!(correct_count(&x, &[1, 0]).is_err());
    }
}
