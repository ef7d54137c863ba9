//! Why a shuffle channel or endpoint failed.

use super::config::ConfigError;
use super::frame::FrameError;
use super::tls::TlsError;

/// Failure of a logical channel (or of the endpoint carrying it). A channel that returned one
/// of these is dead; the runtime fails the subtasks at its ends and restarts from a checkpoint.
#[derive(Debug, thiserror::Error, Clone)]
pub enum ShuffleError {
    #[error("malformed frame from the peer: {0}")]
    Frame(#[from] FrameError),
    #[error("connection to executor '{peer}' lost: {reason}")]
    ConnectionLost { peer: String, reason: String },
    #[error("cannot connect to executor '{peer}' at {addr}: {reason}")]
    Connect {
        peer: String,
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("the consumer stopped the channel (code {code}): it failed or was cancelled")]
    ConsumerStopped { code: u64 },
    #[error(
        "the producer aborted the channel (code {code}): it failed or was dropped without finishing"
    )]
    ProducerAborted { code: u64 },
    #[error("the stream ended without an end-of-partition event: the producer closed it early")]
    UnexpectedEnd,
    #[error("a frame arrived after the channel's end-of-partition or cancel event")]
    DataAfterEnd,
    #[error(
        "one record serializes to more than the maximum frame size of {max} bytes (shuffle.max-frame-bytes)"
    )]
    RecordTooLarge { max: usize },
    #[error("record serialization failed: {0}")]
    Serialize(String),
    #[error("the channel was already finished or cancelled")]
    ChannelClosed,
    #[error(
        "channel {channel} carries records of another type than this receiver expects: the producer and consumer run different builds or job graphs"
    )]
    RecordTypeMismatch { channel: String },
    #[error("channel {channel} is already open")]
    DuplicateChannel { channel: String },
    #[error("peer presented no certificate naming a mesoflow executor")]
    PeerIdentity,
    #[error("the shuffle endpoint is closed")]
    EndpointClosed,
    #[error(transparent)]
    Tls(std::sync::Arc<TlsError>),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("shuffle socket: {0}")]
    Io(String),
}

impl From<TlsError> for ShuffleError {
    fn from(err: TlsError) -> Self {
        Self::Tls(std::sync::Arc::new(err))
    }
}
