//! Differentiable building blocks composed from candle primitives: the
//! composed references of the fused ops in [`crate::op`] (their
//! `reference` functions are these or built from these) and the evaluation
//! helpers (per-position loss, accuracy).
//!
//! candle's fused `softmax_last_dim`, `layer_norm`, `rms_norm` and `sdpa`
//! record no backward pass, so a model built on them silently receives no
//! gradient for the parameters before them. Every op here is a composition
//! of primitives that candle can differentiate.

use candle_core::{DType, Device, Result, Tensor, D};

/// Softmax over the last dimension. The max is subtracted for stability and
/// detached: softmax is invariant to it, so no gradient is lost.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&sum)
}

/// Log-softmax over the last dimension.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Layer normalisation over the last dimension with a learned gain and bias:
/// `(x - mean) / sqrt(var + eps) * gain + bias`, variance without Bessel's
/// correction (as in PyTorch, JAX and Haiku).
pub fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(gain)?.broadcast_add(bias)
}

/// An additive causal mask `[t, t]`: 0 on and below the diagonal, −∞ above.
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(data, (t, t), device)
}

/// Causal scaled dot-product attention.
///
/// `q`, `k`, `v`: `[batch, heads, t, key_size]`; `mask` from [`causal_mask`].
/// Returns `[batch, heads, t, key_size]`. Position `i` attends to `0..=i`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let key_size = q.dim(D::Minus1)?;
    let scale = 1.0 / (key_size as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
    let weights = softmax_last_dim(&scores)?;
    weights.matmul(v)
}

/// Mean cross-entropy between `logits` `[.., classes]` and integer `targets`
/// of the same leading shape (dtype u32), averaged over every leading
/// position.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let classes = logits.dim(D::Minus1)?;
    let flat = logits.reshape(((), classes))?;
    let targets = targets.flatten_all()?.to_dtype(DType::U32)?;
    let log_probs = log_softmax_last_dim(&flat)?;
    let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?;
    picked.mean_all()?.neg()
}

/// Cross-entropy per position: `logits` `[b, t, classes]`, `targets` `[b, t]`
/// → `[t]`, averaged over the batch. Used by evaluation curves.
pub fn cross_entropy_per_position(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let log_probs = log_softmax_last_dim(logits)?;
    let picked = log_probs.gather(&targets.to_dtype(DType::U32)?.unsqueeze(2)?, 2)?;
    picked.squeeze(2)?.mean(0)?.neg()
}

/// Whether `argmax(logits) == target` per position, as 0/1 `f32` `[b, t]`.
pub fn correct(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let predicted = logits.argmax(D::Minus1)?;
    predicted
        .eq(&targets.to_dtype(DType::U32)?)?
        .to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn t(data: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
    }

    fn v(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn softmax_matches_the_definition() {
        let x = t(&[1.0, 2.0, 3.0, -1.0, 0.0, 1.0], &[2, 3]);
        let got = v(&softmax_last_dim(&x).unwrap());
        let z: f32 = [1f32, 2., 3.].iter().map(|a| a.exp()).sum();
        assert!((got[2] - 3f32.exp() / z).abs() < 1e-6);
        assert!((got[3..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_output_has_zero_mean_and_unit_variance() {
        let x = t(&[1.0, 2.0, 4.0, 8.0], &[1, 4]);
        let g = t(&[1.0; 4], &[4]);
        let b = t(&[0.0; 4], &[4]);
        let y = v(&layer_norm(&x, &g, &b, 1e-5).unwrap());
        let mean: f32 = y.iter().sum::<f32>() / 4.0;
        let var: f32 = y.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3);
    }

    #[test]
    fn layer_norm_passes_gradient_to_its_input_gain_and_bias() {
        let x = Var::from_tensor(&t(&[1.0, 2.0, 4.0, 8.0, 0.5, 0.1], &[2, 3])).unwrap();
        let g = Var::from_tensor(&t(&[1.0, 2.0, 3.0], &[3])).unwrap();
        let b = Var::from_tensor(&t(&[0.0; 3], &[3])).unwrap();
        let w = t(&[1.0, -2.0, 0.5, 0.3, 0.2, -0.7], &[2, 3]);
        let y = layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5).unwrap();
        let loss = (y * w).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for var in [&x, &g, &b] {
            let grad = v(grads.get(var.as_tensor()).expect("gradient recorded"));
            assert!(grad.iter().any(|a| a.abs() > 1e-6));
        }
    }

    #[test]
    fn attention_position_zero_only_sees_itself() {
        let dev = Device::Cpu;
        let q = Tensor::ones((1, 1, 3, 2), DType::F32, &dev).unwrap();
        let k = q.clone();
        let v = t(&[1.0, 1.0, 5.0, 5.0, 9.0, 9.0], &[1, 1, 3, 2]);
        let out = v_of(&causal_attention(&q, &k, &v, &causal_mask(3, &dev).unwrap()).unwrap());
        assert_eq!(&out[..2], &[1.0, 1.0]);
        assert!((out[2] - 3.0).abs() < 1e-5); // mean of 1 and 5
        assert!((out[4] - 5.0).abs() < 1e-5); // mean of 1, 5, 9
    }

    fn v_of(x: &Tensor) -> Vec<f32> {
        v(x)
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_classes() {
        let logits = Tensor::zeros((2, 5, 10), DType::F32, &Device::Cpu).unwrap();
        let targets = Tensor::zeros((2, 5), DType::U32, &Device::Cpu).unwrap();
        let loss: f32 = cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((loss - 10f32.ln()).abs() < 1e-6);
        let per_pos = v(&cross_entropy_per_position(&logits, &targets).unwrap());
        assert_eq!(per_pos.len(), 5);
        assert!(per_pos.iter().all(|l| (l - 10f32.ln()).abs() < 1e-6));
    }

    #[test]
    fn correct_marks_argmax_hits() {
        let logits = t(&[0.0, 1.0, 2.0, 0.0], &[1, 2, 2]);
        let targets = Tensor::from_slice(&[1u32, 1], (1, 2), &Device::Cpu).unwrap();
        assert_eq!(v(&correct(&logits, &targets).unwrap()), vec![1.0, 0.0]);
    }
}
