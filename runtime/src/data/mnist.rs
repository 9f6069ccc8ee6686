//! MNIST handwritten digits: a directory in the standard layout, or the 10,000 built in.

use std::path::{Path, PathBuf};

use super::from_idx::from_idx as dataset;
use super::idx::{parse_idx, read_idx, IdxArray};
use super::Dataset;
use crate::{Error, Result};

/// The number of digit classes, `0..=9`.
const CLASSES: usize = 10;

/// Ends the message of a label above 9.
const LABEL_HINT: &str =
    "; MNIST's labels are the digits 0 to 9 (Dataset::load_idx reads any number of classes)";

/// The four files of the built-in subset (`runtime/data/mnist-10k`), compressed as shipped.
const BUILTIN: [(&str, &[u8]); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        include_bytes!("../../data/mnist-10k/train-images-idx3-ubyte.gz"),
    ),
    (
        "train-labels-idx1-ubyte.gz",
        include_bytes!("../../data/mnist-10k/train-labels-idx1-ubyte.gz"),
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        include_bytes!("../../data/mnist-10k/t10k-images-idx3-ubyte.gz"),
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        include_bytes!("../../data/mnist-10k/t10k-labels-idx1-ubyte.gz"),
    ),
];

/// The MNIST digits, split into a training and a test set.
///
/// Each sample is a `1×H×W` grey image (`28×28` for real MNIST) with pixels scaled to `[0, 1]`,
/// labelled with its digit, `0..=9`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mnist {
    /// The training set (`train-*` files).
    pub train: Dataset,
    /// The test set (`t10k-*` files).
    pub test: Dataset,
}

impl Mnist {
    /// Reads MNIST from a directory holding the four standard files, each either raw or
    /// gzip-compressed (`.gz`; the uncompressed name is tried first):
    /// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
    /// `t10k-labels-idx1-ubyte`.
    ///
    /// Any image size is accepted (the samples are `[1, H, W]`, or `[C, H, W]` from 4-D
    /// files), as long as train and test agree. For other file names or other classes, see
    /// [`Dataset::load_idx`].
    ///
    /// # Errors
    ///
    /// - [`Error::Io`] if `dir` is not a directory (saying so) or a file is missing (naming
    ///   the path without `.gz`) or unreadable;
    /// - [`Error::Format`] naming the file if it is not a valid IDX file of unsigned bytes (see
    ///   [`parse_idx`]), if images are not 3-D `[N, H, W]` (or 4-D) or labels not 1-D `[N]`, if
    ///   the number of labels differs from the number of images (naming both), if a label is
    ///   above 9, or if the test images' size differs from the training images'.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use striate::data::Mnist;
    ///
    /// let mnist = Mnist::load("datasets/mnist")?;
    /// assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        check_directory(dir)?;
        let read = |name: &str| -> Result<(IdxArray, PathBuf)> {
            let path = find_file(dir, name)?;
            Ok((read_idx(&path)?, path))
        };
        let train_images = read("train-images-idx3-ubyte")?;
        let train_labels = read("train-labels-idx1-ubyte")?;
        let test_images = read("t10k-images-idx3-ubyte")?;
        let test_labels = read("t10k-labels-idx1-ubyte")?;
        from_idx(train_images, train_labels, test_images, test_labels)
    }

    /// The 10,000 real MNIST digits shipped inside this library: 8,004 for training and 1,996
    /// for testing, `1×28×28` each (see `runtime/data/mnist-10k/README.md` for their source and
    /// licence).
    ///
    /// Decompressing them takes a few tens of milliseconds; keep the result rather than calling
    /// this in a loop.
    ///
    /// # Panics
    ///
    /// Only if the embedded files were corrupt, which this module's tests rule out.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::Mnist;
    ///
    /// let mnist = Mnist::builtin();
    /// assert_eq!((mnist.train.len(), mnist.test.len()), (8_004, 1_996));
    /// assert_eq!(mnist.train.sample_shape(), [1, 28, 28]);
    /// assert_eq!(mnist.train.classes(), 10);
    /// ```
    pub fn builtin() -> Mnist {
        // The embedded files are fixed at compile time and checked by this module's tests.
        parse_builtin().unwrap_or_else(|e| panic!("the built-in MNIST data is corrupt: {e}"))
    }
}

fn parse_builtin() -> Result<Mnist> {
    let parse = |(name, bytes): (&str, &[u8])| -> Result<(IdxArray, PathBuf)> {
        let origin = Path::new("<builtin mnist-10k>").join(name);
        Ok((parse_idx(bytes, &origin)?, origin))
    };
    let [train_images, train_labels, test_images, test_labels] = BUILTIN;
    from_idx(
        parse(train_images)?,
        parse(train_labels)?,
        parse(test_images)?,
        parse(test_labels)?,
    )
}

