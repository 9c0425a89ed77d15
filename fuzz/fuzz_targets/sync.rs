//! The IPVS sync codec and the backup's install (fuzz/src/sync.rs), on the process's harness
//! (`oracle::with_process_harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_fuzz::oracle::with_process_harness;

fuzz_target!(|data: &[u8]| {
    with_process_harness(|h| rvs_fuzz::sync::check(h, data));
});
