//! Sequences `(N, T, F)` into vectors `(N, F)`: the last step (`last`), each direction's
//! final hidden state (`final_state`), and the mean or maximum over time. Forward and backward
//! side by side; the gradients accumulate.

use super::check_len;

/// The geometry of a reduction over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeGeom {
    /// Steps `T`.
    pub steps: usize,
    /// Features per step `F`.
    pub features: usize,
    /// For [`pick_forward`]: the directions of the recurrent layer before it (1, or 2 when the
    /// second half of the features ran backward in time).
    pub directions: usize,
}

impl TimeGeom {
    fn check(&self, kernel: &str, seq: usize, vec: usize, n: usize) {
        check_len(
            kernel,
            "sequence",
            seq,
            Some(n),
            &[self.steps, self.features],
        );
        check_len(kernel, "vector", vec, Some(n), &[self.features]);
    }

    /// The step direction `d` ends at, for a sequence of `len` valid steps.
    fn end_step(&self, d: usize, len: usize) -> usize {
        if d == 0 {
            len - 1
        } else {
            0
        }
    }
}

/// Each sample's last valid step, `lengths[s]` (all `T` when `None`).
///
/// # Panics
/// When a length is 0 or above `T`, or `lengths` does not have `n` values.
fn valid(g: &TimeGeom, lengths: Option<&[u32]>, n: usize, s: usize) -> usize {
    match lengths {
        None => g.steps,
        Some(l) => {
            assert_eq!(l.len(), n, "sequence: {} lengths for {n} samples", l.len());
            let len = l[s] as usize;
            assert!(
                (1..=g.steps).contains(&len),
                "sequence: length {len} of sample {s} is not in 1..={}",
                g.steps
            );
            len
        }
    }
}

/// `y[s] = x[s, T - 1]` for one direction (PyTorch's `out[:, -1, :]`); for two, the first
/// half of the features from the last step and the second half, which ran backward in time,
/// from the first (`torch.cat([h_n[-2], h_n[-1]], 1)`). With `lengths`, the last step of
/// sample `s` is `lengths[s] - 1`, so that padding after it is ignored.
///
/// # Panics
/// Unless `x` has `n·T·F` values and `y` `n·F`; as `lengths` is described above.
///
/// # Example
/// ```
/// use striate::ops::sequence::{pick_forward, TimeGeom};
///
/// let g = TimeGeom { steps: 3, features: 2, directions: 1 };
/// let mut y = [0.0; 2];
/// pick_forward(&mut y, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &g, 1, None);
/// assert_eq!(y, [5.0, 6.0]);
/// pick_forward(&mut y, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &g, 1, Some(&[2]));
/// assert_eq!(y, [3.0, 4.0]);
/// ```
pub fn pick_forward(y: &mut [f32], x: &[f32], g: &TimeGeom, n: usize, lengths: Option<&[u32]>) {
    // x: (N, T, F) -> y: (N, F)
    g.check("sequence::pick_forward", x.len(), y.len(), n);
    let (f, part) = (g.features, g.features / g.directions.max(1));
    for s in 0..n {
        let len = valid(g, lengths, n, s);
        for d in 0..g.directions.max(1) {
            let t = g.end_step(d, len);
            y[s * f + d * part..][..part]
                .copy_from_slice(&x[(s * g.steps + t) * f + d * part..][..part]);
        }
    }
}

/// The gradient of [`pick_forward`]: `d_x[s, t] += d_y[s]` at the steps it picked.
///
/// # Panics
/// As [`pick_forward`].
pub fn pick_backward(
    d_x: &mut [f32],
    d_y: &[f32],
    g: &TimeGeom,
    n: usize,
    lengths: Option<&[u32]>,
) {
    g.check("sequence::pick_backward", d_x.len(), d_y.len(), n);
    let (f, part) = (g.features, g.features / g.directions.max(1));
    for s in 0..n {
        let len = valid(g, lengths, n, s);
        for d in 0..g.directions.max(1) {
            let t = g.end_step(d, len);
            let dst = &mut d_x[(s * g.steps + t) * f + d * part..][..part];
            for (a, &b) in dst.iter_mut().zip(&d_y[s * f + d * part..][..part]) {
                *a += b;
            }
        }
    }
}

