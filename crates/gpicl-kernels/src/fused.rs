//! Fused CPU kernels for the Transformer: linear layers with their bias,
//! LayerNorm, GELU and causal multi-head attention, each one op forward
//! and one pass backward,
//! multi-threaded over rows or heads with rayon.
//!
//! Composed from candle primitives, a LayerNorm is eight ops forward (each
//! a fresh allocation and mostly single-threaded) and more backward, with
//! reductions over broadcast dimensions; causal attention materialises
//! scores, mask, exponentials and weights for every head. These kernels
//! compute the same functions as [`crate::ops`] (the reference they are
//! tested against) in one pass each. They run on CPU `f32` tensors; callers
//! use the composed ops on other devices (see [`use_fused`]).

use crate::cpu::{f32_slice, matmul};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

static DISABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the fused kernels off (or back on) for the whole process, e.g. to
/// time the composed reference; `GPICL_FUSED_KERNELS=0` does the same.
pub fn set_enabled(enabled: bool) {
    DISABLED.store(!enabled, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the fused kernels apply to `x`: a CPU `f32` tensor, with the
/// kernels enabled.
pub fn use_fused(x: &Tensor) -> bool {
    static ENV_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| {
        std::env::var("GPICL_FUSED_KERNELS").is_ok_and(|v| v == "0" || v == "false")
    });
    !env_off
        && !DISABLED.load(std::sync::atomic::Ordering::Relaxed)
        && x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
}

/// Rows per rayon task: big enough to amortise scheduling.
fn rows_per_task(rows: usize, width: usize) -> usize {
    (16_384 / width.max(1)).clamp(1, rows.max(1))
}

// ------------------------------------------------------------------- Linear

/// `x W + b` over the last dimension of `x` (`[.., in]`, `W: [in, out]`,
/// `b: [out]`), with the products on `gemm` forward and backward and the
/// bias gradient a parallel column sum.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, LinearOp)
}

struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let (k, n) = l2.shape().dims2()?;
        let dims = l1.dims();
        if dims.last() != Some(&k) || b.len() != n {
            candle_core::bail!(
                "fused-linear: input {:?}, weight [{k}, {n}] and bias [{}] do not fit",
                dims,
                b.len()
            );
        }
        let m = x.len() / k;
        let mut out = vec![0f32; m * n];
        // Start from the bias so that the product accumulates onto it.
        out.par_chunks_mut(n).for_each(|row| row.copy_from_slice(b));
        matmul(&mut out, x, false, w, false, m, k, n, true);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (k, n) = weight.dims2()?;
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let gs: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
        let m = xs.len() / k;
        let mut dx = vec![0f32; m * k];
        matmul(&mut dx, &gs, false, &w, true, m, n, k, false);
        let mut dw = vec![0f32; k * n];
        matmul(&mut dw, &xs, true, &gs, false, k, m, n, false);
        let rows = rows_per_task(m, n);
        let db = gs
            .par_chunks(rows * n)
            .map(|chunk| {
                let mut acc = vec![0f32; n];
                for row in chunk.chunks_exact(n) {
                    for (a, g) in acc.iter_mut().zip(row) {
                        *a += g;
                    }
                }
                acc
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(vec![0f32; n], |mut sum, part| {
                for (s, p) in sum.iter_mut().zip(part) {
                    *s += p;
                }
                sum
            });
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dw, (k, n), device)?),
            Some(Tensor::from_vec(db, bias.shape(), device)?),
        ))
    }
}

// ---------------------------------------------------------------- LayerNorm

/// Layer normalisation over the last dimension, as [`crate::ops::layer_norm`].
pub fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &gain.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )
}

struct LayerNormOp {
    eps: f32,
}

