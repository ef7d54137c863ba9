//! The tokio/axum shell around the master and agent state machines: one process, one master
//! (plus former leaders) and N agents, each on its own 127.0.0.1 port, with hooks for tests.
//!
//! All state lives in one [`Core`] behind a mutex; every HTTP request, process exit and timer
//! tick takes the lock, feeds the state machines with `Instant::now()`, and then *pumps*: it
//! routes master outputs to agents and framework streams, agent outputs to the master,
//! executor streams and the container launcher, until nothing is left. The state machines
//! never do I/O; this module never decides protocol questions.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use mesoflow_proto::mesos::v1;
use prost::Message as _;
use tokio::sync::mpsc;
use v1::scheduler as sched;

use crate::agent::fetcher::Fetcher;
use crate::agent::{
    Agent, AgentConfig, AgentOutput, ExecutorKey, LaunchRequest, ToMaster, launcher,
};
use crate::http::{self, Format, Rejection};
use crate::json;
use crate::master::{
    AgentCommand, AgentRegistration, AgentRemoval, CallReply, Master, MasterConfig, Output,
};
use crate::resources::{Resources, parse_attributes};

/// Errors starting the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid agent resources: {0}")]
    Resources(#[from] crate::resources::ResourceError),
    #[error("cannot bind 127.0.0.1:0: {0}")]
    Bind(std::io::Error),
    #[error("cannot create the work directory '{path}': {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Largest request body accepted (a real master has no small limit; axum's default is 2 MiB).
const MAX_BODY: usize = 64 << 20;

/// One agent's configuration.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// `--resources`, e.g. `cpus:4;mem:8192;disk:10000;ports:[31000-32000]`.
    pub resources: String,
    /// `--attributes`, e.g. `rack:r1;zone:a`.
    pub attributes: String,
}

impl AgentSpec {
    pub fn new(resources: &str) -> Self {
        Self {
            resources: resources.to_string(),
            attributes: String::new(),
        }
    }
}

/// Cluster configuration. Defaults are a real cluster's, except where tests need speed.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub agents: Vec<AgentSpec>,
    /// Where sandboxes go; a temporary directory (removed on drop) when `None`.
    pub work_dir: Option<PathBuf>,
    pub heartbeat_interval: Duration,
    pub allocation_interval: Duration,
    pub offer_timeout: Option<Duration>,
    /// `--credentials` with `--authenticate_http_frameworks`: (principal, secret) pairs.
    pub credentials: Option<Vec<(String, String)>>,
    pub status_update_retry_min: Duration,
    pub executor_shutdown_grace_period: Duration,
    pub executor_registration_timeout: Duration,
    /// `--executor_environment_variables`.
    pub executor_environment_variables: BTreeMap<String, String>,
    /// Hard-link cached URIs into sandboxes instead of copying them as Mesos does (for runs
    /// with hundreds of executors whose binary would otherwise be copied into every sandbox).
    pub link_cached_artifacts: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            agents: vec![AgentSpec::new(
                "cpus:4;mem:8192;disk:10000;ports:[31000-32000]",
            )],
            work_dir: None,
            heartbeat_interval: Duration::from_secs(15),
            allocation_interval: Duration::from_secs(1),
            offer_timeout: None,
            credentials: None,
            status_update_retry_min: Duration::from_secs(10),
            executor_shutdown_grace_period: Duration::from_secs(5),
            executor_registration_timeout: Duration::from_secs(60),
            executor_environment_variables: BTreeMap::new(),
            link_cached_artifacts: false,
        }
    }
}

/// What to do with one event on its way to a framework (a test hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Deliver,
    Drop,
    Delay(Duration),
}

type EventFilter = Box<dyn FnMut(&str, &sched::Event) -> Delivery + Send>;

enum Chunk {
    Data(Bytes),
    End,
}

struct FrameworkStream {
    tx: mpsc::UnboundedSender<Chunk>,
    format: Format,
}

struct AgentSlot {
    agent: Agent,
    addr: SocketAddr,
    removed: bool,
    server: tokio::task::JoinHandle<()>,
}

