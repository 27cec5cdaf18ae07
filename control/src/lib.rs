//! Jetmon's control plane as a library: the event engine (sans-IO) and, as they land, ingest,
//! storage and the API. The `jetmon` binary (src/main.rs) is the command line around it.

pub mod api;
pub mod demo;
pub mod engine;
pub mod import;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod oneoff;
pub mod sla;
pub mod stats;
pub mod store;
pub mod verify;
