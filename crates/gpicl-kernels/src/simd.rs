//! Runtime dispatch to AVX2 code for the fused kernels' elementwise loops.
//!
//! The workspace builds for baseline x86-64 (SSE2) so that one binary runs
//! everywhere; `gemm` picks its own SIMD level at run time, but our loops
//! would otherwise stay 4 lanes wide. [`simd_fn!`] compiles a kernel twice,
//! once with AVX2 enabled, and picks the AVX2 copy when the CPU has it.
//!
//! Both copies perform the same floating-point operations in the same order
//! (no FMA contraction: Rust never fuses `a * b + c` on its own), so results
//! are bit-identical whichever copy runs.

/// Whether this CPU runs the AVX2 copies.
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a function whose body is also compiled for AVX2, used when the
/// CPU supports it. Helpers called from the body must be
/// `#[inline(always)]` to be compiled for AVX2 as well.
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::simd::has_avx2() {
                    // SAFETY: the CPU supports AVX2, the only feature
                    // `avx2` is compiled with.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

#[cfg(test)]
mod tests {
    simd_fn! {
        fn scaled_sum(xs: &[f32], scale: f32) -> f32 {
            let mut acc = [0f32; 8];
            for c in xs.chunks_exact(8) {
                for l in 0..8 {
                    acc[l] += c[l] * scale;
                }
            }
            acc.iter().sum()
        }
    }

    #[test]
    fn dispatched_kernels_compute_the_same_bits_as_the_portable_loop() {
        let xs: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut acc = [0f32; 8];
        for c in xs.chunks_exact(8) {
            for l in 0..8 {
                acc[l] += c[l] * 1.5;
            }
        }
        let portable: f32 = acc.iter().sum();
        assert_eq!(scaled_sum(&xs, 1.5).to_bits(), portable.to_bits());
    }
}
