//! The meta-training loop.

use crate::checkpoint::{list_checkpoints, save_checkpoint, CheckpointMeta, RunIdentity};
use crate::config::TrainConfig;
use crate::error::{MetaError, Result};
use crate::identity::new_run_id;
use crate::lock::RunLock;
use crate::lr_schedule::learning_rate;
use crate::metrics::MetricsLog;
use crate::optim::{build_optimizer, Gradients, Optimizer};
use crate::record::{ModelRecord, RunRecord, TrainRecord};
use crate::run_dir::{write_atomically, RunDir};
use gpicl_kernels::{composed, Device, KernelOptions};
use gpicl_models::{build_model, SequenceModel};
use gpicl_tasks::{DataRoots, TaskFamily, TrainSampler, NUM_CLASSES};
use std::path::PathBuf;
use std::time::Instant;

mod open;
use open::{abandon_checkpoints_after, init_weights_from, restore_newest_usable, TrainingData};

/// Hooks the caller gets while a run trains.
pub trait Observer {
    /// After every step.
    fn on_step(&mut self, _metrics: &TrainRecord) {}
    /// Every `schedule.eval_every` steps.
    fn on_eval(&mut self, _trainer: &Trainer) -> Result<()> {
        Ok(())
    }
    /// Asked after every step: `Some(why)` (e.g. `SIGTERM`) stops the run
    /// with a checkpoint of that step and [`MetaError::Interrupted`].
    fn stop_requested(&mut self) -> Option<String> {
        None
    }
}

/// No hooks.
pub struct Silent;
impl Observer for Silent {}

/// A meta-training run: model, optimiser, training distribution and the
/// directory it saves to.
pub struct Trainer {
    cfg: TrainConfig,
    dir: RunDir,
    device: Device,
    model: Box<dyn SequenceModel>,
    optimizer: Box<dyn Optimizer>,
    sampler: TrainSampler,
    family: TaskFamily,
    metrics: MetricsLog,
    step: u64,
    resumed_from: Option<PathBuf>,
    skipped: Vec<SkippedCheckpoint>,
    lock: RunLock,
    /// Consecutive steps whose loss was above the divergence threshold.
    high_loss_steps: u64,
    /// Drawn when the run started; written into every checkpoint.
    run_id: String,
}

/// A checkpoint that resumption passed over, and why.
#[derive(Clone, Debug)]
pub struct SkippedCheckpoint {
    /// Where it is now (renamed `*.corrupt` or `*.abandoned`).
    pub path: PathBuf,
    /// Why it was not used.
    pub reason: String,
}

/// Renames `path` to `path.<suffix>` (out of the checkpoint listing, but
/// kept), returning the new name.
fn set_aside(path: &std::path::Path, suffix: &str) -> Result<PathBuf> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{suffix}"));
    let target = PathBuf::from(name);
    std::fs::rename(path, &target).map_err(MetaError::io(path))?;
    Ok(target)
}

impl Trainer {
    /// Starts the run in `dir`, or resumes it from its newest intact
    /// checkpoint. Writes `config.toml`.
    pub fn open(cfg: TrainConfig, dir: RunDir, roots: &DataRoots) -> Result<Self> {
        Self::open_at(cfg, dir, roots, None)
    }

    /// [`Trainer::open`], resuming from the checkpoint of step `from_step`
    /// when given (newer checkpoints are set aside as `*.abandoned` and the
    /// metrics after that step dropped). Checkpoints that fail to verify
    /// (header, checksum, tensor names and shapes) are set aside as
    /// `*.corrupt` and the next older one is used; [`Trainer::skipped`]
    /// says which and why.
    pub fn open_at(
        cfg: TrainConfig,
        dir: RunDir,
        roots: &DataRoots,
        from_step: Option<u64>,
    ) -> Result<Self> {
        let text = toml::to_string(&cfg).map_err(|e| MetaError::config("config", e.to_string()))?;
        Self::open_saving(cfg, &text, dir, roots, from_step)
    }

