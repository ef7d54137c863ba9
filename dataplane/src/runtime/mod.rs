//! Running jobs: channels ([`channel`]), wiring a plan into subtasks ([`wiring`]) and running
//! them on threads ([`task`]).
//!
//! This module's own entry points run a whole job in this process ([`start_local`],
//! [`run_local`]): every subtask placed here, every channel local. A TaskManager uses the same
//! [`wiring::wire`] and [`task::spawn_subtask`] for its share of a distributed attempt.

pub mod channel;
pub mod task;
pub mod wiring;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::context::{CancelToken, JobMetrics, RuntimeConfig};
use crate::error::{EngineError, Result};
use crate::jobgraph::{JobGraph, NodeKind};
use crate::plan::plan;
use crate::registry::Registry;
use crate::state::StateBackend;
use task::{RunningSubtask, spawn_subtask};
use wiring::{Deployment, wire};

/// A job ready to run: its graph (data) and its registry (code).
#[derive(Clone)]
pub struct Job {
    /// The serialisable graph.
    pub graph: JobGraph,
    /// Factories by operator.
    pub registry: Registry,
}

/// What a finished job reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// Records produced by sources.
    pub records_in: u64,
    /// Records consumed by sinks.
    pub records_out: u64,
    /// Unparsable input records skipped.
    pub skipped: u64,
    /// Wrapping sum of FNV-1a-64 over output lines (when a checksum sink ran).
    pub checksum: u64,
    /// Wall-clock run time.
    pub elapsed: Duration,
    /// True when the job was cancelled rather than finished.
    pub cancelled: bool,
}

/// A running job.
pub struct JobHandle {
    cancel: CancelToken,
    metrics: Arc<JobMetrics>,
    subtasks: Vec<RunningSubtask>,
    started: Instant,
    first_error: Arc<Mutex<Option<EngineError>>>,
}

impl JobHandle {
    /// Cancellation token (give it to a Ctrl-C handler).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Live counters.
    pub fn metrics(&self) -> Arc<JobMetrics> {
        self.metrics.clone()
    }

    /// True once every subtask thread has exited.
    pub fn is_finished(&self) -> bool {
        self.subtasks.iter().all(|t| t.is_finished())
    }

    /// Waits for all subtasks. The first failure (other than cancellation) is the job's error.
    pub fn join(self) -> Result<JobResult> {
        let mut cancelled = false;
        let mut secondary = None;
        for t in self.subtasks {
            match t.join() {
                Ok(()) => {}
                // `OutputClosed`: stdout's reader went away (`| head`); stop quietly.
                Err(EngineError::Cancelled | EngineError::OutputClosed) => cancelled = true,
                Err(e @ EngineError::UpstreamVanished { .. }) => {
                    secondary.get_or_insert(e);
                }
                Err(e) => {
                    let mut first = self.first_error.lock();
                    if first.is_none() {
                        *first = Some(e);
                    }
                }
            }
        }
        if let Some(e) = self.first_error.lock().take().or(secondary) {
            return Err(e);
        }
        let m = &self.metrics;
        Ok(JobResult {
            records_in: m.records_in(),
            records_out: m.records_out(),
            skipped: m.skipped(),
            checksum: m.checksum(),
            elapsed: self.started.elapsed(),
            cancelled,
        })
    }
}

impl Job {
    /// Adopts a graph shipped by the scheduler: checks that it describes this very program
    /// (same operator ids, kinds and edges, in the same order) and takes its parallelism and max
    /// parallelism, which the scheduler may have changed (rescaling).
    pub fn adopt_graph(mut self, shipped: JobGraph) -> Result<Self> {
        shipped.validate()?;
        let same_shape = shipped.nodes.len() == self.graph.nodes.len()
            && shipped.edges == self.graph.edges
            && shipped
                .nodes
                .iter()
                .zip(&self.graph.nodes)
                .all(|(a, b)| a.id == b.id && a.kind == b.kind && a.keyed == b.keyed);
        if !same_shape {
            return Err(EngineError::InvalidGraph(format!(
                "the shipped graph of job '{}' does not match the program this binary builds \
                 (different operators or edges): was it built by another version?",
                shipped.name
            )));
        }
        self.graph = shipped;
        Ok(self)
    }
}

/// Runs a job in this process and returns immediately with a handle.
pub fn start_local(job: Job, config: RuntimeConfig) -> Result<JobHandle> {
    start_local_with_state(job, config, &StateBackend::Heap)
}

/// [`start_local`] with keyed state on `state_backend`.
pub fn start_local_with_state(
    job: Job,
    config: RuntimeConfig,
    state_backend: &StateBackend,
) -> Result<JobHandle> {
    let plan = plan(&job.graph)?;
    if !job.graph.nodes.iter().any(|n| n.kind == NodeKind::Sink) {
        return Err(EngineError::InvalidGraph(
            "the job has no sink; add one so that its results go somewhere".into(),
        ));
    }
    let cancel = CancelToken::default();
    let metrics = Arc::new(JobMetrics::default());
    let runners = wire(
        &Deployment {
            job: &job,
            plan: &plan,
            here: "local",
            placement: None,
            links: None,
            config: &config,
            state_backend,
            cancel: &cancel,
            checkpoints: None,
            restored: None,
        },
        &|_| metrics.clone(),
    )?;

    let first_error: Arc<Mutex<Option<EngineError>>> = Arc::default();
    let mut subtasks = Vec::with_capacity(runners.len());
    for r in runners {
        let cancel = cancel.clone();
        let first = first_error.clone();
        let running = spawn_subtask(r, move |_, task, res| match res {
            Ok(()) | Err(EngineError::Cancelled) => {}
            // The cause is another subtask's error, recorded by that subtask.
            Err(EngineError::UpstreamVanished { .. }) => cancel.cancel(),
            Err(EngineError::OutputClosed) => {
                tracing::debug!(task = %task, "stdout closed; stopping the job");
                cancel.cancel();
            }
            Err(e) => {
                tracing::error!(task = %task, error = %e, "subtask failed; cancelling the job");
                let mut f = first.lock();
                if f.is_none() {
                    *f = Some(match e {
                        EngineError::TaskFailed { task, message } => EngineError::TaskFailed {
                            task: task.clone(),
                            message: message.clone(),
                        },
                        other => EngineError::TaskFailed {
                            task: task.to_string(),
                            message: other.to_string(),
                        },
                    });
                }
                drop(f);
                cancel.cancel();
            }
        })?;
        subtasks.push(running);
    }
    Ok(JobHandle {
        cancel,
        metrics,
        subtasks,
        started: Instant::now(),
        first_error,
    })
}

/// Runs a job in this process to completion.
pub fn run_local(job: Job, config: RuntimeConfig) -> Result<JobResult> {
    start_local(job, config)?.join()
}

/// [`run_local`] with keyed state on `state_backend`.
pub fn run_local_with_state(
    job: Job,
    config: RuntimeConfig,
    state_backend: &StateBackend,
) -> Result<JobResult> {
    start_local_with_state(job, config, state_backend)?.join()
}
