//! The fused kernels over plain `f32` slices: what the ops of
//! [`crate::op`] run inside, and what a hand-written training step (one
//! that keeps its activations in its own buffers instead of candle's
//! autograd graph) calls directly.
//!
//! Every function is multi-threaded with rayon where the work is large and
//! runs its inner loops through [`crate::simd`]'s AVX2 dispatch. Shapes are
//! implied by slice lengths and checked with assertions: these are
//! building blocks for callers that have validated their shapes already
//! (the candle ops in [`crate::op`] check and return errors).
//!
//! ```
//! use gpicl_kernels::host;
//! // y = x W + b for two rows of three features into two outputs.
//! let (x, w, b) = ([1.0, 2.0, 3.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.5, -0.5]);
//! let mut y = [0.0; 4];
//! host::linear_forward(&x, &w, &b, &mut y, false);
//! assert_eq!(y, [4.5, 4.5, 0.5, 0.5]);
//! ```

use crate::cpu;
use crate::math::exp;
use crate::simd::simd_fn;
use rayon::prelude::*;

/// Elements per rayon task for elementwise kernels.
pub(crate) const ELEMENTWISE_CHUNK: usize = 16_384;

/// Rows per rayon task: big enough to amortise scheduling.
fn rows_per_task(rows: usize, width: usize) -> usize {
    (16_384 / width.max(1)).clamp(1, rows.max(1))
}

pub use crate::cpu::matmul;

/// Runs `f` on the `f32` data of CPU tensors, borrowed in place (tensors
/// that are not contiguous are copied into contiguous ones first). Errors
/// for tensors off the CPU or of another dtype.
pub fn with_tensor_data<R>(
    tensors: &[&candle_core::Tensor],
    f: impl FnOnce(&[&[f32]]) -> R,
) -> candle_core::Result<R> {
    cpu::with_f32("host::with_tensor_data", tensors, f)
}

simd_fn! {
    /// `dst += src`, elementwise.
    fn add_slices(dst: &mut [f32], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

/// `dst += src` elementwise, in parallel chunks.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_assign: lengths");
    dst.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(src.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(d, s)| add_slices(d, s));
}

// ------------------------------------------------------------------- Linear

/// `out = x W + b` for `x: [m, k]`, `W: [k, n]`, `b: [n]`, `out: [m, n]`.
/// The product runs in bf16 when `bf16` ([`cpu::matmul`]).
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
    fn add_rows(acc: &mut [f32], rows: &[f32]) {
        for row in rows.chunks_exact(acc.len()) {
            for (a, g) in acc.iter_mut().zip(row) {
                *a += g;
            }
        }
    }
}

/// Column sums of a row-major `[m, n]` matrix, over row blocks in parallel
/// (the bias gradient of a linear layer).
fn column_sums(x: &[f32], n: usize) -> Vec<f32> {
    let rows = rows_per_task(x.len() / n, n);
    x.par_chunks(rows * n)
        .map(|chunk| {
            let mut acc = vec![0f32; n];
            add_rows(&mut acc, chunk);
            acc
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0f32; n], |mut total, part| {
            add_rows(&mut total, &part);
            total
        })
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

// ---------------------------------------------------------------- LayerNorm

/// Sum with eight independent accumulators (see [`dot`]).
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.chunks_exact(8);
    let mut total = chunks.remainder().iter().sum::<f32>();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    for v in acc {
        total += v;
    }
    total
}

/// Mean and reciprocal standard deviation of one row.
#[inline(always)]
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let d = row.len() as f32;
    let mean = sum(row) / d;
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let mut var = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum::<f32>();
    for c in chunks {
        for l in 0..8 {
            acc[l] += (c[l] - mean) * (c[l] - mean);
        }
    }
    for v in acc {
        var += v;
    }
    (mean, 1.0 / (var / d + eps).sqrt())
}

simd_fn! {
    fn layer_norm_rows_forward(x: &[f32], gain: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
        let d = gain.len();
        for (o, row) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            let (mean, rstd) = row_stats(row, eps);
            for j in 0..d {
                o[j] = (row[j] - mean) * rstd * gain[j] + bias[j];
            }
        }
    }
}

