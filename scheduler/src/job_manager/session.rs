//! The session cluster's async shell: one control endpoint, one ResourceManager driver, a
//! timer, and the [`Dispatcher`] behind a lock that the REST API reads and submits through.
//!
//! The loop only moves events in and actions out. Submissions and cancellations take the lock,
//! call the dispatcher and wake the loop, which carries out what they caused; reads (the REST
//! API's views) take the lock briefly and copy.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesoflow_dataplane::control::{ControlEvent, ControlServer};
use mesoflow_proto::control::{JobManagerMessage, ReleaseTaskManager, job_manager_message};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::checkpoints::{CheckpointStats, Restore, SavepointStatus, decode_metadata, join};
use super::dispatcher::{
    CancelError, DispatchError, Dispatcher, DispatcherAction, JobEvent, JobView,
    SavepointRequestError, WorkerView,
};
use super::master::JobSubmission;
use crate::resource_manager::{ResourceManagerDriver, WorkerEvent, WorkerId};

/// Something that happened in the cluster, for whoever follows it (the log, a local CLI run).
#[derive(Debug, Clone, PartialEq)]
pub enum SessionNotice {
    /// A job's milestone.
    Job {
        /// The job.
        job_id: u128,
        /// What happened.
        event: JobEvent,
    },
    /// The driver started a TaskManager (it still has to register).
    WorkerStarted {
        /// Its id.
        id: WorkerId,
        /// Its process id, when the driver knows it.
        pid: Option<u32>,
    },
    /// The driver saw a TaskManager's process or task end (released ones included).
    WorkerExited {
        /// Its id.
        id: WorkerId,
        /// How it ended, as the driver describes it.
        reason: String,
    },
}

/// The cluster's shared state: the dispatcher, and how to wake its loop.
struct Shared {
    dispatcher: Mutex<Dispatcher>,
    wake: Notify,
    notices: broadcast::Sender<SessionNotice>,
    /// Wall-clock time of `anchor`, to show `Instant`s as epoch milliseconds.
    anchor: (Instant, SystemTime),
}

/// A handle on a running session cluster: submit, cancel, look.
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle").finish_non_exhaustive()
    }
}

impl SessionHandle {
    fn lock(&self) -> MutexGuard<'_, Dispatcher> {
        self.shared
            .dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Submits a job (see [`Dispatcher::submit`]).
    pub fn submit(
        &self,
        job: JobSubmission,
        name: Option<String>,
        vertex_names: Vec<String>,
        workers: Option<u32>,
    ) -> Result<(), DispatchError> {
        let result = self.lock().submit(
            job,
            name,
            vertex_names,
            workers,
            rand::random(),
            Instant::now(),
        );
        self.shared.wake.notify_one();
        result
    }

    /// Cancels a job.
    pub fn cancel(&self, job_id: u128) -> Result<(), CancelError> {
        let result = self.lock().cancel(job_id, Instant::now());
        self.shared.wake.notify_one();
        result
    }

    /// Takes a savepoint of a job (`stop`: then stops it); returns the request id.
    pub fn trigger_savepoint(
        &self,
        job_id: u128,
        target: Option<&str>,
        stop: bool,
    ) -> Result<String, SavepointRequestError> {
        let result = self
            .lock()
            .trigger_savepoint(job_id, target, stop, Instant::now());
        self.shared.wake.notify_one();
        result
    }

    /// A savepoint request's status.
    pub fn savepoint_status(&self, job_id: u128, request_id: &str) -> Option<SavepointStatus> {
        self.lock().savepoint_status(job_id, request_id)
    }

    /// A job's checkpoint statistics.
    pub fn checkpoint_stats(&self, job_id: u128) -> Option<CheckpointStats> {
        self.lock().checkpoint_stats(job_id, Instant::now())
    }

    /// Every retained job.
    pub fn jobs(&self) -> Vec<JobView> {
        self.lock().jobs()
    }

    /// One job.
    pub fn job(&self, job_id: u128) -> Option<JobView> {
        self.lock().job(job_id)
    }

    /// The TaskManager pool.
    pub fn workers(&self) -> Vec<WorkerView> {
        self.lock().workers()
    }

    /// Registered TaskManagers and their slots.
    pub fn registered(&self) -> (usize, u32) {
        self.lock().registered()
    }

    /// Job milestones and TaskManager starts and exits, from now on.
    pub fn notices(&self) -> broadcast::Receiver<SessionNotice> {
        self.shared.notices.subscribe()
    }

