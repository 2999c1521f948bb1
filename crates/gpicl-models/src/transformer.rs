//! The GPT-2 style decoder-only Transformer of `gpicl-method.md` §5.

use crate::error::{ModelError, Result};
use crate::init::Initializer;
use crate::kind::ModelKind;
use crate::linear::{LayerNorm, Linear};
use crate::params::ParamStore;
use crate::{tokens, ContextCache, SequenceModel};
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{op, Device, KernelOptions, Tensor};

mod cached;
pub mod config;
mod deepen;
mod rotary;
mod step;

pub use config::{Positions, TransformerConfig};
pub use deepen::deepened_weights;

use rotary::RotaryTable;

struct Block {
    ln_attn: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln_mlp: LayerNorm,
    fc_in: Linear,
    fc_out: Linear,
}

/// Pre-LayerNorm causal Transformer:
/// `Linear(in→d) + pos`, then per block `h += MHA(LN(h))`, `h += MLP(LN(h))`,
/// a final LayerNorm and `Linear(d→classes)`.
pub struct Transformer {
    cfg: TransformerConfig,
    params: ParamStore,
    embed: Linear,
    /// `model.input_layer_norm`: a LayerNorm on the input layer's output.
    embed_ln: Option<LayerNorm>,
    /// The learned positional embedding `[max_seq_len, d]`; none with
    /// rotary positions.
    pos: Option<Tensor>,
    /// The rotation of every position up to `max_seq_len` (rotary
    /// positions only), computed once.
    rotary: Option<RotaryTable>,
    blocks: Vec<Block>,
    ln_final: LayerNorm,
    head: Linear,
    features: usize,
    classes: usize,
    /// Width of the token it reads ([`crate::tokens::width`]).
    token_width: usize,
    max_seq_len: usize,
    /// Activation buffers reused from one hand-written step to the next.
    scratch: gpicl_kernels::host::BufferPool,
    /// What the ops run with.
    options: KernelOptions,
}

impl Transformer {
    /// Builds and initialises the model.
    ///
    /// Initialisation follows the reference: attention and MLP weights use
    /// variance scaling (scale `2 / num_layers`, fan-in, truncated normal);
    /// the input and output linears a truncated normal with std
    /// `1/sqrt(fan_in)`; the positional embedding a truncated normal with
    /// std `pos_init_std`; biases zero; LayerNorm gains one. Its ops run
    /// with `options`. It reads examples of `features` features and
    /// `classes` label values, sequences of up to `max_seq_len`.
    pub fn new(
        cfg: &TransformerConfig,
        features: usize,
        classes: usize,
        max_seq_len: usize,
        seed: u64,
        device: &Device,
        options: KernelOptions,
    ) -> Result<Self> {
        cfg.validate()?;
        if features == 0 || classes == 0 || max_seq_len == 0 {
            return Err(ModelError::Config {
                option: "features/classes/seq_len",
                reason: format!("must be positive, got {features}/{classes}/{max_seq_len}"),
            });
        }
        let token_width = tokens::width(features, classes);
        let mut init = Initializer::new(Rng::from_stream(seed, &[stream::INIT]), device);
        let mut params = ParamStore::new();
        let d = cfg.d_model;
        let attn_width = cfg.num_heads * cfg.key_size;
        let hidden = cfg.widening_factor * d;
        let scale = 2.0 / cfg.num_layers as f64;
        let zeros = |n: usize| Tensor::zeros(n, gpicl_kernels::DType::F32, device);

        let embed_in = embedding_width(cfg, token_width);
        let embed = Linear::register(
            &mut params,
            "embed",
            init.truncated_normal(&[embed_in, d], 1.0 / (embed_in as f64).sqrt()),
            zeros(d)?,
        )?;
        let embed_ln = if cfg.input_layer_norm {
            Some(LayerNorm::register(
                &mut params,
                "embed_ln",
                d,
                cfg.layer_norm_eps,
                device,
            )?)
        } else {
            None
        };
        let pos = match cfg.positions {
            Positions::Learned => Some(params.insert(
                "pos_embed",
                init.truncated_normal(&[max_seq_len, d], cfg.pos_init_std),
            )?),
            Positions::Rotary => None,
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for layer in 0..cfg.num_layers {
            let p = format!("layers.{layer}");
            let mut scaled =
                |params: &mut ParamStore, name: &str, fan_in: usize, fan_out: usize| {
                    Linear::register(
                        params,
                        &format!("{p}.{name}"),
                        init.variance_scaling(&[fan_in, fan_out], fan_in, scale),
                        zeros(fan_out)?,
                    )
                };
            let q = scaled(&mut params, "attn.q", d, attn_width)?;
            let k = scaled(&mut params, "attn.k", d, attn_width)?;
            let v = scaled(&mut params, "attn.v", d, attn_width)?;
            let out = scaled(&mut params, "attn.out", attn_width, d)?;
            let fc_in = scaled(&mut params, "mlp.fc_in", d, hidden)?;
            let fc_out = scaled(&mut params, "mlp.fc_out", hidden, d)?;
            let ln_attn = LayerNorm::register(
                &mut params,
                &format!("{p}.ln_attn"),
                d,
                cfg.layer_norm_eps,
                device,
            )?;
            let ln_mlp = LayerNorm::register(
                &mut params,
                &format!("{p}.ln_mlp"),
                d,
                cfg.layer_norm_eps,
                device,
            )?;
            blocks.push(Block {
                ln_attn,
                q,
                k,
                v,
                out,
                ln_mlp,
                fc_in,
                fc_out,
            });
        }
        let ln_final = LayerNorm::register(&mut params, "ln_final", d, cfg.layer_norm_eps, device)?;
        let head = Linear::register(
            &mut params,
            "head",
            init.truncated_normal(&[d, classes], 1.0 / (d as f64).sqrt()),
            zeros(classes)?,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            params,
            embed,
            embed_ln,
            pos,
            rotary: (cfg.positions == Positions::Rotary)
                .then(|| RotaryTable::new(max_seq_len, cfg.key_size)),
            blocks,
            ln_final,
            head,
            features,
            classes,
            token_width,
            max_seq_len,
            scratch: Default::default(),
            options,
        })
    }

