//! Jobs over the datagen stream: `stateless`, `windowed-count`, `sliding-count`.

use crate::element::Data;
use crate::error::{EngineError, Result};
use crate::generators::{Datagen, DatagenConfig};
use crate::jobs::format::push_u64;
use crate::jobs::{JobSpec, ParamSpec, Params, events_bound};
use crate::keyed::Count;
use crate::sources::{GeneratorBounds, GeneratorSource};
use crate::stream::{DataStream, StreamEnvironment};
use crate::watermarks::WatermarkStrategy;
use crate::window::WindowAssigner;

/// Largest payload a datagen record carries inline (records stay allocation-free).
pub const MAX_PAYLOAD: usize = 80;

/// A datagen record with its payload bytes materialised (~100 bytes with the default payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DataEvent {
    /// Grouping key.
    pub key: u64,
    /// Uniform 32-bit value.
    pub value: u64,
    /// Event time (ms).
    pub ts_ms: i64,
    /// Payload length.
    pub payload_len: u32,
    /// Payload bytes (`..payload_len` are meaningful).
    pub payload: [u8; MAX_PAYLOAD],
}

impl DataEvent {
    /// Record `index` of `gen`.
    #[inline]
    pub fn generate(datagen: &Datagen, index: u64) -> Self {
        let r = datagen.record(index);
        let mut payload = [0u8; MAX_PAYLOAD];
        r.write_payload(&mut payload);
        Self {
            key: r.key,
            value: r.value,
            ts_ms: r.ts_ms,
            payload_len: r.payload_len,
            payload,
        }
    }
}

const fn p(name: &'static str, default: &'static str, help: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        default,
        help,
    }
}

const COMMON: [ParamSpec; 6] = [
    p("events", "1000000", "records to generate (0 = unbounded)"),
    p("seed", "0", "generator seed"),
    p("keys", "100000", "distinct keys"),
    p("payload", "76", "payload bytes per record (at most 80)"),
    p(
        "events_per_ms",
        "1000",
        "event-time rate of the generator (records per ms)",
    ),
    p(
        "rate",
        "0",
        "records per second over all sources (0 = as fast as possible)",
    ),
];

const WINDOWED: [ParamSpec; 8] = [
    COMMON[0],
    COMMON[1],
    COMMON[2],
    COMMON[3],
    COMMON[4],
    COMMON[5],
    p("window_ms", "1000", "window size (ms)"),
    p(
        "slide_ms",
        "window_ms",
        "window slide (ms); windowed-count ignores it",
    ),
];

const SLIDING: [ParamSpec; 8] = [
    COMMON[0],
    COMMON[1],
    COMMON[2],
    COMMON[3],
    COMMON[4],
    COMMON[5],
    p("window_ms", "1000", "window size (ms)"),
    p("slide_ms", "window_ms / 60", "window slide (ms)"),
];

/// `stateless`: filter `value % 10 != 0`, map to `(key, value * 3 + payload_len)`.
pub const STATELESS: JobSpec = JobSpec {
    name: "stateless",
    about: "filter value % 10 != 0, map to (key, value * 3 + payload_len); lines key,mapped",
    params: &COMMON,
    build: build_stateless,
};

/// `windowed-count`: keyed tumbling event-time count.
pub const WINDOWED_COUNT: JobSpec = JobSpec {
    name: "windowed-count",
    about: "count per key in tumbling event-time windows; lines key,window_end_ms,count",
    params: &WINDOWED,
    build: build_windowed_count,
};

/// `sliding-count`: keyed sliding event-time count.
pub const SLIDING_COUNT: JobSpec = JobSpec {
    name: "sliding-count",
    about: "count per key in sliding event-time windows; lines key,window_end_ms,count",
    params: &SLIDING,
    build: build_sliding_count,
};

/// The datagen source of a job's parameters.
pub fn datagen_source(
    env: &mut StreamEnvironment,
    params: &Params,
) -> Result<DataStream<DataEvent>> {
    let events = events_bound(params)?;
    let payload = params.u64_or("payload", 76)?;
    if payload > MAX_PAYLOAD as u64 {
        return Err(EngineError::InvalidArgument(format!(
            "parameter payload must be at most {MAX_PAYLOAD} bytes, got {payload}"
        )));
    }
    let datagen = Datagen::new(DatagenConfig {
        seed: params.u64_or("seed", 0)?,
        keys: params.positive_or("keys", 100_000)?,
        payload_len: payload as u32,
        events_per_ms: params.positive_or("events_per_ms", 1000)?,
    });
    let bounds = GeneratorBounds {
        events,
        rate: params.u64_or("rate", 0)?,
    };
    Ok(env.add_source("datagen", move |ctx| {
        Ok(GeneratorSource::new(
            move |i| Some(DataEvent::generate(&datagen, i)),
            bounds,
            ctx,
        ))
    }))
}

fn build_stateless(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    datagen_source(env, params)?
        .filter(|e| e.value % 10 != 0)
        .map(|e| {
            (
                e.key,
                e.value
                    .wrapping_mul(3)
                    .wrapping_add(u64::from(e.payload_len)),
            )
        })
        .sink_lines("output", |(k, v), out| {
            push_u64(out, *k);
            out.push(',');
            push_u64(out, *v);
        });
    Ok(())
}

fn counts<T: Data>(
    stream: DataStream<T>,
    ts: fn(&T) -> i64,
    key: fn(&T) -> u64,
    assigner: WindowAssigner,
) -> Result<DataStream<(u64, i64, u64)>> {
    stream
        .assign_timestamps_and_watermarks(ts, WatermarkStrategy::monotonous())
        .key_by(key)
        .window(assigner)
        .aggregate_with(Count, |k: &u64, w, c| (*k, w.end, c))
}

fn count_line(t: &(u64, i64, u64), out: &mut String) {
    push_u64(out, t.0);
    out.push(',');
    crate::jobs::format::push_i64(out, t.1);
    out.push(',');
    push_u64(out, t.2);
}

fn build_windowed_count(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    let size = params.positive_or("window_ms", 1000)? as i64;
    let src = datagen_source(env, params)?;
    counts(
        src,
        |e| e.ts_ms,
        |e| e.key,
        WindowAssigner::tumbling_event_time(size),
    )?
    .sink_lines("output", count_line);
    Ok(())
}

fn build_sliding_count(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    let size = params.positive_or("window_ms", 1000)?;
    let slide = params.positive_or("slide_ms", (size / 60).max(1))?;
    let src = datagen_source(env, params)?;
    counts(
        src,
        |e| e.ts_ms,
        |e| e.key,
        WindowAssigner::sliding_event_time(size as i64, slide as i64),
    )?
    .sink_lines("output", count_line);
    Ok(())
}
