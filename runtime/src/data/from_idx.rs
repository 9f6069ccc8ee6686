//! A labelled dataset from a pair of IDX files of any names: images and their labels.

use std::path::{Path, PathBuf};

use super::idx::{read_idx, IdxArray};
use super::Dataset;
use crate::{Error, Result};

impl Dataset {
    /// Reads a dataset from two IDX files of unsigned bytes (see [`read_idx`]; raw or
    /// gzip-compressed, any file names): the images, `[N, H, W]` for one channel or
    /// `[N, C, H, W]` for `C` channels (channels first, as the networks take them), and their
    /// labels, `[N]`, each below `classes`. Pixels are scaled to `[0, 1]` (`x / 255`).
    ///
    /// # Errors
    ///
    /// - [`Error::Io`] naming the file if one cannot be read;
    /// - [`Error::Format`] naming the file if it is not a valid IDX file of unsigned bytes
    ///   (see [`parse_idx`](super::parse_idx)), if the images are not 3-D or 4-D or have a
    ///   dimension of zero, if the labels are not 1-D, if the number of labels differs from the
    ///   number of images (naming both files), or for the first label that is not below
    ///   `classes`;
    /// - [`Error::Config`] if `classes` is zero.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Dataset;
    ///
    /// let dir = std::env::temp_dir().join(format!("striate-doc-load-idx-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// // Two 2x2 grey images and their labels, 12 and 3, of 13 classes.
    /// std::fs::write(dir.join("shapes-images"), [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2,
    ///     0, 51, 102, 255, 255, 255, 0, 0])?;
    /// std::fs::write(dir.join("shapes-labels"), [0, 0, 8, 1, 0, 0, 0, 2, 12, 3])?;
    ///
    /// let data = Dataset::load_idx(dir.join("shapes-images"), dir.join("shapes-labels"), 13)?;
    /// assert_eq!((data.len(), data.sample_shape(), data.classes()), (2, [1, 2, 2], 13));
    /// assert_eq!(data.labels(), [12, 3]);
    /// assert_eq!(data.image(0)?[[0, 0, 1]], 0.2);
    ///
    /// // Fewer classes than the labels need is an error naming the file and the label.
    /// let err = Dataset::load_idx(dir.join("shapes-images"), dir.join("shapes-labels"), 10)
    ///     .unwrap_err();
    /// assert!(err.to_string().ends_with(
    ///     "shapes-labels: label 12 at position 0 is out of range: expected a label below 10, \
    ///      the number of classes"
    /// ), "{err}");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_idx(
        images: impl AsRef<Path>,
        labels: impl AsRef<Path>,
        classes: usize,
    ) -> Result<Dataset> {
        let read = |path: &Path| -> Result<(IdxArray, PathBuf)> {
            Ok((read_idx(path)?, path.to_path_buf()))
        };
        from_idx(read(images.as_ref())?, read(labels.as_ref())?, classes, "")
    }
}

