//! The IDX format of the MNIST files: a magic number, the dimensions, then the raw values.
//!
//! ```text
//! offset  bytes   meaning
//! 0       2       0x00 0x00
//! 2       1       data type: 0x08 unsigned byte (the only one read here), 0x09 signed byte,
//!                 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
//! 3       1       number of dimensions D
//! 4       4*D     each dimension, a big-endian u32
//! 4+4*D   ...     the values, row-major, exactly the product of the dimensions
//! ```
//!
//! A file may be gzip-compressed as a whole; that is recognised by the gzip magic `1f 8b`, not
//! by the file name.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::{Error, Limits, Result};

/// The two bytes that open every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The type byte of unsigned-byte data, the only type MNIST uses.
const UBYTE: u8 = 0x08;

/// An array read from an IDX file of unsigned bytes: its dimensions and its values, row-major.
///
/// `data.len()` is always the product of `dims`.
#[derive(Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first: `[N, H, W]` for MNIST images, `[N]` for labels.
    pub dims: Vec<usize>,
    /// The values in row-major order.
    pub data: Vec<u8>,
}

// The derived `Debug` would print every pixel of the file.
impl fmt::Debug for IdxArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdxArray")
            .field("dims", &self.dims)
            .field("data", &format_args!("[{} bytes]", self.data.len()))
            .finish()
    }
}

/// Reads an IDX file of unsigned bytes, raw or gzip-compressed.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] naming the file if its contents
/// are not a well-formed IDX array of unsigned bytes (see [`parse_idx`]).
///
/// # Example
///
/// ```
/// use striate::data::read_idx;
///
/// let path = std::env::temp_dir().join(format!("striate-doc-read-idx-{}", std::process::id()));
/// // A 2x3 array: magic 00 00 08 02, dims 2 and 3, then six values.
/// std::fs::write(&path, [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])?;
/// let array = read_idx(&path)?;
/// assert_eq!(array.dims, [2, 3]);
/// assert_eq!(array.data, [1, 2, 3, 4, 5, 6]);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    read_idx_limited(path, Limits::global().max_idx_bytes)
}

/// The default bound on the data bytes of one IDX file, [`Limits::DEFAULT`]'s
/// `max_idx_bytes`: 2 GiB, which as a [`Dataset`](super::Dataset) of `f32` pixels takes 8 GiB,
/// a third of a 24 GiB machine. [`read_idx`] and [`parse_idx`] apply the bound in force,
/// [`Limits::global`]'s `max_idx_bytes`; [`read_idx_limited`] takes a bound per call.
pub const MAX_IDX_BYTES: u64 = Limits::DEFAULT.max_idx_bytes;

/// [`read_idx`] with `max_bytes` as the most data bytes the file may hold (its header is read
/// first, and a file whose dimensions ask for more is refused before anything is allocated).
///
/// Only regular files are read: a directory, device or FIFO is an error (reading `/dev/zero`
/// would never end, a FIFO might block forever). The file is read as a stream, never whole:
/// what is read is bounded by what the header promises.
///
/// # Errors
/// As [`read_idx`]; [`Error::Limit`] naming the file when its dimensions hold more than
/// `max_bytes` bytes (saying how to allow more), and [`Error::Format`] when it is not a
/// regular file.
///
/// # Example
/// ```
/// use striate::data::read_idx_limited;
///
/// let path = std::env::temp_dir().join(format!("striate-doc-idx-limit-{}", std::process::id()));
/// std::fs::write(&path, [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])?;
/// assert_eq!(read_idx_limited(&path, 6)?.data, [1, 2, 3, 4, 5, 6]);
/// let err = read_idx_limited(&path, 5).unwrap_err();
/// assert!(err.to_string().contains("more than the limit of 5 bytes"), "{err}");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_idx_limited(path: impl AsRef<Path>, max_bytes: u64) -> Result<IdxArray> {
    let path = path.as_ref();
    // Looked at before opening: opening a FIFO to read blocks until someone writes to it.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::format(
            path,
            "not a regular file (a directory, device, FIFO or socket); IDX data is read only \
             from regular files",
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let gzip = reader
        .fill_buf()
        .map_err(|e| Error::io(path, e))?
        .starts_with(&GZIP_MAGIC);
    if gzip {
        parse_stream(MultiGzDecoder::new(reader), path, Encoding::Gzip, max_bytes)
    } else {
        parse_stream(reader, path, Encoding::Raw, max_bytes)
    }
}

