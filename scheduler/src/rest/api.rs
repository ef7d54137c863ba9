//! The REST API's data: JSON bodies with Flink's field names (so Flink tooling and habits carry
//! over), and [`RestBackend`], the seam between the HTTP layer and the JobManager.
//!
//! The backend is a plain synchronous trait over snapshots: the dispatcher keeps its latest view
//! behind a lock and turns `submit`/`cancel` into commands on its own channel, so no handler
//! ever waits on the JobManager's event loop.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::job_manager::request::RequestError;
pub use crate::job_manager::request::{JobRequest, SinkRequest};

/// What the HTTP layer needs from the JobManager.
pub trait RestBackend: Send + Sync + 'static {
    /// `GET /overview`.
    fn overview(&self) -> ClusterOverview;
    /// `GET /config` and `GET /jobmanager/config`; secrets are masked by the backend.
    fn config(&self) -> Vec<ConfigEntry>;
    /// `GET /jobs` and `GET /jobs/overview`, every job the dispatcher still knows.
    fn jobs(&self) -> Vec<JobOverview>;
    /// `GET /jobs/{id}`; `None` for a job the dispatcher does not know.
    fn job(&self, id: &JobId) -> Option<JobDetails>;
    /// `GET /taskmanagers`.
    fn task_managers(&self) -> Vec<TaskManagerInfo>;
    /// `GET /metrics` (rendered as Prometheus text by the server).
    fn metrics(&self) -> ClusterMetrics;
    /// `POST /jobs`: accepts the job (it runs asynchronously) and returns its id.
    fn submit(&self, request: JobRequest) -> Result<JobId, RestError>;
    /// `PATCH /jobs/{id}?mode=cancel`: asks for cancellation; [`RestError::NotFound`] for an
    /// unknown job, [`RestError::Conflict`] for one already in a terminal state (as Flink).
    fn cancel(&self, id: &JobId) -> Result<(), RestError>;
    /// `POST /jobs` with a `savepointPath`: the backend reads the snapshot (asynchronously,
    /// from checkpoint storage) before submitting. The default ignores nothing: it submits.
    fn submit_async(&self, request: JobRequest) -> BackendFuture<'_, Result<JobId, RestError>> {
        Box::pin(async move { self.submit(request) })
    }
    /// `POST /jobs/{id}/savepoints` (`stop`: `POST /jobs/{id}/stop`): the trigger's request
    /// id.
    fn trigger_savepoint(
        &self,
        id: &JobId,
        target_directory: Option<String>,
        stop: bool,
    ) -> Result<String, RestError> {
        let _ = (target_directory, stop);
        Err(RestError::unknown_job(id))
    }
    /// `GET /jobs/{id}/savepoints/{trigger}`.
    fn savepoint_status(
        &self,
        id: &JobId,
        trigger_id: &str,
    ) -> Result<AsynchronousOperationResult, RestError> {
        let _ = trigger_id;
        Err(RestError::unknown_job(id))
    }
    /// `GET /jobs/{id}/checkpoints`; `None` for an unknown job.
    fn checkpoints(&self, id: &JobId) -> Option<CheckpointingStatistics> {
        let _ = id;
        None
    }
}

/// A backend operation that waits on I/O.
pub type BackendFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Body of `POST /jobs/{id}/savepoints` (Flink's field names; unknown fields such as
/// `formatType` are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SavepointTriggerRequest {
    /// Where the savepoint directory is created (default `state.savepoints.dir`).
    #[serde(default, rename = "target-directory")]
    pub target_directory: Option<String>,
    /// Stop the job once the savepoint completed.
    #[serde(default, rename = "cancel-job")]
    pub cancel_job: bool,
}

/// Body of `POST /jobs/{id}/stop` (Flink's field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StopWithSavepointRequest {
    /// Where the savepoint directory is created (default `state.savepoints.dir`).
    #[serde(default, rename = "targetDirectory")]
    pub target_directory: Option<String>,
    /// Flink's MAX_WATERMARK before stopping; not supported.
    #[serde(default)]
    pub drain: bool,
}

/// `{"request-id": ...}`, the answer to a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerResponse {
    /// Ask `GET /jobs/{id}/savepoints/{request-id}` with it.
    #[serde(rename = "request-id")]
    pub request_id: String,
}

/// Flink's `{"status": {"id": ...}, "operation": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsynchronousOperationResult {
    /// `IN_PROGRESS` or `COMPLETED`.
    pub status: QueueStatus,
    /// Absent while in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<SavepointOperation>,
}

