//! JobMaster scenarios: events in, actions out, a fake clock.

use std::time::{Duration, Instant};

use mesoflow_proto::control::{
    Heartbeat, JobDefinition, SubtaskMetrics, SubtaskRef, SubtaskState, SubtaskStateChange,
};

use super::restart::{ExponentialDelay, FixedDelay};
use super::*;
use crate::resource_manager::WorkerId;

const JOB: u128 = 0xab;

fn config(workers: u32, slots: u32, spread: bool, restart: RestartStrategy) -> JobManagerConfig {
    JobManagerConfig {
        workers,
        slots_per_worker: slots,
        spread,
        restart,
        ..Default::default()
    }
}

fn fixed(attempts: u32, secs: u64) -> RestartStrategy {
    RestartStrategy::FixedDelay(FixedDelay {
        attempts,
        delay: Duration::from_secs(secs),
    })
}

fn submission(chains: &[u32]) -> JobSubmission {
    JobSubmission {
        job_id: JOB,
        definition: JobDefinition {
            name: "wordcount".into(),
            parallelism: 2,
            ..Default::default()
        },
        chains: chains.to_vec(),
        ..Default::default()
    }
}

fn w(n: u32) -> WorkerId {
    WorkerId(format!("tm-000000ab-{n}"))
}

fn drain(m: &mut JobMaster) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn metrics(r: SubtaskRef, records: u64, checksum: u64) -> SubtaskMetrics {
    SubtaskMetrics {
        subtask: Some(r),
        records_in: records,
        records_out: records * 2,
        checksum,
        skipped: 1,
    }
}

fn sref(attempt: u32, chain: u32, index: u32) -> SubtaskRef {
    SubtaskRef {
        job_id: JOB.to_be_bytes().to_vec().into(),
        attempt,
        chain,
        index,
    }
}

fn change(attempt: u32, chain: u32, index: u32, state: SubtaskState) -> SubtaskStateChange {
    SubtaskStateChange {
        subtask: Some(sref(attempt, chain, index)),
        state: state as i32,
        message: if state == SubtaskState::Failed {
            "boom".into()
        } else {
            String::new()
        },
        metrics: None,
        suppress_restart: false,
        corrupt_checkpoint: 0,
        input_ended: false,
    }
}

/// A deploy in short: worker, attempt, its (chain, index) list.
type DeployShort = (WorkerId, u32, Vec<(u32, u32)>);

/// The deploys among `actions`, in short.
fn deploys(actions: &[Action]) -> Vec<DeployShort> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deploy { worker, deploy } => Some((
                worker.clone(),
                deploy.attempt,
                deploy.subtasks.iter().map(|s| (s.chain, s.index)).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn cancels(actions: &[Action]) -> Vec<(WorkerId, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CancelAttempt { worker, cancel } => Some((worker.clone(), cancel.attempt)),
            _ => None,
        })
        .collect()
}

