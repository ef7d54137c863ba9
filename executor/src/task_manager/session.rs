//! A TaskManager's session with its JobManager: register, heartbeat, run what it deploys,
//! report subtask states, cancel on request, stop on release.
//!
//! Registration is retried with backoff until `taskmanager.registration.timeout` (Flink's key,
//! default 5 min): a TaskManager may start before its JobManager listens. Once registered, a lost
//! control connection ends the session: the subtasks of a JobManager that is gone are cancelled
//! and the TaskManager stops (under Mesos the task then fails and the scheduler replaces it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesoflow_dataplane::backoff::{Backoff, BackoffConfig, BackoffShape};
use mesoflow_dataplane::checkpoint::subtask::{FINAL_CHECKPOINT, RestoredState};
use mesoflow_dataplane::control::ControlSender;
use mesoflow_dataplane::control::{ControlClient, ControlConfig, ControlError};
use mesoflow_dataplane::shuffle::{ExecutorCredentials, ShuffleEndpoint};
use mesoflow_proto::control::{
    DeploySubtasks, Heartbeat, JobManagerMessage, RegisterTaskManager, SubtaskState,
    SubtaskStateChange, TaskManagerMessage, job_manager_message, task_manager_message,
};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::attempt::{Attempt, AttemptKey, SubtaskExit, SubtaskOutcome, job_id_of, subtask_ref};
use super::checkpointing::{AttemptCheckpoints, RestoreError, load_restore};

/// What a session needs to know.
pub struct SessionConfig {
    /// This TaskManager's id (the one in its certificate).
    pub task_manager_id: String,
    /// Slots it offers.
    pub slots: u32,
    /// Where the JobManager's control endpoint listens.
    pub job_manager: SocketAddr,
    /// The id in the JobManager's certificate.
    pub job_manager_id: String,
    /// Its credentials from the cluster CA.
    pub credentials: ExecutorCredentials,
    /// The registration token, if the JobManager wants one.
    pub registration_token: Vec<u8>,
    /// How long to keep trying to register.
    pub registration_timeout: Duration,
    /// How long cancelled subtasks get to stop before the TaskManager gives up on them.
    pub cancellation_timeout: Duration,
    /// Where the `mmap` state backend keeps its files (`<work dir>/state`).
    pub state_dir: PathBuf,
}

/// How a session ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Registration did not succeed in time.
    #[error(
        "could not register with the JobManager at {addr} within {timeout:?}: {last}; is the JobManager running and reachable from this host?"
    )]
    RegistrationTimeout {
        /// Where the JobManager was expected.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
        /// The last error.
        last: String,
    },
    /// The JobManager refused this TaskManager.
    #[error("the JobManager refused this TaskManager: {0}")]
    Refused(String),
    /// The control connection broke after registration.
    #[error("lost the JobManager: {0}")]
    JobManagerLost(String),
    /// Cancelled subtasks did not stop in time.
    #[error(
        "{count} subtask(s) did not stop within {timeout:?} of being cancelled; stopping the TaskManager (task.cancellation.timeout)"
    )]
    CancellationTimeout {
        /// How many were still running.
        count: usize,
        /// The limit.
        timeout: Duration,
    },
}

