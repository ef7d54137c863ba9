//! End-to-end tests of the QUIC shuffle: real quinn endpoints on 127.0.0.1, real TLS.

use mesoflow_dataplane::shuffle::frame::{FrameHeader, FrameKind, HEADER_LEN, encode_frame};
use mesoflow_dataplane::shuffle::{
    ChannelEvent, ChannelId, ClusterCa, ExecutorCredentials, RemoteReceiver, RemoteSender,
    ShuffleConfig, ShuffleEndpoint, ShuffleError, ShuffleMessage,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, Copy, PartialEq)]
struct KeyedRecord {
    key: u32,
    value: u64,
}

const LOCALHOST: &str = "127.0.0.1:0";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn channel(edge: u32, producer: u32, consumer: u32) -> ChannelId {
    ChannelId {
        job: 0xfeed,
        attempt: 0,
        edge,
        producer,
        consumer,
    }
}

fn endpoint(
    rt: &tokio::runtime::Runtime,
    creds: &ExecutorCredentials,
    config: ShuffleConfig,
) -> ShuffleEndpoint {
    let _guard = rt.enter();
    ShuffleEndpoint::bind(LOCALHOST.parse().unwrap(), creds, config).unwrap()
}

fn mix(x: u64) -> u64 {
    // splitmix64 finaliser: spreads keys and makes the checksum sensitive to every bit.
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Drains a receiver on the calling thread: (records, events) or the channel's error.
fn drain<T: mesoflow_dataplane::shuffle::ShuffleRecord>(
    receiver: &mut RemoteReceiver<T>,
    mut on_batch: impl FnMut(&mesoflow_dataplane::shuffle::RecordBatch<T>),
) -> Result<Vec<ChannelEvent>, ShuffleError> {
    let mut events = Vec::new();
    while let Some(message) = receiver.recv()? {
        match message {
            ShuffleMessage::Data(batch) => on_batch(&batch),
            ShuffleMessage::Event(event) => events.push(event),
        }
    }
    Ok(events)
}

#[test]
fn ten_million_records_shuffle_by_key_with_exact_counts_and_checksums() {
    const RECORDS: u64 = 10_000_000;
    const PRODUCERS: u32 = 4;
    const CONSUMERS: u32 = 4;
    const KEYS: u32 = 1000;
    let rt = runtime();
    let ca = ClusterCa::generate("shuffle-test").unwrap();
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), ShuffleConfig::default());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), ShuffleConfig::default());
    let b_addr = b.local_addr().unwrap();

    // Consumers: one thread per channel, per-key (count, checksum) tables.
    let mut consumer_threads = Vec::new();
    for consumer in 0..CONSUMERS {
        for producer in 0..PRODUCERS {
            let mut receiver = b
                .receiver::<KeyedRecord>(channel(1, producer, consumer))
                .unwrap();
            consumer_threads.push(std::thread::spawn(move || {
                let mut table = vec![(0u64, 0u64); KEYS as usize];
                let events = drain(&mut receiver, |batch| {
                    for record in batch.iter() {
                        let key = record.key.to_native();
                        assert_eq!(
                            key % CONSUMERS,
                            consumer,
                            "record routed to the wrong consumer"
                        );
                        let slot = &mut table[key as usize];
                        slot.0 += 1;
                        slot.1 = slot.1.wrapping_add(mix(record.value.to_native()));
                    }
                })
                .unwrap();
                assert_eq!(
                    events,
                    vec![
                        ChannelEvent::Watermark(i64::MAX),
                        ChannelEvent::EndOfPartition
                    ]
                );
                table
            }));
        }
    }

    // Producers: each owns a slice of the index space and one sender per consumer.
    let mut producer_threads = Vec::new();
    for producer in 0..PRODUCERS {
        let mut senders: Vec<RemoteSender<KeyedRecord>> = (0..CONSUMERS)
            .map(|consumer| {
                rt.block_on(a.open_sender("exec-b", b_addr, channel(1, producer, consumer)))
                    .unwrap()
            })
            .collect();
        producer_threads.push(std::thread::spawn(move || {
            let mut buffers: Vec<Vec<KeyedRecord>> =
                (0..CONSUMERS).map(|_| Vec::with_capacity(1024)).collect();
            let mut index = producer as u64;
            while index < RECORDS {
                let key = (mix(index) % KEYS as u64) as u32;
                let target = (key % CONSUMERS) as usize;
                buffers[target].push(KeyedRecord { key, value: index });
                if buffers[target].len() == 1024 {
                    senders[target].send_batch(&buffers[target]).unwrap();
                    buffers[target].clear();
                }
                index += PRODUCERS as u64;
            }
            for (sender, buffer) in senders.iter_mut().zip(&buffers) {
                sender.send_batch(buffer).unwrap();
                sender
                    .send_event(ChannelEvent::Watermark(i64::MAX))
                    .unwrap();
            }
            for sender in senders {
                sender.finish().unwrap();
            }
        }));
    }
    for thread in producer_threads {
        thread.join().unwrap();
    }
    let mut got = vec![(0u64, 0u64); KEYS as usize];
    for thread in consumer_threads {
        for (total, part) in got.iter_mut().zip(thread.join().unwrap()) {
            total.0 += part.0;
            total.1 = total.1.wrapping_add(part.1);
        }
    }

    let mut want = vec![(0u64, 0u64); KEYS as usize];
    for index in 0..RECORDS {
        let slot = &mut want[(mix(index) % KEYS as u64) as usize];
        slot.0 += 1;
        slot.1 = slot.1.wrapping_add(mix(index));
    }
    assert_eq!(got.iter().map(|s| s.0).sum::<u64>(), RECORDS);
    assert_eq!(got, want);
    a.close();
    b.close();
}

