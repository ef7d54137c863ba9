//! Socket-free tests of the master state machine: time is a value, outputs are inspected.

use std::time::{Duration, Instant};

use mesoflow_proto::mesos::v1;
use v1::scheduler as sched;
use v1::scheduler::event::Type as EventType;

use super::*;
use crate::resources::Resources;

const S: fn(u64) -> Duration = Duration::from_secs;

struct Harness {
    master: Master,
    t0: Instant,
}

fn registration(id: &str, resources: &str) -> AgentRegistration {
    AgentRegistration {
        agent_id: id.into(),
        hostname: "agent".into(),
        ip: "127.0.0.1".into(),
        port: 5051,
        resources: Resources::parse(resources).unwrap(),
        attributes: Vec::new(),
        executors: Vec::new(),
        tasks: Vec::new(),
    }
}

impl Harness {
    fn new() -> Self {
        let mut config = MasterConfig::new("127.0.0.1", 5050);
        config.master_id = "M".into();
        let mut master = Master::new(config);
        let t0 = Instant::now();
        master.agent_registered(t0, registration("A", "cpus:2;mem:1024"));
        Self { master, t0 }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.master.poll_output()).collect()
    }

    fn events(&mut self, stream: &str) -> Vec<sched::Event> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Event { stream: s, event } if s == stream => Some(event),
                _ => None,
            })
            .collect()
    }

    fn subscribe(&mut self, now: Instant, info: v1::FrameworkInfo, stream: &str) -> String {
        let call = sched::Call {
            framework_id: info.id.clone(),
            r#type: Some(CallType::Subscribe as i32),
            subscribe: Some(sched::call::Subscribe {
                framework_info: info,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.master
            .subscribe(now, &call, None, false, stream.into())
            .unwrap();
        self.master.stream_of_framework_for_tests(stream)
    }

    fn call(&mut self, now: Instant, fw: &str, stream: &str, mut call: sched::Call) -> CallReply {
        call.framework_id = Some(v1::FrameworkId { value: fw.into() });
        self.master.call(now, &call, None, Some(stream)).unwrap()
    }
}

impl Master {
    fn stream_of_framework_for_tests(&self, stream: &str) -> String {
        self.framework_of_stream(stream).unwrap_or_default()
    }
}

fn info(failover: f64) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "u".into(),
        name: "n".into(),
        failover_timeout: Some(failover),
        ..Default::default()
    }
}

fn kinds(events: &[sched::Event]) -> Vec<EventType> {
    events
        .iter()
        .map(|e| EventType::try_from(e.r#type.unwrap()).unwrap())
        .collect()
}

#[test]
fn subscribed_then_heartbeat_then_one_heartbeat_per_interval() {
    let mut h = Harness::new();
    h.master.set_heartbeat_interval(S(15));
    let t0 = h.t0;
    h.subscribe(t0, info(0.0), "s1");
    h.master.tick(t0);
    assert_eq!(
        kinds(&h.events("s1")),
        [
            EventType::Subscribed,
            EventType::Heartbeat,
            EventType::Offers
        ]
    );
    h.master.tick(h.at(14.9));
    assert!(h.events("s1").is_empty());
    h.master.tick(h.at(15.0));
    assert_eq!(kinds(&h.events("s1")), [EventType::Heartbeat]);
    // The allocator last ran at 14.9 s: its next round is one interval later.
    assert_eq!(
        h.master.poll_timeout(),
        Some(h.at(15.9)),
        "next allocation round"
    );
}

#[test]
fn failover_timeout_removes_a_disconnected_framework_at_the_exact_time() {
    let mut h = Harness::new();
    let fw = h.subscribe(h.t0, info(10.0), "s1");
    h.drain();
    h.master.stream_closed(h.at(1.0), "s1");
    assert_eq!(h.master.framework_ids(), vec![fw.clone()]);
    h.master.tick(h.at(10.9));
    assert_eq!(h.master.framework_ids(), vec![fw.clone()]);
    h.master.tick(h.at(11.0));
    assert!(h.master.framework_ids().is_empty());
    // Coming back with the id is refused with an ERROR event on a stream that then closes.
    let mut back = info(10.0);
    back.id = Some(v1::FrameworkId { value: fw });
    h.subscribe(h.at(12.0), back, "s2");
    let out = h.drain();
    assert!(matches!(&out[0], Output::Event { event, .. }
        if event.error.as_ref().unwrap().message == "Framework has been removed"));
    assert!(matches!(&out[1], Output::CloseStream { stream } if stream == "s2"));
}

#[test]
fn decline_filter_expires_after_refuse_seconds() {
    let mut h = Harness::new();
    let fw = h.subscribe(h.t0, info(0.0), "s1");
    h.master.tick(h.t0);
    let offers = h.events("s1").pop().unwrap().offers.unwrap().offers;
    let decline = sched::Call {
        r#type: Some(CallType::Decline as i32),
        decline: Some(sched::call::Decline {
            offer_ids: vec![offers[0].id.clone()],
            filters: Some(v1::Filters {
                refuse_seconds: Some(3.0),
            }),
        }),
        ..Default::default()
    };
    assert_eq!(h.call(h.at(0.5), &fw, "s1", decline), CallReply::Accepted);
    for t in [1.0, 2.0, 3.0] {
        h.master.tick(h.at(t));
        assert!(h.events("s1").iter().all(|e| e.offers.is_none()), "at {t}s");
    }
    h.master.tick(h.at(4.0));
    assert!(h.events("s1").iter().any(|e| e.offers.is_some()));
}

#[test]
fn offer_timeout_rescinds_and_reoffers() {
    let mut h = Harness::new();
    h.master.config.offer_timeout = Some(S(2));
    h.subscribe(h.t0, info(0.0), "s1");
    h.master.tick(h.t0);
    let offer_id = h.events("s1").pop().unwrap().offers.unwrap().offers[0]
        .id
        .clone();
    h.master.tick(h.at(1.9));
    assert!(h.events("s1").is_empty());
    h.master.tick(h.at(2.0));
    let events = h.events("s1");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].rescind.as_ref().unwrap().offer_id, offer_id);
    // Recovered without a filter: offered again in the next allocation round (1.9 s + 1 s).
    h.master.tick(h.at(2.9));
    assert!(
        h.events("s1").iter().any(|e| e.offers.is_some()),
        "resources offered again"
    );
}

