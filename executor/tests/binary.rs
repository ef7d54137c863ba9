//! The real `mesoflow-executor` binary against a small scripted agent on 127.0.0.1.
//!
//! The binary is started exactly as a Mesos agent starts a custom executor: cwd = sandbox, a
//! cleared environment holding only the agent's variables. The scripted agent checks what the
//! real one checks on every request (exact Content-Type, the Bearer token, the ids, a 16-byte v4
//! uuid and SOURCE_EXECUTOR on updates) and lets each test play the agent's side.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use mesoflow_proto::internal::{Probe, TaskManager, TaskSpec, task_spec};
use mesoflow_proto::mesos::v1::executor::{Call, Event, call, event};
use mesoflow_proto::mesos::v1::{
    AgentInfo, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, TaskId, TaskInfo, TaskState,
    framework_info, task_status,
};
use mesoflow_proto::recordio::encode_message;
use prost::Message;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const TOKEN: &str = "header.payload.signature";
const STEP: Duration = Duration::from_secs(20);

#[derive(Default)]
struct AgentState {
    /// Raw bytes for the current subscription stream (RecordIO-framed events, or garbage).
    stream: Option<mpsc::UnboundedSender<Bytes>>,
}

#[derive(Clone)]
struct Agent {
    state: Arc<Mutex<AgentState>>,
    calls: mpsc::UnboundedSender<Call>,
}

