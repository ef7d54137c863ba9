//! A TaskManager's side of checkpoints for one attempt: which checkpoints were triggered,
//! uploading what its subtasks snapshot, acknowledging them to the JobManager, and reading the
//! state an attempt restores.
//!
//! Subtask threads hand their snapshot in at a barrier and go on; compression, the write to
//! the checkpoint storage (local or HDFS) and the acknowledgement happen here, on the
//! TaskManager's runtime. A failed upload declines the checkpoint: the job keeps running.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mesoflow_dataplane::checkpoint::segment;
use mesoflow_dataplane::checkpoint::storage::{self, CheckpointStorage};
use mesoflow_dataplane::checkpoint::subtask::{
    CheckpointServices, KeyGroupPiece, RestoredState, SubtaskCheckpoint, SubtaskSnapshot,
    TriggerInfo,
};
use mesoflow_dataplane::control::ControlSender;
use mesoflow_dataplane::plan::SubtaskId;
use mesoflow_proto::checkpoint::{
    CheckpointMetadata, KeyGroupState, OperatorSnapshot, Segment, SubtaskState,
};
use mesoflow_proto::control::{
    AcknowledgeCheckpoint, DeclineCheckpoint, SubtaskStateChange, TaskManagerMessage,
    TriggerCheckpoint, task_manager_message,
};
use parking_lot::{Condvar, Mutex};

use super::attempt::{AttemptKey, subtask_ref};

/// How long a subtask waits for the trigger of a barrier that arrived first.
const TRIGGER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

struct Triggered {
    info: TriggerInfo,
    target_dir: String,
}

/// Checkpoint services of one attempt in this TaskManager.
pub struct AttemptCheckpoints {
    key: AttemptKey,
    triggered: Mutex<BTreeMap<u64, Triggered>>,
    /// Signalled when a trigger is remembered (a barrier may arrive before its trigger).
    trigger_known: Condvar,
    storages: Mutex<HashMap<String, Arc<dyn CheckpointStorage>>>,
    subtasks: Mutex<HashMap<SubtaskId, SubtaskCheckpoint>>,
    send: ControlSender,
    runtime: tokio::runtime::Handle,
    /// The job checkpoints into a storage: sources that reach the end of their input wait for
    /// its final checkpoint.
    final_checkpoint: bool,
}

impl AttemptCheckpoints {
    /// Services for attempt `key`, acknowledging over `send`; `final_checkpoint` when the job
    /// has a checkpoint storage (so the JobManager takes a final checkpoint).
    pub fn new(
        key: AttemptKey,
        send: ControlSender,
        runtime: tokio::runtime::Handle,
        final_checkpoint: bool,
    ) -> Self {
        Self {
            key,
            triggered: Mutex::new(BTreeMap::new()),
            trigger_known: Condvar::new(),
            storages: Mutex::new(HashMap::new()),
            subtasks: Mutex::new(HashMap::new()),
            send,
            runtime,
            final_checkpoint,
        }
    }

    /// Knows the subtask's checkpointing (to record where its uploads went).
    pub fn register(&self, id: SubtaskId, checkpoint: SubtaskCheckpoint) {
        self.subtasks.lock().insert(id, checkpoint);
    }

    /// What was triggered for checkpoint `id`. A barrier from a source on another TaskManager
    /// can overtake the JobManager's trigger to this one (unaligned barriers skip the queues):
    /// a checkpoint newer than every known trigger is waited for, briefly.
    fn trigger_info(&self, checkpoint_id: u64) -> Option<TriggerInfo> {
        let deadline = Instant::now() + TRIGGER_WAIT;
        let mut triggered = self.triggered.lock();
        loop {
            if let Some(t) = triggered.get(&checkpoint_id) {
                return Some(t.info.clone());
            }
            let newer_known = triggered
                .last_key_value()
                .is_some_and(|(id, _)| *id > checkpoint_id);
            if newer_known
                || self
                    .trigger_known
                    .wait_until(&mut triggered, deadline)
                    .timed_out()
            {
                return triggered.get(&checkpoint_id).map(|t| t.info.clone());
            }
        }
    }

