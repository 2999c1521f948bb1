//! Data, task and batch options, with the reference defaults of
//! `gpicl-method.md` §2–§6.

use crate::error::{Result, TaskError};
use crate::table_features::TableOptions;
use serde::{Deserialize, Serialize};

/// How images are resized to `image_size × image_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMethod {
    /// Average over the covered input area (bilinear when upscaling).
    Area,
    /// Bilinear interpolation with half-pixel centres.
    Bilinear,
}

/// How many channels every image ends with, so that all datasets of a run
/// share one input size `N_x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelPolicy {
    /// One channel; colour images become luminance (ITU-R 601 weights).
    Gray,
    /// Three channels; grayscale images are repeated.
    Rgb,
}

impl ChannelPolicy {
    /// Channels per pixel after conversion.
    pub fn count(self) -> usize {
        match self {
            ChannelPolicy::Gray => 1,
            ChannelPolicy::Rgb => 3,
        }
    }
}

/// How features are z-normalised before projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// One scalar mean and std over the whole batch: `(x-mean)/(std+1e-8)`.
    PerBatch,
    /// Fixed per-dataset statistics (MNIST 0.1307/0.3081, …); datasets
    /// without published statistics use their own split's mean and std.
    Fixed,
    /// No normalisation: features stay in `[0, 1]`.
    None,
}

/// How each sequence's inputs are normalised after projection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureNormalization {
    /// None: the projected inputs are used as they are (the paper).
    #[default]
    None,
    /// Every feature of a sequence's projected inputs z-scored over the
    /// sequence's positions, `(x - mean)/(std + 1e-8)`: the task's offset
    /// `A·mean(x)` is removed and every feature has unit spread. It reads
    /// the inputs of the whole sequence (never a label).
    PerSequence,
}

impl FeatureNormalization {
    /// Whether this is the default (kept out of written configs).
    pub fn is_none(&self) -> bool {
        *self == FeatureNormalization::None
    }
}

/// Where examples come from and how they are preprocessed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Meta-training dataset. Default `mnist`.
    pub dataset: String,
    /// Resize images to this side length; 0 keeps their size. Default 14.
    pub image_size: usize,
    /// Resize method. Default `area`.
    pub resize: ResizeMethod,
    /// Channel policy. Default `gray`.
    pub channels: ChannelPolicy,
    /// Normalisation. Default `per-batch`.
    pub normalization: Normalization,
    /// Relative weights of the datasets of a comma-separated `dataset`
    /// mixture: task `id` draws its dataset with these probabilities (as a
    /// function of its id). Empty (default): uniform.
    pub weights: Vec<f64>,
    /// Fraction of each training step's task slots whose sequences come
    /// from the synthetic `random` dataset (10 random images per slot,
    /// drawn with replacement: exact repeats within every sequence), seen
    /// through the slot's task like every other slot. The count per step
    /// is `random_fraction · tasks_per_step`, rounded at random when it is
    /// not whole. Default 0 (the reference: training data only).
    pub random_fraction: f64,
    /// Fraction of each training step's task slots whose sequences come
    /// from synthetic tables ([`crate::tabular`]: a fresh table per slot,
    /// 2–100 features, 2–10 classes), seen through the slot's task like
    /// every other slot; for learners meant for tables (`predict`). Counted
    /// like `random_fraction`, and together with it at most 1. Default 0.
    /// Not written to `config.toml` when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub tabular_fraction: f64,
    /// Synthetic tables: their z-scored features are clipped to
    /// `±tabular_clip` before the projection, as `predict --clip` reads a
    /// table ([`crate::table_features`]). Default 0 (not clipped). Not
    /// written to `config.toml` when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub tabular_clip: f64,
    /// Synthetic tables: the probability that a task slot's table is read
    /// with the squares of its z-scores appended, as `predict --squares
    /// half` reads a table for every second ensemble member. Default 0.
    /// Not written to `config.toml` when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub tabular_squares_fraction: f64,
    /// Synthetic tables: the probability that a task slot's table has the
    /// mess of real tables ([`crate::tabular::SyntheticTable::draw_with`]):
    /// redundant columns (noisy mixtures of the informative features, as
    /// a table's correlated measurements are) and skewed, log-normal
    /// columns. Default 0 (every table as drawn before this option). Not
    /// written to `config.toml` when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub tabular_messy_fraction: f64,
    /// Normalisation of each sequence's inputs after projection:
    /// `none` (default, the paper) or `per-sequence` (every feature
    /// z-scored over the sequence's positions). Not written to
    /// `config.toml` when `none`.
    #[serde(skip_serializing_if = "FeatureNormalization::is_none")]
    pub feature_normalization: FeatureNormalization,
    /// Share of training sequences that are *echo sequences*: from position
    /// `echo_lag` on, each position repeats, with probability `echo_prob`,
    /// the example (input and label) `echo_lag` positions earlier. With the
    /// default lag 2 the label a position must predict sits in the previous
    /// token's label channel, which rewards a previous-token attention head
    /// directly; that head is the first half of the induction circuit a
    /// plain Transformer (`model.previous_token_input = false`) otherwise
    /// finds only after a long plateau. A curriculum for the training
    /// distribution only: evaluation never echoes. Default 0 (none). Not
    /// written to `config.toml` when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub echo_fraction: f64,
    /// In an echo sequence, the chance that a position repeats the example
    /// `echo_lag` positions back. Default 0.5.
    #[serde(skip_serializing_if = "is_default_echo_prob")]
    pub echo_prob: f64,
    /// How far back an echo reaches. Default 2.
    #[serde(skip_serializing_if = "is_default_echo_lag")]
    pub echo_lag: usize,
    /// When above `echo_lag`, each echo reaches back a lag drawn uniformly
    /// from `echo_lag..=echo_max_lag` (capped at the position): exact
    /// repeats at many distances, which reward matching inputs by content
    /// rather than by position. 0 (default): always `echo_lag`.
    #[serde(skip_serializing_if = "is_zero")]
    pub echo_max_lag: usize,
    /// The last training step with echo sequences; 0 (default) keeps them
    /// for the whole run.
    #[serde(skip_serializing_if = "is_zero")]
    pub echo_until_step: u64,
}

