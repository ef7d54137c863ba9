//! Restart strategies: whether, and after how long, a failed job is restarted.
//!
//! The keys and defaults are Flink's (`restart-strategy.type` and its `fixed-delay.*` and
//! `exponential-delay.*` options), so a Flink configuration carries over. The keys live in the
//! configuration's key table ([`crate::config::keys::KEYS`]); [`crate::config::Configuration`]
//! builds the [`RestartStrategy`] from them. A [`RestartStrategy`] is plain configuration; a [`RestartTracker`] built from it remembers the
//! failures of one job and answers [`RestartTracker::on_failure`] without reading a clock.

use std::{time::Duration, time::Instant};

use serde::{Deserialize, Serialize};

use mesoflow_dataplane::backoff::{Backoff, BackoffConfig, BackoffShape, JitterKind};

use crate::config::{ConfigError, Values};

/// Flink's `fixed-delay` strategy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FixedDelay {
    /// Restarts allowed over the job's life.
    pub attempts: u32,
    /// Delay before each restart.
    pub delay: Duration,
}

impl Default for FixedDelay {
    fn default() -> Self {
        Self {
            attempts: 1,
            delay: Duration::from_secs(1),
        }
    }
}

/// Flink's `exponential-delay` strategy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExponentialDelay {
    /// Delay before the first restart.
    pub initial_backoff: Duration,
    /// Cap of the delay.
    pub max_backoff: Duration,
    /// Growth of the delay per failure.
    pub multiplier: f64,
    /// Running this long after a restart without a failure resets the delay and the count.
    pub reset_backoff_threshold: Duration,
    /// Each delay is uniform in `[d*(1-f), d*(1+f))`.
    pub jitter_factor: f64,
    /// Restarts allowed between resets; `None` is unlimited.
    pub attempts_before_reset: Option<u32>,
}

impl Default for ExponentialDelay {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 1.5,
            reset_backoff_threshold: Duration::from_secs(3600),
            jitter_factor: 0.1,
            attempts_before_reset: None,
        }
    }
}

/// Which restart strategy a job uses (`restart-strategy.type`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RestartStrategy {
    /// Never restart: the first failure fails the job.
    None,
    /// A fixed number of restarts, each after the same delay.
    FixedDelay(FixedDelay),
    /// Restarts with a growing delay.
    ExponentialDelay(ExponentialDelay),
}

impl Default for RestartStrategy {
    /// `exponential-delay` with Flink's defaults.
    fn default() -> Self {
        RestartStrategy::ExponentialDelay(ExponentialDelay::default())
    }
}

impl RestartStrategy {
    /// Builds the strategy from the checked `restart-strategy.*` values. Without
    /// `restart-strategy.type` the strategy is `exponential-delay`; each value's type and range
    /// were checked by the key table, what remains are the checks across keys.
    pub(crate) fn from_values(v: &Values) -> Result<Self, ConfigError> {
        const TYPE: &str = "restart-strategy.type";
        const P: &str = "restart-strategy.exponential-delay.";
        let kind = v.text(TYPE).unwrap_or("exponential-delay");
        match kind {
            "none" | "off" | "disable" => Ok(RestartStrategy::None),
            "fixed-delay" | "fixeddelay" => Ok(RestartStrategy::FixedDelay(FixedDelay {
                attempts: v.int("restart-strategy.fixed-delay.attempts") as u32,
                delay: v.duration("restart-strategy.fixed-delay.delay"),
            })),
            "exponential-delay" | "exponentialdelay" => {
                let s = ExponentialDelay {
                    initial_backoff: v.duration(&format!("{P}initial-backoff")),
                    max_backoff: v.duration(&format!("{P}max-backoff")),
                    multiplier: v.float(&format!("{P}backoff-multiplier")),
                    reset_backoff_threshold: v.duration(&format!("{P}reset-backoff-threshold")),
                    jitter_factor: v.float(&format!("{P}jitter-factor")),
                    attempts_before_reset: v
                        .opt_int(&format!("{P}attempts-before-reset-backoff"))
                        .map(|n| n as u32),
                };
                if s.initial_backoff.is_zero() {
                    return Err(v.invalid(&format!("{P}initial-backoff"), "a positive duration"));
                }
                if s.max_backoff < s.initial_backoff {
                    return Err(v.invalid(
                        &format!("{P}max-backoff"),
                        format!(
                            "a duration of at least the initial backoff ({})",
                            humantime::format_duration(s.initial_backoff)
                        ),
                    ));
                }
                Ok(RestartStrategy::ExponentialDelay(s))
            }
            _ => Err(v.invalid(
                TYPE,
                "none, fixed-delay or exponential-delay (failure-rate is not supported yet)",
            )),
        }
    }

    /// A tracker of one job's failures under this strategy; `seed` drives the jitter.
    pub fn tracker(&self, seed: u64) -> RestartTracker {
        RestartTracker::new(*self, seed)
    }
}

/// The answer to a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the job after this delay.
    Restart(Duration),
    /// Fail the job, for this reason.
    GiveUp(String),
}

