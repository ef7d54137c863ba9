//! End-to-end tests of the control channel: a real ControlServer and real clients (and
//! hand-rolled misbehaving peers) over QUIC on 127.0.0.1, with real mutual TLS.

use mesoflow_dataplane::control::frame::{FrameDecoder, encode_frame};
use mesoflow_dataplane::control::{
    ControlClient, ControlConfig, ControlError, ControlEvent, ControlServer, codes,
};
use mesoflow_dataplane::shuffle::tls::server_name_for;
use mesoflow_dataplane::shuffle::{ClusterCa, ExecutorCredentials};
use mesoflow_proto::control::{
    CancelAttempt, Heartbeat, JobManagerMessage, PROTOCOL_VERSION, RegisterTaskManager,
    TaskManagerMessage, job_manager_message, task_manager_message,
};
use prost::Message as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const JOB_MANAGER: &str = "jobmanager";
/// Upper bound on every wait; the tests pass in milliseconds when nothing is wrong.
const WAIT: Duration = Duration::from_secs(20);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn config() -> ControlConfig {
    ControlConfig {
        handshake_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

struct Cluster {
    ca: ClusterCa,
    server: ControlServer,
    addr: SocketAddr,
}

fn cluster() -> Cluster {
    let ca = ClusterCa::generate("control-test").unwrap();
    let jm = ca.issue(JOB_MANAGER).unwrap();
    let server = ControlServer::bind("127.0.0.1:0".parse().unwrap(), &jm, config()).unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());
    Cluster { ca, server, addr }
}

fn register(id: &str) -> RegisterTaskManager {
    RegisterTaskManager {
        protocol_version: PROTOCOL_VERSION,
        task_manager_id: id.to_owned(),
        slots: 4,
        data_endpoint: "127.0.0.1:7001".to_owned(),
        registration_token: bytes::Bytes::from_static(b"token"),
        pid: std::process::id(),
    }
}

fn heartbeat(sequence: u64) -> TaskManagerMessage {
    TaskManagerMessage {
        kind: Some(task_manager_message::Kind::Heartbeat(Heartbeat {
            sequence,
            metrics: Vec::new(),
        })),
    }
}

fn cancel(attempt: u32) -> JobManagerMessage {
    JobManagerMessage {
        kind: Some(job_manager_message::Kind::Cancel(CancelAttempt {
            job_id: bytes::Bytes::from_static(&[7; 16]),
            attempt,
        })),
    }
}

impl Cluster {
    async fn connect(&self, id: &str) -> Result<ControlClient, ControlError> {
        let creds = self.ca.issue(id).unwrap();
        ControlClient::connect(self.addr, JOB_MANAGER, &creds, register(id), config())
            .await
            .map(|(client, _)| client)
    }

    async fn event(&self) -> ControlEvent {
        within("a control event", self.server.next_event())
            .await
            .expect("the server's event stream ended")
    }

    async fn expect_registered(&self, id: &str) {
        match self.event().await {
            ControlEvent::Registered {
                task_manager_id,
                register: got,
                remote,
            } => {
                assert_eq!(task_manager_id, id);
                assert_eq!(got, register(id));
                assert!(remote.ip().is_loopback());
            }
            other => panic!("expected {id} to register, got {other:?}"),
        }
    }

    async fn expect_disconnected(&self, id: &str) -> String {
        match self.event().await {
            ControlEvent::Disconnected {
                task_manager_id,
                reason,
            } => {
                assert_eq!(task_manager_id, id);
                reason
            }
            other => panic!("expected {id} to disconnect, got {other:?}"),
        }
    }

    /// A good TaskManager can still register, and it is the next thing the server reports.
    async fn still_serves(&self, id: &str) -> ControlClient {
        let client = within("a good client", self.connect(id)).await.unwrap();
        self.expect_registered(id).await;
        client
    }
}

/// A QUIC connection with a valid certificate that speaks whatever bytes the test wants.
async fn raw_peer(addr: SocketAddr, creds: &ExecutorCredentials) -> quinn::Connection {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        creds.quic_client_config().unwrap(),
    )));
    let connecting = endpoint
        .connect(addr, &server_name_for(JOB_MANAGER).unwrap())
        .unwrap();
    within("the raw peer's handshake", connecting)
        .await
        .unwrap()
}