const DEFAULT_ECHO_PROB: f64 = 0.5;
const DEFAULT_ECHO_LAG: usize = 2;

/// Whether an option is at its type's default (0): kept out of written
/// configs.
fn is_zero<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

fn is_default_echo_prob(x: &f64) -> bool {
    *x == DEFAULT_ECHO_PROB
}

fn is_default_echo_lag(x: &usize) -> bool {
    *x == DEFAULT_ECHO_LAG
}

/// The echo curriculum in force at one training step (`data.echo_*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Echo {
    /// Share of sequences that echo.
    pub fraction: f64,
    /// Per-position chance of an echo inside an echo sequence.
    pub prob: f64,
    /// How far back an echo reaches (the shortest lag when `max_lag` is
    /// larger).
    pub lag: usize,
    /// The longest lag; lags are drawn uniformly from `lag..=max_lag`
    /// when it is above `lag`.
    pub max_lag: usize,
}

impl Echo {
    /// No echo sequences: the reference training distribution.
    pub const OFF: Echo = Echo {
        fraction: 0.0,
        prob: 0.0,
        lag: DEFAULT_ECHO_LAG,
        max_lag: DEFAULT_ECHO_LAG,
    };

    /// Whether any sequence can echo.
    pub fn is_on(&self) -> bool {
        self.fraction > 0.0 && self.prob > 0.0
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "mnist".into(),
            image_size: 14,
            resize: ResizeMethod::Area,
            channels: ChannelPolicy::Gray,
            normalization: Normalization::PerBatch,
            weights: Vec::new(),
            random_fraction: 0.0,
            tabular_fraction: 0.0,
            tabular_clip: 0.0,
            tabular_squares_fraction: 0.0,
            tabular_messy_fraction: 0.0,
            feature_normalization: FeatureNormalization::None,
            echo_fraction: 0.0,
            echo_prob: DEFAULT_ECHO_PROB,
            echo_lag: DEFAULT_ECHO_LAG,
            echo_max_lag: 0,
            echo_until_step: 0,
        }
    }
}

