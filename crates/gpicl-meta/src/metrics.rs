//! `metrics.jsonl`: one JSON object per line, appended as training goes.

use crate::error::{MetaError, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What one training step measured.
#[derive(Clone, Debug, Serialize)]
pub struct StepMetrics {
    /// Always `"train"`.
    pub kind: &'static str,
    /// Steps completed (1-based).
    pub step: u64,
    /// Mean cross-entropy over every sequence and position.
    pub loss: f32,
    /// Accuracy over every sequence and position.
    pub acc: f32,
    /// Accuracy at the last position.
    pub acc_last: f32,
    /// Mean cross-entropy over the sequences that did not come from the
    /// fixed task of a biased distribution (`tasks.single_task_fraction >
    /// 0` only). Memorising the fixed task lowers `loss` without any
    /// learning-to-learn, so plateaus are measured on this curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_unbiased: Option<f32>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Sequence length of this step's batch, while a curriculum
    /// (`batch.curriculum_start_len`) is shortening it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// Learning rate of this step's update (`optim.lr` unless a warm-up
    /// or decay is configured).
    pub lr: f64,
    /// Wall time of the step in seconds.
    pub seconds: f64,
}

/// An append-only JSON-lines log.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens (creating) `path`.
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Appends one record.
    pub fn append<T: Serialize>(&self, record: &T) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("metrics serialise");
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(MetaError::io(&self.path))?;
        f.write_all(line.as_bytes())
            .map_err(MetaError::io(&self.path))
    }

    /// Drops records of steps after `step`, written by a run that died
    /// after its last checkpoint, so the resumed run's log has each step
    /// once.
    pub fn truncate_after(&self, step: u64) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_none_or(|s| s <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = self.path.with_extension("partial");
        std::fs::write(&tmp, kept).map_err(MetaError::io(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(MetaError::io(&self.path))
    }

    /// Every record as JSON.
    pub fn read(&self) -> Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(&self.path).map_err(MetaError::io(&self.path))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| MetaError::Corrupt {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}
