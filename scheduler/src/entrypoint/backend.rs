//! The REST API's view of the session cluster: dispatcher views turned into Flink's JSON
//! shapes, submissions prepared and handed to the dispatcher.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use mesoflow_dataplane::checksum::fnv1a64;

use crate::artifact_server::ArtifactServer;
use crate::config::Configuration;
use crate::job_manager::SavepointRequestError;
use crate::job_manager::checkpoints::{
    CheckpointRecord, CheckpointStats, Restore, SavepointError, SavepointStatus,
};
use crate::job_manager::request::{ExecutionDefaults, PreparedJob, prepare};
use crate::job_manager::session::{SessionHandle, read_restore};
use crate::job_manager::{
    CancelError, DispatchError, JobStatus, JobSubmission, JobView, PoolState, VertexView,
};
use crate::resource_manager::mesos::MesosMetrics;
use crate::rest::api::{
    AsynchronousOperationResult, BackendFuture, CheckpointCounts, CheckpointStatistics,
    CheckpointingStatistics, ClusterMetrics, ClusterOverview, ConfigEntry, ExecutionState,
    JobDetails, JobId, JobOverview, JobRequest, JobResultInfo, JobState, LatestCheckpoints,
    MesosCounters, RestBackend, RestError, RestoredCheckpoint, TaskCounts, TaskManagerInfo,
    VertexDetails, VertexIoMetrics, VertexMetrics,
};

/// Reads the Mesos driver's counters while the session loop owns the driver.
pub type MesosMetricsSource = Box<dyn Fn() -> MesosMetrics + Send + Sync>;

/// Counters that live outside the dispatcher.
pub struct MetricsSources {
    /// The Mesos driver's offers and tasks (none when standalone).
    pub mesos: Option<MesosMetricsSource>,
    /// The artifact server's downloads (none when standalone or with a user-given URI).
    pub artifact_server: Option<Arc<ArtifactServer>>,
}

/// The REST backend over a running session cluster.
pub struct SessionBackend {
    session: SessionHandle,
    defaults: ExecutionDefaults,
    checkpointing: crate::job_manager::checkpoints::CheckpointSettings,
    config: Vec<ConfigEntry>,
    metrics: MetricsSources,
}

impl SessionBackend {
    /// A backend for `session`, configured by `config`.
    pub fn new(session: SessionHandle, config: &Configuration, metrics: MetricsSources) -> Self {
        Self {
            session,
            defaults: ExecutionDefaults {
                parallelism: config.execution.parallelism,
                max_parallelism: config.execution.max_parallelism,
                runtime: config.execution.runtime.clone(),
            },
            checkpointing: config.checkpointing.clone(),
            config: config
                .entries()
                .into_iter()
                .map(|e| ConfigEntry {
                    key: e.key.to_owned(),
                    value: e.value,
                })
                .collect(),
            metrics,
        }
    }

    /// Hands a prepared job (and the snapshot it starts from) to the dispatcher.
    fn submit_prepared(
        &self,
        prepared: PreparedJob,
        initial_restore: Option<Restore>,
    ) -> Result<JobId, RestError> {
        let job_id: u128 = rand::random();
        let submission = JobSubmission {
            job_id,
            definition: prepared.definition,
            chains: prepared.chains,
            source_chains: prepared.source_chains,
            checkpointing: self.checkpointing.clone(),
            initial_restore,
            submitted_at_ms: crate::job_manager::session::epoch_millis_now(),
        };
        self.session
            .submit(
                submission,
                Some(prepared.display_name),
                prepared.vertex_names,
                None,
            )
            .map_err(|e| match e {
                DispatchError::Stopping => RestError::Unavailable(e.to_string()),
                DispatchError::Submit(e) => RestError::BadRequest(e.to_string()),
                DispatchError::Duplicate(_) => RestError::Internal(e.to_string()),
            })?;
        Ok(JobId(job_id))
    }

    fn millis(&self, at: Instant) -> i64 {
        self.session.epoch_millis(at) as i64
    }

