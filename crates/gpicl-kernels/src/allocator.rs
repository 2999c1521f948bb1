//! Keeping large tensor buffers on the heap between training steps.
//!
//! candle allocates a fresh buffer for every op's output. With glibc's
//! defaults, every buffer above 128 KiB–32 MiB (a `[3200, 1024]` f32
//! activation is 13 MiB) is its own `mmap`, returned to the kernel when
//! freed, so each step page-faults and zeroes the same memory again
//! (2–3 % of a profile in `clear_page_erms` and `exc_page_fault`, more in
//! the allocator). Raising the mmap and trim thresholds keeps freed buffers
//! in the heap for the next step: about 15 % off the reference Transformer
//! step on 2 cores (see `docs/benchmarks.md`).

/// Tunes the process allocator for training (glibc on Linux; elsewhere a
/// no-op). Call once at start-up, before large allocations.
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; these values are
    // in the documented ranges (the mmap threshold's maximum is 32 MiB on
    // 64-bit systems).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
