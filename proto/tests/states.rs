//! Terminal task and subtask states.

use mesoflow_proto::control::SubtaskState;
use mesoflow_proto::mesos::v1::{TaskState, is_terminal_state};

/// Mesos 1.11's `isTerminalState`, written as an exhaustive match so that a new variant does not
/// compile until it is classified here.
fn mesos_is_terminal(state: TaskState) -> bool {
    match state {
        TaskState::TaskStaging
        | TaskState::TaskStarting
        | TaskState::TaskRunning
        | TaskState::TaskKilling
        | TaskState::TaskUnreachable
        | TaskState::TaskUnknown => false,
        TaskState::TaskFinished
        | TaskState::TaskFailed
        | TaskState::TaskKilled
        | TaskState::TaskError
        | TaskState::TaskLost
        | TaskState::TaskDropped
        | TaskState::TaskGone
        | TaskState::TaskGoneByOperator => true,
    }
}

#[test]
fn every_task_state_is_classified_as_mesos_does() {
    let mut known = 0;
    for raw in -2..64 {
        match TaskState::try_from(raw) {
            Ok(state) => {
                known += 1;
                assert_eq!(state.is_terminal(), mesos_is_terminal(state), "{state:?}");
                assert_eq!(is_terminal_state(raw), state.is_terminal(), "{raw}");
            }
            // Values of a newer Mesos are not terminal.
            Err(_) => assert!(!is_terminal_state(raw), "{raw}"),
        }
    }
    assert_eq!(known, 14);
    let terminal: Vec<i32> = (0..20).filter(|s| is_terminal_state(*s)).collect();
    // FINISHED 2, FAILED 3, KILLED 4, LOST 5, ERROR 7, DROPPED 9, GONE 11, GONE_BY_OPERATOR 12
    assert_eq!(terminal, vec![2, 3, 4, 5, 7, 9, 11, 12]);
}

#[test]
fn every_subtask_state_is_classified() {
    for raw in 0..8 {
        let Ok(state) = SubtaskState::try_from(raw) else {
            continue;
        };
        let expected = match state {
            SubtaskState::Unspecified | SubtaskState::Deploying | SubtaskState::Running => false,
            SubtaskState::Finished | SubtaskState::Canceled | SubtaskState::Failed => true,
        };
        assert_eq!(state.is_terminal(), expected, "{state:?}");
    }
}
