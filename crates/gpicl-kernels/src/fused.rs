//! Fused CPU kernels as candle ops: linear layers with their bias,
//! LayerNorm, GELU, causal multi-head attention and softmax cross-entropy,
//! each one op forward and one pass backward, multi-threaded over rows or
//! heads with rayon (the loops themselves live in [`crate::host`]).
//!
//! Composed from candle primitives, a LayerNorm is eight ops forward (each
//! a fresh allocation and mostly single-threaded) and more backward, with
//! reductions over broadcast dimensions; causal attention materialises
//! scores, mask, exponentials and weights for every head. These kernels
//! compute the same functions as [`crate::ops`] (the reference they are
//! tested against) in one pass each. They run on CPU `f32` tensors and, in
//! builds with the `cuda` feature, on CUDA `f32` tensors (the GPU halves
//! are in `crate::cuda`); callers use the composed ops elsewhere (see
//! [`use_fused`]).

use crate::cpu::{f32_slice, with_f32};
use crate::host::{self, AttentionShape};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};

pub use crate::host::{adam_update, AdamStep};

static DISABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the fused kernels off (or back on) for the whole process, e.g. to
/// time the composed reference; `GPICL_FUSED_KERNELS=0` does the same.
pub fn set_enabled(enabled: bool) {
    DISABLED.store(!enabled, std::sync::atomic::Ordering::Relaxed);
}

static BF16_MATMULS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs the matrix products of [`linear`] and [`linear_relu`] in bf16
/// (inputs and weights rounded, f32 accumulation, f32 result) for the whole
/// process: in cuBLAS on CUDA; on the CPU every `gemm` product of the fused
/// kernels (linear layers and recurrences) runs on AMX tiles where
/// [`crate::bf16::support`] allows, and stays f32 elsewhere. Off by default.
pub fn set_bf16_matmuls(on: bool) {
    BF16_MATMULS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`set_bf16_matmuls`] is on.
pub fn bf16_matmuls() -> bool {
    BF16_MATMULS.load(std::sync::atomic::Ordering::Relaxed)
}

fn enabled() -> bool {
    static ENV_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| {
        std::env::var("GPICL_FUSED_KERNELS").is_ok_and(|v| v == "0" || v == "false")
    });
    !env_off && !DISABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the fused ops apply to `x`: an `f32` tensor on the CPU, or on a
/// CUDA device in builds with the `cuda` feature, with the kernels enabled.
pub fn use_fused(x: &Tensor) -> bool {
    enabled()
        && x.dtype() == candle_core::DType::F32
        && (x.device().is_cpu() || (cfg!(feature = "cuda") && x.device().is_cuda()))
}

/// Whether the host kernels of [`crate::host`] apply to `x` (CPU `f32`,
/// kernels enabled): the hand-written training steps read tensors as
/// slices and are CPU-only.
pub fn use_host_kernels(x: &Tensor) -> bool {
    use_fused(x) && x.device().is_cpu()
}

// ------------------------------------------------------------------- Linear

/// `x W + b` over the last dimension of `x` (`[.., in]`, `W: [in, out]`,
/// `b: [out]`), with the products on `gemm` forward and backward and the
/// bias gradient a parallel column sum. The input's gradient is skipped
/// when the input is data (tracks no gradient).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return crate::cuda::linear(x, weight, bias, false);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LinearOp { relu: false },
    )
}

/// `max(x W + b, 0)`: [`linear`] with the bias and a ReLU in one op, whose
/// backward masks the gradient by the saved output.
pub fn linear_relu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return crate::cuda::linear(x, weight, bias, true);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LinearOp { relu: true },
    )
}

