//! The JobManager: one pure state machine per job (events in, actions out), its policies, and
//! the session cluster that hosts many jobs on one pool of TaskManagers.
//!
//! - [`dispatcher`]: [`Dispatcher`], the session cluster: jobs, the TaskManager pool, binding
//!   the one to the other; [`session`] is its async shell and the handle the REST API uses.
//! - [`master`]: [`JobMaster`], the state machine: submission, deployment, failure handling,
//!   restarts, cancellation.
//! - [`placement`]: slot sharing and spread/pack placement of slots over workers.
//! - [`checkpoints`]: [`checkpoints::CheckpointCoordinator`], a job's checkpoints and
//!   savepoints (triggers, acknowledgements, metadata, retention, file reference counts).
//! - [`restart`]: Flink's restart strategies (`none`, `fixed-delay`, `exponential-delay`).
//! - [`request`]: a request to run a built-in job, built and planned into a submission.
//!
//! The one async shell is [`session`]'s (control connections, the ResourceManager driver, a
//! timer): it feeds the [`Dispatcher`] and carries out its [`DispatcherAction`]s, deciding
//! nothing itself. A local `mesoflow run` is a session cluster hosting a single job.

pub mod checkpoints;
pub mod dispatcher;
pub mod master;
pub mod placement;
pub mod request;
pub mod restart;
pub mod session;

#[cfg(test)]
mod tests;

pub use dispatcher::{
    CancelError, DispatchError, Dispatcher, DispatcherAction, DispatcherConfig, JobEvent, JobView,
    PoolState, SavepointRequestError, VertexView, WorkerView,
};
pub use master::{
    Action, JobManagerConfig, JobMaster, JobOutcome, JobSnapshot, JobStatus, JobSubmission,
    RegistrationError, SubmitError, SubtaskRow, WorkerRow, WorkerState,
};
pub use placement::{PlacementError, Slot, assign_subtasks, place_slots, slots_needed};
pub use restart::{RestartDecision, RestartStrategy, RestartTracker};
