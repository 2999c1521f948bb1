//! The plateau against the meta-batch size: the paper's claim that the
//! number of steps spent on the loss plateau falls as a power law in the
//! batch size, measured on a sweep whose runs differ in sequences per step.
//!
//! Two measures of the plateau's end per run: the onset of in-context
//! learning on unseen tasks (`TrainingSummary::sustained_icl_onset`, from
//! the periodic evaluations) and the end of the training-loss plateau (`Plateau`). Each
//! is fitted as `steps = c · batch^k` by least squares in log–log space.

use super::runs::RunSummary;
use super::stats::SweepReport;
use crate::error::Result;
use gpicl_eval::plot::{line_chart, Frame};
use std::path::Path;

/// Fewest distinct batch sizes a fit is made from.
pub const MIN_BATCH_SIZES: usize = 3;

/// `steps = prefactor · batch^exponent`, fitted in log–log space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerLawFit {
    /// The power `k`: negative when larger batches shorten the plateau.
    pub exponent: f64,
    /// The constant `c`.
    pub prefactor: f64,
    /// Points the fit was made from.
    pub points: usize,
}

impl PowerLawFit {
    /// The fitted steps at `batch`.
    pub fn at(&self, batch: f64) -> f64 {
        self.prefactor * batch.powf(self.exponent)
    }
}

/// Least-squares fit of `ln y = ln c + k ln x` over `points` (`x, y > 0`);
/// `None` with fewer than [`MIN_BATCH_SIZES`] distinct `x` or any
/// non-positive value.
pub fn fit_power_law(points: &[(f64, f64)]) -> Option<PowerLawFit> {
    if points.iter().any(|&(x, y)| !(x > 0.0 && y > 0.0)) {
        return None;
    }
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() < MIN_BATCH_SIZES {
        return None;
    }
    let n = points.len() as f64;
    let logs: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x.ln(), y.ln())).collect();
    let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let exponent = sxy / sxx;
    Some(PowerLawFit {
        exponent,
        prefactor: (mean_y - exponent * mean_x).exp(),
        points: points.len(),
    })
}

/// One run's place on the batch axis.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchPoint {
    /// Sequences per step (`tasks_per_step · seqs_per_task`).
    pub batch: f64,
    /// The run's seed (as written in its config).
    pub seed: String,
    /// First step with in-context learning on unseen tasks; `None`: never.
    pub onset: Option<u64>,
    /// Steps on the training-loss plateau, if the loss left it.
    pub loss_plateau: Option<u64>,
}

/// The plateau of every run against its batch size, with both fits.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchScaling {
    /// The dataset whose unseen tasks the onset is read on.
    pub dataset: String,
    /// One point per run, by batch size.
    pub points: Vec<BatchPoint>,
    /// Fit of the onset against the batch.
    pub onset_fit: Option<PowerLawFit>,
    /// Fit of the loss plateau against the batch.
    pub loss_plateau_fit: Option<PowerLawFit>,
}

fn sequences_per_step(run: &RunSummary) -> Option<f64> {
    let get = |key: &str| run.config.get(key)?.parse::<f64>().ok();
    Some(get("batch.tasks_per_step")? * get("batch.seqs_per_task")?)
}

impl SweepReport {
    /// The plateau against the batch size, when the finished runs span at
    /// least [`MIN_BATCH_SIZES`] batch sizes; the onset is read on the
    /// periodically evaluated dataset with the most onsets.
    pub fn batch_scaling(&self) -> Option<BatchScaling> {
        let runs: Vec<&RunSummary> = self.rows.iter().flat_map(|r| &r.runs).collect();
        let mut sizes: Vec<f64> = runs.iter().filter_map(|r| sequences_per_step(r)).collect();
        sizes.sort_by(f64::total_cmp);
        sizes.dedup();
        if sizes.len() < MIN_BATCH_SIZES {
            return None;
        }
        let dataset = self.icl_datasets().into_iter().max_by_key(|d| {
            runs.iter()
                .filter_map(|r| r.training.as_ref()?.sustained_icl_onset(d))
                .count()
        })?;
        let mut points: Vec<BatchPoint> = runs
            .iter()
            .filter_map(|run| {
                let training = run.training.as_ref()?;
                Some(BatchPoint {
                    batch: sequences_per_step(run)?,
                    seed: run.config.get("seed").cloned().unwrap_or_default(),
                    onset: training.sustained_icl_onset(&dataset),
                    loss_plateau: training
                        .plateau
                        .drop_step
                        .map(|_| training.plateau.steps_near_chance),
                })
            })
            .collect();
        points.sort_by(|a, b| a.batch.total_cmp(&b.batch).then(a.seed.cmp(&b.seed)));
        let fit = |f: fn(&BatchPoint) -> Option<u64>| {
            let xy: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| Some((p.batch, f(p)? as f64)))
                .collect();
            fit_power_law(&xy)
        };
        Some(BatchScaling {
            onset_fit: fit(|p| p.onset),
            loss_plateau_fit: fit(|p| p.loss_plateau),
            dataset,
            points,
        })
    }
}

