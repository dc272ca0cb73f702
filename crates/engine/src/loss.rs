//! Losses on a network's output: softmax cross-entropy on logits (with PyTorch's options
//! in [`CrossEntropy`]) and mean squared error. Each returns the loss (by default the
//! mean) and, in the same call, its gradient with respect to the network's output — the
//! `dy` that starts the backward pass.

use crate::error::{Error, Result};
use crate::tensor::{numel, shape_str, Tensor};

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
/// `"mean"`, no class weights, no ignored targets). Returns `(loss, dlogits)`;
/// [`CrossEntropy`] has the other options.
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
    let (loss, dlogits) = CrossEntropy::new()
        .label_smoothing(label_smoothing)
        .loss(logits, targets)?;
    Ok((loss.data()[0], dlogits))
}

/// How [`CrossEntropy`] combines the losses of the samples, PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// `"mean"` (the default): the sum of the losses divided by the sum of the class
    /// weights of the targets that are not ignored — N when there are no weights and no
    /// ignored targets.
    #[default]
    Mean,
    /// `"sum"`: the sum of the losses.
    Sum,
    /// `"none"`: one loss per sample, (N,), 0 for an ignored target.
    None,
}

/// Softmax cross-entropy with PyTorch's options: `F.cross_entropy(logits, targets,
/// weight=…, ignore_index=…, reduction=…, label_smoothing=…)` for class-index targets.
/// Start from [`CrossEntropy::new`] (PyTorch's defaults) and adjust:
///
/// ```
/// use ocellus::loss::{CrossEntropy, Reduction};
/// use ocellus::Tensor;
///
/// let logits = Tensor::from_vec(&[3, 2], vec![0.5, -1.0, 2.0, 0.0, 0.0, 1.0]).unwrap();
/// // Class 1 counts three times as much; targets equal to 9 are padding.
/// let ce = CrossEntropy::new().weight(&[1.0, 3.0]).ignore_index(9);
/// let (loss, dlogits) = ce.loss(&logits, &[0, 1, 9]).unwrap();
/// assert_eq!(loss.shape(), &[] as &[usize]);
/// assert_eq!(&dlogits.data()[4..], &[0.0, 0.0]); // the ignored row
/// let per_sample = ce.reduction(Reduction::None);
/// let (losses, _) = per_sample.loss(&logits, &[0, 1, 9]).unwrap();
/// assert_eq!(losses.shape(), &[3]);
/// ```
///
/// With `p = softmax(x)`, class weights `w` (all 1 without), `W = Σ_k w[k]`, label
/// smoothing ε and K classes, the loss of a sample with target `t` is PyTorch's
///
/// `l = (1 − ε)·w[t]·(−log p[t]) + (ε/K)·Σ_k w[k]·(−log p[k])`
///
/// — the smoothing term weights each class by its own weight, as PyTorch does — and 0
/// when `t` is the ignored index. The mean divides the sum of the losses by
/// `D = Σ_n w[t_n]` over the targets not ignored; when every target is ignored (or all
/// their weights are 0) that is 0/0, and the mean is NaN, as in PyTorch. Differentiating,
///
/// `∂l/∂x[j] = (1 − ε)·w[t]·(p[j] − onehot(t)[j]) + (ε/K)·(W·p[j] − w[j])`,
///
/// which without weights is `p[j] − q[j]` with the smoothed target
/// `q = (1 − ε)·onehot(t) + ε/K`. The loss is accumulated in f64.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrossEntropy {
    /// How the losses of the samples are combined; the mean by default.
    pub reduction: Reduction,
    /// A weight per class, `(K,)`, finite and ≥ 0; `None` weighs every class 1.
    pub weight: Option<Vec<f32>>,
    /// Targets equal to this index add nothing to the loss, its gradient or the mean's
    /// divisor (PyTorch's `ignore_index`, whose default −100 never matches a class). It
    /// may lie outside `0..K`, e.g. a padding label.
    pub ignore_index: Option<usize>,
    /// ε in `[0, 1]`, PyTorch's `label_smoothing`; 0 by default.
    pub label_smoothing: f32,
}

