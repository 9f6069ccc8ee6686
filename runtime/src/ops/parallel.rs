//! The kernels' thread count.
//!
//! Kernels split their work over at most [`threads`] threads. The count is process-wide, like
//! PyTorch's `torch.set_num_threads`; the default is 1.

use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets the number of threads the kernels use (at least 1).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The number of threads the kernels use.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}
