//! What a [`Trainer`](super::Trainer) does differently when it trains data-parallel (feature
//! `mpi`): its epoch order is its rank's shard, its steps average the gradients over the ranks
//! and only rank 0 shows or writes anything. Without the feature, [`Attached`] has no value
//! and every function here is the single-process behaviour.

use crate::{Result, Tape};

/// The distributed side of a trainer.
#[cfg(feature = "mpi")]
pub(super) struct Attached {
    pub(super) dist: crate::distributed::Distributed,
    /// This rank's shard of the epoch's order.
    shard: Vec<usize>,
    /// The gradient all-reduce, told about final gradients during the backward pass.
    reducer: crate::distributed::Reducer,
    /// Batch norm's exchange between the ranks, when synchronised.
    batch_norm: Option<crate::distributed::batch_norm::Sync>,
}

/// The distributed side of a trainer: none without feature `mpi`.
#[cfg(not(feature = "mpi"))]
pub(super) enum Attached {}

#[cfg(feature = "mpi")]
impl Attached {
    /// Attaches `dist`: broadcasts rank 0's network and makes the gradient reducer.
    pub(super) fn new<N: crate::Network>(
        dist: &crate::distributed::Distributed,
        net: &mut N,
    ) -> Result<Attached> {
        dist.broadcast_network(net)?;
        let reducer = dist.reducer::<N>();
        let batch_norm = (dist.sync_batch_norm_value() && !N::BUFFERS.is_empty()).then(|| {
            let width = 1 + 2 * N::BUFFERS.iter().map(|b| b.len).max().unwrap_or(0);
            crate::distributed::batch_norm::Sync::new(
                dist.comm().clone(),
                dist.timeout_value(),
                width,
            )
        });
        Ok(Attached {
            dist: dist.clone(),
            shard: Vec::new(),
            reducer,
            batch_norm,
        })
    }
}

/// Whether this process shows progress and writes logs and checkpoints: rank 0, or a trainer
/// that is not distributed.
pub(super) fn is_root(attached: &Option<Attached>) -> bool {
    match attached {
        None => true,
        #[cfg(feature = "mpi")]
        Some(a) => a.dist.is_root(),
        #[cfg(not(feature = "mpi"))]
        Some(a) => match *a {},
    }
}

/// The epoch's order as this process visits it: its rank's shard, or all of it.
pub(super) fn epoch_order(attached: &mut Option<Attached>, order: Vec<usize>) -> Vec<usize> {
    match attached {
        None => order,
        #[cfg(feature = "mpi")]
        Some(a) => {
            let mut shard = std::mem::take(&mut a.shard);
            a.dist.shard(&order, &mut shard);
            a.shard = order;
            shard
        }
        #[cfg(not(feature = "mpi"))]
        Some(a) => match *a {},
    }
}

/// Refuses a step that the settings cannot run: synchronised batch norm with more than one
/// thread (the kernels of a pass split over threads would not reach the other ranks).
pub(super) fn check(attached: &Option<Attached>) -> Result<()> {
    match attached {
        None => Ok(()),
        #[cfg(feature = "mpi")]
        Some(a) => {
            let threads = crate::ops::parallel::threads();
            if a.batch_norm.is_some() && threads > 1 {
                return Err(crate::Error::Config {
                    name: "sync_batch_norm",
                    reason: format!(
                        "batch norm synchronised across ranks needs one thread per process, \
                         found {threads}: call striate::ops::parallel::set_threads(1)"
                    ),
                });
            }
            Ok(())
        }
        #[cfg(not(feature = "mpi"))]
        Some(a) => match *a {},
    }
}

/// Runs `f` (the forward pass) with batch norm exchanging statistics across the ranks, when
/// it is synchronised; then fails if an exchange did.
pub(super) fn forward<R>(attached: &Option<Attached>, f: impl FnOnce() -> Result<R>) -> Result<R> {
    match attached {
        #[cfg(feature = "mpi")]
        Some(Attached {
            batch_norm: Some(sync),
            dist,
            ..
        }) => {
            let result = crate::distributed::batch_norm::within(Some(sync), f);
            if dist.failed() {
                return Err(dist.failure("a batch-norm exchange between the ranks failed"));
            }
            result
        }
        _ => f(),
    }
}

/// Runs `f` (the backward pass on `tape`) as [`forward`] does, with the gradient buckets'
/// all-reduce started as the pass finishes them; `loss`, `correct` and `n` are this rank's
/// batch's, summed with the gradients.
pub(super) fn backward<R>(
    attached: &mut Option<Attached>,
    tape: *const Tape,
    (loss, correct, n): (f32, usize, usize),
    f: impl FnOnce() -> Result<R>,
) -> Result<R> {
    match attached {
        None => f(),
        #[cfg(feature = "mpi")]
        Some(a) => {
            a.reducer
                .begin(f64::from(loss) * n as f64, correct as f64, n as f64);
            let reducer = &mut a.reducer;
            let sync = a.batch_norm.as_ref();
            let result = crate::distributed::reducer::within(tape, reducer, || {
                crate::distributed::batch_norm::within(sync, f)
            });
            if a.dist.failed() {
                return Err(a.dist.failure("a collective between the ranks failed"));
            }
            result
        }
        #[cfg(not(feature = "mpi"))]
        Some(a) => {
            let _ = (tape, loss, correct, n);
            match *a {}
        }
    }
}

/// After the backward pass: the gradients averaged over the ranks (the frozen ranges zeroed
/// again), and the whole step's loss, correct count and samples; `None` when not distributed.
pub(super) fn finish(
    attached: &mut Option<Attached>,
    grads: &mut [f32],
    frozen: &[(usize, usize)],
) -> Result<Option<(f32, usize, usize)>> {
    match attached {
        None => Ok(None),
        #[cfg(feature = "mpi")]
        Some(a) => {
            let [loss_sum, correct, samples] = a.reducer.finish(grads)?;
            for &(a, b) in frozen {
                grads[a..b].fill(0.0);
            }
            let mean = if samples > 0.0 {
                loss_sum / samples
            } else {
                0.0
            };
            Ok(Some((mean as f32, correct as usize, samples as usize)))
        }
        #[cfg(not(feature = "mpi"))]
        Some(a) => {
            let _ = (grads, frozen);
            match *a {}
        }
    }
}

/// The gradient reducer of a distributed trainer.
#[cfg(feature = "mpi")]
pub(super) fn reducer(attached: &Option<Attached>) -> Option<&crate::distributed::Reducer> {
    attached.as_ref().map(|a| &a.reducer)
}
