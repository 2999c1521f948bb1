//! One VSML layer over a whole sequence as one fused op, with its
//! backward pass (BPTT through positions and micro-ticks).
//!
//! VSML (Kirsch & Schmidhuber 2021) runs one small LSTM per (input
//! feature, class) pair, all with the same parameters, that talk through
//! messages (`gpicl_models::vsml` explains the model). Composed from
//! candle ops, every position is a few dozen ops over `[b, I, C, H]`
//! tensors and candle's autograd keeps every micro-tick's intermediates:
//! 8.5 s and 1.8 GiB for 8 sequences at 7×7. [`vsml_layer`] runs all
//! positions of a sequence in one loop and keeps nothing: its backward
//! pass runs each sequence forward again, keeping that one sequence's
//! trace, and goes back through it, sequences in parallel.
//!
//! Two rewritings keep the work down without changing the function: the
//! input half of each LSTM's gate projection is computed once per input
//! unit and once per class (`A_i + B_c` instead of a product per cell),
//! and the messages are a linear map of the LSTMs' mean output (the
//! mean of a linear map, which the reference computes, reordered).

use crate::cpu::{f32_slice, matmul_serial};
use crate::math::{sigmoid, tanh};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use crate::simd::simd_fn;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// The sizes of a VSML layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VsmlDims {
    /// Input units (features), `I`.
    pub inputs: usize,
    /// Output units (classes), `C`.
    pub classes: usize,
    /// Message size, `m`.
    pub msg: usize,
    /// Hidden size of each LSTM, `H`.
    pub hidden: usize,
    /// LSTM steps per position.
    pub micro_ticks: usize,
}

impl VsmlDims {
    /// Rows of the LSTMs' gate projection: `[to_input, x]`,
    /// `[to_class, y]` (each `m + 1`), then the LSTM's own `h`.
    pub fn cell_rows(&self) -> usize {
        2 * (self.msg + 1) + self.hidden
    }

    /// Length of the packed parameters [`vsml_layer`] takes: the gate
    /// projection's weight `[cell_rows, 4H]` and bias `[4H]`, then the
    /// forward messenger's weight `[H, m]` and bias `[m]`, then the
    /// backward messenger's weight `[H, m]` and bias `[m]`, each
    /// row-major, in this order.
    pub fn param_len(&self) -> usize {
        let g4 = 4 * self.hidden;
        self.cell_rows() * g4 + g4 + 2 * (self.hidden * self.msg + self.msg)
    }

    fn cells(&self) -> usize {
        self.inputs * self.classes
    }
}

/// One VSML layer over `tokens` (`[b, t, I + C]`: each position's features,
/// then the previous label's one-hot), with the packed parameters
/// `params` ([`VsmlDims::param_len`]): the logits `[b, t, C]`, class `c`'s
/// the first entry of its forward message after the position's
/// micro-ticks. From zero state and zero messages. The tokens are data
/// and get no gradient from the fused op. Runs the composed [`reference()`]
/// where the fused kernel does not apply, and on CUDA (no CUDA half yet).
pub fn vsml_layer(
    tokens: &Tensor,
    params: &Tensor,
    dims: VsmlDims,
    options: KernelOptions,
) -> Result<Tensor> {
    match options.backend(tokens) {
        Backend::Cpu => tokens
            .contiguous()?
            .apply_op2(&params.contiguous()?, VsmlLayer { dims }),
        _ => reference(tokens, params, dims),
    }
}

struct VsmlLayer {
    dims: VsmlDims,
}

/// The packed parameters, split.
struct Weights<'a> {
    /// `[m + 1, 4H]`: the rows reading `[to_input, x]`.
    w_in: &'a [f32],
    /// `[m + 1, 4H]`: the rows reading `[to_class, y]`.
    w_cls: &'a [f32],
    /// `[H, 4H]`: the rows reading the LSTM's `h`.
    w_h: &'a [f32],
    bias: &'a [f32],
    /// `[H, m]`, `[m]`: the forward (to classes) messenger.
    w_f: &'a [f32],
    b_f: &'a [f32],
    /// `[H, m]`, `[m]`: the backward (to inputs) messenger.
    w_b: &'a [f32],
    b_b: &'a [f32],
}