#[test]
fn slow_consumer_bounds_producer_memory_through_flow_control() {
    const RECORDS: usize = 200_000; // 16 bytes archived each: 3.2 MB in total
    let config = ShuffleConfig {
        batch_bytes: 4096,
        sender_queue_bytes: 16 * 1024,
        receiver_queue_frames: 2,
        stream_receive_window: 64 * 1024,
        connection_receive_window: 1024 * 1024,
        ..ShuffleConfig::default()
    };
    let rt = runtime();
    let ca = ClusterCa::generate("slow").unwrap();
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), config.clone());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), config.clone());
    let mut receiver = b.receiver::<KeyedRecord>(channel(2, 0, 0)).unwrap();
    let mut sender = rt
        .block_on(a.open_sender::<KeyedRecord>("exec-b", b.local_addr().unwrap(), channel(2, 0, 0)))
        .unwrap();

    let received = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut next = 0u64;
            drain(&mut receiver, |batch| {
                for record in batch.iter() {
                    assert_eq!(record.value.to_native(), next, "records out of order");
                    next += 1;
                }
                received.fetch_add(batch.len(), Ordering::SeqCst);
                // The producer fills a 4 KiB batch in tens of microseconds; this is >100x slower.
                std::thread::sleep(Duration::from_millis(2));
            })
            .unwrap();
            next
        })
    };

    let records: Vec<KeyedRecord> = (0..RECORDS as u64)
        .map(|value| KeyedRecord { key: 0, value })
        .collect();
    let mut max_lag = 0usize;
    for (i, chunk) in records.chunks(64).enumerate() {
        sender.send_batch(chunk).unwrap();
        let sent = i * 64 + chunk.len();
        max_lag = max_lag.max(sent - received.load(Ordering::SeqCst));
    }
    let high_water = sender.high_water_bytes();
    sender.finish().unwrap();
    assert_eq!(consumer.join().unwrap(), RECORDS as u64);

    // The sender itself never held more than its queue plus the frame being filled.
    let sender_bound = config.sender_queue_bytes + 2 * config.batch_bytes;
    assert!(
        high_water <= sender_bound,
        "sender buffered {high_water} bytes, bound {sender_bound}"
    );
    assert!(
        high_water >= config.sender_queue_bytes,
        "the queue never filled: no backpressure was exercised"
    );
    // Everything between producer and consumer: the sender's bound, the QUIC stream window, the
    // chunks the reader took out of QUIC in one read (32 datagram-sized chunks), and the frames
    // queued for, being handed to, and being processed by the consumer.
    let in_flight_bound = sender_bound
        + config.stream_receive_window as usize
        + 32 * 1500
        + (config.receiver_queue_frames + 2) * (config.batch_bytes + 1024);
    let lag_bytes = max_lag * 16;
    assert!(
        lag_bytes <= in_flight_bound,
        "producer ran {lag_bytes} bytes ahead of the consumer, bound {in_flight_bound}"
    );
    a.close();
    b.close();
}

