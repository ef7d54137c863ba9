//! Runs the mesoflow test cluster (one Mesos 1.11-compatible master and N agents) on
//! 127.0.0.1 for manual use: point `mesoflow-scheduler -Dmesos.master=127.0.0.1:<port>` at it.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mesoflow_dataplane::duration::parse_duration;
use mesoflow_tests::cluster::{AgentSpec, Cluster, ClusterConfig};

/// A Mesos test master and agents speaking the v1 scheduler and executor APIs.
#[derive(Debug, Parser)]
#[command(name = "mesos-test-cluster", version)]
struct Args {
    /// Number of agents.
    #[arg(long, default_value_t = 1)]
    agents: usize,
    /// Resources of every agent (`--resources` syntax of mesos-agent).
    #[arg(long, default_value = "cpus:4;mem:8192;disk:10000;ports:[31000-32000]")]
    resources: String,
    /// Attributes of every agent (`rack:r1;zone:a`).
    #[arg(long, default_value = "")]
    attributes: String,
    /// Work directory for sandboxes (a temporary directory if not given).
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// Heartbeat interval announced to frameworks (a real master uses 15secs).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// Rescind offers held longer than this (`--offer_timeout`); off by default.
    #[arg(long, value_parser = parse_duration)]
    offer_timeout: Option<Duration>,
    /// Framework credentials as `principal:secret` (repeatable); enables HTTP authentication.
    #[arg(long = "credential")]
    credentials: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut credentials = Vec::new();
    for c in &args.credentials {
        let (p, s) = c
            .split_once(':')
            .with_context(|| format!("--credential must be principal:secret, got '{c}'"))?;
        credentials.push((p.to_string(), s.to_string()));
    }
    let config = ClusterConfig {
        agents: (0..args.agents)
            .map(|_| AgentSpec {
                resources: args.resources.clone(),
                attributes: args.attributes.clone(),
            })
            .collect(),
        work_dir: args.work_dir.clone(),
        heartbeat_interval: args.heartbeat_interval,
        offer_timeout: args.offer_timeout,
        credentials: (!credentials.is_empty()).then_some(credentials),
        ..ClusterConfig::default()
    };
    let cluster = Cluster::start(config)
        .await
        .context("starting the test cluster")?;
    println!("master: {}", cluster.master_url());
    for id in cluster.agent_ids() {
        if let Some(addr) = cluster.agent_endpoint(&id) {
            println!("agent {id}: http://{addr}");
        }
    }
    println!("work dir: {}", cluster.work_dir().display());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    cluster.shutdown();
    Ok(())
}
