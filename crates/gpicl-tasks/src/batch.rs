//! Sequence batches: the features `x_t` and labels `y_t` of every example
//! (models read them as tokens: `gpicl_models::tokens`).

use crate::catalog::fixed_statistics;
use crate::config::DataConfig;
use crate::config::{Echo, FeatureNormalization, Normalization};
use crate::dataset::{feature_count, DataRoots, ImageSet, Split, RANDOM_DATASET};
use crate::error::{Result, TaskError};
use crate::pool::ImagePool;
use crate::spec::dataset_names;
use crate::table_features::TableOptions;
use crate::tabular::{SyntheticTable, TABULAR_DATASET};
use crate::task::{TaskFamily, TaskRef};
use crate::NUM_CLASSES;
use gpicl_kernels::rng::Rng;
use gpicl_kernels::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where a sequence's examples come from.
#[derive(Clone, Debug)]
pub enum ExampleSource {
    /// A real dataset split with at most 10 classes, read as a shuffled
    /// stream.
    Images(Arc<ImageSet>),
    /// Several datasets, or one with more than 10 classes: each task slot
    /// draws from its own view ([`crate::pool`]).
    Pool(Arc<ImagePool>),
    /// The synthetic dataset: per task slot, 10 images uniform in `[0, 1]`
    /// where image `i` has label `i`; sequences draw from them with
    /// replacement.
    Random {
        /// Features per image (the task's input size).
        n_x: usize,
    },
    /// Synthetic tables ([`crate::tabular`]): per task slot, a fresh
    /// table; each sequence reads its rows through its own projection.
    Tabular {
        /// The model's input size.
        n_x: usize,
        /// How the tables are drawn and their rows read before their projection.
        options: TableOptions,
    },
}

impl ExampleSource {
    /// The name used in reports.
    pub fn name(&self) -> &str {
        match self {
            ExampleSource::Images(set) => &set.name,
            ExampleSource::Pool(pool) => pool.name(),
            ExampleSource::Random { .. } => RANDOM_DATASET,
            ExampleSource::Tabular { .. } => TABULAR_DATASET,
        }
    }

    /// Number of real examples (0 for `random`); a resumed run must see
    /// the same number.
    pub fn examples(&self) -> usize {
        match self {
            ExampleSource::Images(set) => set.len(),
            ExampleSource::Pool(pool) => pool.examples(),
            ExampleSource::Random { .. } | ExampleSource::Tabular { .. } => 0,
        }
    }

    /// The shuffled stream a batch builder reads this source's examples
    /// from, continuing at `state`; `None` for sources that draw their
    /// examples per task slot (pools and the synthetic datasets). The one
    /// place that decides which sources stream.
    pub fn stream(&self, state: StreamState) -> Option<ExampleStream> {
        match self {
            ExampleSource::Images(set) => Some(ExampleStream::new(set.len(), state)),
            ExampleSource::Pool(_)
            | ExampleSource::Random { .. }
            | ExampleSource::Tabular { .. } => None,
        }
    }

    /// Features per example.
    pub fn n_x(&self) -> usize {
        match self {
            ExampleSource::Images(set) => set.n_x,
            ExampleSource::Pool(pool) => pool.n_x(),
            ExampleSource::Random { n_x } | ExampleSource::Tabular { n_x, .. } => *n_x,
        }
    }
}

/// Position in a shuffled pass over a dataset: sequences are consecutive
/// runs of a stream that reshuffles every epoch. Saved in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Seed of the shuffles; epoch `e` is shuffled by stream `(seed, e)`.
    pub seed: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Next position within the epoch's order.
    pub cursor: usize,
    /// Examples in the dataset the stream runs over; a resumed stream must
    /// see the same dataset.
    pub examples: usize,
}

/// A reshuffling stream of example indices.
pub struct ExampleStream {
    state: StreamState,
    order: Vec<usize>,
    len: usize,
}

