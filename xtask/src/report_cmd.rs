//! `cargo xtask report`: a Markdown report with tables and plots from a
//! sweep's run directories (`gpicl_run::sweep`).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReportArgs {
    /// A sweep folder (each subfolder with a config.toml is one run), or
    /// one run folder (also accepted as --run).
    #[arg(long, visible_alias = "run", value_name = "DIR")]
    sweep: PathBuf,
    /// Where report.md and the plots go [default: docs/experiments/<sweep folder name>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let name = args
        .sweep
        .file_name()
        .map_or_else(|| "sweep".to_string(), |n| n.to_string_lossy().into());
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("docs/experiments").join(&name));
    let command = format!("cargo xtask report --sweep {}", args.sweep.display());
    let written = gpicl::run::sweep::write_sweep_report(&args.sweep, &out, &command)?;
    for path in written {
        outln!("wrote {}", path.display());
    }
    Ok(())
}
