//! Deterministic workload generators shared by mesoflow's built-in jobs and the Apache Flink
//! baseline.
//!
//! Every event is a pure function of `(seed, index)`: no generator keeps state between events, so
//! parallel source subtasks split the index space (subtask `i` of `p` takes `i, i + p, i + 2p, ...`)
//! and the union of their outputs is exactly what a single source would emit. Event time is a
//! non-decreasing function of `index`, so every subtask's stream is in event-time order.
//!
//! The algorithms are specified in `docs/generators.md` precisely enough to re-implement; the Java
//! twins under `tests/peers/flink` follow that text, and `dataplane/tests/generators_java.rs`
//! checks that both sides produce the same checksums.
//!
//! - [`splitmix`]: the stateless 64-bit mixer every generator draws from;
//! - [`java_random`]: `java.util.Random`'s 48-bit LCG, used where Nexmark's rules call for it;
//! - [`portable_math`]: `10^x` from basic IEEE operations only, so Rust and Java agree bit for bit;
//! - [`datagen`]: ~100-byte keyed records for the stateless and window workloads;
//! - [`text`]: lines of words with a skewed (Zipf-like) word distribution for word count;
//! - [`nexmark`]: Person / Auction / Bid events following the Nexmark generator's rules.
//!
//! The order-independent output checksum of `docs/workloads.md` that the cross-language check
//! compares is [`crate::checksum`].

pub mod datagen;
pub mod java_random;
pub mod nexmark;
pub mod portable_math;
pub mod splitmix;
pub mod text;

pub use datagen::{DataRecord, Datagen, DatagenConfig};
pub use nexmark::{Auction, Bid, EventKind, NexmarkConfig, NexmarkEvent, Person};
pub use text::TextGen;

/// Indices that subtask `subtask` of `parallelism` generates out of `0..events`:
/// `subtask, subtask + parallelism, ...`.
///
/// Returns an empty range for a `subtask` that is not below `parallelism` (and for
/// `parallelism == 0`), so a bad deployment produces no events rather than a panic.
pub fn subtask_indices(
    events: u64,
    subtask: u32,
    parallelism: u32,
) -> impl Iterator<Item = u64> + Clone {
    let p = u64::from(parallelism.max(1));
    let start = if subtask < parallelism {
        u64::from(subtask)
    } else {
        events
    };
    // `step_by` needs a usize step; parallelism is a u32 so this cannot truncate on 32/64-bit.
    (start..events).step_by(p as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtask_indices_partition_the_index_space() {
        let mut all: Vec<u64> = (0..3).flat_map(|s| subtask_indices(10, s, 3)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(subtask_indices(10, 1, 3).collect::<Vec<_>>(), vec![1, 4, 7]);
        assert_eq!(subtask_indices(10, 3, 3).count(), 0);
        assert_eq!(subtask_indices(10, 0, 0).count(), 0);
    }
}
