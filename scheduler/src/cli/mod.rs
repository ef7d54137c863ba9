//! The `mesoflow` command-line tool: `run` a built-in job on the embedded local cluster (a
//! JobManager in this process, TaskManagers as local `mesoflow-executor` processes) or, with
//! `--jobmanager`, on a session cluster through its REST API; `list` and `cancel` a cluster's
//! jobs; list the built-in `jobs`.

pub mod local_cluster;
pub mod remote;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use mesoflow_dataplane::SinkSpec;
use mesoflow_dataplane::checksum::checksum_line;
use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::runtime::JobResult;

use crate::config::{Configuration, LoadOptions};
use crate::job_manager::placement::slots_needed;
use crate::job_manager::request::{self, ExecutionDefaults, JobRequest, SinkRequest};
use crate::job_manager::session::{self, SessionHandle, SessionIo, SessionNotice};
use crate::job_manager::{
    Dispatcher, DispatcherConfig, JobEvent, JobManagerConfig, JobOutcome, JobStatus, JobSubmission,
    JobView,
};
use crate::resource_manager::{LocalProcessDriver, WorkerSpec, find_executor_binary};
use local_cluster::LocalCluster;

/// mesoflow: a stateful stream processor for Apache Mesos.
#[derive(Debug, Parser)]
#[command(name = "mesoflow", version, about)]
pub struct Cli {
    /// Configuration override in Flink style, e.g. -Dparallelism.default=2 (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", global = true)]
    pub config: Vec<String>,
    /// Configuration file (YAML, flat or nested Flink keys); default: config.yaml, else
    /// flink-conf.yaml, in $MESOFLOW_CONF_DIR.
    #[arg(long = "config", value_name = "FILE", global = true)]
    pub config_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a built-in job on the embedded local runtime.
    Run(RunArgs),
    /// List the built-in jobs and their parameters.
    Jobs,
    /// List a cluster's jobs.
    List(ListArgs),
    /// Cancel a job on a cluster.
    Cancel(CancelArgs),
    /// Take a savepoint of a job on a cluster.
    Savepoint(SavepointArgs),
    /// Stop a job on a cluster with a savepoint (it ends FINISHED).
    Stop(StopArgs),
}

