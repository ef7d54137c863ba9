//! The machine's rules, each fed events and a fake clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_proto::mesos::v1::{
    AgentId, Attribute, ExecutorId, FrameworkId, Offer, OfferId, Resource, TaskId, TaskInfo,
    TaskState, TaskStatus, offer::operation, resource, task_status, value,
};

use super::*;
use crate::resource_manager::mesos::{
    ExecutorArtifact, FrameworkSettings, MesosDriverConfig, TaskSettings, WorkerPlacement,
};

const ROLE: &str = "mesoflow";

struct EchoBuilder;

impl TaskSpecBuilder for EchoBuilder {
    fn task_data(
        &self,
        worker: &WorkerId,
        spec: &WorkerSpec,
        placement: &WorkerPlacement,
    ) -> Result<Bytes, String> {
        if worker.0.starts_with("bad") {
            return Err("no certificate".into());
        }
        Ok(Bytes::from(format!(
            "{worker}/{}@{}:{}",
            spec.slots, placement.hostname, placement.data_port
        )))
    }
}

fn config() -> MesosDriverConfig {
    MesosDriverConfig {
        master: "127.0.0.1:5050".into(),
        framework: FrameworkSettings {
            name: "mesoflow".into(),
            role: ROLE.into(),
            principal: None,
            secret: None,
            user: "mesoflow".into(),
            failover_timeout: Duration::from_secs(3600),
        },
        tasks: TaskSettings {
            cpus: 1.0,
            mem_mb: 1024,
            disk_mb: 100,
            uris: vec![],
            labels: vec![("team".into(), "streams".into())],
            bootstrap_cmd: None,
            hostname: None,
            launch_timeout: Duration::from_secs(60),
        },
        constraints: vec![],
        refuse: Duration::from_secs(5),
        maximum_failed_tasks: None,
        executor: ExecutorArtifact {
            uri: "http://artifacts/bin/mesoflow-executor".into(),
            cache: true,
        },
    }
}

fn spec() -> WorkerSpec {
    WorkerSpec {
        slots: 2,
        cpus: 2.0,
        memory_mb: 2048,
    }
}

fn alloc() -> Option<resource::AllocationInfo> {
    Some(resource::AllocationInfo {
        role: Some(ROLE.into()),
    })
}

fn scalar(name: &str, v: f64) -> Resource {
    Resource {
        name: name.into(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: v }),
        allocation_info: alloc(),
        ..Default::default()
    }
}

fn ports(begin: u64, end: u64) -> Resource {
    Resource {
        name: "ports".into(),
        r#type: value::Type::Ranges as i32,
        ranges: Some(value::Ranges {
            range: vec![value::Range { begin, end }],
        }),
        allocation_info: alloc(),
        ..Default::default()
    }
}

fn offer_with(id: &str, agent: &str, resources: Vec<Resource>) -> Offer {
    Offer {
        id: OfferId { value: id.into() },
        framework_id: FrameworkId { value: "fw".into() },
        agent_id: AgentId {
            value: agent.into(),
        },
        hostname: format!("{agent}.example"),
        resources,
        allocation_info: alloc(),
        ..Default::default()
    }
}

fn offer(id: &str, agent: &str, cpus: f64, mem: f64) -> Offer {
    offer_with(
        id,
        agent,
        vec![
            scalar("cpus", cpus),
            scalar("mem", mem),
            scalar("disk", 10_000.0),
            ports(31000, 31010),
        ],
    )
}

fn text_attr(name: &str, v: &str) -> Attribute {
    Attribute {
        name: name.into(),
        r#type: value::Type::Text as i32,
        text: Some(value::Text { value: v.into() }),
        ..Default::default()
    }
}

fn status(id: &str, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: TaskId { value: id.into() },
        state: state as i32,
        agent_id: Some(AgentId { value: "a1".into() }),
        ..Default::default()
    }
}

fn w(id: &str) -> WorkerId {
    WorkerId(id.into())
}

struct Rig {
    m: MesosResourceManager,
    now: Instant,
}

impl Rig {
    fn new(config: MesosDriverConfig) -> Self {
        let now = Instant::now();
        let mut m = MesosResourceManager::new(&config, Box::new(EchoBuilder));
        m.handle_subscribed(now, FrameworkId { value: "fw".into() });
        let mut rig = Self { m, now };
        assert_eq!(rig.drain(), vec![Action::Suppress]);
        rig
    }

