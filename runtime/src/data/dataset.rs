//! A labelled set of images held in memory, and the ways to cut it into batches.

use std::fmt;
use std::iter::FusedIterator;

use ndarray::{Array4, ArrayView3, ArrayView4, ArrayViewMut4};
use rand::{RngCore, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::{Error, Result};

/// Images with one class label each, held in memory as `f32`.
///
/// Images are stored flat in `(N, C, H, W)` order; the pixels of MNIST are scaled to `[0, 1]`
/// (`x / 255`). Every label is below [`classes`](Dataset::classes).
///
/// # Example
///
/// ```
/// use striate::data::{Dataset, Order};
///
/// // Four 1x2x2 images, labelled 0, 1, 1, 0.
/// let images: Vec<f32> = (0..16).map(|v| v as f32 / 16.0).collect();
/// let data = Dataset::new(images, vec![0, 1, 1, 0], [1, 2, 2], 2)?;
/// assert_eq!(data.len(), 4);
/// assert_eq!(data.image(1)?[[0, 0, 1]], 5.0 / 16.0);
///
/// let batches: Vec<_> = data.batches(3, Order::Sequential)?.collect();
/// assert_eq!(batches.len(), 2); // a full batch of 3, then the last one
/// assert_eq!(batches[1].0.shape(), [1, 1, 2, 2]);
/// assert_eq!(batches[1].1, [0]);
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// `N*C*H*W` values.
    images: Vec<f32>,
    /// `N` labels, each below `classes`.
    labels: Vec<usize>,
    /// `[C, H, W]`, each positive.
    sample_shape: [usize; 3],
    classes: usize,
}