/// A raw QUIC client with valid credentials that writes arbitrary bytes on one stream.
async fn raw_stream(
    creds: &ExecutorCredentials,
    to: SocketAddr,
    id: ChannelId,
) -> (quinn::Endpoint, quinn::SendStream) {
    let mut endpoint = quinn::Endpoint::client(LOCALHOST.parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        creds.quic_client_config().unwrap(),
    )));
    let server_name = mesoflow_dataplane::shuffle::tls::server_name_for("exec-b").unwrap();
    let connection = endpoint.connect(to, &server_name).unwrap().await.unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let record_type =
        mesoflow_dataplane::shuffle::channel::record_type_fingerprint::<KeyedRecord>();
    let header = mesoflow_dataplane::shuffle::channel::ChannelHeader {
        channel: id,
        record_type,
    };
    stream.write_all(&header.encode()).await.unwrap();
    (endpoint, stream)
}

fn valid_data_frame(values: std::ops::Range<u64>) -> Vec<u8> {
    let records: Vec<KeyedRecord> = values.map(|value| KeyedRecord { key: 1, value }).collect();
    let mut builder = mesoflow_dataplane::shuffle::batch::DataFrameBuilder::with_capacity(4096);
    builder.push(&records, 1 << 20).unwrap().unwrap();
    builder.seal().to_vec()
}

#[test]
fn tampered_truncated_and_oversized_frames_fail_the_channel() {
    let rt = runtime();
    let ca = ClusterCa::generate("tamper").unwrap();
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), ShuffleConfig::default());
    let rogue = ca.issue("exec-rogue").unwrap();
    let b_addr = b.local_addr().unwrap();
    let max = ShuffleConfig::default().max_frame_bytes;

    // Case 1: a byte of the archive flipped in transit (CRC no longer matches).
    let mut tampered = valid_data_frame(0..10);
    tampered[HEADER_LEN + 20] ^= 0x40;
    // Case 2: the same, with the CRC recomputed, and the archive's root pointer aimed outside
    // the buffer: only bytecheck can catch it.
    let mut forged = valid_data_frame(0..10);
    let end = forged.len();
    let archive_len =
        u32::from_le_bytes(forged[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap()) as usize;
    let root = HEADER_LEN + 16 + archive_len - 8;
    forged[root..root + 4].copy_from_slice(&(-4096i32).to_le_bytes());
    let crc = crc32fast::hash(&forged[HEADER_LEN..end]);
    forged[12..16].copy_from_slice(&crc.to_le_bytes());
    // Case 3: the stream ends in the middle of a frame.
    let whole = valid_data_frame(0..10);
    let truncated = whole[..whole.len() - 7].to_vec();
    // Case 4: a length beyond the maximum frame size.
    let oversized = FrameHeader {
        kind: FrameKind::Data,
        flags: 0,
        payload_len: max as u32 + 1,
        checksum: 0,
    }
    .encode()
    .to_vec();

    type Expectation = fn(&ShuffleError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expectation)> = vec![
        ("tampered", tampered, |e| {
            matches!(
                e,
                ShuffleError::Frame(
                    mesoflow_dataplane::shuffle::frame::FrameError::ChecksumMismatch { .. }
                )
            )
        }),
        ("forged", forged, |e| {
            matches!(
                e,
                ShuffleError::Frame(
                    mesoflow_dataplane::shuffle::frame::FrameError::InvalidPayload {
                        kind: FrameKind::Data,
                        ..
                    }
                )
            )
        }),
        ("truncated", truncated, |e| {
            matches!(
                e,
                ShuffleError::Frame(mesoflow_dataplane::shuffle::frame::FrameError::Truncated {
                    part: "payload",
                    ..
                })
            )
        }),
        ("oversized", oversized, |e| {
            matches!(
                e,
                ShuffleError::Frame(
                    mesoflow_dataplane::shuffle::frame::FrameError::Oversized { .. }
                )
            )
        }),
    ];
    for (i, (name, bytes, expected)) in cases.into_iter().enumerate() {
        let id = channel(3, i as u32, 0);
        let mut receiver = b.receiver::<KeyedRecord>(id).unwrap();
        let stop_code = rt.block_on(async {
            let (_client, mut stream) = raw_stream(&rogue, b_addr, id).await;
            // One good frame first: the channel works until the bad frame.
            stream.write_all(&valid_data_frame(100..105)).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            if name == "truncated" {
                let _ = stream.finish();
            }
            let first = receiver.recv_async().await.unwrap().unwrap();
            assert!(
                matches!(first, ShuffleMessage::Data(ref batch) if batch.len() == 5),
                "{name}"
            );
            let err = receiver.recv_async().await.unwrap_err();
            assert!(expected(&err), "{name}: unexpected error {err}");
            assert!(
                receiver.recv_async().await.unwrap().is_none(),
                "{name}: the channel must stay failed"
            );
            tokio::time::timeout(Duration::from_secs(5), stream.stopped())
                .await
                .unwrap()
        });
        // The receiver told the producer why it stopped reading (a finished stream whose data
        // was all received cannot be stopped any more).
        if name != "truncated" {
            assert_eq!(
                stop_code.unwrap(),
                Some(quinn::VarInt::from_u32(2)),
                "{name}"
            );
        }
    }
    // A control frame that is not allowed (a second Open) fails the channel too.
    let id = channel(3, 99, 0);
    let mut receiver = b.receiver::<KeyedRecord>(id).unwrap();
    rt.block_on(async {
        let (_client, mut stream) = raw_stream(&rogue, b_addr, id).await;
        stream
            .write_all(&encode_frame(FrameKind::Open, 0, &[0; 40]))
            .await
            .unwrap();
        let err = receiver.recv_async().await.unwrap_err();
        assert!(matches!(err, ShuffleError::Frame(_)), "{err}");
    });
    b.close();
}

