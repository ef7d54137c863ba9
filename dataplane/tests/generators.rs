//! Properties the engine relies on when it wraps the generators as parallel sources.

use mesoflow_dataplane::checksum::Checksum;
use mesoflow_dataplane::generators::{
    Datagen, DatagenConfig, EventKind, NexmarkConfig, TextGen, subtask_indices,
};

const EVENTS: u64 = 200_000;

fn datagen_line(g: &Datagen, i: u64, line: &mut Vec<u8>) {
    let r = g.record(i);
    line.clear();
    line.extend_from_slice(format!("{},{},{},", r.key, r.value, r.ts_ms).as_bytes());
    r.append_payload(line);
}

/// Splitting the index space over `p` subtasks yields exactly the multiset one source yields,
/// and every subtask's event time is non-decreasing.
#[test]
fn index_splitting_gives_the_same_multiset_as_one_source() {
    let datagen = Datagen::new(DatagenConfig {
        seed: 5,
        keys: 1000,
        ..DatagenConfig::default()
    });
    let text = TextGen::new(5);
    let nexmark = NexmarkConfig {
        seed: 5,
        ..NexmarkConfig::default()
    };
    let sums = |subtask: u32, p: u32| {
        let (mut d, mut t, mut n) = (
            Checksum::default(),
            Checksum::default(),
            Checksum::default(),
        );
        let mut line = Vec::new();
        let mut text_line = String::new();
        let (mut last_d, mut last_n) = (i64::MIN, i64::MIN);
        for i in subtask_indices(EVENTS, subtask, p) {
            datagen_line(&datagen, i, &mut line);
            d.add_line(&line);
            let ts = datagen.record(i).ts_ms;
            assert!(ts >= last_d, "datagen time went back at {i}");
            last_d = ts;
            text_line.clear();
            text.line_into(i, &mut text_line);
            t.add_line(text_line.as_bytes());
            let e = nexmark.event(i);
            n.add_line(e.to_string().as_bytes());
            assert!(
                nexmark.timestamp(i) >= last_n,
                "nexmark time went back at {i}"
            );
            last_n = nexmark.timestamp(i);
        }
        [d, t, n]
    };
    let single = sums(0, 1);
    for p in [2u32, 3, 7] {
        let mut merged = [Checksum::default(); 3];
        for s in 0..p {
            for (m, part) in merged.iter_mut().zip(sums(s, p)) {
                m.merge(part);
            }
        }
        assert_eq!(merged, single, "parallelism {p}");
    }
    assert!(single.iter().all(|c| c.records == EVENTS));
}

#[test]
fn nexmark_proportions_are_exactly_1_3_46() {
    let (mut persons, mut auctions, mut bids) = (0u64, 0u64, 0u64);
    for i in 0..1_000_000 {
        match NexmarkConfig::event_kind(i) {
            EventKind::Person => persons += 1,
            EventKind::Auction => auctions += 1,
            EventKind::Bid => bids += 1,
        }
    }
    assert_eq!((persons, auctions, bids), (20_000, 60_000, 920_000));
}

#[test]
fn seeds_change_streams_and_keys_cover_the_key_space() {
    let a = Datagen::new(DatagenConfig {
        seed: 1,
        keys: 100,
        ..DatagenConfig::default()
    });
    let b = Datagen::new(DatagenConfig {
        seed: 2,
        keys: 100,
        ..DatagenConfig::default()
    });
    let same = (0..1000)
        .filter(|&i| a.record(i).key == b.record(i).key)
        .count();
    assert!(same < 50, "{same} of 1000 keys equal across seeds");
    let mut seen = [0u32; 100];
    for i in 0..100_000 {
        seen[a.record(i).key as usize] += 1;
    }
    // Uniform keys: every key near 1000 occurrences.
    assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
    let nx0 = NexmarkConfig::default();
    let nx1 = NexmarkConfig { seed: 1, ..nx0 };
    assert_ne!(nx0.bid(4), nx1.bid(4));
    assert_eq!(nx0.bid(4), nx0.bid(4));
    assert_ne!(TextGen::new(0).line(0), TextGen::new(1).line(0));
}