// The derived `Debug` would print every pixel.
impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .field("sample_shape", &self.sample_shape)
            .field("classes", &self.classes)
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// A dataset of `labels.len()` samples of shape `sample_shape = [C, H, W]`, whose images are
    /// `images`, flat in `(N, C, H, W)` order.
    ///
    /// # Errors
    ///
    /// - [`Error::Config`] if `classes` is zero or a dimension of `sample_shape` is zero;
    /// - [`Error::LabelCount`] if the images hold a whole number of samples but not one per label;
    /// - [`Error::Shape`] if `images.len()` is not a multiple of `C*H*W`;
    /// - [`Error::LabelOutOfRange`] for the first label that is not below `classes`;
    /// - [`Error::NonFinite`] for the first pixel that is NaN or infinite, naming its flat index
    ///   and its sample, channel, row and column.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::{data::Dataset, Error};
    ///
    /// let err = Dataset::new(vec![0.0; 8], vec![0, 1, 2], [1, 2, 2], 3).unwrap_err();
    /// assert!(matches!(err, Error::LabelCount { expected: 2, found: 3 }));
    ///
    /// let err = Dataset::new(vec![0.0; 8], vec![0, 3], [1, 2, 2], 3).unwrap_err();
    /// assert!(matches!(err, Error::LabelOutOfRange { label: 3, index: 1, classes: 3 }));
    /// ```
    pub fn new(
        images: Vec<f32>,
        labels: Vec<usize>,
        sample_shape: [usize; 3],
        classes: usize,
    ) -> Result<Self> {
        if classes == 0 {
            return Err(Error::Config {
                name: "classes",
                reason: "a dataset needs at least one class, found 0".into(),
            });
        }
        if sample_shape.contains(&0) {
            return Err(Error::Config {
                name: "sample_shape",
                reason: format!(
                    "every dimension of [C, H, W] must be positive, found {sample_shape:?}"
                ),
            });
        }
        let [c, h, w] = sample_shape;
        let sample_len = c
            .checked_mul(h)
            .and_then(|ch| ch.checked_mul(w))
            .ok_or_else(|| Error::Config {
                name: "sample_shape",
                reason: format!("{c}*{h}*{w} values per sample overflow a usize"),
            })?;
        if !images.len().is_multiple_of(sample_len) {
            return Err(Error::shape(
                format!(
                    "dataset images (flat N*C*H*W with [C, H, W] = {sample_shape:?}; {} values \
                     are not a whole number of samples)",
                    images.len()
                ),
                &[labels.len(), c, h, w],
                &[images.len()],
            ));
        }
        let samples = images.len() / sample_len;
        if samples != labels.len() {
            return Err(Error::LabelCount {
                expected: samples,
                found: labels.len(),
            });
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(Error::LabelOutOfRange {
                label,
                index,
                classes,
            });
        }
        Error::check_finite(
            &images,
            || {
                let at = crate::limits::first_non_finite(&images).unwrap_or(0);
                let (n, rest) = (at / sample_len, at % sample_len);
                let (ch, y, x) = (rest / (h * w), rest / w % h, rest % w);
                format!("dataset images (sample {n}, channel {ch}, row {y}, column {x})")
            },
            "; one such pixel makes every weight NaN after one training step",
        )?;
        Ok(Dataset {
            images,
            labels,
            sample_shape,
            classes,
        })
    }

    /// A dataset of the images `(N, C, H, W)` (any memory layout; the values are copied in
    /// row-major order) with one label each, every label below `classes`.
    ///
    /// `classes` is given rather than read off the largest label, so that a validation split
    /// or a small test set that happens to lack the last class still says how many there are.
    ///
    /// # Errors
    ///
    /// As [`Dataset::new`]: [`Error::Config`] if `classes` or a dimension of `C, H, W` is
    /// zero; [`Error::LabelCount`] naming both counts if there is not one label per image;
    /// [`Error::LabelOutOfRange`] for the first label that is not below `classes`;
    /// [`Error::NonFinite`] for the first NaN or infinite pixel, naming where it is.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::prelude::*;
    ///
    /// // Six 3-channel 4x4 images in 2 classes.
    /// let images = Array4::<f32>::from_shape_fn((6, 3, 4, 4), |(n, c, _, _)| (n + c) as f32);
    /// let data = Dataset::from_arrays(images, [0, 1, 0, 1, 1, 0], 2)?;
    /// assert_eq!((data.len(), data.sample_shape(), data.classes()), (6, [3, 4, 4], 2));
    ///
    /// // Five labels for six images is an error naming both counts.
    /// let images = Array4::<f32>::zeros((6, 3, 4, 4));
    /// let err = Dataset::from_arrays(images, vec![0; 5], 2).unwrap_err();
    /// assert_eq!(err.to_string(), "expected 6 labels (one per sample), found 5");
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn from_arrays(
        images: Array4<f32>,
        labels: impl IntoIterator<Item = usize>,
        classes: usize,
    ) -> Result<Self> {
        let (_, c, h, w) = images.dim();
        let len = images.len();
        let values = if images.is_standard_layout() {
            // Row-major and contiguous from the offset on: take the storage as it is.
            let (mut values, offset) = images.into_raw_vec_and_offset();
            let offset = offset.unwrap_or(0);
            values.truncate(offset + len);
            values.drain(..offset);
            values
        } else {
            images.iter().copied().collect()
        };
        Dataset::new(values, labels.into_iter().collect(), [c, h, w], classes)
    }

    /// The number of samples `N`.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The shape `[C, H, W]` of one sample.
    pub fn sample_shape(&self) -> [usize; 3] {
        self.sample_shape
    }

    /// The number of values in one sample, `C*H*W`.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// The number of classes; every label is below it.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All images, `(N, C, H, W)`.
    pub fn images(&self) -> ArrayView4<'_, f32> {
        let [c, h, w] = self.sample_shape;
        ArrayView4::from_shape((self.len(), c, h, w), &self.images)
            .expect("Dataset::new checked that images hold N*C*H*W values")
    }

    /// All images, `(N, C, H, W)`, mutably (for transforms such as
    /// [`Normalize`](super::Normalize)).
    pub(crate) fn images_mut(&mut self) -> ArrayViewMut4<'_, f32> {
        let [c, h, w] = self.sample_shape;
        ArrayViewMut4::from_shape((self.len(), c, h, w), &mut self.images)
            .expect("Dataset::new checked that images hold N*C*H*W values")
    }

    /// All labels, one per sample.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Sample `i`'s image, `(C, H, W)`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the index and the length if `i >= self.len()`.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Dataset;
    ///
    /// let data = Dataset::new(vec![0.5, 1.0], vec![0, 1], [1, 1, 1], 2)?;
    /// assert_eq!(data.image(1)?[[0, 0, 0]], 1.0);
    /// assert_eq!(
    ///     data.image(2).unwrap_err().to_string(),
    ///     "invalid sample index: expected an index below 2 (the dataset's length), found 2"
    /// );
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn image(&self, i: usize) -> Result<ArrayView3<'_, f32>> {
        self.check_index(i)?;
        let [c, h, w] = self.sample_shape;
        let len = self.sample_len();
        Ok(
            ArrayView3::from_shape((c, h, w), &self.images[i * len..(i + 1) * len])
                .expect("a sample slice holds C*H*W values"),
        )
    }

    /// Copies the samples at `indices`, in that order, into `x` (flat `(B, C, H, W)`, with
    /// `B = indices.len()`) and their labels into `y`.
    ///
    /// Both buffers are cleared first and then filled, so reusing them across batches of the same
    /// size allocates nothing once they have grown. This is the allocation-free path for
    /// training loops; [`batches`](Dataset::batches) is the convenient one.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first index that is not below `self.len()`; the buffers
    /// then hold the samples before it.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::{shuffled_indices, Dataset};
    ///
    /// let data = Dataset::new((0..6).map(|v| v as f32).collect(), vec![0, 1, 2], [1, 1, 2], 3)?;
    /// let (mut x, mut y) = (Vec::new(), Vec::new());
    /// data.gather(&[2, 0], &mut x, &mut y)?;
    /// assert_eq!(x, [4.0, 5.0, 0.0, 1.0]);
    /// assert_eq!(y, [2, 0]);
    ///
    /// // A shuffled epoch in batches of 2, reusing the buffers.
    /// let order = shuffled_indices(data.len(), 7);
    /// for batch in order.chunks(2) {
    ///     data.gather(batch, &mut x, &mut y)?;
    ///     assert_eq!(x.len(), batch.len() * data.sample_len());
    /// }
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn gather(&self, indices: &[usize], x: &mut Vec<f32>, y: &mut Vec<usize>) -> Result<()> {
        let len = self.sample_len();
        x.clear();
        y.clear();
        x.reserve(indices.len() * len);
        y.reserve(indices.len());
        for &i in indices {
            self.check_index(i)?;
            x.extend_from_slice(&self.images[i * len..(i + 1) * len]);
            y.push(self.labels[i]);
        }
        Ok(())
    }

    /// A new dataset holding copies of the samples at `indices`, in that order (an index may
    /// repeat).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first index that is not below `self.len()`.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Dataset;
    ///
    /// let data = Dataset::new(vec![0.0, 1.0, 2.0], vec![0, 1, 2], [1, 1, 1], 3)?;
    /// assert_eq!(data.subset(&[2, 0])?.labels(), [2, 0]);
    /// assert!(data.subset(&[3]).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        self.gather(indices, &mut images, &mut labels)?;
        Ok(Dataset {
            images,
            labels,
            sample_shape: self.sample_shape,
            classes: self.classes,
        })
    }

    /// An iterator over batches of `batch` samples as owned `(x, y)` pairs, `x` being
    /// `(B, C, H, W)`, in the given [`Order`].
    ///
    /// The last batch is smaller when `batch` does not divide `len()`; it is kept unless
    /// [`Batches::drop_last`] says otherwise. For a new order every epoch, pass a new seed
    /// (for example the base seed plus the epoch).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `batch` is zero.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::{Dataset, Order};
    ///
    /// let data = Dataset::new(vec![0.0; 10], vec![0; 10], [1, 1, 1], 1)?;
    /// assert_eq!(data.batches(4, Order::Shuffled { seed: 1 })?.len(), 3);
    /// assert_eq!(data.batches(4, Order::Sequential)?.drop_last(true).len(), 2);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn batches(&self, batch: usize, order: Order) -> Result<Batches<'_>> {
        Error::check_batch(batch)?;
        let order = match order {
            Order::Sequential => (0..self.len()).collect(),
            Order::Shuffled { seed } => shuffled_indices(self.len(), seed),
        };
        Ok(Batches {
            data: self,
            order,
            batch,
            next: 0,
            drop_last: false,
        })
    }

    /// A new dataset holding copies of the first `min(n, len())` samples, for quick tests.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Dataset;
    ///
    /// let data = Dataset::new(vec![0.0; 10], vec![0; 10], [1, 1, 1], 1)?;
    /// assert_eq!(data.take(3).len(), 3);
    /// assert_eq!(data.take(99).len(), 10);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            images: self.images[..n * self.sample_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            sample_shape: self.sample_shape,
            classes: self.classes,
        }
    }

    /// Splits the dataset in two, like [`Vec::split_off`]: `self` keeps the samples `[0, at)`
    /// and the samples `[at, len)` are returned. To hold out a random validation set, see
    /// [`split`](Dataset::split) and [`split_stratified`](Dataset::split_stratified).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `at` and the length if `at > self.len()`; `self` is unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Dataset;
    ///
    /// let mut train = Dataset::new(vec![0.0; 10], (0..10).collect(), [1, 1, 1], 10)?;
    /// let valid = train.split_off(8)?;
    /// assert!(train.split_off(9).is_err());
    /// assert_eq!((train.len(), valid.len()), (8, 2));
    /// assert_eq!(valid.labels(), [8, 9]);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn split_off(&mut self, at: usize) -> Result<Dataset> {
        if at > self.len() {
            return Err(Error::Config {
                name: "split point",
                reason: format!(
                    "expected at most {} (the dataset's length), found {at}",
                    self.len()
                ),
            });
        }
        Ok(Dataset {
            images: self.images.split_off(at * self.sample_len()),
            labels: self.labels.split_off(at),
            sample_shape: self.sample_shape,
            classes: self.classes,
        })
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i >= self.len() {
            return Err(Error::Config {
                name: "sample index",
                reason: format!(
                    "expected an index below {} (the dataset's length), found {i}",
                    self.len()
                ),
            });
        }
        Ok(())
    }
}