    /// Self-attention of one block; `kept` receives its keys (rotated) and
    /// values, `[b, t, heads, key]`, when the caller builds a
    /// [`ContextCache`].
    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        options: KernelOptions,
        kept: Option<&mut Vec<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (heads, key) = (self.cfg.num_heads, self.cfg.key_size);
        // [b, t, heads, key]: a free reshape of the projection.
        let split = |lin: &Linear| -> Result<Tensor> {
            Ok(lin.forward(x, options)?.reshape((b, t, heads, key))?)
        };
        let (mut q, mut k, v) = (split(&block.q)?, split(&block.k)?, split(&block.v)?);
        if let Some(table) = &self.rotary {
            (q, k) = (table.rotate(&q)?, table.rotate(&k)?);
        }
        let attended = op::attention::causal_attention(&q, &k, &v, options)?;
        if let Some(kept) = kept {
            kept.push((k, v));
        }
        let merged = attended.reshape((b, t, heads * key))?;
        block.out.forward(&merged, options)
    }

    fn mlp(&self, block: &Block, x: &Tensor, options: KernelOptions) -> Result<Tensor> {
        let hidden = block.fc_in.forward(x, options)?;
        let activated = op::gelu::gelu(&hidden, self.cfg.gelu_tanh, options)?;
        block.fc_out.forward(&activated, options)
    }
}

/// Features the input layer reads per position: the token, and with
/// `previous_token_input` the previous token too.
fn embedding_width(cfg: &TransformerConfig, input_dim: usize) -> usize {
    if cfg.previous_token_input {
        2 * input_dim
    } else {
        input_dim
    }
}

impl Transformer {
    /// What the input layer reads: the tokens, or with
    /// `previous_token_input` each token next to its predecessor.
    fn embedding_input(&self, tokens: &Tensor) -> Result<Tensor> {
        if self.cfg.previous_token_input {
            tokens::with_previous(tokens)
        } else {
            Ok(tokens.clone())
        }
    }

    /// The tokens of checked examples (a context may leave room for a
    /// query: `max_len`).
    fn tokens(&self, inputs: &Tensor, labels: &Tensor, max_len: usize) -> Result<Tensor> {
        tokens::build_checked(inputs, labels, self.features, self.classes, max_len)
    }