/// Offsets of the parameter blocks in the packed vector, in order.
fn offsets(d: &VsmlDims) -> [usize; 9] {
    let (g4, m, h) = (4 * d.hidden, d.msg, d.hidden);
    let mut at = [0usize; 9];
    let lens = [(m + 1) * g4, (m + 1) * g4, h * g4, g4, h * m, m, h * m, m];
    for (k, len) in lens.iter().enumerate() {
        at[k + 1] = at[k] + len;
    }
    at
}

fn split<'a>(p: &'a [f32], d: &VsmlDims) -> Weights<'a> {
    let at = offsets(d);
    let s = |k: usize| &p[at[k]..at[k + 1]];
    Weights {
        w_in: s(0),
        w_cls: s(1),
        w_h: s(2),
        bias: s(3),
        w_f: s(4),
        b_f: s(5),
        w_b: s(6),
        b_b: s(7),
    }
}

/// `[rows, cols]` row-major, transposed.
fn transposed(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

simd_fn! {
    /// `out[n] += Σ_k v[k] · w[k, n]` for `w: [v.len(), out.len()]`.
    fn add_vec_mat(out: &mut [f32], v: &[f32], w: &[f32]) {
        let n = out.len();
        for (k, &vk) in v.iter().enumerate() {
            for (o, &wk) in out.iter_mut().zip(&w[k * n..(k + 1) * n]) {
                *o += vk * wk;
            }
        }
    }
}

simd_fn! {
    /// `acc[k, n] += u[k] · v[n]`.
    fn add_outer(acc: &mut [f32], u: &[f32], v: &[f32]) {
        let n = v.len();
        for (k, &uk) in u.iter().enumerate() {
            for (a, &vn) in acc[k * n..(k + 1) * n].iter_mut().zip(v) {
                *a += uk * vn;
            }
        }
    }
}

/// One micro-tick of every cell of one sequence (`h`, `c`: `[I, C, H]`):
/// `gates = h · W_h + A_i + B_c` (`gates`: `[I, C, 4H]`, left holding the
/// activated gates `i, g, f, o`), then the LSTM update of `h` and `c` in
/// place (forget bias +1).
#[allow(clippy::too_many_arguments)]
fn tick_forward(
    a: &[f32],
    b: &[f32],
    w_h: &[f32],
    h: &mut [f32],
    c: &mut [f32],
    gates: &mut [f32],
    hidden: usize,
    classes: usize,
) {
    let cells = h.len() / hidden;
    matmul_serial(
        gates,
        h,
        false,
        w_h,
        false,
        cells,
        hidden,
        4 * hidden,
        false,
    );
    activate_and_update(a, b, gates, h, c, hidden, classes);
}

simd_fn! {
    /// The elementwise half of [`tick_forward`].
    fn activate_and_update(
        a: &[f32],
        b: &[f32],
        gates: &mut [f32],
        h: &mut [f32],
        c: &mut [f32],
        hidden: usize,
        classes: usize,
    ) {
        let g4 = 4 * hidden;
        for (cell, ((gates, hs), cs)) in gates
            .chunks_exact_mut(g4)
            .zip(h.chunks_exact_mut(hidden))
            .zip(c.chunks_exact_mut(hidden))
            .enumerate()
        {
            let (i, k) = (cell / classes, cell % classes);
            for ((g, &x), &y) in gates
                .iter_mut()
                .zip(&a[i * g4..(i + 1) * g4])
                .zip(&b[k * g4..(k + 1) * g4])
            {
                *g += x + y;
            }
            // Each gate in its own loop over contiguous values, so that
            // every loop vectorises.
            let (gi, rest) = gates.split_at_mut(hidden);
            let (gg, rest) = rest.split_at_mut(hidden);
            let (gf, go) = rest.split_at_mut(hidden);
            gi.iter_mut().for_each(|x| *x = sigmoid(*x));
            gg.iter_mut().for_each(|x| *x = tanh(*x));
            gf.iter_mut().for_each(|x| *x = sigmoid(*x + 1.0));
            go.iter_mut().for_each(|x| *x = sigmoid(*x));
            for ((hj, cj), (((&i, &g), &f), &o)) in hs
                .iter_mut()
                .zip(cs.iter_mut())
                .zip(gi.iter().zip(gg.iter()).zip(gf.iter()).zip(go.iter()))
            {
                let cn = f * *cj + i * g;
                *cj = cn;
                *hj = o * tanh(cn);
            }
        }
    }
}

/// One micro-tick of every cell backwards. `h_prev`, `c_prev`: the state
/// before the tick; `acts`: its activated gates; `dh`, `dc`: the gradients
/// of the state after it, replaced by those of the state before it. Adds
/// the gate gradients to `d_a` (per input unit) and `d_b` (per class) and
/// `h_prevᵀ · d_gates` to `d_w_h`; `dg` is scratch of `acts`' size.
#[allow(clippy::too_many_arguments)]
fn tick_backward(
    h_prev: &[f32],
    c_prev: &[f32],
    acts: &[f32],
    w_h: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    d_a: &mut [f32],
    d_b: &mut [f32],
    d_w_h: &mut [f32],
    dg: &mut [f32],
    hidden: usize,
    classes: usize,
) {
    let cells = h_prev.len() / hidden;
    let g4 = 4 * hidden;
    gate_gradients(c_prev, acts, dh, dc, d_a, d_b, dg, hidden, classes);
    matmul_serial(d_w_h, h_prev, true, dg, false, hidden, cells, g4, true);
    // dh_prev = d_gates · W_hᵀ
    matmul_serial(dh, dg, false, w_h, true, cells, g4, hidden, false);
}

simd_fn! {
    /// The elementwise half of [`tick_backward`]: the pre-activation
    /// gradients `dg`, `dc` carried back, `d_a`/`d_b` accumulated.
    fn gate_gradients(
        c_prev: &[f32],
        acts: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        d_a: &mut [f32],
        d_b: &mut [f32],
        dg: &mut [f32],
        hidden: usize,
        classes: usize,
    ) {
        let g4 = 4 * hidden;
        for (cell, ((((act, dgc), cp), dhc), dcc)) in acts
            .chunks_exact(g4)
            .zip(dg.chunks_exact_mut(g4))
            .zip(c_prev.chunks_exact(hidden))
            .zip(dh.chunks_exact(hidden))
            .zip(dc.chunks_exact_mut(hidden))
            .enumerate()
        {
            let (i, k) = (cell / classes, cell % classes);
            let (ai, rest) = act.split_at(hidden);
            let (ag, rest) = rest.split_at(hidden);
            let (af, ao) = rest.split_at(hidden);
            let (dgi, rest) = dgc.split_at_mut(hidden);
            let (dgg, rest) = rest.split_at_mut(hidden);
            let (dgf, dgo) = rest.split_at_mut(hidden);
            let gates = ai.iter().zip(ag).zip(af).zip(ao);
            let grads = dgi
                .iter_mut()
                .zip(dgg.iter_mut())
                .zip(dgf.iter_mut())
                .zip(dgo.iter_mut());
            let state = cp.iter().zip(dhc.iter()).zip(dcc.iter_mut());
            for ((((&gi, &gg), &gf), &go), ((((di, dgv), df), d_o), ((&cp, &dhj), dcj))) in
                gates.zip(grads.zip(state))
            {
                let tc = tanh(gf * cp + gi * gg);
                let dcn = dhj * go * (1.0 - tc * tc) + *dcj;
                *dcj = dcn * gf;
                *di = dcn * gg * gi * (1.0 - gi);
                *dgv = dcn * gi * (1.0 - gg * gg);
                *df = dcn * cp * gf * (1.0 - gf);
                *d_o = dhj * tc * go * (1.0 - go);
            }
            for (x, &g) in d_a[i * g4..(i + 1) * g4].iter_mut().zip(dgc.iter()) {
                *x += g;
            }
            for (x, &g) in d_b[k * g4..(k + 1) * g4].iter_mut().zip(dgc.iter()) {
                *x += g;
            }
        }
    }
}

/// What one position leaves for the backward pass.
struct PositionTrace {
    /// The messages the position read (`[I, m]`, `[C, m]`).
    to_in: Vec<f32>,
    to_cls: Vec<f32>,
    /// Per micro-tick: `h`, `c` before it and its activated gates.
    ticks: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    /// The state after the last tick, whose means the messengers read.
    h: Vec<f32>,
}

/// Runs one sequence (`tokens`: `[t, I + C]`), writing its logits
/// (`[t, C]`) and, when `trace` is given, what the backward pass needs.
fn sequence_forward(
    tokens: &[f32],
    w: &Weights,
    d: &VsmlDims,
    logits: &mut [f32],
    mut trace: Option<&mut Vec<PositionTrace>>,
) {
    let (ni, nc, m, hid) = (d.inputs, d.classes, d.msg, d.hidden);
    let g4 = 4 * hid;
    let width = ni + nc;
    let cells = d.cells();
    let (mut h, mut c) = (vec![0f32; cells * hid], vec![0f32; cells * hid]);
    let (mut to_in, mut to_cls) = (vec![0f32; ni * m], vec![0f32; nc * m]);
    let (mut a, mut b) = (vec![0f32; ni * g4], vec![0f32; nc * g4]);
    let (mut mean_c, mut mean_i) = (vec![0f32; nc * hid], vec![0f32; ni * hid]);
    let mut gates = vec![0f32; cells * g4];
    for (step, token) in tokens.chunks_exact(width).enumerate() {
        for i in 0..ni {
            let ai = &mut a[i * g4..(i + 1) * g4];
            ai.fill(0.0);
            add_vec_mat(ai, &to_in[i * m..(i + 1) * m], &w.w_in[..m * g4]);
            add_vec_mat(ai, &token[i..i + 1], &w.w_in[m * g4..]);
        }
        for k in 0..nc {
            let bk = &mut b[k * g4..(k + 1) * g4];
            bk.copy_from_slice(w.bias);
            add_vec_mat(bk, &to_cls[k * m..(k + 1) * m], &w.w_cls[..m * g4]);
            add_vec_mat(bk, &token[ni + k..ni + k + 1], &w.w_cls[m * g4..]);
        }
        let mut ticks = Vec::new();
        for _ in 0..d.micro_ticks {
            let (h_prev, c_prev) = match trace {
                Some(_) => (h.clone(), c.clone()),
                None => (Vec::new(), Vec::new()),
            };
            tick_forward(&a, &b, w.w_h, &mut h, &mut c, &mut gates, hid, nc);
            if trace.is_some() {
                ticks.push((h_prev, c_prev, gates.clone()));
            }
        }
        means(&h, d, &mut mean_c, &mut mean_i);
        if let Some(trace) = trace.as_deref_mut() {
            trace.push(PositionTrace {
                to_in: to_in.clone(),
                to_cls: to_cls.clone(),
                ticks,
                h: h.clone(),
            });
        }
        for k in 0..nc {
            let out = &mut to_cls[k * m..(k + 1) * m];
            out.copy_from_slice(w.b_f);
            add_vec_mat(out, &mean_c[k * hid..(k + 1) * hid], w.w_f);
            logits[step * nc + k] = out[0];
        }
        for i in 0..ni {
            let out = &mut to_in[i * m..(i + 1) * m];
            out.copy_from_slice(w.b_b);
            add_vec_mat(out, &mean_i[i * hid..(i + 1) * hid], w.w_b);
        }
    }
}

/// The LSTMs' mean output per class (over input units) and per input unit
/// (over classes).
fn means(h: &[f32], d: &VsmlDims, mean_c: &mut [f32], mean_i: &mut [f32]) {
    let (ni, nc, hid) = (d.inputs, d.classes, d.hidden);
    mean_c.fill(0.0);
    mean_i.fill(0.0);
    for i in 0..ni {
        for k in 0..nc {
            let hs = &h[(i * nc + k) * hid..(i * nc + k + 1) * hid];
            for j in 0..hid {
                mean_c[k * hid + j] += hs[j];
                mean_i[i * hid + j] += hs[j];
            }
        }
    }
    mean_c.iter_mut().for_each(|v| *v /= ni as f32);
    mean_i.iter_mut().for_each(|v| *v /= nc as f32);
}

/// The parameter gradient of one sequence, from its logits' gradient
/// (`[t, C]`): the sequence is run forward again keeping its trace.
fn sequence_backward(tokens: &[f32], d_logits: &[f32], params: &[f32], d: &VsmlDims) -> Vec<f32> {
    let w = split(params, d);
    let (ni, nc, m, hid) = (d.inputs, d.classes, d.msg, d.hidden);
    let g4 = 4 * hid;
    let width = ni + nc;
    let t = tokens.len() / width;
    let mut trace = Vec::with_capacity(t);
    let mut logits = vec![0f32; t * nc];
    sequence_forward(tokens, &w, d, &mut logits, Some(&mut trace));

    let at = offsets(d);
    let mut grad = vec![0f32; params.len()];
    let (g_w_in, rest) = grad.split_at_mut(at[1]);
    let (g_w_cls, rest) = rest.split_at_mut(at[2] - at[1]);
    let (g_w_h, rest) = rest.split_at_mut(at[3] - at[2]);
    let (g_bias, rest) = rest.split_at_mut(at[4] - at[3]);
    let (g_w_f, rest) = rest.split_at_mut(at[5] - at[4]);
    let (g_b_f, rest) = rest.split_at_mut(at[6] - at[5]);
    let (g_w_b, g_b_b) = rest.split_at_mut(at[7] - at[6]);

    let mut dg = vec![0f32; d.cells() * g4];
    let w_f_t = transposed(w.w_f, hid, m);
    let w_b_t = transposed(w.w_b, hid, m);
    let w_in_t = transposed(&w.w_in[..m * g4], m, g4);
    let w_cls_t = transposed(&w.w_cls[..m * g4], m, g4);
    let cells = d.cells();
    let (mut dh, mut dc) = (vec![0f32; cells * hid], vec![0f32; cells * hid]);
    // Gradients of the messages a position wrote, from the next one.
    let (mut d_to_in, mut d_to_cls) = (vec![0f32; ni * m], vec![0f32; nc * m]);
    let (mut mean_c, mut mean_i) = (vec![0f32; nc * hid], vec![0f32; ni * hid]);
    let (mut d_mean_c, mut d_mean_i) = (vec![0f32; nc * hid], vec![0f32; ni * hid]);
    let (mut d_a, mut d_b) = (vec![0f32; ni * g4], vec![0f32; nc * g4]);
    for step in (0..t).rev() {
        let pos = &trace[step];
        let token = &tokens[step * width..(step + 1) * width];
        for k in 0..nc {
            d_to_cls[k * m] += d_logits[step * nc + k];
        }
        means(&pos.h, d, &mut mean_c, &mut mean_i);
        d_mean_c.fill(0.0);
        d_mean_i.fill(0.0);
        for k in 0..nc {
            let g = &d_to_cls[k * m..(k + 1) * m];
            add_outer(g_w_f, &mean_c[k * hid..(k + 1) * hid], g);
            g_b_f.iter_mut().zip(g).for_each(|(x, &v)| *x += v);
            add_vec_mat(&mut d_mean_c[k * hid..(k + 1) * hid], g, &w_f_t);
        }
        for i in 0..ni {
            let g = &d_to_in[i * m..(i + 1) * m];
            add_outer(g_w_b, &mean_i[i * hid..(i + 1) * hid], g);
            g_b_b.iter_mut().zip(g).for_each(|(x, &v)| *x += v);
            add_vec_mat(&mut d_mean_i[i * hid..(i + 1) * hid], g, &w_b_t);
        }
        let (inv_i, inv_c) = (1.0 / ni as f32, 1.0 / nc as f32);
        for i in 0..ni {
            for k in 0..nc {
                let cell = i * nc + k;
                for j in 0..hid {
                    dh[cell * hid + j] +=
                        d_mean_c[k * hid + j] * inv_i + d_mean_i[i * hid + j] * inv_c;
                }
            }
        }
        d_a.fill(0.0);
        d_b.fill(0.0);
        for (h_prev, c_prev, acts) in pos.ticks.iter().rev() {
            tick_backward(
                h_prev, c_prev, acts, w.w_h, &mut dh, &mut dc, &mut d_a, &mut d_b, g_w_h, &mut dg,
                hid, nc,
            );
        }
        // A_i = [to_in_i, x_i] · W_in; B_c = [to_cls_c, y_c] · W_cls + bias.
        d_to_in.fill(0.0);
        d_to_cls.fill(0.0);
        for i in 0..ni {
            let g = &d_a[i * g4..(i + 1) * g4];
            add_outer(&mut g_w_in[..m * g4], &pos.to_in[i * m..(i + 1) * m], g);
            add_outer(&mut g_w_in[m * g4..], &token[i..i + 1], g);
            add_vec_mat(&mut d_to_in[i * m..(i + 1) * m], g, &w_in_t);
        }
        for k in 0..nc {
            let g = &d_b[k * g4..(k + 1) * g4];
            add_outer(&mut g_w_cls[..m * g4], &pos.to_cls[k * m..(k + 1) * m], g);
            add_outer(&mut g_w_cls[m * g4..], &token[ni + k..ni + k + 1], g);
            g_bias.iter_mut().zip(g).for_each(|(x, &v)| *x += v);
            add_vec_mat(&mut d_to_cls[k * m..(k + 1) * m], g, &w_cls_t);
        }
    }
    grad
}

impl VsmlLayer {
    fn check(&self, b_t_width: (usize, usize, usize), params: usize) -> Result<()> {
        let d = &self.dims;
        if b_t_width.2 != d.inputs + d.classes || params != d.param_len() {
            candle_core::bail!(
                "vsml-layer: tokens [.., .., {}] and {params} parameters do not fit {d:?} (expected {} wide tokens and {} parameters)",
                b_t_width.2,
                d.inputs + d.classes,
                d.param_len()
            );
        }
        Ok(())
    }
}

impl CustomOp2 for VsmlLayer {
    fn name(&self) -> &'static str {
        "vsml-layer"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, width) = l1.shape().dims3()?;
        self.check((b, t, width), l2.shape().elem_count())?;
        let (tokens, params) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
        );
        let d = self.dims;
        let w = split(params, &d);
        let mut logits = vec![0f32; b * t * d.classes];
        if t > 0 {
            logits
                .par_chunks_mut(t * d.classes)
                .zip(tokens.par_chunks(t * width))
                .for_each(|(out, seq)| sequence_forward(seq, &w, &d, out, None));
        }
        Ok((CpuStorage::F32(logits), Shape::from((b, t, d.classes))))
    }

    fn bwd(
        &self,
        tokens: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, width) = tokens.dims3()?;
        let d = self.dims;
        let tokens_v: Vec<f32> = tokens.flatten_all()?.to_vec1()?;
        let params_v: Vec<f32> = params.flatten_all()?.to_vec1()?;
        let grad_v: Vec<f32> = grad_res.contiguous()?.flatten_all()?.to_vec1()?;
        let mut total = vec![0f32; params_v.len()];
        if t > 0 {
            let per_sequence: Vec<Vec<f32>> = (0..b)
                .into_par_iter()
                .map(|s| {
                    sequence_backward(
                        &tokens_v[s * t * width..(s + 1) * t * width],
                        &grad_v[s * t * d.classes..(s + 1) * t * d.classes],
                        &params_v,
                        &d,
                    )
                })
                .collect();
            // Summed in sequence order, so the result does not depend on
            // how many threads ran.
            for g in &per_sequence {
                total.iter_mut().zip(g).for_each(|(x, &v)| *x += v);
            }
        }
        let grad = Tensor::from_vec(total, params.shape(), params.device())?;
        Ok((None, Some(grad)))
    }
}

