//! Drawing 10-way tasks from datasets with more than 10 classes (EMNIST,
//! Omniglot) and from mixtures of datasets (`--dataset mnist,fashion_mnist`).
//!
//! Each task slot sees one *view*: one dataset of the pool and up to 10 of
//! its classes, relabelled `0..10`. For a task with an id the view is a pure
//! function of `(task_seed, id)`, so task `id` always means the same
//! dataset, classes, projection and permutation; slots without an id (the
//! identity groups) draw their view from the batch's generator. Examples
//! are drawn class-balanced, with replacement: uniform over the view's
//! classes, then uniform within the class.

use crate::dataset::ImageSet;
use crate::error::{Result, TaskError};
use crate::NUM_CLASSES;
use gpicl_kernels::rng::Rng;
use std::sync::Arc;

/// Several datasets (or one with many classes) sharing one input size.
#[derive(Debug)]
pub struct ImagePool {
    name: String,
    sets: Vec<Arc<ImageSet>>,
    /// `by_class[set][class]`: indices of that class's examples.
    by_class: Vec<Vec<Vec<u32>>>,
    mean_std: (f32, f32),
    /// Cumulative dataset weights (`data.weights`); empty: uniform.
    cumulative_weights: Vec<f64>,
}

/// What one task slot draws from: a dataset of the pool and, for each new
/// label `0..len`, the original class it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// Index of the dataset in the pool.
    pub set: usize,
    /// `classes[label]` is the original class shown as `label`.
    pub classes: Vec<usize>,
}

impl ImagePool {
    /// A pool over `sets`, which must share their feature count.
    pub fn new(sets: Vec<Arc<ImageSet>>) -> Result<Self> {
        let first = sets
            .first()
            .ok_or_else(|| TaskError::config("data.dataset", "names no dataset"))?;
        if let Some(other) = sets.iter().find(|s| s.n_x != first.n_x) {
            return Err(TaskError::config(
                "data.image_size",
                format!(
                    "`{}` has {} features per example and `{}` has {}: mixed datasets need one size (set data.image_size, and data.channels for colour)",
                    first.name, first.n_x, other.name, other.n_x
                ),
            ));
        }
        let by_class = sets
            .iter()
            .map(|set| {
                let mut lists = vec![Vec::new(); set.classes];
                for (i, &label) in set.labels.iter().enumerate() {
                    lists[label as usize].push(i as u32);
                }
                lists
            })
            .collect();
        let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
        for set in &sets {
            for &v in &set.x {
                sum += v as f64;
                sq += (v as f64) * (v as f64);
            }
            n += set.x.len() as f64;
        }
        let mean = sum / n.max(1.0);
        let std = (sq / n.max(1.0) - mean * mean).max(0.0).sqrt();
        Ok(Self {
            name: sets
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            sets,
            by_class,
            mean_std: (mean as f32, std as f32),
            cumulative_weights: Vec::new(),
        })
    }

    /// Draws datasets with these relative weights (`data.weights`, one per
    /// dataset) instead of uniformly.
    pub fn with_weights(mut self, weights: &[f64]) -> Result<Self> {
        if weights.is_empty() {
            return Ok(self);
        }
        let total: f64 = weights.iter().sum();
        if weights.len() != self.sets.len()
            || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || total <= 0.0
        {
            return Err(TaskError::config(
                "data.weights",
                format!(
                    "expected {} non-negative weights with a positive sum, got {weights:?}",
                    self.sets.len()
                ),
            ));
        }
        let mut sum = 0.0;
        self.cumulative_weights = weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect();
        Ok(self)
    }

    /// `mnist+fashion_mnist`-style name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Features per example.
    pub fn n_x(&self) -> usize {
        self.sets[0].n_x
    }

    /// Examples over all datasets.
    pub fn examples(&self) -> usize {
        self.sets.iter().map(|s| s.len()).sum()
    }

    /// The pool's datasets.
    pub fn sets(&self) -> &[Arc<ImageSet>] {
        &self.sets
    }

    /// Mean and std of all features (fixed normalisation of mixtures).
    pub fn mean_std(&self) -> (f32, f32) {
        self.mean_std
    }

    /// Draws a view: a dataset, then up to 10 of its non-empty classes.
    /// Datasets with at most 10 classes keep their labels.
    pub fn draw_view(&self, rng: &mut Rng) -> TaskView {
        let set = if self.cumulative_weights.is_empty() {
            rng.below(self.sets.len() as u64) as usize
        } else {
            let u = rng.uniform();
            self.cumulative_weights
                .iter()
                .position(|&c| u < c)
                .unwrap_or(self.sets.len() - 1)
        };
        let present: Vec<usize> = (0..self.by_class[set].len())
            .filter(|&c| !self.by_class[set][c].is_empty())
            .collect();
        let classes = if self.by_class[set].len() <= NUM_CLASSES {
            present
        } else {
            let order = rng.permutation(present.len());
            order
                .into_iter()
                .take(NUM_CLASSES)
                .map(|i| present[i])
                .collect()
        };
        TaskView { set, classes }
    }

