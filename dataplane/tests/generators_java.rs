//! Same input on both sides: the Rust generators and their Java twins (the Flink baseline's
//! sources, `tests/peers/flink`) must produce identical event sequences. This compiles the Java
//! generator classes with plain `javac` (no Maven, no Flink, no download), runs their checksum
//! program over the first million events of each generator, and compares with the Rust side.
//!
//! Needs a JDK (17+) on `PATH`, or `JAVA_HOME` set.

use std::path::{Path, PathBuf};
use std::process::Command;

use mesoflow_dataplane::checksum::Checksum;
use mesoflow_dataplane::generators::{Datagen, DatagenConfig, NexmarkConfig, TextGen};

const EVENTS: u64 = 1_000_000;
const SEED: u64 = 42;

fn java_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers/flink/src/main/java/io/mesoflow/peers/gen")
}

fn jdk_tool(name: &str) -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) => Path::new(&home).join("bin").join(name),
        None => PathBuf::from(name),
    }
}

/// Runs the Java checksum program and returns its `<name> records=.. checksum=..` lines.
fn java_checksums() -> Vec<(String, String)> {
    let classes = tempfile::tempdir().expect("temp dir for javac output");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(java_sources())
        .expect("Java generator sources under tests/peers/flink")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "java"))
        .collect();
    sources.sort();
    assert!(
        sources.len() >= 7,
        "Java generator sources missing: {sources:?}"
    );
    let javac = Command::new(jdk_tool("javac"))
        .arg("-d")
        .arg(classes.path())
        .args(&sources)
        .output()
        .expect("javac not found: install a JDK 17+ or set JAVA_HOME");
    assert!(
        javac.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let run = Command::new(jdk_tool("java"))
        .arg("-cp")
        .arg(classes.path())
        .arg("io.mesoflow.peers.gen.GenChecksums")
        .arg(EVENTS.to_string())
        .arg(SEED.to_string())
        .output()
        .expect("java not found: install a JDK 17+ or set JAVA_HOME");
    assert!(
        run.status.success(),
        "GenChecksums failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout)
        .expect("ASCII output")
        .lines()
        .map(|l| {
            let (name, rest) = l.split_once(' ').expect("`<name> <checksum line>`");
            (name.to_owned(), rest.to_owned())
        })
        .collect()
}

fn rust_datagen() -> Checksum {
    let g = Datagen::new(DatagenConfig {
        seed: SEED,
        ..DatagenConfig::default()
    });
    let mut sum = Checksum::default();
    let mut line = Vec::with_capacity(128);
    for i in 0..EVENTS {
        let r = g.record(i);
        line.clear();
        line.extend_from_slice(format!("{},{},{},{},", r.seq, r.key, r.value, r.ts_ms).as_bytes());
        r.append_payload(&mut line);
        sum.add_line(&line);
    }
    sum
}

fn rust_text() -> Checksum {
    let g = TextGen::new(SEED);
    let mut sum = Checksum::default();
    let mut line = String::new();
    for i in 0..EVENTS {
        line.clear();
        g.line_into(i, &mut line);
        sum.add_line(line.as_bytes());
    }
    sum
}

fn rust_nexmark() -> Checksum {
    let g = NexmarkConfig {
        seed: SEED,
        ..NexmarkConfig::default()
    };
    let mut sum = Checksum::default();
    let mut extra = String::new();
    for i in 0..EVENTS {
        extra.clear();
        let line = match g.bid_with_extra(i, &mut extra) {
            Some(bid) => format!("{bid},{extra}"),
            None => g.event(i).to_string(),
        };
        sum.add_line(line.as_bytes());
    }
    sum
}

#[test]
fn rust_and_java_generators_emit_identical_streams() {
    let java = java_checksums();
    let rust = [
        ("datagen", rust_datagen()),
        ("text", rust_text()),
        ("nexmark", rust_nexmark()),
    ];
    assert_eq!(java.len(), rust.len(), "Java printed {java:?}");
    for ((java_name, java_line), (rust_name, rust_sum)) in java.iter().zip(rust.iter()) {
        assert_eq!(java_name, rust_name);
        assert_eq!(rust_sum.records, EVENTS);
        assert_eq!(
            java_line,
            &rust_sum.to_string(),
            "{rust_name}: the Java twin and the Rust generator disagree"
        );
    }
}
