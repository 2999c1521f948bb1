//! The evaluation protocol of `gpicl-method.md` §7.
//!
//! For each meta-test dataset, fixed batches drawn once from its test split
//! are seen through six groups of tasks: `seen` (training ids `0…n−1`),
//! `unseen` (ids `−1…−n`, never drawn in training) and `identity` (the raw
//! data), each with labels unpermuted and permuted (`*_permuted`). Accuracy
//! and loss are recorded at every position.

use crate::error::{EvalError, Result};
use crate::report::{EvalReport, GroupResult};
use gpicl_kernels::rng::{stream, Rng};
use gpicl_kernels::{composed, Device};
use gpicl_meta::EvalConfig;
use gpicl_models::SequenceModel;
use gpicl_tasks::{
    BatchBuilder, ExampleSource, ExampleStream, Normalization, StreamState, TaskFamily, TaskRef,
};

/// The task groups, in report order.
pub const GROUPS: [&str; 6] = [
    "seen",
    "unseen",
    "identity",
    "seen_permuted",
    "unseen_permuted",
    "identity_permuted",
];

/// The task assignment of every sequence of `group`.
pub fn group_tasks(
    group: &str,
    num_tasks: u64,
    tasks_per_group: usize,
    seqs_per_task: usize,
) -> Vec<TaskRef> {
    let seen = TaskFamily::seen_ids(num_tasks, tasks_per_group);
    let unseen = TaskFamily::unseen_ids(tasks_per_group);
    let refs: Vec<TaskRef> = match group {
        "seen" => seen.iter().map(|&id| TaskRef::task(id, false)).collect(),
        "seen_permuted" => seen.iter().map(|&id| TaskRef::task(id, true)).collect(),
        "unseen" => unseen.iter().map(|&id| TaskRef::task(id, false)).collect(),
        "unseen_permuted" => unseen.iter().map(|&id| TaskRef::task(id, true)).collect(),
        "identity" => vec![TaskRef::IDENTITY],
        "identity_permuted" => unseen
            .iter()
            .map(|&id| TaskRef {
                projection: None,
                permutation: Some(id),
            })
            .collect(),
        _ => Vec::new(),
    };
    refs.into_iter()
        .flat_map(|r| std::iter::repeat_n(r, seqs_per_task))
        .collect()
}

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
    /// Sequence length.
    pub seq_len: usize,
    /// Where the model lives.
    pub device: &'a Device,
}

impl Evaluator<'_> {
    /// Evaluates every dataset in `sources` on `groups`.
    pub fn evaluate(
        &self,
        sources: &[ExampleSource],
        groups: &[&str],
        cfg: &EvalConfig,
        seqs_per_task: usize,
        step: u64,
    ) -> Result<EvalReport> {
        let mut report = EvalReport {
            step,
            datasets: Default::default(),
        };
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
                results.insert(group.to_string(), self.evaluate_group(source, &tasks, cfg)?);
            }
        }
        Ok(report)
    }

    fn evaluate_group(
        &self,
        source: &ExampleSource,
        tasks: &[TaskRef],
        cfg: &EvalConfig,
    ) -> Result<GroupResult> {
        let t = self.seq_len;
        let builder = BatchBuilder::new(
            self.family.clone(),
            self.normalization,
            t,
            self.device.clone(),
        );
        // Every group sees the same examples: the stream restarts from the
        // same seed, so groups differ only in their tasks.
        let name_key = source
            .name()
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let mut rng = Rng::from_stream(cfg.seed, &[stream::EVAL_DATA, name_key]);
        let mut examples = match source {
            ExampleSource::Images(set) => Some(ExampleStream::new(
                set.len(),
                StreamState {
                    seed: rng.next_u64(),
                    epoch: 0,
                    cursor: 0,
                    examples: set.len(),
                },
            )),
            ExampleSource::Pool(_) | ExampleSource::Random { .. } => None,
        };
        let mut correct = vec![0f64; t];
        let mut loss = vec![0f64; t];
        for chunk in tasks.chunks(cfg.chunk_size) {
            let batch = builder.build(source, chunk, examples.as_mut(), &mut rng)?;
            let logits = self.model.forward(&batch.tokens)?.detach();
            let hits: Vec<f32> = composed::correct(&logits, &batch.targets)?
                .sum(0)?
                .to_vec1()?;
            let losses: Vec<f32> =
                (composed::cross_entropy_per_position(&logits, &batch.targets)?
                    * chunk.len() as f64)?
                    .to_vec1()?;
            for i in 0..t {
                correct[i] += hits[i] as f64;
                loss[i] += losses[i] as f64;
            }
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
        let seen = group_tasks("seen", 4, 32, 2);
        assert_eq!(seen.len(), 8, "only 4 seen tasks exist");
        assert!(seen
            .iter()
            .all(|t| t.projection.unwrap() >= 0 && t.permutation.is_none()));
        let unseen = group_tasks("unseen_permuted", 1 << 20, 3, 1);
        assert!(unseen
            .iter()
            .all(|t| t.projection.unwrap() < 0 && t.permutation == t.projection));
        assert_eq!(
            group_tasks("identity", 10, 32, 5),
            vec![TaskRef::IDENTITY; 5]
        );
        assert!(group_tasks("identity_permuted", 10, 2, 1)
            .iter()
            .all(|t| t.projection.is_none() && t.permutation.is_some()));
        assert!(
            group_tasks("seen", 0, 32, 2).is_empty(),
            "raw-data runs have no seen tasks"
        );
    }
}
