//! When to (re-)subscribe to the agent after a failed attempt or a lost connection, and when to
//! give up.
//!
//! The agent's rules (protocol brief §3.7): with framework checkpointing an agent that restarts
//! waits only `--executor_reregistration_timeout` (exported as `MESOS_SUBSCRIPTION_BACKOFF_MAX`)
//! for its executors to come back, so every retry delay must stay below that bound; the executor
//! keeps trying for `MESOS_RECOVERY_TIMEOUT` and then exits. Without checkpointing the agent never
//! reconnects to an executor it lost, so a lost subscription ends the executor.
//!
//! Delays use "full jitter": a uniform draw from `[0, cap]`, where the cap doubles from
//! [`INITIAL_BACKOFF_CAP`] up to the maximum. Many executors on one agent therefore spread their
//! retries instead of hammering an agent that is still recovering, and the first retry is fast.

use std::time::Duration;

use rand::Rng;

use crate::environment::Checkpointing;

/// Cap of the first retry delay; it doubles on each further attempt up to the configured maximum.
pub const INITIAL_BACKOFF_CAP: Duration = Duration::from_millis(100);

/// Retry bound for the *first* subscription when the agent gives none (no checkpointing): the
/// agent's own default `--executor_reregistration_timeout`.
pub const DEFAULT_SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long the first subscription is retried without checkpointing: the agent's default
/// `--executor_registration_timeout`, after which it destroys an executor that never subscribed.
pub const DEFAULT_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Truncated exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff whose delays never exceed `max`.
    pub fn new(max: Duration) -> Self {
        Self { max, attempt: 0 }
    }

    /// The cap for the next draw, without drawing.
    pub fn current_cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        INITIAL_BACKOFF_CAP.saturating_mul(factor).min(self.max)
    }

    /// Draws the next delay from `[0, cap]` and doubles the cap for the attempt after.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let cap = self.current_cap();
        self.attempt = self.attempt.saturating_add(1);
        if cap.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// Called on SUBSCRIBED: the next outage starts again from the smallest cap.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The reconnection rules derived from the executor's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Upper bound of every retry delay.
    pub backoff_max: Duration,
    /// How long to keep trying after losing an established subscription; `None` means "do not
    /// try at all" (no checkpointing).
    pub recovery_timeout: Option<Duration>,
    /// How long to keep trying to obtain the very first subscription.
    pub registration_timeout: Duration,
}

impl ReconnectPolicy {
    /// The policy a Mesos agent expects for the given checkpointing mode.
    pub fn for_checkpointing(checkpointing: Checkpointing) -> Self {
        match checkpointing {
            Checkpointing::Disabled => Self {
                backoff_max: DEFAULT_SUBSCRIPTION_BACKOFF_MAX,
                recovery_timeout: None,
                registration_timeout: DEFAULT_REGISTRATION_TIMEOUT,
            },
            Checkpointing::Enabled {
                recovery_timeout,
                backoff_max,
            } => Self {
                backoff_max,
                recovery_timeout: Some(recovery_timeout),
                registration_timeout: recovery_timeout.max(DEFAULT_REGISTRATION_TIMEOUT),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn caps_double_up_to_the_maximum_and_reset() {
        let mut backoff = Backoff::new(Duration::from_secs(2));
        let mut rng = SmallRng::seed_from_u64(7);
        let mut caps = Vec::new();
        for _ in 0..7 {
            caps.push(backoff.current_cap().as_millis());
            let delay = backoff.next_delay(&mut rng);
            assert!(delay <= Duration::from_millis(*caps.last().unwrap() as u64));
        }
        assert_eq!(caps, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.current_cap(), INITIAL_BACKOFF_CAP);
    }

    #[test]
    fn delays_never_exceed_a_small_maximum_and_are_spread() {
        let max = Duration::from_millis(30);
        let mut backoff = Backoff::new(max);
        let mut rng = SmallRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.next_delay(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= max));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 900,
            "delays are not jittered: {}",
            distinct.len()
        );
    }

    #[test]
    fn a_zero_maximum_retries_immediately() {
        let mut backoff = Backoff::new(Duration::ZERO);
        let mut rng = SmallRng::seed_from_u64(3);
        assert_eq!(backoff.next_delay(&mut rng), Duration::ZERO);
        assert_eq!(backoff.next_delay(&mut rng), Duration::ZERO);
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::MAX);
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..200 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!(
            backoff.current_cap(),
            INITIAL_BACKOFF_CAP.saturating_mul(1 << 31)
        );
    }

    #[test]
    fn policy_follows_checkpointing() {
        assert_eq!(
            ReconnectPolicy::for_checkpointing(Checkpointing::Disabled),
            ReconnectPolicy {
                backoff_max: Duration::from_secs(2),
                recovery_timeout: None,
                registration_timeout: Duration::from_secs(60),
            }
        );
        assert_eq!(
            ReconnectPolicy::for_checkpointing(Checkpointing::Enabled {
                recovery_timeout: Duration::from_secs(900),
                backoff_max: Duration::from_secs(3),
            }),
            ReconnectPolicy {
                backoff_max: Duration::from_secs(3),
                recovery_timeout: Some(Duration::from_secs(900)),
                registration_timeout: Duration::from_secs(900),
            }
        );
    }
}
