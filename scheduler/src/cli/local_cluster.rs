//! The embedded default: a JobManager inside the `mesoflow` process, TaskManagers as local
//! `mesoflow-executor standalone` processes on 127.0.0.1.
//!
//! The CLI creates a fresh cluster CA for each run, issues the JobManager's certificate and one
//! per TaskManager, and hands each TaskManager its spec (credentials included) on stdin, so no
//! secret is written to disk or shown in `ps`. Everything listens on 127.0.0.1 only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mesoflow_dataplane::control::{ControlConfig, ControlServer};
use mesoflow_dataplane::shuffle::ClusterCa;
use mesoflow_proto::internal::TaskManager;
use prost::Message;

use crate::resource_manager::{LocalDriverConfig, WorkerId, WorkerSpec};

/// The id in the JobManager's certificate.
pub const JOB_MANAGER_ID: &str = "jobmanager";

/// A cluster's identity: its CA and where its JobManager listens.
pub struct LocalCluster {
    /// Issues every certificate of this run.
    pub ca: Arc<ClusterCa>,
    /// The JobManager's control endpoint.
    pub server: ControlServer,
}

impl LocalCluster {
    /// Creates the CA and starts the JobManager's control endpoint on 127.0.0.1.
    pub fn start(heartbeat_interval: Duration) -> Result<Self> {
        let ca = ClusterCa::generate("mesoflow-local").context("cannot create the cluster CA")?;
        let credentials = ca
            .issue(JOB_MANAGER_ID)
            .context("cannot issue the JobManager's certificate")?;
        let config = ControlConfig {
            heartbeat_interval,
            ..ControlConfig::default()
        };
        let server =
            ControlServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &credentials, config)
                .context("cannot start the JobManager's control endpoint")?;
        Ok(Self {
            ca: Arc::new(ca),
            server,
        })
    }

    /// How the local driver starts TaskManagers of this cluster.
    pub fn driver_config(
        &self,
        executor_binary: PathBuf,
        tm_config: BTreeMap<String, String>,
    ) -> LocalDriverConfig {
        let ca = self.ca.clone();
        let job_manager = self.server.local_addr();
        let work_dir = std::env::current_dir().unwrap_or_else(|_| std::env::temp_dir());
        LocalDriverConfig {
            executor_binary,
            args_for: Box::new(|_, _| vec!["standalone".to_owned()]),
            stdin_for: Box::new(move |id: &WorkerId, spec: &WorkerSpec| {
                local_task_manager_spec(&ca, id, spec, job_manager, &tm_config)
            }),
            // The TaskManagers log like the CLI: warnings only unless MESOFLOW_LOG says more.
            env: vec![(
                "RUST_LOG".to_owned(),
                std::env::var("MESOFLOW_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )],
            work_dir,
            kill_grace: Duration::from_secs(5),
        }
    }
}

/// The spec a local TaskManager reads on stdin (empty when its certificate cannot be issued;
/// the TaskManager then exits with an error the driver reports).
fn local_task_manager_spec(
    ca: &ClusterCa,
    id: &WorkerId,
    spec: &WorkerSpec,
    job_manager: SocketAddr,
    config: &BTreeMap<String, String>,
) -> Vec<u8> {
    let placement = DataPlacement {
        bind_host: "127.0.0.1".to_owned(),
        port: 0,
    };
    match task_manager_spec(ca, id, spec, &job_manager.to_string(), &placement, config) {
        Ok(tm) => tm.encode_to_vec(),
        Err(e) => {
            tracing::error!(worker = %id, error = %e, "cannot issue the TaskManager's certificate");
            Vec::new()
        }
    }
}

/// Where a TaskManager's data plane listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlacement {
    /// The host (IP or name) it binds to and advertises.
    pub bind_host: String,
    /// Its port; 0 for any free port.
    pub port: u16,
}

/// A TaskManager's spec, with the certificate the cluster CA issues for it.
pub fn task_manager_spec(
    ca: &ClusterCa,
    id: &WorkerId,
    spec: &WorkerSpec,
    job_manager_endpoint: &str,
    data: &DataPlacement,
    config: &BTreeMap<String, String>,
) -> Result<TaskManager, String> {
    let (certificate_pem, private_key_pem, ca_certificate_pem) =
        ca.issue(id.as_str()).map_err(|e| e.to_string())?.to_pem();
    Ok(TaskManager {
        slots: spec.slots,
        task_manager_id: id.as_str().to_owned(),
        job_manager_endpoint: job_manager_endpoint.to_owned(),
        job_manager_id: JOB_MANAGER_ID.to_owned(),
        ca_certificate_pem,
        certificate_pem,
        private_key_pem,
        data_bind_host: data.bind_host.clone(),
        data_port: u32::from(data.port),
        managed_memory_bytes: spec.memory_mb.saturating_mul(1 << 20),
        config: config.clone().into_iter().collect(),
        ..TaskManager::default()
    })
}