    fn default() -> Self {
        Self::new(config())
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }

    fn request(&mut self, id: &str) {
        self.m.request_worker(self.now, &w(id), &spec()).unwrap();
    }

    fn offers(&mut self, offers: Vec<Offer>) -> Vec<Action> {
        self.m.handle_offers(self.now, offers);
        self.drain()
    }

    fn update(&mut self, id: &str, state: TaskState) -> Vec<Action> {
        self.m.handle_update(self.now, &status(id, state));
        self.drain()
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.m.handle_timeout(self.now);
        self.drain()
    }

    /// Requests `ids` and launches them all on one big offer of agent `a1`.
    fn launch(&mut self, ids: &[&str]) {
        for id in ids {
            self.request(id);
        }
        self.drain();
        let actions = self.offers(vec![offer("o-launch", "a1", 16.0, 65536.0)]);
        assert_eq!(launched_tasks(&actions).len(), ids.len());
    }

    fn run(&mut self, ids: &[&str]) {
        self.launch(ids);
        for id in ids {
            assert_eq!(
                self.update(id, TaskState::TaskRunning),
                vec![Action::Report(WorkerEvent::Started {
                    id: w(id),
                    pid: None
                })]
            );
        }
    }
}

fn launched_tasks(actions: &[Action]) -> Vec<TaskInfo> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Accept { operations, .. } => Some(operations),
            _ => None,
        })
        .flatten()
        .flat_map(|op| {
            assert_eq!(op.r#type, Some(operation::Type::Launch as i32));
            op.launch.clone().unwrap().task_infos
        })
        .collect()
}