/// The task family: random projections and label permutations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Training task ids are drawn uniformly from `[0, num_tasks)`; 0 means
    /// raw data (no projection, no permutation). Default 2^16.
    pub num_tasks: u64,
    /// Seed of the task family: task `id` is a pure function of
    /// `(task_seed, id)`. Default 0.
    pub task_seed: u64,
    /// Probability that a task slot's labels are permuted by its task's
    /// permutation. Default 0 (the reference default).
    pub permute_labels_prob: f64,
    /// Std of the per-task bias added after projection. Default 0 (none).
    pub bias_std: f64,
    /// Probability that a task slot draws a random task id; otherwise it
    /// uses task 0. Default 1 (no biasing).
    pub project_prob: f64,
    /// Fraction of each batch's sequences that always use task 0, its
    /// projection *and* its labels. Default 0.
    pub single_task_fraction: f64,
    /// Fraction of each step's task slots whose labels all use one fixed
    /// permutation (task 0's) while their projections stay those of their
    /// own random task ids: the paper's biased distribution. The count per
    /// step is rounded at random when it is not whole. Default 0.
    pub fixed_permutation_fraction: f64,
    /// How `permute_labels_prob` decides which slots are permuted:
    /// `per-slot` (default: redrawn for every slot) or `per-task` (a pure
    /// function of the task id, as in the authors' code: task `id` is
    /// always permuted or never).
    pub permutation_mask: PermutationMask,
}

/// Whether a task slot's labels are permuted (see
/// [`TaskConfig::permutation_mask`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermutationMask {
    /// Each slot draws anew with probability `permute_labels_prob`.
    #[default]
    PerSlot,
    /// Task `id` is permuted iff its own uniform draw
    /// ([`crate::TaskFamily::permutation_draw`]) is below
    /// `permute_labels_prob`.
    PerTask,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            num_tasks: 1 << 16,
            task_seed: 0,
            permute_labels_prob: 0.0,
            bias_std: 0.0,
            project_prob: 1.0,
            single_task_fraction: 0.0,
            fixed_permutation_fraction: 0.0,
            permutation_mask: PermutationMask::PerSlot,
        }
    }
}

/// Batch shape of one meta-training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Distinct task slots per step. Default 16.
    pub tasks_per_step: usize,
    /// Sequences per task slot (sharing the slot's projection and
    /// permutation). Default 32.
    pub seqs_per_task: usize,
    /// Examples per sequence. Default 100.
    pub seq_len: usize,
    /// Sequence-length curriculum: training sequences start this long and
    /// grow linearly to `seq_len` over `curriculum_steps` steps (short
    /// contexts give the in-context signal less to average over, which
    /// shortens the loss plateau). 0 (default, the reference): always
    /// `seq_len`.
    pub curriculum_start_len: usize,
    /// Steps over which the curriculum reaches `seq_len`. Default 0.
    pub curriculum_steps: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            tasks_per_step: 16,
            seqs_per_task: 32,
            seq_len: 100,
            curriculum_start_len: 0,
            curriculum_steps: 0,
        }
    }
}

fn probability(option: &str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(TaskError::config(
            option,
            format!("must be a probability in [0, 1], got {p}"),
        ))
    }
}

impl DataConfig {
    /// How synthetic tables are drawn and read (`tabular_clip`,
    /// `tabular_squares_fraction`, `tabular_messy_fraction`).
    pub fn table_options(&self) -> TableOptions {
        TableOptions {
            clip: self.tabular_clip as f32,
            squares_fraction: self.tabular_squares_fraction,
            messy_fraction: self.tabular_messy_fraction,
        }
    }

