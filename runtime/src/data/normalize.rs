//! Per-channel standardisation: `(x - mean) / std`, with the statistics of the training set.

use ndarray::{ArrayViewMut4, Axis};

use super::Dataset;
use crate::{Error, Result};

/// Per-channel mean and standard deviation, to standardise images as `(x - mean[c]) / std[c]`.
///
/// Compute the statistics on the training set alone with [`Normalize::fit`], then
/// [`apply`](Normalize::apply) the same ones to the training, validation and test sets and to
/// any image given to the trained network, so that no statistic of the test set leaks into
/// training. Known statistics (ImageNet's, say) go in through [`Normalize::new`].
///
/// # Example
///
/// ```
/// use striate::prelude::*;
///
/// let mut train = Mnist::builtin().train.take(500);
/// let mut test = Mnist::builtin().test.take(100);
/// let norm = Normalize::fit(&train)?;
/// assert!((norm.mean()[0] - 0.13).abs() < 0.02, "{:?}", norm.mean());
/// norm.apply(&mut train)?;
/// norm.apply(&mut test)?;
///
/// // The training set now has mean 0 and standard deviation 1.
/// let again = Normalize::fit(&train)?;
/// assert!(again.mean()[0].abs() < 1e-4 && (again.std()[0] - 1.0).abs() < 1e-4);
///
/// // New images for the trained network get the same treatment.
/// let mut images = Array4::<f32>::zeros((2, 1, 28, 28));
/// norm.apply_images(images.view_mut())?;
/// assert!(images.iter().all(|&v| v < 0.0));
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// The mean and the (population) standard deviation of each channel over every pixel of
    /// every image of `data`, summed in `f64`.
    ///
    /// A channel whose values are all equal has a standard deviation of 0; it is kept as 1, so
    /// that standardising shifts that channel to 0 instead of dividing by zero.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `data` has no samples, which have no statistics.
    pub fn fit(data: &Dataset) -> Result<Normalize> {
        if data.is_empty() {
            return Err(Error::Config {
                name: "dataset to fit Normalize on",
                reason: "expected at least one sample, found 0".into(),
            });
        }
        let images = data.images();
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for channel in images.axis_iter(Axis(1)) {
            let count = channel.len() as f64;
            let m = channel.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
            let var = channel
                .iter()
                .map(|&v| (f64::from(v) - m).powi(2))
                .sum::<f64>()
                / count;
            mean.push(m as f32);
            std.push(if var > 0.0 { var.sqrt() as f32 } else { 1.0 });
        }
        Ok(Normalize { mean, std })
    }

    /// Known statistics, one mean and one standard deviation per channel.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if there are no channels, the two lengths differ, a mean is not finite
    /// or a standard deviation is not finite and positive.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Normalize;
    ///
    /// let imagenet = Normalize::new(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])?;
    /// assert_eq!(imagenet.channels(), 3);
    /// assert!(Normalize::new(vec![0.5], vec![0.0]).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Normalize> {
        let bad = |reason: String| Error::Config {
            name: "normalisation statistics",
            reason,
        };
        if mean.is_empty() || mean.len() != std.len() {
            return Err(bad(format!(
                "expected one mean and one standard deviation per channel, at least one \
                 channel; found {} means and {} standard deviations",
                mean.len(),
                std.len()
            )));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(bad(format!("expected finite means, found {m}")));
        }
        if let Some(s) = std.iter().find(|&&s| !(s.is_finite() && s > 0.0)) {
            return Err(bad(format!(
                "expected finite, positive standard deviations, found {s}"
            )));
        }
        Ok(Normalize { mean, std })
    }

    /// The mean of each channel.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// The standard deviation of each channel (never 0).
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// The number of channels `C`.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Standardises every image of `data` in place.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] naming both channel counts if `data`'s images do not have
    /// [`channels`](Normalize::channels) channels; nothing changes then.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        self.apply_images(data.images_mut())
    }

    /// Standardises images `(N, C, H, W)` in place, such as new images for a network trained
    /// on standardised data.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] naming both channel counts if the images do not have
    /// [`channels`](Normalize::channels) channels; nothing changes then.
    pub fn apply_images(&self, mut images: ArrayViewMut4<'_, f32>) -> Result<()> {
        let channels = images.shape()[1];
        if channels != self.channels() {
            return Err(Error::shape(
                "channels of the images to normalise (the statistics' channels)",
                &[self.channels()],
                &[channels],
            ));
        }
        for (mut channel, (&m, &s)) in images
            .axis_iter_mut(Axis(1))
            .zip(self.mean.iter().zip(&self.std))
        {
            let inv = 1.0 / s;
            channel.mapv_inplace(|v| (v - m) * inv);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples of two 1x2 channels: channel 0 holds 1, 3, 5, 7; channel 1 is constant 4.
    fn two_channels() -> Dataset {
        Dataset::new(
            vec![1.0, 3.0, 4.0, 4.0, 5.0, 7.0, 4.0, 4.0],
            vec![0, 1],
            [2, 1, 2],
            2,
        )
        .unwrap()
    }

    #[test]
    fn fit_computes_per_channel_population_statistics() {
        let norm = Normalize::fit(&two_channels()).unwrap();
        assert_eq!(norm.mean(), [4.0, 4.0]);
        // Channel 0: deviations -3, -1, 1, 3, variance 20 / 4 = 5; channel 1 is constant.
        assert_eq!(norm.std(), [5f32.sqrt(), 1.0]);
    }

    #[test]
    fn apply_standardises_each_channel() {
        let mut data = two_channels();
        let norm = Normalize::fit(&data).unwrap();
        norm.apply(&mut data).unwrap();
        let s = 5f32.sqrt();
        let expected = [-3.0 / s, -1.0 / s, 0.0, 0.0, 1.0 / s, 3.0 / s, 0.0, 0.0];
        for (got, want) in data.images().iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} != {want}");
        }
        assert_eq!(data.labels(), [0, 1]);
    }

    #[test]
    fn the_training_statistics_are_applied_to_other_sets() {
        let train = two_channels();
        let norm = Normalize::fit(&train).unwrap();
        let mut test = Dataset::new(vec![4.0, 4.0, 6.0, 2.0], vec![1], [2, 1, 2], 2).unwrap();
        norm.apply(&mut test).unwrap();
        let values: Vec<f32> = test.images().iter().copied().collect();
        assert_eq!(values, [0.0, 0.0, 2.0, -2.0]);
    }

    #[test]
    fn errors_name_expected_and_found() {
        let empty = two_channels().take(0);
        assert_eq!(
            Normalize::fit(&empty).unwrap_err().to_string(),
            "invalid dataset to fit Normalize on: expected at least one sample, found 0"
        );
        let norm = Normalize::new(vec![0.5], vec![0.25]).unwrap();
        let mut data = two_channels();
        let err = norm.apply(&mut data).unwrap_err();
        assert_eq!(
            err.to_string(),
            "channels of the images to normalise (the statistics' channels): expected shape \
             [1], found [2]"
        );
        assert_eq!(data, two_channels(), "a failed apply changed the data");
        for (mean, std) in [
            (vec![], vec![]),
            (vec![0.0, 0.0], vec![1.0]),
            (vec![f32::NAN], vec![1.0]),
            (vec![0.0], vec![-1.0]),
            (vec![0.0], vec![f32::INFINITY]),
        ] {
            assert!(
                matches!(
                    Normalize::new(mean.clone(), std.clone()),
                    Err(Error::Config {
                        name: "normalisation statistics",
                        ..
                    })
                ),
                "{mean:?} {std:?}"
            );
        }
    }
}
