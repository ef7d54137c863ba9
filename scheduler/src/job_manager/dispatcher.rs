//! The session cluster's core: many jobs, one pool of TaskManagers (Flink's Dispatcher and the
//! slot-pool side of its ResourceManager), as a pure state machine.
//!
//! Each job runs in its own [`JobMaster`]. When a job asks for a worker, the dispatcher binds
//! the request to a TaskManager of the pool: an idle registered one first, then one still
//! starting, and only then a new one from the ResourceManager driver. A TaskManager serves one
//! job at a time; when the job ends it goes back to the pool, and an idle TaskManager above
//! the pool's minimum is released after `idle_timeout`. The pool also watches every
//! TaskManager's registration and heartbeats, so a dead one is noticed whether or not a job
//! holds it.
//!
//! Like [`JobMaster`], it does no I/O and reads no clock: the shell
//! ([`super::session`]) feeds it control-channel and driver events with `now`, and carries out
//! its [`DispatcherAction`]s.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use mesoflow_proto::control::{
    Heartbeat, JobManagerMessage, SubtaskStateChange, TaskManagerMessage, job_manager_message,
    task_manager_message,
};
use serde::Serialize;
use tracing::{debug, info, warn};

use super::checkpoints::{CheckpointStats, SavepointError, SavepointStatus};
use super::master::{
    Action, JobManagerConfig, JobMaster, JobOutcome, JobStatus, JobSubmission, RegistrationError,
    SubmitError,
};
use super::placement::slots_needed;
use crate::resource_manager::{WorkerId, WorkerSpec};

/// How the session cluster sizes and watches its pool, and how its jobs run.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatcherConfig {
    /// Every TaskManager of the pool: its slots and resources.
    pub worker: WorkerSpec,
    /// TaskManagers started at once and kept (`mesos.initial-tasks`).
    pub min_workers: u32,
    /// An idle TaskManager above the minimum is released after this long
    /// (`resourcemanager.taskmanager-timeout`).
    pub idle_timeout: Duration,
    /// Prefix of pool TaskManager ids (unique per scheduler run, so that a Mesos task id is
    /// never reused).
    pub worker_prefix: String,
    /// Finished jobs kept for the REST API (`jobstore.max-capacity`).
    pub retained_jobs: usize,
    /// The template of every job's JobManager (heartbeats, timeouts, restart strategy,
    /// spread); its worker count and slots are set per job.
    pub job: JobManagerConfig,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum DispatcherAction {
    /// Ask the ResourceManager driver for a TaskManager.
    RequestWorker {
        /// Its id (it registers with it).
        id: WorkerId,
        /// Its resources.
        spec: WorkerSpec,
    },
    /// Stop a TaskManager.
    ReleaseWorker {
        /// Which.
        id: WorkerId,
    },
    /// Send a message on a TaskManager's control stream.
    Send {
        /// To whom.
        worker: WorkerId,
        /// What (boxed: a deployment carries a whole job definition).
        message: Box<JobManagerMessage>,
    },
    /// Write a checkpoint's `_metadata` through the storage at `root` (atomically), then
    /// report [`Dispatcher::metadata_written`]. Must not block the loop.
    WriteMetadata {
        /// The job.
        job_id: u128,
        /// The checkpoint.
        checkpoint_id: u64,
        /// Storage root URI.
        root: String,
        /// Path under the root.
        path: String,
        /// The encoded metadata.
        bytes: bytes::Bytes,
    },
    /// Delete files under a storage root (best effort, off the loop).
    DeleteFiles {
        /// Storage root URI.
        root: String,
        /// Paths under it.
        paths: Vec<String>,
    },
    /// Delete a directory under a storage root (best effort, off the loop).
    DeleteDir {
        /// Storage root URI.
        root: String,
        /// Path under it.
        path: String,
    },
    /// Something happened to a job (for the log and the user).
    Job {
        /// Which job.
        job_id: u128,
        /// What.
        event: JobEvent,
    },
}

/// A job's milestones, as the shell reports them.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// Its status changed.
    Status(JobStatus),
    /// It will restart.
    Restarting {
        /// The attempt to come.
        attempt: u32,
        /// After this delay.
        delay: Duration,
        /// Because of this.
        cause: String,
    },
    /// A savepoint completed.
    SavepointCompleted {
        /// The trigger's request id.
        request_id: String,
        /// Its directory.
        location: String,
    },
    /// A savepoint failed.
    SavepointFailed {
        /// The trigger's request id.
        request_id: String,
        /// Why.
        cause: String,
    },
}

/// Why a savepoint cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavepointRequestError {
    /// No such job.
    #[error("job {0:032x} not found")]
    Unknown(u128),
    /// The job refuses (not running, no directory, one in progress).
    #[error("{0}")]
    Refused(#[from] SavepointError),
}

/// Why a job cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// No such job.
    #[error("job {0:032x} not found")]
    Unknown(u128),
    /// It is already over.
    #[error("job {id:032x} is already {status:?}")]
    Terminal {
        /// Which job.
        id: u128,
        /// How it ended.
        status: JobStatus,
    },
}

/// Why a submission is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// A job with this id exists.
    #[error("job {0:032x} already exists")]
    Duplicate(u128),
    /// The cluster is stopping.
    #[error("the cluster is stopping and takes no new jobs")]
    Stopping,
    /// Its JobManager refuses it.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Where a pool TaskManager is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PoolState {
    /// Requested from the driver; not registered yet.
    Starting,
    /// Registered and heartbeating.
    Registered,
}

