//! The JobManager's async shell: feeds the [`JobMaster`] what the control channel, the
//! ResourceManager driver and the clock say, and carries out what it asks for. Nothing clever
//! happens here; every decision is the state machine's.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mesoflow_dataplane::control::{ControlEvent, ControlServer};
use mesoflow_proto::control::{
    JobManagerMessage, ReleaseTaskManager, job_manager_message, task_manager_message,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Action, JobMaster, JobOutcome};
use crate::resource_manager::{ResourceManagerDriver, WorkerEvent, WorkerId};

/// What a running job looks like from outside (the progress line, later the REST API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStatus {
    /// TaskManagers registered now.
    pub task_managers: usize,
    /// Their slots.
    pub slots: u32,
    /// Current attempt.
    pub attempt: u32,
    /// Records read by sources in the current attempt (from heartbeats).
    pub records_in: u64,
    /// Records written by sinks in the current attempt (from heartbeats).
    pub records_out: u64,
}

/// Something the user should hear about while the job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A TaskManager process started.
    TaskManagerStarted {
        /// Its id.
        id: String,
        /// Its process id, when known.
        pid: Option<u32>,
    },
    /// A TaskManager was lost.
    TaskManagerLost {
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The job restarts.
    Restarting {
        /// The attempt that will run.
        attempt: u32,
        /// After this delay.
        delay: Duration,
        /// Because of this.
        cause: String,
    },
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every subtask finished.
    Finished(JobOutcome),
    /// The restart strategy gave up.
    Failed(String),
    /// Cancelled on request.
    Cancelled,
}

/// The inputs of a run besides the state machine.
pub struct ShellIo<D> {
    /// The control channel's server.
    pub server: ControlServer,
    /// The ResourceManager driver.
    pub driver: D,
    /// What the driver reports.
    pub worker_events: mpsc::UnboundedReceiver<WorkerEvent>,
    /// Cancels the job when triggered.
    pub cancel: CancellationToken,
    /// Live status.
    pub status: watch::Sender<RunStatus>,
    /// Notices for the user.
    pub notices: mpsc::UnboundedSender<Notice>,
}

