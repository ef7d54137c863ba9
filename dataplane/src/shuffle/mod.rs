//! The shuffle between executors: record batches as rkyv archives over QUIC with mutual TLS.
//!
//! Inside one executor, subtasks exchange batches through crossbeam channels with no
//! serialization (the engine's in-process exchange). Between executors they use this module:
//!
//! - one [`endpoint::ShuffleEndpoint`] per executor (one UDP port), one QUIC connection per pair
//!   of executors, one unidirectional stream per logical channel ([`channel::ChannelId`]: job,
//!   attempt, edge, producer subtask, consumer subtask). QUIC's per-stream flow control is the
//!   backpressure: a slow consumer stops reading, its stream window closes, the producer's
//!   [`sender::RemoteSender::send_batch`] blocks.
//! - each stream is a sequence of [`frame`]s: an Open frame naming the channel, then data frames
//!   ([`batch`]: rkyv archives of record vectors, validated once on arrival and read in place)
//!   and in-band [`event`]s (watermarks, checkpoint barriers, end of partition, cancellation).
//! - TLS 1.3 with certificates from a per-cluster CA ([`tls::ClusterCa`]), verified both ways,
//!   with ring as the only crypto provider.
//!
//! The policy parts are sans-IO and tested without sockets: [`frame::FrameDecoder`],
//! [`outbox::Outbox`] (batching, buffer timeout, bounded queue, priority barriers),
//! [`batch::RecordBatch::validate`]. The tokio shell is [`endpoint`], [`sender`], [`receiver`].
//!
//! The sending side has the same shape as an in-process channel (`send_batch(&[T])`, in-band
//! events, `finish`), so the runtime can pick local or remote per channel; see [`BatchSink`].
//! The engine's control elements map one to one: `Watermark` to [`ChannelEvent::Watermark`],
//! `Idle` to [`ChannelEvent::Idle`], `Barrier(id)` to [`ChannelEvent::Barrier`] (which also
//! carries the trigger timestamp and the unaligned/priority flag), `EndOfInput` to
//! [`ChannelEvent::EndOfPartition`]; `Flush` is [`RemoteSender::flush`]. Records cross as rkyv
//! archives, so a remote channel's record type (e.g. a timestamped record) derives
//! `rkyv::Archive` and `rkyv::Serialize`; the consumer reads `&Archived<T>` in place and
//! deserializes only where an operator must own a value.

pub mod batch;
pub mod channel;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod frame;
pub mod outbox;
pub mod receiver;
pub mod sender;
pub mod tls;

pub use batch::{RecordBatch, ShuffleRecord};
pub use channel::ChannelId;
pub use config::ShuffleConfig;
pub use endpoint::ShuffleEndpoint;
pub use error::ShuffleError;
pub use event::{Barrier, ChannelEvent};
pub use receiver::{RemoteReceiver, ShuffleMessage};
pub use sender::RemoteSender;
pub use tls::{ClusterCa, ExecutorCredentials};

/// The producer-side shape shared by in-process and remote channels, so an operator's output
/// does not care which one the runtime wired it to.
pub trait BatchSink<T> {
    /// The error a broken channel reports.
    type Error;
    /// Hands over a batch of records (the sink may copy or serialize them; the caller keeps
    /// ownership). Blocks while the channel is full.
    fn send_batch(&mut self, records: &[T]) -> Result<(), Self::Error>;
    /// Sends an in-band event in order with the records.
    fn send_event(&mut self, event: ChannelEvent) -> Result<(), Self::Error>;
    /// Ships buffered records now.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

impl<T: ShuffleRecord> BatchSink<T> for RemoteSender<T> {
    type Error = ShuffleError;

    fn send_batch(&mut self, records: &[T]) -> Result<(), ShuffleError> {
        RemoteSender::send_batch(self, records)
    }

    fn send_event(&mut self, event: ChannelEvent) -> Result<(), ShuffleError> {
        RemoteSender::send_event(self, event).map(|_| ())
    }

    fn flush(&mut self) -> Result<(), ShuffleError> {
        RemoteSender::flush(self)
    }
}
