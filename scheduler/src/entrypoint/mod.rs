//! `mesoflow-scheduler`: a session cluster's JobManager process (Flink's cluster entrypoint).
//!
//! It hosts the dispatcher (jobs and the TaskManager pool), the JobManager's control endpoint,
//! the REST API, and a ResourceManager driver:
//! - with `mesos.master` set, the Mesos driver: the process is a Mesos framework that launches
//!   `mesoflow-executor` from offers, and an artifact server hands agents the executor binary
//!   (unless `mesos.resourcemanager.executor.uri` names one elsewhere);
//! - without it, the local-process driver: TaskManagers are `mesoflow-executor standalone`
//!   children on this machine (Flink's standalone session mode).
//!
//! On SIGTERM or SIGINT it cancels every job, releases every TaskManager and, under Mesos,
//! waits for the executors' terminal updates before tearing the framework down, so nothing it
//! started outlives it. Without high availability a scheduler that dies without that (SIGKILL,
//! a crash) leaves its executors to Mesos: they end when the framework's failover timeout
//! (`mesos.failover-timeout`) expires.

mod backend;
mod task_spec;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mesoflow_dataplane::control::{ControlConfig, ControlServer};
use mesoflow_dataplane::shuffle::ClusterCa;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::artifact_server::ArtifactServer;
use crate::cli::local_cluster::{JOB_MANAGER_ID, LocalCluster};
use crate::config::{Configuration, HighAvailabilityMode, LoadOptions};
use crate::job_manager::session::{self, SessionHandle, SessionIo};
use crate::job_manager::{Dispatcher, DispatcherConfig, JobManagerConfig};
use crate::resource_manager::mesos::{
    ExecutorArtifact, FrameworkSettings, MesosDriver, MesosDriverConfig, TaskSettings,
};
use crate::resource_manager::{
    LocalProcessDriver, ResourceManagerDriver, WorkerSpec, find_executor_binary,
};
use crate::rest;
use crate::rest::server::{RestConfig, RestServer, TlsFiles};
use backend::{MetricsSources, SessionBackend};
use task_spec::TaskManagerSpecs;

/// How long a stop waits for jobs to cancel and TaskManagers to go.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// mesoflow-scheduler: the JobManager of a mesoflow session cluster, on Mesos or standalone.
#[derive(Debug, Parser)]
#[command(name = "mesoflow-scheduler", version, about)]
struct Args {
    /// Configuration file (Flink's flat `flink-conf.yaml` or nested `config.yaml` form);
    /// default: `config.yaml` in `MESOFLOW_CONF_DIR`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Configuration override, e.g. -Dmesos.master=zk://zk1:2181/mesos (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic: Vec<String>,
}

/// Runs the scheduler; the process exit code.
pub fn main_entry() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let loaded = match Configuration::load(&LoadOptions::from_process(args.config, &args.dynamic)) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("mesoflow-scheduler: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mesoflow-scheduler: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mesoflow-scheduler: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The parts every mode shares: the cluster's CA, the control endpoint, the dispatcher.
struct Core {
    ca: Arc<ClusterCa>,
    server: ControlServer,
    /// `host:port` TaskManagers reach the control endpoint at.
    advertised: String,
    dispatcher: Dispatcher,
}

async fn run(config: Configuration) -> Result<()> {
    if config.high_availability.mode == HighAvailabilityMode::ZooKeeper {
        bail!(
            "high-availability: ZOOKEEPER is not supported yet (JobManager failover is not \
             built); set high-availability to NONE"
        );
    }
    let core = core(&config).await?;
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signals.cancel();
    });
    match config.mesos.master.clone() {
        Some(master) => on_mesos(&config, core, master, shutdown).await,
        None => standalone(&config, core, shutdown).await,
    }
}

