//! Affine maps and layer norms as (weight, bias) parameter pairs.

use crate::error::Result;
use crate::params::ParamStore;
use gpicl_kernels::{ops, Tensor};

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

    /// Applies the map.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, gpicl_kernels::fused::use_fused(x))
    }

    /// The fused kernel or the composed reference.
    pub fn forward_with(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        if fused {
            return Ok(gpicl_kernels::fused::linear(x, &self.weight, &self.bias)?);
        }
        self.forward_composed(x)
    }

    /// `max(x W + b, 0)`, fused into one op where the kernels apply.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        if gpicl_kernels::fused::use_fused(x) {
            return Ok(gpicl_kernels::fused::linear_relu(
                x,
                &self.weight,
                &self.bias,
            )?);
        }
        Ok(self.forward_composed(x)?.relu()?)
    }

    /// `x W + b` from candle ops: the reference, and the path off the CPU.
    pub fn forward_composed(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("input has a last dimension");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let out_dim = self.weight.dim(1)?;
        let y = x
            .reshape((rows, in_dim))?
            .matmul(&self.weight)?
            .broadcast_add(&self.bias)?;
        let mut out_shape = dims;
        *out_shape.last_mut().expect("non-empty") = out_dim;
        Ok(y.reshape(out_shape)?)
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

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, gpicl_kernels::fused::use_fused(x))
    }

    /// The fused kernel or the composed reference.
    pub fn forward_with(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        Ok(if fused {
            gpicl_kernels::fused::layer_norm(x, &self.gain, &self.bias, self.eps)?
        } else {
            ops::layer_norm(x, &self.gain, &self.bias, self.eps)?
        })
    }
}