/// Everything behind the lock.
struct Core {
    master: Option<Master>,
    /// Addresses of every master server started; `leader` indexes the current one.
    masters: Vec<SocketAddr>,
    leader: Option<usize>,
    config: ClusterConfig,
    agents: BTreeMap<String, AgentSlot>,
    streams: HashMap<String, FrameworkStream>,
    executor_streams: HashMap<u64, (String, mpsc::UnboundedSender<Chunk>, Format)>,
    next_connection: u64,
    filter: Option<EventFilter>,
    processes: HashMap<(String, ExecutorKey), u32>,
    /// Container launches produced while pumping, started after the lock is released.
    pending_launches: Vec<(String, LaunchRequest)>,
    master_servers: Vec<tokio::task::JoinHandle<()>>,
}

struct Shared {
    core: Mutex<Core>,
    fetcher: Fetcher,
    work_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug in this crate; keep serving anyway.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running test cluster. Dropping it kills every executor process it started.
pub struct Cluster {
    shared: Arc<Shared>,
    ticker: tokio::task::JoinHandle<()>,
}

fn bind() -> Result<(tokio::net::TcpListener, SocketAddr), ClusterError> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ClusterError::Bind)?;
    std_listener
        .set_nonblocking(true)
        .map_err(ClusterError::Bind)?;
    let addr = std_listener.local_addr().map_err(ClusterError::Bind)?;
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(ClusterError::Bind)?;
    Ok((listener, addr))
}

fn serve(listener: tokio::net::TcpListener, router: Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "test cluster server stopped");
        }
    })
}

fn rejection(r: Rejection) -> Response {
    (r.status, r.body).into_response()
}

fn stream_response(
    format: Format,
    extra: Option<(&'static str, String)>,
    rx: mpsc::UnboundedReceiver<Chunk>,
) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Chunk::Data(b)) => Some((Ok::<Bytes, std::io::Error>(b), rx)),
            Some(Chunk::End) | None => None,
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    if let Some((name, value)) = extra
        && let Ok(v) = HeaderValue::from_str(&value)
    {
        response.headers_mut().insert(name, v);
    }
    response
}

