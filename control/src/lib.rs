//! `jetmon-control`: the `jetmon` binary (src/main.rs: CLI, configuration, supervision,
//! wiring) and the few parts only it uses — ingest from the rings, verification over gRPC,
//! `sites import`, `tenants import`, the one-off check and the demo. The layers below are crates of their own,
//! re-exported here under the names callers know: the sans-IO engine (`jetmon-engine`, as
//! [`engine`] and [`sla`]), the store (`jetmon-store`, as [`store`] and [`keys`]), the spool
//! (`jetmon-spool`, inside [`stats`]) and the API (`jetmon-api`, as [`api`]). Nothing below
//! depends on this crate; a new capability gets a crate of its own beside them
//! (docs/architecture.md, "Where a new capability goes").

pub use jetmon_api as api;
pub mod demo;
pub use jetmon_engine as engine;
pub mod import;
pub mod ingest;
pub use jetmon_store::tokens as keys;
pub mod metrics;
pub mod oneoff;
pub mod secrets;
pub use jetmon_engine::sla;
pub mod stats;
pub mod tenants;
pub use jetmon_store as store;
pub mod verify;
