//! The consumer's handle on one remote channel, and the task that reads, validates and queues
//! its frames.
//!
//! Every frame is validated once, in the reader task, before the consumer sees it: the CRC, the
//! header, and for data frames the whole rkyv archive (bytecheck). The consumer then reads records
//! in place. The reader stops reading while the consumer's queue is full, so the QUIC stream
//! window fills and the producer blocks: a slow consumer slows exactly its producers.

use super::batch::{RecordBatch, ShuffleRecord};
use super::channel::{ChannelHeader, ChannelId, record_type_fingerprint};
use super::error::ShuffleError;
use super::event::ChannelEvent;
use super::frame::{Frame, FrameDecoder, FrameError, FrameKind};
use super::sender::codes;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// What a channel delivers, in the producer's order.
#[derive(Debug)]
pub enum ShuffleMessage<T: rkyv::Archive> {
    Data(RecordBatch<T>),
    Event(ChannelEvent),
}

/// A stream that named its channel, waiting to be read.
#[derive(Debug)]
pub(crate) struct IncomingChannel {
    pub(crate) recv: quinn::RecvStream,
    pub(crate) header: ChannelHeader,
    pub(crate) peer: String,
    pub(crate) counters: std::sync::Arc<super::endpoint::TrafficCounters>,
}

type Delivery<T> = Result<ShuffleMessage<T>, ShuffleError>;

/// Receiving end of one logical channel from another executor.
pub struct RemoteReceiver<T: rkyv::Archive> {
    rx: mpsc::Receiver<Delivery<T>>,
    channel: ChannelId,
    ended: bool,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl<T: rkyv::Archive> std::fmt::Debug for RemoteReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteReceiver")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl<T: ShuffleRecord> RemoteReceiver<T> {
    pub(crate) fn new(
        rx: mpsc::Receiver<Delivery<T>>,
        channel: ChannelId,
        on_drop: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Self {
            rx,
            channel,
            ended: false,
            on_drop: Some(on_drop),
        }
    }

    /// The channel this receiver drains.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    fn deliver(
        &mut self,
        next: Option<Delivery<T>>,
    ) -> Result<Option<ShuffleMessage<T>>, ShuffleError> {
        if self.ended {
            return Ok(None);
        }
        match next {
            Some(Ok(message)) => {
                if let ShuffleMessage::Event(event) = &message {
                    self.ended = event.is_terminal();
                }
                Ok(Some(message))
            }
            Some(Err(err)) => {
                self.ended = true;
                Err(err)
            }
            None => {
                self.ended = true;
                Err(ShuffleError::EndpointClosed)
            }
        }
    }

    /// The next batch or event, blocking; `Ok(None)` after `EndOfPartition` or `Cancel`.
    /// Must not be called from a tokio worker thread (use [`RemoteReceiver::recv_async`]).
    pub fn recv(&mut self) -> Result<Option<ShuffleMessage<T>>, ShuffleError> {
        if self.ended {
            return Ok(None);
        }
        let next = self.rx.blocking_recv();
        self.deliver(next)
    }

    /// The next batch or event if one is ready, without blocking; `Ok(None)` when nothing is
    /// ready (or after `EndOfPartition` or `Cancel`).
    pub fn try_recv(&mut self) -> Result<Option<ShuffleMessage<T>>, ShuffleError> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.try_recv() {
            Ok(next) => self.deliver(Some(next)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => self.deliver(None),
        }
    }

    /// The next batch or event; `Ok(None)` after `EndOfPartition` or `Cancel`.
    pub async fn recv_async(&mut self) -> Result<Option<ShuffleMessage<T>>, ShuffleError> {
        if self.ended {
            return Ok(None);
        }
        let next = self.rx.recv().await;
        self.deliver(next)
    }
}

impl<T: rkyv::Archive> Drop for RemoteReceiver<T> {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop();
        }
    }
}

/// Turns one validated frame into a message.
pub fn decode_message<T: ShuffleRecord>(frame: Frame) -> Result<ShuffleMessage<T>, FrameError> {
    match frame.header.kind {
        FrameKind::Data => Ok(ShuffleMessage::Data(RecordBatch::validate(frame.payload)?)),
        FrameKind::Open => Err(FrameError::InvalidPayload {
            kind: FrameKind::Open,
            reason: "a stream may name its channel only once".into(),
        }),
        kind => Ok(ShuffleMessage::Event(ChannelEvent::decode(
            kind,
            frame.header.is_priority(),
            &frame.payload,
        )?)),
    }
}

