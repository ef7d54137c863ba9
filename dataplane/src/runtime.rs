//! The single-process runtime: every subtask of the physical plan on its own thread, exchanges
//! through bounded crossbeam channels.
//!
//! [`build_subtask`] is the part an executor reuses: given the plan, the registry and the channel
//! ends of one subtask, it instantiates that subtask's chain by operator id.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::context::{CancelToken, JobMetrics, RuntimeConfig, TaskContext};
use crate::error::{EngineError, Result};
use crate::jobgraph::{JobGraph, NodeKind};
use crate::key_groups::KeyGroupRange;
use crate::plan::{PhysicalPlan, SubtaskId, plan};
use crate::registry::{AnyBox, NodeLogic, Outputs, Registry};

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
    threads: Vec<(String, JoinHandle<Result<()>>)>,
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
        self.threads.iter().all(|(_, t)| t.is_finished())
    }

    /// Waits for all subtasks. The first failure (other than cancellation) is the job's error.
    pub fn join(self) -> Result<JobResult> {
        let mut cancelled = false;
        let mut secondary = None;
        for (name, t) in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(EngineError::Cancelled)) => cancelled = true,
                Ok(Err(e @ EngineError::UpstreamVanished { .. })) => {
                    secondary.get_or_insert(e);
                }
                Ok(Err(e)) => {
                    let mut first = self.first_error.lock();
                    if first.is_none() {
                        *first = Some(e);
                    }
                }
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into());
                    let mut first = self.first_error.lock();
                    if first.is_none() {
                        *first = Some(EngineError::TaskFailed {
                            task: name,
                            message: msg,
                        });
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

/// The context of graph node `node` in subtask `index`.
pub fn task_context(
    graph: &JobGraph,
    node: usize,
    index: u32,
    config: &RuntimeConfig,
    cancel: &CancelToken,
    metrics: &Arc<JobMetrics>,
) -> TaskContext {
    let n = &graph.nodes[node];
    TaskContext {
        job_name: graph.name.clone(),
        operator_id: n.id.clone(),
        operator_name: n.name.clone(),
        subtask: index,
        parallelism: n.parallelism,
        max_parallelism: n.max_parallelism,
        key_groups: KeyGroupRange::for_subtask(index, n.parallelism, n.max_parallelism),
        config: config.clone(),
        cancel: cancel.clone(),
        metrics: metrics.clone(),
    }
}

/// A built subtask, ready to run on a thread.
pub struct SubtaskRunner {
    name: String,
    run: Box<dyn FnOnce() -> Result<()> + Send>,
}

impl SubtaskRunner {
    /// `chain-head-name (i/p)`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Runs the subtask to completion on the current thread.
    pub fn run(self) -> Result<()> {
        (self.run)()
    }
}

/// Instantiates subtask `s`: its chain's operators by id from the registry, the exchanges of its
/// outgoing edges over `senders` (per exchange, index = target subtask, each a `BoxSender<T>`),
/// and its input loop over `receivers` (by input index, each a `Receiver<Message<T>>`).
#[allow(clippy::too_many_arguments)]
pub fn build_subtask(
    graph: &JobGraph,
    plan: &PhysicalPlan,
    registry: &Registry,
    s: SubtaskId,
    mut senders: HashMap<usize, Vec<AnyBox>>,
    receivers: Vec<AnyBox>,
    config: &RuntimeConfig,
    cancel: &CancelToken,
    metrics: &Arc<JobMetrics>,
) -> Result<SubtaskRunner> {
    let chain = &plan.chains[s.chain];
    let ctx_of = |node: usize| task_context(graph, node, s.index, config, cancel, metrics);
    let head_node = chain.nodes[0];
    let name = ctx_of(head_node).task_name();

    // Emitters for the outgoing exchanges of each node of the chain, by (node, side tag).
    let mut edge_outputs: HashMap<(usize, Option<String>), Vec<AnyBox>> = HashMap::new();
    for (x, ex) in plan.exchanges.iter().enumerate() {
        if ex.from_chain != s.chain {
            continue;
        }
        let edge = &graph.edges[ex.edge];
        let node = graph
            .node_index(&edge.source)
            .ok_or_else(|| EngineError::InvalidGraph(format!("unknown node {}", edge.source)))?;
        let tx = senders.remove(&x).unwrap_or_default();
        let mut ctx = ctx_of(node);
        if let Some(target) = graph.node_index(&edge.target) {
            // Key groups are those of the consumer.
            ctx.max_parallelism = graph.nodes[target].max_parallelism;
        }
        let emitter = (registry.edges[ex.edge].exchange)(ex.partitioning, tx, &ctx)?;
        edge_outputs
            .entry((node, edge.side_output.clone()))
            .or_default()
            .push(emitter);
    }

    // Build the chain from its tail to its head.
    let mut downstream: Option<AnyBox> = None;
    let mut source_task = None;
    for (pos, &node) in chain.nodes.iter().enumerate().rev() {
        let rt = &registry.nodes[node];
        let main = match downstream.take() {
            Some(next) => next,
            None => {
                let outs = edge_outputs.remove(&(node, None)).unwrap_or_default();
                match outs.len() {
                    0 => rt.out_type.discard(),
                    1 => outs
                        .into_iter()
                        .next()
                        .ok_or_else(|| EngineError::InvalidGraph("output vanished".into()))?,
                    _ => rt.out_type.fan_out(outs)?,
                }
            }
        };
        let mut sides = HashMap::new();
        for (tag, ty) in &rt.side_types {
            let outs = edge_outputs
                .remove(&(node, Some(tag.clone())))
                .unwrap_or_default();
            let e = match outs.len() {
                0 => ty.discard(),
                1 => outs
                    .into_iter()
                    .next()
                    .ok_or_else(|| EngineError::InvalidGraph("output vanished".into()))?,
                _ => ty.fan_out(outs)?,
            };
            sides.insert(tag.clone(), e);
        }
        let outputs = Outputs::new(main, sides);
        let ctx = ctx_of(node);
        match &rt.logic {
            NodeLogic::Source(f) => {
                if pos != 0 {
                    return Err(EngineError::InvalidGraph(format!(
                        "source '{}' is not at the head of its chain",
                        graph.nodes[node].id
                    )));
                }
                source_task = Some(f(&ctx, outputs)?);
            }
            NodeLogic::Operator(f) => downstream = Some(f(&ctx, outputs)?),
        }
    }

    let run: Box<dyn FnOnce() -> Result<()> + Send> = match (source_task, downstream) {
        (Some(mut task), None) => Box::new(move || task.run()),
        (None, Some(head)) => {
            let inputs = plan.inputs_of(s);
            let first = inputs.first().ok_or_else(|| {
                EngineError::InvalidGraph(format!("subtask {name} has no input channel"))
            })?;
            let edge = &graph.edges[plan.exchanges[first.exchange].edge];
            let src = graph
                .node_index(&edge.source)
                .ok_or_else(|| EngineError::InvalidGraph("unknown edge source".into()))?;
            let ty = match &edge.side_output {
                None => registry.nodes[src].out_type.clone(),
                Some(tag) => registry.nodes[src]
                    .side_types
                    .get(tag)
                    .cloned()
                    .ok_or_else(|| {
                        EngineError::InvalidGraph(format!("unknown side output '{tag}'"))
                    })?,
            };
            let ctx = ctx_of(head_node);
            Box::new(move || ty.run_input(receivers, head, &ctx))
        }
        _ => {
            return Err(EngineError::InvalidGraph(format!(
                "chain of {name} has no head"
            )));
        }
    };
    Ok(SubtaskRunner { name, run })
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
    let plan = plan(&job.graph)?;
    if job.registry.nodes.len() != job.graph.nodes.len()
        || job.registry.edges.len() != job.graph.edges.len()
    {
        return Err(EngineError::InvalidGraph(
            "graph and registry disagree (was the graph built by another program?)".into(),
        ));
    }
    if !job.graph.nodes.iter().any(|n| n.kind == NodeKind::Sink) {
        return Err(EngineError::InvalidGraph(
            "the job has no sink; add one so that its results go somewhere".into(),
        ));
    }
    let cancel = CancelToken::default();
    let metrics = Arc::new(JobMetrics::default());

    // Create every channel; hand the ends to their subtasks.
    let mut senders: HashMap<SubtaskId, HashMap<usize, Vec<AnyBox>>> = HashMap::new();
    let mut receivers: HashMap<SubtaskId, Vec<(usize, AnyBox)>> = HashMap::new();
    let mut channels: Vec<_> = plan.channels.iter().collect();
    channels.sort_by_key(|c| (c.exchange, c.from, c.to.index));
    for ch in channels {
        let ex = &plan.exchanges[ch.exchange];
        let edge = &job.graph.edges[ex.edge];
        let src = job
            .graph
            .node_index(&edge.source)
            .ok_or_else(|| EngineError::InvalidGraph("unknown edge source".into()))?;
        let ty = match &edge.side_output {
            None => job.registry.nodes[src].out_type.clone(),
            Some(tag) => job.registry.nodes[src]
                .side_types
                .get(tag)
                .cloned()
                .ok_or_else(|| EngineError::InvalidGraph(format!("unknown side output '{tag}'")))?,
        };
        let (tx, rx) = ty.channel(config.channel_capacity);
        senders
            .entry(ch.from)
            .or_default()
            .entry(ch.exchange)
            .or_default()
            .push(tx);
        receivers
            .entry(ch.to)
            .or_default()
            .push((ch.input_index, rx));
    }

    let mut runners = Vec::new();
    for s in plan.subtasks() {
        let tx = senders.remove(&s).unwrap_or_default();
        let mut rx = receivers.remove(&s).unwrap_or_default();
        rx.sort_by_key(|(i, _)| *i);
        let rx = rx.into_iter().map(|(_, r)| r).collect();
        runners.push(build_subtask(
            &job.graph,
            &plan,
            &job.registry,
            s,
            tx,
            rx,
            &config,
            &cancel,
            &metrics,
        )?);
    }

    let first_error: Arc<Mutex<Option<EngineError>>> = Arc::default();
    let mut threads = Vec::new();
    for r in runners {
        let name = r.name().to_string();
        let cancel = cancel.clone();
        let first = first_error.clone();
        let thread_name: String = name.chars().take(15).collect();
        let t = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let task = r.name().to_string();
                // A panic in user code fails the job (cancelling the other subtasks at once)
                // instead of leaving them waiting for input that never comes.
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.run()))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".into());
                        Err(EngineError::TaskFailed {
                            task: task.clone(),
                            message: format!("panicked: {message}"),
                        })
                    });
                if let Err(EngineError::UpstreamVanished { .. }) = &res {
                    // The cause is another subtask's error, recorded by that subtask.
                    cancel.cancel();
                    return res;
                }
                if let Err(EngineError::OutputClosed) = &res {
                    tracing::debug!(task = %task, "stdout closed; stopping the job");
                    cancel.cancel();
                    return Err(EngineError::Cancelled);
                }
                if let Err(e) = &res
                    && !matches!(e, EngineError::Cancelled)
                {
                    tracing::error!(task = %task, error = %e, "subtask failed; cancelling the job");
                    let mut f = first.lock();
                    if f.is_none() {
                        *f = Some(match e {
                            EngineError::TaskFailed { task, message } => EngineError::TaskFailed {
                                task: task.clone(),
                                message: message.clone(),
                            },
                            other => EngineError::TaskFailed {
                                task,
                                message: other.to_string(),
                            },
                        });
                    }
                    drop(f);
                    cancel.cancel();
                }
                res
            })
            .map_err(|e| EngineError::TaskFailed {
                task: name.clone(),
                message: format!("cannot start thread: {e}"),
            })?;
        threads.push((name, t));
    }
    Ok(JobHandle {
        cancel,
        metrics,
        threads,
        started: Instant::now(),
        first_error,
    })
}

/// Runs a job in this process to completion.
pub fn run_local(job: Job, config: RuntimeConfig) -> Result<JobResult> {
    start_local(job, config)?.join()
}
