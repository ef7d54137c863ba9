//! The thin tokio shell around [`SchedulerClient`]: HTTP, timers and channels, no protocol logic.
//!
//! [`spawn`] starts a task that owns the state machine and performs its [`Action`]s:
//! - SUBSCRIBE goes out on its own HTTP/1.1 connection (a dedicated reqwest client, no total
//!   timeout, redirects not followed, so the machine sees 307s); the chunked body is decoded
//!   with the RecordIO decoder and each record is handed to the machine;
//! - every other call goes through a second client (shared keep-alive connections, 75 s
//!   timeout as Mesos recommends);
//! - the machine's next deadline is a tokio sleep; leader changes from a detector arrive on a
//!   `watch` channel.
//!
//! The owner gets a [`SchedulerHandle`] for commands and an unbounded receiver of
//! [`SchedulerEvent`]s (events are never dropped; a slow owner only delays its own view). The
//! task ends after a [`SchedulerEvent::Fatal`], or when the handle and the receiver are gone.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mesoflow_proto::{
    mesos::v1::{
        AgentId, ExecutorId, ExecutorInfo, Filters, FrameworkInfo, KillPolicy, OfferId, TaskId,
        TaskInfo, offer::Operation,
    },
    recordio::RecordDecoder,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{debug, warn};

use super::{
    SchedulerConfig,
    client::{Action, CallId, CommandError, ConnectionId, SchedulerClient, SubscribeResponse},
    endpoint::{HttpRequest, MasterEndpoint},
    events::{AckToken, OperationAckToken, SchedulerEvent},
};

/// Timeout of non-subscribe calls (Mesos recommends about 5 heartbeat intervals).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(75);
/// Timeout of establishing a TCP connection to a master.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of an error response body kept for messages.
const MAX_ERROR_BODY: usize = 4096;

/// Why a command sent through the handle failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The state machine refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The driver task has ended (fatal error, or shut down).
    #[error("the Mesos scheduler driver has stopped")]
    Stopped,
}

/// Failure to start the driver.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the Mesos scheduler API: {0}")]
    Http(#[from] reqwest::Error),
    /// A master URL uses a scheme this build cannot speak.
    #[error(
        "master {0} uses a scheme other than http://; this build has no TLS support for the \
         Mesos API: reach the masters over http:// (e.g. through a TLS-terminating proxy)"
    )]
    UnsupportedScheme(String),
}

type Command = Box<dyn FnOnce(&mut SchedulerClient) -> Result<CallId, CommandError> + Send>;

/// Sends commands to the driver task. Cheap to clone.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::UnboundedSender<(Command, oneshot::Sender<Result<CallId, CommandError>>)>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle").finish_non_exhaustive()
    }
}

