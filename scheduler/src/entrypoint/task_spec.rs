//! What a TaskManager launched on Mesos carries in `TaskInfo.data`: its `TaskSpec`, with the
//! JobManager's endpoint and the certificate the cluster CA issues for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use mesoflow_dataplane::shuffle::ClusterCa;
use mesoflow_proto::internal::{TaskSpec, task_spec};
use prost::Message;

use crate::cli::local_cluster::{DataPlacement, task_manager_spec};
use crate::resource_manager::mesos::{TaskSpecBuilder, WorkerPlacement};
use crate::resource_manager::{WorkerId, WorkerSpec};

/// The `TaskSpec.version` this scheduler writes (the executor refuses others).
const SPEC_VERSION: u32 = 1;

/// Builds TaskManager specs for the Mesos driver.
pub struct TaskManagerSpecs {
    ca: Arc<ClusterCa>,
    job_manager: String,
    config: BTreeMap<String, String>,
}

impl TaskManagerSpecs {
    /// Specs whose TaskManagers register at `job_manager` (`host:port`).
    pub fn new(ca: Arc<ClusterCa>, job_manager: String, config: BTreeMap<String, String>) -> Self {
        Self {
            ca,
            job_manager,
            config,
        }
    }
}

impl TaskSpecBuilder for TaskManagerSpecs {
    fn task_data(
        &self,
        worker: &WorkerId,
        spec: &WorkerSpec,
        placement: &WorkerPlacement,
    ) -> Result<Bytes, String> {
        let data = DataPlacement {
            bind_host: placement.hostname.clone(),
            port: placement.data_port,
        };
        let tm = task_manager_spec(
            &self.ca,
            worker,
            spec,
            &self.job_manager,
            &data,
            &self.config,
        )?;
        Ok(TaskSpec {
            version: SPEC_VERSION,
            kind: Some(task_spec::Kind::TaskManager(tm)),
        }
        .encode_to_vec()
        .into())
    }
}