#[test]
fn status_updates_are_forwarded_and_terminal_ones_free_resources() {
    let mut h = Harness::new();
    let fw = h.subscribe(h.t0, info(0.0), "s1");
    h.master.tick(h.t0);
    let offer = h
        .events("s1")
        .pop()
        .unwrap()
        .offers
        .unwrap()
        .offers
        .remove(0);
    let scalar = |name: &str, value: f64| v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    };
    let task = v1::TaskInfo {
        name: "t".into(),
        task_id: v1::TaskId { value: "t".into() },
        agent_id: offer.agent_id.clone(),
        resources: vec![scalar("cpus", 2.0), scalar("mem", 1024.0)],
        executor: Some(v1::ExecutorInfo {
            executor_id: v1::ExecutorId { value: "e".into() },
            command: Some(v1::CommandInfo {
                value: Some("x".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let accept = sched::Call {
        r#type: Some(CallType::Accept as i32),
        accept: Some(sched::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::offer::Operation {
                r#type: Some(v1::offer::operation::Type::Launch as i32),
                launch: Some(v1::offer::operation::Launch {
                    task_infos: vec![task],
                }),
                ..Default::default()
            }],
            filters: None,
        }),
        ..Default::default()
    };
    h.call(h.at(0.1), &fw, "s1", accept);
    let out = h.drain();
    let run = out.iter().find_map(|o| match o {
        Output::ToAgent {
            agent,
            command: AgentCommand::RunTasks {
                executor, tasks, ..
            },
        } => Some((agent.clone(), executor.framework_id.clone(), tasks.len())),
        _ => None,
    });
    assert_eq!(
        run,
        Some(("A".into(), Some(v1::FrameworkId { value: fw.clone() }), 1)),
        "the master fills in ExecutorInfo.framework_id"
    );
    // Everything is in use: no offer.
    h.master.tick(h.at(2.0));
    assert!(h.events("s1").iter().all(|e| e.offers.is_none()));
    let uuid = crate::wire::new_uuid_bytes();
    let finished = v1::TaskStatus {
        task_id: v1::TaskId { value: "t".into() },
        state: v1::TaskState::TaskFinished as i32,
        uuid: Some(uuid.clone()),
        ..Default::default()
    };
    h.master
        .status_update_for(h.at(3.0), "A", &fw, finished.clone());
    assert_eq!(h.events("s1")[0].update.as_ref().unwrap().status, finished);
    h.master.tick(h.at(3.0));
    let offers = h.events("s1").pop().unwrap().offers.unwrap().offers;
    assert_eq!(
        crate::wire::from_proto(&offers[0].resources)
            .unwrap()
            .scalar("cpus"),
        2.0
    );
    // The acknowledgement is forwarded to the agent and the task forgotten.
    let ack = sched::Call {
        r#type: Some(CallType::Acknowledge as i32),
        acknowledge: Some(sched::call::Acknowledge {
            agent_id: v1::AgentId { value: "A".into() },
            task_id: v1::TaskId { value: "t".into() },
            uuid: uuid.clone(),
        }),
        ..Default::default()
    };
    h.call(h.at(3.1), &fw, "s1", ack);
    assert!(h.drain().iter().any(|o| matches!(o,
        Output::ToAgent { command: AgentCommand::Acknowledge { uuid: u, .. }, .. } if *u == uuid)));
    assert_eq!(h.master.task_state(&fw, "t"), None);
}

#[test]
fn a_new_subscription_fails_over_the_old_stream_without_rescinds() {
    let mut h = Harness::new();
    let fw = h.subscribe(h.t0, info(100.0), "s1");
    h.master.tick(h.t0);
    h.drain();
    let mut again = info(100.0);
    again.id = Some(v1::FrameworkId { value: fw.clone() });
    again.user = "changed".into();
    h.subscribe(h.at(1.0), again, "s2");
    let out = h.drain();
    assert!(matches!(&out[0], Output::Event { stream, event }
        if stream == "s1" && event.error.as_ref().unwrap().message == "Framework failed over"));
    assert!(matches!(&out[1], Output::CloseStream { stream } if stream == "s1"));
    assert!(
        out.iter()
            .all(|o| !matches!(o, Output::Event { event, .. } if event.rescind.is_some()))
    );
    assert_eq!(h.master.outstanding_offers(), 0);
    assert_eq!(
        h.master.frameworks[&fw].info.user, "u",
        "user cannot change"
    );
    // The old stream id is refused.
    let revive = sched::Call {
        framework_id: Some(v1::FrameworkId { value: fw }),
        r#type: Some(CallType::Revive as i32),
        ..Default::default()
    };
    let err = h
        .master
        .call(h.at(1.0), &revive, None, Some("s1"))
        .unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_REQUEST);
}
