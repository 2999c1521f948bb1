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
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(MetaError::io(&self.path)(e)),
        };
        // A process killed mid-append leaves a torn last line: records
        // that do not parse are dropped with the steps to be redone.
        let text = String::from_utf8_lossy(&bytes);
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .is_some_and(|v| {
                        v.get("step")
                            .and_then(|s| s.as_u64())
                            .is_none_or(|s| s <= step)
                    })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        crate::run_dir::write_atomically(&self.path, kept.as_bytes())
    }

    /// Every record as JSON. A torn last line (a process killed while
    /// appending it) is ignored; any other unreadable line is an error
    /// naming the file and line.
    pub fn read(&self) -> Result<Vec<serde_json::Value>> {
        let bytes = std::fs::read(&self.path).map_err(MetaError::io(&self.path))?;
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        let last = lines.len().saturating_sub(1);
        let mut records = Vec::with_capacity(lines.len());
        for (i, &(number, line)) in lines.iter().enumerate() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) if v.is_object() => records.push(v),
                _ if i == last && !text.ends_with('\n') => {}
                Ok(_) => {
                    return Err(MetaError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("line {}: expected a JSON object", number + 1),
                    })
                }
                Err(e) => {
                    return Err(MetaError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("line {}: {e}", number + 1),
                    })
                }
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(tag: &str, text: &str) -> MetricsLog {
        let dir = std::env::temp_dir().join(format!("gpicl-metrics-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        std::fs::write(&path, text).unwrap();
        MetricsLog::open(&path)
    }

    #[test]
    fn a_torn_last_line_is_ignored_when_reading_and_dropped_when_resuming() {
        let log = log_with(
            "torn",
            "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"step\":2}\n{\"kind\":\"tr",
        );
        assert_eq!(log.read().unwrap().len(), 2);
        log.truncate_after(1).unwrap();
        assert_eq!(
            std::fs::read_to_string(&log.path).unwrap(),
            "{\"kind\":\"train\",\"step\":1}\n"
        );
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_the_line() {
        let log = log_with("middle", "{\"step\":1}\nnot json\n{\"step\":2}\n");
        let err = log.read().unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("metrics.jsonl"),
            "{err}"
        );
    }
}
