//! Frozen parameters: which of a network's parameters training leaves as they are.
//!
//! A frozen parameter gets no weight gradient (the generated backward pass skips it, and stops
//! at the lowest layer that still learns), no optimizer update, and no optimizer state. The
//! set is kept by tensor, in the network's [`State`](crate::State), as value ranges of the
//! parameter store, so that a generated pass asks "is this layer frozen" with one binary
//! search and no allocation.

pub use crate::tables::FrozenView;
use crate::tables::ParamInfo;
use crate::{Error, Result};

/// The parameters of a network that training leaves unchanged, by tensor.
///
/// Made and changed through [`Transfer`](crate::Transfer): `net.freeze("features")`,
/// `net.freeze_first(2)`, `net.unfreeze_all()`. Nothing is frozen at first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frozen {
    /// One flag per tensor of the parameter table, in table order (empty: none frozen).
    tensors: Vec<bool>,
    /// The frozen value ranges `(start, end)` of the parameter store, sorted, with adjacent
    /// ranges merged.
    ranges: Vec<(usize, usize)>,
    /// Changes each time the set changes, so that a trainer knows to restart its optimizer.
    generation: u64,
    /// Batch norm whose parameters are frozen normalises with its running statistics, and
    /// leaves them as they are, in training too.
    batch_norm_eval: bool,
}

impl Frozen {
    /// True when no parameter is frozen.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// True when tensor `index` of the parameter table is frozen.
    pub fn is_frozen(&self, index: usize) -> bool {
        self.tensors.get(index).copied().unwrap_or(false)
    }

    /// The number of frozen values (parameters, not tensors).
    pub fn frozen_values(&self) -> usize {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }

    /// A number that changes whenever the set changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The frozen value ranges `(start, end)` of the parameter store, sorted and merged.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }

    /// The generated passes' view of the set.
    #[doc(hidden)]
    pub fn view(&self) -> FrozenView<'_> {
        FrozenView::new(&self.ranges, self.batch_norm_eval)
    }

    /// True when batch norm with frozen parameters keeps its running statistics fixed in
    /// training (false at first).
    pub fn batch_norm_eval(&self) -> bool {
        self.batch_norm_eval
    }

    pub(crate) fn set_batch_norm_eval(&mut self, eval: bool) {
        if self.batch_norm_eval != eval {
            self.batch_norm_eval = eval;
            self.generation += 1;
        }
    }

    /// Sets tensor `index` of `table` frozen or not.
    pub(crate) fn set(&mut self, table: &[ParamInfo], index: usize, frozen: bool) {
        if self.tensors.len() != table.len() {
            self.tensors = vec![false; table.len()];
        }
        if self.tensors[index] == frozen {
            return;
        }
        self.tensors[index] = frozen;
        self.generation += 1;
        let mut ranges: Vec<(usize, usize)> = table
            .iter()
            .zip(&self.tensors)
            .filter(|(info, &f)| f && info.len > 0)
            .map(|(info, _)| (info.offset, info.offset + info.len))
            .collect();
        ranges.sort_unstable();
        self.ranges.clear();
        for (a, b) in ranges {
            match self.ranges.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => self.ranges.push((a, b)),
            }
        }
    }

    /// The values of the parameter store of `len` values that are not frozen, as ranges.
    pub(crate) fn trainable(&self, len: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut at = 0;
        self.ranges
            .iter()
            .copied()
            .chain(std::iter::once((len, len)))
            .filter_map(move |(a, b)| {
                let r = (at, a);
                at = b;
                (r.1 > r.0).then_some(r)
            })
    }
}

