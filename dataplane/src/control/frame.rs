//! Framing of the control stream, and a sans-IO decoder for it.
//!
//! Every message is one frame: a 4-byte big-endian length, then that many bytes of protobuf.
//!
//! ```text
//! offset size field
//!      0    4 length of the message, u32 big-endian, at most the receiver's max_frame_bytes
//!      4    n the protobuf encoding of one TaskManagerMessage / JobManagerMessage
//! ```
//!
//! There is no magic or checksum, unlike the shuffle's frames: the control stream carries few,
//! small messages, QUIC's AEAD protects them in transit, and protobuf decoding rejects most
//! garbage anyway. The length is checked against the limit before anything is buffered for the
//! body, so a peer announcing 4 GiB costs nothing.

use bytes::{Buf, Bytes, BytesMut};

/// Size of the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;
/// Default largest message a receiver accepts (`ControlConfig::max_frame_bytes`).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why bytes from a peer are not a valid frame. Either one ends the connection.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error(
        "control frame of {len} bytes exceeds the maximum of {max} bytes (raise max_frame_bytes on the receiving side if such messages are legitimate)"
    )]
    Oversized { len: u64, max: usize },
    #[error(
        "control stream ended in the middle of a frame ({have} of {need} bytes): the peer stopped mid-message"
    )]
    Truncated { have: usize, need: usize },
}

/// Frames one message. A message longer than `u32::MAX` bytes cannot be represented: its length
/// prefix saturates, which every receiver refuses as oversized (the maximum frame size is far
/// below that). Use [`encode_frame_within`] to get that error on the sending side instead.
pub fn encode_frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let prefix = u32::try_from(len).unwrap_or(u32::MAX);
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX_LEN + len);
    out.extend_from_slice(&prefix.to_be_bytes());
    // Writing into a BytesMut only fails when the buffer cannot grow, which it always can.
    if message.encode(&mut out).is_err() {
        out.truncate(LENGTH_PREFIX_LEN);
    }
    out.freeze()
}

/// Frames one message, refusing one that the peer would refuse as larger than `max_frame_bytes`.
pub fn encode_frame_within(
    message: &impl prost::Message,
    max_frame_bytes: usize,
) -> Result<Bytes, FrameError> {
    let len = message.encoded_len();
    if len > max_frame_bytes || u32::try_from(len).is_err() {
        return Err(FrameError::Oversized {
            len: len as u64,
            max: max_frame_bytes,
        });
    }
    Ok(encode_frame(message))
}

