//! The Keras-style table of a network's layers.

use std::fmt;

use crate::tables::LayerInfo;

/// A network's layers as a table: output shapes, parameters, receptive fields, multiply-adds,
/// with totals. Made by [`crate::Network::summary`]; print it with `{}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    name: &'static str,
    input: &'static [usize],
    layers: &'static [LayerInfo],
}

impl Summary {
    /// The summary of a network called `name` with `input` shape and `layers`.
    pub fn new(name: &'static str, input: &'static [usize], layers: &'static [LayerInfo]) -> Self {
        Summary {
            name,
            input,
            layers,
        }
    }

    /// Learnable parameters in all layers.
    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Multiply-adds per sample in all layers.
    pub fn total_macs(&self) -> u64 {
        self.layers.iter().map(|l| l.macs).sum()
    }
}

/// `[6, 28, 28]`.
pub(crate) fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// `61706` -> `61,706`.
pub(crate) fn thousands(v: u64) -> String {
    striate_geometry::Thousands(v).to_string()
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "layer",
            "output shape",
            "params",
            "receptive field",
            "mult-adds",
        ];
        let mut rows: Vec<[String; 5]> = vec![[
            "input".to_string(),
            shape_text(self.input),
            String::new(),
            String::new(),
            String::new(),
        ]];
        for l in self.layers {
            let indent = "  ".repeat(l.depth);
            let label = match (l.name.is_empty(), is_join(l)) {
                (true, false) => format!("{indent}{}", l.declaration),
                (false, false) => format!("{indent}{}: {}", l.name, l.declaration),
                (true, true) => format!("{indent}{}({})", l.kind, l.declaration),
                (false, true) => format!("{indent}{}: {}({})", l.name, l.kind, l.declaration),
            };
            let rf = if l.receptive_field[0] == l.receptive_field[1] {
                l.receptive_field[0].to_string()
            } else {
                format!("{}x{}", l.receptive_field[0], l.receptive_field[1])
            };
            rows.push([
                label,
                shape_text(l.output),
                thousands(l.params as u64),
                rf,
                thousands(l.macs),
            ]);
        }
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        writeln!(f, "{}", self.name)?;
        writeln!(f, "{}", "=".repeat(total_width))?;
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 5]| -> fmt::Result {
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4]
            )
        };
        line(f, header)?;
        writeln!(f, "{}", "-".repeat(total_width))?;
        for r in &rows {
            line(f, [&r[0], &r[1], &r[2], &r[3], &r[4]])?;
        }
        writeln!(f, "{}", "=".repeat(total_width))?;
        let total = self.total_params();
        writeln!(
            f,
            "total params: {} ({:.2} MiB as f32)",
            thousands(total as u64),
            total as f64 * 4.0 / (1024.0 * 1024.0)
        )?;
        write!(f, "mult-adds per sample: {}", thousands(self.total_macs()))?;
        let notes: Vec<&LayerInfo> = self.layers.iter().filter(|l| !l.note.is_empty()).collect();
        if !notes.is_empty() {
            write!(f, "\nnotes:")?;
            for (i, l) in self.layers.iter().enumerate() {
                if !l.note.is_empty() {
                    let who = if l.name.is_empty() {
                        format!("layer {} ({})", i + 1, l.declaration)
                    } else {
                        l.name.to_string()
                    };
                    write!(f, "\n  {who}: {}", l.note)?;
                }
            }
        }
        Ok(())
    }
}

/// A block's join point (`add`, `concat`) rather than a layer.
fn is_join(l: &LayerInfo) -> bool {
    l.inputs.len() > 1 || matches!(l.kind, "add" | "concat")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(61706), "61,706");
        assert_eq!(thousands(62378344), "62,378,344");
    }
}
