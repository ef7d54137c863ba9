//! Resource arithmetic for the test master: what an agent has, what is offered, what a task uses.
//!
//! Mesos compares and adds scalar resources in fixed point with three decimal places (so that
//! `0.1 + 0.2` fits into an offer of `0.3`); we do the same by keeping scalars as integer
//! thousandths. Resources are keyed by name and role: `cpus` reserved for `analytics` is a
//! different pool from unreserved (`*`) `cpus`, exactly as on a real agent.

use std::collections::BTreeMap;
use std::fmt;

/// The unreserved role.
pub const UNRESERVED: &str = "*";

/// The value of one named resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quantity {
    /// Thousandths of the scalar (Mesos keeps three decimal places).
    Scalar(i64),
    /// Inclusive ranges, kept sorted, merged and non-overlapping.
    Ranges(Vec<(u64, u64)>),
}

/// Why a resource string or a resource from the wire could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "resource '{0}' is not name:value or name(role):value (example: cpus:4;mem:8192;ports:[31000-32000])"
    )]
    Syntax(String),
    #[error(
        "resource '{name}': value '{value}' is not a non-negative number or a [begin-end,...] range list"
    )]
    Value { name: String, value: String },
    #[error("resource '{name}' has an invalid role '{role}'")]
    Role { name: String, role: String },
    #[error("resource '{0}' is not finite or is negative")]
    NotFinite(String),
    #[error("resource '{0}' has no value for its type (scalar or ranges)")]
    Missing(String),
    #[error("resource '{name}' uses type {kind}, which the test master does not offer")]
    Unsupported { name: String, kind: String },
}

/// Key of a resource pool: name and role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolKey {
    pub name: String,
    pub role: String,
}

/// A bag of resources keyed by (name, role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pools: BTreeMap<PoolKey, Quantity>,
}

/// Converts a floating scalar to thousandths the way Mesos does (round to nearest).
pub fn scalar_to_milli(value: f64) -> Option<i64> {
    if !value.is_finite() || !(0.0..=1e15).contains(&value) {
        return None;
    }
    Some((value * 1000.0).round() as i64)
}

/// Converts thousandths back to the float written on the wire.
pub fn milli_to_scalar(milli: i64) -> f64 {
    milli as f64 / 1000.0
}

fn normalize_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|(b, e)| b <= e);
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (b, e) in ranges {
        match merged.last_mut() {
            Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => merged.push((b, e)),
        }
    }
    merged
}

fn ranges_contain(have: &[(u64, u64)], want: &[(u64, u64)]) -> bool {
    want.iter()
        .all(|&(b, e)| have.iter().any(|&(hb, he)| hb <= b && e <= he))
}

fn ranges_subtract(have: &[(u64, u64)], take: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = have.to_vec();
    for &(tb, te) in take {
        let mut next = Vec::with_capacity(out.len() + 1);
        for (b, e) in out {
            if te < b || tb > e {
                next.push((b, e));
                continue;
            }
            if b < tb {
                next.push((b, tb - 1));
            }
            if te < e {
                next.push((te + 1, e));
            }
        }
        out = next;
    }
    normalize_ranges(out)
}

/// Role names as Mesos validates them (`roles::validate`).
pub fn validate_role(role: &str) -> Result<(), String> {
    if role == UNRESERVED {
        return Ok(());
    }
    if role.is_empty() {
        return Err("role name must not be empty".into());
    }
    if role == "." || role == ".." {
        return Err(format!("role name '{role}' is disallowed"));
    }
    if role.starts_with('-') {
        return Err(format!("role name '{role}' must not start with '-'"));
    }
    if role
        .chars()
        .any(|c| c == '/' || c == '\u{8}' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "role name '{role}' must not contain a slash, backspace or whitespace"
        ));
    }
    if role.contains('*') {
        return Err(format!("role name '{role}' must not contain '*'"));
    }
    Ok(())
}

