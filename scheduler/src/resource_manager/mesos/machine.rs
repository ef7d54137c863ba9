//! [`MesosResourceManager`]: the Mesos driver's policy as a sans-IO state machine.
//!
//! Inputs are the owner's demand ([`request_worker`](MesosResourceManager::request_worker),
//! [`release_worker`](MesosResourceManager::release_worker)), the scheduler client's events
//! (subscribed, offers, rescinds, task updates, FAILURE) and the clock
//! ([`handle_timeout`](MesosResourceManager::handle_timeout)); outputs are [`Action`]s, polled
//! in order. `now` is always passed in, so every rule is testable without sockets or sleeps.
//!
//! The rules, and why:
//! - **An offer is answered at once.** Workers are placed on it greedily (several if it fits
//!   several), and whatever is left is declined with the configured refuse duration. Holding
//!   offers to gather a better set starves other frameworks and, with many agents, never ends.
//! - **Fits** means the task's cpus/mem/disk, one port for the data plane, and the executor's
//!   own share ([`EXECUTOR_CPUS`], [`EXECUTOR_MEM_MB`]). Mesos 1.11 only warns about a LAUNCH
//!   whose executor has less than 0.01 CPUs and 32 MB, but it requires them for LAUNCH_GROUP and
//!   announces them as mandatory; taking that minimum keeps us valid either way and leaves the
//!   task's resources exactly as configured.
//! - **Offers only while there is demand**: SUPPRESS when the last pending worker is placed or
//!   dropped, REVIVE when demand returns; each once per transition (and once after every
//!   subscription, since a call made while disconnected may have been lost).
//! - **Failures are budgeted**: failed tasks (including launch timeouts) count against
//!   `maximum_failed_tasks`; beyond it `request_worker` is refused, so a broken image or
//!   artifact does not launch forever.
//! - **Every worker is reported exited exactly once**, whichever of the terminal update, the
//!   FAILURE event or the launch timeout comes first.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use mesoflow_proto::mesos::v1::{
    AgentId, ExecutorId, FrameworkId, Offer, OfferId, TaskId, TaskState, TaskStatus,
    offer::{Operation, operation},
    task_status, value,
};
use tracing::{debug, error, info, warn};

use super::{
    MesosDriverConfig, TaskSettings,
    launch::{LaunchTemplate, TaskSpecBuilder, WorkerPlacement},
    offer_pool::{Need, OfferPool, milli},
};
use crate::mesos::ExitStatus;
use crate::resource_manager::{ResourceError, WorkerEvent, WorkerId, WorkerSpec};

/// CPUs given to each executor process itself (the Mesos minimum).
pub const EXECUTOR_CPUS: f64 = 0.01;
/// Memory given to each executor process itself, in MB (the Mesos minimum).
pub const EXECUTOR_MEM_MB: u64 = 32;
/// How often a KILL is repeated while its task has not ended (a KILL can be lost with an agent
/// that is disconnected for a while).
pub const KILL_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// ACCEPT one offer with LAUNCH operations; what they leave is refused for `refuse_seconds`.
    Accept {
        /// The offer (one agent).
        offer_ids: Vec<OfferId>,
        /// One LAUNCH holding the workers' tasks.
        operations: Vec<Operation>,
        /// Filter for the unused rest of the offer.
        refuse_seconds: f64,
        /// The workers launched, for [`MesosResourceManager::launch_not_sent`].
        workers: Vec<WorkerId>,
    },
    /// DECLINE offers.
    Decline {
        /// The offers.
        offer_ids: Vec<OfferId>,
        /// How long the master keeps them away.
        refuse_seconds: f64,
    },
    /// SUPPRESS offers for our role.
    Suppress,
    /// REVIVE offers for our role.
    Revive,
    /// KILL a task.
    Kill {
        /// The task.
        task_id: TaskId,
        /// Its agent, when known.
        agent_id: Option<AgentId>,
    },
    /// TEARDOWN the framework (after shutdown).
    Teardown,
    /// Tell the owner.
    Report(WorkerEvent),
}

