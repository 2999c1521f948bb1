//! Evaluating runs: after training (`eval-ood`) and periodically during it.

use crate::config::{RunConfig, RunLearner};
use crate::error::Result;
use gpicl_eval::sources::{default_datasets, load_eval_sources};
use gpicl_eval::{EvalConfig, EvalReport, Evaluator, Group};
use gpicl_meta::{load_run, EvalRecord, MetricsLog, Observer, RunDir, RunRecord, Trainer};
use gpicl_tasks::batch::load_example_source;
use gpicl_tasks::tabular::TABULAR_DATASET;
use gpicl_tasks::{DataRoots, ExampleSource, RANDOM_DATASET};

/// Appends one `{"kind": "eval", …}` line per dataset and group.
pub fn log_report(log: &MetricsLog, report: &EvalReport) -> Result<()> {
    for (dataset, groups) in &report.datasets {
        for (group, r) in groups {
            log.append(&RunRecord::Eval(EvalRecord {
                step: report.step,
                dataset: dataset.clone(),
                group: group.clone(),
                acc_first: r.acc_first,
                acc_last: r.acc_last,
                loss_last: r.loss_last,
            }))?;
        }
    }
    Ok(())
}

/// Evaluates the newest checkpoint of the run in `dir` with the full
/// protocol on `datasets` (default: the run's `eval.datasets`, or every
/// available dataset plus `random`), writes `eval/` and logs the results
/// (with `schedule.tensorboard`, the curves too: [`crate::curves`]).
/// `protocol` replaces the run's own `[eval]` options when given.
pub fn evaluate_run(
    dir: &RunDir,
    roots: &DataRoots,
    datasets: Option<Vec<String>>,
    protocol: Option<&EvalConfig>,
) -> Result<EvalReport> {
    evaluate_run_on(dir, roots, datasets, protocol, None)
}

/// [`evaluate_run`] on `device` (`cpu`, `cuda`, `cuda:N`) instead of the
/// device the run was trained on, when given.
pub fn evaluate_run_on(
    dir: &RunDir,
    roots: &DataRoots,
    datasets: Option<Vec<String>>,
    protocol: Option<&EvalConfig>,
    device: Option<&str>,
) -> Result<EvalReport> {
    let report = measure_run(dir, roots, datasets, protocol, device)?;
    report.write(&dir.eval())?;
    if dir.metrics().is_file() {
        log_report(&MetricsLog::open(&dir.metrics()), &report)?;
    }
    if RunConfig::load(&dir.config())?.train.schedule.tensorboard {
        crate::curves::write_curves(&dir.tensorboard(), &report)?;
    }
    Ok(report)
}

/// [`evaluate_run_on`] without writing anything: the report of the run's
/// newest checkpoint under `protocol` (default: the run's own).
pub fn measure_run(
    dir: &RunDir,
    roots: &DataRoots,
    datasets: Option<Vec<String>>,
    protocol: Option<&EvalConfig>,
    device: Option<&str>,
) -> Result<EvalReport> {
    measure_run_noting(
        dir,
        roots,
        datasets,
        protocol,
        device,
        &mut Vec::new(),
        None,
    )
}

/// [`measure_run`], adding to `skipped` the newer checkpoints that could
/// not be read and were passed over (so the caller can name them), and
/// telling `progress` (sequences done, sequences in all) after every chunk.
pub fn measure_run_noting(
    dir: &RunDir,
    roots: &DataRoots,
    datasets: Option<Vec<String>>,
    protocol: Option<&EvalConfig>,
    device: Option<&str>,
    skipped: &mut Vec<gpicl_meta::SkippedCheckpoint>,
    progress: Option<&dyn Fn(usize, usize)>,
) -> Result<EvalReport> {
    let saved = RunConfig::load(&dir.config())?;
    if saved.learner == RunLearner::SgdBaseline {
        return Err(crate::error::RunError::config(
            "model.kind",
            format!(
                "{} holds the SGD baseline, which has no checkpoint; evaluate it with `cargo xtask eval-ood --baseline sgd`",
                dir.root().display()
            ),
        ));
    }
    let name = match device {
        Some(name) => name.to_string(),
        None => saved.train.device.clone(),
    };
    let device = gpicl_kernels::device::parse_device(&name)?;
    let run = load_run(dir, &device)?;
    skipped.extend(run.skipped.iter().cloned());
    let cfg = &run.config;
    let eval_cfg = protocol.unwrap_or(&saved.eval);
    let names = datasets
        .or_else(|| (!eval_cfg.datasets.is_empty()).then(|| eval_cfg.datasets.clone()))
        .unwrap_or_else(|| default_datasets(roots, eval_cfg.split));
    let n_x = run.n_x;
    let sources = load_eval_sources(&names, roots, &cfg.data, eval_cfg.split, n_x)?;
    let family = gpicl_tasks::TaskFamily::new(cfg.tasks.task_seed, n_x, cfg.tasks.bias_std);
    let evaluator = Evaluator {
        model: run.model.as_ref(),
        family: &family,
        num_tasks: cfg.tasks.num_tasks,
        normalization: cfg.data.normalization,
        feature_normalization: cfg.data.feature_normalization,
        seq_len: cfg.batch.seq_len,
        device: &device,
        progress,
    };
    Ok(evaluator.evaluate(
        &sources,
        &Group::ALL,
        eval_cfg,
        eval_cfg.seqs_per_task,
        run.step,
    )?)
}

