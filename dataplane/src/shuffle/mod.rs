//! The shuffle between executors: rkyv record batches over QUIC with mutual TLS.
