//! The frame format every shuffle stream carries, and a sans-IO decoder for it.
//!
//! A stream is a sequence of frames. Each frame is a fixed 16-byte header followed by a payload:
//!
//! ```text
//! offset size field
//!      0    2 magic  b"MF"
//!      2    1 format version (FORMAT_VERSION)
//!      3    1 kind   (FrameKind)
//!      4    1 flags  (FLAG_PRIORITY; other bits must be zero)
//!      5    3 reserved, must be zero
//!      8    4 payload length, u32 little-endian, at most the receiver's max_frame_bytes
//!     12    4 CRC-32 (IEEE) of the payload, u32 little-endian
//! ```
//!
//! The header is 16 bytes so that a payload that follows it in a 16-byte aligned buffer is itself
//! 16-byte aligned: data payloads are rkyv archives, which must be read from aligned memory.
//! The CRC catches corruption that QUIC's AEAD cannot see (a buggy or tampered peer process, bad
//! memory) for a few percent of one core at shuffle rates.
//!
//! [`FrameDecoder`] turns arbitrary byte chunks (as a QUIC stream delivers them) into whole
//! frames, copying each payload exactly once, straight into an [`AlignedVec`].

use bytes::Bytes;
use rkyv::util::AlignedVec;

/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"MF";
/// Version of the frame layout *and* of the rkyv archive format inside data frames. rkyv has no
/// schema evolution, so peers must run the same build; a different version is refused.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 16;
/// Flag: this frame may overtake queued data (priority checkpoint barriers, cancellation).
pub const FLAG_PRIORITY: u8 = 0x01;
/// Alignment of frame payloads and of every archive inside them.
pub const PAYLOAD_ALIGN: usize = 16;

const KNOWN_FLAGS: u8 = FLAG_PRIORITY;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// First frame of every stream: names the logical channel (see `ChannelHeader`).
    Open = 1,
    /// One or more rkyv archives of record batches (see `batch`).
    Data = 2,
    /// Event-time watermark.
    Watermark = 3,
    /// Checkpoint barrier.
    Barrier = 4,
    /// The producer finished this partition; no frame follows.
    EndOfPartition = 5,
    /// The producer was cancelled; no frame follows.
    Cancel = 6,
    /// The producer is idle: leave it out of the watermark minimum until it sends again.
    Idle = 7,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Open,
            2 => Self::Data,
            3 => Self::Watermark,
            4 => Self::Barrier,
            5 => Self::EndOfPartition,
            6 => Self::Cancel,
            7 => Self::Idle,
            _ => return None,
        })
    }
}

/// Why bytes from a peer are not a valid frame. Any of these fails the channel.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error(
        "frame does not start with the mesoflow magic (got {0:02x?}): the peer is not a mesoflow shuffle sender or the stream is corrupt"
    )]
    BadMagic([u8; 2]),
    #[error(
        "frame format version {got} is not supported (this build speaks {FORMAT_VERSION}): run the same mesoflow build on every executor"
    )]
    UnsupportedVersion { got: u8 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame header has unknown flags {flags:#04x} or non-zero reserved bytes")]
    BadHeaderBits { flags: u8 },
    #[error(
        "frame payload of {len} bytes exceeds the maximum of {max} bytes (shuffle.max-frame-bytes)"
    )]
    Oversized { len: u64, max: usize },
    #[error(
        "frame payload checksum mismatch (header {expected:#010x}, payload {actual:#010x}): the frame was corrupted or tampered with"
    )]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("stream ended in the middle of a frame ({have} of {need} bytes of the {part})")]
    Truncated {
        part: &'static str,
        have: usize,
        need: usize,
    },
    #[error("invalid {kind:?} frame: {reason}")]
    InvalidPayload { kind: FrameKind, reason: String },
}

/// A parsed, checked frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u8,
    pub payload_len: u32,
    pub checksum: u32,
}

impl FrameHeader {
    /// Is the priority flag set?
    pub fn is_priority(&self) -> bool {
        self.flags & FLAG_PRIORITY != 0
    }

