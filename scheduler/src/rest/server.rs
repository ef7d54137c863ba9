//! The HTTP side of the REST API: routes, bearer-token check, TLS, and errors in Flink's shape
//! (`{"errors": ["..."]}` with a 4xx/5xx status) for every way a request can be wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::api::{
    ErrorBody, JobId, JobIdWithStatus, JobIdsWithStatus, JobRequest, JobsOverview, RestBackend,
    RestError, SavepointTriggerRequest, StopWithSavepointRequest, SubmitResponse, TaskManagersInfo,
    TriggerResponse,
};
use super::metrics;

/// Largest request body accepted (a job request is a few hundred bytes).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// A TLS handshake that takes longer than this is dropped, so a silent client holds nothing.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`RestServer::shutdown`] lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where and how the REST endpoint listens (`rest.*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// `rest.bind-address`: an IP address or host name.
    pub bind_address: String,
    /// `rest.port`; 0 picks a free port.
    pub port: u16,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// When set, the port speaks HTTPS only.
    pub tls: Option<TlsFiles>,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            bind_address: "127.0.0.1".into(),
            port: 8081,
            token: None,
            tls: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// PEM files of the REST port's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken, not local, or not resolvable.
    #[error("cannot listen on {address}:{port} (rest.bind-address, rest.port): {source}")]
    Bind {
        /// `rest.bind-address`.
        address: String,
        /// `rest.port`.
        port: u16,
        /// The socket error.
        source: std::io::Error,
    },
    /// A PEM file is missing or holds no usable certificate or key.
    #[error("cannot read the REST TLS {what} from {path}: {reason}")]
    TlsFile {
        /// "certificate chain" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("the REST TLS certificate and key cannot be used: {0}")]
    Tls(#[from] rustls::Error),
}

/// A running endpoint. Dropping it stops accepting; [`RestServer::shutdown`] also waits.
#[derive(Debug)]
pub struct RestServer {
    addr: SocketAddr,
    tls: bool,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RestServer {
    /// The bound address (the real port when `rest.port` was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting, lets in-flight requests finish (a few seconds at most), and returns.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds the configured address and serves `backend` until the returned handle stops it.
/// Must be called within a tokio runtime.
pub async fn serve(
    config: RestConfig,
    backend: Arc<dyn RestBackend>,
) -> Result<RestServer, ServeError> {
    let bind_error = |source| ServeError::Bind {
        address: config.bind_address.clone(),
        port: config.port,
        source,
    };
    let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let tcp = TcpListener::bind((config.bind_address.as_str(), config.port))
        .await
        .map_err(bind_error)?;
    let addr = tcp.local_addr().map_err(bind_error)?;
    let app = router(backend, config.token.as_deref(), config.max_body_bytes);
    let stop = CancellationToken::new();
    let signal = stop.clone().cancelled_owned();
    let task = match acceptor {
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(tcp, app).with_graceful_shutdown(signal).await {
                tracing::error!(error = %e, "REST endpoint stopped");
            }
        }),
        Some(acceptor) => {
            let listener = TlsListener::start(tcp, addr, acceptor);
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
                {
                    tracing::error!(error = %e, "REST endpoint stopped");
                }
            })
        }
    };
    tracing::info!(%addr, tls = config.tls.is_some(), auth = config.token.is_some(), "REST endpoint listening");
    Ok(RestServer {
        addr,
        tls: config.tls.is_some(),
        stop,
        task: Some(task),
    })
}

/// The routes, with the token check (when `token` is set) in front of all of them.
pub fn router(backend: Arc<dyn RestBackend>, token: Option<&str>, max_body_bytes: usize) -> Router {
    let app = Router::new()
        .route("/overview", get(overview))
        .route("/config", get(config))
        .route("/jobmanager/config", get(config))
        .route("/jobs", get(jobs).post(submit))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job).patch(cancel))
        .route("/jobs/{id}/savepoints", post(trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoint_status))
        .route("/jobs/{id}/stop", post(stop_with_savepoint))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/taskmanagers", get(task_managers))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(backend);
    match token {
        Some(t) => {
            let expected: Arc<[u8]> = Arc::from(t.as_bytes());
            app.layer(middleware::from_fn_with_state(expected, require_token))
        }
        None => app,
    }
}