/// The order in which [`Dataset::batches`] visits the samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Samples `0, 1, 2, ...`.
    #[default]
    Sequential,
    /// The permutation [`shuffled_indices(len, seed)`](shuffled_indices).
    Shuffled {
        /// The seed of the permutation; the same seed gives the same order.
        seed: u64,
    },
}

/// An iterator over owned `(x, y)` batches of a [`Dataset`], made by [`Dataset::batches`].
///
/// `x` is `(B, C, H, W)` and `y` holds the `B` labels. By default the last, partial batch is
/// kept; [`drop_last(true)`](Batches::drop_last) drops it.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    data: &'a Dataset,
    /// Every sample index, in visiting order.
    order: Vec<usize>,
    batch: usize,
    /// Position in `order` of the next batch's first sample.
    next: usize,
    drop_last: bool,
}

impl Batches<'_> {
    /// Whether to drop the last batch when it has fewer than `batch` samples (default `false`:
    /// keep it).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The sample indices, in the order the batches visit them.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for Batches<'_> {
    type Item = (Array4<f32>, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let remaining = self.order.len() - self.next;
        let size = remaining.min(self.batch);
        if size == 0 || (self.drop_last && size < self.batch) {
            return None;
        }
        let indices = &self.order[self.next..self.next + size];
        self.next += size;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        self.data
            .gather(indices, &mut x, &mut y)
            .expect("the order is a permutation of the dataset's indices");
        let [c, h, w] = self.data.sample_shape;
        let x = Array4::from_shape_vec((size, c, h, w), x)
            .expect("gather fills B*C*H*W values for B indices");
        Some((x, y))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.order.len() - self.next;
        let count = if self.drop_last {
            remaining / self.batch
        } else {
            remaining.div_ceil(self.batch)
        };
        (count, Some(count))
    }
}

