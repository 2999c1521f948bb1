//! The slice loops of the fused VSML op ([`super::vsml_layer`]): one
//! sequence forward (optionally keeping its trace) and backward, and the
//! per-tick loops they run over every cell of the grid.

use super::VsmlDims;
use crate::cpu::matmul_serial;
use crate::math::{sigmoid, tanh};
use crate::simd::simd_fn;

/// The packed parameters, split.
pub(super) struct Weights<'a> {
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
pub(super) fn offsets(d: &VsmlDims) -> [usize; 9] {
    let (g4, m, h) = (4 * d.hidden, d.msg, d.hidden);
    let mut at = [0usize; 9];
    let lens = [(m + 1) * g4, (m + 1) * g4, h * g4, g4, h * m, m, h * m, m];
    for (k, len) in lens.iter().enumerate() {
        at[k + 1] = at[k] + len;
    }
    at
}

pub(super) fn split<'a>(p: &'a [f32], d: &VsmlDims) -> Weights<'a> {
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

/// The transposed weights the backward pass multiplies by, made once per
/// backward pass rather than once per sequence.
pub(super) struct Transposed {
    w_f: Vec<f32>,
    w_b: Vec<f32>,
    w_in: Vec<f32>,
    w_cls: Vec<f32>,
}

impl Transposed {
    pub(super) fn of(w: &Weights, d: &VsmlDims) -> Self {
        let (m, hid, g4) = (d.msg, d.hidden, 4 * d.hidden);
        Self {
            w_f: transposed(w.w_f, hid, m),
            w_b: transposed(w.w_b, hid, m),
            w_in: transposed(&w.w_in[..m * g4], m, g4),
            w_cls: transposed(&w.w_cls[..m * g4], m, g4),
        }
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

/// One sequence's logits (`[t, C]`), keeping nothing.
pub(super) fn sequence_logits(tokens: &[f32], w: &Weights, d: &VsmlDims, logits: &mut [f32]) {
    sequence_forward(tokens, w, d, logits, None);
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
pub(super) fn sequence_backward(
    tokens: &[f32],
    d_logits: &[f32],
    params: &[f32],
    transposed_weights: &Transposed,
    d: &VsmlDims,
) -> Vec<f32> {
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
    let Transposed {
        w_f: w_f_t,
        w_b: w_b_t,
        w_in: w_in_t,
        w_cls: w_cls_t,
    } = transposed_weights;
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
            add_vec_mat(&mut d_mean_c[k * hid..(k + 1) * hid], g, w_f_t);
        }
        for i in 0..ni {
            let g = &d_to_in[i * m..(i + 1) * m];
            add_outer(g_w_b, &mean_i[i * hid..(i + 1) * hid], g);
            g_b_b.iter_mut().zip(g).for_each(|(x, &v)| *x += v);
            add_vec_mat(&mut d_mean_i[i * hid..(i + 1) * hid], g, w_b_t);
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
            add_vec_mat(&mut d_to_in[i * m..(i + 1) * m], g, w_in_t);
        }
        for k in 0..nc {
            let g = &d_b[k * g4..(k + 1) * g4];
            add_outer(&mut g_w_cls[..m * g4], &pos.to_cls[k * m..(k + 1) * m], g);
            add_outer(&mut g_w_cls[m * g4..], &token[ni + k..ni + k + 1], g);
            g_bias.iter_mut().zip(g).for_each(|(x, &v)| *x += v);
            add_vec_mat(&mut d_to_cls[k * m..(k + 1) * m], g, w_cls_t);
        }
    }
    grad
}
