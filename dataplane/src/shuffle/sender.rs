//! The producer's handle on one remote channel, and the task that moves its frames into QUIC.
//!
//! The handle is used from operator threads: `send_batch` serializes straight into the pending
//! frame and blocks while the channel's queue is full, which is how QUIC flow control (a full
//! stream window stops the writer) reaches the producer as backpressure. The writer task owns the
//! QUIC stream; it also ships a partial frame when the buffer timeout expires, so a slow source
//! still sees its records leave within `execution.buffer-timeout`.

use super::batch::ShuffleRecord;
use super::channel::ChannelId;
use super::error::ShuffleError;
use super::event::ChannelEvent;
use super::outbox::Outbox;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

/// QUIC application error codes used on shuffle streams.
pub mod codes {
    /// The producer failed or dropped its sender without finishing.
    pub const PRODUCER_ABORTED: u32 = 1;
    /// The consumer received a malformed frame.
    pub const PROTOCOL_ERROR: u32 = 2;
    /// The consumer dropped its receiver.
    pub const CONSUMER_GONE: u32 = 3;
    /// A stream for a channel that is already open.
    pub const DUPLICATE_CHANNEL: u32 = 4;
    /// Too many streams wait for receivers that were never registered.
    pub const UNROUTABLE: u32 = 5;
    /// The stream header did not arrive in time or was malformed.
    pub const BAD_HEADER: u32 = 6;
    /// The wrong record type for the registered receiver.
    pub const TYPE_MISMATCH: u32 = 7;
}

/// State shared by a [`RemoteSender`] and its writer task.
#[derive(Debug)]
pub(crate) struct SenderShared {
    pub(crate) outbox: Mutex<Outbox>,
    /// Signalled when room frees up or the channel ends (the producer waits on it).
    pub(crate) changed: Condvar,
    /// Wakes the writer: a frame is ready, a timer must be armed, or the channel failed.
    pub(crate) wake_writer: tokio::sync::Notify,
}

/// Sending end of one logical channel to another executor.
///
/// Blocking methods must be called from a thread that is not a tokio worker (operator threads,
/// `spawn_blocking`). Drop it without [`RemoteSender::finish`] or [`RemoteSender::cancel`] and
/// the consumer sees the channel fail with `ProducerAborted`, never a silent end.
#[derive(Debug)]
pub struct RemoteSender<T> {
    shared: Arc<SenderShared>,
    channel: ChannelId,
    closed: bool,
    _records: PhantomData<fn(&T)>,
}

impl<T: ShuffleRecord> RemoteSender<T> {
    pub(crate) fn new(shared: Arc<SenderShared>, channel: ChannelId) -> Self {
        Self {
            shared,
            channel,
            closed: false,
            _records: PhantomData,
        }
    }

    /// The channel this sender feeds.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// Queues `records` for the consumer, blocking while the channel's queue is full.
    pub fn send_batch(&mut self, records: &[T]) -> Result<(), ShuffleError> {
        let mut rest = records;
        let mut outbox = self.shared.outbox.lock();
        while !rest.is_empty() {
            while !outbox.has_room() && outbox.failure().is_none() {
                self.shared.changed.wait(&mut outbox);
            }
            let had_pending = outbox.has_pending();
            let sealed_before = outbox.frames_sealed();
            let taken = outbox.push_records(rest, Instant::now())?;
            rest = &rest[taken..];
            if outbox.frames_sealed() != sealed_before || !had_pending {
                self.shared.wake_writer.notify_one();
            }
        }
        Ok(())
    }

    /// Sends an in-band event. For a priority barrier, returns the queued data frames it
    /// overtook (to be stored with the checkpoint as in-flight data); otherwise empty.
    pub fn send_event(&mut self, event: ChannelEvent) -> Result<Vec<Bytes>, ShuffleError> {
        let overtaken = self.shared.outbox.lock().push_event(event)?;
        if event.is_terminal() {
            self.closed = true;
        }
        self.shared.wake_writer.notify_one();
        Ok(overtaken)
    }

    /// Ships the pending partial frame now.
    pub fn flush(&mut self) -> Result<(), ShuffleError> {
        self.shared.outbox.lock().flush()?;
        self.shared.wake_writer.notify_one();
        Ok(())
    }

    /// Ends the channel with `EndOfPartition` and blocks until the consumer's executor has
    /// received everything (or the channel fails).
    pub fn finish(mut self) -> Result<(), ShuffleError> {
        self.send_event(ChannelEvent::EndOfPartition)?;
        self.wait_done()
    }

    /// Ends the channel with `Cancel`, dropping queued data, and waits until it is delivered.
    pub fn cancel(mut self) -> Result<(), ShuffleError> {
        self.send_event(ChannelEvent::Cancel)?;
        self.wait_done()
    }

