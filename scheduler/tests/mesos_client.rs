//! The sans-IO scheduler client, driven without sockets or sleeps: each test feeds responses,
//! event records and a fake clock, and checks the exact requests, timers and owner events.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_proto::mesos::v1::{
    self, AgentId, ExecutorId, FrameworkId, FrameworkInfo, Offer, OfferId, TaskId, TaskInfo,
    TaskState, TaskStatus,
    scheduler::{Call, Event, call, event},
};
use mesoflow_scheduler::mesos::{
    AckToken, Action, CommandError, Credentials, DisconnectReason, ExitStatus, FatalError,
    HttpRequest, MasterEndpoint, SchedulerClient, SchedulerConfig, SchedulerEvent,
    SubscribeResponse,
};
use prost::Message;

const HB: Duration = Duration::from_secs(75); // 5 x 15 s

fn framework_info() -> FrameworkInfo {
    FrameworkInfo {
        user: "mesoflow".into(),
        name: "mesoflow-test".into(),
        principal: Some("flow".into()),
        failover_timeout: Some(604_800.0),
        checkpoint: Some(true),
        ..Default::default()
    }
}

fn config(masters: &[(&str, u16)]) -> SchedulerConfig {
    let mut c = SchedulerConfig::new(
        framework_info(),
        masters
            .iter()
            .map(|(h, p)| MasterEndpoint::http(*h, *p))
            .collect(),
    );
    c.credentials = Some(Credentials {
        principal: "flow".into(),
        secret: "s3cret".into(),
    });
    c.seed = 42;
    c
}

struct Harness {
    client: SchedulerClient,
    now: Instant,
}

impl Harness {
    fn new(config: SchedulerConfig) -> Self {
        Self {
            client: SchedulerClient::new(config),
            now: Instant::now(),
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.client.poll_action()).collect()
    }

    fn events(&mut self) -> Vec<SchedulerEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
    }

    /// Advances exactly to the client's next deadline and fires it.
    fn fire_timer(&mut self) -> Duration {
        let at = self.client.poll_timeout().expect("a timer is armed");
        let waited = at.saturating_duration_since(self.now);
        self.now = self.now.max(at);
        self.client.handle_timeout(self.now);
        waited
    }

    /// Expects exactly one SUBSCRIBE among the actions (after optional closes); returns it.
    fn expect_subscribe(&mut self) -> (u64, HttpRequest) {
        let mut subscribe = None;
        for a in self.actions() {
            match a {
                Action::Subscribe { conn, request } => {
                    assert!(subscribe.is_none(), "two SUBSCRIBEs at once");
                    subscribe = Some((conn, request));
                }
                Action::CloseSubscription { .. } => {}
                other => panic!("unexpected action {other:?}"),
            }
        }
        subscribe.expect("a SUBSCRIBE request")
    }

    fn respond_ok(&mut self, conn: u64, stream_id: &str) {
        self.client.handle_subscribe_response(
            self.now,
            conn,
            SubscribeResponse {
                status: 200,
                stream_id: Some(stream_id.into()),
                content_type: Some("application/x-protobuf".into()),
                ..Default::default()
            },
        );
    }

    fn event(&mut self, conn: u64, event: Event) {
        self.client
            .handle_event_record(self.now, conn, &event.encode_to_vec());
    }

    /// start/reconnect -> 200 -> SUBSCRIBED; returns the connection id.
    fn subscribe(&mut self, framework: &str, stream_id: &str) -> u64 {
        let (conn, _) = self.expect_subscribe();
        self.respond_ok(conn, stream_id);
        self.event(conn, subscribed(framework));
        conn
    }

    fn calls(&mut self) -> Vec<(u64, HttpRequest, Call)> {
        self.actions()
            .into_iter()
            .map(|a| match a {
                Action::Call { call_id, request } => {
                    let call = Call::decode(request.body.clone()).expect("call decodes");
                    (call_id, request, call)
                }
                other => panic!("expected only calls, got {other:?}"),
            })
            .collect()
    }
}

fn subscribed(framework: &str) -> Event {
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            framework_id: FrameworkId {
                value: framework.into(),
            },
            heartbeat_interval_seconds: Some(15.0),
            master_info: None,
        }),
        ..Default::default()
    }
}

fn heartbeat() -> Event {
    Event {
        r#type: Some(event::Type::Heartbeat as i32),
        ..Default::default()
    }
}

