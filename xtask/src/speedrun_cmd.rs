//! `cargo xtask speedrun`: trains a config from scratch and stops the
//! clock when the fixed learner bar (`gpicl_run::speedrun::BAR`) holds;
//! records go in docs/speedrun.md.

use crate::cpu::cpu_info;
use crate::progress::SpeedrunProgress;
use crate::train_cmd::{self, TrainArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use gpicl::meta::{MetaError, RunDir};
use gpicl::run::speedrun::{bar_description, BarCheck, SpeedrunCheck};
use gpicl::run::RunLearner;
use gpicl::tasks::DataRoots;
use serde::Serialize;
use std::time::Instant;

#[derive(Args)]
pub struct SpeedrunArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Check the learner bar every N training steps (schedule.eval_every);
    /// each check's cost counts in the time.
    #[arg(long, default_value_t = 250, value_name = "N")]
    check_every: u64,
}

/// What `speedrun.json` holds: enough to put the run in the records table.
#[derive(Serialize)]
struct SpeedrunRecord {
    /// UTC date and time the speedrun started.
    started_utc: String,
    /// The command line.
    command: String,
    /// The bar, in words.
    bar: String,
    /// CPU model and the threads the process could use.
    cpu: String,
    threads: usize,
    /// Whether the bar held before the run's steps ran out.
    reached: bool,
    /// Wall-clock seconds from the start of the command to the end of the
    /// passing check (or of the last check).
    wall_seconds: f64,
    /// Training steps and sequences seen by then.
    steps: u64,
    sequences: u64,
    /// Every check, in order.
    checks: Vec<BarCheck>,
}

