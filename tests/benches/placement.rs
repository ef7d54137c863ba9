//! Scale of the Mesos ResourceManager driver through the test master: 1,000 agents, the real
//! scheduler client and HTTP API, and a real `mesoflow-executor` process per worker, fetched over
//! HTTP through the agents' fetcher cache (a long `Probe` task stands in for a TaskManager).
//!
//! One run: start the cluster (allocation interval 1 s, a real master's default), start
//! `MesosDriver`, wait until it is subscribed and idle (offers suppressed), then request every
//! worker at once and measure
//! - **placed**: until the master knows a task for every worker, i.e. every ACCEPT with its
//!   LAUNCH was taken (read from the master's framework view);
//! - **running**: until `WorkerEvent::Started` (TASK_RUNNING) arrived for every worker, i.e.
//!   every executor process was fetched, started, registered and ran its task.
//!
//! Both need a fetch and a process per worker, so on a small machine measure placement with
//! many workers and `running` with fewer (the numbers say which count they are for).
//!
//! Build the executor first, then run (flags after `--`):
//!
//! ```text
//! cargo build --release -p mesoflow-executor
//! cargo bench -p mesoflow-tests --bench placement -- --workers 500 --runs 3
//! ```
//!
//! Flags: `--agents N` (1000), `--workers N` (500), `--runs N` (3), `--placed-only` (shut down
//! as soon as every worker is placed instead of waiting for RUNNING).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_proto::internal::{Probe, TaskSpec, task_spec};
use mesoflow_scheduler::artifact_server::ArtifactServer;
use mesoflow_scheduler::resource_manager::{
    ResourceManagerDriver, WorkerEvent, WorkerId, WorkerSpec,
    mesos::{
        ExecutorArtifact, FrameworkSettings, MesosDriver, MesosDriverConfig, MesosMetrics,
        TaskSettings, TaskSpecBuilder, WorkerPlacement,
    },
};
use mesoflow_tests::cluster::{AgentSpec, Cluster, ClusterConfig};
use prost::Message as _;
use tokio::sync::mpsc;

/// Small agents: one worker each (0.5 + 0.01 CPUs), five ports.
const AGENT_RESOURCES: &str = "cpus:1;mem:1024;ports:[31000-31004]";
/// How long a phase may take before the run is given up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the master's view and the driver's counters are read.
const POLL: Duration = Duration::from_millis(1);

struct Args {
    agents: usize,
    workers: usize,
    runs: usize,
    placed_only: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        agents: 1000,
        workers: 500,
        runs: 3,
        placed_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number, e.g. `{name} 500`"))
        };
        match flag.as_str() {
            "--agents" => args.agents = number("--agents"),
            "--workers" => args.workers = number("--workers"),
            "--runs" => args.runs = number("--runs").max(1),
            "--placed-only" => args.placed_only = true,
            // `cargo bench` passes `--bench` to every harness-less bench.
            "--bench" => {}
            other => panic!(
                "unknown flag '{other}': use --agents N, --workers N, --runs N, --placed-only"
            ),
        }
    }
    assert!(
        args.workers <= args.agents,
        "--workers {} > --agents {}: each agent holds one worker",
        args.workers,
        args.agents
    );
    args
}

