//! The coordinator alone: a fake clock, hand-made acknowledgements, exact actions.

use std::time::{Duration, Instant};

use mesoflow_proto::checkpoint::{KeyGroupState, OperatorSnapshot, Segment, SubtaskState};
use mesoflow_proto::control::{AcknowledgeCheckpoint, DeclineCheckpoint, SubtaskRef};

use super::*;

const JOB: u128 = 0x00c0_ffee_0000_0000_0000_0000_0000_0001;
const ROOT: &str = "/ck/00c0ffee000000000000000000000001";

fn settings() -> CheckpointSettings {
    CheckpointSettings {
        interval: Some(Duration::from_secs(10)),
        checkpoints_dir: Some("/ck".into()),
        savepoints_dir: Some("/sp".into()),
        num_retained: 2,
        ..Default::default()
    }
}

/// Two subtasks: (0, 0) a source, (1, 0) a sink. Deployed as attempt 0 and running at t0.
fn running(settings: CheckpointSettings) -> (CheckpointCoordinator, Instant) {
    let t0 = Instant::now();
    let mut c = CheckpointCoordinator::new(settings, JOB, "wc", None, (t0, 1_000_000));
    c.attempt_deployed(0, [(0, 0), (1, 0)], [(0, 0)]);
    c.attempt_running(0, t0);
    (c, t0)
}

fn drain(c: &mut CheckpointCoordinator) -> Vec<CheckpointAction> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn triggered(actions: &[CheckpointAction]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            CheckpointAction::Trigger(t) => Some(t.checkpoint_id),
            _ => None,
        })
        .collect()
}

fn sref(attempt: u32, chain: u32, index: u32) -> SubtaskRef {
    SubtaskRef {
        job_id: JOB.to_be_bytes().to_vec().into(),
        attempt,
        chain,
        index,
    }
}

fn seg(path: &str, length: u64) -> Segment {
    Segment {
        path: path.into(),
        offset: 0,
        length,
        checksum: 7,
    }
}

/// An ack of `(chain, index)` whose operator `op-<chain>` has one key group in `file`.
fn ack(attempt: u32, chain: u32, index: u32, id: u64, file: &str) -> AcknowledgeCheckpoint {
    AcknowledgeCheckpoint {
        subtask: Some(sref(attempt, chain, index)),
        checkpoint_id: id,
        operators: vec![OperatorSnapshot {
            operator_id: format!("op-{chain}"),
            parallelism: 1,
            max_parallelism: 128,
            key_groups: vec![KeyGroupState {
                state_name: "counts".into(),
                key_group: index,
                segment: Some(seg(file, 100)),
                written_by: id,
            }],
            subtasks: vec![],
        }],
        bytes_written: 100,
        sync_millis: 1,
        async_millis: 2,
        input_ended: false,
    }
}

/// Triggers the next checkpoint at `at`, acks both subtasks with these files, reports the
/// metadata written; returns the actions of the whole round.
fn round(c: &mut CheckpointCoordinator, at: Instant, files: [&str; 2]) -> Vec<CheckpointAction> {
    c.tick(at);
    let mut actions = drain(c);
    let id = *triggered(&actions).last().expect("a trigger");
    c.acknowledge(&ack(0, 0, 0, id, files[0]), at);
    c.acknowledge(&ack(0, 1, 0, id, files[1]), at);
    actions.extend(drain(c));
    c.metadata_written(id, Ok(()), at);
    actions.extend(drain(c));
    actions
}

fn deletions(actions: &[CheckpointAction]) -> (Vec<String>, Vec<String>) {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for a in actions {
        match a {
            CheckpointAction::DeleteFiles { paths, .. } => files.extend(paths.iter().cloned()),
            CheckpointAction::DeleteDir { path, .. } => dirs.push(path.clone()),
            _ => {}
        }
    }
    (files, dirs)
}

fn secs(t: Instant, s: u64) -> Instant {
    t + Duration::from_secs(s)
}

