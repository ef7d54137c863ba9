//! The mesoflow scheduler: a Mesos framework (v1 scheduler HTTP API) hosting the JobManager and
//! the ResourceManager, and the library behind the `mesoflow` command-line tool.

pub mod artifact_server;
pub mod cli;
pub mod config;
pub mod entrypoint;
pub mod job_manager;
pub mod mesos;
pub mod resource_manager;
pub mod rest;
