//! The fused kernels over plain `f32` slices, gathered from the ops'
//! modules (`op::<name>::cpu`): what the ops of [`crate::op`] run inside,
//! and what a hand-written training step (one that keeps its activations
//! in its own buffers instead of candle's autograd graph) calls directly;
//! with the helpers they share and [`BufferPool`].
//!
//! Every function is multi-threaded with rayon where the work is large and
//! runs its inner loops through [`crate::simd`]'s AVX2 dispatch. Shapes are
//! implied by slice lengths and checked with assertions: these are
//! building blocks for callers that have validated their shapes already
//! (the candle ops in [`crate::op`] check and return errors).
//!
//! ```
//! use gpicl_kernels::host;
//! // y = x W + b for two rows of three features into two outputs.
//! let (x, w, b) = ([1.0, 2.0, 3.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.5, -0.5]);
//! let mut y = [0.0; 4];
//! host::linear_forward(&x, &w, &b, &mut y, false);
//! assert_eq!(y, [4.5, 4.5, 0.5, 0.5]);
//! ```

use crate::cpu;
use crate::parallel::ELEMENTWISE_CHUNK;
use crate::simd::simd_fn;
use rayon::prelude::*;

pub use crate::cpu::matmul;

/// Runs `f` on the `f32` data of CPU tensors, borrowed in place (tensors
/// that are not contiguous are copied into contiguous ones first). Errors
/// for tensors off the CPU or of another dtype.
pub fn with_tensor_data<R>(
    tensors: &[&candle_core::Tensor],
    f: impl FnOnce(&[&[f32]]) -> R,
) -> candle_core::Result<R> {
    cpu::with_f32("host::with_tensor_data", tensors, f)
}

simd_fn! {
    /// `dst += src`, elementwise.
    fn add_slices(dst: &mut [f32], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

/// `dst += src` elementwise, in parallel chunks.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "add_assign: lengths");
    dst.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(src.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(d, s)| add_slices(d, s));
}

// Each op's loops live in its module of `crate::op`; here they are one
// slice API for hand-written training steps.

pub use crate::op::attention::cpu::{
    causal_attention_backward, causal_attention_backward_with_weights, causal_attention_forward,
    causal_attention_forward_keeping_weights, AttentionShape,
};
pub use crate::op::cross_entropy::cpu::{cross_entropy_backward, cross_entropy_forward};
pub use crate::op::gelu::cpu::{
    gelu_backward, gelu_backward_kept, gelu_forward, gelu_forward_keeping,
};
pub use crate::op::layer_norm::cpu::{layer_norm_backward, layer_norm_forward};
pub use crate::op::linear::cpu::{
    linear_backward, linear_forward, linear_relu_forward, relu_backward,
};

mod pool;
pub use pool::BufferPool;
