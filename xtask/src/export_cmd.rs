//! `cargo xtask export`: a trained run as a learner to ship.

use anyhow::Result;
use clap::Args;
use gpicl::meta::RunDir;
use gpicl::run::export;
use gpicl::run::learner_check::CHECK_FILE;
use gpicl::tasks::hub::MODEL_MANIFEST;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ExportArgs {
    /// The trained run to export.
    #[arg(long, value_name = "DIR", required_unless_present = "manifest_only")]
    run: Option<PathBuf>,
    /// The learner's folder, e.g. models/<name> (must hold no checkpoints yet).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Only rewrite the learner folder's manifest.json (the sha256 of every
    /// file, checked after a Hub download), e.g. after editing its model card.
    #[arg(long, conflicts_with = "run")]
    manifest_only: bool,
}

fn write_manifest(dir: &Path) -> Result<()> {
    outln!("wrote {}", export::write_manifest(dir)?.display());
    Ok(())
}

pub fn run(args: ExportArgs) -> Result<()> {
    if args.manifest_only {
        if !args.out.join("config.toml").is_file() {
            anyhow::bail!(
                "{} holds no config.toml: --manifest-only expects an exported learner folder",
                args.out.display()
            );
        }
        return write_manifest(&args.out);
    }
    let run_dir = args
        .run
        .expect("clap requires --run without --manifest-only");
    let (from, to) = (RunDir::new(&run_dir), RunDir::new(&args.out));
    let exported = export::export_run(&from, &to)?;
    outln!("wrote {}", to.root().join(MODEL_MANIFEST).display());
    let (weights, check) = (exported.weights, exported.check);
    let size = std::fs::metadata(&weights)?.len();
    outln!(
        "exported {} ({:.2} MB of weights) with config.toml, results/, {CHECK_FILE} and {MODEL_MANIFEST}; write its model card README.md, then `cargo xtask export --manifest-only --out DIR`",
        weights.display(),
        size as f64 / 1e6
    );
    for (dataset, groups) in &check.acc_last {
        outln!(
            "  check, {dataset} unseen: acc@last {:.3} ({} sequences)",
            groups.get("unseen").copied().unwrap_or(f32::NAN),
            check.sequences
        );
    }
    Ok(())
}