fn exits(actions: &[Action]) -> Vec<(WorkerId, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Report(WorkerEvent::Exited { id, reason }) => {
                Some((id.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn kills(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Kill { task_id, .. } => Some(task_id.value.clone()),
            _ => None,
        })
        .collect()
}

fn amount(resources: &[Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .map(|r| r.scalar.as_ref().unwrap().value)
        .sum()
}

fn port_of(resources: &[Resource]) -> Vec<(u64, u64)> {
    resources
        .iter()
        .filter(|r| r.name == "ports")
        .flat_map(|r| {
            r.ranges
                .as_ref()
                .unwrap()
                .range
                .iter()
                .map(|x| (x.begin, x.end))
        })
        .collect()
}

#[test]
fn an_offer_that_fits_is_accepted_with_exactly_the_configured_resources() {
    let mut rig = Rig::default();
    rig.request("w1");
    assert_eq!(rig.drain(), vec![Action::Revive]);
    let actions = rig.offers(vec![offer("o1", "a1", 4.0, 4096.0)]);
    assert_eq!(actions.len(), 2, "{actions:?}");
    let Action::Accept {
        offer_ids,
        refuse_seconds,
        workers,
        ..
    } = &actions[0]
    else {
        panic!("expected an accept: {actions:?}");
    };
    assert_eq!(offer_ids, &vec![OfferId { value: "o1".into() }]);
    assert_eq!(*refuse_seconds, 5.0);
    assert_eq!(workers, &vec![w("w1")]);
    assert_eq!(actions[1], Action::Suppress, "no demand left");

    let tasks = launched_tasks(&actions);
    let task = &tasks[0];
    assert_eq!(task.task_id.value, "w1");
    assert_eq!(task.agent_id.value, "a1");
    assert_eq!(amount(&task.resources, "cpus"), 1.0);
    assert_eq!(amount(&task.resources, "mem"), 1024.0);
    assert_eq!(amount(&task.resources, "disk"), 100.0);
    assert_eq!(port_of(&task.resources), vec![(31000, 31000)]);
    assert_eq!(task.resources.len(), 4);
    for r in &task.resources {
        assert_eq!(r.allocation_info, alloc(), "{r:?}");
    }
    assert_eq!(task.data.as_deref(), Some(&b"w1/2@a1.example:31000"[..]));
    let labels = task.labels.as_ref().unwrap();
    assert_eq!(labels.labels[0].key, "team");

    let executor = task.executor.as_ref().unwrap();
    assert_eq!(executor.executor_id.value, "w1");
    assert_eq!(executor.r#type, Some(executor_info_custom()));
    assert_eq!(executor.framework_id.as_ref().unwrap().value, "fw");
    assert_eq!(amount(&executor.resources, "cpus"), EXECUTOR_CPUS);
    assert_eq!(amount(&executor.resources, "mem"), EXECUTOR_MEM_MB as f64);
    let command = executor.command.as_ref().unwrap();
    assert_eq!(command.shell, Some(true));
    assert_eq!(command.value.as_deref(), Some("./mesoflow-executor"));
    assert_eq!(
        command.uris[0].value,
        "http://artifacts/bin/mesoflow-executor"
    );
    assert_eq!(command.uris[0].executable, Some(true));
    assert_eq!(command.uris[0].cache, Some(true));

    let m = rig.m.metrics();
    assert_eq!(m.workers_launched, 1);
    assert_eq!(m.offers_received, 1);
    assert_eq!(m.offers_declined, 0);
    assert_eq!(m.pending_demand, 0);
}

fn executor_info_custom() -> i32 {
    mesoflow_proto::mesos::v1::executor_info::Type::Custom as i32
}

#[test]
fn a_too_small_offer_is_declined_with_the_refuse_duration() {
    let mut rig = Rig::default();
    rig.request("w1");
    rig.drain();
    // 1 cpu is not enough: the executor's share comes on top.
    let actions = rig.offers(vec![offer("o1", "a1", 1.0, 4096.0)]);
    assert_eq!(
        actions,
        vec![Action::Decline {
            offer_ids: vec![OfferId { value: "o1".into() }],
            refuse_seconds: 5.0
        }]
    );
    let no_ports = offer_with(
        "o2",
        "a2",
        vec![
            scalar("cpus", 8.0),
            scalar("mem", 8192.0),
            scalar("disk", 1000.0),
        ],
    );
    assert!(matches!(
        &rig.offers(vec![no_ports])[..],
        [Action::Decline { .. }]
    ));
    assert_eq!(rig.m.metrics().offers_declined, 2);
    assert_eq!(rig.m.metrics().pending_demand, 1);
}

#[test]
fn an_offer_violating_a_constraint_is_declined() {
    let mut cfg = config();
    cfg.constraints = vec![
        ("zone".into(), "a".into()),
        ("rack_level".into(), "2".into()),
    ];
    let mut rig = Rig::new(cfg);
    rig.request("w1");
    rig.drain();
    let mut wrong_zone = offer("o1", "a1", 4.0, 4096.0);
    wrong_zone.attributes = vec![
        text_attr("zone", "b"),
        Attribute {
            name: "rack_level".into(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar { value: 2.0 }),
            ..Default::default()
        },
    ];
    let mut missing = offer("o2", "a2", 4.0, 4096.0);
    missing.attributes = vec![text_attr("zone", "a")];
    let mut good = offer("o3", "a3", 4.0, 4096.0);
    good.attributes = vec![text_attr("zone", "a"), wrong_zone.attributes[1].clone()];
    let actions = rig.offers(vec![wrong_zone, missing, good]);
    let tasks = launched_tasks(&actions);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].agent_id.value, "a3");
    assert!(actions.contains(&Action::Decline {
        offer_ids: vec![
            OfferId { value: "o1".into() },
            OfferId { value: "o2".into() }
        ],
        refuse_seconds: 5.0
    }));
}

#[test]
fn several_workers_share_one_big_offer_each_with_its_own_port() {
    let mut rig = Rig::default();
    for id in ["w1", "w2", "w3"] {
        rig.request(id);
    }
    assert_eq!(
        rig.drain(),
        vec![Action::Revive],
        "one revive for three requests"
    );
    // Room for two (2 x (1 + 0.01) cpus), not three.
    let actions = rig.offers(vec![offer("o1", "a1", 2.5, 8192.0)]);
    let tasks = launched_tasks(&actions);
    assert_eq!(tasks.len(), 2);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Accept { .. }))
            .count(),
        1
    );
    assert_eq!(port_of(&tasks[0].resources), vec![(31000, 31000)]);
    assert_eq!(port_of(&tasks[1].resources), vec![(31001, 31001)]);
    assert!(!actions.contains(&Action::Suppress), "w3 still waits");
    assert_eq!(rig.m.metrics().pending_demand, 1);
    // The next offer takes the last one, and then offers are suppressed.
    let actions = rig.offers(vec![
        offer("o2", "a2", 2.5, 8192.0),
        offer("o3", "a3", 8.0, 8192.0),
    ]);
    assert_eq!(launched_tasks(&actions).len(), 1);
    assert!(actions.contains(&Action::Decline {
        offer_ids: vec![OfferId { value: "o3".into() }],
        refuse_seconds: 5.0
    }));
    assert_eq!(actions.last(), Some(&Action::Suppress));
}

