//! The mesoflow custom Mesos executor.
//!
//! Mesos agents fetch one `mesoflow-executor` binary through `CommandInfo.URI` and start it in the
//! executor's sandbox. This crate holds what that binary needs to speak the Mesos v1 executor API:
//!
//! - [`environment`]: the `MESOS_*` variables the agent sets, validated;
//! - [`duration`]: the agent's duration strings (`15mins`, `2secs`);
//! - [`reconnect`]: when to re-subscribe after losing the agent, and when to give up.
//!
//! It is not a TaskManager: the slots that run subtasks are hosted behind a seam in the binary.

pub mod client;
pub mod duration;
pub mod environment;
pub mod reconnect;
