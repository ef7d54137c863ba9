//! The stored form of one piece of state: a checksummed, zstd-compressed frame.
//! (Placeholder until the storage branch lands: uncompressed, checksummed.)

use crate::checksum::fnv1a64;

/// A frame that is not what it claims to be.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SegmentError(String);

/// Frames `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = fnv1a64(payload).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Checks and unframes.
pub fn decode(frame: &[u8]) -> Result<Vec<u8>, SegmentError> {
    let Some((sum, payload)) = frame.split_first_chunk::<8>() else {
        return Err(SegmentError("truncated".into()));
    };
    if u64::from_le_bytes(*sum) != fnv1a64(payload) {
        return Err(SegmentError("checksum mismatch".into()));
    }
    Ok(payload.to_vec())
}

/// Checksum of a whole frame.
pub fn frame_checksum(frame: &[u8]) -> u64 {
    fnv1a64(frame)
}