#[test]
fn certificates_from_another_ca_are_refused_in_both_directions() {
    let rt = runtime();
    let ca = ClusterCa::generate("cluster").unwrap();
    let other = ClusterCa::generate("intruder").unwrap();
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), ShuffleConfig::default());
    let b_addr = b.local_addr().unwrap();

    // Client side refuses: the intruder's server certificate does not chain to our CA.
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), ShuffleConfig::default());
    let intruder_server = endpoint(
        &rt,
        &other.issue("exec-b").unwrap(),
        ShuffleConfig::default(),
    );
    let result = rt.block_on(a.open_sender::<KeyedRecord>(
        "exec-b",
        intruder_server.local_addr().unwrap(),
        channel(4, 0, 0),
    ));
    let err = result.unwrap_err();
    assert!(matches!(err, ShuffleError::Connect { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Server side refuses: the intruder trusts our CA (so it accepts our server) but presents a
    // client certificate from its own CA.
    let (cluster_ca_pem, _) = ca.to_pem();
    let intruder_creds = other
        .issue("exec-a")
        .unwrap()
        .trusting(&cluster_ca_pem)
        .unwrap();
    let intruder_client = endpoint(&rt, &intruder_creds, ShuffleConfig::default());
    let mut receiver = b.receiver::<KeyedRecord>(channel(4, 1, 0)).unwrap();
    let outcome =
        rt.block_on(intruder_client.open_sender::<KeyedRecord>("exec-b", b_addr, channel(4, 1, 0)));
    match outcome {
        Err(err) => assert!(
            matches!(
                err,
                ShuffleError::Connect { .. } | ShuffleError::ConnectionLost { .. }
            ),
            "{err}"
        ),
        Ok(mut sender) => {
            // The client may finish its handshake before the server rejects its certificate;
            // then the channel fails as soon as it is used.
            let err = std::thread::spawn(move || {
                sender.send_batch(&[KeyedRecord { key: 1, value: 1 }])?;
                sender.finish()
            })
            .join()
            .unwrap()
            .unwrap_err();
            assert!(matches!(err, ShuffleError::ConnectionLost { .. }), "{err}");
        }
    }
    // Nothing reached the receiver.
    let nothing = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), receiver.recv_async()).await
    });
    assert!(
        nothing.is_err(),
        "the intruder's stream must never be delivered"
    );

    // The legitimate executor still gets through.
    let mut ok_receiver = b.receiver::<KeyedRecord>(channel(4, 2, 0)).unwrap();
    let sender = rt
        .block_on(a.open_sender::<KeyedRecord>("exec-b", b_addr, channel(4, 2, 0)))
        .unwrap();
    let producer = std::thread::spawn(move || {
        let mut sender = sender;
        sender
            .send_batch(&[KeyedRecord { key: 7, value: 7 }])
            .unwrap();
        sender.finish().unwrap();
    });
    let mut values = Vec::new();
    drain(&mut ok_receiver, |batch| {
        values.extend(batch.iter().map(|r| r.value.to_native()))
    })
    .unwrap();
    producer.join().unwrap();
    assert_eq!(values, vec![7]);
    for endpoint in [a, b, intruder_server, intruder_client] {
        endpoint.close();
    }
}