fn error_event(message: &str) -> Event {
    Event {
        r#type: Some(event::Type::Error as i32),
        error: Some(event::Error {
            message: message.into(),
        }),
        ..Default::default()
    }
}

fn offer(id: &str, agent: &str) -> Offer {
    Offer {
        id: OfferId { value: id.into() },
        framework_id: FrameworkId { value: "fw".into() },
        agent_id: AgentId {
            value: agent.into(),
        },
        hostname: "agent1".into(),
        ..Default::default()
    }
}

fn offers_event(offers: Vec<Offer>) -> Event {
    Event {
        r#type: Some(event::Type::Offers as i32),
        offers: Some(event::Offers { offers }),
        ..Default::default()
    }
}

fn update_event(task: &str, agent: &str, state: TaskState, uuid: Option<&[u8]>) -> Event {
    Event {
        r#type: Some(event::Type::Update as i32),
        update: Some(event::Update {
            status: TaskStatus {
                task_id: TaskId { value: task.into() },
                state: state as i32,
                agent_id: Some(AgentId {
                    value: agent.into(),
                }),
                uuid: uuid.map(Bytes::copy_from_slice),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

fn oid(s: &str) -> OfferId {
    OfferId { value: s.into() }
}

#[test]
fn first_subscribe_is_protobuf_with_basic_auth_and_no_ids() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (_, req) = h.expect_subscribe();
    assert_eq!(req.url, "http://m1:5050/api/v1/scheduler");
    assert_eq!(req.header("Content-Type"), Some("application/x-protobuf"));
    assert_eq!(req.header("Accept"), Some("application/x-protobuf"));
    // base64("flow:s3cret")
    assert_eq!(req.header("Authorization"), Some("Basic ZmxvdzpzM2NyZXQ="));
    assert_eq!(req.header("Mesos-Stream-Id"), None);
    let call = Call::decode(req.body).expect("decodes");
    assert_eq!(call.r#type(), call::Type::Subscribe);
    assert_eq!(call.framework_id, None);
    let sub = call.subscribe.expect("subscribe body");
    assert_eq!(sub.framework_info.id, None);
    assert_eq!(sub.framework_info.name, "mesoflow-test");
    assert_eq!(sub.framework_info.failover_timeout, Some(604_800.0));
}

#[test]
fn subscribed_then_calls_carry_stream_id_and_framework_id() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw-1", "stream-A");
    assert_eq!(
        h.events(),
        vec![
            SchedulerEvent::Subscribed {
                framework_id: FrameworkId {
                    value: "fw-1".into()
                },
                master_info: None,
                heartbeat_interval_secs: 15.0,
            },
            SchedulerEvent::ReconciliationComplete,
        ]
    );
    assert!(h.client.is_subscribed());
    h.event(
        conn,
        offers_event(vec![offer("o1", "a1"), offer("o2", "a1")]),
    );
    assert!(matches!(&h.events()[..], [SchedulerEvent::Offers(o)] if o.len() == 2));
    let id = h
        .client
        .decline(vec![oid("o1")], Some(3600.0))
        .expect("declines");
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    let (call_id, req, call) = &calls[0];
    assert_eq!(*call_id, id);
    assert_eq!(req.header("Mesos-Stream-Id"), Some("stream-A"));
    assert_eq!(req.header("Authorization"), Some("Basic ZmxvdzpzM2NyZXQ="));
    assert_eq!(
        call.framework_id.as_ref().map(|f| f.value.as_str()),
        Some("fw-1")
    );
    assert_eq!(call.r#type(), call::Type::Decline);
    let decline = call.decline.as_ref().expect("body");
    assert_eq!(decline.offer_ids, vec![oid("o1")]);
    assert_eq!(
        decline.filters.as_ref().and_then(|f| f.refuse_seconds),
        Some(3600.0)
    );
    // o1 is used now; o2 is still outstanding.
    assert_eq!(
        h.client.decline(vec![oid("o1")], None),
        Err(CommandError::UnknownOffer("o1".into()))
    );
    assert_eq!(h.client.outstanding_offers(), 1);
}

#[test]
fn heartbeat_watchdog_reconnects_with_backoff_to_the_next_master() {
    let mut h = Harness::new(config(&[("m1", 5050), ("m2", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw-1", "s1");
    h.events();
    assert_eq!(h.client.poll_timeout(), Some(h.now + HB));
    // A heartbeat at 74 s pushes the deadline out.
    h.advance(Duration::from_secs(74));
    assert!(h.client.is_subscribed());
    h.event(conn, heartbeat());
    assert_eq!(h.client.poll_timeout(), Some(h.now + HB));
    h.advance(HB - Duration::from_millis(1));
    assert!(h.client.is_subscribed(), "not yet dead");
    h.advance(Duration::from_millis(1));
    assert!(!h.client.is_subscribed());
    assert_eq!(
        h.events(),
        vec![SchedulerEvent::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }]
    );
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
    // Backoff: first delay in [250, 500) ms, then a SUBSCRIBE to the next master.
    let waited = h.fire_timer();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(500),
        "{waited:?}"
    );
    let (_, req) = h.expect_subscribe();
    assert_eq!(req.url, "http://m2:5050/api/v1/scheduler");
    // Re-subscription: framework id in both places, still no stream id.
    assert_eq!(req.header("Mesos-Stream-Id"), None);
    let call = Call::decode(req.body).expect("decodes");
    assert_eq!(
        call.framework_id.as_ref().map(|f| f.value.as_str()),
        Some("fw-1")
    );
    let info = call.subscribe.expect("body").framework_info;
    assert_eq!(info.id.as_ref().map(|f| f.value.as_str()), Some("fw-1"));
}

#[test]
fn failed_attempts_back_off_exponentially_up_to_15s_and_reset_on_success() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let mut bases = Vec::new();
    for _ in 0..8 {
        let (conn, _) = h.expect_subscribe();
        h.client
            .handle_subscribe_failed(h.now, conn, "connection refused".into());
        let waited = h.fire_timer();
        bases.push(waited);
    }
    let caps = [500u64, 1000, 2000, 4000, 8000, 15000, 15000, 15000];
    for (w, cap) in bases.iter().zip(caps) {
        let cap = Duration::from_millis(cap);
        assert!(
            *w >= cap / 2 && *w < cap,
            "{w:?} not in [{:?}, {cap:?})",
            cap / 2
        );
    }
    assert!(
        h.events().is_empty(),
        "failed attempts are not disconnections"
    );
    let (conn, _) = h.expect_subscribe();
    h.respond_ok(conn, "s");
    h.event(conn, subscribed("fw"));
    h.client
        .handle_stream_ended(h.now, conn, Some("connection reset".into()));
    let waited = h.fire_timer();
    assert!(
        waited < Duration::from_millis(500),
        "backoff reset after success: {waited:?}"
    );
}

#[test]
fn redirect_with_protocol_relative_location_retargets_immediately() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (conn, _) = h.expect_subscribe();
    h.client.handle_subscribe_response(
        h.now,
        conn,
        SubscribeResponse {
            status: 307,
            location: Some("//m2.example.com:5050/master/api/v1/scheduler".into()),
            ..Default::default()
        },
    );
    let actions = h.actions();
    assert_eq!(actions, vec![Action::CloseSubscription { conn }]);
    h.client.handle_timeout(h.now); // due immediately
    let (conn2, req) = h.expect_subscribe();
    assert_ne!(conn2, conn);
    assert_eq!(
        req.url,
        "http://m2.example.com:5050/master/api/v1/scheduler"
    );
    // The new leader's stream works; stale input from the old connection is ignored.
    h.respond_ok(conn2, "s2");
    h.event(conn, error_event("Framework has been removed"));
    h.client.handle_stream_ended(h.now, conn, None);
    h.event(conn2, subscribed("fw"));
    assert!(h.client.is_subscribed());
}

#[test]
fn redirect_loops_fall_back_to_backoff() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let mut immediate = 0;
    for _ in 0..5 {
        let (conn, _) = h.expect_subscribe();
        h.client.handle_subscribe_response(
            h.now,
            conn,
            SubscribeResponse {
                status: 307,
                location: Some("//m1:5050/master/api/v1/scheduler".into()),
                ..Default::default()
            },
        );
        if h.fire_timer() == Duration::ZERO {
            immediate += 1;
        }
    }
    assert_eq!(
        immediate, 3,
        "three redirects followed at once, then backoff"
    );
}

#[test]
fn service_unavailable_retries_with_backoff() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (conn, _) = h.expect_subscribe();
    h.client.handle_subscribe_response(
        h.now,
        conn,
        SubscribeResponse {
            status: 503,
            body: "No leader elected".into(),
            ..Default::default()
        },
    );
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
    assert!(!h.client.is_stopped());
    let waited = h.fire_timer();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    let (_, req) = h.expect_subscribe();
    assert_eq!(req.url, "http://m1:5050/api/v1/scheduler");
}

#[test]
fn unauthorized_is_fatal_and_never_retried() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (conn, _) = h.expect_subscribe();
    h.client.handle_subscribe_response(
        h.now,
        conn,
        SubscribeResponse {
            status: 401,
            www_authenticate: Some("Basic realm=\"mesos-master-scheduler\"".into()),
            ..Default::default()
        },
    );
    let events = h.events();
    assert_eq!(
        events,
        vec![SchedulerEvent::Fatal(FatalError::Unauthorized {
            challenge: Some("Basic realm=\"mesos-master-scheduler\"".into())
        })]
    );
    assert!(events[0].clone() != SchedulerEvent::ReconciliationComplete);
    assert!(h.client.is_stopped());
    assert_eq!(h.client.poll_timeout(), None);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
}

#[test]
fn framework_removed_is_its_own_fatal_error() {
    let mut config = config(&[("m1", 5050)]);
    config.framework_id = Some(FrameworkId {
        value: "old-fw".into(),
    });
    let mut h = Harness::new(config);
    h.client.start(h.now);
    let (conn, req) = h.expect_subscribe();
    let call = Call::decode(req.body).expect("decodes");
    assert_eq!(
        call.framework_id.as_ref().map(|f| f.value.as_str()),
        Some("old-fw")
    );
    h.respond_ok(conn, "s");
    h.event(conn, error_event("Framework has been removed"));
    assert_eq!(
        h.events(),
        vec![SchedulerEvent::Fatal(FatalError::FrameworkRemoved {
            message: "Framework has been removed".into()
        })]
    );
    assert!(h.client.is_stopped());
    h.advance(Duration::from_secs(600));
    assert_eq!(
        h.actions(),
        vec![Action::CloseSubscription { conn }],
        "no resubscribe"
    );
}

#[test]
fn failed_over_on_the_live_stream_stops_this_instance() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw", "s");
    h.events();
    h.event(conn, error_event("Framework failed over"));
    assert_eq!(
        h.events(),
        vec![SchedulerEvent::Fatal(FatalError::FailedOver {
            message: "Framework failed over".into()
        })]
    );
    assert_eq!(
        h.client.decline(vec![oid("x")], None),
        Err(CommandError::NotSubscribed)
    );
}

#[test]
fn updates_are_acknowledged_only_with_uuid_and_only_after_persisting() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw", "s");
    h.events();
    h.calls();
    // Master-generated update (no uuid): no token, nothing sent.
    h.event(conn, update_event("t1", "a1", TaskState::TaskLost, None));
    let events = h.events();
    assert!(
        matches!(&events[..], [SchedulerEvent::Update { ack: None, .. }]),
        "{events:?}"
    );
    assert!(h.actions().is_empty());
    // Agent update with uuid: a token, but no ACKNOWLEDGE until the owner hands it back.
    let uuid = [
        0x4a, 0x3b, 0x11, 0x5e, 0x9c, 0x01, 0x4f, 0x22, 0x8d, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
        0x07,
    ];
    h.event(
        conn,
        update_event("t2", "a1", TaskState::TaskRunning, Some(&uuid)),
    );
    let token = match h.events().as_slice() {
        [
            SchedulerEvent::Update {
                status,
                ack: Some(token),
            },
        ] => {
            assert_eq!(status.task_id.value, "t2");
            token.clone()
        }
        other => panic!("expected one update with a token, got {other:?}"),
    };
    assert_eq!(
        token,
        AckToken {
            agent_id: AgentId { value: "a1".into() },
            task_id: TaskId { value: "t2".into() },
            uuid: Bytes::copy_from_slice(&uuid),
        }
    );
    assert!(
        h.actions().is_empty(),
        "no ack before the state is persisted"
    );
    h.client.acknowledge(token).expect("subscribed");
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    let ack = calls[0].2.acknowledge.as_ref().expect("ack body");
    assert_eq!(calls[0].2.r#type(), call::Type::Acknowledge);
    assert_eq!(ack.agent_id.value, "a1");
    assert_eq!(ack.task_id.value, "t2");
    assert_eq!(&ack.uuid[..], &uuid[..]);
}

#[test]
fn reconciliation_loop_runs_until_every_task_answered_then_implicit_periodically() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.track_tasks([
        (
            TaskId { value: "t1".into() },
            Some(AgentId { value: "a1".into() }),
        ),
        (TaskId { value: "t2".into() }, None),
    ]);
    h.client.start(h.now);
    let start = h.now;
    let conn = h.subscribe("fw", "s");
    assert!(!h.events().contains(&SchedulerEvent::ReconciliationComplete));
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    let tasks = &calls[0].2.reconcile.as_ref().expect("reconcile").tasks;
    let listed: Vec<(&str, Option<&str>)> = tasks
        .iter()
        .map(|t| {
            (
                t.task_id.value.as_str(),
                t.agent_id.as_ref().map(|a| a.value.as_str()),
            )
        })
        .collect();
    assert_eq!(listed, vec![("t1", Some("a1")), ("t2", None)]);
    // The master answers t1 only (t2's agent is still re-registering).
    h.event(conn, update_event("t1", "a1", TaskState::TaskRunning, None));
    h.events();
    let first_wait = h.fire_timer();
    assert!(first_wait >= Duration::from_secs(1) && first_wait < Duration::from_secs(2));
    let calls = h.calls();
    let tasks = &calls[0].2.reconcile.as_ref().expect("reconcile").tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task_id.value, "t2");
    // No answer again: the retry waits longer.
    let second_wait = h.fire_timer();
    assert!(second_wait >= Duration::from_secs(2), "{second_wait:?}");
    assert_eq!(h.calls().len(), 1);
    h.event(conn, heartbeat());
    h.event(conn, update_event("t2", "a2", TaskState::TaskGone, None));
    let events = h.events();
    assert_eq!(events.last(), Some(&SchedulerEvent::ReconciliationComplete));
    assert_eq!(h.client.tracked_tasks(), 1, "t2 is terminal");
    // Then implicit reconciliation 15 minutes after SUBSCRIBED.
    let implicit_at = start + Duration::from_secs(900);
    while h.now + Duration::from_secs(60) < implicit_at {
        h.event(conn, heartbeat());
        h.advance(Duration::from_secs(60));
        assert!(
            h.calls().is_empty(),
            "nothing to send before the implicit round"
        );
    }
    h.event(conn, heartbeat());
    h.now = implicit_at;
    h.client.handle_timeout(h.now);
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]
            .2
            .reconcile
            .as_ref()
            .expect("reconcile")
            .tasks
            .is_empty()
    );
}

