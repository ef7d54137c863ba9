//! [`JobMaster`]: one job's execution as a pure state machine.
//!
//! Inputs are what happened (submission, a TaskManager registering, a heartbeat, a subtask's
//! state change, a worker lost, the user cancelling) with `now` passed in; outputs are
//! [`Action`]s ([`JobMaster::poll_action`]) and the instant it next wants [`JobMaster::tick`]
//! ([`JobMaster::poll_timeout`]). It opens no socket and reads no clock: the shell owns the
//! control connections, the ResourceManager driver and the timer.
//!
//! Lifecycle: `submit` requests the workers; once enough slots have registered, attempt 0 is
//! deployed (one `DeploySubtasks` per worker). All subtasks FINISHED: the job is finished, the
//! outcome sums the last attempt's final metrics, and the workers are released. A subtask
//! FAILED, or a worker lost (process exit, disconnect, heartbeat timeout): the attempt is
//! cancelled on the surviving workers, the restart strategy is asked, lost workers are replaced
//! with freshly named ones, and once the old attempt has drained and the delay has passed the
//! whole job is deployed again as the next attempt. Messages about older attempts are ignored.
//!
//! Checkpoints: a [`CheckpointCoordinator`] hangs off [`JobMaster`] next to the attempt it
//! coordinates. It learns of every deploy, of the attempt becoming fully RUNNING (periodic
//! checkpoints start), of FINISHED subtasks and of the attempt's end (`begin_drain`); every
//! deploy restores its latest completed checkpoint (else the savepoint given at submission). Its
//! triggers go to the workers hosting source subtasks, its notifications to every worker of the
//! attempt, its storage work (metadata writes, deletions) to the shell as [`Action`]s. When every
//! subtask FINISHED, `NotifyCheckpointComplete` with id `u64::MAX` tells every worker to commit
//! what is pending before the job is reported FINISHED.
//!
//! HA: everything that must survive a JobManager failover is plain data exported by
//! [`JobMaster::snapshot`]; only deadlines (instants) are not.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use bytes::Bytes;
use mesoflow_proto::control::{
    AcknowledgeCheckpoint, CancelAttempt, Checkpointing, DeclineCheckpoint, DeploySubtasks,
    Heartbeat, JobDefinition, NotifyCheckpointAborted, NotifyCheckpointComplete, PeerEndpoint,
    RegistrationAccepted, SubtaskMetrics, SubtaskPlacement, SubtaskRef, SubtaskState,
    SubtaskStateChange, TriggerCheckpoint, checkpointing,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{
    checkpoints::{
        CheckpointAction, CheckpointCoordinator, CheckpointSettings, CheckpointStats,
        CheckpointingMode, JobEnd, Restore, SavepointError, SavepointStatus,
    },
    placement::{self, PlacementError},
    restart::{RestartDecision, RestartStrategy, RestartTracker},
};
use crate::resource_manager::{WorkerId, WorkerSpec};

/// What the JobManager needs to know about the cluster and its policies.
#[derive(Debug, Clone, PartialEq)]
pub struct JobManagerConfig {
    /// Slots each requested worker offers (`taskmanager.numberOfTaskSlots`).
    pub slots_per_worker: u32,
    /// Workers (TaskManagers) to request for the job.
    pub workers: u32,
    /// CPUs to reserve per worker.
    pub worker_cpus: f64,
    /// Memory to reserve per worker, in MiB.
    pub worker_memory_mb: u64,
    /// Spread slots over workers (`cluster.evenly-spread-out-slots`) rather than pack them.
    pub spread: bool,
    /// Interval at which TaskManagers send heartbeats (`heartbeat.interval`).
    pub heartbeat_interval: Duration,
    /// Silence after which a TaskManager is lost (`heartbeat.timeout`).
    pub heartbeat_timeout: Duration,
    /// Time a requested worker has to register before it counts as lost
    /// (`resourcemanager.taskmanager-registration.timeout`).
    pub registration_timeout: Duration,
    /// Time a worker has to report its subtasks cancelled before it is given up on
    /// (`task.cancellation.timeout`).
    pub cancel_timeout: Duration,
    /// What to do when the job fails.
    pub restart: RestartStrategy,
    /// Seed of the restart delays' jitter (random in production, fixed in tests).
    pub seed: u64,
}

impl Default for JobManagerConfig {
    /// Flink's defaults: one worker with one slot, spread, 10 s / 50 s heartbeats, 5 min
    /// registration timeout, 180 s cancellation timeout, exponential-delay restarts.
    fn default() -> Self {
        Self {
            slots_per_worker: 1,
            workers: 1,
            worker_cpus: 1.0,
            worker_memory_mb: 1024,
            spread: true,
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(50),
            registration_timeout: Duration::from_secs(300),
            cancel_timeout: Duration::from_secs(180),
            restart: RestartStrategy::default(),
            seed: 0,
        }
    }
}

impl JobManagerConfig {
    /// The configured heartbeats, timeouts, spreading and restart strategy; Flink's defaults
    /// for the rest (the worker count and slots are set per job).
    pub fn from_config(config: &crate::config::Configuration) -> Self {
        Self {
            spread: config.cluster.evenly_spread_out_slots,
            heartbeat_interval: config.cluster.heartbeat_interval,
            heartbeat_timeout: config.cluster.heartbeat_timeout,
            registration_timeout: config.cluster.registration_timeout,
            cancel_timeout: config.cluster.cancellation_timeout,
            restart: config.restart,
            ..Self::default()
        }
    }
}

/// A job to run: its definition (passed through to every deploy), the shape of its plan and
/// how it checkpoints.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSubmission {
    /// The job's id.
    pub job_id: u128,
    /// What every TaskManager builds.
    pub definition: JobDefinition,
    /// Parallelism of each chain of the physical plan, in plan order.
    pub chains: Vec<u32>,
    /// Chains whose head is a source: checkpoints are triggered on their workers.
    pub source_chains: Vec<u32>,
    /// Checkpointing settings (default: no periodic checkpoints).
    pub checkpointing: CheckpointSettings,
    /// The snapshot to start from (`-s`, `savepointPath`).
    pub initial_restore: Option<Restore>,
    /// Wall clock of the submission, epoch milliseconds (checkpoint timestamps).
    pub submitted_at_ms: i64,
}

