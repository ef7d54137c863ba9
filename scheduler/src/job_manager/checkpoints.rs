//! [`CheckpointCoordinator`]: one job's checkpoints and savepoints as a pure state machine.
//!
//! It lives next to the [`JobMaster`](super::JobMaster)'s attempt and, like it, opens no file
//! and reads no clock: the JobMaster tells it when an attempt is deployed, fully RUNNING, has a
//! FINISHED subtask or ended, feeds it the TaskManagers' acknowledgements and declines and the
//! shell's report of the `_metadata` write, and routes its [`CheckpointAction`]s (triggers to the
//! workers hosting sources, notifications to every worker of the attempt, storage work to the
//! shell).
//!
//! Layout on storage: the job's checkpoint root is `<state.checkpoints.dir>/<job id, 32 hex>`;
//! TaskManagers write state files under its `shared/`, and checkpoint `n` is complete when
//! `chk-<n>/_metadata` exists (written last, by the shell, atomically). A savepoint is a
//! self-contained directory `<target>/savepoint-<6 hex of the job id>-<12 hex>` holding its own
//! files and `_metadata`; the coordinator never deletes a completed one.
//!
//! At most one checkpoint (or savepoint) is pending at a time. State files are shared between
//! checkpoints (incremental checkpoints reference unchanged segments), so files are reference
//! counted over the retained completed checkpoints and deleted when none references them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_proto::checkpoint::{CheckpointMetadata, FORMAT_VERSION, OperatorSnapshot};
use mesoflow_proto::control::{
    AcknowledgeCheckpoint, DeclineCheckpoint, SubtaskRef, TriggerCheckpoint,
};
use prost::Message;
use serde::Serialize;
use tracing::{debug, error, info, warn};

/// Name of the metadata file in a checkpoint's or savepoint's directory.
pub const METADATA_FILE: &str = "_metadata";

/// `execution.checkpointing.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointingMode {
    /// Aligned (or unaligned) barriers: every record affects the state exactly once.
    #[default]
    ExactlyOnce,
    /// No alignment: records after a barrier may be in the snapshot and replayed.
    AtLeastOnce,
}

/// `state.backend.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// Objects on the heap (`heap`, Flink's `hashmap`).
    #[default]
    Heap,
    /// Memory-mapped files (`mmap`).
    Mmap,
}

impl StateBackend {
    /// The name sent to TaskManagers.
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackend::Heap => "heap",
            StateBackend::Mmap => "mmap",
        }
    }
}

/// `execution.checkpointing.externalized-checkpoint-retention`: which retained checkpoints
/// survive the end of the job (Flink's semantics; savepoints are never deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Kept when the job fails; deleted when it finishes or is cancelled.
    DeleteOnCancellation,
    /// Kept when the job fails or is cancelled; deleted when it finishes.
    RetainOnCancellation,
    /// Deleted whenever the job ends (Flink's default).
    #[default]
    NoExternalizedCheckpoints,
}

/// How a job ended, for [`Retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Every subtask finished (stop-with-savepoint included).
    Finished,
    /// The user cancelled it.
    Cancelled,
    /// It failed for good.
    Failed,
}

impl Retention {
    /// Whether the retained checkpoints are deleted when the job ends this way.
    pub fn discards_on(self, end: JobEnd) -> bool {
        matches!(
            (self, end),
            (_, JobEnd::Finished)
                | (Retention::NoExternalizedCheckpoints, _)
                | (Retention::DeleteOnCancellation, JobEnd::Cancelled)
        )
    }
}

/// A job's checkpointing settings (from `execution.checkpointing.*` and `state.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSettings {
    /// `execution.checkpointing.interval`; `None` disables periodic checkpoints.
    pub interval: Option<Duration>,
    /// `execution.checkpointing.mode`.
    pub mode: CheckpointingMode,
    /// `execution.checkpointing.timeout`.
    pub timeout: Duration,
    /// `execution.checkpointing.min-pause`.
    pub min_pause: Duration,
    /// `execution.checkpointing.tolerable-failed-checkpoints`.
    pub tolerable_failures: u32,
    /// `execution.checkpointing.unaligned.enabled`.
    pub unaligned: bool,
    /// `state.checkpoints.num-retained` (at least 1).
    pub num_retained: u32,
    /// `state.checkpoints.dir` (or `<high-availability.storageDir>/checkpoints`): the parent of
    /// every job's checkpoint root.
    pub checkpoints_dir: Option<String>,
    /// `state.savepoints.dir`: default target of savepoints.
    pub savepoints_dir: Option<String>,
    /// `state.backend.type`.
    pub state_backend: StateBackend,
    /// `state.backend.mmap.memory-budget`, in bytes.
    pub state_memory_budget: u64,
    /// `execution.checkpointing.externalized-checkpoint-retention`.
    pub retention: Retention,
}

impl Default for CheckpointSettings {
    /// Flink's defaults: no periodic checkpoints, 10 min timeout, one retained checkpoint.
    fn default() -> Self {
        Self {
            interval: None,
            mode: CheckpointingMode::ExactlyOnce,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            tolerable_failures: 0,
            unaligned: false,
            num_retained: 1,
            checkpoints_dir: None,
            savepoints_dir: None,
            state_backend: StateBackend::Heap,
            state_memory_budget: 256 << 20,
            retention: Retention::NoExternalizedCheckpoints,
        }
    }
}

