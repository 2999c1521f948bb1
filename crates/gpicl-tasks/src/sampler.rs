//! The meta-training distribution: which tasks and examples each step sees.

use crate::batch::{Batch, BatchBuilder, ExampleSource, ExampleStream, StreamState};
use crate::config::{BatchConfig, Echo, PermutationMask, TaskConfig};
use crate::error::{Result, TaskError};
use crate::table_features::TableOptions;
use crate::task::TaskRef;
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::Tensor;
use serde::{Deserialize, Serialize};

/// The task whose label permutation every slot of the biased share uses
/// (`tasks.fixed_permutation_fraction`).
pub const FIXED_PERMUTATION_TASK: i64 = 0;

/// Everything needed to continue the training distribution exactly where
/// it stopped. Saved in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// State of the generator that draws task ids and random images.
    pub rng: [u64; 4],
    /// Position in the shuffled example stream.
    pub stream: StreamState,
}

/// Draws meta-training batches from the train split.
pub struct TrainSampler {
    tasks: TaskConfig,
    batch: BatchConfig,
    builder: BatchBuilder,
    source: ExampleSource,
    rng: Rng,
    stream: Option<ExampleStream>,
    random_fraction: f64,
    tabular_fraction: f64,
    options: TableOptions,
}

impl TrainSampler {
    /// A sampler starting from the beginning of run `seed`'s distribution.
    pub fn new(
        tasks: TaskConfig,
        batch: BatchConfig,
        builder: BatchBuilder,
        source: ExampleSource,
        seed: u64,
    ) -> Self {
        let examples = source.examples();
        let stream = StreamState {
            seed: Rng::from_stream(seed, &[stream::TRAIN_DATA, 1]).next_u64(),
            epoch: 0,
            cursor: 0,
            examples,
        };
        let state = SamplerState {
            rng: Rng::from_stream(seed, &[stream::TRAIN_DATA]).state(),
            stream,
        };
        Self::resume(tasks, batch, builder, source, state)
            .expect("a fresh state fits its own dataset")
    }

    /// A sampler continuing from a saved state. The dataset must be the one
    /// the state was saved with (same number of examples), or the resumed
    /// run would silently read other data.
    pub fn resume(
        tasks: TaskConfig,
        batch: BatchConfig,
        builder: BatchBuilder,
        source: ExampleSource,
        state: SamplerState,
    ) -> Result<Self> {
        if state.stream.examples != source.examples() {
            let path = match &source {
                ExampleSource::Images(set) => set.source.clone(),
                ExampleSource::Pool(pool) => pool.sets()[0].source.clone(),
                ExampleSource::Random { .. } | ExampleSource::Tabular { .. } => {
                    source.name().into()
                }
            };
            return Err(TaskError::Corrupt {
                path,
                reason: format!(
                    "the run was trained on a copy of `{}` with {} examples, this one has {}: resume with the same --data-dir",
                    source.name(),
                    state.stream.examples,
                    source.examples()
                ),
            });
        }
        let stream = source.stream(state.stream);
        Ok(Self {
            tasks,
            batch,
            builder,
            source,
            rng: Rng::from_state(state.rng),
            stream,
            random_fraction: 0.0,
            tabular_fraction: 0.0,
            options: TableOptions::default(),
        })
    }

    /// Sends this fraction of every step's task slots to the synthetic
    /// `random` dataset (`data.random_fraction`).
    pub fn with_random_fraction(mut self, fraction: f64) -> Self {
        self.random_fraction = fraction;
        self
    }

    /// Sends this fraction of every step's task slots to synthetic tables
    /// (`data.tabular_fraction`), placed before the `random` slots.
    pub fn with_tabular_fraction(mut self, fraction: f64) -> Self {
        self.tabular_fraction = fraction;
        self
    }

    /// Reads the synthetic tables this way (`data.tabular_clip`,
    /// `data.tabular_squares_fraction`; default: z-scores only).
    pub fn with_table_options(mut self, options: TableOptions) -> Self {
        self.options = options;
        self
    }

    /// Draws sequences of `seq_len` examples from now on
    /// (`batch.curriculum_start_len`).
    pub fn set_seq_len(&mut self, seq_len: usize) {
        self.builder.set_seq_len(seq_len);
    }

