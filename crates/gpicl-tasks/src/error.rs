//! The error type of the tasks crate.

use std::path::PathBuf;

/// Everything that can go wrong reading data or building task batches.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// A dataset was asked for by name but is nowhere to be found.
    #[error("dataset `{name}` (split `{split}`) not found; looked in: {searched}. {hint}")]
    MissingDataset {
        /// The dataset asked for.
        name: String,
        /// The split asked for (`train` or `test`).
        split: String,
        /// Every folder that was searched.
        searched: String,
        /// How to get the dataset.
        hint: String,
    },
    /// A cached file's content does not match its recorded sha256.
    #[error("{path}: sha256 {found} does not match the recorded {expected}; the file is corrupt: re-fetch or re-import the dataset")]
    HashMismatch {
        /// The file or folder at fault.
        path: PathBuf,
        /// The sha256 recorded in the manifest.
        expected: String,
        /// The sha256 of the file as it is.
        found: String,
    },
    /// The Hugging Face Hub could not provide a dataset.
    #[error("dataset `{dataset}`: {reason}")]
    Hub {
        /// The dataset, by catalogue name.
        dataset: String,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// The Hugging Face Hub could not provide a model repository (a learner).
    #[error("model repository `{repo}`: {reason}")]
    HubModel {
        /// The Hub repository, `owner/name`.
        repo: String,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// A configuration option has an impossible value.
    #[error("option `{option}`: {reason}")]
    Config {
        /// The option at fault, as written in `config.toml`.
        option: String,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// A name that would become a path breaks the one rule of
    /// [`crate::names`].
    #[error("{what} `{name}` cannot be used as a file name: {reason}")]
    UnsafeName {
        /// What the name is (a dataset name, a Hub revision, …).
        what: String,
        /// The name, escaped.
        name: String,
        /// Which part of the rule it breaks.
        reason: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TaskError {
    pub(crate) fn config(option: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            option: option.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, TaskError>;