/// `{"id": "IN_PROGRESS" | "COMPLETED"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// `IN_PROGRESS` or `COMPLETED`.
    pub id: String,
}

/// The outcome of a savepoint: its location, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SavepointOperation {
    /// Completed.
    Location {
        /// The savepoint directory.
        location: String,
    },
    /// Failed.
    Failure {
        /// Flink's `{"class", "stack-trace"}`.
        #[serde(rename = "failure-cause")]
        failure_cause: FailureCause,
    },
}

/// Flink's serialized throwable, reduced to what we have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCause {
    /// An exception class name in Flink; here a fixed name.
    pub class: String,
    /// The message.
    #[serde(rename = "stack-trace")]
    pub stack_trace: String,
}

impl AsynchronousOperationResult {
    /// In progress.
    pub fn in_progress() -> Self {
        Self {
            status: QueueStatus {
                id: "IN_PROGRESS".into(),
            },
            operation: None,
        }
    }

    /// Completed at `location`.
    pub fn completed(location: String) -> Self {
        Self {
            status: QueueStatus {
                id: "COMPLETED".into(),
            },
            operation: Some(SavepointOperation::Location { location }),
        }
    }

    /// Failed because of `cause`.
    pub fn failed(cause: String) -> Self {
        Self {
            status: QueueStatus {
                id: "COMPLETED".into(),
            },
            operation: Some(SavepointOperation::Failure {
                failure_cause: FailureCause {
                    class: "mesoflow.CheckpointException".into(),
                    stack_trace: cause,
                },
            }),
        }
    }
}

/// `GET /jobs/{id}/checkpoints` (Flink's `CheckpointingStatistics`, without the summary).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckpointingStatistics {
    /// Counts.
    pub counts: CheckpointCounts,
    /// The latest of each kind.
    pub latest: LatestCheckpoints,
    /// The last few, newest first.
    pub history: Vec<CheckpointStatistics>,
}

/// Flink's `counts`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckpointCounts {
    /// 1 when the job started from a snapshot.
    pub restored: u64,
    /// Triggered.
    pub total: u64,
    /// In progress.
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
}

/// Flink's `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LatestCheckpoints {
    /// The latest completed checkpoint.
    pub completed: Option<CheckpointStatistics>,
    /// The latest completed savepoint.
    pub savepoint: Option<CheckpointStatistics>,
    /// The latest failed one.
    pub failed: Option<CheckpointStatistics>,
    /// The snapshot the job started from.
    pub restored: Option<RestoredCheckpoint>,
}

/// Flink's `latest.restored`, reduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredCheckpoint {
    /// Where it lies.
    pub external_path: String,
}

/// One checkpoint (Flink's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStatistics {
    /// Its id.
    pub id: u64,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub status: String,
    /// A savepoint.
    pub is_savepoint: bool,
    /// Epoch milliseconds.
    pub trigger_timestamp: i64,
    /// Epoch milliseconds.
    pub latest_ack_timestamp: i64,
    /// Bytes its metadata references.
    pub state_size: u64,
    /// Bytes written for it.
    pub checkpointed_size: u64,
    /// Milliseconds from trigger to completion.
    pub end_to_end_duration: u64,
    /// Subtasks to acknowledge.
    pub num_subtasks: u32,
    /// Subtasks that acknowledged.
    pub num_acknowledged_subtasks: u32,
    /// Its directory.
    pub external_path: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// Why the backend refused a request; the server maps each to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// 400: the request is wrong (unknown job name, bad parameter ...).
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such job.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request does not fit the job's state (e.g. cancelling a finished job).
    #[error("{0}")]
    Conflict(String),
    /// 503: the JobManager cannot take it now (e.g. shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure.
    #[error("{0}")]
    Internal(String),
}

impl From<RequestError> for RestError {
    fn from(e: RequestError) -> Self {
        RestError::BadRequest(e.to_string())
    }
}

impl RestError {
    /// The `NotFound` a backend returns for an unknown id.
    pub fn unknown_job(id: &JobId) -> Self {
        RestError::NotFound(format!("job {id} not found"))
    }
}

/// A job's id: 128 bits, written as Flink writes a `JobID` (32 lower-case hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u128);

/// A string that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a job id (32 hex digits)")]
pub struct BadJobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for JobId {
    type Err = BadJobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // from_str_radix alone would take a sign or fewer digits.
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadJobId(s.chars().take(64).collect()));
        }
        u128::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|_| BadJobId(s.into()))
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A job's status, Flink's `JobStatus` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Accepted, not yet scheduled.
    Initializing,
    /// Waiting for slots.
    Created,
    /// An attempt is deployed.
    Running,
    /// Giving up; the last attempt is being cancelled.
    Failing,
    /// Failed for good.
    Failed,
    /// Being cancelled.
    Cancelling,
    /// Cancelled.
    #[serde(rename = "CANCELED")]
    Cancelled,
    /// Every task finished.
    Finished,
    /// Between attempts.
    Restarting,
    /// Suspended (the JobManager lost leadership).
    Suspended,
}

