//! The DataStream API, planning (chaining) and the local runtime, end to end with in-memory
//! sources and a collecting sink.

use std::collections::BTreeMap;
use std::sync::Arc;

use mesoflow_dataplane::jobgraph::{NodeKind, Partitioning};
use mesoflow_dataplane::plan::plan;
use mesoflow_dataplane::source::VecSource;
use mesoflow_dataplane::{EnvConfig, Rec, RuntimeConfig, SinkSpec, StreamEnvironment, run_local};
use parking_lot::Mutex;

fn env(parallelism: u32) -> (StreamEnvironment, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let env = StreamEnvironment::new(EnvConfig {
        job_name: "test".into(),
        parallelism,
        sink: SinkSpec::Collect(lines.clone()),
        ..Default::default()
    });
    (env, lines)
}

fn small_batches() -> RuntimeConfig {
    RuntimeConfig {
        batch_size: 7,
        channel_capacity: 2,
        buffer_timeout_ms: 5,
        ..Default::default()
    }
}

fn sorted(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    let mut v = lines.lock().clone();
    v.sort();
    v
}

fn words_job(parallelism: u32, text: &[&str]) -> Vec<String> {
    let (mut env, lines) = env(parallelism);
    let input: Vec<Rec<String>> = text.iter().map(|s| Rec::untimed(s.to_string())).collect();
    let input = Arc::new(input);
    env.add_source("lines", move |ctx| {
        Ok(VecSource::new(&input, ctx.subtask, ctx.parallelism))
    })
    .flat_map(|line: String, out: &mut Vec<(String, u64)>| {
        out.extend(line.split_whitespace().map(|w| (w.to_string(), 1)))
    })
    .key_by(|p: &(String, u64)| p.0.clone())
    .reduce(|acc, v| (v.0, acc.1 + v.1))
    .sink_lines("output", |p, out| {
        use std::fmt::Write;
        let _ = write!(out, "{} {}", p.0, p.1);
    });
    let job = env.build().unwrap();
    run_local(job, small_batches()).unwrap();
    sorted(&lines)
}

#[test]
fn rolling_word_count_emits_one_update_per_word_at_any_parallelism() {
    let text: Vec<String> = (0..200)
        .map(|i| format!("w{} w{} common", i % 7, i % 3))
        .collect();
    let text: Vec<&str> = text.iter().map(|s| s.as_str()).collect();
    let mut expected = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in &text {
        for w in line.split_whitespace() {
            let c = counts.entry(w.to_string()).or_default();
            *c += 1;
            expected.push(format!("{w} {c}"));
        }
    }
    expected.sort();
    assert_eq!(words_job(1, &text), expected);
    assert_eq!(words_job(4, &text), expected);
}

#[test]
fn forward_edges_of_equal_parallelism_are_chained() {
    let (mut env, _lines) = env(2);
    let data = Arc::new(vec![Rec::untimed(1u64)]);
    env.add_source("src", move |ctx| {
        Ok(VecSource::new(&data, ctx.subtask, ctx.parallelism))
    })
    .map(|v: u64| v + 1)
    .filter(|v| *v > 0)
    .key_by(|v: &u64| *v)
    .reduce(|a, b| a + b)
    .rebalance()
    .map(|v| v * 2)
    .set_parallelism(3)
    .sink_lines("output", |v, out| out.push_str(&v.to_string()));
    let job = env.build().unwrap();
    let g = &job.graph;
    assert_eq!(g.nodes.len(), 6);
    assert_eq!(g.nodes[0].kind, NodeKind::Source);
    assert_eq!(g.nodes[5].kind, NodeKind::Sink);
    let p = plan(g).unwrap();
    // source -> map -> filter chained; reduce alone (keyed input, rebalanced output);
    // map(p=3) -> sink: the sink has the default parallelism 2, so the forward edge is rebalanced.
    let chains: Vec<Vec<usize>> = p.chains.iter().map(|c| c.nodes.clone()).collect();
    assert_eq!(chains, vec![vec![0, 1, 2], vec![3], vec![4], vec![5]]);
    let parts: Vec<Partitioning> = p.exchanges.iter().map(|x| x.partitioning).collect();
    assert_eq!(
        parts,
        vec![
            Partitioning::KeyGroupHash,
            Partitioning::Rebalance,
            Partitioning::Rebalance
        ]
    );
    // all-to-all channels: 2x2 + 2x3 + 3x2
    assert_eq!(p.channels.len(), 4 + 6 + 6);
    // The graph survives a JSON round trip, and ids are deterministic.
    let json = g.to_json();
    let back = mesoflow_dataplane::JobGraph::from_json(&json).unwrap();
    assert_eq!(&back, g);
    assert_eq!(g.nodes[1].id, "1-map");
}

