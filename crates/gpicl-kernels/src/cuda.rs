//! The CUDA halves of the fused ops (built with the `cuda` feature).
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
use candle_core::cuda::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda::{CudaDType, CudaDevice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gpicl_kernels.ptx"));
const MODULE: &str = "gpicl_kernels";
/// Threads per block for the warp-per-row kernels (8 rows per block).
const ROW_BLOCK: u32 = 256;
const ROWS_PER_BLOCK: usize = (ROW_BLOCK / 32) as usize;

fn launch_1d(len: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(len as u32)
}

fn launch_rows(rows: usize, shared_floats_per_row: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (ROW_BLOCK, 1, 1),
        shared_mem_bytes: (shared_floats_per_row * ROWS_PER_BLOCK * 4) as u32,
    }
}

macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let func = $dev.get_or_load_custom_func($name, MODULE, PTX)?;
        let mut builder = func.builder();
        $( builder.arg($arg); )*
        let cfg: LaunchConfig = $cfg;
        // An empty grid is an error in CUDA; empty outputs are already zero.
        if cfg.grid_dim.0 > 0 && cfg.grid_dim.1 > 0 {
            // SAFETY: each kernel's argument list above matches its
            // signature in kernels.cu, and the buffers are sized by the callers.
            unsafe { builder.launch(cfg) }.w()?;
        }
    }};
}

/// A contiguous CUDA storage's elements, from the layout's offset.
fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(s.as_cuda_slice::<T>()?.slice(start..end)),
        None => candle_core::bail!("{op}: the CUDA kernel needs a contiguous input"),
    }
}

fn int(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("{what} = {n} exceeds i32")))
}

fn wrap(dev: &CudaDevice, data: CudaSlice<f32>, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(
        Storage::Cuda(CudaStorage::wrap_cuda_slice(data, dev.clone())),
        shape,
        BackpropOp::none(),
        false,
    )
}

/// Runs `f` on the device buffers of contiguous CUDA tensors.
fn with_views<R>(
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
fn column_sum(
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

// ------------------------------------------------------------ linear + bias

/// `x W + b` (ReLU'd when `relu`) on CUDA: the product on cuBLAS, the bias
/// and activation as one fused op whose backward also sums the bias
/// gradient.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool) -> Result<Tensor> {
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
    let product = if crate::fused::bf16_matmuls() {
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

// ----------------------------------------------------------------- LayerNorm

pub(crate) fn layer_norm_forward(
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
pub(crate) fn layer_norm_backward(
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

// ---------------------------------------------------------------------- GELU

pub(crate) fn gelu_forward(
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

pub(crate) fn gelu_backward(x: &Tensor, grad: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
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

// ----------------------------------------------------------------- attention

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

pub(crate) fn attention_forward(
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
pub(crate) fn attention_backward(
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

// ------------------------------------------------------------- cross-entropy

fn targets_view<'a>(targets: &'a Tensor) -> Result<(candle_core::StorageRef<'a>, Layout)> {
    let (guard, layout) = targets.storage_and_layout();
    Ok((guard, layout.clone()))
}

/// Mean cross-entropy of `[rows, classes]` logits against `targets` (a
/// contiguous CUDA `u32` tensor of `rows` entries), as a scalar.
pub(crate) fn cross_entropy_forward(
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
pub(crate) fn cross_entropy_backward(
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

// ---------------------------------------------------------------------- LSTM

/// The LSTM recurrence of [`crate::lstm::lstm_recurrence`] on CUDA:
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

// ------------------------------------------------------- outer-product LSTM

/// The outer-product LSTM recurrence of
/// [`crate::outer_lstm::outer_lstm_recurrence`] on CUDA. Returns
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
