//! RecordIO framing: exact bytes, every error case, and property tests over arbitrary records,
//! arbitrary splits of the stream and arbitrary garbage.

use bytes::{Bytes, BytesMut};
use mesoflow_proto::recordio::{
    RecordDecoder, RecordEncoder, RecordIoError, encode_message, encode_record,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

/// Feeds `chunks` through the push API and collects every record, then checks the end.
fn decode_chunks(
    decoder: &mut RecordDecoder,
    chunks: &[&[u8]],
) -> Result<Vec<Bytes>, RecordIoError> {
    let mut records = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        while let Some(record) = decoder.next_record()? {
            records.push(record);
        }
    }
    decoder.finish()?;
    Ok(records)
}

/// The same through the tokio `Decoder` trait, as `FramedRead` drives it.
fn decode_chunks_codec(chunks: &[&[u8]]) -> Result<Vec<Bytes>, RecordIoError> {
    let mut decoder = RecordDecoder::new();
    let mut buf = BytesMut::new();
    let mut records = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(record) = decoder.decode(&mut buf)? {
            records.push(record);
        }
    }
    while let Some(record) = decoder.decode_eof(&mut buf)? {
        records.push(record);
    }
    Ok(records)
}

fn encode_all(records: &[Vec<u8>]) -> BytesMut {
    let mut out = BytesMut::new();
    for r in records {
        encode_record(r, &mut out);
    }
    out
}

