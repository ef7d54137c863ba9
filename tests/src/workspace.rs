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