/// Mean and reciprocal standard deviation of one row.
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let d = row.len() as f32;
    let mean = row.iter().sum::<f32>() / d;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s1, l1)?;
        let (gain, bias) = (
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let d = *l1.dims().last().unwrap_or(&0);
        if d == 0 || gain.len() != d || bias.len() != d {
            candle_core::bail!(
                "fused-layer-norm: last dimension {d} does not match gain {} and bias {}",
                gain.len(),
                bias.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        let chunk = rows_per_task(x.len() / d, d) * d;
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(out, x)| {
                for (o, row) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    let (mean, rstd) = row_stats(row, self.eps);
                    for j in 0..d {
                        o[j] = (row[j] - mean) * rstd * gain[j] + bias[j];
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = x.dim(candle_core::D::Minus1)?;
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let gs: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let gain_v: Vec<f32> = gain.flatten_all()?.to_vec1()?;
        let mut dx = vec![0f32; xs.len()];
        let chunk = rows_per_task(xs.len() / d, d) * d;
        // Each task accumulates its rows' gain and bias gradients; the
        // partial sums are added at the end (a parallel reduction).
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(chunk)
            .zip(xs.par_chunks(chunk).zip(gs.par_chunks(chunk)))
            .map(|(dx, (x, g))| {
                let (mut dgain, mut dbias) = (vec![0f32; d], vec![0f32; d]);
                let mut dxhat = vec![0f32; d];
                for ((dx, row), g) in dx
                    .chunks_exact_mut(d)
                    .zip(x.chunks_exact(d))
                    .zip(g.chunks_exact(d))
                {
                    let (mean, rstd) = row_stats(row, self.eps);
                    let (mut sum_dxhat, mut sum_dxhat_xhat) = (0f32, 0f32);
                    for j in 0..d {
                        let xhat = (row[j] - mean) * rstd;
                        dgain[j] += g[j] * xhat;
                        dbias[j] += g[j];
                        dxhat[j] = g[j] * gain_v[j];
                        sum_dxhat += dxhat[j];
                        sum_dxhat_xhat += dxhat[j] * xhat;
                    }
                    let (m1, m2) = (sum_dxhat / d as f32, sum_dxhat_xhat / d as f32);
                    for j in 0..d {
                        let xhat = (row[j] - mean) * rstd;
                        dx[j] = rstd * (dxhat[j] - m1 - xhat * m2);
                    }
                }
                (dgain, dbias)
            })
            .collect();
        let (mut dgain, mut dbias) = (vec![0f32; d], vec![0f32; d]);
        for (pg, pb) in partials {
            for j in 0..d {
                dgain[j] += pg[j];
                dbias[j] += pb[j];
            }
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dgain, gain.shape(), device)?),
            Some(Tensor::from_vec(dbias, gain.shape(), device)?),
        ))
    }
}

// --------------------------------------------------------------------- GELU

/// GELU, exact (`x·Φ(x)` with erf) or with the tanh approximation.
pub fn gelu(x: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluOp { tanh_approximation })
}

struct GeluOp {
    tanh_approximation: bool,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_TANH_COEF: f32 = 0.044_715;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// `e^x` to about 2e-7 relative error, written so that loops over it
/// vectorise (libm's `expf` is a scalar call): Cody–Waite reduction to
/// `x = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-6 Taylor polynomial for
/// `e^r`, and `2^k` built from the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer
    // without a call to `round`.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// erf with about 1e-7 absolute error: the Numerical Recipes `erfc`
/// Chebyshev fit (relative error below 1.2e-7), evaluated in `f32`.
// The published coefficients, kept as printed.
#[allow(clippy::excessive_precision)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = 1.0 - t * exp(poly);
    if x >= 0.0 {
        r
    } else {
        -r
    }
}

impl GeluOp {
    fn value(&self, x: f32) -> f32 {
        if self.tanh_approximation {
            let u = SQRT_2_OVER_PI * (x + GELU_TANH_COEF * x * x * x);
            0.5 * x * (1.0 + u.tanh())
        } else {
            0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
        }
    }

    fn derivative(&self, x: f32) -> f32 {
        if self.tanh_approximation {
            let u = SQRT_2_OVER_PI * (x + GELU_TANH_COEF * x * x * x);
            let th = u.tanh();
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEF * x * x);
            0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du
        } else {
            let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
            let pdf = exp(-0.5 * x * x) * 0.398_942_3;
            cdf + x * pdf
        }
    }
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(8192)
            .zip(x.par_chunks(8192))
            .for_each(|(o, x)| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = self.value(v);
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let gs: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(8192)
            .zip(xs.par_chunks(8192).zip(gs.par_chunks(8192)))
            .for_each(|(dx, (x, g))| {
                for ((d, &v), &g) in dx.iter_mut().zip(x).zip(g) {
                    *d = g * self.derivative(v);
                }
            });
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

// ---------------------------------------------------------------- attention

/// Causal scaled dot-product attention, as [`crate::ops::causal_attention`]
/// with its causal mask built in, in the layout a linear layer produces:
/// `q`, `k`, `v` and the result are `[batch, t, heads, key_size]` (a free
/// reshape of `[batch, t, heads·key_size]`), so the model needs no head
/// transposes. Position `i` attends to `0..=i`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, CausalAttention)
}

struct CausalAttention;

/// Dot product with eight independent accumulators, so that the compiler
/// can keep them in one SIMD register (a single running sum forces
/// sequential, scalar adds).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum = ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>();
    for v in acc {
        sum += v;
    }
    sum
}