impl Cluster {
    /// Starts a master and the configured agents on 127.0.0.1.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let (temp, work_dir) = match &config.work_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let t = tempfile::tempdir().map_err(|source| ClusterError::WorkDir {
                    path: "<temp>".into(),
                    source,
                })?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        std::fs::create_dir_all(&work_dir).map_err(|source| ClusterError::WorkDir {
            path: work_dir.display().to_string(),
            source,
        })?;
        let fetcher = Fetcher::new(work_dir.join("fetch-cache"), None)
            .link_cached_files(config.link_cached_artifacts);
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                master: None,
                masters: Vec::new(),
                leader: None,
                config: config.clone(),
                agents: BTreeMap::new(),
                streams: HashMap::new(),
                executor_streams: HashMap::new(),
                next_connection: 0,
                filter: None,
                processes: HashMap::new(),
                pending_launches: Vec::new(),
                master_servers: Vec::new(),
            }),
            fetcher,
            work_dir: work_dir.clone(),
            _temp: temp,
        });
        let agent_prefix = uuid::Uuid::new_v4().to_string();
        for (i, spec) in config.agents.iter().enumerate() {
            let resources = Resources::parse(&spec.resources)?;
            let attributes = parse_attributes(&spec.attributes)?;
            let (listener, addr) = bind()?;
            let agent_id = format!("{agent_prefix}-S{i}");
            let mut ac = AgentConfig::new(
                &agent_id,
                "127.0.0.1",
                addr.port(),
                work_dir.clone(),
                resources,
            );
            ac.attributes = attributes;
            ac.status_update_retry_min = config.status_update_retry_min;
            ac.executor_shutdown_grace_period = config.executor_shutdown_grace_period;
            ac.executor_registration_timeout = config.executor_registration_timeout;
            ac.executor_environment_variables = config.executor_environment_variables.clone();
            let router = Router::new()
                .route("/api/v1/executor", axum::routing::any(executor_handler))
                .route(
                    "/slave(1)/api/v1/executor",
                    axum::routing::any(executor_handler),
                )
                .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
                .with_state((shared.clone(), agent_id.clone()));
            let server = serve(listener, router);
            shared.lock().agents.insert(
                agent_id,
                AgentSlot {
                    agent: Agent::new(ac),
                    addr,
                    removed: false,
                    server,
                },
            );
        }
        let cluster = Cluster {
            shared: shared.clone(),
            ticker: tokio::spawn(ticker(Arc::downgrade(&shared))),
        };
        cluster.start_master()?;
        Ok(cluster)
    }

    /// Starts a new master server and makes it the leader; agents (re-)register with it.
    fn start_master(&self) -> Result<SocketAddr, ClusterError> {
        let (listener, addr) = bind()?;
        let mut core = self.shared.lock();
        let index = core.masters.len();
        let router = Router::new()
            .route("/api/v1/scheduler", axum::routing::any(scheduler_handler))
            .route(
                "/master/api/v1/scheduler",
                axum::routing::any(scheduler_handler),
            )
            // Mesos sets no small body limit; ACCEPTs with many large TaskInfos must pass.
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state((self.shared.clone(), index));
        let server = serve(listener, router);
        core.master_servers.push(server);
        core.masters.push(addr);
        let mut mc = MasterConfig::new("127.0.0.1", addr.port());
        mc.heartbeat_interval = core.config.heartbeat_interval;
        mc.allocation_interval = core.config.allocation_interval;
        mc.offer_timeout = core.config.offer_timeout;
        let mut master = Master::new(mc);
        let now = Instant::now();
        for (id, slot) in core.agents.iter() {
            if slot.removed {
                continue;
            }
            let cfg = slot.agent.config();
            let (executors, tasks) = slot.agent.inventory();
            master.agent_registered(
                now,
                AgentRegistration {
                    agent_id: id.clone(),
                    hostname: cfg.hostname.clone(),
                    ip: cfg.ip.clone(),
                    port: cfg.port,
                    resources: cfg.resources.clone(),
                    attributes: cfg.attributes.clone(),
                    executors,
                    tasks,
                },
            );
        }
        core.master = Some(master);
        core.leader = Some(index);
        for slot in core.agents.values_mut() {
            if !slot.removed {
                slot.agent.resend_pending_updates(now);
            }
        }
        let launches = pump_collect(&mut core, now);
        drop(core);
        run_launches(&self.shared, launches);
        Ok(addr)
    }

    /// Base URL of the leading master (`http://127.0.0.1:<port>`).
    pub fn master_url(&self) -> String {
        let core = self.shared.lock();
        let addr = core
            .leader
            .map(|i| core.masters[i])
            .unwrap_or(core.masters[0]);
        format!("http://{addr}")
    }

    /// Base URLs of every master ever started (former leaders redirect to the current one).
    pub fn master_urls(&self) -> Vec<String> {
        self.shared
            .lock()
            .masters
            .iter()
            .map(|a| format!("http://{a}"))
            .collect()
    }

    /// Agent ids in order.
    pub fn agent_ids(&self) -> Vec<String> {
        self.shared.lock().agents.keys().cloned().collect()
    }

    /// `ip:port` of an agent.
    pub fn agent_endpoint(&self, agent_id: &str) -> Option<SocketAddr> {
        self.shared.lock().agents.get(agent_id).map(|s| s.addr)
    }

    /// The work directory (sandboxes are under `slaves/<agent>/frameworks/...`).
    pub fn work_dir(&self) -> &Path {
        &self.shared.work_dir
    }

    /// Live executors: (agent, framework, executor, pid, sandbox).
    pub fn executors(&self) -> Vec<(String, String, String, Option<u32>, PathBuf)> {
        let core = self.shared.lock();
        let mut out = Vec::new();
        for (agent_id, slot) in &core.agents {
            for ((fw, ex), pid, sandbox) in slot.agent.executors() {
                out.push((agent_id.clone(), fw, ex, pid, sandbox));
            }
        }
        out
    }

    /// SIGKILLs an executor's process group (as an OOM killer or an operator would).
    pub fn kill_executor(&self, framework_id: &str, executor_id: &str) -> bool {
        let core = self.shared.lock();
        let found = core
            .processes
            .iter()
            .find(|((_, (f, e)), _)| f == framework_id && e == executor_id)
            .map(|(_, pid)| *pid);
        if let Some(pid) = found {
            launcher::kill_process_group(pid);
        }
        found.is_some()
    }

    /// Removes an agent: its executors are killed, its server stops, the master reacts.
    pub fn remove_agent(&self, agent_id: &str, how: AgentRemoval) {
        let mut core = self.shared.lock();
        let now = Instant::now();
        if let Some(slot) = core.agents.get_mut(agent_id) {
            slot.removed = true;
            slot.server.abort();
        }
        let pids: Vec<u32> = core
            .processes
            .iter()
            .filter(|((a, _), _)| a == agent_id)
            .map(|(_, p)| *p)
            .collect();
        for pid in pids {
            launcher::kill_process_group(pid);
        }
        core.executor_streams.retain(|_, (a, _, _)| a != agent_id);
        if let Some(m) = core.master.as_mut() {
            m.remove_agent(now, agent_id, how);
        }
        let launches = pump_collect(&mut core, now);
        drop(core);
        run_launches(&self.shared, launches);
    }

    /// Fails the leading master over: every framework stream closes, the old master answers
    /// 503 during `gap`, then a new leader starts on a new port (the old one then answers 307
    /// to it) and the agents re-register with their tasks. Returns the new leader's URL.
    pub async fn fail_over_master(&self, gap: Duration) -> Result<String, ClusterError> {
        {
            let mut core = self.shared.lock();
            core.master = None;
            core.leader = None;
            for (_, s) in core.streams.drain() {
                let _ = s.tx.send(Chunk::End);
            }
        }
        tokio::time::sleep(gap).await;
        let addr = self.start_master()?;
        Ok(format!("http://{addr}"))
    }

    /// Installs a filter deciding, per framework id and event, to deliver, drop or delay.
    pub fn set_event_filter(
        &self,
        filter: impl FnMut(&str, &sched::Event) -> Delivery + Send + 'static,
    ) {
        self.shared.lock().filter = Some(Box::new(filter));
    }

    /// Removes the event filter.
    pub fn clear_event_filter(&self) {
        self.shared.lock().filter = None;
    }

    /// Sets the heartbeat interval for subscriptions made from now on.
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        let mut core = self.shared.lock();
        core.config.heartbeat_interval = interval;
        if let Some(m) = core.master.as_mut() {
            m.set_heartbeat_interval(interval);
        }
    }

    /// Writes raw bytes into a framework's event stream (to test clients against garbage).
    pub fn inject_raw(&self, framework_id: &str, bytes: Bytes) -> bool {
        let core = self.shared.lock();
        let Some(stream) = core.master.as_ref().and_then(|m| m.stream_of(framework_id)) else {
            return false;
        };
        core.streams
            .get(&stream)
            .is_some_and(|s| s.tx.send(Chunk::Data(bytes)).is_ok())
    }

    /// Ends a framework's event stream from the master side (a dropped connection).
    pub fn close_stream(&self, framework_id: &str) -> bool {
        let mut core = self.shared.lock();
        let Some(stream) = core.master.as_ref().and_then(|m| m.stream_of(framework_id)) else {
            return false;
        };
        match core.streams.remove(&stream) {
            Some(s) => s.tx.send(Chunk::End).is_ok(),
            None => false,
        }
    }

    /// The master's view of a task's state.
    pub fn task_state(&self, framework_id: &str, task_id: &str) -> Option<v1::TaskState> {
        let core = self.shared.lock();
        core.master
            .as_ref()?
            .task_state(framework_id, task_id)
            .and_then(|s| v1::TaskState::try_from(s).ok())
    }

    /// What the leading master knows of a framework: suppression, declines, tasks.
    pub fn framework_view(&self, framework_id: &str) -> Option<crate::master::FrameworkView> {
        let core = self.shared.lock();
        core.master.as_ref()?.framework_view(framework_id)
    }

    /// Status updates of a framework that agents still hold for want of an acknowledgement.
    pub fn unacknowledged_updates(&self, framework_id: &str) -> usize {
        let core = self.shared.lock();
        core.agents
            .values()
            .map(|slot| slot.agent.unacknowledged_updates(framework_id))
            .sum()
    }

    /// Framework ids the leading master knows.
    pub fn framework_ids(&self) -> Vec<String> {
        let core = self.shared.lock();
        core.master
            .as_ref()
            .map(|m| m.framework_ids())
            .unwrap_or_default()
    }

    /// Stops servers and kills every executor process.
    pub fn shutdown(&self) {
        let mut core = self.shared.lock();
        for pid in core.processes.values() {
            launcher::kill_process_group(*pid);
        }
        core.processes.clear();
        for s in core.master_servers.drain(..) {
            s.abort();
        }
        for slot in core.agents.values() {
            slot.server.abort();
        }
        core.streams.clear();
        core.executor_streams.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
        self.ticker.abort();
    }
}

