//! Adam with `eps_root`, decoupled weight decay and saveable state.

use crate::config::OptimConfig;
use crate::error::Result;
use gpicl_kernels::op::adam::adam_update_tensor;
use gpicl_kernels::op::adam::{adam_update, AdamStep};
use gpicl_kernels::Tensor;
use gpicl_models::ParamStore;

/// Adam's moment estimates for every parameter, in the store's name order.
pub struct Adam {
    cfg: OptimConfig,
    /// Updates applied so far (Adam's `t`).
    pub step: u64,
    /// First moments.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    /// Zero state for `params`.
    pub fn new(cfg: OptimConfig, params: &ParamStore) -> Self {
        let zeros: Vec<Vec<f32>> = params
            .iter()
            .map(|(_, v)| vec![0.0; v.elem_count()])
            .collect();
        Self {
            cfg,
            step: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// Applies one update with `grads` (one flat vector per parameter, in
    /// name order) at the configured `lr`:
    /// `m̂ / (sqrt(v̂ + eps_root) + eps) + weight_decay · p`, scaled by `lr`.
    pub fn update(&mut self, params: &ParamStore, grads: &[Vec<f32>]) -> Result<()> {
        self.update_with_lr(params, grads, self.cfg.lr)
    }

    /// [`Adam::update`] at learning rate `lr` (a scheduled step, see
    /// [`crate::lr_schedule`]).
    pub fn update_with_lr(
        &mut self,
        params: &ParamStore,
        grads: &[Vec<f32>],
        lr: f64,
    ) -> Result<()> {
        self.step += 1;
        let c = &self.cfg;
        let t = self.step as i32;
        let step = AdamStep {
            lr: lr as f32,
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            eps: c.eps as f32,
            eps_root: c.eps_root as f32,
            weight_decay: c.weight_decay as f32,
            correction1: (1.0 - c.beta1.powi(t)) as f32,
            correction2: (1.0 - c.beta2.powi(t)) as f32,
        };
        for (i, (_, var)) in params.iter().enumerate() {
            let (g, m, v) = (&grads[i], &mut self.m[i], &mut self.v[i]);
            if var.device().is_cpu()
                && var.dtype() == gpicl_kernels::DType::F32
                && var.is_contiguous()
            {
                adam_update_tensor(var.as_tensor(), g, m, v, &step)?;
                continue;
            }
            let mut p: Vec<f32> = var.flatten_all()?.to_vec1()?;
            adam_update(&mut p, g, m, v, &step);
            var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

/// Scales `grads` in place so that their global L2 norm is at most
/// `max_norm` (0 disables clipping). Returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = (max_norm / norm) as f32;
        grads
            .iter_mut()
            .flat_map(|g| g.iter_mut())
            .for_each(|x| *x *= scale);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_kernels::Device;

    fn store(values: &[f32]) -> ParamStore {
        let mut p = ParamStore::new();
        p.insert(
            "w",
            Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap(),
        )
        .unwrap();
        p
    }

    fn values(p: &ParamStore) -> Vec<f32> {
        p.get("w").unwrap().to_vec1().unwrap()
    }

    #[test]
    fn update_matches_a_hand_computed_eps_root_update() {
        let cfg = OptimConfig {
            lr: 0.1,
            eps: 1e-3,
            eps_root: 1e-2,
            ..OptimConfig::default()
        };
        let p = store(&[1.0, -2.0]);
        let mut adam = Adam::new(cfg, &p);
        let g1 = vec![vec![0.5f32, -0.001]];
        adam.update(&p, &g1).unwrap();
        // Step 1: m̂ = g, v̂ = g², update = g / (sqrt(g² + eps_root) + eps).
        let expect1: Vec<f64> = [(1.0, 0.5), (-2.0, -0.001)]
            .iter()
            .map(|&(p0, g): &(f64, f64)| p0 - 0.1 * g / ((g * g + 1e-2).sqrt() + 1e-3))
            .collect();
        let got = values(&p);
        for (a, b) in got.iter().zip(&expect1) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
        // Step 2 by hand, with bias corrections.
        let g2 = [0.25f64, 0.003];
        adam.update(&p, &[g2.iter().map(|&x| x as f32).collect()])
            .unwrap();
        let got = values(&p);
        for j in 0..2 {
            let g1j = g1[0][j] as f64;
            let m = 0.9 * (0.1 * g1j) + 0.1 * g2[j];
            let v = 0.999 * (0.001 * g1j * g1j) + 0.001 * g2[j] * g2[j];
            let m_hat = m / (1.0 - 0.9f64.powi(2));
            let v_hat = v / (1.0 - 0.999f64.powi(2));
            let expect = expect1[j] - 0.1 * m_hat / ((v_hat + 1e-2).sqrt() + 1e-3);
            assert!(
                (got[j] as f64 - expect).abs() < 1e-5,
                "{} vs {expect}",
                got[j]
            );
        }
    }

    #[test]
    fn eps_root_bounds_the_step_for_tiny_gradients() {
        let p = store(&[0.0]);
        let mut adam = Adam::new(OptimConfig::default(), &p);
        adam.update(&p, &[vec![1e-12]]).unwrap();
        // Without eps_root the step would be lr; with it, g / 1e-4.
        assert!(values(&p)[0].abs() < 1e-7);
    }

    #[test]
    fn weight_decay_is_decoupled() {
        let p = store(&[2.0]);
        let mut adam = Adam::new(
            OptimConfig {
                weight_decay: 0.5,
                lr: 0.1,
                ..OptimConfig::default()
            },
            &p,
        );
        adam.update(&p, &[vec![0.0]]).unwrap();
        assert!((values(&p)[0] - (2.0 - 0.1 * 0.5 * 2.0)).abs() < 1e-6);
    }

    #[test]
    fn clipping_rescales_to_the_threshold() {
        let mut g = vec![vec![3.0f32], vec![4.0f32]];
        assert_eq!(clip_global_norm(&mut g, 1.0), 5.0);
        assert!((g[0][0] - 0.6).abs() < 1e-6 && (g[1][0] - 0.8).abs() < 1e-6);
        let mut h = vec![vec![3.0f32]];
        clip_global_norm(&mut h, 0.0);
        assert_eq!(h[0][0], 3.0);
    }
}
