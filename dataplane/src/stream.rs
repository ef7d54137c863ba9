//! The DataStream API: the environment a job builder receives, and typed streams.
//!
//! Building a job records operators and edges in a [`JobGraph`] (data) and their factories in a
//! [`Registry`] (code). Operator ids are the user's `uid` or derived from construction order, so
//! every process that runs the same builder with the same parameters gets the same ids.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::context::TaskContext;
use crate::element::Data;
use crate::emitter::BoxEmitter;
use crate::error::{EngineError, Result};
use crate::exchange::{ExchangeOutput, KeyGroupPartitioner};
use crate::jobgraph::{EdgeSpec, JobGraph, NodeKind, NodeSpec, Partitioning};
use crate::key_groups::{DEFAULT_MAX_PARALLELISM, Key};
use crate::operators::{FilterOp, FlatMapOp, MapOp};
use crate::registry::{
    AnyBox, EdgeRuntime, ExchangeFactory, NodeLogic, NodeRuntime, Outputs, Registry, StreamType,
    TypeOf, downcast, plain_exchange,
};
use crate::runtime::Job;
use crate::runtime::channel::BoxSender;
use crate::source::{Source, SourceDriver, SourceTask};
use crate::watermarks::{TimestampAssigner, WatermarkStrategy};

/// Where line-formatted job output goes (chosen by the CLI, not by the job).
#[derive(Clone, Default)]
pub enum SinkSpec {
    /// Lines to stdout.
    #[default]
    Print,
    /// One part file per subtask under this directory.
    Files(std::path::PathBuf),
    /// Count and checksum only (for benchmarks and engine comparisons).
    Checksum,
    /// Count only.
    Discard,
    /// Lines into a shared vector (tests).
    Collect(Arc<parking_lot::Mutex<Vec<String>>>),
}

impl std::fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Print => write!(f, "print"),
            SinkSpec::Files(p) => write!(f, "file({})", p.display()),
            SinkSpec::Checksum => write!(f, "checksum"),
            SinkSpec::Discard => write!(f, "discard"),
            SinkSpec::Collect(_) => write!(f, "collect"),
        }
    }
}

/// Settings a job is built with.
#[derive(Debug, Clone)]
pub struct EnvConfig {
    /// Job name.
    pub job_name: String,
    /// Default parallelism of operators.
    pub parallelism: u32,
    /// Default max parallelism (key groups).
    pub max_parallelism: u32,
    /// Where line output goes.
    pub sink: SinkSpec,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            job_name: "job".into(),
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            sink: SinkSpec::Print,
        }
    }
}

#[derive(Default)]
pub(crate) struct Builder {
    config: EnvConfig,
    nodes: Vec<NodeSpec>,
    uids: Vec<Option<String>>,
    edges: Vec<(usize, usize, Partitioning, Option<String>)>,
    registry: Registry,
}

/// One input of an operator about to be created: a producer's output and how to partition it.
#[derive(Clone)]
struct StreamInput {
    node: usize,
    side: Option<String>,
    partitioning: Partitioning,
    exchange: ExchangeFactory,
}

/// The environment a job is built in.
pub struct StreamEnvironment {
    b: Rc<RefCell<Builder>>,
}

impl StreamEnvironment {
    /// A new environment.
    pub fn new(config: EnvConfig) -> Self {
        Self {
            b: Rc::new(RefCell::new(Builder {
                config,
                ..Default::default()
            })),
        }
    }

    /// The settings the job is built with.
    pub fn config(&self) -> EnvConfig {
        self.b.borrow().config.clone()
    }

    /// Default parallelism.
    pub fn parallelism(&self) -> u32 {
        self.b.borrow().config.parallelism
    }

    /// Adds a source; `make` builds the instance of each parallel subtask.
    pub fn add_source<T, S, M>(&mut self, name: &str, make: M) -> DataStream<T>
    where
        T: Data,
        S: Source<T> + 'static,
        M: Fn(&TaskContext) -> Result<S> + Send + Sync + 'static,
    {
        let logic = NodeLogic::Source(Arc::new(move |ctx: &TaskContext, mut outs: Outputs| {
            let out: BoxEmitter<T> = outs.main()?;
            let source = make(ctx)?;
            Ok(Box::new(SourceDriver::new(source, out, ctx.clone())) as Box<dyn SourceTask>)
        }));
        let node = add_node(
            &self.b,
            name,
            NodeKind::Source,
            false,
            &[],
            logic,
            TypeOf::<T>::shared(),
            HashMap::new(),
        );
        DataStream::from_node(self.b.clone(), node)
    }

