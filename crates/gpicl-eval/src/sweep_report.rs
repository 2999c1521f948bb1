//! Reports over many runs (a sweep): one table row per configuration, with
//! the mean ± standard deviation over seeds, and a plot of accuracy against
//! the swept quantity.
//!
//! Each run directory contributes its `config.toml`, the `"train"` records
//! of `metrics.jsonl` (final loss, loss plateau) and its final evaluation
//! `eval/eval.json`. Runs without an evaluation are listed as unfinished.
//! The columns are the config keys that differ between runs; `seed` is
//! never a column but the axis runs are averaged over.

use crate::error::{EvalError, Result};
use crate::plot::{finish_chart, legend_mark};
use crate::report::EvalReport;
use gpicl_meta::plateau::{detect_plateau, plateau_curve, Plateau, PlateauCriteria};
use gpicl_meta::record::as_written;
use gpicl_meta::{MetricsLog, RunDir, RunRecord, TrainConfig};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
/// counts as formed (`TrainingSummary::icl_onset`).
pub const ICL_ONSET_GAIN: f64 = 0.1;

impl TrainingSummary {
    /// The first periodic evaluation step at which unseen tasks of
    /// `dataset` gained at least [`ICL_ONSET_GAIN`] accuracy from their
    /// context, if any.
    pub fn icl_onset(&self, dataset: &str) -> Option<u64> {
        self.icl_progress
            .get(dataset)?
            .iter()
            .find(|&&(_, gain)| gain >= ICL_ONSET_GAIN)
            .map(|&(step, _)| step)
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

    fn result(&self, dataset: &str, group: &str) -> Option<&crate::report::GroupResult> {
        self.eval
            .datasets
            .get(dataset)?
            .get(self.column_group(group).as_ref())
    }

    fn final_loss(&self) -> Option<f64> {
        self.training.as_ref()?.final_loss
    }
    fn plateau(&self) -> Option<&Plateau> {
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

fn input_error(path: &Path, reason: impl std::fmt::Display) -> EvalError {
    EvalError::Input {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads one run directory; `Ok(None)` if it has no final evaluation yet.
pub fn summarise_run(dir: &Path) -> Result<Option<RunSummary>> {
    let run = RunDir::new(dir);
    let eval_path = run.eval().join("eval.json");
    if !eval_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&eval_path).map_err(|e| input_error(&eval_path, e))?;
    let eval: EvalReport = serde_json::from_str(&text).map_err(|e| input_error(&eval_path, e))?;
    let config = TrainConfig::load(&run.config())?;
    let training = if run.metrics().is_file() {
        Some(summarise_training(&run, &config)?)
    } else {
        None
    };
    let mut flat = BTreeMap::new();
    let value = toml::Value::try_from(&config).map_err(|e| input_error(&run.config(), e))?;
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
    let entries = std::fs::read_dir(sweep).map_err(|e| input_error(sweep, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| RunDir::new(p).config().is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Mean and sample standard deviation (`None` for a single value).
fn mean_std(values: &[f64]) -> Option<(f64, Option<f64>)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std))
}

fn cell(values: &[f64], digits: usize) -> String {
    match mean_std(values) {
        None => "–".into(),
        Some((m, None)) => format!("{m:.digits$}"),
        Some((m, Some(s))) => format!("{m:.digits$} ± {s:.digits$}"),
    }
}

/// One row of the report: runs that differ only in their seed.
#[derive(Clone, Debug)]
pub struct ReportRow {
    /// Values of the varying keys (seed excluded), in column order.
    pub key_values: Vec<String>,
    /// The runs averaged in this row.
    pub runs: Vec<RunSummary>,
}

impl ReportRow {
    /// Accuracy at the last position of `dataset`/`group`, per run.
    pub fn acc_last(&self, dataset: &str, group: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.result(dataset, group))
            .map(|g| g.acc_last as f64)
            .collect()
    }

    /// The row's key values, for legends.
    pub fn label(&self) -> String {
        if self.key_values.is_empty() {
            "all runs".to_string()
        } else {
            self.key_values.join(", ")
        }
    }

    /// Accuracy gained within the sequence (last minus first position) of
    /// `dataset`/`group`, per run.
    pub fn improvement(&self, dataset: &str, group: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.result(dataset, group))
            .map(|g| g.improvement() as f64)
            .collect()
    }

    /// The per-position accuracy of `dataset`/`group` averaged over the
    /// row's runs (over the positions every run has).
    pub fn mean_curve(&self, dataset: &str, group: &str) -> Option<Vec<f64>> {
        let curves: Vec<&Vec<f32>> = self
            .runs
            .iter()
            .filter_map(|r| Some(&r.result(dataset, group)?.acc_curve))
            .collect();
        let len = curves.iter().map(|c| c.len()).min()?;
        (len > 0).then(|| {
            (0..len)
                .map(|i| curves.iter().map(|c| c[i] as f64).sum::<f64>() / curves.len() as f64)
                .collect()
        })
    }
}

/// Examples in context at which the learning-curve table reads accuracy
/// (the points the paper quotes, with the last position as a column of
/// its own).
const CURVE_POINTS: [usize; 5] = [0, 10, 20, 40, 60];

fn table_header(out: &mut String, header: &[String]) {
    writeln!(out, "| {} |", header.join(" | ")).unwrap();
    writeln!(out, "|{}|", vec!["---"; header.len()].join("|")).unwrap();
}

fn table_row(out: &mut String, cells: &[String]) {
    writeln!(out, "| {} |", cells.join(" | ")).unwrap();
}

/// Trailing mean of `curve` over `window` points, one point per 10 steps
/// (plots need no more).
fn smoothed(curve: &[(u64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    let mut out = Vec::new();
    for (i, &(step, loss)) in curve.iter().enumerate() {
        sum += loss;
        if i >= window {
            sum -= curve[i - window].1;
        }
        if i + 1 >= window.min(curve.len()) && (i % 10 == 0 || i + 1 == curve.len()) {
            out.push((step as f64, sum / (i + 1).min(window) as f64));
        }
    }
    out
}

/// Draws labelled lines into an SVG; `y` defaults to the data's range.
fn line_chart(
    path: &Path,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    y: Option<std::ops::Range<f64>>,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| EvalError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let range = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = points()
            .map(f)
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if hi > lo {
            lo..hi
        } else if lo.is_finite() {
            lo - 1.0..lo + 1.0
        } else {
            0.0..1.0
        }
    };
    let x = range(|p| p.0);
    let y = y.unwrap_or_else(|| {
        let r = range(|p| p.1);
        let pad = 0.05 * (r.end - r.start);
        r.start - pad..r.end + pad
    });
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(x, y)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| fail(&e))?;
    let palette = crate::plot::PALETTE;
    for (i, (label, line)) in series.iter().enumerate() {
        let colour = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                line.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(label.clone())
            .legend(legend_mark(colour));
    }
    finish_chart(&mut chart, &root, SeriesLabelPosition::UpperRight, path)
}

/// The sweep's rows and columns.
#[derive(Clone, Debug)]
pub struct SweepReport {
    /// Config keys that differ between runs, without `seed`.
    pub varying: Vec<String>,
    /// Seeds seen (empty if every run had the same one).
    pub seeds: Vec<String>,
    /// Rows, in the order of their key values.
    pub rows: Vec<ReportRow>,
    /// Runs without a final evaluation.
    pub unfinished: Vec<String>,
    /// Datasets in the evaluations.
    pub datasets: Vec<String>,
    /// For sweeps whose runs differ in more than [`MAX_KEY_COLUMNS`] keys
    /// (rows named by run folder): what each run changes from the most
    /// common value of each key.
    pub cell_settings: Vec<(String, String)>,
}

/// Varying keys shown as columns; beyond this rows are named by run.
pub const MAX_KEY_COLUMNS: usize = 4;

impl SweepReport {
    /// Groups `runs` into rows by their non-seed varying keys.
    pub fn new(runs: Vec<RunSummary>, unfinished: Vec<String>) -> Self {
        let keys: Vec<String> = runs
            .first()
            .map(|r| r.config.keys().cloned().collect())
            .unwrap_or_default();
        let differs = |k: &str| {
            runs.iter()
                .any(|r| r.config.get(k) != runs[0].config.get(k))
        };
        let mut varying: Vec<String> = keys
            .iter()
            .filter(|k| k.as_str() != "seed" && differs(k))
            .cloned()
            .collect();
        // Too many keys for columns (an ablation of named cells): rows are
        // named by their run folder, and a table says what each changes
        // from the most common setting.
        let mut cell_settings = Vec::new();
        if varying.len() > MAX_KEY_COLUMNS {
            let usual = |k: &str| {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for r in &runs {
                    *counts
                        .entry(r.config.get(k).map_or("", String::as_str))
                        .or_default() += 1;
                }
                counts
                    .into_iter()
                    .max_by_key(|&(_, n)| n)
                    .map(|(v, _)| v.to_string())
            };
            let usual: Vec<(String, Option<String>)> =
                varying.iter().map(|k| (k.clone(), usual(k))).collect();
            for run in &runs {
                let changes: Vec<String> = usual
                    .iter()
                    .filter(|(k, v)| run.config.get(k) != v.as_ref())
                    .map(|(k, _)| {
                        format!("`{k} = {}`", run.config.get(k).map_or("", String::as_str))
                    })
                    .collect();
                let changes = if changes.is_empty() {
                    "the most common setting of every key".to_string()
                } else {
                    changes.join(", ")
                };
                if !cell_settings
                    .iter()
                    .any(|(n, _): &(String, String)| *n == run.name)
                {
                    cell_settings.push((run.name.clone(), changes));
                }
            }
            cell_settings.sort();
            varying = vec!["cell".to_string()];
        }
        let by_name = varying == ["cell"] && !cell_settings.is_empty();
        let mut seeds: Vec<String> = if differs("seed") {
            runs.iter()
                .filter_map(|r| r.config.get("seed").cloned())
                .collect()
        } else {
            Vec::new()
        };
        seeds.sort();
        seeds.dedup();
        let mut rows: BTreeMap<Vec<SortKey>, ReportRow> = BTreeMap::new();
        let mut datasets: Vec<String> = Vec::new();
        for run in runs {
            let values: Vec<String> = if by_name {
                vec![run.name.clone()]
            } else {
                varying
                    .iter()
                    .map(|k| run.config.get(k).cloned().unwrap_or_default())
                    .collect()
            };
            for d in run.eval.datasets.keys() {
                if !datasets.contains(d) {
                    datasets.push(d.clone());
                }
            }
            rows.entry(values.iter().map(|v| SortKey::of(v)).collect())
                .or_insert_with(|| ReportRow {
                    key_values: values,
                    runs: Vec::new(),
                })
                .runs
                .push(run);
        }
        datasets.sort();
        Self {
            varying,
            seeds,
            rows: rows.into_values().collect(),
            unfinished,
            datasets,
            cell_settings,
        }
    }

    /// "<dataset> seen" and "<dataset> unseen" for every dataset.
    fn seen_unseen_columns(&self) -> Vec<String> {
        self.datasets
            .iter()
            .flat_map(|d| [format!("{d} seen"), format!("{d} unseen")])
            .collect()
    }

    /// The Markdown report: the accuracy table (varying keys, runs,
    /// parameters, final loss, plateau, seen/unseen accuracy at the last
    /// position per dataset), the within-sequence improvement table (the
    /// paper's "phases") and the learning-curve table (accuracy on unseen
    /// tasks after k examples in context).
    pub fn markdown(&self, title: &str, command: &str) -> String {
        let mut out = format!("# {title}\n\nGenerated by `{command}`.\n\n");
        let runs: usize = self.rows.iter().map(|r| r.runs.len()).sum();
        write!(out, "{runs} finished runs").unwrap();
        if !self.seeds.is_empty() {
            write!(
                out,
                "; cells are mean ± sample standard deviation over seeds {}",
                self.seeds.join(", ")
            )
            .unwrap();
        }
        if !self.cell_settings.is_empty() {
            out.push_str(".\n\n| cell | changes |\n|---|---|\n");
            for (name, changes) in &self.cell_settings {
                writeln!(out, "| {name} | {changes} |").unwrap();
            }
            out.push_str("\nRuns differ in more keys than fit as columns, so rows are named by run folder; the table above says what each changes");
        }
        out.push_str(". Accuracy is at the last position of each sequence (after 99 examples in context for sequences of 100); chance is 0.100. Runs meta-trained with every label permuted (`tasks.permute_labels_prob = 1`) are read on their seen and unseen tasks *with* their permutations (the `_permuted` groups), the only way they saw tasks. \"Plateau steps\" counts training steps whose smoothed loss stayed within 10 % of ln 10 before it first fell below (for a biased distribution, the loss of the sequences outside its fixed task); \"(no drop)\" marks rows where a run never left the plateau.\n\n");
        let with_params = self
            .rows
            .iter()
            .flat_map(|r| &r.runs)
            .any(|r| r.training.as_ref().is_some_and(|t| t.params.is_some()));
        let mut header: Vec<String> = self.varying.clone();
        header.push("runs".into());
        if with_params {
            header.extend(["params", "state size"].map(String::from));
        }
        header.extend(["final loss", "plateau steps"].map(String::from));
        header.extend(self.seen_unseen_columns());
        table_header(&mut out, &header);
        for row in &self.rows {
            let mut cells = row.key_values.clone();
            cells.push(row.runs.len().to_string());
            if with_params {
                let count = |f: fn(&TrainingSummary) -> Option<usize>| {
                    let values: Vec<usize> = row
                        .runs
                        .iter()
                        .filter_map(|r| f(r.training.as_ref()?))
                        .collect();
                    match values.first() {
                        Some(v) if values.iter().all(|w| w == v) => v.to_string(),
                        _ => cell(&values.iter().map(|&v| v as f64).collect::<Vec<_>>(), 0),
                    }
                };
                cells.push(count(|t| t.params));
                cells.push(count(|t| t.state_size));
            }
            let losses: Vec<f64> = row.runs.iter().filter_map(|r| r.final_loss()).collect();
            cells.push(cell(&losses, 3));
            let plateaus: Vec<f64> = row
                .runs
                .iter()
                .filter_map(|r| Some(r.plateau()?.steps_near_chance as f64))
                .collect();
            let stuck = row
                .runs
                .iter()
                .any(|r| r.plateau().is_some_and(|p| p.drop_step.is_none()));
            cells.push(cell(&plateaus, 0) + if stuck { " (no drop)" } else { "" });
            for d in &self.datasets {
                cells.push(cell(&row.acc_last(d, "seen"), 3));
                cells.push(cell(&row.acc_last(d, "unseen"), 3));
            }
            table_row(&mut out, &cells);
        }
        out.push_str("\n## Within-sequence improvement\n\nAccuracy at the last position minus accuracy at the first (no examples in context). Near 0 on seen tasks means instance memorisation (the answer is known without context), positive on seen tasks only means task identification, positive on unseen tasks and datasets means learning-to-learn (the paper's phases).\n\n");
        let mut header: Vec<String> = self.varying.clone();
        header.extend(self.seen_unseen_columns());
        table_header(&mut out, &header);
        for row in &self.rows {
            let mut cells = row.key_values.clone();
            for d in &self.datasets {
                for group in ["seen", "unseen"] {
                    cells.push(cell(&row.improvement(d, group), 3));
                }
            }
            table_row(&mut out, &cells);
        }
        out.push_str("\n## Learning curves on unseen tasks\n\nAccuracy after k examples in context (position k + 1 of the sequence); \"last\" is the last position.\n\n");
        let mut header: Vec<String> = self.varying.clone();
        header.push("dataset".into());
        header.extend(CURVE_POINTS.iter().map(|k| format!("k = {k}")));
        header.push("last".into());
        table_header(&mut out, &header);
        for row in &self.rows {
            for d in &self.datasets {
                let Some(curve) = row.mean_curve(d, "unseen") else {
                    continue;
                };
                let mut cells = row.key_values.clone();
                cells.push(d.clone());
                cells.extend(CURVE_POINTS.iter().map(|&k| {
                    curve
                        .get(k)
                        .map_or_else(|| "–".to_string(), |a| format!("{a:.3}"))
                }));
                cells.push(
                    curve
                        .last()
                        .map_or_else(|| "–".to_string(), |a| format!("{a:.3}")),
                );
                table_row(&mut out, &cells);
            }
        }
        self.progress_table(&mut out);
        self.icl_table(&mut out);
        if !self.unfinished.is_empty() {
            writeln!(
                out,
                "\nUnfinished (no final evaluation yet): {}.",
                self.unfinished.join(", ")
            )
            .unwrap();
        }
        out
    }

    /// The periodic evaluations on unseen tasks of the training dataset, at
    /// up to 10 evenly spaced evaluation steps, mean over each row's runs.
    fn progress_table(&self, out: &mut String) {
        let mut steps: Vec<u64> = self
            .rows
            .iter()
            .flat_map(|r| &r.runs)
            .filter_map(|r| r.training.as_ref())
            .flat_map(|t| t.unseen_progress.iter().map(|&(s, _)| s))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        if steps.is_empty() {
            return;
        }
        let stride = steps.len().div_ceil(10);
        let mut shown: Vec<u64> = steps.iter().copied().step_by(stride).collect();
        if shown.last() != steps.last() {
            shown.push(*steps.last().expect("not empty"));
        }
        out.push_str("\n## Unseen-task accuracy during meta-training\n\nPeriodic evaluations on unseen tasks of the training dataset (accuracy at the last position) at these steps. Unlike the training loss, this is not lowered by memorising the fixed task of a biased distribution.\n\n");
        let mut header = self.varying.clone();
        header.extend(shown.iter().map(|s| format!("step {s}")));
        table_header(out, &header);
        for row in &self.rows {
            let mut cells = row.key_values.clone();
            for step in &shown {
                let values: Vec<f64> = row
                    .runs
                    .iter()
                    .filter_map(|r| {
                        let t = r.training.as_ref()?;
                        t.unseen_progress
                            .iter()
                            .find(|(s, _)| s == step)
                            .map(|&(_, a)| a)
                    })
                    .collect();
                cells.push(cell(&values, 3));
            }
            table_row(out, &cells);
        }
    }

    /// Datasets with periodic in-context-learning signals in any run.
    fn icl_datasets(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| &r.runs)
            .filter_map(|r| r.training.as_ref())
            .flat_map(|t| t.icl_progress.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// When in-context learning formed: per row and periodically
    /// evaluated dataset, the first step whose unseen tasks gained at least
    /// [`ICL_ONSET_GAIN`] from their context, and the last gain measured.
    fn icl_table(&self, out: &mut String) {
        let datasets = self.icl_datasets();
        if datasets.is_empty() {
            return;
        }
        writeln!(out, "
## In-context learning during meta-training

From the periodic evaluations: on unseen tasks of each dataset, the first step at which accuracy at the last position exceeded accuracy at the first by at least {ICL_ONSET_GAIN} (\"onset\"; \"never\" if no evaluation did), and that gain at the last evaluation.\n").unwrap();
        let mut header = self.varying.clone();
        for d in &datasets {
            header.push(format!("{d} onset"));
            header.push(format!("{d} gain"));
        }
        table_header(out, &header);
        for row in &self.rows {
            let mut cells = row.key_values.clone();
            for d in &datasets {
                let trained: Vec<&TrainingSummary> = row
                    .runs
                    .iter()
                    .filter_map(|r| r.training.as_ref())
                    .filter(|t| t.icl_progress.contains_key(d))
                    .collect();
                let onsets: Vec<f64> = trained
                    .iter()
                    .filter_map(|t| t.icl_onset(d).map(|s| s as f64))
                    .collect();
                let never = trained.len() - onsets.len();
                cells.push(match (onsets.is_empty(), never) {
                    (true, 0) => "–".into(),
                    (true, _) => "never".into(),
                    (false, 0) => cell(&onsets, 0),
                    (false, n) => format!("{} ({n} never)", cell(&onsets, 0)),
                });
                let gains: Vec<f64> = trained
                    .iter()
                    .filter_map(|t| t.icl_progress[d].last().map(|p| p.1))
                    .collect();
                cells.push(cell(&gains, 3));
            }
            table_row(out, &cells);
        }
    }

    /// Plots the mean accuracy on unseen tasks of `dataset` against the
    /// number of examples in context, one line per row. Returns `false`
    /// when no row has such a curve.
    pub fn plot_curves(&self, path: &Path, dataset: &str) -> Result<bool> {
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .rows
            .iter()
            .filter_map(|row| {
                let curve = row.mean_curve(dataset, "unseen")?;
                Some((
                    row.label(),
                    curve
                        .into_iter()
                        .enumerate()
                        .map(|(k, a)| (k as f64, a))
                        .collect(),
                ))
            })
            .collect();
        if series.is_empty() {
            return Ok(false);
        }
        line_chart(
            path,
            &format!("{dataset}, unseen tasks: accuracy vs examples in context"),
            ("examples in context", "accuracy"),
            Some(0.0..1.0),
            &series,
        )?;
        Ok(true)
    }

    /// Every run's series of `f`, labelled by its row and seed.
    fn run_series(
        &self,
        f: impl Fn(&TrainingSummary) -> Vec<(f64, f64)>,
    ) -> Vec<(String, Vec<(f64, f64)>)> {
        self.rows
            .iter()
            .flat_map(|row| row.runs.iter().map(move |run| (row, run)))
            .filter_map(|(row, run)| {
                let points = f(run.training.as_ref()?);
                let seed = run.config.get("seed").map_or("", String::as_str);
                (!points.is_empty()).then(|| (format!("{} (seed {seed})", row.label()), points))
            })
            .collect()
    }

    /// Plots every run's training loss (trailing mean over the plateau
    /// window) and its periodic accuracy on unseen tasks against the step:
    /// `training-loss.svg` and `training-unseen.svg` in `dir`. Returns the
    /// files written.
    pub fn plot_training(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let window = PlateauCriteria::for_classes(gpicl_tasks::NUM_CLASSES).window;
        let mut written = Vec::new();
        let losses = self.run_series(|t| smoothed(&t.loss_curve, window));
        if !losses.is_empty() {
            let path = dir.join("training-loss.svg");
            line_chart(
                &path,
                &format!("training loss ({window}-step trailing mean; biased runs: outside the fixed task); chance ln 10 = 2.303"),
                ("step", "loss"),
                None,
                &losses,
            )?;
            written.push(path);
        }
        let progress = self.run_series(|t| {
            t.unseen_progress
                .iter()
                .map(|&(step, acc)| (step as f64, acc))
                .collect()
        });
        if !progress.is_empty() {
            let path = dir.join("training-unseen.svg");
            line_chart(
                &path,
                "accuracy on unseen tasks of the training dataset during meta-training",
                ("step", "accuracy at the last position"),
                Some(0.0..1.0),
                &progress,
            )?;
            written.push(path);
        }
        let datasets = self.icl_datasets();
        let gains: Vec<(String, Vec<(f64, f64)>)> = datasets
            .iter()
            .flat_map(|d| {
                self.run_series(|t| {
                    t.icl_progress.get(d).map_or_else(Vec::new, |points| {
                        points.iter().map(|&(s, g)| (s as f64, g)).collect()
                    })
                })
                .into_iter()
                .map(move |(label, points)| (format!("{d}: {label}"), points))
            })
            .collect();
        if !gains.is_empty() {
            let path = dir.join("training-icl.svg");
            line_chart(
                &path,
                "in-context learning during meta-training: unseen tasks, acc@last − acc@1",
                ("step", "accuracy gained from the context"),
                Some(-0.1..1.0),
                &gains,
            )?;
            written.push(path);
        }
        Ok(written)
    }

    /// Plots seen and unseen accuracy of `dataset` against the first
    /// numeric varying key (log₂ axis when every value is a power of two),
    /// one pair of lines per combination of the other varying keys.
    /// Returns `None` when no varying key is numeric.
    pub fn plot(&self, path: &Path, dataset: &str) -> Result<Option<String>> {
        let numeric = |i: usize| {
            self.rows
                .iter()
                .all(|r| r.key_values[i].parse::<f64>().is_ok())
        };
        let Some(axis) = (0..self.varying.len()).find(|&i| numeric(i)) else {
            return Ok(None);
        };
        let fail = |e: &dyn std::fmt::Display| EvalError::Output {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let xs: Vec<f64> = self
            .rows
            .iter()
            .map(|r| r.key_values[axis].parse::<f64>().expect("checked numeric"))
            .collect();
        let log2 = xs.iter().all(|&x| x >= 1.0 && (x.log2().fract() == 0.0));
        let to_x = |x: f64| if log2 { x.log2() } else { x };
        let (lo, hi) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(to_x(x)), b.max(to_x(x)))
            });
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 1.0, hi + 1.0)
        };
        let key = &self.varying[axis];
        let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{dataset}: accuracy after the sequence vs {key}"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0f64..1f64)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc(if log2 {
                format!("log2 {key}")
            } else {
                key.clone()
            })
            .y_desc("accuracy at the last position")
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(DashedLineSeries::new(
                [(lo, 0.1), (hi, 0.1)],
                4,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| fail(&e))?
            .label("chance")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
        // Series: rows sharing every other varying key's value.
        let mut series: BTreeMap<Vec<String>, Vec<(f64, &ReportRow)>> = BTreeMap::new();
        for (row, &x) in self.rows.iter().zip(&xs) {
            let mut others = row.key_values.clone();
            others.remove(axis);
            series.entry(others).or_default().push((to_x(x), row));
        }
        let palette = crate::plot::PALETTE;
        let mut colour_index = 0;
        for (others, mut points) in series {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            for group in ["seen", "unseen"] {
                let colour = palette[colour_index % palette.len()];
                colour_index += 1;
                let line: Vec<(f64, f64)> = points
                    .iter()
                    .filter_map(|(x, row)| Some((*x, mean_std(&row.acc_last(dataset, group))?.0)))
                    .collect();
                let label = if others.is_empty() {
                    group.to_string()
                } else {
                    format!("{group} ({})", others.join(", "))
                };
                chart
                    .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                    .map_err(|e| fail(&e))?
                    .label(label)
                    .legend(legend_mark(colour));
                chart
                    .draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(|e| fail(&e))?;
            }
        }
        finish_chart(&mut chart, &root, SeriesLabelPosition::UpperLeft, path)?;
        Ok(Some(key.clone()))
    }
}

