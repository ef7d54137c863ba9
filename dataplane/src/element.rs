//! What flows through a job: batches of timestamped records and in-band control elements.
//!
//! Records always travel in batches (`Vec<Rec<T>>`): a channel send or a virtual call per record
//! would cap throughput far below what the engine aims for. Control elements (watermarks, idleness,
//! checkpoint barriers, end of input) travel in the same order as the records around them.

/// Timestamp of a record that never had one assigned.
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// The largest watermark: emitted at the end of a bounded input so that every timer fires.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// Any type that can flow through a stream.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// One record and its event timestamp (milliseconds since the epoch, or [`NO_TIMESTAMP`]).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Control elements. The first four cross channels; the last two exist only inside a subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// No record with a timestamp `<=` this value will follow.
    Watermark(i64),
    /// The sender has no data for a while; receivers leave it out of the watermark minimum until
    /// it sends a record or a watermark again.
    Idle,
    /// Checkpoint barrier `id`: state snapshots are taken when it has arrived on every input.
    Barrier(u64),
    /// The sender will send nothing more.
    EndOfInput,
    /// The subtask's processing-time clock advanced to this value (ms since the epoch).
    ProcessingTime(i64),
    /// Ship partially filled buffers now (bounds latency when input is slow).
    Flush,
}

/// What a channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<T> {
    /// A batch of records.
    Batch(Batch<T>),
    /// An in-band control element.
    Control(Control),
}
