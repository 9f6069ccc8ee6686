//! The metrics log of [`Trainer::fit`](super::Trainer::fit): one row per epoch, CSV or JSON
//! lines, flushed after every row.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::EpochRecord;
use crate::{Error, Result};

/// The columns, in order; a JSON line has the same keys.
const COLUMNS: [&str; 9] = [
    "epoch",
    "step",
    "lr",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "images_per_sec",
];

/// The format of a metrics log ([`Fit::log`](super::Fit::log)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Comma-separated values under a header line, `val_loss` and `val_accuracy` empty
    /// without a validation set.
    Csv,
    /// One JSON object per line, `val_loss` and `val_accuracy` `null` without a validation
    /// set.
    JsonLines,
}

impl LogFormat {
    /// The format a file name asks for: `.csv` is CSV; `.jsonl`, `.ndjson` and `.json` are
    /// JSON lines.
    ///
    /// # Errors
    /// [`Error::Config`] for any other extension, naming the ones that work.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::train::LogFormat;
    ///
    /// assert_eq!(LogFormat::from_path("runs/metrics.csv".as_ref())?, LogFormat::Csv);
    /// assert_eq!(LogFormat::from_path("metrics.jsonl".as_ref())?, LogFormat::JsonLines);
    /// assert!(LogFormat::from_path("metrics.txt".as_ref()).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn from_path(path: &Path) -> Result<LogFormat> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match extension.to_ascii_lowercase().as_str() {
            "csv" => Ok(LogFormat::Csv),
            "jsonl" | "ndjson" | "json" => Ok(LogFormat::JsonLines),
            _ => Err(Error::Config {
                name: "metrics log",
                reason: format!(
                    "{}: expected a file ending in .csv (CSV) or .jsonl, .ndjson or .json (JSON \
                     lines), found {}",
                    path.display(),
                    if extension.is_empty() {
                        "no extension".to_string()
                    } else {
                        format!("`.{extension}`")
                    }
                ),
            }),
        }
    }
}

/// An open metrics log.
pub(super) struct MetricsLog {
    path: PathBuf,
    format: LogFormat,
    file: File,
}

impl MetricsLog {
    /// Opens the log at `path` for a fit whose first epoch is `first_epoch`: the rows of the
    /// epochs before it are kept (a resumed or continued run goes on with its log), every
    /// later row is dropped (a run killed after logging an epoch but before checkpointing it
    /// logs that epoch again), and so is a last line cut short.
    ///
    /// The kept rows are written to a temporary file that then replaces the log, so that a
    /// run killed while it opens its log loses none of the old one; a path that is not a
    /// regular file (a FIFO, a device) is refused before it is read.
    pub(super) fn open(path: &Path, format: LogFormat, first_epoch: usize) -> Result<MetricsLog> {
        if let Ok(meta) = fs::metadata(path) {
            if !meta.is_file() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(
                        ErrorKind::InvalidInput,
                        "expected a regular file for the metrics log, found another kind of file",
                    ),
                ));
            }
        }
        let old = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let kept = if first_epoch == 0 {
            String::new()
        } else {
            kept_rows(path, &old, format, first_epoch)?
        };
        let header = match format {
            LogFormat::Csv if kept.is_empty() => format!("{}\n", COLUMNS.join(",")),
            _ => String::new(),
        };
        crate::io::write_atomically(path, format!("{header}{kept}").as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            format,
            file,
        })
    }

    /// Appends the epoch's row and flushes it to the file.
    pub(super) fn write(&mut self, record: &EpochRecord) -> Result<()> {
        let t = &record.train;
        let validation = record.validation.as_ref();
        let cells: [(&str, Option<String>); 9] = [
            ("epoch", Some(t.epoch.to_string())),
            ("step", Some(record.step.to_string())),
            ("lr", Some(t.lr.to_string())),
            ("loss", Some(t.loss.to_string())),
            ("accuracy", Some(t.accuracy.to_string())),
            ("val_loss", validation.map(|v| v.loss.to_string())),
            ("val_accuracy", validation.map(|v| v.accuracy().to_string())),
            ("seconds", Some(format!("{:.3}", record.seconds))),
            ("images_per_sec", Some(format!("{:.1}", t.images_per_sec))),
        ];
        let line = match self.format {
            LogFormat::Csv => {
                let values: Vec<String> = cells
                    .into_iter()
                    .map(|(_, v)| v.unwrap_or_default())
                    .collect();
                values.join(",")
            }
            LogFormat::JsonLines => {
                // Written by hand so that the keys keep the columns' order; every value is a
                // number that Rust prints as JSON does (NaN and infinity, which JSON lacks,
                // become null).
                let fields: Vec<String> = cells
                    .into_iter()
                    .map(|(key, value)| {
                        let value = value
                            .filter(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
                            .unwrap_or_else(|| "null".into());
                        format!("\"{key}\":{value}")
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
        };
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The complete rows of `old` (with the CSV header) for the epochs before `first_epoch`.
fn kept_rows(path: &Path, old: &str, format: LogFormat, first_epoch: usize) -> Result<String> {
    let mut kept = String::new();
    let mut lines = old.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    if format == LogFormat::Csv {
        match lines.next() {
            None => return Ok(kept),
            Some(header) if header.trim_end() == COLUMNS.join(",") => kept.push_str(header),
            Some(header) => {
                return Err(Error::format(
                    path,
                    format!(
                    "a metrics log to go on with should begin with the header `{}`, found `{}`; \
                         give a new file, or remove this one",
                    COLUMNS.join(","),
                    header.trim_end()
                ),
                ))
            }
        }
    }
    for line in lines {
        let epoch = match format {
            LogFormat::Csv => line.split(',').next().and_then(|e| e.trim().parse().ok()),
            LogFormat::JsonLines => serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|row| row.get("epoch")?.as_u64())
                .and_then(|e| usize::try_from(e).ok()),
        };
        match epoch {
            Some(epoch) if epoch < first_epoch => kept.push_str(line),
            Some(_) => break,
            None => {
                return Err(Error::format(
                    path,
                    format!(
                        "a metrics log row should begin with its epoch, found `{}`",
                        line.trim_end()
                    ),
                ))
            }
        }
    }
    Ok(kept)
}