    /// The JobManager triggered a checkpoint: remembered before any barrier of it can reach a
    /// subtask here. Older triggers are forgotten (at most a few are in flight).
    pub fn triggered(&self, t: &TriggerCheckpoint) {
        let mut triggered = self.triggered.lock();
        triggered.insert(
            t.checkpoint_id,
            Triggered {
                info: TriggerInfo {
                    full: t.full,
                    base: t.base_checkpoint,
                    savepoint: t.savepoint,
                },
                target_dir: t.target_dir.clone(),
            },
        );
        while triggered.len() > 16 {
            triggered.pop_first();
        }
        self.trigger_known.notify_all();
    }

    /// Runs the completion hooks of every subtask of the attempt (running or finished).
    pub fn notify_complete(&self, checkpoint_id: u64) {
        self.notify_complete_of(checkpoint_id, |_| true);
    }

    /// Runs the completion hooks of the subtasks `which` selects, here on the TaskManager's
    /// thread (for subtasks whose own thread has ended). Hooks are idempotent.
    pub fn notify_complete_of(&self, checkpoint_id: u64, which: impl Fn(&SubtaskId) -> bool) {
        let subtasks: Vec<_> = self
            .subtasks
            .lock()
            .iter()
            .filter(|(id, _)| which(id))
            .map(|(_, s)| s.clone())
            .collect();
        for s in subtasks {
            if let Err(e) = s.notify_complete(checkpoint_id) {
                tracing::error!(checkpoint_id, error = %e, "committing after a completed checkpoint failed");
            }
        }
    }

    fn storage(&self, uri: &str) -> Result<Arc<dyn CheckpointStorage>, String> {
        let mut storages = self.storages.lock();
        if let Some(s) = storages.get(uri) {
            return Ok(s.clone());
        }
        let s = storage::open(uri).map_err(|e| e.to_string())?;
        storages.insert(uri.to_owned(), s.clone());
        Ok(s)
    }

    fn send(&self, kind: task_manager_message::Kind) {
        if let Err(e) = self.send.send(TaskManagerMessage { kind: Some(kind) }) {
            tracing::debug!(error = %e, "checkpoint message not sent");
        }
    }

    async fn upload(self: Arc<Self>, snapshot: SubtaskSnapshot) {
        let started = Instant::now();
        let id = snapshot.checkpoint_id;
        let subtask = snapshot.subtask;
        let target = {
            let t = self.triggered.lock();
            t.get(&id).map(|t| (t.target_dir.clone(), t.info.savepoint))
        };
        let Some((target_dir, savepoint)) = target else {
            self.decline_now(subtask, id, "the checkpoint is no longer known".into());
            return;
        };
        let name = format!(
            "{}chk-{id}-a{}-{}-{}-{:08x}.state",
            if savepoint { "" } else { "shared/" },
            self.key.1,
            subtask.chain,
            subtask.index,
            rand::random::<u32>()
        );
        // Serializing frozen key groups and compressing are CPU work of seconds for large
        // state: they run on the blocking pool, so the runtime's workers keep serving
        // heartbeats and control messages meanwhile.
        let (sync_millis, input_ended) = (snapshot.sync_millis, snapshot.input_ended);
        let assembled = tokio::task::spawn_blocking({
            let name = name.clone();
            move || {
                let mut snapshot = snapshot;
                snapshot.serialize_deferred().map_err(|e| e.to_string())?;
                Ok::<_, String>(assemble(&name, id, &snapshot))
            }
        })
        .await;
        let (file, operators, written) = match assembled {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                return self.decline_now(subtask, id, format!("snapshot encoding failed: {e}"));
            }
            Err(e) => {
                return self.decline_now(subtask, id, format!("snapshot encoding failed: {e}"));
            }
        };
        let bytes_written = file.len() as u64;
        if !file.is_empty() {
            let storage = match self.storage(&target_dir) {
                Ok(s) => s,
                Err(e) => return self.decline_now(subtask, id, e),
            };
            if let Err(e) = storage.write(&name, Bytes::from(file)).await {
                // A fresh client next time: a NameNode that restarted is not reached through
                // the connections of the old one.
                self.storages.lock().remove(&target_dir);
                return self.decline_now(subtask, id, format!("cannot write state: {e}"));
            }
        }
        if let Some(cp) = self.subtasks.lock().get(&subtask) {
            cp.uploaded(id, written);
        }
        tracing::debug!(
            checkpoint_id = id,
            ?subtask,
            bytes_written,
            "snapshot uploaded"
        );
        self.send(task_manager_message::Kind::AcknowledgeCheckpoint(
            AcknowledgeCheckpoint {
                subtask: Some(subtask_ref(self.key, subtask)),
                checkpoint_id: id,
                operators: operators.into_values().collect(),
                bytes_written,
                sync_millis,
                async_millis: started.elapsed().as_millis() as u64,
                input_ended,
            },
        ));
    }

    fn decline_now(&self, subtask: SubtaskId, checkpoint_id: u64, reason: String) {
        tracing::warn!(checkpoint_id, ?subtask, %reason, "declining a checkpoint");
        self.send(task_manager_message::Kind::DeclineCheckpoint(
            DeclineCheckpoint {
                subtask: Some(subtask_ref(self.key, subtask)),
                checkpoint_id,
                reason,
            },
        ));
    }
}