    /// Writes this header into its 16-byte wire form.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = FORMAT_VERSION;
        out[3] = self.kind as u8;
        out[4] = self.flags;
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// Parses and checks a header; `max_payload` is the largest payload this receiver accepts.
    pub fn decode(bytes: &[u8; HEADER_LEN], max_payload: usize) -> Result<Self, FrameError> {
        let magic = [bytes[0], bytes[1]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if bytes[2] != FORMAT_VERSION {
            return Err(FrameError::UnsupportedVersion { got: bytes[2] });
        }
        let kind = FrameKind::from_byte(bytes[3]).ok_or(FrameError::UnknownKind(bytes[3]))?;
        let flags = bytes[4];
        if flags & !KNOWN_FLAGS != 0 || bytes[5..8] != [0, 0, 0] {
            return Err(FrameError::BadHeaderBits { flags });
        }
        let payload_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if payload_len as u64 > max_payload as u64 {
            return Err(FrameError::Oversized {
                len: payload_len as u64,
                max: max_payload,
            });
        }
        let checksum = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        Ok(Self {
            kind,
            flags,
            payload_len,
            checksum,
        })
    }
}

/// A whole frame as received: checked header and CRC-verified payload in aligned memory.
#[derive(Debug)]
pub struct Frame {
    pub header: FrameHeader,
    /// Starts at a 16-byte aligned address, so rkyv archives in it can be accessed in place.
    pub payload: AlignedVec,
}

/// Builds one frame with a small, non-archive payload (control frames, the stream header).
pub fn encode_frame(kind: FrameKind, flags: u8, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        kind,
        flags,
        payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        checksum: crc32fast::hash(payload),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Sans-IO frame decoder: feed it whatever chunks the stream yields, get whole frames out.
///
/// Memory is bounded by one frame: a header announcing more than `max_payload` bytes is refused
/// before anything is allocated.
#[derive(Debug)]
pub struct FrameDecoder {
    max_payload: usize,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    body: Option<(FrameHeader, AlignedVec)>,
}

impl FrameDecoder {
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            header: [0; HEADER_LEN],
            header_filled: 0,
            body: None,
        }
    }