impl CheckpointSettings {
    /// The job's checkpoint root: `<checkpoints dir>/<job id, 32 hex>`.
    pub fn root_of(&self, job_id: u128) -> Option<String> {
        self.checkpoints_dir
            .as_ref()
            .map(|dir| join(dir, &format!("{job_id:032x}")))
    }
}

/// A snapshot to restore from: the root its segment paths are relative to, and its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    /// URI of the checkpoint root or savepoint directory.
    pub root: String,
    /// The decoded `_metadata`.
    pub metadata: CheckpointMetadata,
}

/// The `_metadata` file's bytes: the protobuf in a checksummed segment frame, so that a
/// damaged or truncated file is recognised as such.
pub fn encode_metadata(metadata: &CheckpointMetadata) -> Vec<u8> {
    mesoflow_dataplane::checkpoint::segment::encode(&metadata.encode_to_vec())
}

/// A `_metadata` file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Not a metadata file (truncated, corrupt, not ours).
    #[error("not a mesoflow checkpoint metadata file: {0}")]
    Decode(String),
    /// Written by a build with another layout.
    #[error(
        "checkpoint metadata format version {found} is not supported (this build reads {supported})"
    )]
    Version {
        /// The file's version.
        found: u32,
        /// Ours.
        supported: u32,
    },
}

/// Decodes and checks a `_metadata` file.
pub fn decode_metadata(bytes: &[u8]) -> Result<CheckpointMetadata, MetadataError> {
    let payload = mesoflow_dataplane::checkpoint::segment::decode(bytes)
        .map_err(|e| MetadataError::Decode(e.to_string()))?;
    let metadata = CheckpointMetadata::decode(payload.as_slice())
        .map_err(|e| MetadataError::Decode(e.to_string()))?;
    if metadata.format_version != FORMAT_VERSION {
        return Err(MetadataError::Version {
            found: metadata.format_version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(metadata)
}

/// What the coordinator asks of the JobMaster (which routes it to workers or the shell).
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointAction {
    /// Send to every worker hosting a source subtask of the attempt.
    Trigger(TriggerCheckpoint),
    /// Tell every worker of the attempt that the checkpoint is complete (sinks commit).
    NotifyComplete {
        /// The attempt.
        attempt: u32,
        /// The checkpoint.
        checkpoint_id: u64,
        /// The job's final checkpoint: every source had ended its input when it was taken.
        end_of_input: bool,
    },
    /// Tell every worker of the attempt that the checkpoint was given up.
    NotifyAborted {
        /// The attempt.
        attempt: u32,
        /// The checkpoint.
        checkpoint_id: u64,
        /// Why.
        reason: String,
    },
    /// Write `bytes` to `path` under `root` atomically, then report
    /// [`CheckpointCoordinator::metadata_written`].
    WriteMetadata {
        /// The checkpoint.
        checkpoint_id: u64,
        /// Storage root URI.
        root: String,
        /// Relative path of the `_metadata` file.
        path: String,
        /// Encoded metadata.
        bytes: Bytes,
    },
    /// Delete these files under `root` (best effort).
    DeleteFiles {
        /// Storage root URI.
        root: String,
        /// Relative paths, sorted.
        paths: Vec<String>,
    },
    /// Delete this directory under `root` (best effort).
    DeleteDir {
        /// Storage root URI.
        root: String,
        /// Relative path.
        path: String,
    },
    /// A savepoint completed.
    SavepointCompleted {
        /// The trigger's request id.
        request_id: String,
        /// The savepoint directory.
        location: String,
        /// Stop the job now (stop-with-savepoint): cancel the attempt, end FINISHED.
        stop: bool,
    },
    /// A savepoint failed.
    SavepointFailed {
        /// The trigger's request id.
        request_id: String,
        /// Why.
        cause: String,
    },
    /// Too many consecutive checkpoint failures: the job fails (the restart strategy applies).
    FailJob {
        /// Why.
        cause: String,
    },
}

/// Why a savepoint cannot be triggered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavepointError {
    /// Neither a target directory nor `state.savepoints.dir`.
    #[error(
        "no savepoint target directory: give one (target-directory) or configure state.savepoints.dir"
    )]
    NoTargetDirectory,
    /// The job is not fully running.
    #[error("job is not running (every subtask must be RUNNING to take a savepoint)")]
    NotRunning,
    /// Another savepoint is in progress.
    #[error("savepoint {0} is already in progress")]
    InProgress(String),
}

/// A savepoint request's status (REST: `GET /jobs/:id/savepoints/:trigger`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SavepointStatus {
    /// Queued or running.
    InProgress,
    /// Done: the savepoint directory.
    Completed {
        /// The savepoint directory.
        location: String,
    },
    /// Failed.
    Failed {
        /// Why.
        cause: String,
    },
}

/// Where a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointStatus {
    /// Triggered, waiting for acknowledgements or the metadata write.
    InProgress,
    /// Its metadata is written.
    Completed,
    /// Aborted.
    Failed,
}

/// One checkpoint in the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointRecord {
    /// Its id.
    pub id: u64,
    /// Its status.
    pub status: CheckpointStatus,
    /// A savepoint.
    pub savepoint: bool,
    /// When it was triggered, epoch milliseconds.
    pub trigger_timestamp_ms: i64,
    /// When it ended (or its latest acknowledgement), epoch milliseconds.
    pub latest_ack_timestamp_ms: i64,
    /// Sum of the lengths of the segments its metadata references.
    pub state_size: u64,
    /// Bytes the subtasks wrote for it.
    pub bytes_written: u64,
    /// Trigger to completion (or to now / the abort).
    pub duration_ms: u64,
    /// Subtasks that must acknowledge.
    pub num_subtasks: u32,
    /// Subtasks that acknowledged.
    pub num_acknowledged: u32,
    /// The checkpoint's or savepoint's directory.
    pub external_path: String,
    /// Why it failed.
    pub failure: Option<String>,
}