struct LinearOp {
    relu: bool,
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        if self.relu {
            "fused-linear-relu"
        } else {
            "fused-linear"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let (k, n) = l2.shape().dims2()?;
        let dims = l1.dims();
        if dims.last() != Some(&k) || b.len() != n {
            candle_core::bail!(
                "fused-linear: input {:?}, weight [{k}, {n}] and bias [{}] do not fit",
                dims,
                b.len()
            );
        }
        let mut out = vec![0f32; x.len() / k * n];
        if self.relu {
            host::linear_relu_forward(x, w, b, &mut out);
        } else {
            host::linear_forward(x, w, b, &mut out);
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (k, n) = weight.dims2()?;
        let (dx, dw, db) = with_f32(self.name(), &[x, grad, weight, res], |s| {
            let (xs, w) = (s[0], s[2]);
            let masked;
            let gs = if self.relu {
                let mut m = vec![0f32; s[1].len()];
                host::relu_backward(s[3], s[1], &mut m);
                masked = m;
                &masked[..]
            } else {
                s[1]
            };
            // The input of a first layer (data) needs no gradient: skip
            // its product, as large as the weight gradient's.
            let mut dx = x.track_op().then(|| vec![0f32; xs.len()]);
            let (mut dw, mut db) = (vec![0f32; k * n], vec![0f32; n]);
            host::linear_backward(xs, w, gs, dx.as_deref_mut(), &mut dw, &mut db, false);
            (dx, dw, db)
        })?;
        let device = x.device();
        Ok((
            dx.map(|dx| Tensor::from_vec(dx, x.shape(), device))
                .transpose()?,
            Some(Tensor::from_vec(dw, (k, n), device)?),
            Some(Tensor::from_vec(db, bias.shape(), device)?),
        ))
    }
}

// ---------------------------------------------------------------- LayerNorm

/// Layer normalisation over the last dimension, as [`crate::ops::layer_norm`].
pub fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &gain.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )
}

struct LayerNormOp {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s1, l1)?;
        let (gain, bias) = (
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let d = *l1.dims().last().unwrap_or(&0);
        if d == 0 || gain.len() != d || bias.len() != d {
            candle_core::bail!(
                "fused-layer-norm: last dimension {d} does not match gain {} and bias {}",
                gain.len(),
                bias.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        host::layer_norm_forward(x, gain, bias, self.eps, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = *l1.dims().last().unwrap_or(&0);
        if d == 0 || l2.shape().elem_count() != d || l3.shape().elem_count() != d {
            candle_core::bail!(
                "fused-layer-norm: last dimension {d} does not match gain {:?} and bias {:?}",
                l2.shape(),
                l3.shape()
            );
        }
        crate::cuda::layer_norm_forward(s1, l1, (s2, l2), (s3, l3), self.eps)
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            let (dx, dgain, dbias) = crate::cuda::layer_norm_backward(x, gain, grad, self.eps)?;
            return Ok((Some(dx), Some(dgain), Some(dbias)));
        }
        let d = x.dim(candle_core::D::Minus1)?;
        let (dx, dgain, dbias) = with_f32(self.name(), &[x, grad, gain], |s| {
            let mut dx = vec![0f32; s[0].len()];
            let (mut dgain, mut dbias) = (vec![0f32; d], vec![0f32; d]);
            host::layer_norm_backward(s[0], s[1], s[2], self.eps, &mut dx, &mut dgain, &mut dbias);
            (dx, dgain, dbias)
        })?;
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dgain, gain.shape(), device)?),
            Some(Tensor::from_vec(dbias, gain.shape(), device)?),
        ))
    }
}

// --------------------------------------------------------------------- GELU

/// GELU, exact (`x·Φ(x)` with erf) or with the tanh approximation.
pub fn gelu(x: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluOp { tanh_approximation })
}

