//! Per-key event-time and processing-time timers of a keyed operator.
//!
//! Timers are deduplicated per (key, time) as in Flink; deleting a timer is lazy (it is skipped
//! when it comes due).

use std::collections::{BTreeMap, HashSet};

use crate::checkpoint::codec::{decode_entries, encode_entries};
use crate::checkpoint::subtask::{OperatorIds, SubtaskCheckpoint, restore_error};
use crate::error::Result;
use crate::key_groups::{Key, key_group_of};
use crate::state::FastState;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer's time.
    EventTime,
    /// Fires when the subtask's wall clock reaches it.
    ProcessingTime,
}

/// Timers of one domain.
#[derive(Debug)]
pub struct TimerQueue<K> {
    by_time: BTreeMap<i64, Vec<K>>,
    live: HashSet<(K, i64), FastState>,
}

impl<K: Key> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            by_time: BTreeMap::new(),
            live: HashSet::default(),
        }
    }
}

impl<K: Key> TimerQueue<K> {
    /// Registers a timer for `key` at `time` (no-op if it exists).
    pub fn register(&mut self, key: &K, time: i64) {
        if self.live.insert((key.clone(), time)) {
            self.by_time.entry(time).or_default().push(key.clone());
        }
    }

    /// Deletes the timer for `key` at `time`.
    pub fn delete(&mut self, key: &K, time: i64) {
        self.live.remove(&(key.clone(), time));
    }

    /// Removes and returns every live timer with time `<= upto`, in time order.
    pub fn pop_due(&mut self, upto: i64) -> Vec<(i64, K)> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() > upto {
                break;
            }
            let (t, keys) = entry.remove_entry();
            for k in keys {
                if self.live.remove(&(k.clone(), t)) {
                    due.push((t, k));
                }
            }
        }
        due
    }

    /// Number of live timers.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no timer is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Hands the live timers to checkpoint `cp` as keyed state `name` of `op`, by key group
    /// (timers move with their keys when a job is rescaled).
    pub fn snapshot(&self, cp: &SubtaskCheckpoint, op: &OperatorIds, name: &str) -> Result<()> {
        let max = op.shape.max_parallelism;
        let mut by_group: BTreeMap<u32, (Vec<K>, Vec<i64>)> = BTreeMap::new();
        for (k, t) in &self.live {
            let g = by_group.entry(key_group_of(k, max)).or_default();
            g.0.push(k.clone());
            g.1.push(*t);
        }
        cp.snapshot_keyed(
            op,
            name,
            |_| true,
            |kg| match by_group.get(&kg) {
                Some((keys, times)) => encode_entries(keys, times)
                    .map(Some)
                    .map_err(|e| restore_error(op, name, e)),
                None => Ok(None),
            },
        )
    }

    /// Registers the timers of the key groups restored in `cp` for `op`.
    pub fn restore(&mut self, cp: &SubtaskCheckpoint, op: &OperatorIds, name: &str) -> Result<()> {
        for (_, bytes) in cp.restored_keyed(op, name) {
            for (k, t) in
                decode_entries::<K, i64>(&bytes).map_err(|e| restore_error(op, name, e))?
            {
                self.register(&k, t);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_deduplicated_and_deletable() {
        let mut q = TimerQueue::<u32>::default();
        q.register(&1, 10);
        q.register(&1, 10);
        q.register(&2, 5);
        q.register(&3, 20);
        q.register(&4, 7);
        q.delete(&4, 7);
        assert_eq!(q.pop_due(10), vec![(5, 2), (10, 1)]);
        assert_eq!(q.pop_due(15), vec![]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(i64::MAX), vec![(20, 3)]);
        assert!(q.is_empty());
    }
}
