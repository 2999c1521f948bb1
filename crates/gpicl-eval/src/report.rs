//! Evaluation results: tables, JSON and plots.

use crate::error::{EvalError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Accuracy and loss of one group of tasks at every position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    /// Accuracy at the last position (after `T−1` examples in context).
    pub acc_last: f32,
    /// Loss at the last position.
    pub loss_last: f32,
    /// Accuracy at the first position (no context).
    pub acc_first: f32,
    /// Accuracy per position.
    pub acc_curve: Vec<f32>,
    /// Loss per position.
    pub loss_curve: Vec<f32>,
    /// Sequences averaged over.
    pub sequences: usize,
}

impl GroupResult {
    /// Summarises per-position curves.
    pub fn new(acc_curve: Vec<f32>, loss_curve: Vec<f32>, sequences: usize) -> Self {
        Self {
            acc_last: *acc_curve.last().unwrap_or(&f32::NAN),
            loss_last: *loss_curve.last().unwrap_or(&f32::NAN),
            acc_first: *acc_curve.first().unwrap_or(&f32::NAN),
            acc_curve,
            loss_curve,
            sequences,
        }
    }

    /// Accuracy improvement within the sequence: last minus first position.
    pub fn improvement(&self) -> f32 {
        self.acc_last - self.acc_first
    }
}

/// Results per dataset and group.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalReport {
    /// Training step of the evaluated weights.
    pub step: u64,
    /// `dataset → group → result`.
    pub datasets: BTreeMap<String, BTreeMap<String, GroupResult>>,
}

impl EvalReport {
    /// `{"<dataset>": {"<group>": {"acc_last", "loss_last", "acc_curve", …}}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.datasets).expect("report serialises")
    }

    /// A fixed-width table: one row per dataset and group.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let probe =
            |r: &GroupResult, pos: usize| r.acc_curve.get(pos - 1).copied().unwrap_or(f32::NAN);
        writeln!(
            out,
            "{:<16} {:<18} {:>7} {:>7} {:>7} {:>8} {:>9}",
            "dataset", "group", "acc@1", "acc@10", "acc@50", "acc@last", "loss@last"
        )
        .unwrap();
        for (dataset, groups) in &self.datasets {
            for group in crate::group::Group::ALL.map(crate::group::Group::as_str) {
                let Some(r) = groups.get(group) else { continue };
                writeln!(
                    out,
                    "{:<16} {:<18} {:>7.3} {:>7.3} {:>7.3} {:>8.3} {:>9.3}",
                    dataset,
                    group,
                    r.acc_first,
                    probe(r, 10),
                    probe(r, 50),
                    r.acc_last,
                    r.loss_last
                )
                .unwrap();
            }
        }
        out
    }

    /// A Markdown version of [`EvalReport::table`].
    pub fn markdown(&self) -> String {
        let mut out = format!("Evaluation at step {}.\n\n| dataset | group | acc@1 | acc@last | improvement | loss@last |\n|---|---|---|---|---|---|\n", self.step);
        for (dataset, groups) in &self.datasets {
            for group in crate::group::Group::ALL.map(crate::group::Group::as_str) {
                let Some(r) = groups.get(group) else { continue };
                writeln!(
                    out,
                    "| {dataset} | {group} | {:.3} | {:.3} | {:+.3} | {:.3} |",
                    r.acc_first,
                    r.acc_last,
                    r.improvement(),
                    r.loss_last
                )
                .unwrap();
            }
        }
        out
    }

    /// Reads the `eval.json` that [`EvalReport::write`] wrote at `path`.
    pub fn read_json(path: &Path) -> Result<Self> {
        let err = |e: &dyn std::fmt::Display| EvalError::Input {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
        serde_json::from_str(&text).map_err(|e| err(&e))
    }

    /// Writes `eval.json`, `eval.md` and one `curves-<dataset>.svg` per
    /// dataset into `dir`. Returns the written paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let err = |path: &Path, e: &dyn std::fmt::Display| EvalError::Output {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
        let mut written = Vec::new();
        let json = dir.join("eval.json");
        let full = serde_json::json!({ "step": self.step, "datasets": self.to_json() });
        std::fs::write(&json, serde_json::to_string_pretty(&full).expect("json"))
            .map_err(|e| err(&json, &e))?;
        written.push(json);
        let md = dir.join("eval.md");
        std::fs::write(&md, self.markdown()).map_err(|e| err(&md, &e))?;
        written.push(md);
        for (dataset, groups) in &self.datasets {
            let svg = dir.join(format!("curves-{dataset}.svg"));
            // The groups in report order.
            let curves: Vec<(&str, &[f32])> = crate::group::Group::ALL
                .map(crate::group::Group::as_str)
                .into_iter()
                .filter_map(|g| groups.get(g).map(|r| (g, r.acc_curve.as_slice())))
                .collect();
            crate::plot::accuracy_curves(
                &svg,
                &format!(
                    "{dataset}: accuracy vs examples in context (step {})",
                    self.step
                ),
                &curves,
            )?;
            written.push(svg);
        }
        Ok(written)
    }
}
