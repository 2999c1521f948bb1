//! Gradients keyed by parameter name: what a model's
//! [`SequenceModel::loss_and_grads`](crate::SequenceModel::loss_and_grads)
//! returns and what the optimisers of `gpicl-meta` accumulate, clip and
//! apply. Everything after the model works by name, so no two parts of the
//! pipeline need to agree on an iteration order.

use crate::error::{ModelError, Result};
use crate::ParamStore;
use std::collections::BTreeMap;

/// One flat gradient per parameter, keyed by the parameter's name.
///
/// Built against a [`ParamStore`], so every parameter has exactly one
/// gradient of its size; operations on two sets of gradients or on
/// gradients and parameters check that the names and sizes match.
/// Iteration is in name order, the order of [`ParamStore::iter`].
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    by_name: BTreeMap<String, Vec<f32>>,
}

impl Gradients {
    /// A zero gradient for every parameter of `params`.
    pub fn zeros(params: &ParamStore) -> Self {
        Self {
            by_name: params
                .iter()
                .map(|(name, var)| (name.to_string(), vec![0.0; var.elem_count()]))
                .collect(),
        }
    }

    /// Names the flat gradients a model returns in [`ParamStore::iter`]
    /// order (as [`crate::autograd_loss_and_grads`] and the hand-written steps compute them), checking their count
    /// and sizes against `params`.
    pub fn from_store_order(params: &ParamStore, grads: Vec<Vec<f32>>) -> Result<Self> {
        if grads.len() != params.len() {
            return Err(ModelError::Mismatch(format!(
                "{} gradients for {} parameters",
                grads.len(),
                params.len()
            )));
        }
        let mut by_name = BTreeMap::new();
        for ((name, var), g) in params.iter().zip(grads) {
            if g.len() != var.elem_count() {
                return Err(ModelError::Mismatch(format!(
                    "the gradient of `{name}` has {} values, the parameter {}",
                    g.len(),
                    var.elem_count()
                )));
            }
            by_name.insert(name.to_string(), g);
        }
        Ok(Self { by_name })
    }

    /// The gradient of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// The gradient of parameter `name`, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&[f32]> {
        self.get(name)
            .ok_or_else(|| ModelError::Mismatch(format!("no gradient for parameter `{name}`")))
    }

    /// `(name, gradient)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.by_name.iter().map(|(n, g)| (n.as_str(), g.as_slice()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Adds `part / parts` to every gradient: one micro-batch's share of
    /// an accumulated step (`optim.accumulation_steps = parts`). `part`
    /// must hold the same parameters with the same sizes.
    pub fn accumulate(&mut self, part: &Gradients, parts: usize) -> Result<()> {
        if self.by_name.len() != part.by_name.len() {
            return Err(ModelError::Mismatch(format!(
                "accumulating gradients of {} parameters into {}",
                part.by_name.len(),
                self.by_name.len()
            )));
        }
        for (name, g) in &mut self.by_name {
            let p = part.require(name)?;
            if p.len() != g.len() {
                return Err(ModelError::Mismatch(format!(
                    "the gradient of `{name}` has {} values, expected {}",
                    p.len(),
                    g.len()
                )));
            }
            g.iter_mut()
                .zip(p)
                .for_each(|(a, p)| *a += p / parts as f32);
        }
        Ok(())
    }

    /// The global L2 norm over every gradient.
    pub fn global_norm(&self) -> f64 {
        self.by_name
            .values()
            .flat_map(|g| g.iter())
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt()
    }

    /// Scales every gradient so that their global L2 norm is at most
    /// `max_norm` (0 disables clipping). Returns the norm before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.global_norm();
        if max_norm > 0.0 && norm > max_norm {
            let scale = (max_norm / norm) as f32;
            self.by_name
                .values_mut()
                .flat_map(|g| g.iter_mut())
                .for_each(|x| *x *= scale);
        }
        norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_kernels::{Device, Tensor};

    fn store(sizes: &[(&str, usize)]) -> ParamStore {
        let mut p = ParamStore::new();
        for &(name, n) in sizes {
            p.insert(
                name,
                Tensor::zeros(n, gpicl_kernels::DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap();
        }
        p
    }

    #[test]
    fn clipping_rescales_to_the_threshold() {
        let p = store(&[("a", 1), ("b", 1)]);
        let mut g = Gradients::from_store_order(&p, vec![vec![3.0], vec![4.0]]).unwrap();
        assert_eq!(g.clip_global_norm(1.0), 5.0);
        let (a, b) = (g.get("a").unwrap()[0], g.get("b").unwrap()[0]);
        assert!((a - 0.6).abs() < 1e-6 && (b - 0.8).abs() < 1e-6);
        let mut h = Gradients::from_store_order(&store(&[("a", 1)]), vec![vec![3.0]]).unwrap();
        h.clip_global_norm(0.0);
        assert_eq!(h.get("a").unwrap()[0], 3.0);
    }

    #[test]
    fn gradients_are_named_in_the_store_order_and_checked_against_it() {
        let p = store(&[("b.weight", 2), ("a.bias", 1)]);
        // The store iterates in name order: `a.bias` first.
        let g = Gradients::from_store_order(&p, vec![vec![1.0], vec![2.0, 3.0]]).unwrap();
        assert_eq!(g.get("a.bias"), Some(&[1.0][..]));
        assert_eq!(g.get("b.weight"), Some(&[2.0, 3.0][..]));
        let err = Gradients::from_store_order(&p, vec![vec![1.0]]).unwrap_err();
        assert!(
            err.to_string().contains("1 gradients for 2 parameters"),
            "{err}"
        );
        let err = Gradients::from_store_order(&p, vec![vec![1.0], vec![2.0]]).unwrap_err();
        assert!(err.to_string().contains("`b.weight`"), "{err}");
    }

    #[test]
    fn accumulation_adds_each_part_divided_by_the_number_of_parts() {
        let p = store(&[("w", 2)]);
        let mut total = Gradients::zeros(&p);
        for part in [vec![1.0, 2.0], vec![3.0, -2.0]] {
            let part = Gradients::from_store_order(&p, vec![part]).unwrap();
            total.accumulate(&part, 2).unwrap();
        }
        assert_eq!(total.get("w"), Some(&[2.0, 0.0][..]));
        let other = Gradients::zeros(&store(&[("v", 2)]));
        let err = total.accumulate(&other, 2).unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
    }
}
