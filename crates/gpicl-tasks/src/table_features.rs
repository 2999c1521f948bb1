//! How a table's rows are read before their random projection, the same
//! way in meta-training (the synthetic tables of [`crate::tabular`]) and
//! at use (`gpicl_run::predict`): each feature z-scored with the rows'
//! statistics ([`Scaling`]), clipped to `±clip` so that one outlying value
//! cannot dominate a projected row, and, where a reader asks for them, the
//! squares of those z-scores appended (z-scored in turn): a learner whose
//! attention compares projected rows bilinearly can then also tell rows
//! apart by their distance from the centre ([`TableOptions`]).
//!
//! ```
//! use gpicl_tasks::table_features::{FeatureMap, Scaling};
//! let rows = vec![vec![1.0f32, 10.0], vec![2.0, 20.0], vec![3.0, 90.0]];
//! let map = FeatureMap::fit(&rows, Scaling::PerFeature, 2.0, true);
//! let read = map.apply(&rows[2], true);
//! assert_eq!(read.len(), map.width(true));
//! assert!(read[..2].iter().all(|z| z.abs() <= 2.0));
//! ```

/// How features are normalised with the rows' statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scaling {
    /// Every feature to zero mean and unit variance (tables, whose columns
    /// have unrelated units). The default.
    #[default]
    PerFeature,
    /// One mean and standard deviation over all features, as meta-training
    /// normalises images (`data.normalization = "per-batch"`): pixels keep
    /// their relative brightness.
    Global,
}

/// How the synthetic tables of meta-training are drawn and read
/// (`data.tabular_clip`, `data.tabular_squares_fraction`,
/// `data.tabular_messy_fraction`); `predict` reads a table of one's own
/// with its own options.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TableOptions {
    /// z-scores are clipped to `±clip`; 0 leaves them as they are.
    pub clip: f32,
    /// Probability that a table (one task slot) is read with the squared
    /// z-scores appended.
    pub squares_fraction: f64,
    /// Probability that a table is drawn with redundant and skewed columns
    /// ([`crate::tabular::SyntheticTable::draw_with`]).
    pub messy_fraction: f64,
}

