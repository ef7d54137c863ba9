//! A request to run a built-in job, turned into what a JobManager deploys.
//!
//! The local `mesoflow run` and `POST /jobs` both come through [`prepare`], so a job that is
//! refused (unknown name, undeclared parameter, graph that cannot be planned) is refused with
//! the same message on both paths, before any slot is asked for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::key_groups::UPPER_MAX_PARALLELISM;
use mesoflow_dataplane::plan::plan;
use mesoflow_dataplane::{EngineError, EnvConfig, RuntimeConfig, SinkSpec};
use mesoflow_proto::control::sink_definition::Kind as SinkKind;
use mesoflow_proto::control::{JobDefinition, RuntimeSettings, SinkDefinition};
use serde::{Deserialize, Serialize};

/// What to run: the body of `POST /jobs`, and what the local CLI builds from its flags.
///
/// Unknown fields are refused so that a misspelt key (`"paralelism"`) is an error instead of
/// a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Built-in job name (see `mesoflow jobs`).
    pub job: String,
    /// Job parameters, e.g. `{"input": "/data/words.txt"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Default parallelism of every operator (the cluster's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Key groups of keyed operators (the cluster's default when absent).
    #[serde(
        default,
        rename = "maxParallelism",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_parallelism: Option<u32>,
    /// Where results go (`print` when absent: lines on the TaskManagers' stdout, as Flink's
    /// `print()`).
    #[serde(default)]
    pub sink: SinkRequest,
    /// Display name (the job name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Savepoint (or retained checkpoint) directory to start from (Flink's run request
    /// field; `-s` on the command line).
    #[serde(
        default,
        rename = "savepointPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub savepoint_path: Option<String>,
}

/// The sink of a [`JobRequest`], tagged by `kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkRequest {
    /// One line per record on stdout.
    #[default]
    Print,
    /// One part file per sink subtask under `path` (absolute: it is a path on the TaskManagers).
    Files {
        /// Output directory.
        path: PathBuf,
    },
    /// Count and checksum only.
    Checksum,
    /// Count only.
    Discard,
}

/// Cluster-side defaults for what a request leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionDefaults {
    /// `parallelism.default`.
    pub parallelism: u32,
    /// `pipeline.max-parallelism`.
    pub max_parallelism: u32,
    /// Batch size, channel capacity, buffer timeout.
    pub runtime: RuntimeConfig,
}

/// A request that built and planned: ready to be handed to a JobMaster.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedJob {
    /// What every TaskManager builds.
    pub definition: JobDefinition,
    /// Parallelism of each chain of the physical plan, in plan order.
    pub chains: Vec<u32>,
    /// One name per chain, its operators' names joined with " -> " as Flink names chained
    /// vertices.
    pub vertex_names: Vec<String>,
    /// The request's display name, or the job name.
    pub display_name: String,
    /// The job graph as JSON (for logs and a future plan endpoint).
    pub graph_json: String,
    /// Chains whose head is a source (checkpoints are triggered there).
    pub source_chains: Vec<u32>,
    /// Stable ids of every operator (a savepoint to restore must only name these).
    pub operator_ids: Vec<String>,
}

/// Why a request cannot run; the message is meant for the user as it is.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Unknown job, undeclared or malformed parameter, graph the engine refuses.
    #[error("{0}")]
    Job(Box<EngineError>),
    /// Parallelism out of range.
    #[error("{0}")]
    Parallelism(String),
    /// A files sink with a path the TaskManagers cannot resolve.
    #[error("the files sink needs an absolute path: got '{0}'")]
    RelativeSinkPath(PathBuf),
    /// The graph built but cannot be planned.
    #[error("cannot plan job '{job}': {source}")]
    Plan {
        /// Job name.
        job: String,
        /// The planner's reason.
        source: Box<EngineError>,
    },
}

impl From<EngineError> for RequestError {
    fn from(e: EngineError) -> Self {
        RequestError::Job(Box::new(e))
    }
}

impl SinkRequest {
    /// The engine's sink for this request.
    pub fn spec(&self) -> SinkSpec {
        match self {
            SinkRequest::Print => SinkSpec::Print,
            SinkRequest::Files { path } => SinkSpec::Files(path.clone()),
            SinkRequest::Checksum => SinkSpec::Checksum,
            SinkRequest::Discard => SinkSpec::Discard,
        }
    }

    fn definition(&self) -> Result<SinkDefinition, RequestError> {
        let (kind, path) = match self {
            SinkRequest::Print => (SinkKind::Print, String::new()),
            SinkRequest::Checksum => (SinkKind::Checksum, String::new()),
            SinkRequest::Discard => (SinkKind::Discard, String::new()),
            SinkRequest::Files { path } => {
                if !path.is_absolute() {
                    return Err(RequestError::RelativeSinkPath(path.clone()));
                }
                (SinkKind::Files, path.to_string_lossy().into_owned())
            }
        };
        Ok(SinkDefinition {
            kind: kind as i32,
            path,
        })
    }
}

