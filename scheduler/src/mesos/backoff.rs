//! Exponential backoff with jitter, deterministic under a seed.
//!
//! Reconnecting schedulers must not stampede a master that just came back, so every delay is
//! randomised; the randomness comes from a seeded generator so tests can predict it. The same
//! helper drives the JobManager's `exponential-delay` restart strategy, which grows by a
//! configurable multiplier and jitters by a fraction around the base ([`BackoffShape`]).

use std::time::Duration;

/// Bounds of an exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Cap of the delay (before jitter); the delay stops doubling here.
    pub max: Duration,
}

impl BackoffConfig {
    /// Re-subscription backoff: 500 ms doubling to a 15 s cap.
    pub const RESUBSCRIBE: BackoffConfig = BackoffConfig {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(15),
    };
    /// Explicit reconciliation retries: 2 s doubling to a 60 s cap.
    pub const RECONCILE: BackoffConfig = BackoffConfig {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(60),
    };
}

/// How delays grow and how they are randomised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffShape {
    /// Factor between consecutive base delays (at least 1).
    pub multiplier: f64,
    /// How the base delay is randomised.
    pub jitter: JitterKind,
}

impl BackoffShape {
    /// Doubling with "equal jitter": what the Mesos client uses.
    pub const DOUBLING: BackoffShape = BackoffShape {
        multiplier: 2.0,
        jitter: JitterKind::Equal,
    };
}

/// Randomisation of a base delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JitterKind {
    /// Uniform in `[base/2, base)`: never collapses to zero, never exceeds the base.
    Equal,
    /// Uniform in `[base*(1-f), base*(1+f))` (Flink's `jitter-factor`); `f` in `[0, 1]`.
    Proportional(f64),
}

/// A tiny seeded generator (SplitMix64): good enough for jitter, reproducible in tests.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next value in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Exponential backoff state: the attempt counter and the jitter source.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    shape: BackoffShape,
    attempt: u32,
    jitter: Jitter,
}

impl Backoff {
    /// A fresh doubling backoff with equal jitter (next delay is around `config.initial`).
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self::with_shape(config, BackoffShape::DOUBLING, seed)
    }

    /// A fresh backoff growing and jittering as `shape` says.
    pub fn with_shape(config: BackoffConfig, shape: BackoffShape, seed: u64) -> Self {
        Self {
            config,
            shape,
            attempt: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// Forgets earlier failures (call after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next retry: the capped exponential base, jittered as the shape
    /// says (by default "equal jitter", uniform in `[base/2, base)`, so it never collapses to
    /// zero yet spreads retries out).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base();
        self.attempt = self.attempt.saturating_add(1);
        let unit = self.jitter.next_unit();
        match self.shape.jitter {
            JitterKind::Equal => {
                let half = base / 2;
                half + half.mul_f64(unit)
            }
            JitterKind::Proportional(factor) => {
                let factor = factor.clamp(0.0, 1.0);
                base.mul_f64(1.0 - factor + 2.0 * factor * unit)
            }
        }
    }

    /// The capped base delay of the next retry, before jitter.
    pub fn base(&self) -> Duration {
        let max = self.config.max;
        let growth = self
            .shape
            .multiplier
            .max(1.0)
            .powi(self.attempt.min(i32::MAX as u32) as i32);
        let secs = self.config.initial.as_secs_f64() * growth;
        if !secs.is_finite() || secs >= max.as_secs_f64() {
            return max;
        }
        Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stop_at_the_cap() {
        let mut b = Backoff::new(BackoffConfig::RESUBSCRIBE, 7);
        let mut bases = Vec::new();
        for _ in 0..10 {
            let base = b.base();
            let d = b.next_delay();
            assert!(
                d >= base / 2 && d < base,
                "{d:?} not in [{:?}, {base:?})",
                base / 2
            );
            bases.push(base.as_millis());
        }
        assert_eq!(
            bases,
            vec![
                500, 1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000
            ]
        );
        b.reset();
        assert_eq!(b.base(), Duration::from_millis(500));
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let run = |seed| {
            let mut b = Backoff::new(BackoffConfig::RESUBSCRIBE, seed);
            (0..5).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn multiplier_and_proportional_jitter() {
        let config = BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let shape = BackoffShape {
            multiplier: 1.5,
            jitter: JitterKind::Proportional(0.1),
        };
        let mut b = Backoff::with_shape(config, shape, 11);
        let mut bases = Vec::new();
        for _ in 0..12 {
            let base = b.base();
            let d = b.next_delay();
            assert!(
                d >= base.mul_f64(0.9) && d < base.mul_f64(1.1),
                "{d:?} not within 10% of {base:?}"
            );
            bases.push(base.as_millis());
        }
        assert_eq!(
            bases,
            vec![
                1000, 1500, 2250, 3375, 5062, 7593, 11390, 17085, 25628, 38443, 57665, 60000
            ]
        );
        let mut none = Backoff::with_shape(
            config,
            BackoffShape {
                multiplier: 2.0,
                jitter: JitterKind::Proportional(0.0),
            },
            1,
        );
        assert_eq!(none.next_delay(), Duration::from_secs(1));
        assert_eq!(none.next_delay(), Duration::from_secs(2));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(BackoffConfig::RECONCILE, 3);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.base(), Duration::from_secs(60));
    }
}