/// Checks one pair of image and label files, each with the path it came from, and makes the
/// dataset; `label_hint` ends the message of a label out of range.
pub(super) fn from_idx(
    (images, images_path): (IdxArray, PathBuf),
    (labels, labels_path): (IdxArray, PathBuf),
    classes: usize,
    label_hint: &str,
) -> Result<Dataset> {
    let (n, sample_shape) = match images.dims[..] {
        [n, h, w] => (n, [1, h, w]),
        [n, c, h, w] => (n, [c, h, w]),
        _ => {
            return Err(Error::format(
                &images_path,
                format!(
                    "expected 3-D images [N, H, W] or 4-D images [N, C, H, W], found {}-D \
                     dimensions {:?}",
                    images.dims.len(),
                    images.dims
                ),
            ))
        }
    };
    let [n_labels] = labels.dims[..] else {
        return Err(Error::format(
            &labels_path,
            format!(
                "expected 1-D labels [N], found {}-D dimensions {:?}",
                labels.dims.len(),
                labels.dims
            ),
        ));
    };
    if n_labels != n {
        return Err(Error::format(
            &labels_path,
            format!(
                "{n_labels} labels, but {} holds {n} images; expected one label per image",
                images_path.display()
            ),
        ));
    }
    if sample_shape.contains(&0) {
        return Err(Error::format(
            &images_path,
            format!("expected images of positive size [C, H, W], found {sample_shape:?}"),
        ));
    }
    let pixels = images.data.iter().map(|&v| f32::from(v) / 255.0).collect();
    let labels = labels.data.iter().map(|&l| usize::from(l)).collect();
    Dataset::new(pixels, labels, sample_shape, classes).map_err(|e| match e {
        // The one check that `Dataset::new` makes on the files' contents: name the file.
        Error::LabelOutOfRange { .. } => Error::format(&labels_path, format!("{e}{label_hint}")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(dims: &[usize], data: Vec<u8>) -> (IdxArray, PathBuf) {
        let name = if dims.len() == 1 { "labels" } else { "images" };
        let array = IdxArray {
            dims: dims.to_vec(),
            data,
        };
        (array, PathBuf::from(name))
    }

    fn format_error(result: Result<Dataset>) -> (PathBuf, String) {
        match result {
            Err(Error::Format { path, reason }) => (path, reason),
            other => panic!("expected a format error, found {other:?}"),
        }
    }

    #[test]
    fn four_dimensional_images_have_channels() {
        let data = from_idx(
            array(&[2, 3, 1, 2], (0..12).collect()),
            array(&[2], vec![12, 0]),
            13,
            "",
        )
        .unwrap();
        assert_eq!(data.sample_shape(), [3, 1, 2]);
        assert_eq!(data.classes(), 13);
        assert_eq!(data.image(1).unwrap()[[2, 0, 1]], 11.0 / 255.0);
    }

    #[test]
    fn errors_name_the_file_and_what_was_wrong() {
        let (path, reason) = format_error(from_idx(
            array(&[2, 2], vec![0; 4]),
            array(&[2], vec![0, 0]),
            2,
            "",
        ));
        assert_eq!(path, Path::new("images"));
        assert!(reason.contains("found 2-D dimensions [2, 2]"), "{reason}");

        let (path, reason) = format_error(from_idx(
            array(&[2, 0, 2], vec![]),
            array(&[2], vec![0, 0]),
            2,
            "",
        ));
        assert_eq!(path, Path::new("images"));
        assert!(reason.contains("found [1, 0, 2]"), "{reason}");

        let (path, reason) = format_error(from_idx(
            array(&[2, 1, 1], vec![0; 2]),
            array(&[3], vec![0; 3]),
            2,
            "",
        ));
        assert_eq!(path, Path::new("labels"));
        assert_eq!(
            reason,
            "3 labels, but images holds 2 images; expected one label per image"
        );

        let (path, reason) = format_error(from_idx(
            array(&[2, 1, 1], vec![0; 2]),
            array(&[2], vec![1, 13]),
            13,
            "; a hint",
        ));
        assert_eq!(path, Path::new("labels"));
        assert_eq!(
            reason,
            "label 13 at position 1 is out of range: expected a label below 13, the number of \
             classes; a hint"
        );

        assert!(matches!(
            from_idx(array(&[1, 1, 1], vec![0]), array(&[1], vec![0]), 0, ""),
            Err(Error::Config {
                name: "classes",
                ..
            })
        ));
    }

    #[test]
    fn load_idx_reads_files_of_any_name() {
        let dir = std::env::temp_dir().join(format!(
            "striate-load-idx-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (images, labels) = (dir.join("my images.idx"), dir.join("my-labels"));
        std::fs::write(
            &images,
            [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 255],
        )
        .unwrap();
        std::fs::write(&labels, [0, 0, 8, 1, 0, 0, 0, 1, 4]).unwrap();
        let data = Dataset::load_idx(&images, &labels, 5).unwrap();
        assert_eq!(
            (data.labels(), data.image(0).unwrap()[[0, 0, 0]]),
            (&[4][..], 1.0)
        );
        let missing = dir.join("nothing here");
        match Dataset::load_idx(&images, &missing, 5) {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected an io error, found {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
