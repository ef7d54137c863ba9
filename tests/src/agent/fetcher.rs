//! The agent's fetcher: turns `CommandInfo.URI`s into files in an executor's sandbox.
//!
//! It follows the Mesos 1.11 fetcher rule by rule, because schedulers written against this test
//! agent must work unchanged on a real one: the sandbox name is the URI basename (query string
//! included) unless `output_file` says otherwise; `executable` wins over `extract`; archives are
//! unpacked into the sandbox root; `cache` downloads once per (user, URI) into the cache
//! directory and, for archives, only the extracted tree lands in the sandbox. `file://` and bare
//! absolute paths are copied, `http://` is downloaded (redirects followed, final status must be
//! 200), other schemes go through `hadoop fs -copyToLocal`. Any failure aborts the whole fetch.
//! Archives are unpacked with the system `tar`/`unzip`/`gzip` where Mesos links libarchive.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// One URI to fetch, as in `CommandInfo.URI` (defaults applied: `extract` is true unless set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUri {
    pub value: String,
    pub executable: bool,
    pub extract: bool,
    pub cache: bool,
    pub output_file: Option<String>,
}

impl FetchUri {
    /// A URI with the proto defaults (`extract = true`, the rest off).
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            executable: false,
            extract: true,
            cache: false,
            output_file: None,
        }
    }
}

/// Why a fetch failed; the message names the URI and says what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("URI '{0}' contains a backslash, quote or NUL, which the fetcher refuses")]
    IllegalCharacter(String),
    #[error("Malformed URI (missing path): '{0}'")]
    MissingPath(String),
    #[error("output_file '{0}' must be a relative path inside the sandbox")]
    AbsoluteOutputFile(String),
    #[error("URI '{0}' is a relative path and the agent has no --frameworks_home to resolve it")]
    NoFrameworksHome(String),
    #[error("file URI '{0}' must name an absolute path")]
    RelativeFileUri(String),
    #[error("failed to copy '{uri}' into the sandbox: {source}")]
    Copy {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to download '{uri}': {message}")]
    Download { uri: String, message: String },
    #[error("download of '{uri}' ended with HTTP status {status}, the fetcher needs 200")]
    HttpStatus { uri: String, status: u16 },
    #[error("cannot fetch '{uri}': {message}")]
    Scheme { uri: String, message: String },
    #[error("failed to extract '{path}': {message}")]
    Extract { path: String, message: String },
    #[error("sandbox I/O on '{path}' failed: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Agent-wide fetcher settings and the download cache.
#[derive(Debug)]
pub struct Fetcher {
    cache_dir: PathBuf,
    frameworks_home: Option<PathBuf>,
    http: reqwest::Client,
    /// (user, uri) -> cached file. Entries are never refreshed, as in Mesos.
    cache: Mutex<HashMap<(String, String), PathBuf>>,
    /// Hard-link cached files into sandboxes instead of copying them (see
    /// [`Fetcher::link_cached_files`]).
    link_cached: bool,
}

/// Archive kinds the fetcher recognises by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archive {
    Tar,
    Zip,
    Gzip,
}

fn archive_kind(name: &str) -> Option<Archive> {
    const TARS: [&str; 7] = [
        ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz",
    ];
    if TARS.iter().any(|s| name.ends_with(s)) {
        Some(Archive::Tar)
    } else if name.ends_with(".zip") {
        Some(Archive::Zip)
    } else if name.ends_with(".gz") {
        Some(Archive::Gzip)
    } else {
        None
    }
}

/// The URI's basename: everything after the last `/` of the part after `scheme://`, query
/// string included (Mesos does not strip it).
pub fn uri_basename(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.rsplit('/').next().unwrap_or(rest)
}

