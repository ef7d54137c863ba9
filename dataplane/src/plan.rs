//! Turns a [`JobGraph`] into physical subtasks and channels.
//!
//! Operators joined by a forward edge, with equal parallelism and one edge between them, are
//! chained: they run in one subtask and call each other directly. Every other edge becomes
//! channels between subtasks. The single-process runtime consumes this plan; executors consume the
//! same plan to build the subtasks they were assigned.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::jobgraph::{JobGraph, NodeKind, Partitioning};

/// A chain of operators that runs as one subtask per parallel instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSpec {
    /// Indices into `JobGraph::nodes`, head first.
    pub nodes: Vec<usize>,
    /// Parallelism shared by all operators of the chain.
    pub parallelism: u32,
}

/// One subtask: chain `chain`, parallel instance `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubtaskId {
    /// Index into `PhysicalPlan::chains`.
    pub chain: usize,
    /// Parallel instance, `0..parallelism`.
    pub index: u32,
}

/// An edge that crosses subtasks, with its effective partitioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeSpec {
    /// Index into `JobGraph::edges`.
    pub edge: usize,
    /// Producing chain (the edge leaves its tail, or a side output of one of its operators).
    pub from_chain: usize,
    /// Consuming chain (the edge enters its head).
    pub to_chain: usize,
    /// Partitioning after planning: a forward edge between different parallelisms is rebalanced.
    pub partitioning: Partitioning,
}

/// One physical channel between two subtasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSpec {
    /// Index into `PhysicalPlan::exchanges`.
    pub exchange: usize,
    /// Sending subtask.
    pub from: SubtaskId,
    /// Receiving subtask.
    pub to: SubtaskId,
    /// Position of this channel among the receiver's input channels (watermarks and barriers are
    /// tracked per input channel).
    pub input_index: usize,
}

/// The physical plan of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalPlan {
    /// Chains in topological order.
    pub chains: Vec<ChainSpec>,
    /// Edges between chains.
    pub exchanges: Vec<ExchangeSpec>,
    /// Channels between subtasks.
    pub channels: Vec<ChannelSpec>,
}

impl PhysicalPlan {
    /// All subtasks of the plan.
    pub fn subtasks(&self) -> impl Iterator<Item = SubtaskId> + '_ {
        self.chains.iter().enumerate().flat_map(|(c, spec)| {
            (0..spec.parallelism).map(move |index| SubtaskId { chain: c, index })
        })
    }

    /// Input channels of a subtask, ordered by `input_index`.
    pub fn inputs_of(&self, s: SubtaskId) -> Vec<&ChannelSpec> {
        let mut v: Vec<_> = self.channels.iter().filter(|c| c.to == s).collect();
        v.sort_by_key(|c| c.input_index);
        v
    }

    /// Output channels of a subtask for one exchange, ordered by target subtask index.
    pub fn outputs_of(&self, s: SubtaskId, exchange: usize) -> Vec<&ChannelSpec> {
        let mut v: Vec<_> = self
            .channels
            .iter()
            .filter(|c| c.from == s && c.exchange == exchange)
            .collect();
        v.sort_by_key(|c| c.to.index);
        v
    }

    /// The chain a graph node belongs to.
    pub fn chain_of_node(&self, node: usize) -> Option<usize> {
        self.chains.iter().position(|c| c.nodes.contains(&node))
    }
}

/// Builds the physical plan.
pub fn plan(graph: &JobGraph) -> Result<PhysicalPlan> {
    graph.validate()?;
    let n = graph.nodes.len();
    let idx = |id: &str| graph.node_index(id).unwrap_or(usize::MAX);
    let mut out_edges = vec![Vec::new(); n];
    let mut in_edges = vec![Vec::new(); n];
    for (e, edge) in graph.edges.iter().enumerate() {
        out_edges[idx(&edge.source)].push(e);
        in_edges[idx(&edge.target)].push(e);
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.kind != NodeKind::Source && in_edges[i].is_empty() {
            return Err(EngineError::InvalidGraph(format!(
                "operator '{}' has no input",
                node.id
            )));
        }
    }

    // Decide which edges are chained.
    let chained = |e: usize| {
        let edge = &graph.edges[e];
        let (s, t) = (idx(&edge.source), idx(&edge.target));
        edge.partitioning == Partitioning::Forward
            && edge.side_output.is_none()
            && out_edges[s].len() == 1
            && in_edges[t].len() == 1
            && graph.nodes[s].parallelism == graph.nodes[t].parallelism
            && graph.nodes[s].chainable
            && graph.nodes[t].chainable
    };

    let mut chain_of = vec![usize::MAX; n];
    let mut chains: Vec<ChainSpec> = Vec::new();
    for i in 0..n {
        if chain_of[i] != usize::MAX {
            continue;
        }
        let c = chains.len();
        let mut nodes = vec![i];
        chain_of[i] = c;
        let mut cur = i;
        while out_edges[cur].len() == 1 && chained(out_edges[cur][0]) {
            let next = idx(&graph.edges[out_edges[cur][0]].target);
            nodes.push(next);
            chain_of[next] = c;
            cur = next;
        }
        chains.push(ChainSpec {
            nodes,
            parallelism: graph.nodes[i].parallelism,
        });
    }

    let mut exchanges = Vec::new();
    let mut channels = Vec::new();
    let mut next_input = vec![Vec::<usize>::new(); chains.len()];
    for (c, spec) in chains.iter().enumerate() {
        next_input[c] = vec![0; spec.parallelism as usize];
    }
    for (e, edge) in graph.edges.iter().enumerate() {
        if chained(e) {
            continue;
        }
        let (s, t) = (idx(&edge.source), idx(&edge.target));
        let (from_chain, to_chain) = (chain_of[s], chain_of[t]);
        let (ps, pt) = (chains[from_chain].parallelism, chains[to_chain].parallelism);
        let partitioning = match edge.partitioning {
            Partitioning::Forward if ps != pt => Partitioning::Rebalance,
            p => p,
        };
        let x = exchanges.len();
        exchanges.push(ExchangeSpec {
            edge: e,
            from_chain,
            to_chain,
            partitioning,
        });
        let mut connect = |from: u32, to: u32, channels: &mut Vec<ChannelSpec>| {
            let slot = &mut next_input[to_chain][to as usize];
            channels.push(ChannelSpec {
                exchange: x,
                from: SubtaskId {
                    chain: from_chain,
                    index: from,
                },
                to: SubtaskId {
                    chain: to_chain,
                    index: to,
                },
                input_index: *slot,
            });
            *slot += 1;
        };
        if partitioning == Partitioning::Forward {
            for i in 0..ps {
                connect(i, i, &mut channels);
            }
        } else {
            for to in 0..pt {
                for from in 0..ps {
                    connect(from, to, &mut channels);
                }
            }
        }
    }
    Ok(PhysicalPlan {
        chains,
        exchanges,
        channels,
    })
}
