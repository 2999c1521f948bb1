//! The records of a run's `metrics.jsonl`: one JSON object per line,
//! tagged by its `"kind"` (`model`, `train`, `eval`).
//!
//! [`RunRecord`] is the one shape of a line, written by
//! [`crate::MetricsLog::append`] and read back by [`read_records`]. The
//! field names and order, and the float formatting (`f32` fields print as
//! the shortest decimal that reads back as the same `f32`), are those of
//! every earlier version of the file, so logs of old runs read as they are.
//! A line of an unknown kind is an error naming the file, the line and the
//! kinds this version knows: a log with records this version cannot
//! interpret is refused rather than half read.

use crate::error::{MetaError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunRecord {
    /// The first line: what was trained.
    Model(ModelRecord),
    /// One training step.
    Train(TrainRecord),
    /// One evaluation group of one dataset at one step.
    Eval(EvalRecord),
}

impl RunRecord {
    /// The step the record belongs to (0 for the model line).
    pub fn step(&self) -> u64 {
        match self {
            Self::Model(r) => r.step,
            Self::Train(r) => r.step,
            Self::Eval(r) => r.step,
        }
    }

    /// The training step, if this is one.
    pub fn as_train(&self) -> Option<&TrainRecord> {
        match self {
            Self::Train(r) => Some(r),
            _ => None,
        }
    }

    /// The evaluation result, if this is one.
    pub fn as_eval(&self) -> Option<&EvalRecord> {
        match self {
            Self::Eval(r) => Some(r),
            _ => None,
        }
    }

    /// The model line, if this is it.
    pub fn as_model(&self) -> Option<&ModelRecord> {
        match self {
            Self::Model(r) => Some(r),
            _ => None,
        }
    }
}

/// The first line of a run's log: what was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Always 0.
    pub step: u64,
    /// The model kind (`transformer`, `lstm`, …).
    pub model: String,
    /// Trainable parameters.
    pub params: usize,
    /// Accessible state size at the run's sequence length.
    pub state_size: usize,
    /// Features per example (`N_x`).
    pub n_x: usize,
    /// The run's identity, drawn when it started; every checkpoint carries
    /// it (absent in logs of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// What one training step measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_unbiased: Option<f32>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Sequence length of this step's batch, while a curriculum
    /// (`batch.curriculum_start_len`) is shortening it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// Learning rate of this step's update (`optim.lr` unless a warm-up
    /// or decay is configured). Logs written before learning-rate
    /// schedules existed lack it; it reads as 0 there.
    #[serde(default)]
    pub lr: f64,
    /// Wall time of the step in seconds.
    pub seconds: f64,
}

/// One evaluation group of one dataset, logged after a periodic or final
/// evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Training steps of the evaluated weights.
    pub step: u64,
    /// The dataset (or comma-separated mixture).
    pub dataset: String,
    /// The evaluation group (`seen`, `unseen_permuted`, …).
    pub group: String,
    /// Accuracy at the first position.
    pub acc_first: f32,
    /// Accuracy at the last position.
    pub acc_last: f32,
    /// Cross-entropy at the last position.
    pub loss_last: f32,
}

/// An `f32` field as the JSON reader of its line sees it: the shortest
/// decimal that was written, read as an `f64` (not the `f32` widened,
/// which differs in the low bits: `0.1f32 as f64` is `0.10000000149…`).
/// Readers that compute in `f64` (plateaus, sweep reports) use this so
/// their results do not depend on the record's storage type.
pub fn as_written(value: f32) -> f64 {
    if !value.is_finite() {
        return value as f64;
    }
    value
        .to_string()
        .parse()
        .expect("a finite f32 prints as a decimal")
}

/// Parses one line of a log.
pub(crate) fn parse_record(line: &str) -> serde_json::Result<RunRecord> {
    serde_json::from_str(line)
}

