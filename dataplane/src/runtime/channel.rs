//! The two ends of a channel between subtasks, and their local and remote implementations.
//!
//! A channel carries [`Message`]s (record batches and [`ChannelEvent`]s) from one producer
//! subtask to one consumer subtask. Operators never know which kind they got; wiring decides
//! once, from where the two subtasks were placed (timely-dataflow's pusher/puller split):
//!
//! - **local** (both subtasks in this process): a bounded crossbeam channel of batches. Nothing
//!   is serialized; the capacity is the backpressure.
//! - **remote** (the consumer runs on another executor): a QUIC stream of the shuffle. Batches
//!   are written as rkyv archives of `Rec<T>`; the consumer's reader task validates each archive
//!   once on arrival, and [`RemoteChannelReceiver`] turns it into the owned batch operators take.
//!   QUIC's per-stream flow control is the backpressure.
//!
//! A consumer reads all its input channels from one thread without blocking on any single one:
//! [`ChannelReceiver::try_recv`] never blocks, and every channel wakes the consumer's
//! [`InputWaker`] when it delivers, so the input loop parks until something arrives.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use crossbeam_utils::sync::{Parker, Unparker};

use crate::element::{ChannelEvent, Data, Message, Rec};
use crate::error::{EngineError, Result};
use crate::shuffle::{
    ChannelId, RemoteReceiver, RemoteSender, ShuffleEndpoint, ShuffleError, ShuffleMessage,
};

/// One outgoing channel to one target subtask.
pub trait ChannelSender<T>: Send {
    /// Ships a message, blocking while the receiver is full (backpressure). Fails when the
    /// receiver is gone (the job is being cancelled or the receiver failed).
    fn send(&mut self, message: Message<T>) -> Result<()>;

    /// Ships a priority event (an unaligned checkpoint barrier) ahead of the data queued in the
    /// channel, without blocking on a full channel: backpressure is exactly when unaligned
    /// checkpoints matter. The default queues it in order (for channels without a priority lane).
    fn send_priority(&mut self, event: ChannelEvent) -> Result<()> {
        self.send(Message::Event(event))
    }
}

/// One incoming channel from one producer subtask.
pub trait ChannelReceiver<T>: Send {
    /// The next message if one is ready; `Ok(None)` when none is. Never blocks. Fails when the
    /// channel broke (the producer vanished, the connection was lost, corrupt data arrived).
    fn try_recv(&mut self) -> Result<Option<Message<T>>>;
}

/// Boxed channel sender, as wiring hands them to exchanges.
pub type BoxSender<T> = Box<dyn ChannelSender<T>>;
/// Boxed channel receiver, as wiring hands them to input loops.
pub type BoxReceiver<T> = Box<dyn ChannelReceiver<T>>;

/// Wakes a consumer subtask parked in its input loop. Cheap to clone and to call when the
/// consumer is not parked.
#[derive(Clone)]
pub struct InputWaker(Unparker);

impl InputWaker {
    /// Wakes the consumer (or makes its next park return at once).
    #[inline]
    pub fn wake(&self) {
        self.0.unpark();
    }
}

/// The parking side of an [`InputWaker`]: owned by the consumer's thread.
pub struct InputParker(Parker);

impl InputParker {
    /// A parker and the waker its channels and mailbox use.
    pub fn new() -> (Self, InputWaker) {
        let parker = Parker::new();
        let waker = InputWaker(parker.unparker().clone());
        (Self(parker), waker)
    }

    /// Sleeps until woken or `timeout` passed. A wake that came before returns at once.
    pub fn park_timeout(&self, timeout: std::time::Duration) {
        self.0.park_timeout(timeout);
    }
}

/// A channel inside the process: a bounded crossbeam channel of batches, plus an unbounded
/// priority lane the receiver drains first (unaligned barriers: a handful per checkpoint, so
/// the lane needs no bound, and a full data lane must not hold them back).
pub struct LocalSender<T> {
    tx: Sender<Message<T>>,
    priority: Sender<ChannelEvent>,
    waker: InputWaker,
}

impl<T: Send> ChannelSender<T> for LocalSender<T> {
    #[inline]
    fn send(&mut self, message: Message<T>) -> Result<()> {
        self.tx.send(message).map_err(|_| EngineError::Cancelled)?;
        self.waker.wake();
        Ok(())
    }

    fn send_priority(&mut self, event: ChannelEvent) -> Result<()> {
        self.priority
            .send(event)
            .map_err(|_| EngineError::Cancelled)?;
        self.waker.wake();
        Ok(())
    }
}

