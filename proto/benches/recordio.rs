//! RecordIO decode throughput: a stream of real encoded scheduler events (heartbeats and a
//! 20-offer OFFERS event), fed in 16 KiB chunks as HTTP would deliver them, decoded and then
//! parsed as `Event`s. Prints records/s and MB/s for framing alone and framing + protobuf.
//!
//! Run: `cargo bench -p mesoflow-proto --bench recordio`

use std::{hint::black_box, time::Instant};

use bytes::BytesMut;
use mesoflow_proto::{
    mesos::v1::{self, scheduler::Event, scheduler::event},
    recordio::{RecordDecoder, encode_message},
};
use prost::Message;

fn offers_event(n: usize) -> Event {
    let resources = |name: &str, v: f64| v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value: v }),
        ..Default::default()
    };
    Event {
        r#type: Some(event::Type::Offers as i32),
        offers: Some(event::Offers {
            offers: (0..n)
                .map(|i| v1::Offer {
                    id: v1::OfferId {
                        value: format!("a1b2c3d4-0000-4000-8000-{i:012}-O{i}"),
                    },
                    framework_id: v1::FrameworkId {
                        value: "a1b2c3d4-0000-4000-8000-000000000000-0000".into(),
                    },
                    agent_id: v1::AgentId {
                        value: format!("a1b2c3d4-0000-4000-8000-{i:012}-S{i}"),
                    },
                    hostname: format!("agent-{i}.example.com"),
                    resources: vec![
                        resources("cpus", 8.0),
                        resources("mem", 31_744.0),
                        resources("disk", 102_400.0),
                    ],
                    ..Default::default()
                })
                .collect(),
        }),
        ..Default::default()
    }
}

fn main() {
    let heartbeat = Event {
        r#type: Some(event::Type::Heartbeat as i32),
        ..Default::default()
    };
    let offers = offers_event(20);
    let mut stream = BytesMut::new();
    let rounds = 20_000;
    for _ in 0..rounds {
        encode_message(&heartbeat, &mut stream);
        encode_message(&offers, &mut stream);
    }
    let stream = stream.freeze();
    let records = rounds * 2;
    let mb = stream.len() as f64 / 1e6;
    println!(
        "stream: {records} records, {mb:.1} MB (OFFERS event {} bytes)",
        offers.encoded_len()
    );

    for parse in [false, true] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let mut decoder = RecordDecoder::new();
            let mut seen = 0usize;
            for chunk in stream.chunks(16 * 1024) {
                decoder.push(chunk);
                while let Some(record) = decoder.next_record().expect("valid stream") {
                    if parse {
                        let event = Event::decode(record).expect("valid event");
                        black_box(&event);
                    } else {
                        black_box(&record);
                    }
                    seen += 1;
                }
            }
            decoder.finish().expect("clean end");
            assert_eq!(seen, records);
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{:<28} {:>8.2} M records/s {:>9.1} MB/s (best of 5)",
            if parse {
                "recordio + Event::decode:"
            } else {
                "recordio framing only:"
            },
            records as f64 / best / 1e6,
            mb / best
        );
    }
}
