//! The `MESOS_*` environment a Mesos agent gives a custom executor, parsed and validated.
//!
//! Since Mesos 1.0 an executor does not inherit the agent's environment: these variables are the
//! whole of what it learns about itself before SUBSCRIBED. Parsing is a pure function of a lookup
//! closure so that every case is testable without touching the process environment; the binary
//! reads the real environment once, before any thread starts, through [`ExecutorEnvironment::from_process_env`].

use std::path::PathBuf;
use std::time::Duration;

use mesoflow_dataplane::duration::{DurationError, parse_duration};

/// Names of the variables this module reads.
pub mod vars {
    /// The FrameworkID, copied into every call.
    pub const FRAMEWORK_ID: &str = "MESOS_FRAMEWORK_ID";
    /// The ExecutorID, copied into every call.
    pub const EXECUTOR_ID: &str = "MESOS_EXECUTOR_ID";
    /// `ip:port` of the agent's HTTP endpoint.
    pub const AGENT_ENDPOINT: &str = "MESOS_AGENT_ENDPOINT";
    /// The sandbox as the executor sees it (its working directory).
    pub const SANDBOX: &str = "MESOS_SANDBOX";
    /// The sandbox as the host sees it; used when `MESOS_SANDBOX` is absent.
    pub const DIRECTORY: &str = "MESOS_DIRECTORY";
    /// The AgentID (informational).
    pub const SLAVE_ID: &str = "MESOS_SLAVE_ID";
    /// `1` or `0`: whether the framework checkpoints, which decides what a disconnect means.
    pub const CHECKPOINT: &str = "MESOS_CHECKPOINT";
    /// How long to keep trying to re-subscribe after a disconnect (checkpointing only).
    pub const RECOVERY_TIMEOUT: &str = "MESOS_RECOVERY_TIMEOUT";
    /// Upper bound of each re-subscription delay (checkpointing only).
    pub const SUBSCRIPTION_BACKOFF_MAX: &str = "MESOS_SUBSCRIPTION_BACKOFF_MAX";
    /// How long the agent waits after SHUTDOWN before destroying the container.
    pub const SHUTDOWN_GRACE_PERIOD: &str = "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD";
    /// A JWT to send as `Authorization: Bearer` on every request, when the agent issues one.
    pub const AUTHENTICATION_TOKEN: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";
}

/// A variable of the executor environment was missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    /// A required variable is not set.
    #[error(
        "{name} is not set: mesoflow-executor must be launched by a Mesos agent (or with the same MESOS_* environment)"
    )]
    Missing {
        /// The variable's name.
        name: &'static str,
    },
    /// A variable is set but its value is unusable.
    #[error("{name}='{value}' is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// The value as found (the token is never echoed).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A duration variable does not parse.
    #[error("{name} is invalid: {source}")]
    Duration {
        /// The variable's name.
        name: &'static str,
        /// The parse failure, which quotes the value.
        source: DurationError,
    },
}

/// What a disconnect from the agent means, from `MESOS_CHECKPOINT` and its companions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointing {
    /// `MESOS_CHECKPOINT=0`: the agent will never reconnect to us, so a disconnect ends the executor.
    Disabled,
    /// `MESOS_CHECKPOINT=1`: the agent may restart and expects us back within `backoff_max`.
    Enabled {
        /// Keep re-subscribing this long after a disconnect, then give up.
        recovery_timeout: Duration,
        /// Each retry delay is drawn from `[0, backoff_max]`.
        backoff_max: Duration,
    },
}

/// Everything the agent told the executor through its environment.
#[derive(Clone, PartialEq, Eq)]
pub struct ExecutorEnvironment {
    /// Copied into every call's `framework_id`.
    pub framework_id: String,
    /// Copied into every call's `executor_id`.
    pub executor_id: String,
    /// `host:port` of the agent, as given.
    pub agent_endpoint: String,
    /// The executor's sandbox (also its working directory).
    pub sandbox: PathBuf,
    /// The agent's id, when the agent gave it.
    pub agent_id: Option<String>,
    /// Reconnection behaviour.
    pub checkpointing: Checkpointing,
    /// Time the agent grants between SHUTDOWN and destroying the container.
    pub shutdown_grace_period: Duration,
    /// Bearer token for every request, when the agent runs with executor authentication.
    pub authentication_token: Option<String>,
}

