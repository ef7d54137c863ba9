//! Keyed state, organised by key group so that it can be snapshotted and redistributed per key
//! group when a job is rescaled.
//!
//! [`KeyedStore`] holds one operator instance's per-key values, one `foldhash` hash map per key
//! group owned by the subtask. It has two backends (Flink's `state.backend.type`):
//!
//! - `heap`: the maps are the state.
//! - `mmap`: the maps are a bounded hot tier, and values evicted from it go to a cold tier: an
//!   append-only log of rkyv archives in a file-backed memory map ([`cold::ColdLog`]), with a
//!   per-key-group index `key -> offset` of the latest version. State larger than the memory
//!   budget then lives in the page cache and on disk, where the kernel can write it back. An
//!   access to a cold key promotes it to the hot tier (the archive is validated in place).
//!
//! Design choices of the `mmap` backend, and why:
//! - One store type for every operator, and the heap path unchanged: a cold tier is an
//!   `Option`, looked at only when a key misses the hot map.
//! - The budget is split evenly over the key groups (keys hash uniformly into them), so a full
//!   key group evicts from itself: no global LRU list to maintain per access. A full group
//!   evicts an eighth of its entries in hash-table order, which is random with respect to
//!   access: for the uniform and unpredictable keys of stream jobs, as good as LRU and free.
//! - Hot and cold are disjoint: a promoted key's cold record becomes garbage. When garbage
//!   exceeds the live bytes (and a file step), the log is compacted into a new file.
//! - The index stays in memory (`size_of::<K>() + 8` bytes and the table's overhead per cold
//!   key): values, usually the bulk of state (window slices, lists, process function state),
//!   go to disk.
//! - An eviction does not change a key group's contents, so it leaves the changed flags of
//!   incremental checkpoints alone; modifying a promoted value sets them as usual.
//!
//! [`ValueState`], [`ListState`] and [`MapState`] are the per-key state primitives a keyed
//! process function composes into its own state struct.

pub mod cold;
pub mod primitives;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::checkpoint::codec::{decode_entries, encode_entries};
use crate::checkpoint::subtask::{KeyGroupPiece, OperatorIds, SubtaskCheckpoint, restore_error};
use crate::context::TaskContext;
use crate::element::Data;
use crate::error::{EngineError, Result};
use crate::key_groups::{Key, KeyGroupRange, key_hash};
use cold::ColdLog;
pub use cold::StateError;

/// Hasher of in-memory maps (not of key groups: those use the stable hash).
pub type FastState = foldhash::fast::RandomState;

/// A hash map with the fast in-memory hasher.
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// Where keyed state lives (Flink's `state.backend.type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// In hash maps on the heap.
    #[default]
    Heap,
    /// A bounded hot tier on the heap, the rest in memory-mapped files.
    Mmap {
        /// Directory of the files (a TaskManager's `<work dir>/state`).
        dir: PathBuf,
        /// Bytes of hot entries each keyed operator instance keeps on the heap.
        memory_budget: usize,
        /// First step a state file grows by (then doubled up to [`cold::MAX_STEP`]).
        file_step: u64,
    },
}

impl StateBackend {
    /// Default memory budget of one keyed operator instance.
    pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;
    /// Default first growth step of a state file.
    pub const DEFAULT_FILE_STEP: u64 = 64 << 20;

    /// The `mmap` backend with files in `dir` and the default growth step.
    pub fn mmap(dir: impl Into<PathBuf>, memory_budget: usize) -> Self {
        Self::Mmap {
            dir: dir.into(),
            memory_budget,
            file_step: Self::DEFAULT_FILE_STEP,
        }
    }

    /// The name of the backend, as in the configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Heap => "heap",
            Self::Mmap { .. } => "mmap",
        }
    }
}

type EncodeFn<V> = Box<dyn Fn(&V, AlignedVec) -> Result<AlignedVec, StateError> + Send>;
type DecodeFn<V> = Box<dyn Fn(&[u8]) -> Result<V, String> + Send>;

/// How a store's values are written to and read from the cold tier: through a serializable
/// form `S`, because a value is not always [`Data`] itself (window slices).
pub struct StateCodec<V> {
    encode: EncodeFn<V>,
    decode: DecodeFn<V>,
}

impl<V> std::fmt::Debug for StateCodec<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCodec")
    }
}

impl<V: 'static> StateCodec<V> {
    /// Values stored as `to(value)`, read back as `from(stored)`.
    pub fn new<S: Data>(
        to: impl Fn(&V) -> S + Send + 'static,
        from: impl Fn(S) -> V + Send + 'static,
    ) -> Self {
        Self {
            encode: Box::new(move |v, buf| encode_one(&to(v), buf)),
            decode: Box::new(move |bytes| decode_one::<S>(bytes).map(&from)),
        }
    }
}

impl<V: Data> StateCodec<V> {
    /// Values stored as themselves (no conversion, no copy).
    pub fn identity() -> Self {
        Self {
            encode: Box::new(|v, buf| encode_one(v, buf)),
            decode: Box::new(decode_one::<V>),
        }
    }
}

fn encode_one<S: Data>(s: &S, mut buf: AlignedVec) -> Result<AlignedVec, StateError> {
    buf.clear();
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(s, buf)
        .map_err(|e| StateError::Encode(e.to_string()))
}

fn decode_one<S: Data>(bytes: &[u8]) -> Result<S, String> {
    let archived = rkyv::access::<S::Archived, rancor::Error>(bytes)
        .map_err(|e| format!("not a valid archive: {e}"))?;
    rkyv::deserialize::<S, rancor::Error>(archived).map_err(|e| format!("cannot deserialize: {e}"))
}

/// Bytes a hot entry is assumed to take besides its key and value (hash table control bytes
/// and load-factor slack); values' own heap allocations are not counted.
const ENTRY_OVERHEAD: usize = 16;