/// An evaluator of the model a run is training, with the run's task
/// family and preprocessing, on sequences of `seq_len`.
pub fn trainer_evaluator(trainer: &Trainer, seq_len: usize) -> Evaluator<'_> {
    let cfg = trainer.config();
    Evaluator {
        model: trainer.model(),
        family: trainer.family(),
        num_tasks: cfg.tasks.num_tasks,
        normalization: cfg.data.normalization,
        feature_normalization: cfg.data.feature_normalization,
        seq_len,
        device: trainer.device(),
        progress: None,
    }
}

/// Evaluates seen and unseen tasks every `schedule.eval_every` steps while
/// training, and logs the results to `metrics.jsonl` (with
/// `schedule.tensorboard`, each evaluation's curves too:
/// [`crate::curves`]).
pub struct PeriodicEval {
    roots: DataRoots,
    protocol: EvalConfig,
    sources: Option<Vec<ExampleSource>>,
    /// The newest periodic report, for progress displays.
    pub last: Option<EvalReport>,
}

impl PeriodicEval {
    /// Periodic evaluation reading datasets from `roots`, under the run's
    /// `protocol` (`periodic_datasets`, `periodic_seqs_per_task`, …).
    pub fn new(roots: DataRoots, protocol: EvalConfig) -> Self {
        Self {
            roots,
            protocol,
            sources: None,
            last: None,
        }
    }

    /// Evaluates the trainer's current model.
    pub fn evaluate(&mut self, trainer: &Trainer) -> Result<EvalReport> {
        let cfg = trainer.config();
        let protocol = &self.protocol;
        let n_x = trainer.family().n_x();
        if self.sources.is_none() {
            let names = if protocol.periodic_datasets.is_empty() {
                vec![cfg.data.dataset.clone()]
            } else {
                protocol.periodic_datasets.clone()
            };
            self.sources = Some(load_eval_sources(
                &names,
                &self.roots,
                &cfg.data,
                protocol.split,
                n_x,
            )?);
        }
        let groups: &[Group] = if cfg.tasks.permute_labels_prob > 0.0 {
            &[
                Group::Seen,
                Group::Unseen,
                Group::SeenPermuted,
                Group::UnseenPermuted,
            ]
        } else {
            &[Group::Seen, Group::Unseen]
        };
        let evaluator = trainer_evaluator(trainer, cfg.batch.seq_len);
        let report = evaluator.evaluate(
            self.sources.as_deref().unwrap_or_default(),
            groups,
            protocol,
            protocol.periodic_seqs_per_task,
            trainer.step(),
        )?;
        log_report(trainer.metrics(), &report)?;
        if cfg.schedule.tensorboard {
            crate::curves::write_curves(&trainer.dir().tensorboard(), &report)?;
        }
        Ok(report)
    }
}

impl Observer for PeriodicEval {
    fn on_eval(&mut self, trainer: &Trainer) -> gpicl_meta::Result<()> {
        let report = self.evaluate(trainer).map_err(|e| {
            gpicl_meta::MetaError::Observer(format!("periodic evaluation failed: {e}"))
        })?;
        self.last = Some(report);
        Ok(())
    }
}

