//! The tokio shell against a tiny in-test master (axum on 127.0.0.1, port 0): a redirecting
//! non-leader, a leader streaming RecordIO protobuf in odd chunk sizes, calls checked for the
//! stream id and credentials, acknowledgement, reconnection, and a removed framework.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::BytesMut;
use mesoflow_proto::{
    mesos::v1::scheduler::{Call, Event, call, event},
    mesos::v1::{
        AgentId, FrameworkId, FrameworkInfo, Offer, OfferId, TaskId, TaskState, TaskStatus,
    },
    recordio::encode_message,
};
use mesoflow_scheduler::mesos::{
    Credentials, DisconnectReason, FatalError, MasterEndpoint, MasterSource, SchedulerConfig,
    SchedulerEvent, spawn,
};
use prost::Message;
use tokio::sync::mpsc;

#[derive(Default)]
struct Master {
    /// SUBSCRIBE calls received, with their Mesos-Stream-Id header (must be absent).
    subscribes: Vec<(Call, Option<String>)>,
    /// Other calls, with their Mesos-Stream-Id and Authorization headers.
    calls: Vec<(Call, Option<String>, Option<String>)>,
}

type Shared = Arc<Mutex<Master>>;

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn leader(
    state: Shared,
    streams: mpsc::UnboundedSender<mpsc::UnboundedSender<Bytes>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if header_value(&headers, "content-type").as_deref() != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad content type").into_response();
    }
    if header_value(&headers, "authorization").as_deref() != Some("Basic Zmxvdzpwdw==") {
        return (StatusCode::UNAUTHORIZED, "no").into_response();
    }
    let Ok(call) = Call::decode(body) else {
        return (StatusCode::BAD_REQUEST, "Failed to parse body").into_response();
    };
    let stream_id = header_value(&headers, "mesos-stream-id");
    if call.r#type() != call::Type::Subscribe {
        let auth = header_value(&headers, "authorization");
        state
            .lock()
            .expect("lock")
            .calls
            .push((call, stream_id, auth));
        return StatusCode::ACCEPTED.into_response();
    }
    state
        .lock()
        .expect("lock")
        .subscribes
        .push((call, stream_id));
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    streams.send(tx).expect("test listens");
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header("Mesos-Stream-Id", "stream-1")
        .body(Body::from_stream(body))
        .expect("response")
}

