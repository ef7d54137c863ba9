//! Property test of the sans-IO scheduler client: arbitrary histories of responses, event
//! records (valid and garbage), stream ends, call results, timer firings and owner commands
//! never panic and never break the protocol's invariants.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mesoflow_proto::mesos::v1::{
    AgentId, FrameworkId, FrameworkInfo, Offer, OfferId, TaskId, TaskState, TaskStatus,
    scheduler::{Call, Event, call, event},
};
use mesoflow_scheduler::mesos::{
    Action, MasterEndpoint, SchedulerClient, SchedulerConfig, SchedulerEvent, SubscribeResponse,
};
use proptest::prelude::*;
use prost::Message;

#[derive(Debug, Clone)]
enum Input {
    Response {
        status: u16,
        stream_id: bool,
        location: bool,
    },
    SubscribeFailed,
    Subscribed,
    Heartbeat,
    Offers(u8),
    Update {
        task: u8,
        state: i32,
        uuid: bool,
    },
    Error(bool),
    Garbage(Vec<u8>),
    StreamEnded,
    CallResult {
        status: u16,
    },
    Advance(u32),
    Decline(u8),
    Acknowledge,
    Revive,
    Teardown,
    SetMasters(u8),
    /// 200 with a stream id, then SUBSCRIBED: the common path, weighted up.
    SubscribeFully,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => (
            prop::sample::select(vec![200u16, 200, 307, 401, 400, 500, 503]),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(status, stream_id, location)| Input::Response {
                status,
                stream_id,
                location
            }),
        6 => Just(Input::SubscribeFully),
        1 => Just(Input::SubscribeFailed),
        1 => Just(Input::Subscribed),
        3 => Just(Input::Heartbeat),
        4 => (0u8..4).prop_map(Input::Offers),
        4 => (0u8..4, 0i32..14, any::<bool>()).prop_map(|(task, state, uuid)| Input::Update {
            task,
            state,
            uuid
        }),
        1 => any::<bool>().prop_map(Input::Error),
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Input::Garbage),
        1 => Just(Input::StreamEnded),
        4 => prop::sample::select(vec![202u16, 202, 200, 307, 400, 403, 503])
            .prop_map(|status| Input::CallResult { status }),
        4 => prop_oneof![9 => 0u32..3_000, 1 => 0u32..200_000].prop_map(Input::Advance),
        4 => (0u8..4).prop_map(Input::Decline),
        3 => Just(Input::Acknowledge),
        2 => Just(Input::Revive),
        1 => Just(Input::Teardown),
        1 => (0u8..3).prop_map(Input::SetMasters),
    ]
}