/// Checkpoint statistics (REST: `GET /jobs/:id/checkpoints`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CheckpointStats {
    /// Checkpoints and savepoints triggered.
    pub triggered: u64,
    /// In progress now (0 or 1).
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// The latest completed checkpoint (not savepoint).
    pub latest_completed: Option<CheckpointRecord>,
    /// The latest completed savepoint.
    pub latest_savepoint: Option<CheckpointRecord>,
    /// The latest failed one.
    pub latest_failed: Option<CheckpointRecord>,
    /// The snapshot the job started from (`-s`), as its root.
    pub restored_from: Option<String>,
    /// The last few, newest first.
    pub history: Vec<CheckpointRecord>,
}

/// Records kept in the history.
const HISTORY: usize = 10;

/// How soon a failed final checkpoint of a job without a checkpoint interval is retried.
const FINAL_RETRY: Duration = Duration::from_secs(1);

/// What [`CheckpointCoordinator::mark_corrupt`] leaves the next restart with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// An older retained checkpoint.
    Checkpoint(u64),
    /// The snapshot given at submission.
    InitialRestore(String),
    /// Nothing: the job starts without state.
    Scratch,
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Checkpoint(id) => write!(f, "recovering from checkpoint {id}"),
            Fallback::InitialRestore(root) => {
                write!(f, "recovering from the initial savepoint {root}")
            }
            Fallback::Scratch => f.write_str("no checkpoint left: recovering from scratch"),
        }
    }
}

#[derive(Debug, Clone)]
struct SavepointRequest {
    request_id: String,
    /// The target directory the savepoint directory is created in.
    target: String,
    /// The savepoint directory's name.
    name: String,
    stop: bool,
}

impl SavepointRequest {
    fn location(&self) -> String {
        join(&self.target, &self.name)
    }
}

#[derive(Debug, Clone)]
struct Pending {
    id: u64,
    attempt: u32,
    savepoint: Option<SavepointRequest>,
    /// Root the segment paths are relative to.
    root: String,
    triggered_at: Instant,
    /// The latest acknowledgement (the trigger until one arrives).
    last_ack_at: Instant,
    timestamp_ms: i64,
    awaiting: BTreeSet<(u32, u32)>,
    /// Source subtasks whose acknowledgement has not said that their input had ended.
    inputs_open: BTreeSet<(u32, u32)>,
    /// The attempt has sources (a checkpoint can be the final one).
    has_sources: bool,
    acknowledged: u32,
    operators: BTreeMap<String, OperatorSnapshot>,
    bytes_written: u64,
    /// The longest synchronous pause and asynchronous part among the subtasks' acks.
    max_sync_millis: u64,
    max_async_millis: u64,
    /// All acked, `_metadata` being written.
    writing: bool,
}

#[derive(Debug, Clone)]
struct Completed {
    id: u64,
    root: String,
    metadata: CheckpointMetadata,
    /// Distinct segment paths it references.
    files: BTreeSet<String>,
    corrupt: bool,
}

#[derive(Debug, Clone)]
struct AttemptState {
    attempt: u32,
    subtasks: BTreeSet<(u32, u32)>,
    /// The subtasks whose chains start with a source.
    sources: BTreeSet<(u32, u32)>,
    /// Sources that reported the end of their input.
    inputs_ended: BTreeSet<(u32, u32)>,
    running: bool,
    finished: bool,
}

impl AttemptState {
    /// Every source reached the end of its input: the next checkpoint is the final one.
    fn all_inputs_ended(&self) -> bool {
        !self.sources.is_empty() && self.sources.is_subset(&self.inputs_ended)
    }
}

/// One job's checkpoint coordinator (see the module docs).
#[derive(Debug)]
pub struct CheckpointCoordinator {
    settings: CheckpointSettings,
    job_id: u128,
    job_name: String,
    root: Option<String>,
    /// Wall clock of an instant, to stamp checkpoints in epoch milliseconds.
    epoch: (Instant, i64),
    attempt: Option<AttemptState>,
    next_id: u64,
    next_trigger: Option<Instant>,
    pending: Option<Pending>,
    queued_savepoint: Option<SavepointRequest>,
    savepoint_seq: u64,
    savepoints: BTreeMap<String, SavepointStatus>,
    /// Retained completed checkpoints, oldest first.
    retained: VecDeque<Completed>,
    /// References of retained checkpoints per state file.
    refs: BTreeMap<String, u32>,
    initial_restore: Option<Restore>,
    consecutive_failures: u32,
    /// Checkpoints aborted while their metadata was being written: a late successful write
    /// leaves a directory to delete.
    aborted_writes: BTreeMap<u64, (String, String)>,
    stats: CheckpointStats,
    history: VecDeque<CheckpointRecord>,
    actions: VecDeque<CheckpointAction>,
}