/// Runs the session until `stop`, a release by the JobManager, or a failure. `registered` is
/// called once the JobManager has accepted this TaskManager (under Mesos: TASK_RUNNING).
pub async fn run(
    config: SessionConfig,
    endpoint: ShuffleEndpoint,
    stop: CancellationToken,
    registered: impl FnOnce(),
) -> Result<(), SessionError> {
    let data_endpoint = endpoint
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let register = RegisterTaskManager {
        protocol_version: mesoflow_proto::control::PROTOCOL_VERSION,
        task_manager_id: config.task_manager_id.clone(),
        slots: config.slots,
        data_endpoint,
        registration_token: config.registration_token.clone().into(),
        pid: std::process::id(),
    };
    let Some((client, heartbeat_interval)) =
        register_with_retries(&config, register, &stop).await?
    else {
        return Ok(());
    };
    tracing::info!(
        task_manager_id = %config.task_manager_id,
        job_manager = %config.job_manager,
        "registered with the JobManager"
    );
    registered();
    let (tx, mut rx) = client.split();
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<SubtaskExit>();
    // Deployments whose restored state is being read (off the loop), and those cancelled
    // meanwhile.
    let (loaded_tx, mut loaded) = mpsc::unbounded_channel::<Loaded>();
    let mut loading_cancelled: std::collections::HashSet<AttemptKey> = Default::default();
    let send_tx = tx.clone();
    let mut attempts: HashMap<AttemptKey, Attempt> = HashMap::new();
    let mut heartbeat = tokio::time::interval(heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sequence = 0u64;
    let send = |m: task_manager_message::Kind| {
        if let Err(e) = tx.send(TaskManagerMessage { kind: Some(m) }) {
            tracing::debug!(error = %e, "control message not sent");
        }
    };

    let outcome = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            _ = heartbeat.tick() => {
                sequence += 1;
                let metrics = attempts.values().flat_map(|a| a.live_metrics()).collect();
                send(task_manager_message::Kind::Heartbeat(Heartbeat { sequence, metrics }));
            }
            Some(exit) = exits.recv() => {
                let Some(attempt) = attempts.get_mut(&exit.attempt) else { continue };
                let metrics = attempt.on_exit(exit.subtask);
                let (state, message, suppress_restart) = match exit.outcome {
                    SubtaskOutcome::Finished => (SubtaskState::Finished, String::new(), false),
                    SubtaskOutcome::Cancelled => (SubtaskState::Canceled, String::new(), false),
                    // A cancelled subtask may fail on its way out (a peer went first).
                    SubtaskOutcome::Failed { .. } if attempt.is_cancelled() => {
                        (SubtaskState::Canceled, String::new(), false)
                    }
                    SubtaskOutcome::Failed { message, restart_helps } => {
                        (SubtaskState::Failed, message, !restart_helps)
                    }
                };
                if state == SubtaskState::Failed && !suppress_restart {
                    tracing::warn!(subtask = ?exit.subtask, attempt = exit.attempt.1, %message, "subtask failed");
                }
                send(task_manager_message::Kind::SubtaskState(SubtaskStateChange {
                    subtask: Some(subtask_ref(exit.attempt, exit.subtask)),
                    state: state as i32,
                    message,
                    metrics,
                    suppress_restart,
                    corrupt_checkpoint: 0,
                    input_ended: false,
                }));
                // A finished attempt with two-phase-commit sinks waits for the final commit.
                if attempt.is_done() && !attempt.awaits_final_commit() {
                    attempts.remove(&exit.attempt);
                }
            }
            Some(done) = loaded.recv() => {
                let key = (job_id_of(&done.deploy.job_id).unwrap_or_default(), done.deploy.attempt);
                if loading_cancelled.remove(&key) {
                    report_all(&done.deploy, SubtaskState::Canceled, String::new(), 0, &send);
                    continue;
                }
                match done.restored {
                    Ok(restored) => deploy_attempt(&config, &endpoint, &done.deploy, &exits_tx, &mut attempts, &send, &send_tx, restored.map(Arc::new)),
                    Err(e) => {
                        let corrupt = match &e {
                            RestoreError::Corrupt { checkpoint_id, .. } => *checkpoint_id,
                            RestoreError::Failed { .. } => 0,
                        };
                        tracing::error!(attempt = done.deploy.attempt, error = %e, "cannot restore the attempt's state");
                        report_all(&done.deploy, SubtaskState::Failed, e.to_string(), corrupt, &send);
                    }
                }
            }
            message = rx.recv() => match message {
                Ok(Some(JobManagerMessage { kind: Some(kind) })) => {
                    match kind {
                        job_manager_message::Kind::Deploy(deploy) => {
                            // An earlier attempt of the job kept for its final commit is over.
                            attempts.retain(|k, a| !(a.is_done() && job_id_of(&deploy.job_id).is_ok_and(|j| j == k.0)));
                            let restore = deploy.checkpointing.as_ref().and_then(|c| {
                                c.restore.clone().map(|m| (c.restore_root.clone(), m))
                            });
                            match restore {
                                None => deploy_attempt(&config, &endpoint, &deploy, &exits_tx, &mut attempts, &send, &send_tx, None),
                                Some((root, metadata)) => {
                                    tracing::info!(attempt = deploy.attempt, checkpoint = metadata.checkpoint_id, %root, "reading the state to restore");
                                    let loaded_tx = loaded_tx.clone();
                                    tokio::spawn(async move {
                                        let restored = load_restore(&root, &metadata, &|_| true).await.map(Some);
                                        let _ = loaded_tx.send(Loaded { deploy, restored });
                                    });
                                }
                            }
                        }
                        job_manager_message::Kind::TriggerCheckpoint(t) => {
                            if let Some(a) = job_id_of(&t.job_id).ok().and_then(|j| attempts.get(&(j, t.attempt))) {
                                a.trigger_checkpoint(&t);
                            }
                        }
                        job_manager_message::Kind::CheckpointComplete(c) => {
                            let key = job_id_of(&c.job_id).ok().map(|j| (j, c.attempt));
                            if let Some(a) = key.and_then(|k| attempts.get_mut(&k)) {
                                a.checkpoint_complete(c.checkpoint_id, c.end_of_input);
                                if a.is_done() && c.checkpoint_id == FINAL_CHECKPOINT {
                                    attempts.remove(&key.unwrap_or_default());
                                }
                            }
                        }
                        job_manager_message::Kind::CheckpointAborted(a) => {
                            tracing::debug!(checkpoint_id = a.checkpoint_id, reason = %a.reason, "checkpoint aborted");
                        }
                        job_manager_message::Kind::Cancel(cancel) => {
                            match job_id_of(&cancel.job_id) {
                                Ok(job) => {
                                    if let Some(a) = attempts.get(&(job, cancel.attempt)) {
                                        tracing::info!(attempt = cancel.attempt, "cancelling the attempt's subtasks");
                                        a.cancel_all();
                                    } else {
                                        // Still reading its state: it will not start.
                                        loading_cancelled.insert((job, cancel.attempt));
                                    }
                                }
                                Err(e) => tracing::warn!("ignored a cancel: {e}"),
                            }
                        }
                        job_manager_message::Kind::Release(release) => {
                            tracing::info!(reason = %release.reason, "released by the JobManager");
                            break Ok(());
                        }
                        job_manager_message::Kind::Accepted(_) | job_manager_message::Kind::Refused(_) => {
                            tracing::debug!("ignored a registration answer outside registration");
                        }
                    }
                }
                Ok(Some(JobManagerMessage { kind: None })) => {
                    tracing::warn!("ignored a control message of an unknown kind (newer JobManager?)");
                }
                Ok(None) => break Err(SessionError::JobManagerLost("the JobManager closed the control channel".into())),
                Err(e) => break Err(SessionError::JobManagerLost(e.to_string())),
            },
        }
    };

    // Whatever ended the session, nothing keeps running for a JobManager that is gone.
    for a in attempts.values() {
        a.cancel_all();
    }
    let deadline = tokio::time::Instant::now() + config.cancellation_timeout;
    while attempts.values().any(|a| !a.is_done()) {
        match tokio::time::timeout_at(deadline, exits.recv()).await {
            Ok(Some(exit)) => {
                if let Some(a) = attempts.get_mut(&exit.attempt) {
                    a.on_exit(exit.subtask);
                }
            }
            Ok(None) => break,
            Err(_) => {
                let count = attempts.values().map(|a| a.running().count()).sum();
                return Err(SessionError::CancellationTimeout {
                    count,
                    timeout: config.cancellation_timeout,
                });
            }
        }
    }
    tx.close("TaskManager stopping");
    outcome
}