enum Source<'a> {
    Local(PathBuf),
    Http(&'a str),
    Hadoop(&'a str),
}

impl Fetcher {
    /// A fetcher caching into `cache_dir`; `frameworks_home` resolves bare relative URIs.
    pub fn new(cache_dir: PathBuf, frameworks_home: Option<PathBuf>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            cache_dir,
            frameworks_home,
            http,
            cache: Mutex::new(HashMap::new()),
            link_cached: false,
        }
    }

    /// Hard-links a cached file into the sandbox instead of copying it (Mesos copies). For
    /// runs with hundreds of executors on one disk, where a copy of a 50 MB binary per sandbox
    /// would fill it; falls back to a copy where linking fails.
    pub fn link_cached_files(mut self, link: bool) -> Self {
        self.link_cached = link;
        self
    }

    /// Fetches every URI in order into `sandbox`; the first failure aborts.
    pub async fn fetch_all(
        &self,
        uris: &[FetchUri],
        sandbox: &Path,
        user: &str,
    ) -> Result<(), FetchError> {
        for uri in uris {
            self.fetch_one(uri, sandbox, user).await?;
        }
        Ok(())
    }

    fn classify<'a>(&self, uri: &'a str) -> Result<Source<'a>, FetchError> {
        match uri.split_once("://") {
            None => {
                let path = Path::new(uri);
                if path.is_absolute() {
                    Ok(Source::Local(path.to_path_buf()))
                } else {
                    match &self.frameworks_home {
                        Some(home) => Ok(Source::Local(home.join(path))),
                        None => Err(FetchError::NoFrameworksHome(uri.to_string())),
                    }
                }
            }
            Some((scheme, rest)) => {
                // A scheme URI needs a path after the host.
                if !rest.contains('/') {
                    return Err(FetchError::MissingPath(uri.to_string()));
                }
                match scheme {
                    "file" => {
                        let path = Path::new(rest);
                        if !path.is_absolute() {
                            return Err(FetchError::RelativeFileUri(uri.to_string()));
                        }
                        Ok(Source::Local(path.to_path_buf()))
                    }
                    "http" | "https" | "ftp" | "ftps" => Ok(Source::Http(uri)),
                    _ => Ok(Source::Hadoop(uri)),
                }
            }
        }
    }

    async fn fetch_one(
        &self,
        uri: &FetchUri,
        sandbox: &Path,
        user: &str,
    ) -> Result<(), FetchError> {
        let value = uri.value.trim_start();
        if value.contains(['\\', '\'', '\0']) {
            return Err(FetchError::IllegalCharacter(value.to_string()));
        }
        let source = self.classify(value)?;
        let basename = uri_basename(value).to_string();
        let relative = match &uri.output_file {
            Some(out) if Path::new(out).is_absolute() => {
                return Err(FetchError::AbsoluteOutputFile(out.clone()));
            }
            Some(out) if !out.is_empty() => out.clone(),
            _ => basename.clone(),
        };
        let destination = sandbox.join(&relative);
        if let Some(parent) = destination.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| io(parent, source))?;
        }
        let dest_name = destination
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        if uri.cache {
            if let Some(cached) = self.cached_copy(value, user, &source, &basename).await {
                // Through the cache, archive detection uses the URI's name and only the
                // extracted tree lands in the sandbox.
                if !uri.executable
                    && uri.extract
                    && let Some(kind) = archive_kind(&basename)
                {
                    return extract(kind, &cached, sandbox, &destination).await;
                }
                if !(self.link_cached && tokio::fs::hard_link(&cached, &destination).await.is_ok())
                {
                    copy_file(value, &cached, &destination).await?;
                }
                return finish(uri, &destination, &dest_name, sandbox).await;
            }
            tracing::warn!(uri = value, "fetcher cache unusable, downloading directly");
        }
        self.download(value, &source, &destination).await?;
        finish(uri, &destination, &dest_name, sandbox).await
    }

    /// Returns the cached file for (user, uri), downloading it first if needed; `None` means
    /// "fall back to a direct download" (unknown size or a failed cache download).
    async fn cached_copy(
        &self,
        value: &str,
        user: &str,
        source: &Source<'_>,
        basename: &str,
    ) -> Option<PathBuf> {
        let key = (user.to_string(), value.to_string());
        if let Some(found) = self.cache.lock().ok()?.get(&key).cloned() {
            return Some(found);
        }
        // The cache needs the size up front.
        let size_known = match source {
            Source::Local(path) => tokio::fs::metadata(path).await.is_ok_and(|m| m.len() > 0),
            Source::Http(url) => self
                .http
                .head(*url)
                .send()
                .await
                .ok()
                // The header, not the (empty) body of a HEAD response.
                .and_then(|r| {
                    r.headers()
                        .get(reqwest::header::CONTENT_LENGTH)?
                        .to_str()
                        .ok()?
                        .parse::<u64>()
                        .ok()
                })
                .is_some_and(|n| n > 0),
            Source::Hadoop(_) => false,
        };
        if !size_known {
            return None;
        }
        tokio::fs::create_dir_all(&self.cache_dir).await.ok()?;
        let safe: String = basename
            .chars()
            .map(|c| if c == '/' { '_' } else { c })
            .collect();
        // A name of its own: agents sharing this cache may fetch the same URI at once, and two
        // downloads must never write (or run) the same file.
        let path = self
            .cache_dir
            .join(format!("c{}-{safe}", uuid::Uuid::new_v4().simple()));
        self.download(value, source, &path).await.ok()?;
        let mut cache = self.cache.lock().ok()?;
        Some(cache.entry(key).or_insert(path).clone())
    }

    async fn download(
        &self,
        value: &str,
        source: &Source<'_>,
        destination: &Path,
    ) -> Result<(), FetchError> {
        match source {
            Source::Local(path) => copy_file(value, path, destination).await,
            Source::Http(url) => {
                if url.starts_with("https://") || url.starts_with("ftp") {
                    return Err(FetchError::Scheme {
                        uri: value.to_string(),
                        message: "the test agent downloads plain http:// only (no TLS or FTP client is built in)".into(),
                    });
                }
                let response =
                    self.http
                        .get(*url)
                        .send()
                        .await
                        .map_err(|e| FetchError::Download {
                            uri: value.to_string(),
                            message: e.to_string(),
                        })?;
                if response.status().as_u16() != 200 {
                    return Err(FetchError::HttpStatus {
                        uri: value.to_string(),
                        status: response.status().as_u16(),
                    });
                }
                let mut file = tokio::fs::File::create(destination)
                    .await
                    .map_err(|source| io(destination, source))?;
                let mut body = response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| FetchError::Download {
                        uri: value.to_string(),
                        message: e.to_string(),
                    })?;
                    file.write_all(&chunk)
                        .await
                        .map_err(|source| io(destination, source))?;
                }
                file.flush()
                    .await
                    .map_err(|source| io(destination, source))?;
                Ok(())
            }
            Source::Hadoop(uri) => {
                let status = tokio::process::Command::new("hadoop")
                    .args(["fs", "-copyToLocal"])
                    .arg(uri)
                    .arg(destination)
                    .status()
                    .await
                    .map_err(|e| FetchError::Scheme {
                        uri: value.to_string(),
                        message: format!("no Hadoop client to run 'hadoop fs -copyToLocal': {e}"),
                    })?;
                if status.success() {
                    Ok(())
                } else {
                    Err(FetchError::Scheme {
                        uri: value.to_string(),
                        message: format!("'hadoop fs -copyToLocal' failed with {status}"),
                    })
                }
            }
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> FetchError {
    FetchError::Io {
        path: path.display().to_string(),
        source,
    }
}

