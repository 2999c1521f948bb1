//! GELU, exact (erf) or with the tanh approximation, forward and backward.
//!
//! The backward pass needs the same `erf` (or `tanh`) of the input as the
//! forward pass; [`gelu_forward_keeping`] keeps it so that
//! [`gelu_backward_kept`] saves one transcendental function per element,
//! with the same bits as recomputing it.

use crate::math::{erf, exp, tanh};
use crate::parallel::ELEMENTWISE_CHUNK;
use crate::simd::simd_fn;
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_TANH_COEF: f32 = 0.044_715;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// `tanh(√(2/π)(x + 0.044715 x³))` or `erf(x/√2)`.
#[inline(always)]
fn factor(v: f32, tanh_approximation: bool) -> f32 {
    if tanh_approximation {
        tanh(SQRT_2_OVER_PI * (v + GELU_TANH_COEF * v * v * v))
    } else {
        erf(v * FRAC_1_SQRT_2)
    }
}

simd_fn! {
    /// GELU into `out`, keeping each element's [`factor`] in `kept` when
    /// `kept` is not empty.
    fn rows_forward(x: &[f32], tanh_approximation: bool, out: &mut [f32], kept: &mut [f32]) {
        if kept.is_empty() {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = 0.5 * v * (1.0 + factor(v, tanh_approximation));
            }
        } else {
            for ((o, k), &v) in out.iter_mut().zip(kept.iter_mut()).zip(x) {
                let f = factor(v, tanh_approximation);
                *o = 0.5 * v * (1.0 + f);
                *k = f;
            }
        }
    }
}

/// `g · gelu'(v)` from the element's [`factor`] `f`.
#[inline(always)]
fn derivative(v: f32, g: f32, f: f32, tanh_approximation: bool) -> f32 {
    if tanh_approximation {
        let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEF * v * v);
        g * (0.5 * (1.0 + f) + 0.5 * v * (1.0 - f * f) * du)
    } else {
        // g · (Φ(x) + x φ(x))
        let cdf = 0.5 * (1.0 + f);
        let pdf = exp(-0.5 * v * v) * 0.398_942_3;
        g * (cdf + v * pdf)
    }
}

simd_fn! {
    /// `dx = g · gelu'(x)` from the kept factors, or recomputing them when
    /// `kept` is empty.
    fn rows_backward(x: &[f32], grad: &[f32], kept: &[f32], tanh_approximation: bool, dx: &mut [f32]) {
        if kept.is_empty() {
            for ((d, &v), &g) in dx.iter_mut().zip(x).zip(grad) {
                *d = derivative(v, g, factor(v, tanh_approximation), tanh_approximation);
            }
        } else {
            for (((d, &v), &g), &f) in dx.iter_mut().zip(x).zip(grad).zip(kept) {
                *d = derivative(v, g, f, tanh_approximation);
            }
        }
    }
}

/// GELU of every element, exact (erf) or with the tanh approximation.
pub fn gelu_forward(x: &[f32], tanh_approximation: bool, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "gelu_forward: shapes");
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(x.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(o, x)| rows_forward(x, tanh_approximation, o, &mut []));
}

/// [`gelu_forward`] that also keeps, per element, the `erf` (or `tanh`)
/// that [`gelu_backward_kept`] would otherwise recompute.
pub fn gelu_forward_keeping(
    x: &[f32],
    tanh_approximation: bool,
    out: &mut [f32],
    kept: &mut [f32],
) {
    assert!(
        x.len() == out.len() && x.len() == kept.len(),
        "gelu_forward: shapes"
    );
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(x.par_chunks(ELEMENTWISE_CHUNK))
        .zip(kept.par_chunks_mut(ELEMENTWISE_CHUNK))
        .for_each(|((o, x), k)| rows_forward(x, tanh_approximation, o, k));
}

/// `dx = grad · gelu'(x)`.
pub fn gelu_backward(x: &[f32], grad: &[f32], tanh_approximation: bool, dx: &mut [f32]) {
    assert!(
        x.len() == grad.len() && x.len() == dx.len(),
        "gelu_backward: shapes"
    );
    dx.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(
            x.par_chunks(ELEMENTWISE_CHUNK)
                .zip(grad.par_chunks(ELEMENTWISE_CHUNK)),
        )
        .for_each(|(dx, (x, g))| rows_backward(x, g, &[], tanh_approximation, dx));
}

/// [`gelu_backward`] from the factors [`gelu_forward_keeping`] kept: the
/// same bits without the second transcendental function.
pub fn gelu_backward_kept(
    x: &[f32],
    kept: &[f32],
    grad: &[f32],
    tanh_approximation: bool,
    dx: &mut [f32],
) {
    assert!(
        x.len() == grad.len() && x.len() == dx.len() && x.len() == kept.len(),
        "gelu_backward: shapes"
    );
    dx.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(
            x.par_chunks(ELEMENTWISE_CHUNK)
                .zip(grad.par_chunks(ELEMENTWISE_CHUNK))
                .zip(kept.par_chunks(ELEMENTWISE_CHUNK)),
        )
        .for_each(|(dx, ((x, g), k))| rows_backward(x, g, k, tanh_approximation, dx));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_factors_give_the_bits_of_recomputed_ones() {
        let x: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 * 0.001_37).sin() * 6.0)
            .collect();
        let g: Vec<f32> = (0..40_000).map(|i| (i as f32 * 0.003_1).cos()).collect();
        for tanh in [false, true] {
            let (mut out, mut out_kept, mut kept) = (
                vec![0f32; x.len()],
                vec![0f32; x.len()],
                vec![0f32; x.len()],
            );
            gelu_forward(&x, tanh, &mut out);
            gelu_forward_keeping(&x, tanh, &mut out_kept, &mut kept);
            assert_eq!(out, out_kept);
            let (mut dx, mut dx_kept) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            gelu_backward(&x, &g, tanh, &mut dx);
            gelu_backward_kept(&x, &kept, &g, tanh, &mut dx_kept);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&dx), bits(&dx_kept));
        }
    }
}
