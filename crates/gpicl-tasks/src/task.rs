//! Tasks: a random linear projection of the inputs and a permutation of the
//! labels, each a pure function of `(task_seed, task_id)`.

use crate::NUM_CLASSES;
use gpicl_kernels::rng::{stream, Rng};

/// Draw purposes within one task's stream.
const PROJECTION: u64 = 0;
const PERMUTATION: u64 = 1;
const BIAS: u64 = 2;
const VIEW: u64 = 3;
const PERMUTATION_MASK: u64 = 4;

/// Which transformation a group of sequences is seen through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    /// Task whose projection (and bias) is applied; `None`: raw inputs.
    pub projection: Option<i64>,
    /// Task whose label permutation is applied; `None`: original labels.
    pub permutation: Option<i64>,
}

impl TaskRef {
    /// Raw data with its original labels.
    pub const IDENTITY: TaskRef = TaskRef {
        projection: None,
        permutation: None,
    };

    /// Task `id`, with or without its label permutation.
    pub fn task(id: i64, permuted: bool) -> Self {
        Self {
            projection: Some(id),
            permutation: permuted.then_some(id),
        }
    }
}

/// The family of tasks of one run.
#[derive(Clone, Debug)]
pub struct TaskFamily {
    seed: u64,
    n_x: usize,
    bias_std: f64,
}

impl TaskFamily {
    /// Tasks over `n_x` features, seeded by `seed`.
    pub fn new(seed: u64, n_x: usize, bias_std: f64) -> Self {
        Self {
            seed,
            n_x,
            bias_std,
        }
    }

    /// Features per example.
    pub fn n_x(&self) -> usize {
        self.n_x
    }

    fn rng(&self, id: i64, purpose: u64) -> Rng {
        Rng::from_stream(self.seed, &[stream::TASK, id as u64, purpose])
    }

    /// The generator of task `id`'s view of a pool (its dataset and
    /// classes, see [`crate::pool`]).
    pub fn view_rng(&self, id: i64) -> Rng {
        self.rng(id, VIEW)
    }

    /// Task `id`'s projection `A` (`n_x × n_x`, row-major, entries
    /// `N(0, 1/n_x)`), applied as `A x`.
    pub fn projection(&self, id: i64) -> Vec<f32> {
        let mut rng = self.rng(id, PROJECTION);
        let std = 1.0 / (self.n_x as f64).sqrt();
        (0..self.n_x * self.n_x)
            .map(|_| (rng.normal() * std) as f32)
            .collect()
    }

    /// Task `id`'s bias (`n_x` entries `N(0, bias_std²)`), or `None` when
    /// the family has no bias.
    pub fn bias(&self, id: i64) -> Option<Vec<f32>> {
        (self.bias_std > 0.0).then(|| {
            let mut rng = self.rng(id, BIAS);
            (0..self.n_x)
                .map(|_| (rng.normal() * self.bias_std) as f32)
                .collect()
        })
    }

    /// Task `id`'s label permutation: `permutation[y]` is the new label.
    pub fn permutation(&self, id: i64) -> [u8; NUM_CLASSES] {
        let perm = self.rng(id, PERMUTATION).permutation(NUM_CLASSES);
        std::array::from_fn(|i| perm[i] as u8)
    }

    /// Task `id`'s uniform draw in `[0, 1)` deciding whether a `per-task`
    /// permutation mask permutes it (permuted iff below
    /// `permute_labels_prob`).
    pub fn permutation_draw(&self, id: i64) -> f64 {
        self.rng(id, PERMUTATION_MASK).uniform()
    }

    /// Seen-task ids used for evaluation: the first `count` training ids.
    pub fn seen_ids(num_tasks: u64, count: usize) -> Vec<i64> {
        (0..num_tasks.min(count as u64) as i64).collect()
    }

    /// Unseen-task ids: −1, −2, …, which training (ids `≥ 0`) never draws.
    pub fn unseen_ids(count: usize) -> Vec<i64> {
        (1..=count as i64).map(|i| -i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_gives_the_same_task() {
        let f = TaskFamily::new(3, 16, 0.5);
        let g = TaskFamily::new(3, 16, 0.5);
        assert_eq!(f.projection(7), g.projection(7));
        assert_eq!(f.permutation(7), g.permutation(7));
        assert_eq!(f.bias(7), g.bias(7));
        assert_ne!(f.projection(7), f.projection(8));
        assert_ne!(f.projection(7), TaskFamily::new(4, 16, 0.5).projection(7));
    }

    #[test]
    fn tasks_are_pinned_across_processes_and_versions() {
        // The first entries of task 0's projection must never change, or
        // "seen task 0" would mean another task in old and new runs.
        let a = TaskFamily::new(0, 196, 0.0).projection(0);
        assert_eq!(&a[..3], &[-0.08711085, -0.11797821, -0.0017060081]);
    }

    #[test]
    fn projection_entries_have_variance_one_over_n_x() {
        let n = 196;
        let a = TaskFamily::new(1, n, 0.0).projection(12);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        let expected = 1.0 / n as f64;
        assert!(mean.abs() < 0.01 * expected.sqrt() * 5.0, "mean {mean}");
        assert!(
            (var - expected).abs() < 0.03 * expected,
            "var {var} vs {expected}"
        );
    }

    #[test]
    fn permutations_are_permutations() {
        let f = TaskFamily::new(0, 4, 0.0);
        for id in [-3, 0, 5, 1 << 40] {
            let mut p = f.permutation(id).to_vec();
            p.sort();
            assert_eq!(p, (0..10).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn unseen_ids_are_disjoint_from_training_ids() {
        assert!(TaskFamily::unseen_ids(32).iter().all(|&id| id < 0));
        assert_eq!(TaskFamily::seen_ids(4, 32), vec![0, 1, 2, 3]);
        assert_eq!(TaskFamily::seen_ids(1 << 20, 32).len(), 32);
    }

    #[test]
    fn per_task_permutation_draws_are_pinned_across_processes() {
        let f = TaskFamily::new(0, 49, 0.0);
        // Pinned: a per-task mask must mark the same ids in every process.
        let draws: Vec<f64> = (0..4).map(|id| f.permutation_draw(id)).collect();
        assert_eq!(draws, PINNED_PERMUTATION_DRAWS);
        assert_eq!(
            f.permutation_draw(3),
            TaskFamily::new(0, 196, 0.5).permutation_draw(3)
        );
        assert_ne!(
            f.permutation_draw(3),
            TaskFamily::new(1, 49, 0.0).permutation_draw(3)
        );
    }

    const PINNED_PERMUTATION_DRAWS: [f64; 4] = [
        0.004033579978116042,
        0.5684244682673825,
        0.8997989989260403,
        0.3007819518218031,
    ];

    #[test]
    fn no_bias_unless_asked() {
        assert!(TaskFamily::new(0, 4, 0.0).bias(1).is_none());
    }
}