/// The failure history of one job under a strategy.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    /// Restarts granted (since the last reset, for exponential-delay).
    restarts: u32,
    /// Exponential delay: the growing delay.
    backoff: Option<Backoff>,
    /// When the last granted restart was due: "running without failure" counts from here.
    restarted_at: Option<Instant>,
}

impl RestartTracker {
    /// A tracker with no failures yet.
    pub fn new(strategy: RestartStrategy, seed: u64) -> Self {
        let backoff = match strategy {
            RestartStrategy::ExponentialDelay(e) => Some(Backoff::with_shape(
                BackoffConfig {
                    initial: e.initial_backoff,
                    max: e.max_backoff,
                },
                BackoffShape {
                    multiplier: e.multiplier,
                    jitter: JitterKind::Proportional(e.jitter_factor),
                },
                seed,
            )),
            _ => None,
        };
        Self {
            strategy,
            restarts: 0,
            backoff,
            restarted_at: None,
        }
    }

    /// The strategy this tracker follows.
    pub fn strategy(&self) -> &RestartStrategy {
        &self.strategy
    }

    /// Whether to restart after a failure detected at `now`, and after how long.
    pub fn on_failure(&mut self, now: Instant) -> RestartDecision {
        match self.strategy {
            RestartStrategy::None => {
                RestartDecision::GiveUp("the restart strategy is 'none'".into())
            }
            RestartStrategy::FixedDelay(f) => {
                if self.restarts >= f.attempts {
                    return RestartDecision::GiveUp(format!(
                        "the fixed-delay restart strategy allows {} restart(s) and all were used",
                        f.attempts
                    ));
                }
                self.restarts += 1;
                RestartDecision::Restart(f.delay)
            }
            RestartStrategy::ExponentialDelay(e) => {
                let backoff = self.backoff.get_or_insert_with(|| {
                    Backoff::new(
                        BackoffConfig {
                            initial: e.initial_backoff,
                            max: e.max_backoff,
                        },
                        0,
                    )
                });
                if self.restarted_at.is_some_and(|at| {
                    now.saturating_duration_since(at) >= e.reset_backoff_threshold
                }) {
                    backoff.reset();
                    self.restarts = 0;
                }
                if let Some(limit) = e.attempts_before_reset
                    && self.restarts >= limit
                {
                    return RestartDecision::GiveUp(format!(
                        "the exponential-delay restart strategy allows {limit} restart(s) \
                         without a {} failure-free run, and all were used",
                        humantime::format_duration(e.reset_backoff_threshold)
                    ));
                }
                self.restarts += 1;
                let delay = backoff.next_delay();
                self.restarted_at = Some(now + delay);
                RestartDecision::Restart(delay)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strategy that `-Dkey=value` items for `pairs` configure.
    fn from_config(pairs: &[(&str, &str)]) -> Result<RestartStrategy, crate::config::ConfigError> {
        let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        crate::config::Configuration::from_dynamic(&items).map(|c| c.restart)
    }

    #[test]
    fn parsing_flink_keys() {
        let cases: Vec<(&[(&str, &str)], RestartStrategy)> = vec![
            (&[], RestartStrategy::default()),
            (&[("parallelism.default", "4")], RestartStrategy::default()),
            (&[("restart-strategy.type", "none")], RestartStrategy::None),
            (&[("restart-strategy.type", "off")], RestartStrategy::None),
            (
                &[("restart-strategy.type", "fixed-delay")],
                RestartStrategy::FixedDelay(FixedDelay::default()),
            ),
            (
                &[
                    ("restart-strategy.type", "fixed-delay"),
                    ("restart-strategy.fixed-delay.attempts", "3"),
                    ("restart-strategy.fixed-delay.delay", "10s"),
                ],
                RestartStrategy::FixedDelay(FixedDelay {
                    attempts: 3,
                    delay: Duration::from_secs(10),
                }),
            ),
            (
                &[
                    ("restart-strategy.type", "exponential-delay"),
                    (
                        "restart-strategy.exponential-delay.initial-backoff",
                        "500ms",
                    ),
                    ("restart-strategy.exponential-delay.max-backoff", "1 min"),
                    (
                        "restart-strategy.exponential-delay.backoff-multiplier",
                        "2.0",
                    ),
                    (
                        "restart-strategy.exponential-delay.reset-backoff-threshold",
                        "10 min",
                    ),
                    ("restart-strategy.exponential-delay.jitter-factor", "0"),
                    (
                        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                        "5",
                    ),
                ],
                RestartStrategy::ExponentialDelay(ExponentialDelay {
                    initial_backoff: Duration::from_millis(500),
                    max_backoff: Duration::from_secs(60),
                    multiplier: 2.0,
                    reset_backoff_threshold: Duration::from_secs(600),
                    jitter_factor: 0.0,
                    attempts_before_reset: Some(5),
                }),
            ),
            (
                &[("restart-strategy.exponential-delay.initial-backoff", "1 s")],
                RestartStrategy::default(),
            ),
            (
                &[("restart-strategy.exponential-delay.initial-backoff", "250")],
                RestartStrategy::ExponentialDelay(ExponentialDelay {
                    initial_backoff: Duration::from_millis(250),
                    ..Default::default()
                }),
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(from_config(pairs).unwrap(), expected, "{pairs:?}");
        }
    }

    #[test]
    fn parsing_errors_name_the_key_and_what_is_valid() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("restart-strategy.type", "sometimes")],
                "restart-strategy.type from -D must be one of exponential-delay, fixed-delay, none",
            ),
            (
                &[("restart-strategy.type", "failure-rate")],
                "not supported",
            ),
            (
                &[
                    ("restart-strategy.type", "fixed-delay"),
                    ("restart-strategy.fixed-delay.delay", "soon"),
                ],
                "restart-strategy.fixed-delay.delay from -D must be a duration",
            ),
            (
                &[
                    ("restart-strategy.type", "fixed-delay"),
                    ("restart-strategy.fixed-delay.attempts", "-1"),
                ],
                "restart-strategy.fixed-delay.attempts from -D must be an integer from 0",
            ),
            (
                &[(
                    "restart-strategy.exponential-delay.backoff-multiplier",
                    "0.5",
                )],
                "must be a number of at least 1",
            ),
            (
                &[("restart-strategy.exponential-delay.jitter-factor", "2")],
                "between 0 and 1",
            ),
            (
                &[("restart-strategy.exponential-delay.max-backoff", "100ms")],
                "max-backoff from -D must be a duration of at least the initial backoff (1s)",
            ),
            (
                &[(
                    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                    "0",
                )],
                "must be an integer from 1 to",
            ),
        ];
        for (pairs, expected) in cases {
            let e = from_config(pairs).unwrap_err().to_string();
            assert!(e.contains(expected), "{pairs:?}: '{e}' lacks '{expected}'");
        }
    }

