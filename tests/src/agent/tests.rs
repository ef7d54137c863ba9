//! Socket-free tests of the agent state machine: time is a value, outputs are inspected.

use std::time::{Duration, Instant};

use mesoflow_proto::mesos::v1;

use super::*;

const PID: u32 = 4242;

fn agent() -> Agent {
    let mut config = AgentConfig::new(
        "A",
        "127.0.0.1",
        5051,
        PathBuf::from("/var/lib/mesos"),
        Resources::parse("cpus:2;mem:1024").unwrap(),
    );
    config.executor_shutdown_grace_period = Duration::from_secs(5);
    Agent::new(config)
}

fn framework(checkpoint: bool) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "u".into(),
        name: "n".into(),
        id: Some(v1::FrameworkId { value: "F".into() }),
        checkpoint: Some(checkpoint),
        ..Default::default()
    }
}

fn executor() -> v1::ExecutorInfo {
    v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: "E".into() },
        framework_id: Some(v1::FrameworkId { value: "F".into() }),
        command: Some(v1::CommandInfo {
            value: Some("./run".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn task(id: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        agent_id: v1::AgentId { value: "A".into() },
        executor: Some(executor()),
        ..Default::default()
    }
}

fn key() -> ExecutorKey {
    ("F".into(), "E".into())
}

fn drain(a: &mut Agent) -> Vec<AgentOutput> {
    std::iter::from_fn(|| a.poll_output()).collect()
}

fn subscribe_call() -> exec::Call {
    exec::Call {
        executor_id: v1::ExecutorId { value: "E".into() },
        framework_id: v1::FrameworkId { value: "F".into() },
        r#type: Some(CallType::Subscribe as i32),
        subscribe: Some(Default::default()),
        ..Default::default()
    }
}

fn updates(out: &[AgentOutput]) -> Vec<v1::TaskStatus> {
    out.iter()
        .filter_map(|o| match o {
            AgentOutput::ToMaster(ToMaster::StatusUpdate { status, .. }) => Some(status.clone()),
            _ => None,
        })
        .collect()
}

/// An agent with executor E started (pid 4242) and subscribed on connection 7.
fn running(t0: Instant) -> Agent {
    let mut a = agent();
    a.run_tasks(t0, framework(false), executor(), vec![task("T")], false);
    let out = drain(&mut a);
    assert!(matches!(&out[0], AgentOutput::Launch(r)
        if r.sandbox == std::path::Path::new(&format!("/var/lib/mesos/slaves/A/frameworks/F/executors/E/runs/{}", r.container_id))));
    a.container_started(t0, &key(), PID);
    a.executor_subscribe(t0, &subscribe_call(), 7).unwrap();
    let out = drain(&mut a);
    let kinds: Vec<i32> = out
        .iter()
        .filter_map(|o| match o {
            AgentOutput::ExecutorEvent {
                connection: 7,
                event,
            } => event.r#type,
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [EventType::Subscribed as i32, EventType::Launch as i32]
    );
    a
}

#[test]
fn shutdown_waits_the_grace_period_then_destroys_and_fails_live_tasks() {
    let t0 = Instant::now();
    let mut a = running(t0);
    a.shutdown_executor(t0 + Duration::from_secs(1), "F", "E");
    let out = drain(&mut a);
    assert!(
        matches!(&out[..], [AgentOutput::ExecutorEvent { connection: 7, event }]
        if event.r#type == Some(EventType::Shutdown as i32))
    );
    a.tick(t0 + Duration::from_millis(5999));
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(6)));
    a.tick(t0 + Duration::from_secs(6));
    assert_eq!(
        drain(&mut a),
        [AgentOutput::Destroy {
            key: key(),
            pid: PID
        }]
    );
    a.container_exited(t0 + Duration::from_secs(6), &key(), libc::SIGKILL);
    let out = drain(&mut a);
    let failed = updates(&out);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].state, TaskState::TaskFailed as i32);
    assert_eq!(failed[0].reason, Some(Reason::ExecutorTerminated as i32));
    assert_eq!(failed[0].source, Some(Source::Agent as i32));
    assert!(wire::is_valid_uuid(failed[0].uuid.as_ref().unwrap()));
    assert!(out.contains(&AgentOutput::CloseConnection { connection: 7 }));
    assert!(
        out.contains(&AgentOutput::ToMaster(ToMaster::ExecutorExited {
            framework_id: "F".into(),
            executor_id: "E".into(),
            status: Some(libc::SIGKILL),
        }))
    );
}

#[test]
fn an_executor_that_never_subscribes_is_destroyed_after_the_registration_timeout() {
    let t0 = Instant::now();
    let mut a = agent();
    a.run_tasks(t0, framework(false), executor(), vec![task("T")], false);
    a.container_started(t0, &key(), PID);
    drain(&mut a);
    a.tick(t0 + Duration::from_secs(59));
    assert!(drain(&mut a).is_empty());
    a.tick(t0 + Duration::from_secs(60));
    assert_eq!(
        drain(&mut a),
        [AgentOutput::Destroy {
            key: key(),
            pid: PID
        }]
    );
    a.container_exited(t0 + Duration::from_secs(60), &key(), libc::SIGKILL);
    let failed = updates(&drain(&mut a));
    assert_eq!(
        failed[0].reason,
        Some(Reason::ExecutorRegistrationTimeout as i32)
    );
}

