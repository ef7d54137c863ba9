//! Why a control connection could not be set up or was lost.

use super::config::ControlConfigError;
use super::frame::FrameError;
use crate::shuffle::tls::TlsError;
use std::net::SocketAddr;
use std::time::Duration;

/// Failure of the control channel. On the TaskManager side any of these after registration
/// means the JobManager is gone: the TaskManager should stop its subtasks and reconnect or exit.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] ControlConfigError),
    #[error("control channel TLS setup: {0} (check the certificates issued by the cluster CA)")]
    Tls(#[from] TlsError),
    #[error("control channel must be started inside a tokio runtime")]
    NoRuntime,
    #[error("cannot bind the control socket on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(
        "cannot connect to the JobManager '{server_id}' at {addr}: {reason} (is it running, reachable over UDP, and does it hold a certificate from the same cluster CA?)"
    )]
    Connect {
        server_id: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("the JobManager refused the registration: {0}")]
    Refused(String),
    #[error(
        "no answer to the registration within {0:?}: the JobManager is overloaded or not a mesoflow control endpoint (raise handshake_timeout if it is just slow)"
    )]
    RegistrationTimeout(Duration),
    #[error("control connection lost: {0}")]
    ConnectionLost(String),
    #[error("malformed control frame: {0}")]
    Frame(#[from] FrameError),
    #[error(
        "malformed control message: {0} (the peer runs an incompatible build or the stream is corrupt)"
    )]
    Decode(#[from] prost::DecodeError),
    #[error("control protocol violation: {0}")]
    Protocol(String),
    #[error("TaskManager '{0}' is not connected to this JobManager")]
    UnknownTaskManager(String),
    #[error(
        "{0} queued control messages to '{1}' are not yet sent: the peer stopped reading (raise send_queue_messages if bursts are expected)"
    )]
    Backlogged(usize, String),
    #[error("the control channel is closed")]
    Closed,
}
