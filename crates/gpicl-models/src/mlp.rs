//! The context-free MLP: it sees `x_t` alone and can only memorise.

use crate::error::{at_least_one, Result};
use crate::init::Initializer;
use crate::kind::ModelKind;
use crate::linear::Linear;
use crate::params::ParamStore;
use crate::{tokens, SequenceModel};
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{Device, KernelOptions, Tensor};

/// Options of the MLP (`model.*` keys of `config.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    /// Units per hidden layer (`model.hidden`). Default 256.
    pub hidden: usize,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self { hidden: 256 }
    }
}

impl MlpConfig {
    /// Checks that every option is usable.
    pub fn validate(&self) -> Result<()> {
        at_least_one("hidden", self.hidden)
    }
}

/// `x_t → Linear(h) → ReLU → Linear(h) → ReLU → Linear(classes)`, applied
/// to every position independently (the labels are ignored).
pub struct Mlp {
    params: ParamStore,
    layers: [Linear; 3],
    features: usize,
    classes: usize,
    options: KernelOptions,
}

impl Mlp {
    /// Builds the MLP with `cfg.hidden` units per hidden layer for examples
    /// of `features` features, running its ops with `options`.
    pub fn new(
        cfg: &MlpConfig,
        features: usize,
        classes: usize,
        seed: u64,
        device: &Device,
        options: KernelOptions,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut init = Initializer::new(Rng::from_stream(seed, &[stream::INIT]), device);
        let mut params = ParamStore::new();
        let h = cfg.hidden;
        let layers = [
            Linear::init(&mut params, &mut init, "fc1", features, h)?,
            Linear::init(&mut params, &mut init, "fc2", h, h)?,
            Linear::init(&mut params, &mut init, "head", h, classes)?,
        ];
        Ok(Self {
            params,
            layers,
            features,
            classes,
            options,
        })
    }
}

impl SequenceModel for Mlp {
    /// Reads the features alone: the labels before a position are no token
    /// of its.
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> Result<Tensor> {
        tokens::check_examples(inputs, labels, self.features, self.classes, usize::MAX)?;
        let o = self.options;
        let h = self.layers[0].forward_relu(inputs, o)?;
        let h = self.layers[1].forward_relu(&h, o)?;
        self.layers[2].forward(&h, o)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn kernel_options(&self) -> KernelOptions {
        self.options
    }

    fn state_size(&self, _seq_len: usize) -> usize {
        0
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Mlp
    }

    fn features(&self) -> usize {
        self.features
    }

    fn classes(&self) -> usize {
        self.classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn small() -> Mlp {
        let cfg = MlpConfig { hidden: 4 };
        Mlp::new(&cfg, 3, 3, 1, &Device::Cpu, KernelOptions::default()).unwrap()
    }

    #[test]
    fn parameter_count_follows_the_layer_sizes() {
        let cfg = MlpConfig { hidden: 64 };
        let m = Mlp::new(&cfg, 196, 10, 0, &Device::Cpu, KernelOptions::default()).unwrap();
        assert_eq!(m.param_count(), 196 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10);
        assert_eq!(m.state_size(100), 0);
    }

    #[test]
    fn predictions_ignore_the_context_entirely() {
        let m = small();
        let (x, y) = testing::examples(1, 4, 3, 1);
        let out: Vec<Vec<f32>> = m
            .forward(&x, &y)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        // Position 2 follows the labels of positions 0 and 1, yet its
        // prediction equals the prediction for x_2 with no context at all.
        let alone: Vec<f32> = m
            .forward(&x.narrow(1, 2, 1).unwrap(), &y.narrow(1, 2, 1).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(out[2], alone);
    }

    #[test]
    fn every_parameter_receives_a_nonzero_gradient() {
        testing::assert_every_parameter_gets_a_gradient(&small());
        testing::assert_causal(&small());
    }
}