    /// Start, end (-1 while running) and duration of a job, in epoch milliseconds.
    fn times(&self, job: &JobView) -> (i64, i64, i64) {
        let start = self.millis(job.submitted);
        let end = job.ended.map_or(-1, |t| self.millis(t));
        let until = if end >= 0 {
            end
        } else {
            self.millis(Instant::now())
        };
        (start, end, (until - start).max(0))
    }

    fn overview_of(&self, job: &JobView) -> JobOverview {
        let (start, end, duration) = self.times(job);
        JobOverview {
            jid: JobId(job.id),
            name: job.name.clone(),
            state: JobState::from(job.status),
            start_time: start,
            end_time: end,
            duration,
            last_modification: if end >= 0 { end } else { start },
            tasks: TaskCounts::of(job.vertices.iter().flat_map(subtask_states)),
        }
    }
}

impl RestBackend for SessionBackend {
    fn overview(&self) -> ClusterOverview {
        let workers = self.session.workers();
        let jobs = self.session.jobs();
        let count = |s: JobStatus| jobs.iter().filter(|j| j.status == s).count() as u32;
        ClusterOverview {
            taskmanagers: workers
                .iter()
                .filter(|w| w.state == PoolState::Registered)
                .count() as u32,
            slots_total: workers.iter().map(|w| w.slots).sum(),
            slots_available: workers.iter().map(|w| w.slots - w.slots_used).sum(),
            jobs_running: jobs.iter().filter(|j| !j.status.is_terminal()).count() as u32,
            jobs_finished: count(JobStatus::Finished),
            jobs_cancelled: count(JobStatus::Cancelled),
            jobs_failed: count(JobStatus::Failed),
            ..ClusterOverview::default()
        }
    }

    fn config(&self) -> Vec<ConfigEntry> {
        self.config.clone()
    }

    fn jobs(&self) -> Vec<JobOverview> {
        self.session
            .jobs()
            .iter()
            .map(|j| self.overview_of(j))
            .collect()
    }

    fn job(&self, id: &JobId) -> Option<JobDetails> {
        let job = self.session.job(id.0)?;
        let (start, end, duration) = self.times(&job);
        let state = JobState::from(job.status);
        let mut status_counts: BTreeMap<ExecutionState, u32> = BTreeMap::new();
        let vertices = job
            .vertices
            .iter()
            .enumerate()
            .map(|(chain, v)| {
                let mut tasks: BTreeMap<ExecutionState, u32> = BTreeMap::new();
                for s in subtask_states(v) {
                    *tasks.entry(s).or_default() += 1;
                    *status_counts.entry(s).or_default() += 1;
                }
                VertexDetails {
                    id: vertex_id(&job.name, chain),
                    name: v.name.clone(),
                    max_parallelism: job.max_parallelism,
                    parallelism: v.parallelism,
                    status: vertex_state(&tasks, job.status),
                    start_time: start,
                    end_time: end,
                    duration,
                    tasks,
                    metrics: VertexIoMetrics {
                        read_records: v.records_in,
                        read_records_complete: job.status.is_terminal(),
                        write_records: v.records_out,
                        write_records_complete: job.status.is_terminal(),
                        ..VertexIoMetrics::default()
                    },
                }
            })
            .collect();
        let mut timestamps = BTreeMap::from([(JobState::Created, start)]);
        if end >= 0 {
            timestamps.insert(state, end);
        }
        Some(JobDetails {
            jid: JobId(job.id),
            name: job.name.clone(),
            is_stoppable: false,
            state,
            start_time: start,
            end_time: end,
            duration,
            max_parallelism: job.max_parallelism,
            now: self.millis(Instant::now()),
            timestamps,
            vertices,
            status_counts,
            attempt: job.attempt,
            restarts: job.restarts,
            failure_cause: job.failure.clone(),
            result: job
                .outcome
                .map(|o| JobResultInfo::new(o.records_in, o.records_out, o.checksum, o.skipped)),
        })
    }

