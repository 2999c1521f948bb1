//! `cargo xtask sweep`: a grid of training runs described by one TOML file,
//! run locally N at a time or emitted as a Slurm job array.
//!
//! A sweep file names a starting preset (or config file), overrides for
//! every cell (`[set]`) and the grid (`[grid]`: dotted config key → list of
//! values). Every combination is one cell and one ordinary run directory
//! under the sweep's output folder, trained by `cargo xtask train`, so a
//! cell can be inspected, evaluated or resumed like any run:
//!
//! ```toml
//! name = "transition-cpu"
//! preset = "quickstart"
//! [set]
//! "schedule.steps" = 2000
//! [grid]
//! "tasks.num_tasks" = [16, 256, 4096]
//! "model.d_model" = [32, 64]
//! ```
//!
//! A cell is finished when its `eval/eval.json` exists (training and the
//! final evaluation completed). `--resume` skips finished cells and resumes
//! the others from their checkpoints.

use crate::config_overrides;
use anyhow::{bail, Context, Result};
use clap::Args;
use gpicl::eval::RunConfig;
use gpicl::meta::RunDir;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Args)]
pub struct SweepArgs {
    /// The sweep file (TOML): name, preset or config, [set] and [grid].
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Cells trained at once; each gets an equal share of the CPU threads.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Continue a sweep whose folder exists: skip finished cells, resume the rest.
    #[arg(long)]
    resume: bool,
    /// Output folder [default: runs/sweeps/<name>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write a Slurm job-array script (one cell per array task) into DIR instead of running.
    #[arg(long, value_name = "DIR")]
    emit_slurm: Option<PathBuf>,
    /// Folder holding datasets, passed on to every cell's `train`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Train every cell on this device (cpu, cuda or cuda:N) [default: the sweep's config].
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Print the cells and their status without running anything.
    #[arg(long)]
    dry_run: bool,
}

/// The sweep file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Names the default output folder `runs/sweeps/<name>`.
    pub name: String,
    /// Built-in starting config: `quickstart` (default), `small` or `paper`.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// A TOML config to start from instead of the preset, relative to the
    /// sweep file.
    pub config: Option<PathBuf>,
    /// Overrides for every cell: dotted key → value.
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// Named cells that are not a product of values, e.g. one per model
    /// at matched parameter counts: each `[[variants]]` table has a `name`
    /// and dotted-key overrides. The grid is crossed with every variant.
    #[serde(default)]
    pub variants: Vec<BTreeMap<String, toml::Value>>,
    /// The grid: dotted key → values. Axes vary in key order (the last
    /// key fastest).
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

fn default_preset() -> String {
    "quickstart".into()
}

/// One combination of grid values.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Folder name, e.g. `d_model-64__num_tasks-16`.
    pub name: String,
    /// `key=value` overrides: the sweep's `[set]`, then this cell's values.
    pub assignments: Vec<String>,
}

