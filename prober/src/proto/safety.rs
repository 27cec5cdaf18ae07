//! Probe safety lives in `jetmon-shared` (the webhook deliverer judges its targets by the same
//! rules); re-exported here where the prober's code and tests name it.

pub use jetmon_shared::safety::*;
