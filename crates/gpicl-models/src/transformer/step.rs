//! The Transformer's training step written by hand on CPU: forward with
//! the activations kept in plain buffers, then the backward pass layer by
//! layer with the kernels of `gpicl_kernels::host`.
//!
//! The same mathematics as autograd through [`Transformer::forward_with`]
//! (the tests compare every gradient), without candle's graph: no op
//! records, no zero-filled gradient accumulators added to per use, no copies
//! of activations or gradients between tensors and vectors. On the
//! reference step that bookkeeping cost about a third of the step.

use super::Transformer;
use crate::error::{ModelError, Result};
use crate::linear::{LayerNorm, Linear};
use crate::{Gradients, LossAndGrads};
use gpicl_kernels::host::{self, AttentionShape, BufferPool};
use gpicl_kernels::{DType, Tensor};
use std::collections::HashMap;

/// One block's saved activations, each `[rows, width]`.
struct BlockActivations {
    input: Vec<f32>,
    ln_attn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attended: Vec<f32>,
    /// Every head's attention weights, `[b·heads, t, t]`.
    weights: Vec<f32>,
    mid: Vec<f32>,
    ln_mlp: Vec<f32>,
    hidden: Vec<f32>,
    activated: Vec<f32>,
    /// The `erf` (or `tanh`) of every GELU input, for its backward pass.
    gelu_kept: Vec<f32>,
}

/// Reads parameter data by tensor: every parameter tensor of the model is
/// borrowed once, in `ParamStore` order, for the whole step.
struct Params<'a> {
    slices: HashMap<candle_core::TensorId, &'a [f32]>,
    /// Where activation buffers come from and go back to.
    pool: &'a BufferPool,
    /// The linear layers' products in bf16 ([`gpicl_kernels::KernelOptions::bf16_matmuls`]).
    bf16: bool,
}

impl Params<'_> {
    fn get(&self, t: &Tensor) -> &[f32] {
        self.slices[&t.id()]
    }
}

/// Gradient buffers by parameter name, handed back in `ParamStore` order.
struct Grads {
    by_id: HashMap<candle_core::TensorId, Vec<f32>>,
}

impl Grads {
    fn take(&mut self, t: &Tensor) -> Vec<f32> {
        self.by_id.remove(&t.id()).unwrap_or_default()
    }

    fn put(&mut self, t: &Tensor, g: Vec<f32>) {
        self.by_id.insert(t.id(), g);
    }
}

fn linear_forward(p: &Params, layer: &Linear, x: &[f32]) -> Vec<f32> {
    let (w, b) = (p.get(&layer.weight), p.get(&layer.bias));
    let mut out = p.pool.take(x.len() / (w.len() / b.len()) * b.len());
    host::linear_forward(x, w, b, &mut out, p.bf16);
    out
}

/// Writes the weight and bias gradients of `layer`; returns `dx` if asked.
fn linear_backward(
    p: &Params,
    grads: &mut Grads,
    layer: &Linear,
    x: &[f32],
    grad: &[f32],
    want_dx: bool,
) -> Option<Vec<f32>> {
    let (w, b) = (p.get(&layer.weight), p.get(&layer.bias));
    let (mut dw, mut db) = (vec![0f32; w.len()], vec![0f32; b.len()]);
    let mut dx = want_dx.then(|| p.pool.take(x.len()));
    host::linear_backward(
        x,
        w,
        grad,
        dx.as_deref_mut(),
        &mut dw,
        &mut db,
        false,
        p.bf16,
    );
    grads.put(&layer.weight, dw);
    grads.put(&layer.bias, db);
    dx
}

fn layer_norm_forward(p: &Params, ln: &LayerNorm, x: &[f32]) -> Vec<f32> {
    let mut out = p.pool.take(x.len());
    host::layer_norm_forward(x, p.get(&ln.gain), p.get(&ln.bias), ln.eps as f32, &mut out);
    out
}

fn layer_norm_backward(
    p: &Params,
    grads: &mut Grads,
    ln: &LayerNorm,
    x: &[f32],
    grad: &[f32],
) -> Vec<f32> {
    let gain = p.get(&ln.gain);
    let mut dx = p.pool.take(x.len());
    let (mut dgain, mut dbias) = (vec![0f32; gain.len()], vec![0f32; gain.len()]);
    host::layer_norm_backward(
        x,
        grad,
        gain,
        ln.eps as f32,
        &mut dx,
        &mut dgain,
        &mut dbias,
    );
    grads.put(&ln.gain, dgain);
    grads.put(&ln.bias, dbias);
    dx
}