#[derive(Debug, Clone)]
struct PoolWorker {
    seq: u64,
    state: PoolState,
    since: Instant,
    last_seen: Instant,
    slots: u32,
    data_endpoint: String,
    /// The job holding it.
    owner: Option<u128>,
    /// When it last became free.
    idle_since: Instant,
}

/// One hosted job.
#[derive(Debug)]
struct HostedJob {
    name: String,
    max_parallelism: u32,
    /// Vertex (chain) names and parallelism, in plan order.
    vertices: Vec<(String, u32)>,
    master: JobMaster,
    submitted: Instant,
    ended: Option<Instant>,
    outcome: Option<JobOutcome>,
    failure: Option<String>,
}

/// A job as the REST API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// Its id.
    pub id: u128,
    /// Its name.
    pub name: String,
    /// Its key groups.
    pub max_parallelism: u32,
    /// Its status.
    pub status: JobStatus,
    /// When it was submitted.
    pub submitted: Instant,
    /// When it ended.
    pub ended: Option<Instant>,
    /// The current (or next) attempt.
    pub attempt: u32,
    /// Restarts so far.
    pub restarts: u32,
    /// Why it failed.
    pub failure: Option<String>,
    /// Its result, once finished.
    pub outcome: Option<JobOutcome>,
    /// Its vertices.
    pub vertices: Vec<VertexView>,
    /// TaskManagers it holds.
    pub workers: Vec<WorkerId>,
}

/// One vertex (chain) of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexView {
    /// Its name.
    pub name: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// Subtasks by state name (`SUBTASK_STATE_RUNNING`...), for the deployed attempt.
    pub states: BTreeMap<String, u32>,
    /// Records its subtasks read.
    pub records_in: u64,
    /// Records its subtasks wrote.
    pub records_out: u64,
}

/// A pool TaskManager as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// Its id.
    pub id: WorkerId,
    /// Starting or registered.
    pub state: PoolState,
    /// Its slots (0 until registered).
    pub slots: u32,
    /// Slots a job holds.
    pub slots_used: u32,
    /// Its data endpoint.
    pub data_endpoint: String,
    /// Its last heartbeat.
    pub last_seen: Instant,
    /// The job holding it.
    pub owner: Option<u128>,
}

/// The session cluster (see the module docs).
#[derive(Debug)]
pub struct Dispatcher {
    config: DispatcherConfig,
    pool: BTreeMap<WorkerId, PoolWorker>,
    next_worker: u64,
    jobs: BTreeMap<u128, HostedJob>,
    /// Submission order, to retire the oldest finished jobs first.
    order: VecDeque<u128>,
    actions: VecDeque<DispatcherAction>,
    stopping: bool,
}

impl Dispatcher {
    /// A session cluster that starts its minimum pool at once.
    pub fn new(config: DispatcherConfig, now: Instant) -> Self {
        let mut dispatcher = Self {
            config,
            pool: BTreeMap::new(),
            next_worker: 0,
            jobs: BTreeMap::new(),
            order: VecDeque::new(),
            actions: VecDeque::new(),
            stopping: false,
        };
        dispatcher.top_up_pool(now);
        dispatcher
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<DispatcherAction> {
        self.actions.pop_front()
    }

    /// When [`tick`](Self::tick) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pool = self.pool.values().filter_map(|w| self.pool_deadline(w));
        let jobs = self.jobs.values().filter_map(|j| j.master.poll_timeout());
        pool.chain(jobs).min()
    }