#[test]
fn reserved_resources_are_taken_first_and_keep_their_reservation() {
    let mut rig = Rig::default();
    rig.request("w1");
    rig.drain();
    let reservation = resource::ReservationInfo {
        r#type: Some(resource::reservation_info::Type::Static as i32),
        role: Some(ROLE.into()),
        ..Default::default()
    };
    let mut reserved_cpus = scalar("cpus", 0.5);
    reserved_cpus.reservations = vec![reservation.clone()];
    let mut reserved_ports = ports(40000, 40000);
    reserved_ports.reservations = vec![reservation.clone()];
    let o = offer_with(
        "o1",
        "a1",
        vec![
            scalar("cpus", 4.0),
            reserved_cpus,
            scalar("mem", 4096.0),
            scalar("disk", 1000.0),
            ports(31000, 31010),
            reserved_ports,
        ],
    );
    let tasks = launched_tasks(&rig.offers(vec![o]));
    let cpus: Vec<_> = tasks[0]
        .resources
        .iter()
        .filter(|r| r.name == "cpus")
        .collect();
    assert_eq!(cpus.len(), 2);
    assert_eq!(cpus[0].reservations, vec![reservation.clone()]);
    assert_eq!(cpus[0].scalar.as_ref().unwrap().value, 0.5);
    assert!(cpus[1].reservations.is_empty());
    assert_eq!(cpus[1].scalar.as_ref().unwrap().value, 0.5);
    assert_eq!(port_of(&tasks[0].resources), vec![(40000, 40000)]);
    // The executor's share comes from what is left, unreserved.
    let executor = tasks[0].executor.as_ref().unwrap();
    assert!(executor.resources.iter().all(|r| r.reservations.is_empty()));
}

#[test]
fn offers_of_another_role_and_offers_without_demand_are_declined() {
    let mut rig = Rig::default();
    assert!(matches!(
        &rig.offers(vec![offer("o1", "a1", 4.0, 4096.0)])[..],
        [Action::Decline { .. }]
    ));
    rig.request("w1");
    rig.drain();
    let mut other = offer("o2", "a1", 4.0, 4096.0);
    other.allocation_info = Some(resource::AllocationInfo {
        role: Some("other".into()),
    });
    assert!(matches!(
        &rig.offers(vec![other])[..],
        [Action::Decline { .. }]
    ));
}

#[test]
fn suppress_and_revive_once_per_transition() {
    let mut rig = Rig::default();
    rig.request("w1");
    rig.request("w2");
    assert_eq!(rig.drain(), vec![Action::Revive]);
    rig.m.release_worker(rig.now, &w("w1"));
    assert_eq!(exits(&rig.drain()).len(), 1);
    rig.m.release_worker(rig.now, &w("w2"));
    let actions = rig.drain();
    assert_eq!(exits(&actions).len(), 1);
    assert_eq!(actions.last(), Some(&Action::Suppress));
    // Offers in flight when we suppressed: declined, and no second suppress.
    let actions = rig.offers(vec![offer("o1", "a1", 4.0, 4096.0)]);
    assert!(matches!(&actions[..], [Action::Decline { .. }]));
    rig.request("w3");
    assert_eq!(rig.drain(), vec![Action::Revive]);
    rig.request("w4");
    assert_eq!(rig.drain(), vec![]);
}

#[test]
fn a_new_subscription_states_the_offer_interest_again() {
    let mut rig = Rig::default();
    rig.request("w1");
    rig.drain();
    rig.m.handle_disconnected();
    rig.request("w2");
    assert_eq!(rig.drain(), vec![], "nothing is sent while disconnected");
    rig.m
        .handle_subscribed(rig.now, FrameworkId { value: "fw".into() });
    assert_eq!(rig.drain(), vec![Action::Revive]);
}

