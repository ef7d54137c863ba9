//! Wire formats shared by every mesoflow process.
//!
//! - [`mesos::v1`]: the Mesos v1 messages (packages `mesos.v1`, `mesos.v1.scheduler`,
//!   `mesos.v1.executor`), wire-compatible with Mesos 1.11. They are generated at build time from
//!   our own `.proto` files (`proto/mesos/v1/`, themselves generated from the field table by
//!   `tools/gen_mesos_protos.py`) with protox and prost: no system `protoc` is needed.
//! - [`internal`]: mesoflow's own control messages carried in opaque Mesos byte fields
//!   (`TaskInfo.data`, executor and scheduler MESSAGE data).
//! - [`control`]: the JobManager <-> TaskManager control protocol.
//! - [`recordio`]: the `<decimal length>\n<bytes>` framing of the Mesos event streams.
//!
//! Decoding is tolerant where Mesos requires it: unknown fields are skipped and enum fields are
//! kept as raw `i32`, so values added by newer masters (a 1.11 master already advertises
//! `MasterInfo.Capability.Type = 3`) decode fine; use the generated `try_from`/accessors and treat
//! unknown values as "ignore". prost does not enforce proto2 `required`: check what you rely on.

pub mod recordio;

/// Media type of a serialized protobuf `Call`/`Event` (request bodies and event streams).
/// Mesos compares it as an exact string: never add parameters.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
/// Media type of the JSON dialect of the same messages (debugging with curl).
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// The compiled `FileDescriptorSet` of every `.proto` in this crate (binary protobuf). Useful
/// for reflection (e.g. Mesos-style JSON with `prost-reflect`) and for checking the schema.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mesoflow_descriptor_set.bin"));

/// Mesos messages.
pub mod mesos {
    /// Mesos v1 API messages (`mesos.v1`).
    #[allow(clippy::all, missing_docs, rustdoc::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));

        impl TaskState {
            /// Whether a task in this state is over for good, as Mesos 1.11's
            /// `protobuf::isTerminalState` defines it: FINISHED, FAILED, KILLED, LOST, ERROR,
            /// DROPPED, GONE and GONE_BY_OPERATOR. UNREACHABLE and UNKNOWN are not terminal (the
            /// task may come back), nor are STAGING, STARTING, RUNNING and KILLING.
            pub fn is_terminal(self) -> bool {
                matches!(
                    self,
                    TaskState::TaskFinished
                        | TaskState::TaskFailed
                        | TaskState::TaskKilled
                        | TaskState::TaskLost
                        | TaskState::TaskError
                        | TaskState::TaskDropped
                        | TaskState::TaskGone
                        | TaskState::TaskGoneByOperator
                )
            }
        }

        /// [`TaskState::is_terminal`] of a raw `TaskStatus.state`; a value this build does not
        /// know (sent by a newer master or agent) is not terminal.
        pub fn is_terminal_state(state: i32) -> bool {
            TaskState::try_from(state).is_ok_and(TaskState::is_terminal)
        }

        /// The v1 scheduler API (`mesos.v1.scheduler`): `Call`s a framework sends to
        /// `/api/v1/scheduler` and the `Event`s it receives on its subscription stream.
        pub mod scheduler {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
        }

        /// The v1 executor API (`mesos.v1.executor`): `Call`s an executor sends to the agent's
        /// `/api/v1/executor` and the `Event`s it receives on its subscription stream.
        pub mod executor {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.rs"));
        }
    }
}

/// mesoflow's own control messages (`mesoflow.internal`), see `proto/mesoflow/internal.proto`.
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod internal {
    include!(concat!(env!("OUT_DIR"), "/mesoflow.internal.rs"));
}

/// Checkpoint and savepoint metadata (`mesoflow.checkpoint`), see
/// `proto/mesoflow/checkpoint.proto`.
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod checkpoint {
    include!(concat!(env!("OUT_DIR"), "/mesoflow.checkpoint.rs"));

    /// The metadata layout this build writes and reads.
    pub const FORMAT_VERSION: u32 = 1;
}

/// The JobManager <-> TaskManager control protocol (`mesoflow.control`), see
/// `proto/mesoflow/control.proto`.
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod control {
    include!(concat!(env!("OUT_DIR"), "/mesoflow.control.rs"));

    /// Version of the control protocol this build speaks.
    pub const PROTOCOL_VERSION: u32 = 1;

    impl SubtaskState {
        /// Whether a subtask in this state is over: FINISHED, CANCELED or FAILED.
        pub fn is_terminal(self) -> bool {
            matches!(
                self,
                SubtaskState::Finished | SubtaskState::Canceled | SubtaskState::Failed
            )
        }
    }
}