/// Counters for the owner (metrics, logs, tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MesosMetrics {
    /// Offers received.
    pub offers_received: u64,
    /// Offers declined whole.
    pub offers_declined: u64,
    /// Workers launched (ACCEPTs sent for them).
    pub workers_launched: u64,
    /// Tasks that failed (failed, errored, lost, timed out, ...), released ones excluded.
    pub tasks_failed: u64,
    /// Workers requested and not yet launched.
    pub pending_demand: usize,
    /// Workers whose task is RUNNING.
    pub running_workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// ACCEPT sent; STAGING/STARTING; the launch timer runs.
    Launching,
    /// TASK_RUNNING seen.
    Running,
    /// KILL sent; waiting for the terminal update.
    Killing,
}

#[derive(Debug)]
struct Launched {
    spec: WorkerSpec,
    need: Need,
    agent_id: AgentId,
    phase: Phase,
    /// Key of its entry in `timers` (launch timeout or kill retry).
    timer: Option<(Instant, u64)>,
    /// The owner released it: its end is no failure.
    released: bool,
    /// `Exited` already sent (launch timeout): the terminal update only cleans up.
    reported: bool,
}

#[derive(Debug)]
struct Pending {
    spec: WorkerSpec,
    need: Need,
}

/// The Mesos ResourceManager's state machine (see the module docs).
pub struct MesosResourceManager {
    role: String,
    tasks: TaskSettings,
    constraints: Vec<(String, String)>,
    refuse_seconds: f64,
    maximum_failed_tasks: Option<u32>,
    template: LaunchTemplate,
    builder: Box<dyn TaskSpecBuilder>,

    framework_id: Option<FrameworkId>,
    subscribed: bool,
    /// What we last told the master: `true` after REVIVE, `false` after SUPPRESS.
    offers_wanted: bool,
    /// Requested, not launched, in request order.
    queue: VecDeque<WorkerId>,
    pending: HashMap<WorkerId, Pending>,
    /// How many pending workers need each distinct [`Need`] (usually one entry).
    pending_needs: HashMap<Need, usize>,
    launched: HashMap<WorkerId, Launched>,
    timers: BTreeMap<(Instant, u64), WorkerId>,
    timer_seq: u64,
    /// Set by [`shutdown`](Self::shutdown): TEARDOWN at the latest then.
    shutdown_deadline: Option<Instant>,
    torn_down: bool,
    metrics: MesosMetrics,
    actions: VecDeque<Action>,
}

impl std::fmt::Debug for MesosResourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MesosResourceManager")
            .field("role", &self.role)
            .field("subscribed", &self.subscribed)
            .field("pending", &self.queue.len())
            .field("launched", &self.launched.len())
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

fn task_id(worker: &WorkerId) -> TaskId {
    TaskId {
        value: worker.0.clone(),
    }
}

fn describe_exit(status: Option<ExitStatus>) -> String {
    match status {
        Some(ExitStatus::Exited(code)) => format!("exit code {code}"),
        Some(ExitStatus::Signaled(signal)) => format!("signal {signal}"),
        Some(ExitStatus::Other(raw)) => format!("wait status {raw}"),
        None => "unknown status".to_owned(),
    }
}

/// "TASK_FAILED (REASON_EXECUTOR_TERMINATED): message".
fn describe_status(status: &TaskStatus) -> String {
    let state = TaskState::try_from(status.state)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("task state {}", status.state));
    let mut text = state;
    if let Some(reason) = status.reason {
        let reason = task_status::Reason::try_from(reason)
            .map(|r| r.as_str_name().to_owned())
            .unwrap_or_else(|_| format!("reason {reason}"));
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(message);
    }
    text
}

