//! Tree ensembles, the other half of `cargo xtask predict --compare`'s
//! yardstick ([`crate::classical`] has k-NN and logistic regression): a
//! random forest and gradient boosting with scikit-learn's defaults, fitted
//! on the same training rows as the learner's context.
//!
//! - [`RandomForest`]: 100 classification trees, each on a bootstrap
//!   sample, `√d` candidate features per split, Gini impurity, grown until
//!   pure (`RandomForestClassifier()`); probabilities are the trees' mean
//!   leaf class frequencies.
//! - [`GradientBoosting`]: softmax boosting from the log class priors, 100
//!   rounds of one depth-3 regression tree per class on the gradient, leaf
//!   values by one Newton step scaled by `(K−1)/K`, learning rate 0.1
//!   (`GradientBoostingClassifier()`).
//!
//! Trees split on raw feature values (no scaling needed). Both are seeded.
//!
//! ```
//! use gpicl_eval::classical::Classifier;
//! use gpicl_eval::trees::{GradientBoosting, RandomForest};
//! // XOR: no linear model separates it, trees do.
//! let x: Vec<Vec<f32>> = (0..40).map(|i| vec![(i % 2) as f32, ((i / 2) % 2) as f32]).collect();
//! let y: Vec<usize> = x.iter().map(|r| (r[0] != r[1]) as usize).collect();
//! assert_eq!(RandomForest::fit(&x, &y, 2, 0).predict(&[vec![1.0, 0.0]]), vec![1]);
//! assert_eq!(GradientBoosting::fit(&x, &y, 2).predict(&[vec![1.0, 1.0]]), vec![0]);
//! ```

use crate::classical::{softmax, Classifier};
use gpicl_kernels::rng::Rng;

/// A fitted tree: `nodes[0]` is the root.
#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
enum Node {
    Split {
        feature: usize,
        threshold: f32,
        left: usize,
        right: usize,
    },
    /// Class frequencies (classification) or one value (regression).
    Leaf(Vec<f64>),
}

impl Tree {
    fn leaf(&self, row: &[f32]) -> &[f64] {
        let mut at = 0;
        loop {
            match &self.nodes[at] {
                Node::Leaf(values) => return values,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    at = if row[*feature] <= *threshold {
                        *left
                    } else {
                        *right
                    }
                }
            }
        }
    }
}

/// What a split of the rows at a node is scored by.
trait Criterion {
    /// The impurity of `rows` times their count (lower is better).
    fn weighted_impurity(&self, rows: &[usize]) -> f64;
    /// The leaf for `rows`.
    fn leaf(&self, rows: &[usize]) -> Vec<f64>;
}

struct Gini<'a> {
    y: &'a [usize],
    classes: usize,
}

impl Criterion for Gini<'_> {
    fn weighted_impurity(&self, rows: &[usize]) -> f64 {
        let counts = self.leaf_counts(rows);
        let n = rows.len() as f64;
        n - counts.iter().map(|c| c * c).sum::<f64>() / n.max(1.0)
    }

    fn leaf(&self, rows: &[usize]) -> Vec<f64> {
        let counts = self.leaf_counts(rows);
        let n = rows.len().max(1) as f64;
        counts.iter().map(|c| c / n).collect()
    }
}

impl Gini<'_> {
    fn leaf_counts(&self, rows: &[usize]) -> Vec<f64> {
        let mut counts = vec![0f64; self.classes];
        rows.iter().for_each(|&r| counts[self.y[r]] += 1.0);
        counts
    }
}

/// Squared error on the gradients; leaves by one Newton step.
struct Residuals<'a> {
    gradient: &'a [f64],
    hessian: &'a [f64],
    scale: f64,
}

impl Criterion for Residuals<'_> {
    fn weighted_impurity(&self, rows: &[usize]) -> f64 {
        let n = rows.len() as f64;
        let sum: f64 = rows.iter().map(|&r| self.gradient[r]).sum();
        let sum_sq: f64 = rows
            .iter()
            .map(|&r| self.gradient[r] * self.gradient[r])
            .sum();
        sum_sq - sum * sum / n.max(1.0)
    }

    fn leaf(&self, rows: &[usize]) -> Vec<f64> {
        let g: f64 = rows.iter().map(|&r| self.gradient[r]).sum();
        let h: f64 = rows.iter().map(|&r| self.hessian[r]).sum();
        vec![if h.abs() < 1e-150 {
            0.0
        } else {
            self.scale * g / h
        }]
    }
}

