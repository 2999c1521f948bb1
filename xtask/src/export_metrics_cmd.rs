//! `cargo xtask export-metrics`: a run's `metrics.jsonl` (and its final
//! evaluation's curves) as TensorBoard event files, for runs made without
//! `schedule.tensorboard` (`gpicl_run::curves::export_tensorboard`).

use anyhow::{bail, Result};
use clap::Args;
use gpicl::meta::RunDir;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportMetricsArgs {
    /// The run whose metrics.jsonl to export.
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
    /// Write TensorBoard event files into <run>/tensorboard/ (the one
    /// format there is; required so that later formats can be added).
    #[arg(long, required = true)]
    tensorboard: bool,
}

pub fn run(args: ExportMetricsArgs) -> Result<()> {
    let run = RunDir::new(&args.run);
    if !run.metrics().is_file() {
        bail!(
            "{} holds no metrics.jsonl: --run expects a run folder made by `cargo xtask train`",
            args.run.display()
        );
    }
    debug_assert!(args.tensorboard);
    let written = gpicl::run::curves::export_tensorboard(&run)?;
    outln!(
        "wrote {} ({} records)",
        written.scalars.display(),
        written.records
    );
    if let Some(curves) = &written.curves {
        outln!("wrote {} (the final evaluation's curves)", curves.display());
    }
    outln!(
        "view with `tensorboard --logdir {}`",
        run.tensorboard().display()
    );
    Ok(())
}
