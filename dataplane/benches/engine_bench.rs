//! Single-process engine benchmark: runs built-in jobs on the local runtime with the checksum
//! sink (every output line is formatted and hashed, as the Flink baseline does) and prints
//! records/s and records per CPU-second (process CPU time from /proc/self/stat).
//!
//! cargo bench -p mesoflow-dataplane --bench engine-bench -- [FILTER] [--parallelism N] [--scale F]

use std::time::Instant;

use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::{EnvConfig, RuntimeConfig, SinkSpec, run_local};

struct Case {
    name: &'static str,
    job: &'static str,
    events: u64,
    params: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "stateless map/filter, 100-byte records",
        job: "stateless",
        events: 40_000_000,
        params: &[],
    },
    Case {
        name: "tumbling count 1 s, 100K keys",
        job: "windowed-count",
        events: 20_000_000,
        params: &["keys=100000", "window_ms=1000"],
    },
    Case {
        name: "tumbling count 60 s, 100K keys",
        job: "windowed-count",
        events: 20_000_000,
        params: &["keys=100000", "window_ms=60000"],
    },
    Case {
        name: "sliding count 60 s / 1 s, 100K keys",
        job: "sliding-count",
        events: 20_000_000,
        params: &["keys=100000", "window_ms=60000", "slide_ms=1000"],
    },
    Case {
        name: "tumbling count 10 s, 10M keys",
        job: "windowed-count",
        events: 20_000_000,
        params: &["keys=10000000", "window_ms=10000"],
    },
    Case {
        name: "nexmark-q1",
        job: "nexmark-q1",
        events: 40_000_000,
        params: &[],
    },
    Case {
        name: "nexmark-q5",
        job: "nexmark-q5",
        events: 20_000_000,
        params: &[],
    },
];

/// Process CPU time (user + system) in seconds.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Linux reports these in USER_HZ = 100 ticks per second.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut parallelism = 2u32;
    let mut scale = 1.0f64;
    let mut filter: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--parallelism" => {
                i += 1;
                parallelism = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(2);
            }
            "--scale" => {
                i += 1;
                scale = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(1.0);
            }
            "--bench" => {}
            other => filter = Some(other.to_string()),
        }
        i += 1;
    }
    println!(
        "| workload | events | wall s | records/s | CPU s | records per CPU-s | output records |"
    );
    println!("|---|---|---|---|---|---|---|");
    for case in CASES {
        if let Some(f) = &filter
            && !case.name.contains(f.as_str())
            && !case.job.contains(f.as_str())
        {
            continue;
        }
        let events = ((case.events as f64) * scale) as u64;
        let mut params: Vec<String> = case.params.iter().map(|s| s.to_string()).collect();
        params.push(format!("events={events}"));
        let params = match Params::parse(&params) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}: {e}", case.name);
                continue;
            }
        };
        let job = match jobs::build(
            case.job,
            &params,
            EnvConfig {
                parallelism,
                sink: SinkSpec::Checksum,
                ..Default::default()
            },
        ) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("{}: {e}", case.name);
                continue;
            }
        };
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let result = match run_local(job, RuntimeConfig::default()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", case.name);
                continue;
            }
        };
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let n = result.records_in as f64;
        println!(
            "| {} (p={parallelism}) | {} | {:.2} | {:.2} M | {:.2} | {:.2} M | {} |",
            case.name,
            result.records_in,
            wall,
            n / wall / 1e6,
            cpu,
            n / cpu / 1e6,
            result.records_out,
        );
    }
}