    /// Appends `count` examples drawn from `view` to `x` and their labels
    /// to `y`.
    pub fn draw_examples(
        &self,
        view: &TaskView,
        count: usize,
        rng: &mut Rng,
        x: &mut Vec<f32>,
        y: &mut Vec<u8>,
    ) {
        let set = &self.sets[view.set];
        let small = self.by_class[view.set].len() <= NUM_CLASSES;
        for _ in 0..count {
            let pick = rng.below(view.classes.len() as u64) as usize;
            let class = view.classes[pick];
            let list = &self.by_class[view.set][class];
            let index = list[rng.below(list.len() as u64) as usize] as usize;
            x.extend_from_slice(set.example(index));
            y.push(if small { class as u8 } else { pick as u8 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, classes: usize, per_class: usize, value: f32) -> Arc<ImageSet> {
        let n = classes * per_class;
        Arc::new(ImageSet {
            name: name.into(),
            // Feature 0 identifies the dataset, feature 1 the class.
            x: (0..n).flat_map(|i| [value, (i % classes) as f32]).collect(),
            labels: (0..n).map(|i| (i % classes) as u8).collect(),
            n_x: 2,
            classes,
            source: name.into(),
        })
    }

    #[test]
    fn many_class_views_pick_ten_distinct_classes_and_relabel_them() {
        let pool = ImagePool::new(vec![set("omni", 40, 3, 0.0)]).unwrap();
        let mut rng = Rng::new(1);
        let view = pool.draw_view(&mut rng);
        assert_eq!(view.classes.len(), NUM_CLASSES);
        let mut distinct = view.classes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), NUM_CLASSES);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        pool.draw_examples(&view, 200, &mut rng, &mut x, &mut y);
        for (label, features) in y.iter().zip(x.chunks(2)) {
            assert!((*label as usize) < NUM_CLASSES);
            assert_eq!(features[1] as usize, view.classes[*label as usize]);
        }
    }

    #[test]
    fn the_same_task_id_always_sees_the_same_view() {
        let pool = ImagePool::new(vec![set("a", 30, 2, 0.0), set("b", 10, 2, 1.0)]).unwrap();
        let family = crate::task::TaskFamily::new(5, 2, 0.0);
        let views: Vec<TaskView> = (0..20)
            .map(|id| pool.draw_view(&mut family.view_rng(id)))
            .collect();
        let again: Vec<TaskView> = (0..20)
            .map(|id| pool.draw_view(&mut family.view_rng(id)))
            .collect();
        assert_eq!(views, again);
        assert!(views.iter().any(|v| v.set == 0) && views.iter().any(|v| v.set == 1));
        assert!(views.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn mixture_weights_hold_over_many_draws() {
        let pool = ImagePool::new(vec![set("a", 10, 2, 0.0), set("b", 10, 2, 1.0)])
            .unwrap()
            .with_weights(&[3.0, 1.0])
            .unwrap();
        let family = crate::task::TaskFamily::new(0, 2, 0.0);
        let draws = 20_000;
        let from_b = (0..draws)
            .filter(|&id| pool.draw_view(&mut family.view_rng(id)).set == 1)
            .count();
        let share = from_b as f64 / draws as f64;
        // 0.25 ± 4 standard errors (0.003).
        assert!((share - 0.25).abs() < 0.012, "share of b: {share}");
        let never_b = ImagePool::new(vec![set("a", 10, 2, 0.0), set("b", 10, 2, 1.0)])
            .unwrap()
            .with_weights(&[1.0, 0.0])
            .unwrap();
        assert!((0..500).all(|id| never_b.draw_view(&mut family.view_rng(id)).set == 0));
        let err = ImagePool::new(vec![set("a", 10, 2, 0.0)])
            .unwrap()
            .with_weights(&[1.0, 2.0])
            .unwrap_err();
        assert!(err.to_string().contains("data.weights"), "{err}");
    }

    #[test]
    fn mixtures_keep_the_labels_of_ten_class_datasets() {
        let pool = ImagePool::new(vec![set("a", 10, 2, 0.0), set("b", 10, 2, 1.0)]).unwrap();
        assert_eq!(pool.name(), "a+b");
        let mut rng = Rng::new(3);
        for _ in 0..10 {
            let view = pool.draw_view(&mut rng);
            assert_eq!(view.classes, (0..10).collect::<Vec<_>>());
            let (mut x, mut y) = (Vec::new(), Vec::new());
            pool.draw_examples(&view, 50, &mut rng, &mut x, &mut y);
            for (label, features) in y.iter().zip(x.chunks(2)) {
                assert_eq!(features[0], view.set as f32, "one dataset per view");
                assert_eq!(features[1] as u8, *label);
            }
        }
    }

    #[test]
    fn mixtures_of_different_sizes_are_refused() {
        let mut odd = (*set("odd", 10, 1, 0.0)).clone();
        odd.n_x = 1;
        odd.x.truncate(10);
        let err = ImagePool::new(vec![set("a", 10, 1, 0.0), Arc::new(odd)]).unwrap_err();
        assert!(err.to_string().contains("data.image_size"), "{err}");
    }
}
