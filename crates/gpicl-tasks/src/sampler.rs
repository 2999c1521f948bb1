//! The meta-training distribution: which tasks and examples each step sees.

use crate::batch::{Batch, BatchBuilder, ExampleSource, ExampleStream, StreamState};
use crate::config::{BatchConfig, TaskConfig};
use crate::error::{Result, TaskError};
use crate::task::TaskRef;
use gpicl_kernels::rng::{stream, Rng};
use serde::{Deserialize, Serialize};

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
                ExampleSource::Random { .. } => source.name().into(),
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
        let stream = match &source {
            ExampleSource::Images(set) => Some(ExampleStream::new(set.len(), state.stream)),
            ExampleSource::Pool(_) | ExampleSource::Random { .. } => None,
        };
        Ok(Self {
            tasks,
            batch,
            builder,
            source,
            rng: Rng::from_state(state.rng),
            stream,
        })
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
        let cfg = &self.tasks;
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
                let permute = self.rng.uniform() < cfg.permute_labels_prob;
                TaskRef::task(id, permute)
            };
            tasks.extend(std::iter::repeat_n(task, self.batch.seqs_per_task));
        }
        let fixed = self.fixed_task_sequences();
        if fixed > 0 {
            let task0 = TaskRef::task(0, cfg.permute_labels_prob > 0.0);
            tasks[..fixed].iter_mut().for_each(|t| *t = task0);
        }
        tasks
    }

    /// The next meta-training batch.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let tasks = self.draw_tasks();
        self.builder
            .build(&self.source, &tasks, self.stream.as_mut(), &mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Normalization;
    use crate::task::TaskFamily;
    use gpicl_kernels::Device;

    fn sampler(tasks: TaskConfig) -> TrainSampler {
        let batch = BatchConfig {
            tasks_per_step: 4,
            seqs_per_task: 3,
            seq_len: 2,
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
            next_a.tokens.flatten_all().unwrap().to_vec1().unwrap(),
            next_b.tokens.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(ta, tb);
        assert_eq!(next_a.tasks, next_b.tasks);
    }
}
