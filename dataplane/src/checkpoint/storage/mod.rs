//! Where checkpoints and savepoints live: one interface over a local directory (`file://` or a
//! plain absolute path) and HDFS (`hdfs://namenode:port/path`).
//!
//! Every write is atomic: the data goes to a temporary name in the same directory and is then
//! renamed, so a reader never sees half a file, and a checkpoint whose `_metadata` exists is whole.
//! The interface is asynchronous: uploads run off the subtask threads, on the process's runtime.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

/// A storage operation in flight.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A failed storage operation, naming the URI it concerned.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URI is not one this build can store to.
    #[error("unsupported checkpoint storage URI '{uri}': {why}")]
    Unsupported {
        /// The URI.
        uri: String,
        /// What is wrong with it.
        why: String,
    },
    /// The file does not exist.
    #[error("{uri} does not exist")]
    NotFound {
        /// The file.
        uri: String,
    },
    /// Any other failure (I/O, the NameNode unreachable, a timeout).
    #[error("{op} {uri}: {message}")]
    Io {
        /// What was being done: "write", "read", ...
        op: &'static str,
        /// The file or directory.
        uri: String,
        /// The cause.
        message: String,
    },
}

/// A directory tree of checkpoint files. Paths are relative to the storage's root and use `/`.
pub trait CheckpointStorage: Send + Sync + Debug {
    /// The root, as a URI.
    fn uri(&self) -> &str;
    /// Writes `data` to `path` atomically (temporary name, then rename), creating parent
    /// directories; an existing file is replaced.
    fn write<'a>(&'a self, path: &'a str, data: Bytes) -> StorageFuture<'a, ()>;
    /// Reads the whole file.
    fn read<'a>(&'a self, path: &'a str) -> StorageFuture<'a, Bytes>;
    /// Deletes a file; a missing file is not an error.
    fn delete<'a>(&'a self, path: &'a str) -> StorageFuture<'a, ()>;
    /// Deletes a directory and everything under it; a missing directory is not an error.
    fn delete_dir<'a>(&'a self, path: &'a str) -> StorageFuture<'a, ()>;
    /// Names of the entries of a directory (files and directories), sorted; empty when the
    /// directory does not exist.
    fn list<'a>(&'a self, dir: &'a str) -> StorageFuture<'a, Vec<String>>;
}

/// Opens the storage rooted at `uri`: `file:///abs/dir`, `/abs/dir`, or
/// `hdfs://host:port/dir`.
pub fn open(uri: &str) -> Result<Arc<dyn CheckpointStorage>, StorageError> {
    let _ = uri;
    Err(StorageError::Unsupported {
        uri: uri.to_owned(),
        why: "not implemented yet".into(),
    })
}