type Backend = State<Arc<dyn RestBackend>>;

/// Flink's error body with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            errors: vec![message.into()],
        }),
    )
        .into_response()
}

fn rest_error(e: RestError) -> Response {
    let status = match &e {
        RestError::BadRequest(_) => StatusCode::BAD_REQUEST,
        RestError::NotFound(_) => StatusCode::NOT_FOUND,
        RestError::Conflict(_) => StatusCode::CONFLICT,
        RestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        RestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, axum::Json(body)).into_response()
}

fn bad_id(e: super::api::BadJobId) -> Response {
    error(StatusCode::BAD_REQUEST, e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn require_token(State(expected): State<Arc<[u8]>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let ok = given.is_some_and(|t| bool::from(t.ct_eq(&expected)));
    if !ok {
        let message = if given.is_none() {
            "this endpoint needs 'Authorization: Bearer <token>' (mesoflow --token or MESOFLOW_REST_TOKEN)"
        } else {
            "the bearer token is wrong"
        };
        let mut r = error(StatusCode::UNAUTHORIZED, message);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mesoflow\""),
        );
        return r;
    }
    next.run(req).await
}

async fn overview(State(b): Backend) -> Response {
    json(StatusCode::OK, &b.overview())
}

async fn config(State(b): Backend) -> Response {
    json(StatusCode::OK, &b.config())
}

async fn jobs(State(b): Backend) -> Response {
    let jobs = b
        .jobs()
        .into_iter()
        .map(|j| JobIdWithStatus {
            id: j.jid,
            status: j.state,
        })
        .collect();
    json(StatusCode::OK, &JobIdsWithStatus { jobs })
}

async fn jobs_overview(State(b): Backend) -> Response {
    json(StatusCode::OK, &JobsOverview { jobs: b.jobs() })
}

async fn job(State(b): Backend, Path(raw): Path<String>) -> Response {
    let id: JobId = match raw.parse() {
        Ok(id) => id,
        Err(e) => return bad_id(e),
    };
    match b.job(&id) {
        Some(mut details) => {
            details.now = now_ms();
            json(StatusCode::OK, &details)
        }
        None => rest_error(RestError::unknown_job(&id)),
    }
}

async fn task_managers(State(b): Backend) -> Response {
    json(
        StatusCode::OK,
        &TaskManagersInfo {
            taskmanagers: b.task_managers(),
        },
    )
}

async fn prometheus(State(b): Backend) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&b.metrics()),
    )
        .into_response()
}

async fn submit(State(b): Backend, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let mut reader = serde_json::Deserializer::from_slice(&body);
    let request: JobRequest = match serde_path_to_error::deserialize(&mut reader) {
        Ok(r) => r,
        Err(e) if e.path().iter().next().is_some() => {
            let path = e.path().to_string();
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid job request: {path}: {}", e.into_inner()),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid job request: {}", e.into_inner()),
            );
        }
    };
    let job = request.job.clone();
    match b.submit_async(request).await {
        Ok(id) => {
            tracing::info!(%id, %job, "job submitted over REST");
            json(
                StatusCode::ACCEPTED,
                &SubmitResponse {
                    jobid: id,
                    job_url: format!("/jobs/{id}"),
                },
            )
        }
        Err(e) => rest_error(e),
    }
}

