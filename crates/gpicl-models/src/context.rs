//! A context read once and queried many times: what a learner does at
//! prediction time, when the training rows are the same for every query.
//!
//! [`SequenceModel::read_context`] turns `m` contexts of `p` tokens each
//! (`[m, p, n]`: an ensemble's members, say) into a [`ContextCache`];
//! [`SequenceModel::query_logits`] gives, for each query token of each
//! context, the logits at the position after that context — what
//! [`SequenceModel::forward`] gives at the last position of
//! `context ++ [query]`. A model that keeps nothing (the default) stores the
//! tokens and runs the whole sequence per query; the Transformer keeps every
//! layer's keys and values of the context (its KV cache), so a query costs
//! one position instead of `p + 1`.

use crate::error::{ModelError, Result};
use crate::SequenceModel;
use gpicl_kernels::Tensor;

/// A context a model has read: see the [module docs](self).
pub struct ContextCache {
    /// The context tokens, `[m, p, n]`.
    pub(crate) tokens: Tensor,
    /// Per layer, the contexts' keys `[m·heads, key, p]` and values
    /// `[m·heads, p, key]` (empty for a model without a cache).
    pub(crate) keys_values: Vec<(Tensor, Tensor)>,
    /// `[m, p, classes]`: the logits at every context position (None for
    /// empty contexts).
    pub(crate) logits: Option<Tensor>,
}

impl ContextCache {
    /// A cache holding the tokens (and the logits at every context
    /// position, when known): queries re-read the context.
    pub(crate) fn tokens_only(tokens: Tensor, logits: Option<Tensor>) -> Self {
        Self {
            tokens,
            keys_values: Vec::new(),
            logits,
        }
    }

    /// `[m, p, classes]`: the model's logits at every position of the
    /// contexts, each predicting that position's label from the examples
    /// before it (held out of its own prediction, as a query is); `None`
    /// for empty contexts. What a learner calibrates on.
    pub fn context_logits(&self) -> Option<&Tensor> {
        self.logits.as_ref()
    }

    /// Contexts held (`m`).
    pub fn contexts(&self) -> usize {
        self.tokens.dims()[0]
    }

    /// Tokens in each context (`p`).
    pub fn len(&self) -> usize {
        self.tokens.dims()[1]
    }

    /// True when the context has no tokens (queries sit at position 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `[m, p, n]` context tokens of width `input_dim`, checked.
pub(crate) fn check_context(context: &Tensor, input_dim: usize, max_len: usize) -> Result<()> {
    let dims = context.dims();
    if dims.len() != 3 || dims[0] == 0 || dims[2] != input_dim || dims[1] >= max_len {
        return Err(ModelError::Input {
            got: dims.to_vec(),
            expected: format!(
                "[m ≥ 1, p, {input_dim}] context tokens with p < {max_len} (room for the query)"
            ),
        });
    }
    Ok(())
}

/// `[m, q, n]` query tokens for the `m` contexts of `cache`, checked.
pub(crate) fn check_queries(
    cache: &ContextCache,
    queries: &Tensor,
    input_dim: usize,
) -> Result<()> {
    let dims = queries.dims();
    let m = cache.contexts();
    if dims.len() != 3 || dims[0] != m || dims[1] == 0 || dims[2] != input_dim {
        return Err(ModelError::Input {
            got: dims.to_vec(),
            expected: format!(
                "[{m}, q ≥ 1, {input_dim}] query tokens (one row of queries per context)"
            ),
        });
    }
    Ok(())
}

/// The logits after the context for every query by running each whole
/// sequence `context ++ [query]`: the default of
/// [`SequenceModel::query_logits`], and the reference a cache is tested
/// against.
pub fn query_logits_by_full_forward<M: SequenceModel + ?Sized>(
    model: &M,
    cache: &ContextCache,
    queries: &Tensor,
) -> Result<Tensor> {
    check_queries(cache, queries, model.input_dim())?;
    let (m, q, n) = queries.dims3()?;
    let p = cache.len();
    // [m, q, p + 1, n]: every query after its context.
    let queries = queries.unsqueeze(2)?;
    let sequences = if p == 0 {
        queries
    } else {
        let contexts = cache.tokens.unsqueeze(1)?.broadcast_as((m, q, p, n))?;
        Tensor::cat(&[&contexts, &queries], 2)?
    };
    let logits = model.forward(&sequences.reshape((m * q, p + 1, n))?)?;
    let classes = logits.dim(2)?;
    Ok(logits.narrow(1, p, 1)?.reshape((m, q, classes))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lstm, ModelConfig, ModelKind};
    use gpicl_kernels::rng::Rng;
    use gpicl_kernels::{Device, KernelOptions};

    fn tokens(m: usize, rows: usize, n: usize, seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let data: Vec<f32> = (0..m * rows * n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(data, (m, rows, n), &Device::Cpu).unwrap()
    }

    #[test]
    fn a_model_without_a_cache_answers_each_query_as_its_own_sequence() {
        let cfg = ModelConfig {
            kind: ModelKind::Lstm,
            hidden: 4,
            ..ModelConfig::default()
        };
        let lstm = Lstm::new(&cfg, 5, 3, 1, &Device::Cpu, KernelOptions::default()).unwrap();
        let contexts = tokens(2, 4, 5, 1);
        let queries = tokens(2, 3, 5, 2);
        let cache = lstm.read_context(&contexts).unwrap();
        assert_eq!((cache.contexts(), cache.len()), (2, 4));
        let answered: Vec<Vec<Vec<f32>>> = lstm
            .query_logits(&cache, &queries)
            .unwrap()
            .to_vec3()
            .unwrap();
        for (j, rows) in answered.iter().enumerate() {
            for (i, row) in rows.iter().enumerate() {
                let query = queries.narrow(0, j, 1).unwrap().narrow(1, i, 1).unwrap();
                let sequence =
                    Tensor::cat(&[&contexts.narrow(0, j, 1).unwrap(), &query], 1).unwrap();
                let logits: Vec<f32> = lstm
                    .forward(&sequence)
                    .unwrap()
                    .narrow(1, 4, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                assert_eq!(row, &logits, "context {j}, query {i}");
            }
        }
    }

    #[test]
    fn queries_of_the_wrong_width_are_refused_with_the_expected_shape() {
        let cfg = ModelConfig {
            kind: ModelKind::Lstm,
            hidden: 4,
            ..ModelConfig::default()
        };
        let lstm = Lstm::new(&cfg, 5, 3, 1, &Device::Cpu, KernelOptions::default()).unwrap();
        let cache = lstm.read_context(&tokens(3, 2, 5, 1)).unwrap();
        let err = lstm.query_logits(&cache, &tokens(3, 2, 4, 2)).unwrap_err();
        assert!(err.to_string().contains("[3, q ≥ 1, 5]"), "{err}");
        assert!(lstm.query_logits(&cache, &tokens(2, 2, 5, 2)).is_err());
        assert!(lstm.read_context(&tokens(1, 2, 6, 1)).is_err());
    }
}
