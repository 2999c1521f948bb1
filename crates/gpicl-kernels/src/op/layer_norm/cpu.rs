//! The CPU loops of [`super::layer_norm`] over plain slices (also the
//! hand-written training step's, through [`crate::host`]).

use crate::parallel::{add_rows, rows_per_task};
use crate::simd::simd_fn;
use rayon::prelude::*;

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
