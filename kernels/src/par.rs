//! Fork-join over a fixed team of threads that spin between jobs.
//!
//! Decoding one token runs about 300 short parallel steps (a matrix × vector product takes
//! 0.4–3.5 ms on Phi-4). Rayon's workers fall asleep within microseconds of running out of
//! work, and waking one costs 15–50 µs on this (virtual) machine — measured with an empty
//! two-task job after an idle gap: the second task started 17 µs late after a 20 µs gap, 31–47
//! µs late after 1 ms. That is a few percent of every token, and the product runs on one
//! thread meanwhile. A [`Team`]'s workers instead spin on one atomic word for a while after
//! each job (so the next step of the same token finds them awake: ≈ 0.5 µs to start) and
//! only then sleep on a condition variable, so an idle engine does not burn a core.
//!
//! The kernels call [`for_each`] / [`chunks_mut`]: on a thread inside [`Team::install`]
//! they run on that team, anywhere else on rayon's current pool.
//!
//! One job at a time: the job's task count, its next unclaimed task and an epoch live in one
//! `AtomicU64`, so a worker claims task `i` of epoch `e` with one compare-exchange, and only
//! a worker holding an unfinished task ever reads the job pointer (the caller cannot return,
//! and so the job cannot end, while a claimed task is unfinished).
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long an idle worker spins for the next job before it sleeps.
const SPIN: Duration = Duration::from_millis(2);

const IDX_BITS: u32 = 20;
/// Most tasks one job may have (larger counts are grouped, [`for_each`]).
const MAX_TASKS: usize = (1 << IDX_BITS) - 1;
const IDX_MASK: u64 = (1 << IDX_BITS) - 1;

fn pack(epoch: u64, n: usize, next: usize) -> u64 {
    (epoch << (2 * IDX_BITS)) | ((n as u64) << IDX_BITS) | next as u64
}

fn unpack(w: u64) -> (u64, usize, usize) {
    (
        w >> (2 * IDX_BITS),
        ((w >> IDX_BITS) & IDX_MASK) as usize,
        (w & IDX_MASK) as usize,
    )
}

/// The job's closure with its lifetime erased (see `Team::run`).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Epoch (24 bits, wrapping), task count (20), next unclaimed task (20).
    word: AtomicU64,
    /// Tasks of the current job finished.
    done: AtomicUsize,
    /// The current job; written only while no task of any job is claimable.
    job: Mutex<Option<SendJob>>,
    /// A task of the current job panicked (re-raised by the caller).
    panicked: std::sync::atomic::AtomicBool,
    /// Workers asleep (or about to be) on `wake`.
    sleepers: AtomicUsize,
    sleep_lock: Mutex<bool>,
    wake: Condvar,
    /// One caller at a time (several threads may share a model).
    caller: Mutex<()>,
    threads: usize,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the pointee is `Sync`, and it is only called while the caller that owns it waits
// in `Team::run` (a claimed, unfinished task keeps it alive: module comment).
unsafe impl Send for SendJob {}

impl Shared {
    /// Claims the next task of epoch `epoch`, if it has one left.
    fn claim(&self, epoch: u64) -> Option<usize> {
        let mut w = self.word.load(Acquire);
        loop {
            let (e, n, next) = unpack(w);
            if e != epoch || next >= n {
                return None;
            }
            match self.word.compare_exchange_weak(w, w + 1, AcqRel, Acquire) {
                Ok(_) => return Some(next),
                Err(now) => w = now,
            }
        }
    }

    /// Runs claimed task `i` (and every further one it can claim) of epoch `epoch`.
    fn work(&self, epoch: u64, first: usize) {
        // The job is the one published with `epoch`: task `first` is claimed and not
        // finished, so the caller is still waiting and has not replaced it.
        let job = self
            .job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expect("job");
        let mut i = Some(first);
        while let Some(t) = i {
            // A panicking task still counts as finished (else the caller would wait
            // forever); the caller re-raises it.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: see `SendJob`: the closure outlives every claimed task of its job.
                unsafe { (*job.0)(t) }
            }));
            if ran.is_err() {
                self.panicked.store(true, Relaxed);
            }
            self.done.fetch_add(1, Release);
            i = self.claim(epoch);
        }
    }
}