/// The layer composed from candle ops, position by position: the
/// definition the fused op is tested against, and its path where it does
/// not apply. Every intermediate is kept for candle's autograd.
pub fn reference(tokens: &Tensor, params: &Tensor, dims: VsmlDims) -> Result<Tensor> {
    let (b, t, _) = tokens.dims3()?;
    let VsmlDims {
        inputs: i_n,
        classes: c_n,
        msg: m,
        hidden: h_n,
        micro_ticks,
    } = dims;
    let g4 = 4 * h_n;
    let at = offsets(&dims);
    let block = |k: usize, shape: (usize, usize)| {
        params.narrow(0, at[k], at[k + 1] - at[k])?.reshape(shape)
    };
    let w_cell = Tensor::cat(
        &[
            block(0, (m + 1, g4))?,
            block(1, (m + 1, g4))?,
            block(2, (h_n, g4))?,
        ],
        0,
    )?;
    let bias = params.narrow(0, at[3], g4)?;
    let (w_f, b_f) = (block(4, (h_n, m))?, params.narrow(0, at[5], m)?);
    let (w_b, b_b) = (block(6, (h_n, m))?, params.narrow(0, at[7], m)?);
    let affine = |x: &Tensor, w: &Tensor, bias: &Tensor| -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let out = x
            .reshape((rows, dims[dims.len() - 1]))?
            .matmul(w)?
            .broadcast_add(bias)?;
        let mut shape = dims;
        *shape.last_mut().expect("rank ≥ 1") = w.dim(1)?;
        out.reshape(shape)
    };
    let sigmoid = |x: &Tensor| -> Result<Tensor> { ((x * 0.5)?.tanh()? + 1.0)?.affine(0.5, 0.0) };
    let device = tokens.device();
    let mut h = Tensor::zeros((b, i_n, c_n, h_n), tokens.dtype(), device)?;
    let mut c = h.clone();
    let mut to_classes = Tensor::zeros((b, c_n, m), tokens.dtype(), device)?;
    let mut to_inputs = Tensor::zeros((b, i_n, m), tokens.dtype(), device)?;
    let mut logits = Vec::with_capacity(t);
    for step in 0..t {
        let token = tokens.narrow(1, step, 1)?.squeeze(1)?;
        let x = token.narrow(1, 0, i_n)?.unsqueeze(2)?;
        let y = token.narrow(1, i_n, c_n)?.unsqueeze(2)?;
        let from_inputs = Tensor::cat(&[&to_inputs, &x], 2)?; // [b, I, m+1]
        let from_classes = Tensor::cat(&[&to_classes, &y], 2)?; // [b, C, m+1]
        let inputs = Tensor::cat(
            &[
                &from_inputs
                    .unsqueeze(2)?
                    .broadcast_as((b, i_n, c_n, m + 1))?,
                &from_classes
                    .unsqueeze(1)?
                    .broadcast_as((b, i_n, c_n, m + 1))?,
            ],
            3,
        )?;
        for _ in 0..micro_ticks {
            let gates = affine(&Tensor::cat(&[&inputs, &h], 3)?, &w_cell, &bias)?;
            let gate = |k: usize| gates.narrow(3, k * h_n, h_n);
            let (i_gate, g_gate, f_gate, o_gate) = (gate(0)?, gate(1)?, gate(2)?, gate(3)?);
            c = ((sigmoid(&(f_gate + 1.0)?)? * &c)? + (sigmoid(&i_gate)? * g_gate.tanh()?)?)?;
            h = (sigmoid(&o_gate)? * c.tanh()?)?;
        }
        to_classes = affine(&h, &w_f, &b_f)?.mean(1)?; // [b, C, m]
        to_inputs = affine(&h, &w_b, &b_b)?.mean(2)?; // [b, I, m]
        logits.push(to_classes.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?);
    }
    Tensor::stack(&logits, 1)
}

