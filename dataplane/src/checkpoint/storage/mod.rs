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
///
/// Opening does no I/O: a root that does not exist yet is created by the first write, and an
/// unreachable NameNode is reported by the first operation (within [`hdfs::DEFAULT_TIMEOUT`]).
pub fn open(uri: &str) -> Result<Arc<dyn CheckpointStorage>, StorageError> {
    let unsupported = |why: &str| StorageError::Unsupported {
        uri: uri.to_owned(),
        why: why.to_owned(),
    };
    if uri.is_empty() {
        return Err(unsupported(
            "empty; expected file:///abs/dir, /abs/dir or hdfs://host:port/dir",
        ));
    }
    if uri.starts_with("file:") || uri.starts_with('/') {
        return Ok(Arc::new(local::LocalStorage::from_uri(uri)?));
    }
    if uri.starts_with("hdfs://") {
        return Ok(Arc::new(hdfs::HdfsStorage::new(uri)?));
    }
    match uri.split_once("://") {
        Some((scheme, _)) => Err(unsupported(&format!(
            "scheme '{scheme}' is not supported; use file:// (or an absolute path) or hdfs://"
        ))),
        None => Err(unsupported(
            "a relative path; give an absolute path, file:///abs/dir or hdfs://host:port/dir",
        )),
    }
}

/// Marker between a file's name and the random suffix of its temporary name.
const TEMP_MARKER: &str = ".tmp-";

/// The temporary name a write of `name` uses before its rename: hidden (leading dot) and
/// unique, so concurrent writers of the same file do not collide.
fn temp_name(name: &str) -> String {
    format!(".{name}{TEMP_MARKER}{:016x}", rand::random::<u64>())
}

/// Whether `name` is the temporary name of a write in progress (or of one that crashed before
/// its rename); [`CheckpointStorage::list`] leaves such names out.
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    match rest.rfind(TEMP_MARKER) {
        Some(at) => {
            let suffix = &rest[at + TEMP_MARKER.len()..];
            at > 0 && suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// Checks a path relative to a storage root and returns its components. `""` (or `"."`) is
/// the root itself. Absolute paths, `..` components, NUL and backslashes are refused: a path
/// must name something inside the root on every backend.
fn relative_components(path: &str) -> Result<Vec<&str>, String> {
    if path.starts_with('/') {
        return Err(format!(
            "'{path}' is absolute; paths are relative to the storage root"
        ));
    }
    if path.contains('\\') || path.contains('\0') {
        return Err(format!("'{path}' contains a backslash or NUL"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "'{path}' has a '..' component and could leave the root"
                ));
            }
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// Like [`relative_components`], for a path that must name a file (not the root).
fn file_components(path: &str) -> Result<Vec<&str>, String> {
    let parts = relative_components(path)?;
    if parts.is_empty() {
        return Err(format!("'{path}' names the storage root, not a file"));
    }
    Ok(parts)
}

pub mod hdfs;
pub mod local;
#[cfg(test)]
mod suite;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dispatches_on_the_scheme() {
        let local = open("/tmp/mesoflow-open-test").map(|s| s.uri().to_owned());
        assert_eq!(
            local.ok().as_deref(),
            Some("file:///tmp/mesoflow-open-test")
        );
        let local = open("file:///tmp/x/").map(|s| s.uri().to_owned());
        assert_eq!(local.ok().as_deref(), Some("file:///tmp/x"));
        let hdfs = open("hdfs://127.0.0.1:9000/ckpt").map(|s| s.uri().to_owned());
        assert_eq!(hdfs.ok().as_deref(), Some("hdfs://127.0.0.1:9000/ckpt"));
    }

    #[test]
    fn open_refuses_what_it_cannot_store_to() {
        for (uri, hint) in [
            ("", "empty"),
            ("s3://bucket/ckpt", "scheme 's3'"),
            ("ckpt/dir", "relative path"),
            ("file://otherhost/dir", "host"),
            ("file:relative", "absolute"),
            ("hdfs:///no-host", "host"),
        ] {
            match open(uri) {
                Err(e @ StorageError::Unsupported { .. }) => {
                    assert!(e.to_string().contains(hint), "{uri}: {e}")
                }
                other => panic!("{uri}: expected Unsupported, got {other:?}"),
            }
        }
    }

    #[test]
    fn relative_paths_stay_inside_the_root() {
        assert_eq!(relative_components("a/b/c"), Ok(vec!["a", "b", "c"]));
        assert_eq!(relative_components("./a//b/"), Ok(vec!["a", "b"]));
        assert_eq!(relative_components(""), Ok(vec![]));
        for bad in ["../x", "a/../../x", "a/..", "/etc/passwd", "a\\b", "a\0b"] {
            assert!(relative_components(bad).is_err(), "{bad:?}");
        }
        assert!(file_components(".").is_err());
    }

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_name("_metadata");
        assert!(t.starts_with("._metadata.tmp-"));
        assert!(is_temp_name(&t));
        for name in [
            "_metadata",
            ".hidden",
            ".x.tmp-",
            ".x.tmp-zz00000000000000",
            "a.tmp-0123456789abcdef",
        ] {
            assert!(!is_temp_name(name), "{name}");
        }
    }
}
