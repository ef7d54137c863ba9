//! The TaskManager: the long-running task that hosts subtask slots.
//!
//! It binds this executor's shuffle endpoint, registers with the JobManager over the mutually
//! authenticated control channel, and runs the subtasks the JobManager deploys into its slots
//! ([`session`], [`attempt`]). The same code runs under a Mesos agent (a TaskManager task of the
//! executor API, [`host`]) and as a standalone process that the local ResourceManager starts
//! (`mesoflow-executor standalone`, which reads its spec from stdin).

pub mod attempt;
pub mod checkpointing;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesoflow_dataplane::shuffle::{ExecutorCredentials, ShuffleConfig, ShuffleEndpoint};
use mesoflow_proto::internal::TaskManager;
use tokio_util::sync::CancellationToken;

/// Why a TaskManager could not be hosted.
#[derive(Debug, thiserror::Error)]
pub enum TaskManagerError {
    /// Its working directory could not be created in the sandbox.
    #[error(
        "cannot create the TaskManager directory {path}: {source}; check the sandbox's permissions and free space"
    )]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The spec is incomplete or wrong.
    #[error("the TaskManager spec is invalid: {0}")]
    Spec(String),
    /// The shuffle endpoint could not start.
    #[error("cannot start the data plane endpoint: {0}")]
    DataPlane(String),
    /// The session with the JobManager failed.
    #[error(transparent)]
    Session(#[from] session::SessionError),
}

/// Where a TaskManager keeps its files: `<sandbox>/task-managers/<task_manager_id>`.
pub fn work_dir(sandbox: &Path, spec: &TaskManager) -> PathBuf {
    sandbox
        .join("task-managers")
        .join(sanitize(&spec.task_manager_id))
}

/// Flink's `taskmanager.registration.timeout`.
const DEFAULT_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(300);
/// How long cancelled subtasks get to stop (Flink's `task.cancellation.timeout` is 180 s; ours
/// is shorter because a stuck subtask holds a slot the restarted job needs).
const DEFAULT_CANCELLATION_TIMEOUT: Duration = Duration::from_secs(30);

fn duration_key(
    spec: &TaskManager,
    key: &str,
    default: Duration,
) -> Result<Duration, TaskManagerError> {
    match spec.config.get(key) {
        None => Ok(default),
        Some(text) => mesoflow_dataplane::duration::parse_duration(text)
            .map_err(|e| TaskManagerError::Spec(format!("{key}: {e}"))),
    }
}

/// Resolves `host:port` (an IP or a name) to its first address.
async fn resolve(what: &str, endpoint: &str) -> Result<SocketAddr, TaskManagerError> {
    if let Ok(addr) = endpoint.parse() {
        return Ok(addr);
    }
    let bad = |detail: String| {
        TaskManagerError::Spec(format!(
            "{what} '{endpoint}' is not a usable host:port: {detail}"
        ))
    };
    tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// The session settings a spec describes, with the JobManager's endpoint resolved.
fn session_config(
    spec: &TaskManager,
    job_manager: SocketAddr,
    dir: &Path,
) -> Result<session::SessionConfig, TaskManagerError> {
    let bad = |m: String| TaskManagerError::Spec(m);
    if spec.ca_certificate_pem.is_empty()
        || spec.certificate_pem.is_empty()
        || spec.private_key_pem.is_empty()
    {
        return Err(bad(
            "the TLS credentials (CA certificate, certificate, key) are missing".into(),
        ));
    }
    let credentials = ExecutorCredentials::from_pem(
        &spec.certificate_pem,
        &spec.private_key_pem,
        &spec.ca_certificate_pem,
    )
    .map_err(|e| bad(format!("the TLS credentials do not load: {e}")))?;
    if credentials.executor_id != spec.task_manager_id {
        return Err(bad(format!(
            "the certificate names '{}' but the TaskManager is '{}'",
            credentials.executor_id, spec.task_manager_id
        )));
    }
    Ok(session::SessionConfig {
        task_manager_id: spec.task_manager_id.clone(),
        slots: spec.slots,
        job_manager,
        job_manager_id: if spec.job_manager_id.is_empty() {
            "jobmanager".to_owned()
        } else {
            spec.job_manager_id.clone()
        },
        credentials,
        registration_token: spec.registration_token.to_vec(),
        registration_timeout: duration_key(
            spec,
            "taskmanager.registration.timeout",
            DEFAULT_REGISTRATION_TIMEOUT,
        )?,
        cancellation_timeout: duration_key(
            spec,
            "task.cancellation.timeout",
            DEFAULT_CANCELLATION_TIMEOUT,
        )?,
        state_dir: dir.join("state"),
    })
}

/// Hosts a TaskManager until `stop` is cancelled or the JobManager releases it. `running` is
/// called once it has registered with the JobManager.
pub async fn host(
    spec: TaskManager,
    sandbox: &Path,
    stop: CancellationToken,
    running: impl FnOnce(),
) -> Result<(), TaskManagerError> {
    let dir = work_dir(sandbox, &spec);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|source| TaskManagerError::WorkDir {
            path: dir.clone(),
            source,
        })?;
    let job_manager = resolve("job_manager_endpoint", &spec.job_manager_endpoint).await?;
    let config = session_config(&spec, job_manager, &dir)?;
    // State files of an earlier process in this work dir are garbage: nothing reads them back
    // (restores come from checkpoints). A live store removes its own files when dropped.
    if let Err(e) = tokio::fs::remove_dir_all(&config.state_dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %config.state_dir.display(), error = %e, "cannot clear the state directory");
    }
    // Under Mesos the scheduler names the agent's host as its offer did (often a host name).
    let host: IpAddr = if spec.data_bind_host.is_empty() {
        IpAddr::from([127, 0, 0, 1])
    } else if let Ok(ip) = spec.data_bind_host.parse() {
        ip
    } else {
        resolve("data_bind_host", &format!("{}:0", spec.data_bind_host))
            .await?
            .ip()
    };
    let port = u16::try_from(spec.data_port).map_err(|_| {
        TaskManagerError::Spec(format!("data_port {} is not a port", spec.data_port))
    })?;
    let endpoint = ShuffleEndpoint::bind(
        SocketAddr::new(host, port),
        &config.credentials,
        ShuffleConfig::default(),
    )
    .map_err(|e| TaskManagerError::DataPlane(e.to_string()))?;
    tracing::info!(
        task_manager_id = %spec.task_manager_id,
        slots = spec.slots,
        job_manager = %spec.job_manager_endpoint,
        data_endpoint = ?endpoint.local_addr().ok(),
        dir = %dir.display(),
        "TaskManager is up"
    );
    let result = session::run(config, endpoint.clone(), stop, running).await;
    for t in endpoint.traffic() {
        tracing::info!(
            peer = %t.peer,
            bytes_sent = t.bytes_sent,
            bytes_received = t.bytes_received,
            "shuffle traffic"
        );
    }
    endpoint.close();
    tracing::info!(task_manager_id = %spec.task_manager_id, "TaskManager stopped");
    Ok(result?)
}

/// Keeps a scheduler-chosen id from escaping the sandbox as a path.
fn sanitize(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_dir_stays_inside_the_sandbox() {
        let spec = TaskManager {
            task_manager_id: "../../etc/passwd".to_owned(),
            slots: 1,
            ..TaskManager::default()
        };
        let dir = work_dir(Path::new("/sandbox"), &spec);
        assert_eq!(dir, Path::new("/sandbox/task-managers/______etc_passwd"));
    }
}
