//! The executor side of the Mesos v1 executor API as a pure state machine.
//!
//! [`ExecutorClient`] does no I/O and reads no clock. Its owner feeds it what happened (events
//! from the agent, the outcome of HTTP requests, task progress, the passing of time) and drains
//! what it wants done with [`ExecutorClient::poll_action`]: subscribe, send a call, start or stop
//! a task, exit. [`ExecutorClient::poll_timeout`] says when it next needs
//! [`ExecutorClient::handle_timeout`]. The tokio shell in [`crate::shell`] is the only owner in
//! production; the tests drive every hard case (agent restarts, recovery timeouts, kill grace
//! periods, shutdown) with a fake `now`.
//!
//! The rules it implements are those of the Mesos 1.11 agent (protocol brief §3):
//! - every status update carries a fresh random v4 UUID (16 raw bytes) and `SOURCE_EXECUTOR`, and
//!   stays pending until the agent's ACKNOWLEDGED; pending updates are resent only inside a
//!   (re-)SUBSCRIBE, together with the tasks none of whose updates were acknowledged yet;
//! - a lost subscription means "exit" without framework checkpointing, and "re-subscribe within
//!   `MESOS_SUBSCRIPTION_BACKOFF_MAX`, until `MESOS_RECOVERY_TIMEOUT`" with it;
//! - KILL sends TASK_KILLING first only when the framework has the TASK_KILLING_STATE capability,
//!   and escalates to a forced kill after the kill policy's grace period;
//! - SHUTDOWN kills every task, reports them, and exits within the shutdown grace period.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_dataplane::backoff::Backoff;
use mesoflow_proto::mesos::v1::executor::{Call, Event, call, event};
use mesoflow_proto::mesos::v1::{
    self as mesos, ExecutorId, FrameworkId, TaskId, TaskInfo, TaskState, TaskStatus,
    framework_info, task_status,
};
use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::environment::ExecutorEnvironment;
use crate::reconnect::ReconnectPolicy;

/// Grace period between a graceful and a forced kill when neither the KILL event nor the
/// TaskInfo carries a kill policy (the Mesos executors' default).
pub const DEFAULT_KILL_GRACE_PERIOD: Duration = Duration::from_secs(3);