    /// The forward pass with `options` (the model's own, or others to
    /// compare): the fused ops of `gpicl_kernels::op` (linear, LayerNorm,
    /// attention, GELU) or their composed references.
    pub fn forward_with(
        &self,
        inputs: &Tensor,
        labels: &Tensor,
        options: KernelOptions,
    ) -> Result<Tensor> {
        let tokens = self.tokens(inputs, labels, self.max_seq_len)?;
        self.forward_keeping(&tokens, options, None)
    }

    /// [`Transformer::forward_with`] on built tokens, handing every block's
    /// keys and values to `kept` when given (see [`Transformer::attention`]).
    fn forward_keeping(
        &self,
        tokens: &Tensor,
        options: KernelOptions,
        mut kept: Option<&mut Vec<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let t = tokens.dim(1)?;
        let mut embedded = self
            .embed
            .forward(&self.embedding_input(tokens)?, options)?;
        if let Some(ln) = &self.embed_ln {
            embedded = ln.forward(&embedded, options)?;
        }
        let mut h = match &self.pos {
            Some(pos) => embedded.broadcast_add(&pos.narrow(0, 0, t)?)?,
            None => embedded,
        };
        for block in &self.blocks {
            let normed = block.ln_attn.forward(&h, options)?;
            let a = self.attention(block, &normed, options, kept.as_deref_mut())?;
            h = (h + a)?;
            let m = self.mlp(block, &block.ln_mlp.forward(&h, options)?, options)?;
            h = (h + m)?;
        }
        self.head
            .forward(&self.ln_final.forward(&h, options)?, options)
    }
}

impl SequenceModel for Transformer {
    /// Fused kernels on CPU `f32` (as the model's options allow), composed
    /// ops elsewhere.
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> Result<Tensor> {
        self.forward_with(inputs, labels, self.options)
    }

    fn params(&self) -> &ParamStore {
        &self.params
    }

    fn kernel_options(&self) -> KernelOptions {
        self.options
    }

    /// The hand-written step of the private `step` module where the fused kernels apply
    /// (CPU `f32`), autograd otherwise.
    fn loss_and_grads(&self, inputs: &Tensor, labels: &Tensor) -> Result<crate::LossAndGrads> {
        if self.options.use_host_kernels(inputs) {
            let tokens = self.tokens(inputs, labels, self.max_seq_len)?;
            self.loss_and_grads_by_hand(&tokens, labels)
        } else {
            crate::autograd_loss_and_grads(self, inputs, labels)
        }
    }

    /// Dense layers (every parameter but the positional embeddings, which
    /// are added, not multiplied) plus attention scores and the weighted
    /// sum: `2·2·B·H·T²·K` per layer.
    fn forward_flops(&self, batch: usize, seq_len: usize) -> f64 {
        let tokens = (batch * seq_len) as f64;
        let positional = self
            .pos
            .as_ref()
            .map_or(0, |_| self.max_seq_len * self.cfg.d_model);
        let dense = (self.param_count() - positional) as f64;
        let attention = 4.0
            * (batch * self.cfg.num_heads * seq_len * seq_len * self.cfg.key_size) as f64
            * self.cfg.num_layers as f64;
        2.0 * tokens * dense + attention
    }

    fn state_size(&self, seq_len: usize) -> usize {
        2 * self.cfg.num_layers * self.cfg.num_heads * self.cfg.key_size * seq_len
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Transformer
    }