impl std::fmt::Debug for ExecutorEnvironment {
    // Hand-written so that the bearer token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorEnvironment")
            .field("framework_id", &self.framework_id)
            .field("executor_id", &self.executor_id)
            .field("agent_endpoint", &self.agent_endpoint)
            .field("sandbox", &self.sandbox)
            .field("agent_id", &self.agent_id)
            .field("checkpointing", &self.checkpointing)
            .field("shutdown_grace_period", &self.shutdown_grace_period)
            .field(
                "authentication_token",
                &self.authentication_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl ExecutorEnvironment {
    /// Parses the environment through `lookup` (a variable's value, or `None` when unset).
    pub fn parse(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvironmentError> {
        let required = |name: &'static str| -> Result<String, EnvironmentError> {
            match lookup(name) {
                None => Err(EnvironmentError::Missing { name }),
                Some(value) if value.trim().is_empty() => Err(EnvironmentError::Invalid {
                    name,
                    value,
                    reason: "it is empty".to_owned(),
                }),
                Some(value) => Ok(value),
            }
        };
        let duration = |name: &'static str| -> Result<Duration, EnvironmentError> {
            let value = required(name)?;
            // The agent always writes a unit; a bare number (milliseconds to Flink) is a mistake.
            if value.trim().bytes().all(|b| b.is_ascii_digit()) {
                return Err(EnvironmentError::Invalid {
                    name,
                    value,
                    reason: "a duration needs a unit, such as 5secs or 250ms".to_owned(),
                });
            }
            parse_duration(&value).map_err(|source| EnvironmentError::Duration { name, source })
        };

        let framework_id = required(vars::FRAMEWORK_ID)?;
        let executor_id = required(vars::EXECUTOR_ID)?;
        let agent_endpoint = required(vars::AGENT_ENDPOINT)?;
        validate_endpoint(&agent_endpoint).map_err(|reason| EnvironmentError::Invalid {
            name: vars::AGENT_ENDPOINT,
            value: agent_endpoint.clone(),
            reason,
        })?;
        let sandbox =
            match lookup(vars::SANDBOX).filter(|s| !s.is_empty()) {
                Some(sandbox) => PathBuf::from(sandbox),
                None => PathBuf::from(required(vars::DIRECTORY).map_err(|_| {
                    EnvironmentError::Missing {
                        name: vars::SANDBOX,
                    }
                })?),
            };
        let agent_id = lookup(vars::SLAVE_ID).filter(|s| !s.is_empty());
        let checkpointing = match required(vars::CHECKPOINT)?.as_str() {
            "1" => Checkpointing::Enabled {
                recovery_timeout: duration(vars::RECOVERY_TIMEOUT)?,
                backoff_max: duration(vars::SUBSCRIPTION_BACKOFF_MAX)?,
            },
            "0" => Checkpointing::Disabled,
            other => {
                return Err(EnvironmentError::Invalid {
                    name: vars::CHECKPOINT,
                    value: other.to_owned(),
                    reason: "expected 1 or 0".to_owned(),
                });
            }
        };
        let shutdown_grace_period = duration(vars::SHUTDOWN_GRACE_PERIOD)?;
        let authentication_token = match lookup(vars::AUTHENTICATION_TOKEN) {
            None => None,
            Some(token) if token.is_empty() => {
                return Err(EnvironmentError::Invalid {
                    name: vars::AUTHENTICATION_TOKEN,
                    value: String::new(),
                    reason: "it is empty; unset it when the agent does not authenticate executors"
                        .to_owned(),
                });
            }
            Some(token) if token.bytes().any(|b| !(0x21..=0x7e).contains(&b)) => {
                return Err(EnvironmentError::Invalid {
                    name: vars::AUTHENTICATION_TOKEN,
                    value: "<redacted>".to_owned(),
                    reason: "it contains whitespace or non-ASCII characters and cannot be sent as a Bearer token".to_owned(),
                });
            }
            Some(token) => Some(token),
        };

        Ok(Self {
            framework_id,
            executor_id,
            agent_endpoint,
            sandbox,
            agent_id,
            checkpointing,
            shutdown_grace_period,
            authentication_token,
        })
    }

    /// Reads the real process environment, then removes the authentication token from it (as the
    /// Mesos C++ library does) so that task processes started later cannot read it.
    ///
    /// # Safety
    /// Modifies the process environment: call it before any other thread exists (before the
    /// tokio runtime is built).
    pub unsafe fn from_process_env() -> Result<Self, EnvironmentError> {
        let parsed = Self::parse(|name| std::env::var(name).ok());
        // SAFETY: the caller guarantees that no other thread reads or writes the environment.
        unsafe { std::env::remove_var(vars::AUTHENTICATION_TOKEN) };
        parsed
    }

    /// The executor API endpoint: `http://<MESOS_AGENT_ENDPOINT>/api/v1/executor`.
    pub fn executor_api_url(&self) -> String {
        format!("http://{}/api/v1/executor", self.agent_endpoint)
    }
}

/// Checks that an endpoint is `host:port` (IPv6 hosts in brackets) with a usable port.
fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let expected = "expected ip:port such as 10.0.0.5:5051";
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("no port; {expected}"))?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    if !host_ok {
        return Err(format!(
            "'{host}' is not a host name or address; {expected}"
        ));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{port}' is not a port number; {expected}")),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn agent_env(checkpoint: bool) -> HashMap<&'static str, String> {
        let mut env: HashMap<&'static str, String> = [
            (vars::FRAMEWORK_ID, "fw-1"),
            (vars::EXECUTOR_ID, "exec-1"),
            (vars::AGENT_ENDPOINT, "127.0.0.1:5051"),
            (vars::SANDBOX, "/var/lib/mesos/sandbox"),
            (vars::DIRECTORY, "/var/lib/mesos/sandbox"),
            (vars::SLAVE_ID, "agent-1"),
            (vars::CHECKPOINT, if checkpoint { "1" } else { "0" }),
            (vars::SHUTDOWN_GRACE_PERIOD, "5secs"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        if checkpoint {
            env.insert(vars::RECOVERY_TIMEOUT, "15mins".to_owned());
            env.insert(vars::SUBSCRIPTION_BACKOFF_MAX, "2secs".to_owned());
        }
        env
    }

    fn parse(env: &HashMap<&'static str, String>) -> Result<ExecutorEnvironment, EnvironmentError> {
        ExecutorEnvironment::parse(|name| env.get(name).cloned())
    }

    #[test]
    fn parses_a_checkpointing_agents_environment() {
        let mut env = agent_env(true);
        env.insert(vars::AUTHENTICATION_TOKEN, "eyJhbGciOi.J9.sig".to_owned());
        let parsed = parse(&env).unwrap();
        assert_eq!(parsed.framework_id, "fw-1");
        assert_eq!(parsed.executor_id, "exec-1");
        assert_eq!(
            parsed.executor_api_url(),
            "http://127.0.0.1:5051/api/v1/executor"
        );
        assert_eq!(parsed.sandbox, PathBuf::from("/var/lib/mesos/sandbox"));
        assert_eq!(parsed.agent_id.as_deref(), Some("agent-1"));
        assert_eq!(
            parsed.checkpointing,
            Checkpointing::Enabled {
                recovery_timeout: Duration::from_secs(900),
                backoff_max: Duration::from_secs(2),
            }
        );
        assert_eq!(parsed.shutdown_grace_period, Duration::from_secs(5));
        assert_eq!(
            parsed.authentication_token.as_deref(),
            Some("eyJhbGciOi.J9.sig")
        );
        assert!(
            !format!("{parsed:?}").contains("eyJ"),
            "token leaked into Debug"
        );
    }

    #[test]
    fn without_checkpointing_the_recovery_variables_are_not_needed() {
        let parsed = parse(&agent_env(false)).unwrap();
        assert_eq!(parsed.checkpointing, Checkpointing::Disabled);
        assert_eq!(parsed.authentication_token, None);
    }

    #[test]
    fn sandbox_falls_back_to_mesos_directory() {
        let mut env = agent_env(false);
        env.remove(vars::SANDBOX);
        env.insert(vars::DIRECTORY, "/host/sandbox".to_owned());
        assert_eq!(parse(&env).unwrap().sandbox, PathBuf::from("/host/sandbox"));
        env.remove(vars::DIRECTORY);
        assert_eq!(
            parse(&env),
            Err(EnvironmentError::Missing {
                name: vars::SANDBOX
            })
        );
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for (checkpoint, name) in [
            (false, vars::FRAMEWORK_ID),
            (false, vars::EXECUTOR_ID),
            (false, vars::AGENT_ENDPOINT),
            (false, vars::CHECKPOINT),
            (false, vars::SHUTDOWN_GRACE_PERIOD),
            (true, vars::RECOVERY_TIMEOUT),
            (true, vars::SUBSCRIPTION_BACKOFF_MAX),
        ] {
            let mut env = agent_env(checkpoint);
            env.remove(name);
            let err = parse(&env).unwrap_err();
            assert_eq!(err, EnvironmentError::Missing { name });
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn each_invalid_value_is_refused_naming_the_variable() {
        let cases: &[(bool, &str, &str)] = &[
            (false, vars::FRAMEWORK_ID, ""),
            (false, vars::EXECUTOR_ID, "  "),
            (false, vars::AGENT_ENDPOINT, "localhost"),
            (false, vars::AGENT_ENDPOINT, "10.0.0.5:http"),
            (false, vars::AGENT_ENDPOINT, "10.0.0.5:0"),
            (false, vars::AGENT_ENDPOINT, "10.0.0.5:70000"),
            (false, vars::AGENT_ENDPOINT, "http://10.0.0.5:5051"),
            (false, vars::AGENT_ENDPOINT, "[::1:5051"),
            (false, vars::CHECKPOINT, "true"),
            (false, vars::CHECKPOINT, "yes"),
            (false, vars::CHECKPOINT, "2"),
            (false, vars::SHUTDOWN_GRACE_PERIOD, "5"),
            (false, vars::SHUTDOWN_GRACE_PERIOD, "-5secs"),
            (true, vars::RECOVERY_TIMEOUT, "forever"),
            (true, vars::SUBSCRIPTION_BACKOFF_MAX, "2 seconds please"),
            (false, vars::AUTHENTICATION_TOKEN, ""),
            (false, vars::AUTHENTICATION_TOKEN, "two words"),
        ];
        for &(checkpoint, name, value) in cases {
            let mut env = agent_env(checkpoint);
            env.insert(name, value.to_owned());
            let err = parse(&env).expect_err(&format!("{name}={value}"));
            let message = err.to_string();
            assert!(message.starts_with(name), "{name}={value}: {message}");
            if name == vars::AUTHENTICATION_TOKEN && !value.is_empty() {
                assert!(!message.contains(value), "token echoed: {message}");
            }
        }
    }

    #[test]
    fn accepts_ipv6_and_host_names() {
        for endpoint in ["[::1]:5051", "agent-7.example.com:5051", "10.0.0.5:5051"] {
            let mut env = agent_env(false);
            env.insert(vars::AGENT_ENDPOINT, endpoint.to_owned());
            assert_eq!(parse(&env).unwrap().agent_endpoint, endpoint);
        }
    }
}