#[test]
fn connection_killed_mid_stream_fails_both_ends_of_the_channel() {
    let rt = runtime();
    let ca = ClusterCa::generate("kill").unwrap();
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), ShuffleConfig::default());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), ShuffleConfig::default());
    let mut receiver = b.receiver::<KeyedRecord>(channel(5, 0, 0)).unwrap();
    let sender = rt
        .block_on(a.open_sender::<KeyedRecord>("exec-b", b.local_addr().unwrap(), channel(5, 0, 0)))
        .unwrap();

    let producer = std::thread::spawn(move || {
        let mut sender = sender;
        let batch: Vec<KeyedRecord> = (0..1024)
            .map(|value| KeyedRecord { key: 0, value })
            .collect();
        loop {
            // Runs until the channel reports the failure; never finishes normally.
            if let Err(err) = sender.send_batch(&batch) {
                return err;
            }
        }
    });
    let mut received = 0usize;
    let err = loop {
        match receiver.recv() {
            Ok(Some(ShuffleMessage::Data(batch))) => {
                received += batch.len();
                if received >= 100_000 && received - batch.len() < 100_000 {
                    // Kill the consumer's executor side of the connection mid-stream.
                    b.close();
                }
            }
            Ok(other) => panic!("unexpected {other:?}: the channel must fail, not end"),
            Err(err) => break err,
        }
    };
    assert!(received >= 100_000);
    assert!(
        matches!(err, ShuffleError::ConnectionLost { .. }),
        "receiver: {err}"
    );
    let producer_err = producer.join().unwrap();
    assert!(
        matches!(producer_err, ShuffleError::ConnectionLost { .. }),
        "sender: {producer_err}"
    );
    assert!(
        producer_err.to_string().contains("exec-b"),
        "{producer_err}"
    );
    a.close();
}

#[test]
fn dropped_sender_is_a_failure_not_an_end_of_stream() {
    let rt = runtime();
    let ca = ClusterCa::generate("drop").unwrap();
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), ShuffleConfig::default());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), ShuffleConfig::default());
    let mut receiver = b.receiver::<KeyedRecord>(channel(6, 0, 0)).unwrap();
    let mut sender = rt
        .block_on(a.open_sender::<KeyedRecord>("exec-b", b.local_addr().unwrap(), channel(6, 0, 0)))
        .unwrap();
    std::thread::spawn(move || {
        sender
            .send_batch(&[KeyedRecord { key: 1, value: 2 }])
            .unwrap();
        sender.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(sender);
    })
    .join()
    .unwrap();
    let mut values = Vec::new();
    let err = drain(&mut receiver, |batch| {
        values.extend(batch.iter().map(|r| r.value.to_native()))
    })
    .unwrap_err();
    assert_eq!(values, vec![2]);
    assert!(
        matches!(err, ShuffleError::ProducerAborted { code: 1 }),
        "{err}"
    );
    a.close();
    b.close();
}

