//! The speedrun's learner bar: the fixed check that says a run *is* a
//! general-purpose in-context learner, evaluated while it trains so that a
//! speedrun can stop the clock the moment it holds.
//!
//! The bar never changes (a records table is only meaningful against one
//! bar): accuracy at the 100th example on unseen tasks of the MNIST and
//! Fashion-MNIST test splits and of `random`, [`BAR_SEQUENCES`] sequences
//! each, at least [`BAR`]. Every check draws fresh examples (its evaluation
//! seed is the check's number), so a run cannot pass by being checked
//! often on the same sample.
//!
//! ```no_run
//! # fn demo(trainer: &mut gpicl_meta::Trainer) -> gpicl_run::Result<()> {
//! use gpicl_run::speedrun::SpeedrunCheck;
//! use gpicl_tasks::DataRoots;
//! let mut check = SpeedrunCheck::new(DataRoots::new(None), std::time::Instant::now());
//! // The trainer calls the check every `schedule.eval_every` steps and
//! // stops (MetaError::Interrupted) once the bar holds.
//! let outcome = trainer.run(&mut check);
//! if let Some(passed) = check.passed() {
//!     println!("a learner after {} steps, {:.1} s", passed.step, passed.seconds);
//! }
//! # let _ = outcome; Ok(()) }
//! ```

use crate::error::{Result, RunError};
use crate::evaluate::{log_report, trainer_evaluator};
use gpicl_eval::report::EvalReport;
use gpicl_eval::sources::load_eval_sources;
use gpicl_eval::EvalConfig;
use gpicl_eval::Group;
use gpicl_meta::{Observer, TrainConfig, Trainer};
use gpicl_tasks::{DataRoots, ExampleSource, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// The bar: dataset and the accuracy at the 100th example that its unseen
/// tasks must reach.
pub const BAR: [(&str, f32); 3] = [("mnist", 0.60), ("fashion_mnist", 0.55), ("random", 0.99)];

/// The example the bar is read at (sequences are this long).
pub const BAR_POSITION: usize = 100;

/// Unseen tasks per dataset in one check.
pub const BAR_TASKS: usize = 16;

/// Sequences per dataset in one check (16 unseen tasks × 32).
pub const BAR_SEQUENCES: usize = 512;

/// One check of the bar during a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarCheck {
    /// Training step checked.
    pub step: u64,
    /// Wall-clock seconds since the speedrun started, at the end of the
    /// check (its own cost included).
    pub seconds: f64,
    /// Accuracy at the 100th example per dataset.
    pub accuracy: BTreeMap<String, f32>,
    /// Whether every dataset reached its bar.
    pub passed: bool,
}

/// Whether `accuracy` (dataset → accuracy at the 100th example) reaches
/// every entry of [`BAR`]; a missing dataset fails it.
pub fn bar_holds(accuracy: &BTreeMap<String, f32>) -> bool {
    BAR.iter()
        .all(|(dataset, bar)| accuracy.get(*dataset).is_some_and(|&acc| acc >= *bar))
}

/// The bar in words, for logs and records.
pub fn bar_description() -> String {
    let parts: Vec<String> = BAR
        .iter()
        .map(|(dataset, bar)| format!("{dataset} ≥ {bar:.2}"))
        .collect();
    format!(
        "unseen tasks at the {BAR_POSITION}th example, {BAR_SEQUENCES} fresh test-split sequences each: {}",
        parts.join(", ")
    )
}

/// Checks the bar every `schedule.eval_every` steps and asks the trainer
/// to stop once it holds.
pub struct SpeedrunCheck {
    roots: DataRoots,
    started: Instant,
    sources: Option<Vec<ExampleSource>>,
    checks: Vec<BarCheck>,
}

impl SpeedrunCheck {
    /// A check reading the test splits from `roots`; its clock started at
    /// `started` (the start of the speedrun, before the run was opened).
    pub fn new(roots: DataRoots, started: Instant) -> Self {
        Self {
            roots,
            started,
            sources: None,
            checks: Vec::new(),
        }
    }

    /// Every check so far, in order.
    pub fn checks(&self) -> &[BarCheck] {
        &self.checks
    }

    /// The first check that passed.
    pub fn passed(&self) -> Option<&BarCheck> {
        self.checks.iter().find(|c| c.passed)
    }

    /// Refuses a run whose sequences are shorter than the bar's position.
    pub fn validate(cfg: &TrainConfig) -> Result<()> {
        let seq_len = cfg.batch.seq_len;
        if seq_len < BAR_POSITION {
            return Err(RunError::config(
                "batch.seq_len",
                format!("the speedrun bar is read at the {BAR_POSITION}th example, so sequences must hold at least {BAR_POSITION} examples; got {seq_len}"),
            ));
        }
        Ok(())
    }

