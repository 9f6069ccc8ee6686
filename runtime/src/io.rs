//! Weight files: named `f32` tensors (and `i64` counters, such as batch norm's
//! `num_batches_tracked`) in the [safetensors](https://huggingface.co/docs/safetensors) format,
//! which PyTorch, JAX and others read and write.
//!
//! Files are written atomically: a crash or a failed save leaves any earlier file at the same
//! path whole.
//!
//! Files are read as their header says, never whole first: only regular files are opened (a
//! FIFO or a device such as `/dev/zero` is an error before it is opened), the 8-byte length
//! and the JSON header come first, bounded by the file's length and
//! [`Limits::max_header_bytes`](crate::Limits), and then exactly the data the header's offsets
//! cover, after checking that the file has that length (a longer or shorter file is an
//! [`Error::Format`] saying by how much) and that it is within
//! [`Limits::max_weight_file_bytes`](crate::Limits) ([`Error::Limit`] otherwise). Reading a
//! file takes about twice its size in memory at most: its bytes and the tensors' values.
//!
//! The readers here return values as they are in the file, NaN and infinities included;
//! [`Network::load`](crate::Network::load) refuses them (see the crate's section on
//! non-finite values).
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use striate::io::{load_tensors, read_metadata, save_tensors};
//!
//! let path = std::env::temp_dir().join(format!("striate-doc-io-{}.safetensors", std::process::id()));
//! let weight = [0.5_f32, -1.0, 2.0, 0.0, 1.5, -0.25];
//! let bias = [0.1_f32, 0.2];
//! let metadata = HashMap::from([("network".to_string(), "Tiny".to_string())]);
//! save_tensors(
//!     &path,
//!     &[
//!         ("fc.weight".to_string(), vec![2, 3], &weight[..]),
//!         ("fc.bias".to_string(), vec![2], &bias[..]),
//!     ],
//!     Some(metadata.clone()),
//! )?;
//!
//! let tensors = load_tensors(&path)?;
//! assert_eq!(tensors[0].name, "fc.bias"); // file order: by name
//! assert_eq!(tensors[1].shape, [2, 3]);
//! assert_eq!(tensors[1].data, weight);
//! assert_eq!(read_metadata(&path)?, metadata);
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Metadata, SafeTensorError};
use safetensors::{Dtype, SafeTensors, View};

use crate::{Error, Limits, Result};

/// The key safetensors reserves in its header for the free-form metadata.
const METADATA_KEY: &str = "__metadata__";

/// An `f32` tensor read from a weight file.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedTensor {
    /// Its name in the file (`"conv1.weight"`, ...).
    pub name: String,
    /// Its shape, outermost dimension first; empty for a scalar.
    pub shape: Vec<usize>,
    /// Its values in row-major order; as many as the product of `shape`.
    pub data: Vec<f32>,
}

/// The values of a tensor to write, in row-major order, with their dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorData<'a> {
    /// `F32` values: weights, biases, running statistics.
    F32(&'a [f32]),
    /// `I64` values: counters, such as batch norm's `num_batches_tracked`.
    I64(&'a [i64]),
}

impl TensorData<'_> {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dtype(&self) -> Dtype {
        match self {
            TensorData::F32(_) => Dtype::F32,
            TensorData::I64(_) => Dtype::I64,
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            TensorData::F32(v) => std::mem::size_of_val(*v),
            TensorData::I64(v) => std::mem::size_of_val(*v),
        }
    }

    fn to_le_bytes(self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// The values of a tensor read from a weight file, by dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadedData {
    /// `F32` values, in row-major order.
    F32(Vec<f32>),
    /// `I64` values, in row-major order.
    I64(Vec<i64>),
    /// A dtype that striate does not read, as safetensors spells it (`"F64"`, `"BF16"`, ...);
    /// its values are skipped.
    Other(String),
}

impl LoadedData {
    /// The dtype as safetensors spells it: `"F32"`, `"I64"`, ...
    pub fn dtype(&self) -> &str {
        match self {
            LoadedData::F32(_) => "F32",
            LoadedData::I64(_) => "I64",
            LoadedData::Other(dtype) => dtype,
        }
    }
}

/// A tensor of any dtype read from a weight file.
#[derive(Clone, Debug, PartialEq)]
pub struct TypedTensor {
    /// Its name in the file (`"conv1.weight"`, `"bn1.num_batches_tracked"`, ...).
    pub name: String,
    /// Its shape, outermost dimension first; empty for a scalar.
    pub shape: Vec<usize>,
    /// Its values and their dtype.
    pub data: LoadedData,
}

impl TypedTensor {
    /// The same tensor with `f32` values, for a tensor whose dtype is `F32`.
    ///
    /// # Errors
    ///
    /// [`Error::Format`] naming `path` (the file it was read from), the tensor and its dtype when
    /// that is not `F32`.
    pub fn into_f32(self, path: &Path) -> Result<LoadedTensor> {
        match self.data {
            LoadedData::F32(data) => Ok(LoadedTensor {
                name: self.name,
                shape: self.shape,
                data,
            }),
            other => Err(Error::format(
                path,
                format!(
                    "tensor `{}` has dtype {}; only F32 weights can be loaded",
                    self.name,
                    other.dtype()
                ),
            )),
        }
    }
}

/// Writes named `f32` tensors, each `(name, shape, values)` with the values in row-major order,
/// and optional string metadata to a safetensors file at `path`, replacing any file there.
///
/// The file is written atomically: the bytes go to a temporary file in the same directory,
/// which is flushed to disk and then renamed over `path`. If anything fails, the temporary
/// file is removed and an existing file at `path` is left as it was.
///
/// The file lists the tensors sorted by name, whatever their order in `tensors`.
///
/// # Errors
///
/// - [`Error::Shape`] if a tensor's shape does not multiply to its number of values;
/// - [`Error::Config`] if two tensors have the same name, or one is named `__metadata__`;
/// - [`Error::Io`] naming `path` if the file cannot be written (for example when its directory
///   does not exist);
/// - [`Error::Format`] naming `path` if safetensors refuses to serialize the tensors.
///
/// # Example
///
/// See the [module documentation](self).
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| (name.as_str(), DataView::new(shape, TensorData::F32(data))))
        .collect();
    save_views(path, views, metadata)
}