    fn features(&self) -> usize {
        self.features
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn read_context(&self, inputs: &Tensor, labels: &Tensor) -> Result<ContextCache> {
        self.read_context_cached(inputs, labels)
    }

    fn query_logits(&self, cache: &ContextCache, queries: &Tensor) -> Result<Tensor> {
        self.query_logits_cached(cache, queries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TransformerConfig {
        TransformerConfig {
            d_model: 8,
            num_layers: 2,
            num_heads: 2,
            key_size: 4,
            ..TransformerConfig::default()
        }
    }

    use crate::testing::examples;

    #[test]
    fn parameter_counts_equal_the_papers_reference_values() {
        for (d, expected) in [
            (64, 419_274),
            (128, 1_097_610),
            (256, 3_240_714),
            (512, 10_672_650),
        ] {
            let cfg = TransformerConfig {
                d_model: d,
                ..TransformerConfig::default()
            };
            let m = Transformer::new(
                &cfg,
                196,
                10,
                100,
                0,
                &Device::Cpu,
                KernelOptions::default(),
            )
            .unwrap();
            assert_eq!(m.param_count(), expected, "d_model {d}");
        }
    }

    #[test]
    fn the_reference_step_of_shared_refs_costs_about_65_gflop() {
        // d_model 256, 4 layers, 8 heads of 32, 784 + 10 inputs, 32 × 100.
        let cfg = TransformerConfig {
            d_model: 256,
            ..TransformerConfig::default()
        };
        let m = Transformer::new(
            &cfg,
            784,
            10,
            100,
            0,
            &Device::Cpu,
            KernelOptions::default(),
        )
        .unwrap();
        assert_eq!(m.param_count(), 3_391_242, "the PyTorch reference's count");
        let dense = 2.0 * 3200.0 * (3_391_242.0 - 100.0 * 256.0);
        let attention = 4.0 * 32.0 * 8.0 * 100.0 * 100.0 * 32.0 * 4.0;
        assert_eq!(m.forward_flops(32, 100), dense + attention);
        let step = 3.0 * m.forward_flops(32, 100) / 1e9;
        assert!((60.0..75.0).contains(&step), "{step} GFLOP");
    }

    #[test]
    fn state_size_is_the_kv_cache() {
        let m = Transformer::new(
            &TransformerConfig::default(),
            196,
            10,
            100,
            0,
            &Device::Cpu,
            KernelOptions::default(),
        )
        .unwrap();
        assert_eq!(m.state_size(100), 2 * 4 * 8 * 32 * 100);
    }

    fn weights(model: &Transformer) -> std::collections::BTreeMap<String, Tensor> {
        model
            .params()
            .iter()
            .map(|(name, var)| (name.to_string(), var.as_tensor().clone()))
            .collect()
    }

    #[test]
    fn a_deepened_transformer_computes_what_the_shallower_one_did_and_can_learn() {
        let shallow =
            Transformer::new(&tiny(), 2, 3, 6, 1, &Device::Cpu, KernelOptions::default()).unwrap();
        let deeper_cfg = TransformerConfig {
            num_layers: 4,
            ..tiny()
        };
        let deeper = Transformer::new(
            &deeper_cfg,
            2,
            3,
            6,
            2,
            &Device::Cpu,
            KernelOptions::default(),
        )
        .unwrap();
        let grown = deepened_weights(&weights(&shallow), 2, &weights(&deeper)).unwrap();
        deeper.params().load(&grown).unwrap();
        let (inputs, labels) = examples(2, 6, 2, 3);
        let flat = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        let (a, b) = (
            flat(shallow.forward(&inputs, &labels).unwrap()),
            flat(deeper.forward(&inputs, &labels).unwrap()),
        );
        assert_eq!(a, b, "the new blocks add nothing at first");
        // The new blocks' own weights are the fresh model's, not zero:
        // they can start learning once their projections move.
        let q = flat(grown["layers.3.attn.q.weight"].clone());
        assert!(q.iter().any(|&x| x != 0.0));
        let out = flat(grown["layers.3.attn.out.weight"].clone());
        assert!(out.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn deepening_refuses_models_that_differ_in_more_than_depth() {
        let shallow =
            Transformer::new(&tiny(), 2, 3, 6, 1, &Device::Cpu, KernelOptions::default()).unwrap();
        let wider = TransformerConfig {
            num_layers: 3,
            d_model: 16,
            ..tiny()
        };
        let wider =
            Transformer::new(&wider, 2, 3, 6, 1, &Device::Cpu, KernelOptions::default()).unwrap();
        let err = deepened_weights(&weights(&shallow), 2, &weights(&wider))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only the number of layers may differ"),
            "{err}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let a =
            Transformer::new(&tiny(), 2, 3, 6, 9, &Device::Cpu, KernelOptions::default()).unwrap();
        let b =
            Transformer::new(&tiny(), 2, 3, 6, 9, &Device::Cpu, KernelOptions::default()).unwrap();
        for ((na, va), (nb, vb)) in a.params().iter().zip(b.params().iter()) {
            assert_eq!(na, nb);
            let (x, y): (Vec<f32>, Vec<f32>) = (
                va.flatten_all().unwrap().to_vec1().unwrap(),
                vb.flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert_eq!(x, y, "{na}");
        }
    }

    /// The logits at the last position of `context ++ [query]` for every
    /// query of two contexts, from the full sequences and from a cache.
    fn full_and_cached(cfg: &TransformerConfig, context_len: usize) -> (Vec<f32>, Vec<f32>) {
        let n = 2;
        let model =
            Transformer::new(cfg, n, 3, 8, 4, &Device::Cpu, KernelOptions::default()).unwrap();
        let (contexts, labels) = examples(2, context_len.max(1), n, 1);
        let (contexts, labels) = (
            contexts.narrow(1, 0, context_len).unwrap(),
            labels.narrow(1, 0, context_len).unwrap(),
        );
        let queries = examples(2, 6, n, 2).0;
        let full = crate::context::query_logits_by_full_forward(
            &model,
            &ContextCache::examples_only(&contexts, &labels, n, 3, 8).unwrap(),
            &queries,
        )
        .unwrap();
        let cache = model.read_context(&contexts, &labels).unwrap();
        assert_eq!((cache.contexts(), cache.len()), (2, context_len));
        if context_len > 0 {
            let expected = model
                .forward(&contexts, &labels)
                .unwrap()
                .flatten_all()
                .unwrap();
            let kept = cache.context_logits().unwrap().flatten_all().unwrap();
            assert_eq!(
                expected.to_vec1::<f32>().unwrap(),
                kept.to_vec1::<f32>().unwrap()
            );
        } else {
            assert!(cache.context_logits().is_none());
        }
        let cached = model.query_logits(&cache, &queries).unwrap();
        assert_eq!(cached.dims(), &[2, 6, 3]);
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1().unwrap();
        (flat(full), flat(cached))
    }

    #[test]
    fn a_cached_context_answers_every_query_as_the_full_sequence_does() {
        let variants = [
            ("plain", tiny()),
            (
                "previous-token input",
                TransformerConfig {
                    previous_token_input: true,
                    ..tiny()
                },
            ),
            (
                "rotary positions",
                TransformerConfig {
                    positions: Positions::Rotary,
                    ..tiny()
                },
            ),
            (
                "input LayerNorm",
                TransformerConfig {
                    input_layer_norm: true,
                    ..tiny()
                },
            ),
        ];
        for (name, cfg) in variants {
            for context_len in [0, 1, 7] {
                let (full, cached) = full_and_cached(&cfg, context_len);
                assert_eq!(full.len(), 2 * 6 * 3);
                for (a, b) in full.iter().zip(&cached) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{name}, context {context_len}: full {a} vs cached {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_context_with_no_room_left_for_the_query_is_refused() {
        let model =
            Transformer::new(&tiny(), 2, 3, 8, 4, &Device::Cpu, KernelOptions::default()).unwrap();
        let (too_long, labels) = examples(1, 8, 2, 1);
        assert!(model.read_context(&too_long, &labels).is_err());
        let cache = model
            .read_context(
                &too_long.narrow(1, 0, 7).unwrap(),
                &labels.narrow(1, 0, 7).unwrap(),
            )
            .unwrap();
        let wrong_width = examples(1, 2, 3, 2).0;
        assert!(model.query_logits(&cache, &wrong_width).is_err());
    }

    #[test]
    fn predictions_never_depend_on_later_inputs() {
        crate::testing::assert_causal(
            &Transformer::new(&tiny(), 2, 3, 6, 1, &Device::Cpu, KernelOptions::default()).unwrap(),
        );
    }

    #[test]
    fn every_parameter_receives_a_nonzero_gradient() {
        crate::testing::assert_every_parameter_gets_a_gradient(
            &Transformer::new(&tiny(), 2, 3, 6, 3, &Device::Cpu, KernelOptions::default()).unwrap(),
        );
    }

    #[test]
    fn gradient_matches_finite_differences() {
        crate::testing::assert_gradient_matches_finite_differences(
            &Transformer::new(&tiny(), 2, 3, 6, 5, &Device::Cpu, KernelOptions::default()).unwrap(),
        );
    }

    #[test]
    fn the_fused_model_equals_the_composed_one_with_gradients() {
        for (cfg, t) in [
            (tiny(), 7),
            (
                TransformerConfig {
                    num_heads: 1,
                    gelu_tanh: false,
                    ..tiny()
                },
                1,
            ),
        ] {
            let m =
                Transformer::new(&cfg, 2, 3, 9, 4, &Device::Cpu, KernelOptions::default()).unwrap();
            let (x, y) = examples(3, t, 2, 8);
            let run = |fused: bool| {
                let logits = m
                    .forward_with(
                        &x,
                        &y,
                        KernelOptions {
                            fused,
                            ..KernelOptions::default()
                        },
                    )
                    .unwrap();
                let loss = gpicl_kernels::composed::cross_entropy(&logits, &y).unwrap();
                let grads = loss.backward().unwrap();
                let mut all = vec![logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
                for (name, v) in m.params().iter() {
                    let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}"));
                    all.push(g.flatten_all().unwrap().to_vec1().unwrap());
                }
                all
            };
            let (fused, composed) = (run(true), run(false));
            for (i, (f, c)) in fused.iter().zip(&composed).enumerate() {
                let tol = if i == 0 { 1e-5 } else { 1e-4 };
                for (a, b) in f.iter().zip(c) {
                    assert!(
                        (a - b).abs() <= tol * b.abs().max(1.0),
                        "tensor {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_hand_written_step_equals_autograd_through_the_composed_ops() {
        for (cfg, b, t) in [
            (tiny(), 3, 7),
            (
                TransformerConfig {
                    num_heads: 1,
                    gelu_tanh: false,
                    ..tiny()
                },
                1,
                1,
            ),
            (
                TransformerConfig {
                    num_layers: 3,
                    key_size: 3,
                    gelu_tanh: true,
                    ..tiny()
                },
                2,
                9,
            ),
            (
                TransformerConfig {
                    previous_token_input: true,
                    ..tiny()
                },
                3,
                7,
            ),
            (
                TransformerConfig {
                    input_layer_norm: true,
                    ..tiny()
                },
                3,
                7,
            ),
            (
                TransformerConfig {
                    positions: Positions::Rotary,
                    ..tiny()
                },
                3,
                7,
            ),
        ] {
            // max_seq_len 9 ≥ t: unused positional rows get zero gradient.
            let m =
                Transformer::new(&cfg, 2, 3, 9, 4, &Device::Cpu, KernelOptions::default()).unwrap();
            let (x, y) = examples(b, t, 2, 8);
            let built = tokens::build(&x, &y, 3).unwrap();
            let by_hand = m.loss_and_grads_by_hand(&built, &y).unwrap();
            let logits = m.forward_with(&x, &y, KernelOptions::composed()).unwrap();
            let loss = gpicl_kernels::composed::cross_entropy(&logits, &y).unwrap();
            let grads = loss.backward().unwrap();
            let reference = loss.to_scalar::<f32>().unwrap();
            assert!((by_hand.loss - reference).abs() <= 1e-5 * reference.abs().max(1.0));
            let close = |a: &[f32], b: &[f32], tol: f32, what: &str| {
                assert_eq!(a.len(), b.len(), "{what}");
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= tol * y.abs().max(1.0),
                        "{what}: {x} vs {y}"
                    );
                }
            };
            let flat = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            close(&flat(&by_hand.logits), &flat(&logits), 1e-5, "logits");
            for (name, v) in m.params().iter() {
                let g = by_hand.grads.get(name).unwrap();
                let expected = flat(grads.get(v.as_tensor()).unwrap());
                close(g, &expected, 1e-4, name);
            }
        }
    }

    fn reading_previous_tokens() -> TransformerConfig {
        TransformerConfig {
            previous_token_input: true,
            ..tiny()
        }
    }

    #[test]
    fn previous_token_input_widens_the_input_layer_to_two_tokens() {
        let m = Transformer::new(
            &reading_previous_tokens(),
            2,
            3,
            6,
            1,
            &Device::Cpu,
            KernelOptions::default(),
        )
        .unwrap();
        assert_eq!(m.params().get("embed.weight").unwrap().dims(), &[10, 8]);
        let plain =
            Transformer::new(&tiny(), 2, 3, 6, 1, &Device::Cpu, KernelOptions::default()).unwrap();
        assert_eq!(m.param_count(), plain.param_count() + 5 * 8);
    }

    #[test]
    fn a_model_reading_previous_tokens_stays_causal_and_trains_every_parameter() {
        let m = Transformer::new(
            &reading_previous_tokens(),
            2,
            3,
            6,
            3,
            &Device::Cpu,
            KernelOptions::default(),
        )
        .unwrap();
        crate::testing::assert_causal(&m);
        crate::testing::assert_every_parameter_gets_a_gradient(&m);
        crate::testing::assert_gradient_matches_finite_differences(&m);
    }

    #[test]
    fn an_input_layer_norm_adds_a_gain_and_bias_and_trains_every_parameter() {
        let cfg = TransformerConfig {
            input_layer_norm: true,
            ..tiny()
        };
        let m = Transformer::new(&cfg, 2, 3, 6, 3, &Device::Cpu, KernelOptions::default()).unwrap();
        let plain =
            Transformer::new(&tiny(), 2, 3, 6, 3, &Device::Cpu, KernelOptions::default()).unwrap();
        assert_eq!(m.param_count(), plain.param_count() + 2 * 8);
        assert_eq!(m.params().get("embed_ln.gain").unwrap().dims(), &[8]);
        // The normalised input changes what the model computes.
        let (x, y) = examples(2, 4, 2, 3);
        let (a, b) = (m.forward(&x, &y).unwrap(), plain.forward(&x, &y).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().sum_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() > 1e-3);
        crate::testing::assert_causal(&m);
        crate::testing::assert_every_parameter_gets_a_gradient(&m);
        crate::testing::assert_gradient_matches_finite_differences(&m);
    }

    #[test]
    fn rotary_positions_replace_the_positional_embedding_and_train_every_parameter() {
        let cfg = TransformerConfig {
            positions: Positions::Rotary,
            ..tiny()
        };
        let m = Transformer::new(&cfg, 2, 3, 6, 3, &Device::Cpu, KernelOptions::default()).unwrap();
        let learned =
            Transformer::new(&tiny(), 2, 3, 6, 3, &Device::Cpu, KernelOptions::default()).unwrap();
        assert_eq!(m.param_count(), learned.param_count() - 6 * 8);
        assert!(m.params().get("pos_embed").is_err());
        crate::testing::assert_causal(&m);
        crate::testing::assert_every_parameter_gets_a_gradient(&m);
        crate::testing::assert_gradient_matches_finite_differences(&m);
        let odd = TransformerConfig { key_size: 3, ..cfg };
        let err = odd.validate().unwrap_err().to_string();
        assert!(err.contains("key_size must be even"), "{err}");
    }

    #[test]
    fn previous_token_input_is_a_transformer_option() {
        let mut cfg = crate::ModelConfig::of_kind(ModelKind::Lstm);
        cfg.transformer.previous_token_input = true;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("previous_token_input"), "{err}");
    }

    #[test]
    fn the_hand_written_step_refuses_bad_targets() {
        let m =
            Transformer::new(&tiny(), 2, 3, 9, 4, &Device::Cpu, KernelOptions::default()).unwrap();
        let (x, _) = examples(2, 4, 2, 8);
        let out_of_range = Tensor::from_vec(vec![3u32; 8], (2, 4), &Device::Cpu).unwrap();
        let err = m
            .loss_and_grads(&x, &out_of_range)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("below 3"), "{err}");
        let too_few = Tensor::from_vec(vec![0u32; 4], (1, 4), &Device::Cpu).unwrap();
        assert!(m.loss_and_grads(&x, &too_few).is_err());
    }

    #[test]
    fn wrong_input_width_is_an_error_not_a_panic() {
        let m =
            Transformer::new(&tiny(), 2, 3, 6, 1, &Device::Cpu, KernelOptions::default()).unwrap();
        let (x, y) = examples(1, 3, 4, 0);
        let err = m.forward(&x, &y).unwrap_err().to_string();
        assert!(err.contains("[1, 3, 4]"), "{err}");
    }
}
