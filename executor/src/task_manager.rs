//! The seam where a TaskManager will live: the long-running task that hosts subtask slots.
//!
//! Today a TaskManager task validates its spec, prepares its working directory in the sandbox,
//! reports TASK_RUNNING and holds its slots until it is killed or the executor shuts down. It does
//! not register with the JobManager or run subtasks yet: that arrives with the control channel
//! and the data plane's runtime (a later issue), behind the same [`host`] entry point, so the
//! executor's task handling (launch, kill, grace periods, terminal updates) does not change.

use std::path::{Path, PathBuf};

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
}

/// Where a TaskManager keeps its files: `<sandbox>/task-managers/<task_manager_id>`.
pub fn work_dir(sandbox: &Path, spec: &TaskManager) -> PathBuf {
    sandbox
        .join("task-managers")
        .join(sanitize(&spec.task_manager_id))
}

/// Hosts a TaskManager until `stop` is cancelled. `running` is called once it is up.
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
    tracing::info!(
        task_manager_id = %spec.task_manager_id,
        slots = spec.slots,
        job_manager = %spec.job_manager_endpoint,
        dir = %dir.display(),
        "TaskManager is up; its slots take deployments once the JobManager control channel exists"
    );
    running();
    stop.cancelled().await;
    tracing::info!(task_manager_id = %spec.task_manager_id, "TaskManager stopped");
    Ok(())
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
