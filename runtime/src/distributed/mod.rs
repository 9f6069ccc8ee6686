//! Data-parallel training over MPI (feature `mpi`): one process per rank, each training the
//! same network on its own shard of every epoch, with the gradients averaged by all-reduce.
//!
//! ```no_run
//! use striate::runtime::distributed::Distributed; // striate::distributed with feature `mpi`
//! use striate::prelude::*;
//!
//! network! {
//!     struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
//! }
//!
//! // Run as `mpirun -np 4 ./digits`: every rank runs this program.
//! let dist = Distributed::init()?;
//! let train = Mnist::builtin().train.take(4_096);
//! let mut net = Digits::init(0);
//! // Rank 0's weights go to every rank; each rank then reads a quarter of every epoch.
//! let mut trainer = Trainer::new(&mut net, Sgd::new(0.1)).distributed(&dist)?;
//! trainer.fit(&train, Fit::epochs(3).batch(16))?;
//! if dist.is_root() {
//!     trainer.net().save("digits.safetensors")?;
//! }
//! # Ok::<(), striate::Error>(())
//! ```
//!
//! - **Weights**: [`Trainer::distributed`](crate::train::Trainer::distributed) broadcasts rank
//!   0's parameters and buffers to every rank, so all ranks start alike.
//! - **Data**: each epoch's shuffled order is the same on every rank (it comes from the shared
//!   seed); it is padded by repeating its start to a multiple of the world size, and rank `r`
//!   takes positions `r, r + N, r + 2N, ...`, as PyTorch's `DistributedSampler` does
//!   ([`shard`]). With batch `B` per rank, a step sees `N·B` samples in all.
//! - **Gradients**: each rank's gradients are averaged over the ranks by all-reduce, in
//!   buckets of about [`Distributed::bucket_bytes`] started during the backward pass as soon
//!   as the layers they cover have their final gradients (the generated backward pass reports
//!   each layer). The loss, the correct count and the sample count are summed with them, so
//!   every rank reports the whole step's. The optimizer then takes the same step on every
//!   rank, and the weights stay the same everywhere.
//! - **Batch norm**: by default each rank normalises with its own batch's statistics, as
//!   PyTorch's `DistributedDataParallel` does; [`Distributed::sync_batch_norm`] makes them the
//!   statistics of all ranks' batches together (PyTorch's `SyncBatchNorm`).
//! - **Output**: only rank 0 shows progress, writes metrics logs and checkpoints. Validation
//!   sets are evaluated whole on every rank, and callbacks run on every rank with the same
//!   records, so that they decide alike (early stopping, a plateau); a callback that writes
//!   files, such as [`SaveBest`](crate::train::SaveBest), belongs on rank 0's `Fit` only.
//! - **Failures**: every collective is non-blocking and polled against a deadline,
//!   [`Distributed::timeout`]. A rank whose collective fails or times out (a peer died or
//!   stalled) prints a message naming itself and the operation, returns
//!   [`Error::Distributed`], and ends the whole job (`MPI_Abort`) when its [`Distributed`] is
//!   dropped; a rank that finished cleanly waits at most the timeout for the others, then
//!   ends the job too. No rank hangs.

pub(crate) mod batch_norm;
mod comm;
pub(crate) mod reducer;

use std::rc::Rc;
use std::time::Duration;

pub(crate) use comm::{Comm, Op};
pub(crate) use reducer::Reducer;

use crate::{Error, Network, Result};

/// Default deadline of one collective operation.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default size of a gradient bucket: 1 MiB (262,144 gradients).
const DEFAULT_BUCKET_BYTES: usize = 1 << 20;

/// This process's place in an MPI job, and the settings of data-parallel training.
///
/// Made once per process by [`Distributed::init`]; MPI is finalised when the last copy (the
/// trainers hold one) is dropped. It stays on the thread that made it (MPI is called from that
/// thread only). See the [module's documentation](self).
#[derive(Clone, Debug)]
pub struct Distributed {
    comm: Rc<Comm>,
    timeout: Duration,
    bucket_bytes: usize,
    sync_batch_norm: bool,
}

