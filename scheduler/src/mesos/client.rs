//! The scheduler client as a pure state machine: no sockets, no clock, no threads.
//!
//! Inputs are what happened (`handle_*`, with `now` passed in) and what the owner wants (the
//! command methods); outputs are [`Action`]s for the I/O shell ([`poll_action`]), events for
//! the owner ([`poll_event`]) and the next instant it wants [`handle_timeout`] called
//! ([`poll_timeout`]). Every hard case (heartbeat loss, redirects, 503s, removed frameworks,
//! failover, acknowledgements, reconciliation) can thus be tested by feeding it inputs.
//!
//! Lifecycle: `start` -> SUBSCRIBE on a dedicated connection -> 200 with `Mesos-Stream-Id`
//! -> first event SUBSCRIBED (or ERROR) -> events; any loss of the stream (EOF, error, no event
//! for 5 heartbeat intervals, malformed event) closes it and re-subscribes after an exponential
//! backoff with jitter (capped at 15 s), with the framework id in both places. ERROR events
//! and 401 are fatal: "Framework has been removed" and "Framework failed over" get their own
//! [`FatalError`]s and are never retried automatically.
//!
//! [`poll_action`]: SchedulerClient::poll_action
//! [`poll_event`]: SchedulerClient::poll_event
//! [`poll_timeout`]: SchedulerClient::poll_timeout
//! [`handle_timeout`]: SchedulerClient::handle_timeout

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::Bytes;
use mesoflow_dataplane::backoff::{Backoff, BackoffConfig};
use mesoflow_proto::{
    CONTENT_TYPE_PROTOBUF,
    mesos::v1::{
        AgentId, ExecutorId, ExecutorInfo, Filters, FrameworkId, FrameworkInfo, KillPolicy,
        OfferId, TaskGroupInfo, TaskId, TaskInfo,
        offer::{Operation, operation},
        scheduler::{Call, Event, OfferConstraints, call, event},
    },
};
use prost::Message as _;
use tracing::{debug, info, warn};

use super::{
    endpoint::{HttpRequest, MasterEndpoint, RequestKind, STREAM_ID_HEADER, resolve_location},
    events::{
        AckToken, DisconnectReason, ExitStatus, FatalError, OperationAckToken, SchedulerEvent,
    },
    reconcile::{ReconcileRequest, Reconciler},
};

/// Heartbeat interval assumed until the master says otherwise (Mesos 1.11 always uses 15 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// The stream is dead after this many heartbeat intervals without any event.
pub const HEARTBEAT_MISSES: u32 = 5;
/// Longest `Mesos-Stream-Id` the master produces; anything longer is not a Mesos master.
const MAX_STREAM_ID_LEN: usize = 128;

/// HTTP basic-auth credentials of the framework (sent on every request, SUBSCRIBE included).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The principal; also put it in `FrameworkInfo.principal`.
    pub principal: String,
    /// The secret.
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("principal", &self.principal)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        let raw = format!("{}:{}", self.principal, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Everything the client needs to know up front.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The framework to register. `id` is ignored: the client sets it from `framework_id`.
    pub framework_info: FrameworkInfo,
    /// The framework id persisted by an earlier run (fail over to it), if any.
    pub framework_id: Option<FrameworkId>,
    /// Roles to subscribe with offers suppressed.
    pub suppressed_roles: Vec<String>,
    /// Per-role offer filtering by agent attributes (Mesos 1.11), sent on SUBSCRIBE and
    /// UPDATE_FRAMEWORK.
    pub offer_constraints: Option<OfferConstraints>,
    /// Basic-auth credentials, when the master authenticates frameworks.
    pub credentials: Option<Credentials>,
    /// Masters to try in turn (a static list, or the leader from detection). May be empty
    /// until [`SchedulerClient::set_masters`] is called.
    pub masters: Vec<MasterEndpoint>,
    /// Backoff between subscription attempts.
    pub resubscribe_backoff: BackoffConfig,
    /// Backoff of the explicit reconciliation loop.
    pub reconcile_backoff: BackoffConfig,
    /// Period of implicit reconciliation.
    pub implicit_reconcile_interval: Duration,
    /// Time allowed from sending SUBSCRIBE to receiving the SUBSCRIBED event.
    pub subscribe_timeout: Duration,
    /// Consecutive 307s followed without delay before backing off.
    pub max_immediate_redirects: u32,
    /// Largest event accepted on the stream (RecordIO record size); a larger one ends the
    /// subscription as corrupt.
    pub max_event_size: usize,
    /// Seed of the jitter: random by default (so restarted schedulers do not retry in step),
    /// fixed in tests.
    pub seed: u64,
}

impl SchedulerConfig {
    /// Defaults from the protocol: 0.5 s..15 s resubscribe backoff, 2 s..60 s reconciliation
    /// backoff, implicit reconciliation every 15 minutes, 30 s to subscribe, random jitter seed.
    pub fn new(framework_info: FrameworkInfo, masters: Vec<MasterEndpoint>) -> Self {
        Self {
            framework_info,
            framework_id: None,
            suppressed_roles: Vec::new(),
            offer_constraints: None,
            credentials: None,
            masters,
            resubscribe_backoff: BackoffConfig::RESUBSCRIBE,
            reconcile_backoff: BackoffConfig::RECONCILE,
            implicit_reconcile_interval: Duration::from_secs(15 * 60),
            subscribe_timeout: Duration::from_secs(30),
            max_immediate_redirects: 3,
            max_event_size: mesoflow_proto::recordio::DEFAULT_MAX_RECORD_LEN,
            seed: rand::random(),
        }
    }
}

