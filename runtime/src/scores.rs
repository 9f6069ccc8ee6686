//! Class scores: softmax over arrays, and the predicted class of each row of logits.

use ndarray::{Array2, ArrayView2};

use crate::ops::loss;

/// Row-wise softmax of logits `(N, K)`: `p[i, k] = e^(x[i, k]) / Σ_j e^(x[i, j])`, computed
/// stably (each row shifted by its maximum) by the kernel [`ops::loss::softmax`](loss::softmax).
///
/// [`Network::predict_proba`](crate::Network::predict_proba) is this applied to a network's
/// output.
///
/// # Example
///
/// ```
/// use striate::ndarray::array;
/// use striate::softmax;
///
/// let probs = softmax(array![[0.0f32, 0.0], [1000.0, -1000.0]].view());
/// assert_eq!(probs, array![[0.5f32, 0.5], [1.0, 0.0]]);
/// ```
pub fn softmax(logits: ArrayView2<'_, f32>) -> Array2<f32> {
    let logits = logits.as_standard_layout();
    let mut probs = Array2::zeros(logits.dim());
    loss::softmax(
        probs.as_slice_mut().expect("a fresh array is contiguous"),
        logits.as_slice().expect("standard layout is contiguous"),
        logits.ncols(),
    );
    probs
}

/// Index of the largest value of each row of `logits` `(N, classes)` (the predicted class; the
/// first one on a tie).
pub(crate) fn argmax_rows(logits: &[f32], classes: usize) -> impl Iterator<Item = usize> + '_ {
    logits.chunks_exact(classes).map(|row| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            })
            .0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn softmax_rows_sum_to_one_in_any_layout() {
        let logits = array![[1.0f32, 2.0, 3.0], [-1.0, 0.0, 5.0]];
        let probs = softmax(logits.view());
        for row in probs.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-6);
        }
        // ln-ratios of probabilities are differences of logits.
        assert!(((probs[[0, 2]] / probs[[0, 1]]).ln() - 1.0).abs() < 1e-5);
        // A transposed (column-major) view gives the softmax of the transposed values.
        let transposed = logits.t().to_owned();
        assert_eq!(softmax(transposed.t()), probs);
        assert_eq!(softmax(Array2::zeros((0, 3)).view()).dim(), (0, 3));
    }

    #[test]
    fn argmax_takes_the_first_largest() {
        let picks: Vec<usize> = argmax_rows(&[0.0, 2.0, 2.0, 5.0, 1.0, -1.0], 3).collect();
        assert_eq!(picks, [1, 0]);
    }
}