impl SchedulerHandle {
    async fn run(
        &self,
        f: impl FnOnce(&mut SchedulerClient) -> Result<CallId, CommandError> + Send + 'static,
    ) -> Result<CallId, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((Box::new(f), tx))
            .map_err(|_| DriverError::Stopped)?;
        Ok(rx.await.map_err(|_| DriverError::Stopped)??)
    }

    /// See [`SchedulerClient::accept`].
    pub async fn accept(
        &self,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Option<Filters>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.accept(offer_ids, operations, filters))
            .await
    }

    /// See [`SchedulerClient::launch`].
    pub async fn launch(
        &self,
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.launch(offer_ids, tasks, filters)).await
    }

    /// See [`SchedulerClient::launch_group`].
    pub async fn launch_group(
        &self,
        offer_ids: Vec<OfferId>,
        executor: ExecutorInfo,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.launch_group(offer_ids, executor, tasks, filters))
            .await
    }

    /// See [`SchedulerClient::decline`].
    pub async fn decline(
        &self,
        offer_ids: Vec<OfferId>,
        refuse_seconds: Option<f64>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.decline(offer_ids, refuse_seconds))
            .await
    }

    /// See [`SchedulerClient::accept_inverse_offers`].
    pub async fn accept_inverse_offers(
        &self,
        ids: Vec<OfferId>,
        filters: Option<Filters>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.accept_inverse_offers(ids, filters))
            .await
    }

    /// See [`SchedulerClient::decline_inverse_offers`].
    pub async fn decline_inverse_offers(
        &self,
        ids: Vec<OfferId>,
        filters: Option<Filters>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.decline_inverse_offers(ids, filters))
            .await
    }

    /// See [`SchedulerClient::suppress`].
    pub async fn suppress(&self, roles: Vec<String>) -> Result<CallId, DriverError> {
        self.run(move |c| c.suppress(roles)).await
    }

    /// See [`SchedulerClient::revive`].
    pub async fn revive(&self, roles: Vec<String>) -> Result<CallId, DriverError> {
        self.run(move |c| c.revive(roles)).await
    }

    /// See [`SchedulerClient::kill`].
    pub async fn kill(
        &self,
        task_id: TaskId,
        agent_id: Option<AgentId>,
        kill_policy: Option<KillPolicy>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.kill(task_id, agent_id, kill_policy))
            .await
    }

    /// See [`SchedulerClient::shutdown`].
    pub async fn shutdown(
        &self,
        executor_id: ExecutorId,
        agent_id: AgentId,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.shutdown(executor_id, agent_id)).await
    }

    /// See [`SchedulerClient::message`].
    pub async fn message(
        &self,
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: Bytes,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.message(agent_id, executor_id, data))
            .await
    }

    /// See [`SchedulerClient::acknowledge`]: call after persisting the update's state.
    pub async fn acknowledge(&self, token: AckToken) -> Result<CallId, DriverError> {
        self.run(move |c| c.acknowledge(token)).await
    }

    /// See [`SchedulerClient::acknowledge_operation_status`].
    pub async fn acknowledge_operation_status(
        &self,
        token: OperationAckToken,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.acknowledge_operation_status(token))
            .await
    }

    /// See [`SchedulerClient::reconcile`].
    pub async fn reconcile(
        &self,
        tasks: Vec<(TaskId, Option<AgentId>)>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.reconcile(tasks)).await
    }

    /// See [`SchedulerClient::teardown`].
    pub async fn teardown(&self) -> Result<CallId, DriverError> {
        self.run(|c| c.teardown()).await
    }

    /// See [`SchedulerClient::update_framework`].
    pub async fn update_framework(
        &self,
        framework_info: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<CallId, DriverError> {
        self.run(move |c| c.update_framework(framework_info, suppressed_roles))
            .await
    }

    /// See [`SchedulerClient::track_tasks`].
    pub async fn track_tasks(
        &self,
        tasks: Vec<(TaskId, Option<AgentId>)>,
    ) -> Result<(), DriverError> {
        self.run(move |c| {
            c.track_tasks(tasks);
            Ok(0)
        })
        .await
        .map(|_| ())
    }

    /// See [`SchedulerClient::forget_task`].
    pub async fn forget_task(&self, task_id: TaskId) -> Result<(), DriverError> {
        self.run(move |c| {
            c.forget_task(&task_id);
            Ok(0)
        })
        .await
        .map(|_| ())
    }
}

/// Where the driver learns about masters.
#[derive(Debug)]
pub enum MasterSource {
    /// The fixed list in [`SchedulerConfig::masters`] (tried in turn, 307s followed).
    Static,
    /// Leaders reported by a detector (e.g. ZooKeeper); an empty list means "no leader now".
    Detected(watch::Receiver<Vec<MasterEndpoint>>),
}

/// Starts the driver task. Returns the command handle, the event receiver and the task.
pub fn spawn(
    config: SchedulerConfig,
    masters: MasterSource,
) -> Result<
    (
        SchedulerHandle,
        mpsc::UnboundedReceiver<SchedulerEvent>,
        JoinHandle<()>,
    ),
    SpawnError,