#[test]
fn a_rescind_needs_nothing_since_offers_are_answered_at_once() {
    let mut rig = Rig::default();
    rig.request("w1");
    rig.drain();
    rig.m.handle_rescinded(&OfferId { value: "o1".into() });
    assert_eq!(rig.drain(), vec![]);
    assert_eq!(
        launched_tasks(&rig.offers(vec![offer("o2", "a1", 4.0, 4096.0)])).len(),
        1
    );
}

#[test]
fn a_launch_timeout_kills_the_task_and_reports_it_once() {
    let mut rig = Rig::default();
    rig.launch(&["w1"]);
    assert!(rig.m.poll_timeout().is_some());
    assert_eq!(rig.update("w1", TaskState::TaskStaging), vec![]);
    assert_eq!(rig.advance(Duration::from_secs(59)), vec![]);
    let actions = rig.advance(Duration::from_secs(1));
    assert_eq!(kills(&actions), vec!["w1"]);
    let exited = exits(&actions);
    assert_eq!(exited.len(), 1);
    assert!(exited[0].1.contains("launch timeout"), "{}", exited[0].1);
    assert_eq!(rig.m.metrics().tasks_failed, 1);
    // A late RUNNING does not resurrect it; the kill's end is not reported again.
    assert_eq!(rig.update("w1", TaskState::TaskRunning), vec![]);
    assert_eq!(rig.update("w1", TaskState::TaskKilled), vec![]);
    assert_eq!(rig.m.metrics().tasks_failed, 1);
    assert_eq!(rig.m.live_tasks(), 0);
    assert_eq!(rig.m.poll_timeout(), None);
}

#[test]
fn running_cancels_the_launch_timeout() {
    let mut rig = Rig::default();
    rig.run(&["w1"]);
    assert_eq!(rig.m.poll_timeout(), None);
    assert_eq!(rig.advance(Duration::from_secs(3600)), vec![]);
    assert_eq!(
        rig.update("w1", TaskState::TaskRunning),
        vec![],
        "started once"
    );
    assert_eq!(rig.m.metrics().running_workers, 1);
}

#[test]
fn every_end_state_reports_exited_exactly_once() {
    let cases = [
        (TaskState::TaskFinished, false),
        (TaskState::TaskFailed, true),
        (TaskState::TaskKilled, true),
        (TaskState::TaskLost, true),
        (TaskState::TaskError, true),
        (TaskState::TaskDropped, true),
        (TaskState::TaskGone, true),
        (TaskState::TaskGoneByOperator, true),
        (TaskState::TaskUnreachable, true),
        (TaskState::TaskUnknown, true),
    ];
    for (state, failure) in cases {
        let mut rig = Rig::default();
        rig.run(&["w1"]);
        assert_eq!(rig.update("w1", TaskState::TaskKilling), vec![]);
        let actions = rig.update("w1", state);
        let exited = exits(&actions);
        assert_eq!(exited.len(), 1, "{state:?}");
        assert!(exited[0].1.starts_with(state.as_str_name()), "{exited:?}");
        assert_eq!(
            rig.m.metrics().tasks_failed,
            u64::from(failure),
            "{state:?}"
        );
        assert_eq!(rig.m.metrics().running_workers, 0);
        let again = rig.update("w1", state);
        assert_eq!(exits(&again), vec![], "{state:?} reported twice");
        if matches!(state, TaskState::TaskUnreachable | TaskState::TaskUnknown) {
            assert_eq!(
                kills(&actions),
                vec!["w1"],
                "an unreachable task is killed if it returns"
            );
        }
    }
}

#[test]
fn the_exit_reason_names_state_reason_and_message() {
    let mut rig = Rig::default();
    rig.run(&["w1"]);
    let mut s = status("w1", TaskState::TaskFailed);
    s.reason = Some(task_status::Reason::ExecutorTerminated as i32);
    s.message = Some("boom".into());
    rig.m.handle_update(rig.now, &s);
    assert_eq!(
        exits(&rig.drain()),
        vec![(
            w("w1"),
            "TASK_FAILED (REASON_EXECUTOR_TERMINATED): boom".into()
        )]
    );
}