/// Orders values numerically where they are numbers, as text otherwise.
#[derive(Clone, Debug)]
enum SortKey {
    Number(f64),
    Text(String),
}

impl SortKey {
    fn of(value: &str) -> Self {
        value
            .parse::<f64>()
            .map_or_else(|_| Self::Text(value.to_string()), Self::Number)
    }
}

impl PartialEq for SortKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for SortKey {}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.total_cmp(b),
            (Self::Number(_), Self::Text(_)) => std::cmp::Ordering::Less,
            (Self::Text(_), Self::Number(_)) => std::cmp::Ordering::Greater,
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
        }
    }
}

/// Reads every run in `sweep`, writes `report.md` and one
/// `accuracy-<dataset>.svg` per dataset (when a varying key is numeric)
/// into `out`. Returns the written paths.
pub fn write_sweep_report(sweep: &Path, out: &Path, command: &str) -> Result<Vec<PathBuf>> {
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
    if runs.is_empty() {
        return Err(input_error(
            sweep,
            format!(
                "no finished runs (run folders with eval/eval.json) here; unfinished: {}",
                if unfinished.is_empty() {
                    "none".to_string()
                } else {
                    unfinished.join(", ")
                }
            ),
        ));
    }
    let report = SweepReport::new(runs, unfinished);
    std::fs::create_dir_all(out).map_err(|e| EvalError::Output {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let title = format!(
        "Sweep report: {}",
        sweep.file_name().map_or_else(
            || sweep.display().to_string(),
            |n| n.to_string_lossy().into()
        )
    );
    let mut markdown = report.markdown(&title, command);
    let mut written = Vec::new();
    for dataset in &report.datasets {
        let svg = out.join(format!("accuracy-{dataset}.svg"));
        if let Some(key) = report.plot(&svg, dataset)? {
            writeln!(
                markdown,
                "\n![{dataset}: seen and unseen accuracy vs {key}](accuracy-{dataset}.svg)"
            )
            .unwrap();
            written.push(svg);
        }
    }
    for dataset in &report.datasets {
        let svg = out.join(format!("curves-{dataset}.svg"));
        if report.plot_curves(&svg, dataset)? {
            writeln!(
                markdown,
                "\n![{dataset}: accuracy on unseen tasks vs examples in context](curves-{dataset}.svg)"
            )
            .unwrap();
            written.push(svg);
        }
    }
    let training = report.plot_training(out)?;
    for path in &training {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        writeln!(markdown, "\n![{name}]({name})").unwrap();
    }
    written.extend(training);
    let md = out.join("report.md");
    std::fs::write(&md, markdown).map_err(|e| EvalError::Output {
        path: md.clone(),
        reason: e.to_string(),
    })?;
    written.insert(0, md);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::GroupResult;

    /// A fake finished run: config, a loss curve, and an evaluation with
    /// the given seen/unseen accuracy on MNIST.
    fn fake_run(root: &Path, name: &str, num_tasks: u64, seed: u64, seen: f32, unseen: f32) {
        let dir = RunDir::new(root.join(name));
        std::fs::create_dir_all(dir.eval()).unwrap();
        let mut cfg = TrainConfig::small();
        cfg.tasks.num_tasks = num_tasks;
        cfg.seed = seed;
        std::fs::write(dir.config(), toml::to_string(&cfg).unwrap()).unwrap();
        let log = MetricsLog::open(&dir.metrics());
        log.append(&RunRecord::Model(gpicl_meta::ModelRecord {
            step: 0,
            model: "transformer".into(),
            params: 1000 + num_tasks as usize,
            state_size: 64,
            n_x: 196,
        }))
        .unwrap();
        for step in 1..=60u64 {
            let loss = if step <= 30 {
                10f64.ln()
            } else {
                0.5 + seed as f64 * 0.1
            };
            log.append(&RunRecord::Train(gpicl_meta::StepMetrics {
                step,
                loss: loss as f32,
                ..Default::default()
            }))
            .unwrap();
            if step % 20 == 0 {
                let acc = unseen * step as f32 / 60.0;
                log.append(&RunRecord::Eval(gpicl_meta::EvalRecord {
                    step,
                    dataset: "mnist".into(),
                    group: "unseen".into(),
                    acc_first: 0.1,
                    acc_last: acc,
                    loss_last: 2.0,
                }))
                .unwrap();
            }
        }
        let group = |acc: f32| GroupResult::new(vec![0.1, acc], vec![2.3, 1.0], 8);
        let mut report = EvalReport {
            step: 60,
            ..Default::default()
        };
        report.datasets.insert(
            "mnist".into(),
            [
                ("seen".to_string(), group(seen)),
                ("unseen".to_string(), group(unseen)),
            ]
            .into(),
        );
        report.write(&dir.eval()).unwrap();
    }

    #[test]
    fn the_report_averages_seeds_per_configuration_and_plots_the_swept_key() {
        let root = std::env::temp_dir().join(format!("gpicl-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        fake_run(&root, "a", 16, 0, 0.9, 0.1);
        fake_run(&root, "b", 16, 1, 0.8, 0.2);
        fake_run(&root, "c", 1024, 0, 0.7, 0.6);
        // Started but not evaluated.
        let pending = RunDir::new(root.join("d"));
        std::fs::create_dir_all(pending.checkpoints()).unwrap();
        std::fs::write(
            pending.config(),
            toml::to_string(&TrainConfig::small()).unwrap(),
        )
        .unwrap();
        let out = root.join("report");
        let written = write_sweep_report(&root, &out, "cargo xtask report --sweep X").unwrap();
        let md = std::fs::read_to_string(&written[0]).unwrap();
        assert!(md.contains("| tasks.num_tasks | runs | params | state size | final loss | plateau steps | mnist seen | mnist unseen |"), "{md}");
        // 16 tasks: seeds 0 and 1 averaged; sample std of (0.9, 0.8) = 0.0707.
        assert!(
            md.contains("| 16 | 2 | 1016 | 64 | 0.550 ± 0.071 | "),
            "{md}"
        );
        assert!(md.contains("| 0.850 ± 0.071 | 0.150 ± 0.071 |"), "{md}");
        assert!(md.contains("| 1024 | 1 | 2024 | 64 | 0.500 | "), "{md}");
        assert!(md.contains("| 0.700 | 0.600 |"), "{md}");
        // Within-sequence improvement: last minus first position (0.1).
        assert!(md.contains("| 1024 | 0.600 | 0.500 |"), "{md}");
        // Learning curve on unseen tasks: the curve has 2 positions.
        assert!(
            md.contains("| 1024 | mnist | 0.100 | – | – | – | – | 0.600 |"),
            "{md}"
        );
        // Periodic unseen accuracy at steps 20, 40, 60 (linear in the step).
        assert!(
            md.contains("| tasks.num_tasks | step 20 | step 40 | step 60 |"),
            "{md}"
        );
        assert!(md.contains("| 1024 | 0.200 | 0.400 | 0.600 |"), "{md}");
        assert!(md.contains("seeds 0, 1"), "{md}");
        assert!(
            md.contains("Unfinished (no final evaluation yet): d."),
            "{md}"
        );
        // Plateau: 30 steps at chance; the trailing mean reaches the drop a few steps later.
        let row16 = md.lines().find(|l| l.starts_with("| 16 |")).unwrap();
        let plateau_cell = row16.split('|').nth(6).unwrap();
        let plateau: f64 = plateau_cell
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((30.0..=35.0).contains(&plateau), "{row16}");
        // In-context learning during training: onset at gain ≥ 0.1.
        assert!(
            md.contains("| tasks.num_tasks | mnist onset | mnist gain |"),
            "{md}"
        );
        assert!(md.contains("| 1024 | 20 | 0.500 |"), "{md}");
        assert!(md.contains("| 16 | 60 (1 never) | 0.050 ± 0.071 |"), "{md}");
        for plot in [
            "curves-mnist.svg",
            "training-loss.svg",
            "training-unseen.svg",
            "training-icl.svg",
        ] {
            assert!(written.contains(&out.join(plot)), "{plot} in {written:?}");
            assert!(md.contains(&format!("({plot})")), "{plot} linked");
        }
        let svg = out.join("accuracy-mnist.svg");
        assert!(written.contains(&svg));
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.contains("<svg") && text.contains("log2 tasks.num_tasks"),
            "plot axis"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn runs_that_never_leave_the_plateau_and_baselines_without_training_are_marked() {
        let root = std::env::temp_dir().join(format!("gpicl-report-stuck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        fake_run(&root, "trained", 16, 0, 0.9, 0.1);
        let stuck = RunDir::new(root.join("stuck"));
        fake_run(&root, "stuck", 64, 0, 0.1, 0.1);
        let log: String = (1..=60)
            .map(|step| {
                let record = RunRecord::Train(gpicl_meta::StepMetrics {
                    step,
                    loss: 2.3,
                    ..Default::default()
                });
                format!("{}\n", serde_json::to_string(&record).unwrap())
            })
            .collect();
        std::fs::write(stuck.metrics(), log).unwrap();
        // The SGD baseline: a config and an evaluation, no metrics log.
        fake_run(&root, "sgd", 256, 0, 0.5, 0.5);
        std::fs::remove_file(RunDir::new(root.join("sgd")).metrics()).unwrap();
        let out = root.join("report");
        let written = write_sweep_report(&root, &out, "x").unwrap();
        let md = std::fs::read_to_string(&written[0]).unwrap();
        let row = |prefix: &str| {
            md.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap()
                .to_string()
        };
        assert!(row("| 64 | 1 |").contains("| 60 (no drop) |"), "{md}");
        assert!(!row("| 16 | 1 |").contains("no drop"), "{md}");
        assert!(
            row("| 256 | 1 |").starts_with("| 256 | 1 | – | – | – | – | 0.500 | 0.500 |"),
            "{md}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_folder_without_finished_runs_is_an_error_naming_it() {
        let root = std::env::temp_dir().join(format!("gpicl-report-empty-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let err = write_sweep_report(&root, &root.join("out"), "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no finished runs") && err.contains(&root.display().to_string()),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_ablation_of_many_keys_names_rows_by_cell_and_lists_each_cells_change() {
        let group = |acc: f32| GroupResult::new(vec![0.1, acc], vec![2.3, 1.0], 8);
        let mut eval = EvalReport::default();
        eval.datasets
            .insert("mnist".into(), [("unseen".to_string(), group(0.5))].into());
        let base: BTreeMap<String, String> =
            (0..6).map(|i| (format!("k{i}"), "0".to_string())).collect();
        let runs: Vec<RunSummary> = (0..6)
            .map(|i| {
                let mut config = base.clone();
                if i > 0 {
                    config.insert(format!("k{i}"), "1".into());
                }
                RunSummary {
                    name: format!("{i:02}-cell"),
                    config,
                    training: None,
                    eval: eval.clone(),
                }
            })
            .collect();
        let report = SweepReport::new(runs, vec![]);
        assert_eq!(report.varying, vec!["cell"]);
        assert_eq!(report.rows.len(), 6);
        let md = report.markdown("t", "c");
        assert!(
            md.contains("| 00-cell | the most common setting of every key |"),
            "{md}"
        );
        assert!(md.contains("| 03-cell | `k3 = 1` |"), "{md}");
        assert!(md.contains("| cell | runs |"), "{md}");
    }

    #[test]
    fn always_permuted_runs_are_read_on_their_permuted_tasks() {
        let group = |acc: f32| GroupResult::new(vec![0.1, acc], vec![2.3, 1.0], 8);
        let mut eval = EvalReport::default();
        eval.datasets.insert(
            "mnist".into(),
            [
                ("seen".to_string(), group(0.2)),
                ("seen_permuted".to_string(), group(0.9)),
                ("unseen".to_string(), group(0.3)),
                ("unseen_permuted".to_string(), group(0.4)),
            ]
            .into(),
        );
        let run = |p: &str| RunSummary {
            name: p.into(),
            config: [("tasks.permute_labels_prob".to_string(), p.to_string())].into(),
            training: None,
            eval: eval.clone(),
        };
        let row = ReportRow {
            key_values: vec![],
            runs: vec![run("1.0")],
        };
        assert_eq!(row.acc_last("mnist", "seen"), vec![0.9f32 as f64]);
        assert_eq!(row.acc_last("mnist", "unseen"), vec![0.4f32 as f64]);
        let half = ReportRow {
            key_values: vec![],
            runs: vec![run("0.5")],
        };
        assert_eq!(half.acc_last("mnist", "seen"), vec![0.2f32 as f64]);
        assert_eq!(run("1.0").column_group("identity"), "identity");
    }

    #[test]
    fn numbers_sort_numerically_and_before_text() {
        let mut keys = ["1024", "16", "b", "2", "a"].map(SortKey::of).to_vec();
        keys.sort();
        assert_eq!(
            keys,
            [
                SortKey::Number(2.0),
                SortKey::Number(16.0),
                SortKey::Number(1024.0),
                SortKey::Text("a".into()),
                SortKey::Text("b".into())
            ]
        );
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
