//! The kernels' threads: a small fork-join pool that splits one kernel call into a few tasks.
//!
//! The count is process-wide, like PyTorch's `torch.set_num_threads`; the default is 1 (no
//! worker threads at all), and at most [`max_threads`]. Workers are started by [`set_threads`]
//! (the only allocation), and a call takes only as many as it has tasks besides the caller's:
//! workers left over from a higher count sleep until the count rises again. Each `run`
//! hands them task indices through atomics: no allocation, no channel. A worker
//! that has just finished waits briefly for the next call (spinning for a few microseconds,
//! then yielding its core), so the many short kernel calls of a small network do not each pay
//! a futex wake-up, and then sleeps.
//!
//! A task is identified by its index, and a kernel gives each index its own slice of the output
//! and of the scratch space; which thread runs which index does not change the result, so
//! results are the same for every run with the same thread count.
//!
//! On a busy machine a worker may not get a core for milliseconds. The caller never waits for
//! such a worker: it takes every task nobody has claimed, and then waits only for the workers
//! that joined the call and are running tasks. So a call is never slower than running its tasks
//! one after the other on the caller, whatever the other processes do; only who runs a task
//! adapts, never how the work is split.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{Error, Result};

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets the number of threads the kernels use (at least 1), starting worker threads as needed.
///
/// Lowering the count leaves the extra workers asleep; no call wakes them until the count
/// rises again.
///
/// # Errors
/// [`Error::Config`] when `n` is above [`max_threads`], or when the operating system refuses
/// to start a thread (a limit on processes, say). The count then stays what it was, and the
/// pool works as before.
///
/// # Example
/// ```
/// striate::set_threads(2)?;
/// assert_eq!(striate::threads(), 2);
/// assert!(striate::set_threads(striate::max_threads() + 1).is_err());
/// assert_eq!(striate::threads(), 2);
/// # Ok::<(), striate::Error>(())
/// ```
pub fn set_threads(n: usize) -> Result<()> {
    let n = n.max(1);
    let most = max_threads();
    if n > most {
        return Err(Error::Config {
            name: "thread count",
            reason: format!(
                "{n} is more than {most}, four times the {} cores this machine has (more \
                 threads than cores only make the kernels wait for each other); the count stays {}",
                cores(),
                THREADS.load(Ordering::Relaxed)
            ),
        });
    }
    if n > 1 {
        pool().grow(n - 1)?;
    }
    THREADS.store(n, Ordering::Relaxed);
    Ok(())
}

/// The most threads [`set_threads`] accepts: four times the cores the operating system
/// reports (for trying out oversubscription), and never more than 256.
pub fn max_threads() -> usize {
    (4 * cores()).clamp(1, MAX_WORKERS + 1)
}

/// The cores the operating system gives this process (1 when it does not say).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The most worker threads the pool holds (besides the caller).
const MAX_WORKERS: usize = 255;

/// The number of threads the kernels use.
pub fn threads() -> usize {
    #[cfg(test)]
    if let Some(n) = OVERRIDE.with(std::cell::Cell::get) {
        return n;
    }
    THREADS.load(Ordering::Relaxed)
}

#[cfg(test)]
thread_local! {
    /// A thread count for the calling test only, so tests running side by side do not change
    /// each other's.
    static OVERRIDE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the kernels called from this thread using `n` threads.
#[cfg(test)]
pub(crate) fn with_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    if n > 1 {
        pool().grow(n - 1).expect("the test's threads start");
    }
    OVERRIDE.with(|o| o.set(Some(n.max(1))));
    let r = f();
    OVERRIDE.with(|o| o.set(None));
    r
}

/// Runs `f(0)`, ..., `f(tasks - 1)`, on the calling thread and the workers, and returns when
/// all are done. With one task, one thread, or when the pool is already busy (a nested or a
/// concurrent call), the tasks run one after the other on the calling thread.
pub(crate) fn run<F: Fn(usize) + Sync>(tasks: usize, f: F) {
    if tasks <= 1 || threads() <= 1 {
        (0..tasks).for_each(f);
        return;
    }
    match Reserved::take() {
        Some(reserved) => reserved.pool.dispatch(tasks, &f),
        None => (0..tasks).for_each(f),
    }
}

