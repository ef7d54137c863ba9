//! Keyed state backends: a rolling count per key (the hot path of a rolling aggregate) over
//! uniformly random keys, on `heap`, on `mmap` with a budget that holds every key, and on `mmap`
//! with a budget of about 10% of the state (state larger than the memory budget). Prints
//! records/s of the updates and the ratio mmap/heap.
//!
//! cargo bench -p mesoflow-dataplane --bench state_backends -- [--keys N] [--updates N]

use std::time::Instant;

use mesoflow_dataplane::key_groups::KeyGroupRange;
use mesoflow_dataplane::state::{KeyedStore, StateBackend, StateCodec};

const MAX_PARALLELISM: u32 = 128;
/// What the store assumes a hot `u64 -> u64` entry takes (key, value, table overhead).
const ENTRY_BYTES: usize = 32;

/// A deterministic pseudo-random sequence (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Loads `keys` keys, then runs `updates` rolling-count updates; returns updates/s.
fn run(label: &str, backend: &StateBackend, keys: u64, updates: u64) -> f64 {
    let range = KeyGroupRange::for_subtask(0, 1, MAX_PARALLELISM);
    let mut store = KeyedStore::<u64, u64>::with_backend(
        range,
        MAX_PARALLELISM,
        backend,
        "bench",
        StateCodec::identity(),
    )
    .expect("store");
    let count = |store: &mut KeyedStore<u64, u64>, k: u64| {
        store
            .upsert(&k, |acc| match acc {
                Some(acc) => {
                    *acc += 1;
                    (None, *acc)
                }
                None => (Some(1), 1),
            })
            .expect("update")
    };
    let started = Instant::now();
    let mut rng = Rng(1);
    for _ in 0..keys {
        count(&mut store, rng.next() % keys);
    }
    let load = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut sum = 0u64;
    for _ in 0..updates {
        sum = sum.wrapping_add(count(&mut store, rng.next() % keys));
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = updates as f64 / secs;
    println!(
        "{label:<28} {:>6.2} M updates/s  (load {:.1} s, {} keys, hot {}, cold {:?}, sum {sum})",
        rate / 1e6,
        load,
        store.len(),
        store.hot_len(),
        store.cold_stats(),
    );
    rate
}

fn main() {
    let keys = arg("--keys", 10_000_000);
    let updates = arg("--updates", 10_000_000);
    let dir = std::env::temp_dir().join(format!("mesoflow-state-bench-{}", std::process::id()));
    let state_bytes = keys as usize * ENTRY_BYTES;
    println!(
        "rolling count, {keys} uniformly random keys, {updates} updates, {MAX_PARALLELISM} key groups"
    );
    let heap = run("heap", &StateBackend::Heap, keys, updates);
    // Key groups are not exactly equal: 1.5x the state so that every group fits.
    let all = run(
        "mmap, budget holds all keys",
        &StateBackend::mmap(&dir, state_bytes * 3 / 2),
        keys,
        updates,
    );
    let tenth = run(
        "mmap, budget 10% of state",
        &StateBackend::mmap(&dir, state_bytes / 10),
        keys,
        updates,
    );
    println!("ratio mmap/heap (all keys hot):  {:.2}", all / heap);
    println!("ratio mmap/heap (10% budget):    {:.2}", tenth / heap);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("cannot remove {}: {e}", dir.display());
    }
}
