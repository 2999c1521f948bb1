//! The outer-product LSTM recurrence as one fused op with its backward pass.
//!
//! Per step, head and sequence, with `g = input_t + h_{t−1} W` split into
//! `k1` (3H), `k2` (3H), `q` (H), `o` (H) and the gate scale `s`:
//! `X = (tanh(k1_X)·s) ⊗ tanh(k2_X)` for `X ∈ {i, g, f}`,
//! `C_t = σ(f + 1) ⊙ C_{t−1} + σ(i) ⊙ g`, `h_t = σ(o) ⊙ tanh(C_tᵀ q)`.
//! Composed from candle ops every step is ~40 ops over `b·n·H²` floats;
//! here it is one op forward and one pass backward.

use crate::cpu::{f32_slice, matmul, recurrent_weight_grad, with_f32, SavedForBackward};
use crate::math::{sigmoid, tanh};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use crate::simd::simd_fn;
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
mod cuda;

/// Runs the recurrence from zero state. `input`: `[b, t, 8·n·H]` (input
/// projection plus bias), `w_rec`: `[n·H, 8·n·H]`, `scale`: `[1]` (the
/// softplus of κ). Returns `h_t` for every position, `[b, t, n·H]`. The
/// composed [`reference()`] where the fused kernels do not apply.
pub fn outer_lstm_recurrence(
    input: &Tensor,
    w_rec: &Tensor,
    scale: &Tensor,
    heads: usize,
    options: KernelOptions,
) -> Result<Tensor> {
    match options.backend(input) {
        Backend::Composed => reference(input, w_rec, scale, heads),
        Backend::Cpu => {
            let width = w_rec.dim(0)?;
            let op = OuterLstmRecurrence {
                heads,
                size: width / heads.max(1),
                saved: SavedForBackward::default(),
                bf16: options.bf16_matmuls,
            };
            input
                .contiguous()?
                .apply_op3(&w_rec.contiguous()?, &scale.contiguous()?, op)
        }
        #[cfg(feature = "cuda")]
        Backend::Cuda => cuda::outer_lstm_recurrence(input, w_rec, scale, heads),
    }
}

/// The same recurrence composed from candle ops: the definition the
/// fused op is tested against (`scale` broadcast over the gates).
pub fn reference(input: &Tensor, w_rec: &Tensor, scale: &Tensor, heads: usize) -> Result<Tensor> {
    use candle_core::D;
    let (b, t, _) = input.dims3()?;
    let hs = w_rec.dim(0)? / heads.max(1);
    let sig = |x: &Tensor| -> Result<Tensor> { x.affine(0.5, 0.0)?.tanh()?.affine(0.5, 0.5) };
    let (dtype, device) = (input.dtype(), input.device());
    let mut c = Tensor::zeros((b, heads, hs, hs), dtype, device)?;
    let mut h = Tensor::zeros((b, heads * hs), dtype, device)?;
    let mut outs = Vec::with_capacity(t);
    for step in 0..t {
        let g = (input.narrow(1, step, 1)?.squeeze(1)? + h.matmul(w_rec)?)?.reshape((
            b,
            heads,
            8 * hs,
        ))?;
        let k1 = g
            .narrow(D::Minus1, 0, 3 * hs)?
            .tanh()?
            .broadcast_mul(scale)?;
        let k2 = g.narrow(D::Minus1, 3 * hs, 3 * hs)?.tanh()?;
        let outer = |x: usize| -> Result<Tensor> {
            k1.narrow(2, x * hs, hs)?
                .unsqueeze(3)?
                .broadcast_mul(&k2.narrow(2, x * hs, hs)?.unsqueeze(2)?)
        };
        let f = sig(&(outer(2)? + 1.0)?)?;
        c = ((f * &c)? + (sig(&outer(0)?)? * outer(1)?)?)?;
        let q = g.narrow(2, 6 * hs, hs)?;
        let read = q.unsqueeze(2)?.matmul(&c)?.squeeze(2)?;
        h = (sig(&g.narrow(2, 7 * hs, hs)?)? * read.tanh()?)?.reshape((b, heads * hs))?;
        outs.push(h.clone());
    }
    Tensor::stack(&outs, 1)
}