#[test]
fn events_arrive_in_order_and_stream_may_open_before_receiver_registers() {
    let rt = runtime();
    let ca = ClusterCa::generate("events").unwrap();
    let config = ShuffleConfig {
        buffer_timeout: Duration::from_millis(1),
        ..ShuffleConfig::default()
    };
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), config.clone());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), config);
    let id = channel(7, 0, 0);
    let mut sender = rt
        .block_on(a.open_sender::<KeyedRecord>("exec-b", b.local_addr().unwrap(), id))
        .unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let producer = std::thread::spawn(move || {
        sender
            .send_batch(&[KeyedRecord { key: 1, value: 1 }])
            .unwrap();
        // No flush: the buffer timeout must ship this partial frame on its own.
        wait.recv().unwrap();
        sender.send_event(ChannelEvent::Watermark(10)).unwrap();
        sender
            .send_batch(&[KeyedRecord { key: 1, value: 2 }])
            .unwrap();
        let barrier = mesoflow_dataplane::shuffle::Barrier {
            checkpoint_id: 3,
            timestamp_ms: 99,
            priority: false,
        };
        sender.send_event(ChannelEvent::Barrier(barrier)).unwrap();
        sender
            .send_batch(&[KeyedRecord { key: 1, value: 3 }])
            .unwrap();
        sender.finish().unwrap();
    });
    // Register the receiver only after the stream is open.
    std::thread::sleep(Duration::from_millis(100));
    let mut receiver = b.receiver::<KeyedRecord>(id).unwrap();
    assert!(matches!(
        b.receiver::<KeyedRecord>(id),
        Err(ShuffleError::DuplicateChannel { .. })
    ));
    let first = receiver.recv().unwrap().unwrap();
    assert!(matches!(first, ShuffleMessage::Data(ref batch) if batch.len() == 1));
    release.send(()).unwrap();
    let mut trace = Vec::new();
    while let Some(message) = receiver.recv().unwrap() {
        trace.push(match message {
            ShuffleMessage::Data(batch) => format!(
                "data {:?}",
                batch
                    .iter()
                    .map(|r| r.value.to_native())
                    .collect::<Vec<_>>()
            ),
            ShuffleMessage::Event(event) => format!("{event:?}"),
        });
    }
    producer.join().unwrap();
    assert_eq!(
        trace,
        vec![
            "Watermark(10)".to_owned(),
            "data [2]".to_owned(),
            "Barrier(Barrier { checkpoint_id: 3, timestamp_ms: 99, priority: false })".to_owned(),
            "data [3]".to_owned(),
            "EndOfPartition".to_owned(),
        ]
    );
    a.close();
    b.close();
}

