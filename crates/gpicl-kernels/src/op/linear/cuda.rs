//! The CUDA half of [`super::linear`] and [`super::linear_relu`].

use crate::cuda::{column_sum, int, launch, launch_1d, view, with_views, wrap};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// `x W + b` (ReLU'd when `relu`) on CUDA: the product on cuBLAS, the bias
/// and activation as one fused op whose backward also sums the bias
/// gradient; the product in bf16 when `bf16`.
pub(crate) fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    relu: bool,
    bf16: bool,
) -> Result<Tensor> {
    let (k, n) = weight.dims2()?;
    let dims = x.dims().to_vec();
    if dims.last() != Some(&k) || bias.elem_count() != n {
        candle_core::bail!(
            "fused-linear: input {dims:?}, weight [{k}, {n}] and bias {:?} do not fit",
            bias.shape()
        );
    }
    let rows = x.elem_count() / k.max(1);
    let x2 = x.reshape((rows, k))?;
    let product = if bf16 {
        x2.to_dtype(DType::BF16)?
            .matmul(&weight.to_dtype(DType::BF16)?)?
            .to_dtype(DType::F32)?
    } else {
        x2.matmul(weight)?
    };
    let mut out_shape = dims;
    *out_shape.last_mut().expect("non-empty") = n;
    product
        .apply_op2(&bias.contiguous()?, BiasAct { relu })?
        .reshape(out_shape)
}

struct BiasAct {
    relu: bool,
}

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "cuda-bias-act"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("cuda-bias-act runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = s1.device().clone();
        let (x, b) = (
            view::<f32>(s1, l1, self.name())?,
            view::<f32>(s2, l2, self.name())?,
        );
        let (len, n) = (l1.shape().elem_count(), l2.shape().elem_count());
        let mut y = dev.alloc_zeros::<f32>(len)?;
        let (ni, relu) = (int(n, "width")?, self.relu as i32);
        launch!(
            dev,
            "gpicl_bias_act_fwd",
            launch_1d(len),
            &x,
            &b,
            &mut y,
            &len,
            &ni,
            &relu
        );
        Ok((CudaStorage::wrap_cuda_slice(y, dev), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, n) = x.dims2()?;
        let (dx, db) = with_views(self.name(), &[res, grad], |dev, v| {
            let len = rows * n;
            let mut dx = dev.alloc_zeros::<f32>(len)?;
            let relu = self.relu as i32;
            launch!(
                dev,
                "gpicl_relu_bwd",
                launch_1d(len),
                &v[0],
                &v[1],
                &mut dx,
                &len,
                &relu
            );
            let db = column_sum(dev, &dx.slice(..), rows, n)?;
            Ok((wrap(dev, dx, (rows, n)), wrap(dev, db, bias.shape())))
        })?;
        Ok((Some(dx), Some(db)))
    }
}