/// [`save_tensors`] for tensors of several dtypes: each `(name, shape, values)` with its values
/// as [`TensorData`], `F32` or `I64`. Written atomically, like [`save_tensors`].
///
/// The file lists the tensors in safetensors' order: the wider dtype first (`I64` before
/// `F32`), then by name.
///
/// # Errors
///
/// As [`save_tensors`].
///
/// # Example
///
/// ```
/// use striate::io::{load_typed_tensors, save_typed_tensors, LoadedData, TensorData};
///
/// let path = std::env::temp_dir().join(format!("striate-doc-typed-{}.safetensors", std::process::id()));
/// let mean = [0.25_f32, -0.5];
/// save_typed_tensors(
///     &path,
///     &[
///         ("bn.running_mean".to_string(), vec![2], TensorData::F32(&mean)),
///         ("bn.num_batches_tracked".to_string(), vec![], TensorData::I64(&[12])),
///     ],
///     None,
/// )?;
///
/// let tensors = load_typed_tensors(&path)?;
/// assert_eq!(tensors[0].name, "bn.num_batches_tracked"); // file order: I64 before F32
/// assert!(tensors[0].shape.is_empty()); // a scalar
/// assert_eq!(tensors[0].data, LoadedData::I64(vec![12]));
/// assert_eq!(tensors[1].data, LoadedData::F32(mean.to_vec()));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_typed_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, TensorData<'_>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| (name.as_str(), DataView::new(shape, *data)))
        .collect();
    save_views(path, views, metadata)
}

/// Checks the tensors' shapes and names, serializes them and writes the file atomically.
fn save_views(
    path: &Path,
    views: Vec<(&str, DataView<'_>)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut names = HashSet::with_capacity(views.len());
    for (name, view) in &views {
        let count = view
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if count != Some(view.data.len()) {
            return Err(Error::shape(
                format!("tensor `{name}` to save (its shape must multiply to its value count)"),
                view.shape,
                &[view.data.len()],
            ));
        }
        if *name == METADATA_KEY {
            return Err(Error::Config {
                name: "tensor name",
                reason: format!("`{METADATA_KEY}` is reserved by safetensors for the metadata"),
            });
        }
        if !names.insert(*name) {
            return Err(Error::Config {
                name: "tensor name",
                reason: format!("`{name}` is given twice; names in a weight file must be unique"),
            });
        }
    }

    let bytes = safetensors::serialize(views, &metadata)
        .map_err(|e| Error::format(path, format!("safetensors could not serialize: {e}")))?;
    let bytes = canonical_header(bytes)
        .map_err(|reason| Error::format(path, format!("safetensors wrote {reason}")))?;
    write_atomically(path, &bytes)
}

/// The same file with its JSON header's keys in sorted order: safetensors writes the metadata
/// from a `HashMap`, whose order changes from process to process, so the same tensors saved
/// twice would give different bytes. The tensors' data and offsets are untouched (offsets count
/// from the end of the header); the header is padded with spaces to a multiple of 8 bytes, as
/// safetensors pads it.
fn canonical_header(bytes: Vec<u8>) -> std::result::Result<Vec<u8>, &'static str> {
    const TOO_SHORT: &str = "a file shorter than its header";
    let len: [u8; 8] = bytes
        .get(..8)
        .ok_or(TOO_SHORT)?
        .try_into()
        .map_err(|_| TOO_SHORT)?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| TOO_SHORT)?;
    let end = len
        .checked_add(8)
        .filter(|&e| e <= bytes.len())
        .ok_or(TOO_SHORT)?;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[8..end]).map_err(|_| "a header that is not JSON")?;
    // Sorted explicitly: with serde_json's `preserve_order` (which another crate of the
    // program may turn on) objects keep the order they were read in.
    fn sort(value: &mut serde_json::Value) {
        if let serde_json::Value::Object(map) = value {
            map.sort_keys();
            map.values_mut().for_each(sort);
        }
    }
    sort(&mut header);
    let mut json = serde_json::to_vec(&header).map_err(|_| "a header that is not JSON")?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - end);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

/// Reads every tensor of a safetensors file of `f32` tensors, in the order they are stored
/// (for files written by [`save_tensors`], sorted by name).
///
/// # Errors
///
/// - [`Error::Io`] if the file cannot be read;
/// - [`Error::Format`] naming the file if it is not a regular file, if it is not a valid
///   safetensors file (with safetensors' own diagnosis), if it is longer or shorter than its
///   header says, or if a tensor is not `F32` (naming the tensor and its dtype);
/// - [`Error::Limit`] if its header or its data are larger than the [`Limits`] in force
///   allow; [`Error::Allocation`] if the system refuses the memory to read it.
///
/// # Example
///
/// ```
/// use striate::{io::load_tensors, Error};
///
/// let path = std::env::temp_dir().join(format!("striate-doc-load-{}.txt", std::process::id()));
/// std::fs::write(&path, "not weights")?;
/// let err = load_tensors(&path).unwrap_err();
/// assert!(matches!(err, Error::Format { .. }), "{err}");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_tensors(path: &Path) -> Result<Vec<LoadedTensor>> {
    load_tensors_where(path, |_| true)
}