#[test]
fn both_executors_dialing_each_other_converge_on_one_connection() {
    let rt = runtime();
    let ca = ClusterCa::generate("dedupe").unwrap();
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), ShuffleConfig::default());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), ShuffleConfig::default());
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // Both sides open a channel to the other at the same time.
    let (to_b, to_a) = rt.block_on(async {
        tokio::join!(
            a.open_sender::<KeyedRecord>("exec-b", b_addr, channel(8, 0, 0)),
            b.open_sender::<KeyedRecord>("exec-a", a_addr, channel(8, 1, 0)),
        )
    });
    let (to_b, to_a) = (to_b.unwrap(), to_a.unwrap());
    // Both sides settle on the connection dialed by the smaller id ("exec-a"). The acceptor
    // installs an incoming connection in a task of its own, so give it a moment.
    let settled = rt.block_on(async {
        for _ in 0..500 {
            let (on_a, on_b) = (
                a.connection_initiator("exec-b").await,
                b.connection_initiator("exec-a").await,
            );
            if on_a.as_deref() == Some("exec-a") && on_b.as_deref() == Some("exec-a") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    assert!(
        settled,
        "a: {:?}, b: {:?}",
        rt.block_on(a.connection_initiator("exec-b")),
        rt.block_on(b.connection_initiator("exec-a"))
    );
    // Later channels in both directions, then all of them carry data.
    let to_b2 = rt
        .block_on(a.open_sender::<KeyedRecord>("exec-b", b_addr, channel(8, 2, 0)))
        .unwrap();
    let to_a2 = rt
        .block_on(b.open_sender::<KeyedRecord>("exec-a", a_addr, channel(8, 3, 0)))
        .unwrap();
    let receivers = vec![
        b.receiver::<KeyedRecord>(channel(8, 0, 0)).unwrap(),
        a.receiver::<KeyedRecord>(channel(8, 1, 0)).unwrap(),
        b.receiver::<KeyedRecord>(channel(8, 2, 0)).unwrap(),
        a.receiver::<KeyedRecord>(channel(8, 3, 0)).unwrap(),
    ];
    let producers: Vec<_> = [to_b, to_a, to_b2, to_a2]
        .into_iter()
        .enumerate()
        .map(|(i, mut sender)| {
            std::thread::spawn(move || {
                sender
                    .send_batch(&[KeyedRecord {
                        key: i as u32,
                        value: i as u64,
                    }])
                    .unwrap();
                sender.finish().unwrap();
            })
        })
        .collect();
    for (i, mut receiver) in receivers.into_iter().enumerate() {
        let mut values = Vec::new();
        drain(&mut receiver, |batch| {
            values.extend(batch.iter().map(|r| r.value.to_native()))
        })
        .unwrap();
        assert_eq!(values, vec![i as u64]);
    }
    for producer in producers {
        producer.join().unwrap();
    }
    a.close();
    b.close();
}

/// A UDP relay between two endpoints that can be cut, like a killed executor or a partition:
/// packets simply stop, nobody sends a CONNECTION_CLOSE.
struct Relay {
    addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(to: SocketAddr) -> Self {
        let front = std::net::UdpSocket::bind(LOCALHOST).unwrap();
        let back = std::net::UdpSocket::bind(LOCALHOST).unwrap();
        back.connect(to).unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client: Arc<parking_lot::Mutex<Option<SocketAddr>>> = Arc::default();
        for socket in [&front, &back] {
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
        }
        let addr = front.local_addr().unwrap();
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        let (cut1, cut2, client1, client2) =
            (cut.clone(), cut.clone(), client.clone(), client.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    *client1.lock() = Some(from);
                    if !cut1.load(Ordering::SeqCst) {
                        let _ = back.send(&buf[..n]);
                    }
                }
            }
        });
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                if let Ok(n) = back2.recv(&mut buf) {
                    let target = *client2.lock();
                    if let (Some(target), false) = (target, cut2.load(Ordering::SeqCst)) {
                        let _ = front2.send_to(&buf[..n], target);
                    }
                }
            }
        });
        Self { addr, cut }
    }
}

#[test]
fn silently_dead_peer_is_detected_by_idle_timeout_on_both_ends() {
    let config = ShuffleConfig {
        idle_timeout: Duration::from_millis(1500),
        keep_alive: Duration::from_millis(300),
        ..ShuffleConfig::default()
    };
    let rt = runtime();
    let ca = ClusterCa::generate("partition").unwrap();
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), config.clone());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), config);
    let relay = Relay::start(b.local_addr().unwrap());
    let mut receiver = b.receiver::<KeyedRecord>(channel(9, 0, 0)).unwrap();
    let sender = rt
        .block_on(a.open_sender::<KeyedRecord>("exec-b", relay.addr, channel(9, 0, 0)))
        .unwrap();
    let producer = std::thread::spawn(move || {
        let mut sender = sender;
        let batch: Vec<KeyedRecord> = (0..1024)
            .map(|value| KeyedRecord { key: 0, value })
            .collect();
        loop {
            if let Err(err) = sender.send_batch(&batch) {
                return err;
            }
        }
    });
    let mut received = 0usize;
    let err = loop {
        match receiver.recv() {
            Ok(Some(ShuffleMessage::Data(batch))) => {
                received += batch.len();
                if received >= 50_000 {
                    relay.cut.store(true, Ordering::SeqCst);
                }
            }
            Ok(other) => panic!("unexpected {other:?}: the channel must fail, not end"),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(err, ShuffleError::ConnectionLost { .. }),
        "receiver: {err}"
    );
    assert!(err.to_string().contains("timed out"), "receiver: {err}");
    let producer_err = producer.join().unwrap();
    assert!(
        matches!(producer_err, ShuffleError::ConnectionLost { .. }),
        "sender: {producer_err}"
    );
    a.close();
    b.close();
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, PartialEq)]
struct OtherRecord {
    name: String,
}

