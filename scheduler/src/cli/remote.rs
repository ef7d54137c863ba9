//! `mesoflow run/list/cancel --jobmanager URL`: the CLI as a client of a session cluster's REST
//! API. A followed run ends with the same lines as a local run, so scripts need not care where
//! the job ran.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use mesoflow_dataplane::backoff::{Backoff, BackoffConfig};
use mesoflow_dataplane::checksum::checksum_line;
use mesoflow_dataplane::runtime::JobResult;
use serde::de::DeserializeOwned;

use super::summary;
use crate::job_manager::request::{JobRequest, SinkRequest};
use crate::rest::api::{
    AsynchronousOperationResult, ErrorBody, JobDetails, JobId, JobOverview, JobState, JobsOverview,
    SavepointOperation, SubmitResponse, TriggerResponse,
};

/// How often a followed job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Consecutive failed polls after which following gives up (the job keeps running).
const MAX_POLL_FAILURES: u32 = 10;

/// A REST client for one JobManager.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A failed call: the server's `{"errors": [...]}` verbatim, or why it could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{status}: {}", .errors.join("; "))]
    Server {
        /// HTTP status.
        status: reqwest::StatusCode,
        /// The server's messages.
        errors: Vec<String>,
    },
    /// No connection (refused, unreachable, timed out).
    #[error("cannot reach the JobManager at {url}: {reason}")]
    Connect {
        /// What was tried.
        url: String,
        /// The innermost cause (reqwest's own layers repeat the URL).
        reason: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol {
        /// What was asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl ClientError {
    /// Worth retrying while following a job: the server was away or overloaded.
    fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Server { status, .. } => status.is_server_error(),
            ClientError::Protocol { .. } => false,
        }
    }
}

impl Client {
    /// A client for `address` (`http://HOST:PORT`, or `HOST:PORT`).
    pub fn new(address: &str, token: Option<String>) -> Result<Self> {
        let base = normalize_address(address)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Self { base, token, http })
    }

    /// The base URL, e.g. `http://10.0.0.5:8081`.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let connect = |e: reqwest::Error| ClientError::Connect {
            url: url.clone(),
            reason: root_cause(&e),
        };
        let resp = req.send().await.map_err(connect)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(connect)?;
        if !status.is_success() {
            let errors = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => b.errors,
                Err(_) => vec![String::from_utf8_lossy(&bytes).trim().to_owned()],
            };
            return Err(ClientError::Server { status, errors });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url,
            reason: e.to_string(),
        })
    }

    /// `POST /jobs`.
    pub async fn submit(&self, request: &JobRequest) -> Result<JobId, ClientError> {
        let body = serde_json::to_vec(request).expect("a job request always serializes");
        let r: SubmitResponse = self
            .call(reqwest::Method::POST, "/jobs", Some(body))
            .await?;
        Ok(r.jobid)
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, id: &JobId) -> Result<JobDetails, ClientError> {
        self.call(reqwest::Method::GET, &format!("/jobs/{id}"), None)
            .await
    }

    /// `GET /jobs/overview`.
    pub async fn jobs(&self) -> Result<Vec<JobOverview>, ClientError> {
        let r: JobsOverview = self
            .call(reqwest::Method::GET, "/jobs/overview", None)
            .await?;
        Ok(r.jobs)
    }

    /// `PATCH /jobs/{id}?mode=cancel`.
    pub async fn cancel(&self, id: &JobId) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(
                reqwest::Method::PATCH,
                &format!("/jobs/{id}?mode=cancel"),
                None,
            )
            .await?;
        Ok(())
    }

    /// `POST /jobs/{id}/savepoints`: the trigger's request id.
    pub async fn trigger_savepoint(
        &self,
        id: &JobId,
        target: Option<&str>,
    ) -> Result<String, ClientError> {
        let body = serde_json::json!({ "target-directory": target, "cancel-job": false });
        let r: TriggerResponse = self
            .call(
                reqwest::Method::POST,
                &format!("/jobs/{id}/savepoints"),
                Some(body.to_string().into_bytes()),
            )
            .await?;
        Ok(r.request_id)
    }

    /// `POST /jobs/{id}/stop`: the trigger's request id.
    pub async fn stop(&self, id: &JobId, target: Option<&str>) -> Result<String, ClientError> {
        let body = serde_json::json!({ "targetDirectory": target, "drain": false });
        let r: TriggerResponse = self
            .call(
                reqwest::Method::POST,
                &format!("/jobs/{id}/stop"),
                Some(body.to_string().into_bytes()),
            )
            .await?;
        Ok(r.request_id)
    }

    /// `GET /jobs/{id}/savepoints/{trigger}`.
    pub async fn savepoint_status(
        &self,
        id: &JobId,
        trigger: &str,
    ) -> Result<AsynchronousOperationResult, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/jobs/{id}/savepoints/{trigger}"),
            None,
        )
        .await
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if e.is_timeout() {
        format!("timed out ({cause})")
    } else {
        cause.to_string()
    }
}