/// [`load_tensors`] for the tensors whose name `keep` accepts; the others are skipped
/// whatever their dtype.
///
/// # Errors
///
/// As [`load_tensors`], for the tensors kept.
pub fn load_tensors_where(path: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<LoadedTensor>> {
    read_tensors(path, keep)?
        .0
        .into_iter()
        .map(|t| t.into_f32(path))
        .collect()
}

/// Reads every tensor of a safetensors file, whatever its dtype, in the order they are stored
/// (for files written by [`save_typed_tensors`], the wider dtype first, then by name): `F32` and
/// `I64` values are read, tensors of other dtypes come as [`LoadedData::Other`] without their
/// values.
///
/// # Errors
///
/// As [`load_tensors`], except that any dtype is read.
///
/// # Example
///
/// See [`save_typed_tensors`].
pub fn load_typed_tensors(path: &Path) -> Result<Vec<TypedTensor>> {
    Ok(read_tensors(path, |_| true)?.0)
}

/// [`load_typed_tensors`] and [`read_metadata`], reading the file once.
pub(crate) fn load_typed_tensors_and_metadata(
    path: &Path,
) -> Result<(Vec<TypedTensor>, HashMap<String, String>)> {
    read_tensors(path, |_| true)
}

/// The tensors of the file at `path` whose name `keep` accepts, in file order, and its
/// metadata.
fn read_tensors(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<(Vec<TypedTensor>, HashMap<String, String>)> {
    let bytes = read_weight_file(path, Limits::global())?;
    let (header_len, metadata) = parse_header(path, &bytes)?;
    let strings = metadata.metadata().clone().unwrap_or_default();
    // `read_metadata` checked that the header fits and the tensors cover the rest exactly.
    let data = bytes.get(8 + header_len..).unwrap_or_default();

    let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
    infos.sort_by_key(|(_, info)| info.data_offsets);
    infos
        .into_iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, info)| {
            let (start, end) = info.data_offsets;
            let raw = data.get(start..end).ok_or_else(|| {
                Error::format(
                    path,
                    format!("tensor `{name}`: data offsets {start}..{end} are outside the file"),
                )
            })?;
            let values = match info.dtype {
                Dtype::F32 => LoadedData::F32(
                    raw.as_chunks::<4>()
                        .0
                        .iter()
                        .map(|b| f32::from_le_bytes(*b))
                        .collect(),
                ),
                Dtype::I64 => LoadedData::I64(
                    raw.as_chunks::<8>()
                        .0
                        .iter()
                        .map(|b| i64::from_le_bytes(*b))
                        .collect(),
                ),
                other => LoadedData::Other(format!("{other:?}")),
            };
            Ok(TypedTensor {
                name,
                shape: info.shape.clone(),
                data: values,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(|tensors| (tensors, strings))
}

/// Reads the free-form string metadata of a safetensors file; empty if it has none.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] if it is not a regular file, or
/// its header is not a valid safetensors header, or the file's length is not what the header
/// says; [`Error::Limit`] for a header larger than [`Limits::max_header_bytes`]. Only the
/// header is read.
///
/// # Example
///
/// See the [module documentation](self).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let (metadata, _) = read_header(path, Limits::global())?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

/// One tensor as a safetensors header describes it, without its values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TensorInfo {
    /// Its name in the file.
    pub name: String,
    /// Its dtype as safetensors spells it: `"F32"`, `"I64"`, ...
    pub dtype: String,
    /// Its shape; empty for a scalar.
    pub shape: Vec<usize>,
}

/// Every tensor of the safetensors file at `path`, sorted by name, and its metadata, from its
/// header alone: no tensor's data is read.
///
/// # Errors
///
/// As [`read_metadata`].
pub fn read_tensor_infos(path: &Path) -> Result<(Vec<TensorInfo>, HashMap<String, String>)> {
    let (metadata, _) = read_header(path, Limits::global())?;
    let mut infos: Vec<TensorInfo> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| TensorInfo {
            name,
            dtype: format!("{:?}", info.dtype),
            shape: info.shape.clone(),
        })
        .collect();
    infos.sort();
    Ok((infos, metadata.metadata().clone().unwrap_or_default()))
}

/// The regular file at `path`, opened, with its length. Other files are refused before they
/// are opened: opening a FIFO to read blocks until someone writes to it, and a device such
/// as `/dev/zero` never ends.
fn open_regular(path: &Path) -> Result<(File, u64)> {
    let not_regular = || {
        Error::format(
            path,
            "not a regular file (a directory, device, FIFO or socket); weights are read only \
             from regular files",
        )
    };
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // Asked again of the file opened, in case another took its place in between.
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((file, meta.len()))
}

/// Reads the 8-byte length and the JSON header of the safetensors file at `path`, and only
/// those: the header's length is checked against the file's length and
/// [`Limits::max_header_bytes`] before it is read. Returns the parsed header, the file (its
/// position after the header), the header's length and the file's length.
fn read_header_of(path: &Path, limits: Limits) -> Result<(Metadata, File, u64, u64)> {
    let (mut file, file_len) = open_regular(path)?;
    let invalid = |e: SafeTensorError| {
        Error::format(
            path,
            format!("not a valid safetensors file ({}): {e}", describe(&e)),
        )
    };
    let mut len = [0u8; 8];
    if file_len < 8 {
        return Err(invalid(SafeTensorError::HeaderTooSmall));
    }
    file.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > file_len - 8 {
        return Err(Error::format(
            path,
            format!(
                "not a valid safetensors file ({}): InvalidHeaderLength: the header is to be \
                 {header_len} bytes long, but the file has {} bytes after the 8-byte length",
                describe(&SafeTensorError::InvalidHeaderLength),
                file_len - 8
            ),
        ));
    }
    Limits::check(
        "max_header_bytes",
        limits.max_header_bytes,
        || format!("{}: the safetensors header", path.display()),
        Some(header_len),
    )?;
    let header_len_usize =
        usize::try_from(header_len).map_err(|_| invalid(SafeTensorError::HeaderTooLarge))?;
    let mut header = crate::limits::try_filled(header_len_usize, 0u8, || {
        format!("{}: the safetensors header", path.display())
    })?;
    read_all(&mut file, &mut header, path, "the header")?;
    let text = std::str::from_utf8(&header).map_err(|_| invalid(SafeTensorError::InvalidHeader))?;
    let metadata: Metadata = serde_json::from_str(text)
        .map_err(|_| invalid(SafeTensorError::InvalidHeaderDeserialization))?;
    Ok((metadata, file, header_len, file_len))
}

/// [`read_header_of`], checking that the file's length is what the header's offsets say.
/// Returns the header and the number of data bytes after it.
fn read_header(path: &Path, limits: Limits) -> Result<(Metadata, u64)> {
    let (metadata, _, header_len, file_len) = read_header_of(path, limits)?;
    let data_len = expected_data_len(path, &metadata, header_len, file_len)?;
    Ok((metadata, data_len))
}

/// The data bytes the header's offsets cover (the largest end offset), after checking that
/// the file holds exactly that many after its header.
fn expected_data_len(
    path: &Path,
    metadata: &Metadata,
    header_len: u64,
    file_len: u64,
) -> Result<u64> {
    let data_len = metadata
        .tensors()
        .values()
        .map(|info| info.data_offsets.1 as u64)
        .max()
        .unwrap_or(0);
    let found = file_len - 8 - header_len;
    if found != data_len {
        let (what, diff) = if found < data_len {
            ("truncated", data_len - found)
        } else {
            ("too long", found - data_len)
        };
        return Err(Error::format(
            path,
            format!(
                "not a valid safetensors file ({}): MetadataIncompleteBuffer: the file is {what}: \
                 its header's offsets cover {data_len} bytes of data after the {}-byte header, \
                 found {found} ({diff} {})",
                describe(&SafeTensorError::MetadataIncompleteBuffer),
                8 + header_len,
                if found < data_len {
                    "missing"
                } else {
                    "too many"
                }
            ),
        ));
    }
    Ok(data_len)
}

/// The whole safetensors file at `path`, read as its header says: the header first (see
/// [`read_header_of`]), then exactly the data its offsets cover, after checking that the file
/// has that length and that it is within [`Limits::max_weight_file_bytes`]; nothing more is
/// read. safetensors then validates the whole (see [`parse_header`]).
fn read_weight_file(path: &Path, limits: Limits) -> Result<Vec<u8>> {
    let (metadata, mut file, header_len, file_len) = read_header_of(path, limits)?;
    let data_len = expected_data_len(path, &metadata, header_len, file_len)?;
    Limits::check(
        "max_weight_file_bytes",
        limits.max_weight_file_bytes,
        || format!("{}: the tensors of the weight file", path.display()),
        Some(data_len),
    )?;
    let total = usize::try_from(8 + header_len + data_len).map_err(|_| Error::Allocation {
        what: format!("{}: the weight file", path.display()),
        bytes: 8 + header_len + data_len,
    })?;
    let mut bytes = Vec::new();
    crate::limits::reserve_len(&mut bytes, total, || {
        format!("{}: the weight file", path.display())
    })?;
    bytes.resize(total, 0);
    file.seek(io::SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    read_all(&mut file, &mut bytes, path, "the data")?;
    // The file may have grown since its length was taken: what follows is not read.
    let mut probe = [0u8; 1];
    if file.read(&mut probe).map_err(|e| Error::io(path, e))? != 0 {
        return Err(Error::format(
            path,
            format!(
                "the file grew while it was read: more than the {total} bytes its header describes"
            ),
        ));
    }
    Ok(bytes)
}

/// Fills `buf` from `file`; a file that ends first (it shrank while it was read) is an
/// [`Error::Format`] naming `part`.
fn read_all(file: &mut File, buf: &mut [u8], path: &Path, part: &str) -> Result<()> {
    file.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::format(
                path,
                format!(
                    "the file is truncated: it ended inside {part} (it shrank while it was read)"
                ),
            )
        } else {
            Error::io(path, e)
        }
    })
}