#[test]
fn offers_are_forgotten_on_resubscribe_and_launched_tasks_are_reconciled() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw", "s");
    h.event(
        conn,
        offers_event(vec![offer("o1", "a1"), offer("o2", "a1")]),
    );
    h.events();
    let task = TaskInfo {
        name: "tm-1".into(),
        task_id: TaskId {
            value: "tm-1".into(),
        },
        agent_id: AgentId { value: "a1".into() },
        ..Default::default()
    };
    h.client
        .launch(vec![oid("o1")], vec![task], None)
        .expect("launches");
    let calls = h.calls();
    let accept = calls[0].2.accept.as_ref().expect("accept");
    assert_eq!(accept.offer_ids, vec![oid("o1")]);
    assert_eq!(
        accept.operations[0].r#type(),
        v1::offer::operation::Type::Launch
    );
    assert_eq!(h.client.tracked_tasks(), 1);
    // The stream breaks; o2 dies with the subscription.
    h.client.handle_stream_ended(h.now, conn, None);
    assert!(matches!(
        &h.events()[..],
        [SchedulerEvent::Disconnected {
            reason: DisconnectReason::StreamEnded(_)
        }]
    ));
    assert_eq!(
        h.client.decline(vec![oid("o2")], None),
        Err(CommandError::NotSubscribed)
    );
    h.fire_timer();
    let conn2 = h.subscribe("fw", "s2");
    assert_eq!(
        h.client.decline(vec![oid("o2")], None),
        Err(CommandError::UnknownOffer("o2".into()))
    );
    // The launched task is reconciled after the re-subscription.
    let calls = h.calls();
    let tasks = &calls[0].2.reconcile.as_ref().expect("reconcile").tasks;
    assert_eq!(tasks[0].task_id.value, "tm-1");
    assert_eq!(
        tasks[0].agent_id.as_ref().map(|a| a.value.as_str()),
        Some("a1")
    );
    assert_ne!(conn, conn2);
}

