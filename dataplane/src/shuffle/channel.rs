//! Names of logical channels and the header that opens each stream.

use super::frame::{FrameError, FrameKind, encode_frame};
use crate::checksum::Fnv1a64;
use bytes::Bytes;

/// One logical channel: records of one edge of one job from one producer subtask to one consumer
/// subtask, in one execution attempt (a restarted job uses a new attempt, so late frames of the
/// old attempt can never be mistaken for new ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    pub job: u128,
    pub attempt: u32,
    pub edge: u32,
    pub producer: u32,
    pub consumer: u32,
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:032x}/{}/edge-{}/{}->{}",
            self.job, self.attempt, self.edge, self.producer, self.consumer
        )
    }
}

/// Payload size of the Open frame.
pub const OPEN_PAYLOAD_LEN: usize = 16 + 4 * 4 + 8;

/// What the first frame of a stream says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelHeader {
    pub channel: ChannelId,
    /// Fingerprint of the record type (see [`record_type_fingerprint`]).
    pub record_type: u64,
}

impl ChannelHeader {
    pub fn encode(&self) -> Bytes {
        let mut payload = [0u8; OPEN_PAYLOAD_LEN];
        payload[0..16].copy_from_slice(&self.channel.job.to_le_bytes());
        payload[16..20].copy_from_slice(&self.channel.attempt.to_le_bytes());
        payload[20..24].copy_from_slice(&self.channel.edge.to_le_bytes());
        payload[24..28].copy_from_slice(&self.channel.producer.to_le_bytes());
        payload[28..32].copy_from_slice(&self.channel.consumer.to_le_bytes());
        payload[32..40].copy_from_slice(&self.record_type.to_le_bytes());
        encode_frame(FrameKind::Open, 0, &payload)
    }

    pub fn decode(payload: &[u8]) -> Result<Self, FrameError> {
        if payload.len() != OPEN_PAYLOAD_LEN {
            return Err(FrameError::InvalidPayload {
                kind: FrameKind::Open,
                reason: format!(
                    "payload is {} bytes, expected {OPEN_PAYLOAD_LEN}",
                    payload.len()
                ),
            });
        }
        let mut job = [0u8; 16];
        job.copy_from_slice(&payload[0..16]);
        let word = |at: usize| {
            u32::from_le_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ])
        };
        let mut record_type = [0u8; 8];
        record_type.copy_from_slice(&payload[32..40]);
        Ok(Self {
            channel: ChannelId {
                job: u128::from_le_bytes(job),
                attempt: word(16),
                edge: word(20),
                producer: word(24),
                consumer: word(28),
            },
            record_type: u64::from_le_bytes(record_type),
        })
    }
}

/// Identifies a record type between two processes of the same build: FNV-1a over the type's
/// name and its archived size and alignment. It catches a consumer wired to the wrong edge, not
/// a malicious peer (bytecheck does that).
pub fn record_type_fingerprint<T: rkyv::Archive>() -> u64 {
    let name = std::any::type_name::<T>();
    let size = std::mem::size_of::<T::Archived>() as u64;
    let align = std::mem::align_of::<T::Archived>() as u64;
    Fnv1a64::new()
        .write(name.as_bytes())
        .write(&size.to_le_bytes())
        .write(&align.to_le_bytes())
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle::frame::{FrameDecoder, HEADER_LEN};

    #[test]
    fn header_round_trips() {
        let header = ChannelHeader {
            channel: ChannelId {
                job: u128::MAX - 5,
                attempt: 2,
                edge: 3,
                producer: 4,
                consumer: 5,
            },
            record_type: record_type_fingerprint::<u64>(),
        };
        let bytes = header.encode();
        assert_eq!(bytes.len(), HEADER_LEN + OPEN_PAYLOAD_LEN);
        let mut input = &bytes[..];
        let frame = FrameDecoder::new(64).decode(&mut input).unwrap().unwrap();
        assert_eq!(frame.header.kind, FrameKind::Open);
        assert_eq!(ChannelHeader::decode(&frame.payload).unwrap(), header);
        assert!(ChannelHeader::decode(&frame.payload[1..]).is_err());
        assert_ne!(
            record_type_fingerprint::<u64>(),
            record_type_fingerprint::<u32>()
        );
    }

    /// The fingerprint travels in every stream header: pin it so that a change of the hashing
    /// cannot go unnoticed (FNV-1a-64 of `"u64"`, then size 8 and alignment 8 as LE u64s).
    #[test]
    fn fingerprint_is_pinned() {
        assert_eq!(record_type_fingerprint::<u64>(), 0xaf4c_548b_cc96_4472);
        assert_eq!(record_type_fingerprint::<u32>(), 0x9764_b957_2e2e_ab91);
    }
}