    /// Consumes bytes from the front of `input` until one frame is complete (returned) or
    /// `input` is empty (`Ok(None)`). Call again with the rest of `input` after a frame.
    /// After an error the stream is unusable: the caller fails the channel.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some((header, mut body)) = self.body.take() {
                let need = header.payload_len as usize - body.len();
                let take = need.min(input.len());
                body.extend_from_slice(&input[..take]);
                *input = &input[take..];
                if body.len() < header.payload_len as usize {
                    self.body = Some((header, body));
                    return Ok(None);
                }
                let actual = crc32fast::hash(&body);
                if actual != header.checksum {
                    return Err(FrameError::ChecksumMismatch {
                        expected: header.checksum,
                        actual,
                    });
                }
                return Ok(Some(Frame {
                    header,
                    payload: body,
                }));
            }
            if input.is_empty() {
                return Ok(None);
            }
            let take = (HEADER_LEN - self.header_filled).min(input.len());
            self.header[self.header_filled..self.header_filled + take]
                .copy_from_slice(&input[..take]);
            self.header_filled += take;
            *input = &input[take..];
            if self.header_filled < HEADER_LEN {
                return Ok(None);
            }
            self.header_filled = 0;
            let header = FrameHeader::decode(&self.header, self.max_payload)?;
            self.body = Some((
                header,
                AlignedVec::with_capacity(header.payload_len as usize),
            ));
        }
    }

    /// Call at the end of the stream: an error if the stream stopped inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some((header, body)) = &self.body {
            return Err(FrameError::Truncated {
                part: "payload",
                have: body.len(),
                need: header.payload_len as usize,
            });
        }
        if self.header_filled > 0 {
            return Err(FrameError::Truncated {
                part: "header",
                have: self.header_filled,
                need: HEADER_LEN,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], chunk: usize) -> Result<Vec<Frame>, FrameError> {
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut frames = Vec::new();
        for mut piece in bytes.chunks(chunk) {
            while let Some(frame) = decoder.decode(&mut piece)? {
                frames.push(frame);
            }
        }
        decoder.finish()?;
        Ok(frames)
    }

    #[test]
    fn header_round_trips_and_layout_is_fixed() {
        let frame = encode_frame(FrameKind::Watermark, FLAG_PRIORITY, &[1, 2, 3]);
        assert_eq!(
            &frame[..HEADER_LEN],
            &[
                b'M', b'F', 1, 3, 1, 0, 0, 0, 3, 0, 0, 0, 0x1d, 0x80, 0xbc, 0x55
            ]
        );
        let frames = decode_all(&frame, 1).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].header.kind, FrameKind::Watermark);
        assert!(frames[0].header.is_priority());
        assert_eq!(&frames[0].payload[..], &[1, 2, 3]);
        assert_eq!(frames[0].payload.as_ptr() as usize % PAYLOAD_ALIGN, 0);
    }

    #[test]
    fn several_frames_in_odd_chunks() {
        let mut stream = Vec::new();
        for i in 0..10u8 {
            stream.extend_from_slice(&encode_frame(FrameKind::Data, 0, &vec![i; i as usize * 7]));
        }
        for chunk in [1, 3, 16, 17, 1000] {
            let frames = decode_all(&stream, chunk).unwrap();
            assert_eq!(frames.len(), 10);
            for (i, frame) in frames.iter().enumerate() {
                assert_eq!(frame.payload.len(), i * 7);
                assert!(frame.payload.iter().all(|&b| b == i as u8));
            }
        }
    }

    #[test]
    fn refuses_bad_headers() {
        let good = encode_frame(FrameKind::Cancel, 0, b"");
        let mut bad_magic = good.to_vec();
        bad_magic[0] = b'X';
        assert_eq!(
            decode_all(&bad_magic, 64).unwrap_err(),
            FrameError::BadMagic([b'X', b'F'])
        );
        let mut bad_version = good.to_vec();
        bad_version[2] = 9;
        assert_eq!(
            decode_all(&bad_version, 64).unwrap_err(),
            FrameError::UnsupportedVersion { got: 9 }
        );
        let mut bad_kind = good.to_vec();
        bad_kind[3] = 0;
        assert_eq!(
            decode_all(&bad_kind, 64).unwrap_err(),
            FrameError::UnknownKind(0)
        );
        let mut bad_flags = good.to_vec();
        bad_flags[4] = 0x80;
        assert_eq!(
            decode_all(&bad_flags, 64).unwrap_err(),
            FrameError::BadHeaderBits { flags: 0x80 }
        );
        let mut reserved = good.to_vec();
        reserved[6] = 1;
        assert!(matches!(
            decode_all(&reserved, 64),
            Err(FrameError::BadHeaderBits { .. })
        ));
    }

    #[test]
    fn refuses_oversized_length_before_allocating() {
        let mut header = FrameHeader {
            kind: FrameKind::Data,
            flags: 0,
            payload_len: u32::MAX,
            checksum: 0,
        }
        .encode()
        .to_vec();
        header.extend_from_slice(&[0; 8]);
        let err = decode_all(&header, 64).unwrap_err();
        assert_eq!(
            err,
            FrameError::Oversized {
                len: u32::MAX as u64,
                max: 1 << 20
            }
        );
    }

    #[test]
    fn truncation_and_tampering_are_detected() {
        let frame = encode_frame(FrameKind::Data, 0, &[7; 100]);
        assert_eq!(
            decode_all(&frame[..HEADER_LEN + 40], 7).unwrap_err(),
            FrameError::Truncated {
                part: "payload",
                have: 40,
                need: 100
            }
        );
        assert_eq!(
            decode_all(&frame[..5], 7).unwrap_err(),
            FrameError::Truncated {
                part: "header",
                have: 5,
                need: HEADER_LEN
            }
        );
        let mut tampered = frame.to_vec();
        tampered[HEADER_LEN + 50] ^= 0x10;
        assert!(matches!(
            decode_all(&tampered, 7),
            Err(FrameError::ChecksumMismatch { .. })
        ));
    }
}