#[test]
fn triggers_ids_one_two_three_at_the_interval() {
    let (mut c, t0) = running(settings());
    assert_eq!(c.poll_timeout(), Some(secs(t0, 10)));
    c.tick(secs(t0, 9));
    assert!(triggered(&drain(&mut c)).is_empty());
    let a = round(&mut c, secs(t0, 10), ["shared/a", "shared/b"]);
    assert_eq!(triggered(&a), vec![1]);
    let a = round(&mut c, secs(t0, 20), ["shared/c", "shared/d"]);
    assert_eq!(triggered(&a), vec![2]);
    let a = round(&mut c, secs(t0, 30), ["shared/e", "shared/f"]);
    assert_eq!(triggered(&a), vec![3]);
    assert_eq!(c.retained_ids(), vec![2, 3]);
}

#[test]
fn the_trigger_message_targets_the_root_and_the_first_is_full() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    let CheckpointAction::Trigger(t) = &drain(&mut c)[0] else {
        panic!("no trigger")
    };
    assert_eq!(t.target_dir, ROOT);
    assert_eq!(
        (t.full, t.base_checkpoint, t.savepoint, t.attempt),
        (true, 0, false, 0)
    );
    assert_eq!(t.timestamp_ms, 1_010_000);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), secs(t0, 10));
    c.acknowledge(&ack(0, 1, 0, 1, "shared/b"), secs(t0, 10));
    c.metadata_written(1, Ok(()), secs(t0, 10));
    drain(&mut c);
    c.tick(secs(t0, 20));
    let CheckpointAction::Trigger(t) = &drain(&mut c)[0] else {
        panic!("no trigger")
    };
    assert_eq!((t.checkpoint_id, t.full, t.base_checkpoint), (2, false, 1));
}

#[test]
fn no_trigger_before_the_attempt_is_running_or_without_interval() {
    let t0 = Instant::now();
    let mut c = CheckpointCoordinator::new(settings(), JOB, "wc", None, (t0, 0));
    c.attempt_deployed(0, [(0, 0)], [(0, 0)]);
    assert_eq!(c.poll_timeout(), None);
    c.tick(secs(t0, 100));
    assert!(drain(&mut c).is_empty());
    let (mut c, t0) = running(CheckpointSettings {
        interval: None,
        ..settings()
    });
    assert_eq!(c.poll_timeout(), None);
    c.tick(secs(t0, 1000));
    assert!(drain(&mut c).is_empty());
}

#[test]
fn at_most_one_pending_and_the_timeout_is_its_deadline() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    assert_eq!(triggered(&drain(&mut c)), vec![1]);
    c.tick(secs(t0, 20));
    assert!(triggered(&drain(&mut c)).is_empty());
    assert_eq!(c.poll_timeout(), Some(secs(t0, 610)));
}

#[test]
fn completion_writes_metadata_then_notifies() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), secs(t0, 11));
    assert!(drain(&mut c).is_empty(), "one ack missing");
    c.acknowledge(&ack(0, 1, 0, 1, "shared/b"), secs(t0, 12));
    let actions = drain(&mut c);
    let [
        CheckpointAction::WriteMetadata {
            checkpoint_id,
            root,
            path,
            bytes,
        },
    ] = &actions[..]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (*checkpoint_id, root.as_str(), path.as_str()),
        (1, ROOT, "chk-1/_metadata")
    );
    let metadata = decode_metadata(bytes).unwrap();
    assert_eq!(metadata.checkpoint_id, 1);
    assert_eq!(metadata.job_id.as_ref(), JOB.to_be_bytes());
    assert_eq!(metadata.job_name, "wc");
    let ops: Vec<&str> = metadata
        .operators
        .iter()
        .map(|o| o.operator_id.as_str())
        .collect();
    assert_eq!(ops, vec!["op-0", "op-1"]);
    // Not complete until the write is reported.
    assert!(c.latest_completed().is_none());
    c.metadata_written(1, Ok(()), secs(t0, 13));
    assert_eq!(
        drain(&mut c),
        vec![CheckpointAction::NotifyComplete {
            attempt: 0,
            checkpoint_id: 1,
            end_of_input: false
        }]
    );
    let (id, root, m) = c.latest_completed().unwrap();
    assert_eq!((id, root), (1, ROOT));
    assert_eq!(m, &metadata);
}

