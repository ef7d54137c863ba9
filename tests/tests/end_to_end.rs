//! mesoflow's own Mesos clients against the test cluster: the scheduler client
//! (`mesoflow_scheduler::mesos`) subscribes, gets offers and launches the real
//! `mesoflow-executor` binary, fetched by URI from a local HTTP server; the executor subscribes to
//! its agent and runs a `Probe` task; acknowledgements flow both ways. Then failover,
//! reconciliation, removal, leader change, authentication, and garbage on the event stream.
//!
//! Needs the binaries: run `cargo build --workspace --bins` before `cargo test`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use mesoflow_proto::internal::{Probe, TaskSpec, task_spec};
use mesoflow_proto::mesos::v1;
use mesoflow_scheduler::mesos::{
    Credentials, DisconnectReason, ExitStatus, FatalError, MasterEndpoint, MasterSource,
    SchedulerConfig, SchedulerEvent, SchedulerHandle, spawn,
};
use mesoflow_tests::cluster::{AgentSpec, Cluster, ClusterConfig};
use prost::Message as _;
use tokio::sync::mpsc::UnboundedReceiver;
use v1::TaskState;

const SEC: Duration = Duration::from_secs(1);

/// The `mesoflow-executor` binary of this build.
fn executor_binary() -> PathBuf {
    mesoflow_tests::workspace::binary("mesoflow-executor")
}