/// The `mesoflow-executor` binary of the same profile (`target/release`).
fn executor_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("mesoflow-executor");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --release -p mesoflow-executor` first",
        binary.display()
    );
    binary
}

/// The scheduler's own artifact server, serving this build's executor.
async fn artifact_server() -> ArtifactServer {
    ArtifactServer::start(&executor_binary(), ([127, 0, 0, 1], 0).into())
        .await
        .expect("the artifact server starts")
}

/// A probe that reports RUNNING and waits to be killed, in place of a TaskManager.
struct LongProbe;

impl TaskSpecBuilder for LongProbe {
    fn task_data(
        &self,
        _worker: &WorkerId,
        _spec: &WorkerSpec,
        _placement: &WorkerPlacement,
    ) -> Result<Bytes, String> {
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

fn driver_config(master: String, executor_uri: String) -> MesosDriverConfig {
    MesosDriverConfig {
        master,
        framework: FrameworkSettings {
            name: "mesoflow-placement-bench".into(),
            role: "mesoflow".into(),
            principal: None,
            secret: None,
            user: "mesoflow".into(),
            failover_timeout: Duration::from_secs(3600),
        },
        tasks: TaskSettings {
            cpus: 0.5,
            mem_mb: 256,
            disk_mb: 0,
            uris: vec![],
            labels: vec![],
            bootstrap_cmd: None,
            hostname: None,
            launch_timeout: PHASE_TIMEOUT,
        },
        constraints: vec![],
        refuse: Duration::from_secs(5),
        maximum_failed_tasks: Some(0),
        // The agents' fetcher cache: one download, then a hard link per sandbox.
        executor: ExecutorArtifact {
            uri: executor_uri,
            cache: true,
        },
    }
}

/// One run's figures.
struct Run {
    idle: Duration,
    first_offer: Duration,
    accepts_sent: Duration,
    placed: Duration,
    running: Option<Duration>,
    shutdown: Duration,
    /// Counters just after placement (the offers of this request only) and at the end.
    at_placed: MesosMetrics,
    at_end: MesosMetrics,
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

async fn run_once(args: &Args, executor_uri: &str) -> Run {
    let cluster = Cluster::start(ClusterConfig {
        agents: vec![AgentSpec::new(AGENT_RESOURCES); args.agents],
        // A real master's default, stated rather than inherited.
        allocation_interval: Duration::from_secs(1),
        executor_registration_timeout: PHASE_TIMEOUT,
        // The executor binary is ~50 MB: a copy per sandbox would be 25 GB for 500 workers.
        link_cached_artifacts: true,
        ..ClusterConfig::default()
    })
    .await
    .expect("start the test cluster");

    let (tx, mut events) = mpsc::unbounded_channel();
    let started_at = Instant::now();
    let mut driver = MesosDriver::start(
        driver_config(cluster.master_url(), executor_uri.to_string()),
        Box::new(LongProbe),
        tx,
    )
    .expect("start the driver");

    // Subscribed, the first round of offers declined, offers suppressed: an idle framework.
    let mut framework = None;
    wait_until("the driver to subscribe and suppress offers", || {
        framework = framework.clone().or_else(|| cluster.framework_ids().pop());
        framework
            .as_deref()
            .and_then(|fw| cluster.framework_view(fw))
            .is_some_and(|view| !view.suppressed.is_empty())
    })
    .await;
    let framework = framework.expect("subscribed");
    let idle = started_at.elapsed();
    let before = driver.metrics();

    let spec = WorkerSpec {
        slots: 1,
        cpus: 0.5,
        memory_mb: 256,
    };
    let t0 = Instant::now();
    for i in 0..args.workers {
        driver
            .request_worker(&WorkerId::from(format!("tm-{i}").as_str()), &spec)
            .expect("request a worker");
    }

    let mut first_offer = None;
    let mut accepts_sent = None;
    let mut placed = None;
    let mut started = 0;
    let deadline = t0 + PHASE_TIMEOUT;
    let mut at_placed = None;
    loop {
        while let Ok(event) = events.try_recv() {
            match event {
                WorkerEvent::Started { .. } => started += 1,
                WorkerEvent::Exited { id, reason } => panic!("{id} exited: {reason}"),
            }
        }
        let now = t0.elapsed();
        let m = driver.metrics();
        if first_offer.is_none() && m.offers_received > before.offers_received {
            first_offer = Some(now);
        }
        if accepts_sent.is_none() && m.workers_launched as usize == args.workers {
            accepts_sent = Some(now);
        }
        if placed.is_none()
            && cluster
                .framework_view(&framework)
                .is_some_and(|v| v.tasks.len() == args.workers)
        {
            placed = Some(now);
            at_placed = Some(m);
        }
        if placed.is_some() && (args.placed_only || started == args.workers) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gave up: {started} of {} workers running, placed: {placed:?}",
            args.workers
        );
        tokio::time::sleep(POLL).await;
    }
    let running = (started == args.workers).then(|| t0.elapsed());

    let at_end = driver.metrics();
    let t1 = Instant::now();
    driver
        .shutdown(Duration::from_secs(120))
        .await
        .expect("the framework is torn down");
    let shutdown = t1.elapsed();
    cluster.shutdown();
    drop(cluster);

    Run {
        idle,
        first_offer: first_offer.expect("an offer"),
        accepts_sent: accepts_sent.expect("every ACCEPT sent"),
        placed: placed.expect("placed"),
        running,
        shutdown,
        at_placed: delta(&at_placed.expect("placed"), &before),
        at_end: delta(&at_end, &before),
    }
}

/// Counters since `before` (the offers at subscription excluded).
fn delta(m: &MesosMetrics, before: &MesosMetrics) -> MesosMetrics {
    MesosMetrics {
        offers_received: m.offers_received - before.offers_received,
        offers_declined: m.offers_declined - before.offers_declined,
        ..*m
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let args = parse_args();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let artifacts = artifact_server().await;
        let uri = artifacts.executor_url("127.0.0.1");
        println!(
            "{} agents ({AGENT_RESOURCES}), {} workers (real executor, Probe task), \
             allocation interval 1 s, {} run(s){}",
            args.agents,
            args.workers,
            args.runs,
            if args.placed_only {
                ", placement only"
            } else {
                ""
            }
        );
        let mut runs = Vec::new();
        for i in 1..=args.runs {
            let run = run_once(&args, &uri).await;
            println!(
                "run {i}: idle after {}; from the requests: first offer {}, ACCEPTs sent {}, \
                 placed {} ({:.0} placements/s), running {}; offers received {} declined {}; \
                 shutdown {}",
                ms(run.idle),
                ms(run.first_offer),
                ms(run.accepts_sent),
                ms(run.placed),
                args.workers as f64 / run.placed.as_secs_f64(),
                run.running.map_or("not waited for".into(), ms),
                run.at_placed.offers_received,
                run.at_placed.offers_declined,
                ms(run.shutdown),
            );
            assert_eq!(run.at_end.workers_launched as usize, args.workers);
            assert_eq!(run.at_end.tasks_failed, 0);
            runs.push(run);
        }
        let placed = median(runs.iter().map(|r| r.placed).collect());
        println!(
            "median of {}: first offer {}, ACCEPTs sent {}, placed {} ({:.0} placements/s)",
            runs.len(),
            ms(median(runs.iter().map(|r| r.first_offer).collect())),
            ms(median(runs.iter().map(|r| r.accepts_sent).collect())),
            ms(placed),
            args.workers as f64 / placed.as_secs_f64(),
        );
        let running: Vec<Duration> = runs.iter().filter_map(|r| r.running).collect();
        if running.len() == runs.len() {
            let running = median(running);
            println!(
                "median of {}: all {} running {} ({:.0} workers started/s)",
                runs.len(),
                args.workers,
                ms(running),
                args.workers as f64 / running.as_secs_f64(),
            );
        }
    });
}
