//! Errors of the engine: building a job, planning it, and running it.

use std::path::PathBuf;

/// Everything that can stop a job from being built, planned or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job graph is inconsistent (cycle, missing input, bad parallelism ...).
    #[error("invalid job graph: {0}")]
    InvalidGraph(String),
    /// A job, parameter or configuration key was wrong; the message names the valid ones.
    #[error("{0}")]
    InvalidArgument(String),
    /// An input file or directory could not be found or read.
    #[error("cannot read input '{path}': {cause}")]
    Input {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// A sink could not write its output.
    #[error("cannot write output '{path}': {cause}")]
    Output {
        /// The file, directory or stream.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// A subtask failed while running.
    #[error("subtask {task} failed: {message}")]
    TaskFailed {
        /// `operator (i/p)`.
        task: String,
        /// What went wrong.
        message: String,
    },
    /// An input channel closed without end of input: a consequence of another subtask's
    /// failure, reported only when no cause was recorded.
    #[error("subtask {task}: an upstream subtask stopped without ending its output")]
    UpstreamVanished {
        /// `operator (i/p)` of the subtask that noticed.
        task: String,
    },
    /// A channel to or from another executor failed (connection lost, peer reset, corrupt or
    /// tampered data refused).
    #[error("channel {channel} failed: {cause}")]
    Channel {
        /// Which channel (`job/attempt/exchange/producer->consumer`).
        channel: String,
        /// What the shuffle reported.
        #[source]
        cause: crate::shuffle::ShuffleError,
    },
    /// Operator state could not be snapshotted or restored (a checkpoint written by another
    /// version of the job, or a bug): the message names the operator and the state.
    #[error("state of operator '{operator}': {message}")]
    State {
        /// The operator's id.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// The keyed state backend failed (a state file could not be written, or its contents
    /// were damaged).
    #[error("keyed state: {0}")]
    StateBackend(#[from] crate::state::StateError),
    /// The reader of stdout went away (`mesoflow run ... | head`): the job stops quietly.
    #[error("stdout was closed by its reader")]
    OutputClosed,
    /// The job was cancelled (Ctrl-C or an explicit cancel) before it finished.
    #[error("job cancelled")]
    Cancelled,
}

/// Result of engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
