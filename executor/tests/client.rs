//! The executor client state machine, driven without sockets or sleeps: every test feeds events
//! and a fake clock and checks the exact calls, task actions and exit it asks for.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_executor::client::{
    Action, CallOutcome, ClientConfig, ExecutorClient, ExitReason, OutgoingCall, SubscribeFailure,
    SubscriptionId, TaskReport,
};
use mesoflow_executor::reconnect::ReconnectPolicy;
use mesoflow_proto::mesos::v1::executor::{Call, Event, call, event};
use mesoflow_proto::mesos::v1::{
    AgentInfo, DurationInfo, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, KillPolicy,
    TaskGroupInfo, TaskId, TaskInfo, TaskState, framework_info, task_status,
};
use prost::Message;

const GRACE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const RECOVERY: Duration = Duration::from_secs(60);

fn config(checkpoint: bool) -> ClientConfig {
    ClientConfig {
        framework_id: "fw-1".to_owned(),
        executor_id: "exec-1".to_owned(),
        reconnect: if checkpoint {
            ReconnectPolicy {
                backoff_max: BACKOFF_MAX,
                recovery_timeout: Some(RECOVERY),
                registration_timeout: RECOVERY,
            }
        } else {
            ReconnectPolicy {
                backoff_max: BACKOFF_MAX,
                recovery_timeout: None,
                registration_timeout: Duration::from_secs(60),
            }
        },
        shutdown_grace_period: GRACE,
        default_kill_grace_period: Duration::from_secs(3),
        heartbeat_interval: Some(Duration::from_secs(1800)),
        idle_timeout: None,
        subscribe_timeout: Duration::from_secs(15),
    }
}

/// A client plus a fake clock and the id of the subscription in flight.
struct Harness {
    client: ExecutorClient,
    now: Instant,
    subscription: SubscriptionId,
}

impl Harness {
    fn new(config: ClientConfig) -> (Self, Call) {
        let now = Instant::now();
        let mut client = ExecutorClient::new(config, now, 42);
        let actions: Vec<Action> = std::iter::from_fn(|| client.poll_action()).collect();
        let [Action::Subscribe { subscription, call }] = actions.as_slice() else {
            panic!("expected one SUBSCRIBE, got {actions:?}");
        };
        let harness = Self {
            client,
            now,
            subscription: *subscription,
        };
        (harness, call.clone())
    }

    /// A client that is subscribed (framework with or without TASK_KILLING_STATE).
    fn subscribed(checkpoint: bool, killing_state: bool) -> Self {
        let (mut h, _) = Self::new(config(checkpoint));
        h.event(subscribed_event(killing_state));
        assert_eq!(h.drain(), []);
        h
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.client.poll_action()).collect()
    }

    fn event(&mut self, event: Event) {
        self.client.handle_event(self.now, self.subscription, event);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
    }

    /// Advances to the next deadline the client asked for.
    fn advance_to_next_timeout(&mut self) -> Duration {
        let at = self.client.poll_timeout().expect("client has no deadline");
        let waited = at.saturating_duration_since(self.now);
        self.now = self.now.max(at);
        self.client.handle_timeout(self.now);
        waited
    }

    /// Launches a task and reports it running; returns the RUNNING update's call.
    fn launch_running(&mut self, task_id: &str) -> OutgoingCall {
        self.event(launch_event(task_info(task_id, None)));
        let actions = self.drain();
        assert!(
            matches!(actions.as_slice(), [Action::LaunchTask(t)] if t.task_id.value == task_id),
            "{actions:?}"
        );
        self.client
            .report_task(self.now, task_id, TaskReport::Running);
        let mut sends = sent_updates(self.drain());
        assert_eq!(sends.len(), 1);
        let sent = sends.remove(0);
        self.client
            .handle_call_result(self.now, &sent, CallOutcome::Accepted);
        assert_eq!(self.drain(), []);
        sent
    }

    fn ack(&mut self, sent: &OutgoingCall) {
        let status = &sent.call.update.as_ref().unwrap().status;
        self.event(ack_event(
            &status.task_id.value,
            status.uuid.clone().unwrap(),
        ));
    }

    /// Expects a new SUBSCRIBE among `actions` and switches to it.
    fn take_subscribe(&mut self, actions: &[Action]) -> call::Subscribe {
        let found = actions.iter().find_map(|a| match a {
            Action::Subscribe { subscription, call } => Some((*subscription, call.clone())),
            _ => None,
        });
        let (subscription, call) = found.unwrap_or_else(|| panic!("no SUBSCRIBE in {actions:?}"));
        assert_ne!(
            subscription, self.subscription,
            "a new attempt needs a new id"
        );
        self.subscription = subscription;
        assert_eq!(call.r#type, Some(call::Type::Subscribe as i32));
        call.subscribe.expect("SUBSCRIBE without its body")
    }
}