/// Grows a tree on `rows` of `x`, choosing among `max_features` random
/// features per split (all when it is `d`), down to `max_depth`.
fn grow(
    x: &[Vec<f32>],
    rows: Vec<usize>,
    criterion: &dyn Criterion,
    max_features: usize,
    max_depth: usize,
    rng: &mut Rng,
) -> Tree {
    let d = x.first().map_or(0, Vec::len);
    let mut nodes = vec![Node::Leaf(Vec::new())];
    let mut todo = vec![(0usize, rows, 0usize)];
    while let Some((at, rows, depth)) = todo.pop() {
        let parent = criterion.weighted_impurity(&rows);
        let mut best: Option<(f64, usize, f32)> = None;
        if depth < max_depth && rows.len() > 1 && parent > 1e-12 {
            let mut features = rng.permutation(d);
            features.truncate(max_features.clamp(1, d.max(1)));
            for feature in features {
                let mut sorted = rows.clone();
                sorted.sort_by(|&a, &b| x[a][feature].total_cmp(&x[b][feature]));
                for cut in 1..sorted.len() {
                    let (lo, hi) = (x[sorted[cut - 1]][feature], x[sorted[cut]][feature]);
                    if lo == hi {
                        continue;
                    }
                    let score = criterion.weighted_impurity(&sorted[..cut])
                        + criterion.weighted_impurity(&sorted[cut..]);
                    // As scikit-learn (min_impurity_decrease = 0): a split
                    // that gains nothing is still made, or XOR-like rules
                    // could never start.
                    if score <= parent + 1e-12 && best.is_none_or(|(s, _, _)| score < s) {
                        best = Some((score, feature, lo + (hi - lo) / 2.0));
                    }
                }
            }
        }
        match best {
            None => nodes[at] = Node::Leaf(criterion.leaf(&rows)),
            Some((_, feature, threshold)) => {
                let (left_rows, right_rows): (Vec<usize>, Vec<usize>) =
                    rows.iter().partition(|&&r| x[r][feature] <= threshold);
                let (left, right) = (nodes.len(), nodes.len() + 1);
                nodes.push(Node::Leaf(Vec::new()));
                nodes.push(Node::Leaf(Vec::new()));
                nodes[at] = Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                };
                todo.push((left, left_rows, depth + 1));
                todo.push((right, right_rows, depth + 1));
            }
        }
    }
    Tree { nodes }
}

/// A random forest of classification trees.
#[derive(Clone, Debug)]
pub struct RandomForest {
    trees: Vec<Tree>,
    classes: usize,
}

impl RandomForest {
    /// Trees in the forest.
    pub const TREES: usize = 100;

    /// Fits [`RandomForest::TREES`] trees to `x` (rows) and `y` (classes
    /// `0..classes`), seeded by `seed`.
    pub fn fit(x: &[Vec<f32>], y: &[usize], classes: usize, seed: u64) -> Self {
        let d = x.first().map_or(0, Vec::len);
        let max_features = ((d as f64).sqrt().floor() as usize).max(1);
        let mut rng = Rng::new(seed);
        let criterion = Gini { y, classes };
        let trees = (0..Self::TREES)
            .map(|_| {
                let rows: Vec<usize> = (0..x.len())
                    .map(|_| rng.below(x.len() as u64) as usize)
                    .collect();
                grow(x, rows, &criterion, max_features, usize::MAX, &mut rng)
            })
            .collect();
        Self { trees, classes }
    }
}

impl Classifier for RandomForest {
    /// Class probabilities of every query (the trees' mean).
    fn predict_proba(&self, queries: &[Vec<f32>]) -> Vec<Vec<f64>> {
        queries
            .iter()
            .map(|q| {
                let mut p = vec![0f64; self.classes];
                for tree in &self.trees {
                    p.iter_mut()
                        .zip(tree.leaf(q))
                        .for_each(|(a, v)| *a += v / self.trees.len() as f64);
                }
                p
            })
            .collect()
    }
}

/// Softmax gradient boosting of depth-3 regression trees.
#[derive(Clone, Debug)]
pub struct GradientBoosting {
    prior: Vec<f64>,
    /// Per round, one tree per class.
    rounds: Vec<Vec<Tree>>,
}

impl GradientBoosting {
    /// Boosting rounds.
    pub const ROUNDS: usize = 100;
    /// Shrinkage of every round.
    pub const LEARNING_RATE: f64 = 0.1;
    /// Depth of every tree.
    pub const DEPTH: usize = 3;