impl ExactSizeIterator for Batches<'_> {}

impl FusedIterator for Batches<'_> {}

/// A permutation of `0..n`, the same for the same `(n, seed)` on every platform.
///
/// Fisher–Yates driven by SplitMix64, exactly as this Python reference (which benchmarks
/// outside Rust use to visit samples in the same order):
///
/// ```python
/// M = (1 << 64) - 1
/// def splitmix64(seed):
///     state = seed & M
///     while True:
///         state = (state + 0x9E3779B97F4A7C15) & M
///         z = state
///         z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
///         z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
///         yield z ^ (z >> 31)
///
/// def shuffled_indices(n, seed):
///     r = splitmix64(seed)
///     p = list(range(n))
///     for i in range(n - 1, 0, -1):
///         j = next(r) % (i + 1)
///         p[i], p[j] = p[j], p[i]
///     return p
/// ```
///
/// (The modulo is slightly biased for huge `n`; it is kept because the reference has it.)
///
/// # Example
///
/// ```
/// use striate::data::shuffled_indices;
///
/// assert_eq!(shuffled_indices(10, 0x5EED0000), [7, 4, 5, 3, 8, 2, 1, 9, 0, 6]);
/// ```
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    // `seed_from_u64` sets SplitMix64's state to `seed` itself, as the reference does.
    let mut rng = SplitMix64::seed_from_u64(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.next_u64() % (i as u64 + 1);
        // `j <= i`, so it fits in a usize.
        p.swap(i, j as usize);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` samples of shape `[1, 1, 2]` whose values are `[10*i, 10*i + 1]`, labelled `i % 3`.
    fn numbered(n: usize) -> Dataset {
        let images = (0..n)
            .flat_map(|i| [10.0 * i as f32, 10.0 * i as f32 + 1.0])
            .collect();
        Dataset::new(images, (0..n).map(|i| i % 3).collect(), [1, 1, 2], 3).unwrap()
    }

    /// Pinned against the Python reference in [`shuffled_indices`]' docs:
    ///
    /// ```python
    /// print(shuffled_indices(10, 0x5EED0000))  # [7, 4, 5, 3, 8, 2, 1, 9, 0, 6]
    /// print(shuffled_indices(7, 0))            # [6, 3, 1, 5, 4, 0, 2]
    /// print(shuffled_indices(1, 0x5EED0000), shuffled_indices(0, 1))  # [0] []
    /// ```
    #[test]
    fn shuffled_indices_match_python_reference() {
        assert_eq!(
            shuffled_indices(10, 0x5EED0000),
            [7, 4, 5, 3, 8, 2, 1, 9, 0, 6]
        );
        assert_eq!(shuffled_indices(7, 0), [6, 3, 1, 5, 4, 0, 2]);
        assert_eq!(shuffled_indices(1, 0x5EED0000), [0]);
        assert!(shuffled_indices(0, 1).is_empty());
    }

    #[test]
    fn shuffled_indices_is_a_permutation() {
        let mut p = shuffled_indices(1000, 42);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn new_rejects_bad_inputs() {
        assert!(matches!(
            Dataset::new(vec![], vec![], [1, 1, 1], 0),
            Err(Error::Config {
                name: "classes",
                ..
            })
        ));
        assert!(matches!(
            Dataset::new(vec![], vec![], [1, 0, 1], 2),
            Err(Error::Config {
                name: "sample_shape",
                ..
            })
        ));
        match Dataset::new(vec![0.0; 5], vec![0, 0], [1, 1, 2], 2) {
            Err(Error::Shape {
                expected, found, ..
            }) => {
                assert_eq!(expected, [2, 1, 1, 2]);
                assert_eq!(found, [5]);
            }
            other => panic!("expected a shape error, found {other:?}"),
        }
        assert!(matches!(
            Dataset::new(vec![0.0; 6], vec![0, 0], [1, 1, 2], 2),
            Err(Error::LabelCount {
                expected: 3,
                found: 2
            })
        ));
        assert!(matches!(
            Dataset::new(vec![0.0; 4], vec![1, 2], [1, 1, 2], 2),
            Err(Error::LabelOutOfRange {
                label: 2,
                index: 1,
                classes: 2
            })
        ));
    }

    #[test]
    fn empty_dataset() {
        let data = Dataset::new(vec![], vec![], [1, 28, 28], 10).unwrap();
        assert!(data.is_empty());
        assert_eq!(data.images().shape(), [0, 1, 28, 28]);
        assert_eq!(
            data.batches(4, Order::Shuffled { seed: 3 })
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn views_match_storage() {
        let data = numbered(4);
        assert_eq!(data.images().shape(), [4, 1, 1, 2]);
        assert_eq!(data.images()[[2, 0, 0, 1]], 21.0);
        assert_eq!(data.image(3).unwrap().as_slice().unwrap(), [30.0, 31.0]);
        assert_eq!(data.labels(), [0, 1, 2, 0]);
    }

    #[test]
    fn out_of_range_indices_are_errors_naming_index_and_length() {
        let data = numbered(4);
        let expected = "invalid sample index: expected an index below 4 (the dataset's length), \
                        found 4";
        assert_eq!(data.image(4).unwrap_err().to_string(), expected);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        assert_eq!(
            data.gather(&[1, 4], &mut x, &mut y)
                .unwrap_err()
                .to_string(),
            expected
        );
        assert_eq!(data.subset(&[4]).unwrap_err().to_string(), expected);
        let mut head = data.clone();
        assert_eq!(
            head.split_off(5).unwrap_err().to_string(),
            "invalid split point: expected at most 4 (the dataset's length), found 5"
        );
        assert_eq!(head, data, "a failed split_off changed the dataset");
    }

    #[test]
    fn from_arrays_matches_new_in_any_layout() {
        let flat: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let expected = Dataset::new(flat.clone(), vec![0, 1], [3, 2, 2], 2).unwrap();
        let images = Array4::from_shape_vec((2, 3, 2, 2), flat).unwrap();
        assert_eq!(
            Dataset::from_arrays(images.clone(), [0, 1], 2).unwrap(),
            expected
        );
        // The same values held channels-last, viewed back as (N, C, H, W).
        let channels_last = images
            .permuted_axes([0, 2, 3, 1])
            .as_standard_layout()
            .into_owned();
        let view = channels_last.permuted_axes([0, 3, 1, 2]);
        assert!(!view.is_standard_layout());
        assert_eq!(Dataset::from_arrays(view, [0, 1], 2).unwrap(), expected);
    }

    #[test]
    fn from_arrays_rejects_bad_inputs() {
        let images = || Array4::<f32>::zeros((3, 1, 2, 2));
        assert!(matches!(
            Dataset::from_arrays(images(), [0, 1], 2),
            Err(Error::LabelCount {
                expected: 3,
                found: 2
            })
        ));
        assert!(matches!(
            Dataset::from_arrays(images(), [0, 1, 2], 2),
            Err(Error::LabelOutOfRange {
                label: 2,
                index: 2,
                classes: 2
            })
        ));
        assert!(matches!(
            Dataset::from_arrays(Array4::zeros((3, 0, 2, 2)), [0, 0, 0], 2),
            Err(Error::Config {
                name: "sample_shape",
                ..
            })
        ));
    }

    #[test]
    fn label_error_names_no_network() {
        let err = Dataset::new(vec![0.0; 2], vec![0, 5], [1, 1, 1], 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "label 5 at position 1 is out of range: expected a label below 3, the number of \
             classes"
        );
    }

    #[test]
    fn gather_reuses_buffers() {
        let data = numbered(5);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        data.gather(&[4, 1, 1], &mut x, &mut y).unwrap();
        assert_eq!(x, [40.0, 41.0, 10.0, 11.0, 10.0, 11.0]);
        assert_eq!(y, [1, 1, 1]);
        let (x_ptr, y_ptr) = (x.as_ptr(), y.as_ptr());
        data.gather(&[0, 2, 3], &mut x, &mut y).unwrap();
        assert_eq!(x, [0.0, 1.0, 20.0, 21.0, 30.0, 31.0]);
        assert_eq!(y, [0, 2, 0]);
        assert_eq!(
            (x.as_ptr(), y.as_ptr()),
            (x_ptr, y_ptr),
            "buffers reallocated"
        );
        data.gather(&[], &mut x, &mut y).unwrap();
        assert!(x.is_empty() && y.is_empty());
    }

    #[test]
    fn sequential_batches_keep_the_partial_last_batch_by_default() {
        let data = numbered(5);
        let batches = data.batches(2, Order::Sequential).unwrap();
        assert_eq!(batches.len(), 3);
        let batches: Vec<_> = batches.collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].0.shape(), [2, 1, 1, 2]);
        assert_eq!(batches[0].0.as_slice().unwrap(), [0.0, 1.0, 10.0, 11.0]);
        assert_eq!(batches[2].0.shape(), [1, 1, 1, 2]);
        assert_eq!(batches[2].0.as_slice().unwrap(), [40.0, 41.0]);
        let labels: Vec<usize> = batches.into_iter().flat_map(|(_, y)| y).collect();
        assert_eq!(labels, data.labels());
    }

    #[test]
    fn drop_last_drops_only_a_partial_batch() {
        let data = numbered(5);
        let mut batches = data.batches(2, Order::Sequential).unwrap().drop_last(true);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches.next().unwrap().1, [0, 1]);
        assert_eq!(batches.next().unwrap().1, [2, 0]);
        assert!(batches.next().is_none());
        assert!(batches.next().is_none());
        assert_eq!(
            data.batches(5, Order::Sequential)
                .unwrap()
                .drop_last(true)
                .len(),
            1
        );
        assert_eq!(
            data.batches(6, Order::Sequential)
                .unwrap()
                .drop_last(true)
                .count(),
            0
        );
    }

    #[test]
    fn shuffled_batches_follow_shuffled_indices() {
        let data = numbered(7);
        let seed = 0x5EED0000;
        let batches = data.batches(3, Order::Shuffled { seed }).unwrap();
        let order = shuffled_indices(7, seed);
        assert_eq!(batches.order(), order);
        let firsts: Vec<f32> = batches
            .flat_map(|(x, _)| x.iter().step_by(2).copied().collect::<Vec<_>>())
            .collect();
        let expected: Vec<f32> = order.iter().map(|&i| 10.0 * i as f32).collect();
        assert_eq!(firsts, expected);
    }

    #[test]
    fn zero_batch_is_an_error() {
        let err = numbered(2).batches(0, Order::Sequential).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid batch size: must be at least 1, found 0"
        );
    }

    #[test]
    fn take_and_split_off() {
        let data = numbered(5);
        let small = data.take(2);
        assert_eq!(small.len(), 2);
        assert_eq!(small.images().as_slice().unwrap(), [0.0, 1.0, 10.0, 11.0]);
        assert_eq!(data.take(0).len(), 0);
        assert_eq!(data.take(10), data);

        let mut head = data.clone();
        let tail = head.split_off(3).unwrap();
        assert_eq!(head, data.take(3));
        assert_eq!(tail.labels(), [0, 1]);
        assert_eq!(tail.image(0).unwrap().as_slice().unwrap(), [30.0, 31.0]);
        assert_eq!((tail.sample_shape(), tail.classes()), ([1, 1, 2], 3));
    }

    #[test]
    fn debug_does_not_dump_pixels() {
        assert_eq!(
            format!("{:?}", numbered(5)),
            "Dataset { len: 5, sample_shape: [1, 1, 2], classes: 3, .. }"
        );
    }
}