/// Parses the bytes of an IDX file of unsigned bytes, raw or gzip-compressed.
///
/// `origin` names where the bytes came from; it is only used in error messages.
///
/// # Errors
///
/// [`Error::Format`] naming `origin` when:
/// - the gzip stream is corrupt;
/// - the magic number does not start with `00 00`;
/// - the type byte is not `0x08` (unsigned byte), naming the type found;
/// - the header is cut short, or the data is shorter or longer than the dimensions say
///   (stating the expected and the found number of bytes);
/// - the product of the dimensions does not fit in a `usize`.
///
/// # Example
///
/// ```
/// use striate::data::parse_idx;
///
/// let labels = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1], "labels")?;
/// assert_eq!(labels.dims, [3]);
/// assert_eq!(labels.data, [7, 2, 1]);
///
/// let err = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 3, 7], "labels").unwrap_err();
/// assert!(err.to_string().contains("need 3 bytes of data"), "{err}");
/// # Ok::<(), striate::Error>(())
/// ```
pub fn parse_idx(bytes: &[u8], origin: impl AsRef<Path>) -> Result<IdxArray> {
    let origin = origin.as_ref();
    if bytes.starts_with(&GZIP_MAGIC) {
        parse_stream(
            MultiGzDecoder::new(bytes),
            origin,
            Encoding::Gzip,
            Limits::global().max_idx_bytes,
        )
    } else {
        parse_stream(bytes, origin, Encoding::Raw, Limits::global().max_idx_bytes)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Raw,
    Gzip,
}

impl Encoding {
    /// Appended to format errors so a reader knows the offsets are in the decompressed stream.
    fn note(self) -> &'static str {
        match self {
            Encoding::Raw => "",
            Encoding::Gzip => " (after gzip decompression)",
        }
    }
}