/// The cold tier of a store.
struct Cold<K, V> {
    log: ColdLog,
    /// Per key group (slot): key -> offset of its latest record.
    index: Vec<FastMap<K, u64>>,
    codec: StateCodec<V>,
    /// Hot entries a key group may hold.
    group_limit: usize,
    /// Reused serialization buffer.
    buf: AlignedVec,
    dir: PathBuf,
    name: String,
    evictions: u64,
    promotions: u64,
    compactions: u64,
}

impl<K: Key, V> Cold<K, V> {
    fn decode(&self, off: u64) -> Result<V, StateError> {
        let bytes = self.log.read(off)?;
        (self.codec.decode)(bytes).map_err(|why| self.log.corrupt(off, why))
    }

    /// Removes the cold value of `key` and returns it.
    fn take(&mut self, slot: usize, key: &K) -> Result<Option<V>, StateError> {
        let Some(&off) = self.index[slot].get(key) else {
            return Ok(None);
        };
        let v = self.decode(off)?;
        self.index[slot].remove(key);
        self.log.release(off)?;
        Ok(Some(v))
    }

    /// Writes `v` as the cold value of `key`.
    fn put(&mut self, slot: usize, key: &K, v: &V) -> Result<(), StateError> {
        let buf = (self.codec.encode)(v, std::mem::take(&mut self.buf))?;
        let off = self.log.append(&buf);
        self.buf = buf;
        if let Some(old) = self.index[slot].insert(key.clone(), off?) {
            self.log.release(old)?;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.index.iter().map(|i| i.len()).sum()
    }

    /// Rewrites the live records into a new file once garbage outweighs them.
    fn maybe_compact(&mut self) -> Result<(), StateError> {
        let (live, dead) = (self.log.live_bytes(), self.log.dead_bytes());
        if dead <= live || dead < self.log.first_step() {
            return Ok(());
        }
        let mut next = ColdLog::create(&self.dir, &self.name, self.log.first_step())?;
        let mut moved = Vec::with_capacity(self.len());
        for idx in &self.index {
            for &off in idx.values() {
                moved.push(next.append(self.log.read(off)?)?);
            }
        }
        // Same maps, unchanged since: the same iteration order.
        let mut moved = moved.into_iter();
        for idx in &mut self.index {
            for off in idx.values_mut() {
                if let Some(n) = moved.next() {
                    *off = n;
                }
            }
        }
        tracing::debug!(
            from = %self.log.path().display(),
            to = %next.path().display(),
            live,
            dead,
            "compacted a cold state file"
        );
        self.log = next;
        self.compactions += 1;
        Ok(())
    }
}

/// Runs `f` on the cold value at `*off`; writes it back if it changed. False: drop it.
fn retain_cold<K, V>(
    log: &mut ColdLog,
    codec: &StateCodec<V>,
    buf: &mut AlignedVec,
    k: &K,
    off: &mut u64,
    f: &mut impl FnMut(&K, &mut V) -> bool,
) -> Result<bool, StateError> {
    let mut v = (codec.decode)(log.read(*off)?).map_err(|why| log.corrupt(*off, why))?;
    if !f(k, &mut v) {
        log.release(*off)?;
        return Ok(false);
    }
    let out = (codec.encode)(&v, std::mem::take(buf))?;
    if log.read(*off)? != &out[..] {
        let new = log.append(&out)?;
        log.release(*off)?;
        *off = new;
    }
    *buf = out;
    Ok(true)
}

/// Counters of a store's cold tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColdStats {
    /// Entries written to the cold tier.
    pub evictions: u64,
    /// Entries read back into the hot tier.
    pub promotions: u64,
    /// Log compactions.
    pub compactions: u64,
    /// Size of the state file.
    pub file_len: u64,
}

/// Per-key values of one operator, one map per key group of the subtask's range (the hot tier),
/// and with the `mmap` backend a cold tier behind it.
///
/// Each key group has a changed flag, set by every access that may modify it and cleared by a
/// snapshot: an incremental checkpoint writes only the key groups changed since the last one.
///
/// On the heap backend a snapshot freezes the changed key groups instead of serializing them:
/// each map moves into an `Arc` that the uploader serializes off the task thread. The next
/// access to a frozen key group takes its map back, without a copy once the uploader is done
/// with it, or as a copy while the upload still reads it (copy-on-write per key group).
pub struct KeyedStore<K, V> {
    range: KeyGroupRange,
    max_parallelism: u32,
    groups: Vec<FastMap<K, V>>,
    /// Key groups frozen by a snapshot (their slot in `groups` is empty meanwhile).
    frozen: Vec<Option<Arc<FastMap<K, V>>>>,
    frozen_count: usize,
    changed: Vec<bool>,
    cold: Option<Box<Cold<K, V>>>,
}

impl<K, V> std::fmt::Debug for KeyedStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStore")
            .field("range", &self.range)
            .field("hot", &self.groups.iter().map(|g| g.len()).sum::<usize>())
            .field("cold", &self.cold.as_ref().map(|c| &c.log))
            .finish()
    }
}

fn vanished() -> EngineError {
    EngineError::TaskFailed {
        task: "keyed state".into(),
        message: "value vanished after insert".into(),
    }
}

