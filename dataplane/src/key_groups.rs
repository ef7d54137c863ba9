//! Key groups, as Flink assigns them: `key -> stable hash -> key group -> subtask`.
//!
//! Keyed state is stored per key group, and a key group is the unit that moves between subtasks
//! when a job is rescaled. The hash therefore has to be identical on every platform and in every
//! process running the same binary: it is a murmur3-style finaliser over a stable byte encoding of
//! the key, never `std`'s randomly seeded `DefaultHasher`.

use std::hash::Hash;

use crate::element::Data;

/// Max parallelism used when the job does not set one (Flink's default lower bound).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// Upper bound on max parallelism (Flink's limit), so key-group arithmetic cannot overflow.
pub const UPPER_MAX_PARALLELISM: u32 = 1 << 15;

/// Accumulates a stable 64-bit hash over the key's canonical byte encoding.
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    /// A hasher with the fixed seed every process uses.
    pub fn new() -> Self {
        Self {
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Mixes one 64-bit word.
    #[inline]
    pub fn write_u64(&mut self, v: u64) {
        self.state = fmix64(self.state ^ v).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }

    /// Mixes a byte string (length-prefixed so that ("ab","c") and ("a","bc") differ).
    #[inline]
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.write_u64(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    /// The final 32-bit hash.
    #[inline]
    pub fn finish32(&self) -> u32 {
        let h = fmix64(self.state);
        (h ^ (h >> 32)) as u32
    }
}

/// murmur3's 64-bit finaliser: a bijection with good avalanche.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// A type usable as a key: hashable for in-memory maps and stably hashable for key groups, and
/// (like every stream type) able to cross processes.
pub trait Key: Hash + Eq + Data {
    /// Feeds the key's canonical encoding into `h`. Must not depend on the platform or process.
    fn stable_hash(&self, h: &mut StableHasher);
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            #[inline]
            fn stable_hash(&self, h: &mut StableHasher) {
                h.write_u64(*self as u64);
            }
        }
    )*};
}
int_key!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl Key for bool {
    fn stable_hash(&self, h: &mut StableHasher) {
        h.write_u64(*self as u64);
    }
}

impl Key for char {
    fn stable_hash(&self, h: &mut StableHasher) {
        h.write_u64(*self as u64);
    }
}

impl Key for String {
    #[inline]
    fn stable_hash(&self, h: &mut StableHasher) {
        h.write_bytes(self.as_bytes());
    }
}

impl Key for () {
    fn stable_hash(&self, h: &mut StableHasher) {
        h.write_u64(0);
    }
}

impl<A: Key, B: Key> Key for (A, B) {
    fn stable_hash(&self, h: &mut StableHasher) {
        self.0.stable_hash(h);
        self.1.stable_hash(h);
    }
}

impl<A: Key, B: Key, C: Key> Key for (A, B, C) {
    fn stable_hash(&self, h: &mut StableHasher) {
        self.0.stable_hash(h);
        self.1.stable_hash(h);
        self.2.stable_hash(h);
    }
}

/// The stable 32-bit hash of a key.
#[inline]
pub fn key_hash<K: Key>(key: &K) -> u32 {
    let mut h = StableHasher::new();
    key.stable_hash(&mut h);
    h.finish32()
}

/// The key group of a key: `hash(key) % max_parallelism`.
#[inline]
pub fn key_group_of<K: Key>(key: &K, max_parallelism: u32) -> u32 {
    key_hash(key) % max_parallelism
}

/// The subtask that owns a key group: `key_group * parallelism / max_parallelism`.
#[inline]
pub fn subtask_for_key_group(key_group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    ((key_group as u64 * parallelism as u64) / max_parallelism as u64) as u32
}

/// A contiguous, inclusive range of key groups owned by one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    /// First key group (inclusive).
    pub start: u32,
    /// Last key group (inclusive); `end < start` means the range is empty.
    pub end: u32,
}

impl KeyGroupRange {
    /// The range subtask `index` of `parallelism` owns (the inverse of [`subtask_for_key_group`]).
    pub fn for_subtask(index: u32, parallelism: u32, max_parallelism: u32) -> Self {
        let (i, p, m) = (index as u64, parallelism as u64, max_parallelism as u64);
        let start = (i * m).div_ceil(p);
        let end = ((i + 1) * m - 1) / p;
        Self {
            start: start as u32,
            end: end as u32,
        }
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            (self.end - self.start + 1) as usize
        }
    }

    /// True when the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `key_group` lies in the range.
    pub fn contains(&self, key_group: u32) -> bool {
        key_group >= self.start && key_group <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_across_runs() {
        // Pinned values: a change here would silently move state between subtasks on upgrade
        // and make savepoints of older versions unreadable.
        assert_eq!(key_hash(&0u64), 2_624_864_116);
        assert_eq!(key_hash(&42u64), 735_309_571);
        assert_eq!(key_hash(&"hello".to_string()), 3_762_778_074);
        assert_eq!(key_group_of(&42u64, 128), 3);
        assert_ne!(key_hash(&1u64), key_hash(&2u64));
        assert_ne!(
            key_hash(&("ab".to_string(), "c".to_string())),
            key_hash(&("a".to_string(), "bc".to_string()))
        );
    }

    #[test]
    fn ranges_partition_all_key_groups_exactly_once() {
        for p in 1..=17u32 {
            let mut next = 0u32;
            for i in 0..p {
                let r = KeyGroupRange::for_subtask(i, p, 128);
                assert_eq!(r.start, next, "p={p} i={i}");
                for kg in r.start..=r.end {
                    assert_eq!(subtask_for_key_group(kg, p, 128), i, "p={p} kg={kg}");
                }
                next = r.end + 1;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn key_groups_spread_keys_evenly() {
        let mut counts = [0u32; 128];
        for k in 0..128_000u64 {
            counts[key_group_of(&k, 128) as usize] += 1;
        }
        // 1000 expected per group; a decent hash keeps every group within 15%.
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn subtask_assignment_matches_flink_formula() {
        assert_eq!(subtask_for_key_group(0, 4, 128), 0);
        assert_eq!(subtask_for_key_group(31, 4, 128), 0);
        assert_eq!(subtask_for_key_group(32, 4, 128), 1);
        assert_eq!(subtask_for_key_group(127, 4, 128), 3);
        assert_eq!(subtask_for_key_group(127, 3, 128), 2);
        assert_eq!(
            KeyGroupRange::for_subtask(1, 3, 128),
            KeyGroupRange { start: 43, end: 85 }
        );
    }
}
