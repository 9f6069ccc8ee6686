//! Softmax and the softmax cross-entropy loss with its gradient; the reconstruction losses
//! against a target array are in [`reconstruction`].

use super::{check_len, check_same};
use crate::{Error, Result};

pub mod reconstruction;
pub use reconstruction::{bce_with_logits, mse, Loss};

/// The mean over the batch of `-log softmax(logits)[label]`, with its gradient with respect to
/// the logits, `d_logits = (softmax(logits) - onehot(labels)) / N`.
///
/// `logits` is `(N, K)` with `K = classes`, `N` being `logits.len() / classes`. Unlike the
/// other kernels' gradients, `d_logits` is **assigned**, not accumulated: the loss is where
/// backpropagation starts. Each row is shifted by its maximum before exponentiating
/// (`log Σ eˣ = m + log Σ eˣ⁻ᵐ`), so large logits do not overflow; sums are in `f64`.
/// Logits are expected to be finite: for a NaN or infinite logit the loss is NaN (or
/// infinite) and returned as it is, not checked here, so that the trainer's divergence guard
/// sees it; `striate::cross_entropy` refuses such logits.
///
/// # Errors
/// Checked before anything is written, in this order:
/// - [`Error::Shape`] when `logits.len()` is not a multiple of `classes` (or `classes` is 0 and
///   `logits` is not empty), or `d_logits` differs in length from `logits`;
/// - [`Error::LabelCount`] when there is not one label per row;
/// - [`Error::EmptyBatch`] when there are no rows;
/// - [`Error::LabelOutOfRange`] for the first label that is not below `classes`.
///
/// # Example
/// ```
/// use striate::ops::loss::softmax_cross_entropy;
///
/// // Two equal logits: the loss is ln 2, and a step against the gradient raises class 0.
/// let mut d_logits = [0.0; 2];
/// let loss = softmax_cross_entropy(&mut d_logits, &[0.0, 0.0], &[0], 2)?;
/// assert!((loss - std::f32::consts::LN_2).abs() < 1e-7);
/// assert_eq!(d_logits, [-0.5, 0.5]);
/// # Ok::<(), striate::Error>(())
/// ```
pub fn softmax_cross_entropy(
    d_logits: &mut [f32],
    logits: &[f32],
    labels: &[usize],
    classes: usize,
) -> Result<f32> {
    // logits: (N, K), labels: (N) -> d_logits: (N, K), loss: ()
    let n = logits.len().checked_div(classes).unwrap_or(0);
    if n * classes != logits.len() {
        return Err(Error::shape(
            "logits (batch size 0 = any)",
            &[0, classes],
            &[logits.len()],
        ));
    }
    if d_logits.len() != logits.len() {
        return Err(Error::shape("d_logits", &[n, classes], &[d_logits.len()]));
    }
    check_labels(labels, n, classes, "softmax cross-entropy")?;
    let inv_n = 1.0 / n as f32;
    let mut total = 0.0f64;
    for ((d_row, row), &label) in d_logits
        .chunks_exact_mut(classes)
        .zip(logits.chunks_exact(classes))
        .zip(labels)
    {
        let max = row_max(row);
        let mut sum = 0.0f64;
        for (d, &l) in d_row.iter_mut().zip(row) {
            let e = (l - max).exp();
            *d = e;
            sum += e as f64;
        }
        // -log softmax[label] = log Σ e^(l - max) - (l[label] - max)
        total += sum.ln() - (row[label] - max) as f64;
        let scale = (1.0 / sum) as f32 * inv_n;
        for d in d_row.iter_mut() {
            *d *= scale;
        }
        d_row[label] -= inv_n;
    }
    Ok((total / n as f64) as f32)
}

/// [`Error::NonFinite`] for the first NaN or infinite logit, naming its sample and class (in a
/// batch of rows of `classes`): what the public `striate::cross_entropy` checks before
/// computing a loss that would be NaN. [`softmax_cross_entropy`] itself does not check, and
/// returns a NaN loss for such logits: the trainer's divergence guard is the check there.
pub(crate) fn check_finite_logits(logits: &[f32], classes: usize) -> Result<()> {
    Error::check_finite(
        logits,
        || {
            let at = crate::limits::first_non_finite(logits).unwrap_or(0);
            let k = classes.max(1);
            format!("logits (sample {}, class {})", at / k, at % k)
        },
        "; the loss would be NaN (the network diverged, or its input has such values)",
    )
}