#[test]
fn acks_of_one_operator_from_several_subtasks_are_merged() {
    let t0 = Instant::now();
    let mut c = CheckpointCoordinator::new(settings(), JOB, "wc", None, (t0, 0));
    c.attempt_deployed(0, [(1, 0), (1, 1)], []);
    c.attempt_running(0, t0);
    c.tick(secs(t0, 10));
    drain(&mut c);
    let mut a1 = ack(0, 1, 1, 1, "shared/y");
    a1.operators[0].subtasks.push(SubtaskState {
        subtask: 1,
        state_name: "offsets".into(),
        segment: Some(seg("shared/z", 5)),
    });
    c.acknowledge(&ack(0, 1, 0, 1, "shared/x"), t0);
    c.acknowledge(&a1, t0);
    let actions = drain(&mut c);
    let CheckpointAction::WriteMetadata { bytes, .. } = &actions[0] else {
        panic!()
    };
    let m = decode_metadata(bytes).unwrap();
    assert_eq!(m.operators.len(), 1);
    let kgs: Vec<u32> = m.operators[0]
        .key_groups
        .iter()
        .map(|k| k.key_group)
        .collect();
    assert_eq!(kgs, vec![0, 1]);
    assert_eq!(m.operators[0].subtasks.len(), 1);
    c.metadata_written(1, Ok(()), t0);
    assert_eq!(c.stats(t0).latest_completed.unwrap().state_size, 205);
}

#[test]
fn foreign_duplicate_and_unknown_acks_are_ignored() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), t0);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), t0); // duplicate
    c.acknowledge(&ack(1, 1, 0, 1, "shared/b"), t0); // other attempt
    c.acknowledge(&ack(0, 1, 0, 7, "shared/b"), t0); // other checkpoint
    c.acknowledge(&ack(0, 5, 0, 1, "shared/b"), t0); // unknown subtask
    let mut other_job = ack(0, 1, 0, 1, "shared/b");
    other_job.subtask.as_mut().unwrap().job_id = 5u128.to_be_bytes().to_vec().into();
    c.acknowledge(&other_job, t0);
    c.acknowledge(&AcknowledgeCheckpoint::default(), t0);
    assert!(drain(&mut c).is_empty());
    c.acknowledge(&ack(0, 1, 0, 1, "shared/b"), t0);
    assert!(matches!(
        drain(&mut c)[..],
        [CheckpointAction::WriteMetadata { .. }]
    ));
}

#[test]
fn subsumed_checkpoints_delete_their_unshared_files_and_directory() {
    let (mut c, t0) = running(CheckpointSettings {
        num_retained: 1,
        ..settings()
    });
    round(&mut c, secs(t0, 10), ["shared/base", "shared/one"]);
    // Checkpoint 2 still references shared/base (incremental).
    let a = round(&mut c, secs(t0, 20), ["shared/base", "shared/two"]);
    assert_eq!(
        deletions(&a),
        (vec!["shared/one".to_owned()], vec!["chk-1".to_owned()])
    );
    let a = round(&mut c, secs(t0, 30), ["shared/three", "shared/four"]);
    assert_eq!(
        deletions(&a),
        (
            vec!["shared/base".to_owned(), "shared/two".to_owned()],
            vec!["chk-2".to_owned()]
        )
    );
    assert_eq!(c.retained_ids(), vec![3]);
}

#[test]
fn num_retained_keeps_that_many() {
    let (mut c, t0) = running(CheckpointSettings {
        num_retained: 3,
        ..settings()
    });
    for (i, at) in [10, 20, 30].into_iter().enumerate() {
        let a = round(&mut c, secs(t0, at), ["shared/s", &format!("shared/{i}")]);
        assert_eq!(deletions(&a), (vec![], vec![]));
    }
    let a = round(&mut c, secs(t0, 40), ["shared/s", "shared/3"]);
    assert_eq!(
        deletions(&a),
        (vec!["shared/0".to_owned()], vec!["chk-1".to_owned()])
    );
    assert_eq!(c.retained_ids(), vec![2, 3, 4]);
}

