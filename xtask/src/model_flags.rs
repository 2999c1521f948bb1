//! Model-selection flags shared by train, inspect and bench.

use clap::Args;
use gpicl::models::ModelKind;

fn parse_kind(name: &str) -> Result<ModelKind, String> {
    ModelKind::parse(name).ok_or_else(|| {
        let names: Vec<String> = ModelKind::ALL.iter().map(|k| k.to_string()).collect();
        format!(
            "unknown model `{name}`; expected one of {}",
            names.join(", ")
        )
    })
}

#[derive(Args, Clone, Default)]
pub struct ModelFlags {
    /// Model: transformer, lstm, outer-lstm, mlp, maml, or sgd (the baseline: no meta-training, only its evaluation) (model.kind).
    #[arg(long, value_parser = parse_kind)]
    pub model: Option<ModelKind>,
    /// Residual width of the Transformer (model.d_model).
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Transformer blocks (model.num_layers).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads of the Transformer, or heads of the outer-product LSTM (model.num_heads / model.outer_heads).
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
    /// The flags as `--set` assignments.
    pub fn assignments(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(kind) = self.model {
            out.push(format!("model.kind=\"{kind}\""));
            if kind != ModelKind::Transformer {
                // A Transformer-only option of the quickstart preset.
                out.push("model.previous_token_input=false".into());
            }
        }
        let heads_key = if self.model == Some(ModelKind::OuterLstm) {
            "model.outer_heads"
        } else {
            "model.num_heads"
        };
        for (key, value) in [
            ("model.d_model", self.d_model),
            ("model.num_layers", self.layers),
            (heads_key, self.heads),
            ("model.key_size", self.key_size),
            ("model.hidden", self.hidden),
        ] {
            if let Some(v) = value {
                out.push(format!("{key}={v}"));
            }
        }
        out
    }
}
