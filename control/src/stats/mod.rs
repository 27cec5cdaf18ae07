//! Response-time statistics on the control side: the codec is `jetmon_engine::stats` (sans-IO),
//! the disk spool that collects samples between flushes and the flush into the store are
//! `jetmon_spool`; both are re-exported here under the names callers know.

pub use jetmon_engine::stats::*;
pub use jetmon_spool::flush;

/// The spool (`jetmon_spool`).
pub mod spool {
    pub use jetmon_spool::*;
}