/// Creates the CA, binds the control endpoint and sets up the dispatcher.
async fn core(config: &Configuration) -> Result<Core> {
    let ca = ClusterCa::generate("mesoflow").context("cannot create the cluster CA")?;
    let credentials = ca
        .issue(JOB_MANAGER_ID)
        .context("cannot issue the JobManager's certificate")?;
    let jm = &config.job_manager;
    let ip = resolve_ip(&jm.rpc_address)
        .await
        .with_context(|| format!("jobmanager.rpc.address '{}'", jm.rpc_address))?;
    let server = ControlServer::bind(
        SocketAddr::new(ip, jm.rpc_port),
        &credentials,
        ControlConfig {
            heartbeat_interval: config.cluster.heartbeat_interval,
            ..ControlConfig::default()
        },
    )
    .with_context(|| {
        format!(
            "cannot start the JobManager's control endpoint on {}:{} (jobmanager.rpc.address, \
             jobmanager.rpc.port)",
            jm.rpc_address, jm.rpc_port
        )
    })?;
    let advertised = host_port(&jm.rpc_address, server.local_addr().port());
    tracing::info!(control = %server.local_addr(), %advertised, "JobManager control endpoint");
    let slots = config.task_manager.number_of_task_slots;
    let dispatcher = Dispatcher::new(
        DispatcherConfig {
            worker: WorkerSpec {
                slots,
                cpus: config.mesos.tasks.cpus,
                memory_mb: u64::from(config.mesos.tasks.mem_mib),
            },
            min_workers: config.mesos.initial_tasks,
            idle_timeout: config.cluster.taskmanager_timeout,
            worker_prefix: format!("tm-{:08x}", rand::random::<u32>()),
            retained_jobs: 1000,
            job: JobManagerConfig::from_config(config),
        },
        Instant::now(),
    );
    Ok(Core {
        ca: Arc::new(ca),
        server,
        advertised,
        dispatcher,
    })
}

/// The framework on Mesos.
async fn on_mesos(
    config: &Configuration,
    core: Core,
    master: String,
    shutdown: CancellationToken,
) -> Result<()> {
    let mesos = &config.mesos;
    let (artifact_server, executor_uri) = match &mesos.executor_uri {
        Some(uri) => (None, uri.clone()),
        None => {
            let binary = find_executor_binary()?;
            let ip = resolve_ip(&config.job_manager.rpc_address).await?;
            let server =
                ArtifactServer::start(&binary, SocketAddr::new(ip, mesos.artifact_server_port))
                    .await?;
            let url = server.executor_url(&config.job_manager.rpc_address);
            (Some(Arc::new(server)), url)
        }
    };
    tracing::info!(uri = %executor_uri, "agents fetch the executor from here");
    let user = match &mesos.framework.user {
        Some(user) => user.clone(),
        None => current_user(),
    };
    let driver_config = MesosDriverConfig {
        master,
        framework: FrameworkSettings {
            name: mesos.framework.name.clone(),
            role: mesos.framework.role.clone(),
            principal: mesos.framework.principal.clone(),
            secret: mesos
                .framework
                .secret
                .as_ref()
                .map(|s| s.expose().to_owned()),
            user,
            failover_timeout: mesos.failover_timeout,
        },
        tasks: TaskSettings {
            cpus: mesos.tasks.cpus,
            mem_mb: u64::from(mesos.tasks.mem_mib),
            disk_mb: u64::from(mesos.tasks.disk_mib),
            uris: mesos.tasks.uris.clone(),
            labels: mesos.tasks.labels.clone(),
            bootstrap_cmd: mesos.tasks.bootstrap_cmd.clone(),
            hostname: mesos.tasks.hostname.clone(),
            launch_timeout: mesos.tasks.launch_timeout,
        },
        constraints: mesos.hard_host_attributes.clone(),
        refuse: mesos.declined_offer_refuse_duration,
        maximum_failed_tasks: Some(mesos.maximum_failed_tasks),
        executor: ExecutorArtifact {
            uri: executor_uri,
            cache: true,
        },
    };
    let specs = TaskManagerSpecs::new(
        core.ca.clone(),
        core.advertised.clone(),
        task_manager_config(config),
    );
    let (events_tx, worker_events) = mpsc::unbounded_channel();
    let driver = MesosDriver::start(driver_config, Box::new(specs), events_tx)
        .context("cannot start the Mesos framework")?;
    let mut exit = driver.exit();
    let metrics = MetricsSources {
        mesos: Some(driver.metrics_source()),
        artifact_server: artifact_server.clone(),
    };
    let (handle, task) = session::start(
        core.dispatcher,
        SessionIo {
            server: core.server,
            driver,
            worker_events,
            shutdown: shutdown.clone(),
            shutdown_grace: SHUTDOWN_GRACE,
        },
    );
    let rest = serve_rest(config, &handle, metrics).await?;
    let fatal = tokio::select! {
        () = shutdown.cancelled() => None,
        exited = exit.wait_for(Option::is_some) => exited.ok().and_then(|e| e.clone()),
    };
    if let Some(fatal) = &fatal {
        tracing::error!(error = %fatal, "the Mesos framework stopped; stopping the cluster");
    }
    shutdown.cancel();
    let driver = task.await.context("the session cluster's task failed")?;
    rest.shutdown().await;
    if fatal.is_none() {
        match driver.shutdown(SHUTDOWN_GRACE).await {
            Ok(()) => tracing::info!("framework torn down; every executor is gone"),
            Err(e) => tracing::warn!(error = %e, "the framework was not torn down cleanly"),
        }
    }
    if let Some(server) = artifact_server {
        server.stop();
    }
    match fatal {
        Some(e) => Err(e).context("the Mesos framework stopped"),
        None => Ok(()),
    }
}

