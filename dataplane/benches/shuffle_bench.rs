//! Shuffle throughput on loopback, one connection, 100-byte records, three ways in one run:
//!
//! 1. `mesoflow`: `RemoteSender` -> QUIC (TLS 1.3, ring) -> `RemoteReceiver`, records serialized
//!    with rkyv into frames, every frame CRC-checked and bytecheck-validated, every record read
//!    in place by the consumer;
//! 2. `quinn-bulk`: the same endpoints' transport and TLS settings, pre-built 64 KiB chunks
//!    written to one stream and counted on the other side: the transport's ceiling;
//! 3. `tcp-framed`: the same frames (serialize, CRC, validate, read) over a plain TCP socket.
//!
//! CPU time is the whole process's (user + system, both ends), read from /proc/self/stat, so
//! "per CPU-second" counts sender and receiver together.
//!
//! Run: `cargo bench -p mesoflow-dataplane --bench shuffle-bench -- [records] [batch-bytes]`
//! Environment: `SHUFFLE_BENCH_RUNS` (interleaved runs per mode, default 3; the median is
//! reported), `SHUFFLE_BENCH_ONLY=mesoflow|quinn-bulk|tcp-framed` (one mode, for profiling).

use mesoflow_dataplane::shuffle::batch::{DataFrameBuilder, RecordBatch};
use mesoflow_dataplane::shuffle::frame::FrameDecoder;
use mesoflow_dataplane::shuffle::{
    ChannelEvent, ChannelId, ClusterCa, ShuffleConfig, ShuffleEndpoint, ShuffleMessage,
};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 100 bytes archived (align 4, no padding), like the workloads' datagen records.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Copy)]
struct BenchRecord {
    key: u32,
    seq: u32,
    payload: [u8; 92],
}

const SENDER_BATCH: usize = 1024;

struct Outcome {
    name: &'static str,
    records: u64,
    bytes: u64,
    wall: Duration,
    cpu: Duration,
}

impl Outcome {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64() / 1e6
    }
    fn records_per_cpu_sec(&self) -> f64 {
        self.records as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// User + system CPU time of this process.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 10) // USER_HZ is 100 on Linux
}

fn measure(name: &'static str, run: impl FnOnce() -> (u64, u64)) -> Outcome {
    let (cpu0, start) = (process_cpu(), Instant::now());
    let (records, bytes) = run();
    Outcome {
        name,
        records,
        bytes,
        wall: start.elapsed(),
        cpu: process_cpu() - cpu0,
    }
}

fn records_template() -> Vec<BenchRecord> {
    (0..SENDER_BATCH as u32)
        .map(|i| BenchRecord {
            key: i.wrapping_mul(2_654_435_761),
            seq: i,
            payload: [i as u8; 92],
        })
        .collect()
}

fn bench_mesoflow(rt: &tokio::runtime::Runtime, config: &ShuffleConfig, total: u64) -> (u64, u64) {
    let ca = ClusterCa::generate("bench").unwrap();
    let _guard = rt.enter();
    let local = "127.0.0.1:0".parse().unwrap();
    let a = ShuffleEndpoint::bind(local, &ca.issue("a").unwrap(), config.clone()).unwrap();
    let b = ShuffleEndpoint::bind(local, &ca.issue("b").unwrap(), config.clone()).unwrap();
    let id = ChannelId {
        job: 1,
        attempt: 0,
        edge: 0,
        producer: 0,
        consumer: 0,
    };
    let mut receiver = b.receiver::<BenchRecord>(id).unwrap();
    let mut sender = rt
        .block_on(a.open_sender::<BenchRecord>("b", b.local_addr().unwrap(), id))
        .unwrap();
    let producer = std::thread::spawn(move || {
        let mut batch = records_template();
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(SENDER_BATCH as u64) as usize;
            for record in &mut batch[..n] {
                record.seq = record.seq.wrapping_add(1);
            }
            sender.send_batch(&batch[..n]).unwrap();
            sent += n as u64;
        }
        sender.send_event(ChannelEvent::EndOfPartition).unwrap();
        drop(sender);
    });
    let (mut records, mut bytes, mut checksum) = (0u64, 0u64, 0u64);
    while let Some(message) = receiver.recv().unwrap() {
        if let ShuffleMessage::Data(batch) = message {
            records += batch.len() as u64;
            bytes += batch.payload_bytes() as u64;
            for record in batch.iter() {
                checksum = checksum
                    .wrapping_add(record.key.to_native() as u64 ^ record.payload[91] as u64);
            }
        }
    }
    producer.join().unwrap();
    std::hint::black_box(checksum);
    assert_eq!(records, total);
    a.close();
    b.close();
    (records, bytes)
}

