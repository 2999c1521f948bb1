//! Mean softmax cross-entropy against integer targets, one pass forward
//! and one backward (`(softmax − one_hot) / rows`).

use crate::cpu::{f32_slice, with_f32};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use crate::rng::Rng;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

pub use crate::composed::cross_entropy as reference;

/// Mean softmax cross-entropy of `logits` `[.., classes]` against integer
/// `targets` of the same leading shape, as [`reference()`]. With the fused
/// kernels, targets outside `0..classes` are an error, not garbage.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, options: KernelOptions) -> Result<Tensor> {
    let backend = options.backend(logits);
    if backend == Backend::Composed {
        return reference(logits, targets);
    }
    let classes = logits.dim(candle_core::D::Minus1)?;
    let labels: Vec<u32> = targets
        .flatten_all()?
        .to_dtype(candle_core::DType::U32)?
        .to_vec1()?;
    if labels.len() * classes != logits.elem_count() {
        candle_core::bail!(
            "fused-cross-entropy: {} targets for logits {:?}",
            labels.len(),
            logits.shape()
        );
    }
    if let Some(bad) = labels.iter().find(|&&y| y as usize >= classes) {
        candle_core::bail!("fused-cross-entropy: target {bad} is not below {classes} classes");
    }
    #[cfg(feature = "cuda")]
    if backend == Backend::Cuda {
        return cuda::cross_entropy(logits, targets, labels.len(), classes);
    }
    logits.contiguous()?.apply_op1(CrossEntropyOp {
        targets: labels,
        classes,
    })
}

/// The fused CPU kernel.
struct CrossEntropyOp {
    targets: Vec<u32>,
    classes: usize,
}

impl CustomOp1 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let z = f32_slice(self.name(), s, l)?;
        let mean = cpu::cross_entropy_forward(z, &self.targets, self.classes);
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let scale = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?
            / self.targets.len().max(1) as f32;
        let dz = with_f32(self.name(), &[logits], |s| {
            let mut dz = vec![0f32; s[0].len()];
            cpu::cross_entropy_backward(s[0], &self.targets, self.classes, scale, &mut dz);
            dz
        })?;
        Ok(Some(Tensor::from_vec(dz, logits.shape(), logits.device())?))
    }
}

/// The parity case of [`cross_entropy`].
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    let mut rng = Rng::new(11);
    let labels: Vec<u32> = (0..3 * 7).map(|_| rng.below(10) as u32).collect();
    let targets = Tensor::from_vec(labels, (3, 7), &Device::Cpu)?;
    let on_device = targets.clone();
    Ok(vec![Case::new(
        "cross_entropy [3,7,10]",
        &["logits"],
        vec![random_tensor(&[3, 7, 10], 12, 3.0)?],
        move |x, device| {
            cross_entropy(
                &x[0],
                &on_device.to_device(device)?,
                KernelOptions::default(),
            )
        },
        move |x| reference(&x[0], &targets),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::testing::{close, flat, random, random_targets};

    #[test]
    fn cross_entropy_matches_the_composed_op_on_odd_shapes() {
        for shape in [vec![3, 7, 10], vec![1, 1, 3], vec![37, 5]] {
            let logits = random(&shape, 30, 3.0);
            let rows: usize = shape[..shape.len() - 1].iter().product();
            let targets = random_targets(rows, *shape.last().unwrap(), 31)
                .reshape(&shape[..shape.len() - 1])
                .unwrap();
            let fused = cross_entropy(&logits, &targets, KernelOptions::default()).unwrap();
            let composed = reference(&logits, &targets).unwrap();
            let (f, c) = (
                fused.to_scalar::<f32>().unwrap(),
                composed.to_scalar::<f32>().unwrap(),
            );
            assert!((f - c).abs() <= 1e-5 * c.abs().max(1.0), "{f} vs {c}");
            let fg = flat(fused.backward().unwrap().get(&logits).unwrap());
            let cg = flat(composed.backward().unwrap().get(&logits).unwrap());
            close(&fg, &cg, 1e-4, &format!("cross-entropy grad {shape:?}"));
        }
    }

    #[test]
    fn cross_entropy_refuses_targets_outside_the_classes() {
        let logits = random(&[2, 3], 32, 1.0);
        let targets = Tensor::from_vec(vec![0u32, 3], 2, &Device::Cpu).unwrap();
        let err = cross_entropy(&logits, &targets, KernelOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("target 3 is not below 3 classes"), "{err}");
        let short = Tensor::from_vec(vec![0u32], 1, &Device::Cpu).unwrap();
        assert!(cross_entropy(&logits, &short, KernelOptions::default()).is_err());
    }
}