    /// Draws echo sequences as `echo` says from now on (`data.echo_*`).
    pub fn set_echo(&mut self, echo: Echo) {
        self.builder.set_echo(echo);
    }

    /// `fraction · total`, rounded down or up at random so that its mean is
    /// exact; draws nothing when it is whole.
    fn count_of(&mut self, fraction: f64, total: usize) -> usize {
        let exact = fraction * total as f64;
        let whole = exact.floor();
        let rest = exact - whole;
        let up = rest > 1e-9 && self.rng.uniform() < rest;
        (whole as usize + usize::from(up)).min(total)
    }

    /// Puts the distribution back to a saved position (after a failed step).
    pub fn restore(&mut self, state: SamplerState) {
        self.rng = Rng::from_state(state.rng);
        if let Some(stream) = self.stream.as_mut() {
            let len = stream.state().examples;
            *stream = ExampleStream::new(len, state.stream);
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            rng: self.rng.state(),
            stream: self
                .stream
                .as_ref()
                .map(|s| s.state().clone())
                .unwrap_or(StreamState {
                    seed: 0,
                    epoch: 0,
                    cursor: 0,
                    examples: self.source.examples(),
                }),
        }
    }

    /// How many sequences at the start of every batch come from the fixed
    /// task 0 of a biased distribution (`tasks.single_task_fraction`).
    pub fn fixed_task_sequences(&self) -> usize {
        if self.tasks.num_tasks == 0 {
            return 0;
        }
        (self.tasks.single_task_fraction * self.batch.sequences() as f64).round() as usize
    }

    /// Task assignment of each sequence of the next batch.
    pub fn draw_tasks(&mut self) -> Vec<TaskRef> {
        let cfg = self.tasks.clone();
        let mut tasks = Vec::with_capacity(self.batch.sequences());
        for _ in 0..self.batch.tasks_per_step {
            let task = if cfg.num_tasks == 0 {
                TaskRef::IDENTITY
            } else {
                let id = if self.rng.uniform() < cfg.project_prob {
                    self.rng.below(cfg.num_tasks) as i64
                } else {
                    0
                };
                let permute = match cfg.permutation_mask {
                    PermutationMask::PerSlot => self.rng.uniform() < cfg.permute_labels_prob,
                    PermutationMask::PerTask => {
                        self.builder.family().permutation_draw(id) < cfg.permute_labels_prob
                    }
                };
                TaskRef::task(id, permute)
            };
            tasks.extend(std::iter::repeat_n(task, self.batch.seqs_per_task));
        }
        if cfg.fixed_permutation_fraction > 0.0 && cfg.num_tasks > 0 {
            let fraction = cfg.fixed_permutation_fraction;
            let slots = self.count_of(fraction, self.batch.tasks_per_step);
            tasks[..slots * self.batch.seqs_per_task]
                .iter_mut()
                .for_each(|t| t.permutation = Some(FIXED_PERMUTATION_TASK));
        }
        let fixed = self.fixed_task_sequences();
        if fixed > 0 {
            let task0 = TaskRef::task(0, cfg.permute_labels_prob > 0.0);
            tasks[..fixed].iter_mut().for_each(|t| *t = task0);
        }
        tasks
    }

