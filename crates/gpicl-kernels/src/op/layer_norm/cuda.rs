//! The CUDA half of [`super::layer_norm`].

use crate::cuda::{column_sum, int, launch, launch_rows, view, with_views, wrap};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// LayerNorm on CUDA tensors: [`super::layer_norm`]'s CUDA half.
pub(crate) fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &gain.contiguous()?,
        &bias.contiguous()?,
        LayerNormCuda { eps },
    )
}

/// The CUDA LayerNorm op (CUDA tensors only; the CPU kernel is
/// [`super::layer_norm`]'s own op).
struct LayerNormCuda {
    eps: f32,
}

impl CustomOp3 for LayerNormCuda {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        candle_core::bail!("the CUDA layer norm runs on CUDA tensors only")
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
        let d = *l1.dims().last().unwrap_or(&0);
        if d == 0 || l2.shape().elem_count() != d || l3.shape().elem_count() != d {
            candle_core::bail!(
                "fused-layer-norm: last dimension {d} does not match gain {:?} and bias {:?}",
                l2.shape(),
                l3.shape()
            );
        }
        layer_norm_forward(s1, l1, (s2, l2), (s3, l3), self.eps)
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dgain, dbias) = layer_norm_backward(x, gain, grad, self.eps)?;
        Ok((Some(dx), Some(dgain), Some(dbias)))
    }
}

fn layer_norm_forward(
    s: &CudaStorage,
    l: &Layout,
    gain: (&CudaStorage, &Layout),
    bias: (&CudaStorage, &Layout),
    eps: f32,
) -> Result<(CudaStorage, Shape)> {
    let op = "fused-layer-norm";
    let dev = s.device().clone();
    let d = *l.dims().last().unwrap_or(&0);
    let len = l.shape().elem_count();
    let rows = len / d.max(1);
    let (x, g, b) = (
        view::<f32>(s, l, op)?,
        view::<f32>(gain.0, gain.1, op)?,
        view::<f32>(bias.0, bias.1, op)?,
    );
    let mut y = dev.alloc_zeros::<f32>(len)?;
    let (ri, di) = (int(rows, "rows")?, int(d, "width")?);
    launch!(
        dev,
        "gpicl_layer_norm_fwd",
        launch_rows(rows, 0),
        &x,
        &g,
        &b,
        &mut y,
        &ri,
        &di,
        &eps
    );
    Ok((CudaStorage::wrap_cuda_slice(y, dev), l.shape().clone()))
}

/// `(dx, dgain, dbias)` of LayerNorm.
fn layer_norm_backward(
    x: &Tensor,
    gain: &Tensor,
    grad: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let d = gain.elem_count();
    let rows = x.elem_count() / d.max(1);
    with_views("fused-layer-norm", &[x, grad, gain], |dev, v| {
        let len = rows * d;
        let mut dx = dev.alloc_zeros::<f32>(len)?;
        let mut dg_rows = dev.alloc_zeros::<f32>(len)?;
        let mut db_rows = dev.alloc_zeros::<f32>(len)?;
        let (ri, di) = (int(rows, "rows")?, int(d, "width")?);
        launch!(
            dev,
            "gpicl_layer_norm_bwd",
            launch_rows(rows, 0),
            &v[0],
            &v[1],
            &v[2],
            &mut dx,
            &mut dg_rows,
            &mut db_rows,
            &ri,
            &di,
            &eps
        );
        let dgain = column_sum(dev, &dg_rows.slice(..), rows, d)?;
        let dbias = column_sum(dev, &db_rows.slice(..), rows, d)?;
        Ok((
            wrap(dev, dx, x.shape()),
            wrap(dev, dgain, gain.shape()),
            wrap(dev, dbias, gain.shape()),
        ))
    })
}
