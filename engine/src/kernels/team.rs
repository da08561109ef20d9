//! Fork–join across a fixed team of threads, for splitting one query's layers.
//!
//! A single query is too small for a general-purpose pool: waking a sleeping thread costs more
//! than a layer's slice of work. A [`Team`] keeps its helpers spinning for a short while after
//! each job so that the dozens of forks inside one query cost well under a microsecond each,
//! then lets them sleep. Work is split by the caller into `parts()` disjoint pieces; the caller
//! always runs part 0 itself.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Something that runs `f(part)` for every `part` in `0..parts()` and returns when all are done.
pub(crate) trait Fork: Sync {
    /// Number of parts work is split into.
    fn parts(&self) -> usize;
    /// Runs `f(0..parts())`, part 0 on the calling thread.
    fn fork(&self, f: &(dyn Fn(usize) + Sync));
}

/// No parallelism: one part, on the caller.
pub(crate) struct Serial;

impl Fork for Serial {
    fn parts(&self) -> usize {
        1
    }
    fn fork(&self, f: &(dyn Fn(usize) + Sync)) {
        f(0)
    }
}

/// How long an idle helper spins before it sleeps.
const SPIN: Duration = Duration::from_micros(300);

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Incremented by the caller to publish a job.
    epoch: AtomicU64,
    /// Helpers still running the current job.
    pending: AtomicUsize,
    /// The current job; only valid while `pending > 0` for the current epoch.
    job: UnsafeCell<Option<Job>>,
    /// Helpers parked (not spinning).
    sleeping: AtomicUsize,
    shutdown: AtomicBool,
    /// Set while a fork is in progress: a second caller (or a nested fork) runs serially.
    busy: AtomicBool,
    /// Threads inside a [`Caller`] section. With more than one, every fork runs serially: the
    /// cores are already shared between queries, and a helper preempted by another query's
    /// thread would stall each fork it joins.
    callers: AtomicUsize,
    /// The first panic of a helper during the current fork.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` is written only by the caller that won `busy`, before the epoch is published
// with Release, and read by helpers after observing the epoch with Acquire; that caller waits
// for `pending == 0` before `busy` is released, so the job is never overwritten or dropped while
// a helper may still run it.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

/// The caller plus `helpers` threads.
pub(crate) struct Team {
    shared: Arc<Shared>,
    threads: Vec<(Thread, Option<JoinHandle<()>>)>,
}

impl Team {
    /// A team of `parts` threads in all (the caller and `parts - 1` helpers).
    pub(crate) fn new(parts: usize) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            sleeping: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            callers: AtomicUsize::new(0),
            panic: Mutex::new(None),
        });
        // Built first so that, if a spawn fails, dropping it stops the helpers already running.
        let mut team = Team { shared, threads: Vec::new() };
        for part in 1..parts.max(1) {
            let shared = Arc::clone(&team.shared);
            let handle =
                thread::Builder::new().name(format!("barista-team-{part}")).spawn(move || helper(&shared, part))?;
            team.threads.push((handle.thread().clone(), Some(handle)));
        }
        Ok(team)
    }
}

fn helper(shared: &Shared, part: usize) {
    let mut seen = 0u64;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let epoch = shared.epoch.load(Ordering::Acquire);
            if epoch != seen {
                break epoch;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && started.elapsed() > SPIN {
                shared.sleeping.fetch_add(1, Ordering::SeqCst);
                if shared.epoch.load(Ordering::SeqCst) == seen {
                    thread::park();
                }
                shared.sleeping.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            std::hint::spin_loop();
        };
        seen = epoch;
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: published before `epoch` (Release/Acquire) and kept alive until `pending == 0`.
        let job = unsafe { (*shared.job.get()).expect("job published with its epoch") };
        // SAFETY: see above.
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(part) }));
        if let Err(payload) = outcome {
            let mut first = shared.panic.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert(payload);
        }
        shared.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    /// How deeply the current thread is inside [`Team::enter`] sections.
    static ENTERED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A thread working for one query (see [`Team::enter`]); leaving it is dropping it.
