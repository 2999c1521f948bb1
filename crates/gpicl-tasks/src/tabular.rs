//! Synthetic tables: the `tabular` dataset, a task family of small
//! classification tables for meta-training learners that are used on
//! tables (`predict`), drawn like the paper draws image tasks: fresh for
//! every task slot, so there is nothing to memorise.
//!
//! A table ([`SyntheticTable::draw`]) has 2–100 features (log-uniform, at
//! most the model's input size) and 2–10 classes. Its labels come from one
//! of three rules over a random subset of its features (the others are
//! irrelevant): a random one-hidden-layer tanh network (argmax of its
//! outputs, biases set so the classes are roughly balanced), a random
//! axis-aligned decision tree of depth 1–4, or a Gaussian mixture (one
//! centre per class). Some features are quantised to 2–5 levels (as
//! integer or categorical columns are), and every feature carries
//! measurement noise. A *messy* table ([`SyntheticTable::draw_with`],
//! `data.tabular_messy_fraction`) also has what real tables have and
//! independent features lack: redundant columns (noisy mixtures of the
//! informative features, like a table's several measurements of one
//! thing) and skewed, log-normal columns (counts, areas, deviations);
//! its labels still follow the latent features, so a tree's thresholds
//! stay axis-aligned in the columns that carry them. Rows are then read as `predict` reads a table of
//! one's own ([`crate::table_features`]): each feature z-scored over the
//! sequence's rows (clipped, and with its square appended, where
//! `data.tabular_clip` and `data.tabular_squares_fraction` ask), and mapped
//! to the model's input size by a random projection with `N(0, 1/D)`
//! entries.
//!
//! ```
//! use gpicl_kernels::rng::Rng;
//! use gpicl_tasks::tabular::SyntheticTable;
//! let mut rng = Rng::new(0);
//! let table = SyntheticTable::draw(49, &mut rng);
//! let (x, y) = table.sample_rows(100, 49, 0.0, false, &mut rng);
//! assert_eq!(x.len(), 100 * 49);
//! assert!(y.iter().all(|&label| (label as usize) < table.classes()));
//! ```

use crate::table_features::{FeatureMap, Scaling};
use gpicl_kernels::rng::Rng;

/// The synthetic tables' dataset name (like `random`, it needs no files).
pub const TABULAR_DATASET: &str = "tabular";

/// The most features a synthetic table has.
pub const MAX_FEATURES: usize = 100;

/// The most classes a synthetic table has (the learner's label count).
pub const MAX_CLASSES: usize = 10;

/// How a table's labels follow from its (informative) features.
#[derive(Clone, Debug)]
enum LabelRule {
    /// `argmax(W2 tanh(W1 z + b1) + b2)`.
    Network {
        hidden: usize,
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
    },
    /// An axis-aligned tree: `nodes[0]` is the root.
    Tree { nodes: Vec<TreeNode> },
    /// One centre per class; a row's label picks its centre.
    Mixture { centres: Vec<f32>, spread: f32 },
}

#[derive(Clone, Debug)]
enum TreeNode {
    Split {
        feature: usize,
        threshold: f32,
        left: usize,
        right: usize,
    },
    Leaf(u8),
}

/// One synthetic classification table.
#[derive(Clone, Debug)]
pub struct SyntheticTable {
    features: usize,
    classes: usize,
    /// The features the label depends on, in the rule's input order.
    informative: Vec<usize>,
    /// Per feature: 0 for continuous, else the number of levels.
    levels: Vec<u8>,
    noise: f32,
    rule: LabelRule,
    /// How each observed column follows from the latent row; empty for
    /// a table that is not messy (every column its latent feature).
    columns: Vec<Column>,
}

/// An observed column of a messy table.
#[derive(Clone, Debug)]
enum Column {
    /// The latent feature itself.
    Latent,
    /// `Σ w_k z[source_k]` over informative features (the weights scaled
    /// to unit norm when drawn), plus a little of the column's own latent
    /// value.
    Redundant { sources: Vec<(usize, f32)> },
    /// `exp(scale · z)`: a skewed, positive column.
    Skewed { scale: f32 },
}

