//! `cargo xtask`: the gpicl command line.
//!
//! - `cargo xtask train`: meta-train a model (a new run, or resume one);
//! - `cargo xtask eval-ood`: evaluate a run (or the SGD baseline) on seen
//!   and unseen tasks and other datasets;
//! - `cargo xtask export`: a trained run as a learner to ship (models/);
//! - `cargo xtask inspect`: parameter count and state size of a model;
//! - `cargo xtask bench`: median time of full training steps;
//! - `cargo xtask data list|fetch|import|verify`: datasets from the Hugging
//!   Face Hub or local copies, cached and verified;
//! - `cargo xtask build-cuda`: a release binary with CUDA support, built
//!   with or without a GPU (docs/gpu.md);
//! - `cargo xtask gpu-check`: on a GPU machine, CUDA-vs-CPU parity and the
//!   paper-scale step benchmark in one command.
// The doc comments of the argument structs are clap's `--help` text, written
// for a terminal (`[FILE]`, `<name>`), not rustdoc Markdown.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

#[macro_use]
mod output;
mod bench_cmd;
mod bench_refs;
mod bench_suite;
mod build_cuda_cmd;
mod config_overrides;
mod cpu;
mod data_cmd;
mod eval_cmd;
mod export_cmd;
mod export_metrics_cmd;
#[cfg(test)]
use gpicl_testing::fuzzing;
mod gpu_check_cmd;
mod inspect_cmd;
mod model_flags;
mod predict_cmd;
mod progress;
mod report_cmd;
mod signals;
mod speedrun_cmd;
mod sweep_cmd;
mod train_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "gpicl: meta-train and evaluate general-purpose in-context learners",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Meta-train a sequence model on projected, label-permuted tasks, then
    /// evaluate it. Re-running with the same --out resumes from the newest
    /// checkpoint; a larger --steps continues training.
    Train(Box<train_cmd::TrainArgs>),
    /// Evaluate a trained run on seen, unseen and identity tasks of every
    /// dataset (labels permuted and not), as a table, JSON and SVG curves.
    EvalOod(eval_cmd::EvalArgs),
    /// Export a trained run as a learner to ship (config, weights without
    /// optimiser state, its evaluation and a reproducibility check), e.g.
    /// into models/<name>.
    Export(export_cmd::ExportArgs),
    /// Write a run's metrics.jsonl as TensorBoard event files into
    /// <run>/tensorboard/ (for runs trained without --tensorboard).
    ExportMetrics(export_metrics_cmd::ExportMetricsArgs),
    /// Use a meta-trained learner on your own data: the training rows of a
    /// table or image folder become its context, each test row a query;
    /// writes predicted labels and class probabilities as CSV.
    Predict(predict_cmd::PredictArgs),
    /// Print a model's parameter count, accessible state size and
    /// per-module breakdown.
    Inspect(inspect_cmd::InspectArgs),
    /// Time full meta-training steps (forward, backward, clipping, Adam) on
    /// a fixed batch and report medians.
    Bench(bench_cmd::BenchArgs),
    /// List, fetch (Hugging Face Hub), import (local copies) and verify
    /// datasets in gpicl's cache.
    Data(data_cmd::DataArgs),
    /// Train a grid of runs from a sweep file (configs/*.toml), N at a
    /// time, skipping finished cells with --resume; or emit a Slurm job array.
    Sweep(sweep_cmd::SweepArgs),
    /// Write a Markdown report (tables with mean ± std over seeds, SVG
    /// plots) from a sweep's run directories.
    Report(report_cmd::ReportArgs),
    /// Build a release binary with CUDA support (target/cuda/release/xtask),
    /// installing the CUDA 13.0 toolkit wheels if needed; no GPU required.
    BuildCuda(build_cuda_cmd::BuildCudaArgs),
    /// Type-check the workspace with the `cuda` feature (`cargo check`),
    /// with the same toolkit wheels and patched candle as build-cuda; no
    /// GPU required.
    CheckCuda(build_cuda_cmd::CheckCudaArgs),
    /// On a GPU machine: device info, CUDA-vs-CPU parity of every fused op
    /// and of 50 training steps, bf16 vs fp32, and the paper-scale
    /// Transformer step benchmark (with PyTorch eager when importable).
    GpuCheck(gpu_check_cmd::GpuCheckArgs),
    /// Train a config from scratch and stop the clock when the fixed
    /// learner bar holds (unseen MNIST ≥ 0.60, Fashion-MNIST ≥ 0.55,
    /// `random` ≥ 0.99 at the 100th example); records in docs/speedrun.md.
    Speedrun(Box<speedrun_cmd::SpeedrunArgs>),
}

fn main() {
    let cli = Cli::parse();
    gpicl::kernels::allocator::tune_for_training();
    let result = match cli.command {
        Command::Train(args) => train_cmd::run(*args),
        Command::EvalOod(args) => eval_cmd::run(args),
        Command::Export(args) => export_cmd::run(args),
        Command::ExportMetrics(args) => export_metrics_cmd::run(args),
        Command::Predict(args) => predict_cmd::run(args),
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Data(args) => data_cmd::run(args),
        Command::Sweep(args) => sweep_cmd::run(args),
        Command::Report(args) => report_cmd::run(args),
        Command::BuildCuda(args) => build_cuda_cmd::run(args),
        Command::CheckCuda(args) => build_cuda_cmd::check(args),
        Command::GpuCheck(args) => gpu_check_cmd::run(args),
        Command::Speedrun(args) => speedrun_cmd::run(*args),
    };
    if let Err(e) = result {
        errln!("error: {e:#}");
        std::process::exit(1);
    }
}