/// Every record of the log at `path`, in file order. A torn last line (a
/// process killed while appending it) is ignored; any other line that is
/// not a record (bad JSON, an unknown `kind`, a missing field) is an error
/// naming the file and line.
pub fn read_records(path: &Path) -> Result<Vec<RunRecord>> {
    let bytes = std::fs::read(path).map_err(MetaError::io(path))?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let last = lines.len().saturating_sub(1);
    let mut records = Vec::with_capacity(lines.len());
    for (i, &(number, line)) in lines.iter().enumerate() {
        match parse_record(line) {
            Ok(record) => records.push(record),
            Err(_) if i == last && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(MetaError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("line {}: {e}", number + 1),
                })
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::scratch_dir;

    fn train(step: u64) -> TrainRecord {
        TrainRecord {
            step,
            loss: 2.5980108,
            acc: 0.10046875,
            acc_last: 0.09375,
            grad_norm: 1.5801488682073155,
            lr: 0.002,
            seconds: 0.13410941,
            ..TrainRecord::default()
        }
    }

    #[test]
    fn records_are_written_as_the_lines_of_earlier_versions() {
        let cases = [
            (
                RunRecord::Model(ModelRecord {
                    step: 0,
                    model: "transformer".into(),
                    params: 114762,
                    state_size: 25600,
                    n_x: 49,
                    run_id: None,
                }),
                r#"{"kind":"model","step":0,"model":"transformer","params":114762,"state_size":25600,"n_x":49}"#,
            ),
            (
                RunRecord::Train(train(1)),
                r#"{"kind":"train","step":1,"loss":2.5980108,"acc":0.10046875,"acc_last":0.09375,"grad_norm":1.5801488682073155,"lr":0.002,"seconds":0.13410941}"#,
            ),
            (
                RunRecord::Train(TrainRecord {
                    loss_unbiased: Some(2.25),
                    seq_len: Some(8),
                    ..train(2)
                }),
                r#"{"kind":"train","step":2,"loss":2.5980108,"acc":0.10046875,"acc_last":0.09375,"loss_unbiased":2.25,"grad_norm":1.5801488682073155,"seq_len":8,"lr":0.002,"seconds":0.13410941}"#,
            ),
            (
                RunRecord::Eval(EvalRecord {
                    step: 200,
                    dataset: "fashion_mnist".into(),
                    group: "identity".into(),
                    acc_first: 0.09375,
                    acc_last: 0.125,
                    loss_last: 2.3043096,
                }),
                r#"{"kind":"eval","step":200,"dataset":"fashion_mnist","group":"identity","acc_first":0.09375,"acc_last":0.125,"loss_last":2.3043096}"#,
            ),
        ];
        for (record, line) in cases {
            assert_eq!(serde_json::to_string(&record).unwrap(), line);
            // Read back, a record holds what a JSON reader of the line
            // sees (serde_json's float parsing may be an ulp off a long
            // f64 such as `grad_norm`, for every reader alike).
            let reread = parse_record(line).unwrap();
            let as_json: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut expected = record.clone();
            if let RunRecord::Train(t) = &mut expected {
                t.grad_norm = as_json["grad_norm"].as_f64().unwrap();
            }
            assert_eq!(reread, expected);
        }
    }

    #[test]
    fn a_train_line_from_before_learning_rate_schedules_reads_with_lr_zero() {
        let line = r#"{"kind":"train","step":3,"loss":2.3,"acc":0.1,"acc_last":0.1,"grad_norm":1.0,"seconds":0.1}"#;
        let record = parse_record(line).unwrap();
        assert_eq!(record.as_train().map(|t| (t.step, t.lr)), Some((3, 0.0)));
    }

    #[test]
    fn an_unknown_kind_is_an_error_naming_the_file_line_and_known_kinds() {
        let dir = scratch_dir("record");
        let path = dir.join("metrics.jsonl");
        std::fs::write(&path, "{\"kind\":\"lap\",\"step\":1}\n").unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(
            err.contains("metrics.jsonl")
                && err.contains("line 1")
                && err.contains("`lap`")
                && err.contains("`train`"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn as_written_reads_an_f32_as_its_printed_decimal() {
        assert_eq!(as_written(0.1), 0.1);
        assert_eq!(as_written(2.5980108), 2.5980108);
        assert_eq!(as_written(1e-30), 1e-30);
        assert!(as_written(f32::NAN).is_nan());
    }
}
