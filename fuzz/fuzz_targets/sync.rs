//! The IPVS sync codec and the backup's install (fuzz/src/sync.rs), on one director per
//! process (its clock moved past every timeout between inputs, as the pipeline target's).
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
    if let Some(h) = guard.as_ref() {
        rvs_fuzz::sync::check(h, data);
    }
});
