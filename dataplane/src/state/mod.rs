//! Keyed state, organised by key group so that it can be snapshotted and redistributed per key
//! group when a job is rescaled.
//!
//! [`KeyedStore`] is the flat in-memory backend: one `foldhash` hash map per key group owned by
//! the subtask. [`ValueState`], [`ListState`] and [`MapState`] are the per-key state primitives a
//! keyed process function composes into its own state struct.

use std::collections::HashMap;

use crate::checkpoint::codec::{decode_entries, encode_entries};
use crate::checkpoint::subtask::{OperatorIds, SubtaskCheckpoint, restore_error};
use crate::element::Data;
use crate::error::{EngineError, Result};
use crate::key_groups::{Key, KeyGroupRange, key_hash};

/// Hasher of in-memory maps (not of key groups: those use the stable hash).
pub type FastState = foldhash::fast::RandomState;

/// A hash map with the fast in-memory hasher.
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// Per-key values of one operator, one map per key group of the subtask's range.
///
/// Each key group has a changed flag, set by every access that may modify it and cleared by a
/// snapshot: an incremental checkpoint writes only the key groups changed since the last one.
#[derive(Debug)]
pub struct KeyedStore<K, V> {
    range: KeyGroupRange,
    max_parallelism: u32,
    groups: Vec<FastMap<K, V>>,
    changed: Vec<bool>,
}

impl<K: Key, V> KeyedStore<K, V> {
    /// An empty store for the key groups in `range`.
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        Self {
            range,
            max_parallelism,
            groups: (0..range.len()).map(|_| FastMap::default()).collect(),
            changed: vec![false; range.len() as usize],
        }
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

    /// The value of `key`, created with `init` if absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: &K, init: impl FnOnce() -> V) -> Result<&mut V> {
        let slot = self.slot(key)?;
        self.changed[slot] = true;
        let map = &mut self.groups[slot];
        if !map.contains_key(key) {
            map.insert(key.clone(), init());
        }
        // The key was just ensured present.
        map.get_mut(key).ok_or_else(|| EngineError::TaskFailed {
            task: "keyed state".into(),
            message: "value vanished after insert".into(),
        })
    }

    /// The map of a slot returned by [`KeyedStore::slot`].
    #[inline]
    pub fn group_mut(&mut self, slot: usize) -> &mut FastMap<K, V> {
        self.changed[slot] = true;
        &mut self.groups[slot]
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Option<&V> {
        let slot = self.slot(key).ok()?;
        self.groups[slot].get(key)
    }

    /// Removes the value of `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.slot(key).ok()?;
        self.changed[slot] = true;
        self.groups[slot].remove(key)
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    /// True when no key has a value.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.is_empty())
    }

    /// The map of one key group (`key_group` is absolute); what a snapshot writes per group.
    pub fn key_group(&self, key_group: u32) -> Option<&FastMap<K, V>> {
        if !self.range.contains(key_group) {
            return None;
        }
        self.groups.get((key_group - self.range.start) as usize)
    }

    /// Visits every entry, keeping those for which `f` returns true.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        for (g, changed) in self.groups.iter_mut().zip(&mut self.changed) {
            if !g.is_empty() {
                // `f` may modify any value it visits.
                *changed = true;
                g.retain(|k, v| f(k, v));
            }
        }
    }

    /// Iterates all entries.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.groups.iter().flat_map(|g| g.iter())
    }
}

impl<K: Key, V> KeyedStore<K, V> {
    /// Hands the store to checkpoint `cp` as state `name` of `op`, each value converted by
    /// `to` into its stored form; clears the changed flags.
    pub fn snapshot_as<S: Data>(
        &mut self,
        cp: &SubtaskCheckpoint,
        op: &OperatorIds,
        name: &str,
        to: impl Fn(&V) -> S,
    ) -> Result<()> {
        let start = self.range.start;
        let changed = std::mem::replace(&mut self.changed, vec![false; self.groups.len()]);
        let groups = &self.groups;
        cp.snapshot_keyed(
            op,
            name,
            |kg| changed.get((kg - start) as usize).copied().unwrap_or(true),
            |kg| {
                let Some(map) = groups.get((kg - start) as usize) else {
                    return Ok(None);
                };
                if map.is_empty() {
                    return Ok(None);
                }
                let keys: Vec<K> = map.keys().cloned().collect();
                let values: Vec<S> = map.values().map(&to).collect();
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

/// A map per key.
#[derive(Debug, Clone)]
pub struct MapState<UK, UV>(FastMap<UK, UV>);

impl<UK, UV> Default for MapState<UK, UV> {
    fn default() -> Self {
        Self(FastMap::default())
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
        for kg in 0..16 {
            for (k, v) in s.key_group(kg).unwrap() {
                assert_eq!(key_group_of(k, 16), kg);
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
}