impl Distributed {
    /// Initialises MPI and joins the job `mpirun` started (a process started without
    /// `mpirun` is a job of one rank).
    ///
    /// # Errors
    /// [`Error::Distributed`] when MPI was already initialised in this process, or its
    /// communicators cannot be set up.
    pub fn init() -> Result<Distributed> {
        Ok(Distributed {
            comm: Rc::new(Comm::init()?),
            timeout: DEFAULT_TIMEOUT,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            sync_batch_norm: false,
        })
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        self.comm.rank
    }

    /// The number of ranks (processes) in the job: the world size.
    pub fn size(&self) -> usize {
        self.comm.size
    }

    /// Whether this is rank 0, the one that logs and writes checkpoints.
    pub fn is_root(&self) -> bool {
        self.comm.rank == 0
    }

    /// Sets the deadline of every collective operation (default 60 s): a rank whose
    /// all-reduce has not completed by then takes a peer for dead and ends the job. Set it
    /// above the longest step of the slowest rank.
    pub fn timeout(mut self, timeout: Duration) -> Distributed {
        self.timeout = timeout;
        self.comm.set_timeout(timeout);
        self
    }

    /// The deadline of every collective operation.
    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// Sets the size of a gradient bucket in bytes (default 1 MiB): the all-reduce of a
    /// bucket starts as soon as the backward pass has finished the layers it covers. Smaller
    /// buckets start earlier, larger ones cost fewer messages. A bucket holds whole parameter
    /// tensors, taken from the last layer's down, and is closed once it holds at least this
    /// many bytes (so a large tensor makes a bucket larger than the size).
    pub fn bucket_bytes(mut self, bytes: usize) -> Distributed {
        self.bucket_bytes = bytes.max(4);
        self
    }

    /// The bucket size in bytes.
    pub fn bucket_bytes_value(&self) -> usize {
        self.bucket_bytes
    }

    /// Makes batch norm's training statistics (and the sums its backward pass needs) those of
    /// every rank's batch together, exchanged by all-gather in every batch-norm layer
    /// (PyTorch's `SyncBatchNorm`). Off by default. Needs one thread per process
    /// ([`crate::ops::parallel::set_threads`]`(1)`): a step with more is refused.
    pub fn sync_batch_norm(mut self, on: bool) -> Distributed {
        self.sync_batch_norm = on;
        self
    }

    /// Whether batch norm's statistics are synchronised across ranks.
    pub fn sync_batch_norm_value(&self) -> bool {
        self.sync_batch_norm
    }

    /// Copies rank 0's parameters and buffers (and its count of training batches) into
    /// `net` on every rank.
    ///
    /// # Errors
    /// [`Error::Distributed`] when the broadcast fails or times out (the job then ends when
    /// this value is dropped).
    pub fn broadcast_network<N: Network>(&self, net: &mut N) -> Result<()> {
        let state = net.state_mut();
        let what = Op::Broadcast { network: N::NAME };
        self.comm
            .broadcast_of(state.params.as_mut_slice(), self.timeout, what)?;
        self.comm
            .broadcast_of(state.buffers.as_mut_slice(), self.timeout, what)?;
        let mut count = [state.num_batches_tracked as f64];
        self.comm.broadcast_of(&mut count, self.timeout, what)?;
        state.num_batches_tracked = count[0] as u64;
        Ok(())
    }

