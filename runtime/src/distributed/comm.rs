//! The MPI calls: two communicators duplicated from the world one (the training's collectives
//! and the closing barrier, so that the two never match each other), errors returned instead
//! of fatal, and every collective non-blocking and polled against a deadline.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::time::{Duration, Instant};

use mpi::environment::{Threading, Universe};
use mpi::ffi;

use super::error;
use crate::Result;

/// A collective operation, named in messages (formatted only when one fails, so that a step
/// allocates nothing).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// The gradient all-reduce of a step.
    Gradients { step: u64 },
    /// A batch-norm exchange.
    BatchNorm { round: u64 },
    /// The broadcast of a network's initial weights.
    Broadcast { network: &'static str },
    /// [`super::Distributed::all_reduce_sum`].
    Caller,
    /// The closing barrier.
    Barrier,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Gradients { step } => write!(f, "all-reduce of the gradients of step {step}"),
            Op::BatchNorm { round } => {
                write!(
                    f,
                    "batch norm's exchange {round} of statistics between the ranks"
                )
            }
            Op::Broadcast { network } => {
                write!(f, "broadcast of {network}'s initial weights from rank 0")
            }
            Op::Caller => write!(f, "all-reduce of the caller's values"),
            Op::Barrier => write!(f, "closing barrier (every rank done)"),
        }
    }
}

/// An MPI job as one process sees it. Dropping it finalises MPI after every rank has arrived
/// at the closing barrier, or ends the job (`MPI_Abort`) when a collective failed or the
/// barrier times out.
pub(crate) struct Comm {
    /// The communicator of the training's collectives.
    data: ffi::MPI_Comm,
    /// The communicator of the closing barrier.
    control: ffi::MPI_Comm,
    pub(crate) rank: usize,
    pub(crate) size: usize,
    /// The deadline of the closing barrier (that of the last [`super::Distributed`] set).
    timeout: Cell<Duration>,
    /// Set by a failed or timed-out collective: the job is then ended, not finalised.
    failed: Cell<bool>,
    /// MPI itself, finalised when dropped (after the communicators are freed).
    universe: Option<Universe>,
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("failed", &self.failed.get())
            .finish_non_exhaustive()
    }
}

/// A value type the collectives carry.
pub(crate) trait Value: Copy {
    /// Its MPI datatype.
    fn datatype() -> ffi::MPI_Datatype;
}

impl Value for f32 {
    fn datatype() -> ffi::MPI_Datatype {
        // Safety: reading one of MPI's constants.
        unsafe { ffi::RSMPI_FLOAT }
    }
}

impl Value for f64 {
    fn datatype() -> ffi::MPI_Datatype {
        // Safety: reading one of MPI's constants.
        unsafe { ffi::RSMPI_DOUBLE }
    }
}

