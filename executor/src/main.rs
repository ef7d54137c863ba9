//! `mesoflow-executor`: the custom Mesos executor that Mesos agents fetch and start for mesoflow.
//!
//! It is started by an agent in the executor's sandbox with the agent's `MESOS_*` environment
//! (and nothing else), subscribes to the agent's executor API, runs the tasks launched on it
//! (TaskManagers, and diagnostic probes), and exits when the agent shuts it down. Logs go to
//! stderr, which the agent keeps in the sandbox; `RUST_LOG` tunes them (default `info`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mesoflow_dataplane::duration::parse_duration;
use mesoflow_executor::client::{ClientConfig, ExecutorClient};
use mesoflow_executor::environment::ExecutorEnvironment;
use mesoflow_executor::runner::KindRunner;
use mesoflow_executor::shell::{AgentEndpoint, Shell};
use tokio::sync::mpsc;

/// The mesoflow executor. Launched by a Mesos agent; configured by its MESOS_* environment.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Exit after this long with no task and nothing left to report (e.g. `10mins`). By default
    /// the executor waits for the scheduler to shut it down.
    #[arg(long, env = "MESOFLOW_EXECUTOR_IDLE_TIMEOUT", value_parser = parse_idle_timeout)]
    idle_timeout: Option<Duration>,
    /// Without a subcommand the executor serves a Mesos agent.
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Run one TaskManager without a Mesos agent (the local ResourceManager starts these). Its
    /// spec (a protobuf `TaskManager`, credentials included) is read from stdin, so no secret
    /// appears on the command line or in a file.
    Standalone {
        /// Directory for the TaskManager's files (default: the current directory).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
}

fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if let Some(Mode::Standalone { work_dir }) = args.mode {
        return match run_standalone(work_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // SAFETY: no other thread exists yet (the runtime is built below), so nothing else reads
    // or writes the environment while the token is removed from it.
    let env = match unsafe { ExecutorEnvironment::from_process_env() } {
        Ok(env) => env,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::from(2);
        }
    };
    match run(env, args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of the executor's I/O (the agent or JobManager connection, the shuffle); subtasks
/// run on threads of their own.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// Runs the executor; `Ok(true)` for an orderly exit.
fn run(env: ExecutorEnvironment, args: Args) -> anyhow::Result<bool> {
    let runtime = runtime()?;
    runtime.block_on(async move {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            framework_id = %env.framework_id,
            executor_id = %env.executor_id,
            agent = %env.agent_endpoint,
            checkpointing = ?env.checkpointing,
            sandbox = %env.sandbox.display(),
            "mesoflow-executor starting"
        );
        let mut config = ClientConfig::from_environment(&env);
        config.idle_timeout = args.idle_timeout;
        let client = ExecutorClient::new(config, Instant::now(), rand::random());
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let runner = KindRunner::new(env.sandbox.clone(), reports_tx);
        let endpoint = AgentEndpoint {
            url: env.executor_api_url(),
            token: env.authentication_token.clone(),
        };
        let shell = Shell::new(endpoint, client, runner, reports_rx)?;
        let reason = shell.run(stop_signal()).await;
        if reason.is_success() {
            tracing::info!("exiting: {reason}");
        } else {
            tracing::error!("exiting: {reason}");
        }
        Ok(reason.is_success())
    })
}

/// Runs one TaskManager outside Mesos until the JobManager releases it, it loses the
/// JobManager, or SIGTERM/SIGINT.
fn run_standalone(work_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use prost::Message;
    use std::io::Read;
    // Die with the process that started us (Linux), so no TaskManager outlives a killed CLI.
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .context("cannot read the TaskManager spec from stdin")?;
    let spec = mesoflow_proto::internal::TaskManager::decode(bytes.as_slice())
        .context("stdin is not a protobuf TaskManager spec")?;
    let dir = match work_dir {
        Some(dir) => dir,
        None => std::env::current_dir().context("no current directory")?,
    };
    let runtime = runtime()?;
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            stop_signal().await;
            on_signal.cancel();
        });
        let id = spec.task_manager_id.clone();
        mesoflow_executor::task_manager::host(spec, &dir, stop, || {})
            .await
            .with_context(|| format!("TaskManager {id}"))
    })
}

/// Resolves on SIGTERM or SIGINT; never if the handlers cannot be installed.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; SIGTERM will not stop tasks gracefully");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
