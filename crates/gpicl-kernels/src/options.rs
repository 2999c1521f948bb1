//! How the differentiable ops run: [`KernelOptions`], a plain value that
//! a model is built with and hands to every op it calls (no process-wide
//! switch).

use candle_core::{DType, Tensor};

/// Which kernels the ops of [`crate::op`] use and at which precision their
/// matrix products run. `Copy`, so a model keeps its own and passes it to
/// every op; two models in one process can run with different options.
///
/// ```
/// use gpicl_kernels::{op, KernelOptions, Device, Tensor};
/// let x = Tensor::new(&[[0.5f32, -1.0]], &Device::Cpu).unwrap();
/// let fused = op::gelu::gelu(&x, false, KernelOptions::default()).unwrap();
/// let composed = op::gelu::gelu(&x, false, KernelOptions::composed()).unwrap();
/// let (a, b): (Vec<f32>, Vec<f32>) = (
///     fused.flatten_all().unwrap().to_vec1().unwrap(),
///     composed.flatten_all().unwrap().to_vec1().unwrap(),
/// );
/// assert!((a[0] - b[0]).abs() < 1e-6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// Use the fused kernels where they apply (`f32` tensors on the CPU,
    /// or on CUDA in builds with the `cuda` feature); off, every op runs
    /// its composed reference (e.g. to time it). Default on.
    pub fused: bool,
    /// Run the matrix products of the fused linear layers and recurrences
    /// in bf16 (inputs and weights rounded, f32 accumulation, f32 result):
    /// in cuBLAS on CUDA; on the CPU on AMX tiles where
    /// [`crate::bf16::support`] allows, f32 elsewhere. Default off.
    pub bf16_matmuls: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            fused: true,
            bf16_matmuls: false,
        }
    }
}

/// Where one op call runs (see [`KernelOptions::backend`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The op's composed reference (candle primitives).
    Composed,
    /// The op's fused CPU kernel (a candle custom op over slices).
    Cpu,
    /// The op's CUDA half (`op::<name>::cuda`).
    #[cfg(feature = "cuda")]
    Cuda,
}

impl KernelOptions {
    /// Every op on its composed reference.
    pub fn composed() -> Self {
        Self {
            fused: false,
            ..Self::default()
        }
    }

    /// The defaults, with the fused kernels off when the environment sets
    /// `GPICL_FUSED_KERNELS=0` (or `false`). Read where a run's options
    /// are built (trainer, benchmarks), once per call; the ops themselves
    /// read no environment.
    pub fn from_env() -> Self {
        let off = std::env::var("GPICL_FUSED_KERNELS").is_ok_and(|v| v == "0" || v == "false");
        Self {
            fused: !off,
            ..Self::default()
        }
    }

    /// Whether the fused ops apply to `x`: an `f32` tensor on the CPU, or
    /// on a CUDA device in builds with the `cuda` feature, with
    /// [`KernelOptions::fused`] on.
    pub fn use_fused(&self, x: &Tensor) -> bool {
        self.backend(x) != Backend::Composed
    }

    /// Whether the slice kernels of [`crate::host`] apply to `x` (CPU
    /// `f32`, fused kernels on): the hand-written training steps read
    /// tensors as slices and are CPU-only.
    pub fn use_host_kernels(&self, x: &Tensor) -> bool {
        self.backend(x) == Backend::Cpu
    }

    /// The one dispatch every op of [`crate::op`] goes through: its fused
    /// CPU kernel, its CUDA half, or its composed reference.
    pub(crate) fn backend(&self, x: &Tensor) -> Backend {
        if !self.fused || x.dtype() != DType::F32 {
            return Backend::Composed;
        }
        if x.device().is_cpu() {
            return Backend::Cpu;
        }
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return Backend::Cuda;
        }
        Backend::Composed
    }
}