impl SweepSpec {
    /// Reads and checks a sweep file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let spec: Self =
            toml::from_str(&text).with_context(|| format!("sweep file {}", path.display()))?;
        if spec.grid.values().any(|v| v.is_empty()) {
            bail!(
                "sweep file {}: every [grid] key needs a non-empty list of values",
                path.display()
            );
        }
        if spec.grid.is_empty() && spec.variants.is_empty() {
            bail!(
                "sweep file {}: needs a [grid] or at least one [[variants]] table",
                path.display()
            );
        }
        Ok(spec)
    }

    /// The preset or config file every cell starts from, as `train` flags
    /// and as a config.
    fn base(&self, sweep_file: &Path) -> Result<(Vec<String>, RunConfig)> {
        if let Some(config) = &self.config {
            let path = sweep_file.parent().unwrap_or(Path::new(".")).join(config);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading config {}", path.display()))?;
            let cfg =
                toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
            return Ok((vec!["--config".into(), path.display().to_string()], cfg));
        }
        let cfg = match self.preset.as_str() {
            "quickstart" => RunConfig::quickstart(),
            "small" => RunConfig::small(),
            "paper" => RunConfig::paper(),
            other => bail!("sweep preset `{other}`: expected quickstart, small or paper"),
        };
        Ok((vec!["--preset".into(), self.preset.clone()], cfg))
    }

    /// Every cell, in grid order, each checked against the config (unknown
    /// keys, wrong types and impossible values are refused here, naming the
    /// cell, before anything runs).
    pub fn cells(&self, base: &RunConfig) -> Result<Vec<Cell>> {
        let fixed: Vec<String> = self.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cells = if self.variants.is_empty() {
            vec![Cell {
                name: String::new(),
                assignments: fixed,
            }]
        } else {
            self.variants
                .iter()
                .enumerate()
                .map(|(i, variant)| {
                    let name = match variant.get("name") {
                        Some(toml::Value::String(n)) if !n.is_empty() => folder_safe(n),
                        _ => bail!(
                            "[[variants]] table {} needs a non-empty `name` string",
                            i + 1
                        ),
                    };
                    let mut assignments = fixed.clone();
                    assignments.extend(
                        variant
                            .iter()
                            .filter(|(k, _)| k.as_str() != "name")
                            .map(|(k, v)| format!("{k}={v}")),
                    );
                    Ok(Cell { name, assignments })
                })
                .collect::<Result<Vec<_>>>()?
        };
        for (key, values) in &self.grid {
            let short = key.rsplit('.').next().unwrap_or(key);
            cells = cells
                .into_iter()
                .flat_map(|cell| {
                    values.iter().map(move |v| {
                        let part = format!("{short}-{}", folder_safe(&v.to_string()));
                        let mut assignments = cell.assignments.clone();
                        assignments.push(format!("{key}={v}"));
                        Cell {
                            name: if cell.name.is_empty() {
                                part
                            } else {
                                format!("{}__{part}", cell.name)
                            },
                            assignments,
                        }
                    })
                })
                .collect();
        }
        for cell in &cells {
            let cfg: RunConfig = config_overrides::apply(base, &cell.assignments)
                .with_context(|| format!("sweep cell {}", cell.name))?;
            cfg.validate()
                .with_context(|| format!("sweep cell {}", cell.name))?;
        }
        let mut names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!(
                "two sweep cells would share the folder {}: variant names and the last parts of grid keys must be distinct",
                w[0]
            );
        }
        Ok(cells)
    }
}

/// Keeps letters, digits, `.`, `-` and `_`; the rest becomes `_`.
fn folder_safe(value: &str) -> String {
    value
        .trim_matches('"')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a cell's run finished training and its final evaluation.
pub fn is_finished(run: &RunDir) -> bool {
    run.eval().join("eval.json").is_file()
}

/// The `train` arguments of one cell.
fn train_args(
    base_flags: &[String],
    cell: &Cell,
    out: &Path,
    data_dir: Option<&Path>,
) -> Vec<String> {
    let mut args = vec!["train".to_string()];
    args.extend(base_flags.iter().cloned());
    args.push("--out".into());
    args.push(out.join(&cell.name).display().to_string());
    if let Some(dir) = data_dir {
        args.push("--data-dir".into());
        args.push(dir.display().to_string());
    }
    for a in &cell.assignments {
        args.push("--set".into());
        args.push(a.clone());
    }
    args
}

/// Quotes an argument for a POSIX shell.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Writes `cells.txt` (one cell's `train` arguments per line) and
/// `<name>.sbatch`, a job array with one task per cell that runs `binary`.
/// Returns the script's path.
pub fn write_slurm(
    dir: &Path,
    name: &str,
    lines: &[Vec<String>],
    binary: &Path,
    sweep_file: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let cells = dir.join("cells.txt");
    let text: String = lines
        .iter()
        .map(|args| {
            let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
            quoted.join(" ") + "\n"
        })
        .collect();
    std::fs::write(&cells, text).with_context(|| format!("writing {}", cells.display()))?;
    let script = dir.join(format!("{}.sbatch", folder_safe(name)));
    let body = format!(
        r#"#!/bin/bash
# Generated by `cargo xtask sweep --config {sweep} --emit-slurm {dir}`.
# One array task per line of cells.txt; each is an ordinary `train` run that
# resumes from its checkpoints, so failed or pre-empted tasks can be resubmitted.
# Submit with: sbatch {script}
# Set GPICL_BIN to the xtask binary on the cluster if it lives elsewhere.
#SBATCH --job-name={name}
#SBATCH --array=0-{last}
#SBATCH --output={dir}/logs/%A_%a.log
set -euo pipefail
ARGS=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {cells})
eval exec "${{GPICL_BIN:-{binary}}}" "$ARGS"
"#,
        sweep = sweep_file.display(),
        dir = dir.display(),
        script = script.display(),
        name = folder_safe(name),
        last = lines.len().saturating_sub(1),
        cells = shell_quote(&cells.display().to_string()),
        binary = binary.display(),
    );
    std::fs::write(&script, body).with_context(|| format!("writing {}", script.display()))?;
    Ok(script)
}

