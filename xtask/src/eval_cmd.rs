//! `cargo xtask eval-ood`.

use crate::config_overrides;
use anyhow::{bail, Result};
use clap::Args;
use gpicl::eval::Group;
use gpicl::meta::{MetricsLog, RunDir, RunLock};
use gpicl::run::evaluate::{evaluate_sgd_baseline, log_report, measure_run_noting};
use gpicl::run::RunConfig;
use gpicl::tasks::DataRoots;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EvalArgs {
    /// Run directory to evaluate [default: the newest run under runs/].
    #[arg(long, value_name = "DIR")]
    run: Option<PathBuf>,
    /// Comma-separated meta-test datasets [default: the run's eval.datasets, else every dataset found plus random].
    #[arg(long, value_delimiter = ',')]
    datasets: Option<Vec<String>>,
    /// Folder holding datasets as <name>/{train,t10k}-*-ubyte[.gz] (searched before GPICL_DATA_DIR and data/).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Override evaluation options, e.g. --set eval.seqs_per_task=32 (repeatable; eval.* keys only, any key with --baseline).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Evaluate a baseline that needs no run directory instead: `sgd` (a fresh
    /// MLP per sequence trained online with Adam). Its protocol comes from the
    /// paper defaults and --set (e.g. --set model.learner_lr=1e-3).
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// Write eval.json, eval.md and SVG curves into this folder [default: the run's eval/; with --baseline: nowhere].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Evaluate on this device (cpu, cuda or cuda:N) [default: the run's device; cpu for --baseline].
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Print one JSON object {"<dataset>": {"<group>": {"acc_last", "loss_last", "acc_curve", ...}}} instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(name) = &args.baseline {
        return run_baseline(name, &args);
    }
    let dir = RunDir::new(match args.run {
        Some(run) => run,
        None => newest_run(Path::new("runs"))?,
    });
    if args
        .set
        .iter()
        .any(|s| !s.trim_start().starts_with("eval."))
    {
        bail!(
            "--set: eval-ood only changes eval.* options (got {:?})",
            args.set
        );
    }
    if !dir.root().is_dir() {
        bail!("--run {}: no such run folder", dir.root().display());
    }
    // eval/eval.json marks a sweep cell finished: never write it into a
    // run that a training process holds.
    let _lock = match &args.out {
        Some(_) => None,
        None => Some(RunLock::acquire(dir.root(), "eval-ood")?),
    };
    let saved = RunConfig::load(&dir.config())?;
    let overridden: RunConfig = config_overrides::apply(&saved, &args.set)?;
    overridden.validate()?;
    let protocol = overridden.eval;
    let roots = DataRoots::with_data_dir(args.data_dir.as_deref())?;
    let mut skipped = Vec::new();
    let bar = crate::progress::count_bar("evaluating", "sequences");
    let tick = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = measure_run_noting(
        &dir,
        &roots,
        args.datasets,
        Some(&protocol),
        args.device.as_deref(),
        &mut skipped,
        Some(&tick),
    );
    bar.finish_and_clear();
    let report = report?;
    for s in &skipped {
        errln!(
            "warning: skipped the unreadable checkpoint {}: {}",
            s.path.display(),
            s.reason
        );
    }
    let written = match &args.out {
        Some(out) => out.clone(),
        None => dir.eval(),
    };
    report.write(&written)?;
    if args.out.is_none() && dir.metrics().is_file() {
        log_report(&MetricsLog::open(&dir.metrics()), &report)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string(&report.to_json())?);
    } else {
        outln!("{} at step {}\n", dir.root().display(), report.step);
        out!("{}", report.table());
        outln!("\ncurves and tables written to {}", written.display());
    }
    Ok(())
}

fn run_baseline(name: &str, args: &EvalArgs) -> Result<()> {
    if name != "sgd" {
        bail!("--baseline `{name}`: the baselines that need no training are: sgd (MAML is meta-trained: `cargo xtask train --model maml`)");
    }
    if args.run.is_some() {
        bail!("--baseline and --run exclude each other");
    }
    let mut cfg: RunConfig = config_overrides::apply(&RunConfig::paper(), &args.set)?;
    if let Some(device) = &args.device {
        cfg.train.device = device.clone();
    }
    cfg.learner = gpicl::run::RunLearner::SgdBaseline;
    cfg.validate()?;
    let roots = DataRoots::with_data_dir(args.data_dir.as_deref())?;
    let report = evaluate_sgd_baseline(&cfg, &roots, args.datasets.clone(), &Group::ALL)?;
    if let Some(out) = &args.out {
        report.write(out)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string(&report.to_json())?);
    } else {
        outln!(
            "SGD baseline (fresh {}-unit MLP per sequence, one Adam step per example at lr {})\n",
            cfg.train.model.online.hidden,
            cfg.train.model.online.lr
        );
        out!("{}", report.table());
    }
    Ok(())
}

/// The most recently started or resumed run under `runs` (by the time its
/// config.toml was written).
fn newest_run(runs: &Path) -> Result<PathBuf> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| {
            Some((
                std::fs::metadata(p.join("config.toml"))
                    .ok()?
                    .modified()
                    .ok()?,
                p,
            ))
        })
        .collect();
    found.sort();
    match found.pop().map(|(_, p)| p) {
        Some(p) => Ok(p),
        None => bail!(
            "no run found under {}/; train one with `cargo xtask train` or pass --run DIR",
            runs.display()
        ),
    }
}
