//! Causal scaled dot-product attention over `[batch, t, heads, key]`
//! buffers, forward and backward, one head per rayon task.
//!
//! Each head's products run on `gemm` straight from the strided layout the
//! linear layers produce (row stride `heads·key`): no per-head copies in,
//! no scatter out. The `t × t` weights live in per-thread scratch and are
//! recomputed in the backward pass rather than stored.

use crate::cpu::{matmul_view_serial, SharedMut, View};
use crate::layout::operand_strides;
use crate::math::exp;
use crate::simd::simd_fn;
use rayon::prelude::*;

/// The shape of a causal attention call: `q`, `k`, `v` and the output are
/// `[batch, t, heads, key]` (a free reshape of a linear layer's
/// `[batch, t, heads·key]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Sequences.
    pub batch: usize,
    /// Positions per sequence.
    pub t: usize,
    /// Heads.
    pub heads: usize,
    /// Key (and value) size per head.
    pub key: usize,
}

impl AttentionShape {
    fn len(&self) -> usize {
        self.batch * self.t * self.heads * self.key
    }

    /// Values of every head's `t × t` weights together.
    pub fn weights_len(&self) -> usize {
        self.batch * self.heads * self.t * self.t
    }

    /// Offset of head `n` (sequence `n / heads`, head `n % heads`) and the
    /// row stride between its positions.
    fn head(&self, n: usize) -> (usize, isize) {
        let (bi, hi) = (n / self.heads, n % self.heads);
        let row = self.heads * self.key;
        (bi * self.t * row + hi * self.key, row as isize)
    }
}

/// The maximum of `xs` (−∞ when empty), over 16 independent lanes.
#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let mut max = f32::NEG_INFINITY;
    for v in lanes.iter().chain(tail) {
        max = max.max(*v);
    }
    max
}

simd_fn! {
    /// Turns raw scores `q_i·k_j` (a full `t × t` block) into causal
    /// softmax weights in place: row `i` becomes `softmax_{j≤i}(scale ·
    /// s_ij)`, and entries above the diagonal become 0 so that products with
    /// the block need no mask.
    fn causal_softmax_rows(p: &mut [f32], t: usize, scale: f32) {
        for i in 0..t {
            let row = &mut p[i * t..(i + 1) * t];
            let (visible, future) = row.split_at_mut(i + 1);
            for s in visible.iter_mut() {
                *s *= scale;
            }
            // The maximum does not depend on the order it is taken in, so
            // it runs over 16 lanes; the sum keeps its sequential order (so
            // results stay bit-identical to the scalar loop), but the
            // exponentials before it vectorise.
            let max = lane_max(visible);
            for s in visible.iter_mut() {
                *s = exp(*s - max);
            }
            let mut sum = 0f32;
            for s in visible.iter() {
                sum += *s;
            }
            let inv = 1.0 / sum;
            for s in visible.iter_mut() {
                *s *= inv;
            }
            future.fill(0.0);
        }
    }
}

simd_fn! {
    /// `dS_ij = P_ij (dP_ij − Σ_j' P_ij' dP_ij') · scale` in place of `dP`
    /// (`ds`), which is 0 above the diagonal because `P` is.
    fn softmax_backward_rows(p: &[f32], ds: &mut [f32], t: usize, scale: f32) {
        for (i, (prow, drow)) in p.chunks_exact(t).zip(ds.chunks_exact_mut(t)).enumerate() {
            // The masked entries add exact zeros (P is 0 there) to a sum
            // that starts at +0 and so is never −0: skipping them changes
            // no bit for finite gradients, and halves this sequential sum.
            let mut row_dot = 0f32;
            for (&pij, &dp) in prow[..=i].iter().zip(&drow[..=i]) {
                row_dot += pij * dp;
            }
            for (&pij, d) in prow.iter().zip(drow.iter_mut()) {
                *d = pij * (*d - row_dot) * scale;
            }
        }
    }
}

/// The view of head `offset` of a `[b, t, heads, key]` buffer (positions
/// `row` apart) as a `t × key` matrix, or its transpose.
fn head_view(x: &[f32], offset: usize, row: isize, transposed: bool) -> View {
    let (rs, cs) = if transposed { (1, row) } else { (row, 1) };
    View {
        ptr: x[offset..].as_ptr(),
        rs,
        cs,
    }
}

/// A contiguous square `t × t` block, or its transpose.
fn block_view(x: &[f32], t: usize, transposed: bool) -> View {
    let (rs, cs) = operand_strides(transposed, t, t);
    View {
        ptr: x.as_ptr(),
        rs: rs as isize,
        cs: cs as isize,
    }
}