/// Checks that there is one label per row of a batch of `n` (`what` names its use), that the
/// batch is not empty and that every label is below `classes`, as [`softmax_cross_entropy`]
/// does, so that a training step can refuse bad labels before it changes anything.
pub(crate) fn check_labels(labels: &[usize], n: usize, classes: usize, what: &str) -> Result<()> {
    if labels.len() != n {
        return Err(Error::LabelCount {
            expected: n,
            found: labels.len(),
        });
    }
    if n == 0 {
        return Err(Error::EmptyBatch { what: what.into() });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(Error::LabelOutOfRange {
            label,
            index,
            classes,
        });
    }
    Ok(())
}

/// Row-wise softmax, `probs[i, k] = e^(logits[i, k]) / Σ_j e^(logits[i, j])`, shifted by the
/// row maximum so that large logits do not overflow. `probs` is overwritten.
///
/// # Panics
/// When `probs` and `logits` differ in length, or `logits` is not whole rows of `classes`
/// (checked before anything is written, in release builds too).
///
/// # Example
/// ```
/// use striate::ops::loss::softmax;
///
/// let mut probs = [0.0; 3];
/// softmax(&mut probs, &[1000.0, 1000.0, -1000.0], 3);
/// assert_eq!(probs, [0.5, 0.5, 0.0]);
/// ```
pub fn softmax(probs: &mut [f32], logits: &[f32], classes: usize) {
    // logits: (N, K) -> probs: (N, K)
    check_same(
        "loss::softmax",
        "probs",
        probs.len(),
        "logits",
        logits.len(),
    );
    let rows = logits.len().checked_div(classes).unwrap_or(0);
    check_len(
        "loss::softmax",
        "logits",
        logits.len(),
        Some(rows),
        &[classes],
    );
    if classes == 0 {
        return;
    }
    for (p_row, row) in probs
        .chunks_exact_mut(classes)
        .zip(logits.chunks_exact(classes))
    {
        let max = row_max(row);
        let mut sum = 0.0f64;
        for (p, &l) in p_row.iter_mut().zip(row) {
            *p = (l - max).exp();
            sum += *p as f64;
        }
        let scale = (1.0 / sum) as f32;
        for p in p_row.iter_mut() {
            *p *= scale;
        }
    }
}