/// `Ok` if `dir` is a directory; otherwise an error saying what it is instead.
fn check_directory(dir: &Path) -> Result<()> {
    let (kind, message) = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => (
            std::io::ErrorKind::NotADirectory,
            "not a directory; expected the directory that holds the four MNIST files",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            e.kind(),
            "no such directory; expected the directory that holds the four MNIST files",
        ),
        Err(e) => return Err(Error::io(dir, e)),
    };
    Err(Error::io(dir, std::io::Error::new(kind, message)))
}

/// The path of `name` in `dir`, or of `name.gz` when only that exists.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(Error::io(
        plain,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "MNIST file not found, with or without a .gz extension, in {}",
                dir.display()
            ),
        ),
    ))
}

fn from_idx(
    train_images: (IdxArray, PathBuf),
    train_labels: (IdxArray, PathBuf),
    test_images: (IdxArray, PathBuf),
    test_labels: (IdxArray, PathBuf),
) -> Result<Mnist> {
    let test_images_path = test_images.1.clone();
    let train = dataset(train_images, train_labels, CLASSES, LABEL_HINT)?;
    let test = dataset(test_images, test_labels, CLASSES, LABEL_HINT)?;
    if train.sample_shape() != test.sample_shape() {
        return Err(Error::format(
            test_images_path,
            format!(
                "test images are {:?} but training images are {:?}; both must have one size",
                test.sample_shape(),
                train.sample_shape()
            ),
        ));
    }
    Ok(Mnist { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Raw IDX bytes of unsigned-byte data with the given dimensions.
    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(data);
        bytes
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "striate-mnist-{test}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a tiny valid MNIST directory: 3 training and 2 test images of 2x3 pixels.
    fn write_tiny(dir: &Path) {
        let gzip = |bytes: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let train_pixels: Vec<u8> = (0..18).map(|v| v * 15).collect();
        fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(&[3, 2, 3], &train_pixels),
        )
        .unwrap();
        fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            gzip(&idx(&[3], &[9, 0, 4])),
        )
        .unwrap();
        fs::write(
            dir.join("t10k-images-idx3-ubyte.gz"),
            gzip(&idx(&[2, 2, 3], &[255; 12])),
        )
        .unwrap();
        fs::write(dir.join("t10k-labels-idx1-ubyte"), idx(&[2], &[1, 2])).unwrap();
    }

    fn format_error(result: Result<Mnist>) -> (PathBuf, String) {
        match result {
            Err(Error::Format { path, reason }) => (path, reason),
            other => panic!("expected a format error, found {other:?}"),
        }
    }

    #[test]
    fn builtin_counts_and_shape() {
        let mnist = Mnist::builtin();
        assert_eq!(mnist.train.len(), 8_004);
        assert_eq!(mnist.test.len(), 1_996);
        for set in [&mnist.train, &mnist.test] {
            assert_eq!(set.sample_shape(), [1, 28, 28]);
            assert_eq!(set.classes(), 10);
        }
    }

    /// The histogram below was computed from the shipped files with Python's `gzip` module.
    #[test]
    fn builtin_label_histogram() {
        let mnist = Mnist::builtin();
        let histogram = |labels: &[usize]| {
            let mut counts = [0usize; 10];
            for &l in labels {
                counts[l] += 1;
            }
            counts
        };
        assert_eq!(
            histogram(mnist.train.labels()),
            [801, 902, 793, 826, 784, 691, 812, 856, 756, 783]
        );
        assert_eq!(
            histogram(mnist.test.labels()),
            [200, 225, 198, 206, 196, 172, 202, 214, 188, 195]
        );
    }

    #[test]
    fn builtin_pixels_are_scaled_to_unit_range() {
        let mnist = Mnist::builtin();
        let pixels = mnist.train.images();
        let (min, max) = pixels
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert_eq!((min, max), (0.0, 1.0));
        // MNIST is mostly background: the mean pixel is about 0.13.
        let mean = pixels.sum() / pixels.len() as f32;
        assert!((0.1..0.16).contains(&mean), "mean pixel {mean}");
    }

    #[test]
    fn load_reads_the_shipped_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
        assert_eq!(Mnist::load(dir).unwrap(), Mnist::builtin());
    }

    #[test]
    fn load_accepts_raw_and_gzip_files() {
        let dir = TempDir::new("tiny");
        write_tiny(&dir.0);
        let mnist = Mnist::load(&dir.0).unwrap();
        assert_eq!(mnist.train.sample_shape(), [1, 2, 3]);
        assert_eq!(mnist.train.labels(), [9, 0, 4]);
        assert_eq!(mnist.test.labels(), [1, 2]);
        assert_eq!(mnist.train.image(0).unwrap()[[0, 0, 1]], 15.0 / 255.0);
        assert!(mnist.test.images().iter().all(|&v| v == 1.0));
    }

    #[test]
    fn load_missing_file_names_it() {
        let dir = TempDir::new("missing");
        write_tiny(&dir.0);
        fs::remove_file(dir.0.join("t10k-labels-idx1-ubyte")).unwrap();
        match Mnist::load(&dir.0) {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, dir.0.join("t10k-labels-idx1-ubyte"));
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected an io error, found {other:?}"),
        }
    }

    #[test]
    fn load_rejects_count_mismatch_naming_both_files() {
        let dir = TempDir::new("count");
        write_tiny(&dir.0);
        let labels = dir.0.join("t10k-labels-idx1-ubyte");
        fs::write(&labels, idx(&[3], &[1, 2, 3])).unwrap();
        let (path, reason) = format_error(Mnist::load(&dir.0));
        assert_eq!(path, labels);
        assert!(reason.contains("3 labels"), "{reason}");
        assert!(
            reason.contains("t10k-images-idx3-ubyte.gz holds 2 images"),
            "{reason}"
        );
    }

    #[test]
    fn load_rejects_label_above_nine() {
        let dir = TempDir::new("label");
        write_tiny(&dir.0);
        let labels = dir.0.join("t10k-labels-idx1-ubyte");
        fs::write(&labels, idx(&[2], &[1, 10])).unwrap();
        let (path, reason) = format_error(Mnist::load(&dir.0));
        assert_eq!(path, labels);
        assert!(reason.contains("label 10 at position 1"), "{reason}");
        assert!(reason.contains("expected a label below 10"), "{reason}");
        assert!(reason.ends_with("(Dataset::load_idx reads any number of classes)"));
    }

    #[test]
    fn load_of_a_file_says_it_is_not_a_directory() {
        let dir = TempDir::new("not-a-dir");
        write_tiny(&dir.0);
        let file = dir.0.join("train-images-idx3-ubyte");
        let err = Mnist::load(&file).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a directory; expected the directory that holds the four MNIST files",
                file.display()
            )
        );
        assert!(matches!(
            err,
            Error::Io { ref path, ref source }
                if *path == file && source.kind() == std::io::ErrorKind::NotADirectory
        ));
        let missing = dir.0.join("no-such-dir");
        let err = Mnist::load(&missing).unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
    }

    #[test]
    fn load_rejects_images_that_are_not_3d() {
        let dir = TempDir::new("ndims");
        write_tiny(&dir.0);
        let images = dir.0.join("train-images-idx3-ubyte");
        fs::write(&images, idx(&[3, 6], &[0; 18])).unwrap();
        let (path, reason) = format_error(Mnist::load(&dir.0));
        assert_eq!(path, images);
        assert!(
            reason.contains("expected 3-D images [N, H, W] or 4-D images [N, C, H, W], found 2-D"),
            "{reason}"
        );
    }

    #[test]
    fn load_rejects_labels_that_are_not_1d() {
        let dir = TempDir::new("label-ndims");
        write_tiny(&dir.0);
        let labels = dir.0.join("t10k-labels-idx1-ubyte");
        fs::write(&labels, idx(&[2, 1], &[1, 2])).unwrap();
        let (path, reason) = format_error(Mnist::load(&dir.0));
        assert_eq!(path, labels);
        assert!(
            reason.contains("expected 1-D labels [N], found 2-D"),
            "{reason}"
        );
    }

    #[test]
    fn load_rejects_mismatched_image_sizes() {
        let dir = TempDir::new("sizes");
        write_tiny(&dir.0);
        fs::remove_file(dir.0.join("t10k-images-idx3-ubyte.gz")).unwrap();
        let images = dir.0.join("t10k-images-idx3-ubyte");
        fs::write(&images, idx(&[2, 3, 2], &[0; 12])).unwrap();
        let (path, reason) = format_error(Mnist::load(&dir.0));
        assert_eq!(path, images);
        assert!(reason.contains("[1, 3, 2]"), "{reason}");
    }

    #[test]
    fn load_passes_on_idx_errors_with_the_path() {
        let dir = TempDir::new("truncated");
        write_tiny(&dir.0);
        let images = dir.0.join("train-images-idx3-ubyte");
        fs::write(&images, &idx(&[3, 2, 3], &[0; 18])[..20]).unwrap();
        let (path, reason) = format_error(Mnist::load(&dir.0));
        assert_eq!(path, images);
        assert!(reason.contains("truncated IDX data"), "{reason}");
    }
}
