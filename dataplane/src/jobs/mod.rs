//! The catalog of built-in jobs, runnable by name with parameters (`mesoflow run <job> -p k=v`).
//!
//! Each job is a builder function over a [`StreamEnvironment`]; every process that runs the same
//! binary rebuilds the same graph from the job's name and parameters. Semantics and output lines
//! follow `docs/workloads.md`, the contract shared with the Apache Flink baseline.

pub mod datagen_jobs;
pub mod format;
pub mod keyed_state;
pub mod nexmark_jobs;
pub mod params;
pub mod wordcount;

pub use params::{ParamSpec, Params};

use crate::error::{EngineError, Result};
use crate::runtime::Job;
use crate::stream::{EnvConfig, StreamEnvironment};

/// Builds a job's dataflow into an environment.
pub type JobBuilder = fn(&mut StreamEnvironment, &Params) -> Result<()>;

/// A built-in job.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec {
    /// Name (`mesoflow run <name>`).
    pub name: &'static str,
    /// One line on what it computes.
    pub about: &'static str,
    /// Parameters it accepts.
    pub params: &'static [ParamSpec],
    /// The builder.
    pub build: JobBuilder,
}

/// Every built-in job.
pub fn catalog() -> &'static [JobSpec] {
    &[
        wordcount::SPEC,
        datagen_jobs::STATELESS,
        datagen_jobs::WINDOWED_COUNT,
        datagen_jobs::SLIDING_COUNT,
        nexmark_jobs::Q0,
        nexmark_jobs::Q1,
        nexmark_jobs::Q2,
        nexmark_jobs::Q5,
        nexmark_jobs::Q7,
        keyed_state::SPEC,
    ]
}

/// The job called `name`; the error lists the valid names.
pub fn find(name: &str) -> Result<&'static JobSpec> {
    catalog().iter().find(|j| j.name == name).ok_or_else(|| {
        let names: Vec<_> = catalog().iter().map(|j| j.name).collect();
        EngineError::InvalidArgument(format!(
            "unknown job '{name}'; built-in jobs: {}",
            names.join(", ")
        ))
    })
}

/// Builds job `name` with `params` in an environment configured by `config`.
pub fn build(name: &str, params: &Params, mut config: EnvConfig) -> Result<Job> {
    let spec = find(name)?;
    params.check(name, spec.params)?;
    config.job_name = name.to_string();
    let mut env = StreamEnvironment::new(config);
    (spec.build)(&mut env, params)?;
    env.build()
}

/// `events` parameter: a count, where 0 means unbounded (run until cancelled).
pub(crate) fn events_bound(params: &Params) -> Result<Option<u64>> {
    let n = params.u64_or("events", 1_000_000)?;
    Ok((n > 0).then_some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_builds_a_valid_graph_and_unknown_names_are_listed() {
        for spec in catalog() {
            let job = build(spec.name, &Params::default(), EnvConfig::default()).unwrap();
            job.graph.validate().unwrap();
            crate::plan::plan(&job.graph).unwrap();
        }
        let e = find("wordcnt").unwrap_err().to_string();
        assert!(
            e.contains("unknown job 'wordcnt'") && e.contains("nexmark-q5"),
            "{e}"
        );
        let e = build(
            "wordcount",
            &Params::parse(&["inptu=x"]).unwrap(),
            EnvConfig::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("no parameter 'inptu'") && e.contains("input"),
            "{e}"
        );
    }
}