async fn cancel(
    State(b): Backend,
    Path(raw): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let id: JobId = match raw.parse() {
        Ok(id) => id,
        Err(e) => return bad_id(e),
    };
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    // Flink's default mode is cancel; `stop` (with a savepoint) does not exist here yet.
    match query.get("mode").map(String::as_str) {
        None | Some("cancel") => {}
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("mode '{other}' is not supported; use mode=cancel"),
            );
        }
    }
    match b.cancel(&id) {
        Ok(()) => {
            tracing::info!(%id, "job cancellation requested over REST");
            json(StatusCode::ACCEPTED, &serde_json::json!({}))
        }
        Err(e) => rest_error(e),
    }
}

/// A JSON body of type `T`, or the 400 naming what is wrong with it. An empty body is `{}`.
#[allow(clippy::result_large_err)] // The error is the response itself, returned at once.
fn body_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, Response> {
    let body = body.map_err(|e| error(e.status(), e.body_text()))?;
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    let mut reader = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid {what}: {at}{}", e.into_inner()),
        )
    })
}

async fn trigger_savepoint(
    State(b): Backend,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let id: JobId = match raw.parse() {
        Ok(id) => id,
        Err(e) => return bad_id(e),
    };
    let request: SavepointTriggerRequest = match body_json(body, "savepoint request") {
        Ok(r) => r,
        Err(response) => return response,
    };
    match b.trigger_savepoint(&id, request.target_directory, request.cancel_job) {
        Ok(request_id) => {
            tracing::info!(%id, request = %request_id, "savepoint triggered over REST");
            json(StatusCode::ACCEPTED, &TriggerResponse { request_id })
        }
        Err(e) => rest_error(e),
    }
}

async fn stop_with_savepoint(
    State(b): Backend,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let id: JobId = match raw.parse() {
        Ok(id) => id,
        Err(e) => return bad_id(e),
    };
    let request: StopWithSavepointRequest = match body_json(body, "stop request") {
        Ok(r) => r,
        Err(response) => return response,
    };
    if request.drain {
        return error(
            StatusCode::BAD_REQUEST,
            "drain (stop with MAX_WATERMARK) is not supported; use \"drain\": false",
        );
    }
    match b.trigger_savepoint(&id, request.target_directory, true) {
        Ok(request_id) => {
            tracing::info!(%id, request = %request_id, "stop-with-savepoint triggered over REST");
            json(StatusCode::ACCEPTED, &TriggerResponse { request_id })
        }
        Err(e) => rest_error(e),
    }
}

async fn savepoint_status(
    State(b): Backend,
    Path((raw, trigger)): Path<(String, String)>,
) -> Response {
    let id: JobId = match raw.parse() {
        Ok(id) => id,
        Err(e) => return bad_id(e),
    };
    match b.savepoint_status(&id, &trigger) {
        Ok(status) => json(StatusCode::OK, &status),
        Err(e) => rest_error(e),
    }
}

async fn checkpoints(State(b): Backend, Path(raw): Path<String>) -> Response {
    let id: JobId = match raw.parse() {
        Ok(id) => id,
        Err(e) => return bad_id(e),
    };
    match b.checkpoints(&id) {
        Some(stats) => json(StatusCode::OK, &stats),
        None => rest_error(RestError::unknown_job(&id)),
    }
}

async fn not_found(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("Not found: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain_error = |reason: String| ServeError::TlsFile {
        what: "certificate chain",
        path: files.cert_chain.clone(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert_chain)
        .map_err(|e| chain_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| chain_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(chain_error("no CERTIFICATE block".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.private_key).map_err(|e| ServeError::TlsFile {
            what: "private key",
            path: files.private_key.clone(),
            reason: e.to_string(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and completes TLS handshakes off the accept path, so one slow
/// client delays nobody; finished handshakes queue for the HTTP server.
struct TlsListener {
    addr: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn start(tcp: TcpListener, addr: SocketAddr, tls: TlsAcceptor) -> Self {
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "REST accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "REST TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "REST TLS handshake timed out"),
                    }
                });
            }
        });
        Self {
            addr,
            ready,
            acceptor,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // Only after the acceptor task ended, i.e. while shutting down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
