//! The probe engine behind `jetmon-prober`: sans-IO protocol machines (`proto`), target
//! parsing (`target`), the per-shard check table and timer wheel (`sched`), probe-safety
//! refusals as results (`refusal`), and the shards
//! that drive probes on io_uring.

pub mod exec;
pub mod probe;
pub mod proto;
pub mod refusal;
pub mod resolver;
pub mod sched;
pub mod shard;
pub mod target;
pub mod tls;
