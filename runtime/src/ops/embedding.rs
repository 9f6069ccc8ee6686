//! An embedding: token ids into vectors, PyTorch's `nn.Embedding(vocab, dim)`. The forward
//! pass gathers rows of the weight, the backward pass adds each step's output gradient into the
//! row it was read from. Token ids arrive as `f32` values holding whole numbers (every value of
//! striate's tape is an `f32`; ids up to 2^24 are exact); [`check_ids`] is the public check.

use super::check_len;
use crate::{Error, Result};

/// The geometry of an embedding: its vocabulary and width, and the steps per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EmbeddingGeom {
    /// Token ids are `0..vocab`.
    pub vocab: usize,
    /// Features per token.
    pub dim: usize,
    /// Tokens per sample, `T`.
    pub steps: usize,
}

/// The largest vocabulary whose ids an `f32` holds exactly, 2^24.
pub const MAX_VOCAB: usize = 1 << 24;

/// Checks that every value of `ids` is a token id of a vocabulary of `vocab`: a whole number
/// in `0..vocab`.
///
/// # Errors
/// [`Error::TokenOutOfRange`] naming `what`, the first bad value, its index and the vocabulary.
///
/// # Example
/// ```
/// use striate::ops::embedding::check_ids;
///
/// assert!(check_ids("input", [0.0, 4.0, 2.0], 5).is_ok());
/// let err = check_ids("input", [0.0, 5.0], 5).unwrap_err();
/// assert!(err.to_string().contains("found 5 at index 1"), "{err}");
/// assert!(check_ids("input", [1.5], 5).is_err());
/// ```
pub fn check_ids(what: &str, ids: impl IntoIterator<Item = f32>, vocab: usize) -> Result<()> {
    check_ids_with(|| what.to_string(), ids, vocab)
}

/// [`check_ids`] with `what` made only for an error, so that a good input allocates nothing.
pub(crate) fn check_ids_with(
    what: impl FnOnce() -> String,
    ids: impl IntoIterator<Item = f32>,
    vocab: usize,
) -> Result<()> {
    match ids
        .into_iter()
        .enumerate()
        .find(|&(_, v)| !((0.0..vocab as f32).contains(&v) && v.fract() == 0.0))
    {
        Some((index, found)) => Err(Error::TokenOutOfRange {
            what: what(),
            found,
            index,
            vocab,
        }),
        None => Ok(()),
    }
}

/// The row of `weight` that token `id` reads.
///
/// # Panics
/// When `id` is not a token id (the network checks its input with [`check_ids`] first).
fn row(id: f32, g: &EmbeddingGeom) -> usize {
    assert!(
        (0.0..g.vocab as f32).contains(&id) && id.fract() == 0.0,
        "embedding: {id} is not a token id below {}",
        g.vocab
    );
    id as usize
}

/// `y[s, t] = weight[ids[s, t]]`: each token's row of the weight `[vocab, dim]`.
///
/// # Panics
/// Unless `y` has `n·T·dim` values, `ids` `n·T` and `weight` `vocab·dim` (checked before
/// anything is written), or when an id is not a whole number in `0..vocab`.
///
/// # Example
/// ```
/// use striate::ops::embedding::{forward, EmbeddingGeom};
///
/// let g = EmbeddingGeom { vocab: 3, dim: 2, steps: 2 };
/// let weight = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0];
/// let mut y = [0.0; 4];
/// forward(&mut y, &[2.0, 0.0], &weight, &g, 1);
/// assert_eq!(y, [20.0, 21.0, 0.0, 1.0]);
/// ```
pub fn forward(y: &mut [f32], ids: &[f32], weight: &[f32], g: &EmbeddingGeom, n: usize) {
    // ids: (N, T), weight: (V, D) -> y: (N, T, D)
    let kernel = "embedding::forward";
    check_len(kernel, "y", y.len(), Some(n), &[g.steps, g.dim]);
    check_len(kernel, "ids", ids.len(), Some(n), &[g.steps]);
    check_len(kernel, "weight", weight.len(), None, &[g.vocab, g.dim]);
    for (out, &id) in y.chunks_exact_mut(g.dim.max(1)).zip(ids) {
        let r = row(id, g);
        out.copy_from_slice(&weight[r * g.dim..][..g.dim]);
    }
}

