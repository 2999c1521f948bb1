//! One VSML layer over a whole sequence as one fused op, with its
//! backward pass (BPTT through positions and micro-ticks).
//!
//! VSML (Kirsch & Schmidhuber 2021) runs one small LSTM per (input
//! feature, class) pair, all with the same parameters, that talk through
//! messages (`gpicl_models::vsml` explains the model). Composed from
//! candle ops, every position is a few dozen ops over `[b, I, C, H]`
//! tensors and candle's autograd keeps every micro-tick's intermediates:
//! 8.5 s and 1.8 GiB for 8 sequences at 7×7. [`vsml_layer`] runs all
//! positions of a sequence in one loop and keeps nothing: its backward
//! pass runs each sequence forward again, keeping that one sequence's
//! trace, and goes back through it, sequences in parallel.
//!
//! Two rewritings keep the work down without changing the function: the
//! input half of each LSTM's gate projection is computed once per input
//! unit and once per class (`A_i + B_c` instead of a product per cell),
//! and the messages are a linear map of the LSTMs' mean output (the
//! mean of a linear map, which the reference computes, reordered).

use crate::cpu::{f32_slice, with_f32};
use crate::options::{Backend, KernelOptions};
use crate::parallel::add_rows;
use crate::parity::{random_tensor, Case};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};
use cpu::{offsets, sequence_backward, sequence_logits, split, Transposed};
use rayon::prelude::*;

mod cpu;

/// The sizes of a VSML layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VsmlDims {
    /// Input units (features), `I`.
    pub inputs: usize,
    /// Output units (classes), `C`.
    pub classes: usize,
    /// Message size, `m`.
    pub msg: usize,
    /// Hidden size of each LSTM, `H`.
    pub hidden: usize,
    /// LSTM steps per position.
    pub micro_ticks: usize,
}

impl VsmlDims {
    /// Rows of the LSTMs' gate projection: `[to_input, x]`,
    /// `[to_class, y]` (each `m + 1`), then the LSTM's own `h`.
    pub fn cell_rows(&self) -> usize {
        2 * (self.msg + 1) + self.hidden
    }

    /// Length of the packed parameters [`vsml_layer`] takes: the gate
    /// projection's weight `[cell_rows, 4H]` and bias `[4H]`, then the
    /// forward messenger's weight `[H, m]` and bias `[m]`, then the
    /// backward messenger's weight `[H, m]` and bias `[m]`, each
    /// row-major, in this order.
    pub fn param_len(&self) -> usize {
        let g4 = 4 * self.hidden;
        self.cell_rows() * g4 + g4 + 2 * (self.hidden * self.msg + self.msg)
    }

    fn cells(&self) -> usize {
        self.inputs * self.classes
    }
}

/// One VSML layer over `tokens` (`[b, t, I + C]`: each position's features,
/// then the previous label's one-hot), with the packed parameters
/// `params` ([`VsmlDims::param_len`]): the logits `[b, t, C]`, class `c`'s
/// the first entry of its forward message after the position's
/// micro-ticks. From zero state and zero messages. The tokens are data
/// and get no gradient from the fused op. Runs the composed [`reference()`]
/// where the fused kernel does not apply, and on CUDA (no CUDA half yet).
pub fn vsml_layer(
    tokens: &Tensor,
    params: &Tensor,
    dims: VsmlDims,
    options: KernelOptions,
) -> Result<Tensor> {
    match options.backend(tokens) {
        Backend::Cpu => tokens
            .contiguous()?
            .apply_op2(&params.contiguous()?, VsmlLayer { dims }),
        _ => reference(tokens, params, dims),
    }
}

struct VsmlLayer {
    dims: VsmlDims,
}

impl VsmlLayer {
    fn check(&self, b_t_width: (usize, usize, usize), params: usize) -> Result<()> {
        let d = &self.dims;
        if b_t_width.2 != d.inputs + d.classes || params != d.param_len() {
            candle_core::bail!(
                "vsml-layer: tokens [.., .., {}] and {params} parameters do not fit {d:?} (expected {} wide tokens and {} parameters)",
                b_t_width.2,
                d.inputs + d.classes,
                d.param_len()
            );
        }
        Ok(())
    }
}

