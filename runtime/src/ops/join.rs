//! The joins of blocks: a residual block's sum, a concat block's channel (or feature) join.
//!
//! A join computes its output one input at a time, so that the generated code can hand it each
//! input as a separate slice of the tape; the backward pass likewise adds into one input's
//! gradient at a time. Gradients accumulate (`+=`), as everywhere in `ops`.

/// `y = x` (`first`) or `y += x`: one term of a sum.
///
/// # Panics
/// When `y` and `x` differ in length.
pub fn add_forward(y: &mut [f32], x: &[f32], first: bool) {
    assert!(
        y.len() == x.len(),
        "join::add_forward: y has {} values, x has {}",
        y.len(),
        x.len()
    );
    if first {
        y.copy_from_slice(x);
    } else {
        for (a, b) in y.iter_mut().zip(x) {
            *a += b;
        }
    }
}

/// `d_x += d_y`: a term of a sum receives the sum's gradient.
///
/// # Panics
/// When `d_x` and `d_y` differ in length.
pub fn add_backward(d_x: &mut [f32], d_y: &[f32]) {
    assert!(
        d_x.len() == d_y.len(),
        "join::add_backward: d_x has {} values, d_y has {}",
        d_x.len(),
        d_y.len()
    );
    for (a, b) in d_x.iter_mut().zip(d_y) {
        *a += b;
    }
}

/// Copies each of the `n` samples of `x` (`part` values each) into values `at..at + part` of
/// the same sample of `y` (`whole` values each): one branch of a concat.
///
/// # Panics
/// When the slices do not hold `n` samples of those sizes, or the part does not fit.
pub fn concat_forward(y: &mut [f32], x: &[f32], n: usize, part: usize, whole: usize, at: usize) {
    check(
        "concat_forward",
        ("y", y.len()),
        ("x", x.len()),
        n,
        part,
        whole,
        at,
    );
    if part == 0 {
        return;
    }
    for (ys, xs) in y.chunks_exact_mut(whole).zip(x.chunks_exact(part)) {
        ys[at..at + part].copy_from_slice(xs);
    }
}

/// Adds values `at..at + part` of each sample of `d_y` into `d_x`: the gradient of one branch
/// of a concat.
///
/// # Panics
/// As [`concat_forward`].
pub fn concat_backward(
    d_x: &mut [f32],
    d_y: &[f32],
    n: usize,
    part: usize,
    whole: usize,
    at: usize,
) {
    check(
        "concat_backward",
        ("d_y", d_y.len()),
        ("d_x", d_x.len()),
        n,
        part,
        whole,
        at,
    );
    if part == 0 {
        return;
    }
    for (xs, ys) in d_x.chunks_exact_mut(part).zip(d_y.chunks_exact(whole)) {
        for (a, b) in xs.iter_mut().zip(&ys[at..at + part]) {
            *a += b;
        }
    }
}

/// Checks that the part fits in a sample and that the slices hold `n` samples: the first of
/// `whole` values each, the second of `part`.
fn check(
    what: &str,
    (whole_name, whole_len): (&str, usize),
    (part_name, part_len): (&str, usize),
    n: usize,
    part: usize,
    whole: usize,
    at: usize,
) {
    assert!(
        at.checked_add(part).is_some_and(|end| end <= whole),
        "join::{what}: values {at}..{} of a sample of {whole}",
        at.saturating_add(part)
    );
    for (name, len, per) in [(whole_name, whole_len, whole), (part_name, part_len, part)] {
        assert!(
            Some(len) == n.checked_mul(per),
            "join::{what}: {name} has {len} values, expected {} (n = {n} x {per})",
            n.saturating_mul(per)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_round_trip() {
        // Two samples: branch a has 2 values each, branch b 3.
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let mut y = [0.0; 10];
        concat_forward(&mut y, &a, 2, 2, 5, 0);
        concat_forward(&mut y, &b, 2, 3, 5, 2);
        assert_eq!(y, [1.0, 2.0, 5.0, 6.0, 7.0, 3.0, 4.0, 8.0, 9.0, 10.0]);
        let mut d_b = [1.0; 6];
        concat_backward(&mut d_b, &y, 2, 3, 5, 2);
        assert_eq!(d_b, [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    }

    #[test]
    fn sums_accumulate() {
        let mut y = [0.0; 3];
        add_forward(&mut y, &[1.0, 2.0, 3.0], true);
        add_forward(&mut y, &[1.0, 1.0, 1.0], false);
        assert_eq!(y, [2.0, 3.0, 4.0]);
        let mut d = [1.0; 3];
        add_backward(&mut d, &y);
        assert_eq!(d, [3.0, 4.0, 5.0]);
    }

    #[test]
    fn wrong_lengths_panic() {
        assert!(std::panic::catch_unwind(|| add_forward(&mut [0.0; 2], &[0.0; 3], true)).is_err());
        assert!(std::panic::catch_unwind(|| {
            concat_forward(&mut [0.0; 10], &[0.0; 4], 2, 2, 5, 4)
        })
        .is_err());
        assert!(std::panic::catch_unwind(|| {
            concat_backward(&mut [0.0; 3], &[0.0; 10], 2, 2, 5, 0)
        })
        .is_err());
    }
}