fn statuses(actions: &[Action]) -> Vec<JobStatus> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::JobStatusChanged(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn releases(actions: &[Action]) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReleaseWorker { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn requests(actions: &[Action]) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RequestWorker { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// Submits `chains` and registers every requested worker with the slots it was asked for;
/// returns the actions that follows (the deploys).
fn running(m: &mut JobMaster, chains: &[u32], now: Instant) -> Vec<Action> {
    running_sub(m, submission(chains), now)
}

/// [`running`] with a submission of one's own.
fn running_sub(m: &mut JobMaster, job: JobSubmission, now: Instant) -> Vec<Action> {
    m.submit(job, now).unwrap();
    let asked: Vec<_> = drain(m)
        .into_iter()
        .filter_map(|a| match a {
            Action::RequestWorker { id, spec } => Some((id, spec.slots)),
            _ => None,
        })
        .collect();
    for (n, (id, slots)) in asked.iter().enumerate() {
        m.worker_registered(id, *slots, &format!("127.0.0.1:{}", 7000 + n), now)
            .unwrap();
    }
    drain(m)
}

/// Reports every subtask of `attempt` on the given workers' placements as `state`.
fn report_all(m: &mut JobMaster, attempt: u32, state: SubtaskState, now: Instant) {
    for row in m.snapshot().subtasks {
        if row.state == "SUBTASK_STATE_DEPLOYING" || row.state == "SUBTASK_STATE_RUNNING" {
            m.subtask_state(
                &row.worker,
                &change(attempt, row.chain, row.index, state),
                now,
            );
        }
    }
}

#[test]
fn happy_path_deploys_per_worker_and_sums_the_outcome() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, fixed(1, 1)));
    m.submit(submission(&[2, 2, 1]), t0).unwrap();
    let a = drain(&mut m);
    assert_eq!(statuses(&a), vec![JobStatus::Created]);
    assert_eq!(requests(&a), vec![w(0), w(1)]);
    assert!(matches!(&a[1], Action::RequestWorker { spec, .. } if spec.slots == 1));

    // Spread waits for every requested worker.
    m.worker_registered(&w(0), 1, "127.0.0.1:7000", t0).unwrap();
    assert!(drain(&mut m).is_empty());
    let accepted = m.worker_registered(&w(1), 1, "127.0.0.1:7001", t0).unwrap();
    assert_eq!(accepted.heartbeat_interval_ms, 10_000);
    let a = drain(&mut m);
    assert_eq!(statuses(&a), vec![JobStatus::Running]);
    assert_eq!(
        deploys(&a),
        vec![
            (w(0), 0, vec![(0, 0), (1, 0), (2, 0)]),
            (w(1), 0, vec![(0, 1), (1, 1)]),
        ]
    );
    let Action::Deploy { deploy, .. } = a
        .iter()
        .find(|a| matches!(a, Action::Deploy { .. }))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(deploy.job_id.as_ref(), JOB.to_be_bytes());
    assert_eq!(deploy.job.as_ref().unwrap().name, "wordcount");
    assert_eq!(deploy.placement.len(), 5);
    let peers: Vec<_> = deploy
        .peers
        .iter()
        .map(|p| (p.task_manager_id.as_str(), p.data_endpoint.as_str()))
        .collect();
    assert_eq!(
        peers,
        vec![
            ("tm-000000ab-0", "127.0.0.1:7000"),
            ("tm-000000ab-1", "127.0.0.1:7001")
        ]
    );

    // Running, then finished with final metrics.
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Running), t0);
    let placed = [(0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1), (2, 0, 0)];
    for (i, (chain, index, worker)) in placed.into_iter().enumerate() {
        assert_eq!(m.status(), JobStatus::Running);
        let mut c = change(0, chain, index, SubtaskState::Finished);
        let checksum = if i == 0 { u64::MAX } else { 1 };
        c.metrics = Some(metrics(sref(0, chain, index), 10, checksum));
        m.subtask_state(&w(worker), &c, t0);
    }
    let a = drain(&mut m);
    assert_eq!(
        a[0],
        Action::Finished(JobOutcome {
            records_in: 50,
            records_out: 100,
            checksum: 3, // u64::MAX + 4, wrapping
            skipped: 5,
            attempts: 1,
            restarts: 0,
        })
    );
    assert_eq!(statuses(&a), vec![JobStatus::Finished]);
    assert_eq!(releases(&a), vec![w(0), w(1)]);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_failed_subtask_cancels_and_restarts_after_the_delay() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, fixed(1, 2)));
    running(&mut m, &[2, 2], t0);
    m.subtask_state(&w(1), &change(0, 1, 1, SubtaskState::Failed), t0);
    let a = drain(&mut m);
    assert!(matches!(
        &a[0],
        Action::Restarting { attempt: 1, cause, delay }
            if cause == "subtask 1.1 on tm-000000ab-1 failed: boom" && *delay == Duration::from_secs(2)
    ));
    assert_eq!(statuses(&a), vec![JobStatus::Restarting]);
    assert_eq!(cancels(&a), vec![(w(0), 0), (w(1), 0)]);
    assert!(requests(&a).is_empty(), "no worker was lost");

    // The old attempt drains...
    report_all(
        &mut m,
        0,
        SubtaskState::Canceled,
        t0 + Duration::from_millis(100),
    );
    assert!(drain(&mut m).is_empty());
    // ...and the new one waits out the delay.
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    m.tick(t0 + Duration::from_secs(1));
    assert!(drain(&mut m).is_empty());
    let t2 = t0 + Duration::from_secs(2);
    m.tick(t2);
    let a = drain(&mut m);
    assert_eq!(statuses(&a), vec![JobStatus::Running]);
    assert_eq!(
        deploys(&a),
        vec![
            (w(0), 1, vec![(0, 0), (1, 0)]),
            (w(1), 1, vec![(0, 1), (1, 1)])
        ]
    );

    // Late messages of attempt 0 are ignored.
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Failed), t2);
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Finished), t2);
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.status(), JobStatus::Running);

    report_all(&mut m, 1, SubtaskState::Finished, t2);
    let a = drain(&mut m);
    assert!(matches!(
        a[0],
        Action::Finished(JobOutcome {
            attempts: 2,
            restarts: 1,
            ..
        })
    ));
}

