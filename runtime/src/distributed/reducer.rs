//! The gradient all-reduce, in buckets started during the backward pass.
//!
//! The parameters are laid out in the order the layers run, and the backward pass visits the
//! layers in the opposite order: after the layer whose parameters start at offset `o`, every
//! gradient from `o` on is final. The generated backward pass says so after each layer
//! ([`crate::Tape::gradients_final`]); a bucket (whole tensors, from the end of the table) is
//! copied out and its all-reduce started as soon as the final part covers it, while the
//! layers below it are still computing. [`Reducer::finish`] starts what is left, waits for
//! everything against the deadline and writes the averages back.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mpi::ffi;

use super::{Comm, Op};
use crate::tables::ParamInfo;
use crate::{Result, Tape};

thread_local! {
    /// The tape whose backward pass is under way on this thread, and its reducer, set by
    /// [`within`].
    static CURRENT: Cell<Option<(*const Tape, *mut Reducer)>> = const { Cell::new(None) };
}

/// Runs `f` (the backward pass on `tape`) with `reducer` told about the final gradients of
/// that tape's generated pass (not those of the shard tapes of a pass split over threads, nor
/// of nested networks' tapes, which see their own parts of the gradients).
pub(crate) fn within<R>(tape: *const Tape, reducer: &mut Reducer, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(*const Tape, *mut Reducer)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let _restore = Restore(CURRENT.replace(Some((tape, reducer as *mut Reducer))));
    f()
}

/// [`Tape::gradients_final`]: tells the reducer of [`within`], if `tape` is its tape.
pub(crate) fn gradients_final(tape: &Tape, from: usize, grads: &[f32]) {
    if let Some((t, reducer)) = CURRENT.get() {
        if std::ptr::eq(t, tape) {
            // Safety: `CURRENT` holds the pointer only while `within`, which borrows the
            // reducer mutably, runs on this thread (its guard resets it, also when
            // unwinding), and nothing else reaches the reducer during that call: the
            // generated pass calling this runs inside it.
            unsafe { (*reducer).gradients_final(from, grads) };
        }
    }
}

/// The largest bucket, in values (an MPI count is an `int`).
const MAX_BUCKET: usize = 1 << 30;

/// One bucket: a range of the gradients, its copy sent, the sum received, its request.
struct Bucket {
    start: usize,
    end: usize,
    send: Vec<f32>,
    recv: Vec<f32>,
    request: ffi::MPI_Request,
}

/// A training step's gradient all-reduce: preallocated buckets and the step's statistics.
pub(crate) struct Reducer {
    comm: Rc<Comm>,
    /// From the highest offsets (the first final) to the lowest.
    buckets: Vec<Bucket>,
    /// The next bucket to start.
    next: usize,
    /// The number of gradients (the network's parameter count).
    len: usize,
    timeout: Duration,
    /// Loss sum, correct count and samples of this rank's batch, then summed over the ranks.
    stats_send: [f64; 3],
    stats_recv: [f64; 3],
    stats_request: ffi::MPI_Request,
    /// The first error of a collective started during the backward pass.
    error: Option<crate::Error>,
    /// Buckets started during the last backward pass, before [`Reducer::finish`].
    overlapped: usize,
    /// Steps reduced so far (for messages).
    step: u64,
}

impl std::fmt::Debug for Reducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reducer")
            .field("buckets", &self.buckets.len())
            .field("len", &self.len)
            .field("overlapped", &self.overlapped)
            .finish_non_exhaustive()
    }
}

/// The buckets' ranges over `params`: whole tensors from the end, each bucket closed once it
/// holds at least `bucket_len` values (a larger tensor is one bucket, split at `MAX_BUCKET`).
pub(crate) fn bucket_ranges(params: &[ParamInfo], bucket_len: usize) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut tensors: Vec<(usize, usize)> = params
        .iter()
        .map(|p| (p.offset, p.offset + p.len))
        .filter(|(a, b)| b > a)
        .collect();
    tensors.sort_unstable();
    let mut open: Option<(usize, usize)> = None;
    for &(start, end) in tensors.iter().rev() {
        let (_, bucket_end) = *open.get_or_insert((start, end));
        open = Some((start, bucket_end));
        if bucket_end - start >= bucket_len {
            let mut b = bucket_end;
            while b > start {
                let a = b.saturating_sub(MAX_BUCKET).max(start);
                ranges.push((a, b));
                b = a;
            }
            open = None;
        }
    }
    if let Some((start, end)) = open {
        ranges.push((start, end));
    }
    ranges
}

impl Reducer {
    pub(crate) fn new(
        comm: Rc<Comm>,
        params: &[ParamInfo],
        bucket_bytes: usize,
        timeout: Duration,
    ) -> Reducer {
        let bucket_len = (bucket_bytes / std::mem::size_of::<f32>()).max(1);
        let buckets = bucket_ranges(params, bucket_len)
            .into_iter()
            .map(|(start, end)| Bucket {
                start,
                end,
                send: vec![0.0; end - start],
                recv: vec![0.0; end - start],
                request: Comm::null_request(),
            })
            .collect();
        Reducer {
            comm,
            buckets,
            next: 0,
            len: crate::compose::table_len(params),
            timeout,
            stats_send: [0.0; 3],
            stats_recv: [0.0; 3],
            stats_request: Comm::null_request(),
            error: None,
            overlapped: 0,
            step: 0,
        }
    }