    /// Sums `values` over every rank, in place, on every rank (a blocking call, polled
    /// against the timeout): for metrics of one's own.
    ///
    /// # Errors
    /// [`Error::Distributed`] when the all-reduce fails or times out.
    pub fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        self.comm.all_reduce_f64(values, self.timeout, Op::Caller)
    }

    /// Rank `self.rank()`'s part of `order`, in the way of [`shard`].
    pub fn shard(&self, order: &[usize], out: &mut Vec<usize>) {
        shard(order, self.rank(), self.size(), out);
    }

    /// A reducer for `N`'s gradients, with buckets of whole tensors.
    pub(crate) fn reducer<N: Network>(&self) -> Reducer {
        Reducer::new(
            self.comm.clone(),
            N::PARAMS,
            self.bucket_bytes,
            self.timeout,
        )
    }

    /// Whether a collective has failed (the job ends when the last copy is dropped).
    pub(crate) fn failed(&self) -> bool {
        self.comm.failed()
    }

    /// The error of an operation that failed, already reported on standard error.
    pub(crate) fn failure(&self, what: &str) -> Error {
        error(
            &self.comm,
            what,
            "a collective operation failed (see the message above)".to_string(),
        )
    }

    /// The communicator, shared.
    pub(crate) fn comm(&self) -> &Rc<Comm> {
        &self.comm
    }
}

/// Rank `rank`'s share of `order` among `size` ranks, into `out`, with the semantics of
/// PyTorch's `DistributedSampler(shuffle=True, drop_last=False)` given the same permutation:
/// `order` is padded to the next multiple of `size` by repeating it from its start, and rank
/// `rank` takes positions `rank, rank + size, ...`. Every rank gets
/// `ceil(len / size)` indices; `out` is empty for an empty `order` or `size` 0.
///
/// ```
/// let mut out = Vec::new();
/// striate::runtime::distributed::shard(&[4, 0, 3, 1, 2], 1, 2, &mut out);
/// assert_eq!(out, [0, 1, 4]); // positions 1, 3 and 5 (the padding repeats position 0)
/// ```
pub fn shard(order: &[usize], rank: usize, size: usize, out: &mut Vec<usize>) {
    out.clear();
    if order.is_empty() || size == 0 {
        return;
    }
    let total = order.len().div_ceil(size) * size;
    out.extend(
        (rank..total)
            .step_by(size)
            .map(|position| order[position % order.len()]),
    );
}

/// The error of a failed collective: which rank, which operation, why.
pub(crate) fn error(comm: &Comm, what: &str, reason: String) -> Error {
    Error::Distributed {
        rank: comm.rank,
        size: comm.size,
        what: what.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::shard;

    /// `torch.utils.data.DistributedSampler` over 10 samples, 4 replicas, `shuffle=False`
    /// (the permutation is then the identity): `[list(DistributedSampler(range(10),
    /// num_replicas=4, rank=r, shuffle=False)) for r in range(4)]`.
    #[test]
    fn shards_are_pytorch_distributed_samplers() {
        let order: Vec<usize> = (0..10).collect();
        let expected = [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]];
        let mut out = Vec::new();
        for (rank, want) in expected.iter().enumerate() {
            shard(&order, rank, 4, &mut out);
            assert_eq!(&out, want, "rank {rank}");
        }
    }

    /// Padding past the whole order (more ranks than samples) repeats it again.
    #[test]
    fn shards_of_a_short_order_repeat_it() {
        let order = [7, 3];
        let mut all = Vec::new();
        let mut out = Vec::new();
        for rank in 0..5 {
            shard(&order, rank, 5, &mut out);
            assert_eq!(out.len(), 1);
            all.extend_from_slice(&out);
        }
        assert_eq!(all, [7, 3, 7, 3, 7]);
        shard(&[], 0, 3, &mut out);
        assert!(out.is_empty());
    }

    /// Together the shards cover the order, each position once (with the padding at the end).
    #[test]
    fn shards_partition_the_padded_order() {
        let order: Vec<usize> = (0..103).map(|i| (i * 37) % 103).collect();
        for size in 1..=8 {
            let mut seen = vec![0usize; 103];
            let mut out = Vec::new();
            for rank in 0..size {
                shard(&order, rank, size, &mut out);
                assert_eq!(out.len(), 103usize.div_ceil(size));
                for &i in &out {
                    seen[i] += 1;
                }
            }
            let padding = 103usize.div_ceil(size) * size - 103;
            assert_eq!(seen.iter().sum::<usize>(), 103 + padding);
            assert!(seen.iter().all(|&c| c == 1 || c == 2), "size {size}");
            assert_eq!(seen.iter().filter(|&&c| c == 2).count(), padding);
        }
    }
}