/// `http://host:port` without a trailing slash; a bare `host:port` gets `http://`.
fn normalize_address(address: &str) -> Result<String> {
    let a = address.trim().trim_end_matches('/');
    if a.is_empty() {
        bail!("--jobmanager is empty; pass http://HOST:PORT");
    }
    if a.starts_with("https://") {
        bail!(
            "--jobmanager {a}: this build of the CLI speaks plain HTTP only; reach a TLS \
             endpoint through a local proxy"
        );
    }
    let with_scheme = if a.starts_with("http://") {
        a.to_owned()
    } else if a.contains("://") {
        bail!("--jobmanager {a}: expected http://HOST:PORT");
    } else {
        format!("http://{a}")
    };
    Ok(with_scheme)
}

/// What `run` against a cluster does after submitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// Print the id and return instead of following.
    pub detached: bool,
    /// Print `records=<N> checksum=<hex>` on stdout at the end (checksum sink).
    pub checksum_line: bool,
}

/// Submits `request` and, unless detached, follows it to its end; `interrupt` resolving (Ctrl-C)
/// cancels the job and returns 130.
pub async fn run(
    client: &Client,
    request: &JobRequest,
    options: FollowOptions,
    interrupt: impl Future<Output = ()>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode> {
    let id = client
        .submit(request)
        .await
        .with_context(|| format!("cannot submit job '{}'", request.job))?;
    if options.detached {
        writeln!(out, "{id}")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(err, "submitted job {id} to {}", client.base())?;
    let mut interrupt = std::pin::pin!(interrupt);
    let mut backoff = Backoff::new(
        BackoffConfig {
            initial: POLL_INTERVAL,
            max: Duration::from_secs(5),
        },
        rand::random(),
    );
    let mut failures = 0u32;
    let mut last_state = None;
    let details = loop {
        let delay = match client.job(&id).await {
            Ok(d) if d.state.is_terminal() => break d,
            Ok(d) => {
                if last_state != Some(d.state) && d.state == JobState::Restarting {
                    let cause = d.failure_cause.as_deref().unwrap_or("unknown cause");
                    writeln!(
                        err,
                        "restarting the job (attempt {}) after: {cause}",
                        d.attempt
                    )?;
                }
                last_state = Some(d.state);
                failures = 0;
                backoff.reset();
                POLL_INTERVAL
            }
            Err(e) if e.is_transient() && failures + 1 < MAX_POLL_FAILURES => {
                failures += 1;
                tracing::debug!(error = %e, failures, "polling the job failed; retrying");
                backoff.next_delay()
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "lost track of job {id} (it may still be running; see `mesoflow list`)"
                )));
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut interrupt => {
                writeln!(err, "\ncancelling job {id} (Ctrl-C)...")?;
                client.cancel(&id).await.with_context(|| format!("cannot cancel job {id}"))?;
                return Ok(ExitCode::from(130));
            }
        }
    };
    finish(request, &details, options, out, err)
}

