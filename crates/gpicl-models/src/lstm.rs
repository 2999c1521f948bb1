//! The LSTM of `gpicl-method.md` §5: a 2-layer ReLU encoder, one LSTM
//! layer with forget-gate bias +1, and a linear read-out.

use crate::error::{at_least_one, Result};
use crate::init::Initializer;
use crate::kind::ModelKind;
use crate::linear::Linear;
use crate::params::ParamStore;
use crate::{tokens, SequenceModel};
use gpicl_kernels::op::lstm::lstm_recurrence;
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{Device, KernelOptions, Tensor};

/// Options of the LSTM (`model.*` keys of `config.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct LstmConfig {
    /// Units of the encoder layers and the LSTM (`model.hidden`). Default 256.
    pub hidden: usize,
}

impl Default for LstmConfig {
    fn default() -> Self {
        Self { hidden: 256 }
    }
}

impl LstmConfig {
    /// Checks that every option is usable.
    pub fn validate(&self) -> Result<()> {
        at_least_one("hidden", self.hidden)
    }
}

/// `token → Linear(h) → ReLU → Linear(h) → ReLU → LSTM(h) → Linear(classes)`.
///
/// The LSTM's one `Linear(4h)` reads `[input, h_prev]`; its input half is
/// applied to all positions in one matrix product before the recurrence, so
/// each step only adds `h_prev · W_h`. Gate order `i, g, f, o` (Haiku's).
pub struct Lstm {
    params: ParamStore,
    enc1: Linear,
    enc2: Linear,
    cell: Linear,
    head: Linear,
    hidden: usize,
    features: usize,
    classes: usize,
    options: KernelOptions,
}

impl Lstm {
    /// Builds the LSTM with `cfg.hidden` units for examples of `features`
    /// features, running its ops with `options`.
    pub fn new(
        cfg: &LstmConfig,
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
        let width = tokens::width(features, classes);
        Ok(Self {
            enc1: Linear::init(&mut params, &mut init, "encoder.fc1", width, h)?,
            enc2: Linear::init(&mut params, &mut init, "encoder.fc2", h, h)?,
            cell: Linear::init(&mut params, &mut init, "lstm.gates", 2 * h, 4 * h)?,
            head: Linear::init(&mut params, &mut init, "head", h, classes)?,
            params,
            hidden: h,
            features,
            classes,
            options,
        })
    }
}

impl SequenceModel for Lstm {
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let tokens =
            tokens::build_checked(inputs, labels, self.features, self.classes, usize::MAX)?;
        let h = self.hidden;
        let o = self.options;
        let u = self
            .enc2
            .forward_relu(&self.enc1.forward_relu(&tokens, o)?, o)?;
        let w_in = self.cell.weight.narrow(0, 0, h)?;
        let w_rec = self.cell.weight.narrow(0, h, h)?;
        let input_half = Linear {
            weight: w_in,
            bias: self.cell.bias.clone(),
        };
        let from_input = input_half.forward(&u, o)?;
        let hidden = lstm_recurrence(&from_input, &w_rec, o)?;
        self.head.forward(&hidden, o)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn kernel_options(&self) -> KernelOptions {
        self.options
    }

    /// `h` for the hidden state plus `h` for the cell.
    fn state_size(&self, _seq_len: usize) -> usize {
        2 * self.hidden
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Lstm
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

    fn small() -> Lstm {
        let cfg = LstmConfig { hidden: 4 };
        Lstm::new(&cfg, 2, 3, 1, &Device::Cpu, KernelOptions::default()).unwrap()
    }

    #[test]
    fn parameter_counts_equal_the_papers_reference_values() {
        for (h, expected) in [(64, 51_082), (256, 646_666)] {
            let cfg = LstmConfig { hidden: h };
            assert_eq!(
                Lstm::new(&cfg, 196, 10, 0, &Device::Cpu, KernelOptions::default())
                    .unwrap()
                    .param_count(),
                expected,
                "h {h}"
            );
        }
    }

    #[test]
    fn state_size_is_hidden_plus_cell() {
        assert_eq!(small().state_size(100), 8);
    }

    #[test]
    fn predictions_never_depend_on_later_inputs() {
        testing::assert_causal(&small());
    }

    #[test]
    fn every_parameter_receives_a_nonzero_gradient() {
        testing::assert_every_parameter_gets_a_gradient(&small());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        testing::assert_gradient_matches_finite_differences(&small());
    }
}
