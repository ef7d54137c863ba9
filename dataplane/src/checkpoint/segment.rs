//! The stored form of one piece of state: a checksummed, zstd-compressed frame.
//!
//! Layout (little endian), a fixed [`HEADER_LEN`]-byte header then the compressed payload:
//!
//! | offset | size | field                                             |
//! |--------|------|---------------------------------------------------|
//! | 0      | 4    | magic `MFSG`                                      |
//! | 4      | 1    | format version ([`FORMAT_VERSION`])               |
//! | 5      | 1    | codec ([`CODEC_ZSTD`])                            |
//! | 6      | 2    | reserved, zero                                    |
//! | 8      | 8    | raw (uncompressed) length                         |
//! | 16     | 8    | stored (compressed) length                        |
//! | 24     | 8    | FNV-1a-64 of the stored bytes                     |
//!
//! The frame is self-describing so a segment can be checked on its own (a torn upload, a flipped
//! bit on disk) before any state is rebuilt from it. The checkpoint metadata additionally keeps
//! [`frame_checksum`] of each whole frame, which covers the header as well.

use crate::checksum::fnv1a64;

/// The first four bytes of every segment.
pub const MAGIC: [u8; 4] = *b"MFSG";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// Codec id of zstd.
pub const CODEC_ZSTD: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 32;
/// Largest raw payload a segment may claim (2 GiB). A larger claim is treated as corruption:
/// one operator's state for one key-group range never legitimately gets that big, and honouring
/// a corrupt length would mean allocating whatever the header says.
pub const MAX_RAW_LEN: u64 = 2 << 30;

/// zstd level 1: checkpoints are written on the hot path of a running job, and level 1
/// compresses several times faster than level 3 for a ratio only a few percent worse on the
/// serialized records state holds; decompression speed is the same for both.
const ZSTD_LEVEL: i32 = 1;

/// What is wrong with a frame that [`decode`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Fewer bytes than the header, or than the header announces.
    #[error("truncated: header says {expected} bytes, {present} present")]
    Truncated {
        /// Bytes the frame should have (header plus stored length).
        expected: u64,
        /// Bytes actually present.
        present: u64,
    },
    /// More bytes than the header announces.
    #[error("trailing bytes: header says {expected} bytes, {present} present")]
    TrailingBytes {
        /// Bytes the frame should have.
        expected: u64,
        /// Bytes actually present.
        present: u64,
    },
    /// Not a segment at all.
    #[error("bad magic: expected {expected:02x?}, found {found:02x?}")]
    BadMagic {
        /// [`MAGIC`].
        expected: [u8; 4],
        /// The first four bytes.
        found: [u8; 4],
    },
    /// Written by a build with a different format.
    #[error("unsupported segment format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u8),
    /// An unknown compression codec.
    #[error("unsupported segment codec {0} (this build reads codec {CODEC_ZSTD}, zstd)")]
    UnsupportedCodec(u8),
    /// The reserved header bytes are not zero.
    #[error("reserved header bytes are not zero: {0:02x?}")]
    Reserved([u8; 2]),
    /// The raw length is over [`MAX_RAW_LEN`].
    #[error("raw length {raw_len} exceeds the {max} byte limit of a segment")]
    TooLarge {
        /// The raw length the header claims.
        raw_len: u64,
        /// [`MAX_RAW_LEN`].
        max: u64,
    },
    /// The stored bytes are not the ones that were written.
    #[error("checksum mismatch: stored {stored:016x}, computed {computed:016x}")]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u64,
        /// The checksum of the stored bytes present.
        computed: u64,
    },
    /// zstd refused the payload, or it did not expand to the announced length.
    #[error("corrupt compressed payload: {0}")]
    Decompress(String),
}

/// Compresses `payload` into a frame.
///
/// # Panics
/// Only when zstd cannot allocate its compression context (out of memory).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    // zstd's one-shot compression sizes its output with ZSTD_compressBound and uses a fixed,
    // valid level, so it fails only when a compression context cannot be allocated: the same
    // out-of-memory condition on which any Vec allocation aborts the process.
    let compressed = zstd::bulk::compress(payload, ZSTD_LEVEL)
        .expect("in-memory zstd compression fails only when out of memory");
    let mut frame = Vec::with_capacity(HEADER_LEN + compressed.len());
    frame.extend_from_slice(&MAGIC);
    frame.push(FORMAT_VERSION);
    frame.push(CODEC_ZSTD);
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    frame.extend_from_slice(&(compressed.len() as u64).to_le_bytes());
    frame.extend_from_slice(&fnv1a64(&compressed).to_le_bytes());
    frame.extend_from_slice(&compressed);
    frame
}

