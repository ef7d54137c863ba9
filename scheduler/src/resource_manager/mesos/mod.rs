//! The Mesos driver: TaskManagers as tasks of our custom executor, launched from offers.
//!
//! One worker is one Mesos executor (`mesoflow-executor`, fetched by URI) running one task whose
//! `data` is the worker's `TaskSpec`. The pieces, one concept each:
//! - [`machine`]: [`MesosResourceManager`], the sans-IO policy. Demand, offers, task states and
//!   the clock go in; ACCEPT/DECLINE/SUPPRESS/REVIVE/KILL/TEARDOWN and [`WorkerEvent`]s come out.
//!   Every rule (fit, constraints, launch timeout, failure budget, shutdown) lives there.
//! - [`offer_pool`]: carving one worker's resources (and one port) out of an offer, keeping the
//!   offered reservations and `allocation_info`.
//! - [`launch`]: the `ExecutorInfo`/`TaskInfo` of a worker and the owner's [`TaskSpecBuilder`].
//! - [`driver`]: [`MesosDriver`], the tokio shell: runs the scheduler client, feeds the machine,
//!   performs its actions and acknowledges updates; implements [`ResourceManagerDriver`].
//!
//! What it is not: it does not decide how many workers a job needs (the JobManager does), and it
//! does not re-attach to TaskManagers of an earlier scheduler run (tasks it does not know are
//! killed when Mesos reports them).
//!
//! [`WorkerEvent`]: super::WorkerEvent
//! [`ResourceManagerDriver`]: super::ResourceManagerDriver

pub mod driver;
pub mod launch;
pub mod machine;
pub mod offer_pool;

use std::time::Duration;

pub use driver::{DriverExit, MesosDriver, MesosDriverError};
pub use launch::{TaskSpecBuilder, WorkerPlacement};
pub use machine::{Action, MesosMetrics, MesosResourceManager};

/// Everything the Mesos driver needs. A plain struct: the typed configuration maps onto it.
#[derive(Debug, Clone)]
pub struct MesosDriverConfig {
    /// `mesos.master`: `host:port[,host:port]`, `zk://...` or `file://...`.
    pub master: String,
    /// How the framework registers.
    pub framework: FrameworkSettings,
    /// What each worker's task asks for and carries.
    pub tasks: TaskSettings,
    /// Hard constraints: an offer is used only if the agent has every `attribute` with exactly
    /// this `value` (text attributes by string, scalar attributes by number).
    pub constraints: Vec<(String, String)>,
    /// `declined-offer-refuse-duration`: how long a declined agent stays away from us.
    pub refuse: Duration,
    /// Failed tasks tolerated before new workers are refused; `None` is unlimited. (Flink's -1,
    /// "as many as initially requested", is resolved by the caller.)
    pub maximum_failed_tasks: Option<u32>,
    /// Where agents fetch the executor from.
    pub executor: ExecutorArtifact,
}

/// The framework's identity on the master.
#[derive(Clone)]
pub struct FrameworkSettings {
    /// `FrameworkInfo.name`.
    pub name: String,
    /// The one role we subscribe with (MULTI_ROLE); `*` takes unreserved resources only.
    pub role: String,
    /// Principal, when the master authenticates frameworks.
    pub principal: Option<String>,
    /// Secret of the principal (HTTP basic auth).
    pub secret: Option<String>,
    /// Unix user the executors run as.
    pub user: String,
    /// How long Mesos keeps our tasks after the scheduler disconnects.
    pub failover_timeout: Duration,
}

impl std::fmt::Debug for FrameworkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameworkSettings")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("principal", &self.principal)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("user", &self.user)
            .field("failover_timeout", &self.failover_timeout)
            .finish()
    }
}

/// Resources and extras of every worker's task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSettings {
    /// CPUs of the task; `0.0` means one per slot of the requested worker.
    pub cpus: f64,
    /// Memory of the task in MiB; `0` means the requested worker's `memory_mb`.
    pub mem_mb: u64,
    /// Disk of the task in MiB; `0` asks for no disk resource.
    pub disk_mb: u64,
    /// Extra URIs fetched into the sandbox (archives are extracted).
    pub uris: Vec<String>,
    /// Labels put on every task.
    pub labels: Vec<(String, String)>,
    /// Shell command run before the executor (`cmd && ./mesoflow-executor`).
    pub bootstrap_cmd: Option<String>,
    /// Host the data plane binds to and advertises instead of the offer's hostname; `_TASK_`
    /// is replaced by the task id.
    pub hostname: Option<String>,
    /// A launched worker not TASK_RUNNING within this is killed and reported exited.
    pub launch_timeout: Duration,
}

/// The executor binary as the agents fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorArtifact {
    /// URI of the plain `mesoflow-executor` binary, or of a `.tar.gz`/`.tgz` holding it at the
    /// top level.
    pub uri: String,
    /// Let the agents' fetcher cache it (one download per agent, not per executor).
    pub cache: bool,
}
