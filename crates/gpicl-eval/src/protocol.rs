//! The evaluation protocol of `gpicl-method.md` §7.
//!
//! For each meta-test dataset, fixed batches drawn once from its test split
//! are seen through six groups of tasks: `seen` (training ids `0…n−1`),
//! `unseen` (ids `−1…−n`, never drawn in training) and `identity` (the raw
//! data), each with labels unpermuted and permuted (`*_permuted`). Accuracy
//! and loss are recorded at every position.

use crate::config::EvalConfig;
use crate::error::{EvalError, Result};
pub use crate::group::{group_tasks, Group};
use crate::report::{EvalReport, GroupResult};
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{composed, Device};
use gpicl_models::SequenceModel;
use gpicl_tasks::{
    BatchBuilder, ExampleSource, FeatureNormalization, Normalization, StreamState, TaskFamily,
    TaskRef,
};

/// Runs `model` over a dataset for the given groups.
pub struct Evaluator<'a> {
    /// The model under test.
    pub model: &'a dyn SequenceModel,
    /// The run's task family.
    pub family: &'a TaskFamily,
    /// The run's `tasks.num_tasks` (which ids count as seen).
    pub num_tasks: u64,
    /// The run's normalisation.
    pub normalization: Normalization,
    /// The run's normalisation of projected inputs (`data.feature_normalization`).
    pub feature_normalization: FeatureNormalization,
    /// Sequence length.
    pub seq_len: usize,
    /// Where the model lives.
    pub device: &'a Device,
    /// Told after every chunk of sequences: (sequences done, sequences in
    /// the whole evaluation), for progress bars.
    pub progress: Option<&'a dyn Fn(usize, usize)>,
}

impl<'a> Evaluator<'a> {
    /// Evaluates every dataset in `sources` on `groups`.
    pub fn evaluate(
        &self,
        sources: &[ExampleSource],
        groups: &[Group],
        cfg: &EvalConfig,
        seqs_per_task: usize,
        step: u64,
    ) -> Result<EvalReport> {
        let mut report = EvalReport {
            step,
            datasets: Default::default(),
        };
        let group_sizes: Vec<usize> = groups
            .iter()
            .map(|&g| group_tasks(g, self.num_tasks, cfg.tasks_per_group, seqs_per_task).len())
            .collect();
        let total = sources.len() * group_sizes.iter().sum::<usize>();
        let mut done = 0;
        for source in sources {
            if source.n_x() != self.family.n_x() {
                return Err(EvalError::InputSize {
                    dataset: source.name().to_string(),
                    got: source.n_x(),
                    expected: self.family.n_x(),
                });
            }
            let results = report
                .datasets
                .entry(source.name().to_string())
                .or_default();
            for &group in groups {
                let tasks = group_tasks(group, self.num_tasks, cfg.tasks_per_group, seqs_per_task);
                if tasks.is_empty() {
                    continue;
                }
                results.insert(
                    group.as_str().to_string(),
                    self.evaluate_group(source, &tasks, cfg, &mut |n| {
                        done += n;
                        if let Some(progress) = self.progress {
                            progress(done, total);
                        }
                    })?,
                );
            }
        }
        Ok(report)
    }

    fn evaluate_group(
        &self,
        source: &ExampleSource,
        tasks: &[TaskRef],
        cfg: &EvalConfig,
        chunk_done: &mut dyn FnMut(usize),
    ) -> Result<GroupResult> {
        let t = self.seq_len;
        let builder = BatchBuilder::new(
            self.family.clone(),
            self.normalization,
            t,
            self.device.clone(),
        )
        .with_feature_normalization(self.feature_normalization);
        // Every group sees the same examples: the stream restarts from the
        // same seed, so groups differ only in their tasks.
        let name_key = source
            .name()
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let mut rng = Rng::from_stream(cfg.seed, &[stream::EVAL_DATA, name_key]);
        let start = StreamState {
            seed: rng.next_u64(),
            epoch: 0,
            cursor: 0,
            examples: source.examples(),
        };
        let mut examples = source.stream(start);
        let mut correct = vec![0f64; t];
        let mut loss = vec![0f64; t];
        for chunk in tasks.chunks(cfg.chunk_size) {
            let batch = builder.build(source, chunk, examples.as_mut(), &mut rng)?;
            let logits = self.model.forward(&batch.inputs, &batch.labels)?.detach();
            let hits: Vec<f32> = composed::correct(&logits, &batch.labels)?
                .sum(0)?
                .to_vec1()?;
            let losses: Vec<f32> = (composed::cross_entropy_per_position(&logits, &batch.labels)?
                * chunk.len() as f64)?
                .to_vec1()?;
            for i in 0..t {
                correct[i] += hits[i] as f64;
                loss[i] += losses[i] as f64;
            }
            chunk_done(chunk.len());
        }
        let n = tasks.len() as f64;
        let acc_curve: Vec<f32> = correct.iter().map(|c| (c / n) as f32).collect();
        let loss_curve: Vec<f32> = loss.iter().map(|l| (l / n) as f32).collect();
        Ok(GroupResult::new(acc_curve, loss_curve, tasks.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_use_the_right_task_ids() {
        let seen = group_tasks(Group::Seen, 4, 32, 2);
        assert_eq!(seen.len(), 8, "only 4 seen tasks exist");
        assert!(seen
            .iter()
            .all(|t| t.projection.unwrap() >= 0 && t.permutation.is_none()));
        let unseen = group_tasks(Group::UnseenPermuted, 1 << 20, 3, 1);
        assert!(unseen
            .iter()
            .all(|t| t.projection.unwrap() < 0 && t.permutation == t.projection));
        assert_eq!(
            group_tasks(Group::Identity, 10, 32, 5),
            vec![TaskRef::IDENTITY; 5]
        );
        assert!(group_tasks(Group::IdentityPermuted, 10, 2, 1)
            .iter()
            .all(|t| t.projection.is_none() && t.permutation.is_some()));
        assert!(
            group_tasks(Group::Seen, 0, 32, 2).is_empty(),
            "raw-data runs have no seen tasks"
        );
    }

    #[test]
    fn groups_are_named_in_reports_and_serde_by_the_same_strings() {
        for group in Group::ALL {
            assert_eq!(group.as_str().parse::<Group>().unwrap(), group);
            assert_eq!(
                serde_json::to_value(group).unwrap(),
                serde_json::Value::String(group.as_str().into())
            );
        }
        assert_eq!(
            Group::ALL.map(Group::as_str),
            [
                "seen",
                "unseen",
                "identity",
                "seen_permuted",
                "unseen_permuted",
                "identity_permuted"
            ]
        );
    }

    #[test]
    fn an_unknown_group_name_is_an_error_listing_the_groups() {
        let err = "unseen_permutted".parse::<Group>().unwrap_err().to_string();
        assert!(
            err.contains("unseen_permutted") && err.contains("identity_permuted"),
            "{err}"
        );
    }
}
