//! Sans-IO protocol machines: no sockets, no clocks, no runtime. The drivers in `probe`
//! feed them bytes and instants; tests and fuzzers feed them anything.

pub mod chunked;
pub mod content;
pub mod dns;
pub mod http;
pub mod keyword;
pub mod redirect;
pub mod safety;