#[test]
fn launch_with_operation_id_is_refused_locally() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw", "s");
    h.event(conn, offers_event(vec![offer("o1", "a1")]));
    let op = v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Launch as i32),
        id: Some(v1::OperationId { value: "op".into() }),
        launch: Some(v1::offer::operation::Launch { task_infos: vec![] }),
        ..Default::default()
    };
    assert!(matches!(
        h.client.accept(vec![oid("o1")], vec![op], None),
        Err(CommandError::Invalid(_))
    ));
    assert_eq!(
        h.client.outstanding_offers(),
        1,
        "the offer is still usable"
    );
}

#[test]
fn failure_events_decode_the_exit_status() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw", "s");
    h.events();
    h.event(
        conn,
        Event {
            r#type: Some(event::Type::Failure as i32),
            failure: Some(event::Failure {
                agent_id: Some(AgentId { value: "a1".into() }),
                executor_id: Some(ExecutorId { value: "e1".into() }),
                status: Some(3 << 8),
            }),
            ..Default::default()
        },
    );
    h.event(
        conn,
        Event {
            r#type: Some(event::Type::Failure as i32),
            failure: Some(event::Failure {
                agent_id: Some(AgentId { value: "a2".into() }),
                executor_id: None,
                status: None,
            }),
            ..Default::default()
        },
    );
    assert_eq!(
        h.events(),
        vec![
            SchedulerEvent::ExecutorExited {
                agent_id: AgentId { value: "a1".into() },
                executor_id: ExecutorId { value: "e1".into() },
                status: Some(ExitStatus::Exited(3)),
            },
            SchedulerEvent::AgentLost {
                agent_id: AgentId { value: "a2".into() }
            },
        ]
    );
}

