//! Record batches on the wire: how a data frame holds rkyv archives, how the sender builds one
//! and how the receiver validates it once and then reads records in place.
//!
//! A data frame's payload is one or more *segments*, each 16-byte aligned:
//!
//! ```text
//! offset size field
//!      0    4 archive length in bytes, u32 little-endian
//!      4    4 record count, u32 little-endian (must equal the archived vector's length)
//!      8    8 reserved, zero
//!     16    n rkyv archive of a `Vec<T>` (the root ArchivedVec sits at its end)
//!   16+n    p zero padding up to the next multiple of 16
//! ```
//!
//! Segments let the sender coalesce several small `&[T]` sends into one frame without cloning
//! records: each send is serialized straight into the frame buffer as its own archive.

use super::frame::{FrameError, FrameKind, HEADER_LEN, PAYLOAD_ALIGN};
use bytes::Bytes;
use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::{self, Fallible, Source};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Allocator, Writer};
use rkyv::util::AlignedVec;
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Place, Serialize};
use std::marker::PhantomData;

const SEGMENT_HEADER_LEN: usize = 16;

/// A record type that can cross executors: rkyv-serializable, with a validatable archive.
///
/// Derive it with `#[derive(rkyv::Archive, rkyv::Serialize)]` (and `rkyv::Deserialize` if an
/// operator needs owned values); the blanket impl does the rest.
pub trait ShuffleRecord:
    Archive<Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>>
    + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Send
    + 'static
{
}

impl<T> ShuffleRecord for T where
    T: Archive<Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>>
        + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
        + Send
        + 'static
{
}

/// Serializes a borrowed slice with exactly the layout of a `Vec<T>`, so no owned vector (and no
/// clone of the records) is needed.
pub(crate) struct SliceAsVec<'a, T>(pub(crate) &'a [T]);

impl<T: Archive> Archive for SliceAsVec<'_, T> {
    type Archived = ArchivedVec<T::Archived>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.0.len(), resolver, out);
    }
}

impl<T, S> Serialize<S> for SliceAsVec<'_, T>
where
    T: Serialize<S>,
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedVec::<T::Archived>::serialize_from_slice(self.0, serializer)
    }
}

/// Builds one data frame (header space + segments) in an aligned buffer.
#[derive(Debug)]
pub struct DataFrameBuilder {
    buf: AlignedVec,
    records: usize,
}

impl DataFrameBuilder {
    /// An empty frame with room for `capacity` payload bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = AlignedVec::with_capacity(HEADER_LEN + capacity);
        buf.resize(HEADER_LEN, 0);
        Self { buf, records: 0 }
    }

    /// Payload bytes so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    /// Records so far.
    pub fn records(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends `records` as one segment and returns the segment's size in bytes. If the frame
    /// would then exceed `max_payload`, nothing is appended and `Ok(None)` is returned.
    pub fn push<T: ShuffleRecord>(
        &mut self,
        records: &[T],
        max_payload: usize,
    ) -> Result<Option<usize>, rancor::Error> {
        let segment_start = self.buf.len();
        self.buf.resize(segment_start + SEGMENT_HEADER_LEN, 0);
        let archive_start = self.buf.len();
        let buf = std::mem::take(&mut self.buf);
        self.buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&SliceAsVec(records), buf)?;
        let archive_len = self.buf.len() - archive_start;
        let padded_end = archive_start + archive_len.next_multiple_of(PAYLOAD_ALIGN);
        let segment_len = padded_end - segment_start;
        if padded_end - HEADER_LEN > max_payload || archive_len > u32::MAX as usize {
            self.buf.resize(segment_start, 0);
            return Ok(None);
        }
        self.buf.resize(padded_end, 0);
        let count = u32::try_from(records.len()).map_err(rancor::Error::new)?;
        self.buf[segment_start..segment_start + 4]
            .copy_from_slice(&(archive_len as u32).to_le_bytes());
        self.buf[segment_start + 4..segment_start + 8].copy_from_slice(&count.to_le_bytes());
        self.records += records.len();
        Ok(Some(segment_len))
    }

    /// Writes the header and hands the frame out without copying it.
    pub fn seal(mut self) -> Bytes {
        let header = super::frame::FrameHeader {
            kind: FrameKind::Data,
            flags: 0,
            payload_len: self.payload_len() as u32,
            checksum: crc32fast::hash(&self.buf[HEADER_LEN..]),
        };
        self.buf[..HEADER_LEN].copy_from_slice(&header.encode());
        Bytes::from_owner(self.buf)
    }
}