#[test]
fn timeout_aborts_notifies_and_deletes_what_the_acks_wrote() {
    let (mut c, t0) = running(settings());
    round(&mut c, secs(t0, 10), ["shared/kept", "shared/one"]);
    c.tick(secs(t0, 20));
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 2, "shared/kept"), secs(t0, 21));
    let mut a = ack(0, 0, 0, 2, "shared/new");
    a.subtask = Some(sref(0, 1, 0));
    c.acknowledge(&a, secs(t0, 21));
    // Only the write is missing; the timeout still applies.
    drain(&mut c);
    c.tick(secs(t0, 620));
    let actions = drain(&mut c);
    assert!(actions.iter().any(|a| matches!(a,
        CheckpointAction::NotifyAborted { checkpoint_id: 2, reason, .. } if reason.contains("expired"))));
    assert_eq!(
        deletions(&actions),
        (vec!["shared/new".to_owned()], vec!["chk-2".to_owned()])
    );
    // A late write of the aborted checkpoint leaves nothing behind.
    c.metadata_written(2, Ok(()), secs(t0, 621));
    assert_eq!(deletions(&drain(&mut c)).1, vec!["chk-2".to_owned()]);
    assert_eq!(c.latest_completed().unwrap().0, 1);
    // The schedule was overdue: checkpoint 3 went out with the abort.
    let stats = c.stats(secs(t0, 621));
    assert_eq!(
        (
            stats.triggered,
            stats.in_progress,
            stats.completed,
            stats.failed
        ),
        (3, 1, 1, 1)
    );
}

#[test]
fn tolerable_failures_exceeded_fails_the_job() {
    let (mut c, t0) = running(CheckpointSettings {
        tolerable_failures: 1,
        ..settings()
    });
    let decline = |id| DeclineCheckpoint {
        subtask: Some(sref(0, 1, 0)),
        checkpoint_id: id,
        reason: "disk full".into(),
    };
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.decline(&decline(1), secs(t0, 11));
    let a = drain(&mut c);
    assert!(
        !a.iter()
            .any(|a| matches!(a, CheckpointAction::FailJob { .. }))
    );
    c.tick(secs(t0, 20));
    assert_eq!(triggered(&drain(&mut c)), vec![2]);
    c.decline(&decline(2), secs(t0, 21));
    let a = drain(&mut c);
    assert!(a.iter().any(|a| matches!(a,
        CheckpointAction::FailJob { cause } if cause.contains("tolerable") && cause.contains("disk full"))));
}

#[test]
fn a_completed_checkpoint_resets_the_failure_count() {
    let (mut c, t0) = running(CheckpointSettings {
        tolerable_failures: 1,
        ..settings()
    });
    let decline = |id| DeclineCheckpoint {
        subtask: Some(sref(0, 0, 0)),
        checkpoint_id: id,
        reason: "x".into(),
    };
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.decline(&decline(1), secs(t0, 10));
    drain(&mut c);
    round(&mut c, secs(t0, 20), ["shared/a", "shared/b"]);
    c.tick(secs(t0, 30));
    drain(&mut c);
    c.decline(&decline(3), secs(t0, 30));
    assert!(
        !drain(&mut c)
            .iter()
            .any(|a| matches!(a, CheckpointAction::FailJob { .. }))
    );
}

#[test]
fn aborts_caused_by_the_attempt_ending_do_not_count() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), t0);
    c.attempt_ended("subtask 1.0 failed", secs(t0, 11));
    let a = drain(&mut c);
    assert!(
        !a.iter()
            .any(|a| matches!(a, CheckpointAction::FailJob { .. }))
    );
    // Its workers are being cancelled: no notification, but its files go.
    assert!(
        !a.iter()
            .any(|a| matches!(a, CheckpointAction::NotifyAborted { .. }))
    );
    assert_eq!(deletions(&a), (vec!["shared/a".to_owned()], vec![]));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_failed_metadata_write_aborts() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), t0);
    c.acknowledge(&ack(0, 1, 0, 1, "shared/b"), t0);
    drain(&mut c);
    c.metadata_written(1, Err("namenode down".into()), secs(t0, 11));
    let a = drain(&mut c);
    assert!(a.iter().any(
        |a| matches!(a, CheckpointAction::FailJob { cause } if cause.contains("namenode down"))
    ));
    assert_eq!(
        deletions(&a),
        (
            vec!["shared/a".to_owned(), "shared/b".to_owned()],
            vec!["chk-1".to_owned()]
        )
    );
    assert!(c.latest_completed().is_none());
}

