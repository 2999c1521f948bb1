//! The LSTM recurrence as one fused op with its backward pass (BPTT).
//!
//! Composed from candle primitives, an LSTM step is about twenty small ops
//! forward and more backward, and every step adds its own copy of the
//! recurrent weight's gradient; on a CPU the per-op overhead dominates.
//! [`lstm_recurrence`] runs all `T` steps in one op and its backward in
//! one pass, with the recurrent products on `gemm`.

use crate::cpu::{f32_slice, matmul, recurrent_weight_grad, with_f32, SavedForBackward};
use crate::math::{sigmoid, tanh};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use crate::simd::simd_fn;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

#[cfg(feature = "cuda")]
mod cuda;

/// Values stored per position: `h, c, i, g, f, o` (activated gates), so
/// the backward pass needs no recomputation.
const SAVED: usize = 6;

/// `gates_t = input_t + h_{t−1} W` with `W: [h, 4h]`, gate order
/// `i, g, f, o`, forget-gate bias +1: `c_t = σ(f+1)⊙c_{t−1} + σ(i)⊙tanh(g)`,
/// `h_t = σ(o)⊙tanh(c_t)`, from zero state.
///
/// `input`: `[b, t, 4h]` pre-activations (the input projection and bias);
/// returns `h_t` for every position, `[b, t, h]`. The composed
/// [`reference()`] where the fused kernels do not apply.
pub fn lstm_recurrence(input: &Tensor, w_rec: &Tensor, options: KernelOptions) -> Result<Tensor> {
    match options.backend(input) {
        Backend::Composed => reference(input, w_rec),
        Backend::Cpu => input.contiguous()?.apply_op2(
            &w_rec.contiguous()?,
            LstmRecurrence {
                saved: SavedForBackward::default(),
                bf16: options.bf16_matmuls,
            },
        ),
        #[cfg(feature = "cuda")]
        Backend::Cuda => cuda::lstm_recurrence(input, w_rec),
    }
}

struct LstmRecurrence {
    /// `[h, c, i, g, f, o]` per position.
    saved: SavedForBackward,
    /// The recurrent products in bf16 ([`KernelOptions::bf16_matmuls`]).
    bf16: bool,
}

simd_fn! {
    /// One sequence's cell at one position: activates `gates` (`i, g, f, o`,
    /// each `h` wide), updates `h_prev`/`c_prev` to this position's state and
    /// writes `[h, c, i, g, f, o]` to `saved`.
    fn cell_forward(gates: &[f32], h_prev: &mut [f32], c_prev: &mut [f32], saved: &mut [f32]) {
        let h = h_prev.len();
        let (gi, rest) = gates.split_at(h);
        let (gg, rest) = rest.split_at(h);
        let (gf, go) = rest.split_at(h);
        let (sh, rest) = saved.split_at_mut(h);
        let (sc, rest) = rest.split_at_mut(h);
        let (si, rest) = rest.split_at_mut(h);
        let (sg, rest) = rest.split_at_mut(h);
        let (sf, so) = rest.split_at_mut(h);
        for j in 0..h {
            let (i, g, f, o) = (
                sigmoid(gi[j]),
                tanh(gg[j]),
                sigmoid(gf[j] + 1.0),
                sigmoid(go[j]),
            );
            let c = f * c_prev[j] + i * g;
            let hn = o * tanh(c);
            (sh[j], sc[j], si[j], sg[j], sf[j], so[j]) = (hn, c, i, g, f, o);
            h_prev[j] = hn;
            c_prev[j] = c;
        }
    }
}

simd_fn! {
    /// One sequence's cell backward at one position: from the saved values
    /// `s`, the gradient `gr` of the output `h`, the previous cell state
    /// and the gradients flowing back from the next position (`dh_next`,
    /// `dc_next`, replaced by this position's `dc · f`), the pre-activation
    /// gradients `dg`.
    fn cell_backward(
        s: &[f32],
        gr: &[f32],
        c_prev: &[f32],
        dh_next: &mut [f32],
        dc_next: &mut [f32],
        dg: &mut [f32],
    ) {
        let h = c_prev.len();
        for j in 0..h {
            let (c, i, g, f, o) = (s[h + j], s[2 * h + j], s[3 * h + j], s[4 * h + j], s[5 * h + j]);
            let dh = gr[j] + dh_next[j];
            let tc = tanh(c);
            let d_o = dh * tc;
            let dc = dh * o * (1.0 - tc * tc) + dc_next[j];
            let d_i = dc * g;
            let d_g = dc * i;
            let d_f = dc * c_prev[j];
            dc_next[j] = dc * f;
            dg[j] = d_i * i * (1.0 - i);
            dg[h + j] = d_g * (1.0 - g * g);
            dg[2 * h + j] = d_f * f * (1.0 - f);
            dg[3 * h + j] = d_o * o * (1.0 - o);
        }
    }
}

