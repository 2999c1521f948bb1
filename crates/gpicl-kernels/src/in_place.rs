//! Updating parameter tensors in place.
//!
//! candle has no mutable view of a tensor's data; an optimiser that reads
//! a parameter out (`to_vec1`), updates it and writes it back (`Var::set`)
//! copies every parameter twice per step (a third of the optimiser's time
//! on the reference step). [`adam_update_tensor`] runs
//! [`crate::host::adam_update`] on a CPU tensor's own storage through
//! candle's in-place op, with the same arithmetic, so the same bits.

use crate::host::{self, AdamStep};
use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Tensor};
use std::cell::RefCell;

struct AdamInPlace<'a> {
    grad: &'a [f32],
    moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
    step: &'a AdamStep,
}

impl InplaceOp1 for AdamInPlace<'_> {
    fn name(&self) -> &'static str {
        "adam-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("adam-in-place: needs a contiguous f32 parameter");
        };
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        host::adam_update(&mut data[start..end], self.grad, m, v, self.step);
        Ok(())
    }
}

/// One Adam update of `param` (a contiguous CPU `f32` tensor, typically a
/// `Var`'s) in place; errors for other devices, layouts, dtypes or lengths
/// (the optimiser copies such parameters through the host instead).
pub fn adam_update_tensor(
    param: &Tensor,
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: &AdamStep,
) -> Result<()> {
    if !param.device().is_cpu() {
        candle_core::bail!("adam-in-place: the parameter is not on the CPU");
    }
    let n = param.elem_count();
    if grad.len() != n || m.len() != n || v.len() != n {
        candle_core::bail!(
            "adam-in-place: parameter of {n} values, gradient {}, moments {} and {}",
            grad.len(),
            m.len(),
            v.len()
        );
    }
    param.inplace_op1(&AdamInPlace {
        grad,
        moments: RefCell::new((m, v)),
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn the_in_place_update_computes_the_bits_of_the_copying_one() {
        let p0: Vec<f32> = (0..37).map(|i| (i as f32 * 0.31).sin()).collect();
        let g: Vec<f32> = (0..37).map(|i| (i as f32 * 0.17).cos()).collect();
        let step = AdamStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            eps_root: 0.0,
            weight_decay: 0.0,
            correction1: 0.1,
            correction2: 0.001,
        };
        let var =
            Var::from_tensor(&Tensor::from_vec(p0.clone(), (37,), &Device::Cpu).unwrap()).unwrap();
        let (mut m, mut v) = (vec![0.01f32; 37], vec![0.02f32; 37]);
        adam_update_tensor(var.as_tensor(), &g, &mut m, &mut v, &step).unwrap();
        let (mut p1, mut m1, mut v1) = (p0, vec![0.01f32; 37], vec![0.02f32; 37]);
        host::adam_update(&mut p1, &g, &mut m1, &mut v1, &step);
        let updated: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert_eq!(updated, p1);
        assert_eq!((m, v), (m1, v1));
        assert!(adam_update_tensor(
            var.as_tensor(),
            &g[..3],
            &mut [0.0; 3],
            &mut [0.0; 3],
            &step
        )
        .is_err());
    }
}
