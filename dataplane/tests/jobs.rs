//! Every built-in job, end to end on the local runtime, against a straightforward reference
//! computation over the same generated (or written) input; and parallelism 1 versus 4.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mesoflow_dataplane::generators::{Datagen, DatagenConfig, NexmarkConfig};
use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::{EnvConfig, RuntimeConfig, SinkSpec, run_local};
use parking_lot::Mutex;
use proptest::prelude::*;

fn run_job(name: &str, params: &[&str], parallelism: u32) -> Vec<String> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let job = jobs::build(
        name,
        &Params::parse(params).unwrap(),
        EnvConfig {
            parallelism,
            sink: SinkSpec::Collect(lines.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let config = RuntimeConfig {
        batch_size: 64,
        channel_capacity: 4,
        buffer_timeout_ms: 5,
        ..Default::default()
    };
    let result = run_local(job, config).unwrap();
    let mut v = lines.lock().clone();
    assert_eq!(result.records_out, v.len() as u64);
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn wordcount_on_a_known_text_matches_independent_counts() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "The quick brown fox; the LAZY dog.\nA fox, a dog, THE end\n\n42 foxes--and 42 dogs\n";
    std::fs::write(dir.path().join("part1.txt"), text).unwrap();
    std::fs::write(dir.path().join("part2.txt"), "the end\n").unwrap();
    // Independent count: the final count per word, and every intermediate update.
    let mut finals: BTreeMap<String, u64> = BTreeMap::new();
    for w in format!("{text}the end").split(|c: char| !c.is_alphanumeric()) {
        if !w.is_empty() {
            *finals.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    assert_eq!(finals["the"], 4);
    assert_eq!(finals["42"], 2);
    let expected: Vec<String> = sorted(
        finals
            .iter()
            .flat_map(|(w, &n)| (1..=n).map(move |c| format!("{w} {c}")))
            .collect(),
    );
    let input = format!("input={}", dir.path().display());
    for p in [1, 4] {
        let got = run_job("wordcount", &[&input], p);
        assert_eq!(got, expected, "parallelism {p}");
    }
}

#[test]
fn wordcount_on_generated_text_agrees_across_parallelism() {
    let a = run_job("wordcount", &["events=300", "seed=3"], 1);
    let b = run_job("wordcount", &["events=300", "seed=3"], 4);
    assert_eq!(a, b);
    assert!(a.len() > 300 * 4);
}

fn datagen(seed: u64, keys: u64, events_per_ms: u64) -> Datagen {
    Datagen::new(DatagenConfig {
        seed,
        keys,
        payload_len: 76,
        events_per_ms,
    })
}

/// Reference: count per (key, window end) over every window each record falls in.
fn reference_window_counts(events: u64, g: &Datagen, size: i64, slide: i64) -> Vec<String> {
    let mut counts: HashMap<(u64, i64), u64> = HashMap::new();
    for i in 0..events {
        let r = g.record(i);
        let last_start = r.ts_ms - r.ts_ms.rem_euclid(slide);
        let mut start = last_start;
        while start > r.ts_ms - size {
            *counts.entry((r.key, start + size)).or_default() += 1;
            start -= slide;
        }
    }
    sorted(
        counts
            .into_iter()
            .map(|((k, end), c)| format!("{k},{end},{c}"))
            .collect(),
    )
}

#[test]
fn windowed_count_matches_reference() {
    let g = datagen(7, 50, 10);
    let expected = reference_window_counts(20_000, &g, 100, 100);
    for p in [1, 4] {
        let got = run_job(
            "windowed-count",
            &[
                "events=20000",
                "seed=7",
                "keys=50",
                "events_per_ms=10",
                "window_ms=100",
            ],
            p,
        );
        assert_eq!(got, expected, "parallelism {p}");
    }
}

#[test]
fn sliding_count_matches_reference() {
    let g = datagen(11, 40, 5);
    // size not a multiple of the slide: slices of gcd(250, 60) = 10 ms
    let expected = reference_window_counts(10_000, &g, 250, 60);
    for p in [1, 3] {
        let got = run_job(
            "sliding-count",
            &[
                "events=10000",
                "seed=11",
                "keys=40",
                "events_per_ms=5",
                "window_ms=250",
                "slide_ms=60",
            ],
            p,
        );
        assert_eq!(got, expected, "parallelism {p}");
    }
}

#[test]
fn stateless_matches_reference() {
    let g = datagen(5, 1000, 1000);
    let expected = sorted(
        (0..5000)
            .map(|i| g.record(i))
            .filter(|r| r.value % 10 != 0)
            .map(|r| format!("{},{}", r.key, r.value * 3 + 76))
            .collect(),
    );
    assert_eq!(
        run_job("stateless", &["events=5000", "seed=5", "keys=1000"], 2),
        expected
    );
}

fn bids(events: u64, seed: u64) -> Vec<mesoflow_dataplane::generators::Bid> {
    let c = NexmarkConfig {
        seed,
        ..Default::default()
    };
    (0..events).filter_map(|i| c.bid(i)).collect()
}

#[test]
fn nexmark_q0_q1_q2_match_reference() {
    let b = bids(5000, 9);
    let line = |a: i64, bi: i64, p: i64, t: i64| format!("{a},{bi},{p},{t}");
    let q0 = sorted(
        b.iter()
            .map(|x| line(x.auction, x.bidder, x.price, x.date_time))
            .collect(),
    );
    let q1 = sorted(
        b.iter()
            .map(|x| line(x.auction, x.bidder, x.price * 908 / 1000, x.date_time))
            .collect(),
    );
    let q2 = sorted(
        b.iter()
            .filter(|x| x.auction % 123 == 0)
            .map(|x| format!("{},{}", x.auction, x.price))
            .collect(),
    );
    assert_eq!(q0.len(), 4600);
    assert_eq!(run_job("nexmark-q0", &["events=5000", "seed=9"], 2), q0);
    assert_eq!(run_job("nexmark-q1", &["events=5000", "seed=9"], 2), q1);
    assert_eq!(run_job("nexmark-q2", &["events=5000", "seed=9"], 2), q2);
    assert!(!q2.is_empty());
}

/// Reference q5: count bids per (auction, sliding window 10 s / 2 s), then per window the
/// auctions with the highest count.
fn reference_q5(events: u64, seed: u64) -> Vec<String> {
    let mut counts: HashMap<(i64, i64), u64> = HashMap::new();
    for b in bids(events, seed) {
        let mut start = b.date_time - b.date_time.rem_euclid(2000);
        while start > b.date_time - 10_000 {
            *counts.entry((start + 10_000, b.auction)).or_default() += 1;
            start -= 2000;
        }
    }
    let mut best: HashMap<i64, u64> = HashMap::new();
    for (&(end, _), &c) in &counts {
        let e = best.entry(end).or_default();
        *e = (*e).max(c);
    }
    sorted(
        counts
            .iter()
            .filter(|((end, _), c)| best[end] == **c)
            .map(|((end, a), c)| format!("{a},{end},{c}"))
            .collect(),
    )
}

#[test]
fn nexmark_q5_matches_reference() {
    // 200k events at 10k events/s of event time: 20 s, i.e. ~14 windows.
    let expected = reference_q5(200_000, 1);
    assert!(expected.len() >= 10);
    for p in [1, 4] {
        assert_eq!(
            run_job("nexmark-q5", &["events=200000", "seed=1"], p),
            expected,
            "parallelism {p}"
        );
    }
}

fn reference_q7(events: u64, seed: u64) -> Vec<String> {
    let mut windows: BTreeMap<i64, (i64, Vec<String>)> = BTreeMap::new();
    for b in bids(events, seed) {
        let end = b.date_time - b.date_time.rem_euclid(10_000) + 10_000;
        let line = format!("{},{},{},{}", b.auction, b.price, b.bidder, b.date_time);
        let w = windows.entry(end).or_insert((i64::MIN, Vec::new()));
        if b.price > w.0 {
            *w = (b.price, vec![line]);
        } else if b.price == w.0 {
            w.1.push(line);
        }
    }
    sorted(windows.into_values().flat_map(|(_, l)| l).collect())
}

#[test]
fn nexmark_q7_matches_reference() {
    let expected = reference_q7(300_000, 2);
    assert!(expected.len() >= 3);
    for p in [1, 3] {
        assert_eq!(
            run_job("nexmark-q7", &["events=300000", "seed=2"], p),
            expected,
            "parallelism {p}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn windowed_jobs_give_the_same_output_at_parallelism_1_and_4(
        seed in 0u64..1000,
        keys in 1u64..200,
        window in 5u64..200,
        slide_div in 1u64..7,
    ) {
        let slide = (window / slide_div).max(1);
        let params = [
            "events=3000".to_string(),
            format!("seed={seed}"),
            format!("keys={keys}"),
            "events_per_ms=3".to_string(),
            format!("window_ms={window}"),
            format!("slide_ms={slide}"),
        ];
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        let one = run_job("sliding-count", &params, 1);
        let four = run_job("sliding-count", &params, 4);
        prop_assert_eq!(&one, &four);
        let g = datagen(seed, keys, 3);
        prop_assert_eq!(one, reference_window_counts(3000, &g, window as i64, slide as i64));
    }
}