impl Resources {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the agent flag syntax `cpus:4;mem:8192;disk:10000;ports:[31000-32000]`, with an
    /// optional role in parentheses (`cpus(analytics):2`) for a static reservation.
    pub fn parse(text: &str) -> Result<Self, ResourceError> {
        let mut out = Resources::new();
        for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (head, value) = item
                .split_once(':')
                .ok_or_else(|| ResourceError::Syntax(item.to_string()))?;
            let (name, role) = match head.split_once('(') {
                Some((name, rest)) => {
                    let role = rest
                        .strip_suffix(')')
                        .ok_or_else(|| ResourceError::Syntax(item.to_string()))?;
                    (name.trim(), role.trim())
                }
                None => (head.trim(), UNRESERVED),
            };
            if name.is_empty() {
                return Err(ResourceError::Syntax(item.to_string()));
            }
            validate_role(role).map_err(|_| ResourceError::Role {
                name: name.to_string(),
                role: role.to_string(),
            })?;
            let value = value.trim();
            let bad = || ResourceError::Value {
                name: name.to_string(),
                value: value.to_string(),
            };
            let quantity = if let Some(inner) = value.strip_prefix('[') {
                let inner = inner.strip_suffix(']').ok_or_else(bad)?;
                let mut ranges = Vec::new();
                for part in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (b, e) = part.split_once('-').ok_or_else(bad)?;
                    let b: u64 = b.trim().parse().map_err(|_| bad())?;
                    let e: u64 = e.trim().parse().map_err(|_| bad())?;
                    if b > e {
                        return Err(bad());
                    }
                    ranges.push((b, e));
                }
                Quantity::Ranges(normalize_ranges(ranges))
            } else {
                let v: f64 = value.parse().map_err(|_| bad())?;
                Quantity::Scalar(scalar_to_milli(v).ok_or_else(bad)?)
            };
            out.add_pool(
                PoolKey {
                    name: name.to_string(),
                    role: role.to_string(),
                },
                quantity,
            );
        }
        Ok(out)
    }

    /// Adds one pool, merging with what is there.
    pub fn add_pool(&mut self, key: PoolKey, quantity: Quantity) {
        let merged = match (self.pools.remove(&key), quantity) {
            (None, q) => q,
            (Some(Quantity::Scalar(a)), Quantity::Scalar(b)) => Quantity::Scalar(a + b),
            (Some(Quantity::Ranges(mut a)), Quantity::Ranges(b)) => {
                a.extend(b);
                Quantity::Ranges(normalize_ranges(a))
            }
            // A type clash cannot come from our own bookkeeping; keep the newer value.
            (Some(_), q) => q,
        };
        if !is_empty_quantity(&merged) {
            self.pools.insert(key, merged);
        }
    }

    /// Iterates over the pools.
    pub fn pools(&self) -> impl Iterator<Item = (&PoolKey, &Quantity)> {
        self.pools.iter()
    }

    /// Whether the bag holds nothing.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// Scalar amount of `name` over all roles, in whole units (for tests and logs).
    pub fn scalar(&self, name: &str) -> f64 {
        milli_to_scalar(
            self.pools
                .iter()
                .filter(|(k, _)| k.name == name)
                .map(|(_, q)| match q {
                    Quantity::Scalar(m) => *m,
                    Quantity::Ranges(_) => 0,
                })
                .sum(),
        )
    }

    /// The ranges of `name` over all roles.
    pub fn ranges(&self, name: &str) -> Vec<(u64, u64)> {
        normalize_ranges(
            self.pools
                .iter()
                .filter(|(k, _)| k.name == name)
                .flat_map(|(_, q)| match q {
                    Quantity::Ranges(r) => r.clone(),
                    Quantity::Scalar(_) => Vec::new(),
                })
                .collect(),
        )
    }

    /// Whether every pool of `other` fits into this bag.
    pub fn contains(&self, other: &Resources) -> bool {
        other
            .pools
            .iter()
            .all(|(key, want)| match (self.pools.get(key), want) {
                (_, q) if is_empty_quantity(q) => true,
                (Some(Quantity::Scalar(have)), Quantity::Scalar(want)) => have >= want,
                (Some(Quantity::Ranges(have)), Quantity::Ranges(want)) => {
                    ranges_contain(have, want)
                }
                _ => false,
            })
    }

    /// Removes `other` from this bag. Callers check `contains` first; whatever does not fit is
    /// clamped at zero.
    pub fn subtract(&mut self, other: &Resources) {
        for (key, take) in &other.pools {
            let Some(have) = self.pools.get_mut(key) else {
                continue;
            };
            match (have, take) {
                (Quantity::Scalar(h), Quantity::Scalar(t)) => *h = (*h - t).max(0),
                (Quantity::Ranges(h), Quantity::Ranges(t)) => *h = ranges_subtract(h, t),
                _ => {}
            }
            if self.pools.get(key).is_some_and(is_empty_quantity) {
                self.pools.remove(key);
            }
        }
    }

    /// Adds every pool of `other`.
    pub fn add(&mut self, other: &Resources) {
        for (key, q) in &other.pools {
            self.add_pool(key.clone(), q.clone());
        }
    }

    /// The pools whose role is `role` or unreserved.
    pub fn usable_by(&self, role: &str) -> Resources {
        Resources {
            pools: self
                .pools
                .iter()
                .filter(|(k, _)| k.role == role || k.role == UNRESERVED)
                .map(|(k, q)| (k.clone(), q.clone()))
                .collect(),
        }
    }

    /// The pools reserved for `role` (not the unreserved ones).
    pub fn reserved_for(&self, role: &str) -> Resources {
        Resources {
            pools: self
                .pools
                .iter()
                .filter(|(k, _)| k.role == role && role != UNRESERVED)
                .map(|(k, q)| (k.clone(), q.clone()))
                .collect(),
        }
    }

    /// The unreserved pools.
    pub fn unreserved(&self) -> Resources {
        Resources {
            pools: self
                .pools
                .iter()
                .filter(|(k, _)| k.role == UNRESERVED)
                .map(|(k, q)| (k.clone(), q.clone()))
                .collect(),
        }
    }

    /// The roles of reserved pools.
    pub fn reserved_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = self
            .pools
            .keys()
            .filter(|k| k.role != UNRESERVED)
            .map(|k| k.role.clone())
            .collect();
        roles.dedup();
        roles
    }
}