async fn executor_api(State(agent): State<Agent>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()) != Some(b"application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad content type").into_response();
    }
    let bearer = format!("Bearer {TOKEN}");
    if headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) != Some(bearer.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    let Ok(call) = Call::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not a Call").into_response();
    };
    if call.framework_id.value != "fw-1" || call.executor_id.value != "exec-1" {
        return (StatusCode::BAD_REQUEST, "unknown framework or executor").into_response();
    }
    if let Some(update) = &call.update {
        let uuid = update.status.uuid.as_deref().unwrap_or_default();
        let valid = uuid::Uuid::from_slice(uuid).is_ok_and(|u| u.get_version_num() == 4);
        if !valid || update.status.source != Some(task_status::Source::Executor as i32) {
            return (StatusCode::BAD_REQUEST, "invalid update").into_response();
        }
    }
    let subscribe = call.r#type == Some(call::Type::Subscribe as i32);
    let _ = agent.calls.send(call);
    if !subscribe {
        return StatusCode::ACCEPTED.into_response();
    }
    if headers.get(header::ACCEPT).map(|v| v.as_bytes()) != Some(b"application/x-protobuf") {
        return (StatusCode::NOT_ACCEPTABLE, "expected protobuf").into_response();
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    agent.state.lock().unwrap().stream = Some(tx);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let bytes = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A scripted agent and the executor process it launched.
struct Harness {
    agent: Agent,
    calls: mpsc::UnboundedReceiver<Call>,
    child: Child,
    sandbox: tempfile::TempDir,
}

impl Harness {
    async fn start(checkpoint: bool) -> Self {
        Self::start_with_token(checkpoint, TOKEN).await
    }

    async fn start_with_token(checkpoint: bool, token: &str) -> Self {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let agent = Agent {
            state: Arc::default(),
            calls: calls_tx,
        };
        let app = axum::Router::new()
            .route("/api/v1/executor", axum::routing::post(executor_api))
            .with_state(agent.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let sandbox = tempfile::tempdir().unwrap();
        let sandbox_path = sandbox.path().to_str().unwrap().to_owned();
        let mut env: HashMap<&str, String> = HashMap::from([
            ("MESOS_FRAMEWORK_ID", "fw-1".to_owned()),
            ("MESOS_EXECUTOR_ID", "exec-1".to_owned()),
            ("MESOS_AGENT_ENDPOINT", addr.to_string()),
            ("MESOS_SLAVE_PID", format!("slave(1)@{addr}")),
            ("MESOS_SLAVE_ID", "agent-1".to_owned()),
            ("MESOS_DIRECTORY", sandbox_path.clone()),
            ("MESOS_SANDBOX", sandbox_path),
            (
                "MESOS_CHECKPOINT",
                if checkpoint { "1" } else { "0" }.to_owned(),
            ),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs".to_owned()),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", token.to_owned()),
            ("MESOS_HTTP_COMMAND_EXECUTOR", "0".to_owned()),
            ("LIBPROCESS_PORT", "0".to_owned()),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
        ]);
        if checkpoint {
            env.insert("MESOS_RECOVERY_TIMEOUT", "15mins".to_owned());
            env.insert("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs".to_owned());
        }
        let child = Command::new(env!("CARGO_BIN_EXE_mesoflow-executor"))
            .current_dir(sandbox.path())
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            // Like the agent: the executor's output lands in files in its sandbox.
            .stdout(std::fs::File::create(sandbox.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(sandbox.path().join("stderr")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            agent,
            calls,
            child,
            sandbox,
        }
    }

    async fn next_call(&mut self) -> Call {
        tokio::time::timeout(STEP, self.calls.recv())
            .await
            .expect("the executor sent no call in time")
            .unwrap()
    }

    async fn expect_subscribe(&mut self) -> call::Subscribe {
        let call = self.next_call().await;
        assert_eq!(call.r#type, Some(call::Type::Subscribe as i32), "{call:?}");
        call.subscribe.unwrap()
    }

    /// The next UPDATE's task id, state, message and uuid.
    async fn expect_update(&mut self) -> (String, TaskState, Option<String>, Bytes) {
        loop {
            let call = self.next_call().await;
            if call.r#type == Some(call::Type::Heartbeat as i32) {
                continue;
            }
            assert_eq!(call.r#type, Some(call::Type::Update as i32), "{call:?}");
            let status = call.update.unwrap().status;
            return (
                status.task_id.value,
                TaskState::try_from(status.state).unwrap(),
                status.message,
                status.uuid.unwrap(),
            );
        }
    }

    fn send(&self, event: Event) {
        let mut buf = BytesMut::new();
        encode_message(&event, &mut buf);
        self.send_raw(buf.freeze());
    }

    fn send_raw(&self, bytes: Bytes) {
        let state = self.agent.state.lock().unwrap();
        state
            .stream
            .as_ref()
            .expect("no subscription")
            .send(bytes)
            .expect("stream closed");
    }

    fn close_stream(&self) {
        self.agent.state.lock().unwrap().stream = None;
    }

    fn subscribed(&self, killing_state: bool) {
        let mut framework_info = FrameworkInfo {
            user: "root".to_owned(),
            name: "mesoflow".to_owned(),
            id: Some(FrameworkId {
                value: "fw-1".to_owned(),
            }),
            ..FrameworkInfo::default()
        };
        if killing_state {
            framework_info
                .capabilities
                .push(framework_info::Capability {
                    r#type: Some(framework_info::capability::Type::TaskKillingState as i32),
                });
        }
        self.send(Event {
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
                    hostname: "127.0.0.1".to_owned(),
                    ..AgentInfo::default()
                },
                container_id: None,
            }),
            ..Event::default()
        });
    }

    fn launch(&self, task_id: &str, data: Option<Vec<u8>>) {
        self.send(Event {
            r#type: Some(event::Type::Launch as i32),
            launch: Some(event::Launch {
                task: TaskInfo {
                    name: task_id.to_owned(),
                    task_id: TaskId {
                        value: task_id.to_owned(),
                    },
                    data: data.map(Bytes::from),
                    ..TaskInfo::default()
                },
            }),
            ..Event::default()
        });
    }

    fn ack(&self, task_id: &str, uuid: Bytes) {
        self.send(Event {
            r#type: Some(event::Type::Acknowledged as i32),
            acknowledged: Some(event::Acknowledged {
                task_id: TaskId {
                    value: task_id.to_owned(),
                },
                uuid,
            }),
            ..Event::default()
        });
    }

    fn shutdown(&self) {
        self.send(Event {
            r#type: Some(event::Type::Shutdown as i32),
            ..Event::default()
        });
    }

    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("the executor did not exit in time")
            .unwrap();
        status.code().expect("killed by a signal")
    }
}