#[test]
fn a_receiver_of_another_record_type_refuses_the_channel() {
    let rt = runtime();
    let ca = ClusterCa::generate("types").unwrap();
    let a = endpoint(&rt, &ca.issue("exec-a").unwrap(), ShuffleConfig::default());
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), ShuffleConfig::default());
    let mut receiver = b.receiver::<OtherRecord>(channel(10, 0, 0)).unwrap();
    let sender = rt
        .block_on(a.open_sender::<KeyedRecord>(
            "exec-b",
            b.local_addr().unwrap(),
            channel(10, 0, 0),
        ))
        .unwrap();
    let producer = std::thread::spawn(move || {
        let mut sender = sender;
        // Keep the stream open (a finished stream whose bytes all arrived cannot be stopped any
        // more) until the consumer's refusal comes back.
        for _ in 0..1000 {
            sender.send_batch(&[KeyedRecord { key: 1, value: 1 }])?;
            sender.flush()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok::<(), ShuffleError>(())
    });
    let err = receiver.recv().unwrap_err();
    assert!(
        matches!(err, ShuffleError::RecordTypeMismatch { .. }),
        "{err}"
    );
    let producer_err = producer.join().unwrap().unwrap_err();
    assert!(
        matches!(producer_err, ShuffleError::ConsumerStopped { code: 7 }),
        "{producer_err}"
    );
    a.close();
    b.close();
}

#[test]
fn silent_and_unroutable_streams_are_refused_without_blocking_others() {
    let config = ShuffleConfig {
        stream_header_timeout: Duration::from_millis(200),
        max_parked_streams: 1,
        ..ShuffleConfig::default()
    };
    let rt = runtime();
    let ca = ClusterCa::generate("limits").unwrap();
    let b = endpoint(&rt, &ca.issue("exec-b").unwrap(), config);
    let b_addr = b.local_addr().unwrap();
    let rogue = ca.issue("exec-rogue").unwrap();
    rt.block_on(async {
        let mut client = quinn::Endpoint::client(LOCALHOST.parse().unwrap()).unwrap();
        client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
            rogue.quic_client_config().unwrap(),
        )));
        let server_name = mesoflow_dataplane::shuffle::tls::server_name_for("exec-b").unwrap();
        let connection = client.connect(b_addr, &server_name).unwrap().await.unwrap();

        // A stream that never names its channel is stopped after the header timeout.
        let mut silent = connection.open_uni().await.unwrap();
        silent.write_all(b"MF").await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(10), silent.stopped())
            .await
            .unwrap();
        assert_eq!(code.unwrap(), Some(quinn::VarInt::from_u32(6)));

        // One stream may wait for a receiver that is not registered yet; the next is refused.
        let record_type =
            mesoflow_dataplane::shuffle::channel::record_type_fingerprint::<KeyedRecord>();
        let mut streams = Vec::new();
        for producer in 0..2 {
            let header = mesoflow_dataplane::shuffle::channel::ChannelHeader {
                channel: channel(11, producer, 0),
                record_type,
            };
            let mut stream = connection.open_uni().await.unwrap();
            stream.write_all(&header.encode()).await.unwrap();
            streams.push(stream);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused = tokio::time::timeout(Duration::from_secs(10), streams[1].stopped())
            .await
            .unwrap();
        assert_eq!(refused.unwrap(), Some(quinn::VarInt::from_u32(5)));

        // The parked one is delivered once its receiver registers.
        let mut receiver = b.receiver::<KeyedRecord>(channel(11, 0, 0)).unwrap();
        streams[0].write_all(&valid_data_frame(0..3)).await.unwrap();
        streams[0]
            .write_all(&ChannelEvent::EndOfPartition.encode())
            .await
            .unwrap();
        streams[0].finish().unwrap();
        let mut values = Vec::new();
        while let Some(message) = receiver.recv_async().await.unwrap() {
            if let ShuffleMessage::Data(batch) = message {
                values.extend(batch.iter().map(|r| r.value.to_native()));
            }
        }
        assert_eq!(values, vec![0, 1, 2]);
        client.close(0u32.into(), b"done");
    });
    b.close();
}
