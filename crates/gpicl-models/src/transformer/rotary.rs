//! Rotary positions (`model.positions = "rotary"`): each head's queries and
//! keys rotated by their position, so that attention scores depend on the
//! distance between positions, not on where they are. A head that attends
//! to the previous position — the first half of an induction circuit — is
//! then one direction in the weights instead of a hundred learned
//! positional embeddings agreeing with each other.
//!
//! GPT-NeoX layout: the two halves `(x₁, x₂)` of every head are rotated by
//! the angle `t · 10000^(−2i/key)`: `(x₁ cos − x₂ sin, x₂ cos + x₁ sin)`.

use crate::error::Result;
use gpicl_kernels::Tensor;

/// Frequencies' base, as in RoFormer and GPT-NeoX.
const BASE: f64 = 10_000.0;

/// `cos` and `sin` of every position's angles, each `[t, key / 2]`.
pub(crate) struct RotaryTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RotaryTable {
    /// The table for up to `t` positions of heads of size `key` (even);
    /// shorter sequences read its first rows.
    pub(crate) fn new(t: usize, key: usize) -> Self {
        let half = key / 2;
        let (mut cos, mut sin) = (Vec::with_capacity(t * half), Vec::with_capacity(t * half));
        for position in 0..t {
            for i in 0..half {
                let angle = position as f64 * BASE.powf(-2.0 * i as f64 / key as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { cos, sin, half }
    }

    /// Rotates `rows` (`[b·t, heads·key]` row-major, position `row % t`)
    /// in place; `inverse` rotates back (the backward pass of the rotation,
    /// which is orthogonal).
    pub(crate) fn rotate_rows(&self, rows: &mut [f32], t: usize, heads: usize, inverse: bool) {
        let key = 2 * self.half;
        let sign = if inverse { -1.0 } else { 1.0 };
        for (r, row) in rows.chunks_exact_mut(heads * key).enumerate() {
            let at = (r % t) * self.half;
            let (cos, sin) = (&self.cos[at..at + self.half], &self.sin[at..at + self.half]);
            for head in row.chunks_exact_mut(key) {
                let (x1, x2) = head.split_at_mut(self.half);
                for i in 0..self.half {
                    let (a, b, s) = (x1[i], x2[i], sign * sin[i]);
                    x1[i] = a * cos[i] - b * s;
                    x2[i] = b * cos[i] + a * s;
                }
            }
        }
    }

    /// Rotates `x` (`[.., key]`: every row at the same `position`) as the
    /// rows of that position are rotated: a query after a cached context.
    pub(crate) fn rotate_at(&self, x: &Tensor, position: usize) -> Result<Tensor> {
        let last = x.rank() - 1;
        let half = self.half;
        let mut shape = vec![1; x.rank()];
        shape[last] = half;
        let at = position * half;
        let row = |values: &[f32]| -> Result<Tensor> {
            Ok(
                Tensor::from_slice(&values[at..at + half], shape.clone(), x.device())?
                    .to_dtype(x.dtype())?,
            )
        };
        let (cos, sin) = (row(&self.cos)?, row(&self.sin)?);
        let (x1, x2) = (x.narrow(last, 0, half)?, x.narrow(last, half, half)?);
        let first = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let second = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Ok(Tensor::cat(&[&first, &second], last)?)
    }

    /// The same rotation as composed tensor ops on `[b, t, heads, key]`
    /// (autograd records it).
    pub(crate) fn rotate(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, _, key) = x.dims4()?;
        let half = key / 2;
        let table = |values: &[f32]| -> Result<Tensor> {
            Ok(
                Tensor::from_slice(&values[..t * half], (1, t, 1, half), x.device())?
                    .to_dtype(x.dtype())?,
            )
        };
        let (cos, sin) = (table(&self.cos)?, table(&self.sin)?);
        let (x1, x2) = (x.narrow(3, 0, half)?, x.narrow(3, half, half)?);
        let first = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let second = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Ok(Tensor::cat(&[&first, &second], 3)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_kernels::rng::Rng;
    use gpicl_kernels::Device;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    #[test]
    fn rows_rotated_by_hand_equal_the_composed_rotation_and_rotate_back() {
        let (b, t, heads, key) = (2, 5, 3, 4);
        let table = RotaryTable::new(t, key);
        let x = random(b * t * heads * key, 1);
        let mut by_hand = x.clone();
        table.rotate_rows(&mut by_hand, t, heads, false);
        let tensor = Tensor::from_vec(x.clone(), (b, t, heads, key), &Device::Cpu).unwrap();
        let composed: Vec<f32> = table
            .rotate(&tensor)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, c) in by_hand.iter().zip(&composed) {
            assert!((a - c).abs() < 1e-6, "{a} vs {c}");
        }
        // Position 0 is not rotated.
        assert_eq!(by_hand[..heads * key], x[..heads * key]);
        table.rotate_rows(&mut by_hand, t, heads, true);
        for (a, c) in by_hand.iter().zip(&x) {
            assert!((a - c).abs() < 1e-5, "{a} vs {c}");
        }
    }

    #[test]
    fn scores_depend_on_the_distance_between_positions_only() {
        let (t, key) = (9, 8);
        let table = RotaryTable::new(t, key);
        let (q, k) = (random(key, 2), random(key, 3));
        // The same query and key placed at every position.
        let at_every_position = |v: &[f32]| -> Vec<f32> {
            let mut rows: Vec<f32> = (0..t).flat_map(|_| v.iter().copied()).collect();
            table.rotate_rows(&mut rows, t, 1, false);
            rows
        };
        let (qs, ks) = (at_every_position(&q), at_every_position(&k));
        let score = |i: usize, j: usize| -> f32 {
            qs[i * key..(i + 1) * key]
                .iter()
                .zip(&ks[j * key..(j + 1) * key])
                .map(|(a, b)| a * b)
                .sum()
        };
        for (i, j) in [(1, 0), (5, 4), (8, 7)] {
            assert!((score(i, j) - score(1, 0)).abs() < 1e-4);
        }
        assert!((score(6, 3) - score(3, 0)).abs() < 1e-4);
        assert!((score(1, 0) - score(2, 0)).abs() > 1e-3);
    }
}
