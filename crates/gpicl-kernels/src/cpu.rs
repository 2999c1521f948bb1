//! Plain-CPU helpers shared by the fused kernels.

use crate::layout::operand_strides;
use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};
use std::sync::{Mutex, MutexGuard};

/// The contiguous `f32` data of a custom op's argument.
pub(crate) fn f32_slice<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        (CpuStorage::F32(_), None) => candle_core::bail!("{op} needs contiguous inputs"),
        _ => candle_core::bail!("{op} supports f32 only"),
    }
}

/// Runs `f` on the `f32` data of CPU tensors, borrowed in place (a
/// backward pass would otherwise copy every saved activation out with
/// `to_vec1`). Non-contiguous tensors are made contiguous first.
pub(crate) fn with_f32<R>(
    op: &str,
    tensors: &[&Tensor],
    f: impl FnOnce(&[&[f32]]) -> R,
) -> Result<R> {
    let contiguous = tensors
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = contiguous.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(s) => slices.push(f32_slice(op, s, layout)?),
            _ => candle_core::bail!("{op} runs on CPU tensors only"),
        }
    }
    Ok(f(&slices))
}

/// `dst[m×n] (+)= op(lhs)[m×k] · op(rhs)[k×n]` on `gemm` with every
/// thread, row-major, where `op` transposes a stored `[k×m]` / `[n×k]`
/// operand when asked; on AMX tiles in bf16 ([`crate::bf16::matmul`]) when
/// `bf16` ([`crate::KernelOptions::bf16_matmuls`]) and the CPU has them.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    bf16: bool,
) {
    if bf16 && crate::bf16::support().is_ok() {
        crate::bf16::matmul(dst, lhs, lhs_t, rhs, rhs_t, m, k, n, accumulate);
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parallelism = gemm::Parallelism::Rayon(threads);
    matmul_with(
        dst,
        lhs,
        lhs_t,
        rhs,
        rhs_t,
        m,
        k,
        n,
        accumulate,
        parallelism,
    );
}

/// [`matmul`] on the calling thread only (for kernels that run many
/// small products inside their own parallel loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_serial(
    dst: &mut [f32],
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    matmul_with(
        dst,
        lhs,
        lhs_t,
        rhs,
        rhs_t,
        m,
        k,
        n,
        accumulate,
        gemm::Parallelism::None,
    );
}

#[allow(clippy::too_many_arguments)]
fn matmul_with(
    dst: &mut [f32],
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    let (lhs_rs, lhs_cs) = operand_strides(lhs_t, m, k);
    let (rhs_rs, rhs_cs) = operand_strides(rhs_t, k, n);
    let (lhs_rs, lhs_cs, rhs_rs, rhs_cs) = (
        lhs_rs as isize,
        lhs_cs as isize,
        rhs_rs as isize,
        rhs_cs as isize,
    );
    // SAFETY: the asserts above keep every index of the strided views in bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A strided matrix operand of [`matmul_view_serial`]: element `(r, c)`
/// lives at `ptr + r·rs + c·cs`, so one head of a `[b, t, heads, key]`
/// buffer is a view without a copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// A raw output pointer shared by parallel tasks that write disjoint
/// elements through it (one attention head each).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);

impl SharedMut {
    /// The pointer `offset` elements in. A method, so that closures capture
    /// the whole `SharedMut` (which is `Sync`) rather than its raw field.
    pub fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

// SAFETY: tasks holding a `SharedMut` write disjoint elements (each caller
// documents its partition) and the buffer outlives the parallel region.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]` on `gemm`, on the calling thread, with
/// every operand strided; `dst`'s element `(r, c)` is at `dst + r·dst_rs + c`.
///
/// # Safety
/// Every element of the three views must be in bounds of live buffers, and
/// no other thread may touch `dst`'s elements during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul_view_serial(
    dst: *mut f32,
    dst_rs: isize,
    lhs: View,
    rhs: View,
    m: usize,
    k: usize,
    n: usize,
) {
    // SAFETY: the caller's contract above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            false,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// What a recurrence op keeps from its forward pass for its backward pass.
/// Held by the op rather than returned as an output: an output would come
/// back in the backward pass as a zero-filled gradient of the same size to
/// be read (6× `h` for the LSTM, `b·t·n·H²` floats for the outer-product
/// LSTM's cells).
#[derive(Default)]
pub(crate) struct SavedForBackward(Mutex<Vec<f32>>);

impl SavedForBackward {
    /// Keeps `saved` (`per_position` values per position) and returns the
    /// first `prefix` values of every position: the op's output.
    pub fn keep(&self, saved: Vec<f32>, per_position: usize, prefix: usize) -> Vec<f32> {
        let mut output = Vec::with_capacity(saved.len() / per_position * prefix);
        for position in saved.chunks_exact(per_position) {
            output.extend_from_slice(&position[..prefix]);
        }
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = saved;
        output
    }

    /// The kept values, which must be `len` long (else the backward pass
    /// runs without its forward pass).
    pub fn get(&self, op: &str, len: usize) -> Result<MutexGuard<'_, Vec<f32>>> {
        let saved = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if saved.len() != len {
            candle_core::bail!("{op}: backward without its forward pass");
        }
        Ok(saved)
    }
}

/// The gradient of a recurrent weight `W` in `gates_t = … + h_{t−1} W`, as
/// one product over all positions: `Σ_t h_{t−1}ᵀ d_gates_t`. `saved` holds
/// `saved_width` values per position starting with `h_t` (`width` values);
/// `d_gates` holds `gates` values per position; the product in bf16 when
/// `bf16`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn recurrent_weight_grad(
    saved: &[f32],
    saved_width: usize,
    width: usize,
    d_gates: &[f32],
    gates: usize,
    b: usize,
    t: usize,
    bf16: bool,
) -> Vec<f32> {
    let mut h_prev = vec![0f32; b * t * width];
    for bi in 0..b {
        for step in 1..t {
            let src = (bi * t + step - 1) * saved_width;
            h_prev[(bi * t + step) * width..(bi * t + step + 1) * width]
                .copy_from_slice(&saved[src..src + width]);
        }
    }
    let mut d_w = vec![0f32; width * gates];
    matmul(
        &mut d_w,
        &h_prev,
        true,
        d_gates,
        false,
        width,
        b * t,
        gates,
        false,
        bf16,
    );
    d_w
}
