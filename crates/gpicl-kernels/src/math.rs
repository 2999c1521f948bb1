//! Vectorisable `f32` transcendental functions for the fused kernels.
//!
//! libm's `expf`, `tanhf` and `erff` are scalar calls, so a loop over them
//! never vectorises; these are branch-free polynomial versions, accurate to
//! a few ulp of `f32`, that LLVM turns into SIMD code inside the kernels of
//! [`crate::simd`]. All are `#[inline(always)]` so that they compile with
//! the kernel's target features.

/// `e^x` to about 2e-7 relative error, written so that loops over it
/// vectorise (libm's `expf` is a scalar call): Cody–Waite reduction to
/// `x = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-6 Taylor polynomial for
/// `e^r`, and `2^k` built from the exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer
    // without a call to `round`.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `k + 127 + 2^23` holds the biased exponent `k + 127` (1..=215) in its
    // low mantissa bits; shifting them into the exponent field gives `2^k`
    // with integer ops only (a float-to-int cast would not vectorise as well).
    let biased = (k + (127.0 + 8_388_608.0)).to_bits();
    p * f32::from_bits(biased << 23)
}

/// erf with about 1e-7 absolute error: the Numerical Recipes `erfc`
/// Chebyshev fit (relative error below 1.2e-7), evaluated in `f32`,
/// branch-free so that it vectorises.
// The published coefficients, kept as printed.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    (1.0 - t * exp(poly)).copysign(x)
}

/// `tanh(u) = 1 − 2 / (e^{2u} + 1)`, vectorisable; saturates cleanly
/// because [`exp`] clamps its argument.
#[inline(always)]
pub(crate) fn tanh(u: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * u) + 1.0)
}

/// The logistic function `1 / (1 + e^{−x})`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorisable_exp_is_accurate_over_the_float_range() {
        for i in -869..=878 {
            let x = i as f32 * 0.1 + 0.037;
            let (ours, libm) = (exp(x) as f64, (x as f64).exp());
            assert!(
                ((ours - libm) / libm).abs() < 5e-7,
                "exp({x}) = {ours}, libm {libm}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
    }

    #[test]
    fn polynomial_functions_match_libm_across_their_range() {
        for i in -4000..=4000 {
            let x = i as f32 * 0.01;
            let close = |a: f32, b: f32, tol: f32| (a - b).abs() <= tol * b.abs().max(1e-30);
            assert!(close(exp(x), x.exp(), 1e-6), "exp({x})");
            assert!((tanh(x) - x.tanh()).abs() <= 2e-7, "tanh({x})");
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() <= 2e-7,
                "sigmoid({x})"
            );
        }
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
        assert!(exp(-200.0) >= 0.0 && exp(-200.0) < 1e-37);
        let erf_1 = 0.842_700_8_f32;
        assert!((erf(1.0) - erf_1).abs() < 2e-7 && (erf(-1.0) + erf_1).abs() < 2e-7);
    }
}
