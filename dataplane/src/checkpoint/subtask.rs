//! A subtask's side of checkpointing: what its operators hand in when a barrier passes through
//! the chain, what they read back when they are restored, and who is told when a checkpoint
//! completes.
//!
//! The runtime calls [`SubtaskCheckpoint::begin`] just before a barrier enters the chain and
//! [`SubtaskCheckpoint::finish`] once it has left it: everything between is the synchronous part
//! of the snapshot (operators serialize their changed state). Compression and the upload happen
//! elsewhere ([`CheckpointServices::submit`], on the TaskManager's runtime), so the subtask goes
//! on processing while its snapshot is written.
//!
//! Keyed state is handed in per key group, the unit of redistribution. A checkpoint whose base
//! is the last snapshot this subtask took (the coordinator only names a completed one) is
//! incremental: key groups that did not change since are not serialized again, their segment in
//! the base is referenced instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use mesoflow_proto::checkpoint::KeyGroupState;
use parking_lot::Mutex;

use crate::error::{EngineError, Result};
use crate::key_groups::KeyGroupRange;
use crate::plan::SubtaskId;

/// The checkpoint id the coordinator sends once a job has finished: sinks commit everything
/// they still hold.
pub const FINAL_CHECKPOINT: u64 = u64::MAX;

/// What the TaskManager knows of a triggered checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerInfo {
    /// Write every key group (savepoints, first checkpoints).
    pub full: bool,
    /// The completed checkpoint this one may reference unchanged segments of (0: none).
    pub base: u64,
    /// A savepoint.
    pub savepoint: bool,
}

/// Serializes one key group later, off the task thread (`None`: empty, nothing to store).
pub type DeferredWrite = Arc<dyn Fn() -> Result<Option<Vec<u8>>> + Send + Sync>;

/// One key group's state in a snapshot.
#[derive(Clone)]
pub enum KeyGroupPiece {
    /// Serialized now (raw, uncompressed).
    Written(Vec<u8>),
    /// Frozen at the barrier, serialized by whoever uploads the snapshot
    /// ([`SubtaskSnapshot::serialize_deferred`]); the task thread only froze it.
    Deferred(DeferredWrite),
    /// Unchanged since the base checkpoint: its segment there.
    Unchanged(KeyGroupState),
}

impl std::fmt::Debug for KeyGroupPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Written(b) => f.debug_tuple("Written").field(&b.len()).finish(),
            Self::Deferred(_) => f.write_str("Deferred"),
            Self::Unchanged(h) => f.debug_tuple("Unchanged").field(h).finish(),
        }
    }
}

/// Keyed state of one operator's key group.
#[derive(Debug, Clone)]
pub struct KeyedPart {
    /// The operator's id.
    pub operator_id: String,
    /// Name of the state within the operator.
    pub state_name: String,
    /// Absolute key group.
    pub key_group: u32,
    /// The bytes, or where they already are.
    pub piece: KeyGroupPiece,
}

/// Non-keyed state of one operator instance (a source position, a sink's pending files).
#[derive(Debug, Clone)]
pub struct OperatorPart {
    /// The operator's id.
    pub operator_id: String,
    /// Name of the state within the operator.
    pub state_name: String,
    /// Raw bytes.
    pub bytes: Vec<u8>,
}

/// Parallelism of an operator when it was snapshotted (it goes into the metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorShape {
    /// Parallelism.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
}

/// Everything one subtask handed in for one checkpoint.
#[derive(Debug, Clone)]
pub struct SubtaskSnapshot {
    /// Which subtask.
    pub subtask: SubtaskId,
    /// Which checkpoint.
    pub checkpoint_id: u64,
    /// Shapes of the operators that handed in state, by id.
    pub shapes: BTreeMap<String, OperatorShape>,
    /// Keyed state by key group.
    pub keyed: Vec<KeyedPart>,
    /// Operator state.
    pub operator: Vec<OperatorPart>,
    /// How long the synchronous part paused the subtask.
    pub sync_millis: u64,
    /// The subtask's source had reached the end of its input before the barrier.
    pub input_ended: bool,
}