impl Transformer {
    /// The hand-written step on built tokens (a CPU `f32` tensor) whose
    /// targets are `targets`.
    pub(super) fn loss_and_grads_by_hand(
        &self,
        tokens: &Tensor,
        targets: &Tensor,
    ) -> Result<LossAndGrads> {
        let (b, t, _) = tokens.dims3()?;
        let classes = self.head.bias.dim(0)?;
        let targets: Vec<u32> = targets.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        if targets.len() != b * t {
            return Err(ModelError::Input {
                got: vec![targets.len()],
                expected: format!("{} targets, one per position of [{b}, {t}]", b * t),
            });
        }
        if let Some(bad) = targets.iter().find(|&&y| y as usize >= classes) {
            return Err(ModelError::Input {
                got: vec![*bad as usize],
                expected: format!("target classes below {classes}"),
            });
        }
        let vars: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, v)| v.as_tensor().clone())
            .collect();
        let mut all: Vec<&Tensor> = vars.iter().collect();
        all.push(tokens);
        let started = std::time::Instant::now();
        let (loss, logits, mut grads, forward_seconds) = host::with_tensor_data(&all, |slices| {
            let (param_slices, token_data) = slices.split_at(vars.len());
            let params = Params {
                slices: vars
                    .iter()
                    .zip(param_slices)
                    .map(|(v, s)| (v.id(), *s))
                    .collect(),
                pool: &self.scratch,
                bf16: self.options.bf16_matmuls,
            };
            self.step_on_slices(&params, token_data[0], &targets, b, t, started)
        })?;
        let in_store_order = vars.iter().map(|v| grads.take(v)).collect::<Vec<_>>();
        let grads = Gradients::from_store_order(&self.params, in_store_order)?;
        Ok(LossAndGrads {
            loss,
            grads,
            logits: Tensor::from_vec(logits, (b, t, classes), tokens.device())?,
            forward_seconds,
        })
    }

    fn step_on_slices(
        &self,
        p: &Params,
        tokens: &[f32],
        targets: &[u32],
        b: usize,
        t: usize,
        started: std::time::Instant,
    ) -> (f32, Vec<f32>, Grads, f64) {
        let d = self.cfg.d_model;
        let rows = b * t;
        let shape = AttentionShape {
            batch: b,
            t,
            heads: self.cfg.num_heads,
            key: self.cfg.key_size,
        };
        let tanh = self.cfg.gelu_tanh;

        // Forward.
        let widened;
        let tokens = if self.cfg.previous_token_input {
            widened = crate::tokens::with_previous_on_host(tokens, t, self.token_width);
            &widened[..]
        } else {
            tokens
        };
        let mut h = linear_forward(p, &self.embed, tokens);
        // With an input LayerNorm, `embedded` keeps its input for the backward pass.
        let embedded = self.embed_ln.as_ref().map(|ln| {
            let normed = layer_norm_forward(p, ln, &h);
            std::mem::replace(&mut h, normed)
        });
        if let Some(pos) = &self.pos {
            let pos = &p.get(pos)[..t * d];
            h.chunks_exact_mut(t * d)
                .for_each(|seq| host::add_assign(seq, pos));
        }
        let rotary = &self.rotary;
        let mut saved = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let ln_attn = layer_norm_forward(p, &block.ln_attn, &h);
            let (mut q, mut k, v) = (
                linear_forward(p, &block.q, &ln_attn),
                linear_forward(p, &block.k, &ln_attn),
                linear_forward(p, &block.v, &ln_attn),
            );
            // Kept rotated: the attention's backward pass reads them so.
            if let Some(table) = rotary {
                table.rotate_rows(&mut q, t, shape.heads, false);
                table.rotate_rows(&mut k, t, shape.heads, false);
            }
            let mut attended = p.pool.take(q.len());
            let mut weights = p.pool.take(shape.weights_len());
            host::causal_attention_forward_keeping_weights(
                &q,
                &k,
                &v,
                shape,
                &mut attended,
                &mut weights,
            );
            let mut mid = linear_forward(p, &block.out, &attended);
            host::add_assign(&mut mid, &h);
            let ln_mlp = layer_norm_forward(p, &block.ln_mlp, &mid);
            let hidden = linear_forward(p, &block.fc_in, &ln_mlp);
            let mut activated = p.pool.take(hidden.len());
            let mut gelu_kept = p.pool.take(hidden.len());
            host::gelu_forward_keeping(&hidden, tanh, &mut activated, &mut gelu_kept);
            let mut next = linear_forward(p, &block.fc_out, &activated);
            host::add_assign(&mut next, &mid);
            saved.push(BlockActivations {
                input: std::mem::replace(&mut h, next),
                ln_attn,
                q,
                k,
                v,
                attended,
                weights,
                mid,
                ln_mlp,
                hidden,
                activated,
                gelu_kept,
            });
        }
        let ln_final = layer_norm_forward(p, &self.ln_final, &h);
        let logits = linear_forward(p, &self.head, &ln_final);
        let classes = logits.len() / rows;
        let loss = host::cross_entropy_forward(&logits, targets, classes);
        let forward_seconds = started.elapsed().as_secs_f64();

        // Backward.
        let mut grads = Grads {
            by_id: HashMap::new(),
        };
        let mut d_logits = vec![0f32; logits.len()];
        host::cross_entropy_backward(&logits, targets, classes, 1.0 / rows as f32, &mut d_logits);
        let d_ln_final = linear_backward(p, &mut grads, &self.head, &ln_final, &d_logits, true)
            .expect("dx requested");
        let mut dh = layer_norm_backward(p, &mut grads, &self.ln_final, &h, &d_ln_final);
        for (block, a) in self.blocks.iter().zip(&saved).rev() {
            // next = mid + fc_out(gelu(fc_in(ln_mlp(mid)))): dh reaches both.
            let d_activated =
                linear_backward(p, &mut grads, &block.fc_out, &a.activated, &dh, true)
                    .expect("dx requested");
            let mut d_hidden = p.pool.take(a.hidden.len());
            host::gelu_backward_kept(&a.hidden, &a.gelu_kept, &d_activated, tanh, &mut d_hidden);
            let d_ln_mlp = linear_backward(p, &mut grads, &block.fc_in, &a.ln_mlp, &d_hidden, true)
                .expect("dx requested");
            let d_mid_norm = layer_norm_backward(p, &mut grads, &block.ln_mlp, &a.mid, &d_ln_mlp);
            host::add_assign(&mut dh, &d_mid_norm);
            p.pool
                .recycle([d_activated, d_hidden, d_ln_mlp, d_mid_norm]);
            // mid = input + out(attention(q, k, v)).
            let d_attended = linear_backward(p, &mut grads, &block.out, &a.attended, &dh, true)
                .expect("dx requested");
            let (mut dq, mut dk, mut dv) = (
                p.pool.take(a.q.len()),
                p.pool.take(a.k.len()),
                p.pool.take(a.v.len()),
            );
            host::causal_attention_backward_with_weights(
                &a.q,
                &a.k,
                &a.v,
                &a.weights,
                &d_attended,
                shape,
                &mut dq,
                &mut dk,
                &mut dv,
            );
            // Back through the rotation (orthogonal: its inverse is its transpose).
            if let Some(table) = rotary {
                table.rotate_rows(&mut dq, t, shape.heads, true);
                table.rotate_rows(&mut dk, t, shape.heads, true);
            }
            let mut d_ln_attn = linear_backward(p, &mut grads, &block.q, &a.ln_attn, &dq, true)
                .expect("dx requested");
            for (layer, d) in [(&block.k, &dk), (&block.v, &dv)] {
                let part = linear_backward(p, &mut grads, layer, &a.ln_attn, d, true)
                    .expect("dx requested");
                host::add_assign(&mut d_ln_attn, &part);
                p.pool.recycle([part]);
            }
            let d_input_norm =
                layer_norm_backward(p, &mut grads, &block.ln_attn, &a.input, &d_ln_attn);
            host::add_assign(&mut dh, &d_input_norm);
            p.pool
                .recycle([d_attended, dq, dk, dv, d_ln_attn, d_input_norm]);
        }
        // h0 = embed(tokens) + pos: the positional gradient sums over sequences.
        if let Some(pos) = &self.pos {
            let mut d_pos = vec![0f32; p.get(pos).len()];
            for seq in dh.chunks_exact(t * d) {
                host::add_assign(&mut d_pos[..t * d], seq);
            }
            grads.put(pos, d_pos);
        }
        let d_embedded = match (&self.embed_ln, &embedded) {
            (Some(ln), Some(input)) => {
                let d = layer_norm_backward(p, &mut grads, ln, input, &dh);
                p.pool.recycle([std::mem::replace(&mut dh, d)]);
                &dh
            }
            _ => &dh,
        };
        // Tokens are data: no input gradient.
        linear_backward(p, &mut grads, &self.embed, tokens, d_embedded, false);
        if let Some(input) = embedded {
            p.pool.recycle([input]);
        }
        // Every activation goes back to the pool for the next step.
        p.pool.recycle([h, dh, ln_final, d_ln_final]);
        for a in saved {
            p.pool.recycle([
                a.input,
                a.ln_attn,
                a.q,
                a.k,
                a.v,
                a.attended,
                a.weights,
                a.mid,
                a.ln_mlp,
                a.hidden,
                a.activated,
                a.gelu_kept,
            ]);
        }
        (loss, logits, grads, forward_seconds)
    }
}