impl CustomOp2 for VsmlLayer {
    fn name(&self) -> &'static str {
        "vsml-layer"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, width) = l1.shape().dims3()?;
        self.check((b, t, width), l2.shape().elem_count())?;
        let (tokens, params) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
        );
        let d = self.dims;
        let w = split(params, &d);
        let mut logits = vec![0f32; b * t * d.classes];
        if t > 0 {
            logits
                .par_chunks_mut(t * d.classes)
                .zip(tokens.par_chunks(t * width))
                .for_each(|(out, seq)| sequence_logits(seq, &w, &d, out));
        }
        Ok((CpuStorage::F32(logits), Shape::from((b, t, d.classes))))
    }

    fn bwd(
        &self,
        tokens: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, width) = tokens.dims3()?;
        let d = self.dims;
        let total = with_f32(self.name(), &[tokens, params, grad_res], |s| {
            let (tokens, params, grad) = (s[0], s[1], s[2]);
            let mut total = vec![0f32; params.len()];
            if t > 0 {
                let transposed = Transposed::of(&split(params, &d), &d);
                let per_sequence: Vec<f32> = (0..b)
                    .into_par_iter()
                    .flat_map_iter(|s| {
                        sequence_backward(
                            &tokens[s * t * width..(s + 1) * t * width],
                            &grad[s * t * d.classes..(s + 1) * t * d.classes],
                            params,
                            &transposed,
                            &d,
                        )
                    })
                    .collect();
                // Summed in sequence order, so the result does not depend
                // on how many threads ran.
                add_rows(&mut total, &per_sequence);
            }
            total
        })?;
        let grad = Tensor::from_vec(total, params.shape(), params.device())?;
        Ok((None, Some(grad)))
    }
}

/// The layer composed from candle ops, position by position: the
/// definition the fused op is tested against, and its path where it does
/// not apply. Every intermediate is kept for candle's autograd.
pub fn reference(tokens: &Tensor, params: &Tensor, dims: VsmlDims) -> Result<Tensor> {
    let (b, t, _) = tokens.dims3()?;
    let VsmlDims {
        inputs: i_n,
        classes: c_n,
        msg: m,
        hidden: h_n,
        micro_ticks,
    } = dims;
    let g4 = 4 * h_n;
    let at = offsets(&dims);
    let block = |k: usize, shape: (usize, usize)| {
        params.narrow(0, at[k], at[k + 1] - at[k])?.reshape(shape)
    };
    let w_cell = Tensor::cat(
        &[
            block(0, (m + 1, g4))?,
            block(1, (m + 1, g4))?,
            block(2, (h_n, g4))?,
        ],
        0,
    )?;
    let bias = params.narrow(0, at[3], g4)?;
    let (w_f, b_f) = (block(4, (h_n, m))?, params.narrow(0, at[5], m)?);
    let (w_b, b_b) = (block(6, (h_n, m))?, params.narrow(0, at[7], m)?);
    let affine = |x: &Tensor, w: &Tensor, bias: &Tensor| -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let out = x
            .reshape((rows, dims[dims.len() - 1]))?
            .matmul(w)?
            .broadcast_add(bias)?;
        let mut shape = dims;
        *shape.last_mut().expect("rank ≥ 1") = w.dim(1)?;
        out.reshape(shape)
    };
    let sigmoid = |x: &Tensor| -> Result<Tensor> { ((x * 0.5)?.tanh()? + 1.0)?.affine(0.5, 0.0) };
    let device = tokens.device();
    let mut h = Tensor::zeros((b, i_n, c_n, h_n), tokens.dtype(), device)?;
    let mut c = h.clone();
    let mut to_classes = Tensor::zeros((b, c_n, m), tokens.dtype(), device)?;
    let mut to_inputs = Tensor::zeros((b, i_n, m), tokens.dtype(), device)?;
    let mut logits = Vec::with_capacity(t);
    for step in 0..t {
        let token = tokens.narrow(1, step, 1)?.squeeze(1)?;
        let x = token.narrow(1, 0, i_n)?.unsqueeze(2)?;
        let y = token.narrow(1, i_n, c_n)?.unsqueeze(2)?;
        let from_inputs = Tensor::cat(&[&to_inputs, &x], 2)?; // [b, I, m+1]
        let from_classes = Tensor::cat(&[&to_classes, &y], 2)?; // [b, C, m+1]
        let inputs = Tensor::cat(
            &[
                &from_inputs
                    .unsqueeze(2)?
                    .broadcast_as((b, i_n, c_n, m + 1))?,
                &from_classes
                    .unsqueeze(1)?
                    .broadcast_as((b, i_n, c_n, m + 1))?,
            ],
            3,
        )?;
        for _ in 0..micro_ticks {
            let gates = affine(&Tensor::cat(&[&inputs, &h], 3)?, &w_cell, &bias)?;
            let gate = |k: usize| gates.narrow(3, k * h_n, h_n);
            let (i_gate, g_gate, f_gate, o_gate) = (gate(0)?, gate(1)?, gate(2)?, gate(3)?);
            c = ((sigmoid(&(f_gate + 1.0)?)? * &c)? + (sigmoid(&i_gate)? * g_gate.tanh()?)?)?;
            h = (sigmoid(&o_gate)? * c.tanh()?)?;
        }
        to_classes = affine(&h, &w_f, &b_f)?.mean(1)?; // [b, C, m]
        to_inputs = affine(&h, &w_b, &b_b)?.mean(2)?; // [b, I, m]
        logits.push(to_classes.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?);
    }
    Tensor::stack(&logits, 1)
}

