//! The code half of a job: for every operator id of the [`JobGraph`](crate::jobgraph::JobGraph),
//! the factory that instantiates it in a subtask, and for every edge, the factory of its exchange.
//!
//! Types differ from operator to operator, so the runtime wires them through `Any`: each factory
//! is created by the typed DataStream API, which knows the types, and checks them once when a
//! subtask is built (never per record).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::{TaskContext, wall_clock_ms};
use crate::element::{ChannelEvent, Control, Data, Message};
use crate::emitter::{BoxEmitter, DiscardEmitter, Emitter, FanOut};
use crate::error::{EngineError, Result};
use crate::exchange::{BroadcastOutput, ExchangeOutput, RoundRobin};
use crate::input_gate::InputGate;
use crate::jobgraph::Partitioning;
use crate::runtime::channel::{
    BoxReceiver, BoxSender, InputWaker, RemoteChannelReceiver, RemoteChannelSender, RemoteLinks,
    local_channel,
};
use crate::runtime::task::{SubtaskIo, TaskMail};
use crate::shuffle::ChannelId;
use crate::source::SourceTask;
use crate::unaligned::{InFlightLog, replay_in_flight};

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
    /// A local channel whose sender wakes `waker`: (`BoxSender<T>`, `BoxReceiver<T>`).
    fn local_channel(&self, capacity: usize, waker: InputWaker) -> (AnyBox, AnyBox);
    /// The sending end of a remote channel to executor `peer` (`BoxSender<T>`).
    fn remote_sender(
        &self,
        links: &Arc<RemoteLinks>,
        peer: &str,
        peer_addr: SocketAddr,
        channel: ChannelId,
    ) -> AnyBox;
    /// The receiving end of a remote channel, registered on this executor's endpoint
    /// (`BoxReceiver<T>`).
    fn remote_receiver(
        &self,
        links: &RemoteLinks,
        channel: ChannelId,
        waker: InputWaker,
    ) -> Result<AnyBox>;
    /// An emitter (`BoxEmitter<T>`) forwarding to all of `outputs`.
    fn fan_out(&self, outputs: Vec<AnyBox>) -> Result<AnyBox>;
    /// An emitter that drops everything.
    fn discard(&self) -> AnyBox;
    /// Runs the input loop of a subtask: reads `receivers`, feeds `head`.
    fn run_input(
        &self,
        receivers: Vec<AnyBox>,
        head: AnyBox,
        ctx: &TaskContext,
        io: SubtaskIo,
    ) -> Result<()>;
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
    fn local_channel(&self, capacity: usize, waker: InputWaker) -> (AnyBox, AnyBox) {
        let (tx, rx) = local_channel::<T>(capacity, waker);
        (
            Box::new(Box::new(tx) as BoxSender<T>),
            Box::new(Box::new(rx) as BoxReceiver<T>),
        )
    }

    fn remote_sender(
        &self,
        links: &Arc<RemoteLinks>,
        peer: &str,
        peer_addr: SocketAddr,
        channel: ChannelId,
    ) -> AnyBox {
        let tx = RemoteChannelSender::<T>::new(links.clone(), peer.to_owned(), peer_addr, channel);
        Box::new(Box::new(tx) as BoxSender<T>)
    }

    fn remote_receiver(
        &self,
        links: &RemoteLinks,
        channel: ChannelId,
        waker: InputWaker,
    ) -> Result<AnyBox> {
        let rx = RemoteChannelReceiver::<T>::register(links, channel, waker)?;
        Ok(Box::new(Box::new(rx) as BoxReceiver<T>))
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

    fn run_input(
        &self,
        receivers: Vec<AnyBox>,
        head: AnyBox,
        ctx: &TaskContext,
        io: SubtaskIo,
    ) -> Result<()> {
        let rxs = receivers
            .into_iter()
            .map(|b| downcast::<BoxReceiver<T>>(b, "input channel"))
            .collect::<Result<Vec<_>>>()?;
        let head = downcast::<BoxEmitter<T>>(head, "chain head")?;
        run_input_loop(rxs, head, ctx, io)
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
/// the subtask's mailbox, and cooperative cancellation.
///
/// Channels are polled round robin without blocking; when none has anything the thread parks
/// until a channel or the mailbox wakes it, or the next tick is due.
pub fn run_input_loop<T: Data>(
    mut rxs: Vec<BoxReceiver<T>>,
    mut head: BoxEmitter<T>,
    ctx: &TaskContext,
    io: SubtaskIo,
) -> Result<()> {
    let mut gate = InputGate::new(rxs.len());
    gate.set_alignment(ctx.config.barrier_alignment);
    // Unaligned checkpoints take barriers away from the gate (which then never blocks).
    let mut in_flight = (ctx.config.unaligned_checkpoints && ctx.config.barrier_alignment)
        .then(|| InFlightLog::<T>::new(rxs.len()));
    let tick = Duration::from_millis(ctx.config.buffer_timeout_ms.max(1));
    head.control(Control::ProcessingTime(wall_clock_ms()))?;
    // Records an unaligned checkpoint caught in flight come before anything the channels bring.
    replay_in_flight(&mut head, ctx)?;
    // Messages read ahead of processing while an unaligned checkpoint waits for its markers.
    let mut stash: Vec<VecDeque<Message<T>>> = (0..rxs.len()).map(|_| VecDeque::new()).collect();
    let stash_limit = ctx.config.channel_capacity.max(1) * STASH_FACTOR;
    let mut next_tick = Instant::now() + tick;
    let mut next = 0usize;
    let n = rxs.len();
    loop {
        if ctx.cancel.is_cancelled() {
            let _ = head.control(Control::Flush);
            return Err(EngineError::Cancelled);
        }
        while let Some(mail) = io.mailbox.try_next() {
            match mail {
                TaskMail::Cancel => {
                    let _ = head.control(Control::Flush);
                    return Err(EngineError::Cancelled);
                }
                // Barriers reach operators in-band, from the sources.
                TaskMail::TriggerCheckpoint(_) => {}
                TaskMail::CheckpointComplete { checkpoint_id, .. } => {
                    ctx.checkpoint.notify_complete(checkpoint_id)?
                }
            }
        }
        if let Some(log) = &mut in_flight
            && log.pending().is_some()
        {
            stash_in_flight(&mut rxs, &mut stash, log, &mut head, ctx, stash_limit)?;
        }
        let mut received = None;
        for k in 0..n {
            let i = (next + k) % n;
            if let Some(m) = stash[i].pop_front() {
                received = Some((i, m, true));
                next = i + 1;
                break;
            }
            if gate.is_ended(i) || gate.is_blocked(i) {
                continue;
            }
            match rxs[i].try_recv() {
                Ok(Some(m)) => {
                    received = Some((i, m, false));
                    next = i + 1;
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(receive_failed(e, ctx)),
            }
        }
        match received {
            Some((i, Message::Batch(b), stashed)) => {
                gate.on_records(i);
                if let Some(log) = &mut in_flight
                    && !stashed
                {
                    log.on_batch(i, &b);
                }
                head.batch(b)?;
            }
            Some((_, Message::Event(ChannelEvent::Cancel), _)) => return Err(vanished(ctx)),
            Some((i, Message::Event(ChannelEvent::Barrier(b)), _)) if in_flight.is_some() => {
                if let Some(log) = &mut in_flight {
                    log.on_barrier(i, b, &mut head, ctx)?;
                }
            }
            Some((i, Message::Event(event), _)) => {
                if event.is_terminal()
                    && let Some(log) = &mut in_flight
                {
                    // Before the gate: the checkpoint completes before a possible end of input.
                    log.on_end(i, &mut head, ctx)?;
                }
                for out in gate.on_event(i, event) {
                    if let Control::Barrier(b) = out {
                        // The chain snapshots as the barrier passes through it.
                        let began = ctx.checkpoint.begin(b.checkpoint_id);
                        head.control(out)?;
                        if began {
                            ctx.checkpoint.finish(b.checkpoint_id);
                        }
                        continue;
                    }
                    head.control(out)?;
                    if out == Control::EndOfInput {
                        head.control(Control::Flush)?;
                        return Ok(());
                    }
                }
            }
            None => {
                let wait = next_tick.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    io.parker.park_timeout(wait);
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

/// How many channel capacities of messages a channel may have read ahead while an unaligned
/// checkpoint waits for its marker; past that the channel is read at processing speed again
/// (backpressure), and the checkpoint waits longer rather than the heap growing.
const STASH_FACTOR: usize = 4;

/// While an unaligned checkpoint waits for markers, reads every channel that is still in flight
/// ahead of processing, up to its marker: the messages are recorded (batches) and kept in
/// `stash` to be processed in order later. The checkpoint so completes as soon as the upstream
/// subtasks could send their markers, not once the slow subtask has worked through its queues
/// (which is what an aligned checkpoint, and a receiver that only records what it processes,
/// would wait for).
fn stash_in_flight<T: Data>(
    rxs: &mut [BoxReceiver<T>],
    stash: &mut [VecDeque<Message<T>>],
    log: &mut InFlightLog<T>,
    head: &mut BoxEmitter<T>,
    ctx: &TaskContext,
    limit: usize,
) -> Result<()> {
    for i in 0..rxs.len() {
        // Nothing is read past a stashed barrier or end: what follows belongs to another
        // checkpoint's recording.
        let stopped = |q: &VecDeque<Message<T>>| {
            q.iter().any(|m| {
                matches!(m, Message::Event(e) if e.is_terminal() || matches!(e, ChannelEvent::Barrier(_)))
            })
        };
        if stopped(&stash[i]) {
            continue;
        }
        while log.is_recording(i) && stash[i].len() < limit {
            let m = match rxs[i].try_recv() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Err(receive_failed(e, ctx)),
            };
            match m {
                Message::Batch(b) => {
                    log.on_batch(i, &b);
                    stash[i].push_back(Message::Batch(b));
                }
                // Barriers of the pending checkpoint (or older) only move the protocol on.
                Message::Event(ChannelEvent::Barrier(b))
                    if log.pending().is_some_and(|p| b.checkpoint_id <= p) =>
                {
                    log.on_barrier(i, b, head, ctx)?;
                }
                Message::Event(event) => {
                    if event.is_terminal() {
                        log.on_end(i, head, ctx)?;
                    }
                    let stop = event.is_terminal() || matches!(event, ChannelEvent::Barrier(_));
                    // Watermarks and idleness in order, later; a newer checkpoint's barrier
                    // or the end stop the read-ahead (they are handled in order, later).
                    stash[i].push_back(Message::Event(event));
                    if stop {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// What a failed channel read means for the subtask.
fn receive_failed(e: EngineError, ctx: &TaskContext) -> EngineError {
    match e {
        EngineError::UpstreamVanished { .. } => vanished(ctx),
        e if ctx.cancel.is_cancelled() => {
            tracing::debug!(task = %ctx.task_name(), error = %e, "input failed while cancelling");
            EngineError::Cancelled
        }
        e => e,
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
