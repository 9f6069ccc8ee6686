//! The bookkeeping every optimizer shares: the parameter count that the first step fixes, the
//! step count, and the translation between flat buffers and entries named by parameter.

use crate::{Error, ParamInfo, Result};

/// Steps taken, and the parameter count that the first step fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Progress {
    len: Option<usize>,
    steps: u64,
}

impl Progress {
    /// Checks that a step on `params` values with `grads` may run: as many gradients as
    /// parameters, as many parameters as at the first step, and every gradient finite (a NaN
    /// or infinite gradient would make every weight it reaches NaN). `what` names the
    /// optimizer.
    pub(crate) fn check(&self, what: &str, params: usize, grads: &[f32]) -> Result<()> {
        self.check_len(what, params, grads.len())?;
        Error::check_finite(
            grads,
            || format!("{what} gradients"),
            "; the step was not taken, and nothing changed",
        )
    }

    /// The length checks of [`Progress::check`].
    fn check_len(&self, what: &str, params: usize, grads: usize) -> Result<()> {
        if grads != params {
            return Err(Error::shape(
                format!("{what} gradients (one per parameter)"),
                &[params],
                &[grads],
            ));
        }
        match self.len {
            Some(len) if len != params => Err(Error::shape(
                format!("{what} parameters (as many as at the first step)"),
                &[len],
                &[params],
            )),
            _ => Ok(()),
        }
    }

    /// Counts a step on `len` parameters; true if it is the first (buffers start now).
    pub(crate) fn advance(&mut self, len: usize) -> bool {
        self.len = Some(len);
        self.steps += 1;
        self.steps == 1
    }

    /// The steps taken.
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// True once a step was taken (or a state with steps loaded): the buffers hold one value
    /// per parameter.
    pub(crate) fn started(&self) -> bool {
        self.steps > 0
    }

    /// Checks `buffers` for [`Optimizer::load_buffers`](super::Optimizer::load_buffers): as
    /// many as `names` (none for 0 steps), all of one length. Returns the progress to adopt.
    pub(crate) fn loaded(
        what: &str,
        names: &[&str],
        steps: u64,
        buffers: &[&[f32]],
    ) -> Result<Progress> {
        let expected = if steps == 0 { 0 } else { names.len() };
        if buffers.len() != expected {
            return Err(Error::shape(
                format!("{what} state buffers ({})", names.join(", ")),
                &[expected],
                &[buffers.len()],
            ));
        }
        let len = buffers.first().map(|b| b.len());
        if let Some(bad) = buffers.iter().find(|b| Some(b.len()) != len) {
            return Err(Error::shape(
                format!("{what} state buffers (all of one length)"),
                &[len.unwrap_or(0)],
                &[bad.len()],
            ));
        }
        Ok(Progress { len, steps })
    }
}

/// Copies `from` into `to`, reusing `to`'s allocation.
pub(crate) fn copy_into(to: &mut Vec<f32>, from: &[f32]) {
    to.clear();
    to.extend_from_slice(from);
}

/// `buffers` cut along `table`: `("<parameter>.<buffer>", slice)`, buffer by buffer.
pub(crate) fn named<'a>(
    buffers: Vec<(&'static str, &'a [f32])>,
    table: &[ParamInfo],
) -> Result<Vec<(String, &'a [f32])>> {
    let total = table_len(table);
    let mut out = Vec::with_capacity(buffers.len() * table.len());
    for (buffer, values) in buffers {
        if values.len() != total {
            return Err(Error::shape(
                format!("optimizer buffer `{buffer}` (one value per parameter of the table)"),
                &[total],
                &[values.len()],
            ));
        }
        for p in table {
            out.push((
                format!("{}.{buffer}", p.name),
                &values[p.offset..p.offset + p.len],
            ));
        }
    }
    Ok(out)
}

/// The flat buffers that `entries`, named as [`named`] names them, make up: one for each of
/// `names`, as long as `table`'s parameters.
pub(crate) fn unnamed<S: AsRef<str>, V: AsRef<[f32]>>(
    names: &[&str],
    table: &[ParamInfo],
    entries: &[(S, V)],
) -> Result<Vec<Vec<f32>>> {
    let expected: Vec<(usize, &ParamInfo, String)> = names
        .iter()
        .enumerate()
        .flat_map(|(b, buffer)| {
            table
                .iter()
                .map(move |p| (b, p, format!("{}.{buffer}", p.name)))
        })
        .collect();
    let mut flat = vec![vec![0.0; table_len(table)]; names.len()];
    let mut seen = vec![false; expected.len()];
    for (name, values) in entries {
        let (name, values) = (name.as_ref(), values.as_ref());
        let Some(i) = expected.iter().position(|(_, _, e)| e == name) else {
            return Err(Error::UnknownParameter {
                name: name.to_string(),
                known: list(&expected),
            });
        };
        let (b, p, _) = &expected[i];
        if values.len() != p.len {
            return Err(Error::shape(
                format!("optimizer state `{name}`"),
                &[p.len],
                &[values.len()],
            ));
        }
        flat[*b][p.offset..p.offset + p.len].copy_from_slice(values);
        seen[i] = true;
    }
    if let Some(i) = seen.iter().position(|&s| !s) {
        return Err(Error::MissingEntry {
            name: expected[i].2.clone(),
            what: "optimizer state".into(),
            expected: list(&expected),
        });
    }
    Ok(flat)
}

fn table_len(table: &[ParamInfo]) -> usize {
    table.iter().map(|p| p.offset + p.len).max().unwrap_or(0)
}

fn list(expected: &[(usize, &ParamInfo, String)]) -> String {
    if expected.is_empty() {
        "(none)".into()
    } else {
        let names: Vec<&str> = expected.iter().map(|(_, _, e)| e.as_str()).collect();
        names.join(", ")
    }
}