#[test]
fn union_and_broadcast_deliver_every_record() {
    let (mut env, lines) = env(2);
    let a = Arc::new((0..50u64).map(Rec::untimed).collect::<Vec<_>>());
    let b = Arc::new((100..130u64).map(Rec::untimed).collect::<Vec<_>>());
    let sa = env.add_source("a", move |ctx| {
        Ok(VecSource::new(&a, ctx.subtask, ctx.parallelism))
    });
    let sb = env.add_source("b", move |ctx| {
        Ok(VecSource::new(&b, ctx.subtask, ctx.parallelism))
    });
    sa.union(&sb)
        .broadcast()
        .map(|v| v)
        .set_parallelism(3)
        .sink_lines("output", |v, out| out.push_str(&v.to_string()));
    run_local(env.build().unwrap(), small_batches()).unwrap();
    let got = sorted(&lines);
    assert_eq!(got.len(), 80 * 3);
    let mut expected: Vec<String> = (0..50u64)
        .chain(100..130)
        .flat_map(|v| std::iter::repeat_n(v.to_string(), 3))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn duplicate_uids_are_rejected() {
    let (mut env, _l) = env(1);
    let d = Arc::new(vec![Rec::untimed(1u8)]);
    env.add_source("s", move |c| {
        Ok(VecSource::new(&d, c.subtask, c.parallelism))
    })
    .uid("same")
    .map(|v| v)
    .uid("same")
    .sink_lines("output", |v, o| o.push_str(&v.to_string()));
    let err = env.build().err().unwrap().to_string();
    assert!(err.contains("'same' is used twice"), "{err}");
}

#[test]
fn watermark_is_the_minimum_over_inputs_so_a_slow_input_is_not_late() {
    use mesoflow_dataplane::OutputTag;
    use mesoflow_dataplane::WatermarkStrategy;
    use mesoflow_dataplane::sources::{GeneratorBounds, GeneratorSource};
    use mesoflow_dataplane::window::WindowAssigner;

    let (mut env, lines) = env(1);
    // The slow input: event times 0..200, 2000 records per second of wall time.
    let slow = env
        .add_source("slow", |ctx| {
            Ok(GeneratorSource::new(
                |i| Some(i as i64),
                GeneratorBounds {
                    events: Some(200),
                    rate: 2000,
                },
                ctx,
            ))
        })
        .assign_timestamps_and_watermarks(|t| *t, WatermarkStrategy::monotonous());
    // The fast input races ahead to event time 100_000 at once.
    let fast = env
        .add_source("fast", |ctx| {
            Ok(GeneratorSource::new(
                |i| Some(100_000 + i as i64),
                GeneratorBounds {
                    events: Some(200),
                    rate: 0,
                },
                ctx,
            ))
        })
        .assign_timestamps_and_watermarks(|t| *t, WatermarkStrategy::monotonous());
    let late = OutputTag::<i64>::new("late");
    let counts = slow
        .union(&fast)
        .key_by(|_t: &i64| 0u8)
        .window(WindowAssigner::tumbling_event_time(50))
        .side_output_late_data(&late)
        .aggregate_with(mesoflow_dataplane::keyed::Count, |_k: &u8, w, c| (w.end, c))
        .unwrap();
    counts.sink_lines("output", |(end, c), out| {
        out.push_str(&format!("{end} {c}"))
    });
    counts
        .side_output(&late)
        .unwrap()
        .sink_lines("late", |t, out| out.push_str(&format!("late {t}")));
    run_local(env.build().unwrap(), small_batches()).unwrap();
    let got = sorted(&lines);
    let mut expected: Vec<String> = (1..=4).map(|w| format!("{} 50", w * 50)).collect();
    expected.extend((0..4).map(|w| format!("{} 50", 100_050 + w * 50)));
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn an_unbounded_job_stops_cleanly_when_cancelled() {
    use mesoflow_dataplane::sources::{GeneratorBounds, GeneratorSource};
    let (mut env, _lines) = env(2);
    env.add_source("forever", |ctx| {
        Ok(GeneratorSource::new(
            Some::<u64>,
            GeneratorBounds {
                events: None,
                rate: 0,
            },
            ctx,
        ))
    })
    .key_by(|v: &u64| *v % 1000)
    .reduce(|a: &u64, b: u64| (*a).max(b))
    .add_sink("discard", |_ctx| {
        Ok(Box::new(mesoflow_dataplane::emitter::DiscardEmitter))
    });
    let handle =
        mesoflow_dataplane::start_local(env.build().unwrap(), RuntimeConfig::default()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!handle.is_finished());
    handle.cancel_token().cancel();
    let result = handle.join().unwrap();
    assert!(result.cancelled);
    assert!(result.records_in > 0);
}

#[test]
fn a_shipped_graph_rebuilds_the_same_program_with_its_parallelism() {
    use mesoflow_dataplane::jobs::{self, Params};
    let params = Params::parse(&["events=5000", "seed=4", "keys=30", "window_ms=50"]).unwrap();
    let build = |lines: &Arc<Mutex<Vec<String>>>, parallelism| {
        jobs::build(
            "windowed-count",
            &params,
            EnvConfig {
                parallelism,
                sink: SinkSpec::Collect(lines.clone()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    // The scheduler's copy, rescaled to 3 and shipped as JSON.
    let scheduler_lines = Arc::new(Mutex::new(Vec::new()));
    let mut graph = build(&scheduler_lines, 1).graph;
    for n in &mut graph.nodes {
        n.parallelism = 3;
    }
    let shipped = mesoflow_dataplane::JobGraph::from_json(&graph.to_json()).unwrap();
    // The executor rebuilds the program from name and parameters and adopts the graph.
    let lines = Arc::new(Mutex::new(Vec::new()));
    let job = build(&lines, 1).adopt_graph(shipped).unwrap();
    assert!(job.graph.nodes.iter().all(|n| n.parallelism == 3));
    run_local(job, small_batches()).unwrap();
    let reference = Arc::new(Mutex::new(Vec::new()));
    run_local(build(&reference, 1), small_batches()).unwrap();
    assert_eq!(sorted(&lines), sorted(&reference));
    // A graph of another program is refused.
    let other = jobs::build("nexmark-q0", &Params::default(), EnvConfig::default())
        .unwrap()
        .graph;
    let err = build(&lines, 1)
        .adopt_graph(other)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn a_panicking_operator_fails_the_job_with_its_name() {
    let (mut env, _lines) = env(2);
    let data = Arc::new((0..10_000u64).map(Rec::untimed).collect::<Vec<_>>());
    env.add_source("numbers", move |ctx| {
        Ok(VecSource::new(&data, ctx.subtask, ctx.parallelism))
    })
    .key_by(|v: &u64| *v)
    .reduce(|a: &u64, b: u64| *a + b)
    .map(|v| {
        assert!(v != 4242, "boom at {v}");
        v
    })
    .name("fragile")
    .sink_lines("output", |v, out| out.push_str(&v.to_string()));
    let err = run_local(env.build().unwrap(), small_batches())
        .expect_err("the job must fail")
        .to_string();
    assert!(err.contains("boom at 4242"), "{err}");
}
