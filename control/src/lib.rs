//! Jetmon's control plane as a library: ingest, storage, the API, verification and the one-off
//! check around the sans-IO engine (`jetmon-engine`, re-exported as [`engine`] and [`sla`]).
//! The `jetmon` binary (src/main.rs) is the command line around it.

pub mod api;
pub mod demo;
pub use jetmon_engine as engine;
pub mod import;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod oneoff;
pub use jetmon_engine::sla;
pub mod stats;
pub mod store;
pub mod verify;