/// Softmax weights of one head: row `i` of `p` (`t × t`, only `j ≤ i`
/// written) is `softmax_j(q_i·k_j / sqrt(K))`.
fn attention_weights(q: &[f32], k: &[f32], t: usize, key: usize, p: &mut [f32]) {
    let scale = 1.0 / (key as f32).sqrt();
    for i in 0..t {
        let qi = &q[i * key..(i + 1) * key];
        let row = &mut p[i * t..(i + 1) * t];
        let mut max = f32::NEG_INFINITY;
        for j in 0..=i {
            let kj = &k[j * key..(j + 1) * key];
            let s = dot(qi, kj) * scale;
            row[j] = s;
            max = max.max(s);
        }
        let mut sum = 0f32;
        for s in &mut row[..=i] {
            *s = exp(*s - max);
            sum += *s;
        }
        let inv = 1.0 / sum;
        for s in &mut row[..=i] {
            *s *= inv;
        }
    }
}

/// `[b, t, h, k]` → `[b, h, t, k]`, heads in parallel.
fn to_heads(x: &[f32], t: usize, h: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(t * k).enumerate().for_each(|(n, head)| {
        let (bi, hi) = (n / h, n % h);
        for i in 0..t {
            let src = ((bi * t + i) * h + hi) * k;
            head[i * k..(i + 1) * k].copy_from_slice(&x[src..src + k]);
        }
    });
    out
}

