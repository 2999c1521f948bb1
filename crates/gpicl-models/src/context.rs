//! A context read once and queried many times: what a learner does at
//! prediction time, when the training rows are the same for every query.
//!
//! [`SequenceModel::read_context`] turns `m` contexts of `p` examples each
//! (features `[m, p, n_x]` and labels `[m, p]`: an ensemble's members, say)
//! into a [`ContextCache`]; [`SequenceModel::query_logits`] gives, for each
//! query (`[m, q, n_x]` features) of each context, the logits at the
//! position after that context — what [`SequenceModel::forward`] gives at
//! the last position of the context followed by the query. A model that
//! keeps nothing (the default) stores the examples and runs the whole
//! sequence per query; the Transformer keeps every layer's keys and values
//! of the context (its KV cache), so a query costs one position instead of
//! `p + 1`.

use crate::error::{ModelError, Result};
use crate::{tokens, SequenceModel};
use gpicl_kernels::{DType, Tensor};

/// A context a model has read: see the [module docs](self).
pub struct ContextCache {
    /// The context features, `[m, p, n_x]`.
    pub(crate) inputs: Tensor,
    /// The context labels, `[m, p]`.
    pub(crate) labels: Tensor,
    /// The tokens the context is read as, `[m, p, n_x + classes]`.
    pub(crate) tokens: Tensor,
    /// Label values of the model that read it.
    pub(crate) classes: usize,
    /// Per layer, the contexts' keys `[m·heads, key, p]` and values
    /// `[m·heads, p, key]` (empty for a model without a cache).
    pub(crate) keys_values: Vec<(Tensor, Tensor)>,
    /// `[m, p, classes]`: the logits at every context position (None for
    /// empty contexts).
    pub(crate) logits: Option<Tensor>,
}

impl ContextCache {
    /// A cache holding the checked examples of `m` contexts (`p` below
    /// `max_len`, leaving room for the query) and their tokens: queries
    /// re-read the context until a model adds what it keeps.
    pub(crate) fn examples_only(
        inputs: &Tensor,
        labels: &Tensor,
        features: usize,
        classes: usize,
        max_len: usize,
    ) -> Result<Self> {
        let dims = inputs.dims();
        if dims.len() != 3 || dims[0] == 0 || dims[2] != features || dims[1] >= max_len {
            return Err(ModelError::Input {
                got: dims.to_vec(),
                expected: format!(
                    "[m ≥ 1, p, {features}] context features with p < {max_len} (room for the query)"
                ),
            });
        }
        Ok(Self {
            tokens: tokens::build(inputs, labels, classes)?,
            inputs: inputs.clone(),
            labels: labels.clone(),
            classes,
            keys_values: Vec::new(),
            logits: None,
        })
    }

    /// The cache with the logits at every context position.
    pub(crate) fn with_logits(self, logits: Option<Tensor>) -> Self {
        Self { logits, ..self }
    }

    /// `[m, q, n_x + classes]`: the tokens of `queries` after this context.
    pub(crate) fn query_tokens(&self, queries: &Tensor) -> Result<Tensor> {
        let p = self.len();
        let last = if p == 0 {
            None
        } else {
            Some(self.labels.narrow(1, p - 1, 1)?.squeeze(1)?)
        };
        tokens::build_queries(queries, last.as_ref(), self.classes)
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
        self.inputs.dims()[0]
    }

    /// Examples in each context (`p`).
    pub fn len(&self) -> usize {
        self.inputs.dims()[1]
    }