/// `mesoflow savepoint`.
#[derive(Debug, clap::Args)]
pub struct SavepointArgs {
    /// The job's id (32 hex digits, see `mesoflow list`).
    pub job_id: String,
    /// Directory to create the savepoint in (default: the cluster's state.savepoints.dir).
    pub target_directory: Option<String>,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `mesoflow stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// The job's id (32 hex digits, see `mesoflow list`).
    pub job_id: String,
    /// Directory to create the savepoint in (default: the cluster's state.savepoints.dir).
    #[arg(
        short = 'p',
        long = "savepoint",
        visible_alias = "savepointPath",
        value_name = "DIR"
    )]
    pub savepoint: Option<String>,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Which cluster to talk to.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// The JobManager's REST address, e.g. http://10.0.0.5:8081 (`run` without it runs locally).
    #[arg(long, env = "MESOFLOW_JOBMANAGER", value_name = "URL")]
    pub jobmanager: Option<String>,
    /// Bearer token for the REST API.
    #[arg(long, env = "MESOFLOW_REST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ClusterArgs {
    fn client(&self, command: &str) -> Result<remote::Client> {
        let Some(address) = &self.jobmanager else {
            bail!(
                "`mesoflow {command}` talks to a cluster: pass --jobmanager http://HOST:PORT \
                 (or set MESOFLOW_JOBMANAGER)"
            );
        };
        remote::Client::new(address, self.token.clone())
    }
}

/// `mesoflow list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `mesoflow cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The job's id (32 hex digits, see `mesoflow list`).
    pub job_id: String,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Where results go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// One line per record on stdout.
    Print,
    /// One part file per sink subtask under --output.
    File,
    /// Only `records=<N> checksum=<16 hex>` on stdout.
    Checksum,
    /// Nothing (count only).
    Discard,
}

/// `mesoflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Built-in job (see `mesoflow jobs`).
    pub job: String,
    /// Job parameter key=value (repeatable), e.g. -p input=examples/data/words.txt.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Default parallelism of every operator.
    #[arg(long)]
    pub parallelism: Option<u32>,
    /// Directory for part files (implies --sink file).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Where results go (default: file with --output, else print).
    #[arg(long, value_enum)]
    pub sink: Option<SinkKind>,
    /// TaskManager processes to start on this machine.
    #[arg(long, default_value_t = 1)]
    pub executors: u32,
    /// Slots per TaskManager (default: enough for the job's parallelism).
    #[arg(long)]
    pub slots: Option<u32>,
    /// With --jobmanager: print the job id and return instead of following the job.
    #[arg(long)]
    pub detached: bool,
    /// Savepoint (or retained checkpoint) directory to start from.
    #[arg(short = 's', long = "fromSavepoint", value_name = "PATH")]
    pub from_savepoint: Option<String>,
    /// Run on this cluster instead of locally.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs the CLI; returns the process exit code.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    // The JobManager's failures and restarts reach the user as notices (see `notice_line`);
    // its own log shows them only when MESOFLOW_LOG asks for it.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESOFLOW_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,mesoflow_scheduler::job_manager=error")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Jobs => {
            print!("{}", jobs_listing());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) if args.cluster.jobmanager.is_some() => run_remote(args, &cli.config),
        Command::Run(args) if args.detached => {
            bail!("--detached needs --jobmanager (a local run lives in this process)")
        }
        Command::Run(args) => run(args, &cli.config, cli.config_file),
        Command::List(args) => {
            let client = args.cluster.client("list")?;
            remote::block_on(remote::list(&client, &mut std::io::stdout()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Savepoint(args) => {
            let client = args.cluster.client("savepoint")?;
            remote::block_on(remote::savepoint(
                &client,
                &args.job_id,
                args.target_directory.as_deref(),
                false,
                SAVEPOINT_POLL,
                &mut std::io::stdout(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop(args) => {
            let client = args.cluster.client("stop")?;
            remote::block_on(remote::savepoint(
                &client,
                &args.job_id,
                args.savepoint.as_deref(),
                true,
                SAVEPOINT_POLL,
                &mut std::io::stdout(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel(args) => {
            let client = args.cluster.client("cancel")?;
            remote::block_on(remote::cancel(
                &client,
                &args.job_id,
                &mut std::io::stdout(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mesoflow run --jobmanager URL`: the cluster's configuration applies, not local flags.
fn run_remote(args: RunArgs, overrides: &[String]) -> Result<ExitCode> {
    if !overrides.is_empty() {
        eprintln!("note: -D overrides apply to local runs; the cluster's configuration is used");
    }
    if args.executors != 1 || args.slots.is_some() {
        eprintln!("note: --executors and --slots apply to local runs; the cluster has its own");
    }
    if args.parallelism == Some(0) {
        bail!("--parallelism must be positive");
    }
    let client = args.cluster.client("run")?;
    let sink = sink_spec(args.sink, args.output.clone())?;
    let checksum_line = matches!(sink, SinkSpec::Checksum);
    let mut request = job_request(&args.job, &args.params, args.parallelism, sink)?;
    request.savepoint_path = args.from_savepoint.clone();
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    remote::block_on(remote::run(
        &client,
        &request,
        remote::FollowOptions {
            detached: args.detached,
            checksum_line,
        },
        interrupt,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ))
}

/// How often `mesoflow savepoint` and `stop` ask whether the savepoint is done.
const SAVEPOINT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The text `mesoflow jobs` prints.
pub fn jobs_listing() -> String {
    let mut s = String::new();
    for j in jobs::catalog() {
        s.push_str(&format!("{}\n    {}\n", j.name, j.about));
        for p in j.params {
            let default = if p.default.is_empty() {
                String::new()
            } else {
                format!(" (default {})", p.default)
            };
            s.push_str(&format!("    -p {}=...  {}{}\n", p.name, p.help, default));
        }
        s.push('\n');
    }
    s
}

/// Resolves the sink from the flags.
pub fn sink_spec(sink: Option<SinkKind>, output: Option<PathBuf>) -> Result<SinkSpec> {
    Ok(match (sink, output) {
        (Some(SinkKind::File) | None, Some(dir)) => SinkSpec::Files(dir),
        (Some(SinkKind::File), None) => bail!("--sink file needs --output DIR"),
        (Some(other), Some(_)) => bail!("--output only goes with --sink file, not {other:?}"),
        (None | Some(SinkKind::Print), None) => SinkSpec::Print,
        (Some(SinkKind::Checksum), None) => SinkSpec::Checksum,
        (Some(SinkKind::Discard), None) => SinkSpec::Discard,
    })
}

fn run(args: RunArgs, overrides: &[String], config_file: Option<PathBuf>) -> Result<ExitCode> {
    let loaded = Configuration::load(&LoadOptions::from_process(config_file, overrides))?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let mut local = loaded.config;
    if let Some(p) = args.parallelism {
        if p == 0 {
            bail!("--parallelism must be positive");
        }
        local.execution.parallelism = p;
    }
    if args.executors == 0 {
        bail!("--executors must be at least 1");
    }
    if args.slots == Some(0) {
        bail!("--slots must be at least 1");
    }
    let sink = sink_spec(args.sink, args.output.clone())?;
    let is_checksum = matches!(sink, SinkSpec::Checksum);
    let request = job_request(&args.job, &args.params, args.parallelism, sink)?;
    // Build the job here first: a wrong name, parameter or graph fails before any process starts.
    let prepared = request::prepare(
        &request,
        &ExecutionDefaults {
            parallelism: local.execution.parallelism,
            max_parallelism: local.execution.max_parallelism,
            runtime: local.execution.runtime.clone(),
        },
    )?;
    let needed = slots_needed(&prepared.chains);
    let slots = args
        .slots
        .unwrap_or_else(|| needed.div_ceil(args.executors).max(1));
    if u64::from(slots) * u64::from(args.executors) < u64::from(needed) {
        bail!(
            "the job needs {needed} slots (its widest operator has parallelism {needed}) but \
             --executors {} x --slots {slots} give {}; raise one of them",
            args.executors,
            args.executors * slots
        );
    }
    tracing::info!(job = %args.job, graph = %prepared.graph_json, "starting");
    let executor_binary = find_executor_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let initial_restore = match &args.from_savepoint {
        Some(path) => Some(
            runtime
                .block_on(session::read_restore(path, &prepared.operator_ids))
                .context("cannot start from the savepoint")?,
        ),
        None => None,
    };
    let started = std::time::Instant::now();
    let job = LocalJob {
        submission: JobSubmission {
            job_id: rand::random(),
            definition: prepared.definition,
            chains: prepared.chains,
            source_chains: prepared.source_chains,
            checkpointing: local.checkpointing.clone(),
            initial_restore,
            submitted_at_ms: crate::job_manager::session::epoch_millis_now(),
        },
        name: prepared.display_name,
        vertex_names: prepared.vertex_names,
        executors: args.executors,
        slots,
    };
    let end = runtime.block_on(run_local(job, &local, executor_binary))?;
    let elapsed = started.elapsed();
    let outcome = match end {
        RunEnd::Finished(outcome) => outcome,
        // `mesoflow run ... | head`: the reader of stdout went away; stop quietly, as before.
        RunEnd::Failed(cause)
            if cause.contains(&mesoflow_dataplane::EngineError::OutputClosed.to_string()) =>
        {
            return Ok(ExitCode::SUCCESS);
        }
        RunEnd::Failed(cause) => bail!("job '{}' failed: {cause}", args.job),
        RunEnd::Cancelled => {
            eprintln!(
                "{} cancelled after {:.2} s",
                args.job,
                elapsed.as_secs_f64()
            );
            return Ok(if INTERRUPTED.load(std::sync::atomic::Ordering::Acquire) {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            });
        }
    };
    if is_checksum {
        println!("{}", checksum_line(outcome.records_out, outcome.checksum));
    }
    let result = JobResult {
        records_in: outcome.records_in,
        records_out: outcome.records_out,
        skipped: outcome.skipped,
        checksum: outcome.checksum,
        elapsed,
        cancelled: false,
    };
    eprintln!("{}", summary(&args.job, &result));
    if outcome.restarts > 0 {
        eprintln!("the job restarted {} time(s)", outcome.restarts);
    }
    if result.skipped > 0 {
        eprintln!(
            "warning: {} input line(s) could not be parsed and were skipped",
            result.skipped
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The request the flags of `mesoflow run` describe, locally or against a cluster.
pub fn job_request(
    job: &str,
    params: &[String],
    parallelism: Option<u32>,
    sink: SinkSpec,
) -> Result<JobRequest> {
    let sink = match sink {
        SinkSpec::Print => SinkRequest::Print,
        SinkSpec::Checksum => SinkRequest::Checksum,
        SinkSpec::Discard => SinkRequest::Discard,
        SinkSpec::Files(dir) => SinkRequest::Files {
            path: std::path::absolute(&dir)
                .with_context(|| format!("cannot resolve --output {}", dir.display()))?,
        },
        SinkSpec::Collect(_) => bail!("a collecting sink cannot run in TaskManager processes"),
    };
    let params = Params::parse(params)?;
    Ok(JobRequest {
        job: job.to_owned(),
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        parallelism,
        max_parallelism: None,
        sink,
        name: None,
        savepoint_path: None,
    })
}

/// A job for the embedded cluster, and the pool the flags ask for.
struct LocalJob {
    submission: JobSubmission,
    name: String,
    vertex_names: Vec<String>,
    /// TaskManagers to run it on (`--executors`).
    executors: u32,
    /// Slots of each (`--slots`, or enough for the job).
    slots: u32,
}

/// How a local run's job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RunEnd {
    /// Every subtask finished.
    Finished(JobOutcome),
    /// The restart strategy gave up, or the cluster could not go on.
    Failed(String),
    /// Cancelled (Ctrl-C).
    Cancelled,
}

/// How long released TaskManagers get to exit on their own (logging their last lines) before
/// the ones left are killed.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Runs one job on an embedded session cluster whose TaskManagers are local processes: starts
/// the cluster, submits, follows the job to its end (notices and the progress line on stderr;
/// Ctrl-C cancels it), then stops the cluster and waits for every TaskManager to exit.
async fn run_local(
    job: LocalJob,
    config: &Configuration,
    executor_binary: PathBuf,
) -> Result<RunEnd> {
    let cluster = LocalCluster::start(config.cluster.heartbeat_interval)?;
    tracing::info!(control = %cluster.server.local_addr(), "JobManager listening");
    let (events_tx, worker_events) = tokio::sync::mpsc::unbounded_channel();
    let mut tm_config = BTreeMap::new();
    // A local TaskManager whose JobManager does not answer soon is of no use.
    tm_config.insert("taskmanager.registration.timeout".into(), "30s".into());
    let driver =
        LocalProcessDriver::new(cluster.driver_config(executor_binary, tm_config), events_tx)?;
    let defaults = JobManagerConfig::default();
    let dispatcher = Dispatcher::new(
        DispatcherConfig {
            worker: WorkerSpec {
                slots: job.slots,
                cpus: defaults.worker_cpus,
                memory_mb: defaults.worker_memory_mb,
            },
            // TaskManagers start only for the job, as many as it asks for.
            min_workers: 0,
            idle_timeout: config.cluster.taskmanager_timeout,
            worker_prefix: format!("tm-{:08x}", rand::random::<u32>()),
            retained_jobs: 1,
            job: JobManagerConfig::from_config(config),
        },
        Instant::now(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (session, mut task) = session::start(
        dispatcher,
        SessionIo {
            server: cluster.server,
            driver,
            worker_events,
            shutdown: shutdown.clone(),
            shutdown_grace: RELEASE_WAIT,
        },
    );
    let (end, stopped) = tokio::select! {
        end = follow(&session, job) => {
            shutdown.cancel();
            (end, task.await)
        }
        // The cluster stops by itself only when its control endpoint is gone.
        stopped = &mut task => (
            Ok(RunEnd::Failed("the JobManager's control endpoint stopped".into())),
            stopped,
        ),
    };
    let driver = stopped.context("the local cluster's task failed")?;
    wait_for_exits(&driver).await;
    // Kills whatever is left.
    drop(driver);
    end
}

/// Submits the job and follows it to a terminal status, printing what happens on the way.
async fn follow(session: &SessionHandle, job: LocalJob) -> Result<RunEnd> {
    let job_id = job.submission.job_id;
    // Before the submission, so that no notice of the job is missed.
    let mut notices = session.notices();
    session.submit(
        job.submission,
        Some(job.name),
        job.vertex_names,
        Some(job.executors),
    )?;
    let on_ctrl_c = session.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::Release);
            eprintln!("\nstopping (Ctrl-C)...");
            // Refused only when the job has just ended, which is as good.
            let _ = on_ctrl_c.cancel(job_id);
        }
    });
    let status_of = session.clone();
    let progress = Progress::start(move || run_status(&status_of, job_id), job.executors);
    loop {
        match notices.recv().await {
            Ok(notice) => {
                if let Some(line) = notice_line(&notice, job_id) {
                    progress.println(&line);
                }
                if !matches!(
                    notice,
                    SessionNotice::Job { job_id: id, event: JobEvent::Status(status) }
                        if id == job_id && status.is_terminal()
                ) {
                    continue;
                }
            }
            // Missed notices: the job's view tells whether it ended meanwhile.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                bail!("the local cluster stopped while the job ran")
            }
        }
        if let Some(end) = session.job(job_id).and_then(|view| run_end(&view)) {
            return Ok(end);
        }
    }
}

/// How a job ended, once it has.
fn run_end(view: &JobView) -> Option<RunEnd> {
    let failure = || {
        view.failure
            .clone()
            .unwrap_or_else(|| "the job ended without a result".into())
    };
    Some(match (view.status, view.outcome) {
        (JobStatus::Finished, Some(outcome)) => RunEnd::Finished(outcome),
        (JobStatus::Cancelled, _) => RunEnd::Cancelled,
        (JobStatus::Finished | JobStatus::Failed, _) => RunEnd::Failed(failure()),
        _ => return None,
    })
}

/// Waits (bounded) until every released TaskManager process has exited.
async fn wait_for_exits(driver: &LocalProcessDriver) {
    let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
    while !driver.pids().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the progress line shows of a running job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RunStatus {
    /// TaskManagers registered now.
    task_managers: usize,
    /// Their slots.
    slots: u32,
    /// The current attempt.
    attempt: u32,
    /// Records its subtasks read in the current attempt.
    records_in: u64,
    /// Records its subtasks wrote in the current attempt.
    records_out: u64,
}

fn run_status(session: &SessionHandle, job_id: u128) -> RunStatus {
    let (task_managers, slots) = session.registered();
    let mut status = RunStatus {
        task_managers,
        slots,
        ..RunStatus::default()
    };
    if let Some(view) = session.job(job_id) {
        status.attempt = view.attempt;
        for v in &view.vertices {
            status.records_in += v.records_in;
            status.records_out += v.records_out;
        }
    }
    status
}

/// One line of stderr for a notice of the cluster, if the user should hear about it.
fn notice_line(notice: &SessionNotice, job_id: u128) -> Option<String> {
    Some(match notice {
        SessionNotice::WorkerStarted { id, pid: Some(pid) } => {
            format!("started TaskManager {id} (pid {pid})")
        }
        SessionNotice::WorkerStarted { id, pid: None } => format!("started TaskManager {id}"),
        SessionNotice::WorkerExited { id, reason } => format!("TaskManager {id} exited: {reason}"),
        SessionNotice::Job {
            job_id: id,
            event:
                JobEvent::Restarting {
                    attempt,
                    delay,
                    cause,
                },
        } if *id == job_id => format!(
            "restarting the job (attempt {attempt}) in {:.1} s after: {cause}",
            delay.as_secs_f64()
        ),
        SessionNotice::Job { .. } => return None,
    })
}

/// The summary line printed when a job ends.
pub fn summary(job: &str, r: &JobResult) -> String {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    format!(
        "{job} {} in {:.2} s: {} records in ({:.0}/s), {} records out",
        if r.cancelled { "cancelled" } else { "finished" },
        secs,
        r.records_in,
        r.records_in as f64 / secs,
        r.records_out,
    )
}

/// Set when the user pressed Ctrl-C (as opposed to the job stopping for another reason).
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Progress line on a terminal for runs longer than ~2 s; notices print above it.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Progress {
    fn start(status: impl Fn() -> RunStatus + Send + 'static, executors: u32) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { bar: None, stop };
        }
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let (flag, shown) = (stop.clone(), bar.clone());
        std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                use std::sync::atomic::Ordering;
                let started = std::time::Instant::now();
                let (mut last_in, mut last_t) = (0u64, started);
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(250));
                    if started.elapsed() < Duration::from_secs(2) {
                        continue;
                    }
                    if shown.is_hidden() {
                        shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    }
                    let s = status();
                    let now_t = std::time::Instant::now();
                    let rate = s.records_in.saturating_sub(last_in) as f64
                        / (now_t - last_t).as_secs_f64().max(1e-6);
                    shown.set_message(format!(
                        "executors {}/{executors}  slots {}  attempt {}  records in {}  out {}  {:.2} M/s",
                        s.task_managers,
                        s.slots,
                        s.attempt,
                        s.records_in,
                        s.records_out,
                        rate / 1e6
                    ));
                    shown.tick();
                    (last_in, last_t) = (s.records_in, now_t);
                }
                shown.finish_and_clear();
            })
            .ok();
        Self {
            bar: Some(bar),
            stop,
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_run_with_params_and_flink_style_overrides() {
        let cli = Cli::try_parse_from([
            "mesoflow",
            "run",
            "wordcount",
            "-p",
            "input=x.txt",
            "--parallelism",
            "4",
            "-Dparallelism.default=2",
            "--sink",
            "checksum",
        ])
        .unwrap();
        assert_eq!(cli.config, vec!["parallelism.default=2"]);
        let Command::Run(r) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(r.job, "wordcount");
        assert_eq!(r.params, vec!["input=x.txt"]);
        assert_eq!(r.parallelism, Some(4));
        assert_eq!(r.sink, Some(SinkKind::Checksum));
    }

    #[test]
    fn cluster_commands_parse() {
        let cli = Cli::try_parse_from([
            "mesoflow",
            "run",
            "stateless",
            "--jobmanager",
            "http://jm:8081",
            "--token",
            "t",
            "--detached",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(r.cluster.jobmanager.as_deref(), Some("http://jm:8081"));
        assert_eq!(r.cluster.token.as_deref(), Some("t"));
        assert!(r.detached);
        let cli = Cli::try_parse_from(["mesoflow", "list", "--jobmanager", "jm:8081"]).unwrap();
        assert!(matches!(cli.command, Command::List(l) if l.cluster.jobmanager.is_some()));
        let cli =
            Cli::try_parse_from(["mesoflow", "cancel", "--jobmanager", "jm:1", "abc"]).unwrap();
        assert!(matches!(cli.command, Command::Cancel(c) if c.job_id == "abc"));
        assert!(Cli::try_parse_from(["mesoflow", "cancel"]).is_err());
    }

    #[test]
    fn cluster_commands_without_an_address_say_what_to_pass() {
        let e = ClusterArgs::default()
            .client("list")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--jobmanager"), "{e}");
    }

    #[test]
    fn sink_flags_resolve_or_explain() {
        assert!(matches!(sink_spec(None, None).unwrap(), SinkSpec::Print));
        assert!(matches!(
            sink_spec(None, Some("out".into())).unwrap(),
            SinkSpec::Files(_)
        ));
        assert!(sink_spec(Some(SinkKind::File), None).is_err());
        assert!(sink_spec(Some(SinkKind::Checksum), Some("o".into())).is_err());
    }

    #[test]
    fn notices_of_the_followed_job_and_its_task_managers_become_lines() {
        use crate::resource_manager::WorkerId;
        let started = SessionNotice::WorkerStarted {
            id: WorkerId("tm-1".into()),
            pid: Some(42),
        };
        assert_eq!(
            notice_line(&started, 7).as_deref(),
            Some("started TaskManager tm-1 (pid 42)")
        );
        let exited = SessionNotice::WorkerExited {
            id: WorkerId("tm-1".into()),
            reason: "killed by signal 9".into(),
        };
        assert_eq!(
            notice_line(&exited, 7).as_deref(),
            Some("TaskManager tm-1 exited: killed by signal 9")
        );
        let restarting = |job_id| SessionNotice::Job {
            job_id,
            event: JobEvent::Restarting {
                attempt: 1,
                delay: Duration::from_millis(200),
                cause: "lost tm-1".into(),
            },
        };
        assert_eq!(
            notice_line(&restarting(7), 7).as_deref(),
            Some("restarting the job (attempt 1) in 0.2 s after: lost tm-1")
        );
        assert_eq!(notice_line(&restarting(8), 7), None);
        let status = SessionNotice::Job {
            job_id: 7,
            event: JobEvent::Status(JobStatus::Running),
        };
        assert_eq!(notice_line(&status, 7), None);
    }

    #[test]
    fn a_terminal_view_says_how_the_run_ended() {
        let view = |status, outcome, failure: Option<&str>| JobView {
            id: 7,
            name: "j".into(),
            max_parallelism: 128,
            status,
            submitted: Instant::now(),
            ended: None,
            attempt: 0,
            restarts: 0,
            failure: failure.map(str::to_owned),
            outcome,
            vertices: Vec::new(),
            workers: Vec::new(),
        };
        let outcome = JobOutcome {
            records_out: 3,
            ..JobOutcome::default()
        };
        assert_eq!(run_end(&view(JobStatus::Running, None, None)), None);
        assert_eq!(run_end(&view(JobStatus::Restarting, None, None)), None);
        assert_eq!(
            run_end(&view(JobStatus::Finished, Some(outcome), None)),
            Some(RunEnd::Finished(outcome))
        );
        assert_eq!(
            run_end(&view(JobStatus::Failed, None, Some("boom"))),
            Some(RunEnd::Failed("boom".into()))
        );
        assert_eq!(
            run_end(&view(JobStatus::Cancelled, None, None)),
            Some(RunEnd::Cancelled)
        );
    }

    #[test]
    fn jobs_listing_names_every_job_and_parameter() {
        let s = jobs_listing();
        for j in jobs::catalog() {
            assert!(s.contains(j.name));
            for p in j.params {
                assert!(s.contains(&format!("-p {}=", p.name)));
            }
        }
    }
}