    fn task_managers(&self) -> Vec<TaskManagerInfo> {
        let now = Instant::now();
        self.session
            .workers()
            .into_iter()
            .map(|w| TaskManagerInfo {
                id: w.id.0.clone(),
                path: w.data_endpoint.clone(),
                data_port: w
                    .data_endpoint
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0),
                time_since_last_heartbeat: now.saturating_duration_since(w.last_seen).as_millis()
                    as i64,
                slots_number: w.slots,
                free_slots: w.slots - w.slots_used,
                hardware: None,
            })
            .collect()
    }

    fn metrics(&self) -> ClusterMetrics {
        let (registered, slots) = self.session.registered();
        let workers = self.session.workers();
        let jobs = self.session.jobs();
        let mut by_state: BTreeMap<JobState, u64> = BTreeMap::new();
        for j in &jobs {
            *by_state.entry(JobState::from(j.status)).or_default() += 1;
        }
        let mesos = self
            .metrics
            .mesos
            .as_ref()
            .map(|m| m())
            .map(|m| MesosCounters {
                offers_received: m.offers_received,
                offers_declined: m.offers_declined,
                tasks_failed: m.tasks_failed,
                workers_launched: m.workers_launched,
            });
        ClusterMetrics {
            taskmanagers_registered: registered as u64,
            slots_total: u64::from(slots),
            slots_available: workers
                .iter()
                .filter(|w| w.state == PoolState::Registered)
                .map(|w| u64::from(w.slots - w.slots_used))
                .sum(),
            jobs: by_state,
            mesos: mesos.unwrap_or_default(),
            artifact_fetches: self.metrics.artifact_server.as_ref().map(|a| a.fetches()),
            vertices: jobs
                .iter()
                .flat_map(|j| {
                    j.vertices.iter().map(|v| VertexMetrics {
                        job_id: JobId(j.id),
                        job_name: j.name.clone(),
                        vertex: v.name.clone(),
                        records_in: v.records_in,
                        records_out: v.records_out,
                        backpressure: None,
                    })
                })
                .collect(),
        }
    }

    fn submit(&self, request: JobRequest) -> Result<JobId, RestError> {
        if request.savepoint_path.is_some() {
            return Err(RestError::Internal(
                "a submission with savepointPath must go through submit_async".into(),
            ));
        }
        let prepared = prepare(&request, &self.defaults)?;
        self.submit_prepared(prepared, None)
    }

    fn submit_async(&self, request: JobRequest) -> BackendFuture<'_, Result<JobId, RestError>> {
        Box::pin(async move {
            let prepared = prepare(&request, &self.defaults)?;
            let restore = match &request.savepoint_path {
                Some(path) => Some(
                    read_restore(path, &prepared.operator_ids)
                        .await
                        .map_err(|e| RestError::BadRequest(e.to_string()))?,
                ),
                None => None,
            };
            self.submit_prepared(prepared, restore)
        })
    }

    fn trigger_savepoint(
        &self,
        id: &JobId,
        target_directory: Option<String>,
        stop: bool,
    ) -> Result<String, RestError> {
        self.session
            .trigger_savepoint(id.0, target_directory.as_deref(), stop)
            .map_err(|e| match e {
                SavepointRequestError::Unknown(_) => RestError::unknown_job(id),
                SavepointRequestError::Refused(SavepointError::NoTargetDirectory) => {
                    RestError::BadRequest(e.to_string())
                }
                SavepointRequestError::Refused(_) => RestError::Conflict(e.to_string()),
            })
    }

    fn savepoint_status(
        &self,
        id: &JobId,
        trigger_id: &str,
    ) -> Result<AsynchronousOperationResult, RestError> {
        if self.session.job(id.0).is_none() {
            return Err(RestError::unknown_job(id));
        }
        match self.session.savepoint_status(id.0, trigger_id) {
            None => Err(RestError::NotFound(format!(
                "savepoint trigger {trigger_id} of job {id} not found"
            ))),
            Some(SavepointStatus::InProgress) => Ok(AsynchronousOperationResult::in_progress()),
            Some(SavepointStatus::Completed { location }) => {
                Ok(AsynchronousOperationResult::completed(location))
            }
            Some(SavepointStatus::Failed { cause }) => {
                Ok(AsynchronousOperationResult::failed(cause))
            }
        }
    }

    fn checkpoints(&self, id: &JobId) -> Option<CheckpointingStatistics> {
        let stats = self.session.checkpoint_stats(id.0)?;
        Some(checkpointing_statistics(stats))
    }

    fn cancel(&self, id: &JobId) -> Result<(), RestError> {
        self.session.cancel(id.0).map_err(|e| match e {
            CancelError::Unknown(_) => RestError::unknown_job(id),
            CancelError::Terminal { .. } => RestError::Conflict(e.to_string()),
        })
    }
}