impl ExampleStream {
    /// A stream over `len` examples resuming at `state`.
    pub fn new(len: usize, state: StreamState) -> Self {
        let mut s = Self {
            order: Vec::new(),
            state,
            len,
        };
        s.order = s.shuffled(s.state.epoch);
        s
    }

    fn shuffled(&self, epoch: u64) -> Vec<usize> {
        Rng::from_stream(self.state.seed, &[0x5EED, epoch]).permutation(self.len)
    }

    /// The next `n` indices.
    pub fn take(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.state.cursor >= self.len {
                self.state.epoch += 1;
                self.state.cursor = 0;
                self.order = self.shuffled(self.state.epoch);
            }
            out.push(self.order[self.state.cursor]);
            self.state.cursor += 1;
        }
        out
    }

    /// The state to save.
    pub fn state(&self) -> &StreamState {
        &self.state
    }
}

/// A batch of sequences ready for a model.
pub struct Batch {
    /// The examples' features, `[sequences, seq_len, n_x]` (each model
    /// reads them with the labels as its tokens: `gpicl_models::tokens`).
    pub inputs: Tensor,
    /// The examples' labels after each task's permutation,
    /// `[sequences, seq_len]`, dtype u32: the context of later positions
    /// and the target of their own.
    pub labels: Tensor,
    /// The transformation of each sequence.
    pub tasks: Vec<TaskRef>,
}

/// Turns task assignments and example draws into token tensors.
pub struct BatchBuilder {
    family: TaskFamily,
    normalization: Normalization,
    feature_normalization: FeatureNormalization,
    echo: Echo,
    seq_len: usize,
    device: Device,
}

impl BatchBuilder {
    /// A builder for sequences of `seq_len` examples.
    pub fn new(
        family: TaskFamily,
        normalization: Normalization,
        seq_len: usize,
        device: Device,
    ) -> Self {
        Self {
            family,
            normalization,
            feature_normalization: FeatureNormalization::None,
            echo: Echo::OFF,
            seq_len,
            device,
        }
    }

    /// Normalises each sequence's projected inputs as `feature_normalization`
    /// says (`data.feature_normalization`).
    pub fn with_feature_normalization(
        mut self,
        feature_normalization: FeatureNormalization,
    ) -> Self {
        self.feature_normalization = feature_normalization;
        self
    }

    /// The task family.
    pub fn family(&self) -> &TaskFamily {
        &self.family
    }

    /// Builds sequences of `seq_len` examples from now on (a curriculum).
    pub fn set_seq_len(&mut self, seq_len: usize) {
        self.seq_len = seq_len;
    }

    /// Builds echo sequences (`data.echo_*`) from now on; `Echo::OFF`
    /// stops them. Only the training sampler sets this.
    pub fn set_echo(&mut self, echo: Echo) {
        self.echo = echo;
    }