/// Identifies one subscription attempt (one stream connection).
pub type ConnectionId = u64;
/// Identifies one call.
pub type CallId = u64;

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a new dedicated connection and POST this SUBSCRIBE; report the response with
    /// `handle_subscribe_response`, then each RecordIO record with `handle_event_record`, and
    /// the end of the stream with `handle_stream_ended` (all tagged with `conn`).
    Subscribe {
        /// The attempt this connection belongs to.
        conn: ConnectionId,
        /// The request.
        request: HttpRequest,
    },
    /// Drop the stream connection `conn` (and ignore anything it still delivers).
    CloseSubscription {
        /// The attempt to close.
        conn: ConnectionId,
    },
    /// POST this call on the call connection; report with `handle_call_response` or
    /// `handle_call_failed`.
    Call {
        /// The call's id.
        call_id: CallId,
        /// The request.
        request: HttpRequest,
    },
}

/// The response head of a SUBSCRIBE (and, for errors, its body text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Mesos-Stream-Id` header.
    pub stream_id: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Location` header (307).
    pub location: Option<String>,
    /// `WWW-Authenticate` header (401).
    pub www_authenticate: Option<String>,
    /// Body text for non-200 responses (truncated by the shell).
    pub body: String,
}

/// Why a command could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// There is no live subscription (connecting, reconnecting or stopped).
    #[error("not subscribed to a Mesos master (reconnecting or stopped); retry after Subscribed")]
    NotSubscribed,
    /// The offer is not an outstanding offer of the current subscription (already used,
    /// rescinded, or from an earlier subscription).
    #[error("offer '{0}' is not outstanding (used, rescinded, or from an earlier subscription)")]
    UnknownOffer(String),
    /// The command is malformed.
    #[error("invalid command: {0}")]
    Invalid(String),
}

#[derive(Debug)]
enum Phase {
    Idle,
    NoMaster,
    Waiting {
        until: Instant,
    },
    Connecting {
        conn: ConnectionId,
        url: String,
        deadline: Instant,
    },
    AwaitingSubscribed {
        conn: ConnectionId,
        url: String,
        stream_id: String,
        deadline: Instant,
    },
    Subscribed {
        conn: ConnectionId,
        url: String,
        stream_id: String,
        heartbeat_timeout: Duration,
        deadline: Instant,
    },
    Stopped,
}

#[derive(Debug)]
struct PendingCall {
    call_type: &'static str,
    conn: ConnectionId,
}

/// The sans-IO scheduler client for one framework.
#[derive(Debug)]
pub struct SchedulerClient {
    config: SchedulerConfig,
    framework_id: Option<FrameworkId>,
    master_index: usize,
    redirect: Option<String>,
    redirects_in_row: u32,
    phase: Phase,
    backoff: Backoff,
    next_conn: ConnectionId,
    next_call: CallId,
    offers: HashSet<String>,
    inverse_offers: HashSet<String>,
    reconciler: Reconciler,
    pending_calls: std::collections::HashMap<CallId, PendingCall>,
    teardown_call: Option<CallId>,
    actions: VecDeque<Action>,
    events: VecDeque<SchedulerEvent>,
}

impl SchedulerClient {
    /// A client that has not started yet.
    pub fn new(config: SchedulerConfig) -> Self {
        let backoff = Backoff::new(config.resubscribe_backoff, config.seed);
        let reconciler = Reconciler::new(
            config.reconcile_backoff,
            config.implicit_reconcile_interval,
            config.seed.rotate_left(17),
        );
        Self {
            framework_id: config.framework_id.clone(),
            master_index: 0,
            redirect: None,
            redirects_in_row: 0,
            phase: Phase::Idle,
            backoff,
            next_conn: 1,
            next_call: 1,
            offers: HashSet::new(),
            inverse_offers: HashSet::new(),
            reconciler,
            pending_calls: std::collections::HashMap::new(),
            teardown_call: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            config,
        }
    }

    // ----- observers -----

    /// The framework id (persisted one, or the one assigned by the last SUBSCRIBED).
    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// Whether a subscription is live (commands can be issued).
    pub fn is_subscribed(&self) -> bool {
        matches!(self.phase, Phase::Subscribed { .. })
    }

    /// Whether the client stopped for good (after a [`FatalError`]).
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// The current subscription's stream id.
    pub fn stream_id(&self) -> Option<&str> {
        match &self.phase {
            Phase::Subscribed { stream_id, .. } | Phase::AwaitingSubscribed { stream_id, .. } => {
                Some(stream_id)
            }
            _ => None,
        }
    }

    /// Outstanding offers of the current subscription.
    pub fn outstanding_offers(&self) -> usize {
        self.offers.len()
    }

    /// Number of non-terminal tasks tracked for reconciliation.
    pub fn tracked_tasks(&self) -> usize {
        self.reconciler.live_tasks()
    }

    // ----- outputs -----

    /// The next thing the shell must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<SchedulerEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Waiting { until } => Some(*until),
            Phase::Connecting { deadline, .. }
            | Phase::AwaitingSubscribed { deadline, .. }
            | Phase::Subscribed { deadline, .. } => Some(*deadline),
            Phase::Idle | Phase::NoMaster | Phase::Stopped => None,
        };
        let reconcile = if self.is_subscribed() {
            self.reconciler.next_deadline()
        } else {
            None
        };
        match (phase, reconcile) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- inputs: lifecycle -----

    /// Starts subscribing (to the first master, or once masters are known).
    pub fn start(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Idle) {
            self.connect(now);
        }
    }

    /// Replaces the candidate masters (from detection). If the live subscription is not with
    /// one of them, the client re-subscribes to the new leader.
    ///
    /// An empty list ("no leader right now", e.g. during an election) does not disturb a live
    /// subscription: if the old leader is really gone its stream ends by itself.
    pub fn set_masters(&mut self, now: Instant, masters: Vec<MasterEndpoint>) {
        let changed = masters != self.config.masters;
        let empty = masters.is_empty();
        self.config.masters = masters;
        self.master_index = 0;
        if !changed || empty {
            return;
        }
        self.redirect = None;
        match &self.phase {
            Phase::NoMaster => self.connect(now),
            Phase::Connecting { url, .. }
            | Phase::AwaitingSubscribed { url, .. }
            | Phase::Subscribed { url, .. } => {
                let current = url.clone();
                let still_valid = self
                    .config
                    .masters
                    .iter()
                    .any(|m| current.starts_with(&format!("{}/", m.base_url())));
                if !still_valid {
                    info!(url = %current, "leading master changed; re-subscribing");
                    // Go to the new leader without waiting.
                    self.lose_subscription(now, DisconnectReason::LeaderChanged, false);
                }
            }
            Phase::Idle | Phase::Waiting { .. } | Phase::Stopped => {}
        }
    }

    /// Records tasks the owner believes are live (e.g. restored after a failover), so they
    /// are reconciled after the next SUBSCRIBED.
    pub fn track_tasks(&mut self, tasks: impl IntoIterator<Item = (TaskId, Option<AgentId>)>) {
        for (task, agent) in tasks {
            self.reconciler.track(&task, agent);
        }
    }

    /// Stops tracking a task for reconciliation.
    pub fn forget_task(&mut self, task_id: &TaskId) {
        self.reconciler.forget(task_id);
    }

    /// Drops the subscription and subscribes again (e.g. the owner saw a problem).
    pub fn reconnect(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Stopped | Phase::Idle) {
            return;
        }
        self.lose_subscription(now, DisconnectReason::Requested, false);
    }

    /// Timers: reconnect after backoff, subscribe timeout, heartbeat watchdog, reconciliation.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::Waiting { until } if *until <= now => self.connect(now),
            Phase::Connecting { deadline, .. } | Phase::AwaitingSubscribed { deadline, .. }
                if *deadline <= now =>
            {
                let reason = DisconnectReason::SubscribeFailed(format!(
                    "no SUBSCRIBED within {:?}",
                    self.config.subscribe_timeout
                ));
                self.lose_subscription(now, reason, true);
            }
            Phase::Subscribed {
                deadline,
                heartbeat_timeout,
                ..
            } if *deadline <= now => {
                warn!(
                    timeout = ?heartbeat_timeout,
                    "no event from the master within {HEARTBEAT_MISSES} heartbeat intervals"
                );
                self.lose_subscription(now, DisconnectReason::HeartbeatTimeout, true);
            }
            _ => {}
        }
        if self.is_subscribed() {
            while let Some(request) = self.reconciler.poll(now) {
                self.send_reconcile(request);
            }
        }
    }

    // ----- inputs: the stream connection -----

    /// The response head of SUBSCRIBE on connection `conn`.
    pub fn handle_subscribe_response(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        response: SubscribeResponse,
    ) {
        let Phase::Connecting {
            conn: current, url, ..
        } = &self.phase
        else {
            return self.ignore_stale(conn);
        };
        if *current != conn {
            return self.ignore_stale(conn);
        }
        let url = url.clone();
        match response.status {
            200 => {
                if let Some(ct) = &response.content_type
                    && ct != CONTENT_TYPE_PROTOBUF
                {
                    let reason = DisconnectReason::SubscribeFailed(format!(
                        "stream Content-Type is '{ct}', expected '{CONTENT_TYPE_PROTOBUF}'"
                    ));
                    return self.lose_subscription(now, reason, true);
                }
                let stream_id = response.stream_id.unwrap_or_default();
                if stream_id.is_empty() || stream_id.len() > MAX_STREAM_ID_LEN {
                    let reason = DisconnectReason::SubscribeFailed(
                        "SUBSCRIBE response has no valid Mesos-Stream-Id header".to_owned(),
                    );
                    return self.lose_subscription(now, reason, true);
                }
                debug!(%url, %stream_id, "subscription stream open");
                self.phase = Phase::AwaitingSubscribed {
                    conn,
                    url,
                    stream_id,
                    deadline: now + self.config.subscribe_timeout,
                };
            }
            307 => {
                let target = response
                    .location
                    .as_deref()
                    .and_then(|loc| resolve_location(&url, loc));
                let Some(target) = target else {
                    let reason = DisconnectReason::SubscribeFailed(format!(
                        "307 without a usable Location header ({:?})",
                        response.location
                    ));
                    return self.lose_subscription(now, reason, true);
                };
                info!(from = %url, to = %target, "redirected to the leading master");
                self.close_stream(conn);
                self.redirect = Some(target);
                self.redirects_in_row += 1;
                self.phase = if self.redirects_in_row <= self.config.max_immediate_redirects {
                    Phase::Waiting { until: now }
                } else {
                    Phase::Waiting {
                        until: now + self.backoff.next_delay(),
                    }
                };
            }
            401 => self.stop(FatalError::Unauthorized {
                challenge: response.www_authenticate,
            }),
            400..=499 if response.status != 408 && response.status != 429 => {
                self.stop(FatalError::SubscribeRefused {
                    status: response.status,
                    message: response.body,
                })
            }
            status => {
                let reason = DisconnectReason::SubscribeFailed(format!(
                    "HTTP {status} from {url}: {}",
                    response.body.trim()
                ));
                self.lose_subscription(now, reason, true);
            }
        }
    }

    /// The SUBSCRIBE request on `conn` failed before a response (connect error, reset).
    pub fn handle_subscribe_failed(&mut self, now: Instant, conn: ConnectionId, error: String) {
        if self.current_conn() != Some(conn) {
            return self.ignore_stale(conn);
        }
        self.lose_subscription(now, DisconnectReason::SubscribeFailed(error), true);
    }

    /// One RecordIO record (a serialized `Event`) from the stream of `conn`.
    pub fn handle_event_record(&mut self, now: Instant, conn: ConnectionId, record: &[u8]) {
        if self.current_conn() != Some(conn) || matches!(self.phase, Phase::Connecting { .. }) {
            return;
        }
        let event = match Event::decode(record) {
            Ok(event) => event,
            Err(err) => {
                let reason = DisconnectReason::MalformedEvent(format!(
                    "undecodable Event ({} bytes): {err}",
                    record.len()
                ));
                return self.lose_subscription(now, reason, true);
            }
        };
        self.handle_event(now, event);
    }

    /// The stream of `conn` ended (`error` is `None` for a clean EOF).
    pub fn handle_stream_ended(&mut self, now: Instant, conn: ConnectionId, error: Option<String>) {
        if self.current_conn() != Some(conn) {
            return;
        }
        let reason = DisconnectReason::StreamEnded(
            error.unwrap_or_else(|| "the master closed the event stream".to_owned()),
        );
        self.lose_subscription(now, reason, true);
    }

    // ----- inputs: calls -----

    /// The response to call `call_id`.
    pub fn handle_call_response(
        &mut self,
        now: Instant,
        call_id: CallId,
        status: u16,
        location: Option<String>,
        body: String,
    ) {
        let Some(pending) = self.pending_calls.remove(&call_id) else {
            return;
        };
        let was_teardown = self.teardown_call == Some(call_id);
        if was_teardown {
            self.teardown_call = None;
        }
        if (200..300).contains(&status) {
            if was_teardown && !self.is_stopped() {
                self.stop(FatalError::TornDown);
            }
            return;
        }
        let current = self.current_conn() == Some(pending.conn);
        self.events.push_back(SchedulerEvent::CallFailed {
            call_id,
            call_type: pending.call_type,
            error: format!("HTTP {status}: {}", body.trim()),
        });
        match status {
            401 => self.stop(FatalError::Unauthorized { challenge: None }),
            307 if current => {
                if let Some(url) = self.current_url()
                    && let Some(target) =
                        location.as_deref().and_then(|l| resolve_location(&url, l))
                {
                    self.redirect = Some(target);
                }
                self.lose_subscription(now, DisconnectReason::LeaderChanged, false);
            }
            403 if current && pending.call_type != "UPDATE_FRAMEWORK" => {
                // "Framework is not subscribed": the master no longer has our stream.
                self.lose_subscription(now, DisconnectReason::LeaderChanged, true);
            }
            _ => {}
        }
    }

    /// Call `call_id` failed before a response.
    pub fn handle_call_failed(&mut self, call_id: CallId, error: String) {
        if self.teardown_call == Some(call_id) {
            self.teardown_call = None;
        }
        if let Some(pending) = self.pending_calls.remove(&call_id) {
            self.events.push_back(SchedulerEvent::CallFailed {
                call_id,
                call_type: pending.call_type,
                error,
            });
        }
    }

    // ----- commands -----

    /// ACCEPT offers with operations; what they leave unused is declined with `filters`.
    /// Tasks launched are tracked for reconciliation. Never set `id` on LAUNCH operations.
    pub fn accept(
        &mut self,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Option<Filters>,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        for op in &operations {
            let ty = op.r#type();
            if op.id.is_some()
                && matches!(ty, operation::Type::Launch | operation::Type::LaunchGroup)
            {
                return Err(CommandError::Invalid(
                    "LAUNCH/LAUNCH_GROUP operations must not set `id` (the master drops them)"
                        .to_owned(),
                ));
            }
        }
        self.take_offers(&offer_ids)?;
        for op in &operations {
            let tasks: Vec<&TaskInfo> = match op.r#type() {
                operation::Type::Launch => {
                    op.launch.iter().flat_map(|l| l.task_infos.iter()).collect()
                }
                operation::Type::LaunchGroup => op
                    .launch_group
                    .iter()
                    .flat_map(|l| l.task_group.tasks.iter())
                    .collect(),
                _ => Vec::new(),
            };
            for task in tasks {
                self.reconciler
                    .track(&task.task_id, Some(task.agent_id.clone()));
            }
        }
        self.send_call(call::Type::Accept, |c| {
            c.accept = Some(call::Accept {
                offer_ids,
                operations,
                filters,
            })
        })
    }

    /// ACCEPT with one LAUNCH of `tasks` (each with its `executor`, no `command`).
    pub fn launch(
        &mut self,
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
    ) -> Result<CallId, CommandError> {
        let op = Operation {
            r#type: Some(operation::Type::Launch as i32),
            launch: Some(operation::Launch { task_infos: tasks }),
            ..Default::default()
        };
        self.accept(offer_ids, vec![op], filters)
    }

    /// ACCEPT with one LAUNCH_GROUP of `tasks` on `executor` (which must have `type`,
    /// `framework_id` set; the client fills in `framework_id` if missing).
    pub fn launch_group(
        &mut self,
        offer_ids: Vec<OfferId>,
        mut executor: ExecutorInfo,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
    ) -> Result<CallId, CommandError> {
        if executor.framework_id.is_none() {
            executor.framework_id = self.framework_id.clone();
        }
        let op = Operation {
            r#type: Some(operation::Type::LaunchGroup as i32),
            launch_group: Some(operation::LaunchGroup {
                executor,
                task_group: TaskGroupInfo { tasks },
            }),
            ..Default::default()
        };
        self.accept(offer_ids, vec![op], filters)
    }

    /// DECLINE offers; `refuse_seconds` keeps them away that long (Mesos default 5 s).
    pub fn decline(
        &mut self,
        offer_ids: Vec<OfferId>,
        refuse_seconds: Option<f64>,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.take_offers(&offer_ids)?;
        let filters = refuse_seconds.map(|s| Filters {
            refuse_seconds: Some(s),
        });
        self.send_call(call::Type::Decline, |c| {
            c.decline = Some(call::Decline { offer_ids, filters })
        })
    }

    /// ACCEPT_INVERSE_OFFERS (we can vacate the agent in time).
    pub fn accept_inverse_offers(
        &mut self,
        inverse_offer_ids: Vec<OfferId>,
        filters: Option<Filters>,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.take_inverse_offers(&inverse_offer_ids)?;
        self.send_call(call::Type::AcceptInverseOffers, |c| {
            c.accept_inverse_offers = Some(call::AcceptInverseOffers {
                inverse_offer_ids,
                filters,
            })
        })
    }

    /// DECLINE_INVERSE_OFFERS (we cannot vacate the agent in time).
    pub fn decline_inverse_offers(
        &mut self,
        inverse_offer_ids: Vec<OfferId>,
        filters: Option<Filters>,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.take_inverse_offers(&inverse_offer_ids)?;
        self.send_call(call::Type::DeclineInverseOffers, |c| {
            c.decline_inverse_offers = Some(call::DeclineInverseOffers {
                inverse_offer_ids,
                filters,
            })
        })
    }

    /// SUPPRESS offers for `roles` (empty: all roles). Also re-applied on every re-subscribe.
    pub fn suppress(&mut self, roles: Vec<String>) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        let all: Vec<String> = self.subscribed_roles();
        let affected = if roles.is_empty() { all } else { roles.clone() };
        for role in affected {
            if !self.config.suppressed_roles.contains(&role) {
                self.config.suppressed_roles.push(role);
            }
        }
        self.send_call(call::Type::Suppress, |c| {
            c.suppress = Some(call::Suppress { roles })
        })
    }

    /// REVIVE offers for `roles` (empty: all roles); also clears their decline filters.
    pub fn revive(&mut self, roles: Vec<String>) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        if roles.is_empty() {
            self.config.suppressed_roles.clear();
        } else {
            self.config.suppressed_roles.retain(|r| !roles.contains(r));
        }
        self.send_call(call::Type::Revive, |c| {
            c.revive = Some(call::Revive { roles })
        })
    }

    /// KILL a task (`kill_policy` overrides the task's grace period).
    pub fn kill(
        &mut self,
        task_id: TaskId,
        agent_id: Option<AgentId>,
        kill_policy: Option<KillPolicy>,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.send_call(call::Type::Kill, |c| {
            c.kill = Some(call::Kill {
                task_id,
                agent_id,
                kill_policy,
            })
        })
    }

    /// SHUTDOWN one of our executors.
    pub fn shutdown(
        &mut self,
        executor_id: ExecutorId,
        agent_id: AgentId,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.send_call(call::Type::Shutdown, |c| {
            c.shutdown = Some(call::Shutdown {
                executor_id,
                agent_id,
            })
        })
    }

    /// MESSAGE: opaque bytes to one of our executors (best effort).
    pub fn message(
        &mut self,
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: Bytes,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.send_call(call::Type::Message, |c| {
            c.message = Some(call::Message {
                agent_id,
                executor_id,
                data,
            })
        })
    }

    /// ACKNOWLEDGE a status update. Call only after the new task state is persisted. If the
    /// subscription is gone meanwhile, the ack is dropped: the agent re-sends the update.
    pub fn acknowledge(&mut self, token: AckToken) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.send_call(call::Type::Acknowledge, |c| {
            c.acknowledge = Some(call::Acknowledge {
                agent_id: token.agent_id,
                task_id: token.task_id,
                uuid: token.uuid,
            })
        })
    }

    /// ACKNOWLEDGE_OPERATION_STATUS, after persisting the operation's new state.
    pub fn acknowledge_operation_status(
        &mut self,
        token: OperationAckToken,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        self.send_call(call::Type::AcknowledgeOperationStatus, |c| {
            c.acknowledge_operation_status = Some(call::AcknowledgeOperationStatus {
                agent_id: token.agent_id,
                resource_provider_id: token.resource_provider_id,
                uuid: token.uuid,
                operation_id: token.operation_id,
            })
        })
    }

    /// An ad-hoc RECONCILE (`tasks` empty: implicit).
    pub fn reconcile(
        &mut self,
        tasks: Vec<(TaskId, Option<AgentId>)>,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        Ok(self.send_reconcile(ReconcileRequest { tasks }))
    }

    /// TEARDOWN: removes the framework for good (all tasks killed, id dead). The client stops
    /// with [`FatalError::TornDown`] once the master accepted it.
    pub fn teardown(&mut self) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        let id = self.send_call(call::Type::Teardown, |_| {})?;
        self.teardown_call = Some(id);
        Ok(id)
    }

    /// UPDATE_FRAMEWORK: change roles, name, capabilities, failover timeout, ... (not
    /// `principal`, `user`, `checkpoint`). Later re-subscriptions use the new values.
    pub fn update_framework(
        &mut self,
        mut framework_info: FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<CallId, CommandError> {
        self.require_subscribed()?;
        framework_info.id = self.framework_id.clone();
        self.config.framework_info = framework_info.clone();
        self.config.suppressed_roles = suppressed_roles.clone();
        let offer_constraints = self.config.offer_constraints.clone();
        self.send_call(call::Type::UpdateFramework, |c| {
            c.update_framework = Some(call::UpdateFramework {
                framework_info,
                suppressed_roles,
                offer_constraints,
            })
        })
    }

    // ----- internals -----

    fn subscribed_roles(&self) -> Vec<String> {
        let info = &self.config.framework_info;
        if info.roles.is_empty() {
            vec![info.role().to_owned()]
        } else {
            info.roles.clone()
        }
    }

    fn require_subscribed(&self) -> Result<(), CommandError> {
        if self.is_subscribed() {
            Ok(())
        } else {
            Err(CommandError::NotSubscribed)
        }
    }

    fn take_offers(&mut self, ids: &[OfferId]) -> Result<(), CommandError> {
        take_ids(&mut self.offers, ids)
    }

    fn take_inverse_offers(&mut self, ids: &[OfferId]) -> Result<(), CommandError> {
        take_ids(&mut self.inverse_offers, ids)
    }

    fn current_conn(&self) -> Option<ConnectionId> {
        match &self.phase {
            Phase::Connecting { conn, .. }
            | Phase::AwaitingSubscribed { conn, .. }
            | Phase::Subscribed { conn, .. } => Some(*conn),
            _ => None,
        }
    }

    fn current_url(&self) -> Option<String> {
        match &self.phase {
            Phase::Connecting { url, .. }
            | Phase::AwaitingSubscribed { url, .. }
            | Phase::Subscribed { url, .. } => Some(url.clone()),
            _ => None,
        }
    }

    fn ignore_stale(&mut self, conn: ConnectionId) {
        debug!(conn, "ignoring input from a stale subscription connection");
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Content-Type", CONTENT_TYPE_PROTOBUF.to_owned()),
            ("Accept", CONTENT_TYPE_PROTOBUF.to_owned()),
        ];
        if let Some(creds) = &self.config.credentials {
            headers.push(("Authorization", creds.authorization()));
        }
        headers
    }

    fn connect(&mut self, now: Instant) {
        let url = match self.redirect.clone() {
            Some(url) => url,
            None => {
                if self.config.masters.is_empty() {
                    info!("no Mesos master known yet; waiting for detection");
                    self.phase = Phase::NoMaster;
                    return;
                }
                let index = self.master_index % self.config.masters.len();
                self.config.masters[index].scheduler_url()
            }
        };
        let conn = self.next_conn;
        self.next_conn += 1;
        let mut info = self.config.framework_info.clone();
        info.id = self.framework_id.clone();
        let call = Call {
            framework_id: self.framework_id.clone(),
            r#type: Some(call::Type::Subscribe as i32),
            subscribe: Some(call::Subscribe {
                framework_info: info,
                suppressed_roles: self.config.suppressed_roles.clone(),
                offer_constraints: self.config.offer_constraints.clone(),
            }),
            ..Default::default()
        };
        info!(%url, conn, framework_id = ?self.framework_id.as_ref().map(|f| &f.value), "subscribing");
        let request = HttpRequest {
            kind: RequestKind::Subscribe,
            url: url.clone(),
            headers: self.headers(),
            body: Bytes::from(call.encode_to_vec()),
        };
        self.actions.push_back(Action::Subscribe { conn, request });
        self.phase = Phase::Connecting {
            conn,
            url,
            deadline: now + self.config.subscribe_timeout,
        };
    }

    fn close_stream(&mut self, conn: ConnectionId) {
        self.actions.push_back(Action::CloseSubscription { conn });
    }

    /// Leaves the current attempt or subscription: closes the stream, voids offers, stops
    /// reconciliation, and schedules the next attempt: with `retry` (a failure) after a backoff
    /// on the next candidate master, otherwise (leader change, owner's request) at once. A
    /// pending TEARDOWN turns this into the end of the client.
    fn lose_subscription(&mut self, now: Instant, reason: DisconnectReason, retry: bool) {
        if self.teardown_call.is_some() && self.is_subscribed() {
            // After TEARDOWN the master closes our stream, possibly before its 202 arrives:
            // that is the teardown completing, not a reason to re-subscribe.
            return self.stop(FatalError::TornDown);
        }
        if let Some(conn) = self.current_conn() {
            self.close_stream(conn);
        }
        let was_subscribed = self.is_subscribed();
        self.offers.clear();
        self.inverse_offers.clear();
        self.reconciler.stop();
        if was_subscribed {
            warn!(?reason, "lost the Mesos subscription; re-subscribing");
            self.events
                .push_back(SchedulerEvent::Disconnected { reason });
        } else {
            warn!(?reason, "subscription attempt failed");
        }
        if retry {
            // A failed attempt: forget any redirect and move on to the next candidate.
            self.redirect = None;
            self.redirects_in_row = 0;
            self.master_index = self.master_index.wrapping_add(1);
            let delay = self.backoff.next_delay();
            debug!(?delay, "next subscription attempt");
            self.phase = Phase::Waiting { until: now + delay };
        } else {
            self.phase = Phase::Waiting { until: now };
        }
    }

    fn stop(&mut self, error: FatalError) {
        if let Some(conn) = self.current_conn() {
            self.close_stream(conn);
        }
        warn!(%error, "Mesos scheduler client stopped");
        self.offers.clear();
        self.inverse_offers.clear();
        self.reconciler.stop();
        self.phase = Phase::Stopped;
        self.events.push_back(SchedulerEvent::Fatal(error));
    }

    fn send_call(
        &mut self,
        ty: call::Type,
        fill: impl FnOnce(&mut Call),
    ) -> Result<CallId, CommandError> {
        let Phase::Subscribed {
            conn,
            url,
            stream_id,
            ..
        } = &self.phase
        else {
            return Err(CommandError::NotSubscribed);
        };
        let (conn, url, stream_id) = (*conn, url.clone(), stream_id.clone());
        let mut call = Call {
            framework_id: self.framework_id.clone(),
            r#type: Some(ty as i32),
            ..Default::default()
        };
        fill(&mut call);
        let mut headers = self.headers();
        headers.push((STREAM_ID_HEADER, stream_id));
        let call_id = self.next_call;
        self.next_call += 1;
        self.pending_calls.insert(
            call_id,
            PendingCall {
                call_type: ty.as_str_name(),
                conn,
            },
        );
        self.actions.push_back(Action::Call {
            call_id,
            request: HttpRequest {
                kind: RequestKind::Call,
                url,
                headers,
                body: Bytes::from(call.encode_to_vec()),
            },
        });
        Ok(call_id)
    }

    fn send_reconcile(&mut self, request: ReconcileRequest) -> CallId {
        let tasks = request
            .tasks
            .into_iter()
            .map(|(task_id, agent_id)| call::reconcile::Task { task_id, agent_id })
            .collect();
        // Only called while subscribed, so this cannot fail; a failure would just skip a round.
        self.send_call(call::Type::Reconcile, |c| {
            c.reconcile = Some(call::Reconcile { tasks })
        })
        .unwrap_or_default()
    }

    fn handle_event(&mut self, now: Instant, event: Event) {
        let ty = event.r#type();
        if let Phase::AwaitingSubscribed { .. } = self.phase {
            match ty {
                event::Type::Subscribed => {}
                event::Type::Error => {}
                other => {
                    let reason = DisconnectReason::MalformedEvent(format!(
                        "first event on the stream is {}, expected SUBSCRIBED or ERROR",
                        other.as_str_name()
                    ));
                    return self.lose_subscription(now, reason, true);
                }
            }
        }
        // Any event proves the stream is alive.
        if let Phase::Subscribed {
            deadline,
            heartbeat_timeout,
            ..
        } = &mut self.phase
        {
            *deadline = now + *heartbeat_timeout;
        }
        match ty {
            event::Type::Subscribed => self.on_subscribed(now, event.subscribed),
            event::Type::Error => {
                let message = event
                    .error
                    .map(|e| e.message)
                    .unwrap_or_else(|| "ERROR event without a message".to_owned());
                self.stop(classify_error(message));
            }
            event::Type::Heartbeat | event::Type::Unknown => {}
            event::Type::Offers => {
                let offers = event.offers.map(|o| o.offers).unwrap_or_default();
                for offer in &offers {
                    self.offers.insert(offer.id.value.clone());
                }
                if !offers.is_empty() {
                    self.events.push_back(SchedulerEvent::Offers(offers));
                }
            }
            event::Type::InverseOffers => {
                let offers = event
                    .inverse_offers
                    .map(|o| o.inverse_offers)
                    .unwrap_or_default();
                for offer in &offers {
                    self.inverse_offers.insert(offer.id.value.clone());
                }
                if !offers.is_empty() {
                    self.events.push_back(SchedulerEvent::InverseOffers(offers));
                }
            }
            event::Type::Rescind => {
                if let Some(r) = event.rescind {
                    self.offers.remove(&r.offer_id.value);
                    self.events.push_back(SchedulerEvent::Rescinded(r.offer_id));
                }
            }
            event::Type::RescindInverseOffer => {
                if let Some(r) = event.rescind_inverse_offer {
                    self.inverse_offers.remove(&r.inverse_offer_id.value);
                    self.events
                        .push_back(SchedulerEvent::InverseOfferRescinded(r.inverse_offer_id));
                }
            }
            event::Type::Update => {
                if let Some(update) = event.update {
                    self.on_update(update.status);
                }
            }
            event::Type::UpdateOperationStatus => {
                if let Some(update) = event.update_operation_status {
                    let status = update.status;
                    let ack = match (&status.uuid, &status.operation_id) {
                        (Some(uuid), Some(operation_id)) => Some(OperationAckToken {
                            agent_id: status.agent_id.clone(),
                            resource_provider_id: status.resource_provider_id.clone(),
                            uuid: uuid.value.clone(),
                            operation_id: operation_id.clone(),
                        }),
                        _ => None,
                    };
                    self.events.push_back(SchedulerEvent::OperationUpdate {
                        status: Box::new(status),
                        ack,
                    });
                }
            }
            event::Type::Message => {
                if let Some(m) = event.message {
                    self.events.push_back(SchedulerEvent::Message {
                        agent_id: m.agent_id,
                        executor_id: m.executor_id,
                        data: m.data,
                    });
                }
            }
            event::Type::Failure => {
                if let Some(f) = event.failure {
                    match (f.agent_id, f.executor_id) {
                        (Some(agent_id), Some(executor_id)) => {
                            self.events.push_back(SchedulerEvent::ExecutorExited {
                                agent_id,
                                executor_id,
                                status: f.status.map(ExitStatus::from_wait_status),
                            })
                        }
                        (Some(agent_id), None) => self
                            .events
                            .push_back(SchedulerEvent::AgentLost { agent_id }),
                        (None, _) => warn!("FAILURE event without agent_id ignored"),
                    }
                }
            }
        }
    }

    fn on_subscribed(&mut self, now: Instant, subscribed: Option<event::Subscribed>) {
        let Phase::AwaitingSubscribed {
            conn,
            url,
            stream_id,
            ..
        } = &self.phase
        else {
            debug!("SUBSCRIBED on a live subscription ignored");
            return;
        };
        let Some(subscribed) = subscribed else {
            let reason =
                DisconnectReason::MalformedEvent("SUBSCRIBED event without payload".to_owned());
            return self.lose_subscription(now, reason, true);
        };
        let interval_secs = subscribed
            .heartbeat_interval_seconds
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL.as_secs_f64());
        let heartbeat_timeout = Duration::from_secs_f64(interval_secs) * HEARTBEAT_MISSES;
        let (conn, url, stream_id) = (*conn, url.clone(), stream_id.clone());
        info!(
            framework_id = %subscribed.framework_id.value,
            %url,
            "subscribed to the Mesos master"
        );
        self.framework_id = Some(subscribed.framework_id.clone());
        self.backoff.reset();
        self.redirects_in_row = 0;
        self.offers.clear();
        self.inverse_offers.clear();
        self.phase = Phase::Subscribed {
            conn,
            url,
            stream_id,
            heartbeat_timeout,
            deadline: now + heartbeat_timeout,
        };
        self.events.push_back(SchedulerEvent::Subscribed {
            framework_id: subscribed.framework_id,
            master_info: subscribed.master_info,
            heartbeat_interval_secs: interval_secs,
        });
        match self.reconciler.start(now) {
            Some(request) => {
                self.send_reconcile(request);
            }
            None => self
                .events
                .push_back(SchedulerEvent::ReconciliationComplete),
        }
    }

    fn on_update(&mut self, status: mesoflow_proto::mesos::v1::TaskStatus) {
        let ack = match (&status.uuid, &status.agent_id) {
            (Some(uuid), Some(agent_id)) if !uuid.is_empty() => Some(AckToken {
                agent_id: agent_id.clone(),
                task_id: status.task_id.clone(),
                uuid: uuid.clone(),
            }),
            (Some(uuid), None) if !uuid.is_empty() => {
                warn!(task = %status.task_id.value, "update with uuid but no agent_id cannot be acknowledged");
                None
            }
            _ => None,
        };
        let completed =
            self.reconciler
                .on_update(&status.task_id, status.agent_id.as_ref(), status.state);
        self.events.push_back(SchedulerEvent::Update {
            status: Box::new(status),
            ack,
        });
        if completed {
            info!("explicit reconciliation complete");
            self.events
                .push_back(SchedulerEvent::ReconciliationComplete);
        }
    }
}

fn take_ids(outstanding: &mut HashSet<String>, ids: &[OfferId]) -> Result<(), CommandError> {
    if ids.is_empty() {
        return Err(CommandError::Invalid("no offer ids given".to_owned()));
    }
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id.value.as_str()) {
            return Err(CommandError::Invalid(format!(
                "offer '{}' listed twice",
                id.value
            )));
        }
        if !outstanding.contains(&id.value) {
            return Err(CommandError::UnknownOffer(id.value.clone()));
        }
    }
    for id in ids {
        outstanding.remove(&id.value);
    }
    Ok(())
}

/// Maps an ERROR event's message to the fatal error it means.
fn classify_error(message: String) -> FatalError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("has been removed") {
        FatalError::FrameworkRemoved { message }
    } else if lower.contains("failed over") {
        FatalError::FailedOver { message }
    } else {
        FatalError::SubscriptionRejected { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decodes_like_posix_macros() {
        assert_eq!(ExitStatus::from_wait_status(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_wait_status(3 << 8), ExitStatus::Exited(3));
        assert_eq!(
            ExitStatus::from_wait_status(255 << 8),
            ExitStatus::Exited(255)
        );
        assert_eq!(ExitStatus::from_wait_status(9), ExitStatus::Signaled(9));
        assert_eq!(
            ExitStatus::from_wait_status(15 | 0x80),
            ExitStatus::Signaled(15)
        );
        assert_eq!(
            ExitStatus::from_wait_status(0x137f),
            ExitStatus::Other(0x137f)
        );
    }

    #[test]
    fn error_messages_are_classified() {
        assert!(matches!(
            classify_error("Framework has been removed".into()),
            FatalError::FrameworkRemoved { .. }
        ));
        assert!(matches!(
            classify_error("Framework failed over".into()),
            FatalError::FailedOver { .. }
        ));
        assert!(matches!(
            classify_error("Role 'x' is not allowed".into()),
            FatalError::SubscriptionRejected { .. }
        ));
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials {
            principal: "p".into(),
            secret: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.authorization(), "Basic cDpodW50ZXIy");
    }
}
