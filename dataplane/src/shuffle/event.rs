//! In-band control events: they travel on the same stream as the data, in order with it, so a
//! consumer sees exactly the records that precede a watermark or a barrier.
//!
//! Checkpoint barriers carry a *priority* flag. An aligned barrier queues behind the data sent
//! before it. A priority (unaligned) barrier is put at the head of the sender's frame queue,
//! overtaking data that is queued but not yet handed to QUIC; the sender returns copies of the
//! overtaken data frames so the producer can store them as in-flight channel state of the
//! checkpoint, as unaligned checkpoints require. Data that QUIC already accepted cannot be
//! overtaken on the same stream; the consumer side treats it as in-flight input when it sees a
//! priority barrier (that part belongs to the checkpoint code that consumes these events).

use super::frame::{FLAG_PRIORITY, FrameError, FrameKind, encode_frame};
use bytes::Bytes;

pub use crate::element::{Barrier, ChannelEvent};

impl ChannelEvent {
    /// Encodes the event as one frame.
    pub fn encode(&self) -> Bytes {
        let flags = if self.is_priority() { FLAG_PRIORITY } else { 0 };
        match self {
            Self::Watermark(ts) => encode_frame(FrameKind::Watermark, flags, &ts.to_le_bytes()),
            Self::Barrier(barrier) => {
                let mut payload = [0u8; 16];
                payload[..8].copy_from_slice(&barrier.checkpoint_id.to_le_bytes());
                payload[8..].copy_from_slice(&barrier.timestamp_ms.to_le_bytes());
                encode_frame(FrameKind::Barrier, flags, &payload)
            }
            Self::Idle => encode_frame(FrameKind::Idle, flags, &[]),
            Self::EndOfPartition => encode_frame(FrameKind::EndOfPartition, flags, &[]),
            Self::Cancel => encode_frame(FrameKind::Cancel, flags, &[]),
        }
    }

    /// Decodes a control frame's payload. `kind` must be a control kind.
    pub fn decode(kind: FrameKind, priority: bool, payload: &[u8]) -> Result<Self, FrameError> {
        let expect = |len: usize| {
            if payload.len() == len {
                Ok(())
            } else {
                Err(FrameError::InvalidPayload {
                    kind,
                    reason: format!("payload is {} bytes, expected {len}", payload.len()),
                })
            }
        };
        let le_u64 = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let event = match kind {
            FrameKind::Watermark => {
                expect(8)?;
                Self::Watermark(le_u64(0) as i64)
            }
            FrameKind::Barrier => {
                expect(16)?;
                Self::Barrier(Barrier {
                    checkpoint_id: le_u64(0),
                    timestamp_ms: le_u64(8) as i64,
                    priority,
                })
            }
            FrameKind::Idle => {
                expect(0)?;
                Self::Idle
            }
            FrameKind::EndOfPartition => {
                expect(0)?;
                Self::EndOfPartition
            }
            FrameKind::Cancel => {
                expect(0)?;
                Self::Cancel
            }
            FrameKind::Open | FrameKind::Data => {
                return Err(FrameError::InvalidPayload {
                    kind,
                    reason: "not a control frame".into(),
                });
            }
        };
        if event.is_priority() != priority {
            return Err(FrameError::InvalidPayload {
                kind,
                reason: format!("priority flag {priority} is not allowed for this event"),
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle::frame::{FrameDecoder, HEADER_LEN};

    fn round_trip(event: ChannelEvent) -> ChannelEvent {
        let bytes = event.encode();
        let mut input = &bytes[..];
        let frame = FrameDecoder::new(1024).decode(&mut input).unwrap().unwrap();
        assert!(input.is_empty());
        ChannelEvent::decode(
            frame.header.kind,
            frame.header.is_priority(),
            &frame.payload,
        )
        .unwrap()
    }

    #[test]
    fn events_round_trip() {
        for event in [
            ChannelEvent::Watermark(-5),
            ChannelEvent::Watermark(i64::MAX),
            ChannelEvent::Barrier(Barrier {
                checkpoint_id: 42,
                timestamp_ms: 1_700_000_000_000,
                priority: false,
            }),
            ChannelEvent::Barrier(Barrier {
                checkpoint_id: u64::MAX,
                timestamp_ms: 0,
                priority: true,
            }),
            ChannelEvent::Idle,
            ChannelEvent::EndOfPartition,
            ChannelEvent::Cancel,
        ] {
            assert_eq!(round_trip(event), event);
        }
    }

    #[test]
    fn barrier_wire_bytes() {
        let bytes = ChannelEvent::Barrier(Barrier {
            checkpoint_id: 7,
            timestamp_ms: 9,
            priority: true,
        })
        .encode();
        assert_eq!(bytes[3], FrameKind::Barrier as u8);
        assert_eq!(bytes[4], FLAG_PRIORITY);
        assert_eq!(
            &bytes[HEADER_LEN..],
            &[7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn wrong_lengths_and_flags_are_refused() {
        assert!(ChannelEvent::decode(FrameKind::Watermark, false, &[0; 7]).is_err());
        assert!(ChannelEvent::decode(FrameKind::Barrier, false, &[0; 17]).is_err());
        assert!(ChannelEvent::decode(FrameKind::EndOfPartition, false, &[0]).is_err());
        assert!(ChannelEvent::decode(FrameKind::Watermark, true, &[0; 8]).is_err());
        assert!(ChannelEvent::decode(FrameKind::Cancel, false, &[]).is_err());
        assert!(ChannelEvent::decode(FrameKind::Data, false, &[]).is_err());
    }
}