fn spec(kind: task_spec::Kind) -> Vec<u8> {
    TaskSpec {
        version: 1,
        kind: Some(kind),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn runs_a_probe_with_the_agents_environment_and_exits_on_shutdown() {
    let mut h = Harness::start(false).await;
    let subscribe = h.expect_subscribe().await;
    assert!(subscribe.unacknowledged_tasks.is_empty());
    assert!(subscribe.unacknowledged_updates.is_empty());
    h.subscribed(false);
    h.launch(
        "probe-1",
        Some(spec(task_spec::Kind::Probe(Probe {
            duration_ms: 200,
            exit_code: 0,
        }))),
    );
    let mut states = Vec::new();
    for _ in 0..3 {
        let (task_id, state, _, uuid) = h.expect_update().await;
        assert_eq!(task_id, "probe-1");
        states.push(state);
        h.ack(&task_id, uuid);
    }
    assert_eq!(
        states,
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    h.shutdown();
    assert_eq!(h.exit_code().await, 0);
}

#[tokio::test]
async fn a_task_it_cannot_decode_fails_with_a_message_and_a_failing_probe_reports_its_code() {
    let mut h = Harness::start(false).await;
    h.expect_subscribe().await;
    h.subscribed(false);
    h.launch("garbage", Some(b"\xff\xff\xff not a spec".to_vec()));
    let (task_id, state, message, uuid) = h.expect_update().await;
    assert_eq!(
        (task_id.as_str(), state),
        ("garbage", TaskState::TaskFailed)
    );
    assert!(message.unwrap().contains("not a mesoflow TaskSpec"));
    h.ack(&task_id, uuid);

    h.launch(
        "probe-7",
        Some(spec(task_spec::Kind::Probe(Probe {
            duration_ms: 10,
            exit_code: 7,
        }))),
    );
    let mut last = None;
    for _ in 0..3 {
        let update = h.expect_update().await;
        h.ack(&update.0, update.3.clone());
        last = Some(update);
    }
    let (_, state, message, _) = last.unwrap();
    assert_eq!(state, TaskState::TaskFailed);
    assert_eq!(message.as_deref(), Some("probe exited with code 7"));
    h.shutdown();
    assert_eq!(h.exit_code().await, 0);
}

/// A TaskManager with valid credentials whose JobManager does not answer: it is STARTING (it
/// becomes RUNNING only once registered) and keeps trying to register until it is killed.
fn waiting_task_manager(id: &str, slots: u32) -> TaskManager {
    let ca = mesoflow_dataplane::shuffle::ClusterCa::generate("executor-test").unwrap();
    let (cert, key, ca_pem) = ca.issue(id).unwrap().to_pem();
    TaskManager {
        slots,
        task_manager_id: id.to_owned(),
        // Nothing listens on UDP port 9 (discard) here.
        job_manager_endpoint: "127.0.0.1:9".to_owned(),
        ca_certificate_pem: ca_pem,
        certificate_pem: cert,
        private_key_pem: key,
        ..TaskManager::default()
    }
}

#[tokio::test]
async fn a_task_manager_without_credentials_fails_with_the_reason() {
    let mut h = Harness::start(false).await;
    h.expect_subscribe().await;
    h.subscribed(true);
    let mut bare = waiting_task_manager("tm-1", 1);
    bare.certificate_pem.clear();
    h.launch("tm-1", Some(spec(task_spec::Kind::TaskManager(bare))));
    let (task_id, state, _, uuid) = h.expect_update().await;
    assert_eq!(state, TaskState::TaskStarting);
    h.ack(&task_id, uuid);
    let (task_id, state, message, uuid) = h.expect_update().await;
    assert_eq!(state, TaskState::TaskFailed);
    let message = message.unwrap_or_default();
    assert!(message.contains("TLS credentials"), "{message}");
    h.ack(&task_id, uuid);
    h.shutdown();
    assert_eq!(h.exit_code().await, 0);
}

#[tokio::test]
async fn a_killed_task_manager_reports_killing_then_killed() {
    let mut h = Harness::start(false).await;
    h.expect_subscribe().await;
    h.subscribed(true);
    h.launch(
        "tm-1",
        Some(spec(task_spec::Kind::TaskManager(waiting_task_manager(
            "tm-1", 2,
        )))),
    );
    let (task_id, state, _, uuid) = h.expect_update().await;
    assert_eq!(state, TaskState::TaskStarting);
    h.ack(&task_id, uuid);
    h.send(Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: TaskId {
                value: "tm-1".to_owned(),
            },
            kill_policy: None,
        }),
        ..Event::default()
    });
    let (_, killing, _, uuid) = h.expect_update().await;
    assert_eq!(killing, TaskState::TaskKilling);
    h.ack(&task_id, uuid);
    let (_, killed, _, uuid) = h.expect_update().await;
    assert_eq!(killed, TaskState::TaskKilled);
    h.ack(&task_id, uuid);
    h.shutdown();
    assert_eq!(h.exit_code().await, 0);
}