impl SubtaskSnapshot {
    /// Serializes the key groups frozen at the barrier (the asynchronous part of a snapshot;
    /// the uploader calls it off the task thread). Empty ones are dropped.
    pub fn serialize_deferred(&mut self) -> Result<()> {
        let mut out = Vec::with_capacity(self.keyed.len());
        for mut part in std::mem::take(&mut self.keyed) {
            if let KeyGroupPiece::Deferred(write) = &part.piece {
                match write()? {
                    Some(bytes) => part.piece = KeyGroupPiece::Written(bytes),
                    None => continue,
                }
            }
            out.push(part);
        }
        self.keyed = out;
        Ok(())
    }
}

/// The TaskManager's services to its subtasks' checkpoints.
pub trait CheckpointServices: Send + Sync {
    /// What was triggered for checkpoint `id`; `None` if the TaskManager never heard of it.
    fn trigger(&self, checkpoint_id: u64) -> Option<TriggerInfo>;
    /// Uploads a snapshot and acknowledges it (or declines it if the upload fails).
    fn submit(&self, snapshot: SubtaskSnapshot);
    /// The subtask cannot take its part of checkpoint `id`.
    fn decline(&self, subtask: SubtaskId, checkpoint_id: u64, reason: String);
    /// The subtask's source reached the end of its input. True when the source must then wait
    /// for the job's final checkpoint before it ends its stream (the job checkpoints into a
    /// storage), so that what it emitted last is committed exactly once.
    fn input_ended(&self, subtask: SubtaskId) -> bool {
        let _ = subtask;
        false
    }
}

/// One restored keyed state: key group -> (raw bytes, where they lie).
pub type RestoredKeyGroups = BTreeMap<u32, (Vec<u8>, KeyGroupState)>;

/// Restored state, decoded from its segments, for the subtasks of one TaskManager.
#[derive(Debug, Default)]
pub struct RestoredState {
    /// The checkpoint or savepoint it comes from.
    pub checkpoint_id: u64,
    /// True when it lies in this job's checkpoint root, so later checkpoints may reference its
    /// segments; false for a savepoint (self-contained, owned by the user).
    pub shared: bool,
    /// Keyed state: (operator, state) -> key group -> (raw bytes, where they lie).
    pub keyed: HashMap<(String, String), RestoredKeyGroups>,
    /// Operator state: (operator, state) -> snapshotted subtask -> raw bytes.
    pub operator: HashMap<(String, String), BTreeMap<u32, Vec<u8>>>,
    /// Parallelism of each operator when it was snapshotted.
    pub parallelism: HashMap<String, u32>,
}

type CompleteHook = Box<dyn FnMut(u64) -> Result<()> + Send>;

#[derive(Default)]
struct Collect {
    /// The checkpoint whose barrier is passing through the chain.
    current: Option<(u64, TriggerInfo, Instant)>,
    shapes: BTreeMap<String, OperatorShape>,
    keyed: Vec<KeyedPart>,
    operator: Vec<OperatorPart>,
    /// The last snapshot handed in (or restored from), and where each key group of it lies.
    last_snapshot: u64,
    last_handles: HashMap<(String, String, u32), KeyGroupState>,
    /// Handles of snapshots handed in but not yet known complete, by checkpoint.
    pending_handles: BTreeMap<u64, HashMap<(String, String, u32), KeyGroupState>>,
    /// The subtask's source reached the end of its input.
    input_ended: bool,
    /// Key groups serialized by the snapshot being collected.
    written: HashSet<(String, String, u32)>,
    /// Key groups serialized by snapshots taken after `last_snapshot`, by checkpoint. Each
    /// snapshot cleared the stores' changed flags, so until one of them is uploaded and
    /// becomes the base, these key groups differ from the base although their flags are clear.
    written_since_last: BTreeMap<u64, HashSet<(String, String, u32)>>,
    hooks: Vec<CompleteHook>,
}

struct Inner {
    subtask: SubtaskId,
    services: Option<Arc<dyn CheckpointServices>>,
    restored: Option<Arc<RestoredState>>,
    collect: Mutex<Collect>,
}

/// A subtask's checkpointing: shared by the operators of its chain and its driver loop.
#[derive(Clone)]
pub struct SubtaskCheckpoint(Arc<Inner>);

