//! The Transformer's options: the `model.*` keys it reads.

use crate::error::{at_least_one, ModelError, Result};
use serde::{Deserialize, Serialize};

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

/// Options of the Transformer. Defaults are the paper's reference
/// Transformer (`gpicl-method.md` §5); each field is the `model.*` key of
/// the same name in `config.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerConfig {
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
    /// The input layer also reads the previous token,
    /// `h_t = Linear([token_t, token_{t−1}]) + pos_t` (zeros before the
    /// first token). Each position then holds a whole example `(x_{t−1},
    /// y_{t−1})`, so one attention layer can look up the labels of
    /// similar inputs without first learning a previous-token head. Ours,
    /// not the paper's: with it the small model left the loss plateau
    /// after 715–2,613 steps in our runs (`docs/experiments/recipe-cpu`);
    /// without it the plain model stayed there in every run (up to 15,000
    /// steps) unless its training data held echo sequences
    /// (`data.echo_fraction`; `docs/experiments/plain-model-cpu`). Still
    /// causal, still a black box over the same tokens. Default `false`
    /// (the paper's model).
    pub previous_token_input: bool,
    /// A LayerNorm (with its own gain and bias) on the input layer's
    /// output, before the positional embedding is added:
    /// `h_0 = LN(Linear(token_t)) + pos_t`. A plateau lever of the
    /// community replications (`docs/experiments/plain-model-cpu`).
    /// Default `false` (the paper's model); not written to `config.toml`
    /// when off.
    pub input_layer_norm: bool,
    /// `learned` positional embeddings (default, the paper's model) or
    /// `rotary` positions (queries and keys rotated by position; needs an
    /// even `key_size`). A plateau lever
    /// (`docs/experiments/plain-model-cpu`); not written to `config.toml`
    /// when `learned`.
    pub positions: Positions,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            d_model: 512,
            num_layers: 4,
            num_heads: 8,
            key_size: 32,
            widening_factor: 4,
            layer_norm_eps: 1e-5,
            pos_init_std: 0.1,
            gelu_tanh: true,
            previous_token_input: false,
            input_layer_norm: false,
            positions: Positions::Learned,
        }
    }
}

impl TransformerConfig {
    /// Checks that every option is usable.
    pub fn validate(&self) -> Result<()> {
        for (option, value) in [
            ("d_model", self.d_model),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("key_size", self.key_size),
            ("widening_factor", self.widening_factor),
        ] {
            at_least_one(option, value)?;
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(ModelError::Config {
                option: "layer_norm_eps",
                reason: format!("must be a positive number, got {}", self.layer_norm_eps),
            });
        }
        if self.positions == Positions::Rotary && !self.key_size.is_multiple_of(2) {
            return Err(ModelError::Config {
                option: "positions",
                reason: format!(
                    "\"rotary\" rotates pairs of query/key features: key_size must be even, got {}",
                    self.key_size
                ),
            });
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
