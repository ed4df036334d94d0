//! Splitting one image's layers over threads that stay awake for the whole forward pass.
//!
//! A layer of one image takes 0.05–1 ms. Handing each layer's halves to a thread pool wakes a
//! sleeping thread per layer, and in the browser a sleeping Web Worker wakes slowly: two threads
//! took 0.90× one thread's time there (Chromium, Lite0, batch 1). A [`Crew`] is a few pool threads
//! that spin while one image goes through the network; each layer's parts are claimed from a shared
//! counter by them and by the thread running the network, which then waits (spinning) for the last
//! part. Work outside a crew, or a crew nobody joined, runs on the calling thread alone.

use std::cell::{Cell, UnsafeCell};
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// One job's parts: `job(part)` for part in 0..parts, on whichever crew member claims it.
type Job = *const (dyn Fn(usize) + Sync);

/// Threads spinning for work while one image goes through the network.
pub struct Crew {
    /// Even while a job runs (a new even value for each job), odd while the next one is posted.
    epoch: AtomicUsize,
    /// The current job (valid from its epoch's bump until its last part is done).
    job: UnsafeCell<Option<Job>>,
    parts: AtomicUsize,
    /// The next part to claim, and the parts done.
    next: AtomicUsize,
    done: AtomicUsize,
    /// Members inside [`Crew::claim`], which a job must not be replaced under.
    busy: AtomicUsize,
    stop: AtomicBool,
}

// SAFETY: `job`, `parts` and `next` are replaced only while the epoch is odd and no member is busy;
// a member enters `claim` only if the epoch it saw (even) is still the epoch after it said it is
// busy, so it never sees a job half replaced. A job is only read inside `claim`, while the leader
// waits in `lead_job`; a member that starts after the leader is done sees `stop` and leaves.
unsafe impl Sync for Crew {}
unsafe impl Send for Crew {}

thread_local! {
    /// The crew the thread running the network leads, while it runs it.
    static LEADING: Cell<*const Crew> = const { Cell::new(std::ptr::null()) };
}