    /// An `Instant` of this cluster as milliseconds since the Unix epoch.
    pub fn epoch_millis(&self, at: Instant) -> u64 {
        let (anchor, wall) = self.shared.anchor;
        let wall = if at >= anchor {
            wall + (at - anchor)
        } else {
            wall - (anchor - at)
        };
        wall.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// What the loop needs besides the dispatcher.
pub struct SessionIo<D> {
    /// The control endpoint TaskManagers register with.
    pub server: ControlServer,
    /// Starts and stops TaskManagers.
    pub driver: D,
    /// What the driver reports.
    pub worker_events: mpsc::UnboundedReceiver<WorkerEvent>,
    /// Stops the cluster when triggered: jobs are cancelled, TaskManagers released.
    pub shutdown: CancellationToken,
    /// How long a stop waits for jobs to cancel and TaskManagers to go.
    pub shutdown_grace: Duration,
}

/// Starts the session cluster's loop on the current tokio runtime.
pub fn start<D: ResourceManagerDriver + 'static>(
    dispatcher: Dispatcher,
    io: SessionIo<D>,
) -> (SessionHandle, tokio::task::JoinHandle<D>) {
    let (notices, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        dispatcher: Mutex::new(dispatcher),
        wake: Notify::new(),
        notices,
        anchor: (Instant::now(), SystemTime::now()),
    });
    let handle = SessionHandle {
        shared: shared.clone(),
    };
    let task = tokio::spawn(run(SessionHandle { shared }, io));
    (handle, task)
}

/// The loop (see the module docs); returns the driver once the cluster has stopped, so its
/// owner can shut it down (for Mesos: kill what is left and tear the framework down).
async fn run<D: ResourceManagerDriver>(handle: SessionHandle, mut io: SessionIo<D>) -> D {
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    loop {
        let actions: Vec<DispatcherAction> = {
            let mut d = handle.lock();
            std::iter::from_fn(|| d.poll_action()).collect()
        };
        for action in actions {
            execute(&handle, &mut io, action);
        }
        let (timeout, stopped) = {
            let d = handle.lock();
            (d.poll_timeout(), d.is_stopped())
        };
        if stopped {
            tracing::info!("session cluster stopped");
            return io.driver;
        }
        if stop_deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
            tracing::warn!("stopping: the grace period ended before every TaskManager was gone");
            return io.driver;
        }
        let wake_at = match (timeout, stop_deadline) {
            (Some(t), Some(d)) => Some(tokio::time::Instant::from_std(t).min(d)),
            (Some(t), None) => Some(tokio::time::Instant::from_std(t)),
            (None, d) => d,
        };
        let timer = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = io.server.next_event() => {
                let now = Instant::now();
                match event {
                    Some(ControlEvent::Registered { task_manager_id, register, .. }) => {
                        let id = WorkerId(task_manager_id.clone());
                        let result = handle.lock().worker_registered(&id, register.slots, &register.data_endpoint, now);
                        if let Err(e) = result {
                            tracing::warn!(worker = %id, error = %e, "refused a TaskManager");
                            io.server.disconnect(&task_manager_id, &e.to_string());
                        }
                    }
                    Some(ControlEvent::Message { task_manager_id, message }) => {
                        handle.lock().message(&WorkerId(task_manager_id), message, now);
                    }
                    Some(ControlEvent::Disconnected { task_manager_id, reason }) => {
                        let reason = format!("control connection lost: {reason}");
                        handle.lock().worker_lost(&WorkerId(task_manager_id), &reason, now);
                    }
                    None => {
                        tracing::error!("the control endpoint stopped; stopping the cluster");
                        return io.driver;
                    }
                }
            }
            Some(event) = io.worker_events.recv() => {
                let now = Instant::now();
                match event {
                    WorkerEvent::Started { id, pid } => {
                        tracing::info!(worker = %id, ?pid, "TaskManager started");
                        handle.lock().worker_started(&id);
                        let _ = handle.shared.notices.send(SessionNotice::WorkerStarted { id, pid });
                    }
                    WorkerEvent::Exited { id, reason } => {
                        tracing::info!(worker = %id, %reason, "TaskManager exited");
                        handle.lock().worker_lost(&id, &reason, now);
                        let _ = handle.shared.notices.send(SessionNotice::WorkerExited { id, reason });
                    }
                }
            }
            () = handle.shared.wake.notified() => {}
            () = timer => handle.lock().tick(Instant::now()),
            () = io.shutdown.cancelled(), if stop_deadline.is_none() => {
                tracing::info!("stopping the session cluster: cancelling jobs, releasing TaskManagers");
                stop_deadline = Some(tokio::time::Instant::now() + io.shutdown_grace);
                handle.lock().stop(Instant::now());
            }
        }
    }
}