#[test]
fn a_failure_that_suppresses_restarts_fails_the_job_without_restarting() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, fixed(5, 1)));
    running(&mut m, &[2, 2], t0);
    let mut failed = change(0, 1, 0, SubtaskState::Failed);
    failed.suppress_restart = true;
    m.subtask_state(&w(0), &failed, t0);
    let a = drain(&mut m);
    assert!(
        !a.iter().any(|a| matches!(a, Action::Restarting { .. })),
        "{a:?}"
    );
    assert_eq!(cancels(&a), vec![(w(0), 0), (w(1), 0)]);
    report_all(&mut m, 0, SubtaskState::Canceled, t0);
    let a = drain(&mut m);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Failed { cause } if cause.contains("boom"))),
        "{a:?}"
    );
    assert_eq!(m.status(), JobStatus::Failed);
}

#[test]
fn a_lost_worker_is_replaced_and_the_job_redeployed_once_it_registers() {
    let t0 = Instant::now();
    let restart = RestartStrategy::ExponentialDelay(ExponentialDelay {
        jitter_factor: 0.0,
        ..Default::default()
    });
    let mut m = JobMaster::new(config(2, 1, true, restart));
    running(&mut m, &[2], t0);
    m.worker_lost(&w(1), "exited with status 1", t0);
    let a = drain(&mut m);
    assert_eq!(releases(&a), vec![w(1)]);
    assert!(a.iter().any(|a| matches!(a,
        Action::Restarting { attempt: 1, cause, delay }
            if cause == "task manager tm-000000ab-1 lost: exited with status 1"
                && *delay == Duration::from_secs(1))));
    assert_eq!(cancels(&a), vec![(w(0), 0)]);
    assert_eq!(requests(&a), vec![w(2)]);

    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Canceled), t0);
    let t1 = t0 + Duration::from_secs(1);
    m.tick(t1);
    assert!(
        deploys(&drain(&mut m)).is_empty(),
        "waits for the replacement"
    );
    // The lost worker cannot come back.
    assert_eq!(
        m.worker_registered(&w(1), 1, "127.0.0.1:7001", t1),
        Err(RegistrationError::Unknown(w(1)))
    );
    m.worker_registered(&w(2), 1, "127.0.0.1:7002", t1).unwrap();
    assert_eq!(
        deploys(&drain(&mut m)),
        vec![(w(0), 1, vec![(0, 0)]), (w(2), 1, vec![(0, 1)])]
    );
    // A second report of the same loss changes nothing.
    m.worker_lost(&w(1), "control stream closed", t1);
    assert!(drain(&mut m).is_empty());
}

#[test]
fn heartbeat_timeout_loses_the_silent_worker() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, fixed(1, 1)));
    running(&mut m, &[2], t0);
    let beat = Heartbeat {
        sequence: 1,
        metrics: vec![metrics(sref(0, 0, 0), 5, 0)],
    };
    m.heartbeat(&w(0), &beat, t0 + Duration::from_secs(40));
    assert_eq!(m.snapshot().subtasks[0].records_out, 10);
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(50)));
    m.tick(t0 + Duration::from_secs(49));
    assert!(drain(&mut m).is_empty());
    m.tick(t0 + Duration::from_secs(50));
    let a = drain(&mut m);
    assert_eq!(releases(&a), vec![w(1)]);
    assert!(a.iter().any(|a| matches!(a,
        Action::Restarting { cause, .. } if cause.contains("tm-000000ab-1") && cause.contains("heartbeat"))));
    assert_eq!(requests(&a), vec![w(2)]);
    // w0 is next due at 40 s + 50 s.
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(90)));
}

#[test]
fn restart_strategy_none_fails_the_job_after_cancelling() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, RestartStrategy::None));
    running(&mut m, &[2], t0);
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Failed), t0);
    let a = drain(&mut m);
    assert_eq!(statuses(&a), vec![JobStatus::Failing]);
    assert_eq!(cancels(&a), vec![(w(1), 0)]);
    m.subtask_state(&w(1), &change(0, 0, 1, SubtaskState::Canceled), t0);
    let a = drain(&mut m);
    assert!(matches!(&a[0], Action::Failed { cause }
        if cause.starts_with("subtask 0.0 on tm-000000ab-0 failed: boom") && cause.contains("'none'")));
    assert_eq!(statuses(&a), vec![JobStatus::Failed]);
    assert_eq!(releases(&a), vec![w(0), w(1)]);
}

