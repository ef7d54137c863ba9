//! `mesoflow-scheduler` as a Mesos framework, end to end: the real scheduler binary subscribes
//! to the test master, launches real `mesoflow-executor`s that the test agents fetch from its
//! artifact server, and runs jobs that the real `mesoflow` CLI submits over REST.
//!
//! Results are compared with the same job run in one process by the engine itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesoflow_proto::mesos::v1::TaskState;
use mesoflow_tests::cluster::{AgentSpec, Cluster, ClusterConfig};
use mesoflow_tests::master::{AgentRemoval, FrameworkView};
use mesoflow_tests::workspace::{binary, reference};

/// A running `mesoflow-scheduler`, its stderr collected; killed when dropped.
struct Scheduler {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    rest: String,
}

impl Scheduler {
    /// Starts it with these `-D` settings and waits until it serves REST.
    fn start(settings: &[String]) -> Self {
        let mut cmd = Command::new(binary("mesoflow-scheduler"));
        for s in settings {
            cmd.arg(format!("-D{s}"));
        }
        cmd.env("MESOFLOW_EXECUTOR_BIN", binary("mesoflow-executor"))
            .env(
                "RUST_LOG",
                "info,mesoflow_dataplane=warn,mesoflow_scheduler::mesos=info",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("mesoflow-scheduler starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut scheduler = Self {
            child,
            lines,
            rest: String::new(),
        };
        let line = scheduler.wait_for_line("REST API at ", Duration::from_secs(60));
        scheduler.rest = line
            .split("REST API at ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("a URL after 'REST API at'")
            .to_owned();
        scheduler
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "mesoflow-scheduler exited ({status}) before logging '{needle}':\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no line with '{needle}' within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit; the exit code.
    fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "mesoflow-scheduler did not stop within {timeout:?} after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mesoflow <args> --jobmanager <rest>`; (exit code, stdout, stderr).
fn mesoflow(rest: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary("mesoflow"))
        .args(args)
        .env("MESOFLOW_JOBMANAGER", rest)
        .stdin(Stdio::null())
        .output()
        .expect("mesoflow runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ports each test agent offers.
const PORTS_PER_AGENT: u16 = 20;

/// A port range of its own for every agent: the test agents all live on 127.0.0.1, where real
/// agents would be different hosts, so their `ports` resources must not overlap (nor those of
/// tests running at the same time). Below the kernel's ephemeral range.
fn next_ports() -> (u16, u16) {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 40) as u16 * 300;
    let lo = base + NEXT.fetch_add(PORTS_PER_AGENT, Ordering::Relaxed) % 300;
    (lo, lo + PORTS_PER_AGENT - 1)
}

/// An agent with these cpus and attributes, its own ports, room for several TaskManagers.
fn agent(cpus: f64, attributes: &str) -> AgentSpec {
    let (lo, hi) = next_ports();
    let mut spec = AgentSpec::new(&format!("cpus:{cpus};mem:2048;disk:1000;ports:[{lo}-{hi}]"));
    spec.attributes = attributes.to_owned();
    spec
}

fn agents(n: usize) -> Vec<AgentSpec> {
    (0..n).map(|_| agent(2.0, "")).collect()
}

async fn start_cluster(agents: Vec<AgentSpec>) -> Cluster {
    Cluster::start(ClusterConfig {
        agents,
        ..ClusterConfig::default()
    })
    .await
    .expect("test cluster starts")
}

/// The settings every test uses: this cluster, small TaskManagers, everything on 127.0.0.1.
fn settings(cluster: &Cluster, initial_tasks: u32) -> Vec<String> {
    let master = cluster.master_url();
    let master = master
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    vec![
        format!("mesos.master={master}"),
        format!("mesos.initial-tasks={initial_tasks}"),
        "rest.port=0".into(),
        "jobmanager.rpc.port=0".into(),
        "mesos.resourcemanager.tasks.cpus=0.5".into(),
        "mesos.resourcemanager.tasks.mem=256".into(),
        "mesos.resourcemanager.tasks.disk=16".into(),
        "taskmanager.numberOfTaskSlots=1".into(),
        "heartbeat.interval=500ms".into(),
        "heartbeat.timeout=5s".into(),
        "restart-strategy.type=fixed-delay".into(),
        "restart-strategy.fixed-delay.attempts=3".into(),
        "restart-strategy.fixed-delay.delay=200ms".into(),
    ]
}

/// The one framework the master knows, once it is there.
async fn framework(cluster: &Cluster, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(id) = cluster.framework_ids().into_iter().next() {
            return id;
        }
        assert!(Instant::now() < deadline, "no framework subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds for the framework's view; returns that view.
async fn view_until(
    cluster: &Cluster,
    scheduler: &Scheduler,
    framework: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&FrameworkView) -> bool,
) -> FrameworkView {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(view) = cluster.framework_view(framework)
            && check(&view)
        {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; last view: {:?}\nscheduler log:\n{}",
            cluster.framework_view(framework),
            scheduler.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn running(view: &FrameworkView) -> usize {
    view.tasks
        .iter()
        .filter(|t| t.state == TaskState::TaskRunning as i32)
        .count()
}

async fn get_json(url: &str) -> serde_json::Value {
    let body = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .bytes()
        .await
        .expect("a body");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e})"))
}

fn words_file(dir: &Path, lines: usize) -> PathBuf {
    let path = dir.join("words.txt");
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!(
            "the quick brown fox {} jumps over the lazy dog {}\n",
            i % 97,
            i % 13
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_executors_launched_from_offers_and_sigterm_cleans_up() {
    let cluster = start_cluster(agents(3)).await;
    let mut scheduler = Scheduler::start(&settings(&cluster, 2));
    let fw = framework(&cluster, Duration::from_secs(30)).await;

    // Two TaskManagers at once, each with exactly the configured resources and one port.
    let view = view_until(
        &cluster,
        &scheduler,
        &fw,
        Duration::from_secs(60),
        "2 TaskManagers running",
        |v| running(v) == 2,
    )
    .await;
    for t in &view.tasks {
        assert_eq!((t.cpus, t.mem, t.disk), (0.5, 256.0, 16.0), "{t:?}");
        assert_eq!(t.ports.len(), 1, "{t:?}");
        let (lo, hi) = t.ports[0];
        assert!(lo == hi && lo >= 20_000, "{t:?}");
    }

    // The agents fetched the executor from the artifact server into each sandbox, and started
    // it with the agent's MESOS_* environment.
    let executors = cluster.executors();
    assert_eq!(executors.len(), 2, "{executors:?}");
    for (_, framework_id, executor_id, pid, sandbox) in &executors {
        assert_eq!(framework_id, &fw);
        let fetched = sandbox.join("mesoflow-executor");
        let expected = std::fs::metadata(binary("mesoflow-executor"))
            .unwrap()
            .len();
        assert_eq!(std::fs::metadata(&fetched).unwrap().len(), expected);
        let environ = std::fs::read(format!("/proc/{}/environ", pid.unwrap())).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        for var in [
            format!("MESOS_FRAMEWORK_ID={fw}"),
            format!("MESOS_EXECUTOR_ID={executor_id}"),
            "MESOS_AGENT_ENDPOINT=".into(),
            format!("MESOS_SANDBOX={}", sandbox.display()),
            "MESOS_CHECKPOINT=".into(),
        ] {
            assert!(environ.contains(&var), "{var} missing from {environ}");
        }
    }
    let metrics = reqwest::get(format!("{}/metrics", scheduler.rest))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fetches: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mesoflow_artifact_fetches_total "))
        .unwrap_or_else(|| panic!("no artifact fetch counter in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(fetches >= 1, "{metrics}");

    // A job submitted by the CLI gives the exact result, and the cluster lists it FINISHED.
    let dir = tempfile::tempdir().unwrap();
    let input = words_file(dir.path(), 20_000);
    let input = input.to_str().unwrap();
    let (code, stdout, stderr) = mesoflow(
        &scheduler.rest,
        &[
            "run",
            "wordcount",
            "-p",
            &format!("input={input}"),
            "--parallelism",
            "2",
            "--sink",
            "checksum",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}\n{}", scheduler.log());
    assert_eq!(
        stdout.trim(),
        reference("wordcount", &[("input", input)], 2),
        "{stderr}"
    );
    assert!(stderr.contains("wordcount finished"), "{stderr}");
    let (code, listing, stderr) = mesoflow(&scheduler.rest, &["list"]);
    assert_eq!(code, Some(0), "{stderr}");
    let row = listing
        .lines()
        .find(|l| l.contains("wordcount"))
        .unwrap_or_else(|| panic!("no wordcount row in\n{listing}"));
    assert!(row.contains("FINISHED"), "{listing}");
    let overview = get_json(&format!("{}/overview", scheduler.rest)).await;
    assert_eq!(overview["taskmanagers"], 2, "{overview}");
    assert_eq!(overview["jobs-finished"], 1, "{overview}");

    // SIGTERM: every executor goes, every terminal update is acknowledged, the framework is
    // torn down.
    assert_eq!(scheduler.terminate(Duration::from_secs(60)), Some(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.executors().is_empty() {
        assert!(
            Instant::now() < deadline,
            "executors left: {:?}",
            cluster.executors()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cluster.unacknowledged_updates(&fw), 0);
    assert!(
        !cluster.framework_ids().contains(&fw),
        "the framework was not torn down:\n{}",
        scheduler.log()
    );
}

/// Runs a long job through the CLI and, once it runs, lets `disrupt` take a TaskManager away;
/// the job must restart on a replacement and still give the exact result.
async fn survives(disrupt: impl FnOnce(&Cluster, &str, &str)) {
    let cluster = start_cluster(agents(3)).await;
    let scheduler = Scheduler::start(&settings(&cluster, 2));
    let fw = framework(&cluster, Duration::from_secs(30)).await;
    view_until(
        &cluster,
        &scheduler,
        &fw,
        Duration::from_secs(60),
        "2 TaskManagers running",
        |v| running(v) == 2,
    )
    .await;
    let params = [("keys", "1000"), ("events", "20000000")];
    let expected = reference("windowed-count", &params, 2);
    let rest = scheduler.rest.clone();
    let run = std::thread::spawn(move || {
        let mut args = vec![
            "run",
            "windowed-count",
            "--parallelism",
            "2",
            "--sink",
            "checksum",
        ];
        let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for p in &pairs {
            args.extend(["-p", p.as_str()]);
        }
        mesoflow(&rest, &args)
    });
    // Wait until the job's subtasks run, then take one TaskManager away.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = get_json(&format!("{}/jobs/overview", scheduler.rest)).await;
        let tasks = &jobs["jobs"][0]["tasks"];
        if jobs["jobs"][0]["state"] == "RUNNING"
            && tasks["running"].as_u64().is_some_and(|n| n > 0)
            && tasks["running"] == tasks["total"]
        {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not start: {jobs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before: Vec<String> = cluster.executors().into_iter().map(|e| e.2).collect();
    let victim = cluster.executors()[0].clone();
    disrupt(&cluster, &victim.0, &victim.2);

    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run.join().unwrap())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stderr}\n{}", scheduler.log());
    assert_eq!(stdout.trim(), expected, "{stderr}");
    assert!(stderr.contains("restarted"), "{stderr}");
    // The lost TaskManager's task is gone, and a replacement was launched from a new offer:
    // two TaskManagers run, one of them new.
    let view = view_until(
        &cluster,
        &scheduler,
        &fw,
        Duration::from_secs(30),
        "a replacement",
        |v| running(v) == 2,
    )
    .await;
    let live: Vec<&str> = view
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::TaskRunning as i32)
        .map(|t| t.task_id.as_str())
        .collect();
    assert!(!live.contains(&victim.2.as_str()), "{view:?}");
    assert!(
        live.iter().any(|id| !before.contains(&id.to_string())),
        "{view:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_is_replaced_and_the_job_completes_exactly() {
    survives(|cluster, _agent, executor| {
        let fw = cluster.framework_ids()[0].clone();
        assert!(cluster.kill_executor(&fw, executor));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_agent_is_replaced_and_the_job_completes_exactly() {
    survives(|cluster, agent, _executor| {
        cluster.remove_agent(agent, AgentRemoval::Gone);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_that_do_not_fit_are_declined_and_demand_drives_suppress_and_revive() {
    let small = agent(0.25, "rack:r1");
    let elsewhere = agent(2.0, "rack:r2");
    let right = agent(2.0, "rack:r1");
    let cluster = start_cluster(vec![small, elsewhere, right]).await;
    let agents = cluster.agent_ids();
    let mut settings = settings(&cluster, 1);
    settings.push("mesos.constraints.hard.hostattribute=rack:r1".into());
    settings.push("mesos.resourcemanager.declined-offer-refuse-duration=7s".into());
    let scheduler = Scheduler::start(&settings);
    let fw = framework(&cluster, Duration::from_secs(30)).await;

    // The one TaskManager goes to the agent that fits; the others' offers are declined with
    // the configured refuse_seconds; with nothing more to launch, offers are suppressed.
    let view = view_until(
        &cluster,
        &scheduler,
        &fw,
        Duration::from_secs(60),
        "launched and suppressed",
        |v| running(v) == 1 && !v.suppressed.is_empty(),
    )
    .await;
    assert_eq!(view.tasks[0].agent_id, agents[2], "{view:?}");
    assert!(!view.declines.is_empty(), "{view:?}");
    assert!(view.declines.iter().all(|d| *d == Some(7.0)), "{view:?}");

    // A job that needs a second TaskManager revives offers and gets it on the same agent.
    let (code, stdout, stderr) = mesoflow(
        &scheduler.rest,
        &[
            "run",
            "windowed-count",
            "-p",
            "keys=100",
            "-p",
            "events=100000",
            "--parallelism",
            "2",
            "--sink",
            "checksum",
            "--detached",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let job_id = stdout.trim().rsplit(' ').next().unwrap().to_owned();
    let view = view_until(
        &cluster,
        &scheduler,
        &fw,
        Duration::from_secs(60),
        "a second TaskManager",
        |v| v.tasks.len() == 2,
    )
    .await;
    assert!(
        view.tasks.iter().all(|t| t.agent_id == agents[2]),
        "{view:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = get_json(&format!("{}/jobs/{job_id}", scheduler.rest)).await;
        if job["state"] == "FINISHED" {
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Demand is gone again: suppressed.
    view_until(
        &cluster,
        &scheduler,
        &fw,
        Duration::from_secs(30),
        "suppressed again",
        |v| !v.suppressed.is_empty(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framework_with_credentials_registers_and_a_wrong_secret_is_refused_without_a_storm() {
    let cluster = Cluster::start(ClusterConfig {
        agents: agents(1),
        credentials: Some(vec![("mesoflow".into(), "s3cret".into())]),
        ..ClusterConfig::default()
    })
    .await
    .unwrap();
    let mut good = settings(&cluster, 1);
    good.push("mesos.resourcemanager.framework.principal=mesoflow".into());
    good.push("mesos.resourcemanager.framework.secret=s3cret".into());
    let scheduler = Scheduler::start(&good);
    let fw = framework(&cluster, Duration::from_secs(30)).await;
    view_until(
        &cluster,
        &scheduler,
        &fw,
        Duration::from_secs(60),
        "a TaskManager running",
        |v| running(v) == 1,
    )
    .await;
    drop(scheduler);

    let mut bad = settings(&cluster, 1);
    bad.push("mesos.resourcemanager.framework.principal=mesoflow".into());
    bad.push("mesos.resourcemanager.framework.secret=wrong".into());
    let mut cmd = Command::new(binary("mesoflow-scheduler"));
    for s in &bad {
        cmd.arg(format!("-D{s}"));
    }
    let started = Instant::now();
    let out = cmd
        .env("MESOFLOW_EXECUTOR_BIN", binary("mesoflow-executor"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("401") || stderr.contains("authenticat"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
}

/// A standalone session cluster (no `mesos.master`): TaskManagers are local processes.
fn standalone(extra: &[&str]) -> Scheduler {
    let mut settings: Vec<String> = vec![
        "rest.port=0".into(),
        "jobmanager.rpc.port=0".into(),
        "mesos.initial-tasks=1".into(),
    ];
    settings.extend(extra.iter().map(|s| s.to_string()));
    Scheduler::start(&settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_refuses_bad_requests_with_a_message_and_keeps_serving() {
    let mut scheduler = standalone(&["rest.token=t0ken"]);
    let client = reqwest::Client::new();
    let rest = scheduler.rest.clone();
    let overview = format!("{rest}/overview");
    // No token, a wrong one: 401. The right one: 200.
    assert_eq!(client.get(&overview).send().await.unwrap().status(), 401);
    let wrong = client
        .get(&overview)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client
        .get(&overview)
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let post = |body: &'static str| {
        client
            .post(format!("{rest}/jobs"))
            .bearer_auth("t0ken")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, status, needle) in [
        ("{\"job\": \"wordcount\",", 400, ""),
        ("{\"job\": \"no-such-job\"}", 400, "no-such-job"),
        (
            "{\"job\": \"wordcount\", \"parallelism\": \"two\"}",
            400,
            "parallelism",
        ),
        (
            "{\"job\": \"windowed-count\", \"parameters\": {\"events\": \"many\"}}",
            400,
            "events",
        ),
    ] {
        let response = post(body).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let message = error["errors"][0].as_str().unwrap_or_default().to_owned();
        assert!(!message.is_empty(), "{body}: {error}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let unknown = client
        .get(format!("{rest}/jobs/0123456789abcdef0123456789abcdef"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // Still serving, and the CLI with the token works.
    let ok = client
        .get(&overview)
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let out = Command::new(binary("mesoflow"))
        .args(["list", "--jobmanager", &rest, "--token", "t0ken"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(scheduler.terminate(Duration::from_secs(30)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_session_cluster_runs_jobs_submitted_by_the_cli() {
    let scheduler = standalone(&[]);
    let (code, stdout, stderr) = mesoflow(
        &scheduler.rest,
        &[
            "run",
            "windowed-count",
            "-p",
            "keys=1000",
            "-p",
            "events=200000",
            "--parallelism",
            "2",
            "--sink",
            "checksum",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}\n{}", scheduler.log());
    let params = [("keys", "1000"), ("events", "200000")];
    assert_eq!(stdout.trim(), reference("windowed-count", &params, 2));
}

#[test]
fn an_invalid_setting_is_refused_naming_its_key() {
    let out = Command::new(binary("mesoflow-scheduler"))
        .arg("-Dmesos.initial-tasks=two")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("mesos.initial-tasks"), "{stderr}");
}
