//! Runtime dispatch to AVX2 and AVX-512 code for the kernels' elementwise
//! loops.
//!
//! The workspace builds for baseline x86-64 (SSE2) so that one binary runs
//! everywhere; `gemm` picks its own SIMD level at run time, but our loops
//! would otherwise stay 4 lanes wide. `simd_fn!` compiles a kernel three
//! times (portable, AVX2, AVX-512) and runs the widest copy the CPU has.
//!
//! Every copy performs the same floating-point operations in the same order
//! per element (no FMA contraction: Rust never fuses `a * b + c` on its own;
//! reductions keep their written order), so results are bit-identical
//! whichever copy runs; `the_simd_levels_compute_identical_bits` checks it
//! kernel by kernel in subprocesses.
//!
//! `GPICL_CPU_CAPABILITY=portable|avx2|avx512` caps the level, as
//! PyTorch's `ATEN_CPU_CAPABILITY` does: for benchmarks of one level
//! against another and for those parity tests. It is read once; a level the
//! CPU lacks, or an unknown value, falls back to what the CPU has, with a
//! warning.

use std::sync::OnceLock;

/// The instruction sets a kernel copy is compiled for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Baseline x86-64 (SSE2) or any other architecture.
    Portable,
    /// AVX2 (256-bit vectors).
    Avx2,
    /// AVX-512 F/BW/DQ/VL (512-bit vectors).
    Avx512,
}

impl SimdLevel {
    /// The name `GPICL_CPU_CAPABILITY` takes.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
    }
}

/// The widest level this CPU supports.
pub fn detected_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
        {
            return SimdLevel::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Portable
}

/// The level the kernels run at: the CPU's widest, capped by
/// `GPICL_CPU_CAPABILITY`.
pub fn level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = detected_level();
        let Ok(asked) = std::env::var("GPICL_CPU_CAPABILITY") else {
            return detected;
        };
        match SimdLevel::parse(&asked) {
            Some(level) if level <= detected => level,
            Some(level) => {
                eprintln!(
                    "warning: GPICL_CPU_CAPABILITY={asked}: this CPU lacks {}, using {}",
                    level.name(),
                    detected.name()
                );
                detected
            }
            None => {
                eprintln!(
                    "warning: GPICL_CPU_CAPABILITY={asked} is not one of portable, avx2, avx512; using {}",
                    detected.name()
                );
                detected
            }
        }
    })
}

/// Defines a function whose body is also compiled for AVX2 and AVX-512,
/// the widest copy [`level`] allows running. Helpers called from the body
/// must be `#[inline(always)]` to be compiled for the same features.
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
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: `level` reports only features the CPU has.
                    $crate::simd::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::SimdLevel::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn capability_names_parse_and_order_by_width() {
        assert_eq!(SimdLevel::parse(" AVX512 "), Some(SimdLevel::Avx512));
        assert_eq!(SimdLevel::parse("avx2"), Some(SimdLevel::Avx2));
        assert_eq!(SimdLevel::parse("sse9"), None);
        assert!(SimdLevel::Portable < SimdLevel::Avx2 && SimdLevel::Avx2 < SimdLevel::Avx512);
        assert!(level() <= detected_level());
    }
}