> {
    if let Some(m) = config.masters.iter().find(|m| m.scheme != "http") {
        return Err(SpawnError::UnsupportedScheme(m.base_url()));
    }
    let stream_http = reqwest::Client::builder()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        // One connection per subscription: never reuse a pooled one for a new stream.
        .pool_max_idle_per_host(0)
        .build()?;
    let call_http = reqwest::Client::builder()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .build()?;
    let max_event_size = config.max_event_size;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        client: SchedulerClient::new(config),
        stream_http,
        call_http,
        calls: None,
        max_event_size,
        streams: HashMap::new(),
        event_tx,
    };
    let task = tokio::spawn(driver.run(cmd_rx, masters));
    Ok((SchedulerHandle { commands: cmd_tx }, event_rx, task))
}

/// What the I/O tasks report back to the driver loop.
enum Io {
    SubscribeResponse(ConnectionId, SubscribeResponse),
    SubscribeFailed(ConnectionId, String),
    Record(ConnectionId, Bytes),
    StreamEnded(ConnectionId, Option<String>),
    CallResponse(CallId, u16, Option<String>, String),
    CallFailed(CallId, String),
}

struct Driver {
    client: SchedulerClient,
    stream_http: reqwest::Client,
    call_http: reqwest::Client,
    /// Queue of the task sending calls one at a time, in order (Mesos applies calls in the
    /// order it receives them: SUPPRESS then REVIVE must not swap).
    calls: Option<mpsc::UnboundedSender<(CallId, HttpRequest)>>,
    max_event_size: usize,
    streams: HashMap<ConnectionId, JoinHandle<()>>,
    event_tx: mpsc::UnboundedSender<SchedulerEvent>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<(
            Command,
            oneshot::Sender<Result<CallId, CommandError>>,
        )>,
        masters: MasterSource,
    ) {
        let (io_tx, mut io_rx) = mpsc::unbounded_channel::<Io>();
        let mut detected = match masters {
            MasterSource::Static => None,
            MasterSource::Detected(mut rx) => {
                let current = rx.borrow_and_update().clone();
                self.client.set_masters(Instant::now(), current);
                Some(rx)
            }
        };
        self.client.start(Instant::now());
        let mut commands_open = true;
        loop {
            self.perform_actions(&io_tx);
            self.forward_events();
            if self.client.is_stopped() {
                break;
            }
            if !commands_open && self.event_tx.is_closed() {
                break;
            }
            let deadline = self.client.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let leader_changed = async {
                match detected.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(io) = io_rx.recv() => self.handle_io(io),
                cmd = commands.recv(), if commands_open => match cmd {
                    Some((f, reply)) => {
                        let _ = reply.send(f(&mut self.client));
                    }
                    None => commands_open = false,
                },
                alive = leader_changed => {
                    match (alive, detected.as_mut()) {
                        (true, Some(rx)) => {
                            let masters = rx.borrow_and_update().clone();
                            self.client.set_masters(Instant::now(), masters);
                        }
                        _ => {
                            warn!("master detector stopped; keeping the last known masters");
                            detected = None;
                        }
                    }
                }
                () = sleep => self.client.handle_timeout(Instant::now()),
            }
        }
        for (_, task) in self.streams.drain() {
            task.abort();
        }
        debug!("Mesos scheduler driver stopped");
    }

    /// Forwards the machine's events to the owner (dropped if the owner stopped listening).
    fn forward_events(&mut self) {
        while let Some(event) = self.client.poll_event() {
            if self.event_tx.send(event).is_err() {
                debug!("scheduler event receiver dropped");
            }
        }
    }

    fn handle_io(&mut self, io: Io) {
        let now = Instant::now();
        match io {
            Io::SubscribeResponse(conn, response) => {
                self.client.handle_subscribe_response(now, conn, response)
            }
            Io::SubscribeFailed(conn, error) => {
                self.streams.remove(&conn);
                self.client.handle_subscribe_failed(now, conn, error)
            }
            Io::Record(conn, record) => self.client.handle_event_record(now, conn, &record),
            Io::StreamEnded(conn, error) => {
                self.streams.remove(&conn);
                self.client.handle_stream_ended(now, conn, error)
            }
            Io::CallResponse(id, status, location, body) => self
                .client
                .handle_call_response(now, id, status, location, body),
            Io::CallFailed(id, error) => self.client.handle_call_failed(id, error),
        }
    }

    fn perform_actions(&mut self, io_tx: &mpsc::UnboundedSender<Io>) {
        while let Some(action) = self.client.poll_action() {
            match action {
                Action::Subscribe { conn, request } => {
                    let task = tokio::spawn(run_subscription(
                        self.stream_http.clone(),
                        conn,
                        request,
                        self.max_event_size,
                        io_tx.clone(),
                    ));
                    self.streams.insert(conn, task);
                }
                Action::CloseSubscription { conn } => {
                    if let Some(task) = self.streams.remove(&conn) {
                        task.abort();
                    }
                }
                Action::Call { call_id, request } => {
                    let worker = self.calls.get_or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        tokio::spawn(run_calls(self.call_http.clone(), rx, io_tx.clone()));
                        tx
                    });
                    if let Err(mpsc::error::SendError((call_id, _))) =
                        worker.send((call_id, request))
                    {
                        self.calls = None;
                        self.client
                            .handle_call_failed(call_id, "call worker stopped".to_owned());
                    }
                }
            }
        }
    }
}

