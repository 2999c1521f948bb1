//! The reproducibility check of a shipped learner (`models/<name>/`): its
//! accuracy on a small fixed batch of the embedded data, written next to
//! it as `check.json` by `cargo xtask export` and recomputed by the tests,
//! so a change that alters what the learner predicts is caught.

use crate::error::{Result, RunError};
use crate::evaluate::measure_run;
use gpicl_eval::EvalConfig;
use gpicl_meta::RunDir;
use gpicl_tasks::{dataset::embedded_data_dir, DataRoots};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file name of the check inside a learner's folder.
pub const CHECK_FILE: &str = "check.json";

/// Accuracy at the last position per dataset and group, on the fixed
/// batch of [`check_protocol`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnerCheck {
    /// What was evaluated, in words.
    pub protocol: String,
    /// Sequences per group.
    pub sequences: usize,
    /// `acc_last[dataset][group]`.
    pub acc_last: BTreeMap<String, BTreeMap<String, f32>>,
}

/// The datasets and protocol of the check: unseen tasks (and the other
/// groups) of the embedded MNIST and Fashion-MNIST test subsets and of
/// `random`, 4 tasks × 32 sequences per group, evaluation seed 0.
pub fn check_protocol() -> (Vec<String>, EvalConfig) {
    let protocol = EvalConfig {
        tasks_per_group: 4,
        seqs_per_task: 32,
        seed: 0,
        ..EvalConfig::default()
    };
    let datasets = ["mnist", "fashion_mnist", "random"]
        .map(String::from)
        .to_vec();
    (datasets, protocol)
}

/// Evaluates the learner in `dir` on the check's fixed batch, on the CPU,
/// reading only the embedded data.
pub fn check_learner(dir: &RunDir) -> Result<LearnerCheck> {
    let (datasets, protocol) = check_protocol();
    let roots = DataRoots::only(vec![embedded_data_dir()]);
    let report = measure_run(dir, &roots, Some(datasets), Some(&protocol), Some("cpu"))?;
    let acc_last = report
        .datasets
        .iter()
        .map(|(d, groups)| {
            let accs = groups
                .iter()
                .map(|(g, r)| (g.clone(), r.acc_last))
                .collect();
            (d.clone(), accs)
        })
        .collect();
    Ok(LearnerCheck {
        protocol: "embedded MNIST / Fashion-MNIST test subsets and `random`, every group, 4 tasks × 32 sequences, eval seed 0, CPU".into(),
        sequences: protocol.tasks_per_group * protocol.seqs_per_task,
        acc_last,
    })
}

/// Reads `dir/check.json`.
pub fn read_check(dir: &Path) -> Result<LearnerCheck> {
    let path = dir.join(CHECK_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| RunError::Input {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| RunError::Input {
        path,
        reason: e.to_string(),
    })
}