impl<T> Drop for LocalSender<T> {
    fn drop(&mut self) {
        // A disconnect is news too: the consumer must look again to see it.
        self.waker.wake();
    }
}

/// The consuming end of a local channel.
pub struct LocalReceiver<T> {
    rx: Receiver<Message<T>>,
    priority: Receiver<ChannelEvent>,
}

impl<T: Send> ChannelReceiver<T> for LocalReceiver<T> {
    #[inline]
    fn try_recv(&mut self) -> Result<Option<Message<T>>> {
        // The priority lane first; its disconnect is seen on the data lane (same sender).
        if let Ok(event) = self.priority.try_recv() {
            return Ok(Some(Message::Event(event)));
        }
        match self.rx.try_recv() {
            Ok(m) => Ok(Some(m)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(EngineError::UpstreamVanished {
                task: String::new(),
            }),
        }
    }
}

impl<T> LocalReceiver<T> {
    /// Every message queued right now (tests).
    pub fn drain(&self) -> Vec<Message<T>> {
        let mut out: Vec<_> = self.priority.try_iter().map(Message::Event).collect();
        out.extend(self.rx.try_iter());
        out
    }
}

/// Creates a local channel holding at most `capacity` messages (batches or events); the
/// sender wakes `waker` after every message.
pub fn local_channel<T: Send>(
    capacity: usize,
    waker: InputWaker,
) -> (LocalSender<T>, LocalReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let (priority_tx, priority_rx) = crossbeam_channel::unbounded();
    (
        LocalSender {
            tx,
            priority: priority_tx,
            waker,
        },
        LocalReceiver {
            rx,
            priority: priority_rx,
        },
    )
}

/// What remote channels of one execution attempt share: this executor's shuffle endpoint, the
/// runtime its I/O runs on, and where the peers listen.
#[derive(Clone)]
pub struct RemoteLinks {
    /// This executor's shuffle endpoint.
    pub endpoint: ShuffleEndpoint,
    /// The tokio runtime of the endpoint (subtask threads block on it to open streams).
    pub runtime: tokio::runtime::Handle,
    /// Job id of the channels.
    pub job: u128,
    /// Execution attempt of the channels.
    pub attempt: u32,
}

/// Sends to a subtask on another executor over a QUIC stream. The stream is opened on the first
/// message, from the producer's own thread, so deployment never waits for dials.
pub struct RemoteChannelSender<T: Data> {
    links: Arc<RemoteLinks>,
    peer: String,
    peer_addr: SocketAddr,
    channel: ChannelId,
    sender: Option<RemoteSender<Rec<T>>>,
    ended: bool,
}

impl<T: Data> RemoteChannelSender<T> {
    /// A sender for `channel` towards executor `peer` at `peer_addr`.
    pub fn new(
        links: Arc<RemoteLinks>,
        peer: String,
        peer_addr: SocketAddr,
        channel: ChannelId,
    ) -> Self {
        Self {
            links,
            peer,
            peer_addr,
            channel,
            sender: None,
            ended: false,
        }
    }

    fn failed(&self, cause: ShuffleError) -> EngineError {
        EngineError::Channel {
            channel: self.channel.to_string(),
            cause,
        }
    }

    fn open(&mut self) -> Result<&mut RemoteSender<Rec<T>>> {
        if self.sender.is_none() {
            let opened = self.links.runtime.block_on(self.links.endpoint.open_sender(
                &self.peer,
                self.peer_addr,
                self.channel,
            ));
            self.sender = Some(opened.map_err(|cause| self.failed(cause))?);
        }
        let channel = self.channel;
        self.sender.as_mut().ok_or_else(|| EngineError::Channel {
            channel: channel.to_string(),
            cause: ShuffleError::ChannelClosed,
        })
    }
}

impl<T: Data> ChannelSender<T> for RemoteChannelSender<T> {
    fn send(&mut self, message: Message<T>) -> Result<()> {
        if self.ended {
            return Err(self.failed(ShuffleError::ChannelClosed));
        }
        // Named only when something failed: formatting the id per batch would cost an
        // allocation on the hot path.
        let channel = self.channel;
        let failed = |cause| EngineError::Channel {
            channel: channel.to_string(),
            cause,
        };
        let sender = self.open()?;
        match message {
            Message::Batch(batch) => sender.send_batch(&batch).map_err(failed)?,
            Message::Event(event) => {
                sender.send_event(event).map_err(failed)?;
                if event.is_terminal() {
                    self.ended = true;
                }
            }
        }
        Ok(())
    }

