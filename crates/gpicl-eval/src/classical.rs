//! Classical classifiers fitted on the same context as a meta-trained
//! learner, the yardstick of `cargo xtask predict --compare`: k-nearest
//! neighbours and multinomial logistic regression, both on features
//! z-scored with the training rows' statistics (tree ensembles:
//! [`crate::trees`]).
//!
//! ```
//! use gpicl_eval::classical::{knn_predict, Classifier, LogisticRegression};
//! let x = vec![vec![0.0, 0.0], vec![0.1, 0.0], vec![1.0, 1.0], vec![0.9, 1.0]];
//! let y = vec![0, 0, 1, 1];
//! assert_eq!(knn_predict(&x, &y, &[vec![0.95, 0.9]], 1), vec![1]);
//! let model = LogisticRegression::fit(&x, &y, 2, 1.0);
//! assert_eq!(model.predict(&[vec![0.05, 0.1]]), vec![0]);
//! ```

use gpicl_tasks::table_features::feature_statistics;

fn standardise(rows: &[Vec<f32>], mean: &[f64], std: &[f64]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(j, &v)| (v as f64 - mean[j]) / std[j])
                .collect()
        })
        .collect()
}

/// The majority class among the `k` training rows nearest (Euclidean, on
/// z-scored features) to each query; a tie goes to the tied class with the
/// nearest member.
pub fn knn_predict(x: &[Vec<f32>], y: &[usize], queries: &[Vec<f32>], k: usize) -> Vec<usize> {
    let (mean, std) = feature_statistics(x);
    let (train, queries) = (
        standardise(x, &mean, &std),
        standardise(queries, &mean, &std),
    );
    let k = k.clamp(1, train.len().max(1));
    let classes = y.iter().max().map_or(1, |m| m + 1);
    queries
        .iter()
        .map(|q| {
            let mut by_distance: Vec<(f64, usize)> = train
                .iter()
                .zip(y)
                .map(|(r, &c)| (r.iter().zip(q).map(|(a, b)| (a - b).powi(2)).sum(), c))
                .collect();
            by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut votes = vec![0usize; classes];
            for &(_, c) in &by_distance[..k] {
                votes[c] += 1;
            }
            let most = *votes.iter().max().expect("at least one class");
            by_distance[..k]
                .iter()
                .find(|(_, c)| votes[*c] == most)
                .map_or(0, |&(_, c)| c)
        })
        .collect()
}

/// Multinomial logistic regression with an L2 penalty, fitted by full-batch
/// gradient descent on z-scored features (deterministic).
#[derive(Clone, Debug)]
pub struct LogisticRegression {
    mean: Vec<f64>,
    std: Vec<f64>,
    /// `classes × (features + 1)`, the bias last.
    weights: Vec<Vec<f64>>,
}

impl LogisticRegression {
    /// Fits on rows `x` with labels `y < classes`, minimising the mean
    /// cross-entropy plus `0.5 / (c · n) · ‖W‖²` (scikit-learn's
    /// convention: `c` is the inverse regularisation strength, 1.0 there).
    pub fn fit(x: &[Vec<f32>], y: &[usize], classes: usize, c: f64) -> Self {
        let (mean, std) = feature_statistics(x);
        let rows = standardise(x, &mean, &std);
        let d = mean.len();
        let n = rows.len().max(1) as f64;
        let l2 = 1.0 / (c * n);
        let mut weights = vec![vec![0f64; d + 1]; classes];
        // Softmax cross-entropy on standardised inputs is smooth with
        // curvature at most about (d + 1) / 2; this step stays stable.
        let lr = 1.0 / (0.5 * (d as f64 + 1.0) + l2);
        for _ in 0..500 {
            let mut grad = vec![vec![0f64; d + 1]; classes];
            for (r, &label) in rows.iter().zip(y) {
                let p = softmax(&logits(&weights, r));
                for (k, g) in grad.iter_mut().enumerate() {
                    let err = p[k] - if k == label { 1.0 } else { 0.0 };
                    for (gj, v) in g.iter_mut().zip(r) {
                        *gj += err * v / n;
                    }
                    g[d] += err / n;
                }
            }
            for (w, g) in weights.iter_mut().zip(&grad) {
                for j in 0..=d {
                    let penalty = if j < d { l2 * w[j] } else { 0.0 };
                    w[j] -= lr * (g[j] + penalty);
                }
            }
        }
        Self { mean, std, weights }
    }
}

