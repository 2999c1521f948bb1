//! Sequence models that map a stream of `[x_t, onehot(y_{t-1})]` tokens to
//! logits for `y_t`, causally in time.
//!
//! Pipeline position: `kernels ← models ← meta, eval`. Models know nothing
//! about datasets or optimisers: they own named parameters ([`ParamStore`]),
//! are built from a [`ModelConfig`] with a seeded initialiser, and implement
//! [`SequenceModel`].
//!
//! ```
//! use gpicl_models::{build_model, ModelConfig};
//! let cfg = ModelConfig { d_model: 64, ..ModelConfig::default() };
//! let options = gpicl_kernels::KernelOptions::default();
//! let model = build_model(&cfg, 196 + 10, 10, 100, 0, &gpicl_kernels::Device::Cpu, options).unwrap();
//! assert_eq!(model.param_count(), 419_274); // the paper's reference count
//! ```
#![warn(missing_docs)]

pub mod activations;
pub mod config;
pub mod context;
pub mod error;
pub mod gradients;
pub mod init;
pub mod linear;
pub mod lstm;
pub mod mlp;
pub mod online;
pub mod outer_lstm;
pub mod params;
#[cfg(test)]
mod testing;
pub mod transformer;
pub mod vsml;

pub use config::{ModelConfig, ModelKind, Positions};
pub use context::ContextCache;
pub use error::{ModelError, Result};
pub use gradients::Gradients;
pub use lstm::Lstm;
pub use mlp::Mlp;
pub use online::Maml;
pub use outer_lstm::OuterLstm;
pub use params::ParamStore;
pub use transformer::Transformer;
pub use vsml::Vsml;

use gpicl_kernels::{Device, KernelOptions, Tensor};

/// A causal sequence model: `[batch, t, input_dim]` → `[batch, t, classes]`,
/// where the output at position `t` depends only on inputs `0..=t`.
pub trait SequenceModel: Send + Sync {
    /// Logits for every position.
    fn forward(&self, tokens: &Tensor) -> Result<Tensor>;
    /// The trainable parameters, by name.
    fn params(&self) -> &ParamStore;
    /// Number of scalar parameters.
    fn param_count(&self) -> usize {
        self.params().count()
    }
    /// Size of the state the model can use to carry information along a
    /// sequence of `seq_len` tokens (for a Transformer, its KV cache).
    fn state_size(&self, seq_len: usize) -> usize;
    /// The model's short name, e.g. `transformer`.
    fn kind(&self) -> ModelKind;
    /// Token width the model reads (`N_x + classes`).
    fn input_dim(&self) -> usize;
    /// Floating-point operations of one forward pass over `batch` sequences
    /// of `seq_len` tokens, counting a multiply-add as two. The default
    /// treats every parameter as a weight used once per token, which is
    /// exact up to biases and elementwise work for dense recurrent models.
    fn forward_flops(&self, batch: usize, seq_len: usize) -> f64 {
        2.0 * (batch * seq_len) as f64 * self.param_count() as f64
    }
    /// The mean cross-entropy of one batch (`targets`: `[batch, t]` class
    /// indices), the gradient of every parameter and the logits. The
    /// default runs candle's autograd through [`SequenceModel::forward`];
    /// a model with a hand-written training step overrides it.
    fn loss_and_grads(&self, tokens: &Tensor, targets: &Tensor) -> Result<LossAndGrads> {
        autograd_loss_and_grads(self, tokens, targets)
    }

    /// The kernel options the model's ops (and its training loss) run
    /// with, as it was built with them; the defaults for a model built
    /// without any (e.g. a baseline with nothing fused).
    fn kernel_options(&self) -> KernelOptions {
        KernelOptions::default()
    }

    /// Reads `m` contexts (`[m, p, n]` tokens, `p` below the longest
    /// sequence) once for many queries ([`context`]). The default keeps the
    /// tokens; a model with a cache (the Transformer's keys and values)
    /// overrides it.
    fn read_context(&self, context: &Tensor) -> Result<ContextCache> {
        context::check_context(context, self.input_dim(), usize::MAX)?;
        let logits = if context.dim(1)? > 0 {
            Some(self.forward(context)?)
        } else {
            None
        };
        Ok(ContextCache::tokens_only(context.clone(), logits))
    }

    /// `[m, q, classes]`: for each of `queries` (`[m, q, n]`: row `j` for
    /// context `j`) the logits at the position after its context, equal to
    /// the last position of [`SequenceModel::forward`] over
    /// `context ++ [query]`. The default runs that whole sequence
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
    tokens: &Tensor,
    targets: &Tensor,
) -> Result<LossAndGrads> {
    let started = std::time::Instant::now();
    let logits = model.forward(tokens)?;
    let loss =
        gpicl_kernels::op::cross_entropy::cross_entropy(&logits, targets, model.kernel_options())?;
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
/// seeded initialisation stream of `seed`, running its ops with `options`.
pub fn build_model(
    cfg: &ModelConfig,
    input_dim: usize,
    classes: usize,
    max_seq_len: usize,
    seed: u64,
    device: &Device,
    options: KernelOptions,
) -> Result<Box<dyn SequenceModel>> {
    cfg.validate()?;
    Ok(match cfg.kind {
        ModelKind::Transformer => Box::new(Transformer::new(
            cfg,
            input_dim,
            classes,
            max_seq_len,
            seed,
            device,
            options,
        )?),
        ModelKind::Lstm => Box::new(Lstm::new(cfg, input_dim, classes, seed, device, options)?),
        ModelKind::OuterLstm => Box::new(OuterLstm::new(
            cfg, input_dim, classes, seed, device, options,
        )?),
        ModelKind::Mlp => Box::new(Mlp::new(cfg, input_dim, classes, seed, device, options)?),
        ModelKind::Maml => Box::new(Maml::new(cfg, input_dim, classes, seed, device, options)?),
        ModelKind::Vsml => Box::new(Vsml::new(cfg, input_dim, classes, seed, device)?),
    })
}

/// Features per example in tokens of width `input_dim` (the rest is the
/// one-hot previous label).
pub(crate) fn features_in(input_dim: usize, classes: usize) -> Result<usize> {
    input_dim
        .checked_sub(classes)
        .filter(|&n| n > 0)
        .ok_or_else(|| ModelError::Config {
            option: "input_dim",
            reason: format!(
                "{input_dim} inputs cannot hold {classes} label values and any features"
            ),
        })
}

/// Checks that `tokens` is `[batch, 1..=max_len, input_dim]`.
pub(crate) fn check_input(tokens: &Tensor, input_dim: usize, max_len: usize) -> Result<()> {
    let dims = tokens.dims();
    if dims.len() != 3 || dims[2] != input_dim || dims[1] == 0 || dims[1] > max_len || dims[0] == 0
    {
        let len = if max_len == usize::MAX {
            "t".to_string()
        } else {
            format!("t ≤ {max_len}")
        };
        return Err(ModelError::Input {
            got: dims.to_vec(),
            expected: format!(
                "[batch, {len}, {input_dim}] tokens (image features + one-hot previous label)"
            ),
        });
    }
    Ok(())
}