impl JobState {
    /// Whether the job is over (Flink's globally terminal states).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Failed | JobState::Cancelled
        )
    }

    /// The name on the wire, e.g. `CANCELED`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Cancelled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Restarting => "RESTARTING",
            JobState::Suspended => "SUSPENDED",
        }
    }
}

impl From<crate::job_manager::JobStatus> for JobState {
    fn from(s: crate::job_manager::JobStatus) -> Self {
        use crate::job_manager::JobStatus as S;
        match s {
            S::Created => JobState::Created,
            S::Running => JobState::Running,
            S::Restarting => JobState::Restarting,
            S::Failing => JobState::Failing,
            S::Cancelling => JobState::Cancelling,
            S::Finished => JobState::Finished,
            S::Failed => JobState::Failed,
            S::Cancelled => JobState::Cancelled,
        }
    }
}

/// A task's (subtask's) state, Flink's `ExecutionState` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionState {
    /// Not yet scheduled.
    Created,
    /// Waiting for a slot.
    Scheduled,
    /// Being deployed to a TaskManager.
    Deploying,
    /// Initializing (restoring state).
    Initializing,
    /// Running.
    Running,
    /// Finished.
    Finished,
    /// Being cancelled.
    Canceling,
    /// Cancelled.
    Canceled,
    /// Failed.
    Failed,
    /// Being reconciled after a JobManager failover.
    Reconciling,
}

/// `GET /overview` (Flink's `ClusterOverviewWithVersion`, with our version field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOverview {
    /// Registered TaskManagers.
    pub taskmanagers: u32,
    /// Slots over all TaskManagers.
    #[serde(rename = "slots-total")]
    pub slots_total: u32,
    /// Free slots.
    #[serde(rename = "slots-available")]
    pub slots_available: u32,
    /// Jobs not in a terminal state.
    #[serde(rename = "jobs-running")]
    pub jobs_running: u32,
    /// Finished jobs.
    #[serde(rename = "jobs-finished")]
    pub jobs_finished: u32,
    /// Cancelled jobs.
    #[serde(rename = "jobs-cancelled")]
    pub jobs_cancelled: u32,
    /// Failed jobs.
    #[serde(rename = "jobs-failed")]
    pub jobs_failed: u32,
    /// This build's version.
    #[serde(rename = "mesoflow-version")]
    pub version: String,
}

impl Default for ClusterOverview {
    fn default() -> Self {
        Self {
            taskmanagers: 0,
            slots_total: 0,
            slots_available: 0,
            jobs_running: 0,
            jobs_finished: 0,
            jobs_cancelled: 0,
            jobs_failed: 0,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// One configuration entry (Flink's `/jobmanager/config` element).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// e.g. `parallelism.default`.
    pub key: String,
    /// Its value, `******` for secrets.
    pub value: String,
}

/// `GET /jobs` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdsWithStatus {
    /// One entry per job.
    pub jobs: Vec<JobIdWithStatus>,
}

/// One job of `GET /jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdWithStatus {
    /// The job's id.
    pub id: JobId,
    /// Its state.
    pub status: JobState,
}

/// `GET /jobs/overview` body (Flink's `MultipleJobsDetails`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsOverview {
    /// One entry per job.
    pub jobs: Vec<JobOverview>,
}

/// One job of `GET /jobs/overview` (Flink's `JobDetails`). Times are milliseconds since the
/// Unix epoch; `end-time` is -1 while the job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOverview {
    /// The job's id.
    pub jid: JobId,
    /// Display name.
    pub name: String,
    /// State.
    pub state: JobState,
    /// Submission time.
    #[serde(rename = "start-time")]
    pub start_time: i64,
    /// End time, or -1.
    #[serde(rename = "end-time")]
    pub end_time: i64,
    /// Milliseconds from start to end (or to now).
    pub duration: i64,
    /// Last state change.
    #[serde(rename = "last-modification")]
    pub last_modification: i64,
    /// Tasks per state.
    pub tasks: TaskCounts,
}

/// Tasks per execution state, as Flink's overview counts them (lower-case keys and a total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TaskCounts {
    pub total: u32,
    pub created: u32,
    pub scheduled: u32,
    pub deploying: u32,
    pub initializing: u32,
    pub running: u32,
    pub finished: u32,
    pub canceling: u32,
    pub canceled: u32,
    pub failed: u32,
    pub reconciling: u32,
}

