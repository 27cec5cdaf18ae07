//! Metrics exposition and its small HTTP server live in `jetmon_shared::metrics` (the veriflier
//! serves its own); control renders its families in `supervisor.rs`.

pub use jetmon_shared::metrics::*;