/// How long released TaskManagers get to exit before the run returns anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Runs one job to its end and releases its TaskManagers.
pub async fn run<D: ResourceManagerDriver>(mut master: JobMaster, mut io: ShellIo<D>) -> RunEnd {
    let mut registered: HashMap<String, u32> = HashMap::new();
    // Latest counters per TaskManager for the current attempt: (attempt, in, out).
    let mut live: HashMap<String, (u32, u64, u64)> = HashMap::new();
    let mut attempt = 0u32;
    let mut end: Option<RunEnd> = None;
    let mut cancel_sent = false;
    let mut alive: HashSet<WorkerId> = HashSet::new();
    loop {
        let now = Instant::now();
        while let Some(action) = master.poll_action() {
            match action {
                Action::RequestWorker { id, spec } => {
                    alive.insert(id.clone());
                    if let Err(e) = io.driver.request_worker(&id, &spec) {
                        tracing::error!(worker = %id, error = %e, "cannot start a TaskManager");
                        alive.remove(&id);
                        master.worker_lost(&id, &e.to_string(), now);
                    }
                }
                Action::ReleaseWorker { id, .. } => {
                    let release = JobManagerMessage {
                        kind: Some(job_manager_message::Kind::Release(ReleaseTaskManager {
                            reason: "the job ended".into(),
                        })),
                    };
                    let _ = io.server.send(id.as_str(), release);
                    io.driver.release_worker(&id);
                }
                Action::Deploy { worker, deploy } => {
                    attempt = deploy.attempt;
                    let message = JobManagerMessage {
                        kind: Some(job_manager_message::Kind::Deploy(*deploy)),
                    };
                    if let Err(e) = io.server.send(worker.as_str(), message) {
                        master.worker_lost(&worker, &format!("cannot deploy: {e}"), now);
                    }
                }
                Action::CancelAttempt { worker, cancel } => {
                    let message = JobManagerMessage {
                        kind: Some(job_manager_message::Kind::Cancel(cancel)),
                    };
                    let _ = io.server.send(worker.as_str(), message);
                }
                Action::Restarting {
                    attempt,
                    delay,
                    cause,
                } => {
                    let _ = io.notices.send(Notice::Restarting {
                        attempt,
                        delay,
                        cause,
                    });
                }
                Action::Finished(outcome) => end = Some(RunEnd::Finished(outcome)),
                Action::Failed { cause } => end = Some(RunEnd::Failed(cause)),
                Action::Cancelled => end = Some(RunEnd::Cancelled),
                Action::JobStatusChanged(status) => {
                    tracing::info!(?status, "job status");
                }
            }
        }
        let (ins, outs) = live
            .values()
            .filter(|(a, _, _)| *a == attempt)
            .fold((0, 0), |(i, o), (_, a, b)| (i + a, o + b));
        io.status.send_replace(RunStatus {
            task_managers: registered.len(),
            slots: registered.values().sum(),
            attempt,
            records_in: ins,
            records_out: outs,
        });
        if let Some(end) = end.take() {
            wait_for_exits(&mut io, alive).await;
            return end;
        }

        let deadline = master.poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = io.server.next_event() => {
                let now = Instant::now();
                match event {
                    Some(ControlEvent::Registered { task_manager_id, register, .. }) => {
                        let id = WorkerId(task_manager_id.clone());
                        match master.worker_registered(&id, register.slots, &register.data_endpoint, now) {
                            Ok(_) => {
                                registered.insert(task_manager_id, register.slots);
                            }
                            Err(e) => {
                                tracing::warn!(worker = %id, error = %e, "refused a TaskManager");
                                io.server.disconnect(&task_manager_id, &e.to_string());
                            }
                        }
                    }
                    Some(ControlEvent::Message { task_manager_id, message }) => {
                        let id = WorkerId(task_manager_id.clone());
                        match message.kind {
                            Some(task_manager_message::Kind::Heartbeat(hb)) => {
                                let mut by_attempt: HashMap<u32, (u64, u64)> = HashMap::new();
                                for m in &hb.metrics {
                                    let a = m.subtask.as_ref().map_or(0, |s| s.attempt);
                                    let e = by_attempt.entry(a).or_default();
                                    e.0 += m.records_in;
                                    e.1 += m.records_out;
                                }
                                if let Some((&a, &(i, o))) = by_attempt.iter().max_by_key(|(a, _)| **a) {
                                    live.insert(task_manager_id, (a, i, o));
                                }
                                master.heartbeat(&id, &hb, now);
                            }
                            Some(task_manager_message::Kind::SubtaskState(change)) => {
                                master.subtask_state(&id, &change, now);
                            }
                            Some(task_manager_message::Kind::Register(_)) | None => {
                                tracing::debug!(worker = %id, "ignored a control message");
                            }
                        }
                    }
                    Some(ControlEvent::Disconnected { task_manager_id, reason }) => {
                        registered.remove(&task_manager_id);
                        live.remove(&task_manager_id);
                        let id = WorkerId(task_manager_id);
                        master.worker_lost(&id, &format!("control connection lost: {reason}"), now);
                    }
                    None => {
                        // The endpoint is gone: nothing can reach the TaskManagers any more.
                        tracing::error!("the control endpoint stopped");
                        return RunEnd::Failed("the JobManager's control endpoint stopped".into());
                    }
                }
            }
            Some(event) = io.worker_events.recv() => {
                let now = Instant::now();
                match event {
                    WorkerEvent::Started { id, pid } => {
                        let _ = io.notices.send(Notice::TaskManagerStarted { id: id.0.clone(), pid });
                    }
                    WorkerEvent::Exited { id, reason } => {
                        alive.remove(&id);
                        registered.remove(id.as_str());
                        live.remove(id.as_str());
                        let _ = io.notices.send(Notice::TaskManagerLost { id: id.0.clone(), reason: reason.clone() });
                        master.worker_lost(&id, &format!("process exited: {reason}"), now);
                    }
                }
            }
            _ = timer => master.tick(Instant::now()),
            _ = io.cancel.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                master.cancel(Instant::now());
            }
        }
    }
}

/// Waits (bounded) until the released TaskManagers' processes are gone.
async fn wait_for_exits<D: ResourceManagerDriver>(
    io: &mut ShellIo<D>,
    mut alive: HashSet<WorkerId>,
) {
    let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
    while !alive.is_empty() {
        match tokio::time::timeout_at(deadline, io.worker_events.recv()).await {
            Ok(Some(WorkerEvent::Exited { id, .. })) => {
                alive.remove(&id);
            }
            Ok(Some(WorkerEvent::Started { .. })) => {}
            Ok(None) | Err(_) => break,
        }
    }
    for id in &alive {
        io.driver.release_worker(id);
    }
}
