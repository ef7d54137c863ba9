//! RecordIO: the framing of the Mesos scheduler and executor event streams.
//!
//! Each record is `<length>\n<bytes>`: the record's byte count in ASCII decimal, one LF, then
//! exactly that many bytes (one serialized `Event`). Nothing separates records. HTTP chunk
//! boundaries have no relation to record boundaries (a proxy may re-chunk), so the decoder is
//! incremental: feed it whatever bytes arrived and it yields every complete record.
//!
//! Two ways to decode the same format:
//! - [`RecordDecoder`] implements [`tokio_util::codec::Decoder`], for `FramedRead` over a byte
//!   stream;
//! - [`RecordDecoder::push`] / [`RecordDecoder::next_record`] / [`RecordDecoder::finish`] work
//!   without tokio (e.g. in a sans-IO state machine fed with body chunks).
//!
//! A length header that is not a number, too long, or larger than the configured maximum
//! record size is unrecoverable (the stream position is lost): the decoder fails and stays
//! failed, and the caller should drop the connection. A stream that ends inside a record is
//! [`RecordIoError::Truncated`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default maximum size of one record: 64 MiB. Mesos events are far smaller (a large OFFERS
/// event is a few MiB); the bound keeps a corrupt or hostile length from exhausting memory.
pub const DEFAULT_MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

/// Most digits a length header may have: `u64::MAX` has 20.
pub const MAX_LENGTH_DIGITS: usize = 20;

/// Largest buffer reservation made ahead of a record's bytes, so a large announced length does
/// not allocate before the bytes actually arrive.
const MAX_RESERVE: usize = 1024 * 1024;

/// Why a RecordIO stream could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordIoError {
    /// A byte other than an ASCII digit (or the LF ending it) in a length header.
    #[error(
        "RecordIO length header contains byte 0x{byte:02x} ({shown}) after {digits} digit(s); \
         expected ASCII decimal digits then '\\n': the stream is not RecordIO or is corrupt, \
         drop the connection",
        shown = show_byte(*byte)
    )]
    NonNumericLength {
        /// The offending byte.
        byte: u8,
        /// How many digits of the header preceded it.
        digits: usize,
    },
    /// A length header with no digits (the record started with `\n`).
    #[error(
        "RecordIO length header is empty (a record started with '\\n'); expected ASCII decimal \
         digits: the stream is corrupt, drop the connection"
    )]
    EmptyLength,
    /// A length header with more than [`MAX_LENGTH_DIGITS`] digits or above `u64::MAX`.
    #[error(
        "RecordIO length header has more than {MAX_LENGTH_DIGITS} digits or overflows u64: \
         the stream is corrupt, drop the connection"
    )]
    LengthOverflow,
    /// A record longer than the decoder's maximum record size.
    #[error(
        "RecordIO record of {len} bytes exceeds the maximum record size of {max} bytes: \
         the stream is corrupt or hostile (raise the limit only if the peer really sends \
         records this large)"
    )]
    RecordTooLarge {
        /// The announced record length (or the part of it read before it exceeded `max`).
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended inside a record.
    #[error("{}", describe_truncation(*expected, *received))]
    Truncated {
        /// The announced length, if the header was complete.
        expected: Option<u64>,
        /// Bytes of the unfinished header or record that had arrived.
        received: usize,
    },
    /// The decoder failed earlier; a RecordIO stream cannot be resynchronised.
    #[error("RecordIO decoder already failed on an earlier error; reconnect to get a new stream")]
    Failed,
    /// Reading the underlying stream failed.
    #[error("reading the RecordIO stream failed: {0}")]
    Io(#[from] std::io::Error),
}

fn show_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() || byte == b' ' {
        format!("'{}'", byte as char)
    } else {
        "non-printable".to_owned()
    }
}

fn describe_truncation(expected: Option<u64>, received: usize) -> String {
    match expected {
        Some(len) => format!(
            "RecordIO stream ended inside a record: {received} of {len} bytes arrived \
             (the connection was cut; reconnect)"
        ),
        None => format!(
            "RecordIO stream ended inside a length header ({received} byte(s) of it arrived; \
             the connection was cut; reconnect)"
        ),
    }
}

/// Where the decoder is within the current record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the decimal length: the value and the number of digits seen so far.
    Header { len: u64, digits: usize },
    /// Reading the record's bytes.
    Body { len: usize },
    /// An error occurred; nothing more can be decoded.
    Failed,
}

/// Incremental RecordIO decoder with a maximum record size.
#[derive(Debug)]
pub struct RecordDecoder {
    max_record_len: usize,
    state: State,
    /// Bytes pushed through the tokio-free API and not yet returned.
    pending: BytesMut,
}

impl Default for RecordDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordDecoder {
    /// A decoder accepting records up to [`DEFAULT_MAX_RECORD_LEN`] bytes.
    pub fn new() -> Self {
        Self::with_max_record_len(DEFAULT_MAX_RECORD_LEN)
    }

    /// A decoder accepting records up to `max_record_len` bytes.
    pub fn with_max_record_len(max_record_len: usize) -> Self {
        Self {
            max_record_len,
            state: State::Header { len: 0, digits: 0 },
            pending: BytesMut::new(),
        }
    }