#[test]
fn malformed_event_and_wrong_first_event_reconnect() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (conn, _) = h.expect_subscribe();
    h.respond_ok(conn, "s");
    h.event(conn, heartbeat());
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
    h.fire_timer();
    let conn = h.subscribe("fw", "s");
    h.events();
    h.client
        .handle_event_record(h.now, conn, &[0x12, 0xff, 0x01]);
    assert!(matches!(
        &h.events()[..],
        [SchedulerEvent::Disconnected {
            reason: DisconnectReason::MalformedEvent(_)
        }]
    ));
    assert!(!h.client.is_stopped());
}

#[test]
fn missing_stream_id_or_wrong_content_type_is_retried() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (conn, _) = h.expect_subscribe();
    h.client.handle_subscribe_response(
        h.now,
        conn,
        SubscribeResponse {
            status: 200,
            content_type: Some("application/x-protobuf".into()),
            ..Default::default()
        },
    );
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
    h.fire_timer();
    let (conn, _) = h.expect_subscribe();
    h.client.handle_subscribe_response(
        h.now,
        conn,
        SubscribeResponse {
            status: 200,
            stream_id: Some("s".into()),
            content_type: Some("application/json".into()),
            ..Default::default()
        },
    );
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
    assert!(!h.client.is_stopped());
}

