//! Reading the PyTorch fixtures of `tests/fixtures/` (included with `#[path]`).

use std::path::PathBuf;

use striate::io::{load_tensors, LoadedTensor};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tensors of one fixture file, by name.
pub struct Case(pub Vec<LoadedTensor>);

impl Case {
    /// Reads `tests/fixtures/<name>`.
    pub fn load(name: &str) -> Case {
        Case(load_tensors(&fixture(name)).unwrap())
    }

    /// The tensor called `name`; panics naming it when the fixture has none.
    pub fn get(&self, name: &str) -> &LoadedTensor {
        self.0
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("fixture has no `{name}`"))
    }

    /// The tensor called `name`, in its shape.
    #[allow(dead_code)]
    pub fn array(&self, name: &str) -> ndarray::ArrayD<f32> {
        let t = self.get(name);
        ndarray::ArrayD::from_shape_vec(t.shape.clone(), t.data.clone()).unwrap()
    }
}

/// Each of `ours` within `tolerance · (1 + |theirs|)` of `theirs`.
#[allow(dead_code)]
pub fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tolerance: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{what}[{i}]: striate {a}, PyTorch {b}\nstriate {ours:?}\nPyTorch {theirs:?}"
        );
    }
}

/// Each of `ours` within `1e-4` of the largest magnitude of `theirs`, plus `1e-4 · |theirs|`,
/// plus `1e-6` (for values that are zero in exact arithmetic but PyTorch's rounding noise).
/// A tensor that is all such noise, PyTorch's largest value under `1e-5` (a bias before batch
/// norm, whose gradient is 0 in exact arithmetic), need only be noise too: each of `ours`
/// within `2e-5` of PyTorch's, whichever way the sums were rounded (matrixmultiply's products
/// round their sums another way than striate's own).
#[allow(dead_code)]
pub fn assert_scaled_close(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let scale = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = if scale < 1e-5 { 2e-5 } else { 1e-6 };
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale + 1e-4 * b.abs() + floor,
            "{what}[{i}]: striate {a}, PyTorch {b} (largest magnitude {scale})"
        );
    }
}