struct OuterLstmRecurrence {
    heads: usize,
    size: usize,
    /// [`saved_width`] values per position (840 MB at H = 256).
    saved: SavedForBackward,
    /// The recurrent products in bf16 ([`KernelOptions::bf16_matmuls`]).
    bf16: bool,
}

/// Saved per position: `h` (nH), `read` (nH), `g` (8nH), `C` (nH²).
fn saved_width(n: usize, h: usize) -> usize {
    10 * n * h + n * h * h
}

/// `Σ_l a_l b_l` over 16 independent lanes (vectorises; the order is fixed,
/// so the result does not depend on the SIMD level).
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

simd_fn! {
    /// One position of one sequence: the cell update and read-out of every head.
    /// `seq` holds the sequence's saved values, `g` its gate pre-activations.
    fn forward_position(
        seq: &mut [f32],
        step: usize,
        sw: usize,
        g: &[f32],
        h_prev: &mut [f32],
        n: usize,
        hs: usize,
        s: f32,
    ) {
        let width = n * hs;
        let (before, rest) = seq.split_at_mut(step * sw);
        let here = &mut rest[..sw];
        let prev = step.checked_sub(1).map(|p| &before[p * sw..(p + 1) * sw]);
        here[2 * width..10 * width].copy_from_slice(g);
        let zeros = vec![0f32; if prev.is_none() { hs } else { 0 }];
        let mut read = vec![0f32; hs];
        for head in 0..n {
            let gh = &g[head * 8 * hs..(head + 1) * 8 * hs];
            let c_off = 10 * width + head * hs * hs;
            // Gate vectors: a = tanh(k1)·s and b = tanh(k2), O(H) each.
            let a: Vec<f32> = gh[..3 * hs].iter().map(|v| tanh(*v) * s).collect();
            let bv: Vec<f32> = gh[3 * hs..6 * hs].iter().map(|v| tanh(*v)).collect();
            let (b_i, rest) = bv.split_at(hs);
            let (b_g, b_f) = rest.split_at(hs);
            let q = &gh[6 * hs..7 * hs];
            read.iter_mut().for_each(|r| *r = 0.0);
            for j in 0..hs {
                let (a_i, a_g, a_f) = (a[j], a[hs + j], a[2 * hs + j]);
                let row = c_off + j * hs;
                let c_prev = prev.map_or(&zeros[..], |p| &p[row..row + hs]);
                let cell = &mut here[row..row + hs];
                for l in 0..hs {
                    cell[l] = sigmoid(a_f * b_f[l] + 1.0) * c_prev[l]
                        + sigmoid(a_i * b_i[l]) * (a_g * b_g[l]);
                }
                // read[l] = Σ_j C[j, l] q[j], accumulated row by row.
                let qj = q[j];
                for (r, c) in read.iter_mut().zip(cell.iter()) {
                    *r += c * qj;
                }
            }
            for l in 0..hs {
                let hv = sigmoid(gh[7 * hs + l]) * tanh(read[l]);
                here[width + head * hs + l] = read[l];
                here[head * hs + l] = hv;
                h_prev[head * hs + l] = hv;
            }
        }
    }
}