/// A deployment whose restored state was read.
struct Loaded {
    deploy: DeploySubtasks,
    restored: Result<Option<RestoredState>, RestoreError>,
}

/// Reports one state for every subtask a deployment names.
fn report_all(
    deploy: &DeploySubtasks,
    state: SubtaskState,
    message: String,
    corrupt_checkpoint: u64,
    send: &impl Fn(task_manager_message::Kind),
) {
    let job = job_id_of(&deploy.job_id).unwrap_or_default();
    for p in &deploy.subtasks {
        let s = mesoflow_dataplane::plan::SubtaskId {
            chain: p.chain as usize,
            index: p.index,
        };
        send(task_manager_message::Kind::SubtaskState(
            SubtaskStateChange {
                subtask: Some(subtask_ref((job, deploy.attempt), s)),
                state: state as i32,
                message: message.clone(),
                metrics: None,
                suppress_restart: false,
                corrupt_checkpoint,
                input_ended: false,
            },
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn deploy_attempt(
    config: &SessionConfig,
    endpoint: &ShuffleEndpoint,
    deploy: &DeploySubtasks,
    exits: &mpsc::UnboundedSender<SubtaskExit>,
    attempts: &mut HashMap<AttemptKey, Attempt>,
    send: &impl Fn(task_manager_message::Kind),
    control: &ControlSender,
    restored: Option<Arc<RestoredState>>,
) {
    let key = (
        job_id_of(&deploy.job_id).unwrap_or_default(),
        deploy.attempt,
    );
    let checkpoints = deploy.checkpointing.as_ref().map(|c| {
        Arc::new(AttemptCheckpoints::new(
            key,
            control.clone(),
            tokio::runtime::Handle::current(),
            !c.checkpoint_root.is_empty(),
        ))
    });
    match Attempt::start(
        deploy,
        &config.task_manager_id,
        endpoint,
        exits.clone(),
        checkpoints,
        restored,
        &config.state_dir,
    ) {
        Ok(attempt) => {
            tracing::info!(
                attempt = deploy.attempt,
                subtasks = deploy.subtasks.len(),
                job = deploy.job.as_ref().map(|j| j.name.as_str()).unwrap_or(""),
                "deployed"
            );
            let key = attempt.key();
            for s in attempt.running() {
                send(task_manager_message::Kind::SubtaskState(
                    SubtaskStateChange {
                        subtask: Some(subtask_ref(key, s)),
                        state: SubtaskState::Running as i32,
                        message: String::new(),
                        metrics: None,
                        suppress_restart: false,
                        corrupt_checkpoint: 0,
                        input_ended: false,
                    },
                ));
            }
            attempts.insert(key, attempt);
        }
        Err(message) => {
            tracing::error!(attempt = deploy.attempt, %message, "deployment refused");
            report_all(
                deploy,
                SubtaskState::Failed,
                format!("deployment failed: {message}"),
                0,
                send,
            );
        }
    }
}

/// Registers, retrying with backoff; `None` when stopped first.
async fn register_with_retries(
    config: &SessionConfig,
    register: RegisterTaskManager,
    stop: &CancellationToken,
) -> Result<Option<(ControlClient, Duration)>, SessionError> {
    let deadline = tokio::time::Instant::now() + config.registration_timeout;
    let mut backoff = registration_backoff();
    loop {
        let attempt = ControlClient::connect(
            config.job_manager,
            &config.job_manager_id,
            &config.credentials,
            register.clone(),
            ControlConfig::default(),
        );
        let result = tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            r = attempt => r,
        };
        let last = match result {
            Ok((client, accepted)) => {
                let interval = Duration::from_millis(accepted.heartbeat_interval_ms.max(10));
                return Ok(Some((client, interval)));
            }
            Err(ControlError::Refused(reason)) => return Err(SessionError::Refused(reason)),
            Err(e) => e.to_string(),
        };
        let delay = backoff.next_delay();
        if tokio::time::Instant::now() + delay > deadline {
            return Err(SessionError::RegistrationTimeout {
                addr: config.job_manager,
                timeout: config.registration_timeout,
                last,
            });
        }
        tracing::debug!(error = %last, retry_in = ?delay, "registration failed; retrying");
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Delays between registration attempts: 50 ms doubling to 5 s, without jitter.
fn registration_backoff() -> Backoff {
    let config = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_secs(5),
    };
    Backoff::with_shape(config, BackoffShape::DOUBLING_EXACT, 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn registration_delays_double_from_50_ms_to_5_s() {
        let mut backoff = super::registration_backoff();
        let delays: Vec<u128> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
