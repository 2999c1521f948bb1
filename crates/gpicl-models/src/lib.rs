//! Sequence models that map a stream of examples — features `x_t` and
//! labels `y_t`, read as `[x_t, onehot(y_{t-1})]` tokens ([`tokens`]) — to
//! logits for `y_t`, causally in time.
//!
//! Pipeline position: `kernels ← models ← meta, eval`. Models know nothing
//! about datasets or optimisers: they own named parameters ([`ParamStore`]),
//! are built from a [`ModelConfig`] with a seeded initialiser, and implement
//! [`SequenceModel`].
//!
//! ```
//! use gpicl_models::{build_model, ModelConfig, TransformerConfig};
//! let cfg = ModelConfig::transformer(TransformerConfig { d_model: 64, ..Default::default() });
//! let options = gpicl_kernels::KernelOptions::default();
//! let model = build_model(&cfg, 196, 10, 100, 0, &gpicl_kernels::Device::Cpu, options).unwrap();
//! assert_eq!(model.param_count(), 419_274); // the paper's reference count
//! ```
#![warn(missing_docs)]

pub mod activations;
pub mod config;
pub mod context;
pub mod error;
pub mod gradients;
pub mod init;
pub mod kind;
pub mod linear;
pub mod lstm;
pub mod mlp;
pub mod online;
pub mod outer_lstm;
pub mod params;
#[cfg(test)]
mod testing;
pub mod tokens;
pub mod transformer;
pub mod vsml;

pub use config::ModelConfig;
pub use context::ContextCache;
pub use error::{ModelError, Result};
pub use gradients::Gradients;
pub use kind::ModelKind;
pub use lstm::Lstm;
pub use lstm::LstmConfig;
pub use mlp::Mlp;
pub use mlp::MlpConfig;
pub use online::Maml;
pub use online::OnlineLearnerConfig;
pub use outer_lstm::OuterLstm;
pub use outer_lstm::OuterLstmConfig;
pub use params::ParamStore;
pub use transformer::Transformer;
pub use transformer::{Positions, TransformerConfig};
pub use vsml::Vsml;
pub use vsml::VsmlConfig;

use gpicl_kernels::{Device, KernelOptions, Tensor};

/// A causal sequence model: examples in (`inputs` `[batch, t, n_x]`,
/// `labels` `[batch, t]`), logits `[batch, t, classes]` out, where the
/// output at position `t` depends only on the features up to `t` and the
/// labels before `t`. Each model reads them through the one token layout
/// ([`tokens`]).
pub trait SequenceModel: Send + Sync {
    /// Logits for every position of `inputs` (`[batch, t, n_x]`) with their
    /// `labels` (`[batch, t]`, `u32`): position `t` predicts `labels[t]`
    /// from the examples before it and `inputs[t]`.
    fn forward(&self, inputs: &Tensor, labels: &Tensor) -> Result<Tensor>;
    /// The trainable parameters, by name.
    fn params(&self) -> &ParamStore;
    /// Number of scalar parameters.
    fn param_count(&self) -> usize {
        self.params().count()
    }
    /// Size of the state the model can use to carry information along a
    /// sequence of `seq_len` examples (for a Transformer, its KV cache).
    fn state_size(&self, seq_len: usize) -> usize;
    /// The model's short name, e.g. `transformer`.
    fn kind(&self) -> ModelKind;
    /// Features per example the model reads (`n_x`).
    fn features(&self) -> usize;
    /// Label values it predicts.
    fn classes(&self) -> usize;
    /// Floating-point operations of one forward pass over `batch` sequences
    /// of `seq_len` examples, counting a multiply-add as two. The default
    /// treats every parameter as a weight used once per token, which is
    /// exact up to biases and elementwise work for dense recurrent models.
    fn forward_flops(&self, batch: usize, seq_len: usize) -> f64 {
        2.0 * (batch * seq_len) as f64 * self.param_count() as f64
    }
    /// The mean cross-entropy of one batch (each position's label is its
    /// target), the gradient of every parameter and the logits. The
    /// default runs candle's autograd through [`SequenceModel::forward`];
    /// a model with a hand-written training step overrides it.
    fn loss_and_grads(&self, inputs: &Tensor, labels: &Tensor) -> Result<LossAndGrads> {
        autograd_loss_and_grads(self, inputs, labels)
    }

    /// The kernel options the model's ops (and its training loss) run
    /// with, as it was built with them; the defaults for a model built
    /// without any (e.g. a baseline with nothing fused).
    fn kernel_options(&self) -> KernelOptions {
        KernelOptions::default()
    }

