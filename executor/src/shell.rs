//! The thin tokio/HTTP shell around [`ExecutorClient`]: it owns the sockets, the clock and the
//! tasks, and nothing else.
//!
//! - The SUBSCRIBE stream runs on its own HTTP client (so on its own connection, as the agent
//!   requires), decoded incrementally with [`RecordDecoder`] whatever the chunking.
//! - Every other call goes through one sequential sender on a second client: two updates of a task
//!   must reach the agent in the order they were made.
//! - Task actions go to a [`TaskRunner`]; its reports come back on a channel.
//!
//! Every decision (retry or not, when, what to send, when to exit) is the client's.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_proto::mesos::v1::executor::Call;
use mesoflow_proto::recordio::RecordDecoder;
use mesoflow_proto::{CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF};
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{
    Action, CallOutcome, ExecutorClient, ExitReason, OutgoingCall, SubscribeFailure, SubscriptionId,
};
use crate::runner::{TaskProgress, TaskRunner};

/// Time to open a TCP connection to the agent (it is on the same host or network).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a non-subscribe call to be answered (the protocol brief suggests about 75 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(75);
/// Keep-alive probes notice a silently vanished agent (its own heartbeats come every 30 min).
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// How long queued calls may still be flushed when the executor exits.
const EXIT_FLUSH: Duration = Duration::from_secs(2);
/// How much of an error body is quoted in a log line.
const ERROR_BODY_LIMIT: usize = 512;

/// Where and how to reach the agent.
#[derive(Clone)]
pub struct AgentEndpoint {
    /// `http://host:port/api/v1/executor`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` on every request, when set.
    pub token: Option<String>,
}

impl std::fmt::Debug for AgentEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEndpoint")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The shell could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for the agent: {0}")]
pub struct ShellError(#[from] reqwest::Error);

/// What the stream and call tasks tell the loop.
enum Input {
    Record(SubscriptionId, Bytes),
    StreamEnded(SubscriptionId, String),
    SubscribeFailed(SubscriptionId, SubscribeFailure),
    CallResult(Box<OutgoingCall>, CallOutcome),
}

/// Drives an [`ExecutorClient`] against a real agent until it exits.
pub struct Shell<R> {
    endpoint: AgentEndpoint,
    stream_http: reqwest::Client,
    call_http: reqwest::Client,
    client: ExecutorClient,
    runner: R,
    reports: mpsc::UnboundedReceiver<TaskProgress>,
}

impl<R: TaskRunner> Shell<R> {
    /// A shell for `client`, running tasks with `runner`, whose reports arrive on `reports`.
    pub fn new(
        endpoint: AgentEndpoint,
        client: ExecutorClient,
        runner: R,
        reports: mpsc::UnboundedReceiver<TaskProgress>,
    ) -> Result<Self, ShellError> {
        // Two clients, two connection pools: the subscription stream never shares its
        // connection with calls. No proxy: the agent is reached directly.
        let stream_http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(TCP_KEEPALIVE)
            .pool_max_idle_per_host(0)
            .build()?;
        let call_http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_keepalive(TCP_KEEPALIVE)
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(Self {
            endpoint,
            stream_http,
            call_http,
            client,
            runner,
            reports,
        })
    }

    /// Runs until the client exits; `stop` resolving (a signal) asks for an orderly shutdown.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> ExitReason {
        let (inputs_tx, mut inputs) = mpsc::unbounded_channel();
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let sender = tokio::spawn(send_calls(
            self.call_http.clone(),
            self.endpoint.clone(),
            calls_rx,
            inputs_tx.clone(),
        ));
        let mut stream: Option<JoinHandle<()>> = None;
        let mut stop = std::pin::pin!(stop);
        let mut stop_requested = false;
        loop {
            while let Some(action) = self.client.poll_action() {
                match action {
                    Action::Subscribe { subscription, call } => {
                        if let Some(old) = stream.take() {
                            old.abort();
                        }
                        tracing::debug!(subscription = subscription.0, "subscribing");
                        stream = Some(tokio::spawn(subscribe(
                            self.stream_http.clone(),
                            self.endpoint.clone(),
                            subscription,
                            call,
                            inputs_tx.clone(),
                        )));
                    }
                    Action::Disconnect => {
                        if let Some(old) = stream.take() {
                            old.abort();
                        }
                    }
                    Action::Send(call) => {
                        // The sender lives as long as this loop; a send error cannot happen.
                        let _ = calls_tx.send(call);
                    }
                    Action::LaunchTask(task) => self.runner.launch(*task),
                    Action::KillTask { task_id } => self.runner.kill(&task_id),
                    Action::ForceKillTask { task_id } => self.runner.force_kill(&task_id),
                    Action::SchedulerMessage(data) => self.runner.scheduler_message(data),
                    Action::Exit(reason) => {
                        if let Some(old) = stream.take() {
                            old.abort();
                        }
                        drop(calls_tx);
                        if tokio::time::timeout(EXIT_FLUSH, sender).await.is_err() {
                            tracing::warn!("calls still queued at exit were not sent");
                        }
                        return reason;
                    }
                }
            }
            let deadline = self.client.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(input) = inputs.recv() => {
                    let now = Instant::now();
                    match input {
                        Input::Record(id, record) => self.client.handle_record(now, id, &record),
                        Input::StreamEnded(id, why) => self.client.handle_stream_ended(now, id, &why),
                        Input::SubscribeFailed(id, failure) => {
                            self.client.handle_subscribe_failed(now, id, failure)
                        }
                        Input::CallResult(sent, outcome) => {
                            self.client.handle_call_result(now, &sent, outcome)
                        }
                    }
                }
                Some(progress) = self.reports.recv() => {
                    self.client.report_task(Instant::now(), &progress.task_id, progress.report);
                }
                () = sleep => self.client.handle_timeout(Instant::now()),
                () = &mut stop, if !stop_requested => {
                    stop_requested = true;
                    tracing::info!("asked to stop; killing tasks and shutting down");
                    self.client.request_shutdown(Instant::now());
                }
            }
        }
    }
}

