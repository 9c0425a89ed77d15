//! The pipeline, frame in, verdict and rewritten frame out, checked by the oracle
//! (fuzz/src/oracle.rs: checksums, NAT mappings against the tables, ICMP errors, counters).
//!
//! One director per process, reused input after input with the clock moved past every timeout
//! in between (a fresh one costs milliseconds): a crash that needs an earlier input's state
//! shows in the oracle's message; fuzz/corpus replays run each input on a fresh director.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_fuzz::oracle::Harness;
use std::sync::Mutex;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = match guard.as_mut() {
        Some(h) => !h.next_input(),
        None => true,
    };
    if fresh {
        *guard = Some(Harness::new());
    }
    if let Some(h) = guard.as_mut() {
        h.run(data);
    }
});
