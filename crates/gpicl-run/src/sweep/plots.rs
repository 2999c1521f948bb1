//! The plots of a sweep report: which series each chart shows. The charts
//! themselves are drawn by [`gpicl_eval::plot`].

use super::runs::TrainingSummary;
use super::stats::{mean_std, smoothed, ReportRow, SweepReport};
use crate::error::Result;
use gpicl_eval::plot::{key_chart, line_chart, Frame};
use gpicl_meta::plateau::PlateauCriteria;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl SweepReport {
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
            &Frame {
                caption: &format!("{dataset}, unseen tasks: accuracy vs examples in context"),
                x_desc: "examples in context",
                y_desc: "accuracy",
            },
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
    /// window), its periodic accuracy on unseen tasks and its in-context
    /// gain on unseen tasks against the step: `training-loss.svg`,
    /// `training-unseen.svg` and `training-icl.svg` in `dir`. Returns the
    /// files written.
    pub fn plot_training(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let window = PlateauCriteria::for_classes(gpicl_tasks::NUM_CLASSES).window;
        let mut written = Vec::new();
        let losses = self.run_series(|t| smoothed(&t.loss_curve, window));
        if !losses.is_empty() {
            let path = dir.join("training-loss.svg");
            line_chart(
                &path,
                &Frame {
                    caption: &format!("training loss ({window}-step trailing mean; biased runs: outside the fixed task); chance ln 10 = 2.303"),
                    x_desc: "step",
                    y_desc: "loss",
                },
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
                &Frame {
                    caption:
                        "accuracy on unseen tasks of the training dataset during meta-training",
                    x_desc: "step",
                    y_desc: "accuracy at the last position",
                },
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
                &Frame {
                    caption:
                        "in-context learning during meta-training: unseen tasks, acc@last − acc@1",
                    x_desc: "step",
                    y_desc: "accuracy gained from the context",
                },
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
        // The x axis is the numeric key with the most distinct values (the
        // swept grid, e.g. the task count), the others make the series (e.g.
        // one line per width); on a tie, the first such key.
        let distinct = |i: usize| {
            let mut values: Vec<&str> =
                self.rows.iter().map(|r| r.key_values[i].as_str()).collect();
            values.sort_unstable();
            values.dedup();
            values.len()
        };
        let Some(axis) = (0..self.varying.len())
            .filter(|&i| numeric(i))
            .rev()
            .max_by_key(|&i| distinct(i))
        else {
            return Ok(None);
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
        // Series: rows sharing every other varying key's value.
        let mut by_others: BTreeMap<Vec<String>, Vec<(f64, &ReportRow)>> = BTreeMap::new();
        for (row, &x) in self.rows.iter().zip(&xs) {
            let mut others = row.key_values.clone();
            others.remove(axis);
            by_others.entry(others).or_default().push((to_x(x), row));
        }
        let mut series = Vec::new();
        for (others, mut points) in by_others {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            for group in ["seen", "unseen"] {
                let line: Vec<(f64, f64)> = points
                    .iter()
                    .filter_map(|(x, row)| Some((*x, mean_std(&row.acc_last(dataset, group))?.0)))
                    .collect();
                let label = if others.is_empty() {
                    group.to_string()
                } else {
                    format!("{group} ({})", others.join(", "))
                };
                series.push((label, line));
            }
        }
        let x_desc = if log2 {
            format!("log2 {key}")
        } else {
            key.clone()
        };
        key_chart(
            path,
            &Frame {
                caption: &format!("{dataset}: accuracy after the sequence vs {key}"),
                x_desc: &x_desc,
                y_desc: "accuracy at the last position",
            },
            lo..hi,
            &series,
        )?;
        Ok(Some(key.clone()))
    }
}
