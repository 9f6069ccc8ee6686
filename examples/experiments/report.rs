//! What the experiments print and write: a mean and spread over seeds, Markdown tables on
//! standard output and in `results.md`, and curves averaged over seeds as PNG charts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use striate::plot::{save_row, LineChart};

/// Mean, standard deviation (n - 1 in the denominator), least and greatest of some runs'
/// values.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`, `None` for none.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Stats {
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// `mean ± std (min–max)` with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ± {:.d$} ({:.d$}–{:.d$})",
            self.mean,
            self.std,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// `mean ± std (min–max)` of `values`, or `–` for none.
pub fn spread(values: &[f64], decimals: usize) -> String {
    Stats::of(values).map_or_else(|| "–".to_string(), |s| s.show(decimals))
}

/// The point-by-point mean of curves over seeds, as long as the shortest of them; the x of
/// each point is the first curve's.
pub fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|i| {
            let y = curves.iter().map(|c| c[i].1).sum::<f64>() / curves.len() as f64;
            (curves[0][i].0, y)
        })
        .collect()
}

/// The experiments' output: each section printed as it is made and kept for `results.md`,
/// and the charts written into one folder.
pub struct Report {
    out: PathBuf,
    markdown: String,
}

impl Report {
    /// A report whose files go into `out` (made if missing).
    pub fn new(out: &Path) -> striate::Result<Report> {
        std::fs::create_dir_all(out).map_err(|e| striate::Error::Io {
            path: out.to_path_buf(),
            source: e,
        })?;
        Ok(Report {
            out: out.to_path_buf(),
            markdown: String::new(),
        })
    }

    fn emit(&mut self, text: &str) {
        println!("{text}");
        self.markdown.push_str(text);
        self.markdown.push('\n');
    }

    /// A claim's heading and the settings it was measured with, one per line.
    pub fn section(&mut self, title: &str, settings: &[String]) {
        self.emit(&format!("\n## {title}\n"));
        for line in settings {
            self.emit(&format!("- {line}"));
        }
        self.emit("");
    }

    /// A Markdown table.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let mut text = format!("| {} |\n", header.join(" | "));
        let _ = writeln!(text, "|{}", " --- |".repeat(header.len()));
        for row in rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        self.emit(&text);
    }

    /// A paragraph.
    pub fn note(&mut self, text: &str) {
        self.emit(&format!("{text}\n"));
    }

    /// Draws `charts` side by side into `name` in the output folder, and says so.
    pub fn charts(&mut self, name: &str, charts: &[LineChart]) -> striate::Result<()> {
        let path = self.out.join(name);
        save_row(&path, charts)?;
        self.note(&format!("Curves: `{}`.", path.display()));
        Ok(())
    }

    /// Writes everything printed into `results.md` in the output folder; returns its path.
    pub fn finish(self, preamble: &str) -> striate::Result<PathBuf> {
        let path = self.out.join("results.md");
        std::fs::write(&path, format!("{preamble}\n{}", self.markdown)).map_err(|e| {
            striate::Error::Io {
                path: path.clone(),
                source: e,
            }
        })?;
        Ok(path)
    }
}