    #[test]
    fn none_gives_up_at_once() {
        let mut t = RestartStrategy::None.tracker(0);
        assert!(
            matches!(t.on_failure(Instant::now()), RestartDecision::GiveUp(r) if r.contains("none"))
        );
    }

    #[test]
    fn fixed_delay_counts_its_attempts() {
        let now = Instant::now();
        let mut t = RestartStrategy::FixedDelay(FixedDelay {
            attempts: 2,
            delay: Duration::from_secs(3),
        })
        .tracker(0);
        assert_eq!(
            t.on_failure(now),
            RestartDecision::Restart(Duration::from_secs(3))
        );
        assert_eq!(
            t.on_failure(now),
            RestartDecision::Restart(Duration::from_secs(3))
        );
        let RestartDecision::GiveUp(reason) = t.on_failure(now + Duration::from_secs(7200)) else {
            panic!("a third restart was granted");
        };
        assert!(reason.contains("allows 2 restart(s)"), "{reason}");
    }

    #[test]
    fn exponential_delay_grows_caps_and_resets() {
        let start = Instant::now();
        let strategy = RestartStrategy::ExponentialDelay(ExponentialDelay {
            jitter_factor: 0.0,
            ..Default::default()
        });
        let mut t = strategy.tracker(0);
        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..13 {
            let RestartDecision::Restart(d) = t.on_failure(now) else {
                panic!("unlimited attempts gave up");
            };
            delays.push(d.as_millis());
            now += d + Duration::from_secs(1);
        }
        assert_eq!(
            delays,
            vec![
                1000, 1500, 2250, 3375, 5062, 7593, 11390, 17085, 25628, 38443, 57665, 60000, 60000
            ]
        );
        // An hour of running since the last restart resets the delay.
        now += Duration::from_secs(3600);
        assert_eq!(
            t.on_failure(now),
            RestartDecision::Restart(Duration::from_secs(1))
        );
    }

    #[test]
    fn exponential_delay_jitter_is_seeded_and_bounded() {
        let run = |seed| {
            let mut t = RestartStrategy::default().tracker(seed);
            let now = Instant::now();
            (0..4)
                .map(|_| match t.on_failure(now) {
                    RestartDecision::Restart(d) => d,
                    RestartDecision::GiveUp(r) => panic!("{r}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        for (d, base) in run(5).into_iter().zip([1000.0, 1500.0, 2250.0, 3375.0]) {
            let ms = d.as_secs_f64() * 1000.0;
            assert!(ms >= base * 0.9 && ms < base * 1.1, "{ms} vs {base}");
        }
    }

    #[test]
    fn exponential_delay_attempts_before_reset() {
        let mut t = RestartStrategy::ExponentialDelay(ExponentialDelay {
            attempts_before_reset: Some(2),
            jitter_factor: 0.0,
            ..Default::default()
        })
        .tracker(0);
        let now = Instant::now();
        assert!(matches!(t.on_failure(now), RestartDecision::Restart(_)));
        assert!(matches!(t.on_failure(now), RestartDecision::Restart(_)));
        assert!(matches!(t.on_failure(now), RestartDecision::GiveUp(_)));
        // After a failure-free hour the count starts again.
        assert!(matches!(
            t.on_failure(now + Duration::from_secs(4000)),
            RestartDecision::Restart(d) if d == Duration::from_secs(1)
        ));
    }
}
