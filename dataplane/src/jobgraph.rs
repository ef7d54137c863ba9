//! The logical job graph: operators with stable ids and edges with a partitioning.
//!
//! The graph is plain data (serde), so the scheduler can store it and ship it to executors. The
//! code of the operators is not in it: every process running the same binary rebuilds the job from
//! its catalog name and parameters, gets the same operator ids, and looks the logic up by id.

use serde::{Deserialize, Serialize};

/// How records move along an edge from the subtasks of one operator to those of the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// Subtask `i` sends to subtask `i` (same parallelism); the only edge that can be chained.
    Forward,
    /// By key group: `hash(key) % max_parallelism`, then `key_group * p / max_parallelism`.
    KeyGroupHash,
    /// Round robin over all target subtasks.
    Rebalance,
    /// Every record to every target subtask.
    Broadcast,
}

/// What role an operator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// Produces records; has no inputs.
    Source,
    /// Transforms records.
    Operator,
    /// Consumes records; has no outputs.
    Sink,
}

/// One logical operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Stable id: the user's `uid`, or derived from construction order and name.
    pub id: String,
    /// Human-readable name (shown in logs and metrics).
    pub name: String,
    /// Source, operator or sink.
    pub kind: NodeKind,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// Number of key groups (upper bound for rescaling keyed state).
    pub max_parallelism: u32,
    /// False when the user disabled chaining for this operator.
    pub chainable: bool,
    /// True when the operator holds keyed state (its input edge is key-group partitioned).
    pub keyed: bool,
}

/// One logical edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSpec {
    /// Id of the producing operator.
    pub source: String,
    /// Id of the consuming operator.
    pub target: String,
    /// How records are distributed.
    pub partitioning: Partitioning,
    /// Name of the producer's side output this edge reads, if not its main output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_output: Option<String>,
}

/// A whole job: operators in topological (construction) order, and their edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobGraph {
    /// The job's catalog name (or a user-given name).
    pub name: String,
    /// Operators; every edge goes from an earlier to a later one.
    pub nodes: Vec<NodeSpec>,
    /// Edges between operators.
    pub edges: Vec<EdgeSpec>,
}

impl JobGraph {
    /// Position of the node with this id.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Serialises the graph as JSON (what the scheduler ships).
    pub fn to_json(&self) -> String {
        // A JobGraph has only strings, integers and enums: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a graph from JSON, then checks it.
    pub fn from_json(text: &str) -> crate::Result<Self> {
        let g: JobGraph = serde_json::from_str(text).map_err(|e| {
            crate::EngineError::InvalidGraph(format!("job graph is not valid JSON: {e}"))
        })?;
        g.validate()?;
        Ok(g)
    }

    /// Checks that ids are unique, edges point backwards in construction order, parallelism is
    /// within bounds and forward edges join operators of equal parallelism.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::EngineError::InvalidGraph;
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            if !seen.insert(n.id.as_str()) {
                return Err(InvalidGraph(format!(
                    "operator id '{}' is used twice; give each operator a unique uid",
                    n.id
                )));
            }
            if n.parallelism == 0 {
                return Err(InvalidGraph(format!(
                    "operator '{}' has parallelism 0",
                    n.id
                )));
            }
            if n.max_parallelism == 0
                || n.max_parallelism > crate::key_groups::UPPER_MAX_PARALLELISM
            {
                return Err(InvalidGraph(format!(
                    "operator '{}' has max parallelism {}; it must be in 1..={}",
                    n.id,
                    n.max_parallelism,
                    crate::key_groups::UPPER_MAX_PARALLELISM
                )));
            }
            if n.keyed && n.parallelism > n.max_parallelism {
                return Err(InvalidGraph(format!(
                    "keyed operator '{}' has parallelism {} above its max parallelism {}",
                    n.id, n.parallelism, n.max_parallelism
                )));
            }
        }
        for e in &self.edges {
            let s = self.node_index(&e.source).ok_or_else(|| {
                InvalidGraph(format!("edge from unknown operator '{}'", e.source))
            })?;
            let t = self
                .node_index(&e.target)
                .ok_or_else(|| InvalidGraph(format!("edge to unknown operator '{}'", e.target)))?;
            if s >= t {
                return Err(InvalidGraph(format!(
                    "edge '{}' -> '{}' does not follow construction order",
                    e.source, e.target
                )));
            }
            if self.nodes[t].kind == NodeKind::Source {
                return Err(InvalidGraph(format!(
                    "source '{}' cannot have an input",
                    e.target
                )));
            }
            if self.nodes[s].kind == NodeKind::Sink {
                return Err(InvalidGraph(format!(
                    "sink '{}' cannot have an output",
                    e.source
                )));
            }
        }
        Ok(())
    }
}