async fn ticker(shared: std::sync::Weak<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut core = shared.lock();
        let now = Instant::now();
        if let Some(m) = core.master.as_mut()
            && m.poll_timeout().is_some_and(|t| t <= now)
        {
            m.tick(now);
        }
        for slot in core.agents.values_mut() {
            if !slot.removed && slot.agent.poll_timeout().is_some_and(|t| t <= now) {
                slot.agent.tick(now);
            }
        }
        let work = pump_collect(&mut core, now);
        drop(core);
        run_launches(&shared, work);
    }
}

/// Routes outputs until the state machines are quiet. Container launches are returned for the
/// caller to start outside the lock.
fn pump_collect(core: &mut Core, now: Instant) -> Vec<(String, LaunchRequest)> {
    let mut launches = Vec::new();
    loop {
        let mut progressed = false;
        while let Some(out) = core.master.as_mut().and_then(|m| m.poll_output()) {
            progressed = true;
            match out {
                Output::Event { stream, event } => deliver_event(core, &stream, event),
                Output::CloseStream { stream } => {
                    if let Some(s) = core.streams.remove(&stream) {
                        let _ = s.tx.send(Chunk::End);
                    }
                }
                Output::ToAgent { agent, command } => {
                    if let Some(slot) = core.agents.get_mut(&agent).filter(|s| !s.removed) {
                        apply_command(&mut slot.agent, now, command);
                    }
                }
            }
        }
        let ids: Vec<String> = core.agents.keys().cloned().collect();
        for id in ids {
            while let Some(slot) = core.agents.get_mut(&id) {
                if slot.removed {
                    while slot.agent.poll_output().is_some() {}
                    break;
                }
                let Some(out) = slot.agent.poll_output() else {
                    break;
                };
                progressed = true;
                match out {
                    AgentOutput::ToMaster(msg) => {
                        if let Some(m) = core.master.as_mut() {
                            match msg {
                                ToMaster::StatusUpdate {
                                    framework_id,
                                    status,
                                } => m.status_update_for(now, &id, &framework_id, status),
                                ToMaster::ExecutorExited {
                                    framework_id,
                                    executor_id,
                                    status,
                                } => {
                                    // Like the agent: -1 when there is no wait status.
                                    let status = status.unwrap_or(-1);
                                    m.executor_exited(
                                        now,
                                        &id,
                                        &framework_id,
                                        &executor_id,
                                        status,
                                    );
                                }
                                ToMaster::Message {
                                    framework_id,
                                    executor_id,
                                    data,
                                } => m.executor_message(&id, &framework_id, &executor_id, data),
                            }
                        }
                    }
                    AgentOutput::ExecutorEvent { connection, event } => {
                        if let Some((_, tx, format)) = core.executor_streams.get(&connection)
                            && let Some(frame) = encode_event(
                                *format,
                                "mesos.v1.executor.Event",
                                &event.encode_to_vec(),
                            )
                        {
                            let _ = tx.send(Chunk::Data(frame));
                        }
                    }
                    AgentOutput::CloseConnection { connection } => {
                        if let Some((_, tx, _)) = core.executor_streams.remove(&connection) {
                            let _ = tx.send(Chunk::End);
                        }
                    }
                    AgentOutput::Launch(request) => launches.push((id.clone(), request)),
                    AgentOutput::Destroy { pid, .. } => launcher::kill_process_group(pid),
                }
            }
        }
        if !progressed {
            return launches;
        }
    }
}

