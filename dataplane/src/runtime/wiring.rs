//! Wiring: from a physical plan and a placement to runnable subtasks and their channels.
//!
//! Every process that runs part of a job builds the same plan from the same graph (any executor
//! running this binary can build any subtask by operator id). Wiring then looks at where the two
//! ends of each channel of the plan were placed and picks its kind once:
//!
//! - both subtasks here: a local channel (crossbeam, no serialization);
//! - the producer here, the consumer on another executor: the sending end of a QUIC stream;
//! - the consumer here, the producer elsewhere: the receiving end, registered on this executor's
//!   shuffle endpoint (the producer may connect before or after);
//! - neither here: not this process's business.
//!
//! The single-process runtime is the case where every subtask is placed here.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::checkpoint::subtask::{CheckpointServices, RestoredState, SubtaskCheckpoint};
use crate::context::{CancelToken, JobMetrics, RuntimeConfig, TaskContext};
use crate::error::{EngineError, Result};
use crate::jobgraph::JobGraph;
use crate::key_groups::KeyGroupRange;
use crate::plan::{PhysicalPlan, SubtaskId};
use crate::registry::{AnyBox, NodeLogic, Outputs, Registry, StreamType};
use crate::runtime::Job;
use crate::runtime::channel::RemoteLinks;
use crate::runtime::task::{MailboxSender, SubtaskIo, SubtaskRunner, subtask_io};
use crate::shuffle::ChannelId;
use crate::state::StateBackend;

/// Where the subtasks of one attempt run: an executor id per subtask, and where each executor's
/// shuffle endpoint listens.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Executor of each subtask.
    pub executor_of: HashMap<SubtaskId, String>,
    /// Shuffle endpoint of each executor.
    pub endpoints: HashMap<String, SocketAddr>,
}

/// What one process needs to wire its share of an attempt.
pub struct Deployment<'a> {
    /// The job (graph and code).
    pub job: &'a Job,
    /// Its physical plan.
    pub plan: &'a PhysicalPlan,
    /// This process's executor id.
    pub here: &'a str,
    /// Where every subtask runs; `None` runs all of them here.
    pub placement: Option<&'a Placement>,
    /// The shuffle, when any channel crosses executors.
    pub links: Option<Arc<RemoteLinks>>,
    /// Runtime tunables.
    pub config: &'a RuntimeConfig,
    /// Where keyed state lives.
    pub state_backend: &'a StateBackend,
    /// Cancellation of this attempt's subtasks here.
    pub cancel: &'a CancelToken,
    /// Checkpointing: the TaskManager's upload services (none: no checkpoints) and the state
    /// to restore.
    pub checkpoints: Option<Arc<dyn CheckpointServices>>,
    /// State to start from.
    pub restored: Option<Arc<RestoredState>>,
}

/// The type of the records an exchange carries (its edge's source output, or side output).
fn exchange_type(job: &Job, plan: &PhysicalPlan, exchange: usize) -> Result<Arc<dyn StreamType>> {
    let edge = &job.graph.edges[plan.exchanges[exchange].edge];
    let src = job
        .graph
        .node_index(&edge.source)
        .ok_or_else(|| EngineError::InvalidGraph("unknown edge source".into()))?;
    match &edge.side_output {
        None => Ok(job.registry.nodes[src].out_type.clone()),
        Some(tag) => job.registry.nodes[src]
            .side_types
            .get(tag)
            .cloned()
            .ok_or_else(|| EngineError::InvalidGraph(format!("unknown side output '{tag}'"))),
    }
}

/// The name of a channel on the shuffle.
pub fn channel_id(links: &RemoteLinks, exchange: usize, from: u32, to: u32) -> ChannelId {
    ChannelId {
        job: links.job,
        attempt: links.attempt,
        edge: exchange as u32,
        producer: from,
        consumer: to,
    }
}

