//! Opening a run, step by step: its training data, `--from-step`, the
//! newest usable checkpoint, and `init_from` weights for a fresh start
//! ([`super::Trainer::open_saving`] runs them in order).

use super::{set_aside, SkippedCheckpoint};
use crate::checkpoint::{load_checkpoint, LoadedCheckpoint};
use crate::config::TrainConfig;
use crate::error::{MetaError, Result};
use crate::identity::check_identity;
use crate::optim::Optimizer;
use crate::run_dir::RunDir;
use gpicl_kernels::{Device, Tensor};
use gpicl_models::transformer::TransformerConfig;
use gpicl_models::{ModelConfig, ModelKind, SequenceModel};
use gpicl_tasks::batch::load_example_source;
use gpicl_tasks::{BatchBuilder, DataRoots, Split, TaskFamily, TrainSampler};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The training data of a run being opened: the example source, its
/// input size, the task family and the batch builder over them.
pub(super) struct TrainingData {
    pub(super) source: gpicl_tasks::ExampleSource,
    pub(super) n_x: usize,
    pub(super) family: TaskFamily,
    pub(super) builder: BatchBuilder,
}

impl TrainingData {
    pub(super) fn load(cfg: &TrainConfig, roots: &DataRoots, device: &Device) -> Result<Self> {
        let source = load_example_source(roots, &cfg.data.dataset, Split::Train, &cfg.data)?;
        let n_x = source.n_x();
        let family = TaskFamily::new(cfg.tasks.task_seed, n_x, cfg.tasks.bias_std);
        let builder = BatchBuilder::new(
            family.clone(),
            cfg.data.normalization,
            cfg.batch.seq_len,
            device.clone(),
        )
        .with_feature_normalization(cfg.data.feature_normalization);
        Ok(Self {
            source,
            n_x,
            family,
            builder,
        })
    }

    /// The training distribution from its start.
    pub(super) fn fresh_sampler(self, cfg: &TrainConfig) -> TrainSampler {
        let sampler = TrainSampler::new(
            cfg.tasks.clone(),
            cfg.batch.clone(),
            self.builder,
            self.source,
            cfg.seed,
        );
        with_mixing(sampler, cfg)
    }

    /// The training distribution where a checkpoint left it.
    pub(super) fn resume_sampler(
        self,
        cfg: &TrainConfig,
        state: gpicl_tasks::SamplerState,
    ) -> Result<TrainSampler> {
        let sampler = TrainSampler::resume(
            cfg.tasks.clone(),
            cfg.batch.clone(),
            self.builder,
            self.source,
            state,
        )?;
        Ok(with_mixing(sampler, cfg))
    }
}

/// The synthetic data mixed into every step (`data.tabular_fraction`,
/// `data.random_fraction`).
pub(super) fn with_mixing(sampler: TrainSampler, cfg: &TrainConfig) -> TrainSampler {
    sampler
        .with_random_fraction(cfg.data.random_fraction)
        .with_tabular_fraction(cfg.data.tabular_fraction)
        .with_table_options(cfg.data.table_options())
}

/// `--from-step`: keeps the checkpoints up to `wanted` as candidates and
/// sets the newer ones aside (`*.abandoned`), or names the steps there are.
pub(super) fn abandon_checkpoints_after(
    dir: &RunDir,
    candidates: &mut Vec<(u64, PathBuf)>,
    wanted: u64,
) -> Result<Vec<SkippedCheckpoint>> {
    let Some(at) = candidates.iter().position(|(step, _)| *step == wanted) else {
        let steps: Vec<String> = candidates.iter().map(|(s, _)| s.to_string()).collect();
        return Err(MetaError::config(
            "--from-step",
            format!(
                "{} has no checkpoint of step {wanted}; it has steps [{}]",
                dir.checkpoints().display(),
                steps.join(", ")
            ),
        ));
    };
    candidates
        .split_off(at + 1)
        .into_iter()
        .map(|(_, newer)| {
            Ok(SkippedCheckpoint {
                path: set_aside(&newer, "abandoned")?,
                reason: format!("newer than --from-step {wanted}"),
            })
        })
        .collect()
}

/// What [`restore_newest_usable`] found.
pub(super) struct Restored {
    /// The checkpoint the model and optimiser now hold, if any.
    pub(super) chosen: Option<(PathBuf, LoadedCheckpoint)>,
    /// Newer checkpoints that could not be read, set aside as `*.corrupt`.
    pub(super) set_aside: Vec<SkippedCheckpoint>,
}

