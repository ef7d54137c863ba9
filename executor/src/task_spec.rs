//! What a task launched on this executor is for: the `TaskSpec` the scheduler puts in
//! `TaskInfo.data`, decoded and checked before anything runs.
//!
//! Anything wrong here is the scheduler's (or an operator's) mistake, never a reason to panic:
//! the task fails with `REASON_TASK_INVALID` and a message that says what to fix.

use mesoflow_proto::internal::{Probe, TaskManager, TaskSpec, task_spec};
use mesoflow_proto::mesos::v1::TaskInfo;
use prost::Message;

/// The `TaskSpec.version` this executor understands.
pub const SUPPORTED_SPEC_VERSION: u32 = 1;

/// A runnable task kind.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskKind {
    /// A TaskManager hosting subtask slots until killed.
    TaskManager(Box<TaskManager>),
    /// A diagnostic task with a fixed duration and outcome.
    Probe(Probe),
}

/// Why a TaskInfo cannot be run by this executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskSpecError {
    /// `TaskInfo.data` is absent or empty.
    #[error(
        "TaskInfo.data is empty: a task for mesoflow-executor must carry a mesoflow TaskSpec (protobuf)"
    )]
    Missing,
    /// `TaskInfo.data` is not a protobuf `TaskSpec`.
    #[error(
        "TaskInfo.data is not a mesoflow TaskSpec ({0}); was the task meant for another executor?"
    )]
    Undecodable(String),
    /// The spec is from a newer (or broken) scheduler.
    #[error(
        "TaskSpec version {found} is not supported by this executor (it runs version {SUPPORTED_SPEC_VERSION}); use an executor binary built from the same release as the scheduler"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The spec names no kind this executor knows.
    #[error(
        "TaskSpec has no kind this executor knows (expected task_manager or probe); use an executor binary built from the same release as the scheduler"
    )]
    UnknownKind,
    /// A field of the spec is out of range.
    #[error("TaskSpec is invalid: {0}")]
    Invalid(String),
}

/// Decodes and validates the spec in a TaskInfo.
pub fn decode_task_spec(task: &TaskInfo) -> Result<TaskKind, TaskSpecError> {
    let data = task
        .data
        .as_ref()
        .filter(|d| !d.is_empty())
        .ok_or(TaskSpecError::Missing)?;
    let spec =
        TaskSpec::decode(data.as_ref()).map_err(|e| TaskSpecError::Undecodable(e.to_string()))?;
    if spec.version != SUPPORTED_SPEC_VERSION {
        return Err(TaskSpecError::UnsupportedVersion {
            found: spec.version,
        });
    }
    match spec.kind {
        Some(task_spec::Kind::TaskManager(tm)) => {
            if tm.slots == 0 {
                return Err(TaskSpecError::Invalid(
                    "task_manager.slots is 0; a TaskManager needs at least one slot".to_owned(),
                ));
            }
            if tm.task_manager_id.is_empty() {
                return Err(TaskSpecError::Invalid(
                    "task_manager.task_manager_id is empty".to_owned(),
                ));
            }
            Ok(TaskKind::TaskManager(Box::new(tm)))
        }
        Some(task_spec::Kind::Probe(probe)) => Ok(TaskKind::Probe(probe)),
        None => Err(TaskSpecError::UnknownKind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn task_with(data: Option<Vec<u8>>) -> TaskInfo {
        TaskInfo {
            data: data.map(Bytes::from),
            ..TaskInfo::default()
        }
    }

    fn spec(version: u32, kind: Option<task_spec::Kind>) -> Vec<u8> {
        TaskSpec { version, kind }.encode_to_vec()
    }

    #[test]
    fn decodes_both_kinds() {
        let probe = Probe {
            duration_ms: 250,
            exit_code: 3,
        };
        let task = task_with(Some(spec(1, Some(task_spec::Kind::Probe(probe)))));
        assert_eq!(decode_task_spec(&task), Ok(TaskKind::Probe(probe)));

        let tm = TaskManager {
            slots: 2,
            task_manager_id: "tm-1".to_owned(),
            ..TaskManager::default()
        };
        let task = task_with(Some(spec(
            1,
            Some(task_spec::Kind::TaskManager(tm.clone())),
        )));
        assert_eq!(
            decode_task_spec(&task),
            Ok(TaskKind::TaskManager(Box::new(tm)))
        );
    }

    #[test]
    fn refuses_what_it_cannot_run_with_a_clear_error() {
        assert_eq!(
            decode_task_spec(&task_with(None)),
            Err(TaskSpecError::Missing)
        );
        assert_eq!(
            decode_task_spec(&task_with(Some(Vec::new()))),
            Err(TaskSpecError::Missing)
        );
        let garbage = decode_task_spec(&task_with(Some(b"\xff\xff\xff\xffnot a spec".to_vec())));
        assert!(
            matches!(garbage, Err(TaskSpecError::Undecodable(_))),
            "{garbage:?}"
        );
        assert_eq!(
            decode_task_spec(&task_with(Some(spec(2, None)))),
            Err(TaskSpecError::UnsupportedVersion { found: 2 })
        );
        assert_eq!(
            decode_task_spec(&task_with(Some(spec(1, None)))),
            Err(TaskSpecError::UnknownKind)
        );
        let no_slots = TaskManager {
            slots: 0,
            task_manager_id: "tm".to_owned(),
            ..TaskManager::default()
        };
        let err = decode_task_spec(&task_with(Some(spec(
            1,
            Some(task_spec::Kind::TaskManager(no_slots)),
        ))))
        .unwrap_err();
        assert!(err.to_string().contains("slots is 0"), "{err}");
    }
}