async fn copy_file(uri: &str, from: &Path, to: &Path) -> Result<(), FetchError> {
    tokio::fs::copy(from, to)
        .await
        .map(|_| ())
        .map_err(|source| FetchError::Copy {
            uri: uri.to_string(),
            source,
        })
}

/// Post-processing of a direct (or cache-copied) file: chmod or extract.
async fn finish(
    uri: &FetchUri,
    destination: &Path,
    dest_name: &str,
    sandbox: &Path,
) -> Result<(), FetchError> {
    if uri.executable {
        tokio::fs::set_permissions(destination, std::fs::Permissions::from_mode(0o755))
            .await
            .map_err(|source| io(destination, source))?;
        return Ok(());
    }
    if uri.extract {
        match archive_kind(dest_name) {
            Some(kind) => return extract(kind, destination, sandbox, destination).await,
            None => tracing::debug!(file = dest_name, "not an archive, copied as is"),
        }
    }
    Ok(())
}

/// Unpacks `archive` into the sandbox root (a bare `.gz` becomes `<name without .gz>`).
async fn extract(
    kind: Archive,
    archive: &Path,
    sandbox: &Path,
    destination: &Path,
) -> Result<(), FetchError> {
    let fail = |message: String| FetchError::Extract {
        path: archive.display().to_string(),
        message,
    };
    let output = match kind {
        Archive::Tar => {
            tokio::process::Command::new("tar")
                .arg("-C")
                .arg(sandbox)
                .arg("-xf")
                .arg(archive)
                .output()
                .await
        }
        Archive::Zip => {
            tokio::process::Command::new("unzip")
                .args(["-o", "-q"])
                .arg(archive)
                .arg("-d")
                .arg(sandbox)
                .output()
                .await
        }
        Archive::Gzip => {
            let name = destination.to_string_lossy();
            let target = PathBuf::from(name.strip_suffix(".gz").unwrap_or(&name));
            let out = tokio::process::Command::new("gzip")
                .args(["-d", "-c"])
                .arg(archive)
                .output()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !out.status.success() {
                return Err(fail(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            return tokio::fs::write(&target, &out.stdout)
                .await
                .map_err(|source| io(&target, source));
        }
    }
    .map_err(|e| fail(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basename_keeps_the_query_string() {
        assert_eq!(uri_basename("http://h:80/a/app.tgz?sig=x"), "app.tgz?sig=x");
        assert_eq!(uri_basename("/opt/bin/exec"), "exec");
        assert_eq!(archive_kind("app.tgz?sig=x"), None);
        assert_eq!(archive_kind("app.tar.gz"), Some(Archive::Tar));
        assert_eq!(archive_kind("app.zip"), Some(Archive::Zip));
        assert_eq!(archive_kind("data.gz"), Some(Archive::Gzip));
    }

    #[tokio::test]
    async fn rejects_malformed_uris_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fetcher::new(dir.path().join("cache"), None);
        let sb = dir.path().join("sb");
        let err = f
            .fetch_all(&[FetchUri::new("http://host")], &sb, "u")
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::MissingPath(_)), "{err}");
        let err = f
            .fetch_all(&[FetchUri::new("rel/x")], &sb, "u")
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::NoFrameworksHome(_)), "{err}");
        let err = f
            .fetch_all(&[FetchUri::new("/a'b")], &sb, "u")
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::IllegalCharacter(_)), "{err}");
        let mut abs = FetchUri::new("/etc/hostname");
        abs.output_file = Some("/tmp/x".into());
        let err = f.fetch_all(&[abs], &sb, "u").await.unwrap_err();
        assert!(matches!(err, FetchError::AbsoluteOutputFile(_)), "{err}");
    }

    #[tokio::test]
    async fn copies_local_files_with_executable_and_output_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("tool.sh");
        std::fs::write(&src, b"#!/bin/sh\necho hi\n").unwrap();
        let sb = dir.path().join("sb");
        std::fs::create_dir_all(&sb).unwrap();
        let f = Fetcher::new(dir.path().join("cache"), None);
        let mut exec = FetchUri::new(format!("file://{}", src.display()));
        exec.executable = true;
        exec.output_file = Some("bin/run".into());
        f.fetch_all(&[exec, FetchUri::new(src.display().to_string())], &sb, "u")
            .await
            .unwrap();
        let mode = std::fs::metadata(sb.join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read(sb.join("tool.sh")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
    }

    #[tokio::test]
    async fn extracts_tar_gz_into_the_sandbox_root_and_cache_keeps_the_archive_out() {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        std::fs::create_dir_all(content.join("sub")).unwrap();
        std::fs::write(content.join("sub/f.txt"), b"payload").unwrap();
        let archive = dir.path().join("pkg.tar.gz");
        let st = std::process::Command::new("tar")
            .arg("-C")
            .arg(&content)
            .arg("-czf")
            .arg(&archive)
            .arg("sub")
            .status()
            .unwrap();
        assert!(st.success());
        let f = Fetcher::new(dir.path().join("cache"), None);

        let direct = dir.path().join("direct");
        let mut uri = FetchUri::new(archive.display().to_string());
        uri.output_file = Some("nested/dir/pkg.tar.gz".into());
        f.fetch_all(&[uri.clone()], &direct, "u").await.unwrap();
        assert_eq!(std::fs::read(direct.join("sub/f.txt")).unwrap(), b"payload");
        assert!(direct.join("nested/dir/pkg.tar.gz").exists());

        let cached = dir.path().join("cached");
        uri.cache = true;
        uri.output_file = None;
        f.fetch_all(&[uri], &cached, "u").await.unwrap();
        assert_eq!(std::fs::read(cached.join("sub/f.txt")).unwrap(), b"payload");
        assert!(!cached.join("pkg.tar.gz").exists());
    }

    #[tokio::test]
    async fn no_extract_keeps_the_archive_file() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("x.zip");
        std::fs::write(&archive, b"not really a zip").unwrap();
        let f = Fetcher::new(dir.path().join("cache"), None);
        let sb = dir.path().join("sb");
        let mut uri = FetchUri::new(archive.display().to_string());
        uri.extract = false;
        f.fetch_all(&[uri.clone()], &sb, "u").await.unwrap();
        assert_eq!(
            std::fs::read(sb.join("x.zip")).unwrap(),
            b"not really a zip"
        );
        uri.extract = true;
        let err = f.fetch_all(&[uri], &sb, "u").await.unwrap_err();
        assert!(matches!(err, FetchError::Extract { .. }), "{err}");
    }
}