/// How much of a redundant column is its own latent value.
const REDUNDANT_OWN: f32 = 0.3;

impl SyntheticTable {
    /// Draws a table whose rows will be projected to `n_x` inputs.
    pub fn draw(n_x: usize, rng: &mut Rng) -> Self {
        Self::draw_with(n_x, 0.0, rng)
    }

    /// Draws a table as [`draw`](Self::draw) does, messy with probability
    /// `messy_fraction`: then each feature the label does not read is, with
    /// probability 1/2, a redundant mixture of 1–3 distinct informative features,
    /// and each other continuous feature is skewed (`exp(s·z)`, `s` in `[0.5, 1.5]`)
    /// with probability 1/4. With `messy_fraction = 0` nothing more is
    /// drawn, so such a table, and everything drawn after it, is what
    /// `draw` gave before messy tables existed.
    pub fn draw_with(n_x: usize, messy_fraction: f64, rng: &mut Rng) -> Self {
        let most = MAX_FEATURES.min(n_x).max(2);
        let features = ((2f64.ln() + rng.uniform() * ((most as f64).ln() - 2f64.ln()))
            .exp()
            .round() as usize)
            .clamp(2, most);
        let classes = 2 + rng.below((MAX_CLASSES - 1) as u64) as usize;
        let used = 1 + rng.below(features as u64) as usize;
        let mut order = rng.permutation(features);
        order.truncate(used);
        let informative = order;
        let levels = (0..features)
            .map(|_| {
                if rng.uniform() < 0.2 {
                    2 + rng.below(4) as u8
                } else {
                    0
                }
            })
            .collect();
        let noise = (0.3 * rng.uniform()) as f32;
        let rule = match rng.below(3) {
            0 => Self::draw_network(used, classes, rng),
            1 => Self::draw_tree(used, classes, rng),
            _ => {
                let spread = (0.5 + 1.5 * rng.uniform()) as f32;
                let centres = (0..classes * used)
                    .map(|_| rng.normal() as f32 * spread)
                    .collect();
                LabelRule::Mixture { centres, spread }
            }
        };
        let mut table = Self {
            features,
            classes,
            informative,
            levels,
            noise,
            rule,
            columns: Vec::new(),
        };
        table.balance_network(rng);
        if messy_fraction > 0.0 && rng.uniform() < messy_fraction {
            table.columns = table.draw_columns(rng);
        }
        table
    }

    fn draw_columns(&self, rng: &mut Rng) -> Vec<Column> {
        (0..self.features)
            .map(|j| {
                if !self.informative.contains(&j) && rng.uniform() < 0.5 {
                    // Distinct sources, so that no two weights can cancel.
                    let count = (1 + rng.below(3) as usize).min(self.informative.len());
                    let picks = rng.permutation(self.informative.len());
                    let mut sources: Vec<(usize, f32)> = picks[..count]
                        .iter()
                        .map(|&pick| (self.informative[pick], rng.normal() as f32))
                        .collect();
                    let norm = sources
                        .iter()
                        .map(|(_, w)| w * w)
                        .sum::<f32>()
                        .sqrt()
                        .max(1e-3);
                    sources.iter_mut().for_each(|(_, w)| *w /= norm);
                    Column::Redundant { sources }
                } else if self.levels[j] == 0 && rng.uniform() < 0.25 {
                    Column::Skewed {
                        scale: (0.5 + rng.uniform()) as f32,
                    }
                } else {
                    Column::Latent
                }
            })
            .collect()
    }

    /// Whether the table was drawn messy.
    pub fn is_messy(&self) -> bool {
        !self.columns.is_empty()
    }

    /// The observed columns of a (noisy) latent row.
    fn observe(&self, z: &[f32]) -> Vec<f32> {
        self.columns
            .iter()
            .enumerate()
            .map(|(j, column)| match column {
                Column::Latent => z[j],
                Column::Redundant { sources } => {
                    sources.iter().map(|&(k, w)| w * z[k]).sum::<f32>() + REDUNDANT_OWN * z[j]
                }
                Column::Skewed { scale } => (scale * z[j]).exp(),
            })
            .collect()
    }