/// Parses and validates the header, returning its length and contents.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(usize, Metadata)> {
    SafeTensors::read_metadata(bytes).map_err(|e| {
        Error::format(
            path,
            format!("not a valid safetensors file ({}): {e}", describe(&e)),
        )
    })
}

/// A phrase for safetensors' errors, whose own messages are just the variant names.
fn describe(e: &SafeTensorError) -> &'static str {
    match e {
        SafeTensorError::HeaderTooSmall => "shorter than the 8-byte header length",
        SafeTensorError::HeaderTooLarge => "the header length is implausibly large",
        SafeTensorError::InvalidHeaderLength => "the header length runs past the end of the file",
        SafeTensorError::InvalidHeader => "the header is not UTF-8",
        SafeTensorError::InvalidHeaderStart | SafeTensorError::InvalidHeaderDeserialization => {
            "the header is not the expected JSON"
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the tensors do not cover the data exactly: the file is truncated or has extra bytes"
        }
        SafeTensorError::InvalidOffset(_) | SafeTensorError::TensorInvalidInfo => {
            "a tensor's data offsets do not match its shape and dtype"
        }
        SafeTensorError::ValidationOverflow => "a tensor's size overflows",
        _ => "invalid file",
    }
}

/// A tensor seen through safetensors' [`View`], converted to bytes only when written.
struct DataView<'a> {
    shape: &'a [usize],
    data: TensorData<'a>,
}

impl<'a> DataView<'a> {
    fn new(shape: &'a [usize], data: TensorData<'a>) -> Self {
        DataView { shape, data }
    }
}

impl View for DataView<'_> {
    fn dtype(&self) -> Dtype {
        self.data.dtype()
    }

    fn shape(&self) -> &[usize] {
        self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.data.to_le_bytes())
    }

    fn data_len(&self) -> usize {
        self.data.byte_len()
    }
}