#[test]
fn bad_request_on_subscribe_is_fatal_with_the_masters_text() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (conn, _) = h.expect_subscribe();
    h.client.handle_subscribe_response(
        h.now,
        conn,
        SubscribeResponse {
            status: 400,
            body: "'framework_id' differs from 'subscribe.framework_info.id'".into(),
            ..Default::default()
        },
    );
    let events = h.events();
    let [SchedulerEvent::Fatal(err)] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(
        err.to_string().contains("HTTP 400: 'framework_id' differs"),
        "{err}"
    );
}

#[test]
fn subscribe_timeout_gives_up_on_a_silent_master() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let (conn, _) = h.expect_subscribe();
    h.respond_ok(conn, "s");
    h.advance(Duration::from_secs(30));
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
}

#[test]
fn call_rejections_are_reported_and_403_resubscribes() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw", "s");
    h.events();
    let kill = h
        .client
        .kill(TaskId { value: "t".into() }, None, None)
        .expect("subscribed");
    let calls = h.calls();
    assert_eq!(calls[0].2.r#type(), call::Type::Kill);
    h.client
        .handle_call_response(h.now, kill, 400, None, "Failed to validate".into());
    assert_eq!(
        h.events(),
        vec![SchedulerEvent::CallFailed {
            call_id: kill,
            call_type: "KILL",
            error: "HTTP 400: Failed to validate".into()
        }]
    );
    assert!(h.client.is_subscribed());
    let revive = h.client.revive(vec!["flow".into()]).expect("subscribed");
    h.calls();
    h.client.handle_call_response(
        h.now,
        revive,
        403,
        None,
        "Framework is not subscribed".into(),
    );
    assert!(!h.client.is_subscribed());
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
}