impl CrossEntropy {
    /// PyTorch's defaults: mean over the batch, no class weights, no ignored index, no
    /// label smoothing.
    pub fn new() -> Self {
        CrossEntropy::default()
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets a weight per class.
    pub fn weight(mut self, weight: &[f32]) -> Self {
        self.weight = Some(weight.to_vec());
        self
    }

    /// Sets the index of targets to ignore.
    pub fn ignore_index(mut self, index: usize) -> Self {
        self.ignore_index = Some(index);
        self
    }

    /// Sets the label smoothing ε.
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Returns `(loss, dlogits)`: the loss is a 0-d tensor for [`Reduction::Mean`] and
    /// [`Reduction::Sum`], `(N,)` for [`Reduction::None`]; `dlogits` is the gradient of
    /// the sum of the loss's values (an upstream gradient of 1 on each), the `dy` that
    /// starts the backward pass.
    ///
    /// logits: (N, K), targets: N class indices in `0..K` or the ignored index ->
    /// loss: () or (N,), dlogits: (N, K)
    ///
    /// Errors: logits not 2-D, a target count that is not N, a target outside `0..K`
    /// that is not the ignored index, ε outside `[0, 1]`, a weight vector that does not
    /// hold K values or holds a negative or non-finite one.
    pub fn loss(&self, logits: &Tensor, targets: &[usize]) -> Result<(Tensor, Tensor)> {
        let ones = match self.reduction {
            Reduction::None => Tensor::full(&[targets.len()], 1.0),
            Reduction::Mean | Reduction::Sum => Tensor::full(&[], 1.0),
        };
        self.loss_with_upstream(logits, targets, &ones)
    }

    /// [`CrossEntropy::loss`] for a given upstream gradient `dloss = ∂L/∂loss`, shaped like
    /// the loss (`()` or `(N,)`): `dlogits = Σ dloss·∂loss/∂logits`. With
    /// [`Reduction::None`] each row of `dlogits` is its sample's `dloss[n]·∂l_n/∂x[n,:]`.
    pub fn loss_with_upstream(
        &self,
        logits: &Tensor,
        targets: &[usize],
        dloss: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        const NAME: &str = "cross_entropy";
        let (n, k) = self.check(NAME, logits, targets)?;
        let loss_shape: &[usize] = match self.reduction {
            Reduction::None => &[n],
            Reduction::Mean | Reduction::Sum => &[],
        };
        if dloss.len() != numel(loss_shape) {
            return Err(Error::shape(NAME, shape_str(loss_shape), dloss.shape())
                .with_hint("the upstream gradient has the shape of the loss"));
        }
        let eps = self.label_smoothing as f64;
        let smoothing = eps / k as f64;
        let class_weight = |c: usize| self.weight.as_ref().map_or(1.0, |w| w[c] as f64);
        // W = Σ_k w[k]
        let weight_sum: f64 = (0..k).map(class_weight).sum();
        let counted = |t: usize| Some(t) != self.ignore_index;
        // D = Σ_n w[t_n] over the targets not ignored: the mean's divisor.
        let divisor: f64 = targets
            .iter()
            .filter(|&&t| counted(t))
            .map(|&t| class_weight(t))
            .sum();

        let mut dlogits = Tensor::zeros(&[n, k]);
        let mut losses = vec![0.0f32; n];
        // Σ_n w[t]·(−log p[t]) and Σ_n Σ_k w[k]·(−log p[k]), the two terms PyTorch
        // reduces separately.
        let (mut nll_sum, mut smooth_sum) = (0.0f64, 0.0f64);
        let rows = logits
            .data()
            .chunks_exact(k)
            .zip(dlogits.data_mut().chunks_exact_mut(k));
        for (i, ((row, drow), &t)) in rows.zip(targets).enumerate() {
            if !counted(t) {
                continue; // loss 0, gradient 0
            }
            // −log p[k] = logsumexp(x) − x[k]
            let lse = log_sum_exp(row);
            let w_t = class_weight(t);
            let nll = w_t * (lse - row[t] as f64);
            let smooth: f64 = (row.iter().enumerate())
                .map(|(c, &x)| class_weight(c) * (lse - x as f64))
                .sum();
            nll_sum += nll;
            smooth_sum += smooth;
            losses[i] = ((1.0 - eps) * nll + smoothing * smooth) as f32;
            // ∂L/∂l_n
            let upstream = match self.reduction {
                Reduction::Mean => dloss.data()[0] as f64 / divisor,
                Reduction::Sum => dloss.data()[0] as f64,
                Reduction::None => dloss.data()[i] as f64,
            };
            for (j, (d, &x)) in drow.iter_mut().zip(row).enumerate() {
                let p = (x as f64 - lse).exp();
                let onehot = if j == t { 1.0 } else { 0.0 };
                let dl = (1.0 - eps) * w_t * (p - onehot)
                    + smoothing * (weight_sum * p - class_weight(j));
                *d = (upstream * dl) as f32;
            }
        }
        let loss = match self.reduction {
            Reduction::Mean => {
                let mean = (1.0 - eps) * (nll_sum / divisor) + smoothing * (smooth_sum / divisor);
                Tensor::full(&[], mean as f32)
            }
            Reduction::Sum => {
                Tensor::full(&[], ((1.0 - eps) * nll_sum + smoothing * smooth_sum) as f32)
            }
            Reduction::None => Tensor::from_vec(&[n], losses)?,
        };
        Ok((loss, dlogits))
    }

    /// Checks the logits, the targets and the settings; returns `(N, K)`.
    fn check(&self, name: &str, logits: &Tensor, targets: &[usize]) -> Result<(usize, usize)> {
        let (n, k) = expect_logits(name, logits)?;
        expect_targets(name, logits, targets, self.ignore_index)?;
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::config(
                name,
                format!(
                    "label smoothing must be in [0, 1] (as in PyTorch), got {}",
                    self.label_smoothing
                ),
            ));
        }
        if let Some(weight) = &self.weight {
            if weight.len() != k {
                return Err(Error::config(
                    name,
                    format!(
                        "{} class weights for K = {k} classes (logits {}): give one weight per class",
                        weight.len(),
                        shape_str(logits.shape())
                    ),
                ));
            }
            if let Some((c, w)) = weight
                .iter()
                .enumerate()
                .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
            {
                return Err(Error::config(
                    name,
                    format!("class weight {c} is {w}: weights must be finite and ≥ 0"),
                ));
            }
        }
        Ok((n, k))
    }
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
    expect_targets(NAME, logits, targets, None)?;
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

