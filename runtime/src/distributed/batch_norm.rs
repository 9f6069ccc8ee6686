//! Batch norm's statistics over every rank's batch ([`super::Distributed::sync_batch_norm`]).
//!
//! The generated passes call the batch-norm kernels with one layer's slices and nothing more,
//! so the trainer sets the synchronisation around its forward and backward passes
//! ([`within`]) and the kernels read it from a thread-local ([`gather`]), as they read the
//! shard of a pass split over threads.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::{Comm, Op};

/// The buffers of batch norm's exchange between the ranks, sized once.
#[derive(Debug)]
pub(crate) struct Sync {
    comm: Rc<Comm>,
    timeout: Duration,
    send: RefCell<Vec<f64>>,
    recv: RefCell<Vec<f64>>,
    /// Exchanges done, for messages.
    rounds: Cell<u64>,
}

impl Sync {
    /// Room for exchanges of up to `width` values per rank.
    pub(crate) fn new(comm: Rc<Comm>, timeout: Duration, width: usize) -> Sync {
        let ranks = comm.size;
        Sync {
            comm,
            timeout,
            send: RefCell::new(vec![0.0; width]),
            recv: RefCell::new(vec![0.0; width * ranks]),
            rounds: Cell::new(0),
        }
    }
}

thread_local! {
    /// The synchronisation of the pass running on this thread, set by [`within`].
    static CURRENT: Cell<Option<*const Sync>> = const { Cell::new(None) };
}

/// Runs `f` (a forward or backward pass) with the batch-norm kernels on this thread
/// exchanging their statistics through `sync`, if any.
pub(crate) fn within<R>(sync: Option<&Sync>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<*const Sync>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let _restore = Restore(CURRENT.replace(sync.map(|s| s as *const Sync)));
    f()
}

/// Whether the kernels on this thread exchange statistics across ranks.
pub(crate) fn active() -> bool {
    CURRENT.get().is_some()
}

/// Exchanges `width` values per rank: `fill` writes this rank's, `read` gets every rank's,
/// rank after rank. Returns false (calling neither) outside [`within`], and when the exchange
/// fails (the failure is reported on standard error, and the trainer returns it after the
/// pass): the kernel then uses its own batch's values.
pub(crate) fn gather(
    width: usize,
    fill: impl FnOnce(&mut [f64]),
    read: impl FnOnce(&[f64]),
) -> bool {
    let Some(sync) = CURRENT.get() else {
        return false;
    };
    // Safety: `CURRENT` holds this pointer only while `within`, which borrows the `Sync`,
    // runs on this thread (its guard resets it, also when unwinding), and the kernel calling
    // this runs inside that call.
    let sync = unsafe { &*sync };
    if sync.comm.failed() {
        return false;
    }
    let mut send = sync.send.borrow_mut();
    let mut recv = sync.recv.borrow_mut();
    assert!(
        width <= send.len(),
        "batch norm exchange: {width} values, room for {}",
        send.len()
    );
    fill(&mut send[..width]);
    let ranks = sync.comm.size;
    let round = sync.rounds.get();
    sync.rounds.set(round + 1);
    let what = Op::BatchNorm { round };
    match sync.comm.all_gather_f64(
        &send[..width],
        &mut recv[..width * ranks],
        sync.timeout,
        what,
    ) {
        Ok(()) => {
            read(&recv[..width * ranks]);
            true
        }
        Err(_) => false,
    }
}
