//! Job parameters (`-p key=value`), checked against what the job declares.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

/// One parameter a job accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Name (`-p name=value`).
    pub name: &'static str,
    /// Default, shown by `mesoflow jobs` (empty: none).
    pub default: &'static str,
    /// What it means.
    pub help: &'static str,
}

/// Parameter values given to a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parses `key=value` items.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        let mut values = BTreeMap::new();
        for item in items {
            let item = item.as_ref();
            let Some((k, v)) = item.split_once('=') else {
                return Err(EngineError::InvalidArgument(format!(
                    "parameter '{item}' is not key=value (for example events=1000000)"
                )));
            };
            let k = k.trim();
            if k.is_empty() {
                return Err(EngineError::InvalidArgument(format!(
                    "parameter '{item}' has an empty name"
                )));
            }
            values.insert(k.to_string(), v.trim().to_string());
        }
        Ok(Self { values })
    }

    /// Sets a value.
    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.values.insert(key.to_string(), value.to_string());
    }

    /// All given values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Rejects names the job does not declare; the error lists the valid ones.
    pub fn check(&self, job: &str, specs: &[ParamSpec]) -> Result<()> {
        for k in self.values.keys() {
            if !specs.iter().any(|s| s.name == k) {
                let valid: Vec<_> = specs.iter().map(|s| s.name).collect();
                return Err(EngineError::InvalidArgument(format!(
                    "job '{job}' has no parameter '{k}'; valid parameters: {}",
                    valid.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The raw value, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// An unsigned integer (underscores allowed: `10_000_000`), or `default`.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.replace('_', "").parse::<u64>().map_err(|_| {
                EngineError::InvalidArgument(format!(
                    "parameter {key} must be a non-negative integer, got '{v}'"
                ))
            }),
        }
    }

    /// A positive integer, or `default`.
    pub fn positive_or(&self, key: &str, default: u64) -> Result<u64> {
        let v = self.u64_or(key, default)?;
        if v == 0 {
            return Err(EngineError::InvalidArgument(format!(
                "parameter {key} must be positive, got 0"
            )));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec {
            name: "events",
            default: "10",
            help: "",
        },
        ParamSpec {
            name: "seed",
            default: "0",
            help: "",
        },
    ];

    #[test]
    fn parses_checks_and_converts() {
        let p = Params::parse(&["events=1_000", "seed=7"]).unwrap();
        p.check("j", SPECS).unwrap();
        assert_eq!(p.u64_or("events", 5).unwrap(), 1000);
        assert_eq!(p.u64_or("other", 5).unwrap(), 5);
        let bad = Params::parse(&["evnts=1"]).unwrap();
        let e = bad.check("j", SPECS).unwrap_err().to_string();
        assert_eq!(
            e,
            "job 'j' has no parameter 'evnts'; valid parameters: events, seed"
        );
        let e = Params::parse(&["events"]).unwrap_err().to_string();
        assert!(e.contains("not key=value"), "{e}");
        let p = Params::parse(&["events=ten"]).unwrap();
        let e = p.u64_or("events", 1).unwrap_err().to_string();
        assert!(e.contains("'ten'"), "{e}");
    }
}