/// `p = softmax_causal(q kᵀ / √key)` for one head.
fn head_weights(q: &[f32], k: &[f32], s: AttentionShape, offset: usize, row: isize, p: &mut [f32]) {
    let t = s.t;
    // SAFETY: the views cover `t` rows of `key` values from `offset` with
    // stride `row`, in bounds because the callers asserted `len() ==
    // s.len()`; `p` is this task's own `t × t` scratch.
    unsafe {
        matmul_view_serial(
            p.as_mut_ptr(),
            t as isize,
            head_view(q, offset, row, false),
            head_view(k, offset, row, true),
            t,
            s.key,
            t,
        );
    }
    causal_softmax_rows(p, t, 1.0 / (s.key as f32).sqrt());
}

/// Causal scaled dot-product attention: position `i` of each head attends
/// to `0..=i`. Heads run in parallel.
pub fn causal_attention_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttentionShape,
    out: &mut [f32],
) {
    attention_forward(q, k, v, s, out, None);
}

/// [`causal_attention_forward`] that also keeps every head's weights `P`
/// (`[batch·heads, t, t]`, zero above the diagonal) for
/// [`causal_attention_backward_with_weights`], which then need not
/// recompute them.
pub fn causal_attention_forward_keeping_weights(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttentionShape,
    out: &mut [f32],
    weights: &mut [f32],
) {
    assert_eq!(
        weights.len(),
        s.weights_len(),
        "causal_attention_forward: weights"
    );
    attention_forward(q, k, v, s, out, Some(weights));
}

fn attention_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttentionShape,
    out: &mut [f32],
    weights: Option<&mut [f32]>,
) {
    assert!(
        q.len() == s.len() && k.len() == s.len() && v.len() == s.len() && out.len() == s.len(),
        "causal_attention_forward: shapes"
    );
    let t = s.t;
    let dst = SharedMut(out.as_mut_ptr());
    let head = |n: usize, p: &mut [f32]| {
        let (offset, row) = s.head(n);
        head_weights(q, k, s, offset, row, p);
        // SAFETY: head `n` writes only its own `t × key` elements of
        // `out` (offset and stride of `s.head(n)`), disjoint from every
        // other head's; `out` outlives the parallel loop.
        unsafe {
            matmul_view_serial(
                dst.at(offset),
                row,
                block_view(p, t, false),
                head_view(v, offset, row, false),
                t,
                t,
                s.key,
            );
        }
    };
    match weights {
        Some(weights) => weights
            .par_chunks_mut(t * t)
            .enumerate()
            .for_each(|(n, p)| head(n, p)),
        None => (0..s.batch * s.heads)
            .into_par_iter()
            .for_each_init(|| vec![0f32; t * t], |p, n| head(n, p)),
    }
}

/// The backward pass of [`causal_attention_forward`] given the output
/// gradient: `dq`, `dk`, `dv` overwritten. The weights are recomputed per
/// head rather than stored (`t²` floats per head).
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    grad: &[f32],
    s: AttentionShape,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    attention_backward(q, k, v, None, grad, s, [dq, dk, dv]);
}

/// [`causal_attention_backward`] from the weights that
/// [`causal_attention_forward_keeping_weights`] kept: the same bits,
/// without recomputing `softmax(q kᵀ)`.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward_with_weights(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    weights: &[f32],
    grad: &[f32],
    s: AttentionShape,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    assert_eq!(
        weights.len(),
        s.weights_len(),
        "causal_attention_backward: weights"
    );
    attention_backward(q, k, v, Some(weights), grad, s, [dq, dk, dv]);
}

fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    weights: Option<&[f32]>,
    grad: &[f32],
    s: AttentionShape,
    outs: [&mut [f32]; 3],
) {
    for x in [q, k, v, grad, &*outs[0], &*outs[1], &*outs[2]] {
        assert_eq!(x.len(), s.len(), "causal_attention_backward: shapes");
    }
    let t = s.t;
    let scale = 1.0 / (s.key as f32).sqrt();
    let outs = outs.map(|d| SharedMut(d.as_mut_ptr()));
    (0..s.batch * s.heads).into_par_iter().for_each_init(
        || {
            (
                vec![0f32; if weights.is_some() { 0 } else { t * t }],
                vec![0f32; t * t],
            )
        },
        |(scratch, ds), n| {
            let (offset, row) = s.head(n);
            let p: &[f32] = match weights {
                Some(w) => &w[n * t * t..(n + 1) * t * t],
                None => {
                    head_weights(q, k, s, offset, row, scratch);
                    scratch
                }
            };
            let [dq, dk, dv] = outs;
            // SAFETY: `ds` is this task's scratch; head `n` writes only its
            // own `t × key` elements of `dq`, `dk`, `dv` (disjoint from
            // every other head's), which outlive the parallel loop.
            unsafe {
                // dP = dO vᵀ
                matmul_view_serial(
                    ds.as_mut_ptr(),
                    t as isize,
                    head_view(grad, offset, row, false),
                    head_view(v, offset, row, true),
                    t,
                    s.key,
                    t,
                );
                softmax_backward_rows(p, ds, t, scale);
                // dV = Pᵀ dO, dQ = dS K, dK = dSᵀ Q
                let products = [
                    (
                        dv,
                        block_view(p, t, true),
                        head_view(grad, offset, row, false),
                    ),
                    (
                        dq,
                        block_view(ds, t, false),
                        head_view(k, offset, row, false),
                    ),
                    (
                        dk,
                        block_view(ds, t, true),
                        head_view(q, offset, row, false),
                    ),
                ];
                for (dst, lhs, rhs) in products {
                    matmul_view_serial(dst.at(offset), row, lhs, rhs, t, t, s.key);
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::matmul;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as f32 / u32::MAX as f32)
                    - 0.5
            })
            .collect()
    }

    /// Attention written with a copy per head and contiguous products: the
    /// layout the strided kernel replaced.
    fn per_head_reference(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape) -> Vec<f32> {
        let (t, key) = (s.t, s.key);
        let mut out = vec![0f32; s.len()];
        for n in 0..s.batch * s.heads {
            let (offset, row) = s.head(n);
            let gather = |x: &[f32]| -> Vec<f32> {
                (0..t)
                    .flat_map(|i| x[offset + i * row as usize..][..key].to_vec())
                    .collect()
            };
            let (qh, kh, vh) = (gather(q), gather(k), gather(v));
            let mut p = vec![0f32; t * t];
            matmul(&mut p, &qh, false, &kh, true, t, key, t, false, false);
            causal_softmax_rows(&mut p, t, 1.0 / (key as f32).sqrt());
            let mut o = vec![0f32; t * key];
            matmul(&mut o, &p, false, &vh, false, t, t, key, false, false);
            for i in 0..t {
                out[offset + i * row as usize..][..key].copy_from_slice(&o[i * key..(i + 1) * key]);
            }
        }
        out
    }

    #[test]
    fn strided_heads_compute_the_same_bits_as_copied_heads() {
        for s in [
            AttentionShape {
                batch: 3,
                t: 100,
                heads: 8,
                key: 32,
            },
            AttentionShape {
                batch: 2,
                t: 7,
                heads: 3,
                key: 5,
            },
        ] {
            let (q, k, v) = (data(s.len(), 1), data(s.len(), 2), data(s.len(), 3));
            let mut out = vec![f32::NAN; s.len()];
            causal_attention_forward(&q, &k, &v, s, &mut out);
            let reference = per_head_reference(&q, &k, &v, s);
            assert!(
                out.iter()
                    .zip(&reference)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{s:?}"
            );
        }
    }

    #[test]
    fn kept_weights_give_the_bits_of_recomputed_ones() {
        let s = AttentionShape {
            batch: 2,
            t: 31,
            heads: 3,
            key: 8,
        };
        let (q, k, v, g) = (
            data(s.len(), 4),
            data(s.len(), 5),
            data(s.len(), 6),
            data(s.len(), 7),
        );
        let (mut out, mut kept_out) = (vec![0f32; s.len()], vec![0f32; s.len()]);
        let mut weights = vec![f32::NAN; s.weights_len()];
        causal_attention_forward(&q, &k, &v, s, &mut out);
        causal_attention_forward_keeping_weights(&q, &k, &v, s, &mut kept_out, &mut weights);
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&kept_out));
        let grads = |w: Option<&[f32]>| {
            let (mut dq, mut dk, mut dv) = (
                vec![0f32; s.len()],
                vec![0f32; s.len()],
                vec![0f32; s.len()],
            );
            match w {
                Some(w) => causal_attention_backward_with_weights(
                    &q, &k, &v, w, &g, s, &mut dq, &mut dk, &mut dv,
                ),
                None => causal_attention_backward(&q, &k, &v, &g, s, &mut dq, &mut dk, &mut dv),
            }
            [bits(&dq), bits(&dk), bits(&dv)]
        };
        assert_eq!(grads(None), grads(Some(&weights)));
    }

    #[test]
    fn the_softmax_rows_are_causal_and_normalised() {
        let t = 19;
        let mut p = data(t * t, 9);
        causal_softmax_rows(&mut p, t, 0.5);
        for i in 0..t {
            let row = &p[i * t..(i + 1) * t];
            assert!((row[..=i].iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(row[i + 1..].iter().all(|&x| x == 0.0));
        }
    }
}