impl MesosResourceManager {
    /// A machine for `config`; `builder` makes each worker's task data.
    pub fn new(config: &MesosDriverConfig, builder: Box<dyn TaskSpecBuilder>) -> Self {
        Self {
            role: config.framework.role.clone(),
            tasks: config.tasks.clone(),
            constraints: config.constraints.clone(),
            refuse_seconds: config.refuse.as_secs_f64(),
            maximum_failed_tasks: config.maximum_failed_tasks,
            template: LaunchTemplate::new(&config.tasks, &config.executor),
            builder,
            framework_id: None,
            subscribed: false,
            offers_wanted: false,
            queue: VecDeque::new(),
            pending: HashMap::new(),
            pending_needs: HashMap::new(),
            launched: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            shutdown_deadline: None,
            torn_down: false,
            metrics: MesosMetrics::default(),
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.keys().next().map(|(at, _)| *at);
        let shutdown = self.shutdown_deadline.filter(|_| !self.torn_down);
        match (timer, shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Current counters.
    pub fn metrics(&self) -> MesosMetrics {
        MesosMetrics {
            pending_demand: self.queue.len(),
            running_workers: self
                .launched
                .values()
                .filter(|w| w.phase == Phase::Running)
                .count(),
            ..self.metrics
        }
    }

    /// Whether TEARDOWN has been issued.
    pub fn is_torn_down(&self) -> bool {
        self.torn_down
    }

    /// Workers launched whose end has not been seen yet.
    pub fn live_tasks(&self) -> usize {
        self.launched.len()
    }

    // ----- the owner -----

    /// The resources a worker of `spec` takes (see [`TaskSettings`]).
    fn need_of(&self, spec: &WorkerSpec) -> Need {
        let cpus = if self.tasks.cpus > 0.0 {
            self.tasks.cpus
        } else {
            f64::from(spec.slots.max(1))
        };
        let mem = if self.tasks.mem_mb > 0 {
            self.tasks.mem_mb
        } else {
            spec.memory_mb
        };
        Need {
            cpus: milli(cpus),
            mem: mem as i64 * 1000,
            disk: self.tasks.disk_mb as i64 * 1000,
            executor_cpus: milli(EXECUTOR_CPUS),
            executor_mem: EXECUTOR_MEM_MB as i64 * 1000,
        }
    }

    /// Asks for a worker; it is launched on the next offer that fits.
    pub fn request_worker(
        &mut self,
        _now: Instant,
        id: &WorkerId,
        spec: &WorkerSpec,
    ) -> Result<(), ResourceError> {
        if self.shutdown_deadline.is_some() {
            return Err(ResourceError::Unavailable(format!(
                "cannot start worker {id}: the Mesos driver is shutting down"
            )));
        }
        if let Some(max) = self.maximum_failed_tasks
            && self.metrics.tasks_failed > u64::from(max)
        {
            error!(
                worker = %id,
                failed = self.metrics.tasks_failed,
                max,
                "refusing to launch another TaskManager: too many failed tasks"
            );
            return Err(ResourceError::Unavailable(format!(
                "cannot start worker {id}: {} Mesos tasks failed, more than \
                 maximum-failed-tasks ({max}); look at the failed tasks' sandboxes, fix the \
                 cause and restart the scheduler",
                self.metrics.tasks_failed
            )));
        }
        if self.pending.contains_key(id) || self.launched.contains_key(id) {
            return Err(ResourceError::DuplicateWorker(id.clone()));
        }
        let need = self.need_of(spec);
        debug!(worker = %id, ?need, "worker requested");
        self.queue.push_back(id.clone());
        self.pending
            .insert(id.clone(), Pending { spec: *spec, need });
        *self.pending_needs.entry(need).or_default() += 1;
        self.update_offer_interest();
        Ok(())
    }

    /// Gives a worker back: a pending one is dropped, a launched one killed; `Exited` follows.
    pub fn release_worker(&mut self, now: Instant, id: &WorkerId) {
        if self.remove_pending(id).is_some() {
            info!(worker = %id, "released before it was launched");
            self.report_exited(id, "released before it was launched".to_owned());
            self.update_offer_interest();
            return;
        }
        let Some(worker) = self.launched.get_mut(id) else {
            return;
        };
        worker.released = true;
        if worker.phase != Phase::Killing {
            info!(worker = %id, "releasing: killing its task");
            self.kill(now, id);
        }
    }

    /// Starts the shutdown: demand is dropped, every task killed; TEARDOWN follows once all
    /// have ended, or after `grace` at the latest.
    pub fn shutdown(&mut self, now: Instant, grace: Duration) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        info!(
            tasks = self.launched.len(),
            pending = self.queue.len(),
            "shutting down the Mesos driver"
        );
        self.shutdown_deadline = Some(now + grace);
        for id in std::mem::take(&mut self.queue) {
            self.pending.remove(&id);
            self.report_exited(
                &id,
                "the driver shut down before it was launched".to_owned(),
            );
        }
        self.pending_needs.clear();
        self.update_offer_interest();
        let ids: Vec<WorkerId> = self.launched.keys().cloned().collect();
        for id in ids {
            let worker = self.launched.get_mut(&id).expect("listed above");
            worker.released = true;
            if worker.phase != Phase::Killing {
                self.kill(now, &id);
            }
        }
        self.maybe_teardown();
    }

    // ----- the scheduler client -----

    /// SUBSCRIBED (first or again): offers of earlier subscriptions are void, and the offer
    /// interest is stated again.
    pub fn handle_subscribed(&mut self, _now: Instant, framework_id: FrameworkId) {
        self.framework_id = Some(framework_id);
        self.subscribed = true;
        self.offers_wanted = self.wants_offers();
        self.actions.push_back(if self.offers_wanted {
            Action::Revive
        } else {
            Action::Suppress
        });
        self.maybe_teardown();
    }

    /// The subscription was lost; the client reconnects.
    pub fn handle_disconnected(&mut self) {
        self.subscribed = false;
    }

    /// OFFERS: place what fits, decline the rest (see the module docs).
    pub fn handle_offers(&mut self, now: Instant, offers: Vec<Offer>) {
        let mut declined = Vec::new();
        for offer in offers {
            self.metrics.offers_received += 1;
            if self.queue.is_empty() || self.shutdown_deadline.is_some() {
                declined.push(offer.id);
                continue;
            }
            if let Some(role) = offer
                .allocation_info
                .as_ref()
                .and_then(|a| a.role.as_deref())
                && role != self.role
            {
                debug!(offer = %offer.id.value, role, "offer for another role");
                declined.push(offer.id);
                continue;
            }
            if let Some((name, value)) = self.violated_constraint(&offer) {
                debug!(offer = %offer.id.value, agent = %offer.agent_id.value, name, value,
                    "offer violates a constraint");
                declined.push(offer.id);
                continue;
            }
            match self.place(now, &offer) {
                Some((tasks, workers)) => {
                    self.actions.push_back(Action::Accept {
                        offer_ids: vec![offer.id],
                        operations: vec![Operation {
                            r#type: Some(operation::Type::Launch as i32),
                            launch: Some(operation::Launch { task_infos: tasks }),
                            ..Default::default()
                        }],
                        refuse_seconds: self.refuse_seconds,
                        workers,
                    });
                }
                None => declined.push(offer.id),
            }
        }
        if !declined.is_empty() {
            self.metrics.offers_declined += declined.len() as u64;
            self.actions.push_back(Action::Decline {
                offer_ids: declined,
                refuse_seconds: self.refuse_seconds,
            });
        }
        self.update_offer_interest();
    }

    /// RESCIND: every offer is answered as it arrives, so there is nothing to forget.
    pub fn handle_rescinded(&mut self, offer_id: &OfferId) {
        debug!(offer = %offer_id.value, "offer rescinded (already answered)");
    }

    /// The ACCEPT carrying these workers never reached the master (the client refused the
    /// command): they go back to the front of the demand.
    pub fn launch_not_sent(&mut self, _now: Instant, workers: &[WorkerId]) {
        for id in workers.iter().rev() {
            let Some(worker) = self.launched.remove(id) else {
                continue;
            };
            self.cancel_timer(worker.timer);
            self.metrics.workers_launched = self.metrics.workers_launched.saturating_sub(1);
            if worker.released || self.shutdown_deadline.is_some() {
                self.report_exited(id, "released before it was launched".to_owned());
                continue;
            }
            self.queue.push_front(id.clone());
            *self.pending_needs.entry(worker.need).or_default() += 1;
            self.pending.insert(
                id.clone(),
                Pending {
                    spec: worker.spec,
                    need: worker.need,
                },
            );
        }
        self.update_offer_interest();
        self.maybe_teardown();
    }

    /// A task status update (the shell acknowledges it afterwards).
    pub fn handle_update(&mut self, _now: Instant, status: &TaskStatus) {
        let id = WorkerId(status.task_id.value.clone());
        let Ok(state) = TaskState::try_from(status.state) else {
            // A state a newer Mesos added: neither alive nor gone as far as we can tell.
            debug!(task = %id, state = status.state, "ignoring an update with an unknown state");
            return;
        };
        let gone = mesoflow_proto::mesos::v1::is_terminal_state(status.state)
            || matches!(state, TaskState::TaskUnreachable | TaskState::TaskUnknown);
        let Some(worker) = self.launched.get_mut(&id) else {
            if !gone {
                // A task we do not know (an earlier run's, or one we already gave up on) is
                // alive: it holds resources nobody uses.
                warn!(task = %id, state = state.as_str_name(), "killing an unknown task");
                self.actions.push_back(Action::Kill {
                    task_id: status.task_id.clone(),
                    agent_id: status.agent_id.clone(),
                });
            }
            return;
        };
        if let Some(agent) = &status.agent_id {
            worker.agent_id = agent.clone();
        }
        match state {
            TaskState::TaskRunning if worker.phase == Phase::Launching => {
                worker.phase = Phase::Running;
                let timer = worker.timer.take();
                self.cancel_timer(timer);
                info!(worker = %id, "TaskManager task running");
                self.actions.push_back(Action::Report(WorkerEvent::Started {
                    id: id.clone(),
                    pid: None,
                }));
            }
            _ if gone => {
                let failed = !matches!(state, TaskState::TaskFinished | TaskState::TaskKilled);
                let unexpected_kill = state == TaskState::TaskKilled && !worker.released;
                if matches!(state, TaskState::TaskUnreachable | TaskState::TaskUnknown) {
                    // It may come back; make sure it does not come back running.
                    self.actions.push_back(Action::Kill {
                        task_id: status.task_id.clone(),
                        agent_id: status.agent_id.clone(),
                    });
                }
                self.worker_gone(&id, describe_status(status), failed || unexpected_kill);
            }
            _ => {}
        }
    }

    /// FAILURE with an executor id: that executor (so its worker) is gone.
    pub fn handle_executor_failure(
        &mut self,
        agent_id: &AgentId,
        executor_id: &ExecutorId,
        status: Option<ExitStatus>,
    ) {
        let id = WorkerId(executor_id.value.clone());
        if self.launched.contains_key(&id) {
            let reason = format!(
                "executor on agent {} exited with {}",
                agent_id.value,
                describe_exit(status)
            );
            self.worker_gone(&id, reason, true);
        }
    }

    /// FAILURE without an executor id: the agent is gone, with every worker on it.
    pub fn handle_agent_lost(&mut self, agent_id: &AgentId) {
        let ids: Vec<WorkerId> = self
            .launched
            .iter()
            .filter(|(_, w)| &w.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.worker_gone(&id, format!("agent {} was lost", agent_id.value), true);
        }
    }

    /// Fires launch timeouts, kill retries and the shutdown deadline due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            let Some(worker) = self.launched.get_mut(&id) else {
                continue;
            };
            worker.timer = None;
            match worker.phase {
                Phase::Launching => {
                    let timeout = self.tasks.launch_timeout;
                    warn!(worker = %id, ?timeout, "task not running in time: killing it");
                    worker.reported = true;
                    self.metrics.tasks_failed += 1;
                    self.report_exited(
                        &id,
                        format!(
                            "not TASK_RUNNING within the launch timeout ({}); killed",
                            humantime::format_duration(timeout)
                        ),
                    );
                    self.kill(now, &id);
                }
                Phase::Killing => {
                    debug!(worker = %id, "task still not ended: killing again");
                    self.kill(now, &id);
                }
                Phase::Running => {}
            }
        }
        if let Some(deadline) = self.shutdown_deadline
            && now >= deadline
            && !self.torn_down
        {
            warn!(
                tasks = self.launched.len(),
                "shutdown grace over with tasks not confirmed ended: tearing down anyway"
            );
            self.teardown();
        }
    }

    // ----- internals -----

    fn wants_offers(&self) -> bool {
        !self.queue.is_empty() && self.shutdown_deadline.is_none()
    }

    /// SUPPRESS/REVIVE on a change of interest (only while subscribed; a subscription states
    /// it afresh).
    fn update_offer_interest(&mut self) {
        let wanted = self.wants_offers();
        if self.subscribed && wanted != self.offers_wanted && !self.torn_down {
            self.offers_wanted = wanted;
            debug!(
                pending = self.queue.len(),
                "offers {}",
                if wanted { "revived" } else { "suppressed" }
            );
            self.actions.push_back(if wanted {
                Action::Revive
            } else {
                Action::Suppress
            });
        }
    }

    fn violated_constraint<'a>(&'a self, offer: &Offer) -> Option<(&'a str, &'a str)> {
        self.constraints
            .iter()
            .find(|(name, wanted)| {
                let attr = offer.attributes.iter().find(|a| &a.name == name);
                let ok = attr.is_some_and(|a| match value::Type::try_from(a.r#type) {
                    Ok(value::Type::Text) => a.text.as_ref().is_some_and(|t| &t.value == wanted),
                    Ok(value::Type::Scalar) => match (a.scalar.as_ref(), wanted.parse::<f64>()) {
                        (Some(s), Ok(w)) => milli(s.value) == milli(w),
                        _ => false,
                    },
                    _ => false,
                });
                !ok
            })
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Places pending workers on `offer`, first come first served; `None` if none fits.
    fn place(
        &mut self,
        now: Instant,
        offer: &Offer,
    ) -> Option<(Vec<mesoflow_proto::mesos::v1::TaskInfo>, Vec<WorkerId>)> {
        let mut pool = OfferPool::new(offer);
        let mut tasks = Vec::new();
        let mut workers = Vec::new();
        let mut no_fit: HashSet<Need> = HashSet::new();
        let mut i = 0;
        while i < self.queue.len() && no_fit.len() < self.pending_needs.len() {
            let id = &self.queue[i];
            let need = self.pending[id].need;
            if no_fit.contains(&need) {
                i += 1;
                continue;
            }
            let Some(taken) = pool.take(&need) else {
                no_fit.insert(need);
                i += 1;
                continue;
            };
            let id = self.queue.remove(i).expect("index checked");
            let pending = self.remove_pending_entry(&id);
            let placement = WorkerPlacement {
                agent_id: offer.agent_id.clone(),
                hostname: match &self.tasks.hostname {
                    Some(h) if !h.is_empty() => h.replace("_TASK_", &id.0),
                    _ => offer.hostname.clone(),
                },
                data_port: taken.port,
            };
            let data = match self.builder.task_data(&id, &pending.spec, &placement) {
                Ok(data) => data,
                Err(e) => {
                    // Not Mesos's failure and not worth a retry loop: the owner decides.
                    error!(worker = %id, error = %e, "cannot build the worker's task data");
                    self.report_exited(&id, format!("cannot build its task data: {e}"));
                    continue;
                }
            };
            tasks.push(self.template.task_info(
                &id,
                self.framework_id.as_ref(),
                &offer.agent_id,
                taken.task,
                taken.executor,
                data,
            ));
            info!(worker = %id, agent = %offer.agent_id.value, host = %placement.hostname,
                port = placement.data_port, "launching TaskManager");
            let mut worker = Launched {
                spec: pending.spec,
                need: pending.need,
                agent_id: offer.agent_id.clone(),
                phase: Phase::Launching,
                timer: None,
                released: false,
                reported: false,
            };
            worker.timer = Some(self.arm_timer(now + self.tasks.launch_timeout, &id));
            self.launched.insert(id.clone(), worker);
            self.metrics.workers_launched += 1;
            workers.push(id);
        }
        (!tasks.is_empty()).then_some((tasks, workers))
    }

    fn remove_pending_entry(&mut self, id: &WorkerId) -> Pending {
        let pending = self.pending.remove(id).expect("queued workers are pending");
        if let Some(n) = self.pending_needs.get_mut(&pending.need) {
            *n -= 1;
            if *n == 0 {
                self.pending_needs.remove(&pending.need);
            }
        }
        pending
    }

    fn remove_pending(&mut self, id: &WorkerId) -> Option<Pending> {
        if !self.pending.contains_key(id) {
            return None;
        }
        self.queue.retain(|q| q != id);
        Some(self.remove_pending_entry(id))
    }

    fn arm_timer(&mut self, at: Instant, id: &WorkerId) -> (Instant, u64) {
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, id.clone());
        key
    }

    fn cancel_timer(&mut self, key: Option<(Instant, u64)>) {
        if let Some(key) = key {
            self.timers.remove(&key);
        }
    }

    /// Sends KILL and waits for the terminal update (retrying the KILL now and then).
    fn kill(&mut self, now: Instant, id: &WorkerId) {
        let Some(worker) = self.launched.get_mut(id) else {
            return;
        };
        worker.phase = Phase::Killing;
        let agent_id = worker.agent_id.clone();
        let old = worker.timer.take();
        self.cancel_timer(old);
        let key = self.arm_timer(now + KILL_RETRY_INTERVAL, id);
        if let Some(worker) = self.launched.get_mut(id) {
            worker.timer = Some(key);
        }
        self.actions.push_back(Action::Kill {
            task_id: task_id(id),
            agent_id: Some(agent_id),
        });
    }

    /// The worker's task has ended (or can no longer be reached): forget it, report once.
    fn worker_gone(&mut self, id: &WorkerId, reason: String, failure: bool) {
        let Some(worker) = self.launched.remove(id) else {
            return;
        };
        self.cancel_timer(worker.timer);
        if !worker.reported {
            if failure && !worker.released {
                self.metrics.tasks_failed += 1;
                warn!(worker = %id, %reason, failed = self.metrics.tasks_failed, "TaskManager task failed");
            } else {
                info!(worker = %id, %reason, "TaskManager task ended");
            }
            self.report_exited(id, reason);
        }
        self.maybe_teardown();
    }

    fn report_exited(&mut self, id: &WorkerId, reason: String) {
        self.actions.push_back(Action::Report(WorkerEvent::Exited {
            id: id.clone(),
            reason,
        }));
    }

    fn maybe_teardown(&mut self) {
        if self.shutdown_deadline.is_some()
            && !self.torn_down
            && self.subscribed
            && self.launched.is_empty()
        {
            info!("every task has ended: tearing the framework down");
            self.teardown();
        }
    }

    fn teardown(&mut self) {
        self.torn_down = true;
        self.actions.push_back(Action::Teardown);
    }
}

#[cfg(test)]
mod tests;
