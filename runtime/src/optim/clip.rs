//! Gradient clipping by global norm.

use crate::{Error, Result};

/// Scales `grads` so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` does, and returns the norm they had.
///
/// With `‖g‖` the L2 norm of all the gradients together, each is multiplied by
/// `min(1, max_norm / (‖g‖ + 1e-6))`, so gradients already within the bound keep their values.
/// The norm is summed in `f64`. A gradient that is NaN or infinite makes the norm NaN or
/// infinite, which is returned (and the gradients scaled by it, as PyTorch does) for the caller to
/// act on.
///
/// # Errors
///
/// [`Error::Config`] if `max_norm` is negative or NaN; the gradients are then unchanged.
///
/// # Example
///
/// ```
/// use striate::optim::clip_grad_norm;
///
/// let mut grads = [3.0_f32, 4.0];
/// let norm = clip_grad_norm(&mut grads, 1.0)?;
/// assert_eq!(norm, 5.0);
/// assert!((grads[0] - 0.6).abs() < 1e-6 && (grads[1] - 0.8).abs() < 1e-6);
///
/// // Within the bound nothing changes.
/// let mut small = [0.3_f32, 0.4];
/// assert_eq!(clip_grad_norm(&mut small, 1.0)?, 0.5);
/// assert_eq!(small, [0.3, 0.4]);
/// # Ok::<(), striate::Error>(())
/// ```
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> Result<f32> {
    // NaN fails too; an infinite bound is allowed and never clips.
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::Config {
            name: "max_norm",
            reason: format!("expected a value of at least 0, found {max_norm}"),
        });
    }
    let norm = grads
        .iter()
        .map(|&g| f64::from(g) * f64::from(g))
        .sum::<f64>()
        .sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    // `coef < 1` is false for NaN, so NaN gradients are scaled by NaN, as in PyTorch.
    if coef < 1.0 || coef.is_nan() {
        for g in grads.iter_mut() {
            *g *= coef;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bounds_are_config_errors() {
        for bad in [-1.0, f32::NAN, f32::NEG_INFINITY] {
            let mut g = [1.0, 2.0];
            match clip_grad_norm(&mut g, bad) {
                Err(Error::Config { name, .. }) => assert_eq!(name, "max_norm"),
                other => panic!("max_norm {bad}: expected a config error, found {other:?}"),
            }
            assert_eq!(g, [1.0, 2.0]);
        }
    }

    #[test]
    fn zero_bound_zeroes_and_empty_is_zero() {
        let mut g = [1.0, -2.0];
        assert_eq!(clip_grad_norm(&mut g, 0.0).unwrap(), 5f32.sqrt());
        assert_eq!(g, [0.0, -0.0]);
        assert_eq!(clip_grad_norm(&mut [], 1.0).unwrap(), 0.0);
        let mut g = [1.0, 1.0];
        assert_eq!(clip_grad_norm(&mut g, f32::INFINITY).unwrap(), 2f32.sqrt());
        assert_eq!(g, [1.0, 1.0]);
    }

    #[test]
    fn non_finite_gradients_give_a_non_finite_norm() {
        let mut g = [1.0, f32::NAN];
        assert!(clip_grad_norm(&mut g, 1.0).unwrap().is_nan());
        let mut g = [1.0, f32::INFINITY];
        assert_eq!(clip_grad_norm(&mut g, 1.0).unwrap(), f32::INFINITY);
    }
}