impl<K: Key, V: Clone> KeyedStore<K, V> {
    /// An empty heap store for the key groups in `range`.
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        Self {
            range,
            max_parallelism,
            groups: (0..range.len()).map(|_| FastMap::default()).collect(),
            frozen: (0..range.len()).map(|_| None).collect(),
            frozen_count: 0,
            changed: vec![false; range.len()],
            cold: None,
        }
    }

    /// An empty store on `backend`; `name` starts the names of its files, `codec` writes its
    /// cold values (unused on the heap).
    pub fn with_backend(
        range: KeyGroupRange,
        max_parallelism: u32,
        backend: &StateBackend,
        name: &str,
        codec: StateCodec<V>,
    ) -> Result<Self> {
        let mut store = Self::new(range, max_parallelism);
        if let StateBackend::Mmap {
            dir,
            memory_budget,
            file_step,
        } = backend
        {
            let entry = size_of::<K>() + size_of::<V>() + ENTRY_OVERHEAD;
            let group_limit = (memory_budget / entry / store.groups.len().max(1)).max(1);
            store.cold = Some(Box::new(Cold {
                log: ColdLog::create(dir, name, *file_step)?,
                index: (0..range.len()).map(|_| FastMap::default()).collect(),
                codec,
                group_limit,
                buf: AlignedVec::new(),
                dir: dir.clone(),
                name: name.to_owned(),
                evictions: 0,
                promotions: 0,
                compactions: 0,
            }));
        }
        Ok(store)
    }

    /// The store of the operator instance `ctx`, on the backend its configuration names.
    pub fn for_operator(ctx: &TaskContext, codec: StateCodec<V>) -> Result<Self> {
        Self::with_backend(
            ctx.key_groups,
            ctx.max_parallelism,
            &ctx.state_backend,
            &format!("{}-{}", ctx.operator_id, ctx.subtask),
            codec,
        )
    }

    /// The key groups this store holds.
    pub fn range(&self) -> KeyGroupRange {
        self.range
    }

    /// Index of the key's group in `groups`; an error if the key does not belong here (a
    /// partitioning bug upstream, never silently absorbed).
    #[inline]
    pub fn slot(&self, key: &K) -> Result<usize> {
        let kg = key_hash(key) % self.max_parallelism;
        if !self.range.contains(kg) {
            return Err(EngineError::TaskFailed {
                task: "keyed state".into(),
                message: format!(
                    "key group {kg} is outside this subtask's range {}..={}",
                    self.range.start, self.range.end
                ),
            });
        }
        Ok((kg - self.range.start) as usize)
    }

    /// Makes room for one more hot entry in `slot` (mmap backend): evicts a batch to the cold
    /// tier when the key group is at its limit.
    fn make_room(&mut self, slot: usize) -> Result<()> {
        let Some(cold) = self.cold.as_deref_mut() else {
            return Ok(());
        };
        let map = &mut self.groups[slot];
        if map.len() < cold.group_limit {
            return Ok(());
        }
        let batch = (cold.group_limit / 8).max(1);
        let victims: Vec<(K, V)> = map.extract_if(|_, _| true).take(batch).collect();
        let mut victims = victims.into_iter();
        while let Some((k, v)) = victims.next() {
            if let Err(e) = cold.put(slot, &k, &v) {
                // Nothing is lost: what could not be written stays hot.
                map.insert(k, v);
                map.extend(victims);
                return Err(e.into());
            }
            cold.evictions += 1;
        }
        cold.maybe_compact()?;
        Ok(())
    }

    /// Moves the cold value of `key` (if any) to the hot tier; true if `key` is now hot.
    fn promote(&mut self, slot: usize, key: &K) -> Result<bool> {
        self.thaw(slot);
        if self.groups[slot].contains_key(key) {
            return Ok(true);
        }
        match self.cold.as_deref() {
            Some(c) if c.index[slot].contains_key(key) => {}
            _ => return Ok(false),
        }
        self.make_room(slot)?;
        let Some(cold) = self.cold.as_deref_mut() else {
            return Ok(false);
        };
        let Some(v) = cold.take(slot, key)? else {
            return Ok(false);
        };
        cold.promotions += 1;
        self.groups[slot].insert(key.clone(), v);
        Ok(true)
    }

    /// Runs `f` on the value of `key` (`None` when it has none); a value `f` returns becomes the
    /// key's value. Sets the key group's changed flag. One hash lookup when the key is hot: the
    /// hot path of keyed operators.
    #[inline]
    pub fn upsert<R>(
        &mut self,
        key: &K,
        f: impl FnOnce(Option<&mut V>) -> (Option<V>, R),
    ) -> Result<R> {
        let slot = self.slot(key)?;
        self.changed[slot] = true;
        self.thaw(slot);
        if let Some(v) = self.groups[slot].get_mut(key) {
            let (new, r) = f(Some(&mut *v));
            if let Some(new) = new {
                *v = new;
            }
            return Ok(r);
        }
        if self.cold.is_some() && self.promote(slot, key)? {
            let v = self.groups[slot].get_mut(key).ok_or_else(vanished)?;
            let (new, r) = f(Some(&mut *v));
            if let Some(new) = new {
                *v = new;
            }
            return Ok(r);
        }
        let (new, r) = f(None);
        if let Some(new) = new {
            self.make_room(slot)?;
            self.groups[slot].insert(key.clone(), new);
        }
        Ok(r)
    }

    /// The value of `key`, created with `init` if absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: &K, init: impl FnOnce() -> V) -> Result<&mut V> {
        let slot = self.slot(key)?;
        self.changed[slot] = true;
        self.thaw(slot);
        if !self.promote(slot, key)? {
            self.make_room(slot)?;
            self.groups[slot].insert(key.clone(), init());
        }
        self.groups[slot].get_mut(key).ok_or_else(vanished)
    }

    /// The value of `key`, if any (a cold value is promoted, hence `&mut self`).
    pub fn get(&mut self, key: &K) -> Result<Option<&V>> {
        let Ok(slot) = self.slot(key) else {
            return Ok(None);
        };
        self.promote(slot, key)?;
        Ok(self.groups[slot].get(key))
    }

    /// Removes the value of `key`.
    pub fn remove(&mut self, key: &K) -> Result<Option<V>> {
        let Ok(slot) = self.slot(key) else {
            return Ok(None);
        };
        self.changed[slot] = true;
        self.thaw(slot);
        if let Some(v) = self.groups[slot].remove(key) {
            return Ok(Some(v));
        }
        match self.cold.as_deref_mut() {
            Some(c) => Ok(c.take(slot, key)?),
            None => Ok(None),
        }
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.hot_len() + self.cold.as_ref().map_or(0, |c| c.len())
    }

    /// True when no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of keys whose value is on the heap.
    pub fn hot_len(&self) -> usize {
        self.hot_groups().map(|g| g.len()).sum()
    }

    /// The hot maps, frozen or not.
    fn hot_groups(&self) -> impl Iterator<Item = &FastMap<K, V>> {
        self.groups
            .iter()
            .zip(&self.frozen)
            .map(|(g, f)| f.as_deref().unwrap_or(g))
    }

    /// Takes back the map of a frozen key group before it is accessed.
    #[inline]
    fn thaw(&mut self, slot: usize) {
        if self.frozen_count > 0 {
            self.thaw_slow(slot);
        }
    }

    #[cold]
    fn thaw_slow(&mut self, slot: usize) {
        if let Some(map) = self.frozen.get_mut(slot).and_then(Option::take) {
            self.frozen_count -= 1;
            // The upload is done with it (no copy), or still reads it (copy on write).
            self.groups[slot] = Arc::try_unwrap(map).unwrap_or_else(|shared| (*shared).clone());
        }
    }

    /// Most keys the hot tier holds (`None`: unbounded, the heap backend).
    pub fn hot_capacity(&self) -> Option<usize> {
        self.cold
            .as_ref()
            .map(|c| c.group_limit * self.groups.len())
    }

    /// Counters of the cold tier (`None` on the heap backend).
    pub fn cold_stats(&self) -> Option<ColdStats> {
        self.cold.as_ref().map(|c| ColdStats {
            evictions: c.evictions,
            promotions: c.promotions,
            compactions: c.compactions,
            file_len: c.log.file_len(),
        })
    }

    /// Calls `f` on every entry, hot and cold (cold values are decoded for the call).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) -> Result<()> {
        for g in self.hot_groups() {
            for (k, v) in g {
                f(k, v);
            }
        }
        if let Some(cold) = self.cold.as_deref() {
            for idx in &cold.index {
                for (k, &off) in idx {
                    f(k, &cold.decode(off)?);
                }
            }
        }
        Ok(())
    }

    /// Visits every entry, hot and cold, keeping those for which `f` returns true. A cold value
    /// that `f` modified is written back.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) -> Result<()> {
        for slot in 0..self.groups.len() {
            self.thaw(slot);
        }
        for (g, changed) in self.groups.iter_mut().zip(&mut self.changed) {
            if !g.is_empty() {
                // `f` may modify any value it visits.
                *changed = true;
                g.retain(|k, v| f(k, v));
            }
        }
        let Some(cold) = self.cold.as_deref_mut() else {
            return Ok(());
        };
        let Cold {
            log,
            index,
            codec,
            buf,
            ..
        } = cold;
        let mut failure = None;
        for (idx, changed) in index.iter_mut().zip(&mut self.changed) {
            if idx.is_empty() {
                continue;
            }
            *changed = true;
            idx.retain(|k, off| {
                if failure.is_some() {
                    return true;
                }
                retain_cold(log, codec, buf, k, off, &mut f).unwrap_or_else(|e| {
                    failure = Some(e);
                    true
                })
            });
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        cold.maybe_compact()?;
        Ok(())
    }
}

