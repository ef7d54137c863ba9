//! The test agent over raw HTTP: the fetcher and the executor environment as seen from inside a
//! real process, the executor API with the test playing the executor, status update ordering
//! and retries, kills, shutdown with grace, executor death and agent removal.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use mesoflow_proto::mesos::v1;
use mesoflow_tests::cluster::{AgentSpec, Cluster, ClusterConfig};
use mesoflow_tests::master::AgentRemoval;
use prost::Message as _;
use support::*;
use v1::TaskState;
use v1::executor as exec;
use v1::framework_info::capability::Type as Cap;
use v1::scheduler as sched;
use v1::task_status::{Reason, Source};

const SEC: Duration = Duration::from_secs(1);

fn fast_config(agents: usize) -> ClusterConfig {
    ClusterConfig {
        agents: (0..agents)
            .map(|_| AgentSpec::new("cpus:2;mem:1024;disk:500;ports:[31000-31004]"))
            .collect(),
        heartbeat_interval: Duration::from_secs(1),
        allocation_interval: Duration::from_millis(50),
        status_update_retry_min: Duration::from_millis(300),
        executor_shutdown_grace_period: Duration::from_millis(300),
        ..ClusterConfig::default()
    }
}

/// Serves `files` (path -> bytes) over HTTP on 127.0.0.1; anything else is a 404.
async fn file_server(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let mut router = Router::new();
    for (path, body) in files {
        let body = Bytes::from(body);
        router = router.route(
            path,
            axum::routing::get(move || async move { body.clone() }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in entries {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let out = dir.path().join("out.tar.gz");
    let mut cmd = std::process::Command::new("tar");
    cmd.arg("-C").arg(dir.path()).arg("-czf").arg(&out);
    for (path, _) in entries {
        cmd.arg(path);
    }
    assert!(cmd.status().unwrap().success());
    std::fs::read(out).unwrap()
}

fn uri(value: String) -> v1::command_info::Uri {
    v1::command_info::Uri {
        value,
        ..Default::default()
    }
}

/// Collects scheduler events until `done` says enough, or panics after `timeout`.
async fn collect_until(
    fw: &mut RawScheduler,
    timeout: Duration,
    mut done: impl FnMut(&[sched::Event]) -> bool,
) -> Vec<sched::Event> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match fw.events.next_non_heartbeat(left).await {
            Some(e) => seen.push(e),
            None => panic!("timed out; events so far: {seen:?}"),
        }
    }
    seen
}

fn sandbox_of(cluster: &Cluster, agent: &str, fw: &str, executor: &str) -> PathBuf {
    let runs = cluster
        .work_dir()
        .join("slaves")
        .join(agent)
        .join("frameworks")
        .join(fw)
        .join("executors")
        .join(executor)
        .join("runs");
    let entries: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("no sandbox under {}: {e}", runs.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one container run: {entries:?}");
    entries[0].clone()
}

#[tokio::test]
async fn executor_gets_exactly_the_agent_environment_and_the_fetched_files() {
    let archive = tar_gz(&[("data/hello.txt", b"hello from the archive\n")]);
    let script = b"#!/bin/sh\nenv > env.txt\nexit 3\n".to_vec();
    let server = file_server(vec![("/pkg.tar.gz", archive), ("/tool.sh", script)]).await;
    let cluster = Cluster::start(fast_config(1)).await.unwrap();
    let mut info = framework_info("env");
    info.checkpoint = Some(true);
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), info).await;
    let offer = fw.offers(3 * SEC).await.remove(0);

    let mut tool = uri(format!("{server}/tool.sh"));
    tool.executable = Some(true);
    tool.output_file = Some("bin/tool".into());
    let mut executor = shell_executor("env-exec", "./bin/tool");
    let command = executor.command.as_mut().unwrap();
    command.uris = vec![uri(format!("{server}/pkg.tar.gz")), tool];
    command.environment = Some(v1::Environment {
        variables: vec![v1::environment::Variable {
            name: "EXTRA".into(),
            value: Some("from-executor-info".into()),
            ..Default::default()
        }],
    });
    fw.launch(&offer, vec![task("t-env", &offer, executor, 0.1, 32.0)])
        .await;

    let events = collect_until(&mut fw, 10 * SEC, |seen| {
        seen.iter().any(|e| e.failure.is_some()) && seen.iter().any(|e| e.update.is_some())
    })
    .await;
    let failure = events.iter().find_map(|e| e.failure.clone()).unwrap();
    assert_eq!(failure.executor_id.unwrap().value, "env-exec");
    let raw = failure.status.unwrap();
    assert!(
        libc::WIFEXITED(raw) && libc::WEXITSTATUS(raw) == 3,
        "raw status {raw}"
    );
    let status = events.iter().find_map(|e| e.update.clone()).unwrap().status;
    assert_eq!(state_of(&status), TaskState::TaskFailed);
    assert_eq!(reason_of(&status), Some(Reason::ExecutorTerminated));
    assert_eq!(status.source, Some(Source::Agent as i32));
    assert_eq!(status.uuid.as_ref().map(|u| u.len()), Some(16));
    fw.acknowledge(&status).await;

    let agent = cluster.agent_ids()[0].clone();
    let sandbox = sandbox_of(&cluster, &agent, &fw.framework_id, "env-exec");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("data/hello.txt")).unwrap(),
        "hello from the archive\n"
    );
    assert!(
        sandbox.join("pkg.tar.gz").is_file(),
        "direct downloads keep the archive"
    );
    let mode = std::fs::metadata(sandbox.join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(sandbox.join("stdout").is_file() && sandbox.join("stderr").is_file());

    let env_text = std::fs::read_to_string(sandbox.join("env.txt")).unwrap();
    let mut env: BTreeMap<String, String> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Variables the shell itself sets.
    for shell_var in ["PWD", "OLDPWD", "SHLVL", "_"] {
        env.remove(shell_var);
    }
    let endpoint = cluster.agent_endpoint(&agent).unwrap().to_string();
    let sandbox_text = sandbox.display().to_string();
    let expected: BTreeMap<String, String> = [
        ("EXTRA", "from-executor-info"),
        ("LIBPROCESS_PORT", "0"),
        ("MESOS_AGENT_ENDPOINT", endpoint.as_str()),
        ("MESOS_CHECKPOINT", "1"),
        ("MESOS_DIRECTORY", sandbox_text.as_str()),
        ("MESOS_EXECUTOR_ID", "env-exec"),
        ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "300ms"),
        ("MESOS_FRAMEWORK_ID", fw.framework_id.as_str()),
        ("MESOS_HTTP_COMMAND_EXECUTOR", "0"),
        ("MESOS_RECOVERY_TIMEOUT", "15mins"),
        ("MESOS_SANDBOX", sandbox_text.as_str()),
        ("MESOS_SLAVE_ID", agent.as_str()),
        ("MESOS_SLAVE_PID", format!("slave(1)@{endpoint}").as_str()),
        ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs"),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expected);
}

