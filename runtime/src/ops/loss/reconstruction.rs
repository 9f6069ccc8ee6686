//! Losses that compare an output with a target of the same shape, value by value: mean
//! squared error and binary cross-entropy with logits, each with its gradient. An autoencoder
//! trains with them against its input (or, denoising, against the clean input).

use crate::{Error, Result};

/// A loss between an output and a target of the same shape, averaged over every value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Loss {
    /// [`mse`]: `mean((y - t)²)`, PyTorch's `MSELoss()`.
    #[default]
    Mse,
    /// [`bce_with_logits`]: the output is a logit per value and the target a probability in
    /// `[0, 1]`, PyTorch's `BCEWithLogitsLoss()`.
    BceWithLogits,
}

impl Loss {
    /// The loss of `output` against `target`, and its gradient written into `d_output`.
    ///
    /// # Errors
    /// As [`mse`] and [`bce_with_logits`].
    pub fn compute(self, d_output: &mut [f32], output: &[f32], target: &[f32]) -> Result<f32> {
        match self {
            Loss::Mse => mse(d_output, output, target),
            Loss::BceWithLogits => bce_with_logits(d_output, output, target),
        }
    }

    /// `mse` or `bce_with_logits`, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::BceWithLogits => "bce_with_logits",
        }
    }
}

/// Checks the three lengths of a reconstruction loss before anything is written.
fn check(kernel: &str, d_output: &[f32], output: &[f32], target: &[f32]) -> Result<()> {
    if target.len() != output.len() {
        return Err(Error::shape(
            format!("{kernel} target (one value per output)"),
            &[output.len()],
            &[target.len()],
        ));
    }
    if d_output.len() != output.len() {
        return Err(Error::shape(
            format!("{kernel} d_output"),
            &[output.len()],
            &[d_output.len()],
        ));
    }
    if output.is_empty() {
        return Err(Error::EmptyBatch {
            what: kernel.to_string(),
        });
    }
    Ok(())
}

/// Mean squared error `L = (1/M) Σ (yᵢ - tᵢ)²` over all `M` values, with its gradient
/// `d_output = 2 (y - t) / M` (assigned, not accumulated: the loss is where backpropagation
/// starts). The sum is in `f64`.
///
/// # Errors
/// [`Error::Shape`] when `target` or `d_output` differs in length from `output`;
/// [`Error::EmptyBatch`] for no values.
///
/// # Example
/// ```
/// use striate::ops::loss::mse;
///
/// let mut d = [0.0; 2];
/// let loss = mse(&mut d, &[1.0, 3.0], &[0.0, 1.0])?;
/// assert_eq!(loss, 2.5); // (1 + 4) / 2
/// assert_eq!(d, [1.0, 2.0]);
/// # Ok::<(), striate::Error>(())
/// ```
pub fn mse(d_output: &mut [f32], output: &[f32], target: &[f32]) -> Result<f32> {
    // output: (M), target: (M) -> d_output: (M), loss: ()
    check("mse", d_output, output, target)?;
    let scale = 2.0 / output.len() as f32;
    let mut total = 0.0f64;
    for ((d, &y), &t) in d_output.iter_mut().zip(output).zip(target) {
        let diff = y - t;
        total += (diff * diff) as f64;
        *d = scale * diff;
    }
    Ok((total / output.len() as f64) as f32)
}

/// Binary cross-entropy of `sigmoid(z)` against targets `t`, averaged over all `M` values,
/// computed from the logits `z` without forming the sigmoid, so that it neither overflows nor
/// loses precision for large `|z|`:
/// `L = (1/M) Σ max(z, 0) - z·t + ln(1 + e^(-|z|))`, with gradient
/// `d_output = (sigmoid(z) - t) / M` (assigned). The sum is in `f64`.
///
/// # Errors
/// [`Error::Shape`] when `target` or `d_output` differs in length from `output`;
/// [`Error::EmptyBatch`] for no values.
///
/// # Example
/// ```
/// use striate::ops::loss::bce_with_logits;
///
/// // A logit of 0 is probability ½ whatever the target: the loss is ln 2.
/// let mut d = [0.0; 2];
/// let loss = bce_with_logits(&mut d, &[0.0, 0.0], &[1.0, 0.0])?;
/// assert!((loss - std::f32::consts::LN_2).abs() < 1e-7);
/// assert_eq!(d, [-0.25, 0.25]);
/// // A huge logit neither overflows nor gives NaN.
/// let loss = bce_with_logits(&mut d[..1], &[1000.0], &[0.0])?;
/// assert_eq!(loss, 1000.0);
/// # Ok::<(), striate::Error>(())
/// ```
pub fn bce_with_logits(d_output: &mut [f32], output: &[f32], target: &[f32]) -> Result<f32> {
    // output: (M) logits, target: (M) probabilities -> d_output: (M), loss: ()
    check("bce_with_logits", d_output, output, target)?;
    let inv_m = 1.0 / output.len() as f32;
    let mut total = 0.0f64;
    for ((d, &z), &t) in d_output.iter_mut().zip(output).zip(target) {
        // e = e^(-|z|) is at most 1: no overflow on either side.
        let e = (-z.abs()).exp();
        // ln(1 + e) for e in (0, 1] is well conditioned in f32; the sum is kept in f64.
        total += (z.max(0.0) - z * t + e.ln_1p()) as f64;
        let sigmoid = if z >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        *d = (sigmoid - t) * inv_m;
    }
    Ok((total / output.len() as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{check_gradient, rng, uniform};

    #[test]
    fn gradients_match_finite_differences() {
        let mut r = rng(31);
        let y = uniform(&mut r, 7);
        let t: Vec<f32> = uniform(&mut r, 7).iter().map(|v| v.abs()).collect();
        for loss in [Loss::Mse, Loss::BceWithLogits] {
            let mut d = vec![0.0; 7];
            loss.compute(&mut d, &y, &t).unwrap();
            check_gradient(loss.name(), &y, &d, 1e-2, 1e-3, |p| {
                let mut scratch = vec![0.0; 7];
                loss.compute(&mut scratch, p, &t).unwrap() as f64
            });
        }
    }

    /// PyTorch: `F.binary_cross_entropy_with_logits(torch.tensor([-30., -1., 0.5, 40.]),
    /// torch.tensor([0., 0.25, 1., 1.]))` = 0.2593347.
    #[test]
    fn bce_is_pytorchs_and_stable() {
        let mut d = [0.0; 4];
        let loss = bce_with_logits(&mut d, &[-30.0, -1.0, 0.5, 40.0], &[0.0, 0.25, 1.0, 1.0]);
        assert!((loss.unwrap() - 0.259_334_7).abs() < 1e-6);
        assert!(d.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let err = mse(&mut [0.0; 2], &[0.0; 2], &[0.0; 3]).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        let err = bce_with_logits(&mut [0.0; 1], &[0.0; 2], &[0.0; 2]).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        let err = mse(&mut [], &[], &[]).unwrap_err();
        assert!(matches!(err, Error::EmptyBatch { .. }), "{err}");
    }
}
