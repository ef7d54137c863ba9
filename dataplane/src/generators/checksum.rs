//! The order-independent output checksum of `docs/workloads.md`.
//!
//! A run's checksum is the wrapping sum (mod 2^64) of FNV-1a-64 over each output line's bytes.
//! A sum does not depend on the order in which parallel subtasks emit, so two engines (or two
//! parallelisms) agree exactly when they emit the same multiset of lines.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a-64 of `bytes`.
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Running `records=<N> checksum=<hex>` accumulator; merge partial sums with [`Checksum::merge`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Number of lines added.
    pub records: u64,
    /// Wrapping sum of the lines' FNV-1a-64 hashes.
    pub sum: u64,
}

impl Checksum {
    /// Adds one output line (without its newline).
    #[inline]
    pub fn add_line(&mut self, line: &[u8]) {
        self.records += 1;
        self.sum = self.sum.wrapping_add(fnv1a64(line));
    }

    /// Combines the checksum of another part of the same output.
    pub fn merge(&mut self, other: Checksum) {
        self.records += other.records;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

impl std::fmt::Display for Checksum {
    /// The exact line both engines print: `records=<count> checksum=<16 lower-case hex digits>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "records={} checksum={:016x}", self.records, self.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn checksum_is_order_independent_and_formats_exactly() {
        let mut a = Checksum::default();
        a.add_line(b"x,1");
        a.add_line(b"y,2");
        let mut b = Checksum::default();
        b.add_line(b"y,2");
        let mut c = Checksum::default();
        c.add_line(b"x,1");
        b.merge(c);
        assert_eq!(a, b);
        let sum = fnv1a64(b"x,1").wrapping_add(fnv1a64(b"y,2"));
        assert_eq!(a.to_string(), format!("records=2 checksum={sum:016x}"));
        assert_eq!(
            Checksum::default().to_string(),
            "records=0 checksum=0000000000000000"
        );
    }
}
