//! The CUDA half of [`super::lstm_recurrence`].

use crate::cuda::{int, launch, launch_1d, view, with_views, wrap};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// The LSTM recurrence of [`super::lstm_recurrence`] on CUDA:
/// `h_{t−1} W` on cuBLAS, then the fused cell, step by step.
/// Returns `h_t` for every position, `[b, t, h]`.
pub(crate) fn lstm_recurrence(input: &Tensor, w_rec: &Tensor) -> Result<Tensor> {
    let (b, t, g4) = input.dims3()?;
    let h = w_rec.dim(0)?;
    if g4 != 4 * h || w_rec.dim(1)? != 4 * h {
        candle_core::bail!(
            "lstm-recurrence: input [.., .., {g4}] and weight {:?} do not fit (expected 4h = {})",
            w_rec.shape(),
            4 * h
        );
    }
    let mut cell = Tensor::zeros((b, h), DType::F32, input.device())?;
    let mut hidden: Option<Tensor> = None;
    let mut outputs = Vec::with_capacity(t);
    for step in 0..t {
        let mut gates = input.narrow(1, step, 1)?.squeeze(1)?;
        if let Some(hp) = &hidden {
            gates = (gates + hp.matmul(w_rec)?)?;
        }
        let s = gates.contiguous()?.apply_op2(&cell, LstmCell)?;
        // cuBLAS needs the next step's left operand contiguous.
        let h_t = s.narrow(1, 0, h)?.contiguous()?;
        cell = s.narrow(1, h, h)?.contiguous()?;
        outputs.push(h_t.clone());
        hidden = Some(h_t);
    }
    Tensor::stack(&outputs, 1)
}

struct LstmCell;

impl CustomOp2 for LstmCell {
    fn name(&self) -> &'static str {
        "cuda-lstm-cell"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("cuda-lstm-cell runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = s1.device().clone();
        let (b, h4) = l1.shape().dims2()?;
        let h = h4 / 4;
        let (gates, c_prev) = (
            view::<f32>(s1, l1, self.name())?,
            view::<f32>(s2, l2, self.name())?,
        );
        let mut saved = dev.alloc_zeros::<f32>(b * 6 * h)?;
        let (bi, hi) = (int(b, "batch")?, int(h, "hidden")?);
        launch!(
            dev,
            "gpicl_lstm_cell_fwd",
            launch_1d(b * h),
            &gates,
            &c_prev,
            &mut saved,
            &bi,
            &hi
        );
        Ok((
            CudaStorage::wrap_cuda_slice(saved, dev),
            Shape::from((b, 6 * h)),
        ))
    }

    fn bwd(
        &self,
        gates: &Tensor,
        c_prev: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, h4) = gates.dims2()?;
        let h = h4 / 4;
        let (dg, dc) = with_views(self.name(), &[res, grad, c_prev], |dev, v| {
            let mut dg = dev.alloc_zeros::<f32>(b * 4 * h)?;
            let mut dc = dev.alloc_zeros::<f32>(b * h)?;
            let (bi, hi) = (int(b, "batch")?, int(h, "hidden")?);
            launch!(
                dev,
                "gpicl_lstm_cell_bwd",
                launch_1d(b * h),
                &v[0],
                &v[1],
                &v[2],
                &mut dg,
                &mut dc,
                &bi,
                &hi
            );
            Ok((wrap(dev, dg, (b, 4 * h)), wrap(dev, dc, (b, h))))
        })?;
        Ok((Some(dg), Some(dc)))
    }
}