/// A job's status, Flink's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Submitted, waiting for slots for its first attempt.
    Created,
    /// An attempt is deployed.
    Running,
    /// An attempt failed; the job is draining it, waiting out the delay or for slots.
    Restarting,
    /// The job gave up; its last attempt is being cancelled.
    Failing,
    /// Cancellation requested; the attempt is being cancelled.
    Cancelling,
    /// Every subtask finished.
    Finished,
    /// The job failed for good.
    Failed,
    /// The job was cancelled.
    Cancelled,
}

impl JobStatus {
    /// Whether the job is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// The result of a finished job: the last attempt's final counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobOutcome {
    /// Records read by all subtasks.
    pub records_in: u64,
    /// Records written by all subtasks.
    pub records_out: u64,
    /// Wrapping sum of the sinks' checksums.
    pub checksum: u64,
    /// Records skipped (malformed input).
    pub skipped: u64,
    /// Attempts deployed.
    pub attempts: u32,
    /// Restarts granted by the restart strategy.
    pub restarts: u32,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Ask the ResourceManager driver for a worker.
    RequestWorker {
        /// The id the worker must register with.
        id: WorkerId,
        /// Its resources.
        spec: WorkerSpec,
    },
    /// Stop a worker (released, or lost and possibly still running).
    ReleaseWorker {
        /// Which worker.
        id: WorkerId,
        /// The job gave up on it (a timeout, a lost connection): it must not host work again.
        /// False when the job simply no longer needs it.
        lost: bool,
    },
    /// Send `DeploySubtasks` on a worker's control stream.
    Deploy {
        /// The worker.
        worker: WorkerId,
        /// The message (boxed: it carries the whole job definition).
        deploy: Box<DeploySubtasks>,
    },
    /// Send `CancelAttempt` on a worker's control stream.
    CancelAttempt {
        /// The worker.
        worker: WorkerId,
        /// The message.
        cancel: CancelAttempt,
    },
    /// The job's status changed.
    JobStatusChanged(JobStatus),
    /// The job failed and will be restarted as `attempt` after `delay` (and once the old
    /// attempt has drained and enough slots are registered).
    Restarting {
        /// The attempt that will be deployed.
        attempt: u32,
        /// What failed.
        cause: String,
        /// The restart strategy's delay.
        delay: Duration,
    },
    /// The job finished.
    Finished(JobOutcome),
    /// The job failed for good.
    Failed {
        /// What failed, and why it was not restarted.
        cause: String,
    },
    /// The job was cancelled.
    Cancelled,
    /// Send `TriggerCheckpoint` on a worker's control stream.
    TriggerCheckpoint {
        /// The worker (one hosting a source subtask).
        worker: WorkerId,
        /// The message.
        trigger: TriggerCheckpoint,
    },
    /// Send `NotifyCheckpointComplete` on a worker's control stream.
    NotifyCheckpointComplete {
        /// The worker.
        worker: WorkerId,
        /// The message (`checkpoint_id = u64::MAX`: the job finished, commit everything).
        notify: NotifyCheckpointComplete,
    },
    /// Send `NotifyCheckpointAborted` on a worker's control stream.
    NotifyCheckpointAborted {
        /// The worker.
        worker: WorkerId,
        /// The message.
        notify: NotifyCheckpointAborted,
    },
    /// Write a checkpoint's `_metadata` atomically, then report
    /// [`JobMaster::metadata_written`].
    WriteMetadata {
        /// The checkpoint.
        checkpoint_id: u64,
        /// Storage root URI.
        root: String,
        /// Path under the root.
        path: String,
        /// The encoded metadata.
        bytes: Bytes,
    },
    /// Delete files under a storage root (best effort).
    DeleteFiles {
        /// Storage root URI.
        root: String,
        /// Paths under it.
        paths: Vec<String>,
    },
    /// Delete a directory under a storage root (best effort).
    DeleteDir {
        /// Storage root URI.
        root: String,
        /// Path under it.
        path: String,
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

/// A submission the JobManager cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// `submit` was already called.
    #[error("a job was already submitted to this JobManager")]
    AlreadySubmitted,
    /// The plan has no subtasks to run.
    #[error("the job has no chains, or a chain with parallelism 0: {0:?}")]
    EmptyPlan(Vec<u32>),
    /// The workers to request cannot host the job.
    #[error(transparent)]
    NotEnoughSlots(#[from] PlacementError),
}

/// A TaskManager the JobManager refuses (sent back as `RegistrationRefused`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// Not a worker this JobManager asked for (or one it has already replaced).
    #[error("task manager {0} was not requested by this job manager (or was replaced)")]
    Unknown(WorkerId),
    /// Registered twice.
    #[error("task manager {0} is already registered")]
    AlreadyRegistered(WorkerId),
    /// Offers no slots.
    #[error("task manager {0} offers no slots")]
    NoSlots(WorkerId),
    /// The job is over.
    #[error("the job is over")]
    JobOver,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    /// Requested from the driver, not registered yet.
    Requested,
    /// Registered on the control channel.
    Registered,
}

#[derive(Debug, Clone)]
struct Worker {
    /// Request order: the order placement fills workers in.
    seq: u64,
    state: WorkerState,
    requested_at: Instant,
    last_seen: Instant,
    slots: u32,
    data_endpoint: String,
}

#[derive(Debug, Clone)]
struct Subtask {
    worker: WorkerId,
    state: SubtaskState,
    metrics: Option<SubtaskMetrics>,
}

/// What happens once a cancelled attempt has drained.
#[derive(Debug, Clone, PartialEq)]
enum AfterDrain {
    Restart {
        not_before: Instant,
    },
    Fail {
        cause: String,
    },
    Cancel,
    /// Stop-with-savepoint: the savepoint completed, the job ends FINISHED.
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Nothing submitted yet.
    Idle,
    /// Waiting for slots (and a restart delay) to deploy `attempt`.
    Scheduling { not_before: Option<Instant> },
    /// `attempt` is deployed.
    Running,
    /// `attempt` is being cancelled.
    Draining { then: AfterDrain, deadline: Instant },
    /// The job is over.
    Done(JobStatus),
}

/// One worker in a [`JobSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// The worker.
    pub id: WorkerId,
    /// Requested or registered.
    pub state: WorkerState,
    /// Slots it registered with (0 until registered).
    pub slots: u32,
    /// Its data endpoint (empty until registered).
    pub data_endpoint: String,
}

