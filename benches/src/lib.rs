//! Benchmarks live here (later issues).
