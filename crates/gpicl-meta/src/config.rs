//! The configuration of a meta-training run, saved as `config.toml`.

use crate::error::{MetaError, Result};
use gpicl_kernels::KernelOptions;
use gpicl_models::ModelConfig;
use gpicl_tasks::{BatchConfig, DataConfig, TaskConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Adam with `eps_root`, decoupled weight decay, clipping and accumulation.
/// Defaults are the reference (`gpicl-method.md` §6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Learning rate. Default 1e-3.
    pub lr: f64,
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Added outside the square root. Default 1e-8.
    pub eps: f64,
    /// Added inside the square root: the update is
    /// `m̂ / (sqrt(v̂ + eps_root) + eps)`. Default 1e-8.
    pub eps_root: f64,
    /// Decoupled (AdamW) weight decay. Default 0.
    pub weight_decay: f64,
    /// Global gradient-norm clipping threshold; 0 disables it. Default 0.
    pub clip_norm: f64,
    /// Split each step's batch into this many micro-batches whose gradients
    /// are averaged. Default 1.
    pub accumulation_steps: usize,
    /// Linear learning-rate warm-up from 0 over this many steps; 0 starts
    /// at `lr`. Default 0 (the reference has no schedule).
    pub warmup_steps: u64,
    /// What the learning rate does after warm-up: `constant` (default, the
    /// reference) or `cosine` (decay to `min_lr_fraction · lr` at
    /// `decay_steps`).
    pub decay: LrDecay,
    /// Floor of the cosine decay as a fraction of `lr`. Default 0.1.
    pub min_lr_fraction: f64,
    /// Step at which the cosine decay reaches its floor; 0 means
    /// `schedule.steps`. Default 0.
    pub decay_steps: u64,
}

/// The learning rate after warm-up (see [`crate::lr_schedule`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    /// Stays at `optim.lr`.
    #[default]
    Constant,
    /// Half a cosine from `optim.lr` down to `optim.min_lr_fraction · lr`.
    Cosine,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            eps_root: 1e-8,
            weight_decay: 0.0,
            clip_norm: 0.0,
            accumulation_steps: 1,
            warmup_steps: 0,
            decay: LrDecay::Constant,
            min_lr_fraction: 0.1,
            decay_steps: 0,
        }
    }
}

/// How long to train and how often to log, evaluate and checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Total meta-training steps. Default 50,000.
    pub steps: u64,
    /// Evaluate every this many steps; 0 evaluates only at the end.
    /// Default 100.
    pub eval_every: u64,
    /// Checkpoint every this many steps (a run also checkpoints when it
    /// ends). Default 500.
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (oldest deleted first). Default 2.
    pub keep_checkpoints: usize,
    /// Wall-clock budget of one `train` invocation in minutes: training
    /// stops (and checkpoints) at the first step boundary past it; 0 means
    /// no limit. Runs compared at equal compute use this. Default 0.
    pub max_minutes: f64,
    /// Divergence guard: a loss above this multiple of the chance loss
    /// `ln 10` for `divergence_patience` consecutive steps stops the run,
    /// keeping the last checkpoint from before; 0 disables the guard.
    /// Non-finite losses and gradients always stop it. Default 4.
    pub divergence_factor: f64,
    /// Consecutive steps above the divergence threshold that stop a run.
    /// Default 20.
    pub divergence_patience: u64,
    /// Also write the training and periodic-evaluation metrics as
    /// TensorBoard event files into the run's `tensorboard/` folder
    /// (`tensorboard --logdir runs/`; W&B syncs them too), beside
    /// `metrics.jsonl`. Default false. Not written to `config.toml` when
    /// false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tensorboard: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            steps: 50_000,
            eval_every: 100,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            max_minutes: 0.0,
            divergence_factor: 4.0,
            divergence_patience: 20,
            tensorboard: false,
        }
    }
}

/// Precision of the matrix products (see [`TrainConfig::precision`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bf16 matrix products with f32 accumulation: cuBLAS on CUDA, AMX
    /// tiles on CPUs that have them (Intel Sapphire Rapids and newer).
    Bf16,
}

impl Precision {
    /// The kernel options of a run at this precision: `base` (e.g.
    /// [`KernelOptions::from_env`], which says whether the fused kernels
    /// are on) with bf16 matrix products for [`Precision::Bf16`].
    pub fn kernel_options(self, base: KernelOptions) -> KernelOptions {
        KernelOptions {
            bf16_matmuls: self == Precision::Bf16,
            ..base
        }
    }
}