    /// The next meta-training batch. With `data.tabular_fraction` and
    /// `data.random_fraction`, its last slots hold synthetic-table and then
    /// `random`-dataset sequences.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let tasks = self.draw_tasks();
        let slots = self.batch.tasks_per_step;
        let random_slots = if self.random_fraction > 0.0 {
            self.count_of(self.random_fraction, slots)
        } else {
            0
        };
        let tabular_slots = if self.tabular_fraction > 0.0 {
            self.count_of(self.tabular_fraction, slots)
                .min(slots - random_slots)
        } else {
            0
        };
        if random_slots == 0 && tabular_slots == 0 {
            return self
                .builder
                .build(&self.source, &tasks, self.stream.as_mut(), &mut self.rng);
        }
        let per_slot = self.batch.seqs_per_task;
        let random_from = (slots - random_slots) * per_slot;
        let tabular_from = random_from - tabular_slots * per_slot;
        let n_x = self.source.n_x();
        // Built in this order (random, tables, the dataset) so that a run
        // without tables draws exactly what it drew before they existed.
        let mut parts = Vec::new();
        if random_slots > 0 {
            let random = ExampleSource::Random { n_x };
            let part = self
                .builder
                .build(&random, &tasks[random_from..], None, &mut self.rng)?;
            parts.push(part);
        }
        if tabular_slots > 0 {
            let tables = ExampleSource::Tabular {
                n_x,
                options: self.options,
            };
            let part = self.builder.build(
                &tables,
                &tasks[tabular_from..random_from],
                None,
                &mut self.rng,
            )?;
            parts.push(part);
        }
        if tabular_from > 0 {
            let part = self.builder.build(
                &self.source,
                &tasks[..tabular_from],
                self.stream.as_mut(),
                &mut self.rng,
            )?;
            parts.push(part);
        }
        parts.reverse();
        let inputs: Vec<&Tensor> = parts.iter().map(|b| &b.inputs).collect();
        let labels: Vec<&Tensor> = parts.iter().map(|b| &b.labels).collect();
        Ok(Batch {
            inputs: Tensor::cat(&inputs, 0)?,
            labels: Tensor::cat(&labels, 0)?,
            tasks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Normalization;
    use crate::dataset::ImageSet;
    use crate::task::TaskFamily;
    use gpicl_kernels::Device;
    use std::sync::Arc;

    /// 50 two-feature examples that are all ones, labels 0–9 in turn.
    fn ones() -> Arc<ImageSet> {
        Arc::new(ImageSet {
            name: "ones".into(),
            x: vec![1.0; 2 * 50],
            labels: (0..50).map(|i| (i % 10) as u8).collect(),
            n_x: 2,
            classes: 10,
            source: "ones".into(),
        })
    }

    fn sampler(tasks: TaskConfig) -> TrainSampler {
        let batch = BatchConfig {
            tasks_per_step: 4,
            seqs_per_task: 3,
            seq_len: 2,
            ..BatchConfig::default()
        };
        let builder = BatchBuilder::new(
            TaskFamily::new(0, 2, 0.0),
            Normalization::PerBatch,
            2,
            Device::Cpu,
        );
        TrainSampler::new(tasks, batch, builder, ExampleSource::Random { n_x: 2 }, 7)
    }

    #[test]
    fn unseen_task_ids_are_never_drawn_in_training() {
        let mut s = sampler(TaskConfig {
            num_tasks: 5,
            permute_labels_prob: 0.5,
            ..TaskConfig::default()
        });
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            for t in s.draw_tasks() {
                let id = t.projection.unwrap();
                assert!((0..5).contains(&id));
                seen.insert(id);
            }
        }
        assert_eq!(seen.len(), 5, "every training id is drawn");
    }

    #[test]
    fn sequences_of_a_slot_share_their_task() {
        let mut s = sampler(TaskConfig {
            num_tasks: 1 << 30,
            ..TaskConfig::default()
        });
        let tasks = s.draw_tasks();
        assert_eq!(tasks.len(), 12);
        for slot in tasks.chunks(3) {
            assert!(slot.iter().all(|t| *t == slot[0]));
        }
    }

    #[test]
    fn permutation_probability_controls_permuted_slots() {
        let mut never = sampler(TaskConfig {
            permute_labels_prob: 0.0,
            ..TaskConfig::default()
        });
        assert!((0..50)
            .flat_map(|_| never.draw_tasks())
            .all(|t| t.permutation.is_none()));
        let mut always = sampler(TaskConfig {
            permute_labels_prob: 1.0,
            ..TaskConfig::default()
        });
        assert!((0..50)
            .flat_map(|_| always.draw_tasks())
            .all(|t| t.permutation == t.projection));
    }

    #[test]
    fn biasing_sends_a_fixed_fraction_to_task_zero() {
        let mut s = sampler(TaskConfig {
            num_tasks: 1 << 40,
            single_task_fraction: 0.25,
            ..TaskConfig::default()
        });
        for _ in 0..20 {
            let tasks = s.draw_tasks();
            assert!(tasks[..3].iter().all(|t| t.projection == Some(0)));
        }
        let mut never_projected = sampler(TaskConfig {
            num_tasks: 1 << 40,
            project_prob: 0.0,
            ..TaskConfig::default()
        });
        assert!(never_projected
            .draw_tasks()
            .iter()
            .all(|t| t.projection == Some(0)));
    }

    #[test]
    fn the_biased_share_uses_one_permutation_with_distinct_projections() {
        let mut s = sampler(TaskConfig {
            num_tasks: 1 << 40,
            permute_labels_prob: 1.0,
            fixed_permutation_fraction: 0.5,
            ..TaskConfig::default()
        });
        for _ in 0..20 {
            let tasks = s.draw_tasks();
            let slots: Vec<TaskRef> = tasks.chunks(3).map(|c| c[0]).collect();
            // 4 slots × 0.5: exactly 2 use the fixed permutation.
            let fixed: Vec<&TaskRef> = slots
                .iter()
                .filter(|t| t.permutation == Some(FIXED_PERMUTATION_TASK))
                .collect();
            assert!(fixed.len() >= 2, "{slots:?}");
            let mut projections: Vec<i64> = fixed.iter().map(|t| t.projection.unwrap()).collect();
            projections.dedup();
            assert_eq!(projections.len(), fixed.len(), "projections stay per task");
            // The other slots keep their own permutation.
            assert!(slots[2..].iter().all(|t| t.permutation == t.projection));
        }
        // A fraction that is not a whole number of slots holds on average.
        let mut s = sampler(TaskConfig {
            num_tasks: 1 << 40,
            permute_labels_prob: 1.0,
            fixed_permutation_fraction: 0.3,
            ..TaskConfig::default()
        });
        let draws = 2_000;
        let fixed_slots: usize = (0..draws)
            .map(|_| {
                s.draw_tasks()
                    .chunks(3)
                    .filter(|c| c[0].permutation == Some(FIXED_PERMUTATION_TASK))
                    .count()
            })
            .sum();
        let share = fixed_slots as f64 / (4 * draws) as f64;
        assert!((share - 0.3).abs() < 0.02, "share {share}");
    }

    #[test]
    fn a_per_task_mask_permutes_each_task_always_or_never() {
        let tasks = TaskConfig {
            num_tasks: 64,
            permute_labels_prob: 0.5,
            permutation_mask: PermutationMask::PerTask,
            ..TaskConfig::default()
        };
        let family = TaskFamily::new(0, 2, 0.0);
        let mut s = sampler(tasks.clone());
        let mut permuted = std::collections::BTreeMap::new();
        for _ in 0..300 {
            for t in s.draw_tasks() {
                let id = t.projection.unwrap();
                let is = t.permutation.is_some();
                assert_eq!(*permuted.entry(id).or_insert(is), is, "task {id} flipped");
                assert_eq!(is, family.permutation_draw(id) < 0.5);
            }
        }
        let share = permuted.values().filter(|&&p| p).count() as f64 / permuted.len() as f64;
        assert!(
            permuted.len() == 64 && (0.3..0.7).contains(&share),
            "{share}"
        );
        // Another process (another sampler seed) marks the same tasks.
        let batch = BatchConfig {
            tasks_per_step: 4,
            seqs_per_task: 3,
            seq_len: 2,
            ..BatchConfig::default()
        };
        let builder = BatchBuilder::new(family, Normalization::PerBatch, 2, Device::Cpu);
        let mut other =
            TrainSampler::new(tasks, batch, builder, ExampleSource::Random { n_x: 2 }, 99);
        for t in (0..100).flat_map(|_| other.draw_tasks()) {
            assert_eq!(
                Some(&t.permutation.is_some()),
                permuted.get(&t.projection.unwrap())
            );
        }
    }

    #[test]
    fn a_random_fraction_sends_that_share_of_slots_to_the_random_dataset() {
        let set = ones();
        let batch = BatchConfig {
            tasks_per_step: 4,
            seqs_per_task: 3,
            seq_len: 6,
            ..BatchConfig::default()
        };
        let builder = BatchBuilder::new(
            TaskFamily::new(0, 2, 0.0),
            Normalization::None,
            6,
            Device::Cpu,
        );
        let tasks = TaskConfig {
            num_tasks: 0,
            ..TaskConfig::default()
        };
        let mut s = TrainSampler::new(tasks, batch, builder, ExampleSource::Images(set), 1)
            .with_random_fraction(0.5);
        let b = s.next_batch().unwrap();
        assert_eq!(b.inputs.dims(), &[12, 6, 2]);
        let inputs: Vec<Vec<Vec<f32>>> = b.inputs.to_vec3().unwrap();
        // Image rows are all ones; random-dataset rows are uniform in [0, 1).
        let from_images =
            |seq: &Vec<Vec<f32>>| seq.iter().all(|tok| tok[0] == 1.0 && tok[1] == 1.0);
        assert!(
            inputs[..6].iter().all(from_images),
            "first slots: the dataset"
        );
        assert!(
            inputs[6..].iter().all(|seq| !from_images(seq)),
            "last 2 slots: random"
        );
        // A random-dataset slot's 18 examples are repeats of its ten images.
        for slot in inputs[6..].chunks(3) {
            let mut distinct: Vec<[u32; 2]> = slot
                .iter()
                .flatten()
                .map(|t| [t[0].to_bits(), t[1].to_bits()])
                .collect();
            distinct.sort();
            distinct.dedup();
            assert!(distinct.len() <= 10, "{} distinct images", distinct.len());
        }
    }

    #[test]
    fn a_tabular_fraction_puts_fresh_tables_between_the_dataset_and_random() {
        let set = ones();
        let batch = BatchConfig {
            tasks_per_step: 4,
            seqs_per_task: 3,
            seq_len: 30,
            ..BatchConfig::default()
        };
        let builder = BatchBuilder::new(
            TaskFamily::new(0, 2, 0.0),
            Normalization::None,
            30,
            Device::Cpu,
        );
        let tasks = TaskConfig {
            num_tasks: 0,
            ..TaskConfig::default()
        };
        let mut s = TrainSampler::new(tasks, batch, builder, ExampleSource::Images(set), 1)
            .with_random_fraction(0.25)
            .with_tabular_fraction(0.5);
        let b = s.next_batch().unwrap();
        let inputs: Vec<Vec<Vec<f32>>> = b.inputs.to_vec3().unwrap();
        let distinct = |seqs: &[Vec<Vec<f32>>]| {
            let mut rows: Vec<[u32; 2]> = seqs
                .iter()
                .flatten()
                .map(|t| [t[0].to_bits(), t[1].to_bits()])
                .collect();
            rows.sort();
            rows.dedup();
            rows.len()
        };
        // Slot 0: the dataset (all ones); slots 1–2: tables (every row its
        // own, z-scored: not ones); slot 3: random (at most ten images).
        assert_eq!(distinct(&inputs[..3]), 1);
        for slot in inputs[3..9].chunks(3) {
            assert!(
                distinct(slot) > 60,
                "a table's rows are fresh: {}",
                distinct(slot)
            );
            let mean: f32 = slot.iter().flatten().map(|t| t[0]).sum::<f32>() / 90.0;
            assert!(mean.abs() < 0.5, "z-scored and projected: mean {mean}");
        }
        assert!(distinct(&inputs[9..]) <= 10);
        // Labels of a table slot are below its class count (at most 10).
        let targets: Vec<Vec<u32>> = b.labels.to_vec2().unwrap();
        assert!(targets[3..9].iter().flatten().all(|&y| y < 10));
    }

    #[test]
    fn raw_data_runs_use_the_identity_task() {
        let mut s = sampler(TaskConfig {
            num_tasks: 0,
            ..TaskConfig::default()
        });
        assert!(s.draw_tasks().iter().all(|t| *t == TaskRef::IDENTITY));
    }

    #[test]
    fn a_resumed_sampler_continues_the_same_stream() {
        let mut a = sampler(TaskConfig::default());
        a.next_batch().unwrap();
        let state = a.state();
        let next_a = a.next_batch().unwrap();
        let batch = BatchConfig {
            tasks_per_step: 4,
            seqs_per_task: 3,
            seq_len: 2,
            ..BatchConfig::default()
        };
        let builder = BatchBuilder::new(
            TaskFamily::new(0, 2, 0.0),
            Normalization::PerBatch,
            2,
            Device::Cpu,
        );
        let mut b = TrainSampler::resume(
            TaskConfig::default(),
            batch,
            builder,
            ExampleSource::Random { n_x: 2 },
            state,
        )
        .unwrap();
        let next_b = b.next_batch().unwrap();
        let (ta, tb): (Vec<f32>, Vec<f32>) = (
            next_a.inputs.flatten_all().unwrap().to_vec1().unwrap(),
            next_b.inputs.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(ta, tb);
        assert_eq!(next_a.tasks, next_b.tasks);
    }
}