    /// The echo curriculum at training step `step` (1-based).
    pub fn echo_at(&self, step: u64) -> Echo {
        if self.echo_until_step > 0 && step > self.echo_until_step {
            return Echo::OFF;
        }
        Echo {
            fraction: self.echo_fraction,
            prob: self.echo_prob,
            lag: self.echo_lag,
            max_lag: self.echo_max_lag.max(self.echo_lag),
        }
    }

    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        if self.dataset.trim().is_empty() {
            return Err(TaskError::config("data.dataset", "must name a dataset"));
        }
        probability("data.random_fraction", self.random_fraction)?;
        probability("data.tabular_fraction", self.tabular_fraction)?;
        probability(
            "data.tabular_squares_fraction",
            self.tabular_squares_fraction,
        )?;
        probability("data.tabular_messy_fraction", self.tabular_messy_fraction)?;
        if !(self.tabular_clip.is_finite() && self.tabular_clip >= 0.0) {
            return Err(TaskError::config(
                "data.tabular_clip",
                format!(
                    "must be a non-negative number (0: no clipping), got {}",
                    self.tabular_clip
                ),
            ));
        }
        if self.random_fraction + self.tabular_fraction > 1.0 {
            return Err(TaskError::config(
                "data.tabular_fraction",
                format!(
                    "and data.random_fraction together take more than every slot ({} + {}); their sum must be at most 1",
                    self.tabular_fraction, self.random_fraction
                ),
            ));
        }
        probability("data.echo_fraction", self.echo_fraction)?;
        probability("data.echo_prob", self.echo_prob)?;
        if !(1..=4096).contains(&self.echo_lag) {
            return Err(TaskError::config(
                "data.echo_lag",
                format!(
                    "must be between 1 and 4096 positions, got {}",
                    self.echo_lag
                ),
            ));
        }
        if !self.weights.is_empty() {
            let names = crate::spec::dataset_names(&self.dataset)?;
            if self.weights.len() != names.len() {
                return Err(TaskError::config(
                    "data.weights",
                    format!(
                        "has {} weights for the {} datasets of `{}`",
                        self.weights.len(),
                        names.len(),
                        self.dataset
                    ),
                ));
            }
            if self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
                || self.weights.iter().sum::<f64>() <= 0.0
            {
                return Err(TaskError::config(
                    "data.weights",
                    format!(
                        "must be non-negative numbers with a positive sum, got {:?}",
                        self.weights
                    ),
                ));
            }
        }
        if self.image_size > 512 {
            return Err(TaskError::config(
                "data.image_size",
                format!("{} is larger than 512", self.image_size),
            ));
        }
        Ok(())
    }
}

impl TaskConfig {
    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        probability("tasks.permute_labels_prob", self.permute_labels_prob)?;
        probability("tasks.project_prob", self.project_prob)?;
        probability("tasks.single_task_fraction", self.single_task_fraction)?;
        probability(
            "tasks.fixed_permutation_fraction",
            self.fixed_permutation_fraction,
        )?;
        if !(self.bias_std >= 0.0 && self.bias_std.is_finite()) {
            return Err(TaskError::config(
                "tasks.bias_std",
                format!("must be non-negative, got {}", self.bias_std),
            ));
        }
        if self.num_tasks > 1 << 62 {
            return Err(TaskError::config("tasks.num_tasks", "must be below 2^62"));
        }
        Ok(())
    }
}

