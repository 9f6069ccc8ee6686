//! The system allocator, counting allocations on every thread (included with `#[path]` by
//! the tests that check that something allocates nothing once warm; it becomes the test
//! binary's global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting allocations (on every thread, the pool's workers too).
pub struct Counting;

pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// Safety: every call is passed on to `System` unchanged; the counter is a plain atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Safety: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Safety: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Safety: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Whether this process runs striate's own kernels, whose steps allocate nothing once warm:
/// on the matrixmultiply path ([`striate::ops::Kernels::Matrixmultiply`], another CPU or
/// `STRIATE_MATRIXMULTIPLY=1`) each product allocates matrixmultiply's packing buffer, so a
/// test that counts says it is skipped and returns.
#[allow(dead_code)] // not every test that includes this module counts products
pub fn own_kernels(test: &str) -> bool {
    let kernels = striate::ops::kernels();
    let own = kernels != striate::ops::Kernels::Matrixmultiply;
    if !own {
        eprintln!("skipped: {test}: the {kernels} products allocate their packing buffers");
    }
    own
}