impl std::fmt::Debug for SubtaskCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubtaskCheckpoint")
            .field("subtask", &self.0.subtask)
            .field("enabled", &self.0.services.is_some())
            .field(
                "restored",
                &self.0.restored.as_ref().map(|r| r.checkpoint_id),
            )
            .finish()
    }
}

impl SubtaskCheckpoint {
    /// Checkpointing of subtask `subtask`: `services` to upload to (none: the job does not
    /// checkpoint), `restored` state to start from.
    pub fn new(
        subtask: SubtaskId,
        services: Option<Arc<dyn CheckpointServices>>,
        restored: Option<Arc<RestoredState>>,
    ) -> Self {
        let mut collect = Collect::default();
        if let Some(r) = restored.as_ref().filter(|r| r.shared) {
            collect.last_snapshot = r.checkpoint_id;
        }
        Self(Arc::new(Inner {
            subtask,
            services,
            restored,
            collect: Mutex::new(collect),
        }))
    }

    /// No checkpoints, nothing restored (tests, jobs without checkpointing).
    pub fn disabled() -> Self {
        Self::new(SubtaskId { chain: 0, index: 0 }, None, None)
    }

    /// True when the job takes checkpoints.
    pub fn enabled(&self) -> bool {
        self.0.services.is_some()
    }

    /// The subtask's source reached the end of its input: later snapshots say so. True when
    /// the source must wait for the job's final checkpoint before it ends its stream.
    pub fn input_ended(&self) -> bool {
        self.0.collect.lock().input_ended = true;
        self.0
            .services
            .as_ref()
            .is_some_and(|s| s.input_ended(self.0.subtask))
    }

    /// The checkpoint or savepoint state was restored from.
    pub fn restored_from(&self) -> Option<u64> {
        self.0.restored.as_ref().map(|r| r.checkpoint_id)
    }

    /// A barrier of checkpoint `id` is about to enter the chain. False if this checkpoint
    /// cannot be taken (unknown to the TaskManager: it was declined).
    pub fn begin(&self, checkpoint_id: u64) -> bool {
        let Some(services) = &self.0.services else {
            return false;
        };
        let Some(trigger) = services.trigger(checkpoint_id) else {
            services.decline(
                self.0.subtask,
                checkpoint_id,
                "the TaskManager does not know this checkpoint".into(),
            );
            return false;
        };
        let mut c = self.0.collect.lock();
        c.current = Some((checkpoint_id, trigger, Instant::now()));
        c.keyed.clear();
        c.operator.clear();
        c.shapes.clear();
        c.written.clear();
        true
    }

    /// The barrier left the chain: hands the snapshot to the TaskManager for upload.
    pub fn finish(&self, checkpoint_id: u64) {
        let Some(services) = &self.0.services else {
            return;
        };
        let snapshot = {
            let mut c = self.0.collect.lock();
            let Some((id, _, started)) = c.current.take() else {
                return;
            };
            if id != checkpoint_id {
                return;
            }
            let keyed = std::mem::take(&mut c.keyed);
            let handles: HashMap<_, _> = keyed
                .iter()
                .filter_map(|p| match &p.piece {
                    KeyGroupPiece::Unchanged(h) => Some((
                        (p.operator_id.clone(), p.state_name.clone(), p.key_group),
                        h.clone(),
                    )),
                    KeyGroupPiece::Written(_) | KeyGroupPiece::Deferred(_) => None,
                })
                .collect();
            c.pending_handles.insert(id, handles);
            let written = std::mem::take(&mut c.written);
            c.written_since_last.insert(id, written);
            SubtaskSnapshot {
                subtask: self.0.subtask,
                checkpoint_id: id,
                shapes: std::mem::take(&mut c.shapes),
                keyed,
                operator: std::mem::take(&mut c.operator),
                sync_millis: started.elapsed().as_millis() as u64,
                input_ended: c.input_ended,
            }
        };
        services.submit(snapshot);
    }

