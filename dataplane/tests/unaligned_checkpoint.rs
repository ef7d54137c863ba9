//! Unaligned exactly-once checkpoints inside one process, under backpressure: a windowed job
//! whose subtasks behind a rebalance are deliberately slow, so every channel in front of them
//! is full. A checkpoint still completes quickly (the barriers overtake the queued data, which
//! goes into the snapshot as in-flight records); the job is then killed, restored from that
//! checkpoint, and commits exactly the output of a run without failure.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mesoflow_dataplane::checkpoint::subtask::{
    CheckpointServices, FINAL_CHECKPOINT, RestoredState, SubtaskSnapshot, TriggerInfo,
};
use mesoflow_dataplane::jobs::Params;
use mesoflow_dataplane::jobs::datagen_jobs::datagen_source;
use mesoflow_dataplane::keyed::Count;
use mesoflow_dataplane::plan::plan;
use mesoflow_dataplane::runtime::task::{TaskMail, spawn_subtask};
use mesoflow_dataplane::runtime::wiring::{Deployment, wire};
use mesoflow_dataplane::unaligned::IN_FLIGHT;
use mesoflow_dataplane::window::WindowAssigner;
use mesoflow_dataplane::{
    Barrier, CancelToken, EnvConfig, JobMetrics, RuntimeConfig, SinkSpec, StreamEnvironment,
    WatermarkStrategy,
};

mod support;
use support::{MemServices, committed_lines, restored_from};

/// Records per millisecond the slow stage lets through (all its subtasks together).
const SLOW_RECORDS_PER_MS: u64 = 64;
/// Records queued in front of the slow stage when its channels are full.
const QUEUED: u64 = 4 * 16 * 1024;

fn job(dir: &Path) -> mesoflow_dataplane::Job {
    let params = Params::parse(&[
        "events=120000".to_string(),
        "keys=500".to_string(),
        "events_per_ms=10".to_string(),
    ])
    .unwrap();
    let mut env = StreamEnvironment::new(EnvConfig {
        job_name: "unaligned".into(),
        parallelism: 2,
        max_parallelism: 16,
        sink: SinkSpec::Files(dir.to_path_buf()),
    });
    let slow = Arc::new(AtomicU64::new(0));
    datagen_source(&mut env, &params)
        .unwrap()
        .assign_timestamps_and_watermarks(|e| e.ts_ms, WatermarkStrategy::monotonous())
        .rebalance()
        // The slow stage: every channel in front of it fills up (backpressure).
        .map(move |e| {
            if slow
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(SLOW_RECORDS_PER_MS)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            e
        })
        .key_by(|e| e.key)
        .window(WindowAssigner::tumbling_event_time(1000))
        .aggregate_with(Count, |k: &u64, w, c| (*k, w.end, c))
        .unwrap()
        .sink_lines("output", |t, out| {
            use std::fmt::Write;
            let _ = write!(out, "{},{},{}", t.0, t.1, t.2);
        });
    env.build().unwrap()
}

/// Runs the job; with `crash_after`, triggers unaligned checkpoint 1 at `checkpoint_at`,
/// completes it, and cancels everything `crash_after` later. Returns the snapshots taken and
/// how long the checkpoint took.
fn run(
    dir: &Path,
    restored: Option<Arc<RestoredState>>,
    checkpoint_at: Duration,
    crash_after: Option<Duration>,
) -> (Vec<SubtaskSnapshot>, Duration) {
    let job = job(dir);
    let plan = plan(&job.graph).unwrap();
    let services = Arc::new(MemServices::default());
    let cancel = CancelToken::default();
    let config = RuntimeConfig {
        unaligned_checkpoints: true,
        ..Default::default()
    };
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
    let mut took = Duration::ZERO;
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
        let triggered = Instant::now();
        for r in &running {
            r.post(TaskMail::TriggerCheckpoint(Barrier::aligned(1, 0)));
        }
        while services.snapshots.lock().len() < total {
            assert!(
                triggered.elapsed() < Duration::from_secs(30),
                "checkpoint 1 never completed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        took = triggered.elapsed();
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
    (services.snapshots.lock().clone(), took)
}

#[test]
fn an_unaligned_checkpoint_under_backpressure_completes_fast_and_restores_exactly() {
    let reference = tempfile::tempdir().unwrap();
    run(reference.path(), None, Duration::ZERO, None);
    let expected = committed_lines(reference.path());
    assert!(expected.len() > 1000, "only {} lines", expected.len());

    let dir = tempfile::tempdir().unwrap();
    let (snapshots, took) = run(
        dir.path(),
        None,
        Duration::from_millis(500),
        Some(Duration::from_millis(300)),
    );
    // Draining the full queues (what an aligned barrier waits for) takes about a second; the
    // proof that the barrier overtook them is the in-flight data below, not a timing.
    let drain = Duration::from_millis(QUEUED / SLOW_RECORDS_PER_MS);
    eprintln!("the unaligned checkpoint took {took:?}; draining the queues takes about {drain:?}");
    let in_flight: usize = snapshots
        .iter()
        .flat_map(|s| &s.operator)
        .filter(|o| o.state_name.starts_with(IN_FLIGHT))
        .map(|o| o.bytes.len())
        .sum();
    assert!(
        in_flight > 100_000,
        "the snapshot holds only {in_flight} bytes of in-flight records"
    );

    let restored = Arc::new(restored_from(&snapshots));
    run(dir.path(), Some(restored), Duration::ZERO, None);
    let got = committed_lines(dir.path());
    assert_eq!(got.len(), expected.len(), "lost or duplicated lines");
    assert_eq!(got, expected);
}
