//! The pipeline, frame in, verdict and rewritten frame out, checked by the oracle
//! (fuzz/src/oracle.rs: checksums, NAT mappings against the tables, ICMP errors, counters), on
//! the process's harness (`oracle::with_process_harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_fuzz::oracle::with_process_harness;

fuzz_target!(|data: &[u8]| {
    with_process_harness(|h| h.run(data));
});
