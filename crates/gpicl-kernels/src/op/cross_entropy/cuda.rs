//! The CUDA half of [`super::cross_entropy`].

use crate::cuda::{column_sum, int, launch, launch_rows, view, with_views, wrap};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor,
};

/// Mean cross-entropy on CUDA tensors: [`super::cross_entropy`]'s CUDA
/// half. `targets` (any integer dtype, any device) are uploaded to the
/// logits' device; `count` of them, validated by the caller.
pub(crate) fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    count: usize,
    classes: usize,
) -> Result<Tensor> {
    // The GPU kernels read the targets from the logits' device, where the
    // caller usually has them already.
    let targets = targets
        .flatten_all()?
        .to_dtype(DType::U32)?
        .to_device(logits.device())?
        .contiguous()?;
    logits.contiguous()?.apply_op1(CrossEntropyCuda {
        targets,
        count,
        classes,
    })
}

/// The CUDA cross-entropy op (CUDA tensors only).
struct CrossEntropyCuda {
    targets: Tensor,
    count: usize,
    classes: usize,
}

impl CustomOp1 for CrossEntropyCuda {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA cross-entropy runs on CUDA tensors only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        cross_entropy_forward(s, l, &self.targets, self.classes)
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()? / self.count.max(1) as f32;
        let dz = cross_entropy_backward(logits, &self.targets, self.classes, scale)?;
        Ok(Some(dz))
    }
}

fn targets_view<'a>(targets: &'a Tensor) -> Result<(candle_core::StorageRef<'a>, Layout)> {
    let (guard, layout) = targets.storage_and_layout();
    Ok((guard, layout.clone()))
}

/// Mean cross-entropy of `[rows, classes]` logits against `targets` (a
/// contiguous CUDA `u32` tensor of `rows` entries), as a scalar.
fn cross_entropy_forward(
    s: &CudaStorage,
    l: &Layout,
    targets: &Tensor,
    classes: usize,
) -> Result<(CudaStorage, Shape)> {
    let op = "fused-cross-entropy";
    let dev = s.device().clone();
    let z = view::<f32>(s, l, op)?;
    let rows = l.shape().elem_count() / classes.max(1);
    let (guard, tl) = targets_view(targets)?;
    let y = match &*guard {
        Storage::Cuda(ts) => view::<u32>(ts, &tl, op)?,
        _ => candle_core::bail!("{op}: targets must be on the logits' device"),
    };
    let mut losses = dev.alloc_zeros::<f32>(rows.max(1))?;
    let (ri, ci, inv) = (
        int(rows, "rows")?,
        int(classes, "classes")?,
        1.0f32 / rows.max(1) as f32,
    );
    launch!(
        dev,
        "gpicl_cross_entropy_fwd",
        launch_rows(rows, 0),
        &z,
        &y,
        &mut losses,
        &ri,
        &ci,
        &inv
    );
    let mean = column_sum(&dev, &losses.slice(..), rows.max(1), 1)?;
    Ok((CudaStorage::wrap_cuda_slice(mean, dev), Shape::from(())))
}

/// `(softmax − one_hot) · scale`.
fn cross_entropy_backward(
    logits: &Tensor,
    targets: &Tensor,
    classes: usize,
    scale: f32,
) -> Result<Tensor> {
    let op = "fused-cross-entropy";
    let rows = logits.elem_count() / classes.max(1);
    let (guard, tl) = targets_view(targets)?;
    with_views(op, &[logits], |dev, v| {
        let y = match &*guard {
            Storage::Cuda(ts) => view::<u32>(ts, &tl, op)?,
            _ => candle_core::bail!("{op}: targets must be on the logits' device"),
        };
        let mut dz = dev.alloc_zeros::<f32>(logits.elem_count())?;
        let (ri, ci) = (int(rows, "rows")?, int(classes, "classes")?);
        launch!(
            dev,
            "gpicl_cross_entropy_bwd",
            launch_rows(rows, 0),
            &v[0],
            &y,
            &mut dz,
            &ri,
            &ci,
            &scale
        );
        Ok(wrap(dev, dz, logits.shape()))
    })
}