/// A quinn endpoint on a socket sized like the shuffle endpoint's (same kernel buffers).
fn bulk_endpoint(server: Option<quinn::ServerConfig>, buffer_bytes: usize) -> quinn::Endpoint {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    let _ = socket.set_send_buffer_size(buffer_bytes);
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap()
}

fn bench_quinn_bulk(
    rt: &tokio::runtime::Runtime,
    config: &ShuffleConfig,
    total_bytes: u64,
) -> (u64, u64) {
    let ca = ClusterCa::generate("bench").unwrap();
    let (server_creds, client_creds) = (ca.issue("b").unwrap(), ca.issue("a").unwrap());
    rt.block_on(async move {
        let transport = Arc::new(config.transport());
        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(server_creds.quic_server_config().unwrap()));
        server_config.transport_config(transport.clone());
        let server = bulk_endpoint(Some(server_config), config.socket_buffer_bytes);
        let mut client = bulk_endpoint(None, config.socket_buffer_bytes);
        let mut client_config =
            quinn::ClientConfig::new(Arc::new(client_creds.quic_client_config().unwrap()));
        client_config.transport_config(transport);
        client.set_default_client_config(client_config);
        let server_addr = server.local_addr().unwrap();
        let receiver = tokio::spawn(async move {
            let connection = server.accept().await.unwrap().await.unwrap();
            let mut stream = connection.accept_uni().await.unwrap();
            let mut chunks: [bytes::Bytes; 32] = Default::default();
            let mut received = 0u64;
            while let Some(n) = stream.read_chunks(&mut chunks).await.unwrap() {
                received += chunks[..n].iter().map(|c| c.len() as u64).sum::<u64>();
            }
            received
        });
        let name = mesoflow_dataplane::shuffle::tls::server_name_for("b").unwrap();
        let connection = client.connect(server_addr, &name).unwrap().await.unwrap();
        let mut stream = connection.open_uni().await.unwrap();
        let chunk = bytes::Bytes::from(vec![7u8; config.batch_bytes]);
        let mut sent = 0u64;
        while sent < total_bytes {
            let n = (total_bytes - sent).min(chunk.len() as u64) as usize;
            stream.write_chunk(chunk.slice(..n)).await.unwrap();
            sent += n as u64;
        }
        stream.finish().unwrap();
        let received = receiver.await.unwrap();
        assert_eq!(received, total_bytes);
        client.close(0u32.into(), b"done");
        (total_bytes / 100, total_bytes)
    })
}

