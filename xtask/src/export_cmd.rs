//! `cargo xtask export`: a trained run as a learner to ship.

use anyhow::{Context, Result};
use clap::Args;
use gpicl::meta::{export_learner, RunDir};
use gpicl::run::learner_check::{check_learner, CHECK_FILE};
use gpicl::tasks::hub::{ModelManifest, MODEL_MANIFEST};
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
    ModelManifest::of_dir(dir)?.write(dir)?;
    outln!("wrote {}", dir.join(MODEL_MANIFEST).display());
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
    let weights = export_learner(&from, &to)?;
    // The run's own evaluation, as it was measured, travels with it.
    if from.eval().is_dir() {
        let results = to.root().join("results");
        std::fs::create_dir_all(&results)
            .with_context(|| format!("creating {}", results.display()))?;
        for entry in std::fs::read_dir(from.eval())? {
            let path = entry?.path();
            if path.is_file() {
                let target = results.join(path.file_name().expect("a file name"));
                std::fs::copy(&path, &target)
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
    }
    let check = check_learner(&to)?;
    let path = to.root().join(CHECK_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&check)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    write_manifest(to.root())?;
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