impl BatchScaling {
    /// The report's section: one row per run and each fit's exponent.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "\n## The plateau against the batch size\n\nPer run: sequences per step, the onset of in-context learning on unseen `{}` tasks (first periodic evaluation whose accuracy at the last position beat the first by at least {}, at that evaluation and the next) and the steps on the training-loss plateau. Fits are least squares of log steps on log batch: `steps = c · batch^k`.\n\n| sequences per step | seed | ICL onset (step) | loss plateau (steps) |\n|---|---|---|---|\n",
            self.dataset,
            super::runs::ICL_ONSET_GAIN
        );
        let show = |v: Option<u64>| v.map_or_else(|| "never".to_string(), |s| s.to_string());
        for p in &self.points {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                p.batch,
                p.seed,
                show(p.onset),
                show(p.loss_plateau)
            ));
        }
        for (what, fit) in [
            ("ICL onset", self.onset_fit),
            ("loss plateau", self.loss_plateau_fit),
        ] {
            out.push_str(&match fit {
                Some(f) => format!(
                    "\n{what}: k = {:.2} (c = {:.0}, {} runs).",
                    f.exponent, f.prefactor, f.points
                ),
                None => format!(
                    "\n{what}: no fit (fewer than {MIN_BATCH_SIZES} batch sizes with a measured end)."
                ),
            });
        }
        out.push('\n');
        out
    }

    /// Plots both measures against the batch size on log–log axes, one
    /// line per seed and each fit as a line of its own.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let mut seeds: Vec<&str> = self.points.iter().map(|p| p.seed.as_str()).collect();
        seeds.sort();
        seeds.dedup();
        let mut series = Vec::new();
        for (what, f) in [
            (
                "ICL onset",
                (|p: &BatchPoint| p.onset) as fn(&BatchPoint) -> Option<u64>,
            ),
            ("loss plateau", |p: &BatchPoint| p.loss_plateau),
        ] {
            for seed in &seeds {
                let line: Vec<(f64, f64)> = self
                    .points
                    .iter()
                    .filter(|p| p.seed == *seed)
                    .filter_map(|p| Some((p.batch.log10(), (f(p)? as f64).log10())))
                    .collect();
                if !line.is_empty() {
                    series.push((format!("{what} (seed {seed})"), line));
                }
            }
        }
        let (lo, hi) = self.points.iter().fold((f64::INFINITY, 0f64), |(a, b), p| {
            (a.min(p.batch), b.max(p.batch))
        });
        for (what, fit) in [
            ("ICL onset", self.onset_fit),
            ("loss plateau", self.loss_plateau_fit),
        ] {
            if let Some(f) = fit {
                series.push((
                    format!("{what} fit: k = {:.2}", f.exponent),
                    [lo, hi]
                        .iter()
                        .map(|&b| (b.log10(), f.at(b).log10()))
                        .collect(),
                ));
            }
        }
        Ok(line_chart(
            path,
            &Frame {
                caption: "plateau against meta-batch size (log–log)",
                x_desc: "log10 sequences per step",
                y_desc: "log10 steps",
            },
            None,
            &series,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_law_is_recovered_exactly() {
        let points: Vec<(f64, f64)> = [16.0, 32.0, 64.0, 128.0, 256.0]
            .iter()
            .map(|&b| (b, 5000.0 * f64::powf(b, -0.5)))
            .collect();
        let fit = fit_power_law(&points).unwrap();
        assert!((fit.exponent + 0.5).abs() < 1e-9, "{fit:?}");
        assert!((fit.prefactor - 5000.0).abs() < 1e-6, "{fit:?}");
        assert!((fit.at(100.0) - 500.0).abs() < 1e-6);
    }

    #[test]
    fn too_few_batch_sizes_or_non_positive_steps_give_no_fit() {
        assert_eq!(
            fit_power_law(&[(16.0, 100.0), (16.0, 120.0), (32.0, 80.0)]),
            None
        );
        assert_eq!(
            fit_power_law(&[(16.0, 100.0), (32.0, 0.0), (64.0, 80.0)]),
            None
        );
        assert!(fit_power_law(&[(16.0, 100.0), (32.0, 90.0), (64.0, 80.0)]).is_some());
    }
}
