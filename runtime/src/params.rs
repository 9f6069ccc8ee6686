//! Named, flat storage for parameters, buffers and their gradients.

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

use crate::tables::ParamInfo;
use crate::{Error, Result};

/// A flat `f32` buffer with a table of named tensors in it.
///
/// All parameters of a network sit in one contiguous buffer, so an optimizer updates them in one
/// pass, and gradients use a second store with the same table, hence the same names.
///
/// ```
/// use striate::{Init, ParamInfo, ParamStore};
/// static TABLE: [ParamInfo; 2] = [
///     ParamInfo { name: "fc.weight", shape: &[2, 3], offset: 0, len: 6, init: Init::Zeros },
///     ParamInfo { name: "fc.bias", shape: &[2], offset: 6, len: 2, init: Init::Zeros },
/// ];
/// let mut store = ParamStore::zeros(&TABLE);
/// store.get_mut("fc.bias").unwrap().fill(0.5);
/// assert_eq!(store.get("fc.bias").unwrap().sum(), 1.0);
/// assert_eq!(store.get("fc.weight").unwrap().shape(), &[2, 3]);
/// assert!(store.get("fc.gamma").is_none());
/// ```
#[derive(Debug)]
pub struct ParamStore {
    table: &'static [ParamInfo],
    data: Vec<f32>,
    /// Which store this is and how often its values were handed out mutably.
    stamp: Stamp,
}

/// A store's identity and the count of its mutable borrows: a tape records its network's
/// parameter stamp, so that `backward` can refuse a tape recorded with other values (another
/// network of the same type, or before an update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    store: u64,
    version: u64,
}

impl Stamp {
    /// Whether both stamps are of one store (whatever its mutations).
    pub(crate) fn same_store(self, other: Stamp) -> bool {
        self.store == other.store
    }

    fn fresh() -> Stamp {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Stamp {
            store: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            version: 0,
        }
    }
}

/// A copy is another store: a tape of the original is not one of the copy.
impl Clone for ParamStore {
    fn clone(&self) -> Self {
        ParamStore {
            table: self.table,
            data: self.data.clone(),
            stamp: Stamp::fresh(),
        }
    }
}

/// Equal when the tables and the values are.
impl PartialEq for ParamStore {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table && self.data == other.data
    }
}

impl ParamStore {
    /// A store for `table` with every value zero.
    ///
    /// # Panics
    /// When [`ParamStore::try_zeros`] fails: the values take more than
    /// [`Limits::max_alloc_bytes`](crate::Limits) or the system refuses the memory.
    pub fn zeros(table: &'static [ParamInfo]) -> Self {
        Self::try_zeros(table).unwrap_or_else(|e| panic!("ParamStore::zeros: {e}"))
    }

    /// A store for `table` with every value zero, or an error instead of an abort when the
    /// memory cannot be had.
    ///
    /// # Errors
    /// [`Error::Limit`] when the values take more than the
    /// [`Limits::max_alloc_bytes`](crate::Limits) in force; [`Error::Allocation`] when the
    /// system refuses the memory.
    pub fn try_zeros(table: &'static [ParamInfo]) -> Result<Self> {
        let len = table.last().map_or(0, |p| p.offset + p.len);
        let what = || {
            let first = table.first().map_or("", |p| p.name);
            format!("a store of {len} values ({first}, ...)")
        };
        crate::Limits::global().check_alloc::<f32>(what, len)?;
        Ok(ParamStore {
            table,
            data: crate::limits::try_filled(len, 0.0, what)?,
            stamp: Stamp::fresh(),
        })
    }

    /// The table of names, shapes and offsets.
    pub fn table(&self) -> &'static [ParamInfo] {
        self.table
    }

    /// Every value, in table order.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Every value, mutably, in table order.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.touch();
        &mut self.data
    }

    /// The store's identity and mutation count (see [`Stamp`]).
    pub(crate) fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// Counts a mutable borrow of the values.
    fn touch(&mut self) {
        self.stamp.version = self.stamp.version.wrapping_add(1);
    }

    /// Total number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Sets every value to zero (for gradients, before the next backward pass).
    pub fn zero(&mut self) {
        self.touch();
        crate::ops::parallel::chunks_mut(&mut self.data, |_, part| part.fill(0.0));
    }

    /// The entry called `name`.
    pub fn info(&self, name: &str) -> Option<&'static ParamInfo> {
        self.table.iter().find(|p| p.name == name)
    }

    /// The tensor called `name`, in its PyTorch shape.
    pub fn get(&self, name: &str) -> Option<ArrayViewD<'_, f32>> {
        let p = self.info(name)?;
        Some(self.view(p))
    }

    /// The tensor called `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<ArrayViewMutD<'_, f32>> {
        let p = self.info(name)?;
        self.touch();
        let slice = &mut self.data[p.offset..p.offset + p.len];
        Some(ArrayViewMutD::from_shape(IxDyn(p.shape), slice).expect("table shape matches length"))
    }

    /// Copies `values` into the tensor called `name`.
    ///
    /// # Errors
    /// [`Error::UnknownParameter`] for a name not in the table, [`Error::Shape`] when `values`
    /// does not have the tensor's shape.
    pub fn set(&mut self, name: &str, values: ndarray::ArrayViewD<'_, f32>) -> Result<()> {
        let known = self.known_names();
        let mut dst = self.get_mut(name).ok_or(Error::UnknownParameter {
            name: name.to_string(),
            known,
        })?;
        if dst.shape() != values.shape() {
            return Err(Error::shape(name, dst.shape(), values.shape()));
        }
        dst.assign(&values);
        Ok(())
    }

    /// Every tensor with its entry, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static ParamInfo, ArrayViewD<'_, f32>)> {
        self.table.iter().map(move |p| (p, self.view(p)))
    }

    /// Every tensor mutably, with its entry, in table order.
    pub fn iter_mut(
        &mut self,
    ) -> impl Iterator<Item = (&'static ParamInfo, ArrayViewMutD<'_, f32>)> {
        self.touch();
        let mut rest: &mut [f32] = &mut self.data;
        let mut consumed = 0;
        self.table.iter().map(move |p| {
            let skip = p.offset - consumed;
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
            let (mine, tail) = tail.split_at_mut(p.len);
            rest = tail;
            consumed = p.offset + p.len;
            let view = ArrayViewMutD::from_shape(IxDyn(p.shape), mine)
                .expect("table shape matches length");
            (p, view)
        })
    }

    /// The names in the table, comma-separated (for error messages).
    pub fn known_names(&self) -> String {
        let names: Vec<&str> = self.table.iter().map(|p| p.name).collect();
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    }

    fn view(&self, p: &ParamInfo) -> ArrayViewD<'_, f32> {
        ArrayViewD::from_shape(IxDyn(p.shape), &self.data[p.offset..p.offset + p.len])
            .expect("table shape matches length")
    }
}