impl Crew {
    fn new() -> Self {
        Self {
            epoch: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            parts: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Runs `lead` on this thread with `members` threads of the rayon pool spinning beside it, ready
    /// for the parts of [`for_each_chunk`]'s jobs; returns its result once the members are told to
    /// leave.
    ///
    /// The caller leads, rather than handing `lead` to the pool (as `rayon::scope` does when called
    /// from outside it) and sleeping until the pool wakes it back: each hand-over wakes a sleeping
    /// thread, slow on a VM and in a browser. The leader claims parts from the first layer on, so a
    /// member that wakes late only joins late (Chromium, Lite0, batch 1, 2 threads against one, same
    /// page, 14 alternating rounds: median 0.59× against 0.62× with the hand-over).
    pub fn run<R>(members: usize, lead: impl FnOnce() -> R) -> R {
        let crew = Arc::new(Crew::new());
        for _ in 0..members {
            let crew = Arc::clone(&crew);
            rayon::spawn(move || crew.serve());
        }
        /// Ends the crew however `lead` ends (a panic too): members left spinning would hold their
        /// cores for good.
        struct Leading(Arc<Crew>, *const Crew);
        impl Drop for Leading {
            fn drop(&mut self) {
                LEADING.with(|leading| leading.set(self.1));
                self.0.stop.store(true, SeqCst);
            }
        }
        let _leading = Leading(Arc::clone(&crew), LEADING.with(|leading| leading.replace(Arc::as_ptr(&crew))));
        lead()
    }

    /// A member's loop: claim the parts of each new job until the leader is done.
    fn serve(&self) {
        let mut seen = 0;
        while !self.stop.load(SeqCst) {
            let epoch = self.epoch.load(SeqCst);
            if epoch == seen || epoch % 2 == 1 {
                spin_loop();
                continue;
            }
            self.busy.fetch_add(1, SeqCst);
            // The job may have been replaced between reading the epoch and saying we are busy.
            if self.epoch.load(SeqCst) == epoch {
                seen = epoch;
                self.claim();
            }
            self.busy.fetch_sub(1, SeqCst);
        }
    }

    /// Claims and runs parts of the current job until none is left.
    fn claim(&self) {
        let parts = self.parts.load(SeqCst);
        loop {
            let part = self.next.fetch_add(1, SeqCst);
            if part >= parts {
                return;
            }
            // SAFETY: the job stays valid until its last part is done (`lead_job` waits for that).
            let job = unsafe { (*self.job.get()).expect("a posted job") };
            unsafe { (*job)(part) };
            self.done.fetch_add(1, SeqCst);
        }
    }

    /// Posts `job` for parts 0..parts, claims parts itself, and waits for the rest.
    fn lead_job(&self, parts: usize, job: &(dyn Fn(usize) + Sync)) {
        // Posting: members stop entering `claim`, and those inside leave it first.
        self.epoch.fetch_add(1, SeqCst);
        while self.busy.load(SeqCst) > 0 {
            spin_loop();
        }
        // SAFETY: only the lifetime is erased; `job` outlives its parts, which end before this
        // returns, and no member reads it until the epoch is even again.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
        unsafe { *self.job.get() = Some(job) };
        self.parts.store(parts, SeqCst);
        self.done.store(0, SeqCst);
        self.next.store(0, SeqCst);
        self.epoch.fetch_add(1, SeqCst);
        self.claim();
        while self.done.load(SeqCst) < parts || self.busy.load(SeqCst) > 0 {
            spin_loop();
        }
    }
}

/// `f(index, chunk)` for each `chunk_len`-long chunk of `out` (the last may be shorter): over the
/// crew this thread leads, else over the rayon pool when `parallel`, else here in order. On one
/// thread nothing is handed to the pool: each hand-over from a thread outside it wakes a pool
/// thread and puts the caller to sleep until the work is done, 7% of a one-thread fine-tuning step
/// in futex wake-ups alone (perf, Lite0 64², 2026-12-07).
pub fn for_each_chunk<T: Send>(out: &mut [T], chunk_len: usize, parallel: bool, f: impl Fn(usize, &mut [T]) + Sync) {
    if parallel {
        split(out, chunk_len, &f)
    } else {
        out.chunks_mut(chunk_len.max(1)).enumerate().for_each(|(i, chunk)| f(i, chunk));
    }
}

/// The parts of [`for_each_chunk`] over the crew this thread leads, else over the rayon pool. The
/// job comes as a trait object, so that the pool's loop is compiled once per element type rather
/// than once per caller: the threaded web build's first load counts every copy.
fn split<T: Send>(out: &mut [T], chunk_len: usize, job: &(dyn Fn(usize, &mut [T]) + Sync)) {
    use rayon::prelude::*;
    let chunk_len = chunk_len.max(1);
    let crew = LEADING.with(Cell::get);
    if crew.is_null() {
        out.par_chunks_mut(chunk_len).enumerate().for_each(|(i, chunk)| job(i, chunk));
        return;
    }
    let (base, len) = (SharedMut(out.as_mut_ptr()), out.len());
    let part = |part: usize| {
        let start = part * chunk_len;
        let end = (start + chunk_len).min(len);
        // SAFETY: parts are disjoint ranges of `out`, each claimed by exactly one thread, and
        // `out` is borrowed mutably until every part is done.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        job(part, chunk)
    };
    // SAFETY: `crew` is set only while the crew it points to is alive (`Crew::run`).
    unsafe { (*crew).lead_job(len.div_ceil(chunk_len), &part) };
}

/// A pointer to the output that crew members write disjoint parts of.
struct SharedMut<T>(*mut T);
// SAFETY: see `for_each_chunk`: each part is written by one thread only.
unsafe impl<T: Send> Sync for SharedMut<T> {}
impl<T> SharedMut<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crew's jobs of 1–9 parts, thousands in a row (each replacing the last while members may still
    /// be looking at it), give every part to exactly one thread; with more members than the pool has
    /// threads, or none, the leader does the rest. Outside a crew the same calls run in order.
    #[test]
    fn crew_parts_each_run_once() {
        for members in [0, 1, 3] {
            let checked = Crew::run(members, || {
                let mut out = vec![0usize; 9 * 4];
                for job in 1..3000usize {
                    let parts = job % 9 + 1;
                    let out = &mut out[..parts * 4 - job % 3];
                    out.fill(0);
                    for_each_chunk(out, 4, true, |part, chunk| chunk.iter_mut().for_each(|v| *v += part + job));
                    for (i, v) in out.iter().enumerate() {
                        assert_eq!(*v, i / 4 + job, "job {job}, value {i}");
                    }
                }
                true
            });
            assert!(checked, "{members} members");
        }
        let mut out = vec![0usize; 10];
        for_each_chunk(&mut out, 3, false, |part, chunk| chunk.fill(part));
        assert_eq!(out, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
    }
}
