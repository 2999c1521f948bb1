//! The Adam update: [`adam_update`] over slices (one vectorised pass over
//! parallel chunks) and [`adam_update_tensor`], the same on a parameter
//! tensor's own storage.
//!
//! candle has no mutable view of a tensor's data; an optimiser that reads
//! a parameter out (`to_vec1`), updates it and writes it back (`Var::set`)
//! copies every parameter twice per step (a third of the optimiser's time
//! on the reference step). [`adam_update_tensor`] runs [`adam_update`] on
//! a CPU tensor's own storage through candle's in-place op, with the same
//! arithmetic, so the same bits. There is no composed reference (the test
//! checks the scalar formula) and no CUDA half: the optimiser copies
//! parameters off the CPU through the host.

use crate::parallel::ELEMENTWISE_CHUNK;
use crate::simd::simd_fn;
use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

/// The scalars of one Adam update, with the bias corrections
/// `1 − β^t` precomputed by the caller.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay β₁.
    pub beta1: f32,
    /// Second-moment decay β₂.
    pub beta2: f32,
    /// Added to `sqrt(v̂ + eps_root)`.
    pub eps: f32,
    /// Added to `v̂` inside the square root.
    pub eps_root: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// `1 − β₁^t`.
    pub correction1: f32,
    /// `1 − β₂^t`.
    pub correction2: f32,
}

simd_fn! {
    fn adam_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
        let (b1, b2) = (s.beta1, s.beta2);
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let m_hat = *m / s.correction1;
            let v_hat = *v / s.correction2;
            let update = m_hat / ((v_hat + s.eps_root).sqrt() + s.eps) + s.weight_decay * *p;
            *p -= s.lr * update;
        }
    }
}

/// One Adam update of a parameter in place, moments included, in one
/// vectorised pass over parallel chunks:
/// `p −= lr · (m̂ / (sqrt(v̂ + eps_root) + eps) + weight_decay · p)`.
pub fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: &AdamStep) {
    assert!(
        g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
        "adam_update: parameter, gradient and moments must have one length"
    );
    p.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(g.par_chunks(ELEMENTWISE_CHUNK))
        .zip(m.par_chunks_mut(ELEMENTWISE_CHUNK))
        .zip(v.par_chunks_mut(ELEMENTWISE_CHUNK))
        .for_each(|(((p, g), m), v)| adam_chunk(p, g, m, v, step));
}

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
        adam_update(&mut data[start..end], self.grad, m, v, self.step);
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
    use crate::rng::Rng;
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
        adam_update(&mut p1, &g, &mut m1, &mut v1, &step);
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

    #[test]
    fn adam_update_matches_the_scalar_formula_across_chunks() {
        // Longer than one parallel chunk and not a multiple of the SIMD width.
        let n = 2 * ELEMENTWISE_CHUNK + 13;
        let mut rng = Rng::new(50);
        let mut draw = || -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
        let (p0, g, m0) = (draw(), draw(), draw());
        let v0: Vec<f32> = draw().iter().map(|x| x * x).collect();
        let step = AdamStep {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            eps_root: 1e-6,
            weight_decay: 0.1,
            correction1: 1.0 - 0.9f32.powi(3),
            correction2: 1.0 - 0.99f32.powi(3),
        };
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        adam_update(&mut p, &g, &mut m, &mut v, &step);
        for i in (0..n).step_by(997).chain([n - 1]) {
            let m1 = 0.9 * m0[i] as f64 + 0.1 * g[i] as f64;
            let v1 = 0.99 * v0[i] as f64 + 0.01 * (g[i] as f64).powi(2);
            let (m_hat, v_hat) = (m1 / step.correction1 as f64, v1 / step.correction2 as f64);
            let update = m_hat / ((v_hat + 1e-6).sqrt() + 1e-8) + 0.1 * p0[i] as f64;
            let expected = p0[i] as f64 - 1e-2 * update;
            assert!(
                (p[i] as f64 - expected).abs() < 1e-5,
                "p[{i}]: {} vs {expected}",
                p[i]
            );
            assert!((m[i] as f64 - m1).abs() < 1e-6 && (v[i] as f64 - v1).abs() < 1e-5);
        }
    }
}