#[tokio::test]
async fn a_failed_fetch_fails_the_task_with_container_launch_failed() {
    let server = file_server(vec![]).await;
    let cluster = Cluster::start(fast_config(1)).await.unwrap();
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("fetch")).await;
    let offer = fw.offers(3 * SEC).await.remove(0);
    let mut executor = shell_executor("e", "./missing");
    executor.command.as_mut().unwrap().uris = vec![uri(format!("{server}/missing"))];
    fw.launch(&offer, vec![task("t", &offer, executor, 0.1, 32.0)])
        .await;
    let status = fw.update(5 * SEC).await;
    assert_eq!(state_of(&status), TaskState::TaskFailed);
    assert_eq!(reason_of(&status), Some(Reason::ContainerLaunchFailed));
    assert!(status.message.unwrap().contains("404"));
}

/// The test plays the executor of a `sleep` process over the real executor API.
struct RawExecutor {
    client: reqwest::Client,
    url: String,
    framework_id: String,
    executor_id: String,
}

impl RawExecutor {
    fn call(&self, kind: exec::call::Type) -> exec::Call {
        exec::Call {
            executor_id: v1::ExecutorId {
                value: self.executor_id.clone(),
            },
            framework_id: v1::FrameworkId {
                value: self.framework_id.clone(),
            },
            r#type: Some(kind as i32),
            ..Default::default()
        }
    }

