//! `keyed-state`: a large keyed state for checkpoint benchmarks (`scripts/bench-checkpoints.sh`).
//!
//! Records `0..keys` load the state, one record per key in key order, as fast as possible; every
//! later record updates a uniformly random key, at `rate` records per second over all sources
//! (0 = as fast as possible), so `rate = keys / 100` changes about 1% of the keys per second.
//! Each key holds its number of updates and `payload` bytes, rewritten by every record:
//! `keys=10000000 payload=100` holds about 1 GB of keyed state. Each update emits `{key} {n}`,
//! n its key's updates so far (which does not depend on how loads and updates interleave).

use crate::error::{EngineError, Result};
use crate::generators::splitmix::splitmix64_at;
use crate::jobs::format::push_u64;
use crate::jobs::{JobSpec, ParamSpec, Params, events_bound};
use crate::keyed::{KeyedProcessFunction, ProcessContext};
use crate::sources::{GeneratorBounds, GeneratorSource};
use crate::stream::StreamEnvironment;

/// Largest payload per key.
pub const MAX_STATE_PAYLOAD: u64 = 64 * 1024;

/// `keyed-state`: load `keys` keys, then update random keys.
pub const SPEC: JobSpec = JobSpec {
    name: "keyed-state",
    about: "load keys 0..keys with payload bytes each, then update random keys at rate/s; \
            update lines key updates",
    params: &[
        ParamSpec {
            name: "events",
            default: "1000000",
            help: "records: the first `keys` load the state, the rest update it (0 = unbounded)",
        },
        ParamSpec {
            name: "seed",
            default: "0",
            help: "generator seed",
        },
        ParamSpec {
            name: "keys",
            default: "100000",
            help: "distinct keys",
        },
        ParamSpec {
            name: "payload",
            default: "100",
            help: "state bytes per key besides its update count",
        },
        ParamSpec {
            name: "rate",
            default: "0",
            help: "updates per second over all sources after the load (0 = as fast as possible)",
        },
    ],
    build,
};

/// Per-key state: the number of updates and the latest record's payload.
#[derive(Debug, Default, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct KeyState {
    updates: u64,
    payload: Vec<u8>,
}

/// Keeps [`KeyState`] per key; records are `(key, index, is_update)`.
#[derive(Debug, Clone, Copy)]
struct Keep {
    payload: usize,
}

impl KeyedProcessFunction<u64, (u64, u64, bool)> for Keep {
    type State = KeyState;
    type Out = (u64, u64);

    fn process_element(
        &mut self,
        (key, index, update): (u64, u64, bool),
        ctx: &mut ProcessContext<'_, u64, KeyState, (u64, u64)>,
    ) {
        let n = self.payload;
        let s = ctx.state();
        s.payload.resize(n, 0);
        // Bytes that differ per record, so that every update really rewrites the payload.
        let word = index.to_le_bytes();
        for (i, b) in s.payload.iter_mut().enumerate() {
            *b = word[i % 8] ^ (i as u8);
        }
        if update {
            s.updates += 1;
            let n = s.updates;
            ctx.collect((key, n));
        }
    }
}

fn build(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    let keys = params.positive_or("keys", 100_000)?;
    let payload = params.u64_or("payload", 100)?;
    if payload > MAX_STATE_PAYLOAD {
        return Err(EngineError::InvalidArgument(format!(
            "parameter payload must be at most {MAX_STATE_PAYLOAD} bytes, got {payload}"
        )));
    }
    let seed = params.u64_or("seed", 0)?;
    let bounds = GeneratorBounds {
        events: events_bound(params)?,
        rate: params.u64_or("rate", 0)?,
    };
    env.add_source("keyed-state", move |ctx| {
        Ok(GeneratorSource::new(
            move |i| {
                Some(if i < keys {
                    (i, i, false)
                } else {
                    (splitmix64_at(seed, i) % keys, i, true)
                })
            },
            bounds,
            ctx,
        )
        .unthrottled_below(keys))
    })
    .key_by(|r: &(u64, u64, bool)| r.0)
    .process(Keep {
        payload: payload as usize,
    })
    .sink_lines("output", |(k, c), out| {
        push_u64(out, *k);
        out.push(' ');
        push_u64(out, *c);
    });
    Ok(())
}
