//! Shared code of the rvs fuzz targets: the pipeline oracle (also replayed over the corpus by
//! dataplane/tests/fuzz_corpus.rs) and the packet parser checks.

pub mod oracle;
pub mod packet;