/// Pumps and queues the container launches in the core; [`start_pending_launches`] starts
/// them once the lock is released.
fn pump(core: &mut Core, now: Instant) {
    let launches = pump_collect(core, now);
    core.pending_launches.extend(launches);
}

/// Starts the launches queued by [`pump`] (call without holding the lock).
fn start_pending_launches(shared: &Arc<Shared>) {
    let launches = std::mem::take(&mut shared.lock().pending_launches);
    run_launches(shared, launches);
}

fn apply_command(agent: &mut Agent, now: Instant, command: AgentCommand) {
    match command {
        AgentCommand::RunTasks {
            framework,
            executor,
            tasks,
            group,
        } => agent.run_tasks(now, framework, executor, tasks, group),
        AgentCommand::KillTask {
            framework_id,
            task_id,
            kill_policy,
        } => agent.kill_task(now, &framework_id, &task_id, kill_policy),
        AgentCommand::ShutdownExecutor {
            framework_id,
            executor_id,
        } => agent.shutdown_executor(now, &framework_id, &executor_id),
        AgentCommand::ShutdownFramework { framework_id } => {
            agent.shutdown_framework(now, &framework_id)
        }
        AgentCommand::Acknowledge {
            framework_id,
            task_id,
            uuid,
        } => agent.acknowledge(now, &framework_id, &task_id, &uuid),
        AgentCommand::Message {
            framework_id,
            executor_id,
            data,
        } => agent.framework_message(&framework_id, &executor_id, data),
    }
}

