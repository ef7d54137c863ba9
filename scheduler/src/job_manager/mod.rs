//! The JobManager of one job: a pure state machine (events in, actions out) and its policies.
//!
//! - [`master`]: [`JobMaster`], the state machine: submission, deployment, failure handling,
//!   restarts, cancellation.
//! - [`placement`]: slot sharing and spread/pack placement of slots over workers.
//! - [`restart`]: Flink's restart strategies (`none`, `fixed-delay`, `exponential-delay`).
//!
//! The shell ([`shell`]: control connections, the ResourceManager driver, a timer) feeds the
//! machine and carries out its [`Action`]s; it never decides anything itself.

pub mod master;
pub mod placement;
pub mod restart;
pub mod shell;

#[cfg(test)]
mod tests;

pub use master::{
    Action, JobManagerConfig, JobMaster, JobOutcome, JobSnapshot, JobStatus, JobSubmission,
    RegistrationError, SubmitError, SubtaskRow, WorkerRow, WorkerState,
};
pub use placement::{PlacementError, Slot, assign_subtasks, place_slots, slots_needed};
pub use restart::{RestartDecision, RestartStrategy, RestartTracker};
