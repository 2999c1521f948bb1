//! `cargo xtask train`.

use crate::config_overrides;
use crate::model_flags::ModelFlags;
use crate::progress::TrainProgress;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gpicl::eval::Group;
use gpicl::meta::plateau::{plateau_of_run, PlateauCriteria};
use gpicl::meta::{MetricsLog, RunDir};
use gpicl::run::evaluate::{evaluate_run, evaluate_sgd_baseline, PeriodicEval};
use gpicl::run::{RunConfig, RunLearner};
use gpicl::tasks::DataRoots;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Built-in starting configs.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// A general-purpose in-context learner in about 10 minutes on 2 CPU cores (566 s on the Zen 3 VM, docs/results.md): the small Transformer with the CPU recipe (docs/experiments/recipe-cpu).
    Quickstart,
    /// The small Transformer with the paper's distribution (2^4 tasks, no recipe levers): the base of the CPU twins.
    Small,
    /// The paper's reference run (d_model 512, 2^16 tasks, 16×32 sequences, 50,000 steps).
    Paper,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Start from this TOML config (keys missing from it take the paper's defaults).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Built-in config to start from when no --config is given.
    #[arg(long, value_enum, default_value = "quickstart")]
    preset: Preset,
    /// Override any config key, e.g. --set optim.lr=3e-4 --set tasks.permute_labels_prob=1 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run directory [default: runs/<UTC timestamp>-<preset or config name>]. An existing run there is resumed.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Total training steps (schedule.steps); larger than a finished run's steps continues it.
    #[arg(long)]
    steps: Option<u64>,
    /// Seed of initial weights and the training stream (seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Number of training tasks, typically 2^k; 0 trains on raw data (tasks.num_tasks).
    #[arg(long)]
    num_tasks: Option<u64>,
    /// Meta-training dataset (data.dataset), e.g. mnist, fashion_mnist, random, omniglot, or a mixture such as mnist,fashion_mnist.
    #[arg(long)]
    dataset: Option<String>,
    /// Folder holding datasets as <name>/{train,t10k}-*-ubyte[.gz] (searched before GPICL_DATA_DIR and data/).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    #[command(flatten)]
    model: ModelFlags,
    /// Distinct tasks per step (batch.tasks_per_step).
    #[arg(long)]
    tasks_per_step: Option<usize>,
    /// Sequences per task (batch.seqs_per_task).
    #[arg(long)]
    seqs_per_task: Option<usize>,
    /// Examples per sequence (batch.seq_len).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Image side length after resizing, 0 to keep (data.image_size).
    #[arg(long)]
    image_size: Option<usize>,
    /// Learning rate (optim.lr).
    #[arg(long)]
    lr: Option<f64>,
    /// cpu, cuda or cuda:N (device).
    #[arg(long)]
    device: Option<String>,
    /// Start from the newest weights of this run or learner (e.g. models/gpicl-mnist-14px) instead of a fresh initialisation: fine-tuning (init_from).
    #[arg(long, value_name = "DIR")]
    init_from: Option<PathBuf>,
    /// Also log to TensorBoard event files in <run>/tensorboard/ (schedule.tensorboard).
    #[arg(long)]
    tensorboard: bool,
    /// Skip the evaluation after training.
    #[arg(long)]
    no_eval: bool,
    /// Resume from the checkpoint of this step instead of the newest (newer ones are kept aside as *.abandoned).
    #[arg(long, value_name = "STEP")]
    pub(crate) from_step: Option<u64>,
    /// Print the fully resolved config as TOML and exit without training.
    #[arg(long)]
    pub(crate) print_config: bool,
}

