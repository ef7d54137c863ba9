//! The test agent: the executor API (`/api/v1/executor`) and the life of executors, as a pure
//! state machine, plus its I/O helpers ([`fetcher`], [`launcher`]).
//!
//! Commands from the master and calls from executors go in, with `now`; out come events for
//! executor streams, messages for the master, and container actions (fetch and launch, destroy)
//! that the shell performs and reports back. Behaviour follows the Mesos 1.11 agent
//! (`src/slave/slave.cpp`, `src/slave/http.cpp`, `src/slave/validation.cpp`): strict UPDATE
//! validation, ACKNOWLEDGED once an update is accepted, updates forwarded one at a time per task
//! and retried until the scheduler acknowledges them, SHUTDOWN with the grace period and then a
//! SIGKILL of the container, and an exited executor's live tasks turned into TASK_FAILED.

pub mod fetcher;
pub mod launcher;
pub mod status_updates;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use mesoflow_proto::mesos::v1;
use v1::TaskState;
use v1::executor as exec;
use v1::executor::call::Type as CallType;
use v1::executor::event::Type as EventType;
use v1::task_status::{Reason, Source};

use crate::http::Rejection;
use crate::resources::{AttributeValue, Resources};
use crate::wire;
use fetcher::FetchUri;
use launcher::{CommandSpec, HOST_DEFAULT_PATH, mesos_duration};
use status_updates::StatusUpdateManager;

/// (framework id, executor id).
pub type ExecutorKey = (String, String);

/// Agent settings (the flags of `mesos-agent` that matter here).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub agent_id: String,
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    /// `--work_dir`: sandboxes live under `<work_dir>/slaves/<agent>/...`.
    pub work_dir: PathBuf,
    pub resources: Resources,
    pub attributes: Vec<(String, AttributeValue)>,
    /// `--executor_shutdown_grace_period` (5 s).
    pub executor_shutdown_grace_period: Duration,
    /// `--executor_registration_timeout` (1 min).
    pub executor_registration_timeout: Duration,
    /// `--recovery_timeout` (15 min), exported to checkpointing executors.
    pub recovery_timeout: Duration,
    /// `--executor_reregistration_timeout` (2 s), exported as MESOS_SUBSCRIPTION_BACKOFF_MAX.
    pub executor_reregistration_timeout: Duration,
    /// First retry of an unacknowledged status update (10 s), doubling up to `status_update_retry_max`.
    pub status_update_retry_min: Duration,
    pub status_update_retry_max: Duration,
    /// `--executor_environment_variables`.
    pub executor_environment_variables: BTreeMap<String, String>,
    /// Interval of HEARTBEAT events on executor streams (a 30 min agent constant since 1.8;
    /// they only keep intermediaries from closing idle connections).
    pub executor_heartbeat_interval: Duration,
}

impl AgentConfig {
    /// A real agent's defaults.
    pub fn new(
        agent_id: &str,
        ip: &str,
        port: u16,
        work_dir: PathBuf,
        resources: Resources,
    ) -> Self {
        Self {
            agent_id: agent_id.to_string(),
            hostname: ip.to_string(),
            ip: ip.to_string(),
            port,
            work_dir,
            resources,
            attributes: Vec::new(),
            executor_shutdown_grace_period: Duration::from_secs(5),
            executor_registration_timeout: Duration::from_secs(60),
            recovery_timeout: Duration::from_secs(15 * 60),
            executor_reregistration_timeout: Duration::from_secs(2),
            status_update_retry_min: Duration::from_secs(10),
            status_update_retry_max: Duration::from_secs(600),
            executor_environment_variables: BTreeMap::new(),
            executor_heartbeat_interval: Duration::from_secs(30 * 60),
        }
    }
}

/// Messages for the master.
// Short-lived queue items: boxing the protobuf payloads would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ToMaster {
    StatusUpdate {
        framework_id: String,
        status: v1::TaskStatus,
    },
    /// `status` is the raw wait status; `None` when the executor never started.
    ExecutorExited {
        framework_id: String,
        executor_id: String,
        status: Option<i32>,
    },
    Message {
        framework_id: String,
        executor_id: String,
        data: Bytes,
    },
}

