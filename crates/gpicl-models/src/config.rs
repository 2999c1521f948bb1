//! Model hyperparameters.

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// Which architecture to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// GPT-2 style pre-LayerNorm decoder-only Transformer.
    Transformer,
    /// 2-layer ReLU encoder, one LSTM layer, linear read-out.
    Lstm,
    /// LSTM with an `H × H` matrix cell per head, written by outer products.
    OuterLstm,
    /// Context-free MLP on `x_t` alone (can only memorise).
    Mlp,
    /// An online-Adam MLP learner whose initial weights are meta-learned.
    /// (The same learner from fresh random weights per sequence is the SGD
    /// baseline, a learner of `gpicl-eval`'s run config, not a model.)
    Maml,
    /// VSML: a grid of small LSTMs with shared parameters, one per (input,
    /// class) pair, exchanging messages (`crate::vsml`).
    Vsml,
}

impl ModelKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [ModelKind; 6] = [
        ModelKind::Transformer,
        ModelKind::Lstm,
        ModelKind::OuterLstm,
        ModelKind::Mlp,
        ModelKind::Maml,
        ModelKind::Vsml,
    ];

    /// Parses a CLI name (`transformer`, `lstm`, `outer-lstm`, `mlp`, `maml`, `vsml`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.to_string() == name)
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Transformer => "transformer",
            ModelKind::Lstm => "lstm",
            ModelKind::OuterLstm => "outer-lstm",
            ModelKind::Mlp => "mlp",
            ModelKind::Maml => "maml",
            ModelKind::Vsml => "vsml",
        })
    }
}

/// How a Transformer knows where each token is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positions {
    /// A learned embedding per position added to the input layer's output
    /// (the paper's model).
    #[default]
    Learned,
    /// Rotary positions: every head's queries and keys rotated by their
    /// position (RoFormer), so scores depend on distances; no positional
    /// embedding parameters.
    Rotary,
}

impl Positions {
    /// Whether this is the paper's default (kept out of written configs).
    pub fn is_learned(&self) -> bool {
        *self == Positions::Learned
    }
}

/// Hyperparameters of a sequence model. Defaults are the paper's reference
/// Transformer (`gpicl-method.md` §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Architecture. Default `transformer`.
    pub kind: ModelKind,
    /// Width of the residual stream. Default 512; the paper sweeps 2…512.
    pub d_model: usize,
    /// Number of Transformer blocks. Default 4.
    pub num_layers: usize,
    /// Attention heads per block. Default 8.
    pub num_heads: usize,
    /// Size of each head's query/key/value, independent of `d_model`. Default 32.
    pub key_size: usize,
    /// MLP hidden width as a multiple of `d_model`. Default 4.
    pub widening_factor: usize,
    /// LayerNorm epsilon. Default 1e-5.
    pub layer_norm_eps: f64,
    /// Std of the truncated-normal positional embedding init. Default 0.1.
    pub pos_init_std: f64,
    /// GELU variant: `true` for the tanh approximation (the paper's
    /// default), `false` for exact erf (the PyTorch reference step).
    pub gelu_tanh: bool,
    /// Width of the LSTM and the MLP, and the per-head size `H` of the
    /// outer-product LSTM. Default 256.
    pub hidden: usize,
    /// Heads `n` of the outer-product LSTM. Default 1.
    pub outer_heads: usize,
    /// Transformer only: the input layer also reads the previous token,
    /// `h_t = Linear([token_t, token_{t−1}]) + pos_t` (zeros before the
    /// first token). Each position then holds a whole example `(x_{t−1},
    /// y_{t−1})`, so one attention layer can look up the labels of
    /// similar inputs without first learning a previous-token head. Ours,
    /// not the paper's: with it the small model left the loss plateau
    /// after 715–2,613 steps in our runs (`docs/experiments/recipe-cpu`);
    /// without it the plain model stayed there in every run (up to 15,000
    /// steps) unless its training data held echo sequences
    /// (`data.echo_fraction`; `docs/experiments/plain-model-cpu`). Still causal, still a black
    /// box over the same tokens. Default `false` (the paper's model).
    pub previous_token_input: bool,
    /// Transformer only: a LayerNorm (with its own gain and bias) on the
    /// input layer's output, before the positional embedding is added:
    /// `h_0 = LN(Linear(token_t)) + pos_t`. A plateau lever of the
    /// community replications (`docs/experiments/plain-model-cpu`).
    /// Default `false` (the paper's model); not written to `config.toml`
    /// when off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub input_layer_norm: bool,
    /// Transformer only: `learned` positional embeddings (default, the
    /// paper's model) or `rotary` positions (queries and keys rotated by
    /// position; needs an even `key_size`). A plateau lever
    /// (`docs/experiments/plain-model-cpu`); not written to `config.toml`
    /// when `learned`.
    #[serde(skip_serializing_if = "Positions::is_learned")]
    pub positions: Positions,
    /// Hidden units of the MAML online learner (and of the SGD baseline of
    /// `gpicl-eval`). Default 128.
    pub learner_hidden: usize,
    /// Inner Adam learning rate of the MAML online learner (and of the SGD
    /// baseline).
    /// Default 1e-3.
    pub learner_lr: f64,
    /// VSML: size of the messages between its LSTMs. Default 8 (the
    /// authors'); not written to `config.toml` when 8.
    #[serde(skip_serializing_if = "is_default_vsml_msg_size")]
    pub vsml_msg_size: usize,
    /// VSML: hidden size of each of its LSTMs. Default 16; not written
    /// when 16.
    #[serde(skip_serializing_if = "is_default_vsml_hidden")]
    pub vsml_hidden: usize,
    /// VSML: LSTM steps per position. Default 2; not written when 2.
    #[serde(skip_serializing_if = "is_default_vsml_micro_ticks")]
    pub vsml_micro_ticks: usize,
}

