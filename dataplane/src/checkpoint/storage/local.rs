//! Checkpoint storage in a local (or locally mounted) directory.
//!
//! Writes are made durable before they become visible: the data goes to a hidden temporary file
//! in the target's directory, the file is fsynced, renamed over the target (atomic on POSIX
//! file systems), and the directory is fsynced so the rename itself survives a crash. File
//! system calls block, so each operation runs on tokio's blocking pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{
    CheckpointStorage, StorageError, StorageFuture, file_components, is_temp_name,
    relative_components, temp_name,
};

/// A directory tree under an absolute root.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    uri: String,
}

impl LocalStorage {
    /// Storage rooted at the absolute directory `root` (created by the first write).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root: PathBuf = root.into();
        let shown = root.display().to_string();
        if !root.is_absolute() {
            return Err(StorageError::Unsupported {
                uri: shown,
                why: "a local checkpoint directory must be an absolute path".into(),
            });
        }
        let trimmed = shown.trim_end_matches('/');
        let uri = format!("file://{}", if trimmed.is_empty() { "/" } else { trimmed });
        Ok(Self { root, uri })
    }

    /// Storage for `file:///abs/dir`, `file://localhost/abs/dir` or a plain `/abs/dir`.
    /// The path is taken literally (no percent-decoding).
    pub fn from_uri(uri: &str) -> Result<Self, StorageError> {
        let unsupported = |why: &str| StorageError::Unsupported {
            uri: uri.to_owned(),
            why: why.to_owned(),
        };
        let path = if let Some(rest) = uri.strip_prefix("file://") {
            if rest.starts_with('/') {
                rest
            } else if let Some(rest) = rest.strip_prefix("localhost/") {
                // `rest` lost its leading slash with the prefix; the path is absolute.
                &uri[uri.len() - rest.len() - 1..]
            } else {
                return Err(unsupported(
                    "a file URI with a host; use file:///abs/dir (no host) for a local directory",
                ));
            }
        } else if uri.starts_with("file:") {
            return Err(unsupported("not an absolute file URI; use file:///abs/dir"));
        } else {
            uri
        };
        if !path.starts_with('/') {
            return Err(unsupported(
                "a local checkpoint directory must be an absolute path",
            ));
        }
        Self::new(path)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local path of `path`, checked to stay under the root.
    fn resolve(&self, op: &'static str, path: &str, file: bool) -> Result<PathBuf, StorageError> {
        let parts = if file {
            file_components(path)
        } else {
            relative_components(path)
        }
        .map_err(|message| self.error(op, path, message))?;
        Ok(parts.iter().fold(self.root.clone(), |p, c| p.join(c)))
    }

    fn display(&self, path: &str) -> String {
        let path = path.trim_matches('/');
        if path.is_empty() {
            self.uri.clone()
        } else {
            format!("{}/{path}", self.uri.trim_end_matches('/'))
        }
    }

    fn error(&self, op: &'static str, path: &str, message: impl ToString) -> StorageError {
        StorageError::Io {
            op,
            uri: self.display(path),
            message: message.to_string(),
        }
    }

    /// Runs blocking file system work off the async threads, mapping its I/O error.
    fn blocking<'a, T: Send + 'static>(
        &'a self,
        op: &'static str,
        path: &'a str,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> StorageFuture<'a, T> {
        Box::pin(async move {
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound && op == "read" => {
                    Err(StorageError::NotFound {
                        uri: self.display(path),
                    })
                }
                Ok(Err(e)) => Err(self.error(op, path, e)),
                Err(e) => Err(self.error(op, path, format!("storage task failed: {e}"))),
            }
        })
    }
}

/// Writes `data` to a temporary sibling of `target`, syncs it and renames it over `target`.
fn write_atomically(target: &Path, data: &[u8]) -> io::Result<()> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(io::Error::other("no parent directory"));
    };
    fs::create_dir_all(dir)?;
    let tmp = dir.join(temp_name(&name.to_string_lossy()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, target)
    })();
    if let Err(e) = written {
        if let Err(cleanup) = fs::remove_file(&tmp)
            && cleanup.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(tmp = %tmp.display(), error = %cleanup, "could not remove a temporary checkpoint file");
        }
        return Err(e);
    }
    // Persist the rename. Best effort: some file systems refuse to fsync a directory.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "directory fsync failed");
    }
    Ok(())
}

fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        match name.into_string() {
            Ok(name) if is_temp_name(&name) => {}
            Ok(name) => names.push(name),
            Err(name) => {
                tracing::warn!(dir = %dir.display(), name = ?name, "skipping a file name that is not UTF-8")
            }
        }
    }
    names.sort();
    Ok(names)
}

impl CheckpointStorage for LocalStorage {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn write<'a>(&'a self, path: &'a str, data: Bytes) -> StorageFuture<'a, ()> {
        let target = match self.resolve("write", path, true) {
            Ok(t) => t,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.blocking("write", path, move || write_atomically(&target, &data))
    }

    fn read<'a>(&'a self, path: &'a str) -> StorageFuture<'a, Bytes> {
        let target = match self.resolve("read", path, true) {
            Ok(t) => t,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.blocking("read", path, move || fs::read(target).map(Bytes::from))
    }

    fn delete<'a>(&'a self, path: &'a str) -> StorageFuture<'a, ()> {
        let target = match self.resolve("delete", path, true) {
            Ok(t) => t,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.blocking("delete", path, move || match fs::remove_file(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
    }

    fn delete_dir<'a>(&'a self, path: &'a str) -> StorageFuture<'a, ()> {
        // Deleting the root would take every checkpoint of the job with it.
        let target = match self.resolve("delete_dir", path, true) {
            Ok(t) => t,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.blocking("delete_dir", path, move || {
            match fs::remove_dir_all(target) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
    }

    fn list<'a>(&'a self, dir: &'a str) -> StorageFuture<'a, Vec<String>> {
        let target = match self.resolve("list", dir, false) {
            Ok(t) => t,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.blocking("list", dir, move || list_dir(&target))
    }
}
