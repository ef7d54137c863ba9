//! Exponential backoff with jitter: the one retry-delay policy of the scheduler and the executor.
//!
//! The delay before retry `n` (counting from 0 since the last [`Backoff::reset`]) starts from the
//! base `initial * multiplier^n`, capped at `max`, and is then randomised as the
//! [`BackoffShape`] says:
//!
//! - [`JitterKind::Equal`] (the default, [`BackoffShape::DOUBLING`]): uniform in
//!   `[base/2, base)`. Reconnecting schedulers must not stampede a master that just came back, yet
//!   a delay never collapses to zero.
//! - [`JitterKind::Full`] ([`BackoffShape::FULL_JITTER`]): uniform in `[0, base]`. The executor's
//!   re-subscription: many executors on one agent spread their retries and the first is fast.
//! - [`JitterKind::Proportional`]: uniform in `[base*(1-f), base*(1+f))`, Flink's
//!   `jitter-factor` for the JobManager's `exponential-delay` restart strategy.
//! - [`JitterKind::None`]: exactly the base.
//!
//! The module is pure: no clock and no runtime. The caller sleeps, and the randomness comes either
//! from the backoff's own seeded generator ([`Backoff::next_delay`], so tests can predict it) or
//! from a generator the caller passes in ([`Backoff::next_delay_with`]).

use std::time::Duration;

use rand::Rng;

/// Bounds of an exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Cap of the delay (before jitter); the delay stops growing here.
    pub max: Duration,
}

impl BackoffConfig {
    /// The Mesos scheduler client's re-subscription backoff: 500 ms doubling to a 15 s cap.
    pub const RESUBSCRIBE: BackoffConfig = BackoffConfig {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(15),
    };
    /// The Mesos scheduler client's explicit reconciliation retries: 2 s doubling to a 60 s cap.
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
    /// Doubling with "equal jitter": what the Mesos scheduler client uses.
    pub const DOUBLING: BackoffShape = BackoffShape {
        multiplier: 2.0,
        jitter: JitterKind::Equal,
    };
    /// Doubling with "full jitter": what the executor uses to re-subscribe to its agent.
    pub const FULL_JITTER: BackoffShape = BackoffShape {
        multiplier: 2.0,
        jitter: JitterKind::Full,
    };
    /// Doubling without randomness.
    pub const DOUBLING_EXACT: BackoffShape = BackoffShape {
        multiplier: 2.0,
        jitter: JitterKind::None,
    };
}

/// Randomisation of a base delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JitterKind {
    /// No randomisation: the delay is the base.
    None,
    /// Uniform in `[base/2, base)`: never collapses to zero, never exceeds the base.
    Equal,
    /// Uniform in `[0, base]` ("full jitter").
    Full,
    /// Uniform in `[base*(1-f), base*(1+f))` (Flink's `jitter-factor`); `f` in `[0, 1]`.
    Proportional(f64),
}

impl JitterKind {
    /// `base` randomised by `unit`, a draw from `[0, 1)`.
    fn apply(self, base: Duration, unit: f64) -> Duration {
        match self {
            JitterKind::None => base,
            JitterKind::Equal => {
                let half = base / 2;
                half + half.mul_f64(unit)
            }
            JitterKind::Full => base.mul_f64(unit),
            JitterKind::Proportional(factor) => {
                let factor = factor.clamp(0.0, 1.0);
                base.mul_f64(1.0 - factor + 2.0 * factor * unit)
            }
        }
    }
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

/// Exponential backoff state: the attempt counter and the seeded jitter source.
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

    /// A fresh backoff growing and jittering as `shape` says; `seed` feeds [`Self::next_delay`].
    pub fn with_shape(config: BackoffConfig, shape: BackoffShape, seed: u64) -> Self {
        Self {
            config,
            shape,
            attempt: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// Forgets earlier failures (call after a success): the next delay starts from the smallest
    /// base again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next retry, randomised by the backoff's own seeded generator: the
    /// capped exponential base, jittered as the shape says.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.advance();
        match self.shape.jitter {
            JitterKind::None => base,
            kind => kind.apply(base, self.jitter.next_unit()),
        }
    }

    /// [`Self::next_delay`] with the randomness drawn from `rng` instead of the seeded generator,
    /// for callers that share one generator between several uses. Full jitter draws a whole
    /// number of nanoseconds uniformly from `[0, base]` (and nothing when the base is zero).
    pub fn next_delay_with<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let base = self.advance();
        match self.shape.jitter {
            JitterKind::None => base,
            JitterKind::Full => {
                if base.is_zero() {
                    return Duration::ZERO;
                }
                let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rng.random_range(0..=nanos))
            }
            kind => kind.apply(base, rng.random::<f64>()),
        }
    }

    /// The current base, counting the attempt.
    fn advance(&mut self) -> Duration {
        let base = self.base();
        self.attempt = self.attempt.saturating_add(1);
        base
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
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

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

    fn full_jitter(initial: Duration, max: Duration) -> Backoff {
        Backoff::with_shape(BackoffConfig { initial, max }, BackoffShape::FULL_JITTER, 0)
    }

    #[test]
    fn full_jitter_draws_from_zero_to_the_doubling_cap() {
        let initial = Duration::from_millis(100);
        let mut backoff = full_jitter(initial, Duration::from_secs(2));
        let mut rng = SmallRng::seed_from_u64(7);
        let mut caps = Vec::new();
        for _ in 0..7 {
            caps.push(backoff.base().as_millis());
            let delay = backoff.next_delay_with(&mut rng);
            assert!(delay <= Duration::from_millis(*caps.last().unwrap() as u64));
        }
        assert_eq!(caps, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.base(), initial);
        // The seeded generator stays within the same bounds.
        for _ in 0..7 {
            let cap = backoff.base();
            assert!(backoff.next_delay() <= cap);
        }
    }

    #[test]
    fn full_jitter_never_exceeds_a_small_maximum_and_is_spread() {
        let max = Duration::from_millis(30);
        let mut backoff = full_jitter(Duration::from_millis(100), max);
        let mut rng = SmallRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..1000)
            .map(|_| backoff.next_delay_with(&mut rng))
            .collect();
        assert!(delays.iter().all(|d| *d <= max));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 900,
            "delays are not jittered: {}",
            distinct.len()
        );
    }

    #[test]
    fn full_jitter_with_a_zero_maximum_retries_immediately() {
        let mut backoff = full_jitter(Duration::from_millis(100), Duration::ZERO);
        let mut rng = SmallRng::seed_from_u64(3);
        assert_eq!(backoff.next_delay_with(&mut rng), Duration::ZERO);
        assert_eq!(backoff.next_delay_with(&mut rng), Duration::ZERO);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
    }

    #[test]
    fn full_jitter_many_attempts_do_not_overflow() {
        let mut backoff = full_jitter(Duration::from_millis(100), Duration::MAX);
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..200 {
            backoff.next_delay_with(&mut rng);
            backoff.next_delay();
        }
        assert_eq!(backoff.base(), Duration::MAX);
        assert_eq!(backoff.attempts(), 400);
    }

    #[test]
    fn no_jitter_doubles_exactly_to_the_cap() {
        let mut backoff = Backoff::with_shape(
            BackoffConfig {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(5),
            },
            BackoffShape::DOUBLING_EXACT,
            9,
        );
        let mut rng = SmallRng::seed_from_u64(9);
        let delays: Vec<u128> = (0..9)
            .map(|i| {
                if i % 2 == 0 {
                    backoff.next_delay()
                } else {
                    backoff.next_delay_with(&mut rng)
                }
                .as_millis()
            })
            .collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
