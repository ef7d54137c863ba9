//! The subtasks of one execution attempt that run in this TaskManager: built from a
//! `DeploySubtasks`, running on threads, cancelled on request.
//!
//! The TaskManager rebuilds the job from its name and parameters (every process running this
//! binary builds the same program), checks it against the graph the JobManager planned, wires
//! the subtasks placed here (local channels between them, QUIC channels to other TaskManagers)
//! and starts them. Each subtask reports its end through `exits`, from its own thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use mesoflow_dataplane::Barrier;
use mesoflow_dataplane::checkpoint::subtask::{
    CheckpointServices, FINAL_CHECKPOINT, RestoredState,
};
use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::plan::{SubtaskId, plan};
use mesoflow_dataplane::runtime::channel::RemoteLinks;
use mesoflow_dataplane::runtime::task::{RunningSubtask, TaskMail, spawn_subtask};
use mesoflow_dataplane::runtime::wiring::{Deployment, Placement, wire};
use mesoflow_dataplane::shuffle::ShuffleEndpoint;
use mesoflow_dataplane::{
    CancelToken, EngineError, EnvConfig, JobGraph, JobMetrics, RuntimeConfig, SinkSpec,
    StateBackend,
};
use mesoflow_proto::control::checkpointing::Mode as CheckpointMode;
use mesoflow_proto::control::{Checkpointing, TriggerCheckpoint};
use mesoflow_proto::control::{
    DeploySubtasks, JobDefinition, SinkDefinition, SubtaskMetrics, SubtaskRef,
    sink_definition::Kind as SinkKind,
};
use tokio::sync::mpsc::UnboundedSender;

use super::checkpointing::{AttemptCheckpoints, Services};

/// One attempt of one job: `(job id, attempt number)`.
pub type AttemptKey = (u128, u32);

/// A subtask ended (sent from its thread).
#[derive(Debug)]
pub struct SubtaskExit {
    /// Its attempt.
    pub attempt: AttemptKey,
    /// Which subtask.
    pub subtask: SubtaskId,
    /// How it ended.
    pub outcome: SubtaskOutcome,
}

/// How a subtask ended, as the JobManager needs to hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubtaskOutcome {
    /// It reached the end of its input.
    Finished,
    /// It was cancelled.
    Cancelled,
    /// It failed; `restart_helps` is false when a restart cannot fix the cause (the reader of
    /// stdout went away).
    Failed {
        /// What went wrong.
        message: String,
        /// Whether restarting the job can help.
        restart_helps: bool,
    },
}

impl SubtaskOutcome {
    fn of(result: &Result<(), EngineError>) -> Self {
        match result {
            Ok(()) => Self::Finished,
            Err(EngineError::Cancelled) => Self::Cancelled,
            Err(e) => Self::Failed {
                message: e.to_string(),
                restart_helps: !matches!(e, EngineError::OutputClosed),
            },
        }
    }
}

struct Running {
    handle: RunningSubtask,
    metrics: Arc<JobMetrics>,
}

/// The subtasks of one attempt in this TaskManager.
pub struct Attempt {
    key: AttemptKey,
    cancel: CancelToken,
    running: HashMap<SubtaskId, Running>,
    checkpoints: Option<Arc<AttemptCheckpoints>>,
    /// The latest checkpoint the JobManager reported complete.
    last_completed: u64,
}

/// The job id of a `DeploySubtasks` or `CancelAttempt` (16 bytes, big-endian).
pub fn job_id_of(bytes: &[u8]) -> Result<u128, String> {
    let raw: [u8; 16] = bytes
        .try_into()
        .map_err(|_| format!("job id is {} bytes, expected 16", bytes.len()))?;
    Ok(u128::from_be_bytes(raw))
}

/// The 16 bytes of a job id.
pub fn job_id_bytes(job: u128) -> Vec<u8> {
    job.to_be_bytes().to_vec()
}