#[test]
fn min_pause_delays_the_next_trigger_after_a_completion() {
    let (mut c, t0) = running(CheckpointSettings {
        min_pause: Duration::from_secs(8),
        ..settings()
    });
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), t0);
    c.acknowledge(&ack(0, 1, 0, 1, "shared/b"), t0);
    c.metadata_written(1, Ok(()), secs(t0, 17));
    drain(&mut c);
    // Interval says t0+20, min pause says t0+25.
    assert_eq!(c.poll_timeout(), Some(secs(t0, 25)));
    c.tick(secs(t0, 24));
    assert!(triggered(&drain(&mut c)).is_empty());
    c.tick(secs(t0, 25));
    assert_eq!(triggered(&drain(&mut c)), vec![2]);
}

#[test]
fn a_finished_subtask_aborts_the_pending_checkpoint_and_stops_triggering() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.subtask_finished(0, (0, 0), secs(t0, 11));
    let a = drain(&mut c);
    assert!(a.iter().any(|a| matches!(
        a,
        CheckpointAction::NotifyAborted {
            checkpoint_id: 1,
            ..
        }
    )));
    assert!(
        !a.iter()
            .any(|a| matches!(a, CheckpointAction::FailJob { .. }))
    );
    c.tick(secs(t0, 100));
    assert!(triggered(&drain(&mut c)).is_empty());
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(
        c.trigger_savepoint(None, false, secs(t0, 100)),
        Err(SavepointError::NotRunning)
    );
}

#[test]
fn a_finished_subtask_that_already_acked_does_not_abort() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), t0);
    c.subtask_finished(0, (0, 0), t0);
    assert!(drain(&mut c).is_empty());
    c.acknowledge(&ack(0, 1, 0, 1, "shared/b"), t0);
    c.metadata_written(1, Ok(()), t0);
    assert_eq!(c.latest_completed().unwrap().0, 1);
}

#[test]
fn savepoint_is_full_in_its_own_directory_and_never_subsumed() {
    let (mut c, t0) = running(CheckpointSettings {
        num_retained: 1,
        ..settings()
    });
    round(&mut c, secs(t0, 10), ["shared/a", "shared/b"]);
    let request = c
        .trigger_savepoint(Some("/target/"), false, secs(t0, 12))
        .unwrap();
    assert_eq!(
        c.savepoint_status(&request),
        Some(&SavepointStatus::InProgress)
    );
    let a = drain(&mut c);
    let CheckpointAction::Trigger(t) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(
        (t.checkpoint_id, t.full, t.savepoint, t.base_checkpoint),
        (2, true, true, 0)
    );
    let dir = t.target_dir.clone();
    let name = dir.strip_prefix("/target/").unwrap();
    assert!(name.starts_with("savepoint-00c0ff-"), "{name}");
    assert_eq!(name.len(), "savepoint-00c0ff-".len() + 12);
    c.acknowledge(&ack(0, 0, 0, 2, "sp-a"), t0);
    c.acknowledge(&ack(0, 1, 0, 2, "sp-b"), t0);
    let a = drain(&mut c);
    assert!(
        matches!(&a[..], [CheckpointAction::WriteMetadata { root, path, .. }] if *root == dir && path == "_metadata")
    );
    c.metadata_written(2, Ok(()), secs(t0, 13));
    let a = drain(&mut c);
    // An intermediate savepoint commits nothing.
    assert_eq!(
        a,
        vec![CheckpointAction::SavepointCompleted {
            request_id: request.clone(),
            location: dir.clone(),
            stop: false
        }]
    );
    assert_eq!(
        c.savepoint_status(&request),
        Some(&SavepointStatus::Completed { location: dir })
    );
    // Not a recovery point; the next checkpoint is 3 and subsumes only chk-1.
    assert_eq!(c.latest_completed().unwrap().0, 1);
    let a = round(&mut c, secs(t0, 20), ["shared/c", "shared/d"]);
    assert_eq!(triggered(&a), vec![3]);
    assert_eq!(deletions(&a).1, vec!["chk-1".to_owned()]);
    assert_eq!(c.stats(secs(t0, 20)).latest_savepoint.unwrap().id, 2);
}

