//! `cargo xtask bench`: median time of full meta-training steps, optionally
//! alternating with the PyTorch and JAX reference scripts of
//! `../shared/refs` (and this project's `xtask/refs`) in the same
//! invocation; `--suite` times every shape the science uses.

use crate::bench_refs::{
    median, preset_config, pytorch_step, run_reference, BenchPreset, ReferenceStep,
};
use crate::bench_suite;
use crate::config_overrides;
use crate::model_flags::ModelFlags;
use anyhow::{bail, Result};
use clap::Args;
use gpicl::kernels::KernelOptions;
use gpicl::meta::bench::{bench_training_step, BenchReport};
use gpicl::meta::TrainConfig;
use gpicl::tasks::dataset::feature_count;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// Start from this shape; model flags and --set apply on top.
    #[arg(long, value_enum, default_value = "paper")]
    preset: BenchPreset,
    #[command(flatten)]
    model: ModelFlags,
    /// Override any config key (repeatable), e.g. --set batch.seqs_per_task=32.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Device to time on: cpu, cuda or cuda:N (`--set precision=\"bf16\"` for bf16 products on CUDA).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Print the report as JSON (median_ms, fwd_ms, bwd_ms, opt_ms, gflops, ...).
    #[arg(long)]
    json: bool,
    /// Also run the PyTorch step of the same model and shape with this
    /// Python interpreter (`torch_step.py` for Transformers,
    /// `xtask/refs/recurrent_step.py` for the LSTM, the outer-product
    /// LSTM and VSML; JAX too at the reference shape), alternating with our runs,
    /// and print the ratios.
    #[arg(long, value_name = "PY")]
    compare_python: Option<PathBuf>,
    /// Time every shape the science uses (four Transformers, the reference
    /// LSTM, the outer-product LSTM at H = 64 and 256, VSML) against PyTorch
    /// (with --compare-python) in one invocation, in alternating rounds,
    /// and write suite.md and suite.json to --out.
    #[arg(long)]
    suite: bool,
    /// Training steps of the suite's bf16 quality check (f32 and bf16 from
    /// the same start on the same fresh teacher-labelled batches, at the
    /// reference and paper-d64 shapes, where the CPU runs bf16); 0 skips it.
    #[arg(long, default_value_t = 0)]
    quality_steps: usize,
    /// Folder of the suite's table and JSON.
    #[arg(long, default_value = "target/bench-suite")]
    out: PathBuf,
    /// Folder of `torch_step.py` and `jax_step.py`.
    #[arg(long, default_value = "../shared/refs")]
    refs_dir: PathBuf,
    /// Alternating rounds of (ours, PyTorch, JAX) with --compare-python or --suite.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Threads the Python references may use [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Time the composed candle ops instead of the fused kernels.
    #[arg(long)]
    composed: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut assignments = args.model.assignments();
    assignments.push(format!("device={:?}", args.device));
    assignments.extend(args.set.iter().cloned());
    let mut cfg: TrainConfig = config_overrides::apply(&preset_config(args.preset), &assignments)?;
    args.model.apply_heads(&mut cfg.model);
    let n_x = feature_count(&cfg.data)?;
    // GPICL_FUSED_KERNELS=0 or --composed: the composed references.
    let kernels = if args.composed {
        KernelOptions::composed()
    } else {
        KernelOptions::from_env()
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.suite {
        let report = bench_suite::run_suite(&bench_suite::SuiteOptions {
            python: args.compare_python.as_deref(),
            refs_dir: &args.refs_dir,
            rounds: args.rounds,
            steps: args.steps,
            warmup: args.warmup,
            threads,
            out: &args.out,
            quality_steps: args.quality_steps,
            kernels,
        })?;
        if args.json {
            outln!("{}", serde_json::to_string(&report)?);
        } else {
            out!("{}", bench_suite::markdown(&report));
            outln!("\nwritten to {}", args.out.display());
        }
        return Ok(());
    }
    let Some(python) = &args.compare_python else {
        let r = bench_training_step(&cfg, kernels, n_x, args.steps, args.warmup)?;
        if args.json {
            outln!("{}", serde_json::to_string(&r)?);
        } else {
            print_report(&r);
        }
        return Ok(());
    };

    let mut references = vec![("pytorch", pytorch_step(&cfg, n_x, &args.refs_dir)?)];
    if args.preset == BenchPreset::Reference && cfg == preset_config(BenchPreset::Reference) {
        references.push((
            "jax",
            ReferenceStep {
                script: args.refs_dir.join("jax_step.py"),
                args: Vec::new(),
            },
        ));
    }
    let mut ours = Vec::new();
    let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); references.len()];
    let mut failed: Vec<Option<String>> = vec![None; references.len()];
    let mut last = None;
    for round in 0..args.rounds.max(1) {
        let r = bench_training_step(&cfg, kernels, n_x, args.steps, args.warmup)?;
        errln!("round {round}: gpicl {:.1} ms", r.median_ms);
        ours.push(r.median_ms);
        last = Some(r);
        for (i, (name, step)) in references.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            match run_reference(python, step, &[], args.steps, args.warmup, threads) {
                Ok(timing) => {
                    errln!("round {round}: {name} {:.1} ms", timing.median_ms);
                    theirs[i].push(timing.median_ms);
                }
                Err(e) => {
                    errln!("{name}: {e:#}");
                    failed[i] = Some(format!("{e:#}"));
                }
            }
        }
    }
    let ours_ms = median(&ours);
    let mut report = serde_json::json!({
        "gpicl": last,
        "gpicl_median_ms": ours_ms,
        "rounds": args.rounds,
        "python_threads": threads,
        "cpu": crate::cpu::cpu_info(),
    });
    if !args.json {
        print_report(last.as_ref().expect("at least one round"));
        outln!(
            "\nmedian over {} rounds (each the median of {} steps):",
            args.rounds,
            args.steps
        );
        outln!("  gpicl    {ours_ms:8.1} ms");
    }
    for (i, (name, _)) in references.iter().enumerate() {
        if let Some(error) = &failed[i] {
            report[*name] = serde_json::json!({ "error": error });
            if !args.json {
                outln!("  {name:<8} not run: {error}");
            }
            continue;
        }
        let ms = median(&theirs[i]);
        report[*name] = serde_json::json!({ "median_ms": ms, "ratio": ours_ms / ms });
        if !args.json {
            outln!(
                "  {name:<8} {ms:8.1} ms   gpicl / {name} = {:.2}×",
                ours_ms / ms
            );
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    }
    if failed.iter().all(Option::is_some) {
        bail!("no reference script could be run with {}", python.display());
    }
    Ok(())
}