/// Builds the subtasks placed here, with every channel they read or write. `metrics_of` gives
/// each subtask the counters it updates.
pub fn wire(
    d: &Deployment<'_>,
    metrics_of: &dyn Fn(SubtaskId) -> Arc<JobMetrics>,
) -> Result<Vec<SubtaskRunner>> {
    let job = d.job;
    if job.registry.nodes.len() != job.graph.nodes.len()
        || job.registry.edges.len() != job.graph.edges.len()
    {
        return Err(EngineError::InvalidGraph(
            "graph and registry disagree (was the graph built by another program?)".into(),
        ));
    }
    let executor_of = |s: SubtaskId| -> Result<&str> {
        match d.placement {
            None => Ok(d.here),
            Some(p) => p.executor_of.get(&s).map(String::as_str).ok_or_else(|| {
                EngineError::InvalidArgument(format!("the placement has no executor for {s:?}"))
            }),
        }
    };
    let mine: Vec<SubtaskId> = d
        .plan
        .subtasks()
        .filter(|&s| executor_of(s).is_ok_and(|e| e == d.here))
        .collect();
    let mine_set: HashSet<SubtaskId> = mine.iter().copied().collect();
    let mut ios = HashMap::new();
    for &s in &mine {
        ios.insert(s, subtask_io());
    }

    let mut senders: HashMap<SubtaskId, HashMap<usize, Vec<AnyBox>>> = HashMap::new();
    let mut receivers: HashMap<SubtaskId, Vec<(usize, AnyBox)>> = HashMap::new();
    let mut channels: Vec<_> = d.plan.channels.iter().collect();
    channels.sort_by_key(|c| (c.exchange, c.from, c.to.index));
    for ch in channels {
        let (from_here, to_here) = (mine_set.contains(&ch.from), mine_set.contains(&ch.to));
        if !from_here && !to_here {
            continue;
        }
        let ty = exchange_type(job, d.plan, ch.exchange)?;
        let remote = || {
            d.links.as_ref().ok_or_else(|| {
                EngineError::InvalidArgument(
                    "a channel crosses executors but this process has no shuffle endpoint".into(),
                )
            })
        };
        let (tx, rx) = if from_here && to_here {
            let waker = ios[&ch.to].1.clone();
            let (tx, rx) = ty.local_channel(d.config.channel_capacity, waker);
            (Some(tx), Some(rx))
        } else if from_here {
            let links = remote()?;
            let peer = executor_of(ch.to)?;
            let addr = d
                .placement
                .and_then(|p| p.endpoints.get(peer))
                .copied()
                .ok_or_else(|| {
                    EngineError::InvalidArgument(format!(
                        "no shuffle endpoint is known for executor '{peer}'"
                    ))
                })?;
            let id = channel_id(links, ch.exchange, ch.from.index, ch.to.index);
            (Some(ty.remote_sender(links, peer, addr, id)), None)
        } else {
            let links = remote()?;
            let id = channel_id(links, ch.exchange, ch.from.index, ch.to.index);
            let waker = ios[&ch.to].1.clone();
            (None, Some(ty.remote_receiver(links, id, waker)?))
        };
        if let Some(tx) = tx {
            senders
                .entry(ch.from)
                .or_default()
                .entry(ch.exchange)
                .or_default()
                .push(tx);
        }
        if let Some(rx) = rx {
            receivers
                .entry(ch.to)
                .or_default()
                .push((ch.input_index, rx));
        }
    }

    let mut runners = Vec::with_capacity(mine.len());
    for s in mine {
        let tx = senders.remove(&s).unwrap_or_default();
        let mut rx = receivers.remove(&s).unwrap_or_default();
        rx.sort_by_key(|(i, _)| *i);
        let rx = rx.into_iter().map(|(_, r)| r).collect();
        let (io, _waker, mail) = ios
            .remove(&s)
            .ok_or_else(|| EngineError::InvalidGraph(format!("subtask {s:?} wired twice")))?;
        runners.push(build_subtask(
            &job.graph,
            d.plan,
            &job.registry,
            s,
            tx,
            rx,
            (io, mail),
            (d.config, d.state_backend),
            d.cancel,
            &metrics_of(s),
            SubtaskCheckpoint::new(s, d.checkpoints.clone(), d.restored.clone()),
        )?);
    }
    Ok(runners)
}

/// The context of graph node `node` in subtask `index`.
pub fn task_context(
    graph: &JobGraph,
    node: usize,
    index: u32,
    (config, state_backend): (&RuntimeConfig, &StateBackend),
    cancel: &CancelToken,
    metrics: &Arc<JobMetrics>,
    checkpoint: &SubtaskCheckpoint,
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
        state_backend: state_backend.clone(),
        cancel: cancel.clone(),
        metrics: metrics.clone(),
        checkpoint: checkpoint.clone(),
    }
}

/// Instantiates subtask `s`: its chain's operators by id from the registry, the exchanges of its
/// outgoing edges over `senders` (per exchange, index = target subtask, each a `BoxSender<T>`),
/// and its input loop over `receivers` (by input index, each a `BoxReceiver<T>`), which must
/// wake the waker of `io`.
#[allow(clippy::too_many_arguments)]
fn build_subtask(
    graph: &JobGraph,
    plan: &PhysicalPlan,
    registry: &Registry,
    s: SubtaskId,
    mut senders: HashMap<usize, Vec<AnyBox>>,
    receivers: Vec<AnyBox>,
    (io, mail): (SubtaskIo, MailboxSender),
    config: (&RuntimeConfig, &StateBackend),
    cancel: &CancelToken,
    metrics: &Arc<JobMetrics>,
    checkpoint: SubtaskCheckpoint,
) -> Result<SubtaskRunner> {
    let chain = &plan.chains[s.chain];
    let ctx_of =
        |node: usize| task_context(graph, node, s.index, config, cancel, metrics, &checkpoint);
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

    type Run = Box<dyn FnOnce(SubtaskIo) -> Result<()> + Send>;
    let run: Run = match (source_task, downstream) {
        (Some(mut task), None) => Box::new(move |io: SubtaskIo| task.run(&io.mailbox)),
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
            Box::new(move |io: SubtaskIo| ty.run_input(receivers, head, &ctx, io))
        }
        _ => {
            return Err(EngineError::InvalidGraph(format!(
                "chain of {name} has no head"
            )));
        }
    };
    Ok(SubtaskRunner {
        id: s,
        name,
        run,
        io,
        mail,
        checkpoint,
    })
}