    /// Finishes building: the graph and its factories.
    pub fn build(self) -> Result<Job> {
        let b = std::mem::take(&mut *self.b.borrow_mut());
        let mut nodes = b.nodes;
        for (i, n) in nodes.iter_mut().enumerate() {
            n.id = match &b.uids[i] {
                Some(uid) => uid.clone(),
                None => format!("{i}-{}", slug(&n.name)),
            };
        }
        let edges = b
            .edges
            .iter()
            .map(|(s, t, p, side)| EdgeSpec {
                source: nodes[*s].id.clone(),
                target: nodes[*t].id.clone(),
                partitioning: *p,
                side_output: side.clone(),
            })
            .collect();
        let graph = JobGraph {
            name: b.config.job_name.clone(),
            nodes,
            edges,
        };
        graph.validate()?;
        Ok(Job {
            graph,
            registry: b.registry,
        })
    }
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn add_node(
    b: &Rc<RefCell<Builder>>,
    name: &str,
    kind: NodeKind,
    keyed: bool,
    inputs: &[StreamInput],
    logic: NodeLogic,
    out_type: Arc<dyn StreamType>,
    side_types: HashMap<String, Arc<dyn StreamType>>,
) -> usize {
    let mut b = b.borrow_mut();
    let idx = b.nodes.len();
    let (parallelism, max_parallelism) = (b.config.parallelism, b.config.max_parallelism);
    b.nodes.push(NodeSpec {
        id: String::new(),
        name: name.to_string(),
        kind,
        parallelism,
        max_parallelism,
        chainable: true,
        keyed,
    });
    b.uids.push(None);
    b.registry.nodes.push(NodeRuntime {
        logic,
        out_type,
        side_types,
    });
    for input in inputs {
        b.edges
            .push((input.node, idx, input.partitioning, input.side.clone()));
        b.registry.edges.push(EdgeRuntime {
            exchange: input.exchange.clone(),
        });
    }
    idx
}

/// A stream of records of type `T`.
pub struct DataStream<T> {
    b: Rc<RefCell<Builder>>,
    inputs: Vec<StreamInput>,
    /// The operator that produced this stream (`None` for a union).
    node: Option<usize>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        Self {
            b: self.b.clone(),
            inputs: self.inputs.clone(),
            node: self.node,
            _t: PhantomData,
        }
    }
}

/// Handle of a sink, for naming and parallelism.
pub struct SinkHandle {
    b: Rc<RefCell<Builder>>,
    node: usize,
}

impl SinkHandle {
    /// Sets the sink's parallelism.
    pub fn set_parallelism(self, p: u32) -> Self {
        self.b.borrow_mut().nodes[self.node].parallelism = p.max(1);
        self
    }
    /// Sets the sink's stable id.
    pub fn uid(self, uid: &str) -> Self {
        self.b.borrow_mut().uids[self.node] = Some(uid.to_string());
        self
    }
}

impl<T: Data> DataStream<T> {
    fn from_node(b: Rc<RefCell<Builder>>, node: usize) -> Self {
        Self::from_output(b, node, None)
    }

    pub(crate) fn from_output(b: Rc<RefCell<Builder>>, node: usize, side: Option<String>) -> Self {
        Self {
            b,
            inputs: vec![StreamInput {
                node,
                side,
                partitioning: Partitioning::Forward,
                exchange: plain_exchange::<T>(),
            }],
            node: Some(node),
            _t: PhantomData,
        }
    }

    fn modify_node(self, f: impl FnOnce(&mut Builder, usize)) -> Self {
        if let Some(n) = self.node {
            f(&mut self.b.borrow_mut(), n);
        }
        self
    }

    /// Sets the parallelism of the operator that produced this stream.
    pub fn set_parallelism(self, p: u32) -> Self {
        self.modify_node(|b, n| b.nodes[n].parallelism = p.max(1))
    }

    /// Sets the max parallelism (number of key groups) of the operator that produced this stream.
    pub fn set_max_parallelism(self, p: u32) -> Self {
        self.modify_node(|b, n| b.nodes[n].max_parallelism = p.max(1))
    }

    /// Names the operator that produced this stream.
    pub fn name(self, name: &str) -> Self {
        self.modify_node(|b, n| b.nodes[n].name = name.to_string())
    }

    /// Gives the operator that produced this stream a stable id (keep it across job versions so
    /// that state can be restored).
    pub fn uid(self, uid: &str) -> Self {
        self.modify_node(|b, n| b.uids[n] = Some(uid.to_string()))
    }