fn build(http: &reqwest::Client, request: HttpRequest) -> reqwest::RequestBuilder {
    let mut builder = http.post(&request.url).body(request.body);
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    builder
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error body as text.
async fn error_body(response: &mut reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).into_owned()
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn run_subscription(
    http: reqwest::Client,
    conn: ConnectionId,
    request: HttpRequest,
    max_event_size: usize,
    io: mpsc::UnboundedSender<Io>,
) {
    let mut response = match build(&http, request).send().await {
        Ok(r) => r,
        Err(e) => {
            let _ = io.send(Io::SubscribeFailed(conn, describe(&e)));
            return;
        }
    };
    let status = response.status().as_u16();
    let mut head = SubscribeResponse {
        status,
        stream_id: header(&response, "Mesos-Stream-Id"),
        content_type: header(&response, "Content-Type"),
        location: header(&response, "Location"),
        www_authenticate: header(&response, "WWW-Authenticate"),
        body: String::new(),
    };
    if status != 200 {
        head.body = error_body(&mut response).await;
        let _ = io.send(Io::SubscribeResponse(conn, head));
        return;
    }
    if io.send(Io::SubscribeResponse(conn, head)).is_err() {
        return;
    }
    let mut decoder = RecordDecoder::with_max_record_len(max_event_size);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                decoder.push(&chunk);
                loop {
                    match decoder.next_record() {
                        Ok(Some(record)) => {
                            if io.send(Io::Record(conn, record)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = io.send(Io::StreamEnded(conn, Some(e.to_string())));
                            return;
                        }
                    }
                }
            }
            Ok(None) => {
                let end = decoder.finish().err().map(|e| e.to_string());
                let _ = io.send(Io::StreamEnded(conn, end));
                return;
            }
            Err(e) => {
                let _ = io.send(Io::StreamEnded(conn, Some(describe(&e))));
                return;
            }
        }
    }
}

/// Sends calls strictly one after another, in the order the machine issued them.
async fn run_calls(
    http: reqwest::Client,
    mut queue: mpsc::UnboundedReceiver<(CallId, HttpRequest)>,
    io: mpsc::UnboundedSender<Io>,
) {
    while let Some((call_id, request)) = queue.recv().await {
        let message = match build(&http, request).send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let location = header(&response, "Location");
                let body = if (200..300).contains(&status) {
                    String::new()
                } else {
                    error_body(&mut response).await
                };
                Io::CallResponse(call_id, status, location, body)
            }
            Err(e) => Io::CallFailed(call_id, describe(&e)),
        };
        if io.send(message).is_err() {
            return;
        }
    }
}
