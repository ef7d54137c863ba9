//! Property tests of the frame decoder and batch validation: whatever bytes a peer sends, the
//! receiver returns frames or a typed error, never panics.

use mesoflow_dataplane::shuffle::batch::DataFrameBuilder;
use mesoflow_dataplane::shuffle::frame::{FrameDecoder, HEADER_LEN};
use mesoflow_dataplane::shuffle::receiver::{ShuffleMessage, decode_message};
use mesoflow_dataplane::shuffle::{Barrier, ChannelEvent};
use proptest::prelude::*;

#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, PartialEq)]
struct Rec {
    id: u64,
    name: String,
    tags: Vec<u16>,
    score: Option<i32>,
}

/// Feeds `bytes` in pieces of the given sizes; returns the messages decoded before the first error.
fn feed(bytes: &[u8], pieces: &[usize]) -> (Vec<ShuffleMessage<Rec>>, bool) {
    let mut decoder = FrameDecoder::new(1 << 16);
    let mut messages = Vec::new();
    let mut rest = bytes;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let take = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        let (mut piece, tail) = rest.split_at(take);
        rest = tail;
        loop {
            match decoder.decode(&mut piece) {
                Ok(Some(frame)) => match decode_message::<Rec>(frame) {
                    Ok(message) => messages.push(message),
                    Err(_) => return (messages, false),
                },
                Ok(None) => break,
                Err(_) => return (messages, false),
            }
        }
    }
    (messages, decoder.finish().is_ok())
}

fn record() -> impl Strategy<Value = Rec> {
    (
        any::<u64>(),
        ".{0,40}",
        prop::collection::vec(any::<u16>(), 0..20),
        any::<Option<i32>>(),
    )
        .prop_map(|(id, name, tags, score)| Rec {
            id,
            name,
            tags,
            score,
        })
}

fn valid_stream(batches: &[Vec<Rec>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for batch in batches {
        let mut builder = DataFrameBuilder::with_capacity(4096);
        builder.push(batch, 1 << 16).unwrap().unwrap();
        stream.extend_from_slice(&builder.seal());
        stream.extend_from_slice(&ChannelEvent::Watermark(batch.len() as i64).encode());
    }
    let barrier = Barrier {
        checkpoint_id: 1,
        timestamp_ms: 2,
        priority: true,
    };
    stream.extend_from_slice(&ChannelEvent::Barrier(barrier).encode());
    stream.extend_from_slice(&ChannelEvent::EndOfPartition.encode());
    stream
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096),
                                pieces in prop::collection::vec(1usize..300, 1..8)) {
        let _ = feed(&bytes, &pieces);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        kind in 1u8..=8, flags in 0u8..2, body in prop::collection::vec(any::<u8>(), 0..2048)) {
        // A well-formed header with a correct CRC reaches the payload validators.
        let mut frame = vec![b'M', b'F', 1, kind, flags, 0, 0, 0];
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        let _ = feed(&frame, &[frame.len()]);
    }

    #[test]
    fn valid_streams_decode_exactly_in_any_chunking(
        batches in prop::collection::vec(prop::collection::vec(record(), 1..20), 1..5),
        pieces in prop::collection::vec(1usize..500, 1..8)) {
        let stream = valid_stream(&batches);
        let (messages, clean) = feed(&stream, &pieces);
        prop_assert!(clean);
        prop_assert_eq!(messages.len(), batches.len() * 2 + 2);
        for (i, batch) in batches.iter().enumerate() {
            match &messages[2 * i] {
                ShuffleMessage::Data(got) => {
                    prop_assert_eq!(got.len(), batch.len());
                    for (archived, want) in got.iter().zip(batch) {
                        prop_assert_eq!(archived.id.to_native(), want.id);
                        prop_assert_eq!(archived.name.as_str(), want.name.as_str());
                        let tags: Vec<u16> = archived.tags.iter().map(|t| t.to_native()).collect();
                        prop_assert_eq!(&tags, &want.tags);
                        prop_assert_eq!(archived.score.as_ref().map(|s| s.to_native()), want.score);
                    }
                }
                other => prop_assert!(false, "expected data, got {:?}", other),
            }
        }
    }

    #[test]
    fn mutated_valid_streams_never_panic(
        batches in prop::collection::vec(prop::collection::vec(record(), 1..10), 1..3),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix_crc in any::<bool>()) {
        let mut stream = valid_stream(&batches);
        for (index, value) in &flips {
            let at = index.index(stream.len());
            stream[at] = *value;
        }
        if fix_crc && stream.len() > HEADER_LEN {
            // Recompute the first frame's CRC so that the mutation reaches bytecheck.
            let len = u32::from_le_bytes(stream[8..12].try_into().unwrap()) as usize;
            if HEADER_LEN + len <= stream.len() {
                let crc = crc32fast::hash(&stream[HEADER_LEN..HEADER_LEN + len]);
                stream[12..16].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let _ = feed(&stream, &[7, 300, 4096]);
    }
}
