//! Adam with `eps_root`, decoupled weight decay and saveable state.

use super::{Gradients, Optimizer, OptimizerState, StateTensor};
use crate::config::OptimConfig;
use crate::error::{MetaError, Result};
use gpicl_kernels::op::adam::adam_update_tensor;
use gpicl_kernels::op::adam::{adam_update, AdamStep};
use gpicl_kernels::Tensor;
use gpicl_models::ParamStore;
use std::collections::BTreeMap;

/// The name prefix of Adam's first moments in its [`OptimizerState`]
/// (`adam.m/<parameter>`): the tensor names of every checkpoint so far.
pub const FIRST_MOMENT: &str = "adam.m/";
/// The name prefix of Adam's second moments (`adam.v/<parameter>`).
pub const SECOND_MOMENT: &str = "adam.v/";

/// Adam's moment estimates of one parameter.
#[derive(Clone, Debug, PartialEq)]
struct Moments {
    shape: Vec<usize>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Adam's moment estimates for every parameter, by parameter name.
pub struct Adam {
    cfg: OptimConfig,
    /// Updates applied so far (Adam's `t`).
    step: u64,
    moments: BTreeMap<String, Moments>,
}

impl Adam {
    /// Zero state for `params`.
    pub fn new(cfg: OptimConfig, params: &ParamStore) -> Self {
        let moments = params
            .iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                let shape = var.dims().to_vec();
                (
                    name.to_string(),
                    Moments {
                        shape,
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                    },
                )
            })
            .collect();
        Self {
            cfg,
            step: 0,
            moments,
        }
    }

    /// The first and second moments of parameter `name`.
    pub fn moments(&self, name: &str) -> Option<(&[f32], &[f32])> {
        self.moments
            .get(name)
            .map(|m| (m.m.as_slice(), m.v.as_slice()))
    }
}

impl Optimizer for Adam {
    fn step(&self) -> u64 {
        self.step
    }