impl CheckpointCoordinator {
    /// A coordinator for a job submitted at `epoch.0` (wall clock `epoch.1`, epoch millis),
    /// starting from `initial_restore` (a savepoint given at submission), if any.
    pub fn new(
        settings: CheckpointSettings,
        job_id: u128,
        job_name: &str,
        initial_restore: Option<Restore>,
        epoch: (Instant, i64),
    ) -> Self {
        let root = settings.root_of(job_id);
        if settings.interval.is_some() && root.is_none() {
            warn!(
                "execution.checkpointing.interval is set without a checkpoint directory: periodic checkpoints are disabled"
            );
        }
        // Ids continue after the restored snapshot's, as Flink's do after a restore.
        let next_id = initial_restore
            .as_ref()
            .map_or(1, |r| r.metadata.checkpoint_id + 1);
        let stats = CheckpointStats {
            restored_from: initial_restore.as_ref().map(|r| r.root.clone()),
            ..Default::default()
        };
        Self {
            settings,
            job_id,
            job_name: job_name.to_owned(),
            root,
            epoch,
            attempt: None,
            next_id,
            next_trigger: None,
            pending: None,
            queued_savepoint: None,
            savepoint_seq: 0,
            savepoints: BTreeMap::new(),
            retained: VecDeque::new(),
            refs: BTreeMap::new(),
            initial_restore,
            consecutive_failures: 0,
            aborted_writes: BTreeMap::new(),
            stats,
            history: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &CheckpointSettings {
        &self.settings
    }

    /// The job's checkpoint root, when checkpoints have a directory.
    pub fn root(&self) -> Option<&str> {
        self.root.as_deref()
    }

    /// Whether periodic checkpoints are taken.
    pub fn periodic(&self) -> bool {
        self.settings.interval.is_some() && self.root.is_some()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<CheckpointAction> {
        self.actions.pop_front()
    }

    /// When [`tick`](Self::tick) must be called: the pending checkpoint's timeout, or the next
    /// trigger while none is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.pending {
            Some(p) => Some(p.triggered_at + self.settings.timeout),
            None if self.can_trigger() => {
                if self.queued_savepoint.is_some() {
                    // Due at once; the JobMaster ticks after every event anyway.
                    self.next_trigger.or(Some(self.epoch.0))
                } else {
                    self.next_trigger
                }
            }
            None => None,
        }
    }

    /// The latest completed checkpoint that is not marked corrupt.
    pub fn latest_completed(&self) -> Option<(u64, &str, &CheckpointMetadata)> {
        self.retained
            .iter()
            .rev()
            .find(|c| !c.corrupt)
            .map(|c| (c.id, c.root.as_str(), &c.metadata))
    }

    /// What the next attempt restores: the latest completed checkpoint, else the initial
    /// restore.
    pub fn restore(&self) -> Option<Restore> {
        match self.latest_completed() {
            Some((_, root, metadata)) => Some(Restore {
                root: root.to_owned(),
                metadata: metadata.clone(),
            }),
            None => self.initial_restore.clone(),
        }
    }

    /// Ids of the retained completed checkpoints, oldest first.
    pub fn retained_ids(&self) -> Vec<u64> {
        self.retained.iter().map(|c| c.id).collect()
    }

    /// Statistics for the REST API.
    pub fn stats(&self, now: Instant) -> CheckpointStats {
        let mut stats = self.stats.clone();
        stats.in_progress = u64::from(self.pending.is_some());
        stats.history = self
            .pending
            .iter()
            .map(|p| self.record(p, now, None))
            .collect();
        stats.history.extend(self.history.iter().cloned());
        stats.history.truncate(HISTORY);
        stats
    }

    /// A savepoint request's status.
    pub fn savepoint_status(&self, request_id: &str) -> Option<&SavepointStatus> {
        self.savepoints.get(request_id)
    }

    // ---- the attempt's lifecycle ----

    /// An attempt was deployed with these subtasks (not running yet).
    pub fn attempt_deployed(
        &mut self,
        attempt: u32,
        subtasks: impl IntoIterator<Item = (u32, u32)>,
        sources: impl IntoIterator<Item = (u32, u32)>,
    ) {
        self.attempt = Some(AttemptState {
            attempt,
            subtasks: subtasks.into_iter().collect(),
            sources: sources.into_iter().collect(),
            inputs_ended: BTreeSet::new(),
            running: false,
            finished: false,
        });
        self.next_trigger = None;
    }

    /// Every subtask of the attempt is RUNNING: periodic checkpoints start an interval later.
    pub fn attempt_running(&mut self, attempt: u32, now: Instant) {
        let Some(a) = self.attempt.as_mut().filter(|a| a.attempt == attempt) else {
            return;
        };
        if a.running {
            return;
        }
        a.running = true;
        if self.periodic() && self.next_trigger.is_none() {
            let interval = self.settings.interval.unwrap_or_default();
            self.next_trigger = Some(now + interval);
        }
        self.tick(now);
    }

    /// A source subtask reached the end of its input. Once all have, the final checkpoint is
    /// triggered without waiting for the interval: the job ends when it completes.
    pub fn input_ended(&mut self, attempt: u32, subtask: (u32, u32), now: Instant) {
        let Some(a) = self.attempt.as_mut().filter(|a| a.attempt == attempt) else {
            return;
        };
        if !a.sources.contains(&subtask) || !a.inputs_ended.insert(subtask) {
            return;
        }
        if a.all_inputs_ended() {
            info!(
                attempt,
                "every source reached the end of its input: final checkpoint"
            );
            self.next_trigger = Some(now);
            self.tick(now);
        }
    }

    /// A subtask FINISHED: no checkpoint can complete without it any more (the pending one is
    /// aborted if it waits for it) and none is triggered from now on.
    pub fn subtask_finished(&mut self, attempt: u32, subtask: (u32, u32), now: Instant) {
        let Some(a) = self.attempt.as_mut().filter(|a| a.attempt == attempt) else {
            return;
        };
        a.finished = true;
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.attempt == attempt && p.awaiting.contains(&subtask))
        {
            let reason = format!(
                "subtask {}.{} finished before acknowledging",
                subtask.0, subtask.1
            );
            self.abort(reason, false, true, now);
        }
        if let Some(sp) = self.queued_savepoint.take() {
            self.savepoint_failed(&sp, "the job is finishing".into());
        }
    }

