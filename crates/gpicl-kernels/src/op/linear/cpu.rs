//! The CPU loops of [`super::linear`] and [`super::linear_relu`] over
//! plain slices (also the hand-written training step's, through
//! [`crate::host`]).

use crate::cpu;
use crate::parallel::{add_rows, column_sums, ELEMENTWISE_CHUNK};
use crate::simd::simd_fn;
use rayon::prelude::*;

/// `out = x W + b` for `x: [m, k]`, `W: [k, n]`, `b: [n]`, `out: [m, n]`.
/// The product runs in bf16 when `bf16` ([`crate::host::matmul`]).
pub fn linear_forward(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], bf16: bool) {
    let n = b.len();
    let k = w.len() / n;
    let m = x.len() / k;
    assert!(
        w.len() == k * n && x.len() == m * k && out.len() == m * n,
        "linear_forward: shapes"
    );
    // Start from the bias so that the product accumulates onto it.
    out.par_chunks_mut(n).for_each(|row| row.copy_from_slice(b));
    cpu::matmul(out, x, false, w, false, m, k, n, true, bf16);
}

/// The backward pass of [`linear_forward`] given `grad = ∂L/∂out`:
/// `dW (+)= xᵀ grad`, `db (+)= Σ_rows grad` (added to when `accumulate`),
/// and `dx = grad Wᵀ` (overwritten) when asked for; the products in bf16
/// when `bf16`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    grad: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
    accumulate: bool,
    bf16: bool,
) {
    let n = db.len();
    let k = w.len() / n;
    let m = x.len() / k;
    assert!(
        grad.len() == m * n && dw.len() == k * n,
        "linear_backward: shapes"
    );
    if let Some(dx) = dx {
        assert_eq!(dx.len(), m * k, "linear_backward: dx");
        cpu::matmul(dx, grad, false, w, true, m, n, k, false, bf16);
    }
    cpu::matmul(dw, x, true, grad, false, k, m, n, accumulate, bf16);
    let sums = column_sums(grad, n);
    if accumulate {
        add_rows(db, &sums);
    } else {
        db.copy_from_slice(&sums);
    }
}

simd_fn! {
    /// `x = max(x, 0)` in place.
    fn relu_in_place(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

simd_fn! {
    /// `out = grad` where `y > 0`, else 0.
    fn relu_mask(y: &[f32], grad: &[f32], out: &mut [f32]) {
        for ((o, &y), &g) in out.iter_mut().zip(y).zip(grad) {
            *o = if y > 0.0 { g } else { 0.0 };
        }
    }
}

/// `out = max(x W + b, 0)`: [`linear_forward`] with a ReLU applied in the
/// same pass over the output.
pub fn linear_relu_forward(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], bf16: bool) {
    linear_forward(x, w, b, out, bf16);
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .for_each(relu_in_place);
}

/// The gradient through a ReLU from its output `y`: `grad` where `y > 0`.
pub fn relu_backward(y: &[f32], grad: &[f32], out: &mut [f32]) {
    assert!(
        y.len() == grad.len() && y.len() == out.len(),
        "relu_backward: shapes"
    );
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(
            y.par_chunks(ELEMENTWISE_CHUNK)
                .zip(grad.par_chunks(ELEMENTWISE_CHUNK)),
        )
        .for_each(|(o, (y, g))| relu_mask(y, g, o));
}
