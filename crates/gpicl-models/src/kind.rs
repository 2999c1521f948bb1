//! Which architecture a run builds: [`ModelKind`], the `model.kind` of
//! `config.toml` and `--model` of the command line.

use serde::{Deserialize, Serialize};

/// Which architecture to build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// GPT-2 style pre-LayerNorm decoder-only Transformer (the default).
    #[default]
    Transformer,
    /// 2-layer ReLU encoder, one LSTM layer, linear read-out.
    Lstm,
    /// LSTM with an `H × H` matrix cell per head, written by outer products.
    OuterLstm,
    /// Context-free MLP on `x_t` alone (can only memorise).
    Mlp,
    /// An online-Adam MLP learner whose initial weights are meta-learned.
    /// (The same learner from fresh random weights per sequence is the SGD
    /// baseline, a learner of `gpicl-run`'s run config, not a model.)
    Maml,
    /// VSML: a grid of small LSTMs with shared parameters, one per (input,
    /// class) pair, exchanging messages ([`crate::vsml`]).
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
