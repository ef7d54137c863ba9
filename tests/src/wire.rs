//! Conversions between the test cluster's bookkeeping and the Mesos v1 protobuf messages.
//!
//! Offers must come out in the format a framework asked for: `allocation_info` only for
//! MULTI_ROLE frameworks, the reservation stack (`reservations[]`) only with
//! RESERVATION_REFINEMENT, the deprecated `Resource.role` otherwise.

use bytes::Bytes;
use mesoflow_proto::mesos::v1;
use v1::framework_info::capability::Type as Capability;

use crate::resources::{
    AttributeValue, PoolKey, Quantity, Resources, UNRESERVED, milli_to_scalar, scalar_to_milli,
};

/// How a framework wants resources written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceFormat {
    /// Set `allocation_info.role` on every resource (MULTI_ROLE frameworks).
    pub allocation_info: bool,
    /// Use `reservations[]` instead of `role` (RESERVATION_REFINEMENT frameworks).
    pub refined_reservations: bool,
}

/// Whether a framework declared `capability`.
pub fn has_capability(info: &v1::FrameworkInfo, capability: Capability) -> bool {
    info.capabilities
        .iter()
        .any(|c| c.r#type == Some(capability as i32))
}

impl ResourceFormat {
    /// The format a framework with `info` expects.
    pub fn for_framework(info: &v1::FrameworkInfo) -> Self {
        Self {
            allocation_info: has_capability(info, Capability::MultiRole),
            refined_reservations: has_capability(info, Capability::ReservationRefinement),
        }
    }
}

/// Writes `resources` as protobuf `Resource`s allocated to `role`.
pub fn to_proto(resources: &Resources, role: &str, format: ResourceFormat) -> Vec<v1::Resource> {
    resources
        .pools()
        .map(|(key, quantity)| {
            let mut r = v1::Resource {
                name: key.name.clone(),
                ..Default::default()
            };
            match quantity {
                Quantity::Scalar(m) => {
                    r.r#type = v1::value::Type::Scalar as i32;
                    r.scalar = Some(v1::value::Scalar {
                        value: milli_to_scalar(*m),
                    });
                }
                Quantity::Ranges(ranges) => {
                    r.r#type = v1::value::Type::Ranges as i32;
                    r.ranges = Some(v1::value::Ranges {
                        range: ranges
                            .iter()
                            .map(|&(begin, end)| v1::value::Range { begin, end })
                            .collect(),
                    });
                }
            }
            if format.refined_reservations {
                if key.role != UNRESERVED {
                    r.reservations.push(v1::resource::ReservationInfo {
                        r#type: Some(v1::resource::reservation_info::Type::Static as i32),
                        role: Some(key.role.clone()),
                        ..Default::default()
                    });
                }
            } else {
                r.role = Some(key.role.clone());
            }
            if format.allocation_info {
                r.allocation_info = Some(v1::resource::AllocationInfo {
                    role: Some(role.to_string()),
                });
            }
            r
        })
        .collect()
}

/// Reads protobuf resources into a bag, validating them as the master does.
pub fn from_proto(resources: &[v1::Resource]) -> Result<Resources, String> {
    let mut out = Resources::new();
    for r in resources {
        if r.name.is_empty() {
            return Err("Empty resource name".into());
        }
        if r.shared.is_some() {
            return Err(format!(
                "Resource '{}' is shared, which is not supported here",
                r.name
            ));
        }
        let role = match r.reservations.last() {
            Some(res) => res.role.clone().unwrap_or_else(|| UNRESERVED.to_string()),
            None => r.role.clone().unwrap_or_else(|| UNRESERVED.to_string()),
        };
        let quantity = match v1::value::Type::try_from(r.r#type) {
            Ok(v1::value::Type::Scalar) => {
                let Some(s) = r.scalar else {
                    return Err(format!(
                        "Invalid scalar resource '{}': missing 'scalar'",
                        r.name
                    ));
                };
                let Some(milli) = scalar_to_milli(s.value) else {
                    return Err(format!(
                        "Invalid scalar resource '{}': value {} is negative or not finite",
                        r.name, s.value
                    ));
                };
                Quantity::Scalar(milli)
            }
            Ok(v1::value::Type::Ranges) => {
                let Some(ranges) = &r.ranges else {
                    return Err(format!(
                        "Invalid ranges resource '{}': missing 'ranges'",
                        r.name
                    ));
                };
                let mut list = Vec::with_capacity(ranges.range.len());
                for range in &ranges.range {
                    if range.begin > range.end {
                        return Err(format!(
                            "Invalid ranges resource '{}': begin {} > end {}",
                            r.name, range.begin, range.end
                        ));
                    }
                    list.push((range.begin, range.end));
                }
                Quantity::Ranges(list)
            }
            _ => {
                return Err(format!(
                    "Resource '{}' has type {}, the test master supports SCALAR and RANGES",
                    r.name, r.r#type
                ));
            }
        };
        out.add_pool(
            PoolKey {
                name: r.name.clone(),
                role,
            },
            quantity,
        );
    }
    Ok(out)
}

/// Agent attributes as protobuf.
pub fn attributes_to_proto(attributes: &[(String, AttributeValue)]) -> Vec<v1::Attribute> {
    attributes
        .iter()
        .map(|(name, value)| match value {
            AttributeValue::Text(t) => v1::Attribute {
                name: name.clone(),
                r#type: v1::value::Type::Text as i32,
                text: Some(v1::value::Text { value: t.clone() }),
                ..Default::default()
            },
            AttributeValue::Scalar(s) => v1::Attribute {
                name: name.clone(),
                r#type: v1::value::Type::Scalar as i32,
                scalar: Some(v1::value::Scalar { value: *s }),
                ..Default::default()
            },
        })
        .collect()
}

/// Whether `bytes` are a valid RFC 4122 UUID (16 bytes, known version, RFC variant), which is
/// what Mesos requires of status update uuids.
pub fn is_valid_uuid(bytes: &[u8]) -> bool {
    let Ok(raw) = <[u8; 16]>::try_from(bytes) else {
        return false;
    };
    let id = uuid::Uuid::from_bytes(raw);
    matches!(id.get_variant(), uuid::Variant::RFC4122) && (1..=5).contains(&id.get_version_num())
}

/// A fresh random uuid as the 16 raw bytes Mesos puts on the wire.
pub fn new_uuid_bytes() -> Bytes {
    Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes())
}