/// Distinguishes the temporary files of concurrent saves within one process.
static SAVE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`, so
/// readers see either the old file or the whole new one. Errors name `path`.
///
/// Only a regular file (or nothing) is replaced: a device, a FIFO, a socket or a directory at
/// `path` is an error and stays as it is (`save("/dev/null")` as root would otherwise delete
/// the system's `/dev/null`), and a symbolic link is followed, so the file it names is
/// replaced and the link stays. Temporary files left beside `path` by saves whose process has
/// died (killed during a save) are removed after a successful save. Weight files and plots
/// ([`crate::plot`]) are written this way.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let resolved;
    let path = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => {
                resolved = target;
                &resolved
            }
            // A dangling link: its target is created through it, as `File::create` would.
            Err(_) => path,
        },
        _ => path,
    };
    if let Ok(meta) = fs::metadata(path) {
        if !meta.is_file() {
            return Err(Error::io(
                path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a regular file (a directory, device, FIFO or socket); striate \
                     saves only to regular files, and this one is left as it is",
                ),
            ));
        }
    }
    let file_name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a path to a file"),
        )
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp: PathBuf = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        SAVE_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        // The temporary file may not exist (if creating it failed); either way it must go.
        let _ = fs::remove_file(&temp);
        return Err(Error::io(path, e));
    }
    sync_dir(dir);
    remove_stale_temporaries(dir, &file_name.to_string_lossy());
    Ok(())
}

/// Removes `dir`'s temporary files of saves to `file_name` (`.{file_name}.tmp-{pid}-{n}`)
/// whose process no longer runs. Best effort, and only where the system says which processes
/// run (Linux's `/proc`); never another running process's file, nor this process's (a
/// concurrent save of its own may be writing it).
fn remove_stale_temporaries(dir: &Path, file_name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let prefix = format!(".{file_name}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, count)) = rest.split_once('-') else {
            continue;
        };
        let numeric = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !numeric(pid) || !numeric(count) || pid == std::process::id().to_string() {
            continue;
        }
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !proc.join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Makes the rename itself durable. Best effort: some file systems refuse to sync a directory,
/// and by now the new file is complete and in place either way.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// The same tensors and metadata saved again, with the metadata in a map built afresh
    /// (whose iteration order differs from map to map), give the same bytes; the files load
    /// with every metadata entry (issue 13, item 16).
    #[test]
    fn saves_are_byte_for_byte_reproducible() {
        let dir = TempDir::new("reproducible");
        let values = [1.0f32, 2.0, 3.0, 4.0];
        let tensors = [
            ("b.weight".to_string(), vec![2, 2], &values[..]),
            ("a.bias".to_string(), vec![4], &values[..]),
        ];
        let metadata = || {
            (0..24)
                .map(|i| (format!("key{i}"), format!("value {i}")))
                .collect::<HashMap<_, _>>()
        };
        let first = dir.0.join("first.safetensors");
        save_tensors(&first, &tensors, Some(metadata())).unwrap();
        let bytes = fs::read(&first).unwrap();
        for k in 0..8 {
            let again = dir.0.join(format!("again{k}.safetensors"));
            save_tensors(&again, &tensors, Some(metadata())).unwrap();
            assert!(fs::read(&again).unwrap() == bytes, "save {k} differs");
        }
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(header % 8, 0);
        assert_eq!(read_metadata(&first).unwrap(), metadata());
        assert_eq!(load_tensors(&first).unwrap().len(), 2);
    }

    /// A save never replaces what is not a regular file: a FIFO (made in the test's own
    /// folder) and a directory stay as they are, with an error naming the path; a symbolic
    /// link is followed, so the file it names is replaced and the link stays (issue 13,
    /// item 4).
    #[test]
    fn saves_replace_only_regular_files() {
        let dir = TempDir::new("not-regular");
        let values = [1.0f32];
        let tensors = [("w".to_string(), vec![1], &values[..])];
        let sub = dir.0.join("a-directory");
        fs::create_dir(&sub).unwrap();
        let err = save_tensors(&sub, &tensors, None).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(sub.is_dir());
        let fifo = dir.0.join("a-fifo");
        match std::process::Command::new("mkfifo").arg(&fifo).status() {
            Ok(status) if status.success() => {
                let err = save_tensors(&fifo, &tensors, None).unwrap_err().to_string();
                assert!(err.contains("not a regular file"), "{err}");
                #[cfg(unix)]
                {
                    use std::os::unix::fs::FileTypeExt;
                    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
                }
            }
            _ => eprintln!("mkfifo is not available: the FIFO case is skipped"),
        }
        #[cfg(unix)]
        {
            let target = dir.0.join("target.safetensors");
            let link = dir.0.join("link.safetensors");
            fs::write(&target, b"old").unwrap();
            std::os::unix::fs::symlink(&target, &link).unwrap();
            save_tensors(&link, &tensors, None).unwrap();
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(load_tensors(&target).unwrap()[0].data, values);
        }
    }

    /// A save removes the temporary files that saves killed midway left beside its target
    /// (their process has ended), and keeps those of running processes, this one included
    /// (issue 13, item 5).
    #[test]
    fn saves_remove_temporaries_of_dead_processes() {
        let dir = TempDir::new("stale");
        let target = dir.0.join("w.safetensors");
        // Above Linux's largest process id, so never a running process.
        let dead = dir.0.join(".w.safetensors.tmp-999999999-3");
        let mine = dir
            .0
            .join(format!(".w.safetensors.tmp-{}-77", std::process::id()));
        let other = dir.0.join(".x.safetensors.tmp-999999999-3");
        for f in [&dead, &mine, &other] {
            fs::write(f, b"half a save").unwrap();
        }
        let values = [2.0f32];
        save_tensors(&target, &[("w".to_string(), vec![1], &values[..])], None).unwrap();
        let linux = Path::new("/proc/self").exists();
        assert_eq!(dead.exists(), !linux, "a dead save's temporary");
        assert!(mine.exists(), "this process's temporary");
        assert!(other.exists(), "another target's temporary");
    }

    /// A FIFO is refused before it is opened, so the read cannot block: the call runs on
    /// another thread and must answer within ten seconds (it answers at once); `/dev/zero`
    /// and a directory are refused the same way (issue 13, item 7).
    #[test]
    fn non_regular_files_are_refused_without_blocking() {
        let dir = TempDir::new("fifo-read");
        let fifo = dir.0.join("w.safetensors");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        let mut targets = vec![dir.0.clone()];
        if made {
            targets.push(fifo.clone());
        } else {
            eprintln!("mkfifo is not available: the FIFO case is skipped");
        }
        if Path::new("/dev/zero").exists() {
            targets.push(PathBuf::from("/dev/zero"));
        }
        for target in targets {
            let (send, receive) = std::sync::mpsc::channel();
            let path = target.clone();
            std::thread::spawn(move || {
                let _ = send.send((
                    load_typed_tensors(&path).map(|_| ()),
                    read_metadata(&path).map(|_| ()),
                ));
            });
            let (tensors, metadata) = receive
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("reading {} blocked", target.display()));
            for err in [tensors.unwrap_err(), metadata.unwrap_err()] {
                let reason = format_reason(err, &target);
                assert!(reason.starts_with("not a regular file"), "{reason}");
            }
        }
    }

    /// A valid header followed by 64 GiB of (sparse) zeros: the file's length is compared with
    /// what the header says before any data is read, so the call returns at once with the
    /// excess; a header that claims a 64 GiB tensor in a file of that length is refused by
    /// `max_weight_file_bytes` before anything is allocated (issue 13, item 7).
    #[test]
    fn huge_sparse_files_are_refused_from_their_header() {
        let dir = TempDir::new("sparse");
        let path = dir.0.join("w.safetensors");
        save_tensors(&path, &[("w".into(), vec![2], &[1.0, 2.0][..])], None).unwrap();
        let good_len = fs::metadata(&path).unwrap().len();
        let huge = 64u64 << 30;
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(good_len + huge)
            .unwrap();
        let reason = format_reason(load_tensors(&path).unwrap_err(), &path);
        assert!(reason.contains("the file is too long"), "{reason}");
        assert!(reason.contains("cover 8 bytes of data"), "{reason}");
        assert!(reason.contains(&format!("found {}", huge + 8)), "{reason}");
        let reason = format_reason(read_metadata(&path).unwrap_err(), &path);
        assert!(reason.contains("the file is too long"), "{reason}");

        let values = huge / 4;
        let json =
            format!(r#"{{"big":{{"dtype":"F32","shape":[{values}],"data_offsets":[0,{huge}]}}}}"#);
        let mut head = (json.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(json.as_bytes());
        fs::write(&path, &head).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(head.len() as u64 + huge)
            .unwrap();
        match load_typed_tensors(&path).unwrap_err() {
            Error::Limit {
                name,
                limit,
                found,
                how_to_raise,
                ..
            } => {
                assert_eq!(
                    (name, limit, found),
                    (
                        "max_weight_file_bytes",
                        Limits::DEFAULT.max_weight_file_bytes,
                        huge
                    )
                );
                assert!(
                    how_to_raise.contains(".max_weight_file_bytes(68719476736)"),
                    "{how_to_raise}"
                );
            }
            other => panic!("expected a limit error, found {other:?}"),
        }
        // Its header alone is fine, and says what the file holds.
        assert!(read_metadata(&path).unwrap().is_empty());
    }

    /// A header longer than `max_header_bytes` is refused before it is read.
    #[test]
    fn headers_are_bounded() {
        let dir = TempDir::new("header-limit");
        let path = dir.0.join("w.safetensors");
        save_tensors(&path, &[("w".into(), vec![1], &[1.0][..])], None).unwrap();
        let header_len = u64::from_le_bytes(fs::read(&path).unwrap()[..8].try_into().unwrap());
        let tight = Limits::DEFAULT.max_header_bytes(header_len - 1);
        match read_header(&path, tight).unwrap_err() {
            Error::Limit {
                name: "max_header_bytes",
                found,
                ..
            } => assert_eq!(found, header_len),
            other => panic!("expected a limit error, found {other:?}"),
        }
        assert!(read_header(&path, Limits::DEFAULT.max_header_bytes(header_len)).is_ok());
        let small_data = Limits::DEFAULT.max_weight_file_bytes(3);
        assert!(matches!(
            read_weight_file(&path, small_data),
            Err(Error::Limit {
                name: "max_weight_file_bytes",
                found: 4,
                limit: 3,
                ..
            })
        ));
    }

    /// Every truncation of a valid file, and the file with extra bytes after it, is a format
    /// error from both readers, and the tensors' data are read only when the length is right.
    #[test]
    fn every_truncation_and_extension_is_a_format_error() {
        let dir = TempDir::new("truncations");
        let path = dir.0.join("w.safetensors");
        let metadata = HashMap::from([("k".to_string(), "v".to_string())]);
        save_typed_tensors(
            &path,
            &[
                ("a".into(), vec![3], TensorData::F32(&[1.0, 2.0, 3.0])),
                ("n".into(), vec![], TensorData::I64(&[5])),
            ],
            Some(metadata),
        )
        .unwrap();
        let good = fs::read(&path).unwrap();
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|len| good[..len].to_vec()).collect();
        cases.push([&good[..], &[0u8][..]].concat());
        cases.push([&good[..], &[0u8; 4096][..]].concat());
        for bytes in cases {
            fs::write(&path, &bytes).unwrap();
            let reason = format_reason(load_typed_tensors(&path).unwrap_err(), &path);
            assert!(
                reason.starts_with("not a valid safetensors file"),
                "{} bytes: {reason}",
                bytes.len()
            );
            let reason = format_reason(read_metadata(&path).unwrap_err(), &path);
            assert!(
                reason.starts_with("not a valid safetensors file"),
                "{} bytes: {reason}",
                bytes.len()
            );
        }
        let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        let reason = format_reason(load_typed_tensors(&path).unwrap_err(), &path);
        assert!(reason.contains("the file is truncated"), "{reason}");
        assert!(
            reason.contains(&format!(
                "cover {} bytes of data after the {header_end}-byte header, found {} (1 missing)",
                good.len() - header_end,
                good.len() - header_end - 1
            )),
            "{reason}"
        );
        fs::write(&path, &good).unwrap();
        assert_eq!(load_typed_tensors(&path).unwrap().len(), 2);
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "striate-io-{test}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn format_reason(err: Error, expected_path: &Path) -> String {
        match err {
            Error::Format { path, reason } => {
                assert_eq!(path, expected_path);
                reason
            }
            other => panic!("expected a format error, found {other:?}"),
        }
    }

    #[test]
    fn round_trip_keeps_every_bit() {
        let dir = TempDir::new("round-trip");
        let path = dir.0.join("w.safetensors");
        let weight = [
            1.5,
            -0.0,
            f32::INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE / 4.0,
            f32::MAX,
        ];
        let scalar = [42.0];
        let tensors = [
            ("z.weight".to_string(), vec![2, 3], &weight[..]),
            ("a.scale".to_string(), vec![], &scalar[..]),
            ("m.empty".to_string(), vec![0, 4], &[][..]),
        ];
        let metadata = HashMap::from([("epoch".to_string(), "7".to_string())]);
        save_tensors(&path, &tensors, Some(metadata.clone())).unwrap();

        let loaded = load_tensors(&path).unwrap();
        let names: Vec<&str> = loaded.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.scale", "m.empty", "z.weight"]);
        assert_eq!(loaded[0].shape, Vec::<usize>::new());
        assert_eq!(loaded[0].data, scalar);
        assert_eq!(loaded[1].shape, [0, 4]);
        assert!(loaded[1].data.is_empty());
        assert_eq!(loaded[2].shape, [2, 3]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&loaded[2].data), bits(&weight));
        assert_eq!(read_metadata(&path).unwrap(), metadata);
    }

    #[test]
    fn i64_counters_are_written_as_i64_and_read_back() {
        let dir = TempDir::new("typed");
        let path = dir.0.join("w.safetensors");
        let tensors = [
            (
                "bn.running_var".into(),
                vec![2],
                TensorData::F32(&[0.5, 2.0]),
            ),
            (
                "bn.num_batches_tracked".into(),
                vec![],
                TensorData::I64(&[7]),
            ),
            ("c.pair".into(), vec![2], TensorData::I64(&[i64::MIN, -1])),
        ];
        save_typed_tensors(&path, &tensors, None).unwrap();

        // As safetensors itself sees the file: PyTorch's dtype and a scalar's empty shape.
        let bytes = fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let counter = st.tensor("bn.num_batches_tracked").unwrap();
        assert_eq!(counter.dtype(), Dtype::I64);
        assert!(counter.shape().is_empty());
        assert_eq!(counter.data(), 7i64.to_le_bytes());
        assert_eq!(st.tensor("bn.running_var").unwrap().dtype(), Dtype::F32);

        // safetensors' order: the wider dtype first, then by name.
        let loaded = load_typed_tensors(&path).unwrap();
        let names: Vec<&str> = loaded.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["bn.num_batches_tracked", "c.pair", "bn.running_var"]
        );
        assert_eq!(loaded[0].data, LoadedData::I64(vec![7]));
        assert!(loaded[0].shape.is_empty());
        assert_eq!(loaded[1].data, LoadedData::I64(vec![i64::MIN, -1]));
        assert_eq!(loaded[2].data, LoadedData::F32(vec![0.5, 2.0]));
        // The f32 reader names the counter and its dtype instead of misreading it.
        let reason = format_reason(load_tensors(&path).unwrap_err(), &path);
        assert!(
            reason.contains("tensor `bn.num_batches_tracked` has dtype I64"),
            "{reason}"
        );
        let kept = load_tensors_where(&path, |name| name == "bn.running_var").unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].data, [0.5, 2.0]);
    }

    #[test]
    fn typed_save_checks_like_save() {
        let dir = TempDir::new("typed-rejected");
        let path = dir.0.join("w.safetensors");
        fs::write(&path, "old contents").unwrap();
        let wrong_count = [("n".into(), vec![], TensorData::I64(&[1, 2]))];
        assert!(matches!(
            save_typed_tensors(&path, &wrong_count, None),
            Err(Error::Shape { .. })
        ));
        let twice = [
            ("n".into(), vec![1], TensorData::I64(&[1])),
            ("n".into(), vec![1], TensorData::F32(&[1.0])),
        ];
        assert!(matches!(
            save_typed_tensors(&path, &twice, None),
            Err(Error::Config { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "old contents");
        assert_eq!(dir.entries(), ["w.safetensors"]);
    }

    #[test]
    fn file_is_readable_by_safetensors_itself() {
        let dir = TempDir::new("interop");
        let path = dir.0.join("w.safetensors");
        save_tensors(&path, &[("b".into(), vec![2], &[1.0, -2.0][..])], None).unwrap();
        let bytes = fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let view = st.tensor("b").unwrap();
        assert_eq!(view.dtype(), Dtype::F32);
        assert_eq!(view.shape(), [2]);
        assert_eq!(
            view.data(),
            [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        assert!(read_metadata(&path).unwrap().is_empty());
    }

    #[test]
    fn save_replaces_an_existing_file_and_leaves_no_temp_file() {
        let dir = TempDir::new("replace");
        let path = dir.0.join("w.safetensors");
        fs::write(&path, "old contents").unwrap();
        save_tensors(&path, &[("w".into(), vec![1], &[3.0][..])], None).unwrap();
        save_tensors(&path, &[("w".into(), vec![2], &[4.0, 5.0][..])], None).unwrap();
        assert_eq!(dir.entries(), ["w.safetensors"]);
        assert_eq!(load_tensors(&path).unwrap()[0].data, [4.0, 5.0]);
    }

    /// A directory at the target path makes the final rename fail, after the temporary file was
    /// written: the error names the target and the temporary file is gone.
    #[test]
    fn failed_rename_removes_the_temp_file() {
        let dir = TempDir::new("rename-fails");
        let path = dir.0.join("w.safetensors");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "x").unwrap();
        match save_tensors(&path, &[("w".into(), vec![1], &[3.0][..])], None) {
            Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected an io error, found {other:?}"),
        }
        assert_eq!(dir.entries(), ["w.safetensors"]);
        assert_eq!(fs::read_to_string(path.join("keep")).unwrap(), "x");
    }

    #[test]
    fn rejected_tensors_leave_the_existing_file_untouched() {
        let dir = TempDir::new("rejected");
        let path = dir.0.join("w.safetensors");
        fs::write(&path, "old contents").unwrap();
        match save_tensors(&path, &[("w".into(), vec![2, 2], &[1.0; 3][..])], None) {
            Err(Error::Shape {
                expected, found, ..
            }) => assert_eq!((expected, found), (vec![2, 2], vec![3])),
            other => panic!("expected a shape error, found {other:?}"),
        }
        let twice = [
            ("w".into(), vec![1], &[1.0][..]),
            ("w".into(), vec![1], &[2.0][..]),
        ];
        assert!(matches!(
            save_tensors(&path, &twice, None),
            Err(Error::Config {
                name: "tensor name",
                ..
            })
        ));
        let reserved = [(METADATA_KEY.into(), vec![1], &[1.0][..])];
        assert!(matches!(
            save_tensors(&path, &reserved, None),
            Err(Error::Config {
                name: "tensor name",
                ..
            })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "old contents");
        assert_eq!(dir.entries(), ["w.safetensors"]);
    }

    #[test]
    fn save_into_missing_directory_is_an_io_error() {
        let dir = TempDir::new("no-dir");
        let path = dir.0.join("missing").join("w.safetensors");
        match save_tensors(&path, &[("w".into(), vec![1], &[1.0][..])], None) {
            Err(Error::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an io error, found {other:?}"),
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = TempDir::new("missing");
        let path = dir.0.join("none.safetensors");
        for err in [
            load_tensors(&path).unwrap_err(),
            read_metadata(&path).unwrap_err(),
        ] {
            match err {
                Error::Io { path: p, source } => {
                    assert_eq!(p, path);
                    assert_eq!(source.kind(), io::ErrorKind::NotFound);
                }
                other => panic!("expected an io error, found {other:?}"),
            }
        }
    }

    #[test]
    fn corrupt_files_are_format_errors() {
        let dir = TempDir::new("corrupt");
        let path = dir.0.join("w.safetensors");
        save_tensors(&path, &[("w".into(), vec![4], &[1.0; 4][..])], None).unwrap();
        let good = fs::read(&path).unwrap();

        let header = |len: u64, json: &str| [&len.to_le_bytes()[..], json.as_bytes()].concat();
        let cases: [(&[u8], &str); 6] = [
            (b"abc", "HeaderTooSmall"),
            (b"not a safetensors file at all", "InvalidHeaderLength"),
            (&header(100, "{}"), "InvalidHeaderLength"),
            (&header(8, "garbage!"), "InvalidHeaderDeserialization"),
            (&good[..good.len() - 1], "MetadataIncompleteBuffer"),
            (&[&good[..], &[0]].concat(), "MetadataIncompleteBuffer"),
        ];
        for (bytes, diagnosis) in cases {
            fs::write(&path, bytes).unwrap();
            for err in [
                load_tensors(&path).unwrap_err(),
                read_metadata(&path).unwrap_err(),
            ] {
                let reason = format_reason(err, &path);
                assert!(
                    reason.starts_with("not a valid safetensors file"),
                    "{reason}"
                );
                assert!(reason.contains(diagnosis), "{reason}");
            }
        }
    }

    #[test]
    fn non_f32_tensor_is_named() {
        let dir = TempDir::new("dtype");
        let path = dir.0.join("w.safetensors");
        let f64_bytes: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f32_bytes: Vec<u8> = 1.0f32.to_le_bytes().to_vec();
        let tensors = [
            (
                "a.ok",
                TensorView::new(Dtype::F32, vec![1], &f32_bytes).unwrap(),
            ),
            (
                "b.double",
                TensorView::new(Dtype::F64, vec![2], &f64_bytes).unwrap(),
            ),
        ];
        fs::write(&path, safetensors::serialize(tensors, &None).unwrap()).unwrap();
        let reason = format_reason(load_tensors(&path).unwrap_err(), &path);
        assert!(
            reason.contains("tensor `b.double` has dtype F64"),
            "{reason}"
        );
        // The metadata of such a file is still readable, and the typed reader reports the dtype.
        assert!(read_metadata(&path).unwrap().is_empty());
        let typed = load_typed_tensors(&path).unwrap();
        let double = typed.iter().find(|t| t.name == "b.double").unwrap();
        assert_eq!(double.data, LoadedData::Other("F64".to_string()));
        assert_eq!(double.data.dtype(), "F64");
        assert_eq!(double.shape, [2]);
    }
}