/// The parity case of [`vsml_layer`]: odd sizes, gradients of the
/// parameters (the tokens are data).
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    let dims = VsmlDims {
        inputs: 3,
        classes: 4,
        msg: 2,
        hidden: 3,
        micro_ticks: 2,
    };
    // The tokens are data: fixed in both closures, not an input.
    let tokens = random_tensor(&[2, 5, 7], 31, 1.0)?;
    let fused_tokens = tokens.clone();
    Ok(vec![Case::new(
        "vsml_layer [2,5,3+4] m2 h3 ticks2".to_string(),
        &["params"],
        vec![random_tensor(&[dims.param_len()], 32, 0.4)?],
        move |x, device| {
            vsml_layer(
                &fused_tokens.to_device(device)?,
                &x[0],
                dims,
                KernelOptions::default(),
            )
        },
        move |x| reference(&tokens, &x[0], dims),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn flat(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Tokens as the model builds them: features, then a one-hot label.
    fn tokens(b: usize, t: usize, d: &VsmlDims, seed: u64) -> Tensor {
        let x = random_tensor(&[b, t, d.inputs], seed, 1.0).unwrap();
        let mut onehot = vec![0f32; b * t * d.classes];
        for (p, row) in onehot.chunks_exact_mut(d.classes).enumerate() {
            row[(p * 7 + seed as usize) % d.classes] = 1.0;
        }
        let y = Tensor::from_vec(onehot, (b, t, d.classes), &Device::Cpu).unwrap();
        Tensor::cat(&[&x, &y], 2).unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn fused_matches_composed_forward_and_gradients_on_odd_shapes() {
        for (b, t, inputs, classes, msg, hidden, micro_ticks) in [
            (1, 1, 1, 1, 1, 1, 1),
            (2, 6, 3, 4, 2, 3, 2),
            (3, 9, 5, 2, 4, 5, 3),
            (1, 4, 7, 10, 8, 16, 2),
        ] {
            let d = VsmlDims {
                inputs,
                classes,
                msg,
                hidden,
                micro_ticks,
            };
            let tok = tokens(b, t, &d, 3);
            let p = Var::from_tensor(&random_tensor(&[d.param_len()], 4, 0.4).unwrap()).unwrap();
            let weights = random_tensor(&[b, t, classes], 5, 1.0).unwrap();
            let fused = vsml_layer(&tok, p.as_tensor(), d, KernelOptions::default()).unwrap();
            let composed = reference(&tok, p.as_tensor(), d).unwrap();
            assert_eq!(fused.dims(), &[b, t, classes]);
            close(&flat(&fused), &flat(&composed), 1e-5, "forward");
            let grad = |out: Tensor| {
                let g = (out * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                flat(g.get(p.as_tensor()).unwrap())
            };
            close(&grad(fused), &grad(composed), 1e-4, &format!("grad {d:?}"));
        }
    }

    #[test]
    fn fused_gradient_matches_finite_differences() {
        let d = VsmlDims {
            inputs: 3,
            classes: 3,
            msg: 2,
            hidden: 2,
            micro_ticks: 2,
        };
        let tok = tokens(2, 5, &d, 7);
        let weights = random_tensor(&[2, 5, 3], 8, 1.0).unwrap();
        let base = flat(&random_tensor(&[d.param_len()], 9, 0.5).unwrap());
        let loss = |p: &[f32]| -> f64 {
            let p = Tensor::from_vec(p.to_vec(), p.len(), &Device::Cpu).unwrap();
            (vsml_layer(&tok, &p, d, KernelOptions::default()).unwrap() * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let p =
            Var::from_tensor(&Tensor::from_vec(base.clone(), base.len(), &Device::Cpu).unwrap())
                .unwrap();
        let g = (vsml_layer(&tok, p.as_tensor(), d, KernelOptions::default()).unwrap() * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = flat(g.get(p.as_tensor()).unwrap());
        // One parameter of every block (gate rows, bias, both messengers).
        for &k in &offsets(&d)[..8] {
            let eps = 1e-2f32;
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[k] += eps;
            minus[k] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
            assert!(
                (numeric - g[k] as f64).abs() < 2e-3 + 1e-2 * numeric.abs(),
                "param {k}: {numeric} vs {}",
                g[k]
            );
        }
    }

    #[test]
    fn mismatched_parameters_are_refused_with_the_expected_sizes() {
        let d = VsmlDims {
            inputs: 2,
            classes: 2,
            msg: 2,
            hidden: 2,
            micro_ticks: 1,
        };
        let tok = tokens(1, 3, &d, 1);
        let short = random_tensor(&[d.param_len() - 1], 2, 1.0).unwrap();
        let err = vsml_layer(&tok, &short, d, KernelOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{} parameters", d.param_len())),
            "{err}"
        );
    }
}
