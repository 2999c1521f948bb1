//! The error type of the evaluation crate.

use std::path::PathBuf;

/// Everything that can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] gpicl_models::ModelError),
    /// Data or tasks failed.
    #[error(transparent)]
    Task(#[from] gpicl_tasks::TaskError),
    /// Device selection failed.
    #[error(transparent)]
    Kernel(#[from] gpicl_kernels::KernelError),
    /// A dataset's inputs do not fit the model.
    #[error("dataset `{dataset}` has {got} features per example after preprocessing, but the model was trained on {expected}; set data.image_size and data.channels so both agree")]
    InputSize {
        /// The dataset, by catalogue name.
        dataset: String,
        /// Features per example of the dataset.
        got: usize,
        /// Features per example the model was trained on.
        expected: usize,
    },
    /// An option has an impossible value.
    #[error("option `{option}`: {reason}")]
    Config {
        /// The option at fault, as written in `config.toml`.
        option: String,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// A name that is not an evaluation group.
    #[error("unknown evaluation group `{name}`; expected one of {expected}")]
    UnknownGroup {
        /// The name given.
        name: String,
        /// The names of every group.
        expected: String,
    },
    /// A run's file could not be read or parsed.
    #[error("{path}: {reason}")]
    Input {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// A file could not be written.
    #[error("{path}: {reason}")]
    Output {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
}

impl EvalError {
    pub(crate) fn config(option: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            option: option.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, EvalError>;
