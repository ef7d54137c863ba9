//! Restart strategies: whether, and after how long, a failed job is restarted.
//!
//! The keys and defaults are Flink's (`restart-strategy.type` and its `fixed-delay.*` and
//! `exponential-delay.*` options), so a Flink configuration carries over. A
//! [`RestartStrategy`] is plain configuration; a [`RestartTracker`] built from it remembers the
//! failures of one job and answers [`RestartTracker::on_failure`] without reading a clock.

use std::{collections::BTreeMap, time::Duration, time::Instant};

use serde::{Deserialize, Serialize};

use mesoflow_dataplane::backoff::{Backoff, BackoffConfig, BackoffShape, JitterKind};

/// Prefix of every restart-strategy key.
const PREFIX: &str = "restart-strategy.";

/// Restart-strategy keys understood by [`RestartStrategy::from_config`], with their meaning.
pub const KEYS: &[(&str, &str)] = &[
    (
        "restart-strategy.type",
        "none, fixed-delay or exponential-delay (default)",
    ),
    (
        "restart-strategy.fixed-delay.attempts",
        "restarts allowed before the job fails (default 1)",
    ),
    (
        "restart-strategy.fixed-delay.delay",
        "delay before each restart (default 1 s)",
    ),
    (
        "restart-strategy.exponential-delay.initial-backoff",
        "delay before the first restart (default 1 s)",
    ),
    (
        "restart-strategy.exponential-delay.max-backoff",
        "largest delay (default 1 min)",
    ),
    (
        "restart-strategy.exponential-delay.backoff-multiplier",
        "growth of the delay per failure (default 1.5)",
    ),
    (
        "restart-strategy.exponential-delay.reset-backoff-threshold",
        "running this long without a failure resets the delay (default 1 h)",
    ),
    (
        "restart-strategy.exponential-delay.jitter-factor",
        "random spread of each delay, 0 to 1 (default 0.1)",
    ),
    (
        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        "restarts allowed between resets (default unlimited)",
    ),
];

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

/// A restart-strategy setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RestartConfigError {
    /// The offending key.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

fn error(key: &str, message: impl Into<String>) -> RestartConfigError {
    RestartConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// A duration as Flink writes them: `1 s`, `10s`, `500ms`, `1 min`; a bare number is
/// milliseconds (Flink's default unit). Parsing is humantime's, as elsewhere in the scheduler.
fn duration(key: &str, value: &str) -> Result<Duration, RestartConfigError> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(value).map_err(|e| {
        error(
            key,
            format!("expected a duration such as '1 s', '500 ms' or '1 min', got '{value}' ({e})"),
        )
    })
}

fn number<T: std::str::FromStr>(
    key: &str,
    value: &str,
    what: &str,
) -> Result<T, RestartConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| error(key, format!("expected {what}, got '{}'", value.trim())))
}

