//! `cargo xtask bench`: median time of full meta-training steps.

use crate::config_overrides;
use crate::model_flags::ModelFlags;
use anyhow::Result;
use clap::Args;
use gpicl::meta::bench::bench_training_step;
use gpicl::meta::TrainConfig;
use gpicl::tasks::dataset::feature_count;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelFlags,
    /// Override any config key (repeatable), e.g. --set batch.seqs_per_task=32.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Print the report as JSON (median_ms, fwd_ms, bwd_ms, opt_ms, ...).
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut assignments = args.model.assignments();
    assignments.extend(args.set.iter().cloned());
    let cfg: TrainConfig = config_overrides::apply(&TrainConfig::paper(), &assignments)?;
    let n_x = feature_count(&cfg.data, (28, 28));
    let r = bench_training_step(&cfg, n_x, args.steps, args.warmup)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} ({} params, {} tokens/step): median {:.1} ms (min {:.1}, max {:.1}) = fwd {:.1} + bwd {:.1} + opt {:.1}; {:.0} tokens/s over {} steps",
            r.model, r.params, r.tokens_per_step, r.median_ms, r.min_ms, r.max_ms, r.fwd_ms, r.bwd_ms, r.opt_ms, r.tokens_per_s, r.steps
        );
    }
    Ok(())
}