#[test]
fn fixed_delay_attempts_exhausted_fails_the_job() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(1, 1, true, fixed(1, 1)));
    running(&mut m, &[1], t0);
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Failed), t0);
    let t1 = t0 + Duration::from_secs(1);
    m.tick(t1);
    assert_eq!(deploys(&drain(&mut m)), vec![(w(0), 1, vec![(0, 0)])]);
    m.subtask_state(&w(0), &change(1, 0, 0, SubtaskState::Failed), t1);
    let a = drain(&mut m);
    assert!(
        a.iter().any(
            |a| matches!(a, Action::Failed { cause } if cause.contains("allows 1 restart(s)"))
        ),
        "{a:?}"
    );
    assert_eq!(statuses(&a), vec![JobStatus::Failing, JobStatus::Failed]);
}

#[test]
fn exponential_delays_grow_and_cap_across_attempts() {
    let restart = RestartStrategy::ExponentialDelay(ExponentialDelay {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
        multiplier: 2.0,
        jitter_factor: 0.0,
        ..Default::default()
    });
    let mut now = Instant::now();
    let mut m = JobMaster::new(config(1, 1, true, restart));
    running(&mut m, &[1], now);
    let mut delays = Vec::new();
    for attempt in 0..5 {
        m.subtask_state(&w(0), &change(attempt, 0, 0, SubtaskState::Failed), now);
        let a = drain(&mut m);
        let Some(Action::Restarting { delay, .. }) = a.first() else {
            panic!("no restart: {a:?}");
        };
        delays.push(delay.as_secs());
        assert_eq!(
            m.poll_timeout(),
            Some(now + *delay),
            "the next deadline is the delay"
        );
        now += *delay;
        m.tick(now);
        assert_eq!(
            deploys(&drain(&mut m)),
            vec![(w(0), attempt + 1, vec![(0, 0)])]
        );
    }
    assert_eq!(delays, vec![1, 2, 4, 4, 4]);
    assert_eq!(m.snapshot().restarts, 5);
}

#[test]
fn messages_of_other_jobs_attempts_and_workers_are_ignored() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, RestartStrategy::None));
    running(&mut m, &[2], t0);
    let mut other_job = change(0, 0, 0, SubtaskState::Failed);
    other_job.subtask.as_mut().unwrap().job_id = 7u128.to_be_bytes().to_vec().into();
    let cases = [
        (w(0), other_job),
        (w(0), change(1, 0, 0, SubtaskState::Failed)), // a future attempt
        (w(1), change(0, 0, 0, SubtaskState::Failed)), // placed on w0
        (w(0), change(0, 5, 0, SubtaskState::Failed)), // no such subtask
        (w(9), change(0, 0, 0, SubtaskState::Failed)), // unknown worker
        (
            w(0),
            SubtaskStateChange {
                subtask: None,
                ..Default::default()
            },
        ),
    ];
    for (worker, c) in cases {
        m.subtask_state(&worker, &c, t0);
        assert!(drain(&mut m).is_empty(), "{worker} {c:?}");
    }
    assert_eq!(m.status(), JobStatus::Running);
    // A terminal subtask stays terminal.
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Finished), t0);
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Failed), t0);
    assert!(drain(&mut m).is_empty());
}

#[test]
fn cancel_waits_for_every_subtask_then_releases() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, fixed(3, 1)));
    running(&mut m, &[2, 2], t0);
    m.cancel(t0);
    let a = drain(&mut m);
    assert_eq!(statuses(&a), vec![JobStatus::Cancelling]);
    assert_eq!(cancels(&a), vec![(w(0), 0), (w(1), 0)]);
    for (worker, chain, index) in [(0, 0, 0), (0, 1, 0), (1, 0, 1)] {
        m.subtask_state(
            &w(worker),
            &change(0, chain, index, SubtaskState::Canceled),
            t0,
        );
        assert!(drain(&mut m).is_empty());
    }
    m.subtask_state(&w(1), &change(0, 1, 1, SubtaskState::Canceled), t0);
    let a = drain(&mut m);
    assert_eq!(a[0], Action::Cancelled);
    assert_eq!(statuses(&a), vec![JobStatus::Cancelled]);
    assert_eq!(releases(&a), vec![w(0), w(1)]);
    m.cancel(t0);
    assert!(drain(&mut m).is_empty());
}

#[test]
fn cancel_before_deployment_is_immediate() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, fixed(3, 1)));
    m.submit(submission(&[2]), t0).unwrap();
    drain(&mut m);
    m.cancel(t0);
    let a = drain(&mut m);
    assert_eq!(a[0], Action::Cancelled);
    assert_eq!(releases(&a), vec![w(0), w(1)]);
    assert_eq!(
        m.worker_registered(&w(0), 1, "127.0.0.1:7000", t0),
        Err(RegistrationError::JobOver)
    );
}