impl<K: Key + Sync, V: Clone + Send + Sync + 'static> KeyedStore<K, V> {
    /// Hands the store (hot and cold entries) to checkpoint `cp` as state `name` of `op`, each
    /// value converted by `to` into its stored form; clears the changed flags. On the heap
    /// backend the changed key groups are frozen and serialized by the uploader; with a cold
    /// tier they are serialized here.
    pub fn snapshot_as<S: Data>(
        &mut self,
        cp: &SubtaskCheckpoint,
        op: &OperatorIds,
        name: &str,
        to: impl Fn(&V) -> S + Send + Sync + 'static,
    ) -> Result<()> {
        // The flags say what changed since the last snapshot handed in: keep them when no
        // checkpoint is collecting (a declined barrier).
        if !cp.collecting() {
            return Ok(());
        }
        let start = self.range.start;
        let changed = std::mem::replace(&mut self.changed, vec![false; self.groups.len()]);
        if self.cold.is_none() {
            let to = Arc::new(to);
            let (groups, frozen, frozen_count) =
                (&mut self.groups, &mut self.frozen, &mut self.frozen_count);
            return cp.snapshot_pieces(
                op,
                name,
                |kg| changed.get((kg - start) as usize).copied().unwrap_or(true),
                |kg| {
                    let i = (kg - start) as usize;
                    // Unchanged since an earlier snapshot froze it (a full checkpoint): shared.
                    let map = match frozen.get(i) {
                        Some(Some(map)) => map.clone(),
                        Some(None) if !groups[i].is_empty() => {
                            let map = Arc::new(std::mem::take(&mut groups[i]));
                            frozen[i] = Some(map.clone());
                            *frozen_count += 1;
                            map
                        }
                        _ => return Ok(None),
                    };
                    if map.is_empty() {
                        return Ok(None);
                    }
                    let (to, op, name) = (to.clone(), op.clone(), name.to_owned());
                    Ok(Some(KeyGroupPiece::Deferred(Arc::new(move || {
                        let mut keys: Vec<K> = Vec::with_capacity(map.len());
                        let mut values: Vec<S> = Vec::with_capacity(map.len());
                        for (k, v) in map.iter() {
                            keys.push(k.clone());
                            values.push(to(v));
                        }
                        encode_entries(&keys, &values)
                            .map(Some)
                            .map_err(|e| restore_error(&op, &name, e))
                    }))))
                },
            );
        }
        let groups = &self.groups;
        let cold = self.cold.as_deref();
        cp.snapshot_keyed(
            op,
            name,
            |kg| changed.get((kg - start) as usize).copied().unwrap_or(true),
            |kg| {
                let i = (kg - start) as usize;
                let Some(map) = groups.get(i) else {
                    return Ok(None);
                };
                let cold_idx = cold.and_then(|c| c.index.get(i));
                let n = map.len() + cold_idx.map_or(0, |x| x.len());
                if n == 0 {
                    return Ok(None);
                }
                let mut keys: Vec<K> = Vec::with_capacity(n);
                let mut values: Vec<S> = Vec::with_capacity(n);
                for (k, v) in map {
                    keys.push(k.clone());
                    values.push(to(v));
                }
                if let (Some(c), Some(idx)) = (cold, cold_idx) {
                    for (k, &off) in idx {
                        keys.push(k.clone());
                        values.push(to(&c.decode(off)?));
                    }
                }
                encode_entries(&keys, &values)
                    .map(Some)
                    .map_err(|e| restore_error(op, name, e))
            },
        )
    }

    /// Fills the store from the key groups of state `name` of `op` restored in `cp`, each
    /// stored value converted back by `from`. A key found in the wrong key group is an error.
    pub fn restore_as<S: Data>(
        &mut self,
        cp: &SubtaskCheckpoint,
        op: &OperatorIds,
        name: &str,
        from: impl Fn(S) -> V,
    ) -> Result<()> {
        for (kg, bytes) in cp.restored_keyed(op, name) {
            let entries = decode_entries::<K, S>(&bytes).map_err(|e| restore_error(op, name, e))?;
            for (k, s) in entries {
                let slot = self.slot(&k)?;
                if slot as u32 + self.range.start != kg {
                    return Err(restore_error(
                        op,
                        name,
                        format!(
                            "a key of key group {} was stored in key group {kg}",
                            slot as u32 + self.range.start
                        ),
                    ));
                }
                self.thaw(slot);
                self.make_room(slot)?;
                self.groups[slot].insert(k, from(s));
            }
        }
        Ok(())
    }
}

