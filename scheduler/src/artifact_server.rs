//! The artifact server: serves the `mesoflow-executor` binary to Mesos agents, which fetch it
//! through the executor's `CommandInfo.URI`.
//!
//! The binary is read once at start, so every agent gets the same bytes however the file on
//! disk changes later, and its validators (an `ETag` from the content, `Last-Modified` from the
//! file) let the agents' fetcher cache keep it: a conditional request is answered with
//! `304 Not Modified`. `Content-Length` is always set (HEAD too), so a truncated download is
//! detected by the fetcher.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use mesoflow_dataplane::checksum::fnv1a64;
use tokio_util::sync::CancellationToken;

/// The path the executor binary is served at.
pub const EXECUTOR_PATH: &str = "/artifacts/mesoflow-executor";

/// Why the artifact server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The binary cannot be read.
    #[error("cannot read the executor binary {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr} for the artifact server: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

struct Artifact {
    content: Bytes,
    etag: HeaderValue,
    last_modified: Option<HeaderValue>,
    fetches: AtomicU64,
}

/// A running artifact server.
pub struct ArtifactServer {
    addr: SocketAddr,
    artifact: Arc<Artifact>,
    stop: CancellationToken,
}

impl ArtifactServer {
    /// Reads `binary` and serves it on `bind` (port 0: any free port).
    pub async fn start(binary: &Path, bind: SocketAddr) -> Result<Self, ArtifactError> {
        let content = tokio::fs::read(binary)
            .await
            .map_err(|source| ArtifactError::Read {
                path: binary.display().to_string(),
                source,
            })?;
        let modified = std::fs::metadata(binary)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| HeaderValue::from_str(&http_date(t)).ok());
        let etag = HeaderValue::from_str(&format!(
            "\"{:016x}-{:x}\"",
            fnv1a64(&content),
            content.len()
        ))
        .expect("hex digits are a valid header value");
        let artifact = Arc::new(Artifact {
            content: Bytes::from(content),
            etag,
            last_modified: modified,
            fetches: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| ArtifactError::Bind { addr: bind, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ArtifactError::Bind { addr: bind, source })?;
        let router = Router::new()
            .route(EXECUTOR_PATH, get(serve_executor))
            .with_state(artifact.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the artifact server stopped");
            }
        });
        tracing::info!(%addr, bytes = artifact.content.len(), "artifact server serving the executor");
        Ok(Self {
            addr,
            artifact,
            stop,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of the executor binary, with `host` as agents should reach this machine.
    pub fn executor_url(&self, host: &str) -> String {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        format!("http://{host}:{}{EXECUTOR_PATH}", self.addr.port())
    }

    /// Complete downloads served so far (conditional hits not counted).
    pub fn fetches(&self) -> u64 {
        self.artifact.fetches.load(Ordering::Relaxed)
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for ArtifactServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve_executor(
    State(artifact): State<Arc<Artifact>>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::ETAG, artifact.etag.clone());
    if let Some(modified) = &artifact.last_modified {
        response_headers.insert(header::LAST_MODIFIED, modified.clone());
    }
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == "*" || t.trim() == artifact.etag)
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, response_headers).into_response();
    }
    response_headers.insert(header::CONTENT_LENGTH, artifact.content.len().into());
    if method == axum::http::Method::HEAD {
        return (StatusCode::OK, response_headers).into_response();
    }
    artifact.fetches.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("executor binary fetched");
    (
        StatusCode::OK,
        response_headers,
        Body::from(artifact.content.clone()),
    )
        .into_response()
}

/// An HTTP date (RFC 9110 IMF-fixdate) of a time.
fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // 1970-01-01 was a Thursday.
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = WEEKDAYS[(days % 7) as usize];
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{weekday}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdates() {
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_256_000);
        // 2026-12-03T00:00:00Z was a Thursday.
        assert_eq!(http_date(t), "Thu, 03 Dec 2026 00:00:00 GMT");
    }

    #[tokio::test]
    async fn serves_the_binary_with_validators_and_answers_conditional_requests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesoflow-executor");
        std::fs::write(&path, b"#!/bin/sh\necho hi\n").unwrap();
        let server = ArtifactServer::start(&path, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = server.executor_url("127.0.0.1");
        let client = reqwest::Client::new();
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "18");
        let etag = r.headers()[header::ETAG].clone();
        assert!(r.headers().contains_key(header::LAST_MODIFIED));
        assert_eq!(&r.bytes().await.unwrap()[..], b"#!/bin/sh\necho hi\n");
        let r = client
            .get(&url)
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        let r = client.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "18");
        assert_eq!(server.fetches(), 1);
        let r = client
            .get(format!("http://{}/other", server.local_addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}