/// The end of a followed run: the local run's lines and exit codes.
fn finish(
    request: &JobRequest,
    d: &JobDetails,
    options: FollowOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode> {
    let elapsed = Duration::from_millis(d.duration.max(0) as u64);
    match d.state {
        JobState::Finished => {}
        JobState::Cancelled => {
            writeln!(
                err,
                "{} cancelled after {:.2} s",
                d.name,
                elapsed.as_secs_f64()
            )?;
            return Ok(ExitCode::from(1));
        }
        _ => bail!(
            "job '{}' ({}) failed: {}",
            d.name,
            d.jid,
            d.failure_cause.as_deref().unwrap_or("no cause reported")
        ),
    }
    let Some(r) = &d.result else {
        bail!(
            "job {} finished but the JobManager reported no result",
            d.jid
        );
    };
    let checksum = r.checksum_value().ok_or_else(|| {
        anyhow!(
            "job {} reported a malformed checksum '{}'",
            d.jid,
            r.checksum
        )
    })?;
    if options.checksum_line || matches!(request.sink, SinkRequest::Checksum) {
        writeln!(out, "{}", checksum_line(r.records_out, checksum))?;
    }
    let result = JobResult {
        records_in: r.records_in,
        records_out: r.records_out,
        skipped: r.skipped,
        checksum,
        elapsed,
        cancelled: false,
    };
    writeln!(err, "{}", summary(&d.name, &result))?;
    if d.restarts > 0 {
        writeln!(err, "the job restarted {} time(s)", d.restarts)?;
    }
    if r.skipped > 0 {
        writeln!(
            err,
            "warning: {} input line(s) could not be parsed and were skipped",
            r.skipped
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `mesoflow list`: one row per job, newest first.
pub async fn list(client: &Client, out: &mut dyn Write) -> Result<()> {
    let mut jobs = client.jobs().await.context("cannot list jobs")?;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.start_time));
    write!(out, "{}", jobs_table(&jobs))?;
    Ok(())
}

/// The table `mesoflow list` prints.
pub fn jobs_table(jobs: &[JobOverview]) -> String {
    let name_width = jobs
        .iter()
        .map(|j| j.name.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut s = format!(
        "{:<32}  {:<name_width$}  {:<12}  {:<20}  DURATION\n",
        "JOB ID", "NAME", "STATE", "START TIME"
    );
    for j in jobs {
        let start = if j.start_time > 0 {
            humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_millis(j.start_time as u64),
            )
            .to_string()
        } else {
            "-".into()
        };
        let duration =
            humantime::format_duration(Duration::from_secs(j.duration.max(0) as u64 / 1000));
        s.push_str(&format!(
            "{:<32}  {:<name_width$}  {:<12}  {:<20}  {duration}\n",
            j.jid.to_string(),
            j.name,
            j.state.as_str(),
            start
        ));
    }
    s
}

/// `mesoflow cancel`.
pub async fn cancel(client: &Client, id: &str, out: &mut dyn Write) -> Result<()> {
    let id: JobId = id.parse()?;
    client
        .cancel(&id)
        .await
        .with_context(|| format!("cannot cancel job {id}"))?;
    writeln!(out, "cancellation of job {id} requested")?;
    Ok(())
}

/// `mesoflow savepoint` and `mesoflow stop`: triggers, then polls until the savepoint is done.
pub async fn savepoint(
    client: &Client,
    id: &str,
    target: Option<&str>,
    stop: bool,
    poll: std::time::Duration,
    out: &mut dyn Write,
) -> Result<String> {
    let id: JobId = id.parse()?;
    let request = if stop {
        client.stop(&id, target).await
    } else {
        client.trigger_savepoint(&id, target).await
    }
    .with_context(|| format!("cannot trigger a savepoint of job {id}"))?;
    writeln!(
        out,
        "Triggering savepoint for job {id}. Waiting for response..."
    )?;
    loop {
        let status = client
            .savepoint_status(&id, &request)
            .await
            .with_context(|| format!("cannot get the status of savepoint {request}"))?;
        match status.operation {
            Some(SavepointOperation::Location { location }) => {
                writeln!(out, "Savepoint completed. Path: {location}")?;
                if stop {
                    writeln!(out, "Job {id} is stopping.")?;
                }
                return Ok(location);
            }
            Some(SavepointOperation::Failure { failure_cause }) => {
                bail!(
                    "savepoint of job {id} failed: {}",
                    failure_cause.stack_trace
                )
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}

/// Runs `f` on a small runtime; the CLI's remote commands are a handful of HTTP calls.
pub fn block_on<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::tests::{FakeBackend, start};

    fn checksum_request() -> JobRequest {
        serde_json::from_str(r#"{"job":"stateless","sink":{"kind":"checksum"}}"#).unwrap()
    }

    const FOLLOW: FollowOptions = FollowOptions {
        detached: false,
        checksum_line: true,
    };

    #[tokio::test]
    async fn run_follows_to_the_local_summary_then_list_and_cancel() {
        let server = start(FakeBackend::new(3), None).await;
        let client = Client::new(&server.url(), None).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(
            &client,
            &checksum_request(),
            FOLLOW,
            std::future::pending(),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
        let (out, err) = (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        );
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        assert_eq!(out, "records=900 checksum=0123456789abcdef\n");
        assert!(
            err.contains("stateless finished in 1.50 s: 1000 records in (667/s), 900 records out"),
            "{err}"
        );

        // Detached: only the id on stdout; then cancel it by that id.
        let mut out = Vec::new();
        let detached = FollowOptions {
            detached: true,
            ..FOLLOW
        };
        let code = run(
            &client,
            &checksum_request(),
            detached,
            std::future::pending(),
            &mut out,
            &mut Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let id = String::from_utf8(out).unwrap().trim().to_owned();
        assert_eq!(id.len(), 32);
        let mut said = Vec::new();
        cancel(&client, &id, &mut said).await.unwrap();
        assert!(String::from_utf8(said).unwrap().contains(&id));
        let again = cancel(&client, &id, &mut Vec::new()).await.unwrap_err();
        assert!(
            format!("{again:#}").contains("already CANCELED"),
            "{again:#}"
        );
        assert!(cancel(&client, "nope", &mut Vec::new()).await.is_err());

        let mut table = Vec::new();
        list(&client, &mut table).await.unwrap();
        let table = String::from_utf8(table).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("JOB ID"), "{table}");
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            table.contains("FINISHED") && table.contains("CANCELED"),
            "{table}"
        );
        assert!(
            table.contains(&id) && table.contains("2023-11-14T22:13:20Z"),
            "{table}"
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn ctrl_c_while_following_cancels_the_job_and_exits_130() {
        let backend = FakeBackend::new(u32::MAX);
        let server = start(backend.clone(), None).await;
        let client = Client::new(&server.url(), None).unwrap();
        let mut err = Vec::new();
        let code = run(
            &client,
            &checksum_request(),
            FOLLOW,
            tokio::time::sleep(Duration::from_millis(300)),
            &mut Vec::new(),
            &mut err,
        )
        .await
        .unwrap();
        assert_eq!(code, ExitCode::from(130));
        let jobs = client.jobs().await.unwrap();
        assert_eq!(jobs[0].state, JobState::Cancelled);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn server_errors_reach_the_user_verbatim_and_tokens_are_sent() {
        let server = start(FakeBackend::new(1), Some("t0ken")).await;
        let anonymous = Client::new(&server.url(), None).unwrap();
        let e = list(&anonymous, &mut Vec::new()).await.unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("401") && e.contains("Authorization: Bearer"),
            "{e}"
        );
        let client = Client::new(&server.url(), Some("t0ken".into())).unwrap();
        list(&client, &mut Vec::new()).await.unwrap();
        let mut bad = checksum_request();
        bad.job = "no-such-job".into();
        let e = run(
            &client,
            &bad,
            FOLLOW,
            std::future::pending(),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("no-such-job"), "{e:#}");
        server.shutdown().await;
    }

    #[tokio::test]
    async fn savepoint_triggers_polls_and_prints_the_path() {
        let server = start(FakeBackend::new(1000), None).await;
        let client = Client::new(&server.url(), None).unwrap();
        let id = client.submit(&checksum_request()).await.unwrap();
        let mut out = Vec::new();
        let location = savepoint(
            &client,
            &id.to_string(),
            Some("/sp"),
            false,
            Duration::from_millis(1),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(location, "/sp/savepoint-feed00-000000000001");
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("Savepoint completed. Path: /sp/savepoint-feed00-000000000001"),
            "{out}"
        );
        let e = savepoint(
            &client,
            &id.to_string(),
            None,
            true,
            Duration::from_millis(1),
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("state.savepoints.dir"), "{e:#}");
    }

    #[tokio::test]
    async fn connection_refused_names_the_address_tried() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::new(&format!("127.0.0.1:{port}"), None).unwrap();
        let e = format!("{:#}", list(&client, &mut Vec::new()).await.unwrap_err());
        assert!(
            e.contains(&format!(
                "cannot reach the JobManager at http://127.0.0.1:{port}/jobs/overview"
            )),
            "{e}"
        );
    }

    #[test]
    fn addresses_get_a_scheme_and_lose_the_trailing_slash() {
        assert_eq!(normalize_address("h:8081").unwrap(), "http://h:8081");
        assert_eq!(
            normalize_address("http://h:8081/").unwrap(),
            "http://h:8081"
        );
        assert!(normalize_address("https://h:8081").is_err());
        assert!(normalize_address("ftp://h").is_err());
        assert!(normalize_address(" ").is_err());
    }
}
