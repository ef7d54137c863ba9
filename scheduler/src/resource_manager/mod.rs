//! The ResourceManager seam: how the JobManager gets and gives back TaskManager processes.
//!
//! Like Flink's `ResourceManagerDriver`, a driver only knows how to start a worker, stop it and
//! tell its owner that one started or died; which workers a job needs, and what to do when one
//! dies, is the JobManager's business. The local-process driver ([`local`]) and a cluster
//! manager's driver (Mesos) sit behind the same [`ResourceManagerDriver`] trait, so every
//! JobManager test runs without a cluster.

pub mod local;
pub mod mesos;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use local::{EXECUTOR_BIN_ENV, LocalDriverConfig, LocalProcessDriver, find_executor_binary};

/// Resources of one TaskManager process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Task slots it offers (each hosts one subtask of every chain).
    pub slots: u32,
    /// CPUs to reserve for it.
    pub cpus: f64,
    /// Memory to reserve for it, in MiB.
    pub memory_mb: u64,
}

/// The identity of a worker (TaskManager): chosen by the JobManager when it asks for one, and
/// the id the TaskManager registers with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for WorkerId {
    fn from(id: &str) -> Self {
        WorkerId(id.to_owned())
    }
}

/// What a driver reports about the workers it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// The worker's process is up (it still has to register on the control channel).
    Started {
        /// Which worker.
        id: WorkerId,
        /// Its operating-system process id, when the driver knows it.
        pid: Option<u32>,
    },
    /// The worker's process is gone, whether it was released or died.
    Exited {
        /// Which worker.
        id: WorkerId,
        /// How it ended (exit status or signal), for the job's failure cause.
        reason: String,
    },
}

/// Why a driver could not start a worker.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The id is already in use by a live worker of this driver.
    #[error("worker {0} already exists")]
    DuplicateWorker(WorkerId),
    /// The process could not be started.
    #[error("cannot start worker {id} from {binary}: {source}")]
    Spawn {
        /// Which worker.
        id: WorkerId,
        /// The executable that was tried.
        binary: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The executor binary is missing.
    #[error("{0}")]
    ExecutorNotFound(String),
    /// The driver cannot be used here (e.g. outside a tokio runtime).
    #[error("{0}")]
    Unavailable(String),
}

/// Starts and stops workers for the JobManager; results come back as [`WorkerEvent`]s on the
/// channel the driver was built with.
pub trait ResourceManagerDriver: Send {
    /// Starts a worker with this id and spec. `Ok` means it is on its way (a
    /// [`WorkerEvent::Started`] follows), not that it registered.
    fn request_worker(&mut self, id: &WorkerId, spec: &WorkerSpec) -> Result<(), ResourceError>;

    /// Stops a worker (no-op for an unknown or already exited one). A
    /// [`WorkerEvent::Exited`] follows once it is gone.
    fn release_worker(&mut self, id: &WorkerId);
}