    /// Submits a job, shown as `name` (default: its definition's). `workers` asks for that
    /// many TaskManagers (default: as few as hold the job's widest vertex).
    pub fn submit(
        &mut self,
        job: JobSubmission,
        name: Option<String>,
        vertex_names: Vec<String>,
        workers: Option<u32>,
        seed: u64,
        now: Instant,
    ) -> Result<(), DispatchError> {
        let id = job.job_id;
        if self.stopping {
            return Err(DispatchError::Stopping);
        }
        if self.jobs.contains_key(&id) {
            return Err(DispatchError::Duplicate(id));
        }
        let slots = self.config.worker.slots.max(1);
        let needed = slots_needed(&job.chains);
        let config = JobManagerConfig {
            slots_per_worker: slots,
            workers: workers.unwrap_or_else(|| needed.div_ceil(slots)).max(1),
            worker_cpus: self.config.worker.cpus,
            worker_memory_mb: self.config.worker.memory_mb,
            seed,
            ..self.config.job.clone()
        };
        let mut master = JobMaster::new(config);
        let name = name.unwrap_or_else(|| job.definition.name.clone());
        let max_parallelism = job.definition.max_parallelism;
        let vertices = job
            .chains
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let name = vertex_names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("vertex {i}"));
                (name, p)
            })
            .collect();
        master.submit(job, now)?;
        self.jobs.insert(
            id,
            HostedJob {
                name,
                max_parallelism,
                vertices,
                master,
                submitted: now,
                ended: None,
                outcome: None,
                failure: None,
            },
        );
        self.order.push_back(id);
        self.drain(now);
        self.retire_old_jobs();
        Ok(())
    }

    /// Cancels a job.
    pub fn cancel(&mut self, id: u128, now: Instant) -> Result<(), CancelError> {
        let job = self.jobs.get_mut(&id).ok_or(CancelError::Unknown(id))?;
        let status = job.master.status();
        if status.is_terminal() {
            return Err(CancelError::Terminal { id, status });
        }
        job.master.cancel(now);
        self.drain(now);
        Ok(())
    }

    /// Stops the cluster: cancels every job and releases TaskManagers as they come free
    /// (see [`is_stopped`](Self::is_stopped)).
    pub fn stop(&mut self, now: Instant) {
        self.stopping = true;
        let live: Vec<u128> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.master.status().is_terminal())
            .map(|(&id, _)| id)
            .collect();
        for id in live {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.master.cancel(now);
            }
        }
        self.drain(now);
    }

    /// Whether every job is over and every TaskManager released.
    pub fn is_stopped(&self) -> bool {
        self.stopping
            && self.pool.is_empty()
            && self.jobs.values().all(|j| j.master.status().is_terminal())
    }

    /// The driver reports a TaskManager's process up (informational: it still has to
    /// register).
    pub fn worker_started(&mut self, id: &WorkerId) {
        debug!(worker = %id, "task manager process started");
    }

    /// A TaskManager is gone (its process exited, its task ended, its connection dropped).
    pub fn worker_lost(&mut self, id: &WorkerId, reason: &str, now: Instant) {
        let Some(worker) = self.pool.remove(id) else {
            return;
        };
        warn!(worker = %id, reason, "task manager lost");
        // Make sure it is gone for good (a hung process, a half-open connection).
        self.actions
            .push_back(DispatcherAction::ReleaseWorker { id: id.clone() });
        if let Some(owner) = worker.owner
            && let Some(job) = self.jobs.get_mut(&owner)
        {
            job.master.worker_lost(id, reason, now);
        }
        self.drain(now);
        self.top_up_pool(now);
    }

    /// A TaskManager registered on the control channel.
    pub fn worker_registered(
        &mut self,
        id: &WorkerId,
        slots: u32,
        data_endpoint: &str,
        now: Instant,
    ) -> Result<(), RegistrationError> {
        let Some(worker) = self.pool.get_mut(id) else {
            return Err(RegistrationError::Unknown(id.clone()));
        };
        if worker.state == PoolState::Registered {
            return Err(RegistrationError::AlreadyRegistered(id.clone()));
        }
        if slots == 0 {
            return Err(RegistrationError::NoSlots(id.clone()));
        }
        info!(worker = %id, slots, data_endpoint, "task manager registered");
        worker.state = PoolState::Registered;
        worker.slots = slots;
        worker.data_endpoint = data_endpoint.to_owned();
        worker.last_seen = now;
        worker.idle_since = now;
        if let Some(owner) = worker.owner
            && let Some(job) = self.jobs.get_mut(&owner)
            && let Err(e) = job.master.worker_registered(id, slots, data_endpoint, now)
        {
            // The job no longer wants it (it ended, or gave up on it): keep it in the pool.
            debug!(worker = %id, error = %e, "job refused its task manager");
            if let Some(w) = self.pool.get_mut(id) {
                w.owner = None;
            }
        }
        self.drain(now);
        Ok(())
    }

    /// A message from a registered TaskManager.
    pub fn message(&mut self, id: &WorkerId, message: TaskManagerMessage, now: Instant) {
        let Some(worker) = self.pool.get_mut(id) else {
            debug!(worker = %id, "message from a task manager not in the pool");
            return;
        };
        worker.last_seen = worker.last_seen.max(now);
        match message.kind {
            Some(task_manager_message::Kind::Heartbeat(hb)) => self.heartbeat(id, &hb, now),
            Some(task_manager_message::Kind::SubtaskState(change)) => {
                self.subtask_state(id, &change, now)
            }
            Some(task_manager_message::Kind::AcknowledgeCheckpoint(ack)) => {
                match self.job_of(ack.subtask.as_ref().map(|s| s.job_id.as_ref())) {
                    Some(job) => job.master.acknowledge_checkpoint(id, &ack, now),
                    None => debug!(worker = %id, "checkpoint acknowledgement of an unknown job"),
                }
            }
            Some(task_manager_message::Kind::DeclineCheckpoint(decline)) => {
                match self.job_of(decline.subtask.as_ref().map(|s| s.job_id.as_ref())) {
                    Some(job) => job.master.decline_checkpoint(id, &decline, now),
                    None => debug!(worker = %id, "checkpoint decline of an unknown job"),
                }
            }
            Some(task_manager_message::Kind::Register(_)) | None => {
                debug!(worker = %id, "ignored a control message");
            }
        }
        self.drain(now);
    }

    /// The shell wrote (or failed to write) a checkpoint's `_metadata`.
    pub fn metadata_written(
        &mut self,
        job_id: u128,
        checkpoint_id: u64,
        result: Result<(), String>,
        now: Instant,
    ) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.master.metadata_written(checkpoint_id, result, now);
        }
        self.drain(now);
    }

    /// Takes a savepoint of a job (`stop`: then stops it); returns the request id.
    pub fn trigger_savepoint(
        &mut self,
        job_id: u128,
        target: Option<&str>,
        stop: bool,
        now: Instant,
    ) -> Result<String, SavepointRequestError> {
        let job = self
            .jobs
            .get_mut(&job_id)
            .ok_or(SavepointRequestError::Unknown(job_id))?;
        let result = job.master.trigger_savepoint(target, stop, now);
        self.drain(now);
        Ok(result?)
    }

    /// A savepoint request's status; `None` for an unknown job or request.
    pub fn savepoint_status(&self, job_id: u128, request_id: &str) -> Option<SavepointStatus> {
        self.jobs.get(&job_id)?.master.savepoint_status(request_id)
    }

    /// A job's checkpoint statistics.
    pub fn checkpoint_stats(&self, job_id: u128, now: Instant) -> Option<CheckpointStats> {
        Some(self.jobs.get(&job_id)?.master.checkpoint_stats(now))
    }

    /// Time passed: pool timeouts, idle TaskManagers, the jobs' own deadlines.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<(WorkerId, String)> = self
            .pool
            .iter()
            .filter(|(_, w)| self.pool_deadline(w).is_some_and(|d| d <= now))
            .filter_map(|(id, w)| {
                let reason = match w.state {
                    PoolState::Starting => format!(
                        "did not register within {:?}",
                        self.config.job.registration_timeout
                    ),
                    PoolState::Registered
                        if now >= w.last_seen + self.config.job.heartbeat_timeout =>
                    {
                        format!(
                            "no heartbeat for {:?} (heartbeat.timeout)",
                            self.config.job.heartbeat_timeout
                        )
                    }
                    // Only idle too long; handled below.
                    PoolState::Registered => return None,
                };
                Some((id.clone(), reason))
            })
            .collect();
        for (id, reason) in expired {
            self.worker_lost(&id, &reason, now);
        }
        self.release_idle(now);
        for job in self.jobs.values_mut() {
            if job.master.poll_timeout().is_some_and(|t| t <= now) {
                job.master.tick(now);
            }
        }
        self.drain(now);
        self.top_up_pool(now);
    }

    /// Registered TaskManagers, and their slots.
    pub fn registered(&self) -> (usize, u32) {
        self.pool
            .values()
            .filter(|w| w.state == PoolState::Registered)
            .fold((0, 0), |(n, s), w| (n + 1, s + w.slots))
    }

    /// The pool, in request order.
    pub fn workers(&self) -> Vec<WorkerView> {
        let mut rows: Vec<_> = self.pool.iter().collect();
        rows.sort_by_key(|(_, w)| w.seq);
        rows.into_iter()
            .map(|(id, w)| WorkerView {
                id: id.clone(),
                state: w.state,
                slots: w.slots,
                slots_used: if w.owner.is_some() { w.slots } else { 0 },
                data_endpoint: w.data_endpoint.clone(),
                last_seen: w.last_seen,
                owner: w.owner,
            })
            .collect()
    }

    /// Every retained job, in submission order.
    pub fn jobs(&self) -> Vec<JobView> {
        self.order.iter().filter_map(|id| self.job(*id)).collect()
    }

    /// One job.
    pub fn job(&self, id: u128) -> Option<JobView> {
        let job = self.jobs.get(&id)?;
        let snapshot = job.master.snapshot();
        let vertices = job
            .vertices
            .iter()
            .enumerate()
            .map(|(chain, (name, parallelism))| {
                let mut view = VertexView {
                    name: name.clone(),
                    parallelism: *parallelism,
                    states: BTreeMap::new(),
                    records_in: 0,
                    records_out: 0,
                };
                for s in snapshot.subtasks.iter().filter(|s| s.chain == chain as u32) {
                    *view.states.entry(s.state.clone()).or_default() += 1;
                    view.records_in += s.records_in;
                    view.records_out += s.records_out;
                }
                view
            })
            .collect();
        Some(JobView {
            id,
            name: job.name.clone(),
            max_parallelism: job.max_parallelism,
            status: snapshot.status,
            submitted: job.submitted,
            ended: job.ended,
            attempt: snapshot.attempt,
            restarts: snapshot.restarts,
            failure: job.failure.clone(),
            outcome: job.outcome,
            vertices,
            workers: snapshot.workers.into_iter().map(|w| w.id).collect(),
        })
    }

    // ---- internals ----

    fn heartbeat(&mut self, id: &WorkerId, hb: &Heartbeat, now: Instant) {
        // Counters of a job's subtasks go to that job; with none, the heartbeat still tells
        // the holder of the TaskManager it is alive.
        let mut told = false;
        let owner = self.pool.get(id).and_then(|w| w.owner);
        for job_id in hb
            .metrics
            .iter()
            .filter_map(|m| m.subtask.as_ref().and_then(|s| job_id_of(&s.job_id)))
            .chain(owner)
            .collect::<std::collections::BTreeSet<_>>()
        {
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.master.heartbeat(id, hb, now);
                told = true;
            }
        }
        if !told {
            debug!(worker = %id, "heartbeat of an idle task manager");
        }
    }

    fn job_of(&mut self, job_id: Option<&[u8]>) -> Option<&mut HostedJob> {
        let id = job_id_of(job_id?)?;
        self.jobs.get_mut(&id)
    }

    fn subtask_state(&mut self, id: &WorkerId, change: &SubtaskStateChange, now: Instant) {
        let Some(job_id) = change.subtask.as_ref().and_then(|s| job_id_of(&s.job_id)) else {
            warn!(worker = %id, "a subtask state change without a job id");
            return;
        };
        match self.jobs.get_mut(&job_id) {
            Some(job) => job.master.subtask_state(id, change, now),
            None => {
                debug!(worker = %id, job = %format_args!("{job_id:032x}"), "state change of an unknown job")
            }
        }
    }

    /// Carries out what the jobs asked for until none asks for more.
    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            let ids: Vec<u128> = self.jobs.keys().copied().collect();
            for job_id in ids {
                while let Some(action) = self
                    .jobs
                    .get_mut(&job_id)
                    .and_then(|j| j.master.poll_action())
                {
                    progressed = true;
                    self.on_job_action(job_id, action, now);
                }
            }
            if !progressed {
                break;
            }
        }
        if self.stopping {
            self.release_idle(now);
        }
    }

    fn on_job_action(&mut self, job_id: u128, action: Action, now: Instant) {
        match action {
            Action::RequestWorker { id, .. } => self.bind(job_id, &id, now),
            Action::ReleaseWorker { id, lost } => {
                let Some(worker) = self.pool.get_mut(&id) else {
                    return;
                };
                if worker.owner != Some(job_id) {
                    return;
                }
                if lost {
                    // The job gave up on it (timeout, no cancellation): nobody should use it.
                    self.worker_lost(&id, "given up by its job", now);
                } else {
                    debug!(worker = %id, job = %format_args!("{job_id:032x}"), "task manager back in the pool");
                    worker.owner = None;
                    worker.idle_since = now;
                }
            }
            Action::Deploy { worker, deploy } => self.send(
                worker,
                JobManagerMessage {
                    kind: Some(job_manager_message::Kind::Deploy(*deploy)),
                },
            ),
            Action::CancelAttempt { worker, cancel } => self.send(
                worker,
                JobManagerMessage {
                    kind: Some(job_manager_message::Kind::Cancel(cancel)),
                },
            ),
            Action::JobStatusChanged(status) => {
                if status.is_terminal()
                    && let Some(job) = self.jobs.get_mut(&job_id)
                {
                    job.ended = Some(now);
                }
                self.actions.push_back(DispatcherAction::Job {
                    job_id,
                    event: JobEvent::Status(status),
                });
            }
            Action::Restarting {
                attempt,
                cause,
                delay,
            } => self.actions.push_back(DispatcherAction::Job {
                job_id,
                event: JobEvent::Restarting {
                    attempt,
                    delay,
                    cause,
                },
            }),
            Action::Finished(outcome) => {
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.outcome = Some(outcome);
                }
            }
            Action::Failed { cause } => {
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.failure = Some(cause);
                }
            }
            Action::Cancelled => {}
            Action::TriggerCheckpoint { worker, trigger } => self.send(
                worker,
                JobManagerMessage {
                    kind: Some(job_manager_message::Kind::TriggerCheckpoint(trigger)),
                },
            ),
            Action::NotifyCheckpointComplete { worker, notify } => self.send(
                worker,
                JobManagerMessage {
                    kind: Some(job_manager_message::Kind::CheckpointComplete(notify)),
                },
            ),
            Action::NotifyCheckpointAborted { worker, notify } => self.send(
                worker,
                JobManagerMessage {
                    kind: Some(job_manager_message::Kind::CheckpointAborted(notify)),
                },
            ),
            Action::WriteMetadata {
                checkpoint_id,
                root,
                path,
                bytes,
            } => self.actions.push_back(DispatcherAction::WriteMetadata {
                job_id,
                checkpoint_id,
                root,
                path,
                bytes,
            }),
            Action::DeleteFiles { root, paths } => self
                .actions
                .push_back(DispatcherAction::DeleteFiles { root, paths }),
            Action::DeleteDir { root, path } => self
                .actions
                .push_back(DispatcherAction::DeleteDir { root, path }),
            Action::SavepointCompleted {
                request_id,
                location,
            } => self.actions.push_back(DispatcherAction::Job {
                job_id,
                event: JobEvent::SavepointCompleted {
                    request_id,
                    location,
                },
            }),
            Action::SavepointFailed { request_id, cause } => {
                self.actions.push_back(DispatcherAction::Job {
                    job_id,
                    event: JobEvent::SavepointFailed { request_id, cause },
                })
            }
        }
    }

    fn send(&mut self, worker: WorkerId, message: JobManagerMessage) {
        self.actions.push_back(DispatcherAction::Send {
            worker,
            message: Box::new(message),
        });
    }

    /// Gives a job's worker request a TaskManager of the pool (a new one if none is free).
    fn bind(&mut self, job_id: u128, requested: &WorkerId, now: Instant) {
        let free = |state: PoolState| {
            self.pool
                .iter()
                .filter(|(_, w)| w.owner.is_none() && w.state == state)
                .min_by_key(|(_, w)| w.seq)
                .map(|(id, _)| id.clone())
        };
        let id = match free(PoolState::Registered).or_else(|| free(PoolState::Starting)) {
            Some(id) => id,
            None => self.request_worker(now),
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if !job.master.bind_worker(requested, id.clone()) {
            warn!(worker = %id, requested = %requested, "cannot bind a task manager to its job");
            return;
        }
        let Some(worker) = self.pool.get_mut(&id) else {
            return;
        };
        worker.owner = Some(job_id);
        info!(worker = %id, job = %format_args!("{job_id:032x}"), "task manager assigned");
        if worker.state == PoolState::Registered {
            let (slots, endpoint) = (worker.slots, worker.data_endpoint.clone());
            if let Err(e) = job.master.worker_registered(&id, slots, &endpoint, now) {
                warn!(worker = %id, error = %e, "job refused a registered task manager");
                worker.owner = None;
            }
        }
    }

    fn request_worker(&mut self, now: Instant) -> WorkerId {
        let seq = self.next_worker;
        self.next_worker += 1;
        let id = WorkerId(format!("{}-{seq}", self.config.worker_prefix));
        self.pool.insert(
            id.clone(),
            PoolWorker {
                seq,
                state: PoolState::Starting,
                since: now,
                last_seen: now,
                slots: 0,
                data_endpoint: String::new(),
                owner: None,
                idle_since: now,
            },
        );
        info!(worker = %id, "requesting a task manager");
        self.actions.push_back(DispatcherAction::RequestWorker {
            id: id.clone(),
            spec: self.config.worker,
        });
        id
    }

    /// Keeps the pool at its minimum (not while stopping).
    fn top_up_pool(&mut self, now: Instant) {
        while !self.stopping && self.pool.len() < self.config.min_workers as usize {
            self.request_worker(now);
        }
    }

    /// Releases idle TaskManagers: above the minimum after the idle timeout, all of them
    /// when stopping.
    fn release_idle(&mut self, now: Instant) {
        let mut idle: Vec<(u64, WorkerId, Instant)> = self
            .pool
            .iter()
            .filter(|(_, w)| w.owner.is_none() && w.state == PoolState::Registered)
            .map(|(id, w)| (w.seq, id.clone(), w.idle_since))
            .collect();
        idle.sort();
        let mut surplus = if self.stopping {
            self.pool.len()
        } else {
            self.pool
                .len()
                .saturating_sub(self.config.min_workers as usize)
        };
        // Newest first: the oldest TaskManagers are the proven ones.
        for (_, id, idle_since) in idle.into_iter().rev() {
            if surplus == 0 {
                break;
            }
            if self.stopping || idle_since + self.config.idle_timeout <= now {
                info!(worker = %id, "releasing an idle task manager");
                self.pool.remove(&id);
                self.actions
                    .push_back(DispatcherAction::ReleaseWorker { id });
                surplus -= 1;
            }
        }
        if self.stopping {
            // Starting ones are of no use either.
            let starting: Vec<WorkerId> = self
                .pool
                .iter()
                .filter(|(_, w)| w.owner.is_none() && w.state == PoolState::Starting)
                .map(|(id, _)| id.clone())
                .collect();
            for id in starting {
                self.pool.remove(&id);
                self.actions
                    .push_back(DispatcherAction::ReleaseWorker { id });
            }
        }
    }

    /// When a pool TaskManager times out, or an idle one may be released.
    fn pool_deadline(&self, w: &PoolWorker) -> Option<Instant> {
        match w.state {
            PoolState::Starting => Some(w.since + self.config.job.registration_timeout),
            PoolState::Registered => {
                let heartbeat = w.last_seen + self.config.job.heartbeat_timeout;
                let idle = (w.owner.is_none()
                    && self.pool.len() > self.config.min_workers as usize)
                    .then(|| w.idle_since + self.config.idle_timeout);
                Some(idle.map_or(heartbeat, |i| i.min(heartbeat)))
            }
        }
    }

    /// Drops the oldest finished jobs beyond the retention limit.
    fn retire_old_jobs(&mut self) {
        while self.order.len() > self.config.retained_jobs.max(1) {
            let Some(pos) = self.order.iter().position(|id| {
                self.jobs
                    .get(id)
                    .is_none_or(|j| j.master.status().is_terminal())
            }) else {
                return;
            };
            if let Some(id) = self.order.remove(pos) {
                self.jobs.remove(&id);
            }
        }
    }
}

