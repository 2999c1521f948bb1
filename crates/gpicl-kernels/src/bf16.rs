//! bf16 matrix products with f32 accumulation on the CPU's AMX tiles
//! (Intel Sapphire Rapids and newer): the CPU half of `precision = "bf16"`.
//!
//! [`matmul`] has the contract of [`crate::cpu::matmul`]: both operands are
//! rounded to bf16 (round to nearest even) while they are packed into
//! 16 × 32 tiles, `tdpbf16ps` multiplies them and accumulates in f32, and
//! the result is written (or added) in f32. Everything else of a training
//! step (weights, gradients, Adam, attention, normalisation) stays f32.
//!
//! AMX state is per thread and needs the kernel's permission once per
//! process (`arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)`); [`support`]
//! asks for it and says why bf16 cannot run where it cannot. The tile
//! instructions are written as inline assembly (stable Rust has no AMX
//! intrinsics).

use crate::layout::operand_strides;
use crate::simd::simd_fn;
use rayon::prelude::*;
use std::cell::Cell;
use std::sync::OnceLock;

/// Whether bf16 products can run on this CPU: `Ok` or the reason not.
pub fn support() -> Result<(), String> {
    static SUPPORT: OnceLock<Result<(), String>> = OnceLock::new();
    SUPPORT.get_or_init(detect).clone()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> Result<(), String> {
    // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (amx_bf16, amx_tile) = (leaf7.edx & (1 << 22) != 0, leaf7.edx & (1 << 24) != 0);
    if !(amx_bf16 && amx_tile) {
        return Err(
            "this CPU has no AMX-BF16 tiles (Intel Sapphire Rapids or newer has them)".into(),
        );
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments only asks the kernel for
    // permission to use the AMX tile state; it reads and writes no memory.
    let granted = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if granted != 0 {
        return Err(
            "the Linux kernel refused AMX tile state to this process (needs Linux 5.16 or newer)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> Result<(), String> {
    Err("bf16 products on the CPU need x86-64 Linux with AMX-BF16".into())
}

/// `x` rounded to bf16 (nearest even; NaN stays NaN), as its bits.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Rows (of A and C) and columns (of B and C) per tile; k values per tile.
const TILE: usize = 16;
const TILE_K: usize = 32;
/// bf16 values per packed tile.
const TILE_LEN: usize = TILE * TILE_K;

/// A strided f32 matrix: element `(r, c)` at `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

simd_fn! {
    /// One row panel of the left operand (rows `row0..row0 + rows`, all
    /// `k` columns) into `kblocks` tiles of 16 × 32.
    fn pack_lhs_panel(tiles: &mut [u16], data: &[f32], rs: usize, cs: usize, row0: usize, rows: usize, k: usize) {
        if cs == 1 {
            // Rows are contiguous: each tile row is 32 consecutive values.
            for r in 0..rows {
                let src = &data[(row0 + r) * rs..(row0 + r) * rs + k];
                for (kb, chunk) in src.chunks(TILE_K).enumerate() {
                    let dst = &mut tiles[kb * TILE_LEN + r * TILE_K..][..chunk.len()];
                    for (d, &x) in dst.iter_mut().zip(chunk) {
                        *d = to_bf16(x);
                    }
                }
            }
        } else {
            // Stored transposed (`rs == 1`): column `c` holds the panel's
            // rows contiguously. Convert 32 columns at a time in storage
            // order, then transpose the 32 × 16 block within L1.
            for (kb, tile) in tiles.chunks_exact_mut(TILE_LEN).enumerate() {
                let mut block = [[0u16; TILE]; TILE_K];
                for (cc, column) in block.iter_mut().enumerate().take(k.saturating_sub(kb * TILE_K)) {
                    let c = kb * TILE_K + cc;
                    let src = &data[c * cs + row0..c * cs + row0 + rows];
                    for (d, &x) in column.iter_mut().zip(src) {
                        *d = to_bf16(x);
                    }
                }
                for r in 0..TILE {
                    for cc in 0..TILE_K {
                        tile[r * TILE_K + cc] = block[cc][r];
                    }
                }
            }
        }
    }
}

simd_fn! {
    /// One column panel of the right operand (columns `col0..col0 + cols`,
    /// all `k` rows) into `kblocks` tiles in AMX's pair-interleaved layout.
    fn pack_rhs_panel(tiles: &mut [u16], data: &[f32], rs: usize, cs: usize, col0: usize, cols: usize, k: usize) {
        if cs == 1 {
            // Rows are contiguous: rows 2p and 2p + 1 interleave into pair row p.
            for r in (0..k).step_by(2) {
                let dst = &mut tiles[(r / TILE_K) * TILE_LEN + (r % TILE_K) / 2 * TILE_K..][..2 * cols];
                let first = &data[r * rs + col0..r * rs + col0 + cols];
                if r + 1 < k {
                    let second = &data[(r + 1) * rs + col0..(r + 1) * rs + col0 + cols];
                    for ((d, &x), &y) in dst.chunks_exact_mut(2).zip(first).zip(second) {
                        d[0] = to_bf16(x);
                        d[1] = to_bf16(y);
                    }
                } else {
                    for (d, &x) in dst.chunks_exact_mut(2).zip(first) {
                        d[0] = to_bf16(x);
                    }
                }
            }
        } else {
            // Stored transposed (`rs == 1`): column `c` holds all k rows
            // contiguously; consecutive rows are neighbours in a pair.
            for c in 0..cols {
                let src = &data[(col0 + c) * cs..(col0 + c) * cs + k];
                for (kb, chunk) in src.chunks(TILE_K).enumerate() {
                    let tile = &mut tiles[kb * TILE_LEN + 2 * c..];
                    for (p, pair) in chunk.chunks(2).enumerate() {
                        for (e, &x) in pair.iter().enumerate() {
                            tile[TILE_K * p + e] = to_bf16(x);
                        }
                    }
                }
            }
        }
    }
}

/// `panels` panels of `kblocks` tiles each, panel `p` filled by
/// `fill(tiles, 16·p, count)` with its `count` ≤ 16 real rows or columns
/// (none for the padding panels, which stay zero).
fn pack(
    panels: usize,
    kblocks: usize,
    extent: usize,
    fill: impl Fn(&mut [u16], usize, usize) + Sync,
) -> Vec<u16> {
    let mut out = vec![0u16; panels * kblocks * TILE_LEN];
    out.par_chunks_mut(kblocks * TILE_LEN)
        .enumerate()
        .for_each(|(panel, tiles)| {
            let count = TILE.min(extent.saturating_sub(panel * TILE));
            if count > 0 {
                fill(tiles, panel * TILE, count);
            }
        });
    out
}

/// Packs the left operand (`m × k`) into row panels of 16 × 32 tiles:
/// tile `(panel, kb)` holds rows `16·panel..` and columns `32·kb..`, zero
/// padded, row-major (64 bytes per row).
fn pack_lhs(a: Strided, m: usize, k: usize, panels: usize, kblocks: usize) -> Vec<u16> {
    pack(panels, kblocks, m, |tiles, row0, rows| {
        pack_lhs_panel(tiles, a.data, a.rs, a.cs, row0, rows, k)
    })
}

/// Packs the right operand (`k × n`) into column panels of tiles in AMX's
/// pair-interleaved layout: tile `(panel, kb)` row `p` holds, for each of
/// 16 columns, the values of rows `32·kb + 2p` and `32·kb + 2p + 1`.
fn pack_rhs(b: Strided, k: usize, n: usize, panels: usize, kblocks: usize) -> Vec<u16> {
    pack(panels, kblocks, n, |tiles, col0, cols| {
        pack_rhs_panel(tiles, b.data, b.rs, b.cs, col0, cols, k)
    })
}

thread_local! {
    static CONFIGURED: Cell<bool> = const { Cell::new(false) };
}

/// Loads the tile configuration (8 tiles of 16 rows × 64 bytes) on this
/// thread once.
///
/// # Safety
/// [`support`] must have returned `Ok` in this process.
unsafe fn configure_tiles() {
    if CONFIGURED.with(Cell::get) {
        return;
    }
    #[repr(C, align(64))]
    struct Config([u8; 64]);
    let mut cfg = Config([0; 64]);
    cfg.0[0] = 1; // palette 1
    for t in 0..8 {
        cfg.0[16 + 2 * t] = (TILE_K * 2) as u8; // bytes per row
        cfg.0[48 + t] = TILE as u8; // rows
    }
    // SAFETY: a valid palette-1 configuration; the caller guarantees AMX.
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    }
    CONFIGURED.with(|c| c.set(true));
}

/// One 32 × 32 block of `C = A·B` from two row panels of `a` and two
/// column panels of `b` (each `kblocks` tiles), stored row-major into `out`.
///
/// # Safety
/// The tiles must be configured on this thread ([`configure_tiles`]); the
/// panels must hold `kblocks` tiles each.
unsafe fn block(
    a0: &[u16],
    a1: &[u16],
    b0: &[u16],
    b1: &[u16],
    kblocks: usize,
    out: &mut [f32; 32 * 32],
) {
    const STRIDE: usize = TILE_K * 2;
    const C_STRIDE: usize = 32 * 4;
    // SAFETY: every tile load reads 16 rows of 64 bytes inside a panel
    // (asserted by the slicing below), every store writes 16 rows of 64
    // bytes inside `out`; tmm0–3 hold C, tmm4–5 A, tmm6–7 B.
    unsafe {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        for kb in 0..kblocks {
            let tile = kb * TILE_LEN..(kb + 1) * TILE_LEN;
            let (pa0, pa1) = (a0[tile.clone()].as_ptr(), a1[tile.clone()].as_ptr());
            let (pb0, pb1) = (b0[tile.clone()].as_ptr(), b1[tile].as_ptr());
            std::arch::asm!(
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm5, [{a1} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) pa0,
                a1 = in(reg) pa1,
                b0 = in(reg) pb0,
                b1 = in(reg) pb1,
                s = in(reg) STRIDE,
                options(nostack, readonly)
            );
        }
        let c = out.as_mut_ptr();
        std::arch::asm!(
            "tilestored [{c00} + {s}*1], tmm0",
            "tilestored [{c01} + {s}*1], tmm1",
            "tilestored [{c10} + {s}*1], tmm2",
            "tilestored [{c11} + {s}*1], tmm3",
            c00 = in(reg) c,
            c01 = in(reg) c.add(16),
            c10 = in(reg) c.add(16 * 32),
            c11 = in(reg) c.add(16 * 32 + 16),
            s = in(reg) C_STRIDE,
            options(nostack)
        );
    }
}

/// `dst[m×n] (+)= op(lhs)[m×k] · op(rhs)[k×n]` with both operands rounded
/// to bf16 and f32 accumulation, row-major, where `op` transposes a stored
/// `[k×m]` / `[n×k]` operand when asked; the contract of
/// [`crate::cpu::matmul`]. Panics if [`support`] is not `Ok` (callers check
/// it once, when the precision is chosen).
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
) {
    if let Err(why) = support() {
        panic!("bf16 matmul without AMX: {why}");
    }
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    let strided = |data, (rs, cs)| Strided { data, rs, cs };
    let a = strided(lhs, operand_strides(lhs_t, m, k));
    let b = strided(rhs, operand_strides(rhs_t, k, n));
    // Panels come in pairs (one 32 × 32 block of C per task).
    let row_pairs = m.div_ceil(2 * TILE);
    let col_pairs = n.div_ceil(2 * TILE);
    let kblocks = k.div_ceil(TILE_K).max(1);
    let packed_a = pack_lhs(a, m, k, 2 * row_pairs, kblocks);
    let packed_b = pack_rhs(b, k, n, 2 * col_pairs, kblocks);
    let panel = kblocks * TILE_LEN;
    // One task per 32-row strip of C, walking its column blocks.
    dst[..m * n]
        .par_chunks_mut(32 * n)
        .enumerate()
        .for_each(|(rp, strip)| {
            let a0 = &packed_a[2 * rp * panel..(2 * rp + 1) * panel];
            let a1 = &packed_a[(2 * rp + 1) * panel..(2 * rp + 2) * panel];
            let rows = strip.len() / n;
            let mut c = [0f32; 32 * 32];
            for cp in 0..col_pairs {
                let b0 = &packed_b[2 * cp * panel..(2 * cp + 1) * panel];
                let b1 = &packed_b[(2 * cp + 1) * panel..(2 * cp + 2) * panel];
                // SAFETY: `support` is Ok (checked above); the panels hold
                // `kblocks` tiles each by construction.
                unsafe {
                    configure_tiles();
                    block(a0, a1, b0, b1, kblocks, &mut c);
                }
                let (col0, cols) = (32 * cp, 32.min(n - 32 * cp));
                for r in 0..rows {
                    let out = &mut strip[r * n + col0..r * n + col0 + cols];
                    let computed = &c[r * 32..r * 32 + cols];
                    if accumulate {
                        for (o, v) in out.iter_mut().zip(computed) {
                            *o += v;
                        }
                    } else {
                        out.copy_from_slice(computed);
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(97));
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to even (1).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// The product of the bf16-rounded operands in f64, the exact answer
    /// up to the order of the f32 accumulation.
    fn reference(
        a: &[f32],
        b: &[f32],
        m: usize,
        k: usize,
        n: usize,
        a_t: bool,
        b_t: bool,
    ) -> Vec<f64> {
        let round = |x: f32| from_bf16(to_bf16(x)) as f64;
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| {
                        let x = if a_t { a[p * m + i] } else { a[i * k + p] };
                        let y = if b_t { b[j * k + p] } else { b[p * n + j] };
                        round(x) * round(y)
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn amx_products_equal_bf16_rounded_products_on_odd_shapes() {
        if let Err(why) = support() {
            eprintln!("skipped: {why}");
            return;
        }
        for (m, k, n) in [
            (1, 1, 1),
            (17, 33, 15),
            (100, 32, 100),
            (64, 256, 96),
            (3, 70, 45),
        ] {
            for (a_t, b_t) in [(false, false), (true, false), (false, true)] {
                let (a, b) = (data(m * k, 1), data(k * n, 2));
                let expected = reference(&a, &b, m, k, n, a_t, b_t);
                let mut out = vec![f32::NAN; m * n];
                matmul(&mut out, &a, a_t, &b, b_t, m, k, n, false);
                for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        (*got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(),
                        "({m},{k},{n}) t=({a_t},{b_t}) [{i}]: {got} vs {want}"
                    );
                }
                let mut acc = vec![1.0f32; m * n];
                matmul(&mut acc, &a, a_t, &b, b_t, m, k, n, true);
                for (got, want) in acc.iter().zip(&out) {
                    assert!((got - (want + 1.0)).abs() <= 1e-5 * (1.0 + want.abs()));
                }
            }
        }
    }
}