fn subscribed_event(killing_state: bool) -> Event {
    let mut framework_info = FrameworkInfo {
        user: "root".to_owned(),
        name: "mesoflow".to_owned(),
        id: Some(FrameworkId {
            value: "fw-1".to_owned(),
        }),
        ..FrameworkInfo::default()
    };
    framework_info
        .capabilities
        .push(framework_info::Capability {
            r#type: Some(framework_info::capability::Type::PartitionAware as i32),
        });
    // A capability this build does not know must not confuse the check.
    framework_info
        .capabilities
        .push(framework_info::Capability { r#type: Some(99) });
    if killing_state {
        framework_info
            .capabilities
            .push(framework_info::Capability {
                r#type: Some(framework_info::capability::Type::TaskKillingState as i32),
            });
    }
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            executor_info: ExecutorInfo {
                executor_id: ExecutorId {
                    value: "exec-1".to_owned(),
                },
                ..ExecutorInfo::default()
            },
            framework_info,
            agent_info: AgentInfo {
                hostname: "agent-1".to_owned(),
                ..AgentInfo::default()
            },
            container_id: None,
        }),
        ..Event::default()
    }
}

fn task_info(task_id: &str, grace: Option<Duration>) -> TaskInfo {
    TaskInfo {
        name: format!("task {task_id}"),
        task_id: TaskId {
            value: task_id.to_owned(),
        },
        kill_policy: grace.map(kill_policy),
        data: Some(Bytes::from_static(b"spec")),
        ..TaskInfo::default()
    }
}

fn kill_policy(grace: Duration) -> KillPolicy {
    KillPolicy {
        grace_period: Some(DurationInfo {
            nanoseconds: grace.as_nanos() as i64,
        }),
    }
}

fn launch_event(task: TaskInfo) -> Event {
    Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(event::Launch { task }),
        ..Event::default()
    }
}

fn kill_event(task_id: &str, grace: Option<Duration>) -> Event {
    Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: TaskId {
                value: task_id.to_owned(),
            },
            kill_policy: grace.map(kill_policy),
        }),
        ..Event::default()
    }
}

fn ack_event(task_id: &str, uuid: Bytes) -> Event {
    Event {
        r#type: Some(event::Type::Acknowledged as i32),
        acknowledged: Some(event::Acknowledged {
            task_id: TaskId {
                value: task_id.to_owned(),
            },
            uuid,
        }),
        ..Event::default()
    }
}

fn simple_event(kind: event::Type) -> Event {
    Event {
        r#type: Some(kind as i32),
        ..Event::default()
    }
}

/// The UPDATE calls among `actions`, failing on any other action.
fn sent_updates(actions: Vec<Action>) -> Vec<OutgoingCall> {
    actions
        .into_iter()
        .map(|action| match action {
            Action::Send(sent) if sent.update_uuid.is_some() => sent,
            other => panic!("expected only UPDATE calls, got {other:?}"),
        })
        .collect()
}

fn states(updates: &[OutgoingCall]) -> Vec<TaskState> {
    updates
        .iter()
        .map(|u| TaskState::try_from(u.call.update.as_ref().unwrap().status.state).unwrap())
        .collect()
}

fn update_states(updates: &[call::Update]) -> Vec<(String, TaskState)> {
    updates
        .iter()
        .map(|u| {
            (
                u.status.task_id.value.clone(),
                TaskState::try_from(u.status.state).unwrap(),
            )
        })
        .collect()
}

