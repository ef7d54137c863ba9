//! The master's bookkeeping as a pure state machine: scheduler calls and agent messages go in,
//! events for framework streams and commands for agents come out. No I/O and no clock: every
//! input carries `now`, and [`Master::poll_timeout`] says when [`Master::tick`] wants to run.
//!
//! It follows Mesos 1.11 (`src/master/master.cpp`, `http.cpp`, `validation.cpp`): frameworks
//! subscribe and fail over, offers are made per agent and role from what is not allocated,
//! ACCEPT is validated strictly (invalid offers -> TASK_LOST/DROPPED, invalid tasks ->
//! TASK_ERROR, both without uuid), declines install filters, status updates from agents are
//! forwarded as UPDATE events, and reconciliation answers come from the master's own view.

pub mod validation;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use mesoflow_proto::mesos::v1;
use v1::framework_info::capability::Type as Capability;
use v1::scheduler::call::Type as CallType;
use v1::scheduler::event::Type as EventType;
use v1::task_status::{Reason, Source};
use v1::{TaskState, scheduler as sched};

use crate::http::Rejection;
use crate::resources::{AttributeValue, Resources};
use crate::wire::{self, ResourceFormat, has_capability, validate_id};

/// Identifies one subscription stream (the `Mesos-Stream-Id` value).
pub type StreamId = String;

/// Longest decline filter Mesos accepts (365 days).
const MAX_REFUSE_SECONDS: f64 = 31_536_000.0;
/// Default decline filter (`Filters.refuse_seconds` default).
const DEFAULT_REFUSE_SECONDS: f64 = 5.0;

/// Master settings.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// `MasterInfo.id`; also the prefix of framework and offer IDs.
    pub master_id: String,
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    /// Heartbeat interval announced in SUBSCRIBED (15 s on a real 1.11 master).
    pub heartbeat_interval: Duration,
    /// How often the allocator runs (`--allocation_interval`, 1 s by default).
    pub allocation_interval: Duration,
    /// `--offer_timeout`: rescind offers held longer than this.
    pub offer_timeout: Option<Duration>,
}

impl MasterConfig {
    /// Defaults of a real master, listening on `ip:port`.
    pub fn new(ip: &str, port: u16) -> Self {
        Self {
            master_id: uuid::Uuid::new_v4().to_string(),
            hostname: ip.to_string(),
            ip: ip.to_string(),
            port,
            heartbeat_interval: Duration::from_secs(15),
            allocation_interval: Duration::from_secs(1),
            offer_timeout: None,
        }
    }
}

/// What an agent tells the master about itself when it registers.
#[derive(Debug, Clone)]
pub struct AgentRegistration {
    pub agent_id: String,
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    pub resources: Resources,
    pub attributes: Vec<(String, AttributeValue)>,
    /// Live executors (framework, info) and tasks (framework info, task, latest state) when an
    /// agent re-registers with a new leader.
    pub executors: Vec<(v1::FrameworkInfo, v1::ExecutorInfo)>,
    pub tasks: Vec<(v1::FrameworkInfo, v1::TaskInfo, i32)>,
}

/// How an agent left the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRemoval {
    /// Health checks failed: tasks become TASK_UNREACHABLE (TASK_LOST if not partition-aware).
    Unreachable,
    /// An operator marked it gone: TASK_GONE_BY_OPERATOR (TASK_LOST if not partition-aware).
    Gone,
}

/// What the master asks of an agent.
// Short-lived queue items: boxing the protobuf payloads would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AgentCommand {
    /// Launch tasks (one LAUNCH, or one LAUNCH_GROUP when `group`) on `executor`.
    RunTasks {
        framework: v1::FrameworkInfo,
        executor: v1::ExecutorInfo,
        tasks: Vec<v1::TaskInfo>,
        group: bool,
    },
    KillTask {
        framework_id: String,
        task_id: String,
        kill_policy: Option<v1::KillPolicy>,
    },
    ShutdownExecutor {
        framework_id: String,
        executor_id: String,
    },
    ShutdownFramework {
        framework_id: String,
    },
    Acknowledge {
        framework_id: String,
        task_id: String,
        uuid: Bytes,
    },
    Message {
        framework_id: String,
        executor_id: String,
        data: Bytes,
    },
}

/// Outputs of the state machine, drained with [`Master::poll_output`].
// Short-lived queue items: boxing the protobuf payloads would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write `event` on subscription stream `stream`.
    Event {
        stream: StreamId,
        event: sched::Event,
    },
    /// Close the stream (after its last event).
    CloseStream { stream: StreamId },
    /// Deliver `command` to agent `agent`.
    ToAgent {
        agent: String,
        command: AgentCommand,
    },
}

/// Successful answers to a non-SUBSCRIBE call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallReply {
    /// 202: queued; results arrive as events.
    Accepted,
    /// 200 (UPDATE_FRAMEWORK).
    Ok,
    /// 501 (type UNKNOWN).
    NotImplemented,
}

#[derive(Debug, Clone)]
struct DeclineFilter {
    agent: String,
    role: String,
    resources: Resources,
    until: Instant,
}

#[derive(Debug, Clone)]
struct TaskEntry {
    agent: String,
    executor_id: Option<String>,
    state: i32,
    /// The uuid of the latest update, if it came with one (acked updates clear the task).
    latest_uuid: Option<Bytes>,
    resources: Resources,
    /// Resources are returned once, on the first terminal update.
    resources_released: bool,
    unreachable_time: Option<f64>,
}

/// What a test can see of a framework (a test hook; a real master shows this in `/state`).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameworkView {
    /// Roles it suppressed offers for.
    pub suppressed: Vec<String>,
    /// Offers it declined, in order, with the `refuse_seconds` each asked for (None: default).
    pub declines: Vec<Option<f64>>,
    /// Its tasks.
    pub tasks: Vec<TaskView>,
}

/// One task of a [`FrameworkView`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub task_id: String,
    pub agent_id: String,
    pub executor_id: Option<String>,
    pub state: i32,
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    pub ports: Vec<(u64, u64)>,
}

#[derive(Debug)]
struct Framework {
    id: String,
    /// `refuse_seconds` of every DECLINE (for [`FrameworkView`]).
    declines: Vec<Option<f64>>,
    info: v1::FrameworkInfo,
    roles: Vec<String>,
    stream: Option<StreamId>,
    disconnected_at: Option<Instant>,
    next_heartbeat: Option<Instant>,
    suppressed: BTreeSet<String>,
    filters: Vec<DeclineFilter>,
    tasks: BTreeMap<String, TaskEntry>,
    order: u64,
}

impl Framework {
    fn connected(&self) -> bool {
        self.stream.is_some()
    }
    fn partition_aware(&self) -> bool {
        has_capability(&self.info, Capability::PartitionAware)
    }
    fn format(&self) -> ResourceFormat {
        ResourceFormat::for_framework(&self.info)
    }
}

#[derive(Debug)]
struct AgentEntry {
    registration: AgentRegistration,
    allocated: Resources,
    offered: Resources,
    /// (framework, executor id) -> (info, resources).
    executors: HashMap<(String, String), (v1::ExecutorInfo, Resources)>,
    removed: Option<(AgentRemoval, f64)>,
}

impl AgentEntry {
    fn available(&self) -> Resources {
        let mut avail = self.registration.resources.clone();
        avail.subtract(&self.allocated);
        avail.subtract(&self.offered);
        avail
    }
}

#[derive(Debug, Clone)]
struct OfferEntry {
    framework: String,
    agent: String,
    role: String,
    resources: Resources,
    created: Instant,
}