fn is_default_vsml_msg_size(v: &usize) -> bool {
    *v == 8
}

fn is_default_vsml_hidden(v: &usize) -> bool {
    *v == 16
}

fn is_default_vsml_micro_ticks(v: &usize) -> bool {
    *v == 2
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Transformer,
            d_model: 512,
            num_layers: 4,
            num_heads: 8,
            key_size: 32,
            widening_factor: 4,
            layer_norm_eps: 1e-5,
            pos_init_std: 0.1,
            gelu_tanh: true,
            hidden: 256,
            outer_heads: 1,
            previous_token_input: false,
            input_layer_norm: false,
            positions: Positions::Learned,
            learner_hidden: 128,
            learner_lr: 1e-3,
            vsml_msg_size: 8,
            vsml_hidden: 16,
            vsml_micro_ticks: 2,
        }
    }
}

impl ModelConfig {
    /// Checks that every option is usable; called once at construction.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("d_model", self.d_model),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("key_size", self.key_size),
            ("widening_factor", self.widening_factor),
            ("hidden", self.hidden),
            ("outer_heads", self.outer_heads),
            ("learner_hidden", self.learner_hidden),
            ("vsml_msg_size", self.vsml_msg_size),
            ("vsml_hidden", self.vsml_hidden),
            ("vsml_micro_ticks", self.vsml_micro_ticks),
        ];
        for (option, value) in positive {
            if value == 0 {
                return Err(ModelError::Config {
                    option,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(ModelError::Config {
                option: "layer_norm_eps",
                reason: format!("must be a positive number, got {}", self.layer_norm_eps),
            });
        }
        if !(self.learner_lr > 0.0 && self.learner_lr.is_finite()) {
            return Err(ModelError::Config {
                option: "learner_lr",
                reason: format!("must be a positive number, got {}", self.learner_lr),
            });
        }
        if self.previous_token_input && self.kind != ModelKind::Transformer {
            return Err(ModelError::Config {
                option: "previous_token_input",
                reason: format!(
                    "is a Transformer option; model.kind is `{}` (set model.previous_token_input = false)",
                    self.kind
                ),
            });
        }
        if self.input_layer_norm && self.kind != ModelKind::Transformer {
            return Err(ModelError::Config {
                option: "input_layer_norm",
                reason: format!(
                    "is a Transformer option; model.kind is `{}` (set model.input_layer_norm = false)",
                    self.kind
                ),
            });
        }
        if self.positions == Positions::Rotary {
            if self.kind != ModelKind::Transformer {
                return Err(ModelError::Config {
                    option: "positions",
                    reason: format!(
                        "\"rotary\" is a Transformer option; model.kind is `{}` (set model.positions = \"learned\")",
                        self.kind
                    ),
                });
            }
            if !self.key_size.is_multiple_of(2) {
                return Err(ModelError::Config {
                    option: "positions",
                    reason: format!(
                        "\"rotary\" rotates pairs of query/key features: key_size must be even, got {}",
                        self.key_size
                    ),
                });
            }
        }
        if !(self.pos_init_std >= 0.0 && self.pos_init_std.is_finite()) {
            return Err(ModelError::Config {
                option: "pos_init_std",
                reason: format!("must be non-negative, got {}", self.pos_init_std),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_kind_is_listed_in_all_and_parses_from_its_own_name() {
        // The match is exhaustive: a new kind does not compile here until
        // it has a place, and the test fails until ALL holds it there, so
        // `--model NAME` can never quietly refuse a kind that exists.
        let place = |kind: ModelKind| match kind {
            ModelKind::Transformer => 0,
            ModelKind::Lstm => 1,
            ModelKind::OuterLstm => 2,
            ModelKind::Mlp => 3,
            ModelKind::Maml => 4,
            ModelKind::Vsml => 5,
        };
        for (i, kind) in ModelKind::ALL.into_iter().enumerate() {
            assert_eq!(place(kind), i, "{kind} is out of place in ALL");
            assert_eq!(ModelKind::parse(&kind.to_string()), Some(kind));
        }
        let highest = [
            ModelKind::Transformer,
            ModelKind::Lstm,
            ModelKind::OuterLstm,
            ModelKind::Mlp,
            ModelKind::Maml,
            ModelKind::Vsml,
        ]
        .map(place)
        .into_iter()
        .max()
        .unwrap_or(0);
        assert_eq!(ModelKind::ALL.len(), highest + 1, "every place is filled");
    }
}
