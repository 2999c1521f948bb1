//! The CUDA half of [`super::outer_lstm_recurrence`].

use crate::cuda::{column_sum, int, launch, view, with_views, wrap};
use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::driver::LaunchConfig;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// The outer-product LSTM recurrence of
/// [`super::outer_lstm_recurrence`] on CUDA. Returns
/// `h_t` for every position, `[b, t, n·H]`.
pub(crate) fn outer_lstm_recurrence(
    input: &Tensor,
    w_rec: &Tensor,
    scale: &Tensor,
    heads: usize,
) -> Result<Tensor> {
    let (b, t, g8) = input.dims3()?;
    let width = w_rec.dim(0)?;
    let size = width / heads.max(1);
    if heads == 0 || size * heads != width || g8 != 8 * width || w_rec.dim(1)? != 8 * width {
        candle_core::bail!(
            "outer-lstm-recurrence: input [.., .., {g8}], weight {:?} and {heads} heads do not fit",
            w_rec.shape()
        );
    }
    if size > 1024 {
        candle_core::bail!(
            "outer-lstm-recurrence: head size {size} exceeds the CUDA kernel's 1024"
        );
    }
    let scale = scale.contiguous()?;
    let mut cell = Tensor::zeros((b, heads, size, size), DType::F32, input.device())?;
    let mut hidden: Option<Tensor> = None;
    let mut outputs = Vec::with_capacity(t);
    let op = OuterCell { heads, size };
    for step in 0..t {
        let mut gates = input.narrow(1, step, 1)?.squeeze(1)?;
        if let Some(hp) = &hidden {
            gates = (gates + hp.matmul(w_rec)?)?;
        }
        let s = gates.contiguous()?.apply_op3(&cell, &scale, op.clone())?;
        let h = s.narrow(1, 0, width)?.contiguous()?;
        cell = s
            .narrow(1, 2 * width, width * size)?
            .reshape((b, heads, size, size))?
            .contiguous()?;
        outputs.push(h.clone());
        hidden = Some(h);
    }
    Tensor::stack(&outputs, 1)
}

#[derive(Clone)]
struct OuterCell {
    heads: usize,
    size: usize,
}

impl OuterCell {
    fn block(&self) -> u32 {
        (self.size.div_ceil(32) * 32) as u32
    }
}

impl CustomOp3 for OuterCell {
    fn name(&self) -> &'static str {
        "cuda-outer-lstm-cell"
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
        candle_core::bail!("cuda-outer-lstm-cell runs on CUDA tensors only")
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
        let dev = s1.device().clone();
        let (n, hs) = (self.heads, self.size);
        let b = l1.dims()[0];
        let sw = 2 * n * hs + n * hs * hs;
        let (g, cp, sc) = (
            view::<f32>(s1, l1, self.name())?,
            view::<f32>(s2, l2, self.name())?,
            view::<f32>(s3, l3, self.name())?,
        );
        let mut saved = dev.alloc_zeros::<f32>(b * sw)?;
        let cfg = LaunchConfig {
            grid_dim: ((b * n) as u32, 1, 1),
            block_dim: (self.block(), 1, 1),
            shared_mem_bytes: (6 * hs * 4) as u32,
        };
        let (ni, hi) = (int(n, "heads")?, int(hs, "head size")?);
        launch!(
            dev,
            "gpicl_outer_cell_fwd",
            cfg,
            &g,
            &cp,
            &sc,
            &mut saved,
            &ni,
            &hi
        );
        Ok((
            CudaStorage::wrap_cuda_slice(saved, dev),
            Shape::from((b, sw)),
        ))
    }

    fn bwd(
        &self,
        gates: &Tensor,
        c_prev: &Tensor,
        scale: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, hs) = (self.heads, self.size);
        let b = gates.dim(0)?;
        let (dg, dc, dscale) =
            with_views(self.name(), &[gates, c_prev, scale, res, grad], |dev, v| {
                let mut dg = dev.alloc_zeros::<f32>(b * 8 * n * hs)?;
                let mut dc = dev.alloc_zeros::<f32>(b * n * hs * hs)?;
                let mut parts = dev.alloc_zeros::<f32>(b * n)?;
                let block = self.block();
                let cfg = LaunchConfig {
                    grid_dim: ((b * n) as u32, 1, 1),
                    block_dim: (block, 1, 1),
                    shared_mem_bytes: ((7 * hs + block as usize) * 4) as u32,
                };
                let (ni, hi) = (int(n, "heads")?, int(hs, "head size")?);
                launch!(
                    dev,
                    "gpicl_outer_cell_bwd",
                    cfg,
                    &v[0],
                    &v[1],
                    &v[2],
                    &v[3],
                    &v[4],
                    &mut dg,
                    &mut dc,
                    &mut parts,
                    &ni,
                    &hi
                );
                let total = column_sum(dev, &parts.slice(..), b * n, 1)?;
                Ok((
                    wrap(dev, dg, gates.shape()),
                    wrap(dev, dc, c_prev.shape()),
                    wrap(dev, total, scale.shape()),
                ))
            })?;
        Ok((Some(dg), Some(dc), Some(dscale)))
    }
}
