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
//! The engine plugs this module in behind its channel traits (`runtime::channel`): a
//! [`ChannelEvent`] is the same value on a local and a remote channel, records cross as rkyv
//! archives of timestamped records (`Rec<T>`), validated once in the reader task; the engine's
//! input loop then turns each archived batch into the owned batch its operators take.

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
pub use endpoint::{PeerTraffic, ShuffleEndpoint};
pub use error::ShuffleError;
pub use event::{Barrier, ChannelEvent};
pub use receiver::{ArrivalNotify, RemoteReceiver, ShuffleMessage};
pub use sender::RemoteSender;
pub use tls::{ClusterCa, ExecutorCredentials};