    /// The TaskManager uploaded this subtask's part of `checkpoint_id`: where each written key
    /// group now lies (what a later incremental checkpoint references).
    pub fn uploaded(&self, checkpoint_id: u64, written: Vec<(String, String, KeyGroupState)>) {
        let mut c = self.0.collect.lock();
        let Some(mut handles) = c.pending_handles.remove(&checkpoint_id) else {
            return;
        };
        for (op, state, h) in written {
            handles.insert((op, state, h.key_group), h);
        }
        // Older pending snapshots can no longer be a base: only the newest upload is.
        c.pending_handles.retain(|id, _| *id > checkpoint_id);
        if checkpoint_id > c.last_snapshot {
            c.last_snapshot = checkpoint_id;
            c.last_handles = handles;
            c.written_since_last.retain(|id, _| *id > checkpoint_id);
        }
    }

    /// True when key groups unchanged since the base of the current checkpoint may be
    /// referenced instead of written.
    fn incremental(c: &Collect) -> bool {
        matches!(&c.current, Some((_, t, _)) if !t.full && !t.savepoint && t.base != 0 && t.base == c.last_snapshot)
    }

    /// True while a barrier passes through the chain: operators hand in state now (and only
    /// then may a store clear its changed flags).
    pub fn collecting(&self) -> bool {
        self.0.collect.lock().current.is_some()
    }

    /// Hands in the keyed state `state_name` of `op` over `range`: for each key group,
    /// `changed(kg)` says whether it changed since the last snapshot, `write(kg)` serializes it
    /// (`None`: empty, nothing to store).
    pub fn snapshot_keyed(
        &self,
        op: &OperatorIds,
        state_name: &str,
        changed: impl Fn(u32) -> bool,
        mut write: impl FnMut(u32) -> Result<Option<Vec<u8>>>,
    ) -> Result<()> {
        self.snapshot_pieces(op, state_name, changed, |kg| {
            Ok(write(kg)?.map(KeyGroupPiece::Written))
        })
    }

    /// [`snapshot_keyed`](Self::snapshot_keyed) whose `piece(kg)` may defer the serialization
    /// ([`KeyGroupPiece::Deferred`]) to the uploader.
    pub fn snapshot_pieces(
        &self,
        op: &OperatorIds,
        state_name: &str,
        changed: impl Fn(u32) -> bool,
        mut piece: impl FnMut(u32) -> Result<Option<KeyGroupPiece>>,
    ) -> Result<()> {
        let mut c = self.0.collect.lock();
        if c.current.is_none() {
            return Ok(());
        }
        let incremental = Self::incremental(&c);
        c.shapes.insert(op.id.clone(), op.shape);
        for kg in op.key_groups.start..=op.key_groups.end {
            let key = (op.id.clone(), state_name.to_owned(), kg);
            let same_as_base =
                !changed(kg) && !c.written_since_last.values().any(|w| w.contains(&key));
            if incremental && same_as_base {
                if let Some(h) = c.last_handles.get(&key) {
                    let piece = KeyGroupPiece::Unchanged(h.clone());
                    c.keyed.push(KeyedPart {
                        operator_id: op.id.clone(),
                        state_name: state_name.to_owned(),
                        key_group: kg,
                        piece,
                    });
                    continue;
                }
                // Unchanged and absent from the base: empty then, and empty now.
                continue;
            }
            c.written.insert(key);
            if let Some(piece) = piece(kg)? {
                c.keyed.push(KeyedPart {
                    operator_id: op.id.clone(),
                    state_name: state_name.to_owned(),
                    key_group: kg,
                    piece,
                });
            }
        }
        Ok(())
    }

    /// Hands in non-keyed state of `op`'s instance in this subtask.
    pub fn snapshot_operator(&self, op: &OperatorIds, state_name: &str, bytes: Vec<u8>) {
        let mut c = self.0.collect.lock();
        if c.current.is_none() {
            return;
        }
        c.shapes.insert(op.id.clone(), op.shape);
        c.operator.push(OperatorPart {
            operator_id: op.id.clone(),
            state_name: state_name.to_owned(),
            bytes,
        });
    }