pub(crate) struct Caller<'a> {
    callers: &'a AtomicUsize,
    counted: bool,
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        ENTERED.with(|depth| depth.set(depth.get().saturating_sub(1)));
        if self.counted {
            self.callers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Team {
    /// Marks the calling thread as serving one query until the guard is dropped. While two or
    /// more threads are inside such sections, forks run serially on each caller, so concurrent
    /// queries each get a core instead of fighting over the helpers. Re-entrant: nested
    /// sections on one thread count once.
    pub(crate) fn enter(&self) -> Caller<'_> {
        let counted = ENTERED.with(|depth| {
            let outer = depth.get() == 0;
            depth.set(depth.get() + 1);
            outer
        });
        if counted {
            self.shared.callers.fetch_add(1, Ordering::SeqCst);
        }
        Caller { callers: &self.shared.callers, counted }
    }
}

impl Fork for Team {
    fn parts(&self) -> usize {
        self.threads.len() + 1
    }

    fn fork(&self, f: &(dyn Fn(usize) + Sync)) {
        let shared = &*self.shared;
        if self.threads.is_empty()
            || shared.callers.load(Ordering::Relaxed) > 1
            || shared.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            // No helpers, other queries running, or the team in use (by another thread, or
            // this is a nested fork): run every part here. Results are the same; only the speed differs.
            for part in 0..self.parts() {
                f(part);
            }
            return;
        }
        // SAFETY: erase the closure's lifetime; we do not return (or unwind) before every helper
        // is done with it.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        // SAFETY: we hold `busy` and no helper reads `job` while `pending == 0`.
        unsafe { *shared.job.get() = Some(job) };
        shared.pending.store(self.threads.len(), Ordering::Release);
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        if shared.sleeping.load(Ordering::SeqCst) > 0 {
            for (thread, _) in &self.threads {
                thread.unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        while shared.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        let helper_panic = shared.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        shared.busy.store(false, Ordering::Release);
        if let Err(panic) = mine {
            resume_unwind(panic);
        }
        if let Some(panic) = helper_panic {
            resume_unwind(panic);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        for (thread, handle) in &mut self.threads {
            thread.unpark();
            if let Some(handle) = handle.take() {
                let _ = handle.join();
            }
        }
    }
}

/// The `part`-th of `parts` near-equal slices of `0..n`.
pub(crate) fn slice_of(n: usize, part: usize, parts: usize) -> std::ops::Range<usize> {
    (n * part / parts)..(n * (part + 1) / parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_part_runs_once_per_fork() {
        let team = Team::new(3).unwrap();
        assert_eq!(team.parts(), 3);
        let counts: Vec<AtomicU32> = (0..3).map(|_| AtomicU32::new(0)).collect();
        for round in 0..2000 {
            if round == 1000 {
                // Let the helpers fall asleep and check they wake up.
                thread::sleep(Duration::from_millis(5));
            }
            team.fork(&|part| {
                counts[part].fetch_add(1, Ordering::Relaxed);
            });
        }
        for count in &counts {
            assert_eq!(count.load(Ordering::Relaxed), 2000);
        }
    }

    #[test]
    fn a_helper_panic_reaches_the_caller() {
        let team = Team::new(2).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            team.fork(&|part| {
                if part == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(result.is_err());
        // The team still works afterwards.
        let hits = AtomicU32::new(0);
        team.fork(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn concurrent_and_nested_forks_run_serially_and_correctly() {
        let team = Team::new(2).unwrap();
        let total = AtomicU32::new(0);
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        team.fork(&|_| {
                            team.fork(&|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 500 * 2 * 2);
    }

    #[test]
    fn concurrent_callers_fork_serially_and_a_lone_caller_uses_the_helpers() {
        let team = Team::new(2).unwrap();
        let helper_ran = |team: &Team| {
            let ran = AtomicBool::new(false);
            let caller = thread::current().id();
            team.fork(&|_| {
                if thread::current().id() != caller {
                    ran.store(true, Ordering::Relaxed);
                }
            });
            ran.load(Ordering::Relaxed)
        };
        let outer = team.enter();
        {
            let _nested = team.enter();
            assert!(helper_ran(&team), "a lone (nested) caller uses the helpers");
        }
        let (entered, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        thread::scope(|scope| {
            scope.spawn(|| {
                let _other = team.enter();
                entered.wait();
                release.wait();
            });
            entered.wait();
            assert!(!helper_ran(&team), "two callers: forks stay on the caller");
            release.wait();
        });
        assert!(helper_ran(&team));
        drop(outer);
        assert_eq!(team.shared.callers.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn slices_cover_the_range() {
        for n in [0, 1, 5, 36] {
            for parts in 1..4 {
                let total: usize = (0..parts).map(|p| slice_of(n, p, parts).len()).sum();
                assert_eq!(total, n);
            }
        }
    }
}
