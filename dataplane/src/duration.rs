//! The one duration parser of mesoflow: configuration values, the Mesos agent's environment and
//! command-line flags all read durations here.
//!
//! It accepts the union of two dialects:
//! - Flink's (`TimeUtils.parseDuration`): a whole number, optional spaces, and a unit — `10 s`,
//!   `10s`, `1 min`, `500 ms`, `2h`, `1d`. A bare number is milliseconds, Flink's default unit.
//! - Mesos's (stout's `Duration` writer, used in the agent's `MESOS_*` environment): a number that
//!   may be fractional, immediately followed by a unit — `5secs`, `1.5mins`, `2hrs`, `1days`,
//!   `3weeks`, `10ms`, `10us`, `10ns`.
//!
//! Units are case-insensitive: `d`, `day`, `days`; `h`, `hr`, `hrs`, `hour`, `hours`; `m`,
//! `min`, `mins`, `minute`, `minutes`; `s`, `sec`, `secs`, `second`, `seconds`; `ms`, `milli`,
//! `millis`, `millisecond`, `milliseconds`; `us`, `µs`, `micro`, `micros`, `microsecond`,
//! `microseconds`; `ns`, `nano`, `nanos`, `nanosecond`, `nanoseconds`; `w`, `week`, `weeks`.
//! Several terms may follow each other (`1m 30s`, `1h30min`), as operators used to humantime
//! tend to write. Negative values, values beyond `u64::MAX` nanoseconds (about 584 years, so that
//! `now + duration` never overflows) and anything else are refused with a [`DurationError`].

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{input}' is not a duration ({reason}); expected a number and a unit such as 10 s, 500 ms, 1 min or 1.5mins"
)]
pub struct DurationError {
    /// The text that was refused.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Nanoseconds per unit, by every name the two dialects use.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        "us" | "µs" | "μs" | "micro" | "micros" | "microsecond" | "microseconds" => 1_000,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => NANOS_PER_SEC,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * NANOS_PER_SEC,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600 * NANOS_PER_SEC,
        "d" | "day" | "days" => 86_400 * NANOS_PER_SEC,
        "w" | "week" | "weeks" => 7 * 86_400 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parses a duration in Flink's or Mesos's form (see the module documentation).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    parse_nanos(input.trim())
        .and_then(|nanos| {
            u64::try_from(nanos)
                .map(Duration::from_nanos)
                .map_err(|_| "it is too large (more than 584 years)".to_owned())
        })
        .map_err(|reason| DurationError {
            input: input.to_owned(),
            reason,
        })
}

fn parse_nanos(text: &str) -> Result<u128, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.starts_with('-') {
        return Err("it is negative".into());
    }
    // Flink: a bare whole number is milliseconds.
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return whole(text)?
            .checked_mul(1_000_000)
            .ok_or_else(|| "it is too large".into());
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() {
            return Err(format!("'{rest}' does not start with a number"));
        }
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].to_lowercase();
        if unit.is_empty() {
            return Err(format!("'{number}' has no unit"));
        }
        let per_unit = unit_nanos(&unit).ok_or_else(|| format!("'{unit}' is not a unit"))?;
        rest = rest[unit_len..].trim_start();
        total = term(number, per_unit)?
            .checked_add(total)
            .ok_or("it is too large")?;
        if total > u128::from(u64::MAX) {
            return Err("it is too large (more than 584 years)".into());
        }
    }
    Ok(total)
}

/// A whole number of at most 30 digits (more cannot be a duration of this world).
fn whole(digits: &str) -> Result<u128, String> {
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err("it is too large".into());
    }
    Ok(if digits.is_empty() {
        0
    } else {
        digits.parse::<u128>().map_err(|e| e.to_string())?
    })
}