/// A single value per key.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ValueState<V>(Option<V>);

impl<V> Default for ValueState<V> {
    fn default() -> Self {
        Self(None)
    }
}

impl<V> ValueState<V> {
    /// The value, if set.
    pub fn value(&self) -> Option<&V> {
        self.0.as_ref()
    }
    /// Sets the value.
    pub fn update(&mut self, v: V) {
        self.0 = Some(v);
    }
    /// Takes the value out.
    pub fn take(&mut self) -> Option<V> {
        self.0.take()
    }
    /// Clears the value.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// A list of values per key.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ListState<V>(Vec<V>);

impl<V> Default for ListState<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> ListState<V> {
    /// Appends a value.
    pub fn add(&mut self, v: V) {
        self.0.push(v);
    }
    /// The values in insertion order.
    pub fn get(&self) -> &[V] {
        &self.0
    }
    /// Replaces all values.
    pub fn update(&mut self, values: Vec<V>) {
        self.0 = values;
    }
    /// Removes and returns all values.
    pub fn take(&mut self) -> Vec<V> {
        std::mem::take(&mut self.0)
    }
    /// Clears the list.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// A map per key (stored as a plain `HashMap`: the fast hasher's random seed is not state).
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MapState<UK: std::hash::Hash + Eq, UV>(std::collections::HashMap<UK, UV>);

impl<UK: std::hash::Hash + Eq, UV> Default for MapState<UK, UV> {
    fn default() -> Self {
        Self(std::collections::HashMap::default())
    }
}

impl<UK: std::hash::Hash + Eq, UV> MapState<UK, UV> {
    /// The value under `k`.
    pub fn get(&self, k: &UK) -> Option<&UV> {
        self.0.get(k)
    }
    /// Mutable value under `k`, inserted with `init` if absent.
    pub fn entry_or_insert_with(&mut self, k: UK, init: impl FnOnce() -> UV) -> &mut UV {
        self.0.entry(k).or_insert_with(init)
    }
    /// Sets the value under `k`.
    pub fn put(&mut self, k: UK, v: UV) {
        self.0.insert(k, v);
    }
    /// Removes `k`.
    pub fn remove(&mut self, k: &UK) -> Option<UV> {
        self.0.remove(k)
    }
    /// True when `k` has a value.
    pub fn contains(&self, k: &UK) -> bool {
        self.0.contains_key(k)
    }
    /// All entries (no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&UK, &UV)> {
        self.0.iter()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Clears the map.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_groups::key_group_of;

    #[test]
    fn store_keeps_each_key_in_its_key_group() {
        let range = KeyGroupRange::for_subtask(0, 1, 16);
        let mut s = KeyedStore::<u64, u64>::new(range, 16);
        for k in 0..1000u64 {
            *s.get_or_insert_with(&k, || 0).unwrap() += k;
        }
        assert_eq!(s.len(), 1000);
        for (slot, g) in s.groups.iter().enumerate() {
            for (k, v) in g {
                assert_eq!(key_group_of(k, 16), slot as u32);
                assert_eq!(k, v);
            }
        }
    }

    #[test]
    fn store_rejects_keys_of_other_subtasks() {
        let range = KeyGroupRange::for_subtask(0, 2, 128);
        let mut s = KeyedStore::<u64, u64>::new(range, 128);
        let foreign = (0..u64::MAX)
            .find(|k| !range.contains(key_group_of(k, 128)))
            .unwrap();
        assert!(s.get_or_insert_with(&foreign, || 1).is_err());
    }

    use std::sync::Arc;

    use mesoflow_proto::checkpoint::KeyGroupState;
    use parking_lot::Mutex;

    use crate::checkpoint::subtask::{
        CheckpointServices, KeyGroupPiece, KeyedPart, OperatorShape, RestoredState,
        SubtaskSnapshot, TriggerInfo,
    };
    use crate::plan::SubtaskId;

    /// A deterministic pseudo-random sequence (splitmix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    fn mmap_backend(dir: &std::path::Path, memory_budget: usize) -> StateBackend {
        StateBackend::Mmap {
            dir: dir.to_path_buf(),
            memory_budget,
            file_step: 64 * 1024,
        }
    }

    fn mmap_store(
        dir: &std::path::Path,
        range: KeyGroupRange,
        max_parallelism: u32,
        budget: usize,
    ) -> KeyedStore<u64, u64> {
        KeyedStore::with_backend(
            range,
            max_parallelism,
            &mmap_backend(dir, budget),
            "test",
            StateCodec::identity(),
        )
        .unwrap()
    }

