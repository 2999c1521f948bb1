//! The statistics of a sweep report: runs grouped into rows by the config
//! keys that differ between them (`seed` is never a column but the axis
//! runs are averaged over), mean ± sample standard deviation, trailing
//! means of curves.

use super::runs::RunSummary;
use std::collections::BTreeMap;

/// Mean and sample standard deviation (`None` for a single value).
pub(crate) fn mean_std(values: &[f64]) -> Option<(f64, Option<f64>)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std))
}

/// A table cell: the mean of `values` with `digits` decimals, ± their
/// sample standard deviation when there are several, `–` when none.
pub(crate) fn cell(values: &[f64], digits: usize) -> String {
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
        // Every key any run has: options at their default are left out of
        // written configs (e.g. `model.positions`), so runs differ in keys.
        let keys: Vec<String> = runs
            .iter()
            .flat_map(|r| r.config.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
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
            // The most common value of a key; `None` when most runs leave it out.
            let usual = |k: &str| {
                let mut counts: BTreeMap<Option<&str>, usize> = BTreeMap::new();
                for r in &runs {
                    *counts
                        .entry(r.config.get(k).map(String::as_str))
                        .or_default() += 1;
                }
                counts
                    .into_iter()
                    .max_by_key(|&(_, n)| n)
                    .and_then(|(v, _)| v.map(str::to_string))
            };
            let usual: Vec<(String, Option<String>)> =
                varying.iter().map(|k| (k.clone(), usual(k))).collect();
            for run in &runs {
                let changes: Vec<String> = usual
                    .iter()
                    .filter(|(k, v)| run.config.get(k) != v.as_ref())
                    .map(|(k, _)| {
                        format!(
                            "`{k} = {}`",
                            run.config.get(k).map_or("(default)", String::as_str)
                        )
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

    /// Datasets with periodic in-context-learning signals in any run.
    pub(crate) fn icl_datasets(&self) -> Vec<String> {
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
}

/// Trailing mean of `curve` over `window` points, one point per 10 steps
/// (plots need no more).
pub(crate) fn smoothed(curve: &[(u64, f64)], window: usize) -> Vec<(f64, f64)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_eval::report::{EvalReport, GroupResult};

    /// One run per config, named `00-cell`, `01-cell`, …, each with the
    /// same evaluation.
    fn cells(configs: Vec<BTreeMap<String, String>>) -> Vec<RunSummary> {
        let group = |acc: f32| GroupResult::new(vec![0.1, acc], vec![2.3, 1.0], 8);
        let mut eval = EvalReport::default();
        eval.datasets
            .insert("mnist".into(), [("unseen".to_string(), group(0.5))].into());
        configs
            .into_iter()
            .enumerate()
            .map(|(i, config)| RunSummary {
                name: format!("{i:02}-cell"),
                config,
                training: None,
                eval: eval.clone(),
            })
            .collect()
    }

    /// Six keys `k0`…`k5` at "0"; cell `i > 0` sets `k{i}` to "1".
    fn one_change_per_cell(i: usize) -> BTreeMap<String, String> {
        let mut config: BTreeMap<String, String> =
            (0..6).map(|k| (format!("k{k}"), "0".to_string())).collect();
        if (1..6).contains(&i) {
            config.insert(format!("k{i}"), "1".into());
        }
        config
    }

    #[test]
    fn an_ablation_of_many_keys_names_rows_by_cell_and_lists_each_cells_change() {
        let runs = cells((0..6).map(one_change_per_cell).collect());
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
    fn a_key_only_some_runs_write_is_a_change_of_those_runs() {
        // Most runs leave `model.positions` out of their config (its
        // default); the last one writes it.
        let runs = cells(
            (0..7)
                .map(|i| {
                    let mut config = one_change_per_cell(i);
                    if i == 6 {
                        config.insert("model.positions".into(), "rotary".into());
                    }
                    config
                })
                .collect(),
        );
        let md = SweepReport::new(runs, vec![]).markdown("t", "c");
        assert!(
            md.contains("| 06-cell | `model.positions = rotary` |"),
            "{md}"
        );
        assert!(
            md.contains("| 00-cell | the most common setting of every key |"),
            "{md}"
        );
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
}
