//! A network's expected weight-file contents as a compile-time constant, and the check of a
//! file against it that reads only the file's header.

use std::path::Path;

use crate::tables::ParamInfo;
use crate::{Error, LoadProblem, Result};

/// The tensors a network's weight file holds: its parameters and buffers (all `F32`, named and
/// shaped as in [`Network::PARAMS`](crate::Network::PARAMS) and
/// [`Network::BUFFERS`](crate::Network::BUFFERS)), and one `I64` scalar
/// `<layer>.num_batches_tracked` per batch-norm layer, as [`Network::save`](crate::Network::save)
/// writes them and PyTorch's `state_dict` holds them.
///
/// Every network has one as the constant [`Transfer::MANIFEST`](crate::Transfer::MANIFEST),
/// built from its tables at compile time.
///
/// # Example
/// ```
/// use striate::prelude::*;
/// use striate::Transfer;
///
/// network! {
///     struct Net { input: [1, 4, 4], conv: conv2d(2, kernel = 3), bn: batch_norm, flatten, fc: linear(3) }
/// }
///
/// let names: Vec<String> = Net::MANIFEST
///     .entries()
///     .map(|e| format!("{} {} {:?}", e.name, e.dtype, e.shape))
///     .collect();
/// assert_eq!(
///     names,
///     [
///         "conv.weight F32 [2, 1, 3, 3]",
///         "conv.bias F32 [2]",
///         "bn.weight F32 [2]",
///         "bn.bias F32 [2]",
///         "fc.weight F32 [3, 8]",
///         "fc.bias F32 [3]",
///         "bn.running_mean F32 [2]",
///         "bn.running_var F32 [2]",
///         "bn.num_batches_tracked I64 []",
///     ]
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Manifest {
    /// The network's name.
    pub network: &'static str,
    /// Its parameters.
    pub params: &'static [ParamInfo],
    /// Its buffers.
    pub buffers: &'static [ParamInfo],
}

/// One tensor of a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Its name in the file.
    pub name: std::borrow::Cow<'static, str>,
    /// Its shape.
    pub shape: &'static [usize],
    /// Its dtype as safetensors spells it: `"F32"`, or `"I64"` for a batch counter.
    pub dtype: &'static str,
}

impl Manifest {
    /// Every tensor: parameters, buffers, then the batch counters.
    pub fn entries(&self) -> impl Iterator<Item = ManifestEntry> + '_ {
        let tensors = self
            .params
            .iter()
            .chain(self.buffers)
            .map(|p| ManifestEntry {
                name: p.name.into(),
                shape: p.shape,
                dtype: "F32",
            });
        let counters = self
            .buffers
            .iter()
            .filter_map(|b| b.name.strip_suffix(".running_mean"))
            .map(|layer| ManifestEntry {
                name: format!("{layer}.num_batches_tracked").into(),
                shape: &[],
                dtype: "I64",
            });
        tensors.chain(counters)
    }

    /// Checks the safetensors file at `path` against the manifest from its header alone (no
    /// tensor's values are read): every tensor present with its shape and dtype, no other
    /// tensor, and no other network named in its metadata. A batch counter may also be
    /// stored with shape `[1]`, as some writers do, or be absent, as [`Network::load`](crate::Network::load)
    /// accepts.
    ///
    /// # Errors
    /// [`Error::Io`] and [`Error::Format`] as [`crate::io::read_metadata`];
    /// [`Error::Format`] when the metadata names another network; [`Error::Load`] naming the
    /// first tensor (in the manifest's order, then the file's) that is missing, has another
    /// shape or dtype, or is not the network's.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    /// use striate::{LoadProblem, Transfer};
    ///
    /// network! { struct A { input: [3], fc: linear(2) } }
    /// network! { struct B { input: [4], fc: linear(2) } }
    ///
    /// let path = std::env::temp_dir().join(format!("striate-doc-manifest-{}.safetensors", std::process::id()));
    /// A::init(0).save(&path)?;
    /// A::MANIFEST.check(&path)?;
    /// let err = B::MANIFEST.check(&path).unwrap_err();
    /// assert!(err.to_string().contains("written by the network `A`, not `B`"), "{err}");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (infos, metadata) = crate::io::read_tensor_infos(path)?;
        if let Some(writer) = metadata.get("network").filter(|w| *w != self.network) {
            return Err(Error::format(
                path,
                format!(
                    "written by the network `{writer}`, not `{}` (the file's metadata says so)",
                    self.network
                ),
            ));
        }
        let mut expected: Vec<String> = Vec::new();
        for entry in self.entries() {
            let found = infos.iter().find(|t| t.name == entry.name);
            let problem = match found {
                // As `Network::load`, which sets the count to 0 without one.
                None if entry.dtype == "I64" => None,
                None => Some(LoadProblem::Missing {
                    expected_shape: entry.shape.to_vec(),
                    expected_dtype: entry.dtype,
                }),
                Some(crate::io::TensorInfo { dtype, shape, .. }) => {
                    let counter_shape = entry.dtype == "I64" && shape.as_slice() == [1];
                    (dtype != entry.dtype || (shape != entry.shape && !counter_shape)).then(|| {
                        LoadProblem::Mismatch {
                            expected_shape: entry.shape.to_vec(),
                            expected_dtype: entry.dtype,
                            found_shape: shape.clone(),
                            found_dtype: dtype.clone(),
                        }
                    })
                }
            };
            if let Some(problem) = problem {
                return Err(Error::Load {
                    path: path.to_path_buf(),
                    tensor: entry.name.into_owned(),
                    problem: Box::new(problem),
                });
            }
            expected.push(entry.name.into_owned());
        }
        if let Some(extra) = infos.iter().find(|t| !expected.contains(&t.name)) {
            let names: Vec<&str> = expected.iter().map(String::as_str).collect();
            return Err(Error::Load {
                path: path.to_path_buf(),
                tensor: extra.name.clone(),
                problem: Box::new(LoadProblem::Unused {
                    closest: super::freeze::closest(&extra.name, &names, 3),
                }),
            });
        }
        Ok(())
    }
}