#[test]
fn first_subscribe_carries_the_ids_and_nothing_unacknowledged() {
    let (_, call) = Harness::new(config(true));
    assert_eq!(call.executor_id.value, "exec-1");
    assert_eq!(call.framework_id.value, "fw-1");
    assert_eq!(call.r#type, Some(call::Type::Subscribe as i32));
    let subscribe = call.subscribe.unwrap();
    assert!(subscribe.unacknowledged_tasks.is_empty());
    assert!(subscribe.unacknowledged_updates.is_empty());
}

#[test]
fn updates_carry_a_fresh_v4_uuid_and_source_executor_until_acknowledged() {
    let mut h = Harness::subscribed(true, false);
    h.event(launch_event(task_info("t1", None)));
    assert!(matches!(h.drain().as_slice(), [Action::LaunchTask(_)]));
    h.client.report_task(h.now, "t1", TaskReport::Starting);
    h.client.report_task(h.now, "t1", TaskReport::Running);
    let sent = sent_updates(h.drain());
    assert_eq!(
        states(&sent),
        [TaskState::TaskStarting, TaskState::TaskRunning]
    );
    let mut uuids = Vec::new();
    for s in &sent {
        assert_eq!(s.call.r#type, Some(call::Type::Update as i32));
        assert_eq!(s.call.executor_id.value, "exec-1");
        assert_eq!(s.call.framework_id.value, "fw-1");
        let status = &s.call.update.as_ref().unwrap().status;
        assert_eq!(status.task_id.value, "t1");
        assert_eq!(status.source, Some(task_status::Source::Executor as i32));
        assert_eq!(status.executor_id.as_ref().unwrap().value, "exec-1");
        assert_eq!(status.agent_id, None, "the agent fills agent_id in");
        let raw = status.uuid.as_ref().unwrap();
        assert_eq!(raw.len(), 16);
        let parsed = uuid::Uuid::from_slice(raw).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(s.update_uuid.as_ref().unwrap().as_slice(), raw.as_ref());
        uuids.push(raw.clone());
        // The encoded call is what the agent receives: it must round-trip.
        assert_eq!(
            Call::decode(s.call.encode_to_vec().as_slice()).unwrap(),
            s.call
        );
    }
    assert_ne!(uuids[0], uuids[1]);
    assert_eq!(h.client.pending_update_count(), 2);
    h.ack(&sent[0]);
    assert_eq!(h.client.pending_update_count(), 1);
    // An acknowledgement of an unknown uuid or of a wrong length changes nothing.
    h.event(ack_event("t1", Bytes::from_static(&[7u8; 16])));
    h.event(ack_event("t1", Bytes::from_static(b"short")));
    assert_eq!(h.client.pending_update_count(), 1);
    h.ack(&sent[1]);
    assert_eq!(h.client.pending_update_count(), 0);
    assert_eq!(h.drain(), []);
}

#[test]
fn after_a_disconnect_unacknowledged_updates_and_tasks_go_only_in_the_new_subscribe() {
    let mut h = Harness::subscribed(true, false);
    let running_t1 = h.launch_running("t1");
    h.ack(&running_t1); // t1 has an acknowledged update: no longer an unacknowledged task
    let running_t2 = h.launch_running("t2"); // t2: RUNNING sent but never acknowledged

    h.client
        .handle_stream_ended(h.now, h.subscription, "connection reset");
    assert_eq!(
        h.drain(),
        [],
        "no exit, no immediate resend with checkpointing"
    );
    // t1 finishes while we are disconnected: the update waits for the next SUBSCRIBE.
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    assert_eq!(h.drain(), [], "no UPDATE call while disconnected");

    let waited = h.advance_to_next_timeout();
    assert!(waited <= BACKOFF_MAX, "{waited:?}");
    let actions = h.drain();
    assert_eq!(actions.len(), 1, "{actions:?}");
    let subscribe = h.take_subscribe(&actions);
    let task_ids: Vec<_> = subscribe
        .unacknowledged_tasks
        .iter()
        .map(|t| t.task_id.value.as_str())
        .collect();
    assert_eq!(task_ids, ["t2"]);
    assert_eq!(
        update_states(&subscribe.unacknowledged_updates),
        [
            ("t2".to_owned(), TaskState::TaskRunning),
            ("t1".to_owned(), TaskState::TaskFinished)
        ]
    );
    assert_eq!(
        subscribe.unacknowledged_updates[0],
        *running_t2.call.update.as_ref().unwrap(),
        "resent byte for byte, same uuid"
    );
    // SUBSCRIBED: what was in the SUBSCRIBE is not sent again.
    h.event(subscribed_event(false));
    assert_eq!(h.drain(), []);
    assert_eq!(h.client.pending_update_count(), 2);
}

#[test]
fn an_update_made_while_subscribe_is_in_flight_is_sent_after_subscribed() {
    let mut h = Harness::subscribed(true, false);
    h.launch_running("t1");
    h.client.handle_stream_ended(h.now, h.subscription, "eof");
    h.advance_to_next_timeout();
    let actions = h.drain();
    let subscribe = h.take_subscribe(&actions);
    assert_eq!(subscribe.unacknowledged_updates.len(), 1);
    h.client.report_task(
        h.now,
        "t1",
        TaskReport::Failed {
            message: "boom".to_owned(),
            reason: None,
        },
    );
    assert_eq!(h.drain(), [], "not subscribed yet");
    h.event(subscribed_event(false));
    let sent = sent_updates(h.drain());
    assert_eq!(states(&sent), [TaskState::TaskFailed]);
    assert_eq!(
        sent[0]
            .call
            .update
            .as_ref()
            .unwrap()
            .status
            .message
            .as_deref(),
        Some("boom")
    );
}

#[test]
fn without_checkpointing_a_disconnect_kills_the_tasks_and_exits() {
    let mut h = Harness::subscribed(false, false);
    h.launch_running("t1");
    h.client
        .handle_stream_ended(h.now, h.subscription, "agent went away");
    assert_eq!(
        h.drain(),
        [Action::KillTask {
            task_id: "t1".to_owned()
        }]
    );
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    let actions = h.drain();
    assert_eq!(
        actions,
        [Action::Exit(ExitReason::AgentDisconnected(
            "agent went away".to_owned()
        ))]
    );
    assert!(!ExitReason::AgentDisconnected(String::new()).is_success());
    assert!(h.client.has_exited());
    assert_eq!(h.client.poll_timeout(), None);
}

#[test]
fn without_checkpointing_an_idle_executor_exits_at_once_on_disconnect() {
    let mut h = Harness::subscribed(false, false);
    h.client.handle_stream_ended(h.now, h.subscription, "eof");
    assert!(matches!(
        h.drain().as_slice(),
        [Action::Exit(ExitReason::AgentDisconnected(_))]
    ));
}

#[test]
fn with_checkpointing_retries_stay_within_the_backoff_bound_until_subscribed() {
    let mut h = Harness::subscribed(true, false);
    h.launch_running("t1");
    h.client
        .handle_stream_ended(h.now, h.subscription, "agent restarting");
    let mut attempts = 0;
    for _ in 0..10 {
        let waited = h.advance_to_next_timeout();
        assert!(waited <= BACKOFF_MAX, "retry after {waited:?}");
        let actions = h.drain();
        h.take_subscribe(&actions);
        attempts += 1;
        // The agent is still recovering.
        h.client.handle_subscribe_failed(
            h.now,
            h.subscription,
            SubscribeFailure::Transient("503 Service Unavailable".to_owned()),
        );
        assert_eq!(h.drain(), []);
    }
    assert_eq!(attempts, 10);
    h.advance_to_next_timeout();
    let actions = h.drain();
    let subscribe = h.take_subscribe(&actions);
    assert_eq!(subscribe.unacknowledged_updates.len(), 1);
    h.event(subscribed_event(false));
    assert_eq!(h.drain(), []);
    // Tasks kept running through the outage; the next deadline is the heartbeat, not an exit.
    assert_eq!(h.client.live_task_ids().collect::<Vec<_>>(), ["t1"]);
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(1800))
    );
}

