//! Model-selection flags shared by train, inspect and bench.

use clap::Args;
use gpicl::models::{ModelConfig, ModelKind};
use gpicl::run::RunLearner;

/// What `--model` chooses: a sequence model to meta-train, or the SGD
/// baseline (a learner of the run config, written `model.kind = "sgd"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelChoice {
    /// A sequence model.
    Model(ModelKind),
    /// The SGD baseline.
    SgdBaseline,
}

impl std::fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelChoice::Model(kind) => kind.fmt(f),
            ModelChoice::SgdBaseline => f.write_str(RunLearner::SGD_KIND),
        }
    }
}

fn parse_kind(name: &str) -> Result<ModelChoice, String> {
    if name == RunLearner::SGD_KIND {
        return Ok(ModelChoice::SgdBaseline);
    }
    ModelKind::parse(name)
        .map(ModelChoice::Model)
        .ok_or_else(|| {
            let mut names: Vec<String> = ModelKind::ALL.iter().map(|k| k.to_string()).collect();
            names.push(RunLearner::SGD_KIND.into());
            format!(
                "unknown model `{name}`; expected one of {}",
                names.join(", ")
            )
        })
}

#[derive(Args, Clone, Default)]
pub struct ModelFlags {
    /// Model: transformer, lstm, outer-lstm, mlp, maml, vsml, or sgd (the baseline: no meta-training, only its evaluation) (model.kind).
    #[arg(long, value_parser = parse_kind)]
    pub model: Option<ModelChoice>,
    /// Residual width of the Transformer (model.d_model).
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Transformer blocks (model.num_layers).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads of the Transformer, or heads of the outer-product LSTM (model.num_heads / model.outer_heads, whichever the final model.kind has, after --config and --set).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key size per attention head (model.key_size).
    #[arg(long)]
    pub key_size: Option<usize>,
    /// Width of the LSTM and MLP, or size H per head of the outer-product LSTM (model.hidden).
    #[arg(long)]
    pub hidden: Option<usize>,
}

impl ModelFlags {
    /// The flags as `--set` assignments, all but `--heads`, whose key
    /// depends on the merged model kind (see [`ModelFlags::apply_heads`]).
    pub fn assignments(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(kind) = self.model {
            out.push(format!("model.kind=\"{kind}\""));
            if kind != ModelChoice::Model(ModelKind::Transformer) {
                // A Transformer-only option of the quickstart preset.
                out.push("model.previous_token_input=false".into());
            }
        }
        for (key, value) in [
            ("model.d_model", self.d_model),
            ("model.num_layers", self.layers),
            ("model.key_size", self.key_size),
            ("model.hidden", self.hidden),
        ] {
            if let Some(v) = value {
                out.push(format!("{key}={v}"));
            }
        }
        out
    }

    /// Sets `--heads` on the heads option of the final model kind: called
    /// once the config file, `--model` and every `--set` are merged, so
    /// `--config outer.toml --heads 2` sets `outer_heads` even without
    /// `--model`. `--heads` overrides a `--set` of the same option.
    pub fn apply_heads(&self, model: &mut ModelConfig) {
        if let Some(heads) = self.heads {
            *heads_of(model) = heads;
        }
    }
}

/// The option `--heads` sets for a model's kind: `outer_heads` for the
/// outer-product LSTM, `num_heads` (the Transformer's) otherwise.
fn heads_of(model: &mut ModelConfig) -> &mut usize {
    match model.kind {
        ModelKind::OuterLstm => &mut model.outer_lstm.heads,
        _ => &mut model.transformer.num_heads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        model: ModelFlags,
    }

    fn flags(args: &[&str]) -> ModelFlags {
        Cli::parse_from(std::iter::once("x").chain(args.iter().copied())).model
    }

    #[test]
    fn heads_set_the_outer_heads_of_an_outer_lstm_chosen_by_the_config_alone() {
        let mut model = ModelConfig::of_kind(ModelKind::OuterLstm);
        let f = flags(&["--heads", "3"]);
        assert!(f.assignments().is_empty());
        f.apply_heads(&mut model);
        assert_eq!(
            (model.outer_lstm.heads, model.transformer.num_heads),
            (3, 8)
        );
    }

    #[test]
    fn heads_set_the_attention_heads_of_a_transformer() {
        let mut model = ModelConfig::default();
        flags(&["--heads", "2"]).apply_heads(&mut model);
        assert_eq!(
            (model.transformer.num_heads, model.outer_lstm.heads),
            (2, 1)
        );
    }

    #[test]
    fn model_sgd_is_the_baseline_and_other_names_are_model_kinds() {
        assert_eq!(
            flags(&["--model", "sgd"]).model,
            Some(ModelChoice::SgdBaseline)
        );
        assert_eq!(
            flags(&["--model", "outer-lstm"]).model,
            Some(ModelChoice::Model(ModelKind::OuterLstm))
        );
        assert_eq!(
            flags(&["--model", "sgd"]).assignments(),
            ["model.kind=\"sgd\"", "model.previous_token_input=false"]
        );
        let err = parse_kind("rnn").unwrap_err();
        assert!(err.contains("maml, vsml, sgd"), "{err}");
    }

    #[test]
    fn without_heads_the_merged_config_is_left_alone() {
        let mut model = ModelConfig::default();
        flags(&[]).apply_heads(&mut model);
        assert_eq!(model, ModelConfig::default());
    }
}
