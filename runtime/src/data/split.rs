//! Seeded random train/validation splits, plain or stratified by class.

use super::{shuffled_indices, Dataset};
use crate::{Error, Result};

impl Dataset {
    /// Splits off a random validation set of `round(validation * len())` samples, chosen by
    /// the seeded permutation [`shuffled_indices(len, seed)`](shuffled_indices); returns
    /// `(train, validation)`. Both keep the samples in their original order, and the same seed
    /// gives the same split on every machine.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `validation` is not a fraction in `[0, 1]`.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Dataset;
    ///
    /// let data = Dataset::new((0..10).map(|v| v as f32).collect(), vec![0; 10], [1, 1, 1], 1)?;
    /// let (train, valid) = data.split(0.2, 7)?;
    /// assert_eq!((train.len(), valid.len()), (8, 2));
    /// assert_eq!(data.split(0.2, 7)?, (train, valid)); // the same seed, the same split
    /// assert!(data.split(1.5, 7).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn split(&self, validation: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        check_fraction(validation)?;
        let order = shuffled_indices(self.len(), seed);
        let held_out = share(order.len(), validation);
        self.split_at_indices(&order[..held_out])
    }

    /// Like [`split`](Dataset::split), but holds out `round(validation * n)` samples of each
    /// class of `n` samples, so that both parts have the classes in the proportions of the
    /// whole (as far as rounding allows). Which samples of a class are held out follows the
    /// order of [`shuffled_indices(len, seed)`](shuffled_indices).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `validation` is not a fraction in `[0, 1]`.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Dataset;
    ///
    /// // 90 samples of class 0 and 10 of class 1.
    /// let labels: Vec<usize> = (0..100).map(|i| usize::from(i >= 90)).collect();
    /// let data = Dataset::new(vec![0.0; 100], labels, [1, 1, 1], 2)?;
    /// let (train, valid) = data.split_stratified(0.2, 1)?;
    /// let ones = |d: &Dataset| d.labels().iter().filter(|&&l| l == 1).count();
    /// assert_eq!((valid.len(), ones(&valid)), (20, 2));
    /// assert_eq!((train.len(), ones(&train)), (80, 8));
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn split_stratified(&self, validation: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        check_fraction(validation)?;
        let mut by_class = vec![Vec::new(); self.classes()];
        for i in shuffled_indices(self.len(), seed) {
            by_class[self.labels()[i]].push(i);
        }
        let held_out: Vec<usize> = by_class
            .iter()
            .flat_map(|members| &members[..share(members.len(), validation)])
            .copied()
            .collect();
        self.split_at_indices(&held_out)
    }

    /// `(the samples not in held_out, the samples in held_out)`, each in the original order.
    fn split_at_indices(&self, held_out: &[usize]) -> Result<(Dataset, Dataset)> {
        let mut is_held_out = vec![false; self.len()];
        for &i in held_out {
            is_held_out[i] = true;
        }
        let (valid, train): (Vec<usize>, Vec<usize>) =
            (0..self.len()).partition(|&i| is_held_out[i]);
        Ok((self.subset(&train)?, self.subset(&valid)?))
    }
}

fn check_fraction(validation: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&validation) {
        return Err(Error::Config {
            name: "validation fraction",
            reason: format!("expected a fraction in [0, 1], found {validation}"),
        });
    }
    Ok(())
}

/// `round(fraction * n)`, at most `n`.
fn share(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` samples whose one value is their index, labelled by `label(i)`.
    fn indexed(n: usize, classes: usize, label: impl Fn(usize) -> usize) -> Dataset {
        let images = (0..n).map(|i| i as f32).collect();
        Dataset::new(images, (0..n).map(label).collect(), [1, 1, 1], classes).unwrap()
    }

    /// The original indices of a split's samples.
    fn indices(data: &Dataset) -> Vec<usize> {
        data.images().iter().map(|&v| v as usize).collect()
    }

    #[test]
    fn split_is_a_seeded_partition_in_original_order() {
        let data = indexed(50, 3, |i| i % 3);
        let (train, valid) = data.split(0.3, 11).unwrap();
        assert_eq!((train.len(), valid.len()), (35, 15));
        let (t, v) = (indices(&train), indices(&valid));
        assert!(
            t.windows(2).all(|w| w[0] < w[1]),
            "train out of order: {t:?}"
        );
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "validation out of order: {v:?}"
        );
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        // Labels travel with their images.
        assert!(train.labels().iter().zip(&t).all(|(&l, &i)| l == i % 3));
        // The held-out samples are the first 15 of the seeded permutation.
        let mut expected: Vec<usize> = shuffled_indices(50, 11)[..15].to_vec();
        expected.sort_unstable();
        assert_eq!(v, expected);
        assert_ne!(
            data.split(0.3, 12).unwrap().1,
            valid,
            "the seed changes nothing"
        );
    }

    #[test]
    fn split_edges() {
        let data = indexed(10, 2, |i| i % 2);
        let (train, valid) = data.split(0.0, 1).unwrap();
        assert_eq!((train, valid.len()), (data.clone(), 0));
        let (train, valid) = data.split(1.0, 1).unwrap();
        assert_eq!((train.len(), valid.len()), (0, 10));
        let empty = data.take(0);
        let (train, valid) = empty.split_stratified(0.5, 1).unwrap();
        assert!(train.is_empty() && valid.is_empty());
        for bad in [-0.1, 1.01, f64::NAN] {
            let err = data.split(bad, 1).unwrap_err();
            assert!(
                err.to_string().starts_with(
                    "invalid validation fraction: expected a fraction in [0, 1], found"
                ),
                "{err}"
            );
            assert!(data.split_stratified(bad, 1).is_err());
        }
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        // Classes of 60, 30 and 10 samples, interleaved unevenly.
        let label = |i: usize| match i % 10 {
            0..=5 => 0,
            6..=8 => 1,
            _ => 2,
        };
        let data = indexed(100, 4, label);
        let (train, valid) = data.split_stratified(0.2, 3).unwrap();
        let histogram = |d: &Dataset| {
            let mut counts = [0; 4];
            for &l in d.labels() {
                counts[l] += 1;
            }
            counts
        };
        assert_eq!(histogram(&valid), [12, 6, 2, 0]);
        assert_eq!(histogram(&train), [48, 24, 8, 0]);
        let mut all: Vec<usize> = indices(&train).into_iter().chain(indices(&valid)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // A plain split of the same data is not stratified, for this seed at least.
        assert_ne!(histogram(&data.split(0.2, 3).unwrap().1), [12, 6, 2, 0]);
    }
}
