//! The Flink baseline computes what docs/workloads.md says: its `records= checksum=` lines are
//! compared with a straightforward in-memory reference computed here from the Rust generators.
//! Together with `generators_java.rs` (same input on both sides) this makes a mismatch in the
//! benchmark runner point at the engine under test, not at the baseline.
//!
//! Needs the baseline jar: built here with Maven when missing (the first build downloads Flink
//! into `~/.m2`), hence ignored by default; `FLINK_BASELINE_JAR` points at a prebuilt jar.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use mesoflow_dataplane::checksum::Checksum;
use mesoflow_dataplane::generators::{Datagen, DatagenConfig, NexmarkConfig, TextGen};

fn jar() -> PathBuf {
    std::env::var_os("FLINK_BASELINE_JAR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/peers/flink/target/mesoflow-flink-baseline.jar")
        },
        PathBuf::from,
    )
}

/// The baseline jar, built once per test binary if it does not exist yet.
fn built_jar() -> &'static PathBuf {
    static JAR: OnceLock<PathBuf> = OnceLock::new();
    JAR.get_or_init(|| {
        let jar = jar();
        if !jar.exists() {
            let pom =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/flink/pom.xml");
            let status = Command::new("mvn")
                .args(["-q", "-B", "-DskipTests", "package", "-f"])
                .arg(&pom)
                .status()
                .expect("mvn not found: install Maven 3.8+ or set FLINK_BASELINE_JAR");
            assert!(status.success(), "building the Flink baseline failed");
        }
        assert!(
            jar.exists(),
            "{} missing after the Maven build",
            jar.display()
        );
        jar
    })
}

fn flink(job: &str, params: &[&str]) -> String {
    let jar = built_jar();
    let out = Command::new("java")
        .arg("-jar")
        .arg(jar)
        .arg(job)
        .args(params)
        .output()
        .expect("java not found: install a JDK 17+");
    assert!(
        out.status.success(),
        "flink {job} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("ASCII output")
        .trim_end()
        .to_owned()
}

fn sum_lines(lines: impl IntoIterator<Item = String>) -> String {
    let mut c = Checksum::default();
    for l in lines {
        c.add_line(l.as_bytes());
    }
    c.to_string()
}

fn datagen(keys: u64) -> Datagen {
    Datagen::new(DatagenConfig {
        seed: 7,
        keys,
        ..DatagenConfig::default()
    })
}

/// Event-time window starts containing `ts` (Flink's and mesoflow's rule, epoch-aligned).
fn window_starts(ts: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let last = ts - ts.rem_euclid(slide);
    (0..)
        .map(move |k| last - k * slide)
        .take_while(move |&s| s > ts - size)
}

fn window_counts(
    items: impl Iterator<Item = (i64, i64)>,
    size: i64,
    slide: i64,
) -> HashMap<(i64, i64), u64> {
    let mut counts = HashMap::new();
    for (key, ts) in items {
        for start in window_starts(ts, size, slide) {
            *counts.entry((key, start + size)).or_default() += 1;
        }
    }
    counts
}

#[test]
#[ignore = "needs Maven and Flink (downloaded into ~/.m2 on first use): run scripts/test.sh"]
fn flink_stateless_matches_reference() {
    let g = datagen(1000);
    let expected = sum_lines((0..300_000).filter_map(|i| {
        let r = g.record(i);
        (!r.value.is_multiple_of(10))
            .then(|| format!("{},{}", r.key, r.value * 3 + u64::from(r.payload_len)))
    }));
    let got = flink(
        "stateless",
        &["events=300000", "keys=1000", "seed=7", "parallelism=2"],
    );
    assert_eq!(got, expected);
}

#[test]
#[ignore = "needs Maven and Flink (downloaded into ~/.m2 on first use): run scripts/test.sh"]
fn flink_wordcount_matches_reference() {
    let g = TextGen::new(7);
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut lines = Vec::new();
    for i in 0..20_000 {
        for word in g
            .line(i)
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let word = word.to_lowercase();
            let c = counts.entry(word.clone()).or_default();
            *c += 1;
            lines.push(format!("{word} {c}"));
        }
    }
    let got = flink("wordcount", &["events=20000", "seed=7", "parallelism=2"]);
    assert_eq!(got, sum_lines(lines));
}

#[test]
#[ignore = "needs Maven and Flink (downloaded into ~/.m2 on first use): run scripts/test.sh"]
fn flink_windowed_and_sliding_counts_match_reference() {
    let g = datagen(500);
    let events = 200_000u64;
    let records = || (0..events).map(|i| (g.record(i).key as i64, g.record(i).ts_ms));
    let line = |((k, end), c): ((i64, i64), u64)| format!("{k},{end},{c}");
    let tumbling = sum_lines(window_counts(records(), 50, 50).into_iter().map(line));
    let got = flink(
        "windowed-count",
        &["events=200000", "keys=500", "seed=7", "window_ms=50"],
    );
    assert_eq!(got, tumbling);
    let sliding = sum_lines(window_counts(records(), 60, 10).into_iter().map(line));
    let got = flink(
        "sliding-count",
        &[
            "events=200000",
            "keys=500",
            "seed=7",
            "window_ms=60",
            "slide_ms=10",
            "checkpoint_ms=1000",
        ],
    );
    assert_eq!(got, sliding);
}

#[test]
#[ignore = "needs Maven and Flink (downloaded into ~/.m2 on first use): run scripts/test.sh"]
fn flink_nexmark_q1_and_q5_match_reference() {
    let nx = NexmarkConfig {
        seed: 7,
        ..NexmarkConfig::default()
    };
    let events = 300_000u64;
    let bids: Vec<_> = (0..events).filter_map(|i| nx.bid(i)).collect();
    let q1 = sum_lines(bids.iter().map(|b| {
        format!(
            "{},{},{},{}",
            b.auction,
            b.bidder,
            b.price * 908 / 1000,
            b.date_time
        )
    }));
    assert_eq!(flink("nexmark-q1", &["events=300000", "seed=7"]), q1);

    let counts = window_counts(bids.iter().map(|b| (b.auction, b.date_time)), 10_000, 2_000);
    let mut max_per_end: HashMap<i64, u64> = HashMap::new();
    for (&(_, end), &c) in &counts {
        let m = max_per_end.entry(end).or_default();
        *m = (*m).max(c);
    }
    let q5 = sum_lines(
        counts
            .iter()
            .filter(|&(&(_, end), &c)| max_per_end[&end] == c)
            .map(|(&(auction, end), &c)| format!("{auction},{end},{c}")),
    );
    assert_eq!(
        flink("nexmark-q5", &["events=300000", "seed=7", "parallelism=2"]),
        q5
    );
}