/// `number` (digits, optionally one `.` and more digits) times `per_unit` nanoseconds, rounded to
/// the nearest nanosecond, in exact integer arithmetic.
fn term(number: &str, per_unit: u128) -> Result<u128, String> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("'{number}' is not a number"));
    }
    let too_large = || "it is too large (more than 584 years)".to_owned();
    let mut nanos = whole(int)?.checked_mul(per_unit).ok_or_else(too_large)?;
    // Digits past the 18th are far below a nanosecond for every unit.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let scale = 10u128.pow(frac.len() as u32);
        let part = frac.parse::<u128>().map_err(|e| e.to_string())? * per_unit;
        nanos = nanos
            .checked_add((part + scale / 2) / scale)
            .ok_or_else(too_large)?;
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn flink_forms() {
        assert_eq!(ok("10 s"), Duration::from_secs(10));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("1 min"), Duration::from_secs(60));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("500 ms"), Duration::from_millis(500));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(ok("3 days"), Duration::from_secs(3 * 86_400));
        assert_eq!(ok("100"), Duration::from_millis(100));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("7 µs"), Duration::from_micros(7));
        assert_eq!(ok("7 micros"), Duration::from_micros(7));
        assert_eq!(ok("9 nanoseconds"), Duration::from_nanos(9));
        assert_eq!(ok("2 SECONDS"), Duration::from_secs(2));
        assert_eq!(ok(" 5 min "), Duration::from_secs(300));
    }

    #[test]
    fn mesos_forms() {
        assert_eq!(ok("5secs"), Duration::from_secs(5));
        assert_eq!(ok("1.5mins"), Duration::from_secs(90));
        assert_eq!(ok("2hrs"), Duration::from_secs(7200));
        assert_eq!(ok("1days"), Duration::from_secs(86_400));
        assert_eq!(ok("3weeks"), Duration::from_secs(21 * 86_400));
        assert_eq!(ok("10ms"), Duration::from_millis(10));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10ns"), Duration::from_nanos(10));
        assert_eq!(ok("0secs"), Duration::ZERO);
        assert_eq!(ok("0.25secs"), Duration::from_millis(250));
        assert_eq!(ok(".5secs"), Duration::from_millis(500));
        assert_eq!(ok("1.0000000001secs"), Duration::from_nanos(1_000_000_000));
        assert_eq!(ok("2.5ns"), Duration::from_nanos(3));
    }

    #[test]
    fn compound_forms() {
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok("1h30min"), Duration::from_secs(5400));
    }

    #[test]
    fn refuses_garbage_with_the_input_and_the_reason() {
        for (bad, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("-5secs", "negative"),
            ("-1", "negative"),
            ("secs", "does not start with a number"),
            ("1.2.3secs", "not a number"),
            ("five minutes", "does not start with a number"),
            ("10 parsecs", "not a unit"),
            ("10 s 5", "no unit"),
            ("1e400weeks", "not a unit"),
            ("99999999999999999999weeks", "too large"),
            ("600years", "not a unit"),
            ("1000000 weeks", "too large"),
            ("18446744073709551616ns", "too large"),
            ("9".repeat(40).as_str(), "too large"),
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert_eq!(err.input, bad);
            assert!(err.reason.contains(reason), "{bad}: {err}");
            assert!(err.to_string().contains("500 ms"), "{err}");
        }
    }

    #[test]
    fn the_largest_duration_is_u64_max_nanoseconds() {
        assert_eq!(ok("18446744073709551615ns"), Duration::from_nanos(u64::MAX));
    }

    proptest! {
        #[test]
        fn whole_numbers_with_any_unit_spelling(
            // Up to 100,000 days: within the 584 years a duration may span.
            n in 0u64..100_000,
            unit in prop::sample::select(vec![
                ("ns", 1u64), ("nanos", 1), ("us", 1_000), ("micro", 1_000), ("ms", 1_000_000),
                ("millis", 1_000_000), ("s", 1_000_000_000), ("secs", 1_000_000_000),
                ("second", 1_000_000_000), ("min", 60_000_000_000), ("mins", 60_000_000_000),
                ("minutes", 60_000_000_000), ("h", 3_600_000_000_000), ("hrs", 3_600_000_000_000),
                ("d", 86_400_000_000_000), ("days", 86_400_000_000_000),
            ]),
            space in prop::sample::select(vec!["", " ", "  "]),
        ) {
            let text = format!("{n}{space}{}", unit.0);
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_nanos(n * unit.1)));
        }

        #[test]
        fn bare_numbers_are_milliseconds(n in 0u64..u64::MAX / 1_000_000) {
            prop_assert_eq!(parse_duration(&n.to_string()), Ok(Duration::from_millis(n)));
        }

        #[test]
        fn fractions_are_exact_to_the_millisecond(whole in 0u64..100_000, millis in 0u64..1000) {
            let text = format!("{whole}.{millis:03}secs");
            prop_assert_eq!(
                parse_duration(&text),
                Ok(Duration::from_secs(whole) + Duration::from_millis(millis))
            );
        }

        #[test]
        fn never_panics_and_errors_keep_the_input(text in "\\PC{0,24}") {
            if let Err(e) = parse_duration(&text) {
                prop_assert_eq!(e.input, text);
            }
        }

        #[test]
        fn negative_values_are_refused(n in 1u64..1_000_000, unit in "(ms|s|min|secs|)") {
            let text = format!("-{n}{unit}");
            prop_assert!(parse_duration(&text).is_err());
        }
    }
}
