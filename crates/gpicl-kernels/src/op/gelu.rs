//! GELU, exact (`x·Φ(x)` with erf) or with the tanh approximation,
//! elementwise in parallel chunks.

use crate::cpu::{f32_slice, with_f32};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

/// GELU, exact (`x·Φ(x)` with erf) or with the tanh approximation.
pub fn gelu(x: &Tensor, tanh_approximation: bool, options: KernelOptions) -> Result<Tensor> {
    match options.backend(x) {
        Backend::Composed => reference(x, tanh_approximation),
        Backend::Cpu => x.contiguous()?.apply_op1(GeluOp { tanh_approximation }),
        #[cfg(feature = "cuda")]
        Backend::Cuda => cuda::gelu(x, tanh_approximation),
    }
}

/// candle's own GELU (`gelu` is the tanh form, `gelu_erf` the exact one):
/// the composed reference.
pub fn reference(x: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
    if tanh_approximation {
        x.gelu()
    } else {
        x.gelu_erf()
    }
}

/// The fused CPU kernel.
struct GeluOp {
    tanh_approximation: bool,
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let mut out = vec![0f32; x.len()];
        cpu::gelu_forward(x, self.tanh_approximation, &mut out);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_f32(self.name(), &[x, grad], |s| {
            let mut dx = vec![0f32; s[0].len()];
            cpu::gelu_backward(s[0], s[1], self.tanh_approximation, &mut dx);
            dx
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// The parity cases of [`gelu`], both forms.
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    [false, true]
        .into_iter()
        .map(|tanh| {
            Ok(Case::new(
                format!("gelu{} [5,33]", if tanh { "_tanh" } else { "_erf" }),
                &["x"],
                vec![random_tensor(&[5, 33], 7, 2.0)?],
                move |t, _| gelu(&t[0], tanh, KernelOptions::default()),
                move |t| reference(&t[0], tanh),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::testing::{close, random, value_and_grads};

    #[test]
    fn gelu_matches_the_composed_op_in_both_forms() {
        let x = random(&[5, 37], 4, 2.5);
        for tanh in [false, true] {
            let fused = gelu(&x, tanh, KernelOptions::default()).unwrap();
            let composed = if tanh {
                x.as_tensor().gelu().unwrap()
            } else {
                x.as_tensor().gelu_erf().unwrap()
            };
            let (fv, fg) = value_and_grads(&fused, &[&x]);
            let (cv, cg) = value_and_grads(&composed, &[&x]);
            close(&fv, &cv, 1e-5, "gelu");
            close(&fg[0], &cg[0], 1e-4, "gelu grad");
        }
    }
}