/// A container to fetch and start.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    pub key: ExecutorKey,
    pub container_id: String,
    pub sandbox: PathBuf,
    pub uris: Vec<FetchUri>,
    pub user: String,
    pub command: CommandSpec,
    pub environment: BTreeMap<String, String>,
}

/// Outputs of the agent state machine.
// Short-lived queue items: boxing the protobuf payloads would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutput {
    ToMaster(ToMaster),
    /// Write `event` on executor connection `connection`.
    ExecutorEvent {
        connection: u64,
        event: exec::Event,
    },
    /// Close executor connection `connection` (after its queued events).
    CloseConnection {
        connection: u64,
    },
    /// Fetch and start a container; report back with `container_started` / `container_failed`.
    Launch(LaunchRequest),
    /// SIGKILL the container's process group; its exit is reported with `container_exited`.
    Destroy {
        key: ExecutorKey,
        pid: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Fetching and starting.
    Launching,
    /// The process runs.
    Running,
    /// SHUTDOWN sent or requested; destroyed at the deadline.
    Terminating,
}

#[derive(Debug)]
struct TaskRecord {
    info: v1::TaskInfo,
    state: Option<i32>,
    delivered: bool,
}

#[derive(Debug)]
struct Executor {
    info: v1::ExecutorInfo,
    container_id: String,
    sandbox: PathBuf,
    phase: Phase,
    pid: Option<u32>,
    connection: Option<u64>,
    /// Whether it ever subscribed (the registration timeout only applies before that).
    subscribed_once: bool,
    /// When the next HEARTBEAT event is due on the current connection.
    next_heartbeat: Option<Instant>,
    started_at: Instant,
    /// Launches to deliver once the executor subscribes: (task ids, group?).
    queued: VecDeque<(Vec<String>, bool)>,
    tasks: BTreeMap<String, TaskRecord>,
    destroy_at: Option<Instant>,
    /// Reason given to live tasks when the container goes away.
    termination_reason: Reason,
}

/// The agent state machine.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    frameworks: HashMap<String, v1::FrameworkInfo>,
    executors: HashMap<ExecutorKey, Executor>,
    updates: StatusUpdateManager,
    outputs: VecDeque<AgentOutput>,
}

fn exec_event(kind: EventType) -> exec::Event {
    exec::Event {
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

fn bad(message: impl Into<String>) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, message)
}