fn event_bytes(event: Event) -> Vec<u8> {
    event.encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_histories_keep_the_protocol_invariants(
        inputs in prop::collection::vec(input(), 1..120),
    ) {
        let mut config = SchedulerConfig::new(
            FrameworkInfo { user: "u".into(), name: "n".into(), ..Default::default() },
            vec![MasterEndpoint::http("m1", 5050), MasterEndpoint::http("m2", 5050)],
        );
        config.seed = 9;
        let mut client = SchedulerClient::new(config);
        let mut now = Instant::now();
        client.start(now);

        let mut open: Option<u64> = None; // the connection the shell would hold open
        let mut pending_calls: Vec<u64> = Vec::new();
        let mut tokens = Vec::new();
        let mut stopped = false;
        let mut current_stream: Option<String> = None;
        let mut stream_counter = 0u32;
        let mut issued_acks: HashSet<Vec<u8>> = HashSet::new();
        let mut offered: HashSet<String> = HashSet::new();
        // Whether the open connection already got its response head.
        let mut responded = false;

        for input in inputs {
            match input {
                Input::Response { status, stream_id, location } => {
                    if let Some(conn) = open.filter(|_| !responded) {
                        responded = true;
                        stream_counter += 1;
                        let id = format!("stream-{stream_counter}");
                        if status == 200 && stream_id {
                            current_stream = Some(id.clone());
                        }
                        client.handle_subscribe_response(now, conn, SubscribeResponse {
                            status,
                            stream_id: stream_id.then_some(id),
                            content_type: Some("application/x-protobuf".into()),
                            location: location.then(|| "//m3:5050/master/api/v1/scheduler".into()),
                            www_authenticate: None,
                            body: "text".into(),
                        });
                    }
                }
                Input::SubscribeFully => {
                    if let Some(conn) = open.filter(|_| !responded) {
                        responded = true;
                        stream_counter += 1;
                        let id = format!("stream-{stream_counter}");
                        current_stream = Some(id.clone());
                        client.handle_subscribe_response(now, conn, SubscribeResponse {
                            status: 200,
                            stream_id: Some(id),
                            content_type: Some("application/x-protobuf".into()),
                            ..Default::default()
                        });
                        let subscribed = event_bytes(Event {
                            r#type: Some(event::Type::Subscribed as i32),
                            subscribed: Some(event::Subscribed {
                                framework_id: FrameworkId { value: "fw".into() },
                                heartbeat_interval_seconds: Some(15.0),
                                master_info: None,
                            }),
                            ..Default::default()
                        });
                        client.handle_event_record(now, conn, &subscribed);
                    } else {
                        now += Duration::from_secs(16);
                        client.handle_timeout(now);
                    }
                }
                Input::SubscribeFailed => {
                    if let Some(conn) = open {
                        client.handle_subscribe_failed(now, conn, "refused".into());
                    }
                }
                Input::Subscribed | Input::Heartbeat | Input::Offers(_) | Input::Update { .. }
                | Input::Error(_) | Input::Garbage(_) => {
                    let Some(conn) = open else { continue };
                    let bytes = match input {
                        Input::Subscribed => event_bytes(Event {
                            r#type: Some(event::Type::Subscribed as i32),
                            subscribed: Some(event::Subscribed {
                                framework_id: FrameworkId { value: "fw".into() },
                                heartbeat_interval_seconds: Some(15.0),
                                master_info: None,
                            }),
                            ..Default::default()
                        }),
                        Input::Heartbeat => event_bytes(Event {
                            r#type: Some(event::Type::Heartbeat as i32),
                            ..Default::default()
                        }),
                        Input::Offers(n) => {
                            let offers: Vec<Offer> = (0..n).map(|i| {
                                let id = format!("o{stream_counter}-{i}");
                                offered.insert(id.clone());
                                Offer {
                                    id: OfferId { value: id },
                                    framework_id: FrameworkId { value: "fw".into() },
                                    agent_id: AgentId { value: "a".into() },
                                    hostname: "h".into(),
                                    ..Default::default()
                                }
                            }).collect();
                            event_bytes(Event {
                                r#type: Some(event::Type::Offers as i32),
                                offers: Some(event::Offers { offers }),
                                ..Default::default()
                            })
                        }
                        Input::Update { task, state, uuid } => event_bytes(Event {
                            r#type: Some(event::Type::Update as i32),
                            update: Some(event::Update {
                                status: TaskStatus {
                                    task_id: TaskId { value: format!("t{task}") },
                                    state,
                                    agent_id: Some(AgentId { value: "a".into() }),
                                    uuid: uuid.then(|| Bytes::from(vec![task; 16])),
                                    ..Default::default()
                                },
                            }),
                            ..Default::default()
                        }),
                        Input::Error(removed) => event_bytes(Event {
                            r#type: Some(event::Type::Error as i32),
                            error: Some(event::Error {
                                message: if removed {
                                    "Framework has been removed".into()
                                } else {
                                    "Framework failed over".into()
                                },
                            }),
                            ..Default::default()
                        }),
                        Input::Garbage(bytes) => bytes,
                        _ => unreachable!(),
                    };
                    client.handle_event_record(now, conn, &bytes);
                }
                Input::StreamEnded => {
                    if let Some(conn) = open {
                        client.handle_stream_ended(now, conn, None);
                    }
                }
                Input::CallResult { status } => {
                    if let Some(id) = pending_calls.pop() {
                        client.handle_call_response(now, id, status, None, String::new());
                    }
                }
                Input::Advance(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    client.handle_timeout(now);
                }
                Input::Decline(i) => {
                    let id = format!("o{stream_counter}-{i}");
                    let _ = client.decline(vec![OfferId { value: id }], None);
                }
                Input::Acknowledge => {
                    if let Some(token) = tokens.pop() {
                        let _ = client.acknowledge(token);
                    }
                }
                Input::Revive => {
                    let _ = client.revive(vec![]);
                }
                Input::Teardown => {
                    let _ = client.teardown();
                }
                Input::SetMasters(n) => {
                    let masters = (0..n).map(|i| MasterEndpoint::http(format!("z{i}"), 5050)).collect();
                    client.set_masters(now, masters);
                }
            }

            while let Some(action) = client.poll_action() {
                match action {
                    Action::Subscribe { conn, request } => {
                        prop_assert!(!stopped, "SUBSCRIBE after a fatal error");
                        prop_assert!(open.is_none(), "a second stream while one is open");
                        prop_assert_eq!(request.header("Mesos-Stream-Id"), None);
                        let call = Call::decode(request.body.clone()).expect("valid call");
                        prop_assert_eq!(call.r#type(), call::Type::Subscribe);
                        let info_id = call.subscribe.as_ref().and_then(|s| s.framework_info.id.clone());
                        prop_assert_eq!(call.framework_id.clone(), info_id, "framework id in both places");
                        open = Some(conn);
                        responded = false;
                        current_stream = None;
                    }
                    Action::CloseSubscription { conn } => {
                        if open == Some(conn) {
                            open = None;
                        }
                    }
                    Action::Call { call_id, request } => {
                        let stream = request.header("Mesos-Stream-Id").map(str::to_owned);
                        prop_assert!(stream.is_some(), "call without Mesos-Stream-Id");
                        prop_assert_eq!(&stream, &current_stream);
                        let call = Call::decode(request.body.clone()).expect("valid call");
                        prop_assert_eq!(call.framework_id.as_ref().map(|f| f.value.as_str()), Some("fw"));
                        if let Some(ack) = &call.acknowledge {
                            prop_assert!(issued_acks.contains(&ack.uuid.to_vec()), "ack without token");
                        }
                        if let Some(decline) = &call.decline {
                            for id in &decline.offer_ids {
                                prop_assert!(offered.remove(&id.value), "declined an offer twice or never offered");
                            }
                        }
                        pending_calls.push(call_id);
                    }
                }
            }
            while let Some(event) = client.poll_event() {
                match event {
                    SchedulerEvent::Update { ack: Some(token), status } => {
                        prop_assert!(status.uuid.is_some());
                        prop_assert!(TaskState::try_from(status.state).is_ok() || status.state >= 0);
                        issued_acks.insert(token.uuid.to_vec());
                        tokens.push(token);
                    }
                    SchedulerEvent::Update { ack: None, status } => {
                        prop_assert!(status.uuid.is_none());
                    }
                    SchedulerEvent::Subscribed { .. } | SchedulerEvent::Disconnected { .. } => {
                        // Offers of earlier subscriptions are void.
                        offered.clear();
                    }
                    SchedulerEvent::Fatal(_) => {
                        prop_assert!(!stopped, "two fatal errors");
                        stopped = true;
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(client.is_stopped(), stopped);
            if !stopped && open.is_some() {
                prop_assert!(client.poll_timeout().is_some(), "no timer while connecting or subscribed");
            }
        }
    }
}