#[test]
fn an_executor_failure_ends_its_worker_once() {
    let mut rig = Rig::default();
    rig.run(&["w1", "w2"]);
    rig.m.handle_executor_failure(
        &AgentId { value: "a1".into() },
        &ExecutorId { value: "w1".into() },
        Some(ExitStatus::Signaled(9)),
    );
    let exited = exits(&rig.drain());
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0].0, w("w1"));
    assert!(exited[0].1.contains("signal 9"), "{}", exited[0].1);
    // The agent's terminal update follows: already reported.
    assert_eq!(rig.update("w1", TaskState::TaskFailed), vec![]);
    assert_eq!(rig.m.metrics().tasks_failed, 1);
    assert_eq!(rig.m.metrics().running_workers, 1);
}

#[test]
fn a_lost_agent_ends_every_worker_on_it() {
    let mut rig = Rig::default();
    rig.run(&["w1", "w2"]);
    rig.request("w3");
    rig.drain();
    rig.offers(vec![offer("o9", "a2", 4.0, 4096.0)]);
    rig.m.handle_agent_lost(&AgentId { value: "a1".into() });
    let mut exited: Vec<_> = exits(&rig.drain()).into_iter().map(|(id, _)| id).collect();
    exited.sort();
    assert_eq!(exited, vec![w("w1"), w("w2")]);
    assert_eq!(rig.m.metrics().tasks_failed, 2);
    assert_eq!(rig.update("w1", TaskState::TaskLost), vec![]);
    assert_eq!(rig.m.live_tasks(), 1, "w3 on a2 lives on");
}

#[test]
fn too_many_failed_tasks_refuse_new_workers() {
    let mut cfg = config();
    cfg.maximum_failed_tasks = Some(1);
    let mut rig = Rig::new(cfg);
    rig.run(&["w1", "w2"]);
    rig.update("w1", TaskState::TaskFailed);
    rig.request("w3"); // one failure is within the budget
    rig.update("w2", TaskState::TaskError);
    let err = rig
        .m
        .request_worker(rig.now, &w("w4"), &spec())
        .unwrap_err();
    assert!(matches!(err, ResourceError::Unavailable(_)));
    assert!(
        err.to_string().contains("maximum-failed-tasks (1)"),
        "{err}"
    );
    assert_eq!(rig.m.metrics().tasks_failed, 2);
}

#[test]
fn duplicate_requests_are_refused() {
    let mut rig = Rig::default();
    rig.request("w1");
    assert!(matches!(
        rig.m.request_worker(rig.now, &w("w1"), &spec()),
        Err(ResourceError::DuplicateWorker(_))
    ));
}

#[test]
fn a_worker_released_before_launch_is_just_dropped() {
    let mut rig = Rig::default();
    rig.request("w1");
    rig.drain();
    rig.m.release_worker(rig.now, &w("w1"));
    let actions = rig.drain();
    assert_eq!(exits(&actions).len(), 1);
    assert_eq!(kills(&actions), Vec::<String>::new());
    assert_eq!(rig.m.metrics().pending_demand, 0);
    assert!(matches!(
        &rig.offers(vec![offer("o1", "a1", 4.0, 4096.0)])[..],
        [Action::Decline { .. }]
    ));
    assert_eq!(rig.m.metrics().tasks_failed, 0);
}

#[test]
fn a_released_worker_is_killed_and_reported_when_it_ends() {
    let mut rig = Rig::default();
    rig.run(&["w1"]);
    rig.m.release_worker(rig.now, &w("w1"));
    let actions = rig.drain();
    assert_eq!(
        actions,
        vec![Action::Kill {
            task_id: TaskId { value: "w1".into() },
            agent_id: Some(AgentId { value: "a1".into() })
        }]
    );
    assert_eq!(exits(&rig.update("w1", TaskState::TaskKilling)), vec![]);
    // The KILL is repeated while the task lingers.
    assert_eq!(kills(&rig.advance(KILL_RETRY_INTERVAL)), vec!["w1"]);
    let exited = exits(&rig.update("w1", TaskState::TaskKilled));
    assert_eq!(exited.len(), 1);
    assert_eq!(rig.m.metrics().tasks_failed, 0, "a release is no failure");
}

#[test]
fn a_task_nobody_knows_is_killed() {
    let mut rig = Rig::default();
    let actions = rig.update("stray", TaskState::TaskRunning);
    assert_eq!(kills(&actions), vec!["stray"]);
    assert_eq!(rig.update("stray", TaskState::TaskKilled), vec![]);
}