impl TrainArgs {
    /// The flags as `--set` assignments, applied before the explicit ones.
    fn flag_assignments(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push(format!("{key}={v}"));
            }
        };
        push("schedule.steps", self.steps.map(|v| v.to_string()));
        push("seed", self.seed.map(|v| v.to_string()));
        push("tasks.num_tasks", self.num_tasks.map(|v| v.to_string()));
        push(
            "data.dataset",
            self.dataset.as_ref().map(|v| format!("{v:?}")),
        );
        push(
            "batch.tasks_per_step",
            self.tasks_per_step.map(|v| v.to_string()),
        );
        push(
            "batch.seqs_per_task",
            self.seqs_per_task.map(|v| v.to_string()),
        );
        push("batch.seq_len", self.seq_len.map(|v| v.to_string()));
        push("data.image_size", self.image_size.map(|v| v.to_string()));
        push("optim.lr", self.lr.map(|v| format!("{v:e}")));
        push("device", self.device.as_ref().map(|v| format!("{v:?}")));
        push(
            "init_from",
            self.init_from
                .as_ref()
                .map(|p| format!("{:?}", p.display().to_string())),
        );
        push(
            "schedule.tensorboard",
            self.tensorboard.then(|| "true".to_string()),
        );
        out.extend(self.model.assignments());
        out.extend(self.set.iter().cloned());
        out
    }

    pub(crate) fn base_config(&self) -> Result<(RunConfig, String)> {
        match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --config {}", path.display()))?;
                let cfg = toml::from_str(&text)
                    .with_context(|| format!("--config {}", path.display()))?;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "config".into());
                Ok((cfg, name))
            }
            None => Ok(match self.preset {
                Preset::Quickstart => (RunConfig::quickstart(), "quickstart".into()),
                Preset::Small => (RunConfig::small(), "small".into()),
                Preset::Paper => (RunConfig::paper(), "paper".into()),
            }),
        }
    }
}

