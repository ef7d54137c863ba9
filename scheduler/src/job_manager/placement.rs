//! Slot sharing and slot placement, as pure functions.
//!
//! As in Flink's default slot-sharing group, slot `k` hosts parallel instance `k` of every
//! chain, so a job needs as many slots as its widest chain and a pipeline's instances share a
//! process. Which worker holds slot `k` is the placement strategy's choice: *spread*
//! (`cluster.evenly-spread-out-slots`) deals slots round-robin over the workers so keyed
//! instances land on different TaskManagers; *pack* fills one worker before the next.

use mesoflow_proto::control::SubtaskPlacement;
use serde::{Deserialize, Serialize};

use crate::resource_manager::WorkerId;

/// One task slot: a worker and the slot's number on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The worker holding the slot.
    pub worker: WorkerId,
    /// Slot number on that worker, `0..slots`.
    pub slot: u32,
}

/// The registered slots do not fit the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the job needs {needed} slot(s) (its widest chain) but {workers} worker(s) offer {available}; \
     add workers or slots per worker, or lower the parallelism"
)]
pub struct PlacementError {
    /// Slots the job needs.
    pub needed: u32,
    /// Slots the workers offer.
    pub available: u64,
    /// Workers offering them.
    pub workers: usize,
}

/// Slots a job with these chain parallelisms needs under slot sharing.
pub fn slots_needed(chains: &[u32]) -> u32 {
    chains.iter().copied().max().unwrap_or(0)
}

/// Chooses `needed` slots among `workers` (id and slot count, in the order to fill them).
/// Element `k` of the result is the slot hosting instance `k` of every chain.
pub fn place_slots(
    needed: u32,
    workers: &[(WorkerId, u32)],
    spread: bool,
) -> Result<Vec<Slot>, PlacementError> {
    let available: u64 = workers.iter().map(|(_, s)| u64::from(*s)).sum();
    if u64::from(needed) > available {
        return Err(PlacementError {
            needed,
            available,
            workers: workers.len(),
        });
    }
    let mut used = vec![0u32; workers.len()];
    let mut slots = Vec::with_capacity(needed as usize);
    let mut w = 0;
    for _ in 0..needed {
        // Terminates: the capacity check above guarantees a worker with a free slot.
        while used[w] >= workers[w].1 {
            w = (w + 1) % workers.len();
        }
        slots.push(Slot {
            worker: workers[w].0.clone(),
            slot: used[w],
        });
        used[w] += 1;
        if spread {
            w = (w + 1) % workers.len();
        }
    }
    Ok(slots)
}

/// Every subtask with its worker, chain by chain, instance by instance.
pub fn assign_subtasks(chains: &[u32], slots: &[Slot]) -> Vec<SubtaskPlacement> {
    chains
        .iter()
        .enumerate()
        .flat_map(|(chain, &parallelism)| {
            (0..parallelism).map(move |index| SubtaskPlacement {
                chain: chain as u32,
                index,
                task_manager_id: slots[index as usize].worker.0.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(slots: &[u32]) -> Vec<(WorkerId, u32)> {
        slots
            .iter()
            .enumerate()
            .map(|(i, s)| (WorkerId(format!("w{i}")), *s))
            .collect()
    }

    /// `"w0:0 w1:0 ..."` for compact expectations.
    fn show(slots: &[Slot]) -> String {
        slots
            .iter()
            .map(|s| format!("{}:{}", s.worker, s.slot))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn spread_and_pack() {
        let cases: &[(u32, &[u32], bool, &str)] = &[
            (4, &[2, 2], true, "w0:0 w1:0 w0:1 w1:1"),
            (4, &[2, 2], false, "w0:0 w0:1 w1:0 w1:1"),
            (3, &[2, 2], true, "w0:0 w1:0 w0:1"),
            (3, &[2, 2], false, "w0:0 w0:1 w1:0"),
            (2, &[4, 4, 4], true, "w0:0 w1:0"),
            (2, &[4, 4, 4], false, "w0:0 w0:1"),
            (5, &[1, 4], true, "w0:0 w1:0 w1:1 w1:2 w1:3"),
            (1, &[1], true, "w0:0"),
            (0, &[1], true, ""),
        ];
        for (needed, caps, spread, expected) in cases {
            let placed = place_slots(*needed, &workers(caps), *spread).unwrap();
            assert_eq!(
                show(&placed),
                *expected,
                "{needed} over {caps:?} spread={spread}"
            );
        }
    }

    #[test]
    fn not_enough_slots_is_a_clear_error() {
        let e = place_slots(5, &workers(&[2, 2]), true).unwrap_err();
        assert_eq!(
            e,
            PlacementError {
                needed: 5,
                available: 4,
                workers: 2
            }
        );
        assert!(e.to_string().contains("needs 5 slot(s)"), "{e}");
        assert!(place_slots(1, &[], false).is_err());
    }

    #[test]
    fn slot_k_hosts_instance_k_of_every_chain() {
        let chains = [2, 2, 1];
        assert_eq!(slots_needed(&chains), 2);
        let slots = place_slots(2, &workers(&[1, 1]), true).unwrap();
        let got: Vec<_> = assign_subtasks(&chains, &slots)
            .into_iter()
            .map(|p| (p.chain, p.index, p.task_manager_id))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0, "w0".to_owned()),
                (0, 1, "w1".to_owned()),
                (1, 0, "w0".to_owned()),
                (1, 1, "w1".to_owned()),
                (2, 0, "w0".to_owned()),
            ]
        );
    }
}
