//! The packet parsers and rewriters on arbitrary bytes (fuzz/src/packet.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rvs_fuzz::packet::check(data);
});