/// Restores the newest checkpoint of `candidates` that reads and belongs to
/// this run into `model` and `optimizer`. A checkpoint of another config is
/// an error (the config is at fault, the checkpoint is kept); unreadable
/// ones are set aside, unless none is usable, which is an error naming them.
pub(super) fn restore_newest_usable(
    dir: &RunDir,
    mut candidates: Vec<(u64, PathBuf)>,
    device: &Device,
    cfg: &TrainConfig,
    logged_id: Option<&str>,
    model: &dyn SequenceModel,
    optimizer: &mut dyn Optimizer,
) -> Result<Restored> {
    let identity_now = cfg.training_identity();
    let mut unusable = Vec::new();
    let mut chosen = None;
    while let Some((_, path)) = candidates.pop() {
        let restored = load_checkpoint(&path, device).and_then(|ckpt| {
            check_identity(&path, &ckpt, logged_id, &identity_now)?;
            ckpt.restore(&path, model.params(), optimizer)?;
            Ok(ckpt)
        });
        match restored {
            Ok(ckpt) => {
                chosen = Some((path, ckpt));
                break;
            }
            // The config is at fault, not the checkpoint: keep it.
            Err(e @ MetaError::Config { .. }) => return Err(e),
            Err(e) => unusable.push((path, e.to_string())),
        }
    }
    if chosen.is_none() && !unusable.is_empty() {
        let reasons: Vec<String> = unusable.iter().map(|(_, r)| r.clone()).collect();
        return Err(MetaError::Corrupt {
            path: dir.checkpoints(),
            reason: format!(
                "no checkpoint can be resumed from: {}. Move the folder away to start the run over",
                reasons.join("; ")
            ),
        });
    }
    let set_aside = unusable
        .into_iter()
        .map(|(path, reason)| {
            Ok(SkippedCheckpoint {
                path: set_aside(&path, "corrupt")?,
                reason,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Restored { chosen, set_aside })
}

/// Loads the newest weights of the run or learner `cfg.init_from` into
/// `model` (a fresh run's, built from the same `[model]` table).
pub(super) fn init_weights_from(
    model: &dyn SequenceModel,
    cfg: &TrainConfig,
    n_x: usize,
    device: &Device,
) -> Result<()> {
    let source_dir = RunDir::new(&cfg.init_from);
    if !source_dir.config().is_file() {
        return Err(MetaError::config(
            "init_from",
            format!(
                "`{}` holds no run or learner (no config.toml there); expected a run folder or a shipped learner such as models/gpicl-mnist-14px",
                cfg.init_from
            ),
        ));
    }
    let source = crate::loaded_run::load_run(&source_dir, device)?;
    let trained: BTreeMap<String, Tensor> = source
        .model
        .params()
        .iter()
        .map(|(name, var)| (name.to_string(), var.as_tensor().clone()))
        .collect();
    if let Some(trained_layers) = deepening(&source.config.model, &cfg.model) {
        if source.n_x == n_x {
            let fresh = model
                .params()
                .iter()
                .map(|(name, var)| (name.to_string(), var.as_tensor().clone()))
                .collect();
            let grown =
                gpicl_models::transformer::deepened_weights(&trained, trained_layers, &fresh)?;
            model.params().load(&grown)?;
            return Ok(());
        }
    }
    if source.config.model != cfg.model || source.n_x != n_x {
        let ours = toml::to_string(&cfg.model).unwrap_or_default();
        let theirs = toml::to_string(&source.config.model).unwrap_or_default();
        let differing: Vec<String> = ours
            .lines()
            .filter(|line| !theirs.lines().any(|l| l == *line))
            .map(|line| format!("model.{line}"))
            .collect();
        return Err(MetaError::config(
            "init_from",
            format!(
                "`{}` was trained with another model or input size (its inputs: {}, this run's: {n_x}; differing here: {}); use its [model] table and data.image_size",
                cfg.init_from,
                source.n_x,
                if differing.is_empty() { "none".to_string() } else { differing.join(", ") }
            ),
        ));
    }
    model.params().load(&trained)?;
    Ok(())
}

/// The trained model's depth when `ours` is the Transformer `trained`
/// with more layers and nothing else changed: such a run starts from the
/// trained weights with the new blocks appended as identities
/// ([`gpicl_models::transformer::deepened_weights`]).
fn deepening(trained: &ModelConfig, ours: &ModelConfig) -> Option<usize> {
    let (from, to) = (trained.transformer.num_layers, ours.transformer.num_layers);
    let same_but_depth = ModelConfig {
        transformer: TransformerConfig {
            num_layers: to,
            ..trained.transformer.clone()
        },
        ..trained.clone()
    };
    (ours.kind == ModelKind::Transformer && to > from && &same_but_depth == ours).then_some(from)
}
