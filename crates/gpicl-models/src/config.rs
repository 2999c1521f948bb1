//! What `[model]` of `config.toml` holds: the kind of model and each
//! model's options in its own type ([`TransformerConfig`], [`LstmConfig`],
//! [`OuterLstmConfig`], [`MlpConfig`], [`OnlineLearnerConfig`],
//! [`VsmlConfig`], each defined beside its model).
//!
//! The file keeps the one flat table of every earlier run (`d_model`,
//! `hidden`, `learner_lr`, … side by side, whatever the kind), so every
//! run, sweep file and shipped learner reads and is written back byte for
//! byte: `ModelTable` (private) is that layout, and the only place that knows which
//! key belongs to which model. A sweep that switches `model.kind` on top of
//! a Transformer config keeps working: the options of the other models are
//! carried along unused.

use crate::error::{ModelError, Result};
use crate::kind::ModelKind;
use crate::lstm::LstmConfig;
use crate::mlp::MlpConfig;
use crate::online::OnlineLearnerConfig;
use crate::outer_lstm::OuterLstmConfig;
use crate::transformer::{Positions, TransformerConfig};
use crate::vsml::VsmlConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The model a run builds: its kind, and the options of every model (only
/// the kind's are read; the others are kept so that a config round-trips).
/// Defaults: the paper's reference Transformer (`gpicl-method.md` §5).
/// Two configs are equal when they write the same `[model]` table: the
/// widths that share the file's `hidden` key compare as the file holds
/// them (the kind's own).
///
/// ```
/// use gpicl_models::{ModelConfig, ModelKind};
/// let cfg: ModelConfig = toml::from_str("kind = \"lstm\"\nhidden = 64\n").unwrap();
/// assert_eq!((cfg.kind, cfg.lstm.hidden), (ModelKind::Lstm, 64));
/// assert_eq!(cfg.transformer.d_model, 512); // carried, unused
/// ```
#[derive(Clone, Debug, Default)]
pub struct ModelConfig {
    /// Architecture (`model.kind`). Default `transformer`.
    pub kind: ModelKind,
    /// The Transformer's options.
    pub transformer: TransformerConfig,
    /// The LSTM's options.
    pub lstm: LstmConfig,
    /// The outer-product LSTM's options.
    pub outer_lstm: OuterLstmConfig,
    /// The context-free MLP's options.
    pub mlp: MlpConfig,
    /// The online learner's options (MAML, and the SGD baseline of
    /// `gpicl-run`).
    pub online: OnlineLearnerConfig,
    /// VSML's options.
    pub vsml: VsmlConfig,
}

impl ModelConfig {
    /// The Transformer with `transformer`'s options, every other model's
    /// at their defaults.
    pub fn transformer(transformer: TransformerConfig) -> Self {
        Self {
            kind: ModelKind::Transformer,
            transformer,
            ..Self::default()
        }
    }

    /// A model of `kind` with every option at its default.
    pub fn of_kind(kind: ModelKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// Sets `model.hidden`, the one file key that the LSTM's width, the
    /// MLP's width and the outer-product LSTM's head size share.
    pub fn set_hidden(&mut self, hidden: usize) {
        self.lstm.hidden = hidden;
        self.mlp.hidden = hidden;
        self.outer_lstm.head_size = hidden;
    }

    /// `model.hidden` as the file holds it: the width of the kind that
    /// reads it (the LSTM's for kinds that do not).
    pub fn hidden(&self) -> usize {
        match self.kind {
            ModelKind::Mlp => self.mlp.hidden,
            ModelKind::OuterLstm => self.outer_lstm.head_size,
            _ => self.lstm.hidden,
        }
    }

    /// Checks that every option is usable (those of other kinds too, so a
    /// sweep that switches the kind cannot carry a broken value), and that
    /// no option only a Transformer reads is switched on for another kind;
    /// called once at construction.
    pub fn validate(&self) -> Result<()> {
        let not_transformer = self.kind != ModelKind::Transformer;
        let t = &self.transformer;
        let switched_on = [
            (
                t.previous_token_input,
                "previous_token_input",
                "is a Transformer option",
                "false",
            ),
            (
                t.input_layer_norm,
                "input_layer_norm",
                "is a Transformer option",
                "false",
            ),
            (
                t.positions == Positions::Rotary,
                "positions",
                "\"rotary\" is a Transformer option",
                "\"learned\"",
            ),
        ];
        for (on, option, what, off) in switched_on {
            if on && not_transformer {
                return Err(ModelError::Config {
                    option,
                    reason: format!(
                        "{what}; model.kind is `{}` (set model.{option} = {off})",
                        self.kind
                    ),
                });
            }
        }
        self.transformer.validate()?;
        self.lstm.validate()?;
        self.mlp.validate()?;
        self.outer_lstm.validate()?;
        self.online.validate()?;
        self.vsml.validate()
    }
}

/// `[model]` as the file lays it out: one flat table, in the order of every
/// earlier run, refusing unknown keys. Private: code reads [`ModelConfig`].
#[derive(PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ModelTable {
    kind: ModelKind,
    d_model: usize,
    num_layers: usize,
    num_heads: usize,
    key_size: usize,
    widening_factor: usize,
    layer_norm_eps: f64,
    pos_init_std: f64,
    gelu_tanh: bool,
    hidden: usize,
    outer_heads: usize,
    previous_token_input: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    input_layer_norm: bool,
    #[serde(skip_serializing_if = "Positions::is_learned")]
    positions: Positions,
    learner_hidden: usize,
    learner_lr: f64,
    #[serde(skip_serializing_if = "is_default_vsml_msg_size")]
    vsml_msg_size: usize,
    #[serde(skip_serializing_if = "is_default_vsml_hidden")]
    vsml_hidden: usize,
    #[serde(skip_serializing_if = "is_default_vsml_micro_ticks")]
    vsml_micro_ticks: usize,
}

fn is_default_vsml_msg_size(v: &usize) -> bool {
    *v == VsmlConfig::default().msg_size
}

fn is_default_vsml_hidden(v: &usize) -> bool {
    *v == VsmlConfig::default().hidden
}

fn is_default_vsml_micro_ticks(v: &usize) -> bool {
    *v == VsmlConfig::default().micro_ticks
}

impl Default for ModelTable {
    fn default() -> Self {
        ModelTable::from(&ModelConfig::default())
    }
}

impl From<&ModelConfig> for ModelTable {
    fn from(cfg: &ModelConfig) -> Self {
        let t = &cfg.transformer;
        Self {
            kind: cfg.kind,
            d_model: t.d_model,
            num_layers: t.num_layers,
            num_heads: t.num_heads,
            key_size: t.key_size,
            widening_factor: t.widening_factor,
            layer_norm_eps: t.layer_norm_eps,
            pos_init_std: t.pos_init_std,
            gelu_tanh: t.gelu_tanh,
            hidden: cfg.hidden(),
            outer_heads: cfg.outer_lstm.heads,
            previous_token_input: t.previous_token_input,
            input_layer_norm: t.input_layer_norm,
            positions: t.positions,
            learner_hidden: cfg.online.hidden,
            learner_lr: cfg.online.lr,
            vsml_msg_size: cfg.vsml.msg_size,
            vsml_hidden: cfg.vsml.hidden,
            vsml_micro_ticks: cfg.vsml.micro_ticks,
        }
    }
}

impl From<ModelTable> for ModelConfig {
    fn from(table: ModelTable) -> Self {
        Self {
            kind: table.kind,
            transformer: TransformerConfig {
                d_model: table.d_model,
                num_layers: table.num_layers,
                num_heads: table.num_heads,
                key_size: table.key_size,
                widening_factor: table.widening_factor,
                layer_norm_eps: table.layer_norm_eps,
                pos_init_std: table.pos_init_std,
                gelu_tanh: table.gelu_tanh,
                previous_token_input: table.previous_token_input,
                input_layer_norm: table.input_layer_norm,
                positions: table.positions,
            },
            lstm: LstmConfig {
                hidden: table.hidden,
            },
            outer_lstm: OuterLstmConfig {
                heads: table.outer_heads,
                head_size: table.hidden,
            },
            mlp: MlpConfig {
                hidden: table.hidden,
            },
            online: OnlineLearnerConfig {
                hidden: table.learner_hidden,
                lr: table.learner_lr,
            },
            vsml: VsmlConfig {
                msg_size: table.vsml_msg_size,
                hidden: table.vsml_hidden,
                micro_ticks: table.vsml_micro_ticks,
            },
        }
    }
}

impl PartialEq for ModelConfig {
    fn eq(&self, other: &Self) -> bool {
        ModelTable::from(self) == ModelTable::from(other)
    }
}

impl Serialize for ModelConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        ModelTable::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        ModelTable::deserialize(deserializer).map(ModelConfig::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_its_own_options_from_the_one_flat_table() {
        let text = "kind = \"outer-lstm\"\nd_model = 64\nhidden = 32\nouter_heads = 2\nlearner_lr = 0.01\nvsml_hidden = 4\n";
        let cfg: ModelConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.kind, ModelKind::OuterLstm);
        assert_eq!((cfg.outer_lstm.heads, cfg.outer_lstm.head_size), (2, 32));
        assert_eq!((cfg.lstm.hidden, cfg.mlp.hidden), (32, 32));
        assert_eq!(cfg.transformer.d_model, 64);
        assert_eq!(cfg.online.lr, 0.01);
        assert_eq!(cfg.vsml.hidden, 4);
        assert!(toml::from_str::<ModelConfig>("width = 3").is_err());
    }

    #[test]
    fn a_config_is_written_back_as_the_flat_table_it_was_read_from() {
        let text = "kind = \"transformer\"\nd_model = 64\nnum_layers = 2\nnum_heads = 4\nkey_size = 16\nwidening_factor = 4\nlayer_norm_eps = 0.00001\npos_init_std = 0.1\ngelu_tanh = true\nhidden = 256\nouter_heads = 1\nprevious_token_input = true\nlearner_hidden = 128\nlearner_lr = 0.001\n";
        let cfg: ModelConfig = toml::from_str(text).unwrap();
        assert_eq!(toml::to_string(&cfg).unwrap(), text);
        assert_eq!(ModelConfig::default(), toml::from_str("").unwrap());
    }

    #[test]
    fn every_option_of_every_model_survives_the_file() {
        // Every field away from its default: a key missing from ModelTable
        // or converted to the wrong field comes back different.
        let mut cfg = ModelConfig::of_kind(ModelKind::OuterLstm);
        cfg.transformer = TransformerConfig {
            d_model: 24,
            num_layers: 3,
            num_heads: 5,
            key_size: 6,
            widening_factor: 2,
            layer_norm_eps: 1e-6,
            pos_init_std: 0.2,
            gelu_tanh: false,
            previous_token_input: false,
            input_layer_norm: false,
            positions: Positions::Learned,
        };
        cfg.set_hidden(40);
        cfg.outer_lstm.heads = 3;
        cfg.online = OnlineLearnerConfig { hidden: 9, lr: 0.5 };
        cfg.vsml = VsmlConfig {
            msg_size: 3,
            hidden: 5,
            micro_ticks: 4,
        };
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<ModelConfig>(&text).unwrap(), cfg, "{text}");
        // The Transformer's switches, on a Transformer.
        let mut t = ModelConfig::default();
        t.transformer.previous_token_input = true;
        t.transformer.input_layer_norm = true;
        t.transformer.positions = Positions::Rotary;
        let text = toml::to_string(&t).unwrap();
        assert_eq!(toml::from_str::<ModelConfig>(&text).unwrap(), t, "{text}");
    }

    #[test]
    fn hidden_is_written_from_the_kind_that_reads_it() {
        for kind in [ModelKind::Lstm, ModelKind::Mlp, ModelKind::OuterLstm] {
            let mut cfg = ModelConfig::of_kind(kind);
            cfg.set_hidden(8);
            match kind {
                ModelKind::Mlp => cfg.lstm.hidden = 99,
                _ => cfg.mlp.hidden = 99,
            }
            let text = toml::to_string(&cfg).unwrap();
            assert!(text.contains("\nhidden = 8\n"), "{kind}: {text}");
        }
    }

    #[test]
    fn configs_that_write_the_same_table_are_equal() {
        let mut built = ModelConfig::of_kind(ModelKind::Lstm);
        built.lstm.hidden = 64;
        let read: ModelConfig = toml::from_str(&toml::to_string(&built).unwrap()).unwrap();
        assert_eq!(read, built, "the MLP's unread width does not count");
        let mut wider = built.clone();
        wider.lstm.hidden = 65;
        assert_ne!(wider, built);
    }

    #[test]
    fn options_only_a_transformer_reads_are_refused_for_other_kinds_by_name() {
        let mut cfg = ModelConfig::of_kind(ModelKind::Lstm);
        cfg.transformer.positions = Positions::Rotary;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("positions") && err.contains("lstm"), "{err}");
        let mut cfg = ModelConfig::of_kind(ModelKind::Mlp);
        cfg.outer_lstm.heads = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("outer_heads"), "{err}");
    }
}