    fn contents<V: Clone>(s: &KeyedStore<u64, V>) -> HashMap<u64, V> {
        let mut m = HashMap::new();
        s.for_each(|k, v| {
            assert!(m.insert(*k, v.clone()).is_none(), "key {k} twice");
        })
        .unwrap();
        m
    }

    /// File sizes a file growing from 64 KiB by doubling steps can have.
    fn is_sum_of_steps(len: u64) -> bool {
        let (mut sum, mut step) = (0, 64 * 1024);
        while sum < len {
            sum += step;
            step = (step * 2).min(cold::MAX_STEP);
        }
        sum == len
    }

    #[test]
    fn mmap_store_with_a_tiny_budget_matches_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let range = KeyGroupRange::for_subtask(0, 1, 128);
        // 32 bytes an entry: 4096 hot entries, 32 per key group, for 100 000 keys.
        let mut s = mmap_store(dir.path(), range, 128, 128 * 1024);
        let capacity = s.hot_capacity().unwrap();
        assert_eq!(capacity, 4096);
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut rng = Rng(42);
        for k in 0..100_000u64 {
            s.upsert(&k, |v| {
                assert!(v.is_none());
                (Some(k * 3), ())
            })
            .unwrap();
            model.insert(k, k * 3);
        }
        let mut file_lens = Vec::new();
        for i in 0..400_000u64 {
            let k = rng.next() % 120_000;
            match rng.next() % 10 {
                0 => assert_eq!(s.remove(&k).unwrap(), model.remove(&k), "remove {k}"),
                1 => assert_eq!(s.get(&k).unwrap(), model.get(&k), "get {k}"),
                2 => {
                    let v = s.get_or_insert_with(&k, || 7).unwrap();
                    *v += 1;
                    let m = model.entry(k).or_insert(7);
                    *m += 1;
                    assert_eq!(v, m);
                }
                _ => {
                    let add = rng.next() % 1000;
                    let got = s
                        .upsert(&k, |v| match v {
                            Some(v) => {
                                *v += add;
                                (None, *v)
                            }
                            None => (Some(add), add),
                        })
                        .unwrap();
                    let expected = match model.get_mut(&k) {
                        Some(m) => {
                            *m += add;
                            *m
                        }
                        None => {
                            model.insert(k, add);
                            add
                        }
                    };
                    assert_eq!(got, expected, "upsert {k}");
                }
            }
            if i % 1000 == 0 {
                assert!(s.hot_len() <= capacity, "{} hot", s.hot_len());
                assert_eq!(s.len(), model.len());
                let stats = s.cold_stats().unwrap();
                assert!(is_sum_of_steps(stats.file_len), "{}", stats.file_len);
                file_lens.push(stats.file_len);
            }
        }
        assert_eq!(s.len(), model.len());
        assert_eq!(contents(&s), model);
        // Every value kept through a retain that modifies cold and hot values alike.
        s.retain(|k, v| {
            *v += 1;
            k % 3 != 0
        })
        .unwrap();
        model.retain(|k, v| {
            *v += 1;
            k % 3 != 0
        });
        assert_eq!(contents(&s), model);
        assert!(s.hot_len() <= capacity);
        let stats = s.cold_stats().unwrap();
        assert!(
            stats.evictions > 100_000 && stats.promotions > 10_000,
            "{stats:?}"
        );
        assert!(stats.compactions > 0, "{stats:?}");
        // The file grew in steps: several sizes seen, each a sum of doubling steps.
        file_lens.dedup();
        assert!(file_lens.len() > 2, "{file_lens:?}");
        drop(s);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[derive(Default)]
    struct Mem {
        snapshots: Mutex<Vec<SubtaskSnapshot>>,
        triggers: Mutex<HashMap<u64, TriggerInfo>>,
        /// Keep frozen key groups unserialized (an upload that has not started yet).
        keep_deferred: bool,
    }
    impl CheckpointServices for Mem {
        fn trigger(&self, id: u64) -> Option<TriggerInfo> {
            self.triggers.lock().get(&id).cloned()
        }
        fn submit(&self, mut snapshot: SubtaskSnapshot) {
            if !self.keep_deferred {
                snapshot.serialize_deferred().unwrap();
            }
            self.snapshots.lock().push(snapshot);
        }
        fn decline(&self, _: SubtaskId, id: u64, reason: String) {
            panic!("checkpoint {id} declined: {reason}");
        }
    }

    fn op_ids(range: KeyGroupRange, max_parallelism: u32) -> OperatorIds {
        OperatorIds {
            id: "op".into(),
            subtask: 0,
            key_groups: range,
            shape: OperatorShape {
                parallelism: 1,
                max_parallelism,
            },
        }
    }

    /// Snapshot `id` of `s` (incremental on `base` when not 0), marked uploaded.
    fn snapshot(
        mem: &Arc<Mem>,
        cp: &SubtaskCheckpoint,
        s: &mut KeyedStore<u64, u64>,
        op: &OperatorIds,
        id: u64,
        base: u64,
    ) -> Vec<KeyedPart> {
        mem.triggers.lock().insert(
            id,
            TriggerInfo {
                full: base == 0,
                base,
                savepoint: false,
            },
        );
        assert!(cp.begin(id));
        s.snapshot_as(cp, op, "values", |v| *v).unwrap();
        cp.finish(id);
        let parts = mem.snapshots.lock().last().unwrap().keyed.clone();
        let written = parts
            .iter()
            .filter(|p| matches!(p.piece, KeyGroupPiece::Written(_)))
            .map(|p| {
                let h = KeyGroupState {
                    state_name: p.state_name.clone(),
                    key_group: p.key_group,
                    written_by: id,
                    ..Default::default()
                };
                (p.operator_id.clone(), p.state_name.clone(), h)
            })
            .collect();
        cp.uploaded(id, written);
        parts
    }

