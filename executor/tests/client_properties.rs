//! Random sequences of agent events, task reports, HTTP outcomes, garbage and the passing of
//! time: the client must never panic and must keep the protocol's promises whatever happens
//! (among them: after a record that is not an `Event`, nothing more from that stream is used).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_executor::client::{
    Action, CallOutcome, ClientConfig, ExecutorClient, OutgoingCall, SubscribeFailure,
    SubscriptionId, TaskReport,
};
use mesoflow_executor::reconnect::ReconnectPolicy;
use mesoflow_proto::mesos::v1::executor::{Event, event};
use mesoflow_proto::mesos::v1::{
    DurationInfo, FrameworkInfo, KillPolicy, TaskId, TaskInfo, TaskState, framework_info,
    task_status,
};
use proptest::prelude::*;
use prost::Message;

#[derive(Debug, Clone)]
enum Op {
    Subscribed { killing_state: bool },
    Launch(u8),
    Kill { task: u8, grace_ms: Option<u16> },
    AckSent(usize),
    AckGarbage(Vec<u8>),
    Shutdown,
    Error,
    Message,
    Heartbeat,
    Garbage(Vec<u8>),
    StreamEnded,
    StaleEvent,
    SubscribeFailed { rejected: bool },
    CallResult { sent: usize, outcome: u8 },
    Report { task: u8, report: u8 },
    Advance(u16),
    Signal,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|killing_state| Op::Subscribed { killing_state }),
        4 => (0u8..4).prop_map(Op::Launch),
        2 => ((0u8..5), proptest::option::of(0u16..4000))
            .prop_map(|(task, grace_ms)| Op::Kill { task, grace_ms }),
        4 => any::<usize>().prop_map(Op::AckSent),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Op::AckGarbage),
        1 => Just(Op::Shutdown),
        1 => Just(Op::Error),
        1 => Just(Op::Message),
        1 => Just(Op::Heartbeat),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Garbage),
        1 => Just(Op::StreamEnded),
        1 => Just(Op::StaleEvent),
        1 => any::<bool>().prop_map(|rejected| Op::SubscribeFailed { rejected }),
        3 => (any::<usize>(), 0u8..3).prop_map(|(sent, outcome)| Op::CallResult { sent, outcome }),
        5 => ((0u8..5), 0u8..4).prop_map(|(task, report)| Op::Report { task, report }),
        4 => any::<u16>().prop_map(Op::Advance),
        1 => Just(Op::Signal),
    ]
}

fn task_info(task: u8, grace_ms: Option<u16>) -> TaskInfo {
    TaskInfo {
        name: format!("t{task}"),
        task_id: TaskId {
            value: format!("t{task}"),
        },
        kill_policy: grace_ms.map(|ms| KillPolicy {
            grace_period: Some(DurationInfo {
                nanoseconds: i64::from(ms) * 1_000_000,
            }),
        }),
        ..TaskInfo::default()
    }
}

fn typed(kind: event::Type) -> Event {
    Event {
        r#type: Some(kind as i32),
        ..Event::default()
    }
}

/// What the test has observed of the client so far, to check its promises against.
#[derive(Default)]
struct Observer {
    subscription: Option<SubscriptionId>,
    stale: Option<SubscriptionId>,
    sent: Vec<OutgoingCall>,
    killing_state: bool,
    terminal: HashSet<String>,
    exited: bool,
}

