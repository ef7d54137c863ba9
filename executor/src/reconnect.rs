//! When to (re-)subscribe to the agent after a failed attempt or a lost connection, and when to
//! give up.
//!
//! The agent's rules (protocol brief §3.7): with framework checkpointing an agent that restarts
//! waits only `--executor_reregistration_timeout` (exported as `MESOS_SUBSCRIPTION_BACKOFF_MAX`)
//! for its executors to come back, so every retry delay must stay below that bound; the executor
//! keeps trying for `MESOS_RECOVERY_TIMEOUT` and then exits. Without checkpointing the agent never
//! reconnects to an executor it lost, so a lost subscription ends the executor.
//!
//! Delays use "full jitter" ([`BackoffShape::FULL_JITTER`]): a uniform draw from `[0, cap]`,
//! where the cap doubles from [`INITIAL_BACKOFF_CAP`] up to the maximum. Many executors on one agent therefore spread their
//! retries instead of hammering an agent that is still recovering, and the first retry is fast.

use std::time::Duration;

use mesoflow_dataplane::backoff::{Backoff, BackoffConfig, BackoffShape};

use crate::environment::Checkpointing;

/// Cap of the first retry delay; it doubles on each further attempt up to the configured maximum.
pub const INITIAL_BACKOFF_CAP: Duration = Duration::from_millis(100);

/// Retry bound for the *first* subscription when the agent gives none (no checkpointing): the
/// agent's own default `--executor_reregistration_timeout`.
pub const DEFAULT_SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long the first subscription is retried without checkpointing: the agent's default
/// `--executor_registration_timeout`, after which it destroys an executor that never subscribed.
pub const DEFAULT_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Full-jitter backoff whose delays never exceed `max`.
fn subscription_backoff(max: Duration) -> Backoff {
    let config = BackoffConfig {
        initial: INITIAL_BACKOFF_CAP,
        max,
    };
    // The seed is unused: the client draws from its own generator.
    Backoff::with_shape(config, BackoffShape::FULL_JITTER, 0)
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
    /// The backoff between subscription attempts: full jitter under a cap that doubles from
    /// [`INITIAL_BACKOFF_CAP`] to [`Self::backoff_max`]. Draw delays with
    /// [`Backoff::next_delay_with`] and reset it on SUBSCRIBED.
    pub fn backoff(&self) -> Backoff {
        subscription_backoff(self.backoff_max)
    }

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
        let mut backoff = subscription_backoff(Duration::from_secs(2));
        let mut rng = SmallRng::seed_from_u64(7);
        let mut caps = Vec::new();
        for _ in 0..7 {
            caps.push(backoff.base().as_millis());
            let delay = backoff.next_delay_with(&mut rng);
            assert!(delay <= Duration::from_millis(*caps.last().unwrap() as u64));
        }
        assert_eq!(caps, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.base(), INITIAL_BACKOFF_CAP);
    }

    #[test]
    fn a_small_maximum_bounds_the_first_delay() {
        let policy = ReconnectPolicy::for_checkpointing(Checkpointing::Enabled {
            recovery_timeout: Duration::from_secs(900),
            backoff_max: Duration::from_millis(30),
        });
        let mut backoff = policy.backoff();
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            assert!(backoff.next_delay_with(&mut rng) <= Duration::from_millis(30));
        }
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
