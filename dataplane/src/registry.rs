//! The code half of a job: for every operator id of the [`JobGraph`](crate::jobgraph::JobGraph),
//! the factory that instantiates it in a subtask, and for every edge, the factory of its exchange.
//!
//! Types differ from operator to operator, so the runtime wires them through `Any`: each factory
//! is created by the typed DataStream API, which knows the types, and checks them once when a
//! subtask is built (never per record).

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select};

use crate::context::{TaskContext, wall_clock_ms};
use crate::element::{Control, Data, Message};
use crate::emitter::{BoxEmitter, DiscardEmitter, Emitter, FanOut};
use crate::error::{EngineError, Result};
use crate::exchange::{BoxSender, BroadcastOutput, ExchangeOutput, RoundRobin, local_channel};
use crate::input_gate::InputGate;
use crate::jobgraph::Partitioning;
use crate::source::SourceTask;

/// A value of a type known only to the factories that produce and consume it.
pub type AnyBox = Box<dyn Any + Send>;

/// Unwraps an [`AnyBox`] into the type the caller expects.
pub fn downcast<X: 'static>(b: AnyBox, what: &str) -> Result<X> {
    b.downcast::<X>().map(|b| *b).map_err(|_| {
        EngineError::InvalidGraph(format!(
            "type mismatch while wiring {what}: expected {}",
            std::any::type_name::<X>()
        ))
    })
}

/// The outputs an operator instance writes to: its main output and its side outputs, each a
/// `BoxEmitter<T>` of the respective type.
pub struct Outputs {
    main: Option<AnyBox>,
    sides: HashMap<String, AnyBox>,
}

impl Outputs {
    pub(crate) fn new(main: AnyBox, sides: HashMap<String, AnyBox>) -> Self {
        Self {
            main: Some(main),
            sides,
        }
    }

    /// Takes the main output.
    pub fn main<T: 'static>(&mut self) -> Result<BoxEmitter<T>> {
        let b = self
            .main
            .take()
            .ok_or_else(|| EngineError::InvalidGraph("main output taken twice".into()))?;
        downcast(b, "main output")
    }

    /// Takes a side output (a discarding emitter when nobody consumes it).
    pub fn side<T: 'static>(&mut self, tag: &str) -> Result<BoxEmitter<T>> {
        match self.sides.remove(tag) {
            Some(b) => downcast(b, &format!("side output '{tag}'")),
            None => Ok(Box::new(DiscardEmitter)),
        }
    }
}

/// Builds a source instance given its output.
pub type SourceFactory =
    Arc<dyn Fn(&TaskContext, Outputs) -> Result<Box<dyn SourceTask>> + Send + Sync>;
/// Builds an operator instance given its outputs; returns its input (`BoxEmitter<In>`).
pub type OperatorFactory = Arc<dyn Fn(&TaskContext, Outputs) -> Result<AnyBox> + Send + Sync>;
/// Builds the emitter that ships an edge's records (`BoxEmitter<T>`) from its channel senders
/// (`BoxSender<T>` each, index = target subtask).
pub type ExchangeFactory =
    Arc<dyn Fn(Partitioning, Vec<AnyBox>, &TaskContext) -> Result<AnyBox> + Send + Sync>;

/// How an operator is instantiated.
#[derive(Clone)]
pub enum NodeLogic {
    /// A source.
    Source(SourceFactory),
    /// An operator or sink.
    Operator(OperatorFactory),
}

/// The code of one operator.
#[derive(Clone)]
pub struct NodeRuntime {
    /// Factory.
    pub logic: NodeLogic,
    /// Type of the main output.
    pub out_type: Arc<dyn StreamType>,
    /// Types of the side outputs by tag.
    pub side_types: HashMap<String, Arc<dyn StreamType>>,
}

/// The code of one edge.
#[derive(Clone)]
pub struct EdgeRuntime {
    /// Builds the sending side.
    pub exchange: ExchangeFactory,
}

/// Code of every operator and edge, indexed like the graph's nodes and edges.
#[derive(Clone, Default)]
pub struct Registry {
    /// Per node.
    pub nodes: Vec<NodeRuntime>,
    /// Per edge.
    pub edges: Vec<EdgeRuntime>,
}

/// Type-specific operations on a stream type the runtime needs without knowing the type.
pub trait StreamType: Send + Sync {
    /// A local channel: (`BoxSender<T>`, `Receiver<Message<T>>`).
    fn channel(&self, capacity: usize) -> (AnyBox, AnyBox);
    /// An emitter (`BoxEmitter<T>`) forwarding to all of `outputs`.
    fn fan_out(&self, outputs: Vec<AnyBox>) -> Result<AnyBox>;
    /// An emitter that drops everything.
    fn discard(&self) -> AnyBox;
    /// Runs the input loop of a subtask: reads `receivers`, feeds `head`.
    fn run_input(&self, receivers: Vec<AnyBox>, head: AnyBox, ctx: &TaskContext) -> Result<()>;
}

