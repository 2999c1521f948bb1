//! A portable, seedable random number generator.
//!
//! Everything random in gpicl (initial weights, task projections, label
//! permutations, which examples form a sequence) is drawn from [`Rng`], a
//! xoshiro256** generator seeded through SplitMix64. Its output depends only
//! on its seed, never on the machine, the thread count or the order in which
//! other streams were used. [`Rng::from_stream`] derives independent streams
//! from a seed and a path of integers, which is how a task becomes a pure
//! function of `(task_seed, task_id)`.

/// Mixes a 64-bit value (SplitMix64 finaliser).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stream tags, so that streams for different purposes never collide even
/// when they share a seed and an index.
pub mod stream {
    /// Initial model parameters.
    pub const INIT: u64 = 0x1;
    /// Task projections and permutations.
    pub const TASK: u64 = 0x2;
    /// Training batches (which task ids, which examples).
    pub const TRAIN_DATA: u64 = 0x3;
    /// Evaluation batches.
    pub const EVAL_DATA: u64 = 0x4;
    /// The synthetic `random` dataset.
    pub const RANDOM_DATASET: u64 = 0x5;
    /// Baseline learners.
    pub const BASELINE: u64 = 0x6;
    /// Ensembles of a learner applied to data of one's own (`predict`).
    pub const PREDICT: u64 = 0x7;
}

/// xoshiro256** with helpers for the distributions gpicl needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded from a single integer.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { s }
    }

    /// An independent stream identified by `seed` and a path of integers,
    /// e.g. `Rng::from_stream(task_seed, &[stream::TASK, id as u64])`.
    pub fn from_stream(seed: u64, path: &[u64]) -> Self {
        let mut h = seed ^ 0x6A09_E667_F3BC_C908;
        let mut acc = splitmix64(&mut h);
        for &p in path {
            let mut x = acc ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            acc = splitmix64(&mut x) ^ acc.rotate_left(17);
        }
        Self::new(acc)
    }

    /// The raw state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Restores a generator saved with [`Rng::state`].
    pub fn from_state(s: [u64; 4]) -> Self {
        Self { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, n)`, without modulo bias. `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs a positive bound");
        // Lemire's multiply-shift with rejection.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal (Box–Muller in f64, one value per call so the stream
    /// position never depends on a cached spare).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Standard normal truncated to `[-2, 2]` (rejection sampling), as used by
    /// Haiku's `TruncatedNormal` initialiser.
    pub fn truncated_normal(&mut self) -> f64 {
        loop {
            let z = self.normal();
            if z.abs() <= 2.0 {
                return z;
            }
        }
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }

    /// Shuffles a slice in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn streams_with_different_paths_differ() {
        let mut a = Rng::from_stream(1, &[stream::TASK, 0]);
        let mut b = Rng::from_stream(1, &[stream::TASK, 1]);
        let mut c = Rng::from_stream(1, &[stream::INIT, 0]);
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert!(x != y && y != z && x != z);
    }

    #[test]
    fn stream_output_is_pinned_so_tasks_never_change_between_versions() {
        // If this changes, every published task id changes meaning.
        let mut r = Rng::from_stream(0, &[stream::TASK, 0]);
        let first = r.next_u64();
        let mut again = Rng::from_stream(0, &[stream::TASK, 0]);
        assert_eq!(first, again.next_u64());
        assert_eq!(Rng::new(0).next_u64(), 0x99EC_5F36_CB75_F2B4);
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut r = Rng::new(3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn truncated_normal_stays_within_two_std() {
        let mut r = Rng::new(5);
        assert!((0..10_000).all(|_| r.truncated_normal().abs() <= 2.0));
    }

    #[test]
    fn below_is_uniform_and_in_range() {
        let mut r = Rng::new(9);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[r.below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn permutations_contain_every_index_once() {
        let mut r = Rng::new(11);
        let mut p = r.permutation(10);
        p.sort();
        assert_eq!(p, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn state_round_trips() {
        let mut r = Rng::new(1);
        r.next_u64();
        let mut s = Rng::from_state(r.state());
        assert_eq!(r.next_u64(), s.next_u64());
    }
}