impl RestartStrategy {
    /// Reads the `restart-strategy.*` keys of a job configuration (other keys are ignored).
    /// Without `restart-strategy.type` the strategy is `exponential-delay`.
    pub fn from_config(config: &BTreeMap<String, String>) -> Result<Self, RestartConfigError> {
        for key in config.keys().filter(|k| k.starts_with(PREFIX)) {
            if !KEYS.iter().any(|(known, _)| known == key) {
                let valid: Vec<_> = KEYS.iter().map(|(k, _)| *k).collect();
                return Err(error(
                    key,
                    format!(
                        "unknown restart-strategy key; valid keys: {}",
                        valid.join(", ")
                    ),
                ));
            }
        }
        let get = |suffix: &str| {
            let key = format!("{PREFIX}{suffix}");
            config.get(&key).map(|v| (key, v.as_str()))
        };
        let kind = get("type").map(|(_, v)| v.trim().to_ascii_lowercase());
        match kind.as_deref() {
            Some("none" | "off" | "disable") => Ok(RestartStrategy::None),
            Some("fixed-delay" | "fixeddelay") => {
                let mut s = FixedDelay::default();
                if let Some((key, v)) = get("fixed-delay.attempts") {
                    s.attempts = number(&key, v, "a number of restarts (0 or more)")?;
                }
                if let Some((key, v)) = get("fixed-delay.delay") {
                    s.delay = duration(&key, v)?;
                }
                Ok(RestartStrategy::FixedDelay(s))
            }
            None | Some("exponential-delay" | "exponentialdelay") => {
                let mut s = ExponentialDelay::default();
                let p = "exponential-delay.";
                if let Some((key, v)) = get(&format!("{p}initial-backoff")) {
                    s.initial_backoff = duration(&key, v)?;
                    if s.initial_backoff.is_zero() {
                        return Err(error(&key, "must be positive"));
                    }
                }
                if let Some((key, v)) = get(&format!("{p}max-backoff")) {
                    s.max_backoff = duration(&key, v)?;
                }
                if s.max_backoff < s.initial_backoff {
                    return Err(error(
                        &format!("{PREFIX}{p}max-backoff"),
                        format!(
                            "must be at least the initial backoff ({})",
                            humantime::format_duration(s.initial_backoff)
                        ),
                    ));
                }
                if let Some((key, v)) = get(&format!("{p}backoff-multiplier")) {
                    s.multiplier = number(&key, v, "a number of at least 1, such as 1.5")?;
                    if !(s.multiplier.is_finite() && s.multiplier >= 1.0) {
                        return Err(error(&key, format!("must be at least 1, got {v}")));
                    }
                }
                if let Some((key, v)) = get(&format!("{p}reset-backoff-threshold")) {
                    s.reset_backoff_threshold = duration(&key, v)?;
                }
                if let Some((key, v)) = get(&format!("{p}jitter-factor")) {
                    s.jitter_factor = number(&key, v, "a number between 0 and 1")?;
                    if !(0.0..=1.0).contains(&s.jitter_factor) {
                        return Err(error(&key, format!("must be between 0 and 1, got {v}")));
                    }
                }
                if let Some((key, v)) = get(&format!("{p}attempts-before-reset-backoff")) {
                    let attempts: u32 = number(&key, v, "a positive number of restarts")?;
                    if attempts == 0 {
                        return Err(error(&key, "must be at least 1"));
                    }
                    s.attempts_before_reset = Some(attempts);
                }
                Ok(RestartStrategy::ExponentialDelay(s))
            }
            Some("failure-rate" | "failurerate") => Err(error(
                "restart-strategy.type",
                "failure-rate is not supported yet; use fixed-delay or exponential-delay",
            )),
            Some(other) => Err(error(
                "restart-strategy.type",
                format!(
                    "unknown strategy '{other}'; expected none, fixed-delay or exponential-delay"
                ),
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

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
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
            assert_eq!(
                RestartStrategy::from_config(&config(pairs)).unwrap(),
                expected,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn parsing_errors_name_the_key_and_what_is_valid() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("restart-strategy.type", "sometimes")],
                "unknown strategy 'sometimes'",
            ),
            (
                &[("restart-strategy.type", "failure-rate")],
                "not supported",
            ),
            (
                &[("restart-strategy.fixed-delay.atempts", "2")],
                "valid keys: restart-strategy.type",
            ),
            (
                &[
                    ("restart-strategy.type", "fixed-delay"),
                    ("restart-strategy.fixed-delay.delay", "soon"),
                ],
                "restart-strategy.fixed-delay.delay: expected a duration",
            ),
            (
                &[
                    ("restart-strategy.type", "fixed-delay"),
                    ("restart-strategy.fixed-delay.attempts", "-1"),
                ],
                "restart-strategy.fixed-delay.attempts: expected a number",
            ),
            (
                &[(
                    "restart-strategy.exponential-delay.backoff-multiplier",
                    "0.5",
                )],
                "must be at least 1",
            ),
            (
                &[("restart-strategy.exponential-delay.jitter-factor", "2")],
                "between 0 and 1",
            ),
            (
                &[("restart-strategy.exponential-delay.max-backoff", "100ms")],
                "max-backoff: must be at least the initial backoff",
            ),
            (
                &[(
                    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                    "0",
                )],
                "must be at least 1",
            ),
        ];
        for (pairs, expected) in cases {
            let e = RestartStrategy::from_config(&config(pairs))
                .unwrap_err()
                .to_string();
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
