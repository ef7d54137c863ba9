//! The mesoflow engine: DataStream API, operators, event time and windows, keyed state, exchanges
//! inside a process and the QUIC shuffle between processes.

pub mod generators;
pub mod shuffle;
