//! Scale of the Mesos ResourceManager's policy, without sockets: offers from 10,000 agents fed
//! to the pure state machine.
//!
//! Prints (1) offers handled per second when there is no demand (every offer declined) and with
//! demand (offers too small, declined after the fit check), and (2) the time to place 5,000
//! executors from rounds of offers, including building every TaskInfo.
//!
//! Run with `cargo bench -p mesoflow-scheduler --bench offers`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_proto::mesos::v1::{
    AgentId, Attribute, FrameworkId, Offer, OfferId, Resource, TaskId, TaskState, TaskStatus,
    resource, value,
};
use mesoflow_scheduler::resource_manager::{
    WorkerId, WorkerSpec,
    mesos::{
        Action, ExecutorArtifact, FrameworkSettings, MesosDriverConfig, MesosResourceManager,
        TaskSettings, TaskSpecBuilder, WorkerPlacement,
    },
};

const AGENTS: usize = 10_000;
const WORKERS: usize = 5_000;
const ROLE: &str = "mesoflow";

struct SpecBytes;

impl TaskSpecBuilder for SpecBytes {
    fn task_data(
        &self,
        worker: &WorkerId,
        _spec: &WorkerSpec,
        placement: &WorkerPlacement,
    ) -> Result<Bytes, String> {
        // About the size of a real TaskSpec's fixed part.
        Ok(Bytes::from(format!(
            "{worker}@{}:{}:{}",
            placement.hostname,
            placement.data_port,
            "x".repeat(256)
        )))
    }
}

fn config() -> MesosDriverConfig {
    MesosDriverConfig {
        master: "127.0.0.1:5050".into(),
        framework: FrameworkSettings {
            name: "bench".into(),
            role: ROLE.into(),
            principal: None,
            secret: None,
            user: "mesoflow".into(),
            failover_timeout: Duration::from_secs(3600),
        },
        tasks: TaskSettings {
            cpus: 2.0,
            mem_mb: 4096,
            disk_mb: 1024,
            uris: vec!["http://artifacts/conf.tar.gz".into()],
            labels: vec![("app".into(), "bench".into())],
            bootstrap_cmd: None,
            hostname: None,
            launch_timeout: Duration::from_secs(120),
        },
        constraints: vec![("zone".into(), "a".into())],
        refuse: Duration::from_secs(5),
        maximum_failed_tasks: None,
        executor: ExecutorArtifact {
            uri: "http://artifacts/mesoflow-executor.tar.gz".into(),
            cache: true,
        },
    }
}

fn offer(round: usize, agent: usize, cpus: f64, mem: f64) -> Offer {
    let alloc = Some(resource::AllocationInfo {
        role: Some(ROLE.into()),
    });
    let scalar = |name: &str, v: f64| Resource {
        name: name.into(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: v }),
        allocation_info: alloc.clone(),
        ..Default::default()
    };
    Offer {
        id: OfferId {
            value: format!("o-{round}-{agent}"),
        },
        framework_id: FrameworkId { value: "fw".into() },
        agent_id: AgentId {
            value: format!("agent-{agent}"),
        },
        hostname: format!("node{agent}.example"),
        resources: vec![
            scalar("cpus", cpus),
            scalar("mem", mem),
            scalar("disk", 100_000.0),
            Resource {
                name: "ports".into(),
                r#type: value::Type::Ranges as i32,
                ranges: Some(value::Ranges {
                    range: vec![value::Range {
                        begin: 31000,
                        end: 32000,
                    }],
                }),
                allocation_info: alloc.clone(),
                ..Default::default()
            },
        ],
        attributes: vec![Attribute {
            name: "zone".into(),
            r#type: value::Type::Text as i32,
            text: Some(value::Text {
                value: if agent.is_multiple_of(10) { "b" } else { "a" }.into(),
            }),
            ..Default::default()
        }],
        allocation_info: alloc,
        ..Default::default()
    }
}

fn machine() -> MesosResourceManager {
    let mut m = MesosResourceManager::new(&config(), Box::new(SpecBytes));
    m.handle_subscribed(Instant::now(), FrameworkId { value: "fw".into() });
    while m.poll_action().is_some() {}
    m
}

