//! Layer normalisation over the last dimension with a learned gain and
//! bias, one pass forward and one backward per row.

use crate::cpu::{f32_slice, with_f32};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

pub use crate::composed::layer_norm as reference;

/// Layer normalisation over the last dimension: `(x − mean) / sqrt(var +
/// eps) · gain + bias`, as its composed [`reference()`].
pub fn layer_norm(
    x: &Tensor,
    gain: &Tensor,
    bias: &Tensor,
    eps: f64,
    options: KernelOptions,
) -> Result<Tensor> {
    match options.backend(x) {
        Backend::Composed => reference(x, gain, bias, eps),
        Backend::Cpu => x.contiguous()?.apply_op3(
            &gain.contiguous()?,
            &bias.contiguous()?,
            LayerNormOp { eps: eps as f32 },
        ),
        #[cfg(feature = "cuda")]
        Backend::Cuda => cuda::layer_norm(x, gain, bias, eps as f32),
    }
}

/// The fused CPU kernel.
struct LayerNormOp {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        let x = f32_slice(self.name(), s1, l1)?;
        let (gain, bias) = (
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let d = *l1.dims().last().unwrap_or(&0);
        if d == 0 || gain.len() != d || bias.len() != d {
            candle_core::bail!(
                "fused-layer-norm: last dimension {d} does not match gain {} and bias {}",
                gain.len(),
                bias.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        cpu::layer_norm_forward(x, gain, bias, self.eps, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = x.dim(candle_core::D::Minus1)?;
        let (dx, dgain, dbias) = with_f32(self.name(), &[x, grad, gain], |s| {
            let mut dx = vec![0f32; s[0].len()];
            let (mut dgain, mut dbias) = (vec![0f32; d], vec![0f32; d]);
            cpu::layer_norm_backward(s[0], s[1], s[2], self.eps, &mut dx, &mut dgain, &mut dbias);
            (dx, dgain, dbias)
        })?;
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dgain, gain.shape(), device)?),
            Some(Tensor::from_vec(dbias, gain.shape(), device)?),
        ))
    }
}

/// The parity case of [`layer_norm`].
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    Ok(vec![Case::new(
        "layer_norm [6,5,48]",
        &["x", "gain", "bias"],
        vec![
            random_tensor(&[6, 5, 48], 4, 2.0)?,
            random_tensor(&[48], 5, 1.0)?,
            random_tensor(&[48], 6, 1.0)?,
        ],
        |t, _| layer_norm(&t[0], &t[1], &t[2], 1e-5, KernelOptions::default()),
        |t| reference(&t[0], &t[1], &t[2], 1e-5),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::testing::{close, random, value_and_grads};

    #[test]
    fn layer_norm_matches_the_composed_op_on_odd_shapes() {
        for (shape, d) in [(vec![3, 7, 13], 13), (vec![1, 1, 5], 5), (vec![33, 64], 64)] {
            let x = random(&shape, 1, 2.0);
            let gain = random(&[d], 2, 1.0);
            let bias = random(&[d], 3, 1.0);
            let (fv, fg) = value_and_grads(
                &layer_norm(&x, &gain, &bias, 1e-5, KernelOptions::default()).unwrap(),
                &[&x, &gain, &bias],
            );
            let (cv, cg) = value_and_grads(
                &reference(&x, &gain, &bias, 1e-5).unwrap(),
                &[&x, &gain, &bias],
            );
            close(&fv, &cv, 1e-5, "layer norm");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("layer norm grad {i} {shape:?}"));
            }
        }
    }
}
