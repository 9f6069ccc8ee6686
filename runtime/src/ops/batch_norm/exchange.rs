//! Batch norm over a batch split into shards, one per thread (`network::sharding`): each
//! shard's kernel publishes its per-channel partial sums in its own slot, waits for the other
//! shards, then combines every shard's partials in shard order 0..k. All shards so compute the
//! same whole-batch statistics, and the result depends on the thread count only.
//!
//! The generated passes call the kernels with the slices of one layer and nothing more, so the
//! shard a kernel runs in is set around each shard's pass ([`Exchange::in_shard`]) and read by
//! the kernels from a thread-local ([`with_shard`]); outside a shard the kernels see `None` and
//! compute over the batch they are given.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ops::parallel::Barrier;

/// The slots the shards of one split pass exchange partial sums through, and the barrier they
/// wait at. It lives on the tape and is sized once.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    barrier: Barrier,
    shards: usize,
    /// Values per shard per round.
    width: usize,
    /// Two rounds of `shards × width` values (`f64` bit patterns). Round `r` uses half `r % 2`:
    /// a shard can only write a half again two rounds later, after every shard has passed the
    /// barrier of the round in between, which it does after reading this one.
    values: Vec<AtomicU64>,
}

impl Exchange {
    /// Prepares a pass split over `shards`, in which one exchange publishes at most `width`
    /// values per shard. Allocates only when it needs more room than before.
    pub(crate) fn prepare(&mut self, shards: usize, width: usize) {
        let len = 2 * shards * width;
        if self.values.len() < len {
            self.values.resize_with(len, AtomicU64::default);
        }
        self.shards = shards;
        self.width = width;
        self.barrier.reset(shards);
    }

    /// Bytes held.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<AtomicU64>()
    }

    /// Runs `f` (shard `shard`'s pass) with the batch-norm kernels on this thread exchanging
    /// through `self`. Afterwards, also when `f` panics, the barrier is closed, so that a shard
    /// still waiting for this one panics instead of hanging.
    pub(crate) fn in_shard<R>(&self, shard: usize, f: impl FnOnce() -> R) -> R {
        debug_assert!(shard < self.shards);
        let previous = CURRENT.replace(Some(Current {
            exchange: self,
            shard,
            round: 0,
        }));
        let _leave = Leave {
            exchange: self,
            previous,
        };
        f()
    }
}

/// Restores the thread's previous shard, if any, and closes the barrier.
struct Leave<'a> {
    exchange: &'a Exchange,
    previous: Option<Current>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        CURRENT.set(self.previous);
        self.exchange.barrier.close();
    }
}

#[derive(Clone, Copy)]
struct Current {
    exchange: *const Exchange,
    shard: usize,
    /// Exchanges done so far by this shard in this pass.
    round: usize,
}

thread_local! {
    /// The shard whose pass runs on this thread, set by [`Exchange::in_shard`].
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
}

/// Calls `f` with the shard the calling kernel runs in, or `None` outside a split pass.
pub(super) fn with_shard<R>(f: impl for<'a> FnOnce(Option<Shard<'a>>) -> R) -> R {
    match CURRENT.get() {
        None => f(None),
        Some(current) => {
            // Safety: `CURRENT` holds this pointer only while `in_shard`, which borrows the
            // exchange, runs on this thread (its `Leave` resets it, also when unwinding), and
            // the kernel calling this runs inside that call; `Shard<'a>` cannot outlive `f`.
            let exchange = unsafe { &*current.exchange };
            f(Some(Shard {
                exchange,
                index: current.shard,
            }))
        }
    }
}

/// One shard of a split pass, as a kernel sees it.
pub(super) struct Shard<'a> {
    exchange: &'a Exchange,
    index: usize,
}

impl<'a> Shard<'a> {
    /// Starts this shard's next exchange, of `len` values.
    ///
    /// # Panics
    /// When `len` is more than the exchange was prepared for (a panic closes the barrier).
    pub(super) fn round(&self, len: usize) -> Round<'a> {
        let e = self.exchange;
        assert!(
            len <= e.width,
            "batch norm exchange: {len} values per shard, room for {}",
            e.width
        );
        let round = CURRENT.with(|c| {
            let mut current = c.get().expect("a shard runs on this thread");
            current.round += 1;
            c.set(Some(current));
            current.round - 1
        });
        Round {
            exchange: e,
            half: (round % 2) * e.shards * e.width,
            index: self.index,
        }
    }
}

/// One exchange: this shard writes its values, then reads everybody's.
pub(super) struct Round<'a> {
    exchange: &'a Exchange,
    /// Offset of this round's half of the values.
    half: usize,
    index: usize,
}

impl<'a> Round<'a> {
    /// Sets this shard's value `i`.
    pub(super) fn publish(&self, i: usize, v: f64) {
        let e = self.exchange;
        debug_assert!(i < e.width);
        // Relaxed: the barrier orders these stores before every shard's loads.
        e.values[self.half + self.index * e.width + i].store(v.to_bits(), Ordering::Relaxed);
    }

    /// Waits until every shard has published its values.
    pub(super) fn wait(self) -> Published<'a> {
        self.exchange.barrier.wait();
        Published {
            exchange: self.exchange,
            half: self.half,
        }
    }
}

/// Every shard's values of one exchange.
pub(super) struct Published<'a> {
    exchange: &'a Exchange,
    half: usize,
}

impl Published<'_> {
    /// The number of shards.
    pub(super) fn shards(&self) -> usize {
        self.exchange.shards
    }

    /// Value `i` of shard `shard`.
    pub(super) fn get(&self, shard: usize, i: usize) -> f64 {
        let e = self.exchange;
        f64::from_bits(e.values[self.half + shard * e.width + i].load(Ordering::Relaxed))
    }
}