#[tokio::test]
async fn with_checkpointing_it_resubscribes_with_what_is_unacknowledged() {
    let mut h = Harness::start(true).await;
    h.expect_subscribe().await;
    h.subscribed(false);
    h.launch(
        "tm-1",
        Some(spec(task_spec::Kind::TaskManager(waiting_task_manager(
            "tm-1", 1,
        )))),
    );
    let (_, state, _, running_uuid) = h.expect_update().await;
    assert_eq!(state, TaskState::TaskStarting);
    // The agent "restarts" before acknowledging: the stream ends.
    h.close_stream();
    let subscribe = h.expect_subscribe().await;
    assert_eq!(subscribe.unacknowledged_tasks.len(), 1);
    assert_eq!(subscribe.unacknowledged_tasks[0].task_id.value, "tm-1");
    assert_eq!(subscribe.unacknowledged_updates.len(), 1);
    assert_eq!(
        subscribe.unacknowledged_updates[0].status.uuid.as_ref(),
        Some(&running_uuid)
    );
    h.subscribed(false);
    h.ack("tm-1", running_uuid);
    h.shutdown();
    let (_, killed, _, uuid) = h.expect_update().await;
    assert_eq!(killed, TaskState::TaskKilled);
    h.ack("tm-1", uuid);
    assert_eq!(h.exit_code().await, 0);
}

#[tokio::test]
async fn without_checkpointing_losing_the_agent_ends_the_executor_with_a_failure() {
    let mut h = Harness::start(false).await;
    h.expect_subscribe().await;
    h.subscribed(false);
    h.close_stream();
    assert_eq!(h.exit_code().await, 1);
}

