//! `cargo xtask export`: a trained run as a learner to ship.

use anyhow::{Context, Result};
use clap::Args;
use gpicl::eval::learner_check::{check_learner, CHECK_FILE};
use gpicl::meta::{export_learner, RunDir};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// The trained run to export.
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
    /// The learner's folder, e.g. models/<name> (must hold no checkpoints yet).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let (from, to) = (RunDir::new(&args.run), RunDir::new(&args.out));
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
    let size = std::fs::metadata(&weights)?.len();
    println!(
        "exported {} ({:.2} MB of weights) with config.toml, results/ and {CHECK_FILE}",
        weights.display(),
        size as f64 / 1e6
    );
    for (dataset, groups) in &check.acc_last {
        println!(
            "  check, {dataset} unseen: acc@last {:.3} ({} sequences)",
            groups.get("unseen").copied().unwrap_or(f32::NAN),
            check.sequences
        );
    }
    Ok(())
}