    /// Builds a batch with one sequence per entry of `tasks`. Consecutive
    /// equal entries form a slot (they share the random dataset's images).
    /// `rng` draws random-dataset images and examples; `stream` supplies
    /// real examples.
    pub fn build(
        &self,
        source: &ExampleSource,
        tasks: &[TaskRef],
        stream: Option<&mut ExampleStream>,
        rng: &mut Rng,
    ) -> Result<Batch> {
        let (t, n_x) = (self.seq_len, source.n_x());
        let b = tasks.len();
        let mut x = Vec::with_capacity(b * t * n_x);
        let mut y: Vec<u8> = Vec::with_capacity(b * t);
        let slots = slots(tasks);
        match source {
            ExampleSource::Images(set) => {
                if set.classes > NUM_CLASSES {
                    return Err(TaskError::config(
                        "data.dataset",
                        format!(
                            "`{}` has {} classes: load it with `batch::load_example_source` so that tasks draw 10 of them",
                            set.name, set.classes
                        ),
                    ));
                }
                let stream = stream.ok_or_else(|| {
                    TaskError::config("data.dataset", "a real dataset needs an example stream")
                })?;
                for _ in 0..b {
                    for i in stream.take(t) {
                        x.extend_from_slice(set.example(i));
                        y.push(set.labels[i]);
                    }
                }
            }
            ExampleSource::Pool(pool) => {
                for &(task, start, end) in &slots {
                    let view = match task.projection.or(task.permutation) {
                        Some(id) => pool.draw_view(&mut self.family.view_rng(id)),
                        None => pool.draw_view(rng),
                    };
                    pool.draw_examples(&view, (end - start) * t, rng, &mut x, &mut y);
                }
            }
            ExampleSource::Random { n_x } => {
                for &(_, start, end) in &slots {
                    let images: Vec<f32> = (0..NUM_CLASSES * n_x)
                        .map(|_| rng.uniform() as f32)
                        .collect();
                    for _ in start..end {
                        for _ in 0..t {
                            let label = rng.below(NUM_CLASSES as u64) as usize;
                            x.extend_from_slice(&images[label * n_x..(label + 1) * n_x]);
                            y.push(label as u8);
                        }
                    }
                }
            }
            ExampleSource::Tabular { n_x, options } => {
                for &(_, start, end) in &slots {
                    let table = SyntheticTable::draw_with(*n_x, options.messy_fraction, rng);
                    // Drawn only when asked for, so that tables read
                    // without squares draw what they drew before.
                    let squares =
                        options.squares_fraction > 0.0 && rng.uniform() < options.squares_fraction;
                    for _ in start..end {
                        let (rows, labels) = table.sample_rows(t, *n_x, options.clip, squares, rng);
                        x.extend(rows);
                        y.extend(labels);
                    }
                }
            }
        }
        if self.echo.is_on() {
            echo_examples(&self.echo, &mut x, &mut y, t, n_x, rng);
        }
        self.normalize(source, &mut x);
        let mut x = self.project(&slots, x, n_x)?;
        if self.feature_normalization == FeatureNormalization::PerSequence {
            for seq in x.chunks_exact_mut(t * n_x) {
                FeatureStatistics::over(seq, n_x).apply(seq);
            }
        }

        let mut labels = Vec::with_capacity(b * t);
        for &(task, start, end) in &slots {
            let perm = task.permutation.map(|id| self.family.permutation(id));
            for &label in &y[start * t..end * t] {
                let label = label as usize;
                labels.push(perm.map_or(label, |p| p[label] as usize) as u32);
            }
        }
        Ok(Batch {
            inputs: Tensor::from_vec(x, (b, t, n_x), &self.device)?,
            labels: Tensor::from_vec(labels, (b, t), &self.device)?,
            tasks: tasks.to_vec(),
        })
    }

    fn normalize(&self, source: &ExampleSource, x: &mut [f32]) {
        let (mean, std) = match self.normalization {
            Normalization::None => return,
            Normalization::PerBatch => mean_std(x),
            Normalization::Fixed => match (fixed_statistics(source.name()), source) {
                (Some(stats), _) => stats,
                (None, ExampleSource::Images(set)) => mean_std(&set.x),
                (None, ExampleSource::Pool(pool)) => pool.mean_std(),
                (None, ExampleSource::Random { .. } | ExampleSource::Tabular { .. }) => mean_std(x),
            },
        };
        let inv = 1.0 / (std + 1e-8);
        x.iter_mut().for_each(|v| *v = (*v - mean) * inv);
    }

    /// Applies each slot's projection and bias: `x ← A x + b`.
    fn project(
        &self,
        slots: &[(TaskRef, usize, usize)],
        x: Vec<f32>,
        n_x: usize,
    ) -> Result<Vec<f32>> {
        if slots.iter().all(|(task, _, _)| task.projection.is_none()) {
            return Ok(x);
        }
        let rows_per_seq = self.seq_len;
        let mut out = Vec::with_capacity(x.len());
        for &(task, start, end) in slots {
            let chunk = &x[start * rows_per_seq * n_x..end * rows_per_seq * n_x];
            match task.projection {
                None => out.extend_from_slice(chunk),
                Some(id) => {
                    let rows = chunk.len() / n_x;
                    let input = Tensor::from_slice(chunk, (rows, n_x), &Device::Cpu)?;
                    let a = Tensor::from_vec(self.family.projection(id), (n_x, n_x), &Device::Cpu)?;
                    let mut projected = input.matmul(&a.t()?)?;
                    if let Some(bias) = self.family.bias(id) {
                        projected =
                            projected.broadcast_add(&Tensor::from_vec(bias, n_x, &Device::Cpu)?)?;
                    }
                    out.extend(projected.flatten_all()?.to_vec1::<f32>()?);
                }
            }
        }
        Ok(out)
    }
}