/// The gradient of [`forward`]: `d_weight[ids[s, t]] += d_y[s, t]` (a token read twice gets
/// both gradients). Token ids have no gradient.
///
/// # Panics
/// As [`forward`], for `d_y` and `d_weight`.
pub fn backward(d_weight: &mut [f32], d_y: &[f32], ids: &[f32], g: &EmbeddingGeom, n: usize) {
    // d_y: (N, T, D), ids: (N, T) -> d_weight: (V, D)
    let kernel = "embedding::backward";
    check_len(kernel, "d_y", d_y.len(), Some(n), &[g.steps, g.dim]);
    check_len(kernel, "ids", ids.len(), Some(n), &[g.steps]);
    check_len(kernel, "d_weight", d_weight.len(), None, &[g.vocab, g.dim]);
    for (d, &id) in d_y.chunks_exact(g.dim.max(1)).zip(ids) {
        let r = row(id, g);
        for (a, &b) in d_weight[r * g.dim..][..g.dim].iter_mut().zip(d) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{check_gradient, dot, rng, uniform};

    /// The plain definition, one value at a time.
    fn reference(ids: &[f32], weight: &[f32], g: &EmbeddingGeom) -> Vec<f32> {
        let mut y = Vec::new();
        for &id in ids {
            for k in 0..g.dim {
                y.push(weight[id as usize * g.dim + k]);
            }
        }
        y
    }

    /// Against the reference on sizes 0, 1 and odd ones, with ids repeated; outputs start as
    /// NaN so that an unwritten value shows.
    #[test]
    fn forward_matches_the_reference() {
        let mut r = rng(1);
        for (n, steps, vocab, dim) in [(0, 3, 4, 2), (1, 1, 1, 1), (3, 5, 7, 3), (2, 9, 3, 17)] {
            let g = EmbeddingGeom { vocab, dim, steps };
            let weight = uniform(&mut r, vocab * dim);
            let ids: Vec<f32> = (0..n * steps)
                .map(|i| ((i * 5 + 1) % vocab) as f32)
                .collect();
            let mut y = vec![f32::NAN; n * steps * dim];
            forward(&mut y, &ids, &weight, &g, n);
            assert_eq!(y, reference(&ids, &weight, &g), "{g:?} n={n}");
        }
    }

    /// Scatter-add agrees with finite differences of the gather, repeated tokens included, and
    /// accumulates into what the gradient holds.
    #[test]
    fn backward_matches_finite_differences() {
        let mut r = rng(2);
        let (n, g) = (
            3,
            EmbeddingGeom {
                vocab: 4,
                dim: 3,
                steps: 5,
            },
        );
        let weight = uniform(&mut r, 12);
        let ids: Vec<f32> = (0..n * g.steps).map(|i| ((i * 7) % 3) as f32).collect();
        let d_y = uniform(&mut r, n * g.steps * g.dim);
        let mut d_w = vec![0.0; weight.len()];
        backward(&mut d_w, &d_y, &ids, &g, n);
        check_gradient("weight", &weight, &d_w, 1e-3, 1e-3, |w| {
            let mut y = vec![0.0; d_y.len()];
            forward(&mut y, &ids, w, &g, n);
            dot(&d_y, &y)
        });
        // Token 3 is never read: its row has no gradient.
        assert!(d_w[9..].iter().all(|&v| v == 0.0));
        let once = d_w.clone();
        backward(&mut d_w, &d_y, &ids, &g, n);
        for (a, b) in d_w.iter().zip(&once) {
            assert!((a - 2.0 * b).abs() < 1e-6);
        }
    }

    /// Negative, fractional, too large and non-finite ids are refused, naming the first.
    #[test]
    fn bad_ids_are_a_typed_error() {
        for (ids, index) in [
            (vec![0.0, -1.0], 1),
            (vec![2.5], 0),
            (vec![1.0, 2.0, 3.0], 2),
            (vec![f32::NAN], 0),
            (vec![f32::INFINITY], 0),
        ] {
            match check_ids("input of Net", ids.iter().copied(), 3) {
                Err(Error::TokenOutOfRange {
                    index: i, vocab: 3, ..
                }) => assert_eq!(i, index, "{ids:?}"),
                other => panic!("{ids:?}: {other:?}"),
            }
        }
        assert!(check_ids("x", [0.0, 1.0, 2.0], 3).is_ok());
    }
}