/// Everything that determines a meta-training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of initial weights and of the training stream. Default 0.
    pub seed: u64,
    /// `cpu`, `cuda` or `cuda:N`. Default `cpu`.
    pub device: String,
    /// Precision of the linear layers' matrix products: `f32` (default) or
    /// `bf16` (inputs and weights rounded to bf16, products accumulated in
    /// f32 by cuBLAS on CUDA or by AMX tiles on the CPU, where the CPU has
    /// them; weights, gradients, Adam, attention and every other op stay
    /// f32).
    pub precision: Precision,
    /// A run folder or shipped learner (e.g. `models/gpicl-mnist-14px`)
    /// whose newest weights start this run in place of `seed`'s
    /// initialiser: fine-tuning a learner on another distribution. Its
    /// `[model]` table and input size must equal this run's; the optimiser
    /// starts fresh. Empty (default): none. Not written to `config.toml`
    /// when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub init_from: String,
    /// The sequence model.
    pub model: ModelConfig,
    /// The meta-training dataset and preprocessing.
    pub data: DataConfig,
    /// The task family and its biasing.
    pub tasks: TaskConfig,
    /// Batch shape.
    pub batch: BatchConfig,
    /// Optimiser.
    pub optim: OptimConfig,
    /// Schedule.
    pub schedule: ScheduleConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            device: "cpu".into(),
            precision: Precision::F32,
            init_from: String::new(),
            model: ModelConfig::default(),
            data: DataConfig::default(),
            tasks: TaskConfig::default(),
            batch: BatchConfig::default(),
            optim: OptimConfig::default(),
            schedule: ScheduleConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Top-level tables of a run's `config.toml` that belong to the layers
    /// above meta (the evaluation protocol, `gpicl_eval::EvalConfig`).
    pub const SECTIONS_ABOVE: &'static [&'static str] = &["eval"];

    /// The paper's reference run: the serde defaults (the reference
    /// hyperparameters) on the paper's task distribution, every task
    /// projected *and* its labels permuted (`tasks.permute_labels_prob =
    /// 1`; the serde default 0 is the authors' code's, which the paper's
    /// runs override).
    pub fn paper() -> Self {
        let mut cfg = Self::default();
        cfg.tasks.permute_labels_prob = 1.0;
        cfg
    }

    /// A small Transformer with the reference defaults (no recipe levers;
    /// labels unpermuted, as in the authors' code): d=64, 2 layers, 4 heads of size 16, 2^4 tasks (the
    /// memorisation regime), 14×14 images, 8 × 8 sequences of 100 per
    /// step for 400 steps, evaluated every 100 (the protocol of the preset
    /// is `gpicl_run::RunConfig::small`'s). The starting point of the
    /// CPU twins of the paper's figures (`preset = "small"`); the
    /// `quickstart` of gpicl up to 2026-11.
    pub fn small() -> Self {
        let mut cfg = Self::default();
        cfg.model.transformer.d_model = 64;
        cfg.model.transformer.num_layers = 2;
        cfg.model.transformer.num_heads = 4;
        cfg.model.transformer.key_size = 16;
        cfg.tasks.num_tasks = 16;
        cfg.batch.tasks_per_step = 8;
        cfg.batch.seqs_per_task = 8;
        cfg.schedule.steps = 400;
        cfg.schedule.eval_every = 100;
        cfg.schedule.checkpoint_every = 100;
        cfg
    }

    /// The default of `cargo xtask train`: a general-purpose in-context
    /// learner in about 10 minutes on 2 CPU cores, on the embedded MNIST
    /// subset. [`TrainConfig::small`]'s Transformer with the CPU recipe of
    /// `docs/experiments/recipe-cpu`: every task projected *and* its labels
    /// permuted (`permute_labels_prob = 1`), 2^16 tasks, 7×7 images, the
    /// input layer reading the previous token too
    /// (`model.previous_token_input`), a quarter of the task slots on the
    /// synthetic `random` dataset (`data.random_fraction`), lr 2e-3, 3,000
    /// steps, periodic evaluation every 500 (of MNIST, Fashion-MNIST and
    /// `random`: `gpicl_run::RunConfig::quickstart`).
    pub fn quickstart() -> Self {
        let mut cfg = Self::small();
        cfg.model.transformer.previous_token_input = true;
        cfg.data.image_size = 7;
        cfg.data.random_fraction = 0.25;
        cfg.tasks.num_tasks = 1 << 16;
        cfg.tasks.permute_labels_prob = 1.0;
        cfg.optim.lr = 2e-3;
        cfg.schedule.steps = 3_000;
        cfg.schedule.eval_every = 500;
        cfg.schedule.checkpoint_every = 500;
        cfg
    }

    /// Reads the training config out of a run's `config.toml`, refusing
    /// unknown keys, and validates it. The file is a run config of a layer
    /// above (`gpicl_run::RunConfig`): these options plus the tables named
    /// in [`TrainConfig::SECTIONS_ABOVE`], which this reader skips.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(MetaError::io(path))?;
        let corrupt = |reason: String| MetaError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        for section in Self::SECTIONS_ABOVE {
            if table.get(*section).is_some_and(toml::Value::is_table) {
                table.remove(*section);
            }
        }
        let cfg: Self = table
            .try_into()
            .map_err(|e: toml::de::Error| corrupt(e.to_string()))?;
        cfg.validate_options().map_err(|e| MetaError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// Checks every option and that the device exists; called once before
    /// a run starts.
    pub fn validate(&self) -> Result<()> {
        self.validate_options()?;
        gpicl_kernels::device::parse_device(&self.device)?;
        let on_cuda = self.device.trim().to_ascii_lowercase().starts_with("cuda");
        if self.precision == Precision::Bf16 && !on_cuda {
            if let Err(why) = gpicl_kernels::bf16::support() {
                return Err(MetaError::config(
                    "precision",
                    format!(
                        "\"bf16\" on the CPU runs on AMX-BF16 tiles, but {why}; run on CUDA or use precision = \"f32\""
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every option that may not change when a run is resumed, as
    /// `section.key → value` (JSON): all but `schedule.*`, `device`,
    /// `optim.lr` and `optim.clip_norm`. Checkpoints carry it, and resuming
    /// refuses a config that differs from it.
    pub fn training_identity(&self) -> BTreeMap<String, String> {
        fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        flatten(&key, v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let mut out = BTreeMap::new();
        let value = serde_json::to_value(self).expect("a config serialises");
        flatten("", &value, &mut out);
        out.retain(|k, _| {
            !(k.starts_with("schedule.")
                || k == "device"
                || k == "optim.lr"
                || k == "optim.clip_norm")
        });
        out
    }

    /// Refuses sizes whose buffers could not be allocated, before anything
    /// is: each option against its own limit, then the activations of one
    /// step and the parameters as a whole.
    fn check_resource_bounds(&self) -> Result<()> {
        let m = &self.model.transformer;
        let hidden = self.model.hidden();
        let b = &self.batch;
        let limits: [(&str, usize, usize); 11] = [
            ("batch.seq_len", b.seq_len, 1 << 16),
            ("batch.tasks_per_step", b.tasks_per_step, 1 << 16),
            ("batch.seqs_per_task", b.seqs_per_task, 1 << 16),
            ("model.d_model", m.d_model, 1 << 16),
            ("model.num_layers", m.num_layers, 1024),
            ("model.num_heads", m.num_heads, 1024),
            ("model.key_size", m.key_size, 1 << 16),
            ("model.widening_factor", m.widening_factor, 64),
            ("model.hidden", hidden, 1 << 16),
            ("model.learner_hidden", self.model.online.hidden, 1 << 16),
            ("data.image_size", self.data.image_size, 1024),
        ];
        for (option, value, most) in limits {
            if value > most {
                return Err(MetaError::config(
                    option,
                    format!("{value} is more than the {most} gpicl can allocate for; lower it"),
                ));
            }
        }
        // Elements of one step's activations and of the weights, in f32.
        const MOST_ELEMENTS: u128 = 1 << 33;
        let width = [m.d_model, hidden, m.num_heads * m.key_size]
            .into_iter()
            .max()
            .unwrap_or(0) as u128;
        let activations = (b.sequences() as u128)
            * (b.seq_len as u128)
            * width
            * (m.widening_factor.max(1) as u128);
        if activations > MOST_ELEMENTS {
            return Err(MetaError::config(
                "batch.seq_len",
                format!(
                    "one step would hold {activations} activations per layer (sequences {} × seq_len {} × width {width} × widening), more than the {MOST_ELEMENTS} allowed: lower batch.seq_len, batch.tasks_per_step, batch.seqs_per_task or model.d_model",
                    b.sequences(),
                    b.seq_len
                ),
            ));
        }
        let weights =
            (m.num_layers.max(1) as u128) * width * width * (4 + 2 * m.widening_factor as u128);
        if weights > MOST_ELEMENTS {
            return Err(MetaError::config(
                "model.d_model",
                format!(
                    "the model would have about {weights} weights, more than the {MOST_ELEMENTS} allowed: lower model.d_model, model.num_layers or model.widening_factor"
                ),
            ));
        }
        Ok(())
    }

    /// Checks every option but the device, which a saved run may name
    /// without this machine having it (a GPU run evaluated on a CPU).
    pub fn validate_options(&self) -> Result<()> {
        self.check_resource_bounds()?;
        self.model.validate()?;
        self.data.validate()?;
        self.tasks.validate()?;
        self.batch.validate()?;
        let o = &self.optim;
        let positive = [
            ("optim.lr", o.lr),
            ("optim.eps", o.eps),
            ("optim.eps_root", o.eps_root),
        ];
        for (option, value) in positive {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(MetaError::config(
                    option,
                    format!("must be a non-negative number, got {value}"),
                ));
            }
        }
        if o.eps + o.eps_root == 0.0 {
            return Err(MetaError::config("optim.eps", "optim.eps and optim.eps_root cannot both be 0: a zero gradient would divide 0 by 0"));
        }
        if o.lr == 0.0 {
            return Err(MetaError::config("optim.lr", "must be positive"));
        }
        for (option, value) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return Err(MetaError::config(
                    option,
                    format!("must be in [0, 1), got {value}"),
                ));
            }
        }
        if !(o.weight_decay >= 0.0 && o.weight_decay.is_finite()) {
            return Err(MetaError::config(
                "optim.weight_decay",
                format!("must be non-negative, got {}", o.weight_decay),
            ));
        }
        if !(o.clip_norm >= 0.0 && o.clip_norm.is_finite()) {
            return Err(MetaError::config(
                "optim.clip_norm",
                format!("must be non-negative (0 = off), got {}", o.clip_norm),
            ));
        }
        if !(0.0..=1.0).contains(&o.min_lr_fraction) {
            return Err(MetaError::config(
                "optim.min_lr_fraction",
                format!("must be in [0, 1], got {}", o.min_lr_fraction),
            ));
        }
        if o.decay == LrDecay::Cosine && o.decay_steps > 0 && o.decay_steps <= o.warmup_steps {
            return Err(MetaError::config(
                "optim.decay_steps",
                format!(
                    "the cosine decay must end after the warm-up: decay_steps {} ≤ warmup_steps {}",
                    o.decay_steps, o.warmup_steps
                ),
            ));
        }
        let sequences = self.batch.sequences();
        if o.accumulation_steps == 0 || !sequences.is_multiple_of(o.accumulation_steps) {
            return Err(MetaError::config(
                "optim.accumulation_steps",
                format!("must divide the {sequences} sequences per step (tasks_per_step × seqs_per_task), got {}", o.accumulation_steps),
            ));
        }
        if self.schedule.checkpoint_every == 0 {
            return Err(MetaError::config(
                "schedule.checkpoint_every",
                "must be at least 1",
            ));
        }
        if !(self.schedule.max_minutes >= 0.0 && self.schedule.max_minutes.is_finite()) {
            return Err(MetaError::config(
                "schedule.max_minutes",
                format!(
                    "must be non-negative (0 = no limit), got {}",
                    self.schedule.max_minutes
                ),
            ));
        }
        let guard = self.schedule.divergence_factor;
        if !(guard == 0.0 || (guard > 1.0 && guard.is_finite())) {
            return Err(MetaError::config(
                "schedule.divergence_factor",
                format!("must be above 1 (a multiple of the chance loss) or 0 to disable the guard, got {guard}"),
            ));
        }
        if self.schedule.divergence_patience == 0 {
            return Err(MetaError::config(
                "schedule.divergence_patience",
                "must be at least 1",
            ));
        }
        if self.schedule.keep_checkpoints == 0 {
            return Err(MetaError::config(
                "schedule.keep_checkpoints",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::scratch_dir;

    /// A named change to a config.
    type Change = (&'static str, fn(&mut TrainConfig));

    #[test]
    fn absurd_sizes_are_refused_naming_the_option_and_its_limit() {
        let cases: [Change; 4] = [
            ("batch.seq_len", |c| c.batch.seq_len = usize::MAX / 2),
            ("model.d_model", |c| c.model.transformer.d_model = 1 << 40),
            ("data.image_size", |c| c.data.image_size = 100_000),
            ("batch.seq_len", |c| {
                c.batch.seq_len = 60_000;
                c.batch.tasks_per_step = 1000;
            }),
        ];
        for (option, change) in cases {
            let mut cfg = TrainConfig::small();
            change(&mut cfg);
            let err = cfg.validate_options().unwrap_err().to_string();
            assert!(err.contains(option), "{option}: {err}");
        }
        TrainConfig::small().validate_options().unwrap();
        TrainConfig::paper().validate_options().unwrap();
    }

    #[test]
    fn bf16_on_the_cpu_runs_only_where_the_cpu_has_amx() {
        let mut c = TrainConfig::small();
        c.precision = Precision::Bf16;
        match gpicl_kernels::bf16::support() {
            Ok(()) => c.validate().unwrap(),
            Err(why) => {
                let err = c.validate().unwrap_err().to_string();
                assert!(err.contains("precision") && err.contains(&why), "{err}");
            }
        }
    }

    #[test]
    fn configs_saved_before_precision_existed_load_as_f32() {
        let mut text = toml::to_string(&TrainConfig::small()).unwrap();
        text = text
            .lines()
            .filter(|l| !l.starts_with("precision"))
            .collect::<Vec<_>>()
            .join("\n");
        let c: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.precision, Precision::F32);
        let bf16: TrainConfig = toml::from_str(&format!("precision = \"bf16\"\n{text}")).unwrap();
        assert_eq!(bf16.precision, Precision::Bf16);
    }

    #[test]
    fn a_saved_config_naming_a_missing_gpu_still_loads_for_evaluation_elsewhere() {
        let dir = scratch_dir("cfg");
        let path = dir.join("config.toml");
        let mut c = TrainConfig::small();
        c.device = "cuda:3".into();
        std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap().device, "cuda:3");
        if !candle_core_has_cuda() {
            assert!(c.validate().is_err(), "a run cannot start on a missing GPU");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn candle_core_has_cuda() -> bool {
        gpicl_kernels::device::parse_device("cuda:3").is_ok()
    }

    #[test]
    fn defaults_are_the_reference_hyperparameters() {
        let c = TrainConfig::default();
        assert_eq!(
            (
                c.optim.lr,
                c.optim.eps,
                c.optim.eps_root,
                c.optim.weight_decay
            ),
            (1e-3, 1e-8, 1e-8, 0.0)
        );
        assert_eq!(
            (
                c.batch.tasks_per_step,
                c.batch.seqs_per_task,
                c.batch.seq_len
            ),
            (16, 32, 100)
        );
        assert_eq!(c.schedule.steps, 50_000);
        assert_eq!(c.model.transformer.d_model, 512);
        c.validate().unwrap();
        TrainConfig::quickstart().validate().unwrap();
        TrainConfig::small().validate().unwrap();
    }

    #[test]
    fn the_quickstart_is_the_small_model_with_the_cpu_recipe() {
        let (q, s) = (TrainConfig::quickstart(), TrainConfig::small());
        assert_eq!(q.model.transformer.d_model, s.model.transformer.d_model);
        assert_eq!(q.batch, s.batch);
        assert!(
            q.model.transformer.previous_token_input && !s.model.transformer.previous_token_input
        );
        assert_eq!(q.tasks.permute_labels_prob, 1.0);
        assert_eq!(q.data.random_fraction, 0.25);
        assert_eq!((s.tasks.num_tasks, s.data.image_size), (16, 14));
    }

    #[test]
    fn configs_round_trip_through_toml() {
        let c = TrainConfig::quickstart();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), c);
    }

    #[test]
    fn impossible_options_are_refused_by_name() {
        let mut c = TrainConfig::default();
        c.optim.accumulation_steps = 7;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optim.accumulation_steps"));
        let mut c = TrainConfig::default();
        c.tasks.permute_labels_prob = 1.5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tasks.permute_labels_prob"));
        let mut c = TrainConfig::default();
        c.optim.eps = 0.0;
        c.optim.eps_root = 0.0;
        assert!(c.validate().unwrap_err().to_string().contains("optim.eps"));
        let mut c = TrainConfig::default();
        c.optim.beta2 = 1.0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optim.beta2"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<TrainConfig>("[optim]\nlearning_rate = 1.0").is_err());
    }
}