/// Turns a share of the sequences into echo sequences: each position from
/// `lag` on repeats, with probability `prob`, the raw example `lag`
/// positions back (or a lag drawn from `lag..=max_lag`) (before normalisation and projection, so the repeat is
/// exact in every task's view).
fn echo_examples(echo: &Echo, x: &mut [f32], y: &mut [u8], t: usize, n_x: usize, rng: &mut Rng) {
    for (xs, ys) in x.chunks_exact_mut(t * n_x).zip(y.chunks_exact_mut(t)) {
        if rng.uniform() >= echo.fraction {
            continue;
        }
        for step in echo.lag..t {
            if rng.uniform() < echo.prob {
                let longest = echo.max_lag.min(step);
                let lag = if longest > echo.lag {
                    echo.lag + rng.below((longest - echo.lag + 1) as u64) as usize
                } else {
                    echo.lag
                };
                let from = step - lag;
                ys[step] = ys[from];
                xs.copy_within(from * n_x..(from + 1) * n_x, step * n_x);
            }
        }
    }
}

/// Runs of equal consecutive task assignments: `(task, first, end)`.
fn slots(tasks: &[TaskRef]) -> Vec<(TaskRef, usize, usize)> {
    let mut out: Vec<(TaskRef, usize, usize)> = Vec::new();
    for (i, &task) in tasks.iter().enumerate() {
        match out.last_mut() {
            Some(last) if last.0 == task => last.2 = i + 1,
            _ => out.push((task, i, i + 1)),
        }
    }
    out
}

/// Per-feature mean and inverse spread of a set of rows: what
/// `data.feature_normalization = "per-sequence"` z-scores a sequence's
/// projected inputs with, `(x - mean)/(std + 1e-8)` per feature.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStatistics {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
}

impl FeatureStatistics {
    /// The statistics of `rows` (`[positions, n_x]` row-major) over the positions.
    pub fn over(rows: &[f32], n_x: usize) -> Self {
        let n = (rows.len() / n_x.max(1)).max(1) as f64;
        let mut mean = vec![0f64; n_x];
        for row in rows.chunks_exact(n_x) {
            row.iter().zip(&mut mean).for_each(|(&v, m)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; n_x];
        for row in rows.chunks_exact(n_x) {
            for ((&v, m), s) in row.iter().zip(&mean).zip(&mut var) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let inv_std = var.iter().map(|s| 1.0 / ((s / n).sqrt() + 1e-8)).collect();
        Self { mean, inv_std }
    }

    /// Z-scores every row of `rows` (`[positions, n_x]` row-major) in place.
    pub fn apply(&self, rows: &mut [f32]) {
        for row in rows.chunks_exact_mut(self.mean.len()) {
            for ((v, m), i) in row.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                *v = ((*v as f64 - m) * i) as f32;
            }
        }
    }
}

fn mean_std(x: &[f32]) -> (f32, f32) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt() as f32)
}

