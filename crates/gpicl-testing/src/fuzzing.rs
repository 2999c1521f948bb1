//! The fuzz tests' harness, shared by every crate that reads outside bytes:
//! a global allocator that records the largest single allocation each
//! thread asks for, and byte-level mutations of a valid input for
//! proptest to draw and shrink.

use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, recording each thread's largest request.
pub struct PeakAlloc;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = PEAK.try_with(|p| p.set(p.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = PEAK.try_with(|p| p.set(p.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it
/// made on this thread. Panics caught inside `f` (a library's assertion
/// turned into an error) are not printed: with `RUST_BACKTRACE` set, the
/// default hook's symbolisation would be counted as `f`'s allocation.
/// Proptest still reports any panic that escapes.
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    PEAK.with(|p| p.set(0));
    let out = f();
    (out, PEAK.with(|p| p.get()))
}

/// Proptest options: `cases` mutated inputs from a fixed seed, so CI runs
/// the same inputs every time; nothing written to disk on failure.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6_7069_636c),
        ..ProptestConfig::default()
    }
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// XOR the byte at (position mod len) with a non-zero mask.
    Flip(usize, u8),
    /// Overwrite the byte at (position mod len).
    Set(usize, u8),
    /// Keep only the first (position mod (len + 1)) bytes.
    Truncate(usize),
    /// Insert bytes at (position mod (len + 1)).
    Insert(usize, Vec<u8>),
    /// Write a big-endian or little-endian extreme `u32` at (position mod len).
    Extreme(usize, bool),
}

/// Up to `max` mutations of any kind.
pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(p, m)| Mutation::Flip(p, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), any::<bool>()).prop_map(|(p, be)| Mutation::Extreme(p, be)),
    ];
    proptest::collection::vec(one, 1..=max)
}

/// `seed` with `edits` applied in order.
pub fn mutate(seed: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for edit in edits {
        let len = bytes.len();
        match edit {
            Mutation::Flip(p, m) if len > 0 => bytes[p % len] ^= m,
            Mutation::Set(p, b) if len > 0 => bytes[p % len] = *b,
            Mutation::Truncate(p) => bytes.truncate(p % (len + 1)),
            Mutation::Insert(p, b) => {
                let at = p % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Extreme(p, big_endian) if len >= 4 => {
                let at = p % (len - 3);
                let v = if *big_endian {
                    0x7fff_ffffu32.to_be_bytes()
                } else {
                    u32::MAX.to_le_bytes()
                };
                bytes[at..at + 4].copy_from_slice(&v);
            }
            _ => {}
        }
    }
    bytes
}
