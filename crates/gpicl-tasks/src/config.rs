//! Data, task and batch options, with the reference defaults of
//! `gpicl-method.md` §2–§6.

use crate::error::{Result, TaskError};
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
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "mnist".into(),
            image_size: 14,
            resize: ResizeMethod::Area,
            channels: ChannelPolicy::Gray,
            normalization: Normalization::PerBatch,
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
    /// Fraction of each batch's sequences that always use task 0 (the
    /// paper's biased distribution). Default 0.
    pub single_task_fraction: f64,
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
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            tasks_per_step: 16,
            seqs_per_task: 32,
            seq_len: 100,
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
    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        if self.dataset.trim().is_empty() {
            return Err(TaskError::config("data.dataset", "must name a dataset"));
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
        Ok(())
    }

    /// Sequences per step.
    pub fn sequences(&self) -> usize {
        self.tasks_per_step * self.seqs_per_task
    }
}