    async fn post(&self, call: &exec::Call) -> reqwest::Response {
        post(
            &self.client,
            &self.url,
            call.encode_to_vec(),
            &[("Content-Type", PROTOBUF), ("Accept", PROTOBUF)],
        )
        .await
    }

    fn update(&self, task: &str, state: TaskState, uuid: Bytes) -> exec::Call {
        let mut call = self.call(exec::call::Type::Update);
        call.update = Some(exec::call::Update {
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: task.into() },
                state: state as i32,
                source: Some(Source::Executor as i32),
                uuid: Some(uuid),
                ..Default::default()
            },
        });
        call
    }
}

fn fresh_uuid() -> Bytes {
    Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes())
}

#[tokio::test]
async fn executor_api_updates_acks_messages_kill_and_shutdown() {
    let cluster = Cluster::start(fast_config(1)).await.unwrap();
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("raw-exec")).await;
    let offer = fw.offers(3 * SEC).await.remove(0);
    let executor_info = shell_executor("e", "sleep 30");
    fw.launch(
        &offer,
        vec![task("t1", &offer, executor_info.clone(), 0.1, 32.0)],
    )
    .await;
    // What the launch left is offered again at once; keep it for a second task.
    let spare = fw.offers(3 * SEC).await.remove(0);
    assert!(executor_process_started(&cluster, 3 * SEC).await);
    let agent = cluster.agent_ids()[0].clone();
    let ex = RawExecutor {
        client: http_client(),
        url: format!(
            "http://{}/api/v1/executor",
            cluster.agent_endpoint(&agent).unwrap()
        ),
        framework_id: fw.framework_id.clone(),
        executor_id: "e".into(),
    };

    // Calls before SUBSCRIBE are forbidden; unknown ids are bad requests.
    let r = ex
        .post(&ex.update("t1", TaskState::TaskRunning, fresh_uuid()))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "Executor is not subscribed");
    let mut unknown = ex.call(exec::call::Type::Subscribe);
    unknown.subscribe = Some(Default::default());
    unknown.executor_id.value = "nope".into();
    let r = ex.post(&unknown).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Executor cannot be found");
    unknown.framework_id.value = "nope".into();
    assert_eq!(
        ex.post(&unknown).await.text().await.unwrap(),
        "Framework cannot be found"
    );

    let mut subscribe = ex.call(exec::call::Type::Subscribe);
    subscribe.subscribe = Some(Default::default());
    let r = ex.post(&subscribe).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], PROTOBUF);
    assert!(r.headers().get("mesos-stream-id").is_none());
    let mut stream = EventReader::new(r);
    let subscribed = stream
        .next_executor_event(SEC)
        .await
        .unwrap()
        .subscribed
        .unwrap();
    assert_eq!(subscribed.framework_info.id.unwrap().value, fw.framework_id);
    assert_eq!(subscribed.executor_info.executor_id.value, "e");
    assert_eq!(subscribed.agent_info.id.unwrap().value, agent);
    assert!(subscribed.container_id.is_some());
    let launch = stream
        .next_executor_event(SEC)
        .await
        .unwrap()
        .launch
        .unwrap();
    assert_eq!(launch.task.task_id.value, "t1");

    // Garbage and truncated bodies are clear 400s; the agent keeps serving.
    for body in [vec![0xffu8; 64], vec![0x0a, 0x10, 0x01]] {
        let r = post(&ex.client, &ex.url, body, &[("Content-Type", PROTOBUF)]).await;
        assert_eq!(r.status(), 400);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Failed to parse body into Call protobuf")
        );
    }

    // Strict UPDATE validation.
    let text_uuid = Bytes::from(uuid::Uuid::new_v4().to_string());
    let r = ex
        .post(&ex.update("t1", TaskState::TaskRunning, text_uuid))
        .await;
    assert_eq!(r.status(), 400);
    let mut wrong_source = ex.update("t1", TaskState::TaskRunning, fresh_uuid());
    wrong_source.update.as_mut().unwrap().status.source = Some(Source::Master as i32);
    assert_eq!(ex.post(&wrong_source).await.status(), 400);
    let r = ex
        .post(&ex.update("t1", TaskState::TaskStaging, fresh_uuid()))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "Received TASK_STAGING from executor"
    );
    let mut other_exec = ex.update("t1", TaskState::TaskRunning, fresh_uuid());
    other_exec.update.as_mut().unwrap().status.executor_id =
        Some(v1::ExecutorId { value: "x".into() });
    assert_eq!(ex.post(&other_exec).await.status(), 400);
    let r = post(
        &ex.client,
        &ex.url,
        ex.update("t1", TaskState::TaskRunning, fresh_uuid())
            .encode_to_vec(),
        &[("Content-Type", "application/x-protobuf; v=1")],
    )
    .await;
    assert_eq!(r.status(), 415);

    // RUNNING: ACKNOWLEDGED to the executor, UPDATE with the same uuid to the scheduler.
    let running = fresh_uuid();
    assert_eq!(
        ex.post(&ex.update("t1", TaskState::TaskRunning, running.clone()))
            .await
            .status(),
        202
    );
    let acked = stream
        .next_executor_event(SEC)
        .await
        .unwrap()
        .acknowledged
        .unwrap();
    assert_eq!(
        (acked.task_id.value.as_str(), &acked.uuid),
        ("t1", &running)
    );
    let s = fw.update(SEC).await;
    assert_eq!(state_of(&s), TaskState::TaskRunning);
    assert_eq!(s.uuid.as_ref(), Some(&running));
    assert_eq!(s.source, Some(Source::Executor as i32));
    assert_eq!(s.agent_id.as_ref().unwrap().value, agent);
    assert_eq!(s.executor_id.as_ref().unwrap().value, "e");

    // FINISHED is held back until RUNNING is acknowledged; RUNNING is retried meanwhile.
    let finished = fresh_uuid();
    assert_eq!(
        ex.post(&ex.update("t1", TaskState::TaskFinished, finished.clone()))
            .await
            .status(),
        202
    );
    assert_eq!(
        stream
            .next_executor_event(SEC)
            .await
            .unwrap()
            .acknowledged
            .unwrap()
            .uuid,
        finished
    );
    let retry = fw.update(2 * SEC).await;
    assert_eq!(
        state_of(&retry),
        TaskState::TaskRunning,
        "retried, FINISHED held back"
    );
    assert_eq!(retry.uuid.as_ref(), Some(&running));
    fw.acknowledge(&retry).await;
    let s = fw.update(SEC).await;
    assert_eq!(state_of(&s), TaskState::TaskFinished);
    assert_eq!(s.uuid.as_ref(), Some(&finished));
    let again = fw.update(2 * SEC).await;
    assert_eq!(
        (state_of(&again), again.uuid.as_ref()),
        (TaskState::TaskFinished, Some(&finished))
    );
    fw.acknowledge(&again).await;
    assert!(
        fw.events
            .wait_for(sched::event::Type::Update, Duration::from_millis(800))
            .await
            .is_none(),
        "no update after the last acknowledgement"
    );

    // MESSAGE both ways.
    let mut message = ex.call(exec::call::Type::Message);
    message.message = Some(exec::call::Message {
        data: Bytes::from_static(b"to the scheduler"),
    });
    assert_eq!(ex.post(&message).await.status(), 202);
    let m = fw
        .events
        .wait_for(sched::event::Type::Message, SEC)
        .await
        .unwrap()
        .message
        .unwrap();
    assert_eq!(
        (m.agent_id.value.as_str(), m.executor_id.value.as_str()),
        (agent.as_str(), "e")
    );
    assert_eq!(&m.data[..], b"to the scheduler");
    fw.call_ok(sched::Call {
        r#type: Some(sched::call::Type::Message as i32),
        message: Some(sched::call::Message {
            agent_id: v1::AgentId {
                value: agent.clone(),
            },
            executor_id: v1::ExecutorId { value: "e".into() },
            data: Bytes::from_static(b"to the executor"),
        }),
        ..Default::default()
    })
    .await;
    let m = stream
        .next_executor_event(SEC)
        .await
        .unwrap()
        .message
        .unwrap();
    assert_eq!(&m.data[..], b"to the executor");

    // A second task on the same executor, then KILL.
    let offer = spare;
    assert_eq!(
        offer.executor_ids,
        vec![v1::ExecutorId { value: "e".into() }]
    );
    assert!((total(&offer.resources, "cpus") - 1.8).abs() < 1e-9);
    fw.launch(&offer, vec![task("t2", &offer, executor_info, 0.1, 32.0)])
        .await;
    let launch = stream
        .next_executor_event(SEC)
        .await
        .unwrap()
        .launch
        .unwrap();
    assert_eq!(launch.task.task_id.value, "t2");
    fw.call_ok(sched::Call {
        r#type: Some(sched::call::Type::Kill as i32),
        kill: Some(sched::call::Kill {
            task_id: v1::TaskId { value: "t2".into() },
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let kill = stream.next_executor_event(SEC).await.unwrap().kill.unwrap();
    assert_eq!(kill.task_id.value, "t2");

    // SHUTDOWN: the event, then SIGKILL after the grace period; the live task fails.
    fw.call_ok(sched::Call {
        r#type: Some(sched::call::Type::Shutdown as i32),
        shutdown: Some(sched::call::Shutdown {
            executor_id: v1::ExecutorId { value: "e".into() },
            agent_id: v1::AgentId {
                value: agent.clone(),
            },
        }),
        ..Default::default()
    })
    .await;
    let e = stream.next_executor_event(SEC).await.unwrap();
    assert_eq!(e.r#type, Some(exec::event::Type::Shutdown as i32));
    let events = collect_until(&mut fw, 5 * SEC, |seen| {
        seen.iter().any(|e| e.failure.is_some()) && seen.iter().any(|e| e.update.is_some())
    })
    .await;
    let raw = events
        .iter()
        .find_map(|e| e.failure.clone())
        .unwrap()
        .status
        .unwrap();
    assert!(
        libc::WIFSIGNALED(raw) && libc::WTERMSIG(raw) == libc::SIGKILL,
        "raw {raw}"
    );
    let s = events.iter().find_map(|e| e.update.clone()).unwrap().status;
    assert_eq!(
        (s.task_id.value.as_str(), state_of(&s)),
        ("t2", TaskState::TaskFailed)
    );
    assert_eq!(reason_of(&s), Some(Reason::ExecutorTerminated));
    assert!(stream.wait_end(SEC).await, "executor stream closed");
}

#[tokio::test]
async fn killed_executor_process_fails_its_tasks_and_reports_the_signal() {
    let cluster = Cluster::start(fast_config(1)).await.unwrap();
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("kill9")).await;
    let offer = fw.offers(3 * SEC).await.remove(0);
    fw.launch_sleeper(&offer, "t", "e", 30).await;
    assert!(executor_process_started(&cluster, 3 * SEC).await);
    assert!(cluster.kill_executor(&fw.framework_id, "e"));
    let events = collect_until(&mut fw, 5 * SEC, |seen| {
        seen.iter().any(|e| e.failure.is_some()) && seen.iter().any(|e| e.update.is_some())
    })
    .await;
    let raw = events
        .iter()
        .find_map(|e| e.failure.clone())
        .unwrap()
        .status
        .unwrap();
    assert!(libc::WIFSIGNALED(raw) && libc::WTERMSIG(raw) == libc::SIGKILL);
    let s = events.iter().find_map(|e| e.update.clone()).unwrap().status;
    assert_eq!(state_of(&s), TaskState::TaskFailed);
    assert_eq!(reason_of(&s), Some(Reason::ExecutorTerminated));
    fw.acknowledge(&s).await;
    // Resources come back: the whole agent is offered again.
    let offer = fw.offers(3 * SEC).await.remove(0);
    assert_eq!(total(&offer.resources, "cpus"), 2.0);
    assert_eq!(total(&offer.resources, "mem"), 1024.0);
}

#[tokio::test]
async fn agent_removal_gives_failure_and_partition_aware_states() {
    let cluster = Cluster::start(fast_config(2)).await.unwrap();
    let info = with_capabilities(framework_info("pa"), &[Cap::PartitionAware]);
    let mut pa = RawScheduler::subscribe(&cluster.master_url(), info).await;
    let offers = pa.offers(3 * SEC).await;
    assert_eq!(offers.len(), 2);
    let agents = cluster.agent_ids();
    let on0 = offers
        .iter()
        .find(|o| o.agent_id.value == agents[0])
        .unwrap()
        .clone();
    let on1 = offers
        .iter()
        .find(|o| o.agent_id.value == agents[1])
        .unwrap()
        .clone();
    pa.launch_sleeper(&on0, "t0", "e0", 30).await;
    assert!(executor_process_started(&cluster, 3 * SEC).await);

    cluster.remove_agent(&agents[0], AgentRemoval::Unreachable);
    let events = collect_until(&mut pa, 3 * SEC, |seen| {
        seen.iter().any(|e| e.failure.is_some()) && seen.iter().any(|e| e.update.is_some())
    })
    .await;
    let failure = events.iter().find_map(|e| e.failure.clone()).unwrap();
    assert_eq!(failure.agent_id.unwrap().value, agents[0]);
    assert!(failure.executor_id.is_none() && failure.status.is_none());
    let s = events.iter().find_map(|e| e.update.clone()).unwrap().status;
    assert_eq!(
        (s.task_id.value.as_str(), state_of(&s)),
        ("t0", TaskState::TaskUnreachable)
    );
    assert_eq!(reason_of(&s), Some(Reason::AgentRemoved));
    assert!(s.unreachable_time.is_some() && s.uuid.is_none());
    assert!(
        eventually(3 * SEC, || cluster
            .executors()
            .iter()
            .all(|e| e.0 != agents[0]))
        .await
    );
    // The offer on the other agent is still valid.
    pa.decline(std::slice::from_ref(&on1), 0.0).await;
    pa.reconcile(vec![("t0", None)]).await;
    let s = pa.update(SEC).await;
    assert_eq!(state_of(&s), TaskState::TaskUnreachable);
    assert_eq!(reason_of(&s), Some(Reason::Reconciliation));
    // KILL of a task the master cannot reach is answered with its state.
    pa.call_ok(sched::Call {
        r#type: Some(sched::call::Type::Kill as i32),
        kill: Some(sched::call::Kill {
            task_id: v1::TaskId { value: "t0".into() },
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let s = pa.update(SEC).await;
    assert_eq!(state_of(&s), TaskState::TaskUnreachable);
    // Only the remaining agent is offered.
    let offers = pa.offers(3 * SEC).await;
    assert!(offers.iter().all(|o| o.agent_id.value == agents[1]));

    // A framework without PARTITION_AWARE gets TASK_LOST when an agent is marked gone.
    let mut plain = RawScheduler::subscribe(&cluster.master_url(), framework_info("plain")).await;
    pa.decline(&offers, 600.0).await;
    let offer = plain.offers(3 * SEC).await.remove(0);
    plain.launch_sleeper(&offer, "p1", "e1", 30).await;
    assert!(
        eventually(3 * SEC, || cluster
            .executors()
            .iter()
            .any(|e| e.1 == plain.framework_id && e.3.is_some()))
        .await
    );
    cluster.remove_agent(&agents[1], AgentRemoval::Gone);
    let s = plain.update(3 * SEC).await;
    assert_eq!(
        (s.task_id.value.as_str(), state_of(&s)),
        ("p1", TaskState::TaskLost)
    );
    assert_eq!(reason_of(&s), Some(Reason::AgentRemovedByOperator));
}

/// Launches `sleep` as executor `e` with task `t1` and subscribes to the agent as that executor.
async fn subscribed_raw_executor(
    cluster: &Cluster,
    fw: &mut RawScheduler,
) -> (RawExecutor, EventReader, v1::Offer) {
    let offer = fw.offers(3 * SEC).await.remove(0);
    fw.launch_sleeper(&offer, "t1", "e", 30).await;
    let spare = fw.offers(3 * SEC).await.remove(0);
    assert!(executor_process_started(cluster, 3 * SEC).await);
    let agent = cluster.agent_ids()[0].clone();
    let ex = RawExecutor {
        client: http_client(),
        url: format!(
            "http://{}/api/v1/executor",
            cluster.agent_endpoint(&agent).unwrap()
        ),
        framework_id: fw.framework_id.clone(),
        executor_id: "e".into(),
    };
    let mut subscribe = ex.call(exec::call::Type::Subscribe);
    subscribe.subscribe = Some(Default::default());
    let mut stream = EventReader::new(ex.post(&subscribe).await);
    assert!(
        stream
            .next_executor_event(SEC)
            .await
            .unwrap()
            .subscribed
            .is_some()
    );
    assert!(
        stream
            .next_executor_event(SEC)
            .await
            .unwrap()
            .launch
            .is_some()
    );
    (ex, stream, spare)
}

#[tokio::test]
async fn a_dropped_update_is_redelivered_until_acknowledged() {
    let cluster = Cluster::start(fast_config(1)).await.unwrap();
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("drop")).await;
    let (ex, _stream, _) = subscribed_raw_executor(&cluster, &mut fw).await;
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = dropped.clone();
    cluster.set_event_filter(move |_, event| {
        if event.update.is_some() && counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            mesoflow_tests::cluster::Delivery::Drop
        } else {
            mesoflow_tests::cluster::Delivery::Deliver
        }
    });
    let uuid = fresh_uuid();
    assert_eq!(
        ex.post(&ex.update("t1", TaskState::TaskRunning, uuid.clone()))
            .await
            .status(),
        202
    );
    let s = fw.update(2 * SEC).await;
    assert_eq!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "first delivery was dropped"
    );
    assert_eq!(
        (state_of(&s), s.uuid.as_ref()),
        (TaskState::TaskRunning, Some(&uuid))
    );
    fw.acknowledge(&s).await;
    assert!(
        fw.events
            .wait_for(sched::event::Type::Update, Duration::from_millis(800))
            .await
            .is_none(),
        "no more retries once acknowledged"
    );
}

#[tokio::test]
async fn delayed_events_arrive_late() {
    let cluster = Cluster::start(fast_config(1)).await.unwrap();
    cluster.set_event_filter(|_, event| {
        if event.offers.is_some() {
            mesoflow_tests::cluster::Delivery::Delay(Duration::from_millis(800))
        } else {
            mesoflow_tests::cluster::Delivery::Deliver
        }
    });
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("delay")).await;
    assert!(
        fw.events
            .wait_for(sched::event::Type::Offers, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(fw.offers(2 * SEC).await.len(), 1);
    cluster.clear_event_filter();
}

#[tokio::test]
async fn launch_group_reaches_the_executor_as_one_event_and_is_validated_as_a_whole() {
    let cluster = Cluster::start(fast_config(1)).await.unwrap();
    let mut fw = RawScheduler::subscribe(&cluster.master_url(), framework_info("group")).await;
    let (_ex, mut stream, offer) = subscribed_raw_executor(&cluster, &mut fw).await;
    let mut executor = shell_executor("e", "sleep 30");
    executor.r#type = Some(v1::executor_info::Type::Custom as i32);
    executor.framework_id = Some(fw.framework_id());
    let group_task = |id: &str| v1::TaskInfo {
        executor: None,
        ..task(id, &offer, executor.clone(), 0.1, 32.0)
    };
    let launch_group = |executor: v1::ExecutorInfo, tasks: Vec<v1::TaskInfo>| sched::Call {
        r#type: Some(sched::call::Type::Accept as i32),
        accept: Some(sched::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::offer::Operation {
                r#type: Some(v1::offer::operation::Type::LaunchGroup as i32),
                launch_group: Some(v1::offer::operation::LaunchGroup {
                    executor,
                    task_group: v1::TaskGroupInfo { tasks },
                }),
                ..Default::default()
            }],
            filters: Some(v1::Filters {
                refuse_seconds: Some(0.0),
            }),
        }),
        ..Default::default()
    };
    // "e" is running with a different ExecutorInfo (no type, no framework id): incompatible.
    fw.call_ok(launch_group(
        executor.clone(),
        vec![group_task("g1"), group_task("g2")],
    ))
    .await;
    for id in ["g1", "g2"] {
        let s = fw.update(SEC).await;
        assert_eq!(
            (s.task_id.value.as_str(), state_of(&s)),
            (id, TaskState::TaskError)
        );
        assert_eq!(reason_of(&s), Some(Reason::TaskGroupInvalid));
        assert!(s.message.unwrap().contains("not compatible"));
    }
    // A new executor for the group must carry disk: refused without it.
    let offer_b = fw.offers(3 * SEC).await.remove(0);
    let mut group_exec = executor.clone();
    group_exec.executor_id.value = "group-exec".into();
    let mut call = launch_group(group_exec.clone(), vec![group_task("g3")]);
    call.accept.as_mut().unwrap().offer_ids = vec![offer_b.id.clone()];
    fw.call_ok(call).await;
    let s = fw.update(SEC).await;
    assert_eq!(reason_of(&s), Some(Reason::TaskGroupInvalid));
    assert!(s.message.as_deref().unwrap_or("").contains("disk"), "{s:?}");

    // Both tasks of a valid group arrive at their new executor as ONE LAUNCH_GROUP event.
    let offer_c = fw.offers(3 * SEC).await.remove(0);
    let mut fresh = executor.clone();
    fresh.executor_id.value = "ge".into();
    fresh.resources.push(scalar("disk", 10.0));
    let tasks: Vec<v1::TaskInfo> = ["g4", "g5"]
        .iter()
        .map(|id| v1::TaskInfo {
            executor: None,
            ..task(id, &offer_c, fresh.clone(), 0.1, 32.0)
        })
        .collect();
    let mut call = launch_group(fresh, tasks);
    call.accept.as_mut().unwrap().offer_ids = vec![offer_c.id.clone()];
    fw.call_ok(call).await;
    assert!(
        eventually(3 * SEC, || cluster
            .executors()
            .iter()
            .any(|e| e.2 == "ge" && e.3.is_some()))
        .await
    );
    let ge = RawExecutor {
        client: http_client(),
        url: format!(
            "http://{}/api/v1/executor",
            cluster.agent_endpoint(&cluster.agent_ids()[0]).unwrap()
        ),
        framework_id: fw.framework_id.clone(),
        executor_id: "ge".into(),
    };
    let mut subscribe = ge.call(exec::call::Type::Subscribe);
    subscribe.subscribe = Some(Default::default());
    let mut ge_stream = EventReader::new(ge.post(&subscribe).await);
    assert!(
        ge_stream
            .next_executor_event(SEC)
            .await
            .unwrap()
            .subscribed
            .is_some()
    );
    let group = ge_stream.next_executor_event(SEC).await.unwrap();
    assert_eq!(group.r#type, Some(exec::event::Type::LaunchGroup as i32));
    let ids: Vec<String> = group
        .launch_group
        .unwrap()
        .task_group
        .tasks
        .iter()
        .map(|t| t.task_id.value.clone())
        .collect();
    assert_eq!(ids, ["g4", "g5"]);
    assert!(
        stream
            .next_executor_event(Duration::from_millis(300))
            .await
            .is_none()
    );
}
