//! The output checksum shared with the Flink baseline: the wrapping sum of FNV-1a-64 over each
//! output line's UTF-8 bytes, so it does not depend on the order in which subtasks emit.

/// FNV-1a-64 offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a-64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a-64 of `bytes`.
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Checksum of a set of lines.
pub fn checksum_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> (u64, u64) {
    lines.into_iter().fold((0u64, 0u64), |(n, sum), l| {
        (n + 1, sum.wrapping_add(fnv1a64(l.as_bytes())))
    })
}

/// The line `mesoflow run --sink checksum` prints.
pub fn checksum_line(records: u64, checksum: u64) -> String {
    format!("records={records} checksum={checksum:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn checksum_is_order_independent() {
        let a = checksum_lines(["x 1", "y 2", "x 2"]);
        let b = checksum_lines(["x 2", "x 1", "y 2"]);
        assert_eq!(a, b);
        assert_eq!(a.0, 3);
        assert_eq!(
            checksum_line(3, 0xab),
            "records=3 checksum=00000000000000ab"
        );
    }
}