#[test]
fn a_worker_that_never_cancels_is_given_up_on() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, RestartStrategy::None));
    running(&mut m, &[2], t0);
    m.cancel(t0);
    drain(&mut m);
    m.subtask_state(&w(0), &change(0, 0, 0, SubtaskState::Canceled), t0);
    // w1 keeps heartbeating but never reports its subtask cancelled.
    for s in (10..=180).step_by(10) {
        for worker in [w(0), w(1)] {
            m.heartbeat(&worker, &Heartbeat::default(), t0 + Duration::from_secs(s));
        }
    }
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(180)));
    m.tick(t0 + Duration::from_secs(180));
    let a = drain(&mut m);
    assert_eq!(
        a[0],
        Action::ReleaseWorker {
            id: w(1),
            lost: true
        }
    );
    assert!(a.contains(&Action::Cancelled));
}

#[test]
fn pack_deploys_as_soon_as_the_slots_suffice() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 2, false, fixed(1, 1)));
    m.submit(submission(&[2, 1]), t0).unwrap();
    drain(&mut m);
    m.worker_registered(&w(0), 2, "127.0.0.1:7000", t0).unwrap();
    assert_eq!(
        deploys(&drain(&mut m)),
        vec![(w(0), 0, vec![(0, 0), (0, 1), (1, 0)])]
    );
    // The idle second worker still registers; it hosts nothing this attempt.
    m.worker_registered(&w(1), 2, "127.0.0.1:7001", t0).unwrap();
    assert!(drain(&mut m).is_empty());
}

#[test]
fn a_worker_dying_before_registration_counts_as_a_failure() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(1, 1, true, fixed(1, 3)));
    m.submit(submission(&[1]), t0).unwrap();
    drain(&mut m);
    m.worker_lost(&w(0), "exited with status 127", t0);
    let a = drain(&mut m);
    assert_eq!(requests(&a), vec![w(1)]);
    assert_eq!(statuses(&a), vec![JobStatus::Restarting]);
    m.worker_registered(&w(1), 1, "127.0.0.1:7001", t0).unwrap();
    assert!(drain(&mut m).is_empty(), "the restart delay still applies");
    m.tick(t0 + Duration::from_secs(3));
    assert_eq!(deploys(&drain(&mut m)), vec![(w(1), 0, vec![(0, 0)])]);
    // Registration timeout of the next one: the strategy is used up.
    let mut m = JobMaster::new(config(1, 1, true, RestartStrategy::None));
    m.submit(submission(&[1]), t0).unwrap();
    drain(&mut m);
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    m.tick(t0 + Duration::from_secs(300));
    let a = drain(&mut m);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Failed { cause } if cause.contains("did not register")))
    );
}

#[test]
fn submissions_and_registrations_are_validated() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, RestartStrategy::None));
    let e = m.submit(submission(&[3]), t0).unwrap_err();
    assert!(e.to_string().contains("needs 3 slot(s)"), "{e}");
    assert!(matches!(
        m.submit(submission(&[]), t0),
        Err(SubmitError::EmptyPlan(_))
    ));
    assert!(matches!(
        m.submit(submission(&[2, 0]), t0),
        Err(SubmitError::EmptyPlan(_))
    ));
    m.submit(submission(&[2]), t0).unwrap();
    assert_eq!(
        m.submit(submission(&[2]), t0),
        Err(SubmitError::AlreadySubmitted)
    );
    assert_eq!(
        m.worker_registered(&"tm-intruder".into(), 1, "x:1", t0),
        Err(RegistrationError::Unknown("tm-intruder".into()))
    );
    assert_eq!(
        m.worker_registered(&w(0), 0, "x:1", t0),
        Err(RegistrationError::NoSlots(w(0)))
    );
    m.worker_registered(&w(0), 1, "x:1", t0).unwrap();
    assert_eq!(
        m.worker_registered(&w(0), 1, "x:1", t0),
        Err(RegistrationError::AlreadyRegistered(w(0)))
    );
}

#[test]
fn the_snapshot_is_plain_serialisable_data() {
    let t0 = Instant::now();
    let mut m = JobMaster::new(config(2, 1, true, RestartStrategy::None));
    running(&mut m, &[2], t0);
    let snapshot = m.snapshot();
    assert_eq!(snapshot.status, JobStatus::Running);
    assert_eq!(snapshot.workers.len(), 2);
    assert_eq!(snapshot.subtasks.len(), 2);
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: JobSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
    assert!(
        json.contains("\"job_id\":\"000000000000000000000000000000ab\""),
        "{json}"
    );
}

// ---- checkpoints ----

