//! VSML (variable shared meta learning, Kirsch & Schmidhuber 2021), the
//! paper's best row of Table 2: a grid of tiny LSTMs, one per
//! (input unit, output unit) pair, all sharing one set of parameters, that
//! learn by exchanging messages instead of by gradient descent.
//!
//! One VSML layer with self-messaging, as in the authors' `VSMLLayer`
//! (`learned_optimization/research/data_driven/models.py`, whose defaults
//! are used: message size 8, LSTM hidden size 16, 2 micro-ticks). At every
//! position `t`, with `I` input features and `C` classes:
//!
//! - input unit `i` sends `[b_i, x_{t,i}]` (its last backward message and
//!   its feature), output unit `c` sends `[f_c, y_{t−1,c}]` (its last
//!   forward message and the previous label's one-hot entry);
//! - LSTM `(i, c)` reads both (`2·(msg+1)` numbers) for `micro_ticks`
//!   steps (Haiku's LSTM: gates `i, g, f, o`, forget bias +1);
//! - the new forward message of output unit `c` is the mean over `i` of a
//!   linear map of the LSTMs' outputs, the new backward message of input
//!   unit `i` the mean over `c` of another; the logit of class `c` is the
//!   first entry of `f_c`.
//!
//! The state is `I·C·2·hidden` LSTM numbers plus the messages, while the
//! parameters are a few thousand: the model whose state is large and whose
//! parameters are few, the other end of the paper's state-size finding.
//! It runs as one fused op over the whole sequence with a hand-written
//! backward pass ([`gpicl_kernels::op::vsml`], whose composed `reference`
//! is the definition it is tested against and the path on other devices).
//!
//! ```
//! use gpicl_models::{build_model, ModelConfig, ModelKind, SequenceModel};
//! let cfg = ModelConfig::of_kind(ModelKind::Vsml);
//! let model = build_model(&cfg, 49, 10, 100, 0, &gpicl_kernels::Device::Cpu, Default::default()).unwrap();
//! assert_eq!(model.param_count(), 2_512);
//! assert_eq!(model.state_size(100), 49 * 10 * 2 * 16 + (49 + 10) * 8);
//! ```

use crate::error::{at_least_one, ModelError, Result};
use crate::init::Initializer;
use crate::kind::ModelKind;
use crate::linear::Linear;
use crate::params::ParamStore;
use crate::{tokens, SequenceModel};
use gpicl_kernels::op::vsml::{vsml_layer, VsmlDims};
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{Device, KernelOptions, Tensor};

/// Options of VSML (`model.vsml_*` keys of `config.toml`, each written only
/// when it is not the authors' default).
#[derive(Clone, Debug, PartialEq)]
pub struct VsmlConfig {
    /// Size of the messages between its LSTMs (`model.vsml_msg_size`).
    /// Default 8 (the authors').
    pub msg_size: usize,
    /// Hidden size of each of its LSTMs (`model.vsml_hidden`). Default 16.
    pub hidden: usize,
    /// LSTM steps per position (`model.vsml_micro_ticks`). Default 2.
    pub micro_ticks: usize,
}

impl Default for VsmlConfig {
    fn default() -> Self {
        Self {
            msg_size: 8,
            hidden: 16,
            micro_ticks: 2,
        }
    }
}

impl VsmlConfig {
    /// Checks that every option is usable.
    pub fn validate(&self) -> Result<()> {
        at_least_one("vsml_msg_size", self.msg_size)?;
        at_least_one("vsml_hidden", self.hidden)?;
        at_least_one("vsml_micro_ticks", self.micro_ticks)
    }
}

/// One self-messaging VSML layer from the input features to the classes.
pub struct Vsml {
    params: ParamStore,
    /// The shared LSTM: `[inputs(2·(msg+1)), h(hidden)] → 4·hidden`.
    cell: Linear,
    /// LSTM output → forward message (towards the classes).
    forward_messenger: Linear,
    /// LSTM output → backward message (towards the inputs).
    backward_messenger: Linear,
    features: usize,
    classes: usize,
    msg: usize,
    hidden: usize,
    micro_ticks: usize,
    options: KernelOptions,
}

