//! Settings of the control channel: frame limit, liveness timers and queue bounds.

use super::frame::DEFAULT_MAX_FRAME_BYTES;
use std::time::Duration;

/// Largest `max_frame_bytes` accepted: control messages are small, and staying far below
/// `u32::MAX` keeps a saturated length prefix (see `encode_frame`) always oversized.
pub const MAX_FRAME_BYTES_LIMIT: usize = 1024 * 1024 * 1024;

/// How the control channel is tuned. [`ControlConfig::default`] suits a data-centre network;
/// [`ControlConfig::validate`] refuses combinations that cannot work. Both ends should use the
/// same values (each end enforces its own `max_frame_bytes` on what it receives).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// Largest message accepted from the peer; a larger length prefix closes the connection.
    pub max_frame_bytes: usize,
    /// QUIC keep-alive interval: keeps an idle but healthy connection from timing out.
    pub keep_alive: Duration,
    /// A connection that has heard nothing (not even keep-alives) for this long is dead: this is
    /// how a crashed or partitioned peer is detected.
    pub idle_timeout: Duration,
    /// Bound on connecting: the TLS handshake plus the Register / Accepted exchange.
    pub handshake_timeout: Duration,
    /// Heartbeat interval the JobManager announces in `RegistrationAccepted` (the transport does
    /// not enforce it; QUIC's idle timeout already detects dead connections).
    pub heartbeat_interval: Duration,
    /// Messages queued towards one peer before `send` fails with a backlog error instead of
    /// buffering without bound for a peer that stopped reading.
    pub send_queue_messages: usize,
    /// Events the JobManager side buffers before its connections stop reading (backpressure
    /// towards the TaskManagers through QUIC flow control).
    pub event_queue_messages: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            send_queue_messages: 1024,
            event_queue_messages: 1024,
        }
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid control channel configuration: {0}")]
pub struct ControlConfigError(pub String);

impl ControlConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ControlConfigError> {
        let fail = |msg: String| Err(ControlConfigError(msg));
        if self.max_frame_bytes == 0 || self.max_frame_bytes > MAX_FRAME_BYTES_LIMIT {
            return fail(format!(
                "max_frame_bytes ({}) must be between 1 and {MAX_FRAME_BYTES_LIMIT}",
                self.max_frame_bytes
            ));
        }
        if self.keep_alive.is_zero() || self.keep_alive * 2 > self.idle_timeout {
            return fail(format!(
                "keep_alive ({:?}) must be non-zero and at most half of idle_timeout ({:?})",
                self.keep_alive, self.idle_timeout
            ));
        }
        if self.idle_timeout > Duration::from_secs(3600) {
            return fail(format!(
                "idle_timeout ({:?}) must be at most one hour",
                self.idle_timeout
            ));
        }
        if self.handshake_timeout.is_zero() {
            return fail("handshake_timeout must be non-zero".into());
        }
        if self.heartbeat_interval.is_zero() {
            return fail("heartbeat_interval must be non-zero".into());
        }
        if self.send_queue_messages == 0 || self.event_queue_messages == 0 {
            return fail("send_queue_messages and event_queue_messages must be at least 1".into());
        }
        Ok(())
    }

    /// The quinn transport for one side. The TaskManager opens the only stream, so the
    /// JobManager (`accepts_stream`) allows one bidirectional stream and the TaskManager none;
    /// neither side accepts unidirectional streams.
    pub(crate) fn transport(&self, accepts_stream: bool) -> quinn::TransportConfig {
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(u32::from(accepts_stream)))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
            .keep_alive_interval(Some(self.keep_alive))
            // Validated: at most an hour, far below QUIC's limit.
            .max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_timeout).ok());
        transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = ControlConfig::default();
        config.validate().unwrap();
        assert_eq!(config.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(config.keep_alive, Duration::from_secs(1));
        assert_eq!(config.idle_timeout, Duration::from_secs(10));
        assert_eq!(config.handshake_timeout, Duration::from_secs(10));
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let bad = [
            ControlConfig {
                keep_alive: Duration::from_secs(6),
                ..Default::default()
            },
            ControlConfig {
                keep_alive: Duration::ZERO,
                ..Default::default()
            },
            ControlConfig {
                max_frame_bytes: 0,
                ..Default::default()
            },
            ControlConfig {
                max_frame_bytes: MAX_FRAME_BYTES_LIMIT + 1,
                ..Default::default()
            },
            ControlConfig {
                idle_timeout: Duration::from_secs(7200),
                ..Default::default()
            },
            ControlConfig {
                handshake_timeout: Duration::ZERO,
                ..Default::default()
            },
            ControlConfig {
                send_queue_messages: 0,
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
