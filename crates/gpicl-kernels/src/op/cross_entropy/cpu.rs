//! The CPU loops of [`super::cross_entropy`] over plain slices (also the
//! hand-written training step's, through [`crate::host`]).

use crate::math::exp;
use rayon::prelude::*;

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