/// The master state machine.
#[derive(Debug)]
pub struct Master {
    config: MasterConfig,
    frameworks: HashMap<String, Framework>,
    removed_frameworks: HashSet<String>,
    agents: BTreeMap<String, AgentEntry>,
    offers: HashMap<String, OfferEntry>,
    outputs: VecDeque<Output>,
    next_framework: u64,
    next_offer: u64,
    next_allocation: Option<Instant>,
}

fn event(kind: EventType) -> sched::Event {
    sched::Event {
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

fn error_event(message: &str) -> sched::Event {
    sched::Event {
        error: Some(sched::event::Error {
            message: message.to_string(),
        }),
        ..event(EventType::Error)
    }
}

fn update_event(status: v1::TaskStatus) -> sched::Event {
    sched::Event {
        update: Some(sched::event::Update { status }),
        ..event(EventType::Update)
    }
}

/// A master-generated status (no uuid: never acknowledged, never retried).
fn master_status(
    task_id: &str,
    agent: Option<&str>,
    state: TaskState,
    reason: Reason,
    message: &str,
) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: v1::TaskId {
            value: task_id.to_string(),
        },
        state: state as i32,
        message: Some(message.to_string()),
        source: Some(Source::Master as i32),
        reason: Some(reason as i32),
        agent_id: agent.map(|a| v1::AgentId {
            value: a.to_string(),
        }),
        timestamp: Some(wire::wall_clock_seconds()),
        ..Default::default()
    }
}

