//! Shared code of the rvs fuzz targets: the pipeline oracle (also replayed over the corpus by
//! dataplane/tests/fuzz_corpus.rs) the packet parser checks and
//! the sync codec checks.

pub mod oracle;
pub mod packet;
pub mod sync;
