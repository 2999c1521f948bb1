//! `cargo xtask export-metrics`: a run's `metrics.jsonl` as TensorBoard
//! event files, for runs made without `schedule.tensorboard`.

use anyhow::{bail, Result};
use clap::Args;
use gpicl::meta::tensorboard::export_metrics;
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
    let (path, records) = export_metrics(&run.metrics(), &run.tensorboard())?;
    outln!(
        "wrote {} ({records} records); view with `tensorboard --logdir {}`",
        path.display(),
        run.tensorboard().display()
    );
    Ok(())
}