/// The pool reserved for tasks that run at the same time, made by [`together`].
pub(crate) struct Together {
    reserved: Reserved,
    tasks: usize,
}

/// Reserves the pool for `tasks` tasks that will all run at the same time, each on a thread of
/// its own (the caller's and `tasks - 1` workers), so that they may wait for each other (on a
/// [`Barrier`]). `None` when that cannot be promised: more tasks than the caller and the
/// started workers, or the pool busy with another call (a nested or a concurrent one); the
/// caller then does its work another way. Nothing runs until [`Together::run`].
pub(crate) fn together(tasks: usize) -> Option<Together> {
    let reserved = Reserved::take()?;
    if tasks > 1 + reserved.pool.spawned.load(Ordering::Acquire) {
        return None;
    }
    Some(Together { reserved, tasks })
}

/// As [`together`], but while the pool is busy with another thread's call, waits for it to
/// end instead of giving up; `None` only when there are more tasks than the caller and the
/// started workers. Not to be called from inside a task (the pool would never be free).
pub(crate) fn together_waiting(tasks: usize) -> Option<Together> {
    loop {
        if tasks > 1 + pool().spawned.load(Ordering::Acquire) {
            return None;
        }
        if let Some(together) = together(tasks) {
            return Some(together);
        }
        std::thread::yield_now();
    }
}

impl Together {
    /// Runs `f(0)`, ..., `f(tasks - 1)`, each on a thread of its own, and returns when all are
    /// done; a panic in a task reaches the caller, as with [`run`].
    pub(crate) fn run<F: Fn(usize) + Sync>(self, f: F) {
        // The call stays open until every task is claimed, and a thread takes its next task
        // only when its task is done, so tasks that wait for each other each hold a thread:
        // the caller and workers (as many as there are tasks besides the caller's, which
        // `together` checked were started) claim them all before any gets past its first wait.
        self.reserved.pool.dispatch(self.tasks, &f);
    }
}

/// The pool's `busy` flag, held; released on drop (also when unwinding).
struct Reserved {
    pool: &'static Pool,
}

impl Reserved {
    /// `None` when the pool is busy.
    fn take() -> Option<Reserved> {
        let pool = pool();
        pool.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(Reserved { pool })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.pool.busy.store(false, Ordering::Release);
    }
}

type JobFn = *const (dyn Fn(usize) + Sync + 'static);

#[derive(Clone, Copy)]
struct Job {
    f: JobFn,
    tasks: usize,
}

/// [`Pool::state`]: the call's generation (bumped once per call) above [`CLOSED`], and below
/// it the number of workers that joined the call and have not yet left it.
const CLOSED: u64 = 1 << 31;
const ACTIVE: u64 = CLOSED - 1;
const GENERATION: u64 = 1 << 32;

fn generation(state: u64) -> u64 {
    state >> 32
}

struct Pool {
    busy: AtomicBool,
    job: UnsafeCell<Option<Job>>,
    /// The current call's generation, whether it still takes workers (not [`CLOSED`]), and how
    /// many workers are inside it ([`ACTIVE`]). A worker joins only an open call, by
    /// incrementing the count with a compare-exchange; the caller closes the call once every
    /// task is claimed and then waits for the count to reach 0.
    state: AtomicU64,
    /// The next task index to hand out.
    next: AtomicUsize,
    /// Workers `0 .. allowed` may join the current call (its tasks but the caller's).
    allowed: AtomicUsize,
    /// Set by a worker whose task panicked; `run` panics in turn.
    panicked: AtomicBool,
    spawned: AtomicUsize,
    /// Where each worker sleeps, so that a call wakes only the workers it may use.
    slots: [Slot; MAX_WORKERS],
}

/// A worker's place to sleep.
struct Slot {
    /// Set (SeqCst) before the worker looks for a call for the last time and sleeps.
    sleeping: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            sleeping: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }
}