fn drain(m: &mut MesosResourceManager) -> (usize, usize) {
    let (mut accepts, mut declines) = (0, 0);
    while let Some(a) = m.poll_action() {
        match a {
            Action::Accept { operations, .. } => {
                accepts += operations
                    .iter()
                    .map(|op| op.launch.as_ref().map_or(0, |l| l.task_infos.len()))
                    .sum::<usize>()
            }
            Action::Decline { offer_ids, .. } => declines += offer_ids.len(),
            _ => {}
        }
    }
    (accepts, declines)
}

fn offers_per_second(label: &str, demand: usize, cpus: f64) {
    let mut m = machine();
    let now = Instant::now();
    let spec = WorkerSpec {
        slots: 2,
        cpus: 2.0,
        memory_mb: 4096,
    };
    for i in 0..demand {
        m.request_worker(now, &WorkerId(format!("tm-{i}")), &spec)
            .unwrap();
    }
    drain(&mut m);
    let rounds = 5;
    let batches: Vec<Vec<Offer>> = (0..rounds)
        .map(|r| (0..AGENTS).map(|a| offer(r, a, cpus, 8192.0)).collect())
        .collect();
    let start = Instant::now();
    let mut declined = 0;
    for batch in batches {
        // Mesos sends offers in batches of a few hundred per allocation cycle.
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            m.handle_offers(now, batch.by_ref().take(500).collect());
            declined += drain(&mut m).1;
        }
    }
    let elapsed = start.elapsed();
    let handled = rounds * AGENTS;
    assert_eq!(declined, handled);
    println!(
        "{label}: {handled} offers in {:.1} ms = {:.0} offers/s",
        elapsed.as_secs_f64() * 1e3,
        handled as f64 / elapsed.as_secs_f64()
    );
}

fn place_workers() {
    let mut m = machine();
    let mut now = Instant::now();
    let spec = WorkerSpec {
        slots: 2,
        cpus: 2.0,
        memory_mb: 4096,
    };
    let start = Instant::now();
    for i in 0..WORKERS {
        m.request_worker(now, &WorkerId(format!("tm-{i}")), &spec)
            .unwrap();
    }
    drain(&mut m);
    // Each agent fits one worker per offer (2 + 0.01 cpus of 3); one agent in ten is in the
    // wrong zone. Offers come in allocation cycles of 500 across all agents.
    let mut placed = 0;
    let mut offers_seen = 0;
    let mut round = 0;
    while placed < WORKERS {
        for chunk in (0..AGENTS).collect::<Vec<_>>().chunks(500) {
            let batch: Vec<Offer> = chunk
                .iter()
                .map(|&a| offer(round, a, 3.0, 8192.0))
                .collect();
            offers_seen += batch.len();
            m.handle_offers(now, batch);
            placed += drain(&mut m).0;
            if placed >= WORKERS {
                break;
            }
        }
        round += 1;
    }
    let placing = start.elapsed();
    // Every task reports RUNNING.
    now += Duration::from_secs(1);
    let running_start = Instant::now();
    for i in 0..WORKERS {
        m.handle_update(
            now,
            &TaskStatus {
                task_id: TaskId {
                    value: format!("tm-{i}"),
                },
                state: TaskState::TaskRunning as i32,
                ..Default::default()
            },
        );
    }
    drain(&mut m);
    let running = running_start.elapsed();
    let metrics = m.metrics();
    assert_eq!(metrics.workers_launched as usize, WORKERS);
    assert_eq!(metrics.running_workers, WORKERS);
    println!(
        "placed {WORKERS} executors on {AGENTS} agents in {:.1} ms ({offers_seen} offers, {} \
         rounds); {WORKERS} RUNNING updates in {:.1} ms",
        placing.as_secs_f64() * 1e3,
        round.max(1),
        running.as_secs_f64() * 1e3
    );
    assert!(placing < Duration::from_secs(10), "target: under 10 s");
}

fn main() {
    offers_per_second("no demand (decline)", 0, 3.0);
    offers_per_second(
        "5000 pending, offers too small (fit check, decline)",
        5_000,
        1.0,
    );
    place_workers();
}
