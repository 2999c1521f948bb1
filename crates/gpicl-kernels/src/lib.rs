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
//! - [`fused`]: multi-threaded CPU kernels with their backward passes
//!   (linear, LayerNorm, GELU, causal attention, cross-entropy), as candle
//!   ops tested against [`ops`]; [`host`] holds the same kernels over plain
//!   slices (and Adam) for hand-written training steps;
//! - [`bf16`]: bf16 matrix products with f32 accumulation on AMX tiles,
//!   the CPU half of `precision = "bf16"`;
//! - [`in_place`]: the Adam update on a parameter tensor's own storage;
//! - [`lstm`], [`outer_lstm`]: the recurrences as single fused ops;
//! - `cuda` (with the `cuda` feature): the GPU halves of the fused ops;
//! - [`simd`]: the run-time choice between the portable, AVX2 and AVX-512
//!   copies of the kernels' loops (bit-identical results at every level);
//! - [`parity`]: every fused op checked against its composed definition,
//!   on any device;
//! - [`ops`]: layer norm, softmax, causal attention and cross-entropy written
//!   as compositions of candle primitives that all record a backward pass
//!   (candle's fused fast paths do not).
//!
//! ```
//! use gpicl_kernels::{ops, rng::Rng, Device, Tensor};
//! let mut rng = Rng::from_stream(7, &[1, 2]);
//! let data: Vec<f32> = (0..6).map(|_| rng.normal() as f32).collect();
//! let x = Tensor::from_vec(data, (2, 3), &Device::Cpu).unwrap();
//! let p = ops::softmax_last_dim(&x).unwrap();
//! let row: Vec<f32> = p.sum_keepdim(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
//! assert!((row[0] - 1.0).abs() < 1e-6);
//! ```
#![warn(missing_docs)]

pub mod allocator;
pub mod bf16;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod error;
pub mod fused;
pub mod host;
pub mod in_place;
pub mod lstm;
mod math;
pub mod ops;
pub mod outer_lstm;
pub mod parity;
pub mod rng;
pub mod simd;

pub use candle_core::{DType, Device, Tensor, Var, D};

/// Mean cross-entropy of `logits` `[.., classes]` against integer
/// `targets`: the fused kernel ([`fused::cross_entropy`]) on CPU `f32`, the
/// composed reference ([`ops::cross_entropy`]) elsewhere. Training uses this.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    if fused::use_fused(logits) {
        fused::cross_entropy(logits, targets)
    } else {
        ops::cross_entropy(logits, targets)
    }
}
pub use error::{KernelError, Result};