    /// The restored key groups of `op`'s state `state_name` that belong to this subtask, raw.
    /// Remembers where they lie, so the next incremental checkpoint can reference them.
    pub fn restored_keyed(&self, op: &OperatorIds, state_name: &str) -> Vec<(u32, Vec<u8>)> {
        let Some(r) = &self.0.restored else {
            return Vec::new();
        };
        let Some(groups) = r.keyed.get(&(op.id.clone(), state_name.to_owned())) else {
            return Vec::new();
        };
        let mut c = self.0.collect.lock();
        let mut out = Vec::new();
        for (&kg, (bytes, handle)) in groups.range(op.key_groups.start..=op.key_groups.end) {
            if r.shared {
                c.last_handles
                    .insert((op.id.clone(), state_name.to_owned(), kg), handle.clone());
            }
            out.push((kg, bytes.clone()));
        }
        out
    }

    /// The restored operator state `state_name` of `op` that this instance takes over: its
    /// own when the parallelism is unchanged; otherwise that of every snapshotted subtask `j`
    /// with `j % parallelism == index`.
    pub fn restored_operator(&self, op: &OperatorIds, state_name: &str) -> Vec<(u32, Vec<u8>)> {
        let Some(r) = &self.0.restored else {
            return Vec::new();
        };
        let Some(parts) = r.operator.get(&(op.id.clone(), state_name.to_owned())) else {
            return Vec::new();
        };
        let p = op.shape.parallelism.max(1);
        parts
            .iter()
            .filter(|(j, _)| *j % p == op.subtask)
            .map(|(j, b)| (*j, b.clone()))
            .collect()
    }

    /// The restored operator state `state_name` of every snapshotted instance of `op` (for
    /// operators that redistribute it themselves when rescaled).
    pub fn restored_operator_all(&self, op: &str, state_name: &str) -> Vec<(u32, Vec<u8>)> {
        let Some(r) = &self.0.restored else {
            return Vec::new();
        };
        r.operator
            .get(&(op.to_owned(), state_name.to_owned()))
            .map(|parts| parts.iter().map(|(j, b)| (*j, b.clone())).collect())
            .unwrap_or_default()
    }

    /// Names of the restored operator states of `op` (every snapshotted subtask's).
    pub fn restored_state_names(&self, op: &str) -> Vec<String> {
        let Some(r) = &self.0.restored else {
            return Vec::new();
        };
        r.operator
            .keys()
            .filter(|(o, _)| o == op)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Parallelism of `op` in the restored snapshot, if it has state there.
    pub fn restored_parallelism(&self, op: &str) -> Option<u32> {
        self.0.restored.as_ref()?.parallelism.get(op).copied()
    }

    /// Registers `hook`, called with the id of every checkpoint that completes (and with
    /// [`FINAL_CHECKPOINT`] when the job finished).
    pub fn on_complete(&self, hook: impl FnMut(u64) -> Result<()> + Send + 'static) {
        self.0.collect.lock().hooks.push(Box::new(hook));
    }

    /// Checkpoint `id` completed: runs the hooks.
    pub fn notify_complete(&self, checkpoint_id: u64) -> Result<()> {
        let mut hooks = std::mem::take(&mut self.0.collect.lock().hooks);
        let mut result = Ok(());
        for h in &mut hooks {
            if let Err(e) = h(checkpoint_id) {
                result = Err(e);
                break;
            }
        }
        let mut c = self.0.collect.lock();
        hooks.append(&mut c.hooks);
        c.hooks = hooks;
        result
    }
}

/// What identifies an operator instance's state in a snapshot.
#[derive(Debug, Clone)]
pub struct OperatorIds {
    /// The operator's id.
    pub id: String,
    /// This instance.
    pub subtask: u32,
    /// Its key groups.
    pub key_groups: KeyGroupRange,
    /// Parallelism and key groups of the operator.
    pub shape: OperatorShape,
}

impl OperatorIds {
    /// The ids of the operator whose context is `ctx`.
    pub fn of(ctx: &crate::context::TaskContext) -> Self {
        Self {
            id: ctx.operator_id.clone(),
            subtask: ctx.subtask,
            key_groups: ctx.key_groups,
            shape: OperatorShape {
                parallelism: ctx.parallelism,
                max_parallelism: ctx.max_parallelism,
            },
        }
    }
}

/// A restore failure: which operator and state, and why.
pub fn restore_error(op: &OperatorIds, state: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::State {
        operator: op.id.clone(),
        message: format!("cannot restore '{state}': {why}"),
    }
}