/// Reads one channel's stream until it ends, fails, or the consumer goes away.
pub(crate) async fn run_reader<T: ShuffleRecord>(
    incoming: oneshot::Receiver<IncomingChannel>,
    tx: mpsc::Sender<Delivery<T>>,
    max_frame_bytes: usize,
    notify: ArrivalNotify,
) {
    let tx = NotifyingSender { tx, notify };
    let Ok(IncomingChannel {
        mut recv,
        header,
        peer,
        counters,
    }) = incoming.await
    else {
        // The endpoint closed before the producer connected; dropping `tx` reports it.
        return;
    };
    if header.record_type != record_type_fingerprint::<T>() {
        let _ = recv.stop(quinn::VarInt::from_u32(codes::TYPE_MISMATCH));
        let _ = tx
            .send(Err(ShuffleError::RecordTypeMismatch {
                channel: header.channel.to_string(),
            }))
            .await;
        return;
    }
    match read_frames(&mut recv, &tx, &peer, max_frame_bytes, &counters).await {
        Ok(()) => {}
        Err(None) => {
            let _ = recv.stop(quinn::VarInt::from_u32(codes::CONSUMER_GONE));
        }
        Err(Some(err)) => {
            if matches!(
                err,
                ShuffleError::Frame(_) | ShuffleError::DataAfterEnd | ShuffleError::UnexpectedEnd
            ) {
                let _ = recv.stop(quinn::VarInt::from_u32(codes::PROTOCOL_ERROR));
            }
            tracing::debug!(peer = %peer, channel = %header.channel, error = %err, "shuffle channel failed on the receiving side");
            let _ = tx.send(Err(err)).await;
        }
    }
}

/// Called after every delivery (and when the channel ends), so a consumer that polls several
/// channels can sleep until one of them has something.
pub type ArrivalNotify = Box<dyn Fn() + Send + Sync>;

/// The delivery queue plus the consumer's wake-up.
struct NotifyingSender<T: rkyv::Archive> {
    tx: mpsc::Sender<Delivery<T>>,
    notify: ArrivalNotify,
}

impl<T: rkyv::Archive> NotifyingSender<T> {
    async fn send(&self, delivery: Delivery<T>) -> Result<(), ()> {
        let sent = self.tx.send(delivery).await.map_err(|_| ());
        (self.notify)();
        sent
    }
}

impl<T: rkyv::Archive> Drop for NotifyingSender<T> {
    fn drop(&mut self) {
        // The queue closes with this sender: the consumer must look again to see the end.
        (self.notify)();
    }
}

/// `Err(None)`: the consumer dropped its receiver.
async fn read_frames<T: ShuffleRecord>(
    recv: &mut quinn::RecvStream,
    tx: &NotifyingSender<T>,
    peer: &str,
    max_frame_bytes: usize,
    counters: &super::endpoint::TrafficCounters,
) -> Result<(), Option<ShuffleError>> {
    let mut decoder = FrameDecoder::new(max_frame_bytes);
    let mut chunks: [Bytes; 32] = Default::default();
    let mut ended = false;
    loop {
        let read = recv.read_chunks(&mut chunks).await.map_err(|err| {
            Some(match err {
                quinn::ReadError::Reset(code) => ShuffleError::ProducerAborted {
                    code: code.into_inner(),
                },
                quinn::ReadError::ConnectionLost(cause) => ShuffleError::ConnectionLost {
                    peer: peer.to_owned(),
                    reason: cause.to_string(),
                },
                other => ShuffleError::ConnectionLost {
                    peer: peer.to_owned(),
                    reason: other.to_string(),
                },
            })
        })?;
        let Some(count) = read else {
            decoder.finish().map_err(|err| Some(err.into()))?;
            return if ended {
                Ok(())
            } else {
                Err(Some(ShuffleError::UnexpectedEnd))
            };
        };
        for chunk in &mut chunks[..count] {
            let chunk = std::mem::take(chunk);
            counters
                .received
                .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let mut input = &chunk[..];
            while let Some(frame) = decoder.decode(&mut input).map_err(|err| Some(err.into()))? {
                if ended {
                    return Err(Some(ShuffleError::DataAfterEnd));
                }
                let message = decode_message::<T>(frame).map_err(|err| Some(err.into()))?;
                if let ShuffleMessage::Event(event) = &message {
                    ended = event.is_terminal();
                }
                tx.send(Ok(message)).await.map_err(|_| None)?;
            }
        }
    }
}