/// How often a HEARTBEAT call is sent while subscribed, as the Mesos executor library does; it
/// keeps intermediaries from closing an idle connection.
pub const HEARTBEAT_CALL_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// How long a SUBSCRIBE may go unanswered (no first event) before it counts as failed.
pub const SUBSCRIBE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings of an [`ExecutorClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Copied into every call.
    pub framework_id: String,
    /// Copied into every call.
    pub executor_id: String,
    /// Reconnection rules (from `MESOS_CHECKPOINT` and companions).
    pub reconnect: ReconnectPolicy,
    /// From `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`.
    pub shutdown_grace_period: Duration,
    /// Used when a KILL has no kill policy and neither has its task.
    pub default_kill_grace_period: Duration,
    /// Interval of HEARTBEAT calls; `None` sends none.
    pub heartbeat_interval: Option<Duration>,
    /// Exit after this long without tasks or pending updates; `None` waits for SHUTDOWN.
    pub idle_timeout: Option<Duration>,
    /// How long a SUBSCRIBE may stay unanswered.
    pub subscribe_timeout: Duration,
}

impl ClientConfig {
    /// The settings a Mesos agent asks for through the executor's environment.
    pub fn from_environment(env: &ExecutorEnvironment) -> Self {
        Self {
            framework_id: env.framework_id.clone(),
            executor_id: env.executor_id.clone(),
            reconnect: ReconnectPolicy::for_checkpointing(env.checkpointing),
            shutdown_grace_period: env.shutdown_grace_period,
            default_kill_grace_period: DEFAULT_KILL_GRACE_PERIOD,
            heartbeat_interval: Some(HEARTBEAT_CALL_INTERVAL),
            idle_timeout: None,
            subscribe_timeout: SUBSCRIBE_RESPONSE_TIMEOUT,
        }
    }
}

/// Identifies one subscription attempt, so that late news from an abandoned stream is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(pub u64);

/// A call the shell must POST on the non-subscribe connection, in order, one after the other
/// (two updates of one task must reach the agent in the order they were made).
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingCall {
    /// The subscription this call belongs to.
    pub subscription: SubscriptionId,
    /// The call to serialize as `application/x-protobuf`.
    pub call: Call,
    /// For UPDATE calls, the update's UUID (to report the outcome against).
    pub update_uuid: Option<[u8; 16]>,
}

/// What the client wants its owner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Drop any current subscription stream, open a new one with this SUBSCRIBE call, and feed
    /// what it yields back with the same id.
    Subscribe {
        /// Id to report this attempt's events and failure with.
        subscription: SubscriptionId,
        /// The SUBSCRIBE call (with the unacknowledged tasks and updates).
        call: Call,
    },
    /// Drop the current subscription stream: it is no longer wanted.
    Disconnect,
    /// POST this call and report the outcome with [`ExecutorClient::handle_call_result`].
    Send(OutgoingCall),
    /// Start this task, then report its progress with [`ExecutorClient::report_task`].
    LaunchTask(Box<TaskInfo>),
    /// Ask this task to stop gracefully; report its end with [`ExecutorClient::report_task`].
    KillTask {
        /// The task to stop.
        task_id: String,
    },
    /// The grace period is over: stop this task now.
    ForceKillTask {
        /// The task to stop.
        task_id: String,
    },
    /// Opaque bytes the scheduler sent with a MESSAGE call (best effort).
    SchedulerMessage(Bytes),
    /// Exit the process; nothing more will be asked.
    Exit(ExitReason),
}

/// Why the executor exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The agent sent SHUTDOWN (the scheduler or the agent asked us to go).
    Shutdown,
    /// No task and nothing pending for the configured idle timeout.
    Idle,
    /// The subscription was lost and the framework does not checkpoint.
    AgentDisconnected(String),
    /// The agent did not take us back within `MESOS_RECOVERY_TIMEOUT`.
    RecoveryTimeout(Duration),
    /// The first subscription never succeeded.
    RegistrationFailed(String),
    /// The agent refused the subscription for a reason retrying cannot fix (4xx).
    SubscriptionRejected(String),
    /// The agent sent an ERROR event.
    AgentError(String),
    /// The process was asked to stop (SIGTERM or SIGINT).
    Terminated,
}

impl ExitReason {
    /// Whether this is an orderly end (exit status 0) rather than a failure.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Shutdown | Self::Idle | Self::Terminated)
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shutdown => write!(f, "the agent asked the executor to shut down"),
            Self::Idle => write!(f, "no task left to run"),
            Self::AgentDisconnected(why) => write!(
                f,
                "lost the agent ({why}) and the framework does not checkpoint, so the agent will not reconnect"
            ),
            Self::RecoveryTimeout(timeout) => write!(
                f,
                "the agent did not come back within the recovery timeout of {}",
                humantime::format_duration(*timeout)
            ),
            Self::RegistrationFailed(why) => write!(f, "could not subscribe to the agent: {why}"),
            Self::SubscriptionRejected(why) => {
                write!(f, "the agent refused the subscription: {why}")
            }
            Self::AgentError(message) => write!(f, "the agent reported an error: {message}"),
            Self::Terminated => write!(f, "the executor process was asked to stop"),
        }
    }
}

/// Why a SUBSCRIBE attempt produced no stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeFailure {
    /// Worth retrying: connection refused or reset, 503 (agent recovering), 404 (routes not up).
    Transient(String),
    /// Retrying cannot help: 400, 401, 403, 415 and other client errors.
    Rejected(String),
}

/// The outcome of a non-subscribe call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// 202: the agent queued it (for an UPDATE: wait for ACKNOWLEDGED).
    Accepted,
    /// Transport failure, 503 or 403 "not subscribed": it may succeed after re-subscribing.
    Transient(String),
    /// Any other refusal: the call itself is wrong and will never be accepted.
    Rejected(String),
}

/// How a task is doing, as reported by whoever runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskReport {
    /// Being prepared (optional).
    Starting,
    /// Up and doing its work.
    Running,
    /// Completed successfully.
    Finished {
        /// Optional human-readable detail.
        message: Option<String>,
    },
    /// Ended in failure, or could not start (bad TaskInfo.data, unknown task kind, ...).
    Failed {
        /// What went wrong, for the operator.
        message: String,
        /// A Mesos reason, e.g. `REASON_TASK_INVALID` for a TaskInfo we cannot run.
        reason: Option<task_status::Reason>,
    },
}

/// Where the connection to the agent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// A SUBSCRIBE is in flight; no event has arrived yet.
    Subscribing {
        id: SubscriptionId,
        answer_by: Instant,
    },
    /// Events flow on this subscription.
    Subscribed { id: SubscriptionId },
    /// No subscription; the next attempt starts at `retry_at` (if any).
    Waiting { retry_at: Option<Instant> },
}

/// A deadline by which we must be subscribed again, or give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// We never subscribed yet.
    Registration { give_up_at: Instant },
    /// We lost an established subscription (checkpointing only).
    Recovery { give_up_at: Instant },
}

/// Overall life-cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    /// Killing every task before exiting for `reason`; exits at `exit_at` at the latest.
    Terminating {
        reason: ExitReason,
        exit_at: Instant,
    },
    Exited,
}

/// A task this executor was given.
#[derive(Debug, Clone)]
struct Task {
    info: TaskInfo,
    /// The state of the most recent update we made for it.
    last_state: Option<TaskState>,
    /// The agent acknowledged at least one of its updates (so it leaves `unacknowledged_tasks`).
    acknowledged: bool,
    /// Its terminal update has been made; it stays only while that update is pending.
    ended: bool,
    kill: Option<KillInProgress>,
}

#[derive(Debug, Clone, Copy)]
struct KillInProgress {
    force_at: Instant,
    forced: bool,
    /// Who asked, for the TASK_KILLED message.
    cause: &'static str,
}

/// An update not yet acknowledged by the agent.
#[derive(Debug, Clone)]
struct PendingUpdate {
    uuid: [u8; 16],
    update: call::Update,
    /// The subscription on which it was last sent (alone or inside SUBSCRIBE).
    sent_on: Option<SubscriptionId>,
}

/// What SUBSCRIBED told us.
#[derive(Debug, Clone, Default)]
struct AgentView {
    task_killing_state: bool,
}

/// The executor-side protocol state machine; see the module documentation.
#[derive(Debug)]
pub struct ExecutorClient {
    config: ClientConfig,
    rng: SmallRng,
    backoff: Backoff,
    next_subscription: u64,
    link: Link,
    outage: Option<Outage>,
    phase: Phase,
    agent: AgentView,
    tasks: BTreeMap<String, Task>,
    pending: Vec<PendingUpdate>,
    actions: VecDeque<Action>,
    heartbeat_at: Option<Instant>,
    idle_since: Option<Instant>,
    /// A re-SUBSCRIBE to make while still subscribed (a status update hit a transient error).
    retry_while_subscribed: Option<(SubscriptionId, Instant)>,
}

impl ExecutorClient {
    /// A client that immediately asks to subscribe. `seed` feeds the generator of update UUIDs
    /// and backoff jitter (take it from the OS in production, fix it in tests).
    pub fn new(config: ClientConfig, now: Instant, seed: u64) -> Self {
        let backoff = config.reconnect.backoff();
        let give_up_at = now + config.reconnect.registration_timeout;
        let mut client = Self {
            config,
            rng: SmallRng::seed_from_u64(seed),
            backoff,
            next_subscription: 0,
            link: Link::Waiting { retry_at: None },
            outage: Some(Outage::Registration { give_up_at }),
            phase: Phase::Running,
            agent: AgentView::default(),
            tasks: BTreeMap::new(),
            pending: Vec::new(),
            actions: VecDeque::new(),
            heartbeat_at: None,
            idle_since: None,
            retry_while_subscribed: None,
        };
        client.subscribe(now);
        client
    }

    /// The next thing to do, if any. Drain it after every `handle_*`/`report_*` call.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Exited {
            return None;
        }
        let link = match self.link {
            Link::Subscribing { answer_by, .. } => Some(answer_by),
            Link::Waiting { retry_at } => retry_at,
            Link::Subscribed { .. } => None,
        };
        let outage = self.outage.map(|outage| match outage {
            Outage::Registration { give_up_at } | Outage::Recovery { give_up_at } => give_up_at,
        });
        let exit = match &self.phase {
            Phase::Terminating { exit_at, .. } => Some(*exit_at),
            _ => None,
        };
        let kills = self
            .tasks
            .values()
            .filter_map(|task| task.kill.filter(|kill| !kill.forced && !task.ended))
            .map(|kill| kill.force_at);
        let idle = self
            .idle_since
            .zip(self.config.idle_timeout)
            .map(|(since, timeout)| since + timeout);
        let retry = self.retry_while_subscribed.map(|(_, at)| at);
        [link, outage, exit, self.heartbeat_at, idle, retry]
            .into_iter()
            .flatten()
            .chain(kills)
            .min()
    }

    /// Whether the client has asked to exit.
    pub fn has_exited(&self) -> bool {
        self.phase == Phase::Exited
    }

    /// Number of updates the agent has not acknowledged yet.
    pub fn pending_update_count(&self) -> usize {
        self.pending.len()
    }

    /// Ids of tasks that have not ended yet.
    pub fn live_task_ids(&self) -> impl Iterator<Item = &str> {
        self.tasks
            .iter()
            .filter(|(_, task)| !task.ended)
            .map(|(id, _)| id.as_str())
    }

    /// Time has passed: fire whatever deadlines are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Exited {
            return;
        }
        if let Phase::Terminating { exit_at, reason } = &self.phase
            && now >= *exit_at
        {
            let reason = reason.clone();
            tracing::warn!(
                live_tasks = self.live_task_ids().count(),
                pending_updates = self.pending.len(),
                "shutdown grace period is over; exiting with work left"
            );
            self.exit(reason);
            return;
        }
        match self.outage {
            Some(Outage::Registration { give_up_at }) if now >= give_up_at => {
                self.outage = None;
                self.abandon_link();
                self.terminate(
                    now,
                    ExitReason::RegistrationFailed(format!(
                        "no subscription within {}",
                        humantime::format_duration(self.config.reconnect.registration_timeout)
                    )),
                );
            }
            Some(Outage::Recovery { give_up_at }) if now >= give_up_at => {
                self.outage = None;
                self.abandon_link();
                let timeout = self.config.reconnect.recovery_timeout.unwrap_or_default();
                tracing::error!(
                    timeout = %humantime::format_duration(timeout),
                    "recovery timeout exceeded; shutting down"
                );
                self.terminate(now, ExitReason::RecoveryTimeout(timeout));
            }
            _ => {}
        }
        match self.link {
            Link::Subscribing { id, answer_by } if now >= answer_by => {
                self.actions.push_back(Action::Disconnect);
                self.subscribe_failed_transiently(
                    now,
                    id,
                    format!(
                        "no answer to SUBSCRIBE within {}",
                        humantime::format_duration(self.config.subscribe_timeout)
                    ),
                );
            }
            Link::Waiting {
                retry_at: Some(retry_at),
            } if now >= retry_at => self.subscribe(now),
            _ => {}
        }
        if let Some((id, at)) = self.retry_while_subscribed
            && now >= at
        {
            self.retry_while_subscribed = None;
            if matches!(self.link, Link::Subscribed { id: current } if current == id) {
                self.subscribe(now);
            }
        }
        let due: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, task)| {
                !task.ended
                    && task
                        .kill
                        .is_some_and(|kill| !kill.forced && now >= kill.force_at)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for task_id in due {
            if let Some(kill) = self.tasks.get_mut(&task_id).and_then(|t| t.kill.as_mut()) {
                kill.forced = true;
            }
            tracing::warn!(
                task_id,
                "kill grace period is over; forcing the task to stop"
            );
            self.actions.push_back(Action::ForceKillTask { task_id });
        }
        if let Some(at) = self.heartbeat_at
            && now >= at
        {
            self.heartbeat_at = None;
            if let Link::Subscribed { id } = self.link {
                let call = self.call(call::Type::Heartbeat);
                self.actions.push_back(Action::Send(OutgoingCall {
                    subscription: id,
                    call,
                    update_uuid: None,
                }));
                self.heartbeat_at = self.config.heartbeat_interval.map(|every| now + every);
            }
        }
        if let (Some(since), Some(timeout)) = (self.idle_since, self.config.idle_timeout)
            && now >= since + timeout
        {
            self.idle_since = None;
            tracing::info!(
                idle = %humantime::format_duration(timeout),
                "no task for the idle timeout; exiting"
            );
            self.exit(ExitReason::Idle);
        }
    }

    /// The SUBSCRIBE of `subscription` produced no stream.
    pub fn handle_subscribe_failed(
        &mut self,
        now: Instant,
        subscription: SubscriptionId,
        failure: SubscribeFailure,
    ) {
        if !self.is_current(subscription) {
            return;
        }
        match failure {
            SubscribeFailure::Transient(why) => {
                self.subscribe_failed_transiently(now, subscription, why)
            }
            SubscribeFailure::Rejected(why) => {
                tracing::error!(%why, "the agent refused SUBSCRIBE");
                self.outage = None;
                self.link = Link::Waiting { retry_at: None };
                self.terminate(now, ExitReason::SubscriptionRejected(why));
            }
        }
    }

    /// The event stream of `subscription` ended (EOF, connection error, broken RecordIO).
    pub fn handle_stream_ended(&mut self, now: Instant, subscription: SubscriptionId, why: &str) {
        if !self.is_current(subscription) {
            return;
        }
        match self.link {
            Link::Subscribing { id, .. } => {
                self.subscribe_failed_transiently(now, id, why.to_owned())
            }
            Link::Subscribed { .. } => self.lost_subscription(now, why),
            Link::Waiting { .. } => {}
        }
    }

    /// One RecordIO record arrived on the stream of `subscription`: decode and handle it.
    ///
    /// A record that is not a valid protobuf `Event` means the stream is corrupt: skipping it
    /// could silently lose a KILL or a LAUNCH, and nothing after it can be trusted. So the stream
    /// is dropped ([`Action::Disconnect`]) and the client goes down the path of a broken stream
    /// ([`handle_stream_ended`](Self::handle_stream_ended)) with a reason naming the decode
    /// error and the record's length: with framework checkpointing it re-subscribes (carrying
    /// what is unacknowledged, within the backoff bound), without it kills the tasks and exits.
    ///
    /// The Mesos C++ executor library (1.11, `src/executor/executor.cpp`) handles this case
    /// differently: it stops reading the stream and hands the executor a locally made ERROR
    /// event, but keeps the connection open. Its own executors only log ERROR, so they go deaf
    /// until the agent closes the connection. We deliberately do what the library does when the
    /// RecordIO framing breaks (treat it as a disconnection), which the scheduler client does
    /// too; exiting on that ERROR as we do for an agent's ERROR would throw away the recovery
    /// that checkpointing frameworks ask for.
    pub fn handle_record(&mut self, now: Instant, subscription: SubscriptionId, record: &[u8]) {
        let error = match Event::decode(record) {
            Ok(event) => return self.handle_event(now, subscription, event),
            Err(error) => error,
        };
        if !self.is_current(subscription) || self.phase == Phase::Exited {
            tracing::debug!(
                ?subscription,
                "ignoring an undecodable record from an abandoned subscription"
            );
            return;
        }
        let why = format!("undecodable Event ({} bytes): {error}", record.len());
        tracing::error!(%why, "the agent's event stream is corrupt; dropping it");
        // Unlike a stream that ended, this one is still open: the shell must close it.
        self.actions.push_back(Action::Disconnect);
        self.handle_stream_ended(now, subscription, &why);
    }

    /// An event arrived on the stream of `subscription`.
    pub fn handle_event(&mut self, now: Instant, subscription: SubscriptionId, event: Event) {
        if !self.is_current(subscription) || self.phase == Phase::Exited {
            tracing::debug!(
                ?subscription,
                "ignoring an event from an abandoned subscription"
            );
            return;
        }
        // Any event proves the stream works, even one that arrives before SUBSCRIBED (an agent
        // that is shutting us down answers SUBSCRIBE with SHUTDOWN only).
        if let Link::Subscribing { id, .. } = self.link {
            self.on_stream_established(now, id);
        }
        let kind = event.r#type.and_then(|t| event::Type::try_from(t).ok());
        match kind {
            Some(event::Type::Subscribed) => self.on_subscribed(event.subscribed),
            Some(event::Type::Launch) => match event.launch {
                Some(launch) => self.on_launch(now, launch.task),
                None => malformed("LAUNCH", "launch"),
            },
            Some(event::Type::LaunchGroup) => match event.launch_group {
                Some(group) => {
                    for task in group.task_group.tasks {
                        self.on_launch(now, task);
                    }
                }
                None => malformed("LAUNCH_GROUP", "launch_group"),
            },
            Some(event::Type::Kill) => match event.kill {
                Some(kill) => self.on_kill(now, kill),
                None => malformed("KILL", "kill"),
            },
            Some(event::Type::Acknowledged) => match event.acknowledged {
                Some(ack) => self.on_acknowledged(now, ack),
                None => malformed("ACKNOWLEDGED", "acknowledged"),
            },
            Some(event::Type::Message) => match event.message {
                Some(message) => self
                    .actions
                    .push_back(Action::SchedulerMessage(message.data)),
                None => malformed("MESSAGE", "message"),
            },
            Some(event::Type::Shutdown) => {
                tracing::info!("the agent asked the executor to shut down");
                self.terminate(now, ExitReason::Shutdown);
            }
            Some(event::Type::Error) => {
                let message = event
                    .error
                    .map(|e| e.message)
                    .unwrap_or_else(|| "(no message)".to_owned());
                tracing::error!(%message, "the agent sent ERROR");
                self.terminate(now, ExitReason::AgentError(message));
            }
            Some(event::Type::Heartbeat) => tracing::trace!("heartbeat from the agent"),
            Some(event::Type::Unknown) | None => tracing::debug!(
                r#type = ?event.r#type,
                "ignoring an event of unknown type (newer agent?)"
            ),
        }
        self.check_progress(now);
    }

    /// The outcome of a call the client asked to send.
    pub fn handle_call_result(&mut self, now: Instant, sent: &OutgoingCall, outcome: CallOutcome) {
        let Some(uuid) = sent.update_uuid else {
            if let CallOutcome::Transient(why) | CallOutcome::Rejected(why) = outcome {
                tracing::warn!(%why, r#type = ?sent.call.r#type, "call not accepted by the agent");
            }
            return;
        };
        match outcome {
            CallOutcome::Accepted => {}
            CallOutcome::Transient(why) => {
                tracing::warn!(
                    %why,
                    "status update not accepted; it will be resent with a new SUBSCRIBE"
                );
                // Unless a newer SUBSCRIBE already carried it, the next one must.
                if let Some(update) = self
                    .pending
                    .iter_mut()
                    .find(|u| u.uuid == uuid && u.sent_on == Some(sent.subscription))
                {
                    update.sent_on = None;
                }
                if matches!(self.link, Link::Subscribed { id } if id == sent.subscription) {
                    self.schedule_retry(now);
                }
            }
            CallOutcome::Rejected(why) => {
                tracing::error!(
                    %why,
                    uuid = %uuid::Uuid::from_bytes(uuid),
                    "the agent refused a status update; dropping it (resending cannot succeed)"
                );
                self.forget_update(&uuid);
                self.check_progress(now);
            }
        }
    }

    /// Progress of a task, from whoever runs it. Terminal reports end the task; a task that was
    /// being killed is reported TASK_KILLED whatever it ended with.
    pub fn report_task(&mut self, now: Instant, task_id: &str, report: TaskReport) {
        let Some(task) = self.tasks.get(task_id) else {
            tracing::warn!(
                task_id,
                ?report,
                "report for a task this executor does not know"
            );
            return;
        };
        if task.ended {
            tracing::debug!(task_id, ?report, "report for a task that already ended");
            return;
        }
        let kill_cause = task.kill.map(|kill| kill.cause);
        let (state, message, reason) = match (report, kill_cause) {
            (TaskReport::Starting | TaskReport::Running, Some(_)) => return,
            (TaskReport::Starting, None) => (TaskState::TaskStarting, None, None),
            (TaskReport::Running, None) => (TaskState::TaskRunning, None, None),
            (_, Some(cause)) => (TaskState::TaskKilled, Some(cause.to_owned()), None),
            (TaskReport::Finished { message }, None) => (TaskState::TaskFinished, message, None),
            (TaskReport::Failed { message, reason }, None) => {
                (TaskState::TaskFailed, Some(message), reason)
            }
        };
        self.update_task(now, task_id, state, message, reason);
    }

    /// The process was asked to stop (a signal): kill the tasks, report them, and exit, as on
    /// SHUTDOWN.
    pub fn request_shutdown(&mut self, now: Instant) {
        self.terminate(now, ExitReason::Terminated);
    }

    /// Sends opaque bytes to the scheduler (executor MESSAGE call, best effort). Dropped with a
    /// warning when not subscribed.
    pub fn send_message(&mut self, data: Bytes) {
        match self.link {
            Link::Subscribed { id } => {
                let mut call = self.call(call::Type::Message);
                call.message = Some(call::Message { data });
                self.actions.push_back(Action::Send(OutgoingCall {
                    subscription: id,
                    call,
                    update_uuid: None,
                }));
            }
            _ => tracing::warn!("not subscribed; dropping a message to the scheduler"),
        }
    }

    // ----- subscription -----

    fn is_current(&self, subscription: SubscriptionId) -> bool {
        match self.link {
            Link::Subscribing { id, .. } | Link::Subscribed { id } => id == subscription,
            Link::Waiting { .. } => false,
        }
    }

    /// Starts a new SUBSCRIBE carrying everything unacknowledged.
    fn subscribe(&mut self, now: Instant) {
        self.next_subscription += 1;
        let id = SubscriptionId(self.next_subscription);
        self.retry_while_subscribed = None;
        let mut call = self.call(call::Type::Subscribe);
        let unacknowledged_tasks = self
            .tasks
            .values()
            .filter(|task| !task.acknowledged)
            .map(|task| task.info.clone())
            .collect();
        let unacknowledged_updates = self.pending.iter().map(|u| u.update.clone()).collect();
        for update in &mut self.pending {
            update.sent_on = Some(id);
        }
        call.subscribe = Some(call::Subscribe {
            unacknowledged_tasks,
            unacknowledged_updates,
        });
        self.link = Link::Subscribing {
            id,
            answer_by: now + self.config.subscribe_timeout,
        };
        self.heartbeat_at = None;
        self.actions.push_back(Action::Subscribe {
            subscription: id,
            call,
        });
    }

    fn subscribe_failed_transiently(&mut self, now: Instant, id: SubscriptionId, why: String) {
        tracing::warn!(subscription = id.0, %why, "subscription attempt failed");
        if self.is_terminating() {
            self.link = Link::Waiting { retry_at: None };
            self.check_progress(now);
            return;
        }
        if self.outage.is_none() {
            // A re-SUBSCRIBE made while subscribed failed: that is a lost subscription.
            self.link = Link::Waiting { retry_at: None };
            self.lost_subscription(now, &why);
            return;
        }
        self.link = Link::Waiting { retry_at: None };
        self.schedule_retry(now);
    }

    /// Arms the next subscription attempt after a jittered delay.
    fn schedule_retry(&mut self, now: Instant) {
        let delay = self.backoff.next_delay_with(&mut self.rng);
        tracing::info!(delay = ?delay, "will subscribe to the agent again");
        match self.link {
            Link::Subscribed { id } => {
                // Keep the stream until the new SUBSCRIBE replaces it.
                self.retry_while_subscribed = Some((id, now + delay));
            }
            _ => {
                self.link = Link::Waiting {
                    retry_at: Some(now + delay),
                }
            }
        }
    }

    fn lost_subscription(&mut self, now: Instant, why: &str) {
        self.link = Link::Waiting { retry_at: None };
        self.heartbeat_at = None;
        if self.is_terminating() {
            self.check_progress(now);
            return;
        }
        match self.config.reconnect.recovery_timeout {
            Some(timeout) => {
                tracing::warn!(%why, "lost the agent; re-subscribing until the recovery timeout");
                self.outage = Some(Outage::Recovery {
                    give_up_at: now + timeout,
                });
                self.schedule_retry(now);
            }
            None => {
                tracing::error!(%why, "lost the agent; the framework does not checkpoint, so exiting");
                self.terminate(now, ExitReason::AgentDisconnected(why.to_owned()));
            }
        }
    }

    /// Stops any subscription attempt in flight.
    fn abandon_link(&mut self) {
        if !matches!(self.link, Link::Waiting { .. }) {
            self.actions.push_back(Action::Disconnect);
        }
        self.link = Link::Waiting { retry_at: None };
    }

    /// The first event of subscription `id` arrived: the outage (if any) is over.
    fn on_stream_established(&mut self, now: Instant, id: SubscriptionId) {
        self.link = Link::Subscribed { id };
        self.outage = None;
        self.retry_while_subscribed = None;
        self.backoff.reset();
        self.heartbeat_at = self.config.heartbeat_interval.map(|every| now + every);
        // Updates made while SUBSCRIBE was in flight were not in it: send them now.
        let unsent: Vec<([u8; 16], call::Update)> = self
            .pending
            .iter()
            .filter(|u| u.sent_on != Some(id))
            .map(|u| (u.uuid, u.update.clone()))
            .collect();
        for (uuid, update) in unsent {
            self.send_update(id, uuid, update);
        }
    }

    fn on_subscribed(&mut self, subscribed: Option<event::Subscribed>) {
        let Some(subscribed) = subscribed else {
            tracing::warn!("SUBSCRIBED without its payload; keeping the previous framework info");
            return;
        };
        let killing_state = framework_info::capability::Type::TaskKillingState as i32;
        self.agent.task_killing_state = subscribed
            .framework_info
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(killing_state));
        tracing::info!(
            agent = %subscribed.agent_info.hostname,
            framework = ?subscribed.framework_info.id.as_ref().map(|id| &id.value),
            task_killing_state = self.agent.task_killing_state,
            "subscribed to the agent"
        );
    }

    // ----- tasks -----

    fn on_launch(&mut self, now: Instant, task: TaskInfo) {
        let task_id = task.task_id.value.clone();
        if task_id.is_empty() {
            tracing::error!("ignoring a launch of a task without a task id");
            return;
        }
        if self.tasks.contains_key(&task_id) {
            tracing::warn!(
                task_id,
                "ignoring a second launch of a task this executor already has"
            );
            return;
        }
        self.tasks.insert(
            task_id.clone(),
            Task {
                info: task.clone(),
                last_state: None,
                acknowledged: false,
                ended: false,
                kill: None,
            },
        );
        if self.is_terminating() {
            self.update_task(
                now,
                &task_id,
                TaskState::TaskFailed,
                Some("the executor is shutting down".to_owned()),
                Some(task_status::Reason::ExecutorTerminated),
            );
            return;
        }
        tracing::info!(task_id, name = %task.name, "launching task");
        self.actions.push_back(Action::LaunchTask(Box::new(task)));
    }

    fn on_kill(&mut self, now: Instant, kill: event::Kill) {
        let task_id = kill.task_id.value;
        let policy_grace = kill
            .kill_policy
            .as_ref()
            .and_then(|policy| policy.grace_period.as_ref())
            .map(duration_from_info);
        self.kill_task(
            now,
            &task_id,
            policy_grace,
            None,
            "killed on request of the scheduler",
        );
    }

    /// Starts (or hastens) the kill of one task. `cap` bounds the grace (shutdown).
    fn kill_task(
        &mut self,
        now: Instant,
        task_id: &str,
        event_grace: Option<Duration>,
        cap: Option<Duration>,
        cause: &'static str,
    ) {
        let default_grace = self.config.default_kill_grace_period;
        let Some(task) = self.tasks.get_mut(task_id) else {
            tracing::warn!(
                task_id,
                "ignoring a kill of a task this executor does not know"
            );
            return;
        };
        if task.ended {
            tracing::debug!(task_id, "ignoring a kill of a task that already ended");
            return;
        }
        let task_grace = task
            .info
            .kill_policy
            .as_ref()
            .and_then(|policy| policy.grace_period.as_ref())
            .map(duration_from_info);
        let mut grace = event_grace.or(task_grace).unwrap_or(default_grace);
        if let Some(cap) = cap {
            grace = grace.min(cap);
        }
        let force_at = now + grace;
        match &mut task.kill {
            Some(kill) => {
                if !kill.forced && force_at < kill.force_at {
                    tracing::info!(task_id, grace = ?grace, "kill again with a shorter grace period");
                    kill.force_at = force_at;
                }
            }
            None => {
                tracing::info!(task_id, grace = ?grace, "killing task");
                task.kill = Some(KillInProgress {
                    force_at,
                    forced: false,
                    cause,
                });
                let announce = self.agent.task_killing_state;
                if announce {
                    self.update_task(now, task_id, TaskState::TaskKilling, None, None);
                }
                self.actions.push_back(Action::KillTask {
                    task_id: task_id.to_owned(),
                });
            }
        }
    }

    /// Makes a status update for a task, remembers it until acknowledged, and sends it.
    fn update_task(
        &mut self,
        now: Instant,
        task_id: &str,
        state: TaskState,
        message: Option<String>,
        reason: Option<task_status::Reason>,
    ) {
        let uuid = *uuid::Builder::from_random_bytes(rand::Rng::random(&mut self.rng))
            .into_uuid()
            .as_bytes();
        let status = TaskStatus {
            task_id: TaskId {
                value: task_id.to_owned(),
            },
            state: state as i32,
            message,
            source: Some(task_status::Source::Executor as i32),
            reason: reason.map(|r| r as i32),
            executor_id: Some(ExecutorId {
                value: self.config.executor_id.clone(),
            }),
            uuid: Some(Bytes::copy_from_slice(&uuid)),
            ..TaskStatus::default()
        };
        if let Some(task) = self.tasks.get_mut(task_id) {
            task.last_state = Some(state);
            task.ended |= state.is_terminal();
        }
        tracing::info!(task_id, state = state.as_str_name(), "status update");
        let update = call::Update { status };
        self.pending.push(PendingUpdate {
            uuid,
            update: update.clone(),
            sent_on: None,
        });
        if let Link::Subscribed { id } = self.link {
            self.send_update(id, uuid, update);
        }
        self.check_progress(now);
    }

    fn send_update(&mut self, id: SubscriptionId, uuid: [u8; 16], update: call::Update) {
        if let Some(pending) = self.pending.iter_mut().find(|u| u.uuid == uuid) {
            pending.sent_on = Some(id);
        }
        let mut call = self.call(call::Type::Update);
        call.update = Some(update);
        self.actions.push_back(Action::Send(OutgoingCall {
            subscription: id,
            call,
            update_uuid: Some(uuid),
        }));
    }

    fn on_acknowledged(&mut self, now: Instant, ack: event::Acknowledged) {
        let Ok(uuid) = <[u8; 16]>::try_from(ack.uuid.as_ref()) else {
            tracing::error!(
                task_id = %ack.task_id.value,
                len = ack.uuid.len(),
                "ignoring ACKNOWLEDGED whose uuid is not 16 bytes"
            );
            return;
        };
        let Some(position) = self.pending.iter().position(|u| u.uuid == uuid) else {
            tracing::debug!(task_id = %ack.task_id.value, "acknowledgement of an update we no longer hold");
            return;
        };
        let acked = self.pending.remove(position);
        let task_id = acked.update.status.task_id.value;
        if task_id != ack.task_id.value {
            tracing::warn!(
                expected = %task_id,
                got = %ack.task_id.value,
                "ACKNOWLEDGED names another task than the update with that uuid"
            );
        }
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.acknowledged = true;
        }
        self.remove_finished_task(&task_id);
        self.check_progress(now);
    }

    fn forget_update(&mut self, uuid: &[u8; 16]) {
        if let Some(position) = self.pending.iter().position(|u| &u.uuid == uuid) {
            let update = self.pending.remove(position);
            self.remove_finished_task(&update.update.status.task_id.value);
        }
    }

    /// Drops an ended task once none of its updates is pending.
    fn remove_finished_task(&mut self, task_id: &str) {
        let ended = self.tasks.get(task_id).is_some_and(|task| task.ended);
        let pending = self
            .pending
            .iter()
            .any(|u| u.update.status.task_id.value == task_id);
        if ended && !pending {
            self.tasks.remove(task_id);
        }
    }

    // ----- life-cycle -----

    fn is_terminating(&self) -> bool {
        matches!(self.phase, Phase::Terminating { .. } | Phase::Exited)
    }

    /// Kills every task and exits once they are reported (or the shutdown grace period ends).
    fn terminate(&mut self, now: Instant, reason: ExitReason) {
        if self.is_terminating() {
            return;
        }
        let grace = self.config.shutdown_grace_period;
        // Leave a tenth of the grace period (at most 1 s) to send the terminal updates before
        // the agent destroys the container, and force kills at three quarters of it.
        let exit_at = now + grace - (grace / 10).min(Duration::from_secs(1));
        let kill_cap = grace * 3 / 4;
        self.phase = Phase::Terminating { reason, exit_at };
        self.retry_while_subscribed = None;
        self.idle_since = None;
        if self.outage.take().is_some() {
            self.abandon_link();
        }
        let live: Vec<String> = self.live_task_ids().map(str::to_owned).collect();
        for task_id in live {
            self.kill_task(
                now,
                &task_id,
                None,
                Some(kill_cap),
                "killed because the executor is shutting down",
            );
        }
        self.check_progress(now);
    }

    fn exit(&mut self, reason: ExitReason) {
        if self.phase == Phase::Exited {
            return;
        }
        self.phase = Phase::Exited;
        // Exiting drops every connection; no separate Disconnect is needed.
        self.link = Link::Waiting { retry_at: None };
        self.actions.push_back(Action::Exit(reason));
    }

    /// Exits when terminating and done; tracks idleness otherwise.
    fn check_progress(&mut self, now: Instant) {
        let all_ended = self.tasks.values().all(|task| task.ended);
        match &self.phase {
            Phase::Terminating { reason, .. } => {
                let connected = matches!(self.link, Link::Subscribed { .. });
                if all_ended && (self.pending.is_empty() || !connected) {
                    let reason = reason.clone();
                    self.exit(reason);
                }
            }
            Phase::Running => {
                let idle = self.tasks.is_empty()
                    && self.pending.is_empty()
                    && matches!(self.link, Link::Subscribed { .. });
                match (idle, self.idle_since) {
                    (true, None) => self.idle_since = Some(now),
                    (false, Some(_)) => self.idle_since = None,
                    _ => {}
                }
            }
            Phase::Exited => {}
        }
    }

    fn call(&self, kind: call::Type) -> Call {
        Call {
            executor_id: ExecutorId {
                value: self.config.executor_id.clone(),
            },
            framework_id: FrameworkId {
                value: self.config.framework_id.clone(),
            },
            r#type: Some(kind as i32),
            ..Call::default()
        }
    }
}

/// Logs a decoded event whose payload field is missing; the event is refused.
///
/// The agent validates events before sending them, so this means a broken agent. The C++
/// executor library does not check payloads at all (protobuf only rejects missing `required`
/// fields, and every payload field of `Event` is optional): it hands the event over and the
/// executor reads default values, e.g. KILL of the task with the empty id. Acting on defaults
/// could only launch or kill the wrong thing, so we refuse the event and keep the stream, which
/// is otherwise well-formed.
fn malformed(event: &str, field: &str) {
    tracing::error!(
        event,
        field,
        "ignoring a malformed event: its payload field is missing"
    );
}

/// A Mesos `DurationInfo` as a `Duration`; negative values mean "no grace".
fn duration_from_info(info: &mesos::DurationInfo) -> Duration {
    Duration::from_nanos(u64::try_from(info.nanoseconds).unwrap_or(0))
}