    /// The attempt ended (failover, cancellation, the job's end): the pending checkpoint is
    /// aborted without counting as a checkpoint failure.
    pub fn attempt_ended(&mut self, reason: &str, now: Instant) {
        if self.attempt.take().is_none() {
            return;
        }
        self.next_trigger = None;
        if self.pending.is_some() {
            self.abort(format!("the attempt ended: {reason}"), false, false, now);
        }
        if let Some(sp) = self.queued_savepoint.take() {
            self.savepoint_failed(&sp, format!("the attempt ended: {reason}"));
        }
    }

    /// The job is over: the retained checkpoints are deleted unless [`Retention`] keeps them
    /// for this ending. Savepoints are never deleted.
    pub fn job_ended(&mut self, end: JobEnd, now: Instant) {
        self.attempt_ended("the job ended", now);
        if !self.settings.retention.discards_on(end) {
            info!(?end, ids = ?self.retained_ids(), "retaining the completed checkpoints");
            return;
        }
        while let Some(c) = self.retained.pop_front() {
            self.release(c);
        }
    }

    // ---- checkpoints ----

    /// Time passed: the pending checkpoint's timeout, the next trigger, a queued savepoint.
    pub fn tick(&mut self, now: Instant) {
        if let Some(p) = &self.pending
            && p.triggered_at + self.settings.timeout <= now
        {
            let reason = format!(
                "checkpoint {} expired before completing (execution.checkpointing.timeout {})",
                p.id,
                humantime::format_duration(self.settings.timeout)
            );
            self.abort(reason, true, true, now);
        }
        if self.pending.is_some() || !self.can_trigger() {
            return;
        }
        // Without an interval, a final checkpoint that failed is retried after the pause.
        if self.next_trigger.is_none()
            && self
                .attempt
                .as_ref()
                .is_some_and(AttemptState::all_inputs_ended)
        {
            self.next_trigger = Some(now + self.settings.min_pause.max(FINAL_RETRY));
        }
        if let Some(sp) = self.queued_savepoint.take() {
            self.trigger(Some(sp), now);
        } else if self.next_trigger.is_some_and(|t| t <= now) {
            self.trigger(None, now);
        }
    }

    /// A subtask's acknowledgement. Acks of other jobs, attempts or checkpoints, duplicates
    /// and unknown subtasks are ignored.
    pub fn acknowledge(&mut self, ack: &AcknowledgeCheckpoint, now: Instant) {
        let Some(key) = self.subtask_key(ack.subtask.as_ref()) else {
            debug!(
                checkpoint = ack.checkpoint_id,
                "ignoring an acknowledgement of another job or attempt"
            );
            return;
        };
        let Some(p) = self.pending.as_mut().filter(|p| p.id == ack.checkpoint_id) else {
            debug!(
                checkpoint = ack.checkpoint_id,
                "ignoring an acknowledgement of a checkpoint that is not pending"
            );
            return;
        };
        if !p.awaiting.remove(&key) {
            debug!(
                checkpoint = p.id,
                chain = key.0,
                index = key.1,
                "ignoring a duplicate or unknown acknowledgement"
            );
            return;
        }
        p.acknowledged += 1;
        if ack.input_ended {
            p.inputs_open.remove(&key);
        }
        p.last_ack_at = now;
        p.bytes_written += ack.bytes_written;
        p.max_sync_millis = p.max_sync_millis.max(ack.sync_millis);
        p.max_async_millis = p.max_async_millis.max(ack.async_millis);
        for op in &ack.operators {
            match p.operators.get_mut(&op.operator_id) {
                Some(merged) => {
                    merged.key_groups.extend(op.key_groups.iter().cloned());
                    merged.subtasks.extend(op.subtasks.iter().cloned());
                    merged.parallelism = merged.parallelism.max(op.parallelism);
                    merged.max_parallelism = merged.max_parallelism.max(op.max_parallelism);
                }
                None => {
                    p.operators.insert(op.operator_id.clone(), op.clone());
                }
            }
        }
        if p.awaiting.is_empty() {
            self.finalize();
        }
    }

    /// A subtask declined: the pending checkpoint is aborted (a checkpoint failure).
    pub fn decline(&mut self, decline: &DeclineCheckpoint, now: Instant) {
        let Some(key) = self.subtask_key(decline.subtask.as_ref()) else {
            return;
        };
        if self
            .pending
            .as_ref()
            .is_none_or(|p| p.id != decline.checkpoint_id)
        {
            debug!(
                checkpoint = decline.checkpoint_id,
                "ignoring a decline of a checkpoint that is not pending"
            );
            return;
        }
        let reason = format!(
            "subtask {}.{} declined checkpoint {}: {}",
            key.0, key.1, decline.checkpoint_id, decline.reason
        );
        self.abort(reason, true, true, now);
        self.tick(now);
    }

