//! FNV-1a-64 and the output checksum shared with the Flink baseline (`docs/workloads.md`).
//!
//! A run's checksum is the wrapping sum (mod 2^64) of FNV-1a-64 over each output line's UTF-8
//! bytes (without the newline). A sum does not depend on the order in which parallel subtasks
//! emit, so two engines (or two parallelisms) agree exactly when they emit the same multiset of
//! lines. Both engines print it as `records=<count> checksum=<16 lower-case hex digits>`.
//!
//! This is the only FNV implementation in the workspace: the checksum sink, the generators'
//! cross-language check and the shuffle's record-type fingerprint all hash through [`Fnv1a64`].

/// FNV-1a-64 offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a-64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Incremental FNV-1a-64: hashing several slices in turn equals hashing their concatenation.
///
/// ```
/// use mesoflow_dataplane::checksum::{Fnv1a64, fnv1a64};
/// assert_eq!(Fnv1a64::new().write(b"foo").write(b"bar").finish(), fnv1a64(b"foobar"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    /// The hash of no bytes (the offset basis).
    #[inline]
    pub const fn new() -> Self {
        Self(FNV_OFFSET)
    }

    /// Feeds `bytes`.
    #[inline]
    #[must_use]
    pub fn write(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        self
    }

    /// The hash of everything fed so far.
    #[inline]
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a-64 of `bytes`.
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    Fnv1a64::new().write(bytes).finish()
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

/// Checksum of a set of lines: `(records, sum)`.
pub fn checksum_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> (u64, u64) {
    let mut c = Checksum::default();
    for l in lines {
        c.add_line(l.as_bytes());
    }
    (c.records, c.sum)
}

/// The line `mesoflow run --sink checksum` prints (the [`Checksum`] display).
pub fn checksum_line(records: u64, checksum: u64) -> String {
    Checksum {
        records,
        sum: checksum,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn incremental_hash_equals_hash_of_the_concatenation() {
        assert_eq!(Fnv1a64::default().finish(), fnv1a64(b""));
        assert_eq!(
            Fnv1a64::new().write(b"").write(b"a").finish(),
            fnv1a64(b"a")
        );
        assert_eq!(
            Fnv1a64::new()
                .write(b"fo")
                .write(b"")
                .write(b"ob")
                .write(b"ar")
                .finish(),
            0x8594_4171_f739_67e8
        );
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

    #[test]
    fn accumulator_merges_and_formats_exactly() {
        let mut a = Checksum::default();
        a.add_line(b"x,1");
        a.add_line(b"y,2");
        let mut b = Checksum::default();
        b.add_line(b"y,2");
        let mut c = Checksum::default();
        c.add_line(b"x,1");
        b.merge(c);
        assert_eq!(a, b);
        assert_eq!(checksum_lines(["y,2", "x,1"]), (a.records, a.sum));
        let sum = fnv1a64(b"x,1").wrapping_add(fnv1a64(b"y,2"));
        assert_eq!(a.to_string(), format!("records=2 checksum={sum:016x}"));
        assert_eq!(a.to_string(), checksum_line(2, sum));
        assert_eq!(
            Checksum::default().to_string(),
            "records=0 checksum=0000000000000000"
        );
    }
}