impl TaskCounts {
    /// Counts the states of a job's tasks.
    pub fn of(states: impl IntoIterator<Item = ExecutionState>) -> Self {
        let mut c = TaskCounts::default();
        for s in states {
            c.total += 1;
            *match s {
                ExecutionState::Created => &mut c.created,
                ExecutionState::Scheduled => &mut c.scheduled,
                ExecutionState::Deploying => &mut c.deploying,
                ExecutionState::Initializing => &mut c.initializing,
                ExecutionState::Running => &mut c.running,
                ExecutionState::Finished => &mut c.finished,
                ExecutionState::Canceling => &mut c.canceling,
                ExecutionState::Canceled => &mut c.canceled,
                ExecutionState::Failed => &mut c.failed,
                ExecutionState::Reconciling => &mut c.reconciling,
            } += 1;
        }
        c
    }
}

/// `GET /jobs/{id}` (Flink's `JobDetailsInfo`, plus mesoflow's attempt, restarts, failure
/// cause and result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetails {
    /// The job's id.
    pub jid: JobId,
    /// Display name.
    pub name: String,
    /// Whether `stop` with a savepoint is possible (not yet: always false).
    #[serde(rename = "isStoppable")]
    pub is_stoppable: bool,
    /// State.
    pub state: JobState,
    /// Submission time (ms since the epoch).
    #[serde(rename = "start-time")]
    pub start_time: i64,
    /// End time, or -1.
    #[serde(rename = "end-time")]
    pub end_time: i64,
    /// Milliseconds from start to end (or to now).
    pub duration: i64,
    /// Key groups.
    #[serde(rename = "maxParallelism")]
    pub max_parallelism: u32,
    /// Server time of this answer (the server sets it).
    pub now: i64,
    /// When the job entered each state it went through.
    pub timestamps: BTreeMap<JobState, i64>,
    /// One per chain of the physical plan.
    pub vertices: Vec<VertexDetails>,
    /// Vertices per execution state.
    #[serde(rename = "status-counts")]
    pub status_counts: BTreeMap<ExecutionState, u32>,
    /// The current (or next) attempt, from 1.
    pub attempt: u32,
    /// Restarts so far.
    pub restarts: u32,
    /// Why the job failed (set when FAILED, or the last failure while RESTARTING).
    #[serde(
        rename = "failure-cause",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub failure_cause: Option<String>,
    /// Final counters (set when FINISHED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResultInfo>,
}

/// One vertex (operator chain) of [`JobDetails`] (Flink's `JobDetailsVertexInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VertexDetails {
    /// 32 hex digits, stable over attempts.
    pub id: String,
    /// Chained operator names joined with " -> ".
    pub name: String,
    /// Key groups.
    #[serde(rename = "maxParallelism")]
    pub max_parallelism: u32,
    /// Subtasks.
    pub parallelism: u32,
    /// Aggregate state of its subtasks.
    pub status: ExecutionState,
    /// First deployment (ms since the epoch), or -1.
    #[serde(rename = "start-time")]
    pub start_time: i64,
    /// End, or -1.
    #[serde(rename = "end-time")]
    pub end_time: i64,
    /// Milliseconds, or -1.
    pub duration: i64,
    /// Subtasks per execution state.
    pub tasks: BTreeMap<ExecutionState, u32>,
    /// I/O counters.
    pub metrics: VertexIoMetrics,
}

/// A vertex's I/O counters (Flink's `IOMetricsInfo`); `*-complete` says the value is final.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct VertexIoMetrics {
    /// Bytes read (0: not measured).
    #[serde(rename = "read-bytes")]
    pub read_bytes: u64,
    #[serde(rename = "read-bytes-complete")]
    #[allow(missing_docs)]
    pub read_bytes_complete: bool,
    /// Bytes written (0: not measured).
    #[serde(rename = "write-bytes")]
    pub write_bytes: u64,
    #[serde(rename = "write-bytes-complete")]
    #[allow(missing_docs)]
    pub write_bytes_complete: bool,
    /// Records read.
    #[serde(rename = "read-records")]
    pub read_records: u64,
    #[serde(rename = "read-records-complete")]
    #[allow(missing_docs)]
    pub read_records_complete: bool,
    /// Records written.
    #[serde(rename = "write-records")]
    pub write_records: u64,
    #[serde(rename = "write-records-complete")]
    #[allow(missing_docs)]
    pub write_records_complete: bool,
    /// Milliseconds back-pressured.
    #[serde(rename = "accumulated-backpressured-time")]
    pub accumulated_backpressured_time: u64,
    /// Milliseconds idle.
    #[serde(rename = "accumulated-idle-time")]
    pub accumulated_idle_time: u64,
    /// Milliseconds busy.
    #[serde(rename = "accumulated-busy-time")]
    pub accumulated_busy_time: f64,
}