/// One subtask of the current attempt in a [`JobSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskRow {
    /// Chain.
    pub chain: u32,
    /// Instance.
    pub index: u32,
    /// Worker running it.
    pub worker: WorkerId,
    /// Its last reported state (`SUBTASK_STATE_*`).
    pub state: String,
    /// Its latest records in.
    pub records_in: u64,
    /// Its latest records out.
    pub records_out: u64,
}

/// The JobManager's state as plain data: for the REST API now, for HA recovery later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// The job's id, 32 hex digits.
    pub job_id: String,
    /// Its status.
    pub status: JobStatus,
    /// The current (or next) attempt.
    pub attempt: u32,
    /// Restarts granted so far.
    pub restarts: u32,
    /// Live workers, in request order.
    pub workers: Vec<WorkerRow>,
    /// Subtasks of the deployed attempt (empty while none is).
    pub subtasks: Vec<SubtaskRow>,
}

/// One job's execution (see the module docs).
#[derive(Debug)]
pub struct JobMaster {
    config: JobManagerConfig,
    job: Option<JobSubmission>,
    phase: Phase,
    status: JobStatus,
    /// The deployed attempt, or the next one while scheduling.
    attempt: u32,
    restarts: u32,
    restart: RestartTracker,
    workers: BTreeMap<WorkerId, Worker>,
    next_worker: u64,
    /// Subtasks of the deployed attempt, by (chain, index).
    subtasks: BTreeMap<(u32, u32), Subtask>,
    checkpoints: Option<CheckpointCoordinator>,
    actions: VecDeque<Action>,
}