    /// The shell wrote (or failed to write) a checkpoint's `_metadata`.
    pub fn metadata_written(
        &mut self,
        checkpoint_id: u64,
        result: Result<(), String>,
        now: Instant,
    ) {
        let writing = self
            .pending
            .as_ref()
            .is_some_and(|p| p.id == checkpoint_id && p.writing);
        if !writing {
            // Written after an abort: the directory holds a complete-looking checkpoint nobody
            // tracks; remove it.
            if let Some((root, dir)) = self.aborted_writes.remove(&checkpoint_id)
                && result.is_ok()
            {
                self.actions
                    .push_back(CheckpointAction::DeleteDir { root, path: dir });
            }
            return;
        }
        match result {
            Ok(()) => self.complete(now),
            Err(e) => {
                let reason =
                    format!("cannot write the metadata of checkpoint {checkpoint_id}: {e}");
                self.abort(reason, true, true, now);
            }
        }
        self.tick(now);
    }

    /// A subtask could not restore from `checkpoint_id` (its state is corrupt or missing): it
    /// is no longer a candidate for recovery (its files are kept, for inspection).
    pub fn mark_corrupt(&mut self, checkpoint_id: u64) -> Fallback {
        if let Some(c) = self.retained.iter_mut().find(|c| c.id == checkpoint_id) {
            if !c.corrupt {
                error!(checkpoint = checkpoint_id, root = %c.root, "checkpoint state is corrupt: it is no longer used for recovery (its files are kept)");
            }
            c.corrupt = true;
        } else if self
            .initial_restore
            .as_ref()
            .is_some_and(|r| r.metadata.checkpoint_id == checkpoint_id)
            && self.latest_completed().is_none()
        {
            let root = self
                .initial_restore
                .take()
                .map(|r| r.root)
                .unwrap_or_default();
            error!(checkpoint = checkpoint_id, %root, "the savepoint the job started from is corrupt: it is no longer used for recovery");
        } else {
            warn!(
                checkpoint = checkpoint_id,
                "a subtask reports an unknown checkpoint as corrupt"
            );
        }
        let fallback = match (self.latest_completed(), &self.initial_restore) {
            (Some((id, _, _)), _) => Fallback::Checkpoint(id),
            (None, Some(r)) => Fallback::InitialRestore(r.root.clone()),
            (None, None) => Fallback::Scratch,
        };
        warn!(checkpoint = checkpoint_id, %fallback, "corrupt checkpoint");
        fallback
    }

    // ---- savepoints ----