fn deliver_event(core: &mut Core, stream: &str, event: sched::Event) {
    let framework_id = core
        .master
        .as_ref()
        .and_then(|m| m.framework_of_stream(stream))
        .unwrap_or_default();
    let verdict = match core.filter.as_mut() {
        Some(f) => f(&framework_id, &event),
        None => Delivery::Deliver,
    };
    let Some(s) = core.streams.get(stream) else {
        return;
    };
    let Some(frame) = encode_event(s.format, "mesos.v1.scheduler.Event", &event.encode_to_vec())
    else {
        return;
    };
    match verdict {
        Delivery::Deliver => {
            let _ = s.tx.send(Chunk::Data(frame));
        }
        Delivery::Drop => tracing::debug!(framework_id, "event dropped by test hook"),
        Delivery::Delay(d) => {
            let tx = s.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = tx.send(Chunk::Data(frame));
            });
        }
    }
}

/// Fetches and starts containers, then waits for their exit; all outside the lock.
fn run_launches(shared: &Arc<Shared>, launches: Vec<(String, LaunchRequest)>) {
    for (agent_id, request) in launches {
        let shared = shared.clone();
        tokio::spawn(async move {
            let key = request.key.clone();
            let result = async {
                tokio::fs::create_dir_all(&request.sandbox)
                    .await
                    .map_err(|e| {
                        format!("cannot create sandbox '{}': {e}", request.sandbox.display())
                    })?;
                shared
                    .fetcher
                    .fetch_all(&request.uris, &request.sandbox, &request.user)
                    .await
                    .map_err(|e| e.to_string())?;
                launcher::spawn(&request.command, &request.environment, &request.sandbox)
                    .map_err(|e| e.to_string())
            }
            .await;
            let process = {
                let mut core = shared.lock();
                let now = Instant::now();
                let process = match result {
                    Ok(process) => {
                        core.processes
                            .insert((agent_id.clone(), key.clone()), process.pid);
                        if let Some(slot) = core.agents.get_mut(&agent_id) {
                            slot.agent.container_started(now, &key, process.pid);
                        }
                        Some(process)
                    }
                    Err(message) => {
                        tracing::warn!(executor = %key.1, %message, "container launch failed");
                        if let Some(slot) = core.agents.get_mut(&agent_id) {
                            slot.agent.container_failed(now, &key, &message);
                        }
                        None
                    }
                };
                pump(&mut core, now);
                process
            };
            start_pending_launches(&shared);
            let Some(process) = process else {
                return;
            };
            let status = process.wait().await;
            {
                let mut core = shared.lock();
                let now = Instant::now();
                core.processes.remove(&(agent_id.clone(), key.clone()));
                if let Some(slot) = core.agents.get_mut(&agent_id) {
                    slot.agent.container_exited(now, &key, status);
                }
                pump(&mut core, now);
            }
            start_pending_launches(&shared);
        });
    }
}