pub fn run(args: SweepArgs) -> Result<()> {
    let spec = SweepSpec::load(&args.config)?;
    let (mut base_flags, base) = spec.base(&args.config)?;
    if let Some(device) = &args.device {
        base_flags.extend(["--device".to_string(), device.clone()]);
    }
    let cells = spec.cells(&base)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/sweeps").join(folder_safe(&spec.name)));
    let binary = std::env::current_exe().context("locating the xtask binary")?;
    if let Some(dir) = &args.emit_slurm {
        let lines: Vec<Vec<String>> = cells
            .iter()
            .map(|c| train_args(&base_flags, c, &out, args.data_dir.as_deref()))
            .collect();
        let script = write_slurm(dir, &spec.name, &lines, &binary, &args.config)?;
        println!(
            "{} cells; submit with: sbatch {}",
            cells.len(),
            script.display()
        );
        return Ok(());
    }
    let pending: Vec<&Cell> = cells
        .iter()
        .filter(|c| !is_finished(&RunDir::new(out.join(&c.name))))
        .collect();
    println!(
        "sweep {}: {} cells, {} finished, {} to run, into {}",
        spec.name,
        cells.len(),
        cells.len() - pending.len(),
        pending.len(),
        out.display()
    );
    if args.dry_run {
        for cell in &cells {
            let done = is_finished(&RunDir::new(out.join(&cell.name)));
            println!("  {} {}", if done { "done" } else { "todo" }, cell.name);
        }
        return Ok(());
    }
    if !args.resume && cells.iter().any(|c| out.join(&c.name).exists()) {
        bail!(
            "{} already holds this sweep's runs; pass --resume to skip finished cells and resume the others",
            out.display()
        );
    }
    // One sweep process per folder; each cell's `train` locks its own run.
    let _lock = gpicl::meta::RunLock::acquire(&out, "sweep")?;
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let jobs = args.jobs.max(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_job = (threads / jobs).max(1);
    let bar = ProgressBar::new(pending.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} cells {elapsed_precise} {msg}")
            .expect("valid template"),
    );
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(pending.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(cell) = pending.get(i) else { break };
                bar.set_message(cell.name.clone());
                let result = run_cell(&binary, &base_flags, cell, &out, &args, per_job);
                if let Err(e) = result {
                    failures
                        .lock()
                        .expect("no panics")
                        .push(format!("{}: {e:#}", cell.name));
                }
                bar.inc(1);
            });
        }
    });
    bar.finish();
    let failures = failures.into_inner().expect("no panics");
    if !failures.is_empty() {
        bail!(
            "{} of {} cells failed (logs in {}):\n  {}",
            failures.len(),
            pending.len(),
            logs.display(),
            failures.join("\n  ")
        );
    }
    println!("all {} cells finished in {}", cells.len(), out.display());
    Ok(())
}