    /// Takes a savepoint into `target` (default `state.savepoints.dir`) as soon as no
    /// checkpoint is pending; with `stop`, the job stops once it completed. Returns the request
    /// id to ask [`savepoint_status`](Self::savepoint_status) with.
    pub fn trigger_savepoint(
        &mut self,
        target: Option<&str>,
        stop: bool,
        now: Instant,
    ) -> Result<String, SavepointError> {
        let target = target
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned)
            .or_else(|| self.settings.savepoints_dir.clone())
            .ok_or(SavepointError::NoTargetDirectory)?;
        if !self.can_trigger() {
            return Err(SavepointError::NotRunning);
        }
        let busy = self
            .queued_savepoint
            .as_ref()
            .or(self.pending.as_ref().and_then(|p| p.savepoint.as_ref()));
        if let Some(sp) = busy {
            return Err(SavepointError::InProgress(sp.request_id.clone()));
        }
        self.savepoint_seq += 1;
        let random = mix(self.job_id as u64 ^ (self.job_id >> 64) as u64 ^ mix(self.savepoint_seq));
        let request_id = format!("{:016x}{:016x}", mix(random), random);
        let name = format!(
            "savepoint-{}-{:012x}",
            &format!("{:032x}", self.job_id)[..6],
            random & 0xffff_ffff_ffff
        );
        let request = SavepointRequest {
            request_id: request_id.clone(),
            target,
            name,
            stop,
        };
        info!(request = %request_id, location = %request.location(), stop, "savepoint requested");
        self.savepoints
            .insert(request_id.clone(), SavepointStatus::InProgress);
        self.queued_savepoint = Some(request);
        self.tick(now);
        Ok(request_id)
    }

    // ---- internals ----

    fn can_trigger(&self) -> bool {
        self.attempt
            .as_ref()
            .is_some_and(|a| a.running && !a.finished)
    }

    fn epoch_ms(&self, now: Instant) -> i64 {
        let (at, ms) = self.epoch;
        if now >= at {
            ms + (now - at).as_millis() as i64
        } else {
            ms - (at - now).as_millis() as i64
        }
    }

    fn subtask_key(&self, r: Option<&SubtaskRef>) -> Option<(u32, u32)> {
        let r = r?;
        let a = self.attempt.as_ref()?;
        (r.job_id.as_ref() == self.job_id.to_be_bytes() && r.attempt == a.attempt)
            .then_some((r.chain, r.index))
    }

    fn trigger(&mut self, savepoint: Option<SavepointRequest>, now: Instant) {
        let Some((attempt, subtasks, sources)) = self
            .attempt
            .as_ref()
            .map(|a| (a.attempt, a.subtasks.clone(), a.sources.clone()))
        else {
            return;
        };
        let root = match (&savepoint, &self.root) {
            (Some(sp), _) => sp.location(),
            (None, Some(root)) => root.clone(),
            (None, None) => return,
        };
        let id = self.next_id;
        self.next_id += 1;
        if !self.periodic() {
            // A one-off (a final checkpoint without an interval): the next is set when due.
            self.next_trigger = None;
        }
        let base = match &savepoint {
            Some(_) => 0,
            None => self.latest_completed().map_or(0, |(id, _, _)| id),
        };
        let timestamp_ms = self.epoch_ms(now);
        let trigger = TriggerCheckpoint {
            job_id: Bytes::copy_from_slice(&self.job_id.to_be_bytes()),
            attempt,
            checkpoint_id: id,
            timestamp_ms,
            target_dir: root.clone(),
            full: savepoint.is_some() || base == 0,
            base_checkpoint: base,
            savepoint: savepoint.is_some(),
        };
        info!(
            checkpoint = id,
            attempt,
            savepoint = savepoint.is_some(),
            base,
            "triggering checkpoint"
        );
        self.pending = Some(Pending {
            id,
            attempt,
            savepoint,
            root,
            triggered_at: now,
            last_ack_at: now,
            timestamp_ms,
            awaiting: subtasks,
            has_sources: !sources.is_empty(),
            inputs_open: sources,
            acknowledged: 0,
            operators: BTreeMap::new(),
            bytes_written: 0,
            max_sync_millis: 0,
            max_async_millis: 0,
            writing: false,
        });
        self.stats.triggered += 1;
        self.actions.push_back(CheckpointAction::Trigger(trigger));
    }

    /// Every subtask acknowledged: ask the shell to write the metadata.
    fn finalize(&mut self) {
        let Some(p) = self.pending.as_ref() else {
            return;
        };
        let metadata = self.metadata_of(p);
        let path = match &p.savepoint {
            Some(_) => METADATA_FILE.to_owned(),
            None => format!("chk-{}/{METADATA_FILE}", p.id),
        };
        let (id, root) = (p.id, p.root.clone());
        if let Some(p) = self.pending.as_mut() {
            p.writing = true;
        }
        debug!(
            checkpoint = id,
            "every subtask acknowledged; writing the metadata"
        );
        self.actions.push_back(CheckpointAction::WriteMetadata {
            checkpoint_id: id,
            root,
            path,
            bytes: Bytes::from(encode_metadata(&metadata)),
        });
    }

    fn metadata_of(&self, p: &Pending) -> CheckpointMetadata {
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job_id: Bytes::copy_from_slice(&self.job_id.to_be_bytes()),
            job_name: self.job_name.clone(),
            checkpoint_id: p.id,
            timestamp_ms: p.timestamp_ms,
            savepoint: p.savepoint.is_some(),
            operators: p.operators.values().cloned().collect(),
        }
    }

    fn record(&self, p: &Pending, now: Instant, failure: Option<String>) -> CheckpointRecord {
        let status = match (&failure, p.writing) {
            (Some(_), _) => CheckpointStatus::Failed,
            _ => CheckpointStatus::InProgress,
        };
        CheckpointRecord {
            id: p.id,
            status,
            savepoint: p.savepoint.is_some(),
            trigger_timestamp_ms: p.timestamp_ms,
            latest_ack_timestamp_ms: self.epoch_ms(p.last_ack_at),
            state_size: state_size(p.operators.values()),
            bytes_written: p.bytes_written,
            duration_ms: now.saturating_duration_since(p.triggered_at).as_millis() as u64,
            num_subtasks: p.acknowledged + p.awaiting.len() as u32,
            num_acknowledged: p.acknowledged,
            external_path: match &p.savepoint {
                Some(sp) => sp.location(),
                None => join(&p.root, &format!("chk-{}", p.id)),
            },
            failure,
        }
    }

    fn push_history(&mut self, record: CheckpointRecord) {
        self.history.push_front(record);
        self.history.truncate(HISTORY);
    }

    fn complete(&mut self, now: Instant) {
        let Some(p) = self.pending.take() else { return };
        let metadata = self.metadata_of(&p);
        let mut record = self.record(&p, now, None);
        record.status = CheckpointStatus::Completed;
        self.stats.completed += 1;
        self.push_history(record.clone());
        info!(
            checkpoint = p.id,
            size = record.state_size,
            bytes_written = record.bytes_written,
            duration_ms = record.duration_ms,
            max_sync_ms = p.max_sync_millis,
            max_async_ms = p.max_async_millis,
            location = %record.external_path,
            "checkpoint completed"
        );
        if let Some(sp) = &p.savepoint {
            // Flink 1.15+: an intermediate savepoint neither commits side effects nor becomes a
            // recovery point; a stop-with-savepoint commits, then stops.
            self.stats.latest_savepoint = Some(record);
            self.savepoints.insert(
                sp.request_id.clone(),
                SavepointStatus::Completed {
                    location: sp.location(),
                },
            );
            if sp.stop {
                self.actions.push_back(CheckpointAction::NotifyComplete {
                    attempt: p.attempt,
                    checkpoint_id: p.id,
                    end_of_input: false,
                });
            }
            self.actions
                .push_back(CheckpointAction::SavepointCompleted {
                    request_id: sp.request_id.clone(),
                    location: sp.location(),
                    stop: sp.stop,
                });
            if let Some(t) = self.next_trigger.as_mut() {
                *t = (*t).max(now + self.settings.min_pause);
            }
            return;
        }
        self.consecutive_failures = 0;
        self.stats.latest_completed = Some(record);
        let files: BTreeSet<String> = segments(&metadata.operators)
            .map(|s| s.path.clone())
            .collect();
        for f in &files {
            *self.refs.entry(f.clone()).or_default() += 1;
        }
        self.retained.push_back(Completed {
            id: p.id,
            root: p.root.clone(),
            metadata,
            files,
            corrupt: false,
        });
        let end_of_input = p.has_sources && p.inputs_open.is_empty();
        if end_of_input {
            info!(checkpoint = p.id, "the final checkpoint completed");
        }
        self.actions.push_back(CheckpointAction::NotifyComplete {
            attempt: p.attempt,
            checkpoint_id: p.id,
            end_of_input,
        });
        while self.retained.len() > self.settings.num_retained.max(1) as usize {
            if let Some(old) = self.retained.pop_front() {
                debug!(checkpoint = old.id, by = p.id, "checkpoint subsumed");
                self.release(old);
            }
        }
        if let Some(interval) = self.settings.interval {
            self.next_trigger =
                Some((p.triggered_at + interval).max(now + self.settings.min_pause));
        }
    }

    /// Drops a retained checkpoint: deletes the files no other retained one references, and
    /// its `chk-<n>` directory.
    fn release(&mut self, c: Completed) {
        let mut unreferenced = Vec::new();
        for f in c.files {
            match self.refs.get_mut(&f) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    self.refs.remove(&f);
                    unreferenced.push(f);
                }
            }
        }
        if !unreferenced.is_empty() {
            self.actions.push_back(CheckpointAction::DeleteFiles {
                root: c.root.clone(),
                paths: unreferenced,
            });
        }
        self.actions.push_back(CheckpointAction::DeleteDir {
            root: c.root,
            path: format!("chk-{}", c.id),
        });
    }

    /// Gives the pending checkpoint up. `counts`: a checkpoint failure for
    /// `tolerable-failed-checkpoints` (not when the job's own failover or end caused it).
    /// `notify`: the attempt's workers are still there to be told.
    fn abort(&mut self, reason: String, counts: bool, notify: bool, now: Instant) {
        let Some(p) = self.pending.take() else { return };
        warn!(checkpoint = p.id, %reason, "checkpoint aborted");
        let record = self.record(&p, now, Some(reason.clone()));
        self.stats.failed += 1;
        self.stats.latest_failed = Some(record.clone());
        self.push_history(record);
        if notify {
            self.actions.push_back(CheckpointAction::NotifyAborted {
                attempt: p.attempt,
                checkpoint_id: p.id,
                reason: reason.clone(),
            });
        }
        match &p.savepoint {
            Some(sp) => {
                // Its directory is its own: remove whatever was written to it.
                self.actions.push_back(CheckpointAction::DeleteDir {
                    root: sp.target.clone(),
                    path: sp.name.clone(),
                });
                if p.writing {
                    self.remember_aborted_write(p.id, sp.target.clone(), sp.name.clone());
                }
                self.savepoint_failed(sp, reason);
            }
            None => {
                let written: BTreeSet<String> = segments(p.operators.values())
                    .map(|s| s.path.clone())
                    .filter(|path| !self.refs.contains_key(path))
                    .collect();
                if !written.is_empty() {
                    self.actions.push_back(CheckpointAction::DeleteFiles {
                        root: p.root.clone(),
                        paths: written.into_iter().collect(),
                    });
                }
                if p.writing {
                    let dir = format!("chk-{}", p.id);
                    self.actions.push_back(CheckpointAction::DeleteDir {
                        root: p.root.clone(),
                        path: dir.clone(),
                    });
                    self.remember_aborted_write(p.id, p.root.clone(), dir);
                }
                if counts {
                    self.consecutive_failures += 1;
                    if self.consecutive_failures > self.settings.tolerable_failures {
                        let cause = format!(
                            "exceeded the checkpoint tolerable failure threshold ({} consecutive failures, \
                             execution.checkpointing.tolerable-failed-checkpoints = {}); last: {reason}",
                            self.consecutive_failures, self.settings.tolerable_failures
                        );
                        self.consecutive_failures = 0;
                        self.actions.push_back(CheckpointAction::FailJob { cause });
                    }
                }
            }
        }
        if let Some(interval) = self.settings.interval
            && self.attempt.is_some()
        {
            // Next one on the periodic schedule, after the failed one.
            self.next_trigger = Some((p.triggered_at + interval).max(now));
        }
    }

    fn remember_aborted_write(&mut self, id: u64, root: String, dir: String) {
        self.aborted_writes.insert(id, (root, dir));
        while self.aborted_writes.len() > HISTORY {
            self.aborted_writes.pop_first();
        }
    }

    fn savepoint_failed(&mut self, sp: &SavepointRequest, cause: String) {
        warn!(request = %sp.request_id, %cause, "savepoint failed");
        self.savepoints.insert(
            sp.request_id.clone(),
            SavepointStatus::Failed {
                cause: cause.clone(),
            },
        );
        self.actions.push_back(CheckpointAction::SavepointFailed {
            request_id: sp.request_id.clone(),
            cause,
        });
    }
}

/// Every segment an operator list references.
fn segments<'a>(
    operators: impl IntoIterator<Item = &'a OperatorSnapshot>,
) -> impl Iterator<Item = &'a mesoflow_proto::checkpoint::Segment> {
    operators.into_iter().flat_map(|op| {
        op.key_groups
            .iter()
            .filter_map(|k| k.segment.as_ref())
            .chain(op.subtasks.iter().filter_map(|s| s.segment.as_ref()))
    })
}

/// Sum of the lengths of the referenced segments.
fn state_size<'a>(operators: impl IntoIterator<Item = &'a OperatorSnapshot>) -> u64 {
    segments(operators).map(|s| s.length).sum()
}

/// `dir/name`, without doubling the slash.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// SplitMix64: spreads a counter into random-looking bits (savepoint names, request ids).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