#[test]
fn savepoint_waits_for_the_pending_checkpoint() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    let request = c.trigger_savepoint(None, false, secs(t0, 10)).unwrap();
    assert!(triggered(&drain(&mut c)).is_empty());
    assert!(matches!(
        c.trigger_savepoint(None, false, secs(t0, 10)),
        Err(SavepointError::InProgress(r)) if r == request
    ));
    c.acknowledge(&ack(0, 0, 0, 1, "shared/a"), t0);
    c.acknowledge(&ack(0, 1, 0, 1, "shared/b"), t0);
    c.metadata_written(1, Ok(()), secs(t0, 11));
    let a = drain(&mut c);
    assert_eq!(triggered(&a), vec![2]);
    assert!(a.iter().any(|a| matches!(a, CheckpointAction::Trigger(t) if t.savepoint && t.target_dir.starts_with("/sp/savepoint-"))));
}

#[test]
fn savepoint_needs_a_directory_and_a_running_job() {
    let (mut c, t0) = running(CheckpointSettings {
        savepoints_dir: None,
        ..settings()
    });
    assert_eq!(
        c.trigger_savepoint(None, false, t0),
        Err(SavepointError::NoTargetDirectory)
    );
    assert_eq!(
        c.trigger_savepoint(Some(" "), false, t0),
        Err(SavepointError::NoTargetDirectory)
    );
    c.attempt_ended("cancelled", t0);
    assert_eq!(
        c.trigger_savepoint(Some("/x"), false, t0),
        Err(SavepointError::NotRunning)
    );
}

#[test]
fn stop_with_savepoint_commits_and_asks_to_stop() {
    let (mut c, t0) = running(settings());
    let request = c.trigger_savepoint(None, true, t0).unwrap();
    drain(&mut c);
    c.acknowledge(&ack(0, 0, 0, 1, "a"), t0);
    c.acknowledge(&ack(0, 1, 0, 1, "b"), t0);
    drain(&mut c);
    c.metadata_written(1, Ok(()), t0);
    let a = drain(&mut c);
    assert_eq!(
        a[0],
        CheckpointAction::NotifyComplete {
            attempt: 0,
            checkpoint_id: 1,
            end_of_input: false
        }
    );
    assert!(
        matches!(&a[1], CheckpointAction::SavepointCompleted { request_id, stop: true, .. } if *request_id == request)
    );
}

#[test]
fn a_failed_savepoint_is_reported_removed_and_not_counted() {
    let (mut c, t0) = running(settings());
    let request = c.trigger_savepoint(Some("/t"), false, t0).unwrap();
    let a = drain(&mut c);
    let CheckpointAction::Trigger(t) = &a[0] else {
        panic!()
    };
    let name = t.target_dir.strip_prefix("/t/").unwrap().to_owned();
    c.decline(
        &DeclineCheckpoint {
            subtask: Some(sref(0, 0, 0)),
            checkpoint_id: 1,
            reason: "nope".into(),
        },
        t0,
    );
    let a = drain(&mut c);
    assert!(
        !a.iter()
            .any(|a| matches!(a, CheckpointAction::FailJob { .. }))
    );
    assert!(a.contains(&CheckpointAction::DeleteDir {
        root: "/t".into(),
        path: name
    }));
    assert!(
        matches!(c.savepoint_status(&request), Some(SavepointStatus::Failed { cause }) if cause.contains("nope"))
    );
    assert_eq!(c.savepoint_status("unknown"), None);
}

