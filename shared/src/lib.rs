//! What Jetmon's three processes must agree on: the frames they exchange (flatbuffers), the
//! shared-memory ring that carries them between control and the prober, the configuration
//! file, and the stable vocabulary (outcome codes, states, reasons) that is stored and
//! exported. It imports no async runtime and no database: every other crate may depend on it.

pub mod auth;
pub mod check;
pub mod cidr;
pub mod config;
pub mod frames;
pub mod metrics;
pub mod outcome;
pub mod ring;
pub mod safety;
pub mod shutdown;
pub mod state;
pub mod text;