impl Classifier for LogisticRegression {
    fn predict_proba(&self, queries: &[Vec<f32>]) -> Vec<Vec<f64>> {
        standardise(queries, &self.mean, &self.std)
            .iter()
            .map(|r| softmax(&logits(&self.weights, r)))
            .collect()
    }
}

/// A fitted classifier that gives class probabilities: logistic
/// regression here, the tree ensembles of [`crate::trees`].
pub trait Classifier {
    /// Class probabilities of each query row.
    fn predict_proba(&self, queries: &[Vec<f32>]) -> Vec<Vec<f64>>;

    /// The most probable class of each query row (the last on exact ties).
    fn predict(&self, queries: &[Vec<f32>]) -> Vec<usize> {
        self.predict_proba(queries)
            .iter()
            .map(|p| {
                p.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(k, _)| k)
            })
            .collect()
    }
}

fn logits(weights: &[Vec<f64>], row: &[f64]) -> Vec<f64> {
    weights
        .iter()
        .map(|w| w.iter().zip(row).map(|(a, b)| a * b).sum::<f64>() + w[row.len()])
        .collect()
}

/// `exp(z) / Σ exp(z)`, shifted by the maximum.
pub(crate) fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three clusters on a line, one per class, with a
    /// feature of pure scale (×1000) that z-scoring must neutralise.
    fn clusters() -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for class in 0..3 {
            for i in 0..5 {
                x.push(vec![
                    class as f32 * 2.0 + i as f32 * 0.1,
                    (i % 2) as f32 * 1000.0,
                ]);
                y.push(class);
            }
        }
        (x, y)
    }

    #[test]
    fn nearest_neighbours_recover_well_separated_classes_whatever_the_feature_scales() {
        let (x, y) = clusters();
        let queries = vec![vec![0.2, 1000.0], vec![2.2, 0.0], vec![4.3, 1000.0]];
        assert_eq!(knn_predict(&x, &y, &queries, 1), vec![0, 1, 2]);
        assert_eq!(knn_predict(&x, &y, &queries, 5), vec![0, 1, 2]);
        // k beyond the rows is clamped, and the majority then wins.
        let lopsided_y = vec![0, 0, 0, 1];
        let lopsided_x = vec![vec![0.0], vec![0.1], vec![0.2], vec![5.0]];
        assert_eq!(
            knn_predict(&lopsided_x, &lopsided_y, &[vec![5.0]], 99),
            vec![0]
        );
        assert_eq!(
            knn_predict(&lopsided_x, &lopsided_y, &[vec![5.0]], 1),
            vec![1]
        );
    }

    #[test]
    fn logistic_regression_separates_linear_classes_with_calibrated_probabilities() {
        let (x, y) = clusters();
        let model = LogisticRegression::fit(&x, &y, 3, 1.0);
        assert_eq!(model.predict(&x), y);
        for p in model.predict_proba(&[vec![0.0, 0.0], vec![4.4, 0.0]]) {
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(p.iter().cloned().fold(0.0, f64::max) > 0.5);
        }
        // A stronger penalty pulls the probabilities towards uniform.
        let strong = LogisticRegression::fit(&x, &y, 3, 1e-4);
        let (weak_p, strong_p) = (
            model.predict_proba(&[vec![0.0, 0.0]]),
            strong.predict_proba(&[vec![0.0, 0.0]]),
        );
        assert!(strong_p[0][0] < weak_p[0][0]);
        assert!((strong_p[0][0] - 1.0 / 3.0).abs() < 0.05);
    }
}