/// One file for a subtask's snapshot, each piece of state a frame in it: the file, the
/// subtask's share of the metadata, and where the key groups written now lie.
#[allow(clippy::type_complexity)]
fn assemble(
    name: &str,
    id: u64,
    snapshot: &SubtaskSnapshot,
) -> (
    Vec<u8>,
    BTreeMap<String, OperatorSnapshot>,
    Vec<(String, String, KeyGroupState)>,
) {
    let subtask = snapshot.subtask;
    // One file per subtask and checkpoint; each piece of state a frame in it.
    let mut file = Vec::new();
    let mut frame = |bytes: &[u8]| {
        let f = segment::encode(bytes);
        let seg = Segment {
            path: name.to_owned(),
            offset: file.len() as u64,
            length: f.len() as u64,
            checksum: segment::frame_checksum(&f),
        };
        file.extend_from_slice(&f);
        seg
    };
    let mut operators: BTreeMap<String, OperatorSnapshot> = BTreeMap::new();
    let mut written = Vec::new();
    for (op, shape) in &snapshot.shapes {
        operators.insert(
            op.clone(),
            OperatorSnapshot {
                operator_id: op.clone(),
                parallelism: shape.parallelism,
                max_parallelism: shape.max_parallelism,
                key_groups: Vec::new(),
                subtasks: Vec::new(),
            },
        );
    }
    for part in &snapshot.keyed {
        let state = match &part.piece {
            KeyGroupPiece::Written(bytes) => {
                let h = KeyGroupState {
                    state_name: part.state_name.clone(),
                    key_group: part.key_group,
                    segment: Some(frame(bytes)),
                    written_by: id,
                };
                written.push((part.operator_id.clone(), part.state_name.clone(), h.clone()));
                h
            }
            KeyGroupPiece::Unchanged(h) => h.clone(),
            // Serialized before assembling (`serialize_deferred`).
            KeyGroupPiece::Deferred(_) => continue,
        };
        if let Some(o) = operators.get_mut(&part.operator_id) {
            o.key_groups.push(state);
        }
    }
    for part in &snapshot.operator {
        let seg = frame(&part.bytes);
        if let Some(o) = operators.get_mut(&part.operator_id) {
            o.subtasks.push(SubtaskState {
                subtask: subtask.index,
                state_name: part.state_name.clone(),
                segment: Some(seg),
            });
        }
    }
    (file, operators, written)
}

/// The services as the dataplane sees them.
pub struct Services(pub Arc<AttemptCheckpoints>);

impl CheckpointServices for Services {
    fn trigger(&self, checkpoint_id: u64) -> Option<TriggerInfo> {
        self.0.trigger_info(checkpoint_id)
    }

    fn submit(&self, snapshot: SubtaskSnapshot) {
        let this = self.0.clone();
        self.0.runtime.spawn(this.upload(snapshot));
    }

    fn decline(&self, subtask: SubtaskId, checkpoint_id: u64, reason: String) {
        self.0.decline_now(subtask, checkpoint_id, reason);
    }

    fn input_ended(&self, subtask: SubtaskId) -> bool {
        self.0.send(task_manager_message::Kind::SubtaskState(
            SubtaskStateChange {
                subtask: Some(subtask_ref(self.0.key, subtask)),
                state: mesoflow_proto::control::SubtaskState::Running as i32,
                input_ended: true,
                ..Default::default()
            },
        ));
        self.0.final_checkpoint
    }
}