/// Checks `frame` and returns the payload it holds.
///
/// Everything the header claims is checked against the frame itself before any memory is
/// sized from it, so a corrupt or hostile header cannot cause a huge allocation.
pub fn decode(frame: &[u8]) -> Result<Vec<u8>, SegmentError> {
    let present = frame.len() as u64;
    let Some(header) = frame.first_chunk::<HEADER_LEN>() else {
        return Err(SegmentError::Truncated {
            expected: HEADER_LEN as u64,
            present,
        });
    };
    let field = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let magic = [header[0], header[1], header[2], header[3]];
    if magic != MAGIC {
        return Err(SegmentError::BadMagic {
            expected: MAGIC,
            found: magic,
        });
    }
    if header[4] != FORMAT_VERSION {
        return Err(SegmentError::UnsupportedVersion(header[4]));
    }
    if header[5] != CODEC_ZSTD {
        return Err(SegmentError::UnsupportedCodec(header[5]));
    }
    if header[6..8] != [0, 0] {
        return Err(SegmentError::Reserved([header[6], header[7]]));
    }
    let raw_len = field(8);
    let stored_len = field(16);
    let stored_checksum = field(24);

    let expected = stored_len.saturating_add(HEADER_LEN as u64);
    if present < expected {
        return Err(SegmentError::Truncated { expected, present });
    }
    if present > expected {
        return Err(SegmentError::TrailingBytes { expected, present });
    }
    if raw_len > MAX_RAW_LEN {
        return Err(SegmentError::TooLarge {
            raw_len,
            max: MAX_RAW_LEN,
        });
    }
    let stored = &frame[HEADER_LEN..];
    let computed = fnv1a64(stored);
    if computed != stored_checksum {
        return Err(SegmentError::ChecksumMismatch {
            stored: stored_checksum,
            computed,
        });
    }
    // The header's raw length is not covered by the checksum: before reserving that much, it
    // must agree with the content size zstd recorded inside the (checksummed) frame.
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) if size == raw_len => {}
        Ok(Some(size)) => {
            return Err(SegmentError::Decompress(format!(
                "zstd frame holds {size} bytes, header says {raw_len}"
            )));
        }
        Ok(None) => {
            return Err(SegmentError::Decompress(
                "zstd frame does not record its content size".into(),
            ));
        }
        Err(_) => return Err(SegmentError::Decompress("not a zstd frame".into())),
    }
    // Under the cap and confirmed twice: reserving exactly that much is safe, and zstd refuses
    // to write past it.
    let capacity = usize::try_from(raw_len).map_err(|_| SegmentError::TooLarge {
        raw_len,
        max: MAX_RAW_LEN,
    })?;
    let payload = zstd::bulk::decompress(stored, capacity)
        .map_err(|e| SegmentError::Decompress(e.to_string()))?;
    if payload.len() as u64 != raw_len {
        return Err(SegmentError::Decompress(format!(
            "expanded to {} bytes, header says {raw_len}",
            payload.len()
        )));
    }
    Ok(payload)
}