#[test]
fn corrupt_checkpoint_falls_back_to_the_previous_then_the_initial_restore() {
    let t0 = Instant::now();
    let initial = Restore {
        root: "/sp/savepoint-00c0ff-000000000001".into(),
        metadata: CheckpointMetadata {
            format_version: FORMAT_VERSION,
            checkpoint_id: 40,
            savepoint: true,
            ..Default::default()
        },
    };
    let mut c = CheckpointCoordinator::new(settings(), JOB, "wc", Some(initial.clone()), (t0, 0));
    assert_eq!(c.restore(), Some(initial.clone()));
    c.attempt_deployed(0, [(0, 0), (1, 0)], [(0, 0)]);
    c.attempt_running(0, t0);
    // Ids continue after the restored savepoint's.
    let a = round(&mut c, secs(t0, 10), ["shared/a", "shared/b"]);
    assert_eq!(triggered(&a), vec![41]);
    round(&mut c, secs(t0, 20), ["shared/c", "shared/d"]);
    assert_eq!(c.restore().unwrap().metadata.checkpoint_id, 42);
    assert_eq!(c.mark_corrupt(42), Fallback::Checkpoint(41));
    assert_eq!(c.restore().unwrap().metadata.checkpoint_id, 41);
    assert_eq!(
        c.mark_corrupt(41),
        Fallback::InitialRestore(initial.root.clone())
    );
    assert_eq!(c.restore(), Some(initial));
    assert_eq!(c.mark_corrupt(40), Fallback::Scratch);
    assert_eq!(c.restore(), None);
    // Its files are kept.
    assert!(deletions(&drain(&mut c)).0.is_empty());
}

#[test]
fn retention_on_job_end_follows_flink() {
    for (retention, end, deleted) in [
        (Retention::NoExternalizedCheckpoints, JobEnd::Failed, true),
        (
            Retention::NoExternalizedCheckpoints,
            JobEnd::Cancelled,
            true,
        ),
        (Retention::DeleteOnCancellation, JobEnd::Cancelled, true),
        (Retention::DeleteOnCancellation, JobEnd::Failed, false),
        (Retention::RetainOnCancellation, JobEnd::Cancelled, false),
        (Retention::RetainOnCancellation, JobEnd::Finished, true),
    ] {
        let (mut c, t0) = running(CheckpointSettings {
            retention,
            ..settings()
        });
        round(&mut c, secs(t0, 10), ["shared/a", "shared/b"]);
        round(&mut c, secs(t0, 20), ["shared/a", "shared/c"]);
        c.job_ended(end, secs(t0, 21));
        let (files, dirs) = deletions(&drain(&mut c));
        if deleted {
            assert_eq!(
                files,
                vec!["shared/b", "shared/a", "shared/c"],
                "{retention:?} {end:?}"
            );
            assert_eq!(dirs, vec!["chk-1", "chk-2"]);
        } else {
            assert!(files.is_empty() && dirs.is_empty(), "{retention:?} {end:?}");
        }
    }
}

#[test]
fn a_new_attempt_restarts_the_schedule_and_ignores_old_acks() {
    let (mut c, t0) = running(settings());
    c.tick(secs(t0, 10));
    drain(&mut c);
    c.attempt_ended("failover", secs(t0, 11));
    c.attempt_deployed(1, [(0, 0), (1, 0)], [(0, 0)]);
    c.acknowledge(&ack(0, 0, 0, 1, "x"), secs(t0, 12));
    assert!(drain(&mut c).is_empty());
    c.attempt_running(1, secs(t0, 15));
    assert_eq!(c.poll_timeout(), Some(secs(t0, 25)));
    c.tick(secs(t0, 25));
    let a = drain(&mut c);
    assert!(
        matches!(&a[..], [CheckpointAction::Trigger(t)] if t.checkpoint_id == 2 && t.attempt == 1)
    );
}

#[test]
fn stats_count_and_keep_a_bounded_history() {
    let (mut c, t0) = running(CheckpointSettings {
        num_retained: 1,
        ..settings()
    });
    for i in 1..=12u64 {
        round(
            &mut c,
            secs(t0, 10 * i),
            ["shared/a", &format!("shared/{i}")],
        );
    }
    c.tick(secs(t0, 130));
    drain(&mut c);
    let s = c.stats(secs(t0, 131));
    assert_eq!(
        (s.triggered, s.in_progress, s.completed, s.failed),
        (13, 1, 12, 0)
    );
    assert_eq!(s.history.len(), 10);
    assert_eq!(s.history[0].id, 13);
    assert_eq!(s.history[0].status, CheckpointStatus::InProgress);
    let latest = s.latest_completed.unwrap();
    assert_eq!(latest.id, 12);
    assert_eq!(latest.state_size, 200);
    assert_eq!(latest.external_path, format!("{ROOT}/chk-12"));
    assert_eq!(latest.trigger_timestamp_ms, 1_000_000 + 120_000);
}

