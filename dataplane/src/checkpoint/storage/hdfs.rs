//! Checkpoint storage on HDFS, through the pure-Rust `hdfs-native` client (no JVM, no libhdfs).
//!
//! A write creates a hidden temporary file next to the target, writes and closes it (closing
//! completes the last block on the NameNode), then renames it over the target with overwrite,
//! which the NameNode performs atomically.
//!
//! Every operation is bounded by a timeout: the client's own retries against an unreachable
//! NameNode are kept short, and whatever is still pending when the timeout expires is abandoned
//! with an error that names the NameNode, so a checkpoint fails rather than hangs.

use std::time::Duration;

use bytes::Bytes;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use tokio::sync::OnceCell;

use super::{
    CheckpointStorage, StorageError, StorageFuture, file_components, is_temp_name,
    relative_components, temp_name,
};

/// How long one storage operation may take unless set with [`HdfsStorage::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts the client makes against a NameNode it cannot reach before reporting the cause;
/// checkpoints are retried at a higher level (the next checkpoint), so a short failure beats a
/// long silence.
const NAMENODE_ATTEMPTS: &str = "3";
/// First pause between those attempts, doubled each time.
const NAMENODE_RETRY_BASE_MILLIS: &str = "200";
/// Longest pause between those attempts.
const NAMENODE_RETRY_MAX_MILLIS: &str = "1000";

/// A directory tree under `hdfs://host:port/dir`.
#[derive(Debug)]
pub struct HdfsStorage {
    uri: String,
    /// `host:port` of the NameNode (or a nameservice name taken from the Hadoop configuration).
    authority: String,
    /// Absolute HDFS path of the root, `/` for the file system root.
    base: String,
    timeout: Duration,
    /// Built by the first operation, so opening needs no runtime and the client's background
    /// tasks run on the runtime that uses the storage (which must outlive it).
    client: OnceCell<Client>,
}

impl HdfsStorage {
    /// Storage at `hdfs://host:port/dir` with [`DEFAULT_TIMEOUT`] per operation.
    pub fn new(uri: &str) -> Result<Self, StorageError> {
        Self::with_timeout(uri, DEFAULT_TIMEOUT)
    }

    /// Storage at `hdfs://host:port/dir` whose operations each fail after `timeout`.
    pub fn with_timeout(uri: &str, timeout: Duration) -> Result<Self, StorageError> {
        let unsupported = |why: &str| StorageError::Unsupported {
            uri: uri.to_owned(),
            why: why.to_owned(),
        };
        let Some(rest) = uri.strip_prefix("hdfs://") else {
            return Err(unsupported("not an hdfs:// URI"));
        };
        if rest.contains(['?', '#', '@']) {
            return Err(unsupported(
                "queries, fragments and user info are not supported in an hdfs:// URI",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let host = match authority.rsplit_once(':') {
            Some((host, port)) => {
                if port.parse::<u16>().is_err() {
                    return Err(unsupported(&format!("'{port}' is not a port number")));
                }
                host
            }
            None => authority,
        };
        if host.is_empty() {
            return Err(unsupported(
                "no NameNode host; expected hdfs://host:port/dir",
            ));
        }
        let parts = relative_components(path.trim_start_matches('/')).map_err(|why| {
            StorageError::Unsupported {
                uri: uri.to_owned(),
                why,
            }
        })?;
        let base = format!("/{}", parts.join("/"));
        let shown_base = if parts.is_empty() { "" } else { base.as_str() };
        Ok(Self {
            uri: format!("hdfs://{authority}{shown_base}"),
            authority: authority.to_owned(),
            base,
            timeout,
            client: OnceCell::new(),
        })
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn client(&self) -> Result<&Client, HdfsError> {
        self.client
            .get_or_try_init(|| async {
                let socket_timeout = self.timeout.as_millis().max(1).to_string();
                ClientBuilder::new()
                    .with_url(format!("hdfs://{}", self.authority))
                    .with_config([
                        ("dfs.client.failover.max.attempts", NAMENODE_ATTEMPTS),
                        (
                            "dfs.client.failover.sleep.base.millis",
                            NAMENODE_RETRY_BASE_MILLIS,
                        ),
                        (
                            "dfs.client.failover.sleep.max.millis",
                            NAMENODE_RETRY_MAX_MILLIS,
                        ),
                        ("dfs.client.socket-timeout", socket_timeout.as_str()),
                    ])
                    .build()
            })
            .await
    }

    /// The HDFS path of a checked relative path.
    fn full_path(&self, parts: &[&str]) -> String {
        if parts.is_empty() {
            return self.base.clone();
        }
        let mut full = self.base.trim_end_matches('/').to_owned();
        for part in parts {
            full.push('/');
            full.push_str(part);
        }
        full
    }

    fn display(&self, path: &str) -> String {
        let path = path.trim_matches('/');
        if path.is_empty() {
            self.uri.clone()
        } else {
            format!("{}/{path}", self.uri.trim_end_matches('/'))
        }
    }

    fn checked<'p>(
        &self,
        op: &'static str,
        path: &'p str,
        file: bool,
    ) -> Result<Vec<&'p str>, StorageError> {
        let parts = if file {
            file_components(path)
        } else {
            relative_components(path)
        };
        parts.map_err(|message| StorageError::Io {
            op,
            uri: self.display(path),
            message,
        })
    }

    /// Runs `work` within the timeout and turns its failure into a [`StorageError`].
    async fn bounded<T>(
        &self,
        op: &'static str,
        path: &str,
        work: impl Future<Output = Result<T, HdfsError>>,
    ) -> Result<T, StorageError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(HdfsError::FileNotFound(_))) => Err(StorageError::NotFound {
                uri: self.display(path),
            }),
            Ok(Err(e)) => Err(StorageError::Io {
                op,
                uri: self.display(path),
                message: self.describe(&e),
            }),
            Err(_) => Err(StorageError::Io {
                op,
                uri: self.display(path),
                message: format!(
                    "no answer within {:?}: NameNode {} unreachable or not answering",
                    self.timeout, self.authority
                ),
            }),
        }
    }

    fn describe(&self, e: &HdfsError) -> String {
        use std::io::ErrorKind::*;
        match e {
            HdfsError::IOError(io)
                if matches!(
                    io.kind(),
                    ConnectionRefused
                        | ConnectionReset
                        | ConnectionAborted
                        | NotConnected
                        | TimedOut
                        | AddrNotAvailable
                        | HostUnreachable
                        | NetworkUnreachable
                        | UnexpectedEof
                ) =>
            {
                format!("NameNode {} unreachable: {io}", self.authority)
            }
            e => e.to_string(),
        }
    }
}