impl Agent {
    pub fn new(config: AgentConfig) -> Self {
        let updates = StatusUpdateManager::new(
            config.status_update_retry_min,
            config.status_update_retry_max,
        );
        Self {
            config,
            frameworks: HashMap::new(),
            executors: HashMap::new(),
            updates,
            outputs: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<AgentOutput> {
        self.outputs.pop_front()
    }

    /// `AgentInfo` as sent to executors.
    pub fn agent_info(&self) -> v1::AgentInfo {
        v1::AgentInfo {
            hostname: self.config.hostname.clone(),
            port: Some(i32::from(self.config.port)),
            resources: wire::to_proto(&self.config.resources, "*", Default::default()),
            attributes: wire::attributes_to_proto(&self.config.attributes),
            id: Some(v1::AgentId {
                value: self.config.agent_id.clone(),
            }),
            ..Default::default()
        }
    }

    /// Executors and tasks to report when registering with a (new) master.
    #[allow(clippy::type_complexity)]
    pub fn inventory(
        &self,
    ) -> (
        Vec<(v1::FrameworkInfo, v1::ExecutorInfo)>,
        Vec<(v1::FrameworkInfo, v1::TaskInfo, i32)>,
    ) {
        let mut executors = Vec::new();
        let mut tasks = Vec::new();
        for ((fw, _), e) in &self.executors {
            let Some(info) = self.frameworks.get(fw) else {
                continue;
            };
            executors.push((info.clone(), e.info.clone()));
            for t in e.tasks.values() {
                tasks.push((
                    info.clone(),
                    t.info.clone(),
                    t.state.unwrap_or(TaskState::TaskStaging as i32),
                ));
            }
        }
        (executors, tasks)
    }

    /// Re-sends every unacknowledged update (after registering with a new master).
    pub fn resend_pending_updates(&mut self, now: Instant) {
        for (framework_id, status) in self.updates.heads(now) {
            self.outputs
                .push_back(AgentOutput::ToMaster(ToMaster::StatusUpdate {
                    framework_id,
                    status,
                }));
        }
    }

    /// Status updates of a framework still waiting for its acknowledgement (a test hook).
    pub fn unacknowledged_updates(&self, framework_id: &str) -> usize {
        self.updates.pending_of(framework_id)
    }

    /// Live executors (for test hooks): key, pid, sandbox.
    pub fn executors(&self) -> Vec<(ExecutorKey, Option<u32>, PathBuf)> {
        self.executors
            .iter()
            .map(|(k, e)| (k.clone(), e.pid, e.sandbox.clone()))
            .collect()
    }

    fn sandbox_path(&self, framework_id: &str, executor_id: &str, container_id: &str) -> PathBuf {
        self.config
            .work_dir
            .join("slaves")
            .join(&self.config.agent_id)
            .join("frameworks")
            .join(framework_id)
            .join("executors")
            .join(executor_id)
            .join("runs")
            .join(container_id)
    }

    /// The environment a real agent gives a custom executor (`executorEnvironment()`), and
    /// nothing of the agent's own.
    pub fn executor_environment(
        &self,
        framework: &v1::FrameworkInfo,
        executor: &v1::ExecutorInfo,
        sandbox: &std::path::Path,
    ) -> BTreeMap<String, String> {
        let mut env = self.config.executor_environment_variables.clone();
        env.entry("PATH".into())
            .or_insert_with(|| HOST_DEFAULT_PATH.to_string());
        let checkpoint = framework.checkpoint.unwrap_or(false);
        let sandbox = sandbox.display().to_string();
        let endpoint = format!("{}:{}", self.config.ip, self.config.port);
        let grace = executor
            .shutdown_grace_period
            .as_ref()
            .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
            .unwrap_or(self.config.executor_shutdown_grace_period);
        let fw_id = framework
            .id
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_default();
        env.insert("MESOS_FRAMEWORK_ID".into(), fw_id);
        env.insert(
            "MESOS_EXECUTOR_ID".into(),
            executor.executor_id.value.clone(),
        );
        env.insert("MESOS_DIRECTORY".into(), sandbox.clone());
        env.insert("MESOS_SANDBOX".into(), sandbox);
        env.insert("MESOS_AGENT_ENDPOINT".into(), endpoint.clone());
        env.insert("MESOS_SLAVE_PID".into(), format!("slave(1)@{endpoint}"));
        env.insert("MESOS_SLAVE_ID".into(), self.config.agent_id.clone());
        env.insert(
            "MESOS_CHECKPOINT".into(),
            if checkpoint { "1" } else { "0" }.into(),
        );
        if checkpoint {
            env.insert(
                "MESOS_RECOVERY_TIMEOUT".into(),
                mesos_duration(self.config.recovery_timeout),
            );
            env.insert(
                "MESOS_SUBSCRIPTION_BACKOFF_MAX".into(),
                mesos_duration(self.config.executor_reregistration_timeout),
            );
        }
        env.insert(
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
            mesos_duration(grace),
        );
        env.insert("MESOS_HTTP_COMMAND_EXECUTOR".into(), "0".into());
        env.insert("LIBPROCESS_PORT".into(), "0".into());
        // The ExecutorInfo's own environment has the highest priority.
        if let Some(vars) = executor
            .command
            .as_ref()
            .and_then(|c| c.environment.as_ref())
        {
            for var in &vars.variables {
                if let Some(value) = &var.value {
                    env.insert(var.name.clone(), value.clone());
                }
            }
        }
        env
    }

    fn grace_period(&self, info: &v1::ExecutorInfo) -> Duration {
        info.shutdown_grace_period
            .as_ref()
            .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
            .unwrap_or(self.config.executor_shutdown_grace_period)
    }

    // ----------------------------------------------------------------------------------------
    // Commands from the master
    // ----------------------------------------------------------------------------------------

    /// Runs tasks on an executor, starting the executor's container if needed.
    pub fn run_tasks(
        &mut self,
        now: Instant,
        framework: v1::FrameworkInfo,
        executor: v1::ExecutorInfo,
        tasks: Vec<v1::TaskInfo>,
        group: bool,
    ) {
        let fw_id = framework
            .id
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_default();
        self.frameworks.insert(fw_id.clone(), framework.clone());
        let key = (fw_id.clone(), executor.executor_id.value.clone());
        if self
            .executors
            .get(&key)
            .is_some_and(|e| e.phase == Phase::Terminating)
        {
            for t in &tasks {
                let status = self.agent_status(
                    &fw_id,
                    &t.task_id.value,
                    Some(&executor.executor_id.value),
                    TaskState::TaskLost,
                    Reason::ExecutorTerminated,
                    "Executor is terminating",
                );
                self.send_update(now, &fw_id, status);
            }
            return;
        }
        if !self.executors.contains_key(&key) {
            let container_id = uuid::Uuid::new_v4().to_string();
            let sandbox = self.sandbox_path(&fw_id, &executor.executor_id.value, &container_id);
            let command = executor.command.clone().unwrap_or_default();
            let request = LaunchRequest {
                key: key.clone(),
                container_id: container_id.clone(),
                sandbox: sandbox.clone(),
                uris: command
                    .uris
                    .iter()
                    .map(|u| FetchUri {
                        value: u.value.clone(),
                        executable: u.executable.unwrap_or(false),
                        extract: u.extract.unwrap_or(true),
                        cache: u.cache.unwrap_or(false),
                        output_file: u.output_file.clone(),
                    })
                    .collect(),
                user: command
                    .user
                    .clone()
                    .unwrap_or_else(|| framework.user.clone()),
                command: CommandSpec {
                    shell: command.shell.unwrap_or(true),
                    value: command.value.clone().unwrap_or_default(),
                    arguments: command.arguments.clone(),
                },
                environment: self.executor_environment(&framework, &executor, &sandbox),
            };
            self.executors.insert(
                key.clone(),
                Executor {
                    info: executor.clone(),
                    container_id,
                    sandbox,
                    phase: Phase::Launching,
                    pid: None,
                    connection: None,
                    subscribed_once: false,
                    next_heartbeat: None,
                    started_at: now,
                    queued: VecDeque::new(),
                    tasks: BTreeMap::new(),
                    destroy_at: None,
                    termination_reason: Reason::ExecutorTerminated,
                },
            );
            self.outputs.push_back(AgentOutput::Launch(request));
        }
        let Some(e) = self.executors.get_mut(&key) else {
            return;
        };
        let ids: Vec<String> = tasks.iter().map(|t| t.task_id.value.clone()).collect();
        for t in tasks {
            e.tasks.insert(
                t.task_id.value.clone(),
                TaskRecord {
                    info: t,
                    state: None,
                    delivered: false,
                },
            );
        }
        e.queued.push_back((ids, group));
        self.deliver_queued(&key);
    }

    fn deliver_queued(&mut self, key: &ExecutorKey) {
        let Some(e) = self.executors.get_mut(key) else {
            return;
        };
        let Some(connection) = e.connection else {
            return;
        };
        while let Some((ids, group)) = e.queued.pop_front() {
            let mut infos = Vec::new();
            for id in &ids {
                if let Some(t) = e.tasks.get_mut(id) {
                    t.delivered = true;
                    infos.push(t.info.clone());
                }
            }
            if infos.is_empty() {
                continue;
            }
            if group {
                self.outputs.push_back(AgentOutput::ExecutorEvent {
                    connection,
                    event: exec::Event {
                        launch_group: Some(exec::event::LaunchGroup {
                            task_group: v1::TaskGroupInfo { tasks: infos },
                        }),
                        ..exec_event(EventType::LaunchGroup)
                    },
                });
            } else {
                for task in infos {
                    self.outputs.push_back(AgentOutput::ExecutorEvent {
                        connection,
                        event: exec::Event {
                            launch: Some(exec::event::Launch { task }),
                            ..exec_event(EventType::Launch)
                        },
                    });
                }
            }
        }
    }

    /// KILL from the scheduler.
    pub fn kill_task(
        &mut self,
        now: Instant,
        framework_id: &str,
        task_id: &str,
        kill_policy: Option<v1::KillPolicy>,
    ) {
        let Some((key, delivered)) = self.executors.iter().find_map(|(k, e)| {
            (k.0 == framework_id)
                .then(|| e.tasks.get(task_id).map(|t| (k.clone(), t.delivered)))
                .flatten()
        }) else {
            tracing::warn!(framework_id, task_id, "cannot kill unknown task");
            return;
        };
        if delivered {
            if let Some(connection) = self.executors.get(&key).and_then(|e| e.connection) {
                self.outputs.push_back(AgentOutput::ExecutorEvent {
                    connection,
                    event: exec::Event {
                        kill: Some(exec::event::Kill {
                            task_id: v1::TaskId {
                                value: task_id.to_string(),
                            },
                            kill_policy,
                        }),
                        ..exec_event(EventType::Kill)
                    },
                });
            }
            return;
        }
        // Not delivered yet: the agent kills it itself; a group goes as a whole.
        let group: Vec<String> = self
            .executors
            .get(&key)
            .and_then(|e| {
                e.queued
                    .iter()
                    .find(|(ids, _)| ids.iter().any(|i| i == task_id))
                    .map(|(ids, _)| ids.clone())
            })
            .unwrap_or_else(|| vec![task_id.to_string()]);
        if let Some(e) = self.executors.get_mut(&key) {
            e.queued
                .retain(|(ids, _)| !ids.iter().any(|i| group.contains(i)));
        }
        for id in &group {
            let status = self.agent_status(
                framework_id,
                id,
                Some(&key.1),
                TaskState::TaskKilled,
                Reason::TaskKilledDuringLaunch,
                "Killed before delivery to the executor",
            );
            self.send_update(now, framework_id, status);
        }
        let idle = self.executors.get(&key).is_some_and(|e| {
            e.tasks
                .values()
                .all(|t| t.state.is_some_and(v1::is_terminal_state))
        });
        if idle {
            self.shutdown_executor(now, framework_id, &key.1);
        }
    }

    /// SHUTDOWN of one executor: SHUTDOWN event, then SIGKILL after the grace period.
    pub fn shutdown_executor(&mut self, now: Instant, framework_id: &str, executor_id: &str) {
        let key = (framework_id.to_string(), executor_id.to_string());
        let grace = match self.executors.get(&key) {
            Some(e) => self.grace_period(&e.info),
            None => return,
        };
        let Some(e) = self.executors.get_mut(&key) else {
            return;
        };
        if e.phase == Phase::Terminating {
            return;
        }
        let was_launching = e.phase == Phase::Launching;
        e.phase = Phase::Terminating;
        match e.connection {
            Some(connection) => {
                self.outputs.push_back(AgentOutput::ExecutorEvent {
                    connection,
                    event: exec_event(EventType::Shutdown),
                });
                e.destroy_at = Some(now + grace);
            }
            // Not subscribed: nothing to tell, destroy now (or as soon as it has started).
            None => {
                e.destroy_at = Some(now);
                if was_launching {
                    e.destroy_at = None;
                }
            }
        }
        self.tick(now);
    }

    /// The framework was removed: shut down its executors, forget its updates.
    pub fn shutdown_framework(&mut self, now: Instant, framework_id: &str) {
        let ids: Vec<String> = self
            .executors
            .keys()
            .filter(|(f, _)| f == framework_id)
            .map(|(_, e)| e.clone())
            .collect();
        for id in ids {
            self.shutdown_executor(now, framework_id, &id);
        }
        self.updates.remove_framework(framework_id);
    }

    /// The scheduler acknowledged an update (forwarded by the master).
    pub fn acknowledge(&mut self, now: Instant, framework_id: &str, task_id: &str, uuid: &[u8]) {
        match self.updates.acknowledge(now, framework_id, task_id, uuid) {
            Ok(Some(next)) => self.forward(framework_id, next),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "acknowledgement ignored"),
        }
        // A terminal, fully acknowledged task leaves the agent.
        if !self.updates.has_pending(framework_id, task_id) {
            for ((fw, _), e) in self.executors.iter_mut() {
                if fw == framework_id
                    && e.tasks
                        .get(task_id)
                        .is_some_and(|t| t.state.is_some_and(v1::is_terminal_state))
                {
                    e.tasks.remove(task_id);
                }
            }
        }
    }

    /// A MESSAGE from the scheduler for an executor.
    pub fn framework_message(&mut self, framework_id: &str, executor_id: &str, data: Bytes) {
        let key = (framework_id.to_string(), executor_id.to_string());
        if let Some(connection) = self.executors.get(&key).and_then(|e| e.connection) {
            self.outputs.push_back(AgentOutput::ExecutorEvent {
                connection,
                event: exec::Event {
                    message: Some(exec::event::Message { data }),
                    ..exec_event(EventType::Message)
                },
            });
        }
    }

    // ----------------------------------------------------------------------------------------
    // Container lifecycle (reported by the shell)
    // ----------------------------------------------------------------------------------------

    /// The container's process started.
    pub fn container_started(&mut self, now: Instant, key: &ExecutorKey, pid: u32) {
        let Some(e) = self.executors.get_mut(key) else {
            return;
        };
        e.pid = Some(pid);
        e.started_at = now;
        match e.phase {
            Phase::Launching => e.phase = Phase::Running,
            Phase::Terminating => {
                if e.destroy_at.is_none() {
                    e.destroy_at = Some(now);
                }
            }
            Phase::Running => {}
        }
        self.tick(now);
    }

    /// Fetching or starting failed: the tasks fail with REASON_CONTAINER_LAUNCH_FAILED.
    pub fn container_failed(&mut self, now: Instant, key: &ExecutorKey, message: &str) {
        if let Some(e) = self.executors.get_mut(key) {
            e.termination_reason = Reason::ContainerLaunchFailed;
        }
        self.terminate(
            now,
            key,
            None,
            &format!("Failed to launch container: {message}"),
        );
    }

    /// The container's process exited with raw wait status `status`.
    pub fn container_exited(&mut self, now: Instant, key: &ExecutorKey, status: i32) {
        self.terminate(now, key, Some(status), "Executor terminated");
    }

    fn terminate(&mut self, now: Instant, key: &ExecutorKey, status: Option<i32>, message: &str) {
        let Some(e) = self.executors.remove(key) else {
            return;
        };
        let (framework_id, executor_id) = key.clone();
        for (task_id, task) in &e.tasks {
            if task.state.is_some_and(v1::is_terminal_state) {
                continue;
            }
            let status = self.agent_status(
                &framework_id,
                task_id,
                Some(&executor_id),
                TaskState::TaskFailed,
                e.termination_reason,
                message,
            );
            self.send_update(now, &framework_id, status);
        }
        if let Some(connection) = e.connection {
            self.outputs
                .push_back(AgentOutput::CloseConnection { connection });
        }
        self.outputs
            .push_back(AgentOutput::ToMaster(ToMaster::ExecutorExited {
                framework_id,
                executor_id,
                status,
            }));
    }

    // ----------------------------------------------------------------------------------------
    // Executor API
    // ----------------------------------------------------------------------------------------

    fn validate_executor_call(
        &self,
        call: &exec::Call,
    ) -> Result<(CallType, ExecutorKey), Rejection> {
        let Some(kind) = call.r#type else {
            return Err(bad("Expecting 'type' to be present"));
        };
        let kind = CallType::try_from(kind).unwrap_or(CallType::Unknown);
        if call.executor_id.value.is_empty() {
            return Err(bad("Expecting 'executor_id' to be present"));
        }
        if call.framework_id.value.is_empty() {
            return Err(bad("Expecting 'framework_id' to be present"));
        }
        match kind {
            CallType::Subscribe if call.subscribe.is_none() => {
                return Err(bad("Expecting 'subscribe' to be present"));
            }
            CallType::Update => {
                let Some(update) = &call.update else {
                    return Err(bad("Expecting 'update' to be present"));
                };
                let status = &update.status;
                match &status.uuid {
                    None => return Err(bad("Expecting 'uuid' to be present")),
                    Some(u) if !wire::is_valid_uuid(u) => {
                        return Err(bad(format!(
                            "'uuid' must be a 16-byte RFC 4122 UUID (got {} bytes)",
                            u.len()
                        )));
                    }
                    Some(_) => {}
                }
                if status.source != Some(Source::Executor as i32) {
                    return Err(bad(
                        "Received Call from executor with invalid source: status.source must be SOURCE_EXECUTOR",
                    ));
                }
                if status.state == TaskState::TaskStaging as i32 {
                    return Err(bad("Received TASK_STAGING from executor"));
                }
                if let Some(e) = &status.executor_id
                    && e.value != call.executor_id.value
                {
                    return Err(bad(format!(
                        "ExecutorID in Call: {} does not match ExecutorID in TaskStatus: {}",
                        call.executor_id.value, e.value
                    )));
                }
            }
            CallType::Message if call.message.is_none() => {
                return Err(bad("Expecting 'message' to be present"));
            }
            CallType::Unknown => {
                return Err(Rejection::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "Call type UNKNOWN is not implemented",
                ));
            }
            _ => {}
        }
        let key = (
            call.framework_id.value.clone(),
            call.executor_id.value.clone(),
        );
        if !self.frameworks.contains_key(&key.0) {
            return Err(bad("Framework cannot be found"));
        }
        if !self.executors.contains_key(&key) {
            return Err(bad("Executor cannot be found"));
        }
        Ok((kind, key))
    }

    /// SUBSCRIBE from an executor on a new streaming `connection`.
    pub fn executor_subscribe(
        &mut self,
        now: Instant,
        call: &exec::Call,
        connection: u64,
    ) -> Result<(), Rejection> {
        let (kind, key) = self.validate_executor_call(call)?;
        if kind != CallType::Subscribe {
            return Err(bad(
                "Expecting a SUBSCRIBE call on the streaming connection",
            ));
        }
        let framework = self.frameworks.get(&key.0).cloned().unwrap_or_default();
        let agent_info = self.agent_info();
        let Some(e) = self.executors.get_mut(&key) else {
            return Err(bad("Executor cannot be found"));
        };
        if e.phase == Phase::Terminating {
            self.outputs.push_back(AgentOutput::ExecutorEvent {
                connection,
                event: exec_event(EventType::Shutdown),
            });
            self.outputs
                .push_back(AgentOutput::CloseConnection { connection });
            return Ok(());
        }
        e.subscribed_once = true;
        e.next_heartbeat = Some(now + self.config.executor_heartbeat_interval);
        if let Some(old) = e.connection.replace(connection) {
            self.outputs
                .push_back(AgentOutput::CloseConnection { connection: old });
        }
        self.outputs.push_back(AgentOutput::ExecutorEvent {
            connection,
            event: exec::Event {
                subscribed: Some(exec::event::Subscribed {
                    executor_info: e.info.clone(),
                    framework_info: framework,
                    agent_info,
                    container_id: Some(v1::ContainerId {
                        value: e.container_id.clone(),
                        parent: None,
                    }),
                }),
                ..exec_event(EventType::Subscribed)
            },
        });
        // Updates the executor still holds are replayed (duplicates are dropped by uuid).
        let replay = call
            .subscribe
            .as_ref()
            .map(|s| s.unacknowledged_updates.clone())
            .unwrap_or_default();
        for update in replay {
            self.accept_update(now, &key, update.status, connection);
        }
        self.deliver_queued(&key);
        Ok(())
    }

    /// The executor's stream went away.
    pub fn executor_disconnected(&mut self, connection: u64) {
        for e in self.executors.values_mut() {
            if e.connection == Some(connection) {
                e.connection = None;
            }
        }
    }

    /// Any executor call other than SUBSCRIBE; `Ok` means 202.
    pub fn executor_call(&mut self, now: Instant, call: &exec::Call) -> Result<(), Rejection> {
        // HEARTBEAT skips all other validation.
        if call.r#type == Some(CallType::Heartbeat as i32) {
            return Ok(());
        }
        let (kind, key) = self.validate_executor_call(call)?;
        let Some(connection) = self.executors.get(&key).and_then(|e| e.connection) else {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "Executor is not subscribed",
            ));
        };
        match kind {
            CallType::Subscribe => Err(bad(
                "SUBSCRIBE must be sent on its own streaming connection",
            )),
            CallType::Update => {
                if let Some(update) = &call.update {
                    self.accept_update(now, &key, update.status.clone(), connection);
                }
                Ok(())
            }
            CallType::Message => {
                if let Some(m) = &call.message {
                    self.outputs
                        .push_back(AgentOutput::ToMaster(ToMaster::Message {
                            framework_id: key.0.clone(),
                            executor_id: key.1.clone(),
                            data: m.data.clone(),
                        }));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn accept_update(
        &mut self,
        now: Instant,
        key: &ExecutorKey,
        mut status: v1::TaskStatus,
        connection: u64,
    ) {
        status.agent_id = Some(v1::AgentId {
            value: self.config.agent_id.clone(),
        });
        status.executor_id = Some(v1::ExecutorId {
            value: key.1.clone(),
        });
        if status.timestamp.is_none() {
            status.timestamp = Some(wire::wall_clock_seconds());
        }
        if let Some(e) = self.executors.get_mut(key)
            && let Some(t) = e.tasks.get_mut(&status.task_id.value)
        {
            t.state = Some(status.state);
        }
        let ack = exec::Event {
            acknowledged: Some(exec::event::Acknowledged {
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone().unwrap_or_default(),
            }),
            ..exec_event(EventType::Acknowledged)
        };
        self.send_update(now, &key.0, status);
        self.outputs.push_back(AgentOutput::ExecutorEvent {
            connection,
            event: ack,
        });
    }

    fn agent_status(
        &mut self,
        framework_id: &str,
        task_id: &str,
        executor_id: Option<&str>,
        state: TaskState,
        reason: Reason,
        message: &str,
    ) -> v1::TaskStatus {
        if let Some(e) = executor_id.and_then(|e| {
            self.executors
                .get_mut(&(framework_id.to_string(), e.to_string()))
        }) && let Some(t) = e.tasks.get_mut(task_id)
        {
            t.state = Some(state as i32);
        }
        v1::TaskStatus {
            task_id: v1::TaskId {
                value: task_id.to_string(),
            },
            state: state as i32,
            message: Some(message.to_string()),
            source: Some(Source::Agent as i32),
            reason: Some(reason as i32),
            agent_id: Some(v1::AgentId {
                value: self.config.agent_id.clone(),
            }),
            executor_id: executor_id.map(|e| v1::ExecutorId {
                value: e.to_string(),
            }),
            timestamp: Some(wire::wall_clock_seconds()),
            uuid: Some(wire::new_uuid_bytes()),
            ..Default::default()
        }
    }

    fn send_update(&mut self, now: Instant, framework_id: &str, status: v1::TaskStatus) {
        if let Some(first) = self.updates.update(now, framework_id, status) {
            self.forward(framework_id, first);
        }
    }

    fn forward(&mut self, framework_id: &str, status: v1::TaskStatus) {
        self.outputs
            .push_back(AgentOutput::ToMaster(ToMaster::StatusUpdate {
                framework_id: framework_id.to_string(),
                status,
            }));
    }

    // ----------------------------------------------------------------------------------------
    // Time
    // ----------------------------------------------------------------------------------------

    /// When [`Agent::tick`] next wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.updates.poll_timeout();
        for e in self.executors.values() {
            let mut candidates = vec![
                e.destroy_at,
                e.next_heartbeat.filter(|_| e.connection.is_some()),
            ];
            if !e.subscribed_once && e.phase == Phase::Running {
                candidates.push(Some(
                    e.started_at + self.config.executor_registration_timeout,
                ));
            }
            for t in candidates.into_iter().flatten() {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        next
    }

    /// Runs timers: update retries, shutdown grace periods, registration timeouts.
    pub fn tick(&mut self, now: Instant) {
        for (framework_id, status) in self.updates.due(now) {
            self.forward(&framework_id, status);
        }
        let registration_timeout = self.config.executor_registration_timeout;
        let heartbeat_interval = self.config.executor_heartbeat_interval;
        for (key, e) in self.executors.iter_mut() {
            if let (Some(connection), Some(at)) = (e.connection, e.next_heartbeat)
                && now >= at
            {
                e.next_heartbeat = Some(now + heartbeat_interval);
                self.outputs.push_back(AgentOutput::ExecutorEvent {
                    connection,
                    event: exec_event(EventType::Heartbeat),
                });
            }
            if e.phase == Phase::Running
                && !e.subscribed_once
                && now >= e.started_at + registration_timeout
            {
                tracing::warn!(executor = %key.1, "executor did not subscribe in time");
                e.termination_reason = Reason::ExecutorRegistrationTimeout;
                e.phase = Phase::Terminating;
                e.destroy_at = Some(now);
            }
            if let (Some(at), Some(pid)) = (e.destroy_at, e.pid)
                && now >= at
            {
                e.destroy_at = None;
                self.outputs.push_back(AgentOutput::Destroy {
                    key: key.clone(),
                    pid,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
