//! `cargo xtask inspect`: parameter count and state size of a model.

use crate::config_overrides;
use crate::model_flags::ModelFlags;
use anyhow::Result;
use clap::Args;
use gpicl::eval::{RunConfig, RunLearner};
use gpicl::kernels::KernelOptions;
use gpicl::models::build_model;
use gpicl::tasks::{dataset::feature_count, NUM_CLASSES};
use serde_json::json;

#[derive(Args)]
pub struct InspectArgs {
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

pub fn run(args: InspectArgs) -> Result<()> {
    let mut assignments = args.model.assignments();
    if let Some(r) = args.image_size {
        assignments.push(format!("data.image_size={r}"));
    }
    assignments.extend(args.set.iter().cloned());
    let mut run: RunConfig = config_overrides::apply(&RunConfig::paper(), &assignments)?;
    args.model.apply_heads(&mut run.train.model);
    run.validate()?;
    let cfg = &run.train;
    let n_x = feature_count(&cfg.data)?;
    let t = cfg.batch.seq_len;
    let device = gpicl::kernels::Device::Cpu;
    let (params, state, modules) = if run.learner == RunLearner::SgdBaseline {
        let sgd = gpicl::eval::baselines::SgdBaseline::new(
            &cfg.model,
            n_x + NUM_CLASSES,
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
            n_x + NUM_CLASSES,
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
    if args.json {
        let out = json!({
            "model": run.learner_name(),
            "params": params,
            "state_size": state,
            "modules": modules,
            "n_x": n_x,
            "seq_len": t,
        });
        outln!("{out}");
    } else {
        outln!("{} (N_x = {n_x}, T = {t})", run.learner_name());
        outln!("parameters  {params}");
        outln!("state size  {state}");
        for (module, count) in &modules {
            outln!("  {module:<20} {count:>12}");
        }
    }
    Ok(())
}
