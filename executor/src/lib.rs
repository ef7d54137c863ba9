//! The mesoflow custom Mesos executor.
//!
//! Mesos agents fetch one `mesoflow-executor` binary through `CommandInfo.URI` and start it in the
//! executor's sandbox. This crate holds what that binary needs to speak the Mesos v1 executor API
//! and to run the tasks the scheduler launches on it:
//!
//! - [`environment`]: the `MESOS_*` variables the agent sets, validated;
//! - [`reconnect`]: when to re-subscribe after losing the agent, and when to give up;
//! - [`client`]: the executor API as a pure state machine (events in, actions out, time passed in);
//! - [`shell`]: the thin tokio/HTTP shell that drives the client against a real agent;
//! - [`task_spec`], [`runner`], [`task_manager`]: what a task is for and how it runs.

pub mod client;
pub mod environment;
pub mod reconnect;
pub mod runner;
pub mod shell;
pub mod task_manager;
pub mod task_spec;