/// Waits for the server to close `connection`; its application code and reason.
async fn closed_by_server(connection: &quinn::Connection) -> (u32, String) {
    match within("the server to close the connection", connection.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => (
            u32::try_from(close.error_code.into_inner()).unwrap(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("expected an application close, got {other}"),
    }
}

/// Opens the control stream, writes `bytes` and expects a refusal mentioning `why`.
async fn expect_refused_after(cluster: &Cluster, id: &str, bytes: &[u8], why: &str) {
    let connection = raw_peer(cluster.addr, &cluster.ca.issue(id).unwrap()).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    // The server answers with RegistrationRefused before it closes the connection.
    let answer = within("the refusal", recv.read_to_end(4096)).await.unwrap();
    let mut decoder = FrameDecoder::new(4096);
    decoder.feed(&answer);
    let refusal = JobManagerMessage::decode(decoder.next_frame().unwrap().unwrap()).unwrap();
    assert!(
        matches!(&refusal.kind, Some(job_manager_message::Kind::Refused(r)) if r.reason.contains(why)),
        "{refusal:?}"
    );
    let (code, reason) = closed_by_server(&connection).await;
    assert_eq!(code, codes::REFUSED, "{reason}");
    assert!(reason.contains(why), "{reason:?} should mention {why:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_messages_flow_both_ways() {
    let cluster = cluster();
    let creds = cluster.ca.issue("tm-1").unwrap();
    let (mut client, accepted) = within(
        "registration",
        ControlClient::connect(
            cluster.addr,
            JOB_MANAGER,
            &creds,
            register("tm-1"),
            config(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(accepted.heartbeat_interval_ms, 1000);
    cluster.expect_registered("tm-1").await;
    assert_eq!(cluster.server.connected(), vec!["tm-1".to_owned()]);

    // TaskManager -> JobManager.
    client.send(heartbeat(1)).unwrap();
    assert_eq!(
        cluster.event().await,
        ControlEvent::Message {
            task_manager_id: "tm-1".into(),
            message: heartbeat(1)
        }
    );

    // JobManager -> TaskManager.
    cluster.server.send("tm-1", cancel(3)).unwrap();
    let got = within("a JobManager message", client.recv()).await.unwrap();
    assert_eq!(got, Some(cancel(3)));

    // Split halves from different tasks: a cloned sender streams heartbeats in order while the
    // receiver takes what the JobManager sends.
    let (sender, mut receiver) = client.split();
    let heartbeats = {
        let sender = sender.clone();
        tokio::spawn(async move {
            for sequence in 2..=50 {
                sender.send(heartbeat(sequence)).unwrap();
            }
        })
    };
    for attempt in 0..20 {
        cluster.server.send("tm-1", cancel(attempt)).unwrap();
    }
    for attempt in 0..20 {
        let got = within("a JobManager message", receiver.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(cancel(attempt)));
    }
    heartbeats.await.unwrap();
    for sequence in 2..=50 {
        assert_eq!(
            cluster.event().await,
            ControlEvent::Message {
                task_manager_id: "tm-1".into(),
                message: heartbeat(sequence)
            }
        );
    }

    // What the API refuses locally.
    assert!(matches!(
        cluster.server.send("tm-unknown", cancel(0)),
        Err(ControlError::UnknownTaskManager(id)) if id == "tm-unknown"
    ));
    assert!(matches!(
        sender.send(TaskManagerMessage {
            kind: Some(task_manager_message::Kind::Register(register("tm-1")))
        }),
        Err(ControlError::Protocol(_))
    ));
    drop(sender);
    drop(receiver);
    let reason = cluster.expect_disconnected("tm-1").await;
    assert!(!reason.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_manager_from_another_ca_is_refused_and_the_server_keeps_serving() {
    let cluster = cluster();
    let stranger = ClusterCa::generate("control-test")
        .unwrap()
        .issue("tm-1")
        .unwrap();
    let result = within(
        "the stranger's connect",
        ControlClient::connect(
            cluster.addr,
            JOB_MANAGER,
            &stranger,
            register("tm-1"),
            config(),
        ),
    )
    .await;
    assert!(result.is_err(), "a foreign certificate must be refused");

    // The stranger produced no event: the next one is the good client's registration.
    let mut good = cluster.still_serves("tm-1").await;
    cluster.server.send("tm-1", cancel(1)).unwrap();
    assert_eq!(
        within("a message", good.recv()).await.unwrap(),
        Some(cancel(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_server_with_another_name() {
    let cluster = cluster();
    let creds = cluster.ca.issue("tm-1").unwrap();
    let result = within(
        "connect",
        ControlClient::connect(
            cluster.addr,
            "other-jobmanager",
            &creds,
            register("tm-1"),
            config(),
        ),
    )
    .await;
    assert!(
        matches!(result, Err(ControlError::Connect { .. })),
        "{result:?}"
    );
    cluster.still_serves("tm-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_and_bad_first_frames_are_refused_and_the_server_keeps_serving() {
    let cluster = cluster();

    // Datagrams that are not QUIC, or look like the start of a QUIC long header but are not.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for size in [0usize, 1, 7, 64, 1200, 1500] {
        for first in [0x00u8, 0x40, 0xc0, 0xff] {
            let mut datagram = vec![first; size];
            for byte in datagram.iter_mut().skip(1) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            socket.send_to(&datagram, cluster.addr).unwrap();
        }
    }

    // Valid certificates, bad first frames.
    let mut garbage = 5u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 5]);
    expect_refused_after(&cluster, "tm-garbage", &garbage, "malformed").await;
    expect_refused_after(&cluster, "tm-big", &u32::MAX.to_be_bytes(), "exceeds").await;
    expect_refused_after(
        &cluster,
        "tm-heartbeat",
        &encode_frame(&heartbeat(1)),
        "must be Register",
    )
    .await;
    let mut old = register("tm-old");
    old.protocol_version = PROTOCOL_VERSION + 1;
    let old = TaskManagerMessage {
        kind: Some(task_manager_message::Kind::Register(old)),
    };
    expect_refused_after(&cluster, "tm-old", &encode_frame(&old), "protocol version").await;

    // A stream that ends before a whole frame.
    let connection = raw_peer(cluster.addr, &cluster.ca.issue("tm-short").unwrap()).await;
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    send.write_all(&[0, 0]).await.unwrap();
    send.finish().unwrap();
    let (code, reason) = closed_by_server(&connection).await;
    assert_eq!(code, codes::REFUSED, "{reason}");

    // None of them produced an event, and a good client still registers.
    let client = cluster.still_serves("tm-good").await;
    client.send(heartbeat(9)).unwrap();
    assert_eq!(
        cluster.event().await,
        ControlEvent::Message {
            task_manager_id: "tm-good".into(),
            message: heartbeat(9)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_reads_the_refusal_reason() {
    let cluster = cluster();
    // The certificate says tm-2, the registration says tm-3.
    let creds = cluster.ca.issue("tm-2").unwrap();
    let result = within(
        "connect",
        ControlClient::connect(
            cluster.addr,
            JOB_MANAGER,
            &creds,
            register("tm-3"),
            config(),
        ),
    )
    .await;
    match result {
        Err(ControlError::Refused(reason)) => {
            assert!(
                reason.contains("'tm-3'") && reason.contains("'tm-2'"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let mut stale = register("tm-2");
    stale.protocol_version = 0;
    let result = within(
        "connect",
        ControlClient::connect(cluster.addr, JOB_MANAGER, &creds, stale, config()),
    )
    .await;
    assert!(
        matches!(&result, Err(ControlError::Refused(reason)) if reason.contains("protocol version")),
        "{result:?}"
    );
    cluster.still_serves("tm-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_peer_sending_a_bad_frame_is_disconnected() {
    let cluster = cluster();
    for (id, bad, why) in [
        ("tm-big", u32::MAX.to_be_bytes().to_vec(), "exceeds"),
        (
            "tm-garbage",
            [&3u32.to_be_bytes()[..], &[0xff; 3]].concat(),
            "malformed",
        ),
        (
            "tm-twice",
            encode_frame(&TaskManagerMessage {
                kind: Some(task_manager_message::Kind::Register(register("tm-twice"))),
            })
            .to_vec(),
            "second Register",
        ),
    ] {
        let connection = raw_peer(cluster.addr, &cluster.ca.issue(id).unwrap()).await;
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let first = TaskManagerMessage {
            kind: Some(task_manager_message::Kind::Register(register(id))),
        };
        send.write_all(&encode_frame(&first)).await.unwrap();

        // Read the answer with the public decoder.
        let mut decoder = FrameDecoder::new(1024);
        let answer = within("the registration answer", async {
            loop {
                if let Some(frame) = decoder.next_frame().unwrap() {
                    break JobManagerMessage::decode(frame).unwrap();
                }
                let chunk = recv.read_chunk(1024, true).await.unwrap().unwrap();
                decoder.feed(&chunk.bytes);
            }
        })
        .await;
        assert!(
            matches!(answer.kind, Some(job_manager_message::Kind::Accepted(_))),
            "{answer:?}"
        );
        cluster.expect_registered(id).await;

        send.write_all(&bad).await.unwrap();
        let reason = cluster.expect_disconnected(id).await;
        assert!(reason.contains(why), "{reason:?} should mention {why:?}");
        let (code, _) = closed_by_server(&connection).await;
        assert_eq!(code, codes::PROTOCOL);
        assert!(cluster.server.connected().is_empty());
    }
    cluster.still_serves("tm-good").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnecting_client_produces_disconnected() {
    let cluster = cluster();
    let client = cluster.still_serves("tm-1").await;
    client.close("maintenance");
    let reason = cluster.expect_disconnected("tm-1").await;
    assert!(reason.contains("maintenance"), "{reason}");
    assert!(cluster.server.connected().is_empty());

    // Dropping the client is a disconnect too.
    let client = cluster.still_serves("tm-2").await;
    drop(client);
    cluster.expect_disconnected("tm-2").await;
    assert!(matches!(
        cluster.server.send("tm-2", cancel(0)),
        Err(ControlError::UnknownTaskManager(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_registration_replaces_the_first() {
    let cluster = cluster();
    let mut first = cluster.still_serves("tm-1").await;
    let mut second = within("the second client", cluster.connect("tm-1"))
        .await
        .unwrap();
    let reason = cluster.expect_disconnected("tm-1").await;
    assert!(reason.contains("replaced"), "{reason}");
    cluster.expect_registered("tm-1").await;

    let lost = within("the replaced client", first.recv()).await;
    assert!(
        matches!(&lost, Err(ControlError::ConnectionLost(reason)) if reason.contains("replaced")),
        "{lost:?}"
    );
    cluster.server.send("tm-1", cancel(5)).unwrap();
    assert_eq!(
        within("a message", second.recv()).await.unwrap(),
        Some(cancel(5))
    );
    assert_eq!(cluster.server.connected(), vec!["tm-1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_server_is_a_recv_error_on_the_client() {
    let cluster = cluster();
    let mut client = cluster.still_serves("tm-1").await;
    cluster.server.close();
    let result = within("the client to notice", client.recv()).await;
    assert!(
        matches!(&result, Err(ControlError::ConnectionLost(reason)) if reason.contains("shutting down")),
        "{result:?}"
    );
    // And it stays an error.
    assert!(within("the client again", client.recv()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_peer_that_never_registers_is_refused_after_the_handshake_timeout() {
    let ca = ClusterCa::generate("control-test").unwrap();
    let jm = ca.issue(JOB_MANAGER).unwrap();
    let impatient = ControlConfig {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let server = ControlServer::bind("127.0.0.1:0".parse().unwrap(), &jm, impatient).unwrap();
    let addr = server.local_addr();

    // Connected, but no stream at all; and a stream with half a frame.
    let silent = raw_peer(addr, &ca.issue("tm-silent").unwrap()).await;
    let slow = raw_peer(addr, &ca.issue("tm-slow").unwrap()).await;
    let (mut send, _recv) = slow.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 9, 1]).await.unwrap();
    for connection in [&silent, &slow] {
        let (code, reason) = closed_by_server(connection).await;
        assert_eq!(code, codes::REFUSED, "{reason}");
        assert!(reason.contains("handshake timeout"), "{reason}");
    }

    let creds = ca.issue("tm-1").unwrap();
    let (_client, _) = within(
        "a good client",
        ControlClient::connect(addr, JOB_MANAGER, &creds, register("tm-1"), config()),
    )
    .await
    .unwrap();
    let event = within("an event", server.next_event()).await;
    assert!(
        matches!(&event, Some(ControlEvent::Registered { task_manager_id, .. }) if task_manager_id == "tm-1"),
        "{event:?}"
    );
}
