//! What an optimiser is to the rest of the crate: gradients keyed by
//! parameter name (`Gradients`, computed by the models and re-exported
//! here), an update, and a state to save and restore. The
//! trainer accumulates and clips [`Gradients`]; checkpoints store an
//! [`OptimizerState`] (named tensors and an update count) without knowing
//! which optimiser wrote it. [`adam::Adam`] is the one optimiser.

pub mod adam;

use crate::config::OptimConfig;
use crate::error::Result;
pub use gpicl_models::Gradients;
use gpicl_models::ParamStore;
use std::collections::BTreeMap;

/// One named tensor of an optimiser's state.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor {
    /// Its shape (that of the parameter it belongs to, for per-parameter
    /// state such as moments).
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// Everything an optimiser needs to continue where it stopped: named
/// tensors (the optimiser chooses the names; they must not start with
/// `param/`, the checkpoint's prefix for weights) and its update count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// Updates applied so far.
    pub step: u64,
    /// The state tensors by name.
    pub tensors: BTreeMap<String, StateTensor>,
}

/// An optimiser over a [`ParamStore`] whose state can be saved and
/// restored.
pub trait Optimizer {
    /// Updates applied so far.
    fn step(&self) -> u64;

    /// Applies one update with `grads` at learning rate `lr`, changing the
    /// parameters in place. `grads` must hold every parameter of `params`.
    fn update(&mut self, params: &ParamStore, grads: &Gradients, lr: f64) -> Result<()>;

    /// A copy of the state, to checkpoint.
    fn state(&self) -> OptimizerState;

    /// Replaces the state with one saved by [`Optimizer::state`] of the
    /// same optimiser over the same parameters; a state that does not fit
    /// (a missing tensor or one of the wrong size) is a
    /// [`MetaError::Mismatch`](crate::MetaError::Mismatch) and leaves the optimiser as it was.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;
}

/// The optimiser `cfg` describes, with zero state for `params`.
pub fn build_optimizer(cfg: &OptimConfig, params: &ParamStore) -> Box<dyn Optimizer> {
    Box::new(adam::Adam::new(cfg.clone(), params))
}