impl Vsml {
    /// Builds the layer for examples of `features` features and `classes`
    /// label values.
    pub fn new(
        cfg: &VsmlConfig,
        features: usize,
        classes: usize,
        seed: u64,
        device: &Device,
        options: KernelOptions,
    ) -> Result<Self> {
        cfg.validate()?;
        if features == 0 || classes == 0 {
            return Err(ModelError::Config {
                option: "kind",
                reason: format!(
                    "vsml needs features and classes, got {features} features and {classes} classes"
                ),
            });
        }
        let mut init = Initializer::new(Rng::from_stream(seed, &[stream::INIT]), device);
        let mut params = ParamStore::new();
        let (msg, hidden) = (cfg.msg_size, cfg.hidden);
        let lstm_in = 2 * (msg + 1);
        Ok(Self {
            cell: Linear::init(
                &mut params,
                &mut init,
                "vsml.lstm",
                lstm_in + hidden,
                4 * hidden,
            )?,
            forward_messenger: Linear::init(
                &mut params,
                &mut init,
                "vsml.forward_messenger",
                hidden,
                msg,
            )?,
            backward_messenger: Linear::init(
                &mut params,
                &mut init,
                "vsml.backward_messenger",
                hidden,
                msg,
            )?,
            params,
            features,
            classes,
            msg,
            hidden,
            micro_ticks: cfg.micro_ticks,
            options,
        })
    }

    /// The sizes the fused op takes.
    fn dims(&self) -> VsmlDims {
        VsmlDims {
            inputs: self.features,
            classes: self.classes,
            msg: self.msg,
            hidden: self.hidden,
            micro_ticks: self.micro_ticks,
        }
    }

    /// The parameters packed as [`vsml_layer`] takes them (the gate
    /// projection's rows are already in its order).
    fn packed_params(&self) -> Result<Tensor> {
        let parts = [
            self.cell.weight.flatten_all()?,
            self.cell.bias.clone(),
            self.forward_messenger.weight.flatten_all()?,
            self.forward_messenger.bias.clone(),
            self.backward_messenger.weight.flatten_all()?,
            self.backward_messenger.bias.clone(),
        ];
        Ok(Tensor::cat(&parts, 0)?)
    }
}

impl SequenceModel for Vsml {
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let tokens =
            tokens::build_checked(inputs, labels, self.features, self.classes, usize::MAX)?;
        Ok(vsml_layer(
            &tokens,
            &self.packed_params()?,
            self.dims(),
            self.options,
        )?)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Every LSTM's hidden state and cell, and the messages of every unit.
    fn state_size(&self, _seq_len: usize) -> usize {
        self.features * self.classes * 2 * self.hidden + (self.features + self.classes) * self.msg
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Vsml
    }

    fn features(&self) -> usize {
        self.features
    }

    fn classes(&self) -> usize {
        self.classes
    }

