//! The control channel between the JobManager and its TaskManagers: registration, heartbeats,
//! deployments, cancellation (the messages of `mesoflow_proto::control`).
//!
//! **Transport.** Each TaskManager keeps one QUIC connection to the JobManager ([`ControlClient`]
//! dials it, [`ControlServer`] accepts it) with one bidirectional stream, opened by the
//! TaskManager. QUIC rather than TCP plus TLS because:
//!
//! - it reuses what the shuffle already has: the per-cluster CA, mutual TLS 1.3 and the
//!   rustls/ring stack ([`crate::shuffle::tls`]), so there is no second TLS dependency and one
//!   place that decides what a valid peer is;
//! - QUIC keep-alives and the idle timeout detect a dead or partitioned peer without an
//!   application-level timer on every read;
//! - the control connection is separate from the shuffle's data connections (its own endpoint
//!   and port), so a deploy or cancel message never queues behind megabytes of records.
//!
//! **Identity.** Both ends verify the peer's certificate chain against the cluster CA in the
//! handshake; a TaskManager's id is read from its verified certificate, and its Register message
//! must name the same id. The TaskManager checks that the server's certificate names the
//! JobManager id it meant to reach. The TLS configuration is the shuffle's, ALPN included, so a
//! shuffle endpoint that dials the control port by mistake passes the handshake; it is refused
//! by the protocol instead (no unidirectional streams are allowed, and no Register arrives).
//!
//! **Framing.** Every message is a 4-byte big-endian length and the protobuf bytes
//! ([`frame`]); a length above [`ControlConfig::max_frame_bytes`] closes the connection without
//! allocating the claimed size.
//!
//! **Registration.** The first frame from a TaskManager must be a `Register` with this build's
//! `PROTOCOL_VERSION` and the certificate's id. The JobManager answers `RegistrationAccepted`,
//! or `RegistrationRefused` and closes the connection with [`codes::REFUSED`] and the reason
//! (so the reason arrives even if the refusal frame does not). A second registration under the
//! same id replaces the first connection (a restarted TaskManager), which is closed with
//! [`codes::REPLACED`].
//!
//! The framing is sans-IO and tested without sockets ([`frame::FrameDecoder`]); the tokio
//! shell is [`server`] and [`client`].

pub mod client;
pub mod config;
pub mod error;
pub mod frame;
pub mod server;
mod stream;

pub use client::{ControlClient, ControlReceiver, ControlSender};
pub use config::{ControlConfig, ControlConfigError};
pub use error::ControlError;
pub use server::{ControlEvent, ControlServer};

/// QUIC application error codes with which either side closes a control connection.
pub mod codes {
    /// Orderly shutdown of either side.
    pub const SHUTDOWN: u32 = 0;
    /// The JobManager refused the registration; the close reason says why.
    pub const REFUSED: u32 = 1;
    /// The peer broke the protocol: malformed or oversized frame, unexpected message.
    pub const PROTOCOL: u32 = 2;
    /// A newer registration with the same TaskManager id replaced this connection.
    pub const REPLACED: u32 = 3;
}