/// `[b, h, t, k]` → `[b, t, h, k]`, rows in parallel.
fn from_heads(x: &[f32], t: usize, h: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(h * k)
        .enumerate()
        .for_each(|(row, dst)| {
            let (bi, i) = (row / t, row % t);
            for hi in 0..h {
                let src = ((bi * h + hi) * t + i) * k;
                dst[hi * k..(hi + 1) * k].copy_from_slice(&x[src..src + k]);
            }
        });
    out
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "fused-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, h, key) = l1.shape().dims4()?;
        let heads = b * h;
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            candle_core::bail!(
                "fused-causal-attention: q {:?}, k {:?}, v {:?} must have one shape",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let (q, k, v) = (
            to_heads(f32_slice(self.name(), s1, l1)?, t, h, key),
            to_heads(f32_slice(self.name(), s2, l2)?, t, h, key),
            to_heads(f32_slice(self.name(), s3, l3)?, t, h, key),
        );
        let head = t * key;
        let mut out = vec![0f32; heads * head];
        out.par_chunks_mut(head).enumerate().for_each_init(
            || vec![0f32; t * t],
            |p, (n, o)| {
                let (q, k, v) = (
                    &q[n * head..(n + 1) * head],
                    &k[n * head..(n + 1) * head],
                    &v[n * head..(n + 1) * head],
                );
                attention_weights(q, k, t, key, p);
                for i in 0..t {
                    let oi = &mut o[i * key..(i + 1) * key];
                    for j in 0..=i {
                        let w = p[i * t + j];
                        for (o, &vj) in oi.iter_mut().zip(&v[j * key..(j + 1) * key]) {
                            *o += w * vj;
                        }
                    }
                }
            },
        );
        let out = from_heads(&out, t, h, key);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, h, key) = q.dims4()?;
        let heads = b * h;
        let head = t * key;
        let gather = |x: &Tensor| -> Result<Vec<f32>> {
            Ok(to_heads(&x.flatten_all()?.to_vec1()?, t, h, key))
        };
        let (qs, ks, vs, gs) = (gather(q)?, gather(k)?, gather(v)?, gather(grad)?);
        let scale = 1.0 / (key as f32).sqrt();
        // One buffer of [dq | dk | dv] per head, filled in parallel.
        let mut packed = vec![0f32; heads * 3 * head];
        packed.par_chunks_mut(3 * head).enumerate().for_each_init(
            || (vec![0f32; t * t], vec![0f32; t * t]),
            |(p, ds), (n, out)| {
                let range = n * head..(n + 1) * head;
                let (q, k, v, g) = (
                    &qs[range.clone()],
                    &ks[range.clone()],
                    &vs[range.clone()],
                    &gs[range],
                );
                attention_weights(q, k, t, key, p);
                let (dq, rest) = out.split_at_mut(head);
                let (dk, dv) = rest.split_at_mut(head);
                for i in 0..t {
                    let gi = &g[i * key..(i + 1) * key];
                    // dP_ij = dO_i · v_j; dS_ij = P_ij (dP_ij − Σ_j' P_ij' dP_ij').
                    let mut row_dot = 0f32;
                    for j in 0..=i {
                        let dp = dot(gi, &v[j * key..(j + 1) * key]);
                        ds[i * t + j] = dp;
                        row_dot += p[i * t + j] * dp;
                    }
                    for j in 0..=i {
                        let pij = p[i * t + j];
                        ds[i * t + j] = pij * (ds[i * t + j] - row_dot) * scale;
                        // dV_j += P_ij dO_i
                        for (d, &gv) in dv[j * key..(j + 1) * key].iter_mut().zip(gi) {
                            *d += pij * gv;
                        }
                    }
                }
                for i in 0..t {
                    let dqi = &mut dq[i * key..(i + 1) * key];
                    for j in 0..=i {
                        let s = ds[i * t + j];
                        for (d, &kv) in dqi.iter_mut().zip(&k[j * key..(j + 1) * key]) {
                            *d += s * kv;
                        }
                    }
                }
                for j in 0..t {
                    let dkj = &mut dk[j * key..(j + 1) * key];
                    for i in j..t {
                        let s = ds[i * t + j];
                        for (d, &qv) in dkj.iter_mut().zip(&q[i * key..(i + 1) * key]) {
                            *d += s * qv;
                        }
                    }
                }
            },
        );
        let (mut dq, mut dk, mut dv) = (
            Vec::with_capacity(heads * head),
            Vec::with_capacity(heads * head),
            Vec::with_capacity(heads * head),
        );
        for chunk in packed.chunks_exact(3 * head) {
            dq.extend_from_slice(&chunk[..head]);
            dk.extend_from_slice(&chunk[head..2 * head]);
            dv.extend_from_slice(&chunk[2 * head..]);
        }
        let (shape, device) = (q.shape(), q.device());
        let scatter = |x: Vec<f32>| Tensor::from_vec(from_heads(&x, t, h, key), shape, device);
        Ok((Some(scatter(dq)?), Some(scatter(dk)?), Some(scatter(dv)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64, scale: f64) -> Var {
        let mut rng = Rng::new(seed);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
        Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Relative closeness: `|a − b| ≤ tol · max(1, |b|)`.
    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * y.abs().max(1.0),
                "{what}[{i}]: fused {x} vs composed {y}"
            );
        }
    }

    /// Forward values and the gradients of `Σ w ⊙ f(args)` for a fixed
    /// random `w`, so every output element gets a distinct upstream gradient.
    fn value_and_grads(out: &Tensor, args: &[&Var]) -> (Vec<f32>, Vec<Vec<f32>>) {
        let w = random(out.dims(), 99, 1.0);
        let loss = (out * w.as_tensor()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        (
            flat(out),
            args.iter()
                .map(|a| flat(grads.get(a.as_tensor()).expect("gradient")))
                .collect(),
        )
    }

    #[test]
    fn layer_norm_matches_the_composed_op_on_odd_shapes() {
        for (shape, d) in [(vec![3, 7, 13], 13), (vec![1, 1, 5], 5), (vec![33, 64], 64)] {
            let x = random(&shape, 1, 2.0);
            let gain = random(&[d], 2, 1.0);
            let bias = random(&[d], 3, 1.0);
            let (fv, fg) = value_and_grads(
                &layer_norm(&x, &gain, &bias, 1e-5).unwrap(),
                &[&x, &gain, &bias],
            );
            let (cv, cg) = value_and_grads(
                &ops::layer_norm(&x, &gain, &bias, 1e-5).unwrap(),
                &[&x, &gain, &bias],
            );
            close(&fv, &cv, 1e-5, "layer norm");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("layer norm grad {i} {shape:?}"));
            }
        }
    }

    #[test]
    fn the_vectorisable_exp_is_accurate_over_the_float_range() {
        for i in -869..=878 {
            let x = i as f32 * 0.1 + 0.037;
            let (ours, libm) = (exp(x) as f64, (x as f64).exp());
            assert!(
                ((ours - libm) / libm).abs() < 5e-7,
                "exp({x}) = {ours}, libm {libm}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
    }

    #[test]
    fn linear_matches_the_composed_op_on_odd_shapes() {
        for (x_shape, k, n) in [
            (vec![3, 7, 5], 5, 9),
            (vec![1, 1], 1, 1),
            (vec![37, 16], 16, 3),
        ] {
            let x = random(&x_shape, 20, 1.0);
            let w = random(&[k, n], 21, 1.0);
            let b = random(&[n], 22, 1.0);
            let (fv, fg) = value_and_grads(&linear(&x, &w, &b).unwrap(), &[&x, &w, &b]);
            let rows: usize = x_shape[..x_shape.len() - 1].iter().product();
            let composed = x
                .reshape((rows, k))
                .unwrap()
                .matmul(&w)
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let mut out_shape = x_shape.clone();
            *out_shape.last_mut().unwrap() = n;
            let composed = composed.reshape(out_shape).unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&x, &w, &b]);
            close(&fv, &cv, 1e-5, "linear");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("linear grad {i} {x_shape:?}"));
            }
        }
    }

    #[test]
    fn gelu_matches_the_composed_op_in_both_forms() {
        let x = random(&[5, 37], 4, 2.5);
        for tanh in [false, true] {
            let fused = gelu(&x, tanh).unwrap();
            let composed = if tanh {
                x.as_tensor().gelu().unwrap()
            } else {
                x.as_tensor().gelu_erf().unwrap()
            };
            let (fv, fg) = value_and_grads(&fused, &[&x]);
            let (cv, cg) = value_and_grads(&composed, &[&x]);
            close(&fv, &cv, 1e-5, "gelu");
            close(&fg[0], &cg[0], 1e-4, "gelu grad");
        }
    }

    #[test]
    fn attention_matches_the_composed_op_on_odd_shapes() {
        for shape in [[2, 7, 3, 5], [1, 1, 1, 4], [1, 17, 2, 8], [3, 9, 1, 6]] {
            let q = random(&shape, 5, 1.0);
            let k = random(&shape, 6, 1.0);
            let v = random(&shape, 7, 1.0);
            // Shapes are [batch, t, heads, key]; the composed op wants heads
            // before positions.
            let mask = ops::causal_mask(shape[1], &Device::Cpu).unwrap();
            let (fv, fg) = value_and_grads(&causal_attention(&q, &k, &v).unwrap(), &[&q, &k, &v]);
            let heads_first = |x: &Var| x.transpose(1, 2).unwrap().contiguous().unwrap();
            let composed =
                ops::causal_attention(&heads_first(&q), &heads_first(&k), &heads_first(&v), &mask)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&q, &k, &v]);
            close(&fv, &cv, 1e-5, "attention");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("attention grad {i} {shape:?}"));
            }
        }
    }

    /// Central differences in f64 of a scalar function of one argument.
    fn finite_difference_check(
        f: impl Fn(&Tensor) -> Tensor,
        x: &Var,
        analytic: &[f32],
        what: &str,
    ) {
        let base = flat(x.as_tensor());
        let w = random(f(x.as_tensor()).dims(), 99, 1.0);
        let loss = |data: Vec<f32>| -> f64 {
            let t = Tensor::from_vec(data, x.shape(), &Device::Cpu).unwrap();
            (f(&t) * w.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let h = 1e-2f32;
        for i in (0..base.len()).step_by(3) {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[i] += h;
            minus[i] -= h;
            let numeric = (loss(plus) - loss(minus)) / (2.0 * h as f64);
            assert!(
                (numeric - analytic[i] as f64).abs() < 2e-2 * numeric.abs().max(1.0),
                "{what}[{i}]: numeric {numeric} vs analytic {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn fused_gradients_match_finite_differences() {
        let x = random(&[3, 6], 8, 1.0);
        let gain = random(&[6], 9, 1.0);
        let bias = random(&[6], 10, 1.0);
        let ln = |x: &Tensor| layer_norm(x, &gain, &bias, 1e-5).unwrap();
        let (_, g) = value_and_grads(&ln(x.as_tensor()), &[&x]);
        finite_difference_check(ln, &x, &g[0], "layer norm");

        let (_, g) = value_and_grads(&gelu(&x, false).unwrap(), &[&x]);
        finite_difference_check(|x| gelu(x, false).unwrap(), &x, &g[0], "gelu");

        let q = random(&[1, 5, 2, 3], 11, 1.0);
        let k = random(&[1, 5, 2, 3], 12, 1.0);
        let v = random(&[1, 5, 2, 3], 13, 1.0);
        let (_, g) = value_and_grads(&causal_attention(&q, &k, &v).unwrap(), &[&q, &k, &v]);
        finite_difference_check(
            |q| causal_attention(q, &k, &v).unwrap(),
            &q,
            &g[0],
            "attention q",
        );
        finite_difference_check(
            |k| causal_attention(&q, k, &v).unwrap(),
            &k,
            &g[1],
            "attention k",
        );
        finite_difference_check(
            |v| causal_attention(&q, &k, v).unwrap(),
            &v,
            &g[2],
            "attention v",
        );
    }
}