impl Master {
    /// A fresh master (a new leader knows no frameworks).
    pub fn new(config: MasterConfig) -> Self {
        Self {
            config,
            frameworks: HashMap::new(),
            removed_frameworks: HashSet::new(),
            agents: BTreeMap::new(),
            offers: HashMap::new(),
            outputs: VecDeque::new(),
            next_framework: 0,
            next_offer: 0,
            next_allocation: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// Changes the heartbeat interval announced to frameworks that subscribe from now on.
    pub fn set_heartbeat_interval(&mut self, interval: Duration) {
        self.config.heartbeat_interval = interval;
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// `MasterInfo` as sent in SUBSCRIBED.
    pub fn master_info(&self) -> v1::MasterInfo {
        let ip_u32 = self
            .config
            .ip
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| u32::from_ne_bytes(ip.octets()))
            .unwrap_or(0);
        v1::MasterInfo {
            id: self.config.master_id.clone(),
            ip: ip_u32,
            port: u32::from(self.config.port),
            pid: Some(format!("master@{}:{}", self.config.ip, self.config.port)),
            hostname: Some(self.config.hostname.clone()),
            version: Some("1.11.0".into()),
            address: Some(v1::Address {
                hostname: Some(self.config.hostname.clone()),
                ip: Some(self.config.ip.clone()),
                port: i32::from(self.config.port),
            }),
            ..Default::default()
        }
    }

    /// The framework ids currently known (for tests and the CLI).
    pub fn framework_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.frameworks.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The latest state of a task as the master sees it.
    pub fn task_state(&self, framework_id: &str, task_id: &str) -> Option<i32> {
        self.frameworks
            .get(framework_id)?
            .tasks
            .get(task_id)
            .map(|t| t.state)
    }

    /// What a test can see of a framework.
    pub fn framework_view(&self, framework_id: &str) -> Option<FrameworkView> {
        let fw = self.frameworks.get(framework_id)?;
        Some(FrameworkView {
            suppressed: fw.suppressed.iter().cloned().collect(),
            declines: fw.declines.clone(),
            tasks: fw
                .tasks
                .iter()
                .map(|(id, t)| TaskView {
                    task_id: id.clone(),
                    agent_id: t.agent.clone(),
                    executor_id: t.executor_id.clone(),
                    state: t.state,
                    cpus: t.resources.scalar("cpus"),
                    mem: t.resources.scalar("mem"),
                    disk: t.resources.scalar("disk"),
                    ports: t.resources.ranges("ports"),
                })
                .collect(),
        })
    }

    /// The current subscription stream of a framework.
    pub fn stream_of(&self, framework_id: &str) -> Option<StreamId> {
        self.frameworks.get(framework_id)?.stream.clone()
    }

    /// The framework a stream belongs to.
    pub fn framework_of_stream(&self, stream: &str) -> Option<String> {
        self.frameworks
            .values()
            .find(|f| f.stream.as_deref() == Some(stream))
            .map(|f| f.id.clone())
    }

    /// The number of outstanding offers.
    pub fn outstanding_offers(&self) -> usize {
        self.offers.len()
    }

    fn emit(&mut self, stream: &StreamId, event: sched::Event) {
        self.outputs.push_back(Output::Event {
            stream: stream.clone(),
            event,
        });
    }

    fn emit_to_framework(&mut self, framework_id: &str, event: sched::Event) {
        if let Some(stream) = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.stream.clone())
        {
            self.emit(&stream, event);
        }
    }

    fn send_to_agent(&mut self, agent: &str, command: AgentCommand) {
        if self.agents.get(agent).is_some_and(|a| a.removed.is_none()) {
            self.outputs.push_back(Output::ToAgent {
                agent: agent.to_string(),
                command,
            });
        }
    }

    // ----------------------------------------------------------------------------------------
    // Scheduler API
    // ----------------------------------------------------------------------------------------

    /// The checks Mesos runs on a SUBSCRIBE before looking at `Accept` and `Mesos-Stream-Id`:
    /// call validation and the authenticated principal.
    pub fn validate_subscribe(
        &self,
        call: &sched::Call,
        principal: Option<&str>,
    ) -> Result<(), Rejection> {
        validation::validate_call(call).map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e))?;
        if let (Some(authenticated), Some(sub)) = (principal, call.subscribe.as_ref())
            && let Some(p) = sub.framework_info.principal.as_deref()
            && p != authenticated
        {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "Authenticated principal '{authenticated}' does not match principal '{p}' set in `FrameworkInfo`"
                ),
            ));
        }
        Ok(())
    }

    /// Handles SUBSCRIBE. `stream` is the id of the stream the shell opened for the response.
    /// Transport-level problems are a `Rejection` (4xx); semantic ones are an ERROR event on a
    /// 200 stream, as on a real master.
    pub fn subscribe(
        &mut self,
        now: Instant,
        call: &sched::Call,
        principal: Option<&str>,
        stream_id_header: bool,
        stream: StreamId,
    ) -> Result<(), Rejection> {
        self.validate_subscribe(call, principal)?;
        if stream_id_header {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "Subscribe calls should not include the 'Mesos-Stream-Id' header",
            ));
        }
        let Some(subscribe) = call.subscribe.as_ref() else {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "Expecting 'subscribe' to be present",
            ));
        };
        let mut info = subscribe.framework_info.clone();
        if let Some(authenticated) = principal {
            match info.principal.as_deref() {
                Some(p) if p != authenticated => {
                    return Err(Rejection::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "Authenticated principal '{authenticated}' does not match principal '{p}' set in `FrameworkInfo`"
                        ),
                    ));
                }
                Some(_) => {}
                None => info.principal = Some(authenticated.to_string()),
            }
        }
        let reject = |master: &mut Master, message: String| {
            master.emit(&stream, error_event(&message));
            master.outputs.push_back(Output::CloseStream {
                stream: stream.clone(),
            });
        };
        let roles = match validation::validate_framework_info(&info, &subscribe.suppressed_roles) {
            Ok(roles) => roles,
            Err(e) => {
                reject(self, e);
                return Ok(());
            }
        };
        let framework_id = match &info.id {
            Some(id) if self.removed_frameworks.contains(&id.value) => {
                reject(self, "Framework has been removed".into());
                return Ok(());
            }
            Some(id) => id.value.clone(),
            None => {
                let id = format!("{}-{:04}", self.config.master_id, self.next_framework);
                self.next_framework += 1;
                info.id = Some(v1::FrameworkId { value: id.clone() });
                id
            }
        };
        if let Some(existing) = self.frameworks.get(&framework_id)
            && existing.info.principal != info.principal
        {
            reject(
                self,
                format!(
                    "Changing framework's principal is not allowed (from {:?} to {:?})",
                    existing.info.principal, info.principal
                ),
            );
            return Ok(());
        }
        let heartbeat = self.config.heartbeat_interval;
        let order = self.next_framework;
        let (old_stream, had_offers) = match self.frameworks.get_mut(&framework_id) {
            Some(fw) => {
                // user and checkpoint cannot change on re-subscription: keep the old values.
                info.user = fw.info.user.clone();
                info.checkpoint = fw.info.checkpoint;
                fw.info = info;
                fw.roles = roles;
                fw.suppressed = subscribe.suppressed_roles.iter().cloned().collect();
                fw.disconnected_at = None;
                (fw.stream.replace(stream.clone()), true)
            }
            None => {
                self.next_framework += 1;
                self.frameworks.insert(
                    framework_id.clone(),
                    Framework {
                        id: framework_id.clone(),
                        declines: Vec::new(),
                        info,
                        roles,
                        stream: Some(stream.clone()),
                        disconnected_at: None,
                        next_heartbeat: None,
                        suppressed: subscribe.suppressed_roles.iter().cloned().collect(),
                        filters: Vec::new(),
                        tasks: BTreeMap::new(),
                        order,
                    },
                );
                (None, false)
            }
        };
        if let Some(old) = old_stream {
            self.emit(&old, error_event("Framework failed over"));
            self.outputs.push_back(Output::CloseStream { stream: old });
        }
        if had_offers {
            // Offers never survive a (re-)subscription; no RESCIND is sent for them.
            self.discard_offers_of(&framework_id, false);
        }
        let subscribed = sched::Event {
            subscribed: Some(sched::event::Subscribed {
                framework_id: v1::FrameworkId {
                    value: framework_id.clone(),
                },
                heartbeat_interval_seconds: Some(heartbeat.as_secs_f64()),
                master_info: Some(self.master_info()),
            }),
            ..event(EventType::Subscribed)
        };
        self.emit(&stream, subscribed);
        self.emit(&stream, event(EventType::Heartbeat));
        if let Some(fw) = self.frameworks.get_mut(&framework_id) {
            fw.next_heartbeat = Some(now + heartbeat);
        }
        self.next_allocation = Some(now);
        Ok(())
    }

    /// Handles every call but SUBSCRIBE, with the checks of `Master::Http::scheduler` in order.
    pub fn call(
        &mut self,
        now: Instant,
        call: &sched::Call,
        principal: Option<&str>,
        stream_id: Option<&str>,
    ) -> Result<CallReply, Rejection> {
        let bad = |m: String| Rejection::new(StatusCode::BAD_REQUEST, m);
        let kind = validation::validate_call(call).map_err(bad)?;
        if kind == CallType::Subscribe {
            return Err(bad("SUBSCRIBE must be handled by Master::subscribe".into()));
        }
        let framework_id = call
            .framework_id
            .as_ref()
            .map(|f| f.value.clone())
            .unwrap_or_default();
        let Some(fw) = self.frameworks.get(&framework_id) else {
            return Err(bad("Framework cannot be found".into()));
        };
        if let Some(authenticated) = principal
            && fw.info.principal.as_deref() != Some(authenticated)
        {
            return Err(bad(format!(
                "Authenticated principal '{authenticated}' does not match principal '{}' set in `FrameworkInfo`",
                fw.info.principal.clone().unwrap_or_default()
            )));
        }
        let Some(current) = fw.stream.clone() else {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "Framework is not subscribed",
            ));
        };
        match stream_id {
            None => {
                return Err(bad(
                    "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
                ));
            }
            Some(s) if s != current => {
                return Err(bad(format!(
                    "The stream ID '{s}' included in this request didn't match the stream ID currently associated with framework ID {framework_id}"
                )));
            }
            Some(_) => {}
        }
        match kind {
            CallType::Teardown => {
                self.remove_framework(&framework_id, true);
            }
            CallType::Accept => {
                if let Some(accept) = &call.accept {
                    self.accept(now, &framework_id, accept);
                }
            }
            CallType::Decline => {
                if let Some(decline) = &call.decline {
                    let ids: Vec<String> =
                        decline.offer_ids.iter().map(|o| o.value.clone()).collect();
                    for id in ids {
                        if let Some(offer) = self.offers.get(&id).cloned()
                            && offer.framework == framework_id
                        {
                            if let Some(fw) = self.frameworks.get_mut(&framework_id) {
                                fw.declines
                                    .push(decline.filters.as_ref().and_then(|f| f.refuse_seconds));
                            }
                            self.offers.remove(&id);
                            self.return_offered(&offer.agent, &offer.resources);
                            self.add_filter(
                                now,
                                &framework_id,
                                &offer.agent,
                                &offer.role,
                                offer.resources,
                                decline.filters.as_ref(),
                            );
                        }
                    }
                }
            }
            CallType::Revive => {
                let roles = call
                    .revive
                    .as_ref()
                    .map(|r| r.roles.clone())
                    .unwrap_or_default();
                if let Some(fw) = self.frameworks.get_mut(&framework_id) {
                    let roles = if roles.is_empty() {
                        fw.roles.clone()
                    } else {
                        roles
                    };
                    for role in &roles {
                        fw.suppressed.remove(role);
                    }
                    fw.filters.retain(|f| !roles.contains(&f.role));
                }
                self.next_allocation = Some(now);
            }
            CallType::Suppress => {
                let roles = call
                    .suppress
                    .as_ref()
                    .map(|r| r.roles.clone())
                    .unwrap_or_default();
                if let Some(fw) = self.frameworks.get_mut(&framework_id) {
                    let roles = if roles.is_empty() {
                        fw.roles.clone()
                    } else {
                        roles
                    };
                    fw.suppressed.extend(roles);
                }
            }
            CallType::Kill => {
                if let Some(kill) = &call.kill {
                    self.kill(&framework_id, kill);
                }
            }
            CallType::Shutdown => {
                if let Some(s) = &call.shutdown {
                    self.send_to_agent(
                        &s.agent_id.value,
                        AgentCommand::ShutdownExecutor {
                            framework_id: framework_id.clone(),
                            executor_id: s.executor_id.value.clone(),
                        },
                    );
                }
            }
            CallType::Acknowledge => {
                if let Some(ack) = &call.acknowledge {
                    self.acknowledge(&framework_id, ack);
                }
            }
            CallType::Reconcile => {
                if let Some(r) = &call.reconcile {
                    self.reconcile(&framework_id, r);
                }
            }
            CallType::Message => {
                if let Some(m) = &call.message {
                    self.send_to_agent(
                        &m.agent_id.value,
                        AgentCommand::Message {
                            framework_id: framework_id.clone(),
                            executor_id: m.executor_id.value.clone(),
                            data: m.data.clone(),
                        },
                    );
                }
            }
            CallType::UpdateFramework => {
                if let Some(update) = &call.update_framework {
                    return self.update_framework(now, &framework_id, update);
                }
            }
            CallType::Unknown => return Ok(CallReply::NotImplemented),
            // REQUEST is ignored by the built-in allocator; inverse offers and operation
            // feedback have nothing to act on in this cluster (no maintenance, no operations
            // with ids).
            _ => {}
        }
        Ok(CallReply::Accepted)
    }

    fn update_framework(
        &mut self,
        now: Instant,
        framework_id: &str,
        update: &sched::call::UpdateFramework,
    ) -> Result<CallReply, Rejection> {
        let bad = |m: String| Rejection::new(StatusCode::BAD_REQUEST, m);
        let roles =
            validation::validate_framework_info(&update.framework_info, &update.suppressed_roles)
                .map_err(bad)?;
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return Err(bad("Framework cannot be found".into()));
        };
        let new = &update.framework_info;
        if new.principal != fw.info.principal {
            return Err(bad(
                "Updating 'FrameworkInfo.principal' is unsupported".into()
            ));
        }
        if new.user != fw.info.user {
            return Err(bad("Updating 'FrameworkInfo.user' is unsupported".into()));
        }
        if new.checkpoint.unwrap_or(false) != fw.info.checkpoint.unwrap_or(false) {
            return Err(bad(
                "Updating 'FrameworkInfo.checkpoint' is unsupported".into()
            ));
        }
        let removed_roles: Vec<String> = fw
            .roles
            .iter()
            .filter(|r| !roles.contains(r))
            .cloned()
            .collect();
        fw.info = new.clone();
        fw.roles = roles;
        fw.suppressed = update.suppressed_roles.iter().cloned().collect();
        let rescind: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.framework == framework_id && removed_roles.contains(&o.role))
            .map(|(id, _)| id.clone())
            .collect();
        for id in rescind {
            self.rescind(&id);
        }
        self.next_allocation = Some(now);
        Ok(CallReply::Ok)
    }

    /// The stream of a framework ended (client went away).
    pub fn stream_closed(&mut self, now: Instant, stream: &str) {
        let Some(fw) = self
            .frameworks
            .values_mut()
            .find(|f| f.stream.as_deref() == Some(stream))
        else {
            return;
        };
        fw.stream = None;
        fw.next_heartbeat = None;
        fw.disconnected_at = Some(now);
        let id = fw.id.clone();
        tracing::info!(framework = %id, "framework disconnected");
        self.discard_offers_of(&id, false);
    }

    // ----------------------------------------------------------------------------------------
    // Offers
    // ----------------------------------------------------------------------------------------

    fn return_offered(&mut self, agent: &str, resources: &Resources) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.offered.subtract(resources);
        }
    }

    fn discard_offers_of(&mut self, framework_id: &str, send_rescind: bool) {
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.framework == framework_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if send_rescind {
                self.rescind(&id);
            } else if let Some(offer) = self.offers.remove(&id) {
                self.return_offered(&offer.agent, &offer.resources);
            }
        }
    }

    fn rescind(&mut self, offer_id: &str) {
        let Some(offer) = self.offers.remove(offer_id) else {
            return;
        };
        self.return_offered(&offer.agent, &offer.resources);
        self.emit_to_framework(
            &offer.framework,
            sched::Event {
                rescind: Some(sched::event::Rescind {
                    offer_id: v1::OfferId {
                        value: offer_id.to_string(),
                    },
                }),
                ..event(EventType::Rescind)
            },
        );
    }

    fn add_filter(
        &mut self,
        now: Instant,
        framework_id: &str,
        agent: &str,
        role: &str,
        resources: Resources,
        filters: Option<&v1::Filters>,
    ) {
        let mut seconds = filters
            .and_then(|f| f.refuse_seconds)
            .unwrap_or(DEFAULT_REFUSE_SECONDS);
        if !seconds.is_finite() || seconds < 0.0 {
            seconds = DEFAULT_REFUSE_SECONDS;
        }
        seconds = seconds.min(MAX_REFUSE_SECONDS);
        if seconds == 0.0 || resources.is_empty() {
            return;
        }
        if let Some(fw) = self.frameworks.get_mut(framework_id) {
            fw.filters.push(DeclineFilter {
                agent: agent.to_string(),
                role: role.to_string(),
                resources,
                until: now + Duration::from_secs_f64(seconds),
            });
        }
    }

    fn allocate(&mut self, now: Instant) {
        let mut order: Vec<(u64, String)> = self
            .frameworks
            .values()
            .filter(|f| f.connected())
            .map(|f| (f.order, f.id.clone()))
            .collect();
        order.sort();
        let agent_ids: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.removed.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for (_, fw_id) in order {
            let mut offers = Vec::new();
            for agent_id in &agent_ids {
                let Some(fw) = self.frameworks.get_mut(&fw_id) else {
                    continue;
                };
                fw.filters.retain(|f| f.until > now);
                let roles: Vec<String> = fw
                    .roles
                    .iter()
                    .filter(|r| !fw.suppressed.contains(*r))
                    .cloned()
                    .collect();
                for role in roles {
                    let Some(agent) = self.agents.get(agent_id) else {
                        continue;
                    };
                    let avail = agent.available();
                    let mut candidate = avail.reserved_for(&role);
                    candidate.add(&avail.unreserved());
                    // The allocator only offers what can run something (MIN_CPUS / MIN_MEM).
                    if candidate.scalar("cpus") < 0.01 && candidate.scalar("mem") < 32.0 {
                        continue;
                    }
                    let fw = &self.frameworks[&fw_id];
                    if fw.filters.iter().any(|f| {
                        f.agent == *agent_id && f.role == role && f.resources.contains(&candidate)
                    }) {
                        continue;
                    }
                    let offer = self.make_offer(now, &fw_id, agent_id, &role, candidate);
                    offers.push(offer);
                }
            }
            if !offers.is_empty() {
                self.emit_to_framework(
                    &fw_id,
                    sched::Event {
                        offers: Some(sched::event::Offers { offers }),
                        ..event(EventType::Offers)
                    },
                );
            }
        }
    }

    fn make_offer(
        &mut self,
        now: Instant,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        resources: Resources,
    ) -> v1::Offer {
        let id = format!("{}-O{}", self.config.master_id, self.next_offer);
        self.next_offer += 1;
        let fw = &self.frameworks[framework_id];
        let format = fw.format();
        let agent = self.agents.get_mut(agent_id).expect("agent listed above");
        agent.offered.add(&resources);
        let reg = &agent.registration;
        let executor_ids = agent
            .executors
            .keys()
            .filter(|(f, _)| f == framework_id)
            .map(|(_, e)| v1::ExecutorId { value: e.clone() })
            .collect();
        let offer = v1::Offer {
            id: v1::OfferId { value: id.clone() },
            framework_id: v1::FrameworkId {
                value: framework_id.to_string(),
            },
            agent_id: v1::AgentId {
                value: agent_id.to_string(),
            },
            hostname: reg.hostname.clone(),
            url: Some(v1::Url {
                scheme: "http".into(),
                address: v1::Address {
                    hostname: Some(reg.hostname.clone()),
                    ip: Some(reg.ip.clone()),
                    port: i32::from(reg.port),
                },
                path: Some("/slave(1)".into()),
                ..Default::default()
            }),
            resources: wire::to_proto(&resources, role, format),
            attributes: wire::attributes_to_proto(&reg.attributes),
            executor_ids,
            allocation_info: format
                .allocation_info
                .then(|| v1::resource::AllocationInfo {
                    role: Some(role.to_string()),
                }),
            ..Default::default()
        };
        self.offers.insert(
            id,
            OfferEntry {
                framework: framework_id.to_string(),
                agent: agent_id.to_string(),
                role: role.to_string(),
                resources,
                created: now,
            },
        );
        offer
    }

    // ----------------------------------------------------------------------------------------
    // ACCEPT
    // ----------------------------------------------------------------------------------------

    fn task_ids_of(operations: &[v1::offer::Operation]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for op in operations {
            if let Some(l) = &op.launch {
                out.extend(
                    l.task_infos
                        .iter()
                        .map(|t| (t.task_id.value.clone(), t.agent_id.value.clone())),
                );
            }
            if let Some(g) = &op.launch_group {
                out.extend(
                    g.task_group
                        .tasks
                        .iter()
                        .map(|t| (t.task_id.value.clone(), t.agent_id.value.clone())),
                );
            }
        }
        out
    }

    fn validate_offers(&self, framework_id: &str, ids: &[v1::OfferId]) -> Result<(), String> {
        if ids.is_empty() {
            return Err("No offers specified".into());
        }
        let mut seen = HashSet::new();
        let mut agent: Option<&str> = None;
        let mut role: Option<&str> = None;
        for id in ids {
            if !seen.insert(&id.value) {
                return Err(format!("Duplicate offer {} in offer list", id.value));
            }
            let Some(offer) = self.offers.get(&id.value) else {
                return Err(format!("Offer {} is no longer valid", id.value));
            };
            if offer.framework != framework_id {
                return Err(format!(
                    "Offer {} has invalid framework {} while framework {framework_id} is expected",
                    id.value, offer.framework
                ));
            }
            if *agent.get_or_insert(&offer.agent) != offer.agent {
                return Err(format!(
                    "Aggregated offers must belong to one single agent. Offer {} uses agent {} and agent {}",
                    id.value,
                    offer.agent,
                    agent.unwrap_or_default()
                ));
            }
            if *role.get_or_insert(&offer.role) != offer.role {
                return Err(format!(
                    "Aggregated offers must be allocated to the same role. Offer {} uses role {} and role {}",
                    id.value,
                    offer.role,
                    role.unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    fn accept(&mut self, now: Instant, framework_id: &str, accept: &sched::call::Accept) {
        if let Err(error) = self.validate_offers(framework_id, &accept.offer_ids) {
            // Recover what was valid, fail every task of every operation.
            for id in &accept.offer_ids {
                if let Some(offer) = self.offers.get(&id.value).cloned()
                    && offer.framework == framework_id
                {
                    self.offers.remove(&id.value);
                    self.return_offered(&offer.agent, &offer.resources);
                }
            }
            let aware = self.frameworks[framework_id].partition_aware();
            let state = if aware {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            for (task, agent) in Self::task_ids_of(&accept.operations) {
                let status =
                    master_status(&task, Some(&agent), state, Reason::InvalidOffers, &error);
                self.emit_to_framework(framework_id, update_event(status));
            }
            return;
        }
        let mut offered = Resources::new();
        let mut agent_id = String::new();
        let mut role = String::new();
        for id in &accept.offer_ids {
            if let Some(offer) = self.offers.remove(&id.value) {
                self.return_offered(&offer.agent, &offer.resources);
                offered.add(&offer.resources);
                agent_id = offer.agent;
                role = offer.role;
            }
        }
        let mut remaining = offered;
        // Executors launched by earlier tasks of this same ACCEPT.
        let mut new_executors: HashMap<String, v1::ExecutorInfo> = HashMap::new();
        let mut accepted_ids: HashSet<String> = HashSet::new();
        for op in &accept.operations {
            use v1::offer::operation::Type as Op;
            let kind = op.r#type.and_then(|t| Op::try_from(t).ok());
            match kind {
                Some(Op::Launch) => {
                    let tasks = op
                        .launch
                        .as_ref()
                        .map(|l| l.task_infos.clone())
                        .unwrap_or_default();
                    for task in tasks {
                        let result = if op.id.is_some() {
                            Err("An operation ID is not supported for LAUNCH".to_string())
                        } else {
                            self.validate_task(
                                framework_id,
                                &agent_id,
                                &role,
                                &task,
                                &remaining,
                                &new_executors,
                                &accepted_ids,
                            )
                        };
                        match result {
                            Ok((task, executor, used, new_executor)) => {
                                remaining.subtract(&used);
                                accepted_ids.insert(task.task_id.value.clone());
                                if let Some(exec) = &executor {
                                    new_executors
                                        .insert(exec.executor_id.value.clone(), exec.clone());
                                }
                                self.launch(
                                    framework_id,
                                    &agent_id,
                                    vec![task],
                                    executor,
                                    used,
                                    new_executor,
                                    false,
                                );
                            }
                            Err(error) => {
                                let status = master_status(
                                    &task.task_id.value,
                                    Some(&agent_id),
                                    TaskState::TaskError,
                                    Reason::TaskInvalid,
                                    &error,
                                );
                                self.emit_to_framework(framework_id, update_event(status));
                            }
                        }
                    }
                }
                Some(Op::LaunchGroup) => {
                    let Some(group) = op.launch_group.as_ref() else {
                        continue;
                    };
                    let result = if op.id.is_some() {
                        Err("An operation ID is not supported for LAUNCH_GROUP".to_string())
                    } else {
                        self.validate_group(
                            framework_id,
                            &agent_id,
                            &role,
                            group,
                            &remaining,
                            &new_executors,
                            &accepted_ids,
                        )
                    };
                    match result {
                        Ok((tasks, executor, used, new_executor)) => {
                            remaining.subtract(&used);
                            for t in &tasks {
                                accepted_ids.insert(t.task_id.value.clone());
                            }
                            new_executors
                                .insert(executor.executor_id.value.clone(), executor.clone());
                            self.launch(
                                framework_id,
                                &agent_id,
                                tasks,
                                Some(executor),
                                used,
                                new_executor,
                                true,
                            );
                        }
                        Err(error) => {
                            for t in &group.task_group.tasks {
                                let status = master_status(
                                    &t.task_id.value,
                                    Some(&agent_id),
                                    TaskState::TaskError,
                                    Reason::TaskGroupInvalid,
                                    &error,
                                );
                                self.emit_to_framework(framework_id, update_event(status));
                            }
                        }
                    }
                }
                _ => {
                    tracing::warn!(
                        framework = framework_id,
                        operation = ?op.r#type,
                        "the test master only runs LAUNCH and LAUNCH_GROUP; operation dropped"
                    );
                }
            }
        }
        // Whatever was not used is declined with the ACCEPT's filters.
        self.add_filter(
            now,
            framework_id,
            &agent_id,
            &role,
            remaining,
            accept.filters.as_ref(),
        );
    }

    /// Fills in `allocation_info` for a MULTI_ROLE framework and checks the role.
    fn normalize_resources(
        &self,
        framework_id: &str,
        role: &str,
        resources: &mut [v1::Resource],
    ) -> Result<Resources, String> {
        let multi = self.frameworks[framework_id].format().allocation_info;
        for r in resources.iter_mut() {
            if multi {
                match r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) {
                    None => {
                        r.allocation_info = Some(v1::resource::AllocationInfo {
                            role: Some(role.to_string()),
                        })
                    }
                    Some(other) if other != role => {
                        return Err(format!(
                            "Resource '{}' is allocated to role '{other}' but the offers are allocated to role '{role}'",
                            r.name
                        ));
                    }
                    Some(_) => {}
                }
            } else if r.allocation_info.is_some() {
                return Err(format!(
                    "Resource '{}' has 'allocation_info' but the framework is not MULTI_ROLE",
                    r.name
                ));
            }
        }
        wire::from_proto(resources)
    }

    /// Checks an executor against the one already running (or launched earlier in this ACCEPT)
    /// and returns whether it is new.
    fn check_executor(
        &self,
        framework_id: &str,
        agent_id: &str,
        executor: &v1::ExecutorInfo,
        new_executors: &HashMap<String, v1::ExecutorInfo>,
    ) -> Result<bool, String> {
        let existing = self
            .agents
            .get(agent_id)
            .and_then(|a| {
                a.executors
                    .get(&(framework_id.to_string(), executor.executor_id.value.clone()))
            })
            .map(|(info, _)| info)
            .or_else(|| new_executors.get(&executor.executor_id.value));
        match existing {
            Some(info) if info != executor => Err(format!(
                "ExecutorInfo is not compatible with existing ExecutorInfo (executor {})",
                executor.executor_id.value
            )),
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }

    fn check_unique_task(
        &self,
        framework_id: &str,
        task_id: &str,
        accepted: &HashSet<String>,
    ) -> Result<(), String> {
        let live = self.frameworks[framework_id]
            .tasks
            .get(task_id)
            .is_some_and(|t| !v1::is_terminal_state(t.state));
        if live || accepted.contains(task_id) {
            return Err(format!("Task has duplicate ID: {task_id}"));
        }
        Ok(())
    }

    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn validate_task(
        &self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        task: &v1::TaskInfo,
        remaining: &Resources,
        new_executors: &HashMap<String, v1::ExecutorInfo>,
        accepted: &HashSet<String>,
    ) -> Result<(v1::TaskInfo, Option<v1::ExecutorInfo>, Resources, bool), String> {
        validation::validate_task_shape(task, agent_id)?;
        self.check_unique_task(framework_id, &task.task_id.value, accepted)?;
        let mut task = task.clone();
        let mut used = self.normalize_resources(framework_id, role, &mut task.resources)?;
        let mut new_executor = false;
        if let Some(executor) = task.executor.as_mut() {
            validation::validate_executor(executor, framework_id, false)?;
            if executor.framework_id.is_none() {
                executor.framework_id = Some(v1::FrameworkId {
                    value: framework_id.to_string(),
                });
            }
            let exec_resources =
                self.normalize_resources(framework_id, role, &mut executor.resources)?;
            new_executor = self.check_executor(framework_id, agent_id, executor, new_executors)?;
            if new_executor {
                used.add(&exec_resources);
            }
        }
        if !remaining.contains(&used) {
            return Err(format!(
                "Task uses more resources {used} than available {remaining}"
            ));
        }
        let executor = task.executor.clone();
        Ok((task, executor, used, new_executor))
    }

    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn validate_group(
        &self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        group: &v1::offer::operation::LaunchGroup,
        remaining: &Resources,
        new_executors: &HashMap<String, v1::ExecutorInfo>,
        accepted: &HashSet<String>,
    ) -> Result<(Vec<v1::TaskInfo>, v1::ExecutorInfo, Resources, bool), String> {
        let mut executor = group.executor.clone();
        validation::validate_executor(&executor, framework_id, true)?;
        let exec_resources =
            self.normalize_resources(framework_id, role, &mut executor.resources)?;
        let new_executor = self.check_executor(framework_id, agent_id, &executor, new_executors)?;
        if new_executor
            && (exec_resources.scalar("cpus") < 0.01
                || exec_resources.scalar("mem") < 32.0
                || exec_resources.scalar("disk") <= 0.0)
        {
            return Err("Executor for a task group must have at least 0.01 cpus, 32 MB mem and a disk resource".into());
        }
        if group.task_group.tasks.is_empty() {
            return Err("Task group must contain at least one task".into());
        }
        let mut used = Resources::new();
        if new_executor {
            used.add(&exec_resources);
        }
        let mut tasks = Vec::new();
        let mut ids = accepted.clone();
        for task in &group.task_group.tasks {
            let mut task = task.clone();
            match &task.executor {
                None => task.executor = Some(executor.clone()),
                Some(e) if *e != executor => {
                    return Err(format!(
                        "The executor of task '{}' is different from the task group's executor",
                        task.task_id.value
                    ));
                }
                Some(_) => {}
            }
            if task.command.is_some() {
                return Err(format!(
                    "Task '{}' of a task group must not set 'command' with an executor",
                    task.task_id.value
                ));
            }
            validate_id("Task", &task.task_id.value)?;
            if task.agent_id.value != agent_id {
                return Err(format!("Task uses invalid agent: {}", task.agent_id.value));
            }
            if task.resources.is_empty() {
                return Err("Task uses no resources".into());
            }
            if task
                .container
                .as_ref()
                .is_some_and(|c| !c.network_infos.is_empty())
            {
                return Err("NetworkInfos must not be set in the task's ContainerInfo".into());
            }
            self.check_unique_task(framework_id, &task.task_id.value, &ids)?;
            ids.insert(task.task_id.value.clone());
            used.add(&self.normalize_resources(framework_id, role, &mut task.resources)?);
            task.executor = Some(executor.clone());
            tasks.push(task);
        }
        if !remaining.contains(&used) {
            return Err(format!(
                "Task group uses more resources {used} than available {remaining}"
            ));
        }
        Ok((tasks, executor, used, new_executor))
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        tasks: Vec<v1::TaskInfo>,
        executor: Option<v1::ExecutorInfo>,
        used: Resources,
        new_executor: bool,
        group: bool,
    ) {
        let Some(executor) = executor else {
            // Command tasks need the Mesos command executor, which this agent does not have.
            for t in &tasks {
                let status = master_status(
                    &t.task_id.value,
                    Some(agent_id),
                    TaskState::TaskError,
                    Reason::TaskInvalid,
                    "The test agent has no built-in command executor: launch tasks with a custom ExecutorInfo",
                );
                self.emit_to_framework(framework_id, update_event(status));
            }
            return;
        };
        let fw_info = self.frameworks[framework_id].info.clone();
        let mut exec_resources = Resources::new();
        if new_executor {
            exec_resources = wire::from_proto(&executor.resources).unwrap_or_default();
        }
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.allocated.add(&used);
            if new_executor {
                agent.executors.insert(
                    (framework_id.to_string(), executor.executor_id.value.clone()),
                    (executor.clone(), exec_resources.clone()),
                );
            }
        }
        let fw = self
            .frameworks
            .get_mut(framework_id)
            .expect("framework checked");
        for t in &tasks {
            // The executor's resources are accounted separately, per executor.
            let resources = wire::from_proto(&t.resources).unwrap_or_default();
            fw.tasks.insert(
                t.task_id.value.clone(),
                TaskEntry {
                    agent: agent_id.to_string(),
                    executor_id: Some(executor.executor_id.value.clone()),
                    state: TaskState::TaskStaging as i32,
                    latest_uuid: None,
                    resources,
                    resources_released: false,
                    unreachable_time: None,
                },
            );
        }
        self.send_to_agent(
            agent_id,
            AgentCommand::RunTasks {
                framework: fw_info,
                executor,
                tasks,
                group,
            },
        );
    }

    // ----------------------------------------------------------------------------------------
    // Kill, acknowledge, reconcile
    // ----------------------------------------------------------------------------------------

    fn kill(&mut self, framework_id: &str, kill: &sched::call::Kill) {
        let agents = &self.agents;
        let task = self.frameworks[framework_id]
            .tasks
            .get(&kill.task_id.value)
            .map(|t| t.agent.clone())
            // A task on a removed agent cannot be killed: answer with its state instead.
            .filter(|agent| agents.get(agent).is_some_and(|a| a.removed.is_none()));
        match task {
            Some(agent) => self.send_to_agent(
                &agent,
                AgentCommand::KillTask {
                    framework_id: framework_id.to_string(),
                    task_id: kill.task_id.value.clone(),
                    kill_policy: kill.kill_policy,
                },
            ),
            None => {
                // Unknown task: answer with an explicit reconciliation for it.
                let r = sched::call::Reconcile {
                    tasks: vec![sched::call::reconcile::Task {
                        task_id: kill.task_id.clone(),
                        agent_id: kill.agent_id.clone(),
                    }],
                };
                self.reconcile(framework_id, &r);
            }
        }
    }

    fn acknowledge(&mut self, framework_id: &str, ack: &sched::call::Acknowledge) {
        let task_id = ack.task_id.value.clone();
        if let Some(fw) = self.frameworks.get_mut(framework_id)
            && let Some(task) = fw.tasks.get(&task_id)
            && task.latest_uuid.as_ref() == Some(&ack.uuid)
            && v1::is_terminal_state(task.state)
        {
            fw.tasks.remove(&task_id);
        }
        self.send_to_agent(
            &ack.agent_id.value,
            AgentCommand::Acknowledge {
                framework_id: framework_id.to_string(),
                task_id,
                uuid: ack.uuid.clone(),
            },
        );
    }

    fn reconcile_status(
        &self,
        fw: &Framework,
        task_id: &str,
        agent: Option<&str>,
    ) -> v1::TaskStatus {
        let aware = fw.partition_aware();
        let message = "Reconciliation: Latest task state";
        if let Some(task) = fw.tasks.get(task_id) {
            let state = TaskState::try_from(task.state).unwrap_or(TaskState::TaskStaging);
            let mut status = master_status(
                task_id,
                Some(&task.agent),
                state,
                Reason::Reconciliation,
                message,
            );
            status.executor_id = task
                .executor_id
                .as_ref()
                .map(|e| v1::ExecutorId { value: e.clone() });
            status.unreachable_time = task.unreachable_time.map(|t| v1::TimeInfo {
                nanoseconds: (t * 1e9) as i64,
            });
            return status;
        }
        let (state, message) = match agent.map(|a| (a, self.agents.get(a))) {
            Some((_, Some(a))) => match a.removed {
                None => (
                    TaskState::TaskGone,
                    "Reconciliation: Task is unknown to the agent",
                ),
                Some((AgentRemoval::Unreachable, _)) => (
                    TaskState::TaskUnreachable,
                    "Reconciliation: Task is unreachable",
                ),
                Some((AgentRemoval::Gone, _)) => (
                    TaskState::TaskGoneByOperator,
                    "Reconciliation: Task is gone",
                ),
            },
            _ => (TaskState::TaskUnknown, "Reconciliation: Task is unknown"),
        };
        let state = if aware { state } else { TaskState::TaskLost };
        let mut status = master_status(task_id, agent, state, Reason::Reconciliation, message);
        if state == TaskState::TaskUnreachable
            && let Some((_, time)) = agent
                .and_then(|a| self.agents.get(a))
                .and_then(|a| a.removed)
        {
            status.unreachable_time = Some(v1::TimeInfo {
                nanoseconds: (time * 1e9) as i64,
            });
        }
        status
    }

    fn reconcile(&mut self, framework_id: &str, reconcile: &sched::call::Reconcile) {
        let Some(fw) = self.frameworks.get(framework_id) else {
            return;
        };
        let statuses: Vec<v1::TaskStatus> = if reconcile.tasks.is_empty() {
            fw.tasks
                .keys()
                .map(|id| self.reconcile_status(fw, id, None))
                .collect()
        } else {
            reconcile
                .tasks
                .iter()
                .map(|t| {
                    self.reconcile_status(
                        fw,
                        &t.task_id.value,
                        t.agent_id.as_ref().map(|a| a.value.as_str()),
                    )
                })
                .collect()
        };
        for status in statuses {
            self.emit_to_framework(framework_id, update_event(status));
        }
    }

    // ----------------------------------------------------------------------------------------
    // Framework removal and time
    // ----------------------------------------------------------------------------------------

    fn remove_framework(&mut self, framework_id: &str, close_stream: bool) {
        let Some(fw) = self.frameworks.remove(framework_id) else {
            return;
        };
        tracing::info!(framework = framework_id, "removing framework");
        self.removed_frameworks.insert(framework_id.to_string());
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.framework == framework_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(o) = self.offers.remove(&id) {
                self.return_offered(&o.agent, &o.resources);
            }
        }
        let mut agents: BTreeSet<String> = fw.tasks.values().map(|t| t.agent.clone()).collect();
        for (agent_id, agent) in self.agents.iter_mut() {
            let before = agent.executors.len();
            let mut released = Resources::new();
            agent.executors.retain(|(f, _), (_, r)| {
                if f == framework_id {
                    released.add(r);
                    false
                } else {
                    true
                }
            });
            agent.allocated.subtract(&released);
            if agent.executors.len() != before {
                agents.insert(agent_id.clone());
            }
        }
        for task in fw.tasks.values() {
            if !task.resources_released
                && let Some(a) = self.agents.get_mut(&task.agent)
            {
                a.allocated.subtract(&task.resources);
            }
        }
        for agent in agents {
            self.send_to_agent(
                &agent,
                AgentCommand::ShutdownFramework {
                    framework_id: framework_id.to_string(),
                },
            );
        }
        if close_stream && let Some(stream) = fw.stream {
            self.outputs.push_back(Output::CloseStream { stream });
        }
    }

    /// When [`Master::tick`] next wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.next_allocation;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for fw in self.frameworks.values() {
            if let Some(t) = fw.next_heartbeat {
                consider(t);
            }
            if let Some(at) = fw.disconnected_at {
                consider(at + failover_timeout(&fw.info));
            }
        }
        if let Some(timeout) = self.config.offer_timeout {
            for o in self.offers.values() {
                consider(o.created + timeout);
            }
        }
        next
    }

    /// Runs timers: heartbeats, failover timeouts, offer timeouts, allocation.
    pub fn tick(&mut self, now: Instant) {
        let interval = self.config.heartbeat_interval;
        let mut beats = Vec::new();
        let mut expired = Vec::new();
        for fw in self.frameworks.values_mut() {
            if let (Some(stream), Some(at)) = (&fw.stream, fw.next_heartbeat)
                && now >= at
            {
                beats.push(stream.clone());
                fw.next_heartbeat = Some(now + interval);
            }
            if let Some(at) = fw.disconnected_at
                && now >= at + failover_timeout(&fw.info)
            {
                expired.push(fw.id.clone());
            }
        }
        for stream in beats {
            self.emit(&stream, event(EventType::Heartbeat));
        }
        for id in expired {
            tracing::info!(framework = %id, "failover timeout expired");
            self.remove_framework(&id, false);
        }
        if let Some(timeout) = self.config.offer_timeout {
            let old: Vec<String> = self
                .offers
                .iter()
                .filter(|(_, o)| now >= o.created + timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in old {
                self.rescind(&id);
            }
        }
        if self.next_allocation.is_some_and(|t| now >= t) {
            self.allocate(now);
            self.next_allocation = Some(now + self.config.allocation_interval);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Agent messages
    // ----------------------------------------------------------------------------------------

    /// An agent registered (or re-registered with this new leader, reporting its tasks).
    pub fn agent_registered(&mut self, now: Instant, registration: AgentRegistration) {
        let agent_id = registration.agent_id.clone();
        let mut allocated = Resources::new();
        let mut executors = HashMap::new();
        for (fw_info, exec) in &registration.executors {
            let fw_id = fw_info
                .id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default();
            let r = wire::from_proto(&exec.resources).unwrap_or_default();
            allocated.add(&r);
            executors.insert((fw_id, exec.executor_id.value.clone()), (exec.clone(), r));
        }
        for (fw_info, task, state) in &registration.tasks {
            let fw_id = fw_info
                .id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default();
            let resources = wire::from_proto(&task.resources).unwrap_or_default();
            if !v1::is_terminal_state(*state) {
                allocated.add(&resources);
            }
            // A new leader learns frameworks from their agents; they must re-subscribe.
            let fw = self
                .frameworks
                .entry(fw_id.clone())
                .or_insert_with(|| Framework {
                    id: fw_id.clone(),
                    declines: Vec::new(),
                    info: fw_info.clone(),
                    roles: validation::validate_framework_info(fw_info, &[]).unwrap_or_default(),
                    stream: None,
                    disconnected_at: None,
                    next_heartbeat: None,
                    suppressed: BTreeSet::new(),
                    filters: Vec::new(),
                    tasks: BTreeMap::new(),
                    order: 0,
                });
            fw.tasks.insert(
                task.task_id.value.clone(),
                TaskEntry {
                    agent: agent_id.clone(),
                    executor_id: task.executor.as_ref().map(|e| e.executor_id.value.clone()),
                    state: *state,
                    latest_uuid: None,
                    resources,
                    resources_released: v1::is_terminal_state(*state),
                    unreachable_time: None,
                },
            );
        }
        self.agents.insert(
            agent_id,
            AgentEntry {
                registration,
                allocated,
                offered: Resources::new(),
                executors,
                removed: None,
            },
        );
        self.next_allocation = Some(now);
    }

    /// An agent forwards a status update (from its status update manager).
    pub fn status_update(&mut self, now: Instant, agent_id: &str, status: v1::TaskStatus) {
        let fw_id = self.framework_of_task(agent_id, &status);
        let Some(fw_id) = fw_id else {
            tracing::debug!(task = %status.task_id.value, "status update for an unknown task dropped");
            return;
        };
        if self.removed_frameworks.contains(&fw_id) {
            self.send_to_agent(
                agent_id,
                AgentCommand::ShutdownFramework {
                    framework_id: fw_id,
                },
            );
            return;
        }
        let Some(fw) = self.frameworks.get_mut(&fw_id) else {
            return;
        };
        if let Some(task) = fw.tasks.get_mut(&status.task_id.value) {
            task.state = status.state;
            task.latest_uuid = status.uuid.clone();
            if v1::is_terminal_state(status.state) && !task.resources_released {
                task.resources_released = true;
                let resources = task.resources.clone();
                if let Some(a) = self.agents.get_mut(agent_id) {
                    a.allocated.subtract(&resources);
                }
                self.next_allocation = Some(now);
            }
        }
        self.emit_to_framework(&fw_id, update_event(status));
    }

    fn framework_of_task(&self, agent_id: &str, status: &v1::TaskStatus) -> Option<String> {
        self.frameworks
            .iter()
            .find(|(_, f)| {
                f.tasks
                    .get(&status.task_id.value)
                    .is_some_and(|t| t.agent == agent_id)
            })
            .map(|(id, _)| id.clone())
    }

    /// An agent forwards a status update for a task of a known framework id (used when the
    /// master may not know the task, e.g. right after a leader change).
    pub fn status_update_for(
        &mut self,
        now: Instant,
        agent_id: &str,
        framework_id: &str,
        status: v1::TaskStatus,
    ) {
        if self.removed_frameworks.contains(framework_id) {
            self.send_to_agent(
                agent_id,
                AgentCommand::ShutdownFramework {
                    framework_id: framework_id.to_string(),
                },
            );
            return;
        }
        if self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.tasks.contains_key(&status.task_id.value))
        {
            self.status_update(now, agent_id, status);
        } else {
            self.emit_to_framework(framework_id, update_event(status));
        }
    }

    /// An executor exited on an agent (`status` is the raw wait status).
    pub fn executor_exited(
        &mut self,
        now: Instant,
        agent_id: &str,
        framework_id: &str,
        executor_id: &str,
        status: i32,
    ) {
        if let Some(agent) = self.agents.get_mut(agent_id)
            && let Some((_, resources)) = agent
                .executors
                .remove(&(framework_id.to_string(), executor_id.to_string()))
        {
            agent.allocated.subtract(&resources);
            self.next_allocation = Some(now);
        }
        self.emit_to_framework(
            framework_id,
            sched::Event {
                failure: Some(sched::event::Failure {
                    agent_id: Some(v1::AgentId {
                        value: agent_id.to_string(),
                    }),
                    executor_id: Some(v1::ExecutorId {
                        value: executor_id.to_string(),
                    }),
                    status: Some(status),
                }),
                ..event(EventType::Failure)
            },
        );
    }

    /// An executor sent a MESSAGE for its scheduler.
    pub fn executor_message(
        &mut self,
        agent_id: &str,
        framework_id: &str,
        executor_id: &str,
        data: Bytes,
    ) {
        self.emit_to_framework(
            framework_id,
            sched::Event {
                message: Some(sched::event::Message {
                    agent_id: v1::AgentId {
                        value: agent_id.to_string(),
                    },
                    executor_id: v1::ExecutorId {
                        value: executor_id.to_string(),
                    },
                    data,
                }),
                ..event(EventType::Message)
            },
        );
    }

    /// An agent is removed: offers on it are rescinded, every framework gets FAILURE, and its
    /// tasks become UNREACHABLE / GONE_BY_OPERATOR (partition-aware) or LOST.
    pub fn remove_agent(&mut self, now: Instant, agent_id: &str, how: AgentRemoval) {
        let time = wire::wall_clock_seconds();
        match self.agents.get_mut(agent_id) {
            Some(a) if a.removed.is_none() => a.removed = Some((how, time)),
            _ => return,
        }
        let offers: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offers {
            self.rescind(&id);
        }
        let fw_ids: Vec<String> = self.frameworks.keys().cloned().collect();
        for fw_id in fw_ids {
            self.emit_to_framework(
                &fw_id,
                sched::Event {
                    failure: Some(sched::event::Failure {
                        agent_id: Some(v1::AgentId {
                            value: agent_id.to_string(),
                        }),
                        executor_id: None,
                        status: None,
                    }),
                    ..event(EventType::Failure)
                },
            );
            let Some(fw) = self.frameworks.get_mut(&fw_id) else {
                continue;
            };
            let aware = fw.partition_aware();
            let (state, reason, message) = match (how, aware) {
                (AgentRemoval::Unreachable, true) => (
                    TaskState::TaskUnreachable,
                    Reason::AgentRemoved,
                    "Agent is unreachable",
                ),
                (AgentRemoval::Gone, true) => (
                    TaskState::TaskGoneByOperator,
                    Reason::AgentRemovedByOperator,
                    "Agent has been marked gone",
                ),
                (AgentRemoval::Unreachable, false) => (
                    TaskState::TaskLost,
                    Reason::AgentRemoved,
                    "Agent is unreachable",
                ),
                (AgentRemoval::Gone, false) => (
                    TaskState::TaskLost,
                    Reason::AgentRemovedByOperator,
                    "Agent has been marked gone",
                ),
            };
            let mut statuses = Vec::new();
            let ids: Vec<String> = fw
                .tasks
                .iter()
                .filter(|(_, t)| t.agent == agent_id && !v1::is_terminal_state(t.state))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                let mut status = master_status(&id, Some(agent_id), state, reason, message);
                if state == TaskState::TaskUnreachable {
                    status.unreachable_time = Some(v1::TimeInfo {
                        nanoseconds: (time * 1e9) as i64,
                    });
                    if let Some(t) = fw.tasks.get_mut(&id) {
                        t.state = state as i32;
                        t.unreachable_time = Some(time);
                    }
                } else {
                    fw.tasks.remove(&id);
                }
                statuses.push(status);
            }
            for status in statuses {
                self.emit_to_framework(&fw_id, update_event(status));
            }
        }
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.executors.clear();
            a.allocated = Resources::new();
        }
        self.next_allocation = Some(now);
    }
}

fn failover_timeout(info: &v1::FrameworkInfo) -> Duration {
    let secs = info.failover_timeout.unwrap_or(0.0);
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs.min(1e9))
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests;
