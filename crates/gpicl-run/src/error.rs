//! The error type of the run crate.

use std::path::PathBuf;

/// Everything that can go wrong while opening, training, evaluating,
/// sweeping or applying a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] gpicl_models::ModelError),
    /// Data or tasks failed.
    #[error(transparent)]
    Task(#[from] gpicl_tasks::TaskError),
    /// Training, checkpoints or loading the run failed.
    #[error(transparent)]
    Meta(#[from] gpicl_meta::MetaError),
    /// The evaluation protocol failed.
    #[error(transparent)]
    Eval(#[from] gpicl_eval::EvalError),
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
    /// A run's file could not be read or parsed.
    #[error("{path}: {reason}")]
    Input {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// Data handed to a learner is outside what it can do.
    #[error("{0}")]
    Learner(String),
    /// A file could not be written.
    #[error("{path}: {reason}")]
    Output {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// A sweep file, its starting config or one of its cells cannot be
    /// used; the message names the file or the cell.
    #[error("{message}")]
    Sweep {
        /// What failed, naming the sweep file, config or cell.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl RunError {
    pub(crate) fn config(option: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            option: option.to_string(),
            reason: reason.into(),
        }
    }

    /// `path` could not be read or parsed, for `reason`.
    pub(crate) fn input(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Self::Input {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    /// `path` could not be written, for `reason`.
    pub(crate) fn output(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Self::Output {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, RunError>;