/// Frames one event in the stream's negotiated format.
fn encode_event(format: Format, full_name: &str, protobuf: &[u8]) -> Option<Bytes> {
    match format {
        Format::Protobuf => Some(http::recordio_frame(protobuf)),
        Format::Json => match json::to_json(full_name, protobuf) {
            Ok(text) => Some(http::recordio_frame(text.as_bytes())),
            Err(error) => {
                tracing::error!(%error, "cannot write event as JSON");
                None
            }
        },
    }
}

/// Decodes a request body in either format into a `Call`.
fn decode_call<M: prost::Message + Default>(
    format: Format,
    full_name: &str,
    body: &[u8],
) -> Result<M, Rejection> {
    let protobuf = match format {
        Format::Protobuf => {
            json::check_required(full_name, body).map_err(|e| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to parse body into Call protobuf: {e}"),
                )
            })?;
            std::borrow::Cow::Borrowed(body)
        }
        Format::Json => std::borrow::Cow::Owned(json::from_json(full_name, body).map_err(|e| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                format!("Failed to convert JSON into Call protobuf: {e}"),
            )
        })?),
    };
    M::decode(protobuf.as_ref()).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse body into Call protobuf: {e}"),
        )
    })
}

// --------------------------------------------------------------------------------------------
// HTTP handlers
// --------------------------------------------------------------------------------------------

/// Checks `Authorization: Basic` against the credentials; `Ok(None)` when auth is off.
fn authenticate(core: &Core, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    let Some(credentials) = &core.config.credentials else {
        return Ok(None);
    };
    let unauthorized = || {
        let mut r = (StatusCode::UNAUTHORIZED, "").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mesos-master-scheduler\""),
        );
        Box::new(r)
    };
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some(decoded) = decoded else {
        return Err(unauthorized());
    };
    let Some((principal, secret)) = decoded.split_once(':') else {
        return Err(unauthorized());
    };
    if credentials
        .iter()
        .any(|(p, s)| p == principal && s == secret)
    {
        Ok(Some(principal.to_string()))
    } else {
        Err(unauthorized())
    }
}

async fn scheduler_handler(
    State((shared, index)): State<(Arc<Shared>, usize)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = scheduler_request(&shared, index, &method, &headers, &body);
    start_pending_launches(&shared);
    response
}

