//! What end-to-end tests need from the workspace: its binaries, and the engine's own answer to
//! compare a distributed run with.

use std::path::PathBuf;

use mesoflow_dataplane::checksum::checksum_line;
use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::{EnvConfig, RuntimeConfig, SinkSpec, run_local};

/// A binary of the workspace, in the profile directory of the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        binary.display()
    );
    binary
}

/// The `records=<N> checksum=<hex>` line of the job run in one process by the engine.
pub fn reference(job: &str, params: &[(&str, &str)], parallelism: u32) -> String {
    let mut p = Params::default();
    for (k, v) in params {
        p.set(k, v);
    }
    let config = EnvConfig {
        parallelism,
        sink: SinkSpec::Checksum,
        ..Default::default()
    };
    let r = run_local(
        jobs::build(job, &p, config).expect("the reference job builds"),
        RuntimeConfig::default(),
    )
    .expect("the reference job runs");
    checksum_line(r.records_out, r.checksum)
}

/// The output lines of `job` run in this process without failures, sorted: what the committed
/// part files of any run of it must hold.
pub fn reference_lines(job: &str, params: &[(&str, &str)], parallelism: u32) -> Vec<String> {
    let mut p = Params::default();
    for (k, v) in params {
        p.set(k, v);
    }
    let lines = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let config = EnvConfig {
        parallelism,
        sink: SinkSpec::Collect(lines.clone()),
        ..Default::default()
    };
    run_local(
        jobs::build(job, &p, config).expect("the reference job builds"),
        RuntimeConfig::default(),
    )
    .expect("the reference job runs");
    let mut v = lines.lock().clone();
    v.sort();
    v
}

/// The lines of the committed (visible `part-*`) files of a file sink's directory, sorted;
/// hidden in-progress and pending files are not output.
pub fn committed_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).expect("the output directory exists") {
        let e = e.expect("a directory entry");
        if e.file_name().to_string_lossy().starts_with("part-") {
            let text = std::fs::read_to_string(e.path()).expect("a readable part file");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// What separates two sorted line lists, for a failure message: how many lines are missing
/// from `got` and how many are extra, with the first few of each.
pub fn line_difference(expected: &[String], got: &[String]) -> String {
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut e, mut g) = (0, 0);
    while e < expected.len() || g < got.len() {
        match (expected.get(e), got.get(g)) {
            (Some(a), Some(b)) if a == b => {
                e += 1;
                g += 1;
            }
            (Some(a), Some(b)) if a < b => {
                missing.push(a.as_str());
                e += 1;
            }
            (Some(a), None) => {
                missing.push(a.as_str());
                e += 1;
            }
            (_, Some(b)) => {
                extra.push(b.as_str());
                g += 1;
            }
            (None, None) => break,
        }
    }
    let sample = |v: &[&str]| v.iter().take(5).copied().collect::<Vec<_>>().join(" | ");
    format!(
        "{} expected, {} committed: {} missing (first: {}), {} extra (first: {})",
        expected.len(),
        got.len(),
        missing.len(),
        sample(&missing),
        extra.len(),
        sample(&extra)
    )
}