/// `y[s] = (1/T) Σ_t x[s, t]`; with `lengths`, the mean over sample `s`'s valid steps
/// `0..lengths[s]`, the padding after them ignored.
///
/// # Panics
/// Unless `x` has `n·T·F` values and `y` `n·F`; as [`pick_forward`] for `lengths`.
pub fn mean_forward(y: &mut [f32], x: &[f32], g: &TimeGeom, n: usize, lengths: Option<&[u32]>) {
    g.check("sequence::mean_forward", x.len(), y.len(), n);
    let (t_len, f) = (g.steps, g.features);
    for (s, (y_s, x_s)) in y
        .chunks_exact_mut(f)
        .zip(x.chunks_exact(t_len * f))
        .enumerate()
    {
        let len = valid(g, lengths, n, s);
        let scale = 1.0 / len as f32;
        y_s.fill(0.0);
        for step in x_s.chunks_exact(f).take(len) {
            for (a, &b) in y_s.iter_mut().zip(step) {
                *a += b;
            }
        }
        for a in y_s.iter_mut() {
            *a *= scale;
        }
    }
}

/// The gradient of [`mean_forward`]: `d_x[s, t] += d_y[s] / T` (over the valid steps, with
/// `lengths`).
///
/// # Panics
/// As [`mean_forward`].
pub fn mean_backward(
    d_x: &mut [f32],
    d_y: &[f32],
    g: &TimeGeom,
    n: usize,
    lengths: Option<&[u32]>,
) {
    g.check("sequence::mean_backward", d_x.len(), d_y.len(), n);
    let (t_len, f) = (g.steps, g.features);
    for (s, (d_y_s, d_x_s)) in d_y
        .chunks_exact(f)
        .zip(d_x.chunks_exact_mut(t_len * f))
        .enumerate()
    {
        let len = valid(g, lengths, n, s);
        let scale = 1.0 / len as f32;
        for step in d_x_s.chunks_exact_mut(f).take(len) {
            for (a, &b) in step.iter_mut().zip(d_y_s) {
                *a += b * scale;
            }
        }
    }
}

/// `y[s] = max_t x[s, t]`, feature by feature; `idx` keeps the step of each maximum (the
/// first, on ties). With `lengths`, over sample `s`'s valid steps only.
///
/// # Panics
/// Unless `x` has `n·T·F` values and `y` and `idx` `n·F`; as [`pick_forward`] for `lengths`.
pub fn max_forward(
    y: &mut [f32],
    idx: &mut [u32],
    x: &[f32],
    g: &TimeGeom,
    n: usize,
    lengths: Option<&[u32]>,
) {
    g.check("sequence::max_forward", x.len(), y.len(), n);
    check_len(
        "sequence::max_forward",
        "idx",
        idx.len(),
        Some(n),
        &[g.features],
    );
    let (t_len, f) = (g.steps, g.features);
    for s in 0..n {
        let len = valid(g, lengths, n, s);
        for j in 0..f {
            let mut best = (f32::NEG_INFINITY, 0);
            for t in 0..len {
                let v = x[(s * t_len + t) * f + j];
                if v > best.0 || t == 0 {
                    best = (v, t);
                }
            }
            y[s * f + j] = best.0;
            idx[s * f + j] = best.1 as u32;
        }
    }
}

