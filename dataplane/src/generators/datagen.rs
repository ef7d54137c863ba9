//! `datagen`: ~100-byte keyed records for the stateless and window workloads.
//!
//! Record `i` for seed `s` (all arithmetic wrapping on `u64`, `w(n) = splitmix64_at(s, 4i + n)`):
//! - `seq = i`
//! - `key = w(0) % keys` (uniform over `0..keys`)
//! - `value = w(1) >> 32` (uniform 32-bit, so `value * 3 + payload_len` never wraps)
//! - `ts_ms = START_TS_MS + i / events_per_ms` (non-decreasing in `i`)
//! - payload: `payload_len` ASCII bytes drawn from `w(2)`, see [`DataRecord::write_payload`].
//!
//! The record is small and `Copy`; its payload is materialised only when a job needs the bytes.

use super::splitmix::splitmix64_at;

/// Event time of record 0: 2015-07-15T00:00:00Z, the same epoch the Nexmark generator uses.
pub const START_TS_MS: i64 = 1_436_918_400_000;

/// Default payload length: 76 bytes, making a record of about 100 bytes with its four `u64`s.
pub const DEFAULT_PAYLOAD_LEN: u32 = 76;

/// Default event-time rate: 1000 records per millisecond (1 M records per second of event time).
pub const DEFAULT_EVENTS_PER_MS: u64 = 1000;

/// The 64 payload characters: 6 random bits choose one.
pub const PAYLOAD_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Parameters of a datagen stream (`seed`, `keys`, `payload`, `events_per_ms` job parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagenConfig {
    /// Seed of the stream; different seeds give unrelated streams.
    pub seed: u64,
    /// Number of distinct keys; 0 is treated as 1.
    pub keys: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Records per millisecond of event time; 0 is treated as 1.
    pub events_per_ms: u64,
}

impl Default for DatagenConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            keys: 100_000,
            payload_len: DEFAULT_PAYLOAD_LEN,
            events_per_ms: DEFAULT_EVENTS_PER_MS,
        }
    }
}

/// One generated record. The payload is not stored: it is a pure function of `payload_seed`
/// and `payload_len`, written on demand by [`DataRecord::write_payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRecord {
    /// The record's index in the stream.
    pub seq: u64,
    /// Grouping key in `0..keys`.
    pub key: u64,
    /// A uniform 32-bit value (stored widened).
    pub value: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Seed of the payload bytes.
    pub payload_seed: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
}

impl DataRecord {
    /// Writes the payload into `out[..payload_len]` without allocating: byte `j` is
    /// `PAYLOAD_ALPHABET[(splitmix64_at(payload_seed, j / 10) >> (6 * (j % 10))) & 63]`.
    ///
    /// Writes `min(payload_len, out.len())` bytes and returns that count.
    #[inline]
    pub fn write_payload(&self, out: &mut [u8]) -> usize {
        let n = (self.payload_len as usize).min(out.len());
        for (chunk_index, chunk) in out[..n].chunks_mut(10).enumerate() {
            let mut word = splitmix64_at(self.payload_seed, chunk_index as u64);
            for byte in chunk {
                *byte = PAYLOAD_ALPHABET[(word & 63) as usize];
                word >>= 6;
            }
        }
        n
    }

    /// Appends the payload to `out` (reuse one buffer across records to stay allocation-free).
    pub fn append_payload(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.payload_len as usize, 0);
        self.write_payload(&mut out[start..]);
    }
}

/// The datagen stream of one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Datagen {
    config: DatagenConfig,
}

impl Datagen {
    /// A stream with `config` (zero `keys` or `events_per_ms` are raised to 1).
    pub fn new(mut config: DatagenConfig) -> Self {
        config.keys = config.keys.max(1);
        config.events_per_ms = config.events_per_ms.max(1);
        Self { config }
    }

    /// The effective configuration.
    pub fn config(&self) -> &DatagenConfig {
        &self.config
    }

    /// Event time of record `index`.
    #[inline]
    pub fn ts_ms(&self, index: u64) -> i64 {
        // index / events_per_ms <= u64::MAX, so the cast can only wrap past year 292 million.
        START_TS_MS.wrapping_add((index / self.config.events_per_ms) as i64)
    }

    /// Record `index`.
    #[inline]
    pub fn record(&self, index: u64) -> DataRecord {
        let c = &self.config;
        let base = index.wrapping_mul(4);
        DataRecord {
            seq: index,
            key: splitmix64_at(c.seed, base) % c.keys,
            value: splitmix64_at(c.seed, base.wrapping_add(1)) >> 32,
            ts_ms: self.ts_ms(index),
            payload_seed: splitmix64_at(c.seed, base.wrapping_add(2)),
            payload_len: c.payload_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_and_in_range() {
        let g = Datagen::new(DatagenConfig {
            keys: 7,
            ..DatagenConfig::default()
        });
        assert_eq!(g.record(123), g.record(123));
        assert_ne!(g.record(123), g.record(124));
        for i in 0..10_000 {
            let r = g.record(i);
            assert_eq!(r.seq, i);
            assert!(r.key < 7);
            assert!(r.value <= u64::from(u32::MAX));
            assert_eq!(r.ts_ms, START_TS_MS + (i / 1000) as i64);
        }
    }

    #[test]
    fn payload_is_ascii_exact_length_and_written_in_place() {
        let g = Datagen::new(DatagenConfig::default());
        let r = g.record(5);
        let mut buf = [0u8; 100];
        assert_eq!(r.write_payload(&mut buf), 76);
        assert!(buf[..76].iter().all(|b| PAYLOAD_ALPHABET.contains(b)));
        assert!(buf[76..].iter().all(|&b| b == 0));
        let mut v = b"prefix".to_vec();
        r.append_payload(&mut v);
        assert_eq!(&v[6..], &buf[..76]);
        // A short buffer is filled, not overrun.
        let mut short = [0u8; 3];
        assert_eq!(r.write_payload(&mut short), 3);
        assert_eq!(short, buf[..3]);
    }

    #[test]
    fn zero_parameters_do_not_divide_by_zero() {
        let g = Datagen::new(DatagenConfig {
            keys: 0,
            events_per_ms: 0,
            ..DatagenConfig::default()
        });
        assert_eq!(g.record(9).key, 0);
        assert_eq!(g.record(9).ts_ms, START_TS_MS + 9);
    }
}