#[tokio::test]
async fn garbage_on_the_event_stream_is_survived_by_resubscribing_with_checkpointing() {
    let mut h = Harness::start(true).await;
    h.expect_subscribe().await;
    h.subscribed(false);
    h.launch(
        "probe-1",
        Some(spec(task_spec::Kind::Probe(Probe {
            duration_ms: 60_000,
            exit_code: 0,
        }))),
    );
    let (_, starting, _, _) = h.expect_update().await;
    assert_eq!(starting, TaskState::TaskStarting);
    let (_, running, _, _) = h.expect_update().await;
    assert_eq!(running, TaskState::TaskRunning);
    // A length header that is not a number: the stream is unusable.
    h.send_raw(Bytes::from_static(b"12x\n{\"type\":\"HEARTBEAT\"}"));
    let subscribe = h.expect_subscribe().await;
    assert_eq!(subscribe.unacknowledged_updates.len(), 2);
    h.subscribed(false);
    // Then a frame larger than any event may be: refused the same way.
    h.send_raw(Bytes::from_static(b"99999999999\n"));
    let subscribe = h.expect_subscribe().await;
    assert_eq!(subscribe.unacknowledged_tasks.len(), 1);
    h.subscribed(false);
    // Then well-framed RecordIO whose record is not an Event: the stream is corrupt, so it is
    // dropped and the executor subscribes again with the same unacknowledged state.
    h.send_raw(undecodable_record());
    let subscribe = h.expect_subscribe().await;
    assert_eq!(subscribe.unacknowledged_tasks.len(), 1);
    assert_eq!(subscribe.unacknowledged_tasks[0].task_id.value, "probe-1");
    assert_eq!(subscribe.unacknowledged_updates.len(), 2);
    h.subscribed(false);
    h.shutdown();
    let (_, killed, _, uuid) = h.expect_update().await;
    assert_eq!(killed, TaskState::TaskKilled);
    h.ack("probe-1", uuid);
    // The STARTING and RUNNING updates were never acknowledged: exit waits only for the grace.
    assert_eq!(h.exit_code().await, 0);
}

/// One correctly framed RecordIO record whose payload is not a protobuf `Event`.
fn undecodable_record() -> Bytes {
    let payload: &[u8] = b"\xff\xff\xff\xff not an event";
    let mut framed = format!("{}\n", payload.len()).into_bytes();
    framed.extend_from_slice(payload);
    Bytes::from(framed)
}

#[tokio::test]
async fn without_checkpointing_an_undecodable_event_kills_the_tasks_and_exits_with_a_failure() {
    let mut h = Harness::start(false).await;
    h.expect_subscribe().await;
    h.subscribed(false);
    h.launch(
        "probe-1",
        Some(spec(task_spec::Kind::Probe(Probe {
            duration_ms: 60_000,
            exit_code: 0,
        }))),
    );
    let (_, starting, _, _) = h.expect_update().await;
    assert_eq!(starting, TaskState::TaskStarting);
    let (_, running, _, _) = h.expect_update().await;
    assert_eq!(running, TaskState::TaskRunning);
    h.send_raw(undecodable_record());
    // Long before the probe's 60 s are up: the probe was killed, and the executor gave up.
    assert_eq!(h.exit_code().await, 1);
    let mut after = Vec::new();
    while let Ok(call) = h.calls.try_recv() {
        after.push(call.r#type);
    }
    assert!(
        !after.contains(&Some(call::Type::Subscribe as i32)),
        "re-subscribed without checkpointing: {after:?}"
    );
    let stderr = std::fs::read_to_string(h.sandbox.path().join("stderr")).unwrap();
    assert!(stderr.contains("undecodable Event (17 bytes)"), "{stderr}");
}

#[tokio::test]
async fn a_refused_token_ends_the_executor_with_a_failure() {
    let mut h = Harness::start_with_token(false, "not-the-agents-token").await;
    assert_eq!(h.exit_code().await, 1);
    let stderr = std::fs::read_to_string(h.sandbox.path().join("stderr")).unwrap();
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");
    assert!(
        !stderr.contains("not-the-agents-token"),
        "token leaked into the log"
    );
}

#[tokio::test]
async fn sigterm_kills_the_tasks_reports_them_and_exits() {
    let mut h = Harness::start(false).await;
    h.expect_subscribe().await;
    h.subscribed(false);
    h.launch(
        "tm-1",
        Some(spec(task_spec::Kind::TaskManager(waiting_task_manager(
            "tm-1", 1,
        )))),
    );
    let (_, starting, _, uuid) = h.expect_update().await;
    assert_eq!(starting, TaskState::TaskStarting);
    h.ack("tm-1", uuid);
    let pid = h.child.id().unwrap() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (_, killed, _, uuid) = h.expect_update().await;
    assert_eq!(killed, TaskState::TaskKilled);
    h.ack("tm-1", uuid);
    assert_eq!(h.exit_code().await, 0);
}
