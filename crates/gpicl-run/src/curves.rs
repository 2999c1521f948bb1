//! Per-position learning curves in TensorBoard: an evaluation's accuracy
//! and loss at every position of the sequence (examples seen in context),
//! as scalars whose step is the position. Each evaluated training step is
//! a TensorBoard run of its own (`<run>/tensorboard/curves/step-N/`), so
//! TensorBoard overlays how the curve changed over meta-training; the
//! training and evaluation scalars themselves are written by
//! `gpicl_meta::tensorboard` from the run's records.

use crate::error::{Result, RunError};
use gpicl_eval::EvalReport;
use gpicl_meta::tensorboard::EventWriter;
use gpicl_meta::RunDir;
use std::path::{Path, PathBuf};

/// Where the curves of the evaluation at `step` go, under a run's
/// `tensorboard/` folder.
pub fn curves_dir(tensorboard: &Path, step: u64) -> PathBuf {
    tensorboard.join("curves").join(format!("step-{step}"))
}

/// Writes `report`'s curves into a new event file in
/// [`curves_dir`]`(tensorboard, report.step)`, replacing the event files an
/// earlier evaluation of the same step left there: tags
/// `curve/<dataset>/<group>/acc` and `…/loss`, step = position (1 for the
/// first example). Returns the event file.
pub fn write_curves(tensorboard: &Path, report: &EvalReport) -> Result<PathBuf> {
    let dir = curves_dir(tensorboard, report.step);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let stale = entry.file_type().is_ok_and(|t| t.is_file())
                && entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("events.out.tfevents.");
            if stale {
                std::fs::remove_file(entry.path()).map_err(|e| {
                    RunError::output(
                        &entry.path(),
                        format!("could not replace an earlier curve file: {e}"),
                    )
                })?;
            }
        }
    }
    let writer = EventWriter::create(&dir)?;
    let curves: Vec<(String, &[f32])> = report
        .datasets
        .iter()
        .flat_map(|(dataset, groups)| {
            groups.iter().flat_map(move |(group, r)| {
                [
                    (
                        format!("curve/{dataset}/{group}/acc"),
                        r.acc_curve.as_slice(),
                    ),
                    (
                        format!("curve/{dataset}/{group}/loss"),
                        r.loss_curve.as_slice(),
                    ),
                ]
            })
        })
        .collect();
    let positions = curves.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    for position in 0..positions {
        let values: Vec<(&str, f64)> = curves
            .iter()
            .filter_map(|(tag, curve)| curve.get(position).map(|&v| (tag.as_str(), v as f64)))
            .collect();
        writer.scalars(position as u64 + 1, &values)?;
    }
    Ok(writer.path().to_path_buf())
}

/// What [`export_tensorboard`] wrote.
#[derive(Debug)]
pub struct TensorboardExport {
    /// The event file of the training and evaluation scalars.
    pub scalars: PathBuf,
    /// Records of `metrics.jsonl` written to it.
    pub records: usize,
    /// The event file of the final evaluation's curves, if the run has one
    /// (`eval/eval.json`).
    pub curves: Option<PathBuf>,
}

/// Writes TensorBoard event files for a run made without
/// `schedule.tensorboard`: every scalar of its `metrics.jsonl` and, if it
/// has been evaluated (`eval/eval.json`), that evaluation's curves.
pub fn export_tensorboard(run: &RunDir) -> Result<TensorboardExport> {
    let (scalars, records) =
        gpicl_meta::tensorboard::export_metrics(&run.metrics(), &run.tensorboard())?;
    let eval_json = run.eval().join("eval.json");
    let curves = if eval_json.is_file() {
        let report = EvalReport::read_json(&eval_json)?;
        Some(write_curves(&run.tensorboard(), &report)?)
    } else {
        None
    };
    Ok(TensorboardExport {
        scalars,
        records,
        curves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_eval::GroupResult;
    use gpicl_meta::tensorboard::read_scalars;

    fn report(step: u64) -> EvalReport {
        let mut report = EvalReport {
            step,
            datasets: Default::default(),
        };
        report.datasets.entry("mnist".into()).or_default().insert(
            "unseen".into(),
            GroupResult::new(vec![0.1, 0.5, 0.75], vec![2.3, 1.0, 0.5], 8),
        );
        report
    }

    #[test]
    fn every_position_of_every_curve_is_a_scalar_whose_step_is_the_position() {
        let dir = gpicl_testing::scratch_dir("curves");
        let path = write_curves(&dir, &report(40)).unwrap();
        assert!(path.starts_with(dir.join("curves").join("step-40")));
        let scalars = read_scalars(&path).unwrap();
        let acc: Vec<(u64, f32)> = scalars
            .iter()
            .filter(|s| s.tag == "curve/mnist/unseen/acc")
            .map(|s| (s.step, s.value))
            .collect();
        assert_eq!(acc, [(1, 0.1), (2, 0.5), (3, 0.75)]);
        assert!(scalars
            .iter()
            .any(|s| s.tag == "curve/mnist/unseen/loss" && s.step == 3 && s.value == 0.5));
        // A second evaluation of the same step replaces the first's file.
        let again = write_curves(&dir, &report(40)).unwrap();
        let files = std::fs::read_dir(curves_dir(&dir, 40)).unwrap().count();
        assert_eq!(files, 1, "{}", again.display());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