    /// One update at learning rate `lr` (the configured `optim.lr`, or a
    /// scheduled step, see [`crate::lr_schedule`]):
    /// `m̂ / (sqrt(v̂ + eps_root) + eps) + weight_decay · p`, scaled by `lr`.
    fn update(&mut self, params: &ParamStore, grads: &Gradients, lr: f64) -> Result<()> {
        // Every name is checked before anything changes.
        for (name, var) in params.iter() {
            let g = grads.require(name)?;
            match self.moments.get(name) {
                Some(m) if m.m.len() == var.elem_count() && g.len() == var.elem_count() => {}
                _ => {
                    return Err(MetaError::Mismatch(format!(
                        "Adam has no state of the size of parameter `{name}`, or its gradient has the wrong size"
                    )))
                }
            }
        }
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
        for (name, var) in params.iter() {
            let g = grads.require(name)?;
            let moments = self.moments.get_mut(name).expect("checked above");
            let (m, v) = (&mut moments.m, &mut moments.v);
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

    /// `adam.m/<parameter>` and `adam.v/<parameter>` for every parameter.
    fn state(&self) -> OptimizerState {
        let mut tensors = BTreeMap::new();
        for (name, moments) in &self.moments {
            for (prefix, values) in [(FIRST_MOMENT, &moments.m), (SECOND_MOMENT, &moments.v)] {
                tensors.insert(
                    format!("{prefix}{name}"),
                    StateTensor {
                        shape: moments.shape.clone(),
                        values: values.clone(),
                    },
                );
            }
        }
        OptimizerState {
            step: self.step,
            tensors,
        }
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let mut moments = self.moments.clone();
        for (name, slot) in &mut moments {
            let n = slot.m.len();
            let get = |prefix: &str| {
                state
                    .tensors
                    .get(&format!("{prefix}{name}"))
                    .filter(|t| t.values.len() == n)
            };
            let (Some(m), Some(v)) = (get(FIRST_MOMENT), get(SECOND_MOMENT)) else {
                return Err(MetaError::Mismatch(format!(
                    "Adam state for `{name}` is missing or has the wrong size"
                )));
            };
            slot.m.clone_from(&m.values);
            slot.v.clone_from(&v.values);
        }
        let expected = 2 * moments.len();
        if state.tensors.len() != expected {
            let unknown: Vec<&str> = state
                .tensors
                .keys()
                .filter(|k| {
                    ![FIRST_MOMENT, SECOND_MOMENT].iter().any(|p| {
                        k.strip_prefix(p)
                            .is_some_and(|name| moments.contains_key(name))
                    })
                })
                .map(String::as_str)
                .collect();
            return Err(MetaError::Mismatch(format!(
                "unexpected optimiser state `{}`",
                unknown.join("`, `")
            )));
        }
        self.moments = moments;
        self.step = state.step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_kernels::Device;

    /// One update at the optimiser's own `optim.lr`.
    fn at_configured_lr(adam: &mut Adam, p: &ParamStore, g: &Gradients) -> Result<()> {
        let lr = adam.cfg.lr;
        adam.update(p, g, lr)
    }

    fn store(values: &[f32]) -> ParamStore {
        let mut p = ParamStore::new();
        p.insert(
            "w",
            Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap(),
        )
        .unwrap();
        p
    }

    fn grads(p: &ParamStore, g: &[f32]) -> Gradients {
        Gradients::from_store_order(p, vec![g.to_vec()]).unwrap()
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
        let g1 = [0.5f32, -0.001];
        at_configured_lr(&mut adam, &p, &grads(&p, &g1)).unwrap();
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
        let g2_f32: Vec<f32> = g2.iter().map(|&x| x as f32).collect();
        at_configured_lr(&mut adam, &p, &grads(&p, &g2_f32)).unwrap();
        let got = values(&p);
        for j in 0..2 {
            let g1j = g1[j] as f64;
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
        at_configured_lr(&mut adam, &p, &grads(&p, &[1e-12])).unwrap();
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
        at_configured_lr(&mut adam, &p, &grads(&p, &[0.0])).unwrap();
        assert!((values(&p)[0] - (2.0 - 0.1 * 0.5 * 2.0)).abs() < 1e-6);
    }

    #[test]
    fn the_saved_state_restores_the_moments_and_step_by_parameter_name() {
        let p = store(&[1.0, -2.0]);
        let mut adam = Adam::new(OptimConfig::default(), &p);
        at_configured_lr(&mut adam, &p, &grads(&p, &[0.5, 0.25])).unwrap();
        let state = adam.state();
        assert_eq!(
            state.tensors.keys().collect::<Vec<_>>(),
            ["adam.m/w", "adam.v/w"]
        );
        let mut fresh = Adam::new(OptimConfig::default(), &p);
        fresh.load_state(&state).unwrap();
        assert_eq!((fresh.step, fresh.moments("w")), (1, adam.moments("w")));

        let mut wrong = state.clone();
        wrong.tensors.remove("adam.v/w");
        let err = fresh.load_state(&wrong).unwrap_err().to_string();
        assert!(err.contains("Adam state for `w`"), "{err}");
        let mut extra = state.clone();
        extra.tensors.insert(
            "adam.m/gone".into(),
            StateTensor {
                shape: vec![1],
                values: vec![0.0],
            },
        );
        let err = fresh.load_state(&extra).unwrap_err().to_string();
        assert!(err.contains("`adam.m/gone`"), "{err}");
    }

    #[test]
    fn an_update_without_a_gradient_for_every_parameter_is_an_error() {
        let p = store(&[1.0]);
        let mut adam = Adam::new(OptimConfig::default(), &p);
        let mut other = ParamStore::new();
        other
            .insert("v", Tensor::from_slice(&[1.0f32], 1, &Device::Cpu).unwrap())
            .unwrap();
        let err = at_configured_lr(&mut adam, &p, &grads(&other, &[1.0])).unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
        assert_eq!((adam.step, values(&p)), (0, vec![1.0]));
    }
}