/// A job id from its 16-byte big-endian form.
fn job_id_of(bytes: &[u8]) -> Option<u128> {
    <[u8; 16]>::try_from(bytes).ok().map(u128::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use mesoflow_proto::control::{
        JobDefinition, SubtaskRef, SubtaskState, SubtaskStateChange, TaskManagerMessage,
        task_manager_message,
    };

    use super::*;
    use crate::job_manager::restart::{FixedDelay, RestartStrategy};

    const A: u128 = 0xa;
    const B: u128 = 0xb;

    fn config(min_workers: u32, slots: u32) -> DispatcherConfig {
        DispatcherConfig {
            worker: WorkerSpec {
                slots,
                cpus: 1.0,
                memory_mb: 512,
            },
            min_workers,
            idle_timeout: Duration::from_secs(30),
            worker_prefix: "tm-s".into(),
            retained_jobs: 2,
            job: JobManagerConfig {
                restart: RestartStrategy::FixedDelay(FixedDelay {
                    attempts: 3,
                    delay: Duration::ZERO,
                }),
                ..JobManagerConfig::default()
            },
        }
    }

    fn job(id: u128, parallelism: u32) -> JobSubmission {
        JobSubmission {
            job_id: id,
            definition: JobDefinition {
                name: format!("job-{id:x}"),
                parallelism,
                ..Default::default()
            },
            chains: vec![parallelism],
            ..Default::default()
        }
    }

    fn tm(n: u32) -> WorkerId {
        WorkerId(format!("tm-s-{n}"))
    }

    fn drain(d: &mut Dispatcher) -> Vec<DispatcherAction> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    fn requested(actions: &[DispatcherAction]) -> Vec<WorkerId> {
        actions
            .iter()
            .filter_map(|a| match a {
                DispatcherAction::RequestWorker { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    fn released(actions: &[DispatcherAction]) -> Vec<WorkerId> {
        actions
            .iter()
            .filter_map(|a| match a {
                DispatcherAction::ReleaseWorker { id } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    /// (worker, job, attempt, subtask indexes) of every deployment.
    fn deployed(actions: &[DispatcherAction]) -> Vec<(WorkerId, u128, u32, Vec<u32>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                DispatcherAction::Send { worker, message } => match &message.kind {
                    Some(job_manager_message::Kind::Deploy(d)) => Some((
                        worker.clone(),
                        job_id_of(&d.job_id).unwrap(),
                        d.attempt,
                        d.subtasks.iter().map(|s| s.index).collect(),
                    )),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn state(job: u128, attempt: u32, index: u32, state: SubtaskState) -> TaskManagerMessage {
        TaskManagerMessage {
            kind: Some(task_manager_message::Kind::SubtaskState(
                SubtaskStateChange {
                    subtask: Some(SubtaskRef {
                        job_id: job.to_be_bytes().to_vec().into(),
                        attempt,
                        chain: 0,
                        index,
                    }),
                    state: state as i32,
                    ..Default::default()
                },
            )),
        }
    }

    fn register(d: &mut Dispatcher, n: u32, slots: u32, now: Instant) {
        d.worker_registered(&tm(n), slots, &format!("127.0.0.1:{}", 7000 + n), now)
            .unwrap();
    }

    /// Reports every deployed subtask of `deploys` finished.
    fn finish_all(d: &mut Dispatcher, deploys: &[(WorkerId, u128, u32, Vec<u32>)], now: Instant) {
        for (worker, job, attempt, indexes) in deploys {
            for &i in indexes {
                d.message(worker, state(*job, *attempt, i, SubtaskState::Running), now);
                d.message(
                    worker,
                    state(*job, *attempt, i, SubtaskState::Finished),
                    now,
                );
            }
        }
    }

    #[test]
    fn starts_its_minimum_pool_at_once_and_runs_a_job_on_it() {
        let t0 = Instant::now();
        let mut d = Dispatcher::new(config(2, 1), t0);
        assert_eq!(requested(&drain(&mut d)), vec![tm(0), tm(1)]);
        register(&mut d, 0, 1, t0);
        register(&mut d, 1, 1, t0);
        assert!(drain(&mut d).is_empty(), "no job, nothing to do");

        d.submit(job(A, 2), None, vec!["Source -> Map".into()], None, 1, t0)
            .unwrap();
        let actions = drain(&mut d);
        assert!(
            requested(&actions).is_empty(),
            "the pool had two free TaskManagers"
        );
        let deploys = deployed(&actions);
        assert_eq!(deploys.len(), 2, "{actions:?}");
        let mut workers: Vec<_> = deploys.iter().map(|d| d.0.clone()).collect();
        workers.sort();
        assert_eq!(workers, vec![tm(0), tm(1)]);
        assert_eq!(d.job(A).unwrap().status, JobStatus::Running);
        assert_eq!(d.workers().iter().filter(|w| w.owner == Some(A)).count(), 2);

        finish_all(&mut d, &deploys, t0);
        let actions = drain(&mut d);
        assert!(
            released(&actions).is_empty(),
            "the pool keeps its minimum: {actions:?}"
        );
        let view = d.job(A).unwrap();
        assert_eq!(view.status, JobStatus::Finished);
        assert!(view.outcome.is_some());
        assert_eq!(view.vertices[0].name, "Source -> Map");
        assert!(d.workers().iter().all(|w| w.owner.is_none()));
    }

    #[test]
    fn a_second_job_reuses_free_task_managers_and_asks_for_the_rest() {
        let t0 = Instant::now();
        let mut d = Dispatcher::new(config(1, 2), t0);
        drain(&mut d);
        register(&mut d, 0, 2, t0);
        d.submit(job(A, 2), None, vec![], None, 1, t0).unwrap();
        let a = drain(&mut d);
        assert_eq!(deployed(&a).len(), 1, "one TaskManager with two slots");
        // Job B needs another TaskManager: the pool grows.
        d.submit(job(B, 1), None, vec![], None, 1, t0).unwrap();
        let b = drain(&mut d);
        assert_eq!(requested(&b), vec![tm(1)]);
        register(&mut d, 1, 2, t0);
        let b = drain(&mut d);
        assert_eq!(deployed(&b), vec![(tm(1), B, 0, vec![0])]);
        // When B ends, its TaskManager idles, then goes after the idle timeout (above the minimum).
        finish_all(&mut d, &deployed(&b), t0);
        assert!(released(&drain(&mut d)).is_empty());
        let t1 = t0 + Duration::from_secs(30);
        // Keep both alive meanwhile.
        for n in 0..2 {
            d.message(
                &tm(n),
                TaskManagerMessage {
                    kind: Some(task_manager_message::Kind::Heartbeat(Default::default())),
                },
                t1 - Duration::from_secs(1),
            );
        }
        assert!(d.poll_timeout().unwrap() <= t1);
        d.tick(t1);
        assert_eq!(released(&drain(&mut d)), vec![tm(1)]);
        assert_eq!(d.workers().len(), 1);
    }

    #[test]
    fn a_lost_task_manager_is_replaced_and_the_job_restarts_on_the_new_one() {
        let t0 = Instant::now();
        let mut d = Dispatcher::new(config(2, 1), t0);
        drain(&mut d);
        register(&mut d, 0, 1, t0);
        register(&mut d, 1, 1, t0);
        d.submit(job(A, 2), None, vec![], None, 1, t0).unwrap();
        let first = deployed(&drain(&mut d));
        for (w, j, a, ix) in &first {
            d.message(w, state(*j, *a, ix[0], SubtaskState::Running), t0);
        }
        d.worker_lost(&tm(1), "TASK_FAILED: killed", t0);
        let actions = drain(&mut d);
        assert!(released(&actions).contains(&tm(1)));
        assert_eq!(requested(&actions), vec![tm(2)], "{actions:?}");
        assert_eq!(d.job(A).unwrap().status, JobStatus::Restarting);
        // The survivor reports its subtask cancelled; the replacement registers.
        d.message(&tm(0), state(A, 0, 0, SubtaskState::Canceled), t0);
        drain(&mut d);
        register(&mut d, 2, 1, t0);
        let second = deployed(&drain(&mut d));
        let mut on: Vec<_> = second.iter().map(|d| (d.0.clone(), d.2)).collect();
        on.sort();
        assert_eq!(on, vec![(tm(0), 1), (tm(2), 1)]);
        finish_all(&mut d, &second, t0);
        let view = d.job(A).unwrap();
        assert_eq!(view.status, JobStatus::Finished);
        assert_eq!(view.restarts, 1);
    }

    #[test]
    fn dead_task_managers_are_noticed_whether_or_not_a_job_holds_them() {
        let t0 = Instant::now();
        let mut d = Dispatcher::new(config(1, 1), t0);
        drain(&mut d);
        register(&mut d, 0, 1, t0);
        let timeout = JobManagerConfig::default().heartbeat_timeout;
        assert_eq!(d.poll_timeout(), Some(t0 + timeout));
        d.tick(t0 + timeout);
        let actions = drain(&mut d);
        assert_eq!(released(&actions), vec![tm(0)]);
        assert_eq!(requested(&actions), vec![tm(1)], "the minimum is restored");
        // One that never registers is given up too.
        let registration = JobManagerConfig::default().registration_timeout;
        d.tick(t0 + timeout + registration);
        let actions = drain(&mut d);
        assert_eq!(released(&actions), vec![tm(1)]);
        assert_eq!(requested(&actions), vec![tm(2)]);
    }

    #[test]
    fn unknown_task_managers_are_refused() {
        let t0 = Instant::now();
        let mut d = Dispatcher::new(config(1, 1), t0);
        assert_eq!(
            d.worker_registered(&WorkerId("intruder".into()), 1, "x:1", t0),
            Err(RegistrationError::Unknown(WorkerId("intruder".into())))
        );
        register(&mut d, 0, 1, t0);
        assert_eq!(
            d.worker_registered(&tm(0), 1, "x:1", t0),
            Err(RegistrationError::AlreadyRegistered(tm(0)))
        );
    }

    #[test]
    fn cancel_and_stop() {
        let t0 = Instant::now();
        let mut d = Dispatcher::new(config(1, 1), t0);
        drain(&mut d);
        register(&mut d, 0, 1, t0);
        assert_eq!(d.cancel(A, t0), Err(CancelError::Unknown(A)));
        d.submit(job(A, 1), None, vec![], None, 1, t0).unwrap();
        assert_eq!(
            d.submit(job(A, 1), None, vec![], None, 1, t0),
            Err(DispatchError::Duplicate(A))
        );
        let deploys = deployed(&drain(&mut d));
        d.message(&tm(0), state(A, 0, 0, SubtaskState::Running), t0);
        d.stop(t0);
        let actions = drain(&mut d);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, DispatcherAction::Send { message, .. }
                if matches!(message.kind, Some(job_manager_message::Kind::Cancel(_))))),
            "{actions:?}"
        );
        assert!(!d.is_stopped(), "the job is still cancelling");
        d.message(
            &tm(0),
            state(A, deploys[0].2, 0, SubtaskState::Canceled),
            t0,
        );
        let actions = drain(&mut d);
        assert_eq!(released(&actions), vec![tm(0)]);
        assert!(d.is_stopped());
        assert_eq!(d.job(A).unwrap().status, JobStatus::Cancelled);
        assert_eq!(
            d.cancel(A, t0),
            Err(CancelError::Terminal {
                id: A,
                status: JobStatus::Cancelled
            })
        );
    }

    #[test]
    fn old_finished_jobs_are_retired_beyond_the_retention() {
        let t0 = Instant::now();
        let mut d = Dispatcher::new(config(0, 1), t0);
        for id in 1..=3u128 {
            d.submit(job(id, 1), None, vec![], None, 1, t0).unwrap();
            d.cancel(id, t0).unwrap();
        }
        let ids: Vec<u128> = d.jobs().iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![2, 3]);
    }
}
