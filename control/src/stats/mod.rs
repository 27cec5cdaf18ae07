//! Response-time statistics on the control side: the codec is `jetmon_engine::stats` (sans-IO,
//! re-exported here), the disk spool that collects samples between flushes is [`spool`], and
//! [`flush`] moves sealed hours into the store.

pub use jetmon_engine::stats::*;

pub mod flush;
pub mod spool;