    fn draw_network(inputs: usize, classes: usize, rng: &mut Rng) -> LabelRule {
        let hidden = 8 + rng.below(25) as usize;
        // How sharply the network bends: from nearly linear to wiggly.
        let gain = 0.5 + 2.5 * rng.uniform();
        let w1 = (0..hidden * inputs)
            .map(|_| (rng.normal() * gain / (inputs as f64).sqrt()) as f32)
            .collect();
        let b1 = (0..hidden).map(|_| rng.normal() as f32 * 0.5).collect();
        let w2 = (0..classes * hidden)
            .map(|_| (rng.normal() / (hidden as f64).sqrt()) as f32)
            .collect();
        LabelRule::Network {
            hidden,
            w1,
            b1,
            w2,
            b2: vec![0.0; classes],
        }
    }

    fn draw_tree(inputs: usize, classes: usize, rng: &mut Rng) -> LabelRule {
        let depth = 1 + rng.below(4) as usize;
        let mut nodes = Vec::new();
        Self::grow(&mut nodes, depth, inputs, classes, rng);
        LabelRule::Tree { nodes }
    }

    /// Appends a subtree of `depth` splits and returns its root's index.
    fn grow(
        nodes: &mut Vec<TreeNode>,
        depth: usize,
        inputs: usize,
        classes: usize,
        rng: &mut Rng,
    ) -> usize {
        let at = nodes.len();
        if depth == 0 {
            nodes.push(TreeNode::Leaf(rng.below(classes as u64) as u8));
            return at;
        }
        nodes.push(TreeNode::Leaf(0));
        let feature = rng.below(inputs as u64) as usize;
        let threshold = (rng.normal() * 0.7) as f32;
        let left = Self::grow(nodes, depth - 1, inputs, classes, rng);
        let right = Self::grow(nodes, depth - 1, inputs, classes, rng);
        nodes[at] = TreeNode::Split {
            feature,
            threshold,
            left,
            right,
        };
        at
    }

    /// Sets a network's output biases so that each class wins about as
    /// often on fresh rows (without it one class often takes nearly all).
    fn balance_network(&mut self, rng: &mut Rng) {
        if !matches!(self.rule, LabelRule::Network { .. }) {
            return;
        }
        const PROBES: usize = 256;
        let mut mean = vec![0f32; self.classes];
        for _ in 0..PROBES {
            let z = self.latent_row(rng);
            let logits = self.network_logits(&self.inputs_of(&z));
            mean.iter_mut()
                .zip(&logits)
                .for_each(|(m, l)| *m += l / PROBES as f32);
        }
        if let LabelRule::Network { b2, .. } = &mut self.rule {
            b2.iter_mut().zip(&mean).for_each(|(b, m)| *b = -m);
        }
    }

    /// Features of the table.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Classes of the table (labels are `0..classes`).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The features the label depends on.
    pub fn informative(&self) -> &[usize] {
        &self.informative
    }

    /// A noiseless row of the latent features, quantised where a feature is.
    fn latent_row(&self, rng: &mut Rng) -> Vec<f32> {
        (0..self.features)
            .map(|j| {
                let v = rng.normal() as f32;
                match self.levels[j] {
                    0 => v,
                    n => quantise(v, n),
                }
            })
            .collect()
    }

    fn inputs_of(&self, z: &[f32]) -> Vec<f32> {
        self.informative.iter().map(|&j| z[j]).collect()
    }

    fn network_logits(&self, inputs: &[f32]) -> Vec<f32> {
        let LabelRule::Network {
            hidden,
            w1,
            b1,
            w2,
            b2,
        } = &self.rule
        else {
            return Vec::new();
        };
        let h: Vec<f32> = (0..*hidden)
            .map(|i| {
                let row = &w1[i * inputs.len()..(i + 1) * inputs.len()];
                (row.iter().zip(inputs).map(|(w, v)| w * v).sum::<f32>() + b1[i]).tanh()
            })
            .collect();
        (0..self.classes)
            .map(|c| {
                let row = &w2[c * hidden..(c + 1) * hidden];
                row.iter().zip(&h).map(|(w, v)| w * v).sum::<f32>() + b2[c]
            })
            .collect()
    }

