//! Tensors, devices, seeded randomness and the differentiable ops every
//! gpicl model is built from.
//!
//! This crate sits at the bottom of the pipeline
//! (`kernels ← models ← meta, eval`): it knows nothing about tasks or
//! training. It provides
//!
//! - [`device`]: turning a user's `--device` string into a candle [`Device`];
//! - [`rng`]: a portable, seedable random number generator whose streams are
//!   pure functions of `(seed, stream id)`, so projections, permutations and
//!   initial weights are identical on every machine (candle's own CPU RNG
//!   cannot be seeded);
//! - [`op`]: the fused ops, one module each (linear, linear + ReLU,
//!   LayerNorm, GELU, causal attention, cross-entropy, the LSTM and
//!   outer-product LSTM recurrences, Adam), each with its composed
//!   `reference`, its CPU kernel, its CUDA half (feature `cuda`) and its
//!   parity case;
//! - [`KernelOptions`]: which kernels the ops use and the precision of
//!   their products, a value a model is built with (no global switch);
//! - [`composed`]: softmax, layer norm, causal attention and cross-entropy
//!   written as compositions of candle primitives that all record a
//!   backward pass (candle's fused fast paths do not): the references;
//! - [`host`]: the ops' CPU loops over plain slices gathered into one API
//!   for hand-written training steps (the private `cpu` module holds the
//!   `gemm` products the loops share);
//! - [`bf16`]: bf16 matrix products with f32 accumulation on AMX tiles,
//!   the CPU half of `precision = "bf16"`;
//! - `cuda` (with the `cuda` feature): what the ops' CUDA halves share
//!   (the PTX of `src/cuda/kernels.cu`, launches, device views);
//! - [`simd`]: the run-time choice between the portable, AVX2 and AVX-512
//!   copies of the kernels' loops (bit-identical results at every level);
//! - [`parity`]: every fused op checked against its composed definition,
//!   on any device.
//!
//! ```
//! use gpicl_kernels::{composed, rng::Rng, Device, Tensor};
//! let mut rng = Rng::from_stream(7, &[1, 2]);
//! let data: Vec<f32> = (0..6).map(|_| rng.normal() as f32).collect();
//! let x = Tensor::from_vec(data, (2, 3), &Device::Cpu).unwrap();
//! let p = composed::softmax_last_dim(&x).unwrap();
//! let row: Vec<f32> = p.sum_keepdim(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
//! assert!((row[0] - 1.0).abs() < 1e-6);
//! ```
#![warn(missing_docs)]

pub mod allocator;
pub mod bf16;
pub mod composed;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod error;
pub mod host;
mod layout;
mod math;
pub mod op;
mod options;
mod parallel;
pub mod parity;
pub mod rng;
pub mod simd;

pub use candle_core::{DType, Device, Tensor, Var, D};
pub use error::{KernelError, Result};
pub use options::KernelOptions;