/// A fixed team of `threads - 1` worker threads plus the calling thread.
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Worker state on exit: the epoch value that tells workers to stop.
const STOP: u64 = (1 << 24) - 1;

impl Team {
    /// A team of `threads` (≥ 1) threads: this one and `threads - 1` workers named
    /// `{name}-{i}`.
    pub fn new(threads: usize, name: &str) -> std::io::Result<Team> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            word: AtomicU64::new(pack(0, 0, 0)),
            done: AtomicUsize::new(0),
            job: Mutex::new(None),
            panicked: std::sync::atomic::AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(false),
            wake: Condvar::new(),
            caller: Mutex::new(()),
            threads,
        });
        let mut workers = Vec::new();
        for i in 1..threads {
            let s = Arc::clone(&shared);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || worker(&s))?,
            );
        }
        Ok(Team { shared, workers })
    }

    /// Threads in the team, the caller included.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `f` with this team as the current one of this thread: the kernels' parallel
    /// loops inside it run on the team.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const Shared);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let prev = CURRENT.with(|c| c.replace(Arc::as_ptr(&self.shared)));
        let _restore = Restore(prev);
        f()
    }

    /// Runs `f(0) .. f(n - 1)` on the team (the calling thread included) and returns when
    /// all have finished.
    fn run(shared: &Shared, n: usize, f: &(dyn Fn(usize) + Sync)) {
        debug_assert!(n <= MAX_TASKS);
        if n == 0 {
            return;
        }
        if n == 1 || shared.threads == 1 {
            (0..n).for_each(f);
            return;
        }
        let _one_caller = shared.caller.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: erasing the lifetime is sound because this function does not return
        // until every task has finished (`done == n` below), and workers call the job only
        // for a task they claimed and have not finished.
        let job: Job = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(f as *const _)
        };
        // No task is claimable now (the previous job's are all claimed), so no worker
        // reads the job while it is replaced.
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(SendJob(job));
        shared.done.store(0, Relaxed);
        shared.panicked.store(false, Relaxed);
        let (old, _, _) = unpack(shared.word.load(Relaxed));
        let epoch = (old + 1) % STOP;
        shared.word.store(pack(epoch, n, 0), SeqCst);
        if shared.sleepers.load(SeqCst) > 0 {
            let _g = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        // A parallel loop inside a task runs on rayon (the team is busy with this one).
        let outer = CURRENT.with(|c| c.replace(std::ptr::null()));
        if let Some(i) = shared.claim(epoch) {
            shared.work(epoch, i);
        }
        while shared.done.load(Acquire) < n {
            std::hint::spin_loop();
        }
        CURRENT.with(|c| c.set(outer));
        if shared.panicked.load(Relaxed) {
            panic!("a task of a parallel loop panicked");
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        {
            let _one_caller = self.shared.caller.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.word.store(pack(STOP, 0, 0), SeqCst);
            let _g = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(s: &Shared) {
    // The epoch the team starts with (not read here: the first job, or the stop, may
    // already have been published before this thread runs).
    let mut seen = 0;
    loop {
        // Spin for a new epoch, then sleep until one is published.
        let start = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let (e, _, _) = unpack(s.word.load(Acquire));
            if e != seen {
                break e;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                let mut g = s.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while unpack(s.word.load(SeqCst)).0 == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
                drop(g);
            } else {
                std::hint::spin_loop();
            }
        };
        if epoch == STOP {
            return;
        }
        seen = epoch;
        if let Some(i) = s.claim(epoch) {
            s.work(epoch, i);
        }
    }
}

thread_local! {
    static CURRENT: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f(0) .. f(n - 1)` in parallel: on the current [`Team`] if this thread is inside
/// one's `install`, else on rayon's current pool.
pub fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    let team = CURRENT.with(|c| c.get());
    if team.is_null() {
        (0..n).into_par_iter().for_each(&f);
        return;
    }
    // SAFETY: CURRENT is set only by `Team::install`, which keeps the team (and so its
    // Arc'd state) alive for the whole closure and restores the previous value after.
    let shared = unsafe { &*team };
    if n <= MAX_TASKS {
        Team::run(shared, n, &f);
    } else {
        let per = n.div_ceil(MAX_TASKS);
        Team::run(shared, n.div_ceil(per), &|g| {
            (g * per..((g + 1) * per).min(n)).for_each(&f)
        });
    }
}

/// Threads of the current [`Team`], or of rayon's current pool.
pub fn current_threads() -> usize {
    let team = CURRENT.with(|c| c.get());
    if team.is_null() {
        rayon::current_num_threads()
    } else {
        // SAFETY: as in `for_each`.
        unsafe { (*team).threads }
    }
}

/// `data` cut into chunks of `chunk` elements (the last may be shorter), `f(index, chunk)`
/// run on each in parallel like [`for_each`].
pub fn chunks_mut<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    assert!(chunk > 0);
    let len = data.len();
    let base = SendPtr(data.as_mut_ptr());
    for_each(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        let n = chunk.min(len - start);
        let p = &base;
        // SAFETY: chunk `i` is `start..start + n` of `data`, inside it; each index is run
        // exactly once, so the chunks handed out are disjoint, and `data` stays mutably
        // borrowed (untouched otherwise) until `for_each` returns.
        f(i, unsafe {
            std::slice::from_raw_parts_mut(p.0.add(start), n)
        })
    });
}

struct SendPtr<T>(*mut T);
// SAFETY: used only to hand out disjoint sub-slices of a `&mut [T]` with `T: Send`.
unsafe impl<T: Send> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_on_teams_of_any_size() {
        for threads in 1..=4 {
            let team = Team::new(threads, "test").unwrap();
            for n in [0usize, 1, 2, 3, 7, 64, 1000] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                team.install(|| for_each(n, |i| _ = hits[i].fetch_add(1, Relaxed)));
                assert!(
                    hits.iter().all(|h| h.load(Relaxed) == 1),
                    "{threads} threads, n {n}"
                );
            }
        }
    }

    #[test]
    fn chunks_cover_the_slice_and_jobs_follow_each_other() {
        let team = Team::new(3, "test").unwrap();
        let mut v = vec![0u32; 1001];
        for round in 1..=200u32 {
            team.install(|| {
                chunks_mut(&mut v, 7, |i, c| {
                    for (j, x) in c.iter_mut().enumerate() {
                        assert_eq!(*x, (round - 1) * ((i * 7 + j) as u32 + 1));
                        *x += (i * 7 + j) as u32 + 1;
                    }
                })
            });
        }
        // After sleeping workers are woken too.
        std::thread::sleep(SPIN * 2);
        team.install(|| chunks_mut(&mut v, 100, |_, c| c.iter_mut().for_each(|x| *x = 0)));
        assert!(v.iter().all(|&x| x == 0));
    }

    #[test]
    fn several_callers_share_a_team() {
        let team = Team::new(2, "test").unwrap();
        std::thread::scope(|s| {
            for k in 0..3 {
                let team = &team;
                s.spawn(move || {
                    for _ in 0..100 {
                        let sum = AtomicUsize::new(0);
                        team.install(|| for_each(50, |i| _ = sum.fetch_add(i + k, Relaxed)));
                        assert_eq!(sum.load(Relaxed), 49 * 50 / 2 + 50 * k);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_team_goes_on() {
        let team = Team::new(2, "test").unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.install(|| for_each(64, |i| assert!(i != 40, "task 40")))
        }));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        team.install(|| {
            for_each(10, |i| {
                // Nested loops run (on rayon) instead of waiting for the busy team.
                for_each(3, |j| _ = sum.fetch_add(i * j, Relaxed))
            })
        });
        assert_eq!(sum.load(Relaxed), 45 * 3);
    }

    #[test]
    fn outside_a_team_rayon_runs_the_tasks() {
        let sum = AtomicUsize::new(0);
        for_each(100, |i| _ = sum.fetch_add(i, Relaxed));
        assert_eq!(sum.load(Relaxed), 99 * 100 / 2);
    }
}
