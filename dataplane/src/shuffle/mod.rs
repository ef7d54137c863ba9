//! The shuffle between executors: rkyv record batches over QUIC with mutual TLS.

pub mod batch;
pub mod channel;
pub mod config;
pub mod error;
pub mod event;
pub mod frame;
pub mod outbox;
pub mod tls;
