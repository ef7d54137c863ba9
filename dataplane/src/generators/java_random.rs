//! `java.util.Random`'s 48-bit linear congruential generator, bit for bit.
//!
//! The Nexmark generator draws its choices from `java.util.Random`; reproducing that LCG exactly
//! (including `nextInt(bound)`'s rejection loop) keeps our Nexmark streams faithful to its rules
//! and makes the Java twin trivially identical.

const MULTIPLIER: u64 = 0x5_DEEC_E66D;
const ADDEND: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;

/// A `java.util.Random` with the same seed scrambling, sequence and bounded draws.
#[derive(Debug, Clone)]
pub struct JavaRandom {
    state: u64,
}

impl JavaRandom {
    /// Same as `new java.util.Random(seed)`: only the low 48 bits of the seed matter.
    pub fn new(seed: i64) -> Self {
        Self {
            state: (seed as u64 ^ MULTIPLIER) & MASK,
        }
    }

    /// `Random.next(bits)`: the top `bits` of the advanced 48-bit state, as a Java `int`.
    #[inline]
    pub fn next_bits(&mut self, bits: u32) -> i32 {
        debug_assert!((1..=32).contains(&bits));
        self.state = self.state.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND) & MASK;
        (self.state >> (48 - bits)) as u32 as i32
    }

    /// `Random.nextInt()`.
    #[inline]
    pub fn next_int(&mut self) -> i32 {
        self.next_bits(32)
    }

    /// `Random.nextInt(bound)` for `bound > 0`: uniform in `[0, bound)`. A non-positive bound
    /// (which Java rejects with an exception) yields 0 so that no input can panic here.
    #[inline]
    pub fn next_int_bounded(&mut self, bound: i32) -> i32 {
        if bound <= 0 {
            return 0;
        }
        let mut r = self.next_bits(31);
        let m = bound - 1;
        if bound & m == 0 {
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        let mut u = r;
        loop {
            r = u % bound;
            // Java's overflow test `u - r + m < 0` on 32-bit ints.
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next_bits(31);
        }
    }

    /// `Random.nextLong()`.
    #[inline]
    pub fn next_long(&mut self) -> i64 {
        let hi = i64::from(self.next_bits(32));
        let lo = i64::from(self.next_bits(32));
        (hi << 32).wrapping_add(lo)
    }

    /// `Random.nextDouble()`: uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_double(&mut self) -> f64 {
        let hi = i64::from(self.next_bits(26));
        let lo = i64::from(self.next_bits(27));
        ((hi << 27) + lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Nexmark's `LongGenerator.nextLong(random, n)`: `nextInt(n)` when `n` fits an `int`,
    /// otherwise `|nextLong() % n|` (skewed, as in the original). `n <= 0` yields 0.
    #[inline]
    pub fn next_long_below(&mut self, n: i64) -> i64 {
        if n <= 0 {
            0
        } else if n < i64::from(i32::MAX) {
            i64::from(self.next_int_bounded(n as i32))
        } else {
            (self.next_long() % n).wrapping_abs()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by OpenJDK 17 for `new Random(42)`.
    #[test]
    fn matches_openjdk_for_seed_42() {
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(), -1_170_105_035);
        assert_eq!(r.next_int_bounded(10), 3);
        assert_eq!(r.next_int_bounded(16), 10);
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_long(), -5_025_562_857_975_149_833);
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_double().to_bits(), 0.7275636800328681f64.to_bits());
    }

    #[test]
    fn bounded_draws_stay_in_range_and_bad_bounds_do_not_panic() {
        let mut r = JavaRandom::new(7);
        for bound in [1, 2, 3, 7, 100, 1 << 20, i32::MAX] {
            for _ in 0..100 {
                let v = r.next_int_bounded(bound);
                assert!((0..bound).contains(&v), "{v} not below {bound}");
            }
        }
        assert_eq!(r.next_int_bounded(0), 0);
        assert_eq!(r.next_int_bounded(-5), 0);
        assert_eq!(r.next_long_below(0), 0);
        let big = i64::from(i32::MAX) * 4;
        for _ in 0..100 {
            assert!((0..big).contains(&r.next_long_below(big)));
        }
    }
}