/// POSTs one call with the executor API's headers.
async fn post(
    http: &reqwest::Client,
    endpoint: &AgentEndpoint,
    call: &Call,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = http
        .post(&endpoint.url)
        .header(CONTENT_TYPE, CONTENT_TYPE_PROTOBUF)
        .header(ACCEPT, CONTENT_TYPE_PROTOBUF)
        .body(call.encode_to_vec());
    if let Some(token) = &endpoint.token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    request.send().await
}

/// Opens the subscription and forwards its records until it ends.
async fn subscribe(
    http: reqwest::Client,
    endpoint: AgentEndpoint,
    id: SubscriptionId,
    call: Call,
    inputs: mpsc::UnboundedSender<Input>,
) {
    let send = |input| {
        let _ = inputs.send(input);
    };
    let mut response = match post(&http, &endpoint, &call).await {
        Ok(response) => response,
        Err(error) => {
            let why = format!(
                "cannot reach the agent at {}: {}",
                endpoint.url,
                chain(&error)
            );
            return send(Input::SubscribeFailed(id, SubscribeFailure::Transient(why)));
        }
    };
    let status = response.status();
    if status != StatusCode::OK {
        let why = describe_refusal(response).await;
        let failure = if status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::NOT_FOUND
            || status.is_server_error()
        {
            SubscribeFailure::Transient(why)
        } else {
            SubscribeFailure::Rejected(why)
        };
        return send(Input::SubscribeFailed(id, failure));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type != CONTENT_TYPE_PROTOBUF {
        let why = if content_type == CONTENT_TYPE_JSON {
            "the agent answered SUBSCRIBE with JSON although only protobuf was accepted".to_owned()
        } else {
            format!(
                "the agent's event stream has Content-Type '{content_type}', expected '{CONTENT_TYPE_PROTOBUF}'"
            )
        };
        return send(Input::SubscribeFailed(id, SubscribeFailure::Rejected(why)));
    }
    let mut decoder = RecordDecoder::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                decoder.push(&chunk);
                loop {
                    match decoder.next_record() {
                        Ok(Some(record)) => send(Input::Record(id, record)),
                        Ok(None) => break,
                        Err(error) => {
                            return send(Input::StreamEnded(
                                id,
                                format!("the agent's event stream is not valid RecordIO: {error}"),
                            ));
                        }
                    }
                }
            }
            Ok(None) => {
                let why = match decoder.finish() {
                    Ok(()) => "the agent closed the event stream".to_owned(),
                    Err(error) => error.to_string(),
                };
                return send(Input::StreamEnded(id, why));
            }
            Err(error) => {
                return send(Input::StreamEnded(
                    id,
                    format!("the event stream broke: {}", chain(&error)),
                ));
            }
        }
    }
}

/// Sends calls one at a time, in order, and reports each outcome.
async fn send_calls(
    http: reqwest::Client,
    endpoint: AgentEndpoint,
    mut calls: mpsc::UnboundedReceiver<OutgoingCall>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    while let Some(sent) = calls.recv().await {
        let outcome = match post(&http, &endpoint, &sent.call).await {
            Err(error) => {
                CallOutcome::Transient(format!("cannot reach the agent: {}", chain(&error)))
            }
            Ok(response) => {
                let status = response.status();
                if status == StatusCode::ACCEPTED || status == StatusCode::OK {
                    CallOutcome::Accepted
                } else if status == StatusCode::SERVICE_UNAVAILABLE
                    || status == StatusCode::FORBIDDEN
                    || status.is_server_error()
                {
                    CallOutcome::Transient(describe_refusal(response).await)
                } else {
                    CallOutcome::Rejected(describe_refusal(response).await)
                }
            }
        };
        let _ = inputs.send(Input::CallResult(Box::new(sent), outcome));
    }
}

/// "503 Service Unavailable: <first bytes of the body>".
async fn describe_refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_LIMIT)]);
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {text}")
    }
}

/// An error with its causes, which reqwest keeps out of its own message.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