    /// [`Trainer::open_at`], saving `config_toml` as the run's
    /// `config.toml`: the run config of a layer above that holds `cfg` and
    /// more (`gpicl_run::RunConfig`, with the evaluation protocol).
    pub fn open_saving(
        cfg: TrainConfig,
        config_toml: &str,
        dir: RunDir,
        roots: &DataRoots,
        from_step: Option<u64>,
    ) -> Result<Self> {
        cfg.validate()?;
        let device = gpicl_kernels::device::parse_device(&cfg.device)?;
        let options = cfg.precision.kernel_options(KernelOptions::from_env());
        let lock = RunLock::acquire(dir.root(), "train")?;
        let data = TrainingData::load(&cfg, roots, &device)?;
        let (n_x, family) = (data.n_x, data.family.clone());
        let model = build_model(
            &cfg.model,
            n_x,
            NUM_CLASSES,
            cfg.batch.seq_len,
            cfg.seed,
            &device,
            options,
        )?;
        let mut optimizer = build_optimizer(&cfg.optim, model.params());
        let mut metrics = MetricsLog::open(&dir.metrics());
        if cfg.schedule.tensorboard {
            metrics = metrics.with_tensorboard(&dir.tensorboard())?;
        }
        let mut candidates = list_checkpoints(&dir.checkpoints());
        let mut skipped = match from_step {
            Some(wanted) => abandon_checkpoints_after(&dir, &mut candidates, wanted)?,
            None => Vec::new(),
        };
        let logged_id = metrics.read().ok().and_then(|records| {
            records.into_iter().find_map(|r| match r {
                RunRecord::Model(m) => m.run_id,
                _ => None,
            })
        });
        let restored = restore_newest_usable(
            &dir,
            candidates,
            &device,
            &cfg,
            logged_id.as_deref(),
            model.as_ref(),
            optimizer.as_mut(),
        )?;
        skipped.extend(restored.set_aside);
        let run_id = logged_id
            .or_else(|| {
                restored
                    .chosen
                    .as_ref()
                    .map(|(_, c)| c.meta.identity.run_id.clone())
                    .filter(|id| !id.is_empty())
            })
            .unwrap_or_else(|| new_run_id(&dir));
        let (sampler, step, resumed_from) = match restored.chosen {
            Some((path, ckpt)) => {
                metrics.truncate_after(ckpt.meta.step)?;
                let sampler = data.resume_sampler(&cfg, ckpt.meta.sampler)?;
                (sampler, ckpt.meta.step, Some(path))
            }
            None => {
                if !cfg.init_from.is_empty() {
                    init_weights_from(model.as_ref(), &cfg, n_x, &device)?;
                }
                // A fresh start (perhaps after a start that was killed
                // before its first checkpoint) begins an empty log.
                write_atomically(&dir.metrics(), b"")?;
                metrics.append(&RunRecord::Model(ModelRecord {
                    step: 0,
                    model: cfg.model.kind.to_string(),
                    params: model.param_count(),
                    state_size: model.state_size(cfg.batch.seq_len),
                    n_x,
                    run_id: Some(run_id.clone()),
                }))?;
                (data.fresh_sampler(&cfg), 0, None)
            }
        };
        // Written last, so a run that failed to start leaves no config
        // behind to block a corrected retry.
        write_atomically(&dir.config(), config_toml.as_bytes())?;
        Ok(Self {
            cfg,
            dir,
            device,
            model,
            optimizer,
            sampler,
            family,
            metrics,
            step,
            resumed_from,
            skipped,
            lock,
            high_loss_steps: 0,
            run_id,
        })
    }

    /// Checkpoints resumption passed over (corrupt ones, and those newer
    /// than `--from-step`).
    pub fn skipped(&self) -> &[SkippedCheckpoint] {
        &self.skipped
    }

    /// The run directory's lock (and whose stale lock it took over).
    pub fn lock(&self) -> &RunLock {
        &self.lock
    }

    /// The resolved config.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The model being trained.
    pub fn model(&self) -> &dyn SequenceModel {
        self.model.as_ref()
    }

    /// The run's task family.
    pub fn family(&self) -> &TaskFamily {
        &self.family
    }

    /// The device tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The checkpoint this run resumed from, if any.
    pub fn resumed_from(&self) -> Option<&std::path::Path> {
        self.resumed_from.as_deref()
    }

    /// The run directory.
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// The metrics log.
    pub fn metrics(&self) -> &MetricsLog {
        &self.metrics
    }

