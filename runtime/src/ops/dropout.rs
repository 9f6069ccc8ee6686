//! Inverted dropout, forward and backward.

use super::check_same;

/// Inverted dropout: each `mask[i]` is `0` with probability `p`, otherwise `1/(1-p)`, and
/// `y = x ⊙ mask`, so that `E[y] = x` and evaluation needs no rescaling.
///
/// `y` and `mask` are overwritten; `mask` is kept for [`backward`]. With `p = 0` the mask is
/// all ones and `rng` is not used; with `p = 1` it is all zeros. Each element draws one `u32`
/// from `rng`, compared with `p·2³²`, so the drop probability is `p` to within `2⁻³²`.
///
/// # Panics
/// When `y` or `mask` differs in length from `x` (checked before anything is written, in
/// release builds too); in debug builds, when `p` is outside `[0, 1]`.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use striate::ops::dropout::forward;
///
/// let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
/// let (mut y, mut mask) = ([0.0; 4], [0.0; 4]);
/// forward(&mut y, &mut mask, &[1.0, 2.0, 3.0, 4.0], 0.5, &mut rng);
/// assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
/// assert!(y.iter().zip(&mask).enumerate().all(|(i, (&y, &m))| y == (i + 1) as f32 * m));
/// ```
pub fn forward(y: &mut [f32], mask: &mut [f32], x: &[f32], p: f32, rng: &mut impl rand::Rng) {
    // x: (any) -> y: (same), mask: (same)
    debug_assert!(
        (0.0..=1.0).contains(&p),
        "dropout probability {p} is not in [0, 1]"
    );
    for (name, len) in [("y", y.len()), ("mask", mask.len())] {
        check_same("dropout::forward", name, len, "x", x.len());
    }
    fill_mask(mask, p, rng);
    for ((y, m), &x) in y.iter_mut().zip(mask.iter()).zip(x) {
        *y = x * m;
    }
}

/// A fresh mask of inverted dropout, as [`forward`] draws it: each value `0` with probability
/// `p`, otherwise `1/(1-p)`; all ones without drawing for `p = 0`.
pub fn fill_mask(mask: &mut [f32], p: f32, rng: &mut (impl rand::RngCore + ?Sized)) {
    if p <= 0.0 {
        mask.fill(1.0);
        return;
    }
    // Drop when a uniform u32 falls below p·2³² (computed in f64, where it is exact enough;
    // p = 1 gives 2³², above every u32).
    let threshold = (p as f64 * 4_294_967_296.0) as u64;
    let keep = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    for m in mask {
        *m = if u64::from(rng.next_u32()) < threshold {
            0.0
        } else {
            keep
        };
    }
}

/// The gradient of [`forward`]: `d_x += d_y ⊙ mask`.
///
/// # Panics
/// When `d_x` or `mask` differs in length from `d_y` (checked before anything is written, in
/// release builds too).
pub fn backward(d_x: &mut [f32], d_y: &[f32], mask: &[f32]) {
    // d_y: (any), mask: (same) -> d_x: (same)
    for (name, len) in [("d_x", d_x.len()), ("mask", mask.len())] {
        check_same("dropout::backward", name, len, "d_y", d_y.len());
    }
    for ((d, &g), &m) in d_x.iter_mut().zip(d_y).zip(mask) {
        *d += g * m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{check_gradient, dot, rng, uniform};

    /// Over 100 000 elements the dropped fraction is within 0.01 of `p` (about six standard
    /// deviations at `p = 0.5`), and the mean of `y` for `x = 1` within 0.02 of 1.
    #[test]
    fn drops_a_fraction_p_and_preserves_the_mean() {
        let len = 100_000;
        let x = vec![1.0; len];
        let (mut y, mut mask) = (vec![f32::NAN; len], vec![f32::NAN; len]);
        for (seed, p) in [0.1f32, 0.25, 0.5, 0.8].into_iter().enumerate() {
            forward(&mut y, &mut mask, &x, p, &mut rng(50 + seed as u64));
            let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / len as f64;
            assert!(
                (dropped - p as f64).abs() < 0.01,
                "p {p}: dropped {dropped}"
            );
            assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0 / (1.0 - p)));
            let mean = y.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            assert!((mean - 1.0).abs() < 0.02, "p {p}: mean {mean}");
        }
    }

    #[test]
    fn extreme_probabilities() {
        let x = [1.0, -2.0, 3.0];
        let (mut y, mut mask) = ([f32::NAN; 3], [f32::NAN; 3]);
        forward(&mut y, &mut mask, &x, 0.0, &mut rng(51));
        assert_eq!((y, mask), (x, [1.0; 3]));
        forward(&mut y, &mut mask, &x, 1.0, &mut rng(52));
        assert_eq!(mask, [0.0; 3]);
        assert!(y.iter().all(|&v| v == 0.0));
    }

    /// The same seed gives the same mask.
    #[test]
    fn deterministic_for_a_seed() {
        let x = vec![1.0; 64];
        let (mut y, mut a, mut b) = (vec![0.0; 64], vec![0.0; 64], vec![0.0; 64]);
        forward(&mut y, &mut a, &x, 0.3, &mut rng(53));
        forward(&mut y, &mut b, &x, 0.3, &mut rng(53));
        assert_eq!(a, b);
    }

    /// With the mask held fixed, `y` is linear in `x` with gradient `mask`.
    #[test]
    fn backward_matches_finite_differences() {
        let x = uniform(&mut rng(54), 50);
        let weights = uniform(&mut rng(55), 50);
        let (mut y, mut mask) = (vec![0.0; 50], vec![0.0; 50]);
        forward(&mut y, &mut mask, &x, 0.4, &mut rng(56));
        assert!(mask.contains(&0.0) && mask.iter().any(|&m| m > 1.0));
        let mut d_x = vec![0.5; 50];
        backward(&mut d_x, &weights, &mask);
        let d_x: Vec<f32> = d_x.iter().map(|d| d - 0.5).collect();
        check_gradient("d_x", &x, &d_x, 1e-2, 1e-3, |x| {
            let y: Vec<f32> = x.iter().zip(&mask).map(|(x, m)| x * m).collect();
            dot(&weights, &y)
        });
        // And the forward used exactly that mask.
        let again: Vec<f32> = x.iter().zip(&mask).map(|(x, m)| x * m).collect();
        assert_eq!(y, again);
    }
}
