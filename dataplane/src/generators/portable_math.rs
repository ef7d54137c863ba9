//! `10^x` computed from basic IEEE-754 operations only.
//!
//! Nexmark draws prices as `round(10^(6u) * 100)`. `f64::powf` (the platform libm) and Java's
//! `Math.pow` may differ in the last bit, which would make the Rust and Java generators disagree
//! on a rare price. Addition, multiplication, division and `floor` are exactly specified by
//! IEEE-754 in both languages (Java is strict since 17; Rust never fuses without being asked), so
//! this fixed sequence of them gives identical bits everywhere.

use std::f64::consts::{LN_2, LN_10, LOG2_E as INV_LN_2};

/// Number of Taylor terms after the constant: `r^17 / 17!` is below 1e-17 for `r < ln 2`.
const TERMS: usize = 17;

/// `INV_FACTORIAL[n] = 1/n!`, each entry the previous one divided by `n` (so Java can build the
/// same table with the same divisions at class initialisation).
const INV_FACTORIAL: [f64; TERMS + 1] = {
    let mut table = [1.0; TERMS + 1];
    let mut n = 1;
    while n <= TERMS {
        table[n] = table[n - 1] / n as f64;
        n += 1;
    }
    table
};

/// `10^x` for `x` in `[0, 60]`, with a relative error near 1e-15 (far below a cent at 10^8).
///
/// Range reduction `x ln 10 = k ln 2 + r` with `k = trunc(x ln 10 / ln 2)` and `r` in about
/// `[0, ln 2)`, a degree-17 Taylor polynomial for `e^r` in Horner form (`p = p * r + 1/n!`, no
/// fused multiply-add), then an exact multiplication by `2^k`. Multiplications by a table instead
/// of divisions keep a Nexmark bid at a few tens of nanoseconds.
#[inline]
pub fn exp10(x: f64) -> f64 {
    let t = x * LN_10;
    // Truncation is floor for the documented non-negative range; clamped so no input panics.
    let k = ((t * INV_LN_2) as i64).clamp(0, 1000);
    let r = t - k as f64 * LN_2;
    let mut p = INV_FACTORIAL[TERMS];
    let mut n = TERMS;
    while n > 0 {
        n -= 1;
        p = p * r + INV_FACTORIAL[n];
    }
    p * 2f64.powi(k as i32)
}

/// Java's `Math.floor(x + 0.5)` as an `i64` (round half up), saturating outside `i64`.
#[inline]
pub fn round_half_up(x: f64) -> i64 {
    let y = x + 0.5;
    // For non-negative values truncation is floor and avoids a libm call.
    if y >= 0.0 { y as i64 } else { y.floor() as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp10_is_accurate_on_the_price_range() {
        for i in 0..=600 {
            let x = f64::from(i) / 100.0;
            let want = 10f64.powf(x);
            let got = exp10(x);
            assert!(
                ((got - want) / want).abs() < 1e-13,
                "x={x} got={got} want={want}"
            );
        }
        assert_eq!(round_half_up(exp10(2.0) * 100.0), 10_000);
        assert_eq!(round_half_up(exp10(0.0) * 100.0), 100);
    }
}