    /// Keeps the producing operator out of chains (it runs in its own subtask).
    pub fn disable_chaining(self) -> Self {
        self.modify_node(|b, n| b.nodes[n].chainable = false)
    }

    /// Adds a one-input operator consuming this stream.
    pub fn transform<U: Data>(
        &self,
        name: &str,
        keyed: bool,
        make: impl Fn(&TaskContext, Outputs) -> Result<BoxEmitter<T>> + Send + Sync + 'static,
        side_types: HashMap<String, Arc<dyn StreamType>>,
    ) -> DataStream<U> {
        let logic = NodeLogic::Operator(Arc::new(move |ctx: &TaskContext, outs: Outputs| {
            let input = make(ctx, outs)?;
            Ok(Box::new(input) as AnyBox)
        }));
        let node = add_node(
            &self.b,
            name,
            NodeKind::Operator,
            keyed,
            &self.inputs,
            logic,
            TypeOf::<U>::shared(),
            side_types,
        );
        DataStream::from_node(self.b.clone(), node)
    }

    /// Transforms every record.
    pub fn map<U: Data, F: Fn(T) -> U + Send + Sync + 'static>(&self, f: F) -> DataStream<U> {
        let f = Arc::new(f);
        self.transform(
            "map",
            false,
            move |_, mut outs| Ok(Box::new(MapOp::new(f.clone(), outs.main::<U>()?))),
            HashMap::new(),
        )
    }

    /// Keeps records for which `f` returns true.
    pub fn filter<F: Fn(&T) -> bool + Send + Sync + 'static>(&self, f: F) -> DataStream<T> {
        let f = Arc::new(f);
        self.transform(
            "filter",
            false,
            move |_, mut outs| Ok(Box::new(FilterOp::new(f.clone(), outs.main::<T>()?))),
            HashMap::new(),
        )
    }

    /// Turns each record into zero or more (pushed onto the given vector).
    pub fn flat_map<U: Data, F: Fn(T, &mut Vec<U>) + Send + Sync + 'static>(
        &self,
        f: F,
    ) -> DataStream<U> {
        let f = Arc::new(f);
        self.transform(
            "flat_map",
            false,
            move |_, mut outs| Ok(Box::new(FlatMapOp::new(f.clone(), outs.main::<U>()?))),
            HashMap::new(),
        )
    }

    /// Assigns event timestamps and generates watermarks.
    pub fn assign_timestamps_and_watermarks<F: Fn(&T) -> i64 + Send + Sync + 'static>(
        &self,
        extract: F,
        strategy: WatermarkStrategy,
    ) -> DataStream<T> {
        let f = Arc::new(extract);
        self.transform(
            "timestamps",
            false,
            move |_, mut outs| {
                Ok(Box::new(TimestampAssigner::new(
                    f.clone(),
                    strategy,
                    outs.main::<T>()?,
                )))
            },
            HashMap::new(),
        )
    }

    /// Merges this stream with `other` (same type); the consumer gets both as inputs.
    pub fn union(&self, other: &DataStream<T>) -> DataStream<T> {
        let mut inputs = self.inputs.clone();
        inputs.extend(other.inputs.iter().cloned());
        Self {
            b: self.b.clone(),
            inputs,
            node: None,
            _t: PhantomData,
        }
    }

    fn with_partitioning(&self, p: Partitioning) -> DataStream<T> {
        let mut s = self.clone();
        for i in &mut s.inputs {
            i.partitioning = p;
            i.exchange = plain_exchange::<T>();
        }
        s
    }

    /// Distributes records round robin over the consumer's subtasks.
    pub fn rebalance(&self) -> DataStream<T> {
        self.with_partitioning(Partitioning::Rebalance)
    }

    /// Sends every record to every subtask of the consumer.
    pub fn broadcast(&self) -> DataStream<T> {
        self.with_partitioning(Partitioning::Broadcast)
    }

    /// Partitions by key: records with equal keys go to the same subtask, by key group.
    pub fn key_by<K: Key, F: Fn(&T) -> K + Clone + Send + Sync + 'static>(
        &self,
        key: F,
    ) -> KeyedStream<T, K, F> {
        let mut s = self.clone();
        let selector = key.clone();
        let exchange: ExchangeFactory = Arc::new(move |p, senders, ctx: &TaskContext| {
            if p != Partitioning::KeyGroupHash {
                return plain_exchange::<T>()(p, senders, ctx);
            }
            let senders = senders
                .into_iter()
                .map(|b| downcast::<BoxSender<T>>(b, "channel sender"))
                .collect::<Result<Vec<_>>>()?;
            // The runtime sets `ctx.max_parallelism` to the consuming operator's: its key
            // groups decide where a key goes.
            let e: BoxEmitter<T> = Box::new(ExchangeOutput::new(
                senders,
                KeyGroupPartitioner::new(selector.clone(), ctx.max_parallelism),
                ctx.config.batch_size,
            ));
            Ok(Box::new(e) as AnyBox)
        });
        for i in &mut s.inputs {
            i.partitioning = Partitioning::KeyGroupHash;
            i.exchange = exchange.clone();
        }
        KeyedStream {
            stream: s,
            key,
            _k: PhantomData,
        }
    }

    /// Adds a sink; `make` builds the emitter of each parallel subtask.
    pub fn add_sink<M>(&self, name: &str, make: M) -> SinkHandle
    where
        M: Fn(&TaskContext) -> Result<BoxEmitter<T>> + Send + Sync + 'static,
    {
        let logic = NodeLogic::Operator(Arc::new(move |ctx: &TaskContext, _outs: Outputs| {
            Ok(Box::new(make(ctx)?) as AnyBox)
        }));
        let node = add_node(
            &self.b,
            name,
            NodeKind::Sink,
            false,
            &self.inputs,
            logic,
            TypeOf::<()>::shared(),
            HashMap::new(),
        );
        SinkHandle {
            b: self.b.clone(),
            node,
        }
    }

    /// Writes one line per record, formatted by `format`, to the sink the environment was
    /// configured with (print, part files, checksum, discard, or a test collector).
    pub fn sink_lines<F>(&self, name: &str, format: F) -> SinkHandle
    where
        F: Fn(&T, &mut String) + Send + Sync + 'static,
    {
        let spec = self.b.borrow().config.sink.clone();
        let format = Arc::new(format);
        let sink_name = name.to_string();
        self.add_sink(name, move |ctx| {
            crate::sinks::line_sink(&spec, &sink_name, format.clone(), ctx)
        })
    }

    pub(crate) fn side_output_stream<L: Data>(&self, tag: &str) -> Result<DataStream<L>> {
        let node = self
            .node
            .ok_or_else(|| EngineError::InvalidGraph("a union has no side outputs".into()))?;
        if !self.b.borrow().registry.nodes[node]
            .side_types
            .contains_key(tag)
        {
            return Err(EngineError::InvalidGraph(format!(
                "operator has no side output '{tag}'"
            )));
        }
        Ok(DataStream::from_output(
            self.b.clone(),
            node,
            Some(tag.to_string()),
        ))
    }
}

