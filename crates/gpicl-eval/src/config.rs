//! The options of the evaluation protocol ([`EvalConfig`]): the `[eval]`
//! table of a run's `config.toml` (the whole file is `gpicl_run::RunConfig`).

use crate::error::{EvalError, Result};
use gpicl_tasks::Split;
use serde::{Deserialize, Serialize};

/// Options of the evaluation protocol (`gpicl-method.md` §7), run during
/// and after training: the `[eval]` table of a run's `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Meta-test datasets; empty means every dataset with a test split
    /// that can be found, plus `random`. Default empty.
    pub datasets: Vec<String>,
    /// Tasks per seen/unseen group (seen: ids `0..n`, unseen: `−1…−n`).
    /// Default 32.
    pub tasks_per_group: usize,
    /// Sequences per task. Default 128.
    pub seqs_per_task: usize,
    /// Sequences per forward pass (memory vs speed). Default 128.
    pub chunk_size: usize,
    /// Seed of the fixed evaluation batches. Default 0.
    pub seed: u64,
    /// Datasets evaluated every `schedule.eval_every` steps during
    /// training (seen and unseen groups only); empty: the training dataset.
    pub periodic_datasets: Vec<String>,
    /// Sequences per task in the periodic evaluations. Default 16.
    pub periodic_seqs_per_task: usize,
    /// Split evaluated: `test` (the `t10k` files) or `train`, for datasets
    /// that have no test split (Omniglot's background set) and were not
    /// meta-trained on. Default `test`.
    pub split: Split,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            datasets: Vec::new(),
            tasks_per_group: 32,
            seqs_per_task: 128,
            chunk_size: 128,
            seed: 0,
            periodic_datasets: Vec::new(),
            periodic_seqs_per_task: 16,
            split: Split::Test,
        }
    }
}

impl EvalConfig {
    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        for (option, value) in [
            ("eval.tasks_per_group", self.tasks_per_group),
            ("eval.seqs_per_task", self.seqs_per_task),
            ("eval.chunk_size", self.chunk_size),
            ("eval.periodic_seqs_per_task", self.periodic_seqs_per_task),
        ] {
            if value == 0 {
                return Err(EvalError::config(option, "must be at least 1"));
            }
        }
        // Checked here, before any training, so that a mistyped list (a
        // shell eating the quotes of `--set 'eval.datasets=["random"]'`)
        // fails at once rather than at the first periodic evaluation.
        for (option, names) in [
            ("eval.datasets", &self.datasets),
            ("eval.periodic_datasets", &self.periodic_datasets),
        ] {
            for name in names {
                if let Err(e) = gpicl_tasks::names::validate_path_name("dataset name", name) {
                    return Err(EvalError::config(
                        option,
                        format!(
                            "{e}; expected a list of dataset names such as [\"mnist\", \"random\"]"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