    fn wait_done(&self) -> Result<(), ShuffleError> {
        let mut outbox = self.shared.outbox.lock();
        loop {
            if let Some(err) = outbox.failure() {
                return Err(err.clone());
            }
            if outbox.is_done() {
                return Ok(());
            }
            self.shared.changed.wait(&mut outbox);
        }
    }

    /// The channel's failure so far, if any (a failure is also returned by the next send).
    pub fn check(&self) -> Result<(), ShuffleError> {
        match self.shared.outbox.lock().failure() {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// Bytes this channel holds in memory right now (pending, queued and being written).
    pub fn buffered_bytes(&self) -> usize {
        self.shared.outbox.lock().buffered_bytes()
    }

    /// The most bytes this channel ever held at once.
    pub fn high_water_bytes(&self) -> usize {
        self.shared.outbox.lock().high_water_bytes()
    }
}

impl<T> Drop for RemoteSender<T> {
    fn drop(&mut self) {
        if !self.closed {
            self.shared
                .outbox
                .lock()
                .fail(ShuffleError::ProducerAborted {
                    code: codes::PRODUCER_ABORTED as u64,
                });
            self.shared.wake_writer.notify_one();
        }
    }
}

enum Step {
    Write(Bytes),
    Finish,
    Wait(Option<Instant>),
    Fail(ShuffleError),
}

/// Owns the QUIC send stream of one channel until the channel ends.
pub(crate) async fn run_writer(
    shared: Arc<SenderShared>,
    mut stream: quinn::SendStream,
    peer: String,
    counters: Arc<super::endpoint::TrafficCounters>,
) {
    // If the runtime drops this task (shutdown), the producer must not wait forever.
    let guard = WriterGone(shared.clone());
    let result = write_frames(&shared, &mut stream, &peer, &counters).await;
    match result {
        Ok(()) => shared.outbox.lock().on_finished(),
        Err(err) => {
            // Tell the consumer at once; a no-op if the stream is already gone.
            let _ = stream.reset(quinn::VarInt::from_u32(codes::PRODUCER_ABORTED));
            tracing::debug!(peer = %peer, error = %err, "shuffle channel failed on the sending side");
            shared.outbox.lock().fail(err);
        }
    }
    drop(guard);
}

/// Wakes the producer when the writer task ends, fails the channel if it ended early.
struct WriterGone(Arc<SenderShared>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        {
            let mut outbox = self.0.outbox.lock();
            if !outbox.is_done() {
                outbox.fail(ShuffleError::EndpointClosed);
            }
        }
        self.0.changed.notify_all();
    }
}

fn connection_lost(peer: &str, err: impl std::fmt::Display) -> ShuffleError {
    ShuffleError::ConnectionLost {
        peer: peer.to_owned(),
        reason: err.to_string(),
    }
}

async fn write_frames(
    shared: &SenderShared,
    stream: &mut quinn::SendStream,
    peer: &str,
    counters: &super::endpoint::TrafficCounters,
) -> Result<(), ShuffleError> {
    loop {
        let step = {
            let mut outbox = shared.outbox.lock();
            if let Some(err) = outbox.failure() {
                Step::Fail(err.clone())
            } else if let Some(frame) = outbox.poll_transmit(Instant::now()) {
                Step::Write(frame)
            } else if outbox.is_drained() {
                Step::Finish
            } else {
                Step::Wait(outbox.poll_timeout())
            }
        };
        match step {
            Step::Fail(err) => return Err(err),
            Step::Write(frame) => {
                let len = frame.len();
                stream.write_chunk(frame).await.map_err(|err| match err {
                    quinn::WriteError::Stopped(code) => ShuffleError::ConsumerStopped {
                        code: code.into_inner(),
                    },
                    quinn::WriteError::ConnectionLost(cause) => connection_lost(peer, cause),
                    other => connection_lost(peer, other),
                })?;
                counters
                    .sent
                    .fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                shared.outbox.lock().on_written(len);
                shared.changed.notify_all();
            }
            Step::Finish => {
                let _ = stream.finish();
                return match stream.stopped().await {
                    Ok(None) => Ok(()),
                    Ok(Some(code)) => Err(ShuffleError::ConsumerStopped {
                        code: code.into_inner(),
                    }),
                    Err(quinn::StoppedError::ConnectionLost(cause)) => {
                        Err(connection_lost(peer, cause))
                    }
                    Err(err) => Err(connection_lost(peer, err)),
                };
            }
            Step::Wait(deadline) => {
                let timer = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shared.wake_writer.notified() => {}
                    _ = timer => {}
                    stopped = stream.stopped() => {
                        return Err(match stopped {
                            Ok(code) => ShuffleError::ConsumerStopped {
                                code: code.map_or(0, |c| c.into_inner()),
                            },
                            Err(quinn::StoppedError::ConnectionLost(cause)) => connection_lost(peer, cause),
                            Err(err) => connection_lost(peer, err),
                        });
                    }
                }
            }
        }
    }
}
