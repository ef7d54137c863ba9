//! `10^x` computed from basic IEEE-754 operations only.
//!
//! Nexmark draws prices as `round(10^(6u) * 100)`. `f64::powf` (the platform libm) and Java's
//! `Math.pow` may differ in the last bit, which would make the Rust and Java generators disagree
//! on a rare price. Addition, multiplication, division and `floor` are exactly specified by
//! IEEE-754 in both languages (Java is strict since 17; Rust never fuses without being asked), so
//! this fixed sequence of them gives identical bits everywhere.

use std::f64::consts::{LN_2, LN_10, LOG2_E as INV_LN_2};

/// `10^x` for `x` in `[0, 60]`, with a relative error near 1e-15 (far below a cent at 10^8).
///
/// Range reduction `x ln 10 = k ln 2 + r` with `r` in about `[0, ln 2)`, a degree-17 Taylor
/// polynomial for `e^r` in Horner form, then an exact multiplication by `2^k`.
pub fn exp10(x: f64) -> f64 {
    let t = x * LN_10;
    let k = (t * INV_LN_2).floor();
    let r = t - k * LN_2;
    let mut p = 1.0;
    let mut n = 17;
    while n >= 1 {
        p = 1.0 + p * r / f64::from(n);
        n -= 1;
    }
    // k is in [0, 200) for the documented range; clamp so any input stays finite and panic-free.
    let k = k.clamp(0.0, 1000.0) as i32;
    p * 2f64.powi(k)
}

/// Java's `Math.floor(x + 0.5)` as an `i64` (round half up), saturating outside `i64`.
pub fn round_half_up(x: f64) -> i64 {
    (x + 0.5).floor() as i64
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