/// Flink's standalone session mode: TaskManagers are local processes.
async fn standalone(config: &Configuration, core: Core, shutdown: CancellationToken) -> Result<()> {
    let executor_binary = find_executor_binary()?;
    let cluster = LocalCluster {
        ca: core.ca.clone(),
        server: core.server,
    };
    let driver_config = cluster.driver_config(executor_binary, task_manager_config(config));
    let (events_tx, worker_events) = mpsc::unbounded_channel();
    let driver = LocalProcessDriver::new(driver_config, events_tx)?;
    let (handle, task) = session::start(
        core.dispatcher,
        SessionIo {
            server: cluster.server,
            driver,
            worker_events,
            shutdown: shutdown.clone(),
            shutdown_grace: SHUTDOWN_GRACE,
        },
    );
    let metrics = MetricsSources {
        mesos: None,
        artifact_server: None,
    };
    let rest = serve_rest(config, &handle, metrics).await?;
    shutdown.cancelled().await;
    let driver = task.await.context("the session cluster's task failed")?;
    rest.shutdown().await;
    stop_local(driver).await;
    Ok(())
}

/// Gives released local TaskManagers a moment to exit; dropping the driver kills the rest.
async fn stop_local<D: ResourceManagerDriver>(driver: D) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(driver);
}

/// Starts the REST API and says where it is.
async fn serve_rest(
    config: &Configuration,
    session: &SessionHandle,
    metrics: MetricsSources,
) -> Result<RestServer> {
    let backend = SessionBackend::new(session.clone(), config, metrics);
    let rest_config = RestConfig {
        bind_address: config.rest.bind_address.clone(),
        port: config.rest.port,
        token: config.rest.token.as_ref().map(|t| t.expose().to_owned()),
        tls: config.rest.tls.as_ref().map(|tls| TlsFiles {
            cert_chain: tls.cert_file.clone(),
            private_key: tls.key_file.clone(),
        }),
        ..RestConfig::default()
    };
    let server = rest::server::serve(rest_config, Arc::new(backend))
        .await
        .context("cannot start the REST API (rest.bind-address, rest.port)")?;
    let scheme = if config.rest.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!(
        "{scheme}://{}",
        host_port(&config.rest.address, server.local_addr().port())
    );
    tracing::info!(%url, "REST API listening");
    // A stable line for scripts and tests, whatever the log filter.
    eprintln!("mesoflow-scheduler: REST API at {url}");
    Ok(server)
}

/// Settings every TaskManager gets in its spec.
fn task_manager_config(config: &Configuration) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::new();
    map.insert(
        "task.cancellation.timeout".to_owned(),
        format!("{}ms", config.cluster.cancellation_timeout.as_millis()),
    );
    map
}

/// `host:port`, with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An address to bind: the IP itself, or the first address of a host name.
async fn resolve_ip(host: &str) -> Result<IpAddr> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse() {
        return Ok(ip);
    }
    tokio::net::lookup_host((host, 0))
        .await
        .with_context(|| format!("cannot resolve '{host}'"))?
        .next()
        .map(|a| a.ip())
        .with_context(|| format!("'{host}' has no address"))
}

/// The user this process runs as (Mesos runs the executors as the framework's user): its
/// passwd entry, else `USER`.
fn current_user() -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: `pwd` and `buf` outlive the call; getpwuid_r writes only into them and sets
    // `result` to `&pwd` on success, after which `pw_name` points into `buf`.
    let name = unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null() && !pwd.pw_name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned()
        })
    };
    name.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "nobody".to_owned())
}

/// SIGTERM (Marathon, systemd, `kill`) or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
