//! Flink-style `-Dkey=value` configuration overrides of the local runner.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesoflow_dataplane::RuntimeConfig;
use mesoflow_dataplane::key_groups::{DEFAULT_MAX_PARALLELISM, UPPER_MAX_PARALLELISM};

/// Configuration keys `mesoflow run` understands, with what they set.
pub const KEYS: &[(&str, &str)] = &[
    (
        "parallelism.default",
        "default parallelism of every operator",
    ),
    (
        "pipeline.max-parallelism",
        "number of key groups (max parallelism of keyed operators)",
    ),
    (
        "execution.buffer-timeout",
        "longest a partial batch waits before it is shipped (e.g. 10ms)",
    ),
    (
        "execution.batch-size",
        "records per batch shipped between subtasks",
    ),
    (
        "execution.channel-capacity",
        "batches a channel buffers before the sender blocks",
    ),
    (
        "heartbeat.interval",
        "how often TaskManagers send heartbeats to the JobManager (default 10 s)",
    ),
    (
        "heartbeat.timeout",
        "a TaskManager silent this long is lost (default 50 s)",
    ),
    (
        "cluster.evenly-spread-out-slots",
        "true: spread subtasks over TaskManagers (default); false: fill one before the next",
    ),
    (
        "restart-strategy.type",
        "none, fixed-delay or exponential-delay (default)",
    ),
    (
        "restart-strategy.*",
        "the restart strategy's keys (e.g. restart-strategy.fixed-delay.attempts)",
    ),
];

/// Settings of a local run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Default parallelism.
    pub parallelism: u32,
    /// Key groups.
    pub max_parallelism: u32,
    /// Runtime tunables.
    pub runtime: RuntimeConfig,
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout: Duration,
    /// `cluster.evenly-spread-out-slots`.
    pub spread: bool,
    /// The `restart-strategy*` keys, parsed by the restart strategy.
    pub restart: BTreeMap<String, String>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            runtime: RuntimeConfig::default(),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(50),
            spread: true,
            restart: BTreeMap::new(),
        }
    }
}

fn duration(key: &str, value: &str) -> Result<Duration> {
    match value.parse::<u64>() {
        // Flink reads a bare number as milliseconds.
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => humantime::parse_duration(&value.replace(' ', "")).with_context(|| {
            format!("-D{key} must be a duration such as 10 s or 500ms, got '{value}'")
        }),
    }
}

fn positive(key: &str, value: &str) -> Result<u64> {
    let v: u64 = value
        .replace('_', "")
        .parse()
        .with_context(|| format!("-D{key} must be a positive integer, got '{value}'"))?;
    if v == 0 {
        bail!("-D{key} must be positive, got 0");
    }
    Ok(v)
}

impl LocalConfig {
    /// Applies `key=value` overrides; an unknown key is an error naming the valid ones.
    pub fn apply(&mut self, overrides: &[String]) -> Result<()> {
        for item in overrides {
            let Some((key, value)) = item.split_once('=') else {
                bail!("-D{item} is not key=value (for example -Dparallelism.default=2)");
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "parallelism.default" => {
                    let v = positive(key, value)?;
                    self.parallelism = u32::try_from(v)
                        .ok()
                        .filter(|&p| p <= UPPER_MAX_PARALLELISM)
                        .with_context(|| {
                            format!("-D{key} must be at most {UPPER_MAX_PARALLELISM}, got {v}")
                        })?;
                }
                "pipeline.max-parallelism" => {
                    let v = positive(key, value)?;
                    self.max_parallelism = u32::try_from(v)
                        .ok()
                        .filter(|&p| p <= UPPER_MAX_PARALLELISM)
                        .with_context(|| {
                            format!("-D{key} must be at most {UPPER_MAX_PARALLELISM}, got {v}")
                        })?;
                }
                "execution.buffer-timeout" => {
                    let ms = duration(key, value)?.as_millis() as u64;
                    self.runtime.buffer_timeout_ms = ms.max(1);
                }
                "heartbeat.interval" => self.heartbeat_interval = duration(key, value)?,
                "heartbeat.timeout" => self.heartbeat_timeout = duration(key, value)?,
                "cluster.evenly-spread-out-slots" => {
                    self.spread = match value {
                        "true" => true,
                        "false" => false,
                        _ => bail!("-D{key} must be true or false, got '{value}'"),
                    }
                }
                k if k == "restart-strategy" || k.starts_with("restart-strategy.") => {
                    self.restart.insert(k.to_owned(), value.to_owned());
                }
                "execution.batch-size" => {
                    self.runtime.batch_size = positive(key, value)?.min(1 << 20) as usize;
                }
                "execution.channel-capacity" => {
                    self.runtime.channel_capacity = positive(key, value)?.min(1 << 16) as usize;
                }
                _ => {
                    let valid: Vec<_> = KEYS.iter().map(|(k, _)| *k).collect();
                    bail!(
                        "unknown configuration key '{key}'; valid keys: {}",
                        valid.join(", ")
                    );
                }
            }
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            bail!(
                "heartbeat.timeout ({:?}) must be longer than heartbeat.interval ({:?})",
                self.heartbeat_timeout,
                self.heartbeat_interval
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_unknown_keys_are_named() {
        let mut c = LocalConfig::default();
        c.apply(&[
            "parallelism.default=2".into(),
            "execution.buffer-timeout=25ms".into(),
            "execution.batch-size=512".into(),
        ])
        .unwrap();
        assert_eq!(c.parallelism, 2);
        assert_eq!(c.runtime.buffer_timeout_ms, 25);
        assert_eq!(c.runtime.batch_size, 512);
        let e = c
            .apply(&["parallelism.defualt=2".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown configuration key 'parallelism.defualt'")
                && e.contains("parallelism.default"),
            "{e}"
        );
        let e = c
            .apply(&["parallelism.default=0".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive"), "{e}");
    }
}
