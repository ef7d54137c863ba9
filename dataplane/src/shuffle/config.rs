//! Settings of the shuffle: batching, bounds and the QUIC transport tuned for bulk data.

use std::time::Duration;

/// Everything the shuffle can be tuned by. [`ShuffleConfig::default`] suits a data-centre network;
/// [`ShuffleConfig::validate`] refuses combinations that cannot work.
#[derive(Clone, Debug, PartialEq)]
pub struct ShuffleConfig {
    /// A data frame is shipped once it holds this many bytes (`shuffle.batch-bytes`).
    pub batch_bytes: usize,
    /// A non-empty, non-full frame is shipped after waiting this long (`execution.buffer-timeout`,
    /// as in Flink). Zero ships after every `send_batch` call.
    pub buffer_timeout: Duration,
    /// Largest frame payload a receiver accepts; a peer announcing more fails the channel.
    pub max_frame_bytes: usize,
    /// Bytes of sealed frames a sender may queue before `send_batch` blocks (backpressure).
    pub sender_queue_bytes: usize,
    /// Validated frames a receiver may hold before it stops reading the stream (backpressure).
    pub receiver_queue_frames: usize,
    /// QUIC per-stream receive window: in-flight bytes per logical channel.
    pub stream_receive_window: u32,
    /// QUIC per-connection receive window, shared by all channels between two executors.
    pub connection_receive_window: u32,
    /// QUIC per-connection send buffer.
    pub send_window: u64,
    /// How many channels a peer may have open towards us at once.
    pub max_concurrent_streams: u32,
    /// A connection with no traffic for this long is declared dead.
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be well under `idle_timeout`.
    pub keep_alive: Duration,
    /// Requested UDP socket send and receive buffer sizes (the kernel may cap them).
    pub socket_buffer_bytes: usize,
    /// An incoming stream must name its channel within this time.
    pub stream_header_timeout: Duration,
    /// Incoming streams that arrived before their receiver was registered, at most.
    pub max_parked_streams: usize,
}

impl Default for ShuffleConfig {
    fn default() -> Self {
        Self {
            batch_bytes: 64 * 1024,
            buffer_timeout: Duration::from_millis(1),
            max_frame_bytes: 16 * 1024 * 1024,
            sender_queue_bytes: 256 * 1024,
            receiver_queue_frames: 8,
            stream_receive_window: 2 * 1024 * 1024,
            connection_receive_window: 32 * 1024 * 1024,
            send_window: 32 * 1024 * 1024,
            max_concurrent_streams: 4096,
            idle_timeout: Duration::from_secs(15),
            keep_alive: Duration::from_secs(3),
            socket_buffer_bytes: 8 * 1024 * 1024,
            stream_header_timeout: Duration::from_secs(10),
            max_parked_streams: 4096,
        }
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid shuffle configuration: {0}")]
pub struct ConfigError(pub String);

impl ShuffleConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.batch_bytes == 0 {
            return fail("batch_bytes must be at least 1".into());
        }
        if self.max_frame_bytes < self.batch_bytes || self.max_frame_bytes > u32::MAX as usize {
            return fail(format!(
                "max_frame_bytes ({}) must be between batch_bytes ({}) and 4 GiB",
                self.max_frame_bytes, self.batch_bytes
            ));
        }
        if self.sender_queue_bytes == 0 || self.receiver_queue_frames == 0 {
            return fail("sender_queue_bytes and receiver_queue_frames must be at least 1".into());
        }
        if self.keep_alive.is_zero() || self.keep_alive * 2 > self.idle_timeout {
            return fail(format!(
                "keep_alive ({:?}) must be non-zero and at most half of idle_timeout ({:?})",
                self.keep_alive, self.idle_timeout
            ));
        }
        if self.idle_timeout > Duration::from_secs(3600) {
            return fail("idle_timeout must be at most one hour".into());
        }
        if self.stream_receive_window == 0
            || self.connection_receive_window < self.stream_receive_window
        {
            return fail(
                "connection_receive_window must be at least stream_receive_window (> 0)".into(),
            );
        }
        if self.max_concurrent_streams == 0 {
            return fail("max_concurrent_streams must be at least 1".into());
        }
        Ok(())
    }

    /// Applies one `key: value` setting in Flink's configuration style, e.g.
    /// `execution.buffer-timeout: 5 ms` or `shuffle.batch-bytes: 32768`. Unknown keys are errors so
    /// that typos are not silently ignored.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        let bytes = || {
            value
                .parse::<usize>()
                .map_err(|_| ConfigError(format!("{key}: expected a byte count, got '{value}'")))
        };
        match key {
            "execution.buffer-timeout" => self.buffer_timeout = parse_duration(key, value)?,
            "shuffle.batch-bytes" => self.batch_bytes = bytes()?,
            "shuffle.max-frame-bytes" => self.max_frame_bytes = bytes()?,
            "shuffle.sender-queue-bytes" => self.sender_queue_bytes = bytes()?,
            "shuffle.idle-timeout" => self.idle_timeout = parse_duration(key, value)?,
            "shuffle.keep-alive" => self.keep_alive = parse_duration(key, value)?,
            _ => return Err(ConfigError(format!("unknown shuffle setting '{key}'"))),
        }
        Ok(())
    }

    /// The quinn transport configuration these settings describe.
    pub fn transport(&self) -> quinn::TransportConfig {
        let mut transport = quinn::TransportConfig::default();
        transport
            .stream_receive_window(quinn::VarInt::from_u32(self.stream_receive_window))
            .receive_window(quinn::VarInt::from_u32(self.connection_receive_window))
            .send_window(self.send_window)
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(self.max_concurrent_streams))
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0))
            .keep_alive_interval(Some(self.keep_alive))
            // Validated above: at most an hour, far below QUIC's limit.
            .max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_timeout).ok())
            // quinn uses GSO (and GRO) wherever the platform supports it; keep it on explicitly.
            .enable_segmentation_offload(true);
        transport
    }
}

/// A duration setting, read by the one duration parser (`100` alone is milliseconds, as in Flink).
fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    crate::duration::parse_duration(value).map_err(|e| ConfigError(format!("{key}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bulk_sized() {
        let config = ShuffleConfig::default();
        config.validate().unwrap();
        assert_eq!(config.buffer_timeout, Duration::from_millis(1));
        assert!(config.keep_alive * 2 <= config.idle_timeout);
    }

    #[test]
    fn flink_style_keys() {
        let mut config = ShuffleConfig::default();
        config.set("execution.buffer-timeout", "5 ms").unwrap();
        assert_eq!(config.buffer_timeout, Duration::from_millis(5));
        config.set("execution.buffer-timeout", "100").unwrap();
        assert_eq!(config.buffer_timeout, Duration::from_millis(100));
        config.set("execution.buffer-timeout", "0").unwrap();
        assert_eq!(config.buffer_timeout, Duration::ZERO);
        config.set("shuffle.batch-bytes", "32768").unwrap();
        assert_eq!(config.batch_bytes, 32768);
        assert!(config.set("execution.buffer-timeout", "soon").is_err());
        assert!(config.set("shuffle.batch-bytes", "-1").is_err());
        assert!(config.set("shuffle.batch-byte", "1").is_err());
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let mut config = ShuffleConfig {
            keep_alive: Duration::from_secs(10),
            ..Default::default()
        };
        assert!(config.validate().is_err());
        config = ShuffleConfig {
            max_frame_bytes: 10,
            ..Default::default()
        };
        assert!(config.validate().is_err());
        config = ShuffleConfig {
            batch_bytes: 0,
            ..Default::default()
        };
        assert!(config.validate().is_err());
    }
}