mod checkpointing {
    use mesoflow_proto::checkpoint::{
        CheckpointMetadata, KeyGroupState, OperatorSnapshot, Segment,
    };
    use mesoflow_proto::control::{AcknowledgeCheckpoint, DeclineCheckpoint};

    use super::*;
    use crate::job_manager::checkpoints::{CheckpointSettings, Restore};

    const ROOT: &str = "/ck/000000000000000000000000000000ab";

    /// Chains [2, 1] with a source heading chain 0, on two one-slot workers: w0 runs (0,0)
    /// and (1,0), w1 runs (0,1).
    fn job(settings: CheckpointSettings) -> JobSubmission {
        JobSubmission {
            source_chains: vec![0],
            checkpointing: settings,
            ..submission(&[2, 1])
        }
    }

    fn settings() -> CheckpointSettings {
        CheckpointSettings {
            interval: Some(Duration::from_secs(10)),
            checkpoints_dir: Some("/ck".into()),
            num_retained: 2,
            ..Default::default()
        }
    }

    const PLACED: [(u32, u32, u32); 3] = [(0, 0, 0), (0, 1, 1), (1, 0, 0)];

    fn started(settings: CheckpointSettings, t0: Instant) -> JobMaster {
        let mut m = JobMaster::new(config(2, 1, true, fixed(3, 0)));
        let a = running_sub(&mut m, job(settings), t0);
        assert_eq!(deploys(&a).len(), 2);
        report_all(&mut m, 0, SubtaskState::Running, t0);
        drain(&mut m);
        m
    }

    fn ack(attempt: u32, chain: u32, index: u32, id: u64) -> AcknowledgeCheckpoint {
        AcknowledgeCheckpoint {
            subtask: Some(sref(attempt, chain, index)),
            checkpoint_id: id,
            operators: vec![OperatorSnapshot {
                operator_id: format!("op-{chain}"),
                parallelism: 1,
                max_parallelism: 128,
                key_groups: vec![KeyGroupState {
                    state_name: "s".into(),
                    key_group: index,
                    segment: Some(Segment {
                        path: format!("shared/{id}-{chain}-{index}"),
                        offset: 0,
                        length: 10,
                        checksum: 1,
                    }),
                    written_by: id,
                }],
                subtasks: vec![],
            }],
            ..Default::default()
        }
    }

