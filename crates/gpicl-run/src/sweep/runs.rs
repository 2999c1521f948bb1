//! Reading a sweep folder's runs: which runs are finished (the one rule the
//! sweep runner and the report share), and what each finished run measured.
//!
//! Each run directory contributes its `config.toml`, the `"train"` records
//! of `metrics.jsonl` (final loss, loss plateau) and its final evaluation
//! `eval/eval.json`.

use crate::error::{Result, RunError};
use gpicl_eval::report::{EvalReport, GroupResult};
use gpicl_meta::plateau::{detect_plateau, plateau_curve, Plateau, PlateauCriteria};
use gpicl_meta::record::as_written;
use gpicl_meta::{MetricsLog, RunDir, RunRecord, TrainConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whether a run finished training and its final evaluation: its
/// `eval/eval.json` exists. The sweep runner skips such cells on
/// `--resume`; the report reads only such runs.
pub fn is_finished(run: &RunDir) -> bool {
    eval_json(run).is_file()
}

/// The final evaluation of a run.
fn eval_json(run: &RunDir) -> PathBuf {
    run.eval().join("eval.json")
}

/// What one finished run measured.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The run's folder name.
    pub name: String,
    /// Its config, flattened to dotted keys and TOML literals.
    pub config: BTreeMap<String, String>,
    /// What meta-training recorded; `None` for learners that are not
    /// meta-trained (the SGD baseline).
    pub training: Option<TrainingSummary>,
    /// The final evaluation.
    pub eval: EvalReport,
}

/// The training side of a run, from its `metrics.jsonl`.
#[derive(Clone, Debug)]
pub struct TrainingSummary {
    /// Trainable parameters (from the log's `"model"` line).
    pub params: Option<usize>,
    /// Accessible state size at the sequence length.
    pub state_size: Option<usize>,
    /// The last training loss.
    pub final_loss: Option<f64>,
    /// The training loss plateau.
    pub plateau: Plateau,
    /// `(step, loss)` of every training step, on the curve the plateau is
    /// judged on (for a biased distribution, the loss outside its fixed
    /// task; see `gpicl_meta::plateau::plateau_curve`).
    pub loss_curve: Vec<(u64, f64)>,
    /// `(step, accuracy at the last position)` of the periodic evaluations
    /// on unseen tasks of the training dataset.
    pub unseen_progress: Vec<(u64, f64)>,
    /// Per periodically evaluated dataset, `(step, acc@last − acc@1)` on
    /// its unseen tasks: the in-context-learning signal during training.
    pub icl_progress: BTreeMap<String, Vec<(u64, f64)>>,
}

/// The within-sequence gain on unseen tasks at which in-context learning
/// counts as formed (`TrainingSummary::sustained_icl_onset`).
pub const ICL_ONSET_GAIN: f64 = 0.1;

impl TrainingSummary {
    /// The first periodic evaluation step at which unseen tasks of
    /// `dataset` gained at least [`ICL_ONSET_GAIN`] accuracy from their
    /// context, at that evaluation and at the next (if there is one): one
    /// evaluation whose first-position accuracy happened to dip below
    /// chance does not count. What the report's onset column and the
    /// batch-size fit (`sweep::scaling`) read.
    pub fn sustained_icl_onset(&self, dataset: &str) -> Option<u64> {
        let points = self.icl_progress.get(dataset)?;
        (0..points.len())
            .find(|&i| {
                points[i].1 >= ICL_ONSET_GAIN
                    && points
                        .get(i + 1)
                        .is_none_or(|next| next.1 >= ICL_ONSET_GAIN)
            })
            .map(|i| points[i].0)
    }
}

impl RunSummary {
    /// The evaluation group that stands for `group` (`seen`, `unseen`) in
    /// this run's columns: a run meta-trained with every label permuted
    /// (`tasks.permute_labels_prob = 1`) never saw its tasks with their
    /// original labels, so its seen and unseen tasks are read with their
    /// permutations (`seen_permuted`, `unseen_permuted`).
    pub fn column_group<'a>(&self, group: &'a str) -> std::borrow::Cow<'a, str> {
        let always_permuted = self
            .config
            .get("tasks.permute_labels_prob")
            .and_then(|p| p.parse::<f64>().ok())
            == Some(1.0);
        let has = |g: &str| {
            self.eval
                .datasets
                .values()
                .any(|groups| groups.contains_key(g))
        };
        let permuted = format!("{group}_permuted");
        if always_permuted && (group == "seen" || group == "unseen") && has(&permuted) {
            permuted.into()
        } else {
            group.into()
        }
    }

    /// The result standing for `dataset`/`group` (see
    /// [`RunSummary::column_group`]).
    pub(crate) fn result(&self, dataset: &str, group: &str) -> Option<&GroupResult> {
        self.eval
            .datasets
            .get(dataset)?
            .get(self.column_group(group).as_ref())
    }

    pub(crate) fn final_loss(&self) -> Option<f64> {
        self.training.as_ref()?.final_loss
    }

    pub(crate) fn plateau(&self) -> Option<&Plateau> {
        self.training.as_ref().map(|t| &t.plateau)
    }
}