async fn serve(router: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

/// Sends an event as RecordIO, split into 3-byte chunks (records straddle HTTP chunks).
fn send_event(stream: &mpsc::UnboundedSender<Bytes>, event: &Event) {
    let mut buf = BytesMut::new();
    encode_message(event, &mut buf);
    for chunk in buf.chunks(3) {
        stream
            .send(Bytes::copy_from_slice(chunk))
            .expect("stream open");
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<SchedulerEvent>) -> SchedulerEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("event within 10 s")
        .expect("driver alive")
}

async fn wait_for_calls(state: &Shared, n: usize) -> Vec<(Call, Option<String>, Option<String>)> {
    for _ in 0..200 {
        {
            let s = state.lock().expect("lock");
            if s.calls.len() >= n {
                return s.calls.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("master did not receive {n} calls");
}

#[tokio::test]
async fn driver_follows_redirect_streams_events_sends_calls_and_stops_when_removed() {
    let state: Shared = Arc::default();
    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    let leader_state = state.clone();
    let leader_router = Router::new().route(
        "/master/api/v1/scheduler",
        post(move |headers: HeaderMap, body: Bytes| {
            leader(leader_state.clone(), streams_tx.clone(), headers, body)
        }),
    );
    let leader_port = serve(leader_router).await;
    let redirector = Router::new().route(
        "/api/v1/scheduler",
        post(move || async move {
            Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(
                    header::LOCATION,
                    format!("//127.0.0.1:{leader_port}/master/api/v1/scheduler"),
                )
                .body(Body::empty())
                .expect("response")
        }),
    );
    let redirector_port = serve(redirector).await;

    let mut config = SchedulerConfig::new(
        FrameworkInfo {
            user: "nobody".into(),
            name: "shell-test".into(),
            principal: Some("flow".into()),
            ..Default::default()
        },
        vec![MasterEndpoint::http("127.0.0.1", redirector_port)],
    );
    config.credentials = Some(Credentials {
        principal: "flow".into(),
        secret: "pw".into(),
    });
    let (handle, mut events, task) = spawn(config, MasterSource::Static).expect("spawns");

    let stream = tokio::time::timeout(Duration::from_secs(10), streams.recv())
        .await
        .expect("subscribed within 10 s")
        .expect("stream");
    send_event(
        &stream,
        &Event {
            r#type: Some(event::Type::Subscribed as i32),
            subscribed: Some(event::Subscribed {
                framework_id: FrameworkId {
                    value: "fw-1".into(),
                },
                heartbeat_interval_seconds: Some(15.0),
                master_info: None,
            }),
            ..Default::default()
        },
    );
    send_event(
        &stream,
        &Event {
            r#type: Some(event::Type::Heartbeat as i32),
            ..Default::default()
        },
    );
    send_event(
        &stream,
        &Event {
            r#type: Some(event::Type::Offers as i32),
            offers: Some(event::Offers {
                offers: vec![Offer {
                    id: OfferId { value: "o1".into() },
                    framework_id: FrameworkId {
                        value: "fw-1".into(),
                    },
                    agent_id: AgentId { value: "a1".into() },
                    hostname: "agent1".into(),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        },
    );
    assert!(matches!(
        next_event(&mut events).await,
        SchedulerEvent::Subscribed { framework_id, .. } if framework_id.value == "fw-1"
    ));
    assert_eq!(
        next_event(&mut events).await,
        SchedulerEvent::ReconciliationComplete
    );
    assert!(matches!(
        next_event(&mut events).await,
        SchedulerEvent::Offers(offers) if offers.len() == 1 && offers[0].id.value == "o1"
    ));

    handle
        .decline(vec![OfferId { value: "o1".into() }], Some(120.0))
        .await
        .expect("decline issued");
    let calls = wait_for_calls(&state, 1).await;
    let (decline, stream_id, auth) = &calls[0];
    assert_eq!(decline.r#type(), call::Type::Decline);
    assert_eq!(stream_id.as_deref(), Some("stream-1"));
    assert_eq!(auth.as_deref(), Some("Basic Zmxvdzpwdw=="));
    assert_eq!(
        decline
            .decline
            .as_ref()
            .and_then(|d| d.filters.as_ref())
            .and_then(|f| f.refuse_seconds),
        Some(120.0)
    );

    // An update with a uuid: acknowledged once the owner says so.
    let uuid = *b"0123456789abcdef";
    send_event(
        &stream,
        &Event {
            r#type: Some(event::Type::Update as i32),
            update: Some(event::Update {
                status: TaskStatus {
                    task_id: TaskId { value: "t1".into() },
                    state: TaskState::TaskRunning as i32,
                    agent_id: Some(AgentId { value: "a1".into() }),
                    uuid: Some(Bytes::copy_from_slice(&uuid)),
                    ..Default::default()
                },
            }),
            ..Default::default()
        },
    );
    let SchedulerEvent::Update {
        ack: Some(token), ..
    } = next_event(&mut events).await
    else {
        panic!("expected an update with an ack token")
    };
    handle.acknowledge(token).await.expect("ack issued");
    let calls = wait_for_calls(&state, 2).await;
    let ack = calls[1].0.acknowledge.as_ref().expect("ack body");
    assert_eq!(&ack.uuid[..], &uuid[..]);

    // The master drops the stream: the driver resubscribes (through the redirect again) with
    // the framework id, and stops for good when told the framework was removed.
    drop(stream);
    assert!(matches!(
        next_event(&mut events).await,
        SchedulerEvent::Disconnected {
            reason: DisconnectReason::StreamEnded(_)
        }
    ));
    let stream = tokio::time::timeout(Duration::from_secs(10), streams.recv())
        .await
        .expect("resubscribed within 10 s")
        .expect("stream");
    {
        let s = state.lock().expect("lock");
        assert_eq!(s.subscribes.len(), 2);
        for (_, stream_id) in &s.subscribes {
            assert_eq!(stream_id, &None, "no Mesos-Stream-Id on SUBSCRIBE");
        }
        let resub = &s.subscribes[1].0;
        assert_eq!(
            resub.framework_id.as_ref().map(|f| f.value.as_str()),
            Some("fw-1")
        );
        assert_eq!(
            resub
                .subscribe
                .as_ref()
                .and_then(|b| b.framework_info.id.as_ref())
                .map(|f| f.value.as_str()),
            Some("fw-1")
        );
    }
    send_event(
        &stream,
        &Event {
            r#type: Some(event::Type::Error as i32),
            error: Some(event::Error {
                message: "Framework has been removed".into(),
            }),
            ..Default::default()
        },
    );
    assert!(matches!(
        next_event(&mut events).await,
        SchedulerEvent::Fatal(FatalError::FrameworkRemoved { .. })
    ));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("driver task ends")
        .expect("no panic");
    assert!(handle.revive(vec![]).await.is_err(), "driver stopped");
}

#[tokio::test]
async fn garbage_oversized_truncated_and_malformed_streams_reconnect_cleanly() {
    let state: Shared = Arc::default();
    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    let router = Router::new().route(
        "/api/v1/scheduler",
        post(move |headers: HeaderMap, body: Bytes| {
            leader(state.clone(), streams_tx.clone(), headers, body)
        }),
    );
    let port = serve(router).await;
    let mut config = SchedulerConfig::new(
        FrameworkInfo {
            user: "nobody".into(),
            name: "garbage".into(),
            ..Default::default()
        },
        vec![MasterEndpoint::http("127.0.0.1", port)],
    );
    config.credentials = Some(Credentials {
        principal: "flow".into(),
        secret: "pw".into(),
    });
    config.max_event_size = 1024;
    let (_handle, mut events, _task) = spawn(config, MasterSource::Static).expect("spawns");
    // Each bad stream must end the subscription with a clear reason, then the driver
    // subscribes again: (bytes sent, close the stream afterwards, expected reason text).
    let cases: [(&[u8], bool, &str); 4] = [
        (
            b"12x\n{garbage}",
            false,
            "RecordIO length header contains byte 0x78",
        ),
        (
            b"2000\n",
            false,
            "record of 2000 bytes exceeds the maximum record size of 1024 bytes",
        ),
        (b"10\nabc", true, "ended inside a record: 3 of 10 bytes"),
        (b"3\n\x12\xff\x01", false, "undecodable Event"),
    ];
    for (bytes, close, expected) in cases {
        let stream = tokio::time::timeout(Duration::from_secs(10), streams.recv())
            .await
            .expect("subscribed within 10 s")
            .expect("stream");
        send_event(
            &stream,
            &Event {
                r#type: Some(event::Type::Subscribed as i32),
                subscribed: Some(event::Subscribed {
                    framework_id: FrameworkId { value: "fw".into() },
                    heartbeat_interval_seconds: Some(15.0),
                    master_info: None,
                }),
                ..Default::default()
            },
        );
        assert!(matches!(
            next_event(&mut events).await,
            SchedulerEvent::Subscribed { .. }
        ));
        assert_eq!(
            next_event(&mut events).await,
            SchedulerEvent::ReconciliationComplete
        );
        stream.send(Bytes::copy_from_slice(bytes)).expect("open");
        if close {
            drop(stream);
        }
        match next_event(&mut events).await {
            SchedulerEvent::Disconnected {
                reason: DisconnectReason::StreamEnded(text) | DisconnectReason::MalformedEvent(text),
            } => assert!(text.contains(expected), "{text:?} lacks {expected:?}"),
            other => panic!("expected a disconnect, got {other:?}"),
        }
    }
    // And it subscribes again after the last one.
    tokio::time::timeout(Duration::from_secs(10), streams.recv())
        .await
        .expect("resubscribed")
        .expect("stream");
}

#[tokio::test]
async fn wrong_credentials_stop_the_driver_with_an_authentication_error() {
    let state: Shared = Arc::default();
    let (streams_tx, _streams) = mpsc::unbounded_channel();
    let router = Router::new().route(
        "/api/v1/scheduler",
        post(move |headers: HeaderMap, body: Bytes| {
            leader(state.clone(), streams_tx.clone(), headers, body)
        }),
    );
    let port = serve(router).await;
    let mut config = SchedulerConfig::new(
        FrameworkInfo {
            user: "nobody".into(),
            name: "bad-auth".into(),
            ..Default::default()
        },
        vec![MasterEndpoint::http("127.0.0.1", port)],
    );
    config.credentials = Some(Credentials {
        principal: "flow".into(),
        secret: "wrong".into(),
    });
    let (_handle, mut events, task) = spawn(config, MasterSource::Static).expect("spawns");
    let SchedulerEvent::Fatal(error) = next_event(&mut events).await else {
        panic!("expected a fatal error")
    };
    assert!(
        matches!(error, FatalError::Unauthorized { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("check the principal and secret"),
        "{error}"
    );
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("driver ends")
        .expect("no panic");
}

#[tokio::test]
async fn calls_reach_the_master_in_the_order_they_were_issued() {
    let state: Shared = Arc::default();
    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    let master_state = state.clone();
    let router = Router::new().route(
        "/api/v1/scheduler",
        post(move |headers: HeaderMap, body: Bytes| {
            leader(master_state.clone(), streams_tx.clone(), headers, body)
        }),
    );
    let port = serve(router).await;
    let mut config = SchedulerConfig::new(
        FrameworkInfo {
            user: "nobody".into(),
            name: "ordering".into(),
            ..Default::default()
        },
        vec![MasterEndpoint::http("127.0.0.1", port)],
    );
    config.credentials = Some(Credentials {
        principal: "flow".into(),
        secret: "pw".into(),
    });
    let (handle, mut events, _task) = spawn(config, MasterSource::Static).expect("spawns");
    let stream = streams.recv().await.expect("stream");
    send_event(
        &stream,
        &Event {
            r#type: Some(event::Type::Subscribed as i32),
            subscribed: Some(event::Subscribed {
                framework_id: FrameworkId { value: "fw".into() },
                heartbeat_interval_seconds: Some(15.0),
                master_info: None,
            }),
            ..Default::default()
        },
    );
    assert!(matches!(
        next_event(&mut events).await,
        SchedulerEvent::Subscribed { .. }
    ));
    // Alternate SUPPRESS and REVIVE for numbered roles: any reordering shows.
    let mut expected = Vec::new();
    for i in 0..40 {
        let role = format!("r{i}");
        if i % 2 == 0 {
            handle.suppress(vec![role.clone()]).await.expect("issued");
            expected.push(("SUPPRESS", role));
        } else {
            handle.revive(vec![role.clone()]).await.expect("issued");
            expected.push(("REVIVE", role));
        }
    }
    let calls = wait_for_calls(&state, 40).await;
    let seen: Vec<(&str, String)> = calls
        .iter()
        .map(|(c, _, _)| {
            let role = c
                .suppress
                .as_ref()
                .map(|s| s.roles.clone())
                .or_else(|| c.revive.as_ref().map(|r| r.roles.clone()))
                .unwrap_or_default()
                .concat();
            (c.r#type().as_str_name(), role)
        })
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn https_masters_are_refused_with_a_clear_error() {
    let config = SchedulerConfig::new(
        FrameworkInfo::default(),
        vec![MasterEndpoint {
            scheme: "https".into(),
            host: "m1".into(),
            port: 5050,
        }],
    );
    let err = spawn(config, MasterSource::Static).expect_err("no TLS in this build");
    assert!(err.to_string().contains("https://m1:5050"), "{err}");
}