impl Observer {
    fn check(&mut self, actions: Vec<Action>) {
        for action in actions {
            assert!(!self.exited, "action after Exit: {action:?}");
            match action {
                Action::Subscribe { subscription, call } => {
                    self.stale = self.subscription.replace(subscription);
                    let subscribe = call.subscribe.expect("SUBSCRIBE without body");
                    let uuids: HashSet<_> = subscribe
                        .unacknowledged_updates
                        .iter()
                        .map(|u| u.status.uuid.clone())
                        .collect();
                    assert_eq!(
                        uuids.len(),
                        subscribe.unacknowledged_updates.len(),
                        "an update twice in one SUBSCRIBE"
                    );
                }
                Action::Send(sent) => {
                    if let Some(update) = &sent.call.update {
                        let status = &update.status;
                        let uuid = status.uuid.as_ref().expect("update without uuid");
                        let parsed = uuid::Uuid::from_slice(uuid).expect("uuid not 16 bytes");
                        assert_eq!(parsed.get_version_num(), 4);
                        assert_eq!(status.source, Some(task_status::Source::Executor as i32));
                        let state = TaskState::try_from(status.state).unwrap();
                        assert_ne!(state, TaskState::TaskStaging);
                        let task_id = status.task_id.value.clone();
                        assert!(
                            !self.terminal.contains(&task_id),
                            "{state:?} for {task_id} after its terminal update"
                        );
                        if state == TaskState::TaskKilling {
                            assert!(self.killing_state, "TASK_KILLING without the capability");
                        }
                        if state.is_terminal() {
                            self.terminal.insert(task_id);
                        }
                    }
                    assert_eq!(sent.call.executor_id.value, "exec-1");
                    assert_eq!(sent.call.framework_id.value, "fw-1");
                    self.sent.push(sent);
                }
                Action::LaunchTask(task) => {
                    self.terminal.remove(&task.task_id.value);
                }
                Action::Exit(_) => self.exited = true,
                Action::Disconnect
                | Action::KillTask { .. }
                | Action::ForceKillTask { .. }
                | Action::SchedulerMessage(_) => {}
            }
        }
    }
}