/// Trains one cell in a child process with its output in `logs/<cell>.log`.
fn run_cell(
    binary: &Path,
    base_flags: &[String],
    cell: &Cell,
    out: &Path,
    args: &SweepArgs,
    threads: usize,
) -> Result<()> {
    let log_path = out.join("logs").join(format!("{}.log", cell.name));
    // Appending keeps the log of an interrupted attempt beside the resumed one.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let status = std::process::Command::new(binary)
        .args(train_args(base_flags, cell, out, args.data_dir.as_deref()))
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("starting {}", binary.display()))?;
    if !status.success() {
        bail!("train exited with {status}; see {}", log_path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> SweepSpec {
        toml::from_str(text).unwrap()
    }

    const TRANSITION: &str = r#"
        name = "t"
        [set]
        "schedule.steps" = 20
        [grid]
        "tasks.num_tasks" = [16, 256, 4096]
        "model.d_model" = [32, 64]
    "#;

    mod fuzz {
        use super::*;
        use crate::fuzzing;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(fuzzing::config(1_000))]

            #[test]
            fn mutated_sweep_files_expand_or_are_refused_without_panicking(
                edits in fuzzing::mutations(4)
            ) {
                let seed = std::fs::read(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/cpu/recipe.toml"),
                )
                .unwrap();
                let bytes = fuzzing::mutate(&seed, &edits);
                let dir = std::env::temp_dir().join(format!("gpicl-fuzz-sweep-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("mutated-sweep.toml");
                std::fs::write(&path, &bytes).unwrap();
                match SweepSpec::load(&path) {
                    Ok(sweep) => {
                        if let Ok((_, base)) = sweep.base(&path) {
                            let _ = sweep.cells(&base);
                        }
                    }
                    Err(e) => prop_assert!(format!("{e:#}").contains("mutated-sweep.toml"), "{e:#}"),
                }
            }
        }
    }

    #[test]
    fn the_grid_expands_to_every_combination_with_the_shared_overrides() {
        let cells = spec(TRANSITION).cells(&RunConfig::small()).unwrap();
        assert_eq!(cells.len(), 6);
        // Keys in order; the last key varies fastest.
        assert_eq!(cells[0].name, "d_model-32__num_tasks-16");
        assert_eq!(cells[1].name, "d_model-32__num_tasks-256");
        assert_eq!(cells[5].name, "d_model-64__num_tasks-4096");
        assert_eq!(
            cells[5].assignments,
            [
                "schedule.steps=20",
                "model.d_model=64",
                "tasks.num_tasks=4096"
            ]
        );
        let cfg: RunConfig =
            config_overrides::apply(&RunConfig::small(), &cells[4].assignments).unwrap();
        assert_eq!(
            (cfg.train.model.d_model, cfg.train.tasks.num_tasks),
            (64, 256)
        );
        assert_eq!(cfg.train.schedule.steps, 20);
    }

    #[test]
    fn variants_are_named_cells_crossed_with_the_grid() {
        let s = spec(
            r#"
            name = "state"
            [set]
            "schedule.steps" = 20
            [[variants]]
            name = "lstm-h86"
            "model.kind" = "lstm"
            "model.hidden" = 86
            [[variants]]
            name = "sgd"
            "model.kind" = "sgd"
            [grid]
            "seed" = [0, 1]
        "#,
        );
        let cells = s.cells(&RunConfig::small()).unwrap();
        let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lstm-h86__seed-0",
                "lstm-h86__seed-1",
                "sgd__seed-0",
                "sgd__seed-1"
            ]
        );
        assert_eq!(
            cells[1].assignments,
            [
                "schedule.steps=20",
                "model.hidden=86",
                "model.kind=\"lstm\"",
                "seed=1"
            ]
        );
        let nameless = spec("name = \"x\"\n[[variants]]\n\"seed\" = 1\n");
        let err = format!("{:#}", nameless.cells(&RunConfig::small()).unwrap_err());
        assert!(err.contains("needs a non-empty `name`"), "{err}");
    }

    #[test]
    fn a_bad_cell_is_refused_naming_the_cell_before_anything_runs() {
        let bad = spec("name = \"x\"\n[grid]\n\"model.d_modle\" = [8]\n");
        let err = format!("{:#}", bad.cells(&RunConfig::small()).unwrap_err());
        assert!(
            err.contains("d_modle-8") && err.contains("unknown key"),
            "{err}"
        );
        let impossible = spec("name = \"x\"\n[grid]\n\"model.d_model\" = [0, 32]\n");
        let err = format!("{:#}", impossible.cells(&RunConfig::small()).unwrap_err());
        assert!(err.contains("sweep cell d_model-0"), "{err}");
    }

    #[test]
    fn finished_cells_are_recognised_by_their_evaluation() {
        let root = std::env::temp_dir().join(format!("gpicl-sweep-{}", std::process::id()));
        let cells = spec(TRANSITION).cells(&RunConfig::small()).unwrap();
        let finished = RunDir::new(root.join(&cells[0].name));
        std::fs::create_dir_all(finished.eval()).unwrap();
        std::fs::write(finished.eval().join("eval.json"), "{}").unwrap();
        // Started but not finished: checkpoints only.
        let started = RunDir::new(root.join(&cells[1].name));
        std::fs::create_dir_all(started.checkpoints()).unwrap();
        let status: Vec<bool> = cells
            .iter()
            .map(|c| is_finished(&RunDir::new(root.join(&c.name))))
            .collect();
        assert_eq!(status, [true, false, false, false, false, false]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_slurm_script_is_an_array_with_one_task_per_cell() {
        let root = std::env::temp_dir().join(format!("gpicl-slurm-{}", std::process::id()));
        let s = spec(TRANSITION);
        let cells = s.cells(&RunConfig::small()).unwrap();
        let flags = vec!["--preset".to_string(), "quickstart".to_string()];
        let lines: Vec<Vec<String>> = cells
            .iter()
            .map(|c| train_args(&flags, c, Path::new("runs/sweeps/t"), None))
            .collect();
        let script = write_slurm(
            &root,
            "t",
            &lines,
            Path::new("/opt/gpicl/xtask"),
            Path::new("configs/t.toml"),
        )
        .unwrap();
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(text.contains("#SBATCH --array=0-5"), "{text}");
        assert!(text.contains("GPICL_BIN:-/opt/gpicl/xtask"), "{text}");
        let cells_txt = std::fs::read_to_string(root.join("cells.txt")).unwrap();
        let rows: Vec<&str> = cells_txt.lines().collect();
        assert_eq!(rows.len(), 6);
        assert_eq!(
            rows[5],
            "train --preset quickstart --out runs/sweeps/t/d_model-64__num_tasks-4096 \
             --set schedule.steps=20 --set model.d_model=64 --set tasks.num_tasks=4096"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn string_values_are_quoted_for_the_shell_and_safe_as_folder_names() {
        let s = spec("name = \"x\"\n[grid]\n\"data.dataset\" = [\"mnist\", \"fashion_mnist\"]\n");
        let cells = s.cells(&RunConfig::small()).unwrap();
        assert_eq!(cells[1].name, "dataset-fashion_mnist");
        assert_eq!(cells[1].assignments, ["data.dataset=\"fashion_mnist\""]);
        assert_eq!(
            shell_quote("data.dataset=\"mnist\""),
            "'data.dataset=\"mnist\"'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn every_committed_sweep_file_plans_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut files = Vec::new();
        for sub in [dir.clone(), dir.join("cpu")] {
            if let Ok(entries) = std::fs::read_dir(&sub) {
                files.extend(
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "toml")),
                );
            }
        }
        assert!(!files.is_empty(), "no sweep files under {}", dir.display());
        for file in files {
            let spec = SweepSpec::load(&file).unwrap();
            let (_, base) = spec.base(&file).unwrap();
            let cells = spec
                .cells(&base)
                .unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
            assert!(!cells.is_empty());
        }
    }
}