impl CustomOp2 for LstmRecurrence {
    fn name(&self) -> &'static str {
        "lstm-recurrence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, g4) = l1.shape().dims3()?;
        let (h, w4) = l2.shape().dims2()?;
        if g4 != 4 * h || w4 != 4 * h {
            candle_core::bail!("lstm-recurrence: input [.., .., {g4}] and weight [{h}, {w4}] do not fit (expected 4h = {})", 4 * h);
        }
        let (x, w) = (
            f32_slice("lstm-recurrence", s1, l1)?,
            f32_slice("lstm-recurrence", s2, l2)?,
        );
        let mut out = vec![0f32; b * t * SAVED * h];
        let (mut h_prev, mut c_prev) = (vec![0f32; b * h], vec![0f32; b * h]);
        let mut gates = vec![0f32; b * 4 * h];
        for step in 0..t {
            for bi in 0..b {
                let src = (bi * t + step) * 4 * h;
                gates[bi * 4 * h..(bi + 1) * 4 * h].copy_from_slice(&x[src..src + 4 * h]);
            }
            if step > 0 {
                matmul(
                    &mut gates,
                    &h_prev,
                    false,
                    w,
                    false,
                    b,
                    h,
                    4 * h,
                    true,
                    self.bf16,
                );
            }
            for bi in 0..b {
                let row = (bi * t + step) * SAVED * h;
                cell_forward(
                    &gates[bi * 4 * h..(bi + 1) * 4 * h],
                    &mut h_prev[bi * h..(bi + 1) * h],
                    &mut c_prev[bi * h..(bi + 1) * h],
                    &mut out[row..row + SAVED * h],
                );
            }
        }
        let hidden = self.saved.keep(out, SAVED * h, h);
        Ok((CpuStorage::F32(hidden), Shape::from((b, t, h))))
    }

    fn bwd(
        &self,
        input: &Tensor,
        w_rec: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, _) = input.dims3()?;
        let h = w_rec.dim(0)?;
        let saved = self.saved.get(self.name(), b * t * SAVED * h)?;
        let saved = &saved[..];
        let (d_input, d_w) = with_f32(self.name(), &[grad_res, w_rec], |s| {
            let (grad, w) = (s[0], s[1]);
            let mut d_input = vec![0f32; b * t * 4 * h];
            let (mut dh_next, mut dc_next) = (vec![0f32; b * h], vec![0f32; b * h]);
            let mut d_gates = vec![0f32; b * 4 * h];
            let zeros = vec![0f32; h];
            for step in (0..t).rev() {
                for bi in 0..b {
                    let base = (bi * t + step) * SAVED * h;
                    let c_prev = if step > 0 {
                        &saved[base - SAVED * h + h..base - SAVED * h + 2 * h]
                    } else {
                        &zeros[..]
                    };
                    let dg = &mut d_gates[bi * 4 * h..(bi + 1) * 4 * h];
                    let out = (bi * t + step) * h;
                    cell_backward(
                        &saved[base..base + SAVED * h],
                        &grad[out..out + h],
                        c_prev,
                        &mut dh_next[bi * h..(bi + 1) * h],
                        &mut dc_next[bi * h..(bi + 1) * h],
                        dg,
                    );
                    let dst = (bi * t + step) * 4 * h;
                    d_input[dst..dst + 4 * h].copy_from_slice(dg);
                }
                // dh_{t−1} = d_gates · Wᵀ
                matmul(
                    &mut dh_next,
                    &d_gates,
                    false,
                    w,
                    true,
                    b,
                    4 * h,
                    h,
                    false,
                    self.bf16,
                );
            }
            let d_w = recurrent_weight_grad(saved, SAVED * h, h, &d_input, 4 * h, b, t, self.bf16);
            (d_input, d_w)
        })?;
        let device = input.device();
        Ok((
            Some(Tensor::from_vec(d_input, (b, t, 4 * h), device)?),
            Some(Tensor::from_vec(d_w, (h, 4 * h), device)?),
        ))
    }
}

