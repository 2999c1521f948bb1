//! The Transformer's KV cache: a context's keys and values kept per layer,
//! so that a query after it costs one position (see [`crate::context`]).
//! The query attends to the cached context and to itself, exactly as the
//! last position of the full causal forward pass does.

use super::{Block, Transformer};
use crate::context::{check_queries, query_logits_by_full_forward};
use crate::error::Result;
use crate::linear::Linear;
use crate::ContextCache;
use gpicl_kernels::Tensor;

impl Transformer {
    /// Runs the contexts once and keeps every block's keys
    /// `[m·heads, key, p]` and values `[m·heads, p, key]`.
    pub(super) fn read_context_cached(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
    ) -> Result<ContextCache> {
        let cache = ContextCache::examples_only(
            inputs,
            labels,
            self.features,
            self.classes,
            self.max_seq_len,
        )?;
        let (m, p, _) = inputs.dims3()?;
        if p == 0 {
            return Ok(cache);
        }
        let (heads, key) = (self.cfg.num_heads, self.cfg.key_size);
        let mut kept = Vec::with_capacity(self.blocks.len());
        let logits = self.forward_keeping(&cache.tokens, self.options, Some(&mut kept))?;
        let keys_values = kept
            .into_iter()
            .map(|(k, v)| -> Result<(Tensor, Tensor)> {
                // [m, p, heads, key] → [m·heads, key, p] and [m·heads, p, key].
                Ok((
                    k.permute((0, 2, 3, 1))?
                        .contiguous()?
                        .reshape((m * heads, key, p))?,
                    v.permute((0, 2, 1, 3))?
                        .contiguous()?
                        .reshape((m * heads, p, key))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(ContextCache {
            keys_values,
            ..cache.with_logits(Some(logits))
        })
    }

    /// The logits at position `p` (after its cached context) of every
    /// query, `[m, q, classes]`.
    pub(super) fn query_logits_cached(
        &self,
        cache: &ContextCache,
        queries: &Tensor,
    ) -> Result<Tensor> {
        check_queries(cache, queries, self.features)?;
        if cache.keys_values.len() != self.blocks.len() {
            // Empty contexts (nothing cached): the queries are the sequences.
            return query_logits_by_full_forward(self, cache, queries);
        }
        let options = self.options;
        let p = cache.len();
        let queries = cache.query_tokens(queries)?;
        let (m, q, n) = queries.dims3()?;
        let input = if self.cfg.previous_token_input {
            let last = cache.tokens.narrow(1, p - 1, 1)?.broadcast_as((m, q, n))?;
            Tensor::cat(&[&queries, &last], 2)?
        } else {
            queries
        };
        let mut embedded = self.embed.forward(&input, options)?;
        if let Some(ln) = &self.embed_ln {
            embedded = ln.forward(&embedded, options)?;
        }
        let mut h = match &self.pos {
            Some(pos) => embedded.broadcast_add(&pos.narrow(0, p, 1)?)?,
            None => embedded,
        };
        for (block, (keys, values)) in self.blocks.iter().zip(&cache.keys_values) {
            let normed = block.ln_attn.forward(&h, options)?;
            let a = self.attend_after_context(block, &normed, keys, values, p)?;
            h = (h + a)?;
            let m = self.mlp(block, &block.ln_mlp.forward(&h, options)?, options)?;
            h = (h + m)?;
        }
        self.head
            .forward(&self.ln_final.forward(&h, options)?, options)
    }

    /// One block's attention for queries `x` (`[m, q, d]`) at position `p`:
    /// scaled dot products with the `p` cached keys of their context and
    /// with their own key, one softmax over the `p + 1`, the values mixed
    /// accordingly.
    fn attend_after_context(
        &self,
        block: &Block,
        x: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        p: usize,
    ) -> Result<Tensor> {
        let (m, q, _) = x.dims3()?;
        let (heads, key) = (self.cfg.num_heads, self.cfg.key_size);
        // [m, q, heads, key] → heads first, [m·heads, q, key].
        let heads_first = |t: Tensor| -> Result<Tensor> {
            Ok(t.permute((0, 2, 1, 3))?
                .contiguous()?
                .reshape((m * heads, q, key))?)
        };
        let project = |lin: &Linear| -> Result<Tensor> {
            Ok(lin.forward(x, self.options)?.reshape((m, q, heads, key))?)
        };
        let (mut query, mut own_key, own_value) =
            (project(&block.q)?, project(&block.k)?, project(&block.v)?);
        if let Some(table) = &self.rotary {
            (query, own_key) = (table.rotate_at(&query, p)?, table.rotate_at(&own_key, p)?);
        }
        let (query, own_key, own_value) = (
            heads_first(query)?,
            heads_first(own_key)?,
            heads_first(own_value)?,
        );
        let to_context = query.matmul(keys)?;
        let to_itself = (&query * &own_key)?.sum_keepdim(2)?;
        let scores = (Tensor::cat(&[&to_context, &to_itself], 2)? / (key as f64).sqrt())?;
        let exp = scores.broadcast_sub(&scores.max_keepdim(2)?)?.exp()?;
        let weights = exp.broadcast_div(&exp.sum_keepdim(2)?)?;
        let from_context = weights.narrow(2, 0, p)?.contiguous()?.matmul(values)?;
        let from_itself = weights.narrow(2, p, 1)?.broadcast_mul(&own_value)?;
        let attended = (from_context + from_itself)?
            .reshape((m, heads, q, key))?
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((m, q, heads * key))?;
        block.out.forward(&attended, self.options)
    }
}
