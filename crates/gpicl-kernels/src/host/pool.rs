//! Reusable `f32` buffers for the activations of a hand-written training
//! step.
//!
//! A step allocates the same few hundred megabytes of activations every
//! time; `vec![0.0; n]` zeroes each buffer before a kernel overwrites it
//! (5–10 % of a Transformer step in `memset`). A [`BufferPool`] hands back
//! the buffers of the previous step instead, for outputs that a kernel
//! writes in full. Their contents are stale; in debug builds they are
//! filled with NaN, so that a kernel that leaves part of its output
//! unwritten poisons the loss and fails the gradient tests.

use std::collections::HashMap;
use std::sync::Mutex;

/// A free list of `f32` buffers by length.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Mutex<HashMap<usize, Vec<Vec<f32>>>>,
}

impl BufferPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer of `len` values for an output that will be written in full:
    /// a recycled one (stale contents; NaN in debug builds) or a new one.
    pub fn take(&self, len: usize) -> Vec<f32> {
        let recycled = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&len)
            .and_then(Vec::pop);
        match recycled {
            Some(mut buffer) => {
                if cfg!(debug_assertions) {
                    buffer.fill(f32::NAN);
                }
                buffer
            }
            None if cfg!(debug_assertions) => vec![f32::NAN; len],
            None => vec![0.0; len],
        }
    }

    /// Returns buffers for later [`take`](Self::take)s.
    pub fn recycle(&self, buffers: impl IntoIterator<Item = Vec<f32>>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        for buffer in buffers {
            if !buffer.is_empty() {
                free.entry(buffer.len()).or_default().push(buffer);
            }
        }
    }

    /// Buffers currently held.
    pub fn held(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_come_back_by_length() {
        let pool = BufferPool::new();
        let a = pool.take(8);
        assert_eq!(a.len(), 8);
        let address = a.as_ptr();
        pool.recycle([a, Vec::new()]);
        assert_eq!(pool.held(), 1);
        assert_eq!(pool.take(7).len(), 7, "other lengths get a new buffer");
        let again = pool.take(8);
        assert_eq!(again.as_ptr(), address);
        if cfg!(debug_assertions) {
            assert!(
                again.iter().all(|x| x.is_nan()),
                "stale contents are poisoned in debug builds"
            );
        }
        assert_eq!(pool.held(), 0);
    }
}
