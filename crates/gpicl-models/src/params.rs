//! Named, trainable parameters in a deterministic order.

use crate::error::{ModelError, Result};
use gpicl_kernels::{Tensor, Var};
use std::collections::BTreeMap;

/// A model's parameters, keyed by dotted names (`layers.0.attn.q.weight`).
///
/// Iteration is always in name order (a `BTreeMap`), unlike candle's
/// `VarMap`, so gradients, optimiser state and checkpoints line up across
/// runs and machines.
#[derive(Default)]
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter initialised to `value`. Names must be unique.
    pub fn insert(&mut self, name: impl Into<String>, value: Tensor) -> Result<Tensor> {
        let name = name.into();
        if self.vars.contains_key(&name) {
            return Err(ModelError::Parameter {
                name,
                reason: "defined twice".into(),
            });
        }
        let var = Var::from_tensor(&value)?;
        let tensor = var.as_tensor().clone();
        self.vars.insert(name, var);
        Ok(tensor)
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor())
            .ok_or_else(|| ModelError::Parameter {
                name: name.to_string(),
                reason: "no such parameter".into(),
            })
    }

    /// Parameters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of named tensors.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Number of scalar parameters.
    pub fn count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Scalar parameters per top-level module (the name up to the first
    /// dot, or up to the second for `layers.N`).
    pub fn count_by_module(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (name, var) in &self.vars {
            let mut parts = name.split('.');
            let first = parts.next().unwrap_or_default();
            let module = if first == "layers" {
                format!("{first}.{}", parts.next().unwrap_or_default())
            } else {
                first.to_string()
            };
            *out.entry(module).or_insert(0) += var.elem_count();
        }
        out
    }

    /// Overwrites every parameter with the tensor of the same name, checking
    /// that names and shapes match exactly.
    pub fn load(&self, values: &BTreeMap<String, Tensor>) -> Result<()> {
        for name in values.keys() {
            if !self.vars.contains_key(name) {
                return Err(ModelError::Parameter {
                    name: name.clone(),
                    reason: "is in the checkpoint but not in the model".into(),
                });
            }
        }
        for (name, var) in &self.vars {
            let value = values.get(name).ok_or_else(|| ModelError::Parameter {
                name: name.clone(),
                reason: "is missing from the checkpoint".into(),
            })?;
            if value.dims() != var.dims() {
                return Err(ModelError::Parameter {
                    name: name.clone(),
                    reason: format!(
                        "shape {:?} in checkpoint, {:?} in model",
                        value.dims(),
                        var.dims()
                    ),
                });
            }
            var.set(&value.to_device(var.device())?.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }
}
