//! The CUDA half of [`super::gelu`].

use crate::cuda::{launch, launch_1d, view, with_views, wrap};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// GELU on CUDA tensors: [`super::gelu`]'s CUDA half.
pub(crate) fn gelu(x: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluCuda { tanh_approximation })
}

/// The CUDA GELU op (CUDA tensors only).
struct GeluCuda {
    tanh_approximation: bool,
}

impl CustomOp1 for GeluCuda {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA GELU runs on CUDA tensors only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        gelu_forward(s, l, self.tanh_approximation)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(gelu_backward(x, grad, self.tanh_approximation)?))
    }
}

fn gelu_forward(
    s: &CudaStorage,
    l: &Layout,
    tanh_approximation: bool,
) -> Result<(CudaStorage, Shape)> {
    let dev = s.device().clone();
    let x = view::<f32>(s, l, "fused-gelu")?;
    let len = l.shape().elem_count();
    let mut y = dev.alloc_zeros::<f32>(len)?;
    let tanh = tanh_approximation as i32;
    launch!(
        dev,
        "gpicl_gelu_fwd",
        launch_1d(len),
        &x,
        &mut y,
        &len,
        &tanh
    );
    Ok((CudaStorage::wrap_cuda_slice(y, dev), l.shape().clone()))
}

fn gelu_backward(x: &Tensor, grad: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
    with_views("fused-gelu", &[x, grad], |dev, v| {
        let len = x.elem_count();
        let mut dx = dev.alloc_zeros::<f32>(len)?;
        let tanh = tanh_approximation as i32;
        launch!(
            dev,
            "gpicl_gelu_bwd",
            launch_1d(len),
            &v[0],
            &v[1],
            &mut dx,
            &len,
            &tanh
        );
        Ok(wrap(dev, dx, x.shape()))
    })
}