/// Per-feature mean and standard deviation of `rows` (a constant feature
/// gets standard deviation 1, so it reads 0).
pub fn feature_statistics<R: AsRef<[f32]>>(rows: &[R]) -> (Vec<f64>, Vec<f64>) {
    let d = rows.first().map_or(0, |r| r.as_ref().len());
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r.as_ref()[j] as f64).sum::<f64>() / n)
        .collect();
    let std = (0..d)
        .map(|j| {
            let var = rows
                .iter()
                .map(|r| (r.as_ref()[j] as f64 - mean[j]).powi(2))
                .sum::<f64>()
                / n;
            if var > 1e-12 {
                var.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    (mean, std)
}

/// The statistics of some rows, fitted once, and how a row is read with
/// them.
#[derive(Clone, Debug)]
pub struct FeatureMap {
    mean: Vec<f64>,
    std: Vec<f64>,
    /// 0: no clipping.
    clip: f32,
    /// Mean and standard deviation of each squared (clipped) z-score over
    /// the rows; empty when fitted without squares.
    square_mean: Vec<f64>,
    square_std: Vec<f64>,
}

impl FeatureMap {
    /// Fits the statistics on `rows` (non-empty, of equal length), and
    /// those of the squares too when `squares` (so that
    /// [`FeatureMap::apply`] may append them).
    pub fn fit<R: AsRef<[f32]>>(rows: &[R], scaling: Scaling, clip: f32, squares: bool) -> Self {
        let d = rows.first().map_or(0, |r| r.as_ref().len());
        let (mean, std) = match scaling {
            Scaling::PerFeature => feature_statistics(rows),
            Scaling::Global => {
                let all = (rows.len() * d).max(1) as f64;
                let values = || {
                    rows.iter()
                        .flat_map(|r| r.as_ref().iter().map(|&v| v as f64))
                };
                let mean = values().sum::<f64>() / all;
                let var = values().map(|v| (v - mean).powi(2)).sum::<f64>() / all;
                let std = if var > 1e-12 { var.sqrt() } else { 1.0 };
                (vec![mean; d], vec![std; d])
            }
        };
        let mut map = Self {
            mean,
            std,
            clip,
            square_mean: Vec::new(),
            square_std: Vec::new(),
        };
        if squares {
            let squared: Vec<Vec<f32>> = rows
                .iter()
                .map(|row| map.z_scores(row.as_ref()).iter().map(|z| z * z).collect())
                .collect();
            (map.square_mean, map.square_std) = feature_statistics(&squared);
        }
        map
    }

    /// Features per row.
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Values [`FeatureMap::apply`] returns: `d`, or `2d` with squares.
    pub fn width(&self, squares: bool) -> usize {
        if squares {
            2 * self.features()
        } else {
            self.features()
        }
    }

    fn z_scores(&self, row: &[f32]) -> Vec<f32> {
        row.iter()
            .enumerate()
            .map(|(j, &v)| {
                let z = ((v as f64 - self.mean[j]) / self.std[j]) as f32;
                if self.clip > 0.0 {
                    z.clamp(-self.clip, self.clip)
                } else {
                    z
                }
            })
            .collect()
    }

    /// `row` read: its (clipped) z-scores, then with `squares` (only if the
    /// map was fitted with them) the z-scored squares of those.
    pub fn apply(&self, row: &[f32], squares: bool) -> Vec<f32> {
        let mut z = self.z_scores(row);
        if squares && !self.square_mean.is_empty() {
            let squared: Vec<f32> = z
                .iter()
                .enumerate()
                .map(|(j, &v)| {
                    ((v as f64 * v as f64 - self.square_mean[j]) / self.square_std[j]) as f32
                })
                .collect();
            z.extend(squared);
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<f32>> {
        (0..20)
            .map(|i| vec![i as f32, (i % 3) as f32 * 10.0, 5.0])
            .collect()
    }

    fn column_moments(rows: &[Vec<f32>], j: usize) -> (f32, f32) {
        let n = rows.len() as f32;
        let mean = rows.iter().map(|r| r[j]).sum::<f32>() / n;
        let var = rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f32>() / n;
        (mean, var)
    }

    #[test]
    fn z_scores_have_zero_mean_and_unit_variance_over_the_fitted_rows() {
        let x = rows();
        let map = FeatureMap::fit(&x, Scaling::PerFeature, 0.0, false);
        let z: Vec<Vec<f32>> = x.iter().map(|r| map.apply(r, false)).collect();
        for j in 0..2 {
            let (mean, var) = column_moments(&z, j);
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
                "{mean} {var}"
            );
        }
        // A constant feature reads 0, not a division by zero.
        assert!(z.iter().all(|r| r[2] == 0.0));
    }

    #[test]
    fn clipping_bounds_every_z_score_and_leaves_the_inliers_alone() {
        let x = rows();
        let free = FeatureMap::fit(&x, Scaling::PerFeature, 0.0, false);
        let clipped = FeatureMap::fit(&x, Scaling::PerFeature, 1.0, false);
        let outlier = [1000.0, -1000.0, 5.0];
        assert!(free.apply(&outlier, false)[0] > 100.0);
        assert_eq!(clipped.apply(&outlier, false), vec![1.0, -1.0, 0.0]);
        assert_eq!(clipped.apply(&x[10], false), free.apply(&x[10], false));
    }

    #[test]
    fn squares_follow_the_z_scores_and_are_z_scored_themselves() {
        let x = rows();
        let map = FeatureMap::fit(&x, Scaling::PerFeature, 0.0, true);
        assert_eq!(map.width(true), 6);
        let with = map.apply(&x[3], true);
        assert_eq!(&with[..3], &map.apply(&x[3], false)[..]);
        let squared: Vec<Vec<f32>> = x.iter().map(|r| map.apply(r, true)[3..].to_vec()).collect();
        assert!(column_moments(&squared, 0).0.abs() < 1e-5);
        // The rows farthest from the centre have the largest squares.
        assert!(squared[0][0] > squared[10][0] && squared[19][0] > squared[10][0]);
        // Without fitted squares there is nothing to append.
        let plain = FeatureMap::fit(&x, Scaling::PerFeature, 0.0, false);
        assert_eq!(plain.apply(&x[3], true).len(), 3);
    }

    #[test]
    fn global_scaling_keeps_the_features_relative_sizes() {
        let x = vec![vec![0.0f32, 2.0], vec![2.0, 4.0]];
        let map = FeatureMap::fit(&x, Scaling::Global, 0.0, false);
        let a = map.apply(&x[0], false);
        let b = map.apply(&x[1], false);
        assert!((a[1] - b[0]).abs() < 1e-6 && a[0] < a[1] && b[0] < b[1]);
    }
}