// Safety: `job` is the only field that is not `Sync` by itself; it is written only by the
// holder of `busy` while no worker is inside a call, and read by workers only between joining
// an open call and leaving it, as explained in `dispatch`.
unsafe impl Sync for Pool {}
// Safety: the raw pointer in `job` is only a borrowed closure that is `Sync` (see above); the
// pool lives in a static and is never moved between threads after creation anyway.
unsafe impl Send for Pool {}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        busy: AtomicBool::new(false),
        job: UnsafeCell::new(None),
        state: AtomicU64::new(CLOSED),
        next: AtomicUsize::new(0),
        allowed: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        spawned: AtomicUsize::new(0),
        slots: [const { Slot::new() }; MAX_WORKERS],
    })
}

/// How long a worker waits for the next call, spinning, before it yields its core between
/// looks: longer than the gap between two kernels of one training step, short enough that an
/// idle worker hardly takes a core from another process.
const SPIN: Duration = Duration::from_micros(20);
/// How long a worker keeps looking (yielding its core between looks) before it sleeps until
/// woken: the gap between two training steps (loss, optimizer, the next batch) of a small
/// network.
const LOOK: Duration = Duration::from_micros(200);

impl Pool {
    /// Runs the tasks on the calling thread and on whichever workers join; the caller holds
    /// `busy`.
    fn dispatch(&self, tasks: usize, job: &(dyn Fn(usize) + Sync)) {
        // Safety: the job is written only while `busy` is held and no worker is inside a call
        // (the previous call was closed and waited for its workers before releasing `busy`, and
        // a worker joins only an open call), so nothing reads the cell while it is written. The
        // lifetime is erased to store the pointer; it is only dereferenced by workers inside
        // the call, and this function does not return (so `job` stays alive) until none is.
        unsafe {
            *self.job.get() = Some(Job {
                f: std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), JobFn>(job),
                tasks,
            });
        }
        self.next.store(0, Ordering::Relaxed);
        let allowed = (tasks - 1).min(self.spawned.load(Ordering::Acquire));
        self.allowed.store(allowed, Ordering::SeqCst);
        let previous = self.state.load(Ordering::Relaxed);
        let open = (generation(previous).wrapping_add(1) & (u64::MAX >> 32)) * GENERATION;
        // SeqCst with the slots' `sleeping`: either a worker about to sleep sees the new call,
        // or this sees the worker and wakes it.
        self.state.store(open, Ordering::SeqCst);
        for slot in &self.slots[..allowed] {
            if slot.sleeping.load(Ordering::SeqCst) {
                // Taking the lock waits for a sleeper between its check and its sleep.
                drop(slot.lock.lock().unwrap_or_else(|e| e.into_inner()));
                slot.wake.notify_one();
            }
        }
        // Whatever happens to a task, the workers inside the call are waited for before `job`
        // goes out of scope (they hold a pointer to it), and a panic is passed on afterwards.
        let here = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(job, tasks)));
        // Every task is claimed (or this thread's task panicked): no worker may join any more,
        // and only those inside are waited for, which are running tasks.
        let mut state = self.state.fetch_or(CLOSED, Ordering::AcqRel) | CLOSED;
        let mut looks = 0u32;
        while state & ACTIVE != 0 {
            if looks < 1 << 10 {
                std::hint::spin_loop();
            } else {
                // A worker running the last task lost its core: let it have this one.
                std::thread::yield_now();
            }
            looks = looks.saturating_add(1);
            state = self.state.load(Ordering::Acquire);
        }
        let elsewhere = self.panicked.swap(false, Ordering::Acquire);
        if let Err(payload) = here {
            std::panic::resume_unwind(payload);
        }
        if elsewhere {
            panic!("a kernel task panicked on a worker thread");
        }
    }

    /// Starts workers until there are `n`; takes `busy` so no call runs meanwhile.
    ///
    /// # Errors
    /// When the operating system refuses a thread: the workers started so far stay (asleep
    /// until a count asks for them), and the pool is released.
    fn grow(&'static self, n: usize) -> Result<()> {
        let _reserved = loop {
            if let Some(reserved) = Reserved::take() {
                break reserved;
            }
            std::thread::yield_now();
        };
        let have = self.spawned.load(Ordering::Acquire);
        for index in have..n.min(MAX_WORKERS) {
            let seen = generation(self.state.load(Ordering::Acquire));
            let started = spawn_worker(move || self.worker(index, seen));
            if let Err(e) = started {
                return Err(Error::Config {
                    name: "thread count",
                    reason: format!(
                        "the operating system refused to start kernel thread {} of {}: {e}; \
                         the count stays {}",
                        index + 2,
                        n + 1,
                        THREADS.load(Ordering::Relaxed)
                    ),
                });
            }
            self.spawned.store(index + 1, Ordering::Release);
        }
        Ok(())
    }

    /// Waits for a call of a generation other than `seen` that worker `index` may join:
    /// spins for [`SPIN`], then yields its core between looks until [`LOOK`], then sleeps
    /// until [`Pool::dispatch`] wakes it. Calls it may not join (they have fewer tasks) are
    /// passed over.
    fn wait_for_call(&self, index: usize, mut seen: u64) -> u64 {
        let start = Instant::now();
        let mut looks = 0u32;
        loop {
            if let Some(state) = self.call_for(index, &mut seen) {
                return state;
            }
            looks = looks.saturating_add(1);
            // The clock costs more than a look: the first looks only spin.
            let waited = if looks < 64 {
                Duration::ZERO
            } else {
                start.elapsed()
            };
            if waited >= LOOK {
                return self.sleep(index, seen);
            } else if waited >= SPIN {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// The state of the current call when it is of a generation other than `seen` and worker
    /// `index` may join it; a call it may not join becomes `seen`, passed over. SeqCst, as
    /// [`Pool::sleep`]'s handshake with [`Pool::dispatch`] needs (on x86 a load costs the
    /// same either way).
    fn call_for(&self, index: usize, seen: &mut u64) -> Option<u64> {
        let state = self.state.load(Ordering::SeqCst);
        if generation(state) == *seen {
            return None;
        }
        if index < self.allowed.load(Ordering::SeqCst) {
            return Some(state);
        }
        *seen = generation(state);
        None
    }

    /// Sleeps in worker `index`'s slot until a call of a generation other than `seen` that it
    /// may join.
    fn sleep(&self, index: usize, mut seen: u64) -> u64 {
        let slot = &self.slots[index];
        let mut guard = slot.lock.lock().unwrap_or_else(|e| e.into_inner());
        slot.sleeping.store(true, Ordering::SeqCst);
        let state = loop {
            if let Some(state) = self.call_for(index, &mut seen) {
                break state;
            }
            guard = slot.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        };
        slot.sleeping.store(false, Ordering::SeqCst);
        state
    }

    fn worker(&self, index: usize, mut seen: u64) {
        loop {
            let mut state = self.wait_for_call(index, seen);
            seen = generation(state);
            // Join the call unless it is closed already (its caller took every task) or is
            // not one this worker may join.
            let joined = loop {
                if state & CLOSED != 0
                    || generation(state) != seen
                    || index >= self.allowed.load(Ordering::Acquire)
                {
                    break false;
                }
                match self.state.compare_exchange_weak(
                    state,
                    state + 1,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break true,
                    Err(now) => state = now,
                }
            };
            if !joined {
                continue;
            }
            // Safety: see `dispatch`: the job was written before the call opened, and stays
            // valid until this worker leaves the call.
            let job = unsafe { (*self.job.get()).expect("a job comes with each call") };
            // Safety: as above, the closure outlives this use.
            let f = unsafe { &*job.f };
            // A panicking task must not leave `run` waiting forever: catch it, report it, and
            // keep the worker alive for the next call.
            let done =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(f, job.tasks)));
            if done.is_err() {
                self.panicked.store(true, Ordering::Release);
            }
            self.state.fetch_sub(1, Ordering::Release);
        }
    }

    /// Takes task indices until none are left.
    fn work(&self, f: &(dyn Fn(usize) + Sync), tasks: usize) {
        loop {
            let t = self.next.fetch_add(1, Ordering::Relaxed);
            if t >= tasks {
                break;
            }
            f(t);
        }
    }
}

