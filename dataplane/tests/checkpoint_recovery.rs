//! Exactly-once recovery inside one process: a windowed job with the two-phase-commit file
//! sink takes a checkpoint, is killed after more output was written, and is restored from the
//! checkpoint's snapshots; the committed part files then hold exactly the lines of a run
//! without failure. The snapshots stay in memory here (the TaskManager uploads them to
//! storage; its tests cover that path).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesoflow_dataplane::checkpoint::subtask::{
    CheckpointServices, FINAL_CHECKPOINT, RestoredState, SubtaskSnapshot, TriggerInfo,
};
use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::plan::plan;
use mesoflow_dataplane::runtime::task::{TaskMail, spawn_subtask};
use mesoflow_dataplane::runtime::wiring::{Deployment, wire};
use mesoflow_dataplane::{Barrier, CancelToken, EnvConfig, JobMetrics, RuntimeConfig, SinkSpec};

mod support;
use support::{MemServices, committed_lines, restored_from};

fn params() -> Params {
    // About 3 s at this rate: time for a checkpoint and a crash in the middle.
    Params::parse(&[
        "events=120000".to_string(),
        "keys=500".to_string(),
        "rate=40000".to_string(),
        "events_per_ms=10".to_string(),
    ])
    .unwrap()
}

fn env(dir: &Path) -> EnvConfig {
    EnvConfig {
        job_name: "recovery".into(),
        parallelism: 2,
        max_parallelism: 16,
        sink: SinkSpec::Files(dir.to_path_buf()),
    }
}

/// Runs the job; with `crash_after`, triggers checkpoint 1 at `checkpoint_at`, completes it,
/// and cancels everything `crash_after` later. Returns the snapshots taken.
fn run(
    dir: &Path,
    restored: Option<Arc<RestoredState>>,
    checkpoint_at: Duration,
    crash_after: Option<Duration>,
) -> Vec<SubtaskSnapshot> {
    let job = jobs::build("windowed-count", &params(), env(dir)).unwrap();
    let plan = plan(&job.graph).unwrap();
    let services = Arc::new(MemServices::default());
    let cancel = CancelToken::default();
    let config = RuntimeConfig::default();
    let metrics = Arc::new(JobMetrics::default());
    let runners = wire(
        &Deployment {
            job: &job,
            plan: &plan,
            here: "local",
            placement: None,
            links: None,
            config: &config,
            state_backend: &mesoflow_dataplane::StateBackend::Heap,
            cancel: &cancel,
            checkpoints: Some(services.clone() as Arc<dyn CheckpointServices>),
            restored,
        },
        &|_| metrics.clone(),
    )
    .unwrap();
    let total = runners.len();
    let checkpoints: Vec<_> = runners.iter().map(|r| r.checkpoint()).collect();
    let running: Vec<_> = runners
        .into_iter()
        .map(|r| spawn_subtask(r, |_, _, _| {}).unwrap())
        .collect();
    let started = Instant::now();
    if let Some(crash_after) = crash_after {
        std::thread::sleep(checkpoint_at);
        services.triggered.lock().insert(
            1,
            TriggerInfo {
                full: true,
                base: 0,
                savepoint: false,
            },
        );
        for r in &running {
            r.post(TaskMail::TriggerCheckpoint(Barrier::aligned(1, 0)));
        }
        while services.snapshots.lock().len() < total {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "checkpoint 1 never completed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for r in &running {
            r.post(TaskMail::CheckpointComplete {
                checkpoint_id: 1,
                end_of_input: false,
            });
        }
        std::thread::sleep(crash_after);
        assert!(
            running.iter().any(|r| !r.is_finished()),
            "the job finished before the crash"
        );
        cancel.cancel();
        for r in &running {
            r.post(TaskMail::Cancel);
        }
    }
    for r in running {
        let res = r.join();
        if crash_after.is_none() {
            res.unwrap();
        }
    }
    if crash_after.is_none() {
        for c in &checkpoints {
            c.notify_complete(FINAL_CHECKPOINT).unwrap();
        }
    }
    services.snapshots.lock().clone()
}

#[test]
fn a_job_restored_from_a_checkpoint_commits_exactly_the_failure_free_output() {
    let reference = tempfile::tempdir().unwrap();
    run(reference.path(), None, Duration::ZERO, None);
    let expected = committed_lines(reference.path());
    assert!(expected.len() > 1000, "only {} lines", expected.len());

    let dir = tempfile::tempdir().unwrap();
    let snapshots = run(
        dir.path(),
        None,
        Duration::from_millis(800),
        Some(Duration::from_millis(700)),
    );
    let committed_before = committed_lines(dir.path());
    assert!(
        !committed_before.is_empty() && committed_before.len() < expected.len(),
        "{} lines committed at the crash, {} in all",
        committed_before.len(),
        expected.len()
    );
    // The crash left uncommitted output behind (written after the checkpoint).
    let hidden = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert!(hidden > 0, "no in-progress file at the crash");

    let restored = Arc::new(restored_from(&snapshots));
    run(dir.path(), Some(restored), Duration::ZERO, None);
    let got = committed_lines(dir.path());
    assert_eq!(got.len(), expected.len(), "lost or duplicated lines");
    assert_eq!(got, expected);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "uncommitted files left: {leftovers:?}"
    );
}