/// The `SubtaskRef` of one subtask of an attempt.
pub fn subtask_ref(key: AttemptKey, s: SubtaskId) -> SubtaskRef {
    SubtaskRef {
        job_id: job_id_bytes(key.0).into(),
        attempt: key.1,
        chain: s.chain as u32,
        index: s.index,
    }
}

/// A snapshot of one subtask's counters.
pub fn metrics_of(key: AttemptKey, s: SubtaskId, m: &JobMetrics) -> SubtaskMetrics {
    SubtaskMetrics {
        subtask: Some(subtask_ref(key, s)),
        records_in: m.records_in(),
        records_out: m.records_out(),
        checksum: m.checksum(),
        skipped: m.skipped(),
    }
}

fn sink_of(sink: Option<&SinkDefinition>) -> Result<SinkSpec, String> {
    let sink = sink.ok_or("the job definition names no sink")?;
    match SinkKind::try_from(sink.kind) {
        Ok(SinkKind::Print) => Ok(SinkSpec::Print),
        Ok(SinkKind::Checksum) => Ok(SinkSpec::Checksum),
        Ok(SinkKind::Discard) => Ok(SinkSpec::Discard),
        Ok(SinkKind::Files) if !sink.path.is_empty() => {
            Ok(SinkSpec::Files(sink.path.clone().into()))
        }
        Ok(SinkKind::Files) => Err("a file sink needs a path".into()),
        Ok(SinkKind::Unspecified) | Err(_) => Err(format!("unknown sink kind {}", sink.kind)),
    }
}

fn runtime_of(def: &JobDefinition, checkpointing: Option<&Checkpointing>) -> RuntimeConfig {
    let mut config = RuntimeConfig::default();
    if let Some(c) = checkpointing {
        config.barrier_alignment = c.mode() != CheckpointMode::AtLeastOnce;
        // Unaligned checkpoints are an exactly-once technique: at-least-once ignores the flag.
        config.unaligned_checkpoints = c.unaligned && config.barrier_alignment;
    }
    if let Some(r) = &def.runtime {
        if r.batch_size > 0 {
            config.batch_size = r.batch_size as usize;
        }
        if r.channel_capacity > 0 {
            config.channel_capacity = r.channel_capacity as usize;
        }
        if r.buffer_timeout_ms > 0 {
            config.buffer_timeout_ms = r.buffer_timeout_ms;
        }
    }
    config
}

/// Where the attempt's keyed state lives: `state.backend.type` of the deployment, with the files
/// of the `mmap` backend in `state_dir`.
fn state_backend_of(
    checkpointing: Option<&Checkpointing>,
    state_dir: &Path,
) -> Result<StateBackend, String> {
    let Some(c) = checkpointing else {
        return Ok(StateBackend::Heap);
    };
    match c.state_backend.as_str() {
        "" | "heap" | "hashmap" => Ok(StateBackend::Heap),
        "mmap" => {
            let budget = match c.state_memory_budget {
                0 => StateBackend::DEFAULT_MEMORY_BUDGET,
                b => usize::try_from(b).unwrap_or(usize::MAX),
            };
            Ok(StateBackend::mmap(state_dir, budget))
        }
        other => Err(format!(
            "state.backend.type '{other}' is not a state backend of this TaskManager (heap, mmap)"
        )),
    }
}