simd_fn! {
    /// Backpropagates one position of one sequence: fills the sequence's gate
    /// gradients `dg` (and its slot in `d_input`), carries the cell gradient
    /// `dcn` one step back, and returns this position's gradient of the scale.
    /// `dh` is the gradient reaching `h_t`, from the output and from step `t + 1`.
    fn backward_position(
        seq: &[f32],
        dh: &[f32],
        step: usize,
        sw: usize,
        dg_all: &mut [f32],
        dcn_all: &mut [f32],
        d_input: &mut [f32],
        n: usize,
        hs: usize,
        s: f32,
    ) -> f64 {
        let width = n * hs;
        let here = &seq[step * sw..(step + 1) * sw];
        let prev = step.checked_sub(1).map(|p| &seq[p * sw..(p + 1) * sw]);
        let zeros = vec![0f32; if prev.is_none() { hs } else { 0 }];
        let g = &here[2 * width..10 * width];
        let mut d_scale = 0f64;
        let mut pre = vec![0f32; 3 * hs];
        let mut d_read = vec![0f32; hs];
        dg_all.iter_mut().for_each(|v| *v = 0.0);
        for head in 0..n {
            let gh = &g[head * 8 * hs..(head + 1) * 8 * hs];
            let dg = &mut dg_all[head * 8 * hs..(head + 1) * 8 * hs];
            let c_off = 10 * width + head * hs * hs;
            let dcn = &mut dcn_all[head * hs * hs..(head + 1) * hs * hs];
            // Read-out: h = σ(o) tanh(read), read = Cᵀ q.
            for l in 0..hs {
                let dhl = dh[head * hs + l];
                let so = sigmoid(gh[7 * hs + l]);
                let tr = tanh(here[width + head * hs + l]);
                dg[7 * hs + l] = dhl * tr * so * (1.0 - so);
                d_read[l] = dhl * so * (1.0 - tr * tr);
            }
            // Cell update through the three outer-product gates, row by row:
            // dC = dC_next + q ⊗ d_read, then the gates' gradients.
            let ta: Vec<f32> = gh[..3 * hs].iter().map(|v| tanh(*v)).collect();
            let tb: Vec<f32> = gh[3 * hs..6 * hs].iter().map(|v| tanh(*v)).collect();
            let (b_i, rest) = tb.split_at(hs);
            let (b_g, b_f) = rest.split_at(hs);
            let mut d_a = vec![0f32; 3 * hs];
            let mut d_b = vec![0f32; 3 * hs];
            for j in 0..hs {
                let (a_i, a_g, a_f) = (ta[j] * s, ta[hs + j] * s, ta[2 * hs + j] * s);
                let q = gh[6 * hs + j];
                let row = c_off + j * hs;
                let cell = &here[row..row + hs];
                let c_prev = prev.map_or(&zeros[..], |p| &p[row..row + hs]);
                dg[6 * hs + j] = lane_dot(cell, &d_read);
                let dc_row = &mut dcn[j * hs..(j + 1) * hs];
                let (p_i, rest) = pre.split_at_mut(hs);
                let (p_g, p_f) = rest.split_at_mut(hs);
                let (db_i, rest) = d_b.split_at_mut(hs);
                let (db_g, db_f) = rest.split_at_mut(hs);
                for l in 0..hs {
                    let d = dc_row[l] + q * d_read[l];
                    let si = sigmoid(a_i * b_i[l]);
                    let gv = a_g * b_g[l];
                    let f = sigmoid(a_f * b_f[l] + 1.0);
                    p_i[l] = d * gv * si * (1.0 - si);
                    p_g[l] = d * si;
                    p_f[l] = d * c_prev[l] * f * (1.0 - f);
                    db_i[l] += p_i[l] * a_i;
                    db_g[l] += p_g[l] * a_g;
                    db_f[l] += p_f[l] * a_f;
                    dc_row[l] = d * f;
                }
                d_a[j] = lane_dot(p_i, b_i);
                d_a[hs + j] = lane_dot(p_g, b_g);
                d_a[2 * hs + j] = lane_dot(p_f, b_f);
            }
            for k in 0..3 * hs {
                dg[k] = d_a[k] * s * (1.0 - ta[k] * ta[k]);
                d_scale += (d_a[k] * ta[k]) as f64;
                dg[3 * hs + k] = d_b[k] * (1.0 - tb[k] * tb[k]);
            }
        }
        d_input[step * 8 * width..(step + 1) * 8 * width].copy_from_slice(dg_all);
        d_scale
    }
}