#[test]
fn teardown_stops_the_client_once_accepted() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    h.subscribe("fw", "s");
    h.events();
    let id = h.client.teardown().expect("subscribed");
    let calls = h.calls();
    assert_eq!(calls[0].2.r#type(), call::Type::Teardown);
    h.client
        .handle_call_response(h.now, id, 202, None, String::new());
    assert_eq!(
        h.events(),
        vec![SchedulerEvent::Fatal(FatalError::TornDown)]
    );
    assert!(h.client.is_stopped());
}

#[test]
fn suppress_revive_message_shutdown_update_framework_bodies() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    h.subscribe("fw", "s");
    h.events();
    h.calls();
    h.client.suppress(vec!["flow".into()]).expect("ok");
    h.client.revive(vec![]).expect("ok");
    h.client
        .message(
            AgentId { value: "a".into() },
            ExecutorId { value: "e".into() },
            Bytes::from_static(b"hi"),
        )
        .expect("ok");
    h.client
        .shutdown(
            ExecutorId { value: "e".into() },
            AgentId { value: "a".into() },
        )
        .expect("ok");
    let mut info = framework_info();
    info.name = "renamed".into();
    h.client
        .update_framework(info, vec!["flow".into()])
        .expect("ok");
    let calls: Vec<Call> = h.calls().into_iter().map(|c| c.2).collect();
    assert_eq!(
        calls[0].suppress.as_ref().map(|s| s.roles.clone()),
        Some(vec!["flow".to_string()])
    );
    assert_eq!(calls[1].r#type(), call::Type::Revive);
    assert_eq!(calls[1].revive.as_ref().map(|r| r.roles.len()), Some(0));
    assert_eq!(
        calls[2].message.as_ref().map(|m| m.data.clone()),
        Some(Bytes::from_static(b"hi"))
    );
    assert_eq!(
        calls[3]
            .shutdown
            .as_ref()
            .map(|s| s.executor_id.value.as_str()),
        Some("e")
    );
    let update = calls[4].update_framework.as_ref().expect("body");
    assert_eq!(update.framework_info.name, "renamed");
    assert_eq!(
        update.framework_info.id.as_ref().map(|f| f.value.as_str()),
        Some("fw")
    );
    assert_eq!(update.suppressed_roles, vec!["flow".to_string()]);
    // A later re-subscription keeps the new name and suppressed roles.
    h.client.reconnect(h.now);
    h.client.handle_timeout(h.now);
    let (_, req) = h.expect_subscribe();
    let sub = Call::decode(req.body)
        .expect("decodes")
        .subscribe
        .expect("body");
    assert_eq!(sub.framework_info.name, "renamed");
    assert_eq!(sub.suppressed_roles, vec!["flow".to_string()]);
}

#[test]
fn new_leader_from_detection_moves_the_subscription() {
    let mut h = Harness::new(config(&[]));
    h.client.start(h.now);
    assert!(h.actions().is_empty(), "waits for a master");
    assert_eq!(h.client.poll_timeout(), None);
    h.client
        .set_masters(h.now, vec![MasterEndpoint::http("m1", 5050)]);
    let conn = h.subscribe("fw", "s");
    h.events();
    h.client
        .set_masters(h.now, vec![MasterEndpoint::http("m2", 5050)]);
    assert!(matches!(
        &h.events()[..],
        [SchedulerEvent::Disconnected {
            reason: DisconnectReason::LeaderChanged
        }]
    ));
    h.client.handle_timeout(h.now);
    let actions = h.actions();
    assert_eq!(actions[0], Action::CloseSubscription { conn });
    let Action::Subscribe { request, .. } = &actions[1] else {
        panic!("{actions:?}")
    };
    assert_eq!(request.url, "http://m2:5050/api/v1/scheduler");
}