impl Attempt {
    /// Builds and starts the subtasks `deploy` assigns to executor `here`. Every error is a
    /// message for the JobManager (the deployment is refused; nothing is left running).
    pub fn start(
        deploy: &DeploySubtasks,
        here: &str,
        endpoint: &ShuffleEndpoint,
        exits: UnboundedSender<SubtaskExit>,
        checkpoints: Option<Arc<AttemptCheckpoints>>,
        restored: Option<Arc<RestoredState>>,
        state_dir: &Path,
    ) -> Result<Self, String> {
        let key = (job_id_of(&deploy.job_id)?, deploy.attempt);
        let def = deploy.job.as_ref().ok_or("the deployment carries no job")?;
        let params = Params::parse(
            &def.params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| e.to_string())?;
        let env = EnvConfig {
            job_name: def.name.clone(),
            parallelism: def.parallelism.max(1),
            max_parallelism: def.max_parallelism.max(1),
            sink: sink_of(def.sink.as_ref())?,
        };
        let mut job = jobs::build(&def.name, &params, env).map_err(|e| e.to_string())?;
        if !def.graph_json.is_empty() {
            let shipped = JobGraph::from_json(&def.graph_json).map_err(|e| e.to_string())?;
            job = job.adopt_graph(shipped).map_err(|e| e.to_string())?;
        }
        let plan = plan(&job.graph).map_err(|e| e.to_string())?;

        let mut placement = Placement::default();
        for p in &deploy.placement {
            placement.executor_of.insert(
                SubtaskId {
                    chain: p.chain as usize,
                    index: p.index,
                },
                p.task_manager_id.clone(),
            );
        }
        for peer in &deploy.peers {
            let addr: SocketAddr = peer.data_endpoint.parse().map_err(|_| {
                format!(
                    "the data endpoint of {} is not host:port: '{}'",
                    peer.task_manager_id, peer.data_endpoint
                )
            })?;
            placement
                .endpoints
                .insert(peer.task_manager_id.clone(), addr);
        }
        let mine: Vec<SubtaskId> = deploy
            .subtasks
            .iter()
            .map(|p| SubtaskId {
                chain: p.chain as usize,
                index: p.index,
            })
            .collect();
        for s in &mine {
            if placement.executor_of.get(s).map(String::as_str) != Some(here) {
                return Err(format!(
                    "subtask {s:?} is deployed here but the placement puts it elsewhere"
                ));
            }
        }

        let links = Arc::new(RemoteLinks {
            endpoint: endpoint.clone(),
            runtime: tokio::runtime::Handle::current(),
            job: key.0,
            attempt: key.1,
        });
        let cancel = CancelToken::default();
        let config = runtime_of(def, deploy.checkpointing.as_ref());
        let state_backend = state_backend_of(deploy.checkpointing.as_ref(), state_dir)?;
        let metrics: HashMap<SubtaskId, Arc<JobMetrics>> = mine
            .iter()
            .map(|&s| (s, Arc::new(JobMetrics::default())))
            .collect();
        let runners = wire(
            &Deployment {
                job: &job,
                plan: &plan,
                here,
                placement: Some(&placement),
                links: Some(links),
                config: &config,
                state_backend: &state_backend,
                cancel: &cancel,
                checkpoints: checkpoints
                    .clone()
                    .map(|c| Arc::new(Services(c)) as Arc<dyn CheckpointServices>),
                restored,
            },
            &|s| metrics.get(&s).cloned().unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        if runners.len() != mine.len() {
            return Err(format!(
                "the deployment lists {} subtasks but the plan places {} here",
                mine.len(),
                runners.len()
            ));
        }

        let mut attempt = Attempt {
            key,
            cancel: cancel.clone(),
            running: HashMap::new(),
            checkpoints: checkpoints.clone(),
            last_completed: 0,
        };
        for runner in runners {
            let id = runner.id();
            if let Some(c) = &checkpoints {
                c.register(id, runner.checkpoint());
            }
            let exits = exits.clone();
            let spawned = spawn_subtask(runner, move |subtask, _, result| {
                let _ = exits.send(SubtaskExit {
                    attempt: key,
                    subtask,
                    outcome: SubtaskOutcome::of(result),
                });
            });
            match spawned {
                Ok(handle) => {
                    let m = metrics.get(&id).cloned().unwrap_or_default();
                    attempt.running.insert(id, Running { handle, metrics: m });
                }
                Err(e) => {
                    attempt.cancel_all();
                    return Err(e.to_string());
                }
            }
        }
        Ok(attempt)
    }

    /// Which attempt.
    pub fn key(&self) -> AttemptKey {
        self.key
    }

    /// The subtasks still running.
    pub fn running(&self) -> impl Iterator<Item = SubtaskId> + '_ {
        self.running.keys().copied()
    }

