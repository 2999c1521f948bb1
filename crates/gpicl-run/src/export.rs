//! Exporting a trained run as a learner to ship (`cargo xtask export`):
//! its config and newest weights (`gpicl_meta::export_learner`), the run's
//! own evaluation as `results/`, the reproducibility check
//! ([`crate::learner_check`]) and the manifest of every file's sha256
//! (`gpicl_tasks::hub::ModelManifest`, checked after a Hub download).

use crate::error::{Result, RunError};
use crate::learner_check::{check_learner, LearnerCheck, CHECK_FILE};
use gpicl_meta::{export_learner, RunDir};
use gpicl_tasks::hub::ModelManifest;
use std::path::{Path, PathBuf};

/// What [`export_run`] wrote.
#[derive(Debug)]
pub struct ExportedLearner {
    /// The weights file (`checkpoints/step-N.safetensors`).
    pub weights: PathBuf,
    /// The learner's check, as written to `check.json`.
    pub check: LearnerCheck,
}

/// Exports the run in `from` as a learner folder `to` (which must hold no
/// checkpoints yet): config and weights, `results/` (a copy of the run's
/// `eval/`, when it has one), `check.json` and `manifest.json`.
pub fn export_run(from: &RunDir, to: &RunDir) -> Result<ExportedLearner> {
    let weights = export_learner(from, to)?;
    // The run's own evaluation, as it was measured, travels with it.
    if from.eval().is_dir() {
        let results = to.root().join("results");
        std::fs::create_dir_all(&results).map_err(|e| RunError::output(&results, e))?;
        let entries =
            std::fs::read_dir(from.eval()).map_err(|e| RunError::input(&from.eval(), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if let (true, Some(name)) = (path.is_file(), path.file_name()) {
                let target = results.join(name);
                std::fs::copy(&path, &target).map_err(|e| RunError::output(&target, e))?;
            }
        }
    }
    let check = check_learner(to)?;
    let path = to.root().join(CHECK_FILE);
    let text = serde_json::to_string_pretty(&check).map_err(|e| RunError::output(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| RunError::output(&path, e))?;
    write_manifest(to.root())?;
    Ok(ExportedLearner { weights, check })
}

/// Writes `dir/manifest.json`: the sha256 of every file of the learner
/// folder (again after editing its model card).
pub fn write_manifest(dir: &Path) -> Result<PathBuf> {
    ModelManifest::of_dir(dir)?.write(dir)?;
    Ok(dir.join(gpicl_tasks::hub::MODEL_MANIFEST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::absent_path;

    #[test]
    fn an_exported_learner_carries_its_results_check_and_a_manifest_that_verifies() {
        let shipped = RunDir::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px"),
        );
        // A run folder with an evaluation, made from the shipped learner.
        let from = RunDir::new(absent_path("export-from"));
        std::fs::create_dir_all(from.checkpoints()).unwrap();
        std::fs::copy(shipped.config(), from.config()).unwrap();
        for entry in std::fs::read_dir(shipped.checkpoints()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, from.checkpoints().join(path.file_name().unwrap())).unwrap();
        }
        std::fs::create_dir_all(from.eval()).unwrap();
        std::fs::write(from.eval().join("eval.md"), "measured\n").unwrap();
        let to = RunDir::new(absent_path("export-to"));
        let exported = export_run(&from, &to).unwrap();
        assert!(exported.weights.is_file());
        assert_eq!(
            std::fs::read_to_string(to.root().join("results/eval.md")).unwrap(),
            "measured\n"
        );
        // check.json holds the check measured on the exported folder.
        let written = crate::learner_check::read_check(to.root()).unwrap();
        assert_eq!(written, exported.check);
        let datasets: Vec<&String> = written.acc_last.keys().collect();
        assert_eq!(datasets, ["fashion_mnist", "mnist", "random"]);
        gpicl_tasks::hub::verify_model_manifest(to.root()).unwrap();
        // A second export into the same folder is refused.
        assert!(export_run(&from, &to).is_err());
        for dir in [from.root(), to.root()] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