/// Serves the executor binary as a plain file and inside a tar.gz.
async fn artifact_server() -> String {
    let binary = std::fs::read(executor_binary()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let staged = dir.path().join("mesoflow-executor");
    std::fs::write(&staged, &binary).unwrap();
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let archive = dir.path().join("executor.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-czf")
        .arg(&archive)
        .arg("mesoflow-executor")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let plain = Bytes::from(binary);
    let tgz = Bytes::from(std::fs::read(archive).unwrap());
    let router = Router::new()
        .route(
            "/bin/mesoflow-executor",
            axum::routing::get(move || async move { plain.clone() }),
        )
        .route(
            "/dist/mesoflow-executor.tar.gz",
            axum::routing::get(move || async move { tgz.clone() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn config() -> ClusterConfig {
    ClusterConfig {
        agents: vec![AgentSpec::new(
            "cpus:2;mem:2048;disk:1000;ports:[31000-31010]",
        )],
        heartbeat_interval: Duration::from_secs(1),
        allocation_interval: Duration::from_millis(50),
        status_update_retry_min: Duration::from_millis(500),
        executor_shutdown_grace_period: Duration::from_secs(2),
        ..ClusterConfig::default()
    }
}

fn endpoint(url: &str) -> MasterEndpoint {
    let hostport = url.trim_start_matches("http://");
    let (host, port) = hostport.rsplit_once(':').unwrap();
    MasterEndpoint::http(host, port.parse().unwrap())
}

fn framework(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "mesoflow".into(),
        name: name.into(),
        failover_timeout: Some(3600.0),
        capabilities: vec![v1::framework_info::Capability {
            r#type: Some(v1::framework_info::capability::Type::TaskKillingState as i32),
        }],
        ..Default::default()
    }
}

struct Client {
    handle: SchedulerHandle,
    events: UnboundedReceiver<SchedulerEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start_client(config: SchedulerConfig) -> Client {
    let (handle, events, task) = spawn(config, MasterSource::Static).expect("driver starts");
    Client {
        handle,
        events,
        task,
    }
}

impl Client {
    async fn next(&mut self, timeout: Duration) -> SchedulerEvent {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => panic!("scheduler driver stopped"),
            Err(_) => panic!("no scheduler event within {timeout:?}"),
        }
    }

    /// The next event matching `f`, skipping others.
    async fn expect<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(SchedulerEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(t) = f(self.next(left).await) {
                return t;
            }
        }
    }

    async fn subscribed(&mut self) -> (v1::FrameworkId, Option<v1::MasterInfo>) {
        self.expect(5 * SEC, |e| match e {
            SchedulerEvent::Subscribed {
                framework_id,
                master_info,
                ..
            } => Some((framework_id, master_info)),
            _ => None,
        })
        .await
    }

    async fn offers(&mut self) -> Vec<v1::Offer> {
        self.expect(5 * SEC, |e| match e {
            SchedulerEvent::Offers(o) => Some(o),
            _ => None,
        })
        .await
    }

    /// The next task update; acknowledges it (after "persisting") when it carries a uuid.
    async fn update(&mut self, timeout: Duration) -> v1::TaskStatus {
        let (status, ack) = self
            .expect(timeout, |e| match e {
                SchedulerEvent::Update { status, ack } => Some((status, ack)),
                _ => None,
            })
            .await;
        if let Some(token) = ack {
            self.handle.acknowledge(token).await.expect("acknowledge");
        }
        *status
    }
}

fn probe_task(
    offer: &v1::Offer,
    id: &str,
    uri: v1::command_info::Uri,
    duration_ms: u64,
    exit_code: i32,
) -> v1::TaskInfo {
    let spec = TaskSpec {
        version: 1,
        kind: Some(task_spec::Kind::Probe(Probe {
            duration_ms,
            exit_code,
        })),
    };
    let scalar = |name: &str, value: f64| v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    };
    v1::TaskInfo {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        agent_id: offer.agent_id.clone(),
        resources: vec![scalar("cpus", 0.5), scalar("mem", 128.0)],
        executor: Some(v1::ExecutorInfo {
            executor_id: v1::ExecutorId {
                value: format!("exec-{id}"),
            },
            command: Some(v1::CommandInfo {
                uris: vec![uri],
                value: Some("./mesoflow-executor".into()),
                ..Default::default()
            }),
            resources: vec![scalar("cpus", 0.1), scalar("mem", 64.0)],
            ..Default::default()
        }),
        data: Some(Bytes::from(spec.encode_to_vec())),
        ..Default::default()
    }
}

fn plain_uri(server: &str) -> v1::command_info::Uri {
    v1::command_info::Uri {
        value: format!("{server}/bin/mesoflow-executor"),
        executable: Some(true),
        ..Default::default()
    }
}

fn tgz_uri(server: &str) -> v1::command_info::Uri {
    v1::command_info::Uri {
        value: format!("{server}/dist/mesoflow-executor.tar.gz"),
        ..Default::default()
    }
}

fn states(statuses: &[v1::TaskStatus]) -> Vec<TaskState> {
    statuses
        .iter()
        .map(|s| TaskState::try_from(s.state).unwrap())
        .collect()
}

async fn run_probe(
    uri_of: fn(&str) -> v1::command_info::Uri,
    exit_code: i32,
) -> (Vec<v1::TaskStatus>, Cluster, String) {
    let server = artifact_server().await;
    let cluster = Cluster::start(config()).await.unwrap();
    let mut client = start_client(SchedulerConfig::new(
        framework("probe"),
        vec![endpoint(&cluster.master_url())],
    ));
    let (framework_id, _) = client.subscribed().await;
    let offer = client.offers().await.remove(0);
    let task = probe_task(&offer, "probe-1", uri_of(&server), 300, exit_code);
    client
        .handle
        .launch(vec![offer.id.clone()], vec![task], None)
        .await
        .unwrap();
    let mut statuses = Vec::new();
    while statuses
        .last()
        .is_none_or(|s: &v1::TaskStatus| !v1::is_terminal_state(s.state))
    {
        statuses.push(client.update(20 * SEC).await);
    }
    // The executor has nothing left to run: the scheduler shuts it down.
    client
        .handle
        .shutdown(
            v1::ExecutorId {
                value: "exec-probe-1".into(),
            },
            offer.agent_id.clone(),
        )
        .await
        .unwrap();
    let exited = client
        .expect(10 * SEC, |e| match e {
            SchedulerEvent::ExecutorExited {
                executor_id,
                status,
                ..
            } => Some((executor_id, status)),
            _ => None,
        })
        .await;
    assert_eq!(exited.0.value, "exec-probe-1");
    assert_eq!(
        exited.1,
        Some(ExitStatus::Exited(0)),
        "the executor exits cleanly on SHUTDOWN"
    );
    (statuses, cluster, framework_id.value)
}

#[tokio::test]
async fn probe_runs_on_the_executor_fetched_as_a_plain_binary() {
    let (statuses, cluster, fw) = run_probe(plain_uri, 0).await;
    assert_eq!(
        states(&statuses),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    for s in &statuses {
        assert_eq!(s.source, Some(v1::task_status::Source::Executor as i32));
        assert_eq!(s.uuid.as_ref().map(|u| u.len()), Some(16));
        assert_eq!(s.executor_id.as_ref().unwrap().value, "exec-probe-1");
    }
    let agent = cluster.agent_ids()[0].clone();
    let runs = cluster.work_dir().join(format!(
        "slaves/{agent}/frameworks/{fw}/executors/exec-probe-1/runs"
    ));
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fetched = std::fs::metadata(run.join("mesoflow-executor")).unwrap();
    assert_eq!(
        fetched.len(),
        std::fs::metadata(executor_binary()).unwrap().len()
    );
    assert!(run.join("stderr").is_file());
}

#[tokio::test]
async fn probe_runs_on_the_executor_fetched_as_a_tar_gz_and_reports_failure() {
    let (statuses, _cluster, _) = run_probe(tgz_uri, 3).await;
    assert_eq!(
        states(&statuses),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFailed
        ]
    );
}

#[tokio::test]
async fn failover_with_the_same_id_reconciles_the_running_task() {
    let server = artifact_server().await;
    let cluster = Cluster::start(config()).await.unwrap();
    let master = vec![endpoint(&cluster.master_url())];
    let mut first = start_client(SchedulerConfig::new(framework("ha"), master.clone()));
    let (framework_id, _) = first.subscribed().await;
    let offer = first.offers().await.remove(0);
    let task = probe_task(&offer, "long", plain_uri(&server), 60_000, 0);
    first
        .handle
        .launch(vec![offer.id.clone()], vec![task], None)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.last() != Some(&TaskState::TaskRunning) {
        seen.push(TaskState::try_from(first.update(20 * SEC).await.state).unwrap());
    }

    // A second instance fails over to the same framework id.
    let mut config = SchedulerConfig::new(framework("ha"), master);
    config.framework_id = Some(framework_id.clone());
    let mut second = start_client(config);
    second
        .handle
        .track_tasks(vec![(
            v1::TaskId {
                value: "long".into(),
            },
            Some(offer.agent_id.clone()),
        )])
        .await
        .unwrap();
    let (again, _) = second.subscribed().await;
    assert_eq!(again, framework_id);
    let fatal = first
        .expect(5 * SEC, |e| match e {
            SchedulerEvent::Fatal(f) => Some(f),
            _ => None,
        })
        .await;
    assert!(matches!(fatal, FatalError::FailedOver { .. }), "{fatal:?}");
    // Explicit reconciliation after SUBSCRIBED reports the task as running, without uuid.
    let status = second
        .expect(10 * SEC, |e| match e {
            SchedulerEvent::Update { status, ack } => Some((status, ack)),
            _ => None,
        })
        .await;
    assert_eq!(status.0.task_id.value, "long");
    assert_eq!(
        TaskState::try_from(status.0.state).unwrap(),
        TaskState::TaskRunning
    );
    assert_eq!(
        status.0.reason,
        Some(v1::task_status::Reason::Reconciliation as i32)
    );
    assert!(
        status.1.is_none(),
        "reconciliation answers are never acknowledged"
    );

    // TEARDOWN kills the task and removes the framework for good.
    second.handle.teardown().await.unwrap();
    assert!(
        support::eventually(10 * SEC, || cluster.executors().is_empty()).await,
        "executor shut down by teardown"
    );
    let mut config = SchedulerConfig::new(framework("ha"), vec![endpoint(&cluster.master_url())]);
    config.framework_id = Some(framework_id);
    let mut third = start_client(config);
    let fatal = third
        .expect(5 * SEC, |e| match e {
            SchedulerEvent::Fatal(f) => Some(f),
            _ => None,
        })
        .await;
    assert!(
        matches!(fatal, FatalError::FrameworkRemoved { .. }),
        "{fatal:?}"
    );
}

#[tokio::test]
async fn the_client_follows_the_new_leader_after_a_master_failover() {
    let cluster = std::sync::Arc::new(Cluster::start(config()).await.unwrap());
    let old = cluster.master_url();
    let mut client = start_client(SchedulerConfig::new(
        framework("leader"),
        vec![endpoint(&old)],
    ));
    let (framework_id, info) = client.subscribed().await;
    assert_eq!(info.unwrap().port, endpoint(&old).port as u32);
    let new = cluster
        .fail_over_master(Duration::from_millis(500))
        .await
        .unwrap();
    let reason = client
        .expect(5 * SEC, |e| match e {
            SchedulerEvent::Disconnected { reason } => Some(reason),
            _ => None,
        })
        .await;
    assert!(
        matches!(reason, DisconnectReason::StreamEnded(_)),
        "{reason:?}"
    );
    // The client only knows the old master: it gets 503 or 307 and ends up on the new one.
    let (again, info) = client.subscribed().await;
    assert_eq!(again, framework_id);
    assert_eq!(info.unwrap().port, endpoint(&new).port as u32);
}

#[tokio::test]
async fn wrong_credentials_are_a_fatal_authentication_error() {
    let mut config_ = config();
    config_.credentials = Some(vec![("alice".into(), "s3cret".into())]);
    let cluster = Cluster::start(config_).await.unwrap();
    let mut info = framework("auth");
    info.principal = Some("alice".into());
    let mut config = SchedulerConfig::new(info.clone(), vec![endpoint(&cluster.master_url())]);
    config.credentials = Some(Credentials {
        principal: "alice".into(),
        secret: "wrong".into(),
    });
    let mut client = start_client(config);
    let fatal = client
        .expect(5 * SEC, |e| match e {
            SchedulerEvent::Fatal(f) => Some(f),
            _ => None,
        })
        .await;
    match fatal {
        FatalError::Unauthorized { challenge } => {
            assert_eq!(
                challenge.as_deref(),
                Some("Basic realm=\"mesos-master-scheduler\"")
            )
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let mut config = SchedulerConfig::new(info, vec![endpoint(&cluster.master_url())]);
    config.credentials = Some(Credentials {
        principal: "alice".into(),
        secret: "s3cret".into(),
    });
    let mut client = start_client(config);
    client.subscribed().await;
}

#[tokio::test]
async fn garbage_on_the_event_stream_is_a_clear_error_and_the_client_resubscribes() {
    let cluster = Cluster::start(config()).await.unwrap();
    let mut client = start_client(SchedulerConfig::new(
        framework("garbage"),
        vec![endpoint(&cluster.master_url())],
    ));
    let (framework_id, _) = client.subscribed().await;
    // (case, bytes written into the stream, close right after, what the error must mention)
    let cases: [(&str, Bytes, bool, &str); 4] = [
        (
            "non-numeric length",
            Bytes::from_static(b"12x\n"),
            false,
            "length header",
        ),
        (
            "oversized frame",
            Bytes::from_static(b"99999999999999\n"),
            false,
            "maximum record size",
        ),
        (
            "malformed protobuf",
            Bytes::from_static(b"3\n\x0a\xff\xff"),
            false,
            "decode",
        ),
        (
            "truncated stream",
            Bytes::from_static(b"100\nabc"),
            true,
            "ended inside a record",
        ),
    ];
    for (case, bytes, then_close, mention) in cases {
        assert!(
            cluster.inject_raw(&framework_id.value, bytes),
            "{case}: stream open"
        );
        if then_close {
            // Close right behind the partial record, before any other event can complete it.
            assert!(
                cluster.close_stream(&framework_id.value),
                "{case}: stream closed"
            );
        }
        let reason = client
            .expect(5 * SEC, |e| match e {
                SchedulerEvent::Disconnected { reason } => Some(reason),
                _ => None,
            })
            .await;
        let text = match &reason {
            DisconnectReason::StreamEnded(t) | DisconnectReason::MalformedEvent(t) => t.clone(),
            other => panic!("{case}: unexpected reason {other:?}"),
        };
        assert!(
            text.contains(mention),
            "{case}: the error says what was wrong: {text}"
        );
        let (again, _) = client.subscribed().await;
        assert_eq!(
            again, framework_id,
            "{case}: re-subscribed with the same id"
        );
    }
}