    /// Evaluates the trainer's model on the bar's datasets (fresh examples
    /// for every check), logs the result to the run's metrics and records
    /// it.
    pub fn check(&mut self, trainer: &Trainer) -> Result<&BarCheck> {
        let cfg = trainer.config();
        Self::validate(cfg)?;
        if self.sources.is_none() {
            let names: Vec<String> = BAR.iter().map(|(d, _)| d.to_string()).collect();
            self.sources = Some(load_eval_sources(
                &names,
                &self.roots,
                &cfg.data,
                Split::Test,
                trainer.family().n_x(),
            )?);
        }
        // A run that always permuted its labels saw tasks only that way;
        // read it as the reports do, on its unseen tasks with permutations.
        let group = if cfg.tasks.permute_labels_prob >= 1.0 {
            Group::UnseenPermuted
        } else {
            Group::Unseen
        };
        let protocol = EvalConfig {
            tasks_per_group: BAR_TASKS,
            seqs_per_task: BAR_SEQUENCES / BAR_TASKS,
            seed: self.checks.len() as u64 + 1,
            ..EvalConfig::default()
        };
        let evaluator = trainer_evaluator(trainer, BAR_POSITION);
        let report: EvalReport = evaluator.evaluate(
            self.sources.as_deref().unwrap_or_default(),
            &[group],
            &protocol,
            protocol.seqs_per_task,
            trainer.step(),
        )?;
        log_report(trainer.metrics(), &report)?;
        let accuracy: BTreeMap<String, f32> = report
            .datasets
            .iter()
            .filter_map(|(dataset, groups)| {
                Some((dataset.clone(), groups.get(group.as_str())?.acc_last))
            })
            .collect();
        let passed = bar_holds(&accuracy);
        self.checks.push(BarCheck {
            step: trainer.step(),
            seconds: self.started.elapsed().as_secs_f64(),
            accuracy,
            passed,
        });
        Ok(self.checks.last().expect("just pushed"))
    }
}

impl Observer for SpeedrunCheck {
    fn on_eval(&mut self, trainer: &Trainer) -> gpicl_meta::Result<()> {
        if self.passed().is_none() {
            self.check(trainer).map_err(|e| {
                gpicl_meta::MetaError::Observer(format!("speedrun check failed: {e}"))
            })?;
        }
        Ok(())
    }

    fn stop_requested(&mut self) -> Option<String> {
        self.passed()
            .map(|c| format!("the learner bar holds at step {}", c.step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(pairs: &[(&str, f32)]) -> BTreeMap<String, f32> {
        pairs.iter().map(|(d, a)| (d.to_string(), *a)).collect()
    }

    #[test]
    fn the_bar_needs_every_dataset_at_or_above_its_threshold() {
        assert!(bar_holds(&accuracy(&[
            ("mnist", 0.60),
            ("fashion_mnist", 0.55),
            ("random", 0.99)
        ])));
        assert!(!bar_holds(&accuracy(&[
            ("mnist", 0.599),
            ("fashion_mnist", 0.9),
            ("random", 1.0)
        ])));
        assert!(!bar_holds(&accuracy(&[
            ("mnist", 0.9),
            ("fashion_mnist", 0.9),
            ("random", 0.98)
        ])));
        assert!(
            !bar_holds(&accuracy(&[("mnist", 0.9), ("fashion_mnist", 0.9)])),
            "a dataset left out fails the bar"
        );
        assert_eq!(BAR_SEQUENCES, BAR_TASKS * (BAR_SEQUENCES / BAR_TASKS));
        assert!(bar_description().contains("mnist ≥ 0.60"));
    }

    #[test]
    fn the_run_is_asked_to_stop_only_once_a_check_passed() {
        let mut check = SpeedrunCheck::new(DataRoots::new(None), Instant::now());
        let at = |step, passed| BarCheck {
            step,
            seconds: step as f64,
            accuracy: BTreeMap::new(),
            passed,
        };
        assert_eq!(check.stop_requested(), None);
        check.checks.push(at(250, false));
        assert_eq!(check.stop_requested(), None);
        check.checks.push(at(500, true));
        check.checks.push(at(750, true));
        assert_eq!(check.passed().map(|c| c.step), Some(500));
        assert_eq!(
            check.stop_requested().as_deref(),
            Some("the learner bar holds at step 500")
        );
    }
}