#[test]
fn metadata_of_another_version_or_garbage_is_refused() {
    let m = CheckpointMetadata {
        format_version: FORMAT_VERSION + 1,
        ..Default::default()
    };
    assert!(matches!(
        decode_metadata(&encode_metadata(&m)),
        Err(MetadataError::Version { .. })
    ));
    assert!(matches!(
        decode_metadata(&[0xff, 0xff, 0xff]),
        Err(MetadataError::Decode(_))
    ));
}

/// The `end_of_input` flags of the completions among `actions`, by checkpoint.
fn completions(actions: &[CheckpointAction]) -> Vec<(u64, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            CheckpointAction::NotifyComplete {
                checkpoint_id,
                end_of_input,
                ..
            } => Some((*checkpoint_id, *end_of_input)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_checkpoint_after_every_source_ended_is_final_and_is_taken_at_once() {
    let t0 = Instant::now();
    let mut c = CheckpointCoordinator::new(settings(), JOB, "wc", None, (t0, 1_000_000));
    // Two sources (0, 0) and (0, 1), one sink.
    c.attempt_deployed(0, [(0, 0), (0, 1), (1, 0)], [(0, 0), (0, 1)]);
    c.attempt_running(0, t0);
    let source_ack = |index, id, ended| AcknowledgeCheckpoint {
        input_ended: ended,
        ..ack(0, 0, index, id, &format!("shared/{id}-{index}"))
    };

    // Source 0 ends first: nothing is triggered before the interval.
    c.input_ended(0, (0, 0), secs(t0, 2));
    c.input_ended(0, (1, 0), secs(t0, 2)); // not a source: ignored
    assert!(triggered(&drain(&mut c)).is_empty());
    // Checkpoint 1 at the interval: source 1 still reads, so it is not the final one.
    c.tick(secs(t0, 10));
    assert_eq!(triggered(&drain(&mut c)), vec![1]);
    c.acknowledge(&source_ack(0, 1, true), secs(t0, 10));
    c.acknowledge(&source_ack(1, 1, false), secs(t0, 10));
    c.acknowledge(&ack(0, 1, 0, 1, "shared/s1"), secs(t0, 10));
    c.metadata_written(1, Ok(()), secs(t0, 10));
    assert_eq!(completions(&drain(&mut c)), vec![(1, false)]);

    // Source 1 ends at 13 s: the final checkpoint is triggered then, not at 20 s.
    c.input_ended(0, (0, 1), secs(t0, 13));
    assert_eq!(triggered(&drain(&mut c)), vec![2]);
    c.acknowledge(&source_ack(0, 2, true), secs(t0, 13));
    c.acknowledge(&source_ack(1, 2, true), secs(t0, 13));
    c.acknowledge(&ack(0, 1, 0, 2, "shared/s2"), secs(t0, 13));
    c.metadata_written(2, Ok(()), secs(t0, 13));
    assert_eq!(completions(&drain(&mut c)), vec![(2, true)]);
}

#[test]
fn a_failed_final_checkpoint_is_retried_even_without_an_interval() {
    let t0 = Instant::now();
    let mut c = CheckpointCoordinator::new(
        CheckpointSettings {
            interval: None,
            ..settings()
        },
        JOB,
        "wc",
        None,
        (t0, 1_000_000),
    );
    c.attempt_deployed(0, [(0, 0), (1, 0)], [(0, 0)]);
    c.attempt_running(0, t0);
    assert_eq!(c.poll_timeout(), None);
    c.input_ended(0, (0, 0), secs(t0, 1));
    assert_eq!(triggered(&drain(&mut c)), vec![1]);
    c.decline(
        &DeclineCheckpoint {
            subtask: Some(sref(0, 1, 0)),
            checkpoint_id: 1,
            reason: "storage down".into(),
        },
        secs(t0, 1),
    );
    drain(&mut c);
    // Not at once (no busy loop), but soon.
    c.tick(secs(t0, 1));
    assert!(triggered(&drain(&mut c)).is_empty());
    assert_eq!(c.poll_timeout(), Some(secs(t0, 2)));
    c.tick(secs(t0, 2));
    assert_eq!(triggered(&drain(&mut c)), vec![2]);
}