/// A finished job's final counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResultInfo {
    /// Records read by sources.
    #[serde(rename = "records-in")]
    pub records_in: u64,
    /// Records written by sinks.
    #[serde(rename = "records-out")]
    pub records_out: u64,
    /// The sinks' checksum, 16 lower-case hex digits (as `records=<N> checksum=<hex>`).
    pub checksum: String,
    /// Malformed input records skipped.
    pub skipped: u64,
}

impl JobResultInfo {
    /// Formats the checksum the way the checksum sink prints it.
    pub fn new(records_in: u64, records_out: u64, checksum: u64, skipped: u64) -> Self {
        Self {
            records_in,
            records_out,
            checksum: format!("{checksum:016x}"),
            skipped,
        }
    }

    /// The checksum as a number; `None` when the field is malformed.
    pub fn checksum_value(&self) -> Option<u64> {
        u64::from_str_radix(&self.checksum, 16).ok()
    }
}

/// `GET /taskmanagers` body (Flink's `TaskManagersInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagersInfo {
    /// One per registered TaskManager.
    pub taskmanagers: Vec<TaskManagerInfo>,
}

/// One TaskManager (Flink's `TaskManagerInfo`, the fields we have).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerInfo {
    /// Its resource id.
    pub id: String,
    /// Its control address.
    pub path: String,
    /// The data-plane (QUIC) port.
    #[serde(rename = "dataPort")]
    pub data_port: u16,
    /// Like Flink: the time of the last heartbeat, ms since the epoch (despite the name).
    #[serde(rename = "timeSinceLastHeartbeat")]
    pub time_since_last_heartbeat: i64,
    /// Slots it offers.
    #[serde(rename = "slotsNumber")]
    pub slots_number: u32,
    /// Slots not in use.
    #[serde(rename = "freeSlots")]
    pub free_slots: u32,
    /// What the process runs on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
}

/// A TaskManager's machine (Flink's `HardwareDescription`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// Cores (Mesos cpus, rounded up).
    #[serde(rename = "cpuCores")]
    pub cpu_cores: u32,
    /// Bytes of memory granted.
    #[serde(rename = "physicalMemory")]
    pub physical_memory: u64,
    /// Bytes free.
    #[serde(rename = "freeMemory")]
    pub free_memory: u64,
    /// Bytes of managed memory.
    #[serde(rename = "managedMemory")]
    pub managed_memory: u64,
}

/// `POST /jobs` answer: Flink's run response (`jobid`) and submit response (`jobUrl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The new job's id.
    pub jobid: JobId,
    /// Where to follow it.
    #[serde(rename = "jobUrl")]
    pub job_url: String,
}

/// Flink's error body: `{"errors": ["message"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Messages for the user.
    pub errors: Vec<String>,
}

/// What `GET /metrics` exposes, as plain numbers; [`crate::rest::metrics`] renders it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterMetrics {
    /// Registered TaskManagers.
    pub taskmanagers_registered: u64,
    /// Slots over all TaskManagers.
    pub slots_total: u64,
    /// Free slots.
    pub slots_available: u64,
    /// Jobs per state (states with no job may be left out).
    pub jobs: BTreeMap<JobState, u64>,
    /// Mesos framework counters since the scheduler started.
    pub mesos: MesosCounters,
    /// Downloads of the executor from the artifact server, when it runs.
    pub artifact_fetches: Option<u64>,
    /// One row per vertex of every job still running or kept.
    pub vertices: Vec<VertexMetrics>,
}

/// Counters of the Mesos ResourceManager driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MesosCounters {
    /// Offers received.
    pub offers_received: u64,
    /// Offers declined.
    pub offers_declined: u64,
    /// Tasks that ended FAILED/LOST/ERROR ...
    pub tasks_failed: u64,
    /// Worker tasks launched.
    pub workers_launched: u64,
}

/// One vertex's counters for Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct VertexMetrics {
    /// The job.
    pub job_id: JobId,
    /// Its display name.
    pub job_name: String,
    /// The vertex (chain) name.
    pub vertex: String,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Share of time back-pressured in [0, 1], when the backend measures it.
    pub backpressure: Option<f64>,
}