struct GeluOp {
    tanh_approximation: bool,
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let mut out = vec![0f32; x.len()];
        host::gelu_forward(x, self.tanh_approximation, &mut out);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::gelu_forward(s, l, self.tanh_approximation)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return Ok(Some(crate::cuda::gelu_backward(
                x,
                grad,
                self.tanh_approximation,
            )?));
        }
        let dx = with_f32(self.name(), &[x, grad], |s| {
            let mut dx = vec![0f32; s[0].len()];
            host::gelu_backward(s[0], s[1], self.tanh_approximation, &mut dx);
            dx
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

// ---------------------------------------------------------------- attention

/// Causal scaled dot-product attention, as [`crate::ops::causal_attention`]
/// with its causal mask built in, in the layout a linear layer produces:
/// `q`, `k`, `v` and the result are `[batch, t, heads, key_size]` (a free
/// reshape of `[batch, t, heads·key_size]`), so the model needs no head
/// transposes. Position `i` attends to `0..=i`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, CausalAttention)
}

struct CausalAttention;

/// The shared shape of `q`, `k` and `v`, which must agree.
fn attention_layouts(q: &Layout, k: &Layout, v: &Layout) -> Result<AttentionShape> {
    if k.shape() != q.shape() || v.shape() != q.shape() {
        candle_core::bail!(
            "fused-causal-attention: q {:?}, k {:?}, v {:?} must have one shape",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    attention_shape(q.shape())
}

fn attention_shape(shape: &Shape) -> Result<AttentionShape> {
    let (batch, t, heads, key) = shape.dims4()?;
    Ok(AttentionShape {
        batch,
        t,
        heads,
        key,
    })
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "fused-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = attention_layouts(l1, l2, l3)?;
        let (q, k, v) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let mut out = vec![0f32; q.len()];
        host::causal_attention_forward(q, k, v, shape, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        attention_layouts(l1, l2, l3)?;
        crate::cuda::attention_forward((s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if q.device().is_cuda() {
            let (dq, dk, dv) = crate::cuda::attention_backward(q, k, v, grad)?;
            return Ok((Some(dq), Some(dk), Some(dv)));
        }
        let shape = attention_shape(q.shape())?;
        let [dq, dk, dv] = with_f32(self.name(), &[q, k, v, grad], |s| {
            let mut out = [(); 3].map(|_| vec![0f32; s[0].len()]);
            let [dq, dk, dv] = &mut out;
            host::causal_attention_backward(s[0], s[1], s[2], s[3], shape, dq, dk, dv);
            out
        })?;
        let (shape, device) = (q.shape(), q.device());
        Ok((
            Some(Tensor::from_vec(dq, shape, device)?),
            Some(Tensor::from_vec(dk, shape, device)?),
            Some(Tensor::from_vec(dv, shape, device)?),
        ))
    }
}

// ------------------------------------------------------------ cross-entropy

/// Mean softmax cross-entropy of `logits` `[.., classes]` against integer
/// `targets` of the same leading shape, as [`crate::ops::cross_entropy`], in
/// one pass forward and one backward (`(softmax − one_hot) / rows`).
/// Targets outside `0..classes` are an error, not garbage.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let classes = logits.dim(candle_core::D::Minus1)?;
    let targets_tensor = targets;
    let targets: Vec<u32> = targets
        .flatten_all()?
        .to_dtype(candle_core::DType::U32)?
        .to_vec1()?;
    if targets.len() * classes != logits.elem_count() {
        candle_core::bail!(
            "fused-cross-entropy: {} targets for logits {:?}",
            targets.len(),
            logits.shape()
        );
    }
    if let Some(bad) = targets.iter().find(|&&y| y as usize >= classes) {
        candle_core::bail!("fused-cross-entropy: target {bad} is not below {classes} classes");
    }
    // The GPU kernels read the targets from the logits' device, where the
    // caller usually has them already.
    let targets_on_device = if logits.device().is_cpu() {
        None
    } else {
        Some(
            targets_tensor
                .flatten_all()?
                .to_dtype(candle_core::DType::U32)?
                .to_device(logits.device())?
                .contiguous()?,
        )
    };
    logits.contiguous()?.apply_op1(CrossEntropyOp {
        targets,
        targets_on_device,
        classes,
    })
}

struct CrossEntropyOp {
    targets: Vec<u32>,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    targets_on_device: Option<Tensor>,
    classes: usize,
}

impl CrossEntropyOp {
    #[cfg(feature = "cuda")]
    fn device_targets(&self) -> Result<&Tensor> {
        self.targets_on_device.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("fused-cross-entropy: targets were not uploaded".into())
        })
    }
}

impl CustomOp1 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let z = f32_slice(self.name(), s, l)?;
        let mean = host::cross_entropy_forward(z, &self.targets, self.classes);
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::cross_entropy_forward(s, l, self.device_targets()?, self.classes)
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let scale = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?
            / self.targets.len().max(1) as f32;
        #[cfg(feature = "cuda")]
        if logits.device().is_cuda() {
            let dz = crate::cuda::cross_entropy_backward(
                logits,
                self.device_targets()?,
                self.classes,
                scale,
            )?;
            return Ok(Some(dz));
        }
        let dz = with_f32(self.name(), &[logits], |s| {
            let mut dz = vec![0f32; s[0].len()];
            host::cross_entropy_backward(s[0], &self.targets, self.classes, scale, &mut dz);
            dz
        })?;
        Ok(Some(Tensor::from_vec(dz, logits.shape(), logits.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64, scale: f64) -> Var {
        let mut rng = Rng::new(seed);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
        Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Relative closeness: `|a − b| ≤ tol · max(1, |b|)`.
    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * y.abs().max(1.0),
                "{what}[{i}]: fused {x} vs composed {y}"
            );
        }
    }

    /// Forward values and the gradients of `Σ w ⊙ f(args)` for a fixed
    /// random `w`, so every output element gets a distinct upstream gradient.
    fn value_and_grads(out: &Tensor, args: &[&Var]) -> (Vec<f32>, Vec<Vec<f32>>) {
        let w = random(out.dims(), 99, 1.0);
        let loss = (out * w.as_tensor()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        (
            flat(out),
            args.iter()
                .map(|a| flat(grads.get(a.as_tensor()).expect("gradient")))
                .collect(),
        )
    }

    #[test]
    fn layer_norm_matches_the_composed_op_on_odd_shapes() {
        for (shape, d) in [(vec![3, 7, 13], 13), (vec![1, 1, 5], 5), (vec![33, 64], 64)] {
            let x = random(&shape, 1, 2.0);
            let gain = random(&[d], 2, 1.0);
            let bias = random(&[d], 3, 1.0);
            let (fv, fg) = value_and_grads(
                &layer_norm(&x, &gain, &bias, 1e-5).unwrap(),
                &[&x, &gain, &bias],
            );
            let (cv, cg) = value_and_grads(
                &ops::layer_norm(&x, &gain, &bias, 1e-5).unwrap(),
                &[&x, &gain, &bias],
            );
            close(&fv, &cv, 1e-5, "layer norm");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("layer norm grad {i} {shape:?}"));
            }
        }
    }

    fn random_targets(n: usize, classes: usize, seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let ys: Vec<u32> = (0..n).map(|_| rng.below(classes as u64) as u32).collect();
        Tensor::from_vec(ys, n, &Device::Cpu).unwrap()
    }

    #[test]
    fn cross_entropy_matches_the_composed_op_on_odd_shapes() {
        for shape in [vec![3, 7, 10], vec![1, 1, 3], vec![37, 5]] {
            let logits = random(&shape, 30, 3.0);
            let rows: usize = shape[..shape.len() - 1].iter().product();
            let targets = random_targets(rows, *shape.last().unwrap(), 31)
                .reshape(&shape[..shape.len() - 1])
                .unwrap();
            let fused = cross_entropy(&logits, &targets).unwrap();
            let composed = ops::cross_entropy(&logits, &targets).unwrap();
            let (f, c) = (
                fused.to_scalar::<f32>().unwrap(),
                composed.to_scalar::<f32>().unwrap(),
            );
            assert!((f - c).abs() <= 1e-5 * c.abs().max(1.0), "{f} vs {c}");
            let fg = flat(fused.backward().unwrap().get(&logits).unwrap());
            let cg = flat(composed.backward().unwrap().get(&logits).unwrap());
            close(&fg, &cg, 1e-4, &format!("cross-entropy grad {shape:?}"));
        }
    }

    #[test]
    fn cross_entropy_refuses_targets_outside_the_classes() {
        let logits = random(&[2, 3], 32, 1.0);
        let targets = Tensor::from_vec(vec![0u32, 3], 2, &Device::Cpu).unwrap();
        let err = cross_entropy(&logits, &targets).unwrap_err().to_string();
        assert!(err.contains("target 3 is not below 3 classes"), "{err}");
        let short = Tensor::from_vec(vec![0u32], 1, &Device::Cpu).unwrap();
        assert!(cross_entropy(&logits, &short).is_err());
    }

    #[test]
    fn linear_relu_matches_the_composed_ops() {
        for (rows, k, n) in [(7, 5, 9), (1, 1, 1), (37, 16, 3)] {
            let x = random(&[rows, k], 43, 1.0);
            let w = random(&[k, n], 44, 1.0);
            let b = random(&[n], 45, 1.0);
            let (fv, fg) = value_and_grads(&linear_relu(&x, &w, &b).unwrap(), &[&x, &w, &b]);
            let composed = x
                .matmul(&w)
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
                .relu()
                .unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&x, &w, &b]);
            assert!(fv.contains(&0.0) || rows == 1, "some outputs clipped");
            close(&fv, &cv, 1e-5, "linear relu");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("linear relu grad {i}"));
            }
        }
    }

    #[test]
    fn linear_of_a_data_input_skips_only_the_input_gradient() {
        // A plain tensor (no gradient needed) as the input of a first layer.
        let x = random(&[9, 4], 40, 1.0).as_tensor().detach();
        let w = random(&[4, 3], 41, 1.0);
        let b = random(&[3], 42, 1.0);
        let (_, fused) = value_and_grads(&linear(&x, &w, &b).unwrap(), &[&w, &b]);
        let composed = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        let (_, reference) = value_and_grads(&composed, &[&w, &b]);
        close(&fused[0], &reference[0], 1e-4, "weight grad");
        close(&fused[1], &reference[1], 1e-4, "bias grad");
    }

    #[test]
    fn adam_update_matches_the_scalar_formula_across_chunks() {
        // Longer than one parallel chunk and not a multiple of the SIMD width.
        let n = 2 * host::ELEMENTWISE_CHUNK + 13;
        let mut rng = Rng::new(50);
        let mut draw = || -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
        let (p0, g, m0) = (draw(), draw(), draw());
        let v0: Vec<f32> = draw().iter().map(|x| x * x).collect();
        let step = AdamStep {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            eps_root: 1e-6,
            weight_decay: 0.1,
            correction1: 1.0 - 0.9f32.powi(3),
            correction2: 1.0 - 0.99f32.powi(3),
        };
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        adam_update(&mut p, &g, &mut m, &mut v, &step);
        for i in (0..n).step_by(997).chain([n - 1]) {
            let m1 = 0.9 * m0[i] as f64 + 0.1 * g[i] as f64;
            let v1 = 0.99 * v0[i] as f64 + 0.01 * (g[i] as f64).powi(2);
            let (m_hat, v_hat) = (m1 / step.correction1 as f64, v1 / step.correction2 as f64);
            let update = m_hat / ((v_hat + 1e-6).sqrt() + 1e-8) + 0.1 * p0[i] as f64;
            let expected = p0[i] as f64 - 1e-2 * update;
            assert!(
                (p[i] as f64 - expected).abs() < 1e-5,
                "p[{i}]: {} vs {expected}",
                p[i]
            );
            assert!((m[i] as f64 - m1).abs() < 1e-6 && (v[i] as f64 - v1).abs() < 1e-5);
        }
    }

    #[test]
    fn linear_matches_the_composed_op_on_odd_shapes() {
        for (x_shape, k, n) in [
            (vec![3, 7, 5], 5, 9),
            (vec![1, 1], 1, 1),
            (vec![37, 16], 16, 3),
        ] {
            let x = random(&x_shape, 20, 1.0);
            let w = random(&[k, n], 21, 1.0);
            let b = random(&[n], 22, 1.0);
            let (fv, fg) = value_and_grads(&linear(&x, &w, &b).unwrap(), &[&x, &w, &b]);
            let rows: usize = x_shape[..x_shape.len() - 1].iter().product();
            let composed = x
                .reshape((rows, k))
                .unwrap()
                .matmul(&w)
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let mut out_shape = x_shape.clone();
            *out_shape.last_mut().unwrap() = n;
            let composed = composed.reshape(out_shape).unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&x, &w, &b]);
            close(&fv, &cv, 1e-5, "linear");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("linear grad {i} {x_shape:?}"));
            }
        }
    }

    #[test]
    fn gelu_matches_the_composed_op_in_both_forms() {
        let x = random(&[5, 37], 4, 2.5);
        for tanh in [false, true] {
            let fused = gelu(&x, tanh).unwrap();
            let composed = if tanh {
                x.as_tensor().gelu().unwrap()
            } else {
                x.as_tensor().gelu_erf().unwrap()
            };
            let (fv, fg) = value_and_grads(&fused, &[&x]);
            let (cv, cg) = value_and_grads(&composed, &[&x]);
            close(&fv, &cv, 1e-5, "gelu");
            close(&fg[0], &cg[0], 1e-4, "gelu grad");
        }
    }

    #[test]
    fn attention_matches_the_composed_op_on_odd_shapes() {
        for shape in [[2, 7, 3, 5], [1, 1, 1, 4], [1, 17, 2, 8], [3, 9, 1, 6]] {
            let q = random(&shape, 5, 1.0);
            let k = random(&shape, 6, 1.0);
            let v = random(&shape, 7, 1.0);
            // Shapes are [batch, t, heads, key]; the composed op wants heads
            // before positions.
            let mask = ops::causal_mask(shape[1], &Device::Cpu).unwrap();
            let (fv, fg) = value_and_grads(&causal_attention(&q, &k, &v).unwrap(), &[&q, &k, &v]);
            let heads_first = |x: &Var| x.transpose(1, 2).unwrap().contiguous().unwrap();
            let composed =
                ops::causal_attention(&heads_first(&q), &heads_first(&k), &heads_first(&v), &mask)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&q, &k, &v]);
            close(&fv, &cv, 1e-5, "attention");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("attention grad {i} {shape:?}"));
            }
        }
    }

    /// Central differences in f64 of a scalar function of one argument.
    fn finite_difference_check(
        f: impl Fn(&Tensor) -> Tensor,
        x: &Var,
        analytic: &[f32],
        what: &str,
    ) {
        let base = flat(x.as_tensor());
        let w = random(f(x.as_tensor()).dims(), 99, 1.0);
        let loss = |data: Vec<f32>| -> f64 {
            let t = Tensor::from_vec(data, x.shape(), &Device::Cpu).unwrap();
            (f(&t) * w.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let h = 1e-2f32;
        for i in (0..base.len()).step_by(3) {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[i] += h;
            minus[i] -= h;
            let numeric = (loss(plus) - loss(minus)) / (2.0 * h as f64);
            assert!(
                (numeric - analytic[i] as f64).abs() < 2e-2 * numeric.abs().max(1.0),
                "{what}[{i}]: numeric {numeric} vs analytic {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn fused_gradients_match_finite_differences() {
        let x = random(&[3, 6], 8, 1.0);
        let gain = random(&[6], 9, 1.0);
        let bias = random(&[6], 10, 1.0);
        let ln = |x: &Tensor| layer_norm(x, &gain, &bias, 1e-5).unwrap();
        let (_, g) = value_and_grads(&ln(x.as_tensor()), &[&x]);
        finite_difference_check(ln, &x, &g[0], "layer norm");

        let (_, g) = value_and_grads(&gelu(&x, false).unwrap(), &[&x]);
        finite_difference_check(|x| gelu(x, false).unwrap(), &x, &g[0], "gelu");
        let (_, g) = value_and_grads(&gelu(&x, true).unwrap(), &[&x]);
        finite_difference_check(|x| gelu(x, true).unwrap(), &x, &g[0], "gelu tanh");

        let targets = random_targets(3, 6, 14);
        let ce = |x: &Tensor| cross_entropy(x, &targets).unwrap();
        let (_, g) = value_and_grads(&ce(x.as_tensor()), &[&x]);
        finite_difference_check(ce, &x, &g[0], "cross-entropy");

        let q = random(&[1, 5, 2, 3], 11, 1.0);
        let k = random(&[1, 5, 2, 3], 12, 1.0);
        let v = random(&[1, 5, 2, 3], 13, 1.0);
        let (_, g) = value_and_grads(&causal_attention(&q, &k, &v).unwrap(), &[&q, &k, &v]);
        finite_difference_check(
            |q| causal_attention(q, &k, &v).unwrap(),
            &q,
            &g[0],
            "attention q",
        );
        finite_difference_check(
            |k| causal_attention(&q, k, &v).unwrap(),
            &k,
            &g[1],
            "attention k",
        );
        finite_difference_check(
            |v| causal_attention(&q, &k, v).unwrap(),
            &v,
            &g[2],
            "attention v",
        );
    }
}
