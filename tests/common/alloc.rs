//! A global allocator for test binaries: it counts live bytes, records their peak, and refuses
//! (returns null for) any allocation that would take them past `limit` — how the fuzzer catches a
//! reader sized by a lying field, and how a test measures what an operation holds at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting {
    pub limit: usize,
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    pub fn live() -> usize {
        LIVE.load(Ordering::Relaxed)
    }

    /// The most live bytes since the last [`Counting::reset_peak`].
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    pub fn reset_peak() {
        PEAK.store(Self::live(), Ordering::Relaxed);
    }

    /// The most bytes this thread's allocations held beyond what they held at the last
    /// [`Counting::reset_thread_peak`] — what one call took, whatever other tests' threads do
    /// meanwhile (the test harness runs them in parallel).
    pub fn thread_peak() -> usize {
        THREAD.with(|t| t.peak.get().saturating_sub(t.base.get()) as usize)
    }

    pub fn reset_thread_peak() {
        THREAD.with(|t| {
            t.base.set(t.live.get());
            t.peak.set(t.live.get());
        });
    }
}

/// One thread's allocations less its frees (memory one thread frees for another can take it below
/// zero), and its peak since the last reset.
struct ThreadCount {
    live: std::cell::Cell<isize>,
    peak: std::cell::Cell<isize>,
    base: std::cell::Cell<isize>,
}

thread_local! {
    static THREAD: ThreadCount = const {
        ThreadCount { live: std::cell::Cell::new(0), peak: std::cell::Cell::new(0), base: std::cell::Cell::new(0) }
    };
}

fn count_thread(bytes: isize) {
    // `try_with`: an allocation while the thread's locals are torn down is simply not counted.
    let _ = THREAD.try_with(|t| {
        let live = t.live.get() + bytes;
        t.live.set(live);
        if live > t.peak.get() {
            t.peak.set(live);
        }
    });
}

// SAFETY: forwards to the system allocator; it only counts, or refuses with a null pointer.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        if live > self.limit {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        PEAK.fetch_max(live, Ordering::Relaxed);
        count_thread(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        count_thread(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
}
