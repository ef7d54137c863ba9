//! The I/O shared by both ends: reading frames from a QUIC stream, the writer task that owns
//! the sending half, and reading a peer's identity and close reason.

use super::codes;
use super::error::ControlError;
use super::frame::{FrameDecoder, encode_frame_within};
use crate::shuffle::tls::executor_id_of_certificate;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Largest chunk taken from quinn at once; the decoder copies it, so this bounds one copy.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// QUIC close reasons travel in one packet; longer ones are cut here (on a char boundary).
const MAX_CLOSE_REASON_BYTES: usize = 512;

/// Whole frames from the receiving half of the control stream.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    ended: bool,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream, max_frame_bytes: usize) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(max_frame_bytes),
            ended: false,
        }
    }

    /// The next frame, `None` once the peer finished the stream at a frame boundary.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, ControlError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            if self.ended {
                return Ok(None);
            }
            match self.recv.read_chunk(READ_CHUNK_BYTES, true).await {
                Ok(Some(chunk)) => self.decoder.feed(&chunk.bytes),
                Ok(None) => {
                    self.decoder.finish()?;
                    self.ended = true;
                    return Ok(None);
                }
                Err(err) => return Err(read_error(err)),
            }
        }
    }
}

fn read_error(err: quinn::ReadError) -> ControlError {
    match err {
        quinn::ReadError::ConnectionLost(err) => connection_error(&err),
        quinn::ReadError::Reset(code) => {
            ControlError::ConnectionLost(format!("the peer reset the control stream (code {code})"))
        }
        other => ControlError::ConnectionLost(other.to_string()),
    }
}

/// Why a connection ended, as an error: a refusal by the JobManager becomes
/// [`ControlError::Refused`] with its reason, anything else [`ControlError::ConnectionLost`].
pub(crate) fn connection_error(err: &quinn::ConnectionError) -> ControlError {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            if close.error_code == quinn::VarInt::from_u32(codes::REFUSED) {
                ControlError::Refused(reason)
            } else {
                ControlError::ConnectionLost(format!(
                    "closed by the peer (code {}): {reason}",
                    close.error_code
                ))
            }
        }
        quinn::ConnectionError::TimedOut => ControlError::ConnectionLost(
            "no traffic from the peer within the idle timeout: it crashed or the network is partitioned".into(),
        ),
        other => ControlError::ConnectionLost(other.to_string()),
    }
}

/// The error for a connection whose writer is gone: its close reason if it has one.
pub(crate) fn lost(connection: &quinn::Connection) -> ControlError {
    match connection.close_reason() {
        Some(err) => connection_error(&err),
        None => ControlError::ConnectionLost("the control stream's writer stopped".into()),
    }
}

/// Closes `connection` with an application code and a reason cut to fit one packet.
pub(crate) fn close(connection: &quinn::Connection, code: u32, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    connection.close(quinn::VarInt::from_u32(code), &reason.as_bytes()[..end]);
}

/// The peer's id from its certificate, which TLS verified against the cluster CA.
pub(crate) fn peer_id(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    executor_id_of_certificate(chain.first()?)
}

/// The enqueueing side of a writer task: frames are encoded (and size-checked) by the caller,
/// so a too-large message fails its own `send` instead of the connection.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Bytes>,
    max_frame_bytes: usize,
    capacity: usize,
}

impl Outbox {
    /// An outbox and the receiver its writer task drains.
    pub(crate) fn new(capacity: usize, max_frame_bytes: usize) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx,
                max_frame_bytes,
                capacity,
            },
            rx,
        )
    }

    /// Queues one message without waiting.
    pub(crate) fn push(
        &self,
        message: &impl prost::Message,
        peer: &str,
        connection: &quinn::Connection,
    ) -> Result<(), ControlError> {
        let frame = encode_frame_within(message, self.max_frame_bytes)?;
        self.tx.try_send(frame).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => {
                ControlError::Backlogged(self.capacity, peer.to_owned())
            }
            mpsc::error::TrySendError::Closed(_) => lost(connection),
        })
    }
}

/// Owns the sending half: writes `first` (if any), then every queued frame in order, and
/// finishes the stream once every [`Outbox`] is dropped. A write failure closes the connection,
/// so the reading side reports it.
pub(crate) async fn run_writer(
    mut send: quinn::SendStream,
    first: Option<Bytes>,
    mut frames: mpsc::Receiver<Bytes>,
    connection: quinn::Connection,
    peer: String,
) {
    let result: Result<(), String> = async {
        if let Some(first) = first {
            send.write_chunk(first)
                .await
                .map_err(|err| err.to_string())?;
        }
        while let Some(frame) = frames.recv().await {
            send.write_chunk(frame)
                .await
                .map_err(|err| err.to_string())?;
        }
        send.finish().map_err(|err| err.to_string())
    }
    .await;
    if let Err(reason) = result {
        tracing::debug!(peer = %peer, %reason, "control stream writer stopped");
        close(
            &connection,
            codes::PROTOCOL,
            &format!("cannot write the control stream: {reason}"),
        );
    }
}
