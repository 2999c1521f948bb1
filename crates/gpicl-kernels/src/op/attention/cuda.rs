//! The CUDA half of [`super::causal_attention`].

use crate::cuda::{int, launch, launch_1d, launch_rows, view, with_views, wrap, ROWS_PER_BLOCK};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// Causal attention on CUDA tensors: [`super::causal_attention`]'s CUDA half.
pub(crate) fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, CausalAttentionCuda)
}

/// The CUDA attention op (CUDA tensors only).
struct CausalAttentionCuda;

impl CustomOp3 for CausalAttentionCuda {
    fn name(&self) -> &'static str {
        "fused-causal-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA attention runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        super::attention_layouts(l1, l2, l3)?;
        attention_forward((s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) = attention_backward(q, k, v, grad)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// The kernels keep one row of scores per warp in shared memory (48 KiB
/// per block, 8 warps).
fn check_attention_length(t: i32) -> Result<()> {
    if t as usize * ROWS_PER_BLOCK * 4 > 48 * 1024 {
        candle_core::bail!(
            "fused-causal-attention: sequences of {t} exceed the CUDA kernel's 1536"
        );
    }
    Ok(())
}

fn attention_dims(shape: &Shape) -> Result<[i32; 4]> {
    let (b, t, h, k) = shape.dims4()?;
    Ok([
        int(b, "batch")?,
        int(t, "t")?,
        int(h, "heads")?,
        int(k, "key size")?,
    ])
}

fn attention_forward(
    q: (&CudaStorage, &Layout),
    k: (&CudaStorage, &Layout),
    v: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let op = "fused-causal-attention";
    let dev = q.0.device().clone();
    let [b, t, h, key] = attention_dims(q.1.shape())?;
    let (qv, kv, vv) = (
        view::<f32>(q.0, q.1, op)?,
        view::<f32>(k.0, k.1, op)?,
        view::<f32>(v.0, v.1, op)?,
    );
    let len = q.1.shape().elem_count();
    let mut out = dev.alloc_zeros::<f32>(len)?;
    check_attention_length(t)?;
    let rows = (b * h * t) as usize;
    launch!(
        dev,
        "gpicl_attention_fwd",
        launch_rows(rows, t as usize),
        &qv,
        &kv,
        &vv,
        &mut out,
        &b,
        &t,
        &h,
        &key
    );
    Ok((CudaStorage::wrap_cuda_slice(out, dev), q.1.shape().clone()))
}

/// `(dq, dk, dv)` of causal attention; needs `2·b·heads·t²` floats of
/// scratch for the weights and score gradients.
fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let [b, t, h, key] = attention_dims(q.shape())?;
    with_views("fused-causal-attention", &[q, k, v, grad], |dev, s| {
        let len = q.elem_count();
        let square = (b * h) as usize * (t as usize) * (t as usize);
        let (mut dq, mut dk, mut dv) = (
            dev.alloc_zeros::<f32>(len)?,
            dev.alloc_zeros::<f32>(len)?,
            dev.alloc_zeros::<f32>(len)?,
        );
        let (mut probs, mut dscores) = (
            dev.alloc_zeros::<f32>(square)?,
            dev.alloc_zeros::<f32>(square)?,
        );
        let rows = (b * h * t) as usize;
        launch!(
            dev,
            "gpicl_attention_bwd_rows",
            launch_rows(rows, t as usize),
            &s[0],
            &s[1],
            &s[2],
            &s[3],
            &mut dq,
            &mut probs,
            &mut dscores,
            &b,
            &t,
            &h,
            &key
        );
        launch!(
            dev,
            "gpicl_attention_bwd_cols",
            launch_1d(len),
            &s[0],
            &s[3],
            &probs,
            &dscores,
            &mut dk,
            &mut dv,
            &b,
            &t,
            &h,
            &key
        );
        Ok((
            wrap(dev, dq, q.shape()),
            wrap(dev, dk, q.shape()),
            wrap(dev, dv, q.shape()),
        ))
    })
}