/// What a name given to [`Transfer::freeze`](crate::Transfer::freeze) selects among the tensors
/// of `table`: the tensor of that name, or every tensor under it as a layer or prefix
/// (`conv1` and `conv1.` select `conv1.weight` and `conv1.bias`; `features` everything of a
/// nested network). At least one.
///
/// # Errors
/// [`Error::UnknownName`] listing the closest layer and tensor names.
pub(crate) fn select(network: &'static str, table: &[ParamInfo], name: &str) -> Result<Vec<usize>> {
    let prefix = name.trim_end_matches('.');
    let chosen: Vec<usize> = table
        .iter()
        .enumerate()
        .filter(|(_, info)| {
            info.name == prefix
                || (info.name.starts_with(prefix)
                    && info.name.as_bytes().get(prefix.len()) == Some(&b'.'))
        })
        .map(|(i, _)| i)
        .collect();
    if chosen.is_empty() || prefix.is_empty() {
        return Err(unknown(network, table, name));
    }
    Ok(chosen)
}

/// [`Error::UnknownName`] for `name`, with the closest names of `table`'s tensors and of the
/// layers and prefixes above them.
pub(crate) fn unknown(network: &'static str, table: &[ParamInfo], name: &str) -> Error {
    let mut candidates: Vec<&str> = Vec::new();
    for info in table {
        candidates.push(info.name);
        let mut rest = info.name;
        while let Some(dot) = rest.rfind('.') {
            rest = &rest[..dot];
            candidates.push(rest);
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    Error::UnknownName {
        network,
        name: name.to_string(),
        closest: closest(name.trim_end_matches('.'), &candidates, 5),
    }
}

/// Up to `k` of `candidates` nearest to `name` by edit distance, nearest first (ties by name).
pub(crate) fn closest(name: &str, candidates: &[&str], k: usize) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .collect();
    scored.sort_unstable();
    scored
        .into_iter()
        .take(k)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// What a trainer keeps to step only the trainable parameters: the set it last stepped, and
/// the buffer that gathers scattered trainable values.
#[derive(Debug, Default)]
pub(crate) struct FrozenSteps {
    generation: u64,
    scratch: Vec<f32>,
}

impl FrozenSteps {
    /// For a network whose frozen set is at `generation`.
    pub(crate) fn new(generation: u64) -> FrozenSteps {
        FrozenSteps {
            generation,
            scratch: Vec::new(),
        }
    }

    /// The optimizer's state now belongs to the set at `generation` (a checkpoint restored it).
    pub(crate) fn adopt(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// One optimizer update of the parameters that `frozen` leaves trainable. When the set
    /// changed since the last step, the optimizer starts afresh: its state was for other
    /// parameters.
    pub(crate) fn step<O: crate::optim::Optimizer>(
        &mut self,
        opt: &mut O,
        frozen: &Frozen,
        params: &mut [f32],
        grads: &[f32],
    ) -> Result<()> {
        if frozen.generation() != self.generation {
            opt.reset();
            self.generation = frozen.generation();
        }
        step_trainable(opt, frozen, params, grads, &mut self.scratch)
    }
}

/// `table` without its frozen tensors, each moved to where [`step_trainable`] puts it among
/// the trainable values the optimizer sees: the table its state is named by.
pub(crate) fn trainable_table(table: &[ParamInfo], frozen: &Frozen) -> Vec<ParamInfo> {
    let mut kept: Vec<ParamInfo> = table
        .iter()
        .enumerate()
        .filter(|(i, _)| !frozen.is_frozen(*i))
        .map(|(_, p)| *p)
        .collect();
    kept.sort_by_key(|p| p.offset);
    let mut at = 0;
    for p in &mut kept {
        p.offset = at;
        at += p.len;
    }
    kept
}

/// One optimizer update of the parameters that are not frozen: the whole store when none
/// is, the one trainable range when there is one, else the trainable values gathered into
/// `scratch` (kept between steps, so that a warm step allocates nothing) and scattered back.
/// The optimizer sees, and keeps state for, the trainable values only.
pub(crate) fn step_trainable<O: crate::optim::Optimizer>(
    opt: &mut O,
    frozen: &Frozen,
    params: &mut [f32],
    grads: &[f32],
    scratch: &mut Vec<f32>,
) -> Result<()> {
    if frozen.is_empty() {
        return opt.step(params, grads);
    }
    let len = params.len();
    let mut ranges = frozen.trainable(len);
    let first = ranges.next();
    match (first, ranges.next()) {
        (None, _) => Ok(()),
        (Some((a, b)), None) => opt.step(&mut params[a..b], &grads[a..b]),
        _ => {
            let trainable: usize = frozen.trainable(len).map(|(a, b)| b - a).sum();
            crate::limits::reserve_len(scratch, 2 * trainable, || {
                format!("the trainable parameters and gradients ({trainable} values each)")
            })?;
            scratch.clear();
            for (a, b) in frozen.trainable(len) {
                scratch.extend_from_slice(&params[a..b]);
            }
            for (a, b) in frozen.trainable(len) {
                scratch.extend_from_slice(&grads[a..b]);
            }
            let (p, g) = scratch.split_at_mut(trainable);
            opt.step(p, g)?;
            let mut at = 0;
            for (a, b) in frozen.trainable(len) {
                params[a..b].copy_from_slice(&p[at..at + b - a]);
                at += b - a;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Init;

    static TABLE: [ParamInfo; 4] = [
        ParamInfo {
            name: "a.weight",
            shape: &[2],
            offset: 0,
            len: 2,
            init: Init::Zeros,
        },
        ParamInfo {
            name: "a.bias",
            shape: &[1],
            offset: 2,
            len: 1,
            init: Init::Zeros,
        },
        ParamInfo {
            name: "b.c.weight",
            shape: &[3],
            offset: 3,
            len: 3,
            init: Init::Zeros,
        },
        ParamInfo {
            name: "d.weight",
            shape: &[2],
            offset: 6,
            len: 2,
            init: Init::Zeros,
        },
    ];

    #[test]
    fn ranges_merge_and_views_cover() {
        let mut f = Frozen::default();
        f.set(&TABLE, 0, true);
        f.set(&TABLE, 1, true);
        f.set(&TABLE, 3, true);
        assert_eq!(f.ranges(), [(0, 3), (6, 8)]);
        assert_eq!(f.trainable(8).collect::<Vec<_>>(), [(3, 6)]);
        let v = f.view();
        assert!(v.covers(0, 3) && v.covers(6, 8) && v.covers(4, 4));
        assert!(!v.covers(0, 4) && !v.covers(2, 7));
        assert!(v.shifted(6).covers(0, 2) && !v.shifted(5).covers(0, 2));
        f.set(&TABLE, 1, false);
        assert_eq!(f.ranges(), [(0, 2), (6, 8)]);
        assert_eq!(f.trainable(8).collect::<Vec<_>>(), [(2, 6)]);
    }

    #[test]
    fn names_select_layers_prefixes_and_tensors() {
        assert_eq!(select("N", &TABLE, "a").unwrap(), [0, 1]);
        assert_eq!(select("N", &TABLE, "b.").unwrap(), [2]);
        assert_eq!(select("N", &TABLE, "a.bias").unwrap(), [1]);
        // `a.b` is not a prefix of `a.bias` at a dot.
        let err = select("N", &TABLE, "a.b").unwrap_err();
        let Error::UnknownName { closest, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(closest[0], "a");
        assert!(err.to_string().contains("a.b"), "{err}");
    }

    #[test]
    fn gathered_steps_touch_trainable_values_only() {
        let mut f = Frozen::default();
        f.set(&TABLE, 1, true);
        f.set(&TABLE, 3, true);
        let mut params = [1.0f32; 8];
        let grads = [1.0f32; 8];
        let mut sgd = crate::optim::Sgd::new(0.5);
        step_trainable(&mut sgd, &f, &mut params, &grads, &mut Vec::new()).unwrap();
        assert_eq!(params, [0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 1.0, 1.0]);
    }
}