/// Names a side output and fixes its type.
#[derive(Debug, Clone)]
pub struct OutputTag<T> {
    name: String,
    _t: PhantomData<fn() -> T>,
}

impl<T: Data> OutputTag<T> {
    /// A tag called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            _t: PhantomData,
        }
    }
    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T: Data> DataStream<T> {
    /// The records an operator sent to side output `tag` (e.g. late records of a window).
    pub fn side_output<L: Data>(&self, tag: &OutputTag<L>) -> Result<DataStream<L>> {
        self.side_output_stream(tag.name())
    }
}

/// A stream partitioned by key.
pub struct KeyedStream<T, K, F> {
    pub(crate) stream: DataStream<T>,
    pub(crate) key: F,
    _k: PhantomData<fn() -> K>,
}

impl<T, K, F: Clone> Clone for KeyedStream<T, K, F> {
    fn clone(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            key: self.key.clone(),
            _k: PhantomData,
        }
    }
}

impl<T: Data, K: Key, F: Fn(&T) -> K + Clone + Send + Sync + 'static> KeyedStream<T, K, F> {
    /// The underlying stream (with its key-group partitioning).
    pub fn stream(&self) -> &DataStream<T> {
        &self.stream
    }

    /// The key selector.
    pub fn key_selector(&self) -> F {
        self.key.clone()
    }

    /// Adds a keyed one-input operator.
    pub fn transform_keyed<U: Data>(
        &self,
        name: &str,
        make: impl Fn(&TaskContext, Outputs) -> Result<BoxEmitter<T>> + Send + Sync + 'static,
        side_types: HashMap<String, Arc<dyn StreamType>>,
    ) -> DataStream<U> {
        self.stream.transform(name, true, make, side_types)
    }
}