    /// True when the context has no examples (queries sit at position 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `[m, q, n_x]` query features for the `m` contexts of `cache`, checked.
pub(crate) fn check_queries(cache: &ContextCache, queries: &Tensor, features: usize) -> Result<()> {
    let dims = queries.dims();
    let m = cache.contexts();
    if dims.len() != 3 || dims[0] != m || dims[1] == 0 || dims[2] != features {
        return Err(ModelError::Input {
            got: dims.to_vec(),
            expected: format!(
                "[{m}, q ≥ 1, {features}] query features (one row of queries per context)"
            ),
        });
    }
    Ok(())
}

/// The logits after the context for every query by running each whole
/// sequence, the context followed by the query: the default of
/// [`SequenceModel::query_logits`], and the reference a cache is tested
/// against.
pub fn query_logits_by_full_forward<M: SequenceModel + ?Sized>(
    model: &M,
    cache: &ContextCache,
    queries: &Tensor,
) -> Result<Tensor> {
    check_queries(cache, queries, model.features())?;
    let (m, q, n) = queries.dims3()?;
    let p = cache.len();
    // [m, q, p + 1, n]: every query after its context; the query's own
    // label is read by no position, so any value stands in for it.
    let queries = queries.unsqueeze(2)?;
    let query_labels = Tensor::zeros((m, q, 1), DType::U32, queries.device())?;
    let (inputs, labels) = if p == 0 {
        (queries, query_labels)
    } else {
        let contexts = cache.inputs.unsqueeze(1)?.broadcast_as((m, q, p, n))?;
        let context_labels = cache.labels.unsqueeze(1)?.broadcast_as((m, q, p))?;
        (
            Tensor::cat(&[&contexts, &queries], 2)?,
            Tensor::cat(&[&context_labels, &query_labels], 2)?,
        )
    };
    let logits = model.forward(
        &inputs.reshape((m * q, p + 1, n))?,
        &labels.reshape((m * q, p + 1))?,
    )?;
    let classes = logits.dim(2)?;
    Ok(logits.narrow(1, p, 1)?.reshape((m, q, classes))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::examples;
    use crate::{Lstm, LstmConfig};
    use gpicl_kernels::{Device, KernelOptions};

    fn small_lstm() -> Lstm {
        let cfg = LstmConfig { hidden: 4 };
        Lstm::new(&cfg, 2, 3, 1, &Device::Cpu, KernelOptions::default()).unwrap()
    }

    #[test]
    fn a_model_without_a_cache_answers_each_query_as_its_own_sequence() {
        let lstm = small_lstm();
        let (contexts, labels) = examples(2, 4, 2, 1);
        let (queries, query_labels) = examples(2, 3, 2, 2);
        let cache = lstm.read_context(&contexts, &labels).unwrap();
        assert_eq!((cache.contexts(), cache.len()), (2, 4));
        let answered: Vec<Vec<Vec<f32>>> = lstm
            .query_logits(&cache, &queries)
            .unwrap()
            .to_vec3()
            .unwrap();
        for (j, rows) in answered.iter().enumerate() {
            for (i, row) in rows.iter().enumerate() {
                let query = queries.narrow(0, j, 1).unwrap().narrow(1, i, 1).unwrap();
                let label = query_labels
                    .narrow(0, j, 1)
                    .unwrap()
                    .narrow(1, i, 1)
                    .unwrap();
                let sequence =
                    Tensor::cat(&[&contexts.narrow(0, j, 1).unwrap(), &query], 1).unwrap();
                let sequence_labels =
                    Tensor::cat(&[&labels.narrow(0, j, 1).unwrap(), &label], 1).unwrap();
                let logits: Vec<f32> = lstm
                    .forward(&sequence, &sequence_labels)
                    .unwrap()
                    .narrow(1, 4, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                // The fused recurrence of one sequence (a matrix-vector
                // product) rounds differently from a batch's.
                for (a, b) in row.iter().zip(&logits) {
                    assert!((a - b).abs() < 1e-6, "context {j}, query {i}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn queries_of_the_wrong_width_are_refused_with_the_expected_shape() {
        let lstm = small_lstm();
        let (contexts, labels) = examples(3, 2, 2, 1);
        let cache = lstm.read_context(&contexts, &labels).unwrap();
        let err = lstm
            .query_logits(&cache, &examples(3, 2, 1, 2).0)
            .unwrap_err();
        assert!(err.to_string().contains("[3, q ≥ 1, 2]"), "{err}");
        assert!(lstm.query_logits(&cache, &examples(2, 2, 2, 2).0).is_err());
        let (wide, wide_labels) = examples(1, 2, 3, 1);
        assert!(lstm.read_context(&wide, &wide_labels).is_err());
        assert!(lstm
            .read_context(&contexts, &labels.narrow(1, 0, 1).unwrap())
            .is_err());
    }
}