/// The text of an MPI error code.
fn error_text(code: c_int) -> String {
    let mut text = vec![0u8; 512];
    let mut len: c_int = 0;
    // Safety: MPI writes at most MPI_MAX_ERROR_STRING (256 in OpenMPI and MPICH) characters
    // and their length into buffers that outlive the call.
    let rc = unsafe { ffi::MPI_Error_string(code, text.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return format!("MPI error {code}");
    }
    text.truncate(usize::try_from(len).unwrap_or(0).min(512));
    format!("{} (MPI error {code})", String::from_utf8_lossy(&text))
}

impl Comm {
    /// Initialises MPI (threads may exist, only this one calls MPI) and sets up the two
    /// communicators.
    pub(crate) fn init() -> Result<Comm> {
        let setup = |reason: String| crate::Error::Distributed {
            rank: 0,
            size: 1,
            what: "initialising MPI".to_string(),
            reason,
        };
        let (universe, _) =
            mpi::initialize_with_threading(Threading::Funneled).ok_or_else(|| {
                setup("MPI is already initialised in this process (make one Distributed)".into())
            })?;
        let dup = || -> std::result::Result<ffi::MPI_Comm, String> {
            let mut comm = std::mem::MaybeUninit::<ffi::MPI_Comm>::uninit();
            // Safety: MPI is initialised; the world communicator and the error handler are
            // MPI's own constants, and `comm` is written by `MPI_Comm_dup` before it is read.
            unsafe {
                let rc = ffi::MPI_Comm_dup(ffi::RSMPI_COMM_WORLD, comm.as_mut_ptr());
                if rc != 0 {
                    return Err(error_text(rc));
                }
                let comm = comm.assume_init();
                let rc = ffi::MPI_Comm_set_errhandler(comm, ffi::RSMPI_ERRORS_RETURN);
                if rc != 0 {
                    return Err(error_text(rc));
                }
                Ok(comm)
            }
        };
        let data = dup().map_err(setup)?;
        let control = dup().map_err(setup)?;
        let (mut rank, mut size): (c_int, c_int) = (0, 1);
        // Safety: a valid communicator and two integers that outlive the calls.
        unsafe {
            ffi::MPI_Comm_rank(data, &mut rank);
            ffi::MPI_Comm_size(data, &mut size);
        }
        Ok(Comm {
            data,
            control,
            rank: usize::try_from(rank).unwrap_or(0),
            size: usize::try_from(size).unwrap_or(1).max(1),
            timeout: Cell::new(super::DEFAULT_TIMEOUT),
            failed: Cell::new(false),
            universe: Some(universe),
        })
    }

    /// Sets the deadline of the closing barrier.
    pub(crate) fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }

    /// Whether a collective has failed (the job ends when this is dropped).
    pub(crate) fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Marks the job failed, says so on standard error, and returns the error.
    pub(crate) fn fail(&self, what: Op, reason: String) -> crate::Error {
        self.failed.set(true);
        let err = error(self, &what.to_string(), reason);
        eprintln!("striate: {err}; ending the job");
        err
    }

    /// The error of a call that returned `code`, if it is not success.
    fn check(&self, code: c_int, what: Op) -> Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(self.fail(what, error_text(code)))
        }
    }

    /// Starts the sum of `send` over every rank into `recv` (of the same length, at most
    /// `i32::MAX` values).
    ///
    /// # Safety
    /// `send` and `recv` must stay alive and unmoved, and `recv` untouched, until `request`
    /// completes ([`Comm::wait`]).
    pub(crate) unsafe fn start_sum_of<T: Value>(
        &self,
        send: &[T],
        recv: &mut [T],
        request: &mut ffi::MPI_Request,
        what: Op,
    ) -> Result<()> {
        debug_assert_eq!(send.len(), recv.len());
        // Safety: the buffers hold `len` values of `T`'s datatype; the caller keeps them.
        unsafe {
            self.start_sum(
                send.as_ptr().cast(),
                recv.as_mut_ptr().cast(),
                send.len(),
                T::datatype(),
                request,
                what,
            )
        }
    }

    /// Starts the sum of `count` values of `datatype` at `send` over every rank into `recv`.
    ///
    /// # Safety
    /// Both pointers must address `count` values of `datatype`, which stay alive and unmoved
    /// (and `recv` untouched) until `request` completes.
    unsafe fn start_sum(
        &self,
        send: *const c_void,
        recv: *mut c_void,
        count: usize,
        datatype: ffi::MPI_Datatype,
        request: &mut ffi::MPI_Request,
        what: Op,
    ) -> Result<()> {
        let count = c_int::try_from(count).expect("buckets hold at most 2^30 values");
        // Safety: the caller's contract.
        let rc = unsafe {
            ffi::MPI_Iallreduce(
                send,
                recv,
                count,
                datatype,
                ffi::RSMPI_SUM,
                self.data,
                request,
            )
        };
        self.check(rc, what)
    }

    /// Drives MPI's progress on `requests` once; true when all are complete.
    pub(crate) fn test(&self, requests: &mut [ffi::MPI_Request], what: Op) -> Result<bool> {
        let mut done: c_int = 0;
        let count = c_int::try_from(requests.len()).expect("a few requests");
        // Safety: `requests` are requests started on this communicator (or null ones), and
        // `done` outlives the call; the statuses are not asked for.
        let rc = unsafe {
            ffi::MPI_Testall(
                count,
                requests.as_mut_ptr(),
                &mut done,
                ffi::RSMPI_STATUSES_IGNORE,
            )
        };
        self.check(rc, what)?;
        Ok(done != 0)
    }

    /// Waits until every request is complete, polling them; fails when `deadline` passes
    /// first or a request fails.
    pub(crate) fn wait(
        &self,
        requests: &mut [ffi::MPI_Request],
        deadline: Instant,
        timeout: Duration,
        what: Op,
    ) -> Result<()> {
        loop {
            if self.test(requests, what)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.fail(
                    what,
                    format!(
                        "not complete after {:.1} s: another rank has failed, stalled or left \
                         the job",
                        timeout.as_secs_f64()
                    ),
                ));
            }
            std::thread::yield_now();
        }
    }

    /// A request that is complete.
    pub(crate) fn null_request() -> ffi::MPI_Request {
        // Safety: reading one of MPI's constants.
        unsafe { ffi::RSMPI_REQUEST_NULL }
    }

    /// Sends rank 0's `values` to every rank, in parts of at most 2^30 values.
    fn broadcast(
        &self,
        ptr: *mut c_void,
        len: usize,
        size_of: usize,
        datatype: ffi::MPI_Datatype,
        timeout: Duration,
        what: Op,
    ) -> Result<()> {
        const PART: usize = 1 << 30;
        let deadline = Instant::now() + timeout;
        let mut at = 0;
        while at < len {
            let count = (len - at).min(PART);
            let mut request = Comm::null_request();
            // Safety: `ptr` points at `len` values of `datatype` that the caller borrows
            // mutably for this call, which waits for the request before it returns or before
            // the next part starts.
            let rc = unsafe {
                ffi::MPI_Ibcast(
                    ptr.cast::<u8>().add(at * size_of).cast(),
                    c_int::try_from(count).expect("at most 2^30"),
                    datatype,
                    0,
                    self.data,
                    &mut request,
                )
            };
            self.check(rc, what)?;
            self.wait(std::slice::from_mut(&mut request), deadline, timeout, what)?;
            at += count;
        }
        Ok(())
    }

    /// [`Comm::broadcast`] of `values`.
    pub(crate) fn broadcast_of<T: Value>(
        &self,
        values: &mut [T],
        timeout: Duration,
        what: Op,
    ) -> Result<()> {
        self.broadcast(
            values.as_mut_ptr().cast(),
            values.len(),
            std::mem::size_of::<T>(),
            T::datatype(),
            timeout,
            what,
        )
    }

    /// Sums `values` over every rank, in place (through a copy), waiting for the result.
    pub(crate) fn all_reduce_f64(
        &self,
        values: &mut [f64],
        timeout: Duration,
        what: Op,
    ) -> Result<()> {
        let send = values.to_vec();
        let mut request = Comm::null_request();
        // Safety: both buffers live until the wait below returns, which it does only once the
        // request is complete or the job is failed (and then MPI is aborted, never resumed).
        unsafe { self.start_sum_of(&send, values, &mut request, what)? };
        self.wait(
            std::slice::from_mut(&mut request),
            Instant::now() + timeout,
            timeout,
            what,
        )
    }

    /// Gathers every rank's `send` into `recv` (`size · send.len()` values, rank by rank),
    /// waiting for the result.
    pub(crate) fn all_gather_f64(
        &self,
        send: &[f64],
        recv: &mut [f64],
        timeout: Duration,
        what: Op,
    ) -> Result<()> {
        assert_eq!(recv.len(), send.len() * self.size, "all-gather buffer");
        let count = c_int::try_from(send.len()).expect("a few values per channel");
        let mut request = Comm::null_request();
        // Safety: both buffers are borrowed for this call, which waits for the request before
        // it returns (on a timeout the job is failed and MPI is never resumed).
        let rc = unsafe {
            ffi::MPI_Iallgather(
                send.as_ptr().cast(),
                count,
                f64::datatype(),
                recv.as_mut_ptr().cast(),
                count,
                f64::datatype(),
                self.data,
                &mut request,
            )
        };
        self.check(rc, what)?;
        self.wait(
            std::slice::from_mut(&mut request),
            Instant::now() + timeout,
            timeout,
            what,
        )
    }

    /// Ends the whole job.
    fn abort(&self) -> ! {
        // Safety: MPI is initialised (the universe is still held) and the world communicator
        // is MPI's constant. `MPI_Abort` does not return.
        unsafe {
            ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, 1);
        }
        std::process::exit(1)
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        if self.failed.get() {
            self.abort();
        }
        // Every rank must arrive before MPI is finalised: one still training (or hung) would
        // otherwise keep the others waiting in `MPI_Finalize` for ever.
        let timeout = self.timeout.get();
        let what = Op::Barrier;
        let mut request = Comm::null_request();
        // Safety: a valid communicator and a request that outlives the wait below.
        let rc = unsafe { ffi::MPI_Ibarrier(self.control, &mut request) };
        let arrived = self.check(rc, what).and_then(|()| {
            self.wait(
                std::slice::from_mut(&mut request),
                Instant::now() + timeout,
                timeout,
                what,
            )
        });
        if arrived.is_err() {
            self.abort();
        }
        // Safety: both communicators were made by `MPI_Comm_dup`, have no pending request,
        // and are freed once.
        unsafe {
            ffi::MPI_Comm_free(&mut self.data);
            ffi::MPI_Comm_free(&mut self.control);
        }
        drop(self.universe.take());
    }
}
