//! The atomics of the lock-free shared tables (the connection table and [`crate::seqlock`]'s
//! slots): std's, or loom's under `--cfg loom`, so that the same code is model-checked (see
//! `conntrack/loom_model.rs` and `seqlock.rs`'s `loom` tests for how to run the models).

#[cfg(loom)]
pub use loom::hint::spin_loop;
#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub use std::hint::spin_loop;
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Loom's `AtomicU64`, whose loads and stores can be run as read-modify-writes
/// (`fetch_add(0)`, `swap`): loom's partial-order reduction tracks only the last access to
/// an atomic, and misses interleavings where a thread's load is followed by its own CAS
/// (loom issues #166, #392). With every access an RMW, every access to a word conflicts
/// with every other one and all interleavings are explored (sequentially consistent ones;
/// the plain mode explores stale reads instead). Stores become swaps too, because loom
/// orders plain stores only partially and would let an RMW read an older value than a
/// concurrent plain store (loom issue #282). [`model`] runs each model both ways.
#[cfg(loom)]
#[derive(Debug, Default)]
pub struct AtomicU64(loom::sync::atomic::AtomicU64);

#[cfg(loom)]
std::thread_local! {
    /// Per test thread: loom runs a model's threads as coroutines on the test's thread.
    pub static RMW_LOADS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(loom)]
impl AtomicU64 {
    pub fn new(v: u64) -> Self {
        AtomicU64(loom::sync::atomic::AtomicU64::new(v))
    }
    pub fn load(&self, o: Ordering) -> u64 {
        if RMW_LOADS.with(|r| r.get()) {
            self.0.fetch_add(0, o)
        } else {
            self.0.load(o)
        }
    }
    pub fn store(&self, v: u64, o: Ordering) {
        if RMW_LOADS.with(|r| r.get()) {
            self.0.swap(v, o);
        } else {
            self.0.store(v, o)
        }
    }
    pub fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
        self.0.fetch_add(v, o)
    }
    pub fn fetch_or(&self, v: u64, o: Ordering) -> u64 {
        self.0.fetch_or(v, o)
    }
    pub fn compare_exchange(&self, a: u64, b: u64, s: Ordering, f: Ordering) -> Result<u64, u64> {
        self.0.compare_exchange(a, b, s, f)
    }
    pub fn compare_exchange_weak(
        &self,
        a: u64,
        b: u64,
        s: Ordering,
        f: Ordering,
    ) -> Result<u64, u64> {
        self.0.compare_exchange_weak(a, b, s, f)
    }
}

/// Runs `f` under loom twice: loads as loads (stale reads explored), then loads as RMWs (all
/// interleavings explored; see [`AtomicU64`]), each with preemption bound 3.
#[cfg(all(test, loom))]
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded([Some(3), Some(3)], f)
}

/// As [`model`], with preemption bounds for the plain and the RMW run (`None`: skip that run).
/// `LOOM_MAX_PREEMPTIONS` overrides the bounds; with `LOOM_VERBOSE` set, the number of
/// executions explored is printed.
#[cfg(all(test, loom))]
pub fn model_bounded(bounds: [Option<usize>; 2], f: impl Fn() + Sync + Send + 'static) {
    let f = std::sync::Arc::new(f);
    for (rmw, bound) in [false, true].into_iter().zip(bounds) {
        let Some(bound) = bound else {
            continue;
        };
        RMW_LOADS.with(|r| r.set(rmw));
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(bound);
        }
        let f = f.clone();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n2 = n.clone();
        b.check(move || {
            n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f()
        });
        if std::env::var_os("LOOM_VERBOSE").is_some() {
            eprintln!(
                "rmw loads {rmw}: {} executions",
                n.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
}
