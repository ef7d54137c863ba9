//! Jobs split across two executors inside one test process: each executor wires only the
//! subtasks placed on it, channels between them cross a real QUIC shuffle (mutual TLS on
//! 127.0.0.1), and the results must equal the single-process run exactly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::plan::plan;
use mesoflow_dataplane::runtime::channel::RemoteLinks;
use mesoflow_dataplane::runtime::task::spawn_subtask;
use mesoflow_dataplane::runtime::wiring::{Deployment, Placement, wire};
use mesoflow_dataplane::shuffle::{ClusterCa, PeerTraffic, ShuffleConfig, ShuffleEndpoint};
use mesoflow_dataplane::{CancelToken, EnvConfig, JobMetrics, RuntimeConfig, SinkSpec, run_local};

const EXECUTORS: [&str; 2] = ["tm-a", "tm-b"];

fn config(parallelism: u32) -> EnvConfig {
    EnvConfig {
        parallelism,
        sink: SinkSpec::Checksum,
        ..Default::default()
    }
}

/// (records out, checksum) of the single-process run.
fn local(job: &str, params: &Params, parallelism: u32) -> (u64, u64) {
    let r = run_local(
        jobs::build(job, params, config(parallelism)).unwrap(),
        RuntimeConfig::default(),
    )
    .unwrap();
    (r.records_out, r.checksum)
}

/// (records out, checksum, traffic of each executor) of a run where subtask `i` of every chain
/// runs on executor `i % 2`.
fn on_two_executors(
    job: &str,
    params: &Params,
    parallelism: u32,
) -> (u64, u64, Vec<Vec<PeerTraffic>>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ca = ClusterCa::generate("distributed-test").unwrap();
    let endpoints: Vec<ShuffleEndpoint> = EXECUTORS
        .iter()
        .map(|id| {
            let _guard = rt.enter();
            let creds = ca.issue(id).unwrap();
            ShuffleEndpoint::bind(
                "127.0.0.1:0".parse().unwrap(),
                &creds,
                ShuffleConfig::default(),
            )
            .unwrap()
        })
        .collect();
    // Every executor rebuilds the program from its name and parameters.
    let jobs: Vec<_> = EXECUTORS
        .iter()
        .map(|_| jobs::build(job, params, config(parallelism)).unwrap())
        .collect();
    let plan = plan(&jobs[0].graph).unwrap();
    let mut placement = Placement::default();
    for s in plan.subtasks() {
        placement
            .executor_of
            .insert(s, EXECUTORS[s.index as usize % 2].to_string());
    }
    for (id, e) in EXECUTORS.iter().zip(&endpoints) {
        let addr: SocketAddr = e.local_addr().unwrap();
        placement.endpoints.insert(id.to_string(), addr);
    }
    let cancel = CancelToken::default();
    let runtime_config = RuntimeConfig::default();
    let mut running = Vec::new();
    let mut metrics = Vec::new();
    for (i, id) in EXECUTORS.iter().enumerate() {
        let links = Arc::new(RemoteLinks {
            endpoint: endpoints[i].clone(),
            runtime: rt.handle().clone(),
            job: 0xfeed,
            attempt: 0,
        });
        let m = Arc::new(JobMetrics::default());
        let runners = wire(
            &Deployment {
                job: &jobs[i],
                plan: &plan,
                here: id,
                placement: Some(&placement),
                links: Some(links),
                config: &runtime_config,
                state_backend: &mesoflow_dataplane::StateBackend::Heap,
                cancel: &cancel,
                checkpoints: None,
                restored: None,
            },
            &|_| m.clone(),
        )
        .unwrap();
        assert!(!runners.is_empty(), "{id} runs nothing");
        for r in runners {
            running.push(spawn_subtask(r, |_, _, _| {}).unwrap());
        }
        metrics.push(m);
    }
    let mut failures = HashMap::new();
    for r in running {
        let name = r.name.clone();
        if let Err(e) = r.join() {
            failures.insert(name, e.to_string());
        }
    }
    assert!(failures.is_empty(), "subtasks failed: {failures:?}");
    let out = metrics.iter().map(|m| m.records_out()).sum();
    let checksum = metrics
        .iter()
        .fold(0u64, |acc, m| acc.wrapping_add(m.checksum()));
    let traffic = endpoints.iter().map(|e| e.traffic()).collect();
    (out, checksum, traffic)
}

#[test]
fn every_built_in_job_gives_the_single_process_result_across_two_executors() {
    for spec in jobs::catalog() {
        let mut params = Params::default();
        if spec.name == "wordcount" {
            params.set("events", 3_000);
        } else {
            params.set("events", 40_000);
        }
        if spec.params.iter().any(|p| p.name == "keys") {
            params.set("keys", 500);
        }
        let expected = local(spec.name, &params, 4);
        let (out, checksum, _) = on_two_executors(spec.name, &params, 4);
        assert!(
            expected.0 > 0,
            "{}: the reference produced nothing",
            spec.name
        );
        assert_eq!(
            (out, checksum),
            expected,
            "{}: records out and checksum differ from the single-process run",
            spec.name
        );
    }
}

#[test]
fn a_keyed_job_moves_records_over_quic_in_both_directions() {
    let mut params = Params::default();
    params.set("events", 100_000);
    params.set("keys", 1_000);
    let expected = local("windowed-count", &params, 2);
    let (out, checksum, traffic) = on_two_executors("windowed-count", &params, 2);
    assert_eq!((out, checksum), expected);
    // About half of 100 K records of ~100 bytes change executor in each direction.
    for (i, peers) in traffic.iter().enumerate() {
        assert_eq!(peers.len(), 1, "executor {i} talked to {peers:?}");
        let t = &peers[0];
        assert!(
            t.bytes_sent > 2_000_000 && t.bytes_received > 2_000_000,
            "executor {i}: {t:?}"
        );
    }
    assert_eq!(traffic[0][0].bytes_sent, traffic[1][0].bytes_received);
    assert_eq!(traffic[1][0].bytes_sent, traffic[0][0].bytes_received);
}