    fn restore_into(parts: &[KeyedPart], s: &mut KeyedStore<u64, u64>, op: &OperatorIds) {
        let mut groups = std::collections::BTreeMap::new();
        for p in parts {
            if let KeyGroupPiece::Written(bytes) = &p.piece {
                let h = KeyGroupState {
                    state_name: p.state_name.clone(),
                    key_group: p.key_group,
                    ..Default::default()
                };
                groups.insert(p.key_group, (bytes.clone(), h));
            }
        }
        let mut restored = RestoredState {
            checkpoint_id: 1,
            shared: true,
            ..Default::default()
        };
        restored
            .keyed
            .insert(("op".to_string(), "values".to_string()), groups);
        let cp = SubtaskCheckpoint::new(
            SubtaskId { chain: 0, index: 0 },
            None,
            Some(Arc::new(restored)),
        );
        s.restore_as(&cp, op, "values", |v: u64| v).unwrap();
    }

    #[test]
    fn snapshots_move_between_backends_and_skip_untouched_key_groups() {
        let dir = tempfile::tempdir().unwrap();
        let range = KeyGroupRange::for_subtask(0, 1, 16);
        let op = op_ids(range, 16);
        let mut mmap = mmap_store(dir.path(), range, 16, 16 * 1024);
        let mut heap = KeyedStore::<u64, u64>::new(range, 16);
        for k in 0..20_000u64 {
            *mmap.get_or_insert_with(&k, || 0).unwrap() += k * 2;
            *heap.get_or_insert_with(&k, || 0).unwrap() += k + 1;
        }
        assert!(mmap.cold_stats().unwrap().evictions > 10_000);
        let mem = Arc::new(Mem::default());
        let services: Arc<dyn CheckpointServices> = mem.clone();
        let cp = SubtaskCheckpoint::new(SubtaskId { chain: 0, index: 0 }, Some(services), None);

        // mmap -> heap, and heap -> mmap: the same contents.
        let parts = snapshot(&mem, &cp, &mut mmap, &op, 1, 0);
        assert_eq!(parts.len(), 16);
        let mut back = KeyedStore::<u64, u64>::new(range, 16);
        restore_into(&parts, &mut back, &op);
        assert_eq!(contents(&back), contents(&mmap));
        let heap_mem = Arc::new(Mem::default());
        let heap_services: Arc<dyn CheckpointServices> = heap_mem.clone();
        let heap_cp =
            SubtaskCheckpoint::new(SubtaskId { chain: 0, index: 0 }, Some(heap_services), None);
        let heap_parts = snapshot(&heap_mem, &heap_cp, &mut heap, &op, 1, 0);
        let dir2 = tempfile::tempdir().unwrap();
        let mut into_mmap = mmap_store(dir2.path(), range, 16, 16 * 1024);
        restore_into(&heap_parts, &mut into_mmap, &op);
        assert_eq!(contents(&into_mmap), contents(&heap));
        assert!(into_mmap.hot_len() <= into_mmap.hot_capacity().unwrap());
        assert!(into_mmap.cold_stats().unwrap().evictions > 10_000);

        // Reads promote and evict within key group 3; one key of key group 5 changes.
        let snapshot_3 = parts.iter().find(|p| p.key_group == 3).unwrap().clone();
        let before = contents(&mmap);
        let evictions = mmap.cold_stats().unwrap().evictions;
        let (in3, in5): (Vec<u64>, Vec<u64>) = (
            (0..20_000).filter(|k| key_group_of(k, 16) == 3).collect(),
            (0..20_000).filter(|k| key_group_of(k, 16) == 5).collect(),
        );
        for k in &in3 {
            assert_eq!(mmap.get(k).unwrap(), Some(&(k * 2)));
        }
        assert!(mmap.cold_stats().unwrap().evictions > evictions);
        *mmap.get_or_insert_with(&in5[0], || 0).unwrap() += 1;
        let incremental = snapshot(&mem, &cp, &mut mmap, &op, 2, 1);
        let written: Vec<u32> = incremental
            .iter()
            .filter(|p| matches!(p.piece, KeyGroupPiece::Written(_)))
            .map(|p| p.key_group)
            .collect();
        assert_eq!(written, vec![5]);
        let p3 = incremental.iter().find(|p| p.key_group == 3).unwrap();
        assert!(matches!(&p3.piece, KeyGroupPiece::Unchanged(h) if h.written_by == 1));
        // The referenced segment of key group 3 still matches the store.
        let mut only3 = KeyedStore::<u64, u64>::new(range, 16);
        restore_into(&[snapshot_3], &mut only3, &op);
        let now = contents(&mmap);
        assert_eq!(contents(&only3).len(), in3.len());
        for (k, v) in contents(&only3) {
            assert_eq!(now[&k], v);
        }
        assert_eq!(now.len(), before.len());
    }

    /// The key groups a snapshot serialized (not referenced).
    fn written_groups(parts: &[KeyedPart]) -> Vec<u32> {
        parts
            .iter()
            .filter(|p| matches!(p.piece, KeyGroupPiece::Written(_)))
            .map(|p| p.key_group)
            .collect()
    }