/// Seconds since the epoch as the float Mesos writes into `TaskStatus.timestamp`.
pub fn wall_clock_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Validates an ID string (task, executor, ...) as Mesos `common::validation::validateID`.
pub fn validate_id(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{kind} ID must not be empty"));
    }
    if id.len() > 255 {
        return Err(format!("{kind} ID '{id}' is longer than 255 characters"));
    }
    if id == "." || id == ".." {
        return Err(format!("{kind} ID '{id}' is disallowed"));
    }
    if id.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
        return Err(format!(
            "{kind} ID '{id}' contains a control character, '/' or '\\'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_use_the_framework_resource_format() {
        let r = Resources::parse("cpus(a):1.5;ports:[31000-31001]").unwrap();
        let plain = to_proto(&r, "a", ResourceFormat::default());
        assert_eq!(plain[0].role.as_deref(), Some("a"));
        assert!(plain[0].allocation_info.is_none() && plain[0].reservations.is_empty());
        assert_eq!(plain[0].scalar.unwrap().value, 1.5);
        assert_eq!(plain[1].role.as_deref(), Some("*"));
        let multi = to_proto(
            &r,
            "a",
            ResourceFormat {
                allocation_info: true,
                refined_reservations: true,
            },
        );
        assert_eq!(multi[0].role, None);
        assert_eq!(multi[0].reservations[0].role.as_deref(), Some("a"));
        assert!(multi[1].reservations.is_empty());
        assert_eq!(
            multi[1].allocation_info.as_ref().unwrap().role.as_deref(),
            Some("a")
        );
        assert_eq!(from_proto(&plain).unwrap(), r);
        assert_eq!(from_proto(&multi).unwrap(), r);
    }

    #[test]
    fn uuid_and_id_rules() {
        assert!(is_valid_uuid(&new_uuid_bytes()));
        assert!(!is_valid_uuid(&[0u8; 16]));
        assert!(!is_valid_uuid(uuid::Uuid::new_v4().to_string().as_bytes()));
        assert!(validate_id("Task", "t-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            assert!(validate_id("Task", bad).is_err(), "{bad:?}");
        }
        assert!(validate_id("Task", &"x".repeat(256)).is_err());
    }
}
