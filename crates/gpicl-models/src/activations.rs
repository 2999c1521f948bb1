//! Differentiable activations used by the recurrent models.

use candle_core::{Result, Tensor};

/// `σ(x)`: candle-nn's fused sigmoid, which (unlike its softmax and layer
/// norm) records a backward pass; one op instead of three per call matters
/// in the recurrent models' per-step graphs.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::sigmoid(x)
}

/// `softplus(x) = ln(1 + eˣ)`, computed as `max(x, 0) + ln(1 + e^{−|x|})`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let positive = x.relu()?;
    let negative_abs = x.abs()?.neg()?;
    positive + (negative_abs.exp()? + 1.0)?.log()?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sigmoid_and_softplus_match_their_definitions() {
        let x = Tensor::new(&[-30f32, -1.0, 0.0, 2.0, 30.0], &Device::Cpu).unwrap();
        let s: Vec<f32> = sigmoid(&x).unwrap().to_vec1().unwrap();
        let p: Vec<f32> = softplus(&x).unwrap().to_vec1().unwrap();
        for (i, v) in [-30f32, -1.0, 0.0, 2.0, 30.0].iter().enumerate() {
            assert!((s[i] - 1.0 / (1.0 + (-v).exp())).abs() < 1e-6);
            assert!((p[i] - (1.0 + v.exp()).ln()).abs() < 1e-5, "{v}: {}", p[i]);
        }
    }
}