impl CustomOp3 for OuterLstmRecurrence {
    fn name(&self) -> &'static str {
        "outer-lstm-recurrence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, hs) = (self.heads, self.size);
        let width = n * hs;
        let (b, t, g8) = l1.shape().dims3()?;
        let (w_rows, w_cols) = l2.shape().dims2()?;
        if g8 != 8 * width || w_rows != width || w_cols != 8 * width || l3.shape().elem_count() != 1
        {
            candle_core::bail!("outer-lstm-recurrence: input [.., .., {g8}], weight [{w_rows}, {w_cols}] do not fit {n} heads of size {hs}");
        }
        let (x, w, s) = (
            f32_slice("outer-lstm-recurrence", s1, l1)?,
            f32_slice("outer-lstm-recurrence", s2, l2)?,
            f32_slice("outer-lstm-recurrence", s3, l3)?[0],
        );
        let sw = saved_width(n, hs);
        let mut out = vec![0f32; b * t * sw];
        let mut h_prev = vec![0f32; b * width];
        let mut gates = vec![0f32; b * 8 * width];
        for step in 0..t {
            for bi in 0..b {
                let src = (bi * t + step) * 8 * width;
                gates[bi * 8 * width..(bi + 1) * 8 * width]
                    .copy_from_slice(&x[src..src + 8 * width]);
            }
            if step > 0 {
                matmul(
                    &mut gates,
                    &h_prev,
                    false,
                    w,
                    false,
                    b,
                    width,
                    8 * width,
                    true,
                    self.bf16,
                );
            }
            // Sequences are independent within a step: one task each.
            out.par_chunks_mut(t * sw)
                .zip(gates.par_chunks(8 * width))
                .zip(h_prev.par_chunks_mut(width))
                .for_each(|((seq, g), hp)| forward_position(seq, step, sw, g, hp, n, hs, s));
        }
        let hidden = self.saved.keep(out, sw, width);
        Ok((CpuStorage::F32(hidden), Shape::from((b, t, width))))
    }

    fn bwd(
        &self,
        input: &Tensor,
        w_rec: &Tensor,
        scale: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, hs) = (self.heads, self.size);
        let width = n * hs;
        let (b, t, _) = input.dims3()?;
        let sw = saved_width(n, hs);
        let s: f32 = scale.flatten_all()?.to_vec1::<f32>()?[0];
        let saved = self.saved.get(self.name(), b * t * sw)?;
        let saved = &saved[..];
        let (d_input, d_w, d_scale) = with_f32(self.name(), &[grad_res, w_rec], |x| {
            let (grad, w) = (x[0], x[1]);
            let mut d_input = vec![0f32; b * t * 8 * width];
            let mut d_scale = 0f64;
            let mut dh_next = vec![0f32; b * width];
            let mut dc_next = vec![0f32; b * n * hs * hs];
            let mut d_gates = vec![0f32; b * 8 * width];
            let mut dh = vec![0f32; b * width];
            for step in (0..t).rev() {
                // The gradient reaching h_t: from the output and from step t + 1.
                for (bi, d) in dh.chunks_exact_mut(width).enumerate() {
                    let from_output = &grad[(bi * t + step) * width..][..width];
                    let from_next = &dh_next[bi * width..(bi + 1) * width];
                    for ((d, o), nx) in d.iter_mut().zip(from_output).zip(from_next) {
                        *d = o + nx;
                    }
                }
                let partials: Vec<f64> = saved
                    .par_chunks(t * sw)
                    .zip(d_gates.par_chunks_mut(8 * width))
                    .zip(dc_next.par_chunks_mut(n * hs * hs))
                    .zip(dh.par_chunks(width))
                    .zip(d_input.par_chunks_mut(t * 8 * width))
                    .map(|((((seq, dg), dcn), dh), d_in)| {
                        backward_position(seq, dh, step, sw, dg, dcn, d_in, n, hs, s)
                    })
                    .collect();
                // Summed in sequence order, so the result does not depend on threads.
                d_scale += partials.iter().sum::<f64>();
                matmul(
                    &mut dh_next,
                    &d_gates,
                    false,
                    w,
                    true,
                    b,
                    8 * width,
                    width,
                    false,
                    self.bf16,
                );
            }
            let d_w = recurrent_weight_grad(saved, sw, width, &d_input, 8 * width, b, t, self.bf16);
            (d_input, d_w, d_scale)
        })?;
        let device = input.device();
        Ok((
            Some(Tensor::from_vec(d_input, (b, t, 8 * width), device)?),
            Some(Tensor::from_vec(d_w, (width, 8 * width), device)?),
            Some(Tensor::from_vec(
                vec![d_scale as f32],
                scale.shape(),
                device,
            )?),
        ))
    }
}