fn run(ops: Vec<Op>, checkpoint: bool) {
    let config = ClientConfig {
        framework_id: "fw-1".to_owned(),
        executor_id: "exec-1".to_owned(),
        reconnect: ReconnectPolicy {
            backoff_max: Duration::from_secs(2),
            recovery_timeout: checkpoint.then_some(Duration::from_secs(30)),
            registration_timeout: Duration::from_secs(30),
        },
        shutdown_grace_period: Duration::from_secs(5),
        default_kill_grace_period: Duration::from_secs(3),
        heartbeat_interval: Some(Duration::from_secs(20)),
        idle_timeout: Some(Duration::from_secs(40)),
        subscribe_timeout: Duration::from_secs(15),
    };
    let mut now = Instant::now();
    let mut client = ExecutorClient::new(config, now, 9);
    let mut seen = Observer::default();
    let drain = |client: &mut ExecutorClient| std::iter::from_fn(|| client.poll_action()).collect();
    seen.check(drain(&mut client));
    for op in ops {
        let sub = seen.subscription.unwrap_or(SubscriptionId(0));
        match op {
            Op::Subscribed { killing_state } => {
                let mut framework_info = FrameworkInfo::default();
                if killing_state {
                    framework_info
                        .capabilities
                        .push(framework_info::Capability {
                            r#type: Some(framework_info::capability::Type::TaskKillingState as i32),
                        });
                }
                let mut subscribed = typed(event::Type::Subscribed);
                subscribed.subscribed = Some(event::Subscribed {
                    framework_info,
                    ..event::Subscribed::default()
                });
                // Whether this event reaches the client depends on its link; the check only
                // needs to know that the capability was ever offered.
                seen.killing_state |= killing_state;
                client.handle_event(now, sub, subscribed);
            }
            Op::Launch(task) => {
                // Mesos lets a framework reuse the id of a task that has ended.
                seen.terminal.remove(&format!("t{task}"));
                let mut launch = typed(event::Type::Launch);
                launch.launch = Some(event::Launch {
                    task: task_info(task, Some(1000)),
                });
                client.handle_record(now, sub, &launch.encode_to_vec());
            }
            Op::Kill { task, grace_ms } => {
                let mut kill = typed(event::Type::Kill);
                kill.kill = Some(event::Kill {
                    task_id: TaskId {
                        value: format!("t{task}"),
                    },
                    kill_policy: task_info(task, grace_ms).kill_policy,
                });
                client.handle_event(now, sub, kill);
            }
            Op::AckSent(index) => {
                let updates: Vec<_> = seen
                    .sent
                    .iter()
                    .filter(|s| s.update_uuid.is_some())
                    .collect();
                if !updates.is_empty() {
                    let status = &updates[index % updates.len()]
                        .call
                        .update
                        .as_ref()
                        .unwrap()
                        .status;
                    let mut ack = typed(event::Type::Acknowledged);
                    ack.acknowledged = Some(event::Acknowledged {
                        task_id: status.task_id.clone(),
                        uuid: status.uuid.clone().unwrap(),
                    });
                    client.handle_event(now, sub, ack);
                }
            }
            Op::AckGarbage(uuid) => {
                let mut ack = typed(event::Type::Acknowledged);
                ack.acknowledged = Some(event::Acknowledged {
                    task_id: TaskId {
                        value: "t1".to_owned(),
                    },
                    uuid: Bytes::from(uuid),
                });
                client.handle_event(now, sub, ack);
            }
            Op::Shutdown => client.handle_event(now, sub, typed(event::Type::Shutdown)),
            Op::Error => client.handle_event(now, sub, typed(event::Type::Error)),
            Op::Message => client.handle_event(now, sub, typed(event::Type::Message)),
            Op::Heartbeat => client.handle_event(now, sub, typed(event::Type::Heartbeat)),
            Op::Garbage(bytes) => {
                client.handle_record(now, sub, &bytes);
                if Event::decode(bytes.as_slice()).is_err() {
                    // A corrupt record kills its stream: whatever that stream still delivers
                    // (here a LAUNCH of a task never seen before) is not acted upon.
                    let actions: Vec<Action> = drain(&mut client);
                    seen.check(actions);
                    let mut launch = typed(event::Type::Launch);
                    launch.launch = Some(event::Launch {
                        task: task_info(9, None),
                    });
                    client.handle_record(now, sub, &launch.encode_to_vec());
                    let after: Vec<Action> = drain(&mut client);
                    assert_eq!(after, [], "acted on a stream after a corrupt record");
                }
            }
            Op::StreamEnded => client.handle_stream_ended(now, sub, "eof"),
            Op::StaleEvent => {
                if let Some(stale) = seen.stale {
                    client.handle_event(now, stale, typed(event::Type::Shutdown));
                    client.handle_stream_ended(now, stale, "old eof");
                }
            }
            Op::SubscribeFailed { rejected } => {
                let failure = if rejected {
                    SubscribeFailure::Rejected("401".to_owned())
                } else {
                    SubscribeFailure::Transient("503".to_owned())
                };
                client.handle_subscribe_failed(now, sub, failure);
            }
            Op::CallResult { sent, outcome } => {
                if !seen.sent.is_empty() {
                    let call = seen.sent[sent % seen.sent.len()].clone();
                    let outcome = match outcome {
                        0 => CallOutcome::Accepted,
                        1 => CallOutcome::Transient("503".to_owned()),
                        _ => CallOutcome::Rejected("400".to_owned()),
                    };
                    client.handle_call_result(now, &call, outcome);
                }
            }
            Op::Report { task, report } => {
                let report = match report {
                    0 => TaskReport::Starting,
                    1 => TaskReport::Running,
                    2 => TaskReport::Finished { message: None },
                    _ => TaskReport::Failed {
                        message: "x".to_owned(),
                        reason: None,
                    },
                };
                client.report_task(now, &format!("t{task}"), report);
            }
            Op::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms));
                client.handle_timeout(now);
            }
            Op::Signal => client.request_shutdown(now),
        }
        seen.check(drain(&mut client));
        // No busy loop: once the client has handled time `now`, its next deadline is later.
        client.handle_timeout(now);
        seen.check(drain(&mut client));
        if let Some(at) = client.poll_timeout() {
            assert!(at > now, "deadline {:?} in the past", now - at);
        }
        assert_eq!(client.has_exited(), seen.exited);
    }
    // Left alone, the client always reaches a deadline-free state or exits: time never stalls.
    for _ in 0..10_000 {
        match client.poll_timeout() {
            None => break,
            Some(at) => {
                now = at;
                client.handle_timeout(now);
                let actions: Vec<Action> = drain(&mut client);
                // Answer subscribes with failures so the outage logic runs to its end.
                for action in &actions {
                    if let Action::Subscribe { subscription, .. } = action {
                        client.handle_subscribe_failed(
                            now,
                            *subscription,
                            SubscribeFailure::Transient("refused".to_owned()),
                        );
                    }
                }
                seen.check(actions);
                seen.check(drain(&mut client));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_the_protocol_promises_with_checkpointing(
        ops in proptest::collection::vec(op(), 0..80)
    ) {
        run(ops, true);
    }

    #[test]
    fn random_histories_keep_the_protocol_promises_without_checkpointing(
        ops in proptest::collection::vec(op(), 0..80)
    ) {
        run(ops, false);
    }
}