#[test]
fn stream_closed_by_teardown_is_not_a_reason_to_resubscribe() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw", "s");
    h.events();
    let id = h.client.teardown().expect("subscribed");
    h.calls();
    // The master closes the stream before its 202 reaches us.
    h.client.handle_stream_ended(h.now, conn, None);
    assert_eq!(
        h.events(),
        vec![SchedulerEvent::Fatal(FatalError::TornDown)]
    );
    h.client
        .handle_call_response(h.now, id, 202, None, String::new());
    assert!(h.events().is_empty(), "stopped once");
    h.advance(Duration::from_secs(60));
    assert_eq!(h.actions(), vec![Action::CloseSubscription { conn }]);
}

#[test]
fn no_leader_from_detection_keeps_the_live_subscription() {
    let mut h = Harness::new(config(&[]));
    h.client.start(h.now);
    h.client
        .set_masters(h.now, vec![MasterEndpoint::http("m1", 5050)]);
    h.subscribe("fw", "s");
    h.events();
    h.client.set_masters(h.now, vec![]);
    assert!(h.client.is_subscribed());
    assert!(h.events().is_empty());
    assert!(h.actions().is_empty());
}

#[test]
fn offer_constraints_go_out_on_subscribe() {
    use mesoflow_proto::mesos::v1::scheduler::{
        AttributeConstraint, OfferConstraints, attribute_constraint,
    };
    let mut config = config(&[("m1", 5050)]);
    let mut constraints = OfferConstraints::default();
    constraints.role_constraints.insert(
        "flow".into(),
        mesoflow_proto::mesos::v1::scheduler::offer_constraints::RoleConstraints {
            groups: vec![
                mesoflow_proto::mesos::v1::scheduler::offer_constraints::role_constraints::Group {
                    attribute_constraints: vec![AttributeConstraint {
                        selector: attribute_constraint::Selector {
                            selector: Some(
                                attribute_constraint::selector::Selector::AttributeName(
                                    "rack".into(),
                                ),
                            ),
                        },
                        predicate: attribute_constraint::Predicate {
                            predicate: Some(attribute_constraint::predicate::Predicate::Exists(
                                attribute_constraint::predicate::Exists {},
                            )),
                        },
                    }],
                },
            ],
        },
    );
    config.offer_constraints = Some(constraints.clone());
    let mut h = Harness::new(config);
    h.client.start(h.now);
    let (_, req) = h.expect_subscribe();
    let sub = Call::decode(req.body)
        .expect("decodes")
        .subscribe
        .expect("body");
    assert_eq!(sub.offer_constraints, Some(constraints));
}

#[test]
fn launch_group_fills_in_the_framework_id_and_tracks_every_task() {
    let mut h = Harness::new(config(&[("m1", 5050)]));
    h.client.start(h.now);
    let conn = h.subscribe("fw-9", "s");
    h.event(conn, offers_event(vec![offer("o1", "a1")]));
    h.events();
    h.calls();
    let executor = v1::ExecutorInfo {
        r#type: Some(v1::executor_info::Type::Custom as i32),
        executor_id: ExecutorId {
            value: "exec-1".into(),
        },
        ..Default::default()
    };
    let task = |id: &str| TaskInfo {
        name: id.into(),
        task_id: TaskId { value: id.into() },
        agent_id: AgentId { value: "a1".into() },
        ..Default::default()
    };
    h.client
        .launch_group(
            vec![oid("o1")],
            executor,
            vec![task("g-1"), task("g-2")],
            Some(v1::Filters {
                refuse_seconds: Some(10.0),
            }),
        )
        .expect("launches");
    let calls = h.calls();
    let accept = calls[0].2.accept.as_ref().expect("accept");
    let op = &accept.operations[0];
    assert_eq!(op.r#type(), v1::offer::operation::Type::LaunchGroup);
    assert_eq!(op.id, None);
    let group = op.launch_group.as_ref().expect("launch_group");
    assert_eq!(
        group
            .executor
            .framework_id
            .as_ref()
            .map(|f| f.value.as_str()),
        Some("fw-9")
    );
    let ids: Vec<&str> = group
        .task_group
        .tasks
        .iter()
        .map(|t| t.task_id.value.as_str())
        .collect();
    assert_eq!(ids, vec!["g-1", "g-2"]);
    assert_eq!(
        accept.filters.as_ref().and_then(|f| f.refuse_seconds),
        Some(10.0)
    );
    assert_eq!(h.client.tracked_tasks(), 2);
}
