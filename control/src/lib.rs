//! Jetmon's control plane as a library: ingest, the API, verification, statistics spooling and
//! the one-off check, around the sans-IO engine (`jetmon-engine`, re-exported as [`engine`]
//! and [`sla`]) and the store (`jetmon-store`, re-exported as [`store`] and [`keys`]).
//! The `jetmon` binary (src/main.rs) is the command line around it.

pub mod api;
pub mod demo;
pub use jetmon_engine as engine;
pub mod import;
pub mod ingest;
pub use jetmon_store::tokens as keys;
pub mod metrics;
pub mod oneoff;
pub use jetmon_engine::sla;
pub mod stats;
pub use jetmon_store as store;
pub mod verify;