/// Parses an IDX stream. Reading from a stream, rather than decompressing everything first,
/// means a header that claims terabytes only costs as much memory as the data that is there.
fn parse_stream(
    mut source: impl Read,
    origin: &Path,
    encoding: Encoding,
    max_bytes: u64,
) -> Result<IdxArray> {
    let note = encoding.note();
    let read_error = |e: io::Error| match encoding {
        Encoding::Gzip => Error::format(origin, format!("corrupt gzip stream: {e}")),
        Encoding::Raw => Error::io(origin, e),
    };

    let mut magic = [0u8; 4];
    let got = read_up_to(&mut source, &mut magic).map_err(read_error)?;
    if got < magic.len() {
        return Err(Error::format(
            origin,
            format!(
                "not an IDX file: expected a 4-byte magic number, found only {got} bytes{note}"
            ),
        ));
    }
    let [zero0, zero1, type_byte, ndims] = magic;
    if [zero0, zero1] != [0, 0] {
        return Err(Error::format(
            origin,
            format!(
                "not an IDX file: expected the magic number to start with 00 00, \
                 found {zero0:02x} {zero1:02x}{note}"
            ),
        ));
    }
    if type_byte != UBYTE {
        return Err(Error::format(
            origin,
            format!(
                "unsupported IDX data type 0x{type_byte:02x} ({}); only 0x08 (unsigned byte) \
                 is supported",
                type_name(type_byte)
            ),
        ));
    }

    let ndims = usize::from(ndims);
    let mut dim_bytes = vec![0u8; 4 * ndims];
    let got = read_up_to(&mut source, &mut dim_bytes).map_err(read_error)?;
    if got < dim_bytes.len() {
        return Err(Error::format(
            origin,
            format!(
                "truncated IDX header: {ndims} dimensions need {} bytes after the magic number, \
                 found {got}{note}",
                dim_bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .map(|d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::format(
                origin,
                format!(
                    "IDX dimensions {dims:?} multiply to more than {} values",
                    usize::MAX
                ),
            )
        })?;

    if u64::try_from(expected).map_or(true, |e| e > max_bytes) {
        let found = u64::try_from(expected).unwrap_or(u64::MAX);
        return Err(Error::Limit {
            what: format!(
                "{}: IDX dimensions {dims:?} hold {expected} bytes of data{note}",
                origin.display()
            ),
            name: "max_idx_bytes",
            limit: max_bytes,
            found,
            how_to_raise: format!(
                "read it with `striate::data::read_idx_limited(path, {found})`, or {}",
                crate::limits::raise_hint("max_idx_bytes", found).replacen(
                    "raise",
                    "raise the bound",
                    1
                )
            ),
        });
    }
    let header = 4 + dim_bytes.len();
    let mut data = Vec::new();
    // `take` bounds the read by what the header promises; `read_to_end` grows the buffer only as
    // data actually arrives.
    source
        .by_ref()
        .take(u64::try_from(expected).unwrap_or(u64::MAX))
        .read_to_end(&mut data)
        .map_err(read_error)?;
    if data.len() < expected {
        return Err(Error::format(
            origin,
            format!(
                "truncated IDX data: dimensions {dims:?} need {expected} bytes of data after \
                 the {header}-byte header, found {}{note}",
                data.len()
            ),
        ));
    }
    // Counted up to a bound: a gzip stream may expand to far more than it claims.
    let excess =
        io::copy(&mut source.by_ref().take(EXCESS_COUNTED), &mut io::sink()).map_err(read_error)?;
    if excess > 0 {
        let more = if excess == EXCESS_COUNTED {
            "at least "
        } else {
            ""
        };
        return Err(Error::format(
            origin,
            format!(
                "excess IDX data: dimensions {dims:?} need {expected} bytes of data after the \
                 {header}-byte header, found {more}{} ({more}{excess} too many){note}",
                u64::try_from(expected)
                    .unwrap_or(u64::MAX)
                    .saturating_add(excess)
            ),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// How many bytes past the data are counted for the message about excess data.
const EXCESS_COUNTED: u64 = 1 << 20;

/// Fills as much of `buf` as the source has, returning how many bytes were read.
fn read_up_to(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The IDX name of a type byte, for error messages.
fn type_name(type_byte: u8) -> &'static str {
    match type_byte {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "not an IDX type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn origin() -> &'static Path {
        Path::new("test.idx")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A well-formed 2x3 unsigned-byte array.
    const GOOD: [u8; 18] = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 10, 20, 30, 40, 50, 60];

    fn format_reason(err: Error) -> String {
        match err {
            Error::Format { path, reason } => {
                assert_eq!(path, origin());
                reason
            }
            other => panic!("expected a format error, found {other:?}"),
        }
    }

    #[test]
    fn parses_raw_bytes() {
        let array = parse_idx(&GOOD, origin()).unwrap();
        assert_eq!(array.dims, [2, 3]);
        assert_eq!(array.data, [10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn parses_gzip_by_content_not_name() {
        let array = parse_idx(&gzip(&GOOD), origin()).unwrap();
        assert_eq!(array, parse_idx(&GOOD, origin()).unwrap());
    }

    #[test]
    fn big_endian_dimensions() {
        // One dimension of 0x0102 = 258 values.
        let mut bytes = vec![0, 0, 8, 1, 0, 0, 1, 2];
        bytes.extend([7; 258]);
        let array = parse_idx(&bytes, origin()).unwrap();
        assert_eq!(array.dims, [258]);
        assert_eq!(array.data.len(), 258);
    }

    #[test]
    fn empty_dimension_has_no_data() {
        let array = parse_idx(&[0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 5], origin()).unwrap();
        assert_eq!(array.dims, [0, 5]);
        assert!(array.data.is_empty());
    }

    #[test]
    fn wrong_magic() {
        let mut bytes = GOOD;
        bytes[0] = 0x50;
        bytes[1] = 0x4b;
        let reason = format_reason(parse_idx(&bytes, origin()).unwrap_err());
        assert!(reason.contains("found 50 4b"), "{reason}");
    }

    #[test]
    fn too_short_for_magic() {
        let reason = format_reason(parse_idx(&[0, 0], origin()).unwrap_err());
        assert!(reason.contains("found only 2 bytes"), "{reason}");
        let reason = format_reason(parse_idx(&[], origin()).unwrap_err());
        assert!(reason.contains("found only 0 bytes"), "{reason}");
    }

    #[test]
    fn unsupported_type_is_named() {
        let mut bytes = GOOD;
        bytes[2] = 0x0D;
        let reason = format_reason(parse_idx(&bytes, origin()).unwrap_err());
        assert!(reason.contains("0x0d (f32)"), "{reason}");
        assert!(reason.contains("only 0x08 (unsigned byte)"), "{reason}");
    }

    #[test]
    fn truncated_header() {
        let reason = format_reason(parse_idx(&GOOD[..9], origin()).unwrap_err());
        assert!(reason.contains("2 dimensions need 8 bytes"), "{reason}");
        assert!(reason.contains("found 5"), "{reason}");
    }

    #[test]
    fn truncated_data_says_expected_and_found() {
        let reason = format_reason(parse_idx(&GOOD[..16], origin()).unwrap_err());
        assert!(reason.contains("need 6 bytes of data"), "{reason}");
        assert!(reason.contains("found 4"), "{reason}");
    }

    #[test]
    fn truncated_data_inside_gzip() {
        let reason = format_reason(parse_idx(&gzip(&GOOD[..16]), origin()).unwrap_err());
        assert!(reason.contains("need 6 bytes of data"), "{reason}");
        assert!(reason.contains("after gzip decompression"), "{reason}");
    }

    #[test]
    fn excess_data_says_expected_and_found() {
        let mut bytes = GOOD.to_vec();
        bytes.extend([1, 2, 3]);
        let reason = format_reason(parse_idx(&bytes, origin()).unwrap_err());
        assert!(reason.contains("need 6 bytes of data"), "{reason}");
        assert!(reason.contains("found 9 (3 too many)"), "{reason}");
    }

    #[test]
    fn dimension_product_overflow() {
        // Eight dimensions of 2^32 - 1 overflow any usize.
        let mut bytes = vec![0, 0, 8, 8];
        bytes.extend([0xff; 32]);
        let reason = format_reason(parse_idx(&bytes, origin()).unwrap_err());
        assert!(reason.contains("multiply to more than"), "{reason}");
    }

    #[test]
    fn huge_claimed_size_with_little_data_is_truncated_not_allocated() {
        // 2^32 - 1 squared bytes promised, 3 given: must fail fast without allocating the promise.
        let bytes = [
            0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
        ];
        let err = parse_idx(&bytes, origin()).unwrap_err();
        assert!(matches!(err, Error::Limit { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("more than the limit of 2147483648 bytes"),
            "{err}"
        );
        // Within the limit, the promise is still not allocated before the data arrives.
        let bytes = [0, 0, 8, 2, 0, 0, 0x40, 0, 0, 0, 0x80, 0, 1, 2, 3];
        let reason = format_reason(parse_idx(&bytes, origin()).unwrap_err());
        assert!(reason.contains("truncated IDX data"), "{reason}");
        assert!(reason.contains("found 3"), "{reason}");
    }

    /// A gzip file whose header claims [5000000, 28, 28] (3.9 GB, past the default limit) is
    /// refused from its header, before anything is decompressed or allocated; a lower limit
    /// refuses a small file, and a FIFO (made in a private folder) is refused without being
    /// opened, so the call cannot block (issue 13, items 6 and 7).
    #[test]
    fn reads_are_bounded_and_only_of_regular_files() {
        let mut header = vec![0, 0, 8, 3];
        for d in [5_000_000u32, 28, 28] {
            header.extend_from_slice(&d.to_be_bytes());
        }
        match parse_idx(&gzip(&header), origin()).unwrap_err() {
            err @ Error::Limit {
                name: "max_idx_bytes",
                limit: MAX_IDX_BYTES,
                found: 3_920_000_000,
                ..
            } => {
                let text = err.to_string();
                assert!(text.contains("hold 3920000000 bytes of data"), "{text}");
                assert!(text.contains("more than the limit"), "{text}");
                assert!(
                    text.contains("read_idx_limited(path, 3920000000)"),
                    "{text}"
                );
                assert!(
                    text.contains("Limits::global().max_idx_bytes(3920000000)"),
                    "{text}"
                );
            }
            other => panic!("expected a limit error, found {other:?}"),
        }

        let reason_of = |err: Error| match err {
            Error::Format { reason, .. } => reason,
            other => panic!("expected a format error, found {other:?}"),
        };
        let dir = std::env::temp_dir().join(format!("striate-idx-bounds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small-idx");
        std::fs::write(&small, [0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]).unwrap();
        assert_eq!(read_idx_limited(&small, 3).unwrap().data, [7, 2, 1]);
        let err = read_idx_limited(&small, 2).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Limit {
                    limit: 2,
                    found: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("more than the limit of 2 bytes"),
            "{err}"
        );
        let reason = reason_of(read_idx(&dir).unwrap_err());
        assert!(reason.contains("not a regular file"), "{reason}");
        let fifo = dir.join("a-fifo");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            let reason = reason_of(read_idx(&fifo).unwrap_err());
            assert!(reason.contains("not a regular file"), "{reason}");
        } else {
            eprintln!("mkfifo is not available: the FIFO case is skipped");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_gzip() {
        let mut bytes = gzip(&GOOD);
        let len = bytes.len();
        bytes.truncate(len - 12);
        bytes.extend([0xde; 4]);
        let reason = format_reason(parse_idx(&bytes, origin()).unwrap_err());
        assert!(reason.contains("gzip"), "{reason}");
    }

    #[test]
    fn read_idx_names_missing_file() {
        let path = std::env::temp_dir().join(format!(
            "striate-idx-missing-{}-does-not-exist",
            std::process::id()
        ));
        match read_idx(&path).unwrap_err() {
            Error::Io { path: p, source } => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an io error, found {other:?}"),
        }
    }

    #[test]
    fn debug_does_not_dump_data() {
        let array = parse_idx(&GOOD, origin()).unwrap();
        assert_eq!(
            format!("{array:?}"),
            "IdxArray { dims: [2, 3], data: [6 bytes] }"
        );
    }
}