/// The parity case of [`vsml_layer`]: odd sizes, gradients of the
/// parameters (the tokens are data).
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    let dims = VsmlDims {
        inputs: 3,
        classes: 4,
        msg: 2,
        hidden: 3,
        micro_ticks: 2,
    };
    // The tokens are data: fixed in both closures, not an input.
    let tokens = random_tensor(&[2, 5, 7], 31, 1.0)?;
    let fused_tokens = tokens.clone();
    Ok(vec![Case::new(
        "vsml_layer [2,5,3+4] m2 h3 ticks2".to_string(),
        &["params"],
        vec![random_tensor(&[dims.param_len()], 32, 0.4)?],
        move |x, device| {
            vsml_layer(
                &fused_tokens.to_device(device)?,
                &x[0],
                dims,
                KernelOptions::default(),
            )
        },
        move |x| reference(&tokens, &x[0], dims),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::testing::{close, finite_difference_check, random, value_and_grads};
    use candle_core::Device;

    /// Tokens as the model builds them: features, then a one-hot label.
    fn tokens(b: usize, t: usize, d: &VsmlDims, seed: u64) -> Tensor {
        let x = random_tensor(&[b, t, d.inputs], seed, 1.0).unwrap();
        let mut onehot = vec![0f32; b * t * d.classes];
        for (p, row) in onehot.chunks_exact_mut(d.classes).enumerate() {
            row[(p * 7 + seed as usize) % d.classes] = 1.0;
        }
        let y = Tensor::from_vec(onehot, (b, t, d.classes), &Device::Cpu).unwrap();
        Tensor::cat(&[&x, &y], 2).unwrap()
    }

    #[test]
    fn fused_matches_composed_forward_and_gradients_on_odd_shapes() {
        for (b, t, inputs, classes, msg, hidden, micro_ticks) in [
            (1, 1, 1, 1, 1, 1, 1),
            (2, 6, 3, 4, 2, 3, 2),
            (3, 9, 5, 2, 4, 5, 3),
            (1, 4, 7, 10, 8, 16, 2),
        ] {
            let d = VsmlDims {
                inputs,
                classes,
                msg,
                hidden,
                micro_ticks,
            };
            let tok = tokens(b, t, &d, 3);
            let p = random(&[d.param_len()], 4, 0.4);
            let fused = vsml_layer(&tok, p.as_tensor(), d, KernelOptions::default()).unwrap();
            assert_eq!(fused.dims(), &[b, t, classes]);
            let (fused, fused_grad) = value_and_grads(&fused, &[&p]);
            let composed = reference(&tok, p.as_tensor(), d).unwrap();
            let (composed, composed_grad) = value_and_grads(&composed, &[&p]);
            close(&fused, &composed, 1e-5, "forward");
            close(
                &fused_grad[0],
                &composed_grad[0],
                1e-4,
                &format!("grad {d:?}"),
            );
        }
    }

    #[test]
    fn fused_gradient_matches_finite_differences() {
        let d = VsmlDims {
            inputs: 3,
            classes: 3,
            msg: 2,
            hidden: 2,
            micro_ticks: 2,
        };
        let tok = tokens(2, 5, &d, 7);
        let p = random(&[d.param_len()], 9, 0.5);
        let layer = |p: &Tensor| vsml_layer(&tok, p, d, KernelOptions::default()).unwrap();
        let (_, g) = value_and_grads(&layer(p.as_tensor()), &[&p]);
        finite_difference_check(layer, &p, &g[0], "vsml params");
        // Every block of the packed vector gets a gradient.
        for block in offsets(&d).windows(2) {
            assert!(
                g[0][block[0]..block[1]].iter().any(|&v| v != 0.0),
                "{block:?}"
            );
        }
    }

    #[test]
    fn mismatched_parameters_are_refused_with_the_expected_sizes() {
        let d = VsmlDims {
            inputs: 2,
            classes: 2,
            msg: 2,
            hidden: 2,
            micro_ticks: 1,
        };
        let tok = tokens(1, 3, &d, 1);
        let short = random_tensor(&[d.param_len() - 1], 2, 1.0).unwrap();
        let err = vsml_layer(&tok, &short, d, KernelOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{} parameters", d.param_len())),
            "{err}"
        );
    }
}