fn is_empty_quantity(q: &Quantity) -> bool {
    match q {
        Quantity::Scalar(m) => *m == 0,
        Quantity::Ranges(r) => r.is_empty(),
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (key, q) in &self.pools {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            if key.role == UNRESERVED {
                write!(f, "{}:", key.name)?;
            } else {
                write!(f, "{}({}):", key.name, key.role)?;
            }
            match q {
                Quantity::Scalar(m) => write!(f, "{}", milli_to_scalar(*m))?,
                Quantity::Ranges(r) => {
                    f.write_str("[")?;
                    for (i, (b, e)) in r.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{b}-{e}")?;
                    }
                    f.write_str("]")?;
                }
            }
        }
        Ok(())
    }
}

/// One agent attribute (`--attributes rack:r1;zone:a;level:3`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Text(String),
    Scalar(f64),
}

/// Parses `--attributes` syntax: `name:value;...`, numbers become scalars, the rest text.
pub fn parse_attributes(text: &str) -> Result<Vec<(String, AttributeValue)>, ResourceError> {
    let mut out = Vec::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item
            .split_once(':')
            .ok_or_else(|| ResourceError::Syntax(item.to_string()))?;
        let value = value.trim();
        let parsed = match value.parse::<f64>() {
            Ok(v) if v.is_finite() => AttributeValue::Scalar(v),
            _ => AttributeValue::Text(value.to_string()),
        };
        out.push((name.trim().to_string(), parsed));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agent_flag_syntax_with_roles_and_ranges() {
        let r = Resources::parse(
            "cpus:4;mem:8192;disk:10000;ports:[31000-31009,31005-31020];cpus(analytics):2",
        )
        .unwrap();
        assert_eq!(r.scalar("cpus"), 6.0);
        assert_eq!(r.unreserved().scalar("cpus"), 4.0);
        assert_eq!(r.reserved_for("analytics").scalar("cpus"), 2.0);
        assert_eq!(r.ranges("ports"), vec![(31000, 31020)]);
        assert_eq!(
            r.to_string(),
            "cpus:4;cpus(analytics):2;disk:10000;mem:8192;ports:[31000-31020]"
        );
    }

    #[test]
    fn rejects_malformed_resource_strings() {
        assert!(matches!(
            Resources::parse("cpus"),
            Err(ResourceError::Syntax(_))
        ));
        assert!(matches!(
            Resources::parse("cpus:x"),
            Err(ResourceError::Value { .. })
        ));
        assert!(matches!(
            Resources::parse("cpus:-1"),
            Err(ResourceError::Value { .. })
        ));
        assert!(matches!(
            Resources::parse("ports:[5-1]"),
            Err(ResourceError::Value { .. })
        ));
        assert!(matches!(
            Resources::parse("cpus(-x):1"),
            Err(ResourceError::Role { .. })
        ));
        assert!(matches!(
            Resources::parse("cpus(a:1"),
            Err(ResourceError::Syntax(_))
        ));
    }

    #[test]
    fn scalars_use_three_decimal_fixed_point() {
        let offer = Resources::parse("cpus:0.3").unwrap();
        let mut want = Resources::parse("cpus:0.1").unwrap();
        want.add(&Resources::parse("cpus:0.2").unwrap());
        assert!(offer.contains(&want));
        let mut left = offer.clone();
        left.subtract(&want);
        assert!(left.is_empty());
    }

    #[test]
    fn ranges_subtract_splits_and_contains_checks_each_range() {
        let mut have = Resources::parse("ports:[31000-31010]").unwrap();
        let take = Resources::parse("ports:[31003-31004]").unwrap();
        assert!(have.contains(&take));
        have.subtract(&take);
        assert_eq!(have.ranges("ports"), vec![(31000, 31002), (31005, 31010)]);
        assert!(!have.contains(&take));
        assert!(!have.contains(&Resources::parse("ports:[31002-31005]").unwrap()));
        assert!(have.contains(&Resources::parse("ports:[31010-31010]").unwrap()));
    }

    #[test]
    fn reserved_and_unreserved_pools_do_not_mix() {
        let have = Resources::parse("cpus(a):1").unwrap();
        assert!(!have.contains(&Resources::parse("cpus:1").unwrap()));
        assert!(have.contains(&Resources::parse("cpus(a):1").unwrap()));
        assert!(!have.contains(&Resources::parse("mem:1").unwrap()));
    }

    #[test]
    fn role_validation_follows_mesos_rules() {
        for ok in ["*", "analytics", "a.b", "team-x"] {
            assert!(validate_role(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-a", "a/b", "a b", "a\u{8}", "a*"] {
            assert!(validate_role(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attributes_are_text_or_scalar() {
        let a = parse_attributes("rack:r1;level:3").unwrap();
        assert_eq!(a[0], ("rack".into(), AttributeValue::Text("r1".into())));
        assert_eq!(a[1], ("level".into(), AttributeValue::Scalar(3.0)));
    }
}