/// Builds and plans the requested job with `defaults` filling what the request leaves out.
pub fn prepare(
    request: &JobRequest,
    defaults: &ExecutionDefaults,
) -> Result<PreparedJob, RequestError> {
    let parallelism = request.parallelism.unwrap_or(defaults.parallelism);
    let max_parallelism = request.max_parallelism.unwrap_or(defaults.max_parallelism);
    if parallelism == 0 {
        return Err(RequestError::Parallelism(
            "parallelism must be positive".into(),
        ));
    }
    if max_parallelism == 0 || max_parallelism > UPPER_MAX_PARALLELISM {
        return Err(RequestError::Parallelism(format!(
            "maxParallelism must be between 1 and {UPPER_MAX_PARALLELISM}: got {max_parallelism}"
        )));
    }
    if parallelism > max_parallelism {
        return Err(RequestError::Parallelism(format!(
            "parallelism {parallelism} exceeds maxParallelism {max_parallelism}"
        )));
    }
    let sink = request.sink.definition()?;
    let items: Vec<String> = request
        .parameters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let params = Params::parse(&items)?;
    let job = jobs::build(
        &request.job,
        &params,
        EnvConfig {
            job_name: request.job.clone(),
            parallelism,
            max_parallelism,
            sink: request.sink.spec(),
        },
    )?;
    let physical = plan(&job.graph).map_err(|source| RequestError::Plan {
        job: request.job.clone(),
        source: Box::new(source),
    })?;
    let chains = physical.chains.iter().map(|c| c.parallelism).collect();
    let source_chains = physical
        .chains
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.nodes.first().is_some_and(|&n| {
                job.graph.nodes[n].kind == mesoflow_dataplane::jobgraph::NodeKind::Source
            })
        })
        .map(|(i, _)| i as u32)
        .collect();
    let operator_ids = job.graph.nodes.iter().map(|n| n.id.clone()).collect();
    let vertex_names = physical
        .chains
        .iter()
        .map(|c| {
            c.nodes
                .iter()
                .map(|&n| job.graph.nodes[n].name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .collect();
    let graph_json = job.graph.to_json();
    let definition = JobDefinition {
        name: request.job.clone(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        parallelism,
        max_parallelism,
        graph_json: graph_json.clone(),
        sink: Some(sink),
        runtime: Some(RuntimeSettings {
            batch_size: defaults.runtime.batch_size as u32,
            channel_capacity: defaults.runtime.channel_capacity as u32,
            buffer_timeout_ms: defaults.runtime.buffer_timeout_ms,
        }),
    };
    Ok(PreparedJob {
        definition,
        chains,
        vertex_names,
        display_name: request.name.clone().unwrap_or_else(|| request.job.clone()),
        graph_json,
        source_chains,
        operator_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ExecutionDefaults {
        ExecutionDefaults {
            parallelism: 2,
            max_parallelism: 128,
            runtime: RuntimeConfig::default(),
        }
    }

    /// `wordcount` opens its input when the job is built, so it needs a real file.
    fn wordcount() -> JobRequest {
        let input =
            std::env::temp_dir().join(format!("mesoflow-request-{}.txt", std::process::id()));
        std::fs::write(&input, "a b a\n").unwrap();
        JobRequest {
            job: "wordcount".into(),
            parameters: [("input".to_owned(), input.to_string_lossy().into_owned())].into(),
            parallelism: None,
            max_parallelism: None,
            sink: SinkRequest::Checksum,
            name: None,
            savepoint_path: None,
        }
    }

    #[test]
    fn a_request_builds_plans_and_names_its_vertices() {
        let p = prepare(&wordcount(), &defaults()).unwrap();
        assert_eq!(p.definition.name, "wordcount");
        assert_eq!(p.definition.parallelism, 2);
        assert!(p.definition.params["input"].ends_with(".txt"));
        assert_eq!(p.chains.len(), p.vertex_names.len());
        assert!(!p.chains.is_empty());
        assert!(p.vertex_names.iter().all(|n| !n.is_empty()));
        assert_eq!(p.display_name, "wordcount");
        // The source heads the first chain, and only it.
        assert_eq!(p.source_chains, vec![0]);
        assert!(!p.operator_ids.is_empty());
    }

    #[test]
    fn wrong_job_parameter_or_parallelism_is_explained() {
        let mut r = wordcount();
        r.job = "wordcont".into();
        assert!(prepare(&r, &defaults()).is_err());
        let mut r = wordcount();
        r.parameters.insert("inptu".into(), "x".into());
        let e = prepare(&r, &defaults()).unwrap_err().to_string();
        assert!(e.contains("inptu"), "{e}");
        let mut r = wordcount();
        r.parallelism = Some(0);
        assert!(prepare(&r, &defaults()).is_err());
        let mut r = wordcount();
        r.sink = SinkRequest::Files { path: "out".into() };
        assert!(matches!(
            prepare(&r, &defaults()),
            Err(RequestError::RelativeSinkPath(_))
        ));
    }

    #[test]
    fn request_json_refuses_unknown_fields() {
        let e = serde_json::from_str::<JobRequest>(r#"{"job":"wordcount","paralelism":2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("paralelism"), "{e}");
        assert!(
            serde_json::from_str::<JobRequest>(r#"{"job":"x","sink":{"kind":"files"}}"#).is_err()
        );
        let r: JobRequest = serde_json::from_str(
            r#"{"job":"x","maxParallelism":64,"sink":{"kind":"files","path":"/o"}}"#,
        )
        .unwrap();
        assert_eq!(r.max_parallelism, Some(64));
        assert_eq!(r.sink, SinkRequest::Files { path: "/o".into() });
    }
}
