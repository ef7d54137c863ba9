//! What a running subtask knows about itself and shares with the rest of the job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::checkpoint::subtask::SubtaskCheckpoint;
use crate::key_groups::KeyGroupRange;
use crate::state::StateBackend;

/// Tunables of the runtime (the `execution.*` configuration keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Records per batch shipped through an exchange.
    pub batch_size: usize,
    /// Batches (or control elements) a channel holds before the sender blocks.
    pub channel_capacity: usize,
    /// Longest a partial batch waits before it is shipped, and the processing-time tick (ms).
    pub buffer_timeout_ms: u64,
    /// Block a channel that delivered a barrier until every channel has (exactly-once); off
    /// for at-least-once checkpoints, where records after a barrier may be in the snapshot.
    pub barrier_alignment: bool,
    /// Unaligned exactly-once checkpoints: barriers overtake queued data as priority events and
    /// the records they overtook are stored in the snapshot as in-flight data
    /// ([`crate::unaligned`]). Only meaningful with `barrier_alignment`.
    pub unaligned_checkpoints: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            channel_capacity: 16,
            buffer_timeout_ms: 10,
            barrier_alignment: true,
            unaligned_checkpoints: false,
        }
    }
}

/// Cooperative cancellation shared by all subtasks of a job (and the Ctrl-C handler).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Asks every subtask to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// True once cancelled.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Job-wide counters, updated once per batch.
#[derive(Debug, Default)]
pub struct JobMetrics {
    /// Records produced by sources.
    pub records_in: AtomicU64,
    /// Records consumed by sinks.
    pub records_out: AtomicU64,
    /// Input lines that could not be parsed and were skipped.
    pub skipped_records: AtomicU64,
    /// Wrapping sum of FNV-1a-64 over the sinks' output lines (checksum sink).
    pub checksum: AtomicU64,
}

impl JobMetrics {
    /// Records produced by sources so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }
    /// Records consumed by sinks so far.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }
    /// Unparsable records skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped_records.load(Ordering::Relaxed)
    }
    /// The output checksum so far.
    pub fn checksum(&self) -> u64 {
        self.checksum.load(Ordering::Relaxed)
    }
}

/// Identity and environment of one operator instance in one subtask.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Job name.
    pub job_name: String,
    /// Stable operator id.
    pub operator_id: String,
    /// Operator name.
    pub operator_name: String,
    /// Parallel instance index.
    pub subtask: u32,
    /// Parallelism of the operator.
    pub parallelism: u32,
    /// Max parallelism (number of key groups).
    pub max_parallelism: u32,
    /// Key groups owned by this instance.
    pub key_groups: KeyGroupRange,
    /// Runtime tunables.
    pub config: RuntimeConfig,
    /// Where keyed state lives (`state.backend.type`); not in [`RuntimeConfig`], which the
    /// JobManager fills from the job's configuration: the TaskManager picks the directory.
    pub state_backend: StateBackend,
    /// Cancellation of the whole job.
    pub cancel: CancelToken,
    /// Job-wide counters.
    pub metrics: Arc<JobMetrics>,
    /// The subtask's checkpointing: where operators hand in and read back their state.
    pub checkpoint: SubtaskCheckpoint,
}

impl TaskContext {
    /// `name (i/p)`, as logs show a subtask.
    pub fn task_name(&self) -> String {
        format!(
            "{} ({}/{})",
            self.operator_name,
            self.subtask + 1,
            self.parallelism
        )
    }

    /// A context for tests of single operators: subtask 0 of 1, 128 key groups.
    pub fn for_test() -> Self {
        Self {
            job_name: "test".into(),
            operator_id: "op".into(),
            operator_name: "op".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: crate::key_groups::DEFAULT_MAX_PARALLELISM,
            key_groups: KeyGroupRange::for_subtask(
                0,
                1,
                crate::key_groups::DEFAULT_MAX_PARALLELISM,
            ),
            config: RuntimeConfig::default(),
            state_backend: StateBackend::Heap,
            cancel: CancelToken::default(),
            metrics: Arc::new(JobMetrics::default()),
            checkpoint: SubtaskCheckpoint::disabled(),
        }
    }
}

/// Wall-clock milliseconds since the epoch: the processing-time clock the runtime feeds in.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