    /// The configured maximum record size in bytes.
    pub fn max_record_len(&self) -> usize {
        self.max_record_len
    }

    /// Whether the decoder sits exactly between two records (nothing partial buffered).
    pub fn is_at_record_boundary(&self) -> bool {
        self.state == State::Header { len: 0, digits: 0 } && self.pending.is_empty()
    }

    /// Appends bytes that arrived on the stream (any split is fine). Pair with
    /// [`next_record`](Self::next_record).
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete record among the pushed bytes, `Ok(None)` if more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, RecordIoError> {
        let mut pending = std::mem::take(&mut self.pending);
        let result = self.decode_from(&mut pending);
        self.pending = pending;
        result
    }

    /// Declares the end of the stream: an error if it ended inside a record. Call after
    /// draining [`next_record`](Self::next_record).
    pub fn finish(&mut self) -> Result<(), RecordIoError> {
        let mut pending = std::mem::take(&mut self.pending);
        let result = self.check_eof(&mut pending);
        self.pending = pending;
        result
    }

    /// Core step shared by both APIs: consumes header bytes from `src` as it parses them and
    /// splits off the record once it is complete.
    fn decode_from(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordIoError> {
        loop {
            match self.state {
                State::Failed => return Err(RecordIoError::Failed),
                State::Header {
                    mut len,
                    mut digits,
                } => {
                    let mut consumed = 0;
                    let mut complete = false;
                    for &byte in src.iter() {
                        consumed += 1;
                        match byte {
                            b'0'..=b'9' => {
                                digits += 1;
                                let value = len
                                    .checked_mul(10)
                                    .and_then(|v| v.checked_add(u64::from(byte - b'0')));
                                match value {
                                    Some(v) if digits <= MAX_LENGTH_DIGITS => len = v,
                                    _ => return Err(self.fail(RecordIoError::LengthOverflow)),
                                }
                                if len > self.max_record_len as u64 {
                                    return Err(self.fail(RecordIoError::RecordTooLarge {
                                        len,
                                        max: self.max_record_len,
                                    }));
                                }
                            }
                            b'\n' if digits == 0 => {
                                return Err(self.fail(RecordIoError::EmptyLength));
                            }
                            b'\n' => {
                                complete = true;
                                break;
                            }
                            other => {
                                return Err(self.fail(RecordIoError::NonNumericLength {
                                    byte: other,
                                    digits,
                                }));
                            }
                        }
                    }
                    src.advance(consumed);
                    if !complete {
                        self.state = State::Header { len, digits };
                        return Ok(None);
                    }
                    // `len <= max_record_len` was checked digit by digit, so it fits in usize.
                    let len = usize::try_from(len).map_err(|_| {
                        self.fail(RecordIoError::RecordTooLarge {
                            len,
                            max: self.max_record_len,
                        })
                    })?;
                    self.state = State::Body { len };
                }
                State::Body { len } => {
                    if src.len() < len {
                        src.reserve((len - src.len()).min(MAX_RESERVE));
                        return Ok(None);
                    }
                    self.state = State::Header { len: 0, digits: 0 };
                    return Ok(Some(src.split_to(len).freeze()));
                }
            }
        }
    }

    fn check_eof(&mut self, src: &mut BytesMut) -> Result<(), RecordIoError> {
        match self.state {
            State::Failed => Err(RecordIoError::Failed),
            State::Header { digits: 0, .. } if src.is_empty() => Ok(()),
            State::Header { digits, .. } => Err(self.fail(RecordIoError::Truncated {
                expected: None,
                received: digits + src.len(),
            })),
            State::Body { len } => Err(self.fail(RecordIoError::Truncated {
                expected: Some(len as u64),
                received: src.len(),
            })),
        }
    }

    fn fail(&mut self, error: RecordIoError) -> RecordIoError {
        self.state = State::Failed;
        error
    }
}

impl Decoder for RecordDecoder {
    type Item = Bytes;
    type Error = RecordIoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordIoError> {
        self.decode_from(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordIoError> {
        match self.decode_from(src)? {
            Some(record) => Ok(Some(record)),
            None => self.check_eof(src).map(|()| None),
        }
    }
}

/// Appends one record (`<len>\n<record>`) to `dst`.
pub fn encode_record(record: &[u8], dst: &mut BytesMut) {
    put_header(record.len(), dst);
    dst.extend_from_slice(record);
}

/// Appends one protobuf message as a record, encoding it straight into `dst` (no copy).
pub fn encode_message<M: prost::Message>(message: &M, dst: &mut BytesMut) {
    let len = message.encoded_len();
    put_header(len, dst);
    dst.reserve(len);
    // `reserve` guarantees the capacity, so encoding cannot run out of space.
    message.encode_raw(dst);
}

fn put_header(len: usize, dst: &mut BytesMut) {
    let header = len.to_string();
    dst.reserve(header.len() + 1 + len);
    dst.put_slice(header.as_bytes());
    dst.put_u8(b'\n');
}

/// RecordIO encoder for `tokio_util::codec::FramedWrite` (and servers streaming events).
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordEncoder;

impl Encoder<Bytes> for RecordEncoder {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_record(&item, dst);
        Ok(())
    }
}

impl Encoder<&[u8]> for RecordEncoder {
    type Error = std::io::Error;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_record(item, dst);
        Ok(())
    }
}