    #[test]
    fn key_groups_of_a_snapshot_never_uploaded_are_written_by_the_next_incremental_one() {
        let range = KeyGroupRange::for_subtask(0, 1, 16);
        let op = op_ids(range, 16);
        let mut s = KeyedStore::<u64, u64>::new(range, 16);
        for k in 0..1000u64 {
            s.get_or_insert_with(&k, || k).unwrap();
        }
        let mem = Arc::new(Mem::default());
        let services: Arc<dyn CheckpointServices> = mem.clone();
        let cp = SubtaskCheckpoint::new(SubtaskId { chain: 0, index: 0 }, Some(services), None);
        assert_eq!(snapshot(&mem, &cp, &mut s, &op, 1, 0).len(), 16);

        // Checkpoint 2 snapshots a change of key group `g`, but its upload never succeeds
        // (storage down): 1 stays the last completed checkpoint and the base of 3.
        let key = (0..1000u64).find(|k| key_group_of(k, 16) == 7).unwrap();
        *s.get_or_insert_with(&key, || 0).unwrap() += 1_000_000;
        mem.triggers.lock().insert(
            2,
            TriggerInfo {
                full: false,
                base: 1,
                savepoint: false,
            },
        );
        assert!(cp.begin(2));
        s.snapshot_as(&cp, &op, "values", |v| *v).unwrap();
        cp.finish(2);
        assert_eq!(written_groups(&mem.snapshots.lock()[1].keyed), vec![7]);

        // A barrier nobody collects (declined) leaves the flags alone.
        *s.get_or_insert_with(&(key + 16 * 1000), || 0).unwrap() += 1;
        s.snapshot_as(&cp, &op, "values", |v| *v).unwrap();
        let other = key_group_of(&(key + 16 * 1000), 16);

        // Checkpoint 3 on base 1: key group 7 differs from 1's copy although its flag was
        // cleared by snapshot 2, so it is written again, with the change.
        let parts = snapshot(&mem, &cp, &mut s, &op, 3, 1);
        let mut expected = vec![7, other];
        expected.sort();
        expected.dedup();
        assert_eq!(written_groups(&parts), expected);
        let mut back = KeyedStore::<u64, u64>::new(range, 16);
        restore_into(&parts, &mut back, &op);
        assert_eq!(back.get(&key).unwrap(), Some(&(key + 1_000_000)));

        // Once 3 is uploaded it is the base: nothing changed since, nothing is written.
        assert!(written_groups(&snapshot(&mem, &cp, &mut s, &op, 4, 3)).is_empty());
    }

    #[test]
    fn a_heap_snapshot_freezes_key_groups_and_later_writes_copy_them() {
        let range = KeyGroupRange::for_subtask(0, 1, 16);
        let op = op_ids(range, 16);
        let mut s = KeyedStore::<u64, u64>::new(range, 16);
        for k in 0..1000u64 {
            s.get_or_insert_with(&k, || k).unwrap();
        }
        let before = contents(&s);
        let mem = Arc::new(Mem {
            keep_deferred: true,
            ..Default::default()
        });
        let services: Arc<dyn CheckpointServices> = mem.clone();
        let cp = SubtaskCheckpoint::new(SubtaskId { chain: 0, index: 0 }, Some(services), None);
        mem.triggers.lock().insert(
            1,
            TriggerInfo {
                full: true,
                base: 0,
                savepoint: false,
            },
        );
        assert!(cp.begin(1));
        s.snapshot_as(&cp, &op, "values", |v| *v).unwrap();
        cp.finish(1);
        // The task thread only froze the key groups: nothing is serialized yet.
        let mut snapshot = mem.snapshots.lock().pop().unwrap();
        assert_eq!(snapshot.keyed.len(), 16);
        assert!(
            snapshot
                .keyed
                .iter()
                .all(|p| matches!(p.piece, KeyGroupPiece::Deferred(_)))
        );
        // The job goes on while the upload has not read the state: every key changes, one is
        // removed, one is added; the store sees its own writes.
        for k in 0..1000u64 {
            *s.get_or_insert_with(&k, || 0).unwrap() += 1_000_000;
        }
        s.remove(&7).unwrap();
        s.get_or_insert_with(&5000, || 1).unwrap();
        assert_eq!(s.get(&8).unwrap(), Some(&1_000_008));
        assert_eq!(s.len(), 1000);
        // The snapshot still holds the values of the barrier.
        snapshot.serialize_deferred().unwrap();
        let mut back = KeyedStore::<u64, u64>::new(range, 16);
        restore_into(&snapshot.keyed, &mut back, &op);
        assert_eq!(contents(&back), before);
    }

    #[test]
    fn damaged_cold_data_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let range = KeyGroupRange::for_subtask(0, 1, 16);
        let mut s = mmap_store(dir.path(), range, 16, 4 * 1024);
        for k in 0..1000u64 {
            s.get_or_insert_with(&k, || k).unwrap();
        }
        let (slot, key, off) = {
            let cold = s.cold.as_deref().unwrap();
            let (slot, idx) = cold
                .index
                .iter()
                .enumerate()
                .find(|(_, i)| !i.is_empty())
                .unwrap();
            let (k, off) = idx.iter().next().unwrap();
            (slot, *k, *off)
        };
        // A flipped byte of the value, then of the header.
        s.cold.as_deref_mut().unwrap().log.damage(off + 16, 1);
        let err = s.get(&key).unwrap_err();
        assert!(
            matches!(&err, EngineError::StateBackend(StateError::Corrupt { offset, .. }) if *offset == off),
            "{err}"
        );
        assert!(s.for_each(|_, _| {}).is_err());
        assert!(s.remove(&key).is_err());
        s.cold.as_deref_mut().unwrap().log.damage(off, 4);
        assert!(s.upsert(&key, |_| (None, ())).is_err());
        // The key is still indexed: nothing was silently dropped.
        assert!(s.cold.as_deref().unwrap().index[slot].contains_key(&key));
    }

    #[test]
    fn windowed_count_is_the_same_on_both_backends() {
        use crate::jobs::{self, Params};
        use crate::stream::{EnvConfig, SinkSpec};
        let run = |backend: &StateBackend| {
            let job = jobs::build(
                "windowed-count",
                &Params::parse(&[
                    "events=60000".to_string(),
                    "seed=3".to_string(),
                    "keys=5000".to_string(),
                    "events_per_ms=20".to_string(),
                    "window_ms=200".to_string(),
                ])
                .unwrap(),
                EnvConfig {
                    parallelism: 2,
                    sink: SinkSpec::Checksum,
                    ..Default::default()
                },
            )
            .unwrap();
            crate::runtime::run_local_with_state(
                job,
                crate::context::RuntimeConfig::default(),
                backend,
            )
            .unwrap()
        };
        let heap = run(&StateBackend::Heap);
        let dir = tempfile::tempdir().unwrap();
        // About 100 hot keys per subtask for 5000 keys: most accesses go through the files.
        let mmap = run(&mmap_backend(dir.path(), 8 * 1024));
        assert!(heap.records_out > 0);
        assert_eq!(mmap.records_out, heap.records_out);
        assert_eq!(mmap.checksum, heap.checksum);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