#[test]
fn the_recovery_timeout_shuts_the_executor_down() {
    let mut h = Harness::subscribed(true, false);
    h.launch_running("t1");
    let lost_at = h.now;
    h.client.handle_stream_ended(h.now, h.subscription, "eof");
    let mut killed = false;
    while !h.client.has_exited() {
        h.advance_to_next_timeout();
        for action in h.drain() {
            match action {
                Action::Subscribe { subscription, .. } => {
                    assert!(h.now < lost_at + RECOVERY, "retried after the timeout");
                    h.subscription = subscription;
                    h.client.handle_subscribe_failed(
                        h.now,
                        subscription,
                        SubscribeFailure::Transient("connection refused".to_owned()),
                    );
                }
                Action::Disconnect => {}
                Action::KillTask { task_id } => {
                    assert_eq!(h.now, lost_at + RECOVERY);
                    killed = true;
                    h.client
                        .report_task(h.now, &task_id, TaskReport::Finished { message: None });
                }
                Action::Exit(reason) => {
                    assert_eq!(reason, ExitReason::RecoveryTimeout(RECOVERY));
                    assert_eq!(h.now, lost_at + RECOVERY);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(h.now <= lost_at + RECOVERY + GRACE);
    }
    assert!(killed);
}

#[test]
fn kill_without_task_killing_state_sends_only_the_terminal_update() {
    let mut h = Harness::subscribed(true, false);
    h.launch_running("t1");
    h.event(kill_event("t1", None));
    assert_eq!(
        h.drain(),
        [Action::KillTask {
            task_id: "t1".to_owned()
        }]
    );
    // The task stops on its own within the grace period (whatever it reports).
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    let sent = sent_updates(h.drain());
    assert_eq!(states(&sent), [TaskState::TaskKilled]);
    assert_eq!(
        sent[0]
            .call
            .update
            .as_ref()
            .unwrap()
            .status
            .message
            .as_deref(),
        Some("killed on request of the scheduler")
    );
    // A late report for the ended task changes nothing.
    h.client.report_task(h.now, "t1", TaskReport::Running);
    assert_eq!(h.drain(), []);
}

#[test]
fn kill_with_task_killing_state_sends_killing_first() {
    let mut h = Harness::subscribed(true, true);
    h.launch_running("t1");
    h.event(kill_event("t1", None));
    let actions = h.drain();
    assert_eq!(actions.len(), 2, "{actions:?}");
    let Action::Send(killing) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        states(std::slice::from_ref(killing)),
        [TaskState::TaskKilling]
    );
    assert_eq!(
        actions[1],
        Action::KillTask {
            task_id: "t1".to_owned()
        }
    );
    // A RUNNING report racing with the kill must not follow TASK_KILLING.
    h.client.report_task(h.now, "t1", TaskReport::Running);
    assert_eq!(h.drain(), []);
    h.client.report_task(
        h.now,
        "t1",
        TaskReport::Failed {
            message: "SIGTERM".to_owned(),
            reason: None,
        },
    );
    assert_eq!(states(&sent_updates(h.drain())), [TaskState::TaskKilled]);
}

#[test]
fn kill_policy_grace_period_decides_when_the_kill_is_forced() {
    // The KILL event's policy wins over the task's, which wins over the default.
    for (event_grace, task_grace, expected) in [
        (Some(7), Some(20), 7),
        (None, Some(20), 20),
        (None, None, 3),
        (Some(0), Some(20), 0),
    ] {
        let mut h = Harness::subscribed(true, false);
        h.event(launch_event(task_info(
            "t1",
            task_grace.map(Duration::from_secs),
        )));
        h.drain();
        h.event(kill_event("t1", event_grace.map(Duration::from_secs)));
        assert_eq!(
            h.drain(),
            [Action::KillTask {
                task_id: "t1".to_owned()
            }]
        );
        let kill_at = h.now;
        if expected > 0 {
            h.advance(Duration::from_secs(expected) - Duration::from_millis(1));
            assert_eq!(h.drain(), [], "forced too early");
        }
        let waited = h.advance_to_next_timeout();
        assert!(waited <= Duration::from_millis(1));
        assert_eq!(h.now, kill_at + Duration::from_secs(expected));
        assert_eq!(
            h.drain(),
            [Action::ForceKillTask {
                task_id: "t1".to_owned()
            }]
        );
        h.client
            .report_task(h.now, "t1", TaskReport::Finished { message: None });
        assert_eq!(states(&sent_updates(h.drain())), [TaskState::TaskKilled]);
    }
}

#[test]
fn a_second_kill_with_a_shorter_grace_hastens_the_forced_kill() {
    let mut h = Harness::subscribed(true, true);
    h.launch_running("t1");
    h.event(kill_event("t1", Some(Duration::from_secs(30))));
    assert_eq!(h.drain().len(), 2); // TASK_KILLING + KillTask
    h.advance(Duration::from_secs(1));
    h.event(kill_event("t1", Some(Duration::from_secs(2))));
    assert_eq!(h.drain(), [], "no second TASK_KILLING nor KillTask");
    let started = h.now;
    h.advance_to_next_timeout();
    assert_eq!(h.now, started + Duration::from_secs(2));
    assert_eq!(
        h.drain(),
        [Action::ForceKillTask {
            task_id: "t1".to_owned()
        }]
    );
}

#[test]
fn kill_of_an_unknown_task_is_ignored() {
    let mut h = Harness::subscribed(true, true);
    h.event(kill_event("nope", None));
    assert_eq!(h.drain(), []);
}

#[test]
fn shutdown_kills_every_task_within_the_grace_period_and_exits_after_the_acks() {
    let mut h = Harness::subscribed(true, false);
    let task_grace = Duration::from_secs(60); // longer than the shutdown grace: capped
    h.event(launch_event(task_info("t1", Some(task_grace))));
    h.event(launch_event(task_info("t2", None)));
    h.drain();
    h.event(simple_event(event::Type::Shutdown));
    let mut kills = h.drain();
    kills.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(
        kills,
        [
            Action::KillTask {
                task_id: "t1".to_owned()
            },
            Action::KillTask {
                task_id: "t2".to_owned()
            }
        ]
    );
    let shutdown_at = h.now;
    // t2 stops gracefully, t1 ignores the request and is forced at 3/4 of the grace period.
    h.client
        .report_task(h.now, "t2", TaskReport::Finished { message: None });
    let t2_killed = sent_updates(h.drain());
    h.advance_to_next_timeout();
    assert_eq!(h.now, shutdown_at + GRACE * 3 / 4);
    assert_eq!(
        h.drain(),
        [Action::ForceKillTask {
            task_id: "t1".to_owned()
        }]
    );
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    let t1_killed = sent_updates(h.drain());
    assert_eq!(states(&t1_killed), [TaskState::TaskKilled]);
    assert_eq!(states(&t2_killed), [TaskState::TaskKilled]);
    assert_eq!(
        t2_killed[0]
            .call
            .update
            .as_ref()
            .unwrap()
            .status
            .message
            .as_deref(),
        Some("killed because the executor is shutting down")
    );
    // Not before the terminal updates are acknowledged.
    assert!(!h.client.has_exited());
    h.ack(&t1_killed[0]);
    assert_eq!(h.drain(), []);
    h.ack(&t2_killed[0]);
    assert_eq!(h.drain(), [Action::Exit(ExitReason::Shutdown)]);
    assert!(ExitReason::Shutdown.is_success());
}

#[test]
fn shutdown_exits_at_the_grace_deadline_even_if_a_task_never_stops() {
    let mut h = Harness::subscribed(true, false);
    h.launch_running("t1");
    h.event(simple_event(event::Type::Shutdown));
    assert_eq!(h.drain().len(), 1);
    let shutdown_at = h.now;
    h.advance_to_next_timeout();
    assert!(matches!(
        h.drain().as_slice(),
        [Action::ForceKillTask { .. }]
    ));
    h.advance_to_next_timeout();
    // A tenth of the grace period (at most 1 s) is kept as a margin before the agent's deadline.
    assert_eq!(h.now, shutdown_at + GRACE - GRACE / 10);
    assert_eq!(h.drain(), [Action::Exit(ExitReason::Shutdown)]);
}

#[test]
fn shutdown_as_the_first_event_of_a_subscription_is_obeyed() {
    let (mut h, _) = Harness::new(config(true));
    h.event(simple_event(event::Type::Shutdown));
    assert_eq!(h.drain(), [Action::Exit(ExitReason::Shutdown)]);
}

#[test]
fn launch_during_shutdown_fails_the_task() {
    let mut h = Harness::subscribed(true, false);
    h.launch_running("t1");
    h.event(simple_event(event::Type::Shutdown));
    h.drain();
    h.event(launch_event(task_info("late", None)));
    let sent = sent_updates(h.drain());
    assert_eq!(states(&sent), [TaskState::TaskFailed]);
    let status = &sent[0].call.update.as_ref().unwrap().status;
    assert_eq!(status.task_id.value, "late");
    assert_eq!(
        status.reason,
        Some(task_status::Reason::ExecutorTerminated as i32)
    );
}

#[test]
fn launch_group_launches_every_task_and_duplicates_are_ignored() {
    let mut h = Harness::subscribed(true, false);
    h.event(Event {
        r#type: Some(event::Type::LaunchGroup as i32),
        launch_group: Some(event::LaunchGroup {
            task_group: TaskGroupInfo {
                tasks: vec![task_info("a", None), task_info("b", None)],
            },
        }),
        ..Event::default()
    });
    let launched: Vec<String> = h
        .drain()
        .into_iter()
        .map(|a| match a {
            Action::LaunchTask(t) => t.task_id.value,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(launched, ["a", "b"]);
    h.event(launch_event(task_info("a", None)));
    assert_eq!(h.drain(), []);
    let mut live: Vec<_> = h.client.live_task_ids().collect();
    live.sort();
    assert_eq!(live, ["a", "b"]);
}

/// Records that are not a protobuf `Event`: not protobuf at all, a truncated event, and an
/// event with a field of the wrong wire type.
fn undecodable_records() -> Vec<Vec<u8>> {
    let mut truncated = launch_event(task_info("t9", None)).encode_to_vec();
    truncated.truncate(truncated.len() / 2);
    vec![
        b"\xff\xff\xff\xff garbage".to_vec(),
        truncated,
        vec![0x0a, 0x05, 0x01],
    ]
}

#[test]
fn with_checkpointing_an_undecodable_record_drops_the_stream_and_resubscribes() {
    for record in undecodable_records() {
        let mut h = Harness::subscribed(true, false);
        let running_t1 = h.launch_running("t1");
        let old = h.subscription;
        h.client.handle_record(h.now, old, &record);
        assert_eq!(h.drain(), [Action::Disconnect], "record {record:?}");
        assert!(!h.client.has_exited());
        // Records still queued from the dropped stream are not acted upon.
        let late = launch_event(task_info("t2", None)).encode_to_vec();
        h.client.handle_record(h.now, old, &late);
        h.client.handle_record(h.now, old, &record);
        assert_eq!(h.drain(), []);

        let waited = h.advance_to_next_timeout();
        assert!(waited <= BACKOFF_MAX, "retry after {waited:?}");
        let actions = h.drain();
        assert_eq!(actions.len(), 1, "{actions:?}");
        let subscribe = h.take_subscribe(&actions);
        let task_ids: Vec<_> = subscribe
            .unacknowledged_tasks
            .iter()
            .map(|t| t.task_id.value.as_str())
            .collect();
        assert_eq!(task_ids, ["t1"]);
        assert_eq!(
            subscribe.unacknowledged_updates,
            [running_t1.call.update.clone().unwrap()],
            "the unacknowledged RUNNING is resent byte for byte"
        );
        h.event(subscribed_event(false));
        assert_eq!(h.drain(), []);
        assert_eq!(h.client.live_task_ids().collect::<Vec<_>>(), ["t1"]);
    }
}

#[test]
fn with_checkpointing_an_undecodable_record_still_ends_at_the_recovery_timeout() {
    let mut h = Harness::subscribed(true, false);
    h.launch_running("t1");
    let lost_at = h.now;
    h.client
        .handle_record(h.now, h.subscription, b"\xff\xff garbage");
    assert_eq!(h.drain(), [Action::Disconnect]);
    // The agent never takes us back: every attempt fails until the recovery timeout.
    let exit = loop {
        h.advance_to_next_timeout();
        let actions = h.drain();
        if let Some(Action::Subscribe { subscription, .. }) = actions.first() {
            h.subscription = *subscription;
            h.client.handle_subscribe_failed(
                h.now,
                h.subscription,
                SubscribeFailure::Transient("connection refused".to_owned()),
            );
            assert_eq!(h.drain(), []);
            continue;
        }
        assert!(
            h.now >= lost_at + RECOVERY,
            "gave up early: {actions:?} after {:?}",
            h.now - lost_at
        );
        break actions;
    };
    assert!(
        exit.contains(&Action::KillTask {
            task_id: "t1".to_owned()
        }),
        "{exit:?}"
    );
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    assert_eq!(
        h.drain(),
        [Action::Exit(ExitReason::RecoveryTimeout(RECOVERY))]
    );
}

#[test]
fn without_checkpointing_an_undecodable_record_kills_the_tasks_and_exits() {
    for record in undecodable_records() {
        let mut h = Harness::subscribed(false, false);
        h.launch_running("t1");
        h.client.handle_record(h.now, h.subscription, &record);
        assert_eq!(
            h.drain(),
            [
                Action::Disconnect,
                Action::KillTask {
                    task_id: "t1".to_owned()
                }
            ]
        );
        h.client
            .report_task(h.now, "t1", TaskReport::Finished { message: None });
        let actions = h.drain();
        let [Action::Exit(ExitReason::AgentDisconnected(why))] = actions.as_slice() else {
            panic!("expected an exit, got {actions:?}");
        };
        let expected = format!("undecodable Event ({} bytes): ", record.len());
        assert!(why.starts_with(&expected), "{why:?} for {record:?}");
        assert!(
            why.len() > expected.len(),
            "names the decode error: {why:?}"
        );
        assert!(h.client.has_exited());
    }
}

#[test]
fn without_checkpointing_an_idle_executor_exits_at_once_on_an_undecodable_record() {
    let mut h = Harness::subscribed(false, false);
    h.client
        .handle_record(h.now, h.subscription, &[0x0a, 0x05, 0x01]);
    let actions = h.drain();
    assert!(
        matches!(
            actions.as_slice(),
            [Action::Disconnect, Action::Exit(ExitReason::AgentDisconnected(why))]
                if why.starts_with("undecodable Event (3 bytes): ")
        ),
        "{actions:?}"
    );
}

#[test]
fn an_undecodable_first_record_fails_the_subscribe_attempt_and_it_is_retried() {
    let (mut h, _) = Harness::new(config(false));
    let first = h.subscription;
    h.client.handle_record(h.now, first, b"\xff garbage");
    assert_eq!(h.drain(), [Action::Disconnect]);
    // Not yet registered: retried within the backoff bound even without checkpointing.
    let waited = h.advance_to_next_timeout();
    assert!(waited <= BACKOFF_MAX, "retry after {waited:?}");
    let actions = h.drain();
    let subscribe = h.take_subscribe(&actions);
    assert!(subscribe.unacknowledged_tasks.is_empty());
    h.event(subscribed_event(false));
    assert_eq!(h.drain(), []);
    assert!(!h.client.has_exited());
}

#[test]
fn an_undecodable_record_from_an_abandoned_subscription_is_ignored() {
    let mut h = Harness::subscribed(false, false);
    h.launch_running("t1");
    let old = h.subscription;
    h.client.handle_stream_ended(h.now, old, "eof");
    assert_eq!(
        h.drain(),
        [Action::KillTask {
            task_id: "t1".to_owned()
        }]
    );
    h.client.handle_record(h.now, old, b"\xff garbage");
    assert_eq!(h.drain(), [], "no second Disconnect, no other exit reason");
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    assert_eq!(
        h.drain(),
        [Action::Exit(ExitReason::AgentDisconnected(
            "eof".to_owned()
        ))]
    );
}

#[test]
fn events_without_their_payload_are_refused_without_harm() {
    let mut h = Harness::subscribed(true, false);
    let sub = h.subscription;
    // Known types whose payload is missing, and a type from a newer agent.
    for kind in [
        event::Type::Launch,
        event::Type::LaunchGroup,
        event::Type::Kill,
        event::Type::Acknowledged,
        event::Type::Message,
    ] {
        h.event(simple_event(kind));
    }
    h.event(Event {
        r#type: Some(77),
        ..Event::default()
    });
    h.event(Event::default());
    h.event(simple_event(event::Type::Heartbeat));
    // A launch without a task id cannot be reported on: ignored.
    h.event(launch_event(task_info("", None)));
    // The same, as records off the wire: they decode, so the stream is kept.
    h.client
        .handle_record(h.now, sub, &simple_event(event::Type::Kill).encode_to_vec());
    h.client.handle_record(h.now, sub, &[]);
    assert_eq!(h.drain(), []);
    assert!(!h.client.has_exited());
    // The client still works on the same subscription: a real launch, encoded as the agent
    // sends it.
    let record = launch_event(task_info("t2", None)).encode_to_vec();
    h.client.handle_record(h.now, sub, &record);
    assert!(matches!(h.drain().as_slice(), [Action::LaunchTask(t)] if t.task_id.value == "t2"));
}

#[test]
fn scheduler_messages_are_delivered_and_executor_messages_sent() {
    let mut h = Harness::subscribed(true, false);
    h.event(Event {
        r#type: Some(event::Type::Message as i32),
        message: Some(event::Message {
            data: Bytes::from_static(b"ping"),
        }),
        ..Event::default()
    });
    assert_eq!(
        h.drain(),
        [Action::SchedulerMessage(Bytes::from_static(b"ping"))]
    );
    h.client.send_message(Bytes::from_static(b"pong"));
    let actions = h.drain();
    let [Action::Send(sent)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(sent.call.r#type, Some(call::Type::Message as i32));
    assert_eq!(
        sent.call.message.as_ref().unwrap().data,
        Bytes::from_static(b"pong")
    );
    assert_eq!(sent.update_uuid, None);
}

#[test]
fn an_error_event_shuts_the_executor_down() {
    let mut h = Harness::subscribed(true, false);
    let running = h.launch_running("t1");
    h.ack(&running);
    h.event(Event {
        r#type: Some(event::Type::Error as i32),
        error: Some(event::Error {
            message: "Framework has been removed".to_owned(),
        }),
        ..Event::default()
    });
    assert_eq!(
        h.drain(),
        [Action::KillTask {
            task_id: "t1".to_owned()
        }]
    );
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    let killed = sent_updates(h.drain());
    h.ack(&killed[0]);
    assert_eq!(
        h.drain(),
        [Action::Exit(ExitReason::AgentError(
            "Framework has been removed".to_owned()
        ))]
    );
}

#[test]
fn a_rejected_subscribe_exits_with_the_reason() {
    let (mut h, _) = Harness::new(config(true));
    h.client.handle_subscribe_failed(
        h.now,
        h.subscription,
        SubscribeFailure::Rejected("401 Unauthorized".to_owned()),
    );
    assert_eq!(
        h.drain(),
        [Action::Exit(ExitReason::SubscriptionRejected(
            "401 Unauthorized".to_owned()
        ))]
    );
}

#[test]
fn the_first_subscription_is_retried_until_the_registration_timeout() {
    let (mut h, _) = Harness::new(config(false));
    let started = h.now;
    let mut attempts = 1;
    loop {
        h.client.handle_subscribe_failed(
            h.now,
            h.subscription,
            SubscribeFailure::Transient("connection refused".to_owned()),
        );
        assert_eq!(h.drain(), []);
        let waited = h.advance_to_next_timeout();
        assert!(waited <= BACKOFF_MAX);
        let actions = h.drain();
        if let [Action::Exit(reason)] = actions.as_slice() {
            assert!(
                matches!(reason, ExitReason::RegistrationFailed(_)),
                "{reason}"
            );
            assert_eq!(h.now, started + Duration::from_secs(60));
            break;
        }
        h.take_subscribe(&actions);
        attempts += 1;
    }
    assert!(attempts > 30, "only {attempts} attempts in a minute");
}

#[test]
fn an_unanswered_subscribe_times_out_and_is_retried() {
    let (mut h, _) = Harness::new(config(true));
    let first = h.subscription;
    h.advance_to_next_timeout();
    assert_eq!(h.drain(), [Action::Disconnect]);
    h.advance_to_next_timeout();
    let actions = h.drain();
    h.take_subscribe(&actions);
    // News from the abandoned attempt is ignored.
    h.client
        .handle_event(h.now, first, simple_event(event::Type::Shutdown));
    h.client.handle_stream_ended(h.now, first, "late eof");
    assert_eq!(h.drain(), []);
    h.event(subscribed_event(false));
    assert_eq!(h.drain(), []);
}

#[test]
fn a_transiently_failed_update_is_resent_by_a_new_subscribe() {
    let mut h = Harness::subscribed(true, false);
    h.event(launch_event(task_info("t1", None)));
    h.drain();
    h.client.report_task(h.now, "t1", TaskReport::Running);
    let sent = sent_updates(h.drain());
    h.client.handle_call_result(
        h.now,
        &sent[0],
        CallOutcome::Transient("503 Service Unavailable".to_owned()),
    );
    assert_eq!(h.drain(), [], "never resent as a plain UPDATE");
    let waited = h.advance_to_next_timeout();
    assert!(waited <= BACKOFF_MAX);
    let actions = h.drain();
    let subscribe = h.take_subscribe(&actions);
    assert_eq!(
        subscribe.unacknowledged_updates,
        [sent[0].call.update.clone().unwrap()]
    );
}

#[test]
fn a_rejected_update_is_dropped() {
    let mut h = Harness::subscribed(true, false);
    h.event(launch_event(task_info("t1", None)));
    h.drain();
    h.client.report_task(h.now, "t1", TaskReport::Running);
    let sent = sent_updates(h.drain());
    h.client.handle_call_result(
        h.now,
        &sent[0],
        CallOutcome::Rejected("400 Bad Request".to_owned()),
    );
    assert_eq!(h.client.pending_update_count(), 0);
    assert_eq!(h.drain(), []);
}

#[test]
fn an_idle_executor_exits_after_the_idle_timeout_once_everything_is_acknowledged() {
    let mut cfg = config(true);
    cfg.idle_timeout = Some(Duration::from_secs(10));
    let (mut h, _) = Harness::new(cfg);
    h.event(subscribed_event(false));
    let t1 = h.launch_running("t1");
    h.ack(&t1);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.drain(), [], "a running task keeps the executor");
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    let finished = sent_updates(h.drain());
    h.advance(Duration::from_secs(30));
    assert_eq!(h.drain(), [], "an unacknowledged update keeps the executor");
    h.ack(&finished[0]);
    let idle_from = h.now;
    h.advance_to_next_timeout();
    assert_eq!(h.now, idle_from + Duration::from_secs(10));
    assert_eq!(h.drain(), [Action::Exit(ExitReason::Idle)]);
}

#[test]
fn heartbeat_calls_are_sent_every_interval_while_subscribed() {
    let mut h = Harness::subscribed(true, false);
    for _ in 0..2 {
        let waited = h.advance_to_next_timeout();
        assert_eq!(waited, Duration::from_secs(1800));
        let actions = h.drain();
        let [Action::Send(sent)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(sent.call.r#type, Some(call::Type::Heartbeat as i32));
        assert_eq!(sent.call.executor_id.value, "exec-1");
    }
}

#[test]
fn a_late_call_failure_does_not_resend_what_a_newer_subscribe_carried() {
    let mut h = Harness::subscribed(true, false);
    h.event(launch_event(task_info("t1", None)));
    h.drain();
    h.client
        .report_task(h.now, "t1", TaskReport::Finished { message: None });
    let sent = sent_updates(h.drain());
    h.client.handle_stream_ended(h.now, h.subscription, "eof");
    h.advance_to_next_timeout();
    let actions = h.drain();
    let subscribe = h.take_subscribe(&actions);
    assert_eq!(subscribe.unacknowledged_updates.len(), 1);
    // The POST of the original UPDATE fails only now, on the old connection.
    h.client.handle_call_result(
        h.now,
        &sent[0],
        CallOutcome::Transient("connection reset".to_owned()),
    );
    h.event(subscribed_event(false));
    assert_eq!(h.drain(), [], "already delivered inside the SUBSCRIBE");
}