    fn send_priority(&mut self, event: ChannelEvent) -> Result<()> {
        if self.ended {
            return Err(self.failed(ShuffleError::ChannelClosed));
        }
        let channel = self.channel;
        // The outbox puts a priority event ahead of its queued frames and never waits for room.
        // The frames it overtook are still sent (before the in-order marker that follows), so
        // the consumer records them as in-flight data: nothing to keep here.
        let overtaken = self
            .open()?
            .send_event(event)
            .map_err(|cause| EngineError::Channel {
                channel: channel.to_string(),
                cause,
            })?;
        tracing::trace!(%channel, overtaken = overtaken.len(), "priority barrier sent");
        Ok(())
    }
}

/// Receives from a subtask on another executor.
pub struct RemoteChannelReceiver<T: Data> {
    rx: RemoteReceiver<Rec<T>>,
}

impl<T: Data> RemoteChannelReceiver<T> {
    /// Registers the receiving end of `channel` on the endpoint; arrivals wake `waker`.
    pub fn register(links: &RemoteLinks, channel: ChannelId, waker: InputWaker) -> Result<Self> {
        let rx = links
            .endpoint
            .receiver_notifying(channel, Box::new(move || waker.wake()))
            .map_err(|cause| EngineError::Channel {
                channel: channel.to_string(),
                cause,
            })?;
        Ok(Self { rx })
    }
}

impl<T: Data> ChannelReceiver<T> for RemoteChannelReceiver<T> {
    fn try_recv(&mut self) -> Result<Option<Message<T>>> {
        let channel = self.rx.channel();
        let next = self.rx.try_recv().map_err(|cause| EngineError::Channel {
            channel: channel.to_string(),
            cause,
        })?;
        Ok(match next {
            None => None,
            Some(ShuffleMessage::Event(event)) => Some(Message::Event(event)),
            Some(ShuffleMessage::Data(batch)) => {
                // Validated by the reader task; owned records for the operators.
                let mut records = Vec::with_capacity(batch.len());
                for archived in batch.iter() {
                    let rec = rkyv::deserialize::<Rec<T>, rkyv::rancor::Error>(archived).map_err(
                        |e| EngineError::Channel {
                            channel: channel.to_string(),
                            cause: ShuffleError::Serialize(e.to_string()),
                        },
                    )?;
                    records.push(rec);
                }
                Some(Message::Batch(records))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Barrier;
    use std::time::Duration;

    #[test]
    fn a_priority_barrier_overtakes_a_full_channel_without_blocking() {
        let (parker, waker) = InputParker::new();
        let (mut tx, mut rx) = local_channel::<u64>(2, waker);
        let barrier = ChannelEvent::Barrier(Barrier {
            checkpoint_id: 3,
            timestamp_ms: 0,
            priority: true,
        });
        // A producer fills the channel and blocks on the third batch (a slow consumer); then
        // a priority barrier must still get through at once.
        let producer = std::thread::spawn(move || {
            for i in 0..3u64 {
                tx.send(Message::Batch(vec![Rec::untimed(i)])).unwrap();
            }
            tx.send_priority(barrier).unwrap();
            tx
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!producer.is_finished(), "the channel was not full");
        // The first batch leaves room: the blocked send completes, then the barrier is sent.
        assert_eq!(
            rx.try_recv().unwrap(),
            Some(Message::Batch(vec![Rec::untimed(0)]))
        );
        let tx = producer.join().unwrap();
        parker.park_timeout(Duration::from_millis(1));
        assert_eq!(rx.try_recv().unwrap(), Some(Message::Event(barrier)));
        for i in 1..3u64 {
            assert_eq!(
                rx.try_recv().unwrap(),
                Some(Message::Batch(vec![Rec::untimed(i)]))
            );
        }
        assert_eq!(rx.try_recv().unwrap(), None);
        drop(tx);
    }

    #[test]
    fn a_priority_barrier_is_sent_while_the_data_lane_is_full() {
        let (_parker, waker) = InputParker::new();
        let (mut tx, mut rx) = local_channel::<u64>(1, waker);
        tx.send(Message::Batch(vec![Rec::untimed(1)])).unwrap();
        let barrier = ChannelEvent::Barrier(Barrier {
            checkpoint_id: 1,
            timestamp_ms: 0,
            priority: true,
        });
        // Would block forever on the data lane; returns at once on the priority lane.
        tx.send_priority(barrier).unwrap();
        assert_eq!(rx.try_recv().unwrap(), Some(Message::Event(barrier)));
        assert_eq!(
            rx.try_recv().unwrap(),
            Some(Message::Batch(vec![Rec::untimed(1)]))
        );
    }
}