    /// The buckets' ranges, from the first started to the last.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.buckets.iter().map(|b| (b.start, b.end))
    }

    /// The buckets the last step started during its backward pass.
    pub(crate) fn overlapped(&self) -> usize {
        self.overlapped
    }

    fn what(&self) -> Op {
        Op::Gradients { step: self.step }
    }

    /// Starts bucket `self.next`.
    fn start_next(&mut self, grads: &[f32]) -> Result<()> {
        let what = self.what();
        let b = &mut self.buckets[self.next];
        b.send.copy_from_slice(&grads[b.start..b.end]);
        // Safety: the bucket's buffers belong to the reducer, which is only dropped with the
        // communicator's last holder after this request completes in `finish` (or the job is
        // aborted), and are not touched again until then.
        unsafe {
            self.comm
                .start_sum_of(&b.send, &mut b.recv, &mut b.request, what)?
        };
        self.next += 1;
        Ok(())
    }

    /// The backward pass has finished every gradient from `from` on: starts the buckets
    /// that covers, and drives the ones already started. `grads` is the whole gradient of
    /// the network (a nested network's part is ignored).
    pub(crate) fn gradients_final(&mut self, from: usize, grads: &[f32]) {
        if grads.len() != self.len || self.error.is_some() {
            return;
        }
        let mut started = false;
        while self.next < self.buckets.len() && self.buckets[self.next].start >= from {
            if let Err(e) = self.start_next(grads) {
                self.error = Some(e);
                return;
            }
            self.overlapped += 1;
            started = true;
        }
        if !started && self.next > 0 {
            // Drives MPI's progress on the last bucket started while the pass goes on.
            let what = self.what();
            let last = &mut self.buckets[self.next - 1].request;
            if let Err(e) = self.comm.test(std::slice::from_mut(last), what) {
                self.error = Some(e);
            }
        }
    }

    /// Starts the step: no bucket sent yet, and this rank's statistics to sum.
    pub(crate) fn begin(&mut self, loss_sum: f64, correct: f64, samples: f64) {
        self.next = 0;
        self.overlapped = 0;
        self.error = None;
        self.stats_send = [loss_sum, correct, samples];
    }

    /// Starts the buckets the backward pass did not, waits for all of them (at most the
    /// timeout), and writes each gradient's mean over the ranks into `grads`. Returns the
    /// step's loss sum, correct count and samples over every rank.
    ///
    /// # Errors
    /// [`crate::Error::Distributed`] when a collective fails or times out; the job then ends
    /// when the last [`super::Distributed`] is dropped.
    pub(crate) fn finish(&mut self, grads: &mut [f32]) -> Result<[f64; 3]> {
        let result = self.finish_inner(grads);
        self.step += 1;
        result
    }

    fn finish_inner(&mut self, grads: &mut [f32]) -> Result<[f64; 3]> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        assert_eq!(grads.len(), self.len, "the reducer's network");
        while self.next < self.buckets.len() {
            self.start_next(grads)?;
        }
        let what = self.what();
        // Safety: the statistics' buffers belong to the reducer and are waited for below.
        unsafe {
            self.comm.start_sum_of(
                &self.stats_send,
                &mut self.stats_recv,
                &mut self.stats_request,
                what,
            )?
        };
        let deadline = Instant::now() + self.timeout;
        self.comm.wait(
            std::slice::from_mut(&mut self.stats_request),
            deadline,
            self.timeout,
            what,
        )?;
        let scale = 1.0 / self.comm.size as f32;
        for b in &mut self.buckets {
            self.comm.wait(
                std::slice::from_mut(&mut b.request),
                deadline,
                self.timeout,
                what,
            )?;
            for (g, s) in grads[b.start..b.end].iter_mut().zip(&b.recv) {
                *g = s * scale;
            }
        }
        Ok(self.stats_recv)
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_ranges;
    use crate::tables::{Init, ParamInfo};

    fn tensor(offset: usize, len: usize) -> ParamInfo {
        ParamInfo {
            name: "t",
            shape: &[],
            offset,
            len,
            init: Init::Zeros,
        }
    }

    /// Whole tensors from the end, a bucket closed once it holds the bucket size; together
    /// they cover everything once.
    #[test]
    fn buckets_take_whole_tensors_from_the_end() {
        let params = [tensor(0, 10), tensor(10, 2), tensor(12, 30), tensor(42, 3)];
        // 3 values are too few for 4: the next tensor joins them.
        assert_eq!(bucket_ranges(&params, 4), [(12, 45), (0, 12)]);
        assert_eq!(bucket_ranges(&params, 100), [(0, 45)]);
        assert_eq!(
            bucket_ranges(&params, 1),
            [(42, 45), (12, 42), (10, 12), (0, 10)]
        );
        assert!(bucket_ranges(&[], 4).is_empty());
    }
}
