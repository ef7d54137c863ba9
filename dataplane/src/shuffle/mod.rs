//! The shuffle between executors: rkyv record batches over QUIC with mutual TLS.

pub mod batch;
pub mod event;
pub mod frame;