/// The gradient of [`max_forward`]: `d_x[s, idx] += d_y[s]`.
///
/// # Panics
/// As [`max_forward`].
pub fn max_backward(d_x: &mut [f32], d_y: &[f32], idx: &[u32], g: &TimeGeom, n: usize) {
    g.check("sequence::max_backward", d_x.len(), d_y.len(), n);
    check_len(
        "sequence::max_backward",
        "idx",
        idx.len(),
        Some(n),
        &[g.features],
    );
    let (t_len, f) = (g.steps, g.features);
    for s in 0..n {
        for j in 0..f {
            let t = idx[s * f + j] as usize;
            d_x[(s * t_len + t) * f + j] += d_y[s * f + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{check_gradient, dot, rng, uniform};

    const G: TimeGeom = TimeGeom {
        steps: 4,
        features: 6,
        directions: 2,
    };

    /// Two directions: the forward half from the last step, the backward half from the first;
    /// with lengths, the forward half from each sample's last valid step.
    #[test]
    fn pick_takes_each_directions_final_step() {
        let n = 2;
        let x: Vec<f32> = (0..n * 24).map(|v| v as f32).collect();
        let mut y = vec![f32::NAN; n * 6];
        pick_forward(&mut y, &x, &G, n, None);
        assert_eq!(y, [18., 19., 20., 3., 4., 5., 42., 43., 44., 27., 28., 29.]);
        pick_forward(&mut y, &x, &G, n, Some(&[1, 3]));
        assert_eq!(y, [0., 1., 2., 3., 4., 5., 36., 37., 38., 27., 28., 29.]);
    }

    #[test]
    #[should_panic(expected = "length 5 of sample 0 is not in 1..=4")]
    fn a_length_past_the_sequence_is_refused() {
        let mut y = vec![0.0; 6];
        pick_forward(&mut y, &[0.0; 24], &G, 1, Some(&[5]));
    }

    /// Each backward pass against finite differences of its forward pass.
    #[test]
    fn gradients_match_finite_differences() {
        let mut r = rng(5);
        let n = 3;
        let x = uniform(&mut r, n * 24);
        let w = uniform(&mut r, n * 6);
        let lengths = [2, 4, 1];
        for lens in [None, Some(&lengths[..])] {
            let mut d_x = vec![0.0; x.len()];
            pick_backward(&mut d_x, &w, &G, n, lens);
            check_gradient("pick", &x, &d_x, 1e-2, 1e-3, |x| {
                let mut y = vec![0.0; n * 6];
                pick_forward(&mut y, x, &G, n, lens);
                dot(&w, &y)
            });
        }
        for lens in [None, Some(&lengths[..])] {
            let mut d_x = vec![0.0; x.len()];
            mean_backward(&mut d_x, &w, &G, n, lens);
            check_gradient("mean", &x, &d_x, 1e-2, 1e-3, |x| {
                let mut y = vec![0.0; n * 6];
                mean_forward(&mut y, x, &G, n, lens);
                dot(&w, &y)
            });
            let (mut y, mut idx) = (vec![0.0; n * 6], vec![0; n * 6]);
            max_forward(&mut y, &mut idx, &x, &G, n, lens);
            let mut d_x = vec![0.0; x.len()];
            max_backward(&mut d_x, &w, &idx, &G, n);
            check_gradient("max", &x, &d_x, 1e-3, 1e-3, |x| {
                let (mut y, mut idx) = (vec![0.0; n * 6], vec![0; n * 6]);
                max_forward(&mut y, &mut idx, x, &G, n, lens);
                dot(&w, &y)
            });
        }
    }

    /// With lengths, the poolings read only the valid steps: padding of any value changes
    /// nothing.
    #[test]
    fn poolings_ignore_the_padding() {
        let g = TimeGeom {
            steps: 3,
            features: 1,
            directions: 1,
        };
        let x = [1.0, 3.0, 100.0, -2.0, -4.0, 100.0];
        let mut y = [0.0; 2];
        mean_forward(&mut y, &x, &g, 2, Some(&[2, 1]));
        assert_eq!(y, [2.0, -2.0]);
        let mut idx = [0; 2];
        max_forward(&mut y, &mut idx, &x, &g, 2, Some(&[2, 2]));
        assert_eq!((y, idx), ([3.0, -2.0], [1, 0]));
    }
}
