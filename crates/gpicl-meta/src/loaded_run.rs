//! Loading a trained run back for evaluation.

use crate::checkpoint::{list_checkpoints, load_checkpoint};
use crate::config::TrainConfig;
use crate::error::{MetaError, Result};
use crate::run_dir::RunDir;
use crate::trainer::SkippedCheckpoint;
use gpicl_kernels::{Device, KernelOptions};
use gpicl_models::{build_model, SequenceModel};
use gpicl_tasks::NUM_CLASSES;
use std::path::PathBuf;

/// A trained model loaded back from a run directory.
pub struct LoadedRun {
    /// The run's `config.toml`.
    pub config: TrainConfig,
    /// The model with the newest checkpoint's weights.
    pub model: Box<dyn SequenceModel>,
    /// Steps the checkpoint had completed.
    pub step: u64,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Features per example the model reads (`N_x`).
    pub n_x: usize,
    /// Newer checkpoints that could not be read (left in place).
    pub skipped: Vec<SkippedCheckpoint>,
}

/// Reads a run's config and newest checkpoint and rebuilds its model.
pub fn load_run(dir: &RunDir, device: &Device) -> Result<LoadedRun> {
    let config = TrainConfig::load(&dir.config())?;
    let mut checkpoints = list_checkpoints(&dir.checkpoints());
    if checkpoints.is_empty() {
        return Err(MetaError::Corrupt {
            path: dir.checkpoints(),
            reason: "no checkpoint: train the run first (`cargo xtask train --out DIR`)".into(),
        });
    }
    // The newest checkpoint that reads back whole and fits the config.
    let mut skipped = Vec::new();
    let mut first_error = None;
    while let Some((_, path)) = checkpoints.pop() {
        match load_model_at(&config, &path, device) {
            Ok(mut run) => {
                run.skipped = skipped;
                return Ok(run);
            }
            Err(e) => {
                skipped.push(SkippedCheckpoint {
                    path,
                    reason: e.to_string(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one checkpoint was tried"))
}

fn load_model_at(
    config: &TrainConfig,
    path: &std::path::Path,
    device: &Device,
) -> Result<LoadedRun> {
    let ckpt = load_checkpoint(path, device)?;
    // The run's precision on CUDA; a CPU evaluation stays in f32.
    let options = if device.is_cuda() {
        config.precision.kernel_options(KernelOptions::from_env())
    } else {
        KernelOptions::from_env()
    };
    let corrupt = |reason: String| MetaError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let n_x = gpicl_models::tokens::features_in(ckpt.meta.input_dim, NUM_CLASSES)
        .map_err(|e| corrupt(e.to_string()))?;
    let model = build_model(
        &config.model,
        n_x,
        NUM_CLASSES,
        config.batch.seq_len,
        config.seed,
        device,
        options,
    )?;
    model
        .params()
        .load(&ckpt.params)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(LoadedRun {
        config: config.clone(),
        model,
        step: ckpt.meta.step,
        checkpoint: path.to_path_buf(),
        n_x,
        skipped: Vec::new(),
    })
}