    /// Every LSTM runs its gates `micro_ticks` times per position, and
    /// each message map runs once per LSTM.
    fn forward_flops(&self, batch: usize, seq_len: usize) -> f64 {
        let cells = (self.features * self.classes) as f64;
        let lstm = (2 * (self.msg + 1) + self.hidden) * 4 * self.hidden;
        let messages = 2 * self.hidden * self.msg;
        2.0 * (batch * seq_len) as f64 * cells * (self.micro_ticks * lstm + messages) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn small() -> Vsml {
        let cfg = VsmlConfig {
            msg_size: 2,
            hidden: 3,
            ..VsmlConfig::default()
        };
        Vsml::new(&cfg, 2, 3, 1, &Device::Cpu, KernelOptions::default()).unwrap()
    }

    /// The layer written out with loops over single cells, for parity.
    fn by_hand(model: &Vsml, tokens: &Tensor) -> Vec<f32> {
        let (b, t, n) = tokens.dims3().unwrap();
        let x: Vec<f32> = tokens.flatten_all().unwrap().to_vec1().unwrap();
        let w = |l: &Linear| -> (Vec<f32>, Vec<f32>, usize) {
            (
                l.weight.flatten_all().unwrap().to_vec1().unwrap(),
                l.bias.to_vec1().unwrap(),
                l.weight.dim(1).unwrap(),
            )
        };
        let apply = |(wt, bias, out): &(Vec<f32>, Vec<f32>, usize), v: &[f32]| -> Vec<f32> {
            (0..*out)
                .map(|o| {
                    bias[o]
                        + v.iter()
                            .enumerate()
                            .map(|(k, a)| a * wt[k * out + o])
                            .sum::<f32>()
                })
                .collect()
        };
        let (cell, fwd, bwd) = (
            w(&model.cell),
            w(&model.forward_messenger),
            w(&model.backward_messenger),
        );
        let (i_n, c_n, m, hn) = (model.features, model.classes, model.msg, model.hidden);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        let mut out = Vec::new();
        for s in 0..b {
            let mut h = vec![vec![0f32; hn]; i_n * c_n];
            let mut c = h.clone();
            let mut to_classes = vec![vec![0f32; m]; c_n];
            let mut to_inputs = vec![vec![0f32; m]; i_n];
            for step in 0..t {
                let token = &x[(s * t + step) * n..(s * t + step + 1) * n];
                for _ in 0..model.micro_ticks {
                    for i in 0..i_n {
                        for k in 0..c_n {
                            let cell_at = i * c_n + k;
                            let mut input: Vec<f32> = to_inputs[i].clone();
                            input.push(token[i]);
                            input.extend(&to_classes[k]);
                            input.push(token[i_n + k]);
                            input.extend(&h[cell_at]);
                            let gates = apply(&cell, &input);
                            for u in 0..hn {
                                let (ig, gg, fg, og) = (
                                    gates[u],
                                    gates[hn + u],
                                    gates[2 * hn + u],
                                    gates[3 * hn + u],
                                );
                                c[cell_at][u] = sig(fg + 1.0) * c[cell_at][u] + sig(ig) * gg.tanh();
                                h[cell_at][u] = sig(og) * c[cell_at][u].tanh();
                            }
                        }
                    }
                }
                for k in 0..c_n {
                    let mut mean = vec![0f32; m];
                    for i in 0..i_n {
                        let v = apply(&fwd, &h[i * c_n + k]);
                        mean.iter_mut()
                            .zip(&v)
                            .for_each(|(a, v)| *a += v / i_n as f32);
                    }
                    to_classes[k] = mean;
                }
                for i in 0..i_n {
                    let mut mean = vec![0f32; m];
                    for k in 0..c_n {
                        let v = apply(&bwd, &h[i * c_n + k]);
                        mean.iter_mut()
                            .zip(&v)
                            .for_each(|(a, v)| *a += v / c_n as f32);
                    }
                    to_inputs[i] = mean;
                }
                out.extend(to_classes.iter().map(|f| f[0]));
            }
        }
        out
    }

    #[test]
    fn the_grid_of_shared_lstms_matches_the_layer_written_out_cell_by_cell() {
        let model = small();
        let (inputs, labels) = testing::examples(2, 4, 2, 3);
        let tokens = tokens::build(&inputs, &labels, 3).unwrap();
        let logits: Vec<f32> = model
            .forward(&inputs, &labels)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let expected = by_hand(&model, &tokens);
        assert_eq!(logits.len(), expected.len());
        for (a, b) in logits.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(logits.iter().any(|v| v.abs() > 1e-4), "not all zero");
    }

    #[test]
    fn the_defaults_have_the_authors_sizes() {
        let cfg = VsmlConfig::default();
        let model = Vsml::new(&cfg, 196, 10, 0, &Device::Cpu, KernelOptions::default()).unwrap();
        // LSTM (18 + 16) × 64 + 64, two messengers 16 × 8 + 8.
        assert_eq!(model.param_count(), 34 * 64 + 64 + 2 * (16 * 8 + 8));
        assert_eq!(model.state_size(100), 196 * 10 * 32 + 206 * 8);
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
    fn the_gradient_matches_finite_differences() {
        testing::assert_gradient_matches_finite_differences(&small());
    }
}
