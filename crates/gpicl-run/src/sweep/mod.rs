//! Sweeps: the sweep file ([`spec`]: a grid of training runs crossed with
//! named variants), reading a sweep folder's runs ([`runs`]: which are
//! finished, what each measured) and the report over them: one table row
//! per configuration with the mean ± standard deviation over seeds
//! ([`stats`]), as Markdown ([`SweepReport::markdown`]) with plots of
//! accuracy against the swept quantity and of training (which series:
//! `sweep/plots.rs`; drawn by [`gpicl_eval::plot`]).
//!
//! Runs without an evaluation are listed as unfinished. The columns are the
//! config keys that differ between runs; `seed` is never a column but the
//! axis runs are averaged over.

mod markdown;
mod plots;
pub mod runs;
pub mod scaling;
pub mod spec;
pub mod stats;

pub use runs::{
    is_finished, read_runs, run_dirs, summarise_run, RunSummary, TrainingSummary, ICL_ONSET_GAIN,
};
pub use scaling::{fit_power_law, BatchPoint, BatchScaling, PowerLawFit};
pub use spec::{folder_safe, Cell, SweepSpec};
pub use stats::{ReportRow, SweepReport, MAX_KEY_COLUMNS};

use crate::error::{Result, RunError};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Reads every run in `sweep`, writes `report.md` and one
/// `accuracy-<dataset>.svg` per dataset (when a varying key is numeric)
/// into `out`. Returns the written paths.
pub fn write_sweep_report(sweep: &Path, out: &Path, command: &str) -> Result<Vec<PathBuf>> {
    let (runs, unfinished) = read_runs(sweep)?;
    if runs.is_empty() {
        return Err(RunError::input(
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
    std::fs::create_dir_all(out).map_err(|e| RunError::Output {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let kind = if gpicl_meta::RunDir::new(sweep).config().is_file() {
        "Run report"
    } else {
        "Sweep report"
    };
    let title = format!(
        "{kind}: {}",
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
    if let Some(scaling) = report.batch_scaling() {
        markdown.push_str(&scaling.markdown());
        let svg = out.join("plateau-batch.svg");
        scaling.plot(&svg)?;
        writeln!(
            markdown,
            "\n![plateau against batch size, log–log](plateau-batch.svg)"
        )
        .unwrap();
        written.push(svg);
    }
    let md = out.join("report.md");
    std::fs::write(&md, markdown).map_err(|e| RunError::Output {
        path: md.clone(),
        reason: e.to_string(),
    })?;
    written.insert(0, md);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_eval::report::{EvalReport, GroupResult};
    use gpicl_meta::{MetricsLog, RunDir, RunRecord, TrainConfig};
    use gpicl_testing::{absent_path, scratch_dir};

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
            run_id: None,
        }))
        .unwrap();
        for step in 1..=60u64 {
            let loss = if step <= 30 {
                10f64.ln()
            } else {
                0.5 + seed as f64 * 0.1
            };
            log.append(&RunRecord::Train(gpicl_meta::TrainRecord {
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
        let root = absent_path("report");
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
    fn with_a_width_and_a_task_axis_the_plot_runs_along_the_key_with_most_values() {
        let root = absent_path("report-two-axes");
        let cells = [
            (16, 16),
            (16, 256),
            (16, 4096),
            (64, 16),
            (64, 256),
            (64, 4096),
        ];
        for (i, &(d_model, tasks)) in cells.iter().enumerate() {
            let name = format!("cell-{i}");
            fake_run(&root, &name, tasks, 0, 0.9, 0.1);
            let path = RunDir::new(root.join(&name)).config();
            let mut cfg: TrainConfig =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            cfg.model.transformer.d_model = d_model;
            std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        }
        let out = root.join("report");
        let written = write_sweep_report(&root, &out, "cargo xtask report --sweep X").unwrap();
        let md = std::fs::read_to_string(&written[0]).unwrap();
        assert!(
            md.contains("accuracy vs tasks.num_tasks](accuracy-mnist.svg)"),
            "{md}"
        );
        let svg = std::fs::read_to_string(out.join("accuracy-mnist.svg")).unwrap();
        assert!(svg.contains("log2 tasks.num_tasks"), "x axis");
        for series in ["seen (16)", "unseen (16)", "seen (64)", "unseen (64)"] {
            assert!(svg.contains(series), "series {series}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_single_run_folder_is_reported_as_a_sweep_of_one() {
        let root = absent_path("report-one-run");
        fake_run(&root, "only", 1024, 0, 0.7, 0.6);
        let run = root.join("only");
        let out = root.join("report");
        let written = write_sweep_report(&run, &out, "cargo xtask report --run X").unwrap();
        let md = std::fs::read_to_string(&written[0]).unwrap();
        assert!(md.starts_with("# Run report: only"), "{md}");
        assert!(md.contains("1 finished run."), "{md}");
        assert!(md.contains("| 0.700 | 0.600 |"), "{md}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn runs_that_never_leave_the_plateau_and_baselines_without_training_are_marked() {
        let root = absent_path("report-stuck");
        fake_run(&root, "trained", 16, 0, 0.9, 0.1);
        let stuck = RunDir::new(root.join("stuck"));
        fake_run(&root, "stuck", 64, 0, 0.1, 0.1);
        let log: String = (1..=60)
            .map(|step| {
                let record = RunRecord::Train(gpicl_meta::TrainRecord {
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
    fn runs_at_several_batch_sizes_get_a_power_law_fit_of_their_plateau() {
        let root = absent_path("report-batch");
        // Unseen accuracy grows as `unseen · step / 60`: onset (gain ≥ 0.1
        // over 0.1 at the first position) at step 60, 40 and 20.
        for (name, seqs, unseen) in [("b16", 2, 0.25), ("b32", 4, 0.45), ("b64", 8, 0.9)] {
            fake_run(&root, name, 1024, 0, 0.9, unseen);
            let dir = RunDir::new(root.join(name));
            let mut cfg = TrainConfig::small();
            cfg.tasks.num_tasks = 1024;
            cfg.batch.tasks_per_step = 8;
            cfg.batch.seqs_per_task = seqs;
            std::fs::write(dir.config(), toml::to_string(&cfg).unwrap()).unwrap();
        }
        let out = root.join("report");
        let written = write_sweep_report(&root, &out, "x").unwrap();
        let md = std::fs::read_to_string(&written[0]).unwrap();
        assert!(md.contains("## The plateau against the batch size"), "{md}");
        assert!(md.contains("| 16 | 0 | 60 | "), "{md}");
        assert!(md.contains("| 64 | 0 | 20 | "), "{md}");
        // ln(20/60) / ln 4 = -0.79 through three points (least squares).
        let fit = fit_power_law(&[(16.0, 60.0), (32.0, 40.0), (64.0, 20.0)]).unwrap();
        assert!(
            md.contains(&format!("ICL onset: k = {:.2}", fit.exponent)),
            "{md}"
        );
        assert!(fit.exponent < -0.7, "{fit:?}");
        assert!(written.contains(&out.join("plateau-batch.svg")));
        assert!(md.contains("(plateau-batch.svg)"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_folder_without_finished_runs_is_an_error_naming_it() {
        let root = scratch_dir("report-empty");
        let err = write_sweep_report(&root, &root.join("out"), "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no finished runs") && err.contains(&root.display().to_string()),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