impl BatchConfig {
    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        for (option, value) in [
            ("batch.tasks_per_step", self.tasks_per_step),
            ("batch.seqs_per_task", self.seqs_per_task),
            ("batch.seq_len", self.seq_len),
        ] {
            if value == 0 {
                return Err(TaskError::config(option, "must be at least 1"));
            }
        }
        if self.curriculum_start_len > self.seq_len {
            return Err(TaskError::config(
                "batch.curriculum_start_len",
                format!(
                    "{} is longer than batch.seq_len {}: the curriculum grows sequences up to seq_len",
                    self.curriculum_start_len, self.seq_len
                ),
            ));
        }
        if self.curriculum_start_len > 0 && self.curriculum_steps == 0 {
            return Err(TaskError::config(
                "batch.curriculum_steps",
                "must be at least 1 when batch.curriculum_start_len is set",
            ));
        }
        Ok(())
    }

    /// Training sequence length at step `step` (1-based): `seq_len`, or
    /// the curriculum's length, growing linearly from
    /// `curriculum_start_len` at step 1 to `seq_len` at `curriculum_steps`.
    pub fn seq_len_at(&self, step: u64) -> usize {
        if self.curriculum_start_len == 0 || step >= self.curriculum_steps {
            return self.seq_len;
        }
        let span = (self.seq_len - self.curriculum_start_len) as f64;
        let progress = step.saturating_sub(1) as f64 / (self.curriculum_steps - 1).max(1) as f64;
        self.curriculum_start_len + (span * progress).floor() as usize
    }

    /// Sequences per step.
    pub fn sequences(&self) -> usize {
        self.tasks_per_step * self.seqs_per_task
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curriculum_grows_sequences_linearly_to_seq_len() {
        let b = BatchConfig {
            curriculum_start_len: 10,
            curriculum_steps: 1_001,
            ..BatchConfig::default()
        };
        b.validate().unwrap();
        assert_eq!(b.seq_len_at(1), 10);
        assert_eq!(b.seq_len_at(501), 55);
        assert_eq!(b.seq_len_at(1_000), 99);
        assert_eq!(b.seq_len_at(1_001), 100);
        assert_eq!(b.seq_len_at(50_000), 100);
        let lengths: Vec<usize> = (1..=1_001).map(|s| b.seq_len_at(s)).collect();
        assert!(lengths.windows(2).all(|w| w[0] <= w[1]));
        assert!((1..100).all(|s| BatchConfig::default().seq_len_at(s) == 100));
    }

    #[test]
    fn impossible_curricula_are_refused_by_name() {
        let long = BatchConfig {
            curriculum_start_len: 200,
            curriculum_steps: 10,
            ..BatchConfig::default()
        };
        assert!(long
            .validate()
            .unwrap_err()
            .to_string()
            .contains("batch.curriculum_start_len"));
        let instant = BatchConfig {
            curriculum_start_len: 10,
            ..BatchConfig::default()
        };
        assert!(instant
            .validate()
            .unwrap_err()
            .to_string()
            .contains("batch.curriculum_steps"));
    }

    #[test]
    fn echo_sequences_stop_after_echo_until_step() {
        let data = DataConfig {
            echo_fraction: 0.5,
            echo_until_step: 100,
            ..DataConfig::default()
        };
        data.validate().unwrap();
        assert!(data.echo_at(1).is_on());
        assert_eq!(data.echo_at(100).fraction, 0.5);
        assert_eq!(data.echo_at(101), Echo::OFF);
        let whole_run = DataConfig {
            echo_fraction: 0.5,
            ..DataConfig::default()
        };
        assert!(whole_run.echo_at(1_000_000).is_on());
        assert!(!DataConfig::default().echo_at(1).is_on());
    }

    #[test]
    fn bad_echo_options_are_refused_by_name() {
        for (data, option) in [
            (
                DataConfig {
                    echo_fraction: 1.5,
                    ..DataConfig::default()
                },
                "data.echo_fraction",
            ),
            (
                DataConfig {
                    echo_prob: -0.1,
                    ..DataConfig::default()
                },
                "data.echo_prob",
            ),
            (
                DataConfig {
                    echo_lag: 0,
                    ..DataConfig::default()
                },
                "data.echo_lag",
            ),
        ] {
            let err = data.validate().unwrap_err().to_string();
            assert!(err.contains(option), "{err}");
        }
    }

    #[test]
    fn bad_table_readings_are_refused_by_name_and_defaults_stay_unwritten() {
        for (data, option) in [
            (
                DataConfig {
                    tabular_clip: -1.0,
                    ..DataConfig::default()
                },
                "data.tabular_clip",
            ),
            (
                DataConfig {
                    tabular_clip: f64::NAN,
                    ..DataConfig::default()
                },
                "data.tabular_clip",
            ),
            (
                DataConfig {
                    tabular_squares_fraction: 2.0,
                    ..DataConfig::default()
                },
                "data.tabular_squares_fraction",
            ),
            (
                DataConfig {
                    tabular_messy_fraction: -0.1,
                    ..DataConfig::default()
                },
                "data.tabular_messy_fraction",
            ),
        ] {
            let err = data.validate().unwrap_err().to_string();
            assert!(err.contains(option), "{err}");
        }
        let written = toml::to_string(&DataConfig::default()).unwrap();
        assert!(!written.contains("tabular_"), "{written}");
        let reading = DataConfig {
            tabular_clip: 2.0,
            tabular_squares_fraction: 0.5,
            tabular_messy_fraction: 0.25,
            ..DataConfig::default()
        };
        reading.validate().unwrap();
        assert_eq!(
            reading.table_options(),
            TableOptions {
                clip: 2.0,
                squares_fraction: 0.5,
                messy_fraction: 0.25,
            }
        );
    }

    #[test]
    fn default_echo_options_stay_out_of_written_configs() {
        let written = toml::to_string(&DataConfig::default()).unwrap();
        assert!(!written.contains("echo"), "{written}");
        let echoing = DataConfig {
            echo_fraction: 0.25,
            ..DataConfig::default()
        };
        let written = toml::to_string(&echoing).unwrap();
        assert!(written.contains("echo_fraction = 0.25"), "{written}");
        let read: DataConfig = toml::from_str(&written).unwrap();
        assert_eq!(read, echoing);
    }
}