/// Loads what `--dataset` names: `random`, one dataset, or a
/// comma-separated mixture. One dataset with at most 10 classes is read as
/// a shuffled stream ([`ExampleSource::Images`]); a mixture or a dataset
/// with more classes becomes a pool ([`ExampleSource::Pool`]).
pub fn load_example_source(
    roots: &DataRoots,
    spec: &str,
    split: Split,
    cfg: &DataConfig,
) -> Result<ExampleSource> {
    let names = dataset_names(spec)?;
    if names == [RANDOM_DATASET] || names == [TABULAR_DATASET] {
        let n_x = feature_count(&DataConfig {
            dataset: RANDOM_DATASET.into(),
            ..cfg.clone()
        })?;
        return Ok(if names == [RANDOM_DATASET] {
            ExampleSource::Random { n_x }
        } else {
            // Tables are read at the input size images of this config have.
            ExampleSource::Tabular {
                n_x,
                options: cfg.table_options(),
            }
        });
    }
    let sets = names
        .iter()
        .map(|name| ImageSet::load(roots, name, split, cfg).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    if sets.len() == 1 && sets[0].classes <= NUM_CLASSES && cfg.weights.len() <= 1 {
        return Ok(ExampleSource::Images(
            sets.into_iter().next().expect("one set"),
        ));
    }
    Ok(ExampleSource::Pool(Arc::new(
        ImagePool::new(sets)?.with_weights(&cfg.weights)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_set() -> Arc<ImageSet> {
        // Example i has features [i, i] and label i % 10.
        Arc::new(ImageSet {
            name: "tiny".into(),
            x: (0..40).flat_map(|i| [i as f32, i as f32]).collect(),
            labels: (0..40).map(|i| (i % 10) as u8).collect(),
            n_x: 2,
            classes: 10,
            source: "tiny".into(),
        })
    }

    /// A stream over `len` examples at the start of its first epoch.
    fn fresh_stream(len: usize, seed: u64) -> ExampleStream {
        ExampleStream::new(
            len,
            StreamState {
                seed,
                epoch: 0,
                cursor: 0,
                examples: 0,
            },
        )
    }

    fn builder(t: usize) -> BatchBuilder {
        BatchBuilder::new(
            TaskFamily::new(0, 2, 0.0),
            Normalization::None,
            t,
            Device::Cpu,
        )
    }

    #[test]
    fn a_batch_holds_each_examples_features_and_label() {
        let set = tiny_set();
        let mut stream = fresh_stream(set.len(), 1);
        let tasks = vec![TaskRef::IDENTITY; 3];
        let batch = builder(5)
            .build(
                &ExampleSource::Images(set.clone()),
                &tasks,
                Some(&mut stream),
                &mut Rng::new(0),
            )
            .unwrap();
        assert_eq!(batch.inputs.dims(), &[3, 5, 2]);
        assert_eq!(batch.labels.dims(), &[3, 5]);
        let inputs: Vec<Vec<Vec<f32>>> = batch.inputs.to_vec3().unwrap();
        let labels: Vec<Vec<u32>> = batch.labels.to_vec2().unwrap();
        for (seq, labels) in inputs.iter().zip(&labels) {
            for t in 0..5 {
                // Identity task: the label is the example's own.
                let example = seq[t][0] as usize;
                assert_eq!(labels[t], (example % 10) as u32);
            }
        }
    }

    #[test]
    fn per_sequence_feature_normalisation_centres_and_scales_each_sequence_feature() {
        let set = tiny_set();
        let stream = || fresh_stream(set.len(), 1);
        let tasks = vec![
            TaskRef {
                projection: Some(3),
                permutation: None
            };
            2
        ];
        let build = |builder: BatchBuilder| {
            builder
                .build(
                    &ExampleSource::Images(set.clone()),
                    &tasks,
                    Some(&mut stream()),
                    &mut Rng::new(0),
                )
                .unwrap()
        };
        let plain = build(builder(6));
        let normed =
            build(builder(6).with_feature_normalization(FeatureNormalization::PerSequence));
        let inputs: Vec<Vec<Vec<f32>>> = normed.inputs.to_vec3().unwrap();
        let raw: Vec<Vec<Vec<f32>>> = plain.inputs.to_vec3().unwrap();
        for (seq, raw_seq) in inputs.iter().zip(&raw) {
            for f in 0..2 {
                let column: Vec<f64> = seq.iter().map(|token| token[f] as f64).collect();
                let mean = column.iter().sum::<f64>() / 6.0;
                let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0;
                assert!(mean.abs() < 1e-5, "feature {f} mean {mean}");
                assert!((var - 1.0).abs() < 1e-4, "feature {f} variance {var}");
            }
            assert_ne!(seq, raw_seq, "the features are rescaled");
        }
        // Labels are untouched; only the inputs are rescaled.
        assert_eq!(
            normed.labels.to_vec2::<u32>().unwrap(),
            plain.labels.to_vec2::<u32>().unwrap()
        );
    }

    #[test]
    fn feature_statistics_of_a_context_apply_to_other_rows() {
        let context = [1.0f32, 10.0, 3.0, 30.0];
        let stats = FeatureStatistics::over(&context, 2);
        let mut query = [2.0f32, 20.0, 5.0, 0.0];
        stats.apply(&mut query);
        // Feature 0: mean 2, std 1; feature 1: mean 20, std 10.
        let expected = [0.0, 0.0, 3.0, -2.0];
        for (got, want) in query.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{query:?}");
        }
    }

    #[test]
    fn permuted_tasks_relabel_consistently() {
        let set = tiny_set();
        let family = TaskFamily::new(0, 2, 0.0);
        let perm = family.permutation(4);
        let mut stream = fresh_stream(set.len(), 1);
        let tasks = vec![
            TaskRef {
                projection: None,
                permutation: Some(4)
            };
            2
        ];
        let batch = builder(6)
            .build(
                &ExampleSource::Images(set),
                &tasks,
                Some(&mut stream),
                &mut Rng::new(0),
            )
            .unwrap();
        let inputs: Vec<Vec<Vec<f32>>> = batch.inputs.to_vec3().unwrap();
        let targets: Vec<Vec<u32>> = batch.labels.to_vec2().unwrap();
        for (seq, labels) in inputs.iter().zip(&targets) {
            for t in 0..6 {
                assert_eq!(labels[t], perm[seq[t][0] as usize % 10] as u32);
            }
        }
    }

    #[test]
    fn projection_is_a_x_with_the_tasks_matrix() {
        let set = tiny_set();
        let family = TaskFamily::new(0, 2, 0.0);
        let a = family.projection(3);
        let mut stream = fresh_stream(set.len(), 2);
        let tasks = vec![TaskRef::task(3, false)];
        let batch = builder(4)
            .build(
                &ExampleSource::Images(set),
                &tasks,
                Some(&mut stream),
                &mut Rng::new(0),
            )
            .unwrap();
        let inputs: Vec<Vec<Vec<f32>>> = batch.inputs.to_vec3().unwrap();
        let targets: Vec<Vec<u32>> = batch.labels.to_vec2().unwrap();
        for t in 0..4 {
            // Recover the example from its label stream position: x = [i, i].
            let x = inputs[0][t][0];
            let i = ((x / (a[0] + a[1])).round()) as usize;
            assert_eq!(targets[0][t], (i % 10) as u32);
            assert!((inputs[0][t][1] - (a[2] + a[3]) * i as f32).abs() < 1e-3);
        }
    }

    #[test]
    fn per_batch_normalisation_gives_zero_mean_unit_std() {
        let mut x: Vec<f32> = (0..100).map(|i| i as f32 / 7.0).collect();
        let b = BatchBuilder::new(
            TaskFamily::new(0, 1, 0.0),
            Normalization::PerBatch,
            1,
            Device::Cpu,
        );
        b.normalize(&ExampleSource::Random { n_x: 1 }, &mut x);
        let (mean, std) = mean_std(&x);
        assert!(mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-4);
    }

    #[test]
    fn random_dataset_sequences_reuse_ten_images_with_labels_zero_to_nine() {
        let batch = builder(50)
            .build(
                &ExampleSource::Random { n_x: 3 },
                &[TaskRef::IDENTITY; 2],
                None,
                &mut Rng::new(5),
            )
            .unwrap();
        let inputs: Vec<Vec<Vec<f32>>> = batch.inputs.to_vec3().unwrap();
        let targets: Vec<Vec<u32>> = batch.labels.to_vec2().unwrap();
        let mut image_of = std::collections::HashMap::new();
        for t in 0..50 {
            let key: Vec<u32> = inputs[0][t][..3].iter().map(|v| v.to_bits()).collect();
            let prev = image_of.insert(targets[0][t], key.clone());
            assert!(
                prev.is_none_or(|p| p == key),
                "label {} has one image",
                targets[0][t]
            );
        }
        assert!(image_of.len() <= 10);
    }

    /// A batch of `b` identity-task sequences of 12 tiny-set examples.
    fn tiny_batch(
        builder: &BatchBuilder,
        b: usize,
        seed: u64,
    ) -> (Vec<Vec<Vec<f32>>>, Vec<Vec<u32>>) {
        let set = tiny_set();
        let mut stream = fresh_stream(set.len(), 1);
        let batch = builder
            .build(
                &ExampleSource::Images(set),
                &vec![TaskRef::IDENTITY; b],
                Some(&mut stream),
                &mut Rng::new(seed),
            )
            .unwrap();
        (
            batch.inputs.to_vec3().unwrap(),
            batch.labels.to_vec2().unwrap(),
        )
    }

    #[test]
    fn echo_sequences_repeat_the_example_two_positions_back() {
        let mut b = builder(12);
        b.set_echo(Echo {
            fraction: 1.0,
            prob: 1.0,
            lag: 2,
            max_lag: 2,
        });
        let (inputs, targets) = tiny_batch(&b, 3, 0);
        for (seq, labels) in inputs.iter().zip(&targets) {
            for t in 2..12 {
                assert_eq!(
                    seq[t][..2],
                    seq[t - 2][..2],
                    "input at {t} echoes {}",
                    t - 2
                );
                assert_eq!(labels[t], labels[t - 2], "label at {t} echoes {}", t - 2);
            }
            assert_ne!(
                seq[0][..2],
                seq[1][..2],
                "the first two positions are drawn"
            );
        }
    }

    #[test]
    fn echoes_with_a_longest_lag_repeat_examples_from_many_distances() {
        let mut b = builder(30);
        b.set_echo(Echo {
            fraction: 1.0,
            prob: 1.0,
            lag: 2,
            max_lag: 6,
        });
        let (inputs, targets) = tiny_batch(&b, 8, 1);
        let mut lags_seen = std::collections::BTreeSet::new();
        for (seq, labels) in inputs.iter().zip(&targets) {
            for t in 2..30 {
                // Every position repeats one of the 2..=6 positions before it.
                let lag = (2..=6.min(t))
                    .find(|&lag| seq[t][..2] == seq[t - lag][..2])
                    .unwrap_or_else(|| panic!("position {t} repeats no earlier example"));
                assert_eq!(labels[t], labels[t - lag]);
                lags_seen.insert(lag);
            }
        }
        assert!(lags_seen.len() >= 4, "lags drawn: {lags_seen:?}");
    }

    #[test]
    fn echo_touches_only_its_share_of_sequences_and_only_when_on() {
        let plain = tiny_batch(&builder(12), 40, 3);
        let mut b = builder(12);
        b.set_echo(Echo::OFF);
        assert_eq!(
            tiny_batch(&b, 40, 3),
            plain,
            "echo off leaves batches bit-identical"
        );
        b.set_echo(Echo {
            fraction: 0.5,
            prob: 1.0,
            lag: 2,
            max_lag: 2,
        });
        let (inputs, _) = tiny_batch(&b, 40, 3);
        let echoing = inputs
            .iter()
            .filter(|seq| (2..12).all(|t| seq[t][..2] == seq[t - 2][..2]))
            .count();
        assert!(
            (10..=30).contains(&echoing),
            "about half of 40 sequences echo, got {echoing}"
        );
    }

    #[test]
    fn the_example_stream_covers_every_example_once_per_epoch() {
        let mut s = fresh_stream(7, 3);
        let mut first = s.take(7);
        first.sort();
        assert_eq!(first, (0..7).collect::<Vec<_>>());
        assert_eq!(s.state().epoch, 0);
        s.take(1);
        assert_eq!(s.state().epoch, 1);
    }
}