    fn triggers(actions: &[Action]) -> Vec<(WorkerId, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::TriggerCheckpoint { worker, trigger } => {
                    Some((worker.clone(), trigger.checkpoint_id))
                }
                _ => None,
            })
            .collect()
    }

    fn completes(actions: &[Action]) -> Vec<(WorkerId, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::NotifyCheckpointComplete { worker, notify } => {
                    Some((worker.clone(), notify.checkpoint_id))
                }
                _ => None,
            })
            .collect()
    }

    /// Triggers checkpoint `id` at `at` and completes it; returns the round's actions.
    fn checkpoint(m: &mut JobMaster, id: u64, at: Instant) -> Vec<Action> {
        m.tick(at);
        let mut a = drain(m);
        assert_eq!(triggers(&a), vec![(w(0), id), (w(1), id)]);
        for (chain, index, worker) in PLACED {
            m.acknowledge_checkpoint(&w(worker), &ack(m.attempt(), chain, index, id), at);
        }
        let written = drain(m);
        assert!(
            written.iter().any(|x| matches!(x,
                Action::WriteMetadata { checkpoint_id, root, path, .. }
                    if *checkpoint_id == id && root == ROOT && *path == format!("chk-{id}/_metadata"))),
            "{written:?}"
        );
        a.extend(written);
        m.metadata_written(id, Ok(()), at);
        let done = drain(m);
        assert_eq!(completes(&done), vec![(w(0), id), (w(1), id)]);
        a.extend(done);
        a
    }

    /// Fails subtask (0,1) (with `corrupt` as its corrupt checkpoint), cancels the rest and
    /// returns the actions up to the next deploy.
    fn fail_and_redeploy(m: &mut JobMaster, corrupt: u64, at: Instant) -> Vec<Action> {
        let attempt = m.attempt();
        let mut failed = change(attempt, 0, 1, SubtaskState::Failed);
        failed.corrupt_checkpoint = corrupt;
        m.subtask_state(&w(1), &failed, at);
        let mut a = drain(m);
        report_all(m, attempt, SubtaskState::Canceled, at);
        a.extend(drain(m));
        a
    }

    fn restore_of(actions: &[Action]) -> Vec<(String, Option<u64>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Deploy { deploy, .. } => {
                    let c = deploy.checkpointing.as_ref().expect("checkpointing");
                    Some((
                        c.restore_root.clone(),
                        c.restore.as_ref().map(|m| m.checkpoint_id),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn checkpoints_complete_and_a_restart_restores_the_latest() {
        let t0 = Instant::now();
        let mut m = started(settings(), t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        checkpoint(&mut m, 1, t0 + Duration::from_secs(10));
        let a = checkpoint(&mut m, 2, t0 + Duration::from_secs(20));
        assert!(
            !a.iter().any(|a| matches!(a, Action::DeleteDir { .. })),
            "two retained"
        );
        let a = checkpoint(&mut m, 3, t0 + Duration::from_secs(30));
        assert!(a.contains(&Action::DeleteDir {
            root: ROOT.into(),
            path: "chk-1".into()
        }));
        assert!(a.contains(&Action::DeleteFiles {
            root: ROOT.into(),
            paths: vec![
                "shared/1-0-0".into(),
                "shared/1-0-1".into(),
                "shared/1-1-0".into()
            ],
        }));
        let a = fail_and_redeploy(&mut m, 0, t0 + Duration::from_secs(31));
        assert_eq!(
            restore_of(&a),
            vec![(ROOT.into(), Some(3)), (ROOT.into(), Some(3))]
        );
        let Some(Action::Deploy { deploy, .. }) =
            a.iter().find(|a| matches!(a, Action::Deploy { .. }))
        else {
            panic!()
        };
        let c = deploy.checkpointing.as_ref().unwrap();
        assert_eq!(
            (c.checkpoint_root.as_str(), c.state_backend.as_str()),
            (ROOT, "heap")
        );
        let ops: Vec<&str> = c
            .restore
            .as_ref()
            .unwrap()
            .operators
            .iter()
            .map(|o| o.operator_id.as_str())
            .collect();
        assert_eq!(ops, vec!["op-0", "op-1"]);
        // The new attempt checkpoints on, from id 4.
        report_all(
            &mut m,
            1,
            SubtaskState::Running,
            t0 + Duration::from_secs(32),
        );
        drain(&mut m);
        checkpoint(&mut m, 4, t0 + Duration::from_secs(42));
    }

    #[test]
    fn a_pending_checkpoint_is_aborted_by_failover_and_not_counted() {
        let t0 = Instant::now();
        let mut m = started(settings(), t0);
        m.tick(t0 + Duration::from_secs(10));
        drain(&mut m);
        m.acknowledge_checkpoint(&w(0), &ack(0, 0, 0, 1), t0 + Duration::from_secs(10));
        let a = fail_and_redeploy(&mut m, 0, t0 + Duration::from_secs(11));
        // What the aborted checkpoint wrote goes; nothing restores it.
        assert!(a.contains(&Action::DeleteFiles {
            root: ROOT.into(),
            paths: vec!["shared/1-0-0".into()]
        }));
        assert_eq!(
            restore_of(&a),
            vec![(String::new(), None), (String::new(), None)]
        );
        assert_eq!(m.status(), JobStatus::Running);
        assert_eq!(m.attempt(), 1);
    }

    #[test]
    fn a_corrupt_checkpoint_makes_the_restart_fall_back() {
        let t0 = Instant::now();
        let mut m = started(settings(), t0);
        checkpoint(&mut m, 1, t0 + Duration::from_secs(10));
        checkpoint(&mut m, 2, t0 + Duration::from_secs(20));
        let a = fail_and_redeploy(&mut m, 0, t0 + Duration::from_secs(21));
        assert_eq!(restore_of(&a)[0].1, Some(2));
        let a = fail_and_redeploy(&mut m, 2, t0 + Duration::from_secs(22));
        let cause = a
            .iter()
            .find_map(|a| match a {
                Action::Restarting { cause, .. } => Some(cause.clone()),
                _ => None,
            })
            .unwrap();
        assert!(
            cause.contains("checkpoint 2 is corrupt; recovering from checkpoint 1"),
            "{cause}"
        );
        assert_eq!(restore_of(&a)[0].1, Some(1));
        // And then the initial restore: none here, so from scratch.
        let a = fail_and_redeploy(&mut m, 1, t0 + Duration::from_secs(23));
        let cause = a
            .iter()
            .find_map(|a| match a {
                Action::Restarting { cause, .. } => Some(cause.clone()),
                _ => None,
            })
            .unwrap();
        assert!(cause.contains("from scratch"), "{cause}");
        assert_eq!(restore_of(&a)[0].1, None);
    }

    #[test]
    fn exceeding_tolerable_failures_fails_the_job_and_the_restart_strategy_applies() {
        let t0 = Instant::now();
        let mut m = started(settings(), t0);
        m.tick(t0 + Duration::from_secs(10));
        drain(&mut m);
        let decline = DeclineCheckpoint {
            subtask: Some(sref(0, 1, 0)),
            checkpoint_id: 1,
            reason: "disk full".into(),
        };
        m.decline_checkpoint(&w(0), &decline, t0 + Duration::from_secs(11));
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(a, Action::NotifyCheckpointAborted { notify, .. } if notify.checkpoint_id == 1)));
        assert!(a.iter().any(|a| matches!(a,
            Action::Restarting { attempt: 1, cause, .. } if cause.contains("tolerable failure threshold"))), "{a:?}");
        assert_eq!(cancels(&a), vec![(w(0), 0), (w(1), 0)]);
    }

    #[test]
    fn without_interval_deploys_carry_only_the_backend_and_restore() {
        let t0 = Instant::now();
        let mut m = JobMaster::new(config(2, 1, true, fixed(3, 0)));
        let initial = Restore {
            root: "/sp/savepoint-000000-abcdefabcdef".into(),
            metadata: CheckpointMetadata {
                format_version: 1,
                checkpoint_id: 7,
                savepoint: true,
                ..Default::default()
            },
        };
        let a = running_sub(
            &mut m,
            JobSubmission {
                initial_restore: Some(initial.clone()),
                ..job(CheckpointSettings::default())
            },
            t0,
        );
        assert_eq!(restore_of(&a), vec![(initial.root.clone(), Some(7)); 2]);
        let Some(Action::Deploy { deploy, .. }) =
            a.iter().find(|a| matches!(a, Action::Deploy { .. }))
        else {
            panic!()
        };
        let c = deploy.checkpointing.as_ref().unwrap();
        assert_eq!(
            (c.checkpoint_root.as_str(), c.state_backend.as_str()),
            ("", "heap")
        );
        report_all(&mut m, 0, SubtaskState::Running, t0);
        assert_eq!(
            m.poll_timeout(),
            Some(t0 + Duration::from_secs(50)),
            "only the heartbeat timeout"
        );
        m.tick(t0 + Duration::from_secs(40));
        assert!(triggers(&drain(&mut m)).is_empty());
    }

    #[test]
    fn the_final_commit_goes_to_every_worker_before_finished() {
        let t0 = Instant::now();
        let mut m = started(settings(), t0);
        report_all(
            &mut m,
            0,
            SubtaskState::Finished,
            t0 + Duration::from_secs(1),
        );
        let a = drain(&mut m);
        assert_eq!(completes(&a), vec![(w(0), u64::MAX), (w(1), u64::MAX)]);
        let commit = a
            .iter()
            .position(|a| matches!(a, Action::NotifyCheckpointComplete { .. }))
            .unwrap();
        let finished = a
            .iter()
            .position(|a| *a == Action::JobStatusChanged(JobStatus::Finished))
            .unwrap();
        let released = a
            .iter()
            .position(|a| matches!(a, Action::ReleaseWorker { .. }))
            .unwrap();
        assert!(commit < finished && finished < released, "{a:?}");
        assert_eq!(m.status(), JobStatus::Finished);
    }

    #[test]
    fn stop_with_savepoint_ends_finished() {
        let t0 = Instant::now();
        let mut m = started(settings(), t0);
        let request = m.trigger_savepoint(Some("/sp"), true, t0).unwrap();
        let a = drain(&mut m);
        let t = a
            .iter()
            .find_map(|a| match a {
                Action::TriggerCheckpoint { trigger, .. } => Some(trigger.clone()),
                _ => None,
            })
            .unwrap();
        assert!(t.savepoint && t.full && t.target_dir.starts_with("/sp/savepoint-000000-"));
        for (chain, index, worker) in PLACED {
            m.acknowledge_checkpoint(&w(worker), &ack(0, chain, index, 1), t0);
        }
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(a, Action::WriteMetadata { root, path, .. } if *root == t.target_dir && path == "_metadata")));
        m.metadata_written(1, Ok(()), t0);
        let a = drain(&mut m);
        assert_eq!(completes(&a), vec![(w(0), 1), (w(1), 1)]);
        assert!(a.contains(&Action::SavepointCompleted {
            request_id: request.clone(),
            location: t.target_dir.clone()
        }));
        assert_eq!(cancels(&a), vec![(w(0), 0), (w(1), 0)]);
        assert_eq!(m.status(), JobStatus::Running);
        report_all(&mut m, 0, SubtaskState::Canceled, t0);
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(a, Action::Finished(_))));
        assert_eq!(m.status(), JobStatus::Finished);
        assert!(matches!(
            m.savepoint_status(&request),
            Some(crate::job_manager::checkpoints::SavepointStatus::Completed { .. })
        ));
    }
}