/// The same recurrence composed from candle ops: the reference the fused
/// op is tested against, and the path for devices without a fused kernel.
pub fn reference(input: &Tensor, w_rec: &Tensor) -> Result<Tensor> {
    let (b, t, _) = input.dims3()?;
    let h = w_rec.dim(0)?;
    let sig = |x: &Tensor| -> Result<Tensor> { x.affine(0.5, 0.0)?.tanh()?.affine(0.5, 0.5) };
    let mut hidden = Tensor::zeros((b, h), input.dtype(), input.device())?;
    let mut cell = hidden.clone();
    let mut outputs = Vec::with_capacity(t);
    for step in 0..t {
        let gates = (input.narrow(1, step, 1)?.squeeze(1)? + hidden.matmul(w_rec)?)?;
        let i = sig(&gates.narrow(1, 0, h)?)?;
        let g = gates.narrow(1, h, h)?.tanh()?;
        let f = sig(&(gates.narrow(1, 2 * h, h)? + 1.0)?)?;
        let o = sig(&gates.narrow(1, 3 * h, h)?)?;
        cell = ((f * cell)? + (i * g)?)?;
        hidden = (o * cell.tanh()?)?;
        outputs.push(hidden.clone());
    }
    Tensor::stack(&outputs, 1)
}

/// The parity case of [`lstm_recurrence`].
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    let (hid, steps) = (13, 6);
    Ok(vec![Case::new(
        format!("lstm_recurrence [3,{steps},4x{hid}]"),
        &["input", "w_rec"],
        vec![
            random_tensor(&[3, steps, 4 * hid], 13, 1.0)?,
            random_tensor(&[hid, 4 * hid], 14, 0.3)?,
        ],
        |x, _| lstm_recurrence(&x[0], &x[1], KernelOptions::default()),
        |x| reference(&x[0], &x[1]),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::matmul;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64, scale: f64) -> Tensor {
        let mut rng = Rng::new(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn fused_matches_composed_forward_and_gradients_on_odd_shapes() {
        for (b, t, h) in [(1, 1, 1), (3, 7, 5), (2, 13, 8), (1, 4, 3)] {
            let x = Var::from_tensor(&random(&[b, t, 4 * h], 1, 1.0)).unwrap();
            let w = Var::from_tensor(&random(&[h, 4 * h], 2, 0.5)).unwrap();
            let weights = random(&[b, t, h], 3, 1.0);
            let fused =
                lstm_recurrence(x.as_tensor(), w.as_tensor(), KernelOptions::default()).unwrap();
            let composed = reference(x.as_tensor(), w.as_tensor()).unwrap();
            close(&flat(&fused), &flat(&composed), 1e-5, "forward");
            let gf = (fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gc = (composed * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (var, name) in [(&x, "d_input"), (&w, "d_w")] {
                close(
                    &flat(gf.get(var.as_tensor()).unwrap()),
                    &flat(gc.get(var.as_tensor()).unwrap()),
                    1e-4,
                    name,
                );
            }
        }
    }

    #[test]
    fn fused_gradient_matches_finite_differences() {
        let (b, t, h) = (2, 5, 3);
        let x = random(&[b, t, 4 * h], 4, 1.0);
        let w = Var::from_tensor(&random(&[h, 4 * h], 5, 0.5)).unwrap();
        let weights = random(&[b, t, h], 6, 1.0);
        let loss = |w: &Tensor| -> f64 {
            (lstm_recurrence(&x, w, KernelOptions::default()).unwrap() * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let grads = (lstm_recurrence(&x, w.as_tensor(), KernelOptions::default()).unwrap()
            * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = flat(grads.get(w.as_tensor()).unwrap());
        let base = flat(w.as_tensor());
        for i in [0, 5, 11, 17, 35] {
            let eps = 1e-2f32;
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            let shape = (h, 4 * h);
            let numeric = (loss(&Tensor::from_vec(plus, shape, &Device::Cpu).unwrap())
                - loss(&Tensor::from_vec(minus, shape, &Device::Cpu).unwrap()))
                / (2.0 * eps as f64);
            assert!(
                (numeric - g[i] as f64).abs() < 2e-3 + 1e-2 * numeric.abs(),
                "w[{i}]: {numeric} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn matmul_handles_transposed_operands() {
        // [[1,2],[3,4]] · [[5,6],[7,8]]
        let a = [1f32, 2., 3., 4.];
        let b = [5f32, 6., 7., 8.];
        let mut out = [0f32; 4];
        matmul(&mut out, &a, false, &b, false, 2, 2, 2, false, false);
        assert_eq!(out, [19., 22., 43., 50.]);
        matmul(&mut out, &a, true, &b, true, 2, 2, 2, false, false); // aᵀ bᵀ
        assert_eq!(out, [23., 31., 34., 46.]);
        matmul(&mut out, &a, false, &b, false, 2, 2, 2, true, false);
        assert_eq!(out, [42., 53., 77., 96.]);
    }
}