/// Checks that there is one target per row of `logits` and that each is a class in `0..K`
/// or the `ignored` index.
fn expect_targets(
    name: &str,
    logits: &Tensor,
    targets: &[usize],
    ignored: Option<usize>,
) -> Result<()> {
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
    let out_of_range = |t: usize| t >= k && Some(t) != ignored;
    if let Some((i, &t)) = targets.iter().enumerate().find(|(_, &t)| out_of_range(t)) {
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

    /// `L = Σ_n g_n·loss_n` in f64 for reduction None (`g` the upstream gradient), the
    /// loss itself otherwise.
    fn total(ce: &CrossEntropy, x: &Tensor, targets: &[usize], g: &Tensor) -> f64 {
        let (loss, _) = ce.loss(x, targets).unwrap();
        match ce.reduction {
            Reduction::None => loss
                .data()
                .iter()
                .zip(g.data())
                .map(|(l, g)| *l as f64 * *g as f64)
                .sum(),
            Reduction::Mean | Reduction::Sum => loss.data()[0] as f64,
        }
    }

    #[test]
    fn cross_entropy_options_gradient_matches_finite_differences() {
        let weight = [0.5, 2.0, 1.0, 1.5, 0.25];
        let base = CrossEntropy::new();
        let cases = [
            base.clone().reduction(Reduction::Sum),
            base.clone().reduction(Reduction::None),
            base.clone().weight(&weight),
            base.clone().weight(&weight).reduction(Reduction::Sum),
            base.clone().weight(&weight).reduction(Reduction::None),
            base.clone().ignore_index(2),
            base.clone().ignore_index(7).weight(&weight),
            base.clone().label_smoothing(0.2).reduction(Reduction::Sum),
            base.clone().label_smoothing(0.2).weight(&weight),
            base.clone()
                .label_smoothing(0.1)
                .weight(&weight)
                .ignore_index(0),
            base.clone()
                .label_smoothing(0.3)
                .weight(&weight)
                .reduction(Reduction::None),
        ];
        let mut rng = crate::rng::Rng::new(11);
        let (n, k) = (4, 5);
        // Targets include 2 and 7 (ignored in some cases) and 0.
        let targets = [2, 0, 4, 2];
        let targets_with_padding = [7, 0, 4, 2];
        for (c, ce) in cases.iter().enumerate() {
            let x = Tensor::randn(&[n, k], 1.0, &mut rng);
            let targets = if ce.ignore_index == Some(7) {
                &targets_with_padding
            } else {
                &targets
            };
            // A random upstream gradient for per-sample losses, L = Σ g·loss.
            let g = match ce.reduction {
                Reduction::None => Tensor::randn(&[n], 1.0, &mut rng),
                Reduction::Mean | Reduction::Sum => Tensor::full(&[], 1.0),
            };
            let (_, dlogits) = ce.loss_with_upstream(&x, targets, &g).unwrap();
            let h = 1e-2f32;
            let numeric: Vec<f64> = (0..n * k)
                .map(|i| {
                    let (mut plus, mut minus) = (x.clone(), x.clone());
                    plus.data_mut()[i] += h;
                    minus.data_mut()[i] -= h;
                    (total(ce, &plus, targets, &g) - total(ce, &minus, targets, &g))
                        / (2.0 * h as f64)
                })
                .collect();
            // The loss is f32: its rounding over 2h, and the O(h²) error of the central
            // difference, stay below 5e-5.
            assert_close(
                &format!("case {c}: {ce:?}"),
                dlogits.data(),
                &numeric,
                1e-3,
                5e-5,
            );
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
    fn class_weights_by_hand_and_the_weighted_mean() {
        // Row 0: logits [0, 0], target 0 → −log p = log 2, weight 1.
        // Row 1: logits [ln 3, 0], target 1 → −log p = log 4, weight 3.
        // The mean divides by the weights of the targets, 1 + 3, not by N = 2.
        let x = tensor(&[2, 2], &[0.0, 0.0, 3f32.ln(), 0.0]);
        let ce = CrossEntropy::new().weight(&[1.0, 3.0]);
        let (loss, dlogits) = ce.loss(&x, &[0, 1]).unwrap();
        assert!(loss.shape().is_empty());
        let want = (2f64.ln() + 3.0 * 4f64.ln()) / 4.0;
        assert_close("loss", loss.data(), &[want], 0.0, 1e-6);
        // w[t]·(p − onehot)/D: row 0 [−0.5, 0.5]/4, row 1 3·[0.75, −0.75]/4.
        let want = [-0.125, 0.125, 0.5625, -0.5625];
        assert_close("dlogits", dlogits.data(), &want, 0.0, 1e-7);
        // Sum: no division; None: the weighted loss of each sample.
        let (sum, dsum) = ce
            .clone()
            .reduction(Reduction::Sum)
            .loss(&x, &[0, 1])
            .unwrap();
        assert_close("sum", sum.data(), &[2f64.ln() + 3.0 * 4f64.ln()], 0.0, 1e-6);
        assert_close("dsum", dsum.data(), &want.map(|v| v * 4.0), 0.0, 1e-6);
        let (each, _) = ce.reduction(Reduction::None).loss(&x, &[0, 1]).unwrap();
        assert_eq!(each.shape(), &[2]);
        assert_close(
            "none",
            each.data(),
            &[2f64.ln(), 3.0 * 4f64.ln()],
            0.0,
            1e-6,
        );
    }

    #[test]
    fn ignored_targets_add_nothing() {
        // Row 1 is ignored: the loss is row 0's alone, divided by 1, and row 1's
        // gradient is 0. The ignored index may be a class (2 here) or lie beyond K.
        let x = tensor(&[2, 3], &[1.0, 2.0, 3.0, 5.0, -1.0, 0.0]);
        let (plain, dplain) = cross_entropy(&tensor(&[1, 3], &[1.0, 2.0, 3.0]), &[2], 0.0).unwrap();
        for (ignored, targets) in [(1, [2, 1]), (7, [2, 7])] {
            let ce = CrossEntropy::new().ignore_index(ignored);
            let (loss, dlogits) = ce.loss(&x, &targets).unwrap();
            assert_close("loss", loss.data(), &[plain as f64], 0.0, 1e-7);
            assert_eq!(&dlogits.data()[..3], dplain.data());
            assert_eq!(&dlogits.data()[3..], &[0.0; 3]);
            let (each, _) = ce.reduction(Reduction::None).loss(&x, &targets).unwrap();
            assert_eq!(each.data()[1], 0.0);
        }
        // A target out of range that is not the ignored index is still an error.
        let err = CrossEntropy::new()
            .ignore_index(7)
            .loss(&x, &[2, 6])
            .unwrap_err()
            .to_string();
        assert!(err.contains("target 6"), "{err}");
    }

    #[test]
    fn a_mean_over_no_target_is_nan_as_in_pytorch() {
        // Every target ignored: the mean is 0/0 = NaN (PyTorch's answer too) and the
        // gradient is 0; the sum is 0.
        let x = tensor(&[2, 3], &[1.0, 2.0, 3.0, 5.0, -1.0, 0.0]);
        for smoothing in [0.0, 0.1] {
            let ce = CrossEntropy::new()
                .ignore_index(1)
                .label_smoothing(smoothing);
            let (loss, dlogits) = ce.loss(&x, &[1, 1]).unwrap();
            assert!(loss.data()[0].is_nan(), "{loss:?}");
            assert_eq!(dlogits.data(), &[0.0; 6]);
            let (sum, _) = ce.reduction(Reduction::Sum).loss(&x, &[1, 1]).unwrap();
            assert_eq!(sum.data(), &[0.0]);
        }
    }

    #[test]
    fn smoothing_with_weights_weighs_each_class_by_its_own_weight() {
        // logits [0, ln 3]: −log p = [log 4, log 4/3]; target 1, weights [1, 3], ε = 0.2,
        // K = 2. PyTorch: l = (1 − ε)·w[t]·(−log p[t]) + (ε/K)·Σ_k w[k]·(−log p[k])
        //               = 0.8·3·log(4/3) + 0.1·(log 4 + 3·log(4/3)),
        // and the mean divides by w[t] = 3.
        let x = tensor(&[1, 2], &[0.0, 3f32.ln()]);
        let ce = CrossEntropy::new().weight(&[1.0, 3.0]).label_smoothing(0.2);
        let (loss, dlogits) = ce.loss(&x, &[1]).unwrap();
        let l = 0.8 * 3.0 * (4f64 / 3.0).ln() + 0.1 * (4f64.ln() + 3.0 * (4f64 / 3.0).ln());
        assert_close("loss", loss.data(), &[l / 3.0], 0.0, 1e-6);
        // ∂l/∂x[j] = 0.8·3·(p[j] − onehot[j]) + 0.1·(W·p[j] − w[j]) with W = 4, p = [¼, ¾].
        let dl = [
            0.8 * 3.0 * 0.25 + 0.1 * (4.0 * 0.25 - 1.0),
            0.8 * 3.0 * (0.75 - 1.0) + 0.1 * (4.0 * 0.75 - 3.0),
        ];
        assert_close("dlogits", dlogits.data(), &dl.map(|v| v / 3.0), 0.0, 1e-7);
    }

    #[test]
    fn per_sample_losses_take_an_upstream_gradient() {
        let mut rng = crate::rng::Rng::new(3);
        let x = Tensor::randn(&[3, 4], 1.0, &mut rng);
        let targets = [3, 0, 1];
        let ce = CrossEntropy::new()
            .reduction(Reduction::None)
            .weight(&[0.5, 1.0, 2.0, 1.5])
            .label_smoothing(0.1);
        let dloss = tensor(&[3], &[2.0, -1.0, 0.5]);
        let (losses, dlogits) = ce.loss_with_upstream(&x, &targets, &dloss).unwrap();
        let (same, ones) = ce.loss(&x, &targets).unwrap();
        assert_eq!(losses.data(), same.data());
        // Row n of dlogits is dloss[n] times the row for an upstream gradient of 1.
        for n in 0..3 {
            let want: Vec<f32> = ones.data()[4 * n..4 * n + 4]
                .iter()
                .map(|v| v * dloss.data()[n])
                .collect();
            assert_close("row", &dlogits.data()[4 * n..4 * n + 4], &want, 1e-6, 1e-7);
        }
        // The mean of the weighted losses is the Mean reduction.
        let mean = ce
            .clone()
            .reduction(Reduction::Mean)
            .loss(&x, &targets)
            .unwrap()
            .0;
        let divisor = 1.5 + 0.5 + 1.0;
        let sum: f64 = losses.data().iter().map(|&v| v as f64).sum();
        assert_close("mean", mean.data(), &[sum / divisor], 1e-6, 1e-7);
        // The upstream gradient must have the loss's shape.
        let err = ce
            .loss_with_upstream(&x, &targets, &Tensor::zeros(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("(3,)") && err.contains("upstream"), "{err}");
        assert!(CrossEntropy::new()
            .loss_with_upstream(&x, &targets, &Tensor::zeros(&[3]))
            .is_err());
    }

    #[test]
    fn bad_weights_are_errors_naming_them() {
        let x = Tensor::zeros(&[2, 3]);
        let err = CrossEntropy::new()
            .weight(&[1.0, 2.0])
            .loss(&x, &[0, 1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 class weights") && err.contains("K = 3"),
            "{err}"
        );
        for bad in [-1.0, f32::NAN, f32::INFINITY] {
            let err = CrossEntropy::new()
                .weight(&[1.0, bad, 2.0])
                .loss(&x, &[0, 1])
                .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err}");
            assert!(err.to_string().contains("class weight 1"), "{err}");
        }
        // Zero weights are allowed (a class that does not count).
        assert!(CrossEntropy::new()
            .weight(&[0.0, 1.0, 1.0])
            .loss(&x, &[0, 1])
            .is_ok());
        let err = CrossEntropy::new()
            .label_smoothing(1.5)
            .loss(&x, &[0, 1])
            .unwrap_err();
        assert!(err.to_string().contains("label smoothing"), "{err}");
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