    /// The label of a latent row under the table's rule (mixtures label
    /// when they draw, so this is for networks and trees).
    pub fn label_of(&self, z: &[f32]) -> u8 {
        let inputs = self.inputs_of(z);
        match &self.rule {
            LabelRule::Network { .. } => argmax(&self.network_logits(&inputs)) as u8,
            LabelRule::Tree { nodes } => {
                let mut at = 0;
                loop {
                    match nodes[at] {
                        TreeNode::Leaf(class) => return class,
                        TreeNode::Split {
                            feature,
                            threshold,
                            left,
                            right,
                        } => {
                            at = if inputs[feature] <= threshold {
                                left
                            } else {
                                right
                            }
                        }
                    }
                }
            }
            LabelRule::Mixture { centres, .. } => {
                // The nearest centre, for completeness.
                let used = inputs.len();
                let distance = |c: usize| -> f32 {
                    centres[c * used..(c + 1) * used]
                        .iter()
                        .zip(&inputs)
                        .map(|(m, v)| (m - v) * (m - v))
                        .sum()
                };
                (0..self.classes)
                    .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
                    .unwrap_or(0) as u8
            }
        }
    }

    /// One row: the observed features (latent plus noise) and its label.
    pub fn sample_row(&self, rng: &mut Rng) -> (Vec<f32>, u8) {
        let (mut z, label) = match &self.rule {
            LabelRule::Mixture { centres, spread } => {
                let label = rng.below(self.classes as u64) as usize;
                let mut z = self.latent_row(rng);
                let used = self.informative.len();
                for (i, &j) in self.informative.iter().enumerate() {
                    // Scatter of at most unit variance around the centre.
                    z[j] = centres[label * used + i] + z[j] / spread.max(1.0);
                }
                (z, label as u8)
            }
            _ => {
                let z = self.latent_row(rng);
                let label = self.label_of(&z);
                (z, label)
            }
        };
        if self.noise > 0.0 {
            z.iter_mut()
                .for_each(|v| *v += self.noise * rng.normal() as f32);
        }
        if self.is_messy() {
            z = self.observe(&z);
        }
        (z, label)
    }

    /// `rows` rows mapped to `n_x` inputs as `predict` maps a table: each
    /// feature read over these rows as [`FeatureMap`] reads it (z-scored,
    /// clipped to `±clip` unless 0, the squares appended with `squares`),
    /// then a random projection with `N(0, 1/width)` entries. Returns
    /// `rows × n_x` inputs and the labels.
    pub fn sample_rows(
        &self,
        rows: usize,
        n_x: usize,
        clip: f32,
        squares: bool,
        rng: &mut Rng,
    ) -> (Vec<f32>, Vec<u8>) {
        let mut raw = Vec::with_capacity(rows);
        let mut labels = Vec::with_capacity(rows);
        for _ in 0..rows {
            let (z, label) = self.sample_row(rng);
            raw.push(z);
            labels.push(label);
        }
        let map = FeatureMap::fit(&raw, Scaling::PerFeature, clip, squares);
        let width = map.width(squares);
        let std = 1.0 / (width as f64).sqrt();
        let projection: Vec<f32> = (0..n_x * width)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        let mut x = Vec::with_capacity(rows * n_x);
        for row in &raw {
            let read = map.apply(row, squares);
            x.extend(
                projection
                    .chunks_exact(width)
                    .map(|a| a.iter().zip(&read).map(|(p, v)| p * v).sum::<f32>()),
            );
        }
        (x, labels)
    }
}