fn execute<D: ResourceManagerDriver>(
    handle: &SessionHandle,
    io: &mut SessionIo<D>,
    action: DispatcherAction,
) {
    match action {
        DispatcherAction::RequestWorker { id, spec } => {
            if let Err(e) = io.driver.request_worker(&id, &spec) {
                tracing::error!(worker = %id, error = %e, "cannot start a TaskManager");
                handle
                    .lock()
                    .worker_lost(&id, &e.to_string(), Instant::now());
            }
        }
        DispatcherAction::ReleaseWorker { id } => {
            let release = JobManagerMessage {
                kind: Some(job_manager_message::Kind::Release(ReleaseTaskManager {
                    reason: "released by the session cluster".into(),
                })),
            };
            let _ = io.server.send(id.as_str(), release);
            io.driver.release_worker(&id);
        }
        DispatcherAction::Send { worker, message } => {
            if let Err(e) = io.server.send(worker.as_str(), *message) {
                handle.lock().worker_lost(
                    &worker,
                    &format!("cannot reach it: {e}"),
                    Instant::now(),
                );
            }
        }
        DispatcherAction::WriteMetadata {
            job_id,
            checkpoint_id,
            root,
            path,
            bytes,
        } => {
            // Off the loop: storage may be slow (HDFS); the result comes back under the lock.
            let handle = handle.clone();
            tokio::spawn(async move {
                let result = async {
                    let storage = mesoflow_dataplane::checkpoint::storage::open(&root)?;
                    storage.write(&path, bytes).await
                }
                .await
                .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::warn!(checkpoint = checkpoint_id, %root, %path, error = %e, "cannot write checkpoint metadata");
                }
                handle
                    .lock()
                    .metadata_written(job_id, checkpoint_id, result, Instant::now());
                handle.shared.wake.notify_one();
            });
        }
        DispatcherAction::DeleteFiles { root, paths } => {
            tokio::spawn(async move {
                let storage = match mesoflow_dataplane::checkpoint::storage::open(&root) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%root, error = %e, "cannot delete checkpoint files");
                        return;
                    }
                };
                for path in &paths {
                    if let Err(e) = storage.delete(path).await {
                        tracing::warn!(%root, %path, error = %e, "cannot delete a checkpoint file");
                    }
                }
            });
        }
        DispatcherAction::DeleteDir { root, path } => {
            tokio::spawn(async move {
                let result = async {
                    let storage = mesoflow_dataplane::checkpoint::storage::open(&root)?;
                    storage.delete_dir(&path).await
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(%root, %path, error = %e, "cannot delete a checkpoint directory");
                }
            });
        }
        DispatcherAction::Job { job_id, event } => {
            match &event {
                JobEvent::Status(status) => {
                    tracing::info!(job = %format_args!("{job_id:032x}"), ?status, "job status");
                }
                JobEvent::Restarting {
                    attempt,
                    delay,
                    cause,
                } => {
                    tracing::warn!(job = %format_args!("{job_id:032x}"), attempt, ?delay, %cause, "job restarting");
                }
                JobEvent::SavepointCompleted {
                    request_id,
                    location,
                } => {
                    tracing::info!(job = %format_args!("{job_id:032x}"), request = %request_id, %location, "savepoint completed");
                }
                JobEvent::SavepointFailed { request_id, cause } => {
                    tracing::warn!(job = %format_args!("{job_id:032x}"), request = %request_id, %cause, "savepoint failed");
                }
            }
            let _ = handle
                .shared
                .notices
                .send(SessionNotice::Job { job_id, event });
        }
    }
}

/// The wall clock in epoch milliseconds (a submission's anchor for checkpoint timestamps).
pub fn epoch_millis_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why a snapshot to restore cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The storage refused (unsupported URI, missing `_metadata`, I/O).
    #[error("cannot read the savepoint {path}: {source}")]
    Read {
        /// The savepoint directory.
        path: String,
        /// Why.
        source: mesoflow_dataplane::checkpoint::storage::StorageError,
    },
    /// Not metadata of this build.
    #[error("cannot use the savepoint {path}: {source}")]
    Metadata {
        /// The savepoint directory.
        path: String,
        /// Why.
        source: super::checkpoints::MetadataError,
    },
    /// It holds state of operators this job does not have.
    #[error(
        "the savepoint {path} is not a snapshot of this job: it holds state of operator(s) {unknown:?} that the job does not have"
    )]
    ForeignOperators {
        /// The savepoint directory.
        path: String,
        /// Operator ids not in the job.
        unknown: Vec<String>,
    },
}

/// Reads and checks the snapshot at `path` (a savepoint or retained checkpoint directory,
/// holding `_metadata`) for a job with these operator ids.
pub async fn read_restore(path: &str, operator_ids: &[String]) -> Result<Restore, RestoreError> {
    let path = path.trim_end_matches('/').to_owned();
    let read = async {
        let storage = mesoflow_dataplane::checkpoint::storage::open(&path)?;
        storage.read(super::checkpoints::METADATA_FILE).await
    };
    let bytes = read.await.map_err(|source| RestoreError::Read {
        path: join(&path, super::checkpoints::METADATA_FILE),
        source,
    })?;
    let metadata = decode_metadata(&bytes).map_err(|source| RestoreError::Metadata {
        path: path.clone(),
        source,
    })?;
    check_operators(&path, &metadata, operator_ids)?;
    Ok(Restore {
        root: path,
        metadata,
    })
}

/// Refuses a snapshot naming operators the job does not have (a savepoint of another job).
pub fn check_operators(
    path: &str,
    metadata: &mesoflow_proto::checkpoint::CheckpointMetadata,
    operator_ids: &[String],
) -> Result<(), RestoreError> {
    let unknown: Vec<String> = metadata
        .operators
        .iter()
        .map(|o| o.operator_id.clone())
        .filter(|id| !operator_ids.contains(id))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(RestoreError::ForeignOperators {
            path: path.to_owned(),
            unknown,
        })
    }
}
