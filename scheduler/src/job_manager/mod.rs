//! The JobManager of one job: a pure state machine (events in, actions out) and its policies.
//!
//! - [`restart`]: Flink's restart strategies (`none`, `fixed-delay`, `exponential-delay`).

pub mod restart;

pub use restart::{RestartDecision, RestartStrategy, RestartTracker};