fn row_max(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, check_gradient, rng, uniform};
    use rand::Rng;

    /// The kernel returns the NaN loss of a NaN logit as it is (the trainer's guard sees it);
    /// the check that `cross_entropy` runs first names the sample and the class.
    #[test]
    fn non_finite_logits_are_named() {
        let logits = [0.0, 1.0, 2.0, 0.5, f32::INFINITY, 0.0];
        let mut d = [0.0; 6];
        let loss =
            softmax_cross_entropy(&mut d[..4], &[0.0, f32::NAN, 0.0, 0.0], &[0, 1], 2).unwrap();
        assert!(loss.is_nan());
        match check_finite_logits(&logits, 3).unwrap_err() {
            Error::NonFinite {
                what,
                index: 4,
                value,
                ..
            } => {
                assert_eq!(what, "logits (sample 1, class 1)");
                assert_eq!(value, f32::INFINITY);
            }
            other => panic!("expected a non-finite error, found {other}"),
        }
        assert!(softmax_cross_entropy(&mut d, &logits, &[0, 1], 3)
            .unwrap()
            .is_nan());
        check_finite_logits(&[0.0, -3e38, 3e38], 3).unwrap();
    }

    #[test]
    fn known_values() {
        let mut d = [f32::NAN; 2];
        let loss = softmax_cross_entropy(&mut d, &[0.0, 0.0], &[0], 2).unwrap();
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-7, "{loss}");
        assert_eq!(d, [-0.5, 0.5]);

        // F.cross_entropy(torch.tensor([[1., 2., 3.], [1., 2., 3.]]), torch.tensor([2, 0]))
        // = (0.40760596 + 2.40760596) / 2 = 1.40760596
        let mut d = [f32::NAN; 6];
        let logits = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
        let loss = softmax_cross_entropy(&mut d, &logits, &[2, 0], 3).unwrap();
        assert!((loss - 1.407_606).abs() < 1e-6, "{loss}");
        // softmax([1, 2, 3]) = [0.09003057, 0.24472847, 0.66524096]
        let p = [0.090_030_57, 0.244_728_47, 0.665_240_96];
        let expected = [
            p[0] / 2.0,
            p[1] / 2.0,
            (p[2] - 1.0) / 2.0,
            (p[0] - 1.0) / 2.0,
            p[1] / 2.0,
            p[2] / 2.0,
        ];
        assert_close("d_logits", &d, &expected, 1e-6);
    }

    /// Logits of ±1000 would overflow `exp` without the shift by the maximum.
    #[test]
    fn huge_logits_do_not_overflow() {
        let mut d = [f32::NAN; 3];
        let loss = softmax_cross_entropy(&mut d, &[1000.0, 0.0, -1000.0], &[1], 3).unwrap();
        assert_eq!(loss, 1000.0);
        assert_eq!(d, [1.0, -1.0, 0.0]);
        let loss = softmax_cross_entropy(&mut d, &[1000.0, 1000.0, 0.0], &[0], 3).unwrap();
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-6, "{loss}");
        let mut probs = [f32::NAN; 3];
        softmax(&mut probs, &[-1000.0, -1000.0, -1000.0], 3);
        assert_close("probs", &probs, &[1.0 / 3.0; 3], 1e-7);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_the_loss_gradient() {
        let mut r = rng(130);
        let (n, k) = (5, 7);
        let logits: Vec<f32> = uniform(&mut r, n * k).iter().map(|v| 10.0 * v).collect();
        let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
        let mut probs = vec![f32::NAN; n * k];
        softmax(&mut probs, &logits, k);
        for row in probs.chunks_exact(k) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let mut d = vec![f32::NAN; n * k];
        softmax_cross_entropy(&mut d, &logits, &labels, k).unwrap();
        for (i, &label) in labels.iter().enumerate() {
            for j in 0..k {
                let onehot = if j == label { 1.0 } else { 0.0 };
                let expected = (probs[i * k + j] - onehot) / n as f32;
                assert!((d[i * k + j] - expected).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut r = rng(131);
        for (n, k) in [(1, 1), (1, 2), (3, 5), (4, 10)] {
            let logits: Vec<f32> = uniform(&mut r, n * k).iter().map(|v| 3.0 * v).collect();
            let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
            let mut d = vec![f32::NAN; n * k];
            softmax_cross_entropy(&mut d, &logits, &labels, k).unwrap();
            let mut scratch = vec![0.0; n * k];
            check_gradient(&format!("n {n} k {k}"), &logits, &d, 1e-2, 1e-3, |l| {
                softmax_cross_entropy(&mut scratch, l, &labels, k).unwrap() as f64
            });
        }
    }

    #[test]
    fn errors() {
        let mut d = [7.0; 4];
        let logits = [0.0; 4];
        let err = softmax_cross_entropy(&mut d, &logits, &[0], 2).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LabelCount {
                    expected: 2,
                    found: 1
                }
            ),
            "{err}"
        );
        let err = softmax_cross_entropy(&mut d, &logits, &[1, 2], 2).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LabelOutOfRange {
                    label: 2,
                    index: 1,
                    classes: 2
                }
            ),
            "{err}"
        );
        let err = softmax_cross_entropy(&mut [], &[], &[], 3).unwrap_err();
        assert!(matches!(err, Error::EmptyBatch { .. }), "{err}");
        let err = softmax_cross_entropy(&mut d, &logits, &[0], 3).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        let err = softmax_cross_entropy(&mut d[..2], &logits, &[0, 0], 2).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        let err = softmax_cross_entropy(&mut [], &[], &[0], 0).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LabelCount {
                    expected: 0,
                    found: 1
                }
            ),
            "{err}"
        );
        // Nothing was written on any error.
        assert_eq!(d, [7.0; 4]);
    }
}