/// Sans-IO frame decoder: [`feed`](Self::feed) it whatever chunks the stream yields and take
/// whole frames out with [`next_frame`](Self::next_frame).
///
/// Memory is bounded by what was fed and not yet taken out: the decoder never reserves space
/// for a frame's announced length, and refuses a length above the limit as soon as the prefix is
/// complete. After an error the decoder is poisoned and returns the same error again.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
    buffer: BytesMut,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder accepting messages of at most `max_frame_bytes` bytes.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes,
            buffer: BytesMut::new(),
            failed: None,
        }
    }

    /// Appends bytes received from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// Bytes fed and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole frame's message bytes, `None` if more input is needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let Some(len) = self.announced_len() else {
            return Ok(None);
        };
        if len > self.max_frame_bytes as u64 {
            let err = FrameError::Oversized {
                len,
                max: self.max_frame_bytes,
            };
            self.failed = Some(err.clone());
            self.buffer = BytesMut::new();
            return Err(err);
        }
        // `len` is at most `max_frame_bytes`, a usize.
        let need = LENGTH_PREFIX_LEN + len as usize;
        if self.buffer.len() < need {
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX_LEN);
        Ok(Some(
            self.buffer.split_to(need - LENGTH_PREFIX_LEN).freeze(),
        ))
    }

    /// Call at the end of the stream: an error if it stopped inside a frame. Take every whole
    /// frame out with [`next_frame`](Self::next_frame) first.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        let need = match self.announced_len() {
            Some(len) => {
                LENGTH_PREFIX_LEN.saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            }
            None => LENGTH_PREFIX_LEN,
        };
        Err(FrameError::Truncated {
            have: self.buffer.len(),
            need,
        })
    }

    fn announced_len(&self) -> Option<u64> {
        let prefix: [u8; LENGTH_PREFIX_LEN] =
            self.buffer.get(..LENGTH_PREFIX_LEN)?.try_into().ok()?;
        Some(u64::from(u32::from_be_bytes(prefix)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesoflow_proto::control::{
        Heartbeat, RegisterTaskManager, TaskManagerMessage, task_manager_message::Kind,
    };
    use proptest::prelude::*;
    use prost::Message;

    fn message(n: u64, id: &str) -> TaskManagerMessage {
        if n.is_multiple_of(2) {
            TaskManagerMessage {
                kind: Some(Kind::Heartbeat(Heartbeat {
                    sequence: n,
                    metrics: Vec::new(),
                })),
            }
        } else {
            TaskManagerMessage {
                kind: Some(Kind::Register(RegisterTaskManager {
                    protocol_version: 1,
                    task_manager_id: id.to_owned(),
                    slots: n as u32,
                    ..Default::default()
                })),
            }
        }
    }

    #[test]
    fn a_frame_is_a_big_endian_length_and_the_protobuf() {
        let msg = message(1, "tm-1");
        let frame = encode_frame(&msg);
        let body = msg.encode_to_vec();
        assert_eq!(frame[..4], (body.len() as u32).to_be_bytes());
        assert_eq!(frame[4..], body[..]);
        // An empty message is a valid, empty frame.
        let empty = encode_frame(&TaskManagerMessage::default());
        assert_eq!(&empty[..], &[0, 0, 0, 0]);
        let mut decoder = FrameDecoder::new(16);
        decoder.feed(&empty);
        assert_eq!(decoder.next_frame().unwrap().as_deref(), Some(&[][..]));
        assert_eq!(decoder.next_frame().unwrap(), None);
        decoder.finish().unwrap();
    }

    #[test]
    fn oversized_lengths_are_refused_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.feed(&u32::MAX.to_be_bytes());
        let err = decoder.next_frame().unwrap_err();
        assert_eq!(
            err,
            FrameError::Oversized {
                len: u64::from(u32::MAX),
                max: 1024
            }
        );
        assert_eq!(decoder.buffered(), 0);
        // Poisoned: more input is ignored and the error repeats.
        decoder.feed(&[0; 64]);
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.next_frame().unwrap_err(), err);
        assert_eq!(decoder.finish().unwrap_err(), err);

        let big = message(1, &"x".repeat(100));
        assert!(matches!(
            encode_frame_within(&big, 50),
            Err(FrameError::Oversized { max: 50, .. })
        ));
        assert!(encode_frame_within(&big, 1024).is_ok());
    }

    #[test]
    fn a_stream_ending_mid_frame_is_truncated() {
        let frame = encode_frame(&message(3, "tm"));
        for cut in 1..frame.len() {
            let mut decoder = FrameDecoder::new(1024);
            decoder.feed(&frame[..cut]);
            assert_eq!(decoder.next_frame().unwrap(), None);
            let need = if cut < 4 { 4 } else { frame.len() };
            assert_eq!(
                decoder.finish().unwrap_err(),
                FrameError::Truncated { have: cut, need }
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_splits_round_trip(
            seeds in proptest::collection::vec((any::<u64>(), "[a-z0-9-]{0,40}"), 1..20),
            cuts in proptest::collection::vec(0usize..4096, 0..40),
        ) {
            let messages: Vec<TaskManagerMessage> =
                seeds.iter().map(|(n, id)| message(*n, id)).collect();
            let stream: Vec<u8> = messages.iter().flat_map(|m| encode_frame(m).to_vec()).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            let mut got = Vec::new();
            for pair in cuts.windows(2) {
                decoder.feed(&stream[pair[0]..pair[1]]);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.push(TaskManagerMessage::decode(frame).unwrap());
                }
            }
            decoder.finish().unwrap();
            prop_assert_eq!(got, messages);
        }

        #[test]
        fn garbage_never_panics_and_memory_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            max in 0usize..512,
        ) {
            let mut decoder = FrameDecoder::new(max);
            let mut fed = 0usize;
            let mut taken = 0usize;
            for chunk in &chunks {
                decoder.feed(chunk);
                fed += chunk.len();
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => {
                            prop_assert!(frame.len() <= max);
                            taken += LENGTH_PREFIX_LEN + frame.len();
                            // Decoding garbage is an error, never a panic.
                            let _ = TaskManagerMessage::decode(frame);
                        }
                        Ok(None) => break,
                        Err(FrameError::Oversized { len, .. }) => {
                            prop_assert!(len > max as u64);
                            break;
                        }
                        Err(err) => return Err(TestCaseError::fail(format!("unexpected {err}"))),
                    }
                }
                prop_assert!(decoder.buffered() <= fed - taken);
                prop_assert!(decoder.buffered() < LENGTH_PREFIX_LEN + max + 300);
            }
            let _ = decoder.finish();
        }
    }
}