pub fn run(args: SpeedrunArgs) -> Result<()> {
    let started = Instant::now();
    let started_utc = train_cmd::utc_timestamp();
    let train = &args.train;
    if train.from_step.is_some() {
        bail!("--from-step: a speedrun always starts from scratch (use train to resume a run)");
    }
    if args.check_every == 0 {
        bail!("--check-every must be at least 1");
    }
    let (dir, base) = match &train.out {
        Some(out) => (RunDir::new(out.clone()), None),
        None => {
            let base = train.base_config()?;
            let name = format!("speedrun-{}", base.1);
            (RunDir::new(train_cmd::default_run_dir(&name)), Some(base))
        }
    };
    if dir.exists() {
        bail!(
            "--out {} already holds a run; a speedrun starts from scratch, so name a new folder",
            dir.root().display()
        );
    }
    let mut cfg = train_cmd::resolve(train, &dir, base)?;
    cfg.train.schedule.eval_every = args.check_every;
    cfg.validate()?;
    if train.print_config {
        out!("{}", cfg.to_toml()?);
        return Ok(());
    }
    if cfg.learner == RunLearner::SgdBaseline {
        bail!("model.kind = \"sgd\": the SGD baseline is not meta-trained, so there is nothing to speedrun");
    }
    let roots = DataRoots::with_data_dir(train.data_dir.as_deref())?;
    let cpu = cpu_info();
    SpeedrunCheck::validate(&cfg.train)?;
    let mut trainer = cfg.open_trainer(dir.clone(), &roots, None)?;
    let c = trainer.config();
    let per_step = (c.batch.tasks_per_step * c.batch.seqs_per_task) as u64;
    outln!("speedrun {}", dir.root().display());
    outln!("bar: {}", bar_description());
    outln!(
        "{} with {} parameters; {} tasks, {} sequences of {} per step, at most {} steps, checked every {}; {} ({} threads)",
        c.model.kind,
        trainer.model().param_count(),
        c.tasks.num_tasks,
        per_step,
        c.batch.seq_len,
        c.schedule.steps,
        args.check_every,
        cpu.model,
        cpu.threads
    );
    let total = trainer.config().schedule.steps;
    let mut progress =
        SpeedrunProgress::new(&mut trainer, total, SpeedrunCheck::new(roots, started));
    crate::signals::install();
    let mut outcome = trainer.run(&mut progress);
    // The trainer leaves the last step to the caller's own evaluation:
    // check it here, so a run is never judged on an earlier model.
    let unchecked = progress.check.checks().last().map(|c| c.step) != Some(trainer.step());
    if outcome.is_ok() && progress.check.passed().is_none() && unchecked && trainer.step() > 0 {
        if let Err(e) = progress.check_now(&trainer) {
            outcome = Err(MetaError::Observer(format!("speedrun check failed: {e}")));
        }
    }
    progress.finish();
    let passed = progress.check.passed().cloned();
    let last = passed
        .clone()
        .or_else(|| progress.check.checks().last().cloned());
    let (wall_seconds, steps) = match &last {
        Some(check) => (check.seconds, check.step),
        None => (started.elapsed().as_secs_f64(), trainer.step()),
    };
    let record = SpeedrunRecord {
        started_utc,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        bar: bar_description(),
        cpu: cpu.model.clone(),
        threads: cpu.threads,
        reached: passed.is_some(),
        wall_seconds,
        steps,
        sequences: steps * per_step,
        checks: progress.check.checks().to_vec(),
    };
    let path = dir.root().join("speedrun.json");
    std::fs::write(&path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("writing {}", path.display()))?;
    match (outcome, &passed) {
        (Ok(()), _) | (Err(MetaError::Interrupted { .. }), Some(_)) => {}
        (Err(e), _) => return Err(e.into()),
    }
    match passed {
        Some(p) => outln!(
            "learner bar reached at step {} ({} sequences) in {:.1} s of wall time on {} ({} threads); record in {}",
            p.step,
            record.sequences,
            p.seconds,
            cpu.model,
            cpu.threads,
            path.display()
        ),
        None => {
            let best = record.checks.iter().max_by(|a, b| {
                let min = |c: &BarCheck| c.accuracy.values().copied().fold(f32::INFINITY, f32::min);
                min(a).total_cmp(&min(b))
            });
            let best = best.map_or_else(
                || "no check ran (fewer steps than --check-every)".to_string(),
                |c| {
                    let parts: Vec<String> =
                        c.accuracy.iter().map(|(d, a)| format!("{d} {a:.3}")).collect();
                    format!("best check at step {}: {}", c.step, parts.join(", "))
                },
            );
            outln!(
                "learner bar not reached in {} steps ({:.1} s); {best}; record in {}",
                trainer.step(),
                started.elapsed().as_secs_f64(),
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use gpicl_testing::absent_path;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        speedrun: SpeedrunArgs,
    }

    fn speedrun(args: &[&str]) -> Result<()> {
        run(Cli::parse_from(std::iter::once("speedrun").chain(args.iter().copied())).speedrun)
    }

    #[test]
    fn a_speedrun_that_misses_the_bar_records_every_check_and_says_so() {
        let out = absent_path("speedrun-miss");
        speedrun(&[
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "4",
            "--check-every",
            "2",
            "--set",
            "model.d_model=16",
            "--set",
            "model.key_size=4",
            "--set",
            "batch.tasks_per_step=2",
            "--set",
            "batch.seqs_per_task=2",
            "--set",
            "batch.curriculum_steps=0",
        ])
        .unwrap();
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("speedrun.json")).unwrap())
                .unwrap();
        assert_eq!(record["reached"], false);
        let checks = record["checks"].as_array().unwrap();
        let steps: Vec<u64> = checks.iter().map(|c| c["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [2, 4]);
        for check in checks {
            let acc = check["accuracy"].as_object().unwrap();
            let names: Vec<&str> = acc.keys().map(String::as_str).collect();
            assert_eq!(names, ["fashion_mnist", "mnist", "random"]);
            assert!(acc
                .values()
                .all(|a| (0.0..=1.0).contains(&a.as_f64().unwrap())));
            assert_eq!(check["passed"], false);
        }
        assert!(checks[0]["seconds"].as_f64().unwrap() <= checks[1]["seconds"].as_f64().unwrap());
        assert_eq!(record["steps"], 4);
        assert_eq!(record["sequences"], 16);
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_speedrun_refuses_an_existing_run_and_sequences_shorter_than_the_bar() {
        let out = absent_path("speedrun-refusals");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("config.toml"), "").unwrap();
        let err = format!(
            "{:#}",
            speedrun(&["--out", out.to_str().unwrap()]).unwrap_err()
        );
        assert!(err.contains("already holds a run"), "{err}");
        std::fs::remove_dir_all(&out).unwrap();
        let err = format!(
            "{:#}",
            speedrun(&[
                "--out",
                out.to_str().unwrap(),
                "--seq-len",
                "20",
                "--set",
                "batch.curriculum_steps=0"
            ])
            .unwrap_err()
        );
        assert!(
            err.contains("batch.seq_len") && err.contains("100"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}