/// Resolves the config: an existing run's own config (only the schedule
/// and evaluation may change on resume), or a new one from --config or a
/// preset, then flags, then --set.
pub(crate) fn resolve(
    args: &TrainArgs,
    dir: &RunDir,
    base: Option<(RunConfig, String)>,
) -> Result<RunConfig> {
    let assignments = args.flag_assignments();
    if dir.exists() {
        let saved = RunConfig::load(&dir.config())?;
        let mut cfg: RunConfig = config_overrides::apply(&saved, &assignments)?;
        args.model.apply_heads(&mut cfg.train.model);
        let frozen = |c: &RunConfig| {
            let mut c = c.clone();
            c.train.schedule = Default::default();
            c.eval = Default::default();
            c.train.device = String::new();
            // What a diverged run needs changed to go on.
            c.train.optim.lr = 0.0;
            c.train.optim.clip_norm = 0.0;
            c
        };
        if frozen(&cfg) != frozen(&saved) {
            bail!(
                "{} holds a run with a different config; only schedule.*, eval.*, device, optim.lr and optim.clip_norm may change when resuming. Use another --out for a new run",
                dir.root().display()
            );
        }
        return Ok(cfg);
    }
    // --config is read once: it may be a pipe.
    let (base, _) = match base {
        Some(base) => base,
        None => args.base_config()?,
    };
    let mut cfg: RunConfig = config_overrides::apply(&base, &assignments)?;
    args.model.apply_heads(&mut cfg.train.model);
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(args: TrainArgs) -> Result<()> {
    let (dir, base) = match &args.out {
        Some(out) => (RunDir::new(out.clone()), None),
        None => {
            let base = args.base_config()?;
            (RunDir::new(default_run_dir(&base.1)), Some(base))
        }
    };
    let cfg = resolve(&args, &dir, base)?;
    if args.print_config {
        out!("{}", cfg.to_toml()?);
        return Ok(());
    }
    let roots = DataRoots::with_data_dir(args.data_dir.as_deref())?;
    if cfg.learner == RunLearner::SgdBaseline {
        return run_sgd_baseline(cfg, &dir, &roots);
    }
    let started = Instant::now();
    let mut trainer = cfg.open_trainer(dir.clone(), &roots, args.from_step)?;
    let params = trainer.model().param_count();
    if let Some(stale) = &trainer.lock().took_over_from {
        outln!(
            "took over the lock left by PID {} ({}, started {}), which is no longer running",
            stale.pid,
            stale.purpose,
            stale.started
        );
    }
    for skipped in trainer.skipped() {
        outln!(
            "skipped checkpoint {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    match trainer.resumed_from() {
        Some(path) => outln!(
            "resuming {} from {} (step {})",
            dir.root().display(),
            path.display(),
            trainer.step()
        ),
        None => outln!("run {}", dir.root().display()),
    }
    let c = trainer.config();
    outln!(
        "{} with {} parameters, state size {}; {} tasks, {}×{} sequences of {} per step, {} steps on {}",
        c.model.kind,
        params,
        trainer.model().state_size(c.batch.seq_len),
        c.tasks.num_tasks,
        c.batch.tasks_per_step,
        c.batch.seqs_per_task,
        c.batch.seq_len,
        c.schedule.steps,
        c.device
    );
    let total = c.schedule.steps;
    let mut progress = TrainProgress::new(
        &mut trainer,
        total,
        PeriodicEval::new(roots.clone(), cfg.eval.clone()),
    );
    crate::signals::install();
    let outcome = trainer.run(&mut progress);
    progress.finish();
    outcome?;
    outln!(
        "trained to step {} in {:.1}s; checkpoints in {}",
        trainer.step(),
        started.elapsed().as_secs_f64(),
        dir.checkpoints().display()
    );
    report_plateau(&dir)?;
    if !args.no_eval {
        let report = evaluate_run(&dir, &roots, None, None)?;
        outln!("\n{}", report.table());
        outln!("evaluation written to {}", dir.eval().display());
    }
    outln!("total wall time {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The SGD baseline has nothing to meta-train: its "run" is its config
/// and its evaluation, in the layout of a trained run, so sweeps, reports
/// and Slurm arrays treat it like any other learner (Table 2).
fn run_sgd_baseline(cfg: RunConfig, dir: &RunDir, roots: &DataRoots) -> Result<()> {
    std::fs::create_dir_all(dir.root())
        .with_context(|| format!("creating {}", dir.root().display()))?;
    let config = dir.config();
    std::fs::write(&config, cfg.to_toml()?)
        .with_context(|| format!("writing {}", config.display()))?;
    outln!(
        "run {}: the SGD baseline (a fresh {}-unit MLP per sequence, one Adam step per example at lr {}) needs no meta-training; evaluating",
        dir.root().display(),
        cfg.train.model.online.hidden,
        cfg.train.model.online.lr
    );
    let report = evaluate_sgd_baseline(&cfg, roots, None, &Group::ALL)?;
    report.write(&dir.eval())?;
    outln!("\n{}", report.table());
    outln!("evaluation written to {}", dir.eval().display());
    Ok(())
}

/// `runs/<UTC timestamp>-<name>`.
pub(crate) fn default_run_dir(name: &str) -> PathBuf {
    Path::new("runs").join(format!("{}-{name}", utc_timestamp()))
}

/// `YYYYMMDD-HHMMSS` in UTC, from the system clock.
pub(crate) fn utc_timestamp() -> String {
    let ((year, month, day), (h, m, sec)) = gpicl::meta::lock::utc_parts();
    format!("{year:04}{month:02}{day:02}-{h:02}{m:02}{sec:02}")
}

/// Prints the run's loss plateau and saves it as `plateau.json`.
fn report_plateau(dir: &RunDir) -> Result<()> {
    let criteria = PlateauCriteria::for_classes(gpicl::tasks::NUM_CLASSES);
    let plateau = plateau_of_run(&MetricsLog::open(&dir.metrics()), &criteria)?;
    match plateau.drop_step {
        Some(step) => outln!(
            "loss plateau: {} steps within {:.2} of chance (ln 10 = {:.3}) before the drop at step {step}",
            plateau.steps_near_chance, criteria.tolerance, criteria.chance_loss
        ),
        None => outln!(
            "loss plateau: the loss never fell below {:.2} (chance ln 10 = {:.3} minus {:.2}) in {} steps",
            criteria.chance_loss - criteria.tolerance,
            criteria.chance_loss,
            criteria.tolerance,
            plateau.last_step
        ),
    }
    let path = dir.plateau();
    std::fs::write(&path, serde_json::to_string_pretty(&plateau)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use gpicl_testing::{absent_path, scratch_dir};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    #[test]
    fn heads_resolve_against_the_model_kind_of_the_merged_config() {
        let tmp = scratch_dir("train-heads");
        let config = tmp.join("outer.toml");
        std::fs::write(&config, "[model]\nkind = \"outer-lstm\"\n").unwrap();
        let dir = RunDir::new(tmp.join("run"));
        let resolved = |args: &[&str]| {
            let cli = Cli::parse_from(std::iter::once("train").chain(args.iter().copied()));
            resolve(&cli.train, &dir, None).unwrap().train.model
        };
        let from_file = resolved(&["--config", config.to_str().unwrap(), "--heads", "2"]);
        assert_eq!(
            (from_file.outer_lstm.heads, from_file.transformer.num_heads),
            (2, 8)
        );
        let from_set = resolved(&[
            "--set",
            "model.kind=\"outer-lstm\"",
            "--set",
            "model.previous_token_input=false",
            "--heads",
            "3",
        ]);
        assert_eq!(
            (from_set.outer_lstm.heads, from_set.transformer.num_heads),
            (3, 4)
        );
        let transformer = resolved(&["--heads", "2"]);
        assert_eq!(
            (
                transformer.transformer.num_heads,
                transformer.outer_lstm.heads
            ),
            (2, 1)
        );
        let overridden = resolved(&["--set", "model.num_heads=6", "--heads", "2"]);
        assert_eq!(
            overridden.transformer.num_heads, 2,
            "--heads is applied after --set"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_dataset_list_whose_quotes_the_shell_ate_is_refused_before_training() {
        let out = absent_path("train-unquoted-list");
        let cli = Cli::parse_from([
            "train",
            "--preset",
            "quickstart",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "eval.periodic_datasets=[random]",
        ]);
        let err = format!("{:#}", run(cli.train).unwrap_err());
        assert!(
            err.contains("eval.periodic_datasets") && err.contains("[random]"),
            "{err}"
        );
        assert!(
            !RunDir::new(&out).config().exists(),
            "nothing is trained or written for a refused config"
        );
    }

    #[test]
    fn the_sgd_baseline_trains_nothing_and_leaves_a_finished_run_directory() {
        let out = absent_path("train-sgd");
        let cli = Cli::parse_from([
            "train",
            "--model",
            "sgd",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "eval.datasets=[\"random\"]",
            "--set",
            "eval.tasks_per_group=1",
            "--set",
            "eval.seqs_per_task=2",
            "--set",
            "batch.seq_len=12",
        ]);
        run(cli.train).unwrap();
        let dir = RunDir::new(&out);
        let saved = RunConfig::load(&dir.config()).unwrap();
        assert_eq!(saved.learner, RunLearner::SgdBaseline);
        let text = std::fs::read_to_string(dir.config()).unwrap();
        assert!(text.contains("[model]\nkind = \"sgd\"\n"), "{text}");
        assert!(gpicl::run::sweep::is_finished(&dir));
        assert!(!dir.metrics().exists(), "nothing was meta-trained");
        let eval: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.eval().join("eval.json")).unwrap())
                .unwrap();
        let curve = eval["datasets"]["random"]["unseen"]["acc_curve"]
            .as_array()
            .unwrap_or_else(|| panic!("{eval}"));
        assert_eq!(curve.len(), 12);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
