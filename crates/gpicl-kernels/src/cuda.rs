//! What the CUDA halves of the ops (`op::<name>::cuda`, built with the
//! `cuda` feature) share: the PTX of `src/cuda/kernels.cu`, the launch
//! macro, device views of tensors and a repeatable column sum.
//!
//! The kernels live in `src/cuda/kernels.cu`, compiled to PTX at build
//! time (see `build.rs`) and loaded once per device. Matrix products stay
//! on cuBLAS through candle; what is fused here is everything around them:
//! bias and ReLU epilogues, LayerNorm, GELU, causal attention,
//! cross-entropy and the LSTM and outer-product LSTM cells, each with its
//! backward pass. Every reduction runs in a fixed order, so a GPU run is
//! repeatable on the same card.
//!
//! The recurrences run step by step on the GPU: the recurrent product on
//! cuBLAS, then one fused cell op, so autograd chains the steps.

use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::driver::{CudaSlice, CudaView, LaunchConfig};
use candle_core::cuda::{CudaDType, CudaDevice};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Layout, Result, Shape, Storage, Tensor};

/// Our kernels, compiled to PTX by `build.rs`.
pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gpicl_kernels.ptx"));
/// The name candle caches the PTX module under.
pub(crate) const MODULE: &str = "gpicl_kernels";
/// Threads per block for the warp-per-row kernels (8 rows per block).
const ROW_BLOCK: u32 = 256;
/// Rows (warps) per block of the warp-per-row kernels.
pub(crate) const ROWS_PER_BLOCK: usize = (ROW_BLOCK / 32) as usize;

/// One thread per element.
pub(crate) fn launch_1d(len: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(len as u32)
}

/// One warp per row, with `shared_floats_per_row` floats of shared memory each.
pub(crate) fn launch_rows(rows: usize, shared_floats_per_row: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (ROW_BLOCK, 1, 1),
        shared_mem_bytes: (shared_floats_per_row * ROWS_PER_BLOCK * 4) as u32,
    }
}

/// Launches kernel `$name` of [`PTX`] on `$dev` with config `$cfg` and
/// the arguments in order.
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        use candle_core::cuda::cudarc::driver::PushKernelArg as _;
        use candle_core::cuda::WrapErr as _;
        let func = $dev.get_or_load_custom_func($name, $crate::cuda::MODULE, $crate::cuda::PTX)?;
        let mut builder = func.builder();
        $( builder.arg($arg); )*
        let cfg: candle_core::cuda::cudarc::driver::LaunchConfig = $cfg;
        // An empty grid is an error in CUDA; empty outputs are already zero.
        if cfg.grid_dim.0 > 0 && cfg.grid_dim.1 > 0 {
            // SAFETY: each kernel's argument list above matches its
            // signature in kernels.cu, and the buffers are sized by the callers.
            unsafe { builder.launch(cfg) }.w()?;
        }
    }};
}
pub(crate) use launch;

/// A contiguous CUDA storage's elements, from the layout's offset.
pub(crate) fn view<'a, T: CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
    op: &str,
) -> Result<CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(s.as_cuda_slice::<T>()?.slice(start..end)),
        None => candle_core::bail!("{op}: the CUDA kernel needs a contiguous input"),
    }
}

/// `n` as the `i32` the kernels take.
pub(crate) fn int(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("{what} = {n} exceeds i32")))
}

/// A device buffer as a tensor that records no backward pass.
pub(crate) fn wrap(dev: &CudaDevice, data: CudaSlice<f32>, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(
        Storage::Cuda(CudaStorage::wrap_cuda_slice(data, dev.clone())),
        shape,
        BackpropOp::none(),
        false,
    )
}

/// Runs `f` on the device buffers of contiguous CUDA tensors.
pub(crate) fn with_views<R>(
    op: &str,
    tensors: &[&Tensor],
    f: impl FnOnce(&CudaDevice, &[CudaView<'_, f32>]) -> Result<R>,
) -> Result<R> {
    let contiguous: Vec<Tensor> = tensors
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<_>>()?;
    let guards: Vec<_> = contiguous.iter().map(|t| t.storage_and_layout()).collect();
    let mut views = Vec::with_capacity(guards.len());
    let mut device = None;
    for (guard, layout) in &guards {
        match &**guard {
            Storage::Cuda(s) => {
                device.get_or_insert_with(|| s.device().clone());
                views.push(view::<f32>(s, layout, op)?);
            }
            _ => candle_core::bail!("{op}: expected CUDA tensors"),
        }
    }
    let device = device.ok_or_else(|| candle_core::Error::Msg(format!("{op}: no inputs")))?;
    f(&device, &views)
}

/// `Σ_rows x[r, c]` of a `[rows, cols]` buffer as a fixed tree of partial
/// sums (256 rows per partial), so the result is repeatable.
pub(crate) fn column_sum(
    dev: &CudaDevice,
    x: &CudaView<'_, f32>,
    rows: usize,
    cols: usize,
) -> Result<CudaSlice<f32>> {
    const CHUNK: usize = 256;
    let cfg = |rows: usize| LaunchConfig {
        grid_dim: (cols.div_ceil(128) as u32, rows.div_ceil(CHUNK) as u32, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let (ri, ci, chunk) = (int(rows, "rows")?, int(cols, "cols")?, CHUNK as i32);
    let mut partial = dev.alloc_zeros::<f32>(rows.div_ceil(CHUNK).max(1) * cols)?;
    launch!(
        dev,
        "gpicl_column_sum",
        cfg(rows),
        x,
        &mut partial,
        &ri,
        &ci,
        &chunk
    );
    let mut rows = rows.div_ceil(CHUNK);
    while rows > 1 {
        let mut next = dev.alloc_zeros::<f32>(rows.div_ceil(CHUNK) * cols)?;
        let ri = int(rows, "rows")?;
        launch!(
            dev,
            "gpicl_column_sum",
            cfg(rows),
            &partial,
            &mut next,
            &ri,
            &ci,
            &chunk
        );
        partial = next;
        rows = rows.div_ceil(CHUNK);
    }
    Ok(partial)
}

// ------------------------------------------------------------- availability

/// Which of the CUDA libraries candle loads at run time are missing
/// (the driver, cuBLAS, cuBLASLt, cuRAND, NVRTC), as their names.
pub fn missing_libraries() -> Vec<&'static str> {
    use candle_core::cuda::cudarc;
    // SAFETY: each call only tries to dlopen the library.
    let present = unsafe {
        [
            (
                "libcuda (the NVIDIA driver)",
                cudarc::driver::sys::is_culib_present(),
            ),
            ("libcublas", cudarc::cublas::sys::is_culib_present()),
            ("libcublasLt", cudarc::cublaslt::sys::is_culib_present()),
            ("libcurand", cudarc::curand::sys::is_culib_present()),
            ("libnvrtc", cudarc::nvrtc::sys::is_culib_present()),
        ]
    };
    present
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect()
}
