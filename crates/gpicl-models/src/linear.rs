//! Affine maps and layer norms as (weight, bias) parameter pairs.

use crate::error::Result;
use crate::params::ParamStore;
use gpicl_kernels::{op, KernelOptions, Tensor};

/// `y = x W + b` with `W: [in, out]`, applied over the last dimension of an
/// input of any rank.
#[derive(Clone)]
pub struct Linear {
    /// `W: [in, out]`.
    pub weight: Tensor,
    /// `b: [out]`.
    pub bias: Tensor,
}

impl Linear {
    /// Registers `{prefix}.weight` and `{prefix}.bias` in `params`.
    pub fn register(
        params: &mut ParamStore,
        prefix: &str,
        weight: Tensor,
        bias: Tensor,
    ) -> Result<Self> {
        Ok(Self {
            weight: params.insert(format!("{prefix}.weight"), weight)?,
            bias: params.insert(format!("{prefix}.bias"), bias)?,
        })
    }

    /// Registers a new layer initialised like Haiku's `Linear`: truncated
    /// normal weights with std `1/sqrt(fan_in)`, zero bias.
    pub fn init(
        params: &mut ParamStore,
        init: &mut crate::init::Initializer,
        prefix: &str,
        fan_in: usize,
        fan_out: usize,
    ) -> Result<Self> {
        let weight = init.truncated_normal(&[fan_in, fan_out], 1.0 / (fan_in as f64).sqrt());
        Self::register(params, prefix, weight, init.zeros(&[fan_out]))
    }

    /// Applies the map: [`gpicl_kernels::op::linear`]'s fused kernel, or its
    /// composed reference where `options` or the input rule it out.
    pub fn forward(&self, x: &Tensor, options: KernelOptions) -> Result<Tensor> {
        Ok(op::linear::linear(x, &self.weight, &self.bias, options)?)
    }

    /// `max(x W + b, 0)`, fused into one op where the kernels apply.
    pub fn forward_relu(&self, x: &Tensor, options: KernelOptions) -> Result<Tensor> {
        Ok(op::linear::linear_relu(
            x,
            &self.weight,
            &self.bias,
            options,
        )?)
    }
}

/// Layer normalisation with a learned gain (init 1) and bias (init 0).
#[derive(Clone)]
pub struct LayerNorm {
    /// Per-feature scale, `[d]`.
    pub gain: Tensor,
    /// Per-feature shift, `[d]`.
    pub bias: Tensor,
    /// Added to the variance before its square root.
    pub eps: f64,
}

impl LayerNorm {
    /// Registers `{prefix}.gain` and `{prefix}.bias` in `params`.
    pub fn register(
        params: &mut ParamStore,
        prefix: &str,
        width: usize,
        eps: f64,
        device: &gpicl_kernels::Device,
    ) -> Result<Self> {
        let ones = Tensor::ones(width, gpicl_kernels::DType::F32, device)?;
        let zeros = Tensor::zeros(width, gpicl_kernels::DType::F32, device)?;
        Ok(Self {
            gain: params.insert(format!("{prefix}.gain"), ones)?,
            bias: params.insert(format!("{prefix}.bias"), zeros)?,
            eps,
        })
    }

    /// Normalises over the last dimension (the fused kernel of
    /// [`gpicl_kernels::op::layer_norm`] or its composed reference).
    pub fn forward(&self, x: &Tensor, options: KernelOptions) -> Result<Tensor> {
        Ok(op::layer_norm::layer_norm(
            x, &self.gain, &self.bias, self.eps, options,
        )?)
    }
}