#[test]
fn killing_an_undelivered_task_is_done_by_the_agent() {
    let t0 = Instant::now();
    let mut a = agent();
    a.run_tasks(t0, framework(false), executor(), vec![task("T")], false);
    a.container_started(t0, &key(), PID);
    drain(&mut a);
    a.kill_task(t0, "F", "T", None);
    let out = drain(&mut a);
    let killed = updates(&out);
    assert_eq!(killed[0].state, TaskState::TaskKilled as i32);
    assert_eq!(
        killed[0].reason,
        Some(Reason::TaskKilledDuringLaunch as i32)
    );
    // Nothing left for that executor: it is shut down (destroyed, as it never subscribed).
    assert!(out.contains(&AgentOutput::Destroy {
        key: key(),
        pid: PID
    }));
}

#[test]
fn replayed_updates_are_deduplicated_and_acks_release_the_next() {
    let t0 = Instant::now();
    let mut a = running(t0);
    let status = |state: TaskState| v1::TaskStatus {
        task_id: v1::TaskId { value: "T".into() },
        state: state as i32,
        source: Some(Source::Executor as i32),
        uuid: Some(wire::new_uuid_bytes()),
        ..Default::default()
    };
    let update_call = |s: v1::TaskStatus| exec::Call {
        r#type: Some(CallType::Update as i32),
        update: Some(exec::call::Update { status: s }),
        ..subscribe_call()
    };
    let running_status = status(TaskState::TaskRunning);
    a.executor_call(t0, &update_call(running_status.clone()))
        .unwrap();
    assert_eq!(updates(&drain(&mut a)).len(), 1);
    // The executor reconnects and replays the update it did not see acknowledged.
    let mut resub = subscribe_call();
    resub.subscribe.as_mut().unwrap().unacknowledged_updates = vec![exec::call::Update {
        status: running_status.clone(),
    }];
    a.executor_subscribe(t0, &resub, 8).unwrap();
    let out = drain(&mut a);
    assert!(updates(&out).is_empty(), "duplicate not forwarded again");
    assert!(out.contains(&AgentOutput::CloseConnection { connection: 7 }));
    let finished = status(TaskState::TaskFinished);
    a.executor_call(t0, &update_call(finished.clone())).unwrap();
    assert!(
        updates(&drain(&mut a)).is_empty(),
        "held back behind RUNNING"
    );
    a.acknowledge(t0, "F", "T", running_status.uuid.as_ref().unwrap());
    let next = updates(&drain(&mut a));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].uuid, finished.uuid);
}

#[test]
fn heartbeat_events_every_interval_on_the_executor_stream() {
    let t0 = Instant::now();
    let mut a = running(t0);
    let half_hour = Duration::from_secs(1800);
    a.tick(t0 + half_hour - Duration::from_secs(1));
    assert!(drain(&mut a).is_empty());
    a.tick(t0 + half_hour);
    assert!(
        matches!(&drain(&mut a)[..], [AgentOutput::ExecutorEvent { connection: 7, event }]
        if event.r#type == Some(EventType::Heartbeat as i32))
    );
}

#[test]
fn environment_without_checkpoint_and_executor_overrides() {
    let a = agent();
    let mut exec_info = executor();
    exec_info.command.as_mut().unwrap().environment = Some(v1::Environment {
        variables: vec![v1::environment::Variable {
            name: "PATH".into(),
            value: Some("/opt/bin".into()),
            ..Default::default()
        }],
    });
    exec_info.shutdown_grace_period = Some(v1::DurationInfo {
        nanoseconds: 90_000_000_000,
    });
    let env = a.executor_environment(&framework(false), &exec_info, std::path::Path::new("/sb"));
    assert_eq!(env["PATH"], "/opt/bin");
    assert_eq!(env["MESOS_CHECKPOINT"], "0");
    assert_eq!(env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], "90secs");
    assert!(!env.contains_key("MESOS_RECOVERY_TIMEOUT"));
    assert!(!env.contains_key("MESOS_SUBSCRIPTION_BACKOFF_MAX"));
    assert_eq!(env.len(), 12);
}

#[test]
fn update_validation_is_strict() {
    let t0 = Instant::now();
    let mut a = running(t0);
    let mut call = exec::Call {
        r#type: Some(CallType::Update as i32),
        update: Some(exec::call::Update {
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: "T".into() },
                state: TaskState::TaskRunning as i32,
                source: Some(Source::Executor as i32),
                uuid: None,
                ..Default::default()
            },
        }),
        ..subscribe_call()
    };
    assert_eq!(
        a.executor_call(t0, &call).unwrap_err().status,
        StatusCode::BAD_REQUEST
    );
    // 16 bytes but no RFC 4122 version: refused.
    call.update.as_mut().unwrap().status.uuid = Some(Bytes::from_static(&[0u8; 16]));
    assert_eq!(
        a.executor_call(t0, &call).unwrap_err().status,
        StatusCode::BAD_REQUEST
    );
    call.update.as_mut().unwrap().status.uuid = Some(wire::new_uuid_bytes());
    call.executor_id.value = String::new();
    assert_eq!(
        a.executor_call(t0, &call).unwrap_err().body,
        "Expecting 'executor_id' to be present"
    );
    // HEARTBEAT skips validation entirely.
    let heartbeat = exec::Call {
        r#type: Some(CallType::Heartbeat as i32),
        ..Default::default()
    };
    assert!(a.executor_call(t0, &heartbeat).is_ok());
}
