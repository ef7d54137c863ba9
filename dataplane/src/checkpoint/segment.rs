//! The stored form of one piece of state: a checksummed, zstd-compressed frame.
