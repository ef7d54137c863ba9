//! What flows through a job: batches of timestamped records and in-band control elements.
//!
//! Records always travel in batches (`Vec<Rec<T>>`): a channel send or a virtual call per record
//! would cap throughput far below what the engine aims for. Control elements (watermarks, idleness,
//! checkpoint barriers, end of input) travel in the same order as the records around them.

use rkyv::api::high::HighDeserializer;

use crate::shuffle::ShuffleRecord;

/// Timestamp of a record that never had one assigned.
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// The largest watermark: emitted at the end of a bounded input so that every timer fires.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// Any type that can flow through a stream.
///
/// Like Flink, which needs a serializer for every stream type, every stream type can cross
/// processes: the plan decides only at deployment whether a channel stays inside an executor
/// (moved, never serialized) or crosses to another one (an rkyv archive over the QUIC shuffle,
/// validated on arrival). Derive it with
/// `#[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]`; primitives, tuples,
/// `String`, `Vec` and `Option` already qualify. `Sync`, because a snapshot shares frozen
/// state with the uploader.
pub trait Data:
    Clone
    + Send
    + Sync
    + 'static
    + ShuffleRecord
    + rkyv::Archive<Archived: rkyv::Deserialize<Self, HighDeserializer<rkyv::rancor::Error>>>
{
}
impl<T> Data for T where
    T: Clone
        + Send
        + Sync
        + 'static
        + ShuffleRecord
        + rkyv::Archive<Archived: rkyv::Deserialize<T, HighDeserializer<rkyv::rancor::Error>>>
{
}

/// One record and its event timestamp (milliseconds since the epoch, or [`NO_TIMESTAMP`]).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Rec<T> {
    /// Event time of the record.
    pub ts: i64,
    /// The record itself.
    pub value: T,
}

impl<T> Rec<T> {
    /// A record with a timestamp.
    #[inline]
    pub fn new(ts: i64, value: T) -> Self {
        Self { ts, value }
    }

    /// A record without a timestamp.
    #[inline]
    pub fn untimed(value: T) -> Self {
        Self {
            ts: NO_TIMESTAMP,
            value,
        }
    }
}

/// A batch of records: the unit of every exchange.
pub type Batch<T> = Vec<Rec<T>>;

/// A checkpoint barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Barrier {
    /// Checkpoint id, increasing per job.
    pub checkpoint_id: u64,
    /// When the coordinator triggered the checkpoint, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Unaligned barrier: it may overtake data queued before it (see `shuffle::event`).
    pub priority: bool,
}

impl Barrier {
    /// An aligned barrier.
    pub fn aligned(checkpoint_id: u64, timestamp_ms: i64) -> Self {
        Self {
            checkpoint_id,
            timestamp_ms,
            priority: false,
        }
    }
}

/// The in-band events of a channel, the same for local (crossbeam) and remote (QUIC) channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelEvent {
    /// No record with an event time at or below this (milliseconds) follows on this channel.
    Watermark(i64),
    /// The producer has no data for a while: consumers leave this channel out of their
    /// watermark minimum until a record or watermark arrives on it again.
    Idle,
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The producer subtask finished: the channel ends cleanly after this.
    EndOfPartition,
    /// The producer subtask was cancelled: the channel ends after this, without its queued data.
    Cancel,
}

impl ChannelEvent {
    /// Does this event overtake queued data?
    pub fn is_priority(&self) -> bool {
        match self {
            Self::Barrier(barrier) => barrier.priority,
            Self::Cancel => true,
            Self::Watermark(_) | Self::Idle | Self::EndOfPartition => false,
        }
    }

    /// Does this event end the channel?
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::EndOfPartition | Self::Cancel)
    }
}

/// Control elements inside a subtask's chain. The first four cross channels (as
/// [`ChannelEvent`]s); the last two exist only inside a subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// No record with a timestamp `<=` this value will follow.
    Watermark(i64),
    /// The sender has no data for a while; receivers leave it out of the watermark minimum until
    /// it sends a record or a watermark again.
    Idle,
    /// A checkpoint barrier: state snapshots are taken when it has arrived on every input.
    Barrier(Barrier),
    /// The sender will send nothing more.
    EndOfInput,
    /// The subtask's processing-time clock advanced to this value (ms since the epoch).
    ProcessingTime(i64),
    /// Ship partially filled buffers now (bounds latency when input is slow).
    Flush,
}

impl Control {
    /// The channel event this control element becomes when it leaves the subtask, if it does.
    pub fn to_event(self) -> Option<ChannelEvent> {
        match self {
            Control::Watermark(w) => Some(ChannelEvent::Watermark(w)),
            Control::Idle => Some(ChannelEvent::Idle),
            Control::Barrier(b) => Some(ChannelEvent::Barrier(b)),
            Control::EndOfInput => Some(ChannelEvent::EndOfPartition),
            Control::ProcessingTime(_) | Control::Flush => None,
        }
    }
}

/// What a channel carries, local or remote: one vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<T> {
    /// A batch of records.
    Batch(Batch<T>),
    /// An in-band event.
    Event(ChannelEvent),
}