/// Whether an error means the path is not there (the NameNode reports some of these as a
/// remote `FileNotFoundException` rather than an empty answer).
fn is_not_found(e: &HdfsError) -> bool {
    match e {
        HdfsError::FileNotFound(_) => true,
        HdfsError::RPCError(class, _) => class == "java.io.FileNotFoundException",
        _ => false,
    }
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl CheckpointStorage for HdfsStorage {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn write<'a>(&'a self, path: &'a str, data: Bytes) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            let parts = self.checked("write", path, true)?;
            let target = self.full_path(&parts);
            let (dir, name) = target.rsplit_once('/').unwrap_or(("", &target));
            let tmp = format!("{dir}/{}", temp_name(name));
            self.bounded("write", path, async {
                let client = self.client().await?;
                let options = WriteOptions::default().overwrite(true).create_parent(true);
                let mut writer = client.create(&tmp, options).await?;
                let written = async {
                    writer.write_bytes(data).await?;
                    writer.close().await?;
                    client.rename(&tmp, &target, true).await
                }
                .await;
                if let Err(e) = written {
                    if let Err(cleanup) = client.delete(&tmp, false).await {
                        tracing::warn!(%tmp, error = %cleanup, "could not remove a temporary checkpoint file");
                    }
                    return Err(e);
                }
                Ok(())
            })
            .await
        })
    }

    fn read<'a>(&'a self, path: &'a str) -> StorageFuture<'a, Bytes> {
        Box::pin(async move {
            let parts = self.checked("read", path, true)?;
            let full = self.full_path(&parts);
            self.bounded("read", path, async {
                let client = self.client().await?;
                let reader = match client.read(&full).await {
                    Err(e) if is_not_found(&e) => return Err(HdfsError::FileNotFound(full)),
                    other => other?,
                };
                let len = reader.file_length();
                if len == 0 {
                    return Ok(Bytes::new());
                }
                reader.read_range(0, len).await
            })
            .await
        })
    }

    fn delete<'a>(&'a self, path: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            let parts = self.checked("delete", path, true)?;
            let full = self.full_path(&parts);
            self.bounded("delete", path, async {
                match self.client().await?.delete(&full, false).await {
                    Err(e) if is_not_found(&e) => Ok(()),
                    other => other.map(|_| ()),
                }
            })
            .await
        })
    }

    fn delete_dir<'a>(&'a self, path: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            // Deleting the root would take every checkpoint of the job with it.
            let parts = self.checked("delete_dir", path, true)?;
            let full = self.full_path(&parts);
            self.bounded("delete_dir", path, async {
                match self.client().await?.delete(&full, true).await {
                    Err(e) if is_not_found(&e) => Ok(()),
                    other => other.map(|_| ()),
                }
            })
            .await
        })
    }

    fn list<'a>(&'a self, dir: &'a str) -> StorageFuture<'a, Vec<String>> {
        Box::pin(async move {
            let parts = self.checked("list", dir, false)?;
            let full = self.full_path(&parts);
            self.bounded("list", dir, async {
                let statuses = match self.client().await?.list_status(&full, false).await {
                    Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                    other => other?,
                };
                let mut names: Vec<String> = statuses
                    .iter()
                    .map(|s| name_of(&s.path))
                    .filter(|n| !n.is_empty() && !is_temp_name(n))
                    .map(str::to_owned)
                    .collect();
                names.sort();
                Ok(names)
            })
            .await
        })
    }
}