/// Why restored state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A file is missing, truncated or fails its checksum.
    #[error("checkpoint {checkpoint_id} is corrupt or incomplete: {message}")]
    Corrupt {
        /// The checkpoint.
        checkpoint_id: u64,
        /// What is wrong, naming the file.
        message: String,
    },
    /// The storage could not be reached or the metadata is unusable.
    #[error("cannot restore checkpoint {checkpoint_id}: {message}")]
    Failed {
        /// The checkpoint.
        checkpoint_id: u64,
        /// Why.
        message: String,
    },
}

/// Reads and checks the state of `metadata` (relative to `root`) that the operators in
/// `wanted` need: every segment's checksum is verified before it is decoded.
pub async fn load_restore(
    root: &str,
    metadata: &CheckpointMetadata,
    wanted: &(dyn Fn(&str) -> bool + Sync),
) -> Result<RestoredState, RestoreError> {
    let id = metadata.checkpoint_id;
    let failed = |message: String| RestoreError::Failed {
        checkpoint_id: id,
        message,
    };
    let corrupt = |message: String| RestoreError::Corrupt {
        checkpoint_id: id,
        message,
    };
    if metadata.format_version != mesoflow_proto::checkpoint::FORMAT_VERSION {
        return Err(failed(format!(
            "metadata format {} is not the {} this build reads",
            metadata.format_version,
            mesoflow_proto::checkpoint::FORMAT_VERSION
        )));
    }
    let storage = storage::open(root).map_err(|e| failed(e.to_string()))?;
    let mut files: HashMap<String, Bytes> = HashMap::new();
    let mut restored = RestoredState {
        checkpoint_id: id,
        shared: !metadata.savepoint,
        ..Default::default()
    };
    for op in metadata.operators.iter().filter(|o| wanted(&o.operator_id)) {
        restored
            .parallelism
            .insert(op.operator_id.clone(), op.parallelism);
        for kg in &op.key_groups {
            let seg = kg
                .segment
                .as_ref()
                .ok_or_else(|| corrupt("a key group without segment".into()))?;
            let bytes = read_segment(&*storage, &mut files, seg, &corrupt).await?;
            restored
                .keyed
                .entry((op.operator_id.clone(), kg.state_name.clone()))
                .or_default()
                .insert(kg.key_group, (bytes, kg.clone()));
        }
        for st in &op.subtasks {
            let seg = st
                .segment
                .as_ref()
                .ok_or_else(|| corrupt("a subtask state without segment".into()))?;
            let bytes = read_segment(&*storage, &mut files, seg, &corrupt).await?;
            restored
                .operator
                .entry((op.operator_id.clone(), st.state_name.clone()))
                .or_default()
                .insert(st.subtask, bytes);
        }
    }
    Ok(restored)
}

async fn read_segment(
    storage: &dyn CheckpointStorage,
    files: &mut HashMap<String, Bytes>,
    seg: &Segment,
    corrupt: &(dyn Fn(String) -> RestoreError + Sync),
) -> Result<Vec<u8>, RestoreError> {
    if !files.contains_key(&seg.path) {
        let data = storage
            .read(&seg.path)
            .await
            .map_err(|e| corrupt(format!("{e}")))?;
        files.insert(seg.path.clone(), data);
    }
    let data = &files[&seg.path];
    let end = seg
        .offset
        .checked_add(seg.length)
        .filter(|e| *e <= data.len() as u64)
        .ok_or_else(|| {
            corrupt(format!(
                "{}: segment {}+{} lies beyond its {} bytes (truncated?)",
                seg.path,
                seg.offset,
                seg.length,
                data.len()
            ))
        })?;
    let frame = &data[seg.offset as usize..end as usize];
    let sum = segment::frame_checksum(frame);
    if sum != seg.checksum {
        return Err(corrupt(format!(
            "{}: checksum mismatch at offset {} (stored {:016x}, computed {sum:016x})",
            seg.path, seg.offset, seg.checksum
        )));
    }
    segment::decode(frame).map_err(|e| corrupt(format!("{}: {e}", seg.path)))
}
