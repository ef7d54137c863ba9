//! The Mesos ResourceManager driver against the test cluster: three agents, the real
//! `mesoflow-executor` fetched over HTTP, and a long `Probe` task standing in for a TaskManager
//! (no JobManager needed). Two workers start, one is released, then the driver shuts down and
//! tears the framework down.
//!
//! Needs the binaries: run `cargo build --workspace --bins` before `cargo test`.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use mesoflow_proto::internal::{Probe, TaskSpec, task_spec};
use mesoflow_proto::mesos::v1::TaskState;
use mesoflow_scheduler::artifact_server::ArtifactServer;
use mesoflow_scheduler::resource_manager::{
    ResourceManagerDriver, WorkerEvent, WorkerId, WorkerSpec,
    mesos::{
        ExecutorArtifact, FrameworkSettings, MesosDriver, MesosDriverConfig, TaskSettings,
        TaskSpecBuilder, WorkerPlacement,
    },
};
use mesoflow_tests::cluster::{AgentSpec, Cluster, ClusterConfig};
use prost::Message as _;
use tokio::sync::mpsc;

/// The `mesoflow-executor` binary of this build.
fn executor_binary() -> PathBuf {
    mesoflow_tests::workspace::binary("mesoflow-executor")
}

/// The scheduler's own artifact server, serving this build's executor.
async fn artifact_server() -> ArtifactServer {
    ArtifactServer::start(&executor_binary(), ([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

/// A long probe instead of a TaskManager: it reports RUNNING and waits to be killed.
struct LongProbe;

impl TaskSpecBuilder for LongProbe {
    fn task_data(
        &self,
        _worker: &WorkerId,
        _spec: &WorkerSpec,
        placement: &WorkerPlacement,
    ) -> Result<Bytes, String> {
        assert!(placement.data_port >= 31000 && placement.data_port <= 31010);
        let spec = TaskSpec {
            version: 1,
            kind: Some(task_spec::Kind::Probe(Probe {
                duration_ms: 600_000,
                exit_code: 0,
            })),
        };
        Ok(Bytes::from(spec.encode_to_vec()))
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<WorkerEvent>) -> WorkerEvent {
    tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("a worker event within 30 s")
        .expect("driver alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesos_driver_launches_releases_and_tears_down() {
    let artifacts = artifact_server().await;
    let uri = artifacts.executor_url("127.0.0.1");
    let agent = |zone: &str| AgentSpec {
        resources: "cpus:2;mem:2048;disk:1000;ports:[31000-31010]".into(),
        attributes: format!("zone:{zone}"),
    };
    let cluster = Cluster::start(ClusterConfig {
        agents: vec![agent("a"), agent("a"), agent("b")],
        heartbeat_interval: Duration::from_secs(1),
        allocation_interval: Duration::from_millis(50),
        status_update_retry_min: Duration::from_millis(500),
        executor_shutdown_grace_period: Duration::from_secs(2),
        ..ClusterConfig::default()
    })
    .await
    .unwrap();

    let config = MesosDriverConfig {
        master: cluster.master_url(),
        framework: FrameworkSettings {
            name: "mesoflow-rm-test".into(),
            role: "mesoflow".into(),
            principal: None,
            secret: None,
            user: "mesoflow".into(),
            failover_timeout: Duration::from_secs(3600),
        },
        tasks: TaskSettings {
            cpus: 0.5,
            mem_mb: 256,
            disk_mb: 64,
            uris: vec![],
            labels: vec![("purpose".into(), "test".into())],
            bootstrap_cmd: None,
            hostname: None,
            launch_timeout: Duration::from_secs(60),
        },
        constraints: vec![("zone".into(), "a".into())],
        refuse: Duration::from_secs(5),
        maximum_failed_tasks: Some(0),
        executor: ExecutorArtifact { uri, cache: false },
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut driver = MesosDriver::start(config, Box::new(LongProbe), tx).unwrap();
    let spec = WorkerSpec {
        slots: 1,
        cpus: 0.5,
        memory_mb: 256,
    };
    driver
        .request_worker(&WorkerId::from("tm-1"), &spec)
        .unwrap();
    driver
        .request_worker(&WorkerId::from("tm-2"), &spec)
        .unwrap();

    let mut started = Vec::new();
    while started.len() < 2 {
        match next_event(&mut events).await {
            WorkerEvent::Started { id, pid } => {
                assert_eq!(pid, None);
                started.push(id.0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    started.sort();
    assert_eq!(started, ["tm-1", "tm-2"]);

    let framework = cluster.framework_ids().remove(0);
    let executors = cluster.executors();
    assert_eq!(executors.len(), 2, "{executors:?}");
    for (_, fw, executor, _, sandbox) in &executors {
        assert_eq!(fw, &framework);
        assert!(executor == "tm-1" || executor == "tm-2");
        assert!(sandbox.join("mesoflow-executor").is_file());
    }
    // The constraint kept both away from the zone-b agent.
    let zone_b = cluster.agent_ids()[2].clone();
    assert!(executors.iter().all(|(agent, ..)| agent != &zone_b));
    assert_eq!(
        cluster.task_state(&framework, "tm-1"),
        Some(TaskState::TaskRunning)
    );
    let metrics = driver.metrics();
    assert_eq!(metrics.workers_launched, 2);
    assert_eq!(metrics.running_workers, 2);
    assert_eq!(metrics.pending_demand, 0);
    assert_eq!(metrics.tasks_failed, 0);

    driver.release_worker(&WorkerId::from("tm-1"));
    match next_event(&mut events).await {
        WorkerEvent::Exited { id, reason } => {
            assert_eq!(id.0, "tm-1");
            assert!(reason.starts_with("TASK_KILLED"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(driver.metrics().running_workers, 1);

    driver.shutdown(Duration::from_secs(20)).await.unwrap();
    match next_event(&mut events).await {
        WorkerEvent::Exited { id, .. } => assert_eq!(id.0, "tm-2"),
        other => panic!("unexpected {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cluster.executors().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.executors(), vec![], "no executor left");
    assert!(
        !cluster.framework_ids().contains(&framework),
        "the framework is torn down"
    );
}
