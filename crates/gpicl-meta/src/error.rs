//! The error type of the meta-optimisation crate.

use std::path::PathBuf;

/// Everything that can go wrong while meta-training.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Building or running the model failed.
    #[error(transparent)]
    Model(#[from] gpicl_models::ModelError),
    /// Data or task construction failed.
    #[error(transparent)]
    Task(#[from] gpicl_tasks::TaskError),
    /// Device selection failed.
    #[error(transparent)]
    Kernel(#[from] gpicl_kernels::KernelError),
    /// An option has an impossible value.
    #[error("option `{option}`: {reason}")]
    Config {
        /// The option at fault, as written in `config.toml`.
        option: String,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint or config file is unreadable or does not fit this run.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// Gradients or optimiser state that do not fit the parameters they
    /// are applied to (names or sizes).
    #[error("{0}")]
    Mismatch(String),
    /// Another process holds the run (or sweep) directory.
    #[error(
        "{path} is in use by {holder}; wait for it to finish or stop it, or use another --out"
    )]
    Locked {
        /// The file or folder at fault.
        path: PathBuf,
        /// The process holding the lock (host and pid).
        holder: String,
    },
    /// A hook (such as the periodic evaluation) failed; the run was
    /// checkpointed first.
    #[error("during training: {0}")]
    Observer(String),
    /// The loss stayed far above chance for too long.
    #[error("training diverged: the loss stayed above {threshold:.1} (schedule.divergence_factor × ln 10) for {patience} steps, reaching {loss} at step {step}. Lower optim.lr (now {lr}) or set optim.clip_norm (both may change when resuming, e.g. `train --out DIR --set optim.lr=...`), or raise schedule.divergence_factor / schedule.divergence_patience if such losses are expected. The last checkpoint from before the divergence is kept: {checkpoint}")]
    Diverged {
        /// The training step.
        step: u64,
        /// The loss at that step.
        loss: f32,
        /// The loss above which a step counts as diverged.
        threshold: f64,
        /// How many steps in a row were above the threshold.
        patience: u64,
        /// The learning rate of the run.
        lr: f64,
        /// The last checkpoint written before the divergence.
        checkpoint: String,
    },
    /// Training was stopped on request (a signal) after a checkpoint.
    #[error("stopped by {why} after step {step}; the newest checkpoint is {checkpoint}: run the same command again to resume")]
    Interrupted {
        /// What asked for the stop (`SIGTERM`, `SIGINT`).
        why: String,
        /// The last finished step.
        step: u64,
        /// The newest checkpoint.
        checkpoint: String,
    },
    /// Training diverged; the last checkpoint is still intact.
    #[error("loss is {loss} at step {step}: training diverged (try a lower optim.lr, optim.clip_norm, or a smaller optim.eps); the run can resume from its last checkpoint")]
    NonFiniteLoss {
        /// The training step.
        step: u64,
        /// The loss at that step.
        loss: f32,
    },
}

impl MetaError {
    pub(crate) fn config(option: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            option: option.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MetaError>;
