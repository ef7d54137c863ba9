//! Checkpoints: the file format of state segments, the storage they are written to, and the
//! per-subtask machinery that snapshots operators when a barrier passes and restores them.

pub mod codec;
pub mod segment;
pub mod storage;
pub mod subtask;