/// Starts a kernel thread running `f`.
fn spawn_worker(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    #[cfg(test)]
    if REFUSE_THREADS.with(std::cell::Cell::get) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "Resource temporarily unavailable (refused by the test)",
        ));
    }
    std::thread::Builder::new()
        .name("striate-worker".into())
        .spawn(f)
        .map(drop)
}

#[cfg(test)]
thread_local! {
    /// Makes [`spawn_worker`] fail on this thread, as the operating system does at a limit.
    static REFUSE_THREADS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Spin iterations, then yields, a [`Barrier`] waiter goes through before it sleeps: the
/// shards of a batch do the same work, so they usually arrive within microseconds of each
/// other; a waiter that has not been released by then lets the other threads have its core.
const BARRIER_SPIN: usize = 1 << 11;
const BARRIER_YIELDS: usize = 64;

/// A barrier for the tasks of one [`Together::run`], which can be closed: a waiter then
/// panics instead of waiting for a task that will not come (one that panicked, or that
/// finished without reaching this wait), so a failing task never leaves the others hanging.
/// Unlike `std::sync::Barrier`, it allocates nothing and can be closed.
#[derive(Debug, Default)]
pub(crate) struct Barrier {
    parties: usize,
    arrived: AtomicUsize,
    /// Bumped each time all parties have arrived.
    round: AtomicUsize,
    closed: AtomicBool,
    /// Waiters asleep on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Barrier {
    /// Opens the barrier for `parties` tasks; nobody may be waiting (hence `&mut`).
    pub(crate) fn reset(&mut self, parties: usize) {
        self.parties = parties;
        *self.arrived.get_mut() = 0;
        *self.closed.get_mut() = false;
    }

    /// Waits until all parties have called `wait` as often as this one. Every write a party
    /// made before its call is visible to every party after it.
    ///
    /// # Panics
    /// When the barrier is closed before the last party arrives.
    pub(crate) fn wait(&self) {
        let seen = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            // The others wait for the round to change, so none arrives again before the reset.
            self.arrived.store(0, Ordering::Relaxed);
            self.round.store(seen.wrapping_add(1), Ordering::SeqCst);
            self.wake_sleepers();
            return;
        }
        let mut tries = 0;
        loop {
            if self.round.load(Ordering::Acquire) != seen {
                return;
            }
            if self.closed.load(Ordering::Acquire) {
                // A party that closes the barrier after passing this round has seen the new
                // round, so the load above may have been early; look again.
                if self.round.load(Ordering::Acquire) != seen {
                    return;
                }
                panic!("a task stopped while the others waited for it at a barrier");
            }
            if tries < BARRIER_SPIN {
                std::hint::spin_loop();
            } else if tries < BARRIER_SPIN + BARRIER_YIELDS {
                std::thread::yield_now();
            } else {
                let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                // SeqCst with the waker's round store and `sleepers` load: either it sees
                // this sleeper, or this sees its round.
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                while self.round.load(Ordering::SeqCst) == seen
                    && !self.closed.load(Ordering::SeqCst)
                {
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            tries += 1;
        }
    }

    /// Closes the barrier: whoever waits, or comes to wait, before all parties arrive panics.
    /// Parties that passed their last wait are not affected.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_sleepers();
    }

    fn wake_sleepers(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            // Taking the lock waits for a sleeper between its check and its sleep.
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.wake.notify_all();
        }
    }
}