/// The [`StreamType`] of `T`.
pub struct TypeOf<T>(PhantomData<fn() -> T>);

impl<T> TypeOf<T> {
    /// As a shared trait object.
    pub fn shared() -> Arc<dyn StreamType>
    where
        T: Data,
    {
        Arc::new(Self(PhantomData))
    }
}

impl<T: Data> StreamType for TypeOf<T> {
    fn channel(&self, capacity: usize) -> (AnyBox, AnyBox) {
        let (tx, rx) = local_channel::<T>(capacity);
        (Box::new(Box::new(tx) as BoxSender<T>), Box::new(rx))
    }

    fn fan_out(&self, outputs: Vec<AnyBox>) -> Result<AnyBox> {
        let outs = outputs
            .into_iter()
            .map(|b| downcast::<BoxEmitter<T>>(b, "fan-out"))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(Box::new(FanOut::new(outs)) as BoxEmitter<T>))
    }

    fn discard(&self) -> AnyBox {
        Box::new(Box::new(DiscardEmitter) as BoxEmitter<T>)
    }

    fn run_input(&self, receivers: Vec<AnyBox>, head: AnyBox, ctx: &TaskContext) -> Result<()> {
        let rxs = receivers
            .into_iter()
            .map(|b| downcast::<Receiver<Message<T>>>(b, "input channel"))
            .collect::<Result<Vec<_>>>()?;
        let head = downcast::<BoxEmitter<T>>(head, "chain head")?;
        run_input_loop(rxs, head, ctx)
    }
}

/// The exchange factory for edges that need no key: forward, rebalance, broadcast.
pub fn plain_exchange<T: Data>() -> ExchangeFactory {
    Arc::new(|partitioning, senders, ctx| {
        let senders = senders
            .into_iter()
            .map(|b| downcast::<BoxSender<T>>(b, "channel sender"))
            .collect::<Result<Vec<_>>>()?;
        let e: BoxEmitter<T> = match partitioning {
            Partitioning::Forward | Partitioning::Rebalance => Box::new(ExchangeOutput::new(
                senders,
                RoundRobin::default(),
                ctx.config.batch_size,
            )),
            Partitioning::Broadcast => Box::new(BroadcastOutput::new(senders)),
            Partitioning::KeyGroupHash => {
                return Err(EngineError::InvalidGraph(
                    "a key-group partitioned edge needs a key selector (use key_by)".into(),
                ));
            }
        };
        Ok(Box::new(e))
    })
}

/// Reads a subtask's input channels and feeds the chain head: per-channel watermark and barrier
/// bookkeeping through the [`InputGate`], periodic processing-time ticks and buffer flushes,
/// and cooperative cancellation.
pub fn run_input_loop<T: Data>(
    rxs: Vec<Receiver<Message<T>>>,
    mut head: BoxEmitter<T>,
    ctx: &TaskContext,
) -> Result<()> {
    let mut gate = InputGate::new(rxs.len());
    let tick = Duration::from_millis(ctx.config.buffer_timeout_ms.max(1));
    head.control(Control::ProcessingTime(wall_clock_ms()))?;
    let mut next_tick = Instant::now() + tick;
    let mut active: Vec<usize> = Vec::with_capacity(rxs.len());
    loop {
        if ctx.cancel.is_cancelled() {
            let _ = head.control(Control::Flush);
            return Err(EngineError::Cancelled);
        }
        let timeout = next_tick.saturating_duration_since(Instant::now());
        active.clear();
        active.extend((0..rxs.len()).filter(|&i| !gate.is_ended(i) && !gate.is_blocked(i)));
        let received = if active.len() == 1 {
            let i = active[0];
            match rxs[i].recv_timeout(timeout) {
                Ok(m) => Some((i, m)),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Err(vanished(ctx)),
            }
        } else {
            let mut sel = Select::new();
            for &i in &active {
                sel.recv(&rxs[i]);
            }
            match sel.select_timeout(timeout) {
                Ok(op) => {
                    let i = active[op.index()];
                    match op.recv(&rxs[i]) {
                        Ok(m) => Some((i, m)),
                        Err(_) => return Err(vanished(ctx)),
                    }
                }
                Err(_) => None,
            }
        };
        if let Some((i, msg)) = received {
            match msg {
                Message::Batch(b) => {
                    gate.on_records(i);
                    head.batch(b)?;
                }
                Message::Control(c) => {
                    for out in gate.on_control(i, c) {
                        head.control(out)?;
                        if out == Control::EndOfInput {
                            head.control(Control::Flush)?;
                            return Ok(());
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            head.control(Control::ProcessingTime(wall_clock_ms()))?;
            head.control(Control::Flush)?;
            next_tick = now + tick;
        }
    }
}

fn vanished(ctx: &TaskContext) -> EngineError {
    if ctx.cancel.is_cancelled() {
        EngineError::Cancelled
    } else {
        EngineError::UpstreamVanished {
            task: ctx.task_name(),
        }
    }
}
