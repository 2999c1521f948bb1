//! `cargo xtask inspect`: parameter count and state size of a model, from
//! flags or from a run directory or exported learner (`--run`).

use crate::config_overrides;
use crate::model_flags::ModelFlags;
use anyhow::{Context, Result};
use clap::Args;
use gpicl::kernels::KernelOptions;
use gpicl::models::build_model;
use gpicl::run::{RunConfig, RunLearner};
use gpicl::tasks::{dataset::feature_count, NUM_CLASSES};
use serde_json::json;

#[derive(Args)]
pub struct InspectArgs {
    /// Inspect the model of this run directory or exported learner
    /// (`models/<name>`): its config.toml is the starting point, flags and
    /// --set apply on top. Without it, the `paper` preset.
    #[arg(long, value_name = "DIR")]
    run: Option<std::path::PathBuf>,
    #[command(flatten)]
    model: ModelFlags,
    /// Image side length after resizing, 0 for the dataset's native size from the catalogue (data.image_size).
    #[arg(long)]
    image_size: Option<usize>,
    /// Override any config key (repeatable), e.g. --set model.num_layers=2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print {"params", "state_size", "modules", ...} as JSON.
    #[arg(long)]
    json: bool,
}

/// What `inspect` prints.
struct Inspection {
    name: String,
    params: usize,
    state: usize,
    modules: std::collections::BTreeMap<String, usize>,
    n_x: usize,
    seq_len: usize,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let Inspection {
        name,
        params,
        state,
        modules,
        n_x,
        seq_len: t,
    } = inspect(&args)?;
    if args.json {
        let out = json!({
            "model": name,
            "params": params,
            "state_size": state,
            "modules": modules,
            "n_x": n_x,
            "seq_len": t,
        });
        outln!("{out}");
    } else {
        outln!("{name} (N_x = {n_x}, T = {t})");
        outln!("parameters  {params}");
        outln!("state size  {state}");
        for (module, count) in &modules {
            outln!("  {module:<20} {count:>12}");
        }
    }
    Ok(())
}

fn inspect(args: &InspectArgs) -> Result<Inspection> {
    let mut assignments = args.model.assignments();
    if let Some(r) = args.image_size {
        assignments.push(format!("data.image_size={r}"));
    }
    assignments.extend(args.set.iter().cloned());
    let base = match &args.run {
        Some(dir) => {
            let path = dir.join("config.toml");
            RunConfig::load(&path).with_context(|| {
                format!(
                    "--run {}: expected a run directory or an exported learner (models/<name>) with a config.toml",
                    dir.display()
                )
            })?
        }
        None => RunConfig::paper(),
    };
    let mut run: RunConfig = config_overrides::apply(&base, &assignments)?;
    args.model.apply_heads(&mut run.train.model);
    run.validate()?;
    let cfg = &run.train;
    let n_x = feature_count(&cfg.data)?;
    let t = cfg.batch.seq_len;
    let device = gpicl::kernels::Device::Cpu;
    let (params, state, modules) = if run.learner == RunLearner::SgdBaseline {
        let sgd = gpicl::eval::baselines::SgdBaseline::new(
            &cfg.model.online,
            n_x,
            NUM_CLASSES,
            0,
            &device,
        );
        (
            0,
            gpicl::models::SequenceModel::state_size(&sgd, t),
            Default::default(),
        )
    } else {
        let model = build_model(
            &cfg.model,
            n_x,
            NUM_CLASSES,
            t,
            cfg.seed,
            &device,
            KernelOptions::from_env(),
        )?;
        (
            model.param_count(),
            model.state_size(t),
            model.params().count_by_module(),
        )
    };
    Ok(Inspection {
        name: run.learner_name(),
        params,
        state,
        modules,
        n_x,
        seq_len: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        inspect: InspectArgs,
    }

    fn inspect_with(flags: &[&str]) -> Result<Inspection> {
        let cli = Cli::try_parse_from(std::iter::once("inspect").chain(flags.iter().copied()))?;
        inspect(&cli.inspect)
    }

    #[test]
    fn a_shipped_learner_is_inspected_from_its_own_config() {
        let learner = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/gpicl-quickstart-7px"
        );
        let shipped = inspect_with(&["--run", learner]).unwrap();
        // The small Transformer reading the previous token, 7×7 inputs.
        assert_eq!(
            (shipped.params, shipped.n_x, shipped.seq_len),
            (114_762, 49, 100)
        );
        let plain = inspect_with(&[
            "--run",
            learner,
            "--set",
            "model.previous_token_input=false",
        ])
        .unwrap();
        assert_eq!(plain.params, 110_986);
        let err = inspect_with(&["--run", "/nonexistent/run"]).err().unwrap();
        assert!(
            format!("{err:#}").contains("--run /nonexistent/run"),
            "{err:#}"
        );
    }
}