impl JobMaster {
    /// A JobManager waiting for its job.
    pub fn new(config: JobManagerConfig) -> Self {
        let restart = config.restart.tracker(config.seed);
        Self {
            config,
            job: None,
            phase: Phase::Idle,
            status: JobStatus::Created,
            attempt: 0,
            restarts: 0,
            restart,
            workers: BTreeMap::new(),
            next_worker: 0,
            subtasks: BTreeMap::new(),
            checkpoints: None,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`tick`](Self::tick) must be called next: the earliest heartbeat or registration
    /// deadline, cancellation deadline or end of a restart delay.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase_deadline = match &self.phase {
            Phase::Idle | Phase::Done(_) => return None,
            Phase::Scheduling { not_before } => *not_before,
            Phase::Running => self.checkpoints.as_ref().and_then(|c| c.poll_timeout()),
            Phase::Draining { deadline, .. } => Some(*deadline),
        };
        self.workers
            .values()
            .map(|w| self.worker_deadline(w))
            .chain(phase_deadline)
            .min()
    }

    /// The job's status.
    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// The current (or next) attempt number.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// What TaskManagers are told when they register.
    pub fn registration_accepted(&self) -> RegistrationAccepted {
        RegistrationAccepted {
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
        }
    }

    /// Starts the job: requests its workers.
    pub fn submit(&mut self, job: JobSubmission, now: Instant) -> Result<(), SubmitError> {
        if self.job.is_some() {
            return Err(SubmitError::AlreadySubmitted);
        }
        if job.chains.is_empty() || job.chains.contains(&0) {
            return Err(SubmitError::EmptyPlan(job.chains));
        }
        let needed = placement::slots_needed(&job.chains);
        let offered = u64::from(self.config.workers) * u64::from(self.config.slots_per_worker);
        if u64::from(needed) > offered {
            return Err(PlacementError {
                needed,
                available: offered,
                workers: self.config.workers as usize,
            }
            .into());
        }
        info!(
            job = %format_args!("{:032x}", job.job_id),
            name = %job.definition.name,
            slots = needed,
            workers = self.config.workers,
            "job submitted"
        );
        self.checkpoints = Some(CheckpointCoordinator::new(
            job.checkpointing.clone(),
            job.job_id,
            &job.definition.name,
            job.initial_restore.clone(),
            (now, job.submitted_at_ms),
        ));
        self.job = Some(job);
        self.actions
            .push_back(Action::JobStatusChanged(JobStatus::Created));
        self.phase = Phase::Scheduling { not_before: None };
        self.top_up_workers(now);
        Ok(())
    }

    /// A requested worker registered on the control channel.
    pub fn worker_registered(
        &mut self,
        id: &WorkerId,
        slots: u32,
        data_endpoint: &str,
        now: Instant,
    ) -> Result<RegistrationAccepted, RegistrationError> {
        if matches!(self.phase, Phase::Done(_) | Phase::Idle) {
            return Err(RegistrationError::JobOver);
        }
        let Some(worker) = self.workers.get_mut(id) else {
            return Err(RegistrationError::Unknown(id.clone()));
        };
        if worker.state == WorkerState::Registered {
            return Err(RegistrationError::AlreadyRegistered(id.clone()));
        }
        if slots == 0 {
            return Err(RegistrationError::NoSlots(id.clone()));
        }
        info!(worker = %id, slots, data_endpoint, "task manager registered");
        worker.state = WorkerState::Registered;
        worker.slots = slots;
        worker.data_endpoint = data_endpoint.to_owned();
        worker.last_seen = now;
        self.try_deploy(now);
        Ok(self.registration_accepted())
    }

    /// Binds a requested worker to a TaskManager someone else provides (a session cluster's
    /// pool): the worker takes the TaskManager's id, since deployments name TaskManagers by
    /// the id they registered with. False when `from` is not a requested worker or `to` is
    /// taken.
    pub fn bind_worker(&mut self, from: &WorkerId, to: WorkerId) -> bool {
        if from == &to {
            return self.workers.contains_key(from);
        }
        if self.workers.contains_key(&to) {
            return false;
        }
        match self.workers.remove(from) {
            Some(worker) if worker.state == WorkerState::Requested => {
                self.workers.insert(to, worker);
                true
            }
            Some(worker) => {
                self.workers.insert(from.clone(), worker);
                false
            }
            None => false,
        }
    }

    /// A worker is gone: its process exited, its control connection closed, or it timed out.
    /// Unknown (already lost or released) workers are ignored.
    pub fn worker_lost(&mut self, id: &WorkerId, reason: &str, now: Instant) {
        if matches!(self.phase, Phase::Done(_) | Phase::Idle) {
            return;
        }
        if self.workers.remove(id).is_none() {
            return;
        }
        warn!(worker = %id, reason, "task manager lost");
        // It may still be running (a timeout, a hung process): make sure it is stopped.
        self.actions.push_back(Action::ReleaseWorker {
            id: id.clone(),
            lost: true,
        });
        let cause = format!("task manager {id} lost: {reason}");
        match self.phase.clone() {
            Phase::Running => {
                let hosted_live = self
                    .subtasks
                    .values()
                    .any(|s| &s.worker == id && !s.state.is_terminal());
                if hosted_live {
                    self.fail(cause, now);
                }
            }
            Phase::Scheduling { .. } => self.fail(cause, now),
            Phase::Draining { then, .. } => {
                if matches!(then, AfterDrain::Restart { .. }) {
                    self.top_up_workers(now);
                }
                self.check_drained(now);
            }
            Phase::Idle | Phase::Done(_) => {}
        }
        self.pump_checkpoints(now);
    }

    /// A TaskManager's heartbeat: it is alive, and its subtasks' live counters.
    pub fn heartbeat(&mut self, id: &WorkerId, heartbeat: &Heartbeat, now: Instant) {
        if !self.touch(id, now) {
            return;
        }
        for metrics in &heartbeat.metrics {
            let Some(key) = metrics.subtask.as_ref().and_then(|r| self.current_key(r)) else {
                continue;
            };
            if let Some(subtask) = self.subtasks.get_mut(&key)
                && &subtask.worker == id
                && !subtask.state.is_terminal()
            {
                subtask.metrics = Some(metrics.clone());
            }
        }
    }

    /// A subtask changed state. Changes of other jobs, older attempts, unknown subtasks or
    /// subtasks placed elsewhere are ignored, as are changes after a terminal state.
    pub fn subtask_state(&mut self, id: &WorkerId, change: &SubtaskStateChange, now: Instant) {
        self.touch(id, now);
        let Some(key) = change.subtask.as_ref().and_then(|r| self.current_key(r)) else {
            debug!(worker = %id, ?change.subtask, "ignoring a state change of another job or attempt");
            return;
        };
        let Ok(state) = SubtaskState::try_from(change.state) else {
            warn!(worker = %id, state = change.state, "ignoring an unknown subtask state");
            return;
        };
        let Some(subtask) = self.subtasks.get_mut(&key) else {
            warn!(worker = %id, chain = key.0, index = key.1, "ignoring a state change of an unknown subtask");
            return;
        };
        if &subtask.worker != id {
            warn!(worker = %id, placed_on = %subtask.worker, "ignoring a state change of a subtask placed elsewhere");
            return;
        }
        if subtask.state.is_terminal() {
            return;
        }
        debug!(worker = %id, chain = key.0, index = key.1, ?state, "subtask state");
        subtask.state = state;
        if let Some(metrics) = &change.metrics {
            subtask.metrics = Some(metrics.clone());
        }
        let (chain, index) = key;
        match (&self.phase, state) {
            (Phase::Running, SubtaskState::Failed) => {
                let message = if change.message.is_empty() {
                    "no reason given"
                } else {
                    &change.message
                };
                let mut cause = format!("subtask {chain}.{index} on {id} failed: {message}");
                if change.corrupt_checkpoint != 0
                    && let Some(c) = self.checkpoints.as_mut()
                {
                    let fallback = c.mark_corrupt(change.corrupt_checkpoint);
                    cause = format!(
                        "{cause} (checkpoint {} is corrupt; {fallback})",
                        change.corrupt_checkpoint
                    );
                }
                if change.suppress_restart {
                    // Restarting cannot help; the restart strategy is not asked.
                    warn!(attempt = self.attempt, %cause, "job failure that suppresses restarts");
                    self.begin_drain(AfterDrain::Fail { cause }, now);
                } else {
                    self.fail(cause, now);
                }
            }
            (Phase::Running, SubtaskState::Canceled) => self.fail(
                format!("subtask {chain}.{index} on {id} was cancelled unexpectedly"),
                now,
            ),
            (Phase::Running, SubtaskState::Running) => {
                if change.input_ended
                    && let Some(c) = self.checkpoints.as_mut()
                {
                    c.input_ended(self.attempt, key, now);
                }
                if self
                    .subtasks
                    .values()
                    .all(|s| s.state == SubtaskState::Running)
                    && let Some(c) = self.checkpoints.as_mut()
                {
                    c.attempt_running(self.attempt, now);
                }
            }
            (Phase::Running, SubtaskState::Finished) => {
                if let Some(c) = self.checkpoints.as_mut() {
                    c.subtask_finished(self.attempt, key, now);
                }
                self.check_finished(now);
            }
            (Phase::Draining { .. }, _) => self.check_drained(now),
            _ => {}
        }
        self.pump_checkpoints(now);
    }

    /// A subtask acknowledged a checkpoint.
    pub fn acknowledge_checkpoint(
        &mut self,
        id: &WorkerId,
        ack: &AcknowledgeCheckpoint,
        now: Instant,
    ) {
        self.touch(id, now);
        if self.phase != Phase::Running {
            return;
        }
        if let Some(c) = self.checkpoints.as_mut() {
            c.acknowledge(ack, now);
        }
        self.pump_checkpoints(now);
    }

    /// A subtask declined a checkpoint.
    pub fn decline_checkpoint(&mut self, id: &WorkerId, decline: &DeclineCheckpoint, now: Instant) {
        self.touch(id, now);
        if self.phase != Phase::Running {
            return;
        }
        if let Some(c) = self.checkpoints.as_mut() {
            c.decline(decline, now);
        }
        self.pump_checkpoints(now);
    }

    /// The shell wrote (or failed to write) a checkpoint's `_metadata`.
    pub fn metadata_written(
        &mut self,
        checkpoint_id: u64,
        result: Result<(), String>,
        now: Instant,
    ) {
        if let Some(c) = self.checkpoints.as_mut() {
            c.metadata_written(checkpoint_id, result, now);
        }
        self.pump_checkpoints(now);
    }

    /// Takes a savepoint into `target` (default `state.savepoints.dir`); with `stop`, the job
    /// then stops and ends FINISHED. Returns the request id.
    pub fn trigger_savepoint(
        &mut self,
        target: Option<&str>,
        stop: bool,
        now: Instant,
    ) -> Result<String, SavepointError> {
        if self.phase != Phase::Running {
            return Err(SavepointError::NotRunning);
        }
        let c = self
            .checkpoints
            .as_mut()
            .ok_or(SavepointError::NotRunning)?;
        let result = c.trigger_savepoint(target, stop, now);
        self.pump_checkpoints(now);
        result
    }

    /// A savepoint request's status.
    pub fn savepoint_status(&self, request_id: &str) -> Option<SavepointStatus> {
        self.checkpoints
            .as_ref()
            .and_then(|c| c.savepoint_status(request_id).cloned())
    }

    /// Checkpoint statistics.
    pub fn checkpoint_stats(&self, now: Instant) -> CheckpointStats {
        self.checkpoints
            .as_ref()
            .map(|c| c.stats(now))
            .unwrap_or_default()
    }

    /// The coordinator, for inspection.
    pub fn checkpoint_coordinator(&self) -> Option<&CheckpointCoordinator> {
        self.checkpoints.as_ref()
    }

    /// Time passed: heartbeat and registration timeouts, cancellation timeouts, restart delays.
    pub fn tick(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Idle | Phase::Done(_)) {
            return;
        }
        let expired: Vec<(WorkerId, String)> = self
            .workers
            .iter()
            .filter(|(_, w)| self.worker_deadline(w) <= now)
            .map(|(id, w)| {
                let reason = match w.state {
                    WorkerState::Requested => format!(
                        "did not register within {}",
                        humantime::format_duration(self.config.registration_timeout)
                    ),
                    WorkerState::Registered => format!(
                        "no heartbeat for {} (heartbeat.timeout)",
                        humantime::format_duration(self.config.heartbeat_timeout)
                    ),
                };
                (id.clone(), reason)
            })
            .collect();
        for (id, reason) in expired {
            self.worker_lost(&id, &reason, now);
        }
        if let Phase::Draining { deadline, .. } = self.phase
            && deadline <= now
        {
            let stuck: Vec<WorkerId> = self
                .subtasks
                .values()
                .filter(|s| !s.state.is_terminal())
                .map(|s| s.worker.clone())
                .collect();
            for id in stuck {
                let reason = format!(
                    "did not cancel attempt {} within {}",
                    self.attempt,
                    humantime::format_duration(self.config.cancel_timeout)
                );
                self.worker_lost(&id, &reason, now);
            }
            self.check_drained(now);
        }
        if self.phase == Phase::Running
            && let Some(c) = self.checkpoints.as_mut()
        {
            c.tick(now);
        }
        self.try_deploy(now);
        self.pump_checkpoints(now);
    }

    /// The user cancels the job.
    pub fn cancel(&mut self, now: Instant) {
        match self.phase.clone() {
            Phase::Idle | Phase::Scheduling { .. } => self.finish(JobStatus::Cancelled, None, now),
            Phase::Running => self.begin_drain(AfterDrain::Cancel, now),
            Phase::Draining {
                then: AfterDrain::Restart { .. },
                deadline,
            } => {
                self.set_phase(Phase::Draining {
                    then: AfterDrain::Cancel,
                    deadline,
                });
                self.check_drained(now);
            }
            Phase::Draining {
                then: AfterDrain::Stop,
                deadline,
            } => {
                // The savepoint is taken; the user wants the job gone now.
                self.set_phase(Phase::Draining {
                    then: AfterDrain::Cancel,
                    deadline,
                });
                self.check_drained(now);
            }
            Phase::Draining { .. } | Phase::Done(_) => {}
        }
        self.pump_checkpoints(now);
    }

    /// The state as plain data (see [`JobSnapshot`]).
    pub fn snapshot(&self) -> JobSnapshot {
        let mut workers: Vec<_> = self.workers.iter().collect();
        workers.sort_by_key(|(_, w)| w.seq);
        JobSnapshot {
            job_id: format!("{:032x}", self.job.as_ref().map_or(0, |j| j.job_id)),
            status: self.status,
            attempt: self.attempt,
            restarts: self.restarts,
            workers: workers
                .into_iter()
                .map(|(id, w)| WorkerRow {
                    id: id.clone(),
                    state: w.state,
                    slots: w.slots,
                    data_endpoint: w.data_endpoint.clone(),
                })
                .collect(),
            subtasks: self
                .subtasks
                .iter()
                .map(|(&(chain, index), s)| SubtaskRow {
                    chain,
                    index,
                    worker: s.worker.clone(),
                    state: s.state.as_str_name().to_owned(),
                    records_in: s.metrics.as_ref().map_or(0, |m| m.records_in),
                    records_out: s.metrics.as_ref().map_or(0, |m| m.records_out),
                })
                .collect(),
        }
    }

    // ---- internals ----

    fn worker_deadline(&self, w: &Worker) -> Instant {
        match w.state {
            WorkerState::Requested => w.requested_at + self.config.registration_timeout,
            WorkerState::Registered => w.last_seen + self.config.heartbeat_timeout,
        }
    }

    /// Records a sign of life; false for a worker that is not registered with us.
    fn touch(&mut self, id: &WorkerId, now: Instant) -> bool {
        match self.workers.get_mut(id) {
            Some(w) if w.state == WorkerState::Registered => {
                w.last_seen = w.last_seen.max(now);
                true
            }
            _ => false,
        }
    }

    /// The (chain, index) of a reference to the deployed attempt of this job.
    fn current_key(&self, r: &SubtaskRef) -> Option<(u32, u32)> {
        let job = self.job.as_ref()?;
        let deployed = matches!(self.phase, Phase::Running | Phase::Draining { .. });
        (deployed && r.job_id.as_ref() == job.job_id.to_be_bytes() && r.attempt == self.attempt)
            .then_some((r.chain, r.index))
    }

    fn set_phase(&mut self, phase: Phase) {
        let status = match &phase {
            Phase::Idle => JobStatus::Created,
            Phase::Scheduling { .. } if self.restarts == 0 => JobStatus::Created,
            Phase::Scheduling { .. } => JobStatus::Restarting,
            Phase::Running => JobStatus::Running,
            Phase::Draining { then, .. } => match then {
                AfterDrain::Restart { .. } => JobStatus::Restarting,
                AfterDrain::Fail { .. } => JobStatus::Failing,
                AfterDrain::Cancel => JobStatus::Cancelling,
                // Flink's stop-with-savepoint: RUNNING until FINISHED.
                AfterDrain::Stop => JobStatus::Running,
            },
            Phase::Done(status) => *status,
        };
        self.phase = phase;
        if status != self.status {
            info!(from = ?self.status, to = ?status, attempt = self.attempt, "job status");
            self.status = status;
            self.actions.push_back(Action::JobStatusChanged(status));
        }
    }

    /// Requests workers until `config.workers` are requested or registered.
    fn top_up_workers(&mut self, now: Instant) {
        let job_id = self.job.as_ref().map_or(0, |j| j.job_id);
        while self.workers.len() < self.config.workers as usize {
            let seq = self.next_worker;
            self.next_worker += 1;
            // Fresh ids: a replacement is never confused with the worker it replaces.
            let id = WorkerId(format!("tm-{:08x}-{seq}", job_id as u32));
            self.workers.insert(
                id.clone(),
                Worker {
                    seq,
                    state: WorkerState::Requested,
                    requested_at: now,
                    last_seen: now,
                    slots: 0,
                    data_endpoint: String::new(),
                },
            );
            let spec = WorkerSpec {
                slots: self.config.slots_per_worker,
                cpus: self.config.worker_cpus,
                memory_mb: self.config.worker_memory_mb,
            };
            info!(worker = %id, "requesting a task manager");
            self.actions.push_back(Action::RequestWorker { id, spec });
        }
    }

    /// Deploys the next attempt if its delay has passed and enough slots are registered. With
    /// spread placement it also waits for every requested worker, so slots spread over all.
    fn try_deploy(&mut self, now: Instant) {
        let Phase::Scheduling { not_before } = self.phase else {
            return;
        };
        if not_before.is_some_and(|t| t > now) {
            return;
        }
        let Some(job) = &self.job else { return };
        let mut registered: Vec<_> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Registered)
            .collect();
        if self.config.spread && registered.len() < self.workers.len() {
            return;
        }
        registered.sort_by_key(|(_, w)| w.seq);
        let offers: Vec<(WorkerId, u32)> = registered
            .iter()
            .map(|(id, w)| ((*id).clone(), w.slots))
            .collect();
        let slots = match placement::place_slots(
            placement::slots_needed(&job.chains),
            &offers,
            self.config.spread,
        ) {
            Ok(slots) => slots,
            Err(e) => {
                debug!(error = %e, "waiting for slots");
                return;
            }
        };
        let placement = placement::assign_subtasks(&job.chains, &slots);
        let peers: Vec<PeerEndpoint> = registered
            .iter()
            .filter(|(id, _)| placement.iter().any(|p| p.task_manager_id == id.0))
            .map(|(id, w)| PeerEndpoint {
                task_manager_id: id.0.clone(),
                data_endpoint: w.data_endpoint.clone(),
            })
            .collect();
        let job_id = Bytes::copy_from_slice(&job.job_id.to_be_bytes());
        let checkpointing = self.checkpoints.as_ref().map(|c| {
            let settings = c.settings();
            let restore = c.restore();
            Checkpointing {
                mode: match settings.mode {
                    CheckpointingMode::ExactlyOnce => checkpointing::Mode::ExactlyOnce,
                    CheckpointingMode::AtLeastOnce => checkpointing::Mode::AtLeastOnce,
                } as i32,
                unaligned: settings.unaligned,
                checkpoint_root: c.root().unwrap_or_default().to_owned(),
                restore_root: restore.as_ref().map(|r| r.root.clone()).unwrap_or_default(),
                restore: restore.map(|r| r.metadata),
                state_backend: settings.state_backend.as_str().to_owned(),
                state_memory_budget: settings.state_memory_budget,
            }
        });
        info!(
            attempt = self.attempt,
            subtasks = placement.len(),
            workers = peers.len(),
            "deploying"
        );
        let mut deploys = Vec::new();
        for peer in &peers {
            let mine: Vec<SubtaskPlacement> = placement
                .iter()
                .filter(|p| p.task_manager_id == peer.task_manager_id)
                .cloned()
                .collect();
            deploys.push(Action::Deploy {
                worker: WorkerId(peer.task_manager_id.clone()),
                deploy: Box::new(DeploySubtasks {
                    job_id: job_id.clone(),
                    attempt: self.attempt,
                    job: Some(job.definition.clone()),
                    subtasks: mine,
                    placement: placement.clone(),
                    peers: peers.clone(),
                    checkpointing: checkpointing.clone(),
                }),
            });
        }
        self.subtasks = placement
            .into_iter()
            .map(|p| {
                (
                    (p.chain, p.index),
                    Subtask {
                        worker: WorkerId(p.task_manager_id),
                        state: SubtaskState::Deploying,
                        metrics: None,
                    },
                )
            })
            .collect();
        if let Some(c) = self.checkpoints.as_mut() {
            let sources = job.source_chains.clone();
            c.attempt_deployed(
                self.attempt,
                self.subtasks.keys().copied(),
                self.subtasks
                    .keys()
                    .copied()
                    .filter(|(chain, _)| sources.contains(chain)),
            );
        }
        self.set_phase(Phase::Running);
        self.actions.extend(deploys);
    }

    /// The deployed attempt (or the wait for one) failed: ask the restart strategy.
    fn fail(&mut self, cause: String, now: Instant) {
        warn!(attempt = self.attempt, %cause, "job failure");
        let decision = self.restart.on_failure(now);
        match (self.phase.clone(), decision) {
            (Phase::Running, RestartDecision::Restart(delay)) => {
                self.restarts += 1;
                self.actions.push_back(Action::Restarting {
                    attempt: self.attempt + 1,
                    cause,
                    delay,
                });
                // Replacements first, so a drain that completes at once does not deploy
                // onto the survivors alone.
                self.top_up_workers(now);
                self.begin_drain(
                    AfterDrain::Restart {
                        not_before: now + delay,
                    },
                    now,
                );
            }
            (Phase::Running, RestartDecision::GiveUp(why)) => {
                self.begin_drain(
                    AfterDrain::Fail {
                        cause: format!("{cause}; not restarting: {why}"),
                    },
                    now,
                );
            }
            (Phase::Scheduling { not_before }, RestartDecision::Restart(delay)) => {
                self.restarts += 1;
                self.actions.push_back(Action::Restarting {
                    attempt: self.attempt,
                    cause,
                    delay,
                });
                let not_before = not_before.into_iter().chain([now + delay]).max();
                self.set_phase(Phase::Scheduling { not_before });
                self.top_up_workers(now);
            }
            (Phase::Scheduling { .. }, RestartDecision::GiveUp(why)) => {
                self.finish(
                    JobStatus::Failed,
                    Some(format!("{cause}; not restarting: {why}")),
                    now,
                );
            }
            _ => {}
        }
    }

    /// Cancels the deployed attempt on every live worker hosting a subtask of it.
    fn begin_drain(&mut self, then: AfterDrain, now: Instant) {
        let job_id = self.job.as_ref().map_or(0, |j| j.job_id);
        let mut hosts: Vec<&WorkerId> = self
            .subtasks
            .values()
            .filter(|s| !s.state.is_terminal())
            .map(|s| &s.worker)
            .filter(|id| self.workers.contains_key(*id))
            .collect();
        hosts.sort();
        hosts.dedup();
        if let Some(c) = self.checkpoints.as_mut() {
            let reason = match &then {
                AfterDrain::Restart { .. } => "failover",
                AfterDrain::Fail { .. } => "the job failed",
                AfterDrain::Cancel => "the job was cancelled",
                AfterDrain::Stop => "the job stopped with a savepoint",
            };
            c.attempt_ended(reason, now);
        }
        let cancels: Vec<Action> = hosts
            .into_iter()
            .map(|id| Action::CancelAttempt {
                worker: id.clone(),
                cancel: CancelAttempt {
                    job_id: Bytes::copy_from_slice(&job_id.to_be_bytes()),
                    attempt: self.attempt,
                },
            })
            .collect();
        self.set_phase(Phase::Draining {
            then,
            deadline: now + self.config.cancel_timeout,
        });
        self.actions.extend(cancels);
        self.check_drained(now);
    }

    /// Ends the drain once every subtask is terminal or its worker is gone.
    fn check_drained(&mut self, now: Instant) {
        let Phase::Draining { then, .. } = &self.phase else {
            return;
        };
        let drained = self
            .subtasks
            .values()
            .all(|s| s.state.is_terminal() || !self.workers.contains_key(&s.worker));
        if !drained {
            return;
        }
        match then.clone() {
            AfterDrain::Restart { not_before } => {
                self.subtasks.clear();
                self.attempt += 1;
                self.set_phase(Phase::Scheduling {
                    not_before: Some(not_before),
                });
                self.try_deploy(now);
            }
            AfterDrain::Fail { cause } => self.finish(JobStatus::Failed, Some(cause), now),
            AfterDrain::Cancel => self.finish(JobStatus::Cancelled, None, now),
            AfterDrain::Stop => {
                let outcome = self.outcome();
                info!(?outcome, "job stopped with a savepoint");
                self.actions.push_back(Action::Finished(outcome));
                self.finish(JobStatus::Finished, None, now);
            }
        }
    }

    fn check_finished(&mut self, now: Instant) {
        if !self
            .subtasks
            .values()
            .all(|s| s.state == SubtaskState::Finished)
        {
            return;
        }
        let outcome = self.outcome();
        info!(?outcome, "job finished");
        self.actions.push_back(Action::Finished(outcome));
        // The final commit, before the status turns FINISHED and the workers are released:
        // two-phase-commit sinks commit what no checkpoint covered.
        let job_id = self.job.as_ref().map_or(0, |j| j.job_id);
        for worker in self.attempt_workers() {
            self.actions.push_back(Action::NotifyCheckpointComplete {
                worker,
                notify: NotifyCheckpointComplete {
                    job_id: Bytes::copy_from_slice(&job_id.to_be_bytes()),
                    attempt: self.attempt,
                    checkpoint_id: u64::MAX,
                    end_of_input: true,
                },
            });
        }
        self.finish(JobStatus::Finished, None, now);
    }

    /// The last attempt's final counters.
    fn outcome(&self) -> JobOutcome {
        let mut outcome = JobOutcome {
            attempts: self.attempt + 1,
            restarts: self.restarts,
            ..Default::default()
        };
        for m in self.subtasks.values().filter_map(|s| s.metrics.as_ref()) {
            outcome.records_in += m.records_in;
            outcome.records_out += m.records_out;
            outcome.checksum = outcome.checksum.wrapping_add(m.checksum);
            outcome.skipped += m.skipped;
        }
        outcome
    }

    /// Live workers hosting a subtask of the deployed attempt, sorted.
    fn attempt_workers(&self) -> Vec<WorkerId> {
        let mut hosts: Vec<WorkerId> = self
            .subtasks
            .values()
            .map(|s| s.worker.clone())
            .filter(|id| self.workers.contains_key(id))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Routes what the checkpoint coordinator asked for.
    fn pump_checkpoints(&mut self, now: Instant) {
        while let Some(action) = self.checkpoints.as_mut().and_then(|c| c.poll_action()) {
            let job_id =
                Bytes::copy_from_slice(&self.job.as_ref().map_or(0, |j| j.job_id).to_be_bytes());
            let live = |m: &Self, attempt: u32| {
                attempt == m.attempt && matches!(m.phase, Phase::Running | Phase::Draining { .. })
            };
            match action {
                CheckpointAction::Trigger(trigger) => {
                    if !live(self, trigger.attempt) {
                        continue;
                    }
                    // Every worker of the attempt: sources inject the barrier, and every
                    // subtask needs the trigger's options when the barrier reaches it.
                    for worker in self.attempt_workers() {
                        self.actions.push_back(Action::TriggerCheckpoint {
                            worker,
                            trigger: trigger.clone(),
                        });
                    }
                }
                CheckpointAction::NotifyComplete {
                    attempt,
                    checkpoint_id,
                    end_of_input,
                } => {
                    if !live(self, attempt) {
                        continue;
                    }
                    for worker in self.attempt_workers() {
                        self.actions.push_back(Action::NotifyCheckpointComplete {
                            worker,
                            notify: NotifyCheckpointComplete {
                                job_id: job_id.clone(),
                                attempt,
                                checkpoint_id,
                                end_of_input,
                            },
                        });
                    }
                }
                CheckpointAction::NotifyAborted {
                    attempt,
                    checkpoint_id,
                    reason,
                } => {
                    if !live(self, attempt) {
                        continue;
                    }
                    for worker in self.attempt_workers() {
                        self.actions.push_back(Action::NotifyCheckpointAborted {
                            worker,
                            notify: NotifyCheckpointAborted {
                                job_id: job_id.clone(),
                                attempt,
                                checkpoint_id,
                                reason: reason.clone(),
                            },
                        });
                    }
                }
                CheckpointAction::WriteMetadata {
                    checkpoint_id,
                    root,
                    path,
                    bytes,
                } => self.actions.push_back(Action::WriteMetadata {
                    checkpoint_id,
                    root,
                    path,
                    bytes,
                }),
                CheckpointAction::DeleteFiles { root, paths } => {
                    self.actions.push_back(Action::DeleteFiles { root, paths })
                }
                CheckpointAction::DeleteDir { root, path } => {
                    self.actions.push_back(Action::DeleteDir { root, path })
                }
                CheckpointAction::SavepointCompleted {
                    request_id,
                    location,
                    stop,
                } => {
                    self.actions.push_back(Action::SavepointCompleted {
                        request_id,
                        location,
                    });
                    if stop && self.phase == Phase::Running {
                        self.begin_drain(AfterDrain::Stop, now);
                    }
                }
                CheckpointAction::SavepointFailed { request_id, cause } => self
                    .actions
                    .push_back(Action::SavepointFailed { request_id, cause }),
                CheckpointAction::FailJob { cause } => {
                    if self.phase == Phase::Running {
                        self.fail(cause, now);
                    }
                }
            }
        }
    }

    /// Ends the job: reports failure or cancellation, and releases every worker.
    fn finish(&mut self, status: JobStatus, cause: Option<String>, now: Instant) {
        match status {
            JobStatus::Failed => {
                let cause = cause.unwrap_or_default();
                warn!(%cause, "job failed");
                self.actions.push_back(Action::Failed { cause });
            }
            JobStatus::Cancelled => {
                info!("job cancelled");
                self.actions.push_back(Action::Cancelled);
            }
            _ => {}
        }
        if let Some(c) = self.checkpoints.as_mut() {
            let end = match status {
                JobStatus::Finished => Some(JobEnd::Finished),
                JobStatus::Cancelled => Some(JobEnd::Cancelled),
                JobStatus::Failed => Some(JobEnd::Failed),
                _ => None,
            };
            if let Some(end) = end {
                c.job_ended(end, now);
            }
        }
        self.set_phase(Phase::Done(status));
        let mut workers: Vec<_> = std::mem::take(&mut self.workers).into_iter().collect();
        workers.sort_by_key(|(_, w)| w.seq);
        self.actions.extend(
            workers
                .into_iter()
                .map(|(id, _)| Action::ReleaseWorker { id, lost: false }),
        );
    }
}