/// `*mut T` that may be shared between the tasks of one [`run`], each task touching only its
/// own disjoint part. It keeps the length of the slice it was made from, and
/// [`SharedMut::slice`] checks every range against it, in release builds too.
pub(crate) struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

// By hand: the derives would ask `T: Copy`, but only the pointer is copied.
impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedMut<T> {}

// Safety: only used to give disjoint ranges of one slice to the tasks of one `run`, which all
// end before the slice's borrow does (see `SharedMut::slice`).
unsafe impl<T: Send> Send for SharedMut<T> {}
// Safety: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub(crate) fn new(s: &mut [T]) -> Self {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// `len` elements from `start`.
    ///
    /// # Panics
    /// When `start .. start + len` does not lie inside the slice given to [`SharedMut::new`].
    ///
    /// # Safety
    /// The slice given to [`SharedMut::new`] must still be borrowed, and no other live
    /// reference may overlap the range.
    pub(crate) unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [T] {
        let inside = start.checked_add(len).is_some_and(|end| end <= self.len);
        assert!(
            inside,
            "SharedMut::slice: {len} values from {start} do not fit in {}",
            self.len
        );
        // Safety: the range lies inside the slice (checked just above), which the caller
        // says is still borrowed and not otherwise referenced in this range.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// A batch of `n` samples split over up to one task per part of `bufs`: task `t` runs
/// `f(out_t, in_t, buf)` on its run of samples ([`part`]) of `out` (`out_len` values a sample,
/// written) and of `inp` (`in_len` a sample, read), with its own `per_task` values of `bufs`.
///
/// # Panics
/// Unless `out` has `n·out_len` values and `inp` `n·in_len` (checked by [`SharedMut::slice`]
/// and slicing, in release builds too).
// The two slices with their per-sample lengths, the batch, the buffers and the task.
#[allow(clippy::too_many_arguments)]
pub(crate) fn over_batch<F>(
    out: &mut [f32],
    out_len: usize,
    inp: &[f32],
    in_len: usize,
    n: usize,
    bufs: &mut [f32],
    per_task: usize,
    f: F,
) where
    F: Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
{
    debug_assert_eq!((out.len(), inp.len()), (n * out_len, n * in_len));
    // As many tasks as `bufs` has parts for (the caller sized it from its one reading of the
    // thread count, which another thread may change meanwhile), and no more than samples.
    let tasks = n.clamp(1, (bufs.len() / per_task.max(1)).max(1));
    let (out_all, bufs) = (SharedMut::new(out), SharedMut::new(bufs));
    run(tasks, |t| {
        let samples = part(n, tasks, t);
        // Safety: task `t` alone touches its samples' part of `out` and its own part of
        // `bufs`; `run` returns before either is borrowed again.
        let (out_t, buf) = unsafe {
            (
                out_all.slice(samples.start * out_len, samples.len() * out_len),
                bufs.slice(t * per_task, per_task),
            )
        };
        f(
            out_t,
            &inp[samples.start * in_len..samples.end * in_len],
            buf,
        );
    });
}

/// Values from which [`chunks_mut`] splits a slice over the threads: below, one core streams
/// it faster than a fork-join costs.
const MIN_SPLIT_VALUES: usize = 1 << 20;

/// Runs `f(range, part)` on parts of `values` (contiguous, one per thread when it has at
/// least [`MIN_SPLIT_VALUES`] values, else one): each task gets its own part and its range
/// in `values`, so that it can take the same range of other slices. For updates that treat
/// every value alike (an optimizer's step, clearing gradients), whose results therefore do
/// not depend on the split; one core alone does not reach the memory's bandwidth.
pub(crate) fn chunks_mut<F>(values: &mut [f32], f: F)
where
    F: Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
{
    let len = values.len();
    let tasks = if len >= MIN_SPLIT_VALUES {
        threads()
    } else {
        1
    };
    let all = SharedMut::new(values);
    run(tasks, |t| {
        let range = part(len, tasks, t);
        // Safety: task `t` alone touches `range`; `run` returns before `values` is borrowed
        // again.
        let mine = unsafe { all.slice(range.start, range.len()) };
        f(range, mine);
    });
}

/// The part `t` of `tasks` of `0..n` (contiguous, sizes differing by at most one).
pub(crate) fn part(n: usize, tasks: usize, t: usize) -> std::ops::Range<usize> {
    (t * n / tasks)..((t + 1) * n / tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_range() {
        for n in 0..20 {
            for tasks in 1..5 {
                let all: Vec<usize> = (0..tasks).flat_map(|t| part(n, tasks, t)).collect();
                assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
    }

    /// A panicking task reaches the caller, wherever it ran, and the pool keeps working.
    #[test]
    fn a_panicking_task_reaches_the_caller() {
        with_threads(2, || {
            for bad in [0, 1] {
                let caught = std::panic::catch_unwind(|| {
                    run(2, |t| {
                        if t == bad {
                            panic!("task {t} fails");
                        }
                    })
                });
                assert!(caught.is_err());
            }
            let done = AtomicUsize::new(0);
            run(4, |_| {
                done.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(done.load(Ordering::Relaxed), 4);
        });
    }

    /// A range past the end of the slice a `SharedMut` was made from panics, in release
    /// builds too, however the start and length add up.
    #[test]
    fn shared_ranges_are_checked() {
        let mut v = [0u8; 4];
        let shared = SharedMut::new(&mut v);
        // Safety: `v` is borrowed for the whole test and each returned slice dies at once.
        assert_eq!(unsafe { shared.slice(1, 3) }.len(), 3);
        assert_eq!(unsafe { shared.slice(4, 0) }.len(), 0);
        for (start, len) in [(1, 4), (5, 0), (usize::MAX, 2), (2, usize::MAX)] {
            let caught = std::panic::catch_unwind(|| {
                // Safety: as above; the call must panic before it makes a slice.
                unsafe { shared.slice(start, len) }.len()
            });
            assert!(caught.is_err(), "{start} + {len}");
        }
    }

    /// Tasks run together may wait for each other: each round, every task sees every task's
    /// value of that round, through a barrier, over many rounds.
    #[test]
    fn tasks_run_together_meet_at_a_barrier() {
        with_threads(3, || {
            for tasks in [1, 2, 3] {
                let mut barrier = Barrier::default();
                barrier.reset(tasks);
                let values: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                let wrong = AtomicUsize::new(0);
                together_waiting(tasks).unwrap().run(|t| {
                    for round in 1..=200 {
                        values[t].store(round * 10 + t, Ordering::Relaxed);
                        barrier.wait();
                        for (u, v) in values.iter().enumerate() {
                            if v.load(Ordering::Relaxed) != round * 10 + u {
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        barrier.wait();
                    }
                });
                assert_eq!(wrong.load(Ordering::Relaxed), 0, "{tasks} tasks");
            }
        });
    }

    /// More tasks than the caller and the started workers are refused, not queued.
    #[test]
    fn together_refuses_more_tasks_than_threads() {
        with_threads(2, || {
            let workers = pool().spawned.load(Ordering::Acquire);
            assert!(together(workers + 2).is_none());
        });
    }

    /// A task that panics, or ends without reaching the barrier, closes it: the others stop
    /// waiting and panic, the caller gets a panic, and the pool works afterwards.
    #[test]
    fn a_closed_barrier_stops_its_waiters() {
        with_threads(2, || {
            for panics in [false, true] {
                for bad in [0, 1] {
                    let mut barrier = Barrier::default();
                    barrier.reset(2);
                    let caught = std::panic::catch_unwind(|| {
                        together_waiting(2).unwrap().run(|t| {
                            struct Close<'a>(&'a Barrier);
                            impl Drop for Close<'_> {
                                fn drop(&mut self) {
                                    self.0.close();
                                }
                            }
                            let _close = Close(&barrier);
                            if t == bad {
                                assert!(!panics, "task {t} fails");
                                return;
                            }
                            barrier.wait();
                        })
                    });
                    assert!(caught.is_err(), "bad task {bad}, panics {panics}");
                }
            }
            let done = AtomicUsize::new(0);
            together_waiting(2).unwrap().run(|_| {
                done.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(done.load(Ordering::Relaxed), 2);
        });
    }

    /// Many short calls with more threads than this machine may have cores, some of whose
    /// workers join late or not at all: every task of every call runs exactly once, and each
    /// call has finished all its tasks when it returns.
    #[test]
    fn calls_never_lose_or_repeat_tasks() {
        with_threads(3, || {
            let counts: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            for call in 1..=20_000 {
                run(3, |t| {
                    if call % 97 == 0 {
                        std::thread::yield_now();
                    }
                    counts[t].fetch_add(1, Ordering::Relaxed);
                });
                for c in &counts {
                    assert_eq!(c.load(Ordering::Relaxed), call, "call {call}");
                }
            }
        });
    }

    /// When the operating system refuses a thread, `set_threads` says so and leaves the count
    /// and the pool as they were: the next call of the pool runs, and the next `set_threads`
    /// (here with threads allowed again) does not hang.
    #[test]
    fn a_refused_thread_is_an_error_that_changes_nothing() {
        let before = THREADS.load(Ordering::Relaxed);
        let spawned = pool().spawned.load(Ordering::Acquire);
        // What `set_threads` does past its limit check (whose bound other tests' workers may
        // already have reached).
        REFUSE_THREADS.with(|r| r.set(true));
        let refused = pool().grow(spawned + 1);
        REFUSE_THREADS.with(|r| r.set(false));
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("refused to start kernel thread"),
            "{message}"
        );
        assert!(
            message.contains(&format!("the count stays {before}")),
            "{message}"
        );
        assert_eq!(THREADS.load(Ordering::Relaxed), before);
        // Other tests' calls hold the pool now and then: it must come free, soon.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Reserved::take().is_none() {
            assert!(Instant::now() < deadline, "the pool is left reserved");
            std::thread::yield_now();
        }
        with_threads(2, || {
            let done = AtomicUsize::new(0);
            run(2, |_| {
                done.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(done.load(Ordering::Relaxed), 2);
        });
    }

    /// A count above `max_threads` is refused, naming the limit, and changes nothing.
    #[test]
    fn too_many_threads_are_refused() {
        let before = THREADS.load(Ordering::Relaxed);
        let spawned = pool().spawned.load(Ordering::Acquire);
        let most = max_threads();
        assert!((4..=MAX_WORKERS + 1).contains(&most), "{most}");
        let message = set_threads(most + 1).unwrap_err().to_string();
        assert!(
            message.contains(&format!("is more than {most}")),
            "{message}"
        );
        assert_eq!(THREADS.load(Ordering::Relaxed), before);
        // No worker was started for it (other tests of this module start at most 6).
        assert!(pool().spawned.load(Ordering::Acquire) <= spawned.max(6));
    }

    /// Workers left over from a higher count take no part in calls with fewer tasks: after
    /// six workers were started, calls of two tasks run on at most two threads (the caller
    /// and the first worker), so the others stay asleep.
    #[test]
    fn calls_use_only_the_workers_they_have_tasks_for() {
        with_threads(7, || ());
        with_threads(2, || {
            let threads = Mutex::new(std::collections::HashSet::new());
            for _ in 0..2_000 {
                run(2, |_| {
                    threads.lock().unwrap().insert(std::thread::current().id());
                });
            }
            let seen = threads.lock().unwrap().len();
            assert!(
                (1..=2).contains(&seen),
                "{seen} threads ran calls of 2 tasks"
            );
        });
    }

    /// Every task runs exactly once, with one thread or several, and nested calls run inline.
    #[test]
    fn every_task_runs_once() {
        for threads in [1, 2, 3] {
            with_threads(threads, || {
                for tasks in [0, 1, 2, 5, 64] {
                    let counts: Vec<AtomicUsize> =
                        (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                    run(tasks, |t| {
                        counts[t].fetch_add(1, Ordering::Relaxed);
                        run(2, |_| {});
                    });
                    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                }
            });
        }
    }
}