    /// Reads `m` contexts (`inputs` `[m, p, n_x]` and `labels` `[m, p]`,
    /// `p` below the longest sequence) once for many queries ([`context`]).
    /// The default keeps the examples; a model with a cache (the
    /// Transformer's keys and values) overrides it.
    fn read_context(&self, inputs: &Tensor, labels: &Tensor) -> Result<ContextCache> {
        let cache = ContextCache::examples_only(
            inputs,
            labels,
            self.features(),
            self.classes(),
            usize::MAX,
        )?;
        let logits = if cache.is_empty() {
            None
        } else {
            Some(self.forward(inputs, labels)?)
        };
        Ok(cache.with_logits(logits))
    }

    /// `[m, q, classes]`: for each of `queries` (`[m, q, n_x]`: row `j` for
    /// context `j`) the logits at the position after its context, equal to
    /// the last position of [`SequenceModel::forward`] over the context
    /// followed by the query. The default runs that whole sequence
    /// ([`context::query_logits_by_full_forward`]).
    fn query_logits(&self, cache: &ContextCache, queries: &Tensor) -> Result<Tensor> {
        context::query_logits_by_full_forward(self, cache, queries)
    }
}

/// What one training batch yields: see [`SequenceModel::loss_and_grads`].
pub struct LossAndGrads {
    /// Mean cross-entropy over every position.
    pub loss: f32,
    /// One flat gradient per parameter, by name (zeros for parameters the
    /// loss does not reach).
    pub grads: Gradients,
    /// `[batch, t, classes]`, detached from any graph.
    pub logits: Tensor,
    /// Seconds spent on the forward pass and the loss (the rest of the
    /// call is the backward pass), for benchmarks.
    pub forward_seconds: f64,
}

/// [`SequenceModel::loss_and_grads`] by autograd: forward, the loss of
/// [`gpicl_kernels::op::cross_entropy`] (fused on CPU, with the model's
/// [`SequenceModel::kernel_options`]) and candle's backward.
pub fn autograd_loss_and_grads<M: SequenceModel + ?Sized>(
    model: &M,
    inputs: &Tensor,
    labels: &Tensor,
) -> Result<LossAndGrads> {
    let started = std::time::Instant::now();
    let logits = model.forward(inputs, labels)?;
    let loss =
        gpicl_kernels::op::cross_entropy::cross_entropy(&logits, labels, model.kernel_options())?;
    let loss_value = loss.to_scalar::<f32>()?;
    let forward_seconds = started.elapsed().as_secs_f64();
    let grads = loss.backward()?;
    let in_store_order = model
        .params()
        .iter()
        .map(|(_, var)| match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all().and_then(|g| g.to_vec1()),
            None => Ok(vec![0.0; var.elem_count()]),
        })
        .collect::<candle_core::Result<_>>()?;
    let grads = Gradients::from_store_order(model.params(), in_store_order)?;
    Ok(LossAndGrads {
        loss: loss_value,
        grads,
        logits: logits.detach(),
        forward_seconds,
    })
}

/// Builds the model a config describes, with parameters drawn from the
/// seeded initialisation stream of `seed`, running its ops with `options`,
/// for examples of `features` features and `classes` label values.
pub fn build_model(
    cfg: &ModelConfig,
    features: usize,
    classes: usize,
    max_seq_len: usize,
    seed: u64,
    device: &Device,
    options: KernelOptions,
) -> Result<Box<dyn SequenceModel>> {
    cfg.validate()?;
    Ok(match cfg.kind {
        ModelKind::Transformer => Box::new(Transformer::new(
            &cfg.transformer,
            features,
            classes,
            max_seq_len,
            seed,
            device,
            options,
        )?),
        ModelKind::Lstm => Box::new(Lstm::new(
            &cfg.lstm, features, classes, seed, device, options,
        )?),
        ModelKind::OuterLstm => Box::new(OuterLstm::new(
            &cfg.outer_lstm,
            features,
            classes,
            seed,
            device,
            options,
        )?),
        ModelKind::Mlp => Box::new(Mlp::new(
            &cfg.mlp, features, classes, seed, device, options,
        )?),
        ModelKind::Maml => Box::new(Maml::new(
            &cfg.online,
            features,
            classes,
            seed,
            device,
            options,
        )?),
        ModelKind::Vsml => Box::new(Vsml::new(
            &cfg.vsml, features, classes, seed, device, options,
        )?),
    })
}
