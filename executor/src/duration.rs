//! Duration strings as the Mesos agent writes them into the executor's environment.
//!
//! The agent formats durations with stout's writer: a decimal number, possibly fractional, followed
//! immediately by a unit (`ns`, `us`, `ms`, `secs`, `mins`, `hrs`, `days`, `weeks`), for example
//! `15mins`, `2secs`, `250ms` or `1.5mins`. Operators who set the same variables by hand tend to
//! write humantime forms (`2s`, `1m 30s`), so those are accepted as well.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{input}' is not a duration ({reason}); expected a number and a unit such as 15mins, 2secs or 250ms"
)]
pub struct DurationError {
    /// The text that was refused.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Units of stout's duration format, longest suffix first so that `ms` is not read as `s`.
const MESOS_UNITS: &[(&str, f64)] = &[
    ("weeks", 7.0 * 86_400e9),
    ("days", 86_400e9),
    ("hrs", 3_600e9),
    ("mins", 60e9),
    ("secs", 1e9),
    ("ms", 1e6),
    ("us", 1e3),
    ("ns", 1.0),
];

/// Parses a duration in the agent's format (`15mins`, `1.5secs`), or in humantime's (`2s`, `1m 30s`).
///
/// Negative, non-finite and absurdly large values are refused rather than clamped: a recovery
/// timeout of "-1secs" is a configuration mistake the operator should hear about.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    let error = |reason: &str| DurationError {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(error("it is empty"));
    }
    if text.starts_with('-') {
        return Err(error("it is negative"));
    }
    if let Some(duration) = parse_mesos_form(text) {
        return duration.map_err(|reason| error(&reason));
    }
    let duration = humantime::parse_duration(text).map_err(|e| error(&e.to_string()))?;
    // Keep every deadline computed from it (`now + duration`) far from overflowing.
    if duration.as_nanos() > u128::from(u64::MAX) {
        return Err(error("it is too large"));
    }
    Ok(duration)
}

/// Tries stout's `<number><unit>` form. `None` means "not this form"; `Some(Err)` means it was
/// this form but the number is unusable.
fn parse_mesos_form(text: &str) -> Option<Result<Duration, String>> {
    let (number, nanos_per_unit) = MESOS_UNITS
        .iter()
        .find_map(|(unit, factor)| text.strip_suffix(unit).map(|n| (n, *factor)))?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let Ok(value) = number.parse::<f64>() else {
        return Some(Err(format!("'{number}' is not a number")));
    };
    let nanos = value * nanos_per_unit;
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Some(Err("it is too large".to_owned()));
    }
    Some(Ok(Duration::from_nanos(nanos.round() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_agents_formats() {
        assert_eq!(parse_duration("15mins"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2secs"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5mins"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3hrs"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("1days"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("2weeks"),
            Ok(Duration::from_secs(14 * 86_400))
        );
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0secs"), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_humantime_forms() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 5min "), Ok(Duration::from_secs(300)));
    }

    #[test]
    fn refuses_garbage_with_the_input_in_the_message() {
        for bad in [
            "",
            "   ",
            "-5secs",
            "secs",
            "1.2.3secs",
            "five minutes",
            "10",
            "1e400weeks",
            "99999999999999999999weeks",
            "9000000000years",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("15mins"), "{err}");
        }
    }
}