    /// Fits to `x` (rows) and `y` (classes `0..classes`).
    pub fn fit(x: &[Vec<f32>], y: &[usize], classes: usize) -> Self {
        let n = x.len();
        let mut counts = vec![0f64; classes];
        y.iter().for_each(|&c| counts[c] += 1.0);
        let prior: Vec<f64> = counts
            .iter()
            .map(|&c| ((c + 1e-9) / n.max(1) as f64).ln())
            .collect();
        let mut scores: Vec<Vec<f64>> = vec![prior.clone(); n];
        let d = x.first().map_or(0, Vec::len);
        // Every feature is a candidate at every split; the generator only
        // orders them, which decides between exactly tied splits.
        let mut rng = Rng::new(0);
        let scale = (classes as f64 - 1.0) / classes as f64;
        let mut rounds = Vec::with_capacity(Self::ROUNDS);
        for _ in 0..Self::ROUNDS {
            let p: Vec<Vec<f64>> = scores.iter().map(|s| softmax(s)).collect();
            let mut trees = Vec::with_capacity(classes);
            for k in 0..classes {
                let gradient: Vec<f64> = (0..n)
                    .map(|i| f64::from(u8::from(y[i] == k)) - p[i][k])
                    .collect();
                let hessian: Vec<f64> = (0..n).map(|i| p[i][k] * (1.0 - p[i][k])).collect();
                let criterion = Residuals {
                    gradient: &gradient,
                    hessian: &hessian,
                    scale,
                };
                let tree = grow(x, (0..n).collect(), &criterion, d, Self::DEPTH, &mut rng);
                for (i, row) in x.iter().enumerate() {
                    scores[i][k] += Self::LEARNING_RATE * tree.leaf(row)[0];
                }
                trees.push(tree);
            }
            rounds.push(trees);
        }
        Self { prior, rounds }
    }
}

impl Classifier for GradientBoosting {
    /// Class probabilities of every query.
    fn predict_proba(&self, queries: &[Vec<f32>]) -> Vec<Vec<f64>> {
        queries
            .iter()
            .map(|q| {
                let mut s = self.prior.clone();
                for trees in &self.rounds {
                    for (k, tree) in trees.iter().enumerate() {
                        s[k] += Self::LEARNING_RATE * tree.leaf(q)[0];
                    }
                }
                softmax(&s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three classes by which quadrant-ish region a point is in, with one
    /// irrelevant feature.
    fn regions(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let x: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..3).map(|_| rng.normal() as f32).collect())
            .collect();
        let y = x
            .iter()
            .map(|r| {
                if r[0] > 0.5 {
                    2
                } else if r[0] * r[1] > 0.0 {
                    1
                } else {
                    0
                }
            })
            .collect();
        (x, y)
    }

    fn accuracy(predicted: &[usize], y: &[usize]) -> f64 {
        predicted.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
    }

    #[test]
    fn both_ensembles_learn_a_nonlinear_rule_and_give_probabilities() {
        let (x, y) = regions(300, 1);
        let (test_x, test_y) = regions(300, 2);
        let forest = RandomForest::fit(&x, &y, 3, 0);
        let boosting = GradientBoosting::fit(&x, &y, 3);
        assert!(accuracy(&forest.predict(&test_x), &test_y) > 0.85);
        assert!(accuracy(&boosting.predict(&test_x), &test_y) > 0.85);
        for p in forest
            .predict_proba(&test_x)
            .iter()
            .chain(&boosting.predict_proba(&test_x))
        {
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(p.iter().all(|v| (0.0..=1.0 + 1e-9).contains(v)));
        }
        // Both fit their training rows (the forest nearly: bootstrap).
        assert!(accuracy(&boosting.predict(&x), &y) > 0.95);
        assert!(accuracy(&forest.predict(&x), &y) > 0.95);
    }

    #[test]
    fn a_forest_is_reproducible_from_its_seed() {
        let (x, y) = regions(60, 3);
        let (q, _) = regions(20, 4);
        let p = |seed| RandomForest::fit(&x, &y, 3, seed).predict_proba(&q);
        assert_eq!(p(5), p(5));
        assert_ne!(p(5), p(6));
    }

    #[test]
    fn a_single_class_and_constant_features_give_leaves_not_panics() {
        let x = vec![vec![1.0, 1.0]; 5];
        let y = vec![0; 5];
        assert_eq!(RandomForest::fit(&x, &y, 2, 0).predict(&x), vec![0; 5]);
        assert_eq!(GradientBoosting::fit(&x, &y, 2).predict(&x), vec![0; 5]);
    }
}