/// FNV-1a-64 of a whole frame, header included: what the checkpoint metadata records per
/// segment, so a reader can check a downloaded segment before decoding it.
pub fn frame_checksum(frame: &[u8]) -> u64 {
    fnv1a64(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Half-compressible: runs of a repeated byte between random ones.
                if i % 64 < 32 { b'a' } else { x as u8 }
            })
            .collect()
    }

    #[test]
    fn round_trips_empty_small_and_large_payloads() {
        for payload in [
            Vec::new(),
            b"hello, state".to_vec(),
            pseudo_random(10 * 1024 * 1024, 7),
        ] {
            let frame = encode(&payload);
            assert_eq!(&frame[..4], b"MFSG");
            assert_eq!(decode(&frame).as_deref(), Ok(payload.as_slice()));
            assert_eq!(frame_checksum(&frame), fnv1a64(&frame));
        }
    }

    #[test]
    fn header_fields_are_little_endian_at_their_offsets() {
        let payload = pseudo_random(1000, 3);
        let frame = encode(&payload);
        assert_eq!(frame[4], FORMAT_VERSION);
        assert_eq!(frame[5], CODEC_ZSTD);
        assert_eq!(&frame[6..8], &[0, 0]);
        assert_eq!(&frame[8..16], &1000u64.to_le_bytes());
        let stored_len = (frame.len() - HEADER_LEN) as u64;
        assert_eq!(&frame[16..24], &stored_len.to_le_bytes());
        assert_eq!(&frame[24..32], &fnv1a64(&frame[HEADER_LEN..]).to_le_bytes());
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let frame = encode(&pseudo_random(300, 11));
        for i in 0..frame.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = frame.clone();
                bad[i] ^= flip;
                assert!(
                    decode(&bad).is_err(),
                    "flipping byte {i} with {flip:#04x} went unnoticed"
                );
                assert_ne!(frame_checksum(&bad), frame_checksum(&frame));
            }
        }
    }

    #[test]
    fn a_corrupt_payload_names_both_checksums() {
        let mut frame = encode(b"some state bytes");
        let last = frame.len() - 1;
        frame[last] ^= 0x55;
        let err = decode(&frame).unwrap_err();
        assert!(matches!(err, SegmentError::ChecksumMismatch { .. }));
        assert!(err.to_string().starts_with("checksum mismatch: stored "));
    }

    #[test]
    fn truncation_at_every_length_is_detected() {
        let frame = encode(&pseudo_random(500, 5));
        for len in 0..frame.len() {
            let err = decode(&frame[..len]).unwrap_err();
            assert!(
                matches!(err, SegmentError::Truncated { present, .. } if present == len as u64),
                "prefix of {len} bytes: {err}"
            );
        }
        let err = decode(&frame[..HEADER_LEN + 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "truncated: header says {} bytes, {} present",
                frame.len(),
                HEADER_LEN + 1
            )
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode(b"abc");
        frame.push(0);
        assert!(matches!(
            decode(&frame),
            Err(SegmentError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn a_huge_raw_length_is_refused_before_allocating() {
        // A consistent frame (lengths and checksum right) whose header claims far more raw
        // bytes than allowed: refused by the cap, not by an allocation failure.
        let mut frame = encode(b"tiny");
        frame[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            decode(&frame),
            Err(SegmentError::TooLarge {
                raw_len: u64::MAX,
                max: MAX_RAW_LEN
            })
        );
        frame[8..16].copy_from_slice(&(MAX_RAW_LEN + 1).to_le_bytes());
        assert!(decode(&frame).unwrap_err().to_string().contains("exceeds"));

        // A stored length near u64::MAX must not overflow or be believed either.
        let mut frame = encode(b"tiny");
        frame[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(&frame),
            Err(SegmentError::Truncated { .. })
        ));
    }

    #[test]
    fn a_raw_length_that_lies_within_the_cap_is_caught() {
        // Header raw length smaller and larger than the real payload: both disagree with the
        // content size inside the zstd frame, checked before anything is allocated.
        for claimed in [3u64, 10_000] {
            let mut frame = encode(&pseudo_random(1000, 9));
            frame[8..16].copy_from_slice(&claimed.to_le_bytes());
            assert!(
                matches!(decode(&frame), Err(SegmentError::Decompress(_))),
                "claimed {claimed}"
            );
        }
    }

    #[test]
    fn other_header_fields_are_validated() {
        let frame = encode(b"x");
        let mut bad = frame.clone();
        bad[4] = 2;
        assert_eq!(decode(&bad), Err(SegmentError::UnsupportedVersion(2)));
        let mut bad = frame.clone();
        bad[5] = 9;
        assert_eq!(decode(&bad), Err(SegmentError::UnsupportedCodec(9)));
        let mut bad = frame.clone();
        bad[7] = 1;
        assert_eq!(decode(&bad), Err(SegmentError::Reserved([0, 1])));
        let mut bad = frame;
        bad[0] = b'X';
        assert!(matches!(decode(&bad), Err(SegmentError::BadMagic { .. })));
    }
}