/// Reads the model line, loss curve, plateau and periodic evaluations of
/// a run's metrics log.
fn summarise_training(run: &RunDir, config: &TrainConfig) -> Result<TrainingSummary> {
    let log = MetricsLog::open(&run.metrics());
    let records = log.read()?;
    let model = records.iter().find_map(RunRecord::as_model);
    let evals = || records.iter().filter_map(RunRecord::as_eval);
    let final_loss = records
        .iter()
        .filter_map(RunRecord::as_train)
        .map(|r| as_written(r.loss))
        .next_back();
    let loss_curve = plateau_curve(&records);
    let training_dataset = config.data.dataset.as_str();
    // Always-permuted runs are read on their permuted tasks (see
    // `RunSummary::column_group`).
    let unseen = if config.tasks.permute_labels_prob == 1.0 {
        "unseen_permuted"
    } else {
        "unseen"
    };
    let unseen_progress = evals()
        .filter(|r| r.dataset == training_dataset && r.group == unseen)
        .map(|r| (r.step, as_written(r.acc_last)))
        .collect();
    let mut icl_progress: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for r in evals().filter(|r| r.group == unseen) {
        let gain = as_written(r.acc_last) - as_written(r.acc_first);
        icl_progress
            .entry(r.dataset.clone())
            .or_default()
            .push((r.step, gain));
    }
    // The final evaluation is logged too; keep one point per step.
    icl_progress.values_mut().for_each(|points| {
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
    });
    Ok(TrainingSummary {
        params: model.map(|m| m.params),
        state_size: model.map(|m| m.state_size),
        final_loss,
        plateau: detect_plateau(
            &loss_curve,
            &PlateauCriteria::for_classes(gpicl_tasks::NUM_CLASSES),
        ),
        loss_curve,
        unseen_progress,
        icl_progress,
    })
}

/// Reads one run directory; `Ok(None)` if it has no final evaluation yet
/// (it is not [`is_finished`]).
pub fn summarise_run(dir: &Path) -> Result<Option<RunSummary>> {
    let run = RunDir::new(dir);
    if !is_finished(&run) {
        return Ok(None);
    }
    let eval_path = eval_json(&run);
    let eval = EvalReport::read_json(&eval_path)?;
    let config = crate::RunConfig::load(&run.config())?;
    let training = if run.metrics().is_file() {
        Some(summarise_training(&run, &config.train)?)
    } else {
        None
    };
    let mut flat = BTreeMap::new();
    let value = toml::Value::try_from(&config).map_err(|e| RunError::input(&run.config(), e))?;
    flatten("", &value, &mut flat);
    Ok(Some(RunSummary {
        name: dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into()),
        config: flat,
        training,
        eval,
    }))
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        // Strings without their TOML quotes: they label table rows.
        toml::Value::String(text) => {
            out.insert(prefix.to_string(), text.clone());
        }
        // Tiny values (Adam's eps) in scientific notation, not 17 digits.
        toml::Value::Float(x) if *x != 0.0 && x.abs() < 1e-3 => {
            out.insert(prefix.to_string(), format!("{x:e}"));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Every run directory directly inside `sweep` (folders with a
/// `config.toml`), in name order.
pub fn run_dirs(sweep: &Path) -> Result<Vec<PathBuf>> {
    // A single run folder is a sweep of one.
    if RunDir::new(sweep).config().is_file() {
        return Ok(vec![sweep.to_path_buf()]);
    }
    let entries = std::fs::read_dir(sweep).map_err(|e| RunError::input(sweep, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| RunDir::new(p).config().is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Every run in `sweep`: the finished ones summarised, and the folder
/// names of the unfinished ones, both in name order.
pub fn read_runs(sweep: &Path) -> Result<(Vec<RunSummary>, Vec<String>)> {
    let mut runs = Vec::new();
    let mut unfinished = Vec::new();
    for dir in run_dirs(sweep)? {
        match summarise_run(&dir)? {
            Some(summary) => runs.push(summary),
            None => unfinished.push(
                dir.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into()),
            ),
        }
    }
    Ok((runs, unfinished))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sustained_onset_ignores_a_single_evaluation_that_dipped() {
        let gains = vec![
            (100, 0.02),
            (200, 0.11),
            (300, 0.04),
            (400, 0.12),
            (500, 0.2),
        ];
        let training = TrainingSummary {
            params: None,
            state_size: None,
            final_loss: None,
            plateau: Plateau {
                chance_loss: 10f64.ln(),
                steps_near_chance: 0,
                drop_step: None,
                last_step: 500,
            },
            loss_curve: Vec::new(),
            unseen_progress: Vec::new(),
            icl_progress: [("random".to_string(), gains)].into(),
        };
        // The gain first reaches 0.1 at step 200, but not again at 300.
        assert_eq!(training.sustained_icl_onset("random"), Some(400));
        assert_eq!(training.sustained_icl_onset("mnist"), None);
    }

    #[test]
    fn row_labels_show_strings_unquoted_and_tiny_floats_in_scientific_notation() {
        let value: toml::Value = toml::from_str(
            "[data]\ndataset = \"fashion_mnist\"\n[optim]\neps = 1e-16\nlr = 0.001\n[tasks]\nnum_tasks = 16384\n",
        )
        .unwrap();
        let mut flat = BTreeMap::new();
        flatten("", &value, &mut flat);
        assert_eq!(flat["data.dataset"], "fashion_mnist");
        assert_eq!(flat["optim.eps"], "1e-16");
        assert_eq!(flat["optim.lr"], "0.001");
        assert_eq!(flat["tasks.num_tasks"], "16384");
    }
}