simd_fn! {
    /// `dx` for a block of rows, accumulating the gain and bias gradients
    /// into `dgain` and `dbias`; `dxhat` is `d` floats of scratch.
    fn layer_norm_rows_backward(
        x: &[f32],
        grad: &[f32],
        gain: &[f32],
        eps: f32,
        dx: &mut [f32],
        dgain: &mut [f32],
        dbias: &mut [f32],
        dxhat: &mut [f32],
    ) {
        let d = gain.len();
        for ((dx, row), g) in dx
            .chunks_exact_mut(d)
            .zip(x.chunks_exact(d))
            .zip(grad.chunks_exact(d))
        {
            let (mean, rstd) = row_stats(row, eps);
            let (mut sum_dxhat, mut sum_dxhat_xhat) = ([0f32; 8], [0f32; 8]);
            for j in 0..d {
                let xhat = (row[j] - mean) * rstd;
                dgain[j] += g[j] * xhat;
                dbias[j] += g[j];
                dxhat[j] = g[j] * gain[j];
                sum_dxhat[j % 8] += dxhat[j];
                sum_dxhat_xhat[j % 8] += dxhat[j] * xhat;
            }
            let m1 = sum(&sum_dxhat) / d as f32;
            let m2 = sum(&sum_dxhat_xhat) / d as f32;
            for j in 0..d {
                let xhat = (row[j] - mean) * rstd;
                dx[j] = rstd * (dxhat[j] - m1 - xhat * m2);
            }
        }
    }
}

/// Layer normalisation of every `d`-wide row of `x` (`d = gain.len()`).
pub fn layer_norm_forward(x: &[f32], gain: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let d = gain.len();
    assert!(
        bias.len() == d && x.len().is_multiple_of(d) && out.len() == x.len(),
        "layer_norm_forward: shapes"
    );
    let chunk = rows_per_task(x.len() / d, d) * d;
    out.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(out, x)| layer_norm_rows_forward(x, gain, bias, eps, out));
}

/// The backward pass of [`layer_norm_forward`]: `dx` overwritten, the gain
/// and bias gradients added to `dgain` and `dbias` (a parallel reduction
/// over row blocks, summed in block order so results do not depend on
/// thread timing).
pub fn layer_norm_backward(
    x: &[f32],
    grad: &[f32],
    gain: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    let d = gain.len();
    assert!(
        grad.len() == x.len() && dx.len() == x.len() && dgain.len() == d && dbias.len() == d,
        "layer_norm_backward: shapes"
    );
    let chunk = rows_per_task(x.len() / d, d) * d;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(grad.par_chunks(chunk)))
        .map(|(dx, (x, g))| {
            let (mut pg, mut pb) = (vec![0f32; d], vec![0f32; d]);
            let mut dxhat = vec![0f32; d];
            layer_norm_rows_backward(x, g, gain, eps, dx, &mut pg, &mut pb, &mut dxhat);
            (pg, pb)
        })
        .collect();
    for (pg, pb) in partials {
        add_rows(dgain, &pg);
        add_rows(dbias, &pb);
    }
}

// --------------------------------------------------------------------- GELU

mod gelu;
pub use gelu::{gelu_backward, gelu_backward_kept, gelu_forward, gelu_forward_keeping};

// ---------------------------------------------------------------- attention

mod attention;
mod pool;
pub use attention::{
    causal_attention_backward, causal_attention_backward_with_weights, causal_attention_forward,
    causal_attention_forward_keeping_weights, AttentionShape,
};
pub use pool::BufferPool;

// ------------------------------------------------------------ cross-entropy

/// `log Σ_j e^{z_j}` of one row, stably.
#[inline(always)]
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&z| exp(z - max)).sum();
    (max, sum.ln())
}

/// Mean softmax cross-entropy of `classes`-wide rows of `logits` against
/// `targets` (each below `classes`), accumulated in `f64` over row blocks
/// in order.
pub fn cross_entropy_forward(logits: &[f32], targets: &[u32], classes: usize) -> f32 {
    assert_eq!(
        logits.len(),
        targets.len() * classes,
        "cross_entropy_forward: shapes"
    );
    let total: f64 = logits
        .par_chunks(classes * 256)
        .zip(targets.par_chunks(256))
        .map(|(rows, ys)| {
            rows.chunks_exact(classes)
                .zip(ys)
                .map(|(row, &y)| {
                    let (max, lse) = log_sum_exp(row);
                    (max + lse - row[y as usize]) as f64
                })
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    (total / targets.len().max(1) as f64) as f32
}

/// `dlogits = (softmax(logits) − one_hot(targets)) · scale` (overwritten);
/// `scale` is the upstream gradient over the number of rows for a mean.
pub fn cross_entropy_backward(
    logits: &[f32],
    targets: &[u32],
    classes: usize,
    scale: f32,
    dlogits: &mut [f32],
) {
    assert!(
        logits.len() == targets.len() * classes && dlogits.len() == logits.len(),
        "cross_entropy_backward: shapes"
    );
    let c = classes;
    dlogits
        .par_chunks_mut(c * 256)
        .zip(logits.par_chunks(c * 256).zip(targets.par_chunks(256)))
        .for_each(|(d, (rows, ys))| {
            for ((d, row), &y) in d.chunks_exact_mut(c).zip(rows.chunks_exact(c)).zip(ys) {
                let (max, lse) = log_sum_exp(row);
                for (d, &z) in d.iter_mut().zip(row) {
                    *d = exp(z - max - lse) * scale;
                }
                d[y as usize] -= scale;
            }
        });
}