#[test]
fn a_launch_the_client_refused_goes_back_to_the_demand() {
    let mut rig = Rig::default();
    rig.launch(&["w1"]);
    rig.m.launch_not_sent(rig.now, &[w("w1")]);
    assert_eq!(rig.drain(), vec![Action::Revive]);
    assert_eq!(rig.m.metrics().pending_demand, 1);
    assert_eq!(rig.m.metrics().workers_launched, 0);
    assert_eq!(
        launched_tasks(&rig.offers(vec![offer("o2", "a1", 4.0, 4096.0)])).len(),
        1
    );
}

#[test]
fn a_failing_task_data_builder_fails_only_that_worker() {
    let mut rig = Rig::default();
    rig.request("bad1");
    rig.request("w1");
    rig.drain();
    let actions = rig.offers(vec![offer("o1", "a1", 4.0, 4096.0)]);
    assert_eq!(launched_tasks(&actions).len(), 1);
    let exited = exits(&actions);
    assert_eq!(exited[0].0, w("bad1"));
    assert!(exited[0].1.contains("no certificate"));
}

#[test]
fn the_hostname_override_and_slot_based_cpus() {
    let mut cfg = config();
    cfg.tasks.hostname = Some("_TASK_.tm.internal".into());
    cfg.tasks.cpus = 0.0;
    cfg.tasks.mem_mb = 0;
    cfg.tasks.disk_mb = 0;
    let mut rig = Rig::new(cfg);
    rig.request("w1");
    rig.drain();
    let tasks = launched_tasks(&rig.offers(vec![offer("o1", "a1", 4.0, 4096.0)]));
    assert_eq!(amount(&tasks[0].resources, "cpus"), 2.0, "one per slot");
    assert_eq!(
        amount(&tasks[0].resources, "mem"),
        2048.0,
        "the spec's memory"
    );
    assert_eq!(amount(&tasks[0].resources, "disk"), 0.0);
    assert_eq!(
        tasks[0].data.as_deref(),
        Some(&b"w1/2@w1.tm.internal:31000"[..])
    );
}

#[test]
fn shutdown_kills_everything_then_tears_down_after_the_last_end() {
    let mut rig = Rig::default();
    rig.run(&["w1", "w2"]);
    rig.request("w3");
    rig.drain();
    rig.m.shutdown(rig.now, Duration::from_secs(30));
    let actions = rig.drain();
    let mut killed = kills(&actions);
    killed.sort();
    assert_eq!(killed, vec!["w1", "w2"]);
    assert_eq!(
        exits(&actions),
        vec![(
            w("w3"),
            "the driver shut down before it was launched".into()
        )]
    );
    assert!(actions.contains(&Action::Suppress));
    assert!(!actions.contains(&Action::Teardown));
    assert!(rig.m.request_worker(rig.now, &w("w9"), &spec()).is_err());
    let actions = rig.update("w1", TaskState::TaskKilled);
    assert_eq!(exits(&actions).len(), 1);
    assert!(!actions.contains(&Action::Teardown));
    let actions = rig.update("w2", TaskState::TaskKilled);
    assert_eq!(exits(&actions).len(), 1);
    assert_eq!(actions.last(), Some(&Action::Teardown));
    assert!(rig.m.is_torn_down());
    assert_eq!(
        rig.advance(Duration::from_secs(60)),
        vec![],
        "teardown once"
    );
}

#[test]
fn shutdown_tears_down_after_the_grace_even_without_updates() {
    let mut rig = Rig::default();
    rig.run(&["w1"]);
    rig.m.shutdown(rig.now, Duration::from_secs(10));
    rig.drain();
    assert_eq!(
        rig.m.poll_timeout(),
        Some(rig.now + Duration::from_secs(10))
    );
    assert_eq!(rig.advance(Duration::from_secs(10)), vec![Action::Teardown]);
}

#[test]
fn shutdown_with_nothing_running_tears_down_at_once() {
    let mut rig = Rig::default();
    rig.m.shutdown(rig.now, Duration::from_secs(10));
    assert_eq!(rig.drain(), vec![Action::Teardown]);
}

#[test]
fn an_update_with_a_state_this_build_does_not_know_is_ignored() {
    let mut rig = Rig::default();
    rig.run(&["w1"]);
    let mut s = status("w1", TaskState::TaskRunning);
    s.state = 99;
    rig.m.handle_update(rig.now, &s);
    assert_eq!(rig.drain(), vec![]);
    assert_eq!(rig.m.metrics().running_workers, 1);
}