fn scheduler_request(
    shared: &Arc<Shared>,
    index: usize,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut core = shared.lock();
    let principal = match authenticate(&core, headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if core.leader != Some(index) || core.master.is_none() {
        return match core.leader {
            Some(leader) => {
                let addr = core.masters[leader];
                let mut r = (StatusCode::TEMPORARY_REDIRECT, "").into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("//{addr}/master/api/v1/scheduler")) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            None => (StatusCode::SERVICE_UNAVAILABLE, "No leader elected").into_response(),
        };
    }
    let format = match http::request_format(method, headers) {
        Ok(f) => f,
        Err(r) => return rejection(r),
    };
    let call: sched::Call = match decode_call(format, "mesos.v1.scheduler.Call", body) {
        Ok(c) => c,
        Err(r) => return rejection(r),
    };
    let now = Instant::now();
    let is_subscribe = call.r#type == Some(sched::call::Type::Subscribe as i32);
    if is_subscribe {
        if let Some(m) = core.master.as_ref()
            && let Err(r) = m.validate_subscribe(&call, principal.as_deref())
        {
            return rejection(r);
        }
        let stream_format = match http::stream_format(headers) {
            Ok(f) => f,
            Err(r) => return rejection(r),
        };
        let stream_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        core.streams.insert(
            stream_id.clone(),
            FrameworkStream {
                tx: tx.clone(),
                format: stream_format,
            },
        );
        let has_stream_header = headers.contains_key("Mesos-Stream-Id");
        let Some(master) = core.master.as_mut() else {
            return (StatusCode::SERVICE_UNAVAILABLE, "No leader elected").into_response();
        };
        if let Err(r) = master.subscribe(
            now,
            &call,
            principal.as_deref(),
            has_stream_header,
            stream_id.clone(),
        ) {
            core.streams.remove(&stream_id);
            return rejection(r);
        }
        pump(&mut core, now);
        drop(core);
        // When the client goes away, the master marks the framework disconnected.
        let watcher_shared = Arc::downgrade(shared);
        let watched = stream_id.clone();
        tokio::spawn(async move {
            tx.closed().await;
            if let Some(shared) = watcher_shared.upgrade() {
                let mut core = shared.lock();
                core.streams.remove(&watched);
                let now = Instant::now();
                if let Some(m) = core.master.as_mut() {
                    m.stream_closed(now, &watched);
                }
                pump(&mut core, now);
                drop(core);
                start_pending_launches(&shared);
            }
        });
        return stream_response(stream_format, Some(("mesos-stream-id", stream_id)), rx);
    }
    let stream_id = headers
        .get("Mesos-Stream-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(master) = core.master.as_mut() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "No leader elected").into_response();
    };
    let result = master.call(now, &call, principal.as_deref(), stream_id.as_deref());
    pump(&mut core, now);
    match result {
        Ok(CallReply::Accepted) => StatusCode::ACCEPTED.into_response(),
        Ok(CallReply::Ok) => StatusCode::OK.into_response(),
        Ok(CallReply::NotImplemented) => StatusCode::NOT_IMPLEMENTED.into_response(),
        Err(r) => rejection(r),
    }
}

async fn executor_handler(
    State((shared, agent_id)): State<(Arc<Shared>, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = executor_request(&shared, &agent_id, &method, &headers, &body);
    start_pending_launches(&shared);
    response
}

fn executor_request(
    shared: &Arc<Shared>,
    agent_id: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let format = match http::request_format(method, headers) {
        Ok(f) => f,
        Err(r) => return rejection(r),
    };
    let call: v1::executor::Call = match decode_call(format, "mesos.v1.executor.Call", body) {
        Ok(c) => c,
        Err(r) => return rejection(r),
    };
    let mut core = shared.lock();
    let now = Instant::now();
    if call.r#type == Some(v1::executor::call::Type::Subscribe as i32) {
        let stream_format = match http::stream_format(headers) {
            Ok(f) => f,
            Err(r) => return rejection(r),
        };
        let connection = core.next_connection;
        core.next_connection += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        core.executor_streams.insert(
            connection,
            (agent_id.to_string(), tx.clone(), stream_format),
        );
        let Some(slot) = core.agents.get_mut(agent_id).filter(|s| !s.removed) else {
            return (StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down").into_response();
        };
        if let Err(r) = slot.agent.executor_subscribe(now, &call, connection) {
            core.executor_streams.remove(&connection);
            return rejection(r);
        }
        pump(&mut core, now);
        drop(core);
        let watcher_shared = Arc::downgrade(shared);
        let agent = agent_id.to_string();
        tokio::spawn(async move {
            tx.closed().await;
            if let Some(shared) = watcher_shared.upgrade() {
                let mut core = shared.lock();
                core.executor_streams.remove(&connection);
                if let Some(slot) = core.agents.get_mut(&agent) {
                    slot.agent.executor_disconnected(connection);
                }
            }
        });
        return stream_response(stream_format, None, rx);
    }
    let Some(slot) = core.agents.get_mut(agent_id).filter(|s| !s.removed) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down").into_response();
    };
    let result = slot.agent.executor_call(now, &call);
    pump(&mut core, now);
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(r) => rejection(r),
    }
}
