//! How the CPU loops split their work into rayon tasks, and the row sums
//! they share (the ops' loops in `op::<name>::cpu` and [`crate::host`]).

use crate::simd::simd_fn;
use rayon::prelude::*;

/// Elements per rayon task for elementwise kernels.
pub(crate) const ELEMENTWISE_CHUNK: usize = 16_384;

/// Rows per rayon task: big enough to amortise scheduling.
pub(crate) fn rows_per_task(rows: usize, width: usize) -> usize {
    (16_384 / width.max(1)).clamp(1, rows.max(1))
}

simd_fn! {
    pub(crate) fn add_rows(acc: &mut [f32], rows: &[f32]) {
        for row in rows.chunks_exact(acc.len()) {
            for (a, g) in acc.iter_mut().zip(row) {
                *a += g;
            }
        }
    }
}

/// Column sums of a row-major `[m, n]` matrix, over row blocks in parallel
/// (the bias gradient of a linear layer).
pub(crate) fn column_sums(x: &[f32], n: usize) -> Vec<f32> {
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
