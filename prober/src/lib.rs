//! The probe engine behind `jetmon-prober`: sans-IO protocol machines (`proto`), and the
//! shards that schedule checks and drive probes on io_uring.

pub mod proto;