fn print_report(r: &BenchReport) {
    outln!(
        "{} ({} params, {} tokens/step): median {:.1} ms (min {:.1}, max {:.1}) = fwd {:.1} + bwd {:.1} + opt {:.1}; {:.0} tokens/s, {:.1} GFLOP/step at {:.1} GFLOP/s; peak RSS {} over {} steps",
        r.model,
        r.params,
        r.tokens_per_step,
        r.median_ms,
        r.min_ms,
        r.max_ms,
        r.fwd_ms,
        r.bwd_ms,
        r.opt_ms,
        r.tokens_per_s,
        r.flops_per_step / 1e9,
        r.gflops,
        r.peak_rss_mib
            .map_or("n/a".to_string(), |m| format!("{m:.0} MiB")),
        r.steps
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl::models::ModelKind;

    #[test]
    fn the_reference_preset_is_the_shape_of_the_python_scripts() {
        let cfg = preset_config(BenchPreset::Reference);
        assert_eq!(feature_count(&cfg.data).unwrap() + 10, 784 + 10);
        assert_eq!(cfg.batch.sequences(), 32);
        assert_eq!(
            cfg.model.transformer.d_model * cfg.model.transformer.widening_factor,
            1024
        );
        assert!(!cfg.model.transformer.gelu_tanh);
        assert_eq!(
            (
                cfg.optim.weight_decay,
                cfg.optim.clip_norm,
                cfg.optim.eps_root
            ),
            (0.0, 1.0, 0.0)
        );
        cfg.validate().unwrap();
        assert_eq!(
            preset_config(BenchPreset::ReferenceLstm).model.kind,
            ModelKind::Lstm
        );
    }
}