/// The parity case of [`outer_lstm_recurrence`].
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    let (heads, size) = (2, 7);
    let width = heads * size;
    Ok(vec![Case::new(
        format!("outer_lstm_recurrence [2,5,8x{heads}x{size}]"),
        &["input", "w_rec", "scale"],
        vec![
            random_tensor(&[2, 5, 8 * width], 15, 1.0)?,
            random_tensor(&[width, 8 * width], 16, 0.3)?,
            Tensor::new(&[0.8f32], &Device::Cpu)?,
        ],
        move |x, _| outer_lstm_recurrence(&x[0], &x[1], &x[2], heads, KernelOptions::default()),
        move |x| reference(&x[0], &x[1], &x[2], heads),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64, scale: f64) -> Tensor {
        let mut rng = Rng::new(seed);
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| (rng.normal() * scale) as f32)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn composed(input: &Tensor, w: &Tensor, s: &Tensor, n: usize) -> Tensor {
        reference(input, w, s, n).unwrap()
    }

    #[test]
    fn fused_matches_composed_forward_and_gradients_on_odd_shapes() {
        for (b, t, n, hs) in [(1, 1, 1, 1), (2, 5, 1, 3), (3, 4, 2, 2), (1, 7, 3, 5)] {
            let width = n * hs;
            let x = Var::from_tensor(&random(&[b, t, 8 * width], 1, 1.0)).unwrap();
            let w = Var::from_tensor(&random(&[width, 8 * width], 2, 0.5)).unwrap();
            let s = Var::from_tensor(&Tensor::new(&[0.8f32], &Device::Cpu).unwrap()).unwrap();
            let weights = random(&[b, t, width], 3, 1.0);
            let fused = outer_lstm_recurrence(
                x.as_tensor(),
                w.as_tensor(),
                s.as_tensor(),
                n,
                KernelOptions::default(),
            )
            .unwrap();
            let reference = composed(x.as_tensor(), w.as_tensor(), s.as_tensor(), n);
            for (a, r) in flat(&fused).iter().zip(flat(&reference)) {
                assert!((a - r).abs() < 1e-5 * (1.0 + r.abs()), "forward {a} vs {r}");
            }
            let gf = (fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gc = (reference * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (var, name) in [(&x, "d_input"), (&w, "d_w"), (&s, "d_scale")] {
                let (a, r) = (
                    flat(gf.get(var.as_tensor()).unwrap()),
                    flat(gc.get(var.as_tensor()).unwrap()),
                );
                for (i, (a, r)) in a.iter().zip(&r).enumerate() {
                    assert!(
                        (a - r).abs() < 1e-4 * (1.0 + r.abs()),
                        "{name}[{i}] ({b},{t},{n},{hs}): {a} vs {r}"
                    );
                }
            }
        }
    }
}