/// `v` rounded onto `levels` evenly spaced values spanning about ±2.
fn quantise(v: f32, levels: u8) -> f32 {
    let n = levels as f32;
    let step = 4.0 / (n - 1.0);
    let index = ((v + 2.0) / step).round().clamp(0.0, n - 1.0);
    index * step - 2.0
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_span_the_documented_shapes_and_every_rule() {
        let mut rng = Rng::new(1);
        let (mut features, mut classes) = (Vec::new(), Vec::new());
        let mut rules = [0usize; 3];
        for _ in 0..400 {
            let t = SyntheticTable::draw(196, &mut rng);
            assert!((2..=MAX_FEATURES).contains(&t.features()));
            assert!((2..=MAX_CLASSES).contains(&t.classes()));
            assert!(!t.informative().is_empty() && t.informative().len() <= t.features());
            features.push(t.features());
            classes.push(t.classes());
            rules[match t.rule {
                LabelRule::Network { .. } => 0,
                LabelRule::Tree { .. } => 1,
                LabelRule::Mixture { .. } => 2,
            }] += 1;
        }
        assert!(features.contains(&2) && features.iter().any(|&d| d >= 80));
        assert!(classes.contains(&2) && classes.contains(&10));
        assert!(rules.iter().all(|&n| n > 80), "{rules:?}");
        // A small model's input caps the features.
        assert!((0..100).all(|_| SyntheticTable::draw(49, &mut rng).features() <= 49));
    }

    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (
            a.iter().map(|&v| v as f64).sum::<f64>() / n,
            b.iter().map(|&v| v as f64).sum::<f64>() / n,
        );
        let cov: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - ma) * (y as f64 - mb))
            .sum();
        let va: f64 = a.iter().map(|&x| (x as f64 - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|&y| (y as f64 - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn messy_tables_have_redundant_and_skewed_columns_over_the_same_rule() {
        let (mut redundant, mut skewed) = (0, 0);
        for seed in 0..40 {
            let plain = SyntheticTable::draw(100, &mut Rng::new(seed));
            let t = SyntheticTable::draw_with(100, 1.0, &mut Rng::new(seed));
            assert!(t.is_messy() && !plain.is_messy());
            // The mess is drawn after the table: same shape, same rule.
            assert_eq!(
                (t.features, t.classes, &t.informative),
                (plain.features, plain.classes, &plain.informative)
            );
            let mut rng = Rng::new(100 + seed);
            let rows: Vec<Vec<f32>> = (0..400).map(|_| t.sample_row(&mut rng).0).collect();
            let column = |j: usize| rows.iter().map(|r| r[j]).collect::<Vec<f32>>();
            for (j, c) in t.columns.iter().enumerate() {
                match c {
                    Column::Redundant { sources } => {
                        redundant += 1;
                        // It tracks the informative features it mixes.
                        let mix: Vec<f32> = (0..rows.len())
                            .map(|i| sources.iter().map(|&(k, w)| w * rows[i][k]).sum())
                            .collect();
                        let informative_sources = sources
                            .iter()
                            .all(|(k, _)| matches!(t.columns[*k], Column::Latent));
                        if informative_sources {
                            assert!(correlation(&column(j), &mix).abs() > 0.8, "column {j}");
                        }
                    }
                    Column::Skewed { .. } => {
                        skewed += 1;
                        let v = column(j);
                        assert!(v.iter().all(|&x| x > 0.0));
                        let n = v.len() as f64;
                        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
                        let median = {
                            let mut s = v.clone();
                            s.sort_by(f32::total_cmp);
                            s[s.len() / 2] as f64
                        };
                        assert!(mean > median, "right-skewed: mean {mean}, median {median}");
                    }
                    Column::Latent => {}
                }
            }
        }
        assert!(
            redundant > 20 && skewed > 20,
            "{redundant} redundant, {skewed} skewed"
        );
    }

    #[test]
    fn the_messy_fraction_is_the_share_of_messy_tables() {
        let mut rng = Rng::new(3);
        let messy = (0..1000)
            .filter(|_| SyntheticTable::draw_with(49, 0.3, &mut rng).is_messy())
            .count();
        assert!((240..360).contains(&messy), "{messy}");
    }

    #[test]
    fn labels_ignore_the_irrelevant_features() {
        let mut rng = Rng::new(2);
        for _ in 0..50 {
            let t = SyntheticTable::draw(100, &mut rng);
            if matches!(t.rule, LabelRule::Mixture { .. }) || t.informative.len() == t.features {
                continue;
            }
            let z = t.latent_row(&mut rng);
            let mut changed = z.clone();
            for j in (0..t.features).filter(|j| !t.informative.contains(j)) {
                changed[j] += 5.0;
            }
            assert_eq!(t.label_of(&z), t.label_of(&changed));
        }
    }

    #[test]
    fn a_network_tables_classes_are_roughly_balanced_and_a_rule_is_learnable() {
        let mut rng = Rng::new(3);
        let mut seen = 0;
        while seen < 20 {
            let t = SyntheticTable::draw(100, &mut rng);
            if !matches!(t.rule, LabelRule::Network { .. }) {
                continue;
            }
            seen += 1;
            let mut counts = vec![0usize; t.classes()];
            for _ in 0..2000 {
                counts[t.sample_row(&mut rng).1 as usize] += 1;
            }
            let largest = *counts.iter().max().unwrap() as f64 / 2000.0;
            assert!(largest < 0.9, "one class takes {largest:.2} of {counts:?}");
        }
        // Rows are not noise: the nearest neighbour among 400 rows of a
        // tree table beats chance by far on fresh rows.
        let t = loop {
            let t = SyntheticTable::draw(100, &mut rng);
            if matches!(t.rule, LabelRule::Tree { .. }) && t.informative.len() <= 3 {
                break t;
            }
        };
        let train: Vec<(Vec<f32>, u8)> = (0..400).map(|_| t.sample_row(&mut rng)).collect();
        let mut right = 0;
        for _ in 0..200 {
            let (z, y) = t.sample_row(&mut rng);
            let nearest = train
                .iter()
                .min_by(|a, b| {
                    let d =
                        |r: &Vec<f32>| r.iter().zip(&z).map(|(p, q)| (p - q).powi(2)).sum::<f32>();
                    d(&a.0).total_cmp(&d(&b.0))
                })
                .unwrap();
            right += (nearest.1 == y) as usize;
        }
        let chance = 1.0 / t.classes() as f64;
        assert!(
            right as f64 / 200.0 > chance + 0.1,
            "{right}/200, chance {chance}"
        );
    }

    #[test]
    fn rows_are_z_scored_projected_and_reproducible_from_the_seed() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            let t = SyntheticTable::draw(49, &mut rng);
            t.sample_rows(64, 49, 0.0, false, &mut rng)
        };
        let (x, y) = draw(7);
        assert_eq!((x.len(), y.len()), (64 * 49, 64));
        assert_eq!(draw(7), (x.clone(), y.clone()));
        assert_ne!(draw(8).0, x);
        // Projected z-scored features: each input has mean ≈ 0 over rows.
        let mean0 = x.iter().step_by(49).sum::<f32>() / 64.0;
        assert!(mean0.abs() < 1e-4, "{mean0}");
        assert!(x.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn clipping_and_squares_change_how_rows_are_read_not_which_rows_are_drawn() {
        let read = |clip, squares| {
            let mut rng = Rng::new(3);
            let t = SyntheticTable::draw(49, &mut rng);
            t.sample_rows(64, 49, clip, squares, &mut rng)
        };
        let (plain, labels) = read(0.0, false);
        for (clip, squares) in [(0.5, false), (0.0, true), (2.0, true)] {
            let (x, y) = read(clip, squares);
            assert_eq!(y, labels, "the same rows, so the same labels");
            assert_eq!(x.len(), plain.len(), "still n_x inputs per row");
            assert_ne!(x, plain, "clip {clip}, squares {squares}");
            assert!(x.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn quantised_features_take_their_levels_only() {
        for levels in 2..=5u8 {
            let values: std::collections::BTreeSet<i32> = (-40..=40)
                .map(|i| (quantise(i as f32 / 10.0, levels) * 1000.0).round() as i32)
                .collect();
            assert_eq!(values.len(), levels as usize);
        }
    }
}