    /// Hands every record from now on (training steps, evaluations) to
    /// `sink` too, after `metrics.jsonl`.
    pub fn add_metric_sink(&mut self, sink: Box<dyn crate::metrics::MetricSink>) {
        self.metrics.add_sink(sink);
    }

    /// One meta-training step: forward, backward (with accumulation),
    /// clipping and an Adam update. A failed step leaves the run as it was
    /// (weights, optimiser and training distribution).
    pub fn train_step(&mut self) -> Result<TrainRecord> {
        let before = self.sampler.state();
        let result = self.try_train_step();
        if result.is_err() {
            self.sampler.restore(before);
        }
        result
    }

    fn try_train_step(&mut self) -> Result<TrainRecord> {
        let started = Instant::now();
        let step = self.step + 1;
        self.sampler.set_seq_len(self.cfg.batch.seq_len_at(step));
        self.sampler.set_echo(self.cfg.data.echo_at(step));
        let batch = self.sampler.next_batch()?;
        let chunks = self.cfg.optim.accumulation_steps;
        let (b, t) = batch.labels.dims2()?;
        let per_chunk = b / chunks;
        let mut grads = Gradients::zeros(self.model.params());
        let (mut loss_sum, mut correct_sum, mut last_sum) = (0f32, 0f32, 0f32);
        let fixed = self.sampler.fixed_task_sequences();
        let mut unbiased_sum = 0f32;
        for chunk in 0..chunks {
            let inputs = batch.inputs.narrow(0, chunk * per_chunk, per_chunk)?;
            let targets = batch.labels.narrow(0, chunk * per_chunk, per_chunk)?;
            let step = self.model.loss_and_grads(&inputs, &targets)?;
            grads.accumulate(&step.grads, chunks)?;
            loss_sum += step.loss / chunks as f32;
            let logits = step.logits;
            if fixed > 0 {
                // Rows [0, fixed) of the batch are the fixed task's.
                let start = fixed.saturating_sub(chunk * per_chunk).min(per_chunk);
                if start < per_chunk {
                    let rows = per_chunk - start;
                    let ce = composed::cross_entropy(
                        &logits.narrow(0, start, rows)?,
                        &targets.narrow(0, start, rows)?,
                    )?;
                    unbiased_sum += ce.to_scalar::<f32>()? * rows as f32;
                }
            }
            let correct = composed::correct(&logits, &targets)?;
            correct_sum += correct.sum_all()?.to_scalar::<f32>()?;
            last_sum += correct.narrow(1, t - 1, 1)?.sum_all()?.to_scalar::<f32>()?;
        }
        if !loss_sum.is_finite() {
            return Err(MetaError::NonFiniteLoss {
                step,
                loss: loss_sum,
            });
        }
        let grad_norm = grads.clip_global_norm(self.cfg.optim.clip_norm);
        if !grad_norm.is_finite() {
            return Err(MetaError::NonFiniteLoss {
                step,
                loss: f32::NAN,
            });
        }
        let lr = learning_rate(&self.cfg.optim, self.cfg.schedule.steps, step);
        self.optimizer.update(self.model.params(), &grads, lr)?;
        self.step = step;
        Ok(TrainRecord {
            step,
            loss: loss_sum,
            acc: correct_sum / (b * t) as f32,
            acc_last: last_sum / b as f32,
            loss_unbiased: (fixed > 0 && fixed < b).then(|| unbiased_sum / (b - fixed) as f32),
            grad_norm,
            seq_len: (t < self.cfg.batch.seq_len).then_some(t),
            lr,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Writes a checkpoint of the current state.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        self.checkpoint_keeping(self.cfg.schedule.keep_checkpoints)
    }

    fn checkpoint_keeping(&self, keep: usize) -> Result<PathBuf> {
        if let Some(name) = self.first_non_finite_weight()? {
            // Writing them would rotate a good checkpoint away.
            return Err(MetaError::Corrupt {
                path: self.dir.checkpoints(),
                reason: format!(
                    "weight `{name}` is not finite after step {}: training diverged, so no checkpoint was written and the older ones are kept. Resume with a lower optim.lr or set optim.clip_norm (`train --out DIR --set optim.lr=...`)",
                    self.step
                ),
            });
        }
        let meta = CheckpointMeta {
            step: self.step,
            input_dim: gpicl_models::tokens::width(self.family.n_x(), NUM_CLASSES),
            sampler: self.sampler.state(),
            identity: RunIdentity {
                run_id: self.run_id.clone(),
                config: self.cfg.training_identity(),
            },
        };
        save_checkpoint(
            &self.dir.checkpoints(),
            self.model.params(),
            &self.optimizer.state(),
            &meta,
            keep,
        )
    }

    /// The name of the first parameter holding a NaN or infinity.
    fn first_non_finite_weight(&self) -> Result<Option<String>> {
        for (name, var) in self.model.params().iter() {
            let values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            if values.iter().any(|v| !v.is_finite()) {
                return Ok(Some(name.to_string()));
            }
        }
        Ok(None)
    }

    /// Trains until `schedule.steps` (or `schedule.max_minutes`), logging
    /// every step, evaluating and checkpointing on schedule, and
    /// checkpointing at the end (also when a step fails, so no finished
    /// work is lost). A loss above `schedule.divergence_factor · ln 10` for
    /// `schedule.divergence_patience` steps in a row stops the run with
    /// [`MetaError::Diverged`]; while the loss is that high no checkpoint
    /// replaces the last one taken before.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<()> {
        let s = self.cfg.schedule.clone();
        let started = Instant::now();
        let out_of_time = |started: Instant| {
            s.max_minutes > 0.0 && started.elapsed().as_secs_f64() >= s.max_minutes * 60.0
        };
        let threshold = s.divergence_factor * (NUM_CLASSES as f64).ln();
        while self.step < s.steps && !out_of_time(started) {
            let m = match self.train_step() {
                // The weights gave a non-finite loss or gradient: they are
                // poisoned, and the last checkpoint stays the newest.
                Err(e @ MetaError::NonFiniteLoss { .. }) => return Err(e),
                Err(e) => {
                    self.checkpoint_unless_diverging()?;
                    return Err(e);
                }
                Ok(m) => m,
            };
            self.metrics.append(&RunRecord::Train(m.clone()))?;
            observer.on_step(&m);
            if s.divergence_factor > 0.0 && m.loss as f64 > threshold {
                self.high_loss_steps += 1;
            } else {
                self.high_loss_steps = 0;
            }
            if s.divergence_factor > 0.0 && self.high_loss_steps >= s.divergence_patience {
                return Err(MetaError::Diverged {
                    step: self.step,
                    loss: m.loss,
                    threshold,
                    patience: s.divergence_patience,
                    lr: self.cfg.optim.lr,
                    checkpoint: list_checkpoints(&self.dir.checkpoints())
                        .pop()
                        .map_or_else(|| "none yet".into(), |(_, p)| p.display().to_string()),
                });
            }
            if self.step.is_multiple_of(s.checkpoint_every) && self.high_loss_steps == 0 {
                self.checkpoint()?;
            }
            if let Some(why) = observer.stop_requested() {
                self.checkpoint_unless_diverging()?;
                return Err(MetaError::Interrupted {
                    why,
                    step: self.step,
                    checkpoint: list_checkpoints(&self.dir.checkpoints())
                        .pop()
                        .map_or_else(|| "none yet".into(), |(_, p)| p.display().to_string()),
                });
            }
            if s.eval_every > 0 && self.step.is_multiple_of(s.eval_every) && self.step < s.steps {
                if let Err(e) = observer.on_eval(self) {
                    self.checkpoint_unless_diverging()?;
                    return Err(e);
                }
            }
        }
        if self.high_loss_steps > 0 {
            // Keep the checkpoints from before the loss rose next to this one.
            self.checkpoint_keeping(usize::MAX)?;
        } else {
            self.checkpoint_if_new()?;
        }
        Ok(())
    }

    /// Checkpoints the last finished step, unless the loss is in a
    /// divergence streak (then the last good checkpoint stays the newest).
    fn checkpoint_unless_diverging(&self) -> Result<()> {
        if self.high_loss_steps == 0 {
            self.checkpoint_if_new()?;
        }
        Ok(())
    }

    /// Checkpoints unless the newest checkpoint already holds this step.
    fn checkpoint_if_new(&self) -> Result<()> {
        if list_checkpoints(&self.dir.checkpoints())
            .last()
            .map(|c| c.0)
            != Some(self.step)
        {
            self.checkpoint()?;
        }
        Ok(())
    }
}