/// The states of a vertex's subtasks; those not deployed yet count as CREATED.
fn subtask_states(v: &VertexView) -> Vec<ExecutionState> {
    let mut states = Vec::with_capacity(v.parallelism as usize);
    for (name, &n) in &v.states {
        let state = match name.as_str() {
            "SUBTASK_STATE_DEPLOYING" => ExecutionState::Deploying,
            "SUBTASK_STATE_RUNNING" => ExecutionState::Running,
            "SUBTASK_STATE_FINISHED" => ExecutionState::Finished,
            "SUBTASK_STATE_CANCELED" => ExecutionState::Canceled,
            "SUBTASK_STATE_FAILED" => ExecutionState::Failed,
            _ => ExecutionState::Created,
        };
        states.extend(std::iter::repeat_n(state, n as usize));
    }
    let missing = (v.parallelism as usize).saturating_sub(states.len());
    states.extend(std::iter::repeat_n(ExecutionState::Created, missing));
    states
}

/// A vertex's state from its subtasks' (Flink's aggregation, simplified).
fn vertex_state(tasks: &BTreeMap<ExecutionState, u32>, job: JobStatus) -> ExecutionState {
    let has = |s: ExecutionState| tasks.get(&s).is_some_and(|&n| n > 0);
    let total: u32 = tasks.values().sum();
    if has(ExecutionState::Failed) {
        ExecutionState::Failed
    } else if total > 0 && tasks.get(&ExecutionState::Finished) == Some(&total) {
        ExecutionState::Finished
    } else if job == JobStatus::Cancelled || has(ExecutionState::Canceled) {
        ExecutionState::Canceled
    } else if has(ExecutionState::Running) {
        ExecutionState::Running
    } else if has(ExecutionState::Deploying) {
        ExecutionState::Deploying
    } else {
        ExecutionState::Created
    }
}

/// A stable id for a job's vertex (Flink's are 32 hex digits).
fn vertex_id(job_name: &str, chain: usize) -> String {
    format!("{:016x}{:016x}", fnv1a64(job_name.as_bytes()), chain)
}

/// The coordinator's statistics in Flink's shape.
fn checkpointing_statistics(stats: CheckpointStats) -> CheckpointingStatistics {
    let one = |r: CheckpointRecord| CheckpointStatistics {
        id: r.id,
        status: serde_json::to_value(r.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        is_savepoint: r.savepoint,
        trigger_timestamp: r.trigger_timestamp_ms,
        latest_ack_timestamp: r.latest_ack_timestamp_ms,
        state_size: r.state_size,
        checkpointed_size: r.bytes_written,
        end_to_end_duration: r.duration_ms,
        num_subtasks: r.num_subtasks,
        num_acknowledged_subtasks: r.num_acknowledged,
        external_path: r.external_path,
        failure_message: r.failure,
    };
    CheckpointingStatistics {
        counts: CheckpointCounts {
            restored: u64::from(stats.restored_from.is_some()),
            total: stats.triggered,
            in_progress: stats.in_progress,
            completed: stats.completed,
            failed: stats.failed,
        },
        latest: LatestCheckpoints {
            completed: stats.latest_completed.map(one),
            savepoint: stats.latest_savepoint.map(one),
            failed: stats.latest_failed.map(one),
            restored: stats
                .restored_from
                .map(|external_path| RestoredCheckpoint { external_path }),
        },
        history: stats.history.into_iter().map(one).collect(),
    }
}