/// A received batch of records, validated once, read in place.
///
/// It owns the aligned frame buffer; [`RecordBatch::iter`] hands out `&T::Archived` pointing
/// into it. Use `rkyv::deserialize` on a record only where an operator must own it.
pub struct RecordBatch<T: Archive> {
    payload: AlignedVec,
    /// (start, len) of each validated archive within `payload`.
    segments: Vec<(usize, usize)>,
    records: usize,
    _records: PhantomData<fn() -> T>,
}

impl<T: Archive> std::fmt::Debug for RecordBatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("records", &self.records)
            .field("segments", &self.segments.len())
            .field("bytes", &self.payload.len())
            .finish()
    }
}

impl<T: ShuffleRecord> RecordBatch<T> {
    /// Checks the segment layout and validates every archive with bytecheck.
    pub fn validate(payload: AlignedVec) -> Result<Self, FrameError> {
        let invalid = |reason: String| FrameError::InvalidPayload {
            kind: FrameKind::Data,
            reason,
        };
        if !(payload.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN) {
            return Err(invalid("payload buffer is not 16-byte aligned".into()));
        }
        let mut segments = Vec::new();
        let mut records = 0usize;
        let mut at = 0usize;
        while at < payload.len() {
            let rest = payload.len() - at;
            if rest < SEGMENT_HEADER_LEN {
                return Err(invalid(format!(
                    "{rest} trailing bytes after segment {}",
                    segments.len()
                )));
            }
            let word = |offset: usize| {
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(&payload[at + offset..at + offset + 4]);
                u32::from_le_bytes(bytes) as usize
            };
            let (archive_len, count) = (word(0), word(4));
            if payload[at + 8..at + 16] != [0; 8] {
                return Err(invalid(format!(
                    "segment {} has non-zero reserved bytes",
                    segments.len()
                )));
            }
            let start = at + SEGMENT_HEADER_LEN;
            let padded = archive_len.next_multiple_of(PAYLOAD_ALIGN);
            if padded > payload.len() - start {
                return Err(invalid(format!(
                    "segment {} announces {archive_len} archive bytes but only {} remain",
                    segments.len(),
                    payload.len() - start
                )));
            }
            let archived = rkyv::access::<ArchivedVec<T::Archived>, rancor::Error>(
                &payload[start..start + archive_len],
            )
            .map_err(|err| {
                invalid(format!(
                    "segment {} is not a valid archive: {err}",
                    segments.len()
                ))
            })?;
            if archived.len() != count {
                return Err(invalid(format!(
                    "segment {} holds {} records but its header says {count}",
                    segments.len(),
                    archived.len()
                )));
            }
            records += count;
            segments.push((start, archive_len));
            at = start + padded;
        }
        if records == 0 {
            return Err(invalid("data frame holds no records".into()));
        }
        Ok(Self {
            payload,
            segments,
            records,
            _records: PhantomData,
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Payload size in bytes (what crossed the wire, without the frame header).
    pub fn payload_bytes(&self) -> usize {
        self.payload.len()
    }

    /// The archived vectors, one per segment.
    pub fn segments(&self) -> impl Iterator<Item = &ArchivedVec<T::Archived>> + '_ {
        self.segments.iter().map(|&(start, len)| {
            // SAFETY: `validate` checked exactly these bytes with `rkyv::access` for exactly this
            // type, and `payload` is owned and never mutated afterwards.
            unsafe {
                rkyv::access_unchecked::<ArchivedVec<T::Archived>>(
                    &self.payload[start..start + len],
                )
            }
        })
    }

    /// All records in order, read in place.
    pub fn iter(&self) -> impl Iterator<Item = &T::Archived> + '_ {
        self.segments().flat_map(|segment| segment.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, PartialEq)]
    struct Tiny {
        key: u32,
        value: u64,
    }

    #[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, PartialEq)]
    struct Named {
        name: String,
        n: u16,
    }

    fn payload_of(frame: &Bytes) -> AlignedVec {
        let mut payload = AlignedVec::new();
        payload.extend_from_slice(&frame[HEADER_LEN..]);
        payload
    }

    /// Pins the wire format: if rkyv's format features or this layout change, this fails.
    #[test]
    fn golden_bytes_of_a_tiny_batch() {
        let mut builder = DataFrameBuilder::with_capacity(64);
        let records = [
            Tiny { key: 1, value: 2 },
            Tiny {
                key: 0xA0B0C0D0,
                value: u64::MAX,
            },
        ];
        assert_eq!(builder.push(&records, 1 << 20).unwrap(), Some(16 + 48));
        let frame = builder.seal();
        #[rustfmt::skip]
        let expected: [u8; 80] = [
            // frame header: magic, version 1, kind Data, flags 0, reserved, len 64, crc
            b'M', b'F', 1, 2, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0,
            // segment header: archive length 40, 2 records, reserved
            40, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // archived Tiny { key: 1, value: 2 }: u32 key, 4 bytes padding, u64 value
            1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
            // archived Tiny { key: 0xA0B0C0D0, value: u64::MAX }
            0xD0, 0xC0, 0xB0, 0xA0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            // root ArchivedVec: relative pointer -32 (i32), length 2 (u32), then 8 bytes padding
            0xe0, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let crc = crc32fast::hash(&expected[16..]).to_le_bytes();
        let mut expected = expected;
        expected[12..16].copy_from_slice(&crc);
        assert_eq!(&frame[..], &expected[..]);

        let batch = RecordBatch::<Tiny>::validate(payload_of(&frame)).unwrap();
        let keys: Vec<(u32, u64)> = batch
            .iter()
            .map(|r| (r.key.to_native(), r.value.to_native()))
            .collect();
        assert_eq!(keys, vec![(1, 2), (0xA0B0C0D0, u64::MAX)]);
    }

    #[test]
    fn segments_coalesce_and_read_in_order() {
        let mut builder = DataFrameBuilder::with_capacity(1024);
        let first: Vec<Named> = (0..3)
            .map(|n| Named {
                name: format!("r{n}"),
                n,
            })
            .collect();
        let second: Vec<Named> = (3..10)
            .map(|n| Named {
                name: "x".repeat(n as usize * 5),
                n,
            })
            .collect();
        builder.push(&first, 1 << 20).unwrap().unwrap();
        builder.push(&second, 1 << 20).unwrap().unwrap();
        assert_eq!(builder.records(), 10);
        let frame = builder.seal();
        let batch = RecordBatch::<Named>::validate(payload_of(&frame)).unwrap();
        assert_eq!(batch.len(), 10);
        assert_eq!(batch.segments().count(), 2);
        let got: Vec<(String, u16)> = batch
            .iter()
            .map(|r| (r.name.to_string(), r.n.to_native()))
            .collect();
        let want: Vec<(String, u16)> = first
            .iter()
            .chain(&second)
            .map(|r| (r.name.clone(), r.n))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn push_refuses_to_exceed_max_payload() {
        let mut builder = DataFrameBuilder::with_capacity(64);
        let records: Vec<Tiny> = (0..100).map(|key| Tiny { key, value: 0 }).collect();
        assert_eq!(builder.push(&records, 256).unwrap(), None);
        assert!(builder.is_empty());
        assert_eq!(builder.payload_len(), 0);
        assert!(builder.push(&records[..4], 256).unwrap().is_some());
    }

    #[test]
    fn tampered_archives_are_refused() {
        let mut builder = DataFrameBuilder::with_capacity(256);
        let records = [Named {
            name: "hello world, long enough to be out of line".into(),
            n: 1,
        }];
        builder.push(&records, 1 << 20).unwrap().unwrap();
        let frame = builder.seal();
        let good = payload_of(&frame);
        assert!(RecordBatch::<Named>::validate(good.clone()).is_ok());

        // A string pointer aimed outside the buffer.
        let mut bad_pointer = good.clone();
        let root_len_at = 16 + 40 - 8;
        bad_pointer[root_len_at - 8..root_len_at - 4]
            .copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        assert!(RecordBatch::<Named>::validate(bad_pointer).is_err());

        // Invalid UTF-8 inside the string.
        let mut bad_utf8 = good.clone();
        bad_utf8[16] = 0xff;
        bad_utf8[17] = 0xfe;
        assert!(RecordBatch::<Named>::validate(bad_utf8).is_err());

        // The record count disagrees with the archive.
        let mut bad_count = good.clone();
        bad_count[4] = 9;
        assert!(RecordBatch::<Named>::validate(bad_count).is_err());

        // Archive length running past the frame.
        let mut bad_len = good.clone();
        bad_len[0..4].copy_from_slice(&10_000u32.to_le_bytes());
        assert!(RecordBatch::<Named>::validate(bad_len).is_err());

        // Truncated payload.
        let mut truncated = AlignedVec::new();
        truncated.extend_from_slice(&good[..good.len() - 16]);
        assert!(RecordBatch::<Named>::validate(truncated).is_err());

        // Empty frame.
        assert!(RecordBatch::<Named>::validate(AlignedVec::new()).is_err());
    }
}