fn bench_tcp(config: &ShuffleConfig, total: u64) -> (u64, u64) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let batch_bytes = config.batch_bytes;
    let max_frame = config.max_frame_bytes;
    let producer = std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_nodelay(true).unwrap();
        let mut batch = records_template();
        let mut sent = 0u64;
        let mut builder = DataFrameBuilder::with_capacity(batch_bytes + batch_bytes / 4);
        while sent < total {
            let n = (total - sent).min(SENDER_BATCH as u64) as usize;
            for record in &mut batch[..n] {
                record.seq = record.seq.wrapping_add(1);
            }
            // Same batching as the outbox: fill frames to batch_bytes.
            let mut rest = &batch[..n];
            while !rest.is_empty() {
                let room = batch_bytes.saturating_sub(builder.payload_len()).max(100);
                let take = (room / 100).clamp(1, rest.len());
                builder.push(&rest[..take], max_frame).unwrap().unwrap();
                rest = &rest[take..];
                if builder.payload_len() >= batch_bytes {
                    let frame = std::mem::replace(
                        &mut builder,
                        DataFrameBuilder::with_capacity(batch_bytes + batch_bytes / 4),
                    );
                    socket.write_all(&frame.seal()).unwrap();
                }
            }
            sent += n as u64;
        }
        if !builder.is_empty() {
            socket.write_all(&builder.seal()).unwrap();
        }
    });
    let (mut socket, _) = listener.accept().unwrap();
    let mut decoder = FrameDecoder::new(max_frame);
    let mut buf = vec![0u8; 256 * 1024];
    let (mut records, mut bytes, mut checksum) = (0u64, 0u64, 0u64);
    loop {
        let n = socket.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let mut input = &buf[..n];
        while let Some(frame) = decoder.decode(&mut input).unwrap() {
            let batch = RecordBatch::<BenchRecord>::validate(frame.payload).unwrap();
            records += batch.len() as u64;
            bytes += batch.payload_bytes() as u64;
            for record in batch.iter() {
                checksum = checksum
                    .wrapping_add(record.key.to_native() as u64 ^ record.payload[91] as u64);
            }
        }
    }
    producer.join().unwrap();
    std::hint::black_box(checksum);
    assert_eq!(records, total);
    (records, bytes)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let total: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let mut config = ShuffleConfig::default();
    if let Some(batch) = args.get(1).and_then(|a| a.parse().ok()) {
        config.batch_bytes = batch;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "shuffle-bench: {total} records of {} bytes, one connection on loopback, batch {} bytes, buffer timeout {:?}",
        std::mem::size_of::<ArchivedBenchRecord>(),
        config.batch_bytes,
        config.buffer_timeout
    );
    // Warm up (handshakes, allocator, page faults), then measure the three modes interleaved,
    // `runs` times each, and report each mode's median run: on a shared machine this keeps a
    // burst of load from landing on one mode only.
    let runs: usize = std::env::var("SHUFFLE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("SHUFFLE_BENCH_ONLY").unwrap_or_default();
    let wanted = |mode: &str| only.is_empty() || only == mode;
    bench_mesoflow(&rt, &config, total / 20);
    let wire_bytes = bench_mesoflow(&rt, &config, total / 20).1 * 20;
    let (mut ours, mut bulk, mut framed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        if wanted("mesoflow") {
            ours.push(measure("mesoflow", || bench_mesoflow(&rt, &config, total)));
        }
        if wanted("quinn-bulk") {
            bulk.push(measure("quinn-bulk", || {
                bench_quinn_bulk(&rt, &config, wire_bytes)
            }));
        }
        if wanted("tcp-framed") {
            framed.push(measure("tcp-framed", || bench_tcp(&config, total)));
        }
    }
    let median = |mut outcomes: Vec<Outcome>| {
        outcomes.sort_by_key(|outcome| outcome.wall);
        let middle = outcomes.len() / 2;
        outcomes.into_iter().nth(middle)
    };
    let (mesoflow, quinn, tcp) = (median(ours), median(bulk), median(framed));
    println!("median of {runs} interleaved runs per mode:");
    println!(
        "{:<11} {:>14} {:>10} {:>16} {:>8} {:>8}",
        "mode", "records/s", "MB/s", "records/CPU-s", "wall s", "CPU s"
    );
    for outcome in [&mesoflow, &quinn, &tcp].into_iter().flatten() {
        println!(
            "{:<11} {:>14.0} {:>10.1} {:>16.0} {:>8.2} {:>8.2}",
            outcome.name,
            outcome.records_per_sec(),
            outcome.mb_per_sec(),
            outcome.records_per_cpu_sec(),
            outcome.wall.as_secs_f64(),
            outcome.cpu.as_secs_f64()
        );
    }
    if let (Some(mesoflow), Some(quinn), Some(tcp)) = (&mesoflow, &quinn, &tcp) {
        println!(
            "ratios: mesoflow/quinn-bulk MB/s = {:.2} (target >= 0.80); mesoflow/tcp-framed records/s = {:.2}; \
             mesoflow records per CPU-second = {:.2} M (target >= 1.0 M, both ends counted)",
            mesoflow.mb_per_sec() / quinn.mb_per_sec(),
            mesoflow.records_per_sec() / tcp.records_per_sec(),
            mesoflow.records_per_cpu_sec() / 1e6
        );
    }
}