    /// True while the attempt checkpoints: its sinks may hold pending files until the
    /// JobManager's final commit.
    pub fn awaits_final_commit(&self) -> bool {
        self.checkpoints.is_some() && !self.cancel.is_cancelled()
    }

    /// True once no subtask runs.
    pub fn is_done(&self) -> bool {
        self.running.is_empty()
    }

    /// True once the attempt was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Live counters of the running subtasks.
    pub fn live_metrics(&self) -> Vec<SubtaskMetrics> {
        self.running
            .iter()
            .map(|(s, r)| metrics_of(self.key, *s, &r.metrics))
            .collect()
    }

    /// A subtask ended: forget it; its final counters. A completion it was told of but may
    /// not have read from its mailbox is committed for it here.
    pub fn on_exit(&mut self, s: SubtaskId) -> Option<SubtaskMetrics> {
        let r = self.running.remove(&s)?;
        if let Some(c) = self
            .checkpoints
            .as_ref()
            .filter(|_| self.last_completed > 0)
        {
            c.notify_complete_of(self.last_completed, |id| *id == s);
        }
        Some(metrics_of(self.key, s, &r.metrics))
    }

    /// The JobManager triggered a checkpoint: the source subtasks here inject its barrier.
    pub fn trigger_checkpoint(&self, t: &TriggerCheckpoint) {
        let Some(c) = &self.checkpoints else {
            tracing::warn!(
                checkpoint_id = t.checkpoint_id,
                "a checkpoint was triggered for an attempt deployed without checkpointing"
            );
            return;
        };
        c.triggered(t);
        let barrier = Barrier {
            checkpoint_id: t.checkpoint_id,
            timestamp_ms: t.timestamp_ms,
            priority: false,
        };
        for r in self.running.values() {
            // Only sources act on it; the others get the barrier in-band.
            r.handle.post(TaskMail::TriggerCheckpoint(barrier));
        }
    }

    /// A checkpoint completed: running subtasks commit through their mailbox, finished ones
    /// (a sink that reached the end of its input) right here. `end_of_input`: the job's final
    /// checkpoint, after which the sources end their streams.
    pub fn checkpoint_complete(&mut self, checkpoint_id: u64, end_of_input: bool) {
        let Some(c) = &self.checkpoints else {
            return;
        };
        if checkpoint_id == FINAL_CHECKPOINT {
            c.notify_complete(checkpoint_id);
            return;
        }
        self.last_completed = self.last_completed.max(checkpoint_id);
        for r in self.running.values() {
            r.handle.post(TaskMail::CheckpointComplete {
                checkpoint_id,
                end_of_input,
            });
        }
        c.notify_complete_of(checkpoint_id, |s| !self.running.contains_key(s));
    }

    /// Asks every running subtask to stop.
    pub fn cancel_all(&self) {
        self.cancel.cancel();
        for r in self.running.values() {
            r.handle.post(TaskMail::Cancel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_backend_follows_the_deployment() {
        let dir = Path::new("work/state");
        assert_eq!(state_backend_of(None, dir), Ok(StateBackend::Heap));
        let mut c = Checkpointing {
            state_backend: "mmap".into(),
            ..Default::default()
        };
        assert_eq!(
            state_backend_of(Some(&c), dir),
            Ok(StateBackend::mmap(dir, StateBackend::DEFAULT_MEMORY_BUDGET))
        );
        c.state_memory_budget = 1 << 20;
        assert_eq!(
            state_backend_of(Some(&c), dir),
            Ok(StateBackend::mmap(dir, 1 << 20))
        );
        c.state_backend = "heap".into();
        assert_eq!(state_backend_of(Some(&c), dir), Ok(StateBackend::Heap));
        c.state_backend = "rocksdb".into();
        assert!(
            state_backend_of(Some(&c), dir)
                .unwrap_err()
                .contains("rocksdb")
        );
    }
}
