//! What a worker is on Mesos: one `ExecutorInfo` (our custom executor, fetched by URI) and one
//! `TaskInfo` whose `data` is the worker's `TaskSpec`.
//!
//! Executor and task are both named by the worker id, so an update, a FAILURE event and the
//! JobManager's registration all point at the same worker without a lookup table.

use bytes::Bytes;
use mesoflow_proto::mesos::v1::{
    AgentId, CommandInfo, ExecutorId, ExecutorInfo, FrameworkId, Label, Labels, Resource, TaskId,
    TaskInfo, command_info::Uri, executor_info,
};

use super::{ExecutorArtifact, TaskSettings};
use crate::resource_manager::{WorkerId, WorkerSpec};

/// The executor's file name in the sandbox.
pub const EXECUTOR_FILE: &str = "mesoflow-executor";

/// Where a worker landed: what its `TaskSpec` needs to know about its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPlacement {
    /// The agent it runs on.
    pub agent_id: AgentId,
    /// The host its data plane binds to and advertises (the offer's hostname, or the
    /// configured override).
    pub hostname: String,
    /// The port taken from the offer for its data plane.
    pub data_port: u16,
}

/// Builds a worker's `TaskInfo.data` (an encoded `mesoflow.internal.TaskSpec`).
///
/// The owner supplies it because the spec carries what only the scheduler knows: the
/// JobManager's endpoint and the TLS credentials its CA issues for this worker.
pub trait TaskSpecBuilder: Send {
    /// The task data for `worker`, placed at `placement`; an error fails only this worker.
    fn task_data(
        &self,
        worker: &WorkerId,
        spec: &WorkerSpec,
        placement: &WorkerPlacement,
    ) -> Result<Bytes, String>;
}

/// The fetcher entry of a URI: archives are extracted, anything else is made executable.
fn fetch_uri(uri: &str, cache: bool) -> Uri {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    let archive = [".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip"]
        .iter()
        .any(|ext| path.ends_with(ext));
    Uri {
        value: uri.to_owned(),
        executable: (!archive).then_some(true),
        extract: Some(archive),
        cache: cache.then_some(true),
        output_file: None,
    }
}

/// The executor binary's URI; a plain binary is saved as `mesoflow-executor` whatever the URI
/// calls it, so the command line never changes.
pub fn executor_uri(artifact: &ExecutorArtifact) -> Uri {
    let mut uri = fetch_uri(&artifact.uri, artifact.cache);
    if uri.executable == Some(true) {
        let path = artifact
            .uri
            .split(['?', '#'])
            .next()
            .unwrap_or(&artifact.uri);
        if path.rsplit('/').next() != Some(EXECUTOR_FILE) {
            uri.output_file = Some(EXECUTOR_FILE.to_owned());
        }
    }
    uri
}

/// The shell command starting the executor.
pub fn executor_command(settings: &TaskSettings) -> String {
    match settings.bootstrap_cmd.as_deref().map(str::trim) {
        Some(cmd) if !cmd.is_empty() => format!("{cmd} && ./{EXECUTOR_FILE}"),
        _ => format!("./{EXECUTOR_FILE}"),
    }
}

/// Everything of a launch that is the same for every worker, built once.
#[derive(Debug, Clone)]
pub struct LaunchTemplate {
    command: CommandInfo,
    labels: Option<Labels>,
}

impl LaunchTemplate {
    /// The shared parts from the configuration.
    pub fn new(settings: &TaskSettings, artifact: &ExecutorArtifact) -> Self {
        let mut uris = vec![executor_uri(artifact)];
        uris.extend(settings.uris.iter().map(|u| fetch_uri(u, artifact.cache)));
        let command = CommandInfo {
            uris,
            shell: Some(true),
            value: Some(executor_command(settings)),
            ..Default::default()
        };
        let labels = (!settings.labels.is_empty()).then(|| Labels {
            labels: settings
                .labels
                .iter()
                .map(|(k, v)| Label {
                    key: k.clone(),
                    value: Some(v.clone()),
                })
                .collect(),
        });
        Self { command, labels }
    }

    /// The task (with its executor) of one worker.
    pub fn task_info(
        &self,
        worker: &WorkerId,
        framework_id: Option<&FrameworkId>,
        agent_id: &AgentId,
        task_resources: Vec<Resource>,
        executor_resources: Vec<Resource>,
        data: Bytes,
    ) -> TaskInfo {
        let executor = ExecutorInfo {
            r#type: Some(executor_info::Type::Custom as i32),
            executor_id: ExecutorId {
                value: worker.0.clone(),
            },
            framework_id: framework_id.cloned(),
            command: Some(self.command.clone()),
            resources: executor_resources,
            name: Some(format!("mesoflow TaskManager {worker}")),
            ..Default::default()
        };
        TaskInfo {
            name: format!("taskmanager-{worker}"),
            task_id: TaskId {
                value: worker.0.clone(),
            },
            agent_id: agent_id.clone(),
            resources: task_resources,
            executor: Some(executor),
            data: Some(data),
            labels: self.labels.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(uri: &str) -> ExecutorArtifact {
        ExecutorArtifact {
            uri: uri.into(),
            cache: true,
        }
    }

    #[test]
    fn a_plain_binary_is_made_executable_under_the_fixed_name() {
        let uri = executor_uri(&artifact("http://h/bin/mesoflow-executor-1.2"));
        assert_eq!(uri.executable, Some(true));
        assert_eq!(uri.extract, Some(false));
        assert_eq!(uri.cache, Some(true));
        assert_eq!(uri.output_file.as_deref(), Some(EXECUTOR_FILE));
        let same = executor_uri(&artifact("http://h/bin/mesoflow-executor"));
        assert_eq!(same.output_file, None);
    }

    #[test]
    fn an_archive_is_extracted() {
        let uri = executor_uri(&artifact("http://h/dist/mesoflow.tar.gz?x=1"));
        assert_eq!(uri.extract, Some(true));
        assert_eq!(uri.executable, None);
        assert_eq!(uri.output_file, None);
    }

    #[test]
    fn the_bootstrap_command_runs_first() {
        let mut settings = TaskSettings {
            cpus: 1.0,
            mem_mb: 1024,
            disk_mb: 0,
            uris: vec![],
            labels: vec![],
            bootstrap_cmd: None,
            hostname: None,
            launch_timeout: std::time::Duration::from_secs(60),
        };
        assert_eq!(executor_command(&settings), "./mesoflow-executor");
        settings.bootstrap_cmd = Some("source env.sh".into());
        assert_eq!(
            executor_command(&settings),
            "source env.sh && ./mesoflow-executor"
        );
    }
}