#[test]
fn encodes_the_mesos_example_exactly() {
    let mut out = BytesMut::new();
    encode_record(br#"{"type":"HEARTBEAT"}"#, &mut out);
    RecordEncoder
        .encode(Bytes::from_static(b""), &mut out)
        .expect("encodes");
    RecordEncoder
        .encode(&b"abc"[..], &mut out)
        .expect("encodes");
    assert_eq!(&out[..], &b"20\n{\"type\":\"HEARTBEAT\"}0\n3\nabc"[..]);
}

#[test]
fn encode_message_writes_length_then_protobuf() {
    use mesoflow_proto::mesos::v1::FrameworkId;
    let mut out = BytesMut::new();
    encode_message(
        &FrameworkId {
            value: "abc".into(),
        },
        &mut out,
    );
    assert_eq!(&out[..], &[b'5', b'\n', 0x0a, 3, b'a', b'b', b'c'][..]);
}

#[test]
fn decodes_records_split_byte_by_byte_including_empty_records() {
    let stream = b"20\n{\"type\":\"HEARTBEAT\"}0\n3\nabc";
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    let records = decode_chunks(&mut RecordDecoder::new(), &chunks).expect("valid stream");
    assert_eq!(
        records,
        vec![
            Bytes::from_static(b"{\"type\":\"HEARTBEAT\"}"),
            Bytes::new(),
            Bytes::from_static(b"abc")
        ]
    );
}

#[test]
fn non_numeric_length_is_a_clear_error_and_the_decoder_stays_failed() {
    let mut d = RecordDecoder::new();
    d.push(b"12x\nabc");
    let err = d.next_record().expect_err("x is not a digit");
    assert!(
        matches!(
            err,
            RecordIoError::NonNumericLength {
                byte: b'x',
                digits: 2
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("0x78 ('x') after 2 digit(s)"),
        "{err}"
    );
    d.push(b"3\nabc");
    assert!(matches!(d.next_record(), Err(RecordIoError::Failed)));
    assert!(matches!(d.finish(), Err(RecordIoError::Failed)));
}

#[test]
fn http_chunk_framing_leaking_into_the_stream_is_rejected() {
    // "3\r\n" would be a chunked-encoding header, not RecordIO: CR is not allowed.
    let mut d = RecordDecoder::new();
    d.push(b"3\r\nabc");
    assert!(matches!(
        d.next_record(),
        Err(RecordIoError::NonNumericLength {
            byte: b'\r',
            digits: 1
        })
    ));
}

#[test]
fn empty_length_header_is_rejected() {
    let mut d = RecordDecoder::new();
    d.push(b"\nabc");
    assert!(matches!(d.next_record(), Err(RecordIoError::EmptyLength)));
}

#[test]
fn oversized_record_is_rejected_before_its_bytes_arrive() {
    let mut d = RecordDecoder::with_max_record_len(100);
    d.push(b"100\n");
    assert_eq!(d.next_record().expect("100 is allowed"), None);
    let mut d = RecordDecoder::with_max_record_len(100);
    d.push(b"101");
    let err = d.next_record().expect_err("101 > 100");
    assert!(
        matches!(err, RecordIoError::RecordTooLarge { len: 101, max: 100 }),
        "{err:?}"
    );
    // The default limit is 64 MiB.
    let mut d = RecordDecoder::new();
    d.push(b"67108865\n");
    assert!(matches!(
        d.next_record(),
        Err(RecordIoError::RecordTooLarge {
            len: 67_108_865,
            max: 67_108_864
        })
    ));
}

#[test]
fn over_long_digit_strings_are_rejected() {
    let mut d = RecordDecoder::with_max_record_len(usize::MAX);
    d.push(b"000000000000000000001\n"); // 21 digits, small value
    assert!(matches!(
        d.next_record(),
        Err(RecordIoError::LengthOverflow)
    ));
    let mut d = RecordDecoder::with_max_record_len(usize::MAX);
    d.push(b"18446744073709551616\n"); // u64::MAX + 1
    assert!(matches!(
        d.next_record(),
        Err(RecordIoError::LengthOverflow)
    ));
}

#[test]
fn truncated_streams_say_where_they_stopped() {
    let mut d = RecordDecoder::new();
    d.push(b"10\nabc");
    assert_eq!(d.next_record().expect("incomplete"), None);
    let err = d.finish().expect_err("ended inside a record");
    assert!(
        matches!(
            err,
            RecordIoError::Truncated {
                expected: Some(10),
                received: 3
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("3 of 10 bytes"), "{err}");

    let mut d = RecordDecoder::new();
    d.push(b"1");
    assert_eq!(d.next_record().expect("incomplete"), None);
    assert!(matches!(
        d.finish(),
        Err(RecordIoError::Truncated {
            expected: None,
            received: 1
        })
    ));

    let err = decode_chunks_codec(&[b"3\nab"]).expect_err("codec sees EOF mid-record");
    assert!(matches!(
        err,
        RecordIoError::Truncated {
            expected: Some(3),
            received: 2
        }
    ));
}

#[test]
fn clean_end_between_records_is_fine() {
    let mut d = RecordDecoder::new();
    assert!(d.is_at_record_boundary());
    d.push(b"1\na");
    assert_eq!(d.next_record().expect("ok"), Some(Bytes::from_static(b"a")));
    assert!(d.is_at_record_boundary());
    d.finish().expect("clean end");
}

fn records_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)
}

proptest! {
    #[test]
    fn round_trip_with_arbitrary_splits(
        records in records_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let stream = encode_all(&records);
        let mut positions: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        positions.sort_unstable();
        positions.dedup();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in positions {
            chunks.push(&stream[start..p]);
            start = p;
        }
        chunks.push(&stream[start..]);
        let expected: Vec<Bytes> = records.iter().map(|r| Bytes::from(r.clone())).collect();
        prop_assert_eq!(&decode_chunks(&mut RecordDecoder::new(), &chunks).expect("valid"), &expected);
        prop_assert_eq!(&decode_chunks_codec(&chunks).expect("valid"), &expected);
    }

    #[test]
    fn truncating_a_valid_stream_inside_a_record_is_detected(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let stream = encode_all(&records);
        let cut = cut.index(stream.len());
        let mut boundaries = vec![0];
        let mut at = 0;
        for r in &records {
            at += r.len().to_string().len() + 1 + r.len();
            boundaries.push(at);
        }
        let result = decode_chunks(&mut RecordDecoder::new(), &[&stream[..cut]]);
        if boundaries.contains(&cut) {
            let n = boundaries.iter().position(|b| *b == cut).expect("present");
            prop_assert_eq!(result.expect("clean cut").len(), n);
        } else {
            let is_truncated = matches!(result, Err(RecordIoError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }

    #[test]
    fn garbage_never_panics(
        garbage in prop::collection::vec(any::<u8>(), 0..2000),
        split in any::<prop::sample::Index>(),
        max in 0usize..5000,
    ) {
        let at = split.index(garbage.len() + 1);
        let mut d = RecordDecoder::with_max_record_len(max);
        let mut total = 0;
        if let Ok(records) = decode_chunks(&mut d, &[&garbage[..at], &garbage[at..]]) {
            total = records.iter().map(|r| r.len()).sum();
        }
        // Records never contain more bytes than the input held, nor exceed the limit.
        prop_assert!(total <= garbage.len());
        let _ = decode_chunks_codec(&[&garbage]);
    }

    #[test]
    fn digit_garbage_respects_the_limit(
        digits in "[0-9]{1,25}",
        max in 0usize..1_000_000,
    ) {
        let mut d = RecordDecoder::with_max_record_len(max);
        d.push(digits.as_bytes());
        d.push(b"\n");
        match d.next_record() {
            Ok(_) => {
                let value: u128 = digits.parse().expect("digits");
                prop_assert!(value <= max as u128 && digits.len() <= 20);
            }
            Err(RecordIoError::RecordTooLarge { max: m, .. }) => prop_assert_eq!(m, max),
            Err(RecordIoError::LengthOverflow) => prop_assert!(digits.len() > 20),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}
