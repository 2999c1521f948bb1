//! Fused CPU kernels for the Transformer: LayerNorm, GELU and causal
//! multi-head attention, each one op forward and one pass backward,
//! multi-threaded over rows or heads with rayon.
//!
//! Composed from candle primitives, a LayerNorm is eight ops forward (each
//! a fresh allocation and mostly single-threaded) and more backward, with
//! reductions over broadcast dimensions; causal attention materialises
//! scores, mask, exponentials and weights for every head. These kernels
//! compute the same functions as [`crate::ops`] (the reference they are
//! tested against) in one pass each. They run on CPU `f32` tensors; callers
//! use the composed ops on other devices (see [`use_fused`]).

use crate::cpu::f32_slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether the fused kernels apply to `x`: a CPU `f32` tensor.
pub fn use_fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// Rows per rayon task: big enough to amortise scheduling.
fn rows_per_task(rows: usize, width: usize) -> usize {
    (16_384 / width.max(1)).clamp(1, rows.max(1))
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

/// erf with about 1e-7 absolute error (Abramowitz & Stegun 7.1.26 is too
/// coarse near 0 for 1e-5 relative GELU accuracy, so this uses the
/// Numerical Recipes `erfc` Chebyshev fit, relative error below 1.2e-7).
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
    let r = 1.0 - t * poly.exp();
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
            let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
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
/// with its causal mask built in: `q`, `k`, `v` are
/// `[batch, heads, t, key_size]`; position `i` attends to `0..=i`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, CausalAttention)
}

struct CausalAttention;

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
            let s = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
            row[j] = s;
            max = max.max(s);
        }
        let mut sum = 0f32;
        for s in &mut row[..=i] {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        for s in &mut row[..=i] {
            *s *= inv;
        }
    }
}

fn attention_dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let (b, h, t, k) = l.shape().dims4()?;
    Ok((b * h, t, k))
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
        let (heads, t, key) = attention_dims(l1)?;
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            candle_core::bail!(
                "fused-causal-attention: q {:?}, k {:?}, v {:?} must have one shape",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let (q, k, v) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
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
        let (b, h, t, key) = q.dims4()?;
        let heads = b * h;
        let head = t * key;
        let qs: Vec<f32> = q.flatten_all()?.to_vec1()?;
        let ks: Vec<f32> = k.flatten_all()?.to_vec1()?;
        let vs: Vec<f32> = v.flatten_all()?.to_vec1()?;
        let gs: Vec<f32> = grad.flatten_all()?.to_vec1()?;
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
                    let mut dot = 0f32;
                    for j in 0..=i {
                        let dp = gi
                            .iter()
                            .zip(&v[j * key..(j + 1) * key])
                            .map(|(a, b)| a * b)
                            .sum::<f32>();
                        ds[i * t + j] = dp;
                        dot += p[i * t + j] * dp;
                    }
                    for j in 0..=i {
                        let pij = p[i * t + j];
                        ds[i * t + j] = pij * (ds[i * t + j] - dot) * scale;
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
        Ok((
            Some(Tensor::from_vec(dq, shape, device)?),
            Some(Tensor::from_vec(dk, shape, device)?),
            Some(Tensor::from_vec(dv, shape, device)?),
        ))
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
        for shape in [[2, 3, 7, 5], [1, 1, 1, 4], [1, 2, 17, 8]] {
            let q = random(&shape, 5, 1.0);
            let k = random(&shape, 6, 1.0);
            let v = random(&shape, 7, 1.0);
            let mask = ops::causal_mask(shape[2], &Device::Cpu).unwrap();
            let (fv, fg) = value_and_grads(&causal_attention(&q, &k, &v).unwrap(), &[&q, &k, &v]);
            let (cv, cg) = value_and_grads(
                &ops::causal_attention(&q, &k, &v, &mask).unwrap(),
                &[&q, &k, &v],
            );
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

        let q = random(&[1, 2, 5, 3], 11, 1.0);
        let k = random(&[1, 2, 5, 3], 12, 1.0);
        let v = random(&[1, 2, 5, 3], 13, 1.0);
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