/// Evaluates the SGD baseline (no run directory needed) with the protocol
/// and data options of `run`, on `datasets` (default: every dataset found
/// plus `random`) and `groups` (e.g. [`Group::ALL`]).
pub fn evaluate_sgd_baseline(
    run: &RunConfig,
    roots: &DataRoots,
    datasets: Option<Vec<String>>,
    groups: &[Group],
) -> Result<EvalReport> {
    run.validate()?;
    let (cfg, protocol) = (&run.train, &run.eval);
    let device = gpicl_kernels::device::parse_device(&cfg.device)?;
    let names = datasets
        .or_else(|| (!protocol.datasets.is_empty()).then(|| protocol.datasets.clone()))
        .unwrap_or_else(|| default_datasets(roots, protocol.split));
    let synthetic = |n: &&String| n.as_str() == RANDOM_DATASET || n.as_str() == TABULAR_DATASET;
    let n_x = match names.iter().find(|n| !synthetic(n)) {
        Some(name) => load_example_source(roots, name, protocol.split, &cfg.data)?.n_x(),
        None => gpicl_tasks::dataset::feature_count(&gpicl_tasks::DataConfig {
            dataset: RANDOM_DATASET.into(),
            ..cfg.data.clone()
        })?,
    };
    let sources = load_eval_sources(&names, roots, &cfg.data, protocol.split, n_x)?;
    let family = gpicl_tasks::TaskFamily::new(cfg.tasks.task_seed, n_x, cfg.tasks.bias_std);
    let baseline = gpicl_eval::baselines::SgdBaseline::new(
        &cfg.model.online,
        n_x,
        gpicl_tasks::NUM_CLASSES,
        cfg.seed,
        &device,
    );
    let evaluator = Evaluator {
        model: &baseline,
        family: &family,
        num_tasks: cfg.tasks.num_tasks,
        normalization: cfg.data.normalization,
        feature_normalization: cfg.data.feature_normalization,
        seq_len: cfg.batch.seq_len,
        device: &device,
        progress: None,
    };
    Ok(evaluator.evaluate(&sources, groups, protocol, protocol.seqs_per_task, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_tasks::dataset::embedded_data_dir;
    use std::cell::RefCell;
    use std::path::Path;

    #[test]
    fn progress_is_told_after_every_chunk_until_every_sequence_is_evaluated() {
        let dir = RunDir::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/gpicl-quickstart-7px"),
        );
        let protocol = EvalConfig {
            tasks_per_group: 2,
            seqs_per_task: 8,
            chunk_size: 4,
            ..EvalConfig::default()
        };
        let calls = RefCell::new(Vec::new());
        let tick = |done: usize, total: usize| calls.borrow_mut().push((done, total));
        let report = measure_run_noting(
            &dir,
            &DataRoots::only(vec![embedded_data_dir()]),
            Some(vec!["mnist".into(), "random".into()]),
            Some(&protocol),
            Some("cpu"),
            &mut Vec::new(),
            Some(&tick),
        )
        .unwrap();
        let sizes: Vec<usize> = report
            .datasets
            .values()
            .flat_map(|groups| groups.values().map(|r| r.sequences))
            .collect();
        // 2 tasks × 8 sequences per group, the identity group's one task × 8.
        assert!(sizes.iter().all(|&n| n == 16 || n == 8), "{sizes:?}");
        let total: usize = sizes.iter().sum();
        let calls = calls.into_inner();
        // One call per chunk of 4 sequences.
        assert_eq!(calls.len(), total / 4);
        assert!(calls.iter().all(|&(_, t)| t == total));
        assert!(calls.windows(2).all(|w| w[1].0 == w[0].0 + 4));
        assert_eq!(calls.last(), Some(&(total, total)));
    }

    #[test]
    fn sgd_learns_unseen_mnist_tasks_far_above_chance() {
        let mut cfg = RunConfig::default();
        cfg.eval.tasks_per_group = 4;
        cfg.eval.seqs_per_task = 24;
        cfg.eval.chunk_size = 64;
        let roots = DataRoots::only(vec![embedded_data_dir()]);
        let report = evaluate_sgd_baseline(
            &cfg,
            &roots,
            Some(vec!["mnist".into()]),
            &[Group::UnseenPermuted],
        )
        .unwrap();
        let unseen = &report.datasets["mnist"]["unseen_permuted"];
        eprintln!(
            "SGD on unseen MNIST tasks: acc@1 {:.3}, acc@100 {:.3}",
            unseen.acc_first, unseen.acc_last
        );
        assert!(unseen.acc_last > 0.4, "{}", unseen.acc_last);
        assert!(unseen.acc_first < 0.25, "{}", unseen.acc_first);
    }
}
